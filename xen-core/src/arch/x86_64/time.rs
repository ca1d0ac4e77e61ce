//! Time at boot (Xen's `init_xen_time`): legacy PIC off, TSC calibrated, APIC timer calibrated,
//! wallclock from the CMOS clock; and the `selftest=time` boot check of all of it.
//!
//! After [`init`] the hypervisor has a system clock ([`now`], nanoseconds since boot, from the TSC
//! with Xen's scaling), a one-shot timer (`apic::arm_oneshot`), and the wall-clock time at system
//! time 0 for guests' `shared_info` (`wc_sec`/`wc_nsec`).

use core::fmt;

use spin::Once;
use x86_64::instructions::interrupts;
use xen_core::time::{Clock, DateTime, RtcError, Wallclock, NSEC_PER_SEC};

use super::apic::{self, ApicError, Mode};
use super::console::printk;
use super::pit::PitError;
use super::rtc::{self, RtcReadError};
use super::{pic, tsc};

/// What [`init`] found.
#[derive(Clone, Copy, Debug)]
pub struct TimeInfo {
    /// The system clock.
    pub clock: Clock,
    /// Whether CPUID calls the TSC invariant.
    pub tsc_invariant: bool,
    /// APIC timer ticks per second.
    pub apic_timer_hz: u64,
    /// The CMOS date at boot, or why it could not be had.
    pub rtc: Result<DateTime, RtcProblem>,
    /// Wall-clock time at system time 0 (the epoch if the RTC was unusable).
    pub wallclock: Wallclock,
}

/// Why the time subsystem could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// TSC calibration failed.
    Pit(PitError),
    /// The calibration gave a frequency of 0.
    TscStopped,
    /// The local APIC or its timer is unusable.
    Apic(ApicError),
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Pit(e) => write!(f, "TSC calibration against the PIT failed: {e:?}"),
            TimeError::TscStopped => f.write_str("the TSC does not advance"),
            TimeError::Apic(e) => write!(f, "local APIC: {e:?}"),
        }
    }
}

/// Why the RTC gave no date (the wallclock then starts at the epoch, and boot goes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcProblem {
    /// The registers could not be read consistently.
    Read(RtcReadError),
    /// They did not hold a valid date.
    Decode(RtcError),
}

impl fmt::Display for RtcProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcProblem::Read(e) => write!(f, "cannot read the CMOS clock: {e:?}"),
            RtcProblem::Decode(e) => write!(f, "{e}"),
        }
    }
}

static TIME: Once<TimeInfo> = Once::new();

/// Brings up time keeping; idempotent. Call with interrupts disabled.
pub fn init() -> Result<&'static TimeInfo, TimeError> {
    if let Some(info) = TIME.get() {
        return Ok(info);
    }
    pic::disable();
    let tsc_hz = tsc::calibrate().map_err(TimeError::Pit)?;
    let clock = Clock::new(tsc_hz, tsc::rdtsc_ordered()).ok_or(TimeError::TscStopped)?;
    apic::init().map_err(TimeError::Apic)?;
    let apic_timer_hz = apic::calibrate_timer(&clock).map_err(TimeError::Apic)?;
    let rtc = rtc::read()
        .map_err(RtcProblem::Read)
        .and_then(|regs| regs.decode().map_err(RtcProblem::Decode));
    let now = clock.system_time(tsc::rdtsc_ordered());
    let wallclock = match rtc {
        Ok(date) => Wallclock::at_boot(
            Wallclock {
                sec: date.unix_seconds(),
                nsec: 0,
            },
            now,
        ),
        Err(_) => Wallclock::default(),
    };
    Ok(TIME.call_once(|| TimeInfo {
        clock,
        tsc_invariant: tsc::is_invariant(),
        apic_timer_hz,
        rtc,
        wallclock,
    }))
}

/// System time: nanoseconds since [`init`] (0 before it).
pub fn now() -> u64 {
    TIME.get()
        .map_or(0, |t| t.clock.system_time(tsc::rdtsc_ordered()))
}

/// System time at TSC value `tsc` (0 before [`init`]): what [`now`] returned, or will return,
/// when the TSC read `tsc`.
pub fn system_time_at(tsc: u64) -> u64 {
    TIME.get().map_or(0, |t| t.clock.system_time(tsc))
}

/// The TSC value at which [`now`] reaches `system_time` (`u64::MAX` before time keeping is up:
/// never).
pub fn tsc_at(system_time: u64) -> u64 {
    TIME.get().map_or(u64::MAX, |t| t.clock.tsc_at(system_time))
}

/// The TSC now (ordered after earlier loads), for comparing with [`tsc_at`].
#[inline]
pub fn tsc_now() -> u64 {
    tsc::rdtsc_ordered()
}

/// The APIC's mode, for printing.
struct ModeName(Option<Mode>);

impl fmt::Display for ModeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(mode) => write!(f, "{mode}"),
            None => f.write_str("no APIC"),
        }
    }
}

/// A frequency in Hz, printed as MHz with three decimals.
struct Mhz(u64);

impl fmt::Display for Mhz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let khz = (self.0 + 500) / 1000;
        write!(f, "{}.{:03} MHz", khz / 1000, khz % 1000)
    }
}

/// A duration in nanoseconds, printed as milliseconds with three decimals.
struct Ms(u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0 / 1000;
        write!(f, "{}.{:03}", us / 1000, us % 1000)
    }
}

/// How long each one-shot of the self-test is.
const SELFTEST_DELAY_NS: u64 = 10_000_000;
/// The deadline of the timer the self-test cancels (it then waits three times as long, busy: a
/// short one keeps `-icount` runs, where busy waiting costs real instructions, quick).
const CANCELLED_DELAY_NS: u64 = 1_000_000;
/// How many one-shots it arms.
const SELFTEST_SHOTS: usize = 5;

/// Waits, halted, until the timer has expired `count` times in all. Interrupts are enabled only
/// inside `sti; hlt`, so nothing else can run meanwhile. A timer that never fires hangs here; the
/// test harness's time limit catches that.
fn wait_for_expiries(count: u64) {
    while apic::timer_stats().expiries < count {
        interrupts::enable_and_hlt();
        interrupts::disable();
    }
}

/// Busy-waits for `ns` of system time with interrupts enabled (no `hlt`: nothing may be armed).
fn spin_with_interrupts(clock: &Clock, ns: u64) {
    let end = clock.tsc_at(clock.system_time(tsc::rdtsc_ordered()) + ns);
    interrupts::enable();
    while tsc::rdtsc_ordered() < end {
        core::hint::spin_loop();
    }
    interrupts::disable();
}

/// One round of the self-test in the APIC's current mode: [`SELFTEST_SHOTS`] one-shots (each
/// expiring once, never early), a cancelled timer (silent), a past deadline (at once). Arms
/// `SELFTEST_SHOTS + 1` deadlines that expire. Returns whether every check passed.
fn oneshot_round(clock: &Clock) -> bool {
    let mut ok = true;
    let mut delays = [0u64; SELFTEST_SHOTS];
    for delay in delays.iter_mut() {
        let before = apic::timer_stats();
        let armed_at = tsc::rdtsc_ordered();
        apic::arm_oneshot(clock.system_time(armed_at) + SELFTEST_DELAY_NS);
        wait_for_expiries(before.expiries + 1);
        let after = apic::timer_stats();
        *delay = clock.scale.scale(after.last_expiry_tsc - armed_at);
        if *delay < SELFTEST_DELAY_NS {
            printk!("time selftest: FAIL: expired after {} ms\n", Ms(*delay));
            ok = false;
        }
    }
    let stats = apic::timer_stats();
    printk!(
        "time selftest: {}: one-shot {} ms x{SELFTEST_SHOTS}: delays",
        ModeName(apic::mode()),
        Ms(SELFTEST_DELAY_NS)
    );
    for d in delays {
        printk!(" {}", Ms(d));
    }
    let late = delays.map(|d| d.saturating_sub(SELFTEST_DELAY_NS));
    printk!(
        " ms; late by {} ms on average, {} ms at most; {} expiries, {} interrupts so far\n",
        Ms(late.iter().sum::<u64>() / SELFTEST_SHOTS as u64),
        Ms(late.iter().copied().max().unwrap_or(0)),
        stats.expiries,
        stats.interrupts
    );

    // A cancelled timer raises nothing, even with interrupts enabled well past its deadline.
    let before = apic::timer_stats();
    apic::arm_oneshot(now() + CANCELLED_DELAY_NS);
    apic::cancel();
    spin_with_interrupts(clock, 3 * CANCELLED_DELAY_NS);
    if apic::timer_stats().expiries != before.expiries {
        printk!("time selftest: FAIL: a cancelled timer expired\n");
        ok = false;
    }

    // A deadline already past fires at once (at the next APIC tick, not after a full count).
    let before = apic::timer_stats();
    let armed_at = tsc::rdtsc_ordered();
    apic::arm_oneshot(clock.system_time(armed_at).saturating_sub(1));
    wait_for_expiries(before.expiries + 1);
    let immediate = clock
        .scale
        .scale(apic::timer_stats().last_expiry_tsc - armed_at);
    if immediate >= NSEC_PER_SEC {
        printk!(
            "time selftest: FAIL: a past deadline took {} ms\n",
            Ms(immediate)
        );
        ok = false;
    }
    ok
}

/// `selftest=time`: calibrates and prints the figures, then runs [`oneshot_round`] in the
/// firmware's APIC mode and, if the CPU has x2APIC, again after switching to it. Checks that every
/// deadline expires exactly once and never early, that cancelled timers stay silent and that a
/// past deadline fires at once. Returns whether every check passed. Accuracy is printed, not
/// checked: in wall-clock mode under emulation it depends on the host.
pub fn selftest() -> bool {
    interrupts::disable();
    let info = match init() {
        Ok(info) => info,
        Err(e) => {
            printk!("time selftest: FAIL: {e}\n");
            return false;
        }
    };
    let clock = &info.clock;
    printk!(
        "TSC: {}{}, APIC timer: {} ({}, vector {:#x}, APIC ID {})\n",
        Mhz(clock.tsc_hz),
        if info.tsc_invariant { " invariant" } else { "" },
        Mhz(info.apic_timer_hz),
        ModeName(apic::mode()),
        apic::TIMER_VECTOR,
        apic::id()
    );
    printk!(
        "TSC scale: tsc_to_system_mul {:#010x}, tsc_shift {}\n",
        clock.scale.mul_frac,
        clock.scale.shift
    );
    match info.rtc {
        Ok(date) => printk!(
            "RTC: {date} UTC, wallclock at boot {}.{:09}\n",
            info.wallclock.sec,
            info.wallclock.nsec
        ),
        Err(e) => printk!("RTC: {e}; wallclock starts at the epoch\n"),
    }

    let initial = apic::timer_stats();
    let mut ok = oneshot_round(clock);
    let mut deadlines = SELFTEST_SHOTS as u64 + 1;
    // The same again with the APIC in x2APIC mode, if the CPU has it: the timer keeps its
    // calibration, and arming and EOI go through MSRs instead of the MMIO page.
    if apic::switch_to_x2apic().is_ok() {
        ok &= oneshot_round(clock);
        deadlines += SELFTEST_SHOTS as u64 + 1;
    }

    // One expiry per deadline, none for the cancelled timers.
    let total = apic::timer_stats().expiries - initial.expiries;
    if total != deadlines {
        printk!("time selftest: FAIL: {total} expiries for {deadlines} deadlines\n");
        ok = false;
    }

    printk!("time selftest: {}\n", if ok { "PASS" } else { "FAIL" });
    ok
}
