//! QEMU test of memory ballooning: dom0's `mem-set` shrinks a running domU and grows it again
//! through xenstore's `memory/target` and the domU's balloon (`XENMEM_decrease_reservation`,
//! `XENMEM_populate_physmap`); the hypervisor's own figures (debug keys `q` and `r`: the
//! domain's pages, the free pool) follow each step frame for frame, the domU keeps working, and
//! every frame is back in the pool once it is destroyed.

use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending, XEN_CMDLINE};

/// Hands the keyboard to the hypervisor's debug keys, asks for the domains (`q`) and the
/// scheduler with the free pool (`r`), and hands it back to dom0.
const KEYS: &[u8] = b"\x01\x01\x01qr\x01\x01\x01";

/// The values of debug key `q`'s `d1 (balloon): <n> pages` lines, in order.
fn pages(log: &[String]) -> Vec<u64> {
    log.iter()
        .filter_map(|l| {
            l.strip_prefix("(XEN) d1 (balloon): ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The values of `free frames <n>` lines, in order.
fn free(log: &[String]) -> Vec<u64> {
    log.iter()
        .filter_map(|l| {
            l.split("free frames ")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn mem_set_shrinks_and_regrows_a_running_domu_and_every_frame_is_accounted_for() {
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), "stay".into()),
            (guest_kernel_image(), "name=balloon mem=16M linger".into()),
        ],
        qemu_extra: Vec::new(),
        timeout: Duration::from_secs(120),
    };
    let shrink = [KEYS, b"mem-set 1 12M\r"].concat();
    let grow = [KEYS, b"list\rmem-set 1 16M\r"].concat();
    let end = [KEYS, b"list\rmem-set 1 32M\rmem-set 1 bogus\rshutdown 1\r"].concat();
    let run = boot
        .run_with_input(&[
            ("(d1) balloon: ready", &shrink),
            ("(d1) balloon: now 3072 pages", &grow),
            ("(d1) balloon: now 4096 pages", &end),
            ("toolstack: d1 (balloon) destroyed", b"poweroff\r"),
        ])
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");

    // The domU followed both targets and kept working: its memory and its block device.
    for n in ["3072", "4096"] {
        let line = run
            .log
            .iter()
            .find(|l| l.contains(&format!("(d1) balloon: now {n} pages")))
            .unwrap_or_else(|| panic!("no balloon line for {n} pages; log:\n{log}"));
        assert!(
            line.contains("memory intact")
                && line.contains("vbd read ok")
                && !line.contains("short"),
            "{line}"
        );
    }
    run.expect("xl: mem-set d1: target 12288 KiB");
    run.expect("xl: mem-set d1: target 16384 KiB");
    run.expect("xl: mem-set d1: 32768 KiB is above static-max 16384 KiB");
    run.expect("xl: mem-set d1: bad size 'bogus'");

    // The hypervisor's count of the domain's pages, and of the free pool, at each step.
    let p = pages(&run.log);
    assert_eq!(
        p,
        vec![4096, 3072, 4096],
        "d1's pages as the hypervisor counts them; log:\n{log}"
    );
    let f = free(&run.log);
    assert_eq!(f.len(), 3, "three free-pool lines; log:\n{log}");
    assert_eq!(
        f[1],
        f[0] + 1024,
        "1024 frames went back to the pool; log:\n{log}"
    );
    assert_eq!(f[2], f[0], "and came out of it again; log:\n{log}");
    // dom0's view (getdomaininfo) agrees.
    assert!(
        run.log
            .iter()
            .any(|l| l.starts_with("xl: 1 ") && l.contains("12 MiB") && l.contains(" 3072 ")),
        "list shows d1 at 12 MiB; log:\n{log}"
    );
    assert!(
        run.log
            .iter()
            .any(|l| l.starts_with("xl: 1 ") && l.contains("16 MiB") && l.contains(" 4096 ")),
        "list shows d1 at 16 MiB; log:\n{log}"
    );

    run.expect("toolstack: d1 (balloon) shut down (poweroff)");
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "every frame back; log:\n{log}");
}
