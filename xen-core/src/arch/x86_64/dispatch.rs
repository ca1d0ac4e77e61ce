//! What happens on each entry into the hypervisor: the mechanism of one entry, then the portable
//! way out.
//!
//! [`handle_entry`] is called by the entry assembly with the saved [`Regs`] of the running vCPU.
//! From a guest it runs the hypercall or handles the exception (emulate, or bounce to the guest's
//! trap table, `traps.rs`), then hands over to `xen_core::sched::core::after_entry`, which
//! settles what must happen before a guest runs again (timers, wake-ups, shut-down domains, the
//! scheduler's choice, a pending event upcall) through `xen_core::cpu::Arch` (`cpu.rs`).

use core::arch::asm;

use spin::Mutex;
use xen_core::bounce;
use xen_core::cpu::Hv;
use xen_core::ctx::{Ctx, Kicks};
use xen_core::domain::pool::Pool;
use xen_core::domain::set::DomainSet;
use xen_core::domain::{MachineInfo, Shutdown};
use xen_core::hypercall::{answer, execute};
use xen_core::regs::{Regs, ENTRY_SYSCALL};
use xen_core::sched::core::Entry;

use super::gdt::GUEST_CS32;
use super::machine::HvMachine;
use super::traps::{
    guest_exception, hypervisor_debug_trap, hypervisor_fault, hypervisor_nmi, iret_fault_to_guest,
};
use super::{apic, ioapic};

/// The kicks of a hypercall that took the fast way out (none), for `after_entry`.
static NO_KICKS: Kicks = Kicks::NONE;

static HV: Mutex<Option<Hv<HvMachine>>> = Mutex::new(None);

/// Every domain (kept apart from `Hv`: port tables are tens of KiB each, too big to build on the
/// boot stack and move).
pub static DOMS: Mutex<DomainSet> = Mutex::new(DomainSet::new());

/// Installs the state and enters the domain in slot `cur`; never returns.
pub fn run(m: HvMachine, info: MachineInfo, pool: Pool, cur: usize) -> ! {
    let mut hv = Hv::new(m, info, pool, cur);
    let regs = xen_core::sched::core::start(&mut hv, &mut DOMS.lock());
    *HV.lock() = Some(hv);
    super::entry::enter(&regs)
}

/// Stack the hypervisor must have left: below this margin a deep path could run off the bottom
/// of its stack into the data below it.
const STACK_MARGIN: u64 = 32 * 1024;

extern "C" {
    /// The lowest byte of the boot stack (`boot.rs`).
    static boot_stack: u8;
}

/// Stops the machine, with a clear message, if the stack in use (the entry stack, or the boot
/// stack before the first guest runs) is nearly exhausted. On every entry from a guest: one
/// comparison per stack.
#[inline]
fn check_stack() {
    let sp: u64;
    // SAFETY: reading RSP has no side effects.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    let entry = super::gdt::entry_stack_bottom();
    let boot = (&raw const boot_stack) as u64;
    if sp.wrapping_sub(entry) < STACK_MARGIN || sp.wrapping_sub(boot) < STACK_MARGIN {
        stack_exhausted(sp);
    }
}

#[cold]
#[inline(never)]
fn stack_exhausted(sp: u64) -> ! {
    panic!(
        "hypervisor stack nearly exhausted: rsp {sp:#x}, entry stack bottom {:#x}, boot stack \
         bottom {:#x}",
        super::gdt::entry_stack_bottom(),
        (&raw const boot_stack) as u64
    );
}

/// Called by the entry assembly for every exception, interrupt and hypercall.
pub extern "C" fn handle_entry(regs: &mut Regs) {
    // The boot-time ring-3 probe expects no entry here; one means it failed (`ring3.rs`).
    super::ring3::probe_entry(regs);
    // A hypercall (a `syscall` frame comes only from a guest) skips the interrupt and
    // hypervisor-fault cases.
    if regs.vector != ENTRY_SYSCALL && !interrupt_or_fault(regs) {
        return;
    }
    guest_entry(regs);
}

/// The first part of an entry that is not a `syscall`: acknowledges an interrupt, handles a
/// fault of the hypervisor's own. Returns whether the entry came from a guest (and goes on).
#[inline(never)]
fn interrupt_or_fault(regs: &mut Regs) -> bool {
    if !regs.from_guest() {
        // A listed instruction that loads guest-chosen state or touches guest memory faulted:
        // resume at its fixup. Only for the faults such an instruction's operands can raise
        // (#NP, #SS, #GP, #PF, #AC): not for a #DB or an NMI (a guest's data breakpoint on its
        // buffer fires during a copy through the MMU, `uaccess.rs`, and is no fault of the
        // copy), nor an interrupt, nor a machine check or any other exception, which are
        // handled below as anywhere else.
        if matches!(regs.vector, 11..=14 | 17) {
            if let Some(fixup) = super::extable::fixup(regs.rip) {
                regs.rip = fixup;
                regs.r11 = regs.vector + 1;
                return false;
            }
        }
        // The `iretq` back to a guest refused the guest's selectors: the fault is the guest's.
        if regs.rip == super::entry::iret_to_guest_address() && matches!(regs.vector, 10..=13) {
            iret_fault_to_guest(regs);
        }
    }
    match regs.vector {
        // The APIC timer: account for it (the handler sends the EOI); guests see its effect when
        // the way out checks their timers.
        v if v == u64::from(apic::TIMER_VECTOR) => apic::timer_interrupt(),
        // A spurious APIC interrupt needs no EOI and has no effect.
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {}
        // A device interrupt (a GSI dom0 bound as a PIRQ): masked and acknowledged now, raised
        // in dom0 on the way out or, when the CPU was idle, by the scheduler's loop.
        v if ioapic::gsi_of_vector(v).is_some() => {
            ioapic::interrupt(ioapic::gsi_of_vector(v).unwrap_or(0));
        }
        1 if !regs.from_guest() => {
            hypervisor_debug_trap(regs);
            return false;
        }
        2 if !regs.from_guest() => {
            hypervisor_nmi(regs);
            return false;
        }
        _ if !regs.from_guest() => hypervisor_fault(regs),
        _ => {}
    }
    // An interrupt taken while the hypervisor waited (idle) resumes the wait.
    regs.from_guest()
}

/// An entry from a guest: its hypercall, exception or interrupt, then the way out.
#[inline]
fn guest_entry(regs: &mut Regs) {
    let mut guard = HV.lock();
    let hv = guard
        .as_mut()
        .expect("a guest runs only after `run` installed the state");
    check_stack();
    let mut doms = DOMS.lock();
    // How long the guest's request keeps the CPU (see `SchedInfo::longest_entry_ns`): the raw
    // TSC, converted to system time only when needed (a new longest entry, a preemption check).
    let entered = super::time::tsc_now();
    // The domains a hypercall kicked (woke, shut down, ...): with none, the way out may skip
    // the full scheduling pass.
    let mut kicks = None;
    let mut hypercall = false;
    let mut fast = false;
    {
        let (g, ports, grants, others) = doms
            .split(hv.sched.cur)
            .expect("the running vCPU's domain exists");
        let dom = &mut g.dom;
        super::context::sync_guest_bases(&mut hv.arch, dom);
        match regs.vector {
            // `syscall` from guest user mode, or from 32-bit code (Xen's `cstar_enter` bounces
            // that whatever the mode): not a hypercall, the guest kernel's syscall callback takes
            // it.
            ENTRY_SYSCALL if !dom.vcpu().kernel_mode || regs.cs == u64::from(GUEST_CS32) => {
                if let Err(why) = bounce::switch_to_kernel(&mut hv.arch, dom, regs) {
                    dom.shutdown = Some(Shutdown::Crashed(why));
                }
            }
            ENTRY_SYSCALL => 'call: {
                let (nr, args) = regs.hypercall_args();
                hypercall = true;
                // A call whose answer needs nothing but its arguments needs no `Ctx` either
                // (`hypercall::answer`): it records nothing, so it goes the fast way out.
                if let Some(rc) = answer(nr, args, &mut dom.vcpu_mut().perf) {
                    regs.rax = rc as u64;
                    fast = dom.shutdown.is_none();
                    break 'call;
                }
                // A long hypercall stops when the APIC timer is due (or soon after it began).
                hv.arch.preempt.arm(entered, hv.sched.armed);
                let mut ctx = Ctx {
                    m: &mut hv.arch,
                    info: &hv.info,
                    pool: &mut hv.pool,
                    dom: &mut *dom,
                    events: ports,
                    grants,
                    others,
                    regs: &mut *regs,
                    in_multicall: false,
                    fx: &mut hv.fx,
                };
                let rc = execute(&mut ctx, nr, args);
                // (`ctx` is not used again: its borrows end here.)
                if hv.fx.nothing_to_do() {
                    regs.rax = rc as u64;
                    fast = dom.shutdown.is_none();
                } else {
                    // The result into RAX, or the continuation into the registers; a crash; the
                    // TLB work the vCPU owes before it runs again (applied from the call's
                    // record, which is left empty for the next call).
                    kicks = Some(hv.fx.apply_and_clear(rc, nr, dom, regs));
                }
            }
            v @ 0..=31 => {
                dom.vcpu_mut().perf.traps += 1;
                if let Err(why) = guest_exception(&mut hv.arch, dom, regs, v as u8) {
                    dom.shutdown = Some(Shutdown::Crashed(why));
                }
            }
            v if v == u64::from(apic::TIMER_VECTOR) => dom.vcpu_mut().perf.traps += 1,
            // Other external interrupts taken while the guest ran: nothing is routed to guests.
            _ => {}
        }
        // From entry to the end of the handler: what the guest's request cost (the way out,
        // timers and scheduling for everyone, is not the guest's doing).
        let spent = super::time::tsc_now().saturating_sub(entered);
        if spent > g.sched.longest_entry_ticks {
            g.sched.longest_entry_ticks = spent;
            g.sched.longest_entry_ns = super::time::system_time_at(entered + spent)
                .saturating_sub(super::time::system_time_at(entered));
        }
        // The hypercall fast path (Xen's plain `test_all_events` return): a fast hypercall that
        // left nothing to do goes straight back to its guest, with only a pending event upcall
        // delivered (Linux's `xen_force_evtchn_callback` is a `xen_version` call made for that).
        // Nothing else can be due: interrupts stay masked in here, so a timer that came due
        // meanwhile is still pending at the APIC and is taken the moment the guest runs, through
        // the full way out; the vCPU's loaded state is unchanged.
        if fast && xen_core::guest_access::is_canonical(regs.rip) {
            // One look-up of the vCPU for all the fast way out asks of it.
            let (shared_info, vcpu_id) = (dom.shared_info, dom.vcpu_id());
            let v = dom.vcpu_mut();
            // A flush some call left on the vCPU itself (not as an effect) still has to happen
            // before the guest runs, and a deliverable NMI (pending, not masked) delivered: only
            // the full way out does them.
            if v.flush.is_empty() && (!v.nmi_pending || v.nmi_masked) {
                v.perf.fast_exits += 1;
                let word = xen_core::shared_info::upcall_word(v, shared_info, vcpu_id);
                // The usual answer, nothing to deliver, in line (one read through the memo).
                if !xen_core::shared_info::upcall_deliverable_at(&hv.arch, word) {
                    return;
                }
                match bounce::deliver_upcall_at(&mut hv.arch, dom, regs, word) {
                    Ok(_) => return,
                    Err(why) => dom.shutdown = Some(Shutdown::Crashed(why)),
                }
            }
        }
    }
    let entry = match regs.vector {
        _ if hypercall => Entry::Hypercall(kicks.as_ref().unwrap_or(&NO_KICKS)),
        ENTRY_SYSCALL | 0..=31 => Entry::Exception,
        v => Entry::Interrupt {
            tick: v == u64::from(apic::TIMER_VECTOR),
        },
    };
    xen_core::sched::core::after_entry(hv, &mut doms, regs, entry);
}
