//! Host tests of `memory_op`'s reservation operations and queries, on dom0 built by the domain
//! builder and seeded into a frame table, with what the builder left of the machine as the free
//! pool. Every test ends with the frame-table audit and, where frames moved, the pool's count.

use hypercall_abi::memory::{
    xenmemf_address_bits, xenmemf_node, XENMEMF_exact_node_request, XENMEMF_populate_on_demand,
    XENMEM_current_reservation, XENMEM_decrease_reservation, XENMEM_increase_reservation,
    XENMEM_maximum_reservation, XENMEM_populate_physmap, XenMemoryReservation,
};
use hypercall_abi::xen::{__HYPERVISOR_memory_op, __HYPERVISOR_update_va_mapping, DOMID_SELF};

use crate::domain::pool::INVALID_M2P_ENTRY;
use crate::hypercall::testing::FakePreempt;
use crate::mm::frame_alloc::FramePool;
use crate::mm::frame_table::testing::{World, DOM0_PAGES, WORLD_M2P};
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};

const ESRCH: i64 = -3;
const UNMAPPED: u64 = 0x0000_7000_0000_0000;

/// Where the tests put the reservation argument and the extent list.
fn arg_va(w: &World) -> u64 {
    w.scratch_va(0)
}
fn list_va(w: &World) -> u64 {
    w.scratch_va(1)
}

fn reservation(w: &mut World, op: u32, list: &[u64], order: u32, flags: u32, domid: u16) -> i64 {
    let lva = list_va(w);
    for (i, v) in list.iter().enumerate() {
        w.put(lva + 8 * i as u64, v);
    }
    let r = XenMemoryReservation {
        extent_start: lva,
        nr_extents: list.len() as u64,
        extent_order: order,
        mem_flags: flags,
        domid,
        ..Default::default()
    };
    let ava = arg_va(w);
    w.put(ava, &r);
    w.call(__HYPERVISOR_memory_op, [op.into(), ava, 0, 0, 0])
}

fn raw(w: &mut World, op: u64, r: &XenMemoryReservation) -> i64 {
    let ava = arg_va(w);
    w.put(ava, r);
    w.call(__HYPERVISOR_memory_op, [op, ava, 0, 0, 0])
}

fn list(w: &mut World, n: usize) -> Vec<u64> {
    let lva = list_va(w);
    (0..n).map(|i| w.get::<u64>(lva + 8 * i as u64)).collect()
}

fn query(w: &mut World, op: u32, domid: u16) -> i64 {
    let ava = arg_va(w);
    w.put(ava, &domid);
    w.call(__HYPERVISOR_memory_op, [op.into(), ava, 0, 0, 0])
}

fn m2p(w: &World, mfn: u64) -> u64 {
    w.m.mem
        .read_u64(Maddr(WORLD_M2P.maddr().0 + mfn * 8))
        .unwrap()
}

#[test]
fn populate_then_decrease_moves_frames_between_the_pool_and_the_domain() {
    let mut w = World::dom0();
    let free = w.pool.free_frames();
    let pfns = [0x10000, 0x10001, 0x10002, 0x10003];
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &pfns, 0, 0, DOMID_SELF),
        4
    );
    let mfns = list(&mut w, 4);
    assert_eq!(w.pool.free_frames(), free - 4);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 4);
    assert_eq!(
        query(&mut w, XENMEM_current_reservation, DOMID_SELF),
        (DOM0_PAGES + 4) as i64
    );
    for (i, &m) in mfns.iter().enumerate() {
        let f = w.frame(Mfn(m));
        assert_eq!(
            (f.owner(), f.count(), f.allocated()),
            (Owner::Domain(0), 1, true)
        );
        assert_eq!(f.given_to(), Some(0));
        assert_eq!(m2p(&w, m), pfns[i], "set_gpfn_from_mfn");
        // Zeroed before it was handed out.
        assert!(w
            .m
            .mem
            .read(Mfn(m).maddr(), 4096)
            .unwrap()
            .iter()
            .all(|&b| b == 0));
    }
    w.check();

    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &mfns, 0, 0, DOMID_SELF),
        4
    );
    assert_eq!(w.pool.free_frames(), free);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES);
    for &m in &mfns {
        let f = w.frame(Mfn(m));
        assert_eq!((f.owner(), f.given_to()), (Owner::Free, None));
        assert_eq!(m2p(&w, m), INVALID_M2P_ENTRY);
    }
    // The caller's TLB is flushed before it runs again.
    assert!(w.dom.vcpu().flush.local_flush);
    w.check();
}

#[test]
fn decrease_stops_at_the_first_frame_it_cannot_free_and_counts_what_it_did() {
    let mut w = World::dom0();
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_populate_physmap,
            &[1, 2, 3],
            0,
            0,
            DOMID_SELF
        ),
        3
    );
    let mfns = list(&mut w, 3);
    let free = w.pool.free_frames();
    // The M2P frame is the hypervisor's: -ENXIO in Xen, the operation stops after one extent.
    let l = [mfns[0], WORLD_M2P.0, mfns[1]];
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &l, 0, 0, DOMID_SELF),
        1
    );
    // Beyond the frame table (-EINVAL in Xen), a frame already freed (-ENXIO): nothing done.
    for bad in [1u64 << 40, mfns[0], 0xb8] {
        assert_eq!(
            reservation(
                &mut w,
                XENMEM_decrease_reservation,
                &[bad],
                0,
                0,
                DOMID_SELF
            ),
            0
        );
    }
    assert_eq!(w.pool.free_frames(), free + 1);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 2);
    // The shared_info page is refused (see `Mm::guest_remove_page`).
    let shinfo = w.dom.shared_info.0;
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_decrease_reservation,
            &[shinfo],
            0,
            0,
            DOMID_SELF
        ),
        0
    );
    assert_eq!(w.frame(Mfn(shinfo)).owner(), Owner::Domain(0));
    w.check();
}

#[test]
fn a_page_still_mapped_is_given_up_but_freed_only_when_unmapped() {
    let mut w = World::dom0();
    let va = w.scratch_va(3);
    let mfn = w.mfn_of(va);
    let free = w.pool.free_frames();
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_decrease_reservation,
            &[mfn.0],
            0,
            0,
            DOMID_SELF
        ),
        1
    );
    let f = w.frame(mfn);
    assert_eq!(
        (f.owner(), f.allocated(), f.count()),
        (Owner::Domain(0), false, 1)
    );
    // Still counted, as in Xen: tot_pages goes down when the page is freed.
    assert_eq!(w.dom.nr_pages, DOM0_PAGES);
    assert!(!w.mm().frames.loose_pending(), "nothing loose yet");
    // Again: Xen's guest_remove_page succeeds and changes nothing.
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_decrease_reservation,
            &[mfn.0],
            0,
            0,
            DOMID_SELF
        ),
        1
    );
    assert_eq!(w.frame(mfn).count(), 1);
    w.check();
    // Unmapping drops the last reference: the frame is loose, and the next memory_op takes it.
    assert_eq!(w.call(__HYPERVISOR_update_va_mapping, [va, 0, 0, 0, 0]), 0);
    let f = w.frame(mfn);
    assert!(f.loose(), "{f:?}");
    // That unmapping asked for no flush: the TLB may still map the page.
    let _ = w.dom.vcpu_mut().flush.take();
    assert_eq!(
        query(&mut w, XENMEM_current_reservation, DOMID_SELF),
        (DOM0_PAGES - 1) as i64
    );
    assert_eq!(w.pool.free_frames(), free + 1);
    // Back in the pool, it must be in no TLB once the caller runs: a full flush is owed.
    assert!(
        w.dom.vcpu().flush.local_flush,
        "a flush before the caller runs"
    );
    assert!(!w.mm().frames.loose_pending());
    assert!(!w.frame(mfn).loose());
    w.check();
}

#[test]
fn a_page_table_in_use_stays_until_its_last_use_goes() {
    let mut w = World::dom0();
    // The L1 over the scratch pages: a validated table the L2 references.
    let (_, _, l1) = w.l1_slot(w.scratch_va(0));
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_decrease_reservation,
            &[l1.0],
            0,
            0,
            DOMID_SELF
        ),
        1
    );
    let f = w.frame(l1);
    assert_eq!(
        (f.owner(), f.page_type(), f.allocated()),
        (Owner::Domain(0), PageType::L1, false)
    );
    assert_eq!(w.dom.nr_pages, DOM0_PAGES);
    w.check();
}

#[test]
fn increase_allocates_up_to_max_pages_and_no_further() {
    let mut w = World::dom0();
    w.dom.max_pages = DOM0_PAGES + 3;
    let free = w.pool.free_frames();
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_increase_reservation,
            &[0; 5],
            0,
            0,
            DOMID_SELF
        ),
        3
    );
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 3);
    assert_eq!(w.pool.free_frames(), free - 3);
    let got = list(&mut w, 5);
    assert!(got[..3]
        .iter()
        .all(|&m| w.frame(Mfn(m)).owner() == Owner::Domain(0)));
    assert_eq!(&got[3..], &[0, 0]);
    assert_eq!(
        query(&mut w, XENMEM_maximum_reservation, DOMID_SELF),
        (DOM0_PAGES + 3) as i64
    );
    // Full: nothing more, by populate either.
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[7], 0, 0, DOMID_SELF),
        0
    );
    // Back, and then an order-1 extent needs two pages of room.
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_decrease_reservation,
            &got[..3],
            0,
            0,
            DOMID_SELF
        ),
        3
    );
    w.dom.max_pages = DOM0_PAGES + 1;
    assert_eq!(
        reservation(&mut w, XENMEM_increase_reservation, &[0], 1, 0, DOMID_SELF),
        0
    );
    assert_eq!(w.pool.free_frames(), free);
    w.check();
}

#[test]
fn increase_with_a_null_list_allocates_without_telling() {
    let mut w = World::dom0();
    let r = XenMemoryReservation {
        extent_start: 0,
        nr_extents: 2,
        domid: DOMID_SELF,
        ..Default::default()
    };
    assert_eq!(raw(&mut w, XENMEM_increase_reservation.into(), &r), 2);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 2);
    w.check();
}

#[test]
fn extents_of_higher_order_are_aligned_runs_within_the_callers_limit() {
    let mut w = World::dom0();
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_populate_physmap,
            &[0x2000, 0x2200],
            2,
            0,
            DOMID_SELF
        ),
        2
    );
    let got = list(&mut w, 2);
    for (k, &m) in got.iter().enumerate() {
        assert_eq!(m % 4, 0, "aligned to its size");
        for j in 0..4 {
            assert_eq!(w.frame(Mfn(m + j)).owner(), Owner::Domain(0));
            assert_eq!(m2p(&w, m + j), [0x2000, 0x2200][k] + j);
        }
    }
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 8);
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &got, 2, 0, DOMID_SELF),
        2
    );
    assert_eq!(w.dom.nr_pages, DOM0_PAGES);
    // Above max_order: nothing, for a domU (9) and for dom0 (20).
    w.dom.privileged = false;
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[0], 10, 0, DOMID_SELF),
        0
    );
    assert_eq!(
        reservation(&mut w, XENMEM_increase_reservation, &[0], 10, 0, DOMID_SELF),
        0
    );
    w.dom.privileged = true;
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[0], 21, 0, DOMID_SELF),
        0
    );
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &[0], 21, 0, DOMID_SELF),
        0
    );
    // Within the order but more than the machine has: nothing either.
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[0], 13, 0, DOMID_SELF),
        0
    );
    w.check();
}

#[test]
fn bad_arguments_are_answered_with_the_count_done() {
    let mut w = World::dom0();
    let free = w.pool.free_frames();
    // Unreadable argument, no such domain, nr_extents beyond a continuation's reach.
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            [XENMEM_populate_physmap.into(), UNMAPPED, 0, 0, 0]
        ),
        0
    );
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[1], 0, 0, 77),
        0
    );
    let mut r = XenMemoryReservation {
        extent_start: list_va(&w),
        nr_extents: 1 << 26,
        domid: DOMID_SELF,
        ..Default::default()
    };
    assert_eq!(raw(&mut w, XENMEM_populate_physmap.into(), &r), 0);
    // A continuation index at or past the end is returned as it is.
    r.nr_extents = 3;
    assert_eq!(
        raw(&mut w, u64::from(XENMEM_populate_physmap) | (5 << 6), &r),
        5
    );
    // An extent list in the hypervisor's range, or unmapped.
    r.extent_start = 0xffff_8000_0000_0000;
    assert_eq!(raw(&mut w, XENMEM_populate_physmap.into(), &r), 0);
    r.extent_start = UNMAPPED;
    assert_eq!(raw(&mut w, XENMEM_populate_physmap.into(), &r), 0);
    assert_eq!(raw(&mut w, XENMEM_decrease_reservation.into(), &r), 0);
    // An increase whose list cannot be written keeps the extent (Xen does too): counted not done.
    assert_eq!(raw(&mut w, XENMEM_increase_reservation.into(), &r), 0);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES + 1);
    // mem_flags: address bits 12 and below are refused; 20 bits means below 1 MiB, where
    // nothing is free; a node beyond MAX_NUMNODES; an exact request for a node without memory.
    for flags in [
        xenmemf_address_bits(12),
        xenmemf_address_bits(20),
        xenmemf_node(70),
        xenmemf_node(1) | XENMEMF_exact_node_request,
    ] {
        let rc = reservation(&mut w, XENMEM_populate_physmap, &[1], 0, flags, DOMID_SELF);
        assert_eq!(rc, 0, "mem_flags {flags:#x}");
    }
    // Accepted: 40 address bits (above the machine's), node 0 exact, a non-exact node 5.
    for flags in [
        xenmemf_address_bits(40),
        xenmemf_node(0) | XENMEMF_exact_node_request,
        xenmemf_node(5),
    ] {
        assert_eq!(
            reservation(&mut w, XENMEM_populate_physmap, &[1], 0, flags, DOMID_SELF),
            1
        );
    }
    // A domU may not name a node exactly, nor act on another domain.
    w.dom.privileged = false;
    let exact = xenmemf_node(0) | XENMEMF_exact_node_request;
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[1], 0, exact, DOMID_SELF),
        0
    );
    // Populate-on-demand on oneself: nothing.
    w.dom.privileged = true;
    let pod = XENMEMF_populate_on_demand;
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[1], 0, pod, DOMID_SELF),
        0
    );
    assert_eq!(w.pool.free_frames(), free - 4);
    w.check();
}

#[test]
fn long_operations_continue_where_they_stopped() {
    let mut w = World::dom0();
    w.m.preempt = FakePreempt::every(3);
    let n = 40usize;
    let pfns: Vec<u64> = (0..n as u64).map(|i| 0x3000 + i).collect();
    let lva = list_va(&w);
    for (i, v) in pfns.iter().enumerate() {
        w.put(lva + 8 * i as u64, v);
    }
    let r = XenMemoryReservation {
        extent_start: lva,
        nr_extents: n as u64,
        domid: DOMID_SELF,
        ..Default::default()
    };
    let ava = arg_va(&w);
    w.put(ava, &r);
    let (rc, conts) = w.call_to_completion(
        __HYPERVISOR_memory_op,
        [XENMEM_populate_physmap.into(), ava, 0, 0, 0],
        1000,
    );
    assert_eq!(rc, n as i64);
    assert!(conts > 5, "preempted {conts} times");
    let got = list(&mut w, n);
    for (i, &m) in got.iter().enumerate() {
        assert_eq!(m2p(&w, m), pfns[i]);
    }
    let (rc, _) = w.call_to_completion(
        __HYPERVISOR_memory_op,
        [XENMEM_decrease_reservation.into(), ava, 0, 0, 0],
        1000,
    );
    assert_eq!(rc, n as i64);
    assert_eq!(w.dom.nr_pages, DOM0_PAGES);
    w.check();
}

#[test]
fn queries_name_existing_domains_only() {
    let mut w = World::dom0();
    assert_eq!(
        query(&mut w, XENMEM_current_reservation, 0),
        DOM0_PAGES as i64
    );
    assert_eq!(
        query(&mut w, XENMEM_maximum_reservation, DOMID_SELF),
        u32::MAX as i64
    );
    assert_eq!(query(&mut w, XENMEM_current_reservation, 5), ESRCH);
}

#[test]
fn the_pool_keeps_single_frames_its_run_list_has_no_room_for() {
    use crate::domain::pool::Pool;
    use crate::mm::frame_alloc::{BootFrameAllocator, FrameRange, MAX_FREE_RANGES};
    use crate::mm::FakeMemory;
    let mut mem = FakeMemory::new(0, 1024 * 4096);
    let mut pool = Pool::new(BootFrameAllocator::empty(), 0);
    // Every other frame: the run list fills up, the rest go on the list of singles.
    let n = 2 * MAX_FREE_RANGES as u64;
    for i in 0..n {
        FramePool::give_back(&mut pool, &mut mem, Mfn(16 + 2 * i));
    }
    assert_eq!(pool.free_frames(), n);
    assert_eq!(pool.frames.free_ranges().len(), MAX_FREE_RANGES);
    // Frames come back out, each once, and the count follows.
    let mut seen = std::collections::BTreeSet::new();
    for left in (0..n).rev() {
        let m = pool.take(&mut mem, 0, None).expect("a frame");
        assert!(seen.insert(m.0), "{m:?} handed out twice");
        assert_eq!(m.0 % 2, 0);
        assert_eq!(pool.free_frames(), left);
    }
    assert!(pool.take(&mut mem, 0, None).is_none());
    // Larger extents come from runs only.
    pool.frames
        .free(FrameRange {
            start: Mfn(64),
            end: Mfn(72),
        })
        .unwrap();
    assert_eq!(pool.take(&mut mem, 3, None), Some(Mfn(64)));
}

#[test]
fn only_frames_truly_back_in_the_pool_are_handed_out() {
    // Whatever the pool holds by mistake (a corrupted list of single frames, a frame put back
    // twice), the frame table is the gate: a hypervisor frame, a frame a domain holds and a
    // loose frame not yet reclaimed are never given to a domain.
    use crate::domain::pool::one;
    use crate::domain::PerfCounters;
    use crate::mm::frame_alloc::BootFrameAllocator;
    let mut w = World::dom0();
    let good = std::mem::replace(&mut w.pool, BootFrameAllocator::empty());
    let increase =
        |w: &mut World| reservation(w, XENMEM_increase_reservation, &[0], 0, 0, DOMID_SELF);

    w.pool.free(one(WORLD_M2P)).unwrap();
    assert_eq!(increase(&mut w), 0, "a hypervisor frame");
    assert_eq!(w.frame(WORLD_M2P).owner(), Owner::Xen);

    w.pool = good;
    assert_eq!(increase(&mut w), 1);
    let held = Mfn(list(&mut w, 1)[0]);
    assert_eq!(increase(&mut w), 1);
    let loose = Mfn(list(&mut w, 1)[0]);
    let good = std::mem::replace(&mut w.pool, BootFrameAllocator::empty());
    w.pool.free(one(held)).unwrap();
    assert_eq!(increase(&mut w), 0, "a frame the domain holds");
    assert_eq!(w.frame(held).owner(), Owner::Domain(0));

    // The allocation reference goes behind the pool's back: free, still counted as dom0's.
    let mm = w.m.mm.as_mut().unwrap();
    mm.frames.put_page(loose, &mut PerfCounters::default());
    // ... and the reclaim has not seen it yet (out of the queue, as if it had overflowed and
    // the walk were still to come).
    let _ = mm.frames.take_loose_queue();
    assert!(w.frame(loose).loose());
    w.pool = BootFrameAllocator::empty();
    w.pool.free(one(loose)).unwrap();
    assert_eq!(increase(&mut w), 0, "a loose frame");
    assert!(w.frame(loose).loose());
    w.pool = good;
}

#[test]
fn frames_freed_behind_the_pools_back_return_whether_queued_or_not() {
    // The frame table queues frames as they become loose; past the queue's size the next
    // reclaim walks the whole table. Either way every frame comes back and is counted once.
    use crate::domain::PerfCounters;
    use crate::mm::frame_table::LOOSE_QUEUE;
    for n in [3usize, LOOSE_QUEUE + 40] {
        let mut w = World::dom0();
        let free = w.pool.free_frames();
        let mut mfns = vec![];
        while mfns.len() < n {
            let k = (n - mfns.len()).min(256);
            let got = reservation(
                &mut w,
                XENMEM_increase_reservation,
                &vec![0; k],
                0,
                0,
                DOMID_SELF,
            );
            assert_eq!(got, k as i64);
            mfns.extend(list(&mut w, k));
        }
        assert_eq!(w.dom.nr_pages, DOM0_PAGES + n as u64);
        // Each allocation reference goes (as the last put of a page given up while mapped).
        let mm = w.m.mm.as_mut().unwrap();
        for &m in &mfns {
            mm.frames.put_page(Mfn(m), &mut PerfCounters::default());
        }
        assert!(w.mm().frames.loose_pending());
        assert_eq!(
            query(&mut w, XENMEM_current_reservation, DOMID_SELF),
            DOM0_PAGES as i64,
            "{n} frames"
        );
        assert_eq!(w.pool.free_frames(), free);
        assert!(!w.mm().frames.loose_pending());
        assert!(mfns.iter().all(|&m| !w.frame(Mfn(m)).loose()));
        w.check();
    }
}
