#!/usr/bin/env bash
# make fuzz: every libFuzzer harness for FUZZ_SECONDS each, FUZZ_JOBS at a
# time (one core each), then a table of executions per second, corpus
# growth and findings. New inputs go to fuzz/work/NAME (ignored); the
# committed seed corpus is read, never written. Every run is appended to
# fuzz/LOG.tsv (commit, harness, seconds, runs, findings), so the hours a
# harness has run without a finding add up across sessions; the table's
# last column is that total. FUZZ_ONLY=REGEX picks harnesses; FUZZ_REPORT=1
# prints the table of this commit's logged runs without fuzzing.
# Exit 1 when any harness found a crash, leak or timeout (in fuzz/crashers/).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
LOG=fuzz/LOG.tsv
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p fuzz/work
[ -f "$LOG" ] || printf 'date\tcommit\tharness\tseconds\truns\tfindings\n' >"$LOG"

run_one() {
	local f=$1 n=${1##*/fuzz_}
	mkdir -p "fuzz/work/$n" "fuzz/crashers/$n"
	local before
	before=$(find "fuzz/crashers/$n" -type f | wc -l)
	local t0=$SECONDS
	"$f" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
		-artifact_prefix="fuzz/crashers/$n/" "fuzz/work/$n" "fuzz/corpus/$n" \
		>"fuzz/work/$n.log" 2>&1
	local rc=$? runs secs found
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/work/$n.log" | tail -1)
	secs=$(sed -n 's/^stat::.*//; s/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "fuzz/work/$n.log" | tail -1)
	found=$(($(find "fuzz/crashers/$n" -type f | wc -l) - before))
	[ "$rc" = 0 ] || [ "$found" -gt 0 ] || found=1
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$commit" "$n" "${secs:-$((SECONDS - t0))}" \
		"${runs:-0}" "$found" >>"$LOG"
}

harnesses=()
for f in fuzz/bin/fuzz_*; do
	[ -x "$f" ] || continue
	[ -z "${FUZZ_ONLY:-}" ] || [[ "${f##*/fuzz_}" =~ $FUZZ_ONLY ]] || continue
	harnesses+=("$f")
done
if [ "${FUZZ_REPORT:-0}" = 0 ]; then
	echo "fuzz: ${#harnesses[@]} harnesses, ${SECONDS_EACH}s each, $JOBS at a time"
	for f in "${harnesses[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
		run_one "$f" &
	done
	wait
fi

printf '| %-14s | %10s | %8s | %8s | %8s | %s\n' harness runs exec/s corpus findings \
	"hours without a finding (all runs logged)"
bad=0
for f in "${harnesses[@]}"; do
	n=${f##*/fuzz_}
	line=$(awk -F'\t' -v n="$n" -v c="$commit" '$3 == n && $2 == c { l = $0 } END { print l }' "$LOG")
	IFS=$'\t' read -r _ _ _ secs runs found <<<"$line"
	total=$(awk -F'\t' -v n="$n" '$3 == n && $6 == 0 { s += $4 } END { printf "%.2f", s / 3600 }' "$LOG")
	corpus=$(find "fuzz/work/$n" -type f | wc -l)
	printf '| %-14s | %10s | %8s | %8s | %8s | %s\n' "$n" "$runs" \
		"$(awk -v r="$runs" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? r / s : 0) }')" \
		"$corpus" "$found" "$total"
	[ "${found:-1}" = 0 ] || { bad=1; echo "  $n: see fuzz/work/$n.log and fuzz/crashers/$n/"; }
done
exit $bad
