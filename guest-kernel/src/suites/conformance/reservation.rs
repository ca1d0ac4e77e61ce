//! The reservation group: `XENMEM_populate_physmap`, `increase_reservation` and
//! `decrease_reservation` as a PV dom0 uses them (Xen 4.17's `xen/common/memory.c`).
//!
//! These operations answer with the number of extents done, never an errno: a bad argument,
//! domain, order, list or flag stops them before (or at) the extent it concerns. The cases print
//! return codes, how `current_reservation` moved (`delta`, never the absolute count, which
//! depends on the hypervisor's dom0 builder), whether a returned frame is plausible and what the
//! M2P says of it, never a frame number. Each case gives back what it took; the group runs last
//! because one case (`reservation.increase_null_list`) leaves a page with us that nobody can
//! name again.

use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::memory::{
    xenmemf_address_bits, xenmemf_node, CurrentReservation, DecreaseReservation,
    IncreaseReservation, MemoryNoArg, PopulatePhysmap, XENMEMF_exact_node_request,
    XENMEMF_populate_on_demand, XENMEMF_vnode, XENMEM_current_reservation,
    XENMEM_decrease_reservation, XENMEM_increase_reservation, XENMEM_populate_physmap,
    XenMemoryDomain, XenMemoryReservation,
};
use hypercall_abi::xen::{
    StartInfo, DOMID_SELF, MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, UVMF_INVLPG,
};

use super::{data_pte, ext, remap_scratch, scratch, values, Suite, NO_SUCH_DOMAIN, UNMAPPED};
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

/// Pseudo-physical frame numbers the cases populate: far above dom0's memory on both
/// hypervisors (the guest's p2m does not cover them; only the M2P learns them).
const PFN: u64 = 0x7_0000;
/// The scratch page the cases map a populated frame at.
const SCRATCH: usize = 7;

fn reservation(list: &mut [u64], order: u32, flags: u32, domid: u16) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: gp(list.as_mut_ptr()),
        nr_extents: list.len() as u64,
        extent_order: order,
        mem_flags: flags,
        domid,
        ..Default::default()
    }
}

fn populate_with(list: &mut [u64], order: u32, flags: u32, domid: u16) -> i64 {
    hc::memory_op(&mut PopulatePhysmap(reservation(list, order, flags, domid)))
}

fn populate(list: &mut [u64], order: u32) -> i64 {
    populate_with(list, order, 0, DOMID_SELF)
}

fn decrease(list: &mut [u64], order: u32) -> i64 {
    hc::memory_op(&mut DecreaseReservation(reservation(
        list, order, 0, DOMID_SELF,
    )))
}

fn increase(list: &mut [u64], order: u32) -> i64 {
    hc::memory_op(&mut IncreaseReservation(reservation(
        list, order, 0, DOMID_SELF,
    )))
}

/// `XENMEM_current_reservation` of ourselves.
fn current() -> i64 {
    hc::memory_op(&mut CurrentReservation(XenMemoryDomain {
        domid: DOMID_SELF,
    }))
}

/// `memory_op(cmd, r)` with a command word of our choosing (a continuation index) or a
/// reservation whose list is not ours.
fn raw(cmd: u64, r: &mut XenMemoryReservation) -> i64 {
    // SAFETY: `r` is a live reservation; its list is either ours or an address the hypervisor
    // must refuse (unmapped, the hypervisor's range, null).
    unsafe {
        hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_memory_op,
            cmd,
            gp(r),
            0,
            0,
            0,
        )
    }
}

/// Whether `mfn` is a plausible machine frame for pfn `pfn`: RAM, not the pfn itself (a PV
/// guest gets machine frames back), and the M2P maps it to `pfn`.
fn frame_ok(mfn: u64, pfn: u64, max_ram: u64) -> (u8, u8) {
    let plausible = mfn < max_ram && mfn != pfn;
    let m2p = plausible && mm::mfn_to_pfn(mfn) == pfn;
    (plausible as u8, m2p as u8)
}

/// A RAM frame we do not own: the one after the highest frame of our p2m (or before the
/// lowest), skipping shared_info.
fn unowned_frame(si: &StartInfo, max_ram: u64) -> Option<u64> {
    let shinfo = si.shared_info >> 12;
    let ours = (0..si.nr_pages).filter_map(mm::pfn_to_mfn);
    let (lo, hi) = ours.fold((u64::MAX, 0), |(lo, hi), m| (lo.min(m), hi.max(m)));
    let above = if hi + 1 == shinfo { hi + 2 } else { hi + 1 };
    if above < max_ram {
        return Some(above);
    }
    let below = if lo - 1 == shinfo { lo - 2 } else { lo - 1 };
    (below >= 0x100).then_some(below)
}

pub(super) fn cases(s: &mut Suite, si: &StartInfo) {
    let max_ram = hc::memory_op_noarg(MemoryNoArg::MaximumRamPage) as u64;

    s.run("reservation.populate_one", || {
        let base = current();
        let mut l = [PFN];
        let rc = populate(&mut l, 0);
        let delta = current() - base;
        let (plausible, m2p) = frame_ok(l[0], PFN, max_ram);
        let back = decrease(&mut l, 0);
        let after = current() - base;
        values!("rc={rc} delta={delta} mfn_ok={plausible} m2p_ok={m2p} decrease={back} delta_after={after}")
    });

    s.run("reservation.populate_three", || {
        let base = current();
        let mut l = [PFN, PFN + 5, PFN + 9];
        let rc = populate(&mut l, 0);
        let delta = current() - base;
        let ok: u8 = [PFN, PFN + 5, PFN + 9]
            .iter()
            .zip(l)
            .map(|(&p, m)| frame_ok(m, p, max_ram).1)
            .sum();
        let distinct = (l[0] != l[1] && l[1] != l[2] && l[0] != l[2]) as u8;
        let back = decrease(&mut l, 0);
        let after = current() - base;
        values!("rc={rc} delta={delta} m2p_ok={ok} distinct={distinct} decrease={back} delta_after={after}")
    });

    s.run("reservation.populate_order2", || {
        let base = current();
        let mut l = [PFN];
        let rc = populate(&mut l, 2);
        let delta = current() - base;
        let m = l[0];
        let aligned = m.is_multiple_of(4) as u8;
        let m2p: u8 = (0..4).map(|j| frame_ok(m + j, PFN + j, max_ram).1).sum();
        let back = decrease(&mut l, 2);
        let after = current() - base;
        values!("rc={rc} delta={delta} aligned={aligned} m2p_ok={m2p} decrease={back} delta_after={after}")
    });

    s.run("reservation.increase_one", || {
        let base = current();
        let mut l = [0u64];
        let rc = increase(&mut l, 0);
        let delta = current() - base;
        let plausible = (l[0] != 0 && l[0] < max_ram) as u8;
        let back = decrease(&mut l, 0);
        let after = current() - base;
        values!("rc={rc} delta={delta} mfn_ok={plausible} decrease={back} delta_after={after}")
    });

    let unowned = unowned_frame(si, max_ram);
    s.run("reservation.decrease_not_owned", || {
        let base = current();
        let Some(unowned) = unowned else {
            return values!("setup_failed=no_unowned_frame");
        };
        let frames = [unowned, 0xb8, max_ram, max_ram + 100, 1 << 40, u64::MAX];
        let mut rcs = [0i64; 6];
        for (rc, f) in rcs.iter_mut().zip(frames) {
            *rc = decrease(&mut [f], 0);
        }
        let delta = current() - base;
        values!(
            "unowned={} io={} max_ram={} beyond={} huge={} all_ones={} delta={delta}",
            rcs[0],
            rcs[1],
            rcs[2],
            rcs[3],
            rcs[4],
            rcs[5]
        )
    });

    s.run("reservation.decrease_stops_at_bad_extent", || {
        let base = current();
        let Some(unowned) = unowned else {
            return values!("setup_failed=no_unowned_frame");
        };
        let mut l = [PFN, PFN + 1];
        let rc = populate(&mut l, 0);
        let mut bad = [l[0], unowned, l[1]];
        let partial = decrease(&mut bad, 0);
        let mid = current() - base;
        let rest = decrease(&mut [l[1]], 0);
        let again = decrease(&mut [l[0]], 0);
        let after = current() - base;
        values!("populate={rc} partial={partial} delta_mid={mid} rest={rest} freed_again={again} delta_after={after}")
    });

    s.run("reservation.decrease_order2_extent_with_foreign_frame", || {
        let base = current();
        // Our order-2 extent, then the same extent shifted by one: its last frame is not ours
        // (or is, by chance, ours: then the whole extent goes).
        let mut l = [PFN];
        let rc = populate(&mut l, 2);
        let m = l[0];
        let first = decrease(&mut [m + 1], 0);
        let mid = current() - base;
        let order0 = decrease(&mut [m], 0);
        let tail = decrease(&mut [m + 2, m + 3], 0);
        let after = current() - base;
        values!("populate={rc} one={first} delta_mid={mid} head={order0} tail={tail} delta_after={after}")
    });

    s.run("reservation.decrease_mapped_page", || {
        let base = current();
        let Some(sm) = scratch(SCRATCH) else {
            return values!("setup_failed=scratch");
        };
        let mut l = [PFN];
        let rc = populate(&mut l, 0);
        let m = l[0];
        let map = remap_scratch(sm.va, data_pte(m, sm.pte), UVMF_INVLPG);
        let given = decrease(&mut [m], 0);
        let mapped = current() - base;
        let again = decrease(&mut [m], 0);
        let restore = remap_scratch(sm.va, data_pte(sm.mfn, sm.pte), UVMF_INVLPG);
        let after = current() - base;
        let gone = decrease(&mut [m], 0);
        values!("populate={rc} map={map} decrease={given} delta_mapped={mapped} again={again} restore={restore} delta_unmapped={after} freed_again={gone}")
    });

    s.run("reservation.decrease_pinned_table", || {
        let base = current();
        let Some(sm) = scratch(SCRATCH) else {
            return values!("setup_failed=scratch");
        };
        let mut l = [PFN];
        let rc = populate(&mut l, 0);
        let m = l[0];
        // Zeroed through a scratch mapping first: Xen hands out frames as they are.
        let map = remap_scratch(sm.va, data_pte(m, sm.pte), UVMF_INVLPG);
        for i in 0..512 {
            super::poke(sm.va + 8 * i, 0);
        }
        let restore = remap_scratch(sm.va, data_pte(sm.mfn, sm.pte), UVMF_INVLPG);
        let (pin, _) = hc::mmuext_op(&[ext(MMUEXT_PIN_L1_TABLE, m, 0)], DOMID_SELF);
        let given = decrease(&mut [m], 0);
        let pinned = current() - base;
        let (unpin, _) = hc::mmuext_op(&[ext(MMUEXT_UNPIN_TABLE, m, 0)], DOMID_SELF);
        let after = current() - base;
        values!("populate={rc} map={map} restore={restore} pin={pin} decrease={given} delta_pinned={pinned} unpin={unpin} delta_after={after}")
    });

    s.run("reservation.bad_argument_pointer", || {
        let mut rcs = [0i64; 3];
        let ops = [
            XENMEM_populate_physmap,
            XENMEM_decrease_reservation,
            XENMEM_increase_reservation,
        ];
        for (rc, op) in rcs.iter_mut().zip(ops) {
            // SAFETY: an unmapped argument, which the hypervisor must refuse to read.
            *rc = unsafe {
                hc::hypercall(
                    hypercall_abi::xen::__HYPERVISOR_memory_op,
                    op.into(),
                    UNMAPPED,
                    0,
                    0,
                    0,
                )
            };
        }
        values!(
            "populate={} decrease={} increase={}",
            rcs[0],
            rcs[1],
            rcs[2]
        )
    });

    s.run("reservation.bad_extent_list", || {
        let base = current();
        let mut out = [0i64; 7];
        for (i, (op, list)) in [
            (XENMEM_populate_physmap, UNMAPPED),
            (XENMEM_decrease_reservation, UNMAPPED),
            (XENMEM_populate_physmap, HYPERVISOR_VIRT_START),
            (XENMEM_decrease_reservation, HYPERVISOR_VIRT_START),
            (XENMEM_increase_reservation, HYPERVISOR_VIRT_START),
            (XENMEM_populate_physmap, 0),
            (XENMEM_decrease_reservation, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = XenMemoryReservation {
                extent_start: list,
                nr_extents: 1,
                domid: DOMID_SELF,
                ..Default::default()
            };
            out[i] = raw(op.into(), &mut r);
        }
        let delta = current() - base;
        values!("populate_unmapped={} decrease_unmapped={} populate_xen={} decrease_xen={} increase_xen={} populate_null={} decrease_null={} delta={delta}",
            out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    });

    s.run("reservation.no_such_domain", || {
        let mut l = [PFN];
        let p = populate_with(&mut l, 0, 0, NO_SUCH_DOMAIN);
        let d = hc::memory_op(&mut DecreaseReservation(reservation(
            &mut [0xb8],
            0,
            0,
            NO_SUCH_DOMAIN,
        )));
        let i = hc::memory_op(&mut IncreaseReservation(reservation(
            &mut [0],
            0,
            0,
            NO_SUCH_DOMAIN,
        )));
        values!("populate={p} decrease={d} increase={i}")
    });

    s.run("reservation.too_many_extents", || {
        let mut l = [PFN];
        let mut r = reservation(&mut l, 0, 0, DOMID_SELF);
        r.nr_extents = 1 << 26;
        let big = raw(XENMEM_populate_physmap.into(), &mut r);
        r.nr_extents = u64::MAX;
        let huge = raw(XENMEM_decrease_reservation.into(), &mut r);
        r.nr_extents = 0;
        let zero = raw(XENMEM_populate_physmap.into(), &mut r);
        values!("nr_2pow26={big} nr_max={huge} nr_zero={zero}")
    });

    s.run("reservation.continuation_index", || {
        let base = current();
        let mut l = [PFN, PFN + 1, PFN + 2];
        let mut r = reservation(&mut l, 0, 0, DOMID_SELF);
        let past = raw(u64::from(XENMEM_populate_physmap) | (5 << 6), &mut r);
        let at_end = raw(u64::from(XENMEM_populate_physmap) | (3 << 6), &mut r);
        let last = raw(u64::from(XENMEM_populate_physmap) | (2 << 6), &mut r);
        let untouched = (l[0] == PFN && l[1] == PFN + 1) as u8;
        let (_, m2p) = frame_ok(l[2], PFN + 2, max_ram);
        let delta = current() - base;
        let back = decrease(&mut [l[2]], 0);
        let after = current() - base;
        values!("past_end={past} at_end={at_end} last_only={last} untouched={untouched} m2p_ok={m2p} delta={delta} decrease={back} delta_after={after}")
    });

    // The continuation index is the whole 64-bit command word above bit 6 (Xen's
    // `start_extent = cmd >> MEMOP_EXTENT_SHIFT` on an unsigned long): an index beyond 32 bits
    // is past any list and comes back as it is; other sub-ops refuse any index.
    s.run("reservation.continuation_index_above_32_bits", || {
        let base = current();
        let mut l = [PFN];
        let mut r = reservation(&mut l, 0, 0, DOMID_SELF);
        let high = raw(u64::from(XENMEM_populate_physmap) | (1 << 38), &mut r);
        let stat = raw(u64::from(XENMEM_current_reservation) | (1 << 38), &mut r);
        let delta = current() - base;
        values!("populate={high:#x} current_reservation={stat} delta={delta}")
    });

    s.run("reservation.order_too_large", || {
        let mut rcs = [0i64; 6];
        for (i, order) in [21u32, 32, 64].into_iter().enumerate() {
            rcs[2 * i] = populate(&mut [PFN], order);
            rcs[2 * i + 1] = decrease(&mut [0xb8], order);
        }
        let inc = increase(&mut [0], 21);
        values!("populate21={} decrease21={} populate32={} decrease32={} populate64={} decrease64={} increase21={inc}",
            rcs[0], rcs[1], rcs[2], rcs[3], rcs[4], rcs[5])
    });

    s.run("reservation.mem_flags", || {
        let base = current();
        let flags = [
            xenmemf_address_bits(12),
            xenmemf_address_bits(1),
            xenmemf_address_bits(32),
            xenmemf_address_bits(64),
            xenmemf_node(70),
            xenmemf_node(63),
            xenmemf_node(0) | XENMEMF_exact_node_request,
            XENMEMF_vnode | xenmemf_node(3),
            XENMEMF_populate_on_demand,
        ];
        let mut out = [0i64; 9];
        let mut backs = 0;
        for (rc, f) in out.iter_mut().zip(flags) {
            let mut l = [PFN];
            *rc = populate_with(&mut l, 0, f, DOMID_SELF);
            if *rc == 1 && f & XENMEMF_populate_on_demand == 0 {
                backs += decrease(&mut l, 0);
            }
        }
        let after = current() - base;
        values!("bits12={} bits1={} bits32={} bits64={} node70={} node63={} node0_exact={} vnode={} pod_self={} given_back={backs} delta_after={after}",
            out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8])
    });

    s.run("reservation.increase_null_list", || {
        let base = current();
        let mut r = XenMemoryReservation {
            extent_start: 0,
            nr_extents: 1,
            domid: DOMID_SELF,
            ..Default::default()
        };
        let rc = raw(XENMEM_increase_reservation.into(), &mut r);
        let delta = current() - base;
        values!("rc={rc} delta={delta}")
    });
}
