"""kpatch's integration suite, read where it is kept (../shared/kpatch-integration): on 6.1 and
6.12, every case kpatch expects to build is made by `kpgen diff --build` for the kpatch and the
livepatch backend, and both -FAIL cases are refused for their reason. The boot tree's build
plans each case once and builds both backends from that plan; the guest loads what it built
(tests/vm/test_kpatch_suite.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen.harness import boottest, kpatchsuite

pytestmark = [pytest.mark.kbuild, pytest.mark.kpatch_suite]

KERNELS = ("6.1", "6.12")
SUITE = kpatchsuite.find(Path(__file__))
NOTES = Path(__file__).parents[1] / "kpatch_suite"
CASES = [(kname, case) for kname in KERNELS for case in (kpatchsuite.load(SUITE, NOTES, kname) if SUITE else [])]


def made(built: Callable[[str], boottest.BuiltTree], kname: str, name: str) -> kpatchsuite.Built:
    found = next((b for b in built(kname).suite if b.case.name == name), None)
    assert found is not None, f"the {kname} boot tree holds no result for {name}"
    return found


def test_the_suite_is_read_where_it_is() -> None:
    assert SUITE is not None, ("kpatch's integration suite is not in ../shared/kpatch-integration of the checkout "
                               "nor in $KPGEN_KPATCH_SUITE")
    for kname in KERNELS:
        cases = kpatchsuite.load(SUITE, NOTES, kname)
        assert len(cases) == 11, f"{SUITE / kname}: {len(cases)} cases"
        assert sorted(c.name for c in cases if not c.builds) == ["symvers-disagreement-FAIL", "warn-detect-FAIL"]
        assert all(c.loaded is not None or c.exercise is not None for c in cases if c.builds)


def _marks(case: kpatchsuite.Case) -> list[pytest.MarkDecorator]:
    if case.waits:
        return [pytest.mark.xfail(strict=True, reason=f"waits for {case.waits}: "
                                  "tests/kpatch_suite/notes.toml")]
    return []


@pytest.mark.parametrize(("kname", "case"), [pytest.param(k, c, marks=_marks(c), id=f"{k}-{c.name}")
                                             for k, c in CASES])
def test_case(kname: str, case: kpatchsuite.Case, built: Callable[[str], boottest.BuiltTree]) -> None:
    result = made(built, kname, case.name)
    if not case.builds:
        assert result.plan is None, f"{case.name} was not refused"
        assert case.refused in result.refusal, result.refusal
        return
    assert result.plan is not None, f"refused: {result.refusal}"
    assert not result.failures, "\n".join(f"{b}: {why}" for b, why in result.failures.items())
    assert sorted(result.kos) == sorted(kpatchsuite.BACKENDS)
    for backend, ko in result.kos.items():
        assert ko.is_file() and ko.name == f"{case.module(backend)}.ko"
