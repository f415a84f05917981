"""Boot tests: each kernel of gen/kpgen/data/kernels.toml boots once and runs every guest scenario.

A scenario passes when the guest reported `ok` for it; a kernel's run passes only if the
guest finished, reported every scenario, and its kernel log has no splat.
"""

from __future__ import annotations

import pytest

from kpgen import kernel
from kpgen.harness import boottest

KERNELS = [m.name for m in kernel.matrix()]

pytestmark = pytest.mark.vm
SCENARIOS = boottest.scenario_names()
CASES = [(k, s) for k in KERNELS for s in SCENARIOS]


def test_scenario_list_is_not_empty():
    assert len(SCENARIOS) >= 30


@pytest.mark.parametrize(("kname", "scenario"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_scenario(booted, kname, scenario):
    report = booted(kname)
    assert scenario in report.results, (
        f"the guest did not report {scenario} (timed out: {report.run.timed_out}); "
        f"console log: {report.results_dir / 'console.log'}"
    )
    if not report.results[scenario]:
        pytest.fail(f"{scenario} failed in the guest:\n" + "\n".join(boottest.details(report.tap, scenario)))


@pytest.mark.parametrize("kname", KERNELS)
def test_guest_finished(booted, kname):
    """The guest ran every scenario its runner lists for the built tree (those registered from
    what the tree holds included), and every one passed."""
    report = booted(kname)
    run = report.run
    assert not run.timed_out, f"the guest timed out after {run.seconds:.0f} s"
    assert run.returncode == 0, f"the guest script exited {run.returncode}: see the failed scenarios"
    assert report.expected == boottest.scenario_names(report.results_dir.parent)
    assert list(report.results) == report.expected, f"not reported: {report.missing}"
    failed = [name for name, ok in report.results.items() if not ok]
    assert not failed, f"failed in the guest: {failed}"


@pytest.mark.parametrize("kname", KERNELS)
def test_dmesg_clean(booted, kname):
    report = booted(kname)
    assert report.dmesg, "the guest saved no kernel log"
    assert not report.splats, "kernel log shows splats:\n" + "\n".join(report.splats)


@pytest.mark.parametrize("kname", KERNELS)
def test_snapshot_checks_specs_without_booting(booted, kname, tmp_path):
    """The boot saved this kernel's symbols; specs are now checked against them before any boot."""
    from kpgen import generate, snapshot, spec
    from kpgen.resources import SAMPLES, TEST_PATCHES

    report = booted(kname)
    snap = snapshot.load(report.kernel.release)
    assert snap is not None, "the boot did not leave a symbol snapshot"
    for path in generate.sample_specs():
        snapshot.validate(spec.load(path), snap)
    refused = {
        "test_missing": "does not exist in vmlinux",
        "test_init": "ftrace cannot hook 'start_kernel'",
        "test_notrace": "ftrace cannot hook 'kpgen_test_notrace'",
        "test_ambiguous": "appears 2 times in kpgen_test_target",
    }
    for name, problem in refused.items():
        with pytest.raises(spec.SpecError, match=problem):
            snapshot.validate(spec.load(TEST_PATCHES / name / f"{name}.toml"), snap)
    snapshot.validate(spec.load(TEST_PATCHES / "test_sympos/test_sympos.toml"), snap)
    with pytest.raises(spec.SpecError, match="neither exported nor in vmlinux"):
        snapshot.validate(spec.load(SAMPLES / "cmdline_a/cmdline_a.toml"), snap, ["kpgen_no_such_var"])
