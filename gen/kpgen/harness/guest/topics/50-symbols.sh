#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Symbols: unexported and static symbols reached by name, same-named functions told apart by
# sympos, and ambiguous names refused.

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
	expect_errno EINVAL load test_ambiguous
	logged "<3>function 'kpgen_test_dup' appears 2 times in kpgen_test_target: set sympos to 1..2 to choose one"
	[ ! -e "$SYS/test_ambiguous" ]
	rmmod kpgen_test_target
	# loaded first, the patch waits for the module, then refuses to let it load
	load test_ambiguous
	expect_errno EINVAL load kpgen_test_target
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_ambiguous' cannot be applied to it (-22)"
	not loaded kpgen_test_target
	[ -z "$(hooked)" ]
	unload test_ambiguous
	load kpgen_test_target
	[ "$(target_field dup)" = 10,20 ]
	rmmod kpgen_test_target
}

scenario static_symbol_declared_by_source
scenario module_symbols_follow_the_module
scenario sympos_selects_duplicate
scenario ambiguous_name_is_refused
