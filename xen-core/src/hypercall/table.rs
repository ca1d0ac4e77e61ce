//! The hypercall table: every hypercall we implement, one row each, as data.
//!
//! This is the one answer to "which hypercalls does this hypervisor serve, for whom, and which
//! may a multicall hold?", in the spirit of Xen's `xen/include/hypercall-defs.c` (whose final `table:`
//! lists, per hypercall, the handler each kind of guest gets). A row gives Xen's number and name,
//! the handler, who may call it and whether a multicall may contain it. [`super::dispatch`] looks
//! the number up here; a number without a row is -ENOSYS, as Xen answers for one its table leaves
//! empty (`pv_hypercall` / `call_handlers_pv64`). Nothing else lists hypercalls. What a call
//! changed besides its caller is not a property of its row but of the call: its
//! [`crate::ctx::Outcome`] says (the domains it kicked).
//!
//! Compared with Xen 4.17's PV64 column we serve a subset: no `platform_op`,
//! `xsm_op`, `nmi_op`, `kexec_op`, `dm_op`, `hypfs_op`, `mca`, nor the `*_compat` entries.

// Rows name Xen's constants (`__HYPERVISOR_iret`).
#![allow(non_upper_case_globals)]

use hypercall_abi::xen::*;

use super::{
    callback, console, debugreg, domctl, gdt, hvm, multicall, physdev, sysctl, traps, vcpu, version,
};
use crate::ctx::{Ctx, HcResult, Machine};
use crate::evtchn::hypercall as event_channel;
use crate::gnttab::hypercall as grant_table;
use crate::mm::{memory, mmu};
use crate::sched::hypercall as sched;

/// Who may make a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Any domain. Sub-operations that act on another domain check the caller's rights
    /// themselves, where Xen's per-operation XSM hook sits (`mmu_update` with a foreign domain,
    /// `SCHEDOP_remote_shutdown`, the PIRQ operations of `physdev_op`, ...).
    Any,
    /// The control domain (dom0) only: Xen's default XSM policy (`XSM_PRIV`, or `xsm_console_io`
    /// in a release build). The handler refuses any other caller with -EPERM at the point where
    /// Xen's check sits (after the argument copy and the interface version, say), so the errno a
    /// bad request gets stays Xen's; the table records the rule, a host test checks it.
    Privileged,
}

/// The handler of a row. [`Handler::run`] is the only `match` over hypercalls: it unpacks the
/// five argument registers for each handler, with the arguments Xen's prototype gives it in
/// `hypercall-defs.c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the handler of the row with the same name
pub enum Handler {
    SetTrapTable,
    MmuUpdate,
    SetGdt,
    UpdateDescriptor,
    StackSwitch,
    SetCallbacks,
    FpuTaskswitch,
    SetDebugreg,
    GetDebugreg,
    MemoryOp,
    Multicall,
    UpdateVaMapping,
    SetTimerOp,
    XenVersion,
    ConsoleIo,
    GrantTableOp,
    VmAssist,
    UpdateVaMappingOtherdomain,
    Iret,
    VcpuOp,
    SetSegmentBase,
    MmuextOp,
    SchedOp,
    CallbackOp,
    EventChannelOp,
    PhysdevOp,
    HvmOp,
    Sysctl,
    Domctl,
}

impl Handler {
    /// Runs the handler for the caller in `ctx` with the guest's argument registers `a`.
    #[inline(always)]
    pub(super) fn run<M: Machine + ?Sized>(self, ctx: &mut Ctx<'_, M>, a: [u64; 5]) -> HcResult {
        match self {
            Handler::SetTrapTable => traps::set_trap_table(ctx, a[0]),
            Handler::MmuUpdate => mmu::mmu_update(ctx, a[0], a[1], a[2], a[3]),
            Handler::SetGdt => gdt::set_gdt(ctx, a[0], a[1]),
            Handler::UpdateDescriptor => gdt::update_descriptor(ctx, a[0], a[1]),
            Handler::StackSwitch => traps::stack_switch(ctx, a[0], a[1]),
            Handler::SetCallbacks => callback::set_callbacks(ctx, a[0], a[1], a[2]),
            Handler::FpuTaskswitch => traps::fpu_taskswitch(ctx, a[0]),
            Handler::SetDebugreg => debugreg::set_debugreg(ctx, a[0], a[1]),
            Handler::GetDebugreg => debugreg::get_debugreg(ctx, a[0]),
            Handler::MemoryOp => memory::memory_op(ctx, a[0], a[1]),
            Handler::Multicall => multicall::multicall(ctx, a[0], a[1]),
            Handler::UpdateVaMapping => mmu::update_va_mapping(ctx, a[0], a[1], a[2]),
            Handler::SetTimerOp => sched::set_timer_op(ctx, a[0]),
            Handler::XenVersion => version::xen_version(ctx, a[0], a[1]),
            Handler::ConsoleIo => console::console_io(ctx, a[0], a[1], a[2]),
            Handler::GrantTableOp => grant_table::grant_table_op(ctx, a[0], a[1], a[2]),
            Handler::VmAssist => traps::vm_assist(ctx, a[0], a[1]),
            Handler::UpdateVaMappingOtherdomain => {
                mmu::update_va_mapping_otherdomain(ctx, a[0], a[1], a[2], a[3])
            }
            Handler::Iret => traps::iret(ctx),
            Handler::VcpuOp => vcpu::vcpu_op(ctx, a[0], a[1], a[2]),
            Handler::SetSegmentBase => traps::set_segment_base(ctx, a[0], a[1]),
            Handler::MmuextOp => mmu::mmuext_op(ctx, a[0], a[1], a[2], a[3]),
            Handler::SchedOp => sched::sched_op(ctx, a[0], a[1]),
            Handler::CallbackOp => callback::callback_op(ctx, a[0], a[1]),
            Handler::EventChannelOp => event_channel::event_channel_op(ctx, a[0], a[1]),
            Handler::PhysdevOp => physdev::physdev_op(ctx, a[0], a[1]),
            Handler::HvmOp => hvm::hvm_op(ctx, a[0], a[1]),
            Handler::Sysctl => sysctl::sysctl(ctx, a[0]),
            Handler::Domctl => domctl::domctl(ctx, a[0]),
        }
    }
}

impl Handler {
    /// The result of a call whose answer needs nothing but its arguments: no caller state, no
    /// guest memory, no effect (`None` for every other call). Listed by a test
    /// (`only_these_calls_are_answered_without_a_ctx`), each answer the one [`Handler::run`]
    /// gives, in a `Fast` row.
    #[inline(always)]
    pub(super) fn answer(self, a: [u64; 5]) -> Option<HcResult> {
        match self {
            Handler::XenVersion => version::answer(a[0]),
            _ => None,
        }
    }
}

/// One row of the hypercall table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hypercall {
    /// Xen's number (`__HYPERVISOR_*`).
    pub nr: u32,
    /// Xen's name (the number's constant without `__HYPERVISOR_`).
    pub name: &'static str,
    /// What runs it.
    pub handler: Handler,
    /// Who may call it.
    pub caller: Caller,
    /// Whether a multicall entry may be this hypercall; one that may not gets -EINVAL as its
    /// result. Xen's `do_multicall` refuses a nested multicall so (`_MCSF_in_multicall`); `iret`
    /// rewrites the caller's frame, which means nothing inside a batch, and is refused too (Xen
    /// 4.17's `pv_do_multicall_call` runs it and ends the batch instead: our answer differs).
    pub in_multicall: bool,
    /// The way out after it ([`Exit`]).
    pub exit: Exit,
}

/// What the way back to the guest must do after a hypercall, beyond what its [`Outcome`]
/// (`crate::ctx::Outcome`) records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The call changes nothing the way out acts on except through its outcome (kicks, TLB work,
    /// a crash, a continuation): no timer, scheduling or upcall-mask state, no register or
    /// segment state `load_vcpu` loads. After it the vCPU may go straight back (when the outcome
    /// is empty too), with only a pending event upcall delivered: the hypercall fast path.
    Fast,
    /// The full way out: timers, scheduling, the vCPU's state loaded again.
    Full,
}

use Caller::{Any, Privileged};
use Exit::{Fast, Full};

/// One row, in the column order of the table below.
const fn row(
    nr: u32,
    name: &'static str,
    handler: Handler,
    caller: Caller,
    in_multicall: bool,
    exit: Exit,
) -> Hypercall {
    Hypercall {
        nr,
        name,
        handler,
        caller,
        in_multicall,
        exit,
    }
}

/// Shorthands for the multicall column.
const MC: bool = true;
const NO_MC: bool = false;

/// The hypercalls we implement, in Xen's number order. Every other number is -ENOSYS.
#[rustfmt::skip] // a table: one row a line
pub const TABLE: &[Hypercall] = &[
    //  number                                       name                             handler                               caller      multicall exit
    row(__HYPERVISOR_set_trap_table,                "set_trap_table",                Handler::SetTrapTable,                Any,        MC,    Full),
    row(__HYPERVISOR_mmu_update,                    "mmu_update",                    Handler::MmuUpdate,                   Any,        MC,    Fast),
    row(__HYPERVISOR_set_gdt,                       "set_gdt",                       Handler::SetGdt,                      Any,        MC,    Full),
    row(__HYPERVISOR_stack_switch,                  "stack_switch",                  Handler::StackSwitch,                 Any,        MC,    Full),
    row(__HYPERVISOR_set_callbacks,                 "set_callbacks",                 Handler::SetCallbacks,                Any,        MC,    Full),
    row(__HYPERVISOR_fpu_taskswitch,                "fpu_taskswitch",                Handler::FpuTaskswitch,               Any,        MC,    Full),
    row(__HYPERVISOR_set_debugreg,                  "set_debugreg",                  Handler::SetDebugreg,                 Any,        MC,    Full),
    row(__HYPERVISOR_get_debugreg,                  "get_debugreg",                  Handler::GetDebugreg,                 Any,        MC,    Fast),
    row(__HYPERVISOR_update_descriptor,             "update_descriptor",             Handler::UpdateDescriptor,            Any,        MC,    Fast),
    row(__HYPERVISOR_memory_op,                     "memory_op",                     Handler::MemoryOp,                    Any,        MC,    Full),
    row(__HYPERVISOR_multicall,                     "multicall",                     Handler::Multicall,                   Any,        NO_MC, Fast),
    row(__HYPERVISOR_update_va_mapping,             "update_va_mapping",             Handler::UpdateVaMapping,             Any,        MC,    Fast),
    row(__HYPERVISOR_set_timer_op,                  "set_timer_op",                  Handler::SetTimerOp,                  Any,        MC,    Full),
    row(__HYPERVISOR_xen_version,                   "xen_version",                   Handler::XenVersion,                  Any,        MC,    Fast),
    row(__HYPERVISOR_console_io,                    "console_io",                    Handler::ConsoleIo,                   Privileged, MC,    Fast),
    row(__HYPERVISOR_grant_table_op,                "grant_table_op",                Handler::GrantTableOp,                Any,        MC,    Fast),
    row(__HYPERVISOR_vm_assist,                     "vm_assist",                     Handler::VmAssist,                    Any,        MC,    Full),
    row(__HYPERVISOR_update_va_mapping_otherdomain, "update_va_mapping_otherdomain", Handler::UpdateVaMappingOtherdomain,  Any,        MC,    Fast),
    row(__HYPERVISOR_iret,                          "iret",                          Handler::Iret,                        Any,        NO_MC, Fast),
    row(__HYPERVISOR_vcpu_op,                       "vcpu_op",                       Handler::VcpuOp,                      Any,        MC,    Full),
    row(__HYPERVISOR_set_segment_base,              "set_segment_base",              Handler::SetSegmentBase,              Any,        MC,    Full),
    row(__HYPERVISOR_mmuext_op,                     "mmuext_op",                     Handler::MmuextOp,                    Any,        MC,    Fast),
    row(__HYPERVISOR_sched_op,                      "sched_op",                      Handler::SchedOp,                     Any,        MC,    Full),
    row(__HYPERVISOR_callback_op,                   "callback_op",                   Handler::CallbackOp,                  Any,        MC,    Full),
    row(__HYPERVISOR_event_channel_op,              "event_channel_op",              Handler::EventChannelOp,              Any,        MC,    Full),
    row(__HYPERVISOR_physdev_op,                    "physdev_op",                    Handler::PhysdevOp,                   Any,        MC,    Full),
    row(__HYPERVISOR_hvm_op,                        "hvm_op",                        Handler::HvmOp,                       Privileged, MC,    Full),
    row(__HYPERVISOR_sysctl,                        "sysctl",                        Handler::Sysctl,                      Privileged, MC,    Full),
    row(__HYPERVISOR_domctl,                        "domctl",                        Handler::Domctl,                      Privileged, MC,    Full),
];

/// Numbers up to here can have a row (Xen's `NR_hypercalls` is 64).
const NR_HYPERCALLS: usize = 64;
/// No row for this number.
const NONE: u8 = u8::MAX;

/// Row index by number, built from [`TABLE`] at compile time (which also refuses a number out of
/// range or given two rows), so that a lookup is one load.
static INDEX: [u8; NR_HYPERCALLS] = {
    let mut index = [NONE; NR_HYPERCALLS];
    let mut i = 0;
    while i < TABLE.len() {
        let nr = TABLE[i].nr as usize;
        assert!(nr < NR_HYPERCALLS, "hypercall number out of range");
        assert!(index[nr] == NONE, "two rows for one hypercall number");
        index[nr] = i as u8;
        i += 1;
    }
    index
};

/// The row for hypercall number `nr` (the guest's whole RAX), if we implement it.
#[inline]
pub fn lookup(nr: u64) -> Option<&'static Hypercall> {
    let i = *INDEX.get(usize::try_from(nr).ok()?)?;
    TABLE.get(usize::from(i))
}
