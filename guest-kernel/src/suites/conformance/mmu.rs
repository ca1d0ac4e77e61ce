//! The first memory groups: `mmu_update`, `mmuext_op`, `update_va_mapping` and multicalls on
//! the scratch pages, each case restoring what it changed; then the unknown-hypercall cases. The
//! negative memory cases are in [`super::memory`].

use guest_kernel::paging::{make_entry, PTE_A, PTE_P};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::sched::SCHEDOP_yield;
use hypercall_abi::version::{XENVER_extraversion, XENVER_pagesize, XENVER_version};
use hypercall_abi::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_multicall, __HYPERVISOR_sched_op,
    __HYPERVISOR_xen_version, MmuUpdate, DOMID_SELF, MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR,
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE,
    MMU_MACHPHYS_UPDATE, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH,
};

use super::*;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

/// An address in the hypervisor's text, Xen's and ours (`XEN_VIRT_START` + 2 MiB).
const XEN_TEXT: u64 = 0xffff_82d0_4020_0000;
/// The hypervisor's direct map of machine memory, Xen's and ours (`DIRECTMAP_VIRT_START`).
const DIRECTMAP: u64 = 0xffff_8300_0000_0000;

pub(super) fn mmu_update_cases(s: &mut Suite) {
    let Some([a, b, c]) = scratch_pages(s, "mmu_update.setup") else {
        return;
    };
    poke(a.va, 0xa1);
    poke(b.va, 0xb2);
    poke(c.va, 0xc3);

    // Two PTE updates in one batch: swap the frames behind a and b, read back, swap back.
    let swap = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
    ];
    let (rc, done) = hc::mmu_update(&swap, DOMID_SELF);
    flush_local();
    let (ra, rb) = (peek(a.va), peek(b.va));
    let r = restore(&a).and(restore(&b));
    s.case(
        "mmu_update.batch_of_2",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}{r}"),
    );

    let (rc, done) = hc::mmu_update(&[], DOMID_SELF);
    s.case("mmu_update.count_0", format_args!("rc={rc} done={done}"));

    // Our own L4, which is pinned and in use: read-only is fine, writable is refused.
    let l4 = mm::l4_mfn();
    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, make_entry(l4, PTE_P | PTE_A))],
        DOMID_SELF,
    );
    flush_local();
    let same = peek(a.va) == peek(mm::layout().pt_base);
    let r = restore(&a);
    s.case(
        "mmu_update.map_own_l4_readonly",
        format_args!("rc={rc} done={done} reads_l4={}{r}", same as u8),
    );

    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, make_entry(l4, DATA_FLAGS))],
        DOMID_SELF,
    );
    flush_local();
    let intact = peek(a.va) == 0xa1;
    s.case(
        "mmu_update.map_own_l4_writable",
        format_args!("rc={rc} done={done} a_intact={}", intact as u8),
    );

    // The L1 that maps a, mapped writable: refused as well.
    let l1 = mm::l1_slot(a.va).map_or(0, |slot| slot.l1_mfn);
    let (rc, done) = hc::mmu_update(
        &[normal(b.pte_maddr, make_entry(l1, DATA_FLAGS))],
        DOMID_SELF,
    );
    flush_local();
    s.case(
        "mmu_update.map_own_l1_writable",
        format_args!("rc={rc} done={done}"),
    );

    // MMU_NORMAL_PT_UPDATE aimed at an ordinary writable page: Xen performs it as a plain write.
    let (rc, done) = hc::mmu_update(&[normal(c.mfn << 12, 0x1234_5000)], DOMID_SELF);
    let c_reads = peek(c.va);
    poke(c.va, 0xc3);
    s.case(
        "mmu_update.target_writable_page",
        format_args!("rc={rc} done={done} c_reads={c_reads:#x}"),
    );

    // A batch of four whose third entry maps our own L4 writable: processing stops there.
    let batch = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
        normal(a.pte_maddr, make_entry(l4, DATA_FLAGS)),
        normal(b.pte_maddr, data_pte(b.mfn, b.pte)),
    ];
    let (rc, done) = hc::mmu_update(&batch, DOMID_SELF);
    flush_local();
    let (ra, rb) = (peek(a.va), peek(b.va));
    let r = restore(&a).and(restore(&b));
    s.case(
        "mmu_update.batch_third_invalid",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}{r}"),
    );

    // Flag bits a PV guest may not set in an L1 entry: PCD|PWT (bits 3, 4) are allowed only with
    // I/O privileges, bit 8 (global) never.
    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte) | (1 << 8))],
        DOMID_SELF,
    );
    let r = restore(&a);
    s.case(
        "mmu_update.global_bit",
        format_args!("rc={rc} done={done}{r}"),
    );

    // A PTE pointer with a reserved command in its low bits.
    let (rc, done) = hc::mmu_update(
        &[MmuUpdate {
            ptr: a.pte_maddr | 3,
            val: data_pte(a.mfn, a.pte),
        }],
        DOMID_SELF,
    );
    let r = restore(&a);
    s.case(
        "mmu_update.cmd_no_translate",
        format_args!("rc={rc} done={done}{r}"),
    );

    // MACHPHYS_UPDATE of our own frame with its own pfn: allowed, a no-op.
    let pfn = mm::mfn_to_pfn(c.mfn);
    let (rc, done) = hc::mmu_update(
        &[MmuUpdate {
            ptr: (c.mfn << 12) | MMU_MACHPHYS_UPDATE,
            val: pfn,
        }],
        DOMID_SELF,
    );
    let still = mm::mfn_to_pfn(c.mfn) == pfn;
    s.case(
        "mmu_update.machphys_own_frame",
        format_args!("rc={rc} done={done} m2p_kept={}", still as u8),
    );

    // SAFETY: an unmapped request list: -EFAULT, nothing done.
    let rc = unsafe {
        let mut done = 0u32;
        let rc = hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_mmu_update,
            UNMAPPED,
            1,
            gp(&raw mut done),
            DOMID_SELF.into(),
            0,
        );
        s.case(
            "mmu_update.bad_pointer",
            format_args!("rc={rc} done={done}"),
        );
        rc
    };
    let _ = rc;

    // Hostile pointers for the list and for `*done`, which the hypervisor may copy through the
    // MMU (the guest's tables are live in CR3 during its hypercall): a list in the
    // hypervisor's text is -EFAULT; a `*done` in the hypervisor's direct map (at the alias of
    // page a's own frame, where a write would show), in a read-only page (the guest's own
    // page tables) or unmapped is not written, and the call succeeds (Xen ignores the failure).
    let same = [normal(a.pte_maddr, data_pte(a.mfn, a.pte))];
    let with_done = |list: u64, pdone: u64| {
        // SAFETY: the hypervisor reads the list and writes `*done` only where the guest may;
        // the pointers are the case.
        unsafe {
            hc::hypercall(
                hypercall_abi::xen::__HYPERVISOR_mmu_update,
                list,
                1,
                pdone,
                DOMID_SELF.into(),
                0,
            )
        }
    };
    let rc = with_done(XEN_TEXT, gp(same.as_ptr()));
    s.case(
        "mmu_update.list_in_hypervisor_text",
        format_args!("rc={rc}"),
    );
    poke(a.va, 0xa1);
    let rc = with_done(gp(same.as_ptr()), DIRECTMAP + (a.mfn << 12));
    s.case(
        "mmu_update.done_in_hypervisor_direct_map",
        format_args!("rc={rc} a_reads={:#x}", peek(a.va)),
    );
    let pt = mm::layout().pt_base;
    let before = peek(pt);
    let rc = with_done(gp(same.as_ptr()), pt);
    s.case(
        "mmu_update.done_read_only",
        format_args!("rc={rc} unchanged={}", (peek(pt) == before) as u8),
    );
    let rc = with_done(gp(same.as_ptr()), UNMAPPED);
    s.case("mmu_update.done_unmapped", format_args!("rc={rc}"));

    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte))],
        NO_SUCH_DOMAIN,
    );
    let r = restore(&a);
    s.case(
        "mmu_update.foreigndom_no_such_domain",
        format_args!("rc={rc} done={done}{r}"),
    );
}

pub(super) fn mmuext_op_cases(s: &mut Suite) {
    let Some([a, _, c]) = scratch_pages(s, "mmuext_op.setup") else {
        return;
    };
    let l4 = mm::l4_mfn();

    let (rc, done) = flush_local();
    s.case(
        "mmuext_op.tlb_flush_local",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_INVLPG_LOCAL, a.va, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.invlpg_local",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[], DOMID_SELF);
    s.case("mmuext_op.count_0", format_args!("rc={rc} done={done}"));

    let (rc, done) = hc::mmuext_op(&[ext(BAD_CMD, 0, 0)], DOMID_SELF);
    s.case("mmuext_op.unknown_cmd", format_args!("rc={rc} done={done}"));

    let batch = [
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ext(MMUEXT_INVLPG_LOCAL, a.va, 0),
        ext(BAD_CMD, 0, 0),
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    let (rc, done) = hc::mmuext_op(&batch, DOMID_SELF);
    s.case(
        "mmuext_op.batch_third_invalid",
        format_args!("rc={rc} done={done}"),
    );

    // A writable data page cannot become an L1 table; a page that is not pinned cannot be unpinned;
    // the current L4 is already pinned.
    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_PIN_L1_TABLE, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.pin_l1_writable_page",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_UNPIN_TABLE, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.unpin_not_pinned",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_PIN_L4_TABLE, l4, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.pin_l4_already_pinned",
        format_args!("rc={rc} done={done}"),
    );

    // New base pointer: a data page is refused, the current L4 is accepted (a CR3 reload).
    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.new_baseptr_data_page",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, l4, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.new_baseptr_current_l4",
        format_args!("rc={rc} done={done}"),
    );

    let mut done = 0u32;
    // SAFETY: an unmapped op list: -EFAULT.
    let rc = unsafe {
        hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_mmuext_op,
            UNMAPPED,
            1,
            gp(&raw mut done),
            DOMID_SELF.into(),
            0,
        )
    };
    s.case("mmuext_op.bad_pointer", format_args!("rc={rc} done={done}"));
}

pub(super) fn update_va_mapping_cases(s: &mut Suite) {
    let Some([a, b]) = scratch_pages(s, "update_va_mapping.setup") else {
        return;
    };
    poke(a.va, 0xa1);
    poke(b.va, 0xb2);

    let rc = remap_scratch(a.va, data_pte(b.mfn, a.pte), UVMF_INVLPG | UVMF_LOCAL);
    let reads = peek(a.va);
    let r = restore(&a);
    s.case(
        "update_va_mapping.invlpg",
        format_args!("rc={rc} a_reads={reads:#x}{r}"),
    );

    let rc = remap_scratch(a.va, data_pte(a.mfn, a.pte), UVMF_TLB_FLUSH | UVMF_LOCAL);
    let reads = peek(a.va);
    s.case(
        "update_va_mapping.tlb_flush",
        format_args!("rc={rc} a_reads={reads:#x}"),
    );

    let l4 = mm::l4_mfn();
    let rc = remap_scratch(a.va, make_entry(l4, DATA_FLAGS), UVMF_INVLPG);
    let intact = peek(a.va) == 0xa1;
    s.case(
        "update_va_mapping.own_l4_writable",
        format_args!("rc={rc} a_intact={}", intact as u8),
    );

    let rc = remap_scratch(NON_CANONICAL, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.non_canonical_va", format_args!("{rc}"));

    let rc = remap_scratch(HYPERVISOR_VIRT_START, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.hypervisor_va", format_args!("{rc}"));

    // A user-half address with no L3/L2/L1 behind it: there is no L1 entry to update.
    let rc = remap_scratch(UNMAPPED, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.no_l1_table", format_args!("{rc}"));

    // UVMF_MULTI: the bits above the flush type are a pointer to a vCPU mask; make it bad.
    let rc = remap_scratch(a.va, data_pte(a.mfn, a.pte), UNMAPPED | UVMF_INVLPG);
    let r = restore(&a);
    s.case(
        "update_va_mapping.multi_bad_vcpumask",
        format_args!("{rc}{r}"),
    );
}

pub(super) fn multicall_cases(s: &mut Suite) {
    let mut two = [
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_version.into(), 0, 0, 0, 0, 0],
        ),
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_pagesize.into(), 0, 0, 0, 0, 0],
        ),
    ];
    // SAFETY: both entries take no pointers.
    let rc = unsafe { hc::multicall(&mut two) };
    s.case(
        "multicall.two_queries",
        format_args!(
            "rc={rc} results={:#x},{}",
            two[0].result, two[1].result as i64
        ),
    );

    // Failures do not stop a multicall: each entry gets its own result.
    let mut mixed = [
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_version.into(), 0, 0, 0, 0, 0],
        ),
        entry(__HYPERVISOR_xen_version, [BAD_CMD.into(), 0, 0, 0, 0, 0]),
        entry(__HYPERVISOR_console_io, [BAD_CMD.into(), 0, 0, 0, 0, 0]),
        entry(__HYPERVISOR_sched_op, [SCHEDOP_yield.into(), 0, 0, 0, 0, 0]),
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_extraversion.into(), UNMAPPED, 0, 0, 0, 0],
        ),
    ];
    // SAFETY: no entry takes a valid pointer; the last one's is deliberately unmapped.
    let rc = unsafe { hc::multicall(&mut mixed) };
    s.case(
        "multicall.mixed_failures",
        format_args!(
            "rc={rc} results={:#x},{},{},{},{}",
            mixed[0].result,
            mixed[1].result as i64,
            mixed[2].result as i64,
            mixed[3].result as i64,
            mixed[4].result as i64
        ),
    );

    let mut unknown = [entry(60, [0; 6]), entry(1000, [0; 6])];
    // SAFETY: unknown hypercalls take nothing.
    let rc = unsafe { hc::multicall(&mut unknown) };
    s.case(
        "multicall.unknown_ops",
        format_args!(
            "rc={rc} results={},{}",
            unknown[0].result as i64, unknown[1].result as i64
        ),
    );

    let mut inner = [entry(
        __HYPERVISOR_xen_version,
        [XENVER_version.into(), 0, 0, 0, 0, 0],
    )];
    let mut outer = [entry(
        __HYPERVISOR_multicall,
        [gp(inner.as_mut_ptr()), 1, 0, 0, 0, 0],
    )];
    // SAFETY: the nested list is live for the call.
    let rc = unsafe { hc::multicall(&mut outer) };
    s.case(
        "multicall.nested",
        format_args!(
            "rc={rc} outer={} inner_result={:#x}",
            outer[0].result as i64, inner[0].result
        ),
    );

    // SAFETY: an empty list touches nothing.
    let rc = unsafe { hc::multicall(&mut []) };
    s.case("multicall.count_0", format_args!("{rc}"));

    // SAFETY: an unmapped list: -EFAULT.
    let rc = unsafe { hc::hypercall(__HYPERVISOR_multicall, UNMAPPED, 2, 0, 0, 0) };
    s.case("multicall.bad_pointer", format_args!("{rc}"));

    // Many cheap entries: Xen asks whether to stop before each (`do_multicall`) and continues
    // the multicall from there; every entry still gets its result, once.
    let version = entry(
        __HYPERVISOR_xen_version,
        [XENVER_version.into(), 0, 0, 0, 0, 0],
    );
    let mut many = alloc::vec![version; 20_000];
    for (i, e) in many.iter_mut().enumerate() {
        // Every fifth entry fails: the results show that none was skipped or run twice.
        if i % 5 == 4 {
            e.args[0] = BAD_CMD.into();
        }
    }
    // SAFETY: no entry takes a pointer.
    let rc = unsafe { hc::multicall(&mut many) };
    let mut results = alloc::collections::BTreeMap::<i64, usize>::new();
    for e in &many {
        *results.entry(e.result as i64).or_default() += 1;
    }
    let mut counts = Values::new();
    for (r, n) in &results {
        let _ = core::fmt::Write::write_fmt(&mut counts, format_args!(" {r:#x}:{n}"));
    }
    s.case(
        "multicall.many_entries",
        format_args!("rc={rc} results{counts}"),
    );
}

pub(super) fn unknown_hypercall_cases(s: &mut Suite) {
    // SAFETY: hypercall 60 does not exist; it takes nothing.
    let rc = unsafe { hc::hypercall(60, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_in_page", format_args!("{rc}"));

    // SAFETY: hypercall 1000 does not exist; it takes nothing.
    let rc = unsafe { hc::raw_syscall(1000, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_beyond_page", format_args!("{rc}"));
}
