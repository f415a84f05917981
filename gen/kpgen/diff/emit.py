"""Write what the closure decided: fix.c, C a reviewer can read (each part from its file, each
copied or declared symbol with a comment saying why), and the spec, through spec.dump."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .. import extract, spec as kspec
from ..errors import UsageError
from ..kernel import Kernel
from ..spec import CALLBACKS as CALLBACK_KINDS
from .closure import Emit, ExtractedUnit, func_name_uses
from .decisions import PREFIX, Plan
from .kpatch_api import CALLBACKS as MARKER_KINDS, adapter_name

MACROS = {kind: macro for macro, kind in MARKER_KINDS.items()}

# the registers each x86-64 entry point passes a system call's arguments in
ARG_REGS = {"x64": ("di", "si", "dx", "r10", "r8", "r9"), "ia32": ("bx", "cx", "dx", "si", "di", "bp")}


@dataclass(frozen=True)
class Piece:
    """One item of fix.c: comments and declarations it needs (head), then its text (body); a
    body taken from the source keeps the source's file and line (#line), so that __FILE__ and
    __LINE__ (WARN, BUG, dynamic debug) and the compiler's messages name the original."""

    name: str
    body: str
    head: str = ""
    origin: tuple[str, int] | None = None  # (file in the tree, line of the body's first line)


def syscall_params(define: str) -> tuple[str, list[tuple[str, str]]]:
    """The name and (type, argument) pairs of a SYSCALL_DEFINEn(...) head.

    >>> syscall_params("SYSCALL_DEFINE2(foo, struct bar __user *, b, int, n)")
    ('foo', [('struct bar __user *', 'b'), ('int', 'n')])
    """
    inner = define[define.index("(") + 1:define.rindex(")")]
    parts = [x.strip() for x in inner.split(",")]
    return parts[0], list(zip(parts[1::2], parts[2::2], strict=False))


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


def comment(text: str, width: int = 78) -> str:
    """A C comment, wrapped: one line when it fits.

    >>> comment("short")
    '/* short */'
    """
    if len(text) + 6 <= width:
        return f"/* {text} */"
    lines = textwrap.wrap(text, width - 3, break_on_hyphens=False)
    return "/*\n" + "".join(f" * {line}\n" for line in lines) + " */"


def syscall_arg(ctype: str, abi: str, reg: str) -> str:
    """One argument as the entry point passes it: ia32 takes the register's low 32 bits.

    >>> syscall_arg("int", "ia32", "bx"), syscall_arg("char __user *", "ia32", "cx")
    ('(int)(u32)regs->bx', '(char __user *)(regs->cx & U32_MAX)')
    """
    if abi != "ia32":
        return f"({ctype})regs->{reg}"
    if ctype.rstrip().endswith("*"):
        return f"({ctype})(regs->{reg} & U32_MAX)"
    return f"({ctype})(u32)regs->{reg}"


def syscall_text(parsed: extract.Parsed, e: extract.Entity, renames: dict[str, str], rel: str,
                 abis: list[str]) -> list[Piece]:
    """A SYSCALL_DEFINE written out: its body as a plain function, and the entry points."""
    body = extract.function_body(e)
    head = parsed.text(e.file, e.start, body.extent.start.offset).strip()
    name, params = syscall_params(head)
    impl = f"{PREFIX}do_sys_{name}"
    decl = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{a}" for t, a in params) or "void"
    text = extract.apply_edits(parsed, e, extract.rename_edits(parsed, e, renames), start=body.extent.start.offset)
    start = parsed.line(e.file, body.extent.start.offset)
    out = [Piece(f"__do_sys_{name}", f"static long {impl}({decl})\n{text}",
                 comment(f"{rel}: {head}, as the diff leaves it. The body of the system call, then its entry "
                         "points, which pass the arguments as SYSCALL_DEFINE does."),
                 (parsed.relative(e.file), start - 1))]
    for abi in abis:
        regs = ARG_REGS[abi]
        args = [syscall_arg(t, abi, regs[i]) for i, (t, _) in enumerate(params)]
        call = f"\treturn {impl}({', '.join(args)});"
        if len(call.expandtabs(8)) > 80:
            # one argument a line, aligned with the '('
            indent = len(f"\treturn {impl}(".expandtabs(8))
            pad = "\t" * (indent // 8) + " " * (indent % 8)
            call = f"\treturn {impl}(" + f",\n{pad}".join(args) + ");"
        out.append(Piece(f"__{abi}_sys_{name}", f"static long {PREFIX}{abi}_sys_{name}(const struct pt_regs *regs)\n"
                         f"{{\n{call}\n}}", f"/* Replaces __{abi}_sys_{name}(). */"))
    return out


def static_ref_edits(parsed: extract.Parsed, e: extract.Entity, st: extract.LocalStatic,
                     ident: str) -> list[tuple[int, int, str]]:
    """Edits renaming the uses of a function's own static in its body."""
    import clang.cindex as ci

    edits = []
    for c in e.cursor.walk_preorder():
        if c.kind == ci.CursorKind.DECL_REF_EXPR and c.referenced is not None and c.referenced == st.cursor:
            off = c.location.offset
            if c.location.file is not None and str(c.location.file.name) == e.file and \
                    parsed.text(e.file, off, off + len(st.name)) == st.name:
                edits.append((off, off + len(st.name), ident))
    return edits


def _function_text(eu: ExtractedUnit, key: tuple[str, str], how: Emit) -> Piece:
    """A function as fix.c holds it: renamed where it must be, its kept statics declared above
    it, its fresh ones listed, and a comment saying why it is there."""
    parsed, e = eu.parsed, eu.parsed.entities[key]
    edits = extract.rename_edits(parsed, e, eu.renames)
    head: list[str] = []
    if how in (Emit.REPLACE, Emit.COPY):
        for ks in eu.kept:
            if ks.static.function != e.name:
                continue
            st, use = ks.static, ks.use
            gone = parsed.text(e.file, st.start, st.end).count("\n")
            edits.append((st.start, st.end, f"/* {st.name}: the running kernel's {use.kallsyms}, declared above */"
                          + "\n" * gone))
            edits += static_ref_edits(parsed, e, st, ks.ident)
            head += [comment(f"{st.name} of {e.name}(): the running kernel's own {use.kallsyms}"),
                     extract.var_declaration(st.cursor, ks.ident), ""]
        fresh = [f"{shown_name(st.name)}: {why}" for st, why in eu.fresh if st.function == e.name]
        if fresh:
            head.append(comment_list(f"Statics of {e.name}() that are the patch module's own:", fresh))
        head.append(f"/* Replaces {e.name}() of {eu.unit.rel}. */" if how == Emit.REPLACE
                    else comment(f"{e.name}: {eu.why[key]}"))
    if e.name in eu.renames:
        # a renamed function's __func__ still names it as the kernel's code does
        edits += [(s, t, f'"{e.name}"') for s, t in func_name_uses(parsed, e)]
    body = extract.apply_edits(parsed, e, edits)
    original = parsed.text(e.file, e.start, e.end)
    if how in (Emit.REPLACE, Emit.COPY, Emit.DEFINE) and not extract.is_static(e):
        body = "static " + body
    # a longer name or an added `static` moves the '(': its continuation lines follow
    first_new, first_old = body.split("\n", 1)[0], original.split("\n", 1)[0]
    if "(" in first_new and "(" in first_old:
        body = realign_head(body, len(first_new[:first_new.index("(")].expandtabs(8))
                            - len(first_old[:first_old.index("(")].expandtabs(8)))
    return Piece(key[1], body, "\n".join(head), (parsed.relative(e.file), parsed.line(e.file, e.start)))


def shown_name(name: str) -> str:
    """A static's name as a reader sees it: gcc's and __COUNTER__'s numbers dropped.

    >>> shown_name("__UNIQUE_ID_ddebug255")
    '__UNIQUE_ID_ddebug'
    """
    return re.sub(r"^(__UNIQUE_ID_[A-Za-z_]+?)\d+$", r"\1", name)


def comment_list(title: str, items: list[str], width: int = 78) -> str:
    """A C comment: a title line, then one wrapped item per '-' bullet.

    >>> print(comment_list("Two:", ["a", "b"]))
    /*
     * Two:
     * - a
     * - b
     */
    """
    lines = ["/*", f" * {title}"]
    for item in items:
        wrapped = textwrap.wrap(item, width - 5, break_on_hyphens=False)
        lines += [f" * - {wrapped[0]}", *(f" *   {w}" for w in wrapped[1:])]
    return "\n".join([*lines, " */"])


DECLARES = (Emit.EXTERN, Emit.PLAIN_EXTERN, Emit.DECLARE)


def unit_text(eu: ExtractedUnit) -> list[Piece]:
    """One unit's part of fix.c: its macros and types in the unit's order, then every
    declaration (the kernel's symbols, what another file of the diff defines, and a function or
    variable used above its definition), then the definitions in the unit's order. A global
    function copied takes another name (the kernel's headers declare the original), before
    any code uses it."""
    parsed = eu.parsed
    out: list[Piece] = [
        Piece(key[1], f"#define {key[1]} {key[1]}_copy") for key in sorted(eu.emits)
        if eu.emits[key] == Emit.COPY and key[0] == "func" and not extract.is_static(parsed.entities[key])]
    keys = [key for key in sorted(eu.emits, key=lambda kk: parsed.order(parsed.entities[kk]))
            if eu.emits[key] != Emit.HEADER and key[0] != "enumconst" and key not in eu.skip]
    first = [k for k in keys if k[0] in ("macro", "type")]
    declared = [k for k in keys if eu.emits[k] in DECLARES]
    defined = [k for k in keys if k not in first and k not in declared]
    # a definition used by one above it is declared ahead, as the source itself declares it
    ahead = []
    for i, key in enumerate(defined):
        for dep in sorted(eu.uses.get(key, ())):
            if dep in defined[i + 1:] and dep not in ahead and eu.emits[dep] != Emit.SYSCALL:
                ahead.append(dep)
    for key in first:
        e = parsed.entities[key]
        if e.ns == "macro":
            undef = f"#undef {e.name}\n" if e.name in eu.undefine else ""
            out.append(Piece(key[1], undef + "#define " + parsed.text(e.file, e.start, e.end)))
        else:
            out.append(Piece(key[1], parsed.text(e.file, e.start, e.end) + ";"))
    out += [_declaration(eu, key) for key in declared]
    if ahead:
        forward = [_forward(eu, key) for key in sorted(ahead, key=lambda kk: parsed.order(parsed.entities[kk]))]
        out.append(Piece("(ahead)", "\n".join(forward), "/* Defined below, used before. */"))
    for key in defined:
        e = parsed.entities[key]
        how = eu.emits[key]
        if how == Emit.SYSCALL:
            out += syscall_text(parsed, e, eu.renames, eu.unit.rel, eu.syscalls[e.name[len("__do_sys_"):]])
        elif e.ns == "var":
            text = extract.apply_edits(parsed, e, extract.rename_edits(parsed, e, eu.renames)) + ";"
            # the module's own data: file-local, whatever the diff declares it as
            if how == Emit.DEFINE and not extract.is_static(e):
                text = "static " + text
            out.append(Piece(key[1], text))
        else:
            out.append(_function_text(eu, key, how))
    out += callback_adapters(eu)
    return out


def _declaration(eu: ExtractedUnit, key: tuple[str, str]) -> Piece:
    """The declaration of a symbol the unit's code uses and does not define."""
    e = eu.parsed.entities[key]
    decl = _declared(eu, key)
    if eu.emits[key] == Emit.DECLARE:
        decl = "static " + decl.removeprefix("extern ")
    return Piece(key[1], decl, comment(f"{e.name}: {eu.why[key]}"))


def _forward(eu: ExtractedUnit, key: tuple[str, str]) -> str:
    """A file-local definition declared ahead of a use."""
    return "static " + _declared(eu, key).removeprefix("extern ")


def _declared(eu: ExtractedUnit, key: tuple[str, str]) -> str:
    """The extern declaration of a function or variable, under the name fix.c gives it."""
    parsed, e = eu.parsed, eu.parsed.entities[key]
    name = eu.renames.get(e.name, e.name)
    if e.ns == "func":
        return re.sub(rf"\b{re.escape(e.name)}\b", name, extract.prototype(parsed, e), count=1)
    return extract.declaration(parsed, e, name)


def object_helper() -> Piece:
    """The patch_object a kpatch callback takes, for the object kpgen runs it for."""
    return Piece("livepatch_object", """static patch_object livepatch_object(const char *name)
{
	patch_object obj = { .name = name };

	if (name) {
		preempt_disable();
		obj.mod = find_module(name);
		preempt_enable();
	}
	return obj;
}""", comment("The object a kpatch callback runs for, as kpatch gives it: its name and module (NULL for "
              "vmlinux). The module cannot go while its callbacks run: kpgen's core and livepatch hold their "
              "mutex, which the module's going waits for."))


def callback_adapters(eu: ExtractedUnit) -> list[Piece]:
    """kpgen's callbacks of the unit's object, each calling the file's kpatch callback."""
    out = []
    obj = eu.unit.object
    arg = "NULL" if obj == "vmlinux" else f'"{obj}"'
    for kind, fn in sorted(eu.callbacks.items(), key=lambda kv: list(CALLBACK_KINDS).index(kv[0])):
        name = eu.renames.get(fn, fn)
        call = f"return {name}(&obj);" if kind == "pre_patch" else f"{name}(&obj);"
        out.append(Piece(adapter_name(obj, kind),
                         f"static {'int' if kind == 'pre_patch' else 'void'} {adapter_name(obj, kind)}(void)\n"
                         f"{{\n\tpatch_object obj = livepatch_object({arg});\n\n\t{call}\n}}",
                         comment(f"The {kind} callback of {obj}: {fn}() of {eu.unit.rel}, which the diff marks "
                                 f"with {MACROS[kind]}().")))
    return out


def fix_c(p: Plan, k: Kernel, parts: list[ExtractedUnit]) -> str:
    """The text of fix.c: a header saying what it is, the units' includes, each unit's part."""
    incs: list[str] = []
    for part in parts:
        incs += [i for i in part.includes if i not in incs]
    if p.patch is not None:
        head = [f" * Live patch {p.name}: {p.patch.name} for {k.release}.", " *",
                " * Generated by kpgen diff from the diff and the kernel's exact source: the",
                " * patched functions as the diff leaves them, renamed, with what they need.",
                " * Each copied or externally declared symbol says why. Code taken from the",
                " * source keeps its file and line (#line): compiler messages, WARN and BUG",
                " * reports and dynamic debug name the original. Review it; regenerate it with",
                " * kpgen diff rather than editing it."]
    else:
        t = p.targets[0]
        head = [f" * Live patch {p.name}: replaces {t.name}() of {t.unit} in {k.release}.", " *",
                " * Written by kpgen new from the kernel's exact source: the original",
                f" * function as {t.replacement}(), with what it needs. Each copied or",
                " * externally declared symbol says why. Change the body to make the fix."]
    lines = ["// SPDX-License-Identifier: GPL-2.0-only", "/*", *head, " */", ""]
    lines += [f"#include {i}" for i in incs]
    for hc in p.header_copies:
        why = (f"{hc.header} declares it for the kernel's own code only, not for modules: the kernel's own, "
               "called through a klp relocation" if hc.declaration else
               f"{hc.header} gives it to the kernel's own code only, not to modules: copied from there")
        lines += ["", comment(f"{hc.name}: {why}"), hc.text]
    mapped = False  # whether the lines that follow are numbered as the source's

    def back() -> None:
        nonlocal mapped
        if mapped:
            lines.append(f'#line {len(lines) + 2} "fix.c"')
            mapped = False

    helper = [object_helper()] if any(part.callbacks for part in parts) else []
    for part in parts:
        back()
        lines += ["", f"/* From {part.unit.rel}. */"]
        pieces = unit_text(part)
        if part.callbacks and helper:
            adapters = {adapter_name(part.unit.object, kind) for kind in part.callbacks}
            at = next(i for i, piece in enumerate(pieces) if piece.name in adapters)
            pieces.insert(at, helper.pop())
        for piece in pieces:
            lines.append("")
            if piece.head:
                back()
                lines += piece.head.split("\n")
            # kpgen new's fix.c is the developer's to edit: numbered as itself
            if piece.origin is not None and p.patch is not None:
                lines.append(f'#line {piece.origin[1]} "{piece.origin[0]}"')
                mapped = True
            else:
                back()
            lines += piece.body.rstrip().split("\n")
    return "\n".join(lines).rstrip() + "\n"


# the copy of the source diff beside a spec made by kpgen diff: the module carries it (kpgen
# info, packages)
DIFF_FILE = "fix.patch"


def patch_spec(p: Plan, backend: str = "kpatch") -> kspec.PatchSpec:
    """The spec of the plan: its targets and the [[symbol]] tables its kernel symbols need."""
    description = f"Live patch from {p.patch.name}" if p.patch is not None else f"Replace {p.targets[0].name}"
    return kspec.PatchSpec(
        path=Path(f"{p.name}.toml"), name=p.name, description=description[:200], sources=(Path("fix.c"),),
        functions=tuple(kspec.FunctionSpec(t.name, t.object, t.replacement, t.sympos, t.force) for t in p.targets),
        symbols=tuple(kspec.SymbolSpec(s.ident, s.sympos, s.object, s.kallsyms if s.kallsyms != s.ident else "")
                      for s in p.symbols),
        objects=tuple(kspec.ObjectSpec(obj, **callbacks) for obj, callbacks in sorted(
            p.objects.items(), key=lambda kv: (kv[0] != "vmlinux", kv[0]))),
        backend=backend, diff=Path(DIFF_FILE) if p.patch is not None else None)


def spec_text(p: Plan) -> str:
    """The spec file's text."""
    assert p.spec is not None
    made = f"made by kpgen diff from {p.patch.name}" if p.patch is not None else "written by kpgen new"
    return kspec.dump(p.spec, f"Live patch {p.name}, {made} for {p.release}.")


def write(p: Plan, out: Path) -> list[Path]:
    """Returns the spec, fix.c and the diff's copy written into `out`; refuses a directory that
    holds other files."""
    assert p.spec is not None
    out = Path(out)
    spec_path, c_path, diff_path = out / f"{p.name}.toml", out / "fix.c", out / DIFF_FILE
    if out.exists() and any(x for x in out.iterdir()
                            if x.name not in (spec_path.name, "fix.c", DIFF_FILE, "module", "core")):
        raise UsageError(f"{out} holds other files: give kpgen diff an empty or new directory (-o DIR)")
    out.mkdir(parents=True, exist_ok=True)
    tmp_spec, tmp_c, tmp_diff = out / f".{spec_path.name}.tmp", out / ".fix.c.tmp", out / f".{DIFF_FILE}.tmp"
    tmp_spec.write_text(spec_text(p))
    tmp_c.write_text(p.fix_c)
    written = [spec_path, c_path]
    if p.spec.diff is not None and p.patch is not None:
        tmp_diff.write_bytes(p.patch.read_bytes())
        tmp_diff.replace(diff_path)
        written.append(diff_path)
    tmp_c.replace(c_path)
    tmp_spec.replace(spec_path)
    return written
