//! Host tests of the debug keys and the register dump (`keyhandler.rs`) on the fake CPU.

use hypercall_abi::xen::VIRQ_CONSOLE;

use crate::cpu::Hv;
use crate::cpu_fake::FakeArch;
use crate::domain::pool::Pool;
use crate::domain::set::{DomainSet, MAX_PORT_2L};
use crate::evtchn::hypercall::bind_virq_for;
use crate::hypercall::testing::{guest, setup};
use crate::keyhandler::poll;
use crate::mm::frame_alloc::BootFrameAllocator;
use crate::regs::Regs;
use crate::regs::RegsDump;

/// dom0 (slot 0, running, `VIRQ_CONSOLE` bound) and domain 4 (slot 2, blocked).
fn world() -> (Hv<FakeArch>, Box<DomainSet>) {
    let (m, _, info) = setup();
    let mut arch = FakeArch::new(m);
    let mut set = Box::new(DomainSet::new());
    set.install(0, guest(0), MAX_PORT_2L);
    let mut d4 = guest(4);
    d4.dom.vcpu_mut().blocked = true;
    d4.sched.weight = 512;
    set.install(2, d4, MAX_PORT_2L);
    let (g, ports) = set.both_mut(0).unwrap();
    bind_virq_for(
        &mut arch,
        &mut BootFrameAllocator::empty(),
        &g.dom,
        ports,
        VIRQ_CONSOLE,
    )
    .unwrap();
    let hv = Hv::new(arch, info, Pool::new(BootFrameAllocator::empty(), 0), 0);
    (hv, set)
}

fn keys(hv: &mut Hv<FakeArch>, set: &mut DomainSet, regs: &Regs, keys: &[u8]) -> String {
    hv.arch.out.clear();
    hv.arch.keys.extend(keys);
    poll(hv, set, regs);
    std::mem::take(&mut hv.arch.out)
}

#[test]
fn q_lists_each_domain_and_its_vcpu() {
    let (mut hv, mut set) = world();
    let regs = Regs {
        rip: 0xffff_8000_0000_1234,
        ..Regs::default()
    };
    let out = keys(&mut hv, &mut set, &regs, b"q");
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("d0 (): 100 pages (max 200), privileged, shutdown None"));
    assert!(
        lines[1].contains("kernel mode, running, rip 0xffff800000001234"),
        "{out}"
    );
    assert!(lines[2].starts_with("d4 (): 104 pages (max 204), unprivileged"));
    assert!(lines[3].contains(", blocked, "), "{out}");
    assert!(lines[3].ends_with("run 4000 ns"), "{out}");
}

#[test]
fn r_shows_the_scheduler_and_h_the_keys() {
    let (mut hv, mut set) = world();
    hv.sched.idle_ns = 77;
    hv.sched.idle_halts = 3;
    hv.arch.timer_interrupts = 9;
    let out = keys(&mut hv, &mut set, &Regs::default(), b"rh");
    assert!(out.starts_with(
        "scheduler: weighted round robin, slice 5000 us, idle 77 ns in 3 halts, timer interrupts 9, free frames 0, light switches 0\n"
    ), "{out}");
    assert!(out.contains("  d0: weight 0, run 0 ns, dispatched 0, preempted 0 (running)\n"));
    assert!(out.contains("  d4: weight 512, run 4000 ns, dispatched 0, preempted 0\n"));
    assert!(out.ends_with(
        "'q' domains, 'e' event channels, 'r' scheduler, 'p' perf counters, 'P' reset them\n"
    ));
}

#[test]
fn e_lists_bound_channels_and_p_counters_reset_by_capital_p() {
    let (mut hv, mut set) = world();
    set.guest_mut(2).unwrap().dom.vcpu_mut().perf.hypercalls = 5;
    let out = keys(&mut hv, &mut set, &Regs::default(), b"e");
    assert_eq!(
        out,
        "d0 event channels:\n  port 1: Virq { virq: 2 } pending 0\nd4 event channels:\n"
    );
    let out = keys(&mut hv, &mut set, &Regs::default(), b"p");
    assert!(out.contains("d4 perf counters:"), "{out}");
    assert!(out.contains(" hypercalls=5"), "{out}");
    keys(&mut hv, &mut set, &Regs::default(), b"P");
    assert_eq!(set.guest(2).unwrap().dom.vcpu().perf.hypercalls, 0);
    assert_eq!(
        keys(&mut hv, &mut set, &Regs::default(), b"x"),
        "",
        "unknown keys do nothing"
    );
}

#[test]
fn console_input_for_dom0_raises_virq_console() {
    let (mut hv, mut set) = world();
    crate::shared_info::set_upcall_mask(&mut hv.arch, &set.guest(0).unwrap().dom, true);
    hv.arch.dom0_input = true;
    keys(&mut hv, &mut set, &Regs::default(), b"");
    assert!(crate::shared_info::upcall_pending(
        &hv.arch,
        &set.guest(0).unwrap().dom
    ));
}

#[test]
fn a_register_dump_has_xens_six_lines() {
    let r = Regs {
        rip: 0x1234,
        cs: 0xe033,
        rax: 0xabc,
        r15: 0xf,
        vector: 14,
        error_code: 2,
        ..Regs::default()
    };
    let s = RegsDump(&r).to_string();
    assert_eq!(s.lines().count(), 6);
    assert!(s.starts_with("RIP: e033:0000000000001234  RFLAGS: 0000000000000000"));
    assert!(s.contains("rax: 0000000000000abc rbx:"));
    assert!(s.contains("r15: 000000000000000f\n"));
    assert!(s.ends_with("vector: 0xe error code: 0x2\n"));
}
