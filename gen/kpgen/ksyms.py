"""What the running kernel has, read without booting it.

- vmlinux's symbols: the booted snapshot (`kpgen snapshot`, or the boot tests') when there
  is one; else kallsyms read out of /boot/vmlinuz-<release> (vmlinux-to-elf's
  kallsyms-finder: the same 94,266 names on 6.1 as the booted kernel's /proc/kallsyms).
- a module's symbols: the symbol table of its .ko under /lib/modules/<release>/.

Results are cached per release beside the snapshots.
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KernelError
from .kernel import Kernel
from .snapshot import cache_root, load as load_snapshot

TEXT_TYPES = "tTwW"
# the cache of the image's kallsyms, per release (names and types, in order)
IMAGE_CACHE = "image-kallsyms.json.gz"


@dataclass
class ObjectSymbols:
    """One object's symbols (vmlinux or a module), in kallsyms order."""

    name: str
    entries: list[tuple[str, str]] = field(default_factory=list)  # (type, name)
    index: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        self.index = {}
        for i, (_, name) in enumerate(self.entries):
            self.index.setdefault(name, []).append(i)

    def positions(self, name: str, text: bool = True) -> list[int]:
        return [i for i in self.index.get(name, []) if not text or self.entries[i][0] in TEXT_TYPES]

    def has(self, name: str) -> bool:
        return name in self.index


@dataclass
class KernelSymbols:
    release: str
    origin: str  # where vmlinux's symbols came from
    objects: dict[str, ObjectSymbols] = field(default_factory=dict)

    def object(self, k: Kernel, name: str) -> ObjectSymbols:
        if name not in self.objects:
            self.objects[name] = module_symbols(k, name)
        return self.objects[name]


def _image_kallsyms(vmlinuz: Path) -> list[tuple[int, str, str]]:
    exe = shutil.which("kallsyms-finder")
    if exe is None:
        raise KernelError("kallsyms-finder (PyPI: vmlinux-to-elf) is not installed: run `make provision`, "
                          "or take a snapshot of the booted kernel (`kpgen snapshot`)")
    proc = subprocess.run([exe, str(vmlinuz)], capture_output=True, text=True,
                          check=False)
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and len(parts[1]) == 1:
            rows.append((int(parts[0], 16), parts[1], parts[2]))
    if proc.returncode != 0 or len(rows) < 1000:
        raise KernelError(f"cannot read kallsyms from {vmlinuz}: {proc.stderr.strip()[-300:]}")
    return rows


_LOADED: dict[tuple[str, str], KernelSymbols] = {}


def vmlinux_symbols(k: Kernel) -> KernelSymbols:
    """The kernel's symbols (read once per process)."""
    key = (k.release, str(k.kdir))
    if key not in _LOADED:
        _LOADED[key] = _vmlinux_symbols(k)
    return _LOADED[key]


def _vmlinux_symbols(k: Kernel) -> KernelSymbols:
    snap = load_snapshot(k.release)
    if snap is not None:
        # the booted kernel's own list wins
        return KernelSymbols(release=k.release, origin=f"the booted snapshot in {cache_root() / k.release}",
                             objects={"vmlinux": ObjectSymbols("vmlinux", _snapshot_order(snap))})
    cache = cache_root() / k.release / IMAGE_CACHE
    if cache.is_file():
        entries = [(t, n) for t, n in json.loads(gzip.decompress(cache.read_bytes()))["entries"]]
    else:
        if not k.vmlinuz.is_file():
            raise KernelError(f"{k.vmlinuz} is not installed: kpgen reads the kernel's symbols from it")
        entries = [(t, n) for _, t, n in _image_kallsyms(k.vmlinuz)]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(gzip.compress(json.dumps({"entries": entries}).encode(), mtime=0))
    return KernelSymbols(release=k.release, origin=f"kallsyms read from {k.vmlinuz}",
                         objects={"vmlinux": ObjectSymbols("vmlinux", entries)})


def _snapshot_order(snap: Any) -> list[tuple[str, str]]:
    # rebuild kallsyms order from each entry's predecessor
    nxt: dict[str, list[tuple[str, str]]] = {}
    for (obj, name), rows in snap.symbols.items():
        if obj == "vmlinux":
            for typ, prev in rows:
                nxt.setdefault(prev, []).append((typ, name))
    out, cur = [], ""
    while nxt.get(cur):
        typ, name = nxt[cur].pop(0)
        out.append((typ, name))
        cur = name
    return out


def module_file(k: Kernel, name: str) -> Path:
    root = Path("/lib/modules") / k.release
    for pattern in (f"{name}.ko", f"{name}.ko.xz", f"{name.replace('_', '-')}.ko", f"{name.replace('_', '-')}.ko.xz"):
        found = sorted(root.rglob(pattern))
        if found:
            return found[0]
    raise KernelError(f"module {name} of {k.release} not found under {root}")


def module_symbols(k: Kernel, name: str) -> ObjectSymbols:
    import io

    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    path = module_file(k, name)
    raw = path.read_bytes()
    if path.suffix == ".xz":
        raw = lzma.decompress(raw)
    elf = ELFFile(io.BytesIO(raw))
    symtab = elf.get_section_by_name(".symtab")
    assert isinstance(symtab, SymbolTableSection)
    rows: list[tuple[str, str]] = []  # type, name
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT") or not isinstance(sym["st_shndx"], int):
            continue
        sec = elf.get_section(sym["st_shndx"])
        local = sym["st_info"]["bind"] == "STB_LOCAL"
        if sym["st_info"]["type"] == "STT_FUNC":
            typ = "t" if local else "T"
        else:
            typ = ("d" if local else "D") if sec["sh_flags"] & 0x1 else ("r" if local else "R")
        rows.append((typ, sym.name))
    return ObjectSymbols(name, rows)
