"""Prototypes checked: each replacement against the function it replaces, each function or
variable the sources declare for themselves against the kernel's own.

Where the kernel's prototypes come from, and why: its BTF (btf.py). It is exact (pahole made it
from the compiler's own DWARF of this very build, static functions included), it is in files
every Debian kernel installs (the image, each .ko; /sys/kernel/btf when that kernel runs), and it
is fast: read out of the image once (about a second to decompress it), kept in kpgen's cache
beside the kernel's symbols, then under 0.1 s for its 100,000 types, where the C front end
would need the kernel's source (a 140 MB download) and a second per file it parses.
What the user wrote comes from the DWARF of the patch module's object (dwarf.py), which kpgen
compiles anyway. Both become ctype.CType, compared as C compares types.

A mismatch is refused (exit 2) showing both prototypes. What BTF does not hold is not guessed:
a module built out of the kernel's tree, a function pahole left out, a variable that is not
per-CPU (pahole records only those) is reported as not checked.
"""

from __future__ import annotations

import io
import lzma
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from . import btf, ctype, dwarf, ksyms, progress
from .errors import KernelError, UsageError
from .kernel import Kernel
from .snapshot import cache_root
from .spec import PatchSpec

_LOADED: dict[tuple[str, str], btf.Btf | str] = {}


class PrototypeError(UsageError):
    """A replacement or declaration whose type is not the kernel's: both are in the message."""


def _section(elf_bytes: bytes, what: str) -> bytes:
    from elftools.elf.elffile import ELFFile

    section = ELFFile(io.BytesIO(elf_bytes)).get_section_by_name(".BTF")
    if section is None:
        raise KernelError(f"{what} has no .BTF section (a kernel built without CONFIG_DEBUG_INFO_BTF)")
    return bytes(section.data())


def _running(k: Kernel, name: str) -> Path | None:
    """/sys/kernel/btf/<name> when this very kernel runs here."""
    path = Path("/sys/kernel/btf") / name
    return path if os.uname().release == k.release and path.is_file() else None


def _memo(key: tuple[str, str], load: Callable[[], btf.Btf]) -> btf.Btf:
    """Read a BTF once per process; a failure is remembered and raised again as KernelError."""
    if key not in _LOADED:
        try:
            _LOADED[key] = load()
        except (KernelError, btf.BtfError, lzma.LZMAError) as exc:
            _LOADED[key] = str(exc)
    found = _LOADED[key]
    if isinstance(found, str):
        raise KernelError(found)
    return found


def vmlinux_btf(k: Kernel) -> btf.Btf:
    """vmlinux's BTF: the running kernel's when it is this one, else read out of its image."""
    def load() -> btf.Btf:
        live = _running(k, "vmlinux")
        if live is not None:
            return btf.parse(live.read_bytes())
        if not k.vmlinuz.is_file():
            raise KernelError(f"{k.vmlinuz} is not installed")
        # the image is xz-compressed (a second to read): its BTF is kept beside its symbols
        cached = cache_root() / k.release / "vmlinux.btf"
        if cached.is_file():
            return btf.parse(cached.read_bytes())
        with progress.step(f"reading the BTF of {k.release} from {k.vmlinuz}"):
            data = _section(ksyms._decompress(k.vmlinuz.read_bytes()), str(k.vmlinuz))
            found = btf.parse(data)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(cached)
        return found

    return _memo((k.release, "vmlinux"), load)


def module_btf(k: Kernel, name: str) -> btf.Btf:
    """A module's split BTF, on top of vmlinux's."""
    def load() -> btf.Btf:
        base = vmlinux_btf(k)
        live = _running(k, name)
        if live is not None:
            return btf.parse(live.read_bytes(), base)
        path = ksyms.module_file(k, name)
        return btf.parse(_section(ksyms.module_bytes(path), str(path)), base)

    return _memo((k.release, name), load)


def object_btf(k: Kernel, obj: str) -> btf.Btf:
    return vmlinux_btf(k) if obj == "vmlinux" else module_btf(k, obj)


def kernel_types(k: Kernel, obj: str, name: str, kind: str) -> list[ctype.CType]:
    """The distinct types the kernel's BTF gives `name` in `obj` (a function's prototypes, or a
    variable's type); empty when BTF does not hold it."""
    b = object_btf(k, obj)
    ids = (b.functions() if kind == "function" else b.variables()).get(name, [])
    types: list[ctype.CType] = []
    for tid in ids:
        t = b.type(tid)
        if not any(ctype.same(t, seen) for seen in types):
            types.append(t)
    return types


def _both(kernel: str, theirs: list[str], label: str, mine: str) -> str:
    """The kernel's prototypes and the user's, one a line, aligned."""
    width = max(len(kernel), len(label)) + 1
    lines = [f"  {kernel + ':':{width}} {t}" for t in theirs] + [f"  {label + ':':{width}} {mine}"]
    return "\n".join(lines) + "\n"


def _where(d: dwarf.Declared, sources: dict[str, Path]) -> str:
    path = sources.get(Path(d.file).name)
    return f"{path}:{d.line}" if path is not None else d.file


def check(patch: PatchSpec, k: Kernel, obj: Path, unexported: Sequence[str] = ()) -> list[str]:
    """Check the replacements and the declarations the sources make against the kernel's BTF.

    `obj` is the patch module's compiled object. Raises PrototypeError for the first mismatch;
    returns notes on what could not be checked."""
    notes: list[str] = []
    declared = dwarf.read(obj)
    if not declared:
        return [f"the prototypes: not checked ({obj.name} has no debug information: {k.release} is built "
                "without CONFIG_DEBUG_INFO)"]
    sources = {src.name: src for src in patch.sources}
    unreadable: set[str] = set()

    def types(obj_name: str, name: str, kind: str) -> list[ctype.CType] | None:
        if obj_name in unreadable:
            return None
        try:
            return kernel_types(k, obj_name, name, kind)
        except KernelError as exc:
            unreadable.add(obj_name)
            notes.append(f"the prototypes in {obj_name}: not checked ({exc})")
            return None

    for i, func in enumerate(patch.functions):
        mine = declared.get(func.replacement)
        if mine is None or mine.kind != "function":
            continue
        theirs = types(func.object, func.target, "function")
        if theirs is None:
            continue
        if not theirs:
            notes.append(f"{func.target}(): its prototype is not in the BTF of {func.object} ({k.release}): "
                         f"check {func.replacement}() by hand")
            continue
        if not any(ctype.same(mine.type, t) for t in theirs):
            raise PrototypeError(
                f"{_where(mine, sources)}: {func.replacement}() does not have the prototype of "
                f"{func.target}(), which it replaces (function[{i}] of {patch.path}):\n"
                + _both(f"{func.object} of {k.release}", [ctype.declare(t, func.target) for t in theirs],
                        "the replacement", ctype.declare(mine.type, func.replacement))
                + f"give {func.replacement}() the return type and parameters of {func.target}()")
    tables = {s.name: s for s in patch.symbols}
    for name in unexported:
        mine = declared.get(name)
        if mine is None or mine.definition or Path(mine.file).name not in sources:
            continue  # declared by a header of the kernel or the core, not by the sources
        table = tables.get(name)
        obj_name = table.object if table else "vmlinux"
        lookup = table.lookup if table else name
        theirs = types(obj_name, lookup, mine.kind)
        if theirs is None:
            continue
        other_kind = "variable" if mine.kind == "function" else "function"
        if not theirs and (types(obj_name, lookup, other_kind) or []):
            raise PrototypeError(f"{_where(mine, sources)}: the sources declare {name} as a {mine.kind}, but "
                                 f"it is a {other_kind} in {obj_name} of {k.release}; declare it as one")
        if not theirs:
            what = "prototype" if mine.kind == "function" else "type"
            notes.append(f"{name}: its {what} is not in the BTF of {obj_name} ({k.release}): "
                         "check its declaration by hand")
            continue
        if not any(ctype.same(mine.type, t) for t in theirs):
            what = "prototype" if mine.kind == "function" else "type"
            raise PrototypeError(
                f"{_where(mine, sources)}: the sources declare {name} with another {what} than the "
                f"kernel's:\n"
                + _both(f"{obj_name} of {k.release}", [ctype.declare(t, name) for t in theirs],
                        "the sources", ctype.declare(mine.type, name))
                + f"declare it with the kernel's {what}")
    return notes
