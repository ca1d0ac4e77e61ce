#!/bin/bash
# `make profile`: counts the instructions one null hypercall costs in our hypervisor, per function
# (docs/performance.md). Boots build/xen with build/guest-kernel as dom0 running
# `bench=null-hypercall` under QEMU's TCG with `-icount shift=0,sleep=off` and its gdb stub, and
# lets gdb single-step whole hypercalls (scripts/profile-hypercall.py). Takes a few seconds.
# Another workload: PROFILE_CMDLINE (dom0's command line), PROFILE_BREAK (a guest-kernel function
# to reach first), PROFILE_SKIP (hypercalls to let pass after it), e.g. one `mmu_update` of one
# PTE: PROFILE_CMDLINE="bench=pt-update pages=64 batches=1 variants=mmu_update" \
#   PROFILE_BREAK=guest_kernel::suites::pt_workload::round PROFILE_SKIP=3 make profile
# PROFILE_TRACE=FILE writes the addresses of the instructions of the shortest call stepped to FILE.
set -euo pipefail
BUILD=${BUILD:-build}
PORT=${PROFILE_GDB_PORT:-1299}
command -v gdb >/dev/null || { echo "profile: gdb is missing (apt-get install gdb)" >&2; exit 2; }
log=$(mktemp)
qemu-system-x86_64 -m 512 -display none -serial "file:$log" -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -accel tcg -cpu max,-x2apic -icount shift=0,sleep=off -gdb "tcp:127.0.0.1:$PORT" -S \
    -kernel "$BUILD/xen" \
    -append "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all" \
    -initrd "$BUILD/guest-kernel ${PROFILE_CMDLINE:-bench=null-hypercall} exit=reboot" </dev/null 2>/dev/null &
qemu=$!
trap 'kill $qemu 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ":$PORT " && break; sleep 0.1; done
PROFILE_XEN_SYMS="$BUILD/xen-syms" PROFILE_GUEST="$BUILD/guest-kernel-syms" PROFILE_GDB_PORT=$PORT \
    timeout 600 gdb -q -batch -x scripts/profile-hypercall.py 2>&1 |
    sed -n 's/^profile: //p'
