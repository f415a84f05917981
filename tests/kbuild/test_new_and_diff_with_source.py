"""`kpgen new` and `kpgen diff` with the kernel's exact source (`kpgen source`; provisioning
makes it), through the command line: the definition is looked for only among the files built
into the target's object, a diff named fix.patch makes a module, and a fix.c the user edited is
not written over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kpgen import kernel, objects, source

pytestmark = pytest.mark.kbuild

MATRIX = {m.name: m for m in kernel.matrix()}
CORPUS = Path(__file__).parent.parent / "diffs"


def kpgen(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpgen", *argv], capture_output=True, text=True, cwd=cwd,
                          check=False)


@pytest.mark.parametrize("kname", ["6.1", "6.12"])
def test_new_takes_the_definition_built_into_the_object(kname: str, tmp_path: Path) -> None:
    """version_proc_show() is defined in fs/proc/version.c (vmlinux) and in the toshiba_acpi
    module's drivers/platform/x86/toshiba_acpi.c: for vmlinux, kpgen new takes the first."""
    kdir = MATRIX[kname].kdir()
    proc = kpgen("new", "fix_version", "--target", "version_proc_show", "--kdir", str(kdir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "version_proc_show: target (defined in fs/proc/version.c)" in proc.stdout
    c_text = (tmp_path / "fix_version" / "fix.c").read_text()
    assert "livepatch_version_proc_show(struct seq_file *m, void *v)" in c_text
    other = kpgen("new", "fix_t", "--target", "version_proc_show", "--object", "toshiba_acpi", "--kdir", str(kdir),
                  cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert "defined in drivers/platform/x86/toshiba_acpi.c" in other.stdout


@pytest.mark.parametrize("kname", ["6.1", "6.12"])
def test_where_kbuild_puts_a_file(kname: str) -> None:
    k = kernel.probe(MATRIX[kname].kdir())
    tree = source.find(k).root
    for rel, obj in [("fs/proc/version.c", "vmlinux"), ("drivers/platform/x86/toshiba_acpi.c", "toshiba_acpi"),
                     ("fs/ext4/inode.c", "ext4"), ("fs/binfmt_misc.c", "binfmt_misc"),
                     ("kernel/sched/core.c", "vmlinux"), ("mm/slub.c", "vmlinux"),
                     ("arch/x86/kernel/setup.c", "vmlinux"), ("fs/nfs/inode.c", "nfs")]:
        place = objects.placement(k, tree, rel)
        assert place.holds(obj) and place.kind != "unknown", (rel, place)
        if place.kind == "module":
            assert obj in objects.kernel_modules(k), f"{obj} is no module of {k.release}"
    # APM emulation (CONFIG_APM_EMULATION) is not in Debian's configuration
    assert objects.placement(k, tree, "drivers/char/apm-emulation.c").kind == "none"


def test_a_diff_named_fix_patch_makes_a_module(tmp_path: Path) -> None:
    """The README's own example name: the module cannot be called fix (kpgen diff writes fix.c),
    so it is lp_fix; and a fix.c the user edited since is not written over."""
    kdir = MATRIX["6.1"].kdir()
    (tmp_path / "fix.patch").write_bytes((CORPUS / "cmdline_new_data" / "6.1.patch").read_bytes())
    proc = kpgen("diff", "fix.patch", "--kdir", str(kdir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lp_fix" / "lp_fix.toml").is_file() and (tmp_path / "lp_fix" / "fix.c").is_file()
    edited = (tmp_path / "lp_fix" / "fix.c").read_text() + "/* reviewed */\n"
    (tmp_path / "lp_fix" / "fix.c").write_text(edited)
    again = kpgen("diff", "fix.patch", "--kdir", str(kdir), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == ("kpgen: error: lp_fix/fix.c was edited since kpgen wrote it: kpgen does not replace it; "
                            "move it away, choose another output directory, or pass --force to replace it\n")
    assert again.stdout == ""  # refused before any work
    assert (tmp_path / "lp_fix" / "fix.c").read_text() == edited
    forced = kpgen("diff", "fix.patch", "--kdir", str(kdir), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "lp_fix" / "fix.c").read_text() != edited
