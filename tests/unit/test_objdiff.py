"""objdiff on objects the host's gcc compiles from a few lines of C: what counts as a change."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen import objdiff

Compile = Callable[..., Path]
# as Kbuild compiles the kernel: no PIE, an __fentry__ call first, a section per function and variable
GCC_FLAGS = ["-O2", "-fno-pie", "-fno-pic", "-pg", "-mfentry", "-ffunction-sections", "-fdata-sections"]


@pytest.fixture
def compile_c(tmp_path: Path) -> Compile:
    """compile_c(NAME, TEXT): the object of tmp_path/NAME.c holding TEXT."""

    def make(name: str, text: str) -> Path:
        src, obj = tmp_path / f"{name}.c", tmp_path / f"{name}.o"
        src.write_text(text)
        subprocess.run(["gcc", *GCC_FLAGS, "-c", "-o", str(obj), str(src)], check=True)
        return obj

    return make


def compare(compile_c: Compile, old: str, new: str) -> objdiff.Comparison:
    return objdiff.compare(objdiff.read(compile_c("old", old)), objdiff.read(compile_c("new", new)))


def test_an_inlined_helper_changes_its_caller(compile_c: Compile) -> None:
    src = "static int helper(int x) { return x + %d; }\nint visible(int x) { return helper(x) * 2; }\n"
    cmp = compare(compile_c, src % 1, src % 2)
    assert cmp.changed == ("visible",) and cmp.added == () and cmp.removed == ()


def test_strings_are_compared_by_their_text(compile_c: Compile) -> None:
    src = 'extern int puts(const char *);\nint f(void) { return puts("%s"); }\nint g(void) { return puts("same"); }\n'
    assert compare(compile_c, src % "a", src % "b").changed == ("f",)
    assert compare(compile_c, src % "a", src % "a").changed == ()


def test_renumbered_local_statics_are_no_change(compile_c: Compile) -> None:
    """gcc numbers function-local statics per unit (`count.1`): a new one renumbers the rest."""
    f = "int f(void) { static int count; return ++count; }\n"
    g = "int g(void) { static int count; return count += 2; }\n"
    old = objdiff.read(compile_c("old", f + g))
    new = objdiff.read(compile_c("new", "int e(void) { static int count; return count--; }\n" + f + g))
    assert {n for n in new.variables() if n.startswith("count.")} != {n for n in old.variables()
                                                                       if n.startswith("count.")}
    cmp = objdiff.compare(old, new)
    assert cmp.changed == () and cmp.added == ("e",)


def test_a_changed_initial_value_is_changed_data(compile_c: Compile) -> None:
    src = "int limit = %d;\nint get(void) { return limit; }\n"
    cmp = compare(compile_c, src % 1, src % 2)
    assert cmp.changed_data == ("limit",) and cmp.changed == ()


def test_calls_addresses_and_the_ftrace_hook(compile_c: Compile) -> None:
    obj = objdiff.read(compile_c("u", "extern int ext(int);\nextern int var;\n"
                                      "int f(int x) { return ext(x) + var; }\n"
                                      "__attribute__((no_instrument_function)) int g(void) { return 1; }\n"))
    f, g = obj.functions()["f"], obj.functions()["g"]
    assert "ext" in f.callees and "var" in f.addressed and f.traced
    assert not g.traced


def test_clone_names() -> None:
    assert objdiff.base_name("show_val_kb.isra.0") == "show_val_kb"
    assert objdiff.is_clone("f.constprop.0") and not objdiff.is_clone("f.cold")
    assert objdiff.normalised("last_check.2") == "last_check.N"


def test_line_numbers_alone_are_set_aside(compile_c: Compile, tmp_path: Path) -> None:
    """A comment that moves a function whose code records __LINE__ changes its compiled code;
    compiled with the original's line numbers (compare.renumbered), it is the same."""
    from kpgen.diff import compare

    old = "extern void report(int line);\nvoid f(void) { report(__LINE__); }\n"
    new = "extern void report(int line);\n/* a comment */\n\nvoid f(void) { report(__LINE__); }\n"
    moved = objdiff.compare(objdiff.read(compile_c("old", old)), objdiff.read(compile_c("new", new)))
    assert moved.changed == ("f",)
    same = compare.renumbered(old, new, str(tmp_path / "same.c"))
    assert objdiff.compare(objdiff.read(compile_c("old", old)), objdiff.read(compile_c("same", same))).changed == ()
    changed = compare.renumbered(old, new.replace("report(__LINE__)", "report(__LINE__ + 1)"), "changed.c")
    assert objdiff.compare(objdiff.read(compile_c("old", old)),
                           objdiff.read(compile_c("changed", changed))).changed == ("f",)
