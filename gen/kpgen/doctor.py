"""`kpgen doctor`: what this machine has for generating, building and boot-testing, and how to
get what is missing."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

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


def checks() -> list[Check]:
    provision = "run `make provision` (as root)"
    result = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "Python 3.11 or newer")]
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
        _tool("make", provision, ["make", "--version"]),
        _tool("gcc", provision, ["gcc", "--version"]),
        _tool("qemu-system-x86_64", "apt-get install qemu-system-x86", ["qemu-system-x86_64", "--version"]),
        _tool("vng", "pip install virtme-ng", ["vng", "--version"]),
        kvm_check(),
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
                 else f"{len(missing)} missing: `make provision` installs all of it")
    return "\n".join(lines)


def healthy(items: list[Check]) -> bool:
    return all(c.ok for c in items if c.required)
