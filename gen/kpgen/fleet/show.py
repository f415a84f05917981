"""What `kpgen list` and `kpgen info` print: lines for a person, or one JSON document for the
tools a team already runs (configuration management, fleet inventories)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from . import layout, signature, state
from .modfile import ModuleFile

BACKENDS = {"kpatch": "kpatch (a patch module of kpgen's core, kpatch.ko)",
            "livepatch": "livepatch (the kernel's own)", "core": "kpgen's core"}


def _function(f: state.Function) -> str:
    pos = f",{f.sympos}" if f.sympos else ""
    return f"{f.object} {f.name}{pos}"


def _patch_state(p: state.LivePatch) -> str:
    if not p.listed:
        return "disabled: the kernel no longer lists it (replaced, or disabled); `kpgen unload` removes it"
    if p.transition:
        return ("enabled, transition to patched under way" if p.enabled
                else "disabled, transition to unpatched under way")
    return "enabled" if p.enabled else "disabled"


def inventory(root: Path = Path("/")) -> dict:
    """The live patches of the running kernel and the installed ones of every release."""
    uname = os.uname()
    patches = state.live_patches(root)
    loaded = {m.name for m in state.modules(root)}
    installed = []
    for release in layout.installed_releases(root):
        order = layout.read_order(layout.Layout(Path(root), release, vendor=False).order_file)
        assert order is not None
        running = release == uname.release
        installed.append({"release": release, "running": running, "version": order.version,
                          "modules": [{"name": n, "loaded": running and n in loaded} for n in order.names]})
    return {"release": uname.release, "version": uname.version, "core_loaded": state.CORE in loaded,
            "patches": [asdict(p) for p in patches], "installed": installed}


def list_lines(inv: dict) -> list[str]:
    lines = [f"live patches of {inv['release']} ({inv['version']}):"]
    if not inv["patches"]:
        lines.append("  none loaded")
    for p in inv["patches"]:
        patch = state.LivePatch(**{**p, "functions": tuple(state.Function(**f) for f in p["functions"])})
        lines.append(f"  {patch.name}  {patch.backend}  {_patch_state(patch)}")
        width = max((len(_function(f)) for f in patch.functions), default=0)
        lines += [f"      {_function(f):<{width}}  {f.state}" for f in patch.functions]
    if inv["core_loaded"]:
        users = sum(1 for p in inv["patches"] if p["backend"] == "kpatch")
        lines.append(f"kpgen's core (kpatch) is loaded, used by {users} patch module(s)")
    if inv["installed"]:
        lines.append("installed for boot (/lib/modules/RELEASE/extra/kpgen, in load order):")
    for rel in inv["installed"]:
        if rel["running"]:
            mods = ", ".join(f"{m['name']} ({'loaded' if m['loaded'] else 'not loaded'})" for m in rel["modules"])
            lines.append(f"  {rel['release']} (running): {mods}")
        else:
            lines.append(f"  {rel['release']}: {', '.join(m['name'] for m in rel['modules'])} "
                         "(kept: they load when that kernel boots)")
    return lines


def info_document(mod: ModuleFile) -> dict:
    sig = signature.read(mod.path)
    meta = mod.meta
    return {
        "file": str(mod.path), "name": mod.name, "backend": mod.backend, "release": mod.release,
        "kernel_version": mod.kernel_version, "description": mod.description,
        "signature": asdict(sig) if sig else None, "metadata": asdict(meta) if meta else None,
    }


def _indented(text: str) -> list[str]:
    return [f"    {line}".rstrip() for line in text.rstrip("\n").splitlines()]


def info_lines(mod: ModuleFile) -> list[str]:
    sig = signature.read(mod.path)
    meta = mod.meta
    lines = [f"{mod.path}:",
             f"  module:      {mod.name}",
             f"  backend:     {BACKENDS[mod.backend]}",
             f"  kernel:      {mod.release}" + (f" ({mod.kernel_version})" if mod.kernel_version else ""),
             f"  description: {mod.description or '(none)'}",
             f"  signature:   {sig.describe() if sig else 'not signed'}"]
    if meta is None:
        lines.append("  (no kpgen metadata: the module was not built by `kpgen build`)")
        return lines
    lines.append(f"  made by:     kpgen {meta.kpgen}" + (f", for linux-image {meta.kernel_package}"
                                                       if meta.kernel_package else ""))
    if meta.kind == "core":
        return lines
    lines.append(f"  cumulative:  {'yes: it takes over every enabled patch' if meta.replace else 'no'}")
    lines.append("  functions:")
    lines += [f"    {f.object} {f.target}" + (f",{f.sympos}" if f.sympos else "") + f" -> {f.replacement}"
              for f in meta.functions]
    lines.append(f"spec ({meta.spec_name}):")
    lines += _indented(meta.spec_text)
    if meta.diff is not None:
        lines.append(f"source diff ({meta.diff[0]}):")
        lines += _indented(meta.diff[1])
    else:
        for name, text in meta.sources:
            lines.append(f"source ({name}; the spec names no diff):")
            lines += _indented(text)
    return lines


def source_text(mod: ModuleFile) -> str | None:
    """The fix's source diff, else its sources (each after a `// NAME` line); None without metadata."""
    meta = mod.meta
    if meta is None:
        return None
    if meta.diff is not None:
        return meta.diff[1]
    return "".join(f"// {name}\n{text}" for name, text in meta.sources)


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)
