"""What kpgen says while it works: a line for each step that takes longer than about two
seconds (on a terminal; `-q` silences them), and with `-v` each command it runs and its output.

Steps announce themselves with `step("reading ...")`; a step that ends sooner prints nothing,
so quick runs stay quiet. Lines go to stderr, so that stdout keeps only results.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

# after this many seconds a step says what it is doing
DELAY = 2.0


@dataclass
class Settings:
    """-q and -v, and whether stderr is a terminal (progress lines are for people, not logs)."""

    quiet: bool = False
    verbose: bool = False
    terminal: bool = False


SETTINGS = Settings()
_lock = threading.Lock()


def configure(quiet: bool = False, verbose: bool = False) -> None:
    SETTINGS.quiet, SETTINGS.verbose = quiet, verbose
    SETTINGS.terminal = sys.stderr.isatty()


def _say(line: str) -> None:
    with _lock:
        print(f"kpgen: {line}", file=sys.stderr, flush=True)


@contextmanager
def step(what: str) -> Iterator[None]:
    """A step of the work: said on a terminal (or with -v) once it has run for DELAY seconds."""
    show = SETTINGS.verbose or (SETTINGS.terminal and not SETTINGS.quiet)
    if not show:
        yield
        return
    start = time.monotonic()
    said = threading.Event()

    def announce() -> None:
        said.set()
        _say(f"{what} ...")

    timer = threading.Timer(0 if SETTINGS.verbose else DELAY, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if said.is_set():
            _say(f"{what}: {time.monotonic() - start:.1f} s")


def command(argv: Sequence[str]) -> None:
    """With -v: the command kpgen runs, as a shell would take it."""
    if SETTINGS.verbose:
        _say(f"running: {shlex.join(argv)}")


def output(text: str) -> None:
    """With -v: what a command printed."""
    if SETTINGS.verbose and text.strip():
        with _lock:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
