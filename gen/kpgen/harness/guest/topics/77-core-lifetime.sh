#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS and TRACING.
# shellcheck disable=SC2153,SC2154
#
# Which tasks the activeness check walks and which it may trust, when a patch module's code may
# go, and the core's own lifetime: each scenario opens its window on purpose (a kthread injecting
# idle time, a task changing a patch from inside the patched code, the test build's parking
# points) and checks that no task runs code being freed and nothing stays half-patched.

# `pid_of COMM`: the pid of the one task named COMM (fails if there is none).
pid_of() {
	local dir comm
	for dir in /proc/[0-9]*; do
		{ read -r comm <"$dir/comm"; } 2>/dev/null || continue
		if [ "$comm" = "$1" ]; then
			echo "${dir#/proc/}"
			return 0
		fi
	done
	return 1
}

# `proc_field FILE NAME`: the value of NAME=VALUE in the one line of FILE.
proc_field() {
	local line kv
	line=$(<"$1") || fatal "cannot read $1"
	for kv in $line; do
		if [ "${kv%%=*}" = "$2" ]; then
			echo "${kv#*=}"
			return 0
		fi
	done
	fatal "$1 has no field $2: $line"
}

idle_steps_past() { [ "$(proc_field /proc/kpgen_test_idle steps)" -gt "$1" ]; }

# A kthread that injects idle time (play_idle_precise(), as intel_powerclamp does) carries
# PF_IDLE while it idles, so is_idle_task() is true of it, and tasks-RCU does not wait for it;
# but it is not its CPU's idle task, and it returns into the code that called it.  The pause
# must walk it like any other task, applying and removing alike.  (Each step idles 250 ms and
# sleeps 250 ms: the kthread is inside the step either way, idle most of the time.)
idle_injecting_kthread_is_walked() {
	local pid steps
	use_core normal
	load kpgen_test_idle
	echo start >/proc/kpgen_test_idle
	pid=$(pid_of kpgen_idle/1)
	loop_until 10 idle_steps_past 0
	expect_errno EBUSY load test_idle
	logged "<3>cannot apply patch module 'test_idle': task 'kpgen_idle/1' (pid $pid) is inside function 'kpgen_test_idle_step'"
	not loaded test_idle
	echo stop >/proc/kpgen_test_idle
	load test_idle
	echo start >/proc/kpgen_test_idle
	pid=$(pid_of kpgen_idle/1)
	steps=$(proc_field /proc/kpgen_test_idle steps)
	loop_until 10 idle_steps_past "$steps"
	[ "$(proc_field /proc/kpgen_test_idle step)" = 2 ]
	expect_errno EBUSY write "$SYS/test_idle/enabled" 0
	logged "<3>cannot remove patch module 'test_idle': task 'kpgen_idle/1' (pid $pid) is inside the code of patch module 'test_idle'"
	enabled test_idle 1
	not rmmod test_idle 2>/dev/null
	echo stop >/proc/kpgen_test_idle
	unload test_idle
	rmmod kpgen_test_idle
}
scenario idle_injecting_kthread_is_walked 90

releases_parked() {
	local n
	n=$(kernel_lines "kpatch: parked at 'release'" | wc -l) || return 1
	[ "$n" -ge "$1" ]
}

# A cumulative patch's load disables the patches it takes over, waits for a tasks-RCU grace
# period with the core's mutex dropped, and only then lets their modules go.  `rmmod -f` of one
# of them in that window (the test build parks the release) must wait for the release: its
# module, whose struct the release still reads, is freed as soon as its exit returns.  Here the
# patch is in two releases at once: disabled (its release parked), enabled again, and taken
# over by the cumulative patch; the unload waits for the second after the first has ended.
forced_unload_waits_for_a_release() {
	local loader writer rc=0
	use_core faults
	load test_repl_a
	echo 3000 >"$PARAMS/park_ms"
	echo release >"$PARAMS/park_at"
	echo 0 >"$SYS/test_repl_a/enabled" &
	writer=$!
	loop_until 20 releases_parked 1
	echo 1 >"$SYS/test_repl_a/enabled"
	load test_repl_c &
	loader=$!
	loop_until 20 releases_parked 2
	echo >"$PARAMS/park_at"
	wait "$writer" || rc=$?
	[ "$rc" = 0 ]
	rmmod -f test_repl_a
	logged "<5>patch module 'test_repl_a' is still being released: its unload waits"
	wait "$loader" || rc=$?
	[ "$rc" = 0 ]
	logged "<5>patch module 'test_repl_a' replaced by 'test_repl_c'"
	not loaded test_repl_a
	[ ! -e "$SYS/test_repl_a" ]
	enabled test_repl_c 1
	echo 2000 >"$PARAMS/park_ms"
	unload test_repl_c
}
scenario forced_unload_waits_for_a_release 120

# `relay PATH VALUE MS &`: a task writes VALUE to PATH from inside kpgen_test_relay_write(),
# then sleeps MS there; $! is that task (the function runs in a subshell that execs it).
relay() { exec bash -c "echo '$1 $2 $3' > /proc/kpgen_test_relay" </dev/null >/dev/null 2>&1; }
relay_field() { proc_field /proc/kpgen_test_relay "$1"; }

# The task that asks for a change gets no pass: here it asks from inside the replacement of a
# patch that the change would retire (a write through a patched function, a module load through
# one), and then goes on in that code.  The change must be refused like any other whose code a
# task is inside: else the patch's module could go while the task still runs it.
initiator_inside_retiring_code_is_walked() {
	local pid rc=0
	use_core normal
	load kpgen_test_relay
	load test_relay
	# disabling the patch whose replacement the writer is in
	relay "$SYS/test_relay/enabled" 0 3000 &
	pid=$!
	sleep 1
	enabled test_relay 1
	not rmmod test_relay 2>/dev/null
	wait "$pid" || rc=$?
	[ "$rc" = 0 ]
	[ "$(relay_field result)" = -16 ]
	[ "$(relay_field version)" = 2 ]
	logged "<3>cannot remove patch module 'test_relay': task 'bash' (pid $pid) is inside the code of patch module 'test_relay'"
	# a cumulative patch, enabled from inside the replacement of a patch it takes over
	unload test_relay
	load test_repl_c
	echo 0 >"$SYS/test_repl_c/enabled"
	load test_relay
	relay "$SYS/test_repl_c/enabled" 1 3000 &
	pid=$!
	sleep 1
	enabled test_repl_c 0
	enabled test_relay 1
	not rmmod test_relay 2>/dev/null
	wait "$pid" || rc=$?
	[ "$rc" = 0 ]
	[ "$(relay_field result)" = -16 ]
	logged "<3>cannot apply patch module 'test_repl_c': task 'bash' (pid $pid) is inside the code of patch module 'test_relay'"
	# from outside, both work
	echo 1 >"$SYS/test_repl_c/enabled"
	enabled test_relay 0
	rmmod test_relay
	unload test_repl_c
	rmmod kpgen_test_relay
}
scenario initiator_inside_retiring_code_is_walked 90

core_refcnt() { local n; read -r n </sys/module/kpatch/refcnt; echo "$n"; }

# While ftrace holds one of the core's ftrace_ops, the core's code must stay: after a failed
# unregistration the handler stays registered (rightly, see unregister_failure_keeps_filters),
# and the core keeps a reference on itself until a later removal unregisters it.  On IBT kernels
# the ops that redirects the core's stubs to the kernel's internals is unregistered at the
# core's exit, which waits until ftrace lets it go.
core_stays_while_ftrace_holds_its_handler() {
	use_core faults
	[ "$(core_refcnt)" = 0 ]
	load cmdline_a
	echo unregister >"$PARAMS/fail_at"
	unload cmdline_a
	echo >"$PARAMS/fail_at"
	logged "<3>cannot unregister the ftrace handler (-16): it stays, with its filters, and redirects nothing"
	[ "$(core_refcnt)" = 1 ]
	expect_message "is in use" rmmod kpatch
	loaded kpatch
	load cmdline_b
	unload cmdline_b
	original_cmdline
	[ "$(core_refcnt)" = 0 ]
	[ -z "$(hooked)" ]
	if core_redirects; then
		echo redirect_unregister >"$PARAMS/fail_at"
		rmmod kpatch &
		local remover=$! rc=0
		loop_until 20 logged "<3>cannot unregister the redirect of the kernel's internals (-16): the core's exit waits for it"
		loaded kpatch
		echo >"$PARAMS/fail_at"
		wait "$remover" || rc=$?
		[ "$rc" = 0 ]
		not loaded kpatch
		[ "$(grep -c '^kpatch_stub_' "$TRACING/enabled_functions" || true)" = 0 ]
	else
		echo "figure: redirects of the kernel's internals: none on this kernel"
	fi
}
scenario core_stays_while_ftrace_holds_its_handler 90

sleeper_asleep() {
	local pid
	pid=$(pid_of kpgen_sleeper) || return 1
	in_stack "$pid" kpgen_test_target_sleep
}

# A module that began loading before the core is patched when it becomes live, after the
# activeness check, since its code has run.  A busy task there refuses the object, which sysfs
# shows (not "pending", for a loaded module), and the core tries again (busy_retries,
# busy_retry_ms) from a work item, not from the notifier; when the tries run out, the log says
# so and names the task; writing 1 to the patch's enabled tries again.
module_loaded_before_core_is_retried() {
	local loader rc=0
	use_core none
	insmod "$(ko kpgen_test_target)" init_sleeper=1 init_ms=5000 &
	loader=$!
	loop_until 15 sleeper_asleep
	use_core normal
	echo 1000 >"$PARAMS/busy_retries"
	echo 100 >"$PARAMS/busy_retry_ms"
	load test_busy
	function_state test_busy kpgen_test_target kpgen_test_target_sleep pending
	# live: the first try is refused, the core retries while the kthread sleeps
	loop_until 20 last_change_is ".* result=-16"
	loaded kpgen_test_target
	echo wake >/proc/kpgen_test_target
	wait "$loader" || rc=$?
	[ "$rc" = 0 ]
	loop_until 10 function_state test_busy kpgen_test_target kpgen_test_target_sleep active
	[[ $(kpatch_log) =~ "<6>applied patch module 'test_busy' to module 'kpgen_test_target' after "[1-9][0-9]*" retries" ]]
	echo sleep >/proc/kpgen_test_target
	[ "$(target_field last)" = 2 ]
	unload test_busy
	rmmod kpgen_test_target

	# without retries: refused, and said
	use_core none
	insmod "$(ko kpgen_test_target)" init_sleeper=1 init_ms=4000 &
	loader=$!
	loop_until 15 sleeper_asleep
	use_core normal
	load test_busy
	wait "$loader" || rc=$?
	[ "$rc" = 0 ]
	function_state test_busy kpgen_test_target kpgen_test_target_sleep refused
	[ "$(<"$SYS/test_busy/kpgen_test_target/patched")" = 0 ]
	logged "<3>patch module 'test_busy' cannot be applied to module 'kpgen_test_target', which began loading before the core: -16 (write 1 to enabled to try again)"
	expect_errno EBUSY write "$SYS/test_busy/enabled" 1
	function_state test_busy kpgen_test_target kpgen_test_target_sleep refused
	echo wake >/proc/kpgen_test_target
	echo 1 >"$SYS/test_busy/enabled"
	function_state test_busy kpgen_test_target kpgen_test_target_sleep active
	[ "$(<"$SYS/test_busy/kpgen_test_target/patched")" = 1 ]
	unload test_busy
	rmmod kpgen_test_target
}
scenario module_loaded_before_core_is_retried 120

# `rmmod -f` of an enabled patch while a reader sleeps inside its replacement for longer than
# the core's retries: a module's exit cannot refuse the unload, but it can wait.  The core takes
# the patch's functions out at once (no new call enters), then waits until the reader has left
# its code, naming it in the log, before the exit returns and the code is freed.
forced_unload_waits_for_tasks_inside() {
	local reader out
	use_core normal
	load kpgen_test_target
	load test_slow_value
	out=$(mktemp)
	cat /proc/kpgen_test_target >"$out" &
	reader=$!
	loop_until 10 in_stack "$reader" test_slow_value_value
	rmmod -f test_slow_value
	not loaded test_slow_value
	wait "$reader"
	grep -q " value=4 " "$out"
	rm -f "$out"
	[ "$(target_field value)" = 1 ]
	logged "<0>patch module 'test_slow_value' is being unloaded by force while enabled: taking its functions out"
	logged "<0>patch module 'test_slow_value': its functions are out, and its unload waits until no task is inside its code"
	mentioned "unload of patch module 'test_slow_value' waits for task 'cat' (pid $reader), inside its code"
	logged "<5>unloaded patch module 'test_slow_value'"
	not kernel_said "BUG|Oops|page fault|general protection"
	[ -z "$(hooked)" ]
	rmmod kpgen_test_target
}
scenario forced_unload_waits_for_tasks_inside 120

# `rmmod -f` while a task is on its way to the replacement (the test build parks it in the
# handler, after ftrace sent it there, past the forced unload's checked tries): once the
# functions are out, the task shows no frame of the module yet, so the unload must first wait
# for a tasks-RCU grace period, after which the task has arrived (and sleeps in the
# replacement) and is waited for like any other.
forced_unload_waits_for_a_task_on_its_way() {
	local reader out
	use_core faults
	load kpgen_test_target
	load test_slow_value sleep_ms=3000
	out=$(mktemp)
	echo 7000 >"$PARAMS/park_ms"
	echo kpgen_test_target_value >"$PARAMS/park_call"
	cat /proc/kpgen_test_target >"$out" &
	reader=$!
	loop_until 10 logged "<5>parked task 'cat' (pid $reader) on its way to the replacement of 'kpgen_test_target_value'"
	rmmod -f test_slow_value
	not loaded test_slow_value
	wait "$reader"
	grep -q " value=4 " "$out"
	rm -f "$out"
	echo 2000 >"$PARAMS/park_ms"
	[ "$(target_field value)" = 1 ]
	logged "<0>patch module 'test_slow_value': its functions are out, and its unload waits until no task is inside its code"
	not kernel_said "BUG|Oops|page fault|general protection"
	rmmod kpgen_test_target
}
scenario forced_unload_waits_for_a_task_on_its_way 120
