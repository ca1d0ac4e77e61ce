//! Page-table construction, the XenoLinux way: the kernel never writes an entry itself.
//!
//! A frame becomes a page table in four steps, each one something the hypervisor checks:
//!
//! 1. **allocate** it from the frame allocator (it is mapped writable in the direct map);
//! 2. **zero** it through that writable mapping: a table must not inherit stale entries;
//! 3. **remap it read-only** (`update_va_mapping` on its direct-map address): Xen refuses to
//!    validate a frame as a page table while a writable mapping of it exists, and the read-only
//!    mapping is how the kernel reads its tables afterwards;
//! 4. **fill and link** it with `mmu_update` (through [`MmuBatch`]): an entry written into a
//!    frame that is not (yet) a validated table is a checked plain write; linking the frame into
//!    a validated parent makes Xen validate it, entry by entry, and from then on every update of
//!    it is validated too. A new address space is pinned (`MMUEXT_PIN_L4_TABLE`), which
//!    validates the whole tree, before it is installed.
//!
//! Tearing down runs the other way: unlink (or unpin), after which the frame is an ordinary page
//! again, remap it writable, free it.

use core::fmt;
use core::ptr;

use guest_kernel::frame_alloc::FreeError;
use guest_kernel::layout::{direct_map_va, RegionError};
use guest_kernel::mmu_batch::{BadBatchSize, MmuBatch, MmuError, MmuUpdateSink, Mode};
use guest_kernel::paging::{
    entry_frame, entry_maddr, index, make_entry, Mfn, Pfn, ENTRIES, PTE_A, PTE_D, PTE_P,
    PTE_PSE_OR_PAT, PTE_RW, TABLE_FLAGS,
};
use hypercall_abi::xen::{MmuUpdate, MmuextOp, DOMID_SELF, MMU_NORMAL_PT_UPDATE, UVMF_INVLPG};

use super::hypercall as hc;
use super::mm;

/// Why building or tearing down page tables failed.
#[derive(Clone, Copy, Debug)]
pub enum PtError {
    /// The frame allocator is empty.
    OutOfFrames,
    /// The start-of-day layout is not what Xen documents.
    Region(RegionError),
    /// A frame has no valid p2m entry.
    NoMfn(Pfn),
    /// A machine frame is not one of ours.
    NotOurs(Mfn),
    /// A frame's direct-map page is not mapped writable (so it cannot be zeroed there).
    NotWritable(u64),
    /// A level of the walk to `va` is a superpage.
    Superpage(u64),
    /// A batch of updates was refused.
    Mmu(&'static str, MmuError),
    /// A single hypercall was refused: what, and its return code.
    Hypercall(&'static str, i64),
    /// A frame could not be freed.
    Free(FreeError),
    /// A batch size outside 1..=512.
    BatchSize(BadBatchSize),
    /// A teardown did not give back every frame its construction took.
    Leak { before: u64, now: u64 },
}

impl fmt::Display for PtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtError::OutOfFrames => write!(f, "out of frames"),
            PtError::Region(e) => write!(f, "start-of-day layout: {e}"),
            PtError::NoMfn(p) => write!(f, "{p} has no machine frame"),
            PtError::NotOurs(m) => write!(f, "{m} is not one of our frames"),
            PtError::NotWritable(va) => write!(f, "{va:#x} is not mapped writable"),
            PtError::Superpage(va) => write!(f, "{va:#x} lies in a superpage"),
            PtError::Mmu(what, e) => write!(f, "{what}: {e}"),
            PtError::Hypercall(what, rc) => write!(f, "{what}={rc}"),
            PtError::Free(e) => write!(f, "{e}"),
            PtError::BatchSize(e) => write!(f, "{e}"),
            PtError::Leak { before, now } => {
                write!(f, "{before} free frames before, {now} after")
            }
        }
    }
}

/// The real `mmu_update`, on our own domain.
pub struct Hypervisor;

impl MmuUpdateSink for Hypervisor {
    fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> (i64, u32) {
        hc::mmu_update(reqs, DOMID_SELF)
    }
}

/// A batch of updates to our own page tables.
pub type Batch = MmuBatch<Hypervisor>;

/// A new [`Batch`] in `mode`.
pub fn batch(mode: Mode) -> Result<Batch, PtError> {
    MmuBatch::new(Hypervisor, mode).map_err(PtError::BatchSize)
}

/// The direct-map address of one of our machine frames.
pub fn frame_va(mfn: Mfn) -> Result<u64, PtError> {
    mm::pfn_of(mfn)
        .map(direct_map_va)
        .ok_or(PtError::NotOurs(mfn))
}

/// Entry `idx` of the page table in frame `table`, read through its (read-only) direct-map page.
pub fn read_entry(table: Mfn, idx: usize) -> Result<u64, PtError> {
    let va = frame_va(table)?;
    assert!(idx < ENTRIES);
    // SAFETY: `va` is the direct-map page of one of our frames, mapped for the kernel's lifetime
    // (Xen's initial region, or the direct map `direct_map::init_memory` built before any table was made
    // from the allocator); `idx` < 512 keeps the read inside the page. Volatile: the hypervisor
    // changes the contents behind the compiler's back.
    Ok(unsafe { ptr::read_volatile((va as *const u64).add(idx)) })
}

/// `update_va_mapping(va, pte, UVMF_INVLPG)` with the error named `what`.
fn remap(what: &'static str, va: u64, pte: u64) -> Result<(), PtError> {
    // SAFETY: callers remap only direct-map pages of frames they own exclusively (a frame just
    // allocated, or a table no longer in use); no Rust reference points into them.
    match unsafe { hc::update_va_mapping(va, pte, UVMF_INVLPG) } {
        0 => Ok(()),
        rc => Err(PtError::Hypercall(what, rc)),
    }
}

/// Steps 1-3: a zeroed frame, mapped read-only, ready to become a page table.
pub fn new_table() -> Result<Mfn, PtError> {
    let pfn = mm::alloc_frame().ok_or(PtError::OutOfFrames)?;
    let prepared = prepare_table(pfn);
    if prepared.is_err() {
        let _ = mm::free_frame(pfn);
    }
    prepared
}

fn prepare_table(pfn: Pfn) -> Result<Mfn, PtError> {
    let mfn = mm::mfn_of(pfn).ok_or(PtError::NoMfn(pfn))?;
    let va = direct_map_va(pfn);
    let writable = mm::l1_slot(va).is_some_and(|s| {
        s.value & (PTE_P | PTE_RW) == PTE_P | PTE_RW && entry_frame(s.value) == mfn.0
    });
    if !writable {
        return Err(PtError::NotWritable(va));
    }
    // SAFETY: the frame was just taken from the allocator, so nothing else uses it, and its
    // direct-map page at `va` is mapped writable (checked above).
    unsafe { ptr::write_bytes(va as *mut u8, 0, 4096) };
    // Xen adds _PAGE_USER and its own bits; the guest writes only the architectural ones.
    remap(
        "update_va_mapping(read-only)",
        va,
        make_entry(mfn.0, PTE_P | PTE_A),
    )?;
    Ok(mfn)
}

/// Gives back a frame that is no longer a page table anywhere: its direct-map page becomes
/// writable again (Xen refuses while the frame is still a validated table) and it is freed.
pub fn release_table(mfn: Mfn) -> Result<(), PtError> {
    let pfn = mm::pfn_of(mfn).ok_or(PtError::NotOurs(mfn))?;
    remap(
        "update_va_mapping(writable)",
        direct_map_va(pfn),
        make_entry(mfn.0, PTE_P | PTE_RW | PTE_A | PTE_D),
    )?;
    mm::free_frame(pfn).map_err(PtError::Free)
}

/// Step 4's link: entry `idx` of table `parent` := `entry`, as one `mmu_update`.
pub fn set_entry(what: &'static str, parent: Mfn, idx: usize, entry: u64) -> Result<(), PtError> {
    let req = [MmuUpdate {
        ptr: entry_maddr(parent, idx) | MMU_NORMAL_PT_UPDATE,
        val: entry,
    }];
    match hc::mmu_update(&req, DOMID_SELF) {
        (0, _) => Ok(()),
        (rc, _) => Err(PtError::Hypercall(what, rc)),
    }
}

/// One `mmuext_op` with argument `arg1`.
pub fn mmuext(what: &'static str, cmd: u32, arg1: u64) -> Result<(), PtError> {
    let op = [MmuextOp {
        cmd,
        arg1,
        ..Default::default()
    }];
    match hc::mmuext_op(&op, DOMID_SELF) {
        (0, _) => Ok(()),
        (rc, _) => Err(PtError::Hypercall(what, rc)),
    }
}

/// The L1 table that maps `va` under the (validated, live) L4 `l4`, building the missing levels
/// top-down: a new L3 is linked into the L4 before its L2 exists, and so on, each link validated
/// by the hypervisor as it is made.
pub fn ensure_l1(l4: Mfn, va: u64) -> Result<Mfn, PtError> {
    let mut table = l4;
    for level in [4u32, 3, 2] {
        let idx = index(va, level);
        let e = read_entry(table, idx)?;
        if e & PTE_P != 0 {
            if level < 4 && e & PTE_PSE_OR_PAT != 0 {
                return Err(PtError::Superpage(va));
            }
            table = Mfn(entry_frame(e));
            continue;
        }
        let child = new_table()?;
        let what = match level {
            4 => "mmu_update(link L3 into L4)",
            3 => "mmu_update(link L2 into L3)",
            _ => "mmu_update(link L1 into L2)",
        };
        if let Err(e) = set_entry(what, table, idx, make_entry(child.0, TABLE_FLAGS)) {
            let _ = release_table(child);
            return Err(e);
        }
        table = child;
    }
    Ok(table)
}

/// The L1 table mapping `va` under `l4`, if every level down to it is present.
pub fn find_l1(l4: Mfn, va: u64) -> Result<Option<Mfn>, PtError> {
    let mut table = l4;
    for level in [4u32, 3, 2] {
        let e = read_entry(table, index(va, level))?;
        if e & PTE_P == 0 {
            return Ok(None);
        }
        if level < 4 && e & PTE_PSE_OR_PAT != 0 {
            return Err(PtError::Superpage(va));
        }
        table = Mfn(entry_frame(e));
    }
    Ok(Some(table))
}

/// The L1 entry mapping `va` under `l4` (0 if a level is missing).
pub fn lookup(l4: Mfn, va: u64) -> Result<u64, PtError> {
    match find_l1(l4, va)? {
        Some(l1) => read_entry(l1, index(va, 1)),
        None => Ok(0),
    }
}

/// Releases a subtree that is linked nowhere any more: every table below `table` (a level-`level`
/// table), `table` itself, and, if `free_leaves`, the frames its L1s map.
pub fn free_subtree(table: Mfn, level: u32, free_leaves: bool) -> Result<(), PtError> {
    for idx in 0..ENTRIES {
        let e = read_entry(table, idx)?;
        if e & PTE_P == 0 {
            continue;
        }
        let child = Mfn(entry_frame(e));
        if level > 1 {
            free_subtree(child, level - 1, free_leaves)?;
        } else if free_leaves {
            let pfn = mm::pfn_of(child).ok_or(PtError::NotOurs(child))?;
            mm::free_frame(pfn).map_err(PtError::Free)?;
        }
    }
    release_table(table)
}
