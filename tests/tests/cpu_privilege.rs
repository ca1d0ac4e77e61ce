//! QEMU tests of the boot-time CPL check and the native syscall baseline (`arch/x86_64/ring3.rs`):
//! under the harness's accelerator a `syscall` from ring 3 enters at CPL 0 and dom0 boots as
//! before; under KVM, when `/dev/kvm` exists, the probe ends in one of the two clean outcomes
//! (CPL 0 and a power-off, or the one-line FATAL diagnostic and exit 11), never a hang or a KVM
//! emulation failure.

use std::time::Duration;

use xen_core::power::FailCode;
use xtests::{build_dir, guest_kernel_image, Accel, Boot, Ending, Run, XEN_CMDLINE};

fn boot(xen_opts: &str, modules: Vec<(std::path::PathBuf, String)>) -> Boot {
    Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: format!("{XEN_CMDLINE} {xen_opts}"),
        modules,
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
    }
}

fn must(run: Result<Run, xtests::HarnessError>) -> Run {
    run.unwrap_or_else(|e| panic!("harness error: {e}"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn syscall_from_ring_3_enters_at_cpl_0_and_the_check_powers_off() {
    let run = must(boot("selftest=cpl", Vec::new()).run());
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    assert!(
        log.contains(
            "(XEN) CPL check: syscall from ring 3 enters the hypervisor at CPL 0 (cs 0xe008)"
        ),
        "log:\n{log}"
    );
    assert!(log.contains("(XEN) Powering off."), "log:\n{log}");
    assert!(!log.contains("FATAL"), "log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn native_syscall_round_trip_is_timed_and_dom0_boots_afterwards() {
    let run = must(
        boot(
            "selftest=native-syscall",
            vec![(guest_kernel_image(), "exit=reboot".into())],
        )
        .run(),
    );
    let log = run.log.join("\n");
    let line = run
        .log
        .iter()
        .find(|l| l.contains("native-syscall: median_cycles="))
        .unwrap_or_else(|| panic!("no native-syscall line; log:\n{log}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    let (median, min, samples) = (
        field("median_cycles="),
        field("min_cycles="),
        field("samples="),
    );
    assert_eq!(samples, 1000, "{line}");
    assert!(
        0 < min && min <= median,
        "min {min} median {median}: {line}"
    );
    // Two privilege crossings and four TSC reads: far below a millisecond at any clock.
    assert!(median < 1_000_000, "{line}");
    // The window in slot 0 is gone again: dom0 is built and runs to its normal end.
    assert!(
        log.contains("guest-kernel 0.1.0: booted as dom0"),
        "log:\n{log}"
    );
    assert!(log.contains("Hardware Dom0"), "log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn under_kvm_the_cpl_check_ends_cleanly_either_way() {
    if !std::path::Path::new("/dev/kvm").exists() {
        println!("no /dev/kvm: nothing to check");
        return;
    }
    let run = must(boot("selftest=cpl", Vec::new()).run_under(Accel::Kvm));
    let log = run.log.join("\n");
    println!("under KVM: {:?}\n{log}", run.ending);
    let not_ring0 = Ending::Exited(FailCode::NotRing0.qemu_exit_status());
    if run.ending == not_ring0 {
        // A KVM that runs guests in ring 3 (kvm_pvm): one diagnostic line, nothing else fatal.
        let fatal: Vec<_> = run.log.iter().filter(|l| l.contains("FATAL")).collect();
        assert_eq!(fatal.len(), 1, "log:\n{log}");
        assert!(
            fatal[0].starts_with("(XEN) FATAL: running at CPL 3, not ring 0: "),
            "log:\n{log}"
        );
        assert!(
            fatal[0].contains("cannot host a ring-0 hypervisor"),
            "log:\n{log}"
        );
    } else {
        assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
        assert!(
            log.contains("CPL check: syscall from ring 3 enters the hypervisor at CPL 0"),
            "log:\n{log}"
        );
    }
    assert!(!log.contains("emulation failure"), "log:\n{log}");
}
