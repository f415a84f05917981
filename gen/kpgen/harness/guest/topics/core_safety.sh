# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=bash
#
# Guest scenarios: the core never lets a task run code that is being freed, nor a change
# happen while a task is inside, or on its way into, code whose version changes.  Each one
# builds its window on purpose (a sleeping task, or the test build's parking points), since a
# guest under TCG would rarely open it by chance.  Sourced by the guest runner.

# Uses the core named by $1 (normal or faults) for the rest of the scenario; the other is
# unloaded.  The normal core is loaded again when the scenario ends.
cs_use_core() {
	local want=$1 have=none
	if loaded kpatch; then
		if [ -e /sys/module/kpatch/parameters/fail_at ]; then have=faults; else have=normal; fi
	fi
	[ "$have" = "$want" ] && return 0
	if [ "$have" != none ]; then rmmod kpatch; fi
	if [ "$want" = faults ]; then insmod "$(ko kpatch_faults)"; else load kpatch; fi
}

# Starts a task writing $1 to /proc/kpgen_test_target and waits until its stack shows $2;
# sets CS_PID.  Its output goes nowhere, so that it cannot hold a scenario's pipe open.
cs_sleeper() {
	bash -c "echo $1 > /proc/kpgen_test_target" </dev/null >/dev/null 2>&1 &
	CS_PID=$!
	for _ in $(seq 150); do
		grep -q "$2" "/proc/$CS_PID/stack" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "the task writing '$1' never showed $2 on its stack" >&2
	cat "/proc/$CS_PID/stack" >&2
	return 1
}

# Kernel log lines of module $1 (raw, "<level>[time] $1: text") since the scenario began.
cs_module_log() {
	log_since_mark | sed -n "s/^<\([0-9]*\)>\[[^]]*\] $1: /<\1>/p"
}

# Runs "$@", which must fail with EBUSY.
cs_ebusy() {
	local out
	if out=$("$@" 2>&1); then
		echo "expected EBUSY, but it succeeded: $*" >&2
		return 1
	fi
	case $out in
	*"Device or resource busy"*) return 0 ;;
	esac
	echo "expected EBUSY from: $*, got: $out" >&2
	return 1
}

# A replacement tail-calls a helper of the patch module, and a task sleeps in the helper: no
# frame of the replacement is on its stack, yet removing the patch would free the code it
# sleeps in.  The removal must wait for it.
removal_sees_tail_called_helper() {
	cs_use_core normal
	load kpgen_test_target
	load test_tailcall
	cs_sleeper sleep test_tailcall_wait
	local sleeper=$CS_PID
	# the replacement left no frame: it jumped to the helper
	not grep -q "test_tailcall_sleep" "/proc/$sleeper/stack"
	cs_ebusy bash -c "echo 0 > $SYS/test_tailcall/enabled"
	logged "<3>cannot remove patch module 'test_tailcall': task 'bash' (pid $sleeper) is inside its code"
	enabled test_tailcall 1
	not rmmod test_tailcall 2>/dev/null
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	[ "$(target_field last)" = 3 ]
	unload test_tailcall
	not loaded test_tailcall
	rmmod kpgen_test_target
}
scenario removal_sees_tail_called_helper

# A task sleeps in the part gcc split off the original (kpgen_test_target_cold.cold), where
# the function's own range does not reach: applying a patch of it must wait.
apply_sees_cold_part() {
	cs_use_core normal
	load kpgen_test_target
	grep -q "kpgen_test_target_cold.cold" /proc/kallsyms
	cs_sleeper cold "kpgen_test_target_cold.cold"
	local sleeper=$CS_PID
	cs_ebusy insmod "$(ko test_cold)"
	logged "<3>cannot apply patch module 'test_cold': task 'bash' (pid $sleeper) is inside function 'kpgen_test_target_cold'"
	not loaded test_cold
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	[ "$(target_field last)" = 5 ]
	load test_cold
	[ "$(target_field cold)" = 7 ]
	unload test_cold
	[ "$(target_field cold)" = 1 ]
	rmmod kpgen_test_target
}
scenario apply_sees_cold_part

# A task that the handler has sent on its way to a replacement, preempted before it arrives
# (in the test build: parked in the handler), shows only the original's ftrace call on its
# stack.  Neither stacking a newer patch nor removing the one it heads for may happen until
# it has arrived and left: the first would let it run the old version after the switch, the
# second would free the code it is about to run.
task_on_its_way_blocks_changes() {
	local params=/sys/module/kpatch/parameters out
	cs_use_core faults
	load kpgen_test_target
	load test_module_value
	[ "$(target_field value)" = 2 ]
	out=$(mktemp)
	echo 6000 >"$params/park_ms"
	echo kpgen_test_target_value >"$params/park_call"
	cat /proc/kpgen_test_target >"$out" &
	local reader=$!
	loop_until 10 logged "<5>parked task 'cat' (pid $reader) on its way to the replacement of 'kpgen_test_target_value'"
	cs_ebusy insmod "$(ko test_value_b)"
	logged "<3>cannot apply patch module 'test_value_b': task 'cat' (pid $reader) is inside function 'kpgen_test_target_value'"
	cs_ebusy bash -c "echo 0 > $SYS/test_module_value/enabled"
	logged "<3>cannot remove patch module 'test_module_value': task 'cat' (pid $reader) is inside function 'kpgen_test_target_value'"
	wait "$reader"
	grep -q " value=2 " "$out"
	rm -f "$out"
	echo 2000 >"$params/park_ms"
	load test_value_b
	[ "$(target_field value)" = 3 ]
	unload test_value_b
	[ "$(target_field value)" = 2 ]
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}
scenario task_on_its_way_blocks_changes 120

cs_notifier_holds_target() {
	cs_module_log kpgen_test_notifier |
		grep -xF "<5>holding module 'kpgen_test_target' for 4000 ms, then refusing it" >/dev/null
}

# A module in the COMING state that the core has not seen come yet is not loaded for the core:
# its load may still fail in an earlier notifier, and the core would never hear of it again.
# Here a notifier holds kpgen_test_target coming, then fails it, while a patch of it loads.
coming_module_counts_once_seen() {
	local rc=0
	cs_use_core normal
	insmod "$(ko kpgen_test_notifier)" refuse=kpgen_test_target delay_ms=4000
	insmod "$(ko kpgen_test_target)" 2>/dev/null &
	local loader=$!
	loop_until 10 cs_notifier_holds_target
	load test_module_value
	enabled test_module_value 1
	not grep -q "kpgen_test_target_value" "$TRACING/enabled_functions"
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	not loaded kpgen_test_target
	rmmod kpgen_test_notifier
	# the filler takes the address the target had, so that it comes back elsewhere
	load kpgen_test_filler
	load kpgen_test_target
	[ "$(target_field value)" = 2 ]
	grep -q "^kpgen_test_target_value .*kpgen_test_target" "$TRACING/enabled_functions"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	rmmod kpgen_test_filler
}
scenario coming_module_counts_once_seen 120

# The stress threads answer the version they ran: after a forced unload, only the original.
cs_stress_now() { tr ' ' '\n' </proc/kpgen_test_stress | sed -n 's/^now=//p'; }

# rmmod -f of an enabled patch while two threads call its function: the exit cannot refuse the
# unload, so the core takes the patch out first, by force if tasks stay busy (the test build
# makes every check fail), and nothing runs the freed code.
forced_unload_takes_patch_out() {
	local params=/sys/module/kpatch/parameters final
	cs_use_core faults
	load kpgen_test_stress
	load test_stress_a
	[ "$(cs_stress_now)" = 1 ]
	rmmod -f test_stress_a
	not loaded test_stress_a
	logged "<0>patch module 'test_stress_a' is being unloaded by force while enabled: taking its functions out"
	not mentioned "forced patch module 'test_stress_a' out"
	[ "$(cs_stress_now)" = 0 ]
	load test_stress_b
	[ "$(cs_stress_now)" = 2 ]
	echo activeness >"$params/fail_at"
	rmmod -f test_stress_b
	echo >"$params/fail_at"
	not loaded test_stress_b
	[ ! -e "$SYS/test_stress_b" ]
	logged "<0>forced patch module 'test_stress_b' out while a task may still run its code (see above): the kernel may crash"
	[ "$(cs_stress_now)" = 0 ]
	[ -z "$(cat "$TRACING/enabled_functions")" ]
	sleep 1
	rmmod kpgen_test_stress
	final=$(cs_module_log kpgen_test_stress | sed -n 's/.*\(calls=.*\)$/\1/p' | tail -n 1)
	case " $final " in
	*" bad=0 "*) ;;
	*) echo "stress threads saw invalid answers: $final" >&2; return 1 ;;
	esac
	[ "$(cat /sys/module/kpatch/refcnt)" = 0 ]
}
scenario forced_unload_takes_patch_out 180

# ftrace drops a batch of filters as a whole, and fails it as a whole on one address it no
# longer knows: the others must still go.
filter_batch_falls_back() {
	local params=/sys/module/kpatch/parameters
	cs_use_core faults
	load cmdline_a
	load meminfo
	echo filter_remove >"$params/fail_at"
	unload meminfo
	echo >"$params/fail_at"
	logged "<5>injected failure at 'filter_remove'"
	not grep -q "^meminfo_proc_show" "$TRACING/enabled_functions"
	grep -q "^cmdline_proc_show" "$TRACING/enabled_functions"
	not visible meminfo
	visible cmdline_a
	unload cmdline_a
	[ -z "$(cat "$TRACING/enabled_functions")" ]
}
scenario filter_batch_falls_back

# A module's __init code is freed once it has loaded: refused like vmlinux's.
module_init_function_refused() {
	cs_use_core normal
	load test_module_init
	not load kpgen_test_target 2>/dev/null
	logged "<3>function 'kpgen_test_init' is __init code of module 'kpgen_test_target', freed once it has loaded: it cannot be patched"
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_module_init' cannot be applied to it (-22)"
	not loaded kpgen_test_target
	unload test_module_init
	load kpgen_test_target
	# once the module is live its init symbols are gone
	not load test_module_init 2>/dev/null
	logged "<3>function 'kpgen_test_init' not found in kpgen_test_target"
	[ ! -e "$SYS/test_module_init" ]
	rmmod kpgen_test_target
}
scenario module_init_function_refused

# When ftrace refuses to unregister the handler, its filters stay: emptied, the filter of a
# registered IPMODIFY ops would hook every function.  The next removal unregisters it.
unregister_failure_keeps_filters() {
	local params=/sys/module/kpatch/parameters
	cs_use_core faults
	load cmdline_a
	echo unregister >"$params/fail_at"
	unload cmdline_a
	echo >"$params/fail_at"
	logged "<3>cannot unregister the ftrace handler (-16): it stays, with its filters, and redirects nothing"
	grep -q "^cmdline_proc_show" "$TRACING/enabled_functions"
	[ "$(wc -l <"$TRACING/enabled_functions")" = 1 ]
	original_cmdline
	load cmdline_b
	visible cmdline_b
	unload cmdline_b
	original_cmdline
	[ -z "$(cat "$TRACING/enabled_functions")" ]
}
scenario unregister_failure_keeps_filters

# While a patch load waits for a busy task, with retries, other module loads go on: the core
# drops its mutex between tries.
retries_do_not_block_module_loads() {
	local params=/sys/module/kpatch/parameters
	cs_use_core normal
	load kpgen_test_target
	start_sleeper
	local sleeper=${SLEEPER:?}
	echo 100 >"$params/busy_retries"
	echo 100 >"$params/busy_retry_ms"
	insmod "$(ko test_busy)" &
	local loader=$!
	sleep 1
	timeout 5 insmod "$(ko kpgen_test_filler)"
	loaded kpgen_test_filler
	# still coming: its init waits for the sleeper
	not grep -q "^test_busy .* Live " /proc/modules
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	wait "$loader"
	echo 0 >"$params/busy_retries"
	echo 100 >"$params/busy_retry_ms"
	kpatch_log | grep -E "^<6>applied patch module 'test_busy' after [1-9][0-9]* retries$" >/dev/null
	unload test_busy
	rmmod kpgen_test_filler
	rmmod kpgen_test_target
}
scenario retries_do_not_block_module_loads 120

# An NMI handler may run a hooked function while stop_machine() is halfway through the hash
# changes: it must see the old version of every function of the change, and the change is
# then undone (the test build runs the NMI lookup at that point).
nmi_never_sees_half_switch() {
	local params=/sys/module/kpatch/parameters
	cs_use_core faults
	echo nmi >"$params/fail_at"
	cs_ebusy insmod "$(ko test_pair)"
	echo >"$params/fail_at"
	logged "<5>an NMI halfway through the switch of 'cmdline_proc_show' runs the version before it"
	logged "<5>an NMI halfway through the switch of 'meminfo_proc_show' runs the version before it"
	logged "<3>cannot apply patch module 'test_pair': an NMI handler ran a hooked function during the switch"
	not loaded test_pair
	[ ! -e "$SYS/test_pair" ]
	[ -z "$(cat "$TRACING/enabled_functions")" ]
	original_cmdline
	load test_pair
	grep -q "^kpgen test pair: cmdline" /proc/cmdline
	grep -q "^kpgen test pair: meminfo" /proc/meminfo
	unload test_pair
	original_cmdline
}
scenario nmi_never_sees_half_switch
