"""Where kpgen's own files are: the one module that knows paths into the package.

Everything kpgen reads at run time ships inside the `kpgen` package, so a checkout and an
installed wheel behave the same:

- `templates/`: the Jinja2 templates of the core and of patch modules (at the top of a
  checkout, beside gen/; inside the package in a wheel, where pyproject.toml maps them);
- `samples/`: the sample patch specs that `kpgen generate` renders beside the core;
- `data/`: the kernel matrix (`kernels.toml`), the splat lists of the boot checks, and the
  headers of kpatch's patch-author API that `kpgen diff` compiles diffs with (`include/`);
- `fleet/kpgen-patches`: the loader `kpgen install` and packages put on the target machines;
- `harness/`: what `kpgen boot-test` and `kpgen bench` build and run in the guest (the guest
  suite, the test modules and patches, the benchmark's modules and guest script).

The guest of a boot test reads the host's file system, so these must be real files on disk:
an installation that keeps the package in a zip archive is refused with a clear message.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from .errors import KpgenError


def _package_dir() -> Path:
    root = files("kpgen")
    path = Path(str(root))
    if not (path / "data").is_dir():
        raise KpgenError(f"kpgen's package files are not on disk ({root}): install kpgen with pip "
                         "into a directory, not as a zip archive")
    return path


def _templates_dir(package: Path) -> Path:
    """The templates: kpgen/templates in an installed wheel, templates/ beside gen/ in a checkout."""
    for path in (package / "templates", package.parents[1] / "templates"):
        if (path / "core").is_dir():
            return path
    raise KpgenError(f"kpgen's templates are missing: neither {package / 'templates'} nor "
                     f"{package.parents[1] / 'templates'} holds them; reinstall kpgen")


PACKAGE = _package_dir()
TEMPLATES = _templates_dir(PACKAGE)
SAMPLES = PACKAGE / "samples"
DATA = PACKAGE / "data"
MATRIX = DATA / "kernels.toml"
SPLAT_DENYLIST = DATA / "splat-denylist.txt"
SPLAT_ALLOWLIST = DATA / "splat-allowlist.txt"
# kpatch's patch-author headers (kpatch-macros.h, kpatch-syscall.h), for diffs that include them
KPATCH_API = DATA / "include"
LOADER_SCRIPT = PACKAGE / "fleet" / "kpgen-patches"
HARNESS = PACKAGE / "harness"
GUEST = HARNESS / "guest"
TEST_MODULES = HARNESS / "modules"
TEST_PATCHES = HARNESS / "patches"
BENCH = HARNESS / "bench"


def label(path: Path) -> str:
    """A stable name for a file in generated headers: relative to the package for kpgen's own
    files (e.g. samples/meminfo/meminfo.toml), else its last two parts; never absolute, so the
    output does not depend on where kpgen or the spec lives.

    >>> label(SAMPLES / "meminfo" / "meminfo.toml")
    'samples/meminfo/meminfo.toml'
    >>> label(Path("/home/dev/fix_cmdline/fix_cmdline.toml"))
    'fix_cmdline/fix_cmdline.toml'
    """
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(PACKAGE).as_posix()
    except ValueError:
        return Path(*path.parts[-2:]).as_posix()


def build_root() -> Path:
    """Where the harness builds its trees: $KPGEN_BUILD, else ./build of the current directory."""
    return Path(os.environ.get("KPGEN_BUILD") or "build")
