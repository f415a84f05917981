"""Benchmarks: what a patched call costs and what applying a patch costs, against upstream
livepatch, in several boots per kernel.

The host writes the benchmark's patch specs, generates and builds them with the core (and its
fault-injection build) and the hand-written modules of harness/bench/modules, boots each kernel
PERCALL_BOOTS times for the per-call cases and once for the apply cases to run
harness/bench/guest.sh, and turns the guest's raw figures into a table, a JSON file and a plot.
The per-call boots run each vCPU on a host thread of its own (QEMU's multi-threaded TCG), so
that nothing the other vCPU does runs on the measuring vCPU's thread; the apply boot, which
rewrites code while the other vCPU runs (ftrace, stop_machine, livepatch transitions), runs
both vCPUs on one host thread, as the boot tests do (docs/testing.md, "The emulator").

Every per-call case is hooked at once, each on its own target function of the bench module, so
that each round of a run times every case in the order A B C ... C B A, with interrupts off
for each chunk of calls, and each case is divided by the unhooked stub of the same round:
whatever slows the emulator during a round slows every case of it alike. Each figure comes with
its spread over the rounds (min, max) and a 95 % confidence interval of its median. The runs
are made twice in each boot, so the table shows how far the passes of one boot are apart, and
how far the boots are. Boots of the same build differ more than passes do (where the emulator's
translated code lands differs from boot to boot), so a per-call target is judged on the union
of its intervals in every boot: met when that union clears the limit, missed when it lies past
it, and level (within noise) otherwise. Every figure is an emulator time (QEMU/TCG) or a ratio
between cases measured together: compare within a table, not across machines.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import generate, kernel as kmod, pipeline, render, splat, vm
from ..errors import KpgenError
from ..model import CoreModel
from ..resources import BENCH, build_root

BENCH_MODULES = BENCH / "modules"
GUEST_SCRIPT = BENCH / "guest.sh"
BENCH_ROOT = build_root() / "bench"
FAULTS_BUILD = ("KPATCH_FAULTS=y",)

STACKED = 10
# the module of the other functions the many-function patches hook
SET_IP_MODULE = "kpgen_bench"  # its Kbuild gets the kernel's ftrace_regs instruction-pointer setter
FUNCS_MODULE = "kpgen_bench_funcs"
MANY = (1, 100, 1000)
ROUNDS = 500
# calls per chunk: a chunk runs with interrupts off, about 0.2 ms for the slowest case under TCG
CALLS = 2000
PASSES = 2
# per-call boots per kernel: boots of the same build differ more than the passes of one boot
# (where the emulator's translated code lands differs from boot to boot), so a verdict has to
# hold in every boot
PERCALL_BOOTS = 4
APPLY_REPS = 5
# loads of the core's cases whose pauses the targets compare: enough for an interval of the
# median that leaves out the two slowest and the two fastest (see median_ci)
PAUSE_REPS = 11
# a two-sided 95 % interval
Z95 = 1.96

# the columns of /proc/kpgen_bench, in its order: the stub first
MODULE_CASES = ("stub", "unpatched", "ftrace_empty", "preempt", "guard", "guard_nmi", "redirect", "hash", "slot", "klp",
                "kpgen_1", "kpgen_2", "kpgen_10", "kpgen_direct", "livepatch", "lp_backend")
PHASES = ("base", *(f"other_{n}" for n in MANY))

# per-call cases, in the order of the table: (case, label, phase, column of the module)
PERCALL_CASES = (
    ("unpatched", "unpatched (a second stub)", "base", "unpatched"),
    ("ftrace_empty", "empty ftrace callback", "base", "ftrace_empty"),
    ("preempt", "piece: preemption off and on", "base", "preempt"),
    ("guard", "piece: recursion guard", "base", "guard"),
    ("guard_nmi", "piece: guard + in_nmi()", "base", "guard_nmi"),
    ("redirect", "piece: guard + redirect", "base", "redirect"),
    ("hash", "piece: guard + in_nmi() + hash + redirect", "base", "hash"),
    ("slot", "piece: guard + slot + redirect", "base", "slot"),
    ("klp", "piece: guard + livepatch's lookup + redirect", "base", "klp"),
    ("kpgen_1", "kpgen, 1 patch", "base", "kpgen_1"),
    ("kpgen_2", "kpgen, 2 patches stacked", "base", "kpgen_2"),
    ("kpgen_10", "kpgen, 10 patches stacked", "base", "kpgen_10"),
    *((f"kpgen_1_other_{n}", f"kpgen, 1 patch + {n} other functions", f"other_{n}", "kpgen_1") for n in MANY),
    ("livepatch", "upstream livepatch (hand-written)", "base", "livepatch"),
    ("lp_backend", "kpgen, livepatch backend, 1 patch", "base", "lp_backend"),
    ("kpgen_direct", "kpgen, 1 patch, direct call (direct_calls=1)", "base", "kpgen_direct"),
)

# the patch kpgen's livepatch backend makes of the bench module's lp_backend target
LP_BACKEND_PATCH = "bench_lp"
# the patch of the bench module's kpgen_direct target, loaded with the core's direct_calls=1
DIRECT_PATCH = "bench_direct"


# --- the specs ------------------------------------------------------------------------------

_HEADER = "// SPDX-License-Identifier: GPL-2.0-only\n"

# the bench module's targets each stacked patch replaces: patch 1 all three, patch 2 the last
# two, patches 3 to STACKED the last
_STACK_TARGETS = ("kpgen_bench_kpgen_1", "kpgen_bench_kpgen_2", "kpgen_bench_kpgen_10")


def stack_targets(i: int) -> tuple[str, ...]:
    """The targets stacked patch i (1 to STACKED) replaces."""
    return _STACK_TARGETS[min(i, 3) - 1:]


def write_specs(root: Path) -> list[Path]:
    """Write the benchmark's patch specs under root: STACKED patches of the bench module's
    kpgen targets, doing the same work as the originals, and patches of 1, 100 and 1000 other
    functions, those of the FUNCS_MODULE module."""
    specs = []
    for i in range(1, STACKED + 1):
        name = f"bench_stack_{i:02}"
        targets = stack_targets(i)
        src = (f"{_HEADER}/* The bench module's targets again: the same work, through a patch. */\n"
               "#include <linux/jiffies.h>\n" + "".join(
                   f"\nstatic unsigned int {name}_{t}(const unsigned long j)\n{{\n"
                   f"\treturn (MSEC_PER_SEC / HZ) * j + {4 + _STACK_TARGETS.index(t)};\n}}\n" for t in targets))
        spec_text = (f'name = "{name}"\ndescription = "Benchmark: patch {i} of {STACKED} stacked"\n'
                     'sources = ["fix.c"]\n' + "".join(
                         f'\n[[function]]\ntarget = "{t}"\nobject = "kpgen_bench"\n'
                         f'replacement = "{name}_{t}"\n' for t in targets))
        specs.append(_write_spec(root, name, spec_text, src))
    for n in MANY:
        name = f"bench_many_{n}"
        funcs = [f"{i:03}" for i in range(n)]
        src = _HEADER + f"/* Replacements of {n} functions of {FUNCS_MODULE}. */\n" + "".join(
            f"\nstatic int {name}_fn_{i}(void)\n{{\n\treturn {int(i)};\n}}\n" for i in funcs)
        spec_text = (f'name = "{name}"\ndescription = "Benchmark: {n} functions of {FUNCS_MODULE}"\n'
                     'sources = ["fix.c"]\n' + "".join(
                         f'\n[[function]]\ntarget = "kpgen_bench_fn_{i}"\nobject = "{FUNCS_MODULE}"\n'
                         f'replacement = "{name}_fn_{i}"\n' for i in funcs))
        specs.append(_write_spec(root, name, spec_text, src))
    specs.append(_one_function_spec(root, LP_BACKEND_PATCH, "lp_backend", 8, "livepatch backend",
                                    'backend = "livepatch"\n'))
    specs.append(_one_function_spec(root, DIRECT_PATCH, "kpgen_direct", 9, "hooked with a direct call"))
    return specs


def _one_function_spec(root: Path, name: str, target: str, constant: int, what: str, keys: str = "") -> Path:
    """The spec of a patch of one target of the bench module, kpgen_bench_TARGET, whose
    replacement does the same work as the original (which adds `constant`)."""
    src = (f"{_HEADER}/* The bench module's {target} target again: the same work. */\n"
           "#include <linux/jiffies.h>\n\n"
           f"static unsigned int {name}_fn(const unsigned long j)\n{{\n"
           f"\treturn (MSEC_PER_SEC / HZ) * j + {constant};\n}}\n")
    spec_text = (f'name = "{name}"\ndescription = "Benchmark: one function, {what}"\n{keys}'
                 'sources = ["fix.c"]\n\n[[function]]\n'
                 f'target = "kpgen_bench_{target}"\nobject = "kpgen_bench"\nreplacement = "{name}_fn"\n')
    return _write_spec(root, name, spec_text, src)


def bench_funcs_c(n: int = max(MANY)) -> str:
    """funcs.c of the FUNCS_MODULE module: n distinct functions for the many-function patches,
    and the table that keeps them (each referenced, so none is dropped or merged, and each
    keeps its ENDBR). They live in a module of their own: patching them rewrites no page of
    the module whose calls the per-call cases time."""
    names = [f"kpgen_bench_fn_{i:03}" for i in range(n)]
    body = "".join(f"\nstatic noinline int {name}(void)\n{{\n\treturn READ_ONCE(kpgen_bench_base) + {i};\n}}\n"
                   for i, name in enumerate(names))
    table = "".join(f"\t{name},\n" for name in names)
    return (f"{_HEADER}/*\n * {FUNCS_MODULE}: {n} functions for the benchmark's patches of many\n"
            " * functions.  Nothing calls them: the patches only hook them.\n"
            " *\n * Generated by kpgen bench, do not edit.\n */\n"
            "#include <linux/compiler.h>\n#include <linux/module.h>\n\n"
            f"static int kpgen_bench_base;\n{body}\n"
            f"static int (*const kpgen_bench_fns[])(void) __used = {{\n{table}}};\n\n"
            f'MODULE_DESCRIPTION("kpgen benchmark: {n} functions to patch at once");\n'
            'MODULE_LICENSE("GPL");\n')


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
    """Generate and build the core, its fault-injection build, the benchmark's patches and its
    modules for `kernel`."""
    root = Path(root or BENCH_ROOT / kernel.release)
    if root.exists():
        shutil.rmtree(root)
    specs = write_specs(root / "specs")
    generate.generate_tree(kernel, root, [], unchecked=specs)
    core = root / "core"
    builds = [pipeline.build(kernel, core).result]
    # the same sources with faults.c: its fail_at=precheck shows the pause without the first pass
    render.write(root, render.render_core(CoreModel(kernel.features, kernel.release), "core-faults"))
    builds.append(pipeline.build(kernel, root / "core-faults", variables=FAULTS_BUILD).result)
    for mod in sorted(BENCH_MODULES.iterdir()):
        where = root / "modules" / mod.name
        shutil.copytree(mod, where)
        if mod.name == FUNCS_MODULE:
            (where / "funcs.c").write_text(bench_funcs_c())
        if mod.name == SET_IP_MODULE:
            # its callbacks redirect with the kernel's own instruction-pointer setter: in its
            # Kbuild, so that every build of the directory (sparse's too) has it
            with (where / "Kbuild").open("a") as kbuild_file:
                kbuild_file.write(f"ccflags-y += -DKPGEN_BENCH_SET_IP={kernel.features.ftrace_ip_setter}\n")
        builds.append(pipeline.build(kernel, where).result)
    for path in specs:
        builds.append(pipeline.build(kernel, root / "patches" / path.stem, core_dir=core).result)
    warnings = [w for b in builds for w in b.warnings]
    if warnings:
        raise KpgenError("benchmark modules built with warnings:\n" + "\n".join(warnings))
    return BenchTree(kernel, root)


def schedule(phases: Sequence[str] = PHASES, passes: int = PASSES, boot: int = 1) -> list[tuple[int, str]]:
    """The per-call runs of per-call boot `boot` (from 1), (pass, phase): its passes are
    numbered on from the boots before it, the phases go forward in its first pass and backward
    in its second (A B C D D C B A), so that a drift over the boot does not favour one phase."""
    runs = []
    for i in range(passes):
        order = list(phases) if i % 2 == 0 else list(reversed(phases))
        runs += [((boot - 1) * passes + i + 1, ph) for ph in order]
    return runs


def boot_of(pass_no: int, passes: int = PASSES) -> int:
    """The per-call boot (from 1) that made pass `pass_no`."""
    return (pass_no - 1) // passes + 1


# the two halves of the benchmark, each in a boot of its own
PARTS = ("percall", "apply")


def guest_vm(tree: BenchTree, results: Path, part: str, timeout: int = 3600, boot: int = 1) -> vm.VmRun:
    """A boot of one half of the benchmark: "percall" (per-call boot `boot`) or "apply"."""
    if part not in PARTS:
        raise ValueError(f"benchmark part {part!r}: one of {', '.join(PARTS)}")
    runs = " ".join(f"{p}/{ph}" for p, ph in schedule(boot=boot))
    command = shlex.join(["bash", str(GUEST_SCRIPT), str(tree.root.resolve()), str(results.resolve()),
                          str(ROUNDS), str(CALLS), runs, str(APPLY_REPS),
                          str(PAUSE_REPS), part])
    # Two vCPUs, the measuring task has CPU 1 to itself. The per-call boot gives each vCPU a
    # host thread (the measured loop shares its thread with nothing); the apply boot runs both
    # on one thread, as the boot tests: it rewrites code while the other vCPU runs, which
    # multi-threaded TCG does not always see (docs/testing.md, "The emulator").
    return vm.VmRun(kernel_image=tree.kernel.vmlinuz, command=command, rwdirs=(results.resolve(),),
                    timeout=timeout, single_thread=part == "apply", cpus=2)


# --- statistics -----------------------------------------------------------------------------

@dataclass
class Figure:
    """A figure over repeated samples: its median, a confidence interval of the median
    (lo, hi) and the spread (min, max)."""
    median: float
    lo: float
    hi: float
    min: float
    max: float
    n: int


def median_ci(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics of ranks
    n/2 -+ z*sqrt(n)/2 (binomial, normal approximation); min and max for very few samples."""
    xs = sorted(values)
    n = len(xs)
    if not n:
        raise ValueError("no samples")
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return xs[lo], xs[max(lo, hi)]


def figure(values: Sequence[float]) -> Figure:
    if not values:
        raise ValueError("no samples")
    lo, hi = median_ci(values)
    return Figure(statistics.median(values), lo, hi, min(values), max(values), len(values))


def spread(values: Sequence[float]) -> Figure:
    """For apply cases: from PAUSE_REPS samples on, the interval of the median; for fewer, the
    whole range."""
    if not values:
        raise ValueError("no samples")
    if len(values) >= PAUSE_REPS:
        return figure(values)
    return Figure(statistics.median(values), min(values), max(values), min(values), max(values), len(values))


MET, MISSED, LEVEL = "met", "missed", "level"


def verdict(lo: float, hi: float, limit: float) -> str:
    """A target "value <= limit" judged on an interval: met if the whole interval is at or
    below the limit, missed if it lies wholly above, level (within noise) if it straddles."""
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] is empty")
    if hi <= limit:
        return MET
    if lo > limit:
        return MISSED
    return LEVEL


# the two unhooked copies of the bench module's function, in every round
BASELINES = ("stub", "unpatched")


def baseline(row: dict[str, float]) -> float:
    """A round's plain call: the faster of the two unhooked copies (the stub and "unpatched").
    They do the same work, but under the emulator one copy sometimes runs slower for a whole
    boot (an artefact of where its translated code lands, which only ever adds time), and every
    case of that boot would be divided by it."""
    return min(row[c] for c in BASELINES if c in row)


def normalise(rows: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Each round's case times divided by the round's plain call (baseline())."""
    out = []
    for row in rows:
        base = baseline(row)
        if base <= 0:
            raise KpgenError(f"benchmark round with a stub time of {base} ns: the clock did not move")
        out.append({c: v / base for c, v in row.items() if c != "stub"})
    return out


def pass_diff_pct(a: float, b: float) -> float:
    """How far pass b is from pass a, in percent of a."""
    if a == 0:
        return 0.0 if b == 0 else math.inf
    return abs(b - a) / abs(a) * 100


def ratio_interval(num: Figure, den: Figure) -> tuple[float, float, float]:
    """num / den of two positive figures: the ratio of medians, and the widest ratio the two
    intervals allow."""
    if den.lo <= 0 or den.hi <= 0:
        return num.median / den.median if den.median else math.inf, -math.inf, math.inf
    return num.median / den.median, num.lo / den.hi, num.hi / den.lo


# --- figures --------------------------------------------------------------------------------

@dataclass
class PerCall:
    """One per-call case over every round of every pass of every boot: its time as a multiple
    of the stub's of the same round (x_stub), its cost over the stub in ns per call (net_ns),
    the medians of each pass apart and of each boot apart."""
    case: str
    label: str
    x_stub: Figure
    net_ns: Figure
    stub_ns_median: float
    x_stub_passes: list[float]
    net_ns_passes: list[float]
    calls: int
    x_stub_boots: list[float] = field(default_factory=list)

    @staticmethod
    def _within_boots(medians: list[float]) -> float:
        diffs = [pass_diff_pct(medians[i], q) for i in range(0, len(medians), PASSES)
                 for q in medians[i + 1:i + PASSES]]
        return max(diffs, default=0.0)

    @property
    def pass_diff_pct(self) -> float:
        """How far the passes of one boot are apart (x stub), in percent: the most of any boot."""
        return self._within_boots(self.x_stub_passes)

    @property
    def net_pass_diff_pct(self) -> float:
        return self._within_boots(self.net_ns_passes)

    @property
    def boot_diff_pct(self) -> float:
        """How far the boots are apart (x stub): the spread of their medians, in percent of the
        lowest."""
        b = self.x_stub_boots
        return pass_diff_pct(min(b), max(b)) if len(b) > 1 else 0.0


@dataclass
class Apply:
    case: str
    functions: int
    extra_tasks: int
    insmod_ms: Figure
    pause_us: Figure | None
    tasks_checked: int | None
    unwound: float | None = None
    trusted: float | None = None
    # disable and rmmod, for the core's cases
    rmmod_ms: Figure | None = None


@dataclass
class Target:
    name: str
    value: float
    lo: float
    hi: float
    limit: float
    verdict: str


@dataclass
class KernelResult:
    release: str
    boot_seconds: float
    percall: list[PerCall] = field(default_factory=list)
    apply: list[Apply] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def parse_run(text: str, where: str = "run", calls: int = CALLS) -> list[dict[str, float]]:
    """One run of /proc/kpgen_bench: a "#" line naming the columns, then one line per round of
    the ns each case's chunks took -> per round, each case's ns per call."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0][0] != "#":
        raise KpgenError(f"benchmark {where}: no \"#\" line naming the cases")
    names = lines[0][1:]
    if "stub" not in names:
        raise KpgenError(f"benchmark {where}: no stub column in {' '.join(names)}")
    rows = []
    for i, words in enumerate(lines[1:], 2):
        if len(words) != len(names):
            raise KpgenError(f"benchmark {where}, line {i}: {len(words)} figures for {len(names)} cases")
        # two chunks of `calls` calls each per round
        rows.append({c: int(w) / (2 * calls) for c, w in zip(names, words, strict=True)})
    if not rows:
        raise KpgenError(f"benchmark {where}: no figures")
    return rows


# the per-call runs of a kernel: per (pass, phase), one row per round of each case's ns per call
Runs = dict[tuple[int, str], list[dict[str, float]]]


def percall_figures(runs: Runs, calls: int = CALLS) -> list[PerCall]:
    """Per-call cases from the runs of every (pass, phase)."""
    passes = sorted({p for p, _ in runs})
    result = []
    for case, label, phase, column in PERCALL_CASES:
        per_pass: dict[int, tuple[list[float], list[float]]] = {}
        stubs: list[float] = []
        for p in passes:
            rows = runs.get((p, phase))
            if rows is None:
                raise KpgenError(f"benchmark: no per-call run for pass {p}, phase {phase}")
            xs = [r[column] for r in normalise(rows)]
            nets = [r[column] - baseline(r) for r in rows]
            per_pass[p] = (xs, nets)
            stubs += [baseline(r) for r in rows]
        all_x = [x for p in passes for x in per_pass[p][0]]
        all_net = [x for p in passes for x in per_pass[p][1]]
        boots = sorted({boot_of(p) for p in passes})
        by_boot = [statistics.median([x for p in passes if boot_of(p) == b for x in per_pass[p][0]])
                   for b in boots]
        result.append(PerCall(case, label, figure(all_x), figure(all_net), statistics.median(stubs),
                              [statistics.median(per_pass[p][0]) for p in passes],
                              [statistics.median(per_pass[p][1]) for p in passes], calls, by_boot))
    return result


def parse_apply(text: str) -> list[Apply]:
    """apply.txt lines of key=value -> one Apply per (case, functions, extra tasks)."""
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
        unwound = [int(r["unwound"]) for r in rows if "unwound" in r]
        trusted = [int(r["trusted"]) for r in rows if "trusted" in r]
        rmmods = [int(r["rmmod_ns"]) / 1e6 for r in rows if "rmmod_ns" in r]
        result.append(Apply(case, funcs, tasks, spread([int(r["insmod_ns"]) / 1e6 for r in rows]),
                            spread(pauses) if pauses else None, max(checked) if checked else None,
                            statistics.median(unwound) if unwound else None,
                            statistics.median(trusted) if trusted else None,
                            spread(rmmods) if rmmods else None))
    return result


def _paired(runs: Runs, phase: str, a: str, b: str) -> list[float]:
    """Per round of `phase`, every pass: a minus b, both normalised by that round's stub."""
    return [r[a] - r[b] for (_, ph), rows in sorted(runs.items()) if ph == phase for r in normalise(rows)]


def _by_boot(runs: Runs) -> list[Runs]:
    """The runs of each per-call boot apart."""
    boots = sorted({boot_of(p) for p, _ in runs})
    return [{k: v for k, v in runs.items() if boot_of(k[0]) == b} for b in boots]


def _net(runs: Runs, phase: str, column: str) -> Figure:
    return figure([r[column] - baseline(r) for (_, ph), rows in runs.items() if ph == phase for r in rows])


def _union(value: float, intervals: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """A figure judged in several boots: its value over all of them, and the union of each
    boot's interval, so that a verdict is met (or missed) only if it is in every boot."""
    return value, min(lo for lo, _ in intervals), max(hi for _, hi in intervals)


def evaluate(percall: list[PerCall], apply: list[Apply], runs: Runs | None = None) -> list[Target]:
    """The targets, each judged on an interval (see verdict()); a per-call target on the union
    of its intervals in each boot."""
    pc = {p.case: p for p in percall}
    targets = []
    if runs is not None:
        boots = _by_boot(runs)
        per_boot = [figure(_paired(b, "base", "kpgen_1", "livepatch")) for b in boots]
        value, lo, hi = _union(statistics.median(_paired(runs, "base", "kpgen_1", "livepatch")),
                               [(d.lo, d.hi) for d in per_boot])
        targets.append(Target("kpgen per call <= livepatch (kpgen minus livepatch, x stub, <= 0)",
                              value, lo, hi, 0.0, verdict(lo, hi, 0.0)))
    # the cost over the stub, with 1000 other functions patched, against none (in each boot:
    # the same function, where the boot put it)
    other, one = pc["kpgen_1_other_1000"].net_ns, pc["kpgen_1"].net_ns
    value, lo, hi = ratio_interval(other, one)
    if runs is not None:
        value, lo, hi = _union(value, [ratio_interval(_net(b, "other_1000", "kpgen_1"),
                                                      _net(b, "base", "kpgen_1"))[1:] for b in boots])
    targets.append(Target("1000 other functions cost <= 1.1x one (net ns ratio)", value, lo, hi, 1.1,
                          verdict(lo, hi, 1.1)))
    pauses = {(a.case, a.functions, a.extra_tasks): a.pause_us for a in apply if a.pause_us is not None}
    p100, p1000 = pauses.get(("kpgen", 100, 0)), pauses.get(("kpgen", 1000, 0))
    if p100 and p1000:
        value, lo, hi = ratio_interval(p1000, p100)
        targets.append(Target("pause grows less than linearly: 1000 functions < 10x 100", value, lo, hi, 10.0,
                              verdict(lo, hi, 10.0)))
    for n in MANY:
        none, many = pauses.get(("kpgen", n, 0)), pauses.get(("kpgen", n, 1000))
        if none and many:
            value, lo, hi = ratio_interval(many, none)
            targets.append(Target(f"pause, {n} function(s): +1000 sleeping tasks <= 2x none", value, lo, hi,
                                  2.0, verdict(lo, hi, 2.0)))
    return targets


def percall_dir(results: Path, boot: int) -> Path:
    """Where per-call boot `boot` leaves its figures, kernel log and console."""
    return results / f"percall-{boot}"


def read_runs(results: Path, boots: int = PERCALL_BOOTS) -> Runs:
    runs = {}
    for b in range(1, boots + 1):
        d = percall_dir(results, b)
        for p, phase in schedule(boot=b):
            f = d / f"percall-{p}-{phase}.txt"
            if not f.is_file():
                raise KpgenError(f"benchmark run {p}/{phase} left no figures in {f}: see {d / 'console-percall.log'}")
            runs[(p, phase)] = parse_run(f.read_text(), str(f))
    return runs


def read_results(release: str, results: Path, boot_seconds: float) -> KernelResult:
    res = KernelResult(release, boot_seconds)
    runs = read_runs(results)
    res.percall = percall_figures(runs)
    res.apply = parse_apply((results / "apply.txt").read_text())
    res.targets = evaluate(res.percall, res.apply, runs)
    return res


def missed(res: KernelResult) -> list[Target]:
    return [t for t in res.targets if t.verdict == MISSED]


def _fig(f: Figure, fmt: str = ".2f") -> str:
    return f"{f.median:{fmt}} [{f.lo:{fmt}}, {f.hi:{fmt}}]"


def _range(f: Figure, fmt: str = ".0f") -> str:
    return f"{f.median:{fmt}} ({f.min:{fmt}}-{f.max:{fmt}})"


def table(res: KernelResult) -> str:
    stub = next(p.stub_ns_median for p in res.percall if p.case == "unpatched")
    lines = [f"kernel {res.release} (QEMU/TCG emulator times; compare within this table only)",
             f"  per call: median [95 % interval of the median] over {ROUNDS} rounds x {PASSES} passes x "
             f"{len(res.percall[0].x_stub_boots)} boots; stub {stub:.1f} ns/call",
             "  pass diff: the passes of one boot apart (x stub, net); boots: the range of the boots' medians",
             f"  {'case':38} {'x stub':>20} {'net ns/call':>20} {'min-max x stub':>14} "
             f"{'pass diff x':>11} {'net':>6} {'boots x stub':>13} {'boot diff':>9}"]
    for p in res.percall:
        boots = f"{min(p.x_stub_boots):.2f}-{max(p.x_stub_boots):.2f}" if p.x_stub_boots else "-"
        lines.append(f"  {p.label:38} {_fig(p.x_stub):>20} {_fig(p.net_ns, '.1f'):>20} "
                     f"{p.x_stub.min:6.2f}-{p.x_stub.max:<7.2f} {p.pass_diff_pct:10.1f}% {p.net_pass_diff_pct:5.1f}% "
                     f"{boots:>13} {p.boot_diff_pct:8.1f}%")
    lines.append(f"  {'apply case':48} {'insmod->active ms':>18} {'pause us':>20} {'tasks':>6} {'unwound':>8} "
                 f"{'unload ms':>18}")
    for a in sorted(res.apply, key=lambda a: (a.case, a.extra_tasks, a.functions)):
        label = f"{a.case}, {a.functions} function(s), +{a.extra_tasks} tasks"
        pause = _range(a.pause_us) if a.pause_us is not None else "-"
        tasks = str(a.tasks_checked) if a.tasks_checked is not None else "-"
        unwound = f"{a.unwound:.0f}" if a.unwound is not None else "-"
        rmmod = _range(a.rmmod_ms) if a.rmmod_ms is not None else "-"
        lines.append(f"  {label:48} {_range(a.insmod_ms):>18} {pause:>20} {tasks:>6} {unwound:>8} {rmmod:>18}")
    for t in res.targets:
        lines.append(f"  target: {t.name}: {t.value:.3g} [{t.lo:.3g}, {t.hi:.3g}] vs {t.limit:g}: {t.verdict}")
    return "\n".join(lines)


def markdown(results: list[KernelResult]) -> str:
    """The figures as markdown tables, one column per kernel, for docs/bench.md."""
    rels = [r.release for r in results]
    sep = "| --- " * (len(rels) + 1) + "|\n"
    out = ("| " + " | ".join(["per call: x stub, median [95 % CI], boots' medians; net ns; "
                              "diff within a boot / between boots", *rels]) + " |\n" + sep)
    for case, label, _, _ in PERCALL_CASES:
        cells = []
        for r in results:
            p = next(p for p in r.percall if p.case == case)
            boots = f", {min(p.x_stub_boots):.2f}-{max(p.x_stub_boots):.2f}" if p.x_stub_boots else ""
            cells.append(f"{_fig(p.x_stub)}{boots}; {p.net_ns.median:.1f} ns; "
                         f"{p.pass_diff_pct:.1f} % / {p.boot_diff_pct:.1f} %")
        out += f"| {label} | " + " | ".join(cells) + " |\n"
    out += ("\n| " + " | ".join(["apply: insmod to active ms / pause us / unload ms, median (min-max)", *rels])
            + " |\n" + sep)
    keys = sorted({(a.case, a.extra_tasks, a.functions) for r in results for a in r.apply})
    for case, tasks, funcs in keys:
        cells = []
        for r in results:
            a = next((a for a in r.apply if (a.case, a.extra_tasks, a.functions) == (case, tasks, funcs)), None)
            if a is None:
                cells.append("-")
            else:
                pause = f" / {_range(a.pause_us)}" if a.pause_us is not None else ""
                rmmod = f" / {_range(a.rmmod_ms)}" if a.rmmod_ms is not None else ""
                cells.append(f"{_range(a.insmod_ms)}{pause}{rmmod}")
        out += f"| {case}, {funcs} function(s), +{tasks} sleeping tasks | " + " | ".join(cells) + " |\n"
    out += "\n| " + " | ".join(["target", *rels]) + " |\n" + sep
    for name in [t.name for t in results[0].targets]:
        cells = []
        for r in results:
            t = next((t for t in r.targets if t.name == name), None)
            cells.append("-" if t is None else f"{t.verdict}: {t.value:.3g} [{t.lo:.3g}, {t.hi:.3g}]")
        out += f"| {name} | " + " | ".join(cells) + " |\n"
    return out


def save_json(results: list[KernelResult], path: Path, when: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"units": {"x_stub": "case time / stub time of the same round",
                      "net_ns": "emulator ns per call, case minus stub of the same round",
                      "insmod_ms": "emulator ms from insmod to active",
                      "rmmod_ms": "emulator ms of the disable and rmmod that follow",
                      "pause_us": "emulator us inside stop_machine"},
            "figures": "median, lo/hi: 95 % interval of the median (apply: min/max), min, max, n",
            "when": when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rounds": ROUNDS, "calls_per_chunk": CALLS, "passes_per_boot": PASSES,
            "percall_boots": PERCALL_BOOTS, "apply_reps": APPLY_REPS, "pause_reps": PAUSE_REPS,
            "kernels": [asdict(r) | {"pass_diff_pct": {p.case: p.pass_diff_pct for p in r.percall},
                                     "boot_diff_pct": {p.case: p.boot_diff_pct for p in r.percall}}
                        for r in results]}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def plot(results: list[KernelResult], path: Path) -> None:
    """Per-call cost by case with its interval and each boot's median, and stop_machine pause
    against functions and tasks, with and without the first pass."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(15, 4.2 * len(results)), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        ax = row[0]
        labels = [p.label for p in res.percall]
        med = [p.x_stub.median for p in res.percall]
        err = [[p.x_stub.median - p.x_stub.lo for p in res.percall],
               [p.x_stub.hi - p.x_stub.median for p in res.percall]]
        ax.barh(labels, med, xerr=err, color="tab:blue", label="median, 95 % interval")
        for i, p in enumerate(res.percall):
            ax.plot(p.x_stub_boots, [i] * len(p.x_stub_boots), "k|", markersize=12,
                    label="median of one boot" if i == 0 else None)
        ax.invert_yaxis()
        ax.set_xlabel("time per call / stub's, same round")
        ax.set_title(f"{res.release}: per-call cost")
        ax.legend(loc="lower left", fontsize="small")
        ax = row[1]
        for case in ("kpgen", "kpgen_noprecheck"):
            for tasks in sorted({a.extra_tasks for a in res.apply if a.case == case}):
                pts = sorted((a.functions, a.pause_us.median) for a in res.apply
                             if a.case == case and a.extra_tasks == tasks and a.pause_us is not None)
                style = "o-" if case == "kpgen" else "x--"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style,
                        label=f"{'pre-check' if case == 'kpgen' else 'no pre-check'}, +{tasks} tasks")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("functions applied at once")
        ax.set_ylabel("stop_machine pause, us (emulator time)")
        ax.set_title(f"{res.release}: pause vs functions and tasks")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _boot(tree: BenchTree, rdir: Path, part: str, timeout: int, boot: int = 1) -> float:
    """One boot of one half; its seconds (raises on a failed boot or a splat)."""
    release = tree.kernel.release
    if part == "percall":
        part_name = f"percall boot {boot} of {PERCALL_BOOTS}"
        mode = "a host thread per vCPU"
    else:
        part_name, mode = part, "both vCPUs on one host thread"
    print(f"bench: booting {release} for the {part_name} ({mode})", flush=True)
    start = time.monotonic()

    def show(line: str) -> None:
        if line.startswith("bench: "):
            print(f"[{release} {part_name} +{time.monotonic() - start:.0f} s] {line[7:]}", flush=True)

    for stale in (f"done-{part}.txt", f"dmesg-{part}.txt"):
        (rdir / stale).unlink(missing_ok=True)
    r = vm.run(guest_vm(tree, rdir, part, timeout, boot), show)
    console = rdir / f"console-{part}.log"
    console.write_text(r.output)
    if r.returncode != 0 or not (rdir / f"done-{part}.txt").is_file():
        why = "timed out" if r.timed_out else f"exit {r.returncode}"
        raise KpgenError(f"benchmark boot of {release} ({part_name}) failed ({why}): see {console}")
    dmesg = rdir / f"dmesg-{part}.txt"
    splats = splat.scan((dmesg.read_text(errors="replace") if dmesg.is_file() else "") + "\n" + r.output)
    if splats:
        raise KpgenError(f"benchmark boot of {release} ({part_name}): the kernel log shows splats:\n"
                         + "\n".join(splats))
    return r.seconds


def run(kernels: list[kmod.Kernel], out: Path = BENCH_ROOT, timeout: int = 3600) -> list[KernelResult]:
    """Build, boot each kernel PERCALL_BOOTS times for the per-call cases and once for the
    apply cases, and return its figures (raises on a failed boot)."""
    results = []
    for k in kernels:
        tree = build_tree(k, out / k.release)
        rdir = tree.root / "results"
        if rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True)
        seconds = 0.0
        for b in range(1, PERCALL_BOOTS + 1):
            percall_dir(rdir, b).mkdir()
            seconds += _boot(tree, percall_dir(rdir, b), "percall", timeout, b)
        seconds += _boot(tree, rdir, "apply", timeout)
        results.append(read_results(k.release, rdir, seconds))
    return results
