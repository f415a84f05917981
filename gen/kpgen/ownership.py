"""What kpgen wrote, so that it never replaces anything else without --force.

Each directory kpgen writes files into gets a manifest, `.kpgen.sha256`, in `sha256sum`'s format
(`sha256sum -c .kpgen.sha256` verifies it): the SHA-256 of each file as kpgen wrote it. Before
replacing a file with other content, kpgen asks whether the file is its own and unedited:
- listed in the manifest with the hash it has now: yes;
- listed with another hash: it was edited since, and is not replaced;
- not listed: a file kpgen did not write, not replaced; unless the directory has no manifest
  and its Kbuild file carries kpgen's marker, a tree kpgen wrote before it kept manifests.
Files that kpgen would not change are never touched, whoever wrote them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import UsageError
from .model import MARKER

MANIFEST = ".kpgen.sha256"


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read(directory: Path) -> dict[str, str] | None:
    """A directory's manifest: file name -> SHA-256; None when it has none."""
    path = Path(directory) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        sha, sep, name = line.partition("  ")
        if sep and len(sha) == 64:
            found[name] = sha
    return found


def _legacy(directory: Path) -> bool:
    """A directory kpgen wrote before it kept manifests: its Kbuild carries kpgen's marker."""
    kbuild = Path(directory) / "Kbuild"
    try:
        return MARKER in kbuild.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False


def refusals(files: Mapping[Path, bytes]) -> list[str]:
    """The files among `files` (path -> new content) that kpgen may not replace, with why."""
    problems: list[str] = []
    manifests: dict[Path, dict[str, str] | None] = {}
    for path, content in files.items():
        if not path.exists():
            continue
        if path.is_dir() or not path.is_file():
            problems.append(f"{path} is not a regular file")
            continue
        current = path.read_bytes()
        if current == content:
            continue
        directory = path.parent
        if directory not in manifests:
            manifests[directory] = read(directory)
        manifest = manifests[directory]
        if manifest is None:
            if not _legacy(directory):
                problems.append(f"{path} was not written by kpgen")
        elif path.name not in manifest:
            problems.append(f"{path} was not written by kpgen")
        elif manifest[path.name] != digest(current):
            problems.append(f"{path} was edited since kpgen wrote it")
    return problems


def refuse(files: Mapping[Path, bytes], force: bool) -> None:
    """Raise UsageError naming the first file kpgen may not replace, unless `force`."""
    if force:
        return
    problems = refusals(files)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{problems[0]}{more}: kpgen does not replace it; move it away, choose another "
                         "output directory, or pass --force to replace it")


def refuse_existing(paths: list[Path], force: bool) -> None:
    """Before a long step: refuse files kpgen will write over, whatever their new content, that
    are not its own unedited ones (refuse() then decides again once the content is known)."""
    if force:
        return
    sentinel = b"\0kpgen: content not known yet\0"
    refuse(dict.fromkeys(paths, sentinel), force)


def record(files: Mapping[Path, bytes]) -> None:
    """Add the files, as written, to the manifests of their directories."""
    by_dir: dict[Path, dict[str, str]] = {}
    for path, content in files.items():
        by_dir.setdefault(path.parent, {})[path.name] = digest(content)
    for directory, entries in by_dir.items():
        manifest = read(directory) or {}
        manifest.update(entries)
        text = "".join(f"{sha}  {name}\n" for name, sha in sorted(manifest.items()))
        target = directory / MANIFEST
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{MANIFEST}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
