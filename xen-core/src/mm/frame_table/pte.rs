//! Page-table entry bits and the flag rules Xen applies to PV guest entries.
//!
//! Xen keeps PTE flags as a 24-bit value (bits 0-11 and 52-63 of the entry, `get_pte_flags` in
//! `xen/arch/x86/include/asm/x86_64/page.h`); here every mask is in its place in the 64-bit entry,
//! which says the same thing without the packing. Sources: `arch_init_memory` (the disallow
//! masks), `l1_disallow_mask`, `FASTPATH_FLAG_WHITELIST` and `pte_flags_to_cacheattr` in
//! `xen/arch/x86/mm.c`; `adjust_guest_l[1-4]e` in `xen/arch/x86/pv/mm.h` (Xen 4.17).

/// `_PAGE_PRESENT`.
pub const PRESENT: u64 = crate::mm::entry::PRESENT;
/// `_PAGE_RW`.
pub const RW: u64 = 1 << 1;
/// `_PAGE_USER`.
pub const USER: u64 = 1 << 2;
/// `_PAGE_PWT`.
pub const PWT: u64 = 1 << 3;
/// `_PAGE_PCD`.
pub const PCD: u64 = 1 << 4;
/// `_PAGE_ACCESSED`.
pub const ACCESSED: u64 = 1 << 5;
/// `_PAGE_DIRTY`.
pub const DIRTY: u64 = 1 << 6;
/// `_PAGE_PAT` in an L1 entry, `_PAGE_PSE` (superpage) in an L2/L3 entry.
pub const PAT: u64 = 1 << 7;
/// `_PAGE_PSE`: the same bit as [`PAT`], read in an L2 or L3 entry.
pub const PSE: u64 = crate::mm::entry::PSE;
/// `_PAGE_GLOBAL`.
pub const GLOBAL: u64 = 1 << 8;
/// `_PAGE_AVAIL`: bits 9-11, free for software.
pub const AVAIL: u64 = 0x7 << 9;
/// `_PAGE_AVAIL_HIGH`: bits 52-62, free for software.
pub const AVAIL_HIGH: u64 = 0x7ff << 52;
/// `_PAGE_GUEST_KERNEL`: Xen's software bit 52, marking a 64-bit PV kernel's own mappings (which
/// Xen makes user mappings, since the kernel runs in ring 3).
pub const GUEST_KERNEL: u64 = 1 << 52;
/// `_PAGE_NX`.
pub const NX: u64 = 1 << 63;
/// The frame address, bits 12-51 (`PADDR_MASK & PAGE_MASK`).
pub const ADDR: u64 = crate::mm::entry::ADDR;
/// The flag bits: everything but the address.
pub const FLAGS: u64 = !ADDR;
/// `PAGE_CACHE_ATTRS`: the bits that select the memory type.
pub const CACHE_ATTRS: u64 = PAT | PCD | PWT;

/// `base_disallow_mask` (`arch_init_memory`): everything but present, RW, user, accessed, dirty,
/// the software bits and NX. What is left is PWT, PCD, PAT/PSE and GLOBAL (the CPU has NX).
pub const BASE_DISALLOW: u64 =
    FLAGS & !(PRESENT | RW | USER | ACCESSED | DIRTY | AVAIL | AVAIL_HIGH | NX);
/// `L1_DISALLOW_MASK`: the base mask minus `_PAGE_GLOBAL` ("Global bit is allowed to be set on
/// L1 PTEs. Intended for user mappings."). `_PAGE_GNTTAB` is 0 in release builds of Xen, such as
/// Debian's.
pub const L1_DISALLOW: u64 = BASE_DISALLOW & !GLOBAL;
/// `L2_DISALLOW_MASK`: the base mask, so superpages (PSE) are refused.
pub const L2_DISALLOW: u64 = BASE_DISALLOW;
/// `l3_disallow_mask` for 64-bit guests.
pub const L3_DISALLOW: u64 = BASE_DISALLOW;
/// `L4_DISALLOW_MASK`.
pub const L4_DISALLOW: u64 = BASE_DISALLOW;

/// `FASTPATH_FLAG_WHITELIST` (`mm.c`): flags a guest may change in a present entry without the
/// entry being validated again.
pub const FASTPATH_WHITELIST: u64 = NX | AVAIL_HIGH | AVAIL | GLOBAL | DIRTY | ACCESSED | USER;

/// `l1_disallow_mask(d)`: a domain with I/O capabilities (dom0) may also choose cache attributes
/// (PAT, PCD, PWT) in its L1 entries; any other domain may not.
pub const fn l1_disallow_mask(privileged: bool) -> u64 {
    if privileged {
        L1_DISALLOW & !CACHE_ATTRS
    } else {
        L1_DISALLOW
    }
}

/// Whether the entry is present.
pub const fn present(e: u64) -> bool {
    e & PRESENT != 0
}

/// The machine frame an entry points to.
pub const fn mfn(e: u64) -> u64 {
    (e & ADDR) >> 12
}

/// `l1e_has_changed(x, y, ~FASTPATH_FLAG_WHITELIST)`: whether two entries differ in the address
/// or in a flag outside the whitelist (present, RW, PWT, PCD, PAT).
pub const fn changed_beyond_whitelist(old: u64, new: u64) -> bool {
    (old ^ new) & (ADDR | (FLAGS & !FASTPATH_WHITELIST)) != 0
}

/// `pte_flags_to_cacheattr`: the 3-bit PAT index an L1 entry selects.
pub const fn cacheattr(e: u64) -> u64 {
    ((e >> 5) & 4) | ((e >> 3) & 3)
}

/// `adjust_guest_l1e` for a 64-bit PV guest: a mapping without `_PAGE_USER` is a kernel mapping,
/// so Xen makes it user-accessible (the kernel runs in ring 3) and marks it `_PAGE_GUEST_KERNEL`;
/// a true user mapping (no `_PAGE_GUEST_KERNEL`) also gets `_PAGE_GLOBAL`.
pub const fn adjust_guest_l1e(mut e: u64) -> u64 {
    if present(e) {
        if e & USER == 0 {
            e |= GUEST_KERNEL | USER;
        }
        if e & GUEST_KERNEL == 0 {
            e |= GLOBAL | USER;
        }
    }
    e
}

/// `adjust_guest_l2e`: present entries become user-accessible.
pub const fn adjust_guest_l2e(e: u64) -> u64 {
    if present(e) {
        e | USER
    } else {
        e
    }
}

/// `adjust_guest_l3e` for a 64-bit guest: as for L2.
pub const fn adjust_guest_l3e(e: u64) -> u64 {
    adjust_guest_l2e(e)
}

/// `adjust_guest_l4e`: present entries become user-accessible and are marked accessed (Xen may
/// shadow L4s per CPU and cannot sync the accessed bit back).
pub const fn adjust_guest_l4e(e: u64) -> u64 {
    if present(e) {
        e | ACCESSED | USER
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disallow_masks_are_xens() {
        // 0x198 in Xen's 24-bit flag space: PWT, PCD, PAT/PSE, GLOBAL.
        assert_eq!(BASE_DISALLOW, 0x198);
        assert_eq!(L1_DISALLOW, 0x098);
        assert_eq!(l1_disallow_mask(true), 0);
        assert_eq!(l1_disallow_mask(false), 0x098);
    }

    #[test]
    fn kernel_mappings_become_user_guest_kernel_and_user_mappings_global() {
        let k = adjust_guest_l1e(0x5000 | PRESENT | RW);
        assert_eq!(k, 0x5000 | PRESENT | RW | USER | GUEST_KERNEL);
        let u = adjust_guest_l1e(0x5000 | PRESENT | USER);
        assert_eq!(u, 0x5000 | PRESENT | USER | GLOBAL);
        // Not present: untouched.
        assert_eq!(adjust_guest_l1e(0x5000 | RW), 0x5000 | RW);
        assert_eq!(
            adjust_guest_l4e(0x5000 | PRESENT),
            0x5000 | PRESENT | USER | ACCESSED
        );
    }

    #[test]
    fn the_fast_path_ignores_only_whitelisted_flags() {
        let e = 0x5000 | PRESENT | RW;
        assert!(!changed_beyond_whitelist(
            e,
            e | DIRTY | ACCESSED | USER | GLOBAL | NX
        ));
        assert!(!changed_beyond_whitelist(e, e | GUEST_KERNEL | AVAIL));
        assert!(changed_beyond_whitelist(e, e & !RW));
        assert!(changed_beyond_whitelist(e, e | PCD));
        assert!(changed_beyond_whitelist(e, e + 0x1000));
    }

    #[test]
    fn cacheattr_is_the_pat_index() {
        assert_eq!(cacheattr(0), 0);
        assert_eq!(cacheattr(PWT), 1);
        assert_eq!(cacheattr(PCD), 2);
        assert_eq!(cacheattr(PAT), 4);
        assert_eq!(cacheattr(PAT | PCD | PWT), 7);
    }
}
