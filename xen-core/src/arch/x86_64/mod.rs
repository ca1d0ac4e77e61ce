//! x86-64 support: boot assembly, descriptor tables, entry paths, timers, serial console, power.
//!
//! Boot order: `boot.rs` (32-bit stub, page tables, long mode) calls [`boot::start`], which brings
//! up the console, the GDT and the IDT, and then hands over to the portable flow in `main.rs`.

pub mod apic;
pub mod boot;
pub mod console;
pub mod context;
pub mod cpu;
pub mod dispatch;
pub mod dom0;
pub mod domu;
pub mod entry;
pub mod extable;
pub mod gdt;
pub mod heap;
pub mod ioapic;
pub mod lab;
pub mod machine;
pub mod mappings;
pub mod mmio;
pub mod pic;
pub mod pit;
pub mod platform;
pub mod power;
pub mod ring3;
pub mod rtc;
pub mod serial;
pub mod symbols;
pub mod time;
pub mod traps;
pub mod tsc;
pub mod uaccess;
