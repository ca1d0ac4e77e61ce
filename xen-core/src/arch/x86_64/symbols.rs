//! Symbols for backtraces: a table embedded in the image after the link, and an RBP-chain walk.
//!
//! `scripts/embed-symbols.py` writes the table into the reserved `.xen_symbols` section of the flat
//! image: "XSYM", a u32 count, then `count` entries of (u64 address, u32 name offset, u32 name
//! length) sorted by address, then the names. Images built without that step have an empty table
//! and backtraces print bare addresses (`addr2line -e build/xen-syms` resolves them).

use core::ptr;

/// Size reserved for the table.
pub const TABLE_SIZE: usize = 128 * 1024;

#[used]
#[link_section = ".xen_symbols"]
static XEN_SYMBOLS: [u8; TABLE_SIZE] = [0; TABLE_SIZE];

fn byte(i: usize) -> u8 {
    if i >= TABLE_SIZE {
        return 0;
    }
    // SAFETY: in bounds; volatile because the contents are written after compilation, so the
    // compiler must not assume they are the zeros of the initialiser.
    unsafe { ptr::read_volatile((&raw const XEN_SYMBOLS).cast::<u8>().add(i)) }
}

fn u32_at(i: usize) -> u32 {
    u32::from_le_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)])
}

fn u64_at(i: usize) -> u64 {
    u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32)
}

const HEADER: usize = 8;
const ENTRY: usize = 16;

fn count() -> usize {
    if [byte(0), byte(1), byte(2), byte(3)] != *b"XSYM" {
        return 0;
    }
    (u32_at(4) as usize).min((TABLE_SIZE - HEADER) / ENTRY)
}

/// The symbol containing `addr`: (name bytes, offset into it).
pub fn lookup(addr: u64) -> Option<(impl Iterator<Item = u8>, u64)> {
    let n = count();
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if u64_at(HEADER + mid * ENTRY) <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let i = lo.checked_sub(1)?;
    let e = HEADER + i * ENTRY;
    let start = u64_at(e);
    let names = HEADER + n * ENTRY;
    let off = names + u32_at(e + 8) as usize;
    let len = (u32_at(e + 12) as usize).min(200);
    Some(((off..off + len).map(byte), addr - start))
}

/// Prints one backtrace line per frame of the RBP chain starting at `rbp` (at most 32).
pub fn backtrace(rbp: u64, mut print: impl FnMut(u64, &mut dyn Iterator<Item = u8>, u64)) {
    let mut fp = rbp;
    for _ in 0..32 {
        // A frame pointer of the hypervisor lies in its image or stacks (high half), 8-aligned.
        if fp < xen_core::layout::XEN_VIRT_START || !fp.is_multiple_of(8) {
            break;
        }
        // SAFETY: `fp` lies in the hypervisor's image window, which is mapped for its lifetime;
        // with frame pointers on, [fp] is the caller's RBP and [fp + 8] the return address.
        let (next, ret) = unsafe {
            (
                ptr::read_volatile(fp as *const u64),
                ptr::read_volatile((fp + 8) as *const u64),
            )
        };
        if ret == 0 {
            break;
        }
        match lookup(ret) {
            Some((mut name, off)) => print(ret, &mut name, off),
            None => print(ret, &mut core::iter::empty(), 0),
        }
        if next <= fp {
            break;
        }
        fp = next;
    }
}

/// Prints a backtrace from frame pointer `rbp` on the console, Xen style.
pub fn print_backtrace(rbp: u64) {
    super::console::printk!("Xen call trace:\n");
    backtrace(rbp, |ret, name, off| {
        let mut buf = [0u8; 200];
        let mut n = 0;
        for b in name {
            if n < buf.len() {
                buf[n] = b;
                n += 1;
            }
        }
        let name = core::str::from_utf8(&buf[..n]).unwrap_or("?");
        if n == 0 {
            super::console::printk!("   [<{ret:016x}>] ?\n");
        } else {
            super::console::printk!("   [<{ret:016x}>] {name}+{off:#x}\n");
        }
    });
}

/// The current frame pointer.
#[inline(always)]
pub fn current_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rbp
}
