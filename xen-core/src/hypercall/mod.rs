//! Hypercall dispatch through the one table of what we implement (`table`), and the context
//! handlers run in.
//!
//! The arch layer's `syscall` entry saves a [`Regs`] frame and calls [`dispatch`] with the number
//! (RAX) and the five arguments (RDI, RSI, RDX, R10, R8). Each handler is ordinary Rust that takes
//! a [`Ctx`]: the calling domain, the machine (through the [`Machine`] trait, so tests can fake it)
//! and the guest's memory, reached only through checked copies (`crate::guest_access`). A handler returns
//! the value for RAX: non-negative on success, `-errno` on failure, and records what else it did
//! in the call's [`Effects`] (a continuation, domains it kicked, TLB work, a crash). [`dispatch`]
//! finds the handler in [`table::TABLE`] and returns both as the call's [`Outcome`], which the
//! arch layer applies to the guest and hands to the scheduler; a hypercall without a row returns
//! -ENOSYS, as Xen does for one it does not know.

// Handlers match on Xen's own constant spellings (`__HYPERVISOR_iret`, `XENVER_version`).
#![allow(non_upper_case_globals)]

mod callback;
mod console;
mod debugreg;
mod domctl;
mod gdt;
mod hvm;
mod sysctl;
pub use crate::mm::mmu::ptwr_emulate;
mod multicall;
mod outcome;
pub use outcome::{Effects, Kicks, Outcome, Ret};
pub mod table;
pub use table::{Hypercall, TABLE};
mod physdev;
mod traps;
mod vcpu;
mod version;

use hypercall_abi::errno::Errno;

use crate::domain::Domain;
pub(crate) use crate::domain::MachineInfo;
use crate::guest_access::{GuestFault, PageTableGuest};
use crate::mm::frame_table::Mm;
use crate::mm::MachineMemoryMut;
use crate::regs::Regs;

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
    fn write_ptbase(&mut self, l4: crate::mm::Mfn);

    /// Brings the interrupt controller in line with the control domain's PIRQs: each GSI's
    /// line unmasked exactly when `pirqs.line_enabled(gsi)` (after a bind, close or EOI). The
    /// default, for machines without routable interrupts, does nothing.
    fn sync_irq_lines(&mut self, _pirqs: &crate::pirq::PirqTable) {}

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
pub(crate) fn preempt_check<R: crate::mm::MachineMemory + ?Sized>(
    p: &dyn Preempt,
    mem: &R,
    shared_info: crate::mm::Mfn,
) -> bool {
    if p.pending() {
        return true;
    }
    let page = crate::shared_info::SharedInfoPage::of(mem, shared_info);
    page.upcall_pending(0) && !page.upcall_mask(0)
}

/// What a preempted hypercall asks for instead of a result (Xen's
/// `hypercall_create_continuation`): to be issued again with these arguments, the first `nargs`
/// of them rewritten (Xen's format string has one letter per argument it sets; the others keep
/// what the guest passed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The new arguments.
    pub args: [u64; 5],
    /// How many of them the continuation sets.
    pub nargs: usize,
}

impl Continuation {
    /// A continuation that sets the first `args.len()` arguments.
    pub fn new(args: &[u64]) -> Continuation {
        let mut a = [0; 5];
        a[..args.len()].copy_from_slice(args);
        Continuation {
            args: a,
            nargs: args.len(),
        }
    }
}

/// Everything a handler may touch.
pub struct Ctx<'a, M: Machine + ?Sized> {
    /// The machine.
    pub m: &'a mut M,
    /// Machine-wide facts.
    pub info: &'a MachineInfo,
    /// The calling domain (and its only vCPU).
    pub dom: &'a mut Domain,
    /// Its event channels.
    pub events: &'a mut crate::evtchn::PortTable,
    /// Its grant table.
    pub grants: &'a mut crate::gnttab::GrantTable,
    /// Every other domain (event channels and grants reach them; dom0 manages them).
    pub others: crate::domain::set::Others<'a>,
    /// The caller's saved registers (`iret` rewrites them).
    pub regs: &'a mut Regs,
    /// Set while a multicall runs: a nested multicall is refused.
    pub in_multicall: bool,
    /// What the call recorded besides its result (see [`Effects`]): a continuation set by a
    /// handler that stopped part-way because [`Ctx::preempt_check`] said so (Xen's
    /// `hypercall_create_continuation`), the domains it kicked, the TLB work it asked for, a
    /// crash. [`dispatch`] returns them as the call's [`Outcome`]; inside a multicall, an entry's
    /// continuation is its own (the multicall rewrites the entry's arguments in guest memory and
    /// continues itself from that entry, `MCSF_call_preempted`) while the other effects add up
    /// to the multicall's.
    pub fx: Effects,
}

impl<M: Machine + ?Sized> Ctx<'_, M> {
    /// The caller's virtual memory, as its current page tables map it.
    pub fn guest(&mut self) -> PageTableGuest<'_, M> {
        PageTableGuest {
            mem: &mut *self.m,
            l4: self.dom.l4,
        }
    }

    /// Xen's `hypercall_preempt_check()`: whether a long hypercall must stop here and continue
    /// (see [`preempt_check`]).
    pub fn preempt_check(&self) -> bool {
        preempt_check(self.m.preemption(), &*self.m, self.dom.shared_info)
    }

    /// Xen's `hypercall_create_continuation`: the hypercall is to be issued again with `args` as
    /// its first arguments (see [`Ctx::fx`]). Returns what the handler returns then, a value
    /// nobody sees.
    pub(crate) fn create_continuation(&mut self, args: &[u64]) -> HcResult {
        self.fx.continuation = Some(Continuation::new(args));
        Ok(0)
    }
}

/// A handler's result before it is written to RAX.
pub type HcResult = Result<i64, Errno>;

impl From<GuestFault> for Errno {
    fn from(_: GuestFault) -> Errno {
        Errno::EFAULT
    }
}

/// Runs hypercall `nr` with arguments `a` for the domain in `ctx`; returns what it did (the value
/// for RAX or a continuation, and its effects: [`Outcome`]), for the caller to apply
/// ([`Outcome::apply`]). The number is looked up in [`table::TABLE`]: a number without a row is
/// -ENOSYS, a row a multicall may not contain is -EINVAL inside one (see
/// [`Hypercall::in_multicall`]). Inside a multicall the outcome carries only the entry's result
/// or continuation: its other effects stay in `ctx.fx`, the multicall's.
pub fn dispatch<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, nr: u64, a: [u64; 5]) -> Outcome {
    ctx.dom.vcpu.perf.hypercalls += 1;
    let rc = match table::lookup(nr) {
        None => Errno::ENOSYS.neg(),
        Some(h) if ctx.in_multicall && !h.in_multicall => Errno::EINVAL.neg(),
        Some(h) => match h.handler.run(ctx, a) {
            Ok(v) => v,
            Err(e) => e.neg(),
        },
    };
    if ctx.in_multicall {
        let fx = Effects {
            continuation: ctx.fx.continuation.take(),
            ..Effects::default()
        };
        Outcome::from_effects(rc, fx)
    } else {
        Outcome::from_effects(rc, core::mem::take(&mut ctx.fx))
    }
}

/// The command argument of a `*_op` hypercall: Xen takes it as `unsigned int`, so the upper half of
/// the register is ignored.
pub(crate) fn cmd32(arg: u64) -> u32 {
    arg as u32
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod domctl_tests;
#[cfg(test)]
mod gdt_ptwr_tests;
#[cfg(test)]
mod preempt_tests;
#[cfg(test)]
mod sequence_fuzz;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod user_mode_tests;
