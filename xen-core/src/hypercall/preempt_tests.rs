//! Host tests of hypercall preemption (issue 11): long hypercalls stop when the machine says the
//! CPU is wanted elsewhere and continue as Xen's `hypercall_create_continuation` does, with the
//! same final answers. The page-table batches inside a multicall are in `mm/mmu/tests.rs`.

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::version::XENVER_version;
use hypercall_abi::xen::*;

use super::testing::{call, call_once, call_to_completion, setup, with_ctx, FakePreempt, GUEST_VA};
use crate::ctx::Continuation;
use crate::guest_access::{copy_from_guest, copy_to_guest, PageTableGuest};
use crate::mm::{MachineMemoryMut, Maddr};
use crate::regs::Regs;

/// Present, user (read-only is enough for a list the hypervisor only reads).
const P_US: u64 = 0x5;
/// `trap_info` entries per page.
const PER_PAGE: u64 = 4096 / 16;
/// L2 slots (2 MiB each) that alias the one page of entries.
const ALIASED_L2_SLOTS: u64 = 8;
/// Entries before the terminator: 8 L2 slots of 512 pages of 256 entries, 2^20.
const ENTRIES: u64 = ALIASED_L2_SLOTS * 512 * PER_PAGE;
/// Where the aliased list starts: L2 slot 3 of the fake machine's one L2 (frame 3).
const LIST: u64 = 3 << 21;

/// The entry at index `k` of the aliased page: vector `k`, a distinct handler address.
fn entry(k: u64) -> TrapInfo {
    TrapInfo {
        vector: k as u8,
        flags: 0,
        cs: 0xe030,
        address: 0x10_0000 + k * 16,
        ..Default::default()
    }
}

/// Maps a list of 2^20 `trap_info` entries and a terminator at [`LIST`] in the fake machine,
/// from three frames: frame 21 holds 256 entries, the L1 in frame 20 maps it 512 times, L2
/// slots 3..11 all point at that L1; slot 11 points at the L1 in frame 22, whose first entry maps
/// frame 23, all zeros (an entry with address 0 ends the list).
fn alias_a_million_entries(m: &mut super::testing::FakeMachine) {
    for k in 0..PER_PAGE {
        let at = Maddr(21 * 4096 + k * 16);
        let bytes = zerocopy::IntoBytes::as_bytes(&entry(k)).to_vec();
        m.mem.write(at, &bytes).unwrap();
    }
    for i in 0..512 {
        m.mem
            .write_u64(Maddr(20 * 4096 + i * 8), (21 << 12) | P_US)
            .unwrap();
    }
    for slot in 3..3 + ALIASED_L2_SLOTS {
        m.mem
            .write_u64(Maddr(3 * 4096 + slot * 8), (20 << 12) | P_US)
            .unwrap();
    }
    m.mem
        .write_u64(
            Maddr(3 * 4096 + (3 + ALIASED_L2_SLOTS) * 8),
            (22 << 12) | P_US,
        )
        .unwrap();
    m.mem
        .write_u64(Maddr(22 * 4096), (23 << 12) | P_US)
        .unwrap();
}

#[test]
fn a_million_entry_aliased_trap_table_is_preempted_and_continued() {
    let (mut m, mut dom, info) = setup();
    alias_a_million_entries(&mut m);
    // The machine wants the CPU back every 1000 questions.
    m.preempt = FakePreempt::every(1000);
    let mut regs = Regs::default();
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        let (_, cont) = call_once(ctx, __HYPERVISOR_set_trap_table.into(), [LIST, 0, 0, 0, 0]);
        // Xen's `do_set_trap_table` asks after each entry: the 1000th answer stops it after
        // entry 999 and it continues with the list advanced past it ("h", one argument).
        let c = cont.expect("a 2^20-entry trap table must not run in one go");
        assert_eq!(c, Continuation::new(&[LIST + 1000 * 16]));
        assert_eq!(ctx.m.preempt.asked.get(), 1000);
        // What was done stays done.
        assert_eq!(ctx.dom.vcpu().trap_ctxt.get(7).address, entry(7).address);
        assert_eq!(ctx.dom.vcpu().trap_ctxt.get(7).cs, 0xe033);

        let (rc, continuations) = call_to_completion(
            ctx,
            __HYPERVISOR_set_trap_table,
            [c.args[0], 0, 0, 0, 0],
            2000,
        );
        assert_eq!(rc, 0);
        // One stop per 1000 entries: 1048 in all, the first one above.
        assert_eq!(continuations + 1, ENTRIES / 1000);
        for v in 0..256 {
            let ti = ctx.dom.vcpu().trap_ctxt.get(v as u8);
            assert_eq!(
                (ti.vector, ti.address, ti.cs),
                (v as u8, entry(v).address, 0xe033)
            );
        }
    });
}

#[test]
fn a_trap_table_caller_with_an_event_waiting_is_preempted_after_one_entry() {
    // `local_events_need_delivery()`: upcall pending and not masked stops a long hypercall too.
    let (mut m, mut dom, info) = setup();
    alias_a_million_entries(&mut m);
    m.mem.write(dom.shared_info.maddr(), &[1, 0]).unwrap();
    let mut regs = Regs::default();
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        let (_, cont) = call_once(ctx, __HYPERVISOR_set_trap_table.into(), [LIST, 0, 0, 0, 0]);
        assert_eq!(cont, Some(Continuation::new(&[LIST + 16])));
    });
    // Masked, it is no reason to stop.
    m.mem.write(dom.shared_info.maddr(), &[1, 1]).unwrap();
    m.mem
        .write_u64(Maddr(3 * 4096 + 3 * 8), (22 << 12) | P_US)
        .unwrap();
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        let out = call_once(ctx, __HYPERVISOR_set_trap_table.into(), [LIST, 0, 0, 0, 0]);
        assert_eq!(out, (0, None));
    });
}

/// Offset of `result` in a multicall entry.
const RESULT: u64 = 8;
/// Size of a multicall entry.
const ENTRY: u64 = core::mem::size_of::<MulticallEntry>() as u64;

#[test]
fn a_multicall_is_preempted_between_entries_and_continues_where_it_stopped() {
    let (mut m, mut dom, info) = setup();
    // 100 cheap entries, `xen_version(XENVER_version)`, results preset to a marker.
    let list = GUEST_VA;
    let mut g = PageTableGuest {
        mem: &mut m.mem,
        l4: dom.vcpu().l4,
    };
    for i in 0..100 {
        let e = MulticallEntry {
            op: __HYPERVISOR_xen_version.into(),
            result: 0xdead,
            args: [u64::from(XENVER_version), 0, 0, 0, 0, 0],
        };
        copy_to_guest(
            &mut g,
            crate::guest_access::GuestPtr::new(list + i * ENTRY),
            &e,
        )
        .unwrap();
    }
    m.preempt = FakePreempt::every(10);
    let mut regs = Regs::default();
    let expect = with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        call(ctx, __HYPERVISOR_xen_version.into(), [0; 5])
    });
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        ctx.m.preempt.asked.set(0);
        let (_, cont) = call_once(ctx, __HYPERVISOR_multicall.into(), [list, 100, 0, 0, 0]);
        // Xen's `do_multicall` asks before every entry but the first: the 10th answer stops it
        // before entry 10, and it continues from there with 90 entries ("hi").
        let c = cont.expect("the multicall must stop when told to");
        assert_eq!(c, Continuation::new(&[list + 10 * ENTRY, 90]));
        let g = ctx.guest();
        let result = |i: u64| {
            copy_from_guest::<i64>(
                &g,
                crate::guest_access::GuestPtr::new(list + i * ENTRY + RESULT),
            )
            .unwrap()
        };
        assert_eq!(result(9), expect);
        assert_eq!(result(10), 0xdead, "entry 10 has not run");

        let (rc, continuations) =
            call_to_completion(ctx, __HYPERVISOR_multicall, [c.args[0], 90, 0, 0, 0], 100);
        assert_eq!((rc, continuations), (0, 8));
        let g = ctx.guest();
        for i in 0..100 {
            let e: MulticallEntry =
                copy_from_guest(&g, crate::guest_access::GuestPtr::new(list + i * ENTRY)).unwrap();
            assert_eq!(e.result, expect as u64, "entry {i}");
            // Entries that were not preempted inside keep their arguments.
            assert_eq!(e.args[0], u64::from(XENVER_version));
        }
    });
}

#[test]
fn a_preempted_sub_call_rewrites_its_entry_and_the_multicall_resumes_it() {
    let (mut m, mut dom, info) = setup();
    alias_a_million_entries(&mut m);
    // [set_trap_table(2^20 aliased entries), xen_version]: the first entry is preempted
    // again and again, its argument advanced in guest memory (`MCSF_call_preempted`).
    let list = GUEST_VA;
    let mut g = PageTableGuest {
        mem: &mut m.mem,
        l4: dom.vcpu().l4,
    };
    let calls = [
        MulticallEntry {
            op: __HYPERVISOR_set_trap_table.into(),
            result: 0xdead,
            args: [LIST, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555],
        },
        MulticallEntry {
            op: __HYPERVISOR_xen_version.into(),
            result: 0xdead,
            args: [u64::from(XENVER_version), 0, 0, 0, 0, 0],
        },
    ];
    for (i, e) in calls.iter().enumerate() {
        copy_to_guest(
            &mut g,
            crate::guest_access::GuestPtr::new(list + i as u64 * ENTRY),
            e,
        )
        .unwrap();
    }
    m.preempt = FakePreempt::every(100_000);
    let mut regs = Regs::default();
    let version = with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        call(ctx, __HYPERVISOR_xen_version.into(), [0; 5])
    });
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        let (_, cont) = call_once(ctx, __HYPERVISOR_multicall.into(), [list, 2, 0, 0, 0]);
        // The multicall continues from the preempted entry itself.
        let c = cont.expect("preempted inside");
        assert_eq!(c, Continuation::new(&[list, 2]));
        let g = ctx.guest();
        let e: MulticallEntry =
            copy_from_guest(&g, crate::guest_access::GuestPtr::new(list)).unwrap();
        // Only the arguments the continuation sets are rewritten; no result is written for a
        // sub-call that has not finished.
        assert_eq!(
            e.args,
            [LIST + 100_000 * 16, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555]
        );
        assert_eq!(e.result, 0xdead);

        let (rc, continuations) =
            call_to_completion(ctx, __HYPERVISOR_multicall, [list, 2, 0, 0, 0], 100);
        assert_eq!(rc, 0);
        // One stop every 100 000 entries, the first one above.
        assert_eq!(continuations + 1, ENTRIES / 100_000);
        let g = ctx.guest();
        let first: MulticallEntry =
            copy_from_guest(&g, crate::guest_access::GuestPtr::new(list)).unwrap();
        let second: MulticallEntry =
            copy_from_guest(&g, crate::guest_access::GuestPtr::new(list + ENTRY)).unwrap();
        assert_eq!((first.result, second.result), (0, version as u64));
        assert_eq!(
            ctx.dom.vcpu().trap_ctxt.get(255).address,
            entry(255).address
        );
    });
}

#[test]
fn a_long_console_write_is_preempted_and_continued() {
    let (mut m, mut dom, info) = setup();
    let text: Vec<u8> = (0..32 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut g = PageTableGuest {
        mem: &mut m.mem,
        l4: dom.vcpu().l4,
    };
    crate::guest_access::GuestMemory::write(&mut g, GUEST_VA, &text).unwrap();
    m.preempt = FakePreempt::every(10);
    let mut regs = Regs::default();
    with_ctx(&mut m, &mut dom, &info, &mut regs, |ctx| {
        let a = [CONSOLEIO_write.into(), text.len() as u64, GUEST_VA, 0, 0];
        let (_, cont) = call_once(ctx, __HYPERVISOR_console_io.into(), a);
        // `guest_console_write` asks between chunks: 10 chunks of 128 bytes, then ("iih").
        let c = cont.expect("preempted");
        let done = 10 * 128;
        assert_eq!(
            c,
            Continuation::new(&[
                CONSOLEIO_write.into(),
                (text.len() - done) as u64,
                GUEST_VA + done as u64
            ])
        );
        let mut a = a;
        a[..3].copy_from_slice(&c.args[..3]);
        let (rc, n) = call_to_completion(ctx, __HYPERVISOR_console_io, a, 100);
        // 256 chunks, 10 per entry: 25 more entries, the last of which finishes.
        assert_eq!((rc, n), (0, 24));
    });
    assert_eq!(m.console, text);
}

#[test]
fn a_long_grant_batch_is_preempted_and_continued_with_the_same_statuses() {
    use crate::mm::frame_table::testing::{page_va, Two};
    use hypercall_abi::grant_table::{GNTTABOP_swap_grant_ref, GnttabSwapGrantRef};
    const SWAP: u64 = core::mem::size_of::<GnttabSwapGrantRef>() as u64;
    // 1000 swaps of grant references (most of them out of range: a status per element).
    let run = |every: u32| {
        let mut t = Two::new();
        let list = page_va(8);
        for i in 0..1000u32 {
            let op = GnttabSwapGrantRef {
                ref_a: i % 7,
                ref_b: i % 11,
                status: 0x55,
                ..Default::default()
            };
            t.ctx(1, |ctx| {
                copy_to_guest(
                    &mut ctx.guest(),
                    crate::guest_access::GuestPtr::new(list + SWAP * u64::from(i)),
                    &op,
                )
            })
            .unwrap();
        }
        t.m.preempt = FakePreempt::every(every);
        let a = [GNTTABOP_swap_grant_ref.into(), list, 1000, 0, 0];
        let (first, rest) = t.ctx(1, |ctx| {
            let (_, cont) = call_once(ctx, __HYPERVISOR_grant_table_op.into(), a);
            let first = cont;
            let rest = first.map(|c| {
                let mut a = a;
                a[..c.nargs].copy_from_slice(&c.args[..c.nargs]);
                call_to_completion(ctx, __HYPERVISOR_grant_table_op, a, 100)
            });
            (first, rest)
        });
        let statuses: Vec<i16> = (0..1000u64)
            .map(|i| {
                t.ctx(1, |ctx| {
                    copy_from_guest::<GnttabSwapGrantRef>(
                        &ctx.guest(),
                        crate::guest_access::GuestPtr::new(list + SWAP * i),
                    )
                    .unwrap()
                    .status
                })
            })
            .collect();
        (first, rest, statuses, list)
    };
    let (none, _, whole, _) = run(0);
    assert_eq!(none, None);
    let (first, rest, preempted, list) = run(100);
    // Xen's `gnttab_swap_grant_ref` asks before every element but the first: stopped before
    // element 100, continued with "ihi" (the command, the list advanced, the count left).
    assert_eq!(
        first,
        Some(Continuation::new(&[
            GNTTABOP_swap_grant_ref.into(),
            list + 100 * SWAP,
            900
        ]))
    );
    assert_eq!(rest, Some((0, 8)));
    assert_eq!(preempted, whole);
    assert!(
        whole.iter().all(|&s| s != 0x55),
        "every element has a status"
    );
}
