//! Build script: links the bare-metal kernel with `guest.ld` (and only the bare-metal build).
use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=guest-kernel=-T{dir}/guest.ld");
        println!("cargo:rustc-link-arg-bin=guest-kernel=--no-pie");
        // Keep the notes and the hypercall page even though nothing references them.
        println!("cargo:rustc-link-arg-bin=guest-kernel=--gc-sections");
    }
}
