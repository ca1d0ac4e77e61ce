//! Page tables over their life: built, pinned, installed, unpinned and freed (the type and
//! reference counts Xen keeps), used through a linear (recursive) slot, and the live L4.

use super::tables::{pin_table_with, undo_slot};
use super::*;

/// Page tables built, pinned, hooked, unhooked and released: the reference and type counts
/// behind the answers.
pub(super) fn table_lifecycle_cases(s: &mut Suite, e: &Env) {
    let [a, _, c, _, t, u, ..] = e.p;

    // An L1 mapping itself: read-only is fine (a general reference only), writable is not (the
    // frame is being validated as an L1 and cannot also be writable).
    s.run("mmuext_op.pin_l1_maps_itself_readonly", || {
        pin_table_with(&t, MMUEXT_PIN_L1_TABLE, &[make_entry(t.mfn, PTE_P | PTE_A)])
    });

    s.run("mmuext_op.pin_l1_maps_itself_writable", || {
        pin_table_with(&t, MMUEXT_PIN_L1_TABLE, &[make_entry(t.mfn, DATA_FLAGS)])
    });

    // An L2 whose L1 maps the L2 writable: the nested validation fails with the L1's error.
    s.run("mmuext_op.pin_l2_whose_l1_maps_it_writable", || {
        if let Err(rc) = table_page(&u, &[make_entry(t.mfn, DATA_FLAGS)]) {
            let r = untable(&u);
            return values!("setup_failed={rc}{r}");
        }
        let v = pin_table_with(&t, MMUEXT_PIN_L2_TABLE, &[make_entry(u.mfn, DATA_FLAGS)]);
        let r = untable(&u);
        values!("{v}{r}")
    });

    // A pinned L1 that no L2 uses still has its entries checked on update.
    s.run("mmu_update.pinned_unused_l1", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let pin = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let (map, _) = mmu(
            &[normal(slot(t.mfn, 0), make_entry(c.mfn, DATA_FLAGS))],
            SELF,
        );
        let (map_l4, _) = mmu(
            &[normal(slot(t.mfn, 1), make_entry(e.l4, DATA_FLAGS))],
            SELF,
        );
        let pin_c = ext1(MMUEXT_PIN_L1_TABLE, c.mfn, 0);
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let r = untable(&t);
        values!(
            "pin={pin} map={map} map_l4_writable={map_l4} pin_mapped_page={pin_c} unpin={unpin}{r}"
        )
    });

    // A pinned L1 hooked into an L2, unpinned while in use, then unhooked: only then may it be
    // mapped writable again.
    s.run("mmu_update.l2_entry_to_pinned_l1", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let at = slot(e.l2, FREE_L2_SLOT);
        let pin = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let (hook, _) = mmu(&[normal(at, make_entry(t.mfn, DATA_FLAGS))], SELF);
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let in_use = set_pte(&t, data_pte(t.mfn, t.pte));
        let (unhook, _) = mmu(&[normal(at, 0)], SELF);
        flush_local();
        let r = untable(&t);
        values!(
            "pin={pin} hook={hook} unpin={unpin} map_writable_in_use={in_use} unhook={unhook}{r}"
        )
    });

    // A page whose type count is zero is an ordinary page to mmu_update, even if the guest maps
    // it read-only: the update is a plain write.
    s.run("mmu_update.target_readonly_page", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let (rc, done) = mmu(&[normal(slot(t.mfn, 0), 0x77)], SELF);
        let reads = read(t.va);
        let r = untable(&t);
        values!("rc={rc} done={done} reads={reads:#x}{r}")
    });

    // PIN_L4 ignores (and overwrites) what the guest put in Xen's slots.
    s.run("mmuext_op.pin_l4_garbage_in_xen_slots", || {
        let mut copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        for entry in &mut copy[256..272] {
            *entry = make_entry(c.mfn, DATA_FLAGS);
        }
        pin_table_with(&t, MMUEXT_PIN_L4_TABLE, &copy)
    });

    // A pinned copy of our L4 installed and left again, then unpinned.
    s.run("mmuext_op.new_baseptr_pinned_copy", || {
        let copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        if let Err(rc) = table_page(&t, &copy) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let pin = ext1(MMUEXT_PIN_L4_TABLE, t.mfn, 0);
        let rc = ext1(MMUEXT_NEW_BASEPTR, t.mfn, 0);
        let back = ext1(MMUEXT_NEW_BASEPTR, e.l4, 0);
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let r = untable(&t);
        values!("pin={pin} rc={rc} back={back} unpin={unpin}{r}")
    });

    // The boot L4 unpinned and left: its last type reference goes (it is devalidated); coming
    // back validates it again; then it is pinned again.
    s.run("mmuext_op.unpin_and_leave_boot_l4", || {
        let copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        if let Err(rc) = table_page(&t, &copy) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let unpin = ext1(MMUEXT_UNPIN_TABLE, e.l4, 0);
        let leave = ext1(MMUEXT_NEW_BASEPTR, t.mfn, 0);
        let pin_old = ext1(MMUEXT_PIN_L1_TABLE, e.l4, 0);
        let back = ext1(MMUEXT_NEW_BASEPTR, e.l4, 0);
        let repin = ext1(MMUEXT_PIN_L4_TABLE, e.l4, 0);
        let r = untable(&t);
        values!("unpin={unpin} leave={leave} pin_old_as_l1={pin_old} back={back} repin={repin}{r}")
    });

    // A descriptor page (set_gdt) can be neither mapped writable nor made a page table.
    s.run("mmu_update.map_gdt_frame_writable", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let gdt = set_gdt(&[t.mfn], 512);
        let writable = set_pte(&t, data_pte(t.mfn, t.pte));
        let pin = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let clear = ext1(MMUEXT_CLEAR_PAGE, t.mfn, 0);
        let drop = set_gdt(&[], 0);
        let r = untable(&t);
        values!(
            "set_gdt={gdt} map_writable={writable} pin_l1={pin} clear_page={clear} undo={drop}{r}"
        )
    });

    s.run("mmuext_op.clear_page_pinned_l1", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let pin = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let (rc, done) = ext_ops(&[ext(MMUEXT_CLEAR_PAGE, t.mfn, 0)], SELF);
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let r = untable(&t);
        values!("pin={pin} rc={rc} done={done} unpin={unpin}{r}")
    });

    s.run("mmuext_op.copy_page_onto_itself", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_COPY_PAGE, c.mfn, c.mfn)], SELF);
        values!("rc={rc} done={done}")
    });

    // The M2P entry of our own frame takes any value (Xen does not check it); put back.
    s.run("mmu_update.machphys_garbage_pfn", || {
        let before = mm::mfn_to_pfn(c.mfn);
        let (rc, done) = machphys(c.mfn, 0xdead_beef, SELF);
        let reads_back = mm::mfn_to_pfn(c.mfn) == 0xdead_beef;
        let (undo, _) = machphys(c.mfn, before, SELF);
        values!(
            "rc={rc} done={done} reads_back={} undo={undo}",
            u8::from(reads_back)
        )
    });

    // PRESERVE_AD on an L1 entry keeps the accessed and dirty bits the entry had.
    s.run("mmu_update.preserve_ad_l1_entry", || {
        let req = MmuUpdate {
            ptr: a.pte_maddr | MMU_PT_UPDATE_PRESERVE_AD,
            val: make_entry(a.mfn, PTE_P | PTE_RW | (a.pte & PTE_NX)),
        };
        let (rc, done) = mmu(&[req], SELF);
        let flags = flags_of(l1_value(&a));
        let r = restore(&a);
        values!("rc={rc} done={done} flags={flags:#x}{r}")
    });

    // What Xen makes of the flags: kernel mappings get _PAGE_USER and bit 52, keep a global bit;
    // user mappings (the guest set _PAGE_USER) get _PAGE_GLOBAL.
    s.run("update_va_mapping.global_kernel_mapping_flags", || {
        let rc = uvm(a.va, data_pte(a.mfn, a.pte) | (1 << 8), UVMF_INVLPG);
        let flags = flags_of(l1_value(&a));
        let r = restore(&a);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    s.run("update_va_mapping.user_mapping_flags", || {
        let rc = uvm(a.va, data_pte(a.mfn, a.pte) | (1 << 2), UVMF_INVLPG);
        let flags = flags_of(l1_value(&a));
        let r = restore(&a);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    s.run("update_va_mapping_otherdomain.domid_xen_own_frame", || {
        let rc = uvm_other(&a, make_entry(a.mfn, PTE_P | PTE_A), DOMID_XEN);
        let r = restore(&a);
        values!("rc={rc}{r}")
    });
}

/// Linear page tables: a read-only entry pointing at a validated table of its own level
/// (`get_lN_linear_pagetable`; `pv-linear-pt` is on by default in Xen 4.17).
pub(super) fn linear_table_cases(s: &mut Suite, e: &Env) {
    let [_, _, _, _, t, u, ..] = e.p;

    // Our L2 points read-only at another L2 (t, pinned): allowed, and the entry holds a type
    // reference on t, which outlives the pin.
    s.run("mmu_update.l2_entry_other_l2_readonly", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let pin = ext1(MMUEXT_PIN_L2_TABLE, t.mfn, 0);
        let at = slot(e.l2, FREE_L2_SLOT);
        let (rc, done) = mmu(&[normal(at, make_entry(t.mfn, PTE_P | PTE_A))], SELF);
        let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let writable = set_pte(&t, data_pte(t.mfn, t.pte));
        let (undo, _) = mmu(&[normal(at, 0)], SELF);
        flush_local();
        let r = untable(&t);
        values!(
            "pin={pin} rc={rc} done={done} unpin={unpin} map_writable={writable} undo={undo}{r}"
        )
    });

    s.run("mmu_update.l2_entry_other_l2_writable", || {
        let at = slot(e.l2, FREE_L2_SLOT);
        pin_and_link(&t, &[], MMUEXT_PIN_L2_TABLE, at, DATA_FLAGS, "pin")
    });

    // A table cannot both hold linear entries and be the target of one: t points linearly at
    // our L2, so our L2 cannot point linearly at t (and the reverse).
    s.run("mmu_update.linear_entries_both_ways", || {
        let entries = [make_entry(e.l2, PTE_P | PTE_A)];
        let at = slot(e.l2, FREE_L2_SLOT);
        let flags = PTE_P | PTE_A;
        pin_and_link(
            &t,
            &entries,
            MMUEXT_PIN_L2_TABLE,
            at,
            flags,
            "pin_with_linear_entry",
        )
    });

    // A table used as a linear target cannot get linear entries of its own: u (an L2 that t
    // points at linearly) refuses an entry pointing back at our L2.
    s.run("mmu_update.linear_target_gets_linear_entry", || {
        if let Err(rc) = table_page(&u, &[]) {
            let r = untable(&u);
            return values!("setup_failed={rc}{r}");
        }
        if let Err(rc) = table_page(&t, &[make_entry(u.mfn, PTE_P | PTE_A)]) {
            let r = untable(&t).and(untable(&u));
            return values!("setup_failed={rc}{r}");
        }
        let pin_u = ext1(MMUEXT_PIN_L2_TABLE, u.mfn, 0);
        let pin_t = ext1(MMUEXT_PIN_L2_TABLE, t.mfn, 0);
        let (rc, done) = mmu(&[normal(slot(u.mfn, 0), make_entry(e.l2, PTE_P | PTE_A))], SELF);
        let unpin_t = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
        let (again, _) = mmu(&[normal(slot(u.mfn, 0), make_entry(e.l2, PTE_P | PTE_A))], SELF);
        let (clear, _) = mmu(&[normal(slot(u.mfn, 0), 0)], SELF);
        let unpin_u = ext1(MMUEXT_UNPIN_TABLE, u.mfn, 0);
        let r = untable(&t).and(untable(&u));
        values!(
            "pin_u={pin_u} pin_t={pin_t} rc={rc} done={done} unpin_t={unpin_t} after_unpin={again} clear={clear} unpin_u={unpin_u}{r}"
        )
    });

    // The same one level up: our L4 points read-only at a pinned copy of itself.
    s.run("mmu_update.l4_entry_other_l4_readonly", || {
        let copy: [u64; 512] = core::array::from_fn(|i| table_entry(e.l4, i));
        let at = slot(e.l4, FREE_L4_SLOT);
        pin_and_link(&t, &copy, MMUEXT_PIN_L4_TABLE, at, PTE_P | PTE_A, "pin")
    });

    // A linear entry to a table that is not validated (a read-only page of type none) is
    // nothing: it is taken as a child table, validated as such.
    s.run("mmu_update.l3_entry_readonly_page_becomes_l2", || {
        if let Err(rc) = table_page(&t, &[]) {
            let r = untable(&t);
            return values!("setup_failed={rc}{r}");
        }
        let at = slot(e.l3, FREE_L3_SLOT);
        let (rc, done) = mmu(&[normal(at, make_entry(t.mfn, PTE_P | PTE_A))], SELF);
        let as_l1 = ext1(MMUEXT_PIN_L1_TABLE, t.mfn, 0);
        let as_l2 = ext1(MMUEXT_PIN_L2_TABLE, t.mfn, 0);
        let unpin = if as_l2 == 0 {
            ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0)
        } else {
            0
        };
        let undo = undo_slot(rc, at);
        let r = untable(&t);
        values!("rc={rc} done={done} pin_l1={as_l1} pin_l2={as_l2} unpin={unpin}{undo}{r}")
    });
}

/// The L4 in CR3 left and changed in the same batch or multicall (issue 11): the boot L4 is
/// unpinned and left for a copy, then cleared, copied over or written through `mmu_update`. On
/// Xen the CPU is on the copy by the time the old table loses its last type reference
/// (`new_guest_cr3` calls `write_ptbase` before the put), so the old table is an ordinary page
/// and every step succeeds; the next op of the batch is read through the copy. Each case goes
/// back: the copy is copied over the boot L4, which becomes the base pointer again (validation
/// rewrites its hypervisor slots) and is pinned again.
pub(super) fn live_l4_cases(s: &mut Suite, e: &Env) {
    let c = e.p[2];
    let t = e.p[4];
    let l4 = e.l4;
    let back = || {
        let ops = [
            ext(MMUEXT_COPY_PAGE, l4, t.mfn),
            ext(MMUEXT_NEW_BASEPTR, l4, 0),
            ext(MMUEXT_PIN_L4_TABLE, l4, 0),
        ];
        ext_ops(&ops, SELF)
    };
    // Scratch page 4 as a validated copy of the current L4; if that fails, the case's values.
    let copy_of_l4_failed = || {
        let copy: [u64; 512] = core::array::from_fn(|i| table_entry(l4, i));
        table_page(&t, &copy).err().map(|rc| {
            let r = untable(&t);
            values!("setup_failed={rc}{r}")
        })
    };

    s.run("mmuext_op.leave_and_clear_old_l4", || {
        if let Some(failed) = copy_of_l4_failed() {
            return failed;
        }
        let ops = [
            ext(MMUEXT_UNPIN_TABLE, l4, 0),
            ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
            ext(MMUEXT_CLEAR_PAGE, l4, 0),
            ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ];
        let (rc, done) = ext_ops(&ops, SELF);
        let (b, bd) = back();
        let r = untable(&t);
        values!("rc={rc} done={done} back={b},{bd}{r}")
    });

    s.run("mmuext_op.leave_and_copy_over_old_l4", || {
        if let Some(failed) = copy_of_l4_failed() {
            return failed;
        }
        // "Hypervisor slots" of the guest's choosing: its own page, writable.
        let mut evil = [0u64; 272];
        evil[256..].fill(make_entry(c.mfn, DATA_FLAGS));
        fill(&c, &evil);
        let ops = [
            ext(MMUEXT_UNPIN_TABLE, l4, 0),
            ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
            ext(MMUEXT_COPY_PAGE, l4, c.mfn),
        ];
        let (rc, done) = ext_ops(&ops, SELF);
        let (b, bd) = back();
        fill(&c, &[]);
        let r = untable(&t);
        values!("rc={rc} done={done} back={b},{bd}{r}")
    });

    s.run("multicall.leave_l4_then_write_its_xen_slots", || {
        if let Some(failed) = copy_of_l4_failed() {
            return failed;
        }
        let ops = [
            ext(MMUEXT_UNPIN_TABLE, l4, 0),
            ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
        ];
        let reqs: [MmuUpdate; 16] = core::array::from_fn(|k| normal(slot(l4, 256 + k), 0));
        let mut done = [SENTINEL; 2];
        let mut calls = [
            entry(
                __HYPERVISOR_mmuext_op,
                [gp(ops.as_ptr()), 2, gp(&raw mut done[0]), SELF.into(), 0, 0],
            ),
            entry(
                __HYPERVISOR_mmu_update,
                [
                    gp(reqs.as_ptr()),
                    16,
                    gp(&raw mut done[1]),
                    SELF.into(),
                    0,
                    0,
                ],
            ),
        ];
        // SAFETY: the lists and `done` are live for the call; the only table that changes under
        // the kernel is the boot L4, which is left for an identical copy first.
        let rc = unsafe { hc::multicall(&mut calls) };
        let (b, bd) = back();
        let r = untable(&t);
        let res = [calls[0].result as i64, calls[1].result as i64];
        values!(
            "rc={rc} results={},{} done={},{} back={b},{bd}{r}",
            res[0],
            res[1],
            done[0],
            done[1]
        )
    });
}

/// Makes `t` a table of `entries` pinned with `pin_cmd`, links it at the table slot `at` with
/// `flags`, then takes the link out, unpins `t` and gives it back: prints
/// `<pin_name>=.. rc=.. done=..[ undo..] unpin=..[ restore_failed=..]`.
fn pin_and_link(
    t: &ScratchMap,
    entries: &[u64],
    pin_cmd: u32,
    at: u64,
    flags: u64,
    pin_name: &str,
) -> Values {
    if let Err(rc) = table_page(t, entries) {
        let r = untable(t);
        return values!("setup_failed={rc}{r}");
    }
    let pin = ext1(pin_cmd, t.mfn, 0);
    let (rc, done) = mmu(&[normal(at, make_entry(t.mfn, flags))], SELF);
    let undo = undo_slot(rc, at);
    let unpin = ext1(MMUEXT_UNPIN_TABLE, t.mfn, 0);
    let r = untable(t);
    values!("{pin_name}={pin} rc={rc} done={done}{undo} unpin={unpin}{r}")
}
