//! Xen shared rings and split-driver protocol logic: portable, `no_std`, host-tested.
//!
//! This crate is filled in by the block and network split-driver issues. It already names the
//! ABI it will speak: the `io/ring.h`, `io/blkif.h` and `io/netif.h` layouts in `hypercall-abi`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use hypercall_abi::io;
