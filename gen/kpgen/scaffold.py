"""`kpgen new`: scaffold a spec and a C file for replacing one function."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import ctype, spec
from .errors import UsageError
from .kernel import Kernel, header_roots

# the name a typedef declares: `typedef __u32 u32;`, `typedef unsigned long ulong[2];`
TYPEDEF_RE = re.compile(r"typedef\b[^;{}]*?\b(\w+)\s*(?:\[[^]]*\])?\s*;")
STORAGE_RE = re.compile(r"\b(?:extern|static|inline|__always_inline|noinline|asmlinkage|__init|__weak|notrace|"
                        r"__cold|__sched|__must_check)\s+")


@dataclass(frozen=True)
class Prototype:
    """A prototype for the scaffold, as C text, with what fix.c needs to compile it."""

    return_type: str
    params: str
    includes: tuple[str, ...] = ()  # headers that declare the types it names
    declarations: tuple[str, ...] = ()  # forward declarations of the struct and union tags it names
    origin: str = ""  # where kpgen read it
    missing: tuple[str, ...] = ()  # types no header kpgen found declares

    def definition(self, name: str) -> str:
        return f"static {self.return_type}{'' if self.return_type.endswith('*') else ' '}{name}({self.params})"

    def default_return(self) -> str:
        if self.return_type == "void":
            return ""
        return "\treturn NULL;\n" if self.return_type.endswith("*") else "\treturn 0;\n"


def clean_type(text: str) -> str:
    """A declaration's return type without storage words, attributes or extra blanks.

    >>> clean_type("extern  unsigned int __must_check")
    'unsigned int'
    >>> clean_type("struct page * ")
    'struct page *'
    """
    text = re.sub(r"__attribute__\s*\(\(.*?\)\)", " ", text + " ")
    text = STORAGE_RE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s*\*\s*", " *", text).replace("* *", "**").strip()


def header_candidates(roots: list[Path], func: str) -> list[Path]:
    """Headers that name `func` as a word (where a declaration may be), most specific first."""
    found: list[Path] = []
    word = re.compile(rf"\b{re.escape(func)}\s*\(")
    for root in roots:
        for sub in ("include/linux", "include", "arch/x86/include"):
            base = root / sub
            if not base.is_dir():
                continue
            for header in sorted(base.rglob("*.h")):
                if header in found or "uapi" in header.parts:
                    continue
                try:
                    text = header.read_text(errors="replace")
                except OSError:
                    continue
                if func in text and word.search(text):
                    found.append(header)
    return found


def header_prototype(k: Kernel, func: str) -> Prototype | None:
    """The declaration of `func` in the kernel headers, read by the C front end (libclang)
    on the kernel's own flags: the parameters as declared, unnamed ones named argN."""
    import clang.cindex as ci

    from . import extract, units

    args = extract.clang_args(units.kbuild_command(k))
    index = ci.Index.create()
    for header in header_candidates(header_roots(k.kdir), func)[:20]:
        rel = next((header.relative_to(r / d).as_posix() for r in header_roots(k.kdir)
                    for d in ("include", "arch/x86/include") if header.is_relative_to(r / d)), None)
        if rel is None:
            continue
        unit = index.parse("kpgen-proto.c", args=args, unsaved_files=[
            ("kpgen-proto.c", f"#include <linux/kernel.h>\n#include <{rel}>\n")])
        for c in unit.cursor.get_children():
            if c.kind != ci.CursorKind.FUNCTION_DECL or c.spelling != func or c.location.file is None:
                continue
            proto = _prototype(c)
            return replace(proto, includes=(f"<{rel}>",), origin=f"declared in <{rel}>")
    return None


def btf_prototype(k: Kernel, obj: str, func: str) -> Prototype | None:
    """The prototype of `func` in `obj` from the kernel's BTF (prototypes.py): exact, static
    functions included; None when BTF does not hold it, or holds several for the name."""
    from . import prototypes
    from .errors import KernelError

    try:
        found = prototypes.kernel_types(k, obj, func, "function")
    except KernelError:
        return None
    if len(found) != 1:
        return None
    known = known_typedefs(k)
    func_type = _spell(found[0], known)
    params = tuple((name or f"arg{i}", t) for i, (name, t) in enumerate(func_type.params, 1))
    func_type = replace(func_type, params=params)
    assert func_type.ref is not None
    tags, names = _names(func_type)
    includes, missing = _headers(k, sorted(names - known))
    return Prototype(return_type=ctype.declare(func_type.ref), params=ctype.parameters(func_type),
                     includes=tuple(includes), declarations=tuple(f"{tag};" for tag in sorted(tags)),
                     origin=f"read from the BTF of {obj}, {k.release}", missing=tuple(missing))


def known_typedefs(k: Kernel) -> set[str]:
    """The typedefs <linux/kernel.h> always brings (<linux/types.h> and what it includes)."""
    names = {"bool"}
    for rel in ("include/linux/types.h", "include/uapi/linux/types.h", "include/uapi/asm-generic/int-ll64.h",
                "include/asm-generic/int-ll64.h", "include/uapi/linux/posix_types.h",
                "include/uapi/asm-generic/posix_types.h", "arch/x86/include/uapi/asm/posix_types_64.h"):
        for root in header_roots(k.kdir):
            path = root / rel
            if path.is_file():
                names |= set(TYPEDEF_RE.findall(path.read_text(errors="replace")))
                break
    return names


def _spell(t: ctype.CType, known: set[str]) -> ctype.CType:
    """A type as fix.c can write it: a typedef <linux/kernel.h> does not bring is kept only
    when it names an anonymous struct, union or enum (else its type is written out)."""
    if t.kind == "typedef" and t.name not in known and t.ref is not None:
        inner = t.ref
        while inner.kind in ctype.QUALIFIERS and inner.ref is not None:
            inner = inner.ref
        if not (inner.kind in ("struct", "union", "enum") and not inner.name):
            return _spell(t.ref, known)
        return t
    if t.kind == "typedef":
        return t
    ref = _spell(t.ref, known) if t.ref is not None else None
    params = tuple((n, _spell(p, known)) for n, p in t.params)
    return replace(t, ref=ref, params=params)


def _names(t: ctype.CType) -> tuple[set[str], set[str]]:
    """The struct and union tags a type names (forward-declarable), and the enums and typedefs
    (a header must declare them)."""
    tags: set[str] = set()
    names: set[str] = set()
    stack = [t]
    while stack:
        cur = stack.pop()
        if cur.kind in ("struct", "union") and cur.name:
            tags.add(f"{cur.kind} {cur.name}")
        elif cur.kind == "enum" and cur.name:
            names.add(f"enum {cur.name}")
        elif cur.kind == "typedef":
            names.add(cur.name)
            continue
        if cur.ref is not None:
            stack.append(cur.ref)
        stack.extend(p for _, p in cur.params)
    names.discard("bool")
    return tags, names


def _headers(k: Kernel, names: list[str]) -> tuple[list[str], list[str]]:
    """The kernel headers that declare each enum or typedef (the most general one), and the
    names no header declares."""
    import subprocess

    includes: list[str] = []
    missing: list[str] = []
    for name in names:
        word = name.removeprefix("enum ")
        pattern = (rf"^\s*enum\s+{word}\s*\{{" if name.startswith("enum ")
                   else rf"(^\s*typedef\b.*\b{word}\s*;|^\}}\s*{word}\s*;)")
        found: list[str] = []
        for root in header_roots(k.kdir):
            for sub in ("include", "arch/x86/include"):
                base = root / sub
                if not base.is_dir():
                    continue
                proc = subprocess.run(["grep", "-rlE", "--include=*.h", pattern, str(base)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
                found += [Path(f).relative_to(base).as_posix() for f in proc.stdout.split()
                          if "/uapi/" not in f and not Path(f).relative_to(base).as_posix().startswith("uapi/")]
        if found:
            best = sorted(found, key=lambda rel: (not rel.startswith("linux/"), len(rel), rel))[0]
            if f"<{best}>" not in includes:
                includes.append(f"<{best}>")
        else:
            missing.append(name)
    return includes, missing


def _prototype(c: Any) -> Prototype:
    import clang.cindex as ci

    cur: ci.Cursor = c
    tokens = list(cur.get_tokens())
    name_at = next(i for i, t in enumerate(tokens) if t.spelling == cur.spelling)
    ret = clean_type(" ".join(t.spelling for t in tokens[:name_at]))
    params = []
    for i, arg in enumerate(cur.get_arguments(), 1):
        text = " ".join(t.spelling for t in arg.get_tokens()) or arg.type.spelling
        text = re.sub(r"\s*\*\s*", " *", text).replace("* *", "**").strip()
        if not arg.spelling:
            text = f"{text}arg{i}" if text.endswith("*") else f"{text} arg{i}"
        params.append(text)
    if cur.type.kind == ci.TypeKind.FUNCTIONPROTO and cur.type.is_function_variadic():
        params.append("...")
    return Prototype(ret, ", ".join(params) or "void")


def check_names(name: str, target: str, obj: str) -> None:
    """Refuse a module name, target or object kpgen new cannot use (before any work)."""
    if not spec.NAME_RE.match(name) or len(name) > spec.MODULE_NAME_MAX or name.startswith("kpatch"):
        raise UsageError(f"module name {name!r} is not valid: use lower-case letters, digits and '_', "
                         "starting with a letter, not starting with 'kpatch'")
    if name == "fix":
        raise UsageError("module name 'fix': its generated C would be fix.c, the file kpgen new writes your C "
                         "into: choose another name, such as fix_" + target)
    if not spec.IDENT_RE.match(target) or target in spec.C_KEYWORDS:
        raise UsageError(f"--target {target!r} is not a C function name")
    if not spec.OBJECT_RE.match(obj):
        raise UsageError(f"--object {obj!r} is not 'vmlinux' or a module name")


def scaffold_files(name: str, target: str, obj: str, proto: Prototype | None, unknown: str = "") -> dict[str, str]:
    """NAME.toml and fix.c for replacing `target` in `obj`. Without a prototype, none is guessed:
    fix.c says why (`unknown`) and does not compile until the user writes the prototype."""
    replacement = f"{name}_{target}"
    if proto:
        head = (f"/*\n * Replacement for {target}() in {obj}: the same prototype as the original\n"
                f" * ({proto.origin}).\n */\n" if proto.origin else
                f"/* Replacement for {target}() in {obj}: same prototype as the original. */\n")
        includes = "".join(f"#include {inc}\n" for inc in dict.fromkeys(("<linux/kernel.h>", *proto.includes)))
        declarations = "".join(f"{d}\n" for d in proto.declarations)
        todo = "".join(f"/* TODO: #include the kernel header that declares {m} */\n" for m in proto.missing)
        body = f"\t/* TODO: the new body of {target}() */\n{proto.default_return()}"
        c_text = ("// SPDX-License-Identifier: GPL-2.0-only\n" + head + includes + "\n"
                  + (declarations + "\n" if declarations else "") + (todo + "\n" if todo else "")
                  + f"{proto.definition(replacement)}\n{{\n{body}}}\n")
    else:
        why = textwrap.fill(f"kpgen does not know the prototype of {target}(): {unknown}. Give {replacement}() "
                            f"exactly the return type and parameters of {target}(): a replacement called with "
                            "other ones corrupts the kernel.", width=76, initial_indent=" * ",
                            subsequent_indent=" * ")
        c_text = ("// SPDX-License-Identifier: GPL-2.0-only\n"
                  f"/*\n * Replacement for {target}() in {obj}.\n *\n{why}\n */\n"
                  "#include <linux/kernel.h>\n\n"
                  f'#error "write the prototype of {target}() for {replacement}() and its body, '
                  'then remove this line"\n\n'
                  f"static RETURN_TYPE {replacement}(PARAMETERS)\n{{\n"
                  f"\t/* TODO: the new body of {target}() */\n}}\n")
    spec_text = (f"# Patch module {name}: replaces {target}() in {obj}.\n"
                 f"# Build it: kpgen patch {name}.toml -o DIR --core CORE && kpgen build --core CORE DIR\n"
                 f'name = "{name}"\n'
                 f'description = "Replace {target}"\n'
                 'sources = ["fix.c"]\n\n'
                 "[[function]]\n"
                 f'target = "{target}"\n'
                 f'object = "{obj}"\n'
                 f'replacement = "{replacement}"\n'
                 "# sympos = 2    # when several functions share the name\n")
    return {f"{name}.toml": spec_text, "fix.c": c_text}


@dataclass
class Made:
    """What `kpgen new` did: the files it wrote, and what it says about them."""

    written: list[Path]
    lines: list[str]


def choose_file(k: Kernel, tree: Path, target: str, obj: str) -> str:
    """The one .c file of the source tree that defines `target` and that Kbuild builds into
    `obj` for this kernel's configuration (objects.py); refuse none, or several."""
    from . import objects

    files = objects.defining_files(tree, target)
    if not files:
        raise UsageError(f"no .c file of the kernel source defines {target}(): check the name, or give --file")
    placed = {f: objects.placement(k, tree, f) for f in files}
    held = [f for f in files if placed[f].holds(obj)]
    if not held:
        where = "; ".join(f"{f}: {placed[f].describe()}" for f in files[:4])
        raise UsageError(f"{target}() is defined in {len(files)} file(s), none built into {obj} of {k.release} "
                         f"({where}): check --object, or give --file")
    if len(held) > 1:
        raise UsageError(f"{target}() is defined in {len(held)} files built into {obj} of {k.release} "
                         f"({', '.join(held[:4])}): say which with --file PATH")
    return held[0]


def make(k: Kernel, name: str, target: str, obj: str, out: Path, source: Path | None = None,
         use_source: bool = True, rel: str | None = None, force: bool = False) -> Made:
    """`kpgen new`: NAME.toml and fix.c in `out`. For an object of the kernel, with its source:
    the original function and what it needs (diff.plan_function); else the prototype, from the
    kernel's BTF or its headers. For an object outside the kernel's tree, or a function whose
    prototype kpgen cannot read, a scaffold that does not compile until the prototype is written."""
    from . import objects, ownership, render, targets

    lines: list[str] = []
    ownership.refuse_existing([out / f"{name}.toml", out / "fix.c"], force)
    modules = objects.kernel_modules(k)
    if obj != "vmlinux" and modules.get(obj) == "built into vmlinux":
        raise UsageError(f"--object {obj}: {obj} is built into vmlinux of {k.release}, not a module: "
                         "use --object vmlinux")
    in_tree = obj == "vmlinux" or obj in modules
    if in_tree:
        problem = targets.function_problem(k, obj, target)
        if problem is not None:
            raise UsageError(f"--target {target}: {problem}")
    files: dict[str, str] = {}
    if in_tree and use_source:
        from . import source as ksource

        src = ksource.find(k, source) if source else ksource.cached(k)
        if src is None:
            lines.append(f"no source of {k.release} in the cache (`kpgen source` makes it): "
                         "fix.c gets the prototype only")
        else:
            from . import diff

            plan = diff.plan_function(k, src, target, name, rel or choose_file(k, src.root, target, obj))
            lines += [d.line() for d in plan.decisions]
            files = {f"{name}.toml": diff.spec_text(plan), "fix.c": plan.fix_c}
    if not files:
        proto = None
        unknown = (f"{obj} is not a module of {k.release} (none under /lib/modules/{k.release}/kernel), "
                   "so kpgen has no BTF or headers of it to read it from")
        if in_tree:
            # the headers' declaration keeps what sparse reads (__user, __rcu), which BTF has not;
            # BTF has every function, static ones too
            proto = (header_prototype(k, target) if obj == "vmlinux" else None) or btf_prototype(k, obj, target)
            unknown = (f"neither the BTF of {obj} ({k.release}) nor the kernel's headers give one "
                       "(or BTF gives several, for same-named functions)")
        if proto is None:
            lines.append(f"the prototype of {target}() is unknown: fix.c does not compile until you write it")
        files = scaffold_files(name, target, obj, proto, unknown)
    made = render.write(out, [render.OutputFile(Path(n), text.encode()) for n, text in files.items()], force)
    return Made(made, lines)
