# Sourced by scripts/bench.sh: NBD rows. A 256 MiB raw (~45% data) served
# by nbdkit's file plugin on a unix socket, with 2 ms added to every read
# (delay filter) so request latency, not memory bandwidth, is what counts:
# vdkit and qemu-img -W -m 16 (16 requests in flight, out of order) read it
# into a local raw file; the third command is nbdcopy (4 connections, 64
# requests each, fewer on fewer CPUs).
# The second row writes the other way: the local raw into nbdkit's memory
# plugin with 2 ms added to every write.
# Skipped when nbdkit or nbdcopy is missing.

if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
	NBD_RAW="$BENCH_DIR/in-256m.raw"
	NBD_SOCK="$BENCH_DIR/nbd-bench.sock"
	[ -f "$NBD_RAW" ] || bin/vdk-gen "$NBD_RAW" $((256 << 20)) 1
	rm -f "$NBD_SOCK"
	nbdkit -f -U "$NBD_SOCK" --filter=delay file "$NBD_RAW" rdelay=2ms &
	NBD_PID=$!
	for _ in $(seq 100); do [ -S "$NBD_SOCK" ] && break; sleep 0.05; done
	NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
	bench_row "nbd rdelay=2ms -> raw 256 MiB, 3rd: nbdcopy" \
		"$VDKIT convert -q -f raw -O raw '$NBD_URI' $BENCH_DIR/out.raw" \
		"qemu-img convert -f raw -W -m 16 -O raw '$NBD_URI' $BENCH_DIR/out.raw" \
		"nbdcopy::nbdcopy '$NBD_URI' $BENCH_DIR/out.raw"
	kill "$NBD_PID" 2>/dev/null
	wait "$NBD_PID" 2>/dev/null
	rm -f "$NBD_SOCK"
	nbdkit -f -U "$NBD_SOCK" --filter=delay memory 256M wdelay=2ms &
	NBD_PID=$!
	for _ in $(seq 100); do [ -S "$NBD_SOCK" ] && break; sleep 0.05; done
	bench_row "raw 256 MiB -> nbd wdelay=2ms, 3rd: nbdcopy" \
		"$VDKIT convert -q -f raw -O raw $NBD_RAW '$NBD_URI'" \
		"qemu-img convert -n -f raw -W -m 16 -O raw $NBD_RAW '$NBD_URI'" \
		"nbdcopy::nbdcopy $NBD_RAW '$NBD_URI'"
	kill "$NBD_PID" 2>/dev/null
	wait "$NBD_PID" 2>/dev/null
	rm -f "$NBD_SOCK"
fi
