"""kpatch's integration suite (dynup/kpatch's test/integration), read where it is kept: each
case of a kernel planned once by `kpgen diff` and built for both backends, into the boot
tree for the guest's `kpatch_*` scenarios.

The suite is a directory per kernel of the matrix (6.1/, 6.12/) holding kpatch's files as
they are: `NAME.patch` must become a live patch, `NAME-FAIL.patch` must be refused, and
`NAME-LOADED.test` fails before the patch is loaded, passes while it is, and fails after it
is removed. What kpgen's tests add lives in the repository (tests/kpatch_suite/): notes.toml
says what each case needs (`--fuzz` where the suite's README says so, the reason a -FAIL case
must be refused for) and, for a case without a LOADED test, a script that exercises the
patched code.

The tree gets kpatch-suite/<case>-<backend>/ with the module, the file `module` (its name),
`backend`, and `loaded` (the LOADED test) or `exercise`; kpatch-suite/bin/ holds a `sudo`
that runs its arguments, for LOADED tests written for a distribution's userland.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import diff, kernel as kmod, source
from ..errors import DiffRefused, KpgenError

BACKENDS = ("kpatch", "livepatch")
SUITE_DIR = "kpatch-integration"


def find(start: Path) -> Path | None:
    """The suite: $KPGEN_KPATCH_SUITE, else shared/kpatch-integration beside a directory that
    holds `start` (the checkout's ../shared)."""
    if os.environ.get("KPGEN_KPATCH_SUITE"):
        return Path(os.environ["KPGEN_KPATCH_SUITE"])
    for parent in Path(start).resolve().parents:
        if (parent / "shared" / SUITE_DIR).is_dir():
            return parent / "shared" / SUITE_DIR
    return None


@dataclass(frozen=True)
class Case:
    name: str  # as the suite names it: data-new, warn-detect-FAIL
    patch: Path
    loaded: Path | None  # NAME-LOADED.test
    fuzz: int  # kpgen diff --fuzz, where the suite's README says the case needs it
    refused: str  # for a -FAIL case: what kpgen's refusal must say
    exercise: Path | None  # the repository's script for a case without a LOADED test
    cleanup: Path | None
    waits: str = ""  # what kpgen lacks yet to build it on this kernel

    @property
    def builds(self) -> bool:
        return not self.name.endswith("-FAIL")

    def module(self, backend: str) -> str:
        """The patch module's name for a backend.

        >>> Case("warn-detect", Path("p"), None, 0, "", None, None).module("livepatch")
        'suite_warn_detect_lp'
        """
        return f"suite_{self.name.lower().replace('-', '_')}_{'kp' if backend == 'kpatch' else 'lp'}"


def load(suite: Path, notes: Path, kname: str) -> list[Case]:
    """The cases of one kernel (none when the suite has no directory for it), with the notes
    of tests/kpatch_suite."""
    folder = Path(suite) / kname
    if not folder.is_dir():
        return []
    data = tomllib.loads((notes / "notes.toml").read_text()).get("case", {})
    cases = []
    for patch in sorted(folder.glob("*.patch")):
        note = data.get(patch.stem, {})
        loaded = folder / f"{patch.stem}-LOADED.test"
        exercise, cleanup = notes / f"{patch.stem}.exercise", notes / f"{patch.stem}.cleanup"
        cases.append(Case(patch.stem, patch, loaded if loaded.is_file() else None,
                          int(note.get("fuzz", {}).get(kname, 0)), note.get("refused", ""),
                          exercise if exercise.is_file() else None, cleanup if cleanup.is_file() else None,
                          note.get("waits", {}).get(kname, "")))
    return cases


@dataclass
class Built:
    """One case as `kpgen diff` made it for a kernel: refused (with the message), or built for
    each backend (the modules), and the seconds kpgen diff took (plan, write, build, per backend)."""

    case: Case
    plan: diff.Plan | None = None
    refusal: str = ""
    kos: dict[str, Path] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # backend -> why its build failed
    plan_seconds: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)  # kpgen diff --build, per backend


def build(k: kmod.Kernel, cases: list[Case], root: Path, core: Path, jobs: int | None = None) -> list[Built]:
    """Plans every case once and builds each that plans for both backends, into
    root/kpatch-suite/ (builds side by side, `jobs` at a time; default one per CPU)."""
    src = source.find(k, fetch=True, progress=lambda line: print(line, flush=True))
    out = Path(root) / "kpatch-suite"
    if out.exists():
        shutil.rmtree(out)
    (out / "bin").mkdir(parents=True)
    sudo = out / "bin" / "sudo"
    sudo.write_text("#!/bin/sh\n# The guest runs as root: sudo runs its arguments.\nexec \"$@\"\n")
    sudo.chmod(0o755)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        planned = list(pool.map(lambda case: _plan(k, case, src), cases))
        builds = [pool.submit(_build, k, b, backend, out, core) for b in planned if b.plan is not None
                  for backend in BACKENDS]
        for f in builds:
            f.result()
    return planned


def _plan(k: kmod.Kernel, case: Case, src: source.Source) -> Built:
    """The case's plan, or why there is none: its refusal, or what kpgen lacks yet (notes.toml's
    `waits`: the case is not tried, which saves the test run its minutes)."""
    start = time.monotonic()
    built = Built(case)
    if case.waits:
        built.refusal = f"not tried: waits for {case.waits}"
        return built
    try:
        built.plan = diff.plan(k, case.patch, src, case.module("kpatch"), fuzz=case.fuzz)
    except KpgenError as exc:
        built.refusal = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DiffRefused) else str(exc)
    built.plan_seconds = time.monotonic() - start
    return built


def _build(k: kmod.Kernel, built: Built, backend: str, out: Path, core: Path) -> None:
    """The case's `kpgen diff --build` for one backend, from the plan: its own work directory,
    then the module and its checks into kpatch-suite/<case>-<backend>/."""
    assert built.plan is not None
    start = time.monotonic()
    case = built.case
    name = case.module(backend)
    plan = dataclasses.replace(built.plan, name=name, targets=list(built.plan.targets),
                               symbols=list(built.plan.symbols), decisions=list(built.plan.decisions))
    assert plan.spec is not None
    plan.spec = dataclasses.replace(plan.spec, name=name)
    work = out / "work" / f"{case.name}-{backend}"
    try:
        diff.set_backend(plan, backend)
        diff.write(plan, work)
        ko = diff.build(k, work, plan, core if backend == "kpatch" else None)
    except KpgenError as exc:
        built.failures[backend] = str(exc)
        return
    final = out / f"{case.name}-{backend}"
    final.mkdir(parents=True)
    shutil.copy2(ko, final / ko.name)
    (final / "module").write_text(name + "\n")
    (final / "backend").write_text(backend + "\n")
    for what, path in (("loaded", case.loaded), ("exercise", case.exercise), ("cleanup", case.cleanup)):
        if path is not None:
            shutil.copy2(path, final / what)
            (final / what).chmod(0o755)
    built.kos[backend] = final / ko.name
    built.seconds[backend] = built.plan_seconds + time.monotonic() - start


def table(kname: str, built: list[Built]) -> str:
    """What kpgen made of each case, and the seconds kpgen diff took, as markdown."""
    rows = [f"| case | {kname}: kpatch | livepatch | seconds (plan + build) |", "| --- | --- | --- | ---: |"]
    for b in built:
        if b.case.waits:
            rows.append(f"| {b.case.name} | waits ({b.case.waits}) | waits | |")
            continue
        if b.plan is None:
            rows.append(f"| {b.case.name} | refused | refused | {b.plan_seconds:.1f} |")
            continue
        cells = ["built" if backend in b.kos else "not built" for backend in BACKENDS]
        secs = " / ".join(f"{b.seconds[x]:.1f}" for x in BACKENDS if x in b.seconds)
        rows.append(f"| {b.case.name} | {cells[0]} | {cells[1]} | {secs} |")
    return "\n".join(rows)
