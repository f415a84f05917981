#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Sourced by run.sh after lib.sh, which defines TREE, SYS, LIVEPATCH, SLEEPER and the helpers.
# shellcheck disable=SC2153,SC2154
#
# Delivering live patches (docs/delivery.md), with what a target machine runs: the package that
# `kpgen package` made (TREE/delivery/debs/: version 1 holds test_fleet_v1, version 2 the
# cumulative test_fleet_v2, both with the core) installed, upgraded and removed with dpkg, the
# boot unit's start command, and `kpgen load|unload|list|info` (TREE/delivery/kpgen: this
# checkout's kpgen).  The guest's root is the host's, read-only, under virtme-ng's overlays:
# /var (dpkg's database), /usr, /lib and /etc are writable in the guest, and every write is lost
# at its end, so no option of the boot is needed and the host's dpkg database never changes.
#
# Two things are made small, for time, and nothing else differs from a machine: dpkg works on a
# database of its own (--admindir) holding the installed kernel package, which the package
# depends on, copied from the system's; and /lib/modules/RELEASE is a scratch directory holding
# the kernel's module lists but not its 4000 modules, so that the maintainer scripts' depmod
# reads only the patches.  Over 9p under TCG, each dpkg call would first read the file lists of
# every installed package (775 here), and each depmod the whole module tree (391 MB on 6.1,
# 4000 .ko.xz files to decompress on 6.12): 1-2 minutes a call.  KPGEN_DELIVERY_SYSTEM_DPKG=1
# uses the system's database and module tree all the same.

KPGEN=$TREE/delivery/kpgen

# `fleet_says N`: /proc/cmdline is what version N of the test fix prints.
fleet_says() { [ "$(</proc/cmdline)" = "kpgen fleet v$1" ]; }
cmdline_unpatched() { [[ "$(</proc/cmdline)" != "kpgen "* ]]; }

# The unit of a release: systemd escapes what unit names may not hold (the '+' of 6.12's).
unit_of() { echo "kpgen@${1//+/\\x2b}.service"; }

DL_DB=/tmp/kpgen-delivery-dpkg

# `dl_dpkg ARGS...`: dpkg on the scenario's database (see above).
dl_dpkg() {
	if [ "${KPGEN_DELIVERY_SYSTEM_DPKG:-0}" = 1 ]; then
		dpkg "$@"
	else
		dpkg --admindir="$DL_DB" "$@"
	fi
}

# `dl_dpkg_db RELEASE`: the database dl_dpkg uses, holding linux-image-RELEASE as installed.
dl_dpkg_db() {
	rm -rf "$DL_DB"
	mkdir -p "$DL_DB/info" "$DL_DB/updates" "$DL_DB/triggers"
	dpkg-query --status "linux-image-$1" >"$DL_DB/status"
	cp "/var/lib/dpkg/info/linux-image-$1.list" "$DL_DB/info/"
	: >"$DL_DB/available"
}

DL_MODULES=/tmp/kpgen-delivery-modules

# `dl_modules_tree RELEASE`: /lib/modules/RELEASE made a scratch directory (see above), indexed.
dl_modules_tree() {
	local real=/lib/modules/$1 name
	[ "${KPGEN_DELIVERY_SYSTEM_DPKG:-0}" = 1 ] && return 0
	mkdir -p "$DL_MODULES"
	for name in modules.builtin modules.builtin.modinfo modules.order; do
		[ -e "$real/$name" ] && cp "$real/$name" "$DL_MODULES/"
	done
	mount --bind "$DL_MODULES" "$real"
	depmod -a "$1"
}

dl_modules_restore() {
	local real=/lib/modules/$1
	if [ -d "$DL_MODULES" ]; then
		umount "$real" || { fuser -vm "$real" >&2; umount --lazy "$real"; }
		rm -rf "$DL_MODULES"
	fi
	return 0
}

# `exited STATUS RC OUTPUT`: a command that was expected to exit STATUS exited RC (else its
# output is shown).
exited() {
	[ "$2" = "$1" ] && return 0
	printf 'expected exit %s, got %s; it said:\n%s\n' "$1" "$2" "$3" >&2
	return 1
}

# `has TEXT STRING`: STRING holds TEXT (else both are shown).
has() {
	[[ $2 == *"$1"* ]] && return 0
	printf 'expected %q in:\n%s\n' "$1" "$2" >&2
	return 1
}

# a release no kernel of the guest has, whose patches must be kept and ignored
DL_OTHER=9.9.9-kpgen-test

deliver_package_install_upgrade_remove() {
	local rel pkg dir unit out start before after path info rc other=$DL_OTHER
	read -r rel </proc/sys/kernel/osrelease
	pkg=kpgen-patches-$rel
	dir=/lib/modules/$rel/extra/kpgen
	unit=$(unit_of "$rel")
	trap 'rc=$?; rm -rf "/lib/modules/$DL_OTHER" "$DL_DB" "$DL_DB.order"; dl_modules_restore "$(uname -r)"; scenario_cleanup $rc' EXIT
	dl_dpkg_db "$rel"
	dl_modules_tree "$rel"
	# the package brings its own core
	use_core none
	before=$(cd "/lib/modules/$rel" && md5sum modules.*)
	not fleet_says 1
	[ ! -e "$dir" ]

	# install: the postinst applies the patches (no systemd in the guest: it runs the loader)
	out=$(dl_dpkg -i "$TREE/delivery/debs/${pkg}_1_amd64.deb" 2>&1)
	has "kpgen: $rel: kpatch: loaded (kpgen's core)" "$out"
	has "kpgen: $rel: test_fleet_v1: loaded" "$out"
	fleet_says 1
	enabled test_fleet_v1 1

	# the unit's start command, as systemd runs it at boot, loads what is installed, in order
	"$KPGEN" unload test_fleet_v1 kpatch
	cmdline_unpatched
	start=$(sed -n 's/^ExecStart=//p' "/lib/systemd/system/$unit")
	[ -L "/lib/systemd/system/sysinit.target.wants/$unit" ]
	# shellcheck disable=SC2086 # the command line as systemd splits it (no quotes in it)
	out=$($start)
	has "kpgen: $rel: kpatch: loaded (kpgen's core)"$'\n'"kpgen: $rel: test_fleet_v1: loaded" "$out"
	fleet_says 1
	# another build of the release gets nothing, and the unit fails, saying so
	cp "$dir/order" "$DL_DB.order"
	sed -i 's/^# version: .*/# version: #9 another build/' "$dir/order"
	rc=0
	out=$($start) || rc=$?
	exited 1 "$rc" "$out"
	has "not loaded: they were made for the build '#9 another build' of $rel, and the running kernel is '$(uname -v)'" \
		"$out"
	cp "$DL_DB.order" "$dir/order"

	# the patches of another release are kept and ignored, with a message
	mkdir -p "/lib/modules/$other/extra/kpgen"
	cp "$dir/order" "/lib/modules/$other/extra/kpgen/order"
	out=$("/usr/lib/kpgen/$rel/kpgen-patches" apply "$other")
	[ "$out" = "kpgen: $other: kept for that kernel and not loaded: the running kernel is $rel" ]

	# kpgen list: live, with its function, and installed for boot, this release's and the other's
	out=$("$KPGEN" list)
	has "test_fleet_v1  kpatch  enabled" "$out"
	has "vmlinux cmdline_proc_show  active" "$out"
	has "$rel (running): kpatch (loaded), test_fleet_v1 (loaded)" "$out"
	has "$other: kpatch, test_fleet_v1 (kept: they load when that kernel boots)" "$out"
	rm -rf "/lib/modules/$other"
	# kpgen info of the installed patch: its spec, its source diff and its signer
	out=$("$KPGEN" info test_fleet_v1)
	has 'replace = true' "$out"
	has "+	seq_puts(m, \"kpgen fleet v1\\n\");" "$out"
	has "signed by 'kpgen throwaway test key'" "$out"

	# upgrade: the cumulative version 2 loads and takes over, then version 1 goes
	out=$(dl_dpkg -i "$TREE/delivery/debs/${pkg}_2_amd64.deb" 2>&1)
	has "kpgen: $rel: test_fleet_v2: loaded" "$out"
	has "kpgen: $rel: test_fleet_v1: unloaded" "$out"
	fleet_says 2
	not loaded test_fleet_v1
	[ ! -e "$dir/test_fleet_v1.ko" ]
	[ "$(dl_dpkg -s "$pkg" | sed -n 's/^Version: //p')" = 2 ]
	[ "$(<"$dir/order")" = "$(printf '%s\n' "# kpgen: the live patches of $rel, loaded in this order at boot" \
		"# version: $(uname -v)" kpatch test_fleet_v2)" ]

	# removal: the running kernel unpatched, and nothing of the package left on disk but what
	# dpkg keeps of any package with a postrm until it is purged
	out=$(dl_dpkg -r "$pkg" 2>&1)
	has "kpgen: $rel: test_fleet_v2: unloaded" "$out"
	not loaded test_fleet_v2
	not loaded kpatch
	cmdline_unpatched
	for path in "$dir" "/lib/modules/$rel/extra" /usr/lib/kpgen "/lib/systemd/system/$unit" \
		"/lib/systemd/system/sysinit.target.wants/$unit" "/usr/share/doc/$pkg" /run/kpgen; do
		if [ -e "$path" ] || [ -L "$path" ]; then
			echo "left on disk: $path" >&2
			return 1
		fi
	done
	after=$(cd "/lib/modules/$rel" && md5sum modules.*)
	[ "$before" = "$after" ]
	info=/var/lib/dpkg/info
	[ "${KPGEN_DELIVERY_SYSTEM_DPKG:-0}" = 1 ] || info=$DL_DB/info
	has "Status: deinstall ok config-files" "$(dl_dpkg -s "$pkg")"
	[ "$(echo "$info/$pkg".*)" = "$info/$pkg.list $info/$pkg.postrm" ]
	dl_dpkg -P "$pkg" >/dev/null
	if compgen -G "$info/$pkg.*" >/dev/null; then
		echo "dpkg keeps: $(echo "$info/$pkg".*)" >&2
		return 1
	fi
	not dl_dpkg -s "$pkg"
}

# --- a task in the patched function -----------------------------------------------------------

DL_FIFO=""
DL_WRITER=""
DL_READER=""

# Starts a reader blocked in pipe_read() (or its replacement) on a FIFO whose writer stays
# silent; killing the writer (dl_release) makes the reader leave: it reads EOF and exits.
dl_start_reader() {
	DL_FIFO=$(mktemp -u /tmp/kpgen-delivery.XXXXXX)
	mkfifo "$DL_FIFO"
	sleep 100000 >"$DL_FIFO" 2>/dev/null &
	DL_WRITER=$!
	cat "$DL_FIFO" >/dev/null 2>&1 </dev/null &
	DL_READER=$!
}

dl_release() {
	if [ -n "$DL_WRITER" ]; then
		kill "$DL_WRITER" 2>/dev/null || true
		wait "$DL_WRITER" 2>/dev/null || true
	fi
	if [ -n "$DL_READER" ]; then
		wait "$DL_READER" 2>/dev/null || true
	fi
	[ -z "$DL_FIFO" ] || rm -f "$DL_FIFO"
	DL_FIFO="" DL_WRITER="" DL_READER=""
	return 0
}

# where a scenario keeps the output of a kpgen it runs in the background
DL_OUT=/tmp/kpgen-delivery-out

# `dl_in_func PID FUNCTION`: the task's kernel stack has a frame of exactly that function.
dl_in_func() {
	local stack
	{ stack=$(<"/proc/$1/stack"); } 2>/dev/null || return 1
	[[ $stack == *"] $2+"* ]]
}

# `dl_said FILE TEXT`: FILE holds TEXT.
dl_said() { [[ "$(<"$1")" == *"$2"* ]]; }

deliver_livepatch_waits_for_the_reader() {
	local out=$DL_OUT kp
	trap 'rc=$?; dl_release; rm -f "$DL_OUT"; scenario_cleanup $rc' EXIT
	: >"$out"
	dl_start_reader
	loop_until 20 dl_in_func "$DL_READER" pipe_read
	# the transition waits for the reader, named with the function it is in; it completes when
	# the reader leaves (well before livepatch's fake signal, 15 s in, which would move it)
	"$KPGEN" load --timeout 120 "$(ko test_lp_pipe)" >"$out" 2>&1 &
	kp=$!
	loop_until 60 dl_said "$out" "the patching transition waits for"
	has "cat (pid $DL_READER) in pipe_read" "$(<"$out")"
	dl_release
	wait "$kp"
	has "kpgen: loaded test_lp_pipe (livepatch, transition complete)" "$(<"$out")"
	[ "$(<"$LIVEPATCH/test_lp_pipe/transition")" = 0 ]
	not kernel_said "signaling remaining tasks"

	# unloading waits for a reader in the replacement, likewise
	: >"$out"
	dl_start_reader
	loop_until 20 dl_in_func "$DL_READER" test_pipe_read
	"$KPGEN" unload --timeout 120 test_lp_pipe >"$out" 2>&1 &
	kp=$!
	loop_until 60 dl_said "$out" "the unpatching transition waits for"
	has "cat (pid $DL_READER) in test_pipe_read" "$(<"$out")"
	dl_release
	wait "$kp"
	has "kpgen: unloaded test_lp_pipe" "$(<"$out")"
	not loaded test_lp_pipe
	not kernel_said "signaling remaining tasks"
}

deliver_livepatch_timeout_reverts() {
	local out rc=0
	trap 'rc=$?; dl_release; scenario_cleanup $rc' EXIT
	dl_start_reader
	loop_until 20 dl_in_func "$DL_READER" pipe_read
	out=$("$KPGEN" load --timeout 4 "$(ko test_lp_pipe)" 2>&1) || rc=$?
	exited 5 "$rc" "$out"
	has "the livepatch transition of test_lp_pipe did not complete within 4 s" "$out"
	has "cat (pid $DL_READER) in pipe_read" "$out"
	has "test_lp_pipe was reverted and removed" "$out"
	not loaded test_lp_pipe
	[ ! -e "$LIVEPATCH/test_lp_pipe" ]
	# the reader never noticed: still in the original
	dl_in_func "$DL_READER" pipe_read
}

deliver_kpatch_waits_for_the_task() {
	local out=$DL_OUT kp rc=0
	trap 'rc=$?; rm -f "$DL_OUT"; scenario_cleanup $rc' EXIT
	: >"$out"
	load kpgen_test_target
	start_sleeper
	# refused in the core's words, after the timeout
	"$KPGEN" load --timeout 3 "$(ko test_busy)" >"$out" 2>&1 || rc=$?
	exited 5 "$rc" "$(<"$out")"
	has "cannot load test_busy ($(ko test_busy)): Device or resource busy (EBUSY): the kernel says: " "$(<"$out")"
	has "is inside function 'kpgen_test_target_sleep'" "$(<"$out")"
	not loaded test_busy
	# loaded once the task leaves
	"$KPGEN" load --timeout 120 "$(ko test_busy)" >"$out" 2>&1 &
	kp=$!
	loop_until 60 dl_said "$out" "is inside function 'kpgen_test_target_sleep'; trying again"
	echo wake >/proc/kpgen_test_target
	wait "$SLEEPER"
	wait "$kp"
	has "kpgen: loaded test_busy (kpgen's core)" "$(<"$out")"
	enabled test_busy 1
	"$KPGEN" unload test_busy
	rmmod kpgen_test_target
	# a function that does not exist, in the core's words; nothing left
	rc=0
	"$KPGEN" load "$(ko test_missing)" >"$out" 2>&1 || rc=$?
	exited 5 "$rc" "$(<"$out")"
	has "function 'kpgen_no_such_function' not found in vmlinux" "$(<"$out")"
	not loaded test_missing
}

# the kernels whose tree holds delivery/ (harness/delivery.py) run these
if [ -d "$TREE/delivery" ]; then
	scenario deliver_package_install_upgrade_remove 400
	scenario deliver_livepatch_waits_for_the_reader 300
	scenario deliver_livepatch_timeout_reverts 200
	scenario deliver_kpatch_waits_for_the_task 200
fi
