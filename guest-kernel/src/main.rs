//! The PV guest kernel binary: boots on Xen's PV ABI (ours or Debian's Xen 4.17) as dom0 or domU.
//!
//! Built for `x86_64-unknown-none` this is the kernel (see `kernel/`). Built for the host (as a
//! plain `cargo build`/`cargo test` of the workspace does) it is a stub that explains itself, so
//! the workspace stays host-buildable; the portable logic is in the library and tested there.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-kernel is a Xen PV kernel: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}
