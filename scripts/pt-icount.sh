#!/bin/bash
# Guest instructions per PTE of our `mmu_update` (batches of 1, 8, 64 and 512) and of
# `update_va_mapping`, under `-icount shift=0,sleep=off` (exact: the same every run), ours
# alone: dom0 runs `bench=pt-update pages=512`, one `bench pt_update` line per variant and batch.
# Quicker than `make bench BENCH_ARGS=--icount` (which also boots Xen 4.17) for a build-and-look
# loop; the figures are the same. Needs `make images`.
set -euo pipefail
BUILD=${BUILD:-build}
timeout 300 qemu-system-x86_64 -m 512 -display none -serial stdio -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -accel tcg -cpu max,-x2apic -icount shift=0,sleep=off \
    -kernel "$BUILD/xen" -append "console=com1 com1=115200,8n1 dom0_mem=64M" \
    -initrd "$BUILD/guest-kernel bench=pt-update pages=512 batches=1:8:64:512 variants=mmu_update:update_va_mapping exit=reboot" \
    </dev/null 2>&1 | grep -a '^bench pt_update' | awk '{print $3, $4, $7}'
