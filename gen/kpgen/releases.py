"""One kernel per tree: which kernel release a generated directory or a built module was made
for, and the refusal of one made for another release than the kernel a command works for.

A generated directory says it in the header of its files (`kpgen-generated-file for <release>`);
a built module in its vermagic. The C of a core or patch module depends on its kernel (probed
features, resolved symbols), and a module built against one release does not load in another:
`build`, `check` and `patch` refuse the mix (exit 2) with both releases named.
"""

from __future__ import annotations

from pathlib import Path

from . import generate, kernel
from .errors import UsageError
from .kernel import Kernel


def of_directory(directory: Path) -> str | None:
    """The release a generated directory was made for; None when kpgen did not make it."""
    made = generate.generated_for(Path(directory))
    return made[0] if made else None


def of_module(ko: Path) -> str | None:
    """The release a built module is for (the first word of its vermagic); None without one."""
    from . import elfcheck

    vermagic = elfcheck.read_module(Path(ko)).first("vermagic")
    return vermagic.split(" ")[0] if vermagic else None


def _other_kdir(release: str) -> str:
    kdir = kernel.kdir_of(release)
    return f"--kdir {kdir}" if kdir else f"--kdir of {release}'s headers"


def require(what: str, made: str, made_for: str | None, k: Kernel, fix: str) -> None:
    """Refuse `what` (a path, described) `made` ("generated", "built") for another release than k's."""
    if made_for is not None and made_for != k.release:
        raise UsageError(f"{what} was {made} for kernel {made_for}, not for {k.release} (--kdir {k.kdir}): "
                         f"{fix}, or pass {_other_kdir(made_for)}")


def require_directory(directory: Path, k: Kernel, role: str) -> None:
    """Refuse a generated directory (a core or a patch module) of another release."""
    require(f"{directory} ({role})", "generated", of_directory(directory), k,
            f"generate it again with --kdir {k.kdir}")


def require_module(ko: Path, k: Kernel) -> None:
    """Refuse a built module of another release."""
    require(str(ko), "built", of_module(ko), k, f"build it again with --kdir {k.kdir}")
