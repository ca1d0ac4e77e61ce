//! The exchange group: `XENMEM_exchange` as a PV dom0 uses it (Linux's
//! `xen_create_contiguous_region`), Xen 4.17's `memory_exchange` in `xen/common/memory.c`.
//!
//! The frames given up are ones populated for the case (ours, mapped nowhere); the cases print
//! return codes, `nr_exchanged`, how `current_reservation` moved, and whether the frames handed
//! out are plausible and named in the M2P, never a frame number. Each case gives back what it
//! took, but the last (`exchange.out_list_unmapped`), which leaves a frame with us that nobody
//! can name, as Xen does.

use hypercall_abi::memory::{
    xenmemf_address_bits, CurrentReservation, DecreaseReservation, MemoryNoArg, PopulatePhysmap,
    XenMemoryDomain, XenMemoryExchange, XenMemoryReservation,
};
use hypercall_abi::xen::{StartInfo, DOMID_SELF};

use super::{scratch, values, Suite, NO_SUCH_DOMAIN, UNMAPPED};
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

/// Pfns far above dom0's memory on both hypervisors (another range than the reservation
/// group's).
const PFN: u64 = 0x7_8000;

fn res(list: u64, n: u64, order: u32) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: list,
        nr_extents: n,
        extent_order: order,
        domid: DOMID_SELF,
        ..Default::default()
    }
}

pub(super) fn populate(list: &mut [u64], order: u32) -> i64 {
    let n = list.len() as u64;
    hc::memory_op(&mut PopulatePhysmap(res(gp(list.as_mut_ptr()), n, order)))
}

pub(super) fn decrease(list: &mut [u64], order: u32) -> i64 {
    let n = list.len() as u64;
    hc::memory_op(&mut DecreaseReservation(res(
        gp(list.as_mut_ptr()),
        n,
        order,
    )))
}

pub(super) fn current() -> i64 {
    hc::memory_op(&mut CurrentReservation(XenMemoryDomain {
        domid: DOMID_SELF,
    }))
}

/// An exchange of `ins` (extents of `in_order`) for `outs` (of `out_order`).
fn exch(ins: &mut [u64], in_order: u32, outs: &mut [u64], out_order: u32) -> XenMemoryExchange {
    XenMemoryExchange {
        r#in: res(gp(ins.as_mut_ptr()), ins.len() as u64, in_order),
        out: res(gp(outs.as_mut_ptr()), outs.len() as u64, out_order),
        nr_exchanged: 0,
    }
}

/// The exchange's result and the `nr_exchanged` it wrote back.
fn exchange(e: &mut XenMemoryExchange) -> (i64, u64) {
    let rc = hc::memory_op(e);
    (rc, e.nr_exchanged)
}

/// How many of the `n` frames from `mfn` the M2P maps to `pfn..`, and whether they are RAM.
fn m2p_ok(mfn: u64, pfn: u64, n: u64, max_ram: u64) -> u64 {
    (0..n)
        .filter(|&j| mfn + j < max_ram && mm::mfn_to_pfn(mfn + j) == pfn + j)
        .count() as u64
}

pub(super) fn cases(s: &mut Suite, si: &StartInfo) {
    let max_ram = hc::memory_op_noarg(MemoryNoArg::MaximumRamPage) as u64;

    s.run("exchange.one_for_one", || {
        let base = current();
        let mut ins = [PFN];
        let p = populate(&mut ins, 0);
        let old = ins[0];
        let mut outs = [PFN + 1];
        let (rc, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 0));
        let new = outs[0];
        let delta = current() - base;
        let ok = m2p_ok(new, PFN + 1, 1, max_ram);
        let old_gone = decrease(&mut [old], 0);
        let back = decrease(&mut [new], 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} differs={} m2p_ok={ok} delta={delta} old_decrease={old_gone} new_decrease={back} delta_after={after}", u8::from(new != old))
    });

    s.run("exchange.four_for_order2", || {
        let base = current();
        let mut ins = [PFN, PFN + 1, PFN + 2, PFN + 3];
        let p = populate(&mut ins, 0);
        let mut outs = [PFN + 8];
        let (rc, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 2));
        let aligned = outs[0].is_multiple_of(4);
        let ok = m2p_ok(outs[0], PFN + 8, 4, max_ram);
        let delta = current() - base;
        let back = decrease(&mut outs, 2);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} aligned={} m2p_ok={ok} delta={delta} decrease={back} delta_after={after}", u8::from(aligned))
    });

    s.run("exchange.order1_for_two", || {
        let base = current();
        let mut ins = [PFN];
        let p = populate(&mut ins, 1);
        let mut outs = [PFN + 20, PFN + 30];
        let (rc, n) = exchange(&mut exch(&mut ins, 1, &mut outs, 0));
        let ok = m2p_ok(outs[0], PFN + 20, 1, max_ram) + m2p_ok(outs[1], PFN + 30, 1, max_ram);
        let delta = current() - base;
        let back = decrease(&mut outs, 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} m2p_ok={ok} delta={delta} decrease={back} delta_after={after}")
    });

    s.run("exchange.argument_checks", || {
        let base = current();
        let mut ins = [PFN, PFN + 1];
        let p = populate(&mut ins, 0);
        let mut outs = [PFN + 2, PFN + 3];
        let mut r = [(0i64, 0u64); 10];
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        // An order above dom0's limit (20), nr_exchanged kept.
        e.r#in.extent_order = 21;
        e.nr_exchanged = 5;
        r[0] = exchange(&mut e.clone());
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.nr_exchanged = 3;
        r[1] = exchange(&mut e);
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.out.domid = 0;
        r[2] = exchange(&mut e);
        r[3] = exchange(&mut exch(&mut ins, 0, &mut outs[..1], 0));
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.nr_exchanged = 2;
        r[4] = exchange(&mut e);
        // (r[5]: see `exchange.nr_exchanged_inside_a_chunk`.)
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.r#in.domid = NO_SUCH_DOMAIN;
        e.out.domid = NO_SUCH_DOMAIN;
        r[6] = exchange(&mut e);
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.r#in.extent_start = hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
        r[7] = exchange(&mut e);
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.out.extent_start = hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
        r[8] = exchange(&mut e);
        let mut e = exch(&mut ins, 0, &mut outs, 0);
        e.r#in.nr_extents = u64::MAX;
        e.r#in.extent_order = 1;
        e.out.nr_extents = u64::MAX;
        e.out.extent_order = 1;
        r[9] = exchange(&mut e);
        // SAFETY: an unmapped argument, which the hypervisor must refuse to read.
        let bad_arg = unsafe {
            hc::raw::memory_op(hypercall_abi::memory::XENMEM_exchange, UNMAPPED)
        };
        let delta = current() - base;
        let back = decrease(&mut ins, 0);
        let after = current() - base;
        let f = |i: usize| values!("{},{}", r[i].0, r[i].1);
        values!("populate={p} order21={} nr_beyond={} domids={} sizes={} done={} no_domain={} in_xen={} out_xen={} overflow={} bad_arg={bad_arg} delta={delta} decrease={back} delta_after={after}",
            f(0), f(1), f(2), f(3), f(4), f(6), f(7), f(8), f(9))
    });

    // Xen 4.17 does not refuse an `nr_exchanged` that falls inside a chunk: the whole chunk is
    // exchanged, and `nr_exchanged` ends at its end.
    s.run("exchange.nr_exchanged_inside_a_chunk", || {
        let base = current();
        let mut ins = [PFN, PFN + 1];
        let p = populate(&mut ins, 0);
        let mut outs = [PFN + 6];
        let mut e = exch(&mut ins, 0, &mut outs, 1);
        e.nr_exchanged = 1;
        let (rc, n) = exchange(&mut e);
        let ok = m2p_ok(outs[0], PFN + 6, 2, max_ram);
        let delta = current() - base;
        let back = if rc == 0 { decrease(&mut outs, 1) } else { 0 };
        let left = decrease(&mut ins, 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} m2p_ok={ok} delta={delta} decrease_out={back} decrease_in={left} delta_after={after}")
    });

    s.run("exchange.frames_not_ours_to_give", || {
        let shinfo = si.shared_info >> 12;
        let mapped = scratch(7).map_or(0, |m| m.mfn);
        let mut out = [0i64; 5];
        for (rc, f) in out
            .iter_mut()
            .zip([0xb8, max_ram, shinfo, mapped, u64::MAX])
        {
            let mut ins = [f];
            let mut outs = [PFN];
            let (r, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 0));
            *rc = r * 10 + n as i64;
        }
        values!(
            "io={} max_ram={} shared_info={} mapped={} all_ones={} (rc*10+nr_exchanged)",
            out[0],
            out[1],
            out[2],
            out[3],
            out[4]
        )
    });

    s.run("exchange.stops_at_bad_extent", || {
        let base = current();
        let mut mine = [PFN, PFN + 1, PFN + 2];
        let p = populate(&mut mine, 0);
        let mut ins = [mine[0], 0xb8, mine[2]];
        let mut outs = [PFN + 10, PFN + 11, PFN + 12];
        let (rc, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 0));
        let ok = m2p_ok(outs[0], PFN + 10, 1, max_ram);
        let untouched = u8::from(outs[1] == PFN + 11 && outs[2] == PFN + 12);
        let delta = current() - base;
        let back = decrease(&mut [outs[0], mine[1], mine[2]], 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} first_m2p_ok={ok} rest_untouched={untouched} delta={delta} decrease={back} delta_after={after}")
    });

    s.run("exchange.same_frame_twice_in_a_chunk", || {
        let base = current();
        let mut mine = [PFN];
        let p = populate(&mut mine, 0);
        let mut ins = [mine[0], mine[0]];
        let mut outs = [PFN + 4];
        let (rc, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 1));
        let still = m2p_ok(mine[0], PFN, 1, max_ram);
        let back = decrease(&mut mine, 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} still_ours_m2p={still} decrease={back} delta_after={after}")
    });

    s.run("exchange.no_memory_below_13_bits", || {
        let base = current();
        let mut mine = [PFN];
        let p = populate(&mut mine, 0);
        let mut outs = [PFN + 4];
        let mut e = exch(&mut mine, 0, &mut outs, 0);
        e.out.mem_flags = xenmemf_address_bits(13);
        let (rc, n) = exchange(&mut e);
        let back = decrease(&mut mine, 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} decrease={back} delta_after={after}")
    });

    s.run("exchange.in_list_unmapped", || {
        let mut outs = [PFN];
        let mut e = exch(&mut [], 0, &mut outs, 0);
        e.r#in.extent_start = UNMAPPED;
        e.r#in.nr_extents = 1;
        let (rc, n) = exchange(&mut e);
        values!("rc={rc} nr_exchanged={n}")
    });

    s.run("exchange.many", || {
        const N: usize = 256;
        let base = current();
        let mut ins = [0u64; N];
        for (i, p) in ins.iter_mut().enumerate() {
            *p = PFN + i as u64;
        }
        let p = populate(&mut ins, 0);
        let mut outs = [0u64; N];
        for (i, p) in outs.iter_mut().enumerate() {
            *p = PFN + 0x1000 + i as u64;
        }
        let (rc, n) = exchange(&mut exch(&mut ins, 0, &mut outs, 0));
        let ok: u64 = outs
            .iter()
            .enumerate()
            .map(|(i, &m)| m2p_ok(m, PFN + 0x1000 + i as u64, 1, max_ram))
            .sum();
        let delta = current() - base;
        let back = decrease(&mut outs, 0);
        let after = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} m2p_ok={ok} delta={delta} decrease={back} delta_after={after}")
    });

    // Last: Xen gives up the input and assigns the output before it reads the output list, so
    // the exchange fails with -EFAULT, reports nothing exchanged, and the domain keeps a frame
    // it cannot name (its page count does not move).
    s.run("exchange.out_list_unmapped", || {
        let base = current();
        let mut mine = [PFN];
        let p = populate(&mut mine, 0);
        let mut e = exch(&mut mine, 0, &mut [], 0);
        e.out.extent_start = UNMAPPED;
        e.out.nr_extents = 1;
        let (rc, n) = exchange(&mut e);
        let old = decrease(&mut mine, 0);
        let delta = current() - base;
        values!("populate={p} rc={rc} nr_exchanged={n} old_decrease={old} delta={delta}")
    });
}
