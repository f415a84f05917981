#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Stress: two kernel threads call kpgen_stress_target() without pause, counting each answer,
# while two patches of it are loaded, disabled, enabled and unloaded in random order (seeded).
# After every step, a call from here must answer the newest enabled patch (0: none); at the
# end, every thread call must have had a valid answer and the counts must add up.
# KPGEN_STRESS_CYCLES sets the number of steps (default 200; `make stress` runs 1000).

STRESS_CYCLES=${KPGEN_STRESS_CYCLES:-200}

stress_random_cycles() {
	local cycles=$STRESS_CYCLES i m want now stack="" final retries loads=0 kv w rest
	local calls=-1 v0=-1 v1=-1 v2=-1 bad=-1
	if ! [[ $cycles =~ ^[1-9][0-9]*$ ]]; then
		fatal "KPGEN_STRESS_CYCLES must be a positive number of cycles, not '$cycles'"
	fi
	echo 200 >"$PARAMS/busy_retries"
	echo 10 >"$PARAMS/busy_retry_ms"
	load kpgen_test_stress
	RANDOM=2026
	for ((i = 1; i <= cycles; i++)); do
		if ((RANDOM % 2)); then m=test_stress_a; else m=test_stress_b; fi
		if ! loaded "$m"; then
			load "$m"
			loads=$((loads + 1))
			stack="$stack $m"
		elif enabled "$m" 1; then
			if ((RANDOM % 2)); then echo 0 >"$SYS/$m/enabled"; else unload "$m"; fi
			rest=""
			for w in $stack; do
				[ "$w" = "$m" ] || rest="$rest $w"
			done
			stack=$rest
		elif ((RANDOM % 2)); then
			echo 1 >"$SYS/$m/enabled"
			stack="$stack $m"
		else
			rmmod "$m"
		fi
		# (builtins only in the loop: a program started costs 50-100 ms under TCG)
		case ${stack##* } in
		test_stress_a) want=1 ;;
		test_stress_b) want=2 ;;
		*) want=0 ;;
		esac
		now=""
		for kv in $(</proc/kpgen_test_stress); do
			[[ $kv == now=* ]] && now=${kv#now=}
		done
		if [ "$now" != "$want" ]; then
			echo "cycle $i: answered $now, expected $want (enabled, oldest first:$stack)" >&2
			return 1
		fi
	done
	for m in test_stress_b test_stress_a; do
		if loaded "$m"; then unload "$m"; fi
	done
	rmmod kpgen_test_stress
	final=$(kernel_lines 'kpgen_test_stress: calls=' | tail -n 1)
	for kv in ${final#*kpgen_test_stress: }; do
		case ${kv%%=*} in
		calls) calls=${kv#*=} ;;
		v0) v0=${kv#*=} ;;
		v1) v1=${kv#*=} ;;
		v2) v2=${kv#*=} ;;
		bad) bad=${kv#*=} ;;
		esac
	done
	# each check on its own line: under set -e, `[ a ] && [ b ]` would enforce only the last
	[ "$loads" -gt 0 ]
	[ "$bad" = 0 ]
	[ "$calls" -gt 0 ]
	[ $((v0 + v1 + v2)) = "$calls" ]
	[ "$v0" -gt 0 ]
	[ "$v1" -gt 0 ]
	[ "$v2" -gt 0 ]
	retries=$(kpatch_log | sed -n 's/.* after \([0-9]*\) retries$/\1/p' | awk '{s += $1} END {print s + 0}')
	echo "figure: stress: $cycles cycles ($loads loads), $calls calls by 2 threads (v0=$v0 v1=$v1 v2=$v2, invalid=$bad), $retries busy retries"
}

# 200 cycles take about a minute under TCG; a bad count fails the scenario, not the registration
STRESS_LIMIT=600
if [[ $STRESS_CYCLES =~ ^[1-9][0-9]{0,6}$ ]]; then
	STRESS_LIMIT=$((600 + 3 * STRESS_CYCLES))
fi
scenario stress_random_cycles "$STRESS_LIMIT"
