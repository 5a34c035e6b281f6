#!/bin/sh
# Make sure the Debian packages vdkit needs are present.
#   deps.sh build   libraries and headers (pkg-config names checked)
#   deps.sh test    the oracles and tools the tests use (qemu-img, libyal...)
# As root, missing packages are installed with apt-get (update once); as
# another user, the exact apt-get line is printed and build deps fail.
set -u
mode=${1:-build}
missing=""
if [ "$mode" = build ]; then
	command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
	for pair in zlib:zlib1g-dev libxml-2.0:libxml2-dev libcrypto:libssl-dev \
		uuid:uuid-dev libdeflate:libdeflate-dev libzstd:libzstd-dev \
		libnbd:libnbd-dev libnfs:libnfs-dev libisal:libisal-dev nbdkit:nbdkit-plugin-dev; do
		pc=${pair%%:*}; deb=${pair#*:}
		pkg-config --exists "$pc" 2>/dev/null || missing="$missing $deb"
	done
else
	for pair in qemu-img:qemu-utils vmdkinfo:libvmdk-utils vhdiinfo:libvhdi-utils \
		vhdimount:libvhdi-utils qcowinfo:libqcow-utils mkfs.xfs:xfsprogs \
		/usr/bin/time:time bzip2:bzip2 clang:clang \
		qemu-nbd:qemu-utils nbdkit:nbdkit nbdinfo:libnbd-bin nbdcopy:libnbd-bin \
		ganesha.nfsd:nfs-ganesha /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so:nfs-ganesha-vfs \
		7zz:7zip man:man-db mkfs.btrfs:btrfs-progs strace:strace; do
		cmd=${pair%%:*}; deb=${pair#*:}
		{ command -v "$cmd" >/dev/null 2>&1 || [ -e "$cmd" ]; } || missing="$missing $deb"
	done
fi
[ -z "$missing" ] && exit 0
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing $missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null && exit 0
	echo "deps: apt-get install failed" >&2
	exit 1
fi
echo "deps: missing Debian packages. Run as root:" >&2
echo "  apt-get install -y $missing" >&2
[ "$mode" = build ] && exit 1
exit 0
