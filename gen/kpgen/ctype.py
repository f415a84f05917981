"""C types as compilers describe them (BTF, DWARF): one small model, rendered as C and compared
as the C standard compares them.

Both readers (btf.py for the kernel, dwarf.py for the module kpgen compiles) build these nodes,
so a prototype the kernel was built with and one the user wrote are rendered and compared by
the same code. Two function types are the same when their canonical forms are equal: typedefs
resolved (`u32` is `unsigned int`), parameter names and top-level qualifiers of parameters
dropped (`const unsigned long j` is `unsigned long`), arrays and functions as parameters
decayed to pointers; pointed-to qualifiers count (`const char *` is not `char *`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# gcc names its integer types "long unsigned int" and the like; C code says "unsigned long"
INT_NAMES = {
    "long int": "long",
    "long unsigned int": "unsigned long",
    "long long int": "long long",
    "long long unsigned int": "unsigned long long",
    "short int": "short",
    "short unsigned int": "unsigned short",
    "unsigned": "unsigned int",
    "signed": "int",
    "signed int": "int",
    "long signed int": "long",
}
QUALIFIERS = ("const", "volatile", "restrict")
NAMED = ("void", "int", "float", "struct", "union", "enum", "typedef")


@dataclass(frozen=True)
class CType:
    """One type node. kind: void, int, float, struct, union, enum, typedef (name + ref), ptr,
    const, volatile, restrict (ref), array (ref, nelems; None = unknown size), func (ref = return
    type, params, variadic, prototyped)."""

    kind: str
    name: str = ""
    ref: CType | None = None
    params: tuple[tuple[str, CType], ...] = ()
    variadic: bool = False
    nelems: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "int":
            object.__setattr__(self, "name", INT_NAMES.get(self.name, self.name))


VOID = CType("void")


def _specifier(t: CType) -> str:
    if t.kind in ("struct", "union", "enum"):
        return f"{t.kind} {t.name}" if t.name else f"{t.kind} (anonymous)"
    return t.name or t.kind


def declare(t: CType, inner: str = "") -> str:
    """C text declaring `inner` (a name, or nothing for an abstract type) of type `t`.

    >>> int_ = CType("int", "int")
    >>> declare(CType("func", ref=CType("int", "unsigned int"), params=(("j", CType("const", ref=CType("int", \
"long unsigned int"))),)), "jiffies_to_msecs")
    'unsigned int jiffies_to_msecs(const unsigned long j)'
    >>> declare(CType("ptr", ref=CType("func", ref=int_, params=(("", int_),))), "fn")
    'int (*fn)(int)'
    >>> declare(CType("const", ref=CType("ptr", ref=CType("const", ref=CType("int", "char")))), "p")
    'const char *const p'
    >>> declare(CType("array", ref=CType("ptr", ref=int_), nelems=4), "a")
    'int *a[4]'
    >>> declare(CType("func", ref=VOID, params=()), "f"), declare(CType("ptr", ref=CType("struct", "seq_file")))
    ('void f(void)', 'struct seq_file *')
    """
    return _declare(t, inner).strip()


def _join(spec: str, inner: str) -> str:
    return f"{spec} {inner}" if inner else spec


def _declare(t: CType, inner: str) -> str:
    k = t.kind
    if k in NAMED:
        return _join(_specifier(t), inner)
    assert t.ref is not None, f"a {k} type refers to nothing"
    if k in QUALIFIERS:
        if t.ref.kind == "ptr":
            # a qualified pointer: the qualifier follows its star
            assert t.ref.ref is not None
            return _declare(t.ref.ref, f"*{k} {inner}".rstrip())
        if t.ref.kind in NAMED or t.ref.kind in QUALIFIERS:
            return _join(f"{k} {_declare(t.ref, '')}", inner)
        return _declare(t.ref, inner)  # a qualified array or function: C has no such thing
    if k == "ptr":
        return _declare(t.ref, "*" + inner)
    if k == "array":
        size = "" if t.nelems is None else str(t.nelems)
        return _declare(t.ref, f"{_paren(inner)}[{size}]")
    if k == "func":
        return _declare(t.ref, f"{_paren(inner)}({parameters(t)})")
    raise ValueError(f"no C declaration for a {k} type")


def _paren(inner: str) -> str:
    return f"({inner})" if inner.startswith("*") else inner


def parameters(func: CType) -> str:
    """The parameter list of a function type, as C writes it."""
    if not func.params:
        return "..." if func.variadic else "void"
    text = ", ".join(declare(t, name) for name, t in func.params)
    return text + (", ..." if func.variadic else "")


def canonical(t: CType) -> CType:
    """The type C compares: typedefs resolved (not those of an anonymous struct, union or enum,
    which have no other name), parameter names and their top-level qualifiers dropped, array and
    function parameters decayed to pointers."""
    k = t.kind
    if k == "typedef":
        assert t.ref is not None
        target = _strip_qualifiers_keep(t.ref)
        if target.kind in ("struct", "union", "enum") and not target.name:
            return CType("typedef", t.name)
        return canonical(t.ref)
    if k == "func":
        assert t.ref is not None
        params = tuple(("", _decay(canonical(p))) for _, p in t.params)
        return replace(t, ref=canonical(t.ref), params=params)
    if t.ref is not None:
        return replace(t, ref=canonical(t.ref))
    return t


def _strip_qualifiers_keep(t: CType) -> CType:
    while t.kind in QUALIFIERS and t.ref is not None:
        t = t.ref
    return t


def _decay(t: CType) -> CType:
    t = _strip_qualifiers_keep(t)
    if t.kind == "array":
        return CType("ptr", ref=t.ref)
    if t.kind == "func":
        return CType("ptr", ref=t)
    return t


def same(a: CType, b: CType) -> bool:
    """Whether two types are the same type to the C compiler (see canonical()).

    >>> u32 = CType("typedef", "u32", ref=CType("int", "unsigned int"))
    >>> same(CType("func", ref=u32, params=(("x", CType("const", ref=u32)),)),
    ...      CType("func", ref=CType("int", "unsigned int"), params=(("y", CType("int", "unsigned int")),)))
    True
    >>> same(CType("ptr", ref=CType("const", ref=CType("int", "char"))), CType("ptr", ref=CType("int", "char")))
    False
    """
    return canonical(a) == canonical(b)
