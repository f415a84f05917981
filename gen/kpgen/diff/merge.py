"""One fix.c from the parts of several files: what two parts both write is written once, and a
name two files use for different things is given each file's name as a prefix (the kernel
kept them apart in two translation units; fix.c is one)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import extract
from ..errors import DiffRefused
from .closure import Emit, ExtractedUnit, Key
from .decisions import PREFIX, Action, Plan, SymbolUse

DEFINES = (Emit.DEFINE, Emit.COPY, Emit.REPLACE)
DECLARES = (Emit.EXTERN, Emit.PLAIN_EXTERN, Emit.DECLARE)


def _identity(part: ExtractedUnit, key: Key, how: Emit) -> tuple[str, ...]:
    """What an emitted name stands for: a definition by where its text is, a declaration of the
    kernel's symbol by its object."""
    e = part.parsed.entities[key]
    if how in DECLARES:
        return ("symbol", part.unit.object if how == Emit.EXTERN else "", key[1])
    return ("text", os.path.realpath(e.file), str(e.start))


def prefix(rel: str) -> str:
    """The prefix a file's own names take when another file of the diff uses them otherwise.

    >>> prefix("drivers/input/misc/pcspkr.c")
    'pcspkr_'
    """
    return re.sub(r"\W", "_", Path(rel).stem) + "_"


def resolve(p: Plan, parts: list[ExtractedUnit]) -> None:
    """Marks what earlier parts already write, renames what two parts define otherwise (and the
    targets two objects share a name for); refuses two files' different types of one name."""
    texts = {key: _identity(part, key, how) for part in parts for key, how in part.emits.items()
             if how == Emit.DEFINE}
    seen: dict[Key, list[tuple[int, tuple[str, ...], bool]]] = {}
    for i, part in enumerate(parts):
        for key, how in part.emits.items():
            if how in (*DEFINES, *DECLARES) or key[0] in ("macro", "type"):
                # a declaration of what another file of the diff defines stands for that definition
                thing = texts.get(key, _identity(part, key, how)) if how == Emit.DECLARE else _identity(part, key, how)
                seen.setdefault(key, []).append((i, thing, how in DECLARES))
    for key, uses in sorted(seen.items()):
        written: set[tuple[tuple[str, ...], bool]] = set()
        for i, thing, declared in uses:
            if (thing, declared) in written:
                parts[i].skip.add(key)  # the same text or declaration, written by an earlier part
            written.add((thing, declared))
        things = {thing for _, thing, _ in uses}
        if len(things) == 1:
            continue
        if key[0] == "type":
            files = ", ".join(sorted({parts[i].unit.rel for i, _, _ in uses}))
            raise DiffRefused(key[1], f"{files} define it differently, and fix.c, which holds the code of every "
                              "file, can hold one of them", "split the diff by file")
        if key[0] == "macro":
            for i, _, _ in uses[1:]:
                parts[i].undefine.add(key[1])
            continue
        # each thing takes the prefix of the file that defines it
        owner: dict[tuple[str, ...], int] = {}
        for i, thing, declared in uses:
            if not declared:
                owner.setdefault(thing, i)
        for i, thing, _ in uses:
            _rename(p, parts[i], key, prefix(parts[owner.get(thing, i)].unit.rel))


def _rename(p: Plan, part: ExtractedUnit, key: Key, pre: str) -> None:
    """Gives a name of the part its file's prefix in fix.c (a target's replacement too)."""
    name = key[1]
    how = part.emits[key]
    if how == Emit.REPLACE:
        new = f"{PREFIX}{pre}{name.lstrip('_')}"
        p.targets[:] = [t if not (t.name == name and t.unit == part.unit.rel) else
                        type(t)(t.name, t.object, t.sympos, new, t.unit, t.force) for t in p.targets]
    else:
        new = pre + name
    part.renames[name] = new
    p.decide(name, Action.RENAMED, f"{new} in fix.c, the one of {part.unit.rel}: another file of the diff has "
             "its own")
    if how == Emit.EXTERN:
        # the kernel's symbol, declared under the file's name for it
        use = next((s for s in p.symbols if s.ident == name and s.object == part.unit.object), None)
        if use is not None:
            p.symbols.remove(use)
        p.symbols.append(SymbolUse(new, name, part.unit.object, use.sympos if use else 0))


def renamed(part: ExtractedUnit, e: extract.Entity) -> str:
    """The name an entity has in fix.c."""
    return part.renames.get(e.name, e.name)
