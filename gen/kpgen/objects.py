"""The kernel's objects: which of its modules exist, and which source files Kbuild builds into
vmlinux or into which module, from the kernel's .config and its Makefiles.

- The kernel's own modules: the `.ko` files of /lib/modules/<release>/kernel and the modules
  built into vmlinux (modules.builtin). A patch module must not take one of their names: the
  kernel refuses to load a second module of a name, and `object = "<name>"` would mean both.
- Where a file goes: `obj-$(CONFIG_X) += f.o` (or `x-$(CONFIG_Y) += f.o` with
  `obj-$(CONFIG_X) += x.o`) in its directory's Kbuild or Makefile, in a directory its parent
  descends into. `y` is vmlinux, `m` the module named after the object, an unset option nothing.
  What this reading cannot decide (a variable it does not expand, a directory no parent names)
  is "unknown", and kept among the candidates rather than guessed away.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .kernel import Kernel

# a definition of `name`: at the start of a line, a return type, then the name and "("
DEFINITION_RE = r"^[A-Za-z_][^;=]*\b{name}\s*\("
SEARCHED = ("kernel", "fs", "mm", "lib", "net", "drivers", "arch/x86", "block", "security", "ipc", "init",
            "crypto", "sound", "virt", "io_uring")
ASSIGN_RE = re.compile(r"^([A-Za-z0-9_$().-]+?)-(y|m|objs|\$\((CONFIG_[A-Za-z0-9_]+)\))\s*(?::=|\+=|=)\s*(.*)$")


def module_name(path: str) -> str:
    """A module's name from its file: dashes become underscores, as the kernel does.

    >>> module_name("kernel/drivers/platform/x86/toshiba-acpi.ko.xz")
    'toshiba_acpi'
    """
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def kernel_modules(k: Kernel) -> dict[str, str]:
    """The kernel's own modules, loadable and built in: name -> where (a .ko, or "built into vmlinux")."""
    root = Path("/lib/modules") / k.release
    found: dict[str, str] = {}
    builtin = root / "modules.builtin"
    if builtin.is_file():
        for line in builtin.read_text(errors="replace").splitlines():
            if line.strip():
                found[module_name(line.strip())] = "built into vmlinux"
    tree = root / "kernel"
    if tree.is_dir():
        for ko in tree.rglob("*.ko*"):
            found.setdefault(module_name(ko.name), str(ko))
    return found


@dataclass(frozen=True)
class Placement:
    """Where Kbuild puts an object file: vmlinux, a module (its name), nowhere, or unknown."""

    kind: str  # "vmlinux", "module", "none" or "unknown"
    module: str = ""

    def holds(self, obj: str) -> bool:
        """Whether `obj` ("vmlinux" or a module's name) may hold this file's code."""
        if self.kind == "unknown":
            return True
        return (self.kind == "vmlinux" and obj == "vmlinux") or (self.kind == "module" and self.module == obj)

    def describe(self) -> str:
        return {"vmlinux": "built into vmlinux", "module": f"built into module {self.module}",
                "none": "not built in this kernel's configuration", "unknown": "?"}[self.kind]


def _assignments(directory: Path) -> list[tuple[str, str | None, list[str]]]:
    """A directory's Kbuild (or Makefile) assignments: (target, condition, words); condition is
    "y", "m", None (an unset option) or "?" (not a form this reading evaluates)."""
    for name in ("Kbuild", "Makefile"):
        path = directory / name
        if path.is_file():
            text = path.read_text(errors="replace")
            break
    else:
        return []
    text = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str | None, list[str]]] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = ASSIGN_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2) if m.group(3) is None else "$" + m.group(3), m.group(4).split()))
    return out


def _condition(cond: str, config: dict[str, str]) -> str | None:
    if cond in ("y", "m"):
        return cond
    if cond == "objs":
        return "y"
    if cond.startswith("$CONFIG_"):
        value = config.get(cond[1:])
        return value if value in ("y", "m") else None
    return "?"


def _directory(tree: Path, rel: Path, config: dict[str, str], depth: int = 0) -> str | None:
    """How Kbuild reaches a directory: "y", "m" (modules only), None (never) or "?"."""
    if len(rel.parts) <= 1 or rel.as_posix() in ("arch/x86",) or depth > 12:
        return "y"
    parent, name = rel.parent, rel.name + "/"
    conds = [_condition(cond or "?", config) for target, cond, words in _assignments(tree / parent)
             if target in ("obj", "subdir", "core", "drivers", "libs") and name in words]
    if not conds:
        return "?"
    above = _directory(tree, parent, config, depth + 1)
    best = "y" if "y" in conds else "m" if "m" in conds else "?" if "?" in conds else None
    if above is None or best is None:
        return None
    if "?" in (above, best):
        return "?"
    return "m" if "m" in (above, best) else "y"


def placement(k: Kernel, tree: Path, rel: str) -> Placement:
    """Where Kbuild puts the object of a .c file of the kernel's source tree, for this kernel's .config."""
    path = Path(rel)
    obj = path.with_suffix(".o").name
    assignments = _assignments(tree / path.parent)
    found: list[Placement] = []
    for target, cond, words in assignments:
        if obj not in words:
            continue
        value = _condition(cond or "?", k.config)
        if target == "obj":
            found.append(_place(value, path.stem))
        elif target == "lib":
            found.append(_place("y" if value in ("y", "m") else value, path.stem))
        else:
            # a part of the composite object target.o
            outer = [_condition(c or "?", k.config) for t, c, w in assignments if t == "obj" and f"{target}.o" in w]
            for o in outer or ["?"]:
                if value is None or o is None:
                    found.append(Placement("none"))
                elif "?" in (value, o):
                    found.append(Placement("unknown"))
                else:
                    found.append(_place(o, target))
    if not found:
        return Placement("unknown")
    reach = _directory(tree, path.parent, k.config)
    places = [p for p in found if p.kind != "none"]
    if reach is None or not places:
        return Placement("none")
    if reach == "?" or any(p.kind == "unknown" for p in places) or len(set(places)) > 1:
        return Placement("unknown")
    place = places[0]
    if reach == "m" and place.kind == "vmlinux":
        return Placement("unknown")
    return place


def _place(value: str | None, module: str) -> Placement:
    if value is None:
        return Placement("none")
    if value == "?":
        return Placement("unknown")
    return Placement("vmlinux") if value == "y" else Placement("module", module.replace("-", "_"))


def defining_files(tree: Path, func: str) -> list[str]:
    """The .c files of the source tree that define `func` (a weak default left out when another
    file defines it too), relative to the tree."""
    pattern = DEFINITION_RE.format(name=re.escape(func))
    dirs = [str(tree / d) for d in SEARCHED if (tree / d).is_dir()]
    proc = subprocess.run(["grep", "-rlE", "--include=*.c", pattern, *dirs],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    files = sorted(str(Path(f).relative_to(tree)) for f in proc.stdout.split())
    if len(files) > 1:
        weak = re.compile(pattern.replace("^[A-Za-z_]", "^.*?(?:__weak|weak)"), re.M)
        strong = [f for f in files if not weak.search((tree / f).read_text(errors="replace"))]
        files = strong or files
    return files
