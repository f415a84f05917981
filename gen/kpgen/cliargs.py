"""What the command line's arguments offer shell completion (argcomplete), shared by every
command's parser entries."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import spec


def complete_files(*suffixes: str) -> Callable[..., list[str]]:
    """An argcomplete completer: files with these suffixes, and directories to descend into."""
    def complete(prefix: str, **_: object) -> list[str]:
        import glob
        import os

        found = glob.glob(os.path.expanduser(prefix) + "*")
        return [p + "/" if os.path.isdir(p) else p for p in found
                if os.path.isdir(p) or p.endswith(suffixes)]
    return complete


def complete_dirs(prefix: str, **_: object) -> list[str]:
    import glob
    import os

    return [p + "/" for p in glob.glob(os.path.expanduser(prefix) + "*") if os.path.isdir(p)]


def complete_kdirs(prefix: str, **_: object) -> list[str]:
    kdirs = [str(p) for p in sorted(Path("/lib/modules").glob("*/build")) if p.is_dir()]
    return [k for k in kdirs if k.startswith(prefix)] or complete_dirs(prefix)


def complete_backends(prefix: str, **_: object) -> list[str]:
    return [b for b in spec.BACKENDS if b.startswith(prefix)]


def arg(sp: argparse.ArgumentParser, *names: str, complete: Callable[..., list[str]] | None = None,
         **kwargs: Any) -> None:
    """Add an argument, with what shell completion offers for it (argcomplete reads .completer)."""
    action = sp.add_argument(*names, **kwargs)
    if complete is not None:
        action.completer = complete  # type: ignore[attr-defined]
