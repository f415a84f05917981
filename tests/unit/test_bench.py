"""The benchmark's host side: its generated specs load, and raw guest figures become the right numbers."""

from __future__ import annotations

import pytest

from kpgen import spec
from kpgen.errors import KpgenError
from kpgen.harness import bench


def test_written_specs_are_valid(tmp_path):
    paths = bench.write_specs(tmp_path)
    loaded = {p.stem: spec.load(p) for p in paths}
    assert len([n for n in loaded if n.startswith("bench_stack_")]) == bench.STACKED
    assert loaded["bench_stack_03"].functions[0].target == "jiffies_to_msecs"
    many = loaded["bench_many_1000"].functions
    assert len(many) == 1000 and {f.object for f in many} == {"kpgen_bench"}
    assert many[7].target == "kpgen_bench_fn_007" and many[7].replacement == "bench_many_1000_fn_007"


def test_percall_net_is_target_minus_stub_per_call():
    p = bench.parse_percall("c", "label", "3000 1000\n5000 1000\n4000 9000\n", calls=100)
    assert p.net_ns_min == 20  # 3000/100 - 1000/100: the interrupted stub chunk does not count
    assert p.target_ns_median == 40 and p.stub_ns_median == 10 and p.net_ns_median == 30 and p.reps == 3
    with pytest.raises(KpgenError, match="no figures"):
        bench.parse_percall("c", "label", "\n")


def test_apply_medians_and_failures():
    text = ("case=kpgen functions=100 extra_tasks=0 insmod_ns=3000000 functions=100 tasks=80 tries=1 "
            "pause_ns=5000 result=0\n"
            "case=kpgen functions=100 extra_tasks=0 insmod_ns=1000000 functions=100 tasks=82 tries=1 "
            "pause_ns=7000 result=0\n"
            "case=livepatch functions=1 extra_tasks=0 insmod_ns=9000000\n")
    rows = {(a.case, a.functions): a for a in bench.parse_apply(text)}
    assert rows[("kpgen", 100)].insmod_ms_median == 2.0
    assert rows[("kpgen", 100)].pause_us_median == 6.0 and rows[("kpgen", 100)].tasks_checked == 82
    assert rows[("livepatch", 1)].pause_us_median is None
    with pytest.raises(KpgenError, match="failed"):
        bench.parse_apply("case=kpgen functions=1 extra_tasks=0 insmod_ns=1 pause_ns=1 result=-16\n")


def _result(kpgen_1: float, livepatch: float, other_1000: float, pause_100: float,
            pause_1000: float) -> dict[str, bool]:
    res = bench.KernelResult("r", 1.0)
    values = {"unpatched": 0.0, "ftrace_empty": 5.0, "kpgen_1": kpgen_1, "kpgen_2": kpgen_1, "kpgen_10": kpgen_1,
              "kpgen_1_other_1": kpgen_1, "kpgen_1_other_100": kpgen_1, "kpgen_1_other_1000": other_1000,
              "livepatch": livepatch}
    res.percall = [bench.PerCall(c, c, v, v, v + 10, 10, 1, 1) for c, v in values.items()]
    res.apply = [bench.Apply("kpgen", n, 0, 1.0, p, 10) for n, p in ((1, 100), (100, pause_100), (1000, pause_1000))]
    return bench.evaluate(res)


def test_targets():
    assert all(_result(10, 12, 10.5, 300, 2000).values())
    checks = _result(13, 12, 20, 300, 3000)
    assert not any(checks.values()) and len(checks) == 3


def test_markdown_has_a_column_per_kernel_and_every_case():
    res = bench.KernelResult("r1", 1.0)
    res.percall = [bench.PerCall(c, label, 1.0, 2.0, 3.0, 1.0, 1, 1) for c, label in bench.PERCALL_CASES]
    res.apply = [bench.Apply("kpgen", 1, 0, 5.0, 7.0, 9), bench.Apply("livepatch", 1, 0, 50.0, None, None)]
    res.checks = {"kpgen per-call overhead <= livepatch": True}
    text = bench.markdown([res, res])
    assert text.count("| r1 | r1 |") == 3
    assert "| upstream livepatch | 2.0 (1.0) | 2.0 (1.0) |" in text
    assert "| kpgen, 1 function(s), +0 sleeping tasks | 5 / 7 | 5 / 7 |" in text
    assert "| livepatch, 1 function(s), +0 sleeping tasks | 50 | 50 |" in text
    assert "| kpgen per-call overhead <= livepatch | met | met |" in text
