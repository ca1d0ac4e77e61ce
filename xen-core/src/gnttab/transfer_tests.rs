//! Host tests of `GNTTABOP_transfer` on the two-domain test machine
//! (`frame_table::testing::Two`), through the hypercall: a frame given from domain 0 to domain 1
//! (and to itself), every refusal in Xen 4.17's order, frames still mapped or used as page tables
//! refused, and the page accounting of both sides (`tot_pages`, the frame table audit, the pool).

use hypercall_abi::grant_table::*;
use hypercall_abi::xen::{__HYPERVISOR_grant_table_op, DOMID_SELF};

use super::*;
use crate::domain::set::{DomainSet, MAX_PORT_2L};
use crate::hypercall::testing::FakePreempt;
use crate::mm::frame_table::testing::{base, page_va, Two};
use crate::mm::frame_table::FrameInfo;
use crate::mm::{MachineMemory, MachineMemoryMut};
use crate::regs::Regs;
use zerocopy::{FromBytes, IntoBytes};

/// Domain 0's L1 (frame `base(0) + 3`) maps its 32 frames at VA 0..0x20000.
const L1: u64 = base(0) + 3;
/// A frame of domain 0 that the tests unmap before giving it away (its page 10).
const GIVEN: u64 = base(0) + 10;
/// Where the argument array lives in domain 0 (its page 30).
const ARG: u64 = page_va(30);
/// The receiver's entry.
const REF: u32 = 10;
/// The pfn the receiver names in its entry.
const PFN: u64 = 0x1234;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;

struct X {
    two: Two,
    set: Box<DomainSet>,
    /// The effects the last call left for the way out.
    fx: crate::ctx::Effects,
}

impl X {
    fn new() -> X {
        let mut two = Two::new();
        let mut set = Box::new(DomainSet::new());
        let mut next = 80u64;
        let mut alloc = |_: &mut dyn MachineMemoryMut| {
            next += 1;
            Some(Mfn(next - 1))
        };
        for d in 0..2u16 {
            let mut g = crate::hypercall::testing::guest(d);
            g.dom = crate::mm::frame_table::testing::fresh_domain(d, d == 0, Mfn(0));
            set.install(usize::from(d), g, MAX_PORT_2L);
            let mm = two.m.mm.as_mut().unwrap();
            set.grants[usize::from(d)]
                .init(mm, &mut two.m.mem, d, &mut alloc, 4)
                .unwrap();
        }
        for d in 0..2 {
            two.doms[d].nr_pages = 32;
            two.doms[d].max_pages = 40;
        }
        two.check();
        X {
            two,
            set,
            fx: Default::default(),
        }
    }

    /// Swaps the domains between the test machine and the set (the set holds them while a
    /// hypercall runs, the machine for the audit).
    fn swap(&mut self) {
        for d in 0..2 {
            let g = self.set.guest_mut(d).unwrap();
            core::mem::swap(&mut self.two.doms[d], &mut g.dom);
        }
    }

    fn dom(&self, d: usize) -> &crate::domain::Domain {
        &self.two.doms[d]
    }

    /// `grant_table_op(GNTTABOP_transfer, uop, count)` as domain `d`, once.
    fn raw(&mut self, d: usize, uop: u64, count: u64) -> (i64, Option<crate::ctx::Continuation>) {
        self.call(d, GNTTABOP_transfer, uop, count)
    }

    /// `grant_table_op(cmd, uop, count)` as domain `d`, once.
    fn call(
        &mut self,
        d: usize,
        cmd: u32,
        uop: u64,
        count: u64,
    ) -> (i64, Option<crate::ctx::Continuation>) {
        self.swap();
        let mut fx = crate::ctx::Effects::default();
        self.two.m.cr3 = Some(self.set.guest(d).unwrap().dom.current_l4());
        let mut regs = Regs::default();
        let (me, events, grants, others) = self.set.split(d).unwrap();
        let mut ctx = crate::ctx::Ctx {
            m: &mut self.two.m,
            info: &self.two.info,
            pool: &mut self.two.pool,
            dom: &mut me.dom,
            events,
            grants,
            others,
            regs: &mut regs,
            in_multicall: false,
            fx: &mut fx,
        };
        // As the hypercall way out does: the effects first, then the outcome built from them.
        let rc = crate::hypercall::execute(
            &mut ctx,
            __HYPERVISOR_grant_table_op.into(),
            [cmd.into(), uop, count, 0, 0],
        );
        let seen = ctx.fx.clone();
        let out = crate::ctx::Outcome::from_effects(rc, core::mem::take(ctx.fx));
        out.apply_effects(ctx.dom);
        self.fx = seen;
        self.swap();
        (out.rax(), out.continuation())
    }

    /// Transfers as domain 0 (its array at [`ARG`]): the result and each status.
    fn transfer(&mut self, ops: &[GnttabTransfer]) -> (i64, Vec<i16>) {
        for (i, op) in ops.iter().enumerate() {
            let at = self.gpa(ARG) + 24 * i as u64;
            let mut op = *op;
            op.status = 0x55;
            self.two.m.mem.write(Maddr(at), op.as_bytes()).unwrap();
        }
        let (rc, c) = self.raw(0, ARG, ops.len() as u64);
        assert!(c.is_none());
        let st = (0..ops.len())
            .map(|i| {
                let at = self.gpa(ARG) + 24 * i as u64 + 16;
                let b = self.two.m.mem.read(Maddr(at), 2).unwrap();
                i16::from_le_bytes([b[0], b[1]])
            })
            .collect();
        (rc, st)
    }

    /// Domain 0's frame behind its VA (identity layout: page i is frame base(0)+i).
    fn gpa(&self, va: u64) -> u64 {
        (base(0) << 12) + va
    }

    fn entry(&mut self, d: usize, gref: u32, flags: u16, domid: u16, frame: u64) {
        let at = self.set.grants[d].entry_at(gref);
        let v = u64::from(flags) | u64::from(domid) << 16 | frame << 32;
        self.two.m.mem.write_u64(at, v).unwrap();
    }

    fn read_entry(&self, d: usize, gref: u32) -> (u16, DomId, u32) {
        self.set.grants[d].entry(&self.two.m.mem, gref)
    }

    /// Domain 0 unmaps its page `i` (clears the L1 entry): the frame's allocation is then its
    /// only reference.
    fn unmap_page(&mut self, i: u64) {
        let (rc, _) = self
            .two
            .mmu(0, &[((L1 << 12) + 8 * i, 0)], u32::from(DOMID_SELF));
        assert_eq!(rc, 0);
    }

    fn frame(&self, mfn: u64) -> FrameInfo {
        self.two.frame(mfn)
    }

    fn m2p(&self, mfn: u64) -> u64 {
        let m2p = self.two.mm().cfg.m2p;
        self.two.m.mem.read_u64(Maddr(m2p.0 + mfn * 8)).unwrap()
    }
}

fn op(mfn: u64, domid: u16, gref: u32) -> GnttabTransfer {
    GnttabTransfer {
        mfn,
        domid,
        r#ref: gref,
        ..Default::default()
    }
}

#[test]
fn a_frame_goes_to_the_accepting_domain_with_its_contents() {
    let mut x = X::new();
    x.unmap_page(10);
    x.two.m.mem.write_u64(Maddr(GIVEN << 12), 0xfeed).unwrap();
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    let before = (x.dom(0).nr_pages, x.dom(1).nr_pages);
    let (rc, st) = x.transfer(&[op(GIVEN, 1, REF)]);
    assert_eq!((rc, st[0]), (0, GNTST_okay));
    let f = x.frame(GIVEN);
    assert_eq!(f.owner(), Owner::Domain(1));
    assert!(f.allocated() && f.count() == 1 && f.type_count() == 0);
    let flags = GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed;
    assert_eq!(x.read_entry(1, REF), (flags, 0, GIVEN as u32));
    assert_eq!(x.m2p(GIVEN), PFN);
    assert_eq!(x.two.m.mem.read_u64(Maddr(GIVEN << 12)), Some(0xfeed));
    assert_eq!(x.dom(0).nr_pages, before.0 - 1);
    assert_eq!(x.dom(1).nr_pages, before.1 + 1);
    x.two.check();
    // The receiver can map it now; the giver cannot any more.
    let pte = (GIVEN << 12) | 0x7;
    let (rc, _) = x
        .two
        .mmu(0, &[((L1 << 12) + 8 * 10, pte)], u32::from(DOMID_SELF));
    assert_ne!(rc, 0);
    // A second transfer of the same frame: no longer the giver's.
    x.entry(1, REF + 1, GTF_accept_transfer, 0, PFN);
    let (_, st) = x.transfer(&[op(GIVEN, 1, REF + 1)]);
    assert_eq!(st[0], GNTST_bad_page);
    assert_eq!(x.read_entry(1, REF + 1).0, GTF_accept_transfer);
}

#[test]
fn a_domain_can_transfer_to_its_own_id_but_not_to_domid_self() {
    let mut x = X::new();
    x.unmap_page(10);
    x.entry(0, REF, GTF_accept_transfer, 0, PFN);
    let n = x.dom(0).nr_pages;
    let (rc, st) = x.transfer(&[op(GIVEN, 0, REF)]);
    assert_eq!((rc, st[0]), (0, GNTST_okay));
    assert_eq!(x.frame(GIVEN).owner(), Owner::Domain(0));
    assert_eq!(x.dom(0).nr_pages, n);
    assert_eq!(x.m2p(GIVEN), PFN);
    x.two.check();
    // `rcu_lock_domain_by_id(DOMID_SELF)` finds nobody: the stolen frame is freed.
    let free = x.two.pool.free_frames();
    x.entry(0, REF + 1, GTF_accept_transfer, 0, PFN);
    let (_, st) = x.transfer(&[op(GIVEN, DOMID_SELF, REF + 1)]);
    assert_eq!(st[0], GNTST_bad_domain);
    let f = x.frame(GIVEN);
    assert_eq!(f.owner(), Owner::Free);
    assert!(!f.loose(), "freed straight back to the pool");
    assert_eq!(x.two.pool.free_frames(), free + 1);
    assert_eq!(x.dom(0).nr_pages, n - 1);
    assert_eq!(x.read_entry(0, REF + 1).0, GTF_accept_transfer);
    x.two.check();
}

#[test]
fn frames_that_cannot_be_stolen_are_bad_pages_and_nothing_moves() {
    let mut x = X::new();
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    let shared = x.set.guest(0).unwrap().dom.shared_info.0;
    let cases = [
        base(0) + 11, // mapped writable
        base(0) + 1,  // mapped read-only, an L3 in use
        base(0) + 3,  // the L1
        base(0),      // the pinned L4
        base(1) + 12, // domain 1's
        shared,       // shared_info, a hypervisor page shared with domain 0
        81,           // a grant-table frame
        5,            // a hypervisor frame
        0,            // I/O
        u64::MAX,     // beyond the frame table
        1 << 40,
    ];
    let before: Vec<_> = cases
        .iter()
        .map(|&m| x.two.mm().frames.get(Mfn(m)).copied())
        .collect();
    let n = (x.dom(0).nr_pages, x.dom(1).nr_pages);
    for (i, &mfn) in cases.iter().enumerate() {
        let (rc, st) = x.transfer(&[op(mfn, 1, REF)]);
        assert_eq!((rc, st[0]), (0, GNTST_bad_page), "case {i}: mfn {mfn:#x}");
        assert_eq!(
            x.two.mm().frames.get(Mfn(mfn)).copied(),
            before[i],
            "case {i}"
        );
    }
    assert_eq!((x.dom(0).nr_pages, x.dom(1).nr_pages), n);
    assert_eq!(x.read_entry(1, REF).0, GTF_accept_transfer);
    x.two.check();
}

#[test]
fn a_page_mapped_twice_or_unmapped_once_of_two_is_still_refused() {
    let mut x = X::new();
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    // Page 12 also mapped at slot 10 (two PTEs); dropping one leaves the other.
    let pte = ((base(0) + 12) << 12) | 0x7;
    let (rc, _) = x
        .two
        .mmu(0, &[((L1 << 12) + 8 * 10, pte)], u32::from(DOMID_SELF));
    assert_eq!(rc, 0);
    x.unmap_page(12);
    let (_, st) = x.transfer(&[op(base(0) + 12, 1, REF)]);
    assert_eq!(st[0], GNTST_bad_page);
    assert_eq!(x.frame(base(0) + 12).owner(), Owner::Domain(0));
    x.unmap_page(10);
    let (_, st) = x.transfer(&[op(base(0) + 12, 1, REF)]);
    assert_eq!(st[0], GNTST_okay);
    x.two.check();
}

/// The refusals after the frame is stolen: it is freed (the giver loses it, as on Xen), the
/// receiver's total is where it was and its entry unchanged.
#[test]
fn refusals_after_the_steal_free_the_frame_and_reserve_nothing() {
    type Setup = fn(&mut X);
    let cases: [(&str, u16, u32, u16, u16, Setup, i16); 8] = [
        (
            "no such domain",
            7,
            REF,
            GTF_accept_transfer,
            0,
            |_| {},
            GNTST_bad_domain,
        ),
        (
            "dying",
            1,
            REF,
            GTF_accept_transfer,
            0,
            |x| x.set.guest_mut(1).unwrap().destroy = true,
            GNTST_general_error,
        ),
        (
            "no headroom",
            1,
            REF,
            GTF_accept_transfer,
            0,
            |x| x.two.doms[1].max_pages = x.two.doms[1].nr_pages,
            GNTST_general_error,
        ),
        (
            "not accepting",
            1,
            REF,
            GTF_permit_access,
            0,
            |_| {},
            GNTST_general_error,
        ),
        (
            "accepting with other flags",
            1,
            REF,
            GTF_accept_transfer | GTF_transfer_committed,
            0,
            |_| {},
            GNTST_general_error,
        ),
        (
            "accepting from another domain",
            1,
            REF,
            GTF_accept_transfer,
            1,
            |_| {},
            GNTST_general_error,
        ),
        (
            "reference beyond the table",
            1,
            512,
            GTF_accept_transfer,
            0,
            |_| {},
            GNTST_general_error,
        ),
        (
            "reference far beyond",
            1,
            u32::MAX,
            GTF_accept_transfer,
            0,
            |_| {},
            GNTST_general_error,
        ),
    ];
    for (name, domid, gref, flags, edom, setup, want) in cases {
        let mut x = X::new();
        x.unmap_page(10);
        x.entry(1, REF, flags, edom, PFN);
        setup(&mut x);
        let n = (x.dom(0).nr_pages, x.dom(1).nr_pages);
        let free = x.two.pool.free_frames();
        let (rc, st) = x.transfer(&[op(GIVEN, domid, gref)]);
        assert_eq!((rc, st[0]), (0, want), "{name}");
        let f = x.frame(GIVEN);
        assert_eq!(f.owner(), Owner::Free, "{name}");
        assert!(!f.loose(), "{name}");
        assert_eq!(x.two.pool.free_frames(), free + 1, "{name}");
        assert_eq!(
            x.m2p(GIVEN),
            crate::domain::pool::INVALID_M2P_ENTRY,
            "{name}"
        );
        assert_eq!(
            (x.dom(0).nr_pages, x.dom(1).nr_pages),
            (n.0 - 1, n.1),
            "{name}"
        );
        assert_eq!(x.read_entry(1, REF), (flags, edom, PFN as u32), "{name}");
        x.two.check();
    }
}

#[test]
fn a_batch_reports_each_element_and_bad_arrays_are_refused() {
    let mut x = X::new();
    x.unmap_page(10);
    x.unmap_page(12);
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    x.entry(1, REF + 1, GTF_accept_transfer, 0, PFN + 1);
    let (rc, st) = x.transfer(&[
        op(GIVEN, 1, REF),
        op(base(0) + 11, 1, REF + 1),
        op(base(0) + 12, 1, REF + 1),
    ]);
    assert_eq!(rc, 0);
    assert_eq!(st, [GNTST_okay, GNTST_bad_page, GNTST_okay]);
    assert_eq!(x.read_entry(1, REF + 1).2, (base(0) + 12) as u32);
    assert_eq!(x.dom(1).nr_pages, 34);
    x.two.check();
    // Count 0 reads nothing; a negative count is -EINVAL; an array outside guest space or
    // unmapped is -EFAULT.
    assert_eq!(x.raw(0, 0xffff_8000_0000_0000, 0).0, EFAULT);
    assert_eq!(x.raw(0, ARG, 0).0, 0);
    assert_eq!(x.raw(0, ARG, 0x8000_0000).0, EINVAL);
    assert_eq!(x.raw(0, page_va(100), 1).0, EFAULT);
    assert_eq!(x.raw(0, 0x8000_0000_0000, 1).0, EFAULT);
}

#[test]
fn a_preempted_batch_continues_where_it_stopped() {
    let mut x = X::new();
    for i in [10, 12, 13] {
        x.unmap_page(i);
    }
    for (k, i) in [10u64, 12, 13].into_iter().enumerate() {
        x.entry(1, REF + k as u32, GTF_accept_transfer, 0, PFN + k as u64);
        let at = x.gpa(ARG) + 24 * k as u64;
        let o = op(base(0) + i, 1, REF + k as u32);
        x.two.m.mem.write(Maddr(at), o.as_bytes()).unwrap();
    }
    x.two.m.preempt = FakePreempt::every(1);
    let (rc, c) = x.raw(0, ARG, 3);
    assert_eq!(rc, 0);
    let c = c.expect("preempted after the first element");
    assert_eq!(&c.args[..3], &[GNTTABOP_transfer.into(), ARG + 24, 2]);
    assert_eq!(x.frame(GIVEN).owner(), Owner::Domain(1));
    assert_eq!(x.frame(base(0) + 12).owner(), Owner::Domain(0));
    x.two.m.preempt = FakePreempt::default();
    let (rc, c) = x.raw(0, ARG + 24, 2);
    assert_eq!((rc, c.is_none()), (0, true));
    assert_eq!(x.frame(base(0) + 13).owner(), Owner::Domain(1));
    x.two.check();
}

#[test]
fn version_2_entries_get_the_full_page_frame() {
    let mut x = X::new();
    x.unmap_page(10);
    {
        let mm = x.two.m.mm.as_mut().unwrap();
        // Its status frame: frame 100, free (the tables took 80..86).
        let mut status = Some(Mfn(100));
        let (v, rc) = set_version(
            mm,
            &mut x.two.m.mem,
            &mut x.set.grants[1],
            1,
            2,
            &mut |_| status.take(),
        );
        assert_eq!((v, rc), (2, Ok(())));
    }
    let at = x.set.grants[1].entry_at(REF);
    let hdr = u64::from(GTF_accept_transfer);
    x.two.m.mem.write_u64(at, hdr).unwrap();
    x.two.m.mem.write_u64(Maddr(at.0 + 8), PFN).unwrap();
    let (rc, st) = x.transfer(&[op(GIVEN, 1, REF)]);
    assert_eq!((rc, st[0]), (0, GNTST_okay));
    let e = x.set.grants[1].entry_v2(&x.two.m.mem, REF);
    let flags = GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed;
    assert_eq!((e.flags(), e.frame()), (flags, GIVEN));
    assert_eq!(x.m2p(GIVEN), PFN);
    x.two.check();
}

/// A frame another domain maps through a grant holds that mapping's reference: it cannot be
/// stolen (nothing the giver hands on is still reachable by someone else); once unmapped, it can.
#[test]
fn a_frame_grant_mapped_by_another_domain_is_refused() {
    let mut x = X::new();
    // Domain 0 grants its page 10 to domain 1, which maps it at its page 20.
    x.entry(0, 9, GTF_permit_access, 1, GIVEN);
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    let map = GnttabMapGrantRef {
        host_addr: page_va(20),
        flags: GNTMAP_host_map,
        r#ref: 9,
        dom: 0,
        ..Default::default()
    };
    let at1 = (base(1) + 30) << 12;
    x.two.m.mem.write(Maddr(at1), map.as_bytes()).unwrap();
    // A free frame for domain 1's maptrack, which its first map takes.
    x.two
        .pool
        .free(crate::mm::frame_table::testing::range(100, 101))
        .unwrap();
    let (rc, _) = x.call(1, GNTTABOP_map_grant_ref, page_va(30), 1);
    assert_eq!(rc, 0);
    let mut back = [0u8; core::mem::size_of::<GnttabMapGrantRef>()];
    let n = back.len();
    back.copy_from_slice(x.two.m.mem.read(Maddr(at1), n).unwrap());
    let mapped = GnttabMapGrantRef::read_from_bytes(&back).unwrap();
    assert_eq!(mapped.status, GNTST_okay);
    x.unmap_page(10);
    let (_, st) = x.transfer(&[op(GIVEN, 1, REF)]);
    assert_eq!(st[0], GNTST_bad_page);
    assert_eq!(x.frame(GIVEN).owner(), Owner::Domain(0));
    assert_eq!(x.read_entry(1, REF).0, GTF_accept_transfer);
    // Domain 1 unmaps it: now the allocation is the only reference.
    let unmap = GnttabUnmapGrantRef {
        host_addr: page_va(20),
        handle: mapped.handle,
        ..Default::default()
    };
    x.two.m.mem.write(Maddr(at1), unmap.as_bytes()).unwrap();
    let (rc, _) = x.call(1, GNTTABOP_unmap_grant_ref, page_va(30), 1);
    assert_eq!(rc, 0);
    let (_, st) = x.transfer(&[op(GIVEN, 1, REF)]);
    assert_eq!(st[0], GNTST_okay);
    assert_eq!(x.frame(GIVEN).owner(), Owner::Domain(1));
}

/// The flush a steal owes is the call's effect, not a note on the vCPU: the hypercall way out
/// skips its full pass (and the flush with it) when a call leaves no effects.
#[test]
fn a_transfer_owes_its_flush_as_an_effect_so_no_fast_way_out_skips_it() {
    let mut x = X::new();
    x.unmap_page(10);
    x.entry(1, REF, GTF_accept_transfer, 0, PFN);
    let (rc, st) = x.transfer(&[op(GIVEN, 1, REF)]);
    assert_eq!((rc, st[0]), (0, GNTST_okay));
    assert!(x.fx.flush.local_flush, "the steal's TLB flush is an effect");
    assert!(!x.fx.nothing_to_do());
    // (The way out makes it the vCPU's to owe, and does it.)
    x.two.doms[0].vcpu_mut().flush.take();
    // A refused element after the steal (no such receiver) owes the flush too.
    x.unmap_page(11);
    let (_, st) = x.transfer(&[op(base(0) + 11, 7, REF)]);
    assert_eq!(st[0], GNTST_bad_domain);
    assert!(x.fx.flush.local_flush);
    x.two.check();
}
