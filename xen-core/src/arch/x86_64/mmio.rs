//! Device registers in the direct map: making the 2 MiB page that holds them uncacheable.
//!
//! The boot page tables map machine 0..4 GiB at `DIRECTMAP_VIRT_START` with write-back 2 MiB
//! pages (`boot.rs`). Device registers must not be cached, so before the hypervisor touches one it
//! sets PCD|PWT on the direct-map entry covering it: that entry selects PAT entry 3, uncacheable
//! (UC), in the power-on PAT and in Xen's (`XEN_MSR_PAT`, loaded at boot by `entry.rs`). Firmware normally marks the MMIO hole UC in the MTRRs too, and
//! the stricter type wins, but the page tables should say so themselves.
//!
//! This is for devices alone in their 2 MiB frame (the local APIC at 0xFEE00000 is): the whole
//! superpage becomes uncached. A proper fixmap with 4 KiB entries comes with the real page tables.

use core::ptr;

use x86_64::instructions::tlb;
use x86_64::registers::control::Cr3;
use x86_64::VirtAddr;
use xen_core::layout::{self, l2_index, l3_index, l4_index};

const PTE_PRESENT: u64 = 1 << 0;
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
const PTE_PSE: u64 = 1 << 7;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Why a device range could not be mapped uncached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The address is outside the boot direct map (the low 4 GiB).
    NotInDirectMap,
    /// The page-table walk did not end at a present 2 MiB entry.
    UnexpectedMapping,
}

/// The address of entry `index` of the page table at machine address `table`: through the image
/// window for the boot page tables (in the image's `.bss`, which the direct map aliases read-only),
/// through the direct map for any other table.
fn entry_ptr(table: u64, index: usize) -> Result<*mut u64, MmioError> {
    let va = if super::mappings::image_maddr_range().contains(&table) {
        layout::XEN_VIRT_START + table
    } else {
        layout::directmap_virt(table).ok_or(MmioError::UnexpectedMapping)?
    };
    Ok((va + index as u64 * 8) as *mut u64)
}

/// Makes the direct-map superpage holding machine address `maddr` uncacheable and returns the
/// virtual address of `maddr` in the direct map.
pub fn directmap_uncached(maddr: u64) -> Result<u64, MmioError> {
    let va = layout::directmap_virt(maddr).ok_or(MmioError::NotInDirectMap)?;
    let (l4_frame, _) = Cr3::read();
    let mut table = l4_frame.start_address().as_u64();
    for index in [l4_index(va), l3_index(va)] {
        let e = entry_ptr(table, index)?;
        // SAFETY: `e` points into a page table of the live hierarchy (rooted at CR3), reached
        // through the image window or the direct map, which between them cover the machine
        // addresses the boot tables use (read-write in the image window's `.bss`). The
        // tables are plain memory owned by `boot.rs`'s assembly, never referenced from Rust.
        let entry = unsafe { ptr::read_volatile(e) };
        if entry & PTE_PRESENT == 0 || entry & PTE_PSE != 0 {
            return Err(MmioError::UnexpectedMapping);
        }
        table = entry & PTE_ADDR;
    }
    let e = entry_ptr(table, l2_index(va))?;
    // SAFETY: as above; this is the L2 entry that maps `va`.
    let entry = unsafe { ptr::read_volatile(e) };
    if entry & (PTE_PRESENT | PTE_PSE) != PTE_PRESENT | PTE_PSE {
        return Err(MmioError::UnexpectedMapping);
    }
    // SAFETY: the entry maps device space in the non-executable direct map; changing its cache
    // type only affects accesses through this alias, and there is one CPU, so flushing the local
    // TLB entry below is enough for the change to take effect.
    unsafe { ptr::write_volatile(e, entry | PTE_PCD | PTE_PWT) };
    tlb::flush(VirtAddr::new(va));
    Ok(va)
}
