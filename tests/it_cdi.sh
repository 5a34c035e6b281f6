#!/usr/bin/env bash
# KubeVirt CDI's importer with vdkit in qemu-img's place: the command lines
# of CDI's pkg/image/qemu.go and exec.go, verbatim, and its parsing (the
# progress regex over stdout, the info JSON fields). qemu-img is the oracle.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed (apt-get install qemu-utils)"; finish; }
have python3 || { skip "python3 needed to parse like CDI"; finish; }
LOOP=""
cleanup() {
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# A 256 MiB source with data all through it (holes and zero runs too), as
# the qcow2 a user uploads.
gen_raw "$T/src.raw" $((256 << 20)) 7
qemu-img convert -f raw -O qcow2 "$T/src.raw" "$T/src.qcow2"
qemu-img convert -f qcow2 -O raw "$T/src.qcow2" "$T/qemu.raw" # the reference result

# CDI: qemu-img info --output=json URL, under "ulimit -v 1048576 -t 30"
# (1 GiB address space, 30 s of CPU), then checkIfURLIsValid's fields.
(ulimit -v 1048576 && ulimit -t 30 && exec "$VDKIT" info --output=json "$T/src.qcow2") >"$T/info.json"
rc=$?
python3 - "$T/info.json" <<'EOF' && [ $rc -eq 0 ] && pass "info --output=json under ulimit -v 1 GiB -t 30: CDI's fields parse" || fail "info under ulimits (rc=$rc)"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "qcow2" and d["virtual-size"] == 256 << 20, d
assert isinstance(d["actual-size"], int) and "backing-filename" not in d
EOF

# CDI's progress scraper: stdout through a pipe, every match of its regex.
cdi_scrape() { python3 -c '
import re, sys
data = sys.stdin.buffer.read().decode()
vals = re.findall(r"\((\d?\d\.\d\d)\/100%\)", data)  # CDI matcherString
last = re.findall(r"\((\d{1,3}\.\d\d)/100%\)", data)
print(len(set(vals)), last[-1] if last else "none", "monotonic" if [float(v) for v in vals] == sorted(float(v) for v in vals) else "jumps")'
}

# convertToRaw: qemu-img convert -t CACHE -p -O raw SRC DEST, into a file.
read -r n last mono < <("$VDKIT" convert -t none -p -O raw "$T/src.qcow2" "$T/dest.img" 2>/dev/null | cdi_scrape)
[ "${PIPESTATUS[0]:-0}" = 0 ] && [ "$n" -ge 20 ] && [ "$last" = "100.00" ] && [ "$mono" = monotonic ] &&
	pass "convert -t none -p -O raw into a file: $n distinct progress values, ending at $last" ||
	fail "progress into a file: $n values, last $last, $mono"
qemu-img compare -q -f raw -F raw "$T/qemu.raw" "$T/dest.img" && cmp -s "$T/qemu.raw" "$T/dest.img" &&
	pass "the file equals qemu-img's result" || fail "file content differs from qemu-img's"
"$VDKIT" convert -t writeback -p -O raw "$T/src.qcow2" "$T/dest2.img" >"$T/p.out" 2>/dev/null &&
	[ "$(tr -d '\r\n' <"$T/p.out" | grep -o '    (100.00/100%)' | wc -l)" -ge 1 ] &&
	pass "progress lines are qemu-img's '    (NN.NN/100%)\\r' form" || fail "progress form: $(head -c 80 "$T/p.out" | od -c | head -2)"

# SIGUSR1 without -p: the progress once, on stdout (qemu-img's habit). The
# source is a qcow2 over an NBD export that holds the reads of its second
# half until the progress has been printed (tests/gate.sh): the conversion
# is always still running when the signal arrives. (16 MiB: the export runs
# a shell per request.)
source "$(dirname "$0")/gate.sh"
gen_raw "$T/u.raw" $((16 << 20)) 8
qemu-img convert -f raw -O qcow2 "$T/u.raw" "$T/u.qcow2"
if have nbdkit && gate_serve usr1 "$T/u.qcow2" $(($(stat -c %s "$T/u.qcow2") / 2)) r; then
	"$VDKIT" convert -t none -f qcow2 -O raw "$GATE_URI" "$T/usr1.img" >"$T/usr1.out" 2>"$T/usr1.err" &
	pid=$!
	if gate_held usr1; then
		kill -USR1 $pid
		for _ in $(seq 1 500); do grep -q . "$T/usr1.out" && break; sleep 0.01; done
		gate_open usr1
		wait $pid; rc=$?
		[ $rc -eq 0 ] && grep -qE '^    \([0-9]{1,3}\.[0-9]{2}/100%\)' "$T/usr1.out" &&
			[ "$(tr -d '\r' <"$T/usr1.out" | grep -o '/100%' | wc -l)" -eq 1 ] &&
			cmp -s "$T/u.raw" "$T/usr1.img" &&
			pass "SIGUSR1 mid-run prints the progress once: $(tr -d '\r' <"$T/usr1.out" | head -c 20), the result is identical" ||
			fail "SIGUSR1: rc=$rc, out: $(head -c 80 "$T/usr1.out"), err: $(head -c 200 "$T/usr1.err")"
	else
		kill $pid 2>/dev/null; wait $pid
		fail "SIGUSR1: the conversion never reached the held half: $(head -c 200 "$T/usr1.err")"
	fi
	gate_stop
	rm -f "$T/usr1.img" "$T/u.raw" "$T/u.qcow2"
else
	skip "SIGUSR1 test: nbdkit missing or could not start"
fi

# With preallocation, as addPreallocation inserts it right after the verb.
"$VDKIT" convert -o preallocation=falloc -t none -p -O raw "$T/src.qcow2" "$T/pre.img" >/dev/null 2>&1 &&
	cmp -s "$T/qemu.raw" "$T/pre.img" && [ $(($(stat -c %b "$T/pre.img") * 512)) -ge $((256 << 20)) ] &&
	pass "convert -o preallocation=falloc: content equal, every block allocated" || fail "convert falloc"
"$VDKIT" convert -S 0 -t none -p -O raw "$T/src.qcow2" "$T/s0.img" >/dev/null 2>&1 &&
	cmp -s "$T/qemu.raw" "$T/s0.img" && [ $(($(stat -c %b "$T/s0.img") * 512)) -ge $((256 << 20)) ] &&
	pass "convert -S 0: content equal, fully allocated" || fail "convert -S 0"

# Into a block device (volumeMode: Block): a loop device over a file that
# holds old data, so holes in the source must be zeroed on the device.
if [ "$(id -u)" != 0 ]; then
	skip "block device target: needs root for losetup"
elif ! have losetup; then
	skip "block device target: losetup missing"
else
	head -c $((256 << 20)) /dev/urandom >"$T/backing.img"
	LOOP=$(losetup -f --show "$T/backing.img" 2>/dev/null)
	if [ -z "$LOOP" ]; then
		skip "block device target: losetup -f failed (no loop devices here)"
	else
		read -r n last mono < <("$VDKIT" convert -t none -p -O raw "$T/src.qcow2" "$LOOP" 2>/dev/null | cdi_scrape)
		[ "$n" -ge 20 ] && [ "$last" = "100.00" ] &&
			pass "convert -t none -p -O raw into $LOOP: $n progress values, ending at $last" ||
			fail "progress into the device: $n values, last $last"
		[ -b "$LOOP" ] && pass "the device is still a block device" || fail "$LOOP is no longer a block device"
		qemu-img compare -q -f raw -F raw "$T/qemu.raw" "$LOOP" &&
			pass "the device equals qemu-img's result (holes zeroed over old data)" ||
			fail "device content differs from qemu-img's"
		small=$(losetup -f --show --sizelimit $((128 << 20)) "$T/backing.img" 2>/dev/null)
		if [ -n "$small" ]; then
			"$VDKIT" convert -t none -p -O raw "$T/src.qcow2" "$small" >/dev/null 2>"$T/err"; rc=$?
			losetup -d "$small"
			[ $rc -ne 0 ] && grep -q "holds 134217728 bytes" "$T/err" &&
				pass "a device too small is refused before writing (exit $rc)" || fail "small device: rc=$rc $(cat "$T/err")"
		fi
	fi
fi

# CreateBlankImage: qemu-img create -f raw DEST SIZE [-o preallocation=falloc].
"$VDKIT" create -f raw "$T/blank.img" 1073741824 >/dev/null && qemu-img create -q -f raw "$T/qblank.img" 1073741824 &&
	[ "$(stat -c %s "$T/blank.img")" = "$(stat -c %s "$T/qblank.img")" ] &&
	[ "$(stat -c %b "$T/blank.img")" -le 8 ] && pass "create -f raw DEST 1073741824: sparse, qemu-img's size" ||
	fail "create -f raw"
"$VDKIT" create -f raw "$T/pblank.img" 104857600 -o preallocation=falloc >/dev/null &&
	[ $(($(stat -c %b "$T/pblank.img") * 512)) -ge 104857600 ] && pass "create -f raw DEST SIZE -o preallocation=falloc" ||
	fail "create falloc"

# Resize: qemu-img resize -f raw IMAGE SIZE (and --preallocation=falloc first).
cp "$T/dest.img" "$T/grow.img"
"$VDKIT" resize -f raw "$T/grow.img" 536870912 >/dev/null && [ "$(stat -c %s "$T/grow.img")" = 536870912 ] &&
	qemu-img compare -q -f raw -F raw "$T/qemu.raw" "$T/grow.img" &&
	pass "resize -f raw IMAGE 536870912: grown, content kept" || fail "resize -f raw"
"$VDKIT" resize --preallocation=falloc -f raw "$T/grow.img" 805306368 >/dev/null &&
	[ "$(stat -c %s "$T/grow.img")" = 805306368 ] && pass "resize --preallocation=falloc -f raw" || fail "resize falloc"
finish
