"""What the replaced and added functions need, and one decision per symbol: copy its source
into fix.c (the kernel has no usable copy), declare it extern (the running kernel's own: how
the module reaches it is the model's business), use it as it is (exported), or define it
fresh (data of the module's own). Found with the C front end (extract) on the patched unit."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .. import extract, ksyms, objdiff, units
from ..errors import DiffRefused
from ..kernel import Kernel
from .compare import CompiledUnit
from .decisions import Action, Plan, SymbolUse, replacement_name
from .targets import WRAPPER_RE, pick_position

Key = tuple[str, str]  # (namespace, name), as extract keys its entities


class Emit(enum.StrEnum):
    """How one entity of the unit appears in fix.c."""

    DEFINE = "define"  # its text: a macro, a type, or a function or variable the diff adds
    REPLACE = "replace"  # a target's text, renamed livepatch_<name>
    COPY = "copy"  # a function's text, for code that needs it and cannot reach the kernel's
    SYSCALL = "syscall"  # a SYSCALL_DEFINE body, written out with its entry points
    EXTERN = "extern"  # an extern declaration of the running kernel's own symbol
    PLAIN_EXTERN = "plain-extern"  # exported, but no kernel header declares it
    HEADER = "header"  # exported and declared by a kernel header: nothing to write
    DECLARE = "declare"  # declared static: the diff defines it in another of its files


@dataclass(frozen=True)
class KeptStatic:
    """A function-local static of a replaced or copied function: the running kernel's variable."""

    static: extract.LocalStatic
    ident: str  # the name fix.c declares it under
    use: SymbolUse


@dataclass
class ExtractedUnit:
    """One unit's part of fix.c: each entity with how it is emitted, in the unit's order."""

    unit: units.Unit
    parsed: extract.Parsed
    emits: dict[Key, Emit] = field(default_factory=dict)
    why: dict[Key, str] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)
    syscalls: dict[str, list[str]] = field(default_factory=dict)  # name -> entry points (x64, ia32)
    kept: list[KeptStatic] = field(default_factory=list)
    fresh: list[tuple[extract.LocalStatic, str]] = field(default_factory=list)  # with why
    callbacks: dict[str, str] = field(default_factory=dict)  # kpatch callbacks: kind -> function
    skip: set[Key] = field(default_factory=set)  # written by an earlier unit's part already
    undefine: set[str] = field(default_factory=set)  # macros an earlier part defines otherwise
    uses: dict[Key, set[Key]] = field(default_factory=dict)  # what each emitted entity refers to
    includes: list[str] = field(default_factory=list)


class Closure:
    """The walk from the functions to emit through everything they use, deciding as it goes."""

    def __init__(self, k: Kernel, p: Plan, cu: CompiledUnit, parsed: extract.Parsed,
                 objsyms: ksyms.ObjectSymbols, elsewhere: dict[Key, str]) -> None:
        self.k, self.p, self.cu, self.parsed = k, p, cu, parsed
        self.objsyms = objsyms
        self.elsewhere = elsewhere  # what the diff defines anew in its other files: key -> file
        self.unit_funcs = {objdiff.base_name(n) for n in cu.old.functions()}
        self.unit_vars = set(cu.old.variables())
        self.out = ExtractedUnit(cu.unit, parsed)
        self.queue: list[Key] = []

    def seed(self, key: Key, how: Emit, why: str = "") -> None:
        """Sets how an entity is emitted and walks what it uses."""
        self.out.emits[key] = how
        if why:
            self.out.why[key] = why
        self.queue.append(key)

    def run(self) -> ExtractedUnit:
        """Returns the unit's part of fix.c; refuses what the module cannot reach or share."""
        while self.queue:
            key = self.queue.pop(0)
            e = self.parsed.entities[key]
            deps, statics = extract.references(self.parsed, e)
            self.out.uses[key] = deps
            how = self.out.emits[key]
            if statics and how in (Emit.REPLACE, Emit.COPY):
                self._decide_statics(e, key, how, statics)
            if how == Emit.REPLACE and func_name_uses(self.parsed, e):
                self.p.decide(f"{e.name}:__func__", Action.FRESH,
                              f'the string "{e.name}": the replacement names the original, as the kernel\'s code '
                              f"does; macros that use __func__ themselves see {self.out.renames.get(e.name, e.name)}")
            for d in sorted(deps):
                if d not in self.out.emits:
                    self._decide(d)
        self.out.includes = self._includes()
        return self.out

    def _decide_statics(self, e: extract.Entity, key: Key, how: Emit, statics: list[extract.LocalStatic]) -> None:
        """One decision per function-local static of a replaced or copied function: fresh in the
        module (new in the diff, read-only, or a per-site static whose kind says so), else the
        running kernel's own variable (a replaced function keeps its own; a copy of an inlined
        function those of the function it was inlined into)."""
        before = {st.name for st in self._original_statics(e.name)}
        for st in statics:
            what = special_static(st)
            if what is not None:
                self._fresh(e, st, what)
            elif st.read_only:
                self._fresh(e, st, "read-only: the function's own copy holds the same data")
            elif st.name not in before:
                self._fresh(e, st, "new in the diff: data of the patch module's own, as the diff initialises it")
            else:
                self._keep(e, key, how, st)

    def _original_statics(self, func: str) -> list[extract.LocalStatic]:
        """Returns the statics the function has in the original file."""
        old = self.cu.old_parsed.entities.get(("func", func))
        if old is None or not old.definition:
            return []
        return extract.references(self.cu.old_parsed, old)[1]

    def _fresh(self, e: extract.Entity, st: extract.LocalStatic, why: str) -> None:
        """Decides that a function-local static is the patch module's own."""
        if not any(f.function == e.name and f.name == st.name for f, _ in self.out.fresh):
            self.out.fresh.append((st, why))
        self.p.decide(f"{e.name}:{st.name}", Action.FRESH, why)

    def _keep(self, e: extract.Entity, key: Key, how: Emit, st: extract.LocalStatic) -> None:
        """Decides that a function-local static stays the running kernel's variable; refuses one
        kpgen cannot find or point the code at."""
        where = f"{self.cu.unit.rel}: {e.name}()"
        if how == Emit.REPLACE:
            ksym = local_static_name(self.cu, e.name, st.name)
            if ksym is None or not self.objsyms.has(ksym):
                raise DiffRefused(where, f"it has its own static {st.name}, which kpgen cannot find in "
                                  f"{self.objsyms.name}, and patching it would start a second copy of that state",
                                  "keep the function's state elsewhere")
        else:
            ksym = unit_static_name(self.cu, st.name, set(self.out.renames))
            if ksym is None or not self.objsyms.has(ksym):
                raise DiffRefused(where, f"it must be copied ({self.out.why[key]}) but holds state of its own "
                                  f"(static {st.name}), which a copy would not share", "change code that does not "
                                  "need it")
        if not st.written or not self.parsed.text(e.file, st.start, st.end).lstrip().startswith("static"):
            raise DiffRefused(where, f"its static {st.name} is the running kernel's {ksym}, but a macro declares "
                              "it, and kpgen cannot point the macro at the kernel's variable",
                              "patch code that does not use that macro")
        pos = pick_position(self.objsyms, ksym, self.unit_vars | self.unit_funcs, text=False,
                            what=f"{self.cu.unit.rel}: the static {st.name} of {e.name}()")
        use = SymbolUse(f"{e.name}_{st.name}", ksym, self.cu.unit.object, pos)
        self.out.kept.append(KeptStatic(st, use.ident, use))
        self.p.symbols.append(use)
        who = "the patched function" if how == Emit.REPLACE else "the copy"
        self.p.decide(f"{e.name}:{st.name}", Action.KERNEL_STATIC,
                      f"{ksym} in kallsyms: {who} keeps the running kernel's variable")

    def _decide(self, d: Key) -> None:
        """Decides how an entity the emitted code uses is emitted; refuses what the module cannot
        reach."""
        de = self.parsed.entities[d]
        if d[0] in ("macro", "type", "enumconst"):
            self.seed(d, Emit.DEFINE)
            return
        if d in self.parsed.new_names and de.definition:
            how, why = Emit.DEFINE, ("new in the diff: compiled into the patch module" if d[0] == "func" else
                                     "new in the diff: data of the patch module's own, as the diff initialises it")
        elif d in self.parsed.new_names and d in self.elsewhere:
            how, why = Emit.DECLARE, f"new in the diff, defined in {self.elsewhere[d]}"
        elif d[0] == "func":
            how, why = decide_function(self.k, self.parsed, de, self.objsyms, self.cu.unit.rel)
        else:
            how, why = decide_variable(self.k, self.parsed, de, self.objsyms, self.cu.unit.rel)
        self.out.emits[d] = how
        self.out.why[d] = why
        if how != Emit.HEADER:
            fresh_data = how in (Emit.DEFINE, Emit.DECLARE) and d[0] == "var"
            self.p.decide(d[1], Action.FRESH if fresh_data else ACTIONS[how], why)
        if how in (Emit.COPY, Emit.DEFINE):
            self.queue.append(d)
        elif how in (Emit.EXTERN, Emit.PLAIN_EXTERN):
            # the declaration itself may need the file's own types
            for t in sorted(extract.declaration_references(self.parsed, de)):
                if t not in self.out.emits:
                    self.seed(t, Emit.DEFINE)
        if how == Emit.EXTERN:
            neighbours = self.unit_funcs if d[0] == "func" else self.unit_vars | self.unit_funcs
            pos = pick_position(self.objsyms, d[1], neighbours, text=d[0] == "func")
            if pos or self.cu.unit.object != "vmlinux":
                self.p.symbols.append(SymbolUse(d[1], "", self.cu.unit.object, pos))

    def _includes(self) -> list[str]:
        """The file's own <...> includes, and those of its private headers that something
        copied comes from."""
        used = {self.parsed.entities[k].file for k, how in self.out.emits.items() if how in (Emit.DEFINE, Emit.COPY)}
        incs: list[str] = []
        for fname, spelled in self.parsed.includes:
            if spelled.startswith("<") and spelled not in incs and (fname == str(self.parsed.path) or fname in used):
                incs.append(spelled)
        return incs


ACTIONS = {Emit.DEFINE: Action.NEW, Emit.COPY: Action.COPY, Emit.EXTERN: Action.EXTERN,
           Emit.PLAIN_EXTERN: Action.EXPORTED, Emit.HEADER: Action.EXPORTED,
           Emit.DECLARE: Action.NEW}


def extract_unit(k: Kernel, p: Plan, cu: CompiledUnit, parsed: extract.Parsed, targets: set[str], added: set[str],
                 objsyms: ksyms.ObjectSymbols, elsewhere: dict[Key, str] | None = None) -> ExtractedUnit:
    """Returns one unit's part of fix.c: its targets replaced and what the diff adds;
    `elsewhere` names what the diff defines anew in its other files. Refuses what the module
    cannot reach."""
    rel = cu.unit.rel
    walk = Closure(k, p, cu, parsed, objsyms, elsewhere or {})
    walk.out.renames = {t: replacement_name(t, targets) for t in targets}
    for t in sorted(targets):
        m = WRAPPER_RE.match(t)
        if m:
            walk.out.syscalls.setdefault(m.group("name"), []).append(m.group("abi"))
    for name in sorted(walk.out.syscalls):
        key = ("func", f"__do_sys_{name}")
        if key not in parsed.entities or extract.function_body(parsed.entities[key]) is None:
            raise DiffRefused(f"{rel}: {name}", "kpgen finds no SYSCALL_DEFINE body of this system call",
                              "write the replacement with kpgen new")
        walk.seed(key, Emit.SYSCALL)
    entry_points = {f"__{abi}_sys_{n}" for n, abis in walk.out.syscalls.items() for abi in abis}
    for t in sorted((targets | added) - entry_points):
        key = ("func", t)
        if key not in parsed.entities or not parsed.entities[key].definition:
            raise DiffRefused(f"{rel}: {t}()", "it is defined by a macro kpgen cannot copy out of the file",
                              "write the replacement with kpgen new")
        walk.seed(key, Emit.REPLACE if t in targets else Emit.DEFINE)
    return walk.run()


# Per-site statics that kernel macros declare, by the compiler's type or by name: each kind is the
# patch module's own, and why.
SPECIAL_TYPES = {
    "struct lock_class_key": "a lockdep class key: locks the patched code initialises get a class of the "
                             "module's own",
    "struct ratelimit_state": "a ratelimit state: the patched code's messages are rate-limited on their own",
    "struct _ddebug": "a dynamic-debug descriptor: the module registers its own, off until enabled, with the "
                      "original source's file and line and the patch module's name",
}
SPECIAL_NAMES = {
    "__already_done": "a once flag of WARN_ONCE or printk_once: the patched code warns or prints once on its own",
    "__warned": "a once flag of WARN_ONCE: the patched code warns once on its own",
    "__print_once": "a once flag of printk_once: the patched code prints once on its own",
}


def func_name_uses(p: extract.Parsed, e: extract.Entity) -> list[tuple[int, int]]:
    """Where the function's own text says __func__ (or __FUNCTION__): (start, end) offsets."""
    return [(t.extent.start.offset, t.extent.end.offset) for t in e.cursor.get_tokens()
            if t.spelling in ("__func__", "__FUNCTION__") and t.location.file is not None
            and str(t.location.file.name) == e.file]


def special_static(st: extract.LocalStatic) -> str | None:
    """What a function-local static that a kernel macro declares for each use is, and why the
    module's own copy serves; None for any other static."""
    return SPECIAL_TYPES.get(st.type_name) or SPECIAL_NAMES.get(st.name)


def unit_static_name(cu: CompiledUnit, var: str, callers: set[str]) -> str | None:
    """The kallsyms name of an inlined function's own static: the one `var.N` the functions it
    was inlined into use, else the unit's only one."""
    funcs = cu.old.functions()
    for scope in (callers, set(funcs)):
        found = {ref for name in scope if name in funcs for ref in funcs[name].addressed
                 if (m := objdiff.LOCAL_STATIC_RE.match(ref)) and m.group("base") == var}
        if len(found) == 1:
            return found.pop()
    return None


def local_static_name(cu: CompiledUnit, func: str, var: str) -> str | None:
    """The kallsyms name of `func`'s own static `var`: gcc's `var.N`, referenced by func."""
    fsym = cu.old.functions().get(func)
    if fsym is None:
        return None
    for ref in fsym.addressed:
        m = objdiff.LOCAL_STATIC_RE.match(ref)
        if m and m.group("base") == var:
            return ref
    return None


def _exported(k: Kernel, p: extract.Parsed, e: extract.Entity, plain: str) -> tuple[Emit, str] | None:
    """How a symbol the kernel exports is emitted (nothing when a kernel header declares it,
    else a plain extern, said with `plain`); None for one it does not export."""
    if extract.is_static(e) or e.name not in k.exports:
        return None
    if extract.declared_in_header(p, e):
        return Emit.HEADER, "exported, declared by a kernel header"
    return Emit.PLAIN_EXTERN, plain


def decide_function(k: Kernel, p: extract.Parsed, e: extract.Entity, objsyms: ksyms.ObjectSymbols,
                    rel: str) -> tuple[Emit, str]:
    """Returns how a function the code calls is emitted, and why; refuses one the module
    cannot reach."""
    name = e.name
    static = extract.is_static(e)
    exported = _exported(k, p, e, "exported by the kernel: called as it is")
    if exported is not None:
        return exported
    if objsyms.positions(name):
        where = "static in " + rel if static else "not exported"
        return Emit.EXTERN, f"{where}: the running kernel's own function, called through a klp relocation"
    if e.definition:
        return Emit.COPY, f"inlined away in {k.release}: copied from {rel}"
    raise DiffRefused(f"{rel}: {name}()", f"it is neither exported nor in kallsyms of {k.release}, and the file "
                      "does not define it, so kpgen cannot reach it", "patch code that does not call it")


def decide_variable(k: Kernel, p: extract.Parsed, e: extract.Entity, objsyms: ksyms.ObjectSymbols,
                    rel: str) -> tuple[Emit, str]:
    """Returns how a variable the code uses is emitted, and why; refuses one the module
    cannot reach."""
    name = e.name
    static = extract.is_static(e)
    exported = _exported(k, p, e, "exported by the kernel")
    if exported is not None:
        return exported
    if objsyms.positions(name, text=False):
        where = "static in " + rel if static else "not exported"
        return Emit.EXTERN, f"{where}: the running kernel's own variable, used through a klp relocation"
    if e.cursor.type.is_const_qualified() or "const" in e.cursor.type.spelling.split():
        return Emit.DEFINE, f"constant data the compiler folded away in {k.release}: copied"
    raise DiffRefused(f"{rel}: {name}", f"the patched code uses it, but it is not in kallsyms of {k.release}, so "
                      "kpgen cannot reach the kernel's copy", "patch code that does not use it")
