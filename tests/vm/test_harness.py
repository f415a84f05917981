"""The boot harness itself, with a real boot: a guest that hangs fails within its timeout, leaves
no QEMU behind and keeps its kernel log up to the hang; a warning anywhere in that log is a splat
the report names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen import kernel, splat
from kpgen.harness import boottest

pytestmark = [pytest.mark.vm, pytest.mark.harness]

TIMEOUT = 150
MARK = "kpgen-harness-test: about to hang"


def _qemu_pids_using(path: Path) -> list[int]:
    """The QEMU processes whose command line names path (the guest's build tree)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(str(path).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def test_a_hung_guest_fails_in_time_keeps_its_log_and_its_warning(
        built: Callable[[str], boottest.BuiltTree]) -> None:
    tree = built(kernel.matrix()[0].name)
    ko = (tree.root / "modules/kpgen_test_warn/kpgen_test_warn.ko").resolve()
    assert ko.is_file(), f"{ko} was not built"
    # the guest loads a module that warns, says so in the kernel log, then never ends
    command = f"insmod {ko} && echo '{MARK}' > /dev/kmsg && sleep infinity"
    argv = [sys.executable, "-m", "kpgen", "vm", "--kdir", str(tree.kernel.kdir), "--timeout", str(TIMEOUT), command]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 120, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.monotonic() - start
    log = proc.stdout
    assert proc.returncode != 0, "a guest that never finished was reported as a success"
    assert seconds <= TIMEOUT + 30, f"kpgen vm --timeout {TIMEOUT} returned after {seconds:.0f} s"
    assert "did not finish within --timeout" in proc.stderr
    assert not _qemu_pids_using(ko.parent), "a QEMU process outlived the run"
    # the kernel's console from the first line of the boot up to the hang
    assert "Linux version" in log, "the output holds no kernel boot line:\n" + log[-2000:]
    assert MARK in log, "the kernel log up to the hang was lost:\n" + log[-2000:]
    hits = splat.scan(log)
    assert any("WARNING:" in line and "kpgen_test_warn" in line for line in hits), (
        "the injected warning is not among the splats the scan names:\n" + "\n".join(hits))
