//! x86-64 support: boot assembly, serial console, early exception handling, direct map, power-off.
//!
//! Boot order: `boot.rs` (32-bit stub, page tables, long mode) calls [`boot::start`], which brings
//! up the console and the exception table and then hands over to the portable flow in `main.rs`.

pub mod apic;
pub mod boot;
pub mod console;
pub mod dispatch;
pub mod dom0;
pub mod entry;
pub mod gdt;
pub mod machine;
pub mod mm;
pub mod mmio;
pub mod pic;
pub mod pit;
pub mod power;
pub mod rtc;
pub mod serial;
pub mod symbols;
pub mod time;
pub mod traps;
pub mod tsc;
