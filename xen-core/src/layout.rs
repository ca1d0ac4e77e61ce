//! The hypervisor's virtual address layout: Xen's reserved L4 slots, the image and the direct map.
//!
//! A 64-bit PV guest kernel owns the lower half of its address space *and* the top 2 GiB (Linux
//! links itself at 0xffffffff80000000), so the hypervisor must live where Xen lives: in L4 slots
//! 256..=271, which Xen reserves in every PV guest's L4. Values follow Xen 4.17,
//! `xen/arch/x86/include/asm/config.h`; the linker script `xen.ld` repeats `XEN_VIRT_START` and the
//! link checks that the two agree.

/// First byte of the range Xen reserves for itself in every 64-bit PV address space (L4 slot 256).
/// The same value is `HYPERVISOR_VIRT_START` in `xen/include/public/arch-x86/xen-x86_64.h`.
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// One past the last byte of the reserved range (L4 slot 272).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

/// Where Xen's own image is mapped: a 1 GiB window in L4 slot 261.
pub const XEN_VIRT_START: u64 = 0xFFFF_82D0_4000_0000;
/// One past the end of the image window (`XEN_VIRT_END` in Xen).
pub const XEN_VIRT_END: u64 = XEN_VIRT_START + GIB;
/// Offset of the image inside its window, and its machine load address (`XEN_IMG_OFFSET` in Xen):
/// the boot page tables map `XEN_VIRT_START + x` to machine address `x` for the whole window.
pub const XEN_IMG_OFFSET: u64 = 2 * MIB;

/// The most the image may take, `.bss` included: `boot.rs` reserves the 4 KiB-page tables that map
/// it for this size, and `xen.ld` checks that the image fits.
pub const XEN_IMG_MAX_SIZE: u64 = 16 * MIB;

/// Start of the direct map (1:1 map of machine memory, L4 slot 262 onwards), `DIRECTMAP_VIRT_START`.
pub const DIRECTMAP_VIRT_START: u64 = 0xFFFF_8300_0000_0000;
/// End of the direct map for PV-capable builds: the end of the reserved slots.
pub const DIRECTMAP_VIRT_END: u64 = HYPERVISOR_VIRT_END;
/// How much machine memory the boot page tables put in the direct map: all of the low 4 GiB, which
/// covers everything a multiboot1 loader can point to (its addresses are 32-bit).
pub const BOOT_DIRECTMAP_SIZE: u64 = 4 * GIB;

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a 2 MiB superpage (an L2 entry with PS set).
pub const SUPERPAGE_SIZE: u64 = 2 * MIB;
/// Bytes per MiB.
pub const MIB: u64 = 1 << 20;
/// Bytes per GiB.
pub const GIB: u64 = 1 << 30;

/// Index of the L4 (PML4) slot that maps `va`.
pub const fn l4_index(va: u64) -> usize {
    ((va >> 39) & 511) as usize
}

/// Index of the L3 slot that maps `va` inside its L3 table.
pub const fn l3_index(va: u64) -> usize {
    ((va >> 30) & 511) as usize
}

/// Index of the L2 slot that maps `va` inside its L2 table.
pub const fn l2_index(va: u64) -> usize {
    ((va >> 21) & 511) as usize
}

/// The direct-map virtual address of machine address `maddr`, if the boot direct map covers it.
pub const fn directmap_virt(maddr: u64) -> Option<u64> {
    if maddr < BOOT_DIRECTMAP_SIZE {
        Some(DIRECTMAP_VIRT_START + maddr)
    } else {
        None
    }
}

// The layout's invariants, checked at compile time on every build.
const _: () = {
    assert!(l4_index(HYPERVISOR_VIRT_START) == 256);
    assert!(l4_index(XEN_VIRT_START) == 261);
    assert!(l4_index(DIRECTMAP_VIRT_START) == 262);
    assert!(XEN_VIRT_START >= HYPERVISOR_VIRT_START && XEN_VIRT_END <= DIRECTMAP_VIRT_START);
    // The boot page tables map the image window with one L2 table, so it must be one aligned GiB.
    assert!(XEN_VIRT_START.is_multiple_of(GIB) && l2_index(XEN_VIRT_START) == 0);
    assert!(DIRECTMAP_VIRT_START + BOOT_DIRECTMAP_SIZE <= DIRECTMAP_VIRT_END);
    // The boot direct map uses whole L3 slots, starting at slot 0 of its L3 table.
    assert!(l3_index(DIRECTMAP_VIRT_START) == 0 && BOOT_DIRECTMAP_SIZE.is_multiple_of(GIB));
    assert!(XEN_IMG_OFFSET.is_multiple_of(SUPERPAGE_SIZE));
    // The image's 4 KiB-page tables are whole L1 tables, all under the window's one L2 table.
    assert!(XEN_IMG_MAX_SIZE.is_multiple_of(SUPERPAGE_SIZE));
    assert!(XEN_IMG_OFFSET + XEN_IMG_MAX_SIZE <= GIB);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_window_is_l3_slot_321_of_l4_slot_261() {
        // The boot assembly hard-wires these slots through `l4_index`/`l3_index`; this pins them.
        assert_eq!(
            (l4_index(XEN_VIRT_START), l3_index(XEN_VIRT_START)),
            (261, 321)
        );
    }

    #[test]
    fn directmap_covers_exactly_the_low_4_gib() {
        assert_eq!(directmap_virt(0), Some(DIRECTMAP_VIRT_START));
        assert_eq!(
            directmap_virt(4 * GIB - 1),
            Some(DIRECTMAP_VIRT_START + 4 * GIB - 1)
        );
        assert_eq!(directmap_virt(4 * GIB), None);
    }
}
