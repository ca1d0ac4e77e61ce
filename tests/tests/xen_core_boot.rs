//! QEMU test: our hypervisor image boots under QEMU's multiboot loader, reports its command line
//! and boot modules, and powers the machine off cleanly (QEMU exit status 0).

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending};

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn our_image_boots_lists_its_modules_and_powers_off() {
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: "loglvl=all".into(),
        modules: vec![
            (guest_kernel_image(), "suite=conformance".into()),
            (guest_kernel_image(), "name=second".into()),
        ],
        timeout: Duration::from_secs(60),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    assert!(
        log.contains("(XEN) xen-core 0.1.0 (Rust PV hypervisor) booting"),
        "log:\n{log}"
    );
    assert!(
        log.contains("(XEN) Command line: loglvl=all"),
        "log:\n{log}"
    );
    assert!(log.contains("(XEN) Boot modules: 2"), "log:\n{log}");
    assert!(log.contains("suite=conformance\""), "log:\n{log}");
    assert!(log.contains("name=second\""), "log:\n{log}");
    assert!(
        run.log
            .last()
            .is_some_and(|l| l.contains("(XEN) Powering off.")),
        "log:\n{log}"
    );
}
