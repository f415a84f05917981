#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Module targets: a patch of kpgen_test_target, loaded before or after it, across reloads;
# targets ftrace cannot hook.

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
	[ -z "$(hooked)" ]
}

module_target_loaded_after() {
	load test_module_value
	enabled test_module_value 1
	[ -z "$(hooked)" ]
	load kpgen_test_target
	[ "$(target_field value)" = 2 ]
	grep -q "^kpgen_test_target_value .*kpgen_test_target" <<<"$(hooked)"
	unload test_module_value
	[ "$(target_field value)" = 1 ]
	rmmod kpgen_test_target
}

untraceable_targets_refused() {
	local before
	load kpgen_test_target
	before=$(hooked)
	expect_errno EINVAL load test_notrace
	logged "<3>function 'kpgen_test_notrace' cannot be hooked by ftrace (-22): is it notrace or inlined?"
	expect_errno EINVAL load test_init
	logged "<3>function 'start_kernel' is __init code, freed after boot: it cannot be patched"
	[ ! -e "$SYS/test_notrace" ]
	[ ! -e "$SYS/test_init" ]
	not loaded test_notrace
	not loaded test_init
	[ "$(hooked)" = "$before" ]
	[ "$(target_field notrace)" = 100 ]
	rmmod kpgen_test_target
}

scenario module_target_loaded_before
scenario module_target_loaded_after
scenario untraceable_targets_refused
