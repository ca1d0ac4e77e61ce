//! Ending a run: a clean ACPI power-off (QEMU exits 0), or a failure code through `isa-debug-exit`.
//!
//! Why ACPI and not `isa-debug-exit` for success: the debug-exit device makes QEMU exit with
//! `(value << 1) | 1`, which is never 0. An ACPI S5 request (`SLP_EN` with `SLP_TYP` = S5 in the
//! PM1a control register) makes QEMU shut down and exit 0. SeaBIOS, which runs before our
//! multiboot entry, sets the ACPI PM I/O base to 0x600 on both `-machine q35` (ICH9 LPC) and
//! `-machine pc` (PIIX4 PM), so PM1a_CNT is port 0x604 on both; QEMU's DSDT declares
//! `_S5 = {0, 0}`, so `SLP_TYP` is 0. (A general hypervisor would read PM1a_CNT from the ACPI FADT
//! and `SLP_TYP` from the DSDT's `_S5` object; that can come with ACPI table parsing.)

use x86_64::instructions::{hlt, interrupts, port::Port};
use xen_core::power::FailCode;

/// ACPI PM1a control register, as SeaBIOS sets it up under QEMU (PM base 0x600 + 4).
const PM1A_CNT_PORT: u16 = 0x604;
/// PM1 control: sleep enable.
const PM1_CNT_SLP_EN: u16 = 1 << 13;
/// PM1 control: sleep type field shift; QEMU's `_S5` sleep type is 0.
const PM1_CNT_SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_S5_QEMU: u16 = 0;

/// The keyboard controller's command port, and its "pulse reset line" command.
const KBC_COMMAND_PORT: u16 = 0x64;
const KBC_PULSE_RESET: u8 = 0xFE;

/// QEMU's `isa-debug-exit` device, as the test command line places it (`iobase=0xf4`).
const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// Powers the machine off. Under QEMU the process exits with status 0.
pub fn poweroff() -> ! {
    let s5 = PM1_CNT_SLP_EN | (SLP_TYP_S5_QEMU << PM1_CNT_SLP_TYP_SHIFT);
    // SAFETY: PM1a_CNT belongs to the hypervisor; writing SLP_EN turns the machine off, which is
    // what the caller asked for. On a machine without ACPI at this port the write is ignored.
    unsafe { Port::<u16>::new(PM1A_CNT_PORT).write(s5) };

    // QEMU acts on the request at its next main-loop iteration; the CPU may run on briefly.
    for _ in 0..1_000_000 {
        core::hint::spin_loop();
    }

    // Still here: no ACPI PM block at 0x604. Reset instead; with `-no-reboot`, QEMU treats a reset
    // as a shutdown and still exits 0.
    // SAFETY: pulsing the reset line ends this run, which is what the caller asked for.
    unsafe { Port::<u8>::new(KBC_COMMAND_PORT).write(KBC_PULSE_RESET) };
    halt_forever()
}

/// Stops the machine with a failure. Under QEMU with `isa-debug-exit` the process exits with
/// status `(code << 1) | 1` (see [`FailCode::qemu_exit_status`]); elsewhere the CPU just halts.
pub fn fail(code: FailCode) -> ! {
    // SAFETY: the debug-exit port is a QEMU test device with no effect on memory; on hardware
    // without it, the write goes nowhere.
    unsafe { Port::<u8>::new(ISA_DEBUG_EXIT_PORT).write(code as u8) };
    halt_forever()
}

/// Halts this CPU for good.
pub fn halt_forever() -> ! {
    interrupts::disable();
    loop {
        hlt();
    }
}

/// Resets the machine (dom0's `SHUTDOWN_reboot`). Under QEMU with `-no-reboot` the process exits
/// with status 0, as it does for Xen's reboot.
pub fn reboot() -> ! {
    // SAFETY: pulsing the reset line ends this run, which is what the caller asked for.
    unsafe { Port::<u8>::new(KBC_COMMAND_PORT).write(KBC_PULSE_RESET) };
    halt_forever()
}
