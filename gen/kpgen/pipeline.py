"""A module's build, from Kbuild to the file that is shipped: link, post-link steps, signature.

    make -C KDIR M=DIR modules          Kbuild links DIR/NAME.ko (kbuild.py)
      -> post-link steps, in order     each changes the linked file once:
         1. embed                       kpgen's metadata into .kpgen.info (fleet.metadata), with
                                        objcopy: first, while the file is as the linker wrote it
         2. klp                         references to the kernel's unexported symbols become klp
                                        relocations (klprelocs.py): sections objcopy cannot
                                        carry, so after embed
      -> sign (last)                    scripts/sign-file appends a signature over everything
                                        before it: any later change would invalidate it
      -> ELF checks                     elfcheck.py, which read but never change the file

Every step runs on a freshly linked module: the directory's .ko files are removed before make
runs (Kbuild then links them again, in a second or two), so that no step ever sees its own or
another step's output from an earlier build, and a module is never signed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import generate, kbuild, klprelocs
from .fleet import metadata, signature
from .kernel import Kernel


@dataclass(frozen=True)
class Step:
    """One post-link step: `run(kernel, module_dir, ko)` changes `ko` in place and returns a line
    to show, or None."""

    name: str
    run: Callable[[Kernel, Path, Path], str | None]


def _embed(kernel: Kernel, module_dir: Path, ko: Path) -> str | None:
    if (module_dir / metadata.INFO_FILE).is_file():
        kind = "patch"
    elif generate.is_core_dir(module_dir):
        kind = "core"
    else:
        return None  # a module kpgen did not generate: nothing to say about it
    metadata.embed(ko, metadata.built_document(kernel, module_dir, kind))
    return None


def _klp(kernel: Kernel, module_dir: Path, ko: Path) -> str | None:
    manifest = module_dir / klprelocs.MANIFEST
    if not manifest.is_file():
        return None
    done = klprelocs.postlink(ko, manifest)
    if done is None:
        return None
    line = f"  KLP     {ko.name}: {done.summary()}"
    log = module_dir / "kpgen-build.log"
    if log.is_file():
        log.write_text(log.read_text() + line + "\n")
    return None


# The post-link steps, in the order they run; signing follows them all.
POST_LINK: tuple[Step, ...] = (
    Step("embed", _embed),
    Step("klp", _klp),
)


@dataclass(frozen=True)
class Built:
    """A built module directory: Kbuild's result, and what the steps after it said."""

    result: kbuild.BuildResult
    notes: tuple[str, ...] = ()

    @property
    def modules(self) -> tuple[Path, ...]:
        return self.result.modules


def finish(kernel: Kernel, module_dir: Path, ko: Path, key: signature.SigningKey | None = None) -> list[str]:
    """Run the post-link steps on one freshly linked module, then sign it when a key is given."""
    notes = [note for step in POST_LINK if (note := step.run(kernel, Path(module_dir), ko)) is not None]
    if key is not None:
        notes.append(f"{ko}: {signature.sign(kernel, ko, key).describe()}")
    return notes


def build(kernel: Kernel, module_dir: Path, core_dir: Path | None = None, variables: tuple[str, ...] = (),
          key: signature.SigningKey | None = None) -> Built:
    """Kbuild, then every post-link step and the signature, for each module of module_dir."""
    module_dir = Path(module_dir)
    for stale in module_dir.glob("*.ko"):
        stale.unlink()
    result = kbuild.build(kernel, module_dir, core_dir, variables)
    notes = [note for ko in result.modules for note in finish(kernel, module_dir, ko, key)]
    return Built(result, tuple(notes))
