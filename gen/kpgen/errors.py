"""Errors kpgen reports to the user, each with an exit code and no traceback."""

from __future__ import annotations


class KpgenError(Exception):
    """An expected failure: the message says what is wrong and what to do."""

    exit_code = 1


class UsageError(KpgenError):
    """Bad input from the user (a spec, an option, a path): exit status 2."""

    exit_code = 2


class KernelError(KpgenError):
    """The kernel build directory is missing, broken or lacks a needed option."""

    exit_code = 3


class BuildError(KpgenError):
    """Kbuild failed or produced a module that fails its checks."""

    exit_code = 4


class LiveError(KpgenError):
    """The running kernel refused a change (a load, an unload), or a transition did not complete
    in time: exit status 5. The message says why, in the words of the kernel's log."""

    exit_code = 5
