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

/// A boot of Xen 4.17 with our guest as dom0 (`dom0_cmdline`) and `module` as its boot module,
/// which `build-domu` builds as a domU; the log as one text.
fn built_on_xen(dom0_cmdline: &str, module: std::path::PathBuf) -> (String, Ending) {
    let mut boot = Boot::xen_reference(&guest_kernel_image(), dom0_cmdline);
    boot.modules.push((module, String::new()));
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    (run.log.join("\n"), run.ending)
}

/// dom0's own domain builder on Xen 4.17 (`build-domu`): our dom0 creates a domU from its boot
/// module through Xen's toolstack hypercalls, introduces it, and the pair runs the demo (event
/// ping-pong, grant copy, a block read through blkfront and blkback) before the domU powers off
/// and dom0 destroys it.
#[test]
#[ignore = "boots QEMU with Debian's Xen 4.17: run through `make test`"]
fn our_dom0_builds_and_serves_a_domu_on_xen_4_17() {
    let (text, ending) = built_on_xen(
        "build-domu -- name=built mem=12M pingpong=50",
        guest_kernel_image(),
    );
    for want in [
        // dom0's part of its command line only: the domU's words are not dom0's.
        "guest-kernel: command line \"build-domu \"",
        "builder: built d1 (built): store mfn",
        "toolstack: introduced d1 (built), 12 MiB",
        "(d1) guest-kernel 0.1.0: booted as domU on xen-3.0-x86_64 (3072 pages)",
        "(d1) guest-kernel: command line \"name=built mem=12M pingpong=50\"",
        "dom0: d1 ping-pong 50 ok, grant copy 4096 bytes ok",
        "(d1) domU: ping-pong 50 round trips ok, grant copy verified",
        "(d1) domU: blkfront: vbd 51712 connected",
        "toolstack: d1 (built) shut down (poweroff)",
        "toolstack: d1 (built) destroyed",
        "services: no domU left, powering off",
    ] {
        assert!(text.contains(want), "missing {want:?}; log:\n{text}");
    }
    assert_ne!(ending, Ending::TimedOut, "log:\n{text}");
}

/// The builder refuses what is not a PV kernel before it creates anything (here Xen's own
/// image, a 32-bit multiboot ELF), and a `mem=` it cannot use; dom0 carries on without a domU.
#[test]
#[ignore = "boots QEMU with Debian's Xen 4.17: run through `make test`"]
fn our_dom0_refuses_to_build_what_is_not_a_pv_kernel_on_xen_4_17() {
    let (text, _) = built_on_xen("build-domu -- name=bad", xtests::xen_reference_image());
    assert!(
        text.contains("builder: cannot build the domU: image refused:"),
        "log:\n{text}"
    );
    assert!(!text.contains("toolstack: introduced"), "log:\n{text}");
    assert!(
        text.contains("services: no domU left, powering off"),
        "log:\n{text}"
    );

    let (text, _) = built_on_xen("build-domu -- mem=1M", guest_kernel_image());
    assert!(
        text.contains("builder: cannot build the domU: mem=1M: not a usable size"),
        "log:\n{text}"
    );
    assert!(!text.contains("toolstack: introduced"), "log:\n{text}");
}
