#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# The ways a call reaches its replacement besides the handler's slot table: the hash, when the
# slot table cannot answer (the test build's fail_at=slots keeps it empty), and ftrace direct
# calls (direct_calls=1), through kpatch_direct_caller and its slow path.

# Whether ftrace sends FUNC straight to the core's direct caller (enabled_functions shows it on
# a line of its own, after the function's).
direct_hooked() {
	local line prev=""
	while IFS= read -r line; do
		[[ $prev == "$1 "* && $line == *"direct-->kpatch_direct_caller"* ]] && return 0
		prev=$line
	done <"$TRACING/enabled_functions"
	return 1
}

# Stacking and unstacking give the newest version on every call, when the slot table is empty
# (every call asks the hash) as when it answers.
hash_answers_without_slots() {
	use_core faults
	echo slots >"$PARAMS/fail_at"
	load cmdline_a
	visible cmdline_a
	load cmdline_b
	visible cmdline_b
	unload cmdline_b
	visible cmdline_a
	unload cmdline_a
	original_cmdline
	echo >"$PARAMS/fail_at"
	use_core normal
}
scenario hash_answers_without_slots

# With direct_calls=1 a function is hooked with a direct call to the core, which sends each
# call to the newest version, stacked or not; the direct call goes with the last version.
direct_call_redirects_and_stacks() {
	use_core normal
	echo 1 >"$PARAMS/direct_calls"
	load kpgen_test_target
	load test_module_value
	[ "$(target_field value)" = 2 ]
	direct_hooked kpgen_test_target_value
	load test_value_b
	[ "$(target_field value)" = 3 ]
	unload test_value_b
	[ "$(target_field value)" = 2 ]
	# a function hooked with a direct call stays so while a version of it is applied
	echo 0 >"$PARAMS/direct_calls"
	load test_value_b
	[ "$(target_field value)" = 3 ]
	direct_hooked kpgen_test_target_value
	unload test_value_b
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	not direct_hooked kpgen_test_target_value
	rmmod kpgen_test_target
}
scenario direct_call_redirects_and_stacks

# A task inside the direct call's slow path, on its way to a replacement (the test build parks
# it there, preemptible), has on its stack kpatch_direct_target(), the core's direct caller
# and the original's call: the reliable unwinder walks through them (the refusal names the
# function, not an unreliable stack), and no change of that function happens until the task
# has gone on.
direct_call_on_its_way_blocks_changes() {
	local out reader
	use_core faults
	echo slots >"$PARAMS/fail_at"
	echo 1 >"$PARAMS/direct_calls"
	load kpgen_test_target
	load test_module_value
	[ "$(target_field value)" = 2 ]
	direct_hooked kpgen_test_target_value
	out=$(mktemp)
	echo 6000 >"$PARAMS/park_ms"
	echo kpgen_test_target_value >"$PARAMS/park_call"
	cat /proc/kpgen_test_target >"$out" &
	reader=$!
	loop_until 10 logged "<5>parked task 'cat' (pid $reader) on its way to the replacement of 'kpgen_test_target_value'"
	expect_errno EBUSY load test_value_b
	logged "<3>cannot apply patch module 'test_value_b': task 'cat' (pid $reader) is inside function 'kpgen_test_target_value'"
	expect_errno EBUSY write "$SYS/test_module_value/enabled" 0
	wait "$reader"
	grep -q " value=2 " "$out"
	rm -f "$out"
	echo 2000 >"$PARAMS/park_ms"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	echo 0 >"$PARAMS/direct_calls"
	echo >"$PARAMS/fail_at"
	rmmod kpgen_test_target
	use_core normal
}
scenario direct_call_on_its_way_blocks_changes 120

# A failed hook with direct calls leaves nothing: no direct call, no patch, the core idle.
direct_call_failure_unwinds() {
	use_core faults
	echo 1 >"$PARAMS/direct_calls"
	echo direct >"$PARAMS/fail_at"
	load kpgen_test_target
	expect_errno ENOMEM load test_module_value
	echo >"$PARAMS/fail_at"
	not direct_hooked kpgen_test_target_value
	[ "$(target_field value)" = 1 ]
	echo 0 >"$PARAMS/direct_calls"
	rmmod kpgen_test_target
	use_core normal
}
scenario direct_call_failure_unwinds

# The stress scenario's threads and steps with their function hooked by a direct call.
# (half the cycles of the stress scenario, 80-stress.sh)
direct_call_stress() {
	use_core normal
	echo 1 >"$PARAMS/direct_calls"
	STRESS_CYCLES=$((STRESS_CYCLES / 2 + 1)) stress_random_cycles
	echo 0 >"$PARAMS/direct_calls"
}
scenario direct_call_stress "$STRESS_LIMIT"
