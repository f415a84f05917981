#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# What shipped live patches need: callbacks per object, shadow variables, cumulative replace,
# forced functions, and the sysfs files that show an object's and a function's state.

# The callbacks test_callbacks logged since the scenario began, one "OBJECT CALLBACK" a line.
callbacks_logged() {
	local log
	log=$(scenario_log) || return 1
	sed -n 's/^<6>test_callbacks: //p' <<<"$log"
}

# `callbacks_are LINE...`: exactly these callbacks ran since the scenario began, in this order.
callbacks_are() {
	local got want
	got=$(callbacks_logged) || return 1
	want=$(printf '%s\n' "$@")
	if [ "$got" != "$want" ]; then
		printf 'callbacks ran:\n%s\nexpected:\n%s\n' "$got" "$want" >&2
		return 1
	fi
}

# `function_state PATCH OBJECT FUNCTION STATE`: /sys/kernel/kpatch/PATCH/functions says so.
function_state() {
	grep -qxF "$2 $3,0 $4" "$SYS/$1/functions" || {
		echo "$SYS/$1/functions:" >&2
		cat "$SYS/$1/functions" >&2
		return 1
	}
}

patched_is() { [ "$(cat "$SYS/$1/$2/patched")" = "$3" ]; }

version_patched() { grep -q "^kpgen test callbacks" /proc/version; }

# Callbacks run in the order of the objects, around one switch; a module's as it comes and goes;
# the patch loaded before and after the module.
callbacks_run_in_order() {
	load kpgen_test_target
	load test_callbacks
	callbacks_are "vmlinux pre_patch" "kpgen_test_target pre_patch" \
		"vmlinux post_patch" "kpgen_test_target post_patch"
	version_patched
	[ "$(target_field value)" = 4 ]
	patched_is test_callbacks vmlinux 1
	patched_is test_callbacks kpgen_test_target 1
	function_state test_callbacks vmlinux version_proc_show active
	function_state test_callbacks kpgen_test_target kpgen_test_target_value active
	rmmod kpgen_test_target
	patched_is test_callbacks kpgen_test_target 0
	function_state test_callbacks kpgen_test_target kpgen_test_target_value pending
	load kpgen_test_target
	[ "$(target_field value)" = 4 ]
	write "$SYS/test_callbacks/enabled" 0
	patched_is test_callbacks vmlinux 0
	function_state test_callbacks vmlinux version_proc_show disabled
	write "$SYS/test_callbacks/enabled" 1
	unload test_callbacks
	callbacks_are "vmlinux pre_patch" "kpgen_test_target pre_patch" \
		"vmlinux post_patch" "kpgen_test_target post_patch" \
		"kpgen_test_target pre_unpatch" "kpgen_test_target post_unpatch" \
		"kpgen_test_target pre_patch" "kpgen_test_target post_patch" \
		"vmlinux pre_unpatch" "kpgen_test_target pre_unpatch" \
		"vmlinux post_unpatch" "kpgen_test_target post_unpatch" \
		"vmlinux pre_patch" "kpgen_test_target pre_patch" \
		"vmlinux post_patch" "kpgen_test_target post_patch" \
		"vmlinux pre_unpatch" "kpgen_test_target pre_unpatch" \
		"vmlinux post_unpatch" "kpgen_test_target post_unpatch"
	not version_patched
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}
scenario callbacks_run_in_order

# The patch first, the module later: the module's callbacks run as it loads.
callbacks_of_a_module_loaded_later() {
	load test_callbacks
	patched_is test_callbacks kpgen_test_target 0
	load kpgen_test_target
	patched_is test_callbacks kpgen_test_target 1
	[ "$(target_field value)" = 4 ]
	rmmod kpgen_test_target
	unload test_callbacks
	callbacks_are "vmlinux pre_patch" "vmlinux post_patch" \
		"kpgen_test_target pre_patch" "kpgen_test_target post_patch" \
		"kpgen_test_target pre_unpatch" "kpgen_test_target post_unpatch" \
		"vmlinux pre_unpatch" "vmlinux post_unpatch"
}
scenario callbacks_of_a_module_loaded_later

# A pre-patch callback that refuses: the load (or the module's load) fails, nothing is left, and
# the objects whose pre-patch callback had succeeded get their post-unpatch callback.
pre_patch_refusal_leaves_nothing() {
	local before
	before=$(hooked)
	expect_errno EPERM load test_callbacks refuse=vmlinux
	logged "<3>pre-patch callback of patch module 'test_callbacks' refused object 'vmlinux': -1"
	not loaded test_callbacks
	[ ! -e "$SYS/test_callbacks" ]
	load kpgen_test_target
	expect_errno EPERM load test_callbacks refuse=kpgen_test_target
	not loaded test_callbacks
	[ "$(hooked)" = "$before" ]
	not version_patched
	rmmod kpgen_test_target
	# loaded first, the patch refuses the module
	load test_callbacks refuse=kpgen_test_target
	expect_errno EPERM load kpgen_test_target
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_callbacks' cannot be applied to it (-1)"
	not loaded kpgen_test_target
	version_patched
	unload test_callbacks
	callbacks_are "vmlinux pre_patch" \
		"vmlinux pre_patch" "kpgen_test_target pre_patch" "vmlinux post_unpatch" \
		"vmlinux pre_patch" "vmlinux post_patch" "kpgen_test_target pre_patch" \
		"vmlinux pre_unpatch" "vmlinux post_unpatch"
}
scenario pre_patch_refusal_leaves_nothing

# A shadow variable adds a read count to a live object: it survives a disable and an enable, is
# freed (its destructor runs) when the patch module unloads, and an allocation that fails is
# handled.
shadow_variable_lives_with_the_patch() {
	load kpgen_test_target
	load test_shadow
	[ "$(target_field value)" = 1001 ]
	[ "$(target_field value)" = 1002 ]
	write "$SYS/test_shadow/enabled" 0
	[ "$(target_field value)" = 1 ]
	write "$SYS/test_shadow/enabled" 1
	[ "$(target_field value)" = 1003 ]
	unload test_shadow
	kernel_said "^<6>test_shadow: freed a read count of 3$"
	[ "$(target_field value)" = 1 ]
	load test_shadow
	[ "$(target_field value)" = 1001 ]
	unload test_shadow
	load test_shadow fail_ctor=1
	[ "$(target_field value)" = 999 ]
	[ "$(target_field value)" = 999 ]
	unload test_shadow
	[ "$(kernel_lines "test_shadow: freed" | wc -l)" = 2 ]
	rmmod kpgen_test_target
}
scenario shadow_variable_lives_with_the_patch

replaced() { grep -q "^kpgen replace: $2" "$1"; }

# A cumulative patch takes over A (cmdline, meminfo) and B (cmdline) in one switch: cmdline and
# version answer C, meminfo the original; A and B are disabled, without their callbacks, and can
# be removed; disabling C restores the originals.
replace_takes_over_in_one_switch() {
	load test_repl_a
	load test_repl_b
	replaced /proc/cmdline B
	replaced /proc/meminfo A
	load test_repl_c
	replaced /proc/cmdline C
	replaced /proc/version C
	grep -q "^MemTotal:" /proc/meminfo
	last_change_is "functions=5 tasks=[1-9][0-9]* prechecked=[1-9][0-9]* unwound=[1-9][0-9]* trusted=[0-9]+ tries=1 pause_ns=[1-9][0-9]* walked=moved result=0"
	enabled test_repl_a 0
	enabled test_repl_b 0
	enabled test_repl_c 1
	logged "<5>patch module 'test_repl_a' replaced by 'test_repl_c'"
	logged "<5>patch module 'test_repl_b' replaced by 'test_repl_c'"
	not kernel_said "A post_unpatch"
	[ "$(kernel_lines "test_repl_c: C p" | sed 's/^<6>test_repl_c: //')" = "$(printf 'C pre_patch\nC post_patch')" ]
	function_state test_repl_a vmlinux cmdline_proc_show disabled
	function_state test_repl_c vmlinux cmdline_proc_show active
	rmmod test_repl_a
	rmmod test_repl_b
	replaced /proc/cmdline C
	unload test_repl_c
	original_cmdline
	grep -q "^Linux version" /proc/version
	grep -q "^MemTotal:" /proc/meminfo
}
scenario replace_takes_over_in_one_switch

# force = true skips the activeness check for that function only: it applies while a task
# sleeps in the original, with a warning and the K taint; but while a task sleeps in its own
# code, the patch cannot be removed.
force_skips_only_its_own_check() {
	local first second
	load kpgen_test_target
	start_sleeper
	first=$SLEEPER
	load test_force
	logged "<4>function 'kpgen_test_target_sleep' of patch module 'test_force' was applied without the activeness check (force)"
	tainted K
	bash -c 'echo sleep > /proc/kpgen_test_target' </dev/null >/dev/null 2>&1 &
	second=$!
	loop_until 10 in_stack "$second" test_force_sleep
	expect_errno EBUSY write "$SYS/test_force/enabled" 0
	logged "<3>cannot remove patch module 'test_force': task 'bash' (pid $second) is inside the code of patch module 'test_force'"
	echo wake >/proc/kpgen_test_target
	wait "$first" "$second"
	unload test_force
	rmmod kpgen_test_target
}
scenario force_skips_only_its_own_check

reads_are() { grep -qx "kpgen sample version_reads: read $1 times" /proc/version; }

# The shadow variable sample: /proc/version counts its reads in a shadow variable of a live
# object; the count survives a disable and an enable, and is freed, with its destructor, on
# unload.  Its check fails before the load, passes after, and fails after the unload.
shadow_sample_counts_reads() {
	not grep -q "^kpgen sample version_reads:" /proc/version
	load version_reads
	reads_are 1
	reads_are 2
	grep -q "^Linux version $(uname -r) " <(sed -n 2p /proc/version)
	write "$SYS/version_reads/enabled" 0
	not grep -q "^kpgen sample version_reads:" /proc/version
	write "$SYS/version_reads/enabled" 1
	reads_are 4
	unload version_reads
	kernel_said "^<6>version_reads: /proc/version was read 4 times$"
	not grep -q "^kpgen sample version_reads:" /proc/version
}
scenario shadow_sample_counts_reads
