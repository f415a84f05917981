"""Benchmarks: what a patched call costs and what applying a patch costs, against upstream
livepatch, in one boot per kernel.

The host writes the benchmark's patch specs, generates and builds them with the core and the
hand-written modules of bench/modules, boots each kernel once to run bench/guest.sh, and turns
the guest's raw figures into a table, a JSON file and a plot. Every figure is an emulator time
(QEMU/TCG) or a ratio between cases of the same boot: compare within a boot, not across machines.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import generate, kbuild, kernel as kmod, splat, vm
from .errors import KpgenError
from .model import REPO_ROOT

BENCH_MODULES = REPO_ROOT / "bench" / "modules"
GUEST_SCRIPT = REPO_ROOT / "bench" / "guest.sh"
BENCH_ROOT = REPO_ROOT / "build" / "bench"

STACKED = 10
MANY = (1, 100, 1000)
REPS = 101
CALLS = 20000

# per-call cases, in the order of the table
PERCALL_CASES = (
    ("unpatched", "unpatched"),
    ("ftrace_empty", "empty ftrace callback"),
    ("kpgen_1", "kpgen, 1 patch"),
    ("kpgen_2", "kpgen, 2 patches stacked"),
    ("kpgen_10", "kpgen, 10 patches stacked"),
    *((f"kpgen_1_other_{n}", f"kpgen, 1 patch + {n} other functions") for n in MANY),
    ("livepatch", "upstream livepatch"),
)


# --- the specs ------------------------------------------------------------------------------

_HEADER = "// SPDX-License-Identifier: GPL-2.0-only\n"


def write_specs(root: Path) -> list[Path]:
    """Write the benchmark's patch specs under root: STACKED patches of jiffies_to_msecs()
    doing the original's work, and patches of 1, 100 and 1000 functions of kpgen_bench."""
    specs = []
    for i in range(1, STACKED + 1):
        name = f"bench_stack_{i:02}"
        src = (f"{_HEADER}/* jiffies_to_msecs() again: the same work, through a patch. */\n"
               "#include <linux/jiffies.h>\n\n"
               f"static unsigned int {name}_msecs(const unsigned long j)\n{{\n"
               "\treturn (MSEC_PER_SEC / HZ) * j;\n}\n")
        spec_text = (f'name = "{name}"\ndescription = "Benchmark: jiffies_to_msecs, patch {i} of {STACKED}"\n'
                     'sources = ["fix.c"]\n\n[[function]]\ntarget = "jiffies_to_msecs"\n'
                     f'replacement = "{name}_msecs"\n')
        specs.append(_write_spec(root, name, spec_text, src))
    for n in MANY:
        name = f"bench_many_{n}"
        funcs = [f"{i:03}" for i in range(n)]
        src = _HEADER + f"/* Replacements of {n} functions of kpgen_bench. */\n" + "".join(
            f"\nstatic int {name}_fn_{i}(void)\n{{\n\treturn {int(i)};\n}}\n" for i in funcs)
        spec_text = (f'name = "{name}"\ndescription = "Benchmark: {n} functions of kpgen_bench"\n'
                     'sources = ["fix.c"]\n' + "".join(
                         f'\n[[function]]\ntarget = "kpgen_bench_fn_{i}"\nobject = "kpgen_bench"\n'
                         f'replacement = "{name}_fn_{i}"\n' for i in funcs))
        specs.append(_write_spec(root, name, spec_text, src))
    return specs


def _write_spec(root: Path, name: str, spec_text: str, src: str) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "fix.c").write_text(src)
    path = d / f"{name}.toml"
    path.write_text(spec_text)
    return path


# --- build and boot -------------------------------------------------------------------------

@dataclass
class BenchTree:
    kernel: kmod.Kernel
    root: Path


def build_tree(kernel: kmod.Kernel, root: Path | None = None) -> BenchTree:
    """Generate and build the core, the benchmark's patches and its modules for `kernel`."""
    root = Path(root or BENCH_ROOT / kernel.release)
    if root.exists():
        shutil.rmtree(root)
    specs = write_specs(root / "specs")
    generate.generate_tree(kernel, root, [], unchecked=specs)
    core = root / "core"
    builds = [kbuild.build(kernel, core)]
    for mod in sorted(BENCH_MODULES.iterdir()):
        shutil.copytree(mod, root / "modules" / mod.name)
        builds.append(kbuild.build(kernel, root / "modules" / mod.name))
    for path in specs:
        builds.append(kbuild.build(kernel, root / "patches" / path.stem, core_dir=core))
    warnings = [w for b in builds for w in b.warnings]
    if warnings:
        raise KpgenError("benchmark modules built with warnings:\n" + "\n".join(warnings))
    return BenchTree(kernel, root)


def guest_vm(tree: BenchTree, results: Path, timeout: int = 3600) -> vm.VmRun:
    command = shlex.join(["bash", str(GUEST_SCRIPT), str(tree.root.resolve()), str(results.resolve()),
                          str(REPS), str(CALLS)])
    return vm.VmRun(kernel_image=tree.kernel.vmlinuz, command=command, rwdirs=(results.resolve(),),
                    timeout=timeout)


# --- figures --------------------------------------------------------------------------------

@dataclass
class PerCall:
    case: str
    label: str
    net_ns_min: float
    net_ns_median: float
    target_ns_median: float
    stub_ns_median: float
    reps: int
    calls: int


@dataclass
class Apply:
    case: str
    functions: int
    extra_tasks: int
    insmod_ms_median: float
    pause_us_median: float | None
    tasks_checked: int | None


@dataclass
class KernelResult:
    release: str
    boot_seconds: float
    percall: list[PerCall] = field(default_factory=list)
    apply: list[Apply] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)


def parse_percall(case: str, label: str, text: str, calls: int = CALLS) -> PerCall:
    """One "TARGET_NS STUB_NS" line per repetition -> net ns per call (target minus stub), from the
    minima and from the medians of the two series."""
    pairs = [tuple(int(x) for x in line.split()) for line in text.splitlines() if line.strip()]
    if not pairs:
        raise KpgenError(f"benchmark case {case}: no figures")
    targets = [t / calls for t, _ in pairs]
    stubs = [s / calls for _, s in pairs]
    # per series: an interrupt that lands in one chunk inflates that chunk only
    return PerCall(case, label, min(targets) - min(stubs),
                   statistics.median(targets) - statistics.median(stubs),
                   statistics.median(targets), statistics.median(stubs), len(pairs), calls)


def parse_apply(text: str) -> list[Apply]:
    """apply.txt lines of key=value -> one Apply per (case, functions, extra tasks), medians."""
    groups: dict[tuple[str, int, int], list[dict[str, str]]] = {}
    for line in text.splitlines():
        kv = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if not kv:
            continue
        if kv.get("result", "0") != "0":
            raise KpgenError(f"benchmark apply step failed: {line}")
        groups.setdefault((kv["case"], int(kv["functions"]), int(kv["extra_tasks"])), []).append(kv)
    result = []
    for (case, funcs, tasks), rows in groups.items():
        pauses = [int(r["pause_ns"]) / 1000 for r in rows if "pause_ns" in r]
        checked = [int(r["tasks"]) for r in rows if "tasks" in r]
        result.append(Apply(case, funcs, tasks, statistics.median(int(r["insmod_ns"]) / 1e6 for r in rows),
                            statistics.median(pauses) if pauses else None,
                            max(checked) if checked else None))
    return result


def evaluate(res: KernelResult) -> dict[str, bool]:
    """The issue's targets, as ratios within one boot."""
    pc = {p.case: p for p in res.percall}
    checks = {}
    checks["kpgen per-call overhead <= livepatch"] = pc["kpgen_1"].net_ns_median <= pc["livepatch"].net_ns_median
    checks["1000 other functions cost <= 1.1x one"] = (
        pc["kpgen_1_other_1000"].net_ns_median <= 1.1 * pc["kpgen_1"].net_ns_median)
    pauses = {a.functions: a.pause_us_median for a in res.apply if a.case == "kpgen" and a.extra_tasks == 0}
    p1, p100, p1000 = (pauses.get(n) for n in MANY)
    if p1 and p100 and p1000:
        # below proportional growth from 1 and from 100 functions
        checks["pause grows less than linearly with functions"] = p1000 < 1000 * p1 and p1000 < 10 * p100
    return checks


def read_results(release: str, results: Path, boot_seconds: float) -> KernelResult:
    res = KernelResult(release, boot_seconds)
    for case, label in PERCALL_CASES:
        f = results / f"percall-{case}.txt"
        if not f.is_file():
            raise KpgenError(f"benchmark case {case} left no figures in {f}: see {results / 'console.log'}")
        res.percall.append(parse_percall(case, label, f.read_text()))
    res.apply = parse_apply((results / "apply.txt").read_text())
    res.checks = evaluate(res)
    return res


def table(res: KernelResult) -> str:
    lines = [f"kernel {res.release} (QEMU/TCG emulator times; compare within this table only)",
             f"  {'per-call case':42} {'net ns/call min':>16} {'median':>8} {'x unpatched call':>17}"]
    stub = next(p.stub_ns_median for p in res.percall if p.case == "unpatched")
    for p in res.percall:
        lines.append(f"  {p.label:42} {p.net_ns_min:16.1f} {p.net_ns_median:8.1f} "
                     f"{p.target_ns_median / stub:17.2f}")
    lines.append(f"  {'apply case':42} {'insmod->active ms':>17} {'pause us':>9} {'tasks checked':>14}")
    for a in sorted(res.apply, key=lambda a: (a.case, a.extra_tasks, a.functions)):
        label = f"{a.case}, {a.functions} function(s), +{a.extra_tasks} tasks"
        pause = f"{a.pause_us_median:9.1f}" if a.pause_us_median is not None else f"{'-':>9}"
        tasks = f"{a.tasks_checked:14}" if a.tasks_checked is not None else f"{'-':>14}"
        lines.append(f"  {label:42} {a.insmod_ms_median:17.1f} {pause} {tasks}")
    for name, ok in res.checks.items():
        lines.append(f"  target: {name}: {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def save_json(results: list[KernelResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"units": {"net_ns": "emulator ns per call, target minus stub",
                      "insmod_ms": "emulator ms from insmod to active",
                      "pause_us": "emulator us inside stop_machine"},
            "reps": REPS, "calls_per_chunk": CALLS, "kernels": [asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def plot(results: list[KernelResult], path: Path) -> None:
    """Per-call overhead by case, and stop_machine pause against functions and tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(13, 4.2 * len(results)), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        ax = row[0]
        labels = [p.label for p in res.percall]
        ax.barh(labels, [p.net_ns_median for p in res.percall], color="tab:blue", label="median")
        ax.plot([p.net_ns_min for p in res.percall], labels, "k|", markersize=12, label="min")
        ax.invert_yaxis()
        ax.set_xlabel("net ns per call (emulator time, target minus stub)")
        ax.set_title(f"{res.release}: per-call overhead")
        ax.legend(loc="lower right")
        ax = row[1]
        for tasks in sorted({a.extra_tasks for a in res.apply}):
            pts = sorted((a.functions, a.pause_us_median) for a in res.apply
                         if a.case == "kpgen" and a.extra_tasks == tasks and a.pause_us_median is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"+{tasks} sleeping tasks")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("functions applied at once")
        ax.set_ylabel("stop_machine pause, us (emulator time)")
        ax.set_title(f"{res.release}: pause vs functions and tasks")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(kernels: list[kmod.Kernel], out: Path = BENCH_ROOT, timeout: int = 3600) -> list[KernelResult]:
    """Build, boot each kernel once, and return its figures (raises on a failed boot)."""
    results = []
    for k in kernels:
        tree = build_tree(k, out / k.release)
        rdir = tree.root / "results"
        rdir.mkdir(parents=True, exist_ok=True)
        print(f"bench: booting {k.release} (one boot runs every case)", flush=True)
        r = vm.run(guest_vm(tree, rdir, timeout))
        (rdir / "console.log").write_text(r.output)
        done = rdir / "done.txt"
        if r.returncode != 0 or not done.is_file():
            why = "timed out" if r.timed_out else f"exit {r.returncode}"
            raise KpgenError(f"benchmark boot of {k.release} failed ({why}): see {rdir / 'console.log'}")
        dmesg = rdir / "dmesg.txt"
        splats = splat.scan((dmesg.read_text(errors="replace") if dmesg.is_file() else "") + "\n" + r.output)
        if splats:
            raise KpgenError(f"benchmark boot of {k.release}: the kernel log shows splats:\n" + "\n".join(splats))
        results.append(read_results(k.release, rdir, r.seconds))
    return results
