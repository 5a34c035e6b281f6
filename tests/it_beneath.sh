#!/usr/bin/env bash
# The backing file of a qcow2 named "dd/base.raw", while a loop swaps the
# folder dd with a symlink to a folder outside the image's own: vdkit
# converts the chain 200 times and must never read the outside file
# (each run either reads the real base or refuses; vdkit before openat2
# read it 7 times in 200 runs). tests/test_beneath.c
# races the same swaps against the library 40,000 times.
source "$(dirname "$0")/lib.sh"
have qemu-img || { skip "qemu-img missing"; finish; }
have python3 || { skip "python3 missing"; finish; }
N=${RACE_RUNS:-200}
mkdir -p "$T/vm/dd" "$T/out"
gen_raw "$T/vm/dd/base.raw" $((256 << 10)) 1
gen_raw "$T/out/base.raw" $((256 << 10)) 2
ln -s ../out "$T/vm/ddl"
(cd "$T/vm" && qemu-img create -q -f qcow2 -b dd/base.raw -F raw top.qcow2 256K)
inside=$(sha "$T/vm/dd/base.raw")
outside=$(sha "$T/out/base.raw")
"$VDKIT" convert -q -O raw "$T/vm/top.qcow2" "$T/r.raw" && [ "$(sha "$T/r.raw")" = "$inside" ] &&
	pass "the chain reads its own base before the race" || fail "chain before the race"

python3 - "$T/vm" "$T/stop" <<'EOF' &
import os, sys
vm, stop = sys.argv[1], sys.argv[2]
os.chdir(vm)
while not os.path.exists(stop):
    os.rename("dd", "dd.real")  # the real folder steps aside
    os.rename("ddl", "dd")      # a link out takes its name
    os.rename("dd", "ddl")
    os.rename("dd.real", "dd")
EOF
SW=$!
ok=0 refused=0 leaked=0
for i in $(seq 1 "$N"); do
	if "$VDKIT" convert -q -O raw "$T/vm/top.qcow2" "$T/r.raw" 2>/dev/null; then
		case $(sha "$T/r.raw") in
		"$inside") ok=$((ok + 1)) ;;
		"$outside") leaked=$((leaked + 1)) ;;
		*) leaked=$((leaked + 1)) ;;
		esac
		rm -f "$T/r.raw"
	else
		refused=$((refused + 1))
	fi
done
: >"$T/stop"
wait $SW
[ $leaked -eq 0 ] && [ $ok -gt 0 ] &&
	pass "$N conversions while dd/ is swapped with a link out: $ok read the real base, $refused refused, none read the outside file" ||
	fail "$leaked of $N conversions read a file outside the image's folder ($ok ok, $refused refused)"
finish
