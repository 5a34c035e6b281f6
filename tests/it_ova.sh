#!/usr/bin/env bash
# OVA/OVF integration: verify, unpack to every target format (qemu-img is
# the oracle), tampering, hostile packages, MTV-style scan, pack for vSphere
# and signatures.
source "$(dirname "$0")/lib.sh"

have qemu-img || { skip "qemu-img not installed"; finish; }
have python3 || { skip "python3 not installed (needed to build hostile tars)"; finish; }

ova() { "$VDKIT" ova "$@"; }
# expect CODE DESC CMD...: pass when CMD exits with CODE.
expect() {
	local code=$1 d=$2; shift 2
	"$@" >"$T/out" 2>"$T/err"; local rc=$?
	if [ $rc -eq "$code" ]; then pass "$d"; else fail "$d (exit $rc, want $code: $(head -c 300 "$T/err"))"; fi
}

# --- a folder package with a SHA1 manifest (COT's test data) ---------
if [ -f "$SHARED/testdata/ovf/input.ovf" ]; then
	expect 0 "verify accepts input.ovf (folder package, SHA1 manifest)" ova verify "$SHARED/testdata/ovf/input.ovf"
	check "it checked all four listed files" grep -q "4 files match" "$T/out"
	ova list --output=json "$SHARED/testdata/ovf/input.ovf" >"$T/list.json"
	check "list: capacity 1 GiB from 'byte * 2^30'" grep -q '"capacity": 1073741824' "$T/list.json"
	check "list: 4 CPUs from the default configuration" grep -q '"cpus": 4' "$T/list.json"
else
	skip "shared testdata not found"
fi

# --- an OVA with two qemu-made streamOptimized disks ------------------
mkdir -p "$T/src"
cd "$T/src" || exit 1
gen_raw d1.img 8388608 1
gen_raw d2.img 3211264 2
qemu-img convert -O vmdk -o subformat=streamOptimized d1.img disk1.vmdk
qemu-img convert -O vmdk -o subformat=streamOptimized d2.img disk2.vmdk
SO=http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized
write_ovf() { # write_ovf FILE HREF1 HREF2
	cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>
    <File ovf:href="$2" ovf:id="file1"/>
    <File ovf:href="$3" ovf:id="file2"/>
  </References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="$SO"/>
    <Disk ovf:capacity="3211264" ovf:diskId="vmdisk2" ovf:fileRef="file2" ovf:format="$SO"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm"><Info>vm</Info><Name>vm</Name></VirtualSystem>
</Envelope>
EOF
}
write_ovf vm.ovf disk1.vmdk disk2.vmdk
# VirtualBox's spaced form, upper-case hex.
for f in vm.ovf disk1.vmdk disk2.vmdk; do
	echo "SHA256 ($f) = $(sha "$f" | tr a-f A-F)"
done >vm.mf
tar --format=ustar -cf "$T/vm.ova" vm.ovf vm.mf disk1.vmdk disk2.vmdk
cd "$T" || exit 1

expect 0 "verify accepts an OVA whose manifest uses the spaced upper-case form" ova verify vm.ova
S1=$(sha src/d1.img)
S2=$(sha src/d2.img)
for fmt in raw qcow2 vhdx vmdk; do
	rm -rf "out-$fmt"
	if ova unpack -O "$fmt" vm.ova "out-$fmt" >"$T/out" 2>"$T/err"; then
		a=$(qemu_sha "out-$fmt/disk1.$fmt" "$fmt")
		b=$(qemu_sha "out-$fmt/disk2.$fmt" "$fmt")
		if [ "$a" = "$S1" ] && [ "$b" = "$S2" ]; then
			pass "unpack -O $fmt: qemu-img reads both disks identical"
		else
			fail "unpack -O $fmt: content differs"
		fi
	else
		fail "unpack -O $fmt failed: $(head -c 300 "$T/err")"
	fi
done
check "unpack writes the OVF beside the disks" cmp out-raw/vm.ovf src/vm.ovf
check "unpack writes a JSON inventory" grep -q '"outputs"' out-raw/vm.json
qemu-img check -q out-qcow2/disk1.qcow2 && pass "qemu-img check clean on an unpacked qcow2" || fail "qemu-img check on unpacked qcow2"

# One flipped byte inside disk2.vmdk's data.
off=$(python3 - vm.ova <<'EOF'
import sys, tarfile
t = tarfile.open(sys.argv[1])
m = t.getmember("disk2.vmdk")
print(m.offset_data + m.size // 2)
EOF
)
cp vm.ova bad.ova
python3 -c "
import sys
f = open('bad.ova', 'r+b'); f.seek($off); b = f.read(1); f.seek($off); f.write(bytes([b[0] ^ 0x40]))"
expect 1 "verify: one flipped byte gives exit 1" ova verify bad.ova
check "verify names the bad disk" grep -q "disk2.vmdk" "$T/err"
rm -rf out-bad
expect 1 "unpack of the tampered OVA exits 1" ova unpack -O qcow2 bad.ova out-bad
if [ -z "$(ls -A out-bad 2>/dev/null)" ]; then
	pass "unpack of the tampered OVA leaves no disk behind"
else
	fail "unpack left files: $(ls -A out-bad)"
fi

# A descriptor listed with a wrong digest, a missing entry, an extra entry.
mkdir -p m && cd m || exit 1
cp ../src/vm.ovf ../src/disk1.vmdk ../src/disk2.vmdk .
{ echo "SHA256(vm.ovf)= $(sha vm.ovf)"; echo "SHA256(disk1.vmdk)= $(sha disk1.vmdk)"; } >vm.mf
tar -cf ../missing.ova vm.ovf vm.mf disk1.vmdk disk2.vmdk
{ cat vm.mf; echo "SHA256(disk2.vmdk)= $(sha disk2.vmdk)"; echo "SHA256(ghost.iso)= $(sha vm.ovf)"; } >vm2.mf
mv vm2.mf vm.mf
tar -cf ../ghost.ova vm.ovf vm.mf disk1.vmdk disk2.vmdk
{ grep -v ghost vm.mf; } >vm2.mf && mv vm2.mf vm.mf
echo "hello" >README
tar -cf ../readme.ova vm.ovf vm.mf disk1.vmdk disk2.vmdk README
cd "$T" || exit 1
expect 1 "a referenced file missing from the manifest: exit 1" ova verify missing.ova
check "... naming it" grep -q "disk2.vmdk: not listed" "$T/err"
expect 1 "a manifest entry for a file not in the package: exit 1" ova verify ghost.ova
check "... naming it" grep -q "ghost.iso" "$T/err"
expect 0 "an unreferenced README is only a warning" ova verify readme.ova
check "... which names it" grep -q "warning: README" "$T/err"

# Chunked and gzip-compressed files (DSP0243 5.3).
mkdir -p ch && cd ch || exit 1
cp ../src/disk1.vmdk ../src/disk2.vmdk .
split -b 1000000 -d -a 9 disk1.vmdk disk1.vmdk.
gzip -c disk2.vmdk >disk2.vmdk.gz
cat >vm.ovf <<EOF
<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="disk1.vmdk" ovf:id="file1" ovf:chunkSize="1000000" ovf:size="$(stat -c %s disk1.vmdk)"/>
    <File ovf:href="disk2.vmdk.gz" ovf:id="file2" ovf:compression="gzip" ovf:size="$(stat -c %s disk2.vmdk.gz)"/>
  </References>
  <DiskSection><Info>d</Info>
    <Disk ovf:capacity="8388608" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="$SO"/>
    <Disk ovf:capacity="3211264" ovf:diskId="vmdisk2" ovf:fileRef="file2" ovf:format="$SO"/>
  </DiskSection>
</Envelope>
EOF
for f in vm.ovf disk1.vmdk.0* disk2.vmdk.gz; do echo "SHA1($f)= $(sha1sum "$f" | cut -d' ' -f1)"; done >vm.mf
tar -cf ../chunked.ova vm.ovf vm.mf disk1.vmdk.0* disk2.vmdk.gz
cd "$T" || exit 1
expect 0 "verify: chunked and gzip files" ova verify chunked.ova
rm -rf out-ch
expect 0 "unpack: chunked and gzip files" ova unpack -O raw chunked.ova out-ch
[ "$(sha out-ch/disk1.raw 2>/dev/null)" = "$S1" ] && pass "chunked disk reassembled" || fail "chunked disk content"
[ "$(sha out-ch/disk2.raw 2>/dev/null)" = "$S2" ] && pass "gzip disk inflated" || fail "gzip disk content"

# --- hostile packages -----------------------------------------------------
mkdir -p hostile victim
python3 - "$T/hostile" <<'EOF'
import io, sys, tarfile
d = sys.argv[1]
ovf = b'<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>'
def add(t, name, data=b"x", kind=tarfile.REGTYPE, link=""):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = link; i.size = len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
for fn, members in {
    "dotdot.ova": [("x.ovf", ovf), ("../evil", b"owned")],
    "abs.ova": [("x.ovf", ovf), ("/tmp/vdkit-evil-abs", b"owned")],
}.items():
    with tarfile.open(f"{d}/{fn}", "w", format=tarfile.GNU_FORMAT) as t:
        for n, data in members: add(t, n, data)
with tarfile.open(f"{d}/symlink.ova", "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "x.ovf", ovf); add(t, "disk.vmdk", kind=tarfile.SYMTYPE, link="/etc/passwd")
xxe = b'''<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
<VirtualSystem ovf:id="a"><Name>&xxe;</Name></VirtualSystem></Envelope>'''
lol = b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">' + b''.join(
    b'<!ENTITY lol%d "%s">' % (i, (b'&lol%d;' % (i - 1) if i > 1 else b'&lol;') * 10) for i in range(1, 10)) + \
    b']>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem><Name>&lol9;</Name></VirtualSystem></Envelope>'
for fn, doc in (("xxe.ova", xxe), ("lol.ova", lol)):
    with tarfile.open(f"{d}/{fn}", "w", format=tarfile.USTAR_FORMAT) as t:
        add(t, "x.ovf", doc)
EOF
for h in dotdot abs symlink xxe lol; do
	rm -rf "victim/out"
	timeout 20 "$VDKIT" ova unpack "hostile/$h.ova" victim/out >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 1 ] && pass "$h.ova refused with exit 1: $(head -c 120 "$T/err")" || fail "$h.ova: exit $rc"
	timeout 20 "$VDKIT" ova list "hostile/$h.ova" >/dev/null 2>&1
	[ $? -eq 1 ] && pass "$h.ova: list refuses it too" || fail "$h.ova: list"
done
[ ! -e "$T/evil" ] && [ ! -e /tmp/vdkit-evil-abs ] && pass "nothing written outside DIR" || fail "a file escaped DIR"
if grep -rqs "root:x:0" "$T/victim" "$T/out" "$T/err"; then fail "/etc/passwd content leaked"; else pass "nothing of /etc/passwd in any output"; fi

# --- scan, the way MTV does ------------------------------------------------
S=$T/share
mkdir -p "$S/d1/d2/d3" "$S/p1/p2/p3" "$S/two"
cp vm.ova "$S/root.ova"; cp vm.ova "$S/d1/one.ova"; cp vm.ova "$S/d1/d2/deep.ova"
cp src/vm.ovf "$S/p1/p.ovf"; cp src/vm.ovf "$S/p1/p2/q.ovf"; cp src/vm.ovf "$S/p1/p2/p3/r.ovf"
cp src/vm.ovf "$S/top.ovf"
cp src/vm.ovf "$S/two/a.ovf"; cp src/vm.ovf "$S/two/b.ovf"
: >"$S/empty.ova"
find "$S" -type f -exec touch -d '-1 hour' {} +
cp vm.ova "$S/fresh.ova"
ova scan "$S" >"$T/scan.txt" 2>&1
rc=$?
[ $rc -eq 1 ] && pass "scan exits 1 when a folder has two .ovf" || fail "scan exit $rc"
listed=$(awk '$1=="ova"||$1=="ovf"{print $2}' "$T/scan.txt" | sed "s|$S/||" | sort | tr '\n' ' ')
want="d1/one.ova p1/p.ovf p1/p2/q.ovf root.ova top.ovf "
[ "$listed" = "$want" ] && pass "scan lists exactly MTV's packages ($listed)" || fail "scan listed '$listed', want '$want'"
check "scan reports the folder with two .ovf as an error" grep -q "^error .*/two: 2 .ovf" "$T/scan.txt"
check "scan skips a file modified in the last 30 s" grep -q "^skipped .*fresh.ova" "$T/scan.txt"
check "scan skips an empty file" grep -q "^skipped .*empty.ova" "$T/scan.txt"
ova scan --output=json "$S" >"$T/scan.json" 2>/dev/null
python3 -c "import json,sys; d=json.load(open('$T/scan.json')); assert sum(1 for x in d if x['kind'] in ('ova','ovf'))==5; assert all('inventory' in x for x in d if x['kind'] in ('ova','ovf'))" \
	&& pass "scan --output=json: 5 packages with inventories" || fail "scan json"

# --- pack ------------------------------------------------------------------
if ova pack --name packed packed.ova src/d1.img src/disk2.vmdk >"$T/out" 2>"$T/err"; then
	pass "pack of a raw and a VMDK disk"
	first=$(tar tf packed.ova | head -1)
	[ "$first" = "packed.ovf" ] && pass "first member is the .ovf" || fail "first member is $first"
	[ "$(tar tf packed.ova | sed -n 2p)" = "packed.mf" ] && pass "second member is the .mf" || fail "second member"
	tar xOf packed.ova packed.mf >packed.mf
	if [ -s packed.mf ] && ! grep -vqE '^SHA(1|256|512)\([^)]+\)= [0-9a-f]+$' packed.mf; then
		pass "every manifest line is strict SHA256(name)= hex"
	else
		fail "manifest syntax"
	fi
	[ "$(wc -l <packed.mf)" -eq 3 ] && pass "manifest lists the ovf and both disks" || fail "manifest lines"
	expect 0 "verify passes on the packed OVA" ova verify packed.ova
	rm -rf out-p
	expect 0 "unpack of the packed OVA" ova unpack -O raw packed.ova out-p
	[ "$(sha out-p/packed-disk1.raw)" = "$S1" ] && [ "$(sha out-p/packed-disk2.raw)" = "$S2" ] \
		&& pass "unpack restores identical content" || fail "pack/unpack content"
	mkdir -p px && tar xf packed.ova -C px
	qemu-img check -q px/packed-disk1.vmdk && qemu-img check -q px/packed-disk2.vmdk \
		&& pass "qemu-img check clean on the packed VMDKs" || fail "qemu-img check on packed VMDKs"
	[ "$(qemu_sha px/packed-disk1.vmdk vmdk)" = "$S1" ] && pass "qemu-img reads the packed VMDK identical" || fail "qemu-img content of packed VMDK"
	tar xOf packed.ova packed.ovf >packed.ovf
	check "OVF capacity in bytes" grep -q 'ovf:capacity="8388608"' packed.ovf
	check "OVF populatedSize" grep -q 'ovf:populatedSize="[1-9]' packed.ovf
	check "OVF has a disk controller" grep -q '<rasd:ResourceType>6</rasd:ResourceType>' packed.ovf
	if tar tvf packed.ova | awk '{print $3}' | grep -qv '^[0-9]*$'; then fail "tar listing"; else pass "GNU tar lists the package"; fi
else
	fail "pack failed: $(head -c 300 "$T/err")"
fi

# --- signatures -------------------------------------------------------------
if have openssl; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=vdkit-test -days 2 >/dev/null 2>&1
	openssl req -x509 -newkey rsa:2048 -nodes -keyout key2.pem -out other.pem -subj /CN=other -days 2 >/dev/null 2>&1
	expect 0 "pack --sign" ova pack --sha512 --sign key.pem --cert cert.pem signed.ova src/d1.img
	[ "$(tar tf signed.ova | sed -n 3p)" = "signed.cert" ] && pass "the .cert is the third member" || fail "cert position"
	expect 0 "a self-signed package verifies (with a warning)" ova verify signed.ova
	check "... the warning names the signer" grep -q "vdkit-test" "$T/err"
	expect 0 "--require-trusted with the signer's CA" ova verify --require-trusted cert.pem signed.ova
	expect 1 "--require-trusted with another CA: exit 1" ova verify --require-trusted other.pem signed.ova
	# Re-sign the manifest with another key: the signature no longer matches the cert.
	mkdir -p sg && tar xf signed.ova -C sg && cd sg || exit 1
	sig=$(openssl dgst -sha512 -sign ../key2.pem signed.mf | od -An -tx1 | tr -d ' \n')
	{ echo "SHA512(signed.mf)= $sig"; cat ../cert.pem; } >signed.cert
	tar -cf ../forged.ova signed.ovf signed.mf signed.cert signed-disk1.vmdk
	cd "$T" || exit 1
	expect 1 "a signature by another key: exit 1" ova verify forged.ova
else
	skip "openssl not installed"
fi

finish
