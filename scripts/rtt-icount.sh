#!/bin/bash
# The two-domain event-channel round trip of `make bench` (dom0 `bench-copies=1000`, domU
# `pingpong=1000`) under `-icount shift=0,sleep=off`: prints dom0's `bench evtchn_rtt` line, in
# guest instructions (exact: the same every run), and with `null` first the null hypercall's
# `bench null_hypercall` line from a dom0-only boot. Needs `make images`.
set -euo pipefail
BUILD=${BUILD:-build}
icount() {
    timeout 300 qemu-system-x86_64 -m 512 -display none -serial stdio -monitor none -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -accel tcg -cpu max,-x2apic -icount shift=0,sleep=off \
        -kernel "$BUILD/xen" \
        -append "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all" \
        -initrd "$1" </dev/null 2>&1 | grep -m1 -a "$2" || true
}
if [ "${1:-}" = null ]; then
    icount "$BUILD/guest-kernel bench=null-hypercall exit=reboot" "bench null_hypercall"
fi
icount "$BUILD/guest-kernel bench-copies=1000,$BUILD/guest-kernel name=bench mem=16M pingpong=1000" \
    "bench evtchn_rtt"
