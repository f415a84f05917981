"""Module signatures: made with the kernel's own scripts/sign-file, read back as modinfo reads them.

A signed module is the module, then the signature (PKCS#7, DER), then a struct module_signature
(include/linux/module_signature.h: algo, hash, id_type, signer_len, key_id_len, 3 pad bytes,
sig_len as big-endian u32), then the marker "~Module signature appended~\\n". The kernel checks
the signature over everything before it, so signing is the last change made to a module file
(kpgen.pipeline runs it after every other post-link step).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError, KernelError, UsageError
from ..kernel import Kernel
from . import der

MARKER = b"~Module signature appended~\n"
TRAILER = 12  # sizeof(struct module_signature)
PKEY_ID_PKCS7 = 2
# The options' environment variables, for CI jobs that keep the key out of the command line.
ENV_KEY, ENV_CERT = "KPGEN_SIGN_KEY", "KPGEN_SIGN_CERT"


@dataclass(frozen=True)
class Signature:
    """Who signed a module, as `modinfo` shows it (signer, sig_key, sig_hashalgo)."""

    signer: str
    key_id: str  # the certificate's serial number, hex bytes joined by ':'
    hash_algo: str
    size: int  # bytes of signature data

    def describe(self) -> str:
        return f"signed by '{self.signer}' (key {self.key_id}, {self.hash_algo})"


def split(data: bytes) -> tuple[bytes, bytes | None]:
    """The module's bytes without its signature, and the signature block (None if unsigned).
    Raises UsageError for a marker whose trailer does not fit the file."""
    if not data.endswith(MARKER):
        return data, None
    if len(data) < len(MARKER) + TRAILER:
        raise UsageError("the module signature's trailer is truncated")
    trailer = data[-len(MARKER) - TRAILER:-len(MARKER)]
    sig_len = int.from_bytes(trailer[8:12], "big")
    start = len(data) - len(MARKER) - TRAILER - sig_len
    if start <= 0:
        raise UsageError(f"the module signature claims {sig_len} bytes, more than the file holds")
    return data[:start], data[start:]


def read(path: Path) -> Signature | None:
    """The module's signature, or None if it is not signed; UsageError naming the file if the
    signature cannot be read."""
    data = Path(path).read_bytes()
    try:
        _, block = split(data)
        if block is None:
            return None
        trailer = block[-len(MARKER) - TRAILER:-len(MARKER)]
        if trailer[2] != PKEY_ID_PKCS7:
            raise UsageError(f"a signature of kind {trailer[2]}, not PKCS#7 (what sign-file makes)")
        sig_len = int.from_bytes(trailer[8:12], "big")
        info = der.signer_info(block[:sig_len])
    except (UsageError, der.DerError) as exc:
        raise UsageError(f"{path}: the module's signature cannot be read: {exc}") from None
    return Signature(signer=info.issuer, key_id=":".join(f"{b:02X}" for b in info.serial),
                     hash_algo=info.digest, size=sig_len)


def strip(path: Path) -> bool:
    """Remove a module's signature, if it has one (before it is changed or signed again)."""
    data = Path(path).read_bytes()
    body, block = split(data)
    if block is None:
        return False
    Path(path).write_bytes(body)
    return True


@dataclass(frozen=True)
class SigningKey:
    """The private key (a PEM file, or a PKCS#11 URI sign-file's OpenSSL understands) and the
    X.509 certificate (PEM or DER) to sign with."""

    key: str
    cert: Path

    @staticmethod
    def from_options(key: str | None, cert: str | None, environ: Mapping[str, str] = os.environ) -> SigningKey | None:
        """From --sign-key/--sign-cert, else KPGEN_SIGN_KEY/KPGEN_SIGN_CERT; None when neither
        names a key. Both or neither: one alone is refused."""
        key = key or environ.get(ENV_KEY) or None
        cert = cert or environ.get(ENV_CERT) or None
        if key is None and cert is None:
            return None
        if key is None or cert is None:
            have, lack = ("--sign-cert", "--sign-key") if key is None else ("--sign-key", "--sign-cert")
            env = ENV_KEY if key is None else ENV_CERT
            raise UsageError(f"{have} needs {lack} (or {env}): sign-file takes the private key and its certificate")
        if not key.startswith("pkcs11:") and not Path(key).is_file():
            raise UsageError(f"--sign-key {key}: no such file (give the private key's PEM file, or a pkcs11: URI)")
        if not Path(cert).is_file():
            raise UsageError(f"--sign-cert {cert}: no such file (give the X.509 certificate, PEM or DER)")
        return SigningKey(key=key, cert=Path(cert))


def sign_file(kernel: Kernel) -> Path:
    tool = kernel.kdir / "scripts" / "sign-file"
    if not os.access(tool, os.X_OK):
        raise KernelError(f"{tool} is missing: the kernel's headers package ships it "
                          f"(reinstall linux-headers-{kernel.release})")
    return tool


def hash_algo(kernel: Kernel) -> str:
    """The digest the kernel's own modules are signed with (CONFIG_MODULE_SIG_HASH)."""
    algo = kernel.config.get("CONFIG_MODULE_SIG_HASH")
    if kernel.config.get("CONFIG_MODULE_SIG") != "y" or not algo:
        raise KernelError(f"{kernel.kdir}/.config: CONFIG_MODULE_SIG is not set: {kernel.release} checks no module "
                          "signature; build without --sign-key")
    return algo


def sign(kernel: Kernel, ko: Path, key: SigningKey) -> Signature:
    """Sign `ko` in place with the kernel's scripts/sign-file and the hash of its config (an
    earlier signature is replaced). Returns the signature as read back."""
    argv = [str(sign_file(kernel)), hash_algo(kernel), key.key, str(key.cert), str(ko)]
    strip(ko)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"signing {ko} failed (sign-file exited {proc.returncode}): {proc.stdout.strip()}")
    sig = read(ko)
    if sig is None:
        raise BuildError(f"{ko}: sign-file reported success but appended no signature")
    return sig
