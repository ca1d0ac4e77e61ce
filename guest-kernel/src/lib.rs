//! Portable parts of the PV guest kernel: command-line parsing, page-table index arithmetic, the
//! virtual address map, the frame allocator, the kernel heap's arena sizes, `mmu_update` batching, the page-table workload's
//! parameters and result lines, the PV clock arithmetic, the demo protocol's pattern, the
//! throughput arithmetic the block benchmarks print, the line formatting the console
//! prints, the domU's TCP/IP services on smoltcp (`netstack`), the xenstore server
//! (`xenstored`) and the toolstack's connection to a domU's rings (`introduce`). Host-tested with `cargo test -p guest-kernel`.
//!
//! Everything that touches the hardware or the hypervisor lives in the binary (`src/main.rs`,
//! `src/kernel/` and the programs beside it), built only for `x86_64-unknown-none`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod demo;
pub mod evtchn_fifo;
pub mod frame_alloc;
pub mod heap_policy;
pub mod introduce;
pub mod layout;
pub mod line;
pub mod mmu_batch;
pub mod netstack;
pub mod paging;
pub mod pci;
pub mod pt_lab;
pub mod pvclock;
pub mod rates;
pub mod xenstored;
