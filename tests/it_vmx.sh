#!/usr/bin/env bash
# VM folders: `vdkit info VM.vmx` of every test .vmx (disks with their bus,
# NICs with model and MAC, firmware, vCPUs, memory as the file says), and
# `vdkit ova pack OUT.ova VM.vmx` of a VM whose disk is a snapshot chain:
# govmomi's OVF parser reads the hardware back, `ova verify` passes, the
# VMDK descriptors agree with the OVF, and qemu-img finds each packed disk
# identical to its chain.
source "$(dirname "$0")/lib.sh"

have qemu-img && have qemu-io || { skip "qemu-img/qemu-io not installed"; finish; }
have python3 || { skip "python3 not installed (reads the JSON)"; finish; }

VMX="$TOP/tests/vmx"
# jq-like assertion: jcheck DESC FILE PYTHON-EXPR (j is the parsed JSON).
jcheck() {
	local d=$1 f=$2 expr=$3
	if python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($expr) else 1)" "$f" 2>"$T/jerr"; then
		pass "$d"
	else
		fail "$d ($(head -c 300 "$T/jerr"))"
	fi
}
mkdisk() { qemu-img create -q -f vmdk "$1" "${2:-16M}"; }
info_json() { "$VDKIT" info --output=json "$1" >"$2" 2>"$T/err" || fail "info $1: $(head -c 300 "$T/err")"; }

# --- info of each test .vmx ----------------------------------------
mkdir -p "$T/efi" "$T/multi" "$T/nvme"
cp "$VMX/efi-sas-sata.vmx" "$T/efi/" && (cd "$T/efi" && mkdisk win2019.vmdk 32M && mkdisk win2019_1.vmdk)
cp "$VMX/multi.vmx" "$T/multi/" && (cd "$T/multi" && for d in multi multi_1 multi_2 multi_ide; do mkdisk $d.vmdk; done)
cp "$VMX/nvme.vmx" "$T/nvme/" && (cd "$T/nvme" && qemu-img create -q -f qcow2 nvme-disk.vmdk 48M)

info_json "$T/efi/efi-sas-sata.vmx" "$T/efi.json"
jcheck "efi: name, 4 vCPUs, 2 cores per socket, 4 GiB, efi" "$T/efi.json" \
	'j["name"]=="win2019 efi" and j["cpus"]==4 and j["cores-per-socket"]==2 and j["memory"]==4<<30 and j["firmware"]=="efi" and j["secure-boot"]'
jcheck "efi: scsi0:0 on lsisas1068, sata0:3 on ahci, sizes from the images" "$T/efi.json" \
	'[(d["unit"],d["controller-model"],d["virtual-size"],d["chain-depth"]) for d in j["disks"]]==[("scsi0:0","lsisas1068",32<<20,1),("sata0:3","ahci",16<<20,1)]'
jcheck "efi: the SATA CD-ROM is listed apart" "$T/efi.json" \
	'[(c["unit"],c["device-type"]) for c in j["cdroms"]]==[("sata0:0","cdrom-image")]'
jcheck "efi: vmxnet3 on VM Network with its generated MAC" "$T/efi.json" \
	'[(n["model"],n["network"],n["mac"]) for n in j["nics"]]==[("vmxnet3","VM Network","00:0c:29:46:9b:0b")]'
jcheck "efi: guest windows2019srv-64 -> windows2019srv_64Guest" "$T/efi.json" \
	'j["guest-os"]=="windows2019srv-64" and j["os-type"]=="windows2019srv_64Guest"'

info_json "$T/multi/multi.vmx" "$T/multi.json"
jcheck "multi: escaped name, first duplicate wins, bios, 1 vCPU, 2 GiB" "$T/multi.json" \
	'j["name"]=="multi \"quoted\" ctrl" and j["firmware"]=="bios" and j["cpus"]==1 and j["memory"]==2<<30'
jcheck "multi: five disks on pvscsi, lsilogic and ide; the present=FALSE one is not opened" "$T/multi.json" \
	'[(d["unit"],d.get("controller-model"),d["present"],"format" in d) for d in j["disks"]]==[("scsi0:0","pvscsi",True,True),("scsi0:2","pvscsi",False,False),("scsi0:8","pvscsi",True,True),("scsi1:0","lsilogic",True,True),("ide0:0","ide",True,True)]'
jcheck "multi: e1000 with its static MAC, vmxnet3 with the vpx one, ethernet2 off" "$T/multi.json" \
	'[(n["model"],n["network"],n.get("mac"),n["present"]) for n in j["nics"]]==[("e1000","Production","00:50:56:01:02:03",True),("vmxnet3","Backup","00:50:56:9b:5f:0d",True),("e1000","ethernet2",None,False)]'
jcheck "multi: the IDE atapi-cdrom" "$T/multi.json" '[c["unit"] for c in j["cdroms"]]==["ide1:0"]'

info_json "$T/nvme/nvme.vmx" "$T/nvme.json"
jcheck "nvme: nvme0:0 opened by content (qcow2 despite its name), 2 vCPUs, 2 GiB" "$T/nvme.json" \
	'[(d["bus"],d["unit"],d["format"],d["virtual-size"]) for d in j["disks"]]==[("nvme","nvme0:0","qcow2",48<<20)] and j["cpus"]==2 and j["memory"]==2<<30'
jcheck "nvme: e1000e, MAC lower-cased, network defaults to ethernet0; cdrom-raw listed" "$T/nvme.json" \
	'[(n["model"],n["mac"],n["network"]) for n in j["nics"]]==[("e1000e","00:0c:29:bf:e4:5d","ethernet0")] and j["cdroms"][0]["device-type"]=="cdrom-raw"'
"$VDKIT" info "$T/multi/multi.vmx" >"$T/human" 2>&1
check "info (human) lists the disks and NICs" grep -q 'scsi0:8 .*pvscsi .*multi_1.vmdk' "$T/human"

# --- confinement ------------------------------------------------------
mkdir -p "$T/esc/vm" && mkdisk "$T/esc/outside.vmdk"
printf 'displayName = "esc"\nscsi0:0.fileName = "../outside.vmdk"\n' >"$T/esc/vm/esc.vmx"
"$VDKIT" info "$T/esc/vm/esc.vmx" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 1 ] && grep -q outside "$T/err"; then pass "a disk outside the VM folder is refused (exit 1)"; else fail "escape not refused (exit $rc)"; fi
check "--allow-dir lets it in" "$VDKIT" info --allow-dir "$T/esc" "$T/esc/vm/esc.vmx"

# --- pack a VM whose first disk is a snapshot chain --------------------
mkdir -p "$T/chain" && cp "$VMX/chain.vmx" "$T/chain/"
cd "$T/chain" || exit 1
mkdisk base.vmdk 24M
qemu-io -c "write -P 0x11 0 1M" -c "write -P 0x22 9M 3M" -c "write -P 0x44 23M 1M" base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk base-000001.vmdk
qemu-io -c "write -P 0x33 512k 1M" -c "write -z 10M 1M" base-000001.vmdk >/dev/null
mkdisk data.vmdk 8M
qemu-io -c "write -P 0x55 1M 2M" data.vmdk >/dev/null
cd "$T" || exit 1
info_json "$T/chain/chain.vmx" "$T/chain.json"
jcheck "chain: scsi0:0 is a chain of 2, scsi0:1 a single disk" "$T/chain.json" \
	'[(d["unit"],d["chain-depth"]) for d in j["disks"]]==[("scsi0:0",2),("scsi0:1",1)]'
if "$VDKIT" ova pack "$T/vm.ova" "$T/chain/chain.vmx" 2>"$T/err"; then
	pass "ova pack OUT.ova chain.vmx"
else
	fail "ova pack chain.vmx: $(head -c 300 "$T/err")"
fi
check "ova verify of the packed OVA" "$VDKIT" ova verify "$T/vm.ova"
mkdir -p "$T/x" && tar -C "$T/x" -xf "$T/vm.ova"
check "the first disk equals the consolidated chain (qemu-img compare)" qemu-img compare "$T/x/vm-disk1.vmdk" "$T/chain/base-000001.vmdk"
check "the second disk equals data.vmdk" qemu-img compare "$T/x/vm-disk2.vmdk" "$T/chain/data.vmdk"
check "the packed disks are streamOptimized, qemu-img check clean" qemu-img check -q "$T/x/vm-disk1.vmdk"
check "disk 1: ddb.adapterType lsilogic, like its OVF controller" grep -aq 'ddb.adapterType = "lsilogic"' "$T/x/vm-disk1.vmdk"
check "disk 1: ddb.virtualHWVersion 13 = virtualHW.version" grep -aq 'ddb.virtualHWVersion = "13"' "$T/x/vm-disk1.vmdk"
"$VDKIT" ova unpack -O qcow2 "$T/vm.ova" "$T/un" >/dev/null 2>"$T/err" || fail "ova unpack: $(head -c 300 "$T/err")"
check "ova unpack of the OVA gives the chain's content" qemu-img compare "$T/un/vm-disk1.qcow2" "$T/chain/base-000001.vmdk"

# --- ova unpack of the VM folder itself --------------------------------
"$VDKIT" ova unpack -O qcow2 "$T/chain/chain.vmx" "$T/vu" >"$T/out" 2>"$T/err" || fail "ova unpack chain.vmx: $(head -c 300 "$T/err")"
check "unpack VM.vmx: the chain becomes base.qcow2 with the chain's content" qemu-img compare "$T/vu/base.qcow2" "$T/chain/base-000001.vmdk"
check "unpack VM.vmx: data.qcow2 equals data.vmdk" qemu-img compare "$T/vu/data.qcow2" "$T/chain/data.vmdk"
check "unpack VM.vmx: qcow2 outputs are qemu-img check clean" qemu-img check -q "$T/vu/base.qcow2"
mkdir -p "$T/broken" && cp "$T/chain/chain.vmx" "$T/chain/base.vmdk" "$T/chain/base-000001.vmdk" "$T/broken/"
"$VDKIT" ova unpack -O raw "$T/broken/chain.vmx" "$T/bu" >/dev/null 2>&1; rc=$?
if [ $rc -eq 1 ] && [ -z "$(ls -A "$T/bu" 2>/dev/null)" ]; then
	pass "unpack VM.vmx with a missing disk fails (exit 1) and leaves nothing behind"
else
	fail "missing disk: exit $rc, left $(ls "$T/bu" 2>/dev/null)"
fi

# govmomi's OVF package reads the descriptor back.
OVFPARSE=""
if have go && [ -d /usr/share/gocode/src/github.com/vmware/govmomi/ovf ]; then
	gc=${GOCACHE:-${HOME:+$HOME/.cache/go-build}}
	if (cd "$TOP/tests/ovfparse" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
		GOCACHE="${gc:-$T/gocache}" go build -o "$T/ovfparse" .) 2>"$T/err"; then
		OVFPARSE="$T/ovfparse"
	else
		fail "building tests/ovfparse: $(head -c 300 "$T/err")"
	fi
else
	skip "go or golang-github-vmware-govmomi-dev missing: govmomi checks skipped"
fi
if [ -n "$OVFPARSE" ]; then
	if "$OVFPARSE" "$T/x/vm.ovf" >"$T/gov.json" 2>"$T/err"; then pass "govmomi parses the OVF"; else fail "govmomi: $(cat "$T/err")"; fi
	HW='j["VirtualSystem"]["VirtualHardware"][0]'
	ITEMS="$HW[\"Item\"]"
	jcheck "govmomi: vmx-13, 2 vCPUs, 3072 MiB" "$T/gov.json" \
		"$HW[\"System\"][\"VirtualSystemType\"]=='vmx-13' and [i['VirtualQuantity'] for i in $ITEMS if i['ResourceType'] in (3,4)]==[2,3072] and [i['AllocationUnits'] for i in $ITEMS if i['ResourceType']==4]==['byte * 2^20']"
	jcheck "govmomi: an lsilogic SCSI and an AHCI SATA controller" "$T/gov.json" \
		"sorted((i['ResourceType'],i['ResourceSubType']) for i in $ITEMS if i['ResourceType'] in (5,6,20))==[(6,'lsilogic'),(20,'vmware.sata.ahci')]"
	jcheck "govmomi: two disks on the SCSI controller at units 0 and 1, host resources vmdisk1/2" "$T/gov.json" \
		"(lambda s:[(i['Parent'],i['AddressOnParent'],i['HostResource'][0]) for i in $ITEMS if i['ResourceType']==17]==[(s,'0','ovf:/disk/vmdisk1'),(s,'1','ovf:/disk/vmdisk2')])([i['InstanceID'] for i in $ITEMS if i['ResourceType']==6][0])"
	jcheck "govmomi: the CD-ROM sits on the SATA controller at unit 1" "$T/gov.json" \
		"(lambda s:[(i['Parent'],i['AddressOnParent']) for i in $ITEMS if i['ResourceType']==15]==[(s,'1')])([i['InstanceID'] for i in $ITEMS if i['ResourceType']==20][0])"
	jcheck "govmomi: NICs VmxNet3 on VM Network (static MAC) and E1000e on Storage Net" "$T/gov.json" \
		"[(i['ResourceSubType'],i['Connection'],i.get('Address')) for i in $ITEMS if i['ResourceType']==10]==[('VmxNet3',['VM Network'],'00:50:56:3f:00:01'),('E1000e',['Storage Net'],None)]"
	jcheck "govmomi: NetworkSection lists both networks" "$T/gov.json" \
		"[n['Name'] for n in j['Network']['Networks']]==['VM Network','Storage Net']"
	jcheck "govmomi: OS id 80, rhel8_64Guest; name from displayName" "$T/gov.json" \
		"j['VirtualSystem']['OperatingSystem'][0]['ID']==80 and j['VirtualSystem']['OperatingSystem'][0]['OSType']=='rhel8_64Guest' and j['VirtualSystem']['Name']=='chain vm'"
	jcheck "govmomi: disk capacities are the chain's sizes" "$T/gov.json" \
		"[d['Capacity'] for d in j['Disk']['Disks']]==['25165824','8388608']"
fi
# virt-v2v's OVA reader (`-i ova --print-source` parses the package and
# prints what it would convert; no appliance is started).
if have virt-v2v; then
	if LIBGUESTFS_BACKEND=direct timeout 120 virt-v2v -i ova "$T/vm.ova" --print-source \
		>"$T/v2v.txt" 2>"$T/v2v.err"; then
		pass "virt-v2v -i ova reads the packed OVA"
		v2v() { grep -q -- "$2" "$T/v2v.txt" && pass "virt-v2v: $1" || fail "virt-v2v: $1 (got: $(tr '\n' '|' <"$T/v2v.txt" | head -c 400))"; }
		v2v "name from displayName" "source name: chain vm"
		v2v "memory 3 GiB" "memory: 3221225472"
		v2v "2 vCPUs, 1 socket x 2 cores" "cores/socket: 2"
		v2v "firmware uefi" "firmware: uefi"
		[ "$(grep -c '^\s*[0-9] \[scsi\]' "$T/v2v.txt")" = 2 ] && pass "virt-v2v: two disks on SCSI" ||
			fail "virt-v2v: disks $(grep -A3 '^disks:' "$T/v2v.txt" | tr '\n' '|')"
		v2v "the CD-ROM on SATA slot 1" "CD-ROM \[sata\] in slot 1"
		v2v "vmxnet3 NIC on VM Network with its MAC" 'Bridge "VM Network" mac: 00:50:56:3f:00:01 \[vmxnet3\]'
		v2v "e1000e NIC on Storage Net" 'Bridge "Storage Net" \[e1000e\]'
	else
		fail "virt-v2v -i ova: $(tail -3 "$T/v2v.err" | tr '\n' ' ')"
	fi
else
	skip "virt-v2v not installed: its OVA reader is not checked (apt-get install --no-install-recommends virt-v2v)"
fi
# virt-v2v's own .vmx reader against `vdkit info`: name, memory, vCPUs and
# cores, firmware, the disks' buses in order, the NICs' models and networks.
if have virt-v2v; then
	# (nvme.vmx is left out: its disk is a qcow2 file, which virt-v2v's
	# -i vmx refuses; vdkit reads it by its content.)
	for vmx in "$T/chain/chain.vmx" "$T/efi/efi-sas-sata.vmx" "$T/multi/multi.vmx"; do
		n=${vmx##*/}
		LIBGUESTFS_BACKEND=direct timeout 120 virt-v2v -i vmx "$vmx" --print-source >"$T/v2v-$n.txt" 2>"$T/v2v.err" ||
			{ fail "virt-v2v -i vmx $n: $(tail -2 "$T/v2v.err" | tr '\n' ' ')"; continue; }
		"$VDKIT" info --output=json "$vmx" >"$T/vi-$n.json" 2>/dev/null || { fail "vdkit info $n"; continue; }
		if python3 - "$T/v2v-$n.txt" "$T/vi-$n.json" >"$T/v2v.diff" 2>&1 <<'PY'
import json, re, sys
t = open(sys.argv[1]).read(); j = json.load(open(sys.argv[2]))
def f(k): m = re.search(r"^\s*" + k + r": (.*)$", t, re.M); return m.group(1).strip() if m else None
v2v = {"name": f("source name"), "memory": int(f("memory").split()[0]), "cpus": int(f("nr vCPUs")),
       "cores": int(re.search(r"cores/socket: (\d+)|$", t).group(1) or 1), "firmware": f("firmware"),
       "disks": re.findall(r"^\s*\d+ \[(\w+)\]", t.split("disks:")[1].split("removable media:")[0], re.M),
       "nics": re.findall(r'^\s*(?:Network|Bridge) "([^"]*)".*\[(\w+)\]', t.split("NICs:")[1], re.M)}
fw = {"efi": "uefi", "bios": "bios"}.get(j["firmware"], j["firmware"])
vdk = {"name": j["name"], "memory": j["memory"], "cpus": j["cpus"], "cores": j.get("cores-per-socket", 1),
       "firmware": fw, "disks": [d["bus"] for d in j["disks"] if d.get("present", True)],
       "nics": [(n["network"], n["model"]) for n in j["nics"] if n.get("present", True)]}
v2v["nics"] = [tuple(x) for x in v2v["nics"]]
bad = [k for k in vdk if vdk[k] != v2v[k]]
print("; ".join("%s: vdkit %r, virt-v2v %r" % (k, vdk[k], v2v[k]) for k in bad))
sys.exit(1 if bad else 0)
PY
		then
			pass "$n: vdkit info agrees with virt-v2v -i vmx (name, memory, vCPUs, cores, firmware, disk buses, NICs)"
		else
			fail "$n: vdkit info and virt-v2v differ: $(head -c 400 "$T/v2v.diff")"
		fi
	done
fi
check "OVF: firmware efi as vmw:Config" grep -q 'vmw:key="firmware" vmw:value="efi"' "$T/x/vm.ovf"
check "OVF: vmw:CoresPerSocket 2" grep -q '<vmw:CoresPerSocket ovf:required="false">2<' "$T/x/vm.ovf"

# --- the SAS + SATA VM: adapter types follow the controllers -----------
if "$VDKIT" ova pack "$T/efi.ova" "$T/efi/efi-sas-sata.vmx" 2>"$T/err"; then
	mkdir -p "$T/ex" && tar -C "$T/ex" -xf "$T/efi.ova"
	check "SAS disk: ddb.adapterType lsilogic, hwversion 17" grep -aq 'ddb.virtualHWVersion = "17"' "$T/ex/efi-disk1.vmdk"
	check "SATA disk: ddb.adapterType ide" grep -aq 'ddb.adapterType = "ide"' "$T/ex/efi-disk2.vmdk"
	check "OVF: lsilogicsas controller, vmx-17, secure boot" \
		grep -q 'lsilogicsas' "$T/ex/efi.ovf"
	check "OVF: secure boot as vmw:Config" grep -q 'bootOptions.efiSecureBootEnabled' "$T/ex/efi.ovf"
	check "OVF: disk 2 on the SATA controller at unit 3" grep -q '<rasd:AddressOnParent>3</rasd:AddressOnParent>' "$T/ex/efi.ovf"
	[ -n "$OVFPARSE" ] && "$OVFPARSE" "$T/ex/efi.ovf" >"$T/gov2.json" 2>/dev/null &&
		jcheck "govmomi: windows2019srv_64Guest, 4 vCPUs" "$T/gov2.json" \
			"j['VirtualSystem']['OperatingSystem'][0]['OSType']=='windows2019srv_64Guest' and [i['VirtualQuantity'] for i in j['VirtualSystem']['VirtualHardware'][0]['Item'] if i['ResourceType']==3]==[4]"
else
	fail "ova pack efi-sas-sata.vmx: $(head -c 300 "$T/err")"
fi

# --- pvscsi, lsilogic and IDE disks; an NVMe disk ----------------------
if "$VDKIT" ova pack "$T/multi.ova" "$T/multi/multi.vmx" 2>"$T/err"; then
	mkdir -p "$T/mx" && tar -C "$T/mx" -xf "$T/multi.ova"
	got=$(for i in 1 2 3 4 5; do [ -f "$T/mx/multi-disk$i.vmdk" ] && grep -ao 'ddb.adapterType = "[a-z]*"' "$T/mx/multi-disk$i.vmdk"; done | cut -d'"' -f2 | tr '\n' ' ')
	if [ "$got" = "pvscsi pvscsi lsilogic ide " ]; then pass "multi: four present disks, adapter types pvscsi pvscsi lsilogic ide"; else fail "multi: adapter types '$got'"; fi
	check "multi: pvscsi is VirtualSCSI in the OVF" grep -q '<rasd:ResourceSubType>VirtualSCSI<' "$T/mx/multi.ovf"
	check "multi: an IDE controller (ResourceType 5)" grep -q '<rasd:ResourceType>5<' "$T/mx/multi.ovf"
	check "multi: the disk at scsi0:8 keeps unit 8" grep -q '<rasd:AddressOnParent>8<' "$T/mx/multi.ovf"
	check "multi: ethernet2 (not present) is left out" test "$(grep -c '<rasd:ResourceType>10<' "$T/mx/multi.ovf")" -eq 2
	check "multi: ova verify" "$VDKIT" ova verify "$T/multi.ova"
	[ -n "$OVFPARSE" ] && { "$OVFPARSE" "$T/mx/multi.ovf" >/dev/null 2>&1 && pass "govmomi parses the multi-controller OVF" || fail "govmomi: multi.ovf"; }
else
	fail "ova pack multi.vmx: $(head -c 300 "$T/err")"
fi
if "$VDKIT" ova pack "$T/nvme.ova" "$T/nvme/nvme.vmx" 2>"$T/err"; then
	mkdir -p "$T/nx" && tar -C "$T/nx" -xf "$T/nvme.ova"
	check "nvme: an NVMe controller in the OVF" grep -q 'vmware.nvme.controller' "$T/nx/nvme.ovf"
	check "nvme: the qcow2 disk packed as VMDK with its content" qemu-img compare "$T/nx/nvme-disk1.vmdk" "$T/nvme/nvme-disk.vmdk"
else
	fail "ova pack nvme.vmx: $(head -c 300 "$T/err")"
fi

# --- bare disks keep working, and now agree with the generic OVF -------
"$VDKIT" ova pack "$T/bare.ova" "$T/chain/data.vmdk" "$T/efi/win2019.vmdk" 2>"$T/err" || fail "ova pack of bare disks: $(head -c 300 "$T/err")"
mkdir -p "$T/bx" && tar -C "$T/bx" -xf "$T/bare.ova"
check "bare disks: vmx-10 in the OVF" grep -q '<vssd:VirtualSystemType>vmx-10<' "$T/bx/bare.ovf"
check "bare disks: ddb.adapterType lsilogic like the OVF's controller" grep -aq 'ddb.adapterType = "lsilogic"' "$T/bx/bare-disk1.vmdk"
check "bare disks: ddb.virtualHWVersion 10 like vmx-10" grep -aq 'ddb.virtualHWVersion = "10"' "$T/bx/bare-disk2.vmdk"
check "bare disks: content kept" qemu-img compare "$T/bx/bare-disk1.vmdk" "$T/chain/data.vmdk"
"$VDKIT" ova pack "$T/mix.ova" "$T/chain/chain.vmx" "$T/chain/data.vmdk" >/dev/null 2>&1; rc=$?
if [ $rc -eq 2 ]; then pass "a .vmx among other disks is a usage error"; else fail "mixing .vmx and disks: exit $rc"; fi
finish
