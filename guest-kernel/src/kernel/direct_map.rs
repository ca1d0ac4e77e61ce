//! The direct map: [`init_memory`] finds the free pages of the start-of-day region, hands them to
//! the frame allocator (`mm.rs`) and maps every page up to `nr_pages` at its direct-map address,
//! building the L1 tables the XenoLinux way (`pt.rs`). Nothing at boot needs it: it runs when a
//! command (`init`, `bench=pt-update`) asks for memory. Above both `mm` and `pt`, so neither
//! imports the other's caller.

use core::fmt;

use guest_kernel::layout::{direct_map_va, BootRegion};
use guest_kernel::mmu_batch::{Mode, MAX_BATCH};
use guest_kernel::paging::{entry_maddr, index, make_entry, Pfn, PTE_A, PTE_D, PTE_P, PTE_RW};
use spin::Once;

use super::mm::{self, free_frames, is_mapped, kernel_l4, layout, mfn_of};
use super::pt::{self, PtError};

/// What [`init_memory`] found and did.
#[derive(Clone, Copy, Debug)]
pub struct MemoryInfo {
    /// The start-of-day region.
    pub region: BootRegion,
    /// Free frames handed to the allocator.
    pub free: u64,
    /// Pages added to the direct map.
    pub mapped: u64,
    /// Page-table frames that took (all from the allocator).
    pub tables: u64,
    /// `mmu_update` hypercalls that took.
    pub hypercalls: u64,
}

impl fmt::Display for MemoryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} free pages from {:#x}, direct map extended from {:#x} to {:#x} ({} pages, {} L1 tables, {} mmu_update calls)",
            self.free,
            self.region.free_start.0 << 12,
            self.region.mapped_end.0 << 12,
            self.region.nr_pages << 12,
            self.mapped,
            self.tables,
            self.hypercalls
        )
    }
}

static MEMORY: Once<Result<MemoryInfo, PtError>> = Once::new();

/// Finds the free pages, hands them to the allocator and extends the direct map over them; once
/// (later calls return the first outcome).
pub fn init_memory() -> Result<MemoryInfo, PtError> {
    *MEMORY.call_once(|| {
        let l = layout();
        let region = BootRegion::discover(l.pt_base, l.nr_pt_frames, l.nr_pages, |pfn| {
            is_mapped(direct_map_va(pfn))
        })
        .map_err(PtError::Region)?;
        let free = {
            let r = region.free_pages();
            mm::add_free_range(Pfn(r.start), Pfn(r.end))
        };
        let before = free_frames();
        let hypercalls = extend_direct_map(&region)?;
        Ok(MemoryInfo {
            region,
            free,
            mapped: region.unmapped_pages().count() as u64,
            tables: before - free_frames(),
            hypercalls,
        })
    })
}

/// Maps every page of `region` that Xen did not at its direct-map address, writable, one L1 per
/// 2 MiB. The L1s come from the allocator's lowest frames, which lie in the mapped padding (see
/// `frame_alloc`). Returns the number of `mmu_update` calls.
fn extend_direct_map(region: &BootRegion) -> Result<u64, PtError> {
    let l4 = kernel_l4();
    let mut batch = pt::batch(Mode::Batched(MAX_BATCH))?;
    let mut l1 = None;
    let mut links = 0;
    for pfn in region.unmapped_pages() {
        let va = direct_map_va(Pfn(pfn));
        if l1.is_none() || index(va, 1) == 0 {
            let before = free_frames();
            l1 = Some(pt::ensure_l1(l4, va)?);
            links += before - free_frames();
        }
        let Some(mfn) = mfn_of(Pfn(pfn)) else {
            continue; // a hole in the p2m: nothing to map
        };
        let l1 = l1.expect("set above");
        batch
            .set_pte(
                entry_maddr(l1, index(va, 1)),
                make_entry(mfn.0, PTE_P | PTE_RW | PTE_A | PTE_D),
            )
            .map_err(|e| PtError::Mmu("direct map", e))?;
    }
    batch.flush().map_err(|e| PtError::Mmu("direct map", e))?;
    Ok(batch.hypercalls() + links)
}
