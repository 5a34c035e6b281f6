# A gated NBD export (sourced by tests that send a signal or change a file
# mid-conversion): nbdkit's eval plugin serves FILE, and every request at
# past offset HALF (any of its bytes) waits until the test opens the gate. The test waits
# until the conversion is really held there, does what it must (a signal,
# a change of the source), then opens the gate: the conversion can never
# finish first, so these tests always assert instead of skipping.
#
# gate_serve NAME FILE HALF [r|w]: reads (r) or writes (w) wait; sets
# GATE_URI and GATE_PID. gate_held NAME: waits (10 s at most) until a
# request is held. gate_open NAME. gate_stop.
# The server is stopped by its pid on every exit path (the EXIT trap), and
# a held request also gives up once the test's folder is gone, so neither
# nbdkit nor one of its eval shells outlives a test that failed early.
GATE_PID=""
GATE_NAMES=()
# Chained before whatever EXIT trap the test already set (lib.sh's, or
# its own cleanup).
eval "set -- $(trap -p EXIT)"
GATE_PREV_TRAP=${3:-}
trap 'gate_stop; eval "$GATE_PREV_TRAP"' EXIT
gate_serve() {
	local name=$1 file=$2 half=$3 mode=${4:-r}
	local g="$T/$name"
	rm -f "$g.open" "$g.held" "$g.sock" "$g.pid"
	GATE_NAMES+=("$name")
	local wait="if [ \$((\$4 + \$3)) -gt $half ]; then : >'$g.held'; while [ ! -e '$g.open' ] && [ -d '$T' ]; do sleep 0.01; done; fi"
	local io=(pread="dd if='$file' skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none")
	[ "$mode" = r ] && io=(pread="$wait; ${io[0]#pread=}")
	[ "$mode" = w ] && io+=(can_write="exit 0" can_flush="exit 0" flush="exit 0"
		pwrite="$wait; dd of='$file' seek=\$4 oflag=seek_bytes conv=notrunc status=none")
	# A daemon (-P), not a job of this shell: stopping it prints nothing.
	nbdkit -P "$g.pid" -U "$g.sock" eval get_size="stat -L -c %s '$file'" "${io[@]}" \
		2>"$g.log" || return 1
	GATE_PID=$(cat "$g.pid")
	GATE_URI="nbd+unix:///?socket=$g.sock"
}
gate_held() {
	local i
	for i in $(seq 1 1000); do [ -e "$T/$1.held" ] && return 0; sleep 0.01; done
	return 1
}
gate_open() { : >"$T/$1.open"; }
gate_stop() {
	local n
	for n in "${GATE_NAMES[@]}"; do [ -d "$T" ] && : >"$T/$n.open"; done
	[ -n "$GATE_PID" ] && kill "$GATE_PID" 2>/dev/null
	GATE_PID=""
}
