#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The shared library of kpgen's guest side: sourced by run.sh, by every topics/*.sh file and by
# bench/guest.sh.  Sourcing it only defines constants and functions.
#
# TREE is the build tree the host made: core/, core-faults/, patches/<name>/, modules/<name>/,
# diffs/<case>/ and foreign/<name>/ (modules built for another kernel), each with its .ko.
#
# Helpers are written to give the right answer in a condition (`if`, `not`, `&&`), where bash
# ignores `set -e`: each one returns the status of its last check, or stops the scenario with
# `fatal` when it cannot check at all.  None feeds a long producer into `grep -q` (under
# pipefail the producer would die of SIGPIPE and the test would read as false).

SYS=/sys/kernel/kpatch
PARAMS=/sys/module/kpatch/parameters
TRACING=/sys/kernel/tracing
LIVEPATCH=/sys/kernel/livepatch

# --- failing ---------------------------------------------------------------------------------

# Stops the scenario (its shell, even from a subshell) with a message: for a check that cannot
# be made, which must never read as "false" to `not`.
fatal() {
	echo "fatal: $*" >&2
	if [ -n "${SCENARIO_PID:-}" ] && [ "$BASHPID" != "$SCENARIO_PID" ]; then
		kill -TERM "$SCENARIO_PID" 2>/dev/null
	fi
	exit 1
}

# `not CMD...` succeeds when CMD fails.  To check that something is refused, prefer
# expect_errno, which also checks why.
not() {
	if "$@"; then
		echo "expected to fail: $*" >&2
		return 1
	fi
	return 0
}

# `loop_until TIMEOUT_S CMD...`: runs CMD every LOOP_INTERVAL s (0.1) until it succeeds; fails
# after TIMEOUT_S.
LOOP_INTERVAL=0.1
loop_until() {
	local limit=$1 end
	shift
	end=$((SECONDS + limit))
	until "$@"; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "still false after $limit s: $*" >&2
			return 1
		fi
		sleep "$LOOP_INTERVAL"
	done
}

# The message an errno prints: "strerror" from the C library, and for insmod the words kmod
# uses instead for four of them.
errno_text() {
	local errno=$1 insmod=${2:-}
	if [ "$insmod" = insmod ]; then
		case $errno in
		ENOENT) echo "Unknown symbol in module"; return 0 ;;
		EINVAL) echo "Invalid parameters"; return 0 ;;
		ENOEXEC) echo "Invalid module format"; return 0 ;;
		ESRCH) echo "Module has wrong symbol version"; return 0 ;;
		esac
	fi
	case $errno in
	EPERM) echo "Operation not permitted" ;;
	ENOENT) echo "No such file or directory" ;;
	ESRCH) echo "No such process" ;;
	EINTR) echo "Interrupted system call" ;;
	ENOEXEC) echo "Exec format error" ;;
	EAGAIN) echo "Resource temporarily unavailable" ;;
	ENOMEM) echo "Cannot allocate memory" ;;
	EBUSY) echo "Device or resource busy" ;;
	EEXIST) echo "File exists" ;;
	ENODEV) echo "No such device" ;;
	EINVAL) echo "Invalid argument" ;;
	*) return 1 ;;
	esac
}

# `expect_message TEXT CMD...`: CMD must fail, and its output must contain TEXT.
expect_message() {
	local want=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "expected to fail with '$want', but it succeeded: $*${out:+ (said: $out)}" >&2
		return 1
	fi
	case $out in
	*"$want"*) return 0 ;;
	esac
	echo "expected '$want' from: $*; it said: ${out:-nothing}" >&2
	return 1
}

# `expect_errno ERRNO CMD...`: CMD must fail with exactly that errno's message, e.g.
# `expect_errno EBUSY load test_busy` (insmod: "Device or resource busy").
expect_errno() {
	local errno=$1 want kind=""
	shift
	case $1 in
	load | insmod) kind=insmod ;;
	esac
	want=$(errno_text "$errno" "$kind") || fatal "expect_errno: unknown errno $errno"
	expect_message "$want" "$@"
}

# `write FILE VALUE`: writes VALUE (no newline) with one write(2), as `echo V > FILE` does.
write() {
	printf '%s' "$2" >"$1"
}

# --- modules of the build tree ---------------------------------------------------------------

declare -A KO_PATH=() KO_COUNT=() KO_ANY=()
KO_INDEXED=""

# Indexes every .ko of the build tree by name, and by name and top directory.  The runner
# indexes once and saves the index in the file KPGEN_TREE_INDEX names (save_tree_index); a
# scenario reads it from there when it was made for the same tree, and indexes otherwise.  `ko`,
# usually called in a subshell, then only looks up.
index_tree() {
	local path rel top name key KO_INDEX_TREE=""
	KO_PATH=() KO_COUNT=() KO_ANY=()
	[ -d "${TREE:-}" ] || fatal "the build tree '${TREE:-}' is not a directory"
	if [ -n "${KPGEN_TREE_INDEX:-}" ] && [ -f "$KPGEN_TREE_INDEX" ]; then
		# shellcheck source=/dev/null
		. "$KPGEN_TREE_INDEX"
		if [ "$KO_INDEX_TREE" = "$TREE" ]; then
			KO_INDEXED=1
			return 0
		fi
		KO_PATH=() KO_COUNT=() KO_ANY=()
	fi
	while IFS= read -r path; do
		rel=${path#"$TREE"/}
		top=${rel%%/*}
		name=${path##*/}
		name=${name%.ko}
		KO_ANY[$name]=1
		for key in "$name@$top" "$name@"; do
			# core-faults/, foreign/ and diffs-livepatch/ hold modules named like others: only
			# by their directory
			if [ "$key" = "$name@" ] && { [ "$top" = core-faults ] || [ "$top" = foreign ] ||
				[ "$top" = diffs-livepatch ]; }; then
				continue
			fi
			KO_PATH[$key]=$path
			KO_COUNT[$key]=$((${KO_COUNT[$key]:-0} + 1))
		done
	done < <(find "$TREE" -mindepth 2 -maxdepth 3 -name '*.ko' -type f | sort)
	KO_INDEXED=1
}

# `save_tree_index FILE`: the index of the tree as a file that index_tree reads back.
save_tree_index() {
	local key
	[ -n "$KO_INDEXED" ] || index_tree
	{
		printf 'KO_INDEX_TREE=%q\n' "$TREE"
		for key in "${!KO_PATH[@]}"; do
			printf 'KO_PATH[%q]=%q\nKO_COUNT[%q]=%q\n' "$key" "${KO_PATH[$key]}" "$key" "${KO_COUNT[$key]}"
		done
		for key in "${!KO_ANY[@]}"; do
			printf 'KO_ANY[%q]=1\n' "$key"
		done
	} >"$1"
}

# `ko NAME [TOPDIR]`: the one NAME.ko of the build tree (core/, patches/*/, modules/*/, diffs/*/,
# ...), found by searching it; core-faults/, foreign/ and diffs-livepatch/ only when TOPDIR
# names them.  Fatal unless exactly one is found.
ko() {
	local key="$1@${2:-}"
	[ -n "$KO_INDEXED" ] || index_tree
	if [ "${KO_COUNT[$key]:-0}" != 1 ]; then
		fatal "ko: $1.ko found ${KO_COUNT[$key]:-0} times in $TREE${2:+/$2}"
	fi
	echo "${KO_PATH[$key]}"
}

# Whether NAME is the name of a module of the build tree (in any of its directories).
in_tree() {
	[ -n "$KO_INDEXED" ] || index_tree
	[ -n "${KO_ANY[$1]:-}" ]
}

# `load NAME [PARAM=VALUE...]`: insmod NAME.ko from the build tree.
load() {
	local path
	path=$(ko "$1") || fatal "no module $1 in $TREE"
	shift
	insmod "$path" "$@"
}

# (Shell builtins only, here and in the helpers every scenario runs: under TCG, starting a
# program costs 50-100 ms.)
loaded() {
	local m rest
	while read -r m rest; do
		[ "$m" = "$1" ] && return 0
	done </proc/modules
	return 1
}

# Loaded modules, newest first, one per line.
modules_loaded() {
	local m rest
	while read -r m rest; do
		printf '%s\n' "$m"
	done </proc/modules
}

# `enabled NAME 0|1`: the patch's sysfs state is that value.
enabled() {
	local value
	{ value=$(<"$SYS/$1/enabled"); } 2>/dev/null || fatal "$SYS/$1/enabled does not exist"
	[ "$value" = "$2" ]
}

# `unload NAME`: echo 0 > enabled (for a patch module), then rmmod.
unload() {
	if [ -e "$SYS/$1/enabled" ]; then
		echo 0 >"$SYS/$1/enabled" || return 1
	fi
	rmmod "$1"
}

no_patch_nodes() {
	local d
	for d in "$SYS"/*/; do
		if [ -d "$d" ] && [ ! -L "${d%/}" ]; then return 1; fi
	done
	return 0
}

# The functions ftrace hooks now (tracefs enabled_functions), without the core's own stubs: on
# IBT kernels the core reaches the kernel's internals through stubs that ftrace redirects.
hooked() {
	local line
	while IFS= read -r line; do
		[[ $line == kpatch_stub_* ]] || printf '%s\n' "$line"
	done <"$TRACING/enabled_functions"
	return 0
}

# Whether the loaded core reaches the kernel's internals through redirected stubs (IBT kernels).
core_redirects() {
	local line
	while IFS= read -r line; do
		[[ $line == kpatch_stub_* ]] && return 0
	done <"$TRACING/enabled_functions"
	return 1
}

# The core that is loaded: "normal", "faults" (the fault-injection build) or "none".
core_kind() {
	if ! loaded kpatch; then
		echo none
	elif [ -e "$PARAMS/fail_at" ]; then
		echo faults
	else
		echo normal
	fi
}

# `use_core normal|faults|none`: that core (or none) is loaded afterwards.  Any patch module
# still loaded is released first.
use_core() {
	local want=$1 m
	[ "$(core_kind)" = "$want" ] && return 0
	for m in $(modules_loaded); do
		if [ -e "$SYS/$m" ]; then
			release_module "$m" || return 1
		fi
	done
	if loaded kpatch; then
		rmmod kpatch || return 1
	fi
	case $want in
	normal) load kpatch ;;
	faults) insmod "$(ko kpatch core-faults)" ;;
	none) ;;
	*) fatal "use_core: $want" ;;
	esac
}

# Unloads a module whatever state it is in: a patch is disabled first (sleepers in the test
# target are woken so that the change is not refused as busy), a livepatch is disabled and
# waited for, then rmmod.
release_module() {
	local m=$1 i
	if [ -e /proc/kpgen_test_target ]; then
		echo wake >/proc/kpgen_test_target 2>/dev/null
	fi
	if [ -e "$SYS/$m/enabled" ]; then
		for i in 1 2 3 4 5 6 7 8 9 10; do
			echo 0 >"$SYS/$m/enabled" 2>/dev/null && break
			[ -e /proc/kpgen_test_target ] && echo wake >/proc/kpgen_test_target 2>/dev/null
			sleep 0.5
		done
	fi
	if [ -e "$LIVEPATCH/$m/enabled" ]; then
		echo 0 >"$LIVEPATCH/$m/enabled" 2>/dev/null
		loop_until 60 livepatch_gone "$m" || return 1
	fi
	for i in 1 2 3 4 5; do
		rmmod "$m" 2>/dev/null && return 0
		sleep 0.5
	done
	rmmod "$m"
}

livepatch_gone() { [ ! -e "$LIVEPATCH/$1" ]; }

# --- kernel state ----------------------------------------------------------------------------

# Taint flags as letters (the kernel's order: P F S R M B U D A W C I O E L K X T).
TAINT_LETTERS=PFSRMBUDAWCIOELKXT
taint_letters() {
	local value=$1 i out=""
	for ((i = 0; i < ${#TAINT_LETTERS}; i++)); do
		if (((value >> i) & 1)); then out+=${TAINT_LETTERS:i:1}; fi
	done
	echo "$out"
}

tainted_value() {
	local v
	read -r v </proc/sys/kernel/tainted
	printf '%s\n' "$v"
}

# `tainted LETTER`: the kernel carries that taint flag now.
tainted() {
	local letters
	letters=$(taint_letters "$(tainted_value)")
	case $letters in
	*"$1"*) return 0 ;;
	esac
	return 1
}

# Fields of /proc/kpgen_test_target, e.g. `target_field value` prints 1.
target_field() {
	local line kv
	line=$(</proc/kpgen_test_target) || fatal "kpgen_test_target is not loaded"
	for kv in $line; do
		if [ "${kv%%=*}" = "$1" ]; then
			echo "${kv#*=}"
			return 0
		fi
	done
	fatal "/proc/kpgen_test_target has no field $1: $line"
}

# `last_change_is ERE`: /sys/kernel/kpatch/last_change matches the extended regular expression.
last_change_is() {
	local line
	line=$(<"$SYS/last_change") || fatal "no $SYS/last_change"
	if [[ $line =~ ^$1$ ]]; then
		return 0
	fi
	echo "last_change is '$line', expected /^$1\$/" >&2
	return 1
}

# Starts a task that sleeps inside kpgen_test_target_sleep() until "wake"; sets SLEEPER to its
# pid once its stack shows it there.  Its output goes nowhere, so that it cannot hold a pipe.
start_sleeper() {
	bash -c 'echo sleep > /proc/kpgen_test_target' </dev/null >/dev/null 2>&1 &
	SLEEPER=$!
	loop_until 10 in_stack "$SLEEPER" kpgen_test_target_sleep
}

# `in_stack PID FUNCTION`: the task's kernel stack holds the function.
in_stack() {
	local stack
	{ stack=$(<"/proc/$1/stack"); } 2>/dev/null || return 1
	case $stack in
	*"$2"*) return 0 ;;
	esac
	return 1
}

# --- the kernel log of a scenario ------------------------------------------------------------
#
# Each scenario writes a begin mark to the kernel log and follows /dev/kmsg into a file from
# then on, so that what it reads is everything logged since its mark, even when the ring
# buffer (128 KiB) wrapped meanwhile.  Before each read, a sync mark is logged and awaited, so
# that every line logged before the read is in the file.

mark() { echo "<5>kpgen-test: $*" >/dev/kmsg; }

klog_begin() {
	KLOG=/tmp/kpgen-klog.$BASHPID.$RANDOM
	: >"$KLOG"
	KLOG_BEGIN="kpgen-test: begin $SCENARIO $SCENARIO_PID"
	mark "begin $SCENARIO $SCENARIO_PID"
	cat /dev/kmsg >"$KLOG" 2>/dev/null </dev/null &
	KLOG_PID=$!
}

klog_end() {
	if [ -n "${KLOG_PID:-}" ]; then
		kill "$KLOG_PID" 2>/dev/null
		wait "$KLOG_PID" 2>/dev/null
	fi
	[ -n "${KLOG:-}" ] && rm -f "$KLOG"
	KLOG_PID=""
}

klog_holds() {
	local text
	text=$(<"$KLOG") || return 1
	[[ $text == *"$1"* ]]
}

# Every kernel log line since the scenario's begin mark, as "<level>text".
scenario_log() {
	local token
	[ -n "${KLOG:-}" ] || fatal "scenario_log: no kernel log is followed outside a scenario"
	token="kpgen-test: sync $BASHPID.$RANDOM$RANDOM"
	mark "${token#kpgen-test: }"
	loop_until "${KLOG_SYNC_TIMEOUT:-20}" klog_holds "$token" ||
		fatal "the kernel log follower fell behind or died (no '$token' in $KLOG)"
	awk -v begin="$KLOG_BEGIN" '
		/^ / { next }
		{
			i = index($0, ";")
			split(substr($0, 1, i - 1), head, ",")
			text = substr($0, i + 1)
			if (!on) { on = (text == begin); next }
			if (text ~ /^kpgen-test: sync /) next
			print "<" head[1] % 8 ">" text
		}' "$KLOG"
}

# kpatch's own messages since the scenario began, as "<level>text" without the "kpatch: ".
kpatch_log() {
	local log line
	log=$(scenario_log) || return 1
	while IFS= read -r line; do
		# "<5>kpatch: text" -> "<5>text"
		[[ $line == "<"[0-7]">kpatch: "* ]] && printf '%s\n' "${line:0:3}${line:11}"
	done <<<"$log"
	return 0
}

# `logged LINE`: kpatch logged exactly this line ("<level>text") since the scenario began.
logged() {
	local log
	log=$(kpatch_log) || return 1
	[[ $'\n'$log$'\n' == *$'\n'"$1"$'\n'* ]]
}

# `mentioned TEXT`: some kpatch message since the scenario began contains TEXT.
mentioned() {
	local log
	log=$(kpatch_log) || return 1
	[[ $log == *"$1"* ]]
}

# `kernel_said ERE`: some kernel log line (any source) since the scenario began matches.
kernel_said() {
	local log
	log=$(scenario_log) || return 1
	grep -qE -- "$1" <<<"$log"
}

# `kernel_lines ERE`: the kernel log lines since the scenario began that match; fails if none.
kernel_lines() {
	local log
	log=$(scenario_log) || return 1
	grep -E -- "$1" <<<"$log"
}

# --- state kept across a scenario ------------------------------------------------------------
#
# scenario_setup records what a scenario may change: the modules loaded, the core's parameters,
# kernel.ftrace_enabled and the tracing state; scenario_cleanup (its EXIT trap) puts all of it
# back whatever happened: the modules of the build tree it left are released (newest first),
# the normal core is loaded, the parameters and tracing are restored.  A scenario that passed
# but left a module of the build tree loaded fails.

declare -A SAVED_PARAMS=()

save_state() {
	local p
	SAVED_MODULES=" $(modules_loaded | tr '\n' ' ') "
	SAVED_FTRACE=$(</proc/sys/kernel/ftrace_enabled)
	SAVED_TRACER=$(<"$TRACING/current_tracer")
	SAVED_PARAMS=()
	for p in "$PARAMS"/*; do
		[ -f "$p" ] && SAVED_PARAMS[$p]=$(<"$p")
	done
}

# The tracing baseline: no tracer, no filter, no kprobe event.
reset_tracing() {
	{
		echo 0 >"$TRACING/events/enable"
		echo nop >"$TRACING/current_tracer"
		echo >"$TRACING/set_ftrace_filter"
		echo >"$TRACING/kprobe_events"
		echo >"$TRACING/trace"
	} 2>/dev/null
}

restore_state() {
	local m p left=()
	echo "$SAVED_FTRACE" >/proc/sys/kernel/ftrace_enabled 2>/dev/null
	for m in $(modules_loaded); do
		case $SAVED_MODULES in
		*" $m "*) continue ;;
		esac
		[ "$m" = kpatch ] && continue
		in_tree "$m" || continue
		left+=("$m")
		release_module "$m" >&2 || echo "cleanup: cannot unload $m" >&2
	done
	reset_tracing
	[ "$SAVED_TRACER" = nop ] || echo "$SAVED_TRACER" >"$TRACING/current_tracer"
	use_core normal >&2 || echo "cleanup: cannot load the normal core" >&2
	for p in "${!SAVED_PARAMS[@]}"; do
		if [ -f "$p" ] && [ "$(<"$p")" != "${SAVED_PARAMS[$p]}" ]; then
			echo "${SAVED_PARAMS[$p]}" >"$p" || echo "cleanup: cannot restore $p" >&2
		fi
	done
	LEFT_MODULES=${left[*]}
}

# The core's parameters as the runner found them on its first load of the core: the state every
# scenario starts from, and that --restore puts back.
BASELINE_PARAMS=/tmp/kpgen-baseline-params

record_baseline() {
	local p
	: >"$BASELINE_PARAMS"
	for p in "$PARAMS"/*; do
		[ -f "$p" ] && echo "$p $(<"$p")" >>"$BASELINE_PARAMS"
	done
	return 0
}

restore_baseline_params() {
	local p v
	[ -f "$BASELINE_PARAMS" ] || return 0
	while read -r p v; do
		[ -f "$p" ] && [ "$(<"$p")" != "$v" ] && echo "$v" >"$p"
	done <"$BASELINE_PARAMS"
	return 0
}

# What differs from the state every scenario starts from, one problem per line (none: empty).
baseline_problems() {
	local m p v
	if [ -f "$BASELINE_PARAMS" ]; then
		while read -r p v; do
			[ -f "$p" ] && [ "$(<"$p")" != "$v" ] && echo "parameter ${p##*/} is $(<"$p"), not $v"
		done <"$BASELINE_PARAMS"
	fi
	for m in $(modules_loaded); do
		if [ "$m" != kpatch ] && in_tree "$m"; then echo "module $m is loaded"; fi
	done
	[ "$(core_kind)" = normal ] || echo "the normal core is not loaded ($(core_kind))"
	no_patch_nodes 2>/dev/null || echo "patch nodes remain in $SYS"
	[ "$(</proc/sys/kernel/ftrace_enabled)" = 1 ] || echo "kernel.ftrace_enabled is 0"
	[ "$(<"$TRACING/current_tracer")" = nop ] || echo "a tracer is set: $(<"$TRACING/current_tracer")"
	[ -z "$(<"$TRACING/kprobe_events")" ] || echo "kprobe events remain"
	return 0
}

scenario_setup() {
	index_tree
	use_core normal || fatal "cannot load the normal core"
	save_state
	klog_begin
}

scenario_cleanup() {
	local rc=$1
	set +eE
	trap - ERR
	klog_end
	restore_state
	if [ "$rc" = 0 ] && [ -n "$LEFT_MODULES" ]; then
		echo "the scenario left modules loaded: $LEFT_MODULES" >&2
		rc=1
	fi
	exit "$rc"
}
