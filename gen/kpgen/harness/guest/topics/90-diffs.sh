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
