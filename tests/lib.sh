# Shared helpers for tests/it_*.sh integration scripts. Source it; it sets
# VDKIT, QEMU_IMG, a scratch dir $T (removed on exit) and pass/fail/skip.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VDKIT="$TOP/bin/vdkit"
SHARED="${SHARED:-$TOP/../shared}"
T=$(mktemp -d "${TMPDIR:-/tmp}/vdkit-it.XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILED=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; FAILED=$((FAILED + 1)); }
skip() { echo "skip - $*"; }
# check DESC CMD...: pass when CMD succeeds.
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi; }
have() { command -v "$1" >/dev/null 2>&1; }
# Files over 64 MiB (the 10 GiB sparse raw outputs) hash through
# sparsesha.py, which feeds holes from a zero buffer instead of reading them.
sha() {
	if [ -f "$1" ] && [ "$(stat -c %s "$1")" -gt 67108864 ]; then
		python3 "$TOP/tests/sparsesha.py" "$1"
	else
		sha256sum "$1" | cut -d' ' -f1
	fi
}
# Deterministic patterned raw image: data, zero runs, holes. gen_raw FILE SIZE [SEED]
gen_raw() { "$TOP/bin/vdk-gen" "$1" "$2" "${3:-1}"; }
# Virtual content of any image as qemu-img sees it, as sha256.
qemu_sha() { qemu-img convert ${2:+-f $2} -O raw "$1" "$T/.qsha.raw" && sha "$T/.qsha.raw"; rm -f "$T/.qsha.raw"; }
vdk_sha() { "$VDKIT" convert ${2:+-f $2} -O raw "$1" "$T/.vsha.raw" && sha "$T/.vsha.raw"; rm -f "$T/.vsha.raw"; }
finish() { exit $(( FAILED > 0 ? 1 : 0 )); }
