"""checkpatch.pl --strict and sparse find nothing in the generated and the hand-written C.

The deliberate exceptions are kpgen.cstyle.CHECKPATCH_IGNORE (docs/testing.md, "Static checks").
"""

from __future__ import annotations

import pytest

from kpgen import cstyle, kernel, pipeline
from kpgen.harness import boottest

KERNELS = [m.name for m in kernel.matrix()]

pytestmark = pytest.mark.kbuild


def _report(findings: list[cstyle.Finding]) -> str:
    return "\n".join(map(str, findings))


@pytest.mark.parametrize("kname", KERNELS)
def test_checkpatch_generated(built, kname):
    tree = built(kname)
    files = cstyle.generated_sources(tree.root)
    names = {p.relative_to(tree.root).as_posix() for p in files}
    assert {"core/core.c", "core/transition.c", "core/kpatch.h", "core-faults/faults.c",
            "patches/cmdline_ksym/cmdline_ksym.c", "patches/test_static_sym/test_static_sym.c",
            # the livepatch backend's template, with and without unexported symbols
            "patches/test_lp_a/test_lp_a.c", "patches/test_lp_ksym/test_lp_ksym.c",
            "patches/test_lp_modsym/test_lp_modsym.c", "patches/test_lp_callbacks/test_lp_callbacks.c"} <= names
    findings = cstyle.checkpatch(files, "generated")
    assert not findings, _report(findings)


@pytest.mark.parametrize("kind", ["module", "patch-source"])
def test_checkpatch_handwritten(kind):
    files = cstyle.handwritten_sources()[kind]
    assert len(files) >= 4
    findings = cstyle.checkpatch(files, kind)
    assert not findings, _report(findings)


@pytest.mark.parametrize("kname", KERNELS)
def test_sparse(built, kname):
    tree = built(kname)
    findings, checked = [], 0
    dirs = [tree.root / "core", tree.root / "core-faults",
            *sorted((tree.root / "patches").iterdir()), *sorted((tree.root / "modules").iterdir())]
    for mod_dir in dirs:
        core = tree.root / "core" if mod_dir.parent.name == "patches" else None
        variables = boottest.FAULTS_BUILD if mod_dir.name == "core-faults" else ()
        found, n = cstyle.sparse(tree.kernel, mod_dir, core, variables)
        findings += found
        checked += n
    assert checked >= len(dirs)
    assert not findings, _report(findings)


def test_checkpatch_reports_findings(tmp_path):
    """The checker is live: a file with known problems gives the expected types."""
    bad = tmp_path / "bad.c"
    bad.write_text("// SPDX-License-Identifier: GPL-2.0-only\nextern int x;\nint f(void) {\n  return x;\n}\n")
    kinds = {f.kind for f in cstyle.checkpatch([bad], "module")}
    assert {"WARNING:AVOID_EXTERNS", "ERROR:OPEN_BRACE"} <= kinds
    assert "WARNING:AVOID_EXTERNS" not in {f.kind for f in cstyle.checkpatch([bad], "patch-source")}


def test_sparse_reports_findings(probed, tmp_path):
    """sparse is live: an undeclared global is an error."""
    (tmp_path / "Kbuild").write_text("obj-m := kpgen_bad.o\n")
    (tmp_path / "kpgen_bad.c").write_text('#include <linux/module.h>\nint kpgen_bad;\nMODULE_LICENSE("GPL");\n')
    k = probed(KERNELS[0])
    pipeline.build(k, tmp_path)
    findings, checked = cstyle.sparse(k, tmp_path)
    assert checked == 1
    assert [(f.line, f.kind) for f in findings] == [(2, "error")]
    assert "kpgen_bad" in findings[0].message
