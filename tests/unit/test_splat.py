"""The dmesg deny-list: real splat shapes are caught, ordinary boot lines are not."""

from __future__ import annotations

import pytest

from kpgen import splat

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
]
CLEAN = [
    "[   15.664031] kpatch: loading out-of-tree module taints kernel.",
    "[   15.726744] kpatch: core loaded",
    "[   16.148181] kpatch: loaded patch module 'cmdline_a'",
    "[   17.028324] kpatch: cannot apply patch module 'test_busy': task 'bash' (pid 248) is inside function 'x'",
    "[    0.000000] Command line: console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1",
    "[    0.120000] RCU Tasks: Setting shift to 1 and lim to 1 rcu_task_cb_adjust=1.",
    "[    1.000000] ACPI BIOS Warning (bug): Incorrect checksum in table [DSDT]",
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
