"""kpgen diff's parts that need no kernel: doctests, [[symbol]] tables, objdiff on strings."""

from __future__ import annotations

import doctest
import subprocess
from pathlib import Path

import pytest

from kpgen import extract, layouts, model, objdiff, source, spec, units
from kpgen.diff import apply as dapply, decisions, emit


@pytest.mark.parametrize("module", [dapply, decisions, emit, extract, layouts, model, objdiff, source, spec, units])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


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
