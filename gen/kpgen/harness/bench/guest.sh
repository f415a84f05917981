#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Guest side of kpgen's benchmark: one boot runs every case and leaves raw figures in RESULTS.
#
#   guest.sh TREE RESULTS REPS CALLS
#
# TREE is the benchmark tree built by the host (core/, patches/<name>/, modules/<name>/).
# Per-call cases write RESULTS/percall-<case>.txt: one "TARGET_NS STUB_NS" line per repetition
# of CALLS calls each (see bench/modules/kpgen_bench).  Apply cases append "key=value" lines
# to RESULTS/apply.txt.  The last line of RESULTS/done.txt says whether every step worked.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../guest/lib.sh
. "$HERE/../guest/lib.sh"

TREE=$1
RESULTS=$2
REPS=$3
CALLS=$4
PROC=/proc/kpgen_bench
APPLY_REPS=3
# the livepatch apply time is measured by polling its transition: poll finely
LOOP_INTERVAL=0.01

step() {
	echo "bench: $*"
	mark "bench: $*"
}
now_ns() { date +%s%N; }

percall() {
	step "per-call case $1"
	echo "run $REPS $CALLS" >"$PROC"
	cat "$PROC" >"$RESULTS/percall-$1.txt"
}

# Starts N sleeping tasks (their pids in SLEEPERS).
SLEEPERS=()
start_sleepers() {
	local i
	for ((i = 0; i < $1; i++)); do
		sleep 100000 &
		SLEEPERS+=($!)
	done
}

stop_sleepers() {
	if [ ${#SLEEPERS[@]} -gt 0 ]; then
		kill "${SLEEPERS[@]}" 2>/dev/null || true
		wait "${SLEEPERS[@]}" 2>/dev/null || true
	fi
	SLEEPERS=()
}

klp_active() { [ "$(cat "$LIVEPATCH/$1/transition")" = 0 ]; }

# Waits until a livepatch has finished its transition (or, with "gone", has disappeared).
klp_wait() {
	if [ "$2" = gone ]; then
		loop_until 60 livepatch_gone "$1"
	else
		loop_until 60 klp_active "$1"
	fi
}

: >"$RESULTS/apply.txt"
load kpgen_bench

# --- per-call overhead ----------------------------------------------------------------------
percall unpatched
echo "ftrace 1" >"$PROC"
percall ftrace_empty
echo "ftrace 0" >"$PROC"

load kpatch
load bench_stack_01
percall kpgen_1
load bench_stack_02
percall kpgen_2
for i in 03 04 05 06 07 08 09 10; do
	load "bench_stack_$i"
done
percall kpgen_10
for i in 10 09 08 07 06 05 04 03 02; do
	unload "bench_stack_$i"
done
for n in 1 100 1000; do
	load "bench_many_$n"
	percall "kpgen_1_other_$n"
	unload "bench_many_$n"
done
unload bench_stack_01

load kpgen_bench_klp
klp_wait kpgen_bench_klp active
percall livepatch
echo 0 >"$LIVEPATCH/kpgen_bench_klp/enabled"
klp_wait kpgen_bench_klp gone
rmmod kpgen_bench_klp

# --- apply cost -----------------------------------------------------------------------------
for tasks in 0 100 1000; do
	start_sleepers "$tasks"
	for n in 1 100 1000; do
		step "apply case: $n functions, $tasks extra tasks"
		for ((r = 0; r < APPLY_REPS; r++)); do
			start=$(now_ns)
			load "bench_many_$n"
			end=$(now_ns)
			# read apart from the echo: a failed read must stop the run, not write a short line
			change=$(cat "$SYS/last_change")
			echo "case=kpgen functions=$n extra_tasks=$tasks insmod_ns=$((end - start)) $change" >>"$RESULTS/apply.txt"
			unload "bench_many_$n"
		done
	done
	step "apply case: livepatch, $tasks extra tasks"
	for ((r = 0; r < APPLY_REPS; r++)); do
		start=$(now_ns)
		load kpgen_bench_klp
		klp_wait kpgen_bench_klp active
		end=$(now_ns)
		echo "case=livepatch functions=1 extra_tasks=$tasks insmod_ns=$((end - start))" >>"$RESULTS/apply.txt"
		echo 0 >"$LIVEPATCH/kpgen_bench_klp/enabled"
		klp_wait kpgen_bench_klp gone
		rmmod kpgen_bench_klp
	done
	stop_sleepers
done

rmmod kpatch
rmmod kpgen_bench
dmesg >"$RESULTS/dmesg.txt"
echo "ok" >"$RESULTS/done.txt"
