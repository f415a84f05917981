"""A relocatable ELF64 object (x86-64, little-endian: a kernel module) in memory, and written back.

kpgen rewrites built modules after Kbuild's link (klprelocs.py). This module holds one as
plain numbers and bytes: the ELF header, every section header and its contents, the symbol
table and the relocation entries, so that nothing is lost in a round trip. Writing lays the
file out afresh: the ELF header, each section's contents in the order of the original file
(aligned as its header asks), then the section header table. Section indices never change
(symbols, relocation sections and SHF_LINK_ORDER sections refer to them); new sections are
appended.

What it refuses: anything but ELFCLASS64/ELFDATA2LSB/EM_X86_64/ET_REL, program headers,
extended section numbering (SHN_XINDEX, SHT_SYMTAB_SHNDX) and entries of unexpected sizes.
pyelftools is the independent reader: klprelocs.verify() reads every result back with it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from .errors import BuildError

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")

ET_REL = 1
EM_X86_64 = 62
SHT_NOBITS = 8
SHT_RELA = 4
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_SYMTAB_SHNDX = 18
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_XINDEX = 0xFFFF
STB_GLOBAL = 1
STB_WEAK = 2


@dataclass
class Section:
    """One section: its header fields as numbers and its contents (none for SHT_NOBITS)."""

    name: str
    type: int
    flags: int
    addr: int
    link: int
    info: int
    addralign: int
    entsize: int
    data: bytes = b""
    nobits_size: int = 0
    # where the original file had it: the writer keeps that order
    offset: int = 0
    # the name's offset in the section name table (linkers share suffixes: ".text" may be
    # the tail of ".rela.text")
    name_offset: int = 0

    @property
    def size(self) -> int:
        return self.nobits_size if self.type == SHT_NOBITS else len(self.data)


@dataclass(frozen=True)
class Symbol:
    """One Elf64_Sym, its name resolved; `st_name` is the name's offset in the string table."""

    name: str
    st_name: int
    info: int
    other: int
    shndx: int
    value: int
    size: int

    @property
    def bind(self) -> int:
        return self.info >> 4

    @property
    def type(self) -> int:
        return self.info & 0xF

    def with_bind(self, bind: int) -> Symbol:
        return replace(self, info=(bind << 4) | self.type)


@dataclass(frozen=True)
class Rela:
    """One Elf64_Rela: where (offset in the target section), which type, which symbol, addend."""

    offset: int
    type: int
    sym: int
    addend: int

    @property
    def info(self) -> int:
        return (self.sym << 32) | self.type


@dataclass
class RelObject:
    ident: bytes
    machine: int
    version: int
    flags: int
    shstrndx: int
    sections: list[Section] = field(default_factory=list)

    def index(self, name: str) -> int:
        """The index of the only section called `name`."""
        found = [i for i, s in enumerate(self.sections) if s.name == name]
        if len(found) != 1:
            raise BuildError(f"the module has {len(found)} sections named {name}, not one")
        return found[0]

    @property
    def symtab(self) -> int:
        found = [i for i, s in enumerate(self.sections) if s.type == SHT_SYMTAB]
        if len(found) != 1:
            raise BuildError(f"the module has {len(found)} symbol tables, not one")
        return found[0]

    def symbols(self) -> list[Symbol]:
        sec = self.sections[self.symtab]
        strtab = self.sections[sec.link].data
        if sec.entsize != SYM.size or len(sec.data) % SYM.size:
            raise BuildError(f"symbol table entries of {sec.entsize} bytes: not ELF64")
        out = []
        for st_name, info, other, shndx, value, size in SYM.iter_unpack(sec.data):
            out.append(Symbol(c_string(strtab, st_name), st_name, info, other, shndx, value, size))
        return out

    def set_symbols(self, symbols: list[Symbol]) -> None:
        """Replace the symbol table's entries (same count: indices are what relocations use)."""
        sec = self.sections[self.symtab]
        if len(symbols) != len(sec.data) // SYM.size:
            raise BuildError("a symbol table rewrite must keep every symbol's index")
        sec.data = b"".join(SYM.pack(s.st_name, s.info, s.other, s.shndx, s.value, s.size) for s in symbols)

    def add_string(self, strtab: int, text: str) -> int:
        """Append `text` to string table `strtab`; its offset there."""
        sec = self.sections[strtab]
        raw = text.encode()
        if b"\0" in raw:
            raise BuildError(f"a name cannot hold a NUL byte: {text!r}")
        offset = len(sec.data)
        sec.data += raw + b"\0"
        return offset

    def relas(self, index: int) -> list[Rela]:
        sec = self.sections[index]
        if sec.type != SHT_RELA or sec.entsize != RELA.size or len(sec.data) % RELA.size:
            raise BuildError(f"section {sec.name} is not an ELF64 RELA table")
        return [Rela(off, info & 0xFFFFFFFF, info >> 32, addend) for off, info, addend in RELA.iter_unpack(sec.data)]

    def set_relas(self, index: int, relas: list[Rela]) -> None:
        self.sections[index].data = b"".join(RELA.pack(r.offset, r.info, r.addend) for r in relas)

    def add_section(self, section: Section) -> int:
        """Append a section (its name goes into the section name table); its index."""
        if len(self.sections) >= SHN_LORESERVE:
            raise BuildError("too many sections for plain ELF section numbering")
        section.name_offset = self.add_string(self.shstrndx, section.name)
        section.offset = 0
        self.sections.append(section)
        return len(self.sections) - 1

    def to_bytes(self) -> bytes:
        """The file: header, contents in the original order (new sections last), header table."""
        names = self.sections[self.shstrndx].data
        for sec in self.sections[1:]:
            if c_string(names, sec.name_offset) != sec.name:
                raise BuildError(f"section {sec.name}: its name is not where its header says")
        # the original order; appended sections (offset 0) last, in index order
        order = sorted(range(1, len(self.sections)),
                       key=lambda i: (self.sections[i].offset == 0, self.sections[i].offset, i))
        out = bytearray(EHDR.size)
        offsets = [0] * len(self.sections)
        for i in order:
            sec = self.sections[i]
            align = max(sec.addralign, 1)
            out += b"\0" * (-len(out) % align)
            offsets[i] = len(out)
            if sec.type != SHT_NOBITS:
                out += sec.data
        out += b"\0" * (-len(out) % 8)
        shoff = len(out)
        for i, sec in enumerate(self.sections):
            if i == 0:
                out += SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
                continue
            out += SHDR.pack(sec.name_offset, sec.type, sec.flags, sec.addr, offsets[i], sec.size,
                             sec.link, sec.info, sec.addralign, sec.entsize)
        EHDR.pack_into(out, 0, self.ident, ET_REL, self.machine, self.version, 0, 0, shoff, self.flags,
                       EHDR.size, 0, 0, SHDR.size, len(self.sections), self.shstrndx)
        return bytes(out)


def c_string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise BuildError(f"a string offset ({offset}) outside its string table")
    return table[offset:end].decode("utf-8", "replace")



def read(data: bytes) -> RelObject:
    """The object held in `data`; BuildError for anything this module does not handle."""
    if len(data) < EHDR.size or data[:4] != b"\x7fELF":
        raise BuildError("not an ELF file")
    (ident, etype, machine, version, _entry, phoff, shoff, flags, ehsize, _phentsize, phnum, shentsize, shnum,
     shstrndx) = EHDR.unpack_from(data)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64:
        raise BuildError("not a 64-bit little-endian x86-64 ELF file")
    if etype != ET_REL or phoff or phnum:
        raise BuildError("not a relocatable object (a kernel module is one)")
    if ehsize != EHDR.size or shentsize != SHDR.size or shnum == 0 or shstrndx >= shnum:
        raise BuildError("unexpected ELF header sizes, or extended section numbering")
    if shoff + shnum * SHDR.size > len(data):
        raise BuildError("the section header table runs past the end of the file")
    raw = [SHDR.unpack_from(data, shoff + i * SHDR.size) for i in range(shnum)]
    name_hdr = raw[shstrndx]
    names = data[name_hdr[4]:name_hdr[4] + name_hdr[5]]
    obj = RelObject(ident, machine, version, flags, shstrndx)
    for i, (sh_name, stype, sflags, addr, offset, size, link, info, align, entsize) in enumerate(raw):
        if stype == SHT_SYMTAB_SHNDX:
            raise BuildError("extended symbol section indices (SHT_SYMTAB_SHNDX) are not handled")
        if stype != SHT_NOBITS and offset + size > len(data):
            raise BuildError(f"section {i} runs past the end of the file")
        body = data[offset:offset + size] if stype != SHT_NOBITS and i else b""
        obj.sections.append(Section(c_string(names, sh_name) if i else "", stype, sflags, addr, link, info, align,
                                    entsize, body, size if stype == SHT_NOBITS else 0, offset, sh_name))
    if any(s.shndx == SHN_XINDEX for s in obj.symbols()):
        raise BuildError("a symbol with an extended section index (SHN_XINDEX) is not handled")
    return obj
