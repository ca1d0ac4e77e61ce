//! The legacy 8259A interrupt controllers: reprogrammed away from the exception vectors and
//! masked, so that no legacy IRQ ever reaches the CPU. The local APIC delivers every interrupt.
//!
//! The firmware leaves the master PIC on vectors 0x08..0x0f, which are CPU exception vectors:
//! even with every line masked, an 8259 can raise a spurious IRQ 7, which would look like #NM's
//! neighbour 15. Reinitialising it on 0x20..0x2f first (as Xen's `init_8259A` does) makes any
//! such accident an unknown device vector instead. The APIC's LINT0, through which the PIC is
//! wired, is masked as well (`apic::init`).

use x86_64::instructions::port::Port;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

/// ICW1: edge triggered, cascade, ICW4 follows.
const ICW1_INIT_ICW4: u8 = 0x11;
/// ICW4: 8086 mode, normal EOI.
const ICW4_8086: u8 = 0x01;
/// ICW3 of the master: a slave on IRQ 2.
const ICW3_MASTER_SLAVE_ON_IRQ2: u8 = 1 << 2;
/// ICW3 of the slave: its cascade identity, 2.
const ICW3_SLAVE_ID: u8 = 2;

/// First vector of the master PIC after reinitialisation (Xen's `FIRST_LEGACY_VECTOR`).
pub const MASTER_VECTOR_BASE: u8 = 0x20;
/// First vector of the slave PIC.
pub const SLAVE_VECTOR_BASE: u8 = 0x28;

/// Reinitialises both PICs on vectors 0x20..0x2f with every line masked.
pub fn disable() {
    let steps: [(u16, u8); 10] = [
        (MASTER_DATA, 0xff),
        (SLAVE_DATA, 0xff),
        (MASTER_CMD, ICW1_INIT_ICW4),
        (MASTER_DATA, MASTER_VECTOR_BASE),
        (MASTER_DATA, ICW3_MASTER_SLAVE_ON_IRQ2),
        (MASTER_DATA, ICW4_8086),
        (SLAVE_CMD, ICW1_INIT_ICW4),
        (SLAVE_DATA, SLAVE_VECTOR_BASE),
        (SLAVE_DATA, ICW3_SLAVE_ID),
        (SLAVE_DATA, ICW4_8086),
    ];
    for (port, value) in steps {
        // SAFETY: the PIC ports belong to the hypervisor; reprogramming the PICs only changes
        // which vectors they would raise, and every line stays masked.
        unsafe { Port::<u8>::new(port).write(value) };
    }
    // The initialisation sequence leaves the interrupt mask cleared: mask everything again.
    for port in [MASTER_DATA, SLAVE_DATA] {
        // SAFETY: as above; writing OCW1 only masks lines.
        unsafe { Port::<u8>::new(port).write(0xff) };
    }
}
