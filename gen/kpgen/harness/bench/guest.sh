#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Guest side of kpgen's benchmark: one boot runs every case and leaves raw figures in RESULTS.
#
#   guest.sh TREE RESULTS ROUNDS CALLS SCHEDULE APPLY_REPS PAUSE_REPS [PART]
#
# TREE is the benchmark tree built by the host (core/, core-faults/, patches/<name>/,
# modules/<name>/).  Every per-call case is hooked at once (each on its own target of the bench
# module), so one run of /proc/kpgen_bench times them all, interleaved, ROUNDS rounds of chunks
# of CALLS calls.  SCHEDULE lists the runs, "PASS/PHASE" words: phase "base", or "other_N" with
# the patch of N other functions loaded meanwhile.  Each run writes
# RESULTS/percall-<PASS>-<PHASE>.txt (see bench/modules/kpgen_bench).  The measuring task runs on
# CPU 1; every task that may move is moved to CPU 0 first.  Apply cases append "key=value"
# lines to RESULTS/apply.txt: PAUSE_REPS loads for the core's cases with the first pass (whose
# pauses the targets compare), APPLY_REPS for the others.  PART is "percall" or "apply" for
# one of the two halves only (the host boots each half under the TCG mode it needs), "all" by
# default.  RESULTS/done-PART.txt says the run went to its end; RESULTS/dmesg-PART.txt is the
# kernel log.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../guest/lib.sh
. "$HERE/../guest/lib.sh"

TREE=$1
RESULTS=$2
ROUNDS=$3
CALLS=$4
SCHEDULE=$5
APPLY_REPS=$6
PAUSE_REPS=$7
PART=${8:-all}
case $PART in
all | percall | apply) ;;
*) fatal "the part to run is all, percall or apply, not '$PART'" ;;
esac
PROC=/proc/kpgen_bench
# rounds of the run before each measured one, whose figures are dropped
WARMUP_ROUNDS=20
# the livepatch apply time is measured by polling its transition: poll finely
LOOP_INTERVAL=0.01

step() {
	echo "bench: $*"
	mark "bench: $*"
}
now_ns() { date +%s%N; }

MEASURE_CPU=
# Moves every task that may move to CPU 0 and keeps CPU 1 for the measuring task (per-CPU
# kernel threads stay where they are).
isolate_cpu1() {
	local t
	if [ "$(nproc --all)" -lt 2 ]; then
		step "one CPU only: the measuring task shares it"
		return 0
	fi
	for t in /proc/[0-9]*/task/[0-9]*; do
		taskset -pc 0 "${t##*/}" >/dev/null 2>&1 || true
	done
	MEASURE_CPU=1
}

# Lets every task run anywhere again, for the apply cases.
release_cpus() {
	local t
	[ -n "$MEASURE_CPU" ] || return 0
	for t in /proc/[0-9]*/task/[0-9]*; do
		taskset -pc "0-$(($(nproc --all) - 1))" "${t##*/}" >/dev/null 2>&1 || true
	done
}

# `measure ROUNDS`: a run of every per-call case, on the measuring CPU.
measure() {
	if [ -n "$MEASURE_CPU" ]; then
		taskset -c "$MEASURE_CPU" bash -c "echo run $1 $CALLS >$PROC"
	else
		echo "run $1 $CALLS" >"$PROC"
	fi
}

# `percall PASS PHASE`: one run of every per-call case.  A second's rest and a short run
# whose figures are dropped come first: the work a module load leaves behind (freeing its
# init code, RCU grace periods) ends, and the emulator has translated the code it times.
percall() {
	step "per-call run: pass $1, $2"
	sleep 1
	measure "$WARMUP_ROUNDS"
	measure "$ROUNDS"
	cat "$PROC" >"$RESULTS/percall-$1-$2.txt"
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

load kpgen_bench
load kpgen_bench_funcs

# --- per-call overhead ----------------------------------------------------------------------
# every case hooked at once: the bench module's own callbacks (the empty one, the handler's
# pieces), 1, 2 and 10 stacked kpgen patches, a kpgen patch through a direct call, livepatch
run_percall() {
	local i run pass phase m
	isolate_cpu1
	echo "ftrace 1" >"$PROC"
	load kpatch
	# the direct-call case: its function is hooked while direct_calls is 1
	echo 1 >"$PARAMS/direct_calls"
	load bench_direct
	echo 0 >"$PARAMS/direct_calls"
	for i in 01 02 03 04 05 06 07 08 09 10; do
		load "bench_stack_$i"
	done
	load kpgen_bench_klp
	klp_wait kpgen_bench_klp active
	load bench_lp
	klp_wait bench_lp active
	for run in $SCHEDULE; do
		pass=${run%%/*}
		phase=${run#*/}
		case $phase in
		base) percall "$pass" "$phase" ;;
		other_*)
			load "bench_many_${phase#other_}"
			percall "$pass" "$phase"
			unload "bench_many_${phase#other_}"
			;;
		*) fatal "bad phase $phase in the schedule" ;;
		esac
	done
	for m in bench_lp kpgen_bench_klp; do
		echo 0 >"$LIVEPATCH/$m/enabled"
		klp_wait "$m" gone
		rmmod "$m"
	done
	for i in 10 09 08 07 06 05 04 03 02 01; do
		unload "bench_stack_$i"
	done
	unload bench_direct
	echo "ftrace 0" >"$PROC"
	rmmod kpatch
	release_cpus
}

# --- apply cost -----------------------------------------------------------------------------
# `apply_kpgen CASE N TASKS REPS`: REPS loads of the patch of N functions, with TASKS extra
# sleeping tasks running, each followed by its unload (disable and rmmod), timed too.
apply_kpgen() {
	local r start end change insmod_ns
	step "apply case: $1, $2 functions, $3 extra tasks"
	for ((r = 0; r < $4; r++)); do
		start=$(now_ns)
		load "bench_many_$2"
		end=$(now_ns)
		insmod_ns=$((end - start))
		# read apart from the echo: a failed read must stop the run, not write a short line
		change=$(cat "$SYS/last_change")
		start=$(now_ns)
		unload "bench_many_$2"
		end=$(now_ns)
		echo "case=$1 functions=$2 extra_tasks=$3 insmod_ns=$insmod_ns rmmod_ns=$((end - start)) $change" \
			>>"$RESULTS/apply.txt"
	done
}

# `apply_klp CASE MODULE TASKS`: APPLY_REPS loads of a livepatch module, each until its
# transition has finished, with TASKS extra sleeping tasks running.
apply_klp() {
	local r start end
	step "apply case: $1, $3 extra tasks"
	for ((r = 0; r < APPLY_REPS; r++)); do
		start=$(now_ns)
		load "$2"
		klp_wait "$2" active
		end=$(now_ns)
		echo "case=$1 functions=1 extra_tasks=$3 insmod_ns=$((end - start))" >>"$RESULTS/apply.txt"
		echo 0 >"$LIVEPATCH/$2/enabled"
		klp_wait "$2" gone
		rmmod "$2"
	done
}

run_apply() {
	local tasks n
	: >"$RESULTS/apply.txt"
	load kpatch
	for tasks in 0 100 1000; do
		start_sleepers "$tasks"
		for n in 1 100 1000; do
			apply_kpgen kpgen "$n" "$tasks" "$PAUSE_REPS"
		done
		apply_klp livepatch kpgen_bench_klp "$tasks"
		apply_klp kpgen_livepatch bench_lp "$tasks"
		stop_sleepers
	done
	# the same patches hooked with direct calls
	echo 1 >"$PARAMS/direct_calls"
	for n in 1 100 1000; do
		apply_kpgen kpgen_direct "$n" 0 "$APPLY_REPS"
	done
	echo 0 >"$PARAMS/direct_calls"

	rmmod kpatch

	# the pause without the first pass before stop_machine(): the core's fault-injection build,
	# told to skip it (fail_at=precheck), walks every stack inside the pause
	insmod "$(ko kpatch core-faults)" fail_at=precheck
	for tasks in 0 1000; do
		start_sleepers "$tasks"
		for n in 1 100 1000; do
			apply_kpgen kpgen_noprecheck "$n" "$tasks" "$APPLY_REPS"
		done
		stop_sleepers
	done
	rmmod kpatch
}

case $PART in
all)
	run_percall
	run_apply
	;;
percall) run_percall ;;
apply) run_apply ;;
esac
rmmod kpgen_bench_funcs kpgen_bench
dmesg >"$RESULTS/dmesg-$PART.txt"
echo "ok" >"$RESULTS/done-$PART.txt"
