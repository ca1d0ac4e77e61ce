#!/usr/bin/env bash
#! Fetches Debian's own Linux kernel (the linux-image-amd64 metapackage's kernel) with apt and
#! extracts its vmlinux ELF into $BUILD/linux/vmlinux; prints that path. A no-op when it is there.
#
# The kernel is used as Debian ships it: /boot/vmlinuz-* from the package is a bzImage whose
# payload (an xz stream) is the ELF that Xen's libelf would load after decompressing it; our
# hypervisor loads ELF images only, so the payload is extracted on the host
# (scripts/extract-vmlinux.sh). LINUX=<vmlinuz or vmlinux> uses that kernel instead.
# Nothing is installed; the packages are downloaded and unpacked under $BUILD/linux.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out="$BUILD/linux/vmlinux"
# The QEMU tests run in parallel threads and more than one may ask for the kernel at once: one
# fetch at a time (the others then find it there).
mkdir -p "$BUILD/linux"
exec 8>"$BUILD/linux/.fetch.lock"
flock 8
if [ -n "${LINUX:-}" ]; then
    mkdir -p "$BUILD/linux"
    bash scripts/extract-vmlinux.sh "$LINUX" "$BUILD/linux/vmlinux-custom"
    echo "$BUILD/linux/vmlinux-custom"
    exit 0
fi
if [ -s "$out" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$BUILD/linux/pkg"
dir=$(cd "$BUILD/linux/pkg" && pwd)
(
    cd "$dir"
    rm -f ./*.deb
    # As root, apt warns that its sandbox user cannot write here: harmless.
    apt-get download -qq linux-image-amd64 2>/dev/null
    # The metapackage depends on the versioned kernel package (linux-image-<abi>-amd64).
    dep=$(dpkg-deb -f linux-image-amd64_*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    [ -n "$dep" ] || { echo "fetch-linux: no versioned kernel in linux-image-amd64's Depends" >&2; exit 1; }
    apt-get download -qq "$dep" 2>/dev/null
    rm -rf x && mkdir x
    dpkg-deb -x "$dep"_*.deb x
)
vmlinuz=$(ls "$dir"/x/boot/vmlinuz-* | head -n1)
bash scripts/extract-vmlinux.sh "$vmlinuz" "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$dir/x"
echo "$out"
