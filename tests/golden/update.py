"""Rewrite the golden files from the current templates (then review `git diff tests/golden`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from test_render import GOLDEN, IBT_FEATURES, IBT_RELEASE

from kpgen import model, render

# only the probed header differs from one kernel to another (test_core_c_is_the_same_for_every_kernel)
for f in render.render_core(model.CoreModel(IBT_FEATURES, IBT_RELEASE)):
    if f.path.name != "probed.h":
        continue
    target = GOLDEN / "core-ibt" / f.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(f.content)
    print(f"wrote {target}")
