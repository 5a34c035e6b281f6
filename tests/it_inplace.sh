#!/usr/bin/env bash
# convert --in-place: raw -> Azure fixed VHD without copying.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed"; finish; }
gen_raw "$T/disk.raw" $((5 * 1048576 + 4096 + 333)) 21
cp "$T/disk.raw" "$T/orig.raw"
ino=$(stat -c %i "$T/disk.raw")
"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$T/disk.raw" "$T/disk.vhd" 2>"$T/msg"
rc=$?
[ $rc -eq 0 ] && pass "in-place conversion succeeds" || fail "rc $rc: $(cat "$T/msg")"
[ ! -e "$T/disk.raw" ] && [ "$(stat -c %i "$T/disk.vhd")" = "$ino" ] &&
	pass "same inode, renamed after the footer: nothing copied" || fail "not the same file"
sz=$(stat -c %s "$T/disk.vhd")
[ $(( (sz - 512) % 1048576 )) -eq 0 ] && [ $((sz - 512)) -eq $((6 * 1048576)) ] &&
	pass "size is k*MiB + 512 ($sz)" || fail "size $sz"
qemu-img info -f vpc --output=json "$T/disk.vhd" | grep -q '"virtual-size": 6291456' &&
	pass "qemu-img reads it as a 6 MiB VHD" || fail "qemu-img info -f vpc"
check "content identical to the raw disk (qemu-img compare)" qemu-img compare -q -f raw -F vpc "$T/orig.raw" "$T/disk.vhd"
"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$T/disk.raw" "$T/disk.vhd" 2>"$T/msg"
[ $? -eq 0 ] && grep -q "already" "$T/msg" && [ "$(stat -c %s "$T/disk.vhd")" = "$sz" ] &&
	pass "a rerun finds it done and changes nothing" || fail "rerun: $(cat "$T/msg")"
out=$("$VDKIT" convert --in-place -f raw -O qcow2 "$T/orig.raw" 2>&1); rc=$?
[ $rc -eq 2 ] && pass "--in-place refuses combinations it cannot do (exit 2)" || fail "rc $rc: $out"
finish
