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


def test_what_a_kernel_header_keeps_from_modules(tmp_path: Path) -> None:
    """fix.c is compiled as a module: what a header defines under #ifndef MODULE, which the
    unit (compiled for the kernel) had, is found there to be repeated in fix.c."""
    (tmp_path / "arch/x86/include/asm").mkdir(parents=True)
    (tmp_path / "arch/x86/include/asm/tlb.h").write_text(
        "#ifndef MODULE\n"
        "void flush_range(unsigned long start,\n\t\t unsigned long end);\n"
        "#define flush_all() \\\n\tflush_range(0, ~0UL)\n"
        "static inline int pages(int n) { return n * 2; }\n"
        "#endif\n")
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm/b.c").write_text("#include <asm/tlb.h>\nvoid f(void) { flush_all(); pages(1); }\n")
    p = extract.parse(tmp_path / "mm/b.c", ["gcc", f"-I{tmp_path / 'arch/x86/include'}", "-c",
                                            str(tmp_path / "mm/b.c")], [tmp_path])
    assert extract.header_definition(p, "flush_all") == (
        "arch/x86/include/asm/tlb.h", "#define flush_all() \\\n\tflush_range(0, ~0UL)", False)
    assert extract.header_definition(p, "flush_range") == (
        "arch/x86/include/asm/tlb.h", "void flush_range(unsigned long start,\n\t\t unsigned long end);", True)
    assert extract.header_definition(p, "pages") == (
        "arch/x86/include/asm/tlb.h", "static inline int pages(int n) { return n * 2; }", False)
    assert extract.header_definition(p, "f") is None  # the unit's own
    assert extract.header_definition(p, "nowhere") is None
