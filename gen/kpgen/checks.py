"""The checks of a patch against its kernel at generation time, before any boot: its targets and
the unexported symbols it uses (targets.py), its prototypes and declarations (prototypes.py).

`kpgen patch`, `kpgen generate` and `kpgen diff` run them on the module they compile anyway; a
check that fails refuses the spec (exit 2). What could not be checked is reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import prototypes, targets
from .kernel import Kernel
from .spec import PatchSpec


@dataclass
class Report:
    """What the checks of one or more patches relied on, and what they could not check."""

    origins: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self, release: str) -> list[str]:
        """What to tell the user, one line each."""
        out = []
        if self.origins:
            out.append(f"checked against {release}: targets, symbols and prototypes "
                       f"({'; '.join(dict.fromkeys(self.origins))})")
        out += [f"not checked: {note}" for note in dict.fromkeys(self.notes)]
        return out


def run(patch: PatchSpec, k: Kernel, obj: Path, unexported: Sequence[str], report: Report) -> None:
    """Check one patch whose module compiled into `obj`; raise on the first refutation."""
    facts = targets.kernel_facts(k, targets.objects_of(patch), report.notes)
    targets.validate(patch, facts, k.release, unexported)
    report.origins += [f"{name}: {f.origin}" for name, f in sorted(facts.items())]
    report.notes += prototypes.check(patch, k, obj, unexported)
