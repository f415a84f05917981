"""klp relocations: the kernel's unexported symbols, written by the kernel's own relocation code.

A patch module's C uses the kernel's unexported functions and variables as what they are
(plain `extern`s). After Kbuild links the module, convert() turns every relocation against one
of them into a klp relocation, in the format of the kernel's
Documentation/livepatch/module-elf-format.rst:

- the symbol `name` becomes `.klp.sym.<object>.<kallsyms name>,<sympos>` with st_shndx
  SHN_LIVEPATCH: the module loader's simplify_symbols() leaves it alone;
- its relocations in section S (an SHF_ALLOC section) move from `.rela<S>` to
  `.klp.rela.<object>.<S>`, an SHF_ALLOC | SHF_RELA_LIVEPATCH RELA section against the same
  symbol table (the loader keeps it in memory with the module).

The kernel's loader writes the `.klp.rela.vmlinux.*` sections of every module as it loads it
(apply_relocations() -> klp_apply_section_relocs()), before any of the module's code runs. A
module's sections (`.klp.rela.<module>.*`) are written when that module is loaded: by livepatch
for a livepatch-backend module, by kpgen's core (relocs.c) for a kpatch-backend one.

Until the conversion, the generated C declares these symbols weak, so that modpost lets the
link through, and a weak sentinel (SENTINEL) lets the module's init refuse to run unless this
step made it absolute. The conversion keeps every symbol's index and every other byte; its
result is read back with pyelftools and every relocation compared (verify()) before the module
is replaced. Modversions (__versions) and .modinfo are untouched; a signed module is refused.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from . import elfrel
from .errors import BuildError

SHN_LIVEPATCH = 0xFF20
SHF_ALLOC = 0x2
SHF_INFO_LINK = 0x40
SHF_RELA_LIVEPATCH = 0x00100000
# the relocation types x86's apply_relocate_add() writes (arch/x86/kernel/module.c, 6.1 and 6.12)
RELOC_TYPES = {0: "R_X86_64_NONE", 1: "R_X86_64_64", 2: "R_X86_64_PC32", 4: "R_X86_64_PLT32",
               10: "R_X86_64_32", 11: "R_X86_64_32S", 24: "R_X86_64_PC64"}
# klp_resolve_symbols() reads the names with ".klp.sym.%55[^.].%511[^,],%lu"
MODULE_NAME_MAX = 55
KSYM_NAME_MAX = 511
MANIFEST = "klp-symbols.h"
SENTINEL = "kpgen_klp_converted"
SIGNATURE_MAGIC = b"~Module signature appended~\n"
KLP_RELA_RE = re.compile(r"^\.klp\.rela\.([^.]+)\.(.+)$")
KLP_SYM_RE = re.compile(r"^\.klp\.sym\.([^.]+)\.([^,]+),(\d+)$")
# the sections of a patch module where a module's klp relocations may go: code and data that
# stay, written while the module is live. Not special sections, which the loader reads while the
# patch module loads (jump labels, static calls, alternatives), nor __init/__exit code.
MODULE_TARGET_RE = re.compile(r"^\.(?:text|rodata|data)(?:$|\.(?!\.percpu))")


@dataclass(frozen=True)
class KlpSymbol:
    """An unexported symbol the module uses: its name in the module, where it lives, and which
    of same-named symbols it is (0: the name is unique in `object`)."""

    name: str
    object: str = "vmlinux"
    kallsyms: str = ""
    sympos: int = 0

    @property
    def lookup(self) -> str:
        """Its name in kallsyms."""
        return self.kallsyms or self.name

    @property
    def klp_name(self) -> str:
        """
        >>> KlpSymbol("proc_do_static_key_mutex", kallsyms="static_key_mutex.0").klp_name
        '.klp.sym.vmlinux.static_key_mutex.0,0'
        """
        return f".klp.sym.{self.object}.{self.lookup},{self.sympos}"

    @property
    def manifest(self) -> str:
        return manifest_lines(self)


PRAGMA_RE = re.compile(r"^#pragma weak (\w+)$")
KLP_COMMENT_RE = re.compile(r"^/\* (\.klp\.sym\.\S+) \*/$")


def manifest_lines(sym: KlpSymbol) -> str:
    """How the generated header klp-symbols.h lists `sym`: its klp symbol, then the pragma that
    makes it weak until the conversion (read_manifest() reads the pairs back).

    >>> print(manifest_lines(KlpSymbol("b", "mod", "b.2", 2)))
    /* .klp.sym.mod.b.2,2 */
    #pragma weak b
    """
    return f"/* {sym.klp_name} */\n#pragma weak {sym.name}"


def read_manifest(path: Path) -> list[KlpSymbol]:
    """The klp symbols a module's klp-symbols.h lists."""
    symbols = []
    klp = None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        m = KLP_COMMENT_RE.match(line)
        if m:
            klp = KLP_SYM_RE.match(m.group(1))
            if klp is None:
                raise BuildError(f"{path}:{n}: {m.group(1)} is not .klp.sym.<object>.<name>,<sympos>: "
                                 "regenerate the module with kpgen patch")
            continue
        p = PRAGMA_RE.match(line)
        if p and klp is not None:
            lookup = klp.group(2)
            symbols.append(KlpSymbol(p.group(1), klp.group(1), "" if lookup == p.group(1) else lookup,
                                     int(klp.group(3))))
        klp = None
    return symbols


@dataclass
class Conversion:
    """What convert() did: klp relocations per (object, section), and the converted symbols."""

    sections: dict[tuple[str, str], int] = field(default_factory=dict)
    symbols: list[KlpSymbol] = field(default_factory=list)

    @property
    def relocations(self) -> int:
        return sum(self.sections.values())

    def summary(self) -> str:
        objs = Counter(obj for obj, _ in self.sections)
        return (f"{self.relocations} klp relocation(s) of {len(self.symbols)} symbol(s) in "
                f"{len(self.sections)} section(s) ({', '.join(f'{o}: {n}' for o, n in sorted(objs.items()))})")


def _check_names(symbols: Sequence[KlpSymbol]) -> None:
    for s in symbols:
        if not s.object or "." in s.object or len(s.object) > MODULE_NAME_MAX:
            raise BuildError(f"klp symbol {s.name}: object {s.object!r} is not a module name the kernel can parse")
        if not s.lookup or "," in s.lookup or len(s.lookup) > KSYM_NAME_MAX:
            raise BuildError(f"klp symbol {s.name}: {s.lookup!r} is not a kallsyms name the kernel can parse")


def convert(obj: elfrel.RelObject, symbols: Sequence[KlpSymbol]) -> Conversion:
    """Turn `obj`'s relocations against `symbols` into klp relocations, in place.

    Refuses (BuildError) a symbol the module defines or does not use, a relocation type the
    kernel cannot write, and a module's symbol used where its relocation would be written too
    late (see MODULE_TARGET_RE).
    """
    _check_names(symbols)
    result = Conversion()
    strtab = obj.sections[obj.symtab].link
    syms = obj.symbols()
    wanted = {s.name: s for s in symbols}
    klp: dict[int, KlpSymbol] = {}
    sentinel = None
    for i, sym in enumerate(syms):
        if sym.name == SENTINEL and sym.shndx == elfrel.SHN_UNDEF:
            sentinel = i
        if sym.name not in wanted or not i:
            continue
        if sym.shndx != elfrel.SHN_UNDEF:
            raise BuildError(f"{sym.name} is defined in the module itself: it is no kernel symbol")
        klp[i] = wanted[sym.name]
    missing = sorted(set(wanted) - {syms[i].name for i in klp})
    if missing:
        raise BuildError(f"the module does not use {', '.join(missing)}: its klp symbol list ({MANIFEST}) is out "
                         "of date; regenerate it with kpgen patch")
    if symbols and sentinel is None:
        raise BuildError(f"the module has no undefined {SENTINEL}: it was not generated by this kpgen; "
                         "regenerate it with kpgen patch")
    new: list[elfrel.Section] = []
    for index, sec in enumerate(list(obj.sections)):
        if sec.type != elfrel.SHT_RELA or sec.flags & SHF_RELA_LIVEPATCH:
            continue
        target = obj.sections[sec.info]
        if not target.flags & SHF_ALLOC:
            # the loader never applies these (apply_relocations() skips them): they stay
            continue
        keep: list[elfrel.Rela] = []
        moved: dict[str, list[elfrel.Rela]] = {}
        for rel in obj.relas(index):
            s = klp.get(rel.sym)
            if s is None:
                keep.append(rel)
                continue
            if rel.type not in RELOC_TYPES:
                raise BuildError(f"the relocation of {s.name} at {target.name}+{rel.offset:#x} has type {rel.type}, "
                                 "which the kernel's apply_relocate_add() does not write")
            if s.object != "vmlinux" and not MODULE_TARGET_RE.match(target.name):
                raise BuildError(f"{s.name} of module {s.object} is used in section {target.name}, which the kernel "
                                 "reads before that module's relocations can be written: use it from the "
                                 "replacement functions' code or data only")
            moved.setdefault(s.object, []).append(rel)
        if not moved:
            continue
        obj.set_relas(index, keep)
        for objname, relas in sorted(moved.items()):
            klp_sec = elfrel.Section(f".klp.rela.{objname}.{target.name}", elfrel.SHT_RELA,
                                     SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH, 0, sec.link, sec.info, 8,
                                     elfrel.RELA.size)
            klp_sec.data = b"".join(elfrel.RELA.pack(r.offset, r.info, r.addend) for r in relas)
            new.append(klp_sec)
            result.sections[(objname, target.name)] = len(relas)
    for sec in new:
        obj.add_section(sec)
    for i, s in sorted(klp.items()):
        syms[i] = elfrel.Symbol(s.klp_name, obj.add_string(strtab, s.klp_name), syms[i].info, syms[i].other,
                                SHN_LIVEPATCH, 0, 0).with_bind(elfrel.STB_GLOBAL)
        if s not in result.symbols:
            result.symbols.append(s)
    if sentinel is not None:
        # absolute 1: the module's init sees it non-NULL
        syms[sentinel] = elfrel.Symbol(SENTINEL, syms[sentinel].st_name, syms[sentinel].info, syms[sentinel].other,
                                       elfrel.SHN_ABS, 1, 0).with_bind(elfrel.STB_GLOBAL)
    obj.set_symbols(syms)
    return result


# Reading back ------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Reloc:
    """One relocation as pyelftools reads it, named rather than indexed."""

    section: str  # the relocation section
    target: str  # the section it writes into
    offset: int
    type: int
    addend: int
    sym: int  # its index in the symbol table, which the conversion keeps
    symbol: str


def elf_of(data: bytes) -> ELFFile:
    try:
        return ELFFile(io.BytesIO(data))
    except ELFError as exc:
        raise BuildError(f"not a readable ELF module ({exc})") from None


def relocations(data: bytes, loaded_only: bool = False) -> list[Reloc]:
    """Every relocation of the module, in file order; with `loaded_only`, those of the sections
    the kernel loads (the others, DWARF's, are most of a module's and never written)."""
    elf = elf_of(data)
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise BuildError("the module has no symbol table")
    out = []
    for sec in elf.iter_sections():
        if isinstance(sec, RelocationSection):
            target_sec = elf.get_section(sec["sh_info"])
            if loaded_only and not target_sec["sh_flags"] & SHF_ALLOC:
                continue
            target = target_sec.name
            for rel in sec.iter_relocations():
                out.append(Reloc(sec.name, target, rel["r_offset"], rel["r_info_type"], rel["r_addend"],
                                 rel["r_info_sym"], symtab.get_symbol(rel["r_info_sym"]).name))
    return out


def verify(before: bytes, after: bytes, conversion: Conversion) -> None:
    """Read `after` back with pyelftools and compare it with `before`: every section but the
    symbol and string tables and the loaded sections' relocation sections unchanged byte for
    byte (the relocations of the others, DWARF's, keep their symbol indices), every symbol but
    the converted ones unchanged, and every relocation (offset, type, addend, symbol) of the
    loaded sections where the conversion says, once. BuildError on the first difference."""
    old, new = elf_of(before), elf_of(after)
    klp_of = {s.name: s for s in conversion.symbols}
    n_old = old.num_sections()
    if new.num_sections() != n_old + len(conversion.sections):
        raise BuildError(f"verify: {new.num_sections()} sections, expected {n_old + len(conversion.sections)}")
    for i in range(n_old):
        a, b = old.get_section(i), new.get_section(i)
        same = ("sh_type", "sh_flags", "sh_addr", "sh_link", "sh_info", "sh_addralign", "sh_entsize")
        if a.name != b.name or any(a[k] != b[k] for k in same):
            raise BuildError(f"verify: the header of section {i} ({a.name}) changed")
        rewritten = a["sh_type"] in ("SHT_SYMTAB", "SHT_STRTAB", "SHT_NOBITS") or (
            a["sh_type"] == "SHT_RELA" and old.get_section(a["sh_info"])["sh_flags"] & SHF_ALLOC)
        if not rewritten and a.data() != b.data():
            raise BuildError(f"verify: the contents of section {a.name} changed")
        if a["sh_type"] == "SHT_NOBITS" and a["sh_size"] != b["sh_size"]:
            raise BuildError(f"verify: the size of section {a.name} changed")
    for i in range(n_old, new.num_sections()):
        sec = new.get_section(i)
        m = KLP_RELA_RE.match(sec.name)
        flags = SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
        if (not m or sec["sh_type"] != "SHT_RELA" or sec["sh_flags"] != flags
                or new.get_section(sec["sh_link"]).name != ".symtab"
                or new.get_section(sec["sh_info"]).name != m.group(2)):
            raise BuildError(f"verify: new section {sec.name} is not a klp relocation section")
    old_syms, new_syms = old.get_section_by_name(".symtab"), new.get_section_by_name(".symtab")
    assert isinstance(old_syms, SymbolTableSection) and isinstance(new_syms, SymbolTableSection)
    if old_syms.num_symbols() != new_syms.num_symbols():
        raise BuildError("verify: the number of symbols changed")
    renamed: dict[int, KlpSymbol] = {}
    for i in range(old_syms.num_symbols()):
        was, now = old_syms.get_symbol(i), new_syms.get_symbol(i)
        if i and was.name in klp_of and was["st_shndx"] == "SHN_UNDEF":
            if now.name != klp_of[was.name].klp_name or now["st_shndx"] != SHN_LIVEPATCH:
                raise BuildError(f"verify: symbol {i} ({was.name}) is not {klp_of[was.name].klp_name} in "
                                 "SHN_LIVEPATCH")
            renamed[i] = klp_of[was.name]
        elif was.name == SENTINEL and was["st_shndx"] == "SHN_UNDEF":
            if now["st_shndx"] != "SHN_ABS" or now["st_value"] != 1:
                raise BuildError(f"verify: {SENTINEL} is not absolute")
        elif was.name != now.name or was.entry != now.entry:
            raise BuildError(f"verify: symbol {i} ({was.name}) changed")
    expected = []
    for r in relocations(before, loaded_only=True):
        s = renamed.get(r.sym)
        if s is None:
            expected.append(r)
        else:
            expected.append(Reloc(f".klp.rela.{s.object}.{r.target}", r.target, r.offset, r.type, r.addend, r.sym,
                                  s.klp_name))
    got = relocations(after, loaded_only=True)
    if Counter(expected) != Counter(got):
        lost = sorted((Counter(expected) - Counter(got)).elements())[:3]
        extra = sorted((Counter(got) - Counter(expected)).elements())[:3]
        raise BuildError(f"verify: relocations differ: missing {lost}, unexpected {extra}")


def postlink(ko: Path, manifest: Path) -> Conversion | None:
    """The post-link step on a built module: convert, verify, then replace the file (atomically).
    None when there is nothing to do: no klp symbol, or a module converted before (Kbuild left
    it as it was)."""
    ko = Path(ko)
    symbols = read_manifest(manifest)
    if not symbols:
        return None
    before = ko.read_bytes()
    if before.endswith(SIGNATURE_MAGIC):
        raise BuildError(f"{ko} is signed: the klp relocations must be written before signing; rebuild it")
    obj = elfrel.read(before)
    if any(s.flags & SHF_RELA_LIVEPATCH for s in obj.sections):
        names = {s.name for s in obj.symbols()}
        if any(s.name in names for s in symbols) or (SENTINEL in names and _undefined(obj, SENTINEL)):
            raise BuildError(f"{ko} has klp relocations and unconverted symbols: rebuild it (make clean)")
        return None
    conversion = convert(obj, symbols)
    after = obj.to_bytes()
    verify(before, after, conversion)
    tmp = ko.with_name(f".{ko.name}.klp.tmp")
    tmp.write_bytes(after)
    os.chmod(tmp, ko.stat().st_mode & 0o7777)
    tmp.replace(ko)
    return conversion


def _undefined(obj: elfrel.RelObject, name: str) -> bool:
    return any(s.name == name and s.shndx == elfrel.SHN_UNDEF for s in obj.symbols())
