"""Boot tests: build everything for one kernel, boot it once, run every guest scenario.

Used by the pytest boot tests, `kpgen boot-test` and `kpgen demo`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import elfcheck, generate, kbuild, kernel as kmod, pipeline, render, snapshot, spec, splat, vm
from ..errors import KpgenError
from ..model import CoreModel
from ..resources import GUEST, TEST_MODULES, TEST_PATCHES, build_root
from . import delivery, diffcases, kpatchsuite

GUEST_RUNNER = GUEST / "run.sh"
# The make variables of the core's test build (fault injection).
FAULTS_BUILD = ("KPATCH_FAULTS=y",)
BUILD_ROOT = build_root()
# What CI keeps: TAP per kernel, JUnit XML (pytest --junitxml), and the guest's log on failure.
REPORTS = BUILD_ROOT / "reports"
# The test module that foreign_module_refused loads, built for another kernel of the matrix.
FOREIGN_MODULE = "kpgen_test_target"

TAP_RE = re.compile(r"^(ok|not ok) (\d+) - (\S+)(?: # (SKIP|TODO)\b ?(.*))?")


def scenario_names(tree: Path | None = None) -> list[str]:
    """The scenarios the guest suite runs on a build tree, in order, as its runner lists them
    (`run.sh --list TREE`). Without a tree (or before it is built), the scenarios that do not
    depend on what the tree holds."""
    where = Path(tree) if tree is not None else BUILD_ROOT / "no-tree"
    proc = subprocess.run(["bash", str(GUEST_RUNNER), "--list", str(where)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise KpgenError(f"{GUEST_RUNNER} --list {where} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.split()


def test_specs() -> list[Path]:
    return sorted(TEST_PATCHES.glob("*/*.toml"))


@dataclass
class BuiltTree:
    kernel: kmod.Kernel
    root: Path
    builds: list[kbuild.BuildResult] = field(default_factory=list)
    verdicts: list[elfcheck.Verdict] = field(default_factory=list)
    diffs: list[diffcases.Built] = field(default_factory=list)
    suite: list[kpatchsuite.Built] = field(default_factory=list)


def build_tree(kernel: kmod.Kernel, root: Path | None = None, diffs: Path | None = None,
               suite: tuple[Path, Path] | None = None) -> BuiltTree:
    """Generate the core, the samples and the test patches for `kernel` and build them all.

    With `diffs` (a corpus of diff cases, see diffcases.py), every case that builds on this
    kernel goes through `kpgen diff --build` into diffs/<case>/ for the guest's diffs topic.
    With `suite` (kpatch's integration suite and the repository's notes on it, see
    kpatchsuite.py), its cases for this kernel go into kpatch-suite/<case>-<backend>/."""
    root = Path(root or BUILD_ROOT / kernel.release)
    if root.exists():
        shutil.rmtree(root)
    generate.generate_tree(kernel, root, generate.sample_specs(), unchecked=test_specs())
    for mod_dir in sorted(TEST_MODULES.iterdir()):
        shutil.copytree(mod_dir, root / "modules" / mod_dir.name)
    tree = BuiltTree(kernel=kernel, root=root)
    core = root / "core"
    # the core's test build, for the guest's fault scenarios: the same sources, with faults.c
    # compiled in (make KPATCH_FAULTS=y)
    render.write(root, render.render_core(CoreModel(kernel.features, kernel.release), "core-faults"))
    patches = [spec.load(p) for p in generate.sample_specs() + test_specs()]
    # Independent builds run side by side: a small module's build is mostly make, modpost and
    # BTF steps that use one CPU each. The core comes first: the patches link against it. The
    # core and the patches are built as `kpgen build` builds them, post-link steps included.
    def build(module_dir: Path, core_dir: Path | None = None, variables: tuple[str, ...] = ()) -> kbuild.BuildResult:
        return pipeline.build(kernel, module_dir, core_dir, variables).result

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        tree.builds += pool.map(lambda args: build(args[0], variables=args[1]),
                                [(core, ()), (root / "core-faults", FAULTS_BUILD)])
        later = [pool.submit(build, root / "patches" / p.name, core) for p in patches]
        later += [pool.submit(kbuild.build, kernel, d) for d in sorted((root / "modules").iterdir())]
        later.append(pool.submit(build_foreign, kernel, root))
        tree.builds += [f.result() for f in later]
    tree.verdicts.append(elfcheck.check_module(core / "kpatch.ko", kernel))
    tree.verdicts.append(elfcheck.check_module(root / "core-faults" / "kpatch.ko", kernel))
    for patch in patches:
        pdir = root / "patches" / patch.name
        tree.verdicts.append(
            elfcheck.check_module(pdir / f"{patch.name}.ko", kernel, core / "Module.symvers",
                                  tuple(f.replacement for f in patch.functions), patch.backend)
        )
    # the delivery scenarios' signed modules and packages
    if delivery.wanted(kernel):
        delivery.build(kernel, root)
    if diffs is not None:
        kname = diffcases.matrix_name(kernel)
        cases = diffcases.load(diffs)
        if kname is not None and any(kname in c.kernels for c in cases):
            tree.diffs = diffcases.build(kernel, kname, cases, root, core)
    if suite is not None:
        kname = diffcases.matrix_name(kernel)
        suite_cases = kpatchsuite.load(suite[0], suite[1], kname) if kname is not None else []
        if suite_cases:
            tree.suite = kpatchsuite.build(kernel, suite_cases, root, core)
    return tree


def foreign_kernel(kernel: kmod.Kernel) -> kmod.Kernel:
    """Another kernel of the matrix, for a module this one must refuse: the next one after it."""
    entries = kmod.matrix()
    others = [m for m in entries if not m.matches(kernel.release)]
    if not others:
        raise KpgenError(f"the kernel matrix holds no kernel other than {kernel.release}: "
                         "foreign_module_refused needs a second kernel in kpgen/data/kernels.toml")
    index = next((i for i, m in enumerate(entries) if m.matches(kernel.release)), -1)
    after = [m for m in entries[index + 1:] + entries[:index + 1] if m in others]
    return kmod.probe(after[0].kdir())


def build_foreign(kernel: kmod.Kernel, root: Path) -> kbuild.BuildResult:
    """FOREIGN_MODULE built for another kernel, in root/foreign/, for the guest to refuse."""
    other = foreign_kernel(kernel)
    where = root / "foreign" / FOREIGN_MODULE
    shutil.copytree(TEST_MODULES / FOREIGN_MODULE, where)
    (where / "kpgen-kernel.txt").write_text(other.release + "\n")
    return kbuild.build(other, where)


@dataclass
class BootReport:
    kernel: kmod.Kernel
    run: vm.VmResult
    results: dict[str, bool]
    tap: str
    dmesg: str
    splats: list[str]
    results_dir: Path
    # the scenarios the runner lists for this tree: each must have been reported, and passed
    expected: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [name for name in self.expected if name not in self.results]

    @property
    def ok(self) -> bool:
        """Every scenario ran and passed (a skip is not a pass), the guest finished, and its log
        is clean."""
        return (not self.run.timed_out and self.run.returncode == 0 and not self.splats
                and bool(self.expected) and not self.missing and all(self.results.values()))

    def summary(self) -> str:
        passed = sum(1 for v in self.results.values() if v)
        return (f"kernel {self.kernel.release}: {passed} passed, {len(self.results) - passed} failed, "
                f"{len(self.missing)} not reported of {len(self.expected)} scenarios, "
                f"{len(self.splats)} splat lines, boot {self.run.seconds:.0f} s")


def guest_vm(tree: BuiltTree, results_dir: Path, timeout: int = 1500, stress_cycles: int | None = None,
             only: list[str] | None = None) -> vm.VmRun:
    argv = ["bash", str(GUEST_RUNNER), str(tree.root.resolve()), str(results_dir.resolve())]
    if only:
        argv += ["--only", ",".join(only)]
    command = shlex.join(argv)
    if stress_cycles is not None:
        command = f"KPGEN_STRESS_CYCLES={int(stress_cycles)} {command}"
    return vm.VmRun(kernel_image=tree.kernel.vmlinuz, command=command, rwdirs=(results_dir.resolve(),),
                    timeout=timeout)


def parse_tap(tap: str) -> dict[str, bool]:
    """Scenario -> passed. A scenario marked SKIP or TODO did not pass, whatever its "ok" says."""
    results: dict[str, bool] = {}
    for line in tap.splitlines():
        m = TAP_RE.match(line)
        if m:
            results[m.group(3)] = m.group(1) == "ok" and m.group(4) is None
    return results


def details(tap: str, scenario: str) -> list[str]:
    """The `#` lines the guest printed under one scenario's result."""
    lines = tap.splitlines()
    for i, line in enumerate(lines):
        m = TAP_RE.match(line)
        if m and m.group(3) == scenario:
            out = []
            for follow in lines[i + 1:]:
                if not follow.startswith("#"):
                    break
                out.append(follow)
            return out
    return []


def tap_progress(release: str, show: Callable[[str], None]) -> Callable[[str], None]:
    """A console-line callback that shows each scenario's result as it comes, with the time since
    the boot began."""
    start = time.monotonic()

    def on_line(line: str) -> None:
        if TAP_RE.match(line):
            show(f"[{release} +{time.monotonic() - start:.0f} s] {line}")

    return on_line


def boot(tree: BuiltTree, timeout: int = 1500, stress_cycles: int | None = None,
         progress: Callable[[str], None] | None = None, only: list[str] | None = None) -> BootReport:
    """Boot the tree's kernel once and run every scenario (or the `only` ones); never raises for a
    failed scenario.

    progress, if given, is shown each scenario's result while the guest runs."""
    expected = only or scenario_names(tree.root)
    results_dir = tree.root / "results"
    if results_dir.exists():
        shutil.rmtree(results_dir)
    results_dir.mkdir(parents=True)
    tap_file, dmesg_file = results_dir / "scenarios.tap", results_dir / "dmesg.txt"
    on_line = tap_progress(tree.kernel.release, progress) if progress else None
    run = vm.run(guest_vm(tree, results_dir, timeout, stress_cycles, only), on_line)
    if run.returncode and not tap_file.exists():
        # QEMU or virtme-ng failed before the guest script started (seen: exit 255, no
        # output): one more boot, with the first attempt kept in the console log
        first = f"# first boot failed (exit {run.returncode}) before the guest ran:\n{run.output}\n"
        run = vm.run(guest_vm(tree, results_dir, timeout, stress_cycles, only), on_line)
        run.output = first + run.output
    (results_dir / "console.log").write_text(run.output)
    tap = tap_file.read_text() if tap_file.is_file() else ""
    dmesg = dmesg_file.read_text(errors="replace") if dmesg_file.is_file() else ""
    ks, fs = results_dir / snapshot.KALLSYMS, results_dir / snapshot.FILTERS
    if ks.is_file() and fs.is_file():
        snapshot.save(tree.kernel.release, ks.read_text(), fs.read_text())
    report = BootReport(kernel=tree.kernel, run=run, results=parse_tap(tap), tap=tap, dmesg=dmesg,
                        splats=splat.scan(dmesg + "\n" + run.output), results_dir=results_dir, expected=expected)
    save_reports(report)
    return report


def save_reports(report: BootReport, reports: Path | None = None) -> list[Path]:
    """TAP of the scenarios and a summary line, and on failure the guest's whole kernel log and
    console, under build/reports/ (named by kernel release)."""
    reports = Path(reports or REPORTS)
    reports.mkdir(parents=True, exist_ok=True)
    rel = report.kernel.release
    written = [reports / f"{rel}.tap"]
    written[0].write_text(report.tap)
    summary = reports / f"{rel}.summary"
    summary.write_text(report.summary() + "\n")
    written.append(summary)
    for stale in (reports / f"{rel}-dmesg.txt", reports / f"{rel}-console.log"):
        stale.unlink(missing_ok=True)
    if not report.ok:
        written.append(reports / f"{rel}-dmesg.txt")
        written[-1].write_text(report.dmesg or "(the guest saved no kernel log: see the console log)\n")
        written.append(reports / f"{rel}-console.log")
        written[-1].write_text(report.run.output)
    return written
