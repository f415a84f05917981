"""`kpgen package`: a Debian package of the live patches of one kernel release, made with
dpkg-deb alone. It holds the patch modules (and the core when one needs it) in the layout of
layout.py, the loader and the boot unit, and the metadata (each fix's description, its source
diff or sources, kpgen's version, the kernel release and build), and depends on the exact
linux-image of that build. Its maintainer scripts (templates/fleet/deb/) apply the patches when
it is installed, retire what an upgrade drops once the newer patches are live, and take them out
of the kernel before it is removed. The target machine needs nothing but the package.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, render
from ..errors import KpgenError, UsageError
from . import signature
from .install import boot_files, wants_target
from .layout import Layout, Order
from .modfile import ModuleFile

VERSION_RE = re.compile(r"(?:\d+:)?\d[A-Za-z0-9.+~-]*\Z")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")
DEFAULT_MAINTAINER = "kpgen <root@localhost>"


def package_name(release: str) -> str:
    return f"kpgen-patches-{release}"


@dataclass(frozen=True)
class Package:
    path: Path
    name: str
    version: str
    release: str
    modules: tuple[str, ...]
    depends: str


def _describe(mod: ModuleFile) -> dict:
    sig = signature.read(mod.path)
    meta = mod.meta
    functions = ([f"{f.object}: {f.target}" + (f",{f.sympos}" if f.sympos else "") + f" -> {f.replacement}"
                  for f in meta.functions] if meta is not None else [])
    source = ""
    if meta is not None and meta.diff is not None:
        source = f"{mod.name}.patch"
    elif meta is not None and meta.sources:
        source = ", ".join(f"{mod.name}.{name}" for name, _ in meta.sources)
    kind = {"core": "kpgen's core", "kpatch": "a patch of kpgen's core", "livepatch": "livepatch"}[mod.backend]
    return {"name": mod.name, "kind": kind, "description": mod.description, "functions": functions,
            "source": source, "signature": sig.describe() if sig else "not signed"}


def _check(mods: list[ModuleFile], version: str, maintainer: str) -> tuple[str, str]:
    """The release and kernel build the modules share; UsageError for anything wrong."""
    if not VERSION_RE.match(version):
        raise UsageError(f"--version {version!r} is not a Debian version: start with a digit, e.g. 1 or 2.1 "
                         "(each upgrade needs a higher one)")
    if not re.fullmatch(r"[^<>\n]+<[^<>@\s]+@[^<>\s]+>", maintainer):
        raise UsageError(f"--maintainer {maintainer!r}: give a name and an address, "
                         "as \"Kernel Team <kt@example.org>\"")
    releases = {m.release for m in mods}
    if len(releases) > 1:
        raise UsageError("a package holds the patches of one kernel release: "
                         + "; ".join(f"{m.path} is for {m.release}" for m in mods))
    names = [m.name for m in mods]
    if len(set(names)) != len(names):
        raise UsageError(f"a module name is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    patches = [m for m in mods if m.backend != "core"]
    if not patches:
        raise UsageError("give one patch module or more (the core alone patches nothing)")
    needs_core = any(m.backend == "kpatch" for m in mods)
    has_core = any(m.backend == "core" for m in mods)
    if needs_core and not has_core:
        users = ", ".join(m.name for m in mods if m.backend == "kpatch")
        raise UsageError(f"kpgen's core is needed by {users}: pass --core PATH (the kpatch.ko built with them)")
    if has_core and not needs_core:
        raise UsageError("no patch of this package needs kpgen's core (they are livepatch modules): drop --core")
    builds = {m.kernel_version for m in mods if m.kernel_version}
    if len(builds) > 1:
        raise UsageError(f"the modules were made for different builds of {next(iter(releases))}: "
                         + "; ".join(sorted(builds)))
    if len(patches) > 1 and any(m.meta is not None and m.meta.replace for m in patches):
        cumulative = ", ".join(m.name for m in patches if m.meta is not None and m.meta.replace)
        raise UsageError(f"{cumulative} is cumulative (replace = true): it takes over every other patch as it "
                         "loads; package it alone")
    return next(iter(releases)), next(iter(builds), "")


def build(paths: list[Path], version: str, out_dir: Path, core: Path | None = None,
          maintainer: str = DEFAULT_MAINTAINER) -> Package:
    """Make `<out_dir>/kpgen-patches-<release>_<version>_amd64.deb` from the modules, in the order
    given (the core first). Refuses to overwrite an existing file."""
    mods = [ModuleFile.read(p) for p in paths]
    if core is not None:
        core_mod = ModuleFile.read(core)
        if core_mod.backend != "core":
            raise UsageError(f"--core {core}: {core_mod.name} is not kpgen's core (kpatch.ko)")
        mods.insert(0, core_mod)
    release, build_version = _check(mods, version, maintainer)
    name = package_name(release)
    if not PACKAGE_RE.match(name):
        raise UsageError(f"the release {release!r} makes no valid Debian package name ({name})")
    out = Path(out_dir) / f"{name}_{version.split(':', 1)[-1]}_amd64.deb"
    if out.exists():
        raise UsageError(f"{out} exists: remove it, or give another --version or -o DIR")
    if shutil.which("dpkg-deb") is None:
        raise KpgenError("dpkg-deb not found: install dpkg")
    kernel_package = next((m.meta.kernel_package for m in mods if m.meta is not None and m.meta.kernel_package), "")
    image = f"linux-image-{release}"
    depends = (f"{image} (= {kernel_package}) | {image}-unsigned (= {kernel_package})" if kernel_package
               else image)
    with tempfile.TemporaryDirectory(prefix="kpgen-deb-") as tmp:
        root = Path(tmp) / "root"
        lay = Layout(root, release, vendor=True)
        order = Order(build_version, tuple(m.name for m in mods))
        files = _data_files(lay, mods, order, name, version)
        for path, (content, mode) in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        lay.wants_link.parent.mkdir(parents=True, exist_ok=True)
        lay.wants_link.symlink_to(wants_target(lay))
        installed_size = (sum(len(c) for c, _ in files.values()) + 1023) // 1024
        _control_files(root / "DEBIAN", lay, name, version, maintainer, depends, installed_size, mods, files)
        _dpkg_deb(root, out, mods)
    return Package(out, name, version, release, tuple(m.name for m in mods), depends)


def _data_files(lay: Layout, mods: list[ModuleFile], order: Order, name: str,
                version: str) -> dict[Path, tuple[bytes, int]]:
    files: dict[Path, tuple[bytes, int]] = {lay.module(m.name): (m.path.read_bytes(), 0o644) for m in mods}
    files[lay.order_file] = (order.text(lay.release).encode(), 0o644)
    files.update(boot_files(lay, f"the package {name}"))
    doc = lay.root / "usr/share/doc" / name
    for m in mods:
        if m.meta is None:
            continue
        if m.meta.diff is not None:
            files[doc / f"{m.name}.patch"] = (m.meta.diff[1].encode(), 0o644)
        else:
            for src, text in m.meta.sources:
                files[doc / f"{m.name}.{src}"] = (text.encode(), 0o644)
    readme = render.render_fleet("deb/README.j2", package=name, version=version, release=lay.release,
                                 kernel_version=order.version, kpgen=__version__, unit_name=lay.unit_name,
                                 modules=[_describe(m) for m in mods])
    files[doc / "README"] = (readme, 0o644)
    files[doc / "copyright"] = (COPYRIGHT.encode(), 0o644)
    return files


COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Comment: live patch modules made by kpgen from the Linux kernel's sources and the fixes in
 this directory; the loader and the unit are kpgen's.

Files: *
License: GPL-2.0-only
 On Debian systems, the complete text of the GNU General Public License version 2 is in
 /usr/share/common-licenses/GPL-2.
"""


def _control_files(debian: Path, lay: Layout, name: str, version: str, maintainer: str, depends: str,
                   installed_size: int, mods: list[ModuleFile], files: dict[Path, tuple[bytes, int]]) -> None:
    debian.mkdir(parents=True)
    description = [f"{m.name}: {m.description or 'a live patch'}" for m in mods if m.backend != "core"]
    build = _build(mods)
    description += [".", f"Made by kpgen {__version__}" + (f" for the build \"{build}\"" if build else "")
                    + f"; loaded at boot by {lay.unit_name}."]
    ctx = {"package": name, "version": version, "maintainer": maintainer, "depends": depends,
           "installed_size": installed_size, "release": lay.release, "description": description,
           "kpgen": __version__, "unit_name": lay.unit_name, "script": lay.on_target(lay.script),
           "order": lay.on_target(lay.order_file), "previous": f"/run/kpgen/{lay.release}.previous"}
    (debian / "control").write_bytes(render.render_fleet("deb/control.j2", **ctx))
    for script in ("preinst", "postinst", "prerm", "postrm"):
        path = debian / script
        path.write_bytes(render.render_fleet(f"deb/{script}.j2", **ctx))
        path.chmod(0o755)
    md5sums = "".join(f"{hashlib.md5(content).hexdigest()}  {path.relative_to(lay.root).as_posix()}\n"
                      for path, (content, _) in sorted(files.items()))
    (debian / "md5sums").write_text(md5sums)


def _build(mods: list[ModuleFile]) -> str:
    return next((m.kernel_version for m in mods if m.kernel_version), "")


def _dpkg_deb(root: Path, out: Path, mods: list[ModuleFile]) -> None:
    """dpkg-deb --build, reproducibly: every timestamp is the newest module's (or
    SOURCE_DATE_EPOCH's), owners are root."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or max(int(m.path.stat().st_mtime) for m in mods))
    for path in [root, *root.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    proc = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(tmp)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise KpgenError(f"dpkg-deb failed (exit {proc.returncode}): {proc.stderr.strip()}")
    os.replace(tmp, out)
