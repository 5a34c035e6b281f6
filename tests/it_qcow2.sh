#!/usr/bin/env bash
# qcow2 against the oracles: images qemu-img makes read byte-identical
# through vdkit; images vdkit writes read identical through qemu-img, pass
# `qemu-img check` with no errors or leaks and open in qcowinfo; chains,
# data files and confinement.
source "$(dirname "$0")/lib.sh"
VDKIT=${VDKIT_OVERRIDE:-$VDKIT}
have qemu-img || { skip "qemu-img not installed"; finish; }
[ -x "$VDKIT" ] || { skip "bin/vdkit not built"; finish; }

SRC=$T/src.raw
gen_raw "$SRC" $((6 * 1024 * 1024 + 4096 * 3)) 5
WANT=$(sha "$SRC")

# --- qemu-img writes, vdkit reads ---------------------------------------
read_case() { # NAME QEMU-IMG-CONVERT-ARGS...
	local name=$1; shift
	rm -f "$T/q.qcow2"
	if ! qemu-img convert -f raw -O qcow2 "$@" "$SRC" "$T/q.qcow2" >/dev/null 2>&1; then
		fail "qemu-img could not make $name"; return
	fi
	local got; got=$(vdk_sha "$T/q.qcow2" qcow2 2>/dev/null)
	[ "$got" = "$WANT" ] && pass "read qemu-made $name" || fail "read qemu-made $name ($got)"
}
read_case "compat=0.10" -o compat=0.10
read_case "compat=1.1" -o compat=1.1
read_case "cluster 512" -o cluster_size=512
read_case "cluster 4K" -o cluster_size=4096
read_case "cluster 64K" -o cluster_size=65536
read_case "cluster 2M" -o cluster_size=2M
read_case "zlib compressed" -c
read_case "zlib compressed 4K v2" -c -o compat=0.10,cluster_size=4096
read_case "zstd compressed" -c -o compression_type=zstd
read_case "zstd compressed 2M" -c -o compression_type=zstd,cluster_size=2M
read_case "extended_l2" -o extended_l2=on
read_case "extended_l2 compressed" -c -o extended_l2=on,cluster_size=128k
read_case "preallocation=metadata" -o preallocation=metadata

# Subclusters, zero flags and discards written by qemu-io.
if have qemu-io; then
	for x in "extended_l2=on,cluster_size=64k" "compat=1.1" "compat=0.10"; do
		rm -f "$T/s.qcow2" "$T/s.raw"
		qemu-img create -q -f qcow2 -o "$x" "$T/s.qcow2" 4M
		qemu-io -f qcow2 -c "write -P 0x41 0 64k" -c "write -P 0x42 70k 3k" \
			-c "write -z 64k 4k" -c "write -P 0x43 1M 256k" -c "write -z 1088k 64k" \
			-c "discard 1024k 32k" -c "write -P 0x44 4190208 4096" "$T/s.qcow2" >/dev/null
		want=$(qemu_sha "$T/s.qcow2" qcow2)
		got=$(vdk_sha "$T/s.qcow2" qcow2 2>/dev/null)
		[ "$got" = "$want" ] && pass "qemu-io partial writes/zeroes ($x)" ||
			fail "qemu-io partial writes/zeroes ($x)"
	done
else
	skip "qemu-io not installed"
fi

# Internal snapshots: the active layer is read, snapshots are listed.
rm -f "$T/snap.qcow2"
qemu-img convert -q -O qcow2 "$SRC" "$T/snap.qcow2"
qemu-img snapshot -c before "$T/snap.qcow2"
if have qemu-io; then qemu-io -c "write -P 0x99 0 1M" "$T/snap.qcow2" >/dev/null; fi
check "snapshot image: active layer as qemu reads it" \
	test "$(vdk_sha "$T/snap.qcow2" qcow2)" = "$(qemu_sha "$T/snap.qcow2" qcow2)"
check "info lists the snapshot" sh -c "'$VDKIT' info --output=json '$T/snap.qcow2' | grep -q '\"name\": \"before\"'"

# Backing chain of three files in one folder.
mkdir -p "$T/chain"
gen_raw "$T/chain/b.raw" 4194304 9
qemu-img convert -q -f raw -O qcow2 "$T/chain/b.raw" "$T/chain/base.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 "$T/chain/mid.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b mid.qcow2 "$T/chain/top.qcow2"
if have qemu-io; then
	qemu-io -c "write -P 0x11 512k 128k" "$T/chain/mid.qcow2" >/dev/null
	qemu-io -c "write -P 0x22 576k 128k" -c "write -z 0 64k" "$T/chain/top.qcow2" >/dev/null
fi
check "backing chain of three reads as qemu reads it" \
	test "$(vdk_sha "$T/chain/top.qcow2")" = "$(qemu_sha "$T/chain/top.qcow2")"

# --- confinement ---------------------------------------------------------
mkdir -p "$T/jail" "$T/outside"
echo "secret" > "$T/outside/secret.txt"
for b in /etc/passwd ../outside/secret.txt; do
	rm -f "$T/jail/evil.qcow2" "$T/jail/out.raw"
	qemu-img create -q -f qcow2 -u -F raw -b "$b" "$T/jail/evil.qcow2" 1M
	if "$VDKIT" convert -O raw "$T/jail/evil.qcow2" "$T/jail/out.raw" >/dev/null 2>&1; then
		fail "backing file $b refused"
	else
		[ -e "$T/jail/out.raw" ] && fail "backing file $b: output left behind" ||
			pass "backing file $b refused, nothing written"
	fi
done
rm -f "$T/jail/evil.qcow2"
truncate -s 1M "$T/outside/data.raw"
qemu-img create -q -f qcow2 -o data_file="$T/outside/data.raw" "$T/jail/evil.qcow2" 1M
if "$VDKIT" convert -O raw "$T/jail/evil.qcow2" "$T/jail/out2.raw" >/dev/null 2>&1; then
	fail "data file outside the folder refused"
else
	pass "data file outside the folder refused"
fi

# --- vdkit writes, qemu-img reads ----------------------------------------
write_case() { # NAME VDKIT-CONVERT-ARGS...
	local name=$1; shift
	rm -f "$T/w.qcow2"
	if ! "$VDKIT" convert -f raw -O qcow2 "$@" "$SRC" "$T/w.qcow2" >/dev/null 2>"$T/err"; then
		fail "vdkit write $name: $(cat "$T/err")"; return
	fi
	local got; got=$(qemu_sha "$T/w.qcow2" qcow2)
	[ "$got" = "$WANT" ] && pass "qemu-img reads vdkit $name" || fail "qemu-img reads vdkit $name"
	local out; out=$(qemu-img check -f qcow2 "$T/w.qcow2" 2>&1)
	if echo "$out" | grep -q "No errors were found" && ! echo "$out" | grep -qi "leak"; then
		pass "qemu-img check clean: $name"
	else
		fail "qemu-img check: $name: $out"
	fi
	if have qcowinfo && ! echo "$*" | grep -q zstd; then
		check "qcowinfo opens vdkit $name" qcowinfo "$T/w.qcow2"
	fi
	got=$(vdk_sha "$T/w.qcow2" qcow2)
	[ "$got" = "$WANT" ] && pass "vdkit reads back $name" || fail "vdkit reads back $name"
}
write_case "default"
write_case "compat=0.10" -o compat=0.10
write_case "cluster 512" -o cluster_size=512
write_case "cluster 4K" -o cluster_size=4096
write_case "cluster 2M" -o cluster_size=2M
write_case "preallocation=metadata" -o preallocation=metadata
write_case "-c zlib" -c
write_case "-c zlib 4K v2" -c -o compat=0.10,cluster_size=4096
write_case "-c zlib 2M" -c -o cluster_size=2M
write_case "-c zstd" -c -o compression_type=zstd
write_case "clone=never" --clone=never

# Sparse GiB disk: tiny output, still exact.
truncate -s 1G "$T/big.raw"
printf 'hello' | dd of="$T/big.raw" bs=1 seek=$((700 * 1024 * 1024)) conv=notrunc 2>/dev/null
rm -f "$T/big.qcow2"
"$VDKIT" convert -f raw -O qcow2 "$T/big.raw" "$T/big.qcow2" >/dev/null 2>&1
check "1 GiB sparse: qemu-img check clean" qemu-img check -q "$T/big.qcow2"
check "1 GiB sparse: identical" qemu-img compare -q -f raw -F qcow2 "$T/big.raw" "$T/big.qcow2"
sz=$(stat -c %s "$T/big.qcow2")
[ "$sz" -lt $((1024 * 1024)) ] && pass "1 GiB sparse: small file ($sz bytes)" ||
	fail "1 GiB sparse: file of $sz bytes"

# data_file: the qcow2 references the raw file in place, no data copied.
# The name is stored as given (qemu-img does the same and opens it relative
# to its working directory; vdkit resolves it in the image's folder).
mkdir -p "$T/df"
cp "$SRC" "$T/df/disk.raw"
before=$(sha "$T/df/disk.raw")
rm -f "$T/df/disk.qcow2"
if (cd "$T/df" && "$VDKIT" convert -f raw -O qcow2 -o data_file=disk.raw,data_file_raw=on \
	disk.raw disk.qcow2 >/dev/null 2>"$T/err"); then
	sz=$(stat -c %s "$T/df/disk.qcow2")
	[ "$sz" -lt $((1024 * 1024)) ] && pass "data_file: metadata only ($sz bytes)" ||
		fail "data_file: $sz bytes written"
	check "data_file: qemu-img reads it identical" \
		test "$(cd "$T/df" && qemu_sha disk.qcow2 qcow2)" = "$WANT"
	check "data_file: qemu-img check clean" sh -c "cd '$T/df' && qemu-img check -q disk.qcow2"
	check "data_file: vdkit reads it identical" test "$(vdk_sha "$T/df/disk.qcow2" qcow2)" = "$WANT"
	check "data_file: the raw file is untouched" test "$(sha "$T/df/disk.raw")" = "$before"
	(cd "$T/df" && qemu-img info disk.qcow2) | grep -q "data file raw: true" &&
		pass "data_file: qemu-img sees data-file-raw" || fail "data_file: qemu-img sees data-file-raw"
else
	fail "data_file convert: $(cat "$T/err")"
fi
# A data file that does not hold the source's bytes is refused.
gen_raw "$T/df/other.raw" $((6 * 1024 * 1024 + 4096 * 3)) 99
rm -f "$T/df/bad.qcow2"
if "$VDKIT" convert -f raw -O qcow2 -o data_file="$T/df/other.raw" "$SRC" "$T/df/bad.qcow2" \
	>/dev/null 2>&1; then
	fail "data_file with other content refused"
else
	[ -e "$T/df/bad.qcow2" ] && fail "data_file refused but output left" ||
		pass "data_file with other content refused, nothing left"
fi

# --- conformance samples -------------------------------------------------
S=$SHARED/testdata/dfvfs/ext2.qcow2
if [ -f "$S" ]; then
	check "testdata dfvfs/ext2.qcow2 sha256" \
		test "$(vdk_sha "$S" qcow2)" = a6c2f0e39afe6c6ab432ca5465349fcefe8dc944398e97b2d957d3f89dbb5d80
else
	skip "testdata dfvfs/ext2.qcow2 missing"
fi

# --- refusals --------------------------------------------------------------
cp "$T/snap.qcow2" "$T/enc.qcow2"
printf '\x00\x00\x00\x02' | dd of="$T/enc.qcow2" bs=1 seek=32 conv=notrunc 2>/dev/null
"$VDKIT" info "$T/enc.qcow2" >/dev/null 2>"$T/err"
grep -q "encrypted" "$T/err" && pass "encryption refused with a clear message" ||
	fail "encryption refused: $(cat "$T/err")"
cp "$T/snap.qcow2" "$T/inc.qcow2"
printf '\x00\x00\x00\x00\x00\x00\x00\x40' | dd of="$T/inc.qcow2" bs=1 seek=72 conv=notrunc 2>/dev/null
"$VDKIT" info "$T/inc.qcow2" >/dev/null 2>"$T/err"
grep -q "unknown incompatible feature" "$T/err" && pass "unknown incompatible bit refused" ||
	fail "unknown incompatible bit refused: $(cat "$T/err")"
finish
