//! A fake machine for host tests of the hypercall handlers: byte-vector memory holding a guest
//! address space, a console that records output, and a settable clock.

use std::cell::Cell;

use crate::ctx::{Ctx, Machine, Preempt};
use crate::domain::{Domain, MachineInfo};
use crate::mm::frame_table::Mm;
use crate::mm::{FakeMemory, MachineMemory, MachineMemoryMut, Maddr, Mfn};
use crate::regs::Regs;

/// Guest virtual address of the first mapped guest page.
pub const GUEST_VA: u64 = 0x40_0000;
/// Number of guest pages mapped writable at `GUEST_VA`.
pub const GUEST_PAGES: u64 = 8;
/// A guest page mapped read-only, just after the writable ones.
pub const GUEST_RO_VA: u64 = GUEST_VA + GUEST_PAGES * 4096;

pub struct FakeMachine {
    pub mem: FakeMemory,
    pub console: Vec<u8>,
    pub now: u64,
    /// The frame table, for tests of the page-table hypercalls (`None`: they return -ENOSYS).
    pub mm: Option<Mm<'static>>,
    /// The table the CPU runs on (CR3), as far as a test models it: test worlds set it to the
    /// caller's current table at each entry (what the arch layer's exit path loaded before the
    /// guest ran), and [`Machine::write_ptbase`] changes it. `None`: not modelled.
    pub cr3: Option<Mfn>,
    /// When long hypercalls are told to stop (never, unless a test says so).
    pub preempt: FakePreempt,
    /// Where the hypervisor's own pages (event-channel pages) come from.
    pub xen_pages: FakeXenPages,
}

/// Where a [`FakeMachine`] takes the hypervisor's pages from.
#[derive(Debug)]
pub enum FakeXenPages {
    /// The host's allocator, up to a limit (tests of the handlers that do not model the pool).
    Heap(crate::mm::xen_page::heap::HeapPages),
    /// The pool the caller passes, through the frame table and the fake memory: the
    /// hypervisor's own way ([`crate::ctx::take_xen_page`]).
    Pool,
}

impl Default for FakeXenPages {
    fn default() -> Self {
        FakeXenPages::Heap(crate::mm::xen_page::heap::HeapPages::unlimited())
    }
}

/// The fake machine's answer to "is the CPU wanted elsewhere?": every `every`-th question says
/// yes (never when `every` is 0), and the questions are counted.
#[derive(Debug, Default)]
pub struct FakePreempt {
    /// Say yes to every `every`-th question (0: never).
    pub every: u32,
    /// Questions asked so far.
    pub asked: Cell<u64>,
}

impl FakePreempt {
    /// Yes to every `n`-th question.
    pub fn every(n: u32) -> FakePreempt {
        FakePreempt {
            every: n,
            asked: Cell::new(0),
        }
    }
}

impl Preempt for FakePreempt {
    fn pending(&self) -> bool {
        let n = self.asked.get() + 1;
        self.asked.set(n);
        self.every != 0 && n.is_multiple_of(u64::from(self.every))
    }
}

impl MachineMemory for FakeMachine {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }
}

impl MachineMemoryMut for FakeMachine {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        self.mem.write(addr, data)
    }

    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> crate::mm::MmuCopy {
        self.mem.mmu_read(l4, va, buf)
    }

    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> crate::mm::MmuCopy {
        self.mem.mmu_write(l4, va, data)
    }
}

impl Machine for FakeMachine {
    type Mem = FakeMemory;
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn console_read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn e820(&self, out: &mut [(u64, u64, u32)]) -> usize {
        let map = [
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0x10_0000, 0x1fee_0000, 1),
        ];
        out[..map.len()].copy_from_slice(&map);
        map.len()
    }
    fn mm(&mut self) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut)> {
        let mm = self.mm.as_mut()?;
        Some((mm, &mut self.mem))
    }
    fn take_xen_page(
        &mut self,
        pool: &mut dyn crate::mm::frame_alloc::FramePool,
    ) -> Option<crate::mm::xen_page::XenPage> {
        match &self.xen_pages {
            FakeXenPages::Heap(h) => h.take(),
            FakeXenPages::Pool => crate::ctx::take_xen_page(self.mm.as_mut()?, &mut self.mem, pool),
        }
    }
    fn write_ptbase(&mut self, l4: Mfn) {
        self.cr3 = Some(l4);
    }
    fn preemption(&self) -> &dyn Preempt {
        &self.preempt
    }
    fn mm_preemptible(&mut self) -> Option<(&mut Mm<'static>, &mut FakeMemory, &dyn Preempt)> {
        let mm = self.mm.as_mut()?;
        Some((mm, &mut self.mem, &self.preempt))
    }
}

/// A machine of 32 frames: L4 at frame 1, L3 at 2, L2 at 3, L1 at 4, shared_info at 5, guest data
/// in frames 8.. mapped at `GUEST_VA`, and one read-only page after them.
pub fn setup() -> (FakeMachine, Domain, MachineInfo) {
    let mut mem = FakeMemory::new(0, 32 * 4096);
    let rw = 0x7; // P | RW | US
    mem.write_u64(Maddr(0x1000), 0x2000 | rw).unwrap();
    mem.write_u64(Maddr(0x2000), 0x3000 | rw).unwrap();
    mem.write_u64(Maddr(0x3000 + 2 * 8), 0x4000 | rw).unwrap();
    for i in 0..GUEST_PAGES {
        mem.write_u64(Maddr(0x4000 + i * 8), (0x8000 + i * 0x1000) | rw)
            .unwrap();
    }
    mem.write_u64(
        Maddr(0x4000 + GUEST_PAGES * 8),
        (0x8000 + GUEST_PAGES * 0x1000) | 0x5,
    )
    .unwrap();
    let dom = Domain::new(0, true, 16384, u32::MAX.into(), Mfn(5), Mfn(1));
    let m = FakeMachine {
        mem,
        console: Vec::new(),
        now: 1_000_000_000,
        mm: None,
        cr3: None,
        preempt: FakePreempt::default(),
        xen_pages: FakeXenPages::default(),
    };
    (
        m,
        dom,
        MachineInfo {
            max_ram_page: 0x1ffe0,
            pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
        },
    )
}

/// Runs `f` with a context over the fake machine.
pub fn with_ctx<R>(
    m: &mut FakeMachine,
    dom: &mut Domain,
    info: &MachineInfo,
    regs: &mut Regs,
    f: impl FnOnce(&mut Ctx<'_, FakeMachine>) -> R,
) -> R {
    let mut events = Box::new(crate::evtchn::PortTable::new(1, 4095));
    let mut grants = Box::new(crate::gnttab::GrantTable::new());
    let mut pool = crate::mm::frame_alloc::BootFrameAllocator::empty();
    let mut ctx = Ctx {
        m,
        info,
        pool: &mut pool,
        dom,
        events: &mut events,
        grants: &mut grants,
        others: crate::domain::set::Others::none(),
        regs,
        in_multicall: false,
        fx: &mut Default::default(),
    };
    let r = f(&mut ctx);
    settle(&mut ctx);
    r
}

/// What the arch layer does with the effects a handler called directly (not through
/// [`super::dispatch`]) recorded: the TLB work becomes the vCPU's to owe, a crash shuts it down.
pub fn settle<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>) {
    let fx = core::mem::take(ctx.fx);
    let out = super::Outcome::from_effects(0, fx);
    out.apply_effects(ctx.dom);
}

/// Issues hypercall `nr` as the arch layer does, but returns the value for RAX instead of
/// writing it: the outcome's TLB work and crash are applied to the caller.
pub fn call<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, nr: u64, a: [u64; 5]) -> i64 {
    call_once(ctx, nr, a).0
}

/// [`call`], also returning the continuation the hypercall asked for, if it was preempted.
pub fn call_once<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    nr: u64,
    a: [u64; 5],
) -> (i64, Option<crate::ctx::Continuation>) {
    let out = super::dispatch(ctx, nr, a);
    out.apply_effects(ctx.dom);
    (out.rax(), out.continuation())
}

/// A domain for a [`crate::domain::set::DomainSet`], on the fake machine's page tables (L4 at frame
/// 1, like [`setup`]'s) so that any of them can be the caller: id `id`, privileged when 0,
/// shared_info at frame `10 + id`, `100 + id` pages, run time `1000 * id` ns.
pub fn guest(id: crate::domain::DomainId) -> crate::domain::set::DomainEntry {
    let (_, mut dom, _) = setup();
    dom.id = id;
    dom.privileged = id == 0;
    dom.nr_pages = 100 + u64::from(id);
    dom.max_pages = 200 + u64::from(id);
    dom.shared_info = Mfn(10 + u64::from(id));
    crate::domain::set::DomainEntry {
        dom,
        sched: crate::domain::set::SchedInfo {
            run_ns: 1000 * u64::from(id),
            ..Default::default()
        },
        name: heapless::String::new(),
        module: 0,
        copy: None,
        rings: None,
        destroy: false,
        reported: false,
    }
}

/// Runs `f` with a context for the domain in `slot` of `set`, every other domain in
/// `ctx.others` (the split the arch layer makes for a hypercall).
pub fn with_set_ctx<R>(
    m: &mut FakeMachine,
    set: &mut crate::domain::set::DomainSet,
    slot: usize,
    f: impl FnOnce(&mut Ctx<'_, FakeMachine>) -> R,
) -> R {
    let info = MachineInfo {
        max_ram_page: 0x1ffe0,
        pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
    };
    let mut regs = Regs::default();
    let (me, events, grants, others) = set.split(slot).expect("no domain in that slot");
    let mut pool = crate::mm::frame_alloc::BootFrameAllocator::empty();
    let mut ctx = Ctx {
        m,
        info: &info,
        pool: &mut pool,
        dom: &mut me.dom,
        events,
        grants,
        others,
        regs: &mut regs,
        in_multicall: false,
        fx: &mut Default::default(),
    };
    let r = f(&mut ctx);
    settle(&mut ctx);
    r
}

/// Issues hypercall `nr` the way the arch layer does: while the handler asks for a continuation,
/// the guest's `syscall` runs again with the continuation's arguments in place of the first
/// `nargs`. Returns the final result and how many continuations it took; panics after `limit`.
pub fn call_to_completion<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    nr: u32,
    mut a: [u64; 5],
    limit: u64,
) -> (i64, u64) {
    let mut continuations = 0;
    loop {
        let (rc, c) = call_once(ctx, nr.into(), a);
        match c {
            Some(c) => {
                a[..c.nargs].copy_from_slice(&c.args[..c.nargs]);
                continuations += 1;
                assert!(continuations <= limit, "more than {limit} continuations");
            }
            None => return (rc, continuations),
        }
    }
}

/// Writes `v` into the guest at `va`, through the test domain's L4 (frame 1).
pub fn put<T: zerocopy::IntoBytes + zerocopy::Immutable>(m: &mut FakeMachine, va: u64, v: &T) {
    let mut g = crate::guest_access::PageTableGuest { mem: m, l4: Mfn(1) };
    crate::guest_access::copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(va), v).unwrap();
}

/// Reads a `T` from the guest at `va`, through the test domain's L4 (frame 1).
pub fn get<T: zerocopy::FromBytes + zerocopy::IntoBytes>(m: &mut FakeMachine, va: u64) -> T {
    let g = crate::guest_access::PageTableGuest { mem: m, l4: Mfn(1) };
    crate::guest_access::copy_from_guest(&g, crate::guest_access::GuestPtr::new(va)).unwrap()
}
