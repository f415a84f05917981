"""IBT kernels: the module must never call, through a pointer, a kernel function without
ENDBR. The module is compiled once as `kpgen patch` will make it; each such function it
calls is copied into fix.c from its own file, until none is left."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from .. import ksyms, units
from ..errors import BuildError, DefinitionError, DiffRefused
from ..kernel import Kernel
from . import emit
from .closure import ExtractedUnit, extract_unit
from .compare import compile_one
from .decisions import Action, Plan

MAX_COPY_ROUNDS = 3


def check_module(k: Kernel, p: Plan, where: Path, syms: ksyms.KernelSymbols) -> list[str]:
    """Returns, on IBT kernels, the functions without ENDBR the module would call through a
    pointer; refuses an unexported symbol that only an inline function of the kernel headers
    names (fix.c cannot redirect it)."""
    from .. import generate, kbuild

    assert p.spec is not None
    where.mkdir(parents=True, exist_ok=True)
    (where / "fix.c").write_text(p.fix_c)
    patch = dataclasses.replace(p.spec, path=where / f"{p.name}.toml", sources=(where / "fix.c",))
    core = generate.core_files(k)
    model_files = generate.render.render_patch(
        generate.patch_model(patch, where / "module", where / "core", k.release, k.features.summary()), "module")
    header = next(f.content for f in core if f.path.name == "kpatch.h")
    undefined, called = kbuild.probe_symbols(k, model_files, header, "module", patch.name)
    core_exports = {m.decode() for f in core if f.path.suffix == ".c" for m in generate.EXPORT_RE.findall(f.content)}
    unexported = sorted(undefined - set(k.exports) - core_exports - generate.MODPOST_SYMBOLS)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", p.fix_c))
    # the objects the module patches, modules first: a name is looked up where the code runs
    tables = [syms.object(k, o) for o in sorted({t.object for t in p.targets} - {"vmlinux"})]
    tables.append(syms.objects["vmlinux"])
    no_endbr: list[str] = []
    for name in unexported:
        if name not in words:
            raise DiffRefused(name, "the patched code needs it, the kernel does not export it, and only an inline "
                              "function of the kernel headers names it, while kpgen can redirect only the names "
                              "fix.c itself uses", "patch the functions that call that inline function differently")
        if syms.ibt and name in called:
            table = next((t for t in tables if t.has(name)), tables[-1])
            pos = table.positions(name)
            if table.endbr is not None and pos and not any(table.endbr.get(i) for i in pos):
                no_endbr.append(name)
    return no_endbr


def with_copies(k: Kernel, p: Plan, parts: list[ExtractedUnit], tree: Path, work: Path,
                syms: ksyms.KernelSymbols) -> None:
    """Sets fix.c and the spec, with copies of the functions without ENDBR that the code calls
    (IBT kernels), each taken from its own file; refuses when the copies do not compile alone."""
    copies: list[ExtractedUnit] = []
    copied: set[str] = set()
    for _ in range(MAX_COPY_ROUNDS + 1):
        p.fix_c = emit.fix_c(p, k, [*copies, *parts])
        p.spec = emit.patch_spec(p)
        try:
            need = [n for n in check_module(k, p, work / "check", syms) if n not in copied]
        except BuildError as exc:
            first = next((line.strip() for line in str(exc).splitlines() if "error:" in line), str(exc)[:200])
            if not copied:
                raise DiffRefused(", ".join(sorted({t.unit for t in p.targets})) or str(p.patch),
                                  f"the C kpgen took out of the source does not compile as a module ({first})",
                                  "the patched code needs what kpgen cannot take out of its files: write the "
                                  "replacement with kpgen new, and report the diff to kpgen's developers") from None
            raise DiffRefused(", ".join(sorted(copied)), f"the patched code calls these functions, which have no "
                              f"ENDBR in {k.release} (IBT), and the copies kpgen made do not compile on their "
                              f"own ({first})", "a call through a pointer would fault on IBT hardware: patch code "
                              "that does not call them") from None
        if not need:
            return
        if len(copies) >= MAX_COPY_ROUNDS * 4:
            break
        for name in need:
            copies.insert(0, copy_from_its_file(k, p, tree, work, name, syms))
            copied.add(name)
    raise DiffRefused(", ".join(sorted(copied)), f"the patched code needs copies of more functions without ENDBR in "
                      f"{k.release} than kpgen makes", "patch fewer functions")


def copy_from_its_file(k: Kernel, p: Plan, tree: Path, work: Path, name: str,
                       syms: ksyms.KernelSymbols) -> ExtractedUnit:
    """Returns the part of fix.c that copies `name` from the file defining it; refuses a
    function no one file of the object defines."""
    try:
        rel = units.find_definition(tree, name)
    except DefinitionError:
        raise DiffRefused(f"{name}()", f"the patched code calls it, it has no ENDBR in {k.release} (IBT), and kpgen "
                          "finds no one file that defines it to copy it from",
                          "a call through a pointer would fault on IBT hardware: patch code that does not call "
                          "it") from None
    cu = compile_one(k, tree, rel, work / f"copy-{name}.o")
    objects = {t.object for t in p.targets}
    if cu.unit.object not in objects:
        raise DiffRefused(f"{name}()", f"the patched code calls it, it has no ENDBR in {k.release} (IBT), and it is "
                          f"in {cu.unit.object}, which the patch does not patch, so kpgen cannot copy it",
                          "patch code that does not call it")
    why = (f"has no ENDBR in {k.release} (IBT): a call through a pointer would fault, so it is copied from "
           f"{rel} under its own name")
    p.decide(name, Action.COPY, why)
    return extract_unit(k, p, cu, cu.new_parsed, set(), set(), syms.object(k, cu.unit.object), syms.ibt,
                        copies={name: why})
