"""kpatch's integration suite in the guest: each case built for each backend is loaded in its
kernel's one boot (scenario kpatch_<case>_<backend>): its LOADED test fails before the load,
passes while the patch is applied and fails after its removal; a case without one is loaded,
exercised and removed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen.harness import boottest, kpatchsuite

pytestmark = [pytest.mark.vm, pytest.mark.kpatch_suite]

SUITE = kpatchsuite.find(Path(__file__))
NOTES = Path(__file__).parents[1] / "kpatch_suite"
CASES = [(kname, case, backend) for kname in ("6.1", "6.12")
         for case in (kpatchsuite.load(SUITE, NOTES, kname) if SUITE else []) if case.builds
         for backend in kpatchsuite.BACKENDS]


@pytest.mark.parametrize(("kname", "case", "backend"), [
    pytest.param(k, c, b, id=f"{k}-{c.name}-{b}", marks=[pytest.mark.xfail(
        strict=True, reason=f"not built: waits for klp relocations ({c.waits})")] if c.waits else [])
    for k, c, b in CASES])
def test_case_in_the_guest(booted: Callable[[str], boottest.BootReport], kname: str, case: kpatchsuite.Case,
                           backend: str) -> None:
    report = booted(kname)
    scenario = f"kpatch_{case.name.replace('-', '_')}_{backend}"
    assert scenario in report.results, f"the guest did not report {scenario}: was the case built into the tree?"
    if not report.results[scenario]:
        pytest.fail(f"{scenario} failed in the guest:\n" + "\n".join(boottest.details(report.tap, scenario)))
