//! The Xen public ABI for x86_64 PV guests, mirroring `xen/include/public/` (Xen 4.17).
//!
//! This crate is the single source of truth for every structure and constant shared between the
//! hypervisor (`xen-core`), the PV guest kernel and the split drivers.
//!
//! Design principles:
//!
//! - **The C headers are the specification.** Every `#[repr(C)]` struct carries compile-time
//!   `size_of`/`offset_of!` assertions, and `tests/c_headers.rs` compiles a C program against
//!   `/usr/include/xen/` and compares every size, offset and constant with this crate.
//! - **Xen's spelling.** Constants keep the exact C names (`EVTCHNOP_send`,
//!   `__HYPERVISOR_console_io`), fields keep the C field names; struct types are CamelCase with a
//!   `#[doc(alias)]` naming the C type. The interface version is `__XEN_LATEST_INTERFACE_VERSION__`
//!   (4.14+ layout, e.g. `vcpu_time_info.flags`).
//! - **No padding, no unsafe.** Implicit C padding is spelled out as `_padN` fields so every struct
//!   is `zerocopy::IntoBytes`; guest handles are plain `u64` guest-virtual addresses, which the
//!   hypervisor must treat as allegations. C unions are aligned word arrays with typed accessors.
//! - **Builds for the host and for `x86_64-unknown-none`**; `no_std`, no allocation.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod arch_x86_64;
pub mod callback;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod physdev;
pub mod sched;
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;

pub use errno::{Errno, HypercallError};

/// Implements `Default` as all-zeroes for structs whose arrays are too large for `derive(Default)`.
macro_rules! zeroed_default {
    ($($t:ty),* $(,)?) => {
        $(
            impl Default for $t {
                fn default() -> Self {
                    <Self as zerocopy::FromZeros>::new_zeroed()
                }
            }
        )*
    };
}
pub(crate) use zeroed_default;

/// Asserts at compile time the size of a struct and the offset of each listed field.
macro_rules! assert_layout {
    ($t:ty, $size:expr, { $($field:ident : $off:expr),* $(,)? }) => {
        static_assertions::const_assert_eq!(core::mem::size_of::<$t>(), $size);
        $(static_assertions::const_assert_eq!(core::mem::offset_of!($t, $field), $off);)*
    };
}
pub(crate) use assert_layout;

/// Pairs sub-ops of one multiplexed hypercall with their argument types: implements the family's
/// trait (`EvtchnOp`, `SchedOp`, ...) for each type with the command as `CMD`. Each pairing is the
/// one the comment above the command in Xen's public header names (`@arg == ...` or the struct
/// declared right after the `#define`).
macro_rules! sub_ops {
    ($tr:ident: $($t:ty => $cmd:expr),* $(,)?) => {
        $(impl $tr for $t { const CMD: u32 = $cmd; })*
    };
}
pub(crate) use sub_ops;
