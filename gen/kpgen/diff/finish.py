"""The last stage: fix.c and the spec, and the module compiled once as `kpgen patch` will
make it. The kernel symbols it uses that nobody exports (its own code's, and those only an
inline function of the kernel headers names, tracepoints included) become klp relocations,
checked against the kernel as any spec's are (checks.run)."""

from __future__ import annotations

from pathlib import Path

from ..errors import BuildError, DiffRefused
from ..kernel import Kernel
from . import emit
from .closure import ExtractedUnit
from .decisions import Plan


def finish(k: Kernel, p: Plan, parts: list[ExtractedUnit], work: Path) -> None:
    """Sets fix.c and the spec; refuses C that does not compile as a module, or a klp symbol
    the kernel does not have."""
    from .. import checks, generate, spec

    p.fix_c = emit.fix_c(p, k, parts)
    p.spec = emit.patch_spec(p)
    where = work / "check"
    emit.write(p, where)
    patch = spec.load(where / f"{p.name}.toml")
    try:
        generate.plan_patch(k, patch, where / "module", where / "core", "module", generate.core_files(k),
                            checks.Report())
    except BuildError as exc:
        first = next((line.strip() for line in str(exc).splitlines() if "error:" in line), str(exc)[:200])
        raise DiffRefused(", ".join(sorted({t.unit for t in p.targets})) or str(p.patch),
                          f"the C kpgen took out of the source does not compile as a module ({first})",
                          "the patched code needs what kpgen cannot take out of its files: write the "
                          "replacement with kpgen new, and report the diff to kpgen's developers") from None
