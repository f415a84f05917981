#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Loading: the core alone, patch modules without it, the contract every sample keeps, double,
# foreign and concurrent loads, a load that fails cleanly, the notices, the K taint.

# Succeeds when the sample's replacement is what the kernel runs now.
# (a line of the file begins with the text: `starts_a_line TEXT FILE`, builtins only)
starts_a_line() {
	local text
	text=$(<"$2") || return 1
	[[ $'\n'$text == *$'\n'"$1"* ]]
}

visible() {
	local text
	case $1 in
	cmdline_a | cmdline_b) starts_a_line "kpgen sample $1:" /proc/cmdline ;;
	# the replacement prints the real command line through an unexported symbol
	cmdline_ksym)
		text=$(</proc/cmdline) || return 1
		[[ $'\n'$text == *$'\n'"kpgen sample cmdline_ksym: "*virtme* ]]
		;;
	meminfo) starts_a_line "kpgen sample meminfo:" /proc/meminfo ;;
	*) fatal "visible: no check for $1" ;;
	esac
}

original_cmdline() { starts_a_line virtme /proc/cmdline; }

# The contract every sample keeps: its check fails before load, passes after, fails after unload.
contract() {
	not visible "$1"
	load "$1"
	visible "$1"
	enabled "$1" 1
	logged "<5>loaded patch module '$1'"
	unload "$1"
	not visible "$1"
	not loaded "$1"
	[ ! -e "$SYS/$1" ]
}

patch_without_core_refused() {
	use_core none
	expect_errno ENOENT load cmdline_a
	not loaded cmdline_a
	[ ! -e "$SYS" ]
	kernel_said "^<[0-7]>cmdline_a: Unknown symbol kpatch_register \(err -2\)$"
}

core_loads() {
	use_core none
	load kpatch
	logged "<5>core loaded"
	[ -d "$SYS" ]
	no_patch_nodes
	last_change_is "functions=0 tasks=0 prechecked=0 unwound=0 trusted=0 tries=0 pause_ns=0 walked=none result=0"
}

rmmod_active_refused() {
	load cmdline_a
	expect_message "Module cmdline_a is in use" rmmod cmdline_a
	loaded cmdline_a
	enabled cmdline_a 1
	visible cmdline_a
	unload cmdline_a
	not loaded cmdline_a
}

double_load_refused() {
	load cmdline_a
	expect_errno EEXIST load cmdline_a
	visible cmdline_a
	enabled cmdline_a 1
	unload cmdline_a
}

# The host builds kpgen_test_target for another kernel of the matrix into foreign/.
foreign_module_refused() {
	expect_errno ENOEXEC insmod "$(ko kpgen_test_target foreign)"
	not loaded kpgen_test_target
	no_patch_nodes
	# refused on its version magic, on the layout of struct module (6.1), or, before either is
	# read, on the size of its struct module (6.4 and later check that first)
	kernel_said "kpgen_test_target: (version magic '[^']*' should be '[^']*'|disagrees about version of symbol module_layout|\.gnu\.linkonce\.this_module section size must match)"
}

concurrent_insmod() {
	local m pids=()
	for m in cmdline_a cmdline_b cmdline_ksym meminfo; do
		load "$m" &
		pids+=($!)
	done
	for m in "${pids[@]}"; do
		wait "$m"
	done
	for m in cmdline_a cmdline_b cmdline_ksym meminfo; do
		loaded "$m"
		enabled "$m" 1
	done
	visible meminfo
	# whichever of the three cmdline patches registered last is the one shown
	grep -Eq "^kpgen sample cmdline_(a|b|ksym):" /proc/cmdline
	for m in meminfo cmdline_ksym cmdline_b cmdline_a; do
		unload "$m"
	done
	original_cmdline
	not visible meminfo
}

missing_target_fails_cleanly() {
	local before
	before=$(hooked)
	expect_errno ENOENT load test_missing
	not loaded test_missing
	[ ! -e "$SYS/test_missing" ]
	[ "$(hooked)" = "$before" ]
	logged "<3>function 'kpgen_no_such_function' not found in vmlinux"
	logged "<3>cannot load patch module 'test_missing': -2"
	not mentioned "loaded patch module 'test_missing'"
}

notice_messages_in_order() {
	local got want
	load cmdline_a
	echo 0 >"$SYS/cmdline_a/enabled"
	echo 1 >"$SYS/cmdline_a/enabled"
	# rewriting the current state changes nothing and logs nothing
	echo 1 >"$SYS/cmdline_a/enabled"
	unload cmdline_a
	got=$(kpatch_log | grep "patch module 'cmdline_a'")
	want=$(printf '%s\n' \
		"<5>loaded patch module 'cmdline_a'" \
		"<5>disabled patch module 'cmdline_a'" \
		"<5>enabled patch module 'cmdline_a'" \
		"<5>disabled patch module 'cmdline_a'" \
		"<5>unloaded patch module 'cmdline_a'")
	if [ "$got" != "$want" ]; then
		printf 'got:\n%s\nwant:\n%s\n' "$got" "$want" >&2
		return 1
	fi
}

core_unloads_clean() {
	load cmdline_a
	unload cmdline_a
	rmmod kpatch
	logged "<5>core unloaded"
	[ ! -e "$SYS" ]
	[ -z "$(hooked)" ]
}

scenario patch_without_core_refused
scenario core_loads
scenario cmdline_a_contract -- contract cmdline_a
scenario cmdline_b_contract -- contract cmdline_b
scenario cmdline_ksym_contract -- contract cmdline_ksym
scenario meminfo_contract -- contract meminfo
scenario rmmod_active_refused
scenario double_load_refused
scenario foreign_module_refused
scenario concurrent_insmod
scenario missing_target_fails_cleanly
scenario notice_messages_in_order
scenario core_unloads_clean
