"""The container: `ci/container.sh` builds the Dockerfile with podman, without a daemon or a
registry, and runs a Kbuild build (the core and the samples for the default kernel) and the unit
tests (`make test-unit`) inside the image.

The first run makes the base image with debootstrap and provisions the image (apt: both
kernels, QEMU), several minutes; later runs reuse the cached layers. Nothing here is skipped: a
missing tool, or a run that is not root, fails with what to run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "container.sh"
LOG = REPO / "build" / "container" / "container.log"
# a first run on a slow network, with the apt installs in the image, stays well below this
TIMEOUT_S = 3600
HOW = ("run `make container-test` as root to see it alone: it installs podman, buildah, runc and debootstrap "
       "with apt when they are missing, and makes the base image with debootstrap")

pytestmark = pytest.mark.container


def test_image_builds_and_passes_the_build_and_the_unit_tests(container_steps: list[str]) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines: list[str] = []
    with LOG.open("w") as log, subprocess.Popen(
        ["bash", str(SCRIPT), "--engine", "podman"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    ) as proc:
        timer = threading.Timer(TIMEOUT_S, os.killpg, (proc.pid, signal.SIGTERM))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                # pytest shows it with the failure, and live with -s
                sys.stdout.write(line)
                if line.startswith("[container "):
                    container_steps.append(line.rstrip())
            status = proc.wait()
        finally:
            timer.cancel()
    elapsed = time.monotonic() - start
    container_steps.append(f"ci/container.sh: exit {status} after {elapsed:.0f} s")
    if status != 0:
        why = f"killed after the {TIMEOUT_S} s timeout" if elapsed >= TIMEOUT_S else f"exited {status}"
        tail = "".join(lines[-60:])
        pytest.fail(f"`bash ci/container.sh` {why} after {elapsed:.0f} s. Its last lines:\n{tail}\n"
                    f"The whole output: {LOG.relative_to(REPO)}. {HOW}.", pytrace=False)
