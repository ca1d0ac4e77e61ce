//! Host tests of the hypercall table: its rows agree with `hypercall_abi` and with the guest's
//! conformance suite, unknown numbers are -ENOSYS, the multicall column holds; and the outcome
//! plumbing: every hypercall seen to wake or stop another domain kicks it in its outcome, one that
//! changes only its caller kicks nobody, a continuation, a crash and TLB work reach the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hypercall_abi::domctl::*;
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::*;
use hypercall_abi::sched::*;
use hypercall_abi::xen::*;

use super::table::lookup;
use super::testing::*;
use super::*;
use crate::ctx::{Continuation, Ret};
use crate::domain::set::{DomainSet, MAX_PORT_2L};
use crate::domain::DomainId;
use crate::regs::Regs;

const ARG: u64 = GUEST_VA;

/// dom0 (privileged) and two domUs, 1 and 2.
fn world() -> (FakeMachine, Box<DomainSet>) {
    let (m, _, _) = setup();
    let mut set = Box::new(DomainSet::new());
    for id in 0..3 {
        set.install(usize::from(id), guest(id), MAX_PORT_2L);
    }
    (m, set)
}

/// Makes hypercall `nr` as the domain with id `caller`.
fn hc(m: &mut FakeMachine, set: &mut DomainSet, caller: DomainId, nr: u32, a: [u64; 5]) -> i64 {
    outcome(m, set, caller, nr, a).rax()
}

/// Makes hypercall `nr` as the domain with id `caller`; its outcome, applied to the caller.
fn outcome(
    m: &mut FakeMachine,
    set: &mut DomainSet,
    caller: DomainId,
    nr: u32,
    a: [u64; 5],
) -> Outcome {
    let slot = set.slot_of(caller).unwrap();
    with_set_ctx(m, set, slot, |ctx| {
        let out = dispatch(ctx, nr.into(), a);
        out.apply_effects(ctx.dom);
        out
    })
}

/// What the scheduler looks at in a domain: whether it was woken (an upcall pending), stopped
/// (shut down, marked for destruction) or blocked.
fn sched_view(m: &FakeMachine, set: &DomainSet, id: DomainId) -> String {
    let g = set.guest(set.slot_of(id).unwrap()).unwrap();
    format!(
        "upcall={} shutdown={:?} destroy={} blocked={} poll={}",
        crate::shared_info::upcall_pending(m, &g.dom),
        g.dom.shutdown,
        g.destroy,
        g.dom.vcpu().blocked,
        g.dom.vcpu().poll.is_some(),
    )
}

/// Runs hypercall `nr` as `caller` and reports whether it changed how the scheduler sees any
/// other domain; checks that its outcome kicks every domain it changed, so that the scheduler
/// looks at them.
fn assert_kicked_if_it_reaches(
    m: &mut FakeMachine,
    set: &mut DomainSet,
    caller: DomainId,
    nr: u32,
    a: [u64; 5],
) -> (i64, bool) {
    let others: Vec<DomainId> = set
        .slots()
        .map(|(_, g)| g.dom.id)
        .filter(|&id| id != caller)
        .collect();
    let before: Vec<String> = others.iter().map(|&id| sched_view(m, set, id)).collect();
    let out = outcome(m, set, caller, nr, a);
    let mut changed = false;
    for (i, &id) in others.iter().enumerate() {
        let after = sched_view(m, set, id);
        if after != before[i] {
            changed = true;
            assert!(
                out.kicks.contains(id),
                "hypercall {nr} changed d{id} ({} -> {after}) but its outcome kicks {:?}",
                before[i],
                out.kicks
            );
        }
    }
    (out.rax(), changed)
}

#[test]
fn table_has_no_duplicate_numbers_names_or_handlers() {
    let mut nrs = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut handlers = Vec::new();
    for h in TABLE {
        assert!(nrs.insert(h.nr), "number {} twice", h.nr);
        assert!(names.insert(h.name), "name {} twice", h.name);
        assert!(!handlers.contains(&h.handler), "{:?} twice", h.handler);
        handlers.push(h.handler);
        assert_eq!(lookup(h.nr.into()), Some(h));
    }
    // In number order, as Xen's table reads.
    assert!(TABLE.windows(2).all(|w| w[0].nr < w[1].nr));
}

/// `pub const __HYPERVISOR_<name>: u32 = <n>;` from hypercall-abi's source: the name-to-number
/// map written down independently of the table.
fn abi_numbers() -> BTreeMap<String, u32> {
    let src = include_str!("../../../hypercall-abi/src/xen.rs");
    src.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const __HYPERVISOR_")?;
            let (name, rest) = rest.split_once(": u32 = ")?;
            let n = rest.strip_suffix(';')?.parse().ok()?;
            Some((name.to_string(), n))
        })
        .collect()
}

#[test]
fn every_row_has_hypercall_abis_number_for_its_name() {
    let abi = abi_numbers();
    assert!(abi.len() > 40, "hypercall-abi's constants not found");
    for h in TABLE {
        assert_eq!(abi.get(h.name), Some(&h.nr), "row {}", h.name);
    }
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

/// The guest's hypercall wrappers (`guest-kernel/src/kernel/hypercall.rs`): wrapper name to the
/// `__HYPERVISOR_*` name it issues.
fn guest_wrappers(src: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in src.lines() {
        let l = line.trim_start();
        let l = l.strip_prefix("pub ").unwrap_or(l);
        let l = l.strip_prefix("unsafe ").unwrap_or(l);
        if let Some(rest) = l.strip_prefix("fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            current = Some(name);
            continue;
        }
        if let (Some(f), Some(i)) = (&current, line.find("__HYPERVISOR_")) {
            let name: String = line[i + "__HYPERVISOR_".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            map.entry(f.clone()).or_insert(name);
        }
    }
    map
}

#[test]
fn every_hypercall_the_conformance_suite_makes_is_in_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-kernel/src");
    let wrappers =
        guest_wrappers(&std::fs::read_to_string(root.join("kernel/hypercall.rs")).unwrap());
    // `shutdown` issues `sched_op` through the `sched_op` wrapper.
    let mut wrappers = wrappers;
    assert_eq!(wrappers.insert("shutdown".into(), "sched_op".into()), None);
    let mut files = Vec::new();
    sources(&root.join("suites/conformance"), &mut files);
    assert!(files.len() > 3, "conformance sources not found");
    let mut used = BTreeSet::new();
    for (_, text) in &files {
        for (i, _) in text.match_indices("__HYPERVISOR_") {
            let name: String = text[i + "__HYPERVISOR_".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
        for (wrapper, name) in &wrappers {
            if text.contains(&format!("hc::{wrapper}("))
                || text.contains(&format!("hc::{wrapper}::"))
                || text.contains(&format!("hc::raw::{wrapper}("))
            {
                used.insert(name.clone());
            }
        }
    }
    // Sanity: the suite's main areas are seen.
    for name in [
        "mmu_update",
        "event_channel_op",
        "grant_table_op",
        "multicall",
        "xen_version",
    ] {
        assert!(used.contains(name), "{name} not found in the suite");
    }
    let served: BTreeSet<&str> = TABLE.iter().map(|h| h.name).collect();
    for name in &used {
        assert!(
            served.contains(name.as_str()),
            "the suite makes {name}, not in the table"
        );
    }
}

#[test]
fn numbers_without_a_row_are_enosys() {
    let (mut m, mut set) = world();
    let mut unknown: Vec<u64> = (0..80).filter(|&n| lookup(n).is_none()).collect();
    unknown.extend([
        u64::from(u32::MAX),
        1 << 32,
        u64::from(__HYPERVISOR_iret) | 1 << 32,
        u64::MAX,
    ]);
    // Xen's own numbers we do not serve.
    for nr in [__HYPERVISOR_platform_op, __HYPERVISOR_xsm_op] {
        assert!(unknown.contains(&u64::from(nr)));
    }
    for nr in unknown {
        let slot = set.slot_of(1).unwrap();
        let (rc, counted) = with_set_ctx(&mut m, &mut set, slot, |ctx| {
            let before = ctx.dom.vcpu().perf.hypercalls;
            let out = dispatch(ctx, nr, [0; 5]);
            (out, ctx.dom.vcpu().perf.hypercalls - before)
        });
        assert_eq!(rc, Outcome::value(Errno::ENOSYS.neg()), "number {nr:#x}");
        assert_eq!(counted, 1);
    }
}

#[test]
fn rows_kept_out_of_a_multicall_get_einval_there() {
    let (mut m, mut set) = world();
    let kept_out: Vec<u32> = TABLE
        .iter()
        .filter(|h| !h.in_multicall)
        .map(|h| h.nr)
        .collect();
    assert_eq!(kept_out, [__HYPERVISOR_multicall, __HYPERVISOR_iret]);
    let list = ARG + 0x100;
    let mut entries = Vec::new();
    for &nr in &kept_out {
        entries.push(MulticallEntry {
            op: nr.into(),
            result: 0x5a5a,
            args: [list, 1, 0, 0, 0, 0],
        });
    }
    // An allowed one between them runs: xen_version(XENVER_version) is the version.
    entries.push(MulticallEntry {
        op: __HYPERVISOR_xen_version.into(),
        result: 0x5a5a,
        args: [0; 6],
    });
    for (i, e) in entries.iter().enumerate() {
        put(&mut m, list + i as u64 * 64, e);
    }
    let rc = hc(
        &mut m,
        &mut set,
        1,
        __HYPERVISOR_multicall,
        [list, entries.len() as u64, 0, 0, 0],
    );
    assert_eq!(rc, 0);
    for i in 0..kept_out.len() {
        let e: MulticallEntry = get(&mut m, list + i as u64 * 64);
        assert_eq!(e.result as i64, Errno::EINVAL.neg(), "entry {i}");
    }
    let v: MulticallEntry = get(&mut m, list + kept_out.len() as u64 * 64);
    assert!(v.result as i64 > 0);
}

#[test]
fn an_event_sent_to_another_domain_kicks_it() {
    let (mut m, mut set) = world();
    // Domain 2 blocks, waiting for events.
    set.guest_mut(set.slot_of(2).unwrap())
        .unwrap()
        .dom
        .vcpu_mut()
        .blocked = true;
    // Domain 2 offers a port to dom0; dom0 binds it (neither touches the other's run state).
    let a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 0,
        port: 0,
    };
    put(&mut m, ARG, &a);
    let args = [EVTCHNOP_alloc_unbound.into(), ARG, 0, 0, 0];
    assert_eq!(
        hc(&mut m, &mut set, 2, __HYPERVISOR_event_channel_op, args),
        0
    );
    let remote_port = get::<EvtchnAllocUnbound>(&mut m, ARG).port;
    let b = EvtchnBindInterdomain {
        remote_dom: 2,
        remote_port,
        ..Default::default()
    };
    put(&mut m, ARG, &b);
    let args = [EVTCHNOP_bind_interdomain.into(), ARG, 0, 0, 0];
    assert_eq!(
        hc(&mut m, &mut set, 0, __HYPERVISOR_event_channel_op, args),
        0
    );
    let local_port = get::<EvtchnBindInterdomain>(&mut m, ARG).local_port;
    // dom0 sends: domain 2 gets an upcall pending, which wakes it.
    put(&mut m, ARG, &EvtchnSend { port: local_port });
    let args = [EVTCHNOP_send.into(), ARG, 0, 0, 0];
    let (rc, changed) =
        assert_kicked_if_it_reaches(&mut m, &mut set, 0, __HYPERVISOR_event_channel_op, args);
    assert_eq!(rc, 0);
    assert!(changed, "the send did not reach domain 2");
    assert!(crate::shared_info::upcall_pending(
        &m,
        &set.guest(set.slot_of(2).unwrap()).unwrap().dom
    ));
    // The same send inside a multicall: the multicall's outcome must say so too.
    // Domain 2 handles the event as its upcall would: clears evtchn_upcall_pending,
    // evtchn_pending_sel and the pending bits of the first word (the port's among them).
    let si = set.guest(set.slot_of(2).unwrap()).unwrap().dom.shared_info;
    let mut page = crate::shared_info::SharedInfoPage::of_mut(&mut m, si);
    let _ = page.test_and_clear_upcall_pending(0);
    page.clear_pending_sel(0);
    for port in 0..64 {
        let _ = page.test_and_clear_evtchn_pending(port);
    }
    let list = ARG + 0x100;
    put(
        &mut m,
        list,
        &MulticallEntry {
            op: __HYPERVISOR_event_channel_op.into(),
            result: 0,
            args: [EVTCHNOP_send.into(), ARG, 0, 0, 0, 0],
        },
    );
    let (rc, changed) = assert_kicked_if_it_reaches(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_multicall,
        [list, 1, 0, 0, 0],
    );
    assert_eq!(rc, 0);
    assert!(changed, "the multicall's send did not reach domain 2");
}

#[test]
fn stopping_another_domain_kicks_it() {
    let (mut m, mut set) = world();
    // SCHEDOP_remote_shutdown of domain 1 by dom0.
    let s = SchedRemoteShutdown {
        domain_id: 1,
        reason: SHUTDOWN_poweroff,
        ..Default::default()
    };
    put(&mut m, ARG, &s);
    let args = [SCHEDOP_remote_shutdown.into(), ARG, 0, 0, 0];
    let (rc, changed) =
        assert_kicked_if_it_reaches(&mut m, &mut set, 0, __HYPERVISOR_sched_op, args);
    assert_eq!((rc, changed), (0, true));
    // XEN_DOMCTL_destroydomain of domain 2 by dom0.
    let op = XenDomctl {
        cmd: XEN_DOMCTL_destroydomain,
        domain: 2,
        ..Default::default()
    };
    put(&mut m, ARG, &op);
    let (rc, changed) =
        assert_kicked_if_it_reaches(&mut m, &mut set, 0, __HYPERVISOR_domctl, [ARG, 0, 0, 0, 0]);
    assert_eq!((rc, changed), (0, true));
}

#[test]
fn hypercalls_that_change_only_their_caller_kick_nobody() {
    let (mut m, mut set) = world();
    let version = outcome(&mut m, &mut set, 1, __HYPERVISOR_xen_version, [0; 5]);
    assert!(version.rax() > 0);
    assert!(version.kicks.is_empty());
    // Offering a port to another domain changes nothing the scheduler sees.
    put(
        &mut m,
        ARG,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        },
    );
    let args = [EVTCHNOP_alloc_unbound.into(), ARG, 0, 0, 0];
    let out = outcome(&mut m, &mut set, 1, __HYPERVISOR_event_channel_op, args);
    assert_eq!((out.rax(), out.kicks.is_empty()), (0, true));
    // A refused remote shutdown kicks nobody either.
    let s = SchedRemoteShutdown {
        domain_id: 2,
        reason: SHUTDOWN_poweroff,
        ..Default::default()
    };
    put(&mut m, ARG, &s);
    let args = [SCHEDOP_remote_shutdown.into(), ARG, 0, 0, 0];
    let out = outcome(&mut m, &mut set, 1, __HYPERVISOR_sched_op, args);
    assert_eq!(out.rax(), Errno::EPERM.neg());
    assert!(out.kicks.is_empty());
}

#[test]
fn a_polling_domain_is_kicked_by_a_send_even_with_its_upcall_pending() {
    let (mut m, mut set) = world();
    // dom0 sends to itself (loopback) while domain 2 polls with an upcall already pending.
    let d2 = set.slot_of(2).unwrap();
    set.guest_mut(d2).unwrap().dom.vcpu_mut().poll = Some(crate::domain::Poll::default());
    put(
        &mut m,
        ARG,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: DOMID_SELF,
            port: 0,
        },
    );
    let args = [EVTCHNOP_alloc_unbound.into(), ARG, 0, 0, 0];
    assert_eq!(
        hc(&mut m, &mut set, 0, __HYPERVISOR_event_channel_op, args),
        0
    );
    let port = get::<EvtchnAllocUnbound>(&mut m, ARG).port;
    let b = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: port,
        ..Default::default()
    };
    put(&mut m, ARG, &b);
    let args = [EVTCHNOP_bind_interdomain.into(), ARG, 0, 0, 0];
    let bound = outcome(&mut m, &mut set, 0, __HYPERVISOR_event_channel_op, args);
    assert_eq!(bound.rax(), 0);
    assert!(
        bound.kicks.contains(0),
        "the new port starts pending: dom0 is kicked"
    );
    put(&mut m, ARG, &EvtchnSend { port });
    let args = [EVTCHNOP_send.into(), ARG, 0, 0, 0];
    let out = outcome(&mut m, &mut set, 0, __HYPERVISOR_event_channel_op, args);
    assert_eq!(out.rax(), 0);
    assert!(
        out.kicks.contains(2),
        "the poller is looked at: {:?}",
        out.kicks
    );
    assert!(!out.kicks.contains(1));
}

#[test]
fn a_continuation_rewinds_the_guest_to_its_syscall_with_the_new_arguments() {
    let c = Continuation::new(&[0x1000, 7]);
    let out = Outcome::from_effects(
        99,
        Effects {
            continuation: Some(c),
            ..Effects::default()
        },
    );
    assert_eq!(out.ret, Ret::Continue(c));
    assert_eq!((out.rax(), out.continuation()), (0, Some(c)));
    let (_, mut dom, _) = setup();
    let mut regs = Regs {
        rip: 0x5002,
        rax: 0,
        rdi: 1,
        rsi: 2,
        rdx: 3,
        r10: 4,
        ..Regs::default()
    };
    out.apply(__HYPERVISOR_multicall.into(), &mut dom, &mut regs);
    assert_eq!(regs.rip, 0x5000, "back to the `syscall`");
    assert_eq!(regs.rax, __HYPERVISOR_multicall.into());
    assert_eq!((regs.rdi, regs.rsi, regs.rdx, regs.r10), (0x1000, 7, 3, 4));
    // A plain result goes into RAX.
    let mut regs = Regs::default();
    Outcome::value(-22).apply(0, &mut dom, &mut regs);
    assert_eq!(regs.rax as i64, -22);
    assert_eq!(dom.shutdown, None);
}

#[test]
fn a_crash_and_tlb_work_in_the_outcome_reach_the_caller() {
    let (_, mut dom, _) = setup();
    let mut fx = Effects {
        crash: Some("test"),
        ..Effects::default()
    };
    fx.flush.flush_all(&mut dom.vcpu_mut().perf);
    let out = Outcome::from_effects(0, fx);
    out.apply(0, &mut dom, &mut Regs::default());
    assert_eq!(dom.shutdown, Some(crate::domain::Shutdown::Crashed("test")));
    assert!(
        dom.vcpu().flush.local_flush,
        "owed before the vCPU runs again"
    );
}

#[test]
fn an_iret_that_cannot_read_its_frame_crashes_the_caller_through_its_outcome() {
    let (mut m, mut set) = world();
    let slot = set.slot_of(1).unwrap();
    let out = with_set_ctx(&mut m, &mut set, slot, |ctx| {
        ctx.regs.rsp = 0x7000_0000_0000;
        dispatch(ctx, __HYPERVISOR_iret.into(), [0; 5])
    });
    assert!(out.crash.is_some());
    assert_eq!(
        set.guest(slot).unwrap().dom.shutdown,
        None,
        "not before it is applied"
    );
}

#[test]
fn a_multicall_adds_up_its_entries_kicks() {
    let (mut m, mut set) = world();
    // dom0 shuts down domain 1 and destroys domain 2 in one multicall.
    let s = SchedRemoteShutdown {
        domain_id: 1,
        reason: SHUTDOWN_poweroff,
        ..Default::default()
    };
    put(&mut m, ARG, &s);
    let op = XenDomctl {
        cmd: XEN_DOMCTL_destroydomain,
        domain: 2,
        ..Default::default()
    };
    put(&mut m, ARG + 0x80, &op);
    let list = ARG + 0x400;
    let entries = [
        MulticallEntry {
            op: __HYPERVISOR_sched_op.into(),
            result: 1,
            args: [SCHEDOP_remote_shutdown.into(), ARG, 0, 0, 0, 0],
        },
        MulticallEntry {
            op: __HYPERVISOR_domctl.into(),
            result: 1,
            args: [ARG + 0x80, 0, 0, 0, 0, 0],
        },
    ];
    for (i, e) in entries.iter().enumerate() {
        put(&mut m, list + i as u64 * 64, e);
    }
    let out = outcome(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_multicall,
        [list, 2, 0, 0, 0],
    );
    assert_eq!(out.rax(), 0);
    assert_eq!(out.kicks.iter().collect::<Vec<_>>(), [1, 2]);
}

/// The rows whose way out may be the fast one ([`super::table::Exit::Fast`]): each is a decision
/// (the call changes no timer, scheduling, upcall-mask or loaded vCPU state except through its
/// outcome), so the list is spelled out here and a new fast row must be added on purpose.
#[test]
fn only_the_rows_listed_here_take_the_fast_way_out() {
    let fast: Vec<&str> = TABLE
        .iter()
        .filter(|h| h.exit == super::table::Exit::Fast)
        .map(|h| h.name)
        .collect();
    assert_eq!(
        fast,
        [
            "mmu_update",
            "get_debugreg",
            // Writes one descriptor in memory; the GDT the CPU runs on maps that memory.
            "update_descriptor",
            "multicall",
            "update_va_mapping",
            "xen_version",
            "console_io",
            "grant_table_op",
            "update_va_mapping_otherdomain",
            // Back to guest kernel mode: the registers and the upcall mask, which the fast way
            // back handles; a toggle to user mode or an NMI to deliver asks for the full way
            // (`traps::iret`).
            "iret",
            "mmuext_op",
        ]
    );
}

/// What the arch layer's fast path reads: a fast call that did nothing else leaves nothing to
/// do; a full row, a fast row with TLB work, and a multicall with a full entry all need the full
/// way out.
#[test]
fn the_fast_way_out_is_taken_only_when_nothing_is_left_to_do() {
    let (mut m, mut set) = world();
    let slot = set.slot_of(1).unwrap();
    let mut run_as_1 = |m: &mut FakeMachine, nr: u32, a: [u64; 5]| {
        with_set_ctx(m, &mut set, slot, |ctx| {
            let rc = execute(ctx, nr.into(), a);
            let quiet = ctx.fx.nothing_to_do();
            core::mem::take(ctx.fx);
            (rc, quiet)
        })
    };
    // xen_version(XENVER_version): a value, nothing else.
    let (rc, quiet) = run_as_1(&mut m, __HYPERVISOR_xen_version, [0; 5]);
    assert!(rc > 0 && quiet);
    // An unknown number is -ENOSYS, and changes nothing either.
    assert_eq!(run_as_1(&mut m, 63, [0; 5]), (Errno::ENOSYS.neg(), true));
    // set_timer_op changes the vCPU's timer: the way out must arm it.
    assert!(!run_as_1(&mut m, __HYPERVISOR_set_timer_op, [0; 5]).1);
    // Effects a fast row can record (this fake machine has no frame table for mmuext_op's TLB
    // work): each one is something to do.
    let mut perf = crate::domain::PerfCounters::default();
    let mut fx = Effects::default();
    fx.flush.flush_all(&mut perf);
    assert!(!fx.nothing_to_do(), "TLB work");
    let mut fx = Effects::default();
    fx.kicks.add(2);
    assert!(!fx.nothing_to_do(), "a kick");
    let fx = Effects {
        continuation: Some(Continuation::new(&[1])),
        ..Effects::default()
    };
    assert!(!fx.nothing_to_do(), "a continuation");
    let fx = Effects {
        crash: Some("test"),
        ..Effects::default()
    };
    assert!(!fx.nothing_to_do(), "a crash");
    // A multicall is as fast as its slowest entry.
    let list = ARG + 0x100;
    for (i, nr) in [__HYPERVISOR_xen_version, __HYPERVISOR_set_timer_op]
        .into_iter()
        .enumerate()
    {
        put(
            &mut m,
            list + i as u64 * 64,
            &MulticallEntry {
                op: nr.into(),
                result: 0,
                args: [0; 6],
            },
        );
    }
    let one = run_as_1(&mut m, __HYPERVISOR_multicall, [list, 1, 0, 0, 0]);
    assert_eq!(one, (0, true), "xen_version alone");
    let two = run_as_1(&mut m, __HYPERVISOR_multicall, [list, 2, 0, 0, 0]);
    assert_eq!(two, (0, false), "with set_timer_op");
}

#[test]
fn event_channel_pages_come_on_demand_and_a_dry_pool_is_enomem_through_the_hypercall() {
    use crate::mm::xen_page::heap::HeapPages;
    let (mut m, mut set) = world();
    // Room for one page of channels: ports 1..256 of domain 1.
    m.xen_pages = FakeXenPages::Heap(HeapPages::limited(1));
    let alloc = |m: &mut FakeMachine, set: &mut DomainSet| {
        let a = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        };
        put(m, ARG, &a);
        let args = [EVTCHNOP_alloc_unbound.into(), ARG, 0, 0, 0];
        let rc = hc(m, set, 1, __HYPERVISOR_event_channel_op, args);
        (rc, get::<EvtchnAllocUnbound>(m, ARG).port)
    };
    for expect in 1..crate::evtchn::PORTS_PER_PAGE {
        assert_eq!(alloc(&mut m, &mut set), (0, expect));
    }
    let slot = set.slot_of(1).unwrap();
    assert_eq!(set.ports(slot).nr_pages(), 1);
    let (rc, _) = alloc(&mut m, &mut set);
    assert_eq!(
        rc,
        Errno::ENOMEM.neg(),
        "Xen's answer when a bucket cannot be allocated"
    );
    assert_eq!(set.ports(slot).valid_ports(), crate::evtchn::PORTS_PER_PAGE);
    // The hypervisor goes on: other hypercalls, and the ports the domain has.
    assert!(hc(&mut m, &mut set, 1, __HYPERVISOR_xen_version, [0; 5]) > 0);
    put(&mut m, ARG, &EvtchnClose { port: 3 });
    let args = [EVTCHNOP_close.into(), ARG, 0, 0, 0];
    assert_eq!(
        hc(&mut m, &mut set, 1, __HYPERVISOR_event_channel_op, args),
        0
    );
    assert_eq!(alloc(&mut m, &mut set), (0, 3));
}

/// The calls the hypercall fast path answers without a `Ctx` (`hypercall::answer`): only these,
/// each in a `Fast` row any domain may call, each answer the one the handler gives through a
/// `Ctx`, which records nothing either. Anything else (another subcommand, a value in the upper
/// half of `cmd`, which Xen's `unsigned int cmd` ignores) is answered as `execute` answers it.
#[test]
fn only_these_calls_are_answered_without_a_ctx() {
    use hypercall_abi::version::{XENVER_pagesize, XENVER_version};
    let (mut m, mut set) = world();
    let slot = set.slot_of(1).unwrap();
    let mut answered = Vec::new();
    let cmds = (0..64u64).chain([1 << 32, (1 << 32) | 7, u64::MAX]);
    for h in TABLE {
        for cmd in cmds.clone() {
            let a = [cmd, 0, 0, 0, 0];
            let mut perf = crate::domain::PerfCounters::default();
            let Some(rc) = answer(h.nr.into(), a, &mut perf) else {
                assert_eq!(perf.hypercalls, 0);
                continue;
            };
            answered.push((h.name, cmd));
            assert_eq!(perf.hypercalls, 1, "counted as execute counts it");
            assert_eq!(h.exit, super::table::Exit::Fast, "{}", h.name);
            assert_eq!(h.caller, super::table::Caller::Any, "{}", h.name);
            let (full, quiet) = with_set_ctx(&mut m, &mut set, slot, |ctx| {
                let rc = execute(ctx, h.nr.into(), a);
                let quiet = ctx.fx.nothing_to_do();
                core::mem::take(ctx.fx);
                (rc, quiet)
            });
            assert_eq!((rc, quiet), (full, true), "{} {cmd:#x}", h.name);
        }
    }
    let v = u64::from(XENVER_version);
    let p = u64::from(XENVER_pagesize);
    assert_eq!(
        answered,
        [
            ("xen_version", v),
            ("xen_version", p),
            ("xen_version", (1 << 32) | v),
            ("xen_version", (1 << 32) | p),
        ]
    );
}
