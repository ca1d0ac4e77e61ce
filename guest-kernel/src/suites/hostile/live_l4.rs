//! `hostile=live-l4`: change the L4 the CPU runs on, within the batch that leaves it (issue 11,
//! finding 2).
//!
//! A hypervisor that drops the old L4's type reference at `MMUEXT_NEW_BASEPTR` but loads CR3 only
//! on its way out leaves the CPU on a table that is, for the rest of the batch or multicall, an
//! ordinary page of the guest: unpinned, it can be cleared (`MMUEXT_CLEAR_PAGE`), overwritten
//! with slots of the guest's choosing (`MMUEXT_COPY_PAGE`) or written with `mmu_update`, and the
//! hypervisor then runs on page tables the guest controls. Xen switches CR3 first
//! (`new_guest_cr3` calls `write_ptbase` before the put), so each sequence succeeds harmlessly:
//! the CPU is on the new table when the old one becomes a page.
//!
//! The attacker tries each sequence on its boot L4, after making a copy of it to leave for:
//!
//! - one `mmuext_op` batch: unpin, leave, `CLEAR_PAGE`, and one more op (read through the copy);
//! - one batch: unpin, leave, `COPY_PAGE` from a page whose slots 256..271 map the attacker's own
//!   page writable;
//! - a multicall: `mmuext_op` (unpin, leave), then `mmu_update` writing zeros over slots 256..271.
//!
//! After each it goes back (the copy is copied over the boot L4, which becomes the base pointer
//! again and is pinned again) and prints `batch_clear=`, `batch_copy=`, `multicall=` (return
//! codes and `done` counts, Xen's being all 0 and full counts) and, at the end,
//! `xen_slots_intact=1` if the boot L4's hypervisor slots are what they were at the start.

use alloc::vec::Vec;

use guest_kernel::paging::{entry_maddr, make_entry, Mfn, PTE_A, PTE_D, PTE_P, PTE_RW, PTE_US};
use hypercall_abi::xen::{
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, MmuUpdate, MulticallEntry, DOMID_SELF,
    MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L4_TABLE,
    MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MMU_NORMAL_PT_UPDATE,
};

use super::super::conformance::ext;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::pt;
use crate::kernel::{direct_map, mm};

/// The hypervisor's L4 slots: 256..272.
const XEN_SLOTS: core::ops::Range<usize> = 256..272;

fn write(table: Mfn, idx: usize, val: u64) -> MmuUpdate {
    MmuUpdate {
        ptr: entry_maddr(table, idx) | MMU_NORMAL_PT_UPDATE,
        val,
    }
}

/// Writes `entries` (index, value) into frame `table` with `mmu_update`, which for a frame that
/// is not a validated table is a checked plain write; `Err` if refused.
fn fill(table: Mfn, entries: impl Iterator<Item = (usize, u64)>) -> Result<(), &'static str> {
    let reqs: Vec<MmuUpdate> = entries.map(|(i, v)| write(table, i, v)).collect();
    for chunk in reqs.chunks(64) {
        if hc::mmu_update(chunk, DOMID_SELF).0 != 0 {
            return Err("mmu_update of a scratch table refused");
        }
    }
    Ok(())
}

/// The boot L4 back in place after a sequence left it for `copy`: `copy` is copied over it, it
/// becomes the base pointer again and is pinned again. (rc, done).
fn back(l4: Mfn, copy: Mfn) -> (i64, u32) {
    let ops = [
        ext(MMUEXT_COPY_PAGE, l4.0, copy.0),
        ext(MMUEXT_NEW_BASEPTR, l4.0, 0),
        ext(MMUEXT_PIN_L4_TABLE, l4.0, 0),
    ];
    hc::mmuext_op(&ops, DOMID_SELF)
}

pub fn run() -> Result<(), &'static str> {
    direct_map::init_memory().map_err(|_| "init_memory failed")?;
    let l4 = mm::kernel_l4();
    let entry = |t: Mfn, i: usize| pt::read_entry(t, i).map_err(|_| "unreadable table");
    let mut slots_before = [0u64; 16];
    for (k, i) in XEN_SLOTS.enumerate() {
        slots_before[k] = entry(l4, i)?;
    }
    // A copy of the boot L4 to leave for (Xen fills in its own slots when it validates it), and
    // a page of "hypervisor slots" mapping the attacker's own page writable.
    let copy = pt::new_table().map_err(|_| "no frame for the copy")?;
    let mut guest_slots = Vec::new();
    for i in (0..512).filter(|i| !XEN_SLOTS.contains(i)) {
        let e = entry(l4, i)?;
        if e != 0 {
            guest_slots.push((i, e));
        }
    }
    fill(copy, guest_slots.into_iter())?;
    let evil = pt::new_table().map_err(|_| "no frame for the evil page")?;
    let evil_entry = make_entry(evil.0, PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D);
    fill(evil, XEN_SLOTS.map(|i| (i, evil_entry)))?;

    // 1. One batch: unpin, leave, clear, and one more op.
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4.0, 0),
        ext(MMUEXT_NEW_BASEPTR, copy.0, 0),
        ext(MMUEXT_CLEAR_PAGE, l4.0, 0),
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    let (rc, done) = hc::mmuext_op(&ops, DOMID_SELF);
    let (b, bd) = back(l4, copy);
    println!("hostile: live-l4: batch_clear={rc},{done} back={b},{bd}");

    // 2. One batch: unpin, leave, copy the evil slots over the old table.
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4.0, 0),
        ext(MMUEXT_NEW_BASEPTR, copy.0, 0),
        ext(MMUEXT_COPY_PAGE, l4.0, evil.0),
    ];
    let (rc, done) = hc::mmuext_op(&ops, DOMID_SELF);
    let (b, bd) = back(l4, copy);
    println!("hostile: live-l4: batch_copy={rc},{done} back={b},{bd}");

    // 3. A multicall: unpin and leave, then zeros over the old table's hypervisor slots.
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4.0, 0),
        ext(MMUEXT_NEW_BASEPTR, copy.0, 0),
    ];
    let mut reqs = [write(l4, 0, 0); 16];
    for (k, i) in XEN_SLOTS.enumerate() {
        reqs[k] = write(l4, i, 0);
    }
    let mut done = [0xdeadu32; 2];
    let mut calls = [
        MulticallEntry {
            op: __HYPERVISOR_mmuext_op.into(),
            result: 0x5a5a,
            args: [
                gp(ops.as_ptr()),
                ops.len() as u64,
                gp(&raw mut done[0]),
                DOMID_SELF.into(),
                0,
                0,
            ],
        },
        MulticallEntry {
            op: __HYPERVISOR_mmu_update.into(),
            result: 0x5a5a,
            args: [
                gp(reqs.as_ptr()),
                reqs.len() as u64,
                gp(&raw mut done[1]),
                DOMID_SELF.into(),
                0,
                0,
            ],
        },
    ];
    // SAFETY: the lists and `done` are live for the call; the only table that changes under
    // the kernel is the boot L4, which is left for an identical copy first, and put back after.
    let rc = unsafe { hc::multicall(&mut calls) };
    let (b, bd) = back(l4, copy);
    println!(
        "hostile: live-l4: multicall={rc},{},{} done={},{} back={b},{bd}",
        calls[0].result as i64, calls[1].result as i64, done[0], done[1]
    );

    let mut intact = true;
    for (k, i) in XEN_SLOTS.enumerate() {
        intact &= entry(l4, i)? == slots_before[k];
    }
    println!("hostile: live-l4: xen_slots_intact={}", u8::from(intact));
    // The copy and the evil page are ordinary pages again.
    pt::release_table(copy).map_err(|_| "release of the copy refused")?;
    pt::release_table(evil).map_err(|_| "release of the evil page refused")?;
    Ok(())
}
