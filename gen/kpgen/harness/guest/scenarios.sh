#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Guest side of kpgen's boot tests: runs every scenario in one boot and reports TAP.
#
#   scenarios.sh TREE RESULTS        run all scenarios
#   scenarios.sh --one NAME TREE     run one scenario (used by the loop below)
#
# TREE is a build tree made by the host (core/, patches/<name>/, modules/<name>/, each with
# its .ko); RESULTS is a directory the host can read back (scenarios.tap, dmesg.txt).
# Each scenario runs in its own `bash -e` with an ERR trap that names the failing command,
# and every patch module is unloaded after it, so one failure does not cascade.
set -u

SYS=/sys/kernel/kpatch
TRACING=/sys/kernel/tracing
SAMPLES="cmdline_a cmdline_b cmdline_ksym meminfo"
PATCHES="$SAMPLES test_busy test_missing test_module_value test_sympos test_ambiguous test_notrace test_init test_stress_a test_stress_b test_static_sym test_module_ksym test_tailcall test_cold test_value_b test_module_init test_pair"
TOPICS=$(dirname "$0")/topics

# --- helpers -------------------------------------------------------------------------------

ko() {
	case $1 in
	kpatch) echo "$TREE/core/kpatch.ko" ;;
	kpatch_faults) echo "$TREE/core-faults/kpatch.ko" ;;
	kpgen_test_*) echo "$TREE/modules/$1/$1.ko" ;;
	*) echo "$TREE/patches/$1/$1.ko" ;;
	esac
}

# Succeeds when the sample's replacement is what the kernel runs now.
visible() {
	case $1 in
	cmdline_a | cmdline_b) grep -q "^kpgen sample $1:" /proc/cmdline ;;
	# the replacement prints the real command line through an unexported symbol
	cmdline_ksym) grep -q "^kpgen sample cmdline_ksym: .*virtme" /proc/cmdline ;;
	meminfo) grep -q "^kpgen sample meminfo:" /proc/meminfo ;;
	*) return 2 ;;
	esac
}

original_cmdline() { grep -q "virtme" /proc/cmdline; }

# `not CMD` fails (and so stops the scenario under -e) when CMD succeeds.
not() {
	if "$@"; then
		echo "expected to fail: $*" >&2
		return 1
	fi
}

loaded() { grep -q "^$1 " /proc/modules; }

# Runs "$@" every 0.1 s until it succeeds; fails once $1 seconds have passed.
loop_until() {
	local end=$((SECONDS + $1))
	shift
	while [ "$SECONDS" -lt "$end" ]; do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}
# /sys/kernel/kpatch holds a directory per patch module, beside the file last_change.
no_patch_nodes() { [ -z "$(find "$SYS" -mindepth 1 -maxdepth 1 -type d)" ]; }
load() { insmod "$(ko "$1")"; }
enabled() { [ "$(cat "$SYS/$1/enabled")" = "$2" ]; }

unload() {
	echo 0 >"$SYS/$1/enabled"
	rmmod "$1"
}

mark() { echo "<5>kpgen-test: $1" >/dev/kmsg; }

# Starts a task that sleeps inside kpgen_test_target_sleep() until "wake"; sets SLEEPER to its
# pid once its stack shows it there.  Its output goes nowhere, so that it cannot hold a
# scenario's output pipe open.
start_sleeper() {
	local i
	bash -c 'echo sleep > /proc/kpgen_test_target' </dev/null >/dev/null 2>&1 &
	SLEEPER=$!
	for i in $(seq 100); do
		grep -q kpgen_test_target_sleep "/proc/$SLEEPER/stack" 2>/dev/null && break
		sleep 0.1
	done
	grep -q kpgen_test_target_sleep "/proc/$SLEEPER/stack"
}

# Kernel log lines (raw, with <level> prefixes) since the scenario began.
log_since_mark() {
	dmesg -r | sed -n "/kpgen-test: begin $SCENARIO\$/,\$p"
}

# kpatch's own messages since the scenario began, as "<level>text".
kpatch_log() {
	log_since_mark | sed -n 's/^<\([0-9]*\)>\[[^]]*\] kpatch: /<\1>/p'
}

# Whether kpatch logged exactly this line ("<level>text") since the scenario began.
logged() { kpatch_log | grep -qxF "$1"; }

# Whether any kpatch message since the scenario began contains this text.
mentioned() { kpatch_log | grep -qF "$1"; }

# The contract every sample keeps: its check fails before load, passes after, fails after unload.
contract() {
	not visible "$1"
	load "$1"
	visible "$1"
	enabled "$1" 1
	unload "$1"
	not visible "$1"
	not loaded "$1"
	[ ! -e "$SYS/$1" ]
}

# --- scenarios (each line `scenario NAME` below is one reported test) ----------------------
# A scenario that exits 77 is reported as skipped, with its last output line as the reason.

patch_without_core_refused() {
	not loaded kpatch
	not load cmdline_a 2>/dev/null
	not loaded cmdline_a
	[ ! -e "$SYS" ]
	log_since_mark | grep -q "cmdline_a: Unknown symbol kpatch_register"
}

core_loads() {
	load kpatch
	[ -d "$SYS" ]
	no_patch_nodes
	grep -qx "functions=0 tasks=0 tries=0 pause_ns=0 result=0" "$SYS/last_change"
}

cmdline_a_contract() { contract cmdline_a; }
cmdline_b_contract() { contract cmdline_b; }
cmdline_ksym_contract() { contract cmdline_ksym; }
meminfo_contract() { contract meminfo; }

stack_a_then_b_shows_b() {
	load cmdline_a
	visible cmdline_a
	load cmdline_b
	visible cmdline_b
	not visible cmdline_a
}

unload_b_shows_a() {
	load cmdline_a
	load cmdline_b
	visible cmdline_b
	unload cmdline_b
	visible cmdline_a
	unload cmdline_a
	original_cmdline
}

unload_a_first_keeps_b() {
	load cmdline_a
	load cmdline_b
	unload cmdline_a
	visible cmdline_b
	unload cmdline_b
	not visible cmdline_b
	original_cmdline
}

sysfs_enabled_round_trip() {
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
	local bad
	for bad in 2 -1 yes " 1x" 10; do
		not sh -c "printf '%s' '$bad' > $SYS/cmdline_a/enabled" 2>/dev/null
	done
	enabled cmdline_a 1
	visible cmdline_a
	unload cmdline_a
}

rmmod_active_refused() {
	load cmdline_a
	not rmmod cmdline_a 2>/dev/null
	loaded cmdline_a
	enabled cmdline_a 1
	visible cmdline_a
	unload cmdline_a
	not loaded cmdline_a
}

double_load_refused() {
	load cmdline_a
	local out
	out=$(insmod "$(ko cmdline_a)" 2>&1) && { echo "second insmod succeeded" >&2; false; }
	echo "$out" | grep -q "File exists"
	visible cmdline_a
	enabled cmdline_a 1
	unload cmdline_a
}

# A module built for the other kernel of the matrix, when its tree exists beside this one.
foreign_module_refused() {
	local other
	other=$(find "$(dirname "$TREE")" -mindepth 4 -maxdepth 4 -path "*/patches/cmdline_a/cmdline_a.ko" |
		grep -v "^$TREE/" | head -n 1)
	if [ -z "$other" ]; then
		echo "no module built for another kernel beside $TREE"
		exit 77
	fi
	not insmod "$other" 2>/dev/null
	not loaded cmdline_a
	no_patch_nodes
	# refused on its version magic, symbol versions or struct module layout
	log_since_mark | grep -Eq "cmdline_a: (disagrees about version|version magic)|module cmdline_a: .gnu.linkonce.this_module section size"
}

concurrent_insmod() {
	local m pids=""
	for m in cmdline_a cmdline_b cmdline_ksym meminfo; do
		insmod "$(ko "$m")" &
		pids="$pids $!"
	done
	for m in $pids; do
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
	before=$(cat "$TRACING/enabled_functions")
	not load test_missing 2>/dev/null
	not loaded test_missing
	[ ! -e "$SYS/test_missing" ]
	[ "$(cat "$TRACING/enabled_functions")" = "$before" ]
	logged "<3>function 'kpgen_no_such_function' not found in vmlinux"
	logged "<3>cannot load patch module 'test_missing': -2"
	not mentioned "loaded patch module 'test_missing'"
}

# A static kernel function no header declares: the source declares it, kpgen makes that a
# pointer, and the core resolves it when the module loads.
static_symbol_declared_by_source() {
	not grep -q "^kpgen test static:" /proc/meminfo
	load test_static_sym
	grep -q "^kpgen test static: .*virtme" /proc/meminfo
	unload test_static_sym
	not grep -q "^kpgen test static:" /proc/meminfo
	grep -q "^MemTotal:" /proc/meminfo
}

busy_task_gets_ebusy() {
	local before sleeper out
	load kpgen_test_target
	before=$(cat "$TRACING/enabled_functions")
	start_sleeper
	sleeper=$SLEEPER

	# a task sleeps in the target: the load fails with EBUSY and changes nothing
	out=$(insmod "$(ko test_busy)" 2>&1) && { echo "insmod succeeded: $out" >&2; false; }
	echo "$out" | grep -q "Device or resource busy"
	not loaded test_busy
	[ ! -e "$SYS/test_busy" ]
	[ "$(cat "$TRACING/enabled_functions")" = "$before" ]
	logged "<3>cannot apply patch module 'test_busy': task 'bash' (pid $sleeper) is inside function 'kpgen_test_target_sleep'"
	not mentioned "loaded patch module 'test_busy'"
	grep -q kpgen_test_target_sleep "/proc/$sleeper/stack"
	grep -Eq "^functions=1 tasks=[1-9][0-9]* tries=1 pause_ns=[1-9][0-9]* result=-16$" "$SYS/last_change"

	# once the task has left, the same load succeeds
	echo wake >/proc/kpgen_test_target
	wait "$sleeper"
	[ "$(target_field last)" = 1 ]
	load test_busy
	grep -Eq "^functions=1 tasks=[1-9][0-9]* tries=1 pause_ns=[1-9][0-9]* result=0$" "$SYS/last_change"
	timeout 20 bash -c 'echo sleep > /proc/kpgen_test_target'
	[ "$(target_field last)" = 2 ]

	# the patch does not pin the module it patches
	rmmod kpgen_test_target
	enabled test_busy 1
	unload test_busy
}

# Fields of /proc/kpgen_test_target, e.g. `target_field value` prints 1.
target_field() { tr ' ' '\n' </proc/kpgen_test_target | sed -n "s/^$1=//p"; }

module_target_loaded_before() {
	load kpgen_test_target
	[ "$(target_field value)" = 1 ]
	load test_module_value
	[ "$(target_field value)" = 2 ]
	# the module unloads while patched, and is patched again when it comes back
	rmmod kpgen_test_target
	logged "<6>patch module 'test_module_value' removed from module 'kpgen_test_target'"
	enabled test_module_value 1
	load kpgen_test_target
	[ "$(target_field value)" = 2 ]
	logged "<6>patch module 'test_module_value' applied to module 'kpgen_test_target'"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	[ -z "$(cat "$TRACING/enabled_functions")" ]
}

module_target_loaded_after() {
	load test_module_value
	enabled test_module_value 1
	[ -z "$(cat "$TRACING/enabled_functions")" ]
	load kpgen_test_target
	[ "$(target_field value)" = 2 ]
	grep -q "^kpgen_test_target_value .*kpgen_test_target" "$TRACING/enabled_functions"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

# A patch of a module that uses the module's own static variable and a static function chosen
# by sympos: both are resolved whenever the module comes, so the module may load before or
# after the patch, reload while it is applied, or reload while it is disabled.
module_symbols_follow_the_module() {
	load kpgen_test_target
	load test_module_ksym
	[ "$(target_field value)" = 120 ]
	rmmod kpgen_test_target
	load kpgen_test_target
	[ "$(target_field value)" = 120 ]
	echo 0 >"$SYS/test_module_ksym/enabled"
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	load kpgen_test_target
	echo 1 >"$SYS/test_module_ksym/enabled"
	[ "$(target_field value)" = 120 ]
	unload test_module_ksym
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	load test_module_ksym
	load kpgen_test_target
	[ "$(target_field value)" = 120 ]
	rmmod kpgen_test_target
	unload test_module_ksym
}

sympos_selects_duplicate() {
	load kpgen_test_target
	[ "$(target_field dup)" = 10,20 ]
	load test_sympos
	[ "$(target_field dup)" = 10,22 ]
	unload test_sympos
	[ "$(target_field dup)" = 10,20 ]
	rmmod kpgen_test_target
}

ambiguous_name_is_refused() {
	load kpgen_test_target
	not load test_ambiguous 2>/dev/null
	logged "<3>function 'kpgen_test_dup' appears 2 times in kpgen_test_target: set sympos to 1..2 to choose one"
	[ ! -e "$SYS/test_ambiguous" ]
	rmmod kpgen_test_target
	# loaded first, the patch waits for the module, then refuses to let it load
	load test_ambiguous
	not load kpgen_test_target 2>/dev/null
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_ambiguous' cannot be applied to it (-22)"
	not loaded kpgen_test_target
	[ -z "$(cat "$TRACING/enabled_functions")" ]
	unload test_ambiguous
	load kpgen_test_target
	[ "$(target_field dup)" = 10,20 ]
	rmmod kpgen_test_target
}

untraceable_targets_refused() {
	local before
	load kpgen_test_target
	before=$(cat "$TRACING/enabled_functions")
	not load test_notrace 2>/dev/null
	logged "<3>function 'kpgen_test_notrace' cannot be hooked by ftrace (-22): is it notrace or inlined?"
	not load test_init 2>/dev/null
	logged "<3>function 'start_kernel' is __init code, freed after boot: it cannot be patched"
	[ ! -e "$SYS/test_notrace" ]
	[ ! -e "$SYS/test_init" ]
	not loaded test_notrace
	not loaded test_init
	[ "$(cat "$TRACING/enabled_functions")" = "$before" ]
	[ "$(target_field notrace)" = 100 ]
	rmmod kpgen_test_target
}

busy_retry_succeeds_when_quiet() {
	local sleeper waker params=/sys/module/kpatch/parameters
	load kpgen_test_target
	start_sleeper
	sleeper=$SLEEPER
	echo 200 >"$params/busy_retries"
	echo 50 >"$params/busy_retry_ms"
	(sleep 2 && echo wake >/proc/kpgen_test_target) </dev/null >/dev/null 2>&1 &
	waker=$!
	# refused at first, retried every 50 ms, applied once the sleeper has left
	load test_busy
	wait "$waker" "$sleeper"
	echo 0 >"$params/busy_retries"
	echo 100 >"$params/busy_retry_ms"
	kpatch_log | grep -Eq "^<6>applied patch module 'test_busy' after [1-9][0-9]* retries$"
	not mentioned "cannot apply patch module 'test_busy'"
	unload test_busy
	rmmod kpgen_test_target
	# garbage is refused by the parameters themselves
	not sh -c "echo lots > $params/busy_retries" 2>/dev/null
	[ "$(cat "$params/busy_retries")" = 0 ]
}

coexists_with_function_tracer() {
	load cmdline_a
	echo cmdline_proc_show >"$TRACING/set_ftrace_filter"
	echo cmdline_a_proc_show >>"$TRACING/set_ftrace_filter"
	echo >"$TRACING/trace"
	echo function >"$TRACING/current_tracer"
	visible cmdline_a
	# read the trace before switching the tracer off, which clears it
	local trace
	trace=$(cat "$TRACING/trace")
	echo nop >"$TRACING/current_tracer"
	echo >"$TRACING/set_ftrace_filter"
	echo "$trace" | grep -q " cmdline_proc_show <-"
	echo "$trace" | grep -q " cmdline_a_proc_show <-"
	visible cmdline_a
	unload cmdline_a
}

coexists_with_kprobe_event() {
	load cmdline_a
	echo 'p:kprobes/kpgen_kp cmdline_proc_show' >>"$TRACING/kprobe_events"
	echo >"$TRACING/trace"
	echo 1 >"$TRACING/events/kprobes/kpgen_kp/enable"
	visible cmdline_a
	local trace
	trace=$(cat "$TRACING/trace")
	echo 0 >"$TRACING/events/kprobes/kpgen_kp/enable"
	echo '-:kprobes/kpgen_kp' >>"$TRACING/kprobe_events"
	# at the function's first instruction, or just past its ENDBR on IBT kernels
	echo "$trace" | grep -Eq "kpgen_kp: \(cmdline_proc_show\+0x(0|4)/"
	unload cmdline_a
}

kprobe_post_handler_refused() {
	load cmdline_a
	not load kpgen_test_kprobe 2>/dev/null
	not loaded kpgen_test_kprobe
	visible cmdline_a
	unload cmdline_a
	load kpgen_test_kprobe
	not load cmdline_a 2>/dev/null
	logged "<3>cannot register the ftrace handler: ftrace is disabled (kernel.ftrace_enabled), or another ftrace user already redirects one of the functions"
	not loaded cmdline_a
	rmmod kpgen_test_kprobe
	contract cmdline_a
}

livepatch_conflict_refused() {
	local i
	load cmdline_a
	not load kpgen_test_klp 2>/dev/null
	not loaded kpgen_test_klp
	[ ! -e /sys/kernel/livepatch/kpgen_test_klp ]
	visible cmdline_a
	unload cmdline_a
	load kpgen_test_klp
	grep -q "^kpgen test klp:" /proc/cmdline
	not load cmdline_a 2>/dev/null
	not loaded cmdline_a
	grep -q "^kpgen test klp:" /proc/cmdline
	echo 0 >/sys/kernel/livepatch/kpgen_test_klp/enabled
	for i in $(seq 300); do
		[ -e /sys/kernel/livepatch/kpgen_test_klp ] || break
		sleep 0.1
	done
	[ ! -e /sys/kernel/livepatch/kpgen_test_klp ]
	rmmod kpgen_test_klp
	contract cmdline_a
}

ftrace_disabled_refused() {
	load cmdline_a
	not sh -c "echo 0 > /proc/sys/kernel/ftrace_enabled" 2>/dev/null
	[ "$(cat /proc/sys/kernel/ftrace_enabled)" = 1 ]
	visible cmdline_a
	unload cmdline_a
	echo 0 >/proc/sys/kernel/ftrace_enabled
	not load cmdline_a 2>/dev/null
	echo 1 >/proc/sys/kernel/ftrace_enabled
	not loaded cmdline_a
	mentioned "cannot register the ftrace handler: ftrace is disabled"
	contract cmdline_a
}

# Two kernel threads call kpgen_stress_target() without pause, counting each answer, while
# two patches of it are loaded, disabled, enabled and unloaded in random order (seeded).
# After every step, a call from here must answer the newest enabled patch (0: none); at the
# end, every thread call must have had a valid answer and the counts must add up.
stress_random_cycles() {
	local cycles=${KPGEN_STRESS_CYCLES:-200} i m want now stack="" final retries
	local calls=-1 v0=0 v1=0 v2=0 bad=-1 kv params=/sys/module/kpatch/parameters
	echo 200 >"$params/busy_retries"
	echo 10 >"$params/busy_retry_ms"
	load kpgen_test_stress
	RANDOM=2026
	for ((i = 1; i <= cycles; i++)); do
		if ((RANDOM % 2)); then m=test_stress_a; else m=test_stress_b; fi
		if ! loaded "$m"; then
			load "$m"
			stack="$stack $m"
		elif enabled "$m" 1; then
			if ((RANDOM % 2)); then echo 0 >"$SYS/$m/enabled"; else unload "$m"; fi
			stack=$(echo "$stack" | tr ' ' '\n' | { grep -vx "$m" || true; } | tr '\n' ' ')
		elif ((RANDOM % 2)); then
			echo 1 >"$SYS/$m/enabled"
			stack="$stack $m"
		else
			rmmod "$m"
		fi
		case $(echo "$stack" | awk '{print $NF}') in
		test_stress_a) want=1 ;;
		test_stress_b) want=2 ;;
		*) want=0 ;;
		esac
		now=$(tr ' ' '\n' </proc/kpgen_test_stress | sed -n 's/^now=//p')
		if [ "$now" != "$want" ]; then
			echo "cycle $i: answered $now, expected $want (enabled, oldest first:$stack)" >&2
			false
		fi
	done
	for m in test_stress_b test_stress_a; do
		if loaded "$m"; then unload "$m"; fi
	done
	rmmod kpgen_test_stress
	echo 0 >"$params/busy_retries"
	echo 100 >"$params/busy_retry_ms"
	final=$(log_since_mark | sed -n 's/.*kpgen_test_stress: \(calls=.*\)$/\1/p' | tail -n 1)
	for kv in $final; do
		case ${kv%%=*} in
		calls) calls=${kv#*=} ;;
		v0) v0=${kv#*=} ;;
		v1) v1=${kv#*=} ;;
		v2) v2=${kv#*=} ;;
		bad) bad=${kv#*=} ;;
		esac
	done
	[ "$bad" = 0 ]
	[ $((v0 + v1 + v2)) = "$calls" ]
	[ "$v1" -gt 0 ] && [ "$v2" -gt 0 ] && [ "$v0" -gt 0 ]
	retries=$(kpatch_log | sed -n 's/.* after \([0-9]*\) retries$/\1/p' | awk '{s += $1} END {print s + 0}')
	echo "figure: stress: $cycles cycles, $calls calls by 2 threads (v0=$v0 v1=$v1 v2=$v2, invalid=$bad), $retries busy retries"
}

# The fault-injection build of the core fails on demand at each error point of a load (and
# of a removal); each failure must leave nothing behind, and the next load must work.
fault_injection_unwinds() {
	local point n=0 params=/sys/module/kpatch/parameters
	rmmod kpatch
	insmod "$(ko kpatch_faults)"
	for point in alloc lookup filter register activeness sysfs; do
		echo "$point" >"$params/fail_at"
		not load cmdline_a 2>/dev/null
		logged "<5>injected failure at '$point'"
		not loaded cmdline_a
		[ ! -e "$SYS/cmdline_a" ]
		[ -z "$(cat "$TRACING/enabled_functions")" ]
		[ "$(cat /sys/module/kpatch/refcnt)" = 0 ]
		original_cmdline
		echo >"$params/fail_at"
		load cmdline_a
		visible cmdline_a
		unload cmdline_a
		n=$((n + 1))
	done
	# a removal refused by the activeness check leaves the patch whole
	load cmdline_a
	echo activeness >"$params/fail_at"
	not sh -c "echo 0 > $SYS/cmdline_a/enabled" 2>/dev/null
	enabled cmdline_a 1
	visible cmdline_a
	echo >"$params/fail_at"
	unload cmdline_a
	[ "$(cat /sys/module/kpatch/refcnt)" = 0 ]
	rmmod kpatch
	load kpatch
	[ ! -e "$params/fail_at" ]
	echo "figure: faults: $n injection points on load and 1 on removal, each unwound fully"
}

notice_messages_in_order() {
	load cmdline_a
	echo 0 >"$SYS/cmdline_a/enabled"
	echo 1 >"$SYS/cmdline_a/enabled"
	# rewriting the current state changes nothing and logs nothing
	echo 1 >"$SYS/cmdline_a/enabled"
	unload cmdline_a
	local got want
	got=$(kpatch_log | grep "patch module 'cmdline_a'")
	want=$(printf '%s\n' \
		"<5>loaded patch module 'cmdline_a'" \
		"<5>disabled patch module 'cmdline_a'" \
		"<5>enabled patch module 'cmdline_a'" \
		"<5>disabled patch module 'cmdline_a'" \
		"<5>unloaded patch module 'cmdline_a'")
	if [ "$got" != "$want" ]; then
		printf 'got:\n%s\nwant:\n%s\n' "$got" "$want" >&2
		false
	fi
}

core_unloads_clean() {
	rmmod kpatch
	[ ! -e "$SYS" ]
	[ -z "$(cat "$TRACING/enabled_functions")" ]
}

# --- driver --------------------------------------------------------------------------------

# Unload whatever a failed scenario left behind, newest first.
cleanup() {
	local m
	for m in $(echo "$PATCHES" | tr ' ' '\n' | tac); do
		if loaded "$m"; then
			echo 0 >"$SYS/$m/enabled" 2>/dev/null
			rmmod "$m" 2>/dev/null
		fi
	done
	if [ -e /proc/kpgen_test_target ]; then
		echo wake >/proc/kpgen_test_target 2>/dev/null
	fi
	if [ -e /sys/kernel/livepatch/kpgen_test_klp/enabled ]; then
		echo 0 >/sys/kernel/livepatch/kpgen_test_klp/enabled 2>/dev/null
		sleep 5
	fi
	echo 1 >/proc/sys/kernel/ftrace_enabled 2>/dev/null
	for m in kpgen_test_target kpgen_test_kprobe kpgen_test_klp kpgen_test_stress kpgen_test_notifier kpgen_test_filler; do
		if loaded "$m"; then
			rmmod "$m" 2>/dev/null
		fi
	done
	if [ -e /sys/module/kpatch/parameters/fail_at ]; then
		rmmod kpatch 2>/dev/null && insmod "$(ko kpatch)"
	fi
	return 0
}

if [ "${1:-}" = --one ]; then
	SCENARIO=$2
	TREE=$3
	# shellcheck disable=SC2317 # the topics' registrations: nothing to do in this mode
	scenario() { :; }
	for topic in "$TOPICS"/*.sh; do
		# shellcheck source=/dev/null
		. "$topic"
	done
	trap 'echo "line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
	set -eE -o pipefail
	"$SCENARIO"
	exit 0
fi

TREE=$1
RESULTS=$2
SCENARIO_TIMEOUT=${KPGEN_SCENARIO_TIMEOUT:-180}
tap=$RESULTS/scenarios.tap
: >"$tap"
count=0
failed=0

# What this kernel offers to patch, with the test target loaded: the host caches it as the
# kernel's symbol snapshot, against which kpgen checks specs without booting.
take_snapshot() {
	insmod "$(ko kpgen_test_target)"
	cut -d' ' -f2- /proc/kallsyms >"$RESULTS/kallsyms.txt"
	cat "$TRACING/available_filter_functions" >"$RESULTS/available_filter_functions.txt"
	rmmod kpgen_test_target
}

scenario() {
	local name=$1 limit=${2:-$SCENARIO_TIMEOUT} out rc
	count=$((count + 1))
	mark "begin $name"
	out=$(timeout "$limit" bash "$0" --one "$name" "$TREE" 2>&1)
	rc=$?
	if [ "$name" != core_unloads_clean ]; then
		cleanup
	fi
	if [ $rc -eq 0 ]; then
		echo "ok $count - $name" | tee -a "$tap"
		printf '%s\n' "$out" | sed -n 's/^figure: /# figure: /p' | tee -a "$tap"
	elif [ $rc -eq 77 ]; then
		echo "ok $count - $name # SKIP $(printf '%s\n' "$out" | tail -n 1)" | tee -a "$tap"
	else
		failed=$((failed + 1))
		echo "not ok $count - $name" | tee -a "$tap"
		if [ $rc -eq 124 ]; then
			echo "#   timed out after $limit s" | tee -a "$tap"
		fi
		printf '%s\n' "$out" | sed 's/^/#   /' | tee -a "$tap"
	fi
	mark "end $name"
}

take_snapshot
scenario patch_without_core_refused
scenario core_loads
# 200 cycles; make stress sets KPGEN_STRESS_CYCLES for longer runs
scenario stress_random_cycles $((600 + 3 * ${KPGEN_STRESS_CYCLES:-200}))
scenario cmdline_a_contract
scenario cmdline_b_contract
scenario cmdline_ksym_contract
scenario meminfo_contract
scenario static_symbol_declared_by_source
scenario stack_a_then_b_shows_b
scenario unload_b_shows_a
scenario unload_a_first_keeps_b
scenario sysfs_enabled_round_trip
scenario rmmod_active_refused
scenario double_load_refused
scenario foreign_module_refused
scenario concurrent_insmod
scenario missing_target_fails_cleanly
scenario busy_task_gets_ebusy
scenario module_target_loaded_before
scenario module_target_loaded_after
scenario module_symbols_follow_the_module
scenario sympos_selects_duplicate
scenario ambiguous_name_is_refused
scenario untraceable_targets_refused
scenario busy_retry_succeeds_when_quiet
scenario coexists_with_function_tracer
scenario coexists_with_kprobe_event
scenario kprobe_post_handler_refused
scenario livepatch_conflict_refused
scenario fault_injection_unwinds
scenario ftrace_disabled_refused
scenario notice_messages_in_order
for topic in "$TOPICS"/*.sh; do
	# shellcheck source=/dev/null
	. "$topic"
done
scenario core_unloads_clean

echo "1..$count" | tee -a "$tap"
dmesg >"$RESULTS/dmesg.txt"
echo "# kernel $(uname -r): $((count - failed)) passed, $failed failed" | tee -a "$tap"
[ $failed -eq 0 ]
