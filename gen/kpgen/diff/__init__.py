"""`kpgen diff`: a live patch from a source diff, in stages, one file each.

    FIX.patch + the kernel's exact source
      -> apply:   the diff on an overlay of the source (headers, offsets, fuzz)
      -> compare: each changed unit compiled twice with Kbuild's flags and parsed; compared
                  function by function (objdiff); changes a live patch cannot make refused
      -> targets: each changed function the running kernel has (ksyms), or its callers
      -> closure: what they need, one decision per symbol (copy, extern, exported, fresh)
      -> emit:    fix.c and the spec (spec.dump)
      -> finish:  the module compiled once: the kernel's unexported symbols it uses are its
                  klp symbols, checked against the kernel; `kpgen patch` / `kpgen build` turn
                  it into a module (build)

`plan()` runs the stages and keeps every decision with its reason, printed and written into
fix.c as a comment; `write()` writes the result. A refusal (DiffRefused) writes nothing.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from .. import ksyms, objdiff, source as ksource, units
from ..errors import DiffRefused, UsageError
from ..kernel import Kernel
from . import apply as _apply, compare, kpatch_api, merge, targets as _targets
from .build import build, set_backend
from .closure import extract_unit
from .compare import compile_one
from .decisions import PREFIX, Action, Decision, Plan, SymbolUse, Target
from .emit import DIFF_FILE, spec_text, write
from .finish import finish

__all__ = ["DIFF_FILE", "Action", "Decision", "DiffRefused", "Plan", "SymbolUse", "Target", "build",
           "looks_like_a_diff", "module_name", "plan", "plan_function", "set_backend", "spec_text", "write"]

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
        compiled = compare.compile_units(k, src.root, overlay, work, todo)
        syms = ksyms.vmlinux_symbols(k)
        p.decide("kernel symbols", Action.READ, syms.origin)
        for cu in compiled:
            compare.refuse_abi_change(k, cu)
        for cu in compiled:
            compare.refuse_layout_change(cu)
            compare.refuse_unpatchable(cu)
            cu.new_parsed.new_names = {key for key in cu.new_parsed.entities if key[0] in ("func", "var")
                                       and key not in cu.old_parsed.entities}
        # one patch module for every object the diff changes: each unit's code runs in its own
        markers = [kpatch_api.read(p, cu) for cu in compiled]
        chosen = [_targets.choose(k, p, cu, syms.object(k, cu.unit.object), m.ignored)
                  for cu, m in zip(compiled, markers, strict=True)]
        # what the diff defines anew, by name, in each file: another file may declare and use it
        defines = {key: cu.unit.rel for cu in compiled for key in cu.new_parsed.new_names
                   if cu.new_parsed.entities[key].definition}
        used = {objdiff.base_name(r) for cu, (targets, added) in zip(compiled, chosen, strict=True)
                for name, sym in cu.new.functions().items() if objdiff.base_name(name) in set(targets) | added
                for r in sym.callees + sym.addressed if objdiff.base_name(r) != objdiff.base_name(name)}
        used |= {fn for m in markers for fn in m.callbacks.values()}
        parts = []
        for cu, (targets, added), m in zip(compiled, chosen, markers, strict=True):
            unused = sorted(a for a in added if a not in used)
            for a in unused:
                p.decide(a, Action.IGNORED, "new in the diff, but nothing the patch module runs calls it: left out")
            elsewhere = {key: rel for key, rel in defines.items() if rel != cu.unit.rel}
            part = extract_unit(k, p, cu, cu.new_parsed, set(targets), added - set(unused),
                                syms.object(k, cu.unit.object), elsewhere=elsewhere)
            part.callbacks = m.callbacks
            kpatch_api.add_objects(p, cu.unit.object, m.callbacks, cu.unit.rel)
            parts.append(part)
        forced = {f for m in markers for f in m.force}
        p.targets[:] = [dataclasses.replace(t, force=t.name in forced) for t in p.targets]
        merge.resolve(p, parts)
        refuse_module_symbols_across_objects(p)
        if not p.targets and not p.objects:
            if not any(cu.cmp.changed or cu.cmp.added or cu.cmp.changed_data for cu in compiled):
                raise DiffRefused(str(patch), "no functional change: once the line numbers that __LINE__ records "
                                  f"(WARN, BUG and the like) are set aside, the compiled code of "
                                  f"{', '.join(cu.unit.rel for cu in compiled)} is the running kernel's",
                                  "nothing to patch")
            raise DiffRefused(str(patch), f"it changes no function that {k.release} runs",
                              "nothing to patch: give the diff of the fix")
        finish(k, p, parts, work)
    return p


def refuse_module_symbols_across_objects(p: Plan) -> None:
    """Refuses a patch of several objects whose code for a module uses that module's
    unexported symbols: kpgen resolves them only while the module is loaded, and only a patch
    of that module alone may use them."""
    for mod in sorted({s.object for s in p.symbols if s.object != "vmlinux"}):
        others = sorted({t.object for t in p.targets} - {mod})
        if others:
            names = ", ".join(sorted(s.ident for s in p.symbols if s.object == mod))
            raise DiffRefused(str(p.patch), f"the code of module {mod} uses its unexported symbols ({names}), "
                              f"which kpgen resolves only while {mod} is loaded, and the patch also replaces "
                              f"functions of {', '.join(others)}, which may run while it is not",
                              f"split the diff: the files of {mod} in one, the others in another")


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
        part = extract_unit(k, p, cu, parsed, {func}, set(), objsyms)
        finish(k, p, [part], work)
    return p
