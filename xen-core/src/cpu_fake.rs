//! A fake CPU for host tests of the portable scheduler, lifecycle and debug keys: an [`Arch`]
//! over the hypercall tests' fake machine that records what it was asked to do.

use std::collections::VecDeque;
use std::fmt::Write;

use crate::cpu::{Arch, Counters, Stop};
use crate::ctx::{Machine, Preempt};
use crate::domain::pool::Pool;
use crate::domain::set::DomainSet;
use crate::domain::{Domain, DomainId, FlushRequest};
use crate::hypercall::testing::FakeMachine;
use crate::mm::frame_table::Mm;
use crate::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};

/// The fake CPU.
pub struct FakeArch {
    /// Memory, clock (`m.now`), frame table.
    pub m: FakeMachine,
    /// What was printed on the hypervisor console.
    pub out: String,
    /// The one-shot timer's deadline, if armed.
    pub timer: Option<u64>,
    /// Device interrupts that arrived (GSI bits), handed out by `take_pending_irqs`.
    pub irqs: u32,
    /// Whether a device line is unmasked.
    pub lines_enabled: bool,
    /// Context switches between domains' slots: (previous slot, next slot).
    pub switches: Vec<(Option<usize>, usize)>,
    /// Context switches as scheduling units (slot and vCPU): (previous unit, next unit).
    pub unit_switches: Vec<(Option<usize>, usize)>,
    /// Full TLB flushes (outside context switches).
    pub tlb_flushes: u32,
    /// Flush requests performed, with the domain they were for.
    pub performed: Vec<(DomainId, FlushRequest)>,
    /// The domain whose vCPU state was loaded last.
    pub loaded: Option<DomainId>,
    /// The table the CPU runs on.
    pub l4: Mfn,
    /// Keys typed for the hypervisor, handed out by `poll_console`.
    pub keys: VecDeque<u8>,
    /// Whether dom0 has new console input at the next `poll_console`.
    pub dom0_input: bool,
    /// Halts so far; a test that halts more than `max_halts` times fails.
    pub halts: u32,
    /// See `halts`.
    pub max_halts: u32,
    /// How far a halt moves the clock when no timer is armed.
    pub halt_step: u64,
    /// Domains published the time to.
    pub published: Vec<DomainId>,
    /// Boot modules asked to be built again.
    pub rebuilt: Vec<(usize, Option<u32>)>,
    /// Timer interrupts to report.
    pub timer_interrupts: u64,
}

impl FakeArch {
    /// A fake CPU over `m`, time as `m.now` says, nothing armed or pending.
    pub fn new(m: FakeMachine) -> FakeArch {
        FakeArch {
            m,
            out: String::new(),
            timer: None,
            irqs: 0,
            lines_enabled: false,
            switches: Vec::new(),
            unit_switches: Vec::new(),
            tlb_flushes: 0,
            performed: Vec::new(),
            loaded: None,
            l4: Mfn(0),
            keys: VecDeque::new(),
            dom0_input: false,
            halts: 0,
            max_halts: 100,
            halt_step: 1_000_000,
            published: Vec::new(),
            rebuilt: Vec::new(),
            timer_interrupts: 0,
        }
    }
}

impl MachineMemory for FakeArch {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.m.read(addr, len)
    }
}

impl MachineMemoryMut for FakeArch {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        self.m.write(addr, data)
    }
}

impl Machine for FakeArch {
    type Mem = crate::mm::FakeMemory;
    fn console_write(&mut self, bytes: &[u8]) {
        self.m.console_write(bytes);
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        self.m.console_read(buf)
    }
    fn now_ns(&self) -> u64 {
        self.m.now
    }
    fn e820(&self, out: &mut [(u64, u64, u32)]) -> usize {
        self.m.e820(out)
    }
    fn mm(&mut self) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut)> {
        self.m.mm()
    }
    fn take_xen_page(
        &mut self,
        pool: &mut dyn crate::mm::frame_alloc::FramePool,
    ) -> Option<crate::mm::xen_page::XenPage> {
        self.m.take_xen_page(pool)
    }
    fn write_ptbase(&mut self, l4: Mfn) {
        self.l4 = l4;
    }
    fn preemption(&self) -> &dyn Preempt {
        self.m.preemption()
    }
    fn mm_preemptible(
        &mut self,
    ) -> Option<(&mut Mm<'static>, &mut crate::mm::FakeMemory, &dyn Preempt)> {
        self.m.mm_preemptible()
    }
}

impl Arch for FakeArch {
    fn arm_timer(&mut self, deadline: u64) {
        self.timer = Some(deadline);
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
    }
    fn timer_counting(&self) -> bool {
        self.timer.is_some_and(|d| d > self.m.now)
    }
    fn halt_until_interrupt(&mut self) {
        self.halts += 1;
        assert!(
            self.halts <= self.max_halts,
            "the idle loop halted more than {} times",
            self.max_halts
        );
        // The timer (if armed ahead) ends the halt; otherwise some other interrupt does.
        self.m.now = match self.timer.take() {
            Some(d) if d > self.m.now && d != u64::MAX => d,
            _ => self.m.now + self.halt_step,
        };
    }
    fn take_pending_irqs(&mut self) -> u32 {
        core::mem::take(&mut self.irqs)
    }
    fn irq_lines_enabled(&self) -> bool {
        self.lines_enabled
    }
    fn context_switch(&mut self, prev: Option<usize>, next: usize, dom: &Domain) {
        self.l4 = dom.current_l4();
        let slot = |u: usize| u / crate::domain::MAX_VCPUS;
        self.switches.push((prev.map(slot), slot(next)));
        self.unit_switches.push((prev, next));
    }
    fn flush_tlb_all(&mut self) {
        self.tlb_flushes += 1;
    }
    fn perform_flushes(&mut self, dom: &Domain, req: FlushRequest) {
        self.performed.push((dom.id, req));
    }
    fn load_vcpu(&mut self, dom: &Domain) {
        self.loaded = Some(dom.id);
        self.l4 = dom.current_l4();
    }
    fn running_l4(&self) -> Mfn {
        self.l4
    }
    fn poll_console(&mut self, key: &mut dyn FnMut(u8)) -> bool {
        while let Some(k) = self.keys.pop_front() {
            key(k);
        }
        core::mem::take(&mut self.dom0_input)
    }
    fn print(&mut self, args: core::fmt::Arguments<'_>) {
        let _ = self.out.write_fmt(args);
    }
    fn publish_time(&mut self, dom: &Domain) {
        self.published.push(dom.id);
    }
    fn counters(&self) -> Counters {
        Counters {
            timer_interrupts: self.timer_interrupts,
            device_interrupts: 0,
        }
    }
    fn build_domain(
        &mut self,
        _pool: &mut Pool,
        _doms: &mut DomainSet,
        module: usize,
        copy: Option<u32>,
    ) -> Option<usize> {
        self.rebuilt.push((module, copy));
        None
    }
    fn stop(&mut self, how: Stop) -> ! {
        panic!("machine stopped: {how:?}\n{}", self.out)
    }
}
