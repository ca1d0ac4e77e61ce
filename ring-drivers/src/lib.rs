//! Xen shared rings and split-driver protocol logic: portable, `no_std`, host-tested.
//!
//! Design principles:
//! - Shared memory is never referenced: every access goes through a [`SharedPage`], which copies
//!   bytes in and out and orders the index loads and stores (acquire / release). The hardware glue
//!   implements the trait; host tests use [`ArrayPage`].
//! - Indices written by the other side are hostile: a producer more than a ring's size ahead of
//!   its consumer is reported ([`RingError`]), never used to index.
//! - Nothing blocks: callers pump the rings when an event channel fires and get back what
//!   completed.
//!
//! - Back ends copy each request out of shared memory once, validate the copy, and answer every
//!   bad request with an error status; nothing a request asks is done until all of it checked.
//!
//! Modules, lower first: [`shared_page`] and [`ring`] (the generic `io/ring.h` request/response
//! ring); [`xenbus`] (a xenstore client, with [`xenbus::xs_ring`], the xenstore ring and message
//! framing, and [`xenbus::state`], the XenbusState handshake of both ends as pure state
//! machines); [`bridge`] (the learning Ethernet bridge dom0 joins its NIC, its own interface
//! and the vifs with); [`blkif`] (block back end, front end, RAM disk and the device's xenstore keys, on
//! `ring` and `xenbus`); [`netif`] (network back end and front end, the rx-copy model, and the
//! vif's xenstore keys, on the same pieces); [`console_ring`] (the PV console ring and a `(dN) ` line prefixer);
//! [`printable`] (guest text escaped for dom0's log); [`ratelimit`] (one console line per
//! interval for what a guest can cause).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blkif;
pub mod bridge;
mod byte_ring;
pub mod console_ring;
pub mod netif;
pub mod printable;
pub mod ratelimit;
pub mod ring;
pub mod shared_page;
pub mod xenbus;

pub use byte_ring::RingError;
pub use hypercall_abi::io;
pub use shared_page::{ArrayPage, AtomicPage, SharedPage};
