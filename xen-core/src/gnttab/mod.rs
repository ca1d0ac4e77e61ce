//! Grant tables, version 1: per-domain grant state and the `GNTTABOP_*` operations of Xen 4.17's
//! `xen/common/grant_table.c` (with `xen/arch/x86/pv/grant_table.c` for the PTEs), for 64-bit PV
//! guests, as plain Rust over state passed in.
//!
//! Each domain has a [`GrantTable`]:
//!
//! - the **shared entries** (`grant_entry_v1_t`, 512 per frame) live in hypervisor frames shared
//!   writable with the domain (`share_xen_page_with_guest`), which the guest maps with
//!   `mmu_update` after `GNTTABOP_setup_table` told it their MFNs. As on Xen, a table starts with
//!   one ([`INITIAL_NR_GRANT_FRAMES`], taken and shared by [`GrantTable::init`] when the domain
//!   is built) and takes more from the arch layer's free pool only when `setup_table` grows it
//!   (`gnttab_grow_table`), up to its `max_frames` ([`MAX_GRANT_FRAMES`] at most): a domain
//!   that never grows its table costs 3 frames (one shared, two of active entries), not the
//!   200 a table of 64 frames needs;
//! - the **active entries** (Xen's `struct active_grant_entry`): one per reference of the table,
//!   as on Xen (`_active_entry(t, e)` indexes `t->active` by the reference): the pin counts (host
//!   and device, read-only and writable), the domain it is pinned for and the frame. They live in
//!   hypervisor frames that no guest can map ([`ACGNT_PER_PAGE`] entries of 16 bytes per frame,
//!   `num_act_frames_from_sha_frames`), taken as the table grows, before the shared frames
//!   whose references they describe.
//!   So a reference can always be pinned by the domain it is granted to: what other mappers
//!   pinned costs it nothing, and the only bound is the granter's own table size;
//! - the **maptrack** table: the domain's own mappings of other domains' grants, indexed by the
//!   handle `map_grant_ref` returns, up to [`MAX_MAPTRACK`] at once (Xen: 1024 frames of 256).
//!   Its entries live in hypervisor frames taken one at a time from the free pool when every
//!   handle is in use (Xen's `get_maptrack_handle` growing the table by a frame,
//!   [`MAPTRACK_PER_FRAME`] entries each): most domains map nothing and hold none; the frames are
//!   listed with the table's others ([`GrantTable::frames`]) and go back when the domain dies.
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
//! Version 2 (`set_version(2)`) is Xen's too: 16-byte `grant_entry_v2_t` entries (256 per frame:
//! full-page, sub-page and transitive grants) with the `GTF_reading`/`GTF_writing` bits in
//! separate **status frames** (`grant_status_t`, 2048 per frame), taken when the domain switches
//! to version 2 or grows its table under it, and shared with the domain only while it uses
//! version 2 (`gnttab_populate_status_frames`/`gnttab_unpopulate_status_frames`: switching back
//! to version 1 is -EBUSY while the domain still maps one; the frames are kept for the next
//! switch, where Xen frees them). The active entry of a pinned reference records
//! the sub-page window (`start`, `length`, `is_sub_page`) a copy may touch; a transitive grant's
//! referent is pinned for the copy that uses it and released with it, within the same element.
//!
//! `GNTTABOP_unmap_and_replace` moves the PTE at `new_addr` into the grant's slot
//! (`steal_linear_address`), and `GNTMAP_contains_pte` names a host mapping's PTE by its machine
//! address (in a validated L1 the mapper owns), both as `xen/arch/x86/pv/grant_table.c`.
//!
//! `GNTTABOP_transfer` is in [`transfer`]. What is left out, each answered as documented:
//! `cache_flush` and `dump_table` (-ENOSYS), IOMMU mappings, and I/O-memory grants (a PV
//! granter can only grant frames it owns, so they never arise).

pub mod hypercall;

mod copy;
mod map;
mod table;
mod transfer;

pub use copy::*;
pub use map::*;
pub use table::*;
pub use transfer::{transfer_one, Receivers};

use hypercall_abi::grant_table::{
    _GNTMAP_guest_avail0, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_application_map,
    GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg,
    GNTST_bad_dev_addr, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page,
    GNTST_general_error, GNTST_no_space, GNTST_okay, GNTST_permission_denied, GTF_permit_access,
    GTF_reading, GTF_readonly, GTF_sub_page, GTF_transitive, GTF_type_mask, GTF_writing,
    GnttabCopy, GnttabMapGrantRef, GnttabUnmapAndReplace, GnttabUnmapGrantRef, GrantEntryV2,
    GrantRef, GNTTAB_NR_RESERVED_ENTRIES,
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
/// v2 entries (16 bytes) per 4 KiB frame.
pub const ENTRIES_PER_FRAME_V2: u32 = 256;
/// `grant_status_t` entries per status frame.
pub const STATUS_PER_FRAME: u32 = 2048;
/// Status frames a table of `nr_frames` v2 frames needs (`grant_to_status_frames`).
pub const fn status_frames_for(nr_frames: u32) -> u32 {
    (nr_frames * ENTRIES_PER_FRAME_V2).div_ceil(STATUS_PER_FRAME)
}
/// Most status frames a table has.
pub const MAX_STATUS_FRAMES: u32 = status_frames_for(MAX_GRANT_FRAMES);
/// Most mappings a domain holds at once (maptrack handles 0..1024).
pub const MAX_MAPTRACK: usize = 1024;
/// Bytes of one maptrack entry in its frame: the flags and the reference in the first word,
/// the granting domain, the frame and the PTE's machine address in the next three.
const MAPTRACK_ENTRY_BYTES: u64 = 32;
/// Maptrack entries per frame (Xen's `MAPTRACK_PER_PAGE`).
pub const MAPTRACK_PER_FRAME: u32 = 4096 / MAPTRACK_ENTRY_BYTES as u32;
/// Most maptrack frames a table takes ([`MAX_MAPTRACK`] handles).
pub const MAX_MAPTRACK_FRAMES: usize = MAX_MAPTRACK / MAPTRACK_PER_FRAME as usize;
/// Bytes of one active entry in its frame: the pin counts, the domain, the window's start and
/// the sub-page bit in the first word, the frame and the window's length in the second.
const ACTIVE_ENTRY_BYTES: u64 = 16;
/// The frame's bits in the second word of an active entry (the sub-page length is above them; a
/// pinned frame is in the frame table, far below 2^48).
const ACTIVE_MFN_MASK: u64 = (1 << 48) - 1;
/// The bits of an active entry's `start` (Xen's `start:15` bit-field; `length` is 16 bits).
pub(crate) const ACTIVE_START_MASK: u16 = 0x7fff;
/// Active entries per frame (Xen's `ACGNT_PER_PAGE`).
pub const ACGNT_PER_PAGE: u32 = 4096 / ACTIVE_ENTRY_BYTES as u32;
/// Active-entry frames a table of `max_frames` shared frames needs
/// (`num_act_frames_from_sha_frames`).
pub const fn active_frames_for(max_frames: u32) -> u32 {
    (max_frames * ENTRIES_PER_FRAME).div_ceil(ACGNT_PER_PAGE)
}
/// Frames a table of at most `max_frames` shared frames takes from the arch layer: the shared
/// entries, the active entries and the (version 2) status entries.
pub const fn table_frames_for(max_frames: u32) -> u32 {
    max_frames + active_frames_for(max_frames) + status_frames_for(max_frames)
}
/// Most frames a table takes from the arch layer: its entries' and its maptrack's.
pub const MAX_TABLE_FRAMES: usize =
    table_frames_for(MAX_GRANT_FRAMES) as usize + MAX_MAPTRACK_FRAMES;
/// Most active-entry frames a table has.
pub const MAX_ACTIVE_FRAMES: usize = active_frames_for(MAX_GRANT_FRAMES) as usize;

/// Where a table's frames come from: one free frame from the arch layer's pool (its contents
/// are whatever they were; the table zeroes it), `None` when there is none. It gets machine
/// memory for the pool's own bookkeeping.
pub type FrameSource<'a> = dyn FnMut(&mut dyn MachineMemoryMut) -> Option<Mfn> + 'a;
/// Page size, as a grant's window length.
const PAGE_SIZE: u16 = 4096;

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

/// The active state of one reference (`struct active_grant_entry`). Every field but `pin`
/// means something only while `pin` is not 0 (Xen's are stale too once unpinned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveEntry {
    /// The `GNTPIN_*` counts.
    pub pin: u32,
    /// The domain it is pinned for.
    pub domid: DomId,
    /// The granted frame.
    pub mfn: Mfn,
    /// First byte of the frame the grant covers (`start`; 0 for a full page).
    pub start: u16,
    /// Bytes it covers (`length`; 4096 for a full page).
    pub length: u16,
    /// A sub-page or transitive grant (`is_sub_page`): it cannot be mapped.
    pub is_sub_page: bool,
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
    nr_status_frames: u32,
    max_frames: u32,
    /// [`GrantTable::init`] ran: the table may take frames.
    ready: bool,
    /// Frames taken so far (the first `taken` of `frames`).
    taken: u32,
    /// Every frame the table took from the arch layer, in the order taken (shared, active and
    /// status alike): what goes back to the pool once the domain is gone.
    frames: [Mfn; MAX_TABLE_FRAMES],
    /// The shared-entry frames, shared with the domain (the first `nr_frames`).
    shared: [Mfn; MAX_GRANT_FRAMES as usize],
    /// The active-entry frames (the first `nr_active`), never shared.
    active: [Mfn; MAX_ACTIVE_FRAMES],
    nr_active: u32,
    /// The status frames taken (the first `nr_status_taken`); the first `nr_status_frames`
    /// of them are shared while the table is at version 2.
    status: [Mfn; MAX_STATUS_FRAMES as usize],
    nr_status_taken: u32,
    /// The maptrack's frames (the first `nr_maptrack`), never shared, taken as handles run out.
    maptrack: [Mfn; MAX_MAPTRACK_FRAMES],
    nr_maptrack: u32,
    /// The maptrack handles in use, a bit each (a mapping whose flags are not 0).
    maptrack_used: [u64; MAX_MAPTRACK / 64],
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
            nr_status_frames: 0,
            max_frames: MAX_GRANT_FRAMES,
            ready: false,
            taken: 0,
            frames: [Mfn(0); MAX_TABLE_FRAMES],
            shared: [Mfn(0); MAX_GRANT_FRAMES as usize],
            active: [Mfn(0); MAX_ACTIVE_FRAMES],
            nr_active: 0,
            status: [Mfn(0); MAX_STATUS_FRAMES as usize],
            nr_status_taken: 0,
            maptrack: [Mfn(0); MAX_MAPTRACK_FRAMES],
            nr_maptrack: 0,
            maptrack_used: [0; MAX_MAPTRACK / 64],
        }
    }

    /// Back to [`GrantTable::new`], in place. The frames are forgotten: take them back first
    /// ([`GrantTable::frames`]).
    pub fn reset(&mut self) {
        self.version = 1;
        self.nr_frames = 0;
        self.nr_status_frames = 0;
        self.max_frames = MAX_GRANT_FRAMES;
        self.ready = false;
        self.taken = 0;
        self.frames.fill(Mfn(0));
        self.shared.fill(Mfn(0));
        self.active.fill(Mfn(0));
        self.nr_active = 0;
        self.status.fill(Mfn(0));
        self.nr_status_taken = 0;
        self.maptrack.fill(Mfn(0));
        self.nr_maptrack = 0;
        self.maptrack_used.fill(0);
    }

    /// `grant_table_init` for domain `id`, limited to `max_frames` shared frames (at most
    /// [`MAX_GRANT_FRAMES`]): takes its first shared frame and the active entries' frames for it
    /// from `alloc` (marked the hypervisor's in the frame table, so no guest can be given or map
    /// them; [`Mm::release_xen`] frees them when the domain is gone: every frame the table
    /// takes, now or as it grows, is in [`GrantTable::frames`]), zeroes them and shares the
    /// shared one with the domain. The domain must be registered in `mm`.
    pub fn init(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        alloc: &mut FrameSource<'_>,
        max_frames: u32,
    ) -> Result<(), GrantInitError> {
        self.reset();
        self.max_frames = max_frames.clamp(INITIAL_NR_GRANT_FRAMES, MAX_GRANT_FRAMES);
        self.ready = true;
        self.try_grow(mm, mem, id, INITIAL_NR_GRANT_FRAMES, alloc)
    }

    /// Takes one frame from `alloc` for the table: the hypervisor's in the frame table, recorded
    /// in [`GrantTable::frames`], zeroed.
    fn take(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        alloc: &mut FrameSource<'_>,
    ) -> Result<Mfn, GrantInitError> {
        if self.taken as usize == MAX_TABLE_FRAMES {
            return Err(GrantInitError::NoMemory);
        }
        let mfn = alloc(mem).ok_or(GrantInitError::NoMemory)?;
        let range = crate::mm::frame_alloc::FrameRange {
            start: mfn,
            end: Mfn(mfn.0 + 1),
        };
        // The hypervisor's until shared: no domain can be given it, map it or free it.
        mm.assign(range, Owner::Xen)
            .map_err(GrantInitError::Share)?;
        self.frames[self.taken as usize] = mfn;
        self.taken += 1;
        // Every reference starts unpinned, every shared entry empty.
        mem.zero(mfn.maddr(), 4096)
            .ok_or(GrantInitError::Unwritable(mfn))?;
        Ok(mfn)
    }

    /// Every frame the table was given (shared or not, active entries too), for the arch layer to
    /// take back once the domain is gone. A shared frame something still references stays owned by the dead domain
    /// in the frame table (a zombie frame): only reuse frames the frame table shows free.
    pub fn frames(&self) -> &[Mfn] {
        &self.frames[..self.taken as usize]
    }

    /// The frames shared with the domain (`setup_table`'s frame list).
    pub fn shared_frames(&self) -> &[Mfn] {
        &self.shared[..self.nr_frames as usize]
    }

    /// The status frames shared with the domain (version 2 only; `get_status_frames`' list).
    pub fn status_frames(&self) -> &[Mfn] {
        &self.status[..self.nr_status_frames as usize]
    }

    /// `nr_status_frames`.
    pub const fn nr_status_frames(&self) -> u32 {
        self.nr_status_frames
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

    /// `nr_grant_entries`: 512 a frame in version 1, 256 in version 2.
    pub const fn nr_entries(&self) -> u32 {
        if self.version == 2 {
            self.nr_frames * ENTRIES_PER_FRAME_V2
        } else {
            self.nr_frames * ENTRIES_PER_FRAME
        }
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
    pub fn mapping(&self, mem: &dyn MachineMemoryMut, h: u32) -> Option<Mapping> {
        self.handle_in_use(h).then(|| self.read_mapping(mem, h))
    }

    /// Handles in use with their mappings.
    pub fn mappings<'a>(
        &'a self,
        mem: &'a dyn MachineMemoryMut,
    ) -> impl Iterator<Item = (u32, Mapping)> + 'a {
        (0..self.maptrack_len())
            .filter(|&h| self.handle_in_use(h))
            .map(move |h| (h, self.read_mapping(mem, h)))
    }

    /// Maptrack frames taken so far.
    pub const fn nr_maptrack_frames(&self) -> u32 {
        self.nr_maptrack
    }

    /// Handles the maptrack's frames hold.
    const fn maptrack_len(&self) -> u32 {
        self.nr_maptrack * MAPTRACK_PER_FRAME
    }

    fn handle_in_use(&self, h: u32) -> bool {
        h < self.maptrack_len() && self.maptrack_used[h as usize / 64] >> (h % 64) & 1 != 0
    }

    /// Where handle `h`'s entry is (`h` below [`GrantTable::maptrack_len`]).
    fn mapping_at(&self, h: u32) -> Maddr {
        let frame = self.maptrack[(h / MAPTRACK_PER_FRAME) as usize];
        Maddr(frame.maddr().0 + u64::from(h % MAPTRACK_PER_FRAME) * MAPTRACK_ENTRY_BYTES)
    }

    /// Handle `h`'s entry (`h` below [`GrantTable::maptrack_len`]).
    fn read_mapping(&self, mem: &dyn MachineMemoryMut, h: u32) -> Mapping {
        let at = self.mapping_at(h).0;
        let word = |i: u64| mem.read_u64(Maddr(at + 8 * i)).unwrap_or(0);
        let w0 = word(0);
        Mapping {
            flags: w0 as u32,
            gref: (w0 >> 32) as u32,
            domid: word(1) as DomId,
            mfn: Mfn(word(2)),
            pte: Maddr(word(3)),
        }
    }

    /// Writes handle `h`'s entry (`h` below [`GrantTable::maptrack_len`]): in use when its
    /// flags are not 0, free otherwise.
    fn write_mapping(&mut self, mem: &mut dyn MachineMemoryMut, h: u32, m: &Mapping) {
        let at = self.mapping_at(h).0;
        let words = [
            u64::from(m.flags) | u64::from(m.gref) << 32,
            u64::from(m.domid),
            m.mfn.0,
            m.pte.0,
        ];
        for (i, w) in (0..).zip(words) {
            let _ = mem.write_u64(Maddr(at + 8 * i), w);
        }
        let bit = 1u64 << (h % 64);
        if m.flags != 0 {
            self.maptrack_used[h as usize / 64] |= bit;
        } else {
            self.maptrack_used[h as usize / 64] &= !bit;
        }
    }

    /// `get_maptrack_handle`: the lowest free handle, taking one more maptrack frame from
    /// `alloc` when every handle is in use (zeroed, the hypervisor's: [`GrantTable::take`]).
    /// `None` when the table has all [`MAX_MAPTRACK_FRAMES`] or `alloc` runs dry (Xen's
    /// `GNTST_no_space`). A frame taken stays the table's, for the next map.
    fn get_maptrack_handle(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        alloc: &mut FrameSource<'_>,
    ) -> Option<u32> {
        let words = self.maptrack_len().div_ceil(64) as usize;
        if let Some((i, w)) = self.maptrack_used[..words]
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
        {
            let h = (i * 64) as u32 + w.trailing_ones();
            if h < self.maptrack_len() {
                return Some(h);
            }
        }
        if self.nr_maptrack as usize == MAX_MAPTRACK_FRAMES || !self.ready {
            return None;
        }
        let mfn = self.take(mm, mem, alloc).ok()?;
        self.maptrack[self.nr_maptrack as usize] = mfn;
        self.nr_maptrack += 1;
        Some((self.nr_maptrack - 1) * MAPTRACK_PER_FRAME)
    }

    /// `gnttab_grow_table`: grows the table to `n` shared frames for domain `id`, taking from
    /// `alloc` the active entries' frames the new references need, under version 2 the status
    /// frames, and the shared frames themselves (each zeroed, the shared ones shared). `false`
    /// beyond `max_frames`, for a table [`GrantTable::init`] never set up, or when `alloc` runs
    /// dry; what was taken until then stays the table's, consistent (the counts only cover
    /// frames fully set up).
    fn grow(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        n: u32,
        alloc: &mut FrameSource<'_>,
    ) -> bool {
        self.try_grow(mm, mem, id, n, alloc).is_ok()
    }

    fn try_grow(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        n: u32,
        alloc: &mut FrameSource<'_>,
    ) -> Result<(), GrantInitError> {
        let n = n.max(INITIAL_NR_GRANT_FRAMES);
        if n > self.max_frames || !self.ready {
            return Err(GrantInitError::NoMemory);
        }
        // Active entries first: a reference exists only once its active entry does.
        while self.nr_active < active_frames_for(n) {
            let mfn = self.take(mm, mem, alloc)?;
            self.active[self.nr_active as usize] = mfn;
            self.nr_active += 1;
        }
        if self.version == 2 && !self.populate_status_frames(mm, mem, id, n, alloc) {
            return Err(GrantInitError::NoMemory);
        }
        while self.nr_frames < n {
            let mfn = self.take(mm, mem, alloc)?;
            mm.share_xen_page_with_guest(mfn, id, true)
                .map_err(GrantInitError::Share)?;
            self.shared[self.nr_frames as usize] = mfn;
            self.nr_frames += 1;
        }
        Ok(())
    }

    /// `gnttab_populate_status_frames`: zeroes and shares the status frames `n` shared frames
    /// need, taking from `alloc` those the table does not hold yet. `false` if one cannot be
    /// taken or shared (Xen: -ENOMEM).
    fn populate_status_frames(
        &mut self,
        mm: &mut Mm<'_>,
        mem: &mut dyn MachineMemoryMut,
        id: DomainId,
        n: u32,
        alloc: &mut FrameSource<'_>,
    ) -> bool {
        // A table [`GrantTable::init`] never set up takes nothing.
        if !self.ready {
            return false;
        }
        for i in self.nr_status_frames..status_frames_for(n) {
            let mfn = if i < self.nr_status_taken {
                let mfn = self.status[i as usize];
                if mem.zero(mfn.maddr(), 4096).is_none() {
                    return false;
                }
                mfn
            } else {
                let Ok(mfn) = self.take(mm, mem, alloc) else {
                    return false;
                };
                self.status[i as usize] = mfn;
                self.nr_status_taken += 1;
                mfn
            };
            if mm.share_xen_page_with_guest(mfn, id, true).is_err() {
                return false;
            }
            self.nr_status_frames = i + 1;
        }
        true
    }

    /// `gnttab_unpopulate_status_frames`: takes every status frame back from domain `id`;
    /// -EBUSY, changing nothing, while something but the share references one (the domain
    /// maps it).
    fn unpopulate_status_frames(
        &mut self,
        mm: &mut Mm<'_>,
        id: DomainId,
    ) -> Result<(), hypercall_abi::Errno> {
        let busy = self
            .status_frames()
            .iter()
            .any(|&m| !mm.is_unreferenced_share(m, id));
        if busy {
            return Err(hypercall_abi::Errno::EBUSY);
        }
        for i in 0..self.nr_status_frames as usize {
            mm.unshare_xen_page(self.status[i], id);
        }
        self.nr_status_frames = 0;
        Ok(())
    }

    /// Bytes of one shared entry.
    const fn entry_bytes(&self) -> u64 {
        if self.version == 2 {
            16
        } else {
            8
        }
    }

    /// Where entry `gref` lives (the caller checked `gref < nr_entries`).
    fn entry_at(&self, gref: GrantRef) -> Maddr {
        let per = (4096 / self.entry_bytes()) as u32;
        let frame = self.shared[(gref / per) as usize];
        Maddr(frame.maddr().0 + u64::from(gref % per) * self.entry_bytes())
    }

    /// Entry `gref` as `(flags, domid, frame)` (version 2: `full_page.frame`, truncated to 32
    /// bits); a frame machine memory refuses reads as empty.
    pub fn entry(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> (u16, DomId, u32) {
        let e = self.entry_v2(mem, gref);
        (e.flags(), e.domid(), e.frame() as u32)
    }

    /// Entry `gref` as a version-2 entry: in version 1 the header and the frame (the union's
    /// `full_page` view); beyond the table, or unreadable, empty.
    pub fn entry_v2(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> GrantEntryV2 {
        if gref >= self.nr_entries() {
            return GrantEntryV2::default();
        }
        self.entry_v2_in(mem, gref)
    }

    /// [`GrantTable::entry_v2`] of an entry the caller checked is in the table.
    #[inline]
    fn entry_v2_in(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> GrantEntryV2 {
        debug_assert!(gref < self.nr_entries());
        let at = self.entry_at(gref);
        let w0 = mem.read_u64(at).unwrap_or(0);
        if self.version == 2 {
            let w1 = mem.read_u64(Maddr(at.0 + 8)).unwrap_or(0);
            GrantEntryV2 { words: [w0, w1] }
        } else {
            GrantEntryV2 {
                words: [w0 & 0xffff_ffff, w0 >> 32],
            }
        }
    }

    /// Where the `GTF_reading`/`GTF_writing` bits of `gref` live: the entry's flags in version
    /// 1, its `grant_status_t` in version 2 (the caller checked `gref < nr_entries`).
    fn status_at(&self, gref: GrantRef) -> Maddr {
        if self.version == 2 {
            let frame = self.status[(gref / STATUS_PER_FRAME) as usize];
            Maddr(frame.maddr().0 + u64::from(gref % STATUS_PER_FRAME) * 2)
        } else {
            self.entry_at(gref)
        }
    }

    /// The status of `gref` (version 1: the entry's flags).
    pub fn status(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> u16 {
        if gref >= self.nr_entries() {
            return 0;
        }
        self.status_in(mem, gref)
    }

    /// [`GrantTable::status`] of an entry the caller checked is in the table.
    #[inline]
    fn status_in(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> u16 {
        debug_assert!(gref < self.nr_entries());
        mem.read(self.status_at(gref), 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn set_status(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, v: u16) {
        let _ = mem.write(self.status_at(gref), &v.to_le_bytes());
    }

    /// Writes the flags of entry `gref`'s header (the first 16 bits of the entry in both
    /// versions; the caller checked `gref < nr_entries`).
    fn set_header_flags(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, v: u16) {
        let _ = mem.write(self.entry_at(gref), &v.to_le_bytes());
    }

    /// Writes the frame field of entry `gref`: version 1 `frame` (32 bits, as Xen's
    /// `sha->frame = mfn` truncates), version 2 `full_page.frame` (the caller checked
    /// `gref < nr_entries`).
    fn set_entry_frame(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, frame: u64) {
        let at = self.entry_at(gref);
        if self.version == 2 {
            let _ = mem.write_u64(Maddr(at.0 + 8), frame);
        } else {
            let _ = mem.write(Maddr(at.0 + 4), &(frame as u32).to_le_bytes());
        }
    }

    /// `gnttab_clear_flags` on the status of `gref`.
    fn clear_flags(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, bits: u16) {
        let v = self.status_in(mem, gref);
        if v & bits != 0 {
            self.set_status(mem, gref, v & !bits);
        }
    }

    /// Where the active entry of `gref` lives (`_active_entry`; the caller checked
    /// `gref < nr_entries`).
    fn active_at(&self, gref: GrantRef) -> Maddr {
        let frame = self.active[(gref / ACGNT_PER_PAGE) as usize];
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
            start: ((w0 >> 48) as u16) & ACTIVE_START_MASK,
            is_sub_page: w0 >> 63 != 0,
            mfn: Mfn(w1 & ACTIVE_MFN_MASK),
            length: (w1 >> 48) as u16,
        }
    }

    /// The pin count of `gref`'s active entry alone (its first word; the caller checked
    /// `gref < nr_entries`): 0, as [`GrantTable::read_active`] says, where memory refuses it.
    fn active_pin(&self, mem: &dyn MachineMemoryMut, gref: GrantRef) -> u32 {
        mem.read_u64(self.active_at(gref)).map_or(0, |w0| w0 as u32)
    }

    /// Stores the active entry of `gref` (the caller checked `gref < nr_entries`).
    fn write_active(&self, mem: &mut dyn MachineMemoryMut, gref: GrantRef, act: &ActiveEntry) {
        let at = self.active_at(gref);
        let w0 = u64::from(act.pin)
            | u64::from(act.domid) << 32
            | u64::from(act.start & ACTIVE_START_MASK) << 48
            | u64::from(act.is_sub_page) << 63;
        let w1 = (act.mfn.0 & ACTIVE_MFN_MASK) | u64::from(act.length) << 48;
        let _ = mem.write_u64(at, w0);
        let _ = mem.write_u64(Maddr(at.0 + 8), w1);
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

/// `_set_status`: checks an entry not yet pinned grants `ld` access of the kind asked (a map
/// refuses sub-page grants) and sets `GTF_reading`, and `GTF_writing` for a writable pin, in the
/// entry (version 1) or its status (version 2, which also accepts a transitive grant for a
/// copy).
fn set_status(
    mem: &mut dyn MachineMemoryMut,
    gt: &GrantTable,
    gref: GrantRef,
    pinned: bool,
    readonly: bool,
    mapflag: bool,
    ld: DomId,
) -> Result<(), i16> {
    let e = gt.entry_v2(mem, gref);
    let bits = status_bits(gt, e, pinned, readonly, mapflag, ld)?;
    let status = gt.status(mem, gref);
    gt.set_status(mem, gref, status | bits);
    Ok(())
}

/// [`set_status`]'s checks of entry `e` (as read): the status bits it would set, or why it
/// refuses.
#[inline(always)]
fn status_bits(
    gt: &GrantTable,
    e: GrantEntryV2,
    pinned: bool,
    readonly: bool,
    mapflag: bool,
    ld: DomId,
) -> Result<u16, i16> {
    let (flags, domid) = (e.flags(), e.domid());
    let mask = GTF_type_mask | if mapflag { GTF_sub_page } else { 0 };
    // Version 2 also pins a transitive grant, for a copy only (a map of one is refused before
    // any status bit is set: differential case `grant.v2_map_transitive_words`).
    let kind_ok = |flags: u16| {
        flags & mask == GTF_permit_access
            || (gt.version == 2 && !mapflag && flags & mask == GTF_transitive)
    };
    if !pinned && (!kind_ok(flags) || domid != ld) {
        return Err(GNTST_general_error); // "Bad flags or dom"
    }
    if !readonly && flags & GTF_readonly != 0 {
        return Err(GNTST_general_error); // "Attempt to write-pin a r/o grant entry"
    }
    Ok(if readonly {
        GTF_reading
    } else {
        GTF_reading | GTF_writing
    })
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;
