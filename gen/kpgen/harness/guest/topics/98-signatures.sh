#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines TREE and the helpers; 95-delivery.sh defines KPGEN,
# has and exited.
# shellcheck disable=SC2153,SC2154
#
# Module signatures.  A signed module's signature reads back alike in `kpgen check` and in kmod's
# modinfo.  Then the kernel enforces signatures: module.sig_enforce is turned on at run time (the
# parameter can be turned on, never off, and is the variable `module.sig_enforce=1` on the
# command line sets), and `kpgen load` of an unsigned module fails saying that the kernel
# requires signed modules.  The key that signed the other module is not one the kernel trusts:
# a QEMU guest without UEFI firmware has no MOK list to enrol it in (docs/delivery.md says how
# on a real machine), so that load is refused too, naming the signer.
#
# This topic runs last (a topic after it fails at once): once on, enforcement stays on until the
# guest powers off, and every unsigned module of the tree would be refused.

signatures_enforced() {
	local rel signed unsigned out key rc=0
	[ "${SCENARIOS[-1]}" = "$SCENARIO" ] ||
		fatal "$SCENARIO must be the last scenario: ${SCENARIOS[-1]} comes after it, and would find every unsigned module refused"
	read -r rel </proc/sys/kernel/osrelease
	signed=$TREE/delivery/modules/signed/test_fleet_v1.ko
	unsigned=$(ko test_fleet_v1 patches)

	out=$("$KPGEN" check --kdir "/lib/modules/$rel/build" --core "$TREE/core" "$signed" "$unsigned")
	has "$signed: ok" "$out"
	has "$unsigned: ok" "$out"
	has "$unsigned: not signed" "$out"
	has "$signed: signed by 'kpgen throwaway test key' (key " "$out"
	key=${out##*"$signed: signed by 'kpgen throwaway test key' (key "}
	key=${key%%,*}
	[ "$(modinfo -F signer "$signed")" = "kpgen throwaway test key" ]
	[ "$(modinfo -F sig_key "$signed")" = "$key" ]
	[ "$(modinfo -F sig_hashalgo "$signed")" = sha256 ]
	[ -z "$(modinfo -F signer "$unsigned")" ]

	write /sys/module/module/parameters/sig_enforce 1
	[ "$(</sys/module/module/parameters/sig_enforce)" = Y ]
	out=$("$KPGEN" load "$unsigned" 2>&1) || rc=$?
	exited 5 "$rc" "$out"
	has "the kernel requires signed modules (module.sig_enforce=1), and $unsigned is not signed" "$out"
	has "Loading of unsigned module is rejected" "$out"
	rc=0
	out=$("$KPGEN" load "$signed" 2>&1) || rc=$?
	exited 5 "$rc" "$out"
	has "does not trust the key $signed is signed by 'kpgen throwaway test key'" "$out"
	has "Loading of module with unavailable key is rejected" "$out"
	not loaded test_fleet_v1
}

if [ -d "$TREE/delivery" ]; then
	scenario signatures_enforced 180
fi
