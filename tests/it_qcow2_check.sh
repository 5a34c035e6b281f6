#!/usr/bin/env bash
# vdkit check on qcow2 against qemu-img check on the same files: clean
# images made by qemu-img and by vdkit, and images damaged at exact fields
# (a leaked cluster, the header's refcount 0, an L2 table referenced twice,
# refcount block and table entries). Exit codes, corruption and leak
# counts must equal qemu-img's; `check -r leaks` fixes leaks so that
# qemu-img then finds none; exit codes 0/1/2/3 as qemu-img documents.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/qcow2_poke.sh"
have qemu-img || { skip "qemu-img not installed"; finish; }
have qemu-io || { skip "qemu-io not installed"; finish; }
[ -x "$VDKIT" ] || { skip "bin/vdkit not built"; finish; }

num() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" | head -1; }
# counts FILE TOOL: "rc corruptions leaks"
counts() {
	local out rc
	if [ "$2" = qemu ]; then
		out=$(qemu-img check -f qcow2 --output=json "$1" 2>/dev/null); rc=$?
	else
		out=$("$VDKIT" check -f qcow2 ${VOPTS:-} --output=json "$1" 2>/dev/null); rc=$?
	fi
	local c l
	c=$(echo "$out" | num corruptions); l=$(echo "$out" | num leaks)
	echo "$rc ${c:-0} ${l:-0}"
}
# same NAME FILE [EXPECTED-RC]: vdkit and qemu-img agree (and on the rc).
same() {
	local q v; q=$(counts "$2" qemu); v=$(counts "$2" vdkit)
	if [ "$q" != "$v" ]; then fail "$1: qemu-img '$q' vs vdkit '$v'"; return; fi
	if [ -n "${3:-}" ] && [ "${q%% *}" != "$3" ]; then fail "$1: rc ${q%% *}, wanted $3"; return; fi
	pass "$1: agrees with qemu-img (rc corruptions leaks: $q)"
}

mk() { # FILE [create opts]: a small image with data, zeroes and a hole
	rm -f "$1"
	qemu-img create -q -f qcow2 ${2:+-o $2} "$1" 64M &&
		qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -z 2M 128k' \
			-c 'write -P 0x22 10M 64k' "$1" >/dev/null
}

# --- clean images --------------------------------------------------------
mk "$T/a.qcow2"; same "clean qemu-made" "$T/a.qcow2" 0
mk "$T/v2.qcow2" compat=0.10; same "clean qemu-made compat=0.10" "$T/v2.qcow2" 0
mk "$T/x.qcow2" extended_l2=on,cluster_size=128k; same "clean extended L2" "$T/x.qcow2" 0
mk "$T/r1.qcow2" refcount_bits=1; same "clean refcount_bits=1" "$T/r1.qcow2" 0
mk "$T/r64.qcow2" refcount_bits=64; same "clean refcount_bits=64" "$T/r64.qcow2" 0
gen_raw "$T/src.raw" $((3 * 1024 * 1024)) 7
qemu-img convert -q -c -f raw -O qcow2 "$T/src.raw" "$T/c.qcow2"
same "clean qemu-made compressed" "$T/c.qcow2" 0
cp "$T/a.qcow2" "$T/s.qcow2"
qemu-img snapshot -c one "$T/s.qcow2" && qemu-io -f qcow2 -c 'write -P 0x33 0 64k' "$T/s.qcow2" >/dev/null
same "clean with a snapshot" "$T/s.qcow2" 0
cp "$T/a.qcow2" "$T/b.qcow2"
if qemu-img bitmap -f qcow2 --add "$T/b.qcow2" bm0 2>/dev/null; then
	same "clean with a persistent bitmap" "$T/b.qcow2" 0
else
	skip "qemu-img bitmap unavailable"
fi
(cd "$T" && qemu-img create -q -f qcow2 -o data_file="$T/df.raw" df.qcow2 64M &&
	qemu-io -f qcow2 -c 'write -P 0x11 0 1M' df.qcow2 >/dev/null)
# vdkit refuses an absolute data file path unless its folder is allowed.
VOPTS="--allow-dir $T" same "clean with an external data file" "$T/df.qcow2" 0
(cd "$T" && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 top.qcow2 &&
	qemu-io -f qcow2 -c 'write -P 0x44 512k 64k' top.qcow2 >/dev/null)
same "clean over a backing file" "$T/top.qcow2" 0
E2=$SHARED/testdata/dfvfs/ext2.qcow2
[ -f "$E2" ] && same "shared dfvfs ext2.qcow2" "$E2" || skip "shared ext2.qcow2 missing"
"$VDKIT" convert -O qcow2 "$T/src.raw" "$T/vd.qcow2" >/dev/null 2>&1
same "clean vdkit-made" "$T/vd.qcow2" 0
"$VDKIT" convert -O qcow2 -o compress=on "$T/src.raw" "$T/vdc.qcow2" >/dev/null 2>&1
same "clean vdkit-made compressed" "$T/vdc.qcow2" 0

# --- damage ---------------------------------------------------------------
CS=$(q_cs "$T/a.qcow2"); RB=$(q_rb0 "$T/a.qcow2"); SZ=$(stat -c %s "$T/a.qcow2")
cp "$T/a.qcow2" "$T/leak.qcow2"
truncate -s $((SZ + CS)) "$T/leak.qcow2"
put16 "$T/leak.qcow2" $((RB + 2 * (SZ / CS))) 1
same "one leaked cluster" "$T/leak.qcow2" 3

cp "$T/a.qcow2" "$T/hdr.qcow2"; put16 "$T/hdr.qcow2" "$RB" 0
same "header cluster refcount 0" "$T/hdr.qcow2" 2

D=$(($(be64 "$T/a.qcow2" "$(q_l2 "$T/a.qcow2")") & OMASK))
cp "$T/a.qcow2" "$T/rb.qcow2"; put16 "$T/rb.qcow2" $((RB + 2 * (D / CS))) 0
same "refcount block entry of a data cluster 0" "$T/rb.qcow2" 2
cp "$T/a.qcow2" "$T/rb5.qcow2"; put16 "$T/rb5.qcow2" $((RB + 2 * (D / CS))) 5
same "refcount block entry of a data cluster 5" "$T/rb5.qcow2" 2
cp "$T/a.qcow2" "$T/rt.qcow2"; put64 "$T/rt.qcow2" "$(q_rt "$T/a.qcow2")" $((RB | 1))
same "refcount table entry with a reserved bit" "$T/rt.qcow2" 2

mk "$T/o.qcow2" cluster_size=4096
cp "$T/o.qcow2" "$T/twice.qcow2"

L1=$(q_l1 "$T/o.qcow2"); put64 "$T/twice.qcow2" $((L1 + 8)) "$(be64 "$T/o.qcow2" "$L1")"
same "L2 table referenced twice" "$T/twice.qcow2" 2
cp "$T/a.qcow2" "$T/l2rb.qcow2"
put64 "$T/l2rb.qcow2" "$(q_l2 "$T/a.qcow2")" $(((1 << 63) | RB))
same "L2 entry pointing at the refcount block" "$T/l2rb.qcow2" 2
"$VDKIT" check "$T/l2rb.qcow2" 2>&1 | grep -q "overlap: cluster $((RB / CS)) (offset $(printf 0x%x "$RB")) is used as data cluster and as refcount block" &&
	pass "check names the overlap and its offset" || fail "check does not name the overlap"

# qemu-img check -q: no report, the same exit code (clean, leaks, corruption)
qbad=0
for f in a leak hdr; do
	out=$("$VDKIT" check -q -T none "$T/$f.qcow2" 2>&1); rc=$?
	qemu-img check -q -T none "$T/$f.qcow2" >/dev/null 2>&1; qrc=$?
	[ -z "$out" ] && [ $rc = $qrc ] || { qbad=1; echo "# check -q $f: rc $rc (qemu-img $qrc), output: $out"; }
done
[ $qbad = 0 ] && pass "check -q -T none: silent, exit codes equal qemu-img check -q's (0, 3, 2)" ||
	fail "check -q differs from qemu-img check -q"

# --- repair ---------------------------------------------------------------
cp "$T/leak.qcow2" "$T/fix.qcow2"
"$VDKIT" check -r leaks "$T/fix.qcow2" >/dev/null 2>&1; rc=$?
[ $rc = 0 ] && pass "check -r leaks: exit 0 after the repair" || fail "check -r leaks: rc $rc"
qemu-img check -q "$T/fix.qcow2" && pass "check -r leaks: qemu-img check finds nothing" ||
	fail "check -r leaks: qemu-img still finds problems"
[ "$(qemu_sha "$T/fix.qcow2")" = "$(qemu_sha "$T/a.qcow2")" ] &&
	pass "check -r leaks: content unchanged" || fail "check -r leaks: content changed"
cp "$T/hdr.qcow2" "$T/fix2.qcow2"
"$VDKIT" check -r leaks "$T/fix2.qcow2" >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && cmp -s "$T/fix2.qcow2" "$T/hdr.qcow2" && pass "check -r leaks leaves corruptions alone (rc 2)" ||
	fail "check -r leaks on a corruption: rc $rc"
"$VDKIT" check -r all "$T/fix2.qcow2" >/dev/null 2>&1; rc=$?
qemu-img check -q "$T/fix2.qcow2"; q=$?
[ $rc = 0 ] && [ $q = 0 ] && pass "check -r all fixes a too-low refcount (qemu-img clean)" ||
	fail "check -r all: rc $rc, qemu-img rc $q"
cp "$T/leak.qcow2" "$T/fix3.qcow2"
"$VDKIT" check -r "$T/fix3.qcow2" >/dev/null 2>&1 && qemu-img check -q "$T/fix3.qcow2" &&
	pass "bare -r repairs (all)" || fail "bare -r"
out=$("$VDKIT" check -r leaks --output=json "$T/leak.qcow2" 2>/dev/null)
[ "$(echo "$out" | num leaks-fixed)" = 1 ] && [ "$(echo "$out" | num leaks)" = 0 ] &&
	pass "json: leaks-fixed 1, leaks 0" || fail "json after repair: $out"

# --- exit code 1: the check cannot run ------------------------------------
"$VDKIT" check "$T/nonexistent.qcow2" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] && pass "missing file: exit 1" || fail "missing file: rc $rc"
head -c 4096 /dev/zero >"$T/zero.img"
"$VDKIT" check -f qcow2 "$T/zero.img" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] && pass "not a qcow2: exit 1" || fail "not a qcow2: rc $rc"
"$VDKIT" check -f raw "$T/zero.img" >/dev/null 2>&1; rc=$?
[ $rc = 0 ] && pass "raw: exit 0" || fail "raw: rc $rc"
finish
