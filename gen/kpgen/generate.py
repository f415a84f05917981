"""Generate the core and patch modules: the steps behind `kpgen generate` and `kpgen patch`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import kbuild, ksyms, render, snapshot, spec
from .errors import KernelError
from .kernel import Kernel
from .klprelocs import SENTINEL, KlpSymbol
from .model import MARKER, CoreModel, patch_model
from .resources import SAMPLES


def sample_specs(root: Path = SAMPLES) -> list[Path]:
    """The spec files of the samples shipped with kpgen, in a stable order."""
    return sorted(root.glob("*/*.toml"))


EXPORT_RE = re.compile(rb"^EXPORT_SYMBOL(?:_GPL)?\((\w+)\);", re.M)
# Defined by modpost in every module's .mod.c; and the sentinel kpgen build makes absolute.
MODPOST_SYMBOLS = {"__this_module", SENTINEL}


GENERATED_RE = re.compile(rf"{MARKER} for (\S+)")
FEATURES_RE = re.compile(r"^(?: \*|#) Probed: (.*(?:\n(?: \*|#)         .*)*)", re.M)


def generated_for(directory: Path) -> tuple[str, str] | None:
    """The kernel release and probed features a generated directory (a core, or a patch module)
    was generated for, from the header of its generated files; None if it holds none."""
    for path in sorted(Path(directory).glob("*")):
        if path.suffix not in (".c", ".h") and path.name != "Kbuild":
            continue
        text = path.read_text(errors="replace")[:2000]
        m, f = GENERATED_RE.search(text), FEATURES_RE.search(text)
        if m and f:
            return m.group(1), " ".join(re.sub(r"^(?: \*|#) +", "", line).strip()
                                        for line in f.group(1).splitlines()).replace("Probed: ", "")
    return None


def is_core_dir(directory: Path) -> bool:
    """Whether a directory holds a generated core (kpatch.ko's sources) rather than a patch module."""
    d = Path(directory)
    return (d / "kpatch.h").is_file() and (d / "core.c").is_file()


def core_files(kernel: Kernel) -> list[render.OutputFile]:
    return render.render_core(CoreModel(features=kernel.features, release=kernel.release))


def plan_patch(kernel: Kernel, patch: spec.PatchSpec, out_dir: Path, core_dir: Path, subdir: str,
               core: list[render.OutputFile], snap: snapshot.Snapshot | None = None,
               check_symbols: bool = True, notes: list[str] | None = None) -> list[render.OutputFile]:
    """Render one patch module; the kernel symbols it uses that nobody exports become klp
    relocations (klprelocs.py).

    The module is compiled once in a scratch tree to find them; each [[symbol]] table must
    name one. With `check_symbols`, targets are checked against the symbol snapshot and the
    klp symbols against the snapshot or, without one, the kallsyms of the kernel's image;
    what could not be checked goes into `notes`.
    """
    model = replace(patch_model(patch, out_dir, core_dir, kernel.release, kernel.features.summary()),
                    kernel_clears_relocs=kernel.features.clears_klp_relocs)
    header = next(f.content for f in core if f.path.name == "kpatch.h")
    core_exports = ({m.decode() for f in core if f.path.suffix == ".c" for m in EXPORT_RE.findall(f.content)}
                    if patch.backend == "kpatch" else set())
    files = render.render_patch(model, subdir)
    unexported = _unexported(kernel, files, header, subdir, patch.name, core_exports)
    for i, sym in enumerate(patch.symbols):
        if sym.name not in unexported:
            raise spec.SpecError(patch.path, f"symbol[{i}].name",
                                 f"{sym.name!r} is not an unexported symbol the sources use",
                                 "remove the [[symbol]] table, or fix the name")
    if check_symbols:
        _check_against_kernel(kernel, patch, snap, unexported, notes if notes is not None else [])
    if not unexported:
        return files
    if kernel.config.get("CONFIG_LIVEPATCH") != "y":
        raise spec.SpecError(patch.path, "sources", f"the sources use {', '.join(unexported)}, which {kernel.release} "
                             "does not export: kpgen reaches them through klp relocations, which the kernel writes "
                             "only with CONFIG_LIVEPATCH", "use only exported symbols, or a kernel with livepatch")
    model = replace(model, klp_symbols=_klp_symbols(patch, unexported))
    if model.clears_relocs:
        # the code that clears a module's relocations on this kernel uses symbols of its own
        more = _unexported(kernel, render.render_patch(model, subdir), header, subdir, patch.name, core_exports)
        model = replace(model, klp_symbols=_klp_symbols(patch, more))
    return render.render_patch(model, subdir)


def _unexported(kernel: Kernel, files: list[render.OutputFile], header: bytes, subdir: str, name: str,
                core_exports: set[str]) -> list[str]:
    """The undefined symbols of the module's object that neither the kernel nor the core exports."""
    undefined = kbuild.probe_symbols(kernel, files, header, subdir, name)
    return sorted(undefined - set(kernel.exports) - core_exports - MODPOST_SYMBOLS)


def _klp_symbols(patch: spec.PatchSpec, names: list[str]) -> tuple[KlpSymbol, ...]:
    tables = {s.name: s for s in patch.symbols}
    return tuple(KlpSymbol(n, tables[n].object, tables[n].kallsyms, tables[n].sympos) if n in tables else KlpSymbol(n)
                 for n in names)


def _check_against_kernel(kernel: Kernel, patch: spec.PatchSpec, snap: snapshot.Snapshot | None,
                          unexported: list[str], notes: list[str]) -> None:
    """Targets against the symbol snapshot; klp symbols against it or the image's kallsyms."""
    if snap is not None:
        notes += snapshot.validate(patch, snap, unexported)
        return
    notes.append(f"no symbol snapshot of {kernel.release}: targets are checked at load time only "
                 f"(`kpgen snapshot --kdir {kernel.kdir}` takes one)")
    if not unexported:
        return
    try:
        image = ksyms.vmlinux_symbols(kernel)
    except KernelError as exc:
        notes.append(f"the unexported symbols the sources use are checked at load time only: {exc}")
        return
    rows = [(t, n, "vmlinux") for t, n in image.objects["vmlinux"].entries]
    for obj in sorted({s.object for s in patch.symbols} - {"vmlinux"}):
        with contextlib.suppress(KernelError):
            rows += [(t, n, obj) for t, n in image.object(kernel, obj).entries]
    offline = snapshot.parse(kernel.release, "\n".join(f"{t} {n} [{o}]" if o != "vmlinux" else f"{t} {n}"
                                                       for t, n, o in rows), "")
    notes += [n.replace("was not loaded when the snapshot was taken", "is not installed")
              for n in snapshot.validate_symbols(patch, offline, unexported)]
    notes.append(f"the unexported symbols the sources use are checked against {image.origin}")


def plan_tree(kernel: Kernel, out_dir: Path, specs: list[Path],
              unchecked: Sequence[Path] = ()) -> list[render.OutputFile]:
    """Render the core (out_dir/core) and each spec (out_dir/patches/<name>) in memory.

    Specs in `unchecked` skip the checks against the kernel's symbols: the boot tests'
    deliberately broken patches must reach the kernel to show it refusing them.
    """
    core = core_files(kernel)
    snap = snapshot.load(kernel.release)
    files = list(core)
    names: dict[str, Path] = {}
    for path in [*specs, *unchecked]:
        patch = spec.load(path)
        if patch.name in names:
            raise spec.SpecError(path, "name", f"{patch.name!r} is also the name of {names[patch.name]}",
                                 "give every patch module its own name")
        names[patch.name] = path
        subdir = f"patches/{patch.name}"
        files += plan_patch(kernel, patch, Path(out_dir) / subdir, Path(out_dir) / "core", subdir, core,
                            snap, check_symbols=path not in unchecked)
    return files


def generate_tree(kernel: Kernel, out_dir: Path, specs: list[Path], unchecked: Sequence[Path] = ()) -> list[Path]:
    return render.write(out_dir, plan_tree(kernel, out_dir, specs, unchecked))


def generate_patch(kernel: Kernel, spec_path: Path, out_dir: Path, core_dir: Path,
                   backend: str | None = None, notes: list[str] | None = None) -> list[Path]:
    """Render one patch module into out_dir (its own directory); `backend` overrides the spec's.
    What could not be checked against the kernel goes into `notes`."""
    patch = spec.with_backend(spec.load(spec_path), backend)
    files = plan_patch(kernel, patch, Path(out_dir), Path(core_dir), ".", core_files(kernel),
                       snapshot.load(kernel.release), notes=notes)
    return render.write(out_dir, files)
