#!/usr/bin/env bash
# Picks QEMU's accelerator for `make run`, `make bench`, `make test`'s KVM pass and `make lab`:
# prints `kvm` or `tcg` on stdout and one line saying which and why on stderr.
#
#   scripts/accel.sh [auto|kvm|tcg] [hypervisor image]
#
# `kvm` and `tcg` force one. `auto` (the default) picks KVM only when /dev/kvm is usable AND can
# host a ring-0 hypervisor: a real test, not a guess from module names. It boots the hypervisor
# image (default build/xen) under `-accel kvm -cpu host` with `selftest=cpl`, which checks at
# boot that a `syscall` from ring 3 enters it at CPL 0 and powers off (exit 0), or prints
# `FATAL: running at CPL 3, not ring 0` and exits 11 (xen-core's FailCode::NotRing0). A KVM
# built on the `kvm_pvm` module (PVM: KVM inside a cloud VM without VT-x/SVM) runs guests in
# hardware ring 3 and fails that check; so does anything else that cannot host us.
#
# The caller holds the QEMU lock if it needs one (`make test` does); this script never takes it.
set -u
want=${1:-auto}
image=${2:-${BUILD:-build}/xen}
qemu=${QEMU:-qemu-system-x86_64}

say() { echo "accel: $*" >&2; }

case "$want" in
tcg) say "tcg (ACCEL=tcg)"; echo tcg; exit 0 ;;
kvm) say "kvm (ACCEL=kvm, forced: not probed)"; echo kvm; exit 0 ;;
auto | "") ;;
*) echo "accel.sh: ACCEL must be auto, kvm or tcg, not '$want'" >&2; exit 2 ;;
esac

module=""
[ -d /sys/module/kvm_pvm ] && module=kvm_pvm
[ -d /sys/module/kvm_intel ] && module=kvm_intel
[ -d /sys/module/kvm_amd ] && module=kvm_amd

if [ ! -e /dev/kvm ]; then
    say "tcg (auto: no /dev/kvm; ACCEL=kvm to try anyway)"; echo tcg; exit 0
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    say "tcg (auto: /dev/kvm is not readable and writable for $(id -un); ACCEL=kvm to try anyway)"
    echo tcg; exit 0
fi
if [ ! -f "$image" ]; then
    say "tcg (auto: no $image to probe KVM with; run make images first)"; echo tcg; exit 0
fi

log=$(mktemp)
cpu=$(QEMU=$qemu bash "$(dirname "$0")/kvm-cpu.sh")
timeout 30 "$qemu" -accel kvm -cpu "$cpu" -m 64 -display none -serial stdio -monitor none \
    -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$image" -append "console=com1 selftest=cpl" >"$log" 2>&1 </dev/null
status=$?
fatal=$(grep -m1 -o 'FATAL: running at CPL [0-9], not ring 0' "$log")
rm -f "$log"

if [ "$status" = 0 ]; then
    say "kvm (auto: /dev/kvm${module:+ ($module)} hosts a ring-0 hypervisor: the probe boot's syscall from ring 3 entered at CPL 0; ACCEL=tcg for TCG)"
    echo kvm
    exit 0
fi
case "$module" in
kvm_pvm) why="/dev/kvm is kvm_pvm: guests run in hardware ring 3, a ring-0 hypervisor cannot run" ;;
"") why="/dev/kvm cannot host a ring-0 hypervisor" ;;
*) why="/dev/kvm ($module) failed the probe boot" ;;
esac
case "$status" in
11) detail="${fatal:-FATAL: not ring 0}" ;;
124) detail="the probe boot timed out after 30 s" ;;
*) detail="the probe boot ended with QEMU status $status" ;;
esac
say "tcg (auto: $why; probe: $detail; ACCEL=kvm to try anyway)"
echo tcg
