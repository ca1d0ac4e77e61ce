//! QEMU test: our hypervisor refuses a dom0 kernel whose Xen ELF notes are broken or missing,
//! names the note in its diagnostic, and ends the run with a non-zero status instead of hanging.

use std::path::PathBuf;
use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, Boot, Ending, XEN_CMDLINE};

/// A copy of the guest kernel with every occurrence of `from` replaced by `to` (same length).
/// Returns the path and the number of replacements.
fn patched_kernel(name: &str, from: &[u8], to: &[u8]) -> (PathBuf, usize) {
    assert_eq!(from.len(), to.len());
    let mut bytes =
        std::fs::read(guest_kernel_image()).expect("build/guest-kernel: run make images");
    let mut hits = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    let path = build_dir().join(format!("guest-kernel-{name}"));
    std::fs::write(&path, bytes).unwrap();
    (path, hits)
}

fn boot_refused(kernel: PathBuf) -> (Ending, String) {
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![(kernel, "suite=conformance".into())],
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    (run.ending, run.log.join("\n"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_wrong_xen_version_note_is_refused_by_name() {
    // The XEN_VERSION note's text, "xen-3.0", becomes "xen-2.0".
    let (kernel, hits) = patched_kernel("bad-xen-version", b"xen-3.0\0", b"xen-2.0\0");
    assert!(hits > 0, "the XEN_VERSION note was not found");
    let (ending, log) = boot_refused(kernel);
    assert!(
        matches!(ending, Ending::Exited(s) if s != 0),
        "ended {ending:?}; log:\n{log}"
    );
    assert!(
        log.contains("XEN_VERSION"),
        "the diagnostic must name the note; log:\n{log}"
    );
    assert!(
        !log.contains("case "),
        "the refused kernel must not run; log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_kernel_without_xen_notes_is_refused() {
    // Rename the owner of every note from "Xen" to "Xyz": no Xen notes remain.
    let (kernel, hits) = patched_kernel("no-xen-notes", b"Xen\0", b"Xyz\0");
    assert!(hits >= 8, "expected the notes' owner names, found {hits}");
    let (ending, log) = boot_refused(kernel);
    assert!(
        matches!(ending, Ending::Exited(s) if s != 0),
        "ended {ending:?}; log:\n{log}"
    );
    assert!(
        log.to_lowercase().contains("note"),
        "the diagnostic must name the notes; log:\n{log}"
    );
    assert!(
        !log.contains("case "),
        "the refused kernel must not run; log:\n{log}"
    );
}
