#!/usr/bin/env bash
# vdkit commit and rebase against qemu-img: chains of depth 1-3 made by
# qemu-img and qemu-io, committed by vdkit and (on a copy) by qemu-img
# commit; the base then reads as the top read before, identical to qemu's
# result, and qemu-img check finds nothing. Parents of every writable kind
# (monolithicSparse, monolithicFlat, twoGbMaxExtentSparse/Flat, vmfs, raw),
# grain tables that must be allocated, zeroed grains, SIGKILL during a
# commit then a rerun, rebase -u of chains moved between folders (qcow2:
# byte-identical to qemu-img rebase -u), safe rebase onto another disk, and
# the refusals (streamOptimized parent, a stale layer above the base, a
# descriptor that would overflow) with every file unchanged.
source "$(dirname "$0")/lib.sh"
have qemu-img && have qemu-io || { skip "commit tests: qemu-img/qemu-io missing"; finish; }
V=$VDKIT

qio() { qemu-io -f "$1" "${@:3}" "$2" >/dev/null; }
# The chain's content as qemu-img reads it, into a sparse raw file.
snap() { qemu-img convert -O raw "$1" "$2"; }
same() { qemu-img compare -q -F "${3:-vmdk}" -f raw "$1" "$2" 2>/dev/null; }
unchanged() { # DESC FILE... : every file's sha as recorded by record()
	local f bad=0
	for f in "${@:2}"; do [ "$(sha "$f")" = "${SUMS[$f]}" ] || bad=1; done
	[ $bad -eq 0 ] && pass "$1" || fail "$1"
}
declare -A SUMS
record() { local f; for f in "$@"; do SUMS[$f]=$(sha "$f"); done; }
cid() { strings "$1" | sed -n 's/^CID=//p' | head -1; }

# ---- depth 1, hosted sparse parent: partial grains, zeroes, new grains
D="$T/d1"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 64M
qio vmdk "$D/base.vmdk" -c 'write -P 1 0 4M' -c 'write -P 7 40M 1M'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 2 1M 3M' -c 'write -P 3 10M 100k' -c 'write -z 40M 64k' \
	-c 'write -P 4 63M 1M' -c 'write -P 5 20000k 1536'
snap "$D/top.vmdk" "$D/before.raw"
mkdir "$D/q"; cp "$D/base.vmdk" "$D/top.vmdk" "$D/q/"
old_cid=$(cid "$D/base.vmdk")
out=$("$V" commit "$D/top.vmdk" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$out" = "Image committed." ] && pass "commit depth 1 (monolithicSparse parent): exit 0, qemu-img's message" ||
	fail "commit depth 1: rc=$rc $out"
same "$D/before.raw" "$D/base.vmdk" && pass "depth 1: the parent reads as the top did (qemu-img)" ||
	fail "depth 1: the parent differs from the top's content"
check "depth 1: qemu-img check of the parent is clean" qemu-img check -q "$D/base.vmdk"
(cd "$D/q" && qemu-img commit -q top.vmdk)
qemu-img compare -q "$D/q/base.vmdk" "$D/base.vmdk" && pass "depth 1: same content as qemu-img commit's parent" ||
	fail "depth 1: content differs from qemu-img commit's"
[ "$(cid "$D/base.vmdk")" != "$old_cid" ] && [ ${#old_cid} -eq "$(cid "$D/base.vmdk" | wc -c | awk '{print $1-1}')" ] &&
	pass "depth 1: the parent's CID changed (same width, written in place), as qemu changes it" ||
	fail "depth 1: CID $old_cid -> $(cid "$D/base.vmdk")"
# qemu leaves a VMDK top as it was (no make_empty) with a stale parentCID:
# both refuse to read it through the changed parent.
qemu-img convert -O raw "$D/q/top.vmdk" "$D/x.raw" 2>/dev/null; qrc=$?
"$V" convert -q -O raw "$D/top.vmdk" "$D/y.raw" 2>"$D/err"; vrc=$?
[ $qrc -ne 0 ] && [ $vrc -eq 1 ] && grep -q parentCID "$D/err" &&
	pass "after commit the top's parentCID is stale, as after qemu-img commit (both refuse to read it)" ||
	fail "stale top: qemu rc=$qrc vdkit rc=$vrc $(cat "$D/err")"

# ---- depth 2 and 3: intermediate layers, zeroed grains, -b BASE
D="$T/d3"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 32M
qio vmdk "$D/base.vmdk" -c 'write -P 1 0 8M' -c 'write -P 9 30M 2M'
qemu-img create -q -f vmdk -o zeroed_grain=on -b base.vmdk -F vmdk "$D/m1.vmdk"
qio vmdk "$D/m1.vmdk" -c 'write -P 2 4M 4M' -c 'write -P 6 16M 64k'
qemu-img create -q -f vmdk -b m1.vmdk -F vmdk "$D/m2.vmdk"
qio vmdk "$D/m2.vmdk" -c 'write -P 3 6M 1M' -c 'write -z 30M 1M' -c 'write -P 8 17M 3k'
qemu-img create -q -f vmdk -b m2.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 4 7M 512k' -c 'write -z 0 128k' -c 'write -P 5 25M 1M'
snap "$D/top.vmdk" "$D/before3.raw"
snap "$D/m2.vmdk" "$D/before2.raw"
rm -rf "$D/q"; mkdir "$D/q"; cp "$D"/*.vmdk "$D/q/"
cp "$D"/m1.vmdk "$D"/m2.vmdk "$D"/base.vmdk "$D/q/"
# depth 2: m2 into m1 (a delta with zeroed grains: 30M..31M becomes zero
# entries over the base's data, without any grain)
mkdir "$D/z"; cp "$D"/base.vmdk "$D"/m1.vmdk "$D"/m2.vmdk "$D/z/"
"$V" commit -q "$D/z/m2.vmdk" && same "$D/before2.raw" "$D/z/m1.vmdk" &&
	pass "commit depth 2 into a delta parent (zeroed_grain=on): it reads as m2 did" ||
	fail "commit depth 2 into a delta parent"
check "depth 2: qemu-img check of the delta parent is clean" qemu-img check -q "$D/z/m1.vmdk"
check "depth 2: the parent's own parent is untouched" cmp "$D/z/base.vmdk" "$D/base.vmdk"
# depth 3: everything down into the base
"$V" commit -q -b "$D/base.vmdk" "$D/top.vmdk" && same "$D/before3.raw" "$D/base.vmdk" &&
	pass "commit -b BASE through two intermediate layers: the base reads as the top did" ||
	fail "commit -b BASE depth 3"
(cd "$D/q" && qemu-img commit -q -b base.vmdk top.vmdk)
qemu-img compare -q "$D/q/base.vmdk" "$D/base.vmdk" && pass "depth 3: same content as qemu-img commit -b" ||
	fail "depth 3: content differs from qemu-img commit -b"
check "depth 3: qemu-img check of the base is clean" qemu-img check -q "$D/base.vmdk"
"$V" commit -b "$D/before3.raw" "$D/q/top.vmdk" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "commit -b of a file not in the chain: usage error (exit 2)" || fail "commit -b foreign: rc=$rc"

# A layer above the base whose parent changed after it was made: refused
# (qemu-img would commit it blindly), unless --force.
D="$T/cidm"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 8M
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/mid.vmdk"
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 2 0 1M'
qio vmdk "$D/mid.vmdk" -c 'write -P 3 2M 1M' # mid's CID changes: top is stale
record "$D/base.vmdk" "$D/mid.vmdk" "$D/top.vmdk"
"$V" commit -b "$D/base.vmdk" "$D/top.vmdk" 2>"$D/err"; rc=$?
[ $rc -eq 1 ] && grep -q "parentCID.*does not match" "$D/err" && pass "commit -b through a layer whose parent changed is refused (exit 1)" ||
	fail "stale layer above the base: rc=$rc $(cat "$D/err")"
unchanged "stale-layer refusal: every file unchanged" "$D/base.vmdk" "$D/mid.vmdk" "$D/top.vmdk"
check "--force commits it anyway" "$V" commit -q --force -b "$D/base.vmdk" "$D/top.vmdk"

# A delta parent whose own parent lies in another folder: --allow-dir
# reaches it (the updater fills the rest of a new grain from it).
D="$T/far"; mkdir -p "$D/other" "$D/vm"
qemu-img create -q -f vmdk "$D/other/base.vmdk" 8M
qio vmdk "$D/other/base.vmdk" -c 'write -P 1 0 8M'
qemu-img create -q -f vmdk -b ../other/base.vmdk -F vmdk "$D/vm/mid.vmdk"
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk "$D/vm/top.vmdk"
qio vmdk "$D/vm/top.vmdk" -c 'write -P 2 1000k 8k'
snap "$D/vm/top.vmdk" "$D/before.raw"
"$V" commit -q "$D/vm/top.vmdk" 2>/dev/null; rc=$?
"$V" commit -q --allow-dir "$D/other" "$D/vm/top.vmdk" && same "$D/before.raw" "$D/vm/mid.vmdk" && [ $rc -eq 1 ] &&
	pass "a delta parent whose parent is in another folder: refused by default, committed with --allow-dir (partial grain filled from it)" ||
	fail "far parent: rc=$rc"

# ---- parents of the other writable kinds (and a qcow2 overlay)
kind() { # SUBFORMAT SIZE: top sparse over a parent of that subformat
	local sub=$1 size=$2 D="$T/k-$1"
	mkdir -p "$D"
	if [ "$sub" = vmfs ]; then # qemu-img cannot make one; qemu reads and writes it
		"$V" create -q -f vmdk -o subformat=vmfs "$D/base.vmdk" "$size"
	else
		qemu-img create -q -f vmdk -o subformat="$sub" "$D/base.vmdk" "$size"
	fi
	qio vmdk "$D/base.vmdk" -c 'write -P 1 0 1M' -c "write -P 6 $((size - (3 << 20))) 3M"
	qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/top.vmdk"
	qio vmdk "$D/top.vmdk" -c 'write -P 2 512k 1M' -c "write -P 3 $((size / 2 - 100 * 1024)) 300k" \
		-c "write -z $((size - (2 << 20))) 64k"
	snap "$D/top.vmdk" "$D/before.raw"
	"$V" commit -q "$D/top.vmdk" && same "$D/before.raw" "$D/base.vmdk" &&
		qemu-img check -q "$D/base.vmdk" >/dev/null 2>&1 &&
		pass "commit into a $sub parent: it reads as the top did, check clean" ||
		fail "commit into a $sub parent"
	rm -f "$D"/*.raw
}
kind monolithicFlat $((48 << 20))
kind twoGbMaxExtentSparse $(( (2 << 30) + (8 << 20) ))
kind twoGbMaxExtentFlat $(( (2 << 30) + (8 << 20) ))
kind vmfs $((16 << 20))

D="$T/ov"; mkdir -p "$D"
for bf in raw vmdk vpc vhdx; do
	qemu-img create -q -f "$bf" "$D/b.$bf" 16M
	qio "$bf" "$D/b.$bf" -c 'write -P 1 0 2M'
	qemu-img create -q -f qcow2 -b "b.$bf" -F "$bf" "$D/t-$bf.qcow2"
	qio qcow2 "$D/t-$bf.qcow2" -c 'write -P 2 1M 2M' -c 'write -z 0 64k' -c 'write -P 3 9M 33k'
	snap "$D/t-$bf.qcow2" "$D/before.raw"
	out=$("$V" commit "$D/t-$bf.qcow2" 2>&1)
	same "$D/before.raw" "$D/b.$bf" "$bf" && { [ "$bf" = raw ] || [ "$bf" = vmdk ] || qemu-img check -q -f "$bf" "$D/b.$bf" >/dev/null 2>&1 || [ $? = 63 ]; } &&
		pass "commit of a qcow2 overlay into its $bf backing file ($(echo "$out" | tail -1))" ||
		fail "commit qcow2 -> $bf: $out"
done
qemu-img create -q -f qcow2 "$D/b.qcow2" 16M
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 "$D/t.qcow2"
qio qcow2 "$D/b.qcow2" -c 'write -P 1 0 4M'
qio qcow2 "$D/t.qcow2" -c 'write -P 2 1M 2M' -c 'write -z 3M 64k'
snap "$D/t.qcow2" "$D/before.raw"
if out=$("$V" commit "$D/t.qcow2" 2>&1); then
	same "$D/before.raw" "$D/b.qcow2" qcow2 && qemu-img check -q "$D/b.qcow2" >/dev/null &&
		pass "commit into a qcow2 parent: it reads as the top did, check clean" || fail "commit into a qcow2 parent"
elif echo "$out" | grep -q "cannot be updated"; then
	skip "commit into a qcow2 parent: the qcow2 updater is not on this branch ($out)"
else
	fail "commit into a qcow2 parent: $out"
fi

# ---- IMAGE emptied after the commit, as qemu-img commit empties it (on a
# copy of the chain, the oracle), and kept with -d or internal snapshots
D="$T/empty"; mkdir -p "$D"
qinfo() { qemu-img info "$1" | grep -E '^backing file|compat:|compression type:|cluster_size:'; }
for kind in "v3:" "v2:-o compat=0.10,cluster_size=4096" "zstd:-o compression_type=zstd"; do
	n=${kind%%:*}
	qemu-img create -q -f qcow2 "$D/b-$n.qcow2" 16M
	qio qcow2 "$D/b-$n.qcow2" -c 'write -P 1 0 4M'
	qemu-img create -q -f qcow2 ${kind#*:} -b "b-$n.qcow2" -F qcow2 "$D/t-$n.qcow2"
	qio qcow2 "$D/t-$n.qcow2" -c 'write -P 2 1M 2M' -c 'write -P 3 9M 33k'
	chmod 640 "$D/t-$n.qcow2"
	snap "$D/t-$n.qcow2" "$D/before.raw"
	was=$(qinfo "$D/t-$n.qcow2")
	mkdir -p "$D/q-$n"; cp "$D/b-$n.qcow2" "$D/t-$n.qcow2" "$D/q-$n/"
	qemu-img commit -q "$D/q-$n/t-$n.qcow2"
	out=$("$V" commit "$D/t-$n.qcow2" 2>&1); rc=$?
	own=$(qemu-img map --output=json "$D/t-$n.qcow2" | grep -c '"depth": 0')
	qown=$(qemu-img map --output=json "$D/q-$n/t-$n.qcow2" | grep -c '"depth": 0')
	[ $rc -eq 0 ] && [ "$out" = "Image committed." ] && [ "$own" = 0 ] && [ "$qown" = 0 ] &&
		same "$D/before.raw" "$D/t-$n.qcow2" qcow2 && same "$D/before.raw" "$D/b-$n.qcow2" qcow2 &&
		pass "$n overlay: emptied after the commit like qemu-img's copy (no cluster of its own), reads as before" ||
		fail "$n overlay emptying: exit $rc, $out, own extents $own (qemu's copy $qown)"
	[ "$(qinfo "$D/t-$n.qcow2")" = "$was" ] && [ "$(stat -c %a "$D/t-$n.qcow2")" = 640 ] &&
		qemu-img check -q "$D/t-$n.qcow2" >/dev/null &&
		pass "$n overlay: same backing name and format, compat, compression and cluster size; mode kept; check clean" ||
		fail "$n overlay after emptying: $(qinfo "$D/t-$n.qcow2" | tr '\n' ' ') (was $(echo $was)), mode $(stat -c %a "$D/t-$n.qcow2")"
	sz=$(stat -c %s "$D/t-$n.qcow2") qsz=$(stat -c %s "$D/q-$n/t-$n.qcow2")
	echo "# $n: emptied IMAGE is $sz bytes, qemu-img's $qsz"
	[ "$sz" -le $((qsz + 65536)) ] && pass "$n overlay: emptied file $sz bytes (qemu-img's: $qsz)" ||
		fail "$n overlay: emptied file $sz bytes, qemu-img's $qsz"
done
qemu-img create -q -f qcow2 "$D/bk.qcow2" 16M
qemu-img create -q -f qcow2 -b bk.qcow2 -F qcow2 "$D/tk.qcow2"
qio qcow2 "$D/tk.qcow2" -c 'write -P 2 1M 2M'
cp "$D/tk.qcow2" "$D/ts.qcow2"
record "$D/tk.qcow2"
"$V" commit -q -d "$D/tk.qcow2" && unchanged "commit -d: the qcow2 IMAGE is kept byte-identical" "$D/tk.qcow2"
qemu-img snapshot -c s1 "$D/ts.qcow2"
record "$D/ts.qcow2"
out=$("$V" commit "$D/ts.qcow2" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "not emptied (it has internal snapshots" <<<"$out" &&
	pass "an IMAGE with internal snapshots is committed and kept, with the reason: $(head -1 <<<"$out")" ||
	fail "commit of an IMAGE with snapshots: exit $rc, $out"
unchanged "the IMAGE with internal snapshots is byte-identical" "$D/ts.qcow2"

# ---- a grain table the parent's directory does not have yet
D="$T/gt"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 128M
qio vmdk "$D/base.vmdk" -c 'write -P 1 0 1M'
# Drop the grain directory entries (primary and redundant) of tables 2 and 3
# (64..128 MiB): unused tables, so the disk reads the same (qemu: unallocated).
python3 - "$D/base.vmdk" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); h = f.read(512)
rgd, gd = struct.unpack_from('<QQ', h, 48)
for d in (gd, rgd):
    f.seek(d * 512 + 8); f.write(b'\0' * 8)
EOF
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 2 70M 2M' -c 'write -P 3 100M 64k'
snap "$D/top.vmdk" "$D/before.raw"
size0=$(stat -c %s "$D/base.vmdk")
"$V" commit -q "$D/top.vmdk" && same "$D/before.raw" "$D/base.vmdk" && qemu-img check -q "$D/base.vmdk" >/dev/null &&
	pass "commit needing new grain tables (GD and RGD entries written after the tables): content and check OK" ||
	fail "commit with new grain tables"
python3 - "$D/base.vmdk" <<'EOF' && pass "the new tables are named by both directories" || fail "new tables: GD/RGD entries"
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(512)
rgd, gd = struct.unpack_from('<QQ', h, 48)
e = []
for d in (gd, rgd):
    f.seek(d * 512 + 8); e.append(struct.unpack('<II', f.read(8)))
sys.exit(0 if all(x for t in e for x in t) and e[0] != e[1] else 1)
EOF

# ---- SIGKILL during a commit, then a rerun: exact every time
D="$T/kill"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 128M
qio vmdk "$D/base.vmdk" -c 'write -P 1 0 32M'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/top.vmdk"
cmds=()
for i in $(seq 0 39); do cmds+=(-c "write -P $((i + 2)) $((i * 3))M 1M"); done
qio vmdk "$D/top.vmdk" "${cmds[@]}"
snap "$D/top.vmdk" "$D/before.raw"
mkdir "$D/w"
cp "$D/base.vmdk" "$D/top.vmdk" "$D/w/"; s=$(date +%s%N); "$V" commit -q "$D/w/top.vmdk"
ms=$(( ($(date +%s%N) - s) / 1000000 ))
bad=0 killed=0
for i in $(seq 1 "${KILL_POINTS:-8}"); do
	cp "$D/base.vmdk" "$D/top.vmdk" "$D/w/"
	"$V" commit -q "$D/w/top.vmdk" >/dev/null 2>&1 &
	pid=$!
	sleep "$(awk -v m="$ms" -v r="$RANDOM" 'BEGIN{printf "%.3f", m * (r / 32768) / 1000}')"
	kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
	wait "$pid" 2>/dev/null
	qemu-img check -q "$D/w/base.vmdk" >/dev/null 2>&1 || bad=$((bad + 1))
	"$V" commit -q "$D/w/top.vmdk" >/dev/null 2>&1 || bad=$((bad + 1))
	same "$D/before.raw" "$D/w/base.vmdk" || bad=$((bad + 1))
	qemu-img check -q "$D/w/base.vmdk" >/dev/null 2>&1 || bad=$((bad + 1))
done
[ $bad -eq 0 ] && pass "SIGKILL at ${KILL_POINTS:-8} points of a commit (~${ms} ms; $killed killed): parent valid after each kill, the rerun exact" ||
	fail "SIGKILL during commit: $bad bad outcomes"

# The same for a qcow2 chain, where the commit ends by emptying IMAGE: after
# each kill IMAGE checks clean and still reads as before (full or already
# empty), and the base has no corruption (leaked clusters at worst, exit 3,
# as a killed qemu leaves them); the rerun leaves the base exact, IMAGE
# empty and no temporary in the folder, and check -r leaks then makes the
# base clean.
qemu-img create -q -f qcow2 "$D/qb.qcow2" 128M
qio qcow2 "$D/qb.qcow2" -c 'write -P 1 0 32M'
qemu-img create -q -f qcow2 -b qb.qcow2 -F qcow2 "$D/qt.qcow2"
qio qcow2 "$D/qt.qcow2" "${cmds[@]}"
snap "$D/qt.qcow2" "$D/qbefore.raw"
rm -rf "$D/w"; mkdir "$D/w"
cp "$D/qb.qcow2" "$D/qt.qcow2" "$D/w/"; s=$(date +%s%N); "$V" commit -q "$D/w/qt.qcow2"
ms=$(( ($(date +%s%N) - s) / 1000000 ))
bad=0 killed=0
for i in $(seq 1 "${KILL_POINTS:-8}"); do
	cp "$D/qb.qcow2" "$D/qt.qcow2" "$D/w/"
	"$V" commit -q "$D/w/qt.qcow2" >/dev/null 2>&1 &
	pid=$!
	sleep "$(awk -v m="$ms" -v r="$RANDOM" 'BEGIN{printf "%.3f", m * 1.2 * (r / 32768) / 1000}')"
	kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
	wait "$pid" 2>/dev/null
	qemu-img check -q "$D/w/qb.qcow2" >/dev/null 2>&1; rc=$?
	[ $rc = 0 ] || [ $rc = 3 ] || bad=$((bad + 1))
	qemu-img check -q "$D/w/qt.qcow2" >/dev/null 2>&1 || bad=$((bad + 1))
	same "$D/qbefore.raw" "$D/w/qt.qcow2" qcow2 || bad=$((bad + 1))
	"$V" commit -q "$D/w/qt.qcow2" >/dev/null 2>&1 || bad=$((bad + 1))
	same "$D/qbefore.raw" "$D/w/qb.qcow2" qcow2 || bad=$((bad + 1))
	[ "$(qemu-img map --output=json "$D/w/qt.qcow2" | grep -c '"depth": 0')" = 0 ] || bad=$((bad + 1))
	[ -z "$(find "$D/w" -name '.*vdkit-*')" ] || bad=$((bad + 1))
	"$V" check -q -r leaks "$D/w/qb.qcow2" >/dev/null 2>&1
	qemu-img check -q "$D/w/qb.qcow2" >/dev/null 2>&1 || bad=$((bad + 1))
done
[ $bad -eq 0 ] && pass "SIGKILL at ${KILL_POINTS:-8} points of a qcow2 commit and its emptying (~${ms} ms; $killed killed): no corruption after each kill, IMAGE reads as before, the rerun exact, IMAGE empty, no temporary, the base clean after check -r leaks" ||
	fail "SIGKILL during a qcow2 commit: $bad bad outcomes"

# ---- refusals: files unchanged, exit 1
D="$T/ref"; mkdir -p "$D"
qemu-img create -q -f vmdk -o subformat=streamOptimized "$D/so.vmdk" 16M
qemu-img create -q -f vmdk -b so.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 2 0 1M'
record "$D/so.vmdk" "$D/top.vmdk"
"$V" commit "$D/top.vmdk" 2>"$D/err"; rc=$?
[ $rc -eq 1 ] && grep -q streamOptimized "$D/err" && pass "commit into a streamOptimized parent refused (exit 1): $(head -1 "$D/err")" ||
	fail "streamOptimized parent: rc=$rc $(cat "$D/err")"
unchanged "streamOptimized refusal: parent and top unchanged" "$D/so.vmdk" "$D/top.vmdk"
# An embedded descriptor with one reserved sector, nearly full:
qemu-img create -q -f vmdk "$D/small.vmdk" 16M
python3 - "$D/small.vmdk" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); f.seek(36); f.write(struct.pack('<Q', 1))
EOF
record "$D/small.vmdk"
"$V" rebase -u -b "$(printf 'dir/%.0s' $(seq 1 60))base.vmdk" "$D/small.vmdk" 2>"$D/err"; rc=$?
[ $rc -eq 1 ] && grep -q "does not fit" "$D/err" && pass "rebase -u of a descriptor that would overflow its sectors refused (exit 1)" ||
	fail "descriptor overflow: rc=$rc $(cat "$D/err")"
unchanged "overflow refusal: the image is unchanged" "$D/small.vmdk"

# ---- rebase -u: chains moved between folders
D="$T/mv"; mkdir -p "$D/old" "$D/new" "$D/snap"
qemu-img create -q -f vmdk "$D/old/base.vmdk" 16M
qio vmdk "$D/old/base.vmdk" -c 'write -P 1 0 4M'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/old/top.vmdk"
qio vmdk "$D/old/top.vmdk" -c 'write -P 2 2M 4M'
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b top.vmdk -F vmdk "$D/old/desc.vmdk"
qio vmdk "$D/old/desc.vmdk" -c 'write -P 3 5M 1M'
snap "$D/old/desc.vmdk" "$D/before.raw"
mv "$D/old/base.vmdk" "$D/new/"; mv "$D/old/top.vmdk" "$D/old"/desc*.vmdk "$D/snap/"
"$V" rebase -u -b ../new/base.vmdk "$D/snap/top.vmdk" && pass "rebase -u of a monolithicSparse delta (embedded descriptor, rewritten in its sectors)" ||
	fail "rebase -u monolithicSparse"
qemu-img info "$D/snap/top.vmdk" | grep -q '^backing file: \.\./new/base\.vmdk' && pass "qemu-img info shows the new backing name" ||
	fail "qemu-img info backing: $(qemu-img info "$D/snap/top.vmdk" | grep backing)"
same "$D/before.raw" "$D/snap/desc.vmdk" && pass "the moved chain (3 deep) reads as before (qemu-img)" || fail "moved chain: qemu-img content"
"$V" compare -q --allow-dir "$D/new" "$D/snap/desc.vmdk" "$D/before.raw" && pass "the moved chain reads as before (vdkit, --allow-dir for ../new)" ||
	fail "moved chain: vdkit content"
mkdir "$D/new2"; cp "$D/new/base.vmdk" "$D/new2/"
"$V" rebase -u -b ../new2/base.vmdk "$D/snap/top.vmdk"
"$V" rebase -u -b top.vmdk "$D/snap/desc.vmdk" && grep -q 'parentFileNameHint="top.vmdk"' "$D/snap/desc.vmdk" &&
	! ls "$D/snap" | grep -q vdkit && pass "rebase -u of a delta with a descriptor file (replaced by rename, no temporary left)" ||
	fail "rebase -u descriptor file"
rm -rf "$D/new"
same "$D/before.raw" "$D/snap/desc.vmdk" && pass "after a second move the chain still reads as before" || fail "second move"
qemu-img rebase -u -b ../new2/base.vmdk -F vmdk "$D/snap/top.vmdk" 2>"$D/err"
grep -q "not supported" "$D/err" && pass "qemu-img rebase -u cannot change a VMDK's parent (vdkit edits parentFileNameHint): $(head -1 "$D/err")" ||
	fail "qemu-img rebase -u on vmdk: $(cat "$D/err")"
cp "$D/snap/top.vmdk" "$D/lone.vmdk"
"$V" rebase -u -b "" "$D/lone.vmdk" && grep -aq 'parentCID=ffffffff' "$D/lone.vmdk" && ! grep -aq parentFileNameHint "$D/lone.vmdk" &&
	qemu-img info "$D/lone.vmdk" | grep -vq '^backing file' && pass "rebase -u -b \"\" makes a VMDK delta a base disk" ||
	fail "rebase -u -b '' on vmdk"

# The kept VMDK top of a commit: rebase -u onto the committed parent takes
# its CID, and the chain opens again with the same content.
D1="$T/d1"
"$V" rebase -u -b base.vmdk "$D1/top.vmdk" && same "$D1/before.raw" "$D1/top.vmdk" &&
	"$V" compare -q "$D1/top.vmdk" "$D1/before.raw" &&
	pass "after commit, rebase -u onto the committed parent: the kept top opens again (qemu-img, vdkit), same content" ||
	fail "rebase -u of the kept top"

# ---- safe rebase (no -u): IMAGE reads the same over a different backing file
D="$T/safe"; mkdir -p "$D"
qemu-img create -q -f vmdk "$D/base.vmdk" 32M
qio vmdk "$D/base.vmdk" -c 'write -P 1 0 8M' -c 'write -P 9 16M 1M'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/top.vmdk"
qio vmdk "$D/top.vmdk" -c 'write -P 2 1M 1M' -c 'write -z 20M 64k'
qemu-img create -q -f vmdk "$D/other.vmdk" 32M
qio vmdk "$D/other.vmdk" -c 'write -P 1 0 4M' -c 'write -P 5 24M 1M' -c 'write -P 6 20M 64k'
snap "$D/top.vmdk" "$D/before.raw"
cp "$D/top.vmdk" "$D/top0.vmdk"
s0=$(stat -c %s "$D/top.vmdk")
"$V" rebase -b other.vmdk "$D/top.vmdk" && same "$D/before.raw" "$D/top.vmdk" &&
	qemu-img info "$D/top.vmdk" | grep -q '^backing file: other.vmdk' && qemu-img check -q "$D/top.vmdk" >/dev/null &&
	pass "safe rebase of a VMDK delta onto another disk: same content, new backing name, check clean" ||
	fail "safe rebase vmdk"
# differing ranges: 4..8M (base data, other none), 16M (1M), 24M (1M) = 6 MiB
grown=$(( $(stat -c %s "$D/top.vmdk") - s0 ))
[ $grown -le $(( (6 << 20) + (64 << 10) )) ] && pass "safe rebase wrote only the differing grains ($((grown >> 10)) KiB for 6 MiB that differ)" ||
	fail "safe rebase grew the delta by $grown bytes"
cp "$D/top.vmdk" "$D/alone.vmdk"
"$V" rebase -b "" "$D/alone.vmdk" && same "$D/before.raw" "$D/alone.vmdk" && ! qemu-img info "$D/alone.vmdk" | grep -q '^backing file' &&
	pass "safe rebase -b \"\": the delta stands alone with the same content" || fail "safe rebase -b ''"
bad=0 killed=0
for i in 1 2 3 4; do
	cp "$D/top0.vmdk" "$D/k.vmdk"
	"$V" rebase -b other.vmdk "$D/k.vmdk" >/dev/null 2>&1 &
	pid=$!; sleep "0.0$((RANDOM % 10))"; kill -KILL $pid 2>/dev/null && killed=$((killed + 1)); wait $pid 2>/dev/null
	same "$D/before.raw" "$D/k.vmdk" || bad=$((bad + 1))
	"$V" rebase -q -b other.vmdk "$D/k.vmdk" >/dev/null 2>&1 || bad=$((bad + 1))
	same "$D/before.raw" "$D/k.vmdk" || bad=$((bad + 1))
done
[ $bad -eq 0 ] && pass "SIGKILL during safe rebases ($killed killed): the delta reads the same after each kill and the rerun" ||
	fail "safe rebase kills: $bad bad outcomes"
qemu-img create -q -f raw "$D/b.raw" 4M
qio raw "$D/b.raw" -c 'write -P 1 0 2M'
qemu-img create -q -f qcow2 -b b.raw -F raw "$D/q.qcow2"
qio qcow2 "$D/q.qcow2" -c 'write -P 2 512k 64k'
qemu-img create -q -f raw "$D/c.raw" 4M
qio raw "$D/c.raw" -c 'write -P 1 0 1M' -c 'write -P 3 3M 4k'
snap "$D/q.qcow2" "$D/qbefore.raw"
cp "$D/q.qcow2" "$D/qq.qcow2"
if out=$("$V" rebase -b c.raw -F raw "$D/q.qcow2" 2>&1); then
	(cd "$D" && qemu-img rebase -b c.raw -F raw qq.qcow2)
	same "$D/qbefore.raw" "$D/q.qcow2" qcow2 && qemu-img check -q "$D/q.qcow2" >/dev/null &&
		qemu-img compare -q "$D/q.qcow2" "$D/qq.qcow2" &&
		pass "safe rebase of a qcow2 overlay: same content, check clean, as qemu-img rebase" ||
		fail "safe rebase of a qcow2 overlay"
elif echo "$out" | grep -q "has a backing file"; then
	# The qcow2 updater writes only images that hold the whole disk, so a
	# safe rebase of an overlay is refused (README, known limits): cleanly.
	cmp -s "$D/q.qcow2" "$D/qq.qcow2" &&
		pass "safe rebase of a qcow2 overlay refused by the qcow2 updater, file unchanged" ||
		fail "refused safe rebase changed the qcow2"
else
	fail "safe rebase qcow2: $out"
fi

# qcow2: byte for byte what qemu-img rebase -u writes
D="$T/q2"; mkdir -p "$D/a" "$D/b"
qemu-img create -q -f raw "$D/a/base.raw" 8M
qio raw "$D/a/base.raw" -c 'write -P 1 0 1M'
qemu-img create -q -f qcow2 -b base.raw -F raw "$D/a/t.qcow2"
qio qcow2 "$D/a/t.qcow2" -c 'write -P 2 512k 1M'
snap "$D/a/t.qcow2" "$D/before.raw"
mv "$D/a/base.raw" "$D/b/"; cp "$D/a/t.qcow2" "$D/a/q.qcow2"
"$V" rebase -u -b ../b/base.raw -F raw "$D/a/t.qcow2"
qemu-img rebase -u -b ../b/base.raw -F raw "$D/a/q.qcow2"
cmp -s "$D/a/t.qcow2" "$D/a/q.qcow2" && pass "qcow2 rebase -u: the file is byte-identical to qemu-img rebase -u's" || fail "qcow2 rebase -u differs from qemu's"
same "$D/before.raw" "$D/a/t.qcow2" qcow2 && check "qcow2 rebase -u: qemu-img check clean" qemu-img check -q "$D/a/t.qcow2" ||
	fail "qcow2 moved chain content"
"$V" rebase -u -b "" "$D/a/t.qcow2"; qemu-img rebase -u -b "" "$D/a/q.qcow2"
cmp -s "$D/a/t.qcow2" "$D/a/q.qcow2" && pass "qcow2 rebase -u -b \"\": byte-identical to qemu-img's" || fail "qcow2 -b '' differs"
"$V" rebase -u -b x.raw "$D/a/t.qcow2" 2>"$D/err"; rc=$?
[ $rc -eq 1 ] && grep -q "backing format must be specified" "$D/err" && pass "qcow2 rebase -u without -F refused, as qemu-img 7.2 does" ||
	fail "qcow2 rebase -u without -F: rc=$rc"
finish
