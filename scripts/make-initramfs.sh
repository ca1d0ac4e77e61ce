#!/usr/bin/env bash
#! Builds the initramfs Linux boots as a domU (`make run-linux`, tests/tests/linux.rs): Debian's
#! busybox-static plus the kernel's own xen-blkfront and xen-netfront modules and its ext4 driver,
#! into $BUILD/linux/initrd.cpio.gz; prints that path. A no-op when it is newer than this script.
#
# Everything comes from Debian packages fetched with `apt-get download` (nothing is installed):
# busybox-static, and the versioned linux-image package scripts/fetch-linux.sh downloaded (run
# first if its .deb is missing). Modules are taken with the modules their `depends=` (.modinfo)
# names, decompressed on the host when Debian ships them as .ko.xz/.ko.zst. Debian builds ext4
# as a module (CONFIG_EXT4_FS=m, which also serves ext2 and ext3: CONFIG_EXT4_USE_FOR_EXT2=y):
# ext4 with what its depends= names (jbd2, mbcache, crc16) and crc32c_generic, the provider of the
# `crypto-crc32c` its softdep= asks for (modprobe would load it; insmod reads no softdep), so
# busybox's mke2fs can make a filesystem on /dev/xvda and `mount` mount it. The archive (newc
# cpio, gzip) is written by the Python below, so no cpio tool or root (for /dev/console) is needed.
#
# The initramfs's /init mounts proc, sysfs and devtmpfs, loads the modules, prints
#   xen-rs initramfs: ready (modules: xen_blkfront xen_netfront)
# and hands over to busybox init, which runs a shell on hvc0 (respawned when it exits) and powers
# off cleanly on `poweroff` or when Xen's control/shutdown asks (Linux runs /sbin/poweroff). A
# kernel command-line option `xtest=<base64 of a shell script>` makes /init run that script before
# the shell (the QEMU test uses it).
#
# LINUX_MODULES=<dir> takes the modules from that lib/modules/<version> directory instead (for
# another kernel, `make run-linux LINUX=...`: a kernel only loads modules built with it), and
# writes $BUILD/linux/initrd-<version>.cpio.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out="$BUILD/linux/initrd.cpio.gz"
modsrc=${LINUX_MODULES:-}
if [ -n "$modsrc" ]; then
    [ -d "$modsrc" ] || { echo "make-initramfs: LINUX_MODULES=$modsrc is not a directory" >&2; exit 1; }
    out="$BUILD/linux/initrd-$(basename "$modsrc").cpio.gz"
fi
# One build at a time (parallel tests may ask at once); the others then find it there.
mkdir -p "$BUILD/linux"
exec 7>"$BUILD/linux/.initramfs.lock"
flock 7
if [ -s "$out" ] && [ "$out" -nt "$0" ]; then
    echo "$out"
    exit 0
fi
pkg="$BUILD/linux/pkg"
if [ -n "$modsrc" ]; then
    deb=$modsrc
else
    deb=$(ls "$pkg"/linux-image-[0-9]*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        LINUX= bash scripts/fetch-linux.sh >/dev/null
        deb=$(ls "$pkg"/linux-image-[0-9]*.deb | head -n1)
    fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    # As root, apt warns that its sandbox user cannot write here: harmless.
    apt-get download -qq busybox-static 2>/dev/null
    dpkg-deb -x busybox-static_*.deb bb
)
[ -x "$work/bb/bin/busybox" ] || { echo "make-initramfs: no bin/busybox in busybox-static" >&2; exit 1; }
if [ -n "$modsrc" ]; then
    moddir=$modsrc
else
    mkdir -p "$work/k"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/k" --wildcards './lib/modules/*'
    moddir=$(ls -d "$work"/k/lib/modules/* | head -n1)
fi

# The module file of a module name (`-` and `_` are the same), decompressed into $work/mods.
mkdir -p "$work/mods"
find_module() {
    local name=$1 f
    f=$(find "$moddir" -regextype posix-extended \
        -regex ".*/$(echo "$name" | sed 's/[-_]/[-_]/g')\.ko(\.xz|\.zst|\.gz)?" | head -n1)
    [ -n "$f" ] || { echo "make-initramfs: module $name not in $(basename "$deb")" >&2; return 1; }
    case $f in
        *.ko.xz) xz -dc "$f" ;;
        *.ko.zst) zstd -dcq "$f" ;;
        *.ko.gz) gzip -dc "$f" ;;
        *) cat "$f" ;;
    esac > "$work/mods/$(echo "$name" | tr - _).ko"
}
modinfo_field() { # <.ko> <field>
    objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null | tr '\0' '\n' \
        | sed -n "s/^$2=//p"
}
# Load order: dependencies first (a depth-first walk of depends=).
order=()
add_module() {
    local name=${1//-/_} dep
    for dep in "${order[@]}"; do [ "$dep" = "$name" ] && return 0; done
    [ -f "$work/mods/$name.ko" ] || find_module "$name"
    for dep in $(modinfo_field "$work/mods/$name.ko" depends | tr ',' ' '); do
        add_module "$dep"
    done
    order+=("$name")
}
add_module crc32c_generic
add_module ext4
add_module xen-blkfront
add_module xen-netfront

root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,mnt,lib/modules}
cp "$work/bb/bin/busybox" "$root/bin/busybox"
for m in "${order[@]}"; do cp "$work/mods/$m.ko" "$root/lib/modules/"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/order"
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# xen-rs initramfs (scripts/make-initramfs.sh): mounts, modules, then busybox init.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
ln -sf /bin/busybox /sbin/init
ln -sf /bin/busybox /sbin/poweroff
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
loaded=
for m in $(cat /lib/modules/order); do
    if insmod "/lib/modules/$m.ko"; then loaded="$loaded $m"; else echo "initramfs: insmod $m failed"; fi
done
echo "xen-rs initramfs: ready (modules:$loaded)"
# Networking when there is a vif: DHCP (asking for dhcp-ip=<address> when given) and a web page.
if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up
    ask=
    for w in $(cat /proc/cmdline); do case $w in dhcp-ip=*) ask="-r ${w#dhcp-ip=}" ;; esac; done
    if udhcpc -i eth0 -q -n -t 5 -T 2 $ask -s /etc/udhcpc.script >/dev/null 2>&1; then
        echo "xen-rs initramfs: eth0 is $(ip -4 -o addr show eth0 | sed 's/.* inet \([^ ]*\).*/\1/')"
        httpd -p 80 -h /www && echo "xen-rs initramfs: httpd on port 80"
    else
        echo "xen-rs initramfs: eth0: no DHCP answer"
    fi
fi
for w in $(cat /proc/cmdline); do
    case $w in
        xtest=*) echo "${w#xtest=}" | base64 -d > /tmp/xtest && sh /tmp/xtest ;;
    esac
done
exec /sbin/init
EOF
chmod +x "$root/init"
cat > "$root/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# busybox udhcpc's hook: apply the lease.
case $1 in
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
        ;;
esac
exit 0
EOF
chmod +x "$root/etc/udhcpc.script"
mkdir -p "$root/www"
cat > "$root/www/index.html" <<'EOF'
Hello from Debian's Linux, a PV domU of xen-rs (busybox httpd, netfront to dom0's netback).
EOF
cat > "$root/etc/inittab" <<'EOF'
hvc0::respawn:-/bin/sh
::ctrlaltdel:/bin/poweroff
::shutdown:/bin/sync
EOF
cat > "$root/etc/profile" <<'EOF'
export PATH=/bin:/sbin
export PS1='domU:\w# '
echo "xen-rs initramfs: shell on $(tty); poweroff to end"
EOF

python3 - "$root" "$out.tmp" <<'EOF'
# newc cpio (the kernel's initramfs format), gzip-compressed; /dev/console and the entries'
# owners are written as root's without needing root here.
import gzip, os, stat, sys
root, out = sys.argv[1], sys.argv[2]
ino = [721]
def entry(name, mode, data=b"", rdev=(0, 0)):
    ino[0] += 1
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0))
    b = hdr.encode() + name.encode() + b"\0"
    b += b"\0" * (-len(b) % 4) + data + b"\0" * (-len(data) % 4)
    return b
parts = []
for dirpath, dirs, files in os.walk(root):
    dirs.sort()
    rel = os.path.relpath(dirpath, root)
    if rel != ".":
        parts.append(entry(rel, stat.S_IFDIR | 0o755))
    for f in sorted(files):
        p = os.path.join(dirpath, f)
        name = os.path.relpath(p, root)
        if os.path.islink(p):
            parts.append(entry(name, stat.S_IFLNK | 0o777, os.readlink(p).encode()))
        else:
            perm = 0o755 if os.access(p, os.X_OK) else 0o644
            parts.append(entry(name, stat.S_IFREG | perm, open(p, "rb").read()))
parts.append(entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
parts.append(entry("TRAILER!!!", 0))
with gzip.open(out, "wb", 9) as f:
    f.write(b"".join(parts))
EOF
mv "$out.tmp" "$out"
echo "$out"
