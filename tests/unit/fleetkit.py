"""Small module files for the delivery tests: relocatable objects the host's gcc makes, with a
.modinfo section like a kernel module's, so that reading, signing, installing and packaging
them needs neither Kbuild nor a boot (the real modules are tested by the kbuild and boot tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kpgen import kernel

RELEASE = next(m for m in kernel.matrix() if m.name == "6.1").kdir().parent.name


def module(where: Path, name: str, *, release: str = RELEASE, depends: str = "kpatch", livepatch: bool = False,
           srcversion: str = "0123456789ABCDEF", description: str = "a test patch") -> Path:
    """NAME.ko in `where`: `depends=kpatch` makes it a patch of kpgen's core, `livepatch` a
    livepatch module, and the name kpatch the core."""
    fields = [f"name={name}", f"vermagic={release} SMP preempt mod_unload modversions ",
              f"depends={depends}", f"srcversion={srcversion}", f"description={description}"]
    if livepatch:
        fields.append("livepatch=Y")
    c_string = "".join(f"{field}\\0" for field in fields)
    where.mkdir(parents=True, exist_ok=True)
    src = where / f"{name}.c"
    src.write_text(f'static const char __attribute__((used, section(".modinfo"), aligned(1))) modinfo[] =\n'
                   f'\t"{c_string}";\nint {name}_fn(void) {{ return 0; }}\n')
    ko = where / f"{name}.ko"
    subprocess.run(["gcc", "-c", "-o", str(ko), str(src)], check=True)
    src.unlink()
    return ko


def with_metadata(ko: Path, spec_path: Path, k: kernel.Kernel) -> Path:
    """Embed, as the build's embed step does, the metadata of the spec at spec_path (its module
    directory made beside the module) for kernel k."""
    from kpgen import render, spec
    from kpgen.fleet import metadata

    patch = spec.load(spec_path)
    module_dir = ko.parent / f"{ko.stem}.dir"
    render.write(module_dir, [metadata.module_file(patch, "."),
                              *(render.OutputFile(Path(s.name), s.read_bytes()) for s in patch.sources)])
    metadata.embed(ko, metadata.built_document(k, module_dir, "patch"))
    return ko


def verify_unit(root: Path, unit: str) -> None:
    """systemd's own check of a unit file in an image: its syntax, and that the command exists."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (systemd): the unit file is not verified")
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and not proc.stdout + proc.stderr, proc.stdout + proc.stderr
