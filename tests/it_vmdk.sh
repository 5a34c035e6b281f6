#!/usr/bin/env bash
# VMDK against the oracles: qemu-img makes each subformat -> vdkit reads it
# identically; vdkit writes each subformat -> qemu-img reads it identically,
# `qemu-img check` is clean and vmdkinfo (libvmdk) opens it; the real sample
# VMDKs convert to their listed SHA-256; hostile descriptors are refused.
source "$(dirname "$0")/lib.sh"

have qemu-img || { skip "qemu-img not installed"; finish; }
SUBS="monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized"

# A sector multiple that is not a grain multiple: 5 MiB + 3 sectors.
SIZE=$((5 * 1048576 + 1536))
gen_raw "$T/p.raw" $SIZE 7
RAW_SHA=$(sha "$T/p.raw")

# --- qemu-img writes, vdkit reads -----------------------------------------
for s in $SUBS; do
	d="$T/q-$s"
	mkdir -p "$d"
	qemu-img convert -f raw -O vmdk -o subformat=$s "$T/p.raw" "$d/img.vmdk" >/dev/null 2>&1 ||
		{ fail "qemu-img cannot make $s"; continue; }
	got=$(vdk_sha "$d/img.vmdk" 2>/dev/null)
	[ "$got" = "$RAW_SHA" ] && pass "qemu $s -> vdkit raw identical" ||
		fail "qemu $s -> vdkit raw differs ($got)"
	check "vdkit compare: qemu $s equals the raw source" "$VDKIT" compare "$d/img.vmdk" "$T/p.raw"
done

# Odd size (not a sector multiple): both round up to a sector, tails zero.
gen_raw "$T/odd.raw" 3000001 3
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/odd.raw" "$T/odd-q.vmdk"
[ "$(vdk_sha "$T/odd-q.vmdk" 2>/dev/null)" = "$(qemu_sha "$T/odd-q.vmdk")" ] &&
	pass "odd-size qemu stream reads identical" || fail "odd-size qemu stream differs"

# --- vdkit writes, qemu-img reads ------------------------------------------
for s in $SUBS vmfs; do
	d="$T/v-$s"
	mkdir -p "$d"
	if ! "$VDKIT" convert -q -O vmdk -o subformat=$s "$T/p.raw" "$d/img.vmdk" >/dev/null 2>&1 &&
		! "$VDKIT" convert -O vmdk -o subformat=$s "$T/p.raw" "$d/img.vmdk" >/dev/null 2>&1; then
		fail "vdkit cannot write $s"
		continue
	fi
	got=$(qemu_sha "$d/img.vmdk" 2>/dev/null)
	[ "$got" = "$RAW_SHA" ] && pass "vdkit $s -> qemu raw identical" ||
		fail "vdkit $s -> qemu raw differs ($got)"
	case $s in *Flat | vmfs) ;; *)
		out=$(qemu-img check "$d/img.vmdk" 2>&1)
		echo "$out" | grep -q "No errors were found" && pass "qemu-img check clean: $s" ||
			fail "qemu-img check $s: $out" ;;
	esac
	if have vmdkinfo; then
		vmdkinfo "$d/img.vmdk" >"$T/vi.txt" 2>&1 && grep -qi "media size" "$T/vi.txt" &&
			pass "vmdkinfo opens vdkit $s" || fail "vmdkinfo refuses vdkit $s: $(head -3 "$T/vi.txt")"
	else
		skip "vmdkinfo not installed"
	fi
	[ "$(vdk_sha "$d/img.vmdk" 2>/dev/null)" = "$RAW_SHA" ] && pass "vdkit reads its own $s" ||
		fail "vdkit misreads its own $s"
done
grep -q 'createType="vmfs"' "$T/v-vmfs/img.vmdk" && grep -q 'VMFS "img-flat.vmdk"' "$T/v-vmfs/img.vmdk" &&
	pass "vmfs: ESXi descriptor + img-flat.vmdk" || fail "vmfs descriptor"
ls "$T/v-twoGbMaxExtentSparse/img-s001.vmdk" "$T/v-twoGbMaxExtentFlat/img-f001.vmdk" >/dev/null 2>&1 &&
	pass "split extents named like qemu (-s001, -f001)" || fail "split extent names"

# A 3 GiB sparse disk spans two split extents; data straddles the 2 GiB cut.
truncate -s 3G "$T/big.raw"
printf 'ACROSS-THE-2GiB-BOUNDARY' | dd of="$T/big.raw" bs=1 seek=$((2147483648 - 10)) conv=notrunc 2>/dev/null
printf 'TAIL' | dd of="$T/big.raw" bs=1 seek=3000000000 conv=notrunc 2>/dev/null
for s in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
	t=s; [ $s = twoGbMaxExtentFlat ] && t=f
	"$VDKIT" convert -O vmdk -o subformat=$s "$T/big.raw" "$T/big-$s.vmdk" >/dev/null 2>&1 &&
		qemu-img compare -q "$T/big.raw" "$T/big-$s.vmdk" && [ -e "$T/big-$s-${t}002.vmdk" ] &&
		pass "$s: two extents, data across the boundary, qemu reads identical" || fail "$s 3 GiB"
	rm -f "$T"/big-$s*
done
rm -f "$T/big.raw"

# Options land in the descriptor.
"$VDKIT" convert -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic,hwversion=13,toolsversion=12345 \
	"$T/p.raw" "$T/opt.vmdk" >/dev/null 2>&1
head -c 4096 "$T/opt.vmdk" | tr -d '\0' >"$T/opt.txt"
grep -q 'ddb.adapterType = "lsilogic"' "$T/opt.txt" && grep -q 'ddb.virtualHWVersion = "13"' "$T/opt.txt" &&
	grep -q 'ddb.toolsVersion = "12345"' "$T/opt.txt" && grep -q 'ddb.geometry.heads = "255"' "$T/opt.txt" &&
	pass "adapter_type/hwversion/toolsversion options" || fail "options not in descriptor"
"$VDKIT" convert -O vmdk -o subformat=nonsense "$T/p.raw" "$T/bad.vmdk" >/dev/null 2>&1
[ $? -eq 2 ] && [ ! -e "$T/bad.vmdk" ] && pass "unknown subformat is a usage error" || fail "bad subformat accepted"

# streamOptimized written to a pipe is byte-identical to the file output
# apart from the random CID/uuid, and qemu reads it.
if "$VDKIT" convert -O vmdk -o subformat=streamOptimized "$T/p.raw" - 2>/dev/null | cat >"$T/pipe.vmdk" &&
	[ "$(qemu_sha "$T/pipe.vmdk" 2>/dev/null)" = "$RAW_SHA" ]; then
	pass "streamOptimized through a pipe reads back identical"
else
	fail "streamOptimized through a pipe"
fi
"$VDKIT" convert -O vmdk -o subformat=monolithicSparse "$T/p.raw" - >/dev/null 2>&1
[ $? -ne 0 ] && pass "monolithicSparse to a pipe refused" || fail "sparse to a pipe accepted"

# All-zero stream disk: complete and readable.
truncate -s 64M "$T/zero.raw"
"$VDKIT" convert -O vmdk -o subformat=streamOptimized "$T/zero.raw" "$T/zero.vmdk" >/dev/null 2>&1
[ "$(qemu_sha "$T/zero.vmdk" 2>/dev/null)" = "$(sha "$T/zero.raw")" ] &&
	[ "$(stat -c %s "$T/zero.vmdk")" -lt 200000 ] && pass "all-zero stream disk is small and reads as zeroes" ||
	fail "all-zero stream disk"

# Flat extents report where their bytes sit (so the pipeline may clone).
"$VDKIT" map --output=json "$T/q-monolithicFlat/img.vmdk" >"$T/map.json" 2>/dev/null
grep -q '"offset": 0' "$T/map.json" && pass "monolithicFlat map gives verbatim offsets" ||
	fail "flat map: $(head -c 300 "$T/map.json")"
# Thin flat files (vmfsThin): holes come from SEEK_HOLE and are not read.
mkdir -p "$T/thin"
truncate -s 64M "$T/thin/d-flat.vmdk"
printf 'one' | dd of="$T/thin/d-flat.vmdk" bs=1 seek=$((1 << 20)) conv=notrunc 2>/dev/null
printf 'two' | dd of="$T/thin/d-flat.vmdk" bs=1 seek=$((40 << 20)) conv=notrunc 2>/dev/null
cat >"$T/thin/d.vmdk" <<-EOF
	# Disk DescriptorFile
	version=1
	CID=fffffffe
	parentCID=ffffffff
	createType="vmfsThin"
	RW 131072 VMFS "d-flat.vmdk"
	ddb.thinProvisioned = "1"
EOF
data=$("$VDKIT" map --output=json "$T/thin/d.vmdk" 2>/dev/null |
	awk -F'"length": ' '/"data": true/ { split($2, a, ","); n += a[1] } END { print n + 0 }')
[ "$data" -gt 0 ] && [ "$data" -le $((2 << 20)) ] && pass "thin flat VMDK: holes mapped as zero ($data bytes of data)" ||
	fail "thin flat map: $data bytes of data"
# qemu-img does not open vmfsThin; the flat file is the disk itself.
[ "$(vdk_sha "$T/thin/d.vmdk")" = "$(sha "$T/thin/d-flat.vmdk")" ] && pass "thin flat VMDK reads as its flat file" ||
	fail "thin flat content"

# Flat outputs are clone targets: on a reflink XFS both directions share
# blocks (root only: loop mount).
vmdk_clone_xfs() {
	local mnt="$T/mnt"
	mkdir -p "$mnt"
	trap 'umount "$T/mnt" 2>/dev/null; rm -rf "$T"' EXIT
	truncate -s 1G "$T/xfs.img"
	mkfs.xfs -q -m reflink=1 "$T/xfs.img" >/dev/null 2>&1 || { skip "mkfs.xfs -m reflink=1 failed"; return; }
	mount -o loop "$T/xfs.img" "$mnt" 2>/dev/null || { skip "cannot loop-mount XFS here"; return; }
	"$TOP/bin/vdk-gen" -k random "$mnt/src.raw" $((64 * 1048576)) 4
	out=$("$VDKIT" convert --clone=always -O vmdk -o subformat=monolithicFlat "$mnt/src.raw" "$mnt/f.vmdk" 2>&1)
	[[ "$out" == *"MiB cloned"* ]] && cmp -s "$mnt/src.raw" "$mnt/f-flat.vmdk" &&
		pass "raw -> monolithicFlat shares blocks (--clone=always)" || fail "flat clone target: $out"
	out=$("$VDKIT" convert --clone=always -O raw "$mnt/f.vmdk" "$mnt/back.raw" 2>&1)
	[[ "$out" == *"MiB cloned"* ]] && cmp -s "$mnt/src.raw" "$mnt/back.raw" &&
		pass "monolithicFlat -> raw shares blocks (--clone=always)" || fail "flat clone source: $out"
	out=$("$VDKIT" convert --clone=always -O vmdk -o subformat=twoGbMaxExtentFlat "$mnt/f.vmdk" "$mnt/g.vmdk" 2>&1)
	[[ "$out" == *"MiB cloned"* ]] && cmp -s "$mnt/src.raw" "$mnt/g-f001.vmdk" &&
		pass "monolithicFlat -> twoGbMaxExtentFlat shares blocks" || fail "flat to split flat: $out"
	umount "$mnt"
}
if [ "$(id -u)" = 0 ] && have mkfs.xfs; then vmdk_clone_xfs; else skip "flat clone test needs root and mkfs.xfs"; fi
rm -f "$T/xfs.img"

# --- snapshots --------------------------------------------------------------
d="$T/snap"
mkdir -p "$d"
qemu-img convert -f raw -O vmdk "$T/p.raw" "$d/base.vmdk"
qemu-img create -f vmdk -b base.vmdk -F vmdk "$d/delta.vmdk" >/dev/null
qemu-io -c "write -P 0x5a 1M 300k" -c "write -P 0x33 3M 64k" "$d/delta.vmdk" >/dev/null 2>&1
[ "$(vdk_sha "$d/delta.vmdk" 2>/dev/null)" = "$(qemu_sha "$d/delta.vmdk")" ] &&
	pass "snapshot delta reads through to its parent" || fail "snapshot chain differs"
"$VDKIT" info --output=json "$d/delta.vmdk" >"$T/info.json" 2>/dev/null
grep -q '"parent-cid"' "$T/info.json" && grep -q '"create-type": "monolithicSparse"' "$T/info.json" &&
	grep -q '"extents"' "$T/info.json" && grep -q '"unclean-shutdown": false' "$T/info.json" &&
	pass "info JSON: cid, parent-cid, create-type, extents, unclean flag" || fail "info JSON"
qemu-io -c "write -P 0x11 0 64k" "$d/base.vmdk" >/dev/null 2>&1 # bumps the parent's CID
"$VDKIT" convert -O raw "$d/delta.vmdk" "$T/cidfail.raw" 2>"$T/err.txt"
[ $? -eq 1 ] && grep -q "parentCID" "$T/err.txt" && [ ! -e "$T/cidfail.raw" ] &&
	pass "parent CID mismatch refused" || fail "CID mismatch not refused: $(cat "$T/err.txt")"
"$VDKIT" convert --force -O raw "$d/delta.vmdk" "$T/cidforce.raw" >/dev/null 2>&1 &&
	pass "--force opens despite the CID mismatch" || fail "--force"
# A parent chain that loops.
sed -e 's/parentFileNameHint="base.vmdk"/parentFileNameHint="loop.vmdk"/' "$d/delta.vmdk" >"$d/loop.vmdk" 2>/dev/null
if cmp -s "$d/loop.vmdk" "$d/delta.vmdk"; then skip "could not craft a loop"; else
	"$VDKIT" info "$d/loop.vmdk" >/dev/null 2>&1
	rc=$?
	[ $rc -eq 1 ] && pass "self-parent loop refused" || fail "loop: exit $rc"
fi

# --- hostile descriptors ----------------------------------------------------
d="$T/sec/img"
mkdir -p "$d"
echo "TOPSECRET-$$" >"$T/sec/secret.txt"
for name in /etc/passwd ../secret.txt; do
	printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 20 FLAT "%s" 0\n' \
		"$name" >"$d/evil.vmdk"
	"$VDKIT" convert -O raw "$d/evil.vmdk" "$T/sec/out.raw" 2>"$T/err.txt"
	rc=$?
	leaked=$(grep -rl -e "TOPSECRET-$$" -e "root:" "$T/sec/img" "$T/sec/out.raw" 2>/dev/null)
	[ $rc -eq 1 ] && [ ! -e "$T/sec/out.raw" ] && [ -z "$leaked" ] &&
		pass "extent \"$name\" refused, nothing leaked" || fail "extent $name: rc=$rc $leaked"
	printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\ncreateType="monolithicSparse"\nparentFileNameHint="%s"\nRW 20 ZERO\n' \
		"$name" >"$d/evilp.vmdk"
	"$VDKIT" info "$d/evilp.vmdk" >/dev/null 2>&1
	[ $? -eq 1 ] && pass "parent \"$name\" refused" || fail "parent $name not refused"
done
mkfifo "$d/fifo" 2>/dev/null &&
	printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 20 FLAT "fifo" 0\n' >"$d/fifo.vmdk" &&
	{ timeout 10 "$VDKIT" info "$d/fifo.vmdk" >/dev/null 2>&1; [ $? -eq 1 ] && pass "FIFO extent refused" || fail "FIFO extent"; }
for ct in vmfsRawDeviceMap vmfsPassthroughRawDeviceMap fullDevice partitionedDevice; do
	printf '# Disk DescriptorFile\nversion=1\ncreateType="%s"\nRW 20 VMFSRDM "x-rdm.vmdk"\n' $ct >"$d/rdm.vmdk"
	"$VDKIT" info "$d/rdm.vmdk" 2>"$T/err.txt" >/dev/null
	[ $? -eq 1 ] && grep -q "device" "$T/err.txt" && pass "$ct refused with the reason" || fail "$ct"
done

# --- real samples -------------------------------------------------------------
S="$SHARED/testdata"
if [ -d "$S" ]; then
	while read -r f want; do
		src="$S/$f"
		case $f in *.bz2) bzcat "$src" >"$T/sample.vmdk"; src="$T/sample.vmdk" ;; esac
		if [ "$f" = qemu-iotests/iotest-version3.vmdk.bz2 ]; then
			# 16 GiB, almost all zero: hash the raw view without writing it,
			# and let qemu-img compare vdkit's raw output as well.
			got=$("$TOP/bin/vdk-rawsha" "$src" vmdk)
			[ "$got" = "$want" ] && pass "sample $f sha256 (raw view)" || fail "sample $f: $got"
			"$VDKIT" convert -O raw "$src" "$T/sample.raw" >/dev/null 2>&1 &&
				qemu-img compare -q -f vmdk -F raw "$src" "$T/sample.raw" &&
				pass "sample $f identical to qemu's view" || fail "sample $f differs"
		else
			got=$(vdk_sha "$src" 2>/dev/null)
			[ "$got" = "$want" ] && pass "sample $f sha256" || fail "sample $f: $got"
		fi
		rm -f "$T/sample.vmdk" "$T/sample.raw"
	done <<-EOF
		dfvfs/ext2.vmdk a6c2f0e39afe6c6ab432ca5465349fcefe8dc944398e97b2d957d3f89dbb5d80
		vmdk-rs/monolithicFlat.vmdk a3bcf05f07a1c06a3380eeca8571f0efb2b85afafa1e21662b8cad436d1f7727
		vmdk-rs/monolithicSparse.vmdk a3bcf05f07a1c06a3380eeca8571f0efb2b85afafa1e21662b8cad436d1f7727
		vmdk-rs/twoGbMaxExtentSparse.vmdk a3bcf05f07a1c06a3380eeca8571f0efb2b85afafa1e21662b8cad436d1f7727
		vmdk-rs/streamOptimizedWithMarkers.vmdk 92c0f8b4280377437056f57c51ef51a5f8aeb1462ac630ef0633febcbfc3db4e
		qemu-iotests/iotest-version3.vmdk.bz2 0859bb3397bc1d30fa979c80a289ce98bfd6c1141a64594d6f3cc8cd68218faf
		ovf/input.vmdk 49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14
	EOF
	bzcat "$S/qemu-iotests/afl9.vmdk.bz2" >"$T/afl9.vmdk"
	timeout 60 "$VDKIT" convert -O raw "$T/afl9.vmdk" "$T/afl9.raw" >/dev/null 2>&1
	rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 1 ] && pass "afl9.vmdk refused or read without a crash (exit $rc)" ||
		fail "afl9.vmdk: exit $rc"
else
	skip "shared testdata not found"
fi
# qemu rewrites a CID unpadded: a shorter descriptor leaves a few bytes of
# the old last line after its NUL. That remnant is accepted (qemu-img reads
# it); a real line after the NUL is still refused.
truncate -s 1M "$T/nul.raw"
qemu-img convert -f raw -O vmdk "$T/nul.raw" "$T/nul.vmdk"
nul_at() { python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); print(d.index(b"\0", 512))' "$1"; }
cp "$T/nul.vmdk" "$T/rem.vmdk"
printf 'ic"\n' | dd of="$T/rem.vmdk" bs=1 seek=$(( $(nul_at "$T/rem.vmdk") + 1 )) conv=notrunc 2>/dev/null
qemu-img info "$T/rem.vmdk" >/dev/null 2>&1 && "$VDKIT" info "$T/rem.vmdk" >/dev/null 2>"$T/err" &&
	pass "descriptor with qemu's CID-rewrite remnant after the NUL is read, as by qemu-img" ||
	fail "remnant after NUL: $(cat "$T/err")"
cp "$T/nul.vmdk" "$T/hid.vmdk"
printf 'RW 2048 FLAT "other.raw" 0\n' | dd of="$T/hid.vmdk" bs=1 seek=$(( $(nul_at "$T/hid.vmdk") + 1 )) conv=notrunc 2>/dev/null
"$VDKIT" info "$T/hid.vmdk" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "NUL byte followed by more text" "$T/err" &&
	pass "a descriptor line hidden after a NUL is refused (exit 1)" || fail "hidden line: exit $rc: $(cat "$T/err")"

finish
