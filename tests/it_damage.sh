#!/usr/bin/env bash
# Damaged metadata is refused, not converted: valid VMDK, VHD and VHDX
# images made by qemu-img, each corrupted at one field by tests/damage.py,
# must make `vdkit convert` exit 1 with a message naming the file, the
# format and the offset, and leave no output behind. The undamaged images
# convert to qemu-img's bytes. Fields only qemu-img reads at open (fuzz-diff's
# explained lenient classes: a VMDK redundant GD, a VHD BAT entry past the
# disk's last block, a qcow2 refcount table offset) damaged: qemu-img refuses,
# vdkit still reads the guest's bytes. Also: a raw copy of a raw file is exact.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed (apt-get install qemu-utils)"; finish; }
have python3 || { skip "python3 not installed"; finish; }
DMG="python3 $TOP/tests/damage.py"

# 4 MiB + 3 grains of patterned data (holes, zero runs) as the guest disk.
gen_raw "$T/src.raw" $((4 * 1048576 + 3 * 65536)) 7

# refused NAME FORMAT EXPECT IMAGE [FMT]: convert must exit 1, name the file,
# format and an offset, say EXPECT, and leave no output file.
refused() {
	local name=$1 fmt=$2 want=$3 img=$4 out
	rm -f "$T/out.raw"
	out=$("$VDKIT" convert -q ${5:+-f $5} -O raw "$img" "$T/out.raw" 2>&1)
	local rc=$?
	if [ $rc -eq 1 ] && [[ "$out" == *"$img"* ]] && [[ "$out" == *"$fmt:"* ]] &&
		[[ "$out" == *"offset "* ]] && [[ "$out" == *"$want"* ]] && [ ! -e "$T/out.raw" ]; then
		pass "$name: refused (${out#*: })"
	else
		fail "$name: rc $rc, said: $out"
	fi
}

# damaged NAME KIND BASE FORMAT EXPECT [ARG]: copy BASE, damage it, refuse it.
damaged() {
	local name=$1 kind=$2 base=$3 fmt=$4 want=$5 img="$T/$1.img"
	cp "$base" "$img" && $DMG "$kind" "$img" ${6:-} || { fail "$name: could not damage"; return; }
	refused "$name" "$fmt" "$want" "$img" "$fmt"
}

ref=$(sha "$T/src.raw")

# ignored NAME KIND BASE FMT: a field only qemu-img reads at open is damaged
# (fuzz-diff's explained lenient classes): qemu-img refuses the image, vdkit
# reads what qemu-img reads from BASE, undamaged.
ignored() {
	local name=$1 kind=$2 base=$3 fmt=$4 img="$T/$1.img" got
	cp "$base" "$img" && $DMG "$kind" "$img" || { fail "$name: could not damage"; return; }
	if qemu-img convert -f "$fmt" -O raw "$img" "$T/q.raw" 2>/dev/null; then
		fail "$name: qemu-img read it (the damage is not the fuzz-diff class)"
	else
		got=$(vdk_sha "$img" "$fmt" 2>/dev/null)
		[ "$got" = "$(qemu_sha "$base" "$fmt")" ] &&
			pass "$name: qemu-img refuses, vdkit reads what qemu-img reads undamaged" ||
			fail "$name: vdkit read $got"
	fi
	rm -f "$T/q.raw"
}
good() {
	local got
	got=$(vdk_sha "$1" "$2")
	[ "$got" = "$(qemu_sha "$1")" ] && pass "undamaged $2 converts to qemu-img's bytes" ||
		fail "undamaged $2: $got"
}

# ---- VMDK -----------------------------------------------------------------
qemu-img convert -f raw -O vmdk "$T/src.raw" "$T/s.vmdk"
good "$T/s.vmdk" vmdk
damaged vmdk-gte-desc vmdk:gte-desc "$T/s.vmdk" vmdk "inside the embedded descriptor"
damaged vmdk-gte-gd vmdk:gte-gd "$T/s.vmdk" vmdk "inside the grain directory"
damaged vmdk-gte-gt vmdk:gte-gt "$T/s.vmdk" vmdk "inside the grain table"
damaged vmdk-gte-eof vmdk:gte-eof "$T/s.vmdk" vmdk "past the end"
damaged vmdk-gte-one vmdk:gte-one "$T/s.vmdk" vmdk "points at sector 1, inside the embedded descriptor"
# with the zeroed-grain flag, GTE 1 is a zeroed grain: qemu-img reads it so too
qemu-img convert -f raw -O vmdk -o zeroed_grain=on "$T/src.raw" "$T/zg.vmdk"
$DMG vmdk:gte-one "$T/zg.vmdk" && [ "$(vdk_sha "$T/zg.vmdk" vmdk)" = "$(qemu_sha "$T/zg.vmdk")" ] &&
	pass "vmdk zeroed_grain=on: GTE 1 reads as zeroes, as qemu-img reads it" ||
	fail "vmdk zeroed_grain=on with GTE 1: vdkit and qemu-img differ"
ignored vmdk-rgd-eof vmdk:rgd-eof "$T/s.vmdk" vmdk
damaged vmdk-grain-100 vmdk:grain "$T/s.vmdk" vmdk "not a power of two" 100
damaged vmdk-grain-8 vmdk:grain "$T/s.vmdk" vmdk "greater than 8" 8
damaged vmdk-gtes-256 vmdk:gtes "$T/s.vmdk" vmdk "numGTEsPerGT is 256" 256
damaged vmdk-overhead vmdk:overhead "$T/s.vmdk" vmdk "overHead"
damaged vmdk-desc-nul vmdk:desc-nul "$T/s.vmdk" vmdk "NUL byte"
# truncated inside the last grain (qemu writes whole grains)
cp "$T/s.vmdk" "$T/trunc.vmdk" && truncate -s -1000 "$T/trunc.vmdk"
refused vmdk-truncated vmdk "truncated image" "$T/trunc.vmdk"
# a grain that two entries share: open reads it, check counts it
cp "$T/s.vmdk" "$T/dup.vmdk" && $DMG vmdk:gte-dup "$T/dup.vmdk"
out=$("$VDKIT" check "$T/dup.vmdk" 2>&1)
rc=$?
[ $rc -eq 2 ] && [[ "$out" == *"referenced twice"* ]] && [[ "$out" == *"at offset"* ]] &&
	pass "vmdk check: a grain referenced twice is a corruption with its offset" ||
	fail "vmdk check (rc $rc): $out"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/src.raw" "$T/st.vmdk"
good "$T/st.vmdk" vmdk
damaged vmdk-stream-short vmdk:stream-short "$T/st.vmdk" vmdk "inflates to 32768 bytes"
damaged vmdk-stream-gte-one vmdk:gte-one "$T/st.vmdk" vmdk "points at sector 1"
# The stream reader sizes each read from the grain table (the next grain's
# offset ends the window): its entries are checked at open like a sparse
# extent's, so a window is never sized from a damaged one.
damaged vmdk-stream-gte-desc vmdk:gte-desc "$T/st.vmdk" vmdk "inside the embedded descriptor"
damaged vmdk-stream-gte-gt vmdk:gte-gt "$T/st.vmdk" vmdk "inside the redundant grain table"
damaged vmdk-stream-gte-eof vmdk:gte-eof "$T/st.vmdk" vmdk "past the end"
# an extent whose header capacity is not its descriptor line's (qemu-img
# sizes the disk from the header, vdkit from the descriptor: refused)
mkdir "$T/split" && qemu-img convert -f raw -O vmdk -o subformat=twoGbMaxExtentSparse \
	"$T/src.raw" "$T/split/d.vmdk"
good "$T/split/d.vmdk" vmdk
$DMG vmdk:capacity "$T/split/d-s001.vmdk" &&
	refused vmdk-extent-capacity vmdk "the disk's size is ambiguous" "$T/split/d.vmdk" vmdk

# ---- VHD ------------------------------------------------------------------
qemu-img convert -f raw -O vpc "$T/src.raw" "$T/s.vhd"
good "$T/s.vhd" vpc
ignored vhd-bat-dead-eof vhd:bat-dead-eof "$T/s.vhd" vpc
damaged vhd-bat-footer-copy vhd:bat-footer-copy "$T/s.vhd" vpc "into the footer copy"
# a valid footer copy that disagrees with the footer (qemu-img reads the copy)
damaged vhd-copy-size vhd:copy-size "$T/s.vhd" vpc "disagree on the current size"
damaged vhd-bat-header vhd:bat-header "$T/s.vhd" vpc "into the dynamic header"
damaged vhd-bat-bat vhd:bat-bat "$T/s.vhd" vpc "into the BAT"
damaged vhd-bat-footer vhd:bat-footer "$T/s.vhd" vpc "into the footer"
damaged vhd-bat-eof vhd:bat-eof "$T/s.vhd" vpc "past the end"
damaged vhd-max-entries vhd:max-entries "$T/s.vhd" vpc "0xffffffff"
damaged vhd-max-small vhd:max-small "$T/s.vhd" vpc "entries but the"
damaged vhd-block-size vhd:block-size "$T/s.vhd" vpc "not a power of two"
# found by make fuzz-diff: blocks qemu-img reads one way and vdkit another
damaged vhd-block-small vhd:block-small "$T/s.vhd" vpc "under 8 sectors"
damaged vhd-bat-overlap vhd:bat-overlap "$T/s.vhd" vpc "inside block"
# the last block cut short, the footer kept at the end
sz=$(stat -c %s "$T/s.vhd")
head -c $((sz - 512 - 4096)) "$T/s.vhd" >"$T/cut.vhd" && tail -c 512 "$T/s.vhd" >>"$T/cut.vhd"
refused vhd-truncated vpc "past the end" "$T/cut.vhd"

# ---- VHDX -----------------------------------------------------------------
qemu-img convert -f raw -O vhdx "$T/src.raw" "$T/s.vhdx"
good "$T/s.vhdx" vhdx
damaged vhdx-bat-meta vhdx:bat-meta "$T/s.vhdx" vhdx "inside the metadata region"
damaged vhdx-bat-bat vhdx:bat-bat "$T/s.vhdx" vhdx "inside the BAT region"
damaged vhdx-bat-log vhdx:bat-log "$T/s.vhdx" vhdx "inside the log region"
damaged vhdx-bat-eof vhdx:bat-eof "$T/s.vhdx" vhdx "beyond the end"
damaged vhdx-seq-equal vhdx:seq-equal "$T/s.vhdx" vhdx "ambiguous"
damaged vhdx-log-header vhdx:log-header "$T/s.vhdx" vhdx "into the header area"
damaged vhdx-log-self vhdx:log-self "$T/s.vhdx" vhdx "over the log region itself"
# control: the same kind of log entry aimed at a payload block is replayed
cp "$T/s.vhdx" "$T/logok.vhdx" && $DMG vhdx:log-ok "$T/logok.vhdx"
cp "$T/src.raw" "$T/logok.want" && dd if=/dev/zero of="$T/logok.want" bs=1M count=1 conv=notrunc 2>/dev/null
if "$VDKIT" convert -q -O raw "$T/logok.vhdx" "$T/logok.raw" 2>"$T/err"; then
	[ "$(sha "$T/logok.want")" != "$ref" ] && cmp -s "$T/logok.raw" "$T/logok.want" &&
		pass "a well-formed log entry (zero the first MiB) is replayed (control)" ||
		fail "control log entry was not replayed"
else
	fail "control log entry refused: $(cat "$T/err")"
fi

# ---- qcow2 ----------------------------------------------------------------
qemu-img convert -f raw -O qcow2 "$T/src.raw" "$T/s.qcow2"
good "$T/s.qcow2" qcow2
ignored qcow2-rt-offset qcow2:rt-offset "$T/s.qcow2" qcow2

# ---- raw ------------------------------------------------------------------
head -c 1000 "$T/src.raw" >"$T/r1000.raw"
"$VDKIT" convert -q -f raw -O raw "$T/r1000.raw" "$T/r1000.out"
check "raw -> raw of a 1000-byte file is the same 1000 bytes" cmp "$T/r1000.raw" "$T/r1000.out"
v=$("$VDKIT" info --output=json "$T/r1000.raw" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
q=$(qemu-img info -f raw --output=json "$T/r1000.raw" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
[ -n "$v" ] && [ "$v" = "$q" ] && pass "raw info virtual-size is qemu-img's ($q)" ||
	fail "raw info virtual-size $v, qemu-img $q"
"$VDKIT" convert -q -f raw -O vpc "$T/r1000.raw" "$T/r1000.vhd"
check "raw (1000 bytes) -> vpc pads to whole sectors; qemu-img compare agrees" \
	qemu-img compare -q -f raw -F vpc "$T/r1000.raw" "$T/r1000.vhd"
finish
