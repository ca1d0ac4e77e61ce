//! The architecture layer of the `xen` binary: everything that touches the CPU or devices directly.
//!
//! This module tree belongs to the binary (`src/main.rs`), not to the portable library in
//! `src/lib.rs`, even though both live under `src/`. It is compiled only for bare metal.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-core's hypervisor image exists only for x86_64");
