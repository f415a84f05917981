#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# sysfs and the core's parameters: `enabled` writes, last_change, busy tasks and busy retries.

sysfs_enabled_round_trip() {
	local bad
	load cmdline_a
	enabled cmdline_a 1
	echo 0 >"$SYS/cmdline_a/enabled"
	enabled cmdline_a 0
	original_cmdline
	echo 1 >"$SYS/cmdline_a/enabled"
	enabled cmdline_a 1
	visible cmdline_a
	# writing the current state again changes nothing
	echo 1 >"$SYS/cmdline_a/enabled"
	visible cmdline_a
	for bad in 2 -1 yes " 1x" 10 0x1; do
		expect_errno EINVAL write "$SYS/cmdline_a/enabled" "$bad"
	done
	enabled cmdline_a 1
	visible cmdline_a
	unload cmdline_a
}

busy_task_gets_ebusy() {
	local before sleeper
	load kpgen_test_target
	before=$(hooked)
	start_sleeper
	sleeper=$SLEEPER

	# a task sleeps in the target: the load fails with EBUSY and changes nothing
	expect_errno EBUSY load test_busy
	not loaded test_busy
	[ ! -e "$SYS/test_busy" ]
	[ "$(hooked)" = "$before" ]
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $sleeper) is inside function 'kpgen_test_target_sleep'"
	not mentioned "loaded patch module 'test_busy'"
	in_stack "$sleeper" kpgen_test_target_sleep
	last_change_is "functions=1 tasks=0 prechecked=[0-9]+ unwound=0 trusted=0 tries=1 pause_ns=0 walked=none result=-16"

	# once the task has left, the same load succeeds
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	[ "$(target_field last)" = 1 ]
	load test_busy
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[1-9][0-9]* tries=1 pause_ns=[1-9][0-9]* walked=moved result=0"
	timeout 20 bash -c 'echo sleep > /proc/kpgen_test_target'
	[ "$(target_field last)" = 2 ]

	# the patch does not pin the module it patches
	rmmod kpgen_test_target
	enabled test_busy 1
	unload test_busy
}

busy_retry_succeeds_when_quiet() {
	local sleeper waker
	load kpgen_test_target
	start_sleeper
	sleeper=$SLEEPER
	echo 200 >"$PARAMS/busy_retries"
	echo 50 >"$PARAMS/busy_retry_ms"
	(sleep 2 && echo wake >/proc/kpgen_test_target) </dev/null >/dev/null 2>&1 &
	waker=$!
	# refused at first, retried every 50 ms, applied once the sleeper has left
	load test_busy
	wait "$waker"
	wait "$sleeper"
	grep -Eq "^<6>applied patch module 'test_busy' after [1-9][0-9]* retries$" <<<"$(kpatch_log)"
	not mentioned "cannot apply patch module 'test_busy'"
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[0-9]+ tries=([2-9]|[1-9][0-9]+) pause_ns=[1-9][0-9]* walked=moved result=0"
	unload test_busy
	rmmod kpgen_test_target
	# garbage is refused by the parameters themselves, and changes nothing
	expect_errno EINVAL write "$PARAMS/busy_retries" lots
	[ "$(cat "$PARAMS/busy_retries")" = 200 ]
}

busy_retries_bounded_and_interruptible() {
	local before sleeper loader start rc=0
	# past the documented maxima (1000 tries, 10000 ms): refused, and the value stays
	before=$(cat "$PARAMS/busy_retries")
	expect_errno EINVAL write "$PARAMS/busy_retries" 1001
	expect_errno EINVAL write "$PARAMS/busy_retry_ms" 10001
	[ "$(cat "$PARAMS/busy_retries")" = "$before" ]
	echo 1000 >"$PARAMS/busy_retries"
	echo 100 >"$PARAMS/busy_retry_ms"
	[ "$(cat "$PARAMS/busy_retries")" = 1000 ]

	# with 1000 tries 100 ms apart the load would wait 100 s for the sleeper: a signal ends it
	load kpgen_test_target
	start_sleeper
	sleeper=$SLEEPER
	start=$SECONDS
	insmod "$(ko test_busy)" &
	loader=$!
	sleep 2
	kill -0 "$loader"
	kill -TERM "$loader"
	wait "$loader" || rc=$?
	[ "$rc" -ne 0 ]
	[ $((SECONDS - start)) -lt 30 ]
	not loaded test_busy
	[ ! -e "$SYS/test_busy" ]
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $sleeper) is inside function 'kpgen_test_target_sleep'"
	not mentioned "loaded patch module 'test_busy'"
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	rmmod kpgen_test_target
}

scenario sysfs_enabled_round_trip
scenario busy_task_gets_ebusy
scenario busy_retry_succeeds_when_quiet
scenario busy_retries_bounded_and_interruptible
