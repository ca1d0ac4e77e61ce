//! Host tests of `XENMEM_exchange` on dom0 built by the domain builder: the exchange itself,
//! every check Xen 4.17 makes (hostile arguments), partial progress, continuations, and frames
//! staying accounted for (the frame-table audit and the pool's count after each).

use hypercall_abi::memory::{
    xenmemf_address_bits, XENMEM_exchange, XENMEM_populate_physmap, XenMemoryExchange,
    XenMemoryReservation,
};
use hypercall_abi::xen::{__HYPERVISOR_memory_op, DOMID_SELF};

use crate::domain::pool::INVALID_M2P_ENTRY;
use crate::hypercall::testing::FakePreempt;
use crate::mm::frame_table::testing::{World, DOM0_PAGES, WORLD_M2P};
use crate::mm::frame_table::Owner;
use crate::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};

const EPERM: i64 = -1;
const ESRCH: i64 = -3;
const ENOMEM: i64 = -12;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const UNMAPPED: u64 = 0x0000_7000_0000_0000;
/// A pfn far above dom0's memory.
const PFN: u64 = 0x7_0000;

fn arg_va(w: &World) -> u64 {
    w.scratch_va(0)
}
fn in_va(w: &World) -> u64 {
    w.scratch_va(1)
}
fn out_va(w: &World) -> u64 {
    w.scratch_va(2)
}

fn res(list: u64, n: u64, order: u32) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: list,
        nr_extents: n,
        extent_order: order,
        domid: DOMID_SELF,
        ..Default::default()
    }
}

/// `n` frames of our own, unmapped, populated at pfns `PFN..`: what an exchange may take.
fn populate(w: &mut World, n: usize, order: u32) -> Vec<u64> {
    let lva = in_va(w);
    for i in 0..n {
        w.put(lva + 8 * i as u64, &(PFN + (i as u64) * 100));
    }
    let ava = arg_va(w);
    w.put(ava, &res(lva, n as u64, order));
    let rc = w.call(
        __HYPERVISOR_memory_op,
        [XENMEM_populate_physmap.into(), ava, 0, 0, 0],
    );
    assert_eq!(rc, n as i64);
    (0..n).map(|i| w.get::<u64>(lva + 8 * i as u64)).collect()
}

/// Writes the lists and the argument, issues the exchange: its result and `nr_exchanged`.
fn exchange(w: &mut World, e: &XenMemoryExchange, ins: &[u64], outs: &[u64]) -> (i64, u64) {
    let (iva, ova, ava) = (in_va(w), out_va(w), arg_va(w));
    for (i, v) in ins.iter().enumerate() {
        w.put(iva + 8 * i as u64, v);
    }
    for (i, v) in outs.iter().enumerate() {
        w.put(ova + 8 * i as u64, v);
    }
    w.put(ava, e);
    let rc = w.call(
        __HYPERVISOR_memory_op,
        [XENMEM_exchange.into(), ava, 0, 0, 0],
    );
    (rc, w.get::<XenMemoryExchange>(ava).nr_exchanged)
}

fn exch(w: &World, n_in: u64, in_order: u32, n_out: u64, out_order: u32) -> XenMemoryExchange {
    XenMemoryExchange {
        r#in: res(in_va(w), n_in, in_order),
        out: res(out_va(w), n_out, out_order),
        nr_exchanged: 0,
    }
}

fn m2p(w: &World, mfn: u64) -> u64 {
    w.m.mem
        .read_u64(Maddr(WORLD_M2P.maddr().0 + mfn * 8))
        .unwrap()
}

fn outs(w: &mut World, n: usize) -> Vec<u64> {
    let ova = out_va(w);
    (0..n).map(|i| w.get::<u64>(ova + 8 * i as u64)).collect()
}

fn ours(w: &World, mfn: u64) -> bool {
    let f = w.frame(Mfn(mfn));
    f.owner() == Owner::Domain(0) && f.allocated() && f.count() == 1
}

#[test]
fn one_frame_for_another() {
    let mut w = World::dom0();
    let old = populate(&mut w, 1, 0)[0];
    let free = w.pool.free_frames();
    let nr = w.dom.nr_pages;
    let e = exch(&w, 1, 0, 1, 0);
    assert_eq!(exchange(&mut w, &e, &[old], &[PFN + 7]), (0, 1));
    let new = outs(&mut w, 1)[0];
    assert_ne!(new, old);
    assert!(ours(&w, new));
    assert_eq!(
        m2p(&w, new),
        PFN + 7,
        "the M2P names the pfn from the out list"
    );
    assert!(w
        .m
        .mem
        .read(Mfn(new).maddr(), 4096)
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    // The old frame is back in the pool, its M2P entry invalid; nothing else moved.
    let f = w.frame(Mfn(old));
    assert_eq!((f.owner(), f.given_to()), (Owner::Free, None));
    assert_eq!(m2p(&w, old), INVALID_M2P_ENTRY);
    assert_eq!(w.pool.free_frames(), free);
    assert_eq!(w.dom.nr_pages, nr);
    // A frame went back to the pool: the caller's TLB is flushed before it runs.
    assert!(w.dom.vcpu().flush.local_flush);
    w.check();
}

#[test]
fn small_extents_for_a_large_one_and_back() {
    let mut w = World::dom0();
    let free = w.pool.free_frames();
    let nr = w.dom.nr_pages;
    let small = populate(&mut w, 4, 0);
    // Four order-0 extents for one order-2 extent: one chunk.
    let e = exch(&w, 4, 0, 1, 2);
    assert_eq!(exchange(&mut w, &e, &small, &[PFN + 40]), (0, 4));
    let big = outs(&mut w, 1)[0];
    assert_eq!(big % 4, 0, "an order-2 extent is aligned");
    for j in 0..4 {
        assert!(ours(&w, big + j));
        assert_eq!(m2p(&w, big + j), PFN + 40 + j);
    }
    for &m in &small {
        assert_eq!(w.frame(Mfn(m)).owner(), Owner::Free);
    }
    // And the order-2 extent for two order-1 extents: two chunks.
    let e = exch(&w, 1, 2, 2, 1);
    assert_eq!(exchange(&mut w, &e, &[big], &[PFN + 60, PFN + 80]), (0, 1));
    let pair = outs(&mut w, 2);
    for (k, &m) in pair.iter().enumerate() {
        assert_eq!(m % 2, 0);
        for j in 0..2 {
            assert!(ours(&w, m + j));
            assert_eq!(m2p(&w, m + j), PFN + 60 + 20 * k as u64 + j);
        }
    }
    assert_eq!(w.dom.nr_pages, nr + 4);
    assert_eq!(w.pool.free_frames(), free - 4);
    w.check();
}

#[test]
fn the_early_checks_in_xens_order() {
    let mut w = World::dom0();
    let m = populate(&mut w, 2, 0);
    let free = w.pool.free_frames();
    let check = |w: &mut World, e: XenMemoryExchange, want: (i64, u64)| {
        assert_eq!(exchange(w, &e, &m, &[PFN, PFN + 1]), want, "{e:?}");
        assert!(ours(w, m[0]) && ours(w, m[1]), "nothing taken: {e:?}");
    };
    // An order above the caller's limit (20 for dom0) is -EPERM, before anything else.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.r#in.extent_order = 21;
    e.nr_exchanged = 5;
    check(&mut w, e, (EPERM, 5));
    // nr_exchanged beyond the input, different domains, unequal sizes: -EINVAL.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.nr_exchanged = 3;
    check(&mut w, e, (EINVAL, 3));
    let mut e = exch(&w, 2, 0, 2, 0);
    e.out.domid = 0;
    check(&mut w, e, (EINVAL, 0));
    let e = exch(&w, 2, 0, 1, 0);
    check(&mut w, e, (EINVAL, 0));
    let e = exch(&w, 2, 0, 2, 1);
    check(&mut w, e, (EINVAL, 0));
    // Sizes that overflow a long.
    let e = exch(&w, u64::MAX, 1, u64::MAX, 1);
    check(&mut w, e, (EINVAL, 0));
    // All done already: 0, nothing written.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.nr_exchanged = 2;
    check(&mut w, e, (0, 2));
    let e = exch(&w, 0, 0, 0, 0);
    check(&mut w, e, (0, 0));
    // Lists in the hypervisor's range: -EFAULT.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.r#in.extent_start = 0xffff_8000_0000_0000;
    check(&mut w, e, (EFAULT, 0));
    let mut e = exch(&w, 2, 0, 2, 0);
    e.out.extent_start = 0xffff_8000_0000_0000;
    check(&mut w, e, (EFAULT, 0));
    // No such domain: -ESRCH.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.r#in.domid = 77;
    e.out.domid = 77;
    check(&mut w, e, (ESRCH, 0));
    // An unreadable argument.
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            [XENMEM_exchange.into(), UNMAPPED, 0, 0, 0]
        ),
        EFAULT
    );
    assert_eq!(w.pool.free_frames(), free);
    w.check();
}

#[test]
fn nr_exchanged_inside_a_chunk_exchanges_the_whole_chunk_as_xen_4_17() {
    let mut w = World::dom0();
    let m = populate(&mut w, 2, 0);
    let mut e = exch(&w, 2, 0, 1, 1);
    e.nr_exchanged = 1;
    assert_eq!(exchange(&mut w, &e, &m, &[PFN]), (0, 2));
    let new = outs(&mut w, 1)[0];
    assert!(ours(&w, new) && ours(&w, new + 1));
    assert_eq!(w.frame(Mfn(m[0])).owner(), Owner::Free);
    w.check();
}

#[test]
fn frames_that_are_not_free_to_give_are_refused() {
    let mut w = World::dom0();
    let free = w.pool.free_frames();
    let nr = w.dom.nr_pages;
    // A frame the guest still maps (its own scratch page), the shared_info frame, a frame of
    // nobody's, beyond RAM, a page table of its own: -EINVAL, nothing changes.
    let mapped = w.mfn_of(w.scratch_va(5)).0;
    let l4 = w.dom.vcpu().l4.0;
    let shinfo = w.dom.shared_info.0;
    let nobody = (0..w.mm().frames.max_ram_page())
        .find(|&m| w.frame(Mfn(m)).owner() == Owner::Free && w.frame(Mfn(m)).given_to().is_none())
        .unwrap();
    for bad in [mapped, l4, shinfo, nobody, 0xb8, 1 << 40, u64::MAX] {
        let e = exch(&w, 1, 0, 1, 0);
        assert_eq!(
            exchange(&mut w, &e, &[bad], &[PFN]),
            (EINVAL, 0),
            "{bad:#x}"
        );
    }
    assert!(
        w.frame(Mfn(mapped)).count() >= 2,
        "still mapped, still ours"
    );
    assert_eq!(w.pool.free_frames(), free);
    assert_eq!(w.dom.nr_pages, nr);
    w.check();
}

#[test]
fn a_failed_chunk_gives_back_what_it_took_and_reports_the_chunks_before() {
    let mut w = World::dom0();
    let m = populate(&mut w, 3, 0);
    let free = w.pool.free_frames();
    // Three order-0 extents for three: the second is not ours. The first is exchanged.
    let e = exch(&w, 3, 0, 3, 0);
    assert_eq!(
        exchange(&mut w, &e, &[m[0], 0xb8, m[2]], &[PFN, PFN + 1, PFN + 2]),
        (EINVAL, 1)
    );
    let new0 = outs(&mut w, 1)[0];
    assert!(ours(&w, new0));
    assert_eq!(w.frame(Mfn(m[0])).owner(), Owner::Free);
    assert!(ours(&w, m[1]) && ours(&w, m[2]));
    // Continuing from there with a good list finishes the job.
    let mut e = exch(&w, 3, 0, 3, 0);
    e.nr_exchanged = 1;
    assert_eq!(
        exchange(&mut w, &e, &[m[0], m[1], m[2]], &[new0, PFN + 1, PFN + 2]),
        (0, 3)
    );
    // The old frames went back to the pool (and may have come out again as new ones).
    let new = outs(&mut w, 3);
    for old in [m[1], m[2]] {
        assert!(w.frame(Mfn(old)).owner() == Owner::Free || new.contains(&old));
    }
    for &n in &new {
        assert!(ours(&w, n));
    }
    // The same frame twice in one chunk: the second steal fails, the first is given back.
    let two = populate(&mut w, 1, 0)[0];
    let e = exch(&w, 2, 0, 1, 1);
    assert_eq!(exchange(&mut w, &e, &[two, two], &[PFN]), (EINVAL, 0));
    assert!(ours(&w, two), "given back as it was");
    assert_eq!(m2p(&w, two), PFN, "M2P untouched");
    // An input list that cannot be read (guest space, but unmapped): -EFAULT, nothing taken.
    let mut e = exch(&w, 1, 0, 1, 0);
    e.r#in.extent_start = UNMAPPED;
    assert_eq!(exchange(&mut w, &e, &[], &[PFN]), (EFAULT, 0));
    assert!(ours(&w, two));
    assert_eq!(w.pool.free_frames(), free - 1);
    w.check();
}

#[test]
fn no_memory_for_the_output_gives_the_input_back() {
    let mut w = World::dom0();
    let m = populate(&mut w, 2, 0);
    let free = w.pool.free_frames();
    // Output below 8 KiB of address space: no frame qualifies.
    let mut e = exch(&w, 2, 0, 2, 0);
    e.out.mem_flags = xenmemf_address_bits(13);
    assert_eq!(exchange(&mut w, &e, &m, &[PFN, PFN + 1]), (ENOMEM, 0));
    assert!(ours(&w, m[0]) && ours(&w, m[1]));
    // A chunk of more than 512 frames (dom0 only) is refused with -ENOMEM, nothing taken.
    let mut huge = exch(&w, 1, 10, 1, 10);
    huge.r#in.nr_extents = 1;
    assert_eq!(exchange(&mut w, &huge, &m[..1], &[PFN]), (ENOMEM, 0));
    assert!(ours(&w, m[0]) && ours(&w, m[1]));
    assert_eq!(w.pool.free_frames(), free);
    w.check();
}

#[test]
fn an_unreadable_out_list_leaves_the_chunk_exchanged_but_unreported() {
    let mut w = World::dom0();
    let m = populate(&mut w, 1, 0)[0];
    let nr = w.dom.nr_pages;
    let free = w.pool.free_frames();
    let mut e = exch(&w, 1, 0, 1, 0);
    e.out.extent_start = UNMAPPED;
    // Xen: the input is freed and the output assigned, then reading its pfn fails: -EFAULT and
    // nr_exchanged stays 0; the domain keeps a frame it cannot name.
    assert_eq!(exchange(&mut w, &e, &[m], &[]), (EFAULT, 0));
    assert_eq!(w.frame(Mfn(m)).owner(), Owner::Free);
    assert_eq!(w.dom.nr_pages, nr);
    assert_eq!(w.pool.free_frames(), free);
    w.check();
}

#[test]
fn long_exchanges_continue_where_they_stopped() {
    let mut w = World::dom0();
    let n = 40usize;
    let m = populate(&mut w, n, 0);
    let free = w.pool.free_frames();
    let (iva, ova, ava) = (in_va(&w), out_va(&w), arg_va(&w));
    for (i, v) in m.iter().enumerate() {
        w.put(iva + 8 * i as u64, v);
        w.put(ova + 8 * i as u64, &(PFN + 1000 + i as u64));
    }
    w.put(ava, &exch(&w, n as u64, 0, n as u64, 0));
    w.m.preempt = FakePreempt::every(3);
    let (rc, continuations) = w.call_to_completion(
        __HYPERVISOR_memory_op,
        [XENMEM_exchange.into(), ava, 0, 0, 0],
        1000,
    );
    assert_eq!(rc, 0);
    assert!(continuations > 5, "{continuations}");
    assert_eq!(w.get::<XenMemoryExchange>(ava).nr_exchanged, n as u64);
    for i in 0..n {
        let new = w.get::<u64>(ova + 8 * i as u64);
        assert!(ours(&w, new));
        assert_eq!(m2p(&w, new), PFN + 1000 + i as u64);
    }
    // Each old frame went back to the pool, or came out again as a new one.
    let new: Vec<u64> = (0..n).map(|i| w.get::<u64>(ova + 8 * i as u64)).collect();
    for old in &m {
        assert!(w.frame(Mfn(*old)).owner() == Owner::Free || new.contains(old));
    }
    assert_eq!(w.pool.free_frames(), free);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + n as u64);
    w.check();
}
