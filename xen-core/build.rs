//! Build script: links the bare-metal `xen` binary with `xen.ld`; does nothing for host builds.
//!
//! The link arguments are scoped to the `xen` binary of this crate (`rustc-link-arg-bin`), so no
//! other crate, test or host build sees them.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=xen.ld");

    // Host builds of the `xen` binary are a stub `main`; link them normally.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = manifest_dir.join("xen.ld");
    println!("cargo:rustc-link-arg-bin=xen=-T{}", script.display());
    // x86_64-unknown-none links a static PIE by default. Our code is still compiled as PIC (the
    // target's default, RIP-relative everywhere), but the image is linked at one fixed address
    // (0xffff82d040200000, see xen.ld), because the 32-bit boot stub needs absolute physical
    // addresses (R_X86_64_32) and nobody applies run-time relocations. Hence a plain static link.
    println!("cargo:rustc-link-arg-bin=xen=--no-pie");
    // Keep the ELF's page alignment at 4 KiB: the image is small and loaded by physical address.
    println!("cargo:rustc-link-arg-bin=xen=-zmax-page-size=4096");
}
