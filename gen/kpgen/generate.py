"""Generate the core and patch modules: the steps behind `kpgen generate` and `kpgen patch`."""

from __future__ import annotations

from pathlib import Path

from . import render, spec
from .kernel import Kernel
from .model import REPO_ROOT, CoreModel, patch_model

SAMPLES = REPO_ROOT / "samples"


def sample_specs(root: Path = SAMPLES) -> list[Path]:
    """The spec files of the samples shipped with kpgen, in a stable order."""
    return sorted(root.glob("*/*.toml"))


def plan_tree(kernel: Kernel, out_dir: Path, specs: list[Path]) -> list[render.OutputFile]:
    """Render the core (out_dir/core) and each spec (out_dir/patches/<name>) in memory."""
    files = render.render_core(CoreModel(features=kernel.features))
    names: dict[str, Path] = {}
    for path in specs:
        patch = spec.load(path)
        if patch.name in names:
            raise spec.SpecError(path, "name", f"{patch.name!r} is also the name of {names[patch.name]}",
                                 "give every patch module its own name")
        names[patch.name] = path
        subdir = f"patches/{patch.name}"
        model = patch_model(patch, Path(out_dir) / subdir, Path(out_dir) / "core")
        files += render.render_patch(model, subdir)
    return files


def generate_tree(kernel: Kernel, out_dir: Path, specs: list[Path]) -> list[Path]:
    return render.write(out_dir, plan_tree(kernel, out_dir, specs))


def generate_patch(spec_path: Path, out_dir: Path, core_dir: Path) -> list[Path]:
    """Render one patch module into out_dir (its own directory)."""
    patch = spec.load(spec_path)
    model = patch_model(patch, Path(out_dir), Path(core_dir))
    return render.write(out_dir, render.render_patch(model, "."))
