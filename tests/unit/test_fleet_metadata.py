"""What a module says of itself: kpgen-info.json from the spec, embedded by the build in a
section the kernel never loads, read back by kpgen info."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from fleetkit import module, with_metadata

from kpgen import kernel, spec
from kpgen.errors import UsageError
from kpgen.fleet import metadata
from kpgen.resources import SAMPLES, TEST_PATCHES

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())
FLEET_V1 = TEST_PATCHES / "test_fleet_v1" / "test_fleet_v1.toml"


def test_the_document_says_what_the_spec_says_and_carries_its_diff():
    doc = metadata.patch_document(spec.load(FLEET_V1))
    assert doc["name"] == "test_fleet_v1" and doc["backend"] == "kpatch" and doc["replace"] is True
    assert doc["functions"] == [{"object": "vmlinux", "target": "cmdline_proc_show", "sympos": 0,
                                 "replacement": "test_fleet_v1_cmdline_show"}]
    assert doc["spec"]["text"] == FLEET_V1.read_text()
    assert doc["diff"] == {"name": "fix.patch", "text": (FLEET_V1.parent / "fix.patch").read_text()}
    assert metadata.patch_document(spec.load(SAMPLES / "cmdline_a" / "cmdline_a.toml"))["diff"] is None


def test_the_document_follows_the_backend_the_module_is_built_for():
    patch = spec.with_backend(spec.load(SAMPLES / "cmdline_a" / "cmdline_a.toml"), "livepatch")
    assert metadata.patch_document(patch)["backend"] == "livepatch"


def test_the_module_directory_file_is_deterministic():
    patch = spec.load(FLEET_V1)
    a, b = metadata.module_file(patch, "x"), metadata.module_file(patch, "x")
    assert a == b and a.path == Path("x/kpgen-info.json")
    assert json.loads(a.content)["sources"] == ["fix.c"]


def test_embedded_metadata_reads_back_from_a_section_the_kernel_does_not_load(tmp_path):
    ko = with_metadata(module(tmp_path, "test_fleet_v1"), FLEET_V1, K61)
    with ko.open("rb") as fh:
        section = ELFFile(fh).get_section_by_name(metadata.SECTION)
        assert section is not None and not section["sh_flags"] & SH_FLAGS.SHF_ALLOC
    meta = metadata.read(ko)
    assert meta is not None
    assert (meta.kind, meta.name, meta.backend, meta.replace) == ("patch", "test_fleet_v1", "kpatch", True)
    assert meta.functions[0].target == "cmdline_proc_show"
    assert meta.sources == (("fix.c", (FLEET_V1.parent / "fix.c").read_text()),)
    assert meta.diff is not None and meta.diff[0] == "fix.patch"
    assert meta.release == K61.release
    assert re.fullmatch(r"#1 SMP .*", meta.kernel_version)
    assert meta.kernel_package and meta.kernel_package in meta.kernel_version


def test_embedding_again_replaces_the_section(tmp_path):
    ko = module(tmp_path, "fix")
    metadata.embed(ko, b'{"format": 1}')
    metadata.embed(ko, b'{"format": 1, "kind": "core", "name": "kpatch", "backend": "kpatch"}')
    with ko.open("rb") as fh:
        names = [s.name for s in ELFFile(fh).iter_sections()]
    assert names.count(metadata.SECTION) == 1
    meta = metadata.read(ko)
    assert meta is not None and meta.kind == "core"


def test_a_module_without_metadata_and_broken_metadata(tmp_path):
    ko = module(tmp_path, "fix")
    assert metadata.read(ko) is None
    metadata.embed(ko, b"{not json")
    with pytest.raises(UsageError, match=f"{ko}: its .kpgen.info section cannot be read"):
        metadata.read(ko)
    metadata.embed(ko, b'{"format": 99}')
    with pytest.raises(UsageError, match="format 99, this kpgen reads 1"):
        metadata.read(ko)
    (tmp_path / "text").write_text("not ELF")
    with pytest.raises(UsageError, match="not a readable kernel module"):
        metadata.read(tmp_path / "text")


def test_the_kernel_identity_comes_from_the_headers():
    ident = metadata.kernel_identity(K61)
    assert ident.release == K61.release
    assert ident.version.startswith("#1 SMP ")
    assert re.fullmatch(r"\d[\w.+~-]*", ident.package)


@pytest.mark.parametrize(("value", "problem"), [
    ('"../fix.patch"', "is not a plain file name beside the spec"),
    ('"missing.patch"', "missing.patch does not exist"),
    ("3", "is not a plain file name"),
])
def test_a_bad_diff_key_is_refused(tmp_path, value, problem):
    (tmp_path / "fix.c").write_text("static int f(void) { return 0; }\n")
    (tmp_path / "p.toml").write_text(f'name = "p"\nsources = ["fix.c"]\ndiff = {value}\n'
                                     '[[function]]\ntarget = "g"\nreplacement = "f"\n')
    with pytest.raises(spec.SpecError, match=f"key 'diff': .*{re.escape(problem)}"):
        spec.load(tmp_path / "p.toml")


def test_a_diff_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "fix.c").write_text("static int f(void) { return 0; }\n")
    (tmp_path / "fix.patch").write_bytes(b"\xff\xfe")
    (tmp_path / "p.toml").write_text('name = "p"\nsources = ["fix.c"]\ndiff = "fix.patch"\n'
                                     '[[function]]\ntarget = "g"\nreplacement = "f"\n')
    with pytest.raises(spec.SpecError, match="not UTF-8"):
        spec.load(tmp_path / "p.toml")
