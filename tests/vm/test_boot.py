"""Boot tests: each kernel of ci/kernels.toml boots once and runs every guest scenario.

A scenario passes when the guest reported `ok` for it; a kernel's run passes only if the
guest finished, reported every scenario, and its kernel log has no splat.
"""

from __future__ import annotations

import pytest

from kpgen import boottest

KERNELS = [m.name for m in boottest.matrix()]

pytestmark = pytest.mark.vm
SCENARIOS = boottest.scenario_names()
CASES = [(k, s) for k in KERNELS for s in SCENARIOS]


def test_scenario_list_is_not_empty():
    assert len(SCENARIOS) >= 13


@pytest.mark.parametrize(("kname", "scenario"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_scenario(booted, kname, scenario):
    report = booted(kname)
    assert scenario in report.results, (
        f"the guest did not report {scenario} (timed out: {report.run.timed_out}); "
        f"console log: {report.results_dir / 'console.log'}"
    )
    if not report.results[scenario]:
        details = [line for line in report.tap.splitlines() if line.startswith("#")]
        pytest.fail(f"{scenario} failed in the guest:\n" + "\n".join(details))


@pytest.mark.parametrize("kname", KERNELS)
def test_guest_finished(booted, kname):
    report = booted(kname)
    assert not report.run.timed_out, f"the guest timed out after {report.run.seconds:.0f} s"
    assert report.run.returncode == 0, f"the guest script exited {report.run.returncode}"
    assert sorted(report.results) == sorted(SCENARIOS)


@pytest.mark.parametrize("kname", KERNELS)
def test_dmesg_clean(booted, kname):
    report = booted(kname)
    assert report.dmesg, "the guest saved no kernel log"
    assert not report.splats, "kernel log shows splats:\n" + "\n".join(report.splats)
