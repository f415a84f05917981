"""Boot a kernel in QEMU through virtme-ng and run one command in it.

The run is described as data (VmRun); argv() is the exact command, so --dry-run can
print it and tests can check it without booting anything.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KpgenError


@dataclass(frozen=True)
class VmRun:
    kernel_image: Path
    command: str
    cpus: int = 2
    memory: str = "1G"
    rwdirs: tuple[Path, ...] = ()
    timeout: int = 900
    # The kernel's console in the output, from the first line of the boot (virtme-ng's verbose
    # console, at the kernel's default console level): a panic, a lockup or a hang leaves its
    # log even when the guest never finishes, and even when the ring buffer wrapped.
    kernel_console: bool = True
    kvm: bool = False
    vng: str = "vng"
    # One host thread runs every vCPU in turn (QEMU's -accel tcg,thread=single). Under
    # multi-threaded TCG, QEMU 7.2 can keep running an instruction that another vCPU has just
    # rewritten, and a guest that patches code while it runs (ftrace, live patches) then hangs:
    # see docs/testing.md, "The emulator". The benchmark runs this way too.
    single_thread: bool = True

    def argv(self) -> list[str]:
        argv = [self.vng, "--run", str(self.kernel_image)]
        if not self.kvm:
            argv.append("--disable-kvm")
        argv += ["--cpus", str(self.cpus), "--memory", self.memory]
        if self.single_thread and not self.kvm:
            argv.append("--qemu-opts=-accel tcg,thread=single")
        if self.kernel_console:
            argv.append("--verbose")
        for d in self.rwdirs:
            argv += ["--rwdir", str(d)]
        argv += ["--exec", self.command]
        return argv

    def shell(self) -> str:
        return shlex.join(self.argv()) + " </dev/null"


@dataclass
class VmResult:
    returncode: int | None
    output: str
    seconds: float
    timed_out: bool = False
    argv: list[str] = field(default_factory=list)


def run(vm: VmRun, on_line: Callable[[str], None] | None = None) -> VmResult:
    """Boot, run the command, return its status and the console output.

    stdin is /dev/null: virtme-ng cuts --exec output short when stdin is not a tty.
    on_line, if given, sees each output line as it comes (progress for long boots).
    virtme-ng and QEMU run in a process group of their own: on timeout the whole group is
    killed, so that no QEMU outlives the run (a hung guest keeps its pipe open otherwise).
    """
    if not Path(vm.kernel_image).is_file():
        raise KpgenError(f"kernel image {vm.kernel_image} does not exist: install the linux-image package")
    argv = vm.argv()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise KpgenError(f"{vm.vng} not found: install virtme-ng (pip install virtme-ng)") from None
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=vm.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:
        _kill_group(proc)
        raise
    # whatever is left of the group (QEMU, virtiofsd) goes too, after a clean exit as well
    _kill_group(proc)
    reader.join(timeout=30)
    seconds = time.monotonic() - start
    output = "".join(lines)
    if timed_out:
        return VmResult(None, output, seconds, timed_out=True, argv=argv)
    return VmResult(proc.returncode, output, seconds, argv=argv)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
