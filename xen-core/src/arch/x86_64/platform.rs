//! Platform discovery at boot: the interrupt controllers from ACPI's MADT (`xen_core::acpi`) and
//! the timer features CPUID reports, instead of assuming QEMU's `pc` machine.
//!
//! - The I/O APIC's address comes from the MADT (the one that serves GSI 0); without ACPI, or
//!   with a table that fails its checks (reported), QEMU's fixed 0xFEC00000 as before.
//! - A GSI's trigger mode and polarity come from the MADT's interrupt source override that
//!   targets it (QEMU's `pc` machine gives the PCI-routed ISA IRQs 5, 9, 10 and 11 level/high);
//!   an ISA IRQ (GSI 0-15) without one is edge and active high, the ISA bus's rule, and a GSI
//!   above them level-triggered and active high, what QEMU's DSDT declares for its PCI
//!   interrupt links on `pc` and `q35` (real hardware would need the DSDT's `_PRT`, an AML
//!   interpreter's job, not done here). Without a MADT every line is taken as level/high.
//! - The timer: CPUID's TSC-deadline (leaf 1 ECX bit 24) and invariant-TSC (leaf 0x80000007 EDX
//!   bit 8) bits are reported. The hypervisor keeps the APIC timer's count-down mode calibrated
//!   against the PIT (`apic.rs` says why: it works on every APIC, including TCG's under
//!   `-icount`); the report says which one a later change could switch to.

use core::arch::x86_64::__cpuid;

use spin::Once;
use xen_core::acpi::{self, Madt, Signal};

use super::console::printk;
use super::mappings::BootDirectMap;

/// QEMU's (and the PC's conventional) I/O APIC address, used when ACPI says nothing.
pub const DEFAULT_IOAPIC_BASE: u64 = 0xFEC0_0000;

/// The MADT, once [`discover`] has read it (never set if it could not).
static MADT: Once<Madt> = Once::new();

/// Reads the MADT and reports it, and the timer features, on the console. Call once at boot,
/// before the I/O APIC is first used.
pub fn discover() {
    let memory = BootDirectMap;
    let found = acpi::find_rsdp(&memory).and_then(|rsdp| {
        let table = acpi::find_table(&memory, &rsdp, *b"APIC")?;
        Ok((rsdp, acpi::parse_madt(table)?))
    });
    match found {
        Ok((rsdp, madt)) => {
            printk!(
                "ACPI: RSDP at {:#x} (revision {}, {} at {:#x}); MADT: {} CPU(s), local APIC at \
                 {:#x}{}\n",
                rsdp.address,
                rsdp.revision,
                if rsdp.xsdt != 0 { "XSDT" } else { "RSDT" },
                if rsdp.xsdt != 0 {
                    rsdp.xsdt
                } else {
                    u64::from(rsdp.rsdt)
                },
                madt.cpus,
                madt.local_apic,
                if madt.pcat_compat {
                    ", 8259s present"
                } else {
                    ""
                }
            );
            for io in &madt.ioapics {
                printk!(
                    "ACPI: I/O APIC {} at {:#x}, GSI base {}\n",
                    io.id,
                    io.address,
                    io.gsi_base
                );
            }
            for o in &madt.overrides {
                printk!(
                    "ACPI: override: bus {} IRQ {} -> GSI {} ({})\n",
                    o.bus,
                    o.source,
                    o.gsi,
                    o.signal()
                );
            }
            if madt.dropped != 0 {
                printk!("ACPI: {} MADT entries beyond what is kept\n", madt.dropped);
            }
            if madt.ioapics.is_empty() {
                printk!("ACPI: no I/O APIC in the MADT: using {DEFAULT_IOAPIC_BASE:#x}\n");
            }
            MADT.call_once(|| madt);
        }
        Err(e) => printk!(
            "ACPI: {e}: assuming QEMU's layout (I/O APIC at {DEFAULT_IOAPIC_BASE:#x}, PCI GSIs \
             level/high)\n"
        ),
    }

    let deadline = __cpuid(1).ecx & (1 << 24) != 0;
    let invariant = super::tsc::is_invariant();
    printk!(
        "timer: APIC one-shot count-down calibrated against the PIT (CPUID: TSC-deadline {}, \
         invariant TSC {})\n",
        if deadline { "yes" } else { "no" },
        if invariant { "yes" } else { "no" }
    );
}

/// The I/O APIC's machine address: the MADT's I/O APIC that serves GSI 0, else the default.
pub fn ioapic_base() -> u64 {
    MADT.get()
        .and_then(|m| m.ioapic_for(0))
        .map_or(DEFAULT_IOAPIC_BASE, |io| u64::from(io.address))
}

/// How `gsi` signals: what the MADT says (`Madt::gsi_signal`: its override, else edge for an
/// ISA IRQ and level above them); without a MADT, level-triggered and active high (PCI INTx as
/// QEMU declares it, the only lines dom0 binds).
pub fn gsi_signal(gsi: u32) -> Signal {
    MADT.get().map_or(
        Signal {
            level: true,
            active_low: false,
        },
        |m| m.gsi_signal(gsi),
    )
}
