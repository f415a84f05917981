"""`kpgen diff`: a live patch from a source diff.

    FIX.patch + the kernel's exact source
      -> apply to an overlay of the source; compile each changed unit before and after with
         Kbuild's flags; compare function by function (objdiff)
      -> map each changed function to what the running kernel has (ksyms): a target, or its
         callers up to functions that exist as themselves
      -> extract with libclang (extract): local definitions, copied helpers, `extern`s
      -> a spec and fix.c in DIR, which `kpgen patch` / `kpgen build` turn into a module

Every decision is kept with its reason, printed, and written into fix.c as a comment.
A refusal (DiffRefused) writes nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import extract, ksyms, objdiff, source as ksource, tu
from .errors import BuildError, UsageError
from .kernel import Kernel

PATCH_FILE_RE = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.M)
OLD_FILE_RE = re.compile(r"^--- (?:a/)?(\S+)", re.M)
PREFIX = "livepatch_"
SYSCALL_RE = re.compile(r"^__(?:x64|ia32|x32|se|do)_(?:compat_)?sys_\w+$")
# the entry points SYSCALL_DEFINE makes on x86-64, and the registers each passes arguments in
WRAPPER_RE = re.compile(r"^__(?P<abi>x64|ia32)_sys_(?P<name>\w+)$")
ARG_REGS = {"x64": ("di", "si", "dx", "r10", "r8", "r9"), "ia32": ("bx", "cx", "dx", "si", "di", "bp")}


def syscall_params(define: str) -> tuple[str, list[tuple[str, str]]]:
    """The name and (type, argument) pairs of a SYSCALL_DEFINEn(...) head.

    >>> syscall_params("SYSCALL_DEFINE2(foo, struct bar __user *, b, int, n)")
    ('foo', [('struct bar __user *', 'b'), ('int', 'n')])
    """
    inner = define[define.index("(") + 1:define.rindex(")")]
    parts = [x.strip() for x in inner.split(",")]
    return parts[0], list(zip(parts[1::2], parts[2::2], strict=False))
MAX_CALLER_DEPTH = 8


class DiffRefused(UsageError):
    """The diff cannot become a live patch: the message says why and what to do instead."""


@dataclass
class Decision:
    symbol: str
    action: str  # target, caller, copy, extern, exported, new, local-static, definition
    reason: str

    def line(self) -> str:
        return f"{self.symbol}: {self.action} ({self.reason})"


@dataclass
class Target:
    name: str
    object: str
    sympos: int
    replacement: str
    unit: str


@dataclass
class SymbolUse:
    ident: str  # the C name fix.c uses
    kallsyms: str
    object: str
    sympos: int


@dataclass
class Plan:
    name: str
    patch: Path
    release: str
    targets: list[Target] = field(default_factory=list)
    symbols: list[SymbolUse] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    fix_c: str = ""
    spec: str = ""

    def decide(self, symbol: str, action: str, reason: str) -> None:
        if not any(d.symbol == symbol and d.action == action for d in self.decisions):
            self.decisions.append(Decision(symbol, action, reason))


def patch_files(text: str) -> list[str]:
    """The files a unified diff changes (paths in the tree, -p1).

    >>> patch_files("--- a/fs/proc/meminfo.c\\n+++ b/fs/proc/meminfo.c\\n@@ -1 +1 @@\\n")
    ['fs/proc/meminfo.c']
    """
    news = PATCH_FILE_RE.findall(text)
    olds = OLD_FILE_RE.findall(text)
    files: list[str] = []
    for old, new in zip(olds, news, strict=False):
        if new == "/dev/null" or old == "/dev/null":
            what = f"removes {old}" if new == "/dev/null" else f"creates {new}"
            raise DiffRefused(f"the diff {what}: a live patch changes existing C files only; put new code in "
                              "the files it serves")
        if new not in files:
            files.append(new)
    return files


def module_name(patch: Path) -> str:
    """The patch module's default name, from the diff's file name.

    >>> module_name(Path("0001-Fix-the-meminfo.patch"))
    'lp_0001_fix_the_meminfo'
    """
    stem = re.sub(r"[^a-z0-9_]+", "_", patch.stem.lower()).strip("_") or "fix"
    if not stem[0].isalpha():
        stem = "lp_" + stem
    return stem[:55]


def _refuse_other_files(files: list[str]) -> None:
    for f in files:
        if ".." in Path(f).parts or f.startswith("/"):
            raise DiffRefused(f"the diff names {f}, outside the kernel tree: give a diff made in the tree (-p1)")
        if not f.endswith((".c", ".h")):
            raise DiffRefused(f"the diff changes {f}: a live patch can change C code only, not the build or "
                              "the configuration")


def apply(patch_text: str, patch: Path, tree: Path, overlay: Path, files: list[str]) -> None:
    for f in files:
        if not (tree / f).is_file():
            raise DiffRefused(f"{patch}: {f} is not in the kernel source: the diff does not apply")
    tu.make_overlay(tree, overlay, files)
    argv = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-d", str(overlay)]
    dry = subprocess.run([*argv, "--dry-run"], input=patch_text, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=False)
    if dry.returncode != 0:
        first = next((line for line in dry.stdout.splitlines() if "FAILED" in line or "Reversed" in line
                      or "malformed" in line.lower() or "can't find" in line.lower()), dry.stdout.strip()[:200])
        raise DiffRefused(f"{patch} does not apply to the source of the kernel: {first.strip()}")
    subprocess.run(argv, input=patch_text, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)


def header_reach(tree: Path, header: str, named: set[str]) -> list[str]:
    """Units outside the diff that include a changed header."""
    hdr = Path(header)
    if hdr.parts[0] == "include" or re.match(r"arch/[^/]+/include/", header):
        spelled = str(Path(*hdr.parts[1:])) if hdr.parts[0] == "include" else str(Path(*hdr.parts[3:]))
        pattern = f"#include <{spelled}>"
        search = [str(tree)]
    else:
        pattern = f"#include \"{hdr.name}\""
        search = [str(tree / hdr.parent)]
    proc = subprocess.run(["grep", "-rlF", "--include=*.c", pattern, *search], stdout=subprocess.PIPE, text=True,
                          check=False)
    users = sorted(str(Path(p).relative_to(tree)) for p in proc.stdout.split())
    return [u for u in users if u not in named]


@dataclass
class UnitWork:
    unit: tu.Unit
    old: objdiff.Object
    new: objdiff.Object
    cmp: objdiff.Comparison
    new_argv: list[str]
    old_argv: list[str]
    parsed: tuple[extract.Parsed, extract.Parsed]  # patched, original


def compile_units(k: Kernel, tree: Path, overlay: Path, work: Path, units: list[tu.Unit]) -> list[UnitWork]:
    procs = []
    for i, u in enumerate(units):
        old_o, new_o = work / f"old{i}.o", work / f"new{i}.o"
        a = tu.compile_argv(k, u, tree, None, tree / u.rel, old_o)
        b = tu.compile_argv(k, u, tree, overlay, overlay / u.rel, new_o)
        procs.append((u, a, b, old_o, new_o, tu.run_compile(a, k, ""), tu.run_compile(b, k, "")))
    # the C front end reads both versions of each unit while gcc compiles them
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        parses = [(pool.submit(extract.parse, overlay / u.rel, b, [overlay, tree]),
                   pool.submit(extract.parse, tree / u.rel, a, [tree])) for u, a, b, *_ in procs]
        parsed = [(f1.result(), f2.result()) for f1, f2 in parses]
    out = []
    for (u, a, b, old_o, new_o, pa, pb), both in zip(procs, parsed, strict=True):
        tu.wait_compile(pa, f"{u.rel} (original)")
        try:
            tu.wait_compile(pb, f"{u.rel} (patched)")
        except BuildError as exc:
            raise DiffRefused(f"the patched {u.rel} does not compile: {exc}") from None
        old, new = objdiff.read(old_o), objdiff.read(new_o)
        out.append(UnitWork(u, old, new, objdiff.compare(old, new), b, a, both))
    return out


def _pick_position(objsyms: ksyms.ObjectSymbols, name: str, neighbours: set[str], text: bool,
                   what: str = "") -> int:
    """sympos of `name` in the object (0 when unique): the candidate among the unit's own symbols."""
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
            raise DiffRefused(f"{what} ({name} in kallsyms) appears {len(pos)} times in {objsyms.name} and kpgen "
                              "cannot tell which one is this file's: the patched code must keep using the "
                              "kernel's own variable; change code that does not use it")
        raise DiffRefused(f"{name} appears {len(pos)} times in {objsyms.name} and kpgen cannot tell which one "
                          "is this file's")
    return scores.index(best) + 1


def plan(k: Kernel, patch: Path, src: ksource.Source, name: str, progress: Callable[[str], object] = print) -> Plan:
    text = patch.read_text(encoding="utf-8", errors="replace")
    files = patch_files(text)
    if not files:
        raise DiffRefused(f"{patch} is not a unified diff (no '+++ b/FILE' line): make it with git diff or diff -u")
    _refuse_other_files(files)
    p = Plan(name=name, patch=patch, release=k.release)
    with tempfile.TemporaryDirectory(prefix="kpgen-diff-") as tmp:
        work = Path(tmp)
        overlay = work / "tree"
        apply(text, patch, src.root, overlay, files)
        cfiles = [f for f in files if f.endswith(".c")]
        for h in (f for f in files if f.endswith(".h")):
            reach = header_reach(src.root, h, set(cfiles))
            if reach:
                more = f" and {len(reach) - 3} more" if len(reach) > 3 else ""
                raise DiffRefused(f"the diff changes {h}, which {', '.join(reach[:3])}{more} also include: "
                                  "a live patch replaces functions of the files the diff names only; change "
                                  "the header's users in the diff, or leave the header alone")
        if not cfiles:
            raise DiffRefused(f"{patch} changes no .c file: nothing to compile")
        units = [tu.locate(k, src.root, f) for f in cfiles]
        objects = {u.object for u in units}
        if len(objects) > 1:
            raise DiffRefused(f"the diff changes code of {' and '.join(sorted(objects))}: one live patch module "
                              "patches one object; split the diff")
        works = compile_units(k, src.root, overlay, work, units)
        syms = ksyms.vmlinux_symbols(k)
        p.decide("kernel symbols", "read", syms.origin)
        obj = units[0].object
        objsyms = syms.object(k, obj)
        parts = []
        for w in works:
            parts.append(_plan_unit(k, p, w, src.root, overlay, objsyms, syms.ibt, progress))
        if not p.targets:
            raise DiffRefused(f"{patch} changes no function's compiled code in {k.release}: nothing to patch")
        _with_copies(k, p, patch, parts, src.root, work, objsyms, syms.ibt)
    return p


def _check_module(k: Kernel, p: Plan, where: Path, objsyms: ksyms.ObjectSymbols, ibt: bool) -> list[str]:
    """Compile the module once, as `kpgen patch` will: every kernel symbol it needs must be
    reachable. On IBT kernels, the functions it would call through a pointer that have no ENDBR
    are returned: they must be copied."""
    no_endbr: list[str] = []
    from . import generate, kbuild, spec as kspec

    write(p, where)
    patch = kspec.load(where / f"{p.name}.toml")
    core = generate.core_files(k)
    model_files = generate.render.render_patch(
        generate.patch_model(patch, where / "module", where / "core", k.release, k.features.summary()), "module")
    header = next(f.content for f in core if f.path.name == "kpatch.h")
    undefined, called = kbuild.probe_symbols(k, model_files, header, "module", patch.name)
    core_exports = {m.decode() for f in core if f.path.suffix == ".c" for m in generate.EXPORT_RE.findall(f.content)}
    unexported = sorted(undefined - set(k.exports) - core_exports - generate.MODPOST_SYMBOLS)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", p.fix_c))
    vm = ksyms.vmlinux_symbols(k).objects["vmlinux"]
    for name in unexported:
        if name not in words:
            raise DiffRefused(f"the patched code needs {name}, which the kernel does not export, through an "
                              "inline function of the kernel headers: kpgen can redirect only the names fix.c "
                              "itself uses; patch the functions that call that inline function differently")
        if ibt and name in called:
            table = objsyms if objsyms.has(name) else vm
            pos = table.positions(name)
            if table.endbr is not None and pos and not any(table.endbr.get(i) for i in pos):
                no_endbr.append(name)
    return no_endbr


MAX_COPY_ROUNDS = 3


def _with_copies(k: Kernel, p: Plan, patch: Path | None, parts: list[UnitPart], tree: Path, work: Path,
                 objsyms: ksyms.ObjectSymbols, ibt: bool) -> None:
    """fix.c and the spec, with copies of the functions without ENDBR that the code calls
    (IBT kernels), each taken from its own file, until none is left."""
    copies: list[UnitPart] = []
    copied: set[str] = set()
    for _ in range(MAX_COPY_ROUNDS + 1):
        p.fix_c = _fix_c(p, k, patch, [*copies, *parts])
        p.spec = _spec(p, patch)
        try:
            need = [n for n in _check_module(k, p, work / "check", objsyms, ibt) if n not in copied]
        except BuildError as exc:
            if not copied:
                raise
            first = next((line.strip() for line in str(exc).splitlines() if "error:" in line), str(exc)[:200])
            raise DiffRefused(f"the patched code calls functions without ENDBR in {k.release} (IBT: "
                              f"{', '.join(sorted(copied))}), and the copies kpgen made do not compile on their "
                              f"own ({first}): a call through a pointer would fault on IBT hardware") from None
        if not need:
            return
        if len(copies) >= MAX_COPY_ROUNDS * 4:
            break
        for name in need:
            copies.insert(0, _copy_from_its_file(k, p, tree, work, name, objsyms, ibt))
            copied.add(name)
    raise DiffRefused(f"the patched code needs copies of more functions without ENDBR in {k.release} "
                      f"than kpgen makes ({', '.join(sorted(copied))}): patch fewer functions")


def _copy_from_its_file(k: Kernel, p: Plan, tree: Path, work: Path, name: str, objsyms: ksyms.ObjectSymbols,
                        ibt: bool) -> UnitPart:
    try:
        rel = find_definition(tree, name)
    except UsageError:
        raise DiffRefused(f"the patched code calls {name}(), which has no ENDBR in {k.release} (IBT): a call "
                          "through a pointer would fault on IBT hardware, and kpgen finds no one file that "
                          "defines it to copy it from") from None
    unit = tu.locate(k, tree, rel)
    if unit.object != objsyms.name:
        raise DiffRefused(f"the patched code calls {name}(), which has no ENDBR in {k.release} (IBT) and is in "
                          f"{unit.object}, not {objsyms.name}: kpgen cannot copy it")
    out = work / f"copy-{name}.o"
    argv = tu.compile_argv(k, unit, tree, None, tree / unit.rel, out)
    proc = tu.run_compile(argv, k, unit.rel)
    parsed = extract.parse(tree / unit.rel, argv, [tree])
    tu.wait_compile(proc, unit.rel)
    obj = objdiff.read(out)
    w = UnitWork(unit, obj, obj, objdiff.Comparison((), (), (), (), ()), argv, argv, (parsed, parsed))
    why = (f"has no ENDBR in {k.release} (IBT): a call through a pointer would fault, so it is copied from "
           f"{rel} under its own name")
    p.decide(name, "copy", why)
    part = _extract_unit(k, p, w, parsed, set(), set(), objsyms, ibt, {objdiff.base_name(n) for n in obj.functions()},
                         set(obj.variables()), copies={name: why})
    return part


def _refuse_special(p: Plan, w: UnitWork) -> None:
    c = w.cmp
    for fname in c.changed:
        sec = w.old.symbols[fname].section
        if sec.startswith((".init", ".exit")) or sec in (".text.startup",):
            what = "__init" if sec.startswith(".init") else "__exit"
            raise DiffRefused(f"the diff changes {fname}() in {w.unit.rel}, which is {what} code: it ran at boot "
                              "(or runs at unload) and a live patch cannot change it")
    for vname in c.changed_data:
        sym = w.new.variables().get(vname) or next(s for n, s in w.new.variables().items()
                                                     if objdiff._norm(n) == vname)
        if sym.section.startswith((".init", ".exit")):
            raise DiffRefused(f"the diff changes {vname} in {w.unit.rel}, which is __init data: a live patch "
                              "cannot change what the kernel used at boot")
        raise DiffRefused(f"the diff changes the initial value or size of {vname} in {w.unit.rel}: a live patch "
                          "replaces functions, not data the kernel already holds; use a shadow variable "
                          "(klp_shadow_*) for new state")
    for fname in c.added:
        if w.new.symbols[fname].section.startswith(".init"):
            raise DiffRefused(f"the diff adds __init code ({fname}) to {w.unit.rel}: it would never run in a "
                              "live patch")


def _layout_refusal(w: UnitWork, old_p: extract.Parsed, new_p: extract.Parsed, tree: Path, overlay: Path) -> None:
    def rel_files(parsed: extract.Parsed, root: Path) -> set[str]:
        return set(parsed.local_files)

    old_l = extract.record_layouts(old_p, rel_files(old_p, tree))
    new_l = extract.record_layouts(new_p, rel_files(new_p, overlay))
    for rec, layout in sorted(new_l.items()):
        if rec in old_l and old_l[rec] != layout:
            raise DiffRefused(f"the diff changes the layout of {rec} in {w.unit.rel}: objects of it already exist "
                              "in the running kernel; keep the layout and put new fields in a shadow variable "
                              "(klp_shadow_*)")


@dataclass
class UnitPart:
    unit: tu.Unit
    parsed: extract.Parsed
    emit: list[tuple[str, str]]  # (key name, text) in source order, with their comments
    includes: list[str]


def _plan_unit(k: Kernel, p: Plan, w: UnitWork, tree: Path, overlay: Path, objsyms: ksyms.ObjectSymbols,
               ibt: bool, progress: Callable[[str], object]) -> UnitPart:
    new_p, old_p = w.parsed
    _layout_refusal(w, old_p, new_p, tree, overlay)
    _refuse_special(p, w)
    new_p.new_names = {key for key in new_p.entities if key[0] in ("func", "var") and key not in old_p.entities}
    unit_funcs = {objdiff.base_name(n) for n in w.old.functions()}
    unit_vars = set(w.old.variables())

    def present(fn: str) -> bool:
        return bool(objsyms.positions(fn))

    changed = {objdiff.base_name(n) for n in w.cmp.changed}
    added = {objdiff.base_name(n) for n in w.cmp.added} - {objdiff.base_name(n) for n in w.old.functions()}
    # callers, for changed functions the kernel does not have as themselves
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
            own = w.old.functions().get(fn)
            if own is not None and present(fn):
                if not own.traced:
                    reason = "notrace: ftrace cannot hook it"
                else:
                    targets[fn] = "its compiled code changed" if fn in changed else targets.get(fn, "")
                    continue
            else:
                clones = sorted(n for n in w.old.functions() if objdiff.base_name(n) == fn and n != fn
                                and not n.endswith(".cold"))
                reason = (f"only gcc's clone {', '.join(clones)} exists, with another calling convention"
                          if clones else f"inlined away in {k.release}")
            callers = sorted({objdiff.base_name(g) for g, s in w.new.functions().items()
                              if any(objdiff.base_name(c) == fn for c in s.callees + s.addressed)
                              and objdiff.base_name(g) != fn})
            taken = [v for v, s in w.new.variables().items() if fn in s.addressed or
                     any(objdiff.base_name(a) == fn for a in s.addressed)]
            if taken:
                exported = any(t.startswith(("__UNIQUE_ID___addressable_", "__ksymtab_")) for t in taken)
                holder = "the kernel exports it" if exported else f"{objdiff._norm(taken[0])} holds its address"
                raise DiffRefused(f"{fn}() in {w.unit.rel} changed, is not patchable itself ({reason}), and "
                                  f"{holder}: no patchable caller covers every use")
            if not callers:
                raise DiffRefused(f"{fn}() in {w.unit.rel} changed but is not patchable ({reason}) and has no "
                                  "caller in its file to patch instead: no patchable caller")
            p.decide(fn, "via callers", f"{reason}: patching {', '.join(callers)}")
            for c in callers:
                targets.setdefault(c, f"calls {fn}(), which changed and is {reason.split(':')[0]}")
            nxt += callers
        queue = nxt
        depth += 1
    targets = {t: r for t, r in targets.items() if t not in added}
    wrapped = sorted(t for t in targets if SYSCALL_RE.match(t) and not WRAPPER_RE.match(t))
    if wrapped:
        raise DiffRefused(f"the diff changes a system call ({', '.join(wrapped)} in {w.unit.rel}): functions "
                          "made by SYSCALL_DEFINE are not supported yet; move the change into a helper the "
                          "system call calls, or write the replacement with kpgen new")
    for t, r in sorted(targets.items()):
        pos = _pick_position(objsyms, t, unit_funcs, text=True)
        p.targets.append(Target(t, w.unit.object, pos, PREFIX + t.lstrip("_"), w.unit.rel))
        p.decide(t, "target", r or "its compiled code changed")
    for a in sorted(added):
        p.decide(a, "new", "a function the diff adds: compiled into the patch module")
    return _extract_unit(k, p, w, new_p, set(targets), added, objsyms, ibt, unit_funcs, unit_vars)


def _extract_unit(k: Kernel, p: Plan, w: UnitWork, parsed: extract.Parsed, targets: set[str], added: set[str],
                  objsyms: ksyms.ObjectSymbols, ibt: bool, unit_funcs: set[str], unit_vars: set[str],
                  copies: dict[str, str] | None = None) -> UnitPart:
    """The C for one unit: its targets replaced, what the diff adds, and (`copies`: name ->
    reason) functions of this file copied for another unit's code."""
    rel = w.unit.rel
    renames = {t: PREFIX + t.lstrip("_") for t in targets}
    syscalls: dict[str, list[str]] = {}  # the system call's name -> its entry points to replace
    for t in sorted(targets):
        m = WRAPPER_RE.match(t)
        if m:
            syscalls.setdefault(m.group("name"), []).append(m.group("abi"))
    emit_keys: dict[tuple[str, str], str] = {}  # key -> how: define, replace, copy, extern, plain-extern
    comments: dict[tuple[str, str], str] = {}
    queue: list[tuple[str, str]] = []
    for name in sorted(syscalls):
        key = ("func", f"__do_sys_{name}")
        if key not in parsed.entities or extract.function_body(parsed.entities[key]) is None:
            raise DiffRefused(f"the system call {name} of {rel} has no SYSCALL_DEFINE body kpgen can find")
        emit_keys[key] = "syscall"
        queue.append(key)
    for c, why in sorted((copies or {}).items()):
        key = ("func", c)
        if key not in parsed.entities or not parsed.entities[key].definition:
            raise DiffRefused(f"{c}() is not defined in {rel} as a function kpgen can copy")
        emit_keys[key] = "copy"
        comments[key] = why
        queue.append(key)
    for t in sorted((targets | added) - {f"__{abi}_sys_{n}" for n, abis in syscalls.items() for abi in abis}):
        key = ("func", t)
        if key not in parsed.entities or not parsed.entities[key].definition:
            raise DiffRefused(f"{t}() is defined by a macro kpgen cannot copy out of {rel} "
                              "(SYSCALL_DEFINE and the like are not supported yet)")
        emit_keys[key] = "replace" if t in targets else "define"
        queue.append(key)
    local_statics: list[tuple[extract.LocalStatic, str, SymbolUse]] = []
    while queue:
        key = queue.pop(0)
        e = parsed.entities[key]
        deps, statics = extract.references(parsed, e)
        how = emit_keys[key]
        if statics and how == "replace":
            for st in statics:
                ksym = _local_static_name(w, e.name, st.name)
                if ksym is None or not objsyms.has(ksym):
                    raise DiffRefused(f"{e.name}() has its own static {st.name}, which kpgen cannot find in "
                                      f"{objsyms.name}: patching it would start a second copy of that state")
                ident = f"{e.name}_{st.name}"
                pos = _pick_position(objsyms, ksym, unit_vars | unit_funcs, text=False,
                                     what=f"the static {st.name} of {e.name}()")
                use = SymbolUse(ident, ksym, w.unit.object, pos)
                local_statics.append((st, ident, use))
                p.symbols.append(use)
                p.decide(f"{e.name}:{st.name}", "original's static",
                         f"{ksym} in kallsyms: the patched function keeps the running kernel's variable")
        elif statics and how == "copy":
            for st in statics:
                ksym = _unit_static_name(w, st.name, targets)
                if ksym is None or not objsyms.has(ksym):
                    break
                ident = f"{e.name}_{st.name}"
                pos = _pick_position(objsyms, ksym, unit_vars | unit_funcs, text=False,
                                     what=f"the static {st.name} of {e.name}()")
                use = SymbolUse(ident, ksym, w.unit.object, pos)
                local_statics.append((st, ident, use))
                p.symbols.append(use)
                p.decide(f"{e.name}:{st.name}", "original's static",
                         f"{ksym} in kallsyms: the copy keeps the running kernel's variable")
            else:
                statics = []
        if statics and how == "copy" and not all(any(ls[0] is st for ls in local_statics) for st in statics):
            raise DiffRefused(f"{e.name}() must be copied ({comments[key]}) but holds state of its own "
                              f"(static {statics[0].name}): a copy would not share it")
        for d in sorted(deps):
            if d in emit_keys:
                continue
            de = parsed.entities[d]
            if d[0] in ("macro", "type", "enumconst"):
                emit_keys[d] = "define"
                queue.append(d)
                continue
            if d in parsed.new_names:
                how_d, why = "define", "new in the diff: compiled into the patch module"
            elif d[0] == "func":
                how_d, why = _decide_function(k, parsed, de, objsyms, ibt, rel)
            else:
                how_d, why = _decide_variable(k, parsed, de, objsyms, rel)
            emit_keys[d] = how_d
            comments[d] = why
            if how_d != "header":
                p.decide(d[1], how_d, why)
            if how_d in ("copy", "define"):
                queue.append(d)
            if how_d == "extern":
                pos = _pick_position(objsyms, d[1], unit_funcs if d[0] == "func" else unit_vars | unit_funcs,
                                     text=d[0] == "func")
                if pos or w.unit.object != "vmlinux":
                    p.symbols.append(SymbolUse(d[1], "", w.unit.object, pos))
    # render in source order; a global function copied takes another name (the kernel's
    # headers declare the original), before any code uses it
    emit: list[tuple[str, str]] = [
        (key[1], f"#define {key[1]} {key[1]}_copy") for key in sorted(emit_keys)
        if emit_keys[key] == "copy" and key[0] == "func" and not extract.is_static(parsed.entities[key])]
    for key in sorted(emit_keys, key=lambda kk: parsed.order(parsed.entities[kk])):
        e = parsed.entities[key]
        how = emit_keys[key]
        if how == "header":
            continue
        if e.ns == "enumconst":
            continue
        if how == "syscall":
            emit.append((key[1], _syscall_text(parsed, e, renames, rel, syscalls[e.name[len("__do_sys_"):]])))
            continue
        if how in ("extern", "plain-extern", "elsewhere"):
            decl = extract.prototype(parsed, e) if e.ns == "func" else extract.declaration(parsed, e)
            emit.append((key[1], f"{_comment(f'{e.name}: {comments[key]}')}\n{decl}"))
        elif e.ns == "macro":
            emit.append((key[1], "#define " + parsed.text(e.file, e.start, e.end)))
        elif e.ns == "type" or e.ns == "var":
            emit.append((key[1], parsed.text(e.file, e.start, e.end) + ";"))
        else:
            edits = extract.rename_edits(parsed, e, renames)
            head = ""
            if how in ("replace", "copy"):
                mine = [(st, ident, use) for st, ident, use in local_statics if st.function == e.name]
                for st, ident, use in mine:
                    edits.append((st.start, st.end, f"/* {st.name}: the running kernel's {use.kallsyms}, "
                                                    f"declared above */"))
                    edits += _static_ref_edits(parsed, e, st, ident)
                    head += (_comment(f"{st.name} of {e.name}(): the running kernel's own {use.kallsyms}") + "\n"
                             f"{extract.var_declaration(st.cursor, ident)}\n\n")
                head += (f"/* Replaces {e.name}() of {rel}. */\n" if how == "replace"
                         else _comment(f"{e.name}: {comments[key]}") + "\n")
            body = extract.apply_edits(parsed, e, edits)
            original = parsed.text(e.file, e.start, e.end)
            if how in ("replace", "copy", "define") and not body.lstrip().startswith("static"):
                body = "static " + body
            # a longer name or an added `static` moves the '(': its continuation lines follow
            first_new, first_old = body.split("\n", 1)[0], original.split("\n", 1)[0]
            if "(" in first_new and "(" in first_old:
                body = realign_head(body, len(first_new[:first_new.index("(")].expandtabs(8))
                                    - len(first_old[:first_old.index("(")].expandtabs(8)))
            emit.append((key[1], head + body))
    # the file's own includes, and those of its private headers that something copied comes from
    used_files = {parsed.entities[kk].file for kk, how in emit_keys.items() if how in ("define", "copy")}
    incs = []
    for fname, spelled in parsed.includes:
        if spelled.startswith("<") and spelled not in incs and (fname == str(parsed.path) or fname in used_files):
            incs.append(spelled)
    return UnitPart(w.unit, parsed, emit, incs)


def realign_head(text: str, delta: int) -> str:
    r"""Keep a function head's continuation lines aligned with its '(' after a rename that
    made the name `delta` columns longer.

    >>> realign_head("int new_f(int a,\n\t  int b)\n{\n\treturn 0;\n}", 4)
    'int new_f(int a,\n\t      int b)\n{\n\treturn 0;\n}'
    """
    lines = text.split("\n")
    out = lines[:1]
    for i, line in enumerate(lines[1:], 1):
        if line.startswith("{"):
            out += lines[i:]
            break
        stripped = line.lstrip(" \t")
        col = len(line[:len(line) - len(stripped)].expandtabs(8)) + delta
        out.append("\t" * (col // 8) + " " * (col % 8) + stripped)
    return "\n".join(out)


def _comment(text: str, width: int = 78) -> str:
    """A C comment, wrapped: one line when it fits.

    >>> _comment("short")
    '/* short */'
    """
    import textwrap

    if len(text) + 6 <= width:
        return f"/* {text} */"
    lines = textwrap.wrap(text, width - 3, break_on_hyphens=False)
    return "/*\n" + "".join(f" * {line}\n" for line in lines) + " */"


def _syscall_arg(ctype: str, abi: str, reg: str) -> str:
    """One argument as the entry point passes it: ia32 takes the register's low 32 bits.

    >>> _syscall_arg("int", "ia32", "bx"), _syscall_arg("char __user *", "ia32", "cx")
    ('(int)(u32)regs->bx', '(char __user *)(regs->cx & U32_MAX)')
    """
    if abi != "ia32":
        return f"({ctype})regs->{reg}"
    if ctype.rstrip().endswith("*"):
        return f"({ctype})(regs->{reg} & U32_MAX)"
    return f"({ctype})(u32)regs->{reg}"


def _syscall_text(parsed: extract.Parsed, e: extract.Entity, renames: dict[str, str], rel: str,
                  abis: list[str]) -> str:
    """A SYSCALL_DEFINE written out: its body as a plain function, and the entry points."""
    body = extract.function_body(e)
    head = parsed.text(e.file, e.start, body.extent.start.offset).strip()
    name, params = syscall_params(head)
    impl = f"{PREFIX}do_sys_{name}"
    decl = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{a}" for t, a in params) or "void"
    text = extract.apply_edits(parsed, e, extract.rename_edits(parsed, e, renames), start=body.extent.start.offset)
    out = [_comment(f"{rel}: {head}, as the diff leaves it. The body of the system call, then its entry "
                    "points, which pass the arguments as SYSCALL_DEFINE does.") + "\n"
           f"static long {impl}({decl})\n{text}"]
    for abi in abis:
        regs = ARG_REGS[abi]
        args = [_syscall_arg(t, abi, regs[i]) for i, (t, _) in enumerate(params)]
        call = f"\treturn {impl}({', '.join(args)});"
        if len(call.expandtabs(8)) > 80:
            # one argument a line, aligned with the '('
            indent = len(f"\treturn {impl}(".expandtabs(8))
            pad = "\t" * (indent // 8) + " " * (indent % 8)
            call = f"\treturn {impl}(" + f",\n{pad}".join(args) + ");"

        out.append(f"/* Replaces __{abi}_sys_{name}(). */\n"
                   f"static long {PREFIX}{abi}_sys_{name}(const struct pt_regs *regs)\n{{\n"
                   f"{call}\n}}")
    return "\n\n".join(out)


def _static_ref_edits(parsed: extract.Parsed, e: extract.Entity, st: extract.LocalStatic,
                      ident: str) -> list[tuple[int, int, str]]:
    import clang.cindex as ci

    edits = []
    for c in e.cursor.walk_preorder():
        if c.kind == ci.CursorKind.DECL_REF_EXPR and c.referenced is not None and c.referenced == st.cursor:
            off = c.location.offset
            if c.location.file is not None and str(c.location.file.name) == e.file and \
                    parsed.text(e.file, off, off + len(st.name)) == st.name:
                edits.append((off, off + len(st.name), ident))
    return edits


def _unit_static_name(w: UnitWork, var: str, callers: set[str]) -> str | None:
    """The kallsyms name of an inlined function's own static: the one `var.N` the functions it
    was inlined into use, else the unit's only one."""
    for scope in (callers, set(w.old.functions())):
        found = {ref for name in scope if name in w.old.functions() for ref in w.old.functions()[name].addressed
                 if (m := objdiff.LOCAL_STATIC_RE.match(ref)) and m.group("base") == var}
        if len(found) == 1:
            return found.pop()
    return None


def _local_static_name(w: UnitWork, func: str, var: str) -> str | None:
    """The kallsyms name of `func`'s own static `var`: gcc's `var.N`, referenced by func."""
    fsym = w.old.functions().get(func)
    if fsym is None:
        return None
    for ref in fsym.addressed:
        m = objdiff.LOCAL_STATIC_RE.match(ref)
        if m and m.group("base") == var:
            return ref
    return None


def _decide_function(k: Kernel, p: extract.Parsed, e: extract.Entity, objsyms: ksyms.ObjectSymbols, ibt: bool,
                     rel: str) -> tuple[str, str]:
    name = e.name
    static = extract.is_static(e)
    if not static and name in k.exports:
        if extract.declared_in_header(p, e):
            return "header", "exported, declared by a kernel header"
        return "plain-extern", "exported by the kernel: called as it is"
    pos = objsyms.positions(name)
    weak = e.definition and re.search(r"\b__weak\b|__attribute__\(\(weak\)\)", p.text(e.file, e.start, e.end))
    if pos:
        if ibt and objsyms.endbr is not None and not any(objsyms.endbr.get(i) for i in pos):
            if e.definition and not weak:
                return "copy", (f"has no ENDBR in {k.release} (IBT): a call through a pointer would fault, "
                                f"so it is copied from {rel}")
            return "elsewhere", (f"has no ENDBR in {k.release} (IBT) and is defined in another file: copied "
                                 "from there")
        where = "static in " + rel if static else "not exported"
        return "extern", f"{where}: the running kernel's own function, reached through kallsyms"
    if e.definition:
        return "copy", f"inlined away in {k.release}: copied from {rel}"
    raise DiffRefused(f"{name}() is neither exported nor in kallsyms of {k.release}, and {rel} does not define "
                      "it: kpgen cannot reach it")


def _decide_variable(k: Kernel, p: extract.Parsed, e: extract.Entity, objsyms: ksyms.ObjectSymbols,
                     rel: str) -> tuple[str, str]:
    name = e.name
    static = extract.is_static(e)
    if not static and name in k.exports:
        if extract.declared_in_header(p, e):
            return "header", "exported, declared by a kernel header"
        return "plain-extern", "exported by the kernel"
    if objsyms.positions(name, text=False):
        where = "static in " + rel if static else "not exported"
        return "extern", f"{where}: the running kernel's own variable, reached through kallsyms"
    if e.cursor.type.is_const_qualified() or "const" in e.cursor.type.spelling.split():
        return "define", f"constant data the compiler folded away in {k.release}: copied"
    raise DiffRefused(f"{name} is used by the patched code but is not in kallsyms of {k.release}: kpgen cannot "
                      "reach the kernel's copy")


def _fix_c(p: Plan, k: Kernel, patch: Path | None, parts: list[UnitPart]) -> str:
    incs: list[str] = []
    for part in parts:
        for i in part.includes:
            if i not in incs:
                incs.append(i)
    if patch is not None:
        head = [f" * Live patch {p.name}: {patch.name} for {k.release}.", " *",
                " * Generated by kpgen diff from the diff and the kernel's exact source: the",
                " * patched functions as the diff leaves them, renamed, with what they need.",
                " * Each copied or externally declared symbol says why. Review it; regenerate",
                " * it with kpgen diff rather than editing it."]
    else:
        t = p.targets[0]
        head = [f" * Live patch {p.name}: replaces {t.name}() of {t.unit} in {k.release}.", " *",
                " * Written by kpgen new from the kernel's exact source: the original",
                f" * function as {t.replacement}(), with what it needs. Each copied or",
                " * externally declared symbol says why. Change the body to make the fix."]
    lines = ["// SPDX-License-Identifier: GPL-2.0-only", "/*", *head, " */", ""]
    lines += [f"#include {i}" for i in incs]
    for part in parts:
        lines += ["", f"/* From {part.unit.rel}. */"]
        for _, text in part.emit:
            lines += ["", text.rstrip()]
    return "\n".join(lines).rstrip() + "\n"


DEFINITION_RE = r"^[A-Za-z_][^;=]*\b{name}\s*\("


def find_definition(tree: Path, func: str) -> str:
    """The .c file of the tree that defines `func` (one; else refuse, naming them)."""
    pattern = DEFINITION_RE.format(name=re.escape(func))
    proc = subprocess.run(["grep", "-rlE", "--include=*.c", pattern, str(tree / "kernel"), str(tree / "fs"),
                           str(tree / "mm"), str(tree / "lib"), str(tree / "net"), str(tree / "drivers"),
                           str(tree / "arch/x86"), str(tree / "block"), str(tree / "security"),
                           str(tree / "ipc"), str(tree / "init"), str(tree / "crypto"), str(tree / "sound")],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    files = sorted(str(Path(f).relative_to(tree)) for f in proc.stdout.split())
    if len(files) > 1:
        # a weak default is not the kernel's function when another file defines it
        weak = re.compile(DEFINITION_RE.format(name=re.escape(func)).replace("^[A-Za-z_]", "^.*?(?:__weak|weak)"),
                          re.M)
        strong = [f for f in files if not weak.search((tree / f).read_text(errors="replace"))]
        files = strong or files
    if not files:
        raise UsageError(f"no .c file of the kernel source defines {func}(): check the name, or give --file")
    if len(files) > 1:
        raise UsageError(f"{func}() is defined in {len(files)} files ({', '.join(files[:4])}): "
                         "say which with --file PATH")
    return files[0]


def plan_function(k: Kernel, src: ksource.Source, func: str, name: str, rel: str | None = None) -> Plan:
    """`kpgen new` with the source: the original function, renamed, with what it needs."""
    rel = rel or find_definition(src.root, func)
    unit = tu.locate(k, src.root, rel)
    p = Plan(name=name, patch=Path(rel), release=k.release)
    with tempfile.TemporaryDirectory(prefix="kpgen-new-") as tmp:
        work = Path(tmp)
        argv = tu.compile_argv(k, unit, src.root, None, src.root / rel, work / "unit.o")
        proc = tu.run_compile(argv, k, rel)
        parsed = extract.parse(src.root / rel, argv, [src.root])
        tu.wait_compile(proc, rel)
        obj = objdiff.read(work / "unit.o")
        w = UnitWork(unit, obj, obj, objdiff.Comparison((), (), (), (), ()), argv, argv, (parsed, parsed))
        syms = ksyms.vmlinux_symbols(k)
        objsyms = syms.object(k, unit.object)
        own = obj.functions().get(func)
        if ("func", func) not in parsed.entities or not parsed.entities[("func", func)].definition:
            raise UsageError(f"{rel} does not define {func}() as a plain function kpgen can copy")
        if own is None or not objsyms.positions(func):
            raise UsageError(f"{func}() is inlined away in {k.release}: it cannot be replaced itself; "
                             "replace its callers")
        if not own.traced:
            raise UsageError(f"ftrace cannot hook {func}() in {k.release} (notrace): replace its callers")
        unit_funcs = {objdiff.base_name(n) for n in obj.functions()}
        pos = _pick_position(objsyms, func, unit_funcs, text=True)
        p.targets.append(Target(func, unit.object, pos, PREFIX + func, rel))
        p.decide(func, "target", f"defined in {rel}")
        part = _extract_unit(k, p, w, parsed, {func}, set(), objsyms, syms.ibt, unit_funcs, set(obj.variables()))
        _with_copies(k, p, None, [part], src.root, work, objsyms, syms.ibt)
    return p


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# the copy of the source diff beside a spec made by kpgen diff, and the spec's key naming it
DIFF_FILE = "fix.patch"
DIFF_LINE = f"diff = {_toml_str(DIFF_FILE)}"


def _spec(p: Plan, patch: Path | None) -> str:
    if patch is not None:
        made, description = f"made by kpgen diff from {patch.name}", f"Live patch from {patch.name}"
    else:
        made, description = "written by kpgen new", f"Replace {p.targets[0].name}"
    out = [f"# Live patch {p.name}, {made} for {p.release}.",
           f"name = {_toml_str(p.name)}",
           f"description = {_toml_str(description[:200])}",
           'sources = ["fix.c"]']
    if patch is not None:
        out.append(DIFF_LINE)
    for t in p.targets:
        out += ["", "[[function]]", f"target = {_toml_str(t.name)}", f"object = {_toml_str(t.object)}",
                f"replacement = {_toml_str(t.replacement)}"]
        if t.sympos:
            out.append(f"sympos = {t.sympos}")
    for s in p.symbols:
        out += ["", "[[symbol]]", f"name = {_toml_str(s.ident)}"]
        if s.kallsyms and s.kallsyms != s.ident:
            out.append(f"kallsyms = {_toml_str(s.kallsyms)}")
        if s.object != "vmlinux":
            out.append(f"object = {_toml_str(s.object)}")
        if s.sympos:
            out.append(f"sympos = {s.sympos}")
    return "\n".join(out) + "\n"


def write(p: Plan, out: Path) -> list[Path]:
    """Write the spec and fix.c into `out` (refusing to mix them into a directory of other files)."""
    out = Path(out)
    spec_path, c_path, diff_path = out / f"{p.name}.toml", out / "fix.c", out / DIFF_FILE
    if out.exists() and any(x for x in out.iterdir()
                            if x.name not in (spec_path.name, "fix.c", DIFF_FILE, "module", "core")):
        raise UsageError(f"{out} holds other files: give kpgen diff an empty or new directory (-o DIR)")
    out.mkdir(parents=True, exist_ok=True)
    tmp_spec, tmp_c, tmp_diff = out / f".{spec_path.name}.tmp", out / ".fix.c.tmp", out / f".{DIFF_FILE}.tmp"
    tmp_spec.write_text(p.spec)
    tmp_c.write_text(p.fix_c)
    written = [spec_path, c_path]
    if DIFF_LINE in p.spec.split("\n"):
        # the module carries the diff it implements (kpgen info, packages)
        tmp_diff.write_bytes(p.patch.read_bytes())
        tmp_diff.replace(diff_path)
        written.append(diff_path)
    tmp_c.replace(c_path)
    tmp_spec.replace(spec_path)
    return written


def rmtree_quiet(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def build(k: Kernel, out: Path, p: Plan, core: Path | None = None) -> Path:
    """`kpgen patch` and `kpgen build` of the written spec: render, Kbuild, ELF checks. A
    livepatch-backend spec builds without the core: `core` is not used for it (the CLI refuses
    --core with that backend)."""
    from . import elfcheck, generate, pipeline, render, spec
    from .errors import BuildError

    patch = spec.load(out / f"{p.name}.toml")
    livepatch = patch.backend == "livepatch"
    if livepatch:
        core = None
    if core is None:
        core = out / "core"
        made = generate.generated_for(core)
        if not livepatch and (made is None or made[0] != k.release or not (core / "Module.symvers").is_file()):
            render.write(out, generate.core_files(k))
            pipeline.build(k, core)
    module = out / "module"
    generate.generate_patch(k, out / f"{p.name}.toml", module, core)
    pipeline.build(k, module, None if livepatch else core)
    ko = module / f"{p.name}.ko"
    verdict = elfcheck.check_module(ko, k, None if livepatch else core / "Module.symvers",
                                    tuple(f.replacement for f in patch.functions), patch.backend)
    if not verdict.ok:
        raise BuildError(f"{ko}: " + "; ".join(verdict.problems))
    return ko


def set_backend(p: Plan, backend: str) -> None:
    """Make the plan's spec name `backend`, refusing what that backend cannot do before anything
    is written."""
    if backend == "kpatch":
        return
    for i, s in enumerate(p.symbols):
        if s.sympos:
            raise UsageError(f"--backend {backend}: symbol[{i}] {s.ident!r} needs sympos = {s.sympos}, and the "
                             "livepatch backend resolves unexported symbols with kallsyms_lookup_name(), which "
                             "finds the first of same-named symbols only; use --backend kpatch")
    lines = p.spec.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("sources = "))
    lines.insert(at + 1, f"backend = {_toml_str(backend)}")
    p.spec = "\n".join(lines)
