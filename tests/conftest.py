"""Shared fixtures: the kernel matrix, one build tree and one boot per kernel per session."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from kpgen import kernel
from kpgen.harness import boottest, diffcases, kpatchsuite

KERNELS = [m.name for m in kernel.matrix()]
DIFF_CORPUS = Path(__file__).parent / "diffs"
# kpatch's integration suite, read where it is kept (../shared/kpatch-integration), and the
# repository's notes on it
KPATCH_SUITE = kpatchsuite.find(Path(__file__))
KPATCH_NOTES = Path(__file__).parent / "kpatch_suite"
# One line per booted kernel and the figures its guest reported, shown at the end of the run.
BOOT_SUMMARIES: list[str] = []
# The seconds of `kpgen diff --build` per case of the diff corpus and of kpatch's suite.
DIFF_TIMES: list[str] = []


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
def built(probed: Callable[[str], kernel.Kernel], pytestconfig: pytest.Config) -> Callable[[str], boottest.BuiltTree]:
    # the diff corpus is repository test data: the harness builds its cases into the tree;
    # kpatch's suite only when the run has its tests (make test-kpatch-suite, not make test)
    wanted = pytestconfig.stash.get(_HAS_SUITE, True)
    suite = (KPATCH_SUITE, KPATCH_NOTES) if KPATCH_SUITE is not None and wanted else None

    def build(name: str) -> boottest.BuiltTree:
        tree = boottest.build_tree(probed(name), diffs=DIFF_CORPUS, suite=suite)
        DIFF_TIMES.extend(diffcases.timing(name, tree.diffs, tree.suite))
        return tree

    return _cached(build)


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


class ContainerJob:
    """`bash ci/container.sh` run in the background. A boot keeps one host CPU busy (QEMU runs
    every vCPU on one thread) and leaves the other idle: when the run has boot tests, the image
    is built on that CPU while the guests run, and the container's test, moved to the end of the
    run, waits for the result."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.log_path = repo / "build" / "container" / "container.log"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.started_at = 0.0
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        if self.proc is not None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            # at a lower priority: the guest's emulator keeps its CPU, the image gets the rest
            ["nice", "-n", "10", "bash", str(self.repo / "ci" / "container.sh"), "--engine", "podman"], cwd=self.repo,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.proc.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()
                if line.startswith("[container "):
                    CONTAINER_STEPS.append(line.rstrip())

    def wait(self, timeout: float) -> tuple[int | None, float]:
        """The exit status (None if it was killed at the timeout, counted from its start) and
        the seconds it ran."""
        self.start()
        assert self.proc is not None
        left = max(1.0, timeout - (time.monotonic() - self.started_at))
        try:
            status: int | None = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait()
            status = None
        if self._reader is not None:
            self._reader.join(timeout=30)
        return status, time.monotonic() - self.started_at

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)


CONTAINER = ContainerJob(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="session")
def container_steps() -> list[str]:
    return CONTAINER_STEPS


@pytest.fixture(scope="session")
def container_job() -> ContainerJob:
    return CONTAINER


def pytest_runtest_setup(item: pytest.Item) -> None:
    # the first boot test starts the image build beside it, if the run has the container's test
    if item.get_closest_marker("vm") and item.session.config.stash.get(_HAS_CONTAINER, False):
        CONTAINER.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    CONTAINER.stop()


# Spec tests that feed kpgen hostile or malformed input, counted for the summary.
HOSTILE_SPEC_TESTS: list[str] = []


_HAS_CONTAINER = pytest.StashKey[bool]()
_HAS_SUITE = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # after -m has deselected: whether the boot trees need kpatch's suite
    config.stash[_HAS_SUITE] = any(item.get_closest_marker("kpatch_suite") for item in items)
    # the container's test goes last: its image builds in the background during the boots
    container = [item for item in items if item.get_closest_marker("container")]
    config.stash[_HAS_CONTAINER] = bool(container)
    if container:
        items[:] = [item for item in items if item not in container] + container
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
    if DIFF_TIMES:
        terminalreporter.section("kpgen diff")
        for line in DIFF_TIMES:
            terminalreporter.write_line(line)
    if BOOT_SUMMARIES:
        terminalreporter.section("kpgen boot tests")
        for line in BOOT_SUMMARIES:
            terminalreporter.write_line(line)
