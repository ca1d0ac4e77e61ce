//! QEMU tests on `-machine q35` (ICH9, PCI Express host bridge) instead of the default `pc`: the
//! hypervisor finds its I/O APIC and interrupt source overrides in ACPI's MADT (`xen_core::acpi`,
//! `arch/x86_64/platform.rs`) and dom0 with a domU runs to its normal end; dom0's virtio disk,
//! at another PCI address there, is driven through the I/O APIC line the MADT describes.

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, virtio_disk_args, Boot, Ending, XEN_CMDLINE};

fn q35(modules: Vec<(std::path::PathBuf, String)>, extra: Vec<String>) -> xtests::Run {
    let mut qemu_extra = vec!["-machine".to_string(), "q35".to_string()];
    qemu_extra.extend(extra);
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules,
        timeout: Duration::from_secs(90),
        qemu_extra,
    };
    boot.run().unwrap_or_else(|e| panic!("harness error: {e}"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn dom0_and_a_domu_run_to_their_end_on_q35() {
    let run = q35(
        vec![
            (guest_kernel_image(), String::new()),
            (guest_kernel_image(), "name=domU1 mem=16M".into()),
        ],
        Vec::new(),
    );
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    // The platform comes from ACPI, not from the `pc` machine's constants.
    run.expect("(XEN) ACPI: RSDP at ");
    run.expect("(XEN) ACPI: I/O APIC 0 at 0xfec00000, GSI base 0");
    run.expect("(XEN) ACPI: override: bus 0 IRQ 0 -> GSI 2 (edge, active high)");
    run.expect("(XEN) timer: APIC one-shot count-down calibrated against the PIT");
    run.expect("(d1) domU: ping-pong 100 round trips ok, grant copy verified");
    run.expect("dom0: d1 ping-pong 100 ok, grant copy 4096 bytes ok");
    run.expect("toolstack: d1 (domU1) destroyed");
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame of d1 back; log:\n{log}");
    run.expect("Hardware Dom0 halted: powering off");
    println!(
        "q35: dom0 + 1 domU: {} log lines, {:.2} s wall",
        run.log.len(),
        run.elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn dom0_drives_its_virtio_disk_through_the_madts_ioapic_on_q35() {
    let disk = build_dir().join(format!("q35-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("write the disk image");
    let run = q35(
        vec![(guest_kernel_image(), "blkdev-selftest=7".into())],
        virtio_disk_args(&disk),
    );
    let image = std::fs::read(&disk).expect("read the disk image back");
    let _ = std::fs::remove_file(&disk);
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    run.expect("pci: 00:00.0 8086:29c0 class 06.00");
    run.expect("(I/O APIC, level, active high) -> dom0 pirq");
    run.expect("blkdev-selftest: PASS");
    let irqs = run
        .log
        .iter()
        .find_map(|l| l.strip_prefix("blkdev: ")?.strip_suffix(" poll timeouts"))
        .unwrap_or_else(|| panic!("no interrupt count; log:\n{log}"));
    assert!(
        !irqs.starts_with("0 interrupts"),
        "the disk's interrupts arrive: {irqs}"
    );
    // Only sector 7 changed.
    for (i, sector) in image.chunks(512).enumerate() {
        assert_eq!(
            sector.iter().any(|&b| b != 0),
            i == 7,
            "sector {i}; log:\n{log}"
        );
    }
}
