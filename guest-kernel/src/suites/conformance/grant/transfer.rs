//! `GNTTABOP_transfer` cases (`grant.transfer_*`): dom0 gives frames to itself through its own
//! `GTF_accept_transfer` entry (Xen looks the receiver up by id, so dom0's own id works and
//! `DOMID_SELF` does not), and every refusal it can provoke alone. The frames given are ones
//! populated for the case (ours, mapped nowhere); a refusal after Xen stole the frame frees it,
//! so those cases print how the reservation moved and whether the frame is still ours, never a
//! frame number. Runs on the version-1 table after the swap case; every entry is cleared again.

use hypercall_abi::grant_table::{
    GNTTABOP_transfer, GTF_accept_transfer, GTF_permit_access, GnttabTransfer,
};
use hypercall_abi::xen::DOMID_SELF;

use super::super::exchange::{current, decrease, populate};
use super::{
    data_pte, flush_local, normal, op, op_raw, peek, poke, restore, ScratchMap, Suite, Table, ME,
    NON_CANONICAL, NO_SUCH_DOMAIN, OTHER_DOMID, UNMAPPED,
};
use crate::kernel::hypercall as hc;
use crate::kernel::mm;

/// The entry the cases use (above the map and copy cases' ones).
const R_XFER: u32 = 20;
/// Pfns the cases populate and name (another range than the reservation and exchange groups').
const PFN: u64 = 0x7_c000;

fn transfer(mfn: u64, domid: u16, gref: u32) -> (i64, i16) {
    let mut t = [GnttabTransfer {
        mfn,
        domid,
        r#ref: gref,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut t, 1);
    (rc, t[0].status)
}

/// A fresh frame of ours at pfn `pfn`, mapped nowhere (0 if populate failed).
fn fresh(pfn: u64) -> u64 {
    let mut l = [pfn];
    if populate(&mut l, 0) == 1 {
        l[0]
    } else {
        0
    }
}

pub(super) fn cases(s: &mut Suite, tbl: &Table, table_mfn: u64, g_mfn: u64, r: &ScratchMap) {
    // SAFETY: unmapped and non-canonical addresses only, which the hypervisor refuses.
    let (neg, zero, unmapped, nc) = unsafe {
        (
            op_raw(GNTTABOP_transfer, UNMAPPED, 0x8000_0000),
            op_raw(GNTTABOP_transfer, UNMAPPED, 0),
            op_raw(GNTTABOP_transfer, UNMAPPED, 1),
            op_raw(GNTTABOP_transfer, NON_CANONICAL, 1),
        )
    };
    s.case(
        "grant.transfer_counts_and_pointers",
        format_args!("negative={neg} zero={zero} unmapped={unmapped} non_canonical={nc}"),
    );

    // Frames that cannot be stolen: refused before anything moves.
    tbl.set(R_XFER, GTF_accept_transfer, ME, PFN);
    let base = current();
    let (_, beyond) = transfer(0xffff_ffff_ffff, ME, R_XFER);
    let (_, mapped) = transfer(g_mfn, ME, R_XFER);
    let (_, table) = transfer(table_mfn, ME, R_XFER);
    let (_, zero_mfn) = transfer(0, ME, R_XFER);
    let delta = current() - base;
    s.case(
        "grant.transfer_bad_frames",
        format_args!(
            "beyond_ram={beyond} mapped={mapped} grant_table_frame={table} mfn0={zero_mfn} flags={:#x} delta={delta}",
            tbl.flags(R_XFER)
        ),
    );

    // A frame still mapped (at scratch page r) is refused; unmapped, it goes.
    let base = current();
    let mfn = fresh(PFN);
    let (rc, _) = hc::mmu_update(&[normal(r.pte_maddr, data_pte(mfn, r.pte))], DOMID_SELF);
    flush_local();
    poke(r.va, 0x7a7a);
    let (_, still_mapped) = transfer(mfn, ME, R_XFER);
    let flags_mapped = tbl.flags(R_XFER);
    let back = restore(r);
    let (rc_x, st) = transfer(mfn, ME, R_XFER);
    let e = peek(tbl.va + 8 * u64::from(R_XFER));
    let frame_ok = e >> 32 == mfn & 0xffff_ffff;
    let m2p_ok = mm::mfn_to_pfn(mfn) == PFN;
    let delta = current() - base;
    // Ours again: map it to look at what it holds, then give it back.
    let _ = hc::mmu_update(&[normal(r.pte_maddr, data_pte(mfn, r.pte))], DOMID_SELF);
    flush_local();
    let kept = peek(r.va) == 0x7a7a;
    let _ = restore(r);
    let dec = decrease(&mut [mfn], 0);
    let after = current() - base;
    s.case(
        "grant.transfer_to_own_id",
        format_args!(
            "map={rc} mapped={still_mapped} flags_after_refusal={flags_mapped:#x} restore={} rc={rc_x} status={st} flags={:#x} frame_ok={} m2p_ok={} contents_kept={} delta={delta} decrease={dec} delta_after={after}",
            u8::from(back.ok()),
            e & 0xffff,
            u8::from(frame_ok),
            u8::from(m2p_ok),
            u8::from(kept),
        ),
    );

    // Refusals after the steal: the frame is gone (freed), whatever the entry said.
    let refusals: [(&str, u16, u32, u16, u16); 5] = [
        (
            "grant.transfer_refused_no_such_domain",
            NO_SUCH_DOMAIN,
            R_XFER,
            GTF_accept_transfer,
            ME,
        ),
        (
            "grant.transfer_refused_domid_self",
            DOMID_SELF,
            R_XFER,
            GTF_accept_transfer,
            ME,
        ),
        (
            "grant.transfer_refused_not_accepting",
            ME,
            R_XFER,
            GTF_permit_access,
            ME,
        ),
        (
            "grant.transfer_refused_other_domid",
            ME,
            R_XFER,
            GTF_accept_transfer,
            OTHER_DOMID,
        ),
        (
            "grant.transfer_refused_ref_beyond_table",
            ME,
            0xffff_fff0,
            GTF_accept_transfer,
            ME,
        ),
    ];
    for (i, (name, domid, gref, flags, edom)) in refusals.into_iter().enumerate() {
        tbl.set(R_XFER, flags, edom, PFN);
        let base = current();
        let mfn = fresh(PFN + 1 + i as u64);
        let (rc, st) = transfer(mfn, domid, gref);
        let delta = current() - base;
        let entry_kept = tbl.flags(R_XFER) == u64::from(flags);
        let dec = decrease(&mut [mfn], 0);
        s.case(
            name,
            format_args!(
                "populated={} rc={rc} status={st} delta={delta} entry_kept={} decrease_after={dec}",
                u8::from(mfn != 0),
                u8::from(entry_kept)
            ),
        );
    }
    tbl.set(R_XFER, 0, 0, 0);
}
