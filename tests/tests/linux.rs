//! QEMU test: Debian's own Linux kernel (linux-image-amd64, fetched with apt by
//! `scripts/fetch-linux.sh`) boots as a PV domU on our hypervisor next to our dom0, and gets as far
//! as it gets today; whatever it does, the domain is contained and its frames return.
//!
//! The stage asserted is named by [`REACHED`]: each fix that takes Linux further moves it. Skips,
//! saying why, when the kernel package cannot be fetched (no network, no apt).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, repo_root, Boot, Ending, XEN_CMDLINE};

/// Linux's console lines, in the order it prints them, up to the furthest it reaches today.
const STAGES: &[&str] = &[
    // `xen_start_kernel`: the ELF notes were honoured, the p2m list is where INIT_P2M asked.
    "Linux version 6.1",
    // `setup_arch`: CPUID says no PSE/1 GiB pages, so the direct map uses 4 KiB pages.
    "Hypervisor detected: Xen PV",
    "Zone ranges:",
    "Booting kernel on Xen",
    "Xen version: 4.17",
    // `setup_per_cpu_areas`: per-CPU accesses through %gs work after `mov %eax,%gs`.
    "percpu: Embedded",
    // `xen_setup_vcpu_info_placement`: VCPUOP_register_vcpu_info moved vcpu_info into the
    // per-CPU area, and events and time still reach Linux there.
    "Kernel command line:",
    "Dentry cache hash table entries",
    "Inode-cache hash table entries",
    // `trap_init`: `update_descriptor` writes Linux's per-CPU GDT entries (checked as Xen's
    // `check_descriptor`); early `cli`/`sti` (IOPL 1) are skipped as Xen skips them.
    "Memory:",
    "Mount-cache hash table entries",
    "smp: Brought up 1 node, 1 CPU",
    "devtmpfs: initialized",
    "Grant table initialized",
    "xen:balloon: Initialising balloon driver",
    "clocksource: Switched to clocksource xen",
    "NET: Registered PF_INET protocol family",
    // Page-table writes by `xchg`, `lock cmpxchg`, `lock btr`, ... are emulated as validated
    // updates (`emulate::pte_write`); dom0 wrote libxl's `control/feature-*` nodes.
    "NET: Registered PF_INET6 protocol family",
    "Loading compiled-in X.509 certificates",
    "xenbus_probe_frontend: Device with no driver: device/vbd/51712",
    "VFS: Unable to mount root fs",
];
/// The last stage of [`STAGES`] Linux reaches on our hypervisor today: the end of its boot
/// without a root file system (no initrd yet), a panic the toolstack cleans up.
const REACHED: &str = "VFS: Unable to mount root fs";

/// The kernel ELF, fetched and extracted on first use, or why it cannot be had.
fn debian_kernel() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-linux.sh"))
        .env("BUILD", build_dir())
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run scripts/fetch-linux.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/fetch-linux.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = if PathBuf::from(&path).is_absolute() {
        PathBuf::from(path)
    } else {
        repo_root().join(path)
    };
    path.is_file()
        .then_some(path.clone())
        .ok_or(format!("{} was not produced", path.display()))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn debians_linux_boots_as_a_domu_as_far_as_it_gets_and_is_contained() {
    let kernel = match debian_kernel() {
        Ok(k) => k,
        Err(why) => {
            println!("SKIPPED: Debian's Linux kernel is not available: {why}");
            return;
        }
    };
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), String::new()),
            (
                kernel,
                "name=linux mem=160M console=hvc0 earlyprintk=xen oops=panic".into(),
            ),
        ],
        timeout: Duration::from_secs(150),
        qemu_extra: Vec::new(),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    let linux: Vec<&String> = run.log.iter().filter(|l| l.starts_with("(d1)")).collect();
    println!("Linux's last console lines:");
    for l in linux.iter().rev().take(12).rev() {
        println!("  {l}");
    }
    run.expect("*** Built d1 (linux)");
    // Each stage up to REACHED, in order, on Linux's own console (through dom0's daemon).
    let mut from = 0;
    for stage in STAGES {
        let at = linux[from..]
            .iter()
            .position(|l| l.contains(stage))
            .unwrap_or_else(|| panic!("Linux did not print {stage:?}; log:\n{log}"));
        from += at;
        if *stage == REACHED {
            break;
        }
    }
    // However Linux ends, the hypervisor and dom0 survive it and take every frame back.
    run.expect("toolstack: d1 (linux) destroyed");
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame of d1 back; log:\n{log}");
    run.expect("Hardware Dom0 halted: powering off");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    println!(
        "Linux reached {REACHED:?}; {:.1} s wall from QEMU start to power-off",
        run.elapsed.as_secs_f64()
    );
}
