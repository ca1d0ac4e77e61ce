//! `hostile=huge-trap-table`: a `set_trap_table` list of 10^6 entries (issue 11, finding 4).
//!
//! One frame of `trap_info` entries (copies of our own boot table, so the table Xen ends up with
//! is the one we have) is mapped at 4000 consecutive pages, followed by a page of zeros whose
//! first entry (address 0) ends the list: 1 024 000 entries in one hypercall. Xen's
//! `do_set_trap_table` asks `hypercall_preempt_check()` after every entry and continues the call
//! later with the list advanced, so our 1 ms periodic timer keeps ticking during the call (on Xen
//! 4.17, over a hundred upcalls); a hypervisor that walks the list in one go holds the CPU, with
//! interrupts off, and the guest sees one tick at most.
//!
//! Prints `hostile: huge-trap-table: upcalls=<n> entries=<m> rc=<rc> ms=<t>`.

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::xen::__HYPERVISOR_set_trap_table;
use zerocopy::IntoBytes;

use super::alias;
use crate::kernel::hypercall as hc;
use crate::kernel::traps;

/// Pages of entries (each the same frame).
const PAGES: u64 = 4000;
/// Entries per page.
const PER_PAGE: u64 = 4096 / core::mem::size_of::<TrapInfo>() as u64;

pub fn run() -> Result<(), &'static str> {
    // Our own entries, over and over: whatever the hypervisor installs is what we installed.
    let base = traps::base_table();
    let real = &base[..base.len() - 1];
    let entries = alias::filled_frame(|page| {
        for (i, chunk) in page.chunks_exact_mut(16).enumerate() {
            chunk.copy_from_slice(real[i % real.len()].as_bytes());
        }
    })?;
    let end = alias::filled_frame(|_| {})?;
    alias::map_pages(alias::BASE, PAGES + 1, false, |i| {
        if i < PAGES {
            entries
        } else {
            end
        }
    })?;
    let (rc, upcalls, took) = alias::during_ticks(|| {
        // SAFETY: the list holds only our own boot table's entries (handlers that cope with
        // Xen's bounce frame) and ends with a zero entry.
        unsafe { hc::hypercall(__HYPERVISOR_set_trap_table, alias::BASE, 0, 0, 0, 0) }
    });
    println!(
        "hostile: huge-trap-table: upcalls={upcalls} entries={} rc={rc} ms={}",
        PAGES * PER_PAGE,
        took / 1_000_000
    );
    // The table is the boot table whatever happened; make sure of it.
    traps::reinstall();
    Ok(())
}
