//! x86-64 4-level paging arithmetic shared by the guest's page-table code: frame numbers,
//! indices, PTE fields and the machine address of an entry.
//!
//! Bit 7 of an L1 entry is PAT, not PSE (`xen-abi.md` pitfall 4); only L2/L3 entries have PSE.
//! Levels are numbered as Xen does: 1 = L1 (page table, 4 KiB per entry) ... 4 = L4 (512 GiB
//! per entry).

use core::fmt;

/// Size of a page and of a page table.
pub const PAGE_SIZE: u64 = 4096;
/// Entries in one page table.
pub const ENTRIES: usize = 512;

/// A guest pseudo-physical frame number: an index into the p2m list (`start_info.mfn_list`).
/// With VIRT_BASE 0 the kernel maps pfn n at virtual address n << 12.
#[doc(alias = "gfn_t")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u64);

/// A machine frame number: what page-table entries and `mmu_update` requests name.
#[doc(alias = "mfn_t")]
#[doc(alias = "xen_pfn_t")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The machine address of the frame's first byte.
    pub const fn maddr(self) -> u64 {
        self.0 << 12
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfn {:#x}", self.0)
    }
}

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// User-accessible (Xen sets it itself on 64-bit PV guest-kernel mappings).
pub const PTE_US: u64 = 1 << 2;
/// Accessed.
pub const PTE_A: u64 = 1 << 5;
/// Dirty.
pub const PTE_D: u64 = 1 << 6;
/// Page size (L2/L3 only) / PAT (L1).
pub const PTE_PSE_OR_PAT: u64 = 1 << 7;
/// No-execute.
pub const PTE_NX: u64 = 1 << 63;
/// The frame-number field of an entry (bits 12..51).
pub const PTE_FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Flags of an L2..L4 entry that points at a lower-level table the guest built. `_PAGE_USER` is
/// what Xen would add anyway for a 64-bit PV guest (`adjust_guest_l*e`); it must be there for the
/// user address space, where user mode walks the same upper-level entries.
pub const TABLE_FLAGS: u64 = PTE_P | PTE_RW | PTE_US | PTE_A;

/// The index into the level-`level` table (1 = L1 ... 4 = L4) that translates `va`.
pub const fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// The frame number an entry points at.
pub const fn entry_frame(entry: u64) -> u64 {
    (entry & PTE_FRAME_MASK) >> 12
}

/// An entry mapping frame `frame` with `flags`.
pub const fn make_entry(frame: u64, flags: u64) -> u64 {
    ((frame << 12) & PTE_FRAME_MASK) | flags
}

/// Whether `va` is canonical (bits 63..47 all equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// The bytes of address space one entry of a level-`level` table maps: 4 KiB for an L1 entry,
/// 2 MiB for L2, 1 GiB for L3, 512 GiB for L4.
pub const fn entry_span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

/// The canonical virtual address whose indices are `l4`, `l3`, `l2`, `l1` (each < 512): bit 47
/// is copied into bits 48..63.
pub const fn va_from_indices(l4: usize, l3: usize, l2: usize, l1: usize) -> u64 {
    let va = ((l4 as u64 & 511) << 39)
        | ((l3 as u64 & 511) << 30)
        | ((l2 as u64 & 511) << 21)
        | ((l1 as u64 & 511) << 12);
    sign_extend(va)
}

/// Copies bit 47 of `va` into bits 48..63, making it canonical.
pub const fn sign_extend(va: u64) -> u64 {
    (((va << 16) as i64) >> 16) as u64
}

/// `va` rounded down to the start of the region one level-`level` entry maps.
pub const fn align_down(va: u64, level: u32) -> u64 {
    va & !(entry_span(level) - 1)
}

/// The machine address of entry `idx` of the page table in frame `table`: what an `mmu_update`
/// request carries in `ptr` (its low 2 bits, the command, are then 0 = MMU_NORMAL_PT_UPDATE).
pub const fn entry_maddr(table: Mfn, idx: usize) -> u64 {
    table.maddr() + 8 * (idx as u64 & 511)
}

/// Number of L1 tables needed to map `pages` pages starting at `va`: one per 2 MiB region the
/// range touches.
pub const fn l1_tables_spanned(va: u64, pages: u64) -> u64 {
    if pages == 0 {
        return 0;
    }
    let first = va >> 21;
    let last = (va + (pages - 1) * PAGE_SIZE) >> 21;
    last - first + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_of_a_known_address() {
        let va = 0xffff_8000_0020_3000u64;
        assert_eq!(index(va, 4), 256);
        assert_eq!(index(va, 3), 0);
        assert_eq!(index(va, 2), 1);
        assert_eq!(index(va, 1), 3);
    }

    #[test]
    fn entries_round_trip() {
        let e = make_entry(0x1234, PTE_P | PTE_RW | PTE_NX);
        assert_eq!(entry_frame(e), 0x1234);
        assert_eq!(e & PTE_P, PTE_P);
        assert_eq!(e & PTE_NX, PTE_NX);
    }

    #[test]
    fn entry_spans_per_level() {
        assert_eq!(entry_span(1), 4 << 10);
        assert_eq!(entry_span(2), 2 << 20);
        assert_eq!(entry_span(3), 1 << 30);
        assert_eq!(entry_span(4), 512 << 30);
    }

    #[test]
    fn indices_compose_back_into_the_address() {
        for va in [
            0u64,
            0x0000_0080_0040_0000,
            0x0000_7fff_ffff_f000,
            0xffff_8000_0020_3000,
            0xffff_ffff_ffff_f000,
        ] {
            let back = va_from_indices(index(va, 4), index(va, 3), index(va, 2), index(va, 1));
            assert_eq!(back, va, "{va:#x}");
        }
        // Slot 256 is the first of the upper half: the result is sign-extended.
        assert_eq!(va_from_indices(256, 0, 0, 0), 0xffff_8000_0000_0000);
        assert_eq!(va_from_indices(1, 0, 2, 0), 0x0000_0080_0040_0000);
    }

    #[test]
    fn sign_extension_makes_addresses_canonical() {
        assert_eq!(sign_extend(0x0000_8000_0000_0000), 0xffff_8000_0000_0000);
        assert_eq!(sign_extend(0x0000_7fff_ffff_ffff), 0x0000_7fff_ffff_ffff);
        assert!(is_canonical(sign_extend(0x0000_8123_4567_8000)));
    }

    #[test]
    fn alignment_to_the_region_of_an_entry() {
        let va = 0x0000_0080_0045_6789;
        assert_eq!(align_down(va, 1), 0x0000_0080_0045_6000);
        assert_eq!(align_down(va, 2), 0x0000_0080_0040_0000);
        assert_eq!(align_down(va, 3), 0x0000_0080_0000_0000);
        assert_eq!(align_down(va, 4), 0x0000_0080_0000_0000);
    }

    #[test]
    fn entry_machine_addresses() {
        assert_eq!(entry_maddr(Mfn(0x1234), 0), 0x123_4000);
        assert_eq!(entry_maddr(Mfn(0x1234), 511), 0x123_4ff8);
        // The command bits (1:0) of an entry address are always free.
        assert_eq!(entry_maddr(Mfn(7), 3) & 3, 0);
    }

    #[test]
    fn l1_tables_a_range_needs() {
        assert_eq!(l1_tables_spanned(0x20_0000, 0), 0);
        assert_eq!(l1_tables_spanned(0x20_0000, 1), 1);
        assert_eq!(l1_tables_spanned(0x20_0000, 512), 1);
        assert_eq!(l1_tables_spanned(0x20_0000, 513), 2);
        assert_eq!(l1_tables_spanned(0x3f_f000, 2), 2);
    }

    #[test]
    fn table_entries_are_user_and_writable() {
        assert_eq!(
            TABLE_FLAGS & (PTE_P | PTE_RW | PTE_US),
            PTE_P | PTE_RW | PTE_US
        );
        assert_eq!(TABLE_FLAGS & PTE_PSE_OR_PAT, 0);
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0xfff0_0000_0000_0000));
    }
}
