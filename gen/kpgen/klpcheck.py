"""Checks of a built module's klp relocations, as the kernel's loader and livepatch will read
them, and of its klp symbols against the kernel's symbols: what `kpgen check` and `kpgen build`
report (elfcheck.py). The format is klprelocs.py's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from .klprelocs import (
    KLP_RELA_RE,
    KLP_SYM_RE,
    MODULE_TARGET_RE,
    RELOC_TYPES,
    SHF_ALLOC,
    SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
    elf_of,
)


@dataclass(frozen=True)
class KlpUse:
    """A klp symbol one of the module's klp relocation sections needs."""

    object: str
    name: str
    sympos: int
    section: str


# (object, kallsyms name) -> how many symbols of that name the object has, or None: unknown
Counts = Callable[[str, str], int | None]


def check(data: bytes) -> tuple[list[str], list[KlpUse]]:
    """The problems of a module's klp relocations as the kernel's loader and livepatch would
    find them (names, flags, symbols, types), and the klp symbols they need."""
    elf = elf_of(data)
    problems: list[str] = []
    uses: list[KlpUse] = []
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        return ["the module has no symbol table"], []
    klp_syms = {i for i in range(symtab.num_symbols()) if symtab.get_symbol(i)["st_shndx"] == SHN_LIVEPATCH}
    for i in sorted(klp_syms):
        if not KLP_SYM_RE.match(symtab.get_symbol(i).name):
            problems.append(f"symbol {symtab.get_symbol(i).name!r} is in SHN_LIVEPATCH but not named "
                            ".klp.sym.<object>.<name>,<sympos>")
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):
            continue
        target = elf.get_section(sec["sh_info"])
        is_klp = bool(sec["sh_flags"] & SHF_RELA_LIVEPATCH)
        if not is_klp:
            if target["sh_flags"] & SHF_ALLOC:
                for rel in sec.iter_relocations():
                    if rel["r_info_sym"] in klp_syms:
                        problems.append(f"{sec.name} relocates {target.name} against klp symbol "
                                        f"{symtab.get_symbol(rel['r_info_sym']).name}: the loader would write 0")
                        break
            continue
        m = KLP_RELA_RE.match(sec.name)
        if not m:
            problems.append(f"section {sec.name} has SHF_RELA_LIVEPATCH but is not named .klp.rela.<object>.<section>")
            continue
        objname = m.group(1)
        if not sec["sh_flags"] & SHF_ALLOC or sec["sh_type"] != "SHT_RELA":
            problems.append(f"section {sec.name} is not an SHF_ALLOC RELA section: the loader would drop it")
        if not target["sh_flags"] & SHF_ALLOC:
            problems.append(f"section {sec.name} relocates {target.name}, which is not loaded")
        if elf.get_section(sec["sh_link"]).name != ".symtab":
            problems.append(f"section {sec.name} does not use the module's symbol table")
        for rel in sec.iter_relocations():
            sym = symtab.get_symbol(rel["r_info_sym"])
            sm = KLP_SYM_RE.match(sym.name)
            if sym["st_shndx"] != SHN_LIVEPATCH or not sm:
                problems.append(f"section {sec.name} relocates against {sym.name!r}, not a klp symbol: livepatch "
                                "refuses it")
                continue
            if rel["r_info_type"] not in RELOC_TYPES:
                problems.append(f"section {sec.name}: relocation type {rel['r_info_type']} at {rel['r_offset']:#x} "
                                "is not one the kernel writes")
            if sm.group(1) != objname:
                problems.append(f"section {sec.name} relocates against {sym.name}, a symbol of another object")
            if objname != "vmlinux" and not MODULE_TARGET_RE.match(target.name):
                problems.append(f"section {sec.name} writes {target.name}, which the kernel reads before a module's "
                                "relocations are written")
            use = KlpUse(sm.group(1), sm.group(2), int(sm.group(3)), sec.name)
            if use not in uses:
                uses.append(use)
    return problems, uses


def check_symbols(uses: Iterable[KlpUse], counts: Counts) -> tuple[list[str], list[str]]:
    """Each klp symbol against the kernel's symbols: present, and unique or at its position.
    Problems, and notes on the objects whose symbols `counts` does not know."""
    problems: list[str] = []
    unknown: dict[str, list[str]] = {}
    seen: set[tuple[str, str, int]] = set()
    for u in uses:
        if (u.object, u.name, u.sympos) in seen:
            continue
        seen.add((u.object, u.name, u.sympos))
        n = counts(u.object, u.name)
        if n is None:
            unknown.setdefault(u.object, []).append(u.name)
        elif n == 0:
            problems.append(f"klp symbol {u.name} is not in {u.object} (section {u.section})")
        elif u.sympos == 0 and n > 1:
            problems.append(f"klp symbol {u.name} appears {n} times in {u.object} and has no sympos "
                            f"(section {u.section}): livepatch refuses the ambiguity")
        elif u.sympos > n:
            problems.append(f"klp symbol {u.name} has sympos {u.sympos} but appears {n} time(s) in {u.object}")
    notes = [f"klp symbols of {obj} ({', '.join(names)}) not checked: kpgen cannot read the symbols of {obj} "
             "(neither in the symbol snapshot nor installed)" for obj, names in sorted(unknown.items())]
    return problems, notes
