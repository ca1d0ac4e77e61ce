//! The legacy 8259 interrupt controllers: remapped away from the exception vectors and masked.
//!
//! After the BIOS, the master PIC delivers IRQ0 (the PIT) on vector 8, which is also #DF. The
//! hypervisor takes no legacy interrupts (timers come from the local APIC), so the PICs are moved
//! to vectors 0x20..0x2f, where a stray interrupt is harmless, and every line is masked.

use x86_64::instructions::port::Port;

/// Remaps both PICs to 0x20..0x2f and masks all their lines.
pub fn init() {
    let mut cmd1 = Port::<u8>::new(0x20);
    let mut data1 = Port::<u8>::new(0x21);
    let mut cmd2 = Port::<u8>::new(0xa0);
    let mut data2 = Port::<u8>::new(0xa1);
    // SAFETY: the PICs belong to the hypervisor; the standard ICW1..ICW4 sequence reprograms them
    // and OCW1 masks every line. No memory is touched.
    unsafe {
        cmd1.write(0x11); // ICW1: edge, cascade, ICW4 follows
        cmd2.write(0x11);
        data1.write(0x20); // ICW2: vector base
        data2.write(0x28);
        data1.write(0x04); // ICW3: slave on IRQ2
        data2.write(0x02);
        data1.write(0x01); // ICW4: 8086 mode
        data2.write(0x01);
        data1.write(0xff); // OCW1: mask all
        data2.write(0xff);
    }
}
