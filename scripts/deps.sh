#!/bin/sh
# Make sure the Debian packages vdkit needs are present.
#   deps.sh build   libraries and headers (pkg-config names checked)
#   deps.sh test    the oracles and tools the tests use (qemu-img, libyal...)
# As root, missing packages are installed with apt-get (update once); as
# another user, the exact apt-get line is printed and build deps fail.
set -u
mode=${1:-build}
missing=""
# Test oracles installed without their recommends (virt-v2v would pull 315
# packages instead of 138) and whose failure to install only makes their
# checks skip, visibly: govmomi's OVF package (with Go) and virt-v2v's
# OVA reader.
lean=""
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
	for pair in go:golang-go /usr/share/gocode/src/github.com/vmware/govmomi/ovf:golang-github-vmware-govmomi-dev \
		virt-v2v:virt-v2v; do
		cmd=${pair%%:*}; deb=${pair#*:}
		{ command -v "$cmd" >/dev/null 2>&1 || [ -e "$cmd" ]; } || lean="$lean $deb"
	done
fi
if [ -n "$lean" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "deps: installing$lean (without recommends)"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $lean; } >/dev/null ||
			echo "deps: could not install$lean: the checks that use them skip" >&2
	else
		echo "deps: optional test oracles missing (their checks skip). Run as root:" >&2
		echo "  apt-get install -y --no-install-recommends$lean" >&2
	fi
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
