//! Host tests of the frame table's rules that succeed: seeding from the domain builder, the
//! references each kind of entry takes, validation and devalidation, pins and base pointers,
//! flushes, counters, foreign and I/O mappings, teardown. Refusals are in `negative_tests.rs`.
//!
//! One file (about 800 lines) on purpose: the success cases share one seeded-dom0 fixture and read
//! as one walk through the frame table's rules; the refusals are apart.

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::*;

use super::pte::{self, ACCESSED, DIRTY, GLOBAL, PCD, PRESENT, PWT, RW, USER};
use super::testing::*;
use super::{Owner, PageType};
use crate::domain::build::{self, BuildParams, DomainKind, PtLevel};
use crate::mm::frame_alloc::BootFrameAllocator;
use crate::mm::{FakeMemory, MachineMemory, MachineMemoryMut, Maddr, Mfn};

const DOM1: u32 = 1;
const SELF_ID: u32 = DOMID_SELF as u32;

/// Domain 1's frames: L4, L3, L2, L1, then data.
fn d1(k: u64) -> u64 {
    base(1) + k
}

fn d0(k: u64) -> u64 {
    base(0) + k
}

// ---------------------------------------------------------------------------------------------
// Seeding.

#[test]
fn dom0_from_the_builder_validates_with_xens_start_of_day_counts() {
    let w = World::dom0();
    let l4 = w.frame(w.dom.vcpu().l4);
    // PGC_allocated + read-only mapping + pin + guest_table, as `mark_pv_pt_pages_rdonly` sets.
    assert_eq!((l4.count(), l4.type_count()), (4, 2));
    assert!(l4.pinned() && l4.validated());
    for (mfn, level) in w.built.page_table_frames() {
        let f = w.frame(mfn);
        assert_eq!(f.page_type(), PageType::of_level(level));
        if level != PtLevel::L4 {
            // allocation + read-only mapping + the parent's entry.
            assert_eq!((f.count(), f.type_count()), (3, 1), "{level} {mfn:?}");
            assert!(!f.pinned());
        }
    }
    // An ordinary page: allocation + its writable mapping.
    let data = w.frame(w.mfn_of(w.scratch_va(0)));
    assert_eq!(
        (data.count(), data.page_type(), data.type_count()),
        (2, PageType::Writable, 1)
    );
    let si = w.frame(w.dom.shared_info);
    assert_eq!(
        (si.owner(), si.count(), si.type_count()),
        (Owner::Domain(0), 1, 1)
    );
    // The first MiB is I/O memory, the M2P the hypervisor's.
    assert_eq!(w.frame(Mfn(0x9f)).owner(), Owner::Io);
    assert_eq!(w.frame(WORLD_M2P).owner(), Owner::Xen);
    assert_eq!(
        w.dom.perf().ptes_validated,
        1024 + w.built.layout.nr_pt_frames - 1
    );
}

#[test]
fn validation_leaves_the_builders_tables_byte_for_byte() {
    // Build once more by hand, snapshot the tables, then seed.
    let mut mem = FakeMemory::new(0, (WORLD_FRAMES * 4096) as usize);
    let regions = [crate::multiboot::MemoryRegion {
        base: Maddr(0),
        len: WORLD_FRAMES * 4096,
        kind: crate::multiboot::MemoryKind::Usable,
    }];
    let mut frames = BootFrameAllocator::new(regions, &[Maddr(0x100000)..Maddr(0x110000)]).unwrap();
    let image = crate::domain::build::tests::Elf::good().bytes();
    let params = BuildParams {
        image: &image,
        initrd: &[],
        cmdline: "",
        nr_pages: DOM0_PAGES,
        kind: DomainKind::Dom0,
        hypervisor_l4_slots: HV_SLOTS,
        shared_info: WORLD_SHARED_INFO,
    };
    let built = build::build(&mut mem, &mut frames, &params, |_, _| {}).unwrap();
    let snapshot: Vec<Vec<u8>> = built
        .page_table_frames()
        .map(|(m, _)| mem.read(m.maddr(), 4096).unwrap().to_vec())
        .collect();
    let mut mm = new_mm(WORLD_FRAMES as usize, WORLD_M2P.maddr());
    let mut dom = fresh_domain(0, true, WORLD_SHARED_INFO);
    crate::domain::build::seed_domain(&mut mm, &mut mem, &mut dom, &built).unwrap();
    for ((m, level), before) in built.page_table_frames().zip(snapshot) {
        assert_eq!(
            mem.read(m.maddr(), 4096).unwrap(),
            &before[..],
            "{level} {m:?}"
        );
    }
    assert_eq!(dom.vcpu().l4, built.l4);
}

#[test]
fn the_two_domain_world_is_consistent() {
    let t = Two::new();
    for d in 0..2 {
        let l4 = t.frame(base(d));
        assert_eq!((l4.count(), l4.type_count()), (4, 2));
        assert_eq!(t.frame(base(d) + 3).page_type(), PageType::L1);
        assert_eq!(t.frame(base(d) + 10).page_type(), PageType::Writable);
    }
}

// ---------------------------------------------------------------------------------------------
// References taken by entries.

#[test]
fn a_read_only_mapping_takes_a_general_reference_and_a_writable_one_a_type_reference() {
    let mut t = Two::new();
    let x = d1(10);
    // Map x a second time, read-only, at L1 slot 40 (VA 0x28000).
    let slot = Two::slot(d1(3), 40);
    assert_eq!(t.mmu(1, &[(slot, (x << 12) | PRESENT)], SELF_ID), (0, 1));
    assert_eq!((t.frame(x).count(), t.frame(x).type_count()), (3, 1));
    // Now writable: one more type reference; the old read-only entry's reference goes.
    assert_eq!(
        t.mmu(1, &[(slot, (x << 12) | PRESENT | RW)], SELF_ID),
        (0, 1)
    );
    assert_eq!((t.frame(x).count(), t.frame(x).type_count()), (3, 2));
    // Unmapped: back to the start.
    assert_eq!(t.mmu(1, &[(slot, 0)], SELF_ID), (0, 1));
    assert_eq!((t.frame(x).count(), t.frame(x).type_count()), (2, 1));
    t.check();
}

#[test]
fn xen_adds_user_and_guest_kernel_to_kernel_mappings_and_global_to_user_mappings() {
    let mut t = Two::new();
    let slot = Two::slot(d1(3), 40);
    t.mmu(1, &[(slot, (d1(10) << 12) | PRESENT | RW)], SELF_ID);
    assert_eq!(
        t.entry(d1(3), 40),
        (d1(10) << 12) | PRESENT | RW | USER | pte::GUEST_KERNEL
    );
    t.mmu(1, &[(slot, (d1(10) << 12) | PRESENT | USER)], SELF_ID);
    assert_eq!(t.entry(d1(3), 40), (d1(10) << 12) | PRESENT | USER | GLOBAL);
}

/// The general count of frame `mfn` in `t`.
fn general_count(t: &Two, mfn: u64) -> u32 {
    t.mm().frames.get(Mfn(mfn)).unwrap().count()
}

#[test]
fn a_batch_holds_one_reference_on_the_table_it_writes_and_drops_it_whatever_ends_the_batch() {
    let mut t = Two::new();
    let (l1, l2) = (d1(3), d1(2));
    let counts = |t: &Two| (general_count(t, l1), general_count(t, l2));
    let before = counts(&t);
    let flags = DIRTY | GLOBAL;
    // Three updates of one table: one get and one put of it in all (Xen: three of each).
    let ops = t.doms[1].vcpu().perf.ref_ops;
    let reqs = [10, 11, 12].map(|i| (Two::slot(l1, i), t.entry(l1, i) | flags));
    assert_eq!(t.mmu(1, &reqs, SELF_ID), (0, 3));
    assert_eq!(t.doms[1].vcpu().perf.ref_ops - ops, 2);
    assert_eq!(counts(&t), before, "the reference is dropped at the end");
    t.check();
    // L1, L2, L1: each change of table drops the last one's and takes the next one's.
    let ops = t.doms[1].vcpu().perf.ref_ops;
    let reqs = [
        (Two::slot(l1, 13), t.entry(l1, 13) | flags),
        (Two::slot(l2, 5), 0),
        (Two::slot(l1, 14), t.entry(l1, 14) | flags),
    ];
    assert_eq!(t.mmu(1, &reqs, SELF_ID), (0, 3));
    assert_eq!(t.doms[1].vcpu().perf.ref_ops - ops, 6);
    assert_eq!(counts(&t), before);
    for i in 10..15 {
        assert_eq!(t.entry(l1, i) & flags, flags, "entry {i} written");
    }
    t.check();
    // A refusal ends the batch: the reference held for the updates before it is dropped too.
    let reqs = [
        (Two::slot(l1, 15), t.entry(l1, 15) | flags),
        (Two::slot(l1, 16), t.entry(l1, 16) | pte::PSE),
        (Two::slot(l1, 17), t.entry(l1, 17) | flags),
    ];
    assert_eq!(t.mmu(1, &reqs, SELF_ID), (Errno::EINVAL.neg(), 1));
    assert_eq!(counts(&t), before);
    assert_eq!(t.entry(l1, 17) & DIRTY, 0, "nothing after the refusal");
    t.check();
}

#[test]
fn whitelisted_flag_changes_take_the_fast_path_without_reference_changes() {
    let mut t = Two::new();
    let slot = Two::slot(d1(3), 10);
    let old = t.entry(d1(3), 10);
    let ops = t.doms[1].vcpu().perf.ref_ops;
    let new = old | DIRTY | GLOBAL | pte::NX | (1 << 60);
    assert_eq!(t.mmu(1, &[(slot, new)], SELF_ID), (0, 1));
    // Two general references for the page-lock of the L1 (get and put), nothing else.
    assert_eq!(t.doms[1].vcpu().perf.ref_ops - ops, 2);
    assert_eq!(t.entry(d1(3), 10), new);
    t.check();
}

#[test]
fn preserve_ad_keeps_the_accessed_and_dirty_bits() {
    let mut t = Two::new();
    let slot = Two::slot(d1(3), 10);
    let old = t.entry(d1(3), 10) | ACCESSED | DIRTY;
    t.m.mem.write_u64(Maddr(slot), old).unwrap();
    let new = (d1(11) << 12) | PRESENT | RW | USER;
    let rc = t.mmu(1, &[(slot | MMU_PT_UPDATE_PRESERVE_AD, new)], SELF_ID);
    assert_eq!(rc, (0, 1));
    assert_eq!(t.entry(d1(3), 10) & (ACCESSED | DIRTY), ACCESSED | DIRTY);
    t.check();
}

// ---------------------------------------------------------------------------------------------
// Validation and devalidation.

#[test]
fn pinning_validates_a_table_and_unpinning_releases_what_it_maps() {
    let mut t = Two::new();
    let x = d1(20);
    // Unmap x (it was mapped writable), then pin it as an L1 and fill it through mmu_update.
    assert_eq!(t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID).0, 0);
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, x, 0)], SELF_ID), 0);
    let f = t.frame(x);
    assert_eq!(
        (f.page_type(), f.type_count(), f.count()),
        (PageType::L1, 1, 2)
    );
    assert!(f.pinned() && f.validated());
    let y = d1(21);
    assert_eq!(
        t.mmu(1, &[(Two::slot(x, 0), (y << 12) | PRESENT | RW)], SELF_ID),
        (0, 1)
    );
    assert_eq!(t.frame(y).type_count(), 2);
    t.check();
    assert_eq!(t.ext(1, &[(MMUEXT_UNPIN_TABLE, x, 0)], SELF_ID), 0);
    let f = t.frame(x);
    assert_eq!((f.type_count(), f.count(), f.validated()), (0, 1, false));
    assert_eq!(t.frame(y).type_count(), 1, "devalidation dropped x's entry");
    // x keeps its (unvalidated) L1 type until it is used as something else.
    assert_eq!(f.page_type(), PageType::L1);
    t.check();
}

#[test]
fn a_frame_changes_type_only_when_its_type_count_is_zero_and_then_flushes() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    t.doms[1].vcpu_mut().flush.take();
    // Writable (count 0 now) -> L1: a type change, and stale writable TLB entries must go.
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, x, 0)], SELF_ID), 0);
    assert!(t.doms[1].vcpu().flush.local_flush);
    // Pinned as L1, it cannot become an L2.
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L2_TABLE, x, 0)], SELF_ID), -22);
    t.ext(1, &[(MMUEXT_UNPIN_TABLE, x, 0)], SELF_ID);
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L2_TABLE, x, 0)], SELF_ID), 0);
    assert_eq!(t.frame(x).page_type(), PageType::L2);
    t.check();
}

#[test]
fn hooking_a_table_into_an_upper_level_validates_it_and_unhooking_cascades() {
    let mut t = Two::new();
    // Build a second branch: L3 slot 1 -> L2 y, y slot 0 -> L1 x, x maps data page z.
    let (x, y, z) = (d1(20), d1(21), d1(22));
    let unmap: Vec<_> = [20, 21].iter().map(|&k| (Two::slot(d1(3), k), 0)).collect();
    assert_eq!(t.mmu(1, &unmap, SELF_ID), (0, 2));
    // The tables are written while still plain pages (writable type, count 0: Xen writes them).
    t.m.mem
        .write_u64(Maddr(Two::slot(x, 0)), (z << 12) | DATA)
        .unwrap();
    t.m.mem
        .write_u64(Maddr(Two::slot(y, 0)), (x << 12) | TABLE_FLAGS)
        .unwrap();
    t.doms[1].vcpu_mut().flush.take();
    let rc = t.mmu(
        1,
        &[(Two::slot(d1(1), 1), (y << 12) | TABLE_FLAGS)],
        SELF_ID,
    );
    assert_eq!(rc, (0, 1));
    assert_eq!(t.frame(y).page_type(), PageType::L2);
    assert_eq!(t.frame(x).page_type(), PageType::L1);
    assert_eq!(t.frame(z).type_count(), 2);
    // The L3 is in use (loaded through the L4): one flush after the batch.
    assert!(t.doms[1].vcpu().flush.local_flush);
    t.check();
    // The guest sees z through the new branch at VA 1 GiB.
    let va = 1 << 30;
    let at = crate::guest_access::translate(&t.m.mem, t.doms[1].vcpu().l4, va, true).unwrap();
    assert_eq!(at, Mfn(z).maddr());
    // Unhook: y, then x, are devalidated, and z loses the mapping's type reference.
    assert_eq!(t.mmu(1, &[(Two::slot(d1(1), 1), 0)], SELF_ID), (0, 1));
    assert_eq!(
        (t.frame(y).validated(), t.frame(x).validated()),
        (false, false)
    );
    assert_eq!(t.frame(z).type_count(), 1);
    t.check();
}

#[test]
fn l2_updates_of_a_merely_pinned_table_need_no_flush() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L2_TABLE, x, 0)], SELF_ID), 0);
    t.doms[1].vcpu_mut().flush.take();
    // x is an L2 hooked up nowhere: pointing its slot 5 at the domain's L1 changes no TLB.
    let rc = t.mmu(
        1,
        &[(Two::slot(x, 5), (d1(3) << 12) | TABLE_FLAGS)],
        SELF_ID,
    );
    assert_eq!(rc, (0, 1));
    assert!(t.doms[1].vcpu().flush.is_empty());
    t.check();
}

#[test]
fn a_batch_of_upper_level_updates_flushes_once() {
    let mut t = Two::new();
    t.doms[1].vcpu_mut().flush.take();
    let before = t.doms[1].vcpu().perf.tlb_flushes;
    // Re-point L3 slots 1..4 at the domain's own L2 (several entries may map one table).
    let reqs: Vec<_> = (1..5)
        .map(|i| (Two::slot(d1(1), i), (d1(2) << 12) | TABLE_FLAGS))
        .collect();
    assert_eq!(t.mmu(1, &reqs, SELF_ID), (0, 4));
    assert_eq!(t.frame(d1(2)).type_count(), 5);
    assert_eq!(t.doms[1].vcpu().perf.tlb_flushes - before, 1);
    t.check();
}

/// `Machine::mm_preemptible` hands out the memory `Machine::mm` does: the batch loops compiled
/// for the machine's memory type (`mmu_update`'s) see what everything else sees.
#[test]
fn mm_preemptible_hands_out_the_memory_mm_does() {
    use crate::ctx::Machine;
    fn same<M: Machine>(m: &mut M) {
        let a = m.mm().unwrap().1 as *mut dyn MachineMemoryMut as *mut u8;
        let b = m.mm_preemptible().unwrap().1 as *mut M::Mem as *mut u8;
        assert_eq!(a, b);
    }
    let t = Two::new();
    let mut m = t.m;
    same(&mut m);
    same(&mut crate::cpu_fake::FakeArch::new(m));
}

/// What a vCPU's L4-slot memo rests on (`mm::SlotMemo`): `l4_changes` moves on
/// whenever a guest entry of a validated L4 may change (an L4 entry rewritten, an L4
/// validated), and not on the usual calls (L1 updates).
#[test]
fn l4_changes_moves_on_an_l4_entry_or_a_new_l4_and_on_nothing_else() {
    let mut t = Two::new();
    let changes = |t: &Two| t.m.mm.as_ref().unwrap().l4_changes();
    let c0 = changes(&t);
    let data = (d1(10) << 12) | DATA;
    assert_eq!(t.mmu(1, &[(Two::slot(d1(3), 40), data)], SELF_ID), (0, 1));
    assert_eq!(changes(&t), c0, "an L1 update");
    // An L2 and an L3 entry rewritten: still no L4 entry.
    let l2e = t.entry(d1(2), 0);
    assert_eq!(t.mmu(1, &[(Two::slot(d1(2), 0), l2e)], SELF_ID), (0, 1));
    assert_eq!(changes(&t), c0, "an L2 update");
    // The domain's L4 maps itself read-only in slot 300: an L4 entry.
    let l4 = d1(0);
    let e = (l4 << 12) | PRESENT | USER;
    assert_eq!(t.mmu(1, &[(Two::slot(l4, 300), e)], SELF_ID), (0, 1));
    let c1 = changes(&t);
    assert_ne!(c1, c0, "an L4 entry rewritten");
    // A refused L4 update (a hypervisor slot) changes nothing, but may count: only a missed
    // change would be wrong.
    assert_eq!(t.mmu(1, &[(Two::slot(l4, 256), 0)], SELF_ID).0, -22);
    let c2 = changes(&t);
    // A new L4, pinned (validated).
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    assert_eq!(changes(&t), c2, "an L1 entry cleared");
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L4_TABLE, x, 0)], SELF_ID), 0);
    assert_ne!(changes(&t), c2, "an L4 validated");
    t.check();
}

#[test]
fn an_l4_may_map_itself_read_only_without_a_reference() {
    let mut t = Two::new();
    let l4 = d1(0);
    let before = t.frame(l4);
    let rc = t.mmu(
        1,
        &[(Two::slot(l4, 300), (l4 << 12) | PRESENT | USER)],
        SELF_ID,
    );
    assert_eq!(rc, (0, 1));
    assert_eq!(t.frame(l4).count(), before.count());
    assert_eq!(t.frame(l4).type_count(), before.type_count());
    t.check();
    // Unpinning and unloading it later still balances (the self-map is skipped on the way out).
    assert_eq!(t.mmu(1, &[(Two::slot(l4, 300), 0)], SELF_ID), (0, 1));
    t.check();
}

#[test]
fn validating_an_l4_installs_the_hypervisor_slots() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    // Garbage where Xen's slots go: validation overwrites it.
    for i in 256..272 {
        t.m.mem
            .write_u64(Maddr(Two::slot(x, i)), 0xdead_0067)
            .unwrap();
    }
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L4_TABLE, x, 0)], SELF_ID), 0);
    for i in 256..272 {
        assert_eq!(t.entry(x, i), HV_SLOTS[i as usize - 256]);
    }
    t.check();
}

#[test]
fn descriptor_pages_are_checked_fixed_up_and_never_writable() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    // A ring-0 code segment: accepted with DPL 3.
    t.m.mem
        .write_u64(Maddr(Two::slot(x, 1)), 0x00af_9a00_0000_ffff)
        .unwrap();
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    let dom = &mut t.doms[1];
    let vcpu = dom.vcpu_mut();
    let mut pt = super::Pt {
        mm,
        mem,
        perf: &mut vcpu.perf,
        flush: &mut vcpu.flush,
        caller: crate::domain::DomainInfo {
            id: 1,
            privileged: false,
        },
    };
    assert!(pt
        .get_page_and_type(Mfn(x), Owner::Domain(1), PageType::SegDesc)
        .is_ok());
    assert_eq!(pt.entry(Mfn(x), 1), 0x00af_fa00_0000_ffff);
    // In use as descriptors: mapping it writable is refused.
    let rc = t.mmu(1, &[(Two::slot(d1(3), 40), (x << 12) | DATA)], SELF_ID);
    assert_eq!(rc, (-16, 0));
}

/// A page-table write that does not land (`UPDATE_ENTRY` failing: here a memory that refuses
/// it) is -EBUSY for an L1 or L2 entry and -EFAULT for an L3 or L4 one, as on Xen, and leaves
/// the entry and every count as they were: the new entry's references are dropped again, the
/// old entry's kept. Entries with references changing, on the fast path (flags only), cleared,
/// an L4's read-only self-map (a linear entry, which takes no reference) and a second entry to its
/// L3.
#[test]
fn a_page_table_write_that_does_not_land_is_ebusy_and_changes_no_count() {
    /// The test's memory, refusing every write to one address.
    struct Refusing<'m> {
        mem: &'m mut dyn MachineMemoryMut,
        at: Maddr,
    }
    impl MachineMemory for Refusing<'_> {
        fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
            self.mem.read(addr, len)
        }
    }
    impl MachineMemoryMut for Refusing<'_> {
        fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
            (addr != self.at).then_some(())?;
            self.mem.write(addr, data)
        }
    }
    let mut t = Two::new();
    let caller = crate::domain::DomainInfo {
        id: 1,
        privileged: false,
    };
    // Each table: where the entry is, its type and frame, the errno of a write that fails.
    let l1 = (Two::slot(d1(3), 40), PageType::L1, d1(3), Errno::EBUSY);
    let l2 = (Two::slot(d1(2), 5), PageType::L2, d1(2), Errno::EBUSY);
    let l3 = (Two::slot(d1(1), 7), PageType::L3, d1(1), Errno::EFAULT);
    let l4 = (Two::slot(d1(0), 300), PageType::L4, d1(0), Errno::EFAULT);
    let cases = [
        (l1, (d1(10) << 12) | DATA),
        (l1, t.entry(d1(3), 40) ^ ACCESSED),
        (l1, 0),
        (l2, (d1(3) << 12) | TABLE_FLAGS),
        (l2, t.entry(d1(2), 5) ^ ACCESSED),
        (l3, (d1(2) << 12) | TABLE_FLAGS),
        (l4, (d1(0) << 12) | PRESENT | USER),
        (l4, (d1(1) << 12) | TABLE_FLAGS),
    ];
    for ((at, ty, table, errno), new) in cases {
        let frames: Vec<_> = (0..32).map(|i| t.frame(d1(i))).collect();
        let old = t.m.mem.read_u64(Maddr(at)).unwrap();
        let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
        let vcpu = t.doms[1].vcpu_mut();
        let mut refusing = Refusing { mem, at: Maddr(at) };
        let mut pt: super::Pt<'_, '_> = super::Pt {
            mm,
            mem: &mut refusing,
            perf: &mut vcpu.perf,
            flush: &mut vcpu.flush,
            caller,
        };
        let rc = if ty == PageType::L1 {
            pt.mod_l1_entry(Maddr(at), new, false, caller, Owner::Domain(1))
        } else {
            pt.mod_upper_entry(Maddr(at), new, ty, Mfn(table), false, caller)
        };
        assert_eq!(rc, Err(errno), "{at:#x} <- {new:#x}");
        assert_eq!(t.m.mem.read_u64(Maddr(at)).unwrap(), old);
        let after: Vec<_> = (0..32).map(|i| t.frame(d1(i))).collect();
        assert_eq!(after, frames, "{at:#x} <- {new:#x}: counts changed");
        t.check();
    }
}

// ---------------------------------------------------------------------------------------------
// Base pointers and pins.

#[test]
fn a_new_base_pointer_takes_the_new_l4_and_releases_the_old_one() {
    let mut t = Two::new();
    let x = d1(20);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    // x: an L4 sharing the domain's L3.
    t.m.mem
        .write_u64(Maddr(Two::slot(x, 0)), (d1(1) << 12) | TABLE_FLAGS)
        .unwrap();
    t.doms[1].vcpu_mut().flush.take();
    assert_eq!(t.ext(1, &[(MMUEXT_NEW_BASEPTR, x, 0)], SELF_ID), 0);
    assert_eq!(t.doms[1].vcpu().l4, Mfn(x));
    // CR3 switched at once (`write_ptbase`), before the old table was released.
    assert_eq!(t.m.cr3, Some(Mfn(x)));
    assert_eq!(t.doms[1].vcpu().flush.new_cr3, None);
    let (old, new) = (t.frame(d1(0)), t.frame(x));
    assert_eq!(
        (old.type_count(), new.type_count()),
        (1, 1),
        "old keeps its pin"
    );
    assert_eq!(t.frame(d1(1)).type_count(), 2, "the L3 is shared");
    t.check();
    // Unpinning the old L4 now tears it down; the L3 stays, through x.
    assert_eq!(t.ext(1, &[(MMUEXT_UNPIN_TABLE, d1(0), 0)], SELF_ID), 0);
    assert!(!t.frame(d1(0)).validated());
    assert_eq!(t.frame(d1(1)).type_count(), 1);
    t.check();
}

#[test]
fn the_user_base_pointer_holds_a_reference_until_replaced_or_cleared() {
    let mut t = Two::new();
    assert_eq!(t.ext(1, &[(MMUEXT_NEW_USER_BASEPTR, d1(0), 0)], SELF_ID), 0);
    assert_eq!(t.doms[1].vcpu().user_l4, Some(Mfn(d1(0))));
    assert_eq!(t.frame(d1(0)).type_count(), 3);
    t.check();
    // Setting it again is a no-op; 0 clears it.
    assert_eq!(t.ext(1, &[(MMUEXT_NEW_USER_BASEPTR, d1(0), 0)], SELF_ID), 0);
    assert_eq!(t.frame(d1(0)).type_count(), 3);
    assert_eq!(t.ext(1, &[(MMUEXT_NEW_USER_BASEPTR, 0, 0)], SELF_ID), 0);
    assert_eq!(t.doms[1].vcpu().user_l4, None);
    assert_eq!(t.frame(d1(0)).type_count(), 2);
    t.check();
}

// ---------------------------------------------------------------------------------------------
// Flushes and counters.

#[test]
fn update_va_mapping_records_the_flush_its_flags_ask_for() {
    let mut t = Two::new();
    let va = page_va(10);
    let pte = t.entry(d1(3), 10);
    let cases = [
        (UVMF_NONE, false, false),
        (UVMF_TLB_FLUSH | UVMF_LOCAL, true, false),
        (UVMF_TLB_FLUSH | UVMF_ALL, true, false),
        (UVMF_INVLPG | UVMF_LOCAL, false, true),
        (UVMF_INVLPG | UVMF_ALL, false, true),
        (3, false, false),
    ];
    for (flags, full, one) in cases {
        t.doms[1].vcpu_mut().flush.take();
        assert_eq!(t.uvm(1, va, pte, flags, None), 0, "flags {flags:#x}");
        let f = t.doms[1].vcpu_mut().flush.take();
        assert_eq!(f.local_flush, full, "flags {flags:#x}");
        assert_eq!(f.invlpg.contains(&va), one, "flags {flags:#x}");
    }
    // A vCPU mask in guest memory (page 12): bit 0 set flushes, clear does not.
    let mask_va = page_va(12);
    t.m.mem.write_u64(Mfn(d1(12)).maddr(), 1).unwrap();
    assert_eq!(t.uvm(1, va, pte, mask_va | UVMF_INVLPG, None), 0);
    assert!(t.doms[1].vcpu_mut().flush.take().invlpg.contains(&va));
    t.m.mem.write_u64(Mfn(d1(12)).maddr(), 0).unwrap();
    assert_eq!(t.uvm(1, va, pte, mask_va | UVMF_TLB_FLUSH, None), 0);
    assert!(t.doms[1].vcpu_mut().flush.take().is_empty());
}

#[test]
fn mmuext_flush_operations_record_their_flushes() {
    let mut t = Two::new();
    let mask_va = page_va(12);
    t.m.mem.write_u64(Mfn(d1(12)).maddr(), 1).unwrap();
    for (cmd, arg1, arg2, full, one) in [
        (MMUEXT_TLB_FLUSH_LOCAL, 0, 0, true, None),
        (MMUEXT_TLB_FLUSH_ALL, 0, 0, true, None),
        (MMUEXT_TLB_FLUSH_MULTI, 0, mask_va, true, None),
        (MMUEXT_INVLPG_LOCAL, 0x5000, 0, false, Some(0x5000)),
        (MMUEXT_INVLPG_ALL, 0x6000, 0, false, Some(0x6000)),
        (MMUEXT_INVLPG_MULTI, 0x7000, mask_va, false, Some(0x7000)),
        // Non-canonical addresses are ignored.
        (MMUEXT_INVLPG_LOCAL, 1 << 47, 0, false, None),
    ] {
        t.doms[1].vcpu_mut().flush.take();
        assert_eq!(t.ext(1, &[(cmd, arg1, arg2)], SELF_ID), 0, "cmd {cmd}");
        let f = t.doms[1].vcpu_mut().flush.take();
        assert_eq!(f.local_flush, full, "cmd {cmd}");
        assert_eq!(f.invlpg.first().copied(), one, "cmd {cmd}");
    }
    // More single invalidations than the request holds become one full flush.
    let ops: Vec<_> = (0..20)
        .map(|i| (MMUEXT_INVLPG_LOCAL, i * 4096, 0))
        .collect();
    assert_eq!(t.ext(1, &ops, SELF_ID), 0);
    let f = t.doms[1].vcpu_mut().flush.take();
    assert!(f.local_flush && f.invlpg.is_empty());
    // dom0 may flush caches.
    assert_eq!(t.ext(0, &[(MMUEXT_FLUSH_CACHE, 0, 0)], SELF_ID), 0);
    assert!(t.doms[0].vcpu_mut().flush.take().cache_flush);
    assert_eq!(t.ext(0, &[(MMUEXT_FLUSH_CACHE_GLOBAL, 0, 0)], SELF_ID), 0);
    assert!(t.doms[0].vcpu_mut().flush.take().cache_flush);
}

#[test]
fn perf_counters_count_hypercalls_validations_flushes_and_references() {
    let mut t = Two::new();
    let p0 = t.doms[1].vcpu().perf;
    let slot = Two::slot(d1(3), 40);
    let rc = t.call(
        1,
        __HYPERVISOR_update_va_mapping,
        [page_va(40), (d1(10) << 12) | DATA, UVMF_TLB_FLUSH, 0, 0],
    );
    assert_eq!(rc, 0);
    let p = t.doms[1].vcpu().perf;
    assert_eq!(p.hypercalls - p0.hypercalls, 1);
    assert_eq!(p.ptes_validated - p0.ptes_validated, 1);
    assert_eq!(p.tlb_flushes - p0.tlb_flushes, 1);
    // The new mapping's general and type references (the L1 the entry is in is checked, not
    // referenced: see `do_update_va_mapping`).
    assert_eq!(p.ref_ops - p0.ref_ops, 2);
    assert_eq!(t.mmu(1, &[(slot, 0)], SELF_ID), (0, 1));
    assert_eq!(t.doms[1].vcpu().perf.page_updates - p.page_updates, 1);
    // A plain write to a data page counts as a writable update.
    let w0 = t.doms[1].vcpu().perf.writable_mmu_updates;
    assert_eq!(t.mmu(1, &[(d1(10) << 12, 7)], SELF_ID), (0, 1));
    assert_eq!(t.doms[1].vcpu().perf.writable_mmu_updates - w0, 1);
}

// ---------------------------------------------------------------------------------------------
// Other page operations.

#[test]
fn target_pages_of_another_type_are_written_plainly_once_their_type_count_is_zero() {
    let mut t = Two::new();
    let x = d1(20);
    // Unmapped data page (writable type, count 0): mmu_update writes it as a plain page.
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    assert_eq!(t.mmu(1, &[(Two::slot(x, 3), 0x1234)], SELF_ID), (0, 1));
    assert_eq!(t.entry(x, 3), 0x1234);
    // Once an unvalidated L1 (pinned then unpinned) it is still just a page.
    t.m.mem.write_u64(Maddr(Two::slot(x, 3)), 0).unwrap();
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, x, 0)], SELF_ID), 0);
    t.ext(1, &[(MMUEXT_UNPIN_TABLE, x, 0)], SELF_ID);
    assert_eq!(t.mmu(1, &[(Two::slot(x, 4), 0x99)], SELF_ID), (0, 1));
    assert_eq!(t.frame(x).page_type(), PageType::Writable);
    t.check();
}

#[test]
fn clear_page_and_copy_page_work_on_writable_pages() {
    let mut t = Two::new();
    let (x, y) = (d1(10), d1(11));
    t.m.mem.write_u64(Maddr(Two::slot(y, 7)), 0x77).unwrap();
    t.m.mem.write_u64(Maddr(Two::slot(x, 9)), 0x99).unwrap();
    assert_eq!(t.ext(1, &[(MMUEXT_COPY_PAGE, x, y)], SELF_ID), 0);
    assert_eq!((t.entry(x, 7), t.entry(x, 9)), (0x77, 0));
    assert_eq!(t.ext(1, &[(MMUEXT_CLEAR_PAGE, y, 0)], SELF_ID), 0);
    assert_eq!(t.entry(y, 7), 0);
    // Both may be done to an L1's frame only through validation: refused.
    assert_eq!(t.ext(1, &[(MMUEXT_CLEAR_PAGE, d1(3), 0)], SELF_ID), -22);
    assert_eq!(t.ext(1, &[(MMUEXT_COPY_PAGE, d1(3), y)], SELF_ID), -22);
    // The source may be a table: it is only read.
    assert_eq!(t.ext(1, &[(MMUEXT_COPY_PAGE, x, d1(3))], SELF_ID), 0);
    t.check();
}

#[test]
fn set_ldt_records_the_table_as_xen_checks_it() {
    let mut t = Two::new();
    assert_eq!(t.ext(1, &[(MMUEXT_SET_LDT, 0x40_0000, 16)], SELF_ID), 0);
    assert_eq!(
        (t.doms[1].vcpu().ldt_base, t.doms[1].vcpu().ldt_ents),
        (0x40_0000, 16)
    );
    // No entries: the base is ignored.
    assert_eq!(t.ext(1, &[(MMUEXT_SET_LDT, 0x1234, 0)], SELF_ID), 0);
    assert_eq!(
        (t.doms[1].vcpu().ldt_base, t.doms[1].vcpu().ldt_ents),
        (0, 0)
    );
}

#[test]
fn machphys_update_sets_the_m2p_entry_of_an_own_frame() {
    let mut t = Two::new();
    let x = d1(10);
    assert_eq!(
        t.mmu(1, &[((x << 12) | MMU_MACHPHYS_UPDATE, 0x4242)], SELF_ID),
        (0, 1)
    );
    let at = Maddr(t.mm().cfg.m2p.0 + x * 8);
    assert_eq!(t.m.mem.read_u64(at), Some(0x4242));
    // The shared_info page is the domain's too.
    let si = t.doms[1].shared_info.0;
    assert_eq!(
        t.mmu(1, &[((si << 12) | MMU_MACHPHYS_UPDATE, 1)], SELF_ID),
        (0, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Privileged operations.

#[test]
fn dom0_maps_another_domains_frame_through_foreigndom() {
    let mut t = Two::new();
    let y = d1(10);
    let slot = Two::slot(d0(3), 40);
    assert_eq!(t.mmu(0, &[(slot, (y << 12) | DATA)], DOM1), (0, 1));
    assert_eq!((t.frame(y).count(), t.frame(y).type_count()), (3, 2));
    t.check();
    // The same through update_va_mapping_otherdomain.
    let rc = t.uvm(0, page_va(41), (d1(11) << 12) | PRESENT, 0, Some(1));
    assert_eq!(rc, 0);
    assert_eq!(t.frame(d1(11)).count(), 3);
    t.check();
    // dom1's frames stay dom1's: it can still use y writable itself.
    assert_eq!(t.frame(y).owner(), Owner::Domain(1));
}

#[test]
fn dom0_edits_another_domains_tables_through_the_upper_half_of_foreigndom() {
    let mut t = Two::new();
    // pt_dom = 1 + 1: dom1's L1, mapping one of dom1's own frames (pg_owner 1).
    let foreigndom = (2 << 16) | DOM1;
    let rc = t.mmu(
        0,
        &[(Two::slot(d1(3), 40), (d1(10) << 12) | DATA)],
        foreigndom,
    );
    assert_eq!(rc, (0, 1));
    assert_eq!(t.frame(d1(10)).type_count(), 2);
    t.check();
}

#[test]
fn dom0_maps_io_memory_uncachable_without_reference_counting() {
    let mut t = Two::new();
    let slot = Two::slot(d0(3), 40);
    // Beyond RAM: write-back becomes UC (PCD|PWT flipped on).
    let mmio = 0xfef00; // just past the MSI window, which is withheld
    assert_eq!(t.mmu(0, &[(slot, (mmio << 12) | DATA)], SELF_ID), (0, 1));
    assert_eq!(t.entry(d0(3), 40) & (PCD | PWT), PCD | PWT);
    // An I/O frame inside RAM (frame 2): no reference is taken.
    let before = t.frame(2);
    assert_eq!(t.mmu(0, &[(slot, (2 << 12) | DATA | PWT)], SELF_ID), (0, 1));
    assert_eq!(t.entry(d0(3), 40) & (PCD | PWT), PCD | PWT, "WT becomes UC");
    assert_eq!(t.frame(2), before);
    // Through DOMID_IO as well.
    assert_eq!(
        t.mmu(0, &[(slot, (3 << 12) | DATA)], DOMID_IO as u32),
        (0, 1)
    );
    // Explicitly uncachable is left alone.
    assert_eq!(
        t.mmu(0, &[(slot, (mmio << 12) | DATA | PCD)], SELF_ID),
        (0, 1)
    );
    assert_eq!(t.entry(d0(3), 40) & (PCD | PWT), PCD);
    t.check();
}

#[test]
fn dom0_may_choose_cache_attributes_for_its_own_ram() {
    let mut t = Two::new();
    let slot = Two::slot(d0(3), 40);
    let rc = t.mmu(
        0,
        &[(slot, (d0(10) << 12) | DATA | pte::PAT | PCD)],
        SELF_ID,
    );
    assert_eq!(rc, (0, 1));
    t.check();
}

// ---------------------------------------------------------------------------------------------
// Continuations and teardown.

#[test]
fn a_guest_setting_the_preemption_bit_gets_xens_continuation_semantics() {
    let mut t = Two::new();
    // A null list with exactly the marker as count returns foreigndom.
    let rc = t.ctx(1, |ctx| {
        crate::mm::mmu::do_mmu_update(
            ctx,
            crate::mm::mmu::Batch::Guest(crate::guest_access::GuestPtr::new(0)),
            1 << 31,
            crate::guest_access::GuestPtr::new(0),
            0x1234,
        )
    });
    assert_eq!(rc, Ok(0x1234));
    // With a list: the marker is dropped and *pdone is read back as the starting count.
    let list = page_va(12);
    let done = page_va(13);
    let req = MmuUpdate {
        ptr: d1(10) << 12,
        val: 5,
    };
    let mut g = crate::guest_access::PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    crate::guest_access::copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(list), &req)
        .unwrap();
    crate::guest_access::copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(done), &40u32)
        .unwrap();
    let rc = t.call(
        1,
        __HYPERVISOR_mmu_update,
        [list, (1 << 31) | 1, done, DOMID_SELF.into(), 0],
    );
    assert_eq!(rc, 0);
    let g = crate::guest_access::PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    assert_eq!(
        crate::guest_access::copy_from_guest::<u32>(&g, crate::guest_access::GuestPtr::new(done))
            .unwrap(),
        41
    );
    let rc = t.ctx(1, |ctx| {
        crate::mm::mmu::do_mmuext_op(
            ctx,
            crate::mm::mmu::Batch::Guest(crate::guest_access::GuestPtr::new(0)),
            1 << 31,
            crate::guest_access::GuestPtr::new(0),
            0xffff_fff0,
        )
    });
    // `(int)foreigndom`.
    assert_eq!(rc, Ok(-16));
}

#[test]
fn relinquishing_every_domain_returns_every_count_to_zero() {
    let mut t = Two::new();
    // Give it some state first: a foreign mapping, a pin, a user base pointer.
    t.mmu(0, &[(Two::slot(d0(3), 40), (d1(10) << 12) | DATA)], DOM1);
    t.mmu(1, &[(Two::slot(d1(3), 20), 0)], SELF_ID);
    assert_eq!(t.ext(1, &[(MMUEXT_PIN_L1_TABLE, d1(20), 0)], SELF_ID), 0);
    assert_eq!(t.ext(1, &[(MMUEXT_NEW_USER_BASEPTR, d1(0), 0)], SELF_ID), 0);
    t.check();
    // dom1 goes first: the frame dom0 maps survives, still dom1's.
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[1]), 1);
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[0]), 0);
    for (mfn, f) in t.mm().frames.iter() {
        match mfn.0 {
            0..4 => assert_eq!((f.count(), f.type_count()), (1, 1), "I/O {mfn:?}"),
            4..6 => assert_eq!((f.owner(), f.count()), (Owner::Xen, 0)),
            _ => assert_eq!(f.without_given(), super::FrameInfo::FREE, "{mfn:?}"),
        }
    }
}

/// Domain 1 installs a GDT of its frames 20 and 21 (taken out of its writable mappings first)
/// and an LDT: what a guest kernel does before it reboots.
fn install_gdt_and_ldt(t: &mut Two) {
    for k in [20, 21] {
        assert_eq!(t.mmu(1, &[(Two::slot(d1(3), k), 0)], SELF_ID), (0, 1));
    }
    let list = page_va(12);
    let mut g = crate::guest_access::PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    crate::guest_access::copy_to_guest(
        &mut g,
        crate::guest_access::GuestPtr::new(list),
        &[d1(20), d1(21)],
    )
    .unwrap();
    assert_eq!(t.call(1, __HYPERVISOR_set_gdt, [list, 1024, 0, 0, 0]), 0);
    assert_eq!(t.ext(1, &[(MMUEXT_SET_LDT, 0x40_0000, 16)], SELF_ID), 0);
    let f = t.frame(d1(20));
    assert_eq!(
        (f.page_type(), f.type_count(), f.count()),
        (PageType::SegDesc, 1, 2)
    );
    t.check();
}

/// Every frame of domain 1 is free again, and the frame table agrees with what is left.
fn domain1_is_gone(t: &Two, others: &[&crate::domain::Domain]) {
    for m in (d1(0)..d1(DOM_FRAMES)).chain([7]) {
        assert_eq!(
            t.frame(m).without_given(),
            super::FrameInfo::FREE,
            "{:?}",
            Mfn(m)
        );
    }
    super::audit::audit(t.mm(), &t.m.mem, others).unwrap();
}

/// `domain_relinquish_resources` drops the GDT frames' references (`pv_destroy_gdt`): without
/// that, a domU that called `set_gdt` kept its whole memory after it died (issue 11, finding 5).
#[test]
fn relinquishing_a_domain_drops_the_references_of_its_gdt() {
    let mut t = Two::new();
    install_gdt_and_ldt(&mut t);
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[1]), 0);
    assert!(t.doms[1].vcpu().gdt_frames.is_empty());
    assert_eq!(
        (t.doms[1].vcpu().ldt_base, t.doms[1].vcpu().ldt_ents),
        (0, 0)
    );
    domain1_is_gone(&t, &[&t.doms[0]]);
}

/// The whole teardown (`domain::lifecycle::teardown`: grants, event channels, memory) of a domain
/// that installed a GDT and an LDT gives every one of its frames back.
#[test]
fn destroying_a_domain_that_installed_a_gdt_frees_every_frame() {
    use crate::domain::set::{DomainEntry, DomainSet, SchedInfo, MAX_PORT_2L};
    let mut t = Two::new();
    install_gdt_and_ldt(&mut t);
    let mut set = Box::new(DomainSet::new());
    for (slot, dom) in t.doms.iter().enumerate() {
        let g = DomainEntry {
            dom: dom.clone(),
            sched: SchedInfo::default(),
            name: heapless::String::new(),
            module: 0,
            copy: None,
            rings: None,
            destroy: true,
            reported: true,
        };
        set.install(slot, g, MAX_PORT_2L);
    }
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    let gone = crate::domain::lifecycle::teardown(&mut set, 1, mm, mem).unwrap();
    assert_eq!(gone.guest.dom.id, 1);
    assert_eq!(gone.still_referenced, 0);
    assert!(set.guest(1).is_none(), "the slot is free");
    let dom0 = set.guest(0).unwrap().dom.clone();
    domain1_is_gone(&t, &[&dom0]);
}

/// `VCPUOP_register_vcpu_info` as dom1: the argument written at its page 12 first.
fn register_vcpu_info(t: &mut Two, mfn: u64, offset: u32) -> i64 {
    use hypercall_abi::vcpu::{VCPUOP_register_vcpu_info, VcpuRegisterVcpuInfo};
    let arg = page_va(12);
    let mut g = crate::guest_access::PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    let info = VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    crate::guest_access::copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(arg), &info)
        .unwrap();
    t.call(
        1,
        __HYPERVISOR_vcpu_op,
        [VCPUOP_register_vcpu_info.into(), 0, arg, 0, 0],
    )
}

/// `map_vcpu_info`: the frame must be the domain's and take a writable type, the structure must
/// fit in it, and it happens once; the frame then holds a general and a writable type reference
/// (the audit counts them) until the domain is torn down, and every per-vCPU field of
/// shared_info's `vcpu_info[0]` lives at the new place, starting with "everything pending".
#[test]
fn register_vcpu_info_moves_vcpu_info_and_holds_its_frame_until_teardown() {
    const EINVAL: i64 = -22;
    let mut t = Two::new();
    let frame = d1(13);
    // Crossing the end of the page; another domain's frame; a frame beyond RAM.
    assert_eq!(register_vcpu_info(&mut t, frame, 4096 - 63), EINVAL);
    assert_eq!(register_vcpu_info(&mut t, base(0) + 13, 0), EINVAL);
    assert_eq!(register_vcpu_info(&mut t, 1 << 40, 0), EINVAL);
    // One of its own page tables (the L4) cannot be made writable.
    let l4 = t.doms[1].vcpu().l4.0;
    assert_eq!(register_vcpu_info(&mut t, l4, 0), EINVAL);
    assert_eq!(t.doms[1].vcpu().vcpu_info, None);
    t.check();

    // Linux's shape: in a per-CPU page at some offset; the old contents come along.
    let mask_at = Maddr(t.doms[1].shared_info.maddr().0 + 1);
    t.m.mem.write(mask_at, &[1]).unwrap();
    let before = t.frame(frame);
    assert_eq!(register_vcpu_info(&mut t, frame, 0x40), 0);
    assert_eq!(t.doms[1].vcpu().vcpu_info, Some((Mfn(frame), 0x40)));
    let f = t.frame(frame);
    assert_eq!(
        (f.page_type(), f.type_count(), f.count()),
        (
            PageType::Writable,
            before.type_count() + 1,
            before.count() + 1
        )
    );
    t.check();
    let new = (frame << 12) + 0x40;
    let byte = |t: &Two, at: u64| t.m.mem.read(Maddr(at), 1).unwrap()[0];
    assert_eq!(byte(&t, new), 1, "upcall pending, to force a scan");
    assert_eq!(byte(&t, new + 1), 1, "the mask came along");
    assert_eq!(
        t.m.mem.read_u64(Maddr(new + 8)),
        Some(u64::MAX),
        "every selector"
    );
    // The per-vCPU fields follow it; the legacy slot is left alone.
    crate::shared_info::set_upcall_mask(&mut t.m.mem, &t.doms[1], false);
    assert_eq!(byte(&t, new + 1), 0);
    assert_eq!(byte(&t, mask_at.0), 1);
    assert!(crate::shared_info::upcall_pending(&t.m.mem, &t.doms[1]));
    // Once only.
    assert_eq!(register_vcpu_info(&mut t, d1(14), 0), EINVAL);
    assert_eq!(t.doms[1].vcpu().vcpu_info, Some((Mfn(frame), 0x40)));

    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[1]), 0);
    assert_eq!(t.doms[1].vcpu().vcpu_info, None);
    domain1_is_gone(&t, &[&t.doms[0]]);
}

/// `EVTCHNOP_init_control` and `EVTCHNOP_expand_array` through the handler (`map_guest_page`):
/// the frame must be the domain's and take a writable type (-EINVAL otherwise, as for a frame
/// beyond RAM), after Xen's vCPU (-ENOENT) and offset (-EINVAL) checks; each accepted frame
/// holds a general and a writable type reference (the audit counts them) until
/// `EVTCHNOP_reset` goes back to 2-level, and a domain torn down with FIFO frames gives every
/// frame back.
#[test]
fn fifo_event_channel_frames_are_checked_held_and_released() {
    use hypercall_abi::event_channel::*;
    const EINVAL: i64 = -22;
    let mut t = Two::new();
    let arg = page_va(12);
    let l4 = t.doms[1].vcpu().l4.0;
    let (block, array) = (d1(13), d1(14));
    let before = (t.frame(block), t.frame(array));
    t.ctx(1, |ctx| {
        let init = |ctx: &mut crate::ctx::Ctx<'_, crate::hypercall::testing::FakeMachine>,
                    gfn: u64,
                    offset: u32,
                    vcpu: u32| {
            let a = EvtchnInitControl {
                control_gfn: gfn,
                offset,
                vcpu,
                ..Default::default()
            };
            crate::guest_access::copy_to_guest(
                &mut ctx.guest(),
                crate::guest_access::GuestPtr::new(arg),
                &a,
            )
            .unwrap();
            let rc = crate::hypercall::testing::call(
                ctx,
                __HYPERVISOR_event_channel_op.into(),
                [EVTCHNOP_init_control.into(), arg, 0, 0, 0],
            );
            let back: EvtchnInitControl = crate::guest_access::copy_from_guest(
                &ctx.guest(),
                crate::guest_access::GuestPtr::new(arg),
            )
            .unwrap();
            (rc, back.link_bits)
        };
        let expand = |ctx: &mut crate::ctx::Ctx<'_, crate::hypercall::testing::FakeMachine>,
                      gfn: u64| {
            crate::guest_access::copy_to_guest(
                &mut ctx.guest(),
                crate::guest_access::GuestPtr::new(arg),
                &EvtchnExpandArray { array_gfn: gfn },
            )
            .unwrap();
            crate::hypercall::testing::call(
                ctx,
                __HYPERVISOR_event_channel_op.into(),
                [EVTCHNOP_expand_array.into(), arg, 0, 0, 0],
            )
        };
        assert_eq!(expand(ctx, array), -95, "EOPNOTSUPP before init_control");
        assert_eq!(init(ctx, block, 0, 1), (-2, 0), "no vCPU 1");
        assert_eq!(init(ctx, block, 4, 0).0, EINVAL, "unaligned");
        assert_eq!(init(ctx, block, 4096 - 64, 0).0, EINVAL, "crosses the page");
        assert_eq!(init(ctx, 1 << 40, 0, 0).0, EINVAL, "beyond RAM");
        assert_eq!(init(ctx, base(0) + 13, 0, 0).0, EINVAL, "dom0's frame");
        assert_eq!(init(ctx, l4, 0, 0).0, EINVAL, "its own L4");
        assert!(ctx.events.fifo().is_none() && ctx.dom.evtchn_frames.is_empty());
        assert_eq!(init(ctx, block, 0x40, 0), (0, 17), "link_bits written back");
        assert!(ctx.events.fifo().is_some());
        assert_eq!(init(ctx, block, 0x40, 0).0, EINVAL, "twice");
        assert_eq!(expand(ctx, l4), EINVAL, "a page table as event array");
        assert_eq!(expand(ctx, array), 0);
        assert_eq!(ctx.dom.evtchn_frames.len(), 2);
    });
    for (m, b) in [(block, before.0), (array, before.1)] {
        let f = t.frame(m);
        assert_eq!(
            (f.page_type(), f.type_count(), f.count()),
            (PageType::Writable, b.type_count() + 1, b.count() + 1)
        );
    }
    t.check();
    // Back to 2-level: the references go.
    t.ctx(1, |ctx| {
        crate::guest_access::copy_to_guest(
            &mut ctx.guest(),
            crate::guest_access::GuestPtr::new(arg),
            &EvtchnReset { dom: DOMID_SELF },
        )
        .unwrap();
        let rc = crate::hypercall::testing::call(
            ctx,
            __HYPERVISOR_event_channel_op.into(),
            [EVTCHNOP_reset.into(), arg, 0, 0, 0],
        );
        assert_eq!(rc, 0);
        assert!(ctx.dom.evtchn_frames.is_empty());
    });
    assert_eq!(t.frame(block).count(), before.0.count());
    t.check();
    // Held again, then torn down with the domain.
    t.ctx(1, |ctx| {
        let a = EvtchnInitControl {
            control_gfn: block,
            ..Default::default()
        };
        crate::guest_access::copy_to_guest(
            &mut ctx.guest(),
            crate::guest_access::GuestPtr::new(arg),
            &a,
        )
        .unwrap();
        let rc = crate::hypercall::testing::call(
            ctx,
            __HYPERVISOR_event_channel_op.into(),
            [EVTCHNOP_init_control.into(), arg, 0, 0, 0],
        );
        assert_eq!(rc, 0);
    });
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[1]), 0);
    domain1_is_gone(&t, &[&t.doms[0]]);
}

/// `get_page_info` is `get_page` plus the entry: the same answer, counts and counters on a frame
/// of the owner, of another owner, a free frame and one beyond the table.
#[test]
fn get_page_info_answers_as_get_page_does() {
    use crate::domain::PerfCounters;
    let data = World::dom0().mfn_of(World::dom0().scratch_va(0));
    let cases = [
        (data, Owner::Domain(0)),
        (data, Owner::Domain(1)),
        (data, Owner::Io),
        (Mfn(WORLD_FRAMES - 1), Owner::Domain(0)),
        (Mfn(WORLD_FRAMES + 5), Owner::Domain(0)),
    ];
    for (mfn, owner) in cases {
        let (mut a, mut b) = (World::dom0(), World::dom0());
        let (mut pa, mut pb) = (PerfCounters::default(), PerfCounters::default());
        let got =
            a.m.mm
                .as_mut()
                .unwrap()
                .frames
                .get_page(mfn, owner, &mut pa);
        let info =
            b.m.mm
                .as_mut()
                .unwrap()
                .frames
                .get_page_info(mfn, owner, &mut pb);
        assert_eq!(got, info.is_some(), "{mfn:?} {owner:?}");
        assert_eq!(pa.ref_ops, pb.ref_ops, "{mfn:?} {owner:?}");
        let (fa, fb) = (
            a.mm().frames.get(mfn).copied(),
            b.mm().frames.get(mfn).copied(),
        );
        assert_eq!(fa, fb, "{mfn:?} {owner:?}");
        if let Some(i) = info {
            assert_eq!(Some(i), fb);
        }
    }
}

#[test]
fn a_global_entry_marks_its_tables_owner_for_good_and_other_entries_do_not() {
    let mut t = Two::new();
    let mm = t.m.mm.as_mut().expect("the machine has a frame table");
    // An id no table of this machine belongs to.
    assert!(!mm.may_hold_global(7));
    mm.note_l1e(7, PRESENT | RW | USER | pte::GUEST_KERNEL);
    assert!(!mm.may_hold_global(7), "a kernel mapping is never global");
    mm.note_l1e(7, PRESENT | USER | GLOBAL);
    assert!(mm.may_hold_global(7));
    mm.note_l1e(7, 0);
    assert!(mm.may_hold_global(7), "the mark stays");
    assert!(!mm.may_hold_global(8), "one bit per domain");
    assert!(mm.may_hold_global(0x8000), "beyond the table: assumed");
    // The hand-built tables map data as true user mappings, which validation made global.
    assert!(mm.may_hold_global(1));
    t.check();
}
