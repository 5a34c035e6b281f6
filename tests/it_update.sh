#!/usr/bin/env bash
# In-place updaters for VHDX and VHD (vpc), against qemu-img: random
# 512-aligned writes and zero ranges (bin/vdk-upd, a seed) into targets made
# by qemu-img and by vdkit must read back as the same operations applied to
# a raw copy; simulated power cuts at spread-out points of a long update
# leave a target that vdkit and qemu-img open, whose every sector is old or
# written, and that a rerun of the same update completes exactly. A VHDX
# log left by QEMU is replayed before an update; what a 1% update costs is
# printed.
# The power-cut loop syncs hundreds of times: on tmpfs unless told otherwise.
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
source "$(dirname "$0")/lib.sh"
UPD="$TOP/bin/vdk-upd"
MiB=1048576
SEED=11
NOPS=40
FLUSH=8

have qemu-img || { skip "qemu-img not installed: updater oracle tests"; finish; }

# Targets: NAME FORMAT (as qemu-img names it) and how it is made from an
# empty or a patterned raw disk of 16 MiB.
gen_raw "$T/pat.raw" $((16 * MiB)) 3
qemu-img create -q -f raw "$T/empty.raw" $((16 * MiB))
make_target() { # NAME -> $T/NAME.img
	local n=$1 f="$T/$1.img"
	case $n in
	vhdx-qemu-empty) qemu-img create -q -f vhdx -o block_size=1M,log_size=1M "$f" 16M ;;
	vhdx-qemu-pat) qemu-img convert -O vhdx -o block_size=8M "$T/pat.raw" "$f" ;;
	vhdx-vdkit-pat) "$VDKIT" convert -O vhdx -o block_size=1M "$T/pat.raw" "$f" >/dev/null 2>&1 ;;
	vhdx-vdkit-fixed) "$VDKIT" convert -O vhdx -o subformat=fixed,block_size=1M "$T/pat.raw" "$f" >/dev/null 2>&1 ;;
	vpc-qemu-empty) qemu-img convert -O vpc -o force_size=on "$T/empty.raw" "$f" ;;
	vpc-qemu-pat) qemu-img convert -O vpc -o force_size=on "$T/pat.raw" "$f" ;;
	vpc-qemu-fixed) qemu-img convert -O vpc -o subformat=fixed,force_size=on "$T/pat.raw" "$f" ;;
	vpc-vdkit-pat) "$VDKIT" convert -O vpc -o force_size=on "$T/pat.raw" "$f" >/dev/null 2>&1 ;;
	esac
}
fmt_of() { case $1 in vhdx*) echo vhdx ;; *) echo vpc ;; esac; }

# qcheck FMT FILE: qemu-img check clean where qemu checks the format.
qcheck() {
	[ "$1" = vpc ] && return 0 # qemu-img: "This image format does not support checks"
	qemu-img check -q -f "$1" "$2"
}
libyal_open() {
	if have vhdiinfo; then
		check "$1: vhdiinfo opens the updated target" vhdiinfo "$2"
	else
		skip "vhdiinfo not installed: libvhdi cannot open $1"
	fi
}

# NAME:CUTS:LOG — power cuts to try; LOG=1 where BAT changes go through the
# VHDX log often enough that some cut must find a live entry (a fixed VHDX
# never changes its BAT).
for t in vhdx-qemu-empty:20:1 vhdx-qemu-pat:10:0 vhdx-vdkit-pat:20:1 vhdx-vdkit-fixed:6:0 \
	vpc-qemu-empty:20:0 vpc-qemu-pat:10:0 vpc-qemu-fixed:6:0 vpc-vdkit-pat:20:0; do
	IFS=: read -r n ncuts needlog <<<"$t"
	f=$(fmt_of "$n")
	make_target "$n" || { fail "$n: making the target"; continue; }
	qemu-img convert -f "$f" -O raw "$T/$n.img" "$T/init.raw"
	cp "$T/init.raw" "$T/exp.raw"
	"$UPD" -f raw "$T/exp.raw" $SEED $NOPS -F $FLUSH >/dev/null

	# The whole update, uninterrupted.
	cp "$T/$n.img" "$T/full.img"
	out=$("$UPD" -f "$f" -c 999999999 "$T/full.img" $SEED $NOPS -F $FLUSH) ||
		{ fail "$n: update failed"; continue; }
	events=$(sed -n 's/.*events \([0-9]*\).*/\1/p' <<<"$out")
	check "$n: qemu-img reads the updated target as the expected raw" \
		qemu-img compare -f raw -F "$f" "$T/exp.raw" "$T/full.img"
	check "$n: qemu-img check is clean" qcheck "$f" "$T/full.img"
	check "$n: vdkit check is clean" "$VDKIT" check -f "$f" "$T/full.img"
	"$VDKIT" convert -f "$f" -O raw "$T/full.img" "$T/v.raw" >/dev/null 2>&1 &&
		cmp -s "$T/v.raw" "$T/exp.raw" && pass "$n: vdkit reads it as the expected raw" ||
		fail "$n: vdkit reads something else"
	libyal_open "$n" "$T/full.img"

	# Power cuts at points spread over the update's writes and syncs.
	bad=0 cuts=0 live=0
	for k in $(seq 1 "$ncuts"); do
		p=$(((events * k + ncuts / 2) / (ncuts + 1) + k % 3))
		cp "$T/$n.img" "$T/c.img"
		# (stderr of the group too: bash reports each kill there)
		{ "$UPD" -f "$f" -c $p "$T/c.img" $SEED $NOPS -F $FLUSH >/dev/null 2>&1; rc=$?; } 2>/dev/null
		[ $rc -eq 137 ] && cuts=$((cuts + 1))
		why=
		"$VDKIT" convert -f "$f" -O raw "$T/c.img" "$T/cv.raw" >/dev/null 2>&1 || why="vdkit cannot read it"
		[ -z "$why" ] && ! "$UPD" -V "$T/init.raw" "$T/cv.raw" $SEED $NOPS 2>/dev/null &&
			why="vdkit reads a sector neither old nor written"
		[ "$f" = vhdx ] && "$VDKIT" info -f vhdx "$T/c.img" 2>/dev/null | grep -q "replayed in memory" &&
			live=$((live + 1)) # cut while the header named our log entry
		cp "$T/c.img" "$T/cq.img"
		# qemu replays a VHDX log only on a read-write open
		[ "$f" = vhdx ] && ! qemu-img check -q -r all -f vhdx "$T/cq.img" >/dev/null 2>&1 &&
			why="${why:-qemu-img check -r all fails}"
		qemu-img convert -f "$f" -O raw "$T/cq.img" "$T/cq.raw" 2>/dev/null ||
			why="${why:-qemu-img cannot read it}"
		[ -z "$why" ] && ! cmp -s "$T/cq.raw" "$T/cv.raw" && why="qemu-img and vdkit read it differently"
		"$UPD" -f "$f" "$T/c.img" $SEED $NOPS -F $FLUSH >/dev/null 2>&1 || why="${why:-the rerun fails}"
		[ -z "$why" ] && ! qemu-img compare -q -f raw -F "$f" "$T/exp.raw" "$T/c.img" &&
			why="the rerun does not give the expected image"
		[ -z "$why" ] && ! qcheck "$f" "$T/c.img" && why="qemu-img check after the rerun"
		[ -z "$why" ] && ! "$VDKIT" check -f "$f" "$T/c.img" >/dev/null 2>&1 &&
			why="vdkit check after the rerun"
		[ -n "$why" ] && { bad=$((bad + 1)); echo "# $n, power cut at event $p of $events: $why"; }
	done
	[ $bad -eq 0 ] && [ $cuts -eq "$ncuts" ] &&
		pass "$n: $ncuts power cuts over $events writes and syncs: old-or-new, both readers agree, reruns exact" ||
		fail "$n: $bad of $ncuts power cuts went wrong ($cuts cut)"
	if [ "$needlog" = 1 ]; then
		[ $live -gt 0 ] && pass "$n: $live cuts left a live log entry that qemu-img and vdkit replayed" ||
			fail "$n: no cut left a live log entry (the log path went untested)"
	fi
done

# A log another writer left (QEMU 1.6, not replayed): update_open replays it
# into the file first, then updates; qemu-img replays its own copy.
# (Differencing VHDX and VHD, which qemu-img cannot make, are refused in
# tests/test_vhdx.c and tests/test_vhd.c.)
dl="$SHARED/testdata/qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2"
if [ -r "$dl" ]; then
	bzcat "$dl" >"$T/dl.vhdx"
	cp "$T/dl.vhdx" "$T/dlq.vhdx"
	qemu-img check -q -r all "$T/dlq.vhdx" >/dev/null 2>&1
	qemu-img convert -O raw "$T/dlq.vhdx" "$T/dl.raw"
	rm -f "$T/dlq.vhdx"
	"$UPD" -f raw "$T/dl.raw" 3 30 >/dev/null
	if "$UPD" -f vhdx "$T/dl.vhdx" 3 30 >/dev/null; then
		"$VDKIT" info "$T/dl.vhdx" | grep -q "log: empty" &&
			qemu-img compare -q -f raw -F vhdx "$T/dl.raw" "$T/dl.vhdx" &&
			qemu-img check -q "$T/dl.vhdx" &&
			pass "QEMU VHDX with an unreplayed log: replayed on open, updated exactly, check clean" ||
			fail "QEMU VHDX with an unreplayed log: wrong result"
	else
		fail "QEMU VHDX with an unreplayed log: update refused"
	fi
	rm -f "$T/dl.vhdx" "$T/dl.raw"
else
	skip "$dl missing: replay-before-update test"
fi

# More changed BAT sectors than one log entry holds: a 1 MiB log takes 253
# (4 KiB each, 511 blocks of 1 MiB apiece), so 1000 writes spread over
# 200 GiB need two entries; an 8 MiB log takes them in one. Both must give
# the same disk. (qemu-img has no block status for VHDX and would read all
# 200 GiB: vdkit compares, qemu-img checks.)
for l in 1M 8M; do
	qemu-img create -q -f vhdx -o block_size=1M,log_size=$l "$T/split-$l.vhdx" 200G
	out=$("$UPD" -f vhdx -w 65536 "$T/split-$l.vhdx" 9 1000) || fail "update with a $l log"
	read -r _ _ _ _ _ syncs _ <<<"$out"
	eval "syncs_$l=\$syncs"
done
[ "${syncs_1M:-0}" -gt "${syncs_8M:-0}" ] && "$VDKIT" compare "$T/split-1M.vhdx" "$T/split-8M.vhdx" >/dev/null &&
	qemu-img check -q "$T/split-1M.vhdx" &&
	pass "BAT changes split over log entries ($syncs_1M syncs against $syncs_8M) give the same disk, check clean" ||
	fail "split log entries: syncs $syncs_1M vs $syncs_8M, or the disks differ"
rm -f "$T"/split-*.vhdx

# Bad targets: refused with the file named, exit non-zero, left unchanged.
qemu-img create -q -f vpc "$T/bad.vhd" 8M
sz=$(stat -c %s "$T/bad.vhd")
printf 'XYZ' | dd of="$T/bad.vhd" bs=1 seek=$((sz - 512 + 68)) conv=notrunc status=none
sum=$(sha "$T/bad.vhd")
msg=$("$UPD" -f vpc "$T/bad.vhd" 1 5 2>&1) && fail "a VHD with a damaged footer was updated" ||
	{ grep -q "bad.vhd" <<<"$msg" && grep -q "footer" <<<"$msg" && [ "$(sha "$T/bad.vhd")" = "$sum" ] &&
		pass "a VHD whose footer at the end is damaged is refused, untouched: $msg" ||
		fail "damaged VHD footer: $msg"; }
head -c $((4 * MiB)) /dev/urandom >"$T/junk.vhdx"
sum=$(sha "$T/junk.vhdx")
msg=$("$UPD" -f vhdx "$T/junk.vhdx" 1 5 2>&1) && fail "a non-VHDX file was updated as VHDX" ||
	{ grep -q "junk.vhdx" <<<"$msg" && [ "$(sha "$T/junk.vhdx")" = "$sum" ] &&
		pass "a file that is no VHDX is refused, untouched: $msg" || fail "junk as VHDX: $msg"; }

# What an update of 1% of a 1 GiB disk costs (64 KiB writes at random).
for n in vhdx vpc; do
	o=block_size=32M
	[ $n = vpc ] && o=force_size=on
	qemu-img create -q -f $n -o $o "$T/m.$n" 1G
	out=$("$UPD" -f $n -w 65536 "$T/m.$n" 5 164) || { fail "$n: 1% update failed"; continue; }
	read -r _ d _ m _ s _ <<<"$out"
	echo "# $n, 1% of 1 GiB (164 writes of 64 KiB into an empty disk): data $d B, metadata $m B, $s syncs, file $(stat -c %s "$T/m.$n") B"
	[ "$d" -eq $((164 * 65536)) ] && pass "$n: a 1% update writes only its data ($d B) and $m B of metadata" ||
		fail "$n: 1% update wrote $d data bytes"
	check "$n: qemu-img check of the measured target" qcheck $n "$T/m.$n"
done

finish
