"""`kpgen new` scaffolds, doctests of the helpers, and snapshot checks on small fixed texts."""

from __future__ import annotations

import doctest
import subprocess
from pathlib import Path

import pytest

from kpgen import cli, kernel, model, scaffold, snapshot, spec

REPO = Path(__file__).resolve().parents[2]

KDIR_61 = kernel.matrix()[0].kdir()


@pytest.mark.parametrize("module", [model, scaffold])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_new_fills_in_a_prototype_from_the_headers(tmp_path):
    assert cli.main(["new", "fix_read", "--target", "vfs_read", "--kdir", str(KDIR_61), "-d", str(tmp_path),
                     "--no-source"]) == 0
    c_text = (tmp_path / "fix.c").read_text()
    assert "static ssize_t fix_read_vfs_read(struct file *arg1, char __user *arg2, size_t arg3, loff_t *arg4)" in c_text
    loaded = spec.load(tmp_path / "fix_read.toml")
    assert loaded.functions[0] == spec.FunctionSpec("vfs_read", "vmlinux", "fix_read_vfs_read", 0)


def test_new_takes_the_prototype_from_the_c_front_end(tmp_path):
    """A use of a function in a header is no declaration of it: the front end reads the one
    declaration, `unsigned int jiffies_to_msecs(const unsigned long j)`."""
    assert cli.main(["new", "fix_j", "--target", "jiffies_to_msecs", "--kdir", str(KDIR_61), "-d", str(tmp_path),
                     "--no-source"]) == 0
    c_text = (tmp_path / "fix.c").read_text()
    assert "static unsigned int fix_j_jiffies_to_msecs(const unsigned long j)\n{" in c_text


def test_new_reads_a_static_functions_prototype_from_btf(tmp_path):
    """No header declares cmdline_proc_show() (it is static): its prototype comes from the
    kernel's BTF, with a forward declaration of the struct it names."""
    assert cli.main(["new", "fix_cmd", "--target", "cmdline_proc_show", "--kdir", str(KDIR_61),
                     "-d", str(tmp_path), "--no-source"]) == 0
    c_text = (tmp_path / "fix.c").read_text()
    assert "struct seq_file;\n" in c_text
    assert "static int fix_cmd_cmdline_proc_show(struct seq_file *m, void *v)\n{" in c_text
    assert "read from the BTF of vmlinux" in c_text
    spec.load(tmp_path / "fix_cmd.toml")


def test_new_scaffold_builds_into_a_module(tmp_path):
    """The scaffold is a valid patch module as written: it renders and builds with W=1."""
    k = kernel.probe(KDIR_61)
    src = tmp_path / "src"
    assert cli.main(["new", "fix_free", "--target", "si_meminfo", "--kdir", str(KDIR_61), "-d", str(src),
                     "--no-source"]) == 0
    from kpgen import generate, pipeline

    generate.generate_tree(k, tmp_path / "tree", [])
    pipeline.build(k, tmp_path / "tree" / "core")
    generate.generate_patch(k, src / "fix_free.toml", tmp_path / "mod", tmp_path / "tree" / "core")
    result = pipeline.build(k, tmp_path / "mod", core_dir=tmp_path / "tree" / "core").result
    assert [m.name for m in result.modules] == ["fix_free.ko"]
    assert not [w for w in result.warnings if "fix.c" not in w], result.warnings


def test_new_replaces_only_its_own_unedited_files(tmp_path, capsys):
    args = ["new", "fix_a", "--target", "kfree", "--kdir", str(KDIR_61), "-d", str(tmp_path), "--no-source"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0  # the same files again: nothing to replace
    (tmp_path / "fix.c").write_text((tmp_path / "fix.c").read_text() + "/* mine */\n")
    assert cli.main(args) == 2
    assert "fix.c was edited since kpgen wrote it" in capsys.readouterr().err
    assert (tmp_path / "fix.c").read_text().endswith("/* mine */\n")
    assert cli.main([*args, "--force"]) == 0
    assert not (tmp_path / "fix.c").read_text().endswith("/* mine */\n")


@pytest.mark.parametrize("bad", [["Bad-Name", "--target", "kfree"], ["ok", "--target", "1x"],
                                 ["ok", "--target", "kfree", "--object", "../x"]])
def test_new_rejects_bad_names(tmp_path, bad):
    assert cli.main(["new", *bad, "--kdir", str(KDIR_61), "-d", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d").exists()


KALLSYMS = """\
T start_kernel
t foo_show
t dup_fn
D some_var
t dup_fn
d static_var
d static_var
t modfn\t[mymod]
d modvar\t[mymod]
"""
FILTERS = "foo_show\ndup_fn\ndup_fn\nmodfn [mymod]\n"


def make_spec(tmp_path: Path, target: str, obj: str = "vmlinux", sympos: int = 0) -> spec.PatchSpec:
    (tmp_path / "fix.c").write_text("static int r(void)\n{\n\treturn 0;\n}\n")
    (tmp_path / "p.toml").write_text(
        f'name = "p"\nsources = ["fix.c"]\n[[function]]\ntarget = "{target}"\nobject = "{obj}"\n'
        f'replacement = "r"\nsympos = {sympos}\n'
    )
    return spec.load(tmp_path / "p.toml")


@pytest.fixture
def snap(tmp_path):
    snapshot.save("9.9.9-test", KALLSYMS, FILTERS, root=tmp_path / "cache")
    loaded = snapshot.load("9.9.9-test", root=tmp_path / "cache")
    assert loaded is not None
    return loaded


def test_snapshot_round_trip_has_no_addresses(tmp_path):
    d = snapshot.save("r", "ffffffff81000000 T start_kernel\n", "", root=tmp_path)
    import gzip

    assert gzip.decompress((d / "kallsyms.txt.gz").read_bytes()) == b"T start_kernel"


@pytest.mark.parametrize(("target", "obj", "sympos", "problem"), [
    ("nope", "vmlinux", 0, "does not exist in vmlinux"),
    ("some_var", "vmlinux", 0, "is not a function"),
    ("dup_fn", "vmlinux", 0, "appears 2 times.*1 \\(after foo_show\\); 2 \\(after some_var\\)"),
    ("dup_fn", "vmlinux", 3, "appears only 2 time"),
    ("start_kernel", "vmlinux", 0, "ftrace cannot hook"),
])
def test_snapshot_refutes(tmp_path, snap, target, obj, sympos, problem):
    with pytest.raises(spec.SpecError, match=problem):
        snapshot.validate(make_spec(tmp_path, target, obj, sympos), snap)


def test_snapshot_accepts_and_notes(tmp_path, snap):
    assert snapshot.validate(make_spec(tmp_path, "foo_show"), snap) == []
    assert snapshot.validate(make_spec(tmp_path, "dup_fn", sympos=2), snap) == []
    assert snapshot.validate(make_spec(tmp_path, "modfn", "mymod"), snap) == []
    notes = snapshot.validate(make_spec(tmp_path, "x", "othermod"), snap)
    assert notes and "not loaded when the snapshot was taken" in notes[0]


def test_snapshot_checks_unexported_symbols(tmp_path, snap):
    s = make_spec(tmp_path, "foo_show")
    snapshot.validate(s, snap, ["some_var"])
    with pytest.raises(spec.SpecError, match="appears 2 times"):
        snapshot.validate(s, snap, ["static_var"])
    with pytest.raises(spec.SpecError, match="neither exported"):
        snapshot.validate(s, snap, ["missing_var"])


def test_snapshot_checks_module_symbols_in_their_module(tmp_path, snap):
    with pytest.raises(spec.SpecError, match='object = "mymod"'):
        snapshot.validate(make_spec(tmp_path, "foo_show"), snap, ["modvar"])
    text = (tmp_path / "p.toml").read_text().replace('"vmlinux"', '"mymod"').replace('"foo_show"', '"modfn"')
    (tmp_path / "p.toml").write_text(text + '[[symbol]]\nname = "modvar"\nobject = "mymod"\n')
    assert snapshot.validate(spec.load(tmp_path / "p.toml"), snap, ["modvar"]) == []


def test_cli_dry_runs_print_exact_commands(capsys):
    assert cli.main(["snapshot", "--kdir", str(KDIR_61), "--dry-run"]) == 0
    out = capsys.readouterr().out
    comment, command = out.rstrip("\n").split("\n")
    assert comment.startswith("# DIR: a temporary directory")
    assert command.startswith("vng --run /boot/vmlinuz-") and "--disable-kvm" in command
    assert command.endswith("</dev/null") and "--rwdir DIR" in command
    assert cli.main(["build", "--kdir", str(KDIR_61), "--dry-run", "kmod/core"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"make -C {KDIR_61} M=") and "W=1" in out


def test_build_tells_a_core_from_a_patch_module(tmp_path, capsys):
    """`kpgen build` builds a generated core without a core beside it (a patch module needs one)."""
    from kpgen import generate

    k = kernel.probe(KDIR_61)
    generate.generate_tree(k, tmp_path / "tree", generate.sample_specs()[:1])
    core, patch = tmp_path / "tree/core", next((tmp_path / "tree/patches").iterdir())
    assert generate.is_core_dir(core) and not generate.is_core_dir(patch)
    assert cli.main(["build", "--kdir", str(KDIR_61), "--dry-run", "--core", str(core), str(core), str(patch)]) == 0
    core_line, patch_line = capsys.readouterr().out.splitlines()
    assert "KPATCH_CORE=" not in core_line
    assert f"KPATCH_CORE={core.resolve()}" in patch_line


def test_console_script_is_installed():
    out = subprocess.run(["kpgen", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("kpgen ")


def test_symbol_table_must_name_an_unexported_symbol(tmp_path):
    from kpgen import generate

    (tmp_path / "fix.c").write_text("#include <linux/slab.h>\n\nstatic void r(const void *p)\n{\n\tkfree(p);\n}\n")
    (tmp_path / "p.toml").write_text('name = "p"\nsources = ["fix.c"]\n[[function]]\ntarget = "kfree_sensitive"\n'
                                     'replacement = "r"\n[[symbol]]\nname = "kfree"\nsympos = 1\n')
    k = kernel.probe(KDIR_61)
    with pytest.raises(spec.SpecError, match="'kfree' is not an unexported symbol the sources use") as err:
        generate.generate_patch(k, tmp_path / "p.toml", tmp_path / "out", tmp_path / "core")
    assert err.value.key == "symbol[0].name"
    assert not (tmp_path / "out").exists()


def test_unexported_symbols_become_klp_symbols():
    """The generated C uses them as the kernel declares them: no pointer, no macro, only the list
    of klp symbols the post-link step reads (klp-symbols.h)."""
    text = (REPO / "kmod/patches/cmdline_ksym/cmdline_ksym.c").read_text()
    assert '#include "klp-symbols.h"' in text and "if (!kpgen_klp_converted)" in text
    assert "kpgen_ksym" not in text and "#define saved_command_line" not in text
    header = (REPO / "kmod/patches/cmdline_ksym/klp-symbols.h").read_text()
    assert "/* .klp.sym.vmlinux.saved_command_line,0 */\n#pragma weak saved_command_line\n" in header
    for other in ("cmdline_a", "meminfo"):
        # the list is there, empty, so that an older one never lingers; the module ignores it
        assert "#pragma weak" not in (REPO / f"kmod/patches/{other}/klp-symbols.h").read_text()
        assert "klp-symbols.h" not in (REPO / f"kmod/patches/{other}/{other}.c").read_text()


@pytest.mark.parametrize(("extra", "problem"), [
    ("", "the sources use 'kpgen_no_such_symbol', which is neither exported nor in vmlinux"),
    ('[[symbol]]\nname = "snapshot_fops"\nsympos = 3\n', "'snapshot_fops' appears only 2 time"),
])
def test_klp_symbols_are_checked_against_the_image_without_a_snapshot(tmp_path, monkeypatch, extra, problem):
    """No snapshot: the klp symbols are checked against the kallsyms read out of the kernel's
    image, and a spec naming one that is not there (or not at that position) is refused."""
    from kpgen import generate

    monkeypatch.setenv("KPGEN_CACHE", str(tmp_path / "cache"))
    name = "snapshot_fops" if extra else "kpgen_no_such_symbol"
    (tmp_path / "fix.c").write_text("#include <linux/seq_file.h>\n\nextern int " + name + ";\n\n"
                                    "static int r(struct seq_file *m, void *v)\n{\n"
                                    f"\tseq_printf(m, \"%d\\n\", {name});\n\treturn 0;\n}}\n")
    (tmp_path / "p.toml").write_text('name = "p"\nsources = ["fix.c"]\n[[function]]\ntarget = "cmdline_proc_show"\n'
                                     'replacement = "r"\n' + extra)
    k = kernel.probe(KDIR_61)
    with pytest.raises(spec.SpecError, match=problem):
        generate.generate_patch(k, tmp_path / "p.toml", tmp_path / "out", tmp_path / "core")
    assert not (tmp_path / "out").exists()
