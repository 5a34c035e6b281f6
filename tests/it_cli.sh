#!/usr/bin/env bash
# The command line as qemu-img's users expect it: help for every verb, man
# pages that agree with it, create/resize/measure against qemu-img, targets
# (symlinks, replaced files, -n), exit codes, JSON progress, hints.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img not installed (apt-get install qemu-utils)"; finish; }
V2V="$TOP/bin/vmdk2vhdx"
squeeze() { tr -s ' \t' ' ' | sed 's/^ //; s/ $//'; }

# --- version and help ----------------------------------------------------
ver=$("$VDKIT" --version)
[[ "$ver" =~ ^vdkit\ version\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && pass "vdkit --version: $ver" ||
	fail "vdkit --version said '$ver'"
[[ "$("$V2V" --version)" =~ ^vmdk2vhdx\ version\ [0-9]+\.[0-9]+\.[0-9]+$ ]] &&
	pass "vmdk2vhdx --version" || fail "vmdk2vhdx --version"
"$VDKIT" --help >"$T/all" && pass "vdkit --help exits 0" || fail "vdkit --help"
for v in info check convert create resize measure commit rebase compare map ova; do
	grep -q "^  vdkit $v " "$T/all" || fail "vdkit --help does not list $v"
	if ! "$VDKIT" $v --help >"$T/h.$v"; then
		fail "vdkit $v --help exit status"
		continue
	fi
	"$VDKIT" help $v | cmp -s - "$T/h.$v" || fail "vdkit help $v differs from $v --help"
	# Every option the synopsis shows is explained under options:.
	syn=$(sed -n '/^usage:/,/^[^ u]/p' "$T/h.$v" | sed '$d')
	opts=$(sed -n '/^options:/,$p' "$T/h.$v")
	missing=""
	for o in $(grep -oE '(^|[ [|])--?[A-Za-z][-A-Za-z0-9]*' <<<"$syn" | sed 's/^[ [|]//' | sort -u); do
		grep -qE "(^|[ ,|])$o([ =,|]|$)" <<<"$opts" || missing="$missing $o"
	done
	[ -z "$missing" ] && pass "vdkit $v --help exits 0 and explains every option" ||
		fail "vdkit $v --help does not explain:$missing"
done
"$V2V" --help >"$T/h.v2v" && grep -q -- "--block-size" "$T/h.v2v" && pass "vmdk2vhdx --help" ||
	fail "vmdk2vhdx --help"

# --- man pages -----------------------------------------------------------
if have man; then
	for page in vdkit vmdk2vhdx; do
		LC_ALL=C MANWIDTH=250 man -l "$TOP/man/$page.1" >"$T/man.$page" 2>"$T/man.err" &&
			[ ! -s "$T/man.err" ] && pass "man/$page.1 renders with man -l" ||
			fail "man/$page.1: $(head -3 "$T/man.err")"
		sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' "$T/man.$page" | squeeze >"$T/syn.$page"
	done
	bad=""
	for v in info check convert create resize measure commit rebase compare map ova help; do
		while IFS= read -r line; do
			l=$(squeeze <<<"${line#usage: }")
			grep -qxF -- "$l" "$T/syn.vdkit" || bad="$bad [$v: $l]"
		done < <(sed -n '/^usage:/,/^[^ u]/p' "$T/h.$v" 2>/dev/null | sed '$d')
	done
	"$VDKIT" help help | sed -n '1p' | sed 's/^usage: //' | squeeze | grep -qxFf - "$T/syn.vdkit" ||
		bad="$bad [help]"
	while IFS= read -r line; do
		l=$(squeeze <<<"${line#usage: }")
		grep -qxF -- "$l" "$T/syn.vmdk2vhdx" || bad="$bad [vmdk2vhdx: $l]"
	done < <(sed -n '/^usage:/,/^[^ u]/p' "$T/h.v2v" | sed '$d')
	[ -z "$bad" ] && pass "man page synopses are the --help synopses, line for line" ||
		fail "man synopsis differs:$bad"
else
	skip "man not installed"
fi

# --- -o help and unknown values -------------------------------------------
"$VDKIT" convert -O qcow2 -o help >"$T/oh" &&
	grep -q "cluster_size.*size" "$T/oh" && grep -q "default: 64K" "$T/oh" &&
	pass "convert -O qcow2 -o help lists options with defaults" || fail "-o help"
"$VDKIT" create -f raw -o help | grep -q "allowed: off, falloc, full" &&
	pass "create -f raw -o help lists allowed values" || fail "create -o help"
"$VDKIT" convert -O vdi a b 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown output format 'vdi' (valid: raw, vmdk, vhdx, vpc, qcow2)" "$T/err" &&
	pass "unknown output format lists the valid ones (exit 2)" || fail "unknown format: rc=$rc $(cat "$T/err")"
"$VDKIT" convert -t bogus a b 2>"$T/err"; [ $? -eq 2 ] && grep -q "writeback, none" "$T/err" &&
	pass "unknown cache mode lists the valid ones" || fail "bad -t"

# --- create ----------------------------------------------------------------
qemu-img create -q -f raw "$T/zero.raw" 100M
for f in raw qcow2 vhdx vpc vmdk; do
	if "$VDKIT" create -q -f $f "$T/c.$f" 100M &&
		qemu-img compare -q -f raw -F $f "$T/zero.raw" "$T/c.$f" 2>/dev/null &&
		[ "$(qemu-img info -f $f --output=json "$T/c.$f" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -1)" -ge $((100 << 20)) ]; then
		pass "create -f $f: qemu-img reads an all-zero disk of 100 MiB"
	else
		fail "create -f $f"
	fi
done
"$VDKIT" create -q -f qcow2 -b c.raw -F raw "$T/ov.qcow2" 100M &&
	qemu-img info --output=json "$T/ov.qcow2" >"$T/ov.json" &&
	grep -q '"backing-filename": "c.raw"' "$T/ov.json" &&
	grep -q '"backing-filename-format": "raw"' "$T/ov.json" &&
	qemu-img check -q "$T/ov.qcow2" && pass "create -f qcow2 -b -F: qemu-img sees the backing file" ||
	fail "create -b: $(cat "$T/ov.json")"
"$VDKIT" create -f vhdx -b c.raw "$T/x.vhdx" 10M 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "qcow2 only" "$T/err" && [ ! -e "$T/x.vhdx" ] &&
	pass "create -b for vhdx is refused clearly" || fail "create -b vhdx: rc=$rc"

# --- info on an overlay whose backing file has not arrived ---------------
"$VDKIT" create -q -f qcow2 -b later.raw -F raw "$T/early.qcow2" 64M
"$VDKIT" info --output=json "$T/early.qcow2" >"$T/early.json"; rc=$?
[ $rc -eq 0 ] && grep -q '"backing-filename": "later.raw"' "$T/early.json" &&
	grep -q "\"full-backing-filename\": \"$T/later.raw\"" "$T/early.json" &&
	pass "info answers without the backing file (backing-filename, full-backing-filename)" ||
	fail "info overlay: rc=$rc $(cat "$T/early.json")"
"$VDKIT" info -U --backing-chain --output=json "$T/ov.qcow2" >"$T/chain.json" &&
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [x["format"] for x in d]==["qcow2","raw"]' "$T/chain.json" &&
	pass "info --backing-chain: a JSON array, top first" || fail "info --backing-chain"

# --- resize -------------------------------------------------------------
cp "$T/c.raw" "$T/r.raw"
"$VDKIT" resize -q -f raw "$T/r.raw" +28M && [ "$(stat -c %s "$T/r.raw")" -eq $((128 << 20)) ] &&
	pass "resize raw +28M" || fail "resize raw grow"
"$VDKIT" resize -q -f raw "$T/r.raw" -- -64M 2>/dev/null; rc=$?
[ $rc -eq 2 ] && [ "$(stat -c %s "$T/r.raw")" -eq $((128 << 20)) ] &&
	pass "resize raw smaller without --shrink is refused" || fail "resize shrink refused: rc=$rc"
"$VDKIT" resize -q --shrink -f raw "$T/r.raw" -64M && [ "$(stat -c %s "$T/r.raw")" -eq $((64 << 20)) ] &&
	pass "resize --shrink raw -64M" || fail "resize --shrink raw"
gen_raw "$T/data.raw" $((32 << 20)) 5
qemu-img convert -f raw -O qcow2 "$T/data.raw" "$T/r.qcow2"
"$VDKIT" resize -q "$T/r.qcow2" 2G && qemu-img check -q "$T/r.qcow2" &&
	[ "$(qemu-img info --output=json "$T/r.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" -eq $((2 << 30)) ] &&
	qemu-img compare -q -f raw -F qcow2 "$T/data.raw" "$T/r.qcow2" &&
	pass "resize qcow2 to 2G: qemu-img check clean, content kept" || fail "resize qcow2 grow"
"$VDKIT" resize -q --shrink "$T/r.qcow2" 16M 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "mapped past the new end" "$T/err" && pass "resize qcow2: shrinking over data refused" ||
	fail "qcow2 shrink over data: rc=$rc"
"$VDKIT" resize -q --shrink "$T/r.qcow2" 32M && qemu-img check -q "$T/r.qcow2" &&
	qemu-img compare -q -f raw -F qcow2 "$T/data.raw" "$T/r.qcow2" && pass "resize --shrink qcow2 back to 32M" ||
	fail "qcow2 shrink"
"$VDKIT" resize "$T/c.vhdx" 1G 2>"$T/err"; [ $? -ne 0 ] && grep -q "not supported" "$T/err" &&
	pass "resize vhdx refused with a reason" || fail "resize vhdx"

# --- measure --------------------------------------------------------------
jv() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1"; }
mcmp() { # DESC VDKIT-ARGS... -- QEMU-ARGS...
	local d=$1; shift; local va=() qa=()
	while [ "$1" != "--" ]; do va+=("$1"); shift; done; shift; qa=("$@")
	"$VDKIT" measure --output=json "${va[@]}" >"$T/mv" && qemu-img measure --output=json "${qa[@]}" >"$T/mq" || {
		fail "measure $d: failed"; return; }
	local vf vr qf qr; vf=$(jv "$T/mv" fully-allocated); vr=$(jv "$T/mv" required)
	qf=$(jv "$T/mq" fully-allocated); qr=$(jv "$T/mq" required)
	local diff=$((vr > qr ? vr - qr : qr - vr))
	[ "$vf" = "$qf" ] && [ $diff -le 65536 ] && pass "measure $d: fully-allocated $vf equal, required $vr vs $qr" ||
		fail "measure $d: vdkit $vr/$vf, qemu-img $qr/$qf"
}
mcmp "-O raw IMAGE" -O raw -f raw "$T/data.raw" -- -O raw -f raw "$T/data.raw"
mcmp "-O qcow2 IMAGE(raw)" -O qcow2 -f raw "$T/data.raw" -- -O qcow2 -f raw "$T/data.raw"
mcmp "-O qcow2 IMAGE(qcow2)" -O qcow2 "$T/r.qcow2" -- -O qcow2 "$T/r.qcow2"
mcmp "-O qcow2 --size 100G" -O qcow2 --size 100G -- -O qcow2 --size 100G
mcmp "-O qcow2 -o cluster_size=1M --size 10G" -O qcow2 -o cluster_size=1M --size 10G -- -O qcow2 -o cluster_size=1M --size 10G
mcmp "-O raw --size 10G" -O raw --size 10G -- -O raw --size 10G
for f in vhdx vpc vmdk; do
	"$VDKIT" measure --output=json -O $f -f raw "$T/data.raw" >"$T/mv"
	"$VDKIT" convert -q -f raw -O $f "$T/data.raw" "$T/m.$f"
	req=$(jv "$T/mv" required); got=$(stat -c %s "$T/m.$f")
	[ -n "$req" ] && [ "$req" -ge "$got" ] && [ $((req * 100)) -le $((got * 105)) ] &&
		pass "measure -O $f: required $req >= written $got, within 5%" ||
		fail "measure -O $f: required $req, written $got"
done

# --- targets ----------------------------------------------------------------
mkdir -p "$T/real"
printf 'old' >"$T/real/disk.img"
chmod 640 "$T/real/disk.img"
[ "$(id -u)" = 0 ] && chown 1234:4321 "$T/real/disk.img"
ln -s real/disk.img "$T/link.img"
"$VDKIT" convert -q -f raw -O raw "$T/data.raw" "$T/link.img" &&
	[ -L "$T/link.img" ] && cmp -s "$T/data.raw" "$T/real/disk.img" &&
	[ -z "$(ls -A "$T" | grep vdkit-)" ] && [ -z "$(ls -A "$T/real" | grep vdkit-)" ] &&
	pass "symlink destination: the link stays, the file it points at is written" ||
	fail "symlink destination"
[ "$(stat -c %a "$T/real/disk.img")" = 640 ] && pass "replaced file keeps its mode (640)" ||
	fail "mode now $(stat -c %a "$T/real/disk.img")"
if [ "$(id -u)" = 0 ]; then
	[ "$(stat -c %u:%g "$T/real/disk.img")" = 1234:4321 ] && pass "replaced file keeps owner and group" ||
		fail "owner now $(stat -c %u:%g "$T/real/disk.img")"
else
	skip "owner/group kept: needs root to chown"
fi
head -c $((40 << 20)) /dev/urandom >"$T/ex.raw"
ino=$(stat -c %i "$T/ex.raw")
"$VDKIT" convert -q -n -f raw -O raw "$T/data.raw" "$T/ex.raw" &&
	[ "$(stat -c %i "$T/ex.raw")" = "$ino" ] && [ "$(stat -c %s "$T/ex.raw")" -eq $((40 << 20)) ] &&
	cmp -s -n $((32 << 20)) "$T/data.raw" "$T/ex.raw" &&
	pass "-n: written in place (same inode, larger size kept, holes zeroed)" || fail "-n"
"$VDKIT" convert -q -n -f raw -O raw "$T/data.raw" "$T/nothere.raw" 2>/dev/null
[ $? -eq 2 ] && [ ! -e "$T/nothere.raw" ] && pass "-n with a missing target is refused" || fail "-n missing"
"$VDKIT" convert -q --verify -f raw -O raw "$T/data.raw" - >/dev/null 2>"$T/err"
[ $? -eq 2 ] && grep -q "cannot verify" "$T/err" && pass "--verify with DST - says it cannot verify" ||
	fail "--verify -: $(cat "$T/err")"
"$VDKIT" convert -q -S 0 -f raw -O raw "$T/data.raw" "$T/full.raw" && cmp -s "$T/data.raw" "$T/full.raw" &&
	[ $(($(stat -c %b "$T/full.raw") * 512)) -ge $((32 << 20)) ] &&
	pass "-S 0: fully allocated output" || fail "-S 0: $(du -k "$T/full.raw")"
"$VDKIT" convert -q -o preallocation=falloc -t unsafe -m 2 -W -U -T none -f raw -O raw "$T/data.raw" "$T/fa.raw" &&
	cmp -s "$T/data.raw" "$T/fa.raw" && [ $(($(stat -c %b "$T/fa.raw") * 512)) -ge $((32 << 20)) ] &&
	pass "-o preallocation=falloc with -t unsafe -m 2 -W -U -T none" || fail "falloc"

for p in falloc full; do
	"$VDKIT" convert -q -o preallocation=$p -f raw -O qcow2 "$T/data.raw" "$T/pre.qcow2" &&
		qemu-img check -q "$T/pre.qcow2" && qemu-img compare -q -f raw -F qcow2 "$T/data.raw" "$T/pre.qcow2" &&
		[ $(($(stat -c %b "$T/pre.qcow2") * 512)) -ge $((32 << 20)) ] &&
		pass "qcow2 -o preallocation=$p: qemu-img check clean, every cluster allocated" || fail "qcow2 prealloc $p"
done

# --- compare's exit codes ---------------------------------------------------
"$VDKIT" compare -q -f raw "$T/data.raw" "$T/r.qcow2"; rc=$?
[ $rc -eq 0 ] && pass "compare -f raw A B.qcow2: -f is the first image's only (exit 0)" || fail "compare -f: $rc"
"$VDKIT" compare -q "$T/data.raw" "$T/zero.raw"; rc=$?
[ $rc -eq 1 ] && pass "compare: different -> 1" || fail "compare different: $rc"
"$VDKIT" compare -q "$T/data.raw" "$T/absent.raw" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && pass "compare: cannot open -> 2" || fail "compare open failure: $rc"

# --- --progress=json: the stream is JSON to its end --------------------------
"$VDKIT" convert --progress=json -f raw -O qcow2 "$T/data.raw" "$T/p.qcow2" 2>"$T/pj" >/dev/null &&
	python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert l[-1]["result"]=="ok" and l[-2]["percent"]==100' "$T/pj" &&
	pass "--progress=json: every stderr line is JSON, the last one the result" || fail "progress json: $(tail -2 "$T/pj")"

# --- hints --------------------------------------------------------------------
mkdir -p "$T/ova"
(cd "$T/ova" && qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/data.raw" d.vmdk &&
	"$VDKIT" ova pack --name vm vm.ova d.vmdk >/dev/null 2>&1)
if [ -f "$T/ova/vm.ova" ]; then
	"$VDKIT" convert -O qcow2 "$T/ova/vm.ova" "$T/ova.qcow2" 2>"$T/err"; rc=$?
	[ $rc -eq 1 ] && grep -q "this is an OVA package: use \`vdkit ova unpack\`" "$T/err" && [ ! -e "$T/ova.qcow2" ] &&
		pass "converting an OVA without -f raw is refused with the hint" || fail "OVA hint: rc=$rc $(cat "$T/err")"
	"$VDKIT" info "$T/ova/vm.ova" 2>&1 >/dev/null | grep -q "OVA package" && pass "info on an OVA gives the hint" ||
		fail "info OVA hint"
	"$VDKIT" convert -q -f raw -O raw "$T/ova/vm.ova" "$T/ova.raw" && cmp -s "$T/ova/vm.ova" "$T/ova.raw" &&
		pass "-f raw copies the OVA byte for byte" || fail "-f raw OVA"
	mkdir -p "$T/unp"
	"$VDKIT" ova unpack -O vpc "$T/ova/vm.ova" "$T/unp" >/dev/null 2>&1 && ls "$T/unp"/*.vhd >/dev/null 2>&1 &&
		! ls "$T/unp"/*.vpc >/dev/null 2>&1 &&
		pass "ova unpack -O vpc names the disk .vhd" || fail "unpack -O vpc: $(ls "$T/unp")"
else
	skip "ova pack did not make a package"
fi
qemu-img convert -f raw -O vpc -o subformat=fixed "$T/data.raw" "$T/fixed.vhd"
"$VDKIT" convert -O raw "$T/fixed.vhd" "$T/fx.raw" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "fixed VHD" "$T/err" && pass "a footer-only VHD without -f gets the hint" ||
	fail "fixed VHD hint: rc=$rc $(cat "$T/err")"
"$V2V" -q "$T/x.vmdk" "$T/x.img" 2>"$T/err"
grep -q "does not end in .vhdx" "$T/err" && pass "vmdk2vhdx warns when DST is not .vhdx" || fail "v2v warning"

# --- 7-Zip reads vdkit's VHDX (a partial last block included) -----------------
if have 7zz; then
	head -c $((33 << 20)) /dev/urandom >"$T/odd.raw"
	for sub in dynamic fixed; do
		"$VDKIT" convert -q -f raw -O vhdx -o subformat=$sub "$T/odd.raw" "$T/odd.$sub.vhdx"
		out=$(7zz l "$T/odd.$sub.vhdx" 2>&1); rc=$?
		[ $rc -eq 0 ] && ! grep -qi warning <<<"$out" && pass "7zz l reads the $sub VHDX without warnings" ||
			fail "7zz $sub: rc=$rc $(grep -i -A2 warning <<<"$out" | head -3)"
	done
else
	skip "7zz not installed"
fi
finish
