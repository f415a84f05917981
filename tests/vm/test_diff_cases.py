"""The diff corpus in the guest: each case that builds for a kernel has its LOADED check run
in that kernel's one boot (scenario diff_<case>: fails before the module made by
`kpgen diff --build` is loaded, passes while it is, fails after it is removed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen.harness import boottest, diffcases

pytestmark = pytest.mark.vm

CASES = [(kname, c.name) for c in diffcases.load(Path(__file__).parent.parent / "diffs")
         for kname, expect in sorted(c.kernels.items()) if expect.targets]


def test_every_building_case_has_a_loaded_check() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize(("kname", "case"), CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_diff_case_loaded(booted: Callable[[str], boottest.BootReport], kname: str, case: str) -> None:
    report = booted(kname)
    scenario = f"diff_{case}"
    assert scenario in report.results, f"the guest did not report {scenario}: was the case built into the tree?"
    if not report.results[scenario]:
        pytest.fail(f"{scenario} failed in the guest:\n" + "\n".join(boottest.details(report.tap, scenario)))
