#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# The core never lets a task run code that is being freed, nor a change happen while a task is
# inside, or on its way into, code whose version changes.  Each scenario builds its window on
# purpose (a sleeping task, or the parking points of the test build), since a guest under TCG
# would rarely open it by chance.

# `sleep_in CMD FUNCTION`: starts a task writing CMD to /proc/kpgen_test_target and waits until
# its stack shows FUNCTION; sets SLEEPER.  Its output goes nowhere, so that it holds no pipe.
sleep_in() {
	bash -c "echo $1 > /proc/kpgen_test_target" </dev/null >/dev/null 2>&1 &
	SLEEPER=$!
	loop_until 15 in_stack "$SLEEPER" "$2"
}

# A replacement tail-calls a helper of the patch module, and a task sleeps in the helper: no
# frame of the replacement is on its stack, yet removing the patch would free the code it
# sleeps in.  The removal must wait for it.
removal_sees_tail_called_helper() {
	use_core normal
	load kpgen_test_target
	load test_tailcall
	sleep_in sleep test_tailcall_wait
	local sleeper=$SLEEPER
	# the replacement left no frame: it jumped to the helper
	not grep -q "test_tailcall_sleep" "/proc/$sleeper/stack"
	expect_errno EBUSY write "$SYS/test_tailcall/enabled" 0
	logged "<3>cannot remove patch module 'test_tailcall': task 'bash' (pid $sleeper) is inside the code of patch module 'test_tailcall'"
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
	local part=kpgen_test_target_cold.cold
	use_core normal
	load kpgen_test_target
	if ! grep -q "$part" /proc/kallsyms; then
		# this kernel's build splits no function (6.12: no .cold symbol in kallsyms at all):
		# the task sleeps in the function itself
		[ "$(grep -c '\.cold' /proc/kallsyms || true)" = 0 ]
		part=kpgen_test_target_cold
		echo "figure: cold parts: none on this kernel, the function itself checked"
	fi
	sleep_in cold "$part"
	local sleeper=$SLEEPER
	expect_errno EBUSY load test_cold
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
	local out
	use_core faults
	load kpgen_test_target
	load test_module_value
	[ "$(target_field value)" = 2 ]
	out=$(mktemp)
	echo 6000 >"$PARAMS/park_ms"
	echo kpgen_test_target_value >"$PARAMS/park_call"
	cat /proc/kpgen_test_target >"$out" &
	local reader=$!
	loop_until 10 logged "<5>parked task 'cat' (pid $reader) on its way to the replacement of 'kpgen_test_target_value'"
	expect_errno EBUSY load test_value_b
	logged "<3>cannot apply patch module 'test_value_b': task 'cat' (pid $reader) is inside function 'kpgen_test_target_value'"
	expect_errno EBUSY write "$SYS/test_module_value/enabled" 0
	logged "<3>cannot remove patch module 'test_module_value': task 'cat' (pid $reader) is inside function 'kpgen_test_target_value'"
	wait "$reader"
	grep -q " value=2 " "$out"
	rm -f "$out"
	echo 2000 >"$PARAMS/park_ms"
	load test_value_b
	[ "$(target_field value)" = 3 ]
	unload test_value_b
	[ "$(target_field value)" = 2 ]
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}
scenario task_on_its_way_blocks_changes 120

notifier_holds_target() {
	kernel_said "^<5>kpgen_test_notifier: holding module 'kpgen_test_target' for 4000 ms, then refusing it$"
}

# A module in the COMING state that the core has not seen come yet is not loaded for the core:
# its load may still fail in an earlier notifier, and the core would never hear of it again.
# Here a notifier holds kpgen_test_target coming, then fails it, while a patch of it loads.
coming_module_counts_once_seen() {
	local rc=0
	use_core normal
	insmod "$(ko kpgen_test_notifier)" refuse=kpgen_test_target delay_ms=4000
	insmod "$(ko kpgen_test_target)" 2>/dev/null &
	local loader=$!
	loop_until 10 notifier_holds_target
	load test_module_value
	enabled test_module_value 1
	not grep -q "kpgen_test_target_value" <<<"$(hooked)"
	wait "$loader" || rc=$?
	[ "$rc" != 0 ]
	not loaded kpgen_test_target
	rmmod kpgen_test_notifier
	# the filler takes the address the target had, so that it comes back elsewhere
	load kpgen_test_filler
	load kpgen_test_target
	[ "$(target_field value)" = 2 ]
	grep -q "^kpgen_test_target_value .*kpgen_test_target" <<<"$(hooked)"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	rmmod kpgen_test_filler
}
scenario coming_module_counts_once_seen 120

# The version the stress target answers now (0: the original).
stress_now() { tr ' ' '\n' </proc/kpgen_test_stress | sed -n 's/^now=//p'; }

# rmmod -f of an enabled patch while two threads call its function: the exit cannot refuse the
# unload, so the core takes the patch out first.  If tasks stay busy (the test build makes every
# check fail), its functions go at once and the unload waits until a check passes, so nothing
# runs the freed code.
forced_unload_takes_patch_out() {
	local final remover rc=0
	use_core faults
	load kpgen_test_stress
	load test_stress_a
	[ "$(stress_now)" = 1 ]
	rmmod -f test_stress_a
	not loaded test_stress_a
	logged "<0>patch module 'test_stress_a' is being unloaded by force while enabled: taking its functions out"
	not mentioned "forced patch module 'test_stress_a' out"
	[ "$(stress_now)" = 0 ]
	load test_stress_b
	[ "$(stress_now)" = 2 ]
	echo activeness >"$PARAMS/fail_at"
	rmmod -f test_stress_b &
	remover=$!
	loop_until 60 logged "<0>patch module 'test_stress_b': its functions are out, and its unload waits until no task is inside its code"
	# out, and the callers run the original, while the unload waits
	[ "$(stress_now)" = 0 ]
	loaded test_stress_b
	echo >"$PARAMS/fail_at"
	wait "$remover" || rc=$?
	[ "$rc" = 0 ]
	not loaded test_stress_b
	[ ! -e "$SYS/test_stress_b" ]
	[ "$(stress_now)" = 0 ]
	[ -z "$(hooked)" ]
	sleep 1
	rmmod kpgen_test_stress
	final=$(kernel_lines "kpgen_test_stress: calls=" | tail -n 1)
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
	use_core faults
	load cmdline_a
	load meminfo
	echo filter_remove >"$PARAMS/fail_at"
	unload meminfo
	echo >"$PARAMS/fail_at"
	logged "<5>injected failure at 'filter_remove'"
	not grep -q "^meminfo_proc_show" <<<"$(hooked)"
	grep -q "^cmdline_proc_show" <<<"$(hooked)"
	not visible meminfo
	visible cmdline_a
	unload cmdline_a
	[ -z "$(hooked)" ]
}
scenario filter_batch_falls_back

# A module's __init code is freed once it has loaded: refused like vmlinux's.
module_init_function_refused() {
	use_core normal
	load test_module_init
	expect_errno EINVAL load kpgen_test_target
	logged "<3>function 'kpgen_test_init' is __init code of module 'kpgen_test_target', freed once it has loaded: it cannot be patched"
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_module_init' cannot be applied to it (-22)"
	not loaded kpgen_test_target
	unload test_module_init
	load kpgen_test_target
	# once the module is live its init symbols are gone
	expect_errno ENOENT load test_module_init
	logged "<3>function 'kpgen_test_init' not found in kpgen_test_target"
	[ ! -e "$SYS/test_module_init" ]
	rmmod kpgen_test_target
}
scenario module_init_function_refused

# When ftrace refuses to unregister the handler, its filters stay: emptied, the filter of a
# registered IPMODIFY ops would hook every function.  The next removal unregisters it.
unregister_failure_keeps_filters() {
	use_core faults
	load cmdline_a
	echo unregister >"$PARAMS/fail_at"
	unload cmdline_a
	echo >"$PARAMS/fail_at"
	logged "<3>cannot unregister the ftrace handler (-16): it stays, with its filters, and redirects nothing"
	grep -q "^cmdline_proc_show" <<<"$(hooked)"
	[ "$(hooked | wc -l)" = 1 ]
	original_cmdline
	load cmdline_b
	visible cmdline_b
	unload cmdline_b
	original_cmdline
	[ -z "$(hooked)" ]
}
scenario unregister_failure_keeps_filters

# While a patch load waits for a busy task, with retries, other module loads go on: the core
# drops its mutex between tries.
retries_do_not_block_module_loads() {
	use_core normal
	load kpgen_test_target
	start_sleeper
	local sleeper=$SLEEPER
	echo 100 >"$PARAMS/busy_retries"
	echo 100 >"$PARAMS/busy_retry_ms"
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
	echo 0 >"$PARAMS/busy_retries"
	echo 100 >"$PARAMS/busy_retry_ms"
	[[ $(kpatch_log) =~ "<6>applied patch module 'test_busy' after "[1-9][0-9]*" retries" ]]
	unload test_busy
	rmmod kpgen_test_filler
	rmmod kpgen_test_target
}
scenario retries_do_not_block_module_loads 120

# An NMI handler may run a hooked function while stop_machine() is halfway through the hash
# changes: it must see the old version of every function of the change, and the change is
# then undone (the test build runs the NMI lookup at that point).
nmi_never_sees_half_switch() {
	use_core faults
	echo nmi >"$PARAMS/fail_at"
	expect_errno EBUSY load test_pair
	echo >"$PARAMS/fail_at"
	logged "<5>an NMI halfway through the switch of 'cmdline_proc_show' runs the version before it"
	logged "<5>an NMI halfway through the switch of 'meminfo_proc_show' runs the version before it"
	logged "<3>cannot apply patch module 'test_pair': an NMI handler ran a hooked function during the switch"
	not loaded test_pair
	[ ! -e "$SYS/test_pair" ]
	[ -z "$(hooked)" ]
	original_cmdline
	load test_pair
	grep -q "^kpgen test pair: cmdline" /proc/cmdline
	grep -q "^kpgen test pair: meminfo" /proc/meminfo
	unload test_pair
	original_cmdline
}
scenario nmi_never_sees_half_switch

# On IBT kernels the core never calls the kernel's unexported internals through a pointer (they
# have no ENDBR, and an indirect call would fault on a CPU that enforces IBT): its pointers lead
# to stubs of its own, which ftrace sends to the internals (seven, and two for klp relocations:
# klp_apply_section_relocs() and clear_relocate_add()).  Elsewhere it calls them directly.
internals_reached_without_pointer_calls() {
	local stubs
	stubs=$(grep -c '^kpatch_stub_' "$TRACING/enabled_functions" || true)
	if grep -qx "CONFIG_X86_KERNEL_IBT=y" "/boot/config-$(uname -r)"; then
		[ "$stubs" = 9 ]
		use_core none
		[ "$(grep -c '^kpatch_stub_' "$TRACING/enabled_functions" || true)" = 0 ]
		use_core normal
		contract cmdline_a
	else
		[ "$stubs" = 0 ]
	fi
}
scenario internals_reached_without_pointer_calls
