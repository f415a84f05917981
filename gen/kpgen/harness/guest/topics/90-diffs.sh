#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines TREE and SYS.
# shellcheck disable=SC2153,SC2154
#
# Live patches made by `kpgen diff` from the diff corpus: one scenario per directory
# TREE/diffs/<case>/, which holds the case's patch module (<case>.ko), its executable
# `loaded` check and, for a case whose check sets something up (mounts a file system,
# loads the module it patches), an executable `cleanup`; and TREE/diffs-livepatch/<case>/
# for the cases built for the livepatch backend too. The contract, as kpatch's integration
# tests keep it: `loaded` fails before the module is loaded, passes while it is, and fails
# after the patch is disabled and removed.

diff_contract() {
	local case=$1 dir="$TREE/diffs/$1"
	[ -x "$dir/loaded" ] || fatal "$dir/loaded is missing or not executable"
	use_core normal
	not "$dir/loaded"
	load "$case"
	enabled "$case" 1
	"$dir/loaded"
	unload "$case"
	not "$dir/loaded"
	if [ -x "$dir/cleanup" ]; then
		"$dir/cleanup"
	fi
}

# The same for the case's livepatch-backend module (lp_load and lp_unload: 87-livepatch.sh).
diff_contract_livepatch() {
	local case=$1 dir="$TREE/diffs-livepatch/$1"
	[ -x "$dir/loaded" ] || fatal "$dir/loaded is missing or not executable"
	not "$dir/loaded"
	insmod "$(ko "$case" diffs-livepatch)"
	loop_until 90 lp_settled "$case"
	"$dir/loaded"
	lp_unload "$case"
	not "$dir/loaded"
	if [ -x "$dir/cleanup" ]; then
		"$dir/cleanup"
	fi
}

if [ -d "$TREE/diffs" ]; then
	for dir in "$TREE"/diffs/*/; do
		[ -d "$dir" ] || continue
		case=$(basename "$dir")
		scenario "diff_$case" 120 -- diff_contract "$case"
	done
fi

if [ -d "$TREE/diffs-livepatch" ]; then
	for dir in "$TREE"/diffs-livepatch/*/; do
		[ -d "$dir" ] || continue
		case=$(basename "$dir")
		scenario "diff_livepatch_$case" 120 -- diff_contract_livepatch "$case"
	done
fi

# kpatch's integration suite, each case made by `kpgen diff --build` for each backend: one
# scenario per directory TREE/kpatch-suite/<case>-<backend>/, which holds the module, the
# files `module` (its name) and `backend`, and either kpatch's `loaded` test (fails before the
# load, passes while the patch is applied, fails after its removal) or kpgen's `exercise`
# (runs the patched code while it is applied), and perhaps a `cleanup`. LOADED tests were
# written for a distribution's userland: kpatch-suite/bin gives them a sudo.

suite_load() {
	if [ "$2" = livepatch ]; then lp_load "$1"; else use_core normal && load "$1" && enabled "$1" 1; fi
}

suite_unload() {
	if [ "$2" = livepatch ]; then lp_unload "$1"; else unload "$1" && not loaded "$1"; fi
}

suite_contract() {
	local dir="$TREE/kpatch-suite/$1" name backend
	name=$(<"$dir/module")
	backend=$(<"$dir/backend")
	grep -qs ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug
	if [ -x "$dir/loaded" ]; then
		PATH="$TREE/kpatch-suite/bin:$PATH" not bash "$dir/loaded"
		suite_load "$name" "$backend"
		PATH="$TREE/kpatch-suite/bin:$PATH" bash "$dir/loaded"
		suite_unload "$name" "$backend"
		PATH="$TREE/kpatch-suite/bin:$PATH" not bash "$dir/loaded"
	else
		suite_load "$name" "$backend"
		"$dir/exercise"
		suite_unload "$name" "$backend"
	fi
	if [ -x "$dir/cleanup" ]; then
		"$dir/cleanup"
	fi
}

if [ -d "$TREE/kpatch-suite" ]; then
	for dir in "$TREE"/kpatch-suite/*/; do
		[ -f "$dir/module" ] || continue
		case=$(basename "$dir")
		scenario "kpatch_${case//-/_}" 180 -- suite_contract "$case"
	done
fi
