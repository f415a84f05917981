"""Shared fixtures: the kernel matrix, one build tree and one boot per kernel per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from kpgen import kernel
from kpgen.harness import boottest

KERNELS = [m.name for m in kernel.matrix()]
DIFF_CORPUS = Path(__file__).parent / "diffs"
# One line per booted kernel and the figures its guest reported, shown at the end of the run.
BOOT_SUMMARIES: list[str] = []


T = TypeVar("T")


def _cached(make: Callable[[str], T]) -> Callable[[str], T]:
    """Compute once per kernel name; a failure is remembered and raised again for each test."""
    cache: dict[str, T | Exception] = {}

    def get(name: str) -> T:
        if name not in cache:
            try:
                cache[name] = make(name)
            except Exception as exc:  # noqa: BLE001 - re-raised below for every dependent test
                cache[name] = exc
        value = cache[name]
        if isinstance(value, Exception):
            raise value
        return value

    return get


@pytest.fixture(scope="session")
def probed() -> Callable[[str], kernel.Kernel]:
    by_name = {m.name: m for m in kernel.matrix()}
    return _cached(lambda name: kernel.probe(by_name[name].kdir()))


@pytest.fixture(scope="session")
def built(probed: Callable[[str], kernel.Kernel]) -> Callable[[str], boottest.BuiltTree]:
    # the diff corpus is repository test data: the harness builds its cases into the tree
    return _cached(lambda name: boottest.build_tree(probed(name), diffs=DIFF_CORPUS))


@pytest.fixture(scope="session")
def booted(built: Callable[[str], boottest.BuiltTree],
           pytestconfig: pytest.Config) -> Callable[[str], boottest.BootReport]:
    # each scenario's result as the guest reports it, on the terminal (a boot takes minutes):
    # written past pytest's output capture, which is active while fixtures run
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def show(line: str) -> None:
        if terminal is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    def boot(name: str) -> boottest.BootReport:
        report = boottest.boot(built(name), progress=show)
        BOOT_SUMMARIES.append(report.summary())
        BOOT_SUMMARIES.extend(f"  {line[2:]}" for line in report.tap.splitlines() if line.startswith("# figure: "))
        return report

    return _cached(boot)


# The steps of ci/container.sh, with their elapsed seconds, shown at the end of the run.
CONTAINER_STEPS: list[str] = []


@pytest.fixture(scope="session")
def container_steps() -> list[str]:
    return CONTAINER_STEPS


# Spec tests that feed kpgen hostile or malformed input, counted for the summary.
HOSTILE_SPEC_TESTS: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    HOSTILE_SPEC_TESTS.extend(
        item.nodeid for item in items
        if item.nodeid.startswith("tests/unit/test_spec.py::")
        and any(word in item.name for word in ("bad", "refused", "hostile", "non_utf8", "not_a_definition"))
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if HOSTILE_SPEC_TESTS:
        terminalreporter.section("kpgen input checks")
        terminalreporter.write_line(f"hostile or malformed spec classes tested: {len(HOSTILE_SPEC_TESTS)}")
    if CONTAINER_STEPS:
        terminalreporter.section("kpgen container")
        for line in CONTAINER_STEPS:
            terminalreporter.write_line(line)
    if BOOT_SUMMARIES:
        terminalreporter.section("kpgen boot tests")
        for line in BOOT_SUMMARIES:
            terminalreporter.write_line(line)
