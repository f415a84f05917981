"""`kpgen diff`: a live patch from a source diff, in stages, one file each.

    FIX.patch + the kernel's exact source
      -> apply:   the diff on an overlay of the source (headers, offsets, fuzz)
      -> compare: each changed unit compiled twice with Kbuild's flags and parsed; compared
                  function by function (objdiff); changes a live patch cannot make refused
      -> targets: each changed function the running kernel has (ksyms), or its callers
      -> closure: what they need, one decision per symbol (copy, extern, exported, fresh)
      -> emit:    fix.c and the spec (spec.dump), which `kpgen patch` / `kpgen build` turn
                  into a module (build)

`plan()` runs the stages and keeps every decision with its reason, printed and written into
fix.c as a comment; `write()` writes the result. A refusal (DiffRefused) writes nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .. import ksyms, objdiff, source as ksource, units
from ..errors import DiffRefused, UsageError
from ..kernel import Kernel
from . import apply as _apply, compare, endbr, targets as _targets
from .build import build, set_backend
from .closure import extract_unit
from .compare import compile_one
from .decisions import PREFIX, Action, Decision, Plan, SymbolUse, Target
from .emit import spec_text, write

__all__ = ["Action", "Decision", "DiffRefused", "Plan", "SymbolUse", "Target", "build", "looks_like_a_diff",
           "module_name", "plan", "plan_function", "set_backend", "spec_text", "write"]

module_name = _apply.module_name
looks_like_a_diff = _apply.looks_like_a_diff


def plan(k: Kernel, patch: Path, src: ksource.Source, name: str, strip: int = 1, fuzz: int = 0) -> Plan:
    """Returns what `kpgen diff` makes of `patch` (applied as `patch -p STRIP`, with at most
    `fuzz` lines of fuzz) for kernel `k`: targets, decisions, fix.c and the spec; refuses
    (DiffRefused) a diff that cannot become a live patch, naming why."""
    p = Plan(name=name, patch=patch, release=k.release)
    with tempfile.TemporaryDirectory(prefix="kpgen-diff-") as tmp:
        work = Path(tmp)
        overlay = work / "tree"
        p.applied = _apply.apply(patch, patch.read_bytes(), src.root, overlay, strip, fuzz)
        files = [f.path for f in p.applied]
        _apply.refuse_header_reach(src.root, files)
        cfiles = [f for f in files if f.endswith(".c")]
        if not cfiles:
            raise DiffRefused(str(patch), "it changes no .c file: nothing to compile", "give the diff of the fix")
        todo = [units.locate(k, src.root, f) for f in cfiles]
        objects = {u.object for u in todo}
        if len(objects) > 1:
            raise DiffRefused(str(patch), f"it changes code of {' and '.join(sorted(objects))}, and one live patch "
                              "module patches one object", "split the diff")
        compiled = compare.compile_units(k, src.root, overlay, work, todo)
        syms = ksyms.vmlinux_symbols(k)
        p.decide("kernel symbols", Action.READ, syms.origin)
        objsyms = syms.object(k, todo[0].object)
        parts = []
        for cu in compiled:
            compare.refuse_layout_change(cu)
            compare.refuse_unpatchable(cu)
            cu.new_parsed.new_names = {key for key in cu.new_parsed.entities if key[0] in ("func", "var")
                                       and key not in cu.old_parsed.entities}
            chosen, added = _targets.choose(k, p, cu, objsyms)
            parts.append(extract_unit(k, p, cu, cu.new_parsed, set(chosen), added, objsyms, syms.ibt))
        if not p.targets:
            raise DiffRefused(str(patch), f"it changes no function's compiled code in {k.release}",
                              "nothing to patch: give the diff of the fix")
        endbr.with_copies(k, p, parts, src.root, work, objsyms, syms.ibt)
    return p


def plan_function(k: Kernel, src: ksource.Source, func: str, name: str, rel: str | None = None) -> Plan:
    """Returns `kpgen new`'s plan with the source: the original function, renamed, with what it
    needs; refuses a function the kernel cannot have replaced."""
    rel = rel or units.find_definition(src.root, func)
    p = Plan(name=name, patch=None, release=k.release)
    with tempfile.TemporaryDirectory(prefix="kpgen-new-") as tmp:
        work = Path(tmp)
        cu = compile_one(k, src.root, rel, work / "unit.o")
        syms = ksyms.vmlinux_symbols(k)
        objsyms = syms.object(k, cu.unit.object)
        own = cu.old.functions().get(func)
        parsed = cu.new_parsed
        if ("func", func) not in parsed.entities or not parsed.entities[("func", func)].definition:
            raise UsageError(f"{rel} does not define {func}() as a plain function kpgen can copy")
        if own is None or not objsyms.positions(func):
            raise UsageError(f"{func}() is inlined away in {k.release}: it cannot be replaced itself; "
                             "replace its callers")
        if not own.traced:
            raise UsageError(f"ftrace cannot hook {func}() in {k.release} (notrace): replace its callers")
        unit_funcs = {objdiff.base_name(n) for n in cu.old.functions()}
        pos = _targets.pick_position(objsyms, func, unit_funcs, text=True)
        p.targets.append(Target(func, cu.unit.object, pos, PREFIX + func, rel))
        p.decide(func, Action.TARGET, f"defined in {rel}")
        part = extract_unit(k, p, cu, parsed, {func}, set(), objsyms, syms.ibt)
        endbr.with_copies(k, p, [part], src.root, work, objsyms, syms.ibt)
    return p
