"""The only Jinja2 user: render models into files, all or nothing, writing only what changed."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import ownership
from .errors import UsageError
from .klprelocs import MANIFEST as KLP_MANIFEST
from .model import CORE_FILES, CoreModel, PatchModel
from .resources import TEMPLATES


@dataclass(frozen=True)
class OutputFile:
    path: Path  # relative to the output directory
    content: bytes


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return env


def _render(env: jinja2.Environment, template: str, **ctx: object) -> bytes:
    text = env.get_template(template).render(source=f"templates/{template}", **ctx)
    return text.encode("utf-8")


def render_core(core: CoreModel, subdir: str = "core") -> list[OutputFile]:
    env = environment()
    ctx = {"k": core.features, "gen": core.generated}
    return [OutputFile(Path(subdir) / name, _render(env, f"core/{name}.j2", **ctx)) for name in CORE_FILES]


# The templates of a patch module for each backend: its C file and its Kbuild file.
PATCH_TEMPLATES = {
    "kpatch": ("patch/patch.c.j2", "patch/Kbuild.j2"),
    "livepatch": ("patch/livepatch.c.j2", "patch/livepatch.Kbuild.j2"),
}


def render_patch(patch: PatchModel, subdir: str) -> list[OutputFile]:
    env = environment()
    c_template, kbuild_template = PATCH_TEMPLATES[patch.backend]
    files = [
        OutputFile(Path(subdir) / f"{patch.name}.c", _render_patch(env, c_template, patch)),
        OutputFile(Path(subdir) / "Kbuild", _render_patch(env, kbuild_template, patch)),
    ]
    # always, so that a module that stopped using unexported symbols has its old list replaced
    files.append(OutputFile(Path(subdir) / KLP_MANIFEST, _render_patch(env, "patch/klp-symbols.h.j2", patch)))
    # The developer's sources travel with the module, byte for byte.
    for src in patch.source_paths:
        files.append(OutputFile(Path(subdir) / src.name, src.read_bytes()))
    return files


def _render_patch(env: jinja2.Environment, template: str, patch: PatchModel) -> bytes:
    text = env.get_template(template).render(source=patch.spec_label, patch=patch, gen=patch.generated)
    return text.encode("utf-8")


def require_writable(dirs: list[Path], option: str = "-o DIR") -> None:
    """Refuse output directories kpgen could not create or write into (checked before any long step)."""
    for d in dirs:
        probe = Path(os.path.abspath(d))
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        problem = "" if probe.is_dir() else f"{probe} is not a directory"
        if not problem:
            # the one sure test: make a directory there (root passes every permission check,
            # and a file system such as /proc refuses what it allows)
            try:
                tempfile.TemporaryDirectory(dir=probe, prefix=".kpgen-probe-").cleanup()
            except OSError as exc:
                problem = f"{probe}: {exc.strerror}"
        if problem:
            raise UsageError(f"output directory {d} is not writable ({problem}): "
                             f"choose another {option} or fix its permissions")


def render_fleet(template: str, **ctx: object) -> bytes:
    """One of the delivery templates (templates/fleet/: the boot unit, a package's control files)."""
    return _render(environment(), f"fleet/{template}", **ctx)


def write(out_dir: Path, files: list[OutputFile], force: bool = False) -> list[Path]:
    """Write files under out_dir, leaving unchanged ones untouched; return the paths written.

    Everything was rendered before this is called, and the directories are checked
    first, so a bad output directory leaves nothing half-written. A file kpgen did not write,
    or that was edited since, is not replaced unless `force` (ownership.py).
    """
    out_dir = Path(out_dir)
    require_writable(sorted({(out_dir / f.path).parent for f in files}))
    contents = {out_dir / f.path: f.content for f in files}
    ownership.refuse(contents, force)
    changed: list[Path] = []
    for f in files:
        target = out_dir / f.path
        if target.is_file() and target.read_bytes() == f.content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.content)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        changed.append(target)
    ownership.record(contents)
    return changed
