#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Injected faults: the fault-injection build of the core (core-faults/) fails on demand at each
# error point of a load, and of a removal; each failure must leave nothing behind, and the next
# load must work.

fault_injection_unwinds() {
	local point n=0
	use_core faults
	for point in alloc lookup filter register activeness sysfs; do
		echo "$point" >"$PARAMS/fail_at"
		not load cmdline_a 2>/dev/null
		logged "<5>injected failure at '$point'"
		not loaded cmdline_a
		[ ! -e "$SYS/cmdline_a" ]
		[ -z "$(hooked)" ]
		[ "$(cat /sys/module/kpatch/refcnt)" = 0 ]
		original_cmdline
		echo >"$PARAMS/fail_at"
		load cmdline_a
		visible cmdline_a
		unload cmdline_a
		n=$((n + 1))
	done
	# a removal refused by the activeness check leaves the patch whole
	load cmdline_a
	echo activeness >"$PARAMS/fail_at"
	expect_errno EBUSY write "$SYS/cmdline_a/enabled" 0
	logged "<5>injected failure at 'activeness'"
	enabled cmdline_a 1
	visible cmdline_a
	echo >"$PARAMS/fail_at"
	unload cmdline_a
	[ "$(cat /sys/module/kpatch/refcnt)" = 0 ]
	use_core normal
	[ ! -e "$PARAMS/fail_at" ]
	echo "figure: faults: $n injection points on load and 1 on removal, each unwound fully"
}

scenario fault_injection_unwinds
