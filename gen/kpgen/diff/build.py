"""`kpgen diff --build`: what `kpgen patch` and `kpgen build` do with the written spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import spec
from ..errors import BuildError
from ..kernel import Kernel
from .decisions import Action, Plan


def set_backend(p: Plan, backend: str) -> None:
    """Makes the plan's spec name `backend`: force, which that backend has no use for, is
    dropped and said."""
    assert p.spec is not None
    if backend == "kpatch":
        return
    forced = [t.name for t in p.targets if t.force]
    for name in forced:
        p.decide(name, Action.FORCE, "not for the livepatch backend, which switches each task once it has left the "
                 "old code: no activeness check to skip")
    p.targets[:] = [dataclasses.replace(t, force=False) for t in p.targets]
    functions = tuple(dataclasses.replace(f, force=False) for f in p.spec.functions)
    p.spec = spec.with_backend(dataclasses.replace(p.spec, functions=functions), backend)


def build(k: Kernel, out: Path, p: Plan, core: Path | None = None) -> Path:
    """Returns the module built from the spec written in `out`: rendered, built with Kbuild,
    checked; a kpatch-backend module against `core` (by default one built in out/core), a
    livepatch-backend one without any."""
    from .. import elfcheck, generate, pipeline, render

    patch = spec.load(out / f"{p.name}.toml")
    livepatch = patch.backend == "livepatch"
    if livepatch:
        core = None
    if core is None:
        core = out / "core"
        made = generate.generated_for(core)
        if not livepatch and (made is None or made[0] != k.release or not (core / "Module.symvers").is_file()):
            render.write(out, generate.core_files(k))
            pipeline.build(k, core)
    module = out / "module"
    generate.generate_patch(k, out / f"{p.name}.toml", module, core)
    pipeline.build(k, module, None if livepatch else core)
    ko = module / f"{p.name}.ko"
    verdict = elfcheck.check_module(ko, k, None if livepatch else core / "Module.symvers",
                                    tuple(f.replacement for f in patch.functions), patch.backend)
    if not verdict.ok:
        raise BuildError(f"{ko}: " + "; ".join(verdict.problems))
    return ko
