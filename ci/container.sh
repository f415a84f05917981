#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the Dockerfile and run, inside the image, a Kbuild build (the core and the samples for
# the default kernel, with kpgen) and the unit tests (`make test-unit`).
#
#   ci/container.sh                  podman, no daemon: `make container-test`, and the test
#                                    tests/container/test_container.py of `make test`
#   ci/container.sh --engine docker  a Docker engine: `make docker-test`
#
# With podman, no daemon and no container registry is needed. As root, the script installs
# what is missing with apt (podman, buildah, runc, debootstrap), and makes the base image
# docker.io/library/debian:bookworm with debootstrap when it is not there yet (~1 min, once).
# The image build is cached in layers: a code change rebuilds only the last two.
# Every step prints the seconds elapsed since the start. Any failure exits 1 and says which step.
#
# Environment:
#   KPGEN_CONTAINER_ENGINE=podman|docker  the default engine (podman)
#   KPGEN_IMAGE=NAME                      the image built and run (kpgen:test)
#   KPGEN_DEBIAN_MIRROR=URL               debootstrap's mirror (default: this machine's apt
#                                         source for bookworm, else http://deb.debian.org/debian)
set -euo pipefail
# A new machine may run unattended upgrades at boot: wait up to 10 minutes for apt's and dpkg's
# locks instead of failing at once.
apt_wait=(-o DPkg::Lock::Timeout=600)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
start=$SECONDS

engine=${KPGEN_CONTAINER_ENGINE:-podman}
image=${KPGEN_IMAGE:-kpgen:test}
base=docker.io/library/debian:bookworm
logdir=$here/build/container

usage() { sed -n '4,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
	case $1 in
	--engine) engine=${2:?--engine needs podman or docker}; shift 2 ;;
	--engine=*) engine=${1#--engine=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "container: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

current="starting"
step() {
	current=$*
	printf '[container %4ds] %s\n' "$((SECONDS - start))" "$*"
}
reported=0
fail() {
	printf '[container %4ds] FAILED at "%s": %s\n' "$((SECONDS - start))" "$current" "$*" >&2
	reported=1
	exit 1
}
on_exit() {
	local status=$?
	if [ $status != 0 ] && [ $reported = 0 ]; then
		printf '[container %4ds] FAILED (exit %s) at "%s"\n' "$((SECONDS - start))" "$status" "$current" >&2
	fi
}
trap on_exit EXIT

is_root() { [ "$(id -u)" -eq 0 ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# The engine's command line. Podman runs without systemd here (cgroupfs) and with runc: Debian's
# default crun is not what podman finds first on every machine, and runc is known to work.
case $engine in
podman)
	ctr=(podman --runtime runc --cgroup-manager cgroupfs)
	# podman's default limits are above what a machine's hard limits may allow: runc then fails
	# with "error setting rlimits". These fit. (root, uid 0 of the host, is exempt from nproc.)
	run_opts=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network host)
	# docker format: the OCI format has no SHELL, and the RUN lines need pipefail
	build_opts=(--isolation=chroot --pull=never --format docker)
	tools=(podman buildah runc debootstrap)
	;;
docker)
	ctr=(docker)
	run_opts=()
	build_opts=()
	tools=(debootstrap)
	;;
*)
	fail "unknown engine '$engine' (podman or docker)"
	;;
esac
mkdir -p "$logdir"

# 1. the tools
step "checking the tools: ${tools[*]}"
missing=()
for pkg in "${tools[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done
if [ "$engine" = docker ] && ! docker info >/dev/null 2>&1; then
	fail "no Docker engine answers ('docker info' fails); without one, run 'make container-test' (podman, no daemon)"
fi
if [ ${#missing[@]} -gt 0 ]; then
	is_root || fail "missing: ${missing[*]}; run as root (sudo make container-test installs them) or: apt-get install ${missing[*]}"
	step "installing with apt: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq "${apt_wait[@]}"
	apt-get install -y -qq "${apt_wait[@]}" --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$engine" = podman ]; then
	is_root || fail "run as root (sudo make container-test): the image and its base live in root's podman storage"
	"${ctr[@]}" info --format '{{.Store.GraphDriverName}}' >"$logdir/podman-info.log" 2>&1 ||
		fail "podman does not work: 'podman info' says: $(cat "$logdir/podman-info.log")"
	step "podman $(podman version --format '{{.Client.Version}}'), storage driver $(cat "$logdir/podman-info.log")"
fi

# 2. the base image: debootstrap when it is not there (no registry is needed)
apt_source() { # the URI of this machine's apt source for a suite, if any
	# shellcheck disable=SC2016 # $(...) are apt's format fields, not the shell's
	apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null | awk -v s="$1" '$1 == s { print $2; exit }'
}
have_base=0
if "${ctr[@]}" image inspect "$base" >/dev/null 2>&1; then
	step "base image $base: present"
	have_base=1
elif [ "$engine" = docker ]; then
	# a Docker engine usually reaches Docker Hub; debootstrap is the fallback
	step "base image $base: pulling"
	docker pull -q "$base" && have_base=1
fi
if [ $have_base = 0 ]; then
	is_root || fail "the base image $base is missing; run as root to make it with debootstrap"
	mirror=${KPGEN_DEBIAN_MIRROR:-$(apt_source bookworm)}
	mirror=${mirror:-http://deb.debian.org/debian/}
	security=$(apt_source bookworm-security)
	security=${security:-http://deb.debian.org/debian-security/}
	root=$(mktemp -d /var/tmp/kpgen-bookworm.XXXXXX)
	trap 'rm -rf "$root"' INT TERM
	step "base image $base: debootstrap --variant=minbase bookworm from $mirror (log: build/container/debootstrap.log)"
	if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$logdir/debootstrap.log" 2>&1; then
		tail -20 "$logdir/debootstrap.log" >&2
		rm -rf "$root"
		fail "debootstrap failed (log: $logdir/debootstrap.log)"
	fi
	# the apt sources of Debian's own image: the release, its updates and the security archive
	# (the kernels come from bookworm-security)
	rm -f "$root/etc/apt/sources.list" "$root/etc/hostname" "$root/etc/resolv.conf"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $mirror
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $security
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
	step "base image $base: importing ($(du -sh "$root" | cut -f1))"
	tar --numeric-owner -C "$root" -c . |
		"${ctr[@]}" import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm $mirror" - "$base" >/dev/null
	rm -rf "$root"
	trap - INT TERM
fi

# 3. the image
# pip in the image trusts the CAs this machine trusts (needed behind an HTTPS proxy with its own
# CA, added to /usr/local/share/ca-certificates), through a build secret kept out of the image
cacert=/etc/ssl/certs/ca-certificates.crt
if [ -s $cacert ]; then
	build_opts+=(--secret "id=cacert,src=$cacert")
fi
old=$("${ctr[@]}" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
step "building $image from the Dockerfile (log: build/container/build.log): cached layers are reused; the apt layer takes ~3 min when it is built"
if ! "${ctr[@]}" build "${build_opts[@]}" -t "$image" . >"$logdir/build.log" 2>&1; then
	tail -40 "$logdir/build.log" >&2
	fail "the image build failed (log: $logdir/build.log)"
fi
grep -E '^(STEP|Step) |Using cache|^\[provision' "$logdir/build.log" | sed 's/^/    /' || true
new=$("${ctr[@]}" image inspect --format '{{.Id}}' "$image")
# the image it replaces, unless something else still uses it
if [ -n "$old" ] && [ "$old" != "$new" ]; then
	"${ctr[@]}" rmi "$old" >/dev/null 2>&1 || true
fi
step "built $image (${new:0:12}, $("${ctr[@]}" image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"

# 4. inside the image
in_image() { "${ctr[@]}" run --rm "${run_opts[@]}" "$image" "$@"; }

step "checking that the image holds no build output"
found=$(in_image find /src \( -path /src/build -o -name '*.o' -o -name '*.ko' \) -print -quit)
[ -z "$found" ] || fail "the image holds build output ($found): check .dockerignore"

# the host's make test builds every kernel; in the image, one build of the default kernel's
# core and samples shows that the image can build modules, at a fraction of the time
step "a Kbuild build in the image: kpgen generate and kpgen build for the default kernel (W=1, ELF checks)"
in_image bash -c 'set -e; kpgen generate -o /tmp/tree; kpgen build /tmp/tree/core;
	kpgen build --core /tmp/tree/core /tmp/tree/patches/*'

step "the unit tests in the image: make test-unit"
in_image make test-unit

current="done"
step "done: $engine built $image and ran a Kbuild build and the unit tests in it"
