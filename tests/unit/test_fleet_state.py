"""The live patches of a running kernel, read from sysfs and /proc: here from a copy laid out as
the kernel lays them out (the boot tests read the real ones), and the order files of installed
patches."""

from __future__ import annotations

from pathlib import Path

from kpgen.fleet import layout, state


def files(root: Path, tree: dict[str, str]) -> Path:
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)
    return root


def test_every_live_patch_of_both_backends_in_load_order(tmp_path):
    root = files(tmp_path, {
        # /proc/modules lists the newest first
        "proc/modules": "lp_old 16384 0 - Live 0x0 (OEK)\nlp 16384 1 - Live 0x0 (OEK)\nfix 16384 1 - Live 0x0 (OE)\n"
                        "kpatch 69632 1 fix, Live 0x0 (OE)\n",
        "sys/kernel/kpatch/fix/enabled": "1\n",
        "sys/kernel/kpatch/fix/functions": "vmlinux cmdline_proc_show,0 active\nmod f,2 pending\n",
        "sys/kernel/kpatch/fix/vmlinux/patched": "1\n",
        "sys/kernel/livepatch/lp/enabled": "1\n",
        "sys/kernel/livepatch/lp/transition": "1\n",
        "sys/kernel/livepatch/lp/vmlinux/patched": "1\n",
        "sys/kernel/livepatch/lp/vmlinux/pipe_read,0/": "",
        "sys/kernel/livepatch/lp/kpgen_test_target/patched": "0\n",
        "sys/kernel/livepatch/lp/kpgen_test_target/kpgen_test_target_value,1/": "",
    })
    patches = state.live_patches(root)
    assert [p.name for p in patches] == ["fix", "lp", "lp_old"]
    fix, lp, old = patches
    assert fix.backend == "kpatch" and fix.enabled and fix.objects == ["vmlinux", "mod"]
    assert fix.functions[1] == state.Function("mod", "f", 2, "pending")
    assert lp.backend == "livepatch" and lp.enabled and lp.transition
    assert set(lp.functions) == {state.Function("vmlinux", "pipe_read", 0, "patched"),
                                 state.Function("kpgen_test_target", "kpgen_test_target_value", 1, "unpatched")}
    assert old == state.LivePatch("lp_old", "livepatch", False, (), listed=False)
    assert state.live_patch("kpatch", root) is None


def test_the_tasks_a_transition_waits_for(tmp_path):
    def task(pid: int, tid: int, comm: str, patch_state: int, flags: int, stack: str) -> dict[str, str]:
        d = f"proc/{pid}/task/{tid}"
        return {f"{d}/patch_state": f"{patch_state}\n", f"{d}/comm": comm + "\n", f"{d}/stack": stack,
                f"{d}/stat": f"{tid} ({comm} x) S 1 1 1 0 -1 {flags} 0 0\n"}

    root = files(tmp_path, {
        **task(412, 412, "cat", 0, 0x400000, "[<0>] pipe_read+0x3a1/0x4c0\n[<0>] vfs_read+0x2b0/0x2f0\n"),
        **task(7, 7, "kworker/0:1", 0, 0x00208040, "[<0>] worker_thread+0xb5/0x390\n"),
        **task(300, 301, "bash", 1, 0x400000, ""),
        **task(500, 500, "idle", -1, 0, ""),
    })
    waiting = state.waiting_tasks(1, root)
    assert [(t.label(), t.frame_in({"pipe_read"})) for t in waiting] == [
        ("[kworker/0:1] (pid 7)", None), ("cat (pid 412)", "pipe_read")]
    assert [t.tid for t in state.waiting_tasks(0, root)] == [301]


def test_a_livepatch_module_frame_is_found_by_its_module():
    task = state.Task(1, 1, "cat", False, ("test_pipe_read+0x1c/0x90 [test_lp_pipe]", "vfs_read+0x2b0/0x2f0"))
    assert task.frame_in(set(), "test_lp_pipe") == "test_pipe_read"
    assert task.frame_in(set(), "other") is None


def test_order_files_round_trip_with_the_core_first():
    order = layout.Order("#1 SMP Debian 6.1.192-3", ()).with_name("fix_a").with_name("kpatch").with_name("fix_b")
    assert order.names == ("kpatch", "fix_a", "fix_b")
    assert order.with_name("fix_a").names == ("kpatch", "fix_b", "fix_a")
    assert layout.parse_order(order.text("6.1.0-57-amd64")) == order
    assert order.without("fix_a").names == ("kpatch", "fix_b")


def test_paths_of_a_package_and_of_a_local_install():
    pkg = layout.Layout(Path("/r"), "6.12.118+deb12-amd64", True)
    local = layout.Layout(Path("/"), "6.1.0-57-amd64", False)
    assert pkg.unit == Path("/r/lib/systemd/system/kpgen@6.12.118\\x2bdeb12-amd64.service")
    assert pkg.on_target(pkg.script) == "/usr/lib/kpgen/6.12.118+deb12-amd64/kpgen-patches"
    assert local.on_target(local.unit) == "/etc/systemd/system/kpgen@6.1.0-57-amd64.service"
    assert local.on_target(local.order_file) == "/lib/modules/6.1.0-57-amd64/extra/kpgen/order"
