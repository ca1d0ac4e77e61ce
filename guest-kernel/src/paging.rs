//! x86-64 4-level paging arithmetic shared by the guest's page-table code: indices, PTE fields.
//!
//! Bit 7 of an L1 entry is PAT, not PSE (`xen-abi.md` pitfall 4); only L2/L3 entries have PSE.

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
    fn canonical_addresses() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0xfff0_0000_0000_0000));
    }
}
