"""The diff corpus (tests/diffs): what `kpgen diff` makes of each case, on each kernel.

Every case names, per kernel, the functions it must patch or the exact refusal. The
source is the kernel's exact source from the cache (`kpgen source`; provisioning makes it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kpgen import cstyle, diff, kernel, source
from kpgen.errors import KpgenError
from kpgen.harness import boottest, diffcases

pytestmark = pytest.mark.kbuild

CORPUS = Path(__file__).parent.parent / "diffs"
CASES = diffcases.load(CORPUS)
PAIRS = [(c, kname) for c in CASES for kname in sorted(c.kernels)]


def test_corpus_size_and_shape() -> None:
    assert len(CASES) >= 12
    for case in CASES:
        assert case.kernels, f"{case.name}: no kernel named in case.toml"
        for kname, expect in case.kernels.items():
            assert case.patch(kname).is_file(), f"{case.name}: no {kname}.patch"
            assert bool(expect.targets) != bool(expect.refused), f"{case.name}/{kname}: targets or refused"
            if expect.targets:
                assert case.loaded.is_file() and case.loaded.stat().st_mode & 0o111, f"{case.name}: no loaded check"


def _built_case(built: Callable[[str], boottest.BuiltTree], kname: str, name: str) -> diffcases.Built:
    """The case as the boot tree's build made it (`kpgen diff --build`, once per kernel and run)."""
    made = next((b for b in built(kname).diffs if b.case.name == name), None)
    assert made is not None and made.plan is not None, f"the {kname} tree holds no build of {name}"
    return made


def _expected_refusal(text: str, patch: Path, k: kernel.Kernel) -> str:
    """A case's refusal with its placeholders filled in: {patch} (the diff's path), {release} (the
    kernel's release) and {common_headers} (Debian's headers common to its flavours), so that a
    kernel's point release does not change what a case expects."""
    base = k.release.rsplit("-", 1)[0]
    common = Path("/usr/src") / (f"linux-headers-{base[:-3]}-common-rt" if base.endswith("-rt")
                                 else f"linux-headers-{base}-common")
    return text.replace("{patch}", str(patch)).replace("{release}", k.release).replace(
        "{common_headers}", str(common))


@pytest.mark.parametrize(("case", "kname"), PAIRS, ids=[f"{c.name}-{k}" for c, k in PAIRS])
def test_case(case: diffcases.Case, kname: str, probed: Callable[[str], kernel.Kernel],
              built: Callable[[str], boottest.BuiltTree]) -> None:
    k = probed(kname)
    src = source.find(k)
    expect = case.kernels[kname]
    patch = case.patch(kname)
    if expect.refused:
        with pytest.raises(diff.DiffRefused) as info:
            diff.plan(k, patch, src, case.name, case.strip, case.fuzz)
        assert str(info.value) == _expected_refusal(expect.refused, patch, k)
        return
    # the plan the tree's build made and built into the module the guest loads
    plan = _built_case(built, kname, case.name).plan
    assert plan is not None
    assert sorted(t.name for t in plan.targets) == sorted(expect.targets)
    # the spec names each target and its replacement, and fix.c defines every replacement
    assert plan.spec is not None
    assert [(f.target, f.replacement) for f in plan.spec.functions] == [(t.name, t.replacement) for t in plan.targets]
    for t in plan.targets:
        assert f"{t.replacement}(" in plan.fix_c


def test_output_is_deterministic(probed: Callable[[str], kernel.Kernel],
                                 built: Callable[[str], boottest.BuiltTree]) -> None:
    k = probed("6.1")
    case = next(c for c in CASES if c.name == "static_key_local_static")
    first = _built_case(built, "6.1", case.name).plan
    assert first is not None
    again = diff.plan(k, case.patch("6.1"), source.find(k), case.name, case.strip, case.fuzz)
    assert (first.fix_c, first.spec) == (again.fix_c, again.spec)


def test_meminfo_builds_and_is_checkpatch_clean(built: Callable[[str], boottest.BuiltTree]) -> None:
    made = _built_case(built, "6.1", "meminfo_string")
    plan, work = made.plan, made.work
    assert plan is not None and work is not None
    assert made.ko.is_file()
    # the changed function's body is the patched source's, renamed
    assert '"Mlocked (lp):   "' in plan.fix_c and "livepatch_meminfo_proc_show(" in plan.fix_c
    assert (work / "fix.c").read_text() == plan.fix_c
    findings = cstyle.checkpatch([work / "fix.c"], "patch-source")
    assert not findings, "\n".join(map(str, findings))


def test_rt_kernel_refused(probed: Callable[[str], kernel.Kernel]) -> None:
    k = probed("6.1-rt")
    with pytest.raises(KpgenError) as info:
        source.find(k)
    assert str(info.value) == (
        f"no exact source for {k.release}: linux-source-6.1 does not carry the PREEMPT_RT patch, and the archive "
        "reachable here serves no source packages (debian/patches-rt of Debian's `linux` source package holds "
        "it); pass --source DIR with that tree (Debian's source with debian/patches-rt applied)")


def test_source_of_another_kernel_refused(probed: Callable[[str], kernel.Kernel]) -> None:
    k61, k612 = probed("6.1"), probed("6.12")
    tree = source.find(k61).root
    with pytest.raises(KpgenError) as info:
        source.find(k612, tree)
    assert str(info.value) == (
        f"--source {tree} is Linux {source.kernel_version(k61)}, but {k612.release} is Linux "
        f"{source.kernel_version(k612)}: use the source of {k612.release} (`kpgen source --kdir {k612.kdir}`)")


def test_new_starts_from_the_original_function(probed: Callable[[str], kernel.Kernel], tmp_path: Path) -> None:
    """With the source, `kpgen new` writes the original function (renamed) and what it needs."""
    from kpgen import cli, generate, pipeline

    k = probed("6.1")
    source.find(k)
    assert cli.main(["new", "fix_cmd", "--target", "cmdline_proc_show", "--kdir", str(k.kdir),
                     "-d", str(tmp_path / "src")]) == 0
    c_text = (tmp_path / "src" / "fix.c").read_text()
    assert "static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)\n{\n" \
           "\tseq_puts(m, saved_command_line);\n\tseq_putc(m, '\\n');\n\treturn 0;\n}\n" in c_text
    generate.generate_tree(k, tmp_path / "tree", [])
    pipeline.build(k, tmp_path / "tree" / "core")
    generate.generate_patch(k, tmp_path / "src" / "fix_cmd.toml", tmp_path / "mod", tmp_path / "tree" / "core")
    assert pipeline.build(k, tmp_path / "mod", core_dir=tmp_path / "tree" / "core").modules


def test_diff_build_livepatch_backend_needs_no_core(tmp_path):
    """`kpgen diff --build --backend livepatch`: an upstream livepatch module, and no core built."""
    import subprocess
    import sys

    from kpgen import elfcheck

    k = kernel.probe(kernel.matrix()[0].kdir())
    case = Path(__file__).resolve().parents[1] / "diffs" / "meminfo_string" / "6.1.patch"
    out = tmp_path / "lp"
    proc = subprocess.run([sys.executable, "-m", "kpgen", "diff", str(case), "--backend", "livepatch", "--build",
                           "--kdir", str(k.kdir), "--name", "lp_meminfo", "-o", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (out / "core").exists()
    ko = out / "module" / "lp_meminfo.ko"
    assert elfcheck.check_module(ko, k, backend="livepatch").ok
