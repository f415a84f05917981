"""Apply a source diff to an overlay of the kernel's source: which files it changes, where
each hunk landed, and the headers whose change reaches files the diff does not name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import DiffRefused

PATCH_FILE_RE = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.M)
OLD_FILE_RE = re.compile(r"^--- (?:a/)?(\S+)", re.M)


def patch_files(text: str) -> list[str]:
    """Returns the files a unified diff changes (paths in the tree, -p1); refuses a diff that
    creates or removes a file.

    >>> patch_files("--- a/fs/proc/meminfo.c\\n+++ b/fs/proc/meminfo.c\\n@@ -1 +1 @@\\n")
    ['fs/proc/meminfo.c']
    """
    news = PATCH_FILE_RE.findall(text)
    olds = OLD_FILE_RE.findall(text)
    files: list[str] = []
    for old, new in zip(olds, news, strict=False):
        if new == "/dev/null" or old == "/dev/null":
            what = f"removes {old}" if new == "/dev/null" else f"creates {new}"
            raise DiffRefused("the diff", f"it {what}, and a live patch changes existing C files only",
                              "put new code in the files it serves")
        if new not in files:
            files.append(new)
    return files


def module_name(patch: Path) -> str:
    """The patch module's default name, from the diff's file name.

    >>> module_name(Path("0001-Fix-the-meminfo.patch"))
    'lp_0001_fix_the_meminfo'
    """
    stem = re.sub(r"[^a-z0-9_]+", "_", patch.stem.lower()).strip("_") or "fix"
    if not stem[0].isalpha():
        stem = "lp_" + stem
    return stem[:55]


def refuse_other_files(files: list[str]) -> None:
    """Refuses a diff that names a file outside the tree or one that is not C."""
    for f in files:
        if ".." in Path(f).parts or f.startswith("/"):
            raise DiffRefused("the diff", f"it names {f}, outside the kernel tree", "give a diff made in the tree")
        if not f.endswith((".c", ".h")):
            raise DiffRefused(f, "a live patch can change C code only, not the build or the configuration",
                              "leave this file out of the diff")


def make_overlay(tree: Path, overlay: Path, changed: list[str]) -> None:
    """A tree of symbolic links into `tree`, with real directories down to each changed file,
    which is a real copy: patching the overlay leaves the cached source untouched."""
    overlay.mkdir(parents=True, exist_ok=True)
    for rel in sorted(set(changed)):
        parts = Path(rel).parts
        cur_dst = overlay
        for part in parts[:-1]:
            cur_dst = cur_dst / part
            if cur_dst.is_symlink():
                cur_dst.unlink()
            if not cur_dst.exists():
                cur_dst.mkdir()
        # link every sibling on the way down (once), then the file itself as a copy
        _fill(tree, overlay, Path(*parts[:-1]) if len(parts) > 1 else Path("."))
        dst = overlay / rel
        if dst.is_symlink():
            dst.unlink()
        if (tree / rel).is_file():
            dst.write_bytes((tree / rel).read_bytes())


def _fill(tree: Path, overlay: Path, directory: Path) -> None:
    parts = [Path(*directory.parts[:i]) for i in range(len(directory.parts) + 1)] if directory != Path(".") \
        else [Path(".")]
    for d in parts:
        src, dst = tree / d, overlay / d
        for entry in src.iterdir():
            target = dst / entry.name
            if not target.exists() and not target.is_symlink():
                target.symlink_to(entry)


def apply(patch_text: str, patch: Path, tree: Path, overlay: Path, files: list[str]) -> None:
    """Applies the diff to an overlay of `tree`; refuses a diff that does not apply."""
    for f in files:
        if not (tree / f).is_file():
            raise DiffRefused(str(patch), f"{f} is not in the kernel source: the diff does not apply",
                              "give a diff of this kernel's source")
    make_overlay(tree, overlay, files)
    argv = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-d", str(overlay)]
    dry = subprocess.run([*argv, "--dry-run"], input=patch_text, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=False)
    if dry.returncode != 0:
        first = next((line for line in dry.stdout.splitlines() if "FAILED" in line or "Reversed" in line
                      or "malformed" in line.lower() or "can't find" in line.lower()), dry.stdout.strip()[:200])
        raise DiffRefused(str(patch), f"it does not apply to the source of the kernel: {first.strip()}",
                          "give a diff of this kernel's source")
    subprocess.run(argv, input=patch_text, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)


def header_reach(tree: Path, header: str, named: set[str]) -> list[str]:
    """Returns the units outside the diff that include a changed header."""
    hdr = Path(header)
    if hdr.parts[0] == "include" or re.match(r"arch/[^/]+/include/", header):
        spelled = str(Path(*hdr.parts[1:])) if hdr.parts[0] == "include" else str(Path(*hdr.parts[3:]))
        pattern = f"#include <{spelled}>"
        search = [str(tree)]
    else:
        pattern = f"#include \"{hdr.name}\""
        search = [str(tree / hdr.parent)]
    proc = subprocess.run(["grep", "-rlF", "--include=*.c", pattern, *search], stdout=subprocess.PIPE, text=True,
                          check=False)
    users = sorted(str(Path(p).relative_to(tree)) for p in proc.stdout.split())
    return [u for u in users if u not in named]


def refuse_header_reach(tree: Path, files: list[str]) -> None:
    """Refuses a changed header that files the diff does not name include."""
    cfiles = {f for f in files if f.endswith(".c")}
    for h in (f for f in files if f.endswith(".h")):
        reach = header_reach(tree, h, cfiles)
        if reach:
            more = f" and {len(reach) - 3} more" if len(reach) > 3 else ""
            raise DiffRefused(h, f"{', '.join(reach[:3])}{more} also include it, and a live patch replaces "
                              "functions of the files the diff names only",
                              "change the header's users in the diff, or leave the header alone")
