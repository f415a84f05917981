"""The apply stage: a diff applied as `patch -p1` applies it, whatever tool wrote its headers,
to an overlay of a made-up source tree; where each hunk landed; fuzz refused unless allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpgen.diff import apply
from kpgen.errors import DiffRefused

A_C = "".join(f"int line{i};\n" for i in range(1, 21))
HUNK = """@@ -9,7 +9,7 @@
 int line9;
 int line10;
 int line11;
-int line12;
+int line12 = 12;
 int line13;
 int line14;
 int line15;
"""
# the same change, the way each tool writes the file's header
HEADERS = {
    "git": "diff --git a/fs/x/a.c b/fs/x/a.c\nindex 90a77cd..f65df90 100644\n--- a/fs/x/a.c\n+++ b/fs/x/a.c\n",
    "kpatch": ("diff -Nupr src.orig/fs/x/a.c src/fs/x/a.c\n--- src.orig/fs/x/a.c\t2023-01-12 11:20:07.184710563 -0500\n"
               "+++ src/fs/x/a.c\t2023-01-12 11:21:02.411038005 -0500\n"),
    "diff -urN": ("diff -urN linux.orig/fs/x/a.c linux/fs/x/a.c\n--- linux.orig/fs/x/a.c\t2024-05-01 10:00:00\n"
                  "+++ linux/fs/x/a.c\t2024-05-01 10:01:00\n"),
}
FORMAT_PATCH = """From 2d6b7bce089e52563bd9c67df62f48e90b48047d Mon Sep 17 00:00:00 2001
From: A Developer <dev@example.org>
Subject: [PATCH] x: give line12 a value

A commit message, with a line that looks like a header:
--- not a file
---
 fs/x/a.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

""" + HEADERS["git"] + HUNK + "-- \n2.39.5\n"


def tree(tmp: Path) -> Path:
    root = tmp / "src"
    (root / "fs/x").mkdir(parents=True)
    (root / "fs/x/a.c").write_text(A_C)
    (root / "fs/x/b.c").write_text('#include "local.h"\n')
    (root / "fs/x/local.h").write_text("#define X 1\n")
    return root


def refusal(root: Path, text: str, **kwargs: int) -> DiffRefused:
    with pytest.raises(DiffRefused) as info:
        apply.apply(Path("fix.patch"), text.encode(), root, root.parent / "ov", **kwargs)
    return info.value


@pytest.mark.parametrize("text", [*(h + HUNK for h in HEADERS.values()), FORMAT_PATCH],
                         ids=[*HEADERS, "format-patch"])
def test_every_header_form_applies_to_an_overlay(tmp_path: Path, text: str) -> None:
    root = tree(tmp_path)
    done = apply.apply(Path("fix.patch"), text.encode(), root, tmp_path / "ov")
    assert [f.line() for f in done] == ["fs/x/a.c: hunk #1 at line 9"]
    assert "int line12 = 12;" in (tmp_path / "ov/fs/x/a.c").read_text()
    assert (root / "fs/x/a.c").read_text() == A_C, "the source itself stays untouched"
    assert (tmp_path / "ov/fs/x/b.c").is_symlink()


def test_strip_and_a_context_diff(tmp_path: Path) -> None:
    root = tree(tmp_path)
    p0 = "--- fs/x/a.c\n+++ fs/x/a.c\n" + HUNK
    assert apply.apply(Path("p0"), p0.encode(), root, tmp_path / "ov0", strip=0)[0].path == "fs/x/a.c"
    p2 = "--- w/linux/fs/x/a.c\n+++ w/linux/fs/x/a.c\n" + HUNK
    assert apply.apply(Path("p2"), p2.encode(), root, tmp_path / "ov2", strip=2)[0].path == "fs/x/a.c"
    context = ("*** a/fs/x/a.c\n--- b/fs/x/a.c\n***************\n*** 11,13 ****\n  int line11;\n! int line12;\n"
               "  int line13;\n--- 11,13 ----\n  int line11;\n! int line12 = 12;\n  int line13;\n")
    assert apply.apply(Path("c"), context.encode(), root, tmp_path / "ovc")[0].path == "fs/x/a.c"


def test_the_wrong_strip_is_refused_with_the_right_one(tmp_path: Path) -> None:
    err = refusal(tree(tmp_path), "--- fs/x/a.c\n+++ fs/x/a.c\n" + HUNK)
    assert (err.where, err.problem, err.instead) == (
        "fix.patch: fs/x/a.c", "at -p 1 the diff names x/a.c, which the kernel source does not have",
        "pass -p 0: with it, the diff names fs/x/a.c, which the source has")


def test_offsets_are_reported(tmp_path: Path) -> None:
    root = tree(tmp_path)
    moved = HEADERS["git"] + HUNK.replace("@@ -9,7 +9,7 @@", "@@ -6,7 +6,7 @@")
    assert [f.line() for f in apply.apply(Path("f"), moved.encode(), root, tmp_path / "ov")] == [
        "fs/x/a.c: hunk #1 at line 9 (offset +3 lines)"]


def test_fuzz_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    fuzzy = HEADERS["git"] + HUNK.replace(" int line9;", " int line9_other;")
    err = refusal(root, fuzzy)
    assert err.where == "fix.patch"
    assert err.problem.startswith("fs/x/a.c hunk #1 at line 9 (fuzz 1) applies only with fuzz: its context lines ")
    assert err.instead == "check the hunk against the source, then pass --fuzz 1 to accept it"
    assert not (tmp_path / "ov").exists(), "nothing is written before the refusal"
    done = apply.apply(Path("f"), fuzzy.encode(), root, tmp_path / "ov", fuzz=1)
    assert done[0].line() == "fs/x/a.c: hunk #1 at line 9 (fuzz 1)"


def test_a_hunk_that_does_not_apply_is_named(tmp_path: Path) -> None:
    err = refusal(tree(tmp_path), HEADERS["git"] + HUNK.replace("int line12;", "int line99;"))
    assert str(err) == ("fix.patch: fs/x/a.c: hunk #1 (at line 9) does not apply to the kernel source; "
                        "give a diff of this kernel's source")


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("--- /dev/null\n+++ b/fs/x/new.c\n@@ -0,0 +1 @@\n+int x;\n", "fix.patch: fs/x/new.c",
     "the diff creates it, and a live patch changes existing C files only"),
    ("--- a/fs/x/b.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-#include \"local.h\"\n", "fix.patch: fs/x/b.c",
     "the diff removes it, and a live patch changes existing C files only"),
    ("diff --git a/fs/x/b.c b/fs/x/c.c\nsimilarity index 100%\nrename from fs/x/b.c\nrename to fs/x/c.c\n",
     "fix.patch: fs/x/c.c", "the diff renames fs/x/b.c to it, and a live patch changes existing C files only"),
    ("just some text\n", "fix.patch", "it is not a diff: patch finds no file in it"),
    ("--- a/fs/x/Makefile\n+++ b/fs/x/Makefile\n@@ -1 +1 @@\n-a\n+b\n", "fix.patch: b/fs/x/Makefile",
     "at -p 1 the diff names fs/x/Makefile, which the kernel source does not have"),
], ids=["creates", "removes", "renames", "garbage", "no-such-file"])
def test_what_a_live_patch_cannot_change_is_refused(tmp_path: Path, text: str, where: str, problem: str) -> None:
    err = refusal(tree(tmp_path), text)
    assert (err.where, err.problem) == (where, problem)


def test_an_applied_diff_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "fs/x/a.c").write_text(A_C.replace("int line12;", "int line12 = 12;"))
    err = refusal(root, HEADERS["git"] + HUNK)
    assert err.problem == "the diff is already applied to the kernel source, or reversed"


def test_a_build_file_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "fs/x/Makefile").write_text("a\n")
    err = refusal(root, "--- a/fs/x/Makefile\n+++ b/fs/x/Makefile\n@@ -1 +1 @@\n-a\n+b\n")
    assert str(err) == ("fs/x/Makefile: a live patch can change C code only, not the build or the configuration; "
                        "leave this file out of the diff")


def test_header_reach(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert apply.header_reach(root, "fs/x/local.h", {"fs/x/a.c"}) == ["fs/x/b.c"]
    assert apply.header_reach(root, "fs/x/local.h", {"fs/x/b.c"}) == []
