"""Module signatures: made with the kernel's own scripts/sign-file, read back as kmod's modinfo
reads them, replaced when a module is signed again."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from fleetkit import module

from kpgen import kernel
from kpgen.errors import KernelError, UsageError
from kpgen.fleet import der, signature
from kpgen.harness import delivery

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> signature.SigningKey:
    return delivery.make_key(tmp_path_factory.mktemp("key"))


def modinfo(ko: Path, field: str) -> str:
    return subprocess.run(["modinfo", "-F", field, str(ko)], capture_output=True, text=True, check=True).stdout.strip()


def test_a_signature_reads_back_as_modinfo_shows_it(tmp_path, key):
    ko = module(tmp_path, "fix")
    assert signature.read(ko) is None
    sig = signature.sign(K61, ko, key)
    assert sig == signature.read(ko)
    assert sig.signer == modinfo(ko, "signer") == "kpgen throwaway test key"
    assert sig.key_id == modinfo(ko, "sig_key")
    assert sig.hash_algo == modinfo(ko, "sig_hashalgo") == K61.config["CONFIG_MODULE_SIG_HASH"]
    assert sig.describe().startswith("signed by 'kpgen throwaway test key' (key ")


def test_signing_again_replaces_the_signature_and_strip_restores_the_module(tmp_path, key):
    ko = module(tmp_path, "fix")
    original = ko.read_bytes()
    signature.sign(K61, ko, key)
    once = ko.read_bytes()
    signature.sign(K61, ko, key)
    assert ko.read_bytes().count(signature.MARKER) == 1
    assert len(ko.read_bytes()) == len(once)
    assert signature.strip(ko)
    assert ko.read_bytes() == original
    assert not signature.strip(ko)


def test_a_broken_signature_is_refused_naming_the_file(tmp_path):
    ko = module(tmp_path, "fix")
    trailer = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + (1 << 20).to_bytes(4, "big")
    ko.write_bytes(ko.read_bytes() + trailer + signature.MARKER)
    with pytest.raises(UsageError, match=f"{ko}: the module's signature cannot be read: .* more than the file holds"):
        signature.read(ko)
    ko.write_bytes(ko.read_bytes()[:-40] + b"\x30\x03\x02\x01\x00" + bytes([0, 0, 2, 0, 0, 0, 0, 0]) +
                   (5).to_bytes(4, "big") + signature.MARKER)
    with pytest.raises(UsageError, match=r"not a PKCS#7 SignedData|OBJECT IDENTIFIER|element"):
        signature.read(ko)


def test_der_reader_refuses_what_it_cannot_read():
    with pytest.raises(der.DerError, match="runs past"):
        der.parse(b"\x30\x05\x02\x01")
    with pytest.raises(der.DerError, match="2 top-level elements"):
        der.parse(b"\x02\x01\x00\x02\x01\x00")
    assert der.oid(der.parse(bytes.fromhex("0609608648016503040201"))) == "2.16.840.1.101.3.4.2.1"


def test_key_and_certificate_come_together_from_options_or_environment(tmp_path, key):
    assert signature.SigningKey.from_options(None, None, {}) is None
    env = {signature.ENV_KEY: key.key, signature.ENV_CERT: str(key.cert)}
    assert signature.SigningKey.from_options(None, None, env) == key
    with pytest.raises(UsageError, match="--sign-key needs --sign-cert"):
        signature.SigningKey.from_options(key.key, None, {})
    with pytest.raises(UsageError, match=r"--sign-cert needs --sign-key \(or KPGEN_SIGN_KEY\)"):
        signature.SigningKey.from_options(None, str(key.cert), {})
    with pytest.raises(UsageError, match="--sign-key /nonexistent: no such file"):
        signature.SigningKey.from_options("/nonexistent", str(key.cert), {})
    uri = signature.SigningKey.from_options("pkcs11:token=ci;object=kernel", str(key.cert), {})
    assert uri is not None and uri.key.startswith("pkcs11:")


def test_a_kernel_that_checks_no_signature_is_refused(tmp_path, key):
    config = {k: v for k, v in K61.config.items() if not k.startswith("CONFIG_MODULE_SIG")}
    unsigned = dataclasses.replace(K61, config=config)
    with pytest.raises(KernelError, match="CONFIG_MODULE_SIG is not set"):
        signature.sign(unsigned, module(tmp_path, "fix"), key)
    assert signature.read(tmp_path / "fix.ko") is None


def test_a_failed_sign_file_leaves_the_module_unsigned(tmp_path, key):
    ko = module(tmp_path, "fix")
    bad = signature.SigningKey(str(key.cert), key.cert)  # a certificate is no private key
    with pytest.raises(Exception, match="sign-file exited"):
        signature.sign(K61, ko, bad)
    assert signature.read(ko) is None
