#!/usr/bin/env bash
# Kills and signals: SIGKILL at random points of conversions to every
# output format, of the in-place Azure step and of `check -r`; a second
# SIGINT during cleanup; a --progress=json reader that goes away. The source
# never changes, the destination is absent, its previous content or the
# finished result, and no temporary survives the next run in that folder.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "kill tests: qemu-img missing"; finish; }
POINTS=${KILL_POINTS:-20}
gen_raw "$T/src.raw" $((24 << 20)) 7
src_sha=$(sha "$T/src.raw")
D="$T/out"; mkdir -p "$D"
leftovers() { find "$D" -name '.*.vdkit-*' | wc -l; }

# Seconds (fractional) a full run takes, to spread the kill points over it.
duration() {
	local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
	echo $(( (e - s) / 1000000 ))
}

kill_run() { # FMT OPTS...: POINTS kills of `convert -O FMT OPTS src DST`
	local fmt=$1; shift
	local dst="$D/k.$fmt" ms bad=0 finished=0 killed=0
	ms=$(duration "$VDKIT" convert -q -O "$fmt" "$@" "$T/src.raw" "$dst")
	rm -f "$dst" "$D"/k.*-*.vmdk
	for i in $(seq 1 "$POINTS"); do
		"$VDKIT" convert -q -O "$fmt" "$@" "$T/src.raw" "$dst" >/dev/null 2>&1 &
		local pid=$!
		sleep "$(awk -v m="$ms" -v r="$RANDOM" 'BEGIN{printf "%.3f", m * (r / 32768) / 1000}')"
		kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
		wait "$pid" 2>/dev/null
		if [ -e "$dst" ]; then
			finished=$((finished + 1))
			qemu-img compare -q -f raw "$T/src.raw" "$dst" 2>/dev/null || bad=$((bad + 1))
			rm -f "$dst" "$D"/k.*-*.vmdk
		fi
		[ "$(leftovers)" -eq 0 ] || { sleep 3; "$VDKIT" convert -q -O raw "$T/src.raw" "$D/sweep.raw" >/dev/null 2>&1; rm -f "$D/sweep.raw"; }
		[ "$(leftovers)" -eq 0 ] || bad=$((bad + 1))
	done
	[ "$(sha "$T/src.raw")" = "$src_sha" ] || bad=$((bad + 1))
	[ $bad -eq 0 ] && pass "SIGKILL at $POINTS points of -O $fmt $* (~${ms} ms runs; $killed killed mid-way, $finished finished): source unchanged, no partial output, no temporary left" ||
		fail "SIGKILL during -O $fmt $*: $bad bad outcomes"
}
kill_run raw
kill_run qcow2 -c
kill_run vmdk -o subformat=streamOptimized
kill_run vmdk -o subformat=twoGbMaxExtentFlat
kill_run vhdx
kill_run vpc

# A temporary of a process that died (a named one, as on NFS): unlocked, so
# the next run in the folder removes it; a held one is left alone.
: > "$D/.stale.raw.vdkit-AbC123"; touch -d '1 minute ago' "$D/.stale.raw.vdkit-AbC123"
: > "$D/.held.raw.vdkit-XyZ789"; touch -d '1 minute ago' "$D/.held.raw.vdkit-XyZ789"
exec 9<"$D/.held.raw.vdkit-XyZ789"; flock -x 9
"$VDKIT" convert -q -O raw "$T/src.raw" "$D/n.raw"
if [ ! -e "$D/.stale.raw.vdkit-AbC123" ] && [ -e "$D/.held.raw.vdkit-XyZ789" ]; then
	pass "the next run removes an unlocked stale temporary and leaves a locked one"
else
	fail "stale temporary handling"
fi
exec 9<&-; rm -f "$D/.held.raw.vdkit-XyZ789" "$D/n.raw"

# Replacing an existing output: killed at any point, the old content stays.
cp "$T/src.raw" "$D/prev.raw"; gen_raw "$T/other.raw" $((24 << 20)) 9
prev_sha=$(sha "$D/prev.raw"); bad=0
for i in $(seq 1 8); do
	"$VDKIT" convert -q -O raw "$T/other.raw" "$D/prev.raw" >/dev/null 2>&1 &
	pid=$!; sleep "0.0$((RANDOM % 9))"; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
	s=$(sha "$D/prev.raw")
	if [ "$s" != "$prev_sha" ]; then
		cmp -s "$D/prev.raw" "$T/other.raw" || bad=$((bad + 1))
		cp "$T/src.raw" "$D/prev.raw"
	fi
done
[ $bad -eq 0 ] && pass "an existing destination keeps its previous content or gets the whole new one" ||
	fail "an existing destination was left half-written $bad times"

# In place (raw -> Azure VHD): a rerun after SIGKILL completes, the data never changes.
bad=0
for i in $(seq 1 "$POINTS"); do
	cp --sparse=always "$T/src.raw" "$D/az.raw"
	"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$D/az.raw" "$D/az.vhd" >/dev/null 2>&1 &
	pid=$!; sleep "0.00$((RANDOM % 9))"; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
	"$VDKIT" convert --in-place -f raw -O vpc -o azure=on "$D/az.raw" "$D/az.vhd" >/dev/null 2>&1 || bad=$((bad + 1))
	qemu-img compare -q -f raw -F vpc "$T/src.raw" "$D/az.vhd" 2>/dev/null || bad=$((bad + 1))
	rm -f "$D/az.raw" "$D/az.vhd"
done
[ $bad -eq 0 ] && pass "--in-place Azure killed at $POINTS points: the rerun completes, content identical" ||
	fail "--in-place after SIGKILL: $bad bad outcomes"

# A second SIGINT during the first one's cleanup still cleans up.
gen_raw "$T/big.raw" $((160 << 20)) 3
bad=0
for i in 1 2 3 4 5; do
	"$VDKIT" convert -q -O qcow2 -c -o compression_level=12 "$T/big.raw" "$D/int.qcow2" >/dev/null 2>&1 &
	pid=$!; sleep 0.3; kill -INT $pid; kill -INT $pid 2>/dev/null; kill -INT $pid 2>/dev/null
	wait $pid; rc=$?
	{ [ $rc -ne 0 ] && [ ! -e "$D/int.qcow2" ] && [ "$(leftovers)" -eq 0 ]; } || bad=$((bad + 1))
	rm -f "$D/int.qcow2"
done
[ $bad -eq 0 ] && pass "three SIGINTs in a row: exit non-zero, no output, no temporary (5 runs)" ||
	fail "repeated SIGINT left something $bad times"

# The reader of --progress=json goes away: the conversion still finishes.
# The source is held half-read (tests/gate.sh) until `head -1` has taken
# its line and exited, so the rest of the progress goes to a closed pipe.
source "$(dirname "$0")/gate.sh"
gen_raw "$T/pj.raw" $((32 << 20)) 4
mkfifo "$T/pj.fifo"
if have nbdkit && gate_serve pj "$T/pj.raw" $((16 << 20)) r; then
	"$VDKIT" convert --progress=json -f raw -O qcow2 "$GATE_URI" "$D/pj.qcow2" 2>"$T/pj.fifo" >/dev/null &
	pid=$!
	head -1 <"$T/pj.fifo" >"$T/pj.first" &
	hpid=$!
	if gate_held pj; then
		wait $hpid
		gate_open pj
		wait $pid; st=$?
		[ "$st" -eq 0 ] && grep -q '^{' "$T/pj.first" && qemu-img compare -q -f raw "$T/pj.raw" "$D/pj.qcow2" &&
			pass "--progress=json | head -1, the reader gone mid-run: the conversion finishes (exit 0, output identical)" ||
			fail "--progress=json | head -1: exit $st, first line: $(head -c 100 "$T/pj.first")"
	else
		kill $pid 2>/dev/null; wait $pid
		fail "--progress=json | head -1: the conversion never reached the held half"
	fi
	gate_stop
else
	skip "--progress=json | head -1: nbdkit missing or could not start"
fi
rm -f "$D/pj.qcow2"
finish
