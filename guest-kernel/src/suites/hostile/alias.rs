//! Shared by the long-hypercall attacks: one frame mapped at thousands of consecutive addresses,
//! which turns a page of list elements into a list as long as the attacker likes, and a count of
//! the timer upcalls that arrive while one hypercall runs.
//!
//! A hypervisor that runs a guest's list to its end in one go holds the CPU, with interrupts off,
//! for as long as the guest wants; Xen checks for preemption between elements and continues the
//! hypercall later, so a guest with a periodic timer sees its ticks during the call. The count of
//! upcalls is what the QEMU test checks.

use core::ptr;

use guest_kernel::layout::{direct_map_va, SCRATCH_BASE};
use guest_kernel::mmu_batch::{Mode, MAX_BATCH};
use guest_kernel::paging::{entry_maddr, index, make_entry, Mfn, PTE_A, PTE_D, PTE_P, PTE_RW};
use hypercall_abi::vcpu::VcpuNoArg;
use hypercall_abi::vcpu::VcpuSetPeriodicTimer;

use crate::kernel::hypercall as hc;
use crate::kernel::{direct_map, events, mm, pt, shared_info, time};

/// Where the aliased lists go: the scratch slot of the address space, unused by a domU.
pub const BASE: u64 = SCRATCH_BASE;

/// Period of the timer that ticks during the long call (Xen's minimum is 1 ms).
const TICK_NS: u64 = time::MS;

/// A new frame of ours, filled by `fill` through its writable direct-map page.
pub fn filled_frame(fill: impl FnOnce(&mut [u8; 4096])) -> Result<Mfn, &'static str> {
    direct_map::init_memory().map_err(|_| "cannot extend the direct map")?;
    let pfn = mm::alloc_frame().ok_or("out of frames")?;
    let mfn = mm::mfn_of(pfn).ok_or("a frame without a machine frame")?;
    let mut page = [0u8; 4096];
    fill(&mut page);
    // SAFETY: the frame was just taken from the allocator, so nothing else uses it, and
    // `init_memory` mapped every page of ours writable in the direct map.
    unsafe {
        ptr::copy_nonoverlapping(page.as_ptr(), direct_map_va(pfn) as *mut u8, 4096);
    }
    Ok(mfn)
}

/// Maps `pages` consecutive pages from `va` (2 MiB aligned, in [`BASE`]'s slot), page `i` to
/// frame `frame(i)`, read-only or writable. The page tables come from the frame allocator and
/// stay until the domain dies.
pub fn map_pages(
    va: u64,
    pages: u64,
    writable: bool,
    frame: impl Fn(u64) -> Mfn,
) -> Result<(), &'static str> {
    let l4 = mm::kernel_l4();
    let flags = if writable {
        PTE_P | PTE_RW | PTE_A | PTE_D
    } else {
        PTE_P | PTE_A
    };
    let mut batch = pt::batch(Mode::Batched(MAX_BATCH)).map_err(|_| "no batch")?;
    let mut l1 = Mfn(0);
    for i in 0..pages {
        let at = va + i * 4096;
        if i == 0 || index(at, 1) == 0 {
            l1 = pt::ensure_l1(l4, at).map_err(|_| "cannot build the alias page tables")?;
        }
        batch
            .set_pte(entry_maddr(l1, index(at, 1)), make_entry(frame(i).0, flags))
            .map_err(|_| "mmu_update refused an alias")?;
    }
    batch.flush().map_err(|_| "mmu_update refused an alias")
}

/// Runs `call` with a 1 ms periodic timer and event upcalls unmasked, as a guest that keeps
/// time would be; returns its result, the upcalls taken while it ran, and how long it took (ns,
/// 0 if the clock is unreadable).
pub fn during_ticks<R>(call: impl FnOnce() -> R) -> (R, u32, u64) {
    let mut period = VcpuSetPeriodicTimer { period_ns: TICK_NS };
    hc::vcpu_op(0, &mut period);
    let start = time::now_ns();
    let before = events::upcalls();
    shared_info::set_upcall_mask(0);
    let r = call();
    shared_info::set_upcall_mask(1);
    let upcalls = events::upcalls() - before;
    let took = match (start, time::now_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    hc::vcpu_op_noarg(VcpuNoArg::StopPeriodicTimer, 0);
    (r, upcalls, took)
}
