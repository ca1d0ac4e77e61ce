//! QEMU tests of several domains: dom0 with boot-time domUs exchanging events and grant data,
//! xenstore and console rings, eight domUs at once, and crashed domUs contained and reclaimed.

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending, Run, XEN_CMDLINE};

/// Boots dom0 (no command line: its services mode) with one domU per entry of `domus`.
fn boot(domus: &[String], timeout: Duration) -> Run {
    boot_with(String::new(), domus, timeout)
}

/// As [`boot`], with a command line for dom0.
fn boot_with(dom0: String, domus: &[String], timeout: Duration) -> Run {
    let mut modules = vec![(guest_kernel_image(), dom0)];
    modules.extend(domus.iter().map(|c| (guest_kernel_image(), c.clone())));
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules,
        qemu_extra: Vec::new(),
        timeout,
    };
    boot.run().unwrap_or_else(|e| panic!("harness error: {e}"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn dom0_and_a_domu_exchange_events_grants_and_xenstore() {
    let run = boot(&["name=web mem=16M".into()], Duration::from_secs(60));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    run.expect("*** Built d1 (web)");
    // Both use FIFO event channels (the hypervisor offers them), for everything below.
    assert!(
        run.log.iter().any(|l| l == "events: FIFO (4096 ports)"),
        "dom0 on FIFO events; log:\n{log}"
    );
    run.expect("(d1) events: FIFO (4096 ports)");
    run.expect("toolstack: introduced d1 (web)");
    // The domU's console reaches the serial log through dom0's console daemon.
    run.expect("(d1) domU: my domid is 1 (from xenstore)");
    run.expect("(d1) domU: ping-pong 100 round trips ok, grant copy verified");
    run.expect("dom0: d1 ping-pong 100 ok, grant copy 4096 bytes ok");
    run.expect("domain 1 (web) shut down (code 0): poweroff");
    run.expect("toolstack: d1 (web) shut down (poweroff)");
    run.expect("toolstack: d1 (web) destroyed");
    let (before, after) = run.free_frames();
    assert_eq!(
        after,
        Some(before),
        "every frame of d1 back in the pool; log:\n{log}"
    );
    run.expect("Hardware Dom0 halted: powering off");
    // Figures, not a gate: the machine is shared.
    println!(
        "dom0 + 1 domU: {:.2} s wall from QEMU start to power-off",
        run.elapsed.as_secs_f64()
    );
}

/// `evtchn=2l` keeps a guest on the 2-level ABI: dom0 on 2-level with one domU on FIFO and one
/// on 2-level, so interdomain events cross between the two ABIs both ways, and the 2-level path
/// stays tested now that FIFO is the default.
#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn two_level_and_fifo_guests_exchange_events() {
    let run = boot_with(
        "evtchn=2l".into(),
        &[
            "name=fifo mem=16M".into(),
            "name=twolevel mem=16M evtchn=2l".into(),
        ],
        Duration::from_secs(120),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    assert!(
        run.log
            .iter()
            .any(|l| l == "events: 2-level (forced by evtchn=2l)"),
        "dom0 on 2-level; log:\n{log}"
    );
    run.expect("(d1) events: FIFO (4096 ports)");
    run.expect("(d2) events: 2-level (forced by evtchn=2l)");
    for id in 1..=2 {
        run.expect(&format!(
            "(d{id}) domU: ping-pong 100 round trips ok, grant copy verified"
        ));
        run.expect(&format!(
            "dom0: d{id} ping-pong 100 ok, grant copy 4096 bytes ok"
        ));
    }
    let (before, after) = run.free_frames();
    assert_eq!(
        after,
        Some(before),
        "every frame back (the FIFO pages too); log:\n{log}"
    );
}

/// `vcpus=2`: each domU brings its second vCPU up and runs the cross-vCPU test
/// (`guest-kernel/src/domu/smp.rs`), one on FIFO events and one on 2-level, then the usual demo
/// on vCPU 0. Every step must print its PASS line, none a FAIL.
#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_domu_with_two_vcpus_brings_the_second_up_and_exchanges_events_across_them() {
    let run = boot(
        &[
            "name=smp mem=16M vcpus=2".into(),
            "name=smp2l mem=16M vcpus=2 evtchn=2l".into(),
        ],
        Duration::from_secs(180),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    assert!(
        !run.log.iter().any(|l| l.contains("smp: FAIL")),
        "no step failed; log:\n{log}"
    );
    for id in 1..=2 {
        run.expect(&format!("(d{id}) smp: 2 vCPUs; bringing vCPU 1 up"));
        for step in ["bring-up", "ipi", "bind-vcpu", "block", "down-up"] {
            run.expect(&format!("(d{id}) smp: PASS {step}: "));
        }
        run.expect(&format!("(d{id}) smp: all PASS"));
        // vCPU 0 goes on with the demo alone.
        run.expect(&format!(
            "(d{id}) domU: ping-pong 100 round trips ok, grant copy verified"
        ));
    }
    run.expect("(d1) events: FIFO (4096 ports)");
    run.expect("(d2) events: 2-level (forced by evtchn=2l)");
    let (before, after) = run.free_frames();
    assert_eq!(
        after,
        Some(before),
        "every frame back (vCPU 1's vcpu_info and FIFO pages too); log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn eight_domus_ping_pong_and_copy_grants_with_dom0() {
    let domus: Vec<String> = (1..=8).map(|i| format!("name=vm{i} mem=16M")).collect();
    let run = boot(&domus, Duration::from_secs(240));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    for id in 1..=8 {
        run.expect(&format!(
            "(d{id}) domU: ping-pong 100 round trips ok, grant copy verified"
        ));
        run.expect(&format!(
            "dom0: d{id} ping-pong 100 ok, grant copy 4096 bytes ok"
        ));
        run.expect(&format!("toolstack: d{id} (vm{id}) destroyed"));
    }
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame back; log:\n{log}");
    println!(
        "dom0 + 8 domUs: {:.2} s wall from QEMU start to power-off",
        run.elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn seventeen_domus_from_one_module_past_the_old_limit_of_16_domains_each_ping_pong_with_dom0() {
    // One boot module, seventeen domUs (`copies=`): 18 domains, more than the 16 slots there were.
    let run = boot(
        &["name=vm mem=12M copies=17 pingpong=20".into()],
        Duration::from_secs(240),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    for id in 1..=17 {
        run.expect(&format!("*** Built d{id} (vm{id})"));
        run.expect(&format!(
            "(d{id}) domU: ping-pong 20 round trips ok, grant copy verified"
        ));
        run.expect(&format!(
            "dom0: d{id} ping-pong 20 ok, grant copy 4096 bytes ok"
        ));
        // The hypervisor numbers the copies; dom0 shows the name on the domU's command line.
        run.expect(&format!("toolstack: d{id} (vm) destroyed"));
    }
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame back; log:\n{log}");
    println!(
        "dom0 + 17 domUs: {:.2} s wall from QEMU start to power-off",
        run.elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn sixty_four_domus_of_4_mib_each_ping_pong_grant_copy_and_read_their_vbd() {
    // The issue's scale figure: dom0 + 64 domUs of 4 MiB in 512 MiB. A 4 MiB domU fits because
    // the kernel's heap, its block data pages and dom0's mapping windows are not in the image
    // (heap and data pages come from the domain's free pages at run time, the windows are
    // address space only); dom0's heap grows with the domUs it serves.
    let run = boot(
        &["name=vm mem=4M copies=64 pingpong=20".into()],
        Duration::from_secs(300),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    for id in 1..=64 {
        run.expect(&format!("*** Built d{id} (vm{id}): 4 MiB"));
        run.expect(&format!("(d{id}) guest-kernel 0.1.0: booted as domU"));
        run.expect(&format!(
            "(d{id}) domU: ping-pong 20 round trips ok, grant copy verified"
        ));
        run.expect(&format!(
            "dom0: d{id} ping-pong 20 ok, grant copy 4096 bytes ok"
        ));
        // Its own 32 sectors of dom0's 2048-sector RAM disk, by its place among the 64.
        run.expect(&format!(
            "blkback: d{id} vbd 51712 is sectors {}..{} of the disk (slot {})",
            (id - 1) * 32,
            id * 32,
            id - 1
        ));
        run.expect(&format!("bench blkback dom={id} requests=1 errors=0"));
        run.expect(&format!("toolstack: d{id} (vm) destroyed"));
    }
    assert!(
        !run.has("FAILED") && !run.has("crashed") && !run.has("cannot"),
        "log:\n{log}"
    );
    run.expect("dom0: heap ");
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame back; log:\n{log}");
    println!(
        "dom0 + 64 domUs of 4 MiB: {:.2} s wall from QEMU start to power-off",
        run.elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn crashed_domus_are_reported_destroyed_and_reclaimed_while_the_others_run_on() {
    // d1..d3 crash three different ways; d4 is an ordinary domU that must finish its work.
    let domus = [
        "name=wild mem=16M crash=wild-write",
        "name=triple mem=16M crash=triple-fault",
        "name=abi mem=16M crash=bad-hypercall",
        "name=good mem=16M",
    ]
    .map(String::from);
    let run = boot(&domus, Duration::from_secs(120));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "dom0 survives; log:\n{log}");
    for (id, name, way) in [
        (1, "wild", "wild-write"),
        (2, "triple", "triple-fault"),
        (3, "abi", "bad-hypercall"),
    ] {
        run.expect(&format!("(d{id}) domU: crashing by {way}"));
        // The hypervisor crashes it, dom0 hears of it (VIRQ_DOM_EXC) and destroys it.
        run.expect(&format!("domain {id} ({name}) crashed: "));
        run.expect(&format!("toolstack: d{id} ({name}) crashed"));
        run.expect(&format!("toolstack: d{id} ({name}) destroyed"));
        run.expect(&format!("domain {id}: all "));
        assert!(
            !run.has(&format!("(d{id}) domU: still alive after crash")),
            "d{id} was not crashed; log:\n{log}"
        );
    }
    run.expect("(d4) domU: ping-pong 100 round trips ok, grant copy verified");
    run.expect("dom0: d4 ping-pong 100 ok, grant copy 4096 bytes ok");
    let (before, after) = run.free_frames();
    assert_eq!(
        after,
        Some(before),
        "every frame of the dead domains back in the pool; log:\n{log}"
    );
}

/// Two-domain cases (dom0 against a domU's ports and grants), which the single-domain
/// differential suite cannot run on Xen 4.17 (no toolstack there to start a domU). The expected
/// values are Xen 4.17's answers, from `xen/common/event_channel.c` and `grant_table.c`.
const TWO_DOMAIN_CASES: &[(&str, i64)] = &[
    // bind_interdomain to a remote port that is no longer unbound: -EINVAL.
    ("evtchn.rebind_bound_remote_port", -22),
    // A remote port beyond the remote domain's valid ports: -EINVAL (`port_is_valid`).
    ("evtchn.bind_remote_port_beyond_valid", -22),
    // Remote port 0 is reserved, not unbound: -EINVAL.
    ("evtchn.bind_remote_port_zero", -22),
    // No such remote domain: -ESRCH.
    ("evtchn.bind_missing_domain", -3),
    ("evtchn.send_bound", 0),
    // A read-only grant mapped writable: GNTST_general_error (Xen's "r/o grant entry" pin fail).
    ("grant.map_readonly_grant_writable", -1),
    ("grant.map_readonly_grant_readonly", 0),
    ("grant.unmap", 0),
    // The handle is free after the first unmap: GNTST_bad_handle.
    ("grant.double_unmap", -4),
    ("grant.map_writable_grant_writable", 0),
    ("grant.unmap_writable", 0),
    // A reference beyond the granter's table: GNTST_bad_gntref.
    ("grant.map_ref_out_of_range", -3),
    // No such granting domain: GNTST_bad_domain.
    ("grant.map_missing_domain", -2),
    ("grant.unmap_bad_handle", -4),
    // A read-only grant as a copy destination: GNTST_general_error.
    ("grant.copy_into_readonly_grant", -1),
    ("grant.copy_from_readonly_grant", 0),
    // offset + length beyond the page: GNTST_bad_copy_arg.
    ("grant.copy_longer_than_a_page", -10),
];

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn two_domain_event_channel_and_grant_cases_give_xens_answers() {
    let run = boot_with(
        "two-domain-cases".into(),
        &["name=peer mem=16M".into()],
        Duration::from_secs(60),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    for (name, want) in TWO_DOMAIN_CASES {
        let prefix = format!("case2 {name} = ");
        let got = run
            .log
            .iter()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<i64>().ok())
            .unwrap_or_else(|| panic!("case {name} missing; log:\n{log}"));
        assert_eq!(got, *want, "case {name}");
    }
    let all = run.log.iter().filter(|l| l.starts_with("case2 ")).count();
    assert_eq!(all, TWO_DOMAIN_CASES.len(), "every case is stated here");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn dom0_restarts_a_domu_with_remote_shutdown_reboot() {
    // Two copies of one module linger after their demo; dom0 reboots the first to finish
    // (`SCHEDOP_remote_shutdown`) and powers the other off. The hypervisor builds the rebooted
    // one again under a new id, as the same copy: the same name and the same place among the
    // boot-time domUs, so dom0 gives it the same half of its disk. dom0 introduces it and,
    // after its demo, powers it off.
    let run = boot_with(
        "restart-first".into(),
        &["name=phoenix mem=16M linger copies=2".into()],
        Duration::from_secs(120),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    let x = (1..=2)
        .find(|x| run.has(&format!("toolstack: remote_shutdown(d{x}, reboot)=0")))
        .unwrap_or_else(|| panic!("no domU rebooted; log:\n{log}"));
    let y = 3 - x;
    for needle in [
        format!(
            "blkback: d{x} vbd 51712 is sectors {}..{} of the disk (slot {})",
            (x - 1) * 1024,
            x * 1024,
            x - 1
        ),
        format!(
            "blkback: d{y} vbd 51712 is sectors {}..{} of the disk (slot {})",
            (y - 1) * 1024,
            y * 1024,
            y - 1
        ),
        format!("domain {x} (phoenix{x}) shut down (code 1): reboot"),
        format!("toolstack: d{x} (phoenix) destroyed"),
        format!("domain {x} rebooted: building it again from boot module 1"),
        format!("*** Built d3 (phoenix{x})"),
        "toolstack: introduced d3 (phoenix)".into(),
        "(d3) domU: my domid is 3 (from xenstore)".into(),
        // Built again as the same copy, it has the same part of the disk.
        format!(
            "blkback: d3 vbd 51712 is sectors {}..{} of the disk (slot {})",
            (x - 1) * 1024,
            x * 1024,
            x - 1
        ),
        "dom0: d3 ping-pong 100 ok, grant copy 4096 bytes ok".into(),
        format!("toolstack: remote_shutdown(d{y}, poweroff)=0"),
        "toolstack: remote_shutdown(d3, poweroff)=0".into(),
        "toolstack: d3 (phoenix) destroyed".into(),
    ] {
        run.expect(&needle);
    }
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn debug_keys_dump_every_domain_its_event_channels_and_the_scheduler() {
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), "restart-first".into()),
            (guest_kernel_image(), "name=keys mem=16M linger".into()),
        ],
        qemu_extra: Vec::new(),
        timeout: Duration::from_secs(60),
    };
    let run = boot
        // Typed as soon as dom0 has bound d1's store and console ports: d1 then still has its
        // whole boot and ping-pong ahead (typed at its later lines, a fast round trip could let
        // dom0 restart it before the next timer tick reads the keys).
        .run_with_input(&[("toolstack: introduced d1", b"\x01\x01\x01qer")])
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    for needle in [
        "d0 (Domain-0): 16384 pages",
        "d1 (keys): 4096 pages",
        "d0 event channels:",
        "d1 event channels:",
        "Interdomain { remote_dom: 0",
        "scheduler: weighted round robin",
        "  d1: weight 256, run ",
    ] {
        run.expect(needle);
    }
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_domu_that_does_not_fit_is_refused_and_the_others_still_boot() {
    let run = boot(
        &["name=huge mem=4096M".into(), "name=small mem=16M".into()],
        Duration::from_secs(60),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    run.expect("guest-kernel): not started: mem=4096 MiB does not fit");
    // The next module gets the next id.
    run.expect("*** Built d1 (small)");
    run.expect("(d1) domU: ping-pong 100 round trips ok, grant copy verified");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn hostile_domus_making_random_hypercalls_harm_only_themselves() {
    // Three fuzzing domUs (random hypercall numbers and arguments; the third also makes the
    // calls that can wreck its own trap handling and mappings) next to an ordinary one. Whatever
    // happens to the fuzzers (they may finish, corrupt their own rings, or be crashed), the
    // hypervisor stays up, the ordinary domU does its work, dom0 powers off cleanly and every
    // frame comes back.
    let domus = [
        "name=fuzz1 mem=16M fuzz=1,20000",
        "name=fuzz2 mem=16M fuzz=2,20000",
        "name=fuzz3 mem=16M fuzz-all=3,20000",
        "name=bystander mem=16M",
    ]
    .map(String::from);
    // A fuzzer may also wreck itself into an endless loop: dom0's watchdog destroys a domU
    // still running after 40 s.
    let run = boot_with("domu-timeout=40".into(), &domus, Duration::from_secs(240));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    assert!(!run.has("FATAL TRAP") && !run.has("PANIC"), "log:\n{log}");
    // How far they got is reported, not asserted: a fuzzer may corrupt its own console ring.
    let progress = run
        .log
        .iter()
        .filter(|l| l.contains("hypercalls made") || l.contains("fuzz: done"))
        .count();
    println!("fuzzers reported progress {progress} times");
    for id in 1..=3 {
        run.expect(&format!("toolstack: d{id} (fuzz{id}) destroyed"));
    }
    run.expect("(d4) domU: ping-pong 100 round trips ok, grant copy verified");
    run.expect("toolstack: d4 (bystander) destroyed");
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame back; log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn serial_input_reaches_dom0s_shell_which_lists_and_shuts_down_domus() {
    // Serial input goes to dom0 at boot (VIRQ_CONSOLE, CONSOLEIO_read): its services' shell
    // lists the domUs, shuts one down, and powers off on request.
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), "stay".into()),
            (guest_kernel_image(), "name=shell mem=16M linger".into()),
        ],
        qemu_extra: Vec::new(),
        timeout: Duration::from_secs(60),
    };
    let run = boot
        .run_with_input(&[
            ("(d1) domU: lingering until dom0", b"list\rshutdown 1\r"),
            ("toolstack: d1 (shell) destroyed", b"poweroff\r"),
        ])
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    run.expect("*** Serial input to DOM0 (type 'CTRL-a' three times to switch input)");
    assert!(
        run.log
            .iter()
            .any(|l| l.starts_with("xl: 1 ") && l.contains("shell") && l.contains("16 MiB")),
        "the list names d1; log:\n{log}"
    );
    run.expect("xl: shutdown d1: 0");
    run.expect("toolstack: d1 (shell) shut down (poweroff)");
    run.expect("xl: powering off");
    run.expect("Hardware Dom0 halted: powering off");
}
