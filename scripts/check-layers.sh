#!/usr/bin/env bash
#! Checks that xen-core's portable modules import only downwards: each unit (a file or folder of
#! `xen-core/src/`) has a layer in the table below, and product code of a unit may name (`crate::`,
#! `super::`) only units of a lower layer, or itself. Two units of one layer may not import each
#! other at all, so no import cycle can span two units. Test code (modules declared
#! `#[cfg(test)] mod x;` and what lies under them, `#[cfg(test)] mod x { ... }` blocks) and comments
#! are not checked. `arch/x86_64/` and `main.rs` (the `xen` binary, on top of everything) are not checked.
#!
#! Usage: scripts/check-layers.sh [--edges]   (--edges: print every unit -> unit import, then check)
#! Fails (exit 1) with one line per upward or sideways import, or per file no unit of the table holds.
set -euo pipefail
cd "$(dirname "$0")/../xen-core/src"

# layer  unit: a file or folder under xen-core/src; a file belongs to the longest unit holding it.
# Read from the bottom (1) up; the names say what each layer is for (docs/architecture.md).
LAYERS='
1  lib.rs
1  layout.rs
1  cmdline.rs
1  console.rs
1  lab.rs
1  power.rs
1  pci.rs
1  pirq.rs
1  time
1  regs.rs
1  mm
2  multiboot.rs
2  acpi.rs
2  guest_access.rs
2  domain
3  shared_info.rs
3  emulate
3  mm/frame_table
4  mm/guest_pt.rs
4  domain/build
4  bounce.rs
4  evtchn
5  gnttab
6  domain/set.rs
7  ctx
7  domain/pool.rs
7  sched
8  evtchn/hypercall.rs
8  gnttab/hypercall.rs
8  mm/memory.rs
8  mm/mmu
8  sched/hypercall.rs
8  cpu.rs
9  hypercall
9  sched/wake.rs
9  keyhandler.rs
9  domain/lifecycle.rs
10 sched/core.rs
'

edges=0
[[ ${1:-} == --edges ]] && edges=1

files=$(find . -name '*.rs' -not -path './arch/*' -not -name main.rs | sed 's|^\./||' | sort)
# Files of test-only modules (`#[cfg(test)] mod x;` in their parent), and what lies under them.
test_mods=$(for f in $files; do
    d=$(dirname "$f"); [[ $d == . ]] && d= || d=$d/
    case $f in */mod.rs | lib.rs) ;; *) d=${f%.rs}/ ;; esac
    grep -A1 '^#\[cfg(test)\]$' "$f" | sed -n 's/^\(pub(crate) \)\?mod \([a-z_0-9]*\);$/\2/p' |
        while read -r m; do echo "^$d$m(\.rs|/)"; done || true
done)
# Module path of every file: a/b.rs and a/b/mod.rs are a::b; lib.rs is the crate root.
modules=$(for f in $files; do
    m=${f%.rs}; m=${m%/mod}; [[ $m == lib ]] && m=
    echo "${m//\//::} $f"
done)

awk -v edges="$edges" -v layers="$LAYERS" -v modules="$modules" '
function unit_of(f,   u, best) {
    best = ""
    for (u in layer)
        if ((f == u || index(f, u "/") == 1) && length(u) > length(best)) best = u
    return best
}
# The file a module path (a::b::c::Item) names: its longest prefix that is a module.
function file_of(path,   p) {
    p = path
    while (1) {
        if (p in modfile) return modfile[p]
        if (p !~ /::/) return modfile[""]
        sub(/::[^:]*$/, "", p)
    }
}
function parent(m) { if (m !~ /::/) return ""; sub(/::[^:]*$/, "", m); return m }
# Expands one `use` tree (brace groups, nested) into full paths.
function expand(prefix, body, out,   depth, i, c, start, part, n, k) {
    gsub(/[ \t\n]/, "", body)
    k = index(body, "{")
    if (k == 0) { out[++out[0]] = prefix body; return }
    # body = head::{a, b::{c}, d}
    n = prefix substr(body, 1, k - 1)
    body = substr(body, k + 1, length(body) - k - 1)
    depth = 0; start = 1
    for (i = 1; i <= length(body) + 1; i++) {
        c = (i <= length(body)) ? substr(body, i, 1) : ","
        if (c == "{") depth++
        else if (c == "}") depth--
        else if (c == "," && depth == 0) {
            part = substr(body, start, i - start)
            if (part != "") expand(n, part, out)
            start = i + 1
        }
    }
}
function check(src, line, path,   m, dst, us, ud) {
    if (path ~ /^(crate|\$crate)::/) { sub(/^\$?crate::/, "", path); m = path }
    else if (path ~ /^super::/) {
        m = srcmod
        while (path ~ /^super::/) { m = parent(m); sub(/^super::/, "", path) }
        m = (m == "" ? path : m "::" path)
    } else if (path ~ /^self::/) {
        sub(/^self::/, "", path)
        m = (srcmod == "" ? path : srcmod "::" path)
    } else {
        # A path from a child module of this one (`child::Item`, as a parent may write).
        first = path; sub(/::.*$/, "", first)
        if (!((srcmod == "" ? first : srcmod "::" first) in modfile)) return
        m = (srcmod == "" ? path : srcmod "::" path)
    }
    gsub(/::(self|\*)$/, "", m)
    dst = file_of(m)
    us = unit_of(src); ud = unit_of(dst)
    if (ud == "" || us == ud) return
    if (edges) print us " -> " ud
    if (layer[ud] >= layer[us]) {
        printf "%s:%d: %s (layer %d) imports %s (layer %d) via %s\n", src, line, us, layer[us], ud, layer[ud], m
        bad++
    }
}
BEGIN {
    n = split(layers, rows, "\n")
    for (i = 1; i <= n; i++) if (split(rows[i], f, " ") == 2) layer[f[2]] = f[1]
    n = split(modules, rows, "\n")
    for (i = 1; i <= n; i++) {
        if (split(rows[i], f, " ") == 2) { modfile[f[1]] = f[2]; filemod[f[2]] = f[1] }
        else if (split(rows[i], f, " ") == 1) { modfile[""] = f[1]; filemod[f[1]] = "" }
    }
}
FNR == 1 {
    src = FILENAME; srcmod = filemod[src]; skip = 0; pending = 0; stmt = ""
    if (unit_of(src) == "") { printf "%s: in no unit of the layer table\n", src; bad++ }
}
# Test-only code: skip `#[cfg(test)] mod x { ... }` blocks (to their closing brace in column 0).
skip { if ($0 ~ /^}/) skip = 0; next }
pending { pending = 0; if ($0 ~ /^(pub(\(crate\))? )?mod [a-z_0-9]+ \{/) { skip = 1; next } }
/^#\[cfg\(test\)\]$/ { pending = 1; next }
/^[ \t]*\/\// { next }
{
    s = $0
    sub(/[ \t]\/\/.*$/, "", s)
    # A `use` statement, possibly over several lines.
    if (stmt != "" || s ~ /^[ \t]*(pub(\([a-z]+\))? )?use /) {
        stmt = stmt " " s
        if (stmt !~ /;/) next
        u = stmt; stmt = ""
        sub(/^[ \t]*(pub(\([a-z]+\))? )?use[ \t]+/, "", u); sub(/;.*$/, "", u)
        gsub(/[ \t]+as[ \t]+[A-Za-z_0-9]+/, "", u)
        delete out; out[0] = 0
        expand("", u, out)
        for (k = 1; k <= out[0]; k++) check(src, FNR, out[k])
        next
    }
    # Paths written inline: crate::a::b::Item, super::x, and child::x (one that starts with a
    # lower-case name not preceded by a name or `::`: what `check` takes for a child module).
    s = " " s
    while (match(s, /[^A-Za-z_0-9:$][a-z_][a-z_0-9]*(::[A-Za-z_0-9]+)+/)) {
        check(src, FNR, substr(s, RSTART + 1, RLENGTH - 1))
        s = substr(s, RSTART + RLENGTH)
    }
}
END {
    if (bad) { printf "check-layers: %d import(s) against the layering (scripts/check-layers.sh)\n", bad; exit 1 }
}
' $(echo "$files" | grep -Ev "$(echo "$test_mods" | paste -sd'|')") \
    | { if ((edges)); then sort | uniq -c | sort -k2; else cat; fi; }
