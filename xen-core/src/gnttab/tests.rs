//! Host tests of the grant table state machine on the two-domain test machine
//! (`frame_table::testing::Two`): domain 0 grants, domain 1 maps and copies. The frame table
//! audit (which knows nothing of grants: a PTE mapping another domain's frame is an error to it)
//! must hold whenever no grant is mapped; while one is, the counts are checked one by one.

use hypercall_abi::grant_table::*;

use super::*;
use crate::mm::frame_table::testing::{base, page_va, Two};
use crate::mm::frame_table::FrameInfo;

/// Two domains with a grant table each (at most 4 shared frames each; the tables take frames
/// 80.. as they grow).
struct World {
    two: Two,
    tables: [Box<GrantTable>; 2],
    /// The next frame a table takes.
    next: std::rc::Rc<std::cell::Cell<u64>>,
}

/// The tables as [`GrantTables`] (domain `i` has id `i`).
struct Both<'a>(&'a mut [Box<GrantTable>; 2]);

impl GrantTables for Both<'_> {
    fn table(&mut self, id: DomainId) -> Option<&mut GrantTable> {
        self.0.get_mut(usize::from(id)).map(|b| &mut **b)
    }
    fn ids(&self, out: &mut dyn FnMut(DomainId)) {
        out(0);
        out(1);
    }
}

/// The frame dom0 grants (its page 10, mapped writable by itself).
const GRANTED: u64 = base(0) + 10;
/// A second frame of dom0 (page 11).
const GRANTED2: u64 = base(0) + 11;
/// Where dom1 maps grants (its pages 20 and 21).
const AT: u64 = page_va(20);
const AT2: u64 = page_va(21);

impl World {
    fn new() -> World {
        let mut two = Two::new();
        let mut tables = [Box::new(GrantTable::new()), Box::new(GrantTable::new())];
        let next = std::rc::Rc::new(std::cell::Cell::new(80u64));
        let mut alloc = World::source(&next);
        for (d, t) in tables.iter_mut().enumerate() {
            let mm = two.m.mm.as_mut().unwrap();
            t.init(mm, &mut two.m.mem, d as u16, &mut alloc, 4).unwrap();
        }
        let w = World { two, tables, next };
        w.two.check();
        w
    }

    /// The free pool the tables grow from: frames 80.. in order, up to the machine's end.
    fn source(
        next: &std::rc::Rc<std::cell::Cell<u64>>,
    ) -> impl FnMut(&mut dyn MachineMemoryMut) -> Option<Mfn> {
        let next = next.clone();
        move |_| {
            let m = next.get();
            next.set(m + 1);
            (m < crate::mm::frame_table::testing::SMALL_FRAMES).then_some(Mfn(m))
        }
    }

    /// `setup_table` as domain `d` for domain `target`'s table.
    fn setup(&mut self, d: usize, target: u16, nr_frames: u32) -> Result<(), i16> {
        let mut alloc = World::source(&self.next);
        self.as_dom(d, |pt, _, t| {
            setup_table(pt, t, target, nr_frames, &mut alloc)
        })
    }

    /// Writes entry `gref` of domain `d`'s table.
    fn grant(&mut self, d: usize, gref: u32, flags: u16, domid: u16, frame: u64) {
        let at = self.tables[d].entry_at(gref);
        let v = u64::from(flags) | u64::from(domid) << 16 | frame << 32;
        self.two.m.mem.write_u64(at, v).unwrap();
    }

    fn flags(&self, d: usize, gref: u32) -> u16 {
        self.tables[d].entry(&self.two.m.mem, gref).0
    }

    /// Runs `f` as domain `d` with a frame-table context and both tables.
    fn as_dom<R>(
        &mut self,
        d: usize,
        f: impl FnOnce(&mut Pt<'_, '_>, Mfn, &mut Both<'_>) -> R,
    ) -> R {
        let dom = &mut self.two.doms[d];
        let caller = dom.info();
        let l4 = dom.vcpu().l4;
        let vcpu = dom.vcpu_mut();
        let mut pt: Pt<'_, '_> = Pt {
            mm: self.two.m.mm.as_mut().unwrap(),
            mem: &mut self.two.m.mem,
            perf: &mut vcpu.perf,
            flush: &mut vcpu.flush,
            caller,
        };
        f(&mut pt, l4, &mut Both(&mut self.tables))
    }

    fn map(&mut self, d: usize, gref: u32, dom: u16, va: u64, flags: u32) -> GnttabMapGrantRef {
        let mut op = GnttabMapGrantRef {
            host_addr: va,
            flags,
            r#ref: gref,
            dom,
            ..Default::default()
        };
        let mut alloc = World::source(&self.next);
        self.as_dom(d, |pt, l4, t| map_grant_ref(pt, l4, t, &mut op, &mut alloc));
        op
    }

    fn unmap(&mut self, d: usize, va: u64, bus: u64, handle: u32) -> i16 {
        let mut op = GnttabUnmapGrantRef {
            host_addr: va,
            dev_bus_addr: bus,
            handle,
            ..Default::default()
        };
        self.as_dom(d, |pt, l4, t| unmap_grant_ref(pt, l4, t, &mut op));
        op.status
    }

    fn copy(&mut self, d: usize, op: GnttabCopy) -> i16 {
        self.as_dom(d, |pt, _, t| copy(pt, t, &op))
    }

    fn frame(&self, mfn: u64) -> FrameInfo {
        self.two.frame(mfn)
    }

    /// dom1's L1 entry for `va` (its L1 is frame base(1)+3).
    fn pte(&self, va: u64) -> u64 {
        self.two.entry(base(1) + 3, va >> 12)
    }

    fn check(&self) {
        self.two.check();
    }
}

const HOST: u32 = GNTMAP_host_map;
const RO: u32 = GNTMAP_host_map | GNTMAP_readonly;

#[test]
fn a_table_takes_its_frames_as_it_grows_not_at_build() {
    let mut w = World::new();
    // Built: one shared frame and the two frames of its 512 active entries, nothing more.
    assert_eq!(w.tables[0].frames().len(), 3);
    assert_eq!(w.tables[1].frames().len(), 3);
    let before = w.next.get();
    // Growing to 3 frames (1536 references) takes 2 shared frames and 4 of active entries.
    assert_eq!(w.setup(0, 0, 3), Ok(()));
    assert_eq!(w.tables[0].nr_frames(), 3);
    assert_eq!(w.tables[0].frames().len(), 3 + 6);
    assert_eq!(w.next.get(), before + 6);
    // The shared ones are the domain's (a Xen heap page), the active ones the hypervisor's.
    for (i, f) in w.tables[0].shared_frames().iter().enumerate() {
        let info = w.frame(f.0);
        assert_eq!(info.owner(), Owner::Domain(0), "shared frame {i}");
        assert!(info.xen_heap());
    }
    let active = w.tables[0].frames().len() - 3;
    assert_eq!(
        w.tables[0]
            .frames()
            .iter()
            .filter(|f| w.frame(f.0).owner() == Owner::Xen)
            .count(),
        active
    );
    // The new references work: entry 1500 grants a frame that dom1 can map.
    w.grant(0, 1500, GTF_permit_access, 1, GRANTED);
    let op = w.map(1, 1500, 0, AT, HOST);
    assert_eq!(op.status, GNTST_okay);
    assert_eq!(w.unmap(1, AT, 0, op.handle), GNTST_okay);
    // Asking for what it has already takes nothing.
    assert_eq!(w.setup(0, 0, 2), Ok(()));
    assert_eq!(w.tables[0].frames().len(), 9);
    w.check();
}

#[test]
fn growth_beyond_max_frames_is_refused_and_takes_nothing() {
    let mut w = World::new();
    let before = w.next.get();
    // Xen's answer to a guest asking past `max_grant_frames`: GNTST_general_error ("limited
    // to 4 grant-table frames"), whatever the number.
    for n in [5, 64, 65, u32::MAX] {
        assert_eq!(w.setup(0, 0, n), Err(GNTST_general_error), "{n} frames");
    }
    assert_eq!(w.next.get(), before, "no frame taken");
    assert_eq!(w.tables[0].nr_frames(), 1);
    assert_eq!(w.tables[0].frames().len(), 3);
    // Exactly the limit is fine.
    assert_eq!(w.setup(0, 0, 4), Ok(()));
    assert_eq!(w.tables[0].nr_frames(), 4);
    assert_eq!(w.tables[0].frames().len(), 4 + 8);
    w.check();
}

#[test]
fn growth_with_a_dry_pool_fails_cleanly_and_the_table_stays_usable() {
    let mut w = World::new();
    // dom1 maps once while the pool has frames: its maptrack takes its first frame.
    w.grant(0, 8, GTF_permit_access, 1, GRANTED);
    let op = w.map(1, 8, 0, AT, HOST);
    assert_eq!(op.status, GNTST_okay);
    assert_eq!(w.unmap(1, AT, 0, op.handle), GNTST_okay);
    // The pool has 2 frames left: growing to 4 frames needs 3 shared and 6 active.
    w.next
        .set(crate::mm::frame_table::testing::SMALL_FRAMES - 2);
    assert_eq!(w.setup(0, 0, 4), Err(GNTST_general_error));
    // What it took is recorded (given back with the domain), the table did not grow.
    assert_eq!(w.tables[0].nr_frames(), 1);
    assert_eq!(w.tables[0].nr_entries(), 512);
    assert_eq!(w.tables[0].frames().len(), 5);
    // The first frame still works.
    w.grant(0, 9, GTF_permit_access, 1, GRANTED);
    let op = w.map(1, 9, 0, AT, HOST);
    assert_eq!(op.status, GNTST_okay);
    assert_eq!(w.unmap(1, AT, 0, op.handle), GNTST_okay);
    // A reference past the first frame is still refused.
    let op = w.map(1, 600, 0, AT, HOST);
    assert_eq!(op.status, GNTST_bad_gntref);
    w.check();
}

#[test]
fn version_2_takes_its_status_frame_once() {
    let mut w = World::new();
    let before = w.next.get();
    assert_eq!(w.set_version(0, 2), (2, Ok(())));
    assert_eq!(w.next.get(), before + 1, "one status frame");
    assert_eq!(w.tables[0].status_frames().len(), 1);
    // Growing under version 2: 4 frames of 256 entries still fit one status frame.
    assert_eq!(w.setup(0, 0, 4), Ok(()));
    assert_eq!(w.tables[0].status_frames().len(), 1);
    assert_eq!(w.tables[0].frames().len(), 4 + 8 + 1);
    // Back to 1 and to 2 again: the status frame is kept and shared again, none taken.
    let taken = w.next.get();
    assert_eq!(w.set_version(0, 1), (1, Ok(())));
    assert!(w.tables[0].status_frames().is_empty());
    assert_eq!(w.set_version(0, 2), (2, Ok(())));
    assert_eq!(w.tables[0].status_frames().len(), 1);
    assert_eq!(w.next.get(), taken);
    w.check();
}

#[test]
fn version_2_with_a_dry_pool_is_enomem() {
    let mut w = World::new();
    w.next.set(crate::mm::frame_table::testing::SMALL_FRAMES);
    assert_eq!(w.set_version(0, 2), (1, Err(hypercall_abi::Errno::ENOMEM)));
    assert!(w.tables[0].status_frames().is_empty());
    w.check();
}

#[test]
fn setup_shares_the_first_frame_and_grows_on_demand() {
    let mut w = World::new();
    assert_eq!(w.tables[0].nr_frames(), 1);
    assert_eq!(w.tables[0].nr_entries(), 512);
    let f = w.frame(w.tables[0].shared_frames()[0].0);
    assert_eq!(f.owner(), Owner::Domain(0));
    assert!(f.xen_heap());
    let r = w.setup(0, 0, 3);
    assert_eq!(r, Ok(()));
    assert_eq!(w.tables[0].nr_frames(), 3);
    let r = w.setup(0, 0, 5);
    assert_eq!(
        r,
        Err(GNTST_general_error),
        "beyond the 4 frames it was given"
    );
    // dom1 (unprivileged) may not ask about dom0; dom0 may ask about dom1.
    let r = w.as_dom(1, |pt, _, t| target_table(pt, t, 0));
    assert_eq!(r, Err(GNTST_permission_denied));
    let r = w.as_dom(0, |pt, _, t| target_table(pt, t, 1));
    assert_eq!(r, Ok(1));
    let r = w.as_dom(0, |pt, _, t| target_table(pt, t, 9));
    assert_eq!(r, Err(GNTST_bad_domain));
    w.check();
}

#[test]
fn map_and_unmap_rw_and_ro_with_pins_flags_and_references() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    let old_pte = w.pte(AT);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);

    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(m.dev_bus_addr, GRANTED << 12);
    assert_eq!(
        w.flags(0, 10),
        GTF_permit_access | GTF_reading | GTF_writing
    );
    assert_eq!(
        w.tables[0].active(&w.two.m.mem, 10).unwrap().pin,
        GNTPIN_HSTW_INC
    );
    let pte = w.pte(AT);
    assert_eq!(pte::mfn(pte), GRANTED);
    assert_eq!(pte & !pte::ADDR, 0x8010_0000_0000_0067);
    assert_eq!(w.frame(GRANTED).count(), start.count() + 1);
    assert_eq!(w.frame(GRANTED).type_count(), start.type_count() + 1);
    // The page dom1 had there lost its mapping.
    assert_eq!(w.frame(pte::mfn(old_pte)).type_count(), 0);

    let m2 = w.map(1, 10, 0, AT2, RO);
    assert_eq!(m2.status, GNTST_okay);
    assert_ne!(m2.handle, m.handle);
    assert_eq!(
        w.tables[0].active(&w.two.m.mem, 10).unwrap().pin,
        GNTPIN_HSTW_INC + GNTPIN_HSTR_INC
    );
    assert_eq!(w.pte(AT2) & pte::RW, 0);

    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    assert_eq!(w.pte(AT), 0);
    assert_eq!(w.flags(0, 10), GTF_permit_access | GTF_reading);
    assert_eq!(
        w.unmap(1, AT, 0, m.handle),
        GNTST_bad_handle,
        "double unmap"
    );
    assert_eq!(w.unmap(1, AT, 0, 5000), GNTST_bad_handle);
    assert_eq!(w.unmap(1, AT, 0, 7), GNTST_bad_handle);
    // The wrong address: the PTE there does not map the frame; the mapping stays.
    assert_eq!(w.unmap(1, AT, 0, m2.handle), GNTST_general_error);
    assert_eq!(w.unmap(1, AT2, 0, m2.handle), GNTST_okay);
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert!(w.tables[0].active(&w.two.m.mem, 10).is_none());
    assert_eq!(w.frame(GRANTED), start);
    assert!(w.tables[1].mappings(&w.two.m.mem).next().is_none());
    w.check();
}

#[test]
fn refused_maps_change_nothing() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access | GTF_readonly, 1, GRANTED);
    w.grant(0, 11, GTF_permit_access, 7, GRANTED);
    w.grant(0, 12, 0, 1, GRANTED);
    w.grant(0, 13, GTF_permit_access, 1, base(1) + 5); // not dom0's frame
    let cases = [
        (10, 0, HOST, GNTST_general_error), // read-only grant mapped writable
        (11, 0, HOST, GNTST_general_error), // granted to another domain
        (12, 0, HOST, GNTST_general_error), // not permitted
        (13, 0, HOST, GNTST_bad_page),      // the granter does not own the frame
        (512, 0, HOST, GNTST_bad_gntref),   // beyond the table
        (10, 9, HOST, GNTST_bad_domain),
        (10, DOMID_SELF, HOST, GNTST_bad_domain),
        (10, 0, 0, GNTST_bad_gntref), // neither host nor device
    ];
    for (gref, dom, flags, want) in cases {
        let m = w.map(1, gref, dom, AT, flags);
        assert_eq!(m.status, want, "ref {gref} dom {dom} flags {flags:#x}");
    }
    // A bad address: no L1 there.
    let m = w.map(1, 10, 0, 0x7000_0000_0000, RO);
    assert_eq!(m.status, GNTST_general_error);
    assert_eq!(w.flags(0, 10), GTF_permit_access | GTF_readonly);
    assert_eq!(w.flags(0, 11), GTF_permit_access);
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

#[test]
fn copies_in_both_directions_with_bounds() {
    let mut w = World::new();
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    w.grant(0, 11, GTF_permit_access | GTF_readonly, 1, GRANTED2);
    let (src_start, dst_start) = (w.frame(GRANTED), w.frame(base(1) + 6));
    w.two
        .m
        .mem
        .write_u64(Maddr((GRANTED2 << 12) + 8), 0x1122_3344)
        .unwrap();
    let ptr = |u: u64, domid: u16, offset: u16| GnttabCopyPtr {
        u,
        domid,
        offset,
        ..Default::default()
    };
    // From dom0's read-only grant into dom1's own frame.
    let op = GnttabCopy {
        source: ptr(11, 0, 8),
        dest: ptr(base(1) + 6, DOMID_SELF, 100),
        len: 8,
        flags: GNTCOPY_source_gref,
        ..Default::default()
    };
    assert_eq!(w.copy(1, op), GNTST_okay);
    let got = w.two.m.mem.read_u64(Maddr(((base(1) + 6) << 12) + 100));
    assert_eq!(got, Some(0x1122_3344));
    // From dom1's frame into dom0's writable grant.
    let op = GnttabCopy {
        source: ptr(base(1) + 6, DOMID_SELF, 100),
        dest: ptr(10, 0, 4088),
        len: 8,
        flags: GNTCOPY_dest_gref,
        ..Default::default()
    };
    assert_eq!(w.copy(1, op), GNTST_okay);
    let got = w.two.m.mem.read_u64(Maddr((GRANTED << 12) + 4088));
    assert_eq!(got, Some(0x1122_3344));
    let refused = [
        (ptr(11, 0, 0), ptr(10, 0, 4089), 8, 3, GNTST_bad_copy_arg),
        (ptr(11, 0, 4095), ptr(10, 0, 0), 2, 3, GNTST_bad_copy_arg),
        (ptr(10, 0, 0), ptr(11, 0, 0), 8, 3, GNTST_general_error), // r/o destination
        (
            ptr(GRANTED, 0, 0),
            ptr(10, 0, 0),
            8,
            2,
            GNTST_permission_denied,
        ),
        (
            ptr(GRANTED, DOMID_SELF, 0),
            ptr(10, 0, 0),
            8,
            2,
            GNTST_bad_page,
        ), // not dom1's
        (ptr(600, 0, 0), ptr(10, 0, 0), 8, 3, GNTST_bad_gntref),
        (ptr(11, 9, 0), ptr(10, 0, 0), 8, 3, GNTST_bad_domain),
    ];
    for (source, dest, len, flags, want) in refused {
        let op = GnttabCopy {
            source,
            dest,
            len,
            flags,
            ..Default::default()
        };
        assert_eq!(w.copy(1, op), want, "{op:?}");
    }
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.flags(0, 11), GTF_permit_access | GTF_readonly);
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!(w.frame(GRANTED), src_start);
    assert_eq!(w.frame(base(1) + 6), dst_start);
    w.check();
}

#[test]
fn a_revoked_grant_stays_mapped_until_unmapped() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    w.grant(0, 10, 0, 0, 0); // the granter revokes
                             // Pinned: another mapping does not look at the entry (Xen's behaviour).
    let m2 = w.map(1, 10, 0, AT2, RO);
    assert_eq!(m2.status, GNTST_okay);
    assert_eq!(pte::mfn(w.pte(AT2)), GRANTED);
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    assert_eq!(w.unmap(1, AT2, 0, m2.handle), GNTST_okay);
    assert_eq!(w.map(1, 10, 0, AT, HOST).status, GNTST_general_error);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

#[test]
fn a_grant_pte_replaced_by_the_guest_gives_its_references_back() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    // dom1 writes its own frame over the grant PTE with mmu_update.
    let slot = Two::slot(base(1) + 3, AT >> 12);
    let own = ((base(1) + 20) << 12) | crate::mm::frame_table::testing::DATA;
    assert_eq!(w.two.mmu(1, &[(slot, own)], DOMID_SELF as u32), (0, 1));
    assert_eq!(w.frame(GRANTED), start, "the PTE's references went with it");
    w.check();
    // The handle outlives its PTE: unmap refuses (the PTE does not map the frame) and keeps it.
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_general_error);
    assert!(w.tables[1].mapping(&w.two.m.mem, m.handle).is_some());
    // The mapper's death releases the pin without touching references again.
    w.as_dom(1, |pt, _, t| release_mappings(pt, t, 1));
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

#[test]
fn the_granters_death_revokes_every_mapping_of_its_grants() {
    let mut w = World::new();
    let start = [w.frame(GRANTED), w.frame(GRANTED2)];
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    w.grant(0, 11, GTF_permit_access, 1, GRANTED2);
    let m = w.map(1, 10, 0, AT, HOST);
    let d = w.map(1, 11, 0, 0, GNTMAP_device_map);
    assert_eq!((m.status, d.status), (GNTST_okay, GNTST_okay));
    assert_eq!(w.frame(GRANTED2).count(), start[1].count() + 1);
    let mut flushed = Vec::new();
    w.as_dom(0, |pt, _, t| {
        revoke_grants_of(pt, t, 0, &mut |id| flushed.push(id));
        release_mappings(pt, t, 0);
    });
    assert_eq!(flushed, [1]);
    assert_eq!(w.pte(AT), 0);
    assert!(w.tables[1].mappings(&w.two.m.mem).next().is_none());
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!([w.frame(GRANTED), w.frame(GRANTED2)], start);
    w.check();
    // Now dom0's frames can all go: nothing of dom1 holds them.
    // Every grant-table frame is the domain's (shared) or the hypervisor's: none is free for
    // the pool to hand out while the table uses it.
    for f in w.tables[0].frames() {
        let owner = w.two.frame(f.0).owner();
        assert!(
            matches!(owner, Owner::Xen | Owner::Domain(0)),
            "{f:?} is {owner:?}"
        );
    }
    let mm = w.two.m.mm.as_mut().unwrap();
    let left = mm.relinquish_domain(&mut w.two.m.mem, &mut w.two.doms[0]);
    assert_eq!(left, 0);
    for f in w.tables[0].frames() {
        // The shared frames went with the domain; the active entries' stay the hypervisor's
        // until the reaper frees them.
        mm.release_xen(crate::domain::pool::one(*f));
    }
    for f in w.tables[0].frames() {
        assert_eq!(w.two.frame(f.0).owner(), Owner::Free);
    }
}

/// [`Both`] among as many other domains as the hypervisor can hold, named before the mapper: the
/// ones without a table map nothing.
struct Crowd<'a>(Both<'a>);

impl GrantTables for Crowd<'_> {
    fn table(&mut self, id: DomainId) -> Option<&mut GrantTable> {
        self.0.table(id)
    }
    fn ids(&self, out: &mut dyn FnMut(DomainId)) {
        out(0);
        for id in 2..crate::mm::frame_table::MAX_DOMAINS as DomainId {
            out(id);
        }
        out(1);
    }
}

#[test]
fn the_granters_death_revokes_the_mappings_of_the_last_of_a_full_house_of_domains() {
    // The mapper is the 80th domain the granter's death looks at: its mapping goes like the
    // first one's (a list of mappers that held 64 kept this one's PTE, and the frame stayed
    // reachable after the granter's frames went back).
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    assert_eq!(w.map(1, 10, 0, AT, HOST).status, GNTST_okay);
    let mut flushed = Vec::new();
    w.as_dom(0, |pt, _, t| {
        let mut crowd = Crowd(Both(&mut *t.0));
        revoke_grants_of(pt, &mut crowd, 0, &mut |id| flushed.push(id));
        release_mappings(pt, t, 0);
    });
    assert_eq!(flushed, [1]);
    assert_eq!(w.pte(AT), 0);
    assert!(w.tables[1].mappings(&w.two.m.mem).next().is_none());
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

#[test]
fn the_mappers_death_drops_its_device_mappings_and_pins() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST | GNTMAP_device_map);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(
        w.tables[0].active(&w.two.m.mem, 10).unwrap().pin,
        GNTPIN_HSTW_INC + GNTPIN_DEVW_INC
    );
    assert_eq!(w.frame(GRANTED).count(), start.count() + 2);
    w.as_dom(1, |pt, _, t| release_mappings(pt, t, 1));
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    // The host mapping's references are its PTE's: tearing dom1 down drops them.
    let mm = w.two.m.mm.as_mut().unwrap();
    let _ = mm.relinquish_domain(&mut w.two.m.mem, &mut w.two.doms[1]);
    assert_eq!(w.frame(GRANTED), start);
}

#[test]
fn hostile_handles_and_counts_are_refused() {
    let mut w = World::new();
    for h in [u32::MAX, MAX_MAPTRACK as u32, 0, 1023] {
        assert_eq!(w.unmap(1, AT, 0, h), GNTST_bad_handle);
    }
    // A pin counter stops at 128 (its top bit set).
    w.grant(0, 10, GTF_permit_access | GTF_readonly, 1, GRANTED);
    let dev_ro = GNTMAP_device_map | GNTMAP_readonly;
    for _ in 0..128 {
        assert_eq!(w.map(1, 10, 0, 0, dev_ro).status, GNTST_okay);
    }
    assert_eq!(w.map(1, 10, 0, 0, dev_ro).status, GNTST_general_error);
    // Every maptrack handle in use: the next map has no handle.
    for r in 11..20 {
        w.grant(0, r, GTF_permit_access | GTF_readonly, 1, GRANTED);
    }
    for i in 128..MAX_MAPTRACK as u32 {
        let m = w.map(1, 11 + (i - 128) / 120, 0, 0, dev_ro);
        assert_eq!(m.status, GNTST_okay, "map {i}");
    }
    let m = w.map(1, 19, 0, 0, dev_ro);
    assert_eq!(m.status, GNTST_no_space);
    // The mapper's death gives every reference back.
    w.as_dom(1, |pt, _, t| release_mappings(pt, t, 1));
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!(w.frame(GRANTED).count(), 2);
    w.check();
}

/// Issue 11, finding 6: the active state is per reference of the granter (Xen's
/// `active_grant_entry` array, one per entry of the table), so what one mapper pins costs no other
/// domain anything; a mapper's own limits (its maptrack, a reference's pin counters) stop only
/// it, with Xen's statuses.
#[test]
fn one_mapper_cannot_exhaust_the_granters_active_entries() {
    let mut w = World::new();
    let start = [w.frame(GRANTED), w.frame(GRANTED2)];
    // dom0's table grows to 4 frames (2048 references); every one from 8 up is granted read-only
    // to dom1, and reference 5 to dom0 itself (the second mapper).
    assert_eq!(w.setup(0, 0, 4), Ok(()));
    let ro = GTF_permit_access | GTF_readonly;
    for r in 8..2048 {
        w.grant(0, r, ro, 1, GRANTED);
    }
    w.grant(0, 5, ro, 0, GRANTED2);
    let dev_ro = GNTMAP_device_map | GNTMAP_readonly;

    // dom1 pins as many distinct references as it can: its maptrack runs out first
    // (`get_maptrack_handle` fails: GNTST_no_space on Xen 4.17).
    let mut handles = Vec::new();
    let mut r = 8;
    let status = loop {
        let m = w.map(1, r, 0, 0, dev_ro);
        if m.status != GNTST_okay {
            break m.status;
        }
        handles.push(m.handle);
        r += 1;
    };
    assert_eq!(status, GNTST_no_space);
    assert_eq!(handles.len(), MAX_MAPTRACK);
    // Another mapper of the same granter is not affected.
    let own = w.map(0, 5, 0, 0, dev_ro);
    assert_eq!(own.status, GNTST_okay, "dom0 maps its own grant");
    let copy_in = GnttabCopy {
        source: GnttabCopyPtr {
            u: 5,
            domid: 0,
            ..Default::default()
        },
        dest: GnttabCopyPtr {
            u: base(0) + 12,
            domid: DOMID_SELF,
            ..Default::default()
        },
        len: 8,
        flags: GNTCOPY_source_gref,
        ..Default::default()
    };
    assert_eq!(w.copy(0, copy_in), GNTST_okay, "dom0 copies from its grant");

    // dom1 gives back 200 handles and pins one reference until its read-only device counter
    // would overflow (Xen refuses once the counter's top bit is set: GNTST_general_error).
    for h in handles.split_off(MAX_MAPTRACK - 200) {
        assert_eq!(w.unmap(1, 0, GRANTED << 12, h), GNTST_okay);
    }
    let mut pins = 1; // reference 8 is still mapped once
    let status = loop {
        let m = w.map(1, 8, 0, 0, dev_ro);
        if m.status != GNTST_okay {
            break m.status;
        }
        handles.push(m.handle);
        pins += 1;
    };
    assert_eq!((status, pins), (GNTST_general_error, 128));
    let again = w.map(0, 5, 0, 0, dev_ro);
    assert_eq!(again.status, GNTST_okay, "dom0 still maps its own grant");

    // The mapper's death gives back every pin and reference; dom0's own mappings stay.
    w.as_dom(1, |pt, _, t| release_mappings(pt, t, 1));
    assert!(w.tables[1].mappings(&w.two.m.mem).next().is_none());
    for r in 8..2048 {
        assert_eq!(w.flags(0, r), ro, "ref {r}");
    }
    assert_eq!(w.frame(GRANTED), start[0]);
    for m in [own, again] {
        assert_eq!(w.unmap(0, 0, GRANTED2 << 12, m.handle), GNTST_okay);
    }
    assert_eq!(w.flags(0, 5), ro);
    assert_eq!(w.frame(GRANTED2), start[1]);
    w.check();
}

/// Each pin counter overflows alone (`GNTPIN_incr2oflow_mask`): a reference whose read-only
/// device counter is full still takes host mappings, other device mappings and copies, as on
/// Xen 4.17 (differential case `grant.pin_count_overflow`).
#[test]
fn a_full_pin_counter_refuses_only_its_own_kind() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let dev_ro = GNTMAP_device_map | GNTMAP_readonly;
    let mut handles = Vec::new();
    for _ in 0..128 {
        let m = w.map(1, 10, 0, 0, dev_ro);
        assert_eq!(m.status, GNTST_okay);
        handles.push(m.handle);
    }
    assert_eq!(w.map(1, 10, 0, 0, dev_ro).status, GNTST_general_error);
    // A host mapping and a device mapping together: refused only if one of their counters is
    // full.
    assert_eq!(
        w.map(1, 10, 0, 0, dev_ro | HOST).status,
        GNTST_general_error
    );
    let host = w.map(1, 10, 0, AT, RO);
    assert_eq!(host.status, GNTST_okay, "host read-only counter is free");
    let dev_rw = w.map(1, 10, 0, 0, GNTMAP_device_map);
    assert_eq!(dev_rw.status, GNTST_okay, "device writable counter is free");
    let from = GnttabCopy {
        source: GnttabCopyPtr {
            u: 10,
            domid: 0,
            ..Default::default()
        },
        dest: GnttabCopyPtr {
            u: base(1) + 6,
            domid: DOMID_SELF,
            ..Default::default()
        },
        len: 8,
        flags: GNTCOPY_source_gref,
        ..Default::default()
    };
    assert_eq!(w.copy(1, from), GNTST_okay, "a copy pins host-read");
    assert_eq!(
        w.tables[0].active(&w.two.m.mem, 10).unwrap().pin,
        128 * GNTPIN_DEVR_INC + GNTPIN_HSTR_INC + GNTPIN_DEVW_INC
    );
    for h in handles {
        assert_eq!(w.unmap(1, 0, GRANTED << 12, h), GNTST_okay);
    }
    assert_eq!(w.unmap(1, AT, 0, host.handle), GNTST_okay);
    assert_eq!(w.unmap(1, 0, GRANTED << 12, dev_rw.handle), GNTST_okay);
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

/// `unmap_common`: a wrong bus address refuses the unmap of a device mapping
/// (`GNTST_bad_dev_addr`) and is not looked at for a host-only one, as on Xen 4.17.
#[test]
fn a_wrong_bus_address_refuses_only_a_device_unmap() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let dev = w.map(1, 10, 0, 0, GNTMAP_device_map);
    assert_eq!(dev.status, GNTST_okay);
    let wrong = (GRANTED + 1) << 12;
    assert_eq!(w.unmap(1, 0, wrong, dev.handle), GNTST_bad_dev_addr);
    assert!(w.tables[1].mapping(&w.two.m.mem, dev.handle).is_some());
    assert_eq!(w.unmap(1, 0, GRANTED << 12, dev.handle), GNTST_okay);
    let host = w.map(1, 10, 0, AT, HOST);
    assert_eq!(host.status, GNTST_okay);
    assert_eq!(w.unmap(1, AT, wrong, host.handle), GNTST_okay);
    assert_eq!(w.pte(AT), 0);
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

// Version 2: status frames, sub-page and transitive grants, switching back.

impl World {
    /// `set_version` for domain `d`: the version afterwards and the errno.
    fn set_version(&mut self, d: usize, v: u32) -> (u32, Result<(), hypercall_abi::Errno>) {
        let mut alloc = World::source(&self.next);
        let mm = self.two.m.mm.as_mut().unwrap();
        set_version(
            mm,
            &mut self.two.m.mem,
            &mut self.tables[d],
            d as u16,
            v,
            &mut alloc,
        )
    }

    /// Writes version-2 entry `gref` of domain `d`: the header, the union's second 32 bits
    /// (`page_off`/`length` or `trans_domid`) and its second word (`frame` or `gref`).
    fn grant2(&mut self, d: usize, gref: u32, flags: u16, domid: u16, mid: u32, w1: u64) {
        let at = self.tables[d].entry_at(gref);
        let w0 = u64::from(flags) | u64::from(domid) << 16 | u64::from(mid) << 32;
        self.two.m.mem.write_u64(at, w0).unwrap();
        self.two.m.mem.write_u64(Maddr(at.0 + 8), w1).unwrap();
    }

    fn status(&self, d: usize, gref: u32) -> u16 {
        self.tables[d].status(&self.two.m.mem, gref)
    }
}

fn sub_page(off: u16, len: u16) -> u32 {
    u32::from(off) | u32::from(len) << 16
}

#[test]
fn version_2_shares_status_frames_and_converts_the_reserved_entries() {
    let mut w = World::new();
    w.grant(0, 1, GTF_permit_access | GTF_reading, 1, GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    assert!(w.tables[0].status_frames().is_empty());
    assert_eq!(w.set_version(0, 3), (1, Err(hypercall_abi::Errno::EINVAL)));
    assert_eq!(w.set_version(0, 0), (1, Err(hypercall_abi::Errno::EINVAL)));
    assert_eq!(w.set_version(0, 1), (1, Ok(())));
    assert_eq!(w.set_version(0, 2), (2, Ok(())));
    assert_eq!(w.tables[0].nr_entries(), 256);
    let st = w.tables[0].status_frames().to_vec();
    assert_eq!(st.len(), 1);
    let f = w.frame(st[0].0);
    assert_eq!(f.owner(), Owner::Domain(0));
    assert!(f.xen_heap());
    // Reserved entry 1 kept, its reading bit moved to the status; entry 10 cleared.
    let e = w.tables[0].entry_v2(&w.two.m.mem, 1);
    assert_eq!(
        (e.flags(), e.domid(), e.frame()),
        (GTF_permit_access, 1, GRANTED)
    );
    assert_eq!(w.status(0, 1), GTF_reading);
    assert_eq!(
        w.tables[0].entry_v2(&w.two.m.mem, 10),
        GrantEntryV2::default()
    );
    // Growing the table under version 2 keeps the status frames in step.
    assert_eq!(w.setup(0, 0, 4), Ok(()));
    assert_eq!(w.tables[0].nr_entries(), 1024);
    assert_eq!(w.tables[0].status_frames().len(), 1);
    // Back to 1: status frames the hypervisor's again, reserved entry 1 with its reading bit back.
    assert_eq!(w.set_version(0, 1), (1, Ok(())));
    assert!(w.tables[0].status_frames().is_empty());
    assert_eq!(
        w.frame(st[0].0).owner(),
        Owner::Xen,
        "the hypervisor's again"
    );
    assert_eq!(w.flags(0, 1), GTF_permit_access | GTF_reading);
    assert_eq!(w.tables[0].entry(&w.two.m.mem, 1), (9, 1, GRANTED as u32));
    assert_eq!(w.tables[0].nr_entries(), 2048);
    w.check();
}

#[test]
fn version_changes_are_refused_while_in_use() {
    let mut w = World::new();
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(w.set_version(0, 2), (1, Err(hypercall_abi::Errno::EBUSY)));
    assert!(w.tables[0].status_frames().is_empty());
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    // A reserved entry may stay mapped across the switch.
    w.grant(0, 2, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 2, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(w.set_version(0, 2), (2, Ok(())));
    assert_eq!(w.status(0, 2), GTF_reading | GTF_writing);
    assert_eq!(
        w.tables[0].entry_v2(&w.two.m.mem, 2).flags(),
        GTF_permit_access
    );
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    assert_eq!(w.status(0, 2), 0);
    // A status frame the domain maps keeps it at version 2.
    let st = w.tables[0].status_frames()[0];
    assert!(w.as_dom(0, |pt, _, _| pt.get_page(st, Owner::Domain(0))));
    assert_eq!(w.set_version(0, 1), (2, Err(hypercall_abi::Errno::EBUSY)));
    assert_eq!(w.tables[0].status_frames(), &[st]);
    w.as_dom(0, |pt, _, _| pt.put_page(st));
    // Reserved entries version 1 cannot hold.
    w.grant2(0, 3, GTF_permit_access, 1, 0, 1 << 32);
    assert_eq!(w.set_version(0, 1), (2, Err(hypercall_abi::Errno::ERANGE)));
    w.grant2(0, 3, GTF_transitive, 1, 0, 10);
    assert_eq!(w.set_version(0, 1), (2, Err(hypercall_abi::Errno::ERANGE)));
    w.grant2(0, 3, GTF_accept_transfer, 1, 0, 1 << 32);
    assert_eq!(w.set_version(0, 1), (1, Ok(())));
    assert_eq!(w.tables[0].entry(&w.two.m.mem, 3), (0, 0, 0), "dropped");
    assert_eq!(w.frame(st.0).owner(), Owner::Xen);
    w.check();
}

#[test]
fn version_2_maps_keep_their_status_apart_and_refuse_sub_pages() {
    let mut w = World::new();
    assert_eq!(w.set_version(0, 2).1, Ok(()));
    let start = w.frame(GRANTED);
    w.grant2(0, 10, GTF_permit_access, 1, 0, GRANTED);
    w.grant2(
        0,
        11,
        GTF_permit_access | GTF_sub_page,
        1,
        sub_page(0, 64),
        GRANTED,
    );
    w.grant2(0, 12, GTF_permit_access | GTF_readonly, 1, 0, GRANTED);
    w.grant2(0, 13, GTF_permit_access, 1, 0, 1 << 40); // beyond the frame table
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(
        w.tables[0].entry_v2(&w.two.m.mem, 10).flags(),
        GTF_permit_access
    );
    assert_eq!(w.status(0, 10), GTF_reading | GTF_writing);
    assert_eq!(w.map(1, 11, 0, AT2, HOST).status, GNTST_general_error);
    assert_eq!(w.map(1, 12, 0, AT2, HOST).status, GNTST_general_error);
    assert_eq!(w.map(1, 13, 0, AT2, HOST).status, GNTST_bad_page);
    assert_eq!(w.map(1, 256, 0, AT2, HOST).status, GNTST_bad_gntref);
    assert_eq!(
        (w.status(0, 11), w.status(0, 12), w.status(0, 13)),
        (0, 0, 0)
    );
    let r = w.map(1, 12, 0, AT2, RO);
    assert_eq!(r.status, GNTST_okay);
    assert_eq!(w.status(0, 12), GTF_reading);
    assert_eq!(w.unmap(1, AT2, 0, r.handle), GNTST_okay);
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    assert_eq!((w.status(0, 10), w.status(0, 12)), (0, 0));
    assert_eq!(w.frame(GRANTED), start);
    // Swapping exchanges the status too.
    w.tables[0].set_status(&mut w.two.m.mem, 20, GTF_reading);
    let rc = swap_grant_ref(&mut w.two.m.mem, &w.tables[0], 20, 10);
    assert_eq!(rc, GNTST_okay);
    assert_eq!((w.status(0, 10), w.status(0, 20)), (GTF_reading, 0));
    assert_eq!(w.tables[0].entry_v2(&w.two.m.mem, 20).frame(), GRANTED);
    w.check();
}

#[test]
fn sub_page_copies_stay_within_their_window() {
    let mut w = World::new();
    assert_eq!(w.set_version(0, 2).1, Ok(()));
    w.grant2(
        0,
        10,
        GTF_permit_access | GTF_sub_page,
        1,
        sub_page(256, 64),
        GRANTED,
    );
    w.grant2(
        0,
        11,
        GTF_permit_access | GTF_sub_page | GTF_readonly,
        1,
        sub_page(8, 8),
        GRANTED2,
    );
    w.two
        .m
        .mem
        .write_u64(Maddr((GRANTED2 << 12) + 8), 0x5566)
        .unwrap();
    let (a, b) = (w.frame(GRANTED), w.frame(GRANTED2));
    let ptr = |u: u64, domid: u16, offset: u16| GnttabCopyPtr {
        u,
        domid,
        offset,
        ..Default::default()
    };
    let both = GNTCOPY_source_gref | GNTCOPY_dest_gref;
    let cases = [
        (ptr(11, 0, 8), ptr(10, 0, 256), 8, GNTST_okay),
        (ptr(11, 0, 8), ptr(10, 0, 312), 8, GNTST_okay), // the window's last 8 bytes
        (ptr(11, 0, 8), ptr(10, 0, 313), 8, GNTST_general_error),
        (ptr(11, 0, 8), ptr(10, 0, 248), 8, GNTST_general_error),
        (ptr(11, 0, 0), ptr(10, 0, 256), 8, GNTST_general_error),
        (ptr(11, 0, 8), ptr(10, 0, 256), 9, GNTST_general_error),
        (ptr(11, 0, 4095), ptr(10, 0, 256), 2, GNTST_bad_copy_arg),
    ];
    for (source, dest, len, want) in cases {
        let op = GnttabCopy {
            source,
            dest,
            len,
            flags: both,
            ..Default::default()
        };
        assert_eq!(w.copy(1, op), want, "{op:?}");
    }
    let got = w.two.m.mem.read_u64(Maddr((GRANTED << 12) + 312));
    assert_eq!(got, Some(0x5566));
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert_eq!((w.status(0, 10), w.status(0, 11)), (0, 0));
    assert_eq!((w.frame(GRANTED), w.frame(GRANTED2)), (a, b));
    w.check();
}

#[test]
fn transitive_grants_copy_one_level_with_xens_checks() {
    let mut w = World::new();
    assert_eq!(w.set_version(0, 2).1, Ok(()));
    assert_eq!(w.set_version(1, 2).1, Ok(()));
    // dom0 grants a window of GRANTED to dom1; dom1 grants it on, transitively, back to dom0.
    w.grant2(
        0,
        10,
        GTF_permit_access | GTF_sub_page,
        1,
        sub_page(128, 32),
        GRANTED,
    );
    w.grant2(1, 20, GTF_transitive, 0, 0, 10);
    w.grant2(1, 21, GTF_transitive, 0, 1, 10); // names dom1 itself
    w.grant2(1, 22, GTF_transitive, 0, 9, 10); // no such domain
    w.grant2(1, 23, GTF_transitive, 0, 0, 30); // names a transitive grant
    w.grant2(0, 30, GTF_transitive, 1, 1, 24);
    w.grant2(1, 24, GTF_permit_access, 0, 0, base(1) + 6);
    w.grant2(1, 25, GTF_transitive, 0, 0, 11); // names an entry not granted to dom1
    w.two
        .m
        .mem
        .write_u64(Maddr((GRANTED << 12) + 136), 0x7788)
        .unwrap();
    let start = w.frame(GRANTED);
    let ptr = |u: u64, domid: u16, offset: u16| GnttabCopyPtr {
        u,
        domid,
        offset,
        ..Default::default()
    };
    let own = base(0) + 12;
    let copy = |w: &mut World, gref: u64, off: u16, len: u16| {
        let op = GnttabCopy {
            source: ptr(gref, 1, off),
            dest: ptr(own, DOMID_SELF, 0),
            len,
            flags: GNTCOPY_source_gref,
            ..Default::default()
        };
        w.copy(0, op)
    };
    assert_eq!(copy(&mut w, 20, 136, 8), GNTST_okay);
    assert_eq!(w.two.m.mem.read_u64(Maddr(own << 12)), Some(0x7788));
    // The referent's window binds the transitive grant.
    assert_eq!(copy(&mut w, 20, 120, 8), GNTST_general_error);
    assert_eq!(copy(&mut w, 20, 156, 8), GNTST_general_error);
    for gref in [21, 22, 23, 25] {
        assert_eq!(
            copy(&mut w, gref, 136, 8),
            GNTST_general_error,
            "ref {gref}"
        );
    }
    // Mapping a transitive grant is refused, even one whose words name a frame dom1 owns.
    w.grant2(1, 26, GTF_transitive, 0, 0, base(1) + 6);
    assert_eq!(
        w.map(0, 26, 1, page_va(20), HOST).status,
        GNTST_general_error
    );
    assert_eq!(w.status(1, 26), 0);
    // Every pin and status bit went with its copy.
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    assert!(w.tables[1].active_entries(&w.two.m.mem).next().is_none());
    for (d, r) in [
        (0, 10),
        (0, 30),
        (1, 20),
        (1, 21),
        (1, 22),
        (1, 23),
        (1, 24),
        (1, 25),
    ] {
        assert_eq!(w.status(d, r), 0, "d{d} ref {r}");
    }
    assert_eq!(w.frame(GRANTED), start);
    // Version 1 has no transitive grants.
    assert_eq!(w.set_version(1, 1).1, Ok(()));
    w.grant(1, 20, GTF_transitive, 0, 0);
    assert_eq!(copy(&mut w, 20, 136, 8), GNTST_general_error);
    assert_eq!(w.flags(1, 20), GTF_transitive);
    w.check();
}

#[test]
fn a_pinned_entry_rewritten_as_transitive_is_refused_and_no_reference_moves() {
    // Review of the v2 work: A grants X to B, B maps it (entry pinned); B grants Y to A; A
    // rewrites the pinned entry as transitive to B's grant. A copy from it must not take a
    // reference on Y and hand back X (Xen re-checks the active entry after the nested
    // acquire); otherwise each copy drops a reference on X it never took.
    let mut w = World::new();
    assert_eq!(w.set_version(0, 2).1, Ok(()));
    w.grant2(0, 10, GTF_permit_access, 1, 0, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    let y = base(1) + 6;
    w.grant(1, 24, GTF_permit_access, 0, y);
    w.grant2(0, 10, GTF_transitive, 1, 1, 24);
    let (x0, y0) = (w.frame(GRANTED).count(), w.frame(y).count());
    let own = base(1) + 12;
    let op = GnttabCopy {
        source: GnttabCopyPtr {
            u: 10,
            domid: 0,
            offset: 0,
            ..Default::default()
        },
        dest: GnttabCopyPtr {
            u: own,
            domid: DOMID_SELF,
            offset: 0,
            ..Default::default()
        },
        len: 8,
        flags: GNTCOPY_source_gref,
        ..Default::default()
    };
    for _ in 0..4 {
        assert_eq!(w.copy(1, op), GNTST_general_error);
        assert_eq!((w.frame(GRANTED).count(), w.frame(y).count()), (x0, y0));
    }
}

// `GNTMAP_contains_pte` and `GNTTABOP_unmap_and_replace`.

/// Machine address of dom1's L1 entry for `va`.
const fn pte_maddr(va: u64) -> u64 {
    ((base(1) + 3) << 12) + (va >> 12) * 8
}

const AT3: u64 = page_va(22);

impl World {
    fn unmap_replace(&mut self, d: usize, va: u64, new: u64, handle: u32) -> i16 {
        let mut op = GnttabUnmapAndReplace {
            host_addr: va,
            new_addr: new,
            handle,
            ..Default::default()
        };
        self.as_dom(d, |pt, l4, t| unmap_and_replace(pt, l4, t, &mut op));
        op.status
    }
}

#[test]
fn contains_pte_maps_through_the_pte_machine_address() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let pte_mode = HOST | GNTMAP_contains_pte;
    let refused = [
        pte_maddr(AT) + 3,           // misaligned
        (base(1) + 6) << 12,         // a data page, not an L1
        ((base(0) + 3) << 12) + 160, // dom0's L1
        0xff_ffff_f000,              // beyond the frame table
    ];
    for addr in refused {
        let m = w.map(1, 10, 0, addr, pte_mode);
        assert_eq!(m.status, GNTST_general_error, "{addr:#x}");
    }
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    let m = w.map(1, 10, 0, pte_maddr(AT), pte_mode);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(pte::mfn(w.pte(AT)), GRANTED);
    assert_eq!(
        w.tables[1].mapping(&w.two.m.mem, m.handle).unwrap().pte.0,
        pte_maddr(AT)
    );
    // No replacing in this mode (AT2 keeps its entry); unmapped by the same address only.
    let kept = w.pte(AT2);
    assert_eq!(
        w.unmap_replace(1, pte_maddr(AT), AT2, m.handle),
        GNTST_general_error
    );
    assert_eq!(w.pte(AT2), kept);
    assert_eq!(w.unmap(1, pte_maddr(AT2), 0, m.handle), GNTST_general_error);
    assert_eq!(w.unmap(1, pte_maddr(AT), 0, m.handle), GNTST_okay);
    assert_eq!(w.pte(AT), 0);
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

#[test]
fn unmap_and_replace_moves_the_new_pte_into_the_grants_slot() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    let moved = w.pte(AT2);
    let moved_frame = w.frame(pte::mfn(moved));
    // Refused before anything changes: a bad handle, no L1 at `new_addr`; a `host_addr` of 0
    // has nothing to do (success, the mapping stays).
    assert_eq!(w.unmap_replace(1, AT, AT2, 5000), GNTST_bad_handle);
    assert_eq!(
        w.unmap_replace(1, AT, 0x7000_0000_0000, m.handle),
        GNTST_general_error
    );
    assert_eq!(w.unmap_replace(1, 0, AT2, m.handle), GNTST_okay);
    assert_eq!(w.pte(AT2), moved);
    assert_eq!(pte::mfn(w.pte(AT)), GRANTED);
    assert!(w.tables[1].mapping(&w.two.m.mem, m.handle).is_some());
    assert_eq!(w.unmap_replace(1, AT, AT2, m.handle), GNTST_okay);
    assert_eq!(w.pte(AT), moved);
    assert_eq!(w.pte(AT2), 0);
    assert_eq!(
        w.frame(pte::mfn(moved)),
        moved_frame,
        "its references moved with it"
    );
    assert!(w.tables[1].mapping(&w.two.m.mem, m.handle).is_none());
    assert_eq!(w.flags(0, 10), GTF_permit_access);
    assert_eq!(w.frame(GRANTED), start);
    assert_eq!(w.unmap_replace(1, AT, AT2, m.handle), GNTST_bad_handle);
    w.check();
}

#[test]
fn a_failed_replace_still_consumes_the_stolen_pte() {
    let mut w = World::new();
    let start = w.frame(GRANTED);
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    let victim = pte::mfn(w.pte(AT3));
    let before = w.frame(victim);
    // `host_addr` is not the grant's PTE: refused, and AT3's entry is gone with its references.
    assert_eq!(w.unmap_replace(1, AT2, AT3, m.handle), GNTST_general_error);
    assert_eq!(w.pte(AT3), 0);
    assert_eq!(w.frame(victim).count(), before.count() - 1);
    assert_eq!(w.frame(victim).type_count(), before.type_count() - 1);
    assert_eq!(pte::mfn(w.pte(AT)), GRANTED, "the grant mapping stays");
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    assert_eq!(w.frame(GRANTED), start);
    w.check();
}

/// An active entry keeps Xen's field widths: a 15-bit `start`, a 16-bit `length` (gnt2 review
/// F2: 12 and 13 bits were kept before, so a second reader saw another window).
#[test]
fn active_entries_keep_xens_start_and_length_widths() {
    let mut w = World::new();
    let act = ActiveEntry {
        pin: GNTPIN_HSTR_INC,
        domid: 1,
        mfn: Mfn(GRANTED),
        start: 0x7ff0,
        length: 0xfff0,
        is_sub_page: true,
    };
    w.tables[0].write_active(&mut w.two.m.mem, 10, &act);
    assert_eq!(w.tables[0].read_active(&w.two.m.mem, 10), act);
    // Xen's `start:15` drops the top bit of a 16-bit offset.
    let wide = ActiveEntry {
        start: 0x8010,
        ..act
    };
    w.tables[0].write_active(&mut w.two.m.mem, 10, &wide);
    assert_eq!(w.tables[0].read_active(&w.two.m.mem, 10).start, 0x10);
    w.tables[0].write_active(&mut w.two.m.mem, 10, &ActiveEntry::default());
    w.check();
}

/// A failed nested acquisition clears GTF_writing on the transitive entry whenever no write pin
/// remains, for a read-only copy too (Xen's `fixup_status_for_copy_pin`; gnt2 review F4).
#[test]
fn a_failed_transitive_copy_clears_a_guest_set_writing_bit() {
    let mut w = World::new();
    assert_eq!(w.set_version(0, 2).1, Ok(()));
    assert_eq!(w.set_version(1, 2).1, Ok(()));
    // dom1's ref 25 names dom0's ref 11, which is not granted to dom1.
    w.grant2(1, 25, GTF_transitive, 0, 0, 11);
    w.tables[1].set_status(&mut w.two.m.mem, 25, GTF_writing);
    let op = GnttabCopy {
        source: GnttabCopyPtr {
            u: 25,
            domid: 1,
            offset: 0,
            ..Default::default()
        },
        dest: GnttabCopyPtr {
            u: base(0) + 12,
            domid: DOMID_SELF,
            ..Default::default()
        },
        len: 8,
        flags: GNTCOPY_source_gref,
        ..Default::default()
    };
    assert_eq!(w.copy(0, op), GNTST_general_error);
    assert_eq!(w.status(1, 25), 0);
    w.check();
}

/// Switching a table that never finished its set-up to version 2 is refused before any status
/// frame is touched (gnt2 review F3: its frame slots would read as machine frame 0).
#[test]
fn an_incomplete_table_gets_no_status_frames() {
    let mut w = World::new();
    *w.tables[1] = GrantTable::new();
    let before = w.two.m.mem.read_u64(Maddr(0));
    assert_eq!(w.set_version(1, 2), (1, Err(hypercall_abi::Errno::ENOMEM)));
    assert!(w.tables[1].status_frames().is_empty());
    assert_eq!(w.two.m.mem.read_u64(Maddr(0)), before);
}

#[test]
fn the_maptrack_takes_a_frame_at_the_first_map_and_one_more_each_time_it_is_full() {
    let mut w = World::new();
    let dev_ro = GNTMAP_device_map | GNTMAP_readonly;
    w.grant(0, 10, GTF_permit_access | GTF_readonly, 1, GRANTED);
    w.grant(0, 11, GTF_permit_access | GTF_readonly, 1, GRANTED2);
    // A table that maps nothing holds no maptrack frame.
    assert_eq!(w.tables[1].nr_maptrack_frames(), 0);
    assert_eq!(w.tables[1].frames().len(), 3);
    let before = w.next.get();
    let first = w.map(1, 10, 0, 0, dev_ro);
    assert_eq!((first.status, first.handle), (GNTST_okay, 0));
    assert_eq!(w.tables[1].nr_maptrack_frames(), 1);
    assert_eq!(w.next.get(), before + 1, "one frame from the pool");
    let frame = *w.tables[1].frames().last().unwrap();
    assert_eq!(
        w.frame(frame.0).owner(),
        Owner::Xen,
        "the hypervisor's, never shared"
    );
    // Handles 1..MAPTRACK_PER_FRAME fit the first frame; the next map takes a second one.
    for h in 1..MAPTRACK_PER_FRAME {
        let m = w.map(1, 10 + h % 2, 0, 0, dev_ro);
        assert_eq!((m.status, m.handle), (GNTST_okay, h));
    }
    assert_eq!(w.tables[1].nr_maptrack_frames(), 1);
    let m = w.map(1, 11, 0, 0, dev_ro);
    assert_eq!((m.status, m.handle), (GNTST_okay, MAPTRACK_PER_FRAME));
    assert_eq!(w.tables[1].nr_maptrack_frames(), 2);
    assert_eq!(w.next.get(), before + 2);
    // A freed handle is handed out again, lowest first, and no frame is taken for it.
    assert_eq!(w.unmap(1, 0, GRANTED2 << 12, 5), GNTST_okay);
    assert!(w.tables[1].mapping(&w.two.m.mem, 5).is_none());
    let m = w.map(1, 11, 0, 0, dev_ro);
    assert_eq!((m.status, m.handle), (GNTST_okay, 5));
    assert_eq!(w.next.get(), before + 2);
    let got = w.tables[1].mapping(&w.two.m.mem, 5).unwrap();
    assert_eq!((got.domid, got.gref, got.mfn), (0, 11, Mfn(GRANTED2)));
    // The mapper's death unmaps everything; its frames are the table's, for the arch layer to
    // give back with the others.
    w.as_dom(1, |pt, _, t| release_mappings(pt, t, 1));
    assert_eq!(w.tables[1].mappings(&w.two.m.mem).count(), 0);
    assert_eq!(w.tables[1].frames().len(), 3 + 2);
    w.check();
}

#[test]
fn a_mapper_whose_maptrack_needs_a_frame_from_a_dry_pool_gets_no_space_and_nothing_changes() {
    let mut w = World::new();
    w.grant(0, 10, GTF_permit_access, 1, GRANTED);
    w.next.set(crate::mm::frame_table::testing::SMALL_FRAMES);
    let refs = w.frame(GRANTED).count();
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_no_space, "Xen: get_maptrack_handle failed");
    assert_eq!(w.tables[1].nr_maptrack_frames(), 0);
    assert_eq!(w.frame(GRANTED).count(), refs, "no reference taken");
    assert_eq!(
        w.flags(0, 10) & (GTF_reading | GTF_writing),
        0,
        "not pinned"
    );
    assert!(w.tables[0].active_entries(&w.two.m.mem).next().is_none());
    // With a frame in the pool again, the same map works.
    w.next
        .set(crate::mm::frame_table::testing::SMALL_FRAMES - 1);
    let m = w.map(1, 10, 0, AT, HOST);
    assert_eq!(m.status, GNTST_okay);
    assert_eq!(w.unmap(1, AT, 0, m.handle), GNTST_okay);
    w.check();
}
