//! The PV guest kernel binary: boots on Xen's PV ABI (ours or Debian's Xen 4.17) as dom0 or domU.
//!
//! Built for `x86_64-unknown-none` this is the kernel and its programs, one folder each:
//! `kernel/` (the OS every program runs on), `dom0/` (toolstack, xenstored, console daemon,
//! shell, block back end), `domu/` (the domU: xenbus client, demo, block front end), `suites/`
//! (conformance, hostile guests, benchmarks, labs, fuzzer), `user/` (user mode and `init`);
//! `modes.rs` chooses the program from the command line. Built for the host (as a plain
//! `cargo build`/`cargo test` of the workspace does) it is a stub that explains itself, so the
//! workspace stays host-buildable; the portable logic is in the library and tested there.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod kernel;
#[cfg(target_os = "none")]
mod dom0;
#[cfg(target_os = "none")]
mod domu;
#[cfg(target_os = "none")]
mod modes;
#[cfg(target_os = "none")]
mod suites;
#[cfg(target_os = "none")]
mod user;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-kernel is a Xen PV kernel: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut line = guest_kernel::line::LineBuf::<512>::new();
    let _ = writeln!(line, "guest-kernel: PANIC: {info}");
    kernel::console::write_bytes(line.as_bytes());
    kernel::hypercall::shutdown(hypercall_abi::sched::SHUTDOWN_crash)
}
