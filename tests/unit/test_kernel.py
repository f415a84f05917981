"""Probing kernel build directories: real installed ones, and broken copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kpgen import cli, kernel
from kpgen.errors import KernelError

MATRIX = {m.name: m for m in kernel.matrix()}


def test_features_of_6_1():
    k = kernel.probe(MATRIX["6.1"].kdir())
    assert k.release.startswith("6.1.")
    assert k.features.ftrace_ip_setter == "ftrace_instruction_pointer_set"
    assert k.features.ksym_cb_has_mod and not k.features.module_ksym_takes_modname
    assert not k.features.has_ibt
    # 6.1's per-ip register_ftrace_direct(ip, addr) is not the ops-based API the core uses
    assert k.features.ftrace_direct == "register_ftrace_direct_multi"
    assert not k.features.ftrace_direct_unregister_frees


def test_features_of_6_12():
    k = kernel.probe(MATRIX["6.12"].kdir())
    assert k.release.startswith("6.12.")
    assert k.features.ftrace_ip_setter == "ftrace_regs_set_instruction_pointer"
    assert not k.features.ksym_cb_has_mod and k.features.module_ksym_takes_modname
    assert k.features.has_ibt
    assert k.features.ftrace_direct == "register_ftrace_direct"
    assert k.features.ftrace_direct_unregister_frees


def test_direct_calls_need_their_exports(tmp_path):
    """A kernel whose Module.symvers lacks the direct-call exports has no direct calls: the
    core's direct_calls parameter then refuses 1."""
    kdir = fake_kdir(tmp_path)
    symvers = kdir / "Module.symvers"
    symvers.write_text("".join(line for line in symvers.read_text().splitlines(keepends=True)
                               if "unregister_ftrace_direct" not in line))
    assert kernel.probe(kdir).features.ftrace_direct == ""


def fake_kdir(tmp_path: Path) -> Path:
    """A copy of the real 6.1 build dir's small files, headers reached through `source`."""
    real = MATRIX["6.1"].kdir()
    kdir = tmp_path / "k" / "build"
    (kdir / "include/generated").mkdir(parents=True)
    for name in (".config", "Module.symvers", "include/generated/utsrelease.h"):
        shutil.copy(real / name, kdir / name)
    (kdir / "Makefile").write_text("# no include\n")
    (tmp_path / "k" / "source").symlink_to(kernel.header_roots(real)[-1])
    return kdir


def test_fake_copy_probes_like_the_real_one(tmp_path):
    assert kernel.probe(fake_kdir(tmp_path)).features == kernel.probe(MATRIX["6.1"].kdir()).features


def test_missing_kdir(tmp_path):
    with pytest.raises(KernelError, match="does not exist"):
        kernel.probe(tmp_path / "nope")


def test_unprepared_kdir(tmp_path):
    with pytest.raises(KernelError, match=r"missing \.config, Module\.symvers"):
        kernel.probe(tmp_path)


def test_missing_option_is_named(tmp_path):
    kdir = fake_kdir(tmp_path)
    cfg = kdir / ".config"
    cfg.write_text(cfg.read_text().replace("CONFIG_KPROBES=y", "# CONFIG_KPROBES is not set"))
    with pytest.raises(KernelError, match="CONFIG_KPROBES"):
        kernel.probe(kdir)


def test_no_ftrace_ip_option(tmp_path):
    kdir = fake_kdir(tmp_path)
    cfg = kdir / ".config"
    text = cfg.read_text()
    for opt in kernel.FTRACE_IP_OPTIONS:
        text = text.replace(f"{opt}=y", f"# {opt} is not set")
    cfg.write_text(text)
    with pytest.raises(KernelError, match="DYNAMIC_FTRACE_WITH_ARGS or"):
        kernel.probe(kdir)


def test_missing_export(tmp_path):
    kdir = fake_kdir(tmp_path)
    sv = kdir / "Module.symvers"
    sv.write_text("".join(line for line in sv.read_text().splitlines(True) if "\tstop_machine\t" not in line))
    with pytest.raises(KernelError, match="does not export stop_machine"):
        kernel.probe(kdir)


def test_cli_reports_bad_kdir_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", "--kdir", str(tmp_path / "nope"), "-o", str(out)]) == 3
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_cli_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["generate", "--kdir", str(MATRIX["6.1"].kdir()), "-o", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err
