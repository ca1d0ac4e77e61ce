//! The operating system every program of the guest runs on: boot, hypercalls, console, memory
//! and page tables, the direct map, traps and events, grants, ring pages and time. The programs
//! (`dom0/`, `domu/`, `suites/`, `user/`) are built on it; nothing here imports them.
//!
//! Design principles, in XenoLinux's footsteps:
//! - the kernel never writes a page-table entry itself: it asks the hypervisor (`mmu_update`,
//!   `update_va_mapping`), and reads its tables through the read-only mapping Xen gives it;
//! - every hypercall goes through the hypercall page the hypervisor filled in (`hypercall.rs`);
//! - exceptions and event upcalls arrive as Xen's bounce frames and leave through the `iret`
//!   hypercall (`traps.rs`); privileged instructions appear only in the cases that probe them;
//! - memory the hypervisor writes (shared_info) is reached only through raw pointers, volatile or
//!   atomic (`shared_info.rs`);
//! - output is whole lines through `console_io`, so logs never interleave mid-line;
//! - user mode is separated from the kernel by page tables alone (both run in ring 3): a user L4
//!   that maps nothing but user space, installed with `MMUEXT_NEW_USER_BASEPTR` (`user/`); the
//!   trap dispatcher reaches it through the [`traps::UserMode`] hook only.

#[macro_use]
pub mod console;
pub mod boot;
pub mod direct_map;
pub mod events;
pub mod grant;
pub mod heap;
pub mod hypercall;
pub mod mm;
pub mod pt;
pub mod ring_page;
pub mod shared_info;
pub mod smp;
pub mod time;
pub mod traps;
