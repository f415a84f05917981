"""Where the live patches installed for one kernel release live, on the machine that runs them.
`kpgen install` and the packages of `kpgen package` use the same layout, so that the boot-time
loader, `kpgen list` and `kpgen uninstall` see one truth:

    /lib/modules/<release>/extra/kpgen/<name>.ko      the patch modules, and kpatch.ko, the core
    /lib/modules/<release>/extra/kpgen/order          their names in load order (the core first),
                                                      with the kernel build they were made for
    <libdir>/<release>/kpgen-patches                  the loader (a POSIX shell script)
    <unitdir>/kpgen@<release>.service                 the systemd unit that runs it at boot
    <unitdir>/sysinit.target.wants/kpgen@<release>.service   its activation

A package puts the loader in /usr/lib/kpgen and the unit in /lib/systemd/system (the
distribution's places, owned by dpkg); `kpgen install` puts them in /usr/local/lib/kpgen and
/etc/systemd/system (the administrator's). Everything is per release, so that packages for two
releases (the running kernel's and the next one's) install side by side without sharing a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORE = "kpatch"
ORDER = "order"
SCRIPT = "kpgen-patches"
VERSION_PREFIX = "# version: "
NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
# the characters systemd allows in a unit name without escaping
UNIT_SAFE_RE = re.compile(r"[A-Za-z0-9:_.-]")


def unit_instance(release: str) -> str:
    """A release as a systemd instance name: characters units may not hold, such as the '+' of
    Debian's 6.12.118+deb12-amd64, escaped as \\xNN (the unit's %I gives the release back).

    >>> unit_instance("6.12.118+deb12-amd64")
    '6.12.118\\\\x2bdeb12-amd64'
    """
    return "".join(c if UNIT_SAFE_RE.match(c) else f"\\x{ord(c):02x}" for c in release)


@dataclass(frozen=True)
class Layout:
    root: Path
    release: str
    vendor: bool  # a package's paths, else a local installation's

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib/modules" / self.release / "extra/kpgen"

    @property
    def order_file(self) -> Path:
        return self.modules_dir / ORDER

    @property
    def libdir(self) -> Path:
        return self.root / ("usr/lib/kpgen" if self.vendor else "usr/local/lib/kpgen")

    @property
    def script(self) -> Path:
        return self.libdir / self.release / SCRIPT

    @property
    def unit_dir(self) -> Path:
        return self.root / ("lib/systemd/system" if self.vendor else "etc/systemd/system")

    @property
    def unit_name(self) -> str:
        return f"kpgen@{unit_instance(self.release)}.service"

    @property
    def unit(self) -> Path:
        return self.unit_dir / self.unit_name

    @property
    def wants_link(self) -> Path:
        return self.unit_dir / "sysinit.target.wants" / self.unit_name

    def module(self, name: str) -> Path:
        return self.modules_dir / f"{name}.ko"

    def on_target(self, path: Path) -> str:
        """A path as the target machine sees it (without the root kpgen writes under)."""
        return "/" + path.relative_to(self.root).as_posix()


@dataclass(frozen=True)
class Order:
    """An order file: the kernel build the patches were made for (uname -v; "" when unknown) and
    the module names in load order."""

    version: str
    names: tuple[str, ...]

    def text(self, release: str) -> str:
        lines = [f"# kpgen: the live patches of {release}, loaded in this order at boot"]
        if self.version:
            lines.append(VERSION_PREFIX + self.version)
        return "\n".join([*lines, *self.names]) + "\n"

    def with_name(self, name: str) -> Order:
        """With `name` last (the newest install), or first for the core."""
        rest = tuple(n for n in self.names if n != name)
        return Order(self.version, (name, *rest) if name == CORE else (*rest, name))

    def without(self, name: str) -> Order:
        return Order(self.version, tuple(n for n in self.names if n != name))


def parse_order(text: str) -> Order:
    """An order file's content.

    >>> parse_order("# kpgen: ...\\n# version: #1 SMP Debian 6.1.192-3\\nkpatch\\nfix_a\\n")
    Order(version='#1 SMP Debian 6.1.192-3', names=('kpatch', 'fix_a'))
    """
    version, names = "", []
    for line in text.splitlines():
        if line.startswith(VERSION_PREFIX):
            version = line[len(VERSION_PREFIX):]
        elif line.strip() and not line.startswith("#"):
            names.append(line.strip())
    return Order(version, tuple(names))


def read_order(path: Path) -> Order | None:
    try:
        return parse_order(Path(path).read_text())
    except FileNotFoundError:
        return None


def installed_releases(root: Path = Path("/")) -> list[str]:
    """The releases with installed live patches (an order file), sorted."""
    return sorted(p.parent.parent.parent.name for p in (Path(root) / "lib/modules").glob(f"*/extra/kpgen/{ORDER}"))


def installed_core(root: Path, release: str) -> Path | None:
    """The core installed for a release: kpgen's (extra/kpgen/kpatch.ko), else one depmod knows."""
    mine = Layout(Path(root), release, vendor=False).module(CORE)
    if mine.is_file():
        return mine
    moddir = Path(root) / "lib/modules" / release
    try:
        for line in (moddir / "modules.dep").read_text().splitlines():
            path = line.split(":", 1)[0]
            if path.endswith(f"/{CORE}.ko") or path == f"{CORE}.ko":
                return moddir / path
    except FileNotFoundError:
        pass
    return None
