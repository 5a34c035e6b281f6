#!/usr/bin/env bash
# A small `make fuzz-diff`: 300 mutants of fixed seeds (images qemu-img
# makes, and one corpus seed per format), read by vdkit and by qemu-img.
# Asserts that wherever both read a mutant their contents are identical
# (no divergence), that neither crashed nor hung, that every mutant vdkit
# reads and qemu-img refuses is of a known class, and that the comparison
# really ran (a share of the mutants read identically by both).
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed"; finish; }
FD="$TOP/fuzz/bin/fuzz-diff"
[ -x "$FD" ] || { fail "fuzz/bin/fuzz-diff not built"; finish; }
C="$TOP/fuzz/corpus"
out=$("$FD" -Q -n 300 -s 7 -j 2 -w "$T/work" -o "$T/out" qcow2:"$C"/qcow2/plain4k.qcow2 \
	vmdk:"$C"/vmdk/qemu-streamOptimized.vxsp vhd:"$C"/vhd/qemu-fixed-16k.vhd \
	vhdx:"$C"/vhdx/q-dyn-1M.vxsp sesparse:"$C"/sesparse/h1-sesparse.vmdk 2>&1)
rc=$?
last=$(echo "$out" | tail -1)
if [ $rc -eq 0 ] && [[ "$last" == *"300 mutants; 0 divergences, crashes or timeouts; 0 unexplained"* ]]; then
	pass "fuzz-diff: 300 mutants, no divergence, crash, timeout or unexplained class ($last)"
else
	fail "fuzz-diff (rc $rc): $(echo "$out" | grep -v '^ *->' | tail -30)"
fi
ok=$(echo "$out" | awk '$1 == "ok" { print $NF }')
[ "${ok:-0}" -ge 50 ] && pass "fuzz-diff: $ok mutants read identically by both tools" ||
	fail "fuzz-diff: only ${ok:-0} mutants compared"
finish
