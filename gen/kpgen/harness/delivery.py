"""What the guest's delivery scenarios (topics/95-delivery.sh, 98-signatures.sh) need beside the
build tree's modules, in TREE/delivery/:

- key/: a throwaway signing key and its certificate (openssl), made for this tree only;
- modules/signed/: the core and the two cumulative test patches, signed with it (at a depth the
  guest's index of the tree does not reach, so that `ko NAME` still finds one module per name);
- debs/: two versions of the package of those patches (kpgen package): 1 holds test_fleet_v1,
  2 the cumulative test_fleet_v2, both with the core;
- kpgen: the kpgen command for the guest, this checkout's package under this interpreter.

Only the kernels of KERNELS get it (the guest registers the delivery scenarios where the tree
holds delivery/): nothing in delivery differs on 6.1-rt, whose boot keeps its 2-3 minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .. import kernel as kmod
from ..errors import KpgenError
from ..fleet import deb, signature
from ..resources import PACKAGE

DIR = "delivery"
# the kernels of the matrix whose boot runs the delivery scenarios
KERNELS = ("6.1", "6.12")
PATCHES = ("test_fleet_v1", "test_fleet_v2")
KEY_SUBJECT = "/O=kpgen boot tests/CN=kpgen throwaway test key"


def make_key(where: Path) -> signature.SigningKey:
    """A 2048-bit RSA key and a self-signed certificate for module signing (as the kernel's
    certs/Makefile makes its own: digitalSignature, not a CA)."""
    where.mkdir(parents=True, exist_ok=True)
    key, cert = where / "signing_key.pem", where / "signing_key.x509"
    argv = ["openssl", "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500", "-batch", "-x509",
            "-subj", KEY_SUBJECT, "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=digitalSignature", "-newkey", "rsa:2048",
            "-keyout", str(key), "-out", str(cert)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KpgenError("openssl not found: install it (apt-get install openssl)") from None
    if proc.returncode != 0:
        raise KpgenError(f"openssl could not make the test signing key: {proc.stderr.strip()}")
    return signature.SigningKey(str(key), cert)


def guest_command(where: Path) -> Path:
    """A `kpgen` script for the guest, which sees the host's file system: this package, run by
    this interpreter (the system's python3 may lack kpgen's dependencies)."""
    script = where / "kpgen"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={PACKAGE.parent} exec {sys.executable} -m kpgen \"$@\"\n")
    script.chmod(0o755)
    return script


def wanted(kernel: kmod.Kernel) -> bool:
    return any(m.name in KERNELS and m.matches(kernel.release) for m in kmod.matrix())


def build(kernel: kmod.Kernel, root: Path) -> list[Path]:
    """Make TREE/delivery/ from the tree's built core and test patches; returns the packages."""
    where = Path(root) / DIR
    if where.exists():
        shutil.rmtree(where)
    key = make_key(where / "key")
    signed = where / "modules" / "signed"
    signed.mkdir(parents=True)
    sources = [Path(root) / "core" / "kpatch.ko", *(Path(root) / "patches" / p / f"{p}.ko" for p in PATCHES)]
    for ko in sources:
        shutil.copy2(ko, signed / ko.name)
        signature.sign(kernel, signed / ko.name, key)
    guest_command(where)
    maintainer = "kpgen boot tests <root@localhost>"
    return [deb.build([signed / f"{p}.ko"], str(version), where / "debs", signed / "kpatch.ko", maintainer).path
            for version, p in enumerate(PATCHES, start=1)]
