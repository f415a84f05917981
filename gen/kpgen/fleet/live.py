"""Load and unload live patches on the running kernel, for both backends (`kpgen load|unload`).

A module of kpgen's core loads in one step: the core checks every task inside stop_machine()
and applies the patch, or refuses with EBUSY naming the task (docs/messages.md); kpgen tries
again until the timeout. The core itself is loaded first when a patch needs it. A livepatch
module loads, then the kernel switches each task as it leaves the old code: kpgen waits for the
transition, names the tasks it waits for (their /proc/<pid>/task/<tid>/patch_state), and at the
timeout reverses it and removes the module. Unloading disables (the same waits), then removes.

Errors say what the kernel said, from its log (kmsg.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LiveError, UsageError
from . import kmsg, layout, signature, state
from .modfile import ModuleFile

# x86_64 system call numbers (kpgen supports x86_64 kernels only)
SYS_FINIT_MODULE = 313
SYS_DELETE_MODULE = 176
KPATCH_SYS = Path("/sys/kernel/kpatch")
LIVEPATCH_SYS = Path("/sys/kernel/livepatch")
SIG_ENFORCE = Path("/sys/module/module/parameters/sig_enforce")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
# a waiting transition is reported after this many seconds, and again when its tasks change
REPORT_AFTER = 2.0
POLL = 0.2

Progress = Callable[[str], None]


def _syscall(number: int, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(number), *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def finit_module(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _syscall(SYS_FINIT_MODULE, ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_int(0))
    finally:
        os.close(fd)


def delete_module(name: str) -> None:
    _syscall(SYS_DELETE_MODULE, ctypes.c_char_p(name.encode()), ctypes.c_uint(os.O_NONBLOCK))


def _write(path: Path, value: str) -> None:
    """One write(2) of `value` to a sysfs file, as `echo -n VALUE > FILE` does."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _errno_name(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def _check_kernel(mod: ModuleFile) -> None:
    uname = os.uname()
    if mod.release != uname.release:
        raise UsageError(f"{mod.path} was built for {mod.release}; the running kernel is {uname.release}: "
                         f"build it with --kdir /lib/modules/{uname.release}/build")
    if mod.kernel_version and mod.kernel_version != uname.version:
        raise UsageError(f"{mod.path} was built for {mod.release} {mod.kernel_version}, but the running "
                         f"kernel is {uname.version}, another build of that release: a live patch fits one build; "
                         "build it against the headers of the running kernel")


def _already_loaded(mod: ModuleFile) -> bool:
    """Whether this very module is loaded, and live; UsageError when another build of it is
    loaded, or it is loaded but disabled (or replaced by a cumulative patch)."""
    sysmod = Path("/sys/module") / mod.name
    if not sysmod.is_dir():
        return False
    loaded = (sysmod / "srcversion").read_text().strip() if (sysmod / "srcversion").is_file() else ""
    if mod.srcversion and loaded and loaded != mod.srcversion:
        raise UsageError(f"another {mod.name} is loaded (srcversion {loaded}; {mod.path} has {mod.srcversion}): "
                         f"unload it first (kpgen unload {mod.name})")
    patch = state.live_patch(mod.name)
    if patch is not None and not (patch.enabled and patch.listed):
        raise UsageError(f"{mod.name} is loaded, but disabled (or replaced by a cumulative patch): "
                         f"`kpgen unload {mod.name}`, then load it again")
    return True


def _signature_problem(mod: ModuleFile) -> str:
    """Why the kernel refused a module's signature, in words an operator can act on."""
    enforced = SIG_ENFORCE.is_file() and SIG_ENFORCE.read_text().strip() == "Y"
    lockdown = LOCKDOWN.read_text().strip() if LOCKDOWN.is_file() else ""
    why = ("module.sig_enforce=1" if enforced else
           "lockdown (Secure Boot)" if lockdown and not lockdown.startswith("[none]") else "its configuration")
    sig = signature.read(mod.path)
    if sig is None:
        return (f"the kernel requires signed modules ({why}), and {mod.path} is not signed: build it with "
                "--sign-key KEY --sign-cert CERT, with a key the kernel trusts (docs/delivery.md: enrolling a key)")
    return (f"the kernel requires signed modules ({why}) and does not trust the key {mod.path} is "
            f"{sig.describe()}: enrol its certificate (mokutil --import CERT, then reboot; docs/delivery.md)")


def _explain(mod: ModuleFile, exc: OSError, said: list[str]) -> str:
    err = exc.errno or 0
    what = f"cannot load {mod.name} ({mod.path}): {os.strerror(err)} ({_errno_name(err)})"
    if err == errno.EKEYREJECTED or (err == errno.EPERM and any(s.startswith("Lockdown: ") for s in said)):
        what += f": {_signature_problem(mod)}"
    elif err == errno.ENOENT and mod.backend == "kpatch" and not Path("/sys/module/kpatch").is_dir():
        what += ": kpgen's core is not loaded"
    return what + _said(said)


def _while_busy(attempt: Callable[[], None], name: str, backend: str, deadline: float, timeout: float,
                log: kmsg.KernelLog, progress: Progress, failure: Callable[[OSError, list[str]], str]) -> None:
    """Run `attempt` (a load, a write to `enabled`); while it fails with EBUSY, say why and try
    again every second until the deadline: kpgen's core refuses while a task is inside a function
    that changes (its log names the task), the kernel's livepatch while another patch's transition
    is under way. Any other error, or EBUSY at the deadline, raises LiveError with `failure`'s
    message."""
    shown = ""
    while True:
        try:
            attempt()
            return
        except OSError as exc:
            said = kmsg.about(log.read(), name)
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise LiveError(failure(exc, said)) from None
            reason = next((s for s in said if "is inside" in s or "cannot be checked" in s),
                          "busy" if backend != "livepatch" else "another livepatch transition is under way")
            if reason != shown:
                progress(f"{name}: {reason}; trying again for up to {timeout:.0f} s")
                shown = reason
            time.sleep(1)


def _said(said: list[str]) -> str:
    return ": the kernel says: " + "; ".join(said) if said else ""


def load_module(mod: ModuleFile, timeout: float, progress: Progress) -> list[str]:
    """Load one module, retrying while the core refuses it as busy (kpatch backend) until
    `timeout`; then, for a livepatch, wait for its transition. Returns the kernel's lines."""
    deadline = time.monotonic() + timeout
    with kmsg.KernelLog() as log:
        _while_busy(lambda: finit_module(mod.path), mod.name, mod.backend, deadline, timeout, log,
                    progress, lambda exc, said: _explain(mod, exc, said))
        lines = kmsg.about(log.read(), mod.name)
    if mod.backend == "livepatch":
        stuck = _wait_transition(mod.name, 1, deadline, progress)
        if stuck is not None:
            _reverse(mod.name, 0, timeout, progress)
            _remove(mod.name)
            raise LiveError(f"the livepatch transition of {mod.name} did not complete within {timeout:.0f} s: tasks "
                            f"stayed in the old code: {', '.join(stuck)}; {mod.name} was reverted and removed. "
                            "Try again when they are idle")
    return lines


def _wait_transition(name: str, target: int, deadline: float, progress: Progress) -> tuple[str, ...] | None:
    """Wait until the livepatch transition of `name` to `target` is over: for 1, its
    `transition` reads 0; for 0, the kernel has freed the patch (its directory is gone). The
    tasks still waited for are reported after REPORT_AFTER seconds and whenever they change.
    Returns None once it is over, or, at the deadline, the tasks it still waits for."""
    d = LIVEPATCH_SYS / name
    start = time.monotonic()
    reported: tuple[str, ...] = ()
    what = "patching" if target == 1 else "unpatching"

    def over() -> bool:
        if not d.exists():
            return True
        return target == 1 and (d / "transition").read_text().strip() == "0"

    while not over():
        now = time.monotonic()
        if now - start >= REPORT_AFTER or now >= deadline:
            waiting = _waiting(name, target)
            if waiting and waiting != reported:
                progress(f"{name}: the {what} transition waits for {len(waiting)} task(s): {', '.join(waiting)}")
                reported = waiting
        if now >= deadline:
            return reported or _waiting(name, target) or ("(no task named: see the kernel log)",)
        time.sleep(POLL)
    return None


def _patched_names(name: str) -> set[str]:
    patch = state.livepatch_patch(name)
    return {f.name for f in patch.functions} if patch else set()


def _waiting(name: str, target: int) -> tuple[str, ...]:
    """The tasks the transition waits for, each with the frame of a patched function it sits in
    (the original when patching, the patch module's code when unpatching)."""
    functions = _patched_names(name)
    out = []
    for task in state.waiting_tasks(target):
        frame = task.frame_in(functions, name if target == 0 else "")
        out.append(task.label() + (f" in {frame}" if frame else ""))
    return tuple(out)


def _reverse(name: str, enabled: int, timeout: float, progress: Progress) -> None:
    """Turn a transition around (writing the other value to the livepatch's `enabled` reverses
    it), and wait for the reversal: every task that moved moves back."""
    progress(f"{name}: reversing the transition")
    try:
        _write(LIVEPATCH_SYS / name / "enabled", str(enabled))
    except OSError as exc:
        raise LiveError(f"{name}: the transition could not be reversed ({os.strerror(exc.errno or 0)}): the "
                        f"kernel goes on with it; see {LIVEPATCH_SYS / name}") from None
    stuck = _wait_transition(name, enabled, time.monotonic() + timeout, progress)
    if stuck is not None:
        raise LiveError(f"{name}: the reversed transition did not complete within {timeout:.0f} s either (waiting for "
                        f"{', '.join(stuck)}): the kernel goes on with it; see {LIVEPATCH_SYS / name}/transition")


def _remove(name: str, tries: int = 50) -> None:
    """delete_module, trying again while the module is still held (kpgen's core lets a disabled
    patch go after a tasks-RCU grace period)."""
    for attempt in range(tries):
        try:
            delete_module(name)
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EAGAIN) or attempt == tries - 1:
                raise LiveError(f"cannot remove {name}: {os.strerror(exc.errno or 0)} ({_errno_name(exc.errno or 0)})"
                                ) from None
            time.sleep(0.2)


def find_core(explicit: Path | None, release: str) -> Path:
    """The core a kpatch-backend patch needs: --core, else the one installed for the running
    release (kpgen install, a package), else what modules.dep knows."""
    if explicit is not None:
        return explicit
    found = layout.installed_core(Path("/"), release)
    if found is None:
        raise UsageError(f"kpgen's core (kpatch.ko) is not loaded, and none is installed for {release}: "
                         "pass --core PATH (the kpatch.ko built beside the patch)")
    return found


@dataclass(frozen=True)
class Loaded:
    name: str
    backend: str
    already: bool
    lines: tuple[str, ...]
    seconds: float


def load(paths: list[Path], core: Path | None, timeout: float, progress: Progress) -> list[Loaded]:
    """Load each module in order (the core first when one needs it and it is not loaded)."""
    mods = [ModuleFile.read(p) for p in paths]
    for mod in mods:
        _check_kernel(mod)
    results = []
    needs_core = any(m.backend == "kpatch" for m in mods) and not any(m.backend == "core" for m in mods)
    if needs_core and not Path("/sys/module/kpatch").is_dir():
        core_mod = ModuleFile.read(find_core(core, os.uname().release))
        _check_kernel(core_mod)
        mods.insert(0, core_mod)
    for mod in sorted(mods, key=lambda m: m.backend != "core"):
        start = time.monotonic()
        if _already_loaded(mod):
            results.append(Loaded(mod.name, mod.backend, True, (), 0.0))
            continue
        lines = load_module(mod, timeout, progress)
        results.append(Loaded(mod.name, mod.backend, False, tuple(lines), time.monotonic() - start))
    return results


def module_name(arg: str) -> str:
    """A module name from a name or a module file's path."""
    path = Path(arg)
    if arg.endswith(".ko") and path.is_file():
        return ModuleFile.read(path).name
    return arg.replace("-", "_")


def unload(name: str, timeout: float, progress: Progress) -> list[str]:
    """Disable (waiting as load does), then remove one live patch, or kpgen's core when no patch
    uses it. Returns the kernel's lines."""
    patch = state.live_patch(name)
    deadline = time.monotonic() + timeout
    with kmsg.KernelLog() as log:
        if name == state.CORE:
            users = [p.name for p in state.live_patches() if p.backend == "kpatch"]
            if not Path("/sys/module/kpatch").is_dir():
                raise UsageError("kpgen's core is not loaded")
            if users:
                raise UsageError(f"kpgen's core is used by {', '.join(users)}: unload them first")
        elif patch is None:
            if Path("/sys/module", name).is_dir():
                raise UsageError(f"{name} is not a live patch (not in {KPATCH_SYS}, nor in {LIVEPATCH_SYS}, nor "
                                 "tainted K as a livepatch module): remove it with rmmod")
            raise UsageError(f"no live patch named {name} is loaded (`kpgen list` shows them)")
        elif patch.listed and (patch.enabled or patch.transition):
            sysfs = (KPATCH_SYS if patch.backend == "kpatch" else LIVEPATCH_SYS) / name / "enabled"
            _while_busy(lambda: _write(sysfs, "0"), name, patch.backend, deadline, timeout, log, progress,
                        lambda exc, said: f"cannot disable {name}: {os.strerror(exc.errno or 0)} "
                                          f"({_errno_name(exc.errno or 0)})" + _said(said))
        if patch is not None and patch.backend == "livepatch" and patch.listed:
            stuck = _wait_transition(name, 0, deadline, progress)
            if stuck is not None:
                _reverse(name, 1, timeout, progress)
                raise LiveError(f"the unpatching transition of {name} did not complete within {timeout:.0f} s: tasks "
                                f"stayed in the patched code: {', '.join(stuck)}; {name} was enabled again. "
                                "Try again when they are idle")
        _remove(name)
        return kmsg.about(log.read(), name)

