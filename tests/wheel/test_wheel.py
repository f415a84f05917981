"""kpgen installs like any Python tool: a wheel, in a fresh virtual environment outside the
checkout, runs the README's walk-through from a temporary directory, a boot included."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wheel, pytest.mark.vm]

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    return proc.stdout


def walkthrough() -> list[str]:
    """The commands of the README's spec walk-through, as written."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(kpgen new fix_cmdline [^\n]*\n(?:kpgen [^\n]*\n)+)```", text)
    assert block, "the README has no walk-through starting with `kpgen new fix_cmdline`"
    return [re.sub(r"\s+#.*$", "", line) for line in block.group(1).splitlines()]


def clean_copy(dest: Path) -> Path:
    """The checkout's files as a fresh clone has them (tracked and new, not ignored), so that no
    build/ or egg-info left by an earlier build in the checkout leaks into the wheel."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kpgen's wheel, built by pip from a clean copy of the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    source = clean_copy(root / "src")
    dist = root / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)], cwd=root)
    wheels = sorted(dist.glob("kpgen-*.whl"))
    assert len(wheels) == 1, f"pip wheel made {wheels}"
    return wheels[0]


def outside_env() -> dict[str, str]:
    """The environment without what points into the checkout: with PYTHONPATH set to gen/, pip
    would take the checkout's kpgen (an egg-info there) for installed and skip the wheel."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the checkout, with kpgen's wheel installed."""
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "venv"
    run([sys.executable, "-m", "venv", str(env_dir)], cwd=root, env=outside_env())
    run([str(env_dir / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=root,
        env=outside_env())
    return env_dir


def test_wheel_carries_the_top_level_templates(wheel: Path) -> None:
    """The templates at the top of the checkout, byte for byte, and nothing else, as kpgen/templates."""
    with zipfile.ZipFile(wheel) as whl:
        carried = {n.removeprefix("kpgen/templates/"): whl.read(n) for n in whl.namelist()
                   if n.startswith("kpgen/templates/") and not n.endswith("/")}
        assert not [n for n in whl.namelist() if "__pycache__" in n or n.endswith((".o", ".ko", ".cmd"))]
    top = REPO / "templates"
    tracked = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "templates"], REPO).split()
    expected = {Path(n).relative_to("templates").as_posix(): (REPO / n).read_bytes() for n in tracked
                if (REPO / n).is_file()}
    assert expected, f"no templates in {top}"
    assert carried == expected


def test_wheel_carries_the_loader_for_target_machines(wheel: Path) -> None:
    """kpgen-patches, which kpgen install and kpgen package put on the machines, byte for byte."""
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("kpgen/fleet/kpgen-patches") == (REPO / "gen/kpgen/fleet/kpgen-patches").read_bytes()


def test_wheel_runs_the_readme_walkthrough(venv: Path, tmp_path: Path) -> None:
    env = outside_env()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    kpgen = str(venv / "bin/kpgen")
    # the installed package, not the checkout
    where = run([str(venv / "bin/python"), "-c",
                 "import kpgen.resources as r; print(r.PACKAGE); print(r.TEMPLATES)"], work, env).split()
    assert all(str(REPO) not in w and str(venv) in w for w in where), where
    assert where[1] == str(Path(where[0]) / "templates")
    version = run([kpgen, "--version"], work, env)
    assert re.fullmatch(r"kpgen \S+\n", version)
    assert run([str(venv / "bin/python"), "-m", "kpgen", "--version"], work, env) == version

    commands = walkthrough()
    run(shlex.split(commands[0]), work, env)
    # the step the README leaves to you: a body for the replacement kpgen new declared
    spec_text = (work / "fix_cmdline" / "fix_cmdline.toml").read_text()
    replacement = re.search(r'^replacement = "(\w+)"', spec_text, flags=re.M).group(1)  # type: ignore[union-attr]
    (work / "fix_cmdline" / "fix.c").write_text(
        "// SPDX-License-Identifier: GPL-2.0-only\n#include <linux/seq_file.h>\n\n"
        f"static int {replacement}(struct seq_file *m, void *v)\n{{\n\tseq_puts(m, \"patched\\n\");\n\treturn 0;\n}}\n")
    output = ""
    for command in commands[1:]:
        argv = shlex.split(command.replace("$PWD", str(work)))
        output = run(argv, work, env, timeout=900)
    # the last command boots a kernel and shows /proc/cmdline through the patch
    assert re.search(r"^patched\r?$", output, flags=re.M), f"the guest did not show the patch:\n{output[-3000:]}"
