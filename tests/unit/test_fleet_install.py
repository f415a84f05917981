"""kpgen install and uninstall into a system image (--root): the layout, the order, the unit,
depmod, the refusals, and nothing left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fleetkit import RELEASE, module, verify_unit, with_metadata

from kpgen import kernel
from kpgen.errors import UsageError
from kpgen.fleet import install, layout
from kpgen.resources import LOADER_SCRIPT, TEST_PATCHES

K61 = kernel.probe(next(m for m in kernel.matrix() if m.name == "6.1").kdir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A system image with kernel RELEASE installed (its module index made by depmod)."""
    image = tmp_path / "image"
    (image / "lib/modules" / RELEASE / "kernel").mkdir(parents=True)
    subprocess.run(["depmod", "-a", "-b", str(image), RELEASE], check=True, capture_output=True)
    return image


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file and link under root, by path."""
    return {str(p.relative_to(root)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def test_install_then_uninstall_leaves_nothing(tmp_path, root):
    before = snapshot(root)
    core = module(tmp_path / "m", "kpatch", depends="")
    fix = with_metadata(module(tmp_path / "m", "test_fleet_v1"), TEST_PATCHES / "test_fleet_v1/test_fleet_v1.toml", K61)
    lines = install.install([fix], core, root)
    lay = layout.Layout(root, RELEASE, vendor=False)
    assert lines[-1] == f"{RELEASE}: loaded at boot by {lay.unit_name} in this order: kpatch, test_fleet_v1"
    assert lay.module("test_fleet_v1").read_bytes() == fix.read_bytes()
    assert lay.module("kpatch").read_bytes() == core.read_bytes()
    order = layout.read_order(lay.order_file)
    assert order is not None and order.names == ("kpatch", "test_fleet_v1")
    assert order.version.startswith("#1 SMP ")
    assert lay.script.read_bytes() == LOADER_SCRIPT.read_bytes() and lay.script.stat().st_mode & 0o777 == 0o755
    unit = lay.unit.read_text()
    assert f"ExecStart=/usr/local/lib/kpgen/{RELEASE}/kpgen-patches apply {RELEASE}\n" in unit
    assert "DefaultDependencies=no" in unit and "Before=sysinit.target" in unit
    assert lay.wants_link.readlink() == Path(f"../{lay.unit_name}")
    verify_unit(root, lay.on_target(lay.unit))
    assert "extra/kpgen/test_fleet_v1.ko:" in (root / "lib/modules" / RELEASE / "modules.dep").read_text()

    # a second patch goes last; uninstalling the first keeps the core for the second
    fix2 = module(tmp_path / "m", "fix_b")
    install.install([fix2], None, root)
    assert layout.read_order(lay.order_file).names == ("kpatch", "test_fleet_v1", "fix_b")  # type: ignore[union-attr]
    install.uninstall(["test_fleet_v1"], RELEASE, root=root)
    assert layout.read_order(lay.order_file).names == ("kpatch", "fix_b")  # type: ignore[union-attr]
    lines = install.uninstall(["fix-b"], RELEASE, root=root)
    assert lines[-1] == f"{RELEASE}: no live patch is installed any more; {lay.unit_name} is gone"
    assert "uninstalled kpatch for" in "\n".join(lines)
    after = snapshot(root)
    assert {k for k in after if "systemd" in k or "kpgen" in k} == set()
    assert after == before


def test_livepatch_modules_need_no_core_and_uninstall_all(tmp_path, root):
    lp = module(tmp_path, "lp_fix", depends="", livepatch=True)
    install.install([lp], None, root)
    lay = layout.Layout(root, RELEASE, vendor=False)
    assert layout.read_order(lay.order_file).names == ("lp_fix",)  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=f"not installed for {RELEASE}: fix_z .installed: lp_fix."):
        install.uninstall(["fix_z"], RELEASE, root=root)
    install.uninstall([], RELEASE, remove_all=True, root=root)
    assert not lay.modules_dir.exists() and not lay.unit.exists()


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"names": ["fix"]}, "kpgen's core is needed by fix, and none is installed for"),
    ({"names": ["fix", "fix"]}, "a module name is given twice: fix"),
    ({"names": ["fix"], "release": "5.10.0-99-amd64"}, "which is not installed here"),
    ({"names": ["not_a_patch"]}, "not_a_patch is not a live patch"),
])
def test_refusals_write_nothing(tmp_path, root, kwargs, problem):
    before = snapshot(root)
    release = kwargs.get("release", RELEASE)
    kos = [module(tmp_path / str(i), name, release=release, depends="" if name == "not_a_patch" else "kpatch")
           for i, name in enumerate(kwargs["names"])]
    with pytest.raises(UsageError, match=problem):
        install.install(kos, None, root)
    assert snapshot(root) == before


def test_modules_of_two_builds_of_one_release_are_refused(tmp_path, root):
    import json

    from kpgen.fleet import metadata

    core = module(tmp_path, "kpatch", depends="")
    fix = with_metadata(module(tmp_path, "test_fleet_v1"), TEST_PATCHES / "test_fleet_v1/test_fleet_v1.toml", K61)
    install.install([fix], core, root)
    other = module(tmp_path / "b", "fix_b")
    doc = json.loads(metadata.built_document(K61, fix.parent / "test_fleet_v1.dir", "patch"))
    doc["kernel"]["version"] = "#2 SMP another build"
    metadata.embed(other, json.dumps(doc).encode())
    with pytest.raises(UsageError, match="made for different builds of it"):
        install.install([other], None, root)


def test_patches_a_package_installed_are_left_to_the_package_manager(tmp_path, root):
    lay = layout.Layout(root, RELEASE, vendor=False)
    dpkg = root / "var/lib/dpkg"
    (dpkg / "info").mkdir(parents=True)
    (dpkg / "status").write_text(f"Package: kpgen-patches-{RELEASE}\nStatus: install ok installed\n"
                                 "Version: 1\nArchitecture: amd64\nDescription: x\n")
    (dpkg / "info" / f"kpgen-patches-{RELEASE}.list").write_text(lay.on_target(lay.order_file) + "\n")
    lay.modules_dir.mkdir(parents=True)
    lay.order_file.write_text("kpatch\n")
    with pytest.raises(UsageError, match=f"installed by the package kpgen-patches-{RELEASE}"):
        install.install([module(tmp_path, "fix", depends="", livepatch=True)], None, root)
    with pytest.raises(UsageError, match=f"apt remove kpgen-patches-{RELEASE}"):
        install.uninstall(["kpatch"], RELEASE, root=root)


def test_uninstall_refusals(root):
    with pytest.raises(UsageError, match="no live patch is installed for"):
        install.uninstall(["fix"], RELEASE, root=root)
