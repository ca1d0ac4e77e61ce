//! Negative `mmu_update`, `MMU_MACHPHYS_UPDATE` and `mmuext_op` cases: bad pointers, bad
//! counts, bad domains, bad frames and commands, and a batch whose k-th entry is invalid.

use core::ptr;

use guest_kernel::paging::{make_entry, PTE_A, PTE_P, PTE_RW};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::xen::{
    __HYPERVISOR_mmu_update, __HYPERVISOR_xen_version, MmuUpdate, DOMID_IO, DOMID_SELF, DOMID_XEN,
    MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_MARK_SUPER,
    MMUEXT_PIN_L2_TABLE, MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI,
    MMUEXT_UNMARK_SUPER, MMU_MACHPHYS_UPDATE,
};

use super::*;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::shared_info;

pub(super) fn mmu_update_cases(s: &mut Suite, e: &Env) {
    let [a, b, ..] = e.p;

    s.run("mmu_update.map_unowned_frame", || {
        let (rc, done) = mmu(&[normal(a.pte_maddr, data_pte(e.unowned, a.pte))], SELF);
        let r = restore(&a);
        values!("rc={rc} done={done}{r}")
    });

    s.run("mmu_update.map_unowned_frame_readonly", || {
        let pte = make_entry(e.unowned, PTE_P | PTE_A);
        let (rc, done) = mmu(&[normal(a.pte_maddr, pte)], SELF);
        let r = restore(&a);
        values!("rc={rc} done={done}{r}")
    });

    s.run("mmu_update.map_own_l2_writable", || {
        let (rc, done) = mmu(&[normal(b.pte_maddr, make_entry(e.l2, DATA_FLAGS))], SELF);
        let r = restore(&b);
        values!("rc={rc} done={done}{r}")
    });

    s.run("mmu_update.map_own_l3_writable", || {
        let (rc, done) = mmu(&[normal(b.pte_maddr, make_entry(e.l3, DATA_FLAGS))], SELF);
        let r = restore(&b);
        values!("rc={rc} done={done}{r}")
    });

    // The command is `ptr & 7`: a pointer 4 bytes into an entry is command 4, which is unknown.
    s.run("mmu_update.misaligned_ptr", || {
        let (rc, done) = mmu(&[normal(a.pte_maddr | 4, data_pte(a.mfn, a.pte))], SELF);
        let r = restore(&a);
        values!("rc={rc} done={done}{r}")
    });

    // The frame holding the entry must be ours (`get_page_from_gfn(pt_owner, ..)`).
    s.run("mmu_update.ptr_beyond_ram", || {
        let (rc, done) = mmu(&[normal((e.max_ram + 16) << 12, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.ptr_io_frame", || {
        let (rc, done) = mmu(&[normal(VGA_MFN << 12, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.ptr_unowned_frame", || {
        let (rc, done) = mmu(&[normal(e.unowned << 12, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // shared_info is a writable page of ours as far as the type system goes: the update is a
    // plain write, here into the unused tail of the page.
    s.run("mmu_update.ptr_shared_info_frame", || {
        let Some(si) = shared_info::get() else {
            return values!("shared_info_unmapped");
        };
        let spare = si as u64 + SHINFO_SPARE;
        let before = read(spare);
        let at = (e.shinfo << 12) + SHINFO_SPARE;
        let (rc, done) = mmu(&[normal(at, 0x5a5a_5a5a)], SELF);
        let reads_back = read(spare) == 0x5a5a_5a5a;
        let (undo, _) = mmu(&[normal(at, before)], SELF);
        values!(
            "rc={rc} done={done} reads_back={} undo={undo}",
            u8::from(reads_back)
        )
    });
}

pub(super) fn mmu_update_argument_cases(s: &mut Suite, e: &Env) {
    let [a, _, _, d, _, _, p6, p7] = e.p;
    let noop = normal(a.pte_maddr, data_pte(a.mfn, a.pte));

    // `foreigndom` naming the caller by its own id is refused ("Cannot specify itself as
    // foreign domain"); `*done` is still written.
    s.run("mmu_update.foreigndom_own_id", || {
        let (rc, done) = mmu(&[noop], 0);
        values!("rc={rc} done={done:#x}")
    });

    // The upper half of `foreigndom` names the page tables' owner plus one: a domain that does
    // not exist fails before anything, `*done` untouched; 1 is ourselves.
    s.run("mmu_update.pt_owner_no_such_domain", || {
        let fd = ((u32::from(NO_SUCH_DOMAIN) + 1) << 16) | SELF;
        let (rc, done) = mmu(&[noop], fd);
        values!("rc={rc} done={done:#x}")
    });

    s.run("mmu_update.pt_owner_self", || {
        let (rc, done) = mmu(&[noop], (1 << 16) | SELF);
        values!("rc={rc} done={done}")
    });

    // DOMID_IO and DOMID_XEN as the owner of what is mapped: our own frame is neither's.
    s.run("mmu_update.foreigndom_io_own_frame", || {
        let (rc, done) = mmu(
            &[normal(a.pte_maddr, data_pte(a.mfn, a.pte) ^ PTE_RW)],
            DOMID_IO.into(),
        );
        let r = restore(&a);
        values!("rc={rc} done={done}{r}")
    });

    s.run("mmu_update.foreigndom_xen_own_frame", || {
        let pte = make_entry(a.mfn, PTE_P | PTE_A);
        let (rc, done) = mmu(&[normal(a.pte_maddr, pte)], DOMID_XEN.into());
        let r = restore(&a);
        values!("rc={rc} done={done}{r}")
    });

    s.run("mmu_update.foreigndom_io_vga_frame", || {
        let pte = make_entry(VGA_MFN, PTE_P | PTE_A);
        let (rc, done) = mmu(&[normal(a.pte_maddr, pte)], DOMID_IO.into());
        let flags = flags_of(l1_value(&a));
        let r = restore(&a);
        values!("rc={rc} done={done} flags={flags:#x}{r}")
    });

    list_pointer_cases(
        s,
        [
            "mmu_update.count_preempted_bit",
            "mmu_update.preempted_marker_null_list",
            "mmu_update.list_in_hypervisor_area",
        ],
        gp(&noop),
        mmu_raw,
    );

    s.run("mmu_update.list_non_canonical", || {
        let mut done = SENTINEL;
        // SAFETY: a non-canonical list pointer: refused, nothing read.
        let rc = unsafe { mmu_raw(NON_CANONICAL, 1, gp(&raw mut done), SELF) };
        values!("rc={rc} done={done:#x}")
    });

    // A list whose second entry is on an unmapped page: the first is done, then -EFAULT.
    s.run("mmu_update.list_second_entry_unmapped", || {
        let unmap = set_pte(&p7, 0);
        let list = p6.va + 4096 - 16;
        poke(list, noop.ptr);
        poke(list + 8, noop.val);
        let mut done = SENTINEL;
        // SAFETY: the first entry is readable, the second unmapped (refused with -EFAULT).
        let rc = unsafe { mmu_raw(list, 2, gp(&raw mut done), SELF) };
        let r = restore(&p7);
        values!("rc={rc} done={done} unmap={unmap}{r}")
    });

    // Xen ignores a failure to write `*done`.
    s.run("mmu_update.done_pointer_unmapped", || {
        // SAFETY: a valid one-entry list; `done` is unmapped, which the hypervisor must survive.
        let rc = unsafe { mmu_raw(gp(&noop), 1, UNMAPPED, SELF) };
        values!("{rc}")
    });

    s.run("mmu_update.done_pointer_readonly", || {
        poke(d.va, u64::from(SENTINEL));
        let ro = readonly(&d);
        // SAFETY: a valid one-entry list; `done` is mapped read-only, so the write must fail.
        let rc = unsafe { mmu_raw(gp(&noop), 1, d.va, SELF) };
        let untouched = peek(d.va) == u64::from(SENTINEL);
        let r = restore(&d);
        values!("rc={rc} untouched={} readonly={ro}{r}", u8::from(untouched))
    });

    s.run("mmu_update.done_pointer_hypervisor_area", || {
        // SAFETY: a valid one-entry list; `done` is in the hypervisor's area: refused.
        let rc = unsafe { mmu_raw(gp(&noop), 1, HYPERVISOR_VIRT_START, SELF) };
        values!("{rc}")
    });

    // A batch of six stops at its fifth entry (a MACHPHYS_UPDATE of a frame beyond RAM).
    s.run("mmu_update.batch_fifth_invalid", || {
        let bad = MmuUpdate {
            ptr: ((e.max_ram + 1) << 12) | MMU_MACHPHYS_UPDATE,
            val: 0,
        };
        let (rc, done) = mmu(&[noop, noop, noop, noop, bad, noop], SELF);
        values!("rc={rc} done={done}")
    });

    // Batches longer than a hypervisor processes in one go (Xen preempts and continues them
    // when a timer or interrupt is due; so do we, and at least every millisecond): `*done`
    // counts across the continuations, and a failure in a later part still stops the batch at
    // that entry.
    s.run("mmu_update.long_batch", || {
        let reqs = alloc::vec![noop; 1300];
        let (rc, done) = mmu(&reqs, SELF);
        values!("rc={rc} done={done}")
    });
    s.run("mmu_update.long_batch_fails_late", || {
        let mut reqs = alloc::vec![noop; 1300];
        reqs[1200] = MmuUpdate {
            ptr: ((e.max_ram + 1) << 12) | MMU_MACHPHYS_UPDATE,
            val: 0,
        };
        let (rc, done) = mmu(&reqs, SELF);
        values!("rc={rc} done={done}")
    });
    // Long enough to be preempted many times on either hypervisor (tens of milliseconds under
    // QEMU): the answer does not show where.
    s.run("mmu_update.very_long_batch", || {
        let reqs = alloc::vec![noop; LONG];
        let (rc, done) = mmu(&reqs, SELF);
        values!("rc={rc} done={done}")
    });

    // The same batches inside a multicall: Xen preempts them there too, writes the sub-call's
    // continuation into the entry and continues the multicall from it (`MCSF_call_preempted`;
    // under QEMU both hypervisors do, several times). Only the results and `*done` are defined
    // (the entries' arguments are not: they hold the last continuation's, if any).
    s.run("multicall.long_batch_inside", || {
        let good = alloc::vec![noop; LONG];
        let mut late = alloc::vec![noop; LONG];
        late[LONG - 1000] = MmuUpdate {
            ptr: ((e.max_ram + 1) << 12) | MMU_MACHPHYS_UPDATE,
            val: 0,
        };
        let mut done = [SENTINEL; 2];
        let batch = |list: &[MmuUpdate], done: &mut u32| {
            entry(
                __HYPERVISOR_mmu_update,
                [
                    gp(list.as_ptr()),
                    list.len() as u64,
                    gp(done as *mut u32),
                    DOMID_SELF.into(),
                    0,
                    0,
                ],
            )
        };
        let mut calls = [
            batch(&good, &mut done[0]),
            entry(__HYPERVISOR_xen_version, [0; 6]),
            batch(&late, &mut done[1]),
        ];
        // SAFETY: both lists and both `done` words are live for the call; every update restates
        // scratch page a's mapping (or fails).
        let rc = unsafe { hc::multicall(&mut calls) };
        // SAFETY: the hypervisor wrote `done` during the call.
        let done = unsafe { ptr::read_volatile(&raw const done) };
        values!(
            "rc={rc} results={},{:#x},{} done={},{}",
            calls[0].result as i64,
            calls[1].result,
            calls[2].result as i64,
            done[0],
            done[1]
        )
    });
}

/// Elements of the lists that are long enough to be preempted.
pub(super) const LONG: usize = 20_000;

pub(super) fn machphys_cases(s: &mut Suite, e: &Env) {
    let a = e.p[0];

    // MACHPHYS_UPDATE needs a reference on the frame as `foreigndom`'s (`get_page_from_mfn`).
    s.run("mmu_update.machphys_unowned_frame", || {
        let (rc, done) = machphys(e.unowned, 0, SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.machphys_beyond_ram", || {
        let (rc, done) = machphys(e.max_ram + 1, 0, SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.machphys_io_frame", || {
        let (rc, done) = machphys(VGA_MFN, 0, SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmu_update.machphys_foreigndom_xen_own_frame", || {
        let (rc, done) = machphys(a.mfn, mm::mfn_to_pfn(a.mfn), DOMID_XEN.into());
        values!("rc={rc} done={done}")
    });

    // shared_info is ours (shared), so its M2P entry is ours to set; put back after.
    s.run("mmu_update.machphys_shared_info", || {
        let before = mm::mfn_to_pfn(e.shinfo);
        let (rc, done) = machphys(e.shinfo, 0x1234, SELF);
        let reads_back = mm::mfn_to_pfn(e.shinfo) == 0x1234;
        let (undo, _) = machphys(e.shinfo, before, SELF);
        values!(
            "rc={rc} done={done} reads_back={} undo={undo}",
            u8::from(reads_back)
        )
    });

    // With DOMID_IO, the M2P entry of an I/O frame can be written (`xsm_mmu_update` does not
    // check DOMID_IO, and `get_page_from_mfn(mfn, dom_io)` succeeds).
    s.run("mmu_update.machphys_foreigndom_io_frame", || {
        let before = mm::mfn_to_pfn(VGA_MFN);
        let (rc, done) = machphys(VGA_MFN, 0x4321, DOMID_IO.into());
        let reads_back = mm::mfn_to_pfn(VGA_MFN) == 0x4321;
        let (undo, _) = machphys(VGA_MFN, before, DOMID_IO.into());
        values!(
            "rc={rc} done={done} reads_back={} undo={undo}",
            u8::from(reads_back)
        )
    });
}

pub(super) fn mmuext_argument_cases(s: &mut Suite, e: &Env) {
    // `paging_invlpg` ignores a non-canonical address; INVLPG_ALL checks `__addr_ok` only.
    s.run("mmuext_op.invlpg_local_non_canonical", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_INVLPG_LOCAL, NON_CANONICAL, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.invlpg_all_hypervisor_va", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_INVLPG_ALL, HYPERVISOR_VIRT_START, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    // A vCPU mask that cannot be read is -EINVAL for the MULTI commands; an empty one is fine.
    s.run("mmuext_op.tlb_flush_multi_bad_mask", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_TLB_FLUSH_MULTI, 0, UNMAPPED)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.invlpg_multi_bad_mask", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_INVLPG_MULTI, e.p[0].va, UNMAPPED)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.tlb_flush_multi_empty_mask", || {
        let mask = 0u64;
        let (rc, done) = ext_ops(&[ext(MMUEXT_TLB_FLUSH_MULTI, 0, gp(&mask))], SELF);
        values!("rc={rc} done={done}")
    });

    // Flushes act on the caller only: a foreign `foreigndom` is -EPERM.
    s.run("mmuext_op.tlb_flush_foreigndom_io", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], DOMID_IO.into());
        values!("rc={rc} done={done}")
    });

    // `get_pg_owner` failures return before the loop, `*done` untouched.
    s.run("mmuext_op.foreigndom_own_id", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], 0);
        values!("rc={rc} done={done:#x}")
    });

    s.run("mmuext_op.foreigndom_no_such_domain", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], NO_SUCH_DOMAIN.into());
        values!("rc={rc} done={done:#x}")
    });

    // SET_LDT: base page-aligned and a guest address, at most 8192 entries; with 0 entries the
    // base is ignored.
    s.run("mmuext_op.set_ldt_misaligned", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, e.p[0].va + 8, 1)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.set_ldt_too_many_entries", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, e.p[0].va, 8193)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.set_ldt_hypervisor_va", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, HYPERVISOR_VIRT_START, 1)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.set_ldt_non_canonical", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, NON_CANONICAL, 1)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.set_ldt_zero_entries_bad_base", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, NON_CANONICAL | 8, 0)], SELF);
        values!("rc={rc} done={done}")
    });

    s.run("mmuext_op.set_ldt_max_entries", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_SET_LDT, e.p[0].va, 8192)], SELF);
        let clear = ext1(MMUEXT_SET_LDT, 0, 0);
        values!("rc={rc} done={done} clear={clear}")
    });

    // Superpage marking was removed from Xen: -EOPNOTSUPP, not -ENOSYS.
    s.run("mmuext_op.mark_super", || {
        let (rc, done) = ext_ops(&[ext(MMUEXT_MARK_SUPER, e.p[2].mfn, 0)], SELF);
        let unmark = ext1(MMUEXT_UNMARK_SUPER, e.p[2].mfn, 0);
        values!("rc={rc} done={done} unmark={unmark}")
    });

    // The continuation marker, as for mmu_update.
    let op = ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0);
    list_pointer_cases(
        s,
        [
            "mmuext_op.count_preempted_bit",
            "mmuext_op.preempted_marker_null_list",
            "mmuext_op.list_in_hypervisor_area",
        ],
        gp(&op),
        ext_raw,
    );

    s.run("mmuext_op.batch_second_pin_fails", || {
        let ops = [
            ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
            ext(MMUEXT_PIN_L2_TABLE, e.p[2].mfn, 0),
            ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ];
        let (rc, done) = ext_ops(&ops, SELF);
        values!("rc={rc} done={done}")
    });
}

/// The list-pointer cases `mmu_update` and `mmuext_op` share (`names`, in this order):
///
/// - bit 31 of `count` marks a continuation: `*done` is read first and added to;
/// - exactly bit 31 with a null list is how Xen passes a result to its own continuation: the
///   call returns `foreigndom`;
/// - a list in the hypervisor's area is refused before it is looked at (`guest_handle_okay`):
///   `*done` untouched.
///
/// `raw` is the hypercall (list, count, done, foreigndom), `one` a valid one-element list.
fn list_pointer_cases(
    s: &mut Suite,
    names: [&'static str; 3],
    one: u64,
    raw: unsafe fn(u64, u64, u64, u32) -> i64,
) {
    s.run(names[0], || {
        let mut done = 5u32;
        // SAFETY: a one-entry list and a writable `done`.
        let rc = unsafe { raw(one, 1 | 1 << 31, gp(&raw mut done), SELF) };
        values!("rc={rc} done={done}")
    });
    s.run(names[1], || {
        // SAFETY: no list and no `done`: nothing is read or written.
        let rc = unsafe { raw(0, 1 << 31, 0, SELF) };
        values!("{rc}")
    });
    s.run(names[2], || {
        let mut done = SENTINEL;
        // SAFETY: the list pointer is in the hypervisor's area: refused, nothing read.
        let rc = unsafe { raw(HYPERVISOR_VIRT_START, 1, gp(&raw mut done), SELF) };
        values!("rc={rc} done={done:#x}")
    });
}
