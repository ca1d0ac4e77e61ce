#!/usr/bin/env bash
#! Extracts the vmlinux ELF from a Linux bzImage (e.g. Debian's /boot/vmlinuz-*), as the kernel's own
#! scripts/extract-vmlinux does: find each compressed-stream magic in the file, decompress from there,
#! keep the first result that is an ELF. Usage: extract-vmlinux.sh <bzImage> <out-elf>.
#
# The hypervisor loads ELF kernels only (Xen's libelf also decompresses bzImages; extracting on the
# host keeps a decompressor out of ring 0). An input that is already an ELF is copied as it is.
set -euo pipefail
in=${1:?usage: extract-vmlinux.sh <bzImage> <out-elf>}
out=${2:?usage: extract-vmlinux.sh <bzImage> <out-elf>}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

if is_elf "$in"; then cp "$in" "$out"; exit 0; fi

try() { # <magic printf-string> <search-string for grep> <decompressor...>
    local magic=$1; shift
    local pos
    for pos in $(LC_ALL=C grep -abo -P "$magic" "$in" 2>/dev/null | cut -d: -f1); do
        tail -c +$((pos + 1)) "$in" | "$@" > "$tmp" 2>/dev/null || true
        if [ -s "$tmp" ] && is_elf "$tmp"; then cat "$tmp" > "$out"; exit 0; fi
    done
}

try '\xfd7zXZ\x00' xz -dc
try '\x1f\x8b\x08' gzip -dc
try '\x28\xb5\x2f\xfd' zstd -dc
try '\x02\x21\x4c\x18' lz4 -dc -l
try 'BZh' bzip2 -dc
try '\x5d\x00\x00\x00' xz -dc --format=lzma
echo "extract-vmlinux: no compressed ELF found in $in" >&2
exit 1
