//! The guest's virtual address map and the start-of-day region Xen leaves it.
//!
//! The kernel is linked at 1 MiB with VIRT_BASE 0, so Xen maps pseudo-physical page n at virtual
//! n << 12 for the whole initial region. The kernel extends that 1:1 map over all its pages (the
//! *direct map*, XenoLinux's `__va()`), so every frame it owns, page tables included, has a
//! kernel address. That puts the kernel in the bottom of L4 slot 0, where native kernels put user
//! space; user space therefore starts at L4 slot 1:
//!
//! ```text
//!   L4 slot 0        0x0000_0000_0000 ..  direct map: pfn n at n << 12 (kernel only)
//!   L4 slot 1        0x0080_0000_0000 ..  user space: present in the kernel L4 *and* the user L4,
//!                                         through the same L3 (the XenoLinux arrangement)
//!   L4 slot 2        0x0100_0000_0000 ..  kernel scratch range (bench=pt-update, lab=pt-batching)
//!   L4 slot 3        0x0180_0000_0000 ..  device MMIO: PCI BARs dom0 maps, uncached (blkdev)
//!   L4 slot 4        0x0200_0000_0000 ..  windows: other domains' frames and grants dom0 maps
//!                                         (`ring_page`), no memory of ours behind them
//!   L4 slots 256-271 0xffff_8000_0000_0000 ..  Xen's, copied into every L4 it validates
//! ```
//!
//! The user L4 holds only slot 1 (plus Xen's slots, which Xen adds): in user mode none of the
//! kernel's mappings exist.

use core::ops::Range;

use crate::paging::{index, Pfn, PAGE_SIZE};

/// L4 slot of the direct map.
pub const DIRECT_MAP_SLOT: usize = 0;
/// L4 slot of user space.
pub const USER_SLOT: usize = 1;
/// L4 slot of the kernel's scratch range.
pub const SCRATCH_SLOT: usize = 2;
/// L4 slot of device MMIO mappings (dom0's PCI BARs).
pub const MMIO_SLOT: usize = 3;
/// L4 slot of the windows other domains' pages are mapped at.
pub const WINDOW_SLOT: usize = 4;
/// Xen's reserved L4 slots (`HYPERVISOR_VIRT_START` .. `HYPERVISOR_VIRT_END`).
pub const XEN_SLOTS: Range<usize> = 256..272;

/// First user address.
pub const USER_BASE: u64 = 0x0000_0080_0000_0000;
/// End of user space (exclusive): the end of L4 slot 1.
pub const USER_END: u64 = 0x0000_0100_0000_0000;
/// Where `init`'s code is mapped: 4 MiB into user space, as ELF executables traditionally start.
pub const INIT_TEXT: u64 = USER_BASE + 0x40_0000;
/// Top of `init`'s stack (the stack page is just below it).
pub const INIT_STACK_TOP: u64 = USER_BASE + 0x80_0000;
/// Start of the kernel's scratch range.
pub const SCRATCH_BASE: u64 = 0x0000_0100_0000_0000;
/// End of the kernel's scratch range (exclusive).
pub const SCRATCH_END: u64 = 0x0000_0180_0000_0000;

/// Start of the device MMIO range.
pub const MMIO_BASE: u64 = 0x0000_0180_0000_0000;
/// End of the device MMIO range (exclusive).
pub const MMIO_END: u64 = 0x0000_0200_0000_0000;

/// Start of the window range.
pub const WINDOW_BASE: u64 = 0x0000_0200_0000_0000;
/// End of the window range (exclusive).
pub const WINDOW_END: u64 = 0x0000_0280_0000_0000;

/// The direct-map address of `pfn`.
pub const fn direct_map_va(pfn: Pfn) -> u64 {
    pfn.0 << 12
}

/// Pages the direct map can hold (all of L4 slot 0).
pub const DIRECT_MAP_MAX_PAGES: u64 = 1 << 27;

/// The range `[start, start + len)` if it lies inside user space; `None` if it leaves it or
/// wraps around. An empty range at a user address is inside.
pub fn user_range(start: u64, len: u64) -> Option<Range<u64>> {
    let end = start.checked_add(len)?;
    (start >= USER_BASE && end <= USER_END).then_some(start..end)
}

/// Why the start-of-day region does not look like Xen's layout (`xen.h`, "Start-of-day memory
/// layout").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `start_info.pt_base` is not page-aligned.
    PtBaseUnaligned(u64),
    /// The bootstrap tables and boot stack end beyond `nr_pages`.
    BeyondNrPages { stack_end: Pfn, nr_pages: u64 },
    /// The page after the bootstrap tables (the boot stack) is not mapped.
    StackNotMapped(Pfn),
    /// Less than the 512 KiB of padding Xen guarantees after the boot stack.
    PaddingTooSmall { free_start: Pfn, mapped_end: Pfn },
    /// More pages than the direct map can hold.
    TooManyPages(u64),
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::PtBaseUnaligned(va) => write!(f, "pt_base {va:#x} is not page-aligned"),
            RegionError::BeyondNrPages {
                stack_end,
                nr_pages,
            } => write!(
                f,
                "boot stack ends at {stack_end}, past nr_pages {nr_pages}"
            ),
            RegionError::StackNotMapped(p) => write!(f, "boot stack page {p} is not mapped"),
            RegionError::PaddingTooSmall {
                free_start,
                mapped_end,
            } => write!(
                f,
                "only {} pages of padding after the boot stack ({free_start}..{mapped_end})",
                mapped_end.0 - free_start.0
            ),
            RegionError::TooManyPages(n) => write!(f, "{n} pages do not fit in the direct map"),
        }
    }
}

/// Pages of padding Xen guarantees after the boot stack (512 KiB).
pub const MIN_PADDING_PAGES: u64 = (512 << 10) / PAGE_SIZE;

/// Where the guest's own memory starts, as the start-of-day layout leaves it.
///
/// Xen packs image, p2m list, start_info, bootstrap page tables (`pt_base`, `nr_pt_frames`) and
/// a one-page boot stack, then pads with at least 512 KiB up to a 4 MiB boundary, and maps the
/// region 1:1 (`xen.h`). Everything from the end of the boot stack to `nr_pages` is free: the
/// padding is mapped, the rest is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootRegion {
    /// First page after the boot stack: the first free page.
    pub free_start: Pfn,
    /// First page Xen did not map: the end of the initial region.
    pub mapped_end: Pfn,
    /// `start_info.nr_pages`.
    pub nr_pages: u64,
}

impl BootRegion {
    /// Finds the region from start_info's `pt_base`, `nr_pt_frames` and `nr_pages`, asking
    /// `is_mapped` (a walk of the bootstrap page tables) where the initial mapping ends.
    pub fn discover(
        pt_base: u64,
        nr_pt_frames: u64,
        nr_pages: u64,
        mut is_mapped: impl FnMut(Pfn) -> bool,
    ) -> Result<BootRegion, RegionError> {
        if !pt_base.is_multiple_of(PAGE_SIZE) {
            return Err(RegionError::PtBaseUnaligned(pt_base));
        }
        if nr_pages > DIRECT_MAP_MAX_PAGES {
            return Err(RegionError::TooManyPages(nr_pages));
        }
        let stack = Pfn(pt_base / PAGE_SIZE + nr_pt_frames);
        let free_start = Pfn(stack.0 + 1);
        if free_start.0 > nr_pages {
            return Err(RegionError::BeyondNrPages {
                stack_end: free_start,
                nr_pages,
            });
        }
        if !is_mapped(stack) {
            return Err(RegionError::StackNotMapped(stack));
        }
        let mut end = free_start.0;
        while end < nr_pages && is_mapped(Pfn(end)) {
            end += 1;
        }
        let mapped_end = Pfn(end);
        if end < nr_pages && end - free_start.0 < MIN_PADDING_PAGES {
            return Err(RegionError::PaddingTooSmall {
                free_start,
                mapped_end,
            });
        }
        Ok(BootRegion {
            free_start,
            mapped_end,
            nr_pages,
        })
    }

    /// The free pages: from the end of the boot stack to `nr_pages`.
    pub fn free_pages(&self) -> Range<u64> {
        self.free_start.0..self.nr_pages
    }

    /// The pages the direct map must add to Xen's initial mapping.
    pub fn unmapped_pages(&self) -> Range<u64> {
        self.mapped_end.0..self.nr_pages
    }
}

/// Whether the constants above keep their promises (checked by the tests, and cheap enough to
/// assert at run time).
pub const fn slots_are_consistent() -> bool {
    index(USER_BASE, 4) == USER_SLOT
        && index(USER_END - 1, 4) == USER_SLOT
        && index(SCRATCH_BASE, 4) == SCRATCH_SLOT
        && index(SCRATCH_END - 1, 4) == SCRATCH_SLOT
        && index(MMIO_BASE, 4) == MMIO_SLOT
        && index(MMIO_END - 1, 4) == MMIO_SLOT
        && index(WINDOW_BASE, 4) == WINDOW_SLOT
        && index(WINDOW_END - 1, 4) == WINDOW_SLOT
        && index(INIT_TEXT, 4) == USER_SLOT
        && index(INIT_STACK_TOP - 1, 4) == USER_SLOT
        && DIRECT_MAP_MAX_PAGES << 12 == USER_BASE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Xen 4.17's dom0 layout for this kernel at dom0_mem=64M: page tables at 0x1c1000 (5
    /// frames), boot stack 0x1c6000, region end 0x400000.
    fn xen_dom0(pfn: Pfn) -> bool {
        pfn.0 < 0x400
    }

    #[test]
    fn the_slots_hold_what_the_map_says() {
        assert!(slots_are_consistent());
        assert!(!XEN_SLOTS.contains(&USER_SLOT));
        assert!(!XEN_SLOTS.contains(&SCRATCH_SLOT));
        assert!(!XEN_SLOTS.contains(&WINDOW_SLOT));
        assert_eq!(direct_map_va(Pfn(0x1c6)), 0x1c_6000);
    }

    #[test]
    fn discovers_xen_s_dom0_region() {
        let r = BootRegion::discover(0x1c_1000, 5, 16384, xen_dom0).unwrap();
        assert_eq!(r.free_start, Pfn(0x1c7));
        assert_eq!(r.mapped_end, Pfn(0x400));
        assert_eq!(r.free_pages(), 0x1c7..16384);
        assert_eq!(r.unmapped_pages(), 0x400..16384);
    }

    #[test]
    fn a_fully_mapped_domain_needs_no_extension() {
        let r = BootRegion::discover(0x1c_1000, 5, 0x300, |_| true).unwrap();
        assert_eq!(r.mapped_end, Pfn(0x300));
        assert!(r.unmapped_pages().is_empty());
    }

    #[test]
    fn layouts_unlike_xen_s_are_refused() {
        assert_eq!(
            BootRegion::discover(0x1c_1800, 5, 16384, xen_dom0),
            Err(RegionError::PtBaseUnaligned(0x1c_1800))
        );
        assert_eq!(
            BootRegion::discover(0x1c_1000, 5, 0x1c0, xen_dom0),
            Err(RegionError::BeyondNrPages {
                stack_end: Pfn(0x1c7),
                nr_pages: 0x1c0
            })
        );
        assert_eq!(
            BootRegion::discover(0x1c_1000, 5, 16384, |p| p.0 < 0x1c6),
            Err(RegionError::StackNotMapped(Pfn(0x1c6)))
        );
        assert_eq!(
            BootRegion::discover(0x1c_1000, 5, 16384, |p| p.0 < 0x200),
            Err(RegionError::PaddingTooSmall {
                free_start: Pfn(0x1c7),
                mapped_end: Pfn(0x200)
            })
        );
        assert_eq!(
            BootRegion::discover(0x1c_1000, 5, DIRECT_MAP_MAX_PAGES + 1, xen_dom0),
            Err(RegionError::TooManyPages(DIRECT_MAP_MAX_PAGES + 1))
        );
    }

    #[test]
    fn user_ranges() {
        assert_eq!(user_range(INIT_TEXT, 21), Some(INIT_TEXT..INIT_TEXT + 21));
        assert_eq!(user_range(USER_BASE, 0), Some(USER_BASE..USER_BASE));
        assert_eq!(user_range(USER_END - 4, 4), Some(USER_END - 4..USER_END));
        // Kernel addresses, ranges leaving user space, and wrap-arounds are refused.
        assert_eq!(user_range(0x10_0000, 16), None);
        assert_eq!(user_range(USER_BASE - 1, 2), None);
        assert_eq!(user_range(USER_END - 4, 5), None);
        assert_eq!(user_range(INIT_TEXT, u64::MAX), None);
        assert_eq!(user_range(0xffff_8000_0000_0000, 8), None);
    }
}
