"""Generate the core and patch modules: the steps behind `kpgen generate` and `kpgen patch`."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import checks, kbuild, render, spec
from .fleet import metadata
from .kernel import Kernel
from .klprelocs import MANIFEST as KLP_MANIFEST, SENTINEL, KlpSymbol
from .model import CORE_FILES, MARKER, CoreModel, patch_model
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


def patch_paths(out_dir: Path, patch: spec.PatchSpec) -> list[Path]:
    """The files rendering `patch` into out_dir writes (known before rendering it)."""
    out = Path(out_dir)
    return [out / f"{patch.name}.c", out / "Kbuild", out / KLP_MANIFEST, *(out / s.name for s in patch.sources),
            out / metadata.INFO_FILE]


def tree_paths(out_dir: Path, specs: Sequence[Path]) -> list[Path]:
    """The files generate_tree writes: the core's and each spec's module's."""
    paths = [Path(out_dir) / "core" / name for name in CORE_FILES]
    for path in specs:
        patch = spec.load(path)
        paths += patch_paths(Path(out_dir) / "patches" / patch.name, patch)
    return paths


def core_files(kernel: Kernel) -> list[render.OutputFile]:
    return render.render_core(CoreModel(features=kernel.features, release=kernel.release))


def plan_patch(kernel: Kernel, patch: spec.PatchSpec, out_dir: Path, core_dir: Path, subdir: str,
               core: list[render.OutputFile], report: checks.Report | None = None) -> list[render.OutputFile]:
    """Render one patch module, with the metadata its build embeds (fleet.metadata); the kernel
    symbols it uses that nobody exports are its klp symbols, which kpgen build turns into klp
    relocations after the link (klprelocs.py).

    The module is compiled once in a scratch tree to find them; each [[symbol]] table must
    name one. With a report to fill, the targets, symbols and prototypes are checked against
    the kernel (checks.py) on that object.
    """
    return [*_render_patch(kernel, patch, out_dir, core_dir, subdir, core, report), metadata.module_file(patch, subdir)]


def _render_patch(kernel: Kernel, patch: spec.PatchSpec, out_dir: Path, core_dir: Path, subdir: str,
                  core: list[render.OutputFile], report: checks.Report | None) -> list[render.OutputFile]:
    model = replace(patch_model(patch, out_dir, core_dir, kernel.release, kernel.features.summary()),
                    kernel_clears_relocs=kernel.features.clears_klp_relocs)
    files = render.render_patch(model, subdir)
    header = next(f.content for f in core if f.path.name == "kpatch.h")
    core_exports = ({m.decode() for f in core if f.path.suffix == ".c" for m in EXPORT_RE.findall(f.content)}
                    if patch.backend == "kpatch" else set())
    with tempfile.TemporaryDirectory(prefix="kpgen-object-") as tmp:
        obj = Path(tmp) / f"{patch.name}.o"
        unexported = _unexported(kernel, files, header, subdir, patch, core_exports, obj)
        for i, sym in enumerate(patch.symbols):
            if sym.name not in unexported:
                raise spec.SpecError(patch.path, f"symbol[{i}].name",
                                     f"{sym.name!r} is not an unexported symbol the sources use",
                                     "remove the [[symbol]] table, or fix the name")
        if report is not None:
            checks.run(patch, kernel, obj, unexported, report)
    if not unexported:
        return files
    if kernel.config.get("CONFIG_LIVEPATCH") != "y":
        raise spec.SpecError(patch.path, "sources", f"the sources use {', '.join(unexported)}, which {kernel.release} "
                             "does not export: kpgen reaches them through klp relocations, which the kernel writes "
                             "only with CONFIG_LIVEPATCH", "use only exported symbols, or a kernel with livepatch")
    model = replace(model, klp_symbols=_klp_symbols(patch, unexported))
    if model.clears_relocs:
        # the code that clears a module's relocations on this kernel uses symbols of its own
        more = _unexported(kernel, render.render_patch(model, subdir), header, subdir, patch, core_exports)
        model = replace(model, klp_symbols=_klp_symbols(patch, more))
    return render.render_patch(model, subdir)


def _unexported(kernel: Kernel, files: list[render.OutputFile], header: bytes, subdir: str, patch: spec.PatchSpec,
                core_exports: set[str], keep_object: Path | None = None) -> list[str]:
    """The undefined symbols of the module's object that neither the kernel nor the core exports."""
    undefined = kbuild.probe_symbols(kernel, files, header, subdir, patch.name, keep_object=keep_object,
                                     sources=patch.sources)
    return sorted(undefined - set(kernel.exports) - core_exports - MODPOST_SYMBOLS)


def _klp_symbols(patch: spec.PatchSpec, names: list[str]) -> tuple[KlpSymbol, ...]:
    tables = {s.name: s for s in patch.symbols}
    return tuple(KlpSymbol(n, tables[n].object, tables[n].kallsyms, tables[n].sympos) if n in tables else KlpSymbol(n)
                 for n in names)


def plan_tree(kernel: Kernel, out_dir: Path, specs: list[Path], unchecked: Sequence[Path] = (),
              report: checks.Report | None = None) -> list[render.OutputFile]:
    """Render the core (out_dir/core) and each spec (out_dir/patches/<name>) in memory.

    Specs in `unchecked` skip the checks against the kernel: the boot tests' deliberately
    broken patches must reach the kernel to show it refusing them.
    """
    core = core_files(kernel)
    report = report if report is not None else checks.Report()
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
                            None if path in unchecked else report)
    return files


def generate_tree(kernel: Kernel, out_dir: Path, specs: list[Path], unchecked: Sequence[Path] = (),
                  report: checks.Report | None = None, force: bool = False) -> list[Path]:
    return render.write(out_dir, plan_tree(kernel, out_dir, specs, unchecked, report), force)


def generate_patch(kernel: Kernel, spec_path: Path, out_dir: Path, core_dir: Path,
                   backend: str | None = None, report: checks.Report | None = None,
                   force: bool = False) -> list[Path]:
    """Render one patch module into out_dir (its own directory); `backend` overrides the spec's."""
    patch = spec.with_backend(spec.load(spec_path), backend)
    files = plan_patch(kernel, patch, Path(out_dir), Path(core_dir), ".", core_files(kernel),
                       report if report is not None else checks.Report())
    return render.write(out_dir, files, force)
