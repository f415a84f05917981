"""Build the core, the samples, the test patches and test modules for every kernel (W=1)."""

from __future__ import annotations

import pytest

from kpgen import kernel

KERNELS = [m.name for m in kernel.matrix()]

pytestmark = pytest.mark.kbuild


@pytest.mark.parametrize("kname", KERNELS)
def test_builds_without_warnings(built, kname):
    tree = built(kname)
    names = sorted(ko.name for b in tree.builds for ko in b.modules)
    assert "kpatch.ko" in names and "cmdline_a.ko" in names and "kpgen_test_target.ko" in names
    warnings = [w for b in tree.builds for w in b.warnings]
    assert not warnings, "\n".join(warnings)


@pytest.mark.parametrize("kname", KERNELS)
def test_elf_checks_pass(built, kname):
    tree = built(kname)
    problems = [f"{v.path.name}: {p}" for v in tree.verdicts for p in v.problems]
    assert len(tree.verdicts) >= 6
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kname", KERNELS)
def test_patch_modules_depend_on_core(built, kname):
    from kpgen import elfcheck

    tree = built(kname)
    info = elfcheck.read_module(tree.root / "patches/cmdline_a/cmdline_a.ko")
    assert info.first("depends") == "kpatch"
    assert {"kpatch_register", "kpatch_unregister"} <= info.undefined
    assert "cmdline_a_proc_show" in info.defined_functions
    core = elfcheck.read_module(tree.root / "core/kpatch.ko")
    assert "kpatch_ftrace_handler" in core.defined_functions
    assert "kallsyms_lookup_name" not in core.undefined


@pytest.mark.parametrize("kname", KERNELS)
def test_check_rejects_module_for_other_kernel(built, probed, kname):
    from kpgen import elfcheck

    other = next(k for k in KERNELS if k != kname)
    ko = built(kname).root / "core/kpatch.ko"
    verdict = elfcheck.check_module(ko, probed(other))
    assert any("vermagic" in p for p in verdict.problems)
