#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Living with other ftrace users: the function tracer, kprobes with and without a post handler,
# upstream livepatch, and kernel.ftrace_enabled.

FTRACE_REFUSED="<3>cannot register the ftrace handler: ftrace is disabled (kernel.ftrace_enabled), or another ftrace user already redirects one of the functions"

coexists_with_function_tracer() {
	local trace
	load cmdline_a
	echo cmdline_proc_show >"$TRACING/set_ftrace_filter"
	echo cmdline_a_proc_show >>"$TRACING/set_ftrace_filter"
	echo >"$TRACING/trace"
	echo function >"$TRACING/current_tracer"
	visible cmdline_a
	# read the trace before switching the tracer off, which clears it
	trace=$(cat "$TRACING/trace")
	echo nop >"$TRACING/current_tracer"
	echo >"$TRACING/set_ftrace_filter"
	grep -q " cmdline_proc_show <-" <<<"$trace"
	grep -q " cmdline_a_proc_show <-" <<<"$trace"
	visible cmdline_a
	unload cmdline_a
}

coexists_with_kprobe_event() {
	local trace
	load cmdline_a
	echo 'p:kprobes/kpgen_kp cmdline_proc_show' >>"$TRACING/kprobe_events"
	echo >"$TRACING/trace"
	echo 1 >"$TRACING/events/kprobes/kpgen_kp/enable"
	visible cmdline_a
	trace=$(cat "$TRACING/trace")
	echo 0 >"$TRACING/events/kprobes/kpgen_kp/enable"
	echo '-:kprobes/kpgen_kp' >>"$TRACING/kprobe_events"
	# at the function's first instruction, or just past its ENDBR on IBT kernels
	grep -Eq "kpgen_kp: \(cmdline_proc_show\+0x(0|4)/" <<<"$trace"
	unload cmdline_a
}

kprobe_post_handler_refused() {
	load cmdline_a
	# the kprobe fails with EBUSY while the patch is active
	expect_errno EBUSY load kpgen_test_kprobe
	kernel_said "^<3>kpgen_test_kprobe: cannot register a kprobe on cmdline_proc_show: -16$"
	not loaded kpgen_test_kprobe
	visible cmdline_a
	unload cmdline_a
	# loaded after the kprobe, the patch fails to load
	load kpgen_test_kprobe
	expect_errno EBUSY load cmdline_a
	logged "$FTRACE_REFUSED"
	not loaded cmdline_a
	rmmod kpgen_test_kprobe
	contract cmdline_a
}

livepatch_conflict_refused() {
	load cmdline_a
	# klp_enable_patch() fails while the kpgen patch is active
	expect_errno EBUSY load kpgen_test_klp
	not loaded kpgen_test_klp
	[ ! -e "$LIVEPATCH/kpgen_test_klp" ]
	visible cmdline_a
	unload cmdline_a
	# the kpgen patch fails to load while the livepatch is active
	load kpgen_test_klp
	grep -q "^kpgen test klp:" /proc/cmdline
	expect_errno EBUSY load cmdline_a
	logged "$FTRACE_REFUSED"
	not loaded cmdline_a
	grep -q "^kpgen test klp:" /proc/cmdline
	echo 0 >"$LIVEPATCH/kpgen_test_klp/enabled"
	loop_until 30 livepatch_gone kpgen_test_klp
	rmmod kpgen_test_klp
	contract cmdline_a
}

ftrace_disabled_refused() {
	load cmdline_a
	# the core's ftrace_ops is permanent: ftrace cannot be disabled while a function is patched
	expect_errno EBUSY write /proc/sys/kernel/ftrace_enabled 0
	[ "$(cat /proc/sys/kernel/ftrace_enabled)" = 1 ]
	visible cmdline_a
	unload cmdline_a
	if core_redirects; then
		# IBT kernels: the core reaches the kernel's internals through ftrace, so ftrace stays
		# on while the core is loaded, and a core loaded while it is off refuses to load
		expect_errno EBUSY write /proc/sys/kernel/ftrace_enabled 0
		use_core none
		echo 0 >/proc/sys/kernel/ftrace_enabled
		expect_errno EBUSY load kpatch
		echo 1 >/proc/sys/kernel/ftrace_enabled
		logged "<3>cannot reach the kernel's internals: ftrace is disabled (kernel.ftrace_enabled)"
		use_core normal
	else
		echo 0 >/proc/sys/kernel/ftrace_enabled
		expect_errno EBUSY load cmdline_a
		echo 1 >/proc/sys/kernel/ftrace_enabled
		not loaded cmdline_a
		logged "$FTRACE_REFUSED"
	fi
	contract cmdline_a
}

scenario coexists_with_function_tracer
scenario coexists_with_kprobe_event
scenario kprobe_post_handler_refused
scenario livepatch_conflict_refused
scenario ftrace_disabled_refused
