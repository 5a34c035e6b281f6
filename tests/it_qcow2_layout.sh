#!/usr/bin/env bash
# Where vdkit's qcow2 writer puts the refcount structures: the table at
# cluster 1 and the first block after it (as qemu-img lays them out), more
# blocks inline before the clusters they describe, never after the last
# data cluster. 7-Zip (which sizes an image by its structures) lists every
# variant with exit 0 and no warning; qemu-img check stays clean (exact
# refcounts) and the content reads back identical.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/qcow2_poke.sh"
have qemu-img || { skip "qemu-img not installed"; finish; }
[ -x "$VDKIT" ] || { skip "bin/vdkit not built"; finish; }

gen_raw "$T/src.raw" $((3 * 1024 * 1024 + 4096)) 9
WANT=$(sha "$T/src.raw")
variant() { # NAME OPTS [no7z: 7-Zip 26 cannot open zstd clusters, qemu-made ones neither]
	local f=$T/$1.qcow2 out rc
	rm -f "$f"
	if ! "$VDKIT" convert -O qcow2 ${2:+-o $2} "$T/src.raw" "$f" >/dev/null 2>&1; then
		fail "$1: vdkit convert failed"; return
	fi
	local cs; cs=$(q_cs "$f")
	[ "$(q_rt "$f")" = "$cs" ] && [ "$(q_rb0 "$f")" = $((2 * cs)) ] &&
		pass "$1: refcount table at cluster 1, first block at cluster 2" ||
		fail "$1: refcount table at $(q_rt "$f"), first block at $(q_rb0 "$f")"
	out=$(qemu-img check -f qcow2 "$f" 2>&1) && pass "$1: qemu-img check clean" ||
		fail "$1: qemu-img check: $out"
	"$VDKIT" check "$f" >/dev/null 2>&1 && pass "$1: vdkit check clean" || fail "$1: vdkit check"
	[ "$(qemu_sha "$f" qcow2)" = "$WANT" ] && pass "$1: identical through qemu-img" ||
		fail "$1: content differs"
	if [ "${3:-}" = no7z ]; then
		:
	elif have 7zz; then
		out=$(7zz l "$f" 2>&1); rc=$?
		if [ $rc = 0 ] && ! echo "$out" | grep -qiE "warning|data after the end"; then
			pass "$1: 7zz l lists it without warnings"
		else
			fail "$1: 7zz l rc $rc: $(echo "$out" | grep -iE 'warn|after' | head -2)"
		fi
	else
		skip "7zz not installed"
	fi
}
variant default ""
variant v2 compat=0.10
variant c512 cluster_size=512
variant c4k-compressed cluster_size=4096,compress=on
variant c512-compressed cluster_size=512,compress=on
variant prealloc-c512 cluster_size=512,preallocation=metadata
variant zstd compress=on,compression_type=zstd no7z

# Cloned payload: long runs that cross the span of one refcount block (8 MiB
# with 4 KiB clusters) get their blocks placed before them.
if [ "$(id -u)" = 0 ] && have mkfs.xfs; then
	truncate -s 512M "$T/xfs.img"
	mkdir "$T/mnt"
	if mkfs.xfs -q -m reflink=1 "$T/xfs.img" >/dev/null 2>&1 && mount -o loop "$T/xfs.img" "$T/mnt" 2>/dev/null; then
		trap 'umount "$T/mnt" 2>/dev/null; rm -rf "$T"' EXIT
		"$TOP/bin/vdk-gen" -k random "$T/mnt/src.raw" $((20 * 1048576)) 3
		if "$VDKIT" convert --clone=always -O qcow2 -o cluster_size=4096 "$T/mnt/src.raw" "$T/mnt/c.qcow2" 2>/dev/null; then
			qemu-img check -q "$T/mnt/c.qcow2" && qemu-img compare -q -f raw -F qcow2 "$T/mnt/src.raw" "$T/mnt/c.qcow2" &&
				pass "cloned 20 MiB into 4 KiB clusters: qemu-img check clean, identical" ||
				fail "cloned qcow2 not clean or differs"
			have 7zz && { 7zz l "$T/mnt/c.qcow2" 2>&1 | grep -qi warning && fail "7zz warns on the cloned qcow2" ||
				pass "7zz lists the cloned qcow2 without warnings"; }
		else
			fail "--clone=always into qcow2 on XFS failed"
		fi
		umount "$T/mnt"
	else
		skip "cannot loop-mount a reflink XFS"
	fi
else
	skip "clone layout needs root and mkfs.xfs"
fi
finish
