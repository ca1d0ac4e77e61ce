# gdb script for `scripts/trace-roundtrip.sh`: where the guest instructions of one event-channel
# round trip go (dom0 <-> domU ping-pong, `make bench`'s two-domain run). QEMU runs under
# `-icount shift=0,sleep=off` with its gdb stub; this script lets dom0's ping handler run to its
# steady state, then single-steps everything (both guests and the hypervisor) from one entry of
# dom0's `pinged` to the next, and prints the segments (each stay in the hypervisor or in a
# guest) with their instruction counts and, per hypervisor entry, the functions that cost most.
import collections
import os

import gdb

XEN_SYMS = os.environ["TRACE_XEN_SYMS"]
GUEST = os.environ["TRACE_GUEST"]
PORT = os.environ.get("TRACE_GDB_PORT", "1298")
BREAK = os.environ.get("TRACE_BREAK", "guest_kernel::dom0::demo::Demo::pinged")
SKIP = int(os.environ.get("TRACE_SKIP", "100"))
TOP = int(os.environ.get("TRACE_TOP", "12"))
GTOP = int(os.environ.get("TRACE_GTOP", "5"))
# Round trips to trace one after the other (the first `SKIP` let pass).
ROUNDS = int(os.environ.get("TRACE_ROUNDS", "3"))
# TRACE_GINCL=1: the guests' stretches get the inclusive counts too (slower: one more read per step).
GINCL = os.environ.get("TRACE_GINCL", "") == "1"
# TRACE_PCS=FILE: the hypervisor's instruction addresses of the last round trip traced, to FILE.
PCS = os.environ.get("TRACE_PCS", "")
# TRACE_GPCS=1: the guests' instruction addresses too (for inline-breakdown.py with
# XEN_SYMS=build/guest-kernel-syms).
GPCS = os.environ.get("TRACE_GPCS", "") == "1"
# The domain whose code the break is in, and the other one (labels of the guests' stretches).
START_NAME = os.environ.get("TRACE_START_NAME", "dom0").ljust(5)
OTHER_NAME = os.environ.get("TRACE_OTHER_NAME", "domU").ljust(5)

gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set architecture i386:x86-64")
gdb.execute("file " + XEN_SYMS)
gdb.execute("add-symbol-file " + GUEST)
gdb.execute("target remote localhost:" + PORT)
gdb.execute("hbreak " + BREAK, to_string=True)
for _ in range(SKIP):
    gdb.execute("continue", to_string=True)
gdb.execute("delete")
start = int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFFFFFFFFFF

names = {}
starts = {}


def name(pc):
    if pc not in names:
        s = gdb.execute("info symbol 0x%x" % pc, to_string=True).strip()
        s = s.split(" in section")[0]
        names[pc] = s.rsplit(" + ", 1)[0]
        starts[pc] = " + " not in s
    return names[pc]


callers = collections.Counter()


def inclusive(steps):
    """Per function, the instructions spent in it and in what it called (a call is a function's
    first instruction reached with RSP 8 lower; a return, RSP above the frame's)."""
    incl = collections.Counter()
    callers.clear()
    stack = []
    prev_sp = None
    for pc, sp in steps:
        while stack and sp > stack[-1][1]:
            stack.pop()
        fn = name(pc)
        if starts[pc]:
            if prev_sp is not None and sp == prev_sp - 8:
                stack.append((fn, sp))
            elif stack:
                stack[-1] = (fn, stack[-1][1])
            else:
                stack.append((fn, sp))
        elif not stack:
            stack.append((fn, sp))
        for f in set(f for f, _ in stack) | {fn}:
            incl[f] += 1
        if fn in ("memset", "memcpy", "memcmp") and len(stack) >= 2:
            callers[fn + " <- " + stack[-2][0]] += 1
        prev_sp = sp
    return incl


HV = 0x8000_0000_0000_0000


def cr3():
    try:
        return int(gdb.parse_and_eval("$cr3")) & 0xFFFFFFFFFFFFF000
    except gdb.error:
        return 0


def one_round():
    """Every instruction until dom0's `pinged` is entered again, with the CR3 of each guest
    stretch (which domain it was)."""
    pcs = []
    sps = []
    spaces = []
    gdb.execute("stepi", to_string=True)
    was_hv = True
    while True:
        pc = int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFFFFFFFFFF
        if pc == start or len(pcs) > 400000:
            return pcs, sps, spaces
        hv = pc >= HV
        if not hv and was_hv:
            spaces.append(cr3())
        was_hv = hv
        pcs.append(pc)
        sps.append(int(gdb.parse_and_eval("$sp")) & 0xFFFFFFFFFFFFFFFF if hv or GINCL else 0)
        gdb.execute("stepi", to_string=True)


all_fn = collections.Counter()
dom0_cr3 = cr3()
for r in range(ROUNDS):
    pcs, sps, spaces = one_round()
    segs = []
    segsp = []
    for pc, sp in zip(pcs, sps):
        hv = pc >= HV
        if not segs or segs[-1][0] != hv:
            segs.append((hv, []))
            segsp.append([])
        segs[-1][1].append(pc)
        segsp[-1].append((pc, sp))
    total_hv = sum(len(s) for h, s in segs if h)
    if PCS:
        # The hypervisor's instruction addresses of this round trip, one per line with the
        # segment number (scripts/inline-breakdown.py splits them by inlined function).
        with open(PCS, "w") as f:
            for i, (hv, s) in enumerate(segs):
                if hv or GPCS:
                    f.write("".join("%d %x\n" % (i, pc) for pc in s))
    print("trace: round trip %d: %d instructions, %d in the hypervisor over %d entries, %d in guests"
          % (r, len(pcs), total_hv, sum(1 for h, _ in segs if h), len(pcs) - total_hv))
    gi = 0
    for i, (hv, s) in enumerate(segs):
        per_fn = collections.Counter(name(pc) for pc in s)
        if hv:
            all_fn.update(per_fn)
            who = "HV   "
        else:
            c = spaces[gi] if gi < len(spaces) else 0
            gi += 1
            who = START_NAME if c == dom0_cr3 else OTHER_NAME
        print("trace: seg %2d %s %6d  first=%s last=%s" % (i, who, len(s), name(s[0])[:60], name(s[-1])[:60]))
        for fn, n in per_fn.most_common(TOP if hv else GTOP):
            print("trace:          %6d  %s" % (n, fn[:110]))
        if hv or GINCL:
            print("trace:        inclusive:")
            for fn, n in inclusive(segsp[i]).most_common(TOP * 2 if hv else GTOP * 2):
                print("trace:          %6d  %s" % (n, fn[:110]))
            for fn, n in callers.most_common(8):
                print("trace:          %6d  %s" % (n, fn[:110]))
print("trace: hypervisor functions over the %d round trips:" % ROUNDS)
for fn, n in all_fn.most_common(70):
    print("trace:   %6d  %s" % (n, fn[:120]))
gdb.execute("kill")
