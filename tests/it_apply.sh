#!/usr/bin/env bash
# Warm migration by snapshot deltas (issue 12 item 3): a 256 MiB base VMDK
# converted with --warm to raw, qcow2, vhdx and vpc; two snapshot deltas in
# a row (10% then 1% of the disk changed) applied in place; TARGET then
# reads as qemu-img reads the whole chain, and qemu-img check is clean.
# Three chains cover the three delta kinds in both positions: seSparse ->
# hosted sparse, hosted sparse -> vmfsSparse (COWD), COWD -> seSparse.
# The second apply writes no more guest data than the delta stores (qemu-img
# map of the delta alone is the oracle). SIGKILL at 20 random points of an
# apply, then a rerun: TARGET exact and clean every time (raw, qcow2).
# Refusals (exit 1, TARGET unchanged): wrong parent, TARGET modified after
# its record, a delta of another size, a base that is no delta, a qcow2
# overlay, an internal snapshot in the target.
source "$(dirname "$0")/lib.sh"

have qemu-img && have qemu-io || { skip "qemu-img/qemu-io not installed"; finish; }
have python3 || { skip "python3 not installed (reads qemu-img map's JSON)"; finish; }
GEN="$TOP/bin/vdk-gen-delta"
SIZE=$((256 << 20))
SECT=$((SIZE / 512))
GRAINS=$((SIZE / 4096))
C="$T/chain"
mkdir "$C"
"$TOP/bin/vdk-gen" -d 60 "$T/base.raw" $SIZE 7
qemu-img convert -f raw -O vmdk "$T/base.raw" "$C/base.vmdk"
rm -f "$T/base.raw"

# pattern PCT SEED: one character per 4 KiB grain, PCT% data, a few zero
# grains (the ZERO path of every updater).
pattern() {
	python3 -c "
import random
r = random.Random($2)
print(''.join('D' if r.random() < $1 / 100 else 'Z' if r.random() < 0.003 else '.' for _ in range($GRAINS)))"
}
# hosted CHILD PARENT PCT SEED: a qemu-img hosted sparse child written by
# qemu-io (64 KiB writes at random grains, a few write -z).
hosted() {
	qemu-img create -q -f vmdk -b "$2" -F vmdk "$C/$1" || return 1
	python3 -c "
import random
r = random.Random($4)
n = int($SIZE * $3 / 100 / 65536)
for i in range(n):
    off = r.randrange($SIZE // 65536) * 65536
    print('write -z %d 65536' % off if i % 17 == 0 else 'write -P %d %d 65536' % (i % 251 + 1, off))
" | sed 's/^/-c\n/' | tr '\n' '\0' | xargs -0 qemu-io -f vmdk "$C/$1" >/dev/null
}
# sesparse|cowd CHILD PARENT PCT SEED
gen_delta() {
	(cd "$C" && "$GEN" -t "$1" -p "$3" -s "$5" -g "$(pattern "$4" "$5")" "$2" $SECT)
}

gen_delta sesparse a1.vmdk base.vmdk 10 11 && hosted a2.vmdk a1.vmdk 1 12 &&
	hosted b1.vmdk base.vmdk 10 21 && gen_delta cowd b2.vmdk b1.vmdk 1 22 &&
	gen_delta cowd c1.vmdk base.vmdk 10 31 && gen_delta sesparse c2.vmdk c1.vmdk 1 32 ||
	{ fail "cannot make the delta chains"; finish; }
grep -q 'createType="seSparse"' "$C/a1.vmdk" && grep -q 'createType="vmfsSparse"' "$C/b2.vmdk" &&
	grep -aq 'parentCID' "$C/a2.vmdk" && pass "chains made: seSparse, hosted sparse and COWD deltas" ||
	fail "the chains are not of the intended kinds"
for ch in a b c; do
	qemu-img convert -O raw "$C/${ch}2.vmdk" "$T/exp-$ch.raw" || fail "qemu-img cannot read chain $ch"
done

# allocated DELTA: bytes the delta itself stores, as qemu-img maps it
allocated() {
	qemu-img map --output=json "$1" | python3 -c "
import json, sys
print(sum(e['length'] for e in json.load(sys.stdin) if e['depth'] == 0 and e.get('present', True)))"
}
# jget FILE KEY: a number from apply's --output=json
jget() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# qcheck FMT FILE: qemu-img check is clean (vpc: qemu has no checker)
qcheck() {
	[ "$1" = raw ] && return 0
	qemu-img check -f "$1" "$2" >"$T/qc" 2>&1
	local rc=$?
	[ $rc = 63 ] && return 0 # "This image format does not support checks"
	[ $rc = 0 ] && ! grep -q "leaked" "$T/qc"
}

updatable() { # FMT: the target format has an updater on this branch
	"$VDKIT" convert -q --warm -O "$1" "$C/base.vmdk" "$T/probe.$1" 2>"$T/perr"
	local rc=$?
	rm -f "$T/probe.$1" "$T/probe.$1.vdkit-warm"
	[ $rc = 0 ]
}

# --- the warm recipe ---------------------------------------------------------
t0=$SECONDS
for FMT in raw qcow2 vhdx vpc; do
	if ! updatable $FMT; then
		skip "$FMT: no updater on this branch ($(cat "$T/perr"))"
		continue
	fi
	for ch in a b c; do
		D="$FMT chain $ch"
		TG="$T/target.$FMT"
		rm -f "$TG" "$TG.vdkit-warm"
		"$VDKIT" convert -q --warm -O $FMT "$C/base.vmdk" "$TG" ||
			{ fail "$D: convert --warm"; continue; }
		"$VDKIT" apply -q "$C/${ch}1.vmdk" "$TG" 2>"$T/err" ||
			{ fail "$D: apply delta 1: $(cat "$T/err")"; continue; }
		"$VDKIT" apply --output=json "$C/${ch}2.vmdk" "$TG" >"$T/a2.json" 2>"$T/err" ||
			{ fail "$D: apply delta 2: $(cat "$T/err")"; continue; }
		qemu-img compare -q -f raw -F $FMT "$T/exp-$ch.raw" "$TG" &&
			pass "$D: TARGET reads as qemu-img reads the whole chain" ||
			fail "$D: TARGET differs from the chain"
		qcheck $FMT "$TG" && pass "$D: qemu-img check clean" || fail "$D: qemu-img check: $(cat "$T/qc")"
		alloc=$(allocated "$C/${ch}2.vmdk")
		data=$(jget "$T/a2.json" data-bytes)
		meta=$(jget "$T/a2.json" metadata-bytes)
		echo "# $D: delta 2 stores $alloc bytes; apply wrote $data data + $meta metadata bytes"
		[ "$data" -le "$alloc" ] && [ "$meta" -le "$alloc" ] &&
			pass "$D: delta 2 wrote no more than its allocated grains plus metadata" ||
			fail "$D: delta 2 wrote $data + $meta bytes for $alloc allocated"
	done
done

echo "# the warm recipe took $((SECONDS - t0)) s"
# --- a small chain for the refusals and the kill test (fast to copy) ------
SIZE=$((32 << 20))
SECT=$((SIZE / 512))
GRAINS=$((SIZE / 4096))
C="$T/small"
mkdir "$C"
"$TOP/bin/vdk-gen" -d 60 "$T/base.raw" $SIZE 8
qemu-img convert -f raw -O vmdk "$T/base.raw" "$C/base.vmdk"
rm -f "$T/base.raw"
gen_delta sesparse a1.vmdk base.vmdk 10 41 && hosted a2.vmdk a1.vmdk 1 42 &&
	gen_delta cowd c1.vmdk base.vmdk 10 43 && gen_delta sesparse k1.vmdk base.vmdk 60 44 ||
	{ fail "cannot make the small chain"; finish; }

# --- qcow2 layouts the updater must handle ----------------------------------
# Compressed clusters (replaced, their space released), 512-byte clusters
# (refcount blocks allocated as the file grows), v2 (no zero flag), and
# targets qemu-img wrote (8- and 64-bit refcounts), the record made by
# vdkit and the target replaced (--force: only its mtime moved).
qemu-img convert -O raw "$C/a2.vmdk" "$T/exp-sa.raw"
layout() {
	local d=$1 force=$2
	"$VDKIT" apply -q $force "$C/a1.vmdk" "$T/l.qcow2" 2>"$T/err" &&
		"$VDKIT" apply -q "$C/a2.vmdk" "$T/l.qcow2" 2>"$T/err" &&
		qemu-img compare -q -f raw -F qcow2 "$T/exp-sa.raw" "$T/l.qcow2" && qcheck qcow2 "$T/l.qcow2" &&
		pass "qcow2 $d: two deltas applied, exact and clean" ||
		fail "qcow2 $d: $(cat "$T/err" "$T/qc" 2>/dev/null | head -3)"
	rm -f "$T/l.qcow2" "$T/l.qcow2.vdkit-warm"
}
for o in "-c" "-o cluster_size=512" "-o compat=0.10" "-o cluster_size=2M"; do
	"$VDKIT" convert -q --warm -O qcow2 $o "$C/base.vmdk" "$T/l.qcow2" && layout "($o)" ""
done
for o in refcount_bits=8 refcount_bits=64,cluster_size=4096; do
	"$VDKIT" convert -q --warm -O qcow2 "$C/base.vmdk" "$T/l.qcow2" &&
		qemu-img convert -f vmdk -O qcow2 -o $o "$C/base.vmdk" "$T/l.qcow2" &&
		layout "(qemu-img -o $o)" --force
done

# --- refusals ----------------------------------------------------------------
# refused DESC TARGET CMD...: exit 1 and TARGET byte-identical
refused() {
	local d=$1 tg=$2
	shift 2
	local before
	before=$(sha "$tg")
	"$@" >"$T/out" 2>"$T/err"
	local rc=$?
	[ $rc = 1 ] && [ "$(sha "$tg")" = "$before" ] && pass "$d: refused ($(head -c 160 "$T/err"))" ||
		fail "$d: exit $rc, $(cat "$T/err")"
}
for FMT in raw qcow2; do
	TG="$T/ref.$FMT"
	rm -f "$TG" "$TG.vdkit-warm"
	"$VDKIT" convert -q --warm -O $FMT "$C/base.vmdk" "$TG" && "$VDKIT" apply -q "$C/a1.vmdk" "$TG" ||
		{ fail "$FMT: refusal setup: $(cat "$T/err" 2>/dev/null)"; continue; }
	refused "$FMT: a delta whose parent is the base, not the applied delta" "$TG" \
		"$VDKIT" apply "$C/c1.vmdk" "$TG"
	pcid=$(sed -n 's/^parentCID=//p' "$C/c1.vmdk")
	tcid=$(sed -n 's/^CID=//p' "$C/a1.vmdk")
	grep -q "$pcid" "$T/err" && grep -q "$tcid" "$T/err" && pass "$FMT: the message names both CIDs" ||
		fail "$FMT: message lacks the CIDs $pcid/$tcid: $(cat "$T/err")"
	refused "$FMT: the base itself (no parentCID)" "$TG" "$VDKIT" apply "$C/base.vmdk" "$TG"
	(cd "$C" && "$GEN" -t sesparse -p a1.vmdk -s 5 small.vmdk $((SECT / 2)))
	refused "$FMT: a delta of another virtual size" "$TG" "$VDKIT" apply "$C/small.vmdk" "$TG"
	qemu-img create -q -f qcow2 -b a1.vmdk -F vmdk "$C/ov.qcow2"
	refused "$FMT: a qcow2 overlay (not a VMDK delta)" "$TG" "$VDKIT" apply "$C/ov.qcow2" "$TG"
	"$VDKIT" apply -q "$C/a2.vmdk" "$TG" && pass "$FMT: the right delta still applies" ||
		fail "$FMT: a2 after the refusals: $(cat "$T/err")"
	"$VDKIT" apply "$C/a2.vmdk" "$TG" 2>"$T/err" && grep -q "already applied" "$T/err" &&
		pass "$FMT: applying it again writes nothing (already applied)" || fail "$FMT: reapply: $(cat "$T/err")"
	# A target booted (written) after its record: refused, even for the
	# right delta.
	rm -f "$TG" "$TG.vdkit-warm"
	"$VDKIT" convert -q --warm -O $FMT "$C/base.vmdk" "$TG"
	printf 'booted' | dd of="$TG" bs=1 seek=$((1 << 20)) conv=notrunc status=none
	refused "$FMT: TARGET written after its record" "$TG" "$VDKIT" apply "$C/a1.vmdk" "$TG"
done
refused "convert --warm of a raw source (no CID)" "$C/base.vmdk" \
	"$VDKIT" convert --warm -f raw -O raw "$T/exp-a.raw" "$T/nowarm.raw"
[ ! -e "$T/nowarm.raw" ] && [ ! -e "$T/nowarm.raw.vdkit-warm" ] && pass "... and nothing was left" ||
	fail "convert --warm of raw left an output"
TG="$T/snap.qcow2"
"$VDKIT" convert -q --warm -O qcow2 "$C/base.vmdk" "$TG" && qemu-img snapshot -c s1 "$TG"
refused "qcow2 target with an internal snapshot" "$TG" "$VDKIT" apply --force "$C/a1.vmdk" "$TG"

# --- SIGKILL at 20 random points, then a rerun ----------------------------------
# The kill target: qcow2 with 4 KiB clusters, so an apply allocates data
# clusters, L2 tables and refcount blocks (every ordering step is crossed).
for FMT in raw qcow2; do
	K="$T/kill.$FMT"
	opts=
	[ $FMT = qcow2 ] && opts="-o cluster_size=4096"
	"$VDKIT" convert -q --warm -O $FMT $opts "$C/base.vmdk" "$K.orig" || { fail "$FMT: kill setup"; continue; }
	cp -p "$K.orig.vdkit-warm" "$K.vdkit-warm.orig"
	cp -p --sparse=always "$K.orig" "$K" && cp -p "$K.vdkit-warm.orig" "$K.vdkit-warm"
	start=$(date +%s%N)
	"$VDKIT" apply -q "$C/k1.vmdk" "$K"
	ms=$((($(date +%s%N) - start) / 1000000))
	qemu-img convert -O raw "$C/k1.vmdk" "$T/exp-k1.raw"
	ok=0 mid=0
	for i in $(seq 1 20); do
		cp -p --sparse=always "$K.orig" "$K" && cp -p "$K.vdkit-warm.orig" "$K.vdkit-warm"
		delay=$(python3 -c "import random; print(random.Random($i * 7919).uniform(0, $ms / 1000))")
		"$VDKIT" apply -q "$C/k1.vmdk" "$K" 2>/dev/null &
		pid=$!
		sleep "$delay"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		grep -q pending-cid "$K.vdkit-warm" && mid=$((mid + 1))
		"$VDKIT" apply -q "$C/k1.vmdk" "$K" 2>"$T/err" &&
			qemu-img compare -q -f raw -F $FMT "$T/exp-k1.raw" "$K" && qcheck $FMT "$K" &&
			ok=$((ok + 1)) || echo "# kill $i after ${delay}s: $(cat "$T/err" "$T/qc" 2>/dev/null | head -3)"
	done
	echo "# $FMT: one apply takes ~${ms} ms; $mid of 20 kills hit it mid-way"
	[ $ok = 20 ] && [ $mid -ge 1 ] &&
		pass "$FMT: SIGKILL at 20 points then a rerun: exact and clean every time ($mid mid-apply)" ||
		fail "$FMT: $ok of 20 reruns exact, $mid kills mid-apply"
done
finish
