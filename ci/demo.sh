#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# The demo of docs/testing.md: generate the core and samples for the default kernel, build them, boot
# that kernel under QEMU and watch /proc/cmdline being patched, stacked and unpatched.
set -euo pipefail
cd "$(dirname "$0")/.."

kdir=${KDIR:-$(find /lib/modules -maxdepth 2 -path '/lib/modules/6.1.*[0-9]-amd64/build' | sort -V | tail -1)}
if [ -z "$kdir" ]; then
	echo "demo: no 6.1 kernel headers found: run 'make provision' first" >&2
	exit 1
fi
out=build/demo
rm -rf "$out"
kpgen generate --kdir "$kdir" -o "$out"
kpgen build --kdir "$kdir" "$out/core"
kpgen build --kdir "$kdir" --core "$out/core" "$out"/patches/*
release=$(basename "$(dirname "$kdir")")
echo "demo: booting $release under QEMU (TCG: about a minute)"
kpgen vm --kdir "$kdir" "bash $PWD/ci/demo-guest.sh $PWD/$out"
