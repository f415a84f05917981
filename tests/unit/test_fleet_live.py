"""What kpgen load and unload decide before and after the kernel answers: the module's kernel
and build, and the words of a refusal. Loading itself is the boot tests' (95-delivery.sh)."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest
from fleetkit import module, with_metadata

from kpgen import kernel
from kpgen.errors import UsageError
from kpgen.fleet import live, metadata, signature
from kpgen.fleet.modfile import ModuleFile
from kpgen.harness import delivery
from kpgen.resources import TEST_PATCHES

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())


def test_a_module_of_another_build_of_the_running_release_is_refused(tmp_path):
    uname = os.uname()
    mod = ModuleFile.read(module(tmp_path, "fix", release=uname.release))
    live._check_kernel(mod)  # no metadata: the release alone is checked
    meta = dataclasses.replace(_meta(tmp_path), kernel_version="#1 SMP another build")
    with pytest.raises(UsageError, match=f"but the running kernel is {uname.version}, another build of that release"):
        live._check_kernel(dataclasses.replace(mod, meta=meta))
    other = ModuleFile.read(module(tmp_path / "o", "fix", release="5.10.0-99-amd64"))
    with pytest.raises(UsageError, match="build it with --kdir /lib/modules/"):
        live._check_kernel(other)


def _meta(tmp_path: Path) -> metadata.Metadata:
    ko = with_metadata(module(tmp_path / "m", "test_fleet_v1"), TEST_PATCHES / "test_fleet_v1/test_fleet_v1.toml", K61)
    meta = metadata.read(ko)
    assert meta is not None
    return meta


def test_a_signature_refusal_says_what_to_do(tmp_path):
    unsigned = ModuleFile.read(module(tmp_path, "fix"))
    message = live._explain(unsigned, OSError(errno.EKEYREJECTED, "x"), ["Loading of unsigned module is rejected"])
    assert message.startswith(f"cannot load fix ({unsigned.path}): Key was rejected by service (EKEYREJECTED): "
                              "the kernel requires signed modules (")
    assert f"and {unsigned.path} is not signed: build it with --sign-key KEY --sign-cert CERT" in message
    assert message.endswith(": the kernel says: Loading of unsigned module is rejected")
    signature.sign(K61, unsigned.path, delivery.make_key(tmp_path / "key"))
    message = live._explain(unsigned, OSError(errno.EKEYREJECTED, "x"), [])
    assert f"does not trust the key {unsigned.path} is signed by 'kpgen throwaway test key'" in message
    assert "mokutil --import CERT" in message


def test_other_refusals_quote_the_kernel(tmp_path):
    mod = ModuleFile.read(module(tmp_path, "fix"))
    said = ["kpatch: function 'f' not found in vmlinux", "kpatch: cannot load patch module 'fix': -2"]
    message = live._explain(mod, OSError(errno.ENOENT, "x"), said)
    assert message.endswith(": the kernel says: kpatch: function 'f' not found in vmlinux; "
                            "kpatch: cannot load patch module 'fix': -2")


def test_names_come_from_a_name_or_a_module_file(tmp_path):
    ko = module(tmp_path, "fix_a")
    assert live.module_name(str(ko)) == "fix_a"
    assert live.module_name("fix-b") == "fix_b"
