#!/usr/bin/env bash
# seSparse (ESXi 6.5+ snapshot deltas) against qemu-img, which reads them
# since 4.1: chains of depth 1-3 written by bin/vdk-gen-delta over hosted
# sparse (qemu-img), VMFS flat (vdkit) and vmfsSparse (COWD) parents read
# byte-identical to qemu-img; hostile headers and entries are refused with
# their offset and exit 1; a loop in the parent chain is refused; allocated
# grains are cloned on a reflink XFS.
source "$(dirname "$0")/lib.sh"

have qemu-img || { skip "qemu-img not installed"; finish; }
GEN="$TOP/bin/vdk-gen-delta"
# 17 MiB + 20 sectors: two grain tables, the last grain cut short.
SECT=$((17 * 2048 + 20))
gen_raw "$T/base.raw" $((SECT * 512)) 5

# same DESC IMAGE: vdkit's raw reading equals qemu-img's (qemu follows the parent)
same() {
	local d=$1 img=$2
	qemu-img convert -O raw "$img" "$T/q.raw" 2>"$T/qerr" || { fail "$d: qemu-img cannot read: $(cat "$T/qerr")"; return; }
	"$VDKIT" convert -O raw "$img" "$T/v.raw" >/dev/null 2>"$T/verr" || { fail "$d: vdkit cannot read: $(cat "$T/verr")"; return; }
	cmp -s "$T/q.raw" "$T/v.raw" && pass "$d: vdkit reads what qemu-img reads" || fail "$d: contents differ"
	rm -f "$T/q.raw" "$T/v.raw"
}

mkdir "$T/a" "$T/b" "$T/c" "$T/d"
# --- depth 1 and 2 over a hosted sparse base (qemu-img) ----------------------
qemu-img convert -f raw -O vmdk "$T/base.raw" "$T/a/base.vmdk"
"$GEN" -p base.vmdk -s 1 "$T/a/s1.vmdk" $SECT
qemu-img info "$T/a/s1.vmdk" >"$T/qi" 2>&1 && grep -q "create type: seSparse" "$T/qi" &&
	pass "qemu-img info accepts the generated seSparse delta" || fail "qemu-img info: $(cat "$T/qi")"
same "seSparse over monolithicSparse (depth 1)" "$T/a/s1.vmdk"
# Grain indices from 5000 on: above 4096 the index is split across the entry.
"$GEN" -p s1.vmdk -s 2 -b 5000 "$T/a/s2.vmdk" $SECT
same "seSparse over seSparse over monolithicSparse (depth 2, grain index > 4096)" "$T/a/s2.vmdk"
qemu-img convert -O raw "$T/a/s1.vmdk" "$T/a1.raw"; qemu-img convert -O raw "$T/a/s2.vmdk" "$T/a2.raw"
! cmp -s "$T/a1.raw" "$T/a2.raw" && ! cmp -s "$T/a1.raw" "$T/base.raw" &&
	pass "each delta changes the content" || fail "a delta changes nothing (generator broken?)"
rm -f "$T/a1.raw" "$T/a2.raw"

"$VDKIT" info --output=json "$T/a/s2.vmdk" >"$T/info.json" 2>&1
grep -q '"create-type": *"seSparse"' "$T/info.json" && grep -q '"format": *"SESPARSE"' "$T/info.json" &&
	grep -q '"cluster-size": *4096' "$T/info.json" && pass "info: create-type seSparse, extent SESPARSE, 4 KiB grains" ||
	fail "info: $(cat "$T/info.json")"
check "vdkit compare: seSparse chain equals qemu-img's raw" bash -c \
	"qemu-img convert -O raw '$T/a/s2.vmdk' '$T/a2.raw' && '$VDKIT' compare '$T/a/s2.vmdk' '$T/a2.raw'"
rm -f "$T/a2.raw"

# --- depth 3: VMFS flat (vdkit) <- vmfsSparse 512 B grains <- seSparse <- vmfsSparse
"$VDKIT" convert -q -O vmdk -o subformat=vmfs "$T/base.raw" "$T/b/base.vmdk" >/dev/null 2>&1 ||
	"$VDKIT" convert -O vmdk -o subformat=vmfs "$T/base.raw" "$T/b/base.vmdk" >/dev/null
"$GEN" -t cowd -G 1 -p base.vmdk -s 3 "$T/b/c1.vmdk" $SECT
"$GEN" -p c1.vmdk -s 4 "$T/b/s2.vmdk" $SECT
"$GEN" -t cowd -p s2.vmdk -s 5 "$T/b/c3.vmdk" $SECT
same "vmfsSparse over VMFS flat (depth 1)" "$T/b/c1.vmdk"
same "seSparse over vmfsSparse over VMFS flat (depth 2)" "$T/b/s2.vmdk"
same "vmfsSparse over seSparse over vmfsSparse over VMFS (depth 3)" "$T/b/c3.vmdk"

# --- seSparse over a hosted sparse snapshot qemu-img made ---------------------
qemu-img convert -f raw -O vmdk "$T/base.raw" "$T/c/base.vmdk"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$T/c/snap.vmdk" 2>/dev/null &&
	qemu-io -c "write -P 0x5a 4M 256k" "$T/c/snap.vmdk" >/dev/null 2>&1
"$GEN" -p snap.vmdk -s 6 "$T/c/s.vmdk" $SECT
same "seSparse over a qemu-img sparse snapshot over monolithicSparse (depth 2)" "$T/c/s.vmdk"

# --- the depth-3 chain flattened to qcow2, verified -----------------------------
"$VDKIT" convert --verify -O qcow2 "$T/b/c3.vmdk" "$T/flat.qcow2" >/dev/null 2>&1 &&
	qemu-img compare -q "$T/b/c3.vmdk" "$T/flat.qcow2" &&
	pass "depth-3 chain -> qcow2 (--verify): qemu-img compare identical" || fail "chain -> qcow2"
rm -f "$T/flat.qcow2"

# --- every grain kind, explicit; no parent; and the extent file alone ---------
"$GEN" -g "DZU.DD..ZZUUD" "$T/d/k.vmdk" 64
same "explicit pattern D Z U . (no parent)" "$T/d/k.vmdk"
qemu-img convert -O raw "$T/d/k.vmdk" "$T/k.raw"
expect_zero() { cmp -s <(dd if="$T/k.raw" bs=4096 skip=$1 count=1 2>/dev/null) <(head -c 4096 /dev/zero); }
expect_zero 1 && expect_zero 2 && expect_zero 3 && ! expect_zero 0 && ! expect_zero 4 &&
	pass "zero, unmapped and unallocated grains read as zeroes, data grains do not" || fail "grain kinds"
"$VDKIT" convert -O raw "$T/d/k-sesparse.vmdk" "$T/k2.raw" >/dev/null 2>&1 && cmp -s "$T/k.raw" "$T/k2.raw" &&
	pass "the -sesparse.vmdk extent opened alone reads like its descriptor" || fail "extent alone"
"$VDKIT" map --output=json "$T/d/k.vmdk" >"$T/map.json" 2>&1
grep -q '"zero": *true' "$T/map.json" && grep -q '"data": *true' "$T/map.json" &&
	pass "map reports zero and data runs" || fail "map: $(cat "$T/map.json")"

# --- a loop in the parent chain -----------------------------------------------
mkdir "$T/loop"
"$GEN" -p l2.vmdk -s 7 "$T/loop/l1.vmdk" 2048
"$GEN" -p l1.vmdk -s 8 "$T/loop/l2.vmdk" 2048
out=$("$VDKIT" info "$T/loop/l2.vmdk" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$out" == *loop* ]] && pass "parent chain loop refused (exit 1): $out" ||
	fail "loop: exit $rc: $out"

# --- hostile headers and entries: refused with the offset, exit 1 -------------
hostile() { # hostile KIND PATTERN
	mkdir -p "$T/h"
	"$GEN" -p ../a/base.vmdk -s 9 -x "$1" "$T/h/$1.vmdk" $SECT 2>/dev/null
	out=$("$VDKIT" convert -O raw "$T/h/$1.vmdk" "$T/h/out.raw" 2>&1); rc=$?
	if [ $rc -eq 1 ] && [[ "$out" == *"at offset "* ]] && [[ "$out" == *$2* ]] && [ ! -e "$T/h/out.raw" ]; then
		pass "hostile $1: refused, exit 1, no output: ${out#*vmdk: }"
	else
		fail "hostile $1: exit $rc: $out"
	fi
}
hostile gt-past-eof "past the end of the file"
hostile gt-index "past the grain tables region"
hostile capacity-huge "larger than the largest disk"
hostile capacity-big "the capacity needs"
hostile gd-over-header "overlaps the constant header"
hostile grains-over-gd "overlaps the grain directory"
hostile grain-past-eof "past the end of the file"
hostile bad-type "unknown grain entry type"
hostile stray-bits "stray bits"
hostile dirty "journal must be replayed"

# --- allocated grains are shared on a reflink XFS -----------------------------
if [ "$(id -u)" = 0 ] && have mkfs.xfs; then
	mnt="$T/mnt"; mkdir "$mnt"; truncate -s 320M "$T/xfs.img"
	if mkfs.xfs -q -m reflink=1 "$T/xfs.img" >/dev/null 2>&1 && mount -o loop "$T/xfs.img" "$mnt" 2>/dev/null; then
		trap 'umount "$mnt" 2>/dev/null; rm -rf "$T"' EXIT
		"$GEN" -g "DDDDDDDD.ZDDDD" "$mnt/x.vmdk" 2048
		out=$("$VDKIT" convert -O raw "$mnt/x.vmdk" "$mnt/x.raw" 2>&1)
		[[ "$out" == *"KiB cloned"* || "$out" == *"MiB cloned"* ]] && qemu-img compare -q "$mnt/x.vmdk" "$mnt/x.raw" &&
			pass "seSparse grains cloned on XFS, identical: ${out#*: }" || fail "clone: $out"
		umount "$mnt"
	else
		skip "cannot make a reflink XFS here"
	fi
else
	skip "clone test needs root and mkfs.xfs"
fi
# --- a real ESXi-written seSparse extent (testdata/esxi-sesparse) -----------
# The extent alone, as vdkit opens it, and through a descriptor, as qemu-img
# needs it: both read what qemu-img reads, which is what dissect.hypervisor's
# test says the file holds (16 MiB of 'a', then zeroes).
mkdir "$T/esx"
gzip -dc "$TOP/testdata/esxi-sesparse/sesparse.vmdk.gz" >"$T/esx/disk-sesparse.vmdk"
before=$(sha "$T/esx/disk-sesparse.vmdk")
printf '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=fffffffe\nparentCID=ffffffff\ncreateType="seSparse"\n\n# Extent description\nRW 1048576 SESPARSE "disk-sesparse.vmdk"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "14"\n' >"$T/esx/disk.vmdk"
same "ESXi seSparse through its descriptor" "$T/esx/disk.vmdk"
qemu-img convert -O raw "$T/esx/disk.vmdk" "$T/esx/q.raw"
"$VDKIT" convert -q -O raw "$T/esx/disk-sesparse.vmdk" "$T/esx/v.raw" &&
	cmp -s "$T/esx/q.raw" "$T/esx/v.raw" &&
	pass "ESXi seSparse extent opened alone: vdkit reads what qemu-img reads through the descriptor" ||
	fail "ESXi seSparse extent opened alone differs from qemu-img's reading"
[ "$(head -c $((16 << 20)) "$T/esx/v.raw" | tr -d a | wc -c)" = 0 ] &&
	[ "$(stat -c %s "$T/esx/v.raw")" = $((512 << 20)) ] &&
	tail -c +$(((16 << 20) + 1)) "$T/esx/v.raw" | cmp -s - <(head -c $((496 << 20)) /dev/zero) &&
	pass "ESXi seSparse: 512 MiB, the first 16 MiB 'a', then zeroes (dissect.hypervisor's reading)" ||
	fail "ESXi seSparse: content is not 16 MiB of 'a' then zeroes"
"$VDKIT" convert -q -O qcow2 "$T/esx/disk.vmdk" "$T/esx/v.qcow2" &&
	qemu-img compare -q "$T/esx/q.raw" "$T/esx/v.qcow2" && qemu-img check -q "$T/esx/v.qcow2" &&
	pass "ESXi seSparse -> qcow2: qemu-img compare and check clean" ||
	fail "ESXi seSparse -> qcow2 differs or fails qemu-img check"
# Warm migration with it: a base converted with --warm, then the ESXi
# extent applied as its delta (a descriptor naming the base's CID).
qemu-img create -q -f vmdk "$T/esx/base.vmdk" 512M
cid=$(grep -a '^CID=' "$T/esx/base.vmdk" | head -1 | cut -d= -f2)
sed -e "s/^parentCID=.*/parentCID=$cid\nparentFileNameHint=\"base.vmdk\"/" "$T/esx/disk.vmdk" >"$T/esx/delta.vmdk"
qemu-img convert -O raw "$T/esx/delta.vmdk" "$T/esx/qd.raw"
"$VDKIT" convert -q --warm -O raw "$T/esx/base.vmdk" "$T/esx/t.raw" &&
	"$VDKIT" apply "$T/esx/delta.vmdk" "$T/esx/t.raw" >/dev/null 2>&1 &&
	cmp -s "$T/esx/t.raw" "$T/esx/qd.raw" &&
	pass "ESXi seSparse applied to a --warm conversion of its base: equals qemu-img's reading of the chain" ||
	fail "ESXi seSparse apply differs from qemu-img's reading of the chain"
"$VDKIT" map --output=json "$T/esx/disk-sesparse.vmdk" | grep -q '"start": 0, "length": 16777216, "depth": 0, "present": true' &&
	pass "ESXi seSparse map: one 16 MiB data extent at 0" || fail "ESXi seSparse map: $("$VDKIT" map "$T/esx/disk-sesparse.vmdk" | head -3)"
[ "$(sha "$T/esx/disk-sesparse.vmdk")" = "$before" ] && pass "ESXi seSparse extent unchanged by reading" ||
	fail "ESXi seSparse extent modified"
rm -rf "$T/esx"
finish
