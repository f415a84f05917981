#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The one provisioning script of kpgen.  It installs what a fresh Debian 12 machine needs to
# generate, build and boot-test the modules: build tools, QEMU, the kernels of
# gen/kpgen/data/kernels.toml (image and headers), the kpgen Python package with its test tools, and the
# linters that the tests run (shellcheck from apt; ruff, mypy and hadolint from pip).
# `make provision`, `.ci/run` and the Dockerfile all run it.  Idempotent; run as root.
#
#   ci/provision.sh              install (or update) everything
#   ci/provision.sh --if-needed  do nothing, quickly, when everything is already there
#
# Environment:
#   KPGEN_NO_PIP=1   skip the Python package (e.g. to install it elsewhere)
#   KPGEN_NO_SOURCES=1  skip the kernels' sources that kpgen diff reads (~1 GiB unpacked;
#                    `kpgen source` fetches a kernel's when it is needed)
#   KPGEN_NO_APT=1   skip the apt packages: install the Python package only (the Dockerfile
#                    installs the apt packages in an earlier layer, before the source is copied)
#
# The static checks of the generated C (tests/kbuild/test_static.py) use sparse, from Debian,
# and the kernel's checkpatch.pl, which no Debian package installs: it is taken from
# linux-source-6.1 and kept, with the data files it reads beside it (spelling.txt,
# const_structs.checkpatch), in $checkpatch_dir/scripts/.  kpgen/cstyle.py looks for it there
# (or at $KPGEN_CHECKPATCH).
set -euo pipefail
# A new machine may run unattended upgrades at boot: wait up to 10 minutes for apt's and dpkg's
# locks instead of failing at once.
apt_wait=(-o DPkg::Lock::Timeout=600)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$SECONDS
checkpatch_dir=/usr/local/share/kpgen/checkpatch
checkpatch_files=(scripts/checkpatch.pl scripts/spelling.txt scripts/const_structs.checkpatch)

kernel_packages() {
	python3 - "$here/gen/kpgen/data/kernels.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    for kernel in tomllib.load(fh)["kernel"]:
        print("\n".join(kernel["packages"]))
PY
}

if [ "${1:-}" = --if-needed ]; then
	missing=0
	# the linters that the tests run (tests/unit/test_static_checks.py), sparse for the kbuild tests
	for cmd in qemu-system-x86_64 make gcc vng kpgen shellcheck ruff mypy hadolint sparse; do
		command -v "$cmd" >/dev/null 2>&1 || missing=1
	done
	for f in "${checkpatch_files[@]}"; do
		[ -s "$checkpatch_dir/$f" ] || missing=1
	done
	# the Python package must be this checkout's (another clone may have installed its own)
	if [ $missing = 0 ] && ! python3 -c 'import kpgen, matplotlib, pathlib, sys
sys.exit(not pathlib.Path(kpgen.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()))' \
		"$here" 2>/dev/null; then
		missing=1
	fi
	if [ $missing = 0 ]; then
		for pkg in $(kernel_packages); do
			dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing=1
		done
	fi
	# the exact sources kpgen diff works on (tests/kbuild/test_diffs.py, the boot trees' diff cases)
	if [ "${KPGEN_NO_SOURCES:-0}" != 1 ]; then
		[ $missing = 1 ] || python3 -m kpgen.source --check-cached >/dev/null 2>&1 || missing=1
	fi
	[ $missing = 1 ] || exit 0
	echo "provision: something is missing; installing"
fi

step() { printf '[provision %4ds] %s\n' "$((SECONDS - start))" "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "provision: run as root (it uses apt-get install)" >&2
	exit 1
fi

if [ "${KPGEN_NO_APT:-0}" != 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	step "apt-get update"
	apt-get update -qq "${apt_wait[@]}"

	step "installing build tools, QEMU, Python, shellcheck and sparse"
	apt-get install -y -qq "${apt_wait[@]}" --no-install-recommends \
		build-essential bc bison flex libelf-dev kmod cpio ca-certificates openssl \
		qemu-system-x86 qemu-utils busybox-static udev procps \
		python3 python3-dev python3-pip python3-venv git make shellcheck sparse >/dev/null

	mapfile -t kernels < <(kernel_packages)
	step "installing kernels: ${kernels[*]}"
	apt-get install -y -qq "${apt_wait[@]}" --no-install-recommends "${kernels[@]}" >/dev/null

	step "extracting checkpatch.pl from linux-source-6.1 into $checkpatch_dir"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# (as root: apt's _apt user may not write into the private temporary directory)
	(cd "$tmp" && apt-get download -qq "${apt_wait[@]}" -o APT::Sandbox::User=root linux-source-6.1)
	dpkg-deb --fsys-tarfile "$tmp"/linux-source-6.1_*.deb | tar -xO ./usr/src/linux-source-6.1.tar.xz |
		tar -xJ -C "$tmp" --strip-components=1 "${checkpatch_files[@]/#/linux-source-6.1/}"
	mkdir -p "$checkpatch_dir/scripts"
	for f in "${checkpatch_files[@]}"; do
		install -m "$([ "$f" = scripts/checkpatch.pl ] && echo 755 || echo 644)" "$tmp/$f" "$checkpatch_dir/$f"
	done
	rm -rf "$tmp"
fi

if [ "${KPGEN_NO_PIP:-0}" != 1 ]; then
	step "installing the kpgen Python package (editable, with test extras: pytest, the linters; and matplotlib)"
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
		--break-system-packages -e "${here}[test,bench]"
fi
if [ "${KPGEN_NO_SOURCES:-0}" = 1 ]; then
	step "the kernels' sources for kpgen diff: skipped (KPGEN_NO_SOURCES=1; \`kpgen source\` fetches one later)"
elif ! python3 -c 'import kpgen' 2>/dev/null; then
	step "the kernels' sources for kpgen diff: skipped, kpgen is not installed yet (run this script again with it)"
else
	step "the exact sources of the kernels for kpgen diff (linux-source-X.Y, unpacked once into kpgen's cache)"
	python3 -m kpgen.source --fetch-matrix
fi
step "done"
