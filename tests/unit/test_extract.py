"""The C front end (libclang) on a few lines of C in a made-up tree: the unit's own entities,
what a function uses, its own statics, declarations, and the layout of its structures."""

from __future__ import annotations

from pathlib import Path

from kpgen import extract, layouts

HEADER = """\
#define LIMIT 4
struct point { int x; int y; };
struct shape {
\tint kind;
\tunion {
\t\tstruct point at;
\t\tlong radius;
\t};
};
"""

UNIT = """\
#include "local.h"

static int helper(struct point *p)
{
\treturn p->x + LIMIT;
}

int counter;

int visible(struct shape *s)
{
\tstatic int calls;

\tcalls++;
\treturn helper(&s->at) + counter + calls;
}
"""


def parse(root: Path, header: str = HEADER, unit: str = UNIT) -> extract.Parsed:
    (root / "fs/x").mkdir(parents=True, exist_ok=True)
    (root / "fs/x/local.h").write_text(header)
    (root / "fs/x/a.c").write_text(unit)
    return extract.parse(root / "fs/x/a.c", ["gcc", f"-I{root / 'fs/x'}", "-c", str(root / "fs/x/a.c")], [root])


def test_the_units_own_entities(tmp_path: Path) -> None:
    p = parse(tmp_path)
    assert {("func", "helper"), ("func", "visible"), ("var", "counter"), ("macro", "LIMIT"),
            ("type", "struct point"), ("type", "struct shape")} <= set(p.entities)
    assert p.local_files == [str(tmp_path / "fs/x/local.h"), str(tmp_path / "fs/x/a.c")]


def test_references_and_local_statics(tmp_path: Path) -> None:
    p = parse(tmp_path)
    deps, statics = extract.references(p, p.entities[("func", "visible")])
    assert deps == {("func", "helper"), ("var", "counter"), ("type", "struct shape")}
    assert [s.name for s in statics] == ["calls"]
    deps, _ = extract.references(p, p.entities[("func", "helper")])
    assert deps == {("macro", "LIMIT"), ("type", "struct point")}


def test_declarations(tmp_path: Path) -> None:
    p = parse(tmp_path)
    assert extract.prototype(p, p.entities[("func", "helper")]) == "extern int helper(struct point *p);"
    assert extract.declaration(p, p.entities[("var", "counter")]) == "extern int counter;"
    assert extract.is_static(p.entities[("func", "helper")]) and not extract.is_static(p.entities[("func", "visible")])


def test_layouts(tmp_path: Path) -> None:
    found = layouts.record_layouts(parse(tmp_path), {str(tmp_path / "fs/x/local.h")})
    assert found["struct point"][0] == 8 and found["struct shape"][0] == 16


def test_an_extern_declaration_needs_the_files_own_types(tmp_path: Path) -> None:
    """`static struct chan busy[8];` declared extern needs struct chan, not what initialises it."""
    unit = ("struct chan { int lock; const char *id; };\nint other(void);\n"
            "static struct chan busy[8] = { [4] = { 1, \"cascade\" } };\n"
            "static int show(struct chan *c, int n) { return other() + c->lock + n; }\n"
            "int use(void) { return show(&busy[0], 1); }\n")
    p = parse(tmp_path, unit=unit)
    assert extract.declaration_references(p, p.entities[("var", "busy")]) == {("type", "struct chan")}
    assert extract.declaration_references(p, p.entities[("func", "show")]) == {("type", "struct chan")}
