#!/usr/bin/env bash
# make bench-scale: how the cost of a conversion grows with the work, for
# vdkit and qemu-img side by side (issue 14's scale table). Rows may take
# minutes; not part of make check. Everything runs on the real disk (an
# 8 TiB input must stay sparse; tmpfs would also hide the writes), with
# every output made durable: vdkit fsyncs, other commands are followed by
# `sync FILE` on each output. Each command runs SCALE_RUNS times (default
# 1), outputs removed and `sync` before each run; the table gives the
# median wall time, the peak RSS and the bytes the outputs allocate
# (du --block-size=1). vdkit's RSS must stay <= 64 MiB: a row above it is
# marked. SCALE_ONLY=REGEX picks row groups (empty, scattered, xfs, ova).
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
VDKIT="$TOP/bin/vdkit"
S=${SCALE_DIR:-$TOP/bench-out/scale}
RUNS=${SCALE_RUNS:-1}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench-scale: /usr/bin/time missing (apt-get install time)"; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-scale: qemu-img missing"; exit 1; }
mkdir -p "$S"

only() { [ -z "${SCALE_ONLY:-}" ] || [[ "$1" =~ $SCALE_ONLY ]]; }

# OUT is where the outputs of the current group go (out* under it).
OUT=$S
scale_sync() { find "$OUT" -maxdepth 2 -path "$OUT/out*" -type f -exec sync {} +; }

# scale_cmd CMD -> "seconds maxrss_kib allocated_bytes" of one run
scale_cmd() {
	local c=$1
	rm -rf "$OUT"/out*
	sync
	[[ "$c" == *"$TOP/bin/"* ]] || c="($c) && find '$OUT' -maxdepth 2 -path '$OUT/out*' -type f -exec sync {} +"
	if ! $TIME -f "%e %M" -o "$S/.time" bash -c "$c" >/dev/null 2>"$S/.err"; then
		echo "failed: $(head -c 120 "$S/.err" | tr '\n' ' ')"
		return
	fi
	echo "$(cat "$S/.time") $(du -scB1 "$OUT"/out* 2>/dev/null | tail -1 | cut -f1)"
}

# scale_row LABEL TOOL CMD: one table row (median of RUNS)
scale_row() {
	local label=$1 tool=$2 cmd=$3 r line t="" m=0 z=0 mark=""
	for ((r = 0; r < RUNS; r++)); do
		line=$(scale_cmd "$cmd")
		if [[ "$line" == failed* ]]; then
			printf '| %-48s | %-13s | %s |\n' "$label" "$tool" "$line"
			return
		fi
		read -r tt mm zz <<<"$line"
		t+="$tt"$'\n'
		[ "$mm" -gt "$m" ] && m=$mm
		z=$zz
	done
	t=$(printf '%s' "$t" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	[ "$tool" = vdkit ] && [ "$m" -gt $((64 * 1024)) ] && mark=" (over 64 MiB)"
	printf '| %-48s | %-13s | %8ss | %6d MiB%s | %15s |\n' "$label" "$tool" "$t" $((m / 1024)) "$mark" "$z"
}

# Both tools on one conversion: scale_pair LABEL "VDKIT ARGS" "QEMU ARGS"
scale_pair() {
	scale_row "$1" vdkit "$VDKIT convert -q $2"
	scale_row "$1" qemu-img "qemu-img convert $3"
}

# Output formats: name, size of the empty disk, vdkit -O args, qemu-img -O
# args, extension. VMDK's single sparse extent holds less than 2 TiB (grain
# tables hold 32-bit sector offsets; vdkit refuses more, qemu-img writes
# it): 2047 GiB there, and 8 TiB as twoGbMaxExtentSparse (4096 extent
# files). VHD's BAT and CHS geometry top out at 2040 GiB (qemu-img's limit
# too): vpc gets that maximum.
FORMATS=(
	"raw|8T|-O raw|-O raw|raw"
	"qcow2|8T|-O qcow2|-O qcow2|qcow2"
	"vmdk streamOptimized|2047G|-O vmdk -o subformat=streamOptimized|-O vmdk -o subformat=streamOptimized|vmdk"
	"vmdk monolithicSparse|2047G|-O vmdk|-O vmdk|vmdk"
	"vmdk twoGbMaxExtentSparse|8T|-O vmdk -o subformat=twoGbMaxExtentSparse|-O vmdk -o subformat=twoGbMaxExtentSparse|vmdk"
	"vhdx|8T|-O vhdx|-O vhdx -o subformat=dynamic|vhdx"
	"vpc (dynamic)|2040G|-O vpc|-O vpc|vhd"
)

scale_size() { case $1 in *T) echo "${1%T} TiB" ;; *G) echo "${1%G} GiB" ;; *) echo "$1" ;; esac; }

scale_empty() {
	local f name size va qa ext in
	for f in "${FORMATS[@]}"; do
		IFS='|' read -r name size va qa ext <<<"$f"
		in=$S/in-empty-$size.raw
		[ -f "$in" ] || truncate -s "$size" "$in"
		scale_pair "empty $(scale_size "$size") -> $name" "-f raw $va $in $S/out.$ext" \
			"-f raw $qa $in $S/out.$ext"
	done
	rm -f "$S"/in-empty-*.raw
}

# ~2 TiB (2040 GiB, so that every format takes it, VHD and single-extent
# VMDK included) with 1 GiB of data in 4096 pieces of 256 KiB at
# pseudo-random 256 KiB-aligned offsets (seeded: the same disk every time).
scale_scattered_input() {
	local in=$S/in-2t.raw src=$S/src-1g.raw i pos
	[ -f "$in" ] && return
	bin/vdk-gen -d 100 "$src" $((1 << 30)) 7
	truncate -s 2040G "$in.tmp"
	RANDOM=14
	for ((i = 0; i < 4096; i++)); do
		# 2040 GiB / 256 KiB slots; two draws of 15 bits cover them.
		pos=$((((RANDOM << 15) | RANDOM) % (2040 << 12)))
		dd if="$src" of="$in.tmp" bs=256K skip=$i seek=$pos count=1 conv=notrunc status=none
	done
	rm -f "$src"
	mv "$in.tmp" "$in"
}

scale_scattered() {
	scale_scattered_input
	local f name size va qa ext
	for f in "${FORMATS[@]}"; do
		IFS='|' read -r name size va qa ext <<<"$f"
		[ "$name" = "vmdk twoGbMaxExtentSparse" ] && continue
		scale_pair "2040 GiB, 1 GiB scattered -> $name" \
			"-f raw $va $S/in-2t.raw $S/out.$ext" "-f raw $qa $S/in-2t.raw $S/out.$ext"
	done
}

# A 16 GiB file of 100,000 extents on a reflink XFS: every 168 KiB piece
# is a clone of one of two source blocks with a piece between them on disk
# (adjacent blocks merged pairs into 50,000 extents), so XFS can never
# merge neighbouring pieces. du counts shared blocks: a clone "allocates"
# the full size there, while the filesystem's free space barely moves.
scale_xfs_input() {
	local X=$1 i b piece=$((168 << 10)) n=100000 cmds=()
	bin/vdk-gen -d 100 -k text "$X/src" $((3 * piece)) 3
	xfs_io -f -c "truncate $((n * piece))" "$X/in-100k.raw"
	for ((i = 0; i < n; i++)); do
		b=$(((i % 2) * 2 * piece))
		cmds+=(-c "reflink $X/src $b $((i * piece)) $piece")
		if [ ${#cmds[@]} -ge 8000 ] || [ $i = $((n - 1)) ]; then
			xfs_io "${cmds[@]}" "$X/in-100k.raw" >/dev/null || return 1
			cmds=()
		fi
	done
	sync
}

scale_xfs() {
	if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs >/dev/null || ! command -v xfs_io >/dev/null; then
		echo "| 16 GiB, 100,000 extents on XFS: skipped (needs root, mkfs.xfs and xfs_io)"
		return
	fi
	local img=$S/xfs.img X=$S/xfs loop
	mkdir -p "$X"
	rm -f "$img"
	truncate -s 48G "$img" # room for a full 16 GiB copy should a tool not clone
	mkfs.xfs -q -m reflink=1 "$img" >/dev/null || { echo "| XFS: mkfs.xfs failed"; return; }
	loop=$(losetup -f --show "$img") || { echo "| XFS: no loop device"; rm -f "$img"; return; }
	trap 'umount "'"$X"'" 2>/dev/null; losetup -d "'"$loop"'" 2>/dev/null; rm -f "'"$img"'"' EXIT
	if mount "$loop" "$X" && scale_xfs_input "$X"; then
		echo "| (input: $(xfs_io -c 'fiemap' "$X/in-100k.raw" | tail -n +2 | wc -l) extents in $(stat -c %s "$X/in-100k.raw") bytes)"
		OUT=$X
		scale_row "16 GiB, 100k extents, XFS -> raw (clone)" vdkit \
			"$VDKIT convert -q -f raw -O raw $X/in-100k.raw $X/out.raw"
		scale_row "16 GiB, 100k extents, XFS -> raw (clone)" qemu-img \
			"qemu-img convert -f raw -O raw $X/in-100k.raw $X/out.raw"
		scale_row "16 GiB, 100k extents, XFS -> raw (clone)" "cp --reflink" \
			"cp --reflink=always $X/in-100k.raw $X/out.raw"
		scale_row "16 GiB, 100k extents, XFS -> streamOptimized" vdkit \
			"$VDKIT convert -q -f raw -O vmdk -o subformat=streamOptimized $X/in-100k.raw $X/out.vmdk"
		# qemu-img's single zlib thread takes minutes here: on request.
		if [ "${SCALE_SLOW:-0}" = 1 ]; then
			scale_row "16 GiB, 100k extents, XFS -> streamOptimized" qemu-img \
				"qemu-img convert -f raw -O vmdk -o subformat=streamOptimized $X/in-100k.raw $X/out.vmdk"
		fi
		rm -rf "$X"/out*
		OUT=$S
	else
		echo "| XFS: mount or input failed"
	fi
	umount "$X"
	losetup -d "$loop"
	trap - EXIT
	rm -f "$img"
}

# An OVA of four 256 MiB disks (~45% data each), packed by vdkit.
scale_ova() {
	local d=$S/ova-in i
	if [ ! -f "$S/in-4.ova" ]; then
		mkdir -p "$d"
		for i in 1 2 3 4; do bin/vdk-gen "$d/disk$i.raw" $((256 << 20)) $i; done
		"$VDKIT" ova pack --name scale -f raw "$S/in-4.ova" "$d"/disk{1,2,3,4}.raw >/dev/null ||
			{ echo "| OVA: ova pack failed"; return; }
		rm -rf "$d"
	fi
	local x="mkdir -p $S/out-x && tar -xf $S/in-4.ova -C $S/out-x"
	scale_row "OVA, 4 disks x 256 MiB: unpack -> qcow2" vdkit \
		"$VDKIT ova unpack -O qcow2 $S/in-4.ova $S/out-u"
	scale_row "OVA, 4 disks x 256 MiB: unpack -> qcow2" "tar+qemu-img" \
		"$x && for v in $S/out-x/*.vmdk; do qemu-img convert -O qcow2 \$v \$v.qcow2; done"
	scale_row "OVA, 4 disks x 256 MiB: verify" vdkit "$VDKIT ova verify $S/in-4.ova"
	scale_row "OVA, 4 disks x 256 MiB: verify" "tar+sha256sum" \
		"$x && cd $S/out-x && sha256sum -- * >/dev/null"
}

echo "vdkit $(git rev-parse --short HEAD 2>/dev/null) vs $(qemu-img --version | head -1), $(nproc) CPUs, median of $RUNS, in $S ($(stat -f -c %T "$S"))"
printf '| %-48s | %-13s | %9s | %10s | %15s |\n' "row" "tool" "time" "peak RSS" "allocated bytes"
echo "|--------------------------------------------------|---------------|-----------|------------|-----------------|"
only empty && scale_empty
only scattered && scale_scattered
only xfs && scale_xfs
only ova && scale_ova
rm -rf "$S"/out*
