# OVA rows (sourced by scripts/bench.sh): unpack of an OVA holding a 1 GiB
# streamOptimized disk to qcow2, with manifest verification, against the
# same unpack without it (target: verify <= 1.15x), and against tar -x +
# qemu-img convert.
ova_bench_input() {
	local d=$BENCH_DIR/ova-in
	[ -f "$BENCH_DIR/in-1g.ova" ] && return 0
	mkdir -p "$d"
	[ -f "$BENCH_DIR/in-1g.raw" ] || bin/vdk-gen "$BENCH_DIR/in-1g.raw" $((1 << 30)) 1
	qemu-img convert -O vmdk -o subformat=streamOptimized "$BENCH_DIR/in-1g.raw" "$d/disk1.vmdk" || return 1
	cat >"$d/vm.ovf" <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References>
  <DiskSection><Info>disk</Info>
    <Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="bench"><Info>vm</Info><Name>bench</Name></VirtualSystem>
</Envelope>
OVF
	(cd "$d" && for f in vm.ovf disk1.vmdk; do echo "SHA256($f)= $(sha256sum "$f" | cut -d' ' -f1)"; done >vm.mf &&
		tar -cf "$BENCH_DIR/in-1g.ova" vm.ovf vm.mf disk1.vmdk)
}

if only ova && ova_bench_input; then
	bench_row "ova unpack -> qcow2 (1 GiB SO), verify vs not" \
		"$VDKIT ova unpack -O qcow2 $BENCH_DIR/in-1g.ova $BENCH_DIR/out-u" \
		"$VDKIT ova unpack --no-verify -O qcow2 $BENCH_DIR/in-1g.ova $BENCH_DIR/out-u"
	bench_row "ova unpack -> qcow2 vs tar -x + qemu-img" \
		"$VDKIT ova unpack -O qcow2 $BENCH_DIR/in-1g.ova $BENCH_DIR/out-u" \
		"mkdir -p $BENCH_DIR/out-x && tar -xf $BENCH_DIR/in-1g.ova -C $BENCH_DIR/out-x && qemu-img convert -O qcow2 $BENCH_DIR/out-x/disk1.vmdk $BENCH_DIR/out-x/disk1.qcow2"
fi
