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


class DiffRefused(UsageError):
    """A source diff that cannot become a live patch (`kpgen diff`): where (the diff, a file, a
    function), what is wrong there, and what to do instead. Exit status 2; nothing is written."""

    def __init__(self, where: str, problem: str, instead: str):
        self.where, self.problem, self.instead = where, problem, instead
        super().__init__(f"{where}: {problem}; {instead}")


class DefinitionError(UsageError):
    """No .c file of the kernel source, or several, define a function: `files` holds those that do."""

    def __init__(self, func: str, files: list[str], message: str):
        self.func, self.files = func, files
        super().__init__(message)
