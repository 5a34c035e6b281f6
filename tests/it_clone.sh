#!/usr/bin/env bash
# Clone conversion on a reflink XFS: shared blocks, identical content.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { skip "clone test needs root (loop-mounted XFS)"; finish; }
have mkfs.xfs || { skip "mkfs.xfs missing (apt-get install xfsprogs)"; finish; }
mnt="$T/mnt"; mkdir "$mnt"
truncate -s 3G "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img" >/dev/null 2>&1 || { skip "mkfs.xfs -m reflink=1 failed"; finish; }
mount -o loop "$T/xfs.img" "$mnt" 2>/dev/null || { skip "cannot loop-mount XFS here"; finish; }
trap 'umount "$mnt" 2>/dev/null; rm -rf "$T"' EXIT
used() { sync; df -B1 --output=used "$mnt" | tail -1; }

"$TOP/bin/vdk-gen" -k random "$mnt/src.raw" $((1024 * 1048576)) 9
before=$(used)
start=$(date +%s.%N)
"$VDKIT" convert --clone=always -O raw "$mnt/src.raw" "$mnt/clone.raw" 2>"$T/msg"; rc=$?
secs=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
grew=$(( $(used) - before ))
[ $rc -eq 0 ] && pass "--clone=always on XFS reflink succeeds (${secs}s)" || fail "clone failed: $(cat "$T/msg")"
[ $grew -lt $((1024 * 1048576 / 100)) ] && pass "1 GiB clone allocated $((grew / 1024)) KiB (< 1%)" ||
	fail "clone allocated $grew bytes"
grep -q "1.00 GiB cloned" "$T/msg" && pass "reports 1 GiB cloned" || fail "report: $(cat "$T/msg")"
check "cloned image is identical" cmp "$mnt/src.raw" "$mnt/clone.raw"
before=$(used)
"$VDKIT" convert -q --clone=never -O raw "$mnt/src.raw" "$mnt/copy.raw"
grew=$(( $(used) - before ))
[ $grew -gt $((1000 * 1048576)) ] && pass "--clone=never copies (allocated $((grew >> 20)) MiB)" ||
	fail "--clone=never allocated only $grew bytes"
check "copied image is identical" cmp "$mnt/src.raw" "$mnt/copy.raw"
# --clone=always where blocks cannot be shared: a clear failure, no output.
out=$("$VDKIT" convert --clone=always -O raw "$mnt/src.raw" "$T/elsewhere.raw" 2>&1); rc=$?
[ $rc -eq 3 ] && [[ "$out" == *clone=always* ]] && [ ! -e "$T/elsewhere.raw" ] &&
	pass "--clone=always across filesystems fails clearly (exit 3)" || fail "cross-fs always: rc $rc: $out"
finish
