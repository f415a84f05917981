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


@pytest.mark.parametrize("kname", KERNELS)
def test_livepatch_modules_are_livepatch_modules(built, probed, kname):
    """The livepatch backend's test patches: livepatch=Y, no core, only kernel exports; the ELF
    check of the other backend's rules fails on each, and the livepatch rules fail on a module
    of the core."""
    from kpgen import elfcheck

    tree = built(kname)
    k = probed(kname)
    names = ("test_lp_a", "test_lp_ksym", "test_lp_modsym", "test_lp_callbacks", "test_lp_pipe")
    for name in names:
        ko = tree.root / "patches" / name / f"{name}.ko"
        info = elfcheck.read_module(ko)
        assert info.first("livepatch") == "Y"
        assert "kpatch" not in (info.first("depends") or "").split(",")
        assert "klp_enable_patch" in info.undefined and "kpatch_register" not in info.undefined
        assert elfcheck.check_module(ko, k, backend="livepatch").ok
        kpatch_rules = elfcheck.check_module(ko, k, tree.root / "core" / "Module.symvers", backend="kpatch")
        assert any("without 'kpatch'" in p for p in kpatch_rules.problems)
    # unexported symbols through klp relocations: no lookup by name in the module
    ksym = elfcheck.read_module(tree.root / "patches/test_lp_ksym/test_lp_ksym.ko")
    assert not {"register_kprobe", "sprint_symbol"} & ksym.undefined
    verdict = elfcheck.check_module(tree.root / "patches/cmdline_a/cmdline_a.ko", k, backend="livepatch")
    assert any("'livepatch'" in p for p in verdict.problems)
    assert any("must not need kpgen's core" in p for p in verdict.problems)


@pytest.mark.parametrize("kname", KERNELS)
def test_klp_relocations_of_built_modules(built, probed, kname):
    """kpgen build ran the post-link step: the unexported symbols are klp symbols, kpgen check
    finds each in the kernel, a kpatch patch module that uses a module's symbols says
    livepatch=Y and is still checked as a patch of the core, and a missing symbol is named."""
    from kpgen import elfcheck, klpcheck, klprelocs

    tree, k = built(kname), probed(kname)
    symvers = tree.root / "core" / "Module.symvers"
    counts = elfcheck.klp_counts(k)
    ko = tree.root / "patches/cmdline_ksym/cmdline_ksym.ko"
    problems, uses = klpcheck.check(ko.read_bytes())
    assert problems == [] and [(u.object, u.name, u.sympos) for u in uses] == [("vmlinux", "saved_command_line", 0)]
    info = elfcheck.read_module(ko)
    assert info.first("livepatch") is None and klprelocs.SENTINEL not in info.undefined
    assert elfcheck.check_module(ko, k, symvers, klp_symbols=counts).ok
    verdict = elfcheck.check_module(ko, k, symvers, klp_symbols=lambda obj, name: 0)
    assert verdict.problems == ["klp symbol saved_command_line is not in vmlinux (section .klp.rela.vmlinux..text)"]
    ko = tree.root / "patches/test_module_ksym/test_module_ksym.ko"
    info = elfcheck.read_module(ko)
    assert info.first("livepatch") == "Y" and "kpatch" in (info.first("depends") or "").split(",")
    _, uses = klpcheck.check(ko.read_bytes())
    assert {(u.object, u.name, u.sympos) for u in uses} == {("kpgen_test_target", "kpgen_test_base", 0),
                                                           ("kpgen_test_target", "kpgen_test_dup", 2)}
    assert elfcheck.check_module(ko, k, symvers).ok


def test_a_module_built_without_the_post_link_step_is_caught(probed, tmp_path):
    """A plain `make` of a generated module links it (its unexported symbols are weak), but
    kpgen check says what is missing, and the module's init would refuse to run."""
    import shutil
    import subprocess

    from kpgen import elfcheck, generate, kbuild, pipeline

    k = probed(KERNELS[0])
    generate.generate_tree(k, tmp_path, [p for p in generate.sample_specs() if p.stem == "cmdline_ksym"])
    pipeline.build(k, tmp_path / "core")
    mod = tmp_path / "patches" / "cmdline_ksym"
    subprocess.run(kbuild.make_argv(k, mod, tmp_path / "core"), check=True, capture_output=True)
    verdict = elfcheck.check_module(mod / "cmdline_ksym.ko", k, tmp_path / "core" / "Module.symvers")
    assert any("built without kpgen build" in p for p in verdict.problems)
    # kpgen build converts the module make left (Kbuild does not rebuild it)
    assert shutil.which("make") and pipeline.build(k, mod, tmp_path / "core").modules
    assert elfcheck.check_module(mod / "cmdline_ksym.ko", k, tmp_path / "core" / "Module.symvers").ok
