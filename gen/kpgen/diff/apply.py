"""Apply a source diff to an overlay of the kernel's source: which files it changes, where
each hunk landed, and the headers whose change reaches files the diff does not name."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DiffRefused

DIFF_HEADER_RE = re.compile(r"^(?:--- \S.*\n\+\+\+ \S|\*\*\* \S.*\n--- \S)", re.M)


def looks_like_a_diff(text: str) -> bool:
    """Whether the text holds a file's diff header, unified or context, for a quick check
    before any work (patch itself reads the diff).

    >>> looks_like_a_diff("A mail\\n---\\n fs/x.c | 1 +\\n--- a/fs/x.c\\n+++ b/fs/x.c\\n"), looks_like_a_diff("---\\n")
    (True, False)
    """
    return DIFF_HEADER_RE.search(text) is not None


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
    """Links every entry of each directory on the way down to `directory` that the overlay
    does not hold yet."""
    parts = [Path(*directory.parts[:i]) for i in range(len(directory.parts) + 1)] if directory != Path(".") \
        else [Path(".")]
    for d in parts:
        src, dst = tree / d, overlay / d
        for entry in src.iterdir():
            target = dst / entry.name
            if not target.exists() and not target.is_symlink():
                target.symlink_to(entry)


# GNU patch's report of a hunk (--verbose: every hunk, applied as written or not)
HUNK_RE = re.compile(r"^Hunk #(?P<n>\d+) (?P<how>succeeded|FAILED|ignored) at (?P<at>\d+)"
                     r"(?: with fuzz (?P<fuzz>\d+))?(?: \(offset (?P<offset>-?\d+) lines?\))?")
FILE_RE = re.compile(r"^(?:checking|patching) file (?P<name>.+?)(?: \((?P<how>renamed|copied) from (?P<old>.+)\))?$")
NAMES_RE = re.compile(r"^\|(?:---|\+\+\+|\*\*\*) (?P<name>[^\t\n]+?)(?:\t.*)?$")
# the fuzz GNU patch allows by default: the dry run tries up to it, to say what a hunk needs
PATCH_MAX_FUZZ = 2


@dataclass(frozen=True)
class Hunk:
    """Where one hunk landed: its line in the file, how far from where the diff said, and how
    many context lines at each end were ignored (fuzz)."""

    number: int
    at: int
    offset: int = 0
    fuzz: int = 0

    def __str__(self) -> str:
        """
        >>> str(Hunk(2, 870, 3, 2)), str(Hunk(1, 57))
        ('hunk #2 at line 870 (offset +3 lines, fuzz 2)', 'hunk #1 at line 57')
        """
        notes = ([f"offset {self.offset:+d} line{'s' if abs(self.offset) != 1 else ''}"] if self.offset else []) \
            + ([f"fuzz {self.fuzz}"] if self.fuzz else [])
        return f"hunk #{self.number} at line {self.at}" + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class AppliedFile:
    """One file of the diff, as patch applied it."""

    path: str
    hunks: tuple[Hunk, ...]

    def line(self) -> str:
        """What `kpgen diff` prints for the file.

        >>> AppliedFile("kernel/exit.c", (Hunk(1, 805, 3), Hunk(2, 870, 2, 2))).line()
        'kernel/exit.c: hunk #1 at line 805 (offset +3 lines), hunk #2 at line 870 (offset +2 lines, fuzz 2)'
        """
        return f"{self.path}: " + ", ".join(map(str, self.hunks))


@dataclass
class _Report:
    """GNU patch's account of one run, file by file."""

    files: list[AppliedFile] = field(default_factory=list)
    failed: dict[str, list[Hunk]] = field(default_factory=dict)
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # (new, how, old)
    reversed: list[str] = field(default_factory=list)
    missing: list[list[str]] = field(default_factory=list)  # the names the headers give
    garbage: bool = False
    malformed: str = ""


def _report(output: str) -> _Report:
    """Returns patch's output read file by file."""
    r = _Report()
    current: str | None = None
    hunks: list[Hunk] = []
    missing = False  # reading the headers of a file patch cannot find

    def close() -> None:
        if current is not None:
            r.files.append(AppliedFile(current, tuple(hunks)))

    for line in output.splitlines():
        m = FILE_RE.match(line)
        if m:
            close()
            current, hunks, missing = m.group("name").strip("'\""), [], False
            if m.group("how"):
                r.renamed.append((current, m.group("how"), m.group("old").strip("'\"")))
            continue
        m = HUNK_RE.match(line)
        if m:
            hunk = Hunk(int(m.group("n")), int(m.group("at")), int(m.group("offset") or 0), int(m.group("fuzz") or 0))
            if m.group("how") == "succeeded":
                hunks.append(hunk)
            elif m.group("how") == "FAILED" and current is not None:
                r.failed.setdefault(current, []).append(hunk)
            continue
        m = NAMES_RE.match(line)
        if m and missing:
            r.missing[-1].append(m.group("name").strip())
        elif line.startswith("can't find file to patch"):
            close()
            current, missing = None, True
            r.missing.append([])
        elif line.startswith("No file to patch"):
            missing = False
        elif line.startswith("Reversed (or previously applied) patch detected") and current is not None:
            r.reversed.append(current)
        elif "Only garbage was found in the patch input" in line:
            r.garbage = True
        elif "malformed patch" in line or "binary diffs are not supported" in line:
            r.malformed = line.replace("patch: **** ", "").strip()
    close()
    return r


def _run_patch(text: bytes, directory: Path, strip: int, fuzz: int, dry: bool) -> str:
    """Returns what GNU patch says as it applies the diff in `directory` (or only tries to)."""
    argv = ["patch", f"-p{strip}", f"--fuzz={fuzz}", "--batch", "--forward", "--verbose", "--no-backup-if-mismatch",
            "-r", "-", "-d", str(directory), *(["--dry-run"] if dry else [])]
    proc = subprocess.run(argv, input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, "LC_ALL": "C"}, check=False)
    return proc.stdout.decode(errors="replace")


def _strip_hint(tree: Path, names: list[str], strip: int) -> str:
    """What to do about a file the diff names that the tree lacks at -p `strip`: the -p that
    finds it, if one does."""
    for name in names:
        parts = Path(name).parts
        for n in range(len(parts)):
            if n != strip and (tree / Path(*parts[n:])).is_file():
                return f"pass -p {n}: with it, the diff names {Path(*parts[n:])}, which the source has"
    return "give a diff of this kernel's source (made in its tree, or with the -p that strips the rest)"


def apply(patch: Path, text: bytes, tree: Path, overlay: Path, strip: int = 1, fuzz: int = 0) -> list[AppliedFile]:
    """Returns the files the diff changes, each with where its hunks landed, once applied to an
    overlay of `tree` exactly as `patch -p STRIP` applies it; refuses a diff that does not
    apply, one that needs more fuzz than `fuzz`, and one that creates, removes or renames a
    file."""
    where = str(patch)
    dry = _report(_run_patch(text, tree, strip, max(fuzz, PATCH_MAX_FUZZ), dry=True))
    if dry.garbage or (not dry.files and not dry.missing and not dry.malformed):
        raise DiffRefused(where, "it is not a diff: patch finds no file in it",
                          "give a unified or context diff (git diff, git format-patch, diff -u)")
    if dry.malformed:
        raise DiffRefused(where, f"patch cannot read it: {dry.malformed}", "give the diff as the tool wrote it")
    for names in dry.missing:
        written = names[-1] if names else "a file"
        parts = Path(written).parts
        stripped = str(Path(*parts[strip:])) if len(parts) > strip else "nothing"
        raise DiffRefused(f"{where}: {written}", f"at -p {strip} the diff names {stripped}, which the kernel source "
                          "does not have", _strip_hint(tree, names, strip))
    for new, how, old in dry.renamed:
        raise DiffRefused(f"{where}: {new}", f"the diff {'renames' if how == 'renamed' else 'copies'} {old} to it, "
                          "and a live patch changes existing C files only", "put new code in the files it serves")
    for name in dry.reversed:
        raise DiffRefused(f"{where}: {name}", "the diff is already applied to the kernel source, or reversed",
                          "give the diff from the kernel's source to the fix")
    for name, hunks in dry.failed.items():
        listed = ", ".join(f"#{h.number} (at line {h.at})" for h in hunks)
        verb = "hunks {} do not" if len(hunks) > 1 else "hunk {} does not"
        raise DiffRefused(f"{where}: {name}", verb.format(listed) + " apply to the kernel source",
                          "give a diff of this kernel's source")
    for f in dry.files:
        if not (tree / f.path).is_file():
            raise DiffRefused(f"{where}: {f.path}", "the diff creates it, and a live patch changes existing C files "
                              "only", "put new code in the files it serves")
    refuse_other_files([f.path for f in dry.files])
    fuzzy = [(f, h) for f in dry.files for h in f.hunks if h.fuzz > fuzz]
    if fuzzy:
        most = max(h.fuzz for _, h in fuzzy)
        one = len(fuzzy) == 1
        listed = "; ".join(f"{f.path} {h}" for f, h in fuzzy)
        raise DiffRefused(where, f"{listed} appl{'ies' if one else 'y'} only with fuzz: {'its' if one else 'their'} "
                          "context lines differ from this kernel's source, so the diff was written against other "
                          "code, and a live patch made from it may not do what the fix meant",
                          f"check {'the hunk' if one else 'each such hunk'} against the source, then pass "
                          f"--fuzz {most} to accept {'it' if one else 'them'}")
    make_overlay(tree, overlay, [f.path for f in dry.files])
    done = _report(_run_patch(text, overlay, strip, fuzz, dry=False))
    for f in dry.files:
        if not (overlay / f.path).is_file():
            raise DiffRefused(f"{where}: {f.path}", "the diff removes it, and a live patch changes existing C files "
                              "only", "leave the file in place")
    if [f.path for f in done.files] != [f.path for f in dry.files] or done.failed:
        raise DiffRefused(where, "patch applied it differently to a copy of the source than in its dry run",
                          "report this to kpgen's developers with the diff")
    return done.files


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
