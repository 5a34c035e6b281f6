#!/usr/bin/env bash
# The qcow2 reader refuses damaged metadata instead of serving it as guest
# data: each class is one valid qemu-made image damaged at the exact field
# (L1/L2 entries pointing at the L1 table, an L2 table, the refcount table
# or a refcount block; an L2 entry past the end of the file; truncation
# inside the last data cluster; reserved bits; extended L2 inconsistencies).
# Each must exit 1 with a message naming the file, "qcow2" and the offset.
# Valid images still read identical to qemu-img.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/qcow2_poke.sh"
have qemu-img || { skip "qemu-img not installed"; finish; }
have qemu-io || { skip "qemu-io not installed"; finish; }
[ -x "$VDKIT" ] || { skip "bin/vdkit not built"; finish; }

mk() { # FILE [create opts]
	rm -f "$1"
	qemu-img create -q -f qcow2 ${2:+-o $2} "$1" 64M &&
		qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -z 2M 128k' \
			-c 'write -P 0x22 10M 64k' "$1" >/dev/null
}
# refused NAME FILE OFFSET WORDS: convert exits 1 naming file, format, offset.
refused() {
	local err rc
	err=$("$VDKIT" convert -f qcow2 -O raw "$2" "$T/out.raw" 2>&1 >/dev/null); rc=$?
	rm -f "$T/out.raw"
	if [ $rc != 1 ]; then fail "$1: rc $rc ($err)"; return; fi
	case $err in
	*"$2: qcow2: at offset $3 "*"$4"*) pass "$1: refused at offset $3" ;;
	*) fail "$1: message '$err' lacks '$2: qcow2: at offset $3 ...$4'" ;;
	esac
}
identical() { # NAME FILE
	local q v; q=$(qemu_sha "$2" 2>/dev/null); v=$(vdk_sha "$2" qcow2 2>/dev/null)
	[ -n "$q" ] && [ "$q" = "$v" ] && pass "$1 reads as qemu-img reads it" || fail "$1: $v vs $q"
}

mk "$T/a.qcow2"
A=$T/a.qcow2 CS=$(q_cs "$T/a.qcow2") L1=$(q_l1 "$T/a.qcow2") RT=$(q_rt "$T/a.qcow2")
RB=$(q_rb0 "$A") L2=$(q_l2 "$A") SZ=$(stat -c %s "$A") C=$((1 << 63))
identical "undamaged image" "$A"

d() { cp "$A" "$T/$1.qcow2"; echo "$T/$1.qcow2"; }
f=$(d l1rt); put64 "$f" "$L1" $((C | RT)); refused "L1 entry -> refcount table" "$f" "$L1" "refcount table"
f=$(d l1l1); put64 "$f" "$L1" $((C | L1)); refused "L1 entry -> L1 table" "$f" "$L1" "L1 table"
f=$(d l1rb); put64 "$f" "$L1" $((C | RB)); refused "L1 entry -> refcount block" "$f" "$L1" "refcount block"
f=$(d l1far); put64 "$f" "$L1" $((C | (1 << 40))); refused "L1 entry of 2^40" "$f" "$L1" "outside the file"
f=$(d l1res); put64 "$f" "$L1" $((C | (1 << 56) | L2)); refused "L1 entry reserved bit" "$f" "$L1" "reserved"
f=$(d l2rb); put64 "$f" "$L2" $((C | RB)); refused "L2 entry -> refcount block" "$f" "$L2" "refcount block"
f=$(d l2rt); put64 "$f" "$L2" $((C | RT)); refused "L2 entry -> refcount table" "$f" "$L2" "refcount table"
f=$(d l2l1); put64 "$f" "$L2" $((C | L1)); refused "L2 entry -> L1 table" "$f" "$L2" "L1 table"
f=$(d l2l2); put64 "$f" "$L2" $((C | L2)); refused "L2 entry -> its own L2 table" "$f" "$L2" "L2 table"
f=$(d l2far); put64 "$f" "$L2" $((C | (1 << 40))); refused "L2 entry of 2^40" "$f" "$L2" "past the end"
f=$(d l2res); put64 "$f" "$L2" $(($(be64 "$A" "$L2") | 2)); refused "L2 entry reserved bit 1" "$f" "$L2" "reserved"
f=$(d l2res2); put64 "$f" "$L2" $(($(be64 "$A" "$L2") | (1 << 57))); refused "L2 entry reserved bit 57" "$f" "$L2" "reserved"
# The last cluster of the file holds the data written at 10M.
f=$(d trunc); truncate -s $((SZ - 4096)) "$f"
LAST=$(($(q_l2 "$A") + 8 * (10 * 1024 * 1024 / CS)))
refused "truncated inside the last data cluster" "$f" "$LAST" "past the end of the file"

# version 2 has no zero flag: bit 0 of an L2 entry is reserved there
mk "$T/v2.qcow2" compat=0.10
identical "version 2 image" "$T/v2.qcow2"
V2L2=$(q_l2 "$T/v2.qcow2")
cp "$T/v2.qcow2" "$T/v2z.qcow2"; put64 "$T/v2z.qcow2" "$V2L2" $(($(be64 "$T/v2.qcow2" "$V2L2") | 1))
refused "version 2: L2 entry with the zero flag" "$T/v2z.qcow2" "$V2L2" "reserved"

mk "$T/x.qcow2" extended_l2=on,cluster_size=128k
X=$T/x.qcow2; XL2=$(q_l2 "$X")
identical "extended L2 image" "$X"
cp "$X" "$T/xz.qcow2"; put64 "$T/xz.qcow2" "$XL2" $(($(be64 "$X" "$XL2") | 1))
refused "extended L2: bit 0 set" "$T/xz.qcow2" "$XL2" "reserved"
cp "$X" "$T/xb.qcow2"; put64 "$T/xb.qcow2" $((XL2 + 8)) $(((1 << 32) | 1))
refused "extended L2: subcluster both allocated and zero" "$T/xb.qcow2" $((XL2 + 8)) "bitmap"
mk "$T/s4.qcow2" cluster_size=4096
put64 "$T/s4.qcow2" 72 16
refused "extended L2 bit with 4 KiB clusters" "$T/s4.qcow2" 20 "16 KiB"

gen_raw "$T/src.raw" $((2 * 1024 * 1024)) 3
qemu-img convert -q -c -f raw -O qcow2 "$T/src.raw" "$T/c.qcow2"
identical "compressed image" "$T/c.qcow2"
CL2=$(q_l2 "$T/c.qcow2") i=0
while [ $i -lt 64 ] && [ $((($(be64 "$T/c.qcow2" $((CL2 + 8 * i))) >> 62) & 1)) = 0 ]; do i=$((i + 1)); done
CE=$((CL2 + 8 * i))
cp "$T/c.qcow2" "$T/cc.qcow2"; put64 "$T/cc.qcow2" "$CE" $(($(be64 "$T/c.qcow2" "$CE") | C))
refused "compressed entry with COPIED set" "$T/cc.qcow2" "$CE" "COPIED"
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 "$T/top.qcow2"
qemu-io -f qcow2 -c 'write -P 0x44 512k 64k' "$T/top.qcow2" >/dev/null
identical "image over a backing file" "$T/top.qcow2"
cp "$A" "$T/snap.qcow2"; qemu-img snapshot -c s1 "$T/snap.qcow2"
qemu-io -f qcow2 -c 'write -P 0x55 0 64k' "$T/snap.qcow2" >/dev/null
identical "image with a snapshot" "$T/snap.qcow2"
[ -f "$SHARED/testdata/dfvfs/ext2.qcow2" ] && identical "dfvfs ext2.qcow2" "$SHARED/testdata/dfvfs/ext2.qcow2" ||
	skip "shared ext2.qcow2 missing"
finish
