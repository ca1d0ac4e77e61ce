//! QEMU test: our hypervisor image boots under QEMU's multiboot loader, reports its command line
//! and boot modules, runs module 1 as dom0, and powers the machine off cleanly when dom0 does
//! (QEMU exit status 0).

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending};

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn our_image_boots_dom0_and_powers_off_with_it() {
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: "loglvl=all".into(),
        modules: vec![
            (guest_kernel_image(), "first=1".into()),
            (guest_kernel_image(), "name=second".into()),
        ],
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
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
    // QEMU's `-cpu max` under TCG has the x2APIC: the local APIC is moved to it once its timer
    // is calibrated (EOIs and timer armings are then MSR writes, not MMIO).
    let apic = if xtests::accel() == xtests::Accel::Tcg {
        ", local APIC: x2APIC"
    } else {
        ", local APIC: "
    };
    assert!(log.contains(apic), "log:\n{log}");
    assert!(log.contains("first=1\""), "log:\n{log}");
    assert!(log.contains("name=second\""), "log:\n{log}");
    assert!(log.contains("*** Building a PV Dom0 ***"), "log:\n{log}");
    assert!(
        log.contains("guest-kernel: command line \"first=1\""),
        "log:\n{log}"
    );
    assert!(
        run.log
            .last()
            .is_some_and(|l| l.contains("(XEN) Hardware Dom0 halted: powering off")),
        "log:\n{log}"
    );
}
