"""Diff cases: a source diff per kernel and what `kpgen diff` must make of it.

A case is a directory (the repository keeps its corpus in tests/diffs/):

    <case>/case.toml      category; `strip` and `fuzz` when the diff needs `kpgen diff -p N`
                          or `--fuzz N`; per kernel name of the matrix, `targets` or `refused`
                          (the exact refusal; {patch}, {release} and {common_headers} stand
                          for the diff's path, the kernel's release and its common headers);
                          `backends` (default ["kpatch"]): the backends its module is built for
    <case>/<kernel>.patch the diff against that kernel's source
    <case>/loaded         (cases that build) exit 0 only while the patched behaviour is visible
    <case>/cleanup        (optional) undoes what `loaded` set up, after the scenario

The boot tree gets one directory per case that builds, diffs/<case>/, with the module and
the `loaded` check, and diffs-livepatch/<case>/ for the livepatch backend's module; the guest's
`diffs` topic runs one scenario per directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import diff, kernel as kmod, source
from . import kpatchsuite


@dataclass(frozen=True)
class Expect:
    targets: tuple[str, ...] = ()
    refused: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    category: str
    kernels: dict[str, Expect]
    backends: tuple[str, ...] = ("kpatch",)
    strip: int = 1  # kpgen diff -p
    fuzz: int = 0  # kpgen diff --fuzz

    def patch(self, kname: str) -> Path:
        return self.path / f"{kname}.patch"

    @property
    def loaded(self) -> Path:
        return self.path / "loaded"


def matrix_name(k: kmod.Kernel) -> str | None:
    """The kernel's name in the matrix (cases are keyed by it), e.g. "6.1"."""
    return next((m.name for m in kmod.matrix() if m.matches(k.release)), None)


def load(root: Path) -> list[Case]:
    cases = []
    for d in sorted(p for p in Path(root).iterdir() if (p / "case.toml").is_file()):
        data = tomllib.loads((d / "case.toml").read_text())
        kernels = {k: Expect(tuple(v.get("targets", ())), v.get("refused", ""))
                   for k, v in data.get("kernel", {}).items()}
        cases.append(Case(d.name, d, data.get("category", ""), kernels, tuple(data.get("backends", ("kpatch",))),
                          data.get("strip", 1), data.get("fuzz", 0)))
    return cases


@dataclass
class Built:
    case: Case
    ko: Path
    seconds: float
    # what `kpgen diff` decided for the case, and where it wrote the spec and fix.c
    plan: diff.Plan | None = None
    work: Path | None = None
    # the same plan built for the livepatch backend, when the case asks for it
    livepatch_ko: Path | None = None


def build(k: kmod.Kernel, kname: str, cases: list[Case], root: Path, core: Path,
          jobs: int | None = None) -> list[Built]:
    """`kpgen diff --build` of every case that builds on this kernel, into root/diffs/<case>/,
    `jobs` cases at a time (default: one per CPU; 1 for per-case timings)."""
    src = source.find(k, fetch=True, progress=lambda line: print(line, flush=True))
    todo = [c for c in cases if (e := c.kernels.get(kname)) is not None and not e.refused]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda case: _build_case(k, kname, case, root, core, src), todo))


def _build_case(k: kmod.Kernel, kname: str, case: Case, root: Path, core: Path, src: source.Source) -> Built:
    """One case's `kpgen diff --build`: its own work and output directories, so that cases can
    build side by side."""
    start = time.monotonic()
    work, final = Path(root) / "diffs-work" / case.name, Path(root) / "diffs" / case.name
    for d in (work, final):
        if d.exists():
            shutil.rmtree(d)
    plan = diff.plan(k, case.patch(kname), src, case.name, case.strip, case.fuzz)
    diff.write(plan, work)
    ko = diff.build(k, work, plan, core)
    _install(case, ko, final)
    # the seconds of `kpgen diff --build` alone, without the livepatch variant
    built = Built(case, final / ko.name, time.monotonic() - start, plan, work)
    if "livepatch" in case.backends:
        # the same plan, an upstream livepatch module: no second `kpgen diff` of the source
        lp_work, lp_final = Path(root) / "diffs-work-livepatch" / case.name, Path(root) / LIVEPATCH_DIR / case.name
        for d in (lp_work, lp_final):
            if d.exists():
                shutil.rmtree(d)
        lp_plan = dataclasses.replace(plan)
        diff.set_backend(lp_plan, "livepatch")
        diff.write(lp_plan, lp_work)
        lp_ko = diff.build(k, lp_work, lp_plan)
        _install(case, lp_ko, lp_final)
        built.livepatch_ko = lp_final / lp_ko.name
    return built


# Where the boot tree keeps the cases' livepatch-backend modules (their names are the cases').
LIVEPATCH_DIR = "diffs-livepatch"


def _install(case: Case, ko: Path, final: Path) -> None:
    """The module and the case's checks, in the directory the guest runs the case from."""
    final.mkdir(parents=True)
    shutil.copy2(case.loaded, final / "loaded")
    if (case.path / "cleanup").is_file():
        shutil.copy2(case.path / "cleanup", final / "cleanup")
    shutil.copy2(ko, final / ko.name)


def bench_table(kname: str, release: str, built: list[Built]) -> str:
    """The figures of `kpgen diff --build` per case (source cached, core built), as markdown."""
    rows = ["| case | kernel | functions | seconds |", "| --- | --- | --- | ---: |"]
    for b in built:
        n = len(b.case.kernels[kname].targets)
        rows.append(f"| {b.case.name} | {release} | {n} | {b.seconds:.1f} |")
    return "\n".join(rows)


def corpus_kdirs(root: str) -> list[Path]:
    """The build directories of the installed kernels of the matrix that a corpus names."""
    names = {kname for case in load(Path(root)) for kname in case.kernels}
    return [m.kdir() for m in kmod.matrix() if m.name in names and m.kdir() is not None]


def main(argv: list[str]) -> int:
    """`python3 -m kpgen.harness.diffcases CORPUS OUT [KDIR]`: build every case, print the figures."""
    from .. import generate, pipeline, render

    corpus, out = Path(argv[0]), Path(argv[1])
    kdir = Path(argv[2]) if len(argv) > 2 else kmod.default_kdir()
    k = kmod.probe(kdir)
    kname = matrix_name(k)
    if kname is None:
        print(f"{k.release} is not a kernel of the matrix")
        return 2
    render.write(out, generate.core_files(k))
    pipeline.build(k, out / "core")
    built = build(k, kname, load(corpus), out, out / "core", jobs=1)
    print(bench_table(kname, k.release, built))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))


def timing(kname: str, diffs: list[Built], suite: list[kpatchsuite.Built]) -> list[str]:
    """The seconds `kpgen diff --build` took for each case of the corpus and of kpatch's suite
    (each backend of a suite case: the one plan, then its build), and their median, one line
    each, for the end of a test run."""
    rows = [(f"diffs/{b.case.name}", b.seconds) for b in diffs]
    rows += [(f"kpatch/{b.case.name} ({backend})", secs) for b in suite for backend, secs in b.seconds.items()]
    rows += [(f"kpatch/{b.case.name} (refused)", b.plan_seconds) for b in suite if b.plan is None and not b.case.waits]
    if not rows:
        return []
    median = statistics.median(s for _, s in rows)
    return [f"{kname}: kpgen diff --build, median {median:.1f} s over {len(rows)} cases "
            "(source cached, core built; cases built side by side)",
            *(f"  {name}: {secs:.1f} s" for name, secs in rows)]
