"""Structures as the compiler lays them out (libclang): size, alignment, and each member's
offset, bit-field width and type, typedefs resolved. What the kernel already holds objects of
must keep its layout; how a record is spelled (libclang names an unnamed one after the path it
read the file under) does not matter."""

from __future__ import annotations

import re
from typing import Any

from .extract import Parsed

# clang's name for a record without one: "(anonymous at FILE:L:C)", "(unnamed struct at ...)",
# with the path it read the file under
UNNAMED_RE = re.compile(r"\((?:anonymous|unnamed)\b")

Shape = tuple[Any, ...]


def type_shape(t: Any) -> Shape:
    """What the compiler lays out for a type, independent of how it is spelled: typedefs
    resolved, named records and enums by name (their own layout is compared on its own),
    records without a name by their members, arrays by length, pointers by what they point to.

    A record clang names after its file and line has no name here, so a copy of the file under
    another path, or a line moved, changes nothing."""
    import clang.cindex as ci

    TK = ci.TypeKind
    c = t.get_canonical()
    if c.kind == TK.RECORD:
        decl = c.get_declaration()
        kind = "union" if decl.kind == ci.CursorKind.UNION_DECL else "struct"
        if decl.spelling and not UNNAMED_RE.search(decl.spelling):
            return (kind, decl.spelling)
        return (kind, c.get_size(), c.get_align(), member_shapes(c))
    if c.kind == TK.ENUM:
        decl = c.get_declaration()
        named = decl.spelling and not UNNAMED_RE.search(decl.spelling)
        return ("enum", decl.spelling) if named else ("enum", c.get_size())
    if c.kind == TK.POINTER:
        return ("*", type_shape(c.get_pointee()))
    if c.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY, TK.VARIABLEARRAY, TK.DEPENDENTSIZEDARRAY):
        return ("[]", c.get_array_size() if c.kind == TK.CONSTANTARRAY else None, type_shape(c.element_type))
    if c.kind == TK.FUNCTIONPROTO:
        return ("()", type_shape(c.get_result()), tuple(type_shape(a) for a in c.argument_types()),
                c.is_function_variadic())
    if c.kind == TK.FUNCTIONNOPROTO:
        return ("()", type_shape(c.get_result()))
    return (c.kind.spelling, c.get_size())


def member_shapes(record: Any) -> Shape:
    """Each member of a record type: its name ("" for an anonymous member), bit offset, bit-field
    width (0 for none) and shape."""
    out = []
    for f in record.get_fields():
        name = "" if UNNAMED_RE.search(f.spelling) else f.spelling
        out.append((name, f.get_field_offsetof(), f.get_bitfield_width() if f.is_bitfield() else 0,
                    type_shape(f.type)))
    return tuple(out)


def record_layouts(p: Parsed, files: set[str]) -> dict[str, Shape]:
    """The layout of every named struct and union defined in `files`: size, alignment and
    members (see type_shape), keyed "struct NAME" (a typedef of an unnamed record names it)."""
    import clang.cindex as ci

    K = ci.CursorKind
    out: dict[str, Shape] = {}
    tops = [c for c in p.tops if str(c.location.file.name) in files]
    for c in tops:
        decl, name = c, c.spelling
        if c.kind == K.TYPEDEF_DECL:
            decl = c.underlying_typedef_type.get_canonical().get_declaration()
            if decl.kind not in (K.STRUCT_DECL, K.UNION_DECL) or not UNNAMED_RE.search(decl.spelling or "("):
                continue
        if decl.kind not in (K.STRUCT_DECL, K.UNION_DECL) or not decl.is_definition() or not name \
                or UNNAMED_RE.search(name):
            continue
        kind = "struct" if decl.kind == K.STRUCT_DECL else "union"
        t = decl.type
        out[f"{kind} {name}"] = (t.get_size(), t.get_align(), member_shapes(t))
    return out


def layout_change(old: Shape, new: Shape) -> str:
    """What differs between two layouts of one record, for a reader.

    >>> layout_change((8, 4, (("a", 0, 0, ("Int", 4)),)), (8, 4, (("a", 32, 0, ("Int", 4)),)))
    'member a moves from bit 0 to bit 32'
    """
    if old[0] != new[0]:
        return f"its size goes from {old[0]} to {new[0]} bytes"
    olds, news = {m[0]: m for m in old[2]}, {m[0]: m for m in new[2]}
    for name, m in olds.items():
        shown = f"member {name}" if name else "an anonymous member"
        if name not in news:
            return f"{shown} goes away"
        n = news[name]
        if m[1] != n[1]:
            return f"{shown} moves from bit {m[1]} to bit {n[1]}"
        if m[2:] != n[2:]:
            return f"{shown} changes its type"
    added = [f"member {n}" if n else "an anonymous member" for n in news if n not in olds]
    if added:
        return f"{added[0]} is new"
    return "its alignment or member order changes"
