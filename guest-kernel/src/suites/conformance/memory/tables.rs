//! The page-table cases of [`super`]: tables built from scratch pages, pinned, hooked into our
//! own tables, installed as base pointers, used linearly, and taken apart again, each refusal
//! with Xen 4.17's error (`_get_page_type`, `promote_lN_table`, `get_page_from_lNe`,
//! `get_lN_linear_pagetable`, `new_guest_cr3` in `xen/arch/x86/mm.c`).

use super::*;

pub(super) fn mmu_update_table_cases(s: &mut Suite, e: &Env) {
    let c = e.p[2];
    let t = e.p[4];

    // Xen's own L4 slots (256..271) are not the guest's to change, even to write zero.
    s.run("mmu_update.l4_xen_slot_first", || {
        let (rc, done) = mmu(&[normal(slot(e.l4, 256), 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.l4_xen_slot_last", || {
        let (rc, done) = mmu(&[normal(slot(e.l4, 271), 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // Bit 7 is reserved in an L4 entry, PSE (a superpage) in L3 and L2 entries: all refused.
    s.run("mmu_update.l4_entry_pse", || {
        write_slot(e.l4, FREE_L4_SLOT, make_entry(e.l3, DATA_FLAGS | PSE))
    });

    s.run("mmu_update.l3_entry_pse", || {
        let at = slot(e.l3, FREE_L3_SLOT);
        let (rc, done) = mmu(
            &[normal(
                at,
                make_entry(e.unowned & !0x3ffff, DATA_FLAGS | PSE),
            )],
            SELF,
        );
        let undo = undo_slot(rc, at);
        values!("rc={rc} done={done}{undo}")
    });

    s.run("mmu_update.l2_entry_pse", || {
        write_slot(
            e.l2,
            FREE_L2_SLOT,
            make_entry(e.unowned & !0x1ff, DATA_FLAGS | PSE),
        )
    });

    // Cache attributes are an L1 matter: PCD in an L2 entry is refused even for dom0.
    s.run("mmu_update.l2_entry_pcd", || {
        write_slot(e.l2, FREE_L2_SLOT, make_entry(e.l1, DATA_FLAGS | PCD))
    });

    // An L4 entry must point at an L3: our L2 is refused.
    s.run("mmu_update.l4_entry_wrong_level", || {
        write_slot(e.l4, FREE_L4_SLOT, make_entry(e.l2, DATA_FLAGS))
    });

    // Pointing an L3 or L2 entry at a page mapped writable would make it a page table: refused.
    s.run("mmu_update.l3_entry_writable_data_page", || {
        write_slot(e.l3, FREE_L3_SLOT, make_entry(c.mfn, DATA_FLAGS))
    });

    s.run("mmu_update.l2_entry_writable_data_page", || {
        write_slot(e.l2, FREE_L2_SLOT, make_entry(c.mfn, PTE_P | PTE_A))
    });

    // A page mapped only read-only becomes an L1 when an L2 entry points at it; from then on it
    // cannot be mapped writable, until the entry is gone.
    s.run("mmu_update.l2_entry_readonly_page_becomes_l1", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let at = slot(e.l2, FREE_L2_SLOT);
        let (rc, done) = mmu(&[normal(at, make_entry(t.mfn, DATA_FLAGS))], SELF);
        let writable = set_pte(&t, data_pte(t.mfn, t.pte));
        let (undo, _) = mmu(&[normal(at, 0)], SELF);
        flush_local();
        let r = untable(&t);
        values!("rc={rc} done={done} map_writable={writable} undo={undo}{r}")
    });

    // A read-only entry of an L2 pointing at the L2 itself is a linear page table: allowed.
    s.run("mmu_update.l2_entry_self_readonly", || {
        write_slot(e.l2, FREE_L2_SLOT, make_entry(e.l2, PTE_P | PTE_A))
    });

    s.run("mmu_update.l2_entry_self_writable", || {
        write_slot(e.l2, FREE_L2_SLOT, make_entry(e.l2, DATA_FLAGS))
    });

    // PRESERVE_AD is not limited to L1 entries: a second L4 entry for our L3, read back.
    s.run("mmu_update.preserve_ad_l4_entry", || {
        let at = slot(e.l4, FREE_L4_SLOT);
        let req = MmuUpdate {
            ptr: at | MMU_PT_UPDATE_PRESERVE_AD,
            val: make_entry(e.l3, PTE_P | PTE_RW),
        };
        let (rc, done) = mmu(&[req], SELF);
        let flags = flags_of(table_entry(e.l4, FREE_L4_SLOT));
        let (undo, _) = mmu(&[normal(at, 0)], SELF);
        flush_local();
        values!("rc={rc} done={done} flags={flags:#x} undo={undo}")
    });
}

/// Clears the table entry at `at` if a case's update (`rc`) unexpectedly succeeded.
/// Writes `entry` into slot `i` of table `table` (one `mmu_update`) and takes it out again if it
/// was accepted: `rc=.. done=..[ undo..]`.
pub(super) fn write_slot(table: u64, i: usize, entry: u64) -> Values {
    let at = slot(table, i);
    let (rc, done) = mmu(&[normal(at, entry)], SELF);
    let undo = undo_slot(rc, at);
    values!("rc={rc} done={done}{undo}")
}

pub(super) fn undo_slot(rc: i64, at: u64) -> Undo {
    if rc != 0 {
        return Undo(0);
    }
    let (undo, _) = mmu(&[normal(at, 0)], SELF);
    flush_local();
    Undo(undo)
}

/// A failed undo of an unexpected success, printed only then (` undo_failed=..`).
pub(super) struct Undo(i64);
impl core::fmt::Display for Undo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            rc => write!(f, " undo_failed={rc}"),
        }
    }
}

pub(super) fn pin_cases(s: &mut Suite, e: &Env) {
    let c = e.p[2];
    let t = e.p[4];

    s.run("mmuext_op.pin_l2_data_page", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L2_TABLE, c.mfn, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.pin_l3_data_page", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L3_TABLE, c.mfn, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // An L1 whose entries would give write access to a page table, or map someone else's frame,
    // fails validation.
    s.run("mmuext_op.pin_l1_maps_own_l4_writable", || {
        pin_table_with(&t, MMUEXT_PIN_L1_TABLE, &[make_entry(e.l4, DATA_FLAGS)])
    });

    s.run("mmuext_op.pin_l1_maps_unowned_frame", || {
        pin_table_with(
            &t,
            MMUEXT_PIN_L1_TABLE,
            &[make_entry(e.unowned, PTE_P | PTE_A)],
        )
    });

    s.run("mmuext_op.pin_l2_maps_writable_page", || {
        pin_table_with(&t, MMUEXT_PIN_L2_TABLE, &[make_entry(c.mfn, DATA_FLAGS)])
    });

    s.run("mmuext_op.pin_l2_with_superpage", || {
        pin_table_with(&t, MMUEXT_PIN_L2_TABLE, &[make_entry(0, DATA_FLAGS | PSE)])
    });

    // An I/O entry validates for dom0, made uncachable (PCD|PWT flipped in).
    s.run("mmuext_op.pin_l1_with_io_entry", || {
        if let Err(rc) = table_page(&t, &[make_entry(VGA_MFN, PTE_P | PTE_RW)]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let rc = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let flags = flags_of(read(t.va));
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let r = untable(&t);
        values!("rc={rc} flags={flags:#x} unpin={unpin}{r}")
    });

    // Pin, pin again, map writable, unpin, unpin again.
    s.run("mmuext_op.pin_l1_twice", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let pin = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let again = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let writable = set_pte(&t, data_pte(t.mfn, t.pte));
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let unpin_again = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let r = untable(&t);
        values!(
            "pin={pin} again={again} map_writable={writable} unpin={unpin} unpin_again={unpin_again}{r}"
        )
    });

    // Frames that are not our RAM cannot be pinned.
    s.run("mmuext_op.pin_l1_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L1_TABLE, e.max_ram + 1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.pin_l1_io_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L1_TABLE, VGA_MFN, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.pin_l1_io_frame_foreigndom_io", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L1_TABLE, VGA_MFN, 0)], DOMID_IO.into());
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.pin_l1_unowned_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L1_TABLE, e.unowned, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // Our tables in use have their type: pinning one as another level fails.
    s.run("mmuext_op.pin_l2_own_l1", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L2_TABLE, e.l1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.pin_l4_own_l3", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_PIN_L4_TABLE, e.l3, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // Only the boot L4 is pinned; the L1 over the scratch pages is in use but not pinned.
    s.run("mmuext_op.unpin_l1_in_use", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_UNPIN_TABLE, e.l1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // Unpinning the L4 in use is allowed (CR3 keeps its own reference); pin it back.
    s.run("mmuext_op.unpin_current_l4", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_UNPIN_TABLE, e.l4, 0)], SELF);
        let repin = ext1(MMUEXT_PIN_L4_TABLE, e.l4, 0);
        values!("rc={rc} done={done} repin={repin}")
    });

    s.run("mmuext_op.unpin_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_UNPIN_TABLE, e.max_ram + 1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.unpin_unowned_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_UNPIN_TABLE, e.unowned, 0)], SELF);
        values!("rc={rc} done={done}")
    });
}

/// Fills scratch page `t` with `entries`, maps it read-only, pins it with `cmd` (unpinning if
/// that succeeds), puts it back; the pin's return code and the undo.
pub(super) fn pin_table_with(t: &ScratchMap, cmd: u32, entries: &[u64]) -> Values {
    if let Err(rc) = table_page(t, entries) {
        let r = untable(t);
        return values!("setup_failed={rc}{r}");
    }
    let (rc, done) = ext_ops(&[ext(cmd, t.mfn, 0)], SELF);
    let unpin = if rc == 0 {
        ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0)
    } else {
        0
    };
    let r = untable(t);
    values!("rc={rc} done={done}{}{r}", Undo(unpin))
}

pub(super) fn baseptr_cases(s: &mut Suite, e: &Env) {
    let c = e.p[2];
    let t = e.p[4];

    s.run("mmuext_op.new_baseptr_l3", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, e.l3, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.new_baseptr_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, e.max_ram + 1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.new_baseptr_unowned_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, e.unowned, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.new_baseptr_io_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, VGA_MFN, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // Only the caller's own tables can be installed: a foreign `foreigndom` is -EPERM.
    s.run("mmuext_op.new_baseptr_foreigndom_io", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, e.l4, 0)], DOMID_IO.into());
        values!("rc={rc} done={done}")
    });

    // A copy of our L4 that is not pinned: validated on the spot and installed; then back.
    s.run("mmuext_op.new_baseptr_unpinned_copy", || {
        let copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        if let Err(rc) = table_page(&t, &copy) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let rc = ext1(MMUEXT_NEW_BASEPTR, t.mfn, 0);
        let back = ext1(MMUEXT_NEW_BASEPTR, e.l4, 0);
        let r = untable(&t);
        values!("rc={rc} back={back}{r}")
    });

    // The same copy with an entry Xen refuses (our L2 as an L3) fails validation.
    s.run("mmuext_op.new_baseptr_invalid_l4", || {
        let mut copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        copy[FREE_L4_SLOT] = make_entry(e.l2, DATA_FLAGS);
        if let Err(rc) = table_page(&t, &copy) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_BASEPTR, t.mfn, 0)], SELF);
        let back = if rc == 0 {
            ext1(MMUEXT_NEW_BASEPTR, e.l4, 0)
        } else {
            0
        };
        let r = untable(&t);
        values!("rc={rc} done={done}{}{r}", Undo(back))
    });

    s.run("mmuext_op.new_user_baseptr_data_page", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_USER_BASEPTR, c.mfn, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.new_user_baseptr_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_USER_BASEPTR, e.max_ram + 1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // The kernel L4 may double as the user L4; 0 removes it again.
    s.run("mmuext_op.new_user_baseptr_kernel_l4", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_NEW_USER_BASEPTR, e.l4, 0)], SELF);
        let reset = ext1(MMUEXT_NEW_USER_BASEPTR, 0, 0);
        values!("rc={rc} done={done} reset={reset}")
    });
}

pub(super) fn page_op_cases(s: &mut Suite, e: &Env) {
    let c = e.p[2];

    // CLEAR_PAGE and COPY_PAGE's destination need a writable type: page tables are refused,
    // and so is anything not our RAM.
    s.run("mmuext_op.clear_page_current_l4", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, e.l4, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.clear_page_own_l1", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, e.l1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.clear_page_unowned_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, e.unowned, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.clear_page_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, e.max_ram + 1, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // DOMID_IO frames are not RAM (`p2m_mmio_direct`): refused.
    s.run("mmuext_op.clear_page_io_frame_foreigndom_io", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, VGA_MFN, 0)], DOMID_IO.into());
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.copy_page_to_own_l1", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_COPY_PAGE, e.l1, c.mfn)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.copy_page_to_beyond_ram", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_COPY_PAGE, e.max_ram + 1, c.mfn)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.copy_page_from_unowned_frame", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_COPY_PAGE, c.mfn, e.unowned)], SELF);
        values!("rc={rc} done={done}")
    });

    // The source only needs a general reference: copying from a page table is allowed.
    s.run("mmuext_op.copy_page_from_current_l4", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_COPY_PAGE, c.mfn, e.l4)], SELF);
        let same = (0..512).all(|i| peek(c.va + 8 * i) == table_entry(e.l4, i as usize));
        fill(&c, &[0xc3]);
        values!("rc={rc} done={done} copy_matches={}", u8::from(same))
    });
}
