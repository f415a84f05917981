"""Static checks: ruff and mypy on the Python code, shellcheck on the shell scripts, hadolint on the Dockerfile.

Each tool reads its settings from the repository (pyproject.toml for ruff and mypy). A test
fails with the tool's findings, and also fails when the tool is not installed: `make
provision` installs them all. `make lint` runs the same checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
SHEBANG = re.compile(rb"#![^\n]*\b(?:ba|da|k)?sh\b")
# never walked when git cannot list the files
SKIP_DIRS = {".git", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def missing(tool: str) -> NoReturn:
    pytest.fail(f"{tool} is not installed: run `make provision` (it installs the linters)", pytrace=False)


def check(argv: list[str]) -> None:
    """Run one linter in the repository; fail with its output if it reports anything."""
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stdout}", pytrace=False)


def python_tool(module: str) -> list[str]:
    """`python -m module` with this interpreter, whose packages mypy must see."""
    if importlib.util.find_spec(module) is None:
        missing(module)
    return [sys.executable, "-m", module]


def program(name: str) -> str:
    """A command from this interpreter's scripts directory (pip's) or else from PATH."""
    local = Path(sysconfig.get_path("scripts")) / name
    found = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if found is None:
        missing(name)
    return found


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            check=False)
    if listed.returncode == 0:
        return [REPO / name for name in listed.stdout.decode().split("\0") if name]
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        files += [Path(root) / name for name in names]
    return files


def shell_scripts() -> list[str]:
    """Every file that starts with a shell's #! line, relative to the repository."""
    scripts = []
    for path in tracked_files():
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                if SHEBANG.match(fh.readline()):
                    scripts.append(str(path.relative_to(REPO)))
    return sorted(scripts)


def test_shell_scripts_found() -> None:
    # guards the shellcheck test against checking nothing
    guest = "gen/kpgen/harness/guest"
    assert {"ci/provision.sh", f"{guest}/run.sh", f"{guest}/lib.sh", f"{guest}/topics/10-load.sh", ".ci/run"} <= set(
        shell_scripts())


def test_ruff() -> None:
    check([*python_tool("ruff"), "check", "."])


def test_mypy() -> None:
    check([*python_tool("mypy")])


def test_shellcheck() -> None:
    check([program("shellcheck"), *shell_scripts()])


def test_hadolint() -> None:
    check([program("hadolint"), "--no-color", "Dockerfile"])
