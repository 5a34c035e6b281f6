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

# SIGINT in the middle: nothing left behind. The source is an NBD export
# whose second half is held until the signal has been sent (tests/gate.sh),
# so the conversion is always still running when the signal arrives.
source "$(dirname "$0")/gate.sh"
if have nbdkit && gate_serve int "$T/src.raw" $((4 << 20)) r; then
	"$VDKIT" convert --threads 1 -O raw "$GATE_URI" "$T/int.raw" 2>"$T/int.err" &
	pid=$!
	if gate_held int; then
		kill -INT $pid
		sleep 0.2 # the signal is handled while the read is still held
		gate_open int
		wait $pid; rc=$?
		[ $rc -ne 0 ] && [ ! -e "$T/int.raw" ] && ! ls -a "$T" | grep -q '\.int\.raw\.vdkit-' &&
			pass "SIGINT while the source is held half-read: exit $rc, no output, no temporary: $(head -c 100 "$T/int.err")" ||
			fail "interrupted convert: exit $rc, left: $(ls -a "$T" | grep int), said: $(cat "$T/int.err")"
	else
		kill $pid 2>/dev/null; wait $pid
		fail "SIGINT test: the conversion never reached the held half: $(cat "$T/int.err")"
	fi
	gate_stop
else
	skip "SIGINT test: nbdkit missing or could not start"
fi
# A source that grows while it is read (still being copied onto the share):
# the conversion writes to an export that holds every write past 1 MiB
# until the source has grown. The source is larger than what the NBD sink
# keeps in flight (64 MiB), so the run cannot reach its end (where the
# source is checked) before the change.
"$TOP/bin/vdk-gen" -k random "$T/grow.raw" $((96 << 20)) 6
truncate -s $((96 << 20)) "$T/grow.target"
if have nbdkit && gate_serve grow "$T/grow.target" $((1 << 20)) w; then
	"$VDKIT" convert --threads 1 --clone=never -O raw "$T/grow.raw" "$GATE_URI" >"$T/grow.err" 2>&1 &
	pid=$!
	if gate_held grow; then
		printf 'more' >>"$T/grow.raw"
		gate_open grow
		wait $pid; rc=$?
		out=$(cat "$T/grow.err")
		[ $rc -eq 1 ] && [[ "$out" == *"grow.raw"*"changed while being read"* ]] &&
			pass "a source that grows during the run is refused (exit 1): $out" ||
			fail "moving source: rc $rc: $out"
	else
		kill $pid 2>/dev/null; wait $pid
		fail "moving source: the conversion never reached the held half: $(cat "$T/grow.err")"
	fi
	gate_stop
	rm -f "$T/grow.target"
else
	skip "moving source test: nbdkit missing or could not start"
fi
[ "$(sha "$T/src.raw")" = "$sum" ] && pass "source unchanged by every failure" || fail "source modified"
finish
