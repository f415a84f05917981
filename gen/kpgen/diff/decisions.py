"""What `kpgen diff` decides, shared by its stages: the functions it replaces, the kernel
symbols the module keeps using, and one decision per symbol, each printed for a reviewer
(`kpgen: NAME: ACTION (REASON)`) and said again in fix.c."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import PatchSpec
from .apply import AppliedFile

# The replacement of function f is livepatch_f in fix.c.
PREFIX = "livepatch_"


def replacement_name(name: str, targets: set[str]) -> str:
    """The replacement of target `name` in fix.c: livepatch_ and its name, leading underscores
    dropped unless another target of the unit is named so.

    >>> replacement_name("__x64_sys_newuname", set()), replacement_name("_proc_mkdir", {"proc_mkdir"})
    ('livepatch_x64_sys_newuname', 'livepatch__proc_mkdir')
    """
    short = name.lstrip("_")
    return PREFIX + (name if short != name and short in targets else short)


class Action(enum.StrEnum):
    """What kpgen does with one symbol (or fact), as the printed line names it."""

    READ = "read"  # where the running kernel's symbols were read from
    TARGET = "target"  # replaced: the kernel has it as itself and ftrace can hook it
    VIA_CALLERS = "via callers"  # changed, not patchable itself: its callers are replaced
    NEW = "new"  # a function the diff adds: compiled into the patch module
    COPY = "copy"  # the kernel has no usable copy: its source goes into fix.c
    EXTERN = "extern"  # the running kernel's own symbol, declared extern
    EXPORTED = "exported"  # exported by the kernel: used as it is
    FRESH = "fresh"  # data of the patch module's own, new in the diff or a per-site static
    KERNEL_STATIC = "kernel's static"  # a function-local static: the running kernel's variable
    CALLBACK = "callback"  # a kpatch callback macro: a callback of the object
    FORCE = "force"  # KPATCH_FORCE_UNSAFE: switched without the activeness check
    IGNORED = "ignored"  # a kpatch marker kpgen has no use for, or new code nothing calls
    RENAMED = "renamed"  # another file of the diff has its own of that name: fix.c holds both


@dataclass(frozen=True)
class Decision:
    """One decision about one symbol, and why."""

    symbol: str
    action: Action
    reason: str

    def line(self) -> str:
        """The decision as `kpgen diff` prints it.

        >>> Decision("f", Action.TARGET, "its compiled code changed").line()
        'f: target (its compiled code changed)'
        """
        return f"{self.symbol}: {self.action} ({self.reason})"


@dataclass(frozen=True)
class Target:
    """A function the patch module replaces."""

    name: str
    object: str
    sympos: int
    replacement: str
    unit: str  # the .c file it comes from
    force: bool = False  # switched without the activeness check (KPATCH_FORCE_UNSAFE)


@dataclass(frozen=True)
class SymbolUse:
    """A kernel symbol the module uses that needs a [[symbol]] table: a position, a module,
    or a kallsyms name that is not the C name."""

    ident: str  # the C name fix.c uses
    kallsyms: str
    object: str
    sympos: int


@dataclass(frozen=True)
class HeaderCopy:
    """A definition or declaration that a kernel header gives the kernel's own code only
    (under `#ifndef MODULE`), copied into fix.c after the includes."""

    name: str
    header: str  # as the tree names it: arch/x86/include/asm/tlbflush.h
    text: str
    declaration: bool  # a function's or a variable's declaration: the kernel's own, reached by a klp relocation


@dataclass
class Plan:
    """What kpgen diff makes of a diff: the functions it replaces, the kernel symbols and
    callbacks the module needs, each decision, and the spec and fix.c."""

    name: str
    patch: Path | None  # the diff (None for `kpgen new`)
    release: str
    targets: list[Target] = field(default_factory=list)
    symbols: list[SymbolUse] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    applied: list[AppliedFile] = field(default_factory=list)  # where each file's hunks landed
    objects: dict[str, dict[str, str]] = field(default_factory=dict)  # object -> callback kind -> function
    header_copies: list[HeaderCopy] = field(default_factory=list)
    fix_c: str = ""
    spec: PatchSpec | None = None

    def decide(self, symbol: str, action: Action, reason: str) -> None:
        """Records a decision, once."""
        if not any(d == Decision(symbol, action, reason) for d in self.decisions):
            self.decisions.append(Decision(symbol, action, reason))
