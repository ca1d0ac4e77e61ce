//! The machine the sequence fuzzer runs on: three domains (dom0, privileged, and two domUs) built
//! by hand in a small fake machine with a frame table, their event channels and grant tables in a
//! [`DomainSet`], hypercall entries and exits as the arch layer makes them, and the invariants
//! checked after every step.
//!
//! The world is built once per worker thread and reset in place for every sequence: the frame
//! table's storage must be `'static` (the page-table handlers take `Mm<'static>`), so it is leaked
//! once and reused rather than leaked per sequence.
//!
//! One file (about 800 lines) on purpose: the world's construction and the invariants checked on it
//! read against each other, field by field.

use core::fmt::Write as _;

use hypercall_abi::xen::DOMID_SELF;

use crate::ctx::{Ctx, Machine};
use crate::domain::set::{DomainEntry, DomainSet, SchedInfo, MAX_PORT_2L};
use crate::domain::{Domain, DomainId, MachineInfo};
use crate::evtchn::ChannelState;
use crate::mm::frame_table::audit::{audit_with_foreign, ForeignRefs};
use crate::mm::frame_table::testing::{new_mm, range, HV_SLOTS};
use crate::mm::frame_table::{pte, FrameInfo, Mm, Owner, PageType, Pt, FIRST_XEN_SLOT, XEN_SLOTS};
use crate::mm::PtLevel;
use crate::mm::{FakeMemory, MachineMemory, MachineMemoryMut, Maddr, Mfn};

/// Frames of the machine.
pub(super) const FRAMES: u64 = 320;
/// The M2P table (one frame covers 512 frames).
const M2P: Mfn = Mfn(4);
/// Domain slots: dom0 in slot 0, a domU in each of the others.
pub(super) const SLOTS: usize = 3;
/// Frames of each domain's memory.
pub(super) const DOM_FRAMES: u64 = 48;
/// Grant-table frames each domain is given (one shared at first, `setup_table` shares more).
pub(super) const GRANT_FRAMES: u32 = 4;
/// Frames each grant table takes: the shared entries, the active entries (one per reference,
/// never shared) and the status frames (shared under version 2 only).
pub(super) const TABLE_FRAMES: u32 = crate::gnttab::table_frames_for(GRANT_FRAMES);
/// Frames from here to [`FRAMES`] are never given to anyone.
pub(super) const FIRST_FREE: u64 = 256;

/// First frame of slot `s`'s memory.
pub(super) const fn dom_base(s: usize) -> u64 {
    64 * (s as u64 + 1)
}

/// Slot `s`'s shared_info frame.
pub(super) const fn shared_info(s: usize) -> Mfn {
    Mfn(8 + s as u64)
}

/// Grant-table frame `i` of slot `s` (shared entries first, then active entries).
pub(super) const fn grant_frame(s: usize, i: u64) -> Mfn {
    Mfn(16 + TABLE_FRAMES as u64 * s as u64 + i)
}
const _: () = assert!(16 + TABLE_FRAMES as u64 * SLOTS as u64 <= dom_base(0));

// Each domain's memory, by frame index from its base. The L1 maps index `i` at VA `i * 4096`
// for `i < MAPPED` (the tables and the zeroed spares read-only, the rest writable), its
// shared_info at `SHARED_VA` and its first grant frame at `GRANT_VA`; a second L1 maps the list
// frame 512 times, writable, at `ALIAS_VA` (a list there reads the same 4 KiB over and over).
/// The L4 the domain starts on (pinned).
pub(super) const I_L4: u64 = 0;
const I_L3: u64 = 1;
const I_L2: u64 = 2;
const I_L1: u64 = 3;
const I_L1_ALIAS: u64 = 4;
/// A second validated and pinned L4 over the same L3: something to switch to.
pub(super) const I_L4_SPARE: u64 = 5;
/// The first data frame: frames below it are mapped read-only.
pub(super) const I_DATA: u64 = 9;
/// The frame behind the alias mapping.
pub(super) const I_ALIAS: u64 = 8;
/// Frames mapped at VA `index * 4096`.
pub(super) const MAPPED: u64 = 40;
/// Where the domain maps its shared_info.
pub(super) const SHARED_VA: u64 = MAPPED * 4096;
/// Where the domain maps its first grant-table frame.
pub(super) const GRANT_VA: u64 = (MAPPED + 1) * 4096;
/// The aliased region: 512 pages, one frame.
pub(super) const ALIAS_VA: u64 = 0x20_0000;
/// Pages in the aliased region.
pub(super) const ALIAS_PAGES: u64 = 512;

/// Flags of the hand-built table entries.
const TABLE: u64 = pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED | pte::DIRTY;
/// Flags of the hand-built data mappings.
const DATA: u64 = pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED;

/// Machine memory that watches one frame: the L4 the running vCPU's CR3 holds during a
/// hypercall. A write that puts anything but the hypervisor's entries into its reserved slots
/// is recorded: the CPU is running on that table.
pub(super) struct Watched {
    pub mem: FakeMemory,
    pub watch: Option<Mfn>,
    pub hit: Option<String>,
}

impl MachineMemory for Watched {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }
}

impl MachineMemoryMut for Watched {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        if let Some(l4) = self.watch {
            self.check(l4, addr, data);
        }
        self.mem.write(addr, data)
    }
}

impl Watched {
    fn check(&mut self, l4: Mfn, addr: Maddr, data: &[u8]) {
        let lo = l4.maddr().0 + FIRST_XEN_SLOT as u64 * 8;
        let hi = lo + XEN_SLOTS as u64 * 8;
        let (start, end) = (addr.0, addr.0.saturating_add(data.len() as u64));
        if end <= lo || start >= hi || self.hit.is_some() {
            return;
        }
        for at in start.max(lo)..end.min(hi) {
            let slot = ((at - lo) / 8) as usize;
            let want = HV_SLOTS[slot].to_le_bytes()[((at - lo) % 8) as usize];
            let got = data[(at - start) as usize];
            if got != want {
                self.hit = Some(format!(
                    "write of {:#x} into hypervisor slot {} of the running L4 {l4:?}",
                    u64::from_le_bytes(slot_bytes(data, start, lo + slot as u64 * 8)),
                    FIRST_XEN_SLOT + slot
                ));
                return;
            }
        }
    }
}

/// The 8 bytes at `at` as far as `data` (written at `start`) covers them (zero elsewhere).
fn slot_bytes(data: &[u8], start: u64, at: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    for (k, byte) in b.iter_mut().enumerate() {
        let a = at + k as u64;
        if a >= start {
            if let Some(&v) = data.get((a - start) as usize) {
                *byte = v;
            }
        }
    }
    b
}

/// The fake machine: watched memory and the frame table.
pub(super) struct FuzzMachine {
    pub mem: Watched,
    pub mm: Mm<'static>,
    pub now: u64,
    /// Where event-channel pages come from.
    pub pages: crate::mm::xen_page::heap::HeapPages,
}

impl MachineMemory for FuzzMachine {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }
}

impl MachineMemoryMut for FuzzMachine {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        self.mem.write(addr, data)
    }
}

impl Machine for FuzzMachine {
    type Mem = Watched;
    fn console_write(&mut self, _bytes: &[u8]) {}
    fn console_read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn e820(&self, out: &mut [(u64, u64, u32)]) -> usize {
        out[0] = (0, FRAMES * 4096, 1);
        1
    }
    fn mm(&mut self) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut)> {
        Some((&mut self.mm, &mut self.mem))
    }
    fn mm_preemptible(
        &mut self,
    ) -> Option<(&mut Mm<'static>, &mut Watched, &dyn crate::ctx::Preempt)> {
        Some((&mut self.mm, &mut self.mem, &crate::ctx::NoPreemption))
    }
    /// Event-channel pages from the host's allocator: the world's pool models the grant-table
    /// frames only.
    fn take_xen_page(
        &mut self,
        _pool: &mut dyn crate::mm::frame_alloc::FramePool,
    ) -> Option<crate::mm::xen_page::XenPage> {
        self.pages.take()
    }
    /// `MMUEXT_NEW_BASEPTR` switches CR3 at once (Xen's `new_guest_cr3` + `write_ptbase`): from
    /// here on the CPU runs on `l4`, which is the table to watch.
    fn write_ptbase(&mut self, l4: Mfn) {
        self.mem.watch = Some(l4);
    }
}

/// Which checks run (see `super::LIVE_CR3_CHECK` and `super::GDT_TEARDOWN_CHECK`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Checks {
    /// The L4 a vCPU runs on stays a validated, referenced L4 with the hypervisor's slots until
    /// the exit path switches CR3 away from it.
    pub live_cr3: bool,
    /// A domain's teardown drops its GDT's references itself; when off, the fuzzer drops them
    /// before `relinquish_domain` (as a fixed teardown would) so the rest can be checked.
    pub gdt_teardown: bool,
}

/// The whole world.
pub(super) struct World {
    pub m: FuzzMachine,
    pub set: Box<DomainSet>,
    pub info: MachineInfo,
    /// The id each slot's domain was built with (a rebuilt domain gets a fresh one, as on Xen),
    /// or `None` for an empty slot.
    pub ids: [Option<DomainId>; SLOTS],
    /// Ids of destroyed domains and the slot their frames came from (zombie frames stay owned by
    /// the dead id while another domain maps them).
    pub dead: Vec<(DomainId, usize)>,
    next_id: DomainId,
    pub checks: Checks,
    /// L1 entries dom0 asked to write into another domain's tables (`mmu_update` naming the
    /// table's owner): they may map dom0's frames ([`ForeignRefs::ptes`]).
    pub foreign_ptes: Vec<(Maddr, Mfn)>,
    /// Hypercall entries made, continuations included.
    pub entries: u64,
    /// What the sequences reached (kept across sequences).
    pub cover: Coverage,
}

/// How far the sequences got: counts of what they reached, to tell a fuzzer that explores from
/// one that bounces off the first refusal.
#[derive(Clone, Debug)]
pub(super) struct Coverage {
    /// Top-level hypercalls by number (below 64): made, and returned 0 (or more).
    pub calls: Vec<(u64, u64)>,
    /// Steps after which some domain held a grant mapping of another's frame.
    pub granted: u64,
    /// Steps after which some domain ran on an L4 other than the one it was built with, or had
    /// a user L4.
    pub switched: u64,
    /// Steps after which some domain had a GDT installed.
    pub gdt: u64,
    /// Steps after which some interdomain event channel was bound.
    pub channels: u64,
    /// Domains destroyed, and built again.
    pub destroyed: u64,
    pub rebuilt: u64,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            calls: vec![(0, 0); 64],
            granted: 0,
            switched: 0,
            gdt: 0,
            channels: 0,
            destroyed: 0,
            rebuilt: 0,
        }
    }
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        for (a, b) in self.calls.iter_mut().zip(o.calls.iter()) {
            a.0 += b.0;
            a.1 += b.1;
        }
        self.granted += o.granted;
        self.switched += o.switched;
        self.gdt += o.gdt;
        self.channels += o.channels;
        self.destroyed += o.destroyed;
        self.rebuilt += o.rebuilt;
    }

    /// Calls made and succeeded of hypercall `nr`.
    pub fn of(&self, nr: u32) -> (u64, u64) {
        self.calls.get(nr as usize).copied().unwrap_or_default()
    }
}

/// Continuations of one hypercall the fuzzer follows before it leaves the rest undone (the state
/// between two entries is a consistent one; a guest stuck in a huge batch is destroyed there).
const MAX_CHUNKS: u32 = 8;

impl World {
    /// The world, built: a new frame table storage (leaked, once per thread) and memory.
    pub fn new(checks: Checks) -> World {
        let mm = new_mm(FRAMES as usize, M2P.maddr());
        let set = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(s, || Box::new(DomainSet::new()))
                .unwrap()
                .join()
                .unwrap()
        });
        let mut w = World {
            m: FuzzMachine {
                mem: Watched {
                    mem: FakeMemory::new(0, (FRAMES * 4096) as usize),
                    watch: None,
                    hit: None,
                },
                mm,
                now: 1_000_000_000,
                pages: Default::default(),
            },
            set,
            info: MachineInfo {
                max_ram_page: FRAMES,
                pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
            },
            ids: [None; SLOTS],
            dead: Vec::new(),
            next_id: 0,
            checks,
            foreign_ptes: Vec::new(),
            entries: 0,
            cover: Coverage::default(),
        };
        w.reset();
        w
    }

    /// Back to the starting state: I/O frames 0..4, the hypervisor's 4..8 (the M2P is frame 4),
    /// dom0 in slot 0 and domUs 1 and 2 in slots 1 and 2.
    pub fn reset(&mut self) {
        for s in 0..SLOTS {
            if let Some((_, ports)) = self.set.both_mut(s) {
                for f in ports.take_pages() {
                    self.m.pages.give_back(f);
                }
            }
            self.set.remove(s);
        }
        let ids: Vec<DomainId> = self.m.mm.domains().map(|d| d.id).collect();
        for id in ids {
            self.m.mm.remove_domain(id);
        }
        for m in 0..FRAMES {
            if let Some(f) = self.m.mm.frames.get_mut(Mfn(m)) {
                *f = FrameInfo::FREE;
            }
        }
        self.m.mem.mem.bytes.fill(0);
        self.m.mem.watch = None;
        self.m.mem.hit = None;
        self.m.mm.assign(range(0, 4), Owner::Io).unwrap();
        self.m.mm.assign(range(4, 8), Owner::Xen).unwrap();
        self.ids = [None; SLOTS];
        self.dead.clear();
        self.next_id = 0;
        self.foreign_ptes.clear();
        self.entries = 0;
        for s in 0..SLOTS {
            assert!(self.build(s), "slot {s} could not be built");
        }
        if let Err(e) = self.check() {
            panic!("the starting world breaks an invariant: {e}");
        }
    }

    fn is_free(&self, m: Mfn) -> bool {
        self.m
            .mm
            .frames
            .get(m)
            .is_some_and(|f| f.owner() == Owner::Free)
    }

    /// The grant-table frames no table holds: the pool tables take frames from, at build and as
    /// they grow (any slot's, as the arch layer's pool hands out any free frame).
    fn free_grant_frames(&self) -> Vec<Mfn> {
        (0..SLOTS)
            .flat_map(|k| (0..u64::from(TABLE_FRAMES)).map(move |i| grant_frame(k, i)))
            .filter(|&m| self.is_free(m))
            .collect()
    }

    /// Whether every frame slot `s` builds a domain from is free, and the pool has the frames
    /// of a new grant table.
    fn slot_free(&self, s: usize) -> bool {
        (dom_base(s)..dom_base(s) + DOM_FRAMES).all(|m| self.is_free(Mfn(m)))
            && self.is_free(shared_info(s))
            && self.free_grant_frames().len() >= 3
    }

    /// Builds a domain in empty slot `s` with the next id (dom0, privileged, in slot 0), if every
    /// frame it needs is free (a destroyed domain's frames another domain still maps are not).
    pub fn build(&mut self, s: usize) -> bool {
        if self.ids[s].is_some() || !self.slot_free(s) {
            return false;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut grant_pool = self.free_grant_frames().into_iter();
        let b = dom_base(s);
        let privileged = s == 0;
        let mm = &mut self.m.mm;
        let mem = &mut self.m.mem.mem;
        for m in (b..b + DOM_FRAMES).chain([shared_info(s).0]) {
            mem.write(Mfn(m).maddr(), &[0u8; 4096]).unwrap();
        }
        let dom = Domain::new(
            id,
            privileged,
            DOM_FRAMES,
            DOM_FRAMES + 16,
            shared_info(s),
            Mfn(0),
        );
        mm.add_domain(dom.info()).unwrap();
        // A dead domain's frames went back to the pool (the real reaper's `reclaim`).
        mm.clear_given(range(b, b + DOM_FRAMES));
        mm.assign(range(b, b + DOM_FRAMES), Owner::Domain(id))
            .unwrap();
        mm.share_xen_page_with_guest(shared_info(s), id, true)
            .unwrap();
        let guest = DomainEntry {
            dom,
            sched: SchedInfo::default(),
            name: heapless::String::new(),
            module: s,
            copy: None,
            rings: None,
            destroy: false,
            reported: false,
        };
        self.set.install(s, guest, MAX_PORT_2L);
        let mut alloc = |_: &mut dyn MachineMemoryMut| grant_pool.next();
        self.set.grants[s]
            .init(mm, mem, id, &mut alloc, GRANT_FRAMES)
            .unwrap();

        let w = |mem: &mut FakeMemory, t: u64, i: u64, v: u64| {
            mem.write_u64(Maddr(((b + t) << 12) + i * 8), v).unwrap()
        };
        w(mem, I_L4, 0, ((b + I_L3) << 12) | TABLE);
        w(mem, I_L4_SPARE, 0, ((b + I_L3) << 12) | TABLE);
        w(mem, I_L3, 0, ((b + I_L2) << 12) | TABLE);
        w(mem, I_L2, 0, ((b + I_L1) << 12) | TABLE);
        w(mem, I_L2, 1, ((b + I_L1_ALIAS) << 12) | TABLE);
        for i in 0..MAPPED {
            let flags = if i < I_ALIAS { DATA & !pte::RW } else { DATA };
            w(mem, I_L1, i, ((b + i) << 12) | flags);
        }
        w(mem, I_L1, MAPPED, shared_info(s).maddr().0 | DATA);
        let shared0 = self.set.grants[s].shared_frames()[0];
        w(mem, I_L1, MAPPED + 1, shared0.maddr().0 | DATA);
        for i in 0..ALIAS_PAGES {
            w(mem, I_L1_ALIAS, i, ((b + I_ALIAS) << 12) | DATA);
        }
        let tables = [
            (I_L4, PtLevel::L4),
            (I_L3, PtLevel::L3),
            (I_L2, PtLevel::L2),
            (I_L1, PtLevel::L1),
            (I_L1_ALIAS, PtLevel::L1),
        ];
        let dom = &mut self.set.guest_mut(s).unwrap().dom;
        mm.validate_and_pin_initial_tables(mem, dom, Mfn(b), tables.map(|(i, l)| (Mfn(b + i), l)))
            .unwrap();
        // The spare L4, pinned the way the guest would pin it.
        let caller = dom.info();
        let vcpu = dom.vcpu_mut();
        let mut pt = Pt {
            mm,
            mem,
            perf: &mut vcpu.perf,
            flush: &mut vcpu.flush,
            caller,
        };
        let spare = Mfn(b + I_L4_SPARE);
        pt.get_page_and_type(spare, Owner::Domain(id), PageType::L4)
            .unwrap();
        pt.mm.set_pinned(spare, true);
        dom.vcpu_mut().flush.take();
        self.ids[s] = Some(id);
        self.cover.rebuilt += u64::from(id >= SLOTS as DomainId);
        true
    }

    /// Counts what the state after a step reached ([`Coverage`]).
    pub fn observe(&mut self) {
        let mut c = Coverage::default();
        for s in self.live() {
            let g = self.guest(s).unwrap();
            let maps = self.set.grants[s].mappings(&self.m.mem).count() > 0;
            let switched =
                g.dom.vcpu().l4.0 != dom_base(s) + I_L4 || g.dom.vcpu().user_l4.is_some();
            let ports = self.set.ports(s);
            let bound = (0..ports.valid_ports()).any(|p| {
                matches!(
                    ports.channel(p).map(|c| c.state),
                    Some(ChannelState::Interdomain { remote_dom, .. }) if remote_dom != g.dom.id
                )
            });
            c.granted = c.granted.max(u64::from(maps));
            c.switched = c.switched.max(u64::from(switched));
            c.gdt = c.gdt.max(u64::from(!g.dom.vcpu().gdt_frames.is_empty()));
            c.channels = c.channels.max(u64::from(bound));
        }
        self.cover.add(&c);
    }

    /// The guest in slot `s`, if any.
    pub fn guest(&self, s: usize) -> Option<&DomainEntry> {
        self.set.guest(s)
    }

    /// Slots with a domain, in order.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..SLOTS).filter(|&s| self.ids[s].is_some())
    }

    /// Whether the domain in slot `s` can make a hypercall now (exists and has not stopped).
    pub fn runnable(&self, s: usize) -> bool {
        self.guest(s)
            .is_some_and(|g| g.dom.shutdown.is_none() && !g.destroy)
    }

    /// The vCPU of slot `s` is scheduled to make a hypercall: an event wakes it if it blocked or
    /// polls, and a guest in user mode is bounced back to its kernel first (a `syscall` from
    /// guest user mode is the kernel's, not a hypercall): the mode toggles and CR3 is reloaded.
    pub fn schedule(&mut self, s: usize) {
        let Some(g) = self.set.guest_mut(s) else {
            return;
        };
        let v = g.dom.vcpu_mut();
        v.blocked = false;
        v.yielded = false;
        v.poll = None;
        if !v.kernel_mode {
            let _ = g.dom.toggle_guest_mode();
            g.dom.vcpu_mut().flush.take();
        }
        self.m.now += 1_000_000;
    }

    /// Hypercall `nr` from the domain in slot `s`, followed through its continuations (each one a
    /// fresh entry, with the exit path in between). Returns the result of the last entry, or
    /// what broke an invariant during an entry.
    pub fn hypercall(&mut self, s: usize, nr: u64, args: [u64; 5]) -> Result<i64, String> {
        let rc = self.follow(s, nr, args)?;
        if let Some(c) = self.cover.calls.get_mut(nr as usize) {
            c.0 += 1;
            c.1 += u64::from(rc >= 0);
        }
        Ok(rc)
    }

    fn follow(&mut self, s: usize, nr: u64, mut args: [u64; 5]) -> Result<i64, String> {
        let mut chunks = 0;
        loop {
            let (rc, cont) =
                self.entry(s, |ctx| crate::hypercall::testing::call_once(ctx, nr, args))?;
            match cont {
                Some(next) if chunks < MAX_CHUNKS => {
                    args[..next.nargs].copy_from_slice(&next.args[..next.nargs]);
                    chunks += 1;
                }
                _ => return Ok(rc),
            }
        }
    }

    /// One entry into the hypervisor from the domain in slot `s`: `f` runs with a context as the
    /// arch layer builds it, then the exit path does what the hypercall asked for (TLB flushes,
    /// the CR3 load). Checks the live-CR3 invariant around it.
    pub fn entry<R>(
        &mut self,
        s: usize,
        f: impl FnOnce(&mut Ctx<'_, FuzzMachine>) -> R,
    ) -> Result<R, String> {
        self.entries += 1;
        // The pool: the grant-table frames no table holds, for a table to grow into
        // (`setup_table`, `set_version(2)`); nothing else.
        let mut pool = Sink(self.free_grant_frames());
        let (me, events, grants, others) = self
            .set
            .split(s)
            .ok_or_else(|| format!("no domain in slot {s}"))?;
        let id = me.dom.id;
        // The table the CPU runs on at entry; `write_ptbase` moves the watch when the hypercall
        // switches CR3.
        let entered_on = me.dom.current_l4();
        self.m.mem.watch = Some(entered_on);
        self.m.mem.hit = None;
        // The running vCPU's registers, out of the domain while the hypercall borrows it.
        let mut regs = me.dom.vcpu().regs;
        let r = {
            let mut ctx = Ctx {
                m: &mut self.m,
                info: &self.info,
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
            crate::hypercall::testing::settle(&mut ctx);
            r
        };
        me.dom.vcpu_mut().regs = regs;
        let live = self.m.mem.watch.take().unwrap_or(entered_on);
        if self.checks.live_cr3 {
            if let Some(hit) = self.m.mem.hit.take() {
                return Err(format!("live CR3: d{id}: {hit}"));
            }
            let f = self
                .m
                .mm
                .frames
                .get(live)
                .copied()
                .unwrap_or(FrameInfo::FREE);
            let ok = f.page_type() == PageType::L4
                && f.validated()
                && f.type_count() > 0
                && f.owner() == Owner::Domain(id);
            if !ok {
                return Err(format!(
                    "live CR3: d{id} runs on {live:?} at the end of the entry, but it is now {f:?}"
                ));
            }
        }
        // The exit path (`perform_flushes`): the CR3 load takes effect; afterwards the CPU must
        // run on the table the domain's state names.
        let g = self
            .set
            .guest_mut(s)
            .ok_or_else(|| format!("the domain of slot {s} vanished"))?;
        let req = g.dom.vcpu_mut().flush.take();
        let now = req.new_cr3.unwrap_or(live);
        if g.dom.shutdown.is_none() && now != g.dom.current_l4() {
            return Err(format!(
                "after the exit path d{id} runs on {now:?}, but its current table is {:?}",
                g.dom.current_l4()
            ));
        }
        Ok(r)
    }

    /// Dom0 destroys the domain in slot `s` (`XEN_DOMCTL_destroydomain` marks it) and the
    /// lifecycle tears it down (`domain::lifecycle::destroy`): grants, event channels, memory.
    /// Returns whether there was one to destroy.
    pub fn teardown(&mut self, s: usize) -> Result<bool, String> {
        let Some(id) = self.ids[s] else {
            return Ok(false);
        };
        let Some((g, ports, grants, mut others)) = self.set.split(s) else {
            return Ok(false);
        };
        let mm = &mut self.m.mm;
        let mem = &mut self.m.mem;
        // The mappers' TLB flushes it asks for change no state here.
        let _ = crate::gnttab::hypercall::domain_dying(mm, mem, &mut g.dom, grants, &mut others);
        crate::evtchn::hypercall::close_all(mem, &g.dom, ports, &mut others);
        for f in ports.take_pages() {
            self.m.pages.give_back(f);
        }
        if !self.checks.gdt_teardown {
            // Drop the GDT's references as a fixed `relinquish_domain` does (then there are none
            // left for it to drop, whichever version runs).
            let frames = core::mem::take(&mut g.dom.vcpu_mut().gdt_frames);
            g.dom.vcpu_mut().gdt_ents = 0;
            let caller = g.dom.info();
            let vcpu = g.dom.vcpu_mut();
            let mut pt = Pt {
                mm,
                mem,
                perf: &mut vcpu.perf,
                flush: &mut vcpu.flush,
                caller,
            };
            for f in frames {
                pt.put_page_and_type(f);
            }
        }
        mm.relinquish_domain(mem, &mut g.dom);
        let grant_frames: Vec<Mfn> = grants.frames().to_vec();
        // As `domain::lifecycle::reap`: the grant table's own frames are the hypervisor's until
        // the domain is gone.
        for f in &grant_frames {
            mm.release_xen(crate::domain::pool::one(*f));
        }
        self.set.remove(s);
        self.ids[s] = None;
        self.dead.push((id, s));
        // Every frame of the dead domain is back, unless another domain still maps it.
        for m in (dom_base(s)..dom_base(s) + DOM_FRAMES)
            .chain([shared_info(s).0])
            .chain(grant_frames.iter().map(|f| f.0))
        {
            let f = self
                .m
                .mm
                .frames
                .get(Mfn(m))
                .copied()
                .unwrap_or(FrameInfo::FREE);
            if f.owner() != Owner::Free && f.owner() != Owner::Domain(id) {
                return Err(format!("d{id} destroyed: its {:?} is now {f:?}", Mfn(m)));
            }
        }
        Ok(true)
    }

    /// Every domain's table is gone and every frame is back: the last check of a sequence.
    pub fn teardown_all(&mut self) -> Result<(), String> {
        for s in (0..SLOTS).rev() {
            if self.ids[s].is_some() {
                self.teardown(s)?;
            }
        }
        for (mfn, f) in self.m.mm.frames.iter() {
            let ok = match mfn.0 {
                0..4 => (f.owner(), f.count(), f.type_count()) == (Owner::Io, 1, 1),
                4..8 => (f.owner(), f.count(), f.type_count()) == (Owner::Xen, 0, 0),
                _ => f.without_given() == FrameInfo::FREE,
            };
            if !ok {
                return Err(format!(
                    "after every domain was destroyed, {mfn:?} is {f:?}"
                ));
            }
        }
        audit_with_foreign(&self.m.mm, &self.m.mem, &[], &ForeignRefs::default())
            .map_err(|e| format!("audit after teardown: {e}"))
    }

    /// The invariants that hold between any two steps: the frame table's full recount (grant
    /// mappings and GDTs included), each domain's frames where they belong, and event channels
    /// whose two ends agree.
    pub fn check(&self) -> Result<(), String> {
        let doms: Vec<&Domain> = self.live().map(|s| &self.guest(s).unwrap().dom).collect();
        let mut foreign = ForeignRefs {
            ptes: self.foreign_ptes.clone(),
            device: Vec::new(),
        };
        foreign.add_grants(&self.m.mem, self.live().map(|s| &self.set.grants[s]));
        audit_with_foreign(&self.m.mm, &self.m.mem, &doms, &foreign)
            .map_err(|e| format!("frame table: {e}"))?;
        self.check_owners()?;
        self.check_channels()
    }

    /// A domain owns only frames it was built with: its slot's memory, shared_info and grant
    /// frames. A destroyed domain keeps only frames something still references.
    fn check_owners(&self) -> Result<(), String> {
        let slot_of = |id: DomainId| {
            (0..SLOTS)
                .find(|&s| self.ids[s] == Some(id))
                .map(|s| (s, true))
                .or_else(|| self.dead.iter().find(|d| d.0 == id).map(|d| (d.1, false)))
        };
        for (mfn, f) in self.m.mm.frames.iter() {
            let Owner::Domain(id) = f.owner() else {
                continue;
            };
            let Some((s, alive)) = slot_of(id) else {
                return Err(format!(
                    "{mfn:?} is owned by d{id}, which never existed: {f:?}"
                ));
            };
            let m = mfn.0;
            let home = (dom_base(s)..dom_base(s) + DOM_FRAMES).contains(&m)
                || mfn == shared_info(s)
                || (0..SLOTS)
                    .any(|k| (0..u64::from(TABLE_FRAMES)).any(|i| grant_frame(k, i) == mfn));
            if !home {
                return Err(format!("{mfn:?} belongs to d{id} of slot {s}: {f:?}"));
            }
            if !alive && f.count() == 0 {
                return Err(format!("{mfn:?} of dead d{id} is unreferenced: {f:?}"));
            }
        }
        Ok(())
    }

    /// Interdomain channels point at a live domain whose port points back.
    fn check_channels(&self) -> Result<(), String> {
        for s in self.live() {
            let id = self.ids[s].unwrap_or(DOMID_SELF);
            let ports = self.set.ports(s);
            for port in 0..ports.valid_ports() {
                let Some(c) = ports.channel(port) else {
                    continue;
                };
                if let ChannelState::Interdomain {
                    remote_dom,
                    remote_port,
                } = c.state
                {
                    let peer = self
                        .set
                        .slot_of(remote_dom)
                        .and_then(|r| self.set.ports(r).channel(remote_port))
                        .map(|c| c.state);
                    let back = ChannelState::Interdomain {
                        remote_dom: id,
                        remote_port: port,
                    };
                    if peer != Some(back) {
                        return Err(format!(
                            "event channel d{id}:{port} -> d{remote_dom}:{remote_port}, \
                             whose end is {peer:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A one-line picture of the domains, for failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in 0..SLOTS {
            match self.guest(s) {
                Some(g) => {
                    let _ = write!(
                        out,
                        "slot {s}: d{} l4={:?} user_l4={:?}{}; ",
                        g.dom.id,
                        g.dom.vcpu().l4,
                        g.dom.vcpu().user_l4,
                        if g.dom.shutdown.is_some() {
                            " (shut down)"
                        } else {
                            ""
                        }
                    );
                }
                None => {
                    let _ = write!(out, "slot {s}: empty; ");
                }
            }
        }
        out
    }
}

/// The pool a hypercall sees in the world: it hands out only the grant-table frames no table
/// holds (single frames, for a table to grow into; any slot's, as the arch layer's pool hands
/// out any free frame), and a frame given back stays free in the frame table without being
/// handed out again. Every other frame keeps its home slot (`check_owners`): a frame of a dead
/// domain that a call released (its last reference gone) and then handed to another domain in
/// the same call would be legitimate, but would make the slot's next domain find part of its
/// memory taken.
struct Sink(Vec<Mfn>);

impl crate::mm::frame_alloc::FramePool for Sink {
    fn take(
        &mut self,
        _mem: &mut dyn crate::mm::MachineMemoryMut,
        order: u32,
        _limit: Option<Mfn>,
    ) -> Option<Mfn> {
        if order == 0 {
            self.0.pop()
        } else {
            None
        }
    }

    fn give_back(&mut self, _mem: &mut dyn crate::mm::MachineMemoryMut, _mfn: Mfn) {}

    fn free_frames(&self) -> u64 {
        self.0.len() as u64
    }
}
