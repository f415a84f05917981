"""`kpgen install` and `kpgen uninstall`: live patches installed for boot on this machine (or
under --root, an image being built), in the layout of layout.py, with depmod.

Installing checks everything first and writes nothing on a refusal: each module is for an
installed kernel release, of one build of it; a patch of kpgen's core comes with the core (or
finds it installed); a release whose patches a package installed is left to the package manager;
and, for the running kernel when it requires signed modules, each module is signed. Files are
written whole (a temporary file renamed over the old one). Uninstalling the last patch of a
release removes everything installing it put there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .. import __version__, render
from ..errors import KpgenError, UsageError
from ..resources import LOADER_SCRIPT
from . import layout, signature
from .layout import CORE, Layout, Order
from .modfile import ModuleFile

SIG_ENFORCE = Path("sys/module/module/parameters/sig_enforce")
LOCKDOWN = Path("sys/kernel/security/lockdown")


def unit_text(lay: Layout, owner: str) -> bytes:
    """The boot unit of a release's patches (templates/fleet/kpgen@.service.j2)."""
    release = lay.release.replace("%", "%%")
    return render.render_fleet("kpgen@.service.j2", release=lay.release, release_arg=release,
                               script=lay.on_target(lay.script).replace("%", "%%"), unit_name=lay.unit_name,
                               owner=owner, kpgen=__version__)


def write_file(path: Path, content: bytes, mode: int = 0o644) -> None:
    """Write a whole file: a temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def boot_files(lay: Layout, owner: str) -> dict[Path, tuple[bytes, int]]:
    """The loader and the unit a release's patches need at boot: path -> (content, mode)."""
    return {lay.script: (LOADER_SCRIPT.read_bytes(), 0o755), lay.unit: (unit_text(lay, owner), 0o644)}


def wants_target(lay: Layout) -> str:
    """The activation symlink's target, relative: `../kpgen@RELEASE.service`."""
    return f"../{lay.unit_name}"


def package_owner(root: Path, path_on_target: str) -> str | None:
    """The Debian package that owns a file, from the dpkg database under root, or None."""
    admindir = Path(root) / "var/lib/dpkg"
    if not (admindir / "status").is_file() or shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", f"--admindir={admindir}", "-S", path_on_target],
                          capture_output=True, text=True, check=False)
    return proc.stdout.split(":", 1)[0] if proc.returncode == 0 else None


def depmod(root: Path, release: str) -> None:
    base = [] if Path(root).resolve() == Path("/") else ["-b", str(root)]
    argv = ["depmod", "-a", *base, release]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KpgenError("depmod not found: install kmod") from None
    if proc.returncode != 0:
        raise KpgenError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()}: the files are "
                         "in place; run depmod again once the cause is fixed")


def _enforces_signatures(root: Path) -> str:
    """Why the running kernel refuses unsigned modules, or "" when it does not."""
    enforce, lockdown = Path(root) / SIG_ENFORCE, Path(root) / LOCKDOWN
    if enforce.is_file() and enforce.read_text().strip() == "Y":
        return "module.sig_enforce=1"
    if lockdown.is_file() and not lockdown.read_text().strip().startswith("[none]"):
        return "kernel lockdown (Secure Boot)"
    return ""


def _check_release(root: Path, lay: Layout, mods: list[ModuleFile]) -> Order:
    """Everything that must hold before a release's patches are written; its current order."""
    moddir = Path(root) / "lib/modules" / lay.release
    if not (moddir / "modules.dep").is_file() and not (moddir / "kernel").is_dir():
        raise UsageError(f"{mods[0].path} is for {lay.release}, which is not installed here ({moddir} holds no "
                         f"kernel): install linux-image-{lay.release} first")
    owner = package_owner(root, lay.on_target(lay.order_file))
    if owner is not None:
        raise UsageError(f"the live patches of {lay.release} were installed by the package {owner}: "
                         "install a newer version of it (kpgen package), or remove it first")
    order = layout.read_order(lay.order_file) or Order("", ())
    builds = {m.kernel_version for m in mods if m.kernel_version} | ({order.version} if order.version else set())
    if len(builds) > 1:
        raise UsageError(f"the modules for {lay.release} were made for different builds of it ("
                         + "; ".join(sorted(builds)) + "): a live patch fits one build")
    if lay.release == os.uname().release and Path(root).resolve() == Path("/"):
        why = _enforces_signatures(root)
        unsigned = [str(m.path) for m in mods if signature.read(m.path) is None]
        if why and unsigned:
            raise UsageError(f"the running kernel requires signed modules ({why}), and {', '.join(unsigned)} "
                             "is not signed: it would not load at boot; build with --sign-key and --sign-cert")
    return Order(order.version or next(iter(builds), ""), order.names)


def install(paths: Iterable[Path], core: Path | None = None, root: Path = Path("/")) -> list[str]:
    """Install patch modules (and the core they need) for boot; returns the lines to show."""
    mods = [ModuleFile.read(p) for p in paths]
    if core is not None:
        core_mod = ModuleFile.read(core)
        if core_mod.backend != "core":
            raise UsageError(f"--core {core}: {core_mod.name} is not kpgen's core (kpatch.ko)")
        mods.append(core_mod)
    names = [m.name for m in mods]
    if len(set(names)) != len(names):
        raise UsageError(f"a module name is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    by_release: dict[str, list[ModuleFile]] = {}
    for m in mods:
        by_release.setdefault(m.release, []).append(m)
    plans = []
    for release, group in sorted(by_release.items()):
        lay = Layout(Path(root), release, vendor=False)
        order = _check_release(root, lay, group)
        needs_core = any(m.backend == "kpatch" for m in group)
        has_core = any(m.backend == "core" for m in group) or lay.module(CORE).is_file()
        if needs_core and not has_core:
            users = ", ".join(m.name for m in group if m.backend == "kpatch")
            raise UsageError(f"kpgen's core is needed by {users}, and none is installed for {release}: "
                             "pass --core PATH (the kpatch.ko built for that kernel)")
        for m in sorted(group, key=lambda m: m.backend != "core"):
            order = order.with_name(m.name)
        plans.append((lay, group, order))
    lines = []
    for lay, group, order in plans:
        for m in group:
            write_file(lay.module(m.name), m.path.read_bytes())
        write_file(lay.order_file, order.text(lay.release).encode())
        for path, (content, mode) in boot_files(lay, "kpgen install").items():
            write_file(path, content, mode)
        if not lay.wants_link.is_symlink():
            lay.wants_link.parent.mkdir(parents=True, exist_ok=True)
            lay.wants_link.symlink_to(wants_target(lay))
        depmod(root, lay.release)
        for m in group:
            lines.append(f"installed {m.name} ({m.backend}) for {lay.release}: {lay.on_target(lay.module(m.name))}")
        lines.append(f"{lay.release}: loaded at boot by {lay.unit_name} in this order: {', '.join(order.names)}")
    return lines


def _backend_of(lay: Layout, name: str) -> str:
    try:
        return ModuleFile.read(lay.module(name)).backend
    except UsageError:
        return ""


def uninstall(names: list[str], release: str, remove_all: bool = False, root: Path = Path("/")) -> list[str]:
    """Remove installed patches of a release (every one with remove_all); the core goes with the
    last patch that needs it, and the loader, the unit and the directories with the last patch."""
    lay = Layout(Path(root), release, vendor=False)
    order = layout.read_order(lay.order_file)
    if order is None:
        raise UsageError(f"no live patch is installed for {release} ({lay.on_target(lay.order_file)} does not exist)")
    owner = package_owner(root, lay.on_target(lay.order_file))
    if owner is not None:
        raise UsageError(f"the live patches of {release} were installed by the package {owner}: remove them with "
                         f"your package manager (apt remove {owner})")
    names = list(order.names) if remove_all else [n.replace("-", "_") for n in names]
    unknown = [n for n in names if n not in order.names]
    if unknown:
        raise UsageError(f"not installed for {release}: {', '.join(unknown)} (installed: {', '.join(order.names)})")
    left = Order(order.version, tuple(n for n in order.names if n not in names))
    if left.names == (CORE,) or (CORE in left.names and
                                 not any(_backend_of(lay, n) == "kpatch" for n in left.names if n != CORE)):
        left = left.without(CORE)
        names.append(CORE)
    lines = []
    for name in names:
        lay.module(name).unlink(missing_ok=True)
        lines.append(f"uninstalled {name} for {release}"
                     + (f": it stays loaded until `kpgen unload {name}` or a reboot"
                        if release == os.uname().release and Path("/sys/module", name).is_dir()
                        and Path(root).resolve() == Path("/") else ""))
    if left.names:
        write_file(lay.order_file, left.text(release).encode())
    else:
        for path in (lay.order_file, lay.script, lay.unit, lay.wants_link):
            path.unlink(missing_ok=True)
        for d in (lay.modules_dir, lay.modules_dir.parent, lay.script.parent, lay.libdir, lay.wants_link.parent):
            with contextlib.suppress(OSError):  # not empty: another program's files are there
                d.rmdir()
        lines.append(f"{release}: no live patch is installed any more; {lay.unit_name} is gone")
    depmod(root, release)
    return lines
