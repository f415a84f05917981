"""The exact source of an installed kernel: `kpgen source`.

On Debian, the image, the headers and `linux-source-X.Y` of one version come from one source
package with Debian's patches applied, so `linux-source-X.Y` at the headers' version *is* the
running kernel's source. It is downloaded once with apt (the .deb is kept in the cache's
debs/ folder) and unpacked once into the cache's source/ folder.

A tree given with --source is accepted only when it matches the kernel: every header the
headers package ships (include/, arch/x86/include/) must be byte for byte the tree's.
The same check guards the downloaded tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import KernelError, UsageError
from .kernel import Kernel, header_roots
from .snapshot import cache_root

STAMP = ".kpgen-source"
# Headers compared between the headers package and a source tree.
CHECKED_DIRS = ("include", "arch/x86/include")
# Where the PREEMPT_RT series lives: not in linux-source-X.Y, only in the source package.
RT_REASON = ("linux-source-{series} does not carry the PREEMPT_RT patch, and the archive reachable here "
             "serves no source packages (debian/patches-rt of Debian's `linux` source package holds it)")


@dataclass(frozen=True)
class Source:
    """A kernel source tree that matches one installed kernel."""

    root: Path
    release: str
    version: str  # the Debian package version, or "user tree"


def debs_dir() -> Path:
    """Downloaded .deb files, shared with provisioning (checkpatch's files come from the same deb)."""
    return cache_root() / "debs"


def sources_dir() -> Path:
    return cache_root() / "source"


def _run(argv: list[str], what: str) -> str:
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    except FileNotFoundError:
        raise KernelError(f"{what}: {argv[0]} is not installed (this needs Debian's dpkg and apt)") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        raise KernelError(f"{what} failed ({' '.join(argv)}):\n{tail}")
    return proc.stdout


def headers_package(k: Kernel) -> tuple[str, str]:
    """(package, version) of the headers package that owns the kernel's build directory."""
    name = f"linux-headers-{k.release}"
    out = _run(["dpkg-query", "-W", "-f", "${Version}", name], f"finding the version of {name}")
    if not out.strip():
        raise KernelError(f"{name} is not installed: kpgen finds the kernel's source by its headers package")
    return name, out.strip()


def is_rt(k: Kernel) -> bool:
    return k.config.get("CONFIG_PREEMPT_RT") == "y"


def kernel_version(k: Kernel) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL of the kernel, from the headers' top Makefile."""
    for root in header_roots(k.kdir):
        mk = root / "Makefile"
        if not mk.is_file():
            continue
        v = _makefile_version(mk.read_text(errors="replace"))
        if v:
            return v
    raise KernelError(f"{k.kdir}: no Makefile with VERSION/PATCHLEVEL/SUBLEVEL in the headers")


def _makefile_version(text: str) -> str | None:
    """The version a top Makefile names.

    >>> _makefile_version("VERSION = 6\\nPATCHLEVEL = 1\\nSUBLEVEL = 192\\n")
    '6.1.192'
    """
    parts = [re.search(rf"^{key}\s*=\s*(\d+)", text, re.M) for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not all(parts):
        return None
    return ".".join(m.group(1) for m in parts if m)


def source_package(k: Kernel) -> tuple[str, str]:
    """(linux-source-X.Y, version) that is this kernel's source."""
    _, version = headers_package(k)
    series = ".".join(kernel_version(k).split(".")[:2])
    return f"linux-source-{series}", version


def check_tree(k: Kernel, root: Path, what: str) -> None:
    """Refuse a tree that is not the kernel's source: its version, then every shipped header."""
    root = Path(root)
    mk = root / "Makefile"
    if not mk.is_file():
        raise UsageError(f"{what} {root} is not a kernel source tree (no Makefile): pass the top of the tree")
    have, want = _makefile_version(mk.read_text(errors="replace")), kernel_version(k)
    if have != want:
        raise UsageError(f"{what} {root} is Linux {have}, but {k.release} is Linux {want}: "
                         f"use the source of {k.release} (`kpgen source --kdir {k.kdir}`)")
    roots = header_roots(k.kdir)
    checked = 0
    for sub in CHECKED_DIRS:
        for base in roots:
            top = base / sub
            if not top.is_dir() or top.resolve() == (root / sub).resolve():
                continue
            for hdr in sorted(top.rglob("*.h")):
                rel = hdr.relative_to(base)
                if "generated" in rel.parts:
                    continue
                theirs = root / rel
                if not theirs.is_file() or _digest(theirs) != _digest(hdr):
                    fix = ("Debian's source with debian/patches-rt applied" if is_rt(k)
                           else f"`kpgen source --kdir {k.kdir}`")
                    raise UsageError(
                        f"{what} {root} does not match {k.release}: {rel} differs from the kernel's headers "
                        f"({hdr}); use the exact source of this kernel ({fix})")
                checked += 1
    if not checked:
        raise KernelError(f"{k.kdir}: the headers package ships no headers to check a source tree against")


def _digest(path: Path) -> bytes:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


def cached(k: Kernel) -> Source | None:
    """The unpacked source of the kernel, when `kpgen source` has made it."""
    if is_rt(k):
        return None
    pkg, version = source_package(k)
    root = sources_dir() / f"{pkg}_{version}"
    stamp = root / STAMP
    if stamp.is_file() and stamp.read_text().strip() == f"{pkg} {version} {k.release}":
        return Source(root=root, release=k.release, version=version)
    return None


def user_tree(k: Kernel, root: Path) -> Source:
    check_tree(k, root, "--source")
    return Source(root=Path(root).resolve(), release=k.release, version="user tree")


def find(k: Kernel, given: Path | None = None, fetch: bool = True,
         progress: Callable[[str], object] = print) -> Source:
    """The source for `k`: the given tree (checked), the cached one, or a fresh download."""
    if given is not None:
        return user_tree(k, given)
    if is_rt(k):
        series = ".".join(kernel_version(k).split(".")[:2])
        raise KernelError(f"no exact source for {k.release}: {RT_REASON.format(series=series)}; "
                          "pass --source DIR with that tree (Debian's source with debian/patches-rt applied)")
    have = cached(k)
    if have is not None:
        return have
    if not fetch:
        raise KernelError(f"the source of {k.release} is not in the cache: run `kpgen source --kdir {k.kdir}`")
    return download(k, progress)


def download(k: Kernel, progress: Callable[[str], object] = print) -> Source:
    pkg, version = source_package(k)
    debs = debs_dir()
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{pkg}_{version.replace(':', '%3a')}_all.deb"
    if not deb.is_file():
        progress(f"kpgen: downloading {pkg} {version} (about 150 MB) into {debs}")
        with tempfile.TemporaryDirectory(prefix="kpgen-deb-", dir=debs) as tmp:
            proc = subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{pkg}={version}"],
                                  cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  check=False)
            got = sorted(Path(tmp).glob("*.deb"))
            if proc.returncode != 0 or not got:
                tail = "\n".join(proc.stdout.strip().splitlines()[-4:])
                raise KernelError(f"apt-get download {pkg}={version} failed: the archive must offer the exact "
                                  f"version of {k.release}'s source (run apt-get update):\n{tail}")
            os.replace(got[0], deb)
    root = sources_dir() / f"{pkg}_{version}"
    progress(f"kpgen: unpacking {deb.name} into {root}")
    sources_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kpgen-src-", dir=sources_dir()) as tmp:
        tarball = f"./usr/src/{pkg}.tar.xz"
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        _run_tar(["tar", "-x", "-C", tmp, tarball], dpkg, f"extracting {tarball} from {deb}")
        out = Path(tmp) / "tree"
        out.mkdir()
        _run(["tar", "-xJf", str(Path(tmp) / tarball), "-C", str(out), "--strip-components=1",
              "--exclude=*/Documentation"], f"unpacking {pkg}.tar.xz")
        check_tree(k, out, f"{pkg} {version}")
        (out / STAMP).write_text(f"{pkg} {version} {k.release}\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(out, root)
    return Source(root=root, release=k.release, version=version)


def _run_tar(argv: list[str], feeder: subprocess.Popen, what: str) -> None:
    proc = subprocess.run(argv, stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    if feeder.stdout:
        feeder.stdout.close()
    if feeder.wait() != 0 or proc.returncode != 0:
        raise KernelError(f"{what} failed: {proc.stdout.strip()[-300:]}")


def _matrix_kernels() -> list[Kernel]:
    from .kernel import matrix, probe

    return [k for k in (probe(m.kdir()) for m in matrix()) if not is_rt(k)]


def main(argv: list[str]) -> int:
    """`python3 -m kpgen.source --fetch-matrix | --check-cached`, for provisioning."""
    if argv == ["--check-cached"]:
        return 0 if all(cached(k) is not None for k in _matrix_kernels()) else 1
    if argv == ["--fetch-matrix"]:
        for k in _matrix_kernels():
            src = find(k)
            print(f"kpgen: the source of {k.release} is {src.root}")
        return 0
    print("usage: python3 -m kpgen.source --fetch-matrix | --check-cached")
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
