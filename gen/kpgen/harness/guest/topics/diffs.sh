#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Topic: live patches made by `kpgen diff` from the diff corpus.
#
# One scenario per directory TREE/diffs/<case>/, which holds the case's patch module
# (<case>.ko) and its executable `loaded` check. The contract, as kpatch's integration
# tests keep it: `loaded` fails before insmod, passes after, fails after the patch is
# disabled and removed.
# shellcheck shell=bash

diff_contract() {
	local case=$1 dir="$TREE/diffs/$1"
	[ -x "$dir/loaded" ] || { echo "# $dir/loaded is missing or not executable"; return 1; }
	[ -f "$dir/$case.ko" ] || { echo "# $dir/$case.ko is missing"; return 1; }
	not "$dir/loaded"
	loaded kpatch || insmod "$(ko kpatch)"
	insmod "$dir/$case.ko"
	enabled "$case" 1
	"$dir/loaded"
	unload "$case"
	not "$dir/loaded"
}

if [ -d "$TREE/diffs" ]; then
	for dir in "$TREE"/diffs/*/; do
		[ -d "$dir" ] || continue
		case=$(basename "$dir")
		scenario "diff_$case" 120 -- diff_contract "$case"
	done
fi
