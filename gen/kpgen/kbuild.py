"""Build modules with the kernel's own Kbuild: argv lists, captured logs, clear failures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import progress
from .errors import BuildError
from .kernel import Kernel

WARNING_RE = re.compile(r"\bwarning:", re.I)


@dataclass(frozen=True)
class BuildResult:
    module_dir: Path
    modules: tuple[Path, ...]
    log: str

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if WARNING_RE.search(line)]


def make_argv(kernel: Kernel, module_dir: Path, core_dir: Path | None = None, jobs: int | None = None,
              variables: tuple[str, ...] = ()) -> list[str]:
    """The exact make command that builds the modules in module_dir; `variables` are extra
    make variables, e.g. KPATCH_FAULTS=y for the core's test build."""
    argv = ["make", "-C", str(kernel.kdir), f"M={Path(module_dir).resolve()}", "W=1"]
    if core_dir is not None:
        argv.append(f"KPATCH_CORE={Path(core_dir).resolve()}")
    argv += [*variables, f"-j{jobs or os.cpu_count() or 1}", "modules"]
    return argv


def build(kernel: Kernel, module_dir: Path, core_dir: Path | None = None,
          variables: tuple[str, ...] = ()) -> BuildResult:
    module_dir = Path(module_dir)
    if not (module_dir / "Kbuild").is_file() and not (module_dir / "Makefile").is_file():
        raise BuildError(f"{module_dir} has no Kbuild file: pass a directory made by `kpgen generate` or `kpgen patch`")
    argv = make_argv(kernel, module_dir, core_dir, variables=variables)
    progress.command(argv)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    log = proc.stdout
    progress.output(log)
    (module_dir / "kpgen-build.log").write_text(log)
    if proc.returncode != 0:
        raise BuildError(f"building {module_dir} for {kernel.release} failed (make exited {proc.returncode}):\n"
                         f"{compiler_errors(log)}")
    modules = tuple(sorted(module_dir.glob("*.ko")))
    if not modules:
        raise BuildError(f"building {module_dir} produced no .ko file")
    return BuildResult(module_dir=module_dir, modules=modules, log=log)


def clean(kernel: Kernel, module_dir: Path) -> None:
    argv = ["make", "-C", str(kernel.kdir), f"M={Path(module_dir).resolve()}", "clean"]
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def user_paths(log: str, copies: dict[Path, Path]) -> str:
    """The compiler's messages with each scratch copy of a source named as the user's file.

    >>> user_paths("/tmp/k/m/fix.c:8:5: error: x", {Path("/tmp/k/m/fix.c"): Path("/nowhere/fix/fix.c")})
    '/nowhere/fix/fix.c:8:5: error: x'
    """
    for copy, original in copies.items():
        try:
            shown = str(original.resolve().relative_to(Path.cwd()))
        except ValueError:
            shown = str(original)
        for name in {str(copy), str(copy.resolve())}:
            log = log.replace(f"{name}:", f"{shown}:")
    return log


DIAGNOSTIC_RE = re.compile(r": (?:fatal )?error: |: warning: |: note: ")


def compiler_errors(log: str, keep: int = 25, scratch: Path | None = None) -> str:
    """What a failed compile says, from its first diagnostic on, without make's own lines (nor,
    with `scratch`, the lines naming kpgen's scratch tree: the files kpgen generated there)."""
    lines = [line for line in log.splitlines() if not line.startswith(("make[", "make:", "  CC ", "  LD "))
             and (scratch is None or str(scratch) not in line)]
    first = next((i for i, line in enumerate(lines) if DIAGNOSTIC_RE.search(line)), None)
    if first is None:
        return "\n".join(lines[-keep:])
    return "\n".join(lines[max(0, first - 1): max(0, first - 1) + keep])


def probe_symbols(kernel: Kernel, files: list, core_header: bytes, subdir: str, name: str,
                  keep_object: Path | None = None, sources: Sequence[Path] = ()) -> set[str]:
    """Compile a rendered patch module's object in a scratch tree; its undefined symbols, which
    are what the sources need from the kernel. `keep_object`: where to copy the object (its
    DWARF says what the sources declare). `sources`: the user's files, which the compiler's
    messages name instead of their scratch copies.
    """
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with tempfile.TemporaryDirectory(prefix="kpgen-probe-") as tmp:
        root = Path(tmp)
        for f in files:
            (root / f.path).parent.mkdir(parents=True, exist_ok=True)
            (root / f.path).write_bytes(f.content)
        (root / "core").mkdir(exist_ok=True)
        (root / "core" / "kpatch.h").write_bytes(core_header)
        mod_dir = (root / subdir).resolve()
        argv = ["make", "-C", str(kernel.kdir), f"M={mod_dir}", f"KPATCH_CORE={root / 'core'}", f"{name}.o"]
        progress.command(argv)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        progress.output(proc.stdout)
        if proc.returncode != 0:
            log = user_paths(proc.stdout, {mod_dir / src.name: src for src in sources})
            raise BuildError(f"compiling patch module {name} for {kernel.release} failed:\n"
                             f"{compiler_errors(log, scratch=root.resolve())}")
        if keep_object is not None:
            shutil.copyfile(mod_dir / f"{name}.o", keep_object)
        with (mod_dir / f"{name}.o").open("rb") as fh:
            symtab = ELFFile(fh).get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection), f"{name}.o has no symbol table"
            return {sym.name for sym in symtab.iter_symbols() if sym.name and sym["st_shndx"] == "SHN_UNDEF"}


