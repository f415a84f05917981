"""A spec's targets and unexported symbols, checked against the kernel without booting it.

What the kernel has comes, per object, from the best source there is:
- the booted kernel's own symbols (a snapshot: `kpgen snapshot`, or the boot tests') for
  vmlinux and for the modules that were loaded when it was taken;
- else the kernel's files: vmlinux's kallsyms, mcount table and init text read out of
  /boot/vmlinuz-<release>, a module's from its .ko under /lib/modules/<release> (ksyms.py);
- else nothing: an object that is neither (a module built out of the kernel's tree, the image
  not installed) is not checked, and kpgen says so.

For each `[[function]]`: the target exists in its object as a function, `sympos` picks one of
the same-named functions (and is needed when there are several), ftrace can hook it, and it is
not `__init` code. For each unexported symbol the sources use: it exists in its object, and a
name found several times there has a `sympos`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import ksyms, snapshot
from .errors import KernelError
from .kernel import Kernel
from .spec import PatchSpec, SpecError


@dataclass
class Facts:
    """What kpgen knows of one object's symbols, and where it learnt it."""

    symbols: ksyms.ObjectSymbols
    origin: str

    def functions(self, name: str) -> list[int]:
        return self.symbols.positions(name, text=True)

    def before(self, i: int) -> str:
        return self.symbols.entries[i - 1][1] if i > 0 else ""


def snapshot_facts(snap: snapshot.Snapshot, objects: Sequence[str] | None = None) -> dict[str, Facts]:
    """The objects of a booted snapshot (those of `objects`, else all), in kallsyms order; a name
    ftrace lists is hookable in each of its positions (available_filter_functions does not say
    which)."""
    wanted = set(objects) if objects is not None else set(snap.objects)
    # each object's symbols by the name of the one before: kallsyms order, rebuilt
    following: dict[str, dict[str, list[tuple[str, str]]]] = {obj: {} for obj in wanted}
    for (obj, name), rows in snap.symbols.items():
        if obj in wanted:
            for typ, prev in rows:
                following[obj].setdefault(prev, []).append((typ, name))
    facts: dict[str, Facts] = {}
    for obj in sorted(wanted & snap.objects):
        entries = _order(following[obj])
        syms = ksyms.ObjectSymbols(obj, entries)
        syms.traceable = {i for i, (typ, name) in enumerate(entries)
                          if typ in ksyms.TEXT_TYPES and snap.traceable[(obj, name)]}
        facts[obj] = Facts(syms, f"the booted snapshot of {snap.release}")
    return facts


def _order(following: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """An object's symbols in kallsyms order, from each one's predecessor (the first one's is the
    last symbol of the object before it)."""
    names = {name for rows in following.values() for _, name in rows}
    out: list[tuple[str, str]] = []
    for start in [prev for prev in following if prev not in names]:
        cur = start
        while following.get(cur):
            typ, name = following[cur].pop(0)
            out.append((typ, name))
            cur = name
    return out


_FACTS: dict[tuple[str, str], Facts | str] = {}


def kernel_facts(k: Kernel, objects: Sequence[str], notes: list[str]) -> dict[str, Facts]:
    """Each object's facts (read once per process): vmlinux's from ksyms (the booted snapshot's
    list when there is one, with the image's mcount and init facts while both lists agree), a
    module's from the snapshot when it was loaded then, else from its .ko; an object kpgen can
    read neither way is left out, with a note saying why."""
    missing = [obj for obj in objects if (k.release, obj) not in _FACTS]
    snap = snapshot.load(k.release) if missing else None
    booted = snapshot_facts(snap, [o for o in missing if o != "vmlinux"]) if snap is not None else {}
    for obj in missing:
        try:
            if obj == "vmlinux":
                syms = ksyms.vmlinux_symbols(k)
                vm = syms.objects["vmlinux"]
                if vm.traceable is None and snap is not None:
                    # the image disagrees with the boot: the boot's list, and what ftrace listed
                    vm = snapshot_facts(snap, ["vmlinux"])["vmlinux"].symbols
                _FACTS[(k.release, obj)] = Facts(vm, syms.origin)
            elif obj in booted:
                _FACTS[(k.release, obj)] = booted[obj]
            else:
                _FACTS[(k.release, obj)] = Facts(ksyms.module_symbols(k, obj, ibt=False),
                                                 str(ksyms.module_file(k, obj)))
        except KernelError as exc:
            _FACTS[(k.release, obj)] = booted.get(obj, f"{obj}: not checked ({exc})")
    facts: dict[str, Facts] = {}
    for obj in objects:
        found = _FACTS[(k.release, obj)]
        if isinstance(found, str):
            notes.append(found)
        else:
            facts[obj] = found
    return facts


def _candidates(f: Facts, positions: list[int]) -> str:
    return "; ".join(f"{n} (after {f.before(i) or 'the start'})" for n, i in enumerate(positions, 1))


def validate(patch: PatchSpec, facts: dict[str, Facts], release: str, unexported: Sequence[str] = ()) -> None:
    """Raise SpecError for the first target or symbol the kernel's symbols refute."""
    where = f"kernel {release}"
    for i, func in enumerate(patch.functions):
        f = facts.get(func.object)
        if f is None:
            continue
        key = f"function[{i}]"
        positions = f.functions(func.target)
        if not positions:
            what = "is not a function" if f.symbols.has(func.target) else "does not exist"
            raise SpecError(patch.path, f"{key}.target", f"{func.target!r} {what} in {func.object} of {where} "
                            f"({f.origin})", "check the name and the object")
        if func.sympos == 0 and len(positions) > 1:
            raise SpecError(patch.path, f"{key}.sympos",
                            f"{func.target!r} appears {len(positions)} times in {func.object} of {where}; "
                            f"candidates by position: {_candidates(f, positions)}",
                            "set sympos to the position of the one to replace")
        if func.sympos > len(positions):
            raise SpecError(patch.path, f"{key}.sympos",
                            f"{func.target!r} appears only {len(positions)} time(s) in {func.object} of {where}",
                            f"set sympos to {'1..' if len(positions) > 1 else ''}{len(positions)}"
                            + ("" if len(positions) > 1 else ", or remove it"))
        at = positions[max(func.sympos, 1) - 1]
        if at in f.symbols.init:
            raise SpecError(patch.path, f"{key}.target", f"{func.target!r} is __init code in {func.object} of "
                            f"{where}: it runs only while {func.object} starts, and is freed after",
                            "patch the code that runs later instead")
        if f.symbols.traceable is not None and at not in f.symbols.traceable:
            raise SpecError(patch.path, f"{key}.target",
                            f"ftrace cannot hook {func.target!r} in {func.object} of {where}: it has no "
                            "__fentry__ call (notrace, or compiled without it)",
                            "patch a caller of it instead")
    tables = {s.name: s for s in patch.symbols}
    for name in unexported:
        table = tables.get(name)
        obj = table.object if table else "vmlinux"
        f = facts.get(obj)
        if f is None:
            continue
        lookup = table.lookup if table else name
        positions = f.symbols.positions(lookup, text=False)
        if not positions:
            elsewhere = sorted(o for o, other in facts.items() if o != obj and other.symbols.has(lookup))
            fix = (f'add [[symbol]] with name = "{name}" and object = "{elsewhere[0]}"' if elsewhere
                   else "fix the name or declare it in your own code")
            raise SpecError(patch.path, "sources", f"the sources use {name!r}, which is neither exported nor "
                            f"in {obj} of {where}", fix)
        sympos = table.sympos if table else 0
        if len(positions) > 1 and not sympos:
            raise SpecError(patch.path, "symbol", f"the sources use {name!r}, which appears {len(positions)} "
                            f"times in {obj} of {where}; candidates by position: {_candidates(f, positions)}",
                            f'add [[symbol]] with name = "{name}" and sympos = N')
        if sympos > len(positions):
            at = next(j for j, s in enumerate(patch.symbols) if s.name == name)
            raise SpecError(patch.path, f"symbol[{at}].sympos",
                            f"{lookup!r} appears only {len(positions)} time(s) in {obj} of {where}",
                            f"set sympos to 1..{len(positions)}" if len(positions) > 1 else "remove sympos")


def objects_of(patch: PatchSpec) -> list[str]:
    """The objects a spec's functions and symbols live in."""
    return sorted({f.object for f in patch.functions} | {s.object for s in patch.symbols} | {"vmlinux"})


def check(patch: PatchSpec, k: Kernel, unexported: Sequence[str] = ()) -> list[str]:
    """Check a spec against the kernel's symbols (see the module's docstring); returns notes on
    what could not be checked."""
    notes: list[str] = []
    validate(patch, kernel_facts(k, objects_of(patch), notes), k.release, unexported)
    return notes


def function_problem(k: Kernel, obj: str, name: str) -> str | None:
    """Why `name` cannot be a target in `obj` of this kernel, from its symbols; None when it can
    be, or when kpgen cannot read the object's symbols."""
    facts = kernel_facts(k, [obj], [])
    f = facts.get(obj)
    if f is None:
        return None
    positions = f.functions(name)
    if not positions:
        what = "is not a function" if f.symbols.has(name) else "does not exist"
        return f"{name}() {what} in {obj} of {k.release} ({f.origin})"
    if all(i in f.symbols.init for i in positions):
        return f"{name}() is __init code in {obj} of {k.release}: it runs only while {obj} starts, and is freed after"
    if f.symbols.traceable is not None and not any(i in f.symbols.traceable for i in positions):
        return (f"ftrace cannot hook {name}() in {obj} of {k.release}: it has no __fentry__ call (notrace, or "
                "compiled without it); replace a caller of it instead")
    return None
