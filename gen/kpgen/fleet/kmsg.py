"""The kernel log from a point on, read from /dev/kmsg: what the kernel said about a load or an
unload, in its own words, for kpgen's messages.

Each /dev/kmsg record is "PRIORITY,SEQUENCE,MICROSECONDS,FLAGS;TEXT" (continuation lines, which
start with a space, carry key=value pairs and are skipped); TEXT escapes unprintable bytes as
\\xNN. Opening the device and seeking to its end skips everything logged before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from dataclasses import dataclass

KMSG = "/dev/kmsg"
ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Record:
    level: int  # 0 (emerg) .. 7 (debug)
    text: str


def parse(line: str) -> Record | None:
    """One /dev/kmsg line, or None for a continuation or a malformed line.

    >>> parse("3,812,1234567,-;kpatch: cannot load patch module 'x': -16")
    Record(level=3, text="kpatch: cannot load patch module 'x': -16")
    >>> parse(" SUBSYSTEM=module") is None
    True
    """
    head, sep, text = line.partition(";")
    if not sep or line.startswith(" "):
        return None
    fields = head.split(",")
    if not fields[0].isdigit():
        return None
    return Record(int(fields[0]) & 7, ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text))


class KernelLog:
    """The records logged after this object was made. Without read access to /dev/kmsg (not
    root, or a kernel without it), it holds nothing and kpgen's messages go without the kernel's
    words."""

    def __init__(self, path: str = KMSG) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)

    def read(self) -> list[Record]:
        """Every record logged since the last read (or since the log was opened)."""
        records: list[Record] = []
        while self._fd is not None:
            try:
                chunk = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records were overwritten before they were read
                    continue
                break
            if not chunk:
                break
            rec = parse(chunk.decode("utf-8", "replace").rstrip("\n"))
            if rec is not None:
                records.append(rec)
        return records

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> KernelLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The kernel's words about a module's load or unload: the core's and livepatch's messages, the
# module's own (its pr_fmt is its name), and the module loader's and lockdown's.
LOADER_PREFIXES = ("Loading of ", "Lockdown: ", "module: ", "PKCS#7 signature", "Request for unknown module key")


def about(records: list[Record], module: str) -> list[str]:
    """The lines of `records` that speak of loading or unloading `module`, at notice level or more
    urgent, in order.

    >>> about([Record(3, "kpatch: task 'cat' (pid 9) is inside function 'f'"), Record(6, "eth0: up"),
    ...        Record(5, "Loading of unsigned module is rejected")], "fix")
    ["kpatch: task 'cat' (pid 9) is inside function 'f'", 'Loading of unsigned module is rejected']
    """
    prefixes = ("kpatch: ", "livepatch: ", f"{module}: ", *LOADER_PREFIXES)
    return [r.text for r in records if r.level <= 5 and r.text.startswith(prefixes)]
