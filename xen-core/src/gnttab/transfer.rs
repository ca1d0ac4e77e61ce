//! `GNTTABOP_transfer`: a frame of the caller becomes another domain's (or its own again),
//! delivered through the receiver's `GTF_accept_transfer` grant entry, as Xen 4.17's
//! `gnttab_transfer` and `gnttab_prepare_for_transfer` (`xen/common/grant_table.c`) with
//! `steal_page` (`xen/arch/x86/mm.c`) do it for a 64-bit PV caller.
//!
//! Per element, in Xen's order:
//!
//! 1. `mfn` beyond the frame table is `GNTST_bad_page`;
//! 2. the frame is stolen from the caller ([`Mm::steal_page`]): the caller must own it, it must
//!    not be a hypervisor page shared with the caller, and its allocation must be its only
//!    reference (not mapped, not a page table, not pinned, not grant-mapped); otherwise
//!    `GNTST_bad_page` (-EINVAL of `steal_page`) and nothing changes. The caller's `tot_pages`
//!    drops by one (`steal_page(d, page, 0)`) and its TLB is flushed (`gnttab_flush_tlb`): no
//!    stale translation of the frame survives. The caller's own p2m is the guest's business;
//! 3. the receiver is looked up by id (`rcu_lock_domain_by_id`: `DOMID_SELF` is no domain, the
//!    caller's own id is): none is `GNTST_bad_domain`; dying, or without headroom
//!    (`tot_pages >= max_pages`), is `GNTST_general_error`. The stolen frame is freed in both
//!    cases (the caller has lost it, as on Xen);
//! 4. one page is reserved in the receiver's `tot_pages`; its entry `ref` must exist and read
//!    exactly `GTF_accept_transfer` for the caller's id, and gets `GTF_transfer_committed`
//!    (`gnttab_prepare_for_transfer`). If not, the reservation is undone, the frame freed and
//!    the status is `GNTST_general_error` (a reference beyond the table included: Xen answers
//!    that with the same status, not `GNTST_bad_gntref`);
//! 5. the frame becomes the receiver's (`assign_pages(.., MEMF_no_refcount)`: the allocation
//!    reference, no type); its M2P entry is set to the pfn the receiver wrote in the entry's
//!    frame field (`guest_physmap_add_page` for a PV domain), the frame field (v1 `frame`, v2
//!    `full_page.frame`) gets the MFN, then the entry's flags `GTF_transfer_completed`.
//!
//! The frame's contents travel with it: that is the point of the operation (Linux's old netback
//! flipped received packets this way). Xen copies a frame above what a v1 entry's 32-bit
//! `frame` can name to a lower one (`GNTST_address_too_big` if none); no machine frame here
//! reaches 2^32, so that path cannot arise and is not built.

use hypercall_abi::grant_table::{
    GNTST_bad_domain, GNTST_bad_page, GNTST_general_error, GNTST_okay, GTF_accept_transfer,
    GTF_transfer_committed, GTF_transfer_completed, GnttabTransfer,
};
use hypercall_abi::Errno;

use crate::domain::{Domain, DomainId};
use crate::gnttab::GrantTable;
use crate::mm::frame_alloc::{FramePool, FrameRange};
use crate::mm::frame_table::{Mm, Owner};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// The domains a transfer may reach besides the caller (`rcu_lock_domain_by_id`).
pub trait Receivers {
    /// Domain `id` (not the caller), whether it is dying, and its grant table.
    fn receiver(&mut self, id: DomainId) -> Option<(&mut Domain, bool, &mut GrantTable)>;
}

/// `gnttab_prepare_for_transfer(rd, ld, ref)`: whether entry `gref` of `rgt` accepts a transfer
/// from `ld`; if so it is marked `GTF_transfer_committed`.
fn prepare_for_transfer(
    mem: &mut dyn MachineMemoryMut,
    rgt: &GrantTable,
    ld: DomainId,
    gref: u32,
) -> bool {
    if gref >= rgt.nr_entries() {
        return false; // "Bad grant reference for transfer"
    }
    let (flags, domid, _) = rgt.entry(mem, gref);
    if flags != GTF_accept_transfer || domid != ld {
        return false; // "Bad flags or dom"
    }
    rgt.set_header_flags(mem, gref, flags | GTF_transfer_committed);
    true
}

/// One element of `GNTTABOP_transfer` from `me` (whose table is `mine`): its `GNTST_*` status.
/// A stolen frame no domain receives goes back to `pool`.
pub fn transfer_one(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    pool: &mut dyn FramePool,
    me: &mut Domain,
    mine: &mut GrantTable,
    others: &mut dyn Receivers,
    op: &GnttabTransfer,
) -> i16 {
    let ld = me.id;
    let mfn = Mfn(op.mfn);
    if !mm.frames.mfn_valid(mfn) {
        return GNTST_bad_page; // "out-of-range"
    }
    match mm.steal_page(mfn, ld) {
        Ok(_) => {}
        Err(Errno::EINVAL) => return GNTST_bad_page,
        Err(_) => return GNTST_general_error,
    }
    // `steal_page(d, page, 0)` takes the page off the caller's total.
    me.nr_pages = me.nr_pages.saturating_sub(1);
    // `gnttab_flush_tlb(d)`: the caller may still hold a translation of the frame it unmapped.
    let v = me.vcpu_mut();
    v.flush.flush_all(&mut v.perf);

    // `rcu_lock_domain_by_id(gop.domid)`: the caller's own id is the caller, `DOMID_SELF` nobody.
    let found = if op.domid == ld {
        Some((me, false, mine))
    } else {
        others.receiver(op.domid)
    };
    let Some((rd, dying, rgt)) = found else {
        mm.give_back(mem, pool, mfn);
        return GNTST_bad_domain; // "can't find d%d"
    };
    if dying || rd.nr_pages >= rd.max_pages {
        mm.give_back(mem, pool, mfn);
        return GNTST_general_error; // "is dying" / "has no headroom"
    }
    // The page is reserved in the receiver's total (`domain_adjust_tot_pages(e, 1)`) before its
    // entry is looked at.
    rd.nr_pages += 1;
    let range = FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    };
    let okay = prepare_for_transfer(mem, rgt, ld, op.r#ref);
    // `assign_pages(e, page, 0, MEMF_no_refcount)`: the stolen frame is free but still marked
    // as the caller's until the pool takes it back; it is handed straight on.
    let assigned = okay && {
        let _ = mm.take_loose(mfn);
        mm.assign(range, Owner::Domain(rd.id)).is_ok()
    };
    if !assigned {
        rd.nr_pages = rd.nr_pages.saturating_sub(1);
        mm.give_back(mem, pool, mfn);
        return GNTST_general_error;
    }
    // Tell the receiver about its new frame: `guest_physmap_add_page(e, sha->frame, mfn)` (for
    // PV: the M2P entry), then the frame field, then `GTF_transfer_completed`.
    let gref = op.r#ref;
    let pfn = rgt.entry_v2(mem, gref).frame();
    let pfn = if rgt.version() == 2 {
        pfn
    } else {
        pfn & 0xffff_ffff
    };
    let _ = mem.write_u64(Maddr(mm.cfg.m2p.0 + mfn.0 * 8), pfn);
    rgt.set_entry_frame(mem, gref, mfn.0);
    let (flags, _, _) = rgt.entry(mem, gref);
    rgt.set_header_flags(mem, gref, flags | GTF_transfer_completed);
    GNTST_okay
}
