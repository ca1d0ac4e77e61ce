//! xen-core: the portable, host-testable heart of a Xen-PV-compatible hypervisor.
//!
//! This library is plain Rust. It builds `no_std` for the bare-metal target and with `std` on the
//! host, so `cargo test -p xen-core` runs every parser and policy here as an ordinary unit test.
//!
//! Design principles (see `DESIGN.md` in the project's shared notes):
//!
//! - **Portable core, thin arch layer.** Anything that is a computation over bytes or state lives
//!   here and takes that state as arguments; the `xen` binary (`src/main.rs` and its `src/arch/`
//!   module tree, which is *not* part of this library) does port I/O, page tables and assembly.
//! - **Machine memory through a trait.** Parsers read machine memory only through
//!   [`mm::MachineMemory`], so tests hand them a fake made of a `Vec<u8>`.
//! - **Input is hostile.** A boot loader's structures, like a guest's requests later, are checked
//!   field by field; each kind of malformation has its own error variant.
//! - **Xen is the spec.** Constants and layouts keep Xen's values and cite the Xen source they come
//!   from, so that the same guests boot on real Xen and here.
#![cfg_attr(target_os = "none", no_std)]

pub mod acpi;
pub mod bounce;
pub mod cmdline;
pub mod console;
pub mod cpu;
#[cfg(test)]
pub(crate) mod cpu_fake;
pub mod ctx;
pub mod domain;
pub mod emulate;
pub mod evtchn;
pub mod gnttab;
pub mod guest_access;
pub mod hypercall;
pub mod keyhandler;
#[cfg(test)]
mod keyhandler_tests;
pub mod lab;
pub mod layout;
pub mod mm;
pub mod multiboot;
pub mod pci;
pub mod pirq;
pub mod power;
pub mod regs;
pub mod sched;
pub mod shared_info;
pub mod time;
