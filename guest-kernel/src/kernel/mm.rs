//! Memory: the p2m/m2p translations, a read-only walk of the guest's own page tables, the frame
//! allocator and the direct map of all pseudo-physical memory.
//!
//! Xen maps the bootstrap page tables read-only into the initial region (`xen.h`, "Start-of-day
//! memory layout"), and the machine-to-phys table read-only at `MACH2PHYS_VIRT_START`, so the
//! kernel can find the machine address of any of its PTEs, which is what `mmu_update` takes.
//! With VIRT_BASE 0, guest pfn n is mapped at virtual address n << 12.
//!
//! Xen maps only the initial region (a few MiB); [`init_memory`](super::direct_map::init_memory) extends that 1:1 map over every
//! page up to `nr_pages` (the direct map, `guest_kernel::layout`), building the L1 tables the
//! XenoLinux way (`pt.rs`), and hands the free pages to the frame allocator. Nothing at boot
//! needs it: it runs when a command (`init`, `bench=pt-update`) asks for memory.

use core::ptr;

use guest_kernel::frame_alloc::{FrameAllocator, FreeError};
use guest_kernel::paging::{entry_frame, index, Mfn, Pfn, PTE_P, PTE_PSE_OR_PAT};
use hypercall_abi::arch_x86_64::MACH2PHYS_VIRT_START;
use hypercall_abi::xen::StartInfo;
use spin::{Mutex, Once};

/// What the kernel learnt from start_info about its memory.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Virtual address of the L4 table (`start_info.pt_base`).
    pub pt_base: u64,
    /// Virtual address of the p2m list (`start_info.mfn_list`).
    pub mfn_list: u64,
    /// Number of pages in the p2m list (`start_info.nr_pages`).
    pub nr_pages: u64,
    /// Number of bootstrap page-table frames (`start_info.nr_pt_frames`).
    pub nr_pt_frames: u64,
}

static LAYOUT: Once<Layout> = Once::new();

/// Records the layout from start_info.
pub fn init(si: &StartInfo) {
    LAYOUT.call_once(|| Layout {
        pt_base: si.pt_base,
        mfn_list: si.mfn_list,
        nr_pages: si.nr_pages,
        nr_pt_frames: si.nr_pt_frames,
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

/// Sets the p2m entry of `pfn` (`u64::MAX`: no frame, Linux's `INVALID_P2M_ENTRY`): the
/// balloon's, after it gave a frame back or got one.
pub fn set_p2m(pfn: u64, mfn: u64) {
    let l = layout();
    if pfn >= l.nr_pages {
        return;
    }
    // SAFETY: the p2m list holds nr_pages u64 entries and is mapped writable in the initial
    // region for the kernel's lifetime (Xen's start-of-day layout); only the balloon writes it,
    // and nothing holds a reference into it.
    unsafe { ptr::write_volatile((l.mfn_list as *mut u64).add(pfn as usize), mfn) }
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

/// The machine frame backing `pfn`, if the p2m has a valid one that the M2P maps back to `pfn`.
pub fn mfn_of(pfn: Pfn) -> Option<Mfn> {
    let mfn = pfn_to_mfn(pfn.0)?;
    // INVALID_P2M_ENTRY is ~0; anything the M2P does not map back is not ours either.
    (mfn != u64::MAX && mfn < 1 << 40 && mfn_to_pfn(mfn) == pfn.0).then_some(Mfn(mfn))
}

/// The pseudo-physical frame of `mfn`, if it is one of ours (checked against the p2m).
pub fn pfn_of(mfn: Mfn) -> Option<Pfn> {
    if mfn.0 >= 1 << 40 {
        return None;
    }
    let pfn = Pfn(mfn_to_pfn(mfn.0));
    (pfn_to_mfn(pfn.0) == Some(mfn.0)).then_some(pfn)
}

/// Whether the current page tables map `va` with a 4 KiB page.
pub fn is_mapped(va: u64) -> bool {
    l1_slot(va).is_some_and(|s| s.value & PTE_P != 0)
}

/// Frames the bitmap can track: 2^20 (4 GiB of guest memory, 128 KiB of bitmap).
const FRAME_WORDS: usize = 1 << 14;

/// The frame allocator. Never locked by a trap handler, so the kernel cannot deadlock on it.
static FRAMES: Mutex<FrameAllocator<FRAME_WORDS>> = Mutex::new(FrameAllocator::new());

/// Takes the lowest free frame (mapped in the direct map once [`init_memory`](super::direct_map::init_memory) has run).
pub fn alloc_frame() -> Option<Pfn> {
    FRAMES.lock().alloc()
}

/// Takes the lowest run of `n` consecutive free frames (device DMA).
pub fn alloc_contiguous(n: u64) -> Option<Pfn> {
    FRAMES.lock().alloc_contiguous(n)
}

/// Gives a frame back.
pub fn free_frame(pfn: Pfn) -> Result<(), FreeError> {
    FRAMES.lock().free(pfn)
}

/// Hands the frames `start..end` to the allocator; returns how many it took.
pub fn add_free_range(start: Pfn, end: Pfn) -> u64 {
    FRAMES.lock().add_free_range(start, end)
}

/// Number of free frames.
pub fn free_frames() -> u64 {
    FRAMES.lock().free_count()
}

/// Machine frame of the kernel's L4 (the one Xen built; the kernel never replaces it).
pub fn kernel_l4() -> Mfn {
    Mfn(l4_mfn())
}
