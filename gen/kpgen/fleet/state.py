"""The live patches of the running kernel, as sysfs and /proc show them: kpgen's core's patches
(/sys/kernel/kpatch, docs/sysfs.md), the kernel's livepatches (/sys/kernel/livepatch: any
livepatch module, kpgen's or not), loaded livepatch modules the kernel no longer lists (disabled,
or replaced by a cumulative patch), and the tasks a livepatch transition waits for
(/proc/<pid>/task/<tid>/patch_state).

Readers take the file system's root, so that they can be pointed at a copy; the parsers of each
file's text are separate functions.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

KPATCH = "sys/kernel/kpatch"
LIVEPATCH = "sys/kernel/livepatch"
CORE = "kpatch"
# a livepatch function's sysfs directory: "NAME,SYMPOS"
FUNC_DIR_RE = re.compile(r"(?P<name>[^,]+),(?P<sympos>\d+)\Z")


@dataclass(frozen=True)
class Function:
    object: str
    name: str
    sympos: int
    # kpgen's core: active, covered, pending or disabled (docs/sysfs.md); livepatch: patched or
    # unpatched, from its object's `patched`
    state: str


@dataclass(frozen=True)
class LivePatch:
    name: str
    backend: str  # "kpatch" (kpgen's core) or "livepatch" (the kernel's)
    enabled: bool
    functions: tuple[Function, ...]
    # livepatch: a transition is under way; listed: the kernel's livepatch lists it (a disabled
    # or replaced livepatch module stays loaded, unlisted, until it is removed)
    transition: bool = False
    listed: bool = True

    @property
    def objects(self) -> list[str]:
        seen: list[str] = []
        for f in self.functions:
            if f.object not in seen:
                seen.append(f.object)
        return seen


@dataclass(frozen=True)
class Module:
    """A line of /proc/modules."""

    name: str
    refcount: int
    holders: tuple[str, ...]
    state: str  # Live, Loading, Unloading
    taints: str  # the module's taint letters, e.g. "OEK" (K: a livepatch module)


def parse_modules(text: str) -> list[Module]:
    """/proc/modules, newest first.

    >>> parse_modules("fix 16384 0 - Live 0x0000000000000000 (OEK)\\nkpatch 69632 1 fix, Live 0x0 (OE)\\n")
    [Module(name='fix', refcount=0, holders=(), state='Live', taints='OEK'), Module(name='kpatch', \
refcount=1, holders=('fix',), state='Live', taints='OE')]
    """
    modules = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        holders = tuple(h for h in fields[3].split(",") if h and h != "-")
        taints = fields[6].strip("()") if len(fields) > 6 and fields[6].startswith("(") else ""
        modules.append(Module(fields[0], int(fields[2]), holders, fields[4], taints))
    return modules


def parse_kpatch_functions(text: str) -> list[Function]:
    """/sys/kernel/kpatch/<patch>/functions: `OBJECT FUNCTION,SYMPOS STATE` lines.

    >>> parse_kpatch_functions("vmlinux cmdline_proc_show,0 active\\nmod f,2 pending\\n")
    [Function(object='vmlinux', name='cmdline_proc_show', sympos=0, state='active'), Function(object='mod', \
name='f', sympos=2, state='pending')]
    """
    result = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        m = FUNC_DIR_RE.match(fields[1])
        if m:
            result.append(Function(fields[0], m["name"], int(m["sympos"]), fields[2]))
    return result


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def modules(root: Path = Path("/")) -> list[Module]:
    text = _read(Path(root) / "proc/modules")
    return parse_modules(text) if text is not None else []


def kpatch_patch(name: str, root: Path = Path("/")) -> LivePatch | None:
    d = Path(root) / KPATCH / name
    enabled = _read(d / "enabled")
    if enabled is None:
        return None
    functions = parse_kpatch_functions(_read(d / "functions") or "")
    return LivePatch(name, "kpatch", enabled.strip() == "1", tuple(functions))


def livepatch_patch(name: str, root: Path = Path("/")) -> LivePatch | None:
    d = Path(root) / LIVEPATCH / name
    enabled = _read(d / "enabled")
    if enabled is None:
        return None
    functions = []
    with contextlib.suppress(OSError):
        for obj in sorted(p for p in d.iterdir() if p.is_dir()):
            patched = (_read(obj / "patched") or "").strip() == "1"
            for f in sorted(p for p in obj.iterdir() if p.is_dir()):
                m = FUNC_DIR_RE.match(f.name)
                if m:
                    functions.append(Function(obj.name, m["name"], int(m["sympos"]),
                                              "patched" if patched else "unpatched"))
    return LivePatch(name, "livepatch", enabled.strip() == "1", tuple(functions),
                     transition=(_read(d / "transition") or "0").strip() == "1")


def _names(d: Path) -> list[str]:
    try:
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def live_patches(root: Path = Path("/")) -> list[LivePatch]:
    """Every live patch of the running kernel, in load order (oldest first): kpgen's core's,
    the kernel's livepatches, and livepatch modules loaded but no longer listed by the kernel."""
    root = Path(root)
    loaded = modules(root)
    age = {m.name: i for i, m in enumerate(reversed(loaded))}
    found: dict[str, LivePatch] = {}
    for name in _names(root / KPATCH):
        if (p := kpatch_patch(name, root)) is not None:
            found[name] = p
    for name in _names(root / LIVEPATCH):
        if (p := livepatch_patch(name, root)) is not None:
            found[name] = p
    for m in loaded:
        if "K" in m.taints and m.name not in found:
            found[m.name] = LivePatch(m.name, "livepatch", False, (), listed=False)
    return sorted(found.values(), key=lambda p: age.get(p.name, len(age)))


def live_patch(name: str, root: Path = Path("/")) -> LivePatch | None:
    """One live patch by module name, or None if no loaded module of that name is one."""
    for p in live_patches(root):
        if p.name == name:
            return p
    return None


@dataclass(frozen=True)
class Task:
    pid: int  # the thread group's
    tid: int
    comm: str
    kthread: bool
    stack: tuple[str, ...]  # "function+0x1c/0x90 [module]" frames of /proc/.../stack (root only)

    def label(self) -> str:
        comm = f"[{self.comm}]" if self.kthread else self.comm
        return f"{comm} (pid {self.tid})"

    def frame_in(self, functions: set[str], module: str = "") -> str | None:
        """The first frame of the stack in one of `functions`, or in `module`'s code."""
        for frame in self.stack:
            func = frame.split("+", 1)[0]
            if func in functions or (module and frame.endswith(f"[{module}]")):
                return func
        return None


STACK_FRAME_RE = re.compile(r"^\[<[0-9a-f]+>\] (.+)$")


def parse_stack(text: str) -> tuple[str, ...]:
    """/proc/<pid>/stack: one "[<addr>] function+off/size [module]" line per frame.

    >>> parse_stack("[<0>] pipe_read+0x3a1/0x4c0\\n[<0>] vfs_read+0x2b0/0x2f0\\n")
    ('pipe_read+0x3a1/0x4c0', 'vfs_read+0x2b0/0x2f0')
    """
    return tuple(m.group(1) for line in text.splitlines() if (m := STACK_FRAME_RE.match(line)))


def waiting_tasks(target: int, root: Path = Path("/")) -> list[Task]:
    """The tasks a livepatch transition to `target` (1: patched, 0: unpatched) still waits for:
    those whose patch_state is the other state."""
    tasks = []
    for task in sorted((Path(root) / "proc").glob("[0-9]*/task/[0-9]*"),
                       key=lambda p: (int(p.parent.parent.name), int(p.name))):
        state = _read(task / "patch_state")
        if state is None or state.strip() not in ("0", "1") or int(state) == target:
            continue
        stat = _read(task / "stat") or ""
        # field 9 (flags), after the ")" that ends the command name; PF_KTHREAD = 0x00200000
        rest = stat.rsplit(")", 1)[-1].split()
        kthread = len(rest) > 6 and int(rest[6]) & 0x00200000 != 0
        tasks.append(Task(int(task.parent.parent.name), int(task.name), (_read(task / "comm") or "?").strip(),
                          kthread, parse_stack(_read(task / "stack") or "")))
    return tasks
