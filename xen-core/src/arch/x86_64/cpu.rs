//! The real CPU behind the portable scheduler, lifecycle and debug keys: `xen_core::cpu::Arch`
//! for [`HvMachine`], over the APIC timer, `hlt`, the I/O APIC, the context switch
//! (`context.rs`), the serial console and the power-off paths.

use core::arch::asm;
use core::fmt;

use xen_core::cpu::{Arch, Counters, Stop};
use xen_core::domain::pool::Pool;
use xen_core::domain::set::DomainSet;
use xen_core::domain::{Domain, FlushRequest};
use xen_core::mm::Mfn;

use super::machine::HvMachine;
use super::{apic, console, context, domu, ioapic, power};

impl Arch for HvMachine {
    fn arm_timer(&mut self, deadline: u64) {
        apic::arm_oneshot(deadline);
    }

    fn cancel_timer(&mut self) {
        apic::cancel();
    }

    fn timer_counting(&self) -> bool {
        apic::counting()
    }

    fn halt_until_interrupt(&mut self) {
        // SAFETY: `sti; hlt` atomically enables interrupts and halts, so a timer interrupt that
        // is already pending wakes the CPU rather than being lost; its handler (entry from ring
        // 0) only accounts for it and returns here. Interrupts are off again before the state is
        // touched.
        unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }

    fn take_pending_irqs(&mut self) -> u32 {
        ioapic::take_pending()
    }

    fn irq_lines_enabled(&self) -> bool {
        ioapic::any_enabled()
    }

    fn context_switch(&mut self, prev: Option<usize>, next: usize, dom: &Domain) {
        context::switch(self, prev, next, dom);
    }

    fn flush_tlb_all(&mut self) {
        context::flush_tlb_global();
    }

    fn perform_flushes(&mut self, dom: &Domain, req: FlushRequest) {
        context::perform_flushes(self, dom, req);
    }

    fn load_vcpu(&mut self, dom: &Domain) {
        context::load_vcpu_state(self, dom);
    }

    fn running_l4(&self) -> Mfn {
        Mfn(self.cr3 >> 12)
    }

    fn poll_console(&mut self, key: &mut dyn FnMut(u8)) -> bool {
        console::poll_input(key)
    }

    fn print(&mut self, args: fmt::Arguments<'_>) {
        console::print(args);
    }

    fn publish_time(&mut self, dom: &Domain) {
        let Ok(t) = super::time::init() else { return };
        let info = t.clock.vcpu_time_info(super::tsc::rdtsc_ordered(), 0);
        let mut page = xen_core::shared_info::SharedInfoPage::of_domain_mut(self, dom);
        // One physical CPU: every vCPU reads the same TSC scale.
        for vcpu in 0..dom.vcpus.len() as u32 {
            page.publish_vcpu_time(vcpu, &info);
        }
        page.publish_wallclock(t.wallclock);
    }

    fn counters(&self) -> Counters {
        Counters {
            timer_interrupts: apic::timer_stats().interrupts,
            device_interrupts: ioapic::count(),
        }
    }

    fn build_domain(
        &mut self,
        pool: &mut Pool,
        doms: &mut DomainSet,
        module: usize,
        copy: Option<u32>,
    ) -> Option<usize> {
        domu::build(self, pool, doms, module, copy).ok()
    }

    fn stop(&mut self, how: Stop) -> ! {
        match how {
            Stop::Poweroff => power::poweroff(),
            Stop::Reboot => power::reboot(),
            Stop::Fail(code) => power::fail(code),
        }
    }
}
