#!/usr/bin/env bash
# Bad input and hostile environments: a clear message, the right exit code,
# no partial output, the source unchanged.
source "$(dirname "$0")/lib.sh"

expect() { # expect DESC CODE PATTERN -- CMD...
	local d=$1 code=$2 pat=$3; shift 4
	local out rc
	out=$("$@" 2>&1); rc=$?
	if [ $rc -eq "$code" ] && [[ "$out" == *$pat* ]]; then pass "$d (exit $rc)"
	else fail "$d: exit $rc, said: $out"; fi
}

gen_raw "$T/src.raw" $((8 * 1048576)) 3
sum=$(sha "$T/src.raw")
expect "missing input: exit 1, names the file" 1 "nope.raw" -- "$VDKIT" convert "$T/nope.raw" "$T/out.raw"
[ ! -e "$T/out.raw" ] && pass "missing input leaves no output" || fail "output left behind"
expect "a directory as input: exit 1" 1 "directory" -- "$VDKIT" info "$T"
expect "unknown output format: exit 2" 2 "unknown output format" -- "$VDKIT" convert -O nosuch "$T/src.raw" "$T/out.raw"
expect "unknown -o option: exit 2" 2 "bogus" -- "$VDKIT" convert -o bogus=1 "$T/src.raw" "$T/out.raw"
expect "no arguments: exit 2" 2 "needs" -- "$VDKIT" convert "$T/src.raw"
expect "unknown verb: exit 2" 2 "unknown command" -- "$VDKIT" frobnicate
expect "output = input refused" 2 "input file" -- "$VDKIT" convert "$T/src.raw" "$T/src.raw"
expect "missing output folder: exit 3" 3 "cannot create output" -- "$VDKIT" convert "$T/src.raw" "$T/no/such/dir/out.raw"
ls -a "$T" | grep -q vdkit- && fail "temporary file left behind" || pass "no temporary files left"

if [ "$(id -u)" = 0 ] && have setpriv; then
	chmod 755 "$T"; cp "$T/src.raw" "$T/locked.raw"; chmod 000 "$T/locked.raw"
	mkdir "$T/ro"; chmod 555 "$T/ro"
	asnobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	expect "unreadable input: exit 1" 1 "Permission denied" -- asnobody "$VDKIT" info "$T/locked.raw"
	expect "unwritable destination: exit 3" 3 "Permission denied" -- asnobody "$VDKIT" convert "$T/src.raw" "$T/ro/out.raw"
	[ -z "$(ls -A "$T/ro")" ] && pass "unwritable destination: nothing written" || fail "files in ro/"
	mkdir "$T/full"
	if mount -t tmpfs -o size=1m tmpfs "$T/full" 2>/dev/null; then
		expect "full destination filesystem: exit 3" 3 "No space left" -- "$VDKIT" convert "$T/src.raw" "$T/full/out.raw"
		[ -z "$(ls -A "$T/full")" ] && pass "full filesystem: no partial output left" ||
			fail "left in full fs: $(ls -A "$T/full")"
		umount "$T/full"
	else
		skip "cannot mount a small tmpfs for the full-filesystem test"
	fi
else
	skip "permission and full-filesystem tests need root and setpriv"
fi

# SIGINT in the middle: nothing left behind.
"$TOP/bin/vdk-gen" -k random "$T/big.raw" $((1024 * 1048576)) 5
"$VDKIT" convert --clone=never --threads 1 -O raw "$T/big.raw" "$T/int.raw" 2>/dev/null &
pid=$!; sleep 0.1; kill -INT $pid 2>/dev/null; wait $pid; rc=$?
if [ $rc -ne 0 ]; then
	[ ! -e "$T/int.raw" ] && ! ls -a "$T" | grep -q '\.int\.raw\.vdkit-' &&
		pass "interrupted convert (exit $rc) leaves no output and no temporary" ||
		fail "interrupted convert left files: $(ls -a "$T")"
else
	skip "convert finished before the signal arrived"
fi
# A source that grows while it is read (still being copied onto the share).
"$TOP/bin/vdk-gen" -k random "$T/grow.raw" $((512 * 1048576)) 6
( for i in $(seq 1 40); do printf 'more' >>"$T/grow.raw"; sleep 0.02; done ) &
gpid=$!
out=$("$VDKIT" convert --threads 1 --clone=never "$T/grow.raw" "$T/grow.out" 2>&1); rc=$?
wait $gpid
if [ $rc -eq 1 ] && [[ "$out" == *"changed while being read"* ]]; then
	[ ! -e "$T/grow.out" ] && pass "a source that changes during the run is refused, no output kept" ||
		fail "output kept for a moving source"
elif [ $rc -eq 0 ]; then
	skip "conversion finished before the source changed"
else
	fail "moving source: rc $rc: $out"
fi
[ "$(sha "$T/src.raw")" = "$sum" ] && pass "source unchanged by every failure" || fail "source modified"
finish
