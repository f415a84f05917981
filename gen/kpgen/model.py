"""The validated model the templates render: every derived name is computed here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .kernel import KernelFeatures
from .klprelocs import KlpSymbol
from .resources import label
from .spec import CALLBACKS, FunctionSpec, PatchSpec, ShadowSpec


def c_string(text: str) -> str:
    """Escape text for a C string literal.

    >>> c_string('say "hi" \\\\ bye')
    'say \\\\"hi\\\\" \\\\\\\\ bye'
    """
    return text.replace("\\", "\\\\").replace('"', '\\"')


def c_comment(text: str) -> str:
    """Make text safe inside a /* */ comment.

    >>> c_comment("a */ b")
    'a * / b'
    """
    return text.replace("*/", "* /").replace("/*", "/ *")


@dataclass(frozen=True)
class Generated:
    """What every generated file's header says of its origin: the kernel it was generated for
    and the command that regenerates it (without output paths, so the text does not depend on
    where it is written)."""

    release: str
    features: str
    regen: str

    @property
    def marker(self) -> str:
        """The line regeneration scripts look for; it names the kernel release."""
        return f"{MARKER} for {self.release}"


MARKER = "kpgen-generated-file"


def kdir_hint(release: str) -> str:
    return f"/lib/modules/{release}/build"


# The core's files, in the order they are rendered: the public API header, the internal one,
# the header of probed kernel facts (the only one whose C differs from kernel to kernel), the
# C files by responsibility, and the Kbuild file.
CORE_FILES = ("kpatch.h", "core.h", "probed.h", "slots.h", "core.c", "patch.c", "direct.c", "direct_caller.S",
              "transition.c", "stacks.h", "stacks.c", "precheck.c", "busy.c", "nmi.c", "symbols.c", "internals.c",
              "relocs.c", "module.c", "callbacks.c", "replace.c", "release.c", "sysfs.c", "faults.c", "Kbuild")
# The test build's fault points (faults.c, `make KPATCH_FAULTS=y`).
FAULT_POINTS = ("alloc", "lookup", "filter", "filter_remove", "register", "unregister", "redirect_unregister",
                "direct", "activeness", "sysfs", "nmi", "slots", "relocs")


@dataclass(frozen=True)
class CoreModel:
    features: KernelFeatures
    release: str

    @property
    def generated(self) -> Generated:
        return Generated(self.release, self.features.summary(), f"kpgen generate --kdir {kdir_hint(self.release)}")


@dataclass(frozen=True)
class CallbackModel:
    """One callback of an object: the generated wrapper the core calls, and what it calls."""

    kind: str  # pre_patch, post_patch, pre_unpatch, post_unpatch
    wrapper: str
    target: str | None  # the developer's function, or None when the wrapper only frees shadows
    frees: tuple[ShadowSpec, ...] = ()
    # livepatch backend, on kernels whose livepatch does not clear a module's klp relocations
    # when it goes: this callback clears them (post-unpatch; pre-patch when its target refuses)
    clears_relocs: bool = False
    # livepatch backend: this post-unpatch callback records that the patch was disabled (not
    # replaced by a cumulative patch, which would own the shadow variables)
    marks_unpatched: bool = False

    @property
    def returns_int(self) -> bool:
        return self.kind == "pre_patch"


@dataclass(frozen=True)
class ObjectModel:
    """An object the patch module lists for the core: the kernel first, then modules."""

    name: str
    callbacks: tuple[CallbackModel, ...] = ()

    def callback(self, kind: str) -> CallbackModel | None:
        return next((c for c in self.callbacks if c.kind == kind), None)


def objects_model(spec: PatchSpec) -> tuple[ObjectModel, ...]:
    """The objects of a patch module: vmlinux always (its post-unpatch callback frees the shadow
    variables that go on disable), then the modules of the functions and of the [[object]]
    tables, in the order the spec names them."""
    names = ["vmlinux"]
    for name in [f.object for f in spec.functions] + [o.name for o in spec.objects]:
        if name not in names:
            names.append(name)
    tables = {o.name: o for o in spec.objects}
    on_disable = tuple(s for s in spec.shadows if s.free == "disable")
    result = []
    for i, name in enumerate(names):
        table = tables.get(name)
        callbacks = []
        for kind in CALLBACKS:
            target = table.callbacks().get(kind) if table else None
            frees = on_disable if name == "vmlinux" and kind == "post_unpatch" else ()
            if target or frees:
                callbacks.append(CallbackModel(kind, f"{spec.name}_{i}_{kind}", target, frees))
        result.append(ObjectModel(name, tuple(callbacks)))
    return tuple(result)


@dataclass(frozen=True)
class LpObjectModel:
    """One klp_object of a livepatch-backend module: its functions and callbacks."""

    name: str
    funcs_array: str
    functions: tuple[FunctionSpec, ...]
    callbacks: tuple[CallbackModel, ...]

    @property
    def is_vmlinux(self) -> bool:
        return self.name == "vmlinux"


@dataclass(frozen=True)
class PatchModel:
    name: str
    description_c: str
    description_comment: str
    sources: tuple[str, ...]
    source_paths: tuple[Path, ...]
    functions: tuple[FunctionSpec, ...]
    spec_label: str
    core_relpath: str
    generated: Generated
    # the kernel symbols the sources use that the kernel does not export: klp relocations
    klp_symbols: tuple[KlpSymbol, ...] = ()
    objects: tuple[ObjectModel, ...] = ()
    shadows: tuple[ShadowSpec, ...] = ()
    replace: bool = False
    backend: str = "kpatch"
    # the kernel's livepatch clears a module's klp relocations when the module goes
    kernel_clears_relocs: bool = True

    @property
    def freed_on_unload(self) -> tuple[ShadowSpec, ...]:
        return tuple(s for s in self.shadows if s.free == "unload")

    @property
    def klp_modules(self) -> tuple[str, ...]:
        """The modules whose symbols the sources use, in the order of `objects`: their klp
        relocations are written each time they load, by livepatch or by the core; the core
        reads them from the module's ELF information, which the kernel keeps for modules that
        say `livepatch=Y`."""
        used = {s.object for s in self.klp_symbols}
        return tuple(o.name for o in self.objects if o.name != "vmlinux" and o.name in used)

    @property
    def clears_relocs(self) -> bool:
        """Whether this livepatch-backend module clears klp relocations itself."""
        return any(cb.clears_relocs for obj in self.lp_objects for cb in obj.callbacks)

    @property
    def lp_objects(self) -> tuple[LpObjectModel, ...]:
        """The klp_objects of the livepatch backend: each object of `objects` that has functions
        or callbacks (vmlinux may have neither), with the wrappers klp calls."""
        result = []
        for i, obj in enumerate(self.objects):
            funcs = tuple(f for f in self.functions if f.object == obj.name)
            clears = not self.kernel_clears_relocs and obj.name in self.klp_modules
            callbacks = []
            for kind in CALLBACKS:
                cb = obj.callback(kind)
                clear = clears and (kind == "post_unpatch" or (kind == "pre_patch" and cb is not None))
                marks = kind == "post_unpatch" and obj.name == "vmlinux" and bool(self.freed_on_unload)
                if cb or clear or marks:
                    callbacks.append(CallbackModel(kind, f"{self.name}_{i}_{kind}", cb.target if cb else None,
                                                   cb.frees if cb else (), clear, marks))
            if funcs or callbacks:
                result.append(LpObjectModel(obj.name, f"{self.name}_{i}_funcs", funcs, tuple(callbacks)))
        return tuple(result)


def patch_model(spec: PatchSpec, out_dir: Path, core_dir: Path, release: str, features: str) -> PatchModel:
    """The model of one patch module rendered into out_dir, built against core_dir."""
    description = spec.description or f"live patch {spec.name}"
    core_rel = os.path.relpath(Path(core_dir).resolve(), Path(out_dir).resolve())
    return PatchModel(
        name=spec.name,
        description_c=c_string(description),
        description_comment=c_comment(description),
        sources=tuple(p.name for p in spec.sources),
        source_paths=spec.sources,
        functions=spec.functions,
        spec_label=label(spec.path),
        core_relpath=Path(core_rel).as_posix(),
        objects=objects_model(spec),
        shadows=spec.shadows,
        replace=spec.replace,
        backend=spec.backend,
        generated=Generated(release, features, f"kpgen patch {label(spec.path)} --kdir {kdir_hint(release)}"),
    )
