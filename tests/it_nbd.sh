#!/usr/bin/env bash
# NBD as source and target: real servers (nbdkit, qemu-nbd) on unix sockets
# in the scratch dir, started here and stopped by pid; qemu-img, nbdinfo and
# nbdkit's stats filter are the oracles.
source "$(dirname "$0")/lib.sh"
for t in nbdkit nbdinfo qemu-img; do
	have $t || { skip "$t not installed (scripts/deps.sh test)"; finish; }
done

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
# serve NAME CMD...: run a server in the foreground of a background job and
# wait for its socket $T/NAME.sock; sets URI.
serve() {
	local name=$1; shift
	local sock="$T/$name.sock"
	rm -f "$sock" # a stopped server's socket would look ready
	"$@" >"$T/$name.log" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	URI="nbd+unix:///?socket=$sock"
}
nbdkit_serve() { local name=$1; shift; serve "$name" nbdkit -f -U "$T/$name.sock" "$@"; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
jnum() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1" | head -1; }
jstr() { sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1" | head -1; }
# Data ranges "start end" merged, from vdkit map JSON / nbdinfo --map
# (type bit 2 is NBD_STATE_ZERO: zero ranges are not data).
map_data_vdk() { sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\),.*"data": true.*/\1 \2/p' |
	awk '{ if (NR > 1 && $1 == e) { e += $2 } else { if (NR > 1) print s, e; s = $1; e = $1 + $2 } } END { if (NR) print s, e }'; }
map_data_nbd() { awk '$3 % 4 < 2 { if (n && $1 == e) { e += $2 } else { if (n) print s, e; s = $1; e = $1 + $2; n = 1 } } END { if (n) print s, e }'; }

SIZE=$((64 << 20))
gen_raw "$T/a.raw" $SIZE 7
"$VDKIT" convert -q -O qcow2 "$T/a.raw" "$T/local.qcow2"
small=$((16 << 20)) # the first 16 MiB, for the slower cases
head -c $small "$T/a.raw" >"$T/s.raw"

# 1. A sparse raw served by nbdkit file behind the stats filter: the
# conversion is the local one, and only allocated data crosses the network.
nbdkit_serve st --filter=stats file "$T/a.raw" statsfile="$T/stats.txt"
nbdinfo --map "$URI" >"$T/map.nbd"
data=$(awk '$3 % 4 < 2 { s += $2 } END { print s + 0 }' "$T/map.nbd")
"$VDKIT" map --output=json "$URI" | map_data_vdk >"$T/map.vd"
map_data_nbd <"$T/map.nbd" >"$T/map.nb"
[ -s "$T/map.nb" ] && cmp -s "$T/map.vd" "$T/map.nb" &&
	pass "map over NBD: data ranges agree with nbdinfo --map ($(wc -l <"$T/map.nb") ranges)" ||
	fail "map over NBD differs from nbdinfo --map"
"$VDKIT" info --output=json "$URI" >"$T/info.json"
[ "$(jnum "$T/info.json" virtual-size)" = "$(nbdinfo --size "$URI")" ] &&
	[ "$(jstr "$T/info.json" format)" = raw ] &&
	pass "info over NBD: raw, virtual-size = nbdinfo --size" || fail "info over NBD: $(cat "$T/info.json")"
check "vdkit compare: the export and the local file are identical" "$VDKIT" compare -q "$URI" "$T/a.raw"
# Only the conversion's reads should count: restart the stats.
stop "$SPID"
rm -f "$T/stats.txt"
nbdkit_serve st --filter=stats file "$T/a.raw" statsfile="$T/stats.txt"
if "$VDKIT" convert -q -O qcow2 "$URI" "$T/nbd.qcow2"; then
	check "convert -O qcow2 from NBD: byte-identical to the local conversion" cmp "$T/nbd.qcow2" "$T/local.qcow2"
	check "qemu-img compare: the qcow2 from NBD holds the source's content" qemu-img compare -q -f raw -F qcow2 "$T/a.raw" "$T/nbd.qcow2"
else
	fail "convert -O qcow2 from NBD failed"
fi
stop "$SPID"
read_b=$(awk '/^read:/ { v = $6; u = $7; sub(",", "", u); m = u == "GiB" ? 2^30 : u == "MiB" ? 2^20 : u == "KiB" ? 1024 : 1; printf "%d", v * m }' "$T/stats.txt")
# The stats filter prints MiB with two decimals (±5 KiB); probing reads 4 KiB.
tol=$((128 << 10))
if [ -n "$read_b" ] && [ $((read_b - data)) -le $tol ] && [ $((data - read_b)) -le $tol ]; then
	pass "bytes read over NBD ($read_b) = allocated data ($data), not the virtual size ($SIZE)"
else
	fail "bytes read over NBD: ${read_b:-?}, allocated data $data: $(grep '^read:' "$T/stats.txt")"
fi

# 2. A qcow2 served as bytes reads as qcow2; its backing file cannot be had.
nbdkit_serve qc file "$T/local.qcow2"
"$VDKIT" info --output=json "$URI" >"$T/qinfo.json"
[ "$(jstr "$T/qinfo.json" format)" = qcow2 ] && [ "$(jnum "$T/qinfo.json" virtual-size)" = $SIZE ] &&
	pass "qcow2 served by nbdkit file: info says qcow2, $SIZE bytes" || fail "qcow2 over NBD info: $(cat "$T/qinfo.json")"
"$VDKIT" convert -q -O raw "$URI" "$T/qc.raw" && check "qcow2 over NBD -> raw equals the source" cmp "$T/qc.raw" "$T/a.raw" ||
	fail "qcow2 over NBD -> raw failed"
rm -f "$T/qc.raw"
stop "$SPID"
# VMDK (monolithicSparse: descriptor inside) and VHDX read through NBD too.
for f in vmdk vhdx; do
	"$VDKIT" convert -q -O $f "$T/s.raw" "$T/a.$f"
	nbdkit_serve $f file "$T/a.$f"
	"$VDKIT" info --output=json "$URI" >"$T/$f.json"
	if [ "$(jstr "$T/$f.json" format)" = $f ] && "$VDKIT" convert -q -O raw "$URI" "$T/$f.raw"; then
		check "$f served by nbdkit file reads as $f, content equal" cmp "$T/$f.raw" "$T/s.raw"
	else
		fail "$f over NBD: $(cat "$T/$f.json")"
	fi
	rm -f "$T/$f.raw" "$T/a.$f"
	stop "$SPID"
done
qemu-img create -q -f qcow2 -b a.raw -F raw "$T/over.qcow2"
nbdkit_serve ov file "$T/over.qcow2"
out=$("$VDKIT" info "$URI" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$out" == *"remote images have no folder"* ]] && [[ "$out" == *"$URI"* ]] &&
	pass "a backing file of an NBD image is refused, naming the URI (exit 1)" || fail "backing over NBD: rc $rc: $out"
stop "$SPID"

# 3. qemu-nbd as the second server implementation.
if have qemu-nbd; then
	serve qn qemu-nbd -r -f raw --persistent -k "$T/qn.sock" "$T/a.raw"
	"$VDKIT" convert -q -O raw "$URI" "$T/qn.raw" && check "qemu-nbd source -> raw is byte-identical" cmp "$T/qn.raw" "$T/a.raw" ||
		fail "convert from qemu-nbd failed"
	"$VDKIT" map --output=json "$URI" | map_data_vdk >"$T/map.qn"
	check "map over qemu-nbd: the same data ranges as nbdkit's" cmp "$T/map.qn" "$T/map.nb"
	rm -f "$T/qn.raw"
	stop "$SPID"
	# A named export: the right name opens, a wrong one is an error naming the URI.
	serve qx qemu-nbd -r -f qcow2 -x disk0 --persistent -k "$T/qx.sock" "$T/local.qcow2"
	"$VDKIT" compare -q "nbd+unix:///disk0?socket=$T/qx.sock" "$T/a.raw" &&
		pass "qemu-nbd export 'disk0' (a qcow2 served as its virtual disk) equals the source" ||
		fail "named export disk0"
	out=$("$VDKIT" info "nbd+unix:///nosuch?socket=$T/qx.sock" 2>&1); rc=$?
	[ $rc -eq 3 ] && [[ "$out" == *"nosuch?socket="*"cannot connect"* ]] &&
		pass "a missing export name: exit 3, cannot connect" || fail "missing export: rc $rc: $out"
	stop "$SPID"
else
	skip "qemu-nbd not installed"
fi

# nbd://host:port over TCP on the loopback.
port=$((20000 + RANDOM % 20000))
nbdkit -f -i 127.0.0.1 -p $port file "$T/a.raw" >"$T/tcp.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
for _ in $(seq 100); do nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.05; done
if nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1; then
	check "nbd://127.0.0.1:$port/ (TCP) compares equal to the source" "$VDKIT" compare -q "nbd://127.0.0.1:$port/" "$T/a.raw"
else
	skip "nbdkit could not listen on 127.0.0.1:$port"
fi
stop "$SPID"

# 4. NBD as the target: a writable export full of 0xff must end up holding
# exactly the image (holes zeroed, nothing assumed), with and without
# WRITE_ZEROES on the server.
# (The target lives in /dev/shm when there is one: FLUSH is an fsync.)
TG=$(mktemp -d /dev/shm/vdkit-it-nbd.XXXXXX 2>/dev/null || mktemp -d "$T/tg.XXXXXX")
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T" "$TG"' EXIT
for mode in zero nozero; do
	src="$T/a.raw" filt=() zm=()
	[ $mode = nozero ] && src="$T/s.raw" filt=(--filter=nozero) zm=(zeromode=none)
	head -c "$(stat -c %s "$src")" /dev/zero | tr '\0' '\377' >"$TG/target.img"
	nbdkit_serve tg "${filt[@]}" file "$TG/target.img" "${zm[@]}"
	if "$VDKIT" convert -q --verify -O raw "$src" "$URI"; then
		check "raw -> NBD target ($mode): qemu-img compare against the export" qemu-img compare -q -f raw -F raw "$src" "$URI"
	else
		fail "raw -> NBD target ($mode) failed"
	fi
	stop "$SPID"
	check "the 0xff-filled target file ($mode) now holds exactly the image" cmp "$TG/target.img" "$src"
done
rm -f "$TG/target.img"
nbdkit_serve mem memory size=$SIZE
"$VDKIT" convert -q -O raw "$T/local.qcow2" "$URI" &&
	check "qcow2 -> nbdkit memory export: qemu-img compare" qemu-img compare -q -F raw "$T/local.qcow2" "$URI" ||
	fail "qcow2 -> memory export failed"
stop "$SPID"
nbdkit_serve small memory size=$((SIZE / 2))
out=$("$VDKIT" convert -q -O raw "$T/a.raw" "$URI" 2>&1); rc=$?
[ $rc -eq 3 ] && [[ "$out" == *"$URI"* ]] && [[ "$out" == *"too small"* ]] &&
	[[ "$out" == *"$((SIZE / 2))"* ]] && [[ "$out" == *"$SIZE"* ]] &&
	pass "a target export that is too small is refused with both sizes (exit 3)" || fail "small target: rc $rc: $out"
stop "$SPID"

# 5. Server errors: EIO on every read, and on reads from 8 MiB on.
nbdkit_serve er --filter=error file "$T/a.raw" error-pread=EIO error-pread-rate=100%
out=$("$VDKIT" convert -q -O raw "$URI" "$T/er.raw" 2>&1); rc=$?
[ $rc -eq 3 ] && [[ "$out" == *"$URI"* ]] && [[ "$out" == *"offset "* ]] &&
	[[ "$out" == *"Input/output error"* ]] &&
	pass "EIO from the server: exit 3, the URI and the offset named" || fail "EIO: rc $rc: $out"
left=$(ls -A "$T" | grep -c 'er\.raw')
[ "$left" -eq 0 ] && pass "no output left after a server error" || fail "output left: $(ls -A "$T")"
stop "$SPID"
serve ev nbdkit -f -U "$T/ev.sock" eval get_size="echo $small" \
	pread="if [ \$4 -ge 8388608 ]; then echo 'EIO injected' >&2; exit 1; fi; dd if='$T/s.raw' skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none"
out=$("$VDKIT" convert -q -O raw "$URI" "$T/ev.raw" 2>&1); rc=$?
[ $rc -eq 3 ] && [[ "$out" == *"$URI"* ]] && [[ "$out" == *"offset 8388608 "* ]] &&
	pass "EIO from 8 MiB on: the message names offset 8388608" || fail "EIO at 8 MiB: rc $rc: $out"
[ ! -e "$T/ev.raw" ] && [ -z "$(ls -A "$T" | grep 'ev\.raw')" ] && pass "nothing left at DST" || fail "ev.raw left"
stop "$SPID"

# The server dies in the middle: an error at once, not after the timeout.
# (A daemon, not a job of this shell, so bash does not report the kill.)
rm -f "$T/kl.sock"
nbdkit -P "$T/kl.pid" -U "$T/kl.sock" --filter=delay file "$T/s.raw" rdelay=2 2>"$T/kl.log"
# The daemon writes its pid file after the parent returned.
for _ in $(seq 100); do [ -s "$T/kl.pid" ] && [ -S "$T/kl.sock" ] && break; sleep 0.05; done
KPID=$(cat "$T/kl.pid")
PIDS+=("$KPID")
URI="nbd+unix:///?socket=$T/kl.sock"
(sleep 0.5; kill -9 "$KPID") &
KILLER=$!
start=$(date +%s)
out=$("$VDKIT" convert -q -O raw "$URI" "$T/kl.raw" 2>&1); rc=$?
took=$(($(date +%s) - start))
[ $rc -eq 3 ] && [[ "$out" == *"$URI"*"offset "*"connection lost"* ]] && [ $took -le 5 ] &&
	[ -z "$(ls -A "$T" | grep 'kl\.raw')" ] &&
	pass "server killed mid-transfer: exit 3 in ${took}s, URI and offset named, nothing left" ||
	fail "server killed: rc $rc after ${took}s: $out"
wait "$KILLER"

# One connection without multi-conn, many requests in flight from 4 workers.
nbdkit_serve one --filter=multi-conn --filter=delay file "$T/s.raw" multi-conn-mode=disable rdelay=1ms
nbdinfo "$URI" | grep -q 'can_multi_conn: false' &&
	"$VDKIT" convert -q --threads 4 -O raw "$URI" "$T/one.raw" &&
	check "one connection (no multi-conn), 4 workers sharing it: identical" cmp "$T/one.raw" "$T/s.raw" ||
	fail "single-connection conversion failed"
stop "$SPID"

# Requests in flight, counted in nbdkit's log: reads keep more outstanding
# than one per default worker (8, the old limit), writes more than one
# connection's 16 (the old limit), both over several connections (file and
# memory offer multi-conn), and what arrives is still exact.
inflight() { # LOG OP: the most OP commands the server had at once
	awk -v op="$2" '$0 ~ " " op " id=" { c++; if (c > m) m = c }
		$0 ~ "[.][.][.]" op " id=" { c-- } END { print m + 0 }' "$1"
}
nbdkit_serve fl --filter=log --filter=delay file "$T/s.raw" rdelay=5ms logfile="$T/fl.log"
if "$VDKIT" convert -q -O raw "$URI" "$T/fl.raw"; then
	stop "$SPID"
	n=$(inflight "$T/fl.log" Read) c=$(grep -c ' Connect ' "$T/fl.log")
	[ "$n" -gt 8 ] && [ "$c" -gt 1 ] && cmp -s "$T/fl.raw" "$T/s.raw" &&
		pass "NBD source: $n reads in flight at most, over $c connections; identical" ||
		fail "NBD source in flight: $n reads, $c connections"
else
	fail "conversion from the logged export failed"
fi
stop "$SPID"
nbdkit_serve wl --filter=log --filter=delay memory size=$small wdelay=5ms logfile="$T/wl.log"
if "$VDKIT" convert -q -O raw "$T/s.raw" "$URI"; then
	n=$(inflight "$T/wl.log" Write) c=$(grep -c ' Connect ' "$T/wl.log")
	[ "$n" -gt 16 ] && [ "$c" -gt 1 ] &&
		pass "NBD target: $n writes in flight at most, over $c connections" ||
		fail "NBD target in flight: $n writes, $c connections"
	check "raw -> delayed memory export: qemu-img compare" qemu-img compare -q -f raw -F raw "$T/s.raw" "$URI"
else
	fail "conversion to the logged export failed"
fi
stop "$SPID"

# 6. A stalled server is an error after --timeout, naming the URI.
nbdkit_serve dl --filter=delay file "$T/s.raw" rdelay=20
start=$(date +%s)
out=$(timeout 30 "$VDKIT" convert -q --timeout 1 -O raw "$URI" "$T/dl.raw" 2>&1); rc=$?
took=$(($(date +%s) - start))
[ $rc -eq 3 ] && [[ "$out" == *"$URI"* ]] && [[ "$out" == *"no reply from the server for 1 s"* ]] &&
	[ $took -le 5 ] && pass "stalled server: exit 3 after --timeout 1 (${took}s), naming the URI" ||
	fail "stalled server: rc $rc after ${took}s: $out"
stop "$SPID"
out=$("$VDKIT" info --timeout 0 "$URI" 2>&1); rc=$?
[ $rc -eq 2 ] && pass "--timeout 0 is a usage error" || fail "--timeout 0: rc $rc: $out"
out=$("$VDKIT" info "nbd+unix:///?socket=$T/none.sock" 2>&1); rc=$?
[ $rc -eq 3 ] && [[ "$out" == *"none.sock"*"cannot connect"* ]] &&
	pass "no server: exit 3, cannot connect" || fail "no server: rc $rc: $out"
finish
