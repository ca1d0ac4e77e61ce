#!/usr/bin/env python3
# Where a hypervisor function's instructions went, split by what the compiler inlined into it:
# reads the instruction addresses `scripts/trace-roundtrip.sh` writes with TRACE_PCS=FILE (one
# "<segment> <hex address>" per line) and groups those of the segments asked for, inside the
# function asked for, by their chain of inlined callers (`addr2line -i` on build/xen-syms), e.g.
#   python3 scripts/inline-breakdown.py /tmp/pcs.txt 3 handle_entry 4
# for segment 3's instructions in `handle_entry`, four levels of inlining deep. The build the
# trace ran on must be the one in build/xen-syms (XEN_SYMS=... for another).
import collections
import os
import subprocess
import sys

if len(sys.argv) < 4:
    sys.exit("usage: inline-breakdown.py PCS_FILE SEGMENTS(a,b,..) FUNCTION [DEPTH]")
pcs = [line.split() for line in open(sys.argv[1])]
segs = sys.argv[2].split(",")
phys = sys.argv[3]
depth = int(sys.argv[4]) if len(sys.argv) > 4 else 2
syms = os.environ.get("XEN_SYMS", "build/xen-syms")
uniq = sorted(set(p for _, p in pcs))
out = subprocess.run(["addr2line", "-a", "-i", "-f", "-C", "-e", syms] + ["0x" + u for u in uniq],
                     capture_output=True, text=True, check=True).stdout.split("\n")
# For each address: its frames, innermost first (the physical function last).
frames = {}
cur = None
i = 0
while i < len(out):
    line = out[i]
    if line.startswith("0x"):
        cur = int(line, 16)
        frames[cur] = []
        i += 1
    elif line == "":
        i += 1
    else:
        frames[cur].append(line)
        i += 2


def short(name):
    parts = name.split("::")
    return parts[-2] + "{closure}" if "{{closure}}" in name and len(parts) > 1 else parts[-1]


count = collections.Counter()
for seg, pc in pcs:
    if seg not in segs:
        continue
    fr = frames[int(pc, 16)]
    if phys not in fr[-1]:
        continue
    chain = [short(f) for f in reversed(fr)][1:1 + depth]
    count[" > ".join(chain) or "(itself)"] += 1
total = sum(count.values())
print("%d instructions of %s in segment(s) %s" % (total, phys, ",".join(segs)))
for k, v in count.most_common(60):
    print("%6d  %s" % (v, k))
