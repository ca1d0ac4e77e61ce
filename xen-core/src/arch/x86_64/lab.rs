//! `selftest=native-pte`: the teaching lab's native baseline on real page tables (loop:
//! `xen_core::lab`).
//!
//! Runs at boot, before dom0 exists and with interrupts off. A scratch range of
//! `lab::MAX_PAGES` pages at L4 slot 1 of the hypervisor's own L4 (the low half belongs to
//! guests, and there is none yet) gets an L3, an L2 and 32 L1 tables from this file's `.bss`; the
//! loop writes the L1 entries with plain stores, maps each page read-only and non-executable onto
//! a frame of RAM (only ever read), and reads it back through the mapping. Afterwards the slot is
//! unlinked and the TLB flushed, so dom0 starts with the address space it always had.

use xen_core::lab::{self, NativeScratch, MAX_PAGES};
use xen_core::layout::XEN_VIRT_START;
use xen_core::multiboot::{MemoryKind, MemoryMap};

use super::console::printk;
use super::tsc::rdtsc_ordered;

extern "C" {
    /// The hypervisor's L4 table (built by `boot.rs`).
    static mut boot_l4: [u64; 512];
}

/// One page table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// L1 tables for `MAX_PAGES` pages.
const L1S: usize = MAX_PAGES / 512;

/// The scratch range's tables: the L3, the L2, then the L1s.
static mut TABLES: [Table; L1S + 2] = [const { Table([0; 512]) }; L1S + 2];

/// The L4 slot of the scratch range.
const SLOT: usize = 1;
/// The scratch range's first address.
const BASE: u64 = (SLOT as u64) << 39;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const A: u64 = 1 << 5;
const NX: u64 = 1 << 63;

/// Machine address of a table in the image (linked at `XEN_VIRT_START` + its machine address).
fn maddr(table: *const Table) -> u64 {
    table as u64 - XEN_VIRT_START
}

/// The scratch range while it is linked.
struct Scratch {
    /// The L1 tables, entry by entry (`L1S * 512` entries).
    l1: *mut u64,
}

impl NativeScratch for Scratch {
    fn set_pte(&mut self, i: usize, val: u64) {
        assert!(i < MAX_PAGES);
        // SAFETY: `l1` points to the `L1S * 512` entries of this file's L1 tables, which nothing
        // else references while the test runs; a volatile store, as the MMU reads the entry.
        unsafe { core::ptr::write_volatile(self.l1.add(i), val) };
    }

    fn touch(&mut self, i: usize) -> u64 {
        assert!(i < MAX_PAGES);
        // SAFETY: the loop maps scratch page i (read-only, onto RAM) before it touches it; a
        // volatile read through a raw pointer, no reference is made.
        unsafe { core::ptr::read_volatile((BASE + i as u64 * 4096) as *const u64) }
    }

    fn flush_tlb(&mut self) {
        x86_64::instructions::tlb::flush_all();
    }

    fn now(&mut self) -> u64 {
        rdtsc_ordered()
    }
}

/// Runs the baseline for every N of `lab::PAGES` and prints one `lab pt_batching variant=native`
/// line each.
pub fn native_pte(map: Option<&MemoryMap<'_>>) {
    // The pages map onto RAM frames (read-only): the first usable region large enough.
    let need = MAX_PAGES as u64 * 4096;
    let region = map.and_then(|m| {
        m.iter()
            .find(|r| r.kind == MemoryKind::Usable && r.base.0 >= 1 << 20 && r.len >= need)
    });
    let Some(region) = region else {
        printk!("lab pt_batching failed: no RAM region of {need} bytes to map\n");
        return;
    };
    let first_frame = region.base.0.div_ceil(4096);

    let tables = &raw mut TABLES;
    let l4 = &raw mut boot_l4;
    // SAFETY: boot, one CPU, interrupts off, no guest: nothing else uses slot 1 of the
    // hypervisor's L4 (guests own the low half, and none exists yet) or this file's tables, and no
    // reference to either is live. The tables are page-aligned statics in the image, so their
    // machine addresses are their link addresses minus XEN_VIRT_START.
    unsafe {
        let t = &mut *tables;
        for table in t.iter_mut() {
            table.0 = [0; 512];
        }
        t[0].0[0] = maddr(&t[1]) | P | RW | A;
        for k in 0..L1S {
            t[1].0[k] = maddr(&t[2 + k]) | P | RW | A;
        }
        (*l4)[SLOT] = maddr(&t[0]) | P | RW | A;
    }
    x86_64::instructions::tlb::flush_all();

    let mut scratch = Scratch {
        // SAFETY: `TABLES` is an array of 4 KiB tables of u64, the L1s from index 2 on; the
        // pointer, derived from the whole static, stays inside it.
        l1: unsafe { tables.cast::<u64>().add(2 * 512) },
    };
    for pages in lab::PAGES {
        let f = lab::measure(&mut scratch, pages, lab::REPS, |i| {
            (first_frame + i as u64) << 12 | P | A | NX
        });
        printk!("lab pt_batching {f}\n");
    }

    // SAFETY: as above; the loop has cleared every L1 entry and flushed the TLB.
    unsafe { (*l4)[SLOT] = 0 };
    x86_64::instructions::tlb::flush_all();
}
