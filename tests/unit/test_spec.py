"""Every class of bad spec is refused with the file, the key and a fix, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpgen import cli, spec

# the prototype of cmdline_proc_show(): kpgen checks it against the kernel's
GOOD_C = "struct seq_file;\n\nstatic int fix_show(struct seq_file *m, void *v)\n{\n\treturn 0;\n}\n"
GOOD = """\
name = "fix_demo"
description = "demo"
sources = ["fix.c"]

[[function]]
target = "cmdline_proc_show"
object = "vmlinux"
replacement = "fix_show"
"""


def write_spec(tmp_path: Path, text: str, c_text: str = GOOD_C) -> Path:
    (tmp_path / "fix.c").write_text(c_text)
    p = tmp_path / "fix.toml"
    p.write_text(text)
    return p


def test_good_spec_loads(tmp_path):
    s = spec.load(write_spec(tmp_path, GOOD))
    assert s.name == "fix_demo"
    assert s.functions[0] == spec.FunctionSpec("cmdline_proc_show", "vmlinux", "fix_show", 0)


def test_callbacks_shadows_replace_and_force_load(tmp_path):
    c_text = GOOD_C + "static int fix_pre(void)\n{\n\treturn 0;\n}\n" + \
        "static void fix_dtor(void *obj, void *shadow_data)\n{\n}\n"
    text = ('replace = true\n' + GOOD + 'force = true\n[[object]]\nname = "vmlinux"\npre_patch = "fix_pre"\n'
            '[[shadow]]\nname = "newpid"\ndestructor = "fix_dtor"\n'
            '[[shadow]]\nname = "other"\nid = 12\nfree = "never"\n')
    s = spec.load(write_spec(tmp_path, text, c_text))
    assert s.replace and s.functions[0].force
    assert s.objects == (spec.ObjectSpec("vmlinux", pre_patch="fix_pre"),)
    assert s.shadows == (spec.ShadowSpec("newpid", spec.shadow_id("newpid"), "fix_dtor", "unload"),
                         spec.ShadowSpec("other", 12, None, "never"))
    assert s.shadows[0].macro == "KPGEN_SHADOW_NEWPID"


def test_object_defaults_to_vmlinux_and_dashes_become_underscores(tmp_path):
    text = GOOD.replace('object = "vmlinux"\n', "")
    assert spec.load(write_spec(tmp_path, text)).functions[0].object == "vmlinux"
    text = GOOD.replace('object = "vmlinux"', 'object = "my-mod"')
    assert spec.load(write_spec(tmp_path, text)).functions[0].object == "my_mod"


BAD = [
    ("syntax", GOOD.replace('name = "fix_demo"', "name = fix_demo"), "", "TOML syntax"),
    ("unknown top key", 'colour = "red"\n' + GOOD, "colour", "unknown key"),
    ("unknown function key", GOOD + 'colour = "red"\n', "function[0].colour", "unknown key"),
    ("missing name", GOOD.replace('name = "fix_demo"\n', ""), "name", "missing"),
    ("missing sources", GOOD.replace('sources = ["fix.c"]\n', ""), "sources", "missing"),
    ("missing function", GOOD.split("[[function]]")[0], "function", "missing"),
    ("missing target", GOOD.replace('target = "cmdline_proc_show"\n', ""), "function[0].target", "missing"),
    ("missing replacement", GOOD.replace('replacement = "fix_show"\n', ""), "function[0].replacement", "missing"),
    ("name wrong type", GOOD.replace('"fix_demo"', "3"), "name", "not a valid module name"),
    ("bad name", GOOD.replace('"fix_demo"', '"Fix-Demo"'), "name", "not a valid module name"),
    ("reserved name", GOOD.replace('"fix_demo"', '"kpatch"'), "name", "reserved"),
    ("replacement named like the generated init",
     GOOD.replace('replacement = "fix_show"', 'replacement = "fix_demo_init"'),
     "function[0].replacement", "a name the generated module defines"),
    ("long name", GOOD.replace('"fix_demo"', '"' + "a" * 60 + '"'), "name", "not a valid module name"),
    ("sources not list", GOOD.replace('["fix.c"]', '"fix.c"'), "sources", "non-empty list"),
    ("missing source", GOOD.replace('["fix.c"]', '["gone.c"]'), "sources[0]", "does not exist"),
    ("source path escape", GOOD.replace('["fix.c"]', '["../fix.c"]'), "sources[0]", "plain .c file"),
    ("source twice", GOOD.replace('["fix.c"]', '["fix.c", "fix.c"]'), "sources[1]", "listed twice"),
    ("target not ident", GOOD.replace('"cmdline_proc_show"', '"1bad"'), "function[0].target", "not a C identifier"),
    ("target keyword", GOOD.replace('"cmdline_proc_show"', '"while"'), "function[0].target", "C keyword"),
    ("target wrong type", GOOD.replace('"cmdline_proc_show"', "7"), "function[0].target", "must be a string"),
    ("replacement reserved", GOOD.replace('replacement = "fix_show"', 'replacement = "kpatch_register"'),
     "function[0].replacement", "reserved prefix"),
    ("bad object", GOOD.replace('"vmlinux"', '"../x"'), "function[0].object", "not 'vmlinux'"),
    ("bad sympos", GOOD + "sympos = -1\n", "function[0].sympos", "whole number"),
    ("sympos bool", GOOD + "sympos = true\n", "function[0].sympos", "whole number"),
    ("duplicate target", GOOD + '\n[[function]]\ntarget = "cmdline_proc_show"\nreplacement = "fix_show2"\n',
     "function[1].target", "already replaced"),
    ("replacement undefined", GOOD.replace('"fix_show"', '"fix_other"'), "function[0].replacement", "not defined"),
    ("description control chars", GOOD.replace('"demo"', '"a\\u0007b"'), "description", "printable"),
    ("symbol not a table", 'symbol = "x"\n' + GOOD, "symbol", "[[symbol]] tables"),
    ("symbol unknown key", GOOD + '[[symbol]]\nname = "x"\ncolour = 1\n', "symbol[0].colour", "unknown key"),
    ("symbol missing name", GOOD + '[[symbol]]\nsympos = 1\n', "symbol[0].name", "missing"),
    ("symbol bad name", GOOD + '[[symbol]]\nname = "a b"\n', "symbol[0].name", "not a C identifier"),
    ("symbol twice", GOOD + '[[symbol]]\nname = "x"\n[[symbol]]\nname = "x"\n', "symbol[1].name", "twice"),
    ("symbol bad sympos", GOOD + '[[symbol]]\nname = "x"\nsympos = "2"\n', "symbol[0].sympos", "whole number"),
    ("symbol bad object", GOOD + '[[symbol]]\nname = "x"\nobject = "a/b"\n', "symbol[0].object", "not 'vmlinux'"),
    ("symbol object kpatch", GOOD + '[[symbol]]\nname = "x"\nobject = "kpatch"\n', "symbol[0].object",
     "core module"),
    ("module symbol used beside other objects", GOOD + '[[symbol]]\nname = "x"\nobject = "some_mod"\n',
     "symbol[0].object", "could run while some_mod is not loaded"),
    ("source clashes with module", GOOD.replace('["fix.c"]', '["fix_demo.c"]'), "sources[0]", "clash"),
    ("name C keyword", GOOD.replace('"fix_demo"', '"struct"'), "name", "reserved"),
    ("replacement equals target", GOOD.replace('replacement = "fix_show"', 'replacement = "cmdline_proc_show"'),
     "function[0].replacement", "same name as the target"),
    ("replace not a bool", 'replace = "yes"\n' + GOOD, "replace", "not true or false"),
    ("force not a bool", GOOD + "force = 1\n", "function[0].force", "not true or false"),
    ("unknown object key", GOOD + '[[object]]\nname = "vmlinux"\npre_patch = "fix_show"\ncolour = 1\n',
     "object[0].colour", "unknown key"),
    ("object without name", GOOD + '[[object]]\npre_patch = "fix_show"\n', "object[0].name", "missing"),
    ("object without callback", GOOD + '[[object]]\nname = "vmlinux"\n', "object[0]", "names no callback"),
    ("object twice", GOOD + '[[object]]\nname = "vmlinux"\npre_patch = "fix_show"\n'
     '[[object]]\nname = "vmlinux"\npost_patch = "fix_show"\n', "object[1].name", "two [[object]] tables"),
    ("callback not defined", GOOD + '[[object]]\nname = "vmlinux"\npost_patch = "fix_gone"\n',
     "object[0].post_patch", "define it in one of the sources as void fix_gone(void)"),
    ("callback not an identifier", GOOD + '[[object]]\nname = "vmlinux"\npre_patch = "fix-it"\n',
     "object[0].pre_patch", "not a C identifier"),
    ("callback named like generated", GOOD + '[[object]]\nname = "vmlinux"\npre_patch = "fix_demo_0_pre_patch"\n',
     "object[0].pre_patch", "a name the generated module defines"),
    ("shadow bad name", GOOD + '[[shadow]]\nname = "New-Pid"\n', "shadow[0].name", "not a shadow variable name"),
    ("shadow twice", GOOD + '[[shadow]]\nname = "a"\n[[shadow]]\nname = "a"\n', "shadow[1].name", "listed twice"),
    ("shadow id zero", GOOD + '[[shadow]]\nname = "a"\nid = 0\n', "shadow[0].id", "from 1 to 4294967295"),
    ("shadow ids clash", GOOD + '[[shadow]]\nname = "a"\nid = 7\n[[shadow]]\nname = "b"\nid = 7\n',
     "shadow[1].id", "also the id"),
    ("shadow free unknown", GOOD + '[[shadow]]\nname = "a"\nfree = "later"\n', "shadow[0].free", "not one of"),
    ("shadow destructor not defined", GOOD + '[[shadow]]\nname = "a"\ndestructor = "fix_dtor"\n',
     "shadow[0].destructor", "void fix_dtor(void *obj, void *shadow_data)"),
]


@pytest.mark.parametrize(("text", "key", "problem"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec(tmp_path, text, key, problem):
    path = write_spec(tmp_path, text)
    with pytest.raises(spec.SpecError) as err:
        spec.load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert err.value.key == key
    assert problem in msg
    assert ";" in msg  # the fix follows the problem


def test_declaration_is_not_a_definition(tmp_path):
    c_text = "static int fix_show(void);\n/* fix_show(void) { */\n"
    with pytest.raises(spec.SpecError, match="not defined"):
        spec.load(write_spec(tmp_path, GOOD, c_text))


def test_non_utf8_spec(tmp_path):
    path = write_spec(tmp_path, GOOD)
    path.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(spec.SpecError, match="not UTF-8"):
        spec.load(path)


def test_cli_bad_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_spec(tmp_path, GOOD.replace('"fix_show"', '"nope"'))
    out = tmp_path / "out"
    assert cli.main(["patch", str(path), "-o", str(out), "--core", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "function[0].replacement" in err and str(path) in err
    assert not out.exists()


def test_object_kpatch_is_refused(tmp_path):
    with pytest.raises(spec.SpecError, match="core module cannot be patched"):
        spec.load(write_spec(tmp_path, GOOD.replace('"vmlinux"', '"kpatch"')))


def test_module_symbol_with_functions_of_that_module(tmp_path):
    text = GOOD.replace('"vmlinux"', '"some-mod"') + '[[symbol]]\nname = "x"\nobject = "some-mod"\nsympos = 2\n'
    assert spec.load(write_spec(tmp_path, text)).symbols == (spec.SymbolSpec("x", 2, "some_mod"),)


def test_huge_spec_is_refused(tmp_path):
    path = write_spec(tmp_path, GOOD + "#" * (spec.MAX_SPEC_BYTES + 1) + "\n")
    with pytest.raises(spec.SpecError, match="keep it under"):
        spec.load(path)


def test_huge_source_is_refused(tmp_path):
    path = write_spec(tmp_path, GOOD, GOOD_C + "//" + "x" * spec.MAX_SOURCE_BYTES + "\n")
    with pytest.raises(spec.SpecError, match="keep sources under"):
        spec.load(path)


def test_non_utf8_source_is_refused(tmp_path):
    path = write_spec(tmp_path, GOOD)
    (tmp_path / "fix.c").write_bytes(GOOD_C.encode() + b"/* \xff */\n")
    with pytest.raises(spec.SpecError, match="not UTF-8"):
        spec.load(path)


def test_hostile_description_cannot_break_the_c(tmp_path):
    """Quotes, backslashes, comment ends and preprocessor lines stay inside their string and comment:
    the module still compiles (plan_patch compiles it) and says exactly what the spec said."""
    from kpgen import generate, kernel

    nasty = 'x */ #include <evil.h> \\" }; /* \\\\ {'
    path = write_spec(tmp_path, GOOD.replace('description = "demo"', f"description = '{nasty}'"))
    loaded = spec.load(path)
    assert loaded.description == nasty
    k = kernel.probe(kernel.matrix()[0].kdir())
    generate.generate_patch(k, path, tmp_path / "out", tmp_path / "core")
    text = (tmp_path / "out" / "fix_demo.c").read_text()
    assert 'MODULE_DESCRIPTION("x */ #include <evil.h> \\\\\\" }; /* \\\\\\\\ {");' in text
    assert " * Patch module fix_demo: x * / #include <evil.h> \\\" }; / * \\\\ {\n" in text
    assert text.count("#include <evil.h>") == 2  # once in the comment, once in the string
