//! `hostile=huge-multicall`: multicalls that would hold the CPU for seconds (issue 11, finding 4).
//!
//! Two calls, each timed against a 1 ms periodic timer:
//!
//! - **batches**: a multicall of two entries, an `mmu_update` of 1 024 000 requests and an
//!   `mmuext_op` of 682 666 operations, each list one frame aliased at 4000 pages (the updates
//!   are `MMU_MACHPHYS_UPDATE`s that set our own frame's M2P entry to what it is, the operations
//!   `MMUEXT_TLB_FLUSH_LOCAL`s). Xen preempts a batch inside a multicall too: the sub-call's
//!   continuation is written into the entry and the multicall continues from it
//!   (`MCSF_call_preempted`). Prints `hostile: huge-multicall: batches upcalls=<n> rc=<rc>
//!   results=<r0>,<r1> done=<d0>,<d1> ms=<t>`.
//! - **entries**: a multicall of 1 024 000 `xen_version` entries, the list one writable frame of
//!   64 entries aliased at 16000 pages. Xen asks `hypercall_preempt_check()` between entries.
//!   Prints `hostile: huge-multicall: entries upcalls=<n> count=<m> rc=<rc> ms=<t>`.

use hypercall_abi::version::XENVER_version;
use hypercall_abi::xen::{
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_multicall,
    __HYPERVISOR_xen_version, MmuextOp, MulticallEntry, DOMID_SELF, MMUEXT_TLB_FLUSH_LOCAL,
    MMU_MACHPHYS_UPDATE,
};
use zerocopy::IntoBytes;

use super::alias;
use crate::kernel::hypercall::{self as hc, ptr};
use crate::kernel::mm;

/// Pages of each aliased batch list.
const BATCH_PAGES: u64 = 4000;
/// Pages of the aliased multicall list.
const CALL_PAGES: u64 = 16000;
/// Multicall entries per page.
const CALLS_PER_PAGE: u64 = 4096 / core::mem::size_of::<MulticallEntry>() as u64;

pub fn run() -> Result<(), &'static str> {
    batches()?;
    entries()
}

fn batches() -> Result<(), &'static str> {
    // A no-op update: our own frame's M2P entry set to the pfn it has.
    let target = alias::filled_frame(|_| {})?;
    let pfn = mm::pfn_of(target).ok_or("a frame that is not ours")?;
    let updates = alias::filled_frame(|page| {
        for req in page.chunks_exact_mut(16) {
            req[..8].copy_from_slice(&((target.0 << 12) | MMU_MACHPHYS_UPDATE).to_le_bytes());
            req[8..].copy_from_slice(&pfn.0.to_le_bytes());
        }
    })?;
    // 24-byte operations straddle the 4096-byte pages: every 8-byte word holds the command, so
    // that every operation, wherever it starts, is a local TLB flush (its arguments unused).
    let flushes = alias::filled_frame(|page| {
        for w in page.chunks_exact_mut(8) {
            w.copy_from_slice(&u64::from(MMUEXT_TLB_FLUSH_LOCAL).to_le_bytes());
        }
    })?;
    let updates_va = alias::BASE;
    let flushes_va = alias::BASE + (1 << 30);
    alias::map_pages(updates_va, BATCH_PAGES, false, |_| updates)?;
    alias::map_pages(flushes_va, BATCH_PAGES, false, |_| flushes)?;
    let n_updates = BATCH_PAGES * 4096 / 16;
    let n_flushes = BATCH_PAGES * 4096 / core::mem::size_of::<MmuextOp>() as u64;
    let mut done = [0u32; 2];
    let self_ = u64::from(DOMID_SELF);
    let mut calls = [
        MulticallEntry {
            op: __HYPERVISOR_mmu_update.into(),
            args: [updates_va, n_updates, ptr(&raw mut done[0]), self_, 0, 0],
            ..Default::default()
        },
        MulticallEntry {
            op: __HYPERVISOR_mmuext_op.into(),
            args: [flushes_va, n_flushes, ptr(&raw mut done[1]), self_, 0, 0],
            ..Default::default()
        },
    ];
    let (rc, upcalls, took) = alias::during_ticks(|| {
        // SAFETY: both lists are readable; `done` is writable; the updates only restate our own
        // M2P entry and the operations flush our TLB.
        unsafe { hc::multicall(&mut calls) }
    });
    // SAFETY: the hypervisor wrote `done` during the call; read it back as it left it.
    let done = unsafe { core::ptr::read_volatile(&raw const done) };
    println!(
        "hostile: huge-multicall: batches upcalls={upcalls} rc={rc} results={},{} done={},{} ms={}",
        calls[0].result as i64,
        calls[1].result as i64,
        done[0],
        done[1],
        took / 1_000_000
    );
    Ok(())
}

fn entries() -> Result<(), &'static str> {
    let call = MulticallEntry {
        op: __HYPERVISOR_xen_version.into(),
        args: [XENVER_version.into(), 0, 0, 0, 0, 0],
        ..Default::default()
    };
    let list = alias::filled_frame(|page| {
        for e in page.chunks_exact_mut(core::mem::size_of::<MulticallEntry>()) {
            e.copy_from_slice(call.as_bytes());
        }
    })?;
    let va = alias::BASE + (2 << 30);
    // Writable: each entry's result is written back (into the one frame, over and over).
    alias::map_pages(va, CALL_PAGES, true, |_| list)?;
    let count = CALL_PAGES * CALLS_PER_PAGE;
    let (rc, upcalls, took) = alias::during_ticks(|| {
        // SAFETY: the list is readable and writable; every entry is `xen_version(XENVER_version)`.
        unsafe { hc::hypercall(__HYPERVISOR_multicall, va, count, 0, 0, 0) }
    });
    println!(
        "hostile: huge-multicall: entries upcalls={upcalls} count={count} rc={rc} ms={}",
        took / 1_000_000
    );
    Ok(())
}
