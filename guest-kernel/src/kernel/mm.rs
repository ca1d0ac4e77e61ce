//! Memory helpers: the p2m/m2p translations and a read-only walk of the guest's own page tables.
//!
//! Xen maps the bootstrap page tables read-only into the initial region (`xen.h`, "Start-of-day
//! memory layout"), and the machine-to-phys table read-only at `MACH2PHYS_VIRT_START`, so the
//! kernel can find the machine address of any of its PTEs, which is what `mmu_update` takes.
//! With VIRT_BASE 0, guest pfn n is mapped at virtual address n << 12.

use core::ptr;

use guest_kernel::paging::{entry_frame, index, PTE_P, PTE_PSE_OR_PAT};
use hypercall_abi::arch_x86_64::MACH2PHYS_VIRT_START;
use hypercall_abi::xen::StartInfo;
use spin::Once;

/// What the kernel learnt from start_info about its memory.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Virtual address of the L4 table (`start_info.pt_base`).
    pub pt_base: u64,
    /// Virtual address of the p2m list (`start_info.mfn_list`).
    pub mfn_list: u64,
    /// Number of pages in the p2m list (`start_info.nr_pages`).
    pub nr_pages: u64,
}

static LAYOUT: Once<Layout> = Once::new();

/// Records the layout from start_info.
pub fn init(si: &StartInfo) {
    LAYOUT.call_once(|| Layout {
        pt_base: si.pt_base,
        mfn_list: si.mfn_list,
        nr_pages: si.nr_pages,
    });
}

/// The layout recorded by [`init`].
pub fn layout() -> Layout {
    *LAYOUT.get().expect("mm::init runs first")
}

/// The machine frame backing guest pfn `pfn`, from the p2m list.
pub fn pfn_to_mfn(pfn: u64) -> Option<u64> {
    let l = layout();
    if pfn >= l.nr_pages {
        return None;
    }
    // SAFETY: the p2m list holds nr_pages u64 entries and is mapped in the initial region for the
    // kernel's lifetime; we only read it.
    Some(unsafe { ptr::read_volatile((l.mfn_list as *const u64).add(pfn as usize)) })
}

/// The guest pfn of machine frame `mfn`, from the hypervisor's read-only M2P table.
pub fn mfn_to_pfn(mfn: u64) -> u64 {
    // SAFETY: the hypervisor maps the M2P read-only at MACH2PHYS_VIRT_START for every PV guest;
    // the frames we ask about are our own page tables, which lie inside the table.
    unsafe { ptr::read_volatile((MACH2PHYS_VIRT_START as *const u64).add(mfn as usize)) }
}

/// Virtual address of the machine frame `mfn` in the initial region (pfn << 12).
pub fn mfn_to_va(mfn: u64) -> u64 {
    mfn_to_pfn(mfn) << 12
}

/// The machine frame backing virtual address `va` of the initial region.
pub fn va_to_mfn(va: u64) -> Option<u64> {
    pfn_to_mfn(va >> 12)
}

/// Reads entry `idx` of the page table mapped at `table_va`.
fn read_entry(table_va: u64, idx: usize) -> u64 {
    // SAFETY: `table_va` is the read-only mapping of one of our page tables (found by walking
    // from pt_base), 512 entries long; `idx` < 512 by construction of `paging::index`.
    unsafe { ptr::read_volatile((table_va as *const u64).add(idx)) }
}

/// Where the L1 entry translating `va` lives.
#[derive(Clone, Copy, Debug)]
pub struct L1Slot {
    /// Machine address of the entry (what `mmu_update` takes in `ptr`).
    pub maddr: u64,
    /// Machine frame of the L1 table.
    pub l1_mfn: u64,
    /// The entry's current value.
    pub value: u64,
}

/// Walks the current page tables down to the L1 entry for `va`; `None` if a level is not present
/// or `va` is mapped by a superpage.
pub fn l1_slot(va: u64) -> Option<L1Slot> {
    let mut table_va = layout().pt_base;
    for level in [4u32, 3, 2] {
        let e = read_entry(table_va, index(va, level));
        if e & PTE_P == 0 || (level < 4 && e & PTE_PSE_OR_PAT != 0) {
            return None;
        }
        let next_mfn = entry_frame(e);
        if level == 2 {
            let l1_va = mfn_to_va(next_mfn);
            let value = read_entry(l1_va, index(va, 1));
            let maddr = (next_mfn << 12) + 8 * index(va, 1) as u64;
            return Some(L1Slot {
                maddr,
                l1_mfn: next_mfn,
                value,
            });
        }
        table_va = mfn_to_va(next_mfn);
    }
    None
}

/// Machine frame of the current L4 table.
pub fn l4_mfn() -> u64 {
    va_to_mfn(layout().pt_base).expect("pt_base lies in the initial region")
}
