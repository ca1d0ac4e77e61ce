#!/usr/bin/env python3
"""The host's own speed over time, per CPU: is the machine steady enough for wall-clock figures?

Runs one busy loop pinned to each CPU at once and counts its iterations in windows of
WINDOW_MS (default 20) for SECONDS (default 6). Prints, per CPU, the windows' minimum, 10th
percentile, median, 90th percentile and maximum, and the share of windows below 60 % of the
90th percentile: on a steady host that share is near 0; on the shared machines this project is
measured on it was about half, in stretches of 20 ms to a second (docs/performance.md, "The
host's speed, and rounds"). Run it on an otherwise idle machine: anything else running counts
as the host being slow. Usage: scripts/host-speed.py [SECONDS] [WINDOW_MS]
"""
import os
import sys
import time
from multiprocessing import Process, Queue


def spin(cpu, seconds, window, out):
    os.sched_setaffinity(0, {cpu})
    counts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < window:
            n += 1
        counts.append(n)
    out.put((cpu, counts))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    window = (float(sys.argv[2]) if len(sys.argv) > 2 else 20.0) / 1000.0
    cpus = sorted(os.sched_getaffinity(0))
    out = Queue()
    procs = [Process(target=spin, args=(c, seconds, window, out)) for c in cpus]
    for p in procs:
        p.start()
    results = sorted(out.get() for _ in procs)
    for p in procs:
        p.join()
    print(f"host speed: iterations per {window * 1000:.0f} ms window, {seconds:.0f} s per CPU")
    print("| CPU | windows | min | p10 | median | p90 | max | below 60 % of p90 |")
    print("|---|---|---|---|---|---|---|---|")
    for cpu, counts in results:
        s = sorted(counts)
        p90 = s[len(s) * 9 // 10]
        slow = sum(1 for c in counts if c < 0.6 * p90) / len(counts)
        print(
            f"| {cpu} | {len(s)} | {s[0]} | {s[len(s) // 10]} | {s[len(s) // 2]} | {p90} "
            f"| {s[-1]} | {100 * slow:.0f} % |"
        )


if __name__ == "__main__":
    main()
