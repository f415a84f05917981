#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines SYS, PARAMS, TRACING, LIVEPATCH and SLEEPER.
# shellcheck disable=SC2153,SC2154
#
# Stacking: several patch modules replace one function; the newest enabled one answers.

stack_a_then_b_shows_b() {
	load cmdline_a
	visible cmdline_a
	load cmdline_b
	visible cmdline_b
	not visible cmdline_a
	unload cmdline_b
	unload cmdline_a
	original_cmdline
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

scenario stack_a_then_b_shows_b
scenario unload_b_shows_a
scenario unload_a_first_keeps_b
