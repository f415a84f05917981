#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Guest side of the demo: one function patched, stacked and unpatched, shown step by step.
set -euo pipefail
tree=$1

show() {
	echo
	echo "### $1"
	echo "\$ cat /proc/cmdline"
	cut -c 1-70 /proc/cmdline
}

show "before any patch"
insmod "$tree/core/kpatch.ko"
insmod "$tree/patches/cmdline_a/cmdline_a.ko"
show "after insmod cmdline_a.ko"
insmod "$tree/patches/cmdline_b/cmdline_b.ko"
show "after insmod cmdline_b.ko (stacked on cmdline_a)"
echo 0 >/sys/kernel/kpatch/cmdline_b/enabled
rmmod cmdline_b
show "after disabling and removing cmdline_b"
echo 0 >/sys/kernel/kpatch/cmdline_a/enabled
rmmod cmdline_a
show "after disabling and removing cmdline_a"
echo
echo "### kernel log"
dmesg | grep 'kpatch:'
rmmod kpatch
