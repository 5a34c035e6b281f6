#!/usr/bin/env bash
# VHD ("vpc") against its oracles: qemu-img both ways (fixed, dynamic,
# force_size), libvhdi's vhdiinfo, the real-world VHDs in ../shared/testdata
# (Disk2vhd, Hyper-V, Virtual PC, qemu) with their listed SHA-256, the Azure
# preset and the in-place Azure conversion, and malformed files.
source "$(dirname "$0")/lib.sh"
MiB=1048576

have qemu-img || { skip "qemu-img not installed: VHD oracle tests"; finish; }

gen_raw "$T/a.raw" $((5 * MiB + 12345)) 5

# qemu-img writes -> vdkit reads ---------------------------------------------
for o in subformat=dynamic subformat=fixed subformat=fixed,force_size=on \
	subformat=dynamic,force_size=on; do
	f="$T/q.vhd"
	rm -f "$f"
	qemu-img convert -f raw -O vpc -o "$o" "$T/a.raw" "$f"
	want=$(qemu_sha "$f" vpc)
	got=$(vdk_sha "$f" vpc)
	[ -n "$got" ] && [ "$got" = "$want" ] && pass "qemu-img VHD ($o) reads byte-identical" ||
		fail "qemu-img VHD ($o): vdkit $got, qemu $want"
	qs=$(qemu-img info -f vpc --output=json "$f" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
	vs=$("$VDKIT" info -f vpc --output=json "$f" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
	[ "$qs" = "$vs" ] && pass "($o) same virtual size as qemu-img ($vs)" ||
		fail "($o) virtual size vdkit $vs, qemu $qs"
done
qemu-img convert -f raw -O vpc "$T/a.raw" "$T/q.vhd"
out=$("$VDKIT" info "$T/q.vhd")
grep -q "file format: vpc" <<<"$out" && grep -q "cylinders: 151" <<<"$out" &&
	grep -q "subformat: dynamic" <<<"$out" && pass "dynamic VHD probed; info shows its geometry" ||
	fail "info: $out"

# vdkit writes -> qemu-img and libvhdi read ----------------------------------
for o in subformat=dynamic subformat=fixed subformat=fixed,force_size=on force_size=on; do
	f="$T/v.vhd" q="$T/q.vhd"
	rm -f "$f" "$q"
	"$VDKIT" convert -q -f raw -O vpc -o "$o" "$T/a.raw" "$f" || { fail "vdkit convert ($o)"; continue; }
	qemu-img convert -f raw -O vpc -o "$o" "$T/a.raw" "$q"
	check "vdkit VHD ($o): qemu-img compare finds the content identical" \
		qemu-img compare -f raw -F vpc "$T/a.raw" "$f"
	[ "$(qemu_sha "$f" vpc)" = "$(qemu_sha "$q" vpc)" ] &&
		pass "vdkit VHD ($o): qemu-img reads what it reads from its own ($o)" ||
		fail "vdkit VHD ($o) differs from qemu-img's"
	if have vhdiinfo; then
		check "vdkit VHD ($o): vhdiinfo opens it" vhdiinfo "$f"
	else
		skip "vhdiinfo not installed"
	fi
done

# The Azure preset: fixed, whole MiB, footer qemu-img accepts.
f="$T/az.vhd"
"$VDKIT" convert -q -f raw -O vpc -o azure=on "$T/a.raw" "$f"
size=$(stat -c %s "$f")
[ $(((size - 512) % MiB)) = 0 ] && [ "$size" = $((6 * MiB + 512)) ] &&
	pass "azure=on: file is 6 MiB + 512 bytes" || fail "azure=on file size $size"
[ "$(head -c 8 "$f")" != conectix ] && qemu-img info -f vpc "$f" | grep -q "virtual size: 6 MiB" &&
	pass "qemu-img reads the Azure VHD as a fixed 6 MiB disk" || fail "qemu-img on the Azure VHD"
check "Azure VHD content identical for qemu-img" qemu-img compare -f raw -F vpc "$T/a.raw" "$f"
if "$VDKIT" convert -q -f raw -O vpc -o azure=on,subformat=dynamic "$T/a.raw" "$T/x.vhd" 2>/dev/null; then
	fail "azure=on,subformat=dynamic accepted"
else
	pass "azure=on,subformat=dynamic refused"
fi

# Fixed VHD streamed to a pipe equals the file.
if "$VDKIT" convert -q -f raw -O vpc -o subformat=fixed,force_size=on "$T/a.raw" - >"$T/s.vhd" 2>/dev/null; then
	"$VDKIT" convert -q -f raw -O vpc -o subformat=fixed,force_size=on "$T/a.raw" "$T/f.vhd"
	cmp -s <(head -c $((5 * MiB + 12800)) "$T/s.vhd") <(head -c $((5 * MiB + 12800)) "$T/f.vhd") &&
		[ "$(stat -c %s "$T/s.vhd")" = "$(stat -c %s "$T/f.vhd")" ] &&
		check "streamed fixed VHD reads identical in qemu-img" \
			qemu-img compare -f raw -F vpc "$T/a.raw" "$T/s.vhd" ||
		fail "streamed fixed VHD differs from the file"
else
	skip "convert to stdout not available"
fi

# In place: raw -> Azure VHD, nothing copied, renamed after the footer.
cp "$T/a.raw" "$T/ip.raw"
if "$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$T/ip.raw" >/dev/null 2>"$T/ip.err"; then
	vf=$(ls "$T"/ip*.vhd "$T/ip.raw" 2>/dev/null | head -1)
	size=$(stat -c %s "$vf")
	[ "$size" = $((6 * MiB + 512)) ] && check "in-place Azure VHD identical for qemu-img" \
		qemu-img compare -f raw -F vpc "$T/a.raw" "$vf" || fail "in-place result $vf ($size)"
	cp "$T/a.raw" "$T/ip2.raw"
	"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$T/ip2.raw" "$T/ip2.vhd" >/dev/null 2>&1 &&
		[ ! -e "$T/ip2.raw" ] && [ "$(stat -c %s "$T/ip2.vhd")" = $((6 * MiB + 512)) ] &&
		pass "in place with a new name: renamed after the footer" || fail "in place with rename"
	"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$T/ip2.raw" "$T/ip2.vhd" >/dev/null 2>&1 &&
		pass "rerun after the rename reports it done (exit 0)" || fail "rerun after rename"
else
	skip "convert --in-place not wired in the CLI yet: $(head -c 200 "$T/ip.err")"
fi

# Real-world files -------------------------------------------------------------
TD="$SHARED/testdata"
listed() { awk -F'|' -v f="$1" '$2 ~ f {gsub(/ /, "", $6); print $6}' "$TD/README.md"; }
vsize() { "$VDKIT" info --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }
if [ -f "$TD/dfvfs/ext2.vhd" ]; then
	[ "$(vdk_sha "$TD/dfvfs/ext2.vhd")" = "$(listed dfvfs/ext2.vhd)" ] &&
		pass "dfvfs/ext2.vhd (qemu) converts to the listed SHA-256" || fail "dfvfs/ext2.vhd sha"
	bzcat "$TD/qemu-iotests/d2v-zerofilled.vhd.bz2" >"$T/d2v.vhd"
	[ "$(vdk_sha "$T/d2v.vhd")" = "$(listed d2v-zerofilled)" ] &&
		pass "d2v-zerofilled.vhd (Disk2vhd) converts to the listed SHA-256" || fail "d2v sha"
	rm -f "$T/d2v.vhd"
	# 127 GiB, almost all unallocated: check the size, that qemu-img finds
	# vdkit's raw output identical, and the listed SHA-256.
	for n in hyperv2012r2-dynamic virtualpc-dynamic; do
		bzcat "$TD/qemu-iotests/$n.vhd.bz2" >"$T/$n.vhd"
		want=$(awk -F'|' -v f="$n" '$2 ~ f {gsub(/ /, "", $5); print $5}' "$TD/README.md")
		[ "$(vsize "$T/$n.vhd")" = "$want" ] && pass "$n: virtual size $want as listed" ||
			fail "$n: virtual size $(vsize "$T/$n.vhd") != $want"
		"$VDKIT" convert -q -O raw "$T/$n.vhd" "$T/$n.raw" &&
			check "$n: qemu-img finds vdkit's raw identical" \
				qemu-img compare -f vpc -F raw "$T/$n.vhd" "$T/$n.raw"
		rm -f "$T/$n.raw"
		# SHA-256 of the raw view without writing 127 GiB: 100 s of hashing
		# zeroes each, so the two run side by side, one per core.
		"$TOP/bin/vdk-rawsha" "$T/$n.vhd" vpc >"$T/$n.sha" 2>&1 &
	done
	wait
	for n in hyperv2012r2-dynamic virtualpc-dynamic; do
		[ "$(cat "$T/$n.sha")" = "$(listed "$n")" ] && pass "$n: listed SHA-256" ||
			fail "$n: sha $(cat "$T/$n.sha")"
		rm -f "$T/$n.vhd"
	done
	bzcat "$TD/qemu-iotests/afl5.img.bz2" >"$T/afl5.img"
	"$VDKIT" info -f vpc "$T/afl5.img" >/dev/null 2>"$T/afl.err"
	rc=$?
	[ $rc = 1 ] && grep -q "vpc" "$T/afl.err" && pass "afl5.img refused with exit 1: $(head -c 160 "$T/afl.err")" ||
		fail "afl5.img: exit $rc"
else
	skip "shared testdata not found at $TD"
fi

# Malformed files through the CLI ---------------------------------------------
cp "$T/q.vhd" "$T/bad.vhd" 2>/dev/null || qemu-img convert -f raw -O vpc "$T/a.raw" "$T/bad.vhd"
printf '\x7f' | dd of="$T/bad.vhd" bs=1 seek=100 conv=notrunc status=none
len=$(stat -c %s "$T/bad.vhd")
printf '\x7f' | dd of="$T/bad.vhd" bs=1 seek=$((len - 412)) conv=notrunc status=none
"$VDKIT" info "$T/bad.vhd" >/dev/null 2>"$T/bad.err"
rc=$?
[ $rc = 1 ] && grep -q "checksum" "$T/bad.err" && pass "corrupt footers: exit 1, '$(cat "$T/bad.err")'" ||
	fail "corrupt footers: exit $rc $(cat "$T/bad.err")"
head -c $((len / 2)) "$T/q.vhd" >"$T/trunc.vhd"
"$VDKIT" convert -q -f vpc -O raw "$T/trunc.vhd" "$T/trunc.raw" 2>/dev/null
rc=$?
[ $rc = 1 ] && [ ! -e "$T/trunc.raw" ] && pass "truncated VHD refused, no output left behind" ||
	fail "truncated VHD: exit $rc"
finish
