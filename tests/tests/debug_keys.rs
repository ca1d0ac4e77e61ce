//! QEMU test: keys typed on the serial console reach the hypervisor's debug-key handler, like
//! Xen's: `p` prints the performance counters, `q` the domains, `e` the event channels.

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending, XEN_CMDLINE};

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn debug_keys_dump_counters_domains_and_event_channels() {
    // `init=hang` keeps the guest busy in user mode for two seconds (its watchdog ends it): the
    // hypervisor takes timer interrupts meanwhile, which is when it reads the console. The keys
    // go in once the program runs, so the watchdog's VIRQ_TIMER is already bound. Serial input
    // goes to dom0 at boot: three CTRL-a first hand it to the hypervisor, as on Xen.
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![(guest_kernel_image(), "init=hang".into())],
        qemu_extra: Vec::new(),
        timeout: Duration::from_secs(60),
    };
    let run = boot
        .run_with_input(&[("init: hello from user mode", b"\x01\x01\x01pqe")])
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    let perf = run
        .log
        .iter()
        .find(|l| l.contains("d0 perf counters:"))
        .unwrap_or_else(|| {
            panic!("no perf counter dump; log:\n{log}");
        });
    for name in [
        "hypercalls=",
        "traps=",
        "ptes_validated=",
        "tlb_flushes=",
        "ref_ops=",
    ] {
        assert!(perf.contains(name), "{name} missing in {perf}");
    }
    assert!(
        log.contains("(XEN) d0 (Domain-0): 16384 pages"),
        "domain dump missing; log:\n{log}"
    );
    assert!(
        log.contains("*** Serial input to Xen (type 'CTRL-a' three times to switch input)"),
        "the switch is announced; log:\n{log}"
    );
    assert!(
        log.contains("d0 event channels:"),
        "event channel dump missing; log:\n{log}"
    );
    assert!(
        log.contains("Virq { virq: 0 }"),
        "the timer VIRQ is bound; log:\n{log}"
    );
}
