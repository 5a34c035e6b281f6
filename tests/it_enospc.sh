#!/usr/bin/env bash
# A destination that fills up: a tmpfs sized so that each output format
# runs out of space at ten points of its output (10% .. 95% of the blocks a
# complete output takes). Every run must exit 3 with a message naming the
# output file, the offset and the cause, leave nothing in the folder (no
# temporary, no partial output) and never touch the source.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { skip "ENOSPC tests: need root to mount a tmpfs"; finish; }
M="$T/full"
mkdir -p "$M"
mount -t tmpfs -o size=4k tmpfs "$M" 2>/dev/null || { skip "ENOSPC tests: cannot mount a tmpfs"; finish; }
trap 'umount "$M" 2>/dev/null; rm -rf "$T"' EXIT

# Data, zero runs and holes; --threads 2 so that failing writes come back
# from the worker threads too.
gen_raw "$T/src.raw" $((12 << 20)) 11
src_sha=$(sha "$T/src.raw")
POINTS="10 20 30 40 50 60 70 80 90 95"

# Blocks a complete output takes on a tmpfs (what the limit is counted in).
full_size() { # NAME OPTS...
	local name=$1; shift
	mount -o remount,size=64m "$M"
	"$VDKIT" convert -q "$@" "$T/src.raw" "$M/$name" >/dev/null 2>&1 || return 1
	echo $(($(stat -c %b "$M/$name") * 512))
	rm -f "$M/$name"
}

enospc() { # DESC NAME OPTS...
	local desc=$1 name=$2; shift 2
	local need bad=0 p lim out rc offs=""
	need=$(full_size "$name" "$@") || { fail "$desc: the full conversion failed"; return; }
	for p in $POINTS; do
		lim=$(((need * p / 100) / 4096 * 4096))
		[ $lim -ge 4096 ] || lim=4096
		mount -o remount,size=$lim "$M"
		out=$("$VDKIT" convert -q --threads 2 "$@" "$T/src.raw" "$M/$name" 2>&1); rc=$?
		if [ $rc -ne 3 ] || [[ "$out" != *"$M/$name"* ]] || [[ "$out" != *"No space left"* ]] ||
			! [[ "$out" =~ offset\ [0-9]+ ]]; then
			echo "# $desc at $p% ($lim bytes): exit $rc: $out"
			bad=$((bad + 1))
		else
			offs="$offs ${BASH_REMATCH[0]#offset }"
		fi
		if [ -n "$(ls -A "$M")" ]; then
			echo "# $desc at $p%: left behind: $(ls -A "$M")"
			bad=$((bad + 1))
			rm -rf "${M:?}"/* "$M"/.[!.]* 2>/dev/null
		fi
	done
	[ "$(sha "$T/src.raw")" = "$src_sha" ] || bad=$((bad + 1))
	[ $bad -eq 0 ] &&
		pass "$desc: full at 10%..95% of $need bytes: exit 3 naming the file and the offset (at$offs), nothing left, source unchanged" ||
		fail "$desc: $bad bad outcomes of ten"
}

enospc "raw" out.raw -O raw --clone=never
enospc "qcow2" out.qcow2 -O qcow2
enospc "qcow2 compressed" outc.qcow2 -O qcow2 -c
enospc "vmdk streamOptimized" out.vmdk -O vmdk -o subformat=streamOptimized
enospc "vmdk monolithicSparse" outs.vmdk -O vmdk
enospc "vhdx" out.vhdx -O vhdx
enospc "vpc" out.vhd -O vpc
finish
