"""Scan a kernel log for splats: any hit fails a boot test, whatever the commands returned."""

from __future__ import annotations

import re
from pathlib import Path

from .resources import SPLAT_DENYLIST as DENYLIST


def patterns(path: Path = DENYLIST) -> list[re.Pattern[str]]:
    lines = path.read_text().splitlines()
    return [re.compile(line) for line in lines if line.strip() and not line.startswith("#")]


def scan(log: str, deny: list[re.Pattern[str]] | None = None) -> list[str]:
    """The log lines that match the deny-list, in order."""
    deny = patterns() if deny is None else deny
    return [line for line in log.splitlines() if any(p.search(line) for p in deny)]
