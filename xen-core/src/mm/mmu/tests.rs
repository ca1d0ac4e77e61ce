//! The conformance cases of `mmu_update`, `mmuext_op` and `update_va_mapping`, replayed on the
//! host: dom0 built by the domain builder and seeded into a frame table, each case done the way
//! `guest-kernel/src/suites/conformance/` does it, each answer the one Debian's Xen 4.17 gives.

use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::xen::*;

use crate::mm::frame_table::testing::{World, SELF};
use crate::mm::frame_table::{pte, Owner, PageType};
use crate::mm::{MachineMemoryMut, Mfn};

const EPERM: i64 = -1;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const EBUSY: i64 = -16;
const ESRCH: i64 = -3;
const ENOSYS: i64 = -38;
const UNMAPPED: u64 = 0x0000_7000_0000_0000;
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
const NO_SUCH_DOMAIN: u64 = 77;
const BAD_CMD: u32 = 9999;
/// The conformance guest's data PTE flags: present, writable, accessed, dirty (no user bit: Xen
/// adds it).
const DATA_FLAGS: u64 = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;

/// One scratch page as the guest sees it: its address, its frame and its L1 entry.
#[derive(Clone, Copy)]
struct Scratch {
    va: u64,
    mfn: u64,
    pte_maddr: u64,
    pte: u64,
}

/// The guest's buffers: request lists at `LIST`, `*done` at `DONE`.
struct Guest {
    w: World,
    list: u64,
    done: u64,
}

fn data_pte(mfn: u64, old: u64) -> u64 {
    (mfn << 12) | DATA_FLAGS | (old & pte::NX)
}

fn entry(mfn: u64, flags: u64) -> u64 {
    (mfn << 12) | flags
}

fn normal(ptr: u64, val: u64) -> MmuUpdate {
    MmuUpdate { ptr, val }
}

fn ext(cmd: u32, arg1: u64, arg2: u64) -> MmuextOp {
    MmuextOp {
        cmd,
        arg1,
        arg2,
        ..Default::default()
    }
}

impl Guest {
    fn new() -> Guest {
        let w = World::dom0();
        let list = w.scratch_va(16);
        let done = w.scratch_va(17);
        Guest { w, list, done }
    }

    fn scratch(&self, i: u64) -> Scratch {
        let va = self.w.scratch_va(i);
        let (at, pte, _) = self.w.l1_slot(va);
        Scratch {
            va,
            mfn: self.w.mfn_of(va).0,
            pte_maddr: at.0,
            pte,
        }
    }

    /// `mmu_update(reqs, count, &done, foreigndom)` with the list in guest memory.
    fn mmu_update(&mut self, reqs: &[MmuUpdate], foreigndom: u64) -> (i64, u32) {
        for (i, r) in reqs.iter().enumerate() {
            self.w.put(self.list + 16 * i as u64, r);
        }
        self.w.put(self.done, &0xdeadu32);
        let rc = self.w.call(
            __HYPERVISOR_mmu_update,
            [self.list, reqs.len() as u64, self.done, foreigndom, 0],
        );
        let done = self.w.get::<u32>(self.done);
        self.w.check();
        (rc, done)
    }

    fn mmuext_op(&mut self, ops: &[MmuextOp], foreigndom: u64) -> (i64, u32) {
        for (i, o) in ops.iter().enumerate() {
            self.w.put(self.list + 24 * i as u64, o);
        }
        self.w.put(self.done, &0xdeadu32);
        let rc = self.w.call(
            __HYPERVISOR_mmuext_op,
            [self.list, ops.len() as u64, self.done, foreigndom, 0],
        );
        let done = self.w.get::<u32>(self.done);
        self.w.check();
        (rc, done)
    }

    fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> i64 {
        let rc = self
            .w
            .call(__HYPERVISOR_update_va_mapping, [va, val, flags, 0, 0]);
        self.w.check();
        rc
    }

    fn flush_local(&mut self) -> (i64, u32) {
        self.mmuext_op(&[ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], SELF)
    }

    /// Puts scratch page `s` back on its own frame, read-write.
    fn restore(&mut self, s: Scratch) {
        let (rc, _) = self.mmu_update(&[normal(s.pte_maddr, data_pte(s.mfn, s.pte))], SELF);
        assert_eq!(rc, 0, "restoring a scratch mapping failed");
    }

    fn l4(&self) -> u64 {
        self.w.dom.vcpu().l4.0
    }

    /// The table of `level` (4..=2) on the way to `va`, as the guest walks its tables.
    fn table(&self, va: u64, level: u32) -> u64 {
        let mut t = self.l4();
        for l in (level..4).rev() {
            let i = (va >> (12 + 9 * l)) & 511;
            let at = crate::mm::Maddr((t << 12) + 8 * i);
            t = pte::mfn(crate::mm::MachineMemoryMut::read_u64(&self.w.m.mem, at).unwrap());
        }
        t
    }

    /// Scratch page `s` as a would-be table: zeroed except for `entries`, mapped read-only.
    fn table_page(&mut self, s: Scratch, entries: &[u64]) {
        for i in 0..512 {
            let v = entries.get(i as usize).copied().unwrap_or(0);
            self.w.poke(s.va + 8 * i, v);
        }
        let ro = entry(s.mfn, pte::PRESENT | pte::ACCESSED);
        assert_eq!(self.mmu_update(&[normal(s.pte_maddr, ro)], SELF), (0, 1));
    }

    fn ext1(&mut self, cmd: u32, arg1: u64) -> i64 {
        self.mmuext_op(&[ext(cmd, arg1, 0)], SELF).0
    }
}

#[test]
fn mmu_update_conformance_cases() {
    let mut g = Guest::new();
    let (a, b, c) = (g.scratch(0), g.scratch(1), g.scratch(2));
    g.w.poke(a.va, 0xa1);
    g.w.poke(b.va, 0xb2);
    g.w.poke(c.va, 0xc3);

    // mmu_update.batch_of_2 = rc=0 done=2 a_reads=0xb2 b_reads=0xa1
    let swap = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
    ];
    assert_eq!(g.mmu_update(&swap, SELF), (0, 2));
    assert_eq!((g.w.peek(a.va), g.w.peek(b.va)), (0xb2, 0xa1));
    g.restore(a);
    g.restore(b);

    // mmu_update.count_0 = rc=0 done=0
    assert_eq!(g.mmu_update(&[], SELF), (0, 0));

    // mmu_update.map_own_l4_readonly = rc=0 done=1 reads_l4=1
    let l4 = g.l4();
    let rc = g.mmu_update(
        &[normal(a.pte_maddr, entry(l4, pte::PRESENT | pte::ACCESSED))],
        SELF,
    );
    assert_eq!(rc, (0, 1));
    let pt_base = g.w.built.layout.page_tables.start;
    assert_eq!(g.w.peek(a.va), g.w.peek(pt_base), "reads_l4");
    g.restore(a);

    // mmu_update.map_own_l4_writable = rc=-16 done=0 a_intact=1
    let rc = g.mmu_update(&[normal(a.pte_maddr, entry(l4, DATA_FLAGS))], SELF);
    assert_eq!(rc, (EBUSY, 0));
    assert_eq!(g.w.peek(a.va), 0xa1, "a_intact");

    // mmu_update.map_own_l1_writable = rc=-16 done=0
    let (_, _, l1) = g.w.l1_slot(a.va);
    let rc = g.mmu_update(&[normal(b.pte_maddr, entry(l1.0, DATA_FLAGS))], SELF);
    assert_eq!(rc, (EBUSY, 0));

    // mmu_update.target_writable_page = rc=0 done=1 c_reads=0x12345000
    let rc = g.mmu_update(&[normal(c.mfn << 12, 0x1234_5000)], SELF);
    assert_eq!(rc, (0, 1));
    assert_eq!(g.w.peek(c.va), 0x1234_5000);
    g.w.poke(c.va, 0xc3);

    // mmu_update.batch_third_invalid = rc=-16 done=2 a_reads=0xb2 b_reads=0xa1
    let batch = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
        normal(a.pte_maddr, entry(l4, DATA_FLAGS)),
        normal(b.pte_maddr, data_pte(b.mfn, b.pte)),
    ];
    assert_eq!(g.mmu_update(&batch, SELF), (EBUSY, 2));
    assert_eq!((g.w.peek(a.va), g.w.peek(b.va)), (0xb2, 0xa1));
    g.restore(a);
    g.restore(b);

    // mmu_update.global_bit = rc=0 done=1
    let rc = g.mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte) | pte::GLOBAL)],
        SELF,
    );
    assert_eq!(rc, (0, 1));
    g.restore(a);

    // mmu_update.cmd_no_translate = rc=0 done=1
    let rc = g.mmu_update(&[normal(a.pte_maddr | 3, data_pte(a.mfn, a.pte))], SELF);
    assert_eq!(rc, (0, 1));
    g.restore(a);

    // mmu_update.machphys_own_frame = rc=0 done=1 m2p_kept=1
    let m2p = |g: &Guest| {
        let at = crate::mm::Maddr(g.w.mm().cfg.m2p.0 + c.mfn * 8);
        crate::mm::MachineMemoryMut::read_u64(&g.w.m.mem, at).unwrap()
    };
    let pfn = m2p(&g);
    let rc = g.mmu_update(&[normal((c.mfn << 12) | MMU_MACHPHYS_UPDATE, pfn)], SELF);
    assert_eq!(rc, (0, 1));
    assert_eq!(m2p(&g), pfn, "m2p_kept");

    // mmu_update.bad_pointer = rc=-14 done=0
    g.w.put(g.done, &0u32);
    let rc =
        g.w.call(__HYPERVISOR_mmu_update, [UNMAPPED, 1, g.done, SELF, 0]);
    assert_eq!((rc, g.w.get::<u32>(g.done)), (EFAULT, 0));

    // mmu_update.foreigndom_no_such_domain = rc=-3 done=0
    let rc = g.mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte))],
        NO_SUCH_DOMAIN,
    );
    assert_eq!(rc, (ESRCH, 0));
    g.restore(a);
    g.w.check();
}

#[test]
fn mmuext_op_conformance_cases() {
    let mut g = Guest::new();
    let (a, c) = (g.scratch(0), g.scratch(2));
    let l4 = g.l4();

    // mmuext_op.tlb_flush_local = rc=0 done=1
    assert_eq!(g.flush_local(), (0, 1));
    // mmuext_op.invlpg_local = rc=0 done=1
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_INVLPG_LOCAL, a.va, 0)], SELF),
        (0, 1)
    );
    // mmuext_op.count_0 = rc=0 done=0
    assert_eq!(g.mmuext_op(&[], SELF), (0, 0));
    // mmuext_op.unknown_cmd = rc=-38 done=0
    assert_eq!(g.mmuext_op(&[ext(BAD_CMD, 0, 0)], SELF), (ENOSYS, 0));
    // mmuext_op.batch_third_invalid = rc=-38 done=2
    let batch = [
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ext(MMUEXT_INVLPG_LOCAL, a.va, 0),
        ext(BAD_CMD, 0, 0),
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    assert_eq!(g.mmuext_op(&batch, SELF), (ENOSYS, 2));
    // mmuext_op.pin_l1_writable_page = rc=-22 done=0
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_PIN_L1_TABLE, c.mfn, 0)], SELF),
        (EINVAL, 0)
    );
    // mmuext_op.unpin_not_pinned = rc=-22 done=0
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_UNPIN_TABLE, c.mfn, 0)], SELF),
        (EINVAL, 0)
    );
    // mmuext_op.pin_l4_already_pinned = rc=-22 done=0
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_PIN_L4_TABLE, l4, 0)], SELF),
        (EINVAL, 0)
    );
    // mmuext_op.new_baseptr_data_page = rc=-22 done=0
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, c.mfn, 0)], SELF),
        (EINVAL, 0)
    );
    // mmuext_op.new_baseptr_current_l4 = rc=0 done=1
    assert_eq!(g.mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, l4, 0)], SELF), (0, 1));
    // mmuext_op.bad_pointer = rc=-14 done=0
    g.w.put(g.done, &0u32);
    let rc =
        g.w.call(__HYPERVISOR_mmuext_op, [UNMAPPED, 1, g.done, SELF, 0]);
    assert_eq!((rc, g.w.get::<u32>(g.done)), (EFAULT, 0));
    g.w.check();
}

#[test]
fn update_va_mapping_conformance_cases() {
    let mut g = Guest::new();
    let (a, b) = (g.scratch(0), g.scratch(1));
    g.w.poke(a.va, 0xa1);
    g.w.poke(b.va, 0xb2);

    // update_va_mapping.invlpg = rc=0 (a_reads=0xb2)
    let rc = g.update_va_mapping(a.va, data_pte(b.mfn, a.pte), UVMF_INVLPG | UVMF_LOCAL);
    assert_eq!((rc, g.w.peek(a.va)), (0, 0xb2));
    g.restore(a);

    // update_va_mapping.tlb_flush = rc=0 (a_reads=0xa1)
    let rc = g.update_va_mapping(a.va, data_pte(a.mfn, a.pte), UVMF_TLB_FLUSH | UVMF_LOCAL);
    assert_eq!((rc, g.w.peek(a.va)), (0, 0xa1));

    // update_va_mapping.own_l4_writable = rc=-16 (a_intact=1)
    let l4 = g.l4();
    let rc = g.update_va_mapping(a.va, entry(l4, DATA_FLAGS), UVMF_INVLPG);
    assert_eq!((rc, g.w.peek(a.va)), (EBUSY, 0xa1));

    // update_va_mapping.non_canonical_va = -22 ; hypervisor_va = -22 ; no_l1_table = -22
    for va in [NON_CANONICAL, HYPERVISOR_VIRT_START, UNMAPPED] {
        assert_eq!(
            g.update_va_mapping(va, data_pte(a.mfn, 0), UVMF_INVLPG),
            EINVAL,
            "{va:#x}"
        );
    }

    // update_va_mapping.multi_bad_vcpumask = -14
    let rc = g.update_va_mapping(a.va, data_pte(a.mfn, a.pte), UNMAPPED | UVMF_INVLPG);
    assert_eq!(rc, EFAULT);
    g.restore(a);
    g.w.check();
}

#[test]
fn the_guest_maps_its_shared_info_writable() {
    let mut g = Guest::new();
    let a = g.scratch(0);
    let si = g.w.dom.shared_info;
    assert_eq!(
        g.update_va_mapping(a.va, entry(si.0, DATA_FLAGS), UVMF_INVLPG),
        0
    );
    g.w.poke(a.va + 8, 0x5151);
    let f = g.w.frame(si);
    assert_eq!(f.owner(), Owner::Domain(0));
    assert_eq!(
        (f.page_type(), f.type_count(), f.count()),
        (PageType::Writable, 2, 2)
    );
    // shared_info is writable for good: it can never become a page table.
    assert_eq!(
        g.mmuext_op(&[ext(MMUEXT_PIN_L1_TABLE, si.0, 0)], SELF),
        (EINVAL, 0)
    );
    g.restore(a);
    let f = g.w.frame(si);
    assert_eq!((f.type_count(), f.count()), (1, 1));
    assert_eq!(g.w.peek(a.va), 0, "a is its own frame again");
}

/// The linear page-table cases of `conformance/memory.rs`, with Xen 4.17's answers
/// (`get_lN_linear_pagetable`, `inc_linear_entries`, `inc_linear_uses` in `mm.c`).
#[test]
fn linear_page_table_conformance_cases() {
    let mut g = Guest::new();
    let (t, u) = (g.scratch(4), g.scratch(5));
    let l2 = g.table(t.va, 2);
    let ro = pte::PRESENT | pte::ACCESSED;
    let at = (l2 << 12) + 511 * 8;

    // mmu_update.l2_entry_other_l2_readonly = pin=0 rc=0 done=1 unpin=0 map_writable=-16 undo=0
    g.table_page(t, &[]);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, t.mfn), 0);
    assert_eq!(g.mmu_update(&[normal(at, entry(t.mfn, ro))], SELF), (0, 1));
    let f = g.w.frame(Mfn(t.mfn));
    assert_eq!((f.type_count(), f.linear_pt_count()), (2, -1));
    assert_eq!(g.w.frame(Mfn(l2)).linear_pt_count(), 1);
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    let rc = g.mmu_update(&[normal(t.pte_maddr, data_pte(t.mfn, t.pte))], SELF);
    assert_eq!(rc, (EBUSY, 0), "the linear entry keeps t an L2");
    assert_eq!(g.mmu_update(&[normal(at, 0)], SELF), (0, 1));
    let f = g.w.frame(Mfn(t.mfn));
    assert_eq!(
        (f.type_count(), f.validated(), f.linear_pt_count()),
        (0, false, 0)
    );
    assert_eq!(g.w.frame(Mfn(l2)).linear_pt_count(), 0);
    g.restore(t);

    // mmu_update.l2_entry_other_l2_writable = pin=0 rc=-22 done=0 unpin=0
    g.table_page(t, &[]);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, t.mfn), 0);
    let rc = g.mmu_update(&[normal(at, entry(t.mfn, DATA_FLAGS))], SELF);
    assert_eq!(rc, (EINVAL, 0));
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    g.restore(t);

    // mmu_update.linear_entries_both_ways = pin_with_linear_entry=0 rc=-22 done=0 unpin=0
    g.table_page(t, &[entry(l2, ro)]);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, t.mfn), 0);
    assert_eq!(
        g.mmu_update(&[normal(at, entry(t.mfn, ro))], SELF),
        (EINVAL, 0)
    );
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    g.restore(t);

    // mmu_update.linear_target_gets_linear_entry =
    //   pin_u=0 pin_t=0 rc=-22 done=0 unpin_t=0 after_unpin=0 clear=0 unpin_u=0
    g.table_page(u, &[]);
    g.table_page(t, &[entry(u.mfn, ro)]);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, u.mfn), 0);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, t.mfn), 0);
    let back = normal(u.mfn << 12, entry(l2, ro));
    assert_eq!(g.mmu_update(&[back], SELF), (EINVAL, 0));
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    assert_eq!(g.mmu_update(&[back], SELF), (0, 1));
    assert_eq!(g.mmu_update(&[normal(u.mfn << 12, 0)], SELF), (0, 1));
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, u.mfn), 0);
    g.restore(t);
    g.restore(u);

    // mmu_update.l4_entry_other_l4_readonly = pin=0 rc=0 done=1 unpin=0
    let l4 = g.l4();
    let copy: Vec<u64> = (0..512)
        .map(|i| g.w.peek(g.w.built.layout.page_tables.start + 8 * i))
        .collect();
    g.table_page(t, &copy);
    assert_eq!(g.ext1(MMUEXT_PIN_L4_TABLE, t.mfn), 0);
    let at4 = (l4 << 12) + 300 * 8;
    assert_eq!(g.mmu_update(&[normal(at4, entry(t.mfn, ro))], SELF), (0, 1));
    assert_eq!(g.mmu_update(&[normal(at4, 0)], SELF), (0, 1));
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    g.restore(t);
    g.w.check();
}

/// update_va_mapping.msi_window_frame = rc=-1: Xen withholds the MSI window from dom0
/// (`dom0_setup_permissions`), whatever the arch layer registers.
#[test]
fn the_msi_window_is_not_dom0s() {
    let mut g = Guest::new();
    let b = g.scratch(1);
    let flags = pte::PRESENT | pte::ACCESSED | pte::PCD | pte::PWT;
    assert_eq!(
        g.update_va_mapping(b.va, entry(0xfeef0, flags), UVMF_INVLPG),
        EPERM
    );
    assert_eq!(
        g.update_va_mapping(b.va, entry(0xfef00, flags), UVMF_INVLPG),
        0
    );
    g.restore(b);
    g.w.check();
}

// ---------------------------------------------------------------------------------------------
// The L4 the CPU runs on (issue 11, finding 2): `new_guest_cr3` switches CR3 before it releases
// the old table, so nothing later in the batch or multicall can make the table in CR3 writable.
// `Guest::mmuext_op` and friends run `World::check` after every call, whose live-CR3 check
// fails if the table the CPU runs on is not a validated L4 of the domain with Xen's slots.

/// Scratch page 4 as a copy of the current L4 (mapped read-only, not yet validated).
fn l4_copy(g: &mut Guest) -> Scratch {
    let t = g.scratch(4);
    let copy: Vec<u64> = (0..512)
        .map(|i| g.w.peek(g.w.built.layout.page_tables.start + 8 * i))
        .collect();
    g.table_page(t, &copy);
    t
}

/// Goes back to the boot L4 `l4` (whose frame held something else meanwhile): `copy` (the
/// current L4, a copy of it) is copied over it, it becomes the base pointer again and is
/// pinned again, and `copy` is an ordinary page once more.
fn back_to(g: &mut Guest, l4: u64, copy: Scratch) {
    let ops = [
        ext(MMUEXT_COPY_PAGE, l4, copy.mfn),
        ext(MMUEXT_NEW_BASEPTR, l4, 0),
        ext(MMUEXT_PIN_L4_TABLE, l4, 0),
    ];
    assert_eq!(g.mmuext_op(&ops, SELF), (0, 3));
    assert_eq!(g.w.m.cr3, Some(Mfn(l4)));
    assert!(!g.w.frame(Mfn(copy.mfn)).validated(), "the copy is left");
    g.restore(copy);
    g.w.check();
}

/// mmuext_op.leave_and_clear_old_l4 = rc=0 done=4 back=0,3 (Xen 4.17's answer): unpin the boot L4, leave it for a copy and
/// clear it, in one batch. On Xen the CPU is on the copy by the time the old table is released,
/// so clearing it (it is an ordinary page by then) is allowed and harmless; the fourth op is
/// read through the copy (the cleared table maps nothing).
#[test]
fn a_batch_may_clear_the_l4_it_left_once_the_cpu_runs_on_the_new_one() {
    let mut g = Guest::new();
    let l4 = g.l4();
    let t = l4_copy(&mut g);
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4, 0),
        ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
        ext(MMUEXT_CLEAR_PAGE, l4, 0),
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    // `mmuext_op` checks that the table in CR3 is live after the call.
    assert_eq!(g.mmuext_op(&ops, SELF), (0, 4));
    assert_eq!(g.w.m.cr3, Some(Mfn(t.mfn)), "CR3 switched within the batch");
    let old = g.w.frame(Mfn(l4));
    assert_eq!((old.page_type(), old.type_count()), (PageType::Writable, 0));
    assert_eq!(g.w.m.mem.read_u64(Mfn(l4).maddr()), Some(0), "cleared");
    back_to(&mut g, l4, t);
}

/// mmuext_op.leave_and_copy_over_old_l4 = rc=0 done=3 back=0,3: the same with COPY_PAGE from a page
/// whose "hypervisor slots" the guest chose.
#[test]
fn a_batch_may_overwrite_the_l4_it_left_once_the_cpu_runs_on_the_new_one() {
    let mut g = Guest::new();
    let l4 = g.l4();
    let t = l4_copy(&mut g);
    let c = g.scratch(2);
    for i in 256..272 {
        g.w.poke(c.va + 8 * i, entry(c.mfn, DATA_FLAGS | pte::USER));
    }
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4, 0),
        ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
        ext(MMUEXT_COPY_PAGE, l4, c.mfn),
    ];
    assert_eq!(g.mmuext_op(&ops, SELF), (0, 3));
    assert_eq!(g.w.m.cr3, Some(Mfn(t.mfn)));
    let slot256 = g.w.m.mem.read_u64(crate::mm::Maddr((l4 << 12) + 256 * 8));
    assert_eq!(slot256, Some(entry(c.mfn, DATA_FLAGS | pte::USER)));
    back_to(&mut g, l4, t);
    for i in 256..272 {
        g.w.poke(c.va + 8 * i, 0);
    }
}

/// multicall.leave_l4_then_write_its_xen_slots = rc=0 results=0,0 done=2,16 back=0,3: in a
/// multicall, the first call unpins and leaves the boot L4, the second writes zeros over its
/// hypervisor slots with plain `mmu_update` writes (it has no type left).
#[test]
fn a_multicall_may_write_over_the_l4_it_left_once_the_cpu_runs_on_the_new_one() {
    let mut g = Guest::new();
    let l4 = g.l4();
    let t = l4_copy(&mut g);
    let (ops_va, reqs_va, calls_va, done_va) = (
        g.w.scratch_va(18),
        g.w.scratch_va(19),
        g.w.scratch_va(20),
        g.w.scratch_va(21),
    );
    let ops = [
        ext(MMUEXT_UNPIN_TABLE, l4, 0),
        ext(MMUEXT_NEW_BASEPTR, t.mfn, 0),
    ];
    for (i, o) in ops.iter().enumerate() {
        g.w.put(ops_va + 24 * i as u64, o);
    }
    for k in 0..16u64 {
        let req = normal((l4 << 12) + (256 + k) * 8, 0);
        g.w.put(reqs_va + 16 * k, &req);
    }
    let calls = [
        MulticallEntry {
            op: __HYPERVISOR_mmuext_op.into(),
            result: 0x5a5a,
            args: [ops_va, 2, done_va, SELF, 0, 0],
        },
        MulticallEntry {
            op: __HYPERVISOR_mmu_update.into(),
            result: 0x5a5a,
            args: [reqs_va, 16, done_va + 4, SELF, 0, 0],
        },
    ];
    for (i, c) in calls.iter().enumerate() {
        g.w.put(calls_va + 64 * i as u64, c);
    }
    let rc = g.w.call(__HYPERVISOR_multicall, [calls_va, 2, 0, 0, 0]);
    g.w.check();
    let results: Vec<u64> = (0..2)
        .map(|i| g.w.get::<u64>(calls_va + 64 * i + 8))
        .collect();
    let done = (g.w.get::<u32>(done_va), g.w.get::<u32>(done_va + 4));
    assert_eq!((rc, results, done), (0, vec![0, 0], (2, 16)));
    assert_eq!(g.w.m.cr3, Some(Mfn(t.mfn)));
    let slot256 = g.w.m.mem.read_u64(crate::mm::Maddr((l4 << 12) + 256 * 8));
    assert_eq!(slot256, Some(0));
    back_to(&mut g, l4, t);
}

/// The user L4 is never the table in CR3 during a hypercall (they come from guest kernel mode),
/// so `MMUEXT_NEW_USER_BASEPTR` may release it at once, as Xen does: dropping it and clearing it
/// in one batch is rc=0 done=2.
#[test]
fn the_user_l4_is_released_at_once_since_hypercalls_run_on_the_kernel_l4() {
    let mut g = Guest::new();
    let l4 = g.l4();
    let t = l4_copy(&mut g);
    assert_eq!(g.ext1(MMUEXT_NEW_USER_BASEPTR, t.mfn), 0);
    assert_eq!(g.w.dom.vcpu().user_l4, Some(Mfn(t.mfn)));
    // In user mode the CPU runs on the user table: still a live L4.
    g.w.dom.toggle_guest_mode().unwrap();
    g.w.m.cr3 = Some(g.w.dom.current_l4());
    g.w.check();
    g.w.dom.toggle_guest_mode().unwrap();
    let ops = [
        ext(MMUEXT_NEW_USER_BASEPTR, 0, 0),
        ext(MMUEXT_CLEAR_PAGE, t.mfn, 0),
    ];
    assert_eq!(g.mmuext_op(&ops, SELF), (0, 2));
    assert_eq!(g.w.m.cr3, Some(Mfn(l4)));
    g.restore(t);
    g.w.check();
}

/// What a multicall of long page-table batches left behind: the multicall's result, each entry's
/// result and `*done`, the continuations it took, and its first continuation.
#[derive(Debug, PartialEq)]
struct BatchesInMulticall {
    rc: i64,
    results: Vec<i64>,
    done: Vec<u32>,
    continuations: u64,
    first: Option<crate::ctx::Continuation>,
    first_entry: MulticallEntry,
    first_done: u32,
    /// Where the multicall list, the first batch and the `*done` words were.
    calls: u64,
    updates: u64,
    dones: u64,
}

/// A multicall of [mmu_update(2999 no-op updates), xen_version, mmuext_op(2000 local flushes),
/// mmu_update(1200 updates, the last one bad)], on a machine that wants the CPU back every
/// `every` questions (never with 0).
fn batches_in_a_multicall(every: u32) -> BatchesInMulticall {
    let mut g = Guest::new();
    let s = g.scratch(0);
    let noop = normal(s.pte_maddr, data_pte(s.mfn, s.pte));
    // Three lists and the `*done` words in scratch pages 20.. of the initial region.
    let updates = g.w.scratch_va(20);
    let flushes = g.w.scratch_va(40);
    let calls = g.w.scratch_va(60);
    let dones = g.w.scratch_va(61);
    for i in 0..3000u64 {
        let req = if i == 2999 {
            normal(((g.w.info.max_ram_page + 1) << 12) | MMU_MACHPHYS_UPDATE, 0)
        } else {
            noop
        };
        g.w.put(updates + 16 * i, &req);
    }
    for i in 0..2000u64 {
        g.w.put(flushes + 24 * i, &ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0));
    }
    let entry = |op: u32, args: [u64; 4]| MulticallEntry {
        op: op.into(),
        result: 0xdead,
        args: [args[0], args[1], args[2], args[3], 0x5555, 0x6666],
    };
    let entries = [
        entry(__HYPERVISOR_mmu_update, [updates, 2999, dones, SELF]),
        entry(__HYPERVISOR_xen_version, [0, 0, 0, 0]),
        entry(__HYPERVISOR_mmuext_op, [flushes, 2000, dones + 4, SELF]),
        entry(
            __HYPERVISOR_mmu_update,
            [updates + 16 * 1800, 1200, dones + 8, SELF],
        ),
    ];
    for (i, e) in entries.iter().enumerate() {
        g.w.put(calls + 64 * i as u64, e);
    }
    g.w.m.preempt = crate::hypercall::testing::FakePreempt::every(every);
    let (rc, first) = g.w.call_once(__HYPERVISOR_multicall, [calls, 4, 0, 0, 0]);
    let first_entry: MulticallEntry = g.w.get(calls);
    let first_done: u32 = g.w.get(dones);
    let (rc, continuations) = match first {
        Some(c) => {
            let (rc, n) = g.w.call_to_completion(
                __HYPERVISOR_multicall,
                [c.args[0], c.args[1], 0, 0, 0],
                10_000,
            );
            (rc, n + 1)
        }
        None => (rc, 0),
    };
    g.w.check();
    let results = (0..4)
        .map(|i| g.w.get::<MulticallEntry>(calls + 64 * i).result as i64)
        .collect();
    let done = (0..3).map(|i| g.w.get::<u32>(dones + 4 * i)).collect();
    BatchesInMulticall {
        rc,
        results,
        done,
        continuations,
        first,
        first_entry,
        first_done,
        calls,
        updates,
        dones,
    }
}

/// Batches inside a multicall are preempted like top-level ones (Xen's `do_mmu_update` asks
/// `hypercall_preempt_check()` before every element but the first): the sub-call's continuation
/// rewrites the multicall entry's arguments in guest memory and the multicall continues from
/// that entry (`MCSF_call_preempted` in `do_multicall`). The answers are those of the run that
/// was never preempted.
#[test]
fn batches_inside_a_multicall_are_preempted_with_the_same_answers() {
    let whole = batches_in_a_multicall(0);
    assert_eq!(whole.first, None);
    assert_eq!(whole.rc, 0);
    assert_eq!(whole.results[0], 0);
    assert_eq!(whole.results[2], 0);
    assert_eq!(
        whole.results[3], EINVAL,
        "the last update of the fourth entry is bad"
    );
    assert_eq!(whole.done, vec![2999, 2000, 1199]);

    let preempted = batches_in_a_multicall(37);
    // The 37th question stops the first batch before its element 37; the multicall continues
    // from that same entry, whose list now starts at element 37, with the rest marked
    // `MMU_UPDATE_PREEMPTED` and `*done` = 37 (`hypercall_create_continuation("hihi")`).
    let p = &preempted;
    let first = p.first.expect("the batch inside must be preempted");
    assert_eq!(first, crate::ctx::Continuation::new(&[p.calls, 4]));
    assert_eq!(
        p.first_entry.args,
        [
            p.updates + 37 * 16,
            (2999 - 37) | 1 << 31,
            p.dones,
            SELF,
            0x5555,
            0x6666
        ]
    );
    assert_eq!(
        p.first_entry.result, 0xdead,
        "no result for an unfinished sub-call"
    );
    assert_eq!(p.first_done, 37);
    assert!(preempted.continuations > 100, "{}", preempted.continuations);
    assert_eq!(
        (preempted.rc, &preempted.results, &preempted.done),
        (whole.rc, &whole.results, &whole.done)
    );
}

/// Issues `mmu_update` with the list and `*done` in scratch page `s` (the list at its start,
/// `*done` at offset 0x800, which starts at 0), the rest of the page zero: the call reads its
/// list, and writes `*done`, through one cached translation of that page.
fn mmu_update_in_page(g: &mut Guest, s: Scratch, reqs: &[MmuUpdate]) -> i64 {
    for i in 0..512 {
        g.w.poke(s.va + 8 * i, 0);
    }
    for (i, r) in reqs.iter().enumerate() {
        g.w.put(s.va + 16 * i as u64, r);
    }
    let rc = g.w.call(
        __HYPERVISOR_mmu_update,
        [s.va, reqs.len() as u64, s.va + 0x800, SELF, 0],
    );
    g.w.check();
    rc
}

/// The security case of the translation cache: request 0 makes the list's own page read-only,
/// request 1 makes that page an L1 table (through an L2 entry), and `*done`, in the same page,
/// must then not be written through the writable translation cached when the list was first
/// read (Xen's write faults: its hardware walk sees the read-only mapping; the fault is ignored).
/// A stale translation would be a writable path into a validated page table.
#[test]
fn a_page_made_a_table_mid_batch_is_not_written_through_a_cached_translation() {
    a_page_made_a_table_mid_batch(false);
}

/// The same through the MMU: the list is read through it (its writable translation is then in
/// the TLB, and stays there: request 0 flushes nothing), and request 1's retype asks for a
/// flush, after which `*done` must not go through the TLB.
#[test]
fn a_page_made_a_table_mid_batch_is_not_written_through_a_stale_tlb_entry() {
    a_page_made_a_table_mid_batch(true);
}

fn a_page_made_a_table_mid_batch(mmu: bool) {
    let mut g = Guest::new();
    if mmu {
        g.w.with_mmu();
    }
    let s = g.scratch(6);
    let l2 = g.table(s.va, 2);
    let at = (l2 << 12) + 511 * 8;
    let free = crate::mm::MachineMemoryMut::read_u64(&g.w.m.mem, crate::mm::Maddr(at));
    assert_eq!(free, Some(0), "a free L2 slot");
    let ro = entry(s.mfn, pte::PRESENT | pte::ACCESSED);
    // As L1 entries the list is harmless: the pointers are not present, the values map the
    // page itself read-only. So the page validates as an L1.
    let reqs = [normal(s.pte_maddr, ro), normal(at, ro)];
    assert_eq!(mmu_update_in_page(&mut g, s, &reqs), 0);
    let f = g.w.frame(Mfn(s.mfn));
    assert_eq!((f.page_type(), f.validated()), (PageType::L1, true));
    assert_eq!(
        g.w.peek(s.va + 0x800),
        0,
        "*done (entry 256 of the new L1) was not written"
    );
    if mmu {
        assert_eq!(g.w.mmu_copies(), 2, "the list was read through the MMU");
    }
    // Undo: unhook the L1, then the page is writable again.
    assert_eq!(g.mmu_update(&[normal(at, 0)], SELF), (0, 1));
    g.restore(s);
    g.w.check();
}

/// With an MMU, a short batch reads its list and writes `*done` through it (no walk of the
/// guest's tables at all), and gets what the walk gives; with TLB work owed at entry (here a
/// flush the vCPU still owes), everything is walked.
#[test]
fn short_batches_go_through_the_mmu_unless_tlb_work_is_owed() {
    let mut g = Guest::new();
    g.w.with_mmu();
    let (s, r) = (g.scratch(6), g.scratch(8));
    g.w.poke(r.va, 0);
    let reqs = [
        normal(r.mfn << 12, 0x1111),
        normal((r.mfn << 12) + 8, 0x2222),
    ];
    assert_eq!(g.mmu_update(&reqs, SELF), (0, 2));
    assert_eq!((g.w.peek(r.va), g.w.peek(r.va + 8)), (0x1111, 0x2222));
    assert_eq!(g.w.mmu_copies(), 3, "two requests and *done");
    // A read-only *done: the MMU faults, the walk refuses, Xen ignores it.
    g.w.poke(s.va, 0x5555);
    let ro = entry(s.mfn, pte::PRESENT | pte::ACCESSED);
    assert_eq!(g.mmu_update(&[normal(s.pte_maddr, ro)], SELF), (0, 1));
    g.w.put(g.list, &normal(r.mfn << 12, 0x3333));
    let rc =
        g.w.call(__HYPERVISOR_mmu_update, [g.list, 1, s.va, SELF, 0]);
    assert_eq!((rc, g.w.peek(r.va), g.w.peek(s.va)), (0, 0x3333, 0x5555));
    g.restore(s);
    let copies = g.w.mmu_copies();
    g.w.dom.vcpu_mut().flush.flush_all(&mut Default::default());
    let rc =
        g.w.call(__HYPERVISOR_mmu_update, [g.list, 1, g.done, SELF, 0]);
    assert_eq!(rc, 0);
    assert_eq!(g.w.mmu_copies(), copies, "walked: a flush was owed");
}

/// Request 0 maps the list's page to another frame (no type changes anywhere: the new frame is
/// already writable, the old one stays so): request 1 is read through the new mapping, as
/// Xen's hardware walk reads it, and `*done` is written there.
#[test]
fn a_request_that_remaps_the_list_is_followed_by_the_next_read() {
    let mut g = Guest::new();
    let (s, q, r) = (g.scratch(6), g.scratch(7), g.scratch(8));
    g.w.poke(r.va, 0);
    g.w.poke(r.va + 8, 0);
    let writes_r0 = normal(r.mfn << 12, 0x1111);
    let writes_r8 = normal((r.mfn << 12) + 8, 0x2222);
    // Page q holds a different request 1.
    for i in 0..512 {
        g.w.poke(q.va + 8 * i, 0);
    }
    g.w.put(q.va + 16, &writes_r8);
    let remap = normal(s.pte_maddr, data_pte(q.mfn, s.pte));
    let types = |g: &Guest| (g.w.frame(Mfn(s.mfn)), g.w.frame(Mfn(q.mfn)));
    assert_eq!(mmu_update_in_page(&mut g, s, &[remap, writes_r0]), 0);
    assert_eq!((g.w.peek(r.va), g.w.peek(r.va + 8)), (0, 0x2222));
    assert_eq!(g.w.peek(q.va + 0x800), 2, "*done in the new frame");
    let after = types(&g);
    assert_eq!(
        (after.0.page_type(), after.1.page_type()),
        (PageType::Writable, PageType::Writable),
        "no type changed: only the write to the L1 can have dropped the translation"
    );
    g.restore(s);
    g.w.check();
}

/// Requests are read ahead (`ArrayReader`), but what a request writes into the list itself is
/// what a later request of the batch is read as (Xen copies each request when it gets to it):
/// request 0 is a plain write into the list's own (writable) page over request 1's value.
#[test]
fn a_request_that_rewrites_the_list_is_seen_by_the_next_request() {
    let mut g = Guest::new();
    let (s, r) = (g.scratch(6), g.scratch(8));
    g.w.poke(r.va, 0);
    let rewrite = normal((s.mfn << 12) + 16 + 8, 0x3333);
    let writes_r = normal(r.mfn << 12, 0x1111);
    let far = normal((r.mfn << 12) + 8, 0x4444);
    // Request 2 is rewritten too, and request 19, which the first read ahead did not reach.
    let rewrite_2 = normal((s.mfn << 12) + 2 * 16 + 8, 0x5555);
    let rewrite_19 = normal((s.mfn << 12) + 19 * 16 + 8, 0x6666);
    let mut reqs = vec![rewrite, writes_r, far, rewrite_2, rewrite_19];
    reqs[2] = far;
    // Requests 5..19 write harmless values to r's third word; 19 is rewritten to 0x6666.
    reqs.extend((5..=19).map(|_| normal((r.mfn << 12) + 16, 0x7777)));
    assert_eq!(mmu_update_in_page(&mut g, s, &reqs), 0);
    assert_eq!(
        g.w.peek(r.va),
        0x3333,
        "request 1 as rewritten by request 0"
    );
    // Request 3 rewrote request 2 after it ran: no effect; request 4 rewrote request 19.
    assert_eq!(g.w.peek(r.va + 8), 0x4444);
    assert_eq!(
        g.w.peek(r.va + 16),
        0x6666,
        "request 19 as rewritten by request 4"
    );
    assert_eq!(g.w.peek(s.va + 0x800), 20, "*done");
}

/// Random batches whose requests remap, make read-only, hook as L1 tables and rewrite the
/// pages the list and `*done` live in. The translation cache's oracles (`cfg(test)` in
/// `guest_access`: every hit re-walked, every read-ahead element re-read) and the frame table's
/// audit after each call must hold.
#[test]
fn random_batches_remapping_their_own_list_and_done_never_see_a_stale_translation() {
    random_batches(false);
}

/// The same through the MMU, whose TLB keeps translations until the flushes the calls ask for
/// are done: the audit after each call, and the judgement of every stale TLB entry used (a
/// frame of the caller's, no table for a write: `World::with_mmu`), must hold.
#[test]
fn random_batches_through_the_mmu_use_stale_tlb_entries_only_where_harmless() {
    random_batches(true);
}

fn random_batches(mmu: bool) {
    let mut g = Guest::new();
    if mmu {
        g.w.with_mmu();
    }
    let (s, t, q, r, u) = (
        g.scratch(6),
        g.scratch(7),
        g.scratch(8),
        g.scratch(9),
        g.scratch(10),
    );
    let l2 = g.table(s.va, 2);
    let slots = [(l2 << 12) + 511 * 8, (l2 << 12) + 510 * 8];
    for &a in &slots {
        assert_eq!(
            crate::mm::MachineMemoryMut::read_u64(&g.w.m.mem, crate::mm::Maddr(a)),
            Some(0)
        );
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let frames = [s.mfn, t.mfn, q.mfn, r.mfn, u.mfn];
    let ro = pte::PRESENT | pte::ACCESSED;
    let mut hooked = 0;
    // 20,000 batches in release builds (`cargo test --release`), 4,000 in `make test`'s debug run.
    let rounds = if cfg!(debug_assertions) { 4000 } else { 20000 };
    for round in 0..rounds {
        // Fresh state: nothing hooked, s and t on their own frames, read-write.
        for &a in &slots {
            assert_eq!(g.mmu_update(&[normal(a, 0)], SELF).0, 0);
        }
        g.restore(s);
        g.restore(t);
        for p in [s, t, q, r, u] {
            if rnd(3) == 0 {
                for i in 0..512 {
                    g.w.poke(p.va + 8 * i, 0);
                }
            }
        }
        let count = 1 + rnd(40);
        let off = 16 * rnd(0x400 / 16);
        let done_va = if rnd(2) == 0 {
            s.va + 0x800 + 4 * rnd(0x100)
        } else {
            t.va + 4 * rnd(0x400)
        };
        let mut reqs = Vec::new();
        for _ in 0..count {
            let f = frames[rnd(5) as usize];
            let pte_at = if rnd(2) == 0 {
                s.pte_maddr
            } else {
                t.pte_maddr
            };
            let req = match rnd(6) {
                0 => normal(pte_at, data_pte(f, s.pte)),
                1 => normal(pte_at, entry(f, ro)),
                2 => normal(slots[rnd(2) as usize], entry(f, ro | pte::RW)),
                3 => normal(slots[rnd(2) as usize], 0),
                // A plain write into the list's frame or *done's, over a later request or *done.
                4 => {
                    let page = if rnd(2) == 0 { s.mfn } else { t.mfn };
                    let val = if rnd(2) == 0 {
                        pte_at | MMU_NORMAL_PT_UPDATE
                    } else {
                        data_pte(frames[rnd(5) as usize], 0)
                    };
                    normal((page << 12) + 8 * rnd(512), val)
                }
                _ => normal((f << 12) + 8 * rnd(512), rnd(1 << 20)),
            };
            reqs.push(req);
        }
        for (i, q) in reqs.iter().enumerate() {
            g.w.put(s.va + off + 16 * i as u64, q);
        }
        let rc = g.w.call(
            __HYPERVISOR_mmu_update,
            [s.va + off, count, done_va, SELF, 0],
        );
        g.w.check();
        if rc == 0
            && slots.iter().any(|&a| {
                crate::mm::MachineMemoryMut::read_u64(&g.w.m.mem, crate::mm::Maddr(a))
                    .is_some_and(|e| e != 0)
            })
        {
            hooked += 1;
        }
        let _ = round;
    }
    for &a in &slots {
        assert_eq!(g.mmu_update(&[normal(a, 0)], SELF).0, 0);
    }
    g.restore(s);
    g.restore(t);
    g.w.check();
    eprintln!(
        "review: {} cache hits checked; {hooked} rounds ended with a page hooked as a table; \
         {} copies through the MMU",
        crate::guest_access::CACHE_HITS_CHECKED.load(core::sync::atomic::Ordering::Relaxed),
        g.w.mmu_copies()
    );
}

/// A batch that changes an L4 (an L3, an L2) in use reads the rest of itself walking, not
/// through the MMU: the paging-structure caches may hold the old entry until the flush the
/// change asks for, which comes after the batch. (Found in review: an RO L4 self-map the CPU
/// had cached, replaced by a writable entry mid-batch, passed `mmu_range_ok` on the new entry
/// while the CPU walked the old one into the hypervisor's slots.) A table pinned and hooked in
/// nowhere is no concern of the CPU's: changing it leaves the MMU on.
#[test]
fn a_batch_that_changes_a_table_in_use_reads_the_rest_through_no_stale_tlb() {
    let mut g = Guest::new();
    g.w.with_mmu();
    let read = |g: &Guest, t: u64, i: u64| {
        crate::mm::MachineMemoryMut::read_u64(&g.w.m.mem, crate::mm::Maddr((t << 12) + 8 * i))
            .unwrap()
    };
    let (l4, k) = (g.l4(), 200u64);
    let at = (l4 << 12) + k * 8;
    let ro = pte::PRESENT | pte::ACCESSED;
    // The list's own L4 entry (writable, to an L3) and L2 entry (to an L1), to copy.
    let l4e = read(&g, l4, (g.list >> 39) & 511);
    let l2 = g.table(g.list, 2);
    let l2e = read(&g, l2, (g.list >> 21) & 511);
    // A short batch with `*done`: two requests and `*done` through the MMU when nothing stops it.
    let copies = |g: &mut Guest, reqs: &[MmuUpdate]| {
        let before = g.w.mmu_copies();
        assert_eq!(g.mmu_update(reqs, SELF), (0, reqs.len() as u32));
        g.w.mmu_copies() - before
    };

    // The reported attack: a cached RO self-map replaced by a writable entry to an L3.
    assert_eq!(g.mmu_update(&[normal(at, entry(l4, ro))], SELF), (0, 1));
    let n = copies(&mut g, &[normal(at, l4e), normal(at, 0)]);
    assert_eq!(n, 1, "request 0 alone: request 1 and *done walked");
    // The self-map installed and taken out in one batch.
    let n = copies(&mut g, &[normal(at, entry(l4, ro)), normal(at, 0)]);
    assert_eq!(n, 1);
    // An L2 in use (the list's own) changed: the same.
    let spare = (l2 << 12) + 8 * (((g.list >> 21) & 511) ^ 1);
    let was = read(&g, l2, ((g.list >> 21) & 511) ^ 1);
    let n = copies(&mut g, &[normal(spare, l2e), normal(spare, was)]);
    assert_eq!(n, 1);

    // A pinned L2 hooked in nowhere: all three through the MMU.
    let t = g.scratch(4);
    g.table_page(t, &[]);
    assert_eq!(g.ext1(MMUEXT_PIN_L2_TABLE, t.mfn), 0);
    let n = copies(&mut g, &[normal(t.mfn << 12, l2e), normal(t.mfn << 12, 0)]);
    assert_eq!(n, 3, "no table in use changed: nothing owed");
    assert_eq!(g.ext1(MMUEXT_UNPIN_TABLE, t.mfn), 0);
    g.restore(t);
}

/// An L4 self-map (read-only, as validation allows) would let a copy through the MMU reach the
/// hypervisor's supervisor-only slot-256 tables from a lower-half address; the walk refuses
/// them, so such a range is walked (`guest_access::mmu_range_ok`), with or without the MMU.
#[test]
fn a_linear_l4_entry_never_lets_a_copy_reach_the_hypervisors_slots() {
    for mmu in [false, true] {
        let mut w = World::dom0();
        let l4 = w.dom.current_l4();
        // Stand-in for the hypervisor's slot 256: a supervisor entry to a Xen-owned frame whose
        // page holds something that reads as one valid-looking request.
        let hv = crate::mm::frame_table::testing::WORLD_M2P.0 + 1;
        let slot256 = crate::mm::Maddr(l4.maddr().0 + 256 * 8);
        w.m.mem.write_u64(slot256, (hv << 12) | 3).unwrap();
        if mmu {
            w.with_mmu();
        }
        let k = 200u64;
        let ro = pte::PRESENT | pte::ACCESSED;
        let req: [u64; 2] = [l4.maddr().0 + k * 8, (l4.0 << 12) | ro];
        // Install the linear entry with a normal mmu_update from a scratch page.
        let va = w.scratch_va(6);
        w.put(va, &req);
        let rc = w.call(1, [va, 1, 0, SELF, 0]);
        assert_eq!(rc, 0, "the RO L4 self-map is accepted");
        // The list named at VA(k, k, k, 256): the page L4[256] points to.
        let list = (k << 39) | (k << 30) | (k << 21) | (256 << 12);
        let rc = w.call(1, [list, 1, 0, SELF, 0]);
        assert_eq!(
            rc, -14,
            "mmu {mmu}: the list is in a hypervisor page: -EFAULT"
        );
    }
}

/// The same vCPU rewriting an L4 slot from a list it reads through that slot: the call's
/// translation cache forgets the slot at the write to the L4 (a table it read), so the next call
/// starts from nothing remembered and a list through the new, linear entry gets -EFAULT.
#[test]
fn an_l4_slot_its_own_call_rewrites_is_not_remembered() {
    let mut w = World::dom0();
    let l4 = w.dom.current_l4();
    // Stand-in for the hypervisor's slot 256, as in the test above.
    let hv = crate::mm::frame_table::testing::WORLD_M2P.0 + 1;
    let slot256 = crate::mm::Maddr(l4.maddr().0 + 256 * 8);
    w.m.mem.write_u64(slot256, (hv << 12) | 3).unwrap();
    w.with_mmu();
    let k = 200u64;
    let k_at = l4.maddr().0 + k * 8;
    // `L4[k]` = the entry of the scratch pages' slot: the same L3 through a second slot.
    let list = w.scratch_va(6);
    let e0 =
        w.m.mem
            .read_u64(crate::mm::Maddr(l4.maddr().0 + ((list >> 39) & 511) * 8))
            .unwrap();
    w.put(list, &[k_at, e0]);
    assert_eq!(
        w.call(1, [list, 1, 0, SELF, 0]),
        0,
        "a second slot for the L3"
    );
    let alias = (k << 39) | (list & ((1 << 39) - 1));
    assert_eq!(w.peek(alias), k_at, "the list seen through slot k");
    // A harmless call with its list in slot k, through the MMU: slot k remembered.
    let s7 = w.scratch_va(7);
    let (s7_at, s7_pte, _) = w.l1_slot(s7);
    w.put(list, &[s7_at.0, s7_pte]);
    let copies = w.mmu_copies();
    assert_eq!(w.call(1, [alias, 1, 0, SELF, 0]), 0);
    assert!(w.mmu_copies() > copies, "the list was read through the MMU");
    assert_eq!(w.dom.vcpu().mmu_slot.slot, k + 1, "slot k remembered");
    // From slot k, `L4[k]` becomes a read-only self-map: the call forgets the slot.
    let ro = pte::PRESENT | pte::ACCESSED;
    w.put(list, &[k_at, (l4.0 << 12) | ro]);
    assert_eq!(
        w.call(1, [alias, 1, 0, SELF, 0]),
        0,
        "the RO L4 self-map is accepted"
    );
    assert_eq!(w.dom.vcpu().mmu_slot.slot, 0, "nothing remembered");
    // VA(k, k, k, 256): the page `L4[256]` points to, a hypervisor page.
    let through = (k << 39) | (k << 30) | (k << 21) | (256 << 12);
    assert_eq!(w.call(1, [through, 1, 0, SELF, 0]), -14);
}

/// The L4-slot memo end to end across domains (what `Mm::l4_changes` is for): domU reads a
/// list through slot `k` (remembered), dom0 then rewrites domU's `L4[k]` into a linear (self)
/// entry with a foreign `mmu_update`, which domU's own cache never sees; domU's next list,
/// named through the new entry where it reaches the hypervisor's slot 256, must not be copied
/// through the MMU on the strength of the remembered answer: the count moved, the slot is
/// checked again, -EFAULT.
#[test]
fn an_l4_slot_another_domain_rewrites_between_two_calls_is_checked_again() {
    use crate::mm::frame_table::testing::{base, page_va, Two};
    use crate::mm::{FakeMmu, Maddr};
    let mut t = Two::new();
    let u = 1;
    let b = base(u);
    let l4 = Mfn(b);
    let k = 200u64;
    let k_at = l4.maddr().0 + k * 8;
    let put = |t: &mut Two, page: u64, v: [u64; 2]| {
        for (j, x) in v.iter().enumerate() {
            let at = Maddr(((b + page) << 12) + 8 * j as u64);
            t.m.mem.write_u64(at, *x).unwrap();
        }
    };
    // Stand-in for the hypervisor's slot 256: a supervisor entry to a Xen frame.
    assert_eq!(t.frame(4).owner(), Owner::Xen);
    t.m.mem
        .write_u64(Maddr(l4.maddr().0 + 256 * 8), (4 << 12) | 3)
        .unwrap();
    // domU's `L4[k]` = its `L4[0]`: the same L3 through a second slot.
    let e0 = t.m.mem.read_u64(l4.maddr()).unwrap();
    put(&mut t, 5, [k_at, e0]);
    assert_eq!(t.call(u, 1, [page_va(5), 1, 0, SELF, 0]), 0);
    // From now on the CPU has an MMU, running on domU's table (the way out did the TLB work
    // the call asked for).
    t.m.mem.mmu = Some(FakeMmu::new(l4));
    t.doms[u].vcpu_mut().flush = Default::default();
    // A harmless call (page 6's L1 entry written as it is), its list read through slot k.
    let l1_6 = Maddr(((b + 3) << 12) + 6 * 8);
    let e6 = t.m.mem.read_u64(l1_6).unwrap();
    put(&mut t, 5, [l1_6.0, e6]);
    let alias = (k << 39) | page_va(5);
    assert_eq!(t.call(u, 1, [alias, 1, 0, SELF, 0]), 0);
    let mmu = t.m.mem.mmu.as_ref().unwrap();
    assert!(mmu.copies.get() > 0, "the list was read through the MMU");
    assert_eq!(t.doms[u].vcpu().mmu_slot.slot, k + 1, "slot k remembered");
    // dom0 runs (a switch: its table, the TLB emptied; what either vCPU owed is done) and
    // makes domU's `L4[k]` a read-only self-map.
    let switch = |t: &mut Two, to: Mfn| {
        let mmu = t.m.mem.mmu.as_mut().unwrap();
        mmu.cr3 = to;
        mmu.flush();
        for d in &mut t.doms {
            d.vcpu_mut().flush = Default::default();
        }
    };
    switch(&mut t, Mfn(base(0)));
    let ro = pte::PRESENT | pte::ACCESSED;
    // FOREIGNDOM: pages of domU, and (its upper half, plus one) domU's tables.
    let foreign = (2 << 16) | 1;
    assert_eq!(t.mmu(0, &[(k_at, (l4.0 << 12) | ro)], foreign), (0, 1));
    assert_eq!(
        t.doms[u].vcpu().mmu_slot.slot,
        k + 1,
        "domU's memo untouched"
    );
    // domU again: VA(k, k, k, 256) is the page `L4[256]` points to, a hypervisor page.
    switch(&mut t, l4);
    let through = (k << 39) | (k << 30) | (k << 21) | (256 << 12);
    assert_eq!(t.call(u, 1, [through, 1, 0, SELF, 0]), -14);
}
