"""The delivery commands at the command line: what they print, and every refusal as one line
with its exit status, before anything reaches the running kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fleetkit import module, with_metadata

from kpgen import kernel
from kpgen.fleet import signature
from kpgen.harness import delivery
from kpgen.resources import TEST_PATCHES

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())
FLEET_V1 = TEST_PATCHES / "test_fleet_v1" / "test_fleet_v1.toml"


def kpgen(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpgen", *argv], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpgen: error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_info_shows_the_spec_the_diff_and_the_build(tmp_path):
    ko = with_metadata(module(tmp_path, "test_fleet_v1"), FLEET_V1, K61)
    out = kpgen("info", str(ko)).stdout
    assert f"  kernel:      {K61.release} (#1 SMP " in out
    assert "  backend:     kpatch (a patch module of kpgen's core, kpatch.ko)" in out
    assert "  signature:   not signed" in out
    assert "  cumulative:  yes: it takes over every enabled patch" in out
    assert "    vmlinux cmdline_proc_show -> test_fleet_v1_cmdline_show" in out
    assert "spec (test_fleet_v1.toml):\n    # Test patch: version 1" in out
    assert "source diff (fix.patch):" in out
    assert kpgen("info", "--diff", str(ko)).stdout == (FLEET_V1.parent / "fix.patch").read_text()
    doc = json.loads(kpgen("info", "--json", str(ko)).stdout)
    assert doc["name"] == "test_fleet_v1" and doc["metadata"]["diff"][0] == "fix.patch" and doc["signature"] is None


def test_info_of_a_module_without_metadata(tmp_path):
    ko = module(tmp_path, "fix", depends="", livepatch=True)
    proc = kpgen("info", str(ko))
    assert proc.returncode == 0 and "(no kpgen metadata: the module was not built by `kpgen build`)" in proc.stdout
    one_line_error(kpgen("info", "--diff", str(ko)), 2, "no kpgen metadata")


def test_list_describes_the_running_kernel():
    doc = json.loads(kpgen("list", "--json").stdout)
    assert doc["release"] == os.uname().release and isinstance(doc["patches"], list)
    assert kpgen("list").stdout.startswith(f"live patches of {os.uname().release} (")


def test_refusals_before_the_kernel_is_touched(tmp_path):
    other = module(tmp_path, "fix", release="5.10.0-99-amd64")
    if os.geteuid() == 0:
        one_line_error(kpgen("load", str(other)), 2, "was built for 5.10.0-99-amd64; the running kernel is")
        one_line_error(kpgen("unload", "kpgen_no_such_patch"), 2, "no live patch named kpgen_no_such_patch is loaded")
    one_line_error(kpgen("load", "--timeout", "0", str(other)), 2, "--timeout 0")
    one_line_error(kpgen("load", str(tmp_path / "none.ko")), 2)
    one_line_error(kpgen("info", str(tmp_path / "none.ko")), 2, "no such module file")
    one_line_error(kpgen("uninstall", "--root", str(tmp_path)), 2, "name the patches to uninstall, or give --all")
    one_line_error(kpgen("uninstall", "--all", "fix", "--root", str(tmp_path)), 2, "--all")
    one_line_error(kpgen("package", "--version", "x", str(other)), 2, "is not a Debian version")
    one_line_error(kpgen("build", "--sign-key", str(tmp_path / "k.pem"), str(tmp_path)), 2,
                   "--sign-key needs --sign-cert")
    one_line_error(kpgen("build", str(tmp_path), env={"KPGEN_SIGN_CERT": str(tmp_path / "c.pem")}), 2,
                   "--sign-cert needs --sign-key (or KPGEN_SIGN_KEY)")


def test_check_shows_the_signer(tmp_path):
    key = delivery.make_key(tmp_path / "key")
    ko = module(tmp_path, "fix", depends="", livepatch=True)
    signature.sign(K61, ko, key)
    out = kpgen("check", "--kdir", str(K61.kdir), str(ko)).stdout
    assert f"{ko}: signed by 'kpgen throwaway test key' (key " in out


def test_install_and_uninstall_through_the_command_line(tmp_path):
    root = tmp_path / "image"
    (root / "lib/modules" / K61.release / "kernel").mkdir(parents=True)
    lp = module(tmp_path, "lp_fix", depends="", livepatch=True)
    proc = kpgen("install", "--root", str(root), str(lp))
    assert proc.returncode == 0, proc.stderr
    assert f"kpgen: installed lp_fix (livepatch) for {K61.release}: /lib/modules/{K61.release}/extra/kpgen/lp_fix.ko" \
        in proc.stdout
    assert Path(root / "etc/systemd/system" / f"kpgen@{K61.release}.service").is_file()
    proc = kpgen("uninstall", "--root", str(root), "--release", K61.release, "lp_fix")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "etc/systemd/system" / f"kpgen@{K61.release}.service").exists()


@pytest.mark.parametrize("command", ["load", "unload", "list", "info", "install", "uninstall", "package"])
def test_every_delivery_command_has_help(command):
    assert kpgen(command, "--help").returncode == 0
