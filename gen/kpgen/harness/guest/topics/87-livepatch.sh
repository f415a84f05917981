#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# The livepatch backend: modules made from specs with backend = "livepatch" register with the
# kernel's own livepatch (klp_enable_patch), not with kpgen's core.  The backend-independent
# checks (load, disable, stacking, module targets, unexported symbols, callbacks, replace), and
# the case only this backend handles: a function some task always sleeps in.

# `lp_settled NAME`: the livepatch is enabled and its transition is over.
lp_settled() {
	[ "$(cat "$LIVEPATCH/$1/enabled" 2>/dev/null)" = 1 ] &&
		[ "$(cat "$LIVEPATCH/$1/transition" 2>/dev/null)" = 0 ]
}

# `lp_load NAME [PARAM=VALUE...]`: insmod, then wait for the transition to complete.
lp_load() {
	load "$@"
	loop_until 90 lp_settled "$1"
}

# `lp_unload NAME`: echo 0 > enabled, wait until the kernel has freed the patch, then rmmod.
lp_unload() {
	write "$LIVEPATCH/$1/enabled" 0
	loop_until 90 livepatch_gone "$1"
	rmmod "$1"
	not loaded "$1"
}

version_says() { grep -qx "$1" /proc/version; }
version_original() { grep -q '^Linux version ' /proc/version; }

lp_load_disable_unload() {
	version_original
	lp_load test_lp_a
	version_says "kpgen test lp a"
	# a livepatch module, not a patch of kpgen's core
	[ ! -e "$SYS/test_lp_a" ]
	tainted K
	# enabled: the patch holds its module
	not rmmod test_lp_a
	lp_unload test_lp_a
	version_original
}

lp_stacking() {
	lp_load test_lp_a
	lp_load test_lp_b
	version_says "kpgen test lp b"
	# removed in reverse order: the older one answers again, then the original
	lp_unload test_lp_b
	version_says "kpgen test lp a"
	lp_unload test_lp_a
	version_original
}

lp_module_target_loaded_before() {
	load kpgen_test_target
	[ "$(target_field value)" = 1 ]
	lp_load test_lp_module
	[ "$(target_field value)" = 7 ]
	[ "$(cat "$LIVEPATCH/test_lp_module/kpgen_test_target/patched")" = 1 ]
	# the module unloads while patched, and is patched again when it comes back
	rmmod kpgen_test_target
	load kpgen_test_target
	[ "$(target_field value)" = 7 ]
	lp_unload test_lp_module
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

lp_module_target_loaded_after() {
	lp_load test_lp_module
	[ "$(cat "$LIVEPATCH/test_lp_module/kpgen_test_target/patched")" = 0 ]
	load kpgen_test_target
	[ "$(target_field value)" = 7 ]
	rmmod kpgen_test_target
	lp_unload test_lp_module
	load kpgen_test_target
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

lp_unexported_symbols() {
	local cmdline
	cmdline=$(cat /proc/cmdline)
	# a vmlinux variable: a klp relocation the module loader writes as the module loads
	lp_load test_lp_ksym
	version_says "kpgen test lp ksym: $cmdline"
	lp_unload test_lp_ksym
	version_original
	# a module's static variable and the second of its two kpgen_test_dup() (sympos = 2; the
	# first would make it 430): livepatch writes them each time the module comes, loaded before
	# the patch or after it, and again after each reload
	load kpgen_test_target
	lp_load test_lp_modsym
	[ "$(target_field value)" = 440 ]
	rmmod kpgen_test_target
	load kpgen_test_target
	[ "$(target_field value)" = 440 ]
	rmmod kpgen_test_target
	load kpgen_test_target
	[ "$(target_field value)" = 440 ]
	lp_unload test_lp_modsym
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

# A variable the module lacks: livepatch refuses the patch while the module is loaded, and the
# module's load while the patch is, naming the symbol; nothing is left behind.
lp_missing_symbol_is_refused() {
	load kpgen_test_target
	expect_errno EINVAL load test_lp_mod_nosym
	kernel_said "^<3>livepatch: symbol 'kpgen_no_such_symbol' not found in symbol table$"
	not loaded test_lp_mod_nosym
	[ ! -e "$LIVEPATCH/test_lp_mod_nosym" ]
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	lp_load test_lp_mod_nosym
	expect_errno EINVAL load kpgen_test_target
	kernel_said "refusing to load module 'kpgen_test_target'"
	not loaded kpgen_test_target
	lp_unload test_lp_mod_nosym
	load kpgen_test_target
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

# The callbacks test_lp_callbacks logged since the scenario began, one per line, in order.
lp_callbacks_logged() {
	local log
	log=$(scenario_log) || return 1
	sed -n 's/^<6>test_lp_callbacks: //p' <<<"$log"
}

lp_callbacks_order() {
	local want
	# a refusing pre-patch callback refuses the load, and nothing is left
	expect_errno EPERM load test_lp_callbacks refuse=vmlinux
	not loaded test_lp_callbacks
	[ ! -e "$LIVEPATCH/test_lp_callbacks" ]
	load kpgen_test_target
	lp_load test_lp_callbacks
	grep -qx "kpgen test callbacks" /proc/version
	[ "$(target_field value)" = 4 ]
	# the module goes and comes: its callbacks run around its own (un)patching
	rmmod kpgen_test_target
	load kpgen_test_target
	rmmod kpgen_test_target
	lp_unload test_lp_callbacks
	want=$(printf '%s\n' "vmlinux pre_patch" "vmlinux pre_patch" "kpgen_test_target pre_patch" \
		"vmlinux post_patch" "kpgen_test_target post_patch" \
		"kpgen_test_target pre_unpatch" "kpgen_test_target post_unpatch" \
		"kpgen_test_target pre_patch" "kpgen_test_target post_patch" \
		"kpgen_test_target pre_unpatch" "kpgen_test_target post_unpatch" \
		"vmlinux pre_unpatch" "vmlinux post_unpatch")
	if [ "$(lp_callbacks_logged)" != "$want" ]; then
		echo "callbacks ran as: $(lp_callbacks_logged | tr '\n' ',')" >&2
		return 1
	fi
	version_original
}

lp_replace() {
	lp_load test_lp_a
	lp_load test_lp_b
	lp_load test_lp_replace
	version_says "kpgen test lp replace"
	# the replaced patches are freed by the kernel: their modules can go
	loop_until 30 livepatch_gone test_lp_a
	loop_until 30 livepatch_gone test_lp_b
	rmmod test_lp_b
	rmmod test_lp_a
	version_says "kpgen test lp replace"
	lp_unload test_lp_replace
	version_original
}

# --- a function some task always sleeps in -------------------------------------------------

LP_READERS=()
LP_FIFOS=""

# Starts three readers blocked in pipe_read() on FIFOs nobody writes (a writer holds each open).
lp_start_readers() {
	local i fifo
	LP_FIFOS=$(mktemp -d /tmp/kpgen-fifo.XXXXXX)
	for i in 1 2 3; do
		fifo=$LP_FIFOS/f$i
		mkfifo "$fifo"
		sleep 100000 >"$fifo" 2>/dev/null &
		LP_READERS+=("$!")
		cat "$fifo" >/dev/null 2>&1 </dev/null &
		LP_READERS+=("$!")
	done
	for i in 1 3 5; do
		loop_until 20 lp_in_func "${LP_READERS[$i]}" pipe_read
	done
}

lp_stop_readers() {
	local pid
	for pid in "${LP_READERS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	LP_READERS=()
	[ -n "$LP_FIFOS" ] && rm -rf "$LP_FIFOS"
	LP_FIFOS=""
	return 0
}

# `lp_in_func PID FUNCTION`: the task's kernel stack has a frame of exactly that function.
lp_in_func() {
	local stack
	stack=$(cat "/proc/$1/stack" 2>/dev/null) || return 1
	case $stack in
	*"] $2+"*) return 0 ;;
	esac
	return 1
}

lp_calls() { cat /sys/module/test_lp_pipe/parameters/calls; }

# Each reader sleeps in the replacement now: klp's fake signal restarted its read.
lp_readers_in_new_code() {
	local i
	for i in 1 3 5; do
		lp_in_func "${LP_READERS[$i]}" test_pipe_read || return 1
	done
}

lp_always_busy_function() {
	local before i
	trap 'rc=$?; lp_stop_readers; scenario_cleanup $rc' EXIT
	lp_start_readers
	# kpgen's core refuses: tasks are inside pipe_read()
	expect_errno EBUSY load test_pipe_kpatch
	mentioned "is inside function 'pipe_read'"
	not loaded test_pipe_kpatch
	# livepatch switches every task, the sleeping readers included
	lp_load test_lp_pipe
	loop_until 30 lp_readers_in_new_code
	before=$(lp_calls)
	[ "$(echo kpgen-pipe | cat)" = kpgen-pipe ]
	[ "$(lp_calls)" -gt "$before" ]
	for i in 1 3 5; do
		kill -0 "${LP_READERS[$i]}"
	done
	lp_unload test_lp_pipe
	for i in 1 3 5; do
		loop_until 30 lp_in_func "${LP_READERS[$i]}" pipe_read
	done
	[ "$(echo kpgen-pipe | cat)" = kpgen-pipe ]
	lp_stop_readers
}

scenario lp_load_disable_unload
scenario lp_stacking
scenario lp_module_target_loaded_before
scenario lp_module_target_loaded_after
scenario lp_unexported_symbols
scenario lp_missing_symbol_is_refused
scenario lp_callbacks_order
scenario lp_replace
scenario lp_always_busy_function 300
