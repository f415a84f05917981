"""Symbol snapshots of a booted kernel, cached per release, for validating specs before any boot.

A snapshot is what one guest boot saw in /proc/kallsyms (names, types, modules; no
addresses) and in tracefs available_filter_functions. `kpgen snapshot` takes one; the
boot tests take one too. `kpgen patch` and `kpgen generate` check every target and every
unexported symbol against the snapshot of the kernel they generate for, when there is one.
"""

from __future__ import annotations

import gzip
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .spec import PatchSpec, SpecError

# The guest writes these two files; the host compresses them into the cache.
KALLSYMS = "kallsyms.txt"
FILTERS = "available_filter_functions.txt"


def cache_root() -> Path:
    if "KPGEN_CACHE" in os.environ:
        return Path(os.environ["KPGEN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kpgen"


@dataclass
class Snapshot:
    release: str
    # (object, name) -> symbols in kallsyms order: (type, name of the symbol before it)
    symbols: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    traceable: Counter = field(default_factory=Counter)  # (object, name) -> count
    objects: set[str] = field(default_factory=lambda: {"vmlinux"})

    def functions(self, obj: str, name: str) -> list[str]:
        """For each text symbol `name` in `obj`, in kallsyms order: the symbol before it."""
        return [prev for typ, prev in self.symbols.get((obj, name), []) if typ in "tT"]


def parse(release: str, kallsyms: str, filters: str) -> Snapshot:
    snap = Snapshot(release)
    prev = ""
    for line in kallsyms.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        # "ADDR TYPE NAME [MOD]" from /proc/kallsyms, or "TYPE NAME [MOD]" as cached
        if len(parts) >= 3 and len(parts[1]) == 1:
            parts = parts[1:]
        typ, name = parts[0], parts[1]
        obj = parts[2].strip("[]") if len(parts) > 2 else "vmlinux"
        snap.objects.add(obj)
        snap.symbols[(obj, name)].append((typ, prev))
        prev = name
    for line in filters.splitlines():
        parts = line.split()
        if parts:
            obj = parts[1].strip("[]") if len(parts) > 1 and parts[1].startswith("[") else "vmlinux"
            snap.traceable[(obj, parts[0])] += 1
    return snap


def save(release: str, kallsyms: str, filters: str, root: Path | None = None) -> Path:
    """Cache a snapshot (without addresses) for `release`; return its directory."""
    d = (root or cache_root()) / release
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for line in kallsyms.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rows.append(" ".join(parts if len(parts[0]) == 1 else parts[1:]))
    (d / (KALLSYMS + ".gz")).write_bytes(gzip.compress("\n".join(rows).encode(), mtime=0))
    (d / (FILTERS + ".gz")).write_bytes(gzip.compress(filters.encode(), mtime=0))
    return d


def load(release: str, root: Path | None = None) -> Snapshot | None:
    d = (root or cache_root()) / release
    ks, fs = d / (KALLSYMS + ".gz"), d / (FILTERS + ".gz")
    if not (ks.is_file() and fs.is_file()):
        return None
    return parse(release, gzip.decompress(ks.read_bytes()).decode(), gzip.decompress(fs.read_bytes()).decode())


def _candidates(prevs: list[str]) -> str:
    return "; ".join(f"{i} (after {p or 'the start'})" for i, p in enumerate(prevs, 1))


def from_entries(release: str, entries: Sequence[tuple[str, str]]) -> Snapshot:
    """A snapshot of vmlinux alone from its kallsyms (type, name) in order, as read out of the
    kernel's image (ksyms.py): it knows no module and nothing of ftrace."""
    return parse(release, "\n".join(f"{typ} {name}" for typ, name in entries), "")


def validate(patch: PatchSpec, snap: Snapshot, unexported: Sequence[str] = ()) -> list[str]:
    """Raise SpecError for the first target or symbol the snapshot refutes.

    Returns notes on what could not be checked (objects absent from the snapshot).
    """
    return validate_targets(patch, snap) + validate_symbols(patch, snap, unexported)


def validate_targets(patch: PatchSpec, snap: Snapshot) -> list[str]:
    """Each target exists in its object as a function, unique or at its sympos, and ftrace can
    hook it: SpecError for the first one that does not; notes on what could not be checked."""
    notes: list[str] = []
    where = f"kernel {snap.release}"
    for i, func in enumerate(patch.functions):
        key = f"function[{i}]"
        if func.object not in snap.objects:
            notes.append(f"{key}: module {func.object} was not loaded when the snapshot was taken: not checked")
            continue
        prevs = snap.functions(func.object, func.target)
        if not prevs:
            what = "is not a function" if (func.object, func.target) in snap.symbols else "does not exist"
            raise SpecError(patch.path, f"{key}.target", f"{func.target!r} {what} in {func.object} of {where}",
                            "check the name and the object against /proc/kallsyms")
        if func.sympos == 0 and len(prevs) > 1:
            raise SpecError(patch.path, f"{key}.sympos",
                            f"{func.target!r} appears {len(prevs)} times in {func.object} of {where}; "
                            f"candidates by position: {_candidates(prevs)}",
                            "set sympos to the position of the one to replace")
        if func.sympos > len(prevs):
            raise SpecError(patch.path, f"{key}.sympos",
                            f"{func.target!r} appears only {len(prevs)} time(s) in {func.object} of {where}",
                            f"set sympos to 1..{len(prevs)}")
        if not snap.traceable[(func.object, func.target)]:
            raise SpecError(patch.path, f"{key}.target",
                            f"ftrace cannot hook {func.target!r} in {where} (notrace, inlined or __init code)",
                            "patch a caller of it instead")
    return notes


def validate_symbols(patch: PatchSpec, snap: Snapshot, unexported: Sequence[str] = ()) -> list[str]:
    """Each unexported symbol the sources use (a klp symbol) exists in its object, unique or at
    its sympos: SpecError for the first one that does not; notes on what could not be checked."""
    notes: list[str] = []
    where = f"kernel {snap.release}"
    tables = {s.name: s for s in patch.symbols}
    for name in unexported:
        obj = tables[name].object if name in tables else "vmlinux"
        if obj not in snap.objects:
            notes.append(f"symbol {name}: module {obj} was not loaded when the snapshot was taken: not checked")
            continue
        lookup = tables[name].lookup if name in tables else name
        entries = snap.symbols.get((obj, lookup), [])
        if not entries:
            elsewhere = sorted(o for o, n in snap.symbols if n == name and o != obj)
            fix = (f'add [[symbol]] with name = "{name}" and object = "{elsewhere[0]}"' if elsewhere
                   else "fix the name or declare it in your own code")
            raise SpecError(patch.path, "sources", f"the sources use {name!r}, which is neither exported nor "
                            f"in {obj} of {where}", fix)
        sympos = tables[name].sympos if name in tables else 0
        if len(entries) > 1 and not sympos:
            raise SpecError(patch.path, "symbol", f"the sources use {name!r}, which appears {len(entries)} times "
                            f"in {obj} of {where}; candidates by position: "
                            f"{_candidates([p for _, p in entries])}",
                            f'add [[symbol]] with name = "{name}" and sympos = N')
        if sympos > len(entries):
            i = next(i for i, s in enumerate(patch.symbols) if s.name == name)
            raise SpecError(patch.path, f"symbol[{i}].sympos",
                            f"{lookup!r} appears only {len(entries)} time(s) in {obj} of {where}",
                            f"set sympos to 1..{len(entries)}")
    return notes
