"""What the running kernel has, read without booting it.

- vmlinux's symbols: the booted snapshot (`kpgen snapshot`, or the boot tests') when there
  is one; else kallsyms read out of /boot/vmlinuz-<release> (vmlinux-to-elf's
  kallsyms-finder: the same 94,266 names on 6.1 as the booted kernel's /proc/kallsyms).
- a module's symbols: the symbol table of its .ko under /lib/modules/<release>/.
- on IBT kernels, which functions keep their ENDBR at run time: the decompressed image has
  the code (f3 0f 1e fa at the function's address) and the list of ENDBRs the kernel seals
  while booting (.ibt_endbr_seal); a function without one must never be called through a
  pointer.
- which functions ftrace can hook: those with a `call __fentry__` site in the mcount table
  (`__start_mcount_loc`..`__stop_mcount_loc` in the image, the `__mcount_loc` section of a
  .ko) at their first byte, or just past their ENDBR; and which are `__init` code, whose ftrace
  records the kernel drops once it has booted (the image's `_sinittext`..`_einittext`, a
  module's `.init.text`). This is what the booted kernel's available_filter_functions lists.

Results are cached per release beside the snapshots.
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import progress
from .errors import KernelError
from .kernel import Kernel
from .snapshot import cache_root, load as load_snapshot

ENDBR64 = b"\xf3\x0f\x1e\xfa"
TEXT_TYPES = "tTwW"


@dataclass
class ObjectSymbols:
    """One object's symbols (vmlinux or a module), in kallsyms order."""

    name: str
    entries: list[tuple[str, str]] = field(default_factory=list)  # (type, name)
    endbr: dict[int, bool] | None = None  # entry index -> ENDBR kept at run time (IBT kernels)
    index: dict[str, list[int]] = field(default_factory=dict)
    # entry indices of the functions ftrace can hook (None: not known), and of __init functions
    traceable: set[int] | None = None
    init: set[int] = field(default_factory=set)

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
    ibt: bool
    objects: dict[str, ObjectSymbols] = field(default_factory=dict)

    def object(self, k: Kernel, name: str) -> ObjectSymbols:
        if name not in self.objects:
            self.objects[name] = module_symbols(k, name, self.ibt)
        return self.objects[name]


def _decompress(image: bytes) -> bytes:
    """The vmlinux ELF inside a bzImage (xz or zstd compressed)."""
    for magic, kind in ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")):
        start = image.find(magic)
        if start < 0:
            continue
        if kind == "xz":
            out = lzma.LZMADecompressor().decompress(image[start:])
        else:
            import zstandard

            out = zstandard.ZstdDecompressor().decompressobj().decompress(image[start:])
        if out[:4] == b"\x7fELF":
            return out
    raise KernelError("the kernel image holds no xz- or zstd-compressed ELF: cannot read its code offline")


def _image_kallsyms(vmlinuz: Path) -> list[tuple[int, str, str]]:
    exe = shutil.which("kallsyms-finder")
    if exe is None:
        raise KernelError("kallsyms-finder (PyPI: vmlinux-to-elf) is not installed: run `make provision`, "
                          "or take a snapshot of the booted kernel (`kpgen snapshot`)")
    progress.command([exe, str(vmlinuz)])
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


def _reader(elf_bytes: bytes) -> Any:
    """A function that reads n bytes of the image at a link-time address."""
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(elf_bytes))
    segs = [(s["p_vaddr"], s["p_offset"], s["p_filesz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]

    def at(addr: int, n: int) -> bytes:
        for vaddr, off, size in segs:
            if vaddr <= addr < vaddr + size:
                return elf_bytes[off + addr - vaddr: off + addr - vaddr + n]
        return b""

    return at


def _ftrace_map(elf_bytes: bytes, rows: list[tuple[int, str, str]]) -> tuple[list[int], list[int]]:
    """The rows of the functions ftrace can hook, and of the __init functions."""
    at = _reader(elf_bytes)
    first = {name: addr for addr, _, name in rows
             if name in ("__start_mcount_loc", "__stop_mcount_loc", "_sinittext", "_einittext")}
    if len(first) < 4:
        raise KernelError("the image's kallsyms lack the mcount table or the init text bounds: "
                          "cannot tell which functions ftrace can hook")
    start, stop = first["__start_mcount_loc"], first["__stop_mcount_loc"]
    table = at(start, stop - start)
    sites = set(struct.unpack(f"<{len(table) // 8}Q", table[: len(table) // 8 * 8]))
    traceable, init = [], []
    for i, (addr, typ, _) in enumerate(rows):
        if typ not in TEXT_TYPES:
            continue
        if first["_sinittext"] <= addr < first["_einittext"]:
            init.append(i)
        elif addr in sites or (addr + 4 in sites and at(addr, 4) == ENDBR64):
            traceable.append(i)
    return traceable, init


def _endbr_map(elf_bytes: bytes, rows: list[tuple[int, str, str]]) -> dict[int, bool]:
    """For each text symbol row: does its ENDBR survive the boot-time sealing?"""
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(elf_bytes))
    at = _reader(elf_bytes)
    sealed: set[int] = set()
    seal = elf.get_section_by_name(".ibt_endbr_seal")
    if seal is not None:
        data, base = seal.data(), seal["sh_addr"]
        for i in range(0, len(data) - 3, 4):
            (rel,) = struct.unpack_from("<i", data, i)
            sealed.add(base + i + rel)
    return {i: at(addr, 4) == ENDBR64 and addr not in sealed
            for i, (addr, typ, _) in enumerate(rows) if typ in TEXT_TYPES}


_LOADED: dict[tuple[str, str], KernelSymbols] = {}


def vmlinux_symbols(k: Kernel) -> KernelSymbols:
    """The kernel's symbols (read once per process)."""
    key = (k.release, str(k.kdir))
    if key not in _LOADED:
        _LOADED[key] = _vmlinux_symbols(k)
    return _LOADED[key]


# what a cache file of the image's symbols holds; an older one is read again from the image
CACHE_VERSION = 2


def _vmlinux_symbols(k: Kernel) -> KernelSymbols:
    ibt = k.config.get("CONFIG_X86_KERNEL_IBT") == "y"
    cache = cache_root() / k.release / "image-symbols.json.gz"
    data = None
    if cache.is_file():
        data = json.loads(gzip.decompress(cache.read_bytes()))
        if data.get("version") != CACHE_VERSION:
            data = None
    if data is None:
        if not k.vmlinuz.is_file():
            raise KernelError(f"{k.vmlinuz} is not installed: kpgen reads the kernel's symbols from it")
        with progress.step(f"reading the symbols of {k.release} from {k.vmlinuz} (once: they are cached)"):
            rows = _image_kallsyms(k.vmlinuz)
            image = _decompress(k.vmlinuz.read_bytes())
            endbr = _endbr_map(image, rows) if ibt else {}
            traceable, init = _ftrace_map(image, rows)
        data = {"version": CACHE_VERSION, "entries": [[t, n] for _, t, n in rows],
                "endbr": sorted(i for i, v in endbr.items() if v), "traceable": traceable, "init": init}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(gzip.compress(json.dumps(data).encode(), mtime=0))
    entries = [(t, n) for t, n in data["entries"]]
    keep = set(data["endbr"])
    vm = ObjectSymbols("vmlinux", entries, {i: i in keep for i, (t, _) in enumerate(entries) if t in TEXT_TYPES}
                       if ibt else None, traceable=set(data["traceable"]), init=set(data["init"]))
    origin = f"kallsyms read from {k.vmlinuz}"
    snap = load_snapshot(k.release)
    if snap is not None:
        # the booted kernel's own list wins; it has the same order, and the image's ENDBR facts
        # apply only while both lists agree
        booted = [(typ, name) for (obj, name), rows in snap.symbols.items() if obj == "vmlinux"
                  for typ, _ in rows]
        if sorted(booted) != sorted(entries):
            vm = ObjectSymbols("vmlinux", _snapshot_order(snap), None)
            if ibt:
                raise KernelError(f"the booted snapshot of {k.release} differs from the kallsyms of {k.vmlinuz}: "
                                  "kpgen cannot tell which functions keep their ENDBR; take the snapshot again")
        origin = f"the booted snapshot in {cache_root() / k.release}"
    return KernelSymbols(release=k.release, origin=origin, ibt=ibt, objects={"vmlinux": vm})


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


def module_bytes(path: Path) -> bytes:
    """A module file's ELF bytes (Debian's 6.12 compresses its modules with xz)."""
    raw = path.read_bytes()
    return lzma.decompress(raw) if path.suffix == ".xz" else raw


def module_symbols(k: Kernel, name: str, ibt: bool) -> ObjectSymbols:
    import io

    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    path = module_file(k, name)
    elf = ELFFile(io.BytesIO(module_bytes(path)))
    symtab = elf.get_section_by_name(".symtab")
    assert isinstance(symtab, SymbolTableSection)
    rows: list[tuple[str, str, int, int]] = []  # type, name, section, value
    init_sections = {i for i, sec in enumerate(elf.iter_sections()) if sec.name.startswith(".init.text")}
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT") or not isinstance(sym["st_shndx"], int):
            continue
        sec = elf.get_section(sym["st_shndx"])
        local = sym["st_info"]["bind"] == "STB_LOCAL"
        if sym["st_info"]["type"] == "STT_FUNC":
            typ = "t" if local else "T"
        else:
            typ = ("d" if local else "D") if sec["sh_flags"] & 0x1 else ("r" if local else "R")
        rows.append((typ, sym.name, sym["st_shndx"], sym["st_value"]))
    endbr = None
    if ibt:
        sealed: set[tuple[int, int]] = set()
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec.name == ".rela.ibt_endbr_seal":
                for rel in sec.iter_relocations():
                    target = symtab.get_symbol(rel["r_info_sym"])
                    sealed.add((target["st_shndx"], target["st_value"] + rel["r_addend"]))
        endbr = {}
        for i, (typ, _, shndx, value) in enumerate(rows):
            if typ in TEXT_TYPES:
                code = elf.get_section(shndx).data()[value:value + 4]
                endbr[i] = code == ENDBR64 and (shndx, value) not in sealed
    # the call sites of __fentry__: the relocations of __mcount_loc, each a section and offset
    sites: set[tuple[int, int]] = set()
    for sec in elf.iter_sections():
        if isinstance(sec, RelocationSection) and sec.name == ".rela__mcount_loc":
            for rel in sec.iter_relocations():
                target = symtab.get_symbol(rel["r_info_sym"])
                sites.add((target["st_shndx"], target["st_value"] + rel["r_addend"]))
    traceable, init = set(), set()
    for i, (typ, _, shndx, value) in enumerate(rows):
        if typ not in TEXT_TYPES:
            continue
        if shndx in init_sections:
            init.add(i)
        elif (shndx, value) in sites or ((shndx, value + 4) in sites
                                         and elf.get_section(shndx).data()[value:value + 4] == ENDBR64):
            traceable.add(i)
    return ObjectSymbols(name, [(t, n) for t, n, _, _ in rows], endbr, traceable=traceable, init=init)
