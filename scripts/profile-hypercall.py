# gdb script for `make profile` (scripts/profile-hypercall.sh): where the guest instructions of one
# null hypercall go. QEMU runs the hypervisor under `-icount shift=0,sleep=off` (time moves only
# with instructions, so single-stepping does not make timers fall due) with its gdb stub; this
# script runs dom0's `bench=null-hypercall` loop to its steady state, then single-steps whole
# hypercalls, from the `syscall` entry until the guest runs again, and prints the instruction
# count of each and, for the last, the count per function (hypervisor symbols from xen-syms).
import collections
import os

import gdb

XEN_SYMS = os.environ["PROFILE_XEN_SYMS"]
GUEST = os.environ["PROFILE_GUEST"]
PORT = os.environ.get("PROFILE_GDB_PORT", "1299")
CALLS = int(os.environ.get("PROFILE_CALLS", "3"))
# Where in the guest to start (a guest-kernel function), and how many hypercalls to let pass
# after it before stepping.
BREAK = os.environ.get("PROFILE_BREAK", "guest_kernel::suites::bench::null_hypercall")
SKIP = int(os.environ.get("PROFILE_SKIP", "1000"))
# A file to write the shortest call's instruction addresses to, one a line (to read them beside
# `objdump -d build/xen-syms`).
TRACE = os.environ.get("PROFILE_TRACE")

gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set architecture i386:x86-64")
gdb.execute("file " + XEN_SYMS)
gdb.execute("add-symbol-file " + GUEST)
gdb.execute("target remote localhost:" + PORT)
gdb.execute("hbreak " + BREAK, to_string=True)
gdb.execute("continue", to_string=True)
gdb.execute("delete")
gdb.execute("hbreak xen_syscall_entry", to_string=True)
# Past the first calls (cold caches of QEMU's translator do not matter, but the loop's first
# iterations run other code paths, e.g. a pending timer tick, or the guest kernel growing its
# heap with `mmu_update`s).
for _ in range(SKIP):
    gdb.execute("continue", to_string=True)


def one_call():
    """The hypervisor's instruction addresses from the entry until the guest runs again."""
    pcs = []
    while True:
        pc = int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFFFFFFFFFF
        if pc < 0x8000_0000_0000_0000 and pcs:
            return pcs
        pcs.append(pc)
        if len(pcs) > 50000:
            return pcs
        gdb.execute("stepi", to_string=True)


calls = []
for _ in range(CALLS):
    calls.append(one_call())
    gdb.execute("continue", to_string=True)
print("profile: instructions per hypercall (hypervisor side):", [len(c) for c in calls])
if TRACE:
    with open(TRACE, "w") as f:
        f.writelines("%x\n" % pc for pc in min(calls, key=len))
names = {}
per_fn = collections.Counter()
for pc in min(calls, key=len):
    if pc not in names:
        s = gdb.execute("info symbol 0x%x" % pc, to_string=True).strip()
        names[pc] = s.split(" in section")[0].rsplit(" + ", 1)[0]
    per_fn[names[pc]] += 1
for name, n in per_fn.most_common(40):
    print("profile: %6d  %s" % (n, name))
gdb.execute("kill")
