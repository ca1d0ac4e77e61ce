//! Hypercall dispatch through the one table of what we implement (`table`), and the small
//! hypercalls that belong to no subsystem (console, version, vcpu, callbacks, domctl/sysctl, ...).
//!
//! The arch layer's `syscall` entry saves a `Regs` frame and calls [`dispatch`] with the number
//! (RAX) and the five arguments (RDI, RSI, RDX, R10, R8). Each handler takes a [`Ctx`] and
//! returns an `HcResult`, recording what else it did in the call's [`Effects`] (all of that is
//! `crate::ctx`, the layer below the handlers). [`dispatch`] finds the handler in
//! [`table::TABLE`] and returns both as the call's [`Outcome`], which the arch layer applies to
//! the guest and hands to the scheduler; a hypercall without a row returns -ENOSYS, as Xen does
//! for one it does not know. This module sits above `mm/`, `evtchn/`, `gnttab/` and `sched/`,
//! whose handlers the table names; none of them imports it.

// Handlers match on Xen's own constant spellings (`__HYPERVISOR_iret`, `XENVER_version`).
#![allow(non_upper_case_globals)]

mod callback;
mod console;
mod debugreg;
mod domctl;
mod gdt;
mod hvm;
mod sysctl;
pub use crate::mm::mmu::{ptwr_emulate, ptwr_read};
mod multicall;
pub mod table;
pub use table::{Hypercall, TABLE};
pub use vcpu::update_runstate_area;
mod physdev;
mod traps;
mod vcpu;
mod version;

use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, Effects, Machine, Outcome};

/// Runs hypercall `nr` with arguments `a` for the domain in `ctx`; returns what it did (the value
/// for RAX or a continuation, and its effects: [`Outcome`]), for the caller to apply
/// ([`Outcome::apply`]). The number is looked up in [`table::TABLE`]: a number without a row is
/// -ENOSYS, a row a multicall may not contain is -EINVAL inside one (see
/// [`Hypercall::in_multicall`]). Inside a multicall the outcome carries only the entry's result
/// or continuation: its other effects stay in `ctx.fx`, the multicall's.
pub fn dispatch<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, nr: u64, a: [u64; 5]) -> Outcome {
    let rc = execute(ctx, nr, a);
    if ctx.in_multicall {
        let fx = Effects {
            continuation: ctx.fx.continuation.take(),
            ..Effects::default()
        };
        Outcome::from_effects(rc, fx)
    } else {
        Outcome::from_effects(rc, core::mem::take(ctx.fx))
    }
}

/// Runs hypercall `nr` as [`dispatch`] does, but returns only the value for RAX (meaningless if
/// it continues) and leaves every effect in `ctx.fx`: the hypercall fast path looks there
/// ([`Effects::nothing_to_do`]) and builds the [`Outcome`] only when there is something to do.
#[inline(always)]
pub fn execute<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, nr: u64, a: [u64; 5]) -> i64 {
    ctx.dom.vcpu_mut().perf.hypercalls += 1;
    match table::lookup(nr) {
        None => Errno::ENOSYS.neg(),
        Some(h) if ctx.in_multicall && !h.in_multicall => Errno::EINVAL.neg(),
        Some(h) => {
            ctx.fx.full_exit |= h.exit == table::Exit::Full;
            match h.handler.run(ctx, a) {
                Ok(v) => v,
                Err(e) => e.neg(),
            }
        }
    }
}

/// The value for RAX of hypercall `nr` when its answer needs nothing but its arguments (Linux's
/// `xen_force_evtchn_callback`, `xen_version(XENVER_version)`, is one; see `Handler::answer`),
/// else `None`: the caller then builds a [`Ctx`] and runs it with [`execute`]. It records
/// nothing (the call's effects stay empty) and counts the call in `perf` as `execute` would.
/// The arch layer's hypercall fast path asks this first, before it builds the `Ctx`.
#[inline(always)]
pub fn answer(nr: u64, a: [u64; 5], perf: &mut crate::domain::PerfCounters) -> Option<i64> {
    let rc = table::lookup(nr)?.handler.answer(a)?;
    perf.hypercalls += 1;
    Some(match rc {
        Ok(v) => v,
        Err(e) => e.neg(),
    })
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
#[cfg(test)]
mod vcpu_tests;
