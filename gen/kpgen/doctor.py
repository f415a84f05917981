"""`kpgen doctor`: what this machine has for making live patches, and how to get what is missing.

By default it speaks to someone who installed kpgen (pip or pipx): the kernels whose headers are
installed, the default one first, and for each what kpgen reads from it; the compiler; what
`kpgen diff`, `kpgen vm` and `kpgen snapshot` need. `--dev` adds what kpgen's own tests need:
every kernel of the matrix, the static checkers, the linters, podman.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import cstyle, kernel as kmod, snapshot
from .errors import KpgenError

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    lines = (out.stdout or out.stderr).strip().splitlines()
    # the first line that carries a version number (shellcheck's first line does not)
    return next((line.strip() for line in lines if any(ch.isdigit() for ch in line)), lines[0] if lines else "?")


def _tool(name: str, fix: str, version: list[str] | None = None, required: bool = True) -> Check:
    path = shutil.which(name)
    if not path:
        return Check(name, False, "not found", fix, required)
    return Check(name, True, _version(version) if version else path, required=required)


def kvm_check(dev: str = "/dev/kvm") -> Check:
    """Whether KVM answers; kpgen boots with TCG (--disable-kvm) either way."""
    note = "kpgen boots under TCG either way"
    if not os.path.exists(dev):
        return Check("KVM", False, f"{dev} absent; {note}", required=False)
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Check("KVM", False, f"{dev} does not open ({exc.strerror}); {note}", required=False)
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm_fd)
    except OSError as exc:
        return Check("KVM", False, f"{dev} opens but cannot create a VM ({exc.strerror}); {note}", required=False)
    finally:
        os.close(fd)
    return Check("KVM", True, f"{dev} answers (API {api}) and creates a VM (booting with it was not tried); {note}",
                 required=False)


def _kernel_checks(kdir: Path, label: str, fix: str) -> list[Check]:
    """A kernel's headers, and its image (kpgen reads its symbols and prototypes there)."""
    try:
        k = kmod.probe(kdir)
    except KpgenError as exc:
        return [Check(f"{label} headers", False, str(exc).splitlines()[0], fix)]
    image = f"apt-get install linux-image-{k.release}"
    return [Check(f"{label} headers", True, f"{k.release}: {k.kdir}"),
            Check(f"{label} image", k.vmlinuz.is_file(),
                  f"{k.vmlinuz}: its symbols, mcount table and BTF check targets and prototypes offline"
                  if k.vmlinuz.is_file() else f"{k.vmlinuz} absent: targets and prototypes are not checked "
                  "before loading, and `kpgen vm` cannot boot it", image, required=False)]


def user_checks() -> list[Check]:
    """What a user of the installed package needs, and has."""
    result = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "Python 3.11 or newer")]
    running = os.uname().release
    default = kmod.running_kdir()
    headers = f"apt-get install linux-headers-{running}"
    if default is not None:
        result += _kernel_checks(default, f"kernel {running} (running, the default)", headers)
    else:
        try:
            fallback = kmod.matrix_kdir()
        except KpgenError as exc:
            fallback = None
            result.append(Check("kernel headers", False, str(exc), f"{headers} (or linux-headers-amd64)"))
        result.append(Check(f"kernel {running} (running)", False, "its headers are not installed: the default "
                            f"kernel is {fallback.parent.name if fallback else 'none'}", headers, required=False))
        if fallback is not None:
            result += _kernel_checks(fallback, f"kernel {fallback.parent.name} (the default)", headers)
    others = sorted(p for p in Path("/lib/modules").glob("*/build") if p.is_dir() and p != default
                    and p.parent.name != running and (default is not None or p != kmod.matrix_kdir()))
    if others:
        result.append(Check("other kernels", True, ", ".join(p.parent.name for p in others)
                            + " (--kdir /lib/modules/RELEASE/build)", required=False))
    result += [
        _tool("make", "apt-get install make", ["make", "--version"]),
        _tool("gcc", "apt-get install gcc (the version the kernel was built with: see its CONFIG_CC_VERSION_TEXT)",
              ["gcc", "--version"]),
        Check("libclang", importlib.util.find_spec("clang") is not None, "the C front end of kpgen diff and kpgen new",
              "pip install libclang (a dependency of kpgen: reinstall kpgen)"),
        _tool("kallsyms-finder", "pip install vmlinux-to-elf (a dependency of kpgen: reinstall kpgen)",
              required=False),
        _tool("apt-get", "kpgen source downloads Debian's linux-source-X.Y with it; elsewhere, give "
              "kpgen diff --source DIR", required=False),
        _tool("qemu-system-x86_64", "apt-get install qemu-system-x86 (for kpgen vm and kpgen snapshot)",
              ["qemu-system-x86_64", "--version"], required=False),
        _tool("vng", "pip install virtme-ng (a dependency of kpgen: reinstall kpgen)", ["vng", "--version"],
              required=False),
        kvm_check(),
    ]
    return result


def dev_checks() -> list[Check]:
    """What kpgen's own tests and benchmarks need (a checkout, `make provision`)."""
    provision = "run `make provision` (as root)"
    result: list[Check] = []
    for m in kmod.matrix():
        pkgs = " ".join(m.packages)
        try:
            k = kmod.probe(m.kdir())
        except KpgenError as exc:
            result.append(Check(f"kernel {m.name}", False, str(exc).splitlines()[0], f"apt-get install {pkgs}"))
            continue
        result.append(Check(f"kernel {m.name} headers", True, f"{k.release}: {k.features.summary()}"))
        result.append(Check(f"kernel {m.name} image", k.vmlinuz.is_file(), str(k.vmlinuz), f"apt-get install {pkgs}"))
        snap = snapshot.cache_root() / k.release
        result.append(Check(f"kernel {m.name} symbol snapshot", snap.is_dir(), str(snap),
                            f"kpgen snapshot --kdir {k.kdir} (or any boot test)", required=False))
    result += [
        _tool("qemu-system-x86_64", provision, ["qemu-system-x86_64", "--version"]),
        _tool("vng", provision, ["vng", "--version"]),
        _tool("sparse", "apt-get install sparse", ["sparse", "--version"]),
        Check("checkpatch.pl", cstyle.checkpatch_path().is_file(), str(cstyle.checkpatch_path()), provision),
        _tool("shellcheck", "apt-get install shellcheck", ["shellcheck", "--version"]),
        _tool("ruff", "pip install -e '.[test]'", ["ruff", "--version"]),
        _tool("mypy", "pip install -e '.[test]'", ["mypy", "--version"]),
        _tool("hadolint", "pip install -e '.[test]'", ["hadolint", "--version"]),
        Check("matplotlib", importlib.util.find_spec("matplotlib") is not None, "for kpgen bench's plot",
              "pip install -e '.[bench]'", required=False),
        _tool("podman", "ci/container.sh installs it", ["podman", "--version"], required=False),
    ]
    return result


def checks(contributor: bool = False) -> list[Check]:
    """The user's checks, and with `contributor` those of kpgen's own tests (the same tool once)."""
    items = user_checks()
    if contributor:
        extra = dev_checks()
        names = {c.what for c in extra}
        items = [c for c in items if c.what not in names] + extra
    return items


def report(items: list[Check]) -> str:
    width = max(len(c.what) for c in items)
    lines = []
    for c in items:
        mark = "ok  " if c.ok else ("MISS" if c.required else "note")
        line = f"{mark} {c.what:{width}}  {c.detail}"
        if not c.ok and c.fix:
            line += f"\n     {'':{width}}  -> {c.fix}"
        lines.append(line)
    missing = [c for c in items if c.required and not c.ok]
    lines.append("everything kpgen needs is here" if not missing
                 else f"{len(missing)} missing: the -> lines say how to get each (in a checkout of kpgen, "
                 "`make provision` installs all of it)")
    return "\n".join(lines)


def healthy(items: list[Check]) -> bool:
    return all(c.ok for c in items if c.required)
