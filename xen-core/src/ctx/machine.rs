//! What the hypervisor provides to hypercall handlers besides the domains' own state: the
//! [`Machine`] (memory, console, time, frame table, interrupt lines), and the question a long
//! hypercall asks between its elements ([`Preempt`], [`preempt_check`]).

use crate::mm::frame_alloc::{FramePool, FrameRange};
use crate::mm::frame_table::{Mm, Owner};
use crate::mm::xen_page::XenPage;
use crate::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};
use crate::pirq::PirqTable;
use crate::shared_info::SharedInfoPage;

/// What the hypervisor provides to hypercall handlers besides the domain's own state. The arch
/// layer implements it over the real machine; tests implement it over a byte vector.
pub trait Machine: MachineMemoryMut {
    /// The machine's memory as [`Machine::mm_preemptible`] hands it out: named, so that a batch
    /// loop over page-table entries (`mmu_update`'s) is compiled for it, its reads and writes
    /// in line rather than dynamic calls.
    type Mem: MachineMemoryMut;

    /// Writes guest console output (dom0's goes straight to the serial line, as on Xen).
    fn console_write(&mut self, bytes: &[u8]);
    /// Reads pending console input into `buf`; returns the number of bytes read.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// System time: nanoseconds since boot, as `vcpu_time_info` describes it to guests.
    fn now_ns(&self) -> u64;
    /// The machine's memory map as e820 entries (addr, size, type), for
    /// `XENMEM_machine_memory_map`. Returns how many entries were written to `out`.
    fn e820(&self, out: &mut [(u64, u64, u32)]) -> usize;

    /// The machine-wide memory-management state (frame table, M2P location, hypervisor L4
    /// slots), with machine memory borrowed alongside it: validating page tables needs both at
    /// once. `None` until the arch layer has a frame table; the page-table hypercalls
    /// (`mmu_update`, `mmuext_op`, `update_va_mapping*`) then return -ENOSYS.
    fn mm(&mut self) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut)> {
        None
    }

    /// Loads CR3 with top-level table `l4` now, flushing the whole TLB, global entries included
    /// (Xen's `write_ptbase`, whose `switch_cr3_cr4` toggles CR4.PGE). `MMUEXT_NEW_BASEPTR`
    /// calls it between taking the new table and dropping the old one (`new_guest_cr3`), so the
    /// table the CPU runs on never loses its last L4 type reference while the CPU uses it: a
    /// table without one could be made writable and its hypervisor slots overwritten.
    /// `l4` is a validated L4 the caller holds a type reference on.
    fn write_ptbase(&mut self, l4: Mfn);

    /// Brings the interrupt controller in line with the control domain's PIRQs: each GSI's
    /// line unmasked exactly when `pirqs.line_enabled(gsi)` (after a bind, close or EOI). The
    /// default, for machines without routable interrupts, does nothing.
    fn sync_irq_lines(&mut self, _pirqs: &PirqTable) {}

    /// Whether the CPU is wanted elsewhere: the machine's half of Xen's
    /// `hypercall_preempt_check()` (`softirq_pending`: a timer is due, the running vCPU's slice
    /// is over, an interrupt waits). The default, for machines without time, never preempts.
    fn preemption(&self) -> &dyn Preempt {
        &NoPreemption
    }

    /// A frame from `pool` for the hypervisor's own per-domain data (event-channel pages,
    /// Xen's `alloc_xenheap_page`): marked the hypervisor's in the frame table, so no domain can
    /// be given or map it, and reached through [`MachineMemoryMut::xen_frame`]. `None` when the
    /// pool is dry (or the machine has no frame table), nothing taken. Give it back with
    /// [`give_back_xen_frame`] once the structure holding it is gone.
    fn take_xen_page(&mut self, pool: &mut dyn FramePool) -> Option<XenPage> {
        let (mm, mem) = self.mm()?;
        take_xen_page(mm, mem, pool)
    }

    /// [`Machine::mm`] together with [`Machine::preemption`], the memory as its own type: a
    /// batch loop holds the frame table while it asks, between elements, whether to stop. The
    /// same memory as `mm` gives and the same answer as `preemption`.
    #[allow(clippy::type_complexity)] // the three borrows one split of the machine gives
    fn mm_preemptible(&mut self) -> Option<(&mut Mm<'static>, &mut Self::Mem, &dyn Preempt)>;
}

/// Asked between the elements of a long hypercall: must it stop and continue later?
pub trait Preempt {
    /// Whether something else is due on this CPU now (Xen's `softirq_pending(cpu)`).
    fn pending(&self) -> bool;
}

/// A machine without time: nothing ever preempts a hypercall.
pub struct NoPreemption;

impl Preempt for NoPreemption {
    fn pending(&self) -> bool {
        false
    }
}

/// Xen's `hypercall_preempt_check()`: `softirq_pending(cpu) || local_events_need_delivery()`,
/// the second being "the caller has an event upcall pending and not masked" (its
/// `vcpu_info.evtchn_upcall_pending` and `evtchn_upcall_mask`), which it gets on the way out.
pub(crate) fn preempt_check<R: MachineMemory + ?Sized>(
    p: &dyn Preempt,
    mem: &R,
    shared_info: Mfn,
    vcpu_info: crate::shared_info::VcpuInfoMap,
    vcpu: u32,
) -> bool {
    if p.pending() {
        return true;
    }
    let page = SharedInfoPage(crate::shared_info::MachineFrame::with_vcpu_info(
        mem,
        shared_info,
        vcpu_info,
    ));
    page.upcall_deliverable(vcpu)
}

/// Gives frame `mfn`, which held hypervisor data ([`Machine::take_xen_page`]) and which nothing
/// reaches any more, back to `pool`: its M2P entry invalidated, free again in the frame table.
/// A frame the frame table no longer shows as the hypervisor's alone (something still
/// references it) is not given back: `false`.
pub fn give_back_xen_frame(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    pool: &mut dyn FramePool,
    mfn: Mfn,
) -> bool {
    if mm
        .frames
        .get(mfn)
        .is_none_or(|i| i.owner() != Owner::Xen || i.count() != 0)
    {
        return false;
    }
    let _ = mem.write_u64(
        Maddr(mm.cfg.m2p.0 + mfn.0 * 8),
        crate::mm::frame_table::INVALID_M2P_ENTRY,
    );
    mm.release_xen(FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    });
    pool.give_back(mem, mfn);
    true
}

/// The body of [`Machine::take_xen_page`]: a frame from `pool`, the hypervisor's in `mm`,
/// reached through `mem`.
pub fn take_xen_page(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    pool: &mut dyn FramePool,
) -> Option<XenPage> {
    let mfn = pool.take(mem, 0, None)?;
    let one = FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    };
    if mm.assign(one, Owner::Xen).is_err() {
        // The frame table disagrees with the pool (it says the frame is in use): keep the
        // frame out of both rather than let the pool write its link into a page something
        // else holds and hand it out again (as `alloc_extent` does).
        return None;
    }
    match mem.xen_frame(mfn) {
        // SAFETY: the frame came out of the free pool, so nothing else holds it, and is now
        // the hypervisor's in the frame table (no domain can be given, map or be granted
        // it); `xen_frame` gives its 4096 bytes, aligned, for the machine's lifetime.
        Some(ptr) => Some(unsafe { XenPage::new(mfn, ptr) }),
        None => {
            mm.release_xen(one);
            pool.give_back(mem, mfn);
            None
        }
    }
}
