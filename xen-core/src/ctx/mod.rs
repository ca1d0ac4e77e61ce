//! What every hypercall handler gets and gives back: the [`Ctx`] it runs in (the calling domain,
//! the other domains, the [`Machine`]), its [`HcResult`], and what the call did besides
//! ([`Effects`], returned as the call's [`Outcome`]).
//!
//! This is the layer under the subsystems' handlers (`mm/`, `evtchn/`, `gnttab/`, `sched/`) and
//! under `crate::hypercall` (the table and `dispatch`), which sits on top of them: a handler
//! imports this module, never `crate::hypercall`, so the table can name every handler without an
//! import cycle (Xen splits it the same way: `xen/include/xen/hypercall.h` declares what handlers
//! share, `hypercall-defs.c` lists them). Each handler takes a [`Ctx`]: the calling domain, the
//! machine (through the [`Machine`] trait, so tests can fake it) and the guest's memory, reached
//! only through checked copies (`crate::guest_access`). It returns the value for RAX
//! (non-negative on success, `-errno` on failure) and records what else it did in the call's
//! [`Effects`] (a continuation, domains it kicked, TLB work, a crash).

mod machine;
mod outcome;

pub(crate) use machine::preempt_check;
pub use machine::{give_back_xen_frame, take_xen_page, Machine, NoPreemption, Preempt};
pub use outcome::{Continuation, Effects, Kicks, Outcome, Ret};

use hypercall_abi::errno::Errno;

use crate::domain::set::Others;
use crate::domain::{Domain, MachineInfo};
use crate::evtchn::PortTable;
use crate::gnttab::GrantTable;
use crate::guest_access::{GuestFault, MmuGuest, PageTableGuest};
use crate::mm::frame_alloc::FramePool;
use crate::regs::Regs;

/// Everything a handler may touch.
pub struct Ctx<'a, M: Machine + ?Sized> {
    /// The machine.
    pub m: &'a mut M,
    /// Machine-wide facts.
    pub info: &'a MachineInfo,
    /// The free pool: frames `memory_op` hands to domains and takes back.
    pub pool: &'a mut dyn FramePool,
    /// The calling domain (and its only vCPU).
    pub dom: &'a mut Domain,
    /// Its event channels.
    pub events: &'a mut PortTable,
    /// Its grant table.
    pub grants: &'a mut GrantTable,
    /// Every other domain (event channels and grants reach them; dom0 manages them).
    pub others: Others<'a>,
    /// The caller's saved registers (`iret` rewrites them).
    pub regs: &'a mut Regs,
    /// Set while a multicall runs: a nested multicall is refused.
    pub in_multicall: bool,
    /// What the call recorded besides its result (see [`Effects`]): a continuation set by a
    /// handler that stopped part-way because [`Ctx::preempt_check`] said so (Xen's
    /// `hypercall_create_continuation`), the domains it kicked, the TLB work it asked for, a
    /// crash. `crate::hypercall::dispatch` returns them as the call's [`Outcome`]; inside a
    /// multicall, an entry's continuation is its own (the multicall rewrites the entry's
    /// arguments in guest memory and continues itself from that entry, `MCSF_call_preempted`)
    /// while the other effects add up to the multicall's.
    pub fx: &'a mut Effects,
}

impl<M: Machine + ?Sized> Ctx<'_, M> {
    /// The caller's virtual memory, as its current page tables map it: through the CPU's MMU
    /// while [`Ctx::mmu_usable`], else walked (see [`MmuGuest`]).
    pub fn guest(&mut self) -> MmuGuest<'_, M> {
        let mmu = self.mmu_usable();
        MmuGuest {
            walk: PageTableGuest {
                mem: &mut *self.m,
                l4: self.dom.vcpu().l4,
            },
            mmu,
        }
    }

    /// Whether the caller's memory may be reached through the CPU's MMU now: neither the call
    /// (its effects so far, a multicall's included) nor the vCPU owes TLB work (see
    /// [`MmuGuest`] for why that is the condition).
    #[inline]
    pub fn mmu_usable(&self) -> bool {
        !self.fx.flush.owes_tlb_work() && !self.dom.vcpu().flush.owes_tlb_work()
    }

    /// Xen's `hypercall_preempt_check()`: whether a long hypercall must stop here and continue
    /// (see [`preempt_check`]).
    pub fn preempt_check(&self) -> bool {
        preempt_check(
            self.m.preemption(),
            &*self.m,
            self.dom.shared_info,
            self.dom.vcpu_info_map(),
            self.dom.vcpu_id(),
        )
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

/// The command argument of a `*_op` hypercall: Xen takes it as `unsigned int`, so the upper half of
/// the register is ignored.
pub(crate) fn cmd32(arg: u64) -> u32 {
    arg as u32
}
