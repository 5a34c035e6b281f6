#!/usr/bin/env bash
# The nbdkit plugin against its oracles: what `nbdkit vdkit` serves, read
# by qemu-img and nbdcopy over a unix socket, equals vdkit's own reading
# (and qemu-img's, where qemu can read the file) for a VHDX with a dirty
# log, a VMDK snapshot chain, a qcow2 with a backing file and a disk inside
# an OVA; `nbdinfo --map` equals `vdkit map`; writes are refused; a VMDK
# whose extent lies outside its folder is refused at startup unless
# allow-dir= names that folder.
source "$(dirname "$0")/lib.sh"
PLUGIN="$TOP/bin/nbdkit-vdkit-plugin.so"
MiB=1048576

for t in nbdkit nbdinfo qemu-img qemu-io python3; do
	have $t || { skip "$t not installed: nbdkit plugin tests"; finish; }
done
[ -f "$PLUGIN" ] || { skip "bin/nbdkit-vdkit-plugin.so not built (no nbdkit-plugin-dev)"; finish; }

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

# serve NAME ARGS...: start nbdkit on a socket in $T; sets URI and SPID.
serve() {
	local name=${1//[^A-Za-z0-9]/_}
	local sock="$T/$name.sock"
	shift
	rm -f "$sock"
	nbdkit -f -U "$sock" "$PLUGIN" "$@" 2>"$T/$name.err" &
	SPID=$!
	PIDS+=("$SPID")
	URI="nbd+unix:///?socket=$sock"
	for _ in $(seq 100); do
		[ -S "$sock" ] && return 0
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.05
	done
	fail "nbdkit did not start for $name: $(cat "$T/$name.err")"
	return 1
}
stop() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }

# Extents as [offset, length, hole?|zero?] with equal neighbours merged:
# nbdinfo --map --json on one side, vdkit map --output=json on the other.
cat >"$T/mapcmp.py" <<-'EOF'
	import json, sys
	def merge(v):
	    out = []
	    for off, ln, t in v:
	        if out and out[-1][2] == t and out[-1][0] + out[-1][1] == off:
	            out[-1][1] += ln
	        else:
	            out.append([off, ln, t])
	    return out
	nbd = [(x["offset"], x["length"], x["type"] & 3) for x in json.load(open(sys.argv[1]))]
	vdk = [(x["start"], x["length"], (0 if x["present"] else 1) | (2 if x["zero"] else 0))
	       for x in json.load(open(sys.argv[2]))]
	a, b = merge(nbd), merge(vdk)
	if a != b:
	    print("nbdinfo:", a[:8], "\nvdkit:  ", b[:8])
	    sys.exit(1)
	print(len(a), "ranges,", sum(1 for x in a if x[2] == 0), "data")
EOF
# map_matches DESC IMAGE: the running export's map equals vdkit's.
map_matches() {
	local out=""
	nbdinfo --map --json "$URI" >"$T/nbd.map" 2>&1 &&
		"$VDKIT" map --output=json "$2" >"$T/vdk.map" &&
		out=$(python3 "$T/mapcmp.py" "$T/nbd.map" "$T/vdk.map" 2>&1) &&
		pass "$1: nbdinfo --map equals vdkit map ($out)" || fail "$1: maps differ: $out"
}
# served_equals DESC IMAGE [ARGS...]: serve IMAGE, read the export with
# qemu-img convert, compare with vdkit's own raw conversion, then the map.
served_equals() {
	local d=$1 img=$2
	shift 2
	"$VDKIT" convert -O raw "$img" "$T/ref.raw" >/dev/null 2>&1 || { fail "$d: vdkit convert"; return; }
	serve "$d" "$img" "$@" || return
	rm -f "$T/out.raw"
	if qemu-img convert -f raw -O raw "$URI" "$T/out.raw" && cmp -s "$T/out.raw" "$T/ref.raw"; then
		pass "$d: qemu-img reads the export byte-identical to vdkit convert"
	else
		fail "$d: the export differs from vdkit convert"
	fi
	map_matches "$d" "$img"
}

# VHDX with an unreplayed log: qemu-img refuses the file read-only; the
# plugin replays the log in memory. 10 GiB virtual, so compared sparsely
# (it_vhdx.sh checks vdkit's reading against the listed SHA-256).
dirty() {
	local src="$SHARED/testdata/qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2" f="$T/dirty.vhdx"
	[ -f "$src" ] || { skip "dirty-log VHDX not in ../shared/testdata"; return; }
	bzip2 -dc "$src" >"$f"
	local before; before=$(sha "$f")
	"$VDKIT" convert -O raw "$f" "$T/dref.raw" >/dev/null 2>&1 || { fail "dirty VHDX: vdkit convert"; return; }
	serve dirty "$f" || return
	qemu-img convert -f raw -O raw "$URI" "$T/dout.raw" &&
		qemu-img compare -q -f raw -F raw "$T/dout.raw" "$T/dref.raw" &&
		pass "dirty-log VHDX: the export (read by qemu-img) equals vdkit convert" ||
		fail "dirty-log VHDX: the export differs from vdkit convert"
	map_matches "dirty-log VHDX" "$f"
	nbdinfo --json "$URI" >"$T/info.json" 2>&1
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["exports"][0]
assert e["is_read_only"] and e["can_multi_conn"] and not e["can_trim"] and not e["can_zero"], e
assert e["export-size"] == 10 << 30 and e["description"].startswith("vhdx image"), e' "$T/info.json" &&
		pass "nbdinfo: read-only, multi-conn, 10 GiB, described as a vhdx image" ||
		fail "nbdinfo flags: $(head -c 600 "$T/info.json")"
	if qemu-io -f raw -c "write -P 0x55 0 512" "$URI" >"$T/qio.out" 2>&1; then
		fail "qemu-io wrote to the export: $(cat "$T/qio.out")"
	else
		pass "qemu-io write 0 512 is refused: $(tail -1 "$T/qio.out")"
	fi
	stop
	[ "$(sha "$f")" = "$before" ] && pass "dirty-log VHDX is byte-unchanged after serving" ||
		fail "dirty-log VHDX was modified"
	rm -f "$f" "$T/dref.raw" "$T/dout.raw"
}
dirty

# VMDK snapshot chain made by qemu-img; qemu-img's own reading is a
# second oracle.
vmdk_chain() {
	local d="$T/vm"
	mkdir -p "$d"
	qemu-img create -q -f vmdk "$d/base.vmdk" 8M &&
		qemu-io -f vmdk -c "write -P 0x11 0 1M" -c "write -P 0x22 5M 640k" "$d/base.vmdk" >/dev/null &&
		qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$d/child.vmdk" &&
		qemu-io -f vmdk -c "write -P 0x5a 512k 1M" -c "write -P 0x33 7M 64k" "$d/child.vmdk" >/dev/null ||
		{ fail "cannot make the VMDK chain"; return; }
	served_equals "VMDK snapshot chain" "$d/child.vmdk" || return
	[ "$(sha "$T/out.raw")" = "$(qemu_sha "$d/child.vmdk")" ] &&
		pass "VMDK snapshot chain: the export equals qemu-img's reading of the chain" ||
		fail "VMDK snapshot chain: the export differs from qemu-img's reading"
	# Four connections at once over the one shared image (PARALLEL).
	if have nbdcopy; then
		rm -f "$T/par.raw"
		nbdcopy --connections=4 --threads=4 --request-size=65536 "$URI" "$T/par.raw" &&
			cmp -s "$T/par.raw" "$T/ref.raw" &&
			pass "nbdcopy with 4 connections reads the chain identically" ||
			fail "nbdcopy with 4 connections differs"
	else
		skip "nbdcopy not installed"
	fi
	stop
}
vmdk_chain

# qcow2 over a qcow2 backing file, with a zeroed range hiding backing data.
qcow2_chain() {
	local d="$T/qc"
	mkdir -p "$d"
	gen_raw "$d/base.raw" $((6 * MiB)) 5
	qemu-img convert -q -f raw -O qcow2 "$d/base.raw" "$d/base.qcow2" &&
		qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$d/top.qcow2" &&
		qemu-io -f qcow2 -c "write -P 0x77 64k 192k" -c "write -z 2M 512k" \
			-c "write -P 0x78 5M 4k" "$d/top.qcow2" >/dev/null ||
		{ fail "cannot make the qcow2 chain"; return; }
	served_equals "qcow2 with a backing file" "$d/top.qcow2" || return
	[ "$(sha "$T/out.raw")" = "$(qemu_sha "$d/top.qcow2")" ] &&
		pass "qcow2 with a backing file: the export equals qemu-img's reading" ||
		fail "qcow2 with a backing file: the export differs from qemu-img's reading"
	stop
}
qcow2_chain

# A disk inside an OVA, served in place by member name.
ova_member() {
	local d="$T/ova"
	mkdir -p "$d"
	gen_raw "$d/disk.raw" $((4 * MiB)) 3
	(cd "$d" && "$VDKIT" ova pack pkg.ova disk.raw >/dev/null 2>&1) || { fail "ova pack"; return; }
	local m; m=$(tar tf "$d/pkg.ova" | grep '\.vmdk$' | head -1)
	serve ova "$d/pkg.ova" member="$m" || return
	rm -f "$T/out.raw"
	qemu-img convert -f raw -O raw "$URI" "$T/out.raw" && cmp -s "$T/out.raw" "$d/disk.raw" &&
		pass "OVA member $m: the export equals the packed disk" ||
		fail "OVA member $m: the export differs from the packed disk"
	if have nbdcopy; then
		rm -f "$T/par.raw"
		nbdcopy --connections=4 --threads=4 --request-size=65536 "$URI" "$T/par.raw" &&
			cmp -s "$T/par.raw" "$d/disk.raw" &&
			pass "nbdcopy with 4 connections reads the OVA member identically" ||
			fail "nbdcopy with 4 connections differs on the OVA member"
	fi
	(cd "$d" && tar xf pkg.ova "$m")
	map_matches "OVA member $m" "$d/$m"
	stop
	local out
	out=$(timeout 20 nbdkit -f -U "$T/x.sock" "$PLUGIN" "$d/pkg.ova" member=nope.vmdk 2>&1)
	[ $? = 1 ] && grep -q "no member named 'nope.vmdk'" <<<"$out" &&
		pass "an unknown member is refused at startup: $out" || fail "unknown member: $out"
	out=$(timeout 20 nbdkit -f -U "$T/x.sock" "$PLUGIN" file="$d/pkg.ova" 2>&1)
	[ $? = 1 ] && grep -q "member=NAME" <<<"$out" &&
		pass "an OVA without member= is refused (not served as a raw tar)" || fail "OVA without member: $out"
}
ova_member

# Confinement: a flat VMDK whose extent is in a sibling folder.
confined() {
	mkdir -p "$T/cf/vm" "$T/cf/other"
	gen_raw "$T/cf/other/x-flat.vmdk" $((2 * MiB)) 9
	printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 4096 FLAT "../other/x-flat.vmdk" 0\n\nddb.adapterType = "lsilogic"\n' \
		>"$T/cf/vm/disk.vmdk"
	local out rc
	out=$(timeout 20 nbdkit -f -U "$T/cf.sock" "$PLUGIN" "$T/cf/vm/disk.vmdk" 2>&1)
	rc=$?
	[ $rc = 1 ] && grep -q "outside its own folder" <<<"$out" && [ ! -S "$T/cf.sock" ] &&
		pass "extent outside the image's folder: nbdkit exits 1 at startup: $out" ||
		fail "confinement: exit $rc, $out"
	serve confined "$T/cf/vm/disk.vmdk" allow-dir="$T/cf/other" || return
	rm -f "$T/out.raw"
	qemu-img convert -f raw -O raw "$URI" "$T/out.raw" && cmp -s "$T/out.raw" "$T/cf/other/x-flat.vmdk" &&
		pass "with allow-dir= the same VMDK is served, equal to its extent" ||
		fail "allow-dir=: export differs from the extent file"
	stop
}
confined

out=$(nbdkit "$PLUGIN" --dump-plugin 2>&1)
grep -q "^vdkit_version=" <<<"$out" && grep -q "^thread_model=parallel" <<<"$out" &&
	grep -q "^vdkit_formats=.*vmdk.*vhdx" <<<"$out" &&
	pass "--dump-plugin: vdkit's version, formats, parallel thread model" || fail "--dump-plugin: $out"
out=$(nbdkit "$PLUGIN" "$T/none.vmdk" bogus=1 2>&1)
[ $? = 1 ] && grep -q "unknown parameter 'bogus'" <<<"$out" && pass "an unknown key is refused" ||
	fail "unknown key: $out"

finish
