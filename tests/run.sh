#!/usr/bin/env bash
# Runs every unit test program and integration script, counts ok/not ok lines
# and ends with "N passed, N failed" (plus skipped). Exit 1 on any failure.
set -u
cd "$(dirname "$0")/.."
pass=0 failn=0 skipn=0 crashed=0
times=()
log=$(mktemp)
run_one() {
	local name=$1; shift
	echo "== $name"
	local t0=$EPOCHREALTIME
	"$@" >"$log" 2>&1
	local rc=$?
	cat "$log"
	# Wall time per program, so the slow ones show in every CI log.
	local ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
	echo "# $name: $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
	times+=("$ms $name")
	local p f s
	p=$(grep -c '^ok - ' "$log"); f=$(grep -c '^not ok - ' "$log"); s=$(grep -c '^skip - ' "$log")
	pass=$((pass + p)); failn=$((failn + f)); skipn=$((skipn + s))
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name exited with status $rc"
		failn=$((failn + 1))
	fi
}
only=${TESTS:-}
# bin/tsan/ holds ThreadSanitizer builds: any race report fails the program.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
for t in bin/tests/test_* bin/tsan/test_* bin/asan/test_*; do
	[ -x "$t" ] || continue
	[ -n "$only" ] && [[ ! "$t" =~ $only ]] && continue
	run_one "$t" "$t"
done
for t in fuzz/bin/replay_*; do
	[ -x "$t" ] || continue
	[ -n "$only" ] && [[ ! "$t" =~ $only ]] && continue
	n=${t##*/replay_}
	run_one "$t" "$t" fuzz/corpus/"$n" fuzz/crashers/"$n"
done
for t in tests/it_*.sh; do
	[ -f "$t" ] || continue
	[ -n "$only" ] && [[ ! "$t" =~ $only ]] && continue
	run_one "$t" bash "$t"
done
rm -f "$log"
echo
echo "# slowest programs (ms):"
printf '%s\n' "${times[@]}" | sort -rn | head -8 | sed 's/^/#   /'
echo "$pass passed, $failn failed, $skipn skipped"
[ "$failn" -eq 0 ]
