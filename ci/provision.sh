#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The one provisioning script of kpgen: installs everything a fresh Debian 12 machine needs to
# generate, build and boot-test the modules (apt packages for both target kernels, QEMU and the
# build tools; the Python package with its test dependencies).  Used by `make provision`,
# `.ci/run` and the Dockerfile.  Safe to run again: every step is idempotent.
#
# Environment:
#   KPGEN_KERNELS   apt names of the kernel flavours to install (default: the 6.1 and 6.12 ones)
#   KPGEN_NO_PIP=1  skip the Python package (the Dockerfile installs it in its own layer)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kernels=${KPGEN_KERNELS:-"linux-image-amd64 linux-headers-amd64 linux-image-6.12-amd64 linux-headers-6.12-amd64"}
start=$SECONDS

step() { printf '[provision %4ds] %s\n' "$((SECONDS - start))" "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "provision: must run as root (apt-get install)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
step "apt-get update"
apt-get update -qq

# shellcheck disable=SC2086 # word splitting of the kernel package list is intended
step "installing build tools, QEMU and kernels: $kernels"
apt-get install -y -qq --no-install-recommends \
	build-essential bc bison flex libelf-dev kmod cpio \
	qemu-system-x86 qemu-utils busybox-static udev \
	python3 python3-pip python3-venv git make sparse \
	$kernels >/dev/null

if [ "${KPGEN_NO_PIP:-0}" != 1 ]; then
	step "installing the kpgen Python package (editable, with test extras)"
	python3 -m pip install --quiet --disable-pip-version-check -e "$here[test]"
fi
step "done"
