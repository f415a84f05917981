"""Probe a kernel build directory (KDIR) for what the generated C must fit.

Everything the templates branch on is decided here from the kernel's own files
(.config, Module.symvers and headers), never from version numbers.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import KernelError
from .resources import MATRIX

# Options the core cannot work without, with what each one is for.
REQUIRED_OPTIONS: dict[str, str] = {
    "CONFIG_MODULES": "loadable modules",
    "CONFIG_MODULE_UNLOAD": "unloading patch modules",
    "CONFIG_KALLSYMS_ALL": "resolving functions and data by name",
    "CONFIG_KPROBES": "finding kallsyms_lookup_name",
    "CONFIG_DYNAMIC_FTRACE": "hooking functions",
    "CONFIG_HAVE_RELIABLE_STACKTRACE": "the activeness safety check",
}
# At least one of these: the handler changes the instruction pointer.
FTRACE_IP_OPTIONS = ("CONFIG_DYNAMIC_FTRACE_WITH_ARGS", "CONFIG_DYNAMIC_FTRACE_WITH_REGS")
# The ftrace direct-call APIs that take an ftrace_ops and an address, newest first.
DIRECT_APIS = ("register_ftrace_direct", "register_ftrace_direct_multi")
# Exports the generated C calls directly (the rest it finds through kallsyms).
REQUIRED_EXPORTS = (
    "register_ftrace_function",
    "unregister_ftrace_function",
    "ftrace_set_filter_ip",
    "ftrace_set_filter_ips",
    "stop_machine",
    "register_kprobe",
    "unregister_kprobe",
    "sprint_symbol",
)


@dataclass(frozen=True)
class KernelFeatures:
    """What the core's C must look like for one kernel."""

    has_ibt: bool
    ftrace_with_args: bool
    ftrace_ip_setter: str
    ksym_cb_has_mod: bool
    module_ksym_takes_modname: bool
    # struct module keeps its memory in mem[MOD_TEXT...] (6.4 and later), not in core_layout
    module_mem: bool = False
    # the arguments of a sched_switch tracepoint probe after its data pointer: 2 for (preempt,
    # prev, next), 3 with prev_state too (5.18 and later); 0 when unknown, and the pause then
    # walks every task (stacks.c)
    sched_switch_args: int = 0
    # the kernel has clear_relocate_add(): livepatch clears a module's klp relocations when the
    # module goes (6.3 and later); before, x86's apply_relocate_add() refuses to write them again
    clears_klp_relocs: bool = False
    # ftrace direct calls of the functions of one ftrace_ops to one address (direct_calls=1):
    # "register_ftrace_direct" (6.5 and later), "register_ftrace_direct_multi" (5.16 to 6.4),
    # each with its unregister_*; "" when the kernel has neither, or does not export them
    ftrace_direct: str = ""
    # its unregister_* takes a third argument, whether to free the ftrace_ops' filters (6.5 and later)
    ftrace_direct_unregister_frees: bool = False

    @property
    def ksym_cb_params(self) -> str:
        mod = "struct module *, " if self.ksym_cb_has_mod else ""
        return f"void *, const char *, {mod}unsigned long"

    @property
    def ftrace_ops_flags(self) -> list[str]:
        flags = ["FTRACE_OPS_FL_IPMODIFY", "FTRACE_OPS_FL_PERMANENT"]
        if not self.ftrace_with_args:
            flags.append("FTRACE_OPS_FL_SAVE_REGS")
        return flags

    def summary(self) -> str:
        """One deterministic line for generated headers and `kpgen doctor`."""
        return (
            f"ibt={'y' if self.has_ibt else 'n'} "
            f"ftrace-args={'y' if self.ftrace_with_args else 'n'} "
            f"ip-setter={self.ftrace_ip_setter} "
            f"kallsyms-callback={'mod' if self.ksym_cb_has_mod else 'nomod'} "
            f"module-mem={'y' if self.module_mem else 'n'}"
        )


@dataclass(frozen=True)
class Kernel:
    """A probed kernel build directory."""

    kdir: Path
    release: str
    config: dict[str, str]
    exports: dict[str, str]  # symbol -> module that exports it ("vmlinux" for the kernel)
    features: KernelFeatures

    def enabled(self, option: str) -> bool:
        return self.config.get(option) in ("y", "m")

    @property
    def vmlinuz(self) -> Path:
        return Path("/boot") / f"vmlinuz-{self.release}"


def running_kdir() -> Path | None:
    """The running kernel's build directory (`uname -r`), when its headers are installed."""
    kdir = Path("/lib/modules") / os.uname().release / "build"
    return kdir if (kdir / "Makefile").is_file() else None


def matrix_kdir() -> Path:
    """The first kernel of the matrix (gen/kpgen/data/kernels.toml, 6.1: what kmod/ holds) that
    is installed, else the newest installed /lib/modules/*/build (versions compared as numbers).
    The Makefile regenerates kmod/ for this one."""
    for entry in matrix():
        found = find_kdir(entry.release_glob)
        if found is not None:
            return found
    dirs = [p for p in Path("/lib/modules").glob("*/build") if p.is_dir()]
    if not dirs:
        raise KernelError(
            "no kernel build directory found under /lib/modules/*/build: install the "
            "headers (apt-get install linux-headers-amd64) or pass --kdir DIR"
        )
    return max(dirs, key=lambda p: _version_key(p.parent.name))


def default_kdir() -> Path:
    """The default kernel of every command that takes --kdir, as kpatch-build and Kbuild
    choose it: the running kernel when its headers are installed, else matrix_kdir()."""
    return running_kdir() or matrix_kdir()


DEFAULT_KDIR_HELP = ("the kernel's build directory (default: the running kernel's, /lib/modules/$(uname -r)/build, "
                     "when its headers are installed, else the first installed kernel of Debian's 6.1, 6.12, 6.1-rt)")


def kdir_of(release: str) -> Path | None:
    """The build directory of an installed kernel release."""
    kdir = Path("/lib/modules") / release / "build"
    return kdir if kdir.is_dir() else None


def series(release: str) -> str:
    """The matrix kernel a release belongs to ("6.1", "6.12", "6.1-rt"), else the release itself:
    a new point release of Debian's 6.1 is the same series as the one it replaces.

    >>> series("6.1.0-57-amd64"), series("6.1.0-58-rt-amd64"), series("5.10.0-1-amd64")
    ('6.1', '6.1-rt', '5.10.0-1-amd64')
    """
    for entry in matrix():
        if fnmatch.fnmatchcase(release, entry.release_glob):
            return entry.name
    return release


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release))


def find_kdir(release_glob: str) -> Path | None:
    """The build dir of the installed release matching a glob, newest first."""
    dirs = [p for p in Path("/lib/modules").glob(f"{release_glob}/build") if p.is_dir()]
    return max(dirs, key=lambda p: _version_key(p.parent.name)) if dirs else None


def parse_config(text: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            config[key] = value.strip('"')
    return config


def parse_symvers(text: str) -> dict[str, str]:
    """Module.symvers: CRC, symbol, module, export type, namespace (tab-separated)."""
    exports: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4:
            exports[fields[1]] = fields[2]
    return exports


def header_roots(kdir: Path) -> list[Path]:
    """Directories whose include/ and arch/ trees make up this kernel's headers.

    Debian splits them: the build dir holds generated files and a Makefile that
    includes the common source tree, also reachable as /lib/modules/<rel>/source.
    """
    roots = [kdir]
    makefile = kdir / "Makefile"
    if makefile.is_file():
        m = re.match(r"\s*include\s+(\S+)/Makefile\s*$", makefile.read_text(errors="replace"))
        if m:
            roots.append(Path(m.group(1)))
    if kdir.name == "build":
        roots.append(kdir.parent / "source")
    seen: list[Path] = []
    for root in roots:
        if root.is_dir() and root.resolve() not in [s.resolve() for s in seen]:
            seen.append(root)
    return seen


def _read_header(roots: list[Path], rel: str) -> str:
    for root in roots:
        path = root / rel
        if path.is_file():
            return path.read_text(errors="replace")
    raise KernelError(
        f"header {rel} not found under {', '.join(str(r) for r in roots)}: "
        "the kernel headers are incomplete; reinstall the headers package"
    )


def probe_features(config: dict[str, str], roots: list[Path]) -> KernelFeatures:
    ftrace_h = _read_header(roots, "arch/x86/include/asm/ftrace.h")
    if "ftrace_regs_set_instruction_pointer" in ftrace_h:
        setter = "ftrace_regs_set_instruction_pointer"
    elif "ftrace_instruction_pointer_set" in ftrace_h:
        setter = "ftrace_instruction_pointer_set"
    else:
        raise KernelError(
            "arch/x86/include/asm/ftrace.h defines no way to set the instruction pointer "
            "from an ftrace callback: this kernel's ftrace is not supported"
        )
    kallsyms_h = _read_header(roots, "include/linux/kallsyms.h")
    m = re.search(r"int kallsyms_on_each_symbol\(int \(\*fn\)\(([^)]*)\)", kallsyms_h)
    if not m:
        raise KernelError("include/linux/kallsyms.h declares no kallsyms_on_each_symbol()")
    module_h = _read_header(roots, "include/linux/module.h")
    m2 = re.search(r"int module_kallsyms_on_each_symbol\(([^;]*)\);", module_h)
    if not m2:
        raise KernelError("include/linux/module.h declares no module_kallsyms_on_each_symbol()")
    linux_ftrace_h = _read_header(roots, "include/linux/ftrace.h")
    ftrace_direct, direct_frees = "", False
    if config.get("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS") == "y":
        for name in DIRECT_APIS:
            args = r"\(struct ftrace_ops \*ops, unsigned long addr"
            unreg = re.search(rf"\bint un{name}{args}(,\s*bool free_filters)?\);", linux_ftrace_h)
            if unreg and re.search(rf"\bint {name}{args}\);", linux_ftrace_h):
                ftrace_direct, direct_frees = name, bool(unreg.group(1))
                break
    sched_h = _read_header(roots, "include/trace/events/sched.h")
    m3 = re.search(r"TRACE_EVENT\(sched_switch,\s*TP_PROTO\(([^)]*)\)", sched_h)
    sched_switch_args = 0
    if m3:
        proto = " ".join(m3.group(1).split())
        if proto == "bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state":
            sched_switch_args = 3
        elif proto == "bool preempt, struct task_struct *prev, struct task_struct *next":
            sched_switch_args = 2
    loader_h = _read_header(roots, "include/linux/moduleloader.h")
    return KernelFeatures(
        has_ibt=config.get("CONFIG_X86_KERNEL_IBT") == "y",
        ftrace_with_args=config.get("CONFIG_DYNAMIC_FTRACE_WITH_ARGS") == "y",
        ftrace_ip_setter=setter,
        ksym_cb_has_mod="struct module" in m.group(1),
        module_ksym_takes_modname="const char *modname" in m2.group(1),
        module_mem=bool(re.search(r"struct module_memory\s+mem\[", module_h)),
        sched_switch_args=sched_switch_args,
        clears_klp_relocs=bool(re.search(r"\bvoid clear_relocate_add\(", loader_h)),
        ftrace_direct=ftrace_direct,
        ftrace_direct_unregister_frees=direct_frees,
    )


def probe(kdir: Path) -> Kernel:
    """Read and check a kernel build directory; raise KernelError naming what is wrong."""
    kdir = Path(kdir)
    if not kdir.is_dir():
        raise KernelError(
            f"kernel build directory {kdir} does not exist: install the headers "
            "(apt-get install linux-headers-amd64) or pass --kdir DIR"
        )
    missing = [
        name
        for name in (".config", "Module.symvers", "Makefile", "include/generated/utsrelease.h")
        if not (kdir / name).is_file()
    ]
    if missing:
        raise KernelError(
            f"{kdir} is not a prepared kernel build directory (missing {', '.join(missing)}): "
            "pass the build dir of installed headers, e.g. /lib/modules/<release>/build"
        )
    uts = (kdir / "include/generated/utsrelease.h").read_text(errors="replace")
    m = re.search(r'UTS_RELEASE\s+"([^"]+)"', uts)
    if not m:
        raise KernelError(f"{kdir}/include/generated/utsrelease.h has no UTS_RELEASE")
    release = m.group(1)
    config = parse_config((kdir / ".config").read_text(errors="replace"))
    if config.get("CONFIG_X86_64") != "y":
        raise KernelError(f"{kdir}/.config: only x86_64 kernels are supported")
    lacking = [f"{opt} ({why})" for opt, why in REQUIRED_OPTIONS.items() if config.get(opt) != "y"]
    if not any(config.get(o) == "y" for o in FTRACE_IP_OPTIONS):
        lacking.append(" or ".join(FTRACE_IP_OPTIONS) + " (redirecting calls)")
    if lacking:
        raise KernelError(
            f"{kdir}/.config lacks options the core needs: {'; '.join(lacking)}. "
            "Use a kernel built with them (Debian's linux-image-amd64 has them all)"
        )
    exports = parse_symvers((kdir / "Module.symvers").read_text(errors="replace"))
    absent = [s for s in REQUIRED_EXPORTS if s not in exports]
    if absent:
        raise KernelError(f"{kdir}/Module.symvers does not export {', '.join(absent)}")
    features = probe_features(config, header_roots(kdir))
    if features.ftrace_direct and not all(f"{p}{features.ftrace_direct}" in exports for p in ("", "un")):
        features = dataclasses.replace(features, ftrace_direct="")
    return Kernel(kdir=kdir, release=release, config=config, exports=exports, features=features)


# The kernel matrix: the kernels `kpgen boot-test`, `kpgen bench` and `make test` boot.

@dataclass(frozen=True)
class MatrixKernel:
    name: str
    release_glob: str
    packages: tuple[str, ...]

    def matches(self, release: str) -> bool:
        """Whether a kernel release is of this entry (its glob, as over /lib/modules/*).

        >>> MatrixKernel("6.1", "6.1.*[0-9]-amd64", ()).matches("6.1.0-57-rt-amd64")
        False
        """
        return fnmatch.fnmatchcase(release, self.release_glob)

    def kdir(self) -> Path:
        found = find_kdir(self.release_glob)
        if found is None:
            raise KernelError(
                f"kernel {self.name} ({self.release_glob}) is not installed: run `make provision` "
                f"(apt-get install {' '.join(self.packages)})"
            )
        return found


def matrix(path: Path = MATRIX) -> list[MatrixKernel]:
    data = tomllib.loads(path.read_text())
    return [MatrixKernel(k["name"], k["release"], tuple(k["packages"])) for k in data["kernel"]]
