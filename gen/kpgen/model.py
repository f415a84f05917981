"""The validated model the templates render: every derived name is computed here."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .kernel import KernelFeatures
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
              "module.c", "callbacks.c", "replace.c", "release.c", "sysfs.c", "faults.c", "Kbuild")
# The test build's fault points (faults.c, `make KPATCH_FAULTS=y`).
FAULT_POINTS = ("alloc", "lookup", "filter", "filter_remove", "register", "unregister", "redirect_unregister",
                "direct", "activeness", "sysfs", "nmi", "slots")


@dataclass(frozen=True)
class CoreModel:
    features: KernelFeatures
    release: str

    @property
    def generated(self) -> Generated:
        return Generated(self.release, self.features.summary(), f"kpgen generate --kdir {kdir_hint(self.release)}")


@dataclass(frozen=True)
class KsymModel:
    """An unexported kernel symbol the sources use, reached through a pointer."""

    name: str
    sympos: int
    is_func: bool
    # declared by a kernel header the sources include; else by the sources themselves
    in_headers: bool = True
    object: str = "vmlinux"
    # the name the core looks up in kallsyms, when it is not the C name (`last_check.2`)
    kallsyms: str = ""

    @property
    def lookup(self) -> str:
        return self.kallsyms or self.name

    @property
    def pointer(self) -> str:
        return f"kpgen_ksym_{self.name}"

    @property
    def module_lookup(self) -> str:
        """The name kallsyms_lookup_name() takes: `module:name` for a module's symbol."""
        return self.lookup if self.object == "vmlinux" else f"{self.object}:{self.lookup}"

    @property
    def attribute(self) -> str:
        """vmlinux symbols are resolved once, during the module's init; a module's each time it loads."""
        return "__ro_after_init" if self.object == "vmlinux" else "__read_mostly"

    @property
    def header_decl(self) -> str:
        """The pointer's declaration, for a symbol a header declares (wrapped past 100 columns)."""
        return _wrap_decl(f"static typeof({self.name}) *", f"{self.pointer} {self.attribute};")

    @property
    def source_decl(self) -> str:
        """The pointer's definition, for a symbol the sources declare (wrapped past 100 columns)."""
        return _wrap_decl(f"typeof({self.pointer})", f"{self.pointer} {self.attribute};")


def _wrap_decl(type_part: str, rest: str, limit: int = 100) -> str:
    """One declaration line, or, past the kernel's 100 columns, the type and the declarator on
    two lines (the second indented one tab).

    >>> _wrap_decl("typeof(a)", "a x;")
    'typeof(a) a x;'
    >>> for line in _wrap_decl("static typeof(" + "a" * 40 + ") *", "p" * 50 + " __ro_after_init;").split("\\n"):
    ...     print(repr(line))
    'static typeof(aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)'
    '\\t*pppppppppppppppppppppppppppppppppppppppppppppppppp __ro_after_init;'
    """
    sep = "" if type_part.endswith("*") else " "
    one = f"{type_part}{sep}{rest}"
    if len(one) <= limit:
        return one
    if type_part.endswith("*"):
        return f"{type_part[:-1].rstrip()}\n\t*{rest}"
    return f"{type_part}\n\t{rest}"


INCLUDE_RE = re.compile(r"^\s*#\s*include\s*(<[^>]+>)", re.M)


def system_includes(texts: list[str]) -> tuple[str, ...]:
    """The <...> includes of the sources, in order, each once.

    >>> system_includes(["#include <a.h>\\n#include \\"b.h\\"\\n", "# include <a.h>\\n#include <c.h>"])
    ('<a.h>', '<c.h>')
    """
    seen: list[str] = []
    for text in texts:
        for inc in INCLUDE_RE.findall(text):
            if inc not in seen:
                seen.append(inc)
    return tuple(seen)


@dataclass(frozen=True)
class CallbackModel:
    """One callback of an object: the generated wrapper the core calls, and what it calls."""

    kind: str  # pre_patch, post_patch, pre_unpatch, post_unpatch
    wrapper: str
    target: str | None  # the developer's function, or None when the wrapper only frees shadows
    frees: tuple[ShadowSpec, ...] = ()
    # livepatch backend: the object whose unexported symbols this pre-patch callback resolves
    resolves: str = ""
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
    """One klp_object of a livepatch-backend module: its functions, callbacks and the module
    symbols its pre-patch callback resolves."""

    name: str
    funcs_array: str
    functions: tuple[FunctionSpec, ...]
    callbacks: tuple[CallbackModel, ...]
    ksyms: tuple[KsymModel, ...] = ()

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
    ksyms: tuple[KsymModel, ...] = ()
    includes: tuple[str, ...] = ()
    objects: tuple[ObjectModel, ...] = ()
    shadows: tuple[ShadowSpec, ...] = ()
    replace: bool = False
    backend: str = "kpatch"

    @property
    def freed_on_unload(self) -> tuple[ShadowSpec, ...]:
        return tuple(s for s in self.shadows if s.free == "unload")

    @property
    def vmlinux_ksyms(self) -> tuple[KsymModel, ...]:
        return tuple(s for s in self.ksyms if s.object == "vmlinux")

    @property
    def has_func_ksyms(self) -> bool:
        return any(s.is_func for s in self.ksyms)

    @property
    def lp_objects(self) -> tuple[LpObjectModel, ...]:
        """The klp_objects of the livepatch backend: each object of `objects` that has functions
        or callbacks (vmlinux may have neither), with the wrappers klp calls."""
        result = []
        for i, obj in enumerate(self.objects):
            funcs = tuple(f for f in self.functions if f.object == obj.name)
            ksyms = () if obj.name == "vmlinux" else tuple(s for s in self.ksyms if s.object == obj.name)
            callbacks = []
            for kind in CALLBACKS:
                cb = obj.callback(kind)
                resolves = obj.name if kind == "pre_patch" and ksyms else ""
                marks = kind == "post_unpatch" and obj.name == "vmlinux" and bool(self.freed_on_unload)
                if cb or resolves or marks:
                    callbacks.append(CallbackModel(kind, f"{self.name}_{i}_{kind}", cb.target if cb else None,
                                                   cb.frees if cb else (), resolves, marks))
            if funcs or callbacks:
                result.append(LpObjectModel(obj.name, f"{self.name}_{i}_funcs", funcs, tuple(callbacks), ksyms))
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
