"""A live patch's module file, as delivering it needs it: its name, backend, kernel and build,
read from the ELF file alone (modinfo, kpgen's metadata, the signature)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import elfcheck
from ..errors import UsageError
from . import metadata

CORE = "kpatch"


@dataclass(frozen=True)
class ModuleFile:
    path: Path
    name: str
    backend: str  # "kpatch" (a patch of kpgen's core), "livepatch", or "core" (kpatch.ko itself)
    release: str  # from vermagic
    srcversion: str
    description: str
    meta: metadata.Metadata | None

    @property
    def kernel_version(self) -> str:
        """The build of the release it was made for (uname -v), when its metadata says."""
        return self.meta.kernel_version if self.meta is not None else ""

    @staticmethod
    def read(path: Path) -> ModuleFile:
        """The module file at `path`; UsageError naming it when it is not a live patch or the core."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such module file")
        info = elfcheck.read_module(path)
        name = info.first("name")
        vermagic = info.first("vermagic")
        if not name or not vermagic:
            raise UsageError(f"{path}: not a kernel module (its .modinfo has no name or vermagic)")
        depends = [d for d in (info.first("depends") or "").split(",") if d]
        backend = ("core" if name == CORE else "livepatch" if info.first("livepatch") == "Y"
                   else "kpatch" if CORE in depends else "")
        if not backend:
            raise UsageError(f"{path}: {name} is not a live patch (neither livepatch=Y in its modinfo nor a module "
                             "of kpgen's core): use insmod and rmmod for it")
        return ModuleFile(path, name, backend, vermagic.split()[0], info.first("srcversion") or "",
                          info.first("description") or "", metadata.read(path))
