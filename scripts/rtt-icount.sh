#!/bin/bash
# The two-domain event-channel round trip of `make bench` (dom0 `bench-copies=1000`, domU
# `pingpong=1000`) under `-icount shift=0,sleep=off`: prints dom0's `bench evtchn_rtt` line, in
# guest instructions (exact: the same every run). Needs `make images`.
set -euo pipefail
BUILD=${BUILD:-build}
timeout 300 qemu-system-x86_64 -m 512 -display none -serial stdio -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -accel tcg -cpu max,-x2apic -icount shift=0,sleep=off \
    -kernel "$BUILD/xen" \
    -append "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all" \
    -initrd "$BUILD/guest-kernel bench-copies=1000,$BUILD/guest-kernel name=bench mem=16M pingpong=1000" \
    </dev/null 2>&1 | grep -m1 -a "bench evtchn_rtt" || true
