//! QEMU test: the guest's first user-mode program (`init`, in its own address space, making system
//! calls to the guest kernel) runs on our hypervisor and on Debian's Xen 4.17 with the same output,
//! and user mode cannot read kernel memory on either.

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, xen_reference_image, Boot, Ending, XEN_CMDLINE};

/// The lines of `init` (and of the kernel about it) that a correct hypervisor reproduces exactly.
fn init_lines(hypervisor: std::path::PathBuf, cmdline: &str) -> (Vec<String>, String) {
    let boot = Boot {
        hypervisor,
        cmdline: XEN_CMDLINE.into(),
        modules: vec![(guest_kernel_image(), cmdline.into())],
        qemu_extra: Vec::new(),
        timeout: Duration::from_secs(120),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_ne!(run.ending, Ending::TimedOut, "log:\n{log}");
    let lines = run
        .log
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| l.starts_with("init:") || l.starts_with("init exited"))
        .map(|l| match l.find(" (") {
            // Drop measured details in parentheses (times, upcall counts).
            Some(i) => l[..i].to_string(),
            None => l,
        })
        .collect();
    (lines, log)
}

#[test]
#[ignore = "boots QEMU with both hypervisors: run through `make test`"]
fn init_runs_in_user_mode_with_the_same_output_on_both_hypervisors() {
    let (xen, xen_log) = init_lines(xen_reference_image(), "init exit=reboot");
    let (ours, ours_log) = init_lines(build_dir().join("xen"), "init exit=reboot");
    assert!(
        xen.iter().any(|l| l == "init: hello from user mode")
            && xen.iter().any(|l| l == "init exited with status 0"),
        "init did not run on Xen 4.17; log:\n{xen_log}"
    );
    assert_eq!(ours, xen, "init's output differs; our log:\n{ours_log}");
}

#[test]
#[ignore = "boots QEMU with both hypervisors: run through `make test`"]
fn user_mode_cannot_read_kernel_memory_on_either_hypervisor() {
    let (xen, xen_log) = init_lines(xen_reference_image(), "init=isolation exit=reboot");
    let (ours, ours_log) = init_lines(build_dir().join("xen"), "init=isolation exit=reboot");
    assert!(
        xen.iter().any(|l| l.starts_with("init: isolation ok")),
        "isolation check did not pass on Xen 4.17; log:\n{xen_log}"
    );
    assert_eq!(ours, xen, "our log:\n{ours_log}");
}
