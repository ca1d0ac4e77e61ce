//! QEMU test: the conformance suite runs to completion as dom0 on Debian's Xen 4.17, twice, with
//! identical answers. Needs the images (`make images`) and QEMU; `make test` provides both.

use xtests::{duplicate_names, guest_kernel_image, Boot, Ending, SuiteResult};

/// Cases the foundation issue asks for at least.
const MIN_CASES: usize = 25;

fn run_suite() -> SuiteResult {
    let boot = Boot::xen_reference(&guest_kernel_image(), "suite=conformance exit=reboot");
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let suite = SuiteResult::from_log(&run.log);
    if !suite.complete() || run.ending == Ending::TimedOut {
        panic!(
            "suite did not complete on Xen 4.17 (ended {:?}, {} cases, summary {:?}); log:\n{}",
            run.ending,
            suite.cases.len(),
            suite.done,
            run.log.join("\n")
        );
    }
    suite
}

#[test]
#[ignore = "boots QEMU with Debian's Xen 4.17: run through `make test`"]
fn conformance_suite_completes_on_xen_4_17_and_is_deterministic() {
    let first = run_suite();
    assert!(
        first.cases.len() >= MIN_CASES,
        "only {} cases",
        first.cases.len()
    );
    assert!(
        duplicate_names(&first.cases).is_empty(),
        "duplicate names: {:?}",
        duplicate_names(&first.cases)
    );
    let second = run_suite();
    let diff = xtests::diff_cases(&first.cases, &second.cases);
    assert!(
        diff.is_empty(),
        "two runs on Xen 4.17 differ:\n{}",
        diff.iter().map(|d| format!("  {d}\n")).collect::<String>()
    );
    println!(
        "Xen 4.17: {} cases, identical across 2 runs",
        first.cases.len()
    );
}

#[test]
#[ignore = "boots QEMU with Debian's Xen 4.17: run through `make test`"]
fn a_guest_without_a_suite_boots_and_shuts_down_on_xen_4_17() {
    let boot = Boot::xen_reference(&guest_kernel_image(), "exit=reboot");
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let text = run.log.join("\n");
    assert!(
        text.contains("guest-kernel 0.1.0: booted as dom0 on xen-3.0-x86_64"),
        "log:\n{text}"
    );
    assert!(
        text.contains("nothing to do, shutting down"),
        "log:\n{text}"
    );
    assert_ne!(run.ending, Ending::TimedOut, "log:\n{text}");
}
