#!/usr/bin/env bash
# make bench: vdkit and qemu-img side by side on the same generated inputs.
# Each row runs every command RUNS times, alternating, outputs removed and
# `sync` before each run (page cache warm for every tool alike: the inputs
# were just written), and prints median wall time, speed-up (qemu-img time /
# vdkit time), peak RSS and the outputs' allocated size (du).
# Rows come from scripts/bench.d/*.sh, which call bench_row.
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
VDKIT="$TOP/bin/vdkit"
# tmpfs by default: the figures then measure the converters, not the VM disk.
# BENCH_DISK=1 runs the same rows on the real disk (BENCH_DIR defaults to
# bench-out/ in the tree, ext4 on this VM) with every output made durable:
# vdkit fsyncs by design, every other command is followed by `sync FILE` on
# each output file (qemu-img never fsyncs a raw output by default).
BENCH_DISK=${BENCH_DISK:-0}
if [ -z "${BENCH_DIR:-}" ] && [ "$BENCH_DISK" = 0 ] && [ -d /dev/shm ]; then
	BENCH_DIR=/dev/shm/vdkit-bench
fi
export BENCH_DIR=${BENCH_DIR:-$TOP/bench-out}
RUNS=${RUNS:-3}
mkdir -p "$BENCH_DIR"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
command -v qemu-img >/dev/null || { echo "bench: qemu-img missing (apt-get install qemu-utils)"; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# fsync every output file (out*, also inside out* directories).
BENCH_SYNC="find $BENCH_DIR -maxdepth 2 -path '$BENCH_DIR/out*' -type f -exec sync {} +"

# durable CMD -> CMD, followed by the fsync of its outputs in disk mode
# unless it is one of vdkit's own programs (they fsync before the rename).
durable() {
	if [ "$BENCH_DISK" = 0 ] || [[ "$1" == *"$TOP/bin/"* ]]; then
		printf '%s' "$1"
	else
		printf '(%s) && %s' "$1" "$BENCH_SYNC"
	fi
}

# run_timed CMD -> "seconds maxrss_kib output_bytes_allocated"
run_timed() {
	rm -rf "$BENCH_DIR"/out* "$BENCH_DIR"/.out* 2>/dev/null
	sync
	$TIME -f "%e %M" -o "$BENCH_DIR/.time" bash -c "$(durable "$1")" >/dev/null 2>"$BENCH_DIR/.err" ||
		{ echo "bench: failed: $1" >&2; cat "$BENCH_DIR/.err" >&2; echo "nan 0 0"; return; }
	local sz
	sz=$(du -scB1 "$BENCH_DIR"/out* 2>/dev/null | tail -1 | cut -f1)
	echo "$(cat "$BENCH_DIR/.time") ${sz:-0}"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# bench_row LABEL VDKIT_CMD QEMU_CMD [[NAME::]CMD ...]
# Extra commands run in the same alternation and are printed after the
# table columns as "NAME T s (ratio)": for a floor ("floor..." names, and an
# unnamed third command, which is the cp floor) the ratio is vdkit's time
# over the floor's (target <= 1.15), for any other its time over vdkit's.
bench_row() {
	local label=$1; shift
	local -a cmds=() names=() times rss size
	local i r a
	for a in "$@"; do
		if [[ "$a" == *::* ]]; then names+=("${a%%::*}"); cmds+=("${a#*::}")
		else names+=("floor (cp)"); cmds+=("$a"); fi
	done
	for ((i = 0; i < ${#cmds[@]}; i++)); do times[i]=""; rss[i]=0; size[i]=0; done
	for ((r = 0; r < RUNS; r++)); do
		for ((i = 0; i < ${#cmds[@]}; i++)); do
			read -r t m z < <(run_timed "${cmds[i]}")
			times[i]+="$t"$'\n'
			[ "${m:-0}" -gt "${rss[i]}" ] && rss[i]=$m
			size[i]=${z:-0}
		done
	done
	local -a med
	for ((i = 0; i < ${#cmds[@]}; i++)); do med[i]=$(printf '%s' "${times[i]}" | median); done
	local ratio extra="" x
	ratio=$(awk -v a="${med[1]}" -v b="${med[0]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "inf" }')
	for ((i = 2; i < ${#cmds[@]}; i++)); do
		if [[ "${names[i]}" == floor* ]]; then
			x=$(awk -v v="${med[0]}" -v f="${med[i]}" 'BEGIN { if (f > 0) printf "vdkit %.2fx of it", v / f }')
		else
			x=$(awk -v v="${med[0]}" -v q="${med[i]}" 'BEGIN { if (v > 0) printf "speed-up %.2fx", q / v }')
		fi
		extra+="${extra:+; }${names[i]} ${med[i]}s ($x, $(mib "${size[i]}") MiB)"
	done
	printf '| %-44s | %7ss | %7ss | %8s | %6d MiB | %6d MiB | %8s | %8s | %s\n' "$label" \
		"${med[0]}" "${med[1]}" "$ratio" $((rss[0] / 1024)) $((rss[1] / 1024)) \
		"$(mib "${size[0]}")" "$(mib "${size[1]}")" "$extra"
}

where="$BENCH_DIR ($(stat -f -c %T "$BENCH_DIR" 2>/dev/null))"
[ "$BENCH_DISK" = 0 ] || where+=", outputs durable (vdkit fsyncs; others + sync FILE)"
echo "vdkit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null) vs $(qemu-img --version | head -1), $(nproc) CPUs, median of $RUNS, in $where"
printf '| %-44s | %8s | %8s | %8s | %10s | %10s | %8s | %8s | %s\n' "conversion" "vdkit" "qemu-img" \
	"speed-up" "vdkit RSS" "qemu RSS" "vdkit MiB" "qemu MiB" "others (same runs)"
printf '|%s|\n' "----------------------------------------------|----------|----------|----------|------------|------------|-----------|-----------|-------------------"

# BENCH_ONLY=REGEX limits the rows to files (and "raw") matching it.
only() { [ -z "${BENCH_ONLY:-}" ] || [[ "$1" =~ $BENCH_ONLY ]]; }

# raw -> raw: a sparse 1 GiB image, ~45% data.
if only raw; then
[ -f "$BENCH_DIR/in-1g.raw" ] || bin/vdk-gen "$BENCH_DIR/in-1g.raw" $((1 << 30)) 1
bench_row "raw -> raw, 1 GiB sparse (45% data)" \
	"$VDKIT convert -q -O raw $BENCH_DIR/in-1g.raw $BENCH_DIR/out.raw" \
	"qemu-img convert -O raw $BENCH_DIR/in-1g.raw $BENCH_DIR/out.raw" \
	"cp --sparse=always $BENCH_DIR/in-1g.raw $BENCH_DIR/out.raw"
bench_row "raw -> raw, 1 GiB, --clone=never" \
	"$VDKIT convert -q --clone=never -O raw $BENCH_DIR/in-1g.raw $BENCH_DIR/out.raw" \
	"qemu-img convert -O raw $BENCH_DIR/in-1g.raw $BENCH_DIR/out.raw"
fi

for f in scripts/bench.d/*.sh; do
	if [ -f "$f" ] && only "$f"; then source "$f"; fi
done
