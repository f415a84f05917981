"""Compile each changed unit twice, as the kernel's build did (original and patched), parse
both with the C front end, and compare them function by function: what changed, and the
changes a live patch cannot make (__init code, data the kernel holds, a structure's layout)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import extract, objdiff, units
from ..errors import BuildError, DiffRefused
from ..kernel import Kernel


@dataclass
class CompiledUnit:
    """One changed .c file, compiled and parsed before and after the diff."""

    unit: units.Unit
    old: objdiff.Object
    new: objdiff.Object
    cmp: objdiff.Comparison
    old_argv: list[str]
    new_argv: list[str]
    old_parsed: extract.Parsed
    new_parsed: extract.Parsed


def compile_units(k: Kernel, tree: Path, overlay: Path, work: Path, todo: list[units.Unit]) -> list[CompiledUnit]:
    """Returns each unit compiled and parsed, original and patched; refuses a patched unit
    that does not compile."""
    procs = []
    for i, u in enumerate(todo):
        old_o, new_o = work / f"old{i}.o", work / f"new{i}.o"
        a = units.compile_argv(k, u, tree, None, tree / u.rel, old_o)
        b = units.compile_argv(k, u, tree, overlay, overlay / u.rel, new_o)
        procs.append((u, a, b, old_o, new_o, units.run_compile(a, k, ""), units.run_compile(b, k, "")))
    # the C front end reads both versions of each unit while gcc compiles them
    with ThreadPoolExecutor(max_workers=2) as pool:
        parses = [(pool.submit(extract.parse, overlay / u.rel, b, [overlay, tree]),
                   pool.submit(extract.parse, tree / u.rel, a, [tree])) for u, a, b, *_ in procs]
        parsed = [(f1.result(), f2.result()) for f1, f2 in parses]
    out = []
    for (u, a, b, old_o, new_o, pa, pb), (new_p, old_p) in zip(procs, parsed, strict=True):
        units.wait_compile(pa, f"{u.rel} (original)")
        try:
            units.wait_compile(pb, f"{u.rel} (patched)")
        except BuildError as exc:
            raise DiffRefused(u.rel, f"the patched file does not compile: {exc}", "fix the diff") from None
        old, new = objdiff.read(old_o), objdiff.read(new_o)
        out.append(CompiledUnit(u, old, new, objdiff.compare(old, new), a, b, old_p, new_p))
    return out


def compile_one(k: Kernel, tree: Path, rel: str, out: Path) -> CompiledUnit:
    """Returns one unit of the tree compiled and parsed as it is (for `kpgen new`, and for
    copies taken from files the diff does not change)."""
    unit = units.locate(k, tree, rel)
    argv = units.compile_argv(k, unit, tree, None, tree / unit.rel, out)
    proc = units.run_compile(argv, k, unit.rel)
    parsed = extract.parse(tree / unit.rel, argv, [tree])
    units.wait_compile(proc, unit.rel)
    obj = objdiff.read(out)
    return CompiledUnit(unit, obj, obj, objdiff.Comparison((), (), (), (), ()), argv, argv, parsed, parsed)


def refuse_unpatchable(cu: CompiledUnit) -> None:
    """Refuses changes to __init and __exit code and to data the kernel already holds."""
    c = cu.cmp
    for fname in c.changed:
        sec = cu.old.symbols[fname].section
        if sec.startswith((".init", ".exit")) or sec in (".text.startup",):
            what = "__init" if sec.startswith(".init") else "__exit"
            raise DiffRefused(f"{cu.unit.rel}: {fname}()", f"it is {what} code, which ran at boot (or runs at "
                              "unload), and a live patch cannot change it", "change the code that runs later")
    for vname in c.changed_data:
        sym = cu.new.variables().get(vname) or next(s for n, s in cu.new.variables().items()
                                                      if objdiff.normalised(n) == vname)
        if sym.section.startswith((".init", ".exit")):
            raise DiffRefused(f"{cu.unit.rel}: {vname}", "it is __init data, and a live patch cannot change what "
                              "the kernel used at boot", "change the code that runs later")
        raise DiffRefused(f"{cu.unit.rel}: {vname}", "the diff changes its initial value or size, and a live "
                          "patch replaces functions, not data the kernel already holds",
                          "use a shadow variable (klp_shadow_*) for new state")
    for fname in c.added:
        if cu.new.symbols[fname].section.startswith(".init"):
            raise DiffRefused(f"{cu.unit.rel}: {fname}()", "the diff adds __init code, which would never run in a "
                              "live patch", "put the new code in a function that runs later")


def refuse_layout_change(cu: CompiledUnit) -> None:
    """Refuses a change to the layout of a structure the unit defines."""
    old_l = extract.record_layouts(cu.old_parsed, set(cu.old_parsed.local_files))
    new_l = extract.record_layouts(cu.new_parsed, set(cu.new_parsed.local_files))
    for rec, layout in sorted(new_l.items()):
        if rec in old_l and old_l[rec] != layout:
            raise DiffRefused(f"{cu.unit.rel}: {rec}", "the diff changes its layout, and objects of it already "
                              "exist in the running kernel",
                              "keep the layout and put new fields in a shadow variable (klp_shadow_*)")
