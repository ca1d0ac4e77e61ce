//! The time-stamp counter: ordered reads, and calibration of its frequency against the PIT.
//!
//! System time (nanoseconds since boot) is the TSC scaled by `xen_core::time::Clock`, as in Xen,
//! so the TSC's frequency must be known. Firmware does not say it reliably, so it is measured:
//! 50 ms of PIT channel 2 (Xen's `CALIBRATE_FRAC` of 20), timed with the TSC.

use core::arch::asm;
use core::arch::x86_64::__cpuid;

use xen_core::time::Interval;

use super::pit::{self, PitError, PIT_HZ};

/// PIT ticks in one calibration interval: 1/20 s, rounded as Xen's `CALIBRATE_VALUE` does.
const CALIBRATE_TICKS: u16 = ((PIT_HZ + 10) / 20) as u16;

/// Reads the TSC after all earlier instructions have completed (`lfence; rdtsc`, Xen's
/// `rdtsc_ordered`), so that a measurement is not taken early by out-of-order execution.
#[inline]
pub fn rdtsc_ordered() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence` and `rdtsc` only read the time-stamp counter into EDX:EAX; CR4.TSD is
    // clear, so ring 0 may execute it. No memory is touched.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Whether the TSC runs at a constant rate in every power state (CPUID 0x8000_0007 EDX bit 8),
/// which is what makes it usable as the clock source.
pub fn is_invariant() -> bool {
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Calibration attempts at most; the tightest measurement wins.
const CALIBRATE_TRIES: usize = 5;

/// Measures the TSC frequency in Hz over 50 ms of the PIT. Call with interrupts disabled.
///
/// On hardware one measurement is enough (Xen takes one). Under emulation the CPU can be
/// descheduled at either end of the interval, which shows as a wide bracket: such a measurement
/// is repeated, up to [`CALIBRATE_TRIES`] times, until one is good to 100 ppm.
pub fn calibrate() -> Result<u64, PitError> {
    let mut best: Option<Interval> = None;
    for _ in 0..CALIBRATE_TRIES {
        let m = pit::time_ticks(CALIBRATE_TICKS, rdtsc_ordered)?;
        if best.is_none_or(|b| m.uncertainty < b.uncertainty) {
            best = Some(m);
        }
        if m.uncertainty <= m.len() / 10_000 {
            break;
        }
    }
    let tsc_ticks = best.map_or(0, |b| u128::from(b.len()));
    Ok((tsc_ticks * u128::from(PIT_HZ) / u128::from(CALIBRATE_TICKS)) as u64)
}
