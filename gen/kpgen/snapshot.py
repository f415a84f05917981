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

from .spec import PatchSpec

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


_LOADED: dict[tuple[Path, int, int], Snapshot] = {}


def load(release: str, root: Path | None = None) -> Snapshot | None:
    """The cached snapshot of a release (read once per process while its files stay the same)."""
    d = (root or cache_root()) / release
    ks, fs = d / (KALLSYMS + ".gz"), d / (FILTERS + ".gz")
    if not (ks.is_file() and fs.is_file()):
        return None
    key = (d, ks.stat().st_mtime_ns, fs.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = parse(release, gzip.decompress(ks.read_bytes()).decode(),
                             gzip.decompress(fs.read_bytes()).decode())
    return _LOADED[key]


def validate(patch: PatchSpec, snap: Snapshot, unexported: Sequence[str] = ()) -> list[str]:
    """Raise SpecError for the first target or symbol the snapshot refutes (targets.validate).

    Returns notes on what could not be checked (objects absent from the snapshot).
    """
    from . import targets

    notes = [f"function[{i}]: module {func.object} was not loaded when the snapshot was taken: not checked"
             for i, func in enumerate(patch.functions) if func.object not in snap.objects]
    tables = {s.name: s for s in patch.symbols}
    notes += [f"symbol {name}: module {tables[name].object} was not loaded when the snapshot was taken: not checked"
              for name in unexported if name in tables and tables[name].object not in snap.objects]
    targets.validate(patch, targets.snapshot_facts(snap), snap.release, unexported)
    return notes
