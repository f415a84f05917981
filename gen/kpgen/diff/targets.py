"""Which functions the patch module replaces: each changed function the running kernel has
as itself and ftrace can hook; for one it does not (inlined away, only a gcc clone, notrace),
its callers, up to functions it has."""

from __future__ import annotations

import re

from .. import ksyms, objdiff
from ..errors import DiffRefused
from ..kernel import Kernel
from .compare import CompiledUnit
from .decisions import Action, Plan, Target, replacement_name

SYSCALL_RE = re.compile(r"^__(?:x64|ia32|x32|se|do)_(?:compat_)?sys_\w+$")
# the entry points SYSCALL_DEFINE makes on x86-64
WRAPPER_RE = re.compile(r"^__(?P<abi>x64|ia32)_sys_(?P<name>\w+)$")
MAX_CALLER_DEPTH = 8


def pick_position(objsyms: ksyms.ObjectSymbols, name: str, neighbours: set[str], text: bool,
                  what: str = "") -> int:
    """Returns the sympos of `name` in the object (0 when unique): of several, the one among the
    unit's own symbols in kallsyms order; refuses when two candidates are as likely."""
    pos = objsyms.positions(name, text=text)
    if len(pos) <= 1:
        return 0
    scores = []
    for i in pos:
        around = {n for _, n in objsyms.entries[max(0, i - 30):i + 30]}
        scores.append(len(around & neighbours))
    best = max(scores)
    if scores.count(best) > 1:
        if what:
            raise DiffRefused(what, f"{name} in kallsyms appears {len(pos)} times in {objsyms.name}, and kpgen "
                              "cannot tell which one is this file's, while the patched code must keep using the "
                              "kernel's own variable", "change code that does not use it")
        raise DiffRefused(name, f"it appears {len(pos)} times in {objsyms.name}, and kpgen cannot tell which one "
                          "is this file's", "change code that does not use it")
    return scores.index(best) + 1


def choose(k: Kernel, p: Plan, cu: CompiledUnit, objsyms: ksyms.ObjectSymbols,
           ignored: set[str] | None = None) -> tuple[dict[str, str], set[str]]:
    """Returns the unit's targets (name -> why) and the functions the diff adds, leaving out
    the changes of `ignored` functions (KPATCH_IGNORE_FUNCTION); refuses a changed function no
    patchable caller covers."""
    old_funcs, new_funcs = cu.old.functions(), cu.new.functions()
    changed = {objdiff.base_name(n) for n in cu.cmp.changed} - (ignored or set())
    added = {objdiff.base_name(n) for n in cu.cmp.added} - {objdiff.base_name(n) for n in old_funcs}
    targets: dict[str, str] = {}
    queue = sorted(changed)
    seen: set[str] = set()
    depth = 0
    while queue and depth <= MAX_CALLER_DEPTH:
        nxt: list[str] = []
        for fn in queue:
            if fn in seen:
                continue
            seen.add(fn)
            own = old_funcs.get(fn)
            if own is not None and objsyms.positions(fn):
                if not own.traced:
                    reason = "notrace: ftrace cannot hook it"
                else:
                    targets[fn] = "its compiled code changed" if fn in changed else targets.get(fn, "")
                    continue
            else:
                clones = sorted(n for n in old_funcs if objdiff.base_name(n) == fn and n != fn
                                and not n.endswith(".cold"))
                reason = (f"only gcc's clone {', '.join(clones)} exists, with another calling convention"
                          if clones else f"inlined away in {k.release}")
            callers = sorted({objdiff.base_name(g) for g, s in new_funcs.items()
                              if any(objdiff.base_name(c) == fn for c in s.callees + s.addressed)
                              and objdiff.base_name(g) != fn})
            taken = [v for v, s in cu.new.variables().items() if fn in s.addressed or
                     any(objdiff.base_name(a) == fn for a in s.addressed)]
            if taken:
                exported = any(t.startswith(("__UNIQUE_ID___addressable_", "__ksymtab_")) for t in taken)
                holder = "the kernel exports it" if exported else f"{objdiff.normalised(taken[0])} holds its address"
                raise DiffRefused(f"{cu.unit.rel}: {fn}()", f"it changed, is not patchable itself ({reason}), and "
                                  f"{holder}: no patchable caller covers every use",
                                  "change a function the kernel can patch")
            if not callers:
                raise DiffRefused(f"{cu.unit.rel}: {fn}()", f"it changed but is not patchable ({reason}) and has "
                                  "no caller in its file to patch instead", "change a function the kernel can patch")
            p.decide(fn, Action.VIA_CALLERS, f"{reason}: patching {', '.join(callers)}")
            for c in callers:
                targets.setdefault(c, f"calls {fn}(), which changed and is {reason.split(':')[0]}")
            nxt += callers
        queue = nxt
        depth += 1
    targets = {t: r or "its compiled code changed" for t, r in targets.items() if t not in added}
    wrapped = sorted(t for t in targets if SYSCALL_RE.match(t) and not WRAPPER_RE.match(t))
    if wrapped:
        raise DiffRefused(f"{cu.unit.rel}: {', '.join(wrapped)}", "the diff changes a system call through a "
                          "function SYSCALL_DEFINE makes that kpgen cannot replace",
                          "move the change into a helper the system call calls, or write the replacement with "
                          "kpgen new")
    unit_funcs = {objdiff.base_name(n) for n in old_funcs}
    for t, why in sorted(targets.items()):
        pos = pick_position(objsyms, t, unit_funcs, text=True)
        p.targets.append(Target(t, cu.unit.object, pos, replacement_name(t, set(targets)), cu.unit.rel))
        p.decide(t, Action.TARGET, why)
    for a in sorted(added):
        p.decide(a, Action.NEW, "a function the diff adds: compiled into the patch module")
    return targets, added
