//! Machine memory as the boot page tables map it: the image's own range, and the direct map.

use core::ops::Range;

use xen_core::layout::{self, XEN_VIRT_START};
use xen_core::mm::{MachineMemory, Maddr};

extern "C" {
    /// First byte of the image (defined by `xen.ld`).
    static __image_start: u8;
    /// One past the image's last byte, `.bss` included (defined by `xen.ld`).
    static __image_end: u8;
}

/// The machine addresses the hypervisor image occupies, from its first byte to the end of `.bss`.
pub fn image_maddr_range() -> Range<u64> {
    // Only the symbols' addresses are used; they are link-time constants inside the image window.
    let start = (&raw const __image_start) as u64;
    let end = (&raw const __image_end) as u64;
    (start - XEN_VIRT_START)..(end - XEN_VIRT_START)
}

/// Read-only access to machine memory through the boot direct map, for parsing what the boot
/// loader left there.
///
/// Ranges outside the boot direct map (the low 4 GiB) and ranges that overlap the hypervisor image
/// are refused: the image holds live Rust data (the console lock, page tables), which must never be
/// aliased by a `&[u8]`.
pub struct BootDirectMap;

impl MachineMemory for BootDirectMap {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        let end = addr.0.checked_add(u64::try_from(len).ok()?)?;
        if end > layout::BOOT_DIRECTMAP_SIZE {
            return None;
        }
        let image = image_maddr_range();
        if addr.0 < image.end && image.start < end {
            return None;
        }
        let virt = layout::directmap_virt(addr.0)?;
        // SAFETY: `[addr, end)` lies in the low 4 GiB, which `boot.rs` maps in the direct map for
        // the hypervisor's lifetime. It does not overlap the image, and nothing else writes machine
        // memory while the boot information is parsed (one CPU, no guests, no allocator yet), so
        // the bytes do not change while the returned slice lives.
        Some(unsafe { core::slice::from_raw_parts(virt as *const u8, len) })
    }
}
