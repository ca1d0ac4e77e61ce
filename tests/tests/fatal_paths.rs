//! QEMU tests of the ways a run can end badly: a hypervisor panic, a fatal trap in the hypervisor
//! (among them a write to the read-only `.text`, W^X), and a dom0 crash. Each must end QEMU with
//! its own non-zero status, a register dump or message, and (for the hypervisor's own failures) a
//! backtrace of symbols.

use std::time::Duration;

use xen_core::power::FailCode;
use xtests::{build_dir, guest_kernel_image, Boot, Ending};

fn boot(xen_cmdline: &str, dom0_cmdline: &str) -> (Ending, String) {
    let b = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: xen_cmdline.into(),
        modules: vec![(guest_kernel_image(), dom0_cmdline.into())],
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
    };
    let run = b.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    (run.ending, run.log.join("\n"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_hypervisor_panic_exits_with_a_backtrace_of_symbols() {
    let (ending, log) = boot("selftest=panic", "");
    assert_eq!(
        ending,
        Ending::Exited(FailCode::Panic.qemu_exit_status()),
        "log:\n{log}"
    );
    assert!(
        log.contains("(XEN) PANIC: self-test: a deliberate hypervisor panic"),
        "log:\n{log}"
    );
    assert!(log.contains("Xen call trace:"), "log:\n{log}");
    assert!(
        log.contains("xen::start_xen+0x"),
        "the trace names symbols; log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_fatal_trap_in_the_hypervisor_dumps_registers_and_symbols() {
    let (ending, log) = boot("selftest=trap", "");
    assert_eq!(
        ending,
        Ending::Exited(FailCode::Trap.qemu_exit_status()),
        "log:\n{log}"
    );
    assert!(log.contains("FATAL TRAP: vector 14"), "log:\n{log}");
    assert!(log.contains("cr2 0xdead0000"), "log:\n{log}");
    assert!(log.contains("RIP: e008:"), "log:\n{log}");
    assert!(log.contains("xen::start_xen+0x"), "log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_dom0_crash_ends_the_run_with_its_own_status() {
    // An unknown suite makes the guest shut down with SHUTDOWN_crash.
    let (ending, log) = boot("dom0_mem=64M", "suite=no-such-suite");
    assert_eq!(
        ending,
        Ending::Exited(FailCode::Dom0Crashed.qemu_exit_status()),
        "log:\n{log}"
    );
    assert!(log.contains("unknown suite 'no-such-suite'"), "log:\n{log}");
    assert!(log.contains("Hardware Dom0 crashed"), "log:\n{log}");
    assert!(
        log.contains("RIP: "),
        "a register dump follows; log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_write_to_the_hypervisor_text_is_a_fatal_page_fault() {
    // W^X: .text is mapped read-only and CR0.WP is set, so the write faults with present|write.
    let (ending, log) = boot("selftest=wx", "");
    assert_eq!(
        ending,
        Ending::Exited(FailCode::Trap.qemu_exit_status()),
        "log:\n{log}"
    );
    assert!(
        log.contains("FATAL TRAP: vector 14 error 0x3 "),
        "log:\n{log}"
    );
    assert!(!log.contains("self-test: FAIL"), "log:\n{log}");
    assert!(log.contains("xen::start_xen+0x"), "log:\n{log}");
}
