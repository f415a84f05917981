#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Symbols: unexported and static symbols used through klp relocations, same-named functions
# told apart by sympos, and ambiguous or missing names refused.

# A static kernel function no header declares: the source declares it and calls it directly,
# a klp relocation the module loader writes as the patch module loads.
static_symbol_declared_by_source() {
	not grep -q "^kpgen test static:" /proc/meminfo
	load test_static_sym
	grep -q "^kpgen test static: .*virtme" /proc/meminfo
	unload test_static_sym
	not grep -q "^kpgen test static:" /proc/meminfo
	grep -q "^MemTotal:" /proc/meminfo
}

# A patch of a module that uses the module's own static variable and a static function chosen
# by sympos: the core writes their klp relocations whenever the module comes and clears them
# as it goes, so the module may load before or after the patch, reload while it is applied, or
# reload while it is disabled.
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

# A symbol the running kernel lacks: the module loader refuses the patch module and names the
# symbol.  One its module lacks: the core refuses the patch while the module is loaded, and the
# module's load while the patch is.  Nothing is left behind either way.
missing_symbol_is_refused() {
	expect_errno EINVAL load test_missing_sym
	kernel_said "^<3>livepatch: symbol 'kpgen_no_such_symbol' not found in symbol table$"
	not loaded test_missing_sym
	[ ! -e "$SYS/test_missing_sym" ]
	load kpgen_test_target
	expect_errno EINVAL load test_mod_nosym
	kernel_said "^<3>livepatch: symbol 'kpgen_no_such_symbol' not found in symbol table$"
	logged "<3>patch module 'test_mod_nosym': cannot write its klp relocations for module 'kpgen_test_target': -22"
	not loaded test_mod_nosym
	[ ! -e "$SYS/test_mod_nosym" ]
	[ -z "$(hooked)" ]
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
	load test_mod_nosym
	expect_errno EINVAL load kpgen_test_target
	logged "<3>refusing to load module 'kpgen_test_target': patch module 'test_mod_nosym' cannot be applied to it (-22)"
	not loaded kpgen_test_target
	[ -z "$(hooked)" ]
	unload test_mod_nosym
	load kpgen_test_target
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

scenario static_symbol_declared_by_source
scenario module_symbols_follow_the_module
scenario sympos_selects_duplicate
scenario ambiguous_name_is_refused
scenario missing_symbol_is_refused
