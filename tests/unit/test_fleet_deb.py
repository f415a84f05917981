"""kpgen package: the .deb's control data, files, maintainer scripts and metadata, made the same
way twice, and the refusals. Installing it is the boot tests' (topics/95-delivery.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fleetkit import RELEASE, module, verify_unit, with_metadata

from kpgen import kernel
from kpgen.errors import UsageError
from kpgen.fleet import deb, metadata
from kpgen.resources import TEST_PATCHES

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())
PKG = f"kpgen-patches-{RELEASE}"


@pytest.fixture
def modules(tmp_path: Path) -> tuple[Path, Path]:
    core = module(tmp_path / "m", "kpatch", depends="")
    metadata.embed(core, metadata.built_document(K61, tmp_path, "core"))
    fix = with_metadata(module(tmp_path / "m", "test_fleet_v1"), TEST_PATCHES / "test_fleet_v1/test_fleet_v1.toml", K61)
    return core, fix


def dpkg_deb(*argv: str) -> str:
    return subprocess.run(["dpkg-deb", *argv], capture_output=True, text=True, check=True).stdout


def test_the_package_holds_the_patches_the_boot_files_and_the_metadata(tmp_path, modules):
    core, fix = modules
    pkg = deb.build([fix], "1", tmp_path / "out", core, "Kernel Team <kt@example.org>")
    assert pkg.path == tmp_path / "out" / f"{PKG}_1_amd64.deb"
    ident = metadata.kernel_identity(K61)
    image = f"linux-image-{RELEASE}"
    assert pkg.depends == f"{image} (= {ident.package}) | {image}-unsigned (= {ident.package})"
    control = dpkg_deb("-f", str(pkg.path))
    for line in (f"Package: {PKG}", "Version: 1", "Architecture: amd64", "Maintainer: Kernel Team <kt@example.org>",
                 f"Depends: {pkg.depends}", "Section: kernel",
                 " test_fleet_v1: a test patch"):
        assert line in control.splitlines(), line
    listing = dpkg_deb("-c", str(pkg.path))
    unit = f"kpgen@{RELEASE}.service"
    mods = f"./lib/modules/{RELEASE}/extra/kpgen"
    for path in (f"{mods}/kpatch.ko", f"{mods}/test_fleet_v1.ko", f"{mods}/order",
                 f"./usr/lib/kpgen/{RELEASE}/kpgen-patches",
                 f"./lib/systemd/system/{unit}", f"./lib/systemd/system/sysinit.target.wants/{unit} -> ../{unit}",
                 f"./usr/share/doc/{PKG}/README", f"./usr/share/doc/{PKG}/test_fleet_v1.patch",
                 f"./usr/share/doc/{PKG}/copyright"):
        assert path in listing, path
    assert "root/root" in listing and "rwxr-xr-x root/root" in next(line for line in listing.splitlines()
                                                                   if "kpgen-patches" in line)
    tree = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-R", str(pkg.path), str(tree)], check=True)
    assert (tree / f"lib/modules/{RELEASE}/extra/kpgen/test_fleet_v1.ko").read_bytes() == fix.read_bytes()
    order = (tree / f"lib/modules/{RELEASE}/extra/kpgen/order").read_text().splitlines()
    assert order[1:] == [f"# version: {ident.version}", "kpatch", "test_fleet_v1"]
    readme = (tree / f"usr/share/doc/{PKG}/README").read_text()
    assert "vmlinux: cmdline_proc_show -> test_fleet_v1_cmdline_show" in readme and "not signed" in readme
    assert (tree / f"usr/share/doc/{PKG}/test_fleet_v1.patch").read_text() == \
        (TEST_PATCHES / "test_fleet_v1/fix.patch").read_text()
    md5sums = (tree / "DEBIAN/md5sums").read_text()
    assert f"lib/modules/{RELEASE}/extra/kpgen/test_fleet_v1.ko" in md5sums
    subprocess.run(["md5sum", "--check", "--quiet", str(tree / "DEBIAN/md5sums")], cwd=tree, check=True)
    verify_unit(tree, f"/lib/systemd/system/{unit}")
    scripts = [str(tree / "DEBIAN" / s) for s in ("preinst", "postinst", "prerm", "postrm")]
    for script in scripts:
        assert Path(script).read_text().startswith("#!/bin/sh\n")
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "--shell=sh", *scripts], check=True)


def test_the_same_inputs_make_the_same_package(tmp_path, modules):
    core, fix = modules
    a = deb.build([fix], "2", tmp_path / "a", core)
    b = deb.build([fix], "2", tmp_path / "b", core)
    assert a.path.read_bytes() == b.path.read_bytes()
    with pytest.raises(UsageError, match="exists: remove it, or give another --version or -o DIR"):
        deb.build([fix], "2", tmp_path / "a", core)


def test_livepatch_modules_need_no_core(tmp_path):
    lp = module(tmp_path, "lp_fix", depends="", livepatch=True)
    pkg = deb.build([lp], "1:1.0~rc1", tmp_path / "out")
    assert pkg.path.name == f"{PKG}_1.0~rc1_amd64.deb"
    assert pkg.depends == f"linux-image-{RELEASE}"  # no metadata: the build is unknown
    assert "kpatch.ko" not in dpkg_deb("-c", str(pkg.path))


@pytest.mark.parametrize(("case", "problem"), [
    ("version", "--version 'v1' is not a Debian version"),
    ("maintainer", "--maintainer 'me': give a name and an address"),
    ("no core", "kpgen's core is needed by test_fleet_v1: pass --core"),
    ("core alone", "give one patch module or more"),
    ("two releases", "a package holds the patches of one kernel release"),
    ("cumulative and another", "test_fleet_v1 is cumulative .replace = true.: .* package it alone"),
    ("core not kpatch", "is not kpgen's core"),
])
def test_refusals(tmp_path, modules, case, problem):
    core, fix = modules
    other = module(tmp_path / "o", "fix_b")
    args: dict = {"paths": [fix], "version": "1", "out_dir": tmp_path / "out", "core": core}
    if case == "version":
        args["version"] = "v1"
    elif case == "maintainer":
        args["maintainer"] = "me"
    elif case == "no core":
        args["core"] = None
    elif case == "core alone":
        args["paths"] = []
    elif case == "two releases":
        args["paths"] = [fix, module(tmp_path / "r", "fix_c", release="6.12.118+deb12-amd64")]
    elif case == "cumulative and another":
        args["paths"] = [fix, other]
    elif case == "core not kpatch":
        args["core"] = other
    with pytest.raises(UsageError, match=problem):
        deb.build(**args)
    assert not (tmp_path / "out").exists()
