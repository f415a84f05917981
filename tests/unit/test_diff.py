"""kpgen diff's parts that need no kernel: reading diffs, applying them, header reach, specs."""

from __future__ import annotations

import doctest
import subprocess
from pathlib import Path

import pytest

from kpgen import diff, model, objdiff, source, spec
from kpgen.diff import apply as dapply, decisions, emit


@pytest.mark.parametrize("module", [dapply, decisions, emit, model, objdiff, source, spec])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0

DIFF = """--- a/fs/x/a.c
+++ b/fs/x/a.c
@@ -1,3 +1,3 @@
 int a(void)
 {
-\treturn 1;
+\treturn 2;
"""


def tree(tmp: Path) -> Path:
    root = tmp / "src"
    (root / "fs/x").mkdir(parents=True)
    (root / "fs/x/a.c").write_text("int a(void)\n{\n\treturn 1;\n}\n")
    (root / "fs/x/b.c").write_text('#include "local.h"\n')
    (root / "fs/x/local.h").write_text("#define X 1\n")
    return root


def test_patch_files() -> None:
    assert dapply.patch_files(DIFF) == ["fs/x/a.c"]


def test_new_file_refused() -> None:
    with pytest.raises(diff.DiffRefused) as info:
        dapply.patch_files("--- /dev/null\n+++ b/fs/x/new.c\n@@ -0,0 +1 @@\n+int x;\n")
    assert str(info.value) == ("the diff: it creates fs/x/new.c, and a live patch changes existing C files only; "
                               "put new code in the files it serves")


def test_build_file_refused() -> None:
    with pytest.raises(diff.DiffRefused) as info:
        dapply.refuse_other_files(["fs/x/Makefile"])
    assert str(info.value) == ("fs/x/Makefile: a live patch can change C code only, not the build or the "
                               "configuration; leave this file out of the diff")


def test_apply_and_overlay_leave_the_source_alone(tmp_path: Path) -> None:
    root = tree(tmp_path)
    overlay = tmp_path / "ov"
    dapply.apply(DIFF, Path("fix.patch"), root, overlay, ["fs/x/a.c"])
    assert "return 2" in (overlay / "fs/x/a.c").read_text()
    assert "return 1" in (root / "fs/x/a.c").read_text()
    assert (overlay / "fs/x/b.c").is_symlink()


def test_diff_that_does_not_apply_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with pytest.raises(diff.DiffRefused) as info:
        dapply.apply(DIFF.replace("return 1", "return 3"), Path("fix.patch"), root, tmp_path / "ov", ["fs/x/a.c"])
    assert str(info.value) == ("fix.patch: it does not apply to the source of the kernel: Hunk #1 FAILED at 1.; "
                               "give a diff of this kernel's source")


def test_missing_file_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with pytest.raises(diff.DiffRefused) as info:
        dapply.apply(DIFF, Path("fix.patch"), root, tmp_path / "ov", ["fs/y/c.c"])
    assert str(info.value) == ("fix.patch: fs/y/c.c is not in the kernel source: the diff does not apply; give a "
                               "diff of this kernel's source")


def test_header_reach(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert dapply.header_reach(root, "fs/x/local.h", {"fs/x/a.c"}) == ["fs/x/b.c"]
    assert dapply.header_reach(root, "fs/x/local.h", {"fs/x/b.c"}) == []


def test_symbol_kallsyms_name(tmp_path: Path) -> None:
    (tmp_path / "fix.c").write_text("static int fix_f(void)\n{\n\treturn 0;\n}\n")
    (tmp_path / "p.toml").write_text('name = "p"\nsources = ["fix.c"]\n[[function]]\ntarget = "f"\n'
                                     'replacement = "fix_f"\n[[symbol]]\nname = "f_last"\nkallsyms = "last.2"\n')
    sym = spec.load(tmp_path / "p.toml").symbols[0]
    assert (sym.name, sym.lookup) == ("f_last", "last.2")


def test_symbol_bad_kallsyms_name_refused(tmp_path: Path) -> None:
    (tmp_path / "fix.c").write_text("static int fix_f(void)\n{\n\treturn 0;\n}\n")
    (tmp_path / "p.toml").write_text('name = "p"\nsources = ["fix.c"]\n[[function]]\ntarget = "f"\n'
                                     'replacement = "fix_f"\n[[symbol]]\nname = "f_last"\nkallsyms = "a b"\n')
    with pytest.raises(spec.SpecError) as info:
        spec.load(tmp_path / "p.toml")
    assert "key 'symbol[0].kallsyms': 'a b' is not a kallsyms name" in str(info.value)


def test_objdiff_sees_a_string_change(tmp_path: Path) -> None:
    src = 'extern int puts(const char *);\nint f(void) { return puts("%s"); }\nint g(void) { return 1; }\n'
    objs = []
    for i, s in enumerate((src % "a", src % "b")):
        c = tmp_path / f"u{i}.c"
        c.write_text(s)
        o = tmp_path / f"u{i}.o"
        subprocess.run(["gcc", "-O2", "-ffunction-sections", "-c", "-o", str(o), str(c)], check=True)
        objs.append(objdiff.read(o))
    cmp = objdiff.compare(*objs)
    assert cmp.changed == ("f",)
