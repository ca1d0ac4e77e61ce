//! Refusals, one rule per test, each with the error Xen 4.17 gives and a recount afterwards to
//! show nothing leaked or changed.

use hypercall_abi::xen::*;

use super::pte::{PAT, PCD, PRESENT, PSE, PWT, RW, USER};
use super::testing::*;
use super::{Owner, PageType, SeedError};
use crate::mm::frame_alloc::FrameRange;
use crate::mm::PtLevel;
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

const EPERM: i64 = -1;
const ESRCH: i64 = -3;
const EACCES: i64 = -13;
const EFAULT: i64 = -14;
const EBUSY: i64 = -16;
const EINVAL: i64 = -22;
const ENOSYS: i64 = -38;
const EOPNOTSUPP: i64 = -95;
const SELF_ID: u32 = DOMID_SELF as u32;

fn d0(k: u64) -> u64 {
    base(0) + k
}

fn d1(k: u64) -> u64 {
    base(1) + k
}

/// dom1's empty L1 slot 40.
fn free_slot() -> u64 {
    Two::slot(d1(3), 40)
}

/// Runs `f`, then checks that the frame table is unchanged and consistent.
fn unchanged(t: &mut Two, f: impl FnOnce(&mut Two)) {
    let before: Vec<_> = t.mm().frames.iter().map(|(_, f)| *f).collect();
    f(t);
    let after: Vec<_> = t.mm().frames.iter().map(|(_, f)| *f).collect();
    assert_eq!(before, after, "a refused operation changed the frame table");
    t.check();
}

// ---------------------------------------------------------------------------------------------
// Ownership.

#[test]
fn mapping_another_domains_frame_is_ebusy() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        assert_eq!(
            t.mmu(1, &[(free_slot(), (d0(10) << 12) | DATA)], SELF_ID),
            (EBUSY, 0)
        );
        assert_eq!(
            t.mmu(1, &[(free_slot(), (d0(10) << 12) | PRESENT)], SELF_ID),
            (EBUSY, 0)
        );
        assert_eq!(t.uvm(1, page_va(40), (d0(10) << 12) | DATA, 0, None), EBUSY);
    });
}

#[test]
fn mapping_hypervisor_or_free_frames_is_ebusy() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for mfn in [4, 5, 100] {
            let rc = t.mmu(0, &[(Two::slot(d0(3), 40), (mfn << 12) | PRESENT)], SELF_ID);
            assert_eq!(rc, (EBUSY, 0), "frame {mfn}");
        }
    });
}

#[test]
fn updating_a_table_of_another_domain_is_einval() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let rc = t.mmu(1, &[(Two::slot(d0(3), 40), (d1(10) << 12) | DATA)], SELF_ID);
        assert_eq!(rc, (EINVAL, 0));
    });
}

#[test]
fn upper_level_entries_must_map_own_tables_of_the_next_level() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let l2 = Two::slot(d1(2), 7);
        // A frame of another domain.
        assert_eq!(
            t.mmu(1, &[(l2, (d0(3) << 12) | TABLE_FLAGS)], SELF_ID),
            (EINVAL, 0)
        );
        // An own page in use as a writable page.
        assert_eq!(
            t.mmu(1, &[(l2, (d1(10) << 12) | TABLE_FLAGS)], SELF_ID),
            (EINVAL, 0)
        );
        // An own table of the wrong level (the L2 itself is not an L1).
        let rc = t.mmu(
            1,
            &[(Two::slot(d1(1), 7), (d1(3) << 12) | TABLE_FLAGS)],
            SELF_ID,
        );
        assert_eq!(rc, (EINVAL, 0));
        // A foreign pg_owner cannot be used for upper levels, even by dom0.
        let rc = t.mmu(0, &[(Two::slot(d0(2), 7), (d0(3) << 12) | TABLE_FLAGS)], 1);
        assert_eq!(rc, (EINVAL, 0));
    });
}

#[test]
fn pinning_or_unpinning_a_frame_of_another_domain_is_einval() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        assert_eq!(
            t.ext(1, &[(MMUEXT_PIN_L1_TABLE, d0(20), 0)], SELF_ID),
            EINVAL
        );
        assert_eq!(t.ext(1, &[(MMUEXT_UNPIN_TABLE, d0(0), 0)], SELF_ID), EINVAL);
        assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, 5000, 0)], SELF_ID), EINVAL);
    });
}

#[test]
fn machphys_update_of_a_frame_not_owned_is_einval() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for mfn in [d0(10), 4, 100, 5000] {
            let rc = t.mmu(1, &[((mfn << 12) | MMU_MACHPHYS_UPDATE, 1)], SELF_ID);
            assert_eq!(rc, (EINVAL, 0), "frame {mfn}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Types.

#[test]
fn a_page_table_mapped_writable_anywhere_is_ebusy() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for table in 0..4 {
            let rc = t.mmu(
                1,
                &[(free_slot(), (d1(table) << 12) | PRESENT | RW)],
                SELF_ID,
            );
            assert_eq!(rc, (EBUSY, 0), "table {table}");
        }
        // Turning an existing read-only mapping of the L4 writable.
        let rc = t.mmu(1, &[(Two::slot(d1(3), 0), (d1(0) << 12) | DATA)], SELF_ID);
        assert_eq!(rc, (EBUSY, 0));
    });
}

#[test]
fn a_page_mapped_writable_cannot_become_a_table() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for cmd in [
            MMUEXT_PIN_L1_TABLE,
            MMUEXT_PIN_L2_TABLE,
            MMUEXT_PIN_L3_TABLE,
            MMUEXT_PIN_L4_TABLE,
            MMUEXT_NEW_BASEPTR,
            MMUEXT_NEW_USER_BASEPTR,
        ] {
            assert_eq!(t.ext(1, &[(cmd, d1(10), 0)], SELF_ID), EINVAL, "cmd {cmd}");
        }
    });
}

#[test]
fn a_table_whose_entry_fails_is_refused_whole_and_loses_its_type() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    // Two good entries, then a writable mapping of the domain's own L2.
    for (i, v) in [
        (d1(10) << 12) | DATA,
        (d1(11) << 12) | PRESENT | USER,
        (d1(2) << 12) | DATA,
    ]
    .iter()
    .enumerate()
    {
        t.m.mem
            .write_u64(Maddr(Two::slot(x, i as u64)), *v)
            .unwrap();
    }
    let before: Vec<_> = [10, 11, 2].iter().map(|&k| t.frame(d1(k))).collect();
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, x, 0)], SELF_ID), EBUSY);
    let after: Vec<_> = [10, 11, 2].iter().map(|&k| t.frame(d1(k))).collect();
    assert_eq!(
        before, after,
        "the good entries' references were given back"
    );
    t.check();
    // Xen's `validate_page` failure: type_info = 0.
    assert_eq!(t.frame(x).page_type(), PageType::None);
}

#[test]
fn a_pinned_table_cannot_be_pinned_again_or_as_another_level() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        assert_eq!(
            t.ext(1, &[(MMUEXT_PIN_L4_TABLE, d1(0), 0)], SELF_ID),
            EINVAL
        );
        assert_eq!(
            t.ext(1, &[(MMUEXT_PIN_L3_TABLE, d1(0), 0)], SELF_ID),
            EINVAL
        );
        assert_eq!(t.ext(1, &[(MMUEXT_UNPIN_TABLE, d1(1), 0)], SELF_ID), EINVAL);
    });
}

// ---------------------------------------------------------------------------------------------
// Flags.

#[test]
fn cache_attributes_need_io_privileges() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for bit in [PWT, PCD, PAT] {
            let rc = t.mmu(1, &[(free_slot(), (d1(10) << 12) | DATA | bit)], SELF_ID);
            assert_eq!(rc, (EINVAL, 0), "bit {bit:#x}");
        }
    });
}

#[test]
fn the_hypervisors_own_pages_keep_their_cache_attributes() {
    let mut t = Two::new();
    let si = t.doms[0].shared_info.0;
    unchanged(&mut t, |t| {
        let rc = t.mmu(
            0,
            &[(Two::slot(d0(3), 40), (si << 12) | DATA | PCD)],
            SELF_ID,
        );
        assert_eq!(rc, (EACCES, 0));
    });
}

#[test]
fn superpages_and_disallowed_upper_flags_are_einval() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let l2 = Two::slot(d1(2), 7);
        for bit in [PSE, PCD, PWT, super::pte::GLOBAL] {
            let rc = t.mmu(1, &[(l2, (d1(3) << 12) | TABLE_FLAGS | bit)], SELF_ID);
            assert_eq!(rc, (EINVAL, 0), "bit {bit:#x}");
        }
    });
}

#[test]
fn the_hypervisor_l4_slots_are_not_the_guests() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for slot in [256, 263, 271] {
            let rc = t.mmu(1, &[(Two::slot(d1(0), slot), 0)], SELF_ID);
            assert_eq!(rc, (EINVAL, 0), "slot {slot}");
        }
    });
}

#[test]
fn linear_page_tables_must_be_read_only() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L4_TABLE, x, 0)], SELF_ID), 0);
    unchanged(&mut t, |t| {
        // Writable self-map.
        let rc = t.mmu(
            1,
            &[(Two::slot(d1(0), 300), (d1(0) << 12) | TABLE_FLAGS)],
            SELF_ID,
        );
        assert_eq!(rc, (EINVAL, 0));
        // Writable map of another validated L4.
        let rc = t.mmu(
            1,
            &[(Two::slot(d1(0), 300), (x << 12) | TABLE_FLAGS)],
            SELF_ID,
        );
        assert_eq!(rc, (EINVAL, 0));
    });
}

#[test]
fn a_table_holds_linear_entries_or_is_a_linear_target_never_both() {
    // Xen's `linear_pt_count`: `inc_linear_entries` fails on a table that is a linear target,
    // `inc_linear_uses` on one that holds linear entries. dom1's L4 (d1(0)) points read-only at
    // x, a pinned empty L4; x then cannot point at anything linearly, nor can y point at d1(0).
    let mut t = Two::new();
    let (x, y) = (d1(20), d1(21));
    for m in [x, y] {
        t.mmu(1, &[(Two::slot(d1(3), m - d1(0)), 0)], SELF_ID);
        assert_eq!(t.ext(1, &[(MMUEXT_PIN_L4_TABLE, m, 0)], SELF_ID), 0);
    }
    let linear = |m: u64| (m << 12) | PRESENT | USER;
    assert_eq!(
        t.mmu(1, &[(Two::slot(d1(0), 300), linear(x))], SELF_ID),
        (0, 1)
    );
    assert_eq!(t.frame(x).type_count(), 2, "the pin and the linear entry");
    assert_eq!(t.frame(x).linear_pt_count(), -1);
    assert_eq!(t.frame(d1(0)).linear_pt_count(), 1);
    t.check();
    unchanged(&mut t, |t| {
        let rc = t.mmu(1, &[(Two::slot(x, 300), linear(y))], SELF_ID);
        assert_eq!(
            rc,
            (EINVAL, 0),
            "a linear target cannot hold linear entries"
        );
        let rc = t.mmu(1, &[(Two::slot(y, 300), linear(d1(0)))], SELF_ID);
        assert_eq!(
            rc,
            (EINVAL, 0),
            "a table with linear entries cannot be a target"
        );
    });
    // Unpinned, x lives on through the linear entry; removing the entry devalidates it.
    assert_eq!(t.ext(1, &[(MMUEXT_UNPIN_TABLE, x, 0)], SELF_ID), 0);
    assert!(t.frame(x).validated());
    assert_eq!(t.mmu(1, &[(Two::slot(d1(0), 300), 0)], SELF_ID), (0, 1));
    let f = t.frame(x);
    assert_eq!(
        (f.type_count(), f.validated(), f.linear_pt_count()),
        (0, false, 0)
    );
    assert_eq!(t.frame(d1(0)).linear_pt_count(), 0);
    t.check();
}

// ---------------------------------------------------------------------------------------------
// I/O memory.

#[test]
fn io_memory_needs_privilege() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        assert_eq!(
            t.mmu(1, &[(free_slot(), (0xfee00 << 12) | DATA)], SELF_ID),
            (EPERM, 0)
        );
        assert_eq!(
            t.mmu(1, &[(free_slot(), (2 << 12) | PRESENT)], SELF_ID),
            (EPERM, 0)
        );
        // INVALID_MFN is -EINVAL rather than -EPERM.
        let invalid = super::pte::ADDR;
        assert_eq!(
            t.mmu(1, &[(free_slot(), invalid | PRESENT)], SELF_ID),
            (EINVAL, 0)
        );
        // Unprivileged callers cannot name DOMID_IO either.
        assert_eq!(
            t.uvm(1, page_va(40), (2 << 12) | PRESENT, 0, Some(DOMID_IO)),
            EPERM
        );
    });
}

#[test]
fn withheld_io_ranges_and_frames_beyond_the_limit_are_refused_to_dom0() {
    let mut t = Two::new();
    t.m.mm
        .as_mut()
        .unwrap()
        .deny_io(range(0xfee00, 0xfef00))
        .unwrap();
    let beyond = t.mm().cfg.io_limit.0;
    unchanged(&mut t, |t| {
        for mfn in [0xfee00, 0xfeeff, beyond] {
            let rc = t.mmu(0, &[(Two::slot(d0(3), 40), (mfn << 12) | DATA)], SELF_ID);
            assert_eq!(rc, (EPERM, 0), "frame {mfn:#x}");
        }
    });
}

#[test]
fn the_msi_window_is_withheld_from_dom0_without_being_asked() {
    // Xen's `dom0_setup_permissions` denies MSI_ADDR_BASE_LO .. + MSI_ADDR_DEST_ID_MASK on every
    // machine: frames 0xfee00..=0xfeeff. The frame after it is ordinary MMIO.
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for mfn in [0xfee00, 0xfee01, 0xfeef0, 0xfeeff] {
            let rc = t.mmu(0, &[(Two::slot(d0(3), 40), (mfn << 12) | PRESENT)], SELF_ID);
            assert_eq!(rc, (EPERM, 0), "frame {mfn:#x}");
            assert_eq!(t.uvm(0, page_va(40), (mfn << 12) | PRESENT, 0, None), EPERM);
        }
    });
    let at = Two::slot(d0(3), 40);
    assert_eq!(
        t.mmu(0, &[(at, (0xfef00 << 12) | PRESENT)], SELF_ID),
        (0, 1)
    );
    assert_eq!(t.mmu(0, &[(at, 0)], SELF_ID), (0, 1));
    t.check();
}

#[test]
fn read_only_mmio_is_mapped_read_only_when_asked_for_writable() {
    // `mmio_ro_ranges` in `get_page_from_l1e`: a privileged domain's writable mapping of such a
    // frame succeeds without _PAGE_RW ("Forcing read-only access to MFN"); the cache attributes
    // are forced to UC as for any MMIO; an unprivileged domain is still refused.
    let mut t = Two::new();
    t.m.mm
        .as_mut()
        .unwrap()
        .mark_mmio_ro(range(0xfec00, 0xfec01))
        .unwrap();
    let at = Two::slot(d0(3), 40);
    assert_eq!(t.mmu(0, &[(at, (0xfec00 << 12) | DATA)], SELF_ID), (0, 1));
    let e = t.entry(d0(3), 40);
    assert_eq!(e & RW, 0, "read-only MMIO mapped writable: {e:#x}");
    assert_eq!(e & (PCD | PWT), PCD | PWT, "MMIO mapped cachable: {e:#x}");
    // A read-only request is taken as it is (apart from the cache attributes).
    assert_eq!(
        t.uvm(0, page_va(40), (0xfec00 << 12) | PRESENT | USER, 0, None),
        0
    );
    assert_eq!(t.entry(d0(3), 40) & RW, 0);
    // Other MMIO keeps its _PAGE_RW.
    assert_eq!(t.mmu(0, &[(at, (0xfec01 << 12) | DATA)], SELF_ID), (0, 1));
    assert_eq!(t.entry(d0(3), 40) & RW, RW);
    assert_eq!(t.mmu(0, &[(at, 0)], SELF_ID), (0, 1));
    t.check();
    unchanged(&mut t, |t| {
        let rc = t.mmu(1, &[(free_slot(), (0xfec00 << 12) | DATA)], SELF_ID);
        assert_eq!(rc, (EPERM, 0));
    });
}

// ---------------------------------------------------------------------------------------------
// Domains named by the caller.

#[test]
fn foreigndom_must_exist_and_not_be_the_callers_own_id() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let req = [(Two::slot(d0(3), 10), t.entry(d0(3), 10))];
        assert_eq!(t.mmu(0, &req, 77), (ESRCH, 0));
        // Xen's `get_pg_owner`: "Cannot specify itself as foreign domain".
        assert_eq!(t.mmu(0, &req, 0), (ESRCH, 0));
        assert_eq!(t.ext(0, &[(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], 0), ESRCH);
        assert_eq!(t.uvm(0, page_va(10), req[0].1, 0, Some(0)), ESRCH);
        assert_eq!(t.uvm(0, page_va(10), req[0].1, 0, Some(77)), ESRCH);
        // The page-table owner in the upper half: domain 77 - 1.
        assert_eq!(t.mmu(0, &req, 77 << 16 | SELF_ID), (ESRCH, 0));
    });
}

#[test]
fn an_unprivileged_domain_may_not_act_on_another() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let req = [(free_slot(), (d0(10) << 12) | DATA)];
        assert_eq!(t.mmu(1, &req, 0), (EPERM, 0));
        // The check is made per request: an empty batch succeeds.
        assert_eq!(t.mmu(1, &[], 0), (0, 0));
        // Naming dom0's tables.
        let rc = t.mmu(1, &[(Two::slot(d0(3), 40), 0)], (1 << 16) | SELF_ID);
        assert_eq!(rc, (EPERM, 0));
        // mmuext_op checks before the loop.
        assert_eq!(t.ext(1, &[], 0), EPERM);
        assert_eq!(t.ext(1, &[], DOMID_XEN.into()), EPERM);
        assert_eq!(
            t.uvm(1, page_va(40), (d0(10) << 12) | DATA, 0, Some(0)),
            EPERM
        );
    });
}

#[test]
fn machphys_update_is_for_the_callers_own_tables() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        let rc = t.mmu(
            0,
            &[((d1(10) << 12) | MMU_MACHPHYS_UPDATE, 1)],
            (2 << 16) | SELF_ID,
        );
        assert_eq!(rc, (EPERM, 0));
    });
}

#[test]
fn base_pointer_and_flush_operations_refuse_a_foreign_domain() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for cmd in [
            MMUEXT_NEW_BASEPTR,
            MMUEXT_NEW_USER_BASEPTR,
            MMUEXT_TLB_FLUSH_LOCAL,
            MMUEXT_INVLPG_LOCAL,
            MMUEXT_TLB_FLUSH_MULTI,
            MMUEXT_INVLPG_MULTI,
            MMUEXT_TLB_FLUSH_ALL,
            MMUEXT_INVLPG_ALL,
            MMUEXT_FLUSH_CACHE,
            MMUEXT_FLUSH_CACHE_GLOBAL,
            MMUEXT_SET_LDT,
        ] {
            assert_eq!(t.ext(0, &[(cmd, d1(0), 0)], 1), EPERM, "cmd {cmd}");
        }
        // dom1's L4 is not dom0's to load even without foreigndom.
        assert_eq!(t.ext(0, &[(MMUEXT_NEW_BASEPTR, d1(0), 0)], SELF_ID), EINVAL);
    });
}

// ---------------------------------------------------------------------------------------------
// Arguments.

#[test]
fn unknown_commands_are_enosys() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        for cmd in 4..8 {
            let rc = t.mmu(1, &[(Two::slot(d1(3), 10) | cmd, 0)], SELF_ID);
            assert_eq!(rc, (ENOSYS, 0), "mmu_update command {cmd}");
        }
        for cmd in [14, 21, 9999] {
            assert_eq!(t.ext(1, &[(cmd, 0, 0)], SELF_ID), ENOSYS, "mmuext {cmd}");
        }
        assert_eq!(
            t.ext(1, &[(MMUEXT_MARK_SUPER, d1(10), 0)], SELF_ID),
            EOPNOTSUPP
        );
        assert_eq!(
            t.ext(1, &[(MMUEXT_UNMARK_SUPER, d1(10), 0)], SELF_ID),
            EOPNOTSUPP
        );
    });
}

#[test]
fn lists_in_the_hypervisors_range_are_efault_even_when_empty() {
    let mut t = Two::new();
    let hv = hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
    unchanged(&mut t, |t| {
        for nr in [__HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op] {
            assert_eq!(t.call(1, nr, [hv, 0, 0, DOMID_SELF.into(), 0]), EFAULT);
            assert_eq!(t.call(1, nr, [1 << 47, 1, 0, DOMID_SELF.into(), 0]), EFAULT);
        }
    });
}

#[test]
fn vcpu_masks_that_cannot_be_read_are_refused() {
    let mut t = Two::new();
    let unmapped = 0x7000_0000_0000;
    unchanged(&mut t, |t| {
        for cmd in [MMUEXT_TLB_FLUSH_MULTI, MMUEXT_INVLPG_MULTI] {
            assert_eq!(t.ext(1, &[(cmd, 0, unmapped)], SELF_ID), EINVAL);
        }
    });
}

#[test]
fn cache_flushes_need_io_privileges() {
    let mut t = Two::new();
    assert_eq!(t.ext(1, &[(MMUEXT_FLUSH_CACHE, 0, 0)], SELF_ID), EACCES);
    assert_eq!(
        t.ext(1, &[(MMUEXT_FLUSH_CACHE_GLOBAL, 0, 0)], SELF_ID),
        EINVAL
    );
    assert!(!t.doms[1].vcpu().flush.cache_flush);
}

#[test]
fn set_ldt_refuses_misaligned_oversized_and_hypervisor_tables() {
    let mut t = Two::new();
    let hv = hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
    for (base, ents) in [(0x1008, 1), (0x1000, 8193), (hv, 1), (1 << 47, 1)] {
        assert_eq!(t.ext(1, &[(MMUEXT_SET_LDT, base, ents)], SELF_ID), EINVAL);
    }
    assert_eq!(
        (t.doms[1].vcpu().ldt_base, t.doms[1].vcpu().ldt_ents),
        (0, 0)
    );
}

#[test]
fn clear_and_copy_refuse_frames_that_are_not_writable_ram_of_the_owner() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        assert_eq!(t.ext(1, &[(MMUEXT_CLEAR_PAGE, d0(10), 0)], SELF_ID), EINVAL);
        assert_eq!(
            t.ext(1, &[(MMUEXT_COPY_PAGE, d1(10), d0(10))], SELF_ID),
            EINVAL
        );
        assert_eq!(
            t.ext(1, &[(MMUEXT_COPY_PAGE, d0(10), d1(10))], SELF_ID),
            EINVAL
        );
        // I/O memory is not RAM, even for dom0 naming DOMID_IO.
        assert_eq!(
            t.ext(0, &[(MMUEXT_CLEAR_PAGE, 2, 0)], DOMID_IO.into()),
            EINVAL
        );
    });
}

#[test]
fn update_va_mapping_needs_a_validated_l1_of_the_caller() {
    let mut t = Two::new();
    unchanged(&mut t, |t| {
        // VA 2 MiB: L2 slot 1 is empty.
        assert_eq!(t.uvm(1, 2 << 20, (d1(10) << 12) | DATA, 0, None), EINVAL);
        // A bad flag is refused before anything changes, whatever the flush flags.
        let rc = t.uvm(
            1,
            page_va(10),
            (d1(10) << 12) | DATA | PCD,
            UVMF_TLB_FLUSH,
            None,
        );
        assert_eq!(rc, EINVAL);
    });
}

// ---------------------------------------------------------------------------------------------
// Seeding.

#[test]
fn seeding_refuses_frames_that_are_taken_and_domains_it_does_not_know() {
    let mut t = Two::new();
    let mm = t.m.mm.as_mut().unwrap();
    assert_eq!(
        mm.assign(range(40, 41), Owner::Domain(0)),
        Err(SeedError::NotFree {
            mfn: Mfn(40),
            owner: Owner::Domain(0)
        })
    );
    assert_eq!(
        mm.assign(range(100, 101), Owner::Domain(9)),
        Err(SeedError::UnknownDomain { id: 9 })
    );
    assert_eq!(
        mm.assign(range(127, 129), Owner::Xen),
        Err(SeedError::OutOfRange { mfn: Mfn(128) })
    );
    assert_eq!(mm.frames.get(Mfn(127)).unwrap().owner(), Owner::Free);
    assert_eq!(
        mm.add_domain(crate::domain::DomainInfo {
            id: 1,
            privileged: false
        }),
        Err(SeedError::DomainExists { id: 1 })
    );
    assert_eq!(
        mm.share_xen_page_with_guest(Mfn(20), 1, true),
        Err(SeedError::NotFree {
            mfn: Mfn(20),
            owner: Owner::Domain(0)
        })
    );
    let msg = SeedError::NotValidated {
        mfn: Mfn(0x42),
        level: PtLevel::L2,
    }
    .to_string();
    assert_eq!(msg, "L2 table 0x42 did not validate");
}

#[test]
fn seeding_refuses_tables_that_do_not_validate() {
    let mut t = Two::new();
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    mm.add_domain(crate::domain::DomainInfo {
        id: 2,
        privileged: false,
    })
    .unwrap();
    mm.assign(
        FrameRange {
            start: Mfn(80),
            end: Mfn(84),
        },
        Owner::Domain(2),
    )
    .unwrap();
    let mut dom = fresh_domain(2, false, Mfn(0));
    // An L4 whose slot 0 maps itself writable.
    mem.write_u64(Maddr(Two::slot(80, 0)), (80 << 12) | TABLE_FLAGS)
        .unwrap();
    let err = mm
        .validate_and_pin_initial_tables(mem, &mut dom, Mfn(80), [])
        .unwrap_err();
    assert_eq!(
        err,
        SeedError::Refused {
            mfn: Mfn(80),
            errno: hypercall_abi::errno::Errno::EINVAL
        }
    );
    // A table listed at the wrong level.
    mem.write_u64(Maddr(Two::slot(80, 0)), 0).unwrap();
    let err = mm
        .validate_and_pin_initial_tables(mem, &mut dom, Mfn(80), [(Mfn(81), PtLevel::L3)])
        .unwrap_err();
    assert_eq!(
        err,
        SeedError::NotValidated {
            mfn: Mfn(81),
            level: PtLevel::L3
        }
    );
}

#[test]
fn a_table_the_hypervisor_cannot_read_does_not_validate() {
    // The frame table covers 8 frames, machine memory only 6: frame 7 cannot be read.
    let mut mem = crate::mm::FakeMemory::new(0, 6 * 4096);
    let mut mm = new_mm(8, Maddr(0));
    let mut dom = fresh_domain(1, false, Mfn(0));
    mm.add_domain(dom.info()).unwrap();
    mm.assign(range(4, 8), Owner::Domain(1)).unwrap();
    let err = mm
        .validate_and_pin_initial_tables(&mut mem, &mut dom, Mfn(7), [])
        .unwrap_err();
    assert_eq!(
        err,
        SeedError::Refused {
            mfn: Mfn(7),
            errno: hypercall_abi::errno::Errno::EFAULT
        }
    );
    assert_eq!(mm.frames.get(Mfn(7)).unwrap().page_type(), PageType::None);
    assert_eq!(mm.frames.get(Mfn(7)).unwrap().count(), 1);
}
