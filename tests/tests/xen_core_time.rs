//! QEMU test: `selftest=time` calibrates the TSC and the APIC timer, fires one-shot timers in
//! xAPIC and x2APIC mode, and powers off cleanly, both against the host clock and in QEMU's
//! deterministic instruction-counting mode (`-icount shift=0,sleep=off`, used by the labs).

use std::time::Duration;

use xtests::{build_dir, Boot, Ending};

fn selftest_boot() -> Boot {
    Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: "selftest=time".into(),
        modules: Vec::new(),
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
    }
}

/// Checks what every run of the self-test must show.
fn check_common(log: &str) {
    assert!(log.contains("(XEN) TSC: "), "log:\n{log}");
    assert!(log.contains(" MHz, APIC timer: "), "log:\n{log}");
    assert!(
        log.contains("(XEN) time selftest: xAPIC: one-shot 10.000 ms x5"),
        "log:\n{log}"
    );
    assert!(
        log.contains("(XEN) time selftest: x2APIC: one-shot 10.000 ms x5"),
        "log:\n{log}"
    );
    assert!(log.contains("(XEN) time selftest: PASS"), "log:\n{log}");
    assert!(!log.contains("FAIL"), "log:\n{log}");
    assert!(
        log.trim_end().ends_with("(XEN) Powering off."),
        "log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn time_selftest_passes_against_the_host_clock() {
    let run = selftest_boot()
        .run()
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    check_common(&log);
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn time_selftest_passes_with_icount() {
    let boot = Boot {
        qemu_extra: vec!["-icount".into(), "shift=0,sleep=off".into()],
        ..selftest_boot()
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    check_common(&log);
    // With shift=0 one instruction is one nanosecond: the TSC runs at exactly 1 GHz, and QEMU's
    // APIC timer (virtual nanoseconds, divide by 1) too.
    assert!(
        log.contains("(XEN) TSC: 1000.000 MHz, APIC timer: 1000.000 MHz"),
        "log:\n{log}"
    );
}
