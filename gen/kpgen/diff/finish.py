"""The last stage: fix.c and the spec, and the module compiled once as `kpgen patch` will
make it. The kernel symbols it uses that nobody exports (its own code's, and those only an
inline function of the kernel headers names, tracepoints included) become klp relocations,
checked against the kernel as any spec's are (checks.run).

Code copied from vmlinux was compiled for the kernel, and a few kernel headers give the
kernel's own code what they keep from modules (`#ifndef MODULE`: asm/tlbflush.h's
flush_tlb_mm(), for one). When the module does not compile because a name is missing, the
name's definition or declaration is looked up in the headers the unit was parsed with, copied
after the includes, and the module compiled again; a function declared so is the kernel's,
reached through a klp relocation like any unexported one.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import extract
from ..errors import BuildError, DiffRefused
from ..kernel import Kernel
from . import emit
from .closure import ExtractedUnit
from .decisions import Action, HeaderCopy, Plan

# what gcc says of a name the module's headers do not give it (quotes as the locale has them)
MISSING_RE = re.compile("(?:implicit declaration of function |error: )[\u2018'`](\\w+)[\u2019'] ?(?:undeclared)?")
MAX_ROUNDS = 6


def finish(k: Kernel, p: Plan, parts: list[ExtractedUnit], work: Path) -> None:
    """Sets fix.c and the spec; refuses C that does not compile as a module, or a klp symbol
    the kernel does not have."""
    for round_ in range(MAX_ROUNDS + 1):
        try:
            _compile(k, p, parts, work / f"check{round_}")
            return
        except BuildError as exc:
            found = [hc for name in _missing(str(exc)) if (hc := header_copy(parts, name, p)) is not None]
            if not found or round_ == MAX_ROUNDS:
                first = next((line.strip() for line in str(exc).splitlines() if "error:" in line), str(exc)[:200])
                raise DiffRefused(", ".join(sorted({t.unit for t in p.targets})) or str(p.patch),
                                  f"the C kpgen took out of the source does not compile as a module ({first})",
                                  "the patched code needs what kpgen cannot take out of its files: write the "
                                  "replacement with kpgen new, and report the diff to kpgen's developers") from None
            for hc in found:
                p.header_copies.append(hc)
                if hc.declaration:
                    p.decide(hc.name, Action.EXTERN, f"{hc.header} declares it for the kernel's own code only, not "
                             "for modules: declared as there, called through a klp relocation")
                else:
                    p.decide(hc.name, Action.COPY, f"{hc.header} gives it to the kernel's own code only, not to "
                             "modules: copied from there")


def _compile(k: Kernel, p: Plan, parts: list[ExtractedUnit], where: Path) -> None:
    from .. import checks, generate, spec

    p.fix_c = emit.fix_c(p, k, parts)
    p.spec = emit.patch_spec(p)
    emit.write(p, where)
    patch = spec.load(where / f"{p.name}.toml")
    generate.plan_patch(k, patch, where / "module", where / "core", "module", generate.core_files(k),
                        checks.Report())


def _missing(log: str) -> list[str]:
    """The names gcc found undeclared, in the order it said them, once each."""
    names: list[str] = []
    for line in log.splitlines():
        if "implicit declaration of function" in line or "undeclared" in line:
            m = MISSING_RE.search(line)
            if m and m.group(1) not in names:
                names.append(m.group(1))
    return names


def header_copy(parts: list[ExtractedUnit], name: str, p: Plan) -> HeaderCopy | None:
    """The definition (a macro, a type-free declaration of a function or variable) that a
    kernel header gives the unit for `name`, or None when none of the units' headers has it."""
    if any(hc.name == name for hc in p.header_copies):
        return None
    for part in parts:
        found = extract.header_definition(part.parsed, name)
        if found is not None:
            header, text, declaration = found
            return HeaderCopy(name, header, text, declaration)
    return None
