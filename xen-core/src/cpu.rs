//! What the portable hypervisor needs from the machine ([`Arch`]), and the state one CPU runs on
//! ([`Hv`]).
//!
//! In the spirit of Hubris's `sys/kern/src/arch.rs`: the portable scheduler
//! (`crate::sched::core`), domain lifecycle (`crate::domain::lifecycle`) and debug keys
//! (`crate::keyhandler`) decide; an implementation of [`Arch`] (the `xen` binary's
//! `arch/x86_64/cpu.rs`, or `cpu_fake.rs` in host tests) carries out what they decide on a real
//! or fake CPU. The trait names exactly the mechanism they use, nothing more: the clock and the
//! one-shot timer, halting until an interrupt, the interrupts that arrived, a context switch,
//! TLB work, the console, and stopping the machine.

use core::fmt;

use crate::ctx::{Effects, Machine};
use crate::domain::pool::Pool;
use crate::domain::set::DomainSet;
use crate::domain::{Domain, FlushRequest, MachineInfo};
use crate::mm::Mfn;
use crate::sched::Sched;

/// How the machine stops (dom0 took it with it, or a fatal error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Power off (dom0 shut down with `SHUTDOWN_poweroff`).
    Poweroff,
    /// Reset the machine (dom0 shut down with `SHUTDOWN_reboot`).
    Reboot,
    /// Stop with a failure code for the test harness.
    Fail(crate::power::FailCode),
}

/// Counters the machine keeps, for the debug keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Timer interrupts taken.
    pub timer_interrupts: u64,
    /// Device interrupts taken.
    pub device_interrupts: u64,
}

/// The mechanism the portable code asks of a CPU, besides the hypercall [`Machine`] (memory,
/// console output, time, frame table) that it extends.
pub trait Arch: Machine {
    /// Arms the one-shot timer to interrupt at system time `deadline` (ns).
    fn arm_timer(&mut self, deadline: u64);
    /// Cancels the one-shot timer.
    fn cancel_timer(&mut self);
    /// Whether the one-shot timer is still counting towards the deadline it was armed for.
    fn timer_counting(&self) -> bool;
    /// Halts until an interrupt arrives (whose handler only accounts for it).
    fn halt_until_interrupt(&mut self);
    /// The device interrupts (GSIs, one bit each) that arrived since the last call, their lines
    /// masked until the control domain acknowledges them.
    fn take_pending_irqs(&mut self) -> u32;
    /// Whether any device interrupt line is unmasked (an interrupt could still wake the CPU).
    fn irq_lines_enabled(&self) -> bool;
    /// Hands the CPU's per-vCPU register state (FPU, data segments) from the vCPU of scheduling
    /// unit `prev` (saved; `None` if its domain is gone) to the vCPU of unit `next` (loaded), the
    /// current vCPU of `dom`, drops every TLB entry (a new address space) and runs on that
    /// vCPU's page tables (`Domain::current_l4`), so that the way out can reach its memory
    /// through the MMU (its bounce frame). Units are `sched::core::unit(slot, vcpu)`. General
    /// registers are the caller's business; the rest of its state is `load_vcpu`'s.
    fn context_switch(&mut self, prev: Option<usize>, next: usize, dom: &Domain);
    /// Drops every TLB entry, global ones included.
    fn flush_tlb_all(&mut self);
    /// Carries out the TLB, cache and CR3 work `req` records for the vCPU of `dom`, which is
    /// about to run.
    fn perform_flushes(&mut self, dom: &Domain, req: FlushRequest);
    /// Loads the state of `dom`'s vCPU the CPU must see while it runs (segment bases, virtual
    /// CR0.TS, debug registers, page tables), where it changed.
    fn load_vcpu(&mut self, dom: &Domain);
    /// The top-level page table the CPU runs on.
    fn running_l4(&self) -> Mfn;
    /// Reads what was typed on the serial console: debug keys are handed to `key`; returns
    /// whether the control domain got new input.
    fn poll_console(&mut self, key: &mut dyn FnMut(u8)) -> bool;
    /// Prints to the hypervisor console (each line prefixed `(XEN) `).
    fn print(&mut self, args: fmt::Arguments<'_>);
    /// Publishes the time (`vcpu_time_info`, wall clock) in `dom`'s shared_info.
    fn publish_time(&mut self, dom: &Domain);
    /// The machine's counters.
    fn counters(&self) -> Counters;
    /// Builds a domain again from boot module `module`, as copy `copy` of its `copies=` (`None`:
    /// a module built once), into a free slot (a domU that rebooted; the same module and copy
    /// give it the same place among the boot-time domUs, its handle): the slot, or `None` if it
    /// could not be built (the reason printed).
    fn build_domain(
        &mut self,
        pool: &mut Pool,
        doms: &mut DomainSet,
        module: usize,
        copy: Option<u32>,
    ) -> Option<usize>;
    /// Stops the machine.
    fn stop(&mut self, how: Stop) -> !;
}

/// Prints through an [`Arch`], like `print!`.
macro_rules! printk {
    ($arch:expr, $($arg:tt)*) => {
        $crate::cpu::Arch::print($arch, format_args!($($arg)*))
    };
}
pub(crate) use printk;

/// Everything one CPU keeps besides the domains themselves.
pub struct Hv<A> {
    /// The machine.
    pub arch: A,
    /// Machine-wide facts.
    pub info: MachineInfo,
    /// Free memory and what each domain took from it.
    pub pool: Pool,
    /// The scheduler's state.
    pub sched: Sched,
    /// The effects of the hypercall being run (`Ctx::fx`), kept here rather than built for
    /// each call: empty between calls (the way out takes or leaves nothing in it).
    pub fx: Effects,
}

impl<A: Arch> Hv<A> {
    /// The state to run the domain in slot `cur` first.
    pub fn new(arch: A, info: MachineInfo, pool: Pool, cur: usize) -> Hv<A> {
        let now = arch.now_ns();
        Hv {
            arch,
            info,
            pool,
            sched: Sched::new(cur, now),
            fx: Effects::default(),
        }
    }
}
