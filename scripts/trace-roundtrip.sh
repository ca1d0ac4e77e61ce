#!/bin/bash
# Traces one event-channel round trip of `make bench`'s two-domain run (dom0 `bench-copies=1000`,
# domU `pingpong=1000`) instruction by instruction under `-icount shift=0,sleep=off`: the
# hypervisor's entries and the guests' stretches with their instruction counts, and the
# hypervisor's functions (scripts/trace-roundtrip.py; docs/performance.md). Needs build/xen,
# build/xen-syms, build/guest-kernel-syms (`make images`). TRACE_SKIP: round trips to let pass first;
# TRACE_GINCL=1: per-function inclusive counts for the guests' stretches too. TRACE_WORKLOAD=blk:
# one 4 KiB random read of the domU's blk-bench instead (blkfront, dom0's blkback, its disk);
# TRACE_WORKLOAD=blk16: one batch of its 16 random reads in flight. TRACE_WORKLOAD=gcopy: one of
# dom0's timed 4 KiB grant copies from the domU (`bench_grant_copy`, one `GNTTABOP_copy` each).
# TRACE_PCS=FILE: the hypervisor's instruction addresses of the last round trip, for
# scripts/inline-breakdown.py (where the instructions of a function went, by what was inlined);
# TRACE_GPCS=1 adds the guests' (XEN_SYMS=build/guest-kernel-syms for the breakdown).
set -euo pipefail
BUILD=${BUILD:-build}
PORT=${TRACE_GDB_PORT:-1298}
command -v gdb >/dev/null || { echo "trace: gdb is missing (apt-get install gdb)" >&2; exit 2; }
log=$(mktemp)
disk=$(mktemp)
if [ "${TRACE_WORKLOAD:-evtchn}" = blk ] || [ "${TRACE_WORKLOAD:-evtchn}" = blk16 ]; then
    # One 4 KiB random read of the domU's `blk-bench` through blkfront and dom0's blkback, from
    # one read call to the next (the stretch that starts it is the domU's).
    truncate -s 32M "$disk"
    modules="$BUILD/guest-kernel bench-blkdev=16384,$BUILD/guest-kernel name=bench mem=16M blk-bench=0"
    extra=(-drive "file=$disk,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0)
    line=$(grep -n 'b.read(d, start + (x % (count / 8)) \* 8' guest-kernel/src/domu/blkfront.rs | cut -d: -f1)
    if [ "$TRACE_WORKLOAD" = blk16 ]; then
        # One batch of 16 random reads in flight (`read_scattered`, from one call to the next).
        export TRACE_BREAK=${TRACE_BREAK:-guest_kernel::domu::blkfront::Blkfront::read_scattered}
        export TRACE_SKIP=${TRACE_SKIP:-8}
    else
        export TRACE_BREAK=${TRACE_BREAK:-blkfront.rs:$line} TRACE_SKIP=${TRACE_SKIP:-20}
    fi
    export TRACE_START_NAME=domU TRACE_OTHER_NAME=dom0
else
    modules="$BUILD/guest-kernel bench-copies=1000 exit=reboot,$BUILD/guest-kernel name=bench mem=16M pingpong=1000"
    extra=()
fi
qemu-system-x86_64 -m 512 -display none -serial "file:$log" -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -accel tcg -cpu max,-x2apic -icount shift=0,sleep=off -gdb "tcp:127.0.0.1:$PORT" -S \
    -kernel "$BUILD/xen" \
    -append "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all" \
    -initrd "$modules" "${extra[@]}" \
    </dev/null 2>/dev/null &
qemu=$!
trap 'kill $qemu 2>/dev/null || true; rm -f "$log" "$disk"' EXIT
for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ":$PORT " && break; sleep 0.1; done
if [ "${TRACE_WORKLOAD:-evtchn}" = gcopy ]; then
    # From one timed copy to the next (`let t0 = rdtsc();` in `bench_grant_copy`).
    line=$(grep -n 'let t0 = rdtsc();' guest-kernel/src/dom0/demo.rs | head -1 | cut -d: -f1)
    export TRACE_BREAK=${TRACE_BREAK:-demo.rs:$line} TRACE_SKIP=${TRACE_SKIP:-20}
fi
# Where each round trip starts: dom0 counting a ping in `Demo::pinged` (inlined, so by line).
TRACE_BREAK=${TRACE_BREAK:-demo.rs:$(grep -n 'p.seen += 1;' guest-kernel/src/dom0/demo.rs | cut -d: -f1)}
export TRACE_BREAK
TRACE_XEN_SYMS="$BUILD/xen-syms" TRACE_GUEST="${TRACE_GUEST:-$BUILD/guest-kernel-syms}" TRACE_GDB_PORT=$PORT \
    timeout 1200 gdb -q -batch -x scripts/trace-roundtrip.py 2>&1 |
    sed -n 's/^trace: //p'
