"""Every expected CLI error: one line on stderr, the README's exit status, no traceback, nothing
written; and one default kernel for kpgen and the Makefile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kpgen import generate, kernel

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "gen/kpgen/samples/cmdline_a/cmdline_a.toml"


def kpgen(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpgen", *argv], capture_output=True, text=True, cwd=cwd,
                          check=False)


def one_line_error(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpgen: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_output_directory_that_cannot_be_made(tmp_path):
    one_line_error(kpgen("generate", "-o", "/proc/kpgen-x"), 2, "/proc/kpgen-x")


def test_new_with_a_missing_kernel_directory_writes_nothing(tmp_path):
    one_line_error(kpgen("new", "fix_x", "--target", "cmdline_proc_show", "--kdir", "/nonexistent", cwd=tmp_path),
                   3, "/nonexistent")
    assert not (tmp_path / "fix_x").exists()


def test_check_of_a_file_that_is_no_module(tmp_path):
    (tmp_path / "x.ko").write_text("not elf\n")
    one_line_error(kpgen("check", str(tmp_path / "x.ko")), 2, "x.ko", "not an ELF file")


def test_snapshot_dry_run_names_no_directory_that_is_gone():
    proc = kpgen("snapshot", "--dry-run")
    assert proc.returncode == 0
    assert "kpgen-snapshot-" not in proc.stdout and "--rwdir DIR" in proc.stdout


def test_patch_needs_an_existing_core(tmp_path):
    one_line_error(kpgen("patch", str(SAMPLE), "--core", "/nonexistent", "-o", str(tmp_path / "p")), 2,
                   "--core /nonexistent", "kpgen generate")
    assert not (tmp_path / "p").exists()


def _tree_for(name: str, where: Path) -> kernel.Kernel:
    k = kernel.probe(next(m for m in kernel.matrix() if m.name == name).kdir())
    generate.generate_tree(k, where, [])
    return k


def test_patch_refuses_a_core_of_another_kernel(tmp_path):
    _tree_for("6.12", tmp_path / "tree")
    k61 = next(m for m in kernel.matrix() if m.name == "6.1").kdir()
    one_line_error(kpgen("patch", str(SAMPLE), "--kdir", str(k61), "--core", str(tmp_path / "tree/core"),
                         "-o", str(tmp_path / "p")), 2, "generated for kernel 6.12")
    assert not (tmp_path / "p").exists()


def test_generate_refuses_to_overwrite_another_kernels_tree(tmp_path):
    _tree_for("6.12", tmp_path / "tree")
    before = {p: p.read_bytes() for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    k61 = next(m for m in kernel.matrix() if m.name == "6.1").kdir()
    one_line_error(kpgen("generate", "--kdir", str(k61), "-o", str(tmp_path / "tree")), 2, "generated for 6.12")
    assert before == {p: p.read_bytes() for p in (tmp_path / "tree").rglob("*") if p.is_file()}


def test_one_default_kernel_for_kpgen_and_the_makefile():
    default = kernel.default_kdir()
    assert kernel.series(default.parent.name) == kernel.matrix()[0].name
    out = subprocess.run(["make", "-s", "-n", "generate"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"--kdir {default} -o kmod" in out


@pytest.mark.parametrize("argv", [["boot-test", "--stress-cycles", "0"], ["boot-test", "--stress-cycles", "-5"],
                                  ["boot-test", "--timeout", "0"], ["vm", "--timeout", "-1", "true"]])
def test_counts_below_one_are_refused(argv):
    one_line_error(kpgen(*argv), 2, argv[1])


def test_diff_livepatch_backend_refuses_a_core(tmp_path):
    """The livepatch backend builds without kpgen's core: --core is refused before any work."""
    diff = REPO / "tests/diffs/meminfo_string/6.1.patch"
    one_line_error(kpgen("diff", str(diff), "--backend", "livepatch", "--build", "--core", str(tmp_path / "core"),
                         "-o", str(tmp_path / "out")), 2, "--core", "livepatch backend")
    assert not (tmp_path / "out").exists()
