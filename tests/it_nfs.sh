#!/usr/bin/env bash
# NFS through libnfs against a real nfs-ganesha (NFSv4 only, so no rpcbind)
# started here on 127.0.0.1: images, conversions to and from the share,
# OVA verify/unpack/scan on the share, confinement of related files, a
# source changing under a conversion and a conversion killed mid-way.
# qemu-img and vdkit's own local runs are the oracles.
source "$(dirname "$0")/lib.sh"

have qemu-img || { skip "qemu-img not installed"; finish; }
have ganesha.nfsd || { skip "nfs-ganesha not installed"; finish; }
[ "$(id -u)" -eq 0 ] || { skip "nfs-ganesha needs root"; finish; }

N=$T/nfs
E=$N/export
mkdir -p "$E"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=$((20490 + $$ % 1000))
while port_busy "$PORT"; do PORT=$((PORT + 1)); done
cat >"$N/ganesha.conf" <<EOF
NFS_CORE_PARAM {
	Protocols = 4;
	NFS_Port = $PORT;
	Bind_addr = 127.0.0.1;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 { Graceless = true; }
EXPORT {
	Export_Id = 1;
	Path = $E;
	Pseudo = /export;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 4;
	SecType = sys;
	# Files changed beside the server (this script) are seen at once.
	Attr_Expiration_Time = 0;
	FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
ganesha.nfsd -F -f "$N/ganesha.conf" -L "$N/ganesha.log" -p "$N/ganesha.pid" -N NIV_EVENT \
	>/dev/null 2>&1 &
GPID=$!
trap 'kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 100); do
	port_busy "$PORT" && break
	kill -0 "$GPID" 2>/dev/null || break
	sleep 0.1
done
if ! port_busy "$PORT"; then
	why=$(grep -E ':(FATAL|CRIT|MAJ) :' "$N/ganesha.log" 2>/dev/null | grep -v DBUS | tail -1)
	skip "nfs-ganesha could not start: ${why:-no listener on port $PORT}"
	finish
fi

Q="?version=4&nfsport=$PORT"
U=nfs://127.0.0.1/export
vdk() { "$VDKIT" "$@"; }
expect() { # expect CODE DESC CMD...
	local code=$1 d=$2; shift 2
	"$@" >"$T/out" 2>"$T/err"; local rc=$?
	if [ $rc -eq "$code" ]; then pass "$d"; else fail "$d (exit $rc, want $code: $(head -c 300 "$T/err"))"; fi
}
share_sums() { (cd "$E" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# --- images on the share --------------------------------------------------
mkdir -p "$E/img" "$T/loc"
gen_raw "$T/loc/d.raw" 20971520 3
qemu-img convert -O qcow2 "$T/loc/d.raw" "$E/img/d.qcow2"
cp "$E/img/d.qcow2" "$T/loc/d.qcow2"
drop_keys() { grep -v -e '"filename"' -e '"actual-size"' "$1"; }
vdk info --output=json "$U/img/d.qcow2$Q" >"$T/info-nfs.json" 2>"$T/err" &&
	vdk info --output=json "$T/loc/d.qcow2" >"$T/info-loc.json" &&
	diff <(drop_keys "$T/info-nfs.json") <(drop_keys "$T/info-loc.json") >/dev/null &&
	pass "info of a qcow2 on the share equals the local one (but filename, actual-size)" ||
	fail "info over NFS differs: $(head -c 300 "$T/err")"
grep -q "\"filename\": \"$U/img/d.qcow2" "$T/info-nfs.json" &&
	pass "info names the URI" || fail "info filename"
expect 0 "convert -O raw from the share" vdk convert -O raw "$U/img/d.qcow2$Q" "$T/from-nfs.raw"
vdk convert -O raw "$T/loc/d.qcow2" "$T/from-loc.raw" 2>/dev/null
cmp -s "$T/from-nfs.raw" "$T/from-loc.raw" && cmp -s "$T/from-nfs.raw" "$T/loc/d.raw" &&
	pass "convert from the share is byte-identical to the local conversion" ||
	fail "convert from the share differs"

# Related files: a qcow2 backing chain and a flat VMDK extent on the share.
gen_raw "$T/loc/top.raw" 20971520 4
qemu-img create -q -f qcow2 -b d.qcow2 -F qcow2 "$E/img/top.qcow2"
qemu-io -c "write -P 0x5a 1M 3M" "$E/img/top.qcow2" >/dev/null 2>&1 ||
	qemu-img rebase -q -u -b d.qcow2 -F qcow2 "$E/img/top.qcow2"
a=$(vdk_sha "$U/img/top.qcow2$Q")
b=$(qemu_sha "$E/img/top.qcow2" qcow2)
[ -n "$a" ] && [ "$a" = "$b" ] && pass "a qcow2 with its backing file beside it on the share reads as qemu-img reads it" ||
	fail "backing chain over NFS: $a vs $b"
qemu-img convert -O vmdk -o subformat=monolithicFlat "$T/loc/d.raw" "$E/img/flat.vmdk"
a=$(vdk_sha "$U/img/flat.vmdk$Q")
[ "$a" = "$(sha "$T/loc/d.raw")" ] && pass "a flat VMDK's extent is opened beside its descriptor on the share" ||
	fail "flat VMDK over NFS"
mkdir -p "$E/img/sub"
sed 's|"flat-flat.vmdk"|"../flat-flat.vmdk"|' "$E/img/flat.vmdk" >"$E/img/sub/up.vmdk"
expect 1 "an extent named with '..' is refused" vdk info "$U/img/sub/up.vmdk$Q"
grep -q "outside its own folder" "$T/err" && pass "the refusal says why" || fail "refusal message: $(head -c 200 "$T/err")"
ln -s ../flat-flat.vmdk "$E/img/sub/flat-flat.vmdk"
cp "$E/img/flat.vmdk" "$E/img/sub/link.vmdk"
expect 1 "an extent that is a symlink out of the folder is refused" vdk info "$U/img/sub/link.vmdk$Q"
expect 1 "a missing file on the share is bad input (exit 1)" vdk info "$U/img/nope.qcow2$Q"
expect 2 "an unknown URI argument is a usage error" vdk info "$U/img/d.qcow2?version=4&nfsport=$PORT&bogus=1"
expect 3 "a server that does not answer is an I/O failure (exit 3)" \
	vdk info "nfs://127.0.0.1/export/img/d.qcow2?version=4&nfsport=1"

# --- OVA packages on the share ---------------------------------------------
mkdir -p "$T/pk" "$E/pkgs/folder"
vdk ova pack "$T/pk/vm.ova" "$T/loc/d.qcow2" >/dev/null 2>&1
cp "$T/pk/vm.ova" "$E/pkgs/vm.ova"
(cd "$E/pkgs/folder" && tar -xf "$T/pk/vm.ova")
: >"$E/pkgs/empty.ova"
find "$E/pkgs" -type f -exec touch -d '-1 hour' {} +
mkdir -p "$T/lscan"
cp -a "$E/pkgs" "$T/lscan/"
before=$(share_sums)
expect 0 "ova verify of an OVA on the share" vdk ova verify "$U/pkgs/vm.ova$Q"
grep -q "files match the manifest" "$T/out" && pass "verify checked the manifest over NFS" || fail "verify output"
expect 0 "ova verify of an extracted folder package on the share" vdk ova verify "$U/pkgs/folder$Q"
expect 0 "ova verify of a .ovf on the share" vdk ova verify "$U/pkgs/folder/vm.ovf$Q"
expect 0 "ova unpack -O qcow2 from the share" vdk ova unpack -O qcow2 "$U/pkgs/vm.ova$Q" "$T/un-nfs"
vdk ova unpack -O qcow2 "$T/pk/vm.ova" "$T/un-loc" >/dev/null 2>&1
disk=$(cd "$T/un-loc" && ls ./*.qcow2 | head -1)
[ -n "$disk" ] && qemu-img compare -q "$T/un-nfs/$disk" "$T/un-loc/$disk" &&
	qemu-img compare -q "$T/un-nfs/$disk" "$T/loc/d.raw" &&
	pass "the disk unpacked from the share equals the local unpack (qemu-img compare)" ||
	fail "unpack over NFS differs"
vdk ova scan --output=json "$U/pkgs$Q" >"$T/scan-nfs.json" 2>/dev/null
vdk ova scan --output=json "$T/lscan/pkgs" >"$T/scan-loc.json" 2>/dev/null
sed -e "s|$U/||g" -e "s|?version=4&nfsport=$PORT||g" "$T/scan-nfs.json" >"$T/scan-nfs.norm"
sed -e "s|$T/lscan/||g" "$T/scan-loc.json" >"$T/scan-loc.norm"
grep -q '"kind": "ova"' "$T/scan-nfs.norm" && grep -q '"kind": "ovf"' "$T/scan-nfs.norm" &&
	grep -q '"kind": "skipped"' "$T/scan-nfs.norm" &&
	cmp -s "$T/scan-nfs.norm" "$T/scan-loc.norm" &&
	pass "ova scan of the share lists what a local scan of the same folder lists (same JSON)" ||
	fail "scan over NFS differs: $(diff "$T/scan-nfs.norm" "$T/scan-loc.norm" | head -5)"
[ "$(share_sums)" = "$before" ] && pass "the share is unchanged by verify/unpack/scan (sha256 of every file, no extra files)" ||
	fail "the share changed"

# --- outputs on the share ----------------------------------------------------
mkdir -p "$E/out"
expect 0 "convert to a qcow2 on the share" vdk convert -O qcow2 "$T/loc/d.raw" "$U/out/o.qcow2$Q"
qemu-img compare -q "$E/out/o.qcow2" "$T/loc/d.raw" && qemu-img check -q "$E/out/o.qcow2" &&
	pass "qemu-img reads the qcow2 written over NFS identically (and check is clean)" ||
	fail "qcow2 written over NFS differs"
expect 0 "convert --verify to a monolithicFlat VMDK on the share (two files)" \
	vdk convert --verify -O vmdk -o subformat=monolithicFlat "$T/loc/d.raw" "$U/out/f.vmdk$Q"
qemu-img compare -q "$E/out/f.vmdk" "$T/loc/d.raw" && pass "qemu-img reads the flat VMDK and its extent written over NFS" ||
	fail "flat VMDK over NFS differs"
left=$(cd "$E/out" && ls -A | tr '\n' ' ')
[ "$left" = "f-flat.vmdk f.vmdk o.qcow2 " ] && pass "no temporary left on the share ($left)" ||
	fail "files on the share: $left"
expect 3 "an output folder missing on the share is an environment failure (exit 3, as locally)" vdk convert -O raw "$T/loc/d.raw" "$U/out/no/x.raw$Q"

# A conversion whose target is on the share, stopped mid-way (small NFSv4
# WRITEs keep it running for seconds). wait_tmp DIR: until a temporary shows.
wait_tmp() {
	for _ in $(seq 200); do
		ls -A "$1" 2>/dev/null | grep -q '\.vdkit-' && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.02
	done
	return 1
}
head -c 16777216 /dev/urandom >"$T/big.raw"
mkdir -p "$E/kill"
"$VDKIT" convert -O raw "$T/big.raw" "$U/kill/big.raw$Q" >/dev/null 2>"$T/kill.err" &
CP=$!
if wait_tmp "$E/kill" "$CP"; then
	kill -TERM "$CP"
	wait "$CP"
	rc=$?
	[ $rc -ne 0 ] && [ -z "$(ls -A "$E/kill")" ] &&
		pass "SIGTERM mid-way: exit $rc and nothing left on the share (no temporary, no output)" ||
		fail "after SIGTERM: exit $rc, left: $(ls -A "$E/kill")"
else
	wait "$CP"
	fail "the conversion to the share finished before it could be stopped"
fi

# A source that changes while it is read: appended to (beside the server)
# while a conversion reads it from the share.
mkdir -p "$E/chg"
cp "$T/big.raw" "$E/chg/src.raw"
"$VDKIT" convert -f raw -O raw "$U/chg/src.raw$Q" "$U/chg/dst.raw$Q" >/dev/null 2>"$T/chg.err" &
CP=$!
if wait_tmp "$E/chg" "$CP"; then
	echo more >>"$E/chg/src.raw"
	wait "$CP"
	rc=$?
	[ $rc -eq 1 ] && grep -q "changed while being read" "$T/chg.err" &&
		pass "a source that changes on the share while being read is refused (exit 1)" ||
		fail "changing source: exit $rc: $(head -c 300 "$T/chg.err")"
	[ "$(ls -A "$E/chg")" = "src.raw" ] && pass "and nothing was kept on the share" ||
		fail "left on the share: $(ls -A "$E/chg")"
else
	wait "$CP"
	fail "the conversion of a changing source finished too early"
fi

finish
