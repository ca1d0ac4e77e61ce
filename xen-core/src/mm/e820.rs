//! The machine's memory map as boot loaders report it: regions and their E820 kinds, which the
//! frame allocator and `XENMEM_machine_memory_map` consume (multiboot parses them).

use core::fmt;

use crate::mm::Maddr;

/// What a memory-map region holds (the multiboot `type`, which is the E820 type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// 1: RAM free for use.
    Usable,
    /// 3: ACPI tables; RAM once they have been read.
    AcpiReclaimable,
    /// 4: must be preserved across hibernation.
    AcpiNvs,
    /// 5: defective RAM.
    BadMemory,
    /// 2 or anything else: reserved, do not touch.
    Reserved(u32),
}

impl MemoryKind {
    /// The E820 type number (what `XENMEM_machine_memory_map` reports).
    pub fn e820_type(self) -> u32 {
        match self {
            MemoryKind::Usable => 1,
            MemoryKind::AcpiReclaimable => 3,
            MemoryKind::AcpiNvs => 4,
            MemoryKind::BadMemory => 5,
            MemoryKind::Reserved(raw) => raw,
        }
    }

    /// The kind of E820 type number `raw` (unknown types are reserved).
    pub(crate) fn from_raw(raw: u32) -> Self {
        match raw {
            1 => MemoryKind::Usable,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::BadMemory,
            other => MemoryKind::Reserved(other),
        }
    }
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Xen's names for E820 types (`xen/arch/x86/e820.c`).
        match self {
            MemoryKind::Usable => write!(f, "usable"),
            MemoryKind::AcpiReclaimable => write!(f, "ACPI data"),
            MemoryKind::AcpiNvs => write!(f, "ACPI NVS"),
            MemoryKind::BadMemory => write!(f, "UNUSABLE"),
            MemoryKind::Reserved(2) => write!(f, "reserved"),
            MemoryKind::Reserved(other) => write!(f, "type {other}"),
        }
    }
}

/// One region of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte of the region.
    pub base: Maddr,
    /// Length of the region in bytes.
    pub len: u64,
    /// What the region holds.
    pub kind: MemoryKind,
}
