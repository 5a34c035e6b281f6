#!/usr/bin/env bash
# make bench: vdkit and qemu-img side by side on the same generated inputs.
# Each row runs every command RUNS times, alternating, outputs removed
# between runs (page cache warm: the inputs were just written), and prints
# median wall time, speed-up (qemu-img time / vdkit time) and peak RSS.
# Rows come from scripts/bench.d/*.sh, which call bench_row.
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
VDKIT="$TOP/bin/vdkit"
# tmpfs by default: the figures then measure the converters, not the VM disk
# (qemu-img does not fsync its output; vdkit does, by design).
if [ -z "${BENCH_DIR:-}" ] && [ -d /dev/shm ]; then BENCH_DIR=/dev/shm/vdkit-bench; fi
export BENCH_DIR=${BENCH_DIR:-$TOP/bench-out}
RUNS=${RUNS:-3}
mkdir -p "$BENCH_DIR"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
command -v qemu-img >/dev/null || { echo "bench: qemu-img missing (apt-get install qemu-utils)"; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run_timed CMD -> "seconds maxrss_kib"
run_timed() {
	rm -rf "$BENCH_DIR"/out* "$BENCH_DIR"/.out* 2>/dev/null
	sync
	$TIME -f "%e %M" -o "$BENCH_DIR/.time" bash -c "$1" >/dev/null 2>"$BENCH_DIR/.err" ||
		{ echo "bench: failed: $1" >&2; cat "$BENCH_DIR/.err" >&2; echo "nan 0"; return; }
	cat "$BENCH_DIR/.time"
}

# bench_row LABEL VDKIT_CMD QEMU_CMD [FLOOR_CMD]
bench_row() {
	local label=$1; shift
	local -a cmds=("$@") times rss
	local i r
	for ((i = 0; i < ${#cmds[@]}; i++)); do times[i]=""; rss[i]=0; done
	for ((r = 0; r < RUNS; r++)); do
		for ((i = 0; i < ${#cmds[@]}; i++)); do
			read -r t m < <(run_timed "${cmds[i]}")
			times[i]+="$t"$'\n'
			[ "${m:-0}" -gt "${rss[i]}" ] && rss[i]=$m
		done
	done
	local tv tq tf=""
	tv=$(printf '%s' "${times[0]}" | median); tq=$(printf '%s' "${times[1]}" | median)
	[ ${#cmds[@]} -gt 2 ] && tf=$(printf '%s' "${times[2]}" | median)
	local ratio
	ratio=$(awk -v a="$tq" -v b="$tv" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "inf" }')
	printf '| %-44s | %7ss | %7ss | %8s | %6d MiB | %6d MiB | %s\n' "$label" "$tv" "$tq" "$ratio" \
		$((rss[0] / 1024)) $((rss[1] / 1024)) "${tf:+floor (cp) ${tf}s}"
}

echo "vdkit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null) vs $(qemu-img --version | head -1), $(nproc) CPUs, median of $RUNS"
printf '| %-44s | %8s | %8s | %8s | %10s | %10s |\n' "conversion" "vdkit" "qemu-img" "speed-up" "vdkit RSS" "qemu RSS"
printf '|%s|\n' "----------------------------------------------|----------|----------|----------|------------|------------"

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
