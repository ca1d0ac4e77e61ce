//! What the hypervisor provides to hypercall handlers besides the domains' own state: the
//! [`Machine`] (memory, console, time, frame table, interrupt lines), and the question a long
//! hypercall asks between its elements ([`Preempt`], [`preempt_check`]).

use crate::mm::frame_table::Mm;
use crate::mm::{MachineMemory, MachineMemoryMut, Mfn};
use crate::pirq::PirqTable;
use crate::shared_info::SharedInfoPage;

/// What the hypervisor provides to hypercall handlers besides the domain's own state. The arch
/// layer implements it over the real machine; tests implement it over a byte vector.
pub trait Machine: MachineMemoryMut {
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

    /// [`Machine::mm`] together with [`Machine::preemption`]: a batch loop holds the frame table
    /// while it asks, between elements, whether to stop. A machine that overrides `preemption`
    /// overrides this too, with the same answer.
    #[allow(clippy::type_complexity)] // the three borrows one split of the machine gives
    fn mm_preemptible(
        &mut self,
    ) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut, &dyn Preempt)> {
        self.mm()
            .map(|(mm, mem)| (mm, mem, &NoPreemption as &dyn Preempt))
    }
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
