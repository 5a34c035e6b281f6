# Sourced by scripts/bench.sh: VHD rows. raw -> Azure fixed VHD (a clone or
# in-kernel copy of the payload plus a footer), raw -> dynamic VHD, a
# qemu-made dynamic VHD -> raw, and the in-place Azure conversion (a
# footer appended to a copy of the raw file) against qemu-img's full copy.

VHD_RAW="$BENCH_DIR/in-1g.raw"
[ -f "$VHD_RAW" ] || bin/vdk-gen "$VHD_RAW" $((1 << 30)) 1
[ -f "$BENCH_DIR/in-1g.vhd" ] || qemu-img convert -f raw -O vpc "$VHD_RAW" "$BENCH_DIR/in-1g.vhd"

bench_row "raw -> vhd azure (fixed), 1 GiB 45% data" \
	"$VDKIT convert -q -f raw -O vpc -o azure=on $VHD_RAW $BENCH_DIR/out.vhd" \
	"qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on $VHD_RAW $BENCH_DIR/out.vhd" \
	"cp --sparse=always $VHD_RAW $BENCH_DIR/out.vhd"
bench_row "raw -> vhd dynamic, 1 GiB 45% data" \
	"$VDKIT convert -q -f raw -O vpc $VHD_RAW $BENCH_DIR/out.vhd" \
	"qemu-img convert -f raw -O vpc $VHD_RAW $BENCH_DIR/out.vhd"
bench_row "vhd dynamic (qemu-made) -> raw, 1 GiB" \
	"$VDKIT convert -q -f vpc -O raw $BENCH_DIR/in-1g.vhd $BENCH_DIR/out.raw" \
	"qemu-img convert -f vpc -O raw $BENCH_DIR/in-1g.vhd $BENCH_DIR/out.raw"
# In place: the copy that gives each run a fresh raw file is timed on both
# sides (cp --reflink=auto --sparse=always), so the difference is the work.
bench_row "raw -> azure vhd in place (incl. cp of input)" \
	"cp --reflink=auto --sparse=always $VHD_RAW $BENCH_DIR/out-ip.raw && $VDKIT convert -q --in-place -f raw -O vpc -o azure=on $BENCH_DIR/out-ip.raw" \
	"cp --reflink=auto --sparse=always $VHD_RAW $BENCH_DIR/out-ip.raw && qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on $BENCH_DIR/out-ip.raw $BENCH_DIR/out-ip.vhd"
