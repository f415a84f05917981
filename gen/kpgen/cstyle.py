"""Static checks of C: the kernel's checkpatch.pl (--strict) and sparse (through Kbuild, C=2).

Used by tests/kbuild/test_static.py on the generated C and on the hand-written C of the
test modules and the sample and test patches. ci/provision.sh installs both tools.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import kbuild
from .errors import BuildError, KpgenError
from .kernel import Kernel
from .model import MARKER
from .resources import BENCH, SAMPLES, TEST_MODULES, TEST_PATCHES

# Where ci/provision.sh puts checkpatch.pl, with spelling.txt and const_structs.checkpatch beside it.
CHECKPATCH_DEFAULT = Path("/usr/local/share/kpgen/checkpatch/scripts/checkpatch.pl")
SPARSE_CHECK = "sparse -Wsparse-error"

# The deliberate exceptions, in one place (docs/testing.md, "Static checks", lists them): the
# checkpatch types not reported, per kind of file, with the reason. The kinds are those of
# handwritten_sources() and "generated".
CHECKPATCH_IGNORE: dict[str, dict[str, str]] = {
    "generated": {},
    "module": {},
    "patch-source": {
        # A patch's sources must declare the static kernel symbols they use (README.md,
        # "Unexported kernel symbols"). The kernel has no header for them, so the
        # declaration is an `extern` in the .c file.
        "AVOID_EXTERNS": "a patch source declares the static kernel variables it uses",
    },
}

CHECKPATCH_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<level>ERROR|WARNING|CHECK):(?P<type>\w+): (?P<msg>.*)$")
SPARSE_RE = re.compile(r"^(?P<path>/.+?):(?P<line>\d+):(?P<col>\d+): (?P<level>error|warning): (?P<msg>.*)$")


class CheckError(KpgenError):
    """A static checker is missing or could not run."""


@dataclass(frozen=True)
class Finding:
    tool: str  # "checkpatch" or "sparse"
    path: str
    line: int
    kind: str  # checkpatch: LEVEL:TYPE (CHECK:LONG_LINE); sparse: error or warning
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.tool} {self.kind}: {self.message}"


def checkpatch_path() -> Path:
    path = Path(os.environ.get("KPGEN_CHECKPATCH") or CHECKPATCH_DEFAULT)
    missing = [p for p in (path, path.parent / "spelling.txt", path.parent / "const_structs.checkpatch")
               if not p.is_file()]
    if missing:
        raise CheckError(f"{', '.join(map(str, missing))} missing: run ci/provision.sh (as root), "
                         "or point KPGEN_CHECKPATCH at a kernel tree's scripts/checkpatch.pl")
    return path


def checkpatch_argv(files: list[Path], ignore: tuple[str, ...] = ()) -> list[str]:
    argv = [str(checkpatch_path()), "--no-tree", "--strict", "--terse", "--show-types", "--no-summary",
            "--color=never"]
    if ignore:
        argv.append(f"--ignore={','.join(sorted(ignore))}")
    return [*argv, "-f", *map(str, files)]


def checkpatch(files: list[Path], kind: str) -> list[Finding]:
    """checkpatch.pl --strict on each file, minus the exceptions of `kind` (CHECKPATCH_IGNORE)."""
    if not files:
        return []
    argv = checkpatch_argv(files, tuple(CHECKPATCH_IGNORE[kind]))
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    findings = []
    for line in proc.stdout.splitlines():
        m = CHECKPATCH_RE.match(line)
        if m:
            findings.append(Finding("checkpatch", m["path"], int(m["line"]), f"{m['level']}:{m['type']}",
                                    m["msg"]))
        elif line.strip():
            # anything else (a missing data file, a perl error) must not pass unseen
            findings.append(Finding("checkpatch", str(argv[0]), 0, "OUTPUT", line))
    if proc.returncode and not findings:
        raise CheckError(f"checkpatch.pl exited {proc.returncode} without a finding:\n{proc.stdout[-2000:]}")
    return findings


def sparse(kernel: Kernel, module_dir: Path, core_dir: Path | None = None,
           variables: tuple[str, ...] = ()) -> tuple[list[Finding], int]:
    """sparse on every C file of a built module directory, with Kbuild's flags (C=2, W=1).

    Returns the findings and the number of files sparse checked. Kbuild does not rebuild
    what is up to date, so the directory's objects are left as they are.
    """
    argv = kbuild.make_argv(kernel, module_dir, core_dir, variables=variables)
    argv[-1:-1] = ["-k", "C=2", f"CHECK={SPARSE_CHECK}"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    findings = [Finding("sparse", m["path"], int(m["line"]), m["level"], m["msg"])
                for m in map(SPARSE_RE.match, proc.stdout.splitlines()) if m]
    checked = sum(1 for line in proc.stdout.splitlines() if line.startswith("  CHECK "))
    if proc.returncode and not findings:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise BuildError(f"sparse on {module_dir} failed (make exited {proc.returncode}):\n{tail}")
    if not checked:
        raise CheckError(f"sparse checked no file in {module_dir}:\n{proc.stdout[-2000:]}")
    return findings, checked


def generated_sources(root: Path) -> list[Path]:
    """The C files kpgen generated under root (they carry its marker); not the copied sources."""
    return sorted(p for p in Path(root).rglob("*.[ch]")
                  if not p.name.endswith(".mod.c") and MARKER in p.read_text(errors="replace"))


def handwritten_sources() -> dict[str, list[Path]]:
    """The hand-written C of the repository, by kind: test modules and patch sources."""
    return {
        "module": sorted([*TEST_MODULES.glob("*/*.[ch]"), *(BENCH / "modules").glob("*/*.[ch]")]),
        "patch-source": sorted([*SAMPLES.glob("*/*.[ch]"), *TEST_PATCHES.glob("*/*.[ch]")]),
    }
