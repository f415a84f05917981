"""Scan a kernel log for splats: any hit fails a boot test, whatever the commands returned."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import KpgenError
from .resources import SPLAT_ALLOWLIST as ALLOWLIST, SPLAT_DENYLIST as DENYLIST


def patterns(path: Path = DENYLIST, *, may_be_empty: bool = False) -> list[re.Pattern[str]]:
    """The regular expressions of a list file (one a line, `#` comments). An empty deny-list
    would pass every log: it is an error, and so is a line that is no regular expression."""
    found = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            found.append(re.compile(line))
        except re.error as err:
            raise KpgenError(f"{path}:{number}: {line!r} is not a regular expression ({err}): fix the line") from None
    if not found and not may_be_empty:
        raise KpgenError(f"{path} holds no pattern: a boot test with an empty deny-list could not fail")
    return found


def scan(log: str, deny: list[re.Pattern[str]] | None = None,
         allow: list[re.Pattern[str]] | None = None) -> list[str]:
    """The log lines that match the deny-list and no allow-list entry, in order."""
    deny = patterns() if deny is None else deny
    allow = patterns(ALLOWLIST, may_be_empty=True) if allow is None else allow
    return [line for line in log.splitlines()
            if any(p.search(line) for p in deny) and not any(p.search(line) for p in allow)]
