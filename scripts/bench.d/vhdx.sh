# Sourced by scripts/bench.sh: VHDX rows. The headline row converts a 4 GiB
# flat VMDK (random data, ESXi vmfs descriptor) with vmdk2vhdx on an XFS
# reflink loop filesystem (root only), beside qemu-img's full copy (made
# durable with sync FILE: the row is always on the disk).

VHDX_IN="$BENCH_DIR/in-1g.raw"
[ -f "$VHDX_IN" ] || bin/vdk-gen "$VHDX_IN" $((1 << 30)) 1
[ -f "$BENCH_DIR/in-1g.vhdx" ] ||
	qemu-img convert -O vhdx -o subformat=dynamic "$VHDX_IN" "$BENCH_DIR/in-1g.vhdx"

bench_row "raw -> vhdx dynamic, 1 GiB sparse" \
	"$VDKIT convert -q -O vhdx $VHDX_IN $BENCH_DIR/out.vhdx" \
	"qemu-img convert -O vhdx -o subformat=dynamic $VHDX_IN $BENCH_DIR/out.vhdx"
bench_row "vhdx (qemu-made) -> raw, 1 GiB sparse" \
	"$VDKIT convert -q -O raw $BENCH_DIR/in-1g.vhdx $BENCH_DIR/out.raw" \
	"qemu-img convert -O raw $BENCH_DIR/in-1g.vhdx $BENCH_DIR/out.raw"

vhdx_bench_xfs() {
	if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs >/dev/null; then
		echo "| vmdk2vhdx 4 GiB flat on XFS reflink: skipped (needs root and mkfs.xfs)"
		return
	fi
	# On the real disk, not tmpfs: it holds up to 12 GiB.
	local img="$TOP/bench-out/xfs.img" X="$TOP/bench-out/xfs" loop
	mkdir -p "$X" "$TOP/bench-out"
	rm -f "$img"
	truncate -s 24G "$img" # qemu-img needs room for a full copy (and more)
	mkfs.xfs -q -m reflink=1 "$img" >/dev/null || { echo "| XFS bench: mkfs.xfs failed"; return; }
	loop=$(losetup -f --show "$img") || { echo "| XFS bench: no loop device"; return; }
	trap 'umount "'"$X"'" 2>/dev/null; losetup -d "'"$loop"'" 2>/dev/null' EXIT
	mount "$loop" "$X" || { losetup -d "$loop"; echo "| XFS bench: mount failed"; return; }
	openssl enc -aes-128-ctr -pass pass:vdkit -nosalt -pbkdf2 </dev/zero 2>/dev/null |
		head -c $((4 << 30)) >"$X/disk-flat.vmdk"
	printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="vmfs"\n\nRW %d VMFS "disk-flat.vmdk"\n\nddb.adapterType = "lsilogic"\n' \
		$(((4 << 30) / 512)) >"$X/disk.vmdk"
	sync
	bench_row "vmdk2vhdx 4 GiB flat VMDK, XFS reflink" \
		"rm -f $X/out.vhdx; $TOP/bin/vmdk2vhdx -q $X/disk.vmdk $X/out.vhdx" \
		"rm -f $X/out.vhdx; qemu-img convert -f vmdk -O vhdx -o subformat=dynamic $X/disk.vmdk $X/out.vhdx && sync $X/out.vhdx"
	umount "$X"
	losetup -d "$loop"
	trap - EXIT
	rm -f "$img"
}
vhdx_bench_xfs
