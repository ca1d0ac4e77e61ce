//! The 8254 programmable interval timer, used only as a stopwatch: channel 2 counts a known number
//! of ticks of its fixed 1.193182 MHz clock, against which the TSC is calibrated.
//!
//! Channel 2 is the one whose gate and output are wired to port 0x61 (it drives the PC speaker),
//! so it can be started and watched without an interrupt: in mode 0 ("interrupt on terminal
//! count") its output goes high when the count reaches zero, and port 0x61 bit 5 shows it. This
//! is how Xen calibrates (`init_pit_and_calibrate_tsc` in `xen/arch/x86/time.c`).

use x86_64::instructions::port::Port;

use xen_core::time::Interval;

/// The PIT's input clock in Hz (Xen's and Linux's `CLOCK_TICK_RATE`).
pub const PIT_HZ: u64 = 1_193_182;

/// Channel 2 data port.
const PIT_CH2: u16 = 0x42;
/// Mode/command port.
const PIT_MODE: u16 = 0x43;
/// Select channel 2, access low byte then high byte, mode 0, binary counting.
const MODE_CH2_LOHI_MODE0: u8 = 0xB0;

/// System control port B (the "port 0x61" of the PC/AT).
const PORT_B: u16 = 0x61;
/// Port B bit 0: channel 2 gate.
const PORT_B_GATE2: u8 = 0x01;
/// Port B bit 1: speaker data enable.
const PORT_B_SPEAKER: u8 = 0x02;
/// Port B bits that are written; the upper four are read-only status.
const PORT_B_CONTROL: u8 = 0x0f;
/// Port B bit 5 (read): channel 2 output.
const PORT_B_OUT2: u8 = 0x20;

/// Polls of port 0x61 after which a count that never ends is declared broken. A 50 ms count takes
/// some tens of thousands of polls on hardware (each `inb` costs about a microsecond); emulators
/// poll faster, so the bound is generous.
const MAX_POLLS: u64 = 200_000_000;

/// Why the PIT could not time an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PitError {
    /// The output was high before any polling: no PIT answers (an absent device reads 0xff).
    NotCounting,
    /// The count never reached zero within the polling budget.
    NeverExpired,
}

/// Counts `ticks` ticks of channel 2 (`ticks / PIT_HZ` seconds) and measures that interval with
/// `counter` (typically `tsc::rdtsc_ordered`).
///
/// The count starts at the write of its high byte, which `counter` brackets; it ends between the
/// last poll of port B that saw the output low and the first that saw it high, which `counter`
/// brackets too. If the CPU is interrupted or descheduled (under emulation) at either end, the
/// bracket widens and [`Interval::uncertainty`] says so. Call with interrupts disabled.
pub fn time_ticks(ticks: u16, mut counter: impl FnMut() -> u64) -> Result<Interval, PitError> {
    let mut port_b: Port<u8> = Port::new(PORT_B);
    let mut mode: Port<u8> = Port::new(PIT_MODE);
    let mut ch2: Port<u8> = Port::new(PIT_CH2);

    // SAFETY: ports 0x61 and 0x42/0x43 belong to the hypervisor (no guest has I/O access to
    // them); reading port B and changing its gate and speaker bits has no effect on memory.
    let saved = unsafe { port_b.read() };
    // Gate high so that channel 2 counts; speaker off so that it stays quiet.
    // SAFETY: as above.
    unsafe { port_b.write((saved & !PORT_B_SPEAKER) | PORT_B_GATE2) };

    let [lo, hi] = ticks.to_le_bytes();
    // SAFETY: programming channel 2 only changes that channel's counter and output, which
    // nothing else uses (channel 0's interrupt is masked at the PIC).
    unsafe {
        mode.write(MODE_CH2_LOHI_MODE0);
        ch2.write(lo);
    }
    let before_start = counter();
    // SAFETY: as above; writing the high byte starts the count.
    unsafe { ch2.write(hi) };
    let after_start = counter();

    let mut polls = 0u64;
    let mut before_poll = counter();
    let end = loop {
        // SAFETY: reading port B has no side effect.
        let out = unsafe { port_b.read() } & PORT_B_OUT2 != 0;
        let after_poll = counter();
        if out {
            break Some((before_poll, after_poll));
        }
        polls += 1;
        if polls >= MAX_POLLS {
            break None;
        }
        // The output was low at this poll, so it rises after this point.
        before_poll = after_poll;
    };

    // Put the control bits (0..3; 4..7 are read-only status) back as the firmware left them.
    // SAFETY: as for the first write to port B.
    unsafe { port_b.write(saved & PORT_B_CONTROL) };

    match end {
        _ if polls == 0 => Err(PitError::NotCounting),
        None => Err(PitError::NeverExpired),
        Some(end) => Ok(Interval::from_brackets((before_start, after_start), end)),
    }
}
