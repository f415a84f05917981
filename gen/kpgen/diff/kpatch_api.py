"""kpatch's patch-author markers in a diff (kpatch-macros.h, as kpgen provides it): callbacks
of the file's object, functions switched without the activeness check, changes to leave
alone. Each marker is one decision; what it becomes is in the spec and fix.c."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DiffRefused
from .compare import CompiledUnit
from .decisions import PREFIX, Action, Plan

CALLBACKS = {"KPATCH_PRE_PATCH_CALLBACK": "pre_patch", "KPATCH_POST_PATCH_CALLBACK": "post_patch",
             "KPATCH_PRE_UNPATCH_CALLBACK": "pre_unpatch", "KPATCH_POST_UNPATCH_CALLBACK": "post_unpatch"}


@dataclass
class Markers:
    """What one file's markers ask for."""

    callbacks: dict[str, str] = field(default_factory=dict)  # kind -> the file's function
    force: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def read(p: Plan, cu: CompiledUnit) -> Markers:
    """Returns the markers of a changed file, each decided; refuses a file that names two
    callbacks of one kind."""
    out = Markers()
    obj = cu.unit.object
    for m in cu.new_parsed.markers:
        arg = m.args[0] if m.args else ""
        if m.name in CALLBACKS:
            kind = CALLBACKS[m.name]
            if kind in out.callbacks:
                raise DiffRefused(f"{cu.unit.rel}: {m.name}({arg})", f"the file already names {out.callbacks[kind]}() "
                                  f"as the {kind} callback of {obj}", "give each object one callback of each kind")
            out.callbacks[kind] = arg
            p.decide(arg, Action.CALLBACK, f"{m.name}: the {kind} callback of {obj}, given the object as kpatch "
                     "gives it (patch_object: its name and module)")
        elif m.name == "KPATCH_FORCE_UNSAFE":
            out.force.add(arg)
            p.decide(arg, Action.FORCE, "KPATCH_FORCE_UNSAFE: switched without the activeness check (force = true); "
                     "the livepatch backend switches each task on its own and has no use for it")
        elif m.name == "KPATCH_IGNORE_FUNCTION":
            out.ignored.add(arg)
            p.decide(arg, Action.IGNORED, "KPATCH_IGNORE_FUNCTION: its changes are a side effect and are not "
                     "patched")
        else:
            p.decide(f"{m.name}({arg})", Action.IGNORED, "no meaning for kpgen, which compares functions and data, "
                     "not sections")
    return out


def adapter_name(obj: str, kind: str) -> str:
    """The function of fix.c that kpgen's [[object]] table names for a kpatch callback.

    >>> adapter_name("joydev", "pre_patch")
    'livepatch_joydev_pre_patch'
    """
    return f"{PREFIX}{obj}_{kind}"


def add_objects(p: Plan, obj: str, callbacks: dict[str, str], where: str) -> None:
    """Records the callbacks of one file as its object's; refuses a second callback of one kind
    for one object."""
    if not callbacks:
        return
    table = p.objects.setdefault(obj, {})
    for kind in callbacks:
        if kind in table:
            raise DiffRefused(where, f"another file of the diff also names a {kind} callback of {obj}",
                              "give each object one callback of each kind")
        table[kind] = adapter_name(obj, kind)
