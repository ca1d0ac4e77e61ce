//! Host tests of `set_gdt` (descriptor-page validation and typing) and of the writable-pagetable
//! emulation (`ptwr_emulate`), on dom0 built by the domain builder and seeded into a frame table.

use hypercall_abi::xen::{__HYPERVISOR_set_gdt, __HYPERVISOR_update_va_mapping, UVMF_INVLPG};

use super::ptwr_emulate;
use crate::mm::frame_table::testing::World;
use crate::mm::frame_table::{pte, PageType};
use crate::mm::MachineMemoryMut;

// The padding pages past the boot stack are zero-filled by the builder: only null descriptors.

const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const UNMAPPED: u64 = 0x0000_7000_0000_0000;

/// Scratch page `i` remapped read-only (by a validated `update_va_mapping`), so its frame can
/// take the descriptor type.
fn readonly_scratch(w: &mut World, i: u64) -> (u64, u64) {
    let va = w.scratch_va(i);
    let mfn = w.mfn_of(va).0;
    let ro = (mfn << 12) | pte::PRESENT | pte::ACCESSED;
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, [va, ro, UVMF_INVLPG, 0, 0]),
        0
    );
    (va, mfn)
}

#[test]
fn set_gdt_validates_types_and_releases_descriptor_frames() {
    let mut w = World::dom0();
    let list = w.scratch_va(0);
    // A writable frame (scratch 1 is mapped RW) cannot become a descriptor page.
    let writable = w.mfn_of(w.scratch_va(1)).0;
    w.put(list, &writable);
    assert_eq!(w.call(__HYPERVISOR_set_gdt, [list, 16, 0, 0, 0]), EINVAL);
    // Too many entries, a bad list, no entries at all.
    assert_eq!(
        w.call(__HYPERVISOR_set_gdt, [list, 0xe000 / 8 + 1, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(
        w.call(__HYPERVISOR_set_gdt, [UNMAPPED, 16, 0, 0, 0]),
        EFAULT
    );
    assert_eq!(w.call(__HYPERVISOR_set_gdt, [UNMAPPED, 0, 0, 0, 0]), 0);
    // A frame beyond the machine.
    w.put(list, &(1u64 << 40));
    assert_eq!(w.call(__HYPERVISOR_set_gdt, [list, 16, 0, 0, 0]), EINVAL);

    // A zeroed frame mapped read-only holds only null descriptors: accepted and typed.
    let (_, gdt) = readonly_scratch(&mut w, 2);
    w.put(list, &gdt);
    assert_eq!(w.call(__HYPERVISOR_set_gdt, [list, 16, 0, 0, 0]), 0);
    let f = w.frame(crate::mm::Mfn(gdt));
    assert_eq!((f.page_type(), f.type_count()), (PageType::SegDesc, 1));
    // Replacing the GDT with an empty one drops the type reference.
    assert_eq!(w.call(__HYPERVISOR_set_gdt, [list, 0, 0, 0, 0]), 0);
    assert_eq!(w.frame(crate::mm::Mfn(gdt)).type_count(), 0);
}

#[test]
fn ptwr_stores_to_own_l1_are_validated_updates() {
    let mut w = World::dom0();
    let va = w.scratch_va(3);
    let (pte_at, pte_value, l1) = w.l1_slot(va);
    // The guest's read-only view of that L1 table: pfn-mapped in the initial region.
    let l1_va = w.built.layout.v_start
        + (0..w.built.nr_pages)
            .find(|&p| w.built.mfn(crate::mm::Pfn(p)) == l1)
            .expect("the L1 lies in the initial region")
            * 4096;
    let store_va = l1_va + (pte_at.0 & 0xfff);

    // Storing the same value: accepted, table unchanged.
    let same = pte_value & !(pte::USER | pte::GUEST_KERNEL);
    assert_eq!(ptwr_emulate(&mut w.m, &mut w.dom, store_va, same), Ok(()));
    assert_eq!(w.m.mem.read_u64(pte_at).unwrap(), pte_value);
    w.check();

    // Mapping the L4 writable through the store: refused, table unchanged.
    let bad = (w.dom.vcpu().l4.0 << 12) | pte::PRESENT | pte::RW;
    assert!(ptwr_emulate(&mut w.m, &mut w.dom, store_va, bad).is_err());
    assert_eq!(w.m.mem.read_u64(pte_at).unwrap(), pte_value);

    // Misaligned stores and stores to pages that are not L1 tables are not emulated.
    assert!(ptwr_emulate(&mut w.m, &mut w.dom, store_va + 4, same).is_err());
    let data_va = w.scratch_va(4);
    assert!(ptwr_emulate(&mut w.m, &mut w.dom, data_va, same).is_err());
    w.check();
}

mod update_descriptor {
    use hypercall_abi::xen::{__HYPERVISOR_set_gdt, __HYPERVISOR_update_descriptor};

    use super::{readonly_scratch, EINVAL};
    use crate::mm::frame_table::testing::{base, Two, World};
    use crate::mm::frame_table::PageType;
    use crate::mm::{MachineMemoryMut, Maddr, Mfn};

    /// A flat 64-bit code segment with DPL 0, as a guest might write it.
    const CODE_DPL0: u64 = 0x00af_9a00_0000_ffff;
    /// The form `check_descriptor` stores: DPL raised to 3.
    const CODE_DPL3: u64 = CODE_DPL0 | (3 << 45);
    /// Linux's per-CPU `GDT_ENTRY_CPUNODE` (a read-only data segment, DPL 3), the first
    /// descriptor it writes.
    const CPUNODE: u64 = 0x0040_f500_0000_0000;

    #[test]
    fn writes_checked_descriptors_into_own_writable_frames() {
        let mut t = Two::new();
        let data = base(1) + 5;
        let at = (data << 12) + 0x78;
        let types = t.frame(data).type_count();
        assert_eq!(
            t.call(1, __HYPERVISOR_update_descriptor, [at, CPUNODE, 0, 0, 0]),
            0
        );
        assert_eq!(t.m.mem.read_u64(Maddr(at)), Some(CPUNODE));
        // DPL 0 becomes 3, as Xen stores it.
        assert_eq!(
            t.call(1, __HYPERVISOR_update_descriptor, [at, CODE_DPL0, 0, 0, 0]),
            0
        );
        assert_eq!(t.m.mem.read_u64(Maddr(at)), Some(CODE_DPL3));
        // The temporary writable type reference is gone again.
        assert_eq!(t.frame(data).type_count(), types);
        t.check();
    }

    #[test]
    fn refuses_bad_addresses_descriptors_and_frames() {
        let mut t = Two::new();
        let data = base(1) + 5;
        let at = (data << 12) + 0x78;
        let before = t.m.mem.read_u64(Maddr(at));
        let refused = |t: &mut Two, maddr: u64, desc: u64| {
            assert_eq!(
                t.call(1, __HYPERVISOR_update_descriptor, [maddr, desc, 0, 0, 0]),
                EINVAL,
                "update_descriptor({maddr:#x}, {desc:#x})"
            );
        };
        // Unaligned.
        refused(&mut t, at + 4, CPUNODE);
        // A present TSS, an interrupt gate, a call gate into Xen's reserved selectors.
        refused(&mut t, at, 0x0000_8900_0000_0067);
        refused(&mut t, at, 0x0000_8e00_0010_0000);
        refused(&mut t, at, 0x0000_ec00_e008_1000);
        // Beyond the machine, the other domain's frame, a hypervisor frame, an I/O frame.
        refused(&mut t, 1 << 40, CPUNODE);
        refused(&mut t, (base(0) + 5) << 12, CPUNODE);
        refused(&mut t, 4 << 12, CPUNODE);
        refused(&mut t, 0, CPUNODE);
        // The caller's own page tables (L4, L3, L2, L1): not writable.
        for i in 0..4 {
            refused(&mut t, (base(1) + i) << 12, CPUNODE);
        }
        assert_eq!(t.m.mem.read_u64(Maddr(at)), before);
        t.check();
    }

    #[test]
    fn writes_into_an_installed_gdt_frame_keep_its_type() {
        let mut w = World::dom0();
        let list = w.scratch_va(0);
        let (_, gdt) = readonly_scratch(&mut w, 2);
        w.put(list, &gdt);
        assert_eq!(w.call(__HYPERVISOR_set_gdt, [list, 512, 0, 0, 0]), 0);
        let at = (gdt << 12) + 0x78;
        assert_eq!(
            w.call(__HYPERVISOR_update_descriptor, [at, CODE_DPL0, 0, 0, 0]),
            0
        );
        assert_eq!(w.m.mem.read_u64(Maddr(at)), Some(CODE_DPL3));
        let f = w.frame(Mfn(gdt));
        assert_eq!((f.page_type(), f.type_count()), (PageType::SegDesc, 1));
        // A refused descriptor leaves the frame as it was.
        assert_eq!(
            w.call(
                __HYPERVISOR_update_descriptor,
                [at, 0x0000_8900_0000_0067, 0, 0, 0]
            ),
            EINVAL
        );
        assert_eq!(w.m.mem.read_u64(Maddr(at)), Some(CODE_DPL3));
        w.check();
    }
}
