"""Shared fixtures: the kernel matrix, one build tree and one boot per kernel per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kpgen import boottest, kernel

KERNELS = [m.name for m in boottest.matrix()]


def _cached(make: Callable[[str], object]) -> Callable[[str], object]:
    """Compute once per kernel name; a failure is remembered and raised again for each test."""
    cache: dict[str, object] = {}

    def get(name: str) -> object:
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
    by_name = {m.name: m for m in boottest.matrix()}
    return _cached(lambda name: kernel.probe(by_name[name].kdir()))  # type: ignore[return-value]


@pytest.fixture(scope="session")
def built(probed) -> Callable[[str], boottest.BuiltTree]:
    return _cached(lambda name: boottest.build_tree(probed(name)))  # type: ignore[return-value]


@pytest.fixture(scope="session")
def booted(built) -> Callable[[str], boottest.BootReport]:
    def boot(name: str) -> boottest.BootReport:
        report = boottest.boot(built(name))
        print(f"\n{report.tap}{report.summary()}")
        return report

    return _cached(boot)  # type: ignore[return-value]
