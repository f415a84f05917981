"""`make bench` keeps building: its modules and generated patches build warning-free (W=1) for
the default kernel, and are checkpatch and sparse clean. The benchmark itself runs only with
`make bench`: its figures are measurements, not pass/fail tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpgen import cstyle, elfcheck, kernel
from kpgen.harness import bench

pytestmark = pytest.mark.kbuild


def test_bench_tree_builds(tmp_path: Path) -> None:
    k = kernel.probe(kernel.matrix()[0].kdir())
    tree = bench.build_tree(k, tmp_path / "bench")  # raises on any build warning
    kos = sorted(p.name for p in tree.root.rglob("*.ko"))
    assert {"kpatch.ko", "kpgen_bench.ko", f"{bench.FUNCS_MODULE}.ko", "kpgen_bench_klp.ko", "bench_many_1000.ko",
            "bench_stack_10.ko", f"{bench.LP_BACKEND_PATCH}.ko", f"{bench.DIRECT_PATCH}.ko"} <= set(kos)
    # the livepatch backend's patch is an upstream livepatch module, without the core
    lp = tree.root / "patches" / bench.LP_BACKEND_PATCH / f"{bench.LP_BACKEND_PATCH}.ko"
    assert elfcheck.check_module(lp, k, backend="livepatch").ok
    assert not cstyle.checkpatch([tree.root / "modules" / bench.FUNCS_MODULE / "funcs.c"], "generated")
    for mod in ("kpgen_bench", bench.FUNCS_MODULE):
        findings, _ = cstyle.sparse(k, tree.root / "modules" / mod)
        assert not findings, "\n".join(map(str, findings))
