"""Kernel symbols as kallsyms lists them (a made-up text), and how the diff picks one of several
same-named symbols."""

from __future__ import annotations

import pytest

from kpgen import ksyms
from kpgen.diff import targets
from kpgen.errors import DiffRefused

KALLSYMS = """\
t show.isra.0
t helper
T visible
d state.1
t helper
t other
d state.1
T last
"""


def symbols(text: str = KALLSYMS) -> ksyms.ObjectSymbols:
    return ksyms.ObjectSymbols("vmlinux", [(t, n) for t, n in (line.split() for line in text.splitlines())])


def test_positions_by_kind() -> None:
    syms = symbols()
    assert syms.positions("helper") == [1, 4]
    assert syms.positions("state.1") == [] and syms.positions("state.1", text=False) == [3, 6]
    assert syms.has("visible") and not syms.has("absent")


def test_one_of_several_is_the_one_among_the_units_neighbours() -> None:
    syms = symbols("".join(f"t pad{i}\n" for i in range(40)) + "t helper\nT mine\n"
                   + "".join(f"t gap{i}\n" for i in range(80)) + "t helper\nT theirs\n")
    assert targets.pick_position(syms, "helper", {"mine"}, text=True) == 1
    assert targets.pick_position(syms, "helper", {"theirs"}, text=True) == 2
    assert targets.pick_position(syms, "mine", {"helper"}, text=True) == 0


def test_a_tie_is_refused() -> None:
    with pytest.raises(DiffRefused) as info:
        targets.pick_position(symbols(), "helper", {"visible"}, text=True)
    assert (info.value.where, info.value.problem) == (
        "helper", "it appears 2 times in vmlinux, and kpgen cannot tell which one is this file's")
