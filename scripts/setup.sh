#!/usr/bin/env bash
#! Installs what the build and tests need on a fresh Debian 12 machine; a no-op when all is present.
#
# - QEMU >= 8 from bookworm-backports (Debian 12's 7.2 has the TCG #GP-error-code bug, QEMU issue 1382);
#   the backports source entry is derived from the machine's own Debian entry, no host name written here.
# - libxen-dev: Xen's public headers, the specification the ABI conformance test compiles against.
# - Debian's Xen 4.17 hypervisor image (downloaded, unpacked, gunzipped into build/xen-4.17), the
#   differential reference.
# - The x86_64-unknown-none Rust target (rust-toolchain.toml names it; rustup adds it on first use).
# - fonts-dejavu-core: the font `make lab` draws its plots' text with (loaded by file, no fontconfig).
# - e2fsprogs (debugfs, e2fsck): the Linux test reads the ext2 filesystem Linux made on its disk
#   image from the host, without mounting it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

updated=0
apt_update() {
    if [ "$updated" = 0 ]; then $SUDO apt-get update -qq; updated=1; fi
}

qemu_ok() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    local major
    major=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
    [ "${major:-0}" -ge 8 ]
}

if ! qemu_ok; then
    src=/etc/apt/sources.list.d/debian.sources
    bp=/etc/apt/sources.list.d/backports.sources
    if [ ! -f "$bp" ] && [ -f "$src" ]; then
        # First stanza of the machine's own Debian entry, with the suite swapped for backports.
        awk 'BEGIN{RS=""; ORS="\n\n"} NR==1{print; exit}' "$src" \
            | sed -e 's/^Suites:.*/Suites: bookworm-backports/' | $SUDO tee "$bp" >/dev/null
    fi
    apt_update
    $SUDO apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
    qemu_ok || { echo "setup: QEMU >= 8 could not be installed" >&2; exit 1; }
fi

if [ ! -f /usr/include/xen/xen.h ]; then
    apt_update
    $SUDO apt-get install -y -qq libxen-dev >/dev/null
fi

if [ ! -f "$BUILD/xen-4.17/xen" ]; then
    apt_update
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq xen-hypervisor-4.17-amd64 >/dev/null)
    mkdir -p "$BUILD/xen-4.17"
    dpkg -x "$tmp"/xen-hypervisor-4.17-amd64_*.deb "$tmp/x"
    gz=$(ls "$tmp"/x/boot/xen-4.17*-amd64.gz | head -n1)
    gunzip -c "$gz" > "$BUILD/xen-4.17/xen"
    dpkg-deb -f "$tmp"/xen-hypervisor-4.17-amd64_*.deb Version > "$BUILD/xen-4.17/VERSION"
    rm -rf "$tmp"
fi

if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    apt_update
    $SUDO apt-get install -y -qq fonts-dejavu-core >/dev/null
fi

if ! PATH="$PATH:/sbin:/usr/sbin" command -v debugfs >/dev/null 2>&1; then
    apt_update
    $SUDO apt-get install -y -qq e2fsprogs >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none \
        || rustup target add x86_64-unknown-none >/dev/null
fi
