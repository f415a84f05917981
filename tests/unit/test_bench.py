"""The benchmark's host side: its generated specs load, and raw guest figures become the right
numbers, intervals and verdicts."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from kpgen import spec
from kpgen.errors import KpgenError
from kpgen.harness import bench


def test_written_specs_are_valid(tmp_path):
    paths = bench.write_specs(tmp_path)
    loaded = {p.stem: spec.load(p) for p in paths}
    assert len([n for n in loaded if n.startswith("bench_stack_")]) == bench.STACKED
    # patch 1 hooks all three kpgen targets, patch 2 the stacked two, patches 3-10 the last
    assert [f.target for f in loaded["bench_stack_01"].functions] == [
        "kpgen_bench_kpgen_1", "kpgen_bench_kpgen_2", "kpgen_bench_kpgen_10"]
    assert [f.target for f in loaded["bench_stack_02"].functions] == ["kpgen_bench_kpgen_2", "kpgen_bench_kpgen_10"]
    assert [f.target for f in loaded["bench_stack_10"].functions] == ["kpgen_bench_kpgen_10"]
    stacked = {n: sum(f"kpgen_bench_kpgen_{n}" in [f.target for f in s.functions] for s in loaded.values())
               for n in (1, 2, 10)}
    assert stacked == {1: 1, 2: 2, 10: 10}
    many = loaded["bench_many_1000"].functions
    assert len(many) == 1000 and {f.object for f in many} == {bench.FUNCS_MODULE}
    assert many[7].target == "kpgen_bench_fn_007" and many[7].replacement == "bench_many_1000_fn_007"
    direct = loaded[bench.DIRECT_PATCH].functions
    assert [f.target for f in direct] == ["kpgen_bench_kpgen_direct"] and direct[0].object == "kpgen_bench"


def test_module_columns_match_the_c_table():
    c = (bench.BENCH_MODULES / "kpgen_bench" / "main.c").read_text()
    names = c[c.index("kpgen_bench_names[] = {"):].split("};")[0]
    assert [w.strip(' "\n\t') for w in names.split("{")[1].split(",") if w.strip()] == list(bench.MODULE_CASES)
    assert {col for *_, col in bench.PERCALL_CASES} <= set(bench.MODULE_CASES) - {"stub"}


# --- statistics ------------------------------------------------------------------------------

def test_schedule_alternates_the_phase_order():
    assert bench.schedule(("a", "b", "c"), 2) == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a")]
    assert bench.schedule(("a", "b"), 3) == [(1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    runs = bench.schedule()
    assert len(runs) == len(bench.PHASES) * bench.PASSES and len(set(runs)) == len(runs)
    # a later boot numbers its passes on, and starts forward again
    assert bench.schedule(("a", "b"), 2, boot=2) == [(3, "a"), (3, "b"), (4, "b"), (4, "a")]
    assert [bench.boot_of(p) for p in (1, 2, 3, 4, 5)] == [1, 1, 2, 2, 3]


def test_median_ci_brackets_the_median_and_narrows_with_samples():
    xs = list(range(100))
    lo, hi = bench.median_ci(xs)
    # ranks 50 -+ 9.8: the 95 % interval of the median of 100 samples
    assert (lo, hi) == (40, 59)
    lo4, hi4 = bench.median_ci(list(range(400)))
    assert (hi4 - lo4) / 400 < (hi - lo) / 100
    assert bench.median_ci([5.0]) == (5.0, 5.0)
    assert bench.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)
    with pytest.raises(ValueError):
        bench.median_ci([])


def test_figure_holds_median_interval_and_spread():
    f = bench.figure([1.0, 9.0, 2.0, 3.0, 2.5])
    assert f.median == 2.5 and f.min == 1.0 and f.max == 9.0 and f.n == 5
    assert f.lo <= f.median <= f.hi
    s = bench.spread([4.0, 1.0, 2.0])
    assert (s.median, s.lo, s.hi) == (2.0, 1.0, 4.0)


@pytest.mark.parametrize(("lo", "hi", "limit", "expected"), [
    (0.9, 1.05, 1.1, "met"),
    (1.0, 1.1, 1.1, "met"),        # at the limit: <= holds
    (1.05, 1.15, 1.1, "level"),    # straddles: within noise, neither met nor missed
    (1.11, 1.2, 1.1, "missed"),
    (-0.3, -0.1, 0.0, "met"),
    (-0.1, 0.1, 0.0, "level"),
    (0.05, 0.2, 0.0, "missed"),
])
def test_verdict_three_ways(lo, hi, limit, expected):
    assert bench.verdict(lo, hi, limit) == expected


def test_verdict_refuses_an_empty_interval():
    with pytest.raises(ValueError):
        bench.verdict(2.0, 1.0, 1.5)


def test_normalise_divides_by_the_stub_of_the_same_round():
    rows = [{"stub": 10.0, "a": 30.0, "b": 15.0}, {"stub": 20.0, "a": 60.0, "b": 30.0}]
    # the second round ran twice as slow: normalised, the two rounds agree
    assert bench.normalise(rows) == [{"a": 3.0, "b": 1.5}, {"a": 3.0, "b": 1.5}]
    with pytest.raises(KpgenError, match="stub time of 0"):
        bench.normalise([{"stub": 0.0, "a": 1.0}])


def test_a_round_is_divided_by_the_faster_unhooked_copy():
    # a boot where the stub's translated code is slow: the other unhooked copy is the plain call
    rows = [{"stub": 43.5, "unpatched": 14.5, "a": 58.0}]
    assert bench.normalise(rows) == [{"unpatched": 1.0, "a": 4.0}]
    assert bench.baseline(rows[0]) == 14.5
    assert bench.baseline({"stub": 10.0, "unpatched": 10.5}) == 10.0


def test_pass_diff_pct():
    assert bench.pass_diff_pct(2.0, 2.1) == pytest.approx(5.0)
    assert bench.pass_diff_pct(2.0, 1.9) == pytest.approx(5.0)
    assert bench.pass_diff_pct(0.0, 0.0) == 0.0 and bench.pass_diff_pct(0.0, 1.0) == math.inf


def test_ratio_interval_is_the_widest_the_two_intervals_allow():
    num = bench.Figure(12.0, 11.0, 13.0, 10.0, 20.0, 9)
    den = bench.Figure(10.0, 9.0, 11.0, 8.0, 12.0, 9)
    value, lo, hi = bench.ratio_interval(num, den)
    assert value == pytest.approx(1.2) and lo == pytest.approx(1.0) and hi == pytest.approx(13 / 9)


# --- parsing ---------------------------------------------------------------------------------

def _run_text(rounds: list[dict[str, int]]) -> str:
    """/proc/kpgen_bench's text: each round's case times, in the module's column order (30000 ns
    for a case the round does not name)."""
    return "# " + " ".join(bench.MODULE_CASES) + "\n" + "".join(
        " ".join(str(r.get(c, 30000)) for c in bench.MODULE_CASES) + "\n" for r in rounds)


ROUND = {"stub": 2000, "unpatched": 2000, "ftrace_empty": 6000, "kpgen_1": 10000, "kpgen_2": 10000,
         "kpgen_10": 10000, "livepatch": 14000, "lp_backend": 14000}


def test_parse_run_gives_ns_per_call_of_two_chunks():
    rows = bench.parse_run("# stub kpgen_1\n4000 10000\n", calls=100)
    assert rows == [{"stub": 20.0, "kpgen_1": 50.0}]
    with pytest.raises(KpgenError, match="no \"#\" line"):
        bench.parse_run("1 2\n")
    with pytest.raises(KpgenError, match="line 2: 1 figures for 2 cases"):
        bench.parse_run("# stub a\n5\n")
    with pytest.raises(KpgenError, match="no figures"):
        bench.parse_run("# stub a\n")
    with pytest.raises(KpgenError, match="no stub"):
        bench.parse_run("# a b\n1 2\n")


Runs = dict[tuple[int, str], list[dict[str, float]]]
Pauses = Mapping[tuple[int, int], tuple[float, float]]


def _runs(kpgen: float, livepatch: float, other_1000: float, slow_round: float = 1.0, rounds: int = 21,
          second_pass: float = 1.0, boots: int = 1, later_boots: float = 1.0) -> Runs:
    """Runs of every (pass, phase) of `boots` boots; per call: stub 10 ns; each third round
    slowed down by slow_round (all cases alike); in the second pass of each boot, kpgen_1 scaled
    by second_pass; in every boot after the first, the kpgen cases scaled by later_boots."""
    runs: Runs = {}
    for p, phase in [run for b in range(1, boots + 1) for run in bench.schedule(boot=b)]:
        rows = []
        for i in range(rounds):
            k = slow_round if i % 3 == 0 else 1.0
            scale = second_pass if p % 2 == 0 else 1.0
            kp = (other_1000 if phase == "other_1000" else kpgen) * (later_boots if bench.boot_of(p) > 1 else 1.0)
            row = dict.fromkeys(bench.MODULE_CASES, 30.0) | {
                "stub": 10.0, "unpatched": 10.0, "kpgen_1": 10 + kp * scale, "kpgen_2": 10 + kp,
                "kpgen_10": 10 + kp, "livepatch": 10 + livepatch, "lp_backend": 10 + livepatch}
            rows.append({c: v * k for c, v in row.items()})
        runs[(p, phase)] = rows
    return runs


def test_percall_figures_cancel_a_slow_round_and_compare_passes():
    runs = _runs(40, 60, 40, slow_round=3.0)
    pc = {p.case: p for p in bench.percall_figures(runs)}
    # every third round ran 3 times slower: divided by its own stub, it does not show
    assert pc["kpgen_1"].x_stub.min == pc["kpgen_1"].x_stub.max == 5.0
    assert pc["unpatched"].x_stub.median == 1.0 and pc["livepatch"].x_stub.median == 7.0
    assert pc["kpgen_1"].net_ns.median == 40.0 and pc["kpgen_1"].stub_ns_median == 10.0
    assert pc["kpgen_1"].pass_diff_pct == 0.0
    pc2 = {p.case: p for p in bench.percall_figures(_runs(40, 60, 40, second_pass=1.1))}
    # pass 2: 44 ns over the stub against 40: x stub 5.4 against 5.0, 8 %; net 10 %
    assert pc2["kpgen_1"].pass_diff_pct == pytest.approx(8.0)
    assert pc2["kpgen_1"].net_pass_diff_pct == pytest.approx(10.0)
    with pytest.raises(KpgenError, match="no per-call run for pass 1, phase other_1"):
        bench.percall_figures({(1, "base"): runs[(1, "base")]})


def test_boots_are_compared_apart_from_passes():
    # two boots alike but for kpgen, 50 % dearer over the stub in the second: x stub 5.0 and 7.0
    pc = {p.case: p for p in bench.percall_figures(_runs(40, 60, 40, boots=2, later_boots=1.5))}
    k = pc["kpgen_1"]
    assert k.x_stub_boots == [5.0, 7.0] and k.boot_diff_pct == pytest.approx(40.0)
    assert len(k.x_stub_passes) == 4 and k.pass_diff_pct == 0.0
    assert pc["livepatch"].boot_diff_pct == 0.0
    # the passes of each boot are compared within that boot only: 5.0 against 5.4 in the first
    # (8 %), 7.0 against 7.6 in the second (8.6 %), and the figure is the larger
    pc2 = {p.case: p for p in bench.percall_figures(_runs(40, 60, 40, second_pass=1.1, boots=2, later_boots=1.5))}
    assert pc2["kpgen_1"].pass_diff_pct == pytest.approx(0.6 / 7 * 100)


def test_read_runs_takes_each_boot_from_its_directory(tmp_path):
    text = _run_text([ROUND] * 3)
    for b in (1, 2):
        d = bench.percall_dir(tmp_path, b)
        d.mkdir()
        for p, phase in bench.schedule(boot=b):
            (d / f"percall-{p}-{phase}.txt").write_text(text)
    runs = bench.read_runs(tmp_path, boots=2)
    assert sorted({p for p, _ in runs}) == [1, 2, 3, 4] and len(runs[(3, "base")]) == 3
    (bench.percall_dir(tmp_path, 2) / "percall-4-base.txt").unlink()
    with pytest.raises(KpgenError, match=r"run 4/base left no figures in .*percall-2/percall-4-base\.txt"):
        bench.read_runs(tmp_path, boots=2)


def test_parse_run_and_figures_from_module_text():
    text = _run_text([ROUND] * 5)
    rows = bench.parse_run(text, calls=100)
    assert rows[0]["stub"] == 10.0 and rows[0]["livepatch"] == 70.0


def test_apply_spread_and_failures():
    text = ("case=kpgen functions=100 extra_tasks=0 insmod_ns=3000000 functions=100 tasks=80 prechecked=78 "
            "unwound=4 trusted=76 tries=1 pause_ns=5000 result=0\n"
            "case=kpgen functions=100 extra_tasks=0 insmod_ns=1000000 functions=100 tasks=82 prechecked=80 "
            "unwound=6 trusted=76 tries=1 pause_ns=7000 result=0\n"
            "case=kpgen functions=100 extra_tasks=0 insmod_ns=2000000 functions=100 tasks=82 prechecked=80 "
            "unwound=5 trusted=76 tries=1 pause_ns=6500 result=0\n"
            "case=livepatch functions=1 extra_tasks=0 insmod_ns=9000000\n")
    rows = {(a.case, a.functions): a for a in bench.parse_apply(text)}
    a = rows[("kpgen", 100)]
    assert (a.insmod_ms.median, a.insmod_ms.min, a.insmod_ms.max) == (2.0, 1.0, 3.0)
    assert a.pause_us is not None and (a.pause_us.median, a.pause_us.lo, a.pause_us.hi) == (6.5, 5.0, 7.0)
    assert a.tasks_checked == 82 and a.unwound == 5 and a.trusted == 76
    assert a.rmmod_ms is None
    assert rows[("livepatch", 1)].pause_us is None
    timed = bench.parse_apply("case=kpgen_direct functions=1 extra_tasks=0 insmod_ns=1000000 rmmod_ns=4000000 "
                              "pause_ns=5000 result=0\n")[0]
    assert timed.rmmod_ms is not None and timed.rmmod_ms.median == 4.0
    with pytest.raises(KpgenError, match="failed"):
        bench.parse_apply("case=kpgen functions=1 extra_tasks=0 insmod_ns=1 pause_ns=1 result=-16\n")


# --- targets ---------------------------------------------------------------------------------

def _apply(pauses: Pauses) -> list[bench.Apply]:
    return [bench.Apply("kpgen", n, t, bench.spread([1.0]), bench.spread(list(p)), 10)
            for (n, t), p in pauses.items()]


def _targets(kpgen: float, livepatch: float, other_1000: float, pauses: Pauses, boots: int = 1,
             later_boots: float = 1.0) -> dict[str, str]:
    runs = _runs(kpgen, livepatch, other_1000, boots=boots, later_boots=later_boots)
    # noise of +-0.5 ns on kpgen_1, alternating, so that intervals have a width
    for rows in runs.values():
        for i, r in enumerate(rows):
            r["kpgen_1"] += 0.5 if i % 2 else -0.5
    return {t.name: t.verdict for t in bench.evaluate(bench.percall_figures(runs), _apply(pauses), runs)}


GOOD_PAUSES: Pauses = {(1, 0): (100, 110), (100, 0): (300, 310), (1000, 0): (600, 620),
               (1, 1000): (150, 160), (100, 1000): (400, 420), (1000, 1000): (900, 1000)}


def test_targets_met_missed_and_level():
    names = list(_targets(40, 60, 40, GOOD_PAUSES))
    assert len(names) == 6
    assert set(_targets(40, 60, 40, GOOD_PAUSES).values()) == {"met"}
    bad = dict(GOOD_PAUSES)
    bad[(1000, 0)] = (4000, 4100)
    bad[(1, 1000)] = (500, 600)
    verdicts = _targets(70, 60, 80, bad)
    assert list(verdicts.values()) == ["missed"] * 4 + ["met", "met"]
    # kpgen and livepatch alike, within the noise of the rounds: neither met nor missed
    level = _targets(40, 40, 44, {(1, 0): (100, 200), (1, 1000): (150, 250)})
    assert list(level.values()) == ["level", "level", "level"]


def test_a_per_call_target_is_met_or_missed_only_if_it_is_in_every_boot():
    kpgen_vs_lp = "kpgen per call <= livepatch (kpgen minus livepatch, x stub, <= 0)"
    # met in the first boot (40 against 60), missed in the second (70 against 60): level
    assert _targets(40, 60, 40, GOOD_PAUSES, boots=2, later_boots=1.75)[kpgen_vs_lp] == "level"
    assert _targets(40, 60, 40, GOOD_PAUSES, boots=3, later_boots=1.2)[kpgen_vs_lp] == "met"
    assert _targets(70, 60, 70, GOOD_PAUSES, boots=3, later_boots=1.2)[kpgen_vs_lp] == "missed"
    # 1000 other functions: each boot against its own 1-patch figure, so a dearer boot does not
    # make a miss
    other = "1000 other functions cost <= 1.1x one (net ns ratio)"
    assert _targets(40, 60, 40, GOOD_PAUSES, boots=2, later_boots=1.75)[other] == "met"


def test_missed_lists_only_misses():
    res = bench.KernelResult("r", 1.0)
    res.targets = [bench.Target("a", 1, 0, 2, 1.5, "level"), bench.Target("b", 3, 2.5, 3.5, 2, "missed"),
                   bench.Target("c", 1, 0.5, 1.2, 2, "met")]
    assert [t.name for t in bench.missed(res)] == ["b"]


def test_markdown_has_a_column_per_kernel_and_every_case():
    res = bench.KernelResult("r1", 1.0)
    runs = _runs(40, 60, 40)
    res.percall = bench.percall_figures(runs)
    res.apply = [*_apply(GOOD_PAUSES), bench.Apply("livepatch", 1, 0, bench.spread([50.0]), None, None)]
    res.targets = bench.evaluate(res.percall, res.apply, runs)
    text = bench.markdown([res, res])
    assert text.count("| r1 | r1 |") == 3
    cell = "7.00 [7.00, 7.00], 7.00-7.00; 60.0 ns; 0.0 % / 0.0 %"
    assert f"| upstream livepatch (hand-written) | {cell} | {cell} |" in text
    assert "| kpgen, 1 function(s), +0 sleeping tasks | 1 (1-1) / 105 (100-110) |" in text
    assert "| livepatch, 1 function(s), +0 sleeping tasks | 50 (50-50) | 50 (50-50) |" in text
    assert "| 1000 other functions cost <= 1.1x one (net ns ratio) | met: 1 [1, 1] |" in text


def test_apply_interval_leaves_out_outliers_from_enough_loads():
    """Five loads: the whole range. PAUSE_REPS loads: the interval of the median, so one load
    the host held up does not decide a pause target."""
    few = bench.spread([100.0, 101.0, 102.0, 103.0, 900.0])
    assert (few.lo, few.hi) == (100.0, 900.0)
    values = [100.0 + i for i in range(bench.PAUSE_REPS - 1)] + [900.0]
    many = bench.spread(values)
    assert many.hi < 900.0 and many.lo > 100.0 and many.max == 900.0
