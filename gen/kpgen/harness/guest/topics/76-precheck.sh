#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# The activeness check walks every task's stack before stop_machine(), and inside the pause
# only the tasks that may have moved since: those a sched_switch probe saw run (woken, new, or
# running at the first pass), those the first pass could not walk, and the idle tasks; when the
# probe's record overflows, every task (walked=all in last_change). The test build parks the
# change between the two passes (park_at=precheck), and each scenario moves a task during that
# window.

# Parks the next change between the two passes of its check for $1 ms.
park_between_passes() {
	echo "$1" >"$PARAMS/park_ms"
	echo precheck >"$PARAMS/park_at"
}

parked_between_passes() { logged "<5>parked at 'precheck' for $1 ms"; }

# `spawn_sleeps N SECONDS`: starts N tasks that sleep for SECONDS, or until killed; their pids
# are in SLEEPS.  Each is a copy of this shell waiting to read a pipe nobody writes to: a fork
# and no exec, a tenth of what starting `sleep` costs under TCG.
spawn_sleeps() {
	local fifo=/tmp/kpgen-sleeps.$BASHPID i
	SLEEPS=()
	rm -f "$fifo"
	mkfifo "$fifo"
	exec {SLEEPS_FD}<>"$fifo"
	rm -f "$fifo"
	for ((i = 0; i < $1; i++)); do
		{ read -r -t "$2" -u "$SLEEPS_FD" _ || true; } &
		SLEEPS+=($!)
	done
}

# `stop_sleeps`: the tasks of spawn_sleeps are killed and reaped.
stop_sleeps() {
	kill "${SLEEPS[@]}"
	wait "${SLEEPS[@]}" 2>/dev/null || true
	exec {SLEEPS_FD}<&-
	SLEEPS=()
}

# A task asleep elsewhere at the first pass wakes, runs into the function and sleeps there
# before the second: its context-switch counts changed, so it is unwound, and the load fails.
precheck_sees_a_task_that_ran_since() {
	local fifo=/tmp/kpgen-precheck.fifo waiter loader rc=0
	use_core faults
	load kpgen_test_target
	rm -f "$fifo"
	mkfifo "$fifo"
	bash -c "read -r _ <$fifo && echo sleep > /proc/kpgen_test_target" </dev/null >/dev/null 2>&1 &
	waiter=$!
	loop_until 10 in_stack "$waiter" fifo_open
	park_between_passes 4000
	insmod "$(ko test_busy)" 2>/dev/null &
	loader=$!
	loop_until 15 parked_between_passes 4000
	echo go >"$fifo"
	loop_until 10 in_stack "$waiter" kpgen_test_target_sleep
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	echo >"$PARAMS/park_at"
	not loaded test_busy
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $waiter) is inside function 'kpgen_test_target_sleep'"
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[1-9][0-9]* tries=1 pause_ns=[1-9][0-9]* walked=moved result=-16"
	echo wake >/proc/kpgen_test_target
	wait "$waiter"
	rm -f "$fifo"
	rmmod kpgen_test_target
}
scenario precheck_sees_a_task_that_ran_since 120

# A task forked between the passes, which enters the function: it is new, so it is unwound.
precheck_sees_a_new_task() {
	local loader rc=0
	use_core faults
	load kpgen_test_target
	park_between_passes 4000
	insmod "$(ko test_busy)" 2>/dev/null &
	loader=$!
	loop_until 15 parked_between_passes 4000
	start_sleeper
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	echo >"$PARAMS/park_at"
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $SLEEPER) is inside function 'kpgen_test_target_sleep'"
	echo wake >/proc/kpgen_test_target
	wait "$SLEEPER"
	rmmod kpgen_test_target
}
scenario precheck_sees_a_new_task 120

# Tasks that exit between the passes are simply not met again: the change goes on.
precheck_survives_exits() {
	use_core faults
	spawn_sleeps 20 1
	park_between_passes 3000
	load cmdline_a
	echo >"$PARAMS/park_at"
	wait "${SLEEPS[@]}"
	exec {SLEEPS_FD}<&-
	visible cmdline_a
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[0-9]+ tries=1 pause_ns=[1-9][0-9]* walked=moved result=0"
	unload cmdline_a
}
scenario precheck_survives_exits 60

# A task busy on a CPU at the first pass (so it has no kept verdict) that then enters the
# function and sleeps there: it was switched from and to since, so the pause walks it.
precheck_sees_a_task_that_was_running() {
	local go=/tmp/kpgen-precheck.go spinner loader rc=0
	use_core faults
	load kpgen_test_target
	rm -f "$go"
	bash -c "while [ ! -e $go ]; do :; done; echo sleep > /proc/kpgen_test_target" \
		</dev/null >/dev/null 2>&1 &
	spinner=$!
	park_between_passes 4000
	insmod "$(ko test_busy)" 2>/dev/null &
	loader=$!
	loop_until 15 parked_between_passes 4000
	touch "$go"
	loop_until 10 in_stack "$spinner" kpgen_test_target_sleep
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	echo >"$PARAMS/park_at"
	not loaded test_busy
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $spinner) is inside function 'kpgen_test_target_sleep'"
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[0-9]+ tries=1 pause_ns=[1-9][0-9]* walked=moved result=-16"
	echo wake >/proc/kpgen_test_target
	wait "$spinner"
	rm -f "$go"
	rmmod kpgen_test_target
}
scenario precheck_sees_a_task_that_was_running 120

# More tasks run between the passes than the probe has room for on a CPU (1100 sleepers killed
# in the window: on two CPUs one runs at least 550 of them, past its 512): the pause falls back
# to walking every task, and still finds the task that entered the function meanwhile.
pause_walks_all_when_the_record_overflows() {
	local loader rc=0
	use_core faults
	load kpgen_test_target
	spawn_sleeps 1100 600
	park_between_passes 12000
	insmod "$(ko test_busy)" 2>/dev/null &
	loader=$!
	loop_until 15 parked_between_passes 12000
	stop_sleeps
	start_sleeper
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	echo >"$PARAMS/park_at"
	not loaded test_busy
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $SLEEPER) is inside function 'kpgen_test_target_sleep'"
	last_change_is "functions=1 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[0-9]+ tries=1 pause_ns=[1-9][0-9]* walked=all result=-16"
	echo wake >/proc/kpgen_test_target
	wait "$SLEEPER"
	rmmod kpgen_test_target
}
scenario pause_walks_all_when_the_record_overflows 300

# Sleeping tasks are trusted from the first pass: the pause walks only the few that moved (the
# idle tasks, the task making the change, the stopper's own), not the hundreds that sleep.
pause_trusts_sleeping_tasks() {
	local line trusted unwound
	spawn_sleeps 200 600
	load cmdline_a
	line=$(cat "$SYS/last_change")
	stop_sleeps
	trusted=$(sed -n 's/.* trusted=\([0-9]*\) .*/\1/p' <<<"$line")
	unwound=$(sed -n 's/.* unwound=\([0-9]*\) .*/\1/p' <<<"$line")
	echo "figure: precheck: $trusted tasks trusted from the first pass, $unwound unwound in the pause ($line)"
	[[ $line == *" walked=moved "* ]]
	[ "$trusted" -ge 200 ]
	[ "$unwound" -ge 2 ]
	[ "$unwound" -le 40 ]
	unload cmdline_a
}
scenario pause_trusts_sleeping_tasks 120
