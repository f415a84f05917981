"""Translation units of the kernel: compile one source file exactly as the kernel's build did.

The flags are Kbuild's own: Kbuild compiles a scratch module once per kernel and its
`.o.cmd` gives the compiler and every flag (cached per release). For a file of the kernel
tree, the headers' common tree is swapped for the source tree (so a patched header is seen),
-DMODULE is dropped for built-in code, the object's KBUILD_MODNAME is set as the kernel's
Makefiles make it, the directory's ccflags are added, and each function and each variable
gets a section of its own for comparing objects function by function.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import objects
from .errors import BuildError, DefinitionError, UsageError
from .kernel import Kernel, header_roots
from .resources import KPATCH_API
from .snapshot import cache_root

SECTION_FLAGS = ["-ffunction-sections", "-fdata-sections"]


@dataclass(frozen=True)
class Unit:
    """One .c file of the kernel and where its code ends up."""

    rel: str  # path in the tree, e.g. fs/proc/meminfo.c
    object: str  # "vmlinux", or the module's name
    modname: str  # KBUILD_MODNAME

    @property
    def basename(self) -> str:
        return Path(self.rel).stem


def kbuild_command(k: Kernel) -> list[str]:
    """The compiler command line Kbuild uses for a module's object (cached per release)."""
    cache = cache_root() / k.release / "kbuild-cc.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("kdir") == str(k.kdir):
            return list(data["argv"])
    with tempfile.TemporaryDirectory(prefix="kpgen-cc-") as tmp:
        root = Path(tmp)
        (root / "Kbuild").write_text("obj-m := kpgen_cc.o\n")
        (root / "kpgen_cc.c").write_text("int kpgen_cc;\n")
        proc = subprocess.run(["make", "-C", str(k.kdir), f"M={root}", "kpgen_cc.o"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        cmd = root / ".kpgen_cc.o.cmd"
        if proc.returncode != 0 or not cmd.is_file():
            raise BuildError(f"Kbuild of {k.kdir} cannot compile a scratch object:\n{proc.stdout[-1500:]}")
        line = cmd.read_text().splitlines()[0]
    command = line.split(":=", 1)[1].split(";", 1)[0]
    argv = list(shlex.split(command))
    # what belongs to the scratch file is dropped; the rest is the kernel's
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-c",):
            continue
        if a == "-o":
            skip = True
            continue
        if a.startswith(("-Wp,-MMD", "-DKBUILD_BASENAME=", "-DKBUILD_MODNAME=", "-D__KBUILD_MODNAME=")):
            continue
        if a.endswith("kpgen_cc.c"):
            continue
        if a.startswith("-I./") or (a.startswith("-I") and not a.startswith("-I/")):
            a = "-I" + str((k.kdir / a[2:]).resolve())
        out.append(a)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"kdir": str(k.kdir), "argv": out}, indent=1) + "\n")
    return out


def common_root(k: Kernel) -> Path:
    """The headers' copy of the source tree that Kbuild's flags name (Debian's -common)."""
    roots = header_roots(k.kdir)
    for root in roots[1:]:
        if (root / "include" / "linux").is_dir():
            return root.resolve()
    return roots[0].resolve()


MAKE_VAR_RE = re.compile(r"^([A-Za-z0-9_-]+)-(y|objs|\$\(CONFIG_[A-Z0-9_]+\))\s*[:+]?=\s*(.*)$")


def _makefile_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    text = path.read_text(errors="replace").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def locate(k: Kernel, tree: Path, rel: str) -> Unit:
    """Where the kernel put the code of `rel`: vmlinux or a module, and its KBUILD_MODNAME."""
    path = tree / rel
    if not path.is_file():
        raise UsageError(f"{rel}: no such file in the kernel source {tree}")
    directory = Path(rel).parent
    base = f"{Path(rel).stem}.o"
    lines = _makefile_lines(tree / directory / "Makefile") + _makefile_lines(tree / directory / "Kbuild")
    owner, state = None, None
    for line in lines:
        m = MAKE_VAR_RE.match(line)
        if not m or base not in m.group(3).split():
            continue
        var, cond = m.group(1), m.group(2)
        if var == "obj":
            owner, state = Path(rel).stem, _config_state(k, cond)
            break
        # a list that an obj- line takes as a whole: obj-y += $(mmu-y)
        lister = next((MAKE_VAR_RE.match(x) for x in lines if f"$({var}-y)" in x and x.startswith("obj-")), None)
        if lister is not None:
            owner, state = Path(rel).stem, _config_state(k, lister.group(2))
            if _config_state(k, cond) == "n":
                state = "n"
            break
        # a composite object: var-y += base.o; find how var.o itself is built
        for line2 in lines:
            m2 = MAKE_VAR_RE.match(line2)
            if m2 and m2.group(1) == "obj" and f"{var}.o" in m2.group(3).split():
                owner, state = var, _config_state(k, m2.group(2))
                if _config_state(k, cond) == "n":
                    state = "n"
                break
        if owner:
            break
    if owner is None:
        # kernel/sched/ builds a few units that #include the others (build_utility.c ...)
        for other in sorted((tree / directory).glob("*.c")):
            if other.name != path.name and f'#include "{path.name}"' in other.read_text(errors="replace"):
                return locate(k, tree, str(directory / other.name))
        raise UsageError(f"{rel}: its directory's Makefile does not say how it is built: kpgen cannot tell "
                         "whether it is part of vmlinux or of a module")
    if state == "n":
        raise UsageError(f"{rel} is not built into {k.release} (its Kconfig option is off): nothing to patch")
    return Unit(rel=rel, object="vmlinux" if state == "y" else owner.replace("-", "_"),
                modname=owner.replace("-", "_"))


def _config_state(k: Kernel, cond: str) -> str:
    if cond in ("y", "objs"):
        return "y"
    m = re.fullmatch(r"\$\((CONFIG_[A-Z0-9_]+)\)", cond)
    if not m:
        return "y"
    return k.config.get(m.group(1), "n") if k.config.get(m.group(1)) in ("y", "m") else "n"


def dir_flags(tree: Path, unit: Unit, overlay: Path | None = None) -> list[str]:
    """The flags the file's own Makefile adds: ccflags-y and CFLAGS_<file>.o (plain values only).
    An include directory of the tree comes first from the patched `overlay`, if any.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "fs/x").mkdir(parents=True)
    >>> _ = (d / "fs/x/Makefile").write_text("ccflags-y += -I $(srctree)/$(src)/lib  # why\\nccflags-y += -DX=1\\n")
    >>> [f.replace(str(d), "T") for f in dir_flags(d, Unit("fs/x/a.c", "vmlinux", "a"))]
    ['-IT/fs/x/lib', '-DX=1']
    """
    directory = Path(unit.rel).parent
    flags: list[str] = []
    for line in _makefile_lines(tree / directory / "Makefile"):
        m = re.match(rf"^(?:ccflags-y|subdir-ccflags-y|CFLAGS_{re.escape(unit.basename)}\.o)\s*[:+]?=\s*(.*)$", line)
        if not m:
            continue
        value = m.group(1).split("#", 1)[0]
        value = value.replace("$(srctree)/$(src)", str(tree / directory)).replace("$(src)", str(tree / directory))
        value = re.sub(r"(^|\s)-I\s+", r"\1-I", value.replace("$(srctree)", str(tree)))
        for w in value.split():
            if "$(" in w or not w.startswith(("-D", "-I", "-W", "-f")):
                continue
            if w.startswith("-I") and overlay is not None and Path(w[2:]).is_relative_to(tree):
                flags.append("-I" + str(overlay / Path(w[2:]).relative_to(tree)))
            flags.append(w)
    return flags


def compile_argv(k: Kernel, unit: Unit, tree: Path, overlay: Path | None, src: Path, out: Path,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The command compiling `src` (the unit in `tree`, or in its patched `overlay`) into `out`."""
    common = str(common_root(k))
    top = overlay or tree
    argv: list[str] = []
    for a in kbuild_command(k):
        if unit.object == "vmlinux" and a == "-DMODULE":
            continue
        if a.startswith("-I") and a[2:].startswith(common):
            if overlay is not None:
                argv.append("-I" + str(overlay) + a[2 + len(common):])
            argv.append("-I" + str(tree) + a[2 + len(common):])
            continue
        if a.startswith(common):
            a = str(top) + a[len(common):]
        if a.startswith("-fmacro-prefix-map="):
            argv += [f"-fmacro-prefix-map={tree}/=", *([f"-fmacro-prefix-map={overlay}/="] if overlay else [])]
            continue
        argv.append(a)
    directory = Path(unit.rel).parent
    incs = [f"-I{overlay / directory}"] if overlay else []
    argv += [*incs, f"-I{tree / directory}", *dir_flags(tree, unit, overlay)]
    # kpatch's patch-author headers, last: a diff written for kpatch-build includes them
    argv += ["-idirafter", str(KPATCH_API)]
    argv += [f"-DKBUILD_BASENAME=\"{unit.basename}\"", f"-DKBUILD_MODNAME=\"{unit.modname}\"",
             f"-D__KBUILD_MODNAME=kmod_{unit.modname}", *SECTION_FLAGS, *extra, "-c", "-o", str(out), str(src)]
    return argv


def run_compile(argv: list[str], k: Kernel, what: str) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=k.kdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LC_ALL": "C"})


def wait_compile(proc: subprocess.Popen, what: str) -> None:
    output, _ = proc.communicate()
    if proc.returncode != 0:
        errors = [line for line in output.splitlines() if "error" in line] or output.splitlines()
        raise BuildError(f"compiling {what} failed:\n" + "\n".join(errors[:15]))


def find_definition(tree: Path, func: str) -> str:
    """Returns the .c file of the tree that defines `func`; refuses (DefinitionError) when no
    file or several do, naming them."""
    files = objects.defining_files(tree, func)
    if not files:
        raise DefinitionError(func, [], f"no .c file of the kernel source defines {func}(): check the name, "
                              "or give --file")
    if len(files) > 1:
        raise DefinitionError(func, files, f"{func}() is defined in {len(files)} files ({', '.join(files[:4])}): "
                              "say which with --file PATH")
    return files[0]
