//! Host tests of the scheduler loop (`sched/core.rs`) and wake-ups (`sched/wake.rs`) on the fake
//! CPU: who runs, when a timer wakes whom, the idle loop, and what is loaded on the way out.

use crate::cpu::Arch;
use hypercall_abi::xen::VIRQ_TIMER;

use super::core::{after_entry, exit_to_guest, Entry};
use super::Sched;
use super::SLICE_NS;
use crate::cpu::Hv;
use crate::cpu_fake::FakeArch;
use crate::ctx::Kicks;
use crate::domain::pool::Pool;
use crate::domain::set::{DomainSet, MAX_PORT_2L};
use crate::domain::{MachineInfo, Shutdown};
use crate::evtchn::hypercall::bind_virq_for;
use crate::hypercall::testing::{guest, setup};
use crate::mm::frame_alloc::BootFrameAllocator;
use crate::regs::Regs;

/// Start of the tests' clock.
const T0: u64 = 1_000_000_000;

/// Domains 0, 1 and 2 in slots 0, 1 and 2, all runnable, without a periodic timer, upcalls
/// masked (as guests start), each with VIRQ_TIMER bound; slot 0 runs.
fn world() -> (Hv<FakeArch>, Box<DomainSet>, Regs) {
    world_of(3)
}

/// dom0 and `n - 1` domUs, each with `VIRQ_TIMER` bound, dom0 running.
fn world_of(n: u16) -> (Hv<FakeArch>, Box<DomainSet>, Regs) {
    let (m, _, info) = setup();
    let mut arch = FakeArch::new(m);
    let mut set = Box::new(DomainSet::new());
    for id in 0..n {
        let mut g = guest(id);
        g.dom.vcpu_mut().regs.rip = 0x1000 * (u64::from(id) + 1);
        g.sched.weight = super::DEFAULT_WEIGHT;
        g.dom.vcpu_mut().periodic_period = 0;
        crate::shared_info::set_upcall_mask(&mut arch, &g.dom, true);
        set.install(usize::from(id), g, MAX_PORT_2L);
        let (g, ports) = set.both_mut(usize::from(id)).unwrap();
        bind_virq_for(
            &mut arch,
            &mut BootFrameAllocator::empty(),
            &g.dom,
            ports,
            VIRQ_TIMER,
        )
        .unwrap();
    }
    let pool = Pool::new(BootFrameAllocator::empty(), 0);
    let mut hv = Hv::new(arch, info, pool, 0);
    let regs = super::core::start(&mut hv, &mut set);
    (hv, set, regs)
}

fn info() -> MachineInfo {
    setup().2
}

/// The way out after an entry that may have touched others (the full pass).
fn exit(hv: &mut Hv<FakeArch>, set: &mut DomainSet, regs: &mut Regs) {
    exit_to_guest(hv, set, regs, true, false);
}

#[test]
fn the_first_vcpu_is_loaded_with_its_registers() {
    let (hv, _set, regs) = world();
    assert_eq!(regs.rip, 0x1000);
    assert_eq!(hv.arch.loaded, Some(0));
    assert_eq!(hv.sched, Sched::new(0, T0));
    assert_eq!(hv.info.max_ram_page, info().max_ram_page);
}

#[test]
fn a_vcpu_keeps_the_cpu_for_its_slice_then_the_next_runnable_one_runs() {
    let (mut hv, mut set, mut regs) = world();
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 0, "slice left: it goes on");
    assert!(hv.arch.switches.is_empty());
    // Its registers as the guest left them are saved when it loses the CPU.
    regs.rax = 42;
    hv.arch.m.now = T0 + SLICE_NS;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 1);
    assert_eq!(hv.arch.switches, [(Some(0), 1)]);
    assert_eq!(regs.rip, 0x2000, "the next vCPU's registers");
    assert_eq!(set.guest(0).unwrap().dom.vcpu().regs.rax, 42);
    assert_eq!(set.guest(0).unwrap().sched.preemptions, 1);
    assert_eq!(set.guest(0).unwrap().sched.run_ns, SLICE_NS);
    assert_eq!(set.guest(1).unwrap().sched.dispatches, 1);
    assert_eq!(hv.arch.loaded, Some(1));
    assert_eq!(hv.sched.slice_end, T0 + 2 * SLICE_NS);
}

#[test]
fn a_blocked_vcpu_is_passed_over() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(1).unwrap().dom.vcpu_mut().blocked = true;
    set.guest_mut(0).unwrap().dom.vcpu_mut().yielded = true;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 2, "slot 1 is blocked");
    assert_eq!(
        set.guest(0).unwrap().sched.preemptions,
        0,
        "a yield is no preemption"
    );
}

#[test]
fn a_pending_upcall_wakes_a_blocked_vcpu() {
    let (mut hv, mut set, mut regs) = world();
    for slot in 1..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    let d2 = set.guest(2).unwrap().dom.clone();
    let _ = crate::shared_info::SharedInfoPage::of_mut(&mut hv.arch, d2.shared_info)
        .test_and_set_upcall_pending(0);
    set.guest_mut(0).unwrap().dom.vcpu_mut().yielded = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(!set.guest(2).unwrap().dom.vcpu().blocked, "woken");
    assert!(set.guest(1).unwrap().dom.vcpu().blocked, "still waiting");
    assert_eq!(hv.sched.cur, 2);
}

#[test]
fn an_expired_timer_sends_virq_timer_and_wakes_its_vcpu() {
    let (mut hv, mut set, mut regs) = world();
    let g1 = set.guest_mut(1).unwrap().dom.vcpu_mut();
    g1.blocked = true;
    g1.timer_deadline = Some(T0 + 1000);
    set.guest_mut(2).unwrap().dom.vcpu_mut().blocked = true;
    // Dom0 blocks too: the CPU idles until domain 1's timer.
    set.guest_mut(0).unwrap().dom.vcpu_mut().blocked = true;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.halts, 1, "one halt, ended by the timer");
    assert_eq!(hv.sched.idle_halts, 1);
    assert_eq!(hv.sched.idle_ns, 1000);
    let d1 = &set.guest(1).unwrap().dom;
    assert_eq!(
        d1.vcpu().timer_deadline,
        None,
        "a single-shot timer fires once"
    );
    assert!(!d1.vcpu().blocked, "the tick woke it");
    assert!(crate::shared_info::upcall_pending(&hv.arch, d1));
    assert_eq!(
        hv.arch.published,
        [1],
        "the time is published with the tick"
    );
    assert_eq!(hv.sched.cur, 1);
    assert_eq!(hv.arch.switches, [(Some(0), 1)]);
}

#[test]
fn idle_keeps_a_timer_counting_towards_an_earlier_deadline() {
    let (mut hv, mut set, mut regs) = world();
    // Armed for an earlier deadline and still counting (the way out arms the running vCPU's
    // periodic tick so); the idle loop's own deadline, domain 1's timer, is later.
    hv.arch.arm_timer(T0 + 500);
    hv.sched.armed = Some(T0 + 500);
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 3000);
    for slot in 0..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    // The first halt ends at the earlier deadline (not re-armed later and back), the second at
    // domain 1's timer, which wakes it.
    assert_eq!(hv.arch.halts, 2);
    assert_eq!(hv.sched.idle_ns, 3000);
    assert_eq!(hv.sched.cur, 1);
}

#[test]
fn the_timer_is_armed_for_the_earliest_deadline() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 3000);
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 2000);
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.timer, Some(T0 + 2000));
    assert_eq!(hv.sched.armed, Some(T0 + 2000));
    // Alone, with no deadline: nothing to arm.
    for slot in 1..3 {
        let _ = set.both_mut(slot).unwrap().1.take_pages();
        set.remove(slot);
    }
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.timer, None);
    assert_eq!(hv.sched.armed, None);
}

#[test]
fn the_fast_way_out_keeps_the_running_vcpu_while_its_slice_lasts() {
    let (mut hv, mut set, mut regs) = world();
    exit(&mut hv, &mut set, &mut regs);
    // Another domain's timer expired, but this entry touched nobody else: not looked at now.
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0);
    hv.arch.m.now = T0 + 10;
    exit_to_guest(&mut hv, &mut set, &mut regs, false, false);
    assert_eq!(hv.sched.cur, 0);
    assert_eq!(set.guest(1).unwrap().dom.vcpu().timer_deadline, Some(T0));
    // Once the slice is over the full pass runs, timers included.
    hv.arch.m.now = T0 + SLICE_NS;
    exit_to_guest(&mut hv, &mut set, &mut regs, false, false);
    assert_eq!(set.guest(1).unwrap().dom.vcpu().timer_deadline, None);
    assert_eq!(hv.sched.cur, 1);
}

#[test]
fn a_pending_flush_is_carried_out_before_the_vcpu_runs() {
    let (mut hv, mut set, mut regs) = world();
    let v = set.guest_mut(0).unwrap().dom.vcpu_mut();
    v.flush.flush_all(&mut v.perf);
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.performed.len(), 1);
    assert_eq!(hv.arch.performed[0].0, 0);
    assert!(hv.arch.performed[0].1.local_flush);
    assert!(
        set.guest(0).unwrap().dom.vcpu().flush.is_empty(),
        "done once"
    );
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.performed.len(), 1);
}

#[test]
fn an_expired_watchdog_shuts_the_domain_down_and_it_is_reported() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(2).unwrap().dom.watchdogs[0] = Some(T0);
    exit(&mut hv, &mut set, &mut regs);
    let d2 = set.guest(2).unwrap();
    assert_eq!(
        d2.dom.shutdown,
        Some(Shutdown::Requested(hypercall_abi::sched::SHUTDOWN_watchdog))
    );
    assert!(d2.reported);
    assert!(hv.arch.out.contains("Watchdog timer fired for domain 2\n"));
    assert!(hv
        .arch
        .out
        .contains("domain 2 () shut down (code 4): watchdog\n"));
}

/// A domain's shutdown is reported to dom0 (`VIRQ_DOM_EXC`) in the full pass after its
/// wake-ups, with no kick: dom0, waiting for it with no timeout, is woken in that pass, not
/// left blocked while light switches hand the CPU between the others. (Found in review: with
/// two domUs ping-ponging, dom0 stayed blocked for good.)
#[test]
fn a_report_to_a_waiting_dom0_wakes_it_in_the_same_pass() {
    let (mut hv, mut set, mut regs) = world();
    let (g, ports) = set.both_mut(0).unwrap();
    bind_virq_for(
        &mut hv.arch,
        &mut BootFrameAllocator::empty(),
        &g.dom,
        ports,
        hypercall_abi::xen::VIRQ_DOM_EXC,
    )
    .unwrap();
    g.dom.vcpu_mut().blocked = true;
    set.guest_mut(2).unwrap().dom.watchdogs[0] = Some(T0);
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(2).unwrap().reported);
    assert!(
        !set.guest(0).unwrap().dom.vcpu().blocked,
        "dom0 woken by the report"
    );
}

#[test]
#[should_panic(expected = "machine stopped: Fail(Dom0Crashed)")]
fn with_nothing_that_could_ever_wake_a_vcpu_dom0_is_crashed() {
    let (mut hv, mut set, mut regs) = world();
    for slot in 0..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
}

#[test]
fn an_unmasked_device_line_lets_the_cpu_halt_without_a_deadline() {
    let (mut hv, mut set, mut regs) = world();
    for slot in 0..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    hv.arch.lines_enabled = true;
    hv.arch.max_halts = 3;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exit(&mut hv, &mut set, &mut regs)
    }));
    assert!(
        r.is_err(),
        "nothing ever wakes: the fake stops after its halts"
    );
    assert_eq!(hv.arch.halts, 4);
    assert_eq!(hv.arch.timer, None, "no deadline: the timer is left alone");
    assert!(
        set.guest(0).unwrap().dom.shutdown.is_none(),
        "dom0 was not crashed"
    );
}

#[test]
fn a_poll_ends_when_its_deadline_passes() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(1).unwrap().dom.vcpu_mut().poll = Some(crate::domain::Poll {
        ports: heapless::Vec::new(),
        deadline: Some(T0 + 500),
    });
    set.guest_mut(0).unwrap().dom.vcpu_mut().yielded = true;
    set.guest_mut(2).unwrap().dom.vcpu_mut().blocked = true;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 0, "slot 1 still polls");
    hv.arch.m.now = T0 + 500;
    set.guest_mut(0).unwrap().dom.vcpu_mut().yielded = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpu().poll.is_none());
    assert_eq!(hv.sched.cur, 1);
}

#[test]
fn a_hypercall_that_kicked_nobody_leaves_the_other_domains_alone() {
    let (mut hv, mut set, mut regs) = world();
    exit(&mut hv, &mut set, &mut regs);
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0);
    hv.arch.m.now = T0 + 10;
    let none = Kicks::default();
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&none));
    assert_eq!(
        set.guest(1).unwrap().dom.vcpu().timer_deadline,
        Some(T0),
        "not looked at"
    );
    after_entry(&mut hv, &mut set, &mut regs, Entry::Exception);
    assert_eq!(set.guest(1).unwrap().dom.vcpu().timer_deadline, Some(T0));
    // Kicking domain 1 looks at it: its timer, already due, fires in place.
    let mut kicks = Kicks::default();
    kicks.add(1);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    assert_eq!(hv.sched.cur, 0, "slice left: the caller goes on");
    assert_eq!(set.guest(1).unwrap().dom.vcpu().timer_deadline, None);
}

#[test]
fn a_kick_wakes_the_other_domain_without_a_full_pass_and_it_runs_at_the_callers_slice_end() {
    let (mut hv, mut set, mut regs) = world();
    // Only domains 0 and 1 matter: 2 is blocked with nothing pending. 1 blocks too.
    for slot in 1..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(
        hv.arch.timer, None,
        "nobody else runnable: no slice end armed"
    );
    // Domain 1's upcall becomes pending (an event sent to it), and the send kicks it.
    let d1 = set.guest(1).unwrap().dom.clone();
    let _ = crate::shared_info::SharedInfoPage::of_mut(&mut hv.arch, d1.shared_info)
        .test_and_set_upcall_pending(0);
    // (A deadline of domain 2 set behind the scheduler's back: the light way does not look.)
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 5);
    hv.arch.m.now = T0 + 10;
    let mut kicks = Kicks::default();
    kicks.add(1);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    assert!(!set.guest(1).unwrap().dom.vcpu().blocked, "woken");
    assert_eq!(hv.sched.cur, 0, "the caller keeps the rest of its slice");
    assert!(hv.arch.switches.is_empty());
    assert_eq!(
        set.guest(2).unwrap().dom.vcpu().timer_deadline,
        Some(T0 + 5),
        "no full pass"
    );
    assert_eq!(
        hv.arch.timer,
        Some(T0 + SLICE_NS),
        "armed for the caller's slice end: another domain can run now"
    );
    // Its slice over, the caller gives way to the woken domain.
    hv.arch.m.now = T0 + SLICE_NS;
    after_entry(
        &mut hv,
        &mut set,
        &mut regs,
        Entry::Interrupt { tick: false },
    );
    assert_eq!(hv.sched.cur, 1);
    assert_eq!(hv.arch.switches, [(Some(0), 1)]);
}

#[test]
fn kicks_past_the_lists_capacity_take_the_full_pass_which_wakes_every_one_of_them() {
    // Eleven blocked domUs, each with an event pending, all kicked by one call: the list names
    // eight, so the light way would miss three; the full pass wakes all eleven.
    let (mut hv, mut set, mut regs) = world_of(12);
    for slot in 1..12 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    let mut kicks = Kicks::default();
    for slot in 1..12 {
        let d = set.guest(slot).unwrap().dom.clone();
        let _ = crate::shared_info::SharedInfoPage::of_mut(&mut hv.arch, d.shared_info)
            .test_and_set_upcall_pending(0);
        kicks.add(d.id);
    }
    assert!(kicks.overflowed());
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    for slot in 1..12 {
        assert!(
            !set.guest(slot).unwrap().dom.vcpu().blocked,
            "d{slot} still blocked"
        );
    }
}

#[test]
fn a_kicked_domains_due_timer_runs_in_place_and_a_watchdog_it_fires_brings_the_full_pass() {
    let (mut hv, mut set, mut regs) = world();
    for slot in 1..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    // Domain 1 waits; its timer came due just before dom0 kicks it (a kick that, say, found
    // its port masked: no upcall of its own).
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 5);
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 5);
    hv.arch.m.now = T0 + 10;
    let mut kicks = Kicks::default();
    kicks.add(1);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    let d1 = &set.guest(1).unwrap().dom;
    assert_eq!(d1.vcpu().timer_deadline, None, "fired in place");
    assert!(!d1.vcpu().blocked, "its VIRQ_TIMER woke it");
    assert_eq!(
        set.guest(2).unwrap().dom.vcpu().timer_deadline,
        Some(T0 + 5),
        "no full pass"
    );
    assert_eq!(hv.sched.cur, 0);
    // Domain 1's watchdog expires as dom0 kicks it: it is shut down, and the full pass (which
    // reports it) runs the others' timers too.
    set.guest_mut(1).unwrap().dom.watchdogs[0] = Some(T0 + 10);
    let mut kicks = Kicks::default();
    kicks.add(1);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    assert!(set.guest(1).unwrap().dom.shutdown.is_some());
    assert_eq!(
        set.guest(2).unwrap().dom.vcpu().timer_deadline,
        None,
        "full pass"
    );
}

#[test]
fn a_kick_of_a_shut_down_domain_or_of_the_caller_takes_the_full_pass() {
    let (mut hv, mut set, mut regs) = world();
    exit(&mut hv, &mut set, &mut regs);
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0);
    hv.arch.m.now = T0 + 10;
    // The caller kicked itself (another of its vCPUs): everyone is looked at.
    let mut kicks = Kicks::default();
    kicks.add(0);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    assert_eq!(set.guest(2).unwrap().dom.vcpu().timer_deadline, None);
    // A domain shut down by the call (SCHEDOP_remote_shutdown): the full pass reports it.
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0);
    set.guest_mut(1).unwrap().dom.shutdown = Some(Shutdown::Crashed("test"));
    let mut kicks = Kicks::default();
    kicks.add(1);
    after_entry(&mut hv, &mut set, &mut regs, Entry::Hypercall(&kicks));
    assert_eq!(set.guest(2).unwrap().dom.vcpu().timer_deadline, None);
}

/// The way out of an entry that changed no other domain (a `SCHEDOP_block`, say).
fn exit_own(hv: &mut Hv<FakeArch>, set: &mut DomainSet, regs: &mut Regs) {
    exit_to_guest(hv, set, regs, false, false);
}

#[test]
fn a_vcpu_that_blocks_hands_the_cpu_to_the_next_runnable_one_without_the_full_pass() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(1).unwrap().dom.vcpu_mut().blocked = true;
    exit(&mut hv, &mut set, &mut regs);
    // (A deadline of domain 1, already due, set behind the scheduler's back: only a full pass
    // would see it.)
    set.guest_mut(1).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 5);
    hv.arch.m.now = T0 + 10;
    regs.rax = 7;
    set.guest_mut(0).unwrap().dom.vcpu_mut().blocked = true;
    exit_own(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 2, "the next runnable one after 0 (1 waits)");
    assert_eq!(hv.arch.switches, [(Some(0), 2)]);
    assert_eq!(hv.sched.light_switches, 1);
    assert_eq!(regs.rip, 0x3000, "domain 2's registers");
    assert_eq!(set.guest(0).unwrap().dom.vcpu().regs.rax, 7, "0's saved");
    assert_eq!(
        set.guest(1).unwrap().dom.vcpu().timer_deadline,
        Some(T0 + 5),
        "no full pass"
    );
    // Domain 1 is no longer "another domain" to the scheduler's record, whose deadlines it
    // takes from every domain but the running one at each switch: the next block sees the
    // deadline due and takes the full pass, which fires it.
    set.guest_mut(2).unwrap().dom.vcpu_mut().blocked = true;
    exit_own(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.light_switches, 1);
    assert_eq!(set.guest(1).unwrap().dom.vcpu().timer_deadline, None);
    assert_eq!(hv.sched.cur, 1, "woken by its timer");
    // Domain 1 blocks again (its upcall taken), with 0 runnable: round the wrap to 0.
    let d1 = set.guest(1).unwrap().dom.clone();
    let _ = crate::shared_info::SharedInfoPage::of_mut(&mut hv.arch, d1.shared_info)
        .test_and_clear_upcall_pending(0);
    set.guest_mut(0).unwrap().dom.vcpu_mut().blocked = false;
    set.guest_mut(1).unwrap().dom.vcpu_mut().blocked = true;
    exit_own(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.cur, 0);
    assert_eq!(hv.sched.light_switches, 2);
}

#[test]
fn a_blocking_vcpu_takes_the_full_pass_when_another_domain_has_a_deadline_due_or_none_can_run() {
    let (mut hv, mut set, mut regs) = world();
    // Domain 1 waits for its timer, which the full pass knows of.
    let v1 = set.guest_mut(1).unwrap().dom.vcpu_mut();
    v1.blocked = true;
    v1.timer_deadline = Some(T0 + 5);
    exit(&mut hv, &mut set, &mut regs);
    hv.arch.m.now = T0 + 10;
    set.guest_mut(0).unwrap().dom.vcpu_mut().blocked = true;
    exit_own(&mut hv, &mut set, &mut regs);
    assert_eq!(
        hv.sched.light_switches, 0,
        "a deadline of another domain was due"
    );
    let d1 = &set.guest(1).unwrap().dom;
    assert_eq!(d1.vcpu().timer_deadline, None, "the full pass fired it");
    assert!(!d1.vcpu().blocked, "and woke domain 1");
    assert_eq!(hv.sched.cur, 1, "which runs next in the round");
    // Nobody runnable, the caller blocks too (its upcall taken): the full pass idles until a
    // timer.
    let d1 = set.guest(1).unwrap().dom.clone();
    let _ = crate::shared_info::SharedInfoPage::of_mut(&mut hv.arch, d1.shared_info)
        .test_and_clear_upcall_pending(0);
    for slot in 0..3 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0 + 1000);
    exit_own(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.sched.light_switches, 0);
    assert_eq!(hv.arch.halts, 1);
    assert_eq!(hv.sched.cur, 2, "woken by its timer");
}

#[test]
fn a_timer_tick_reads_the_debug_keys_and_runs_the_full_pass() {
    let (mut hv, mut set, mut regs) = world();
    set.guest_mut(2).unwrap().dom.vcpu_mut().timer_deadline = Some(T0);
    hv.arch.keys.extend(b"h");
    after_entry(
        &mut hv,
        &mut set,
        &mut regs,
        Entry::Interrupt { tick: false },
    );
    assert!(
        hv.arch.out.is_empty(),
        "keys are read on the timer tick only"
    );
    assert_eq!(set.guest(2).unwrap().dom.vcpu().timer_deadline, None);
    after_entry(
        &mut hv,
        &mut set,
        &mut regs,
        Entry::Interrupt { tick: true },
    );
    assert!(hv.arch.out.starts_with("'q' domains"), "{}", hv.arch.out);
}

/// Domain 1 of [`world`] with a second vCPU, initialised and up (registers at 0x2100).
fn world_with_two_vcpus() -> (Hv<FakeArch>, Box<DomainSet>, Regs) {
    let (mut hv, mut set, regs) = world();
    let d = &mut set.guest_mut(1).unwrap().dom;
    d.set_max_vcpus(2);
    let v = &mut d.vcpus[1];
    v.initialised = true;
    v.up = true;
    v.periodic_period = 0;
    v.regs.rip = 0x2100;
    let d = d.clone();
    crate::shared_info::SharedInfoPage::of_domain_mut(&mut hv.arch, &d).set_upcall_mask(1, true);
    (hv, set, regs)
}

#[test]
fn every_vcpu_of_a_domain_takes_its_turn_with_its_own_registers() {
    let (mut hv, mut set, mut regs) = world_with_two_vcpus();
    for slot in [0, 2] {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!((hv.sched.cur, set.guest(1).unwrap().dom.cur_vcpu), (1, 0));
    assert_eq!(regs.rip, 0x2000);
    regs.rax = 7;
    hv.arch.m.now = T0 + 2 * SLICE_NS;
    exit(&mut hv, &mut set, &mut regs);
    let d1 = &set.guest(1).unwrap().dom;
    assert_eq!(
        (hv.sched.cur, d1.cur_vcpu),
        (1, 1),
        "vCPU 1 of the same domain"
    );
    assert_eq!(regs.rip, 0x2100, "its own registers");
    assert_eq!(d1.vcpus[0].regs.rax, 7, "vCPU 0's saved");
    let unit = |slot: usize, v: usize| super::core::unit(slot, v);
    assert_eq!(
        hv.arch.unit_switches.last(),
        Some(&(Some(unit(1, 0)), unit(1, 1)))
    );
    assert_eq!(
        d1.vcpus[0].runstate.state,
        hypercall_abi::vcpu::RUNSTATE_runnable
    );
    assert_eq!(
        d1.vcpus[1].runstate.state,
        hypercall_abi::vcpu::RUNSTATE_running
    );
    // And back after its slice.
    hv.arch.m.now = T0 + 4 * SLICE_NS;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(set.guest(1).unwrap().dom.cur_vcpu, 0);
    assert_eq!((regs.rip, regs.rax), (0x2000, 7));
}

#[test]
fn one_vcpu_blocks_while_the_other_runs_and_only_its_own_upcall_wakes_it() {
    let (mut hv, mut set, mut regs) = world_with_two_vcpus();
    for slot in [0, 2] {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    set.guest_mut(1).unwrap().dom.vcpus[1].blocked = true;
    exit(&mut hv, &mut set, &mut regs);
    // vCPU 0 runs alone, slice after slice.
    hv.arch.m.now = T0 + 3 * SLICE_NS;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!((hv.sched.cur, set.guest(1).unwrap().dom.cur_vcpu), (1, 0));
    // An upcall for vCPU 0 does not wake vCPU 1.
    let d1 = set.guest(1).unwrap().dom.clone();
    let _ = crate::shared_info::SharedInfoPage::of_domain_mut(&mut hv.arch, &d1)
        .test_and_set_upcall_pending(0);
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpus[1].blocked);
    // One for vCPU 1 (an IPI's) does, and it gets the CPU when vCPU 0 yields.
    let _ = crate::shared_info::SharedInfoPage::of_domain_mut(&mut hv.arch, &d1)
        .test_and_set_upcall_pending(1);
    set.guest_mut(1).unwrap().dom.vcpu_mut().yielded = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(!set.guest(1).unwrap().dom.vcpus[1].blocked, "woken");
    assert_eq!(set.guest(1).unwrap().dom.cur_vcpu, 1);
    assert_eq!(regs.rip, 0x2100);
}

#[test]
fn a_vcpu_that_is_down_or_not_initialised_never_runs() {
    let (mut hv, mut set, mut regs) = world_with_two_vcpus();
    set.guest_mut(1).unwrap().dom.vcpus[1].up = false;
    for slot in [0, 2] {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    for i in 1..5 {
        hv.arch.m.now = T0 + i * 2 * SLICE_NS;
        exit(&mut hv, &mut set, &mut regs);
        assert_eq!(set.guest(1).unwrap().dom.cur_vcpu, 0);
    }
}

#[test]
fn an_nmi_wakes_a_blocked_or_polling_vcpu_unless_masked() {
    let (mut hv, mut set, mut regs) = world_with_two_vcpus();
    for slot in [0, 2] {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    set.guest_mut(1).unwrap().dom.vcpus[1].blocked = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpus[1].blocked);
    // An NMI it cannot take yet (one in progress) leaves it waiting.
    let v = &mut set.guest_mut(1).unwrap().dom.vcpus[1];
    v.nmi_pending = true;
    v.nmi_masked = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpus[1].blocked, "masked");
    // Unmasked (its iret): woken, as Xen's vcpu_kick does after VCPUOP_send_nmi.
    set.guest_mut(1).unwrap().dom.vcpus[1].nmi_masked = false;
    exit(&mut hv, &mut set, &mut regs);
    assert!(!set.guest(1).unwrap().dom.vcpus[1].blocked, "woken");
    // A poll with no port pending and no deadline ends the same way.
    let v = &mut set.guest_mut(1).unwrap().dom.vcpus[1];
    v.nmi_pending = false;
    v.poll = Some(crate::domain::Poll {
        ports: heapless::Vec::new(),
        deadline: None,
    });
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpus[1].poll.is_some());
    set.guest_mut(1).unwrap().dom.vcpus[1].nmi_pending = true;
    exit(&mut hv, &mut set, &mut regs);
    assert!(set.guest(1).unwrap().dom.vcpus[1].poll.is_none());
}

#[test]
fn a_context_switch_updates_both_runstate_areas() {
    use crate::hypercall::testing::GUEST_VA;
    use hypercall_abi::vcpu::{RUNSTATE_runnable, RUNSTATE_running, VcpuRunstateInfo};
    let (mut hv, mut set, mut regs) = world_with_two_vcpus();
    for slot in [0, 2] {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    let d = &mut set.guest_mut(1).unwrap().dom;
    let l4 = d.vcpus[0].l4;
    d.vcpus[1].l4 = l4;
    d.vcpus[0].runstate_area = GUEST_VA + 0x100;
    d.vcpus[1].runstate_area = GUEST_VA + 0x200;
    let read = |hv: &mut Hv<FakeArch>, va: u64| -> VcpuRunstateInfo {
        let g = crate::guest_access::PageTableGuest {
            mem: &mut hv.arch,
            l4,
        };
        crate::guest_access::copy_from_guest(&g, crate::guest_access::GuestPtr::new(va)).unwrap()
    };
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(set.guest(1).unwrap().dom.cur_vcpu, 0);
    // vCPU 0 got the CPU: its area says running (since its domain was built).
    let t1 = set.guest(1).unwrap().dom.vcpus[0].runstate.entry;
    let got = read(&mut hv, GUEST_VA + 0x100);
    assert_eq!((got.state, got.state_entry_time), (RUNSTATE_running, t1));
    // Its slice ends: vCPU 1 runs; both areas are rewritten.
    hv.arch.m.now = T0 + 2 * SLICE_NS;
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(set.guest(1).unwrap().dom.cur_vcpu, 1);
    let t2 = hv.arch.m.now;
    let v0 = read(&mut hv, GUEST_VA + 0x100);
    assert_eq!((v0.state, v0.state_entry_time), (RUNSTATE_runnable, t2));
    assert_eq!(v0.time[RUNSTATE_running as usize], t2 - t1);
    let v1 = read(&mut hv, GUEST_VA + 0x200);
    assert_eq!((v1.state, v1.state_entry_time), (RUNSTATE_running, t2));
}

#[test]
fn a_domain_in_the_last_slot_has_its_timer_run_and_is_scheduled() {
    let (mut hv, mut set, mut regs) = world();
    // Slot 2's domain moves to the last slot, leaving a gap the passes skip.
    let last = crate::domain::set::MAX_DOMAINS - 1;
    // (The test keeps no accounts of host pages: its channel pages are dropped.)
    let _ = set.both_mut(2).unwrap().1.take_pages();
    let mut g = set.remove(2).unwrap();
    g.dom.vcpu_mut().blocked = true;
    g.dom.vcpu_mut().timer_deadline = Some(T0 + 500);
    set.install(last, g, MAX_PORT_2L);
    let (g, ports) = set.both_mut(last).unwrap();
    bind_virq_for(
        &mut hv.arch,
        &mut BootFrameAllocator::empty(),
        &g.dom,
        ports,
        VIRQ_TIMER,
    )
    .unwrap();
    for slot in 0..2 {
        set.guest_mut(slot).unwrap().dom.vcpu_mut().blocked = true;
    }
    exit(&mut hv, &mut set, &mut regs);
    assert_eq!(hv.arch.halts, 1, "idle until the last slot's deadline");
    assert_eq!(hv.sched.idle_ns, 500);
    let d = &set.guest(last).unwrap().dom;
    assert_eq!(d.vcpu().timer_deadline, None);
    assert!(!d.vcpu().blocked, "its timer woke it");
    assert_eq!(hv.sched.cur, last);
    assert_eq!(regs.rip, 0x3000);
}
