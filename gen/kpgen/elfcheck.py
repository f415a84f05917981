"""Checks on built modules with pyelftools: modinfo, vermagic, symbols, klp relocations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from . import klpcheck, klprelocs
from .errors import BuildError
from .kernel import Kernel, parse_symvers

# License strings the kernel treats as GPL-compatible (include/linux/license.h).
GPL_COMPATIBLE = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}


@dataclass
class ModuleInfo:
    path: Path
    modinfo: dict[str, list[str]]
    defined_functions: set[str]
    undefined: set[str]

    def first(self, key: str) -> str | None:
        values = self.modinfo.get(key)
        return values[0] if values else None


@dataclass
class Verdict:
    path: Path
    problems: list[str] = field(default_factory=list)
    # what could not be checked
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_module(path: Path) -> ModuleInfo:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            modinfo: dict[str, list[str]] = {}
            section = elf.get_section_by_name(".modinfo")
            if section is not None:
                for entry in section.data().split(b"\0"):
                    if b"=" in entry:
                        key, _, value = entry.decode("utf-8", "replace").partition("=")
                        modinfo.setdefault(key, []).append(value)
            funcs: set[str] = set()
            undefined: set[str] = set()
            symtab = elf.get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if not sym.name:
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF":
                        undefined.add(sym.name)
                    elif sym["st_info"]["type"] == "STT_FUNC":
                        funcs.add(sym.name)
    except (OSError, ELFError) as exc:
        raise BuildError(f"{path}: not a readable ELF module ({exc})") from None
    return ModuleInfo(path=path, modinfo=modinfo, defined_functions=funcs, undefined=undefined)


def klp_counts(kernel: Kernel) -> klpcheck.Counts:
    """How many symbols of a name an object of the kernel has, for the klp symbols of built
    modules: from the facts the checks of `kpgen patch` use (targets.py: the symbol snapshot,
    else the kernel's image and the modules' files); None for an object kpgen cannot read."""
    from . import targets

    def counts(obj: str, name: str) -> int | None:
        found = targets.kernel_facts(kernel, [obj], []).get(obj)
        return None if found is None else len(found.symbols.positions(name, text=False))

    return counts


def check_module(
    path: Path,
    kernel: Kernel,
    core_symvers: Path | None = None,
    replacements: tuple[str, ...] = (),
    backend: str | None = None,
    klp_symbols: klpcheck.Counts | None = None,
) -> Verdict:
    """Check one .ko; with core_symvers it is checked as a patch module of that core.

    A livepatch-backend module (`backend="livepatch"`, or with None a module whose modinfo says
    `livepatch=Y` and that does not depend on the core) is checked as the kernel's livepatch
    wants it instead: `livepatch=Y` in its modinfo, no dependency on the core, every undefined
    symbol exported by the kernel itself. Either way its klp relocations are checked as the
    kernel will read them, and with `klp_symbols` (see klp_counts()) each klp symbol against
    the kernel's symbols."""
    info = read_module(path)
    depends = [d for d in (info.first("depends") or "").split(",") if d]
    livepatch = backend == "livepatch" or (backend is None and info.first("livepatch") == "Y"
                                           and "kpatch" not in depends)
    if livepatch:
        verdict = _check_livepatch(info, kernel, replacements)
    else:
        verdict = _check_kpatch(info, kernel, core_symvers, replacements)
    _check_klp(info, verdict, klp_symbols)
    return verdict


def _check_klp(info: ModuleInfo, verdict: Verdict, counts: klpcheck.Counts | None) -> None:
    """The module's klp relocations, as the loader, livepatch and the core will read them."""
    if klprelocs.SENTINEL in info.undefined:
        verdict.problems.append("its kernel symbols are not klp relocations: it was built without kpgen build "
                                "(its init refuses to run)")
        return
    problems, uses = klpcheck.check(info.path.read_bytes())
    verdict.problems += problems
    modules = sorted({u.object for u in uses} - {"vmlinux"})
    if modules and info.first("livepatch") != "Y":
        verdict.problems.append(f"klp relocations for {', '.join(modules)} need modinfo livepatch=Y: the kernel "
                                "keeps the module's ELF information (klp_info) for livepatch modules only")
    if counts is not None:
        found, notes = klpcheck.check_symbols(uses, counts)
        verdict.problems += found
        verdict.notes += notes


def _check_kpatch(info: ModuleInfo, kernel: Kernel, core_symvers: Path | None,
                  replacements: tuple[str, ...]) -> Verdict:
    verdict = Verdict(path=info.path)
    _check_common(info, kernel, verdict)
    exports = dict(kernel.exports)
    if core_symvers is not None:
        if not Path(core_symvers).is_file():
            verdict.problems.append(f"core symbol list {core_symvers} does not exist: build the core first")
        else:
            exports.update(parse_symvers(Path(core_symvers).read_text()))
        depends = (info.first("depends") or "").split(",")
        if "kpatch" not in depends:
            verdict.problems.append(f"modinfo field 'depends' is {info.first('depends')!r}, without 'kpatch'")
    for sym in sorted(info.undefined - {klprelocs.SENTINEL}):
        if sym not in exports:
            verdict.problems.append(f"undefined symbol '{sym}' is exported neither by the kernel nor by the core")
    for name in replacements:
        if name not in info.defined_functions:
            verdict.problems.append(f"replacement '{name}' is not a function defined in the module")
    return verdict


def _check_common(info: ModuleInfo, kernel: Kernel, verdict: Verdict) -> None:
    vermagic = info.first("vermagic")
    if vermagic is None:
        verdict.problems.append("modinfo field 'vermagic' is missing")
    elif vermagic.split(" ")[0] != kernel.release:
        verdict.problems.append(f"modinfo field 'vermagic' is {vermagic!r}, not for kernel {kernel.release}")
    license_ = info.first("license")
    if license_ not in GPL_COMPATIBLE:
        verdict.problems.append(f"modinfo field 'license' is {license_!r}, not GPL-compatible")


def _check_livepatch(info: ModuleInfo, kernel: Kernel, replacements: tuple[str, ...]) -> Verdict:
    verdict = Verdict(path=info.path)
    _check_common(info, kernel, verdict)
    if info.first("livepatch") != "Y":
        verdict.problems.append(f"modinfo field 'livepatch' is {info.first('livepatch')!r}, not 'Y': "
                                "klp_enable_patch() refuses the module")
    depends = [d for d in (info.first("depends") or "").split(",") if d]
    if "kpatch" in depends:
        verdict.problems.append(f"modinfo field 'depends' is {info.first('depends')!r}: a livepatch module "
                                "must not need kpgen's core")
    for sym in sorted(info.undefined - {klprelocs.SENTINEL}):
        if sym not in kernel.exports:
            verdict.problems.append(f"undefined symbol '{sym}' is not exported by the kernel")
    for name in replacements:
        if name not in info.defined_functions:
            verdict.problems.append(f"replacement '{name}' is not a function defined in the module")
    return verdict
