"""spec.dump writes what spec.load reads back: every key, defaults left out."""

from __future__ import annotations

from pathlib import Path

from kpgen import spec

FULL = '''\
name = "fix_all"
description = "Every kind of table, with \\"quotes\\" and a backslash \\\\"
sources = ["fix.c", "more.c"]
backend = "kpatch"
replace = true

[[function]]
target = "cmdline_proc_show"
replacement = "fix_show"

[[function]]
target = "bm_status_read"
object = "binfmt_misc"
replacement = "fix_read"
sympos = 2
force = true

[[symbol]]
name = "show_calls"
kallsyms = "calls.3"
sympos = 1

[[object]]
name = "vmlinux"
pre_patch = "fix_pre"
post_unpatch = "fix_post"

[[shadow]]
name = "reads"
destructor = "fix_dtor"
free = "disable"

[[shadow]]
name = "other"
id = 7
'''
C = ("static int fix_show(void) { return 0; }\nstatic int fix_read(void) { return 0; }\n"
     "static int fix_pre(void) { return 0; }\nstatic void fix_post(void) { }\n"
     "static void fix_dtor(void *obj, void *shadow_data) { }\n")


def write(root: Path, text: str) -> spec.PatchSpec:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fix.c").write_text(C)
    (root / "more.c").write_text("\n")
    (root / "fix_all.toml").write_text(text)
    return spec.load(root / "fix_all.toml")


def test_dump_then_load_gives_the_same_spec(tmp_path: Path) -> None:
    first = write(tmp_path / "a", FULL)
    text = spec.dump(first, "made by a test\nsecond line")
    again = write(tmp_path / "b", text)
    assert again == spec.PatchSpec(**{**first.__dict__, "path": again.path, "sources": again.sources})
    assert [p.name for p in again.sources] == ["fix.c", "more.c"]
    assert text.startswith("# made by a test\n# second line\nname = \"fix_all\"\n")
    # defaults stay out: the kpatch backend, a shadow's own id, free = "unload"
    assert "backend" not in text and "id = 7" in text and text.count("id = ") == 1
    assert spec.dump(again, "made by a test\nsecond line") == text


def test_strings_are_escaped() -> None:
    assert spec.toml_string('a"b\\c\td') == '"a\\"b\\\\c\\u0009d"'
