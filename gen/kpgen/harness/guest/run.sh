#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The runner of kpgen's guest suite: every scenario registered by topics/*.sh, in one boot.
#
#   run.sh --list TREE                        the scenario names, one per line, in run order
#   run.sh TREE RESULTS [--only NAME[,NAME]]  run them all (or the named ones), print TAP
#
# TREE is the build tree the host made; RESULTS a directory the host reads back:
# scenarios.tap (the TAP printed here), dmesg.txt (the kernel log at the end), tainted.txt
# ("START END": /proc/sys/kernel/tainted before the first and after the last scenario), and
# the symbol snapshot (kallsyms.txt, available_filter_functions.txt).
#
# Each scenario runs in a fresh bash (set -eE -o pipefail, an ERR trap naming the failing line)
# under its own timeout, and starts from the same state: the normal core loaded, no module of
# the build tree otherwise, default tracing.  It fails if it exits non-zero, times out, leaves
# anything behind, or the kernel gains the taint W (warning), D (oops) or L (soft lockup) while
# it runs.  There is no skip: a scenario that cannot run its check fails.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNNER=$HERE/run.sh
# shellcheck source=lib.sh
. "$HERE/lib.sh"

DEFAULT_TIMEOUT=${KPGEN_SCENARIO_TIMEOUT:-180}
# W, D and L: a warning, an oops or a soft lockup happened
BAD_TAINT=$(((1 << 9) | (1 << 7) | (1 << 14)))

SCENARIOS=()
declare -A SCENARIO_LIMIT=() SCENARIO_CALL=()
REGISTRATION_ERRORS=""

# `scenario NAME [TIMEOUT_S] [-- FUNCTION ARGS...]`: registers a scenario (called by the topic
# files at top level).  FUNCTION defaults to NAME.
scenario() {
	local name=${1:-} limit=$DEFAULT_TIMEOUT call
	shift || true
	if [ $# -gt 0 ] && [ "$1" != -- ]; then
		limit=$1
		shift
	fi
	if [ $# -gt 0 ]; then
		shift
		call=$(printf '%q ' "$@")
	else
		call=$name
	fi
	if ! [[ $name =~ ^[a-z][a-z0-9_]*$ ]]; then
		REGISTRATION_ERRORS+="scenario name '$name' is not [a-z][a-z0-9_]*"$'\n'
	elif [ -n "${SCENARIO_CALL[$name]:-}" ]; then
		REGISTRATION_ERRORS+="scenario $name is registered twice"$'\n'
	elif ! [[ $limit =~ ^[1-9][0-9]*$ ]]; then
		REGISTRATION_ERRORS+="scenario $name: timeout '$limit' is not a number of seconds"$'\n'
	else
		SCENARIOS+=("$name")
		SCENARIO_LIMIT[$name]=$limit
		SCENARIO_CALL[$name]=$call
	fi
}

register_all() {
	local topic
	for topic in "$HERE"/topics/*.sh; do
		# shellcheck source=/dev/null
		. "$topic"
	done
	if [ -n "$REGISTRATION_ERRORS" ]; then
		printf 'run.sh: %s' "$REGISTRATION_ERRORS" >&2
		exit 2
	fi
	if [ ${#SCENARIOS[@]} -eq 0 ]; then
		echo "run.sh: no scenario registered in $HERE/topics" >&2
		exit 2
	fi
}

usage() {
	echo "usage: run.sh --list TREE | run.sh TREE RESULTS [--only NAME[,NAME...]]" >&2
	exit 2
}

# --- one scenario, in this shell ---------------------------------------------------------------

on_error() {
	local rc=$1 line=$2 command=$3 file=${4:-?} func=${5:-main}
	echo "${file#"$HERE"/}:$line: in $func: $command (exit $rc)" >&2
}

run_one() {
	SCENARIO=$1
	SCENARIO_PID=$$
	trap 'scenario_cleanup $?' EXIT
	trap 'echo "stopped by SIGTERM (timeout or fatal error)" >&2; exit 1' TERM
	scenario_setup
	trap 'on_error $? $LINENO "$BASH_COMMAND" "${BASH_SOURCE[0]}" "${FUNCNAME[0]:-}"' ERR
	set -eE -o pipefail
	eval "${SCENARIO_CALL[$SCENARIO]}"
	exit 0
}

if [ "${1:-}" = --one ]; then
	[ $# -eq 4 ] || usage
	TREE=$3
	RESULTS=$4
	register_all
	[ -n "${SCENARIO_CALL[$2]:-}" ] || { echo "run.sh: no scenario $2" >&2; exit 2; }
	run_one "$2"
fi

if [ "${1:-}" = --restore ]; then
	[ $# -eq 2 ] || usage
	TREE=$2
	SAVED_MODULES=" " SAVED_FTRACE=1 SAVED_TRACER=nop
	restore_state
	restore_baseline_params
	exit 0
fi

if [ "${1:-}" = --list ]; then
	[ $# -eq 2 ] || usage
	TREE=$2
	register_all
	printf '%s\n' "${SCENARIOS[@]}"
	exit 0
fi

# --- the whole run -----------------------------------------------------------------------------

[ $# -eq 2 ] || [ $# -eq 4 ] || usage
TREE=$1
RESULTS=$2
register_all
selected=("${SCENARIOS[@]}")
if [ $# -eq 4 ]; then
	[ "$3" = --only ] || usage
	IFS=, read -r -a selected <<<"$4"
	for name in "${selected[@]}"; do
		if [ -z "${SCENARIO_CALL[$name]:-}" ]; then
			echo "run.sh: no scenario named '$name' (run.sh --list $TREE lists them)" >&2
			exit 2
		fi
	done
fi
[ -d "$RESULTS" ] || { echo "run.sh: results directory $RESULTS does not exist" >&2; exit 2; }
tap=$RESULTS/scenarios.tap
: >"$tap"
index_tree
# every scenario reads the tree's index from here instead of searching the tree again
KPGEN_TREE_INDEX=/tmp/kpgen-tree-index.$$
save_tree_index "$KPGEN_TREE_INDEX"
export KPGEN_TREE_INDEX

# `emit LINE...`: printed and appended to the TAP file (builtins only: a scenario's bookkeeping
# starts no program, which costs 50-100 ms under TCG)
emit() {
	printf '%s\n' "$@"
	printf '%s\n' "$@" >>"$tap"
}

# What this kernel offers to patch, with the test target loaded: the host caches it as the
# kernel's symbol snapshot, against which kpgen checks specs without booting.
take_snapshot() {
	load kpgen_test_target &&
		cut -d' ' -f2- /proc/kallsyms >"$RESULTS/kallsyms.txt" &&
		cat "$TRACING/available_filter_functions" >"$RESULTS/available_filter_functions.txt" &&
		rmmod kpgen_test_target
}

if ! take_snapshot; then
	echo "# the symbol snapshot could not be taken" | tee -a "$tap"
fi

if ! use_core normal || ! record_baseline; then
	echo "# the normal core does not load" | tee -a "$tap"
fi
taint_start=$(tainted_value)
emit "1..${#selected[@]}"
count=0
failed=0
out=$(mktemp /tmp/kpgen-scenario.XXXXXX)
for name in "${selected[@]}"; do
	count=$((count + 1))
	limit=${SCENARIO_LIMIT[$name]}
	before=$(tainted_value)
	timeout -k 10 "$limit" bash "$RUNNER" --one "$name" "$TREE" "$RESULTS" >"$out" 2>&1 </dev/null
	rc=$?
	after=$(tainted_value)
	problems=()
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		problems+=("timed out after $limit s")
	elif [ $rc -ne 0 ]; then
		problems+=("exit $rc")
	fi
	gained=$(((after & ~before) & BAD_TAINT))
	if [ $gained -ne 0 ]; then
		problems+=("the kernel gained the taint $(taint_letters $gained) during this scenario: see the kernel log")
	fi
	mapfile -t left < <(baseline_problems)
	if [ ${#left[@]} -gt 0 ]; then
		problems+=("${left[@]/#/left behind: }")
		bash "$RUNNER" --restore "$TREE" >>"$out" 2>&1 </dev/null
	fi
	if [ ${#problems[@]} -eq 0 ]; then
		emit "ok $count - $name"
		while IFS= read -r line; do
			if [[ $line == "figure: "* ]]; then emit "# $line"; fi
		done <"$out"
	else
		failed=$((failed + 1))
		emit "not ok $count - $name"
		printf '#   %s\n' "${problems[@]}" | tee -a "$tap"
		sed 's/^/#   /' "$out" | tee -a "$tap"
	fi
	mark "end $name ($([ ${#problems[@]} -eq 0 ] && echo ok || echo not ok))"
done
rm -f "$out" "$KPGEN_TREE_INDEX"

if loaded kpatch && ! release_module kpatch; then
	echo "# the core could not be unloaded at the end" | tee -a "$tap"
	failed=$((failed + 1))
fi
taint_end=$(tainted_value)
echo "$taint_start $taint_end" >"$RESULTS/tainted.txt"
dmesg >"$RESULTS/dmesg.txt"
emit "# kernel $(uname -r): $((count - failed)) passed, $failed failed, taint $(taint_letters "$taint_end")"
[ $failed -eq 0 ]
