//! The CMOS real-time clock (MC146818): the date and time at boot, for the guests' wallclock.
//!
//! The clock updates its registers once a second, and while "update in progress" (register A
//! bit 7) is set they may be inconsistent. The registers are therefore read after the flag
//! clears, twice, until two reads agree. Decoding (BCD or binary, 12- or 24-hour, the century)
//! is portable: `xen_core::time::RtcRegisters::decode`.

use x86_64::instructions::port::Port;
use xen_core::time::RtcRegisters;

/// CMOS index port (bit 7 would disable NMIs; it is left clear, as Xen's `CMOS_READ` does).
const CMOS_INDEX: u16 = 0x70;
/// CMOS data port.
const CMOS_DATA: u16 = 0x71;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
/// Register A: update in progress.
const REG_A_UIP: u8 = 0x80;

/// Polls of register A before giving up on the update flag. An update holds it for under 2 ms;
/// a poll costs about a microsecond on hardware.
const MAX_UIP_POLLS: u32 = 1_000_000;
/// Pairs of reads before giving up on getting two that agree.
const MAX_TRIES: u32 = 10;

/// Why the RTC could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcReadError {
    /// "Update in progress" never cleared.
    Stuck,
    /// Consecutive reads kept disagreeing.
    Unstable,
}

fn cmos_read(reg: u8) -> u8 {
    // SAFETY: the CMOS ports belong to the hypervisor; selecting a register and reading it has
    // no effect on memory (and none on the clock: the time registers are read-only here).
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(reg);
        Port::<u8>::new(CMOS_DATA).read()
    }
}

fn wait_update_done() -> Result<(), RtcReadError> {
    for _ in 0..MAX_UIP_POLLS {
        if cmos_read(REG_A) & REG_A_UIP == 0 {
            return Ok(());
        }
    }
    Err(RtcReadError::Stuck)
}

fn read_once() -> RtcRegisters {
    RtcRegisters {
        second: cmos_read(REG_SECONDS),
        minute: cmos_read(REG_MINUTES),
        hour: cmos_read(REG_HOURS),
        day: cmos_read(REG_DAY),
        month: cmos_read(REG_MONTH),
        year: cmos_read(REG_YEAR),
        status_b: cmos_read(REG_B),
    }
}

/// Reads the time registers consistently (two identical reads, each after an update finished).
pub fn read() -> Result<RtcRegisters, RtcReadError> {
    for _ in 0..MAX_TRIES {
        wait_update_done()?;
        let first = read_once();
        wait_update_done()?;
        if read_once() == first {
            return Ok(first);
        }
    }
    Err(RtcReadError::Unstable)
}
