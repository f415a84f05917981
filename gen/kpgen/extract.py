"""Extract readable C from a kernel translation unit with a real C front end (libclang).

The unit is parsed with the kernel's own preprocessing flags. Its *local* definitions are
those of the .c file and of the private headers it includes from its own part of the tree
(not include/ nor arch/*/include/, which the patch module includes as the kernel does).
For a set of functions to emit, the closure of what they use is collected from the AST:
references to functions, variables, types, enum constants and macros (macro bodies are
followed by their tokens). The caller decides, per local function and variable, whether it
is copied, declared `extern` (served by kallsyms pointers) or used as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BuildError
from .resources import KPATCH_API

CLANG_KEEP = ("-D", "-U", "-I", "-std=", "-nostdinc", "-m64")


def clang_args(gcc_argv: list[str]) -> list[str]:
    """The preprocessing part of a gcc command line, for libclang."""
    out, i = ["-target", "x86_64-linux-gnu", "-w"], 1
    while i < len(gcc_argv):
        a = gcc_argv[i]
        if a in ("-include", "-isystem", "-idirafter") and i + 1 < len(gcc_argv):
            out += [a, gcc_argv[i + 1]]
            i += 2
            continue
        if a in ("-c", "-o"):
            i += 2 if a == "-o" else 1
            continue
        if a.startswith(CLANG_KEEP) and not a.endswith(".c"):
            out.append(a)
        i += 1
    return out


@dataclass
class Entity:
    ns: str  # "func", "var", "type", "macro"
    name: str
    file: str
    start: int
    end: int
    cursor: Any
    definition: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.ns, self.name)


@dataclass
class LocalStatic:
    function: str
    name: str
    cursor: Any
    start: int
    end: int  # through the ';'
    written: bool = True  # declared in the function's own text, not by a macro it expands

    @property
    def read_only(self) -> bool:
        """Whether the variable is constant (an array of constants included): no state."""
        import clang.cindex as ci

        t = self.cursor.type
        while t.kind in (ci.TypeKind.CONSTANTARRAY, ci.TypeKind.INCOMPLETEARRAY):
            t = t.element_type
        return bool(t.is_const_qualified())

    @property
    def type_name(self) -> str:
        """The variable's type as the compiler sees it, typedefs resolved."""
        return str(self.cursor.type.get_canonical().spelling)


# kpatch's patch-author markers (kpatch-macros.h) that say something about the patch module
MARKERS = ("KPATCH_PRE_PATCH_CALLBACK", "KPATCH_POST_PATCH_CALLBACK", "KPATCH_PRE_UNPATCH_CALLBACK",
           "KPATCH_POST_UNPATCH_CALLBACK", "KPATCH_FORCE_UNSAFE", "KPATCH_IGNORE_FUNCTION", "KPATCH_IGNORE_SECTION")


@dataclass(frozen=True)
class Marker:
    """One use of a kpatch marker in the unit: KPATCH_PRE_PATCH_CALLBACK(fn) and the like."""

    name: str
    args: tuple[str, ...]
    offset: int


def macro_arguments(tokens: list[str]) -> tuple[str, ...]:
    """The arguments of a macro's use, from its tokens, each as its tokens joined.

    >>> macro_arguments(["M", "(", "a", ",", "f", "(", "b", ",", "c", ")", ")"])
    ('a', 'f(b,c)')
    """
    args: list[str] = []
    depth, cur = 0, ""
    for t in tokens[1:]:
        if t in "([{":
            depth += 1
            if depth == 1:
                continue
        elif t in ")]}":
            depth -= 1
            if depth == 0:
                break
        elif t == "," and depth == 1:
            args.append(cur)
            cur = ""
            continue
        cur += t
    return (*args, cur) if cur or args else ()


@dataclass
class Parsed:
    path: Path
    tu: Any
    local_files: list[str]  # in the order they are first included; the .c file last
    entities: dict[tuple[str, str], Entity] = field(default_factory=dict)
    macro_uses: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # file -> (offset, name)
    includes: list[tuple[str, str]] = field(default_factory=list)  # (file, include spelling)
    texts: dict[str, bytes] = field(default_factory=dict)
    new_names: set[tuple[str, str]] = field(default_factory=set)  # functions and variables the diff adds
    tops: list[Any] = field(default_factory=list)  # the local files' top-level declarations
    roots: list[str] = field(default_factory=list)  # the trees it was read from, the patched one first
    markers: list[Marker] = field(default_factory=list)  # the kpatch markers of the .c file, in order

    def relative(self, file: str) -> str:
        """A file's path in the tree, as the kernel's build names it (fs/proc/meminfo.c)."""
        for r in self.roots:
            if file.startswith(r + "/"):
                return file[len(r) + 1:]
        return file

    def line(self, file: str, offset: int) -> int:
        """The line of an offset in a file, counted from 1."""
        self.text(file, 0, 0)
        return self.texts[file].count(b"\n", 0, offset) + 1

    def text(self, file: str, start: int, end: int) -> str:
        if file not in self.texts:
            self.texts[file] = Path(file).read_bytes()
        return self.texts[file][start:end].decode("utf-8", errors="replace")

    def order(self, e: Entity) -> tuple[int, int]:
        return (self.local_files.index(e.file), e.start)


def _type_key(cursor: Any) -> tuple[str, str] | None:
    import clang.cindex as ci

    K = ci.CursorKind
    if cursor.kind == K.STRUCT_DECL:
        return ("type", f"struct {cursor.spelling}") if cursor.spelling else None
    if cursor.kind == K.UNION_DECL:
        return ("type", f"union {cursor.spelling}") if cursor.spelling else None
    if cursor.kind == K.ENUM_DECL:
        return ("type", f"enum {cursor.spelling}") if cursor.spelling else None
    if cursor.kind == K.TYPEDEF_DECL:
        return ("type", cursor.spelling)
    return None


def parse(src: Path, gcc_argv: list[str], tree_roots: list[Path]) -> Parsed:
    import clang.cindex as ci

    K = ci.CursorKind
    index = ci.Index.create()
    try:
        tu = index.parse(str(src), args=clang_args(gcc_argv),
                         options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD)
    except ci.TranslationUnitLoadError as exc:
        raise BuildError(f"the C front end cannot parse {src}: {exc}") from None
    errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    if errors:
        raise BuildError(f"the C front end cannot parse {src}: " + "; ".join(
            f"{d.location.file}:{d.location.line}: {d.spelling}" for d in errors[:5]))
    main = str(src)
    roots = [str(r) for r in tree_roots]

    api = str(KPATCH_API) + "/"

    def local(fname: str) -> bool:
        # kpatch's patch-author headers, as kpgen provides them, count as the unit's own
        if fname == main or fname.startswith(api):
            return True
        for r in roots:
            if fname.startswith(r + "/"):
                rel = fname[len(r) + 1:]
                return not (rel.startswith("include/") or re.match(r"arch/[^/]+/include/", rel))
        return False

    local_files: list[str] = []
    for inc in tu.get_includes():
        name = str(inc.include.name)
        if local(name) and name not in local_files and inc.depth >= 1:
            local_files.append(name)
    local_files.append(main)
    p = Parsed(path=src, tu=tu, local_files=local_files, roots=roots)
    for c in tu.cursor.get_children():
        f = c.location.file
        if f is None:
            continue
        fname = str(f.name)
        if c.kind == K.INCLUSION_DIRECTIVE and local(fname):
            toks = [t.spelling for t in c.get_tokens()]
            spelled = "".join(toks[2:]) if len(toks) > 2 else c.spelling
            p.includes.append((fname, spelled))
            continue
        if not local(fname):
            if c.kind == K.MACRO_INSTANTIATION:
                continue
            continue
        start, end = c.extent.start.offset, c.extent.end.offset
        if c.kind not in (K.MACRO_DEFINITION, K.MACRO_INSTANTIATION):
            p.tops.append(c)
        if c.kind == K.MACRO_DEFINITION:
            p.entities[("macro", c.spelling)] = Entity("macro", c.spelling, fname, start, end, c)
        elif c.kind == K.MACRO_INSTANTIATION:
            p.macro_uses.setdefault(fname, []).append((start, c.spelling))
            if c.spelling in MARKERS and fname == main:
                p.markers.append(Marker(c.spelling, macro_arguments([t.spelling for t in c.get_tokens()]), start))
        elif c.kind == K.FUNCTION_DECL:
            key = ("func", c.spelling)
            if c.is_definition() or key not in p.entities:
                p.entities[key] = Entity("func", c.spelling, fname, start, end, c, c.is_definition())
        elif c.kind == K.VAR_DECL:
            key = ("var", c.spelling)
            # `static int x;` defines x (a tentative definition), `extern int x;` does not
            defines = c.is_definition() or c.storage_class != ci.StorageClass.EXTERN
            if defines or key not in p.entities:
                p.entities[key] = Entity("var", c.spelling, fname, start, end, c, defines)
        else:
            tk = _type_key(c)
            if tk and (c.is_definition() or tk not in p.entities):
                p.entities[tk] = Entity("type", tk[1], fname, start, end, c, c.is_definition())
            if c.kind == K.ENUM_DECL:
                for e in c.get_children():
                    p.entities[("enumconst", e.spelling)] = Entity("enumconst", e.spelling, fname, start, end, c)
    return p


def references(p: Parsed, e: Entity) -> tuple[set[tuple[str, str]], list[LocalStatic]]:
    """The local entities `e` uses, and (for a function) its own `static` variables."""
    import clang.cindex as ci

    K = ci.CursorKind
    deps: set[tuple[str, str]] = set()
    statics: list[LocalStatic] = []
    if e.ns == "macro":
        toks = [t.spelling for t in e.cursor.get_tokens()][1:]
        for i, t in enumerate(toks):
            for ns in ("macro", "func", "var", "type", "enumconst"):
                if (ns, t) in p.entities:
                    deps.add((ns, t))
            if t in ("struct", "union", "enum") and i + 1 < len(toks):
                deps.add(("type", f"{t} {toks[i + 1]}"))
    else:
        for c in e.cursor.walk_preorder():
            if c.kind in (K.DECL_REF_EXPR, K.TYPE_REF, K.MEMBER_REF_EXPR):
                r = c.referenced
                if r is None:
                    continue
                if r.kind == K.FUNCTION_DECL:
                    deps.add(("func", r.spelling))
                elif r.kind == K.VAR_DECL:
                    if r.semantic_parent is not None and r.semantic_parent.kind == K.TRANSLATION_UNIT:
                        deps.add(("var", r.spelling))
                elif r.kind == K.ENUM_CONSTANT_DECL:
                    deps.add(("enumconst", r.spelling))
                else:
                    tk = _type_key(r)
                    if tk:
                        deps.add(tk)
            elif c.kind == K.VAR_DECL and e.ns == "func" and c != e.cursor \
                    and c.storage_class == ci.StorageClass.STATIC:
                end = c.extent.end.offset
                raw = p.text(e.file, end, end + 8)
                semi = raw.find(";")
                # written in the function's text, perhaps as a macro's argument (DEFINE_MUTEX(name)),
                # rather than made up inside a macro's expansion (WARN_ONCE's __already_done)
                at = c.extent.start
                written = at.file is not None and str(at.file.name) == e.file and e.start <= at.offset < e.end \
                    and re.search(rf"\b{re.escape(c.spelling)}\b", p.text(e.file, at.offset, end)) is not None
                statics.append(LocalStatic(e.name, c.spelling, c, c.extent.start.offset,
                                           end + (semi + 1 if semi >= 0 else 0), written))
            elif c.kind == K.TYPE_REF or c.kind == K.TYPEDEF_DECL:
                pass
        for off, name in p.macro_uses.get(e.file, []):
            if e.start <= off < e.end and ("macro", name) in p.entities:
                deps.add(("macro", name))
    deps = {d for d in deps if d in p.entities and d != e.key}
    # an enum constant stands for its enum
    out = set()
    for d in deps:
        if d[0] == "enumconst":
            ent = p.entities[d]
            tk = _type_key(ent.cursor)
            out.add(tk if tk and tk in p.entities else ("enumconst", d[1]))
        else:
            out.add(d)
    return out, statics


def rename_edits(p: Parsed, e: Entity, renames: dict[str, str]) -> list[tuple[int, int, str]]:
    """Edits (start, end, text) renaming, per `renames`, every identifier in `e`'s text that names
    a function or variable (its own name included), macro arguments too: not members, tags or
    labels. A file-scope name a function's local shadows is renamed with its local, which
    keeps the function's meaning."""
    import clang.cindex as ci

    edits: list[tuple[int, int, str]] = []
    before = ""
    for t in e.cursor.get_tokens():
        name = t.spelling
        if t.kind == ci.TokenKind.IDENTIFIER and name in renames and before not in (".", "->", "struct", "union",
                                                                                    "enum", "goto"):
            loc = t.extent.start
            if loc.file is not None and str(loc.file.name) == e.file:
                edits.append((loc.offset, loc.offset + len(name), renames[name]))
        before = name
    return edits


def apply_edits(p: Parsed, e: Entity, edits: list[tuple[int, int, str]], start: int | None = None) -> str:
    start = e.start if start is None else start
    out, pos = [], start
    for s, t, text in sorted(edits):
        if s < pos:
            continue
        out.append(p.text(e.file, pos, s))
        out.append(text)
        pos = t
    out.append(p.text(e.file, pos, e.end))
    return "".join(out)


DROP_IN_PROTO = re.compile(r"(?:\b(?:static|inline|__always_inline|noinline|__init|__exit|__cold|notrace|__weak|"
                           r"__maybe_unused|__used|__attribute_const__)|__attribute__\(\(weak\)\))\s+")


def prototype(p: Parsed, e: Entity) -> str:
    """`extern` declaration of a local function: its own head, without storage words."""
    import clang.cindex as ci

    body = next((c for c in e.cursor.get_children() if c.kind == ci.CursorKind.COMPOUND_STMT), None)
    head = p.text(e.file, e.start, body.extent.start.offset if body else e.end).rstrip()
    head = DROP_IN_PROTO.sub("", head).strip()
    if head.startswith("extern "):
        head = head[len("extern "):]
    return f"extern {head};"


def declaration(p: Parsed, e: Entity, name: str | None = None) -> str:
    """`extern` declaration of a variable (file scope or a function's own static)."""
    c = e.cursor
    return var_declaration(c, name or e.name)


def var_declaration(c: Any, name: str) -> str:
    import clang.cindex as ci

    t = c.type
    dims = ""
    while t.kind in (ci.TypeKind.CONSTANTARRAY, ci.TypeKind.INCOMPLETEARRAY):
        dims += f"[{t.get_array_size()}]" if t.kind == ci.TypeKind.CONSTANTARRAY else "[]"
        t = t.element_type
    spelled = t.spelling
    if t.kind == ci.TypeKind.POINTER and t.get_pointee().kind in (ci.TypeKind.FUNCTIONPROTO,):
        raise BuildError(f"cannot declare {name}: a pointer to a function")
    sep = "" if spelled.endswith("*") else " "
    return f"extern {spelled}{sep}{name}{dims};"


def function_body(e: Entity) -> Any:
    import clang.cindex as ci

    return next((c for c in e.cursor.get_children() if c.kind == ci.CursorKind.COMPOUND_STMT), None)


def declared_in_header(p: Parsed, e: Entity) -> bool:
    """Whether a kernel header (not the unit's own files) declares the symbol."""
    c = e.cursor.canonical
    f = c.location.file
    return f is not None and str(f.name) not in p.local_files


def is_static(e: Entity) -> bool:
    import clang.cindex as ci

    return bool(e.cursor.storage_class == ci.StorageClass.STATIC)


def declaration_references(p: Parsed, e: Entity) -> set[tuple[str, str]]:
    """The local types and macros an extern declaration of `e` needs: its type, its return and
    parameter types, and the macros its head is written with (not what its body or its
    initialiser uses)."""
    import clang.cindex as ci

    K = ci.CursorKind
    body = function_body(e) if e.ns == "func" else None
    head_end = body.extent.start.offset if body is not None else e.end
    deps: set[tuple[str, str]] = set()
    for child in e.cursor.get_children():
        if child.kind not in (K.TYPE_REF, K.PARM_DECL):
            continue
        for c in child.walk_preorder():
            if c.kind == K.TYPE_REF and c.referenced is not None:
                tk = _type_key(c.referenced)
                if tk:
                    deps.add(tk)
    for off, name in p.macro_uses.get(e.file, []):
        if e.start <= off < head_end and ("macro", name) in p.entities:
            deps.add(("macro", name))
    return {d for d in deps if d in p.entities and d != e.key}


HEADER_RE = re.compile(r"/((?:arch/[^/]+/)?include/.*)$")


def header_definition(p: Parsed, name: str) -> tuple[str, str, bool] | None:
    """Where a kernel header (not the unit's own files) defines or declares `name` for the
    unit, that text as fix.c can repeat it (a macro's `#define`, a function's or a variable's
    declaration, an inline function's whole definition), and whether it is a declaration;
    None when no header does."""
    import clang.cindex as ci

    K = ci.CursorKind
    for c in p.tu.cursor.get_children():
        if c.spelling != name or c.kind not in (K.MACRO_DEFINITION, K.FUNCTION_DECL, K.VAR_DECL):
            continue
        f = c.location.file
        if f is None or str(f.name) in p.local_files:
            continue
        m = HEADER_RE.search(str(f.name))
        if m is None:
            continue
        text = p.text(str(f.name), c.extent.start.offset, c.extent.end.offset)
        if c.kind == K.MACRO_DEFINITION:
            return m.group(1), f"#define {text}", False
        if c.kind == K.FUNCTION_DECL and c.is_definition():
            return m.group(1), text, False
        return m.group(1), text.rstrip(";") + ";", True
    return None
