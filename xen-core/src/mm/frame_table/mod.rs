//! The frame table: who owns each machine frame, who uses it, and as what.
//!
//! This is Xen's `struct page_info` array (`xen/arch/x86/include/asm/mm.h`) and the reference
//! counting of `xen/arch/x86/mm.c`, reduced to what a 64-bit PV hypervisor needs and written as
//! plain, host-tested Rust. Per machine frame it keeps:
//!
//! - an **owner**: a domain, the hypervisor (`DOMID_XEN`), I/O memory (`DOMID_IO`) or nobody;
//! - a **general reference count** (`count_info & PGC_count_mask`): every mapping, every table
//!   entry, every pin and every CR3 that uses the frame, plus one for the allocation itself
//!   (`PGC_allocated`), so a frame in use is never freed;
//! - a **type** with its own **type count** (`type_info`): none, L1..L4 page table, segment
//!   descriptor page, or writable page, and the `validated` and `pinned` flags.
//!
//! The invariants are Xen's and every path keeps them:
//!
//! 1. the types are mutually exclusive, and a type changes only while its type count is zero
//!    (`_get_page_type`): so a frame typed as a page table is never mapped writable anywhere,
//!    and a frame mapped writable is never used as a page table;
//! 2. a page table is validated (every entry checked, and a reference taken on everything it
//!    maps) when its type count goes from 0 to 1, and devalidated (those references dropped)
//!    when it returns to 0;
//! 3. a guest maps only frames it owns; a privileged domain (dom0) may also map I/O frames:
//!    frames beyond RAM, and RAM-range frames given to `DOMID_IO`.
//!
//! Storage is a slice the caller provides, one 16-byte [`FrameInfo`] per frame below
//! `max_ram_page`: the arch layer carves it out of hypervisor memory, host tests use a vector.
//! Validation reads and writes guest page tables through [`MachineMemoryMut`].
//!
//! Linear page tables are Xen's (`get_lN_linear_pagetable`, on by default in 4.17): an L2, L3 or
//! L4 entry may point read-only at a validated table of its own level. A table mapping itself
//! takes no reference; one mapping another holds a general and a type reference on it, and the
//! frame's `linear_pt_count` keeps a table from both holding such entries and being the target
//! of one (`inc_linear_entries`, `inc_linear_uses`).
//!
//! What is left out of Xen: preemption of long validations (ours run to completion), shadow and
//! translated (HVM) guests, grant mappings, superpages, and cache-attribute bookkeeping of the
//! hypervisor's own direct map.

pub mod pte;
mod seed;
mod segdesc;
mod validate;

#[cfg(test)]
pub(crate) mod audit;
#[cfg(test)]
mod negative_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use core::fmt;

use hypercall_abi::xen::{DOMID_INVALID, DOMID_IO, DOMID_XEN};

use crate::domain::{DomainId, DomainInfo, PerfCounters};
use crate::mm::frame_alloc::FrameRange;
use crate::mm::PtLevel;
use crate::mm::{Maddr, Mfn};

pub use seed::{Removed, SeedError};

/// An M2P entry for a frame no domain owns (`INVALID_M2P_ENTRY`).
pub const INVALID_M2P_ENTRY: u64 = u64::MAX;
pub use segdesc::check_descriptor;
pub use validate::Pt;

/// Most domains the frame table tracks at once (and the hypervisor runs at once:
/// `crate::domain::set::MAX_DOMAINS` is this value). At most 128: the domain set keeps its
/// occupied slots in a 128-bit mask.
pub const MAX_DOMAINS: usize = 80;
/// Most I/O ranges that can be withheld from privileged domains.
pub const MAX_IO_DENIED: usize = 8;
/// First L4 slot Xen reserves for itself in every 64-bit PV L4 (`ROOT_PAGETABLE_FIRST_XEN_SLOT`).
pub const FIRST_XEN_SLOT: usize = 256;
/// Number of reserved L4 slots: 256..272 (`ROOT_PAGETABLE_LAST_XEN_SLOT` is 271).
pub const XEN_SLOTS: usize = 16;
/// The MSI address window, `MSI_ADDR_BASE_LO` (0xfee00000) up to `MSI_ADDR_BASE_LO +
/// MSI_ADDR_DEST_ID_MASK`: a write there is an interrupt message, so Xen withholds the whole
/// window from the hardware domain whatever the machine (`dom0_setup_permissions`,
/// `xen/arch/x86/dom0_build.c`, "MSI range"). It contains the local APIC's default page.
pub const MSI_WINDOW: FrameRange = FrameRange {
    start: Mfn(0xfee00),
    end: Mfn(0xfef00),
};

/// `is_guest_l4_slot` for a 64-bit PV guest: every slot but Xen's.
pub const fn is_guest_l4_slot(slot: usize) -> bool {
    slot < FIRST_XEN_SLOT || slot >= FIRST_XEN_SLOT + XEN_SLOTS
}

/// What a frame is used as (`PGT_*`, `type_info & PGT_type_mask`). The discriminants are Xen's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PageType {
    /// No special use (`PGT_none`).
    None = 0,
    /// A level-1 page table (`PGT_l1_page_table`).
    L1 = 1,
    /// A level-2 page table.
    L2 = 2,
    /// A level-3 page table.
    L3 = 3,
    /// A level-4 (root) page table.
    L4 = 4,
    /// A GDT or LDT page (`PGT_seg_desc_page`).
    SegDesc = 5,
    /// Mapped writable somewhere (`PGT_writable_page`).
    Writable = 7,
}

impl PageType {
    /// Whether the type is one of the page-table levels.
    pub const fn is_page_table(self) -> bool {
        matches!(
            self,
            PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4
        )
    }

    /// The page-table type of a level.
    pub const fn of_level(level: PtLevel) -> PageType {
        match level {
            PtLevel::L1 => PageType::L1,
            PtLevel::L2 => PageType::L2,
            PtLevel::L3 => PageType::L3,
            PtLevel::L4 => PageType::L4,
        }
    }

    /// The type the entries of a table of this type refer to (`L2 -> L1`, ...), if it is an
    /// upper-level table.
    pub const fn child(self) -> Option<PageType> {
        match self {
            PageType::L2 => Some(PageType::L1),
            PageType::L3 => Some(PageType::L2),
            PageType::L4 => Some(PageType::L3),
            _ => None,
        }
    }

    const fn from_bits(b: u8) -> PageType {
        match b {
            1 => PageType::L1,
            2 => PageType::L2,
            3 => PageType::L3,
            4 => PageType::L4,
            5 => PageType::SegDesc,
            7 => PageType::Writable,
            _ => PageType::None,
        }
    }
}

/// Who a frame belongs to (`page_get_owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Nobody: the frame is free (or not RAM the frame table manages).
    Free,
    /// The hypervisor itself (`dom_xen`): its image, heap, frame table, M2P.
    Xen,
    /// I/O memory inside the RAM range (`dom_io`): e820 holes, the first MiB. Privileged domains
    /// may map it; it is never reference counted.
    Io,
    /// A domain.
    Domain(DomainId),
}

impl Owner {
    const fn to_bits(self) -> u16 {
        match self {
            Owner::Free => DOMID_INVALID,
            Owner::Xen => DOMID_XEN,
            Owner::Io => DOMID_IO,
            Owner::Domain(id) => id,
        }
    }

    const fn from_bits(b: u16) -> Owner {
        match b {
            DOMID_INVALID => Owner::Free,
            DOMID_XEN => Owner::Xen,
            DOMID_IO => Owner::Io,
            id => Owner::Domain(id),
        }
    }
}

/// Flag bits of [`FrameInfo`].
mod flag {
    /// The frame holds a valid instance of its type (`PGT_validated`).
    pub const VALIDATED: u8 = 1 << 0;
    /// The owner pinned the frame to its type (`PGT_pinned`); the pin holds one general and one
    /// type reference.
    pub const PINNED: u8 = 1 << 1;
    /// The frame is allocated to its owner (`PGC_allocated`), which holds one general reference.
    pub const ALLOCATED: u8 = 1 << 2;
    /// A hypervisor page shared with its owner (`PGC_xen_heap`): shared_info, and `DOMID_IO`
    /// frames. The share holds one type reference as well.
    pub const XEN_HEAP: u8 = 1 << 3;
}

/// One frame's entry: 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct FrameInfo {
    count: u32,
    type_count: u32,
    owner: u16,
    ty: u8,
    flags: u8,
    /// `linear_pt_count`: for a validated table, how many linear entries to other tables it
    /// holds (positive) or how many such entries point at it (negative); never both.
    linear: i16,
    /// The domain the free pool gave this frame to (`DOMID_INVALID`: none): set when the frame
    /// is assigned to a domain, kept when the frame table frees it, cleared only when the frame
    /// goes back to the pool. A free frame that still names a domain is *loose*: its last
    /// reference went (a domain's teardown, or a page it gave up with
    /// `XENMEM_decrease_reservation` while something still referenced it) and the pool has not
    /// taken it back yet (`mm::memory::reclaim`). This is how every frame stays accounted for
    /// without a per-domain page list.
    given: u16,
}

const _: () = assert!(core::mem::size_of::<FrameInfo>() == 16);

impl FrameInfo {
    /// A free frame: no owner, no references, no type.
    pub const FREE: FrameInfo = FrameInfo {
        count: 0,
        type_count: 0,
        owner: DOMID_INVALID,
        ty: PageType::None as u8,
        flags: 0,
        linear: 0,
        given: DOMID_INVALID,
    };

    /// The owner.
    pub const fn owner(&self) -> Owner {
        Owner::from_bits(self.owner)
    }

    /// General reference count, the allocation's reference included.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The current type.
    pub const fn page_type(&self) -> PageType {
        PageType::from_bits(self.ty)
    }

    /// Uses of the frame as its current type.
    pub const fn type_count(&self) -> u32 {
        self.type_count
    }

    /// `linear_pt_count`: linear entries held (positive) or pointing here (negative).
    pub const fn linear_pt_count(&self) -> i16 {
        self.linear
    }

    /// Whether the frame is a valid instance of its type.
    pub const fn validated(&self) -> bool {
        self.flags & flag::VALIDATED != 0
    }

    /// Whether the owner pinned the frame to its type.
    pub const fn pinned(&self) -> bool {
        self.flags & flag::PINNED != 0
    }

    /// Whether the frame is allocated to its owner (which then holds one general reference).
    pub const fn allocated(&self) -> bool {
        self.flags & flag::ALLOCATED != 0
    }

    /// Whether this is a hypervisor page shared with its owner.
    pub const fn xen_heap(&self) -> bool {
        self.flags & flag::XEN_HEAP != 0
    }

    /// The domain the free pool gave the frame to, until the pool takes it back.
    pub const fn given_to(&self) -> Option<DomainId> {
        if self.given == DOMID_INVALID {
            None
        } else {
            Some(self.given)
        }
    }

    /// Whether the frame is loose: free in the frame table, but not back in the pool yet.
    pub const fn loose(&self) -> bool {
        self.owner == DOMID_INVALID && self.given != DOMID_INVALID
    }

    /// The entry without its pool mark: what the frame's use looks like.
    pub const fn without_given(&self) -> FrameInfo {
        FrameInfo {
            given: DOMID_INVALID,
            ..*self
        }
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    fn set_type(&mut self, ty: PageType) {
        self.ty = ty as u8;
    }
}

impl Default for FrameInfo {
    fn default() -> Self {
        FrameInfo::FREE
    }
}

impl fmt::Debug for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} count={} {:?}x{}{}{}{}{}",
            self.owner(),
            self.count,
            self.page_type(),
            self.type_count,
            if self.validated() { " validated" } else { "" },
            if self.pinned() { " pinned" } else { "" },
            if self.allocated() { " allocated" } else { "" },
            if self.xen_heap() { " xen_heap" } else { "" },
        )?;
        if self.linear != 0 {
            write!(f, " linear={}", self.linear)?;
        }
        if let Some(d) = self.given_to() {
            write!(f, " given=d{d}")?;
        }
        Ok(())
    }
}

/// The per-frame array and the general reference counting (`get_page`, `put_page`). Type
/// references need page-table validation and live on [`Pt`].
pub struct FrameTable<'t> {
    frames: &'t mut [FrameInfo],
    /// Frames that became loose (their last reference went while the pool's mark was on them),
    /// in that order, so that taking them back costs what there is to take, not a walk of the
    /// whole table ([`FrameTable::take_loose_queue`]).
    loose: heapless::Deque<Mfn, LOOSE_QUEUE>,
    /// More frames became loose than [`LOOSE_QUEUE`] remembers: the next reclaim walks the table.
    loose_overflow: bool,
    /// How many times a frame was freed (its last general reference went), ever: a change
    /// tells a dead domain's reaper that its frames may all be free now.
    frees: u64,
}

/// Loose frames remembered one by one before a reclaim falls back to walking the frame table:
/// that walk is then paid for by at least this many frees.
pub const LOOSE_QUEUE: usize = 512;

impl<'t> FrameTable<'t> {
    /// A frame table over `storage`, one entry per frame from 0 up to `max_ram_page`; every entry
    /// starts free.
    pub fn new(storage: &'t mut [FrameInfo]) -> Self {
        storage.fill(FrameInfo::FREE);
        FrameTable {
            frames: storage,
            loose: heapless::Deque::new(),
            loose_overflow: false,
            frees: 0,
        }
    }

    /// How many frees there were so far (see the field).
    pub fn frees(&self) -> u64 {
        self.frees
    }

    /// Whether frames may have become loose since the last [`FrameTable::take_loose_queue`].
    pub fn loose_pending(&self) -> bool {
        self.loose_overflow || !self.loose.is_empty()
    }

    /// The frames that became loose since the last call, oldest first (each may have been taken
    /// back since: check [`FrameInfo::loose`]), or `None` if more became loose than the queue
    /// holds and the whole table must be looked at. Empties the queue either way.
    pub fn take_loose_queue(&mut self) -> Option<heapless::Deque<Mfn, LOOSE_QUEUE>> {
        let queue = core::mem::take(&mut self.loose);
        if core::mem::take(&mut self.loose_overflow) {
            None
        } else {
            Some(queue)
        }
    }

    /// One past the last frame the table covers (`max_page`).
    pub fn max_ram_page(&self) -> u64 {
        self.frames.len() as u64
    }

    /// `mfn_valid`: the frame is covered by the table.
    #[inline]
    pub fn mfn_valid(&self, mfn: Mfn) -> bool {
        mfn.0 < self.max_ram_page()
    }

    /// The entry of `mfn`, if the table covers it.
    #[inline]
    pub fn get(&self, mfn: Mfn) -> Option<&FrameInfo> {
        self.frames.get(usize::try_from(mfn.0).ok()?)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, mfn: Mfn) -> Option<&mut FrameInfo> {
        self.frames.get_mut(usize::try_from(mfn.0).ok()?)
    }

    /// Every frame with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (Mfn, &FrameInfo)> + '_ {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (Mfn(i as u64), f))
    }

    /// `page_get_owner_and_reference`: takes a general reference and returns the owner, unless
    /// the frame is not allocated (count 0) or the count would overflow.
    #[inline(always)]
    pub fn get_owner_and_reference(&mut self, mfn: Mfn, perf: &mut PerfCounters) -> Option<Owner> {
        let f = self.get_mut(mfn)?;
        // Xen refuses counts 0 (not allocated), -1 and -2 (the last reserved for get_page_light).
        if f.count == 0 || f.count >= u32::MAX - 1 {
            return None;
        }
        f.count += 1;
        perf.ref_ops += 1;
        Some(f.owner())
    }

    /// `get_page`: takes a general reference if `owner` owns the frame.
    #[inline]
    pub fn get_page(&mut self, mfn: Mfn, owner: Owner, perf: &mut PerfCounters) -> bool {
        match self.get_owner_and_reference(mfn, perf) {
            Some(o) if o == owner => true,
            Some(_) => {
                // Not the owner's: the frame was allocated, so this is not the last reference.
                let _ = self.put_page(mfn, perf);
                false
            }
            None => false,
        }
    }

    /// [`FrameTable::get_page`] that also returns the frame's entry as it is with the reference
    /// taken: one look-up for what a page-table update asks of the table it writes.
    #[inline]
    pub fn get_page_info(
        &mut self,
        mfn: Mfn,
        owner: Owner,
        perf: &mut PerfCounters,
    ) -> Option<FrameInfo> {
        let f = self.get_mut(mfn)?;
        if f.count == 0 || f.count >= u32::MAX - 1 {
            return None;
        }
        if f.owner() != owner {
            // `get_page` takes the reference and gives it back (not the last one: the frame is
            // allocated): two reference operations, no change.
            perf.ref_ops += 2;
            return None;
        }
        f.count += 1;
        perf.ref_ops += 1;
        Some(*f)
    }

    /// `put_page`: drops a general reference; the last one frees the frame (`free_domheap_page`):
    /// it loses its owner and type. Returns whether it did.
    #[inline]
    pub fn put_page(&mut self, mfn: Mfn, perf: &mut PerfCounters) -> bool {
        let Some(f) = self.get_mut(mfn) else {
            debug_assert!(false, "put_page on {mfn:?} beyond the frame table");
            return false;
        };
        debug_assert!(f.count > 0, "put_page on {mfn:?} with no reference");
        f.count = f.count.saturating_sub(1);
        perf.ref_ops += 1;
        if f.count == 0 {
            debug_assert_eq!(f.type_count, 0, "{mfn:?} freed with a type reference");
            // The pool's mark stays: the frame is loose until the pool takes it back.
            let given = f.given;
            *f = FrameInfo::FREE;
            f.given = given;
            self.frees = self.frees.wrapping_add(1);
            if given != DOMID_INVALID && self.loose.push_back(mfn).is_err() {
                self.loose_overflow = true;
            }
            return true;
        }
        false
    }

    /// `is_iomem_page`: beyond RAM, or I/O memory inside it. Never reference counted.
    #[inline]
    pub fn is_iomem_page(&self, mfn: Mfn) -> bool {
        self.get(mfn).is_none_or(|f| f.owner() == Owner::Io)
    }
}

/// Machine-wide settings the arch layer gives the memory-management code.
#[derive(Clone, Copy, Debug)]
pub struct MmConfig {
    /// Machine address of the M2P table (Xen's `machine_to_phys_mapping`): one u64 per frame
    /// below `max_ram_page`, written by `MMU_MACHPHYS_UPDATE`.
    pub m2p: Maddr,
    /// The hypervisor's entries for L4 slots 256..272, written into every L4 when it is
    /// validated (`init_xen_l4_slots`) and copied by the domain builder.
    pub xen_l4_slots: [u64; XEN_SLOTS],
    /// One past the last frame of I/O memory a privileged domain may map (Xen permits dom0
    /// `0 .. 2^paddr_bits`): `1 << (paddr_bits - 12)`.
    pub io_limit: Mfn,
}

/// The machine-wide memory-management state: the frame table, the settings, the domains the
/// table knows, and the I/O ranges withheld from every domain.
pub struct Mm<'t> {
    /// The frame table.
    pub frames: FrameTable<'t>,
    /// The settings.
    pub cfg: MmConfig,
    io_denied: heapless::Vec<FrameRange, MAX_IO_DENIED>,
    mmio_ro: heapless::Vec<FrameRange, MAX_IO_DENIED>,
    domains: heapless::Vec<DomainInfo, MAX_DOMAINS>,
    /// Moves on whenever a guest-slot entry of a validated L4 may change: an L4 validated (its
    /// entries then whatever the frame held), an entry rewritten (`mod_upper_entry`). Nothing
    /// else changes one (a validated L4 is never writable), so an answer about an L4's entries
    /// read under one value holds while the value stays ([`crate::mm::SlotMemo`]).
    l4_changes: u64,
    /// One bit per domain id: set once a global entry (`_PAGE_GLOBAL`, which
    /// `adjust_guest_l1e` puts on every true user mapping, and which a guest may set on any L1
    /// entry) was written into an L1 table the domain owns; never cleared (a reused id only
    /// costs flushes). While a domain's bit is clear its tables hold no global entry, so the
    /// TLB holds none of its translations once a CR3 write dropped the non-global ones: a
    /// switch away from it need not flush global entries ([`Mm::may_hold_global`]).
    globals: [u64; GLOBAL_WORDS],
}

/// Words of [`Mm`]'s `globals`: one bit for every domain id below `DOMID_FIRST_RESERVED`
/// (0x7FF0), rounded up.
const GLOBAL_WORDS: usize = 0x8000 / 64;

impl<'t> Mm<'t> {
    /// Records that L1 entry `e`, written into a table `owner` owns, may be cached as a global
    /// TLB entry (see the field `globals`). Every write of a guest L1 entry goes through here:
    /// validation of a new L1 (`promote_l1_entry`), `mod_l1_entry`, grant host mappings; the
    /// frame-table audit checks that no validated L1 holds a global entry its owner's bit does
    /// not cover.
    #[inline(always)]
    pub(crate) fn note_l1e(&mut self, owner: DomainId, e: u64) {
        // One test in line on every L1 write (the PTE path); the mark out of line.
        if e & pte::GLOBAL != 0 {
            self.note_global(owner);
        }
    }

    #[cold]
    #[inline(never)]
    fn note_global(&mut self, owner: DomainId) {
        let i = usize::from(owner);
        if let Some(w) = self.globals.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Whether `owner`'s tables may hold a global entry, i.e. whether the TLB may keep
    /// translations of its address space across a CR3 write (true for an id beyond the table:
    /// never a table's owner).
    #[inline]
    pub fn may_hold_global(&self, owner: DomainId) -> bool {
        let i = usize::from(owner);
        self.globals
            .get(i / 64)
            .is_none_or(|w| w & (1 << (i % 64)) != 0)
    }

    /// See the field `l4_changes`.
    #[inline]
    pub fn l4_changes(&self) -> u64 {
        self.l4_changes
    }

    /// Some validated L4's guest entries may be about to change (see `l4_changes`).
    #[inline]
    pub(crate) fn l4_changed(&mut self) {
        self.l4_changes = self.l4_changes.wrapping_add(1);
    }

    /// The state over frame-table storage `storage` (one entry per frame below `max_ram_page`,
    /// all reset to free). The [`MSI_WINDOW`] is withheld from the start.
    pub fn new(storage: &'t mut [FrameInfo], cfg: MmConfig) -> Self {
        let mut io_denied = heapless::Vec::new();
        let _ = io_denied.push(MSI_WINDOW);
        Mm {
            frames: FrameTable::new(storage),
            cfg,
            io_denied,
            mmio_ro: heapless::Vec::new(),
            domains: heapless::Vec::new(),
            l4_changes: 0,
            globals: [0; GLOBAL_WORDS],
        }
    }

    /// Withholds I/O frames `range` from every domain (`iomem_deny_access`): the hypervisor's own
    /// devices (local APIC, I/O APICs, HPET, the MSI window).
    pub fn deny_io(&mut self, range: FrameRange) -> Result<(), SeedError> {
        self.io_denied
            .push(range)
            .map_err(|_| SeedError::TooManyIoRanges)
    }

    /// Lets I/O frames `range` be mapped read-only only (`mmio_ro_ranges`): a writable mapping a
    /// privileged domain asks for is made read-only instead of refused. Xen puts there the I/O
    /// APICs it leaves dom0 (`dom0_setup_permissions`) and the HPET (`ro_hpet`).
    pub fn mark_mmio_ro(&mut self, range: FrameRange) -> Result<(), SeedError> {
        self.mmio_ro
            .push(range)
            .map_err(|_| SeedError::TooManyIoRanges)
    }

    /// `rangeset_contains_singleton(mmio_ro_ranges, mfn)`.
    pub fn is_mmio_ro(&self, mfn: Mfn) -> bool {
        self.mmio_ro
            .iter()
            .any(|r| (r.start.0..r.end.0).contains(&mfn.0))
    }

    /// `iomem_access_permitted(d, mfn, mfn)`: whether domain `d` may map I/O frame `mfn`.
    pub fn iomem_access_permitted(&self, d: Owner, mfn: Mfn) -> bool {
        self.is_privileged(d)
            && mfn < self.cfg.io_limit
            && !self
                .io_denied
                .iter()
                .any(|r| (r.start.0..r.end.0).contains(&mfn.0))
    }

    /// Registers a domain (at creation, before its frames are assigned).
    pub fn add_domain(&mut self, info: DomainInfo) -> Result<(), SeedError> {
        if info.id >= hypercall_abi::xen::DOMID_FIRST_RESERVED {
            return Err(SeedError::BadDomainId { id: info.id });
        }
        if self.domain(info.id).is_some() {
            return Err(SeedError::DomainExists { id: info.id });
        }
        self.domains
            .push(info)
            .map_err(|_| SeedError::TooManyDomains)
    }

    /// Forgets a domain (after [`Mm::relinquish_domain`]).
    pub fn remove_domain(&mut self, id: DomainId) {
        self.domains.retain(|d| d.id != id);
    }

    /// The registered domain `id` (`rcu_lock_domain_by_id`).
    pub fn domain(&self, id: DomainId) -> Option<DomainInfo> {
        self.domains.iter().copied().find(|d| d.id == id)
    }

    /// The domains the table knows.
    pub fn domains(&self) -> impl Iterator<Item = DomainInfo> + '_ {
        self.domains.iter().copied()
    }

    /// Sets or clears a frame's pinned flag; the pin's references are the caller's to take and
    /// drop.
    pub(crate) fn set_pinned(&mut self, mfn: Mfn, on: bool) {
        if let Some(f) = self.frames.get_mut(mfn) {
            f.set(flag::PINNED, on);
        }
    }

    /// Whether `o` is a privileged domain (`is_control_domain`, and dom0's full `iomem_caps`).
    pub fn is_privileged(&self, o: Owner) -> bool {
        match o {
            Owner::Domain(id) => self.domain(id).is_some_and(|d| d.privileged),
            _ => false,
        }
    }
}
