//! Segment descriptors a 64-bit PV guest may put in its GDT or LDT pages.
//!
//! A port of `check_descriptor` (`xen/arch/x86/pv/descriptor-tables.c`, Xen 4.17) for 64-bit
//! guests: code and data segments are fine once their DPL is raised to the guest kernel's
//! ring 3; a call gate must target a guest code selector, and gets DPL 0 (so its use faults into
//! Xen for emulation) with its original DPL kept in the selector's RPL; everything else is
//! refused. Validating a `PGT_seg_desc_page` frame (`validate_segdesc_page`) runs the check over
//! its 512 descriptors and writes the fixed-up ones back.

use hypercall_abi::arch_x86_64::FLAT_KERNEL_CS;

/// `_SEGMENT_P`, in the high word.
const SEGMENT_P: u32 = 1 << 15;
/// `_SEGMENT_DPL`.
const SEGMENT_DPL: u32 = 3 << 13;
/// `_SEGMENT_S`: a code or data segment (not a system descriptor).
const SEGMENT_S: u32 = 1 << 12;
/// `_SEGMENT_TYPE`.
const SEGMENT_TYPE: u32 = 15 << 8;
/// The first GDT entry Xen reserves (`FIRST_RESERVED_GDT_ENTRY`: byte 0xE000).
const FIRST_RESERVED_GDT_ENTRY: u32 = 0xE000 / 8;
/// `GUEST_KERNEL_RPL` of a 64-bit PV guest.
const GUEST_KERNEL_RPL: u32 = 3;

/// `guest_gate_selector_okay`: a guest GDT selector, Xen's flat kernel code selector, or an LDT
/// selector.
fn gate_selector_okay(sel: u32) -> bool {
    (sel >> 3) < FIRST_RESERVED_GDT_ENTRY || sel == u32::from(FLAT_KERNEL_CS) || sel & 4 != 0
}

/// `check_descriptor`: whether descriptor `d` (low word `a`, high word `b`) is safe for a 64-bit
/// PV guest, and the form Xen stores (DPL raised to 3; call gates forced to DPL 0).
pub fn check_descriptor(d: u64) -> Option<u64> {
    let mut a = d as u32;
    let mut b = (d >> 32) as u32;

    // A not-present descriptor always faults, so is safe.
    if b & SEGMENT_P == 0 {
        return Some(d);
    }
    // `__fixup_guest_selector`: DPL below the guest kernel's ring becomes its ring.
    let dpl = ((b >> 13) & 3).max(GUEST_KERNEL_RPL);
    b = (b & !SEGMENT_DPL) | (dpl << 13);

    if b & SEGMENT_S == 0 {
        // Type 0 is harmless: the second half of a call gate.
        if b & SEGMENT_TYPE == 0 {
            return Some(d);
        }
        // Everything but a 64-bit call gate is refused.
        if b & SEGMENT_TYPE != 0xc00 {
            return None;
        }
        let cs = a >> 16;
        if !gate_selector_okay(cs) {
            return None;
        }
        // DPL 0, so that using the gate faults and Xen emulates it; the DPL moves to the RPL.
        b &= !SEGMENT_DPL;
        let cs = (cs & !3) | dpl;
        a = (a & 0xffff) | (cs << 16);
        // Reserved bits must be zero.
        if b & 0xff != 0 {
            return None;
        }
    }
    Some((u64::from(b) << 32) | u64::from(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_and_data_segments_get_dpl_3() {
        // A ring-0 64-bit code segment: DPL raised to 3.
        let code0 = 0x00af_9a00_0000_ffffu64;
        assert_eq!(check_descriptor(code0), Some(code0 | (3 << 45)));
        let data3 = 0x00cf_f200_0000_ffffu64;
        assert_eq!(check_descriptor(data3), Some(data3));
    }

    #[test]
    fn not_present_and_null_descriptors_pass_untouched() {
        assert_eq!(check_descriptor(0), Some(0));
        assert_eq!(
            check_descriptor(0x00af_1a00_0000_ffff),
            Some(0x00af_1a00_0000_ffff)
        );
    }

    #[test]
    fn system_descriptors_other_than_call_gates_are_refused() {
        // A present 64-bit TSS (type 9) and an interrupt gate (type 0xe).
        assert_eq!(check_descriptor(0x0000_8900_0000_0067), None);
        assert_eq!(check_descriptor(0x0000_8e00_0010_0000), None);
    }

    #[test]
    fn call_gates_need_a_guest_selector_and_get_dpl_0() {
        // Present call gate, DPL 3, to selector 0x10 (a guest GDT entry).
        let gate = 0x0000_ec00_0010_1000u64;
        let fixed = check_descriptor(gate).unwrap();
        assert_eq!((fixed >> 45) & 3, 0, "DPL forced to 0");
        assert_eq!(
            (fixed >> 16) & 0xffff,
            0x13,
            "old DPL kept in the selector's RPL"
        );
        // A selector in Xen's reserved GDT area that is not the flat kernel CS.
        assert_eq!(check_descriptor(0x0000_ec00_e008_1000), None);
        assert!(check_descriptor(0x0000_ec00_e033_1000).is_some());
        // Reserved bits (low byte of the high word) set.
        assert_eq!(check_descriptor(0x0000_ec01_0010_1000), None);
    }
}
