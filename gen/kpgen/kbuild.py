"""Build modules with the kernel's own Kbuild: argv lists, captured logs, clear failures."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

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


def make_argv(kernel: Kernel, module_dir: Path, core_dir: Path | None = None, jobs: int | None = None) -> list[str]:
    """The exact make command that builds the modules in module_dir."""
    argv = ["make", "-C", str(kernel.kdir), f"M={Path(module_dir).resolve()}", "W=1"]
    if core_dir is not None:
        argv.append(f"KPATCH_CORE={Path(core_dir).resolve()}")
    argv += [f"-j{jobs or os.cpu_count() or 1}", "modules"]
    return argv


def build(kernel: Kernel, module_dir: Path, core_dir: Path | None = None) -> BuildResult:
    module_dir = Path(module_dir)
    if not (module_dir / "Kbuild").is_file() and not (module_dir / "Makefile").is_file():
        raise BuildError(f"{module_dir} has no Kbuild file: pass a directory made by `kpgen generate` or `kpgen patch`")
    argv = make_argv(kernel, module_dir, core_dir)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    log = proc.stdout
    (module_dir / "kpgen-build.log").write_text(log)
    if proc.returncode != 0:
        tail = "\n".join(log.splitlines()[-25:])
        raise BuildError(f"building {module_dir} for {kernel.release} failed (make exited {proc.returncode}):\n{tail}")
    modules = tuple(sorted(module_dir.glob("*.ko")))
    if not modules:
        raise BuildError(f"building {module_dir} produced no .ko file")
    return BuildResult(module_dir=module_dir, modules=modules, log=log)


def clean(kernel: Kernel, module_dir: Path) -> None:
    argv = ["make", "-C", str(kernel.kdir), f"M={Path(module_dir).resolve()}", "clean"]
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
