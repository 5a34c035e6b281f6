#!/usr/bin/env bash
# make demo: convert a generated raw image with clone and --verify, then
# compare with vdkit and qemu-img.
set -euo pipefail
cd "$(dirname "$0")/.."
d=$(mktemp -d /tmp/vdkit-demo.XXXXXX)
trap 'rm -rf "$d"' EXIT
bin/vdk-gen "$d/disk.raw" $((256 * 1048576)) 42
echo "demo: bin/vdkit convert --verify -p -O raw disk.raw copy.raw"
bin/vdkit convert --verify -p -O raw "$d/disk.raw" "$d/copy.raw"
bin/vdkit compare "$d/disk.raw" "$d/copy.raw"
if command -v qemu-img >/dev/null; then qemu-img compare "$d/disk.raw" "$d/copy.raw"; fi
echo "demo: OK"
