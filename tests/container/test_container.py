"""The container: `ci/container.sh` builds the Dockerfile with podman, without a daemon or a
registry, and runs a Kbuild build (the core and the samples for the default kernel) and the unit
tests (`make test-unit`) inside the image.

The first run makes the base image with debootstrap and provisions the image (apt: both
kernels, QEMU), several minutes; later runs reuse the cached layers. Nothing here is skipped: a
missing tool, or a run that is not root, fails with what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "container.sh"
LOG = REPO / "build" / "container" / "container.log"
# a first run on a slow network, with the apt installs in the image, stays well below this (and
# below pytest's per-test timeout, when the run starts it in this test)
TIMEOUT_S = 2700
HOW = ("run `make container-test` as root to see it alone: it installs podman, buildah, runc and debootstrap "
       "with apt when they are missing, and makes the base image with debootstrap")

pytestmark = pytest.mark.container


def test_image_builds_and_passes_the_build_and_the_unit_tests(container_job: Any, container_steps: list[str]) -> None:
    # started beside the first boot test when the run has any (see tests/conftest.py), else now
    status, elapsed = container_job.wait(TIMEOUT_S)
    container_steps.append(f"ci/container.sh: exit {status} after {elapsed:.0f} s")
    if status != 0:
        why = f"killed after the {TIMEOUT_S} s timeout" if status is None else f"exited {status}"
        tail = "".join(container_job.lines[-60:])
        pytest.fail(f"`bash ci/container.sh` {why} after {elapsed:.0f} s. Its last lines:\n{tail}\n"
                    f"The whole output: {LOG.relative_to(REPO)}. {HOW}.", pytrace=False)
