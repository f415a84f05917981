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

# kpatch_mutex serialises registrations: with the first load parked inside its critical section
# (park_at=register), a second load waits for it, then registers after it and wins.
registrations_are_serialised() {
	local first second log start
	use_core faults
	echo 3000 >"$PARAMS/park_ms"
	echo register >"$PARAMS/park_at"
	load cmdline_a &
	first=$!
	loop_until 10 mentioned "parked at 'register'"
	start=$SECONDS
	load cmdline_b &
	second=$!
	sleep 1
	# the first holds the mutex: neither has registered, the second is still waiting
	not mentioned "loaded patch module"
	kill -0 "$second"
	wait "$first"
	wait "$second"
	# it waited for the first's parking (what was left of 3 s), then parked 3 s itself
	[ $((SECONDS - start)) -ge 4 ]
	echo >"$PARAMS/park_at"
	log=$(kpatch_log)
	grep -qx "<5>loaded patch module 'cmdline_a'" <<<"$log"
	grep -qx "<5>loaded patch module 'cmdline_b'" <<<"$log"
	# each parked once, the second only after the first had left; cmdline_a registered first
	[ "$(grep -c "^<5>parked at 'register' for 3000 ms$" <<<"$log")" = 2 ]
	[ "$(sed -n "s/^<5>loaded patch module '\(.*\)'$/\1/p" <<<"$log" | tr '\n' ' ')" = "cmdline_a cmdline_b " ]
	visible cmdline_b
	unload cmdline_b
	visible cmdline_a
	unload cmdline_a
	original_cmdline
	use_core normal
}

# The klp relocations of a module that comes, written in part (fail_at=relocs: once the first
# section is written) and the load refused: what was written is cleared, so that the next load
# writes them afresh (x86 writes a relocation only where the place is zero).
klp_relocation_failure_unwinds() {
	use_core faults
	load test_module_ksym
	echo relocs >"$PARAMS/fail_at"
	expect_errno ENOEXEC load kpgen_test_target
	logged "<5>injected failure at 'relocs'"
	logged "<3>patch module 'test_module_ksym': cannot write its klp relocations for module 'kpgen_test_target': -8"
	not loaded kpgen_test_target
	echo >"$PARAMS/fail_at"
	load kpgen_test_target
	[ "$(target_field value)" = 120 ]
	rmmod kpgen_test_target
	unload test_module_ksym
	use_core normal
}

scenario fault_injection_unwinds
scenario registrations_are_serialised
scenario klp_relocation_failure_unwinds
