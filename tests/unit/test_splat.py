"""The dmesg deny-list: real splat shapes are caught, ordinary boot lines are not."""

from __future__ import annotations

import pytest

from kpgen import splat
from kpgen.errors import KpgenError

SPLATS = [
    "[   12.345678] WARNING: CPU: 1 PID: 230 at kernel/trace/ftrace.c:2085 ftrace_bug+0x2a/0x2b0",
    "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "[   12.345678] kernel BUG at mm/slub.c:435!",
    "[   12.345678] Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "[   12.345678] general protection fault, probably for non-canonical address 0xdead000000000100",
    "[   12.345678] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:245]",
    "[   12.345678] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
    "[   12.345678] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "[   12.345678] rcu: INFO: rcu_sched self-detected stall on CPU",
    "[   12.345678] INFO: task insmod:245 blocked for more than 120 seconds.",
    "[   12.345678] Call Trace:",
    "[   12.345678] list_add corruption. prev->next should be next (ffffffffc0a0b040)",
    "[   12.345678] Kernel panic - not syncing: Fatal exception",
    "[   12.345678] refcount_t: underflow; use-after-free.",
    "[   12.345678] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
    "[   12.345678] BUG kmalloc-64 (Not tainted): Object already free",
    "[   12.345678] BUG kmalloc-128 (Tainted: G           OE     ): Redzone overwritten",
    "[   12.345678] rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21003 jiffies s: 309",
    "[   12.345678] INFO: rcu_tasks detected stalls on tasks:",
    "[   12.345678] INFO: rcu_tasks_trace detected stalls on tasks:",
    "[   12.345678] sched: RT throttling activated",
    "[   12.345678] ftrace failed to modify [<ffffffff8110d2a0>] cmdline_proc_show+0x0/0x30",
    "[   12.345678] ------------[ ftrace bug ]------------",
    "[   12.345678] unchecked MSR access error: WRMSR to 0x48 (tried to write 0x0000000000000004)",
    "[   12.345678] Out of memory: Killed process 245 (stress) total-vm:10240kB, anon-rss:9000kB",
    "[   12.345678] UBSAN: array-index-out-of-bounds in kernel/sys.c:1290:12",
    "[   12.345678] BUG: KASAN: slab-use-after-free in cmdline_proc_show+0x1c/0x30",
    "[   12.345678] KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]",
    "[   12.345678] bash invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
]
CLEAN = [
    "[   15.664031] kpatch: loading out-of-tree module taints kernel.",
    "[   15.726744] kpatch: core loaded",
    "[   16.148181] kpatch: loaded patch module 'cmdline_a'",
    "[   17.028324] kpatch: cannot apply patch module 'test_busy': task 'bash' (pid 248) is inside function 'x'",
    "[    0.000000] Command line: console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1",
    "[    0.120000] RCU Tasks: Setting shift to 1 and lim to 1 rcu_task_cb_adjust=1.",
    "[    1.000000] ACPI BIOS Warning (bug): Incorrect checksum in table [DSDT]",
    "[    0.050000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, "
    "data leaks possible!",
    "[    0.900000] BUG_ON support is compiled in",
    "[    2.000000] OOM killer disabled.",
]


@pytest.mark.parametrize("line", SPLATS)
def test_splat_is_caught(line):
    assert splat.scan(line) == [line]


@pytest.mark.parametrize("line", CLEAN)
def test_clean_line_passes(line):
    assert splat.scan(line) == []


def test_scan_keeps_order_of_hits():
    log = "\n".join([CLEAN[0], SPLATS[0], CLEAN[1], SPLATS[3]])
    assert splat.scan(log) == [SPLATS[0], SPLATS[3]]


def test_allow_list_is_narrow():
    """An allowed notice does not excuse a real warning that follows it on another line."""
    log = "\n".join([CLEAN[-3], SPLATS[0]])
    assert splat.scan(log) == [SPLATS[0]]
    assert splat.scan("WARNING: CPU: 0 PID: 1 at RETBleed: WARNING: x") != []


def test_empty_deny_list_is_an_error(tmp_path):
    (tmp_path / "deny.txt").write_text("# nothing\n\n")
    with pytest.raises(KpgenError, match="holds no pattern"):
        splat.patterns(tmp_path / "deny.txt")


def test_bad_pattern_names_its_line(tmp_path):
    (tmp_path / "deny.txt").write_text("ok\n(unclosed\n")
    with pytest.raises(KpgenError, match=r"deny.txt:2: '\(unclosed' is not a regular expression"):
        splat.patterns(tmp_path / "deny.txt")


def test_every_deny_pattern_has_a_golden_splat():
    """Each pattern of the shipped deny-list catches at least one of the real splat lines above."""
    for pattern in splat.patterns():
        assert any(pattern.search(line) for line in SPLATS), f"no golden line for {pattern.pattern!r}"
