#!/usr/bin/env bash
# SIGKILL at random points of `vdkit check -r`, the one verb that writes
# into its input: `check -r all` on a qcow2 with thousands of leaked
# clusters (refcount blocks rewritten one by one), and `check -r` on a VHDX
# whose log must be replayed (data, then both headers). After every kill the
# image still reads as before (qemu-img convert -O raw, the same SHA-256),
# qemu-img finds no corruption (leaks at most), and a rerun of check -r
# ends clean: qemu-img check reports no errors and no leaks.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "check -r kill tests: qemu-img missing"; finish; }
have python3 || { skip "check -r kill tests: python3 missing"; finish; }
POINTS=${KILL_POINTS:-20}

# Milliseconds a full run takes, to spread the kill points over it.
duration() {
	local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
	echo $(( (e - s) / 1000000 ))
}
# Start CMD, SIGKILL it after a random part of MS; 0 when it was still running.
kill_at() { # MS CMD...
	local ms=$1; shift
	"$@" >/dev/null 2>&1 &
	local pid=$!
	sleep "$(awk -v m="$ms" -v r="$RANDOM" 'BEGIN{printf "%.3f", m * (r / 32768) / 1000}')"
	kill -KILL "$pid" 2>/dev/null; local k=$?
	wait "$pid" 2>/dev/null
	return $k
}

# SIGKILL at exact points: on the N-th pwrite64 or fsync (strace injects
# the signal there), so kills land between every two writes of the repair,
# not only where the clock happens to fall.
HAVE_STRACE=0
strace -f -o /dev/null -e trace=getpid true 2>/dev/null && HAVE_STRACE=1
# writes CMD...: how many pwrite64 and fsync calls a full run makes ("P F").
writes() {
	strace -f -o "$T/st.log" -e trace=pwrite64,fsync "$@" >/dev/null 2>&1
	echo "$(grep -c 'pwrite64(' "$T/st.log") $(grep -c 'fsync(' "$T/st.log")"
}
kill_on() { # SYSCALL N CMD...: SIGKILL on the N-th SYSCALL
	local sc=$1 n=$2; shift 2
	# In a subshell: the shell's "Killed" notice goes to /dev/null too.
	(strace -f -o /dev/null -e trace="$sc" -e inject="$sc":signal=SIGKILL:when="$n" "$@"; true) >/dev/null 2>&1
}
# points P F: "pwrite64 N" lines for up to ten writes spread over P, and
# every fsync.
points() {
	local p=$1 f=$2 i
	for i in $(seq 1 10); do echo "pwrite64 $(( (p * i + 9) / 10 ))"; done | uniq
	for i in $(seq 1 "$f"); do echo "fsync $i"; done
}

# --- qcow2: thousands of leaks over many refcount blocks ----------------
# 512-byte clusters: 256 refcounts per block, so the repair rewrites ~60
# blocks; every other L1 entry cleared leaks those L2 tables and their data.
gen_raw "$T/src.raw" $((16 << 20)) 5
"$VDKIT" convert -q -O qcow2 -o cluster_size=512 "$T/src.raw" "$T/clean.qcow2"
cp "$T/clean.qcow2" "$T/leak.qcow2"
python3 - "$T/leak.qcow2" <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(48)
n, l1 = struct.unpack(">IQ", h[36:48])
f.seek(l1)
t = bytearray(f.read(8 * n))
for i in range(0, n, 2):
    t[8 * i:8 * i + 8] = bytes(8)
f.seek(l1)
f.write(t)
EOF
qemu-img check -f qcow2 "$T/leak.qcow2" >/dev/null 2>&1; rc=$?
leaks=$(qemu-img check -f qcow2 --output=json "$T/leak.qcow2" 2>/dev/null | sed -n 's/.*"leaks": \([0-9]*\).*/\1/p')
[ $rc -eq 3 ] && [ "${leaks:-0}" -gt 1000 ] && pass "the qcow2 has $leaks leaked clusters (qemu-img check exit 3)" ||
	fail "qcow2 with leaks: qemu-img check rc $rc, leaks ${leaks:-?}"
want=$(qemu_sha "$T/leak.qcow2")
cp "$T/leak.qcow2" "$T/k.qcow2"
ms=$(duration "$VDKIT" check -r all "$T/k.qcow2")
# After a kill: the same content, leaks at most; the rerun ends clean.
qcow2_after() { # WHAT
	local out rc l
	out=$(qemu-img check -f qcow2 --output=json "$T/k.qcow2" 2>/dev/null); rc=$?
	l=$(sed -n 's/.*"leaks": \([0-9]*\).*/\1/p' <<<"$out")
	[ "${l:-0}" -gt 0 ] && [ "${l:-0}" -lt "$leaks" ] && partial=$((partial + 1))
	[ $rc -eq 0 ] || [ $rc -eq 3 ] || { echo "# $1: qemu-img check exit $rc after the kill"; bad=$((bad + 1)); }
	qemu-img compare -q -f qcow2 -F qcow2 "$T/k.qcow2" "$T/leak.qcow2" || { echo "# $1: content changed"; bad=$((bad + 1)); }
	"$VDKIT" check -r all "$T/k.qcow2" >/dev/null 2>&1 || { echo "# $1: the rerun did not end clean"; bad=$((bad + 1)); }
	qemu-img check -f qcow2 "$T/k.qcow2" >/dev/null 2>&1 || { echo "# $1: qemu-img check after the rerun"; bad=$((bad + 1)); }
}
bad=0 killed=0 partial=0
for i in $(seq 1 "$POINTS"); do
	cp "$T/leak.qcow2" "$T/k.qcow2"
	kill_at "$ms" "$VDKIT" check -r all "$T/k.qcow2" && killed=$((killed + 1))
	qcow2_after "kill $i"
done
[ "$(qemu_sha "$T/k.qcow2" qcow2)" = "$want" ] || bad=$((bad + 1))
[ $bad -eq 0 ] && pass "SIGKILL at $POINTS points of check -r all on a qcow2 (~${ms} ms runs, $killed killed mid-way, $partial with the leaks partly repaired): same content after every kill, qemu-img sees leaks at most, the rerun ends with qemu-img check clean" ||
	fail "check -r all after SIGKILL: $bad bad outcomes"
if [ $HAVE_STRACE = 1 ]; then
	cp "$T/leak.qcow2" "$T/k.qcow2"
	read -r np nf < <(writes "$VDKIT" check -r all "$T/k.qcow2")
	bad=0 partial=0 n=0
	while read -r sc at; do
		cp "$T/leak.qcow2" "$T/k.qcow2"
		kill_on "$sc" "$at" "$VDKIT" check -r all "$T/k.qcow2"
		qcow2_after "$sc $at"
		n=$((n + 1))
	done < <(points "$np" "$nf")
	[ "$(qemu_sha "$T/k.qcow2" qcow2)" = "$want" ] || bad=$((bad + 1))
	[ $bad -eq 0 ] && [ $np -gt 10 ] && [ $partial -gt 0 ] &&
		pass "SIGKILL at $n exact points of check -r all ($np refcount block writes, $nf fsync; $partial left partly repaired): same content, leaks at most, the rerun ends clean" ||
		fail "check -r all killed at exact writes: $bad bad outcomes ($np writes, $partial partial)"
else
	skip "check -r all at exact writes: strace cannot trace here"
fi

# --- VHDX: a log to replay -------------------------------------------------
dirty=$SHARED/testdata/qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2
if [ ! -f "$dirty" ]; then
	skip "check -r kill test of a VHDX log: $dirty missing"
	finish
fi
bzip2 -dc "$dirty" >"$T/dirty.vhdx"
cp "$T/dirty.vhdx" "$T/ref.vhdx"
ms=$(duration "$VDKIT" check -r "$T/ref.vhdx")
qemu-img map --output=json -f vhdx "$T/ref.vhdx" >"$T/ref.map"
vhdx_after() { # WHAT
	# Replayed or not, vdkit reads the same disk (a pending log in memory).
	"$VDKIT" compare "$T/k.vhdx" "$T/ref.vhdx" >/dev/null 2>&1 || { echo "# $1: content after the kill"; bad=$((bad + 1)); }
	"$VDKIT" check -r "$T/k.vhdx" >/dev/null 2>&1 || { echo "# $1: the rerun failed"; bad=$((bad + 1)); }
	qemu-img check -f vhdx "$T/k.vhdx" >/dev/null 2>&1 || { echo "# $1: qemu-img check after the rerun"; bad=$((bad + 1)); }
	qemu-img map --output=json -f vhdx "$T/k.vhdx" 2>/dev/null | cmp -s - "$T/ref.map" ||
		{ echo "# $1: qemu-img maps it differently"; bad=$((bad + 1)); }
	"$VDKIT" compare "$T/k.vhdx" "$T/ref.vhdx" >/dev/null 2>&1 || { echo "# $1: content after the rerun"; bad=$((bad + 1)); }
}
bad=0 killed=0
for i in $(seq 1 "$POINTS"); do
	cp "$T/dirty.vhdx" "$T/k.vhdx"
	kill_at "$ms" "$VDKIT" check -r "$T/k.vhdx" && killed=$((killed + 1))
	vhdx_after "kill $i"
done
n=0
if [ $HAVE_STRACE = 1 ]; then
	cp "$T/dirty.vhdx" "$T/k.vhdx"
	read -r np nf < <(writes "$VDKIT" check -r "$T/k.vhdx")
	# Every write and every fsync: the log's data, then each header.
	while read -r sc at; do
		cp "$T/dirty.vhdx" "$T/k.vhdx"
		kill_on "$sc" "$at" "$VDKIT" check -r "$T/k.vhdx"
		vhdx_after "$sc $at"
		n=$((n + 1))
	done < <({ seq 1 "$np" | sed 's/^/pwrite64 /'; seq 1 "$nf" | sed 's/^/fsync /'; })
fi
# qemu-img reads the last one as the repaired reference (both through qemu).
qemu-img convert -O qcow2 -f vhdx "$T/ref.vhdx" "$T/ref.qcow2" &&
	qemu-img compare -q -f vhdx -F qcow2 "$T/k.vhdx" "$T/ref.qcow2" || bad=$((bad + 1))
[ $bad -eq 0 ] && pass "SIGKILL at $POINTS points of check -r on a VHDX log (~${ms} ms runs, $killed killed mid-way) and at its $n writes and fsyncs: same content after every kill, the rerun replays and qemu-img check is clean" ||
	fail "check -r on a VHDX log after SIGKILL: $bad bad outcomes"
finish
