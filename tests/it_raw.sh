#!/usr/bin/env bash
# raw <-> raw through the CLI, with qemu-img as the oracle.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed (apt-get install qemu-utils)"; finish; }

jnum() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1" | head -1; }
jstr() { sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1" | head -1; }

# A 64 MiB image with holes and zero runs and a size that is not a multiple of 64 KiB.
gen_raw "$T/a.raw" $((64 * 1048576 + 12345)) 11
"$VDKIT" info -f raw --output=json "$T/a.raw" >"$T/v.json"
qemu-img info -f raw --output=json "$T/a.raw" >"$T/q.json"
[ "$(jnum "$T/v.json" virtual-size)" = "$(jnum "$T/q.json" virtual-size)" ] &&
	[ -n "$(jnum "$T/v.json" virtual-size)" ] &&
	pass "info virtual-size equals qemu-img's ($(jnum "$T/q.json" virtual-size))" ||
	fail "info virtual-size $(jnum "$T/v.json" virtual-size) != qemu-img $(jnum "$T/q.json" virtual-size)"
[ "$(jstr "$T/v.json" format)" = "$(jstr "$T/q.json" format)" ] &&
	pass "info format equals qemu-img's" || fail "info format differs"

"$VDKIT" convert -q -f raw -O raw "$T/a.raw" "$T/b.raw"
qemu-img convert -f raw -O raw "$T/a.raw" "$T/q.raw"
# The input is not whole sectors: qemu-img pads its copy to 512 bytes; vdkit's
# raw copy is exact, and reads the same as qemu's (zero tail).
check "raw -> raw is an exact copy (same bytes, same size)" cmp "$T/b.raw" "$T/a.raw"
check "qemu-img compare: vdkit's exact copy equals qemu-img's padded one" \
	qemu-img compare -q -f raw -F raw "$T/b.raw" "$T/q.raw"
in_k=$(du -k "$T/a.raw" | cut -f1); out_k=$(du -k "$T/b.raw" | cut -f1)
[ "$out_k" -le $((in_k + 1024)) ] && pass "holes kept: ${out_k} KiB allocated vs ${in_k} KiB input" ||
	fail "output allocates ${out_k} KiB, input ${in_k} KiB"
check "vdkit compare: identical images exit 0" "$VDKIT" compare -q "$T/a.raw" "$T/b.raw"
check "qemu-img compare agrees" qemu-img compare -q "$T/a.raw" "$T/b.raw"
printf '\x5a' | dd of="$T/b.raw" bs=1 seek=33554433 conv=notrunc 2>/dev/null
out=$("$VDKIT" compare "$T/a.raw" "$T/b.raw"); rc=$?
[ $rc -eq 1 ] && pass "compare: one byte differs -> exit 1" || fail "compare exit $rc"
[[ "$out" == *"offset 33554433"* ]] && pass "compare names the first differing offset" ||
	fail "compare said: $out"

# map: the same data/zero layout as qemu-img map
"$VDKIT" map --output=json "$T/a.raw" | sed 's/, "offset": [0-9]*//' >"$T/vm"
qemu-img map --output=json "$T/a.raw" | sed 's/, "offset": [0-9]*//' >"$T/qm"
check "map --output=json matches qemu-img map (start, length, zero, data)" cmp "$T/vm" "$T/qm"

# stdout, verify, progress
"$VDKIT" convert -O raw "$T/a.raw" - >"$T/stdout.raw"
check "convert to stdout streams the same bytes" cmp "$T/stdout.raw" "$T/a.raw"
"$VDKIT" convert --verify --progress=json "$T/a.raw" "$T/c.raw" 2>"$T/progress"
check "--verify succeeds on a good conversion" cmp "$T/c.raw" "$T/a.raw"
grep -q '"percent": 100' "$T/progress" && pass "--progress=json reports 100%" ||
	fail "no final progress line"
"$VDKIT" convert -q --threads 1 -S 0 "$T/a.raw" "$T/d.raw"
check "-S 0 (no zero detection) on one thread is still identical" cmp "$T/d.raw" "$T/a.raw"

# 0-byte image
: >"$T/empty.raw"
"$VDKIT" convert -q -O raw "$T/empty.raw" "$T/empty.out" && [ -f "$T/empty.out" ] &&
	[ "$(stat -c %s "$T/empty.out")" = 0 ] && pass "0-byte image converts to a 0-byte image" ||
	fail "0-byte image"
"$VDKIT" info --output=json "$T/empty.raw" | grep -q '"virtual-size": 0,' &&
	pass "0-byte info" || fail "0-byte info"

# 8 TiB, all hole: cost is extents, not bytes
if truncate -s 8T "$T/huge.raw" 2>/dev/null; then
	timeout 120 "$VDKIT" convert -q -O raw "$T/huge.raw" "$T/huge.out"; rc=$?
	[ $rc -eq 0 ] && [ "$(stat -c %s "$T/huge.out")" = 8796093022208 ] &&
		[ "$(du -k "$T/huge.out" | cut -f1)" -lt 1024 ] &&
		pass "8 TiB all-hole image converts, stays sparse" || fail "8 TiB image (rc $rc)"
	check "8 TiB images compare identical (vdkit)" timeout 120 "$VDKIT" compare -q "$T/huge.raw" "$T/huge.out"
	"$VDKIT" map --output=json "$T/huge.raw" | grep -q '"length": 8796093022208' &&
		pass "8 TiB map is one zero extent" || fail "8 TiB map"
	rm -f "$T/huge.raw" "$T/huge.out"
else
	skip "filesystem of $T cannot hold an 8 TiB sparse file"
fi
# A dense file is one data run: the workers' lookups of their pieces are
# answered from the first SEEK_HOLE, not repeated per piece (on tmpfs each
# SEEK_HOLE walks the page cache to the end of the run: quadratic).
if have strace; then
	"$TOP/bin/vdk-gen" -d 100 "$T/dense.raw" $((64 << 20)) 5
	strace -f -e trace=lseek -o "$T/lseek.txt" "$VDKIT" convert -q --clone=never -O raw \
		"$T/dense.raw" "$T/dense.out"
	n=$(grep -c SEEK_HOLE "$T/lseek.txt")
	[ "$n" -le 4 ] && cmp -s "$T/dense.raw" "$T/dense.out" &&
		pass "dense 64 MiB raw: $n SEEK_HOLE lookups for 64 pieces, copy exact" ||
		fail "dense 64 MiB raw: $n SEEK_HOLE lookups (want <= 4), or the copy differs"
	# A raw output takes writes at any offset from any thread: the workers
	# write their own pieces rather than queueing them for the main thread
	# (a sink flag once overwritten by the new-file path switched this off).
	if have qemu-img && [ "$(nproc)" -ge 2 ]; then
		qemu-img convert -f raw -O qcow2 "$T/dense.raw" "$T/dense.qcow2"
		strace -f -e trace=pwrite64,execve -o "$T/pw.txt" "$VDKIT" convert -q --clone=never -O raw \
			"$T/dense.qcow2" "$T/dense.out"
		# Workers hand finished slots to whichever of them is writing
		# (pipeline.c), so one worker may do every write: what must
		# hold is that the main thread, which commits in order, does none.
		# Fields, not columns: strace 6 pads the pid with a second space.
		main=$(awk '$2 ~ /^execve\(/ { p = $1 } END { print p }' "$T/pw.txt")
		nmain=$(awk -v m="$main" '$1 == m && $2 ~ /^pwrite64\(/ { n++ } END { print n + 0 }' "$T/pw.txt")
		nwork=$(awk -v m="$main" '$1 != m && $2 ~ /^pwrite64\(/ { n++ } END { print n + 0 }' "$T/pw.txt")
		[ -n "$main" ] && [ "$nmain" = 0 ] && [ "$nwork" -ge 1 ] && cmp -s "$T/dense.raw" "$T/dense.out" &&
			pass "qcow2 -> raw: $nwork pwrite64 from worker threads, none from the main thread, copy exact" ||
			fail "qcow2 -> raw: pwrite64 main(pid ${main:-none})=$nmain workers=$nwork (want 0 and >= 1), or the copy differs"
	else
		skip "qemu-img missing or one CPU: parallel raw writes not checked"
	fi
	rm -f "$T/dense.raw" "$T/dense.out" "$T/dense.qcow2"
else
	skip "strace not installed: SEEK_HOLE lookups not counted (apt-get install strace)"
fi
finish
