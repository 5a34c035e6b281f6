#!/usr/bin/env bash
# make demo: the headline job on the bundled sample. testdata/sample.vmdk is a
# 4 MiB monolithicSparse VMDK made by qemu-img 7.2 from patterned data (a
# text-filled first 64 KiB with an MBR signature, a byte ramp at 2 MiB).
# It becomes a VHDX through bin/vmdk2vhdx --verify, then both are compared
# through vdkit and, where installed, qemu-img. Exit non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
S=$(mktemp -d "${TMPDIR:-/tmp}/vdkit-demo.XXXXXX")
trap 'rm -rf "$S"' EXIT
die() { echo "demo: FAILED: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

SRC=testdata/sample.vmdk DST=$S/sample.vhdx
[ -f "$SRC" ] || die "$SRC is missing"
step "bin/vmdk2vhdx --verify $SRC $DST"
bin/vmdk2vhdx --verify "$SRC" "$DST" || die "vmdk2vhdx"
step "bin/vdkit info $DST"
bin/vdkit info "$DST" || die "vdkit info"
step "bin/vdkit compare $SRC $DST"
bin/vdkit compare "$SRC" "$DST" || die "vdkit compare found a difference"
if command -v qemu-img >/dev/null 2>&1; then
	step "qemu-img compare $SRC $DST"
	qemu-img compare "$SRC" "$DST" || die "qemu-img compare found a difference"
	step "qemu-img check $DST"
	qemu-img check "$DST" || die "qemu-img check"
else
	step "qemu-img not installed: skipping its compare"
fi
if command -v vhdiinfo >/dev/null 2>&1; then
	step "vhdiinfo $DST (libvhdi)"
	vhdiinfo "$DST" | sed -n '/Virtual Hard Disk image information/,/Identifier/p' ||
		die "vhdiinfo"
fi
echo
echo "demo: OK: $SRC converted to VHDX, verified and identical"
