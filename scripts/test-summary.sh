#!/usr/bin/env bash
#! Sums the `test result:` lines of cargo test output into one closing line: `N passed, N failed`.
set -euo pipefail
log=$1
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/)  p += $i;
            if ($(i+1) ~ /^failed/)  f += $i;
            if ($(i+1) ~ /^ignored/) g += $i;
        }
        n++
     }
     END {
        printf "make test: %d test binaries; %d ignored here (QEMU tests, run in the second pass)\n", n, g;
        printf "%d passed, %d failed\n", p, f;
        exit (f > 0 || p == 0)
     }' "$log"
