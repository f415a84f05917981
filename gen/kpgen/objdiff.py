"""Compare two objects of one translation unit function by function (pyelftools).

Both objects are compiled with a section per function and per variable. A function is its
section's bytes with every relocated field zeroed, plus the list of what each relocation
names: a symbol by name (gcc's numbered local names, `name.N`, by their base name), a
string by its text, other anonymous data by its section and the bytes it points at.
Two functions are the same when both parts are equal. Variables are compared the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

# gcc's clones and split parts; a function's own code is the union of them
CLONE_RE = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*?)(?P<suffix>(?:\.(?:isra|constprop|part|cold|lto_priv|"
                      r"localalias)(?:\.\d+)?)+)$")
LOCAL_STATIC_RE = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)\.(?P<n>\d+)$")
# relocation type sizes on x86_64 (the field a relocation writes)
PC_RELATIVE = {2, 4, 9, 41, 42}  # PC32, PLT32, GOTPCREL, GOTPCRELX, REX_GOTPCRELX
RELOC_SIZE = {1: 8, 2: 4, 4: 4, 9: 4, 10: 4, 11: 4, 24: 8, 41: 4, 42: 4, 23: 4}


def base_name(name: str) -> str:
    """The function a clone or split part belongs to.

    >>> base_name("show_val_kb.isra.0"), base_name("foo.cold"), base_name("bar.constprop.0.isra.0")
    ('show_val_kb', 'foo', 'bar')
    """
    m = CLONE_RE.match(name)
    return m.group("base") if m else name


def is_clone(name: str) -> bool:
    return CLONE_RE.match(name) is not None and not name.endswith(".cold")


@dataclass
class Symbol:
    name: str
    kind: str  # "func" or "object"
    bind: str  # "LOCAL" / "GLOBAL" / "WEAK"
    section: str
    size: int
    code: bytes = b""
    refs: tuple[str, ...] = ()
    callees: tuple[str, ...] = ()  # symbols called or jumped to (by name)
    addressed: tuple[str, ...] = ()  # symbols whose address is taken (not a call)
    traced: bool = False  # calls __fentry__ first: ftrace can hook it


@dataclass
class Object:
    path: Path
    symbols: dict[str, Symbol] = field(default_factory=dict)

    def functions(self) -> dict[str, Symbol]:
        return {n: s for n, s in self.symbols.items() if s.kind == "func"}

    def variables(self) -> dict[str, Symbol]:
        return {n: s for n, s in self.symbols.items() if s.kind == "object"}


UNIQUE_ID_RE = re.compile(r"^(__UNIQUE_ID_[A-Za-z_]+?)\d+")
# Sections of data the kernel keeps: a changed initial value there is a change of state.
DATA_SECTION_RE = re.compile(r"^\.(?:data|rodata|bss)\b")


def normalised(name: str) -> str:
    """Local statics are numbered by gcc per unit and __UNIQUE_ID_ by __COUNTER__: a new one
    renumbers the rest.

    >>> normalised("last_check.2"), normalised("__UNIQUE_ID_ddebug326.4")
    ('last_check.N', '__UNIQUE_ID_ddebug#.N')
    """
    m = LOCAL_STATIC_RE.match(name)
    name = m.group("base") + ".N" if m else name
    return UNIQUE_ID_RE.sub(r"\1#", name)


def read(path: Path) -> Object:
    obj = Object(path=Path(path))
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        sections = list(elf.iter_sections())
        section_syms: dict[int, list] = {}
        for sym in symtab.iter_symbols():
            if sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT") and isinstance(sym["st_shndx"], int):
                section_syms.setdefault(sym["st_shndx"], []).append(sym)
        section_syms_at = {i: sorted((x["st_value"], x["st_size"], x.name) for x in syms)
                           for i, syms in section_syms.items()}
        relocs: dict[int, RelocationSection] = {}
        for sec in sections:
            if isinstance(sec, RelocationSection):
                relocs[sec["sh_info"]] = sec
        for idx, syms in section_syms.items():
            sec = sections[idx]
            data = sec.data() if sec["sh_type"] != "SHT_NOBITS" else b"\0" * sec["sh_size"]
            for sym in syms:
                start, size = sym["st_value"], sym["st_size"]
                code = bytearray(data[start:start + size])
                refs, callees, addressed = [], [], []
                traced = False
                rs = relocs.get(idx)
                if rs is not None:
                    for rel in rs.iter_relocations():
                        off = rel["r_offset"] - start
                        if not 0 <= off < size:
                            continue
                        width = RELOC_SIZE.get(rel["r_info_type"], 4)
                        code[off:off + width] = b"\0" * width
                        target = symtab.get_symbol(rel["r_info_sym"])
                        addend = rel["r_addend"] if rel.is_RELA() else 0
                        if rel["r_info_type"] in PC_RELATIVE:
                            addend += 4  # relative to the end of the 4-byte field: the data's own offset
                        what = _describe(target, addend, sections)
                        refs.append(f"{off}:{rel['r_info_type']}:{what}")
                        tname = target.name
                        if tname:
                            if rel["r_info_type"] == 4:  # PLT32: a call or a tail jump
                                callees.append(tname)
                                if tname == "__fentry__" and off <= 5:
                                    traced = True
                            else:
                                addressed.append(tname)
                        else:
                            shndx = target["st_shndx"]
                            tsec = sections[shndx] if isinstance(shndx, int) else None
                            # the symbol the section offset falls in (a static in .data.once ...)
                            # (rip-relative with an immediate after it: the field ends 1, 2 or 4
                            # bytes before the instruction does)
                            slack = (0, 1, 2, 4) if rel["r_info_type"] in PC_RELATIVE else (0,)
                            inside = next((n for d in slack for v, z, n in section_syms_at.get(shndx, ())
                                           if v <= addend + d < v + max(z, 1)), None)
                            if inside is not None:
                                addressed.append(inside)
                            elif tsec is not None:
                                m = re.match(r"^\.(?:text|data|bss|rodata)(?:\.unlikely)?\.(.+)$", tsec.name)
                                if m:
                                    addressed.append(m.group(1))
                kind = "func" if sym["st_info"]["type"] == "STT_FUNC" else "object"
                obj.symbols[sym.name] = Symbol(
                    name=sym.name, kind=kind, bind=sym["st_info"]["bind"].replace("STB_", ""), section=sec.name,
                    size=size, code=bytes(code), refs=tuple(refs), callees=tuple(callees),
                    addressed=tuple(addressed), traced=traced)
    return obj


def _describe(target: Any, addend: int, sections: list) -> str:
    local_label = target["st_info"]["type"] == "STT_NOTYPE" and target.name.startswith(".L")
    if target.name and target["st_info"]["type"] != "STT_SECTION" and not local_label:
        return f"{normalised(target.name)}{addend:+d}"
    if local_label:
        addend += target["st_value"]
    shndx = target["st_shndx"]
    if not isinstance(shndx, int):
        return f"?{addend:+d}"
    sec = sections[shndx]
    if sec["sh_flags"] & 0x20:  # SHF_STRINGS: name the string by its text
        data = sec.data()
        end = data.find(b"\0", max(addend, 0))
        return "str:" + str(data[max(addend, 0):end if end >= 0 else None].decode("latin-1"))
    name = re.sub(r"\.\d+$", ".N", sec.name)
    if sec["sh_flags"] & 0x4:  # code: a function's section, by its name
        return f"{name}{addend:+d}"
    if sec["sh_type"] == "SHT_PROGBITS" and not sec["sh_flags"] & 0x1:  # read-only: by contents
        data = bytes(sec.data())
        return f"{name}:{data[max(addend, 0):max(addend, 0) + 64].hex()}"
    return f"{name}{addend:+d}"


@dataclass(frozen=True)
class Comparison:
    changed: tuple[str, ...]  # functions in both whose code differs
    added: tuple[str, ...]  # functions only in the patched object
    removed: tuple[str, ...]  # functions only in the original
    changed_data: tuple[str, ...]  # variables in both whose contents differ
    added_data: tuple[str, ...]


def compare(old: Object, new: Object) -> Comparison:
    of, nf = old.functions(), new.functions()
    changed = sorted(n for n in of.keys() & nf.keys()
                     if (of[n].code, of[n].refs) != (nf[n].code, nf[n].refs))
    ov = {normalised(n): s for n, s in old.variables().items() if DATA_SECTION_RE.match(s.section)}
    nv = {normalised(n): s for n, s in new.variables().items() if DATA_SECTION_RE.match(s.section)}
    changed_data = sorted(n for n in ov.keys() & nv.keys()
                          if (ov[n].code, ov[n].refs, ov[n].size) != (nv[n].code, nv[n].refs, nv[n].size))
    return Comparison(changed=tuple(changed), added=tuple(sorted(nf.keys() - of.keys())),
                      removed=tuple(sorted(of.keys() - nf.keys())), changed_data=tuple(changed_data),
                      added_data=tuple(sorted(nv.keys() - ov.keys())))
