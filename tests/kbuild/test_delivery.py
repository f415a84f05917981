"""What the boot tree's build makes for delivery, on each kernel: every module kpgen built
carries its metadata, the signed modules read back as modinfo reads them, the packages depend
on the exact kernel build, and an install into an image leaves nothing after its uninstall."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kpgen import kernel, spec
from kpgen.fleet import deb, install, metadata, signature
from kpgen.harness import delivery

# the kernels whose boot tree holds delivery/ (harness/delivery.py)
KERNELS = [m.name for m in kernel.matrix() if m.name in delivery.KERNELS]

pytestmark = pytest.mark.kbuild


def modinfo(ko: Path, field: str) -> str:
    return subprocess.run(["modinfo", "-F", field, str(ko)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("kname", KERNELS)
def test_every_module_kpgen_built_says_what_it_is(built, kname):
    from kpgen.harness import boottest

    tree = built(kname)
    ident = metadata.kernel_identity(tree.kernel)
    for path in [*boottest.test_specs()]:
        patch = spec.load(path)
        meta = metadata.read(tree.root / "patches" / patch.name / f"{patch.name}.ko")
        assert meta is not None, patch.name
        assert (meta.kind, meta.name, meta.backend) == ("patch", patch.name, patch.backend)
        assert [f.target for f in meta.functions] == [f.target for f in patch.functions]
        assert (meta.release, meta.kernel_version, meta.kernel_package) == (ident.release, ident.version, ident.package)
    for core in ("core", "core-faults"):
        meta = metadata.read(tree.root / core / "kpatch.ko")
        assert meta is not None and meta.kind == "core"
    for case in tree.diffs:
        meta = metadata.read(case.ko)
        assert meta is not None and meta.diff is not None, case.case.name
        assert meta.diff[1] == case.case.patch(kname).read_text()


@pytest.mark.parametrize("kname", KERNELS)
def test_signed_modules_read_back_as_modinfo_reads_them(built, kname):
    tree = built(kname)
    where = tree.root / delivery.DIR
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(where / "key/signing_key.x509")],
                            capture_output=True, text=True, check=True).stdout.strip().split("=")[1]
    for ko in sorted((where / "modules/signed").glob("*.ko")):
        sig = signature.read(ko)
        assert sig is not None, ko
        assert sig.signer == modinfo(ko, "signer") == "kpgen throwaway test key"
        assert sig.key_id == modinfo(ko, "sig_key")
        assert sig.key_id.replace(":", "") == serial.lstrip("0")
        assert sig.hash_algo == modinfo(ko, "sig_hashalgo") == tree.kernel.config["CONFIG_MODULE_SIG_HASH"]
        # the metadata went in before the signature, which covers it
        assert metadata.read(ko) is not None


@pytest.mark.parametrize("kname", KERNELS)
def test_packages_depend_on_the_exact_kernel_build(built, kname, tmp_path):
    tree = built(kname)
    ident = metadata.kernel_identity(tree.kernel)
    for version, name in enumerate(delivery.PATCHES, start=1):
        pkg = tree.root / delivery.DIR / "debs" / f"{deb.package_name(ident.release)}_{version}_amd64.deb"
        fields = subprocess.run(["dpkg-deb", "-f", str(pkg), "Version", "Depends"], capture_output=True, text=True,
                                check=True).stdout
        assert f"Version: {version}" in fields
        assert f"linux-image-{ident.release} (= {ident.package})" in fields
        subprocess.run(["dpkg-deb", "-x", str(pkg), str(tmp_path / name)], check=True)
        inside = tmp_path / name / "lib/modules" / ident.release / "extra/kpgen"
        signed = tree.root / delivery.DIR / "modules/signed"
        assert (inside / f"{name}.ko").read_bytes() == (signed / f"{name}.ko").read_bytes()
        assert (inside / "kpatch.ko").read_bytes() == (signed / "kpatch.ko").read_bytes()


@pytest.mark.parametrize("kname", KERNELS)
def test_install_into_an_image_and_uninstall_leave_it_as_it_was(built, kname, tmp_path):
    tree = built(kname)
    release = tree.kernel.release
    image = tmp_path / "image"
    (image / "lib/modules" / release / "kernel").mkdir(parents=True)
    subprocess.run(["depmod", "-a", "-b", str(image), release], check=True, capture_output=True)
    before = {p: p.read_bytes() for p in image.rglob("*") if p.is_file()}
    patches = [tree.root / "patches" / n / f"{n}.ko" for n in ("cmdline_a", "test_lp_a")]
    install.install(patches, tree.root / "core/kpatch.ko", image)
    dep = (image / "lib/modules" / release / "modules.dep").read_text()
    assert "extra/kpgen/cmdline_a.ko: extra/kpgen/kpatch.ko" in dep
    install.uninstall([], release, remove_all=True, root=image)
    assert {p: p.read_bytes() for p in image.rglob("*") if p.is_file()} == before
