//! Test worlds for the frame table and the page-table hypercalls: dom0 built by the real domain
//! builder in fake machine memory and seeded into a frame table, and helpers to poke at it the
//! way the conformance guest does.

use hypercall_abi::xen::DOMID_SELF;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::audit::{audit, live_cr3};
use super::{FrameInfo, Mm, MmConfig, Owner, PageType};
use crate::ctx::{Continuation, Ctx};
use crate::domain::build::tests::Elf;
use crate::domain::build::{self, BuildParams, BuiltDomain, DomainKind};
use crate::domain::{Domain, MachineInfo};
use crate::guest_access::{copy_from_guest, copy_to_guest, translate, PageTableGuest};
use crate::hypercall::testing::{call_to_completion, FakeMachine};
use crate::mm::frame_alloc::{BootFrameAllocator, FrameRange};
use crate::mm::{FakeMemory, MachineMemoryMut, Maddr, Mfn, Pfn};
use crate::multiboot::{MemoryKind, MemoryRegion};
use crate::regs::Regs;

/// The hypervisor's L4 slots in test worlds: recognisable, present, supervisor-only.
pub(crate) const HV_SLOTS: [u64; 16] = {
    let mut s = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        s[i] = 0x0000_0bad_0000_0063 | ((0x300 + i as u64) << 12);
        i += 1;
    }
    s
};

/// A frame table of `max_ram_page` entries (leaked: tests are short-lived) with the test slots,
/// the M2P at `m2p` and I/O allowed up to frame 2^28.
pub(crate) fn new_mm(max_ram_page: usize, m2p: Maddr) -> Mm<'static> {
    let storage = Box::leak(vec![FrameInfo::FREE; max_ram_page].into_boxed_slice());
    Mm::new(
        storage,
        MmConfig {
            m2p,
            xen_l4_slots: HV_SLOTS,
            io_limit: Mfn(1 << 28),
        },
    )
}

/// Frames of the dom0 world's machine: 16 MiB.
pub(crate) const WORLD_FRAMES: u64 = 4096;
/// The M2P table: 4096 entries in frames 0x100..0x108.
pub(crate) const WORLD_M2P: Mfn = Mfn(0x100);
/// dom0's shared_info frame.
pub(crate) const WORLD_SHARED_INFO: Mfn = Mfn(0x108);
/// Frames of dom0.
pub(crate) const DOM0_PAGES: u64 = 1024;

/// A domain built and seeded, in a fake machine with a frame table.
pub(crate) struct World {
    pub m: FakeMachine,
    pub dom: Domain,
    pub info: MachineInfo,
    pub built: BuiltDomain,
    /// The free pool: what the builder left of the machine.
    pub pool: BootFrameAllocator,
}

pub(crate) fn fresh_domain(id: u16, privileged: bool, shared_info: Mfn) -> Domain {
    Domain::new(
        id,
        privileged,
        DOM0_PAGES,
        u32::MAX.into(),
        shared_info,
        Mfn(0),
    )
}

impl World {
    /// dom0 from the builder's test kernel: the first MiB is I/O, the M2P and shared_info are the
    /// hypervisor's, dom0's 1024 pages are validated with their L4 pinned and loaded.
    pub fn dom0() -> World {
        let mut mem = FakeMemory::new(0, (WORLD_FRAMES * 4096) as usize);
        let regions = [MemoryRegion {
            base: Maddr(0),
            len: WORLD_FRAMES * 4096,
            kind: MemoryKind::Usable,
        }];
        let reserved = [WORLD_M2P.maddr()..Mfn(WORLD_SHARED_INFO.0 + 1).maddr()];
        let mut frames = BootFrameAllocator::new(regions, &reserved).unwrap();
        let image = Elf::good().bytes();
        let params = BuildParams {
            image: &image,
            initrd: &[],
            cmdline: "",
            nr_pages: DOM0_PAGES,
            kind: DomainKind::Dom0,
            hypervisor_l4_slots: HV_SLOTS,
            shared_info: WORLD_SHARED_INFO,
        };
        let mut m2p = Vec::new();
        let built = build::build(&mut mem, &mut frames, &params, |mfn, pfn| {
            m2p.push((mfn, pfn))
        })
        .unwrap();
        for (mfn, pfn) in m2p {
            mem.write_u64(Maddr(WORLD_M2P.maddr().0 + mfn.0 * 8), pfn.0)
                .unwrap();
        }
        let mut mm = new_mm(WORLD_FRAMES as usize, WORLD_M2P.maddr());
        mm.assign(range(0, 0x100), Owner::Io).unwrap();
        mm.assign(range(WORLD_M2P.0, WORLD_SHARED_INFO.0), Owner::Xen)
            .unwrap();
        let mut dom = fresh_domain(0, true, WORLD_SHARED_INFO);
        build::seed_domain(&mut mm, &mut mem, &mut dom, &built).unwrap();
        let m = FakeMachine {
            mem,
            console: Vec::new(),
            now: 0,
            mm: Some(mm),
            cr3: None,
            preempt: Default::default(),
            xen_pages: Default::default(),
        };
        let info = MachineInfo {
            max_ram_page: WORLD_FRAMES,
            pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
        };
        let w = World {
            m,
            dom,
            info,
            built,
            pool: frames,
        };
        w.check();
        w
    }

    /// The frame table.
    pub fn mm(&self) -> &Mm<'static> {
        self.m.mm.as_ref().unwrap()
    }

    /// The entry of `mfn`.
    pub fn frame(&self, mfn: Mfn) -> FrameInfo {
        *self.mm().frames.get(mfn).unwrap()
    }

    /// Runs the full recount and the live-CR3 check (the table the CPU runs on is the
    /// domain's); panics with what is wrong.
    pub fn check(&self) {
        let doms = [&self.dom];
        let r = audit(self.mm(), &self.m.mem, &doms)
            .and_then(|()| live_cr3(self.mm(), &self.m.mem, &doms, self.m.cr3));
        if let Err(e) = r {
            panic!("frame table audit: {e}");
        }
    }

    /// Issues hypercall `nr` as the domain.
    pub fn call(&mut self, nr: u32, a: [u64; 5]) -> i64 {
        self.with_ctx(|ctx| crate::hypercall::testing::call(ctx, nr.into(), a))
    }

    /// Issues hypercall `nr` once; also returns the continuation it asked for, if it was
    /// preempted.
    pub fn call_once(&mut self, nr: u32, a: [u64; 5]) -> (i64, Option<Continuation>) {
        self.with_ctx(|ctx| crate::hypercall::testing::call_once(ctx, nr.into(), a))
    }

    /// Issues hypercall `nr` and its continuations until it completes, as the arch layer does
    /// (see [`call_to_completion`]): the result and the number of continuations.
    pub fn call_to_completion(&mut self, nr: u32, a: [u64; 5], limit: u64) -> (i64, u64) {
        self.with_ctx(|ctx| call_to_completion(ctx, nr, a, limit))
    }

    /// Gives the machine an MMU (`FakeMmu`) from now on: hypercalls may then copy guest memory
    /// through it, and its TLB keeps every translation until the TLB work a call asks for is
    /// done after it, as on hardware.
    pub fn with_mmu(&mut self) {
        self.m.mem.mmu = Some(crate::mm::FakeMmu::new(self.dom.current_l4()));
    }

    /// Copies done through the MMU so far ([`World::with_mmu`]).
    pub fn mmu_copies(&self) -> u64 {
        self.m.mem.mmu.as_ref().map_or(0, |m| m.copies.get())
    }

    fn with_ctx<R>(&mut self, f: impl FnOnce(&mut Ctx<'_, FakeMachine>) -> R) -> R {
        // The guest entered on the table of its mode (the exit path loaded it).
        self.m.cr3 = Some(self.dom.current_l4());
        if let Some(mmu) = self.m.mem.mmu.as_mut() {
            if mmu.cr3 != self.dom.current_l4() {
                // A CR3 load drops the TLB (the guest's global entries too, in this model).
                mmu.flush();
                mmu.cr3 = self.dom.current_l4();
            }
        }
        let mut regs = Regs::default();
        let mut events = Box::new(crate::evtchn::PortTable::new(1, 4095));
        let mut grants = Box::new(crate::gnttab::GrantTable::new());
        let mut ctx = Ctx {
            m: &mut self.m,
            info: &self.info,
            pool: &mut self.pool,
            dom: &mut self.dom,
            events: &mut events,
            grants: &mut grants,
            others: crate::domain::set::Others::none(),
            regs: &mut regs,
            in_multicall: false,
            fx: &mut Default::default(),
        };
        let r = f(&mut ctx);
        crate::hypercall::testing::settle(&mut ctx);
        if let Some(mmu) = self.m.mem.mmu.as_ref() {
            // Every copy that went through a translation the tables no longer give must have
            // reached what the guest may reach through it anyway: a frame of its own, and for a
            // write one that is no table (a retype or a free would have owed a flush first).
            for (va, maddr, write) in mmu.stale_uses.borrow_mut().drain(..) {
                let f = *self.mm().frames.get(Mfn(maddr >> 12)).unwrap();
                let ok = f.owner() == Owner::Domain(self.dom.id)
                    && (!write || matches!(f.page_type(), PageType::Writable | PageType::None));
                assert!(
                    ok,
                    "a stale TLB entry for {va:#x} reached {maddr:#x} (write {write}): {f:?}"
                );
            }
        }
        if let Some(mmu) = self.m.mem.mmu.as_ref() {
            // The way out does the TLB work the vCPU owes before the guest runs again.
            let v = self.dom.vcpu_mut();
            if v.flush.owes_tlb_work() {
                mmu.flush();
                v.flush = Default::default();
            }
        }
        r
    }

    /// A page of the initial region by index from the end of the boot stack: the padding Xen
    /// leaves there is ordinary writable guest memory.
    pub fn scratch_va(&self, i: u64) -> u64 {
        self.built.layout.stack.end + i * 4096
    }

    /// The frame behind pfn-mapped `va` of the initial region.
    pub fn mfn_of(&self, va: u64) -> Mfn {
        self.built.mfn(Pfn(self.built.layout.pfn_of(va)))
    }

    /// Where the L1 entry for `va` lives (walking the current tables), its value, and its L1.
    pub fn l1_slot(&self, va: u64) -> (Maddr, u64, Mfn) {
        let (at, l1) = crate::mm::guest_pt::map_guest_l1e(&self.m.mem, self.dom.vcpu().l4, va)
            .expect("va has an L1");
        (at, self.m.mem.read_u64(at).unwrap(), l1)
    }

    /// Reads a u64 at guest `va` through the current tables.
    pub fn peek(&self, va: u64) -> u64 {
        let at = translate(&self.m.mem, self.dom.vcpu().l4, va, false).expect("va mapped");
        self.m.mem.read_u64(at).unwrap()
    }

    /// Writes a u64 at guest `va` through the current tables (which must map it writable).
    pub fn poke(&mut self, va: u64, v: u64) {
        let at = translate(&self.m.mem, self.dom.vcpu().l4, va, true).expect("va mapped writable");
        self.m.mem.write_u64(at, v).unwrap();
    }

    /// Copies `v` into guest memory at `va`.
    pub fn put<T: IntoBytes + Immutable>(&mut self, va: u64, v: &T) {
        let mut g = PageTableGuest {
            mem: &mut self.m.mem,
            l4: self.dom.vcpu().l4,
        };
        copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(va), v).unwrap();
    }

    /// Copies a `T` out of guest memory at `va`.
    pub fn get<T: FromBytes + IntoBytes>(&mut self, va: u64) -> T {
        let g = PageTableGuest {
            mem: &mut self.m.mem,
            l4: self.dom.vcpu().l4,
        };
        copy_from_guest(&g, crate::guest_access::GuestPtr::new(va)).unwrap()
    }
}

/// `[start, end)` as a frame range.
pub(crate) fn range(start: u64, end: u64) -> FrameRange {
    FrameRange {
        start: Mfn(start),
        end: Mfn(end),
    }
}

/// `DOMID_SELF` as the hypercall argument.
pub(crate) const SELF: u64 = DOMID_SELF as u64;

// ---------------------------------------------------------------------------------------------
// A small machine with two domains, built by hand.

/// Frames of the small machine.
pub(crate) const SMALL_FRAMES: u64 = 128;
/// Frames each domain owns.
pub(crate) const DOM_FRAMES: u64 = 32;
/// Flags of the hand-built tables' entries (those of the builder).
pub(crate) const TABLE_FLAGS: u64 = super::pte::PRESENT
    | super::pte::RW
    | super::pte::USER
    | super::pte::ACCESSED
    | super::pte::DIRTY;
/// Flags of the hand-built data mappings.
pub(crate) const DATA: u64 =
    super::pte::PRESENT | super::pte::RW | super::pte::USER | super::pte::ACCESSED;

/// Two domains on a 128-frame machine:
///
/// - frames 0..4 are I/O memory, 4..6 the hypervisor's (the M2P is frame 4), 6 and 7 the two
///   shared_info pages, 80..128 free;
/// - domain 0 (privileged) owns 16..48, domain 1 (unprivileged) 48..80;
/// - each domain's frame `b` is its L4, `b+1` an L3, `b+2` an L2, `b+3` an L1 (chained through
///   slot 0), the L1 maps the four tables read-only at VA 0..0x4000 and the other 28 frames
///   writable at VA 0x4000..0x20000; the L4 is pinned and loaded.
pub(crate) struct Two {
    pub m: FakeMachine,
    pub doms: [Domain; 2],
    pub info: MachineInfo,
    /// The free pool (empty unless a test fills it).
    pub pool: BootFrameAllocator,
}

/// First frame of domain `d`.
pub(crate) const fn base(d: usize) -> u64 {
    16 + DOM_FRAMES * d as u64
}

/// Virtual address of the `i`th page of a domain's mapped range (frame `base + i`).
pub(crate) const fn page_va(i: u64) -> u64 {
    i * 4096
}

impl Two {
    pub fn new() -> Two {
        let mut mem = FakeMemory::new(0, (SMALL_FRAMES * 4096) as usize);
        let mut mm = new_mm(SMALL_FRAMES as usize, Mfn(4).maddr());
        mm.assign(range(0, 4), Owner::Io).unwrap();
        mm.assign(range(4, 6), Owner::Xen).unwrap();
        let mut doms = [
            fresh_domain(0, true, Mfn(6)),
            fresh_domain(1, false, Mfn(7)),
        ];
        for (d, dom) in doms.iter_mut().enumerate() {
            let b = base(d);
            let w = |mem: &mut FakeMemory, t: u64, i: u64, v: u64| {
                mem.write_u64(Maddr((t << 12) + i * 8), v).unwrap()
            };
            w(&mut mem, b, 0, ((b + 1) << 12) | TABLE_FLAGS);
            w(&mut mem, b + 1, 0, ((b + 2) << 12) | TABLE_FLAGS);
            w(&mut mem, b + 2, 0, ((b + 3) << 12) | TABLE_FLAGS);
            for i in 0..DOM_FRAMES {
                let flags = if i < 4 { DATA & !super::pte::RW } else { DATA };
                w(&mut mem, b + 3, i, ((b + i) << 12) | flags);
            }
            mm.add_domain(dom.info()).unwrap();
            mm.assign(range(b, b + DOM_FRAMES), Owner::Domain(dom.id))
                .unwrap();
            mm.share_xen_page_with_guest(dom.shared_info, dom.id, true)
                .unwrap();
            use crate::mm::PtLevel::*;
            let tables = [(b, L4), (b + 1, L3), (b + 2, L2), (b + 3, L1)];
            mm.validate_and_pin_initial_tables(
                &mut mem,
                dom,
                Mfn(b),
                tables.map(|(m, l)| (Mfn(m), l)),
            )
            .unwrap();
        }
        let m = FakeMachine {
            mem,
            console: Vec::new(),
            now: 0,
            mm: Some(mm),
            cr3: None,
            preempt: Default::default(),
            xen_pages: Default::default(),
        };
        let t = Two {
            m,
            doms,
            info: MachineInfo {
                max_ram_page: SMALL_FRAMES,
                pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
            },
            pool: BootFrameAllocator::empty(),
        };
        t.check();
        t
    }

    pub fn mm(&self) -> &Mm<'static> {
        self.m.mm.as_ref().unwrap()
    }

    pub fn frame(&self, mfn: u64) -> FrameInfo {
        *self.mm().frames.get(Mfn(mfn)).unwrap()
    }

    /// The full recount over both domains, and the live-CR3 check (the table the CPU runs on is
    /// one of theirs).
    pub fn audit(&self) -> Result<(), String> {
        let doms = [&self.doms[0], &self.doms[1]];
        audit(self.mm(), &self.m.mem, &doms)?;
        live_cr3(self.mm(), &self.m.mem, &doms, self.m.cr3)
    }

    pub fn check(&self) {
        if let Err(e) = self.audit() {
            panic!("frame table audit: {e}");
        }
    }

    /// Runs `f` as domain `d`, which entered on the table of its mode (the exit path loaded it).
    pub fn ctx<R>(&mut self, d: usize, f: impl FnOnce(&mut Ctx<'_, FakeMachine>) -> R) -> R {
        self.m.cr3 = Some(self.doms[d].current_l4());
        let mut regs = Regs::default();
        let mut events = Box::new(crate::evtchn::PortTable::new(1, 4095));
        let mut grants = Box::new(crate::gnttab::GrantTable::new());
        let mut ctx = Ctx {
            m: &mut self.m,
            info: &self.info,
            pool: &mut self.pool,
            dom: &mut self.doms[d],
            events: &mut events,
            grants: &mut grants,
            others: crate::domain::set::Others::none(),
            regs: &mut regs,
            in_multicall: false,
            fx: &mut Default::default(),
        };
        let r = f(&mut ctx);
        crate::hypercall::testing::settle(&mut ctx);
        r
    }

    /// Hypercall `nr` as domain `d`.
    pub fn call(&mut self, d: usize, nr: u32, a: [u64; 5]) -> i64 {
        self.ctx(d, |ctx| crate::hypercall::testing::call(ctx, nr.into(), a))
    }

    /// `mmu_update` as domain `d` with a list given directly (not through guest memory).
    pub fn mmu(&mut self, d: usize, reqs: &[(u64, u64)], foreigndom: u32) -> (i64, u32) {
        let reqs: Vec<_> = reqs
            .iter()
            .map(|&(ptr, val)| hypercall_abi::xen::MmuUpdate { ptr, val })
            .collect();
        let before = self.doms[d].vcpu().perf.page_updates;
        let rc = self.ctx(d, |ctx| {
            crate::mm::mmu::do_mmu_update(
                ctx,
                crate::mm::mmu::Batch::Slice(&reqs),
                reqs.len() as u32,
                crate::guest_access::GuestPtr::new(0),
                foreigndom,
            )
        });
        let done = (self.doms[d].vcpu().perf.page_updates - before) as u32;
        (rc.unwrap_or_else(|e| e.neg()), done)
    }

    /// `mmuext_op` as domain `d` with ops given directly.
    pub fn ext(&mut self, d: usize, ops: &[(u32, u64, u64)], foreigndom: u32) -> i64 {
        let ops: Vec<_> = ops
            .iter()
            .map(|&(cmd, arg1, arg2)| hypercall_abi::xen::MmuextOp {
                cmd,
                arg1,
                arg2,
                ..Default::default()
            })
            .collect();
        self.ctx(d, |ctx| {
            crate::mm::mmu::do_mmuext_op(
                ctx,
                crate::mm::mmu::Batch::Slice(&ops),
                ops.len() as u32,
                crate::guest_access::GuestPtr::new(0),
                foreigndom,
            )
        })
        .unwrap_or_else(|e| e.neg())
    }

    /// `update_va_mapping` (or `_otherdomain` with `domid`) as domain `d`.
    pub fn uvm(&mut self, d: usize, va: u64, val: u64, flags: u64, domid: Option<u16>) -> i64 {
        self.ctx(d, |ctx| {
            crate::mm::mmu::do_update_va_mapping(ctx, va, val, flags, domid)
        })
        .unwrap_or_else(|e| e.neg())
    }

    /// The machine address of entry `i` of frame `t`.
    pub const fn slot(t: u64, i: u64) -> u64 {
        (t << 12) + i * 8
    }

    /// Reads entry `i` of frame `t`.
    pub fn entry(&self, t: u64, i: u64) -> u64 {
        self.m.mem.read_u64(Maddr(Self::slot(t, i))).unwrap()
    }
}
