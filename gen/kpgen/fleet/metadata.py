"""What a module built by kpgen says of itself: its spec, functions, backend, sources and source
diff, the kernel it was built for and kpgen's version, for `kpgen info` and `kpgen package`.

Two steps carry it:
- `kpgen patch` writes `kpgen-info.json` into the module's directory, from the spec (with the
  backend the module is built for): deterministic, like every generated file.
- After Kbuild links the module, the build's embed step (kpgen.pipeline) puts that document,
  with the sources' text, the kernel's identity (release, UTS version, Debian package version)
  and kpgen's version, into a section `.kpgen.info` of the .ko: not SHF_ALLOC, so the kernel
  never loads it, and covered by the module's signature, which comes after.
The core gets a section too, saying what it is.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .. import __version__
from ..errors import BuildError, UsageError
from ..kernel import Kernel
from ..render import OutputFile
from ..spec import PatchSpec

INFO_FILE = "kpgen-info.json"
SECTION = ".kpgen.info"
FORMAT = 1


def _dump(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def patch_document(patch: PatchSpec) -> dict:
    """What the spec says, as the module directory keeps it (no machine-dependent path)."""
    return {
        "format": FORMAT,
        "kind": "patch",
        "name": patch.name,
        "description": patch.description,
        "backend": patch.backend,
        "replace": patch.replace,
        "functions": [{"object": f.object, "target": f.target, "sympos": f.sympos, "replacement": f.replacement}
                      for f in patch.functions],
        "spec": {"name": patch.path.name, "text": patch.path.read_text(encoding="utf-8")},
        "sources": [src.name for src in patch.sources],
        "diff": ({"name": patch.diff.name, "text": patch.diff.read_text(encoding="utf-8")}
                 if patch.diff is not None else None),
    }


def module_file(patch: PatchSpec, subdir: str) -> OutputFile:
    """The module directory's kpgen-info.json."""
    return OutputFile(Path(subdir) / INFO_FILE, _dump(patch_document(patch)))


UTS_VERSION_RE = re.compile(r'#define UTS_VERSION "([^"]*)"')
PACKAGE_ID_RE = re.compile(r'#define LINUX_PACKAGE_ID " ?(?:Debian )?([^"]*)"')


@dataclass(frozen=True)
class KernelIdentity:
    """Which build of a kernel release: `uname -v` of the kernel the headers belong to, and, on
    Debian, the version of its linux-image package (Debian may build a release more than once)."""

    release: str
    version: str  # UTS_VERSION, e.g. "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
    package: str  # e.g. "6.1.192-3", "" when the headers do not say


def kernel_identity(kernel: Kernel) -> KernelIdentity:
    generated = kernel.kdir / "include" / "generated"
    uts = (generated / "utsversion.h").read_text(errors="replace") if (generated / "utsversion.h").is_file() else ""
    if not uts and (generated / "compile.h").is_file():
        uts = (generated / "compile.h").read_text(errors="replace")
    pkg = (generated / "package.h").read_text(errors="replace") if (generated / "package.h").is_file() else ""
    m, p = UTS_VERSION_RE.search(uts), PACKAGE_ID_RE.search(pkg)
    return KernelIdentity(kernel.release, m.group(1) if m else "", p.group(1).strip() if p else "")


def built_document(kernel: Kernel, module_dir: Path, kind: str) -> bytes:
    """The section's content for a module built in module_dir: a patch module's kpgen-info.json
    with its sources' text, or a core's description; with the kernel and kpgen's version."""
    module_dir = Path(module_dir)
    if kind == "patch":
        doc = json.loads((module_dir / INFO_FILE).read_text(encoding="utf-8"))
        doc["sources"] = [{"name": name, "text": (module_dir / name).read_text(encoding="utf-8")}
                          for name in doc["sources"]]
    else:
        doc = {"format": FORMAT, "kind": "core", "name": "kpatch", "backend": "kpatch",
               "description": "kpgen's core: the runtime of kpatch-backend patch modules"}
    ident = kernel_identity(kernel)
    doc["kernel"] = {"release": ident.release, "version": ident.version, "package": ident.package}
    doc["kpgen"] = __version__
    return _dump(doc)


def embed(ko: Path, content: bytes) -> None:
    """Put `content` into the module's .kpgen.info section (replacing one it has), with objcopy.
    Runs on the linker's output: before the steps that write sections objcopy would not carry
    (klp relocations) and before signing."""
    with tempfile.NamedTemporaryFile(prefix="kpgen-info-", suffix=".json") as tmp:
        tmp.write(content)
        tmp.flush()
        argv = ["objcopy", "--remove-section", SECTION, "--add-section", f"{SECTION}={tmp.name}",
                "--set-section-flags", f"{SECTION}=contents,readonly", str(ko)]
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        except FileNotFoundError:
            raise BuildError("objcopy not found: install binutils") from None
    if proc.returncode != 0:
        raise BuildError(f"adding {SECTION} to {ko} failed (objcopy exited {proc.returncode}): {proc.stdout.strip()}")


@dataclass(frozen=True)
class Function:
    object: str
    target: str
    sympos: int
    replacement: str


@dataclass(frozen=True)
class Metadata:
    """A module's .kpgen.info section, read back."""

    kind: str  # "patch" or "core"
    name: str
    description: str
    backend: str
    replace: bool
    functions: tuple[Function, ...]
    spec_name: str
    spec_text: str
    sources: tuple[tuple[str, str], ...]  # (file name, text)
    diff: tuple[str, str] | None  # (file name, text)
    release: str
    kernel_version: str
    kernel_package: str
    kpgen: str


def read(ko: Path) -> Metadata | None:
    """The module's metadata, or None when it has no .kpgen.info section (not built by `kpgen
    build`); UsageError naming the file when it is not an ELF module or the section is broken."""
    try:
        with Path(ko).open("rb") as fh:
            section = ELFFile(fh).get_section_by_name(SECTION)
            raw = section.data() if section is not None else None
    except (OSError, ELFError) as exc:
        raise UsageError(f"{ko}: not a readable kernel module ({exc})") from None
    if raw is None:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this kpgen reads {FORMAT}")
        kernel, spec, diff = doc.get("kernel", {}), doc.get("spec") or {}, doc.get("diff")
        return Metadata(
            kind=doc["kind"], name=doc["name"], description=doc.get("description", ""), backend=doc["backend"],
            replace=bool(doc.get("replace", False)),
            functions=tuple(Function(f["object"], f["target"], int(f["sympos"]), f["replacement"])
                            for f in doc.get("functions", [])),
            spec_name=spec.get("name", ""), spec_text=spec.get("text", ""),
            sources=tuple((s["name"], s["text"]) for s in doc.get("sources", [])),
            diff=(diff["name"], diff["text"]) if diff else None,
            release=kernel.get("release", ""), kernel_version=kernel.get("version", ""),
            kernel_package=kernel.get("package", ""), kpgen=doc.get("kpgen", ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{ko}: its {SECTION} section cannot be read ({exc}): rebuild it with this kpgen") from None
