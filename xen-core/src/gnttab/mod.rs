//! Grant tables, version 1: per-domain grant state and the `GNTTABOP_*` operations of Xen 4.17's
//! `xen/common/grant_table.c` (with `xen/arch/x86/pv/grant_table.c` for the PTEs), for 64-bit PV
//! guests, as plain Rust over state passed in.
//!
//! Each domain has a [`GrantTable`]:
//!
//! - the **shared entries** (`grant_entry_v1_t`, 512 per frame) live in hypervisor frames shared
//!   writable with the domain (`share_xen_page_with_guest`), which the guest maps with
//!   `mmu_update` after `GNTTABOP_setup_table` told it their MFNs. The arch layer hands the table
//!   [`MAX_GRANT_FRAMES`] such frames when it builds the domain ([`GrantTable::init`]); one is
//!   shared at once (Xen's `INITIAL_NR_GRANT_FRAMES`), the others when `setup_table` grows the
//!   table;
//! - the **active entries** (Xen's `struct active_grant_entry`): one per reference of the table,
//!   as on Xen (`_active_entry(t, e)` indexes `t->active` by the reference): the pin counts (host
//!   and device, read-only and writable), the domain it is pinned for and the frame. They live in
//!   hypervisor frames that no guest can map ([`ACGNT_PER_PAGE`] entries of 16 bytes per frame,
//!   `num_act_frames_from_sha_frames`), which [`GrantTable::init`] takes with the shared ones.
//!   So a reference can always be pinned by the domain it is granted to: what other mappers
//!   pinned costs it nothing, and the only bound is the granter's own table size;
//! - the **maptrack** table: the domain's own mappings of other domains' grants, indexed by the
//!   handle `map_grant_ref` returns, up to [`MAX_MAPTRACK`] at once (Xen: 1024 frames of 256).
//!   It is the only per-mapper resource: a mapper that fills it gets `GNTST_no_space` (Xen 4.17's
//!   answer when `get_maptrack_handle` fails, seen by the differential case
//!   `grant.maptrack_exhausted`) and hurts nobody else; a reference's pin counter refuses its
//!   129th pin of a kind (`GNTST_general_error`, Xen's "risk of counter overflow" check).
//!
//! Reference counting follows Xen for PV guests: a host mapping takes a general reference on the
//! granted frame (and a writable type reference when writable) and those references belong to
//! the PTE it installs, exactly the references `get_page_from_l1e` would take for that PTE. So a
//! grant PTE the guest removes or replaces itself (`mmu_update`, `update_va_mapping`, or
//! devalidating the L1) drops them through the ordinary `put_page_from_l1e` and nothing
//! underflows: Xen release builds do the same (`_PAGE_GNTTAB` is 0, so no "implicit unmap"
//! crash). The maptrack entry then outlives its PTE: `unmap_grant_ref` answers
//! `GNTST_general_error` (the PTE no longer maps the frame) and keeps the handle, and the pins
//! stay until the mapper dies, as on Xen. Device mappings hold their references in the maptrack
//! entry.
//!
//! What is left out, each answered as documented: grant table version 2 (`set_version(2)` answers
//! -ENOSYS with version 1, which is Xen's answer when booted with `gnttab=max-ver:1`), transitive
//! and sub-page grants (v2 only), `GNTTABOP_transfer`, `unmap_and_replace`, `cache_flush` and
//! `dump_table` (-ENOSYS), IOMMU mappings, and I/O-memory grants (a PV granter can only grant
//! frames it owns, so they never arise).

pub mod hypercall;

use hypercall_abi::grant_table::{
    _GNTMAP_guest_avail0, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_application_map,
    GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg,
    GNTST_bad_dev_addr, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page,
    GNTST_general_error, GNTST_no_space, GNTST_okay, GNTST_permission_denied, GTF_permit_access,
    GTF_reading, GTF_readonly, GTF_sub_page, GTF_type_mask, GTF_writing, GnttabCopy,
    GnttabMapGrantRef, GnttabUnmapGrantRef, GrantRef,
};
use hypercall_abi::xen::{DomId, DOMID_SELF};

use crate::domain::DomainId;
use crate::mm::frame_table::{pte, Mm, Owner, PageType, Pt, SeedError};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Most shared frames a table may have: Xen's default `gnttab_max_frames` (64 frames of 512
/// entries), which `query_size` reports as `max_nr_frames`.
pub const MAX_GRANT_FRAMES: u32 = 64;
/// Frames a new table starts with (`INITIAL_NR_GRANT_FRAMES`).
pub const INITIAL_NR_GRANT_FRAMES: u32 = 1;
/// v1 entries per 4 KiB frame.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Most mappings a domain holds at once (maptrack handles 0..1024).
pub const MAX_MAPTRACK: usize = 1024;
/// Bytes of one active entry in its frame: the pin counts and the domain in the first word, the
/// frame in the second.
const ACTIVE_ENTRY_BYTES: u64 = 16;
/// Active entries per frame (Xen's `ACGNT_PER_PAGE`).
pub const ACGNT_PER_PAGE: u32 = 4096 / ACTIVE_ENTRY_BYTES as u32;
/// Active-entry frames a table of `max_frames` shared frames needs
/// (`num_act_frames_from_sha_frames`).
pub const fn active_frames_for(max_frames: u32) -> u32 {
    (max_frames * ENTRIES_PER_FRAME).div_ceil(ACGNT_PER_PAGE)
}
/// Most frames a table takes from the arch layer: shared entries and active entries.
pub const MAX_TABLE_FRAMES: usize =
    (MAX_GRANT_FRAMES + active_frames_for(MAX_GRANT_FRAMES)) as usize;

/// Pin count of writable host mappings (`GNTPIN_hstw_*`).
pub const GNTPIN_HSTW_INC: u32 = 1;
/// Mask of [`GNTPIN_HSTW_INC`] counts.
pub const GNTPIN_HSTW_MASK: u32 = 0xff;
/// Pin count of read-only host mappings (`GNTPIN_hstr_*`).
pub const GNTPIN_HSTR_INC: u32 = 1 << 8;
/// Mask of [`GNTPIN_HSTR_INC`] counts.
pub const GNTPIN_HSTR_MASK: u32 = 0xff << 8;
/// Pin count of writable device mappings (`GNTPIN_devw_*`).
pub const GNTPIN_DEVW_INC: u32 = 1 << 16;
/// Mask of [`GNTPIN_DEVW_INC`] counts.
pub const GNTPIN_DEVW_MASK: u32 = 0xff << 16;
/// Pin count of read-only device mappings (`GNTPIN_devr_*`).
pub const GNTPIN_DEVR_INC: u32 = 1 << 24;
/// Mask of [`GNTPIN_DEVR_INC`] counts.
pub const GNTPIN_DEVR_MASK: u32 = 0xff << 24;
/// The top bits of the counters `inc` (a sum of `GNTPIN_*_INC`) adds to: a pin is refused while
/// one of them is set (`GNTPIN_incr2oflow_mask`), so a counter stops at 128. Only the counters a
/// pin increments are checked, as on Xen 4.17: a copy (a host-read pin) still works from a
/// reference whose read-only device counter is full (differential case
/// `grant.pin_count_overflow`).
const fn overflow_mask(inc: u32) -> u32 {
    inc << 7
}
/// The writable counts.
const PIN_WRITE: u32 = GNTPIN_HSTW_MASK | GNTPIN_DEVW_MASK;

/// The active state of one reference (`struct active_grant_entry`, v1 fields). `domid` and
/// `mfn` mean something only while `pin` is not 0 (Xen's are stale too once unpinned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveEntry {
    /// The `GNTPIN_*` counts.
    pub pin: u32,
    /// The domain it is pinned for.
    pub domid: DomId,
    /// The granted frame.
    pub mfn: Mfn,
}

/// One of a domain's mappings of a grant (`struct grant_mapping`); `flags` 0 is a free handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// `GNTMAP_*` still in effect (host and/or device, readonly, ...).
    pub flags: u32,
    /// The reference in the granter's table.
    pub gref: GrantRef,
    /// The granting domain.
    pub domid: DomId,
    /// The granted frame.
    pub mfn: Mfn,
    /// Machine address of the PTE a host mapping was installed in.
    pub pte: Maddr,
}

impl Mapping {
    const FREE: Mapping = Mapping {
        flags: 0,
        gref: 0,
        domid: 0,
        mfn: Mfn(0),
        pte: Maddr(0),
    };
}

/// Why [`GrantTable::init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantInitError {
    /// The allocator ran out of frames.
    NoMemory,
    /// A frame could not be shared with the domain.
    Share(SeedError),
    /// An active-entry frame could not be cleared.
    Unwritable(Mfn),
}

/// A domain's grant table. Big (tens of KiB): build it in place ([`GrantTable::new`] is `const`)
/// and [`GrantTable::reset`] it in place.
pub struct GrantTable {
    version: u32,
    nr_frames: u32,
    max_frames: u32,
    reserved: u32,
    /// The frames [`GrantTable::init`] took: `max_frames` for the shared entries, then
    /// `active_frames_for(max_frames)` for the active entries.
    frames: [Mfn; MAX_TABLE_FRAMES],
    maptrack: [Mapping; MAX_MAPTRACK],
}

impl Default for GrantTable {
    fn default() -> Self {
        Self::new()
    }
}

impl GrantTable {
    /// An empty table: no frames (so no entries), nothing pinned or mapped.
    pub const fn new() -> GrantTable {
        GrantTable {
            version: 1,
            nr_frames: 0,
            max_frames: MAX_GRANT_FRAMES,
            reserved: 0,
            frames: [Mfn(0); MAX_TABLE_FRAMES],
            maptrack: [Mapping::FREE; MAX_MAPTRACK],
        }
    }

    /// Back to [`GrantTable::new`], in place. The frames are forgotten: take them back first
    /// ([`GrantTable::frames`]).
    pub fn reset(&mut self) {
        self.version = 1;
        self.nr_frames = 0;
        self.max_frames = MAX_GRANT_FRAMES;
        self.reserved = 0;
        self.frames.fill(Mfn(0));
        self.maptrack.fill(Mapping::FREE);
    }

    /// `grant_table_init` for domain `id`: takes `max_frames` (at most [`MAX_GRANT_FRAMES`])
    /// frames for the shared entries and [`active_frames_for`]`(max_frames)` for the active
    /// entries from `alloc` (free in the frame table, so no guest can map them), zeroes them and
    /// shares the first one with the domain. The domain must be registered in `mm`.
    pub fn init(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        alloc: &mut dyn FnMut() -> Option<Mfn>,
        max_frames: u32,
    ) -> Result<(), GrantInitError> {
        self.reset();
        let max_frames = max_frames.clamp(INITIAL_NR_GRANT_FRAMES, MAX_GRANT_FRAMES);
        self.max_frames = max_frames;
        let total = max_frames + active_frames_for(max_frames);
        for i in 0..total as usize {
            let Some(mfn) = alloc() else {
                return Err(GrantInitError::NoMemory);
            };
            self.frames[i] = mfn;
            self.reserved += 1;
            // Every reference starts unpinned.
            if i >= max_frames as usize && mem.write(mfn.maddr(), &[0u8; 4096]).is_none() {
                return Err(GrantInitError::Unwritable(mfn));
            }
        }
        if !self.grow(mm, mem, id, INITIAL_NR_GRANT_FRAMES) {
            return Err(GrantInitError::Share(SeedError::OutOfRange {
                mfn: self.frames[0],
            }));
        }
        Ok(())
    }

    /// Every frame the table was given (shared or not, active entries too), for the arch layer to
    /// take back once the domain is gone. A shared frame something still references stays owned by the dead domain
    /// in the frame table (a zombie frame): only reuse frames the frame table shows free.
    pub fn frames(&self) -> &[Mfn] {
        &self.frames[..self.reserved as usize]
    }

    /// The frames shared with the domain (`setup_table`'s frame list).
    pub fn shared_frames(&self) -> &[Mfn] {
        &self.frames[..self.nr_frames as usize]
    }

    /// `gt_version`.
    pub const fn version(&self) -> u32 {
        self.version
    }

    /// `nr_grant_frames`.
    pub const fn nr_frames(&self) -> u32 {
        self.nr_frames
    }

    /// `max_grant_frames`.
    pub const fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// `nr_grant_entries`.
    pub const fn nr_entries(&self) -> u32 {
        self.nr_frames * ENTRIES_PER_FRAME
    }

    /// The active entry of `gref` if it is pinned.
    pub fn active(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> Option<ActiveEntry> {
        if gref >= self.nr_entries() {
            return None;
        }
        Some(self.read_active(mem, gref)).filter(|a| a.pin != 0)
    }

    /// Pinned references with their active entries.
    pub fn active_entries<'a>(
        &'a self,
        mem: &'a dyn MachineMemoryMut,
    ) -> impl Iterator<Item = (GrantRef, ActiveEntry)> + 'a {
        (0..self.nr_entries()).filter_map(move |r| self.active(mem, r).map(|a| (r, a)))
    }

    /// The mapping with handle `h`, if in use.
    pub fn mapping(&self, h: u32) -> Option<&Mapping> {
        self.maptrack.get(h as usize).filter(|m| m.flags != 0)
    }

    /// Handles in use with their mappings.
    pub fn mappings(&self) -> impl Iterator<Item = (u32, &Mapping)> + '_ {
        self.maptrack
            .iter()
            .enumerate()
            .filter(|(_, m)| m.flags != 0)
            .map(|(h, m)| (h as u32, m))
    }

    /// `gnttab_grow_table`: shares frames up to `n` with domain `id`. Their active entries are
    /// ready (cleared at [`GrantTable::init`], untouched since: only references below
    /// `nr_entries` are ever pinned).
    fn grow(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        n: u32,
    ) -> bool {
        let n = n.max(INITIAL_NR_GRANT_FRAMES);
        // A table [`GrantTable::init`] did not complete has no frames to grow into.
        let ready = self.reserved == self.max_frames + active_frames_for(self.max_frames);
        if n > self.max_frames || !ready {
            return false;
        }
        for i in self.nr_frames..n {
            let mfn = self.frames[i as usize];
            if mem.write(mfn.maddr(), &[0u8; 4096]).is_none()
                || mm.share_xen_page_with_guest(mfn, id, true).is_err()
            {
                return false;
            }
            self.nr_frames = i + 1;
        }
        true
    }

    /// Where entry `gref` lives (the caller checked `gref < nr_entries`).
    fn entry_at(&self, gref: GrantRef) -> Maddr {
        let frame = self.frames[(gref / ENTRIES_PER_FRAME) as usize];
        Maddr(frame.maddr().0 + u64::from(gref % ENTRIES_PER_FRAME) * 8)
    }

    /// Entry `gref` as `(flags, domid, frame)`; a frame machine memory refuses reads as empty.
    pub fn entry(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> (u16, DomId, u32) {
        if gref >= self.nr_entries() {
            return (0, 0, 0);
        }
        let v = mem.read_u64(self.entry_at(gref)).unwrap_or(0);
        (v as u16, (v >> 16) as u16, (v >> 32) as u32)
    }

    fn set_entry_flags(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, flags: u16) {
        let _ = mem.write(self.entry_at(gref), &flags.to_le_bytes());
    }

    /// `gnttab_clear_flags`.
    fn clear_flags(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, bits: u16) {
        let (flags, _, _) = self.entry(mem, gref);
        self.set_entry_flags(mem, gref, flags & !bits);
    }

    /// Where the active entry of `gref` lives (`_active_entry`; the caller checked
    /// `gref < nr_entries`).
    fn active_at(&self, gref: GrantRef) -> Maddr {
        let frame = self.frames[(self.max_frames + gref / ACGNT_PER_PAGE) as usize];
        Maddr(frame.maddr().0 + u64::from(gref % ACGNT_PER_PAGE) * ACTIVE_ENTRY_BYTES)
    }

    /// The active entry of `gref` (`active_entry_acquire`; the caller checked
    /// `gref < nr_entries`). A frame machine memory refuses reads as unpinned.
    fn read_active(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> ActiveEntry {
        let at = self.active_at(gref);
        let (Some(w0), Some(w1)) = (mem.read_u64(at), mem.read_u64(Maddr(at.0 + 8))) else {
            return ActiveEntry::default();
        };
        ActiveEntry {
            pin: w0 as u32,
            domid: (w0 >> 32) as DomId,
            mfn: Mfn(w1),
        }
    }

    /// Stores the active entry of `gref` (the caller checked `gref < nr_entries`).
    fn write_active(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, act: &ActiveEntry) {
        let at = self.active_at(gref);
        let _ = mem.write_u64(at, u64::from(act.pin) | u64::from(act.domid) << 32);
        let _ = mem.write_u64(Maddr(at.0 + 8), act.mfn.0);
    }

    fn free_handle(&self) -> Option<u32> {
        self.maptrack
            .iter()
            .position(|m| m.flags == 0)
            .map(|h| h as u32)
    }
}

/// Every domain's grant table, by domain id: what the operations reach besides the caller's.
pub trait GrantTables {
    /// The table of domain `id`, if that domain exists.
    fn table(&mut self, id: DomainId) -> Option<&mut GrantTable>;
    /// Every domain id with a table, in any order.
    fn ids(&self, out: &mut dyn FnMut(DomainId));
}

/// `rcu_lock_domain_by_any_id`: `DOMID_SELF` is the caller.
fn any_id(caller: DomainId, id: DomId) -> DomainId {
    if id == DOMID_SELF {
        caller
    } else {
        id
    }
}

/// `_set_status_v1`: checks an entry not yet pinned grants `ld` access of the kind asked (a map
/// refuses sub-page grants) and sets `GTF_reading`, and `GTF_writing` for a writable pin.
fn set_status_v1(
    mem: &mut dyn MachineMemoryMut,
    gt: &GrantTable,
    gref: GrantRef,
    pinned: bool,
    readonly: bool,
    mapflag: bool,
    ld: DomId,
) -> Result<(), i16> {
    let (flags, domid, _) = gt.entry(mem, gref);
    let mask = GTF_type_mask | if mapflag { GTF_sub_page } else { 0 };
    if !pinned && ((flags & mask) != GTF_permit_access || domid != ld) {
        return Err(GNTST_general_error); // "Bad flags or dom"
    }
    let mut new = flags | GTF_reading;
    if !readonly {
        new |= GTF_writing;
        if flags & GTF_readonly != 0 {
            return Err(GNTST_general_error); // "Attempt to write-pin a r/o grant entry"
        }
    }
    gt.set_entry_flags(mem, gref, new);
    Ok(())
}

/// The flags to clear in an entry after a pin attempt or release (`unlock_out_clear`).
fn flags_to_clear(pin: u32, readonly: bool) -> u16 {
    let mut clear = 0;
    if !readonly && pin & PIN_WRITE == 0 {
        clear |= GTF_writing;
    }
    if pin == 0 {
        clear |= GTF_reading;
    }
    clear
}

/// `grant_to_pte_flags` plus `adjust_guest_l1e`: the PTE of a host mapping.
fn grant_pte(mfn: Mfn, flags: u32) -> u64 {
    let mut e = mfn.maddr().0 | pte::PRESENT | pte::ACCESSED | pte::DIRTY | pte::NX;
    if flags & GNTMAP_application_map != 0 {
        e |= pte::USER;
    }
    if flags & GNTMAP_readonly == 0 {
        e |= pte::RW;
    }
    e |= u64::from((flags >> _GNTMAP_guest_avail0) & 7) << 9;
    pte::adjust_guest_l1e(e)
}

/// The L1 entry a host mapping at `addr` names (a linear address, or with
/// `GNTMAP_contains_pte` the PTE's machine address) with its L1 frame, on which a general
/// reference is taken; `None` (`GNTST_general_error`) if there is no such entry in a validated
/// L1 the caller owns.
fn grant_l1e(pt: &mut Pt<'_, '_>, l4: Mfn, addr: u64, flags: u32) -> Option<(Maddr, Mfn)> {
    let (at, l1) = if flags & GNTMAP_contains_pte != 0 {
        if addr & 7 != 0 {
            return None; // "Misaligned PTE address"
        }
        (Maddr(addr), Mfn(addr >> 12))
    } else {
        crate::mm::mmu::map_guest_l1e(pt.mem, l4, addr)?
    };
    if !pt.get_page(l1, Owner::Domain(pt.caller.id)) {
        return None;
    }
    // `page_lock`, then the type check.
    let is_l1 = pt
        .mm
        .frames
        .get(l1)
        .is_some_and(|f| f.validated() && f.type_count() > 0 && f.page_type() == PageType::L1);
    if !is_l1 {
        pt.put_page(l1);
        return None;
    }
    Some((at, l1))
}

/// `create_grant_pv_mapping`: writes the grant PTE for `mfn` at `addr`, dropping what the old
/// entry held. Returns where the PTE is.
fn create_host_mapping(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    addr: u64,
    mfn: Mfn,
    flags: u32,
) -> Result<Maddr, i16> {
    let (at, l1) = grant_l1e(pt, l4, addr, flags).ok_or(GNTST_general_error)?;
    let Some(old) = pt.mem.read_u64(at) else {
        pt.put_page(l1);
        return Err(GNTST_general_error);
    };
    let written = pt.mem.write_u64(at, grant_pte(mfn, flags)).is_some();
    pt.put_page(l1);
    if !written {
        return Err(GNTST_general_error);
    }
    pt.put_page_from_l1e(old);
    if pte::present(old) {
        // The old translation may be cached: Xen leaves that to the guest; we do not let a freed
        // frame stay reachable.
        flush_mapping(pt, addr, flags);
    }
    Ok(at)
}

fn flush_mapping(pt: &mut Pt<'_, '_>, addr: u64, flags: u32) {
    if flags & GNTMAP_contains_pte != 0 {
        pt.flush.flush_all(pt.perf);
    } else {
        pt.flush.invlpg(addr, pt.perf);
    }
}

/// `replace_grant_pv_mapping` with no replacement: clears the grant PTE at `addr` if it still
/// maps `mfn` with the grant's access. The PTE's references are the caller's to drop.
fn destroy_host_mapping(pt: &mut Pt<'_, '_>, l4: Mfn, addr: u64, mfn: Mfn, flags: u32) -> i16 {
    let Some((at, l1)) = grant_l1e(pt, l4, addr, flags) else {
        return GNTST_general_error;
    };
    let rc = match pt.mem.read_u64(at) {
        Some(old) if matches_grant(old, mfn, flags) => {
            if pt.mem.write_u64(at, 0).is_some() {
                GNTST_okay
            } else {
                GNTST_general_error
            }
        }
        // "PTE doesn't match grant".
        _ => GNTST_general_error,
    };
    pt.put_page(l1);
    rc
}

/// Whether PTE `e` maps `mfn` with the present and RW bits a grant mapping with `flags` has.
fn matches_grant(e: u64, mfn: Mfn, flags: u32) -> bool {
    let want = grant_pte(mfn, flags);
    pte::mfn(e) == mfn.0 && (e ^ want) & (pte::PRESENT | pte::RW) == 0
}

/// `map_grant_ref`: one `GNTTABOP_map_grant_ref` for the caller (`pt.caller`), whose current
/// page tables are `l4`. Fills `status`, and on success `handle` and `dev_bus_addr`.
pub fn map_grant_ref(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    op: &mut GnttabMapGrantRef,
) {
    let ld = pt.caller.id;
    let flags = op.flags;
    let ro = flags & GNTMAP_readonly != 0;
    if flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
        op.status = GNTST_bad_gntref; // "Bad flags in grant map op"
        return;
    }
    let rd = op.dom;
    if tables.table(rd).is_none() {
        op.status = GNTST_bad_domain;
        return;
    }
    let Some(handle) = tables.table(ld).and_then(|t| t.free_handle()) else {
        // "Failed to obtain maptrack handle": only this mapper is out of handles.
        op.status = GNTST_no_space;
        return;
    };
    let Some(rgt) = tables.table(rd) else {
        op.status = GNTST_bad_domain;
        return;
    };
    let gref = op.r#ref;
    if gref >= rgt.nr_entries() {
        op.status = GNTST_bad_gntref;
        return;
    }
    // `active_entry_acquire`: the reference's own entry, whoever else pins what.
    let mut act = rgt.read_active(pt.mem, gref);
    let inc = pin_inc(flags);
    // "Bad domain, or risk of counter overflow".
    if act.pin != 0 && (act.domid != ld || act.pin & overflow_mask(inc) != 0) {
        op.status = GNTST_general_error;
        return;
    }
    let mut page_ref = false;
    if act.pin == 0 || (!ro && act.pin & PIN_WRITE == 0) {
        if let Err(s) = set_status_v1(pt.mem, rgt, gref, act.pin != 0, ro, true, ld) {
            op.status = s;
            return;
        }
        if act.pin == 0 {
            let (_, _, frame) = rgt.entry(pt.mem, gref);
            let mfn = Mfn(frame.into());
            // `get_paged_frame` for a PV granter: the entry names a machine frame it owns.
            if !pt.get_page(mfn, Owner::Domain(rd)) {
                let clear = flags_to_clear(act.pin, ro);
                rgt.clear_flags(pt.mem, gref, clear);
                op.status = GNTST_bad_page;
                return;
            }
            page_ref = true;
            act.domid = ld;
            act.mfn = mfn;
        }
    }
    act.pin += inc;
    rgt.write_active(pt.mem, gref, &act);
    let mfn = act.mfn;

    // The references, taken with the pin released (as Xen drops the grant lock here).
    let (mut refcnt, mut typecnt) = (0u32, 0u32);
    let owner = if page_ref {
        Some(Owner::Domain(rd))
    } else {
        pt.mm.frames.get_owner_and_reference(mfn, pt.perf)
    };
    if owner.is_some() {
        refcnt += 1;
    }
    let rc = if owner == Some(Owner::Domain(rd)) {
        take_map_refs(pt, l4, op, mfn, rd, &mut refcnt, &mut typecnt)
    } else {
        Err(GNTST_general_error) // "Could not pin grant frame"
    };
    match rc {
        Ok(pte_at) => {
            if let Some(lgt) = tables.table(ld) {
                lgt.maptrack[handle as usize] = Mapping {
                    flags,
                    gref: op.r#ref,
                    domid: rd,
                    mfn,
                    pte: pte_at,
                };
            }
            op.dev_bus_addr = mfn.maddr().0;
            op.handle = handle;
            op.status = GNTST_okay;
        }
        Err(s) => {
            for _ in 0..typecnt {
                pt.put_page_type(mfn);
            }
            for _ in 0..refcnt {
                pt.put_page(mfn);
            }
            if let Some(rgt) = tables.table(rd) {
                let mut act = rgt.read_active(pt.mem, gref);
                act.pin -= inc;
                rgt.write_active(pt.mem, gref, &act);
                let clear = flags_to_clear(act.pin, ro);
                rgt.clear_flags(pt.mem, gref, clear);
            }
            op.status = s;
        }
    }
}

/// The pin counts one mapping with `flags` adds.
fn pin_inc(flags: u32) -> u32 {
    let ro = flags & GNTMAP_readonly != 0;
    let mut inc = 0;
    if flags & GNTMAP_device_map != 0 {
        inc += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
    }
    if flags & GNTMAP_host_map != 0 {
        inc += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
    }
    inc
}

/// The `owner == rd` branch of `map_grant_ref`: type references and the host PTE.
fn take_map_refs(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    op: &GnttabMapGrantRef,
    mfn: Mfn,
    rd: DomainId,
    refcnt: &mut u32,
    typecnt: &mut u32,
) -> Result<Maddr, i16> {
    let flags = op.flags;
    let ro = flags & GNTMAP_readonly != 0;
    if flags & GNTMAP_device_map != 0 && !ro {
        pt.get_page_type(mfn, PageType::Writable)
            .map_err(|_| GNTST_general_error)?;
        *typecnt += 1;
    }
    if flags & GNTMAP_host_map == 0 {
        return Ok(Maddr(0));
    }
    if flags & GNTMAP_device_map != 0 {
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            return Err(GNTST_general_error);
        }
        *refcnt += 1;
    }
    if !ro {
        pt.get_page_type(mfn, PageType::Writable)
            .map_err(|_| GNTST_general_error)?;
        *typecnt += 1;
    }
    create_host_mapping(pt, l4, op.host_addr, mfn, flags)
}

/// `unmap_grant_ref` (`unmap_common` then `unmap_common_complete`): one
/// `GNTTABOP_unmap_grant_ref` for the caller; fills `status`. A flush of the caller's TLB is
/// recorded when a host mapping went.
pub fn unmap_grant_ref(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    op: &mut GnttabUnmapGrantRef,
) {
    let ld = pt.caller.id;
    let Some(map) = tables
        .table(ld)
        .and_then(|t| t.maptrack.get(op.handle as usize).copied())
    else {
        op.status = GNTST_bad_handle; // handle beyond the maptrack
        return;
    };
    if map.flags == 0 {
        op.status = GNTST_bad_handle; // "Zero flags for handle"
        return;
    }
    let Some(rgt) = tables.table(map.domid) else {
        // Xen crashes the caller here (a granter vanished under a mapping); granters' deaths
        // revoke their grants first ([`revoke_grants_of`]), so this cannot happen.
        op.status = GNTST_bad_handle;
        return;
    };
    if map.gref >= rgt.nr_entries() {
        op.status = GNTST_bad_handle; // "Unstable handle"
        return;
    }
    let Some(act) = rgt.active(pt.mem, map.gref) else {
        op.status = GNTST_bad_handle;
        return;
    };
    let mfn = act.mfn;
    // "Bus address doesn't match gntref": checked only for a device mapping, and answered
    // GNTST_bad_dev_addr, as Xen 4.17 does (differential cases
    // `grant.unmap_device_wrong_bus_addr`, `grant.unmap_host_wrong_bus_addr`).
    if op.dev_bus_addr != 0
        && map.flags & GNTMAP_device_map != 0
        && op.dev_bus_addr != mfn.maddr().0
    {
        op.status = GNTST_bad_dev_addr;
        return;
    }
    let mut flags = map.flags;
    let mut done = 0u32;
    if op.host_addr != 0 && flags & GNTMAP_host_map != 0 {
        let rc = destroy_host_mapping(pt, l4, op.host_addr, mfn, flags);
        if rc != GNTST_okay {
            op.status = rc;
            return;
        }
        flags &= !GNTMAP_host_map;
        done |= GNTMAP_host_map | (map.flags & GNTMAP_readonly);
        pt.flush.flush_all(pt.perf); // `gnttab_flush_tlb`
    }
    if op.dev_bus_addr != 0 && flags & GNTMAP_device_map != 0 {
        flags &= !GNTMAP_device_map;
        done |= GNTMAP_device_map | (map.flags & GNTMAP_readonly);
    }
    if let Some(lgt) = tables.table(ld) {
        let m = &mut lgt.maptrack[op.handle as usize];
        m.flags = if flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
            0
        } else {
            flags
        };
    }
    op.status = GNTST_okay;
    if done != 0 {
        complete_unmap(pt, tables, map.domid, map.gref, mfn, done);
    }
}

/// `unmap_common_complete`: drops the references and pins of what an unmap took away (`done`:
/// `GNTMAP_host_map`/`device_map`, with `GNTMAP_readonly` for a read-only mapping).
fn complete_unmap(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    mfn: Mfn,
    done: u32,
) {
    let ro = done & GNTMAP_readonly != 0;
    let mut dec = 0;
    if done & GNTMAP_device_map != 0 {
        if !pt.mm.frames.is_iomem_page(mfn) {
            if ro {
                pt.put_page(mfn);
            } else {
                pt.put_page_and_type(mfn);
            }
        }
        dec += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
    }
    if done & GNTMAP_host_map != 0 {
        // The references the PTE held.
        if !pt.mm.frames.is_iomem_page(mfn) {
            if !ro {
                pt.put_page_type(mfn);
            }
            pt.put_page(mfn);
        }
        dec += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
    }
    unpin(pt.mem, tables, rd, gref, dec, ro);
}

/// Takes `dec` off the pins of `gref` in `rd`'s table and clears the entry's flags to match.
fn unpin(
    mem: &mut dyn MachineMemoryMut,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    dec: u32,
    ro: bool,
) {
    let Some(rgt) = tables.table(rd) else {
        return;
    };
    if gref >= rgt.nr_entries() {
        return;
    }
    let mut act = rgt.read_active(mem, gref);
    debug_assert!(act.pin >= dec, "unpin below zero");
    act.pin = act.pin.saturating_sub(dec);
    rgt.write_active(mem, gref, &act);
    let clear = flags_to_clear(act.pin, ro);
    if clear != 0 {
        rgt.clear_flags(mem, gref, clear);
    }
}

/// One side of a copy, claimed: the frame with a general reference (and a writable type
/// reference for the destination), and the grant pinned if it came from one.
struct CopyBuf {
    domain: DomainId,
    mfn: Mfn,
    gref: Option<GrantRef>,
    read_only: bool,
    have_type: bool,
}

/// `acquire_grant_for_copy` (v1): pins `gref` of `rd` for `ld`, taking a general reference on
/// the frame.
fn acquire_grant_for_copy(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    ld: DomId,
    readonly: bool,
) -> Result<Mfn, i16> {
    let rgt = tables.table(rd).ok_or(GNTST_bad_domain)?;
    if gref >= rgt.nr_entries() {
        return Err(GNTST_bad_gntref);
    }
    // `active_entry_acquire`: the reference's own entry, whoever else pins what.
    let mut act = rgt.read_active(pt.mem, gref);
    let inc = if readonly {
        GNTPIN_HSTR_INC
    } else {
        GNTPIN_HSTW_INC
    };
    if act.pin != 0 && (act.domid != ld || act.pin & overflow_mask(inc) != 0) {
        return Err(GNTST_general_error);
    }
    let fail = |rgt: &mut GrantTable, mem: &mut dyn MachineMemoryMut, s: i16| {
        let clear = flags_to_clear(act.pin, readonly);
        rgt.clear_flags(mem, gref, clear);
        Err(s)
    };
    if act.pin == 0 || (!readonly && act.pin & PIN_WRITE == 0) {
        set_status_v1(pt.mem, rgt, gref, act.pin != 0, readonly, false, ld)?;
        let (_, _, frame) = rgt.entry(pt.mem, gref);
        let mfn = Mfn(frame.into());
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            return fail(rgt, pt.mem, GNTST_bad_page);
        }
        if act.pin == 0 {
            act.domid = ld;
            act.mfn = mfn;
        } else if act.mfn != mfn {
            // Pinned already: the pinned frame is the one copied (Xen overwrites `page` with the
            // entry's frame yet copies `act->mfn`; the two differ only if the granter rewrote
            // a pinned entry).
            pt.put_page(mfn);
            if !pt.get_page(act.mfn, Owner::Domain(rd)) {
                return fail(rgt, pt.mem, GNTST_bad_domain);
            }
        }
    } else if !pt.get_page(act.mfn, Owner::Domain(rd)) {
        return fail(rgt, pt.mem, GNTST_bad_domain);
    }
    act.pin += inc;
    rgt.write_active(pt.mem, gref, &act);
    Ok(act.mfn)
}

/// `gnttab_copy_claim_buf`.
fn claim_buf(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    domain: DomainId,
    u: u64,
    is_gref: bool,
    read_only: bool,
) -> Result<CopyBuf, i16> {
    let ld = pt.caller.id;
    let mut buf = if is_gref {
        let gref = u as GrantRef;
        let mfn = acquire_grant_for_copy(pt, tables, domain, gref, ld, read_only)?;
        CopyBuf {
            domain,
            mfn,
            gref: Some(gref),
            read_only,
            have_type: false,
        }
    } else {
        // `get_paged_frame`: for a PV domain the frame number is the machine frame, which it
        // must own.
        let mfn = Mfn(u);
        if !pt.mm.frames.mfn_valid(mfn) || !pt.get_page(mfn, Owner::Domain(domain)) {
            return Err(GNTST_bad_page);
        }
        CopyBuf {
            domain,
            mfn,
            gref: None,
            read_only,
            have_type: false,
        }
    };
    if !read_only {
        if pt.get_page_type(buf.mfn, PageType::Writable).is_err() {
            release_buf(pt, tables, &buf);
            return Err(GNTST_general_error); // "Could not get writable frame"
        }
        buf.have_type = true;
    }
    Ok(buf)
}

/// `gnttab_copy_release_buf`.
fn release_buf(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, buf: &CopyBuf) {
    if let Some(gref) = buf.gref {
        // `release_grant_for_copy`.
        let dec = if buf.read_only {
            GNTPIN_HSTR_INC
        } else {
            GNTPIN_HSTW_INC
        };
        unpin(pt.mem, tables, buf.domain, gref, dec, buf.read_only);
    }
    if buf.have_type {
        pt.put_page_type(buf.mfn);
    }
    pt.put_page(buf.mfn);
}

/// `gnttab_copy_lock_domain`: only `DOMID_SELF` may name a frame directly.
fn copy_domain(
    tables: &mut dyn GrantTables,
    caller: DomainId,
    domid: DomId,
    is_gref: bool,
) -> Result<DomainId, i16> {
    if domid != DOMID_SELF && !is_gref {
        return Err(GNTST_permission_denied);
    }
    let id = any_id(caller, domid);
    tables.table(id).map(|_| id).ok_or(GNTST_bad_domain)
}

/// `gnttab_copy_one`: one `GNTTABOP_copy`; returns its status.
pub fn copy(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, op: &GnttabCopy) -> i16 {
    let caller = pt.caller.id;
    let src_gref = op.flags & GNTCOPY_source_gref != 0;
    let dst_gref = op.flags & GNTCOPY_dest_gref != 0;
    let src_dom = match copy_domain(tables, caller, op.source.domid, src_gref) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let dst_dom = match copy_domain(tables, caller, op.dest.domid, dst_gref) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let src = match claim_buf(pt, tables, src_dom, op.source.u, src_gref, true) {
        Ok(b) => b,
        Err(s) => return s,
    };
    let dst = match claim_buf(pt, tables, dst_dom, op.dest.u, dst_gref, false) {
        Ok(b) => b,
        Err(s) => {
            release_buf(pt, tables, &src);
            return s;
        }
    };
    let (so, dof, len) = (
        usize::from(op.source.offset),
        usize::from(op.dest.offset),
        usize::from(op.len),
    );
    // `gnttab_copy_buf`: v1 grants are whole pages, so the sub-page bounds always hold.
    let rc = if so + len > 4096 || dof + len > 4096 {
        GNTST_bad_copy_arg // "copy beyond page area"
    } else {
        copy_bytes(pt.mem, src.mfn, so, dst.mfn, dof, len)
    };
    release_buf(pt, tables, &dst);
    release_buf(pt, tables, &src);
    rc
}

/// `memcpy` between two frames, through a small buffer (regions may overlap within a frame).
fn copy_bytes(
    mem: &mut dyn MachineMemoryMut,
    src: Mfn,
    so: usize,
    dst: Mfn,
    dof: usize,
    len: usize,
) -> i16 {
    let mut buf = [0u8; 4096];
    let Some(from) = mem.read(Maddr(src.maddr().0 + so as u64), len) else {
        return GNTST_general_error;
    };
    buf[..len].copy_from_slice(from);
    match mem.write(Maddr(dst.maddr().0 + dof as u64), &buf[..len]) {
        Some(()) => GNTST_okay,
        None => GNTST_general_error,
    }
}

/// What `setup_table` and `query_size` answer besides their status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// `nr_frames`.
    pub nr_frames: u32,
    /// `max_nr_frames`.
    pub max_frames: u32,
}

/// `xsm_grant_setup`/`xsm_grant_query_size` (`XSM_TARGET`): a domain may ask about itself, a
/// privileged domain about anyone.
fn xsm_target(pt: &Pt<'_, '_>, target: DomainId) -> bool {
    target == pt.caller.id || pt.caller.privileged
}

/// The domain a `setup_table`/`query_size` names, checked: `Err(status)` if it does not exist
/// or the caller may not ask.
pub fn target_table(
    pt: &Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    dom: DomId,
) -> Result<DomainId, i16> {
    let id = any_id(pt.caller.id, dom);
    if tables.table(id).is_none() {
        return Err(GNTST_bad_domain);
    }
    if !xsm_target(pt, id) {
        return Err(GNTST_permission_denied);
    }
    Ok(id)
}

/// The body of `gnttab_setup_table` once the domain is known: grows `id`'s table to
/// `nr_frames` if needed; the caller then copies out [`GrantTable::shared_frames`].
pub fn setup_table(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    id: DomainId,
    nr_frames: u32,
) -> Result<(), i16> {
    let gt = tables.table(id).ok_or(GNTST_bad_domain)?;
    if nr_frames > gt.max_frames {
        return Err(GNTST_general_error); // "limited to N grant-table frames"
    }
    if nr_frames > gt.nr_frames && !gt.grow(pt.mm, pt.mem, id, nr_frames) {
        return Err(GNTST_general_error);
    }
    Ok(())
}

/// `gnttab_set_version`: the version in effect afterwards, and the error if any. Version 2 is
/// refused as Xen refuses it under `gnttab=max-ver:1`.
pub fn set_version(gt: &GrantTable, version: u32) -> (u32, Result<(), hypercall_abi::Errno>) {
    use hypercall_abi::Errno;
    let rc = match version {
        1 => Ok(()),
        2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    (gt.version, rc)
}

/// `swap_grant_ref`: exchanges two unpinned entries of the caller's table.
pub fn swap_grant_ref(
    mem: &mut dyn MachineMemoryMut,
    gt: &GrantTable,
    a: GrantRef,
    b: GrantRef,
) -> i16 {
    if a >= gt.nr_entries() || b >= gt.nr_entries() {
        return GNTST_bad_gntref;
    }
    if a == b {
        return GNTST_okay;
    }
    // "ref a/b busy": pinned by anyone.
    if gt.active(mem, a).is_some() || gt.active(mem, b).is_some() {
        return hypercall_abi::grant_table::GNTST_eagain;
    }
    let (ea, eb) = (gt.entry_at(a), gt.entry_at(b));
    let (Some(va), Some(vb)) = (mem.read_u64(ea), mem.read_u64(eb)) else {
        return GNTST_general_error;
    };
    let _ = mem.write_u64(ea, vb);
    let _ = mem.write_u64(eb, va);
    GNTST_okay
}

/// `gnttab_release_mappings`, run when domain `dying` dies (before its page tables are torn
/// down): every mapping it holds goes. Pins come off the granters' entries (with their
/// `GTF_reading`/`GTF_writing`), device mappings drop their references; a host mapping's
/// references belong to its PTE, which tearing down the dying domain's tables drops (Xen:
/// `gnttab_release_host_mappings` is false for PV).
pub fn release_mappings(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, dying: DomainId) {
    for h in 0..MAX_MAPTRACK {
        let Some(map) = tables.table(dying).map(|t| t.maptrack[h]) else {
            return;
        };
        if map.flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
            continue;
        }
        if let Some(t) = tables.table(dying) {
            t.maptrack[h] = Mapping::FREE;
        }
        let ro = map.flags & GNTMAP_readonly != 0;
        let mut dec = 0;
        if map.flags & GNTMAP_device_map != 0 {
            if !pt.mm.frames.is_iomem_page(map.mfn) {
                if ro {
                    pt.put_page(map.mfn);
                } else {
                    pt.put_page_and_type(map.mfn);
                }
            }
            dec += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
        }
        if map.flags & GNTMAP_host_map != 0 {
            dec += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
        }
        unpin(pt.mem, tables, map.domid, map.gref, dec, ro);
    }
}

/// Run when domain `dying` dies, before its frames are taken back: every other domain's
/// mapping of its grants is revoked, so that its frames can be freed and none stays reachable
/// through a dead grant. (Xen instead keeps the frames of a dead granter until the mappers
/// unmap: a zombie domain; here the mappers lose their mappings.) A host mapping whose PTE still
/// maps the frame has the PTE cleared and its references dropped (one that the mapper already
/// replaced itself gave them back then); device mappings drop theirs. `flush` is called with
/// each mapper whose PTEs changed: its TLB must be flushed (global entries included) before it
/// runs again.
pub fn revoke_grants_of(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    dying: DomainId,
    flush: &mut dyn FnMut(DomainId),
) {
    let mut ids: heapless::Vec<DomainId, 64> = heapless::Vec::new();
    tables.ids(&mut |id| {
        if id != dying {
            let _ = ids.push(id);
        }
    });
    for &mapper in &ids {
        let mut flushed = false;
        for h in 0..MAX_MAPTRACK {
            let Some(map) = tables.table(mapper).map(|t| t.maptrack[h]) else {
                break;
            };
            if map.flags == 0 || map.domid != dying {
                continue;
            }
            if let Some(t) = tables.table(mapper) {
                t.maptrack[h] = Mapping::FREE;
            }
            let ro = map.flags & GNTMAP_readonly != 0;
            let mut done = map.flags & GNTMAP_device_map;
            if map.flags & GNTMAP_host_map != 0 && clear_grant_pte(pt, mapper, &map) {
                done |= GNTMAP_host_map;
                flushed = true;
            }
            if done != 0 {
                if ro {
                    done |= GNTMAP_readonly;
                }
                complete_unmap(pt, tables, dying, map.gref, map.mfn, done);
            }
            // A host mapping whose PTE is gone already had its references dropped; its pin goes
            // too.
            if map.flags & GNTMAP_host_map != 0 && done & GNTMAP_host_map == 0 {
                let dec = if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
                unpin(pt.mem, tables, dying, map.gref, dec, ro);
            }
        }
        if flushed {
            flush(mapper);
        }
    }
}

/// Clears the grant PTE of `map` (held by `mapper`) if it is still there: in a validated L1 the
/// mapper owns, mapping the frame with the grant's access.
fn clear_grant_pte(pt: &mut Pt<'_, '_>, mapper: DomainId, map: &Mapping) -> bool {
    let l1 = Mfn(map.pte.0 >> 12);
    let is_l1 = pt.mm.frames.get(l1).is_some_and(|f| {
        f.owner() == Owner::Domain(mapper)
            && f.validated()
            && f.type_count() > 0
            && f.page_type() == PageType::L1
    });
    if !is_l1 {
        return false;
    }
    match pt.mem.read_u64(map.pte) {
        Some(e) if matches_grant(e, map.mfn, map.flags) => pt.mem.write_u64(map.pte, 0).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
