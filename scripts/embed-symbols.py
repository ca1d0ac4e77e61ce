#!/usr/bin/env python3
"""Writes the hypervisor's symbol table into the `.xen_symbols` section of the flat image.

Usage: embed-symbols.py <xen-syms ELF> <flat image>
Reads text symbols with `nm`, builds the table described in xen-core/src/arch/x86_64/symbols.rs
and writes it at the section's offset in the flat image (its address minus the image's start).
"""
import re
import struct
import subprocess
import sys

elf, flat = sys.argv[1], sys.argv[2]
out = subprocess.run(["nm", "-n", "-C", "--defined-only", elf], check=True,
                     capture_output=True, text=True).stdout
syms, marks = [], {}
for line in out.splitlines():
    parts = line.split(maxsplit=2)
    if len(parts) != 3:
        continue
    addr, kind, name = int(parts[0], 16), parts[1], parts[2]
    if name in ("__image_start", "__xen_symbols_start", "__xen_symbols_end"):
        marks[name] = addr
    if kind in "tT":
        syms.append((addr, re.sub(r"::h[0-9a-f]{16}$", "", name)))
start, table_end = marks["__xen_symbols_start"], marks["__xen_symbols_end"]
names = b""
entries = b""
for addr, name in syms:
    raw = name.encode()[:200]
    entries += struct.pack("<QII", addr, len(names), len(raw))
    names += raw
blob = b"XSYM" + struct.pack("<I", len(syms)) + entries + names
if len(blob) > table_end - start:
    sys.exit(f"embed-symbols: table of {len(blob)} bytes does not fit in {table_end - start}")
offset = start - marks["__image_start"]
with open(flat, "r+b") as f:
    f.seek(offset)
    f.write(blob)
print(f"embed-symbols: {len(syms)} symbols, {len(blob)} bytes at offset {offset:#x}")
