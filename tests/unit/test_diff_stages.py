"""The stages of `kpgen diff` on a unit of a few lines, compiled by the host's gcc as Kbuild
compiles the kernel, against a made-up kallsyms: targets, the closure's decisions, fix.c and
the spec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kpgen import extract, kernel, ksyms, objdiff, spec, units
from kpgen.diff import closure, compare, emit, targets
from kpgen.diff.decisions import Action, Plan
from kpgen.errors import DiffRefused

HEADER = "struct point { int x; int y; };\nint ext_log(int v);\n"
UNIT = """\
#include "local.h"

static int helper(struct point *p)
{
\treturn p->x + %d;
}

int counter;

int visible(struct point *p)
{
\tstatic int calls;

\tcalls++;
\treturn ext_log(helper(p) + counter + calls);
}
"""
# what the running kernel has: helper was inlined away
KALLSYMS = [("T", "ext_log"), ("t", "other"), ("T", "visible"), ("D", "counter"), ("d", "calls.0")]
GCC = ["gcc", "-O2", "-fno-pie", "-fno-pic", "-pg", "-mfentry", "-ffunction-sections", "-fdata-sections"]


def compiled(root: Path, old: str, new: str) -> compare.CompiledUnit:
    objs, parsed = [], []
    for name, text in (("tree", old), ("overlay", new)):
        d = root / name / "fs/x"
        d.mkdir(parents=True)
        (d / "local.h").write_text(HEADER)
        (d / "a.c").write_text(text)
        argv = [*GCC, f"-I{d}", "-c", "-o", str(root / f"{name}.o"), str(d / "a.c")]
        subprocess.run(argv, check=True)
        objs.append(objdiff.read(root / f"{name}.o"))
        parsed.append(extract.parse(d / "a.c", argv, [root / name]))
    return compare.CompiledUnit(units.Unit("fs/x/a.c", "vmlinux", "a"), objs[0], objs[1],
                                objdiff.compare(objs[0], objs[1]), [], [], parsed[0], parsed[1])


def fake_kernel(tmp_path: Path, exports: tuple[str, ...] = ()) -> kernel.Kernel:
    """A kernel known by its exports only."""
    features = kernel.KernelFeatures(has_ibt=False, ftrace_with_args=True, ftrace_ip_setter="",
                                     ksym_cb_has_mod=False, module_ksym_takes_modname=False)
    return kernel.Kernel(kdir=tmp_path, release="6.1.0-test-amd64", config={},
                         exports=dict.fromkeys(exports, "vmlinux"), features=features)


@pytest.fixture
def planned(tmp_path: Path) -> tuple[kernel.Kernel, Plan, closure.ExtractedUnit]:
    k = fake_kernel(tmp_path, exports=("ext_log",))
    cu = compiled(tmp_path, UNIT % 1, UNIT % 2)
    cu.new_parsed.new_names = set()
    p = Plan(name="fix", patch=tmp_path / "fix.patch", release=k.release)
    syms = ksyms.ObjectSymbols("vmlinux", KALLSYMS)
    chosen, added = targets.choose(k, p, cu, syms)
    return k, p, closure.extract_unit(k, p, cu, cu.new_parsed, set(chosen), added, syms)


def test_one_decision_per_symbol(planned: tuple[kernel.Kernel, Plan, closure.ExtractedUnit]) -> None:
    _, p, _ = planned
    assert [(d.symbol, d.action) for d in p.decisions] == [
        ("visible", Action.TARGET), ("visible:calls", Action.KERNEL_STATIC), ("ext_log", Action.EXPORTED),
        ("helper", Action.COPY), ("counter", Action.EXTERN)]
    assert p.decisions[3].line() == "helper: copy (inlined away in 6.1.0-test-amd64: copied from fs/x/a.c)"


def test_fix_c_and_the_spec(planned: tuple[kernel.Kernel, Plan, closure.ExtractedUnit]) -> None:
    k, p, part = planned
    text = emit.fix_c(p, k, [part])
    assert "static int helper(struct point *p)\n{\n\treturn p->x + 2;\n}" in text
    assert "extern int counter;" in text and "extern int visible_calls;" in text
    assert "static int livepatch_visible(struct point *p)\n{\n" in text
    assert "\tvisible_calls++;" in text
    patch = emit.patch_spec(p)
    assert patch.functions == (spec.FunctionSpec("visible", "vmlinux", "livepatch_visible", 0),)
    assert patch.symbols == (spec.SymbolSpec("visible_calls", 0, "vmlinux", "calls.0"),)


def test_a_changed_function_without_a_patchable_caller_is_refused(tmp_path: Path) -> None:
    k = fake_kernel(tmp_path)
    cu = compiled(tmp_path, UNIT % 1, UNIT % 2)
    p = Plan(name="fix", patch=None, release=k.release)
    # the kernel has no `visible` either: nothing can be patched
    syms = ksyms.ObjectSymbols("vmlinux", [("t", "other")])
    with pytest.raises(DiffRefused) as info:
        targets.choose(k, p, cu, syms)
    assert info.value.where == "fs/x/a.c: visible()"
    assert "has no caller in its file to patch instead" in info.value.problem


SHAPE_H = """\
struct shape {
\tint kind;
\tunion {
\t\tint a;
\t\t%s r;
\t};
\tstruct { int x, y; } at;
};
"""


def layouts_of(tmp_path: Path, header: str) -> compare.CompiledUnit:
    """The unit parsed from the cached tree and from an overlay made the way the apply stage
    makes it (symbolic links to everything the diff leaves alone)."""
    from kpgen.diff import apply

    tree = tmp_path / "tree"
    (tree / "fs/x").mkdir(parents=True)
    (tree / "fs/x/local.h").write_text(SHAPE_H % "long")
    (tree / "fs/x/a.c").write_text('#include "local.h"\nint f(struct shape *s) { return s->a; }\n')
    changed = ["fs/x/a.c"] + (["fs/x/local.h"] if header != SHAPE_H % "long" else [])
    apply.make_overlay(tree, tmp_path / "ov", changed)
    (tmp_path / "ov/fs/x/a.c").write_text('#include "local.h"\n\nint f(struct shape *s) { return s->a; }\n')
    (tmp_path / "ov/fs/x/local.h").write_text(header) if "fs/x/local.h" in changed else None
    parsed = [extract.parse(r / "fs/x/a.c", ["gcc", f"-I{r / 'fs/x'}", "-c", str(r / "fs/x/a.c")], [r])
              for r in (tree, tmp_path / "ov")]
    empty = objdiff.Object(tmp_path / "none.o")
    return compare.CompiledUnit(units.Unit("fs/x/a.c", "vmlinux", "a"), empty, empty,
                                objdiff.compare(empty, empty), [], [], parsed[0], parsed[1])


def test_anonymous_members_of_a_linked_header_are_no_layout_change(tmp_path: Path) -> None:
    """clang names the unnamed union and struct after the path it read the header under, which
    differs in the overlay: the layout, not the spelling, is compared."""
    compare.refuse_layout_change(layouts_of(tmp_path, SHAPE_H % "long"))


def test_a_changed_anonymous_member_is_a_layout_change(tmp_path: Path) -> None:
    with pytest.raises(DiffRefused) as info:
        compare.refuse_layout_change(layouts_of(tmp_path, SHAPE_H % "unsigned long"))
    assert (info.value.where, info.value.problem) == (
        "fs/x/a.c: struct shape", "the diff changes its layout (an anonymous member changes its type), "
        "and objects of it already exist in the running kernel")


def test_the_names_gcc_found_missing() -> None:
    from kpgen.diff.finish import _missing

    log = ("kernel/fork.c:800:2: error: implicit declaration of function \u2018flush_tlb_mm\u2019; did you mean "
           "\u2018flush_cache_mm\u2019? [-Werror=implicit-function-declaration]\n"
           "fix.c:3:5: error: \u2018TLB_FLUSH_ALL\u2019 undeclared (first use in this function)\n"
           "fix.c:9:5: error: 'plain' undeclared here (not in a function)\n"
           "fix.c:12:2: error: implicit declaration of function \u2018flush_tlb_mm\u2019\n"
           "fix.c:14:2: error: expected \u2018;\u2019 before \u2018}\u2019 token\n")
    assert _missing(log) == ["flush_tlb_mm", "TLB_FLUSH_ALL", "plain"]
