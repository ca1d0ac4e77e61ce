//! The local APIC and its timer: a one-shot timer on a fixed vector, calibrated against the TSC.
//!
//! The APIC is driven in the mode the firmware left it in: xAPIC (registers in an MMIO page, which
//! `mmio` maps uncacheable in the direct map) or x2APIC (registers are MSRs). [`switch_to_x2apic`]
//! moves from the first to the second. Either way the rest of the hypervisor sees one interface:
//! [`init`], [`calibrate_timer`], [`arm_oneshot`] / [`arm_oneshot_tsc`], [`cancel`], [`eoi`], and
//! [`timer_interrupt`], which the IDT stub for [`TIMER_VECTOR`] calls.
//!
//! x2APIC whenever the CPU has it (Xen uses it where it can: with an IOMMU for interrupt
//! remapping, or when firmware enabled it; without either, as on QEMU's machine here, Xen 4.17
//! keeps the xAPIC), but only once the timer is calibrated (`dom0::start`): QEMU (10.0, TCG) with `-icount` aborts with "Bad icount read" when the guest
//! reads the x2APIC timer's current-count MSR (its `rdmsr` helper reads the virtual clock without
//! being marked as an I/O instruction). Writes are fine, and so is the xAPIC page, which is I/O.
//! Calibration must read the current count, so it runs in the xAPIC mode firmware leaves the APIC
//! in; nothing reads the count afterwards. In x2APIC mode an EOI or a timer arming is an MSR
//! write, where the xAPIC's is an MMIO write that QEMU's TCG runs by leaving the translated block
//! and translating the access alone (docs/performance.md, "Device interrupts without MMIO").
//!
//! Deadlines are kept in TSC ticks. The APIC timer only counts down a number of its own ticks, so
//! arming converts the time left into APIC ticks; if the interrupt arrives before the deadline
//! (calibration is never exact) the handler re-arms for the rest, so an expiry is never early.
//! Xen uses the TSC-deadline mode where it exists; the count-down mode used here works on every
//! APIC, including QEMU's emulated one under TCG.

use core::arch::x86_64::__cpuid;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use spin::Once;
use x86_64::registers::model_specific::Msr;
use xen_core::time::{countdown_ticks, Clock, TimeScale};

use super::mmio::{self, MmioError};
use super::tsc::rdtsc_ordered;
use xen_core::time::Interval;

/// The vector of the APIC timer interrupt: in the highest priority class (0xf0..0xff), where Xen
/// keeps its own `LOCAL_TIMER_VECTOR` and the other APIC-internal vectors.
pub const TIMER_VECTOR: u8 = 0xF0;
/// The vector the APIC raises for a spurious interrupt (the low four bits must be set on P6-era
/// APICs). Spurious interrupts take no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

// Register offsets in the xAPIC page; the x2APIC MSR is 0x800 + offset / 16 (Intel SDM vol. 3,
// "Local APIC Register Address Map").
const REG_ID: u32 = 0x020;
const REG_VERSION: u32 = 0x030;
const REG_TPR: u32 = 0x080;
const REG_EOI: u32 = 0x0B0;
const REG_SVR: u32 = 0x0F0;
const REG_ESR: u32 = 0x280;
const REG_LVT_CMCI: u32 = 0x2F0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_THERMAL: u32 = 0x330;
const REG_LVT_PERF: u32 = 0x340;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;

/// First x2APIC MSR.
const MSR_X2APIC_BASE: u32 = 0x800;
/// IA32_APIC_BASE and its bits.
const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// LVT entry: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT entry: NMI delivery mode.
const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
/// Spurious-vector register: APIC software enable.
const SVR_APIC_ENABLED: u32 = 1 << 8;
/// Timer divide configuration: divide by 1 (as Xen programs it).
const TIMER_DIVIDE_BY_1: u32 = 0b1011;

/// CPUID leaf 1: EDX bit 9 is "has an APIC", ECX bit 21 "has x2APIC".
const CPUID1_EDX_APIC: u32 = 1 << 9;
const CPUID1_ECX_X2APIC: u32 = 1 << 21;

/// How the APIC's registers are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// x2APIC: registers are MSRs.
    X2Apic,
    /// xAPIC: registers are 32-bit MMIO at this (uncached, direct-map) virtual address.
    XApic {
        /// Virtual address of the register page.
        base: u64,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::X2Apic => f.write_str("x2APIC"),
            Mode::XApic { .. } => f.write_str("xAPIC"),
        }
    }
}

/// Why the APIC or its timer cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID says there is no local APIC.
    NoApic,
    /// [`init`] has not run.
    NotInitialised,
    /// CPUID says the APIC has no x2APIC mode.
    NoX2Apic,
    /// The xAPIC register page could not be mapped uncached.
    Mmio(MmioError),
    /// The timer did not count down during calibration.
    TimerNotCounting,
}

/// How the registers are reached: 0 before `init`, then [`MODE_XAPIC`] or [`MODE_X2APIC`].
static MODE: AtomicU8 = AtomicU8::new(0);
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
/// Virtual address of the xAPIC register page (in xAPIC mode).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

/// IA32_APIC_BASE as [`init`] found it (enabled), 0 before: what a PV guest reads
/// ([`guest_apic_base`]).
static FIRMWARE_APIC_BASE: AtomicU64 = AtomicU64::new(0);

/// What a guest's `rdmsr` of IA32_APIC_BASE answers: the APIC as firmware left it (enabled), not
/// the mode the hypervisor moved it to, so that what guests see does not depend on it. Xen 4.17
/// reads the CPU's value, and on a machine without an IOMMU (QEMU's here) keeps the xAPIC mode
/// firmware left; this gives the same answer (the differential case `msr.read_apic_base`).
/// `None` before [`init`].
pub fn guest_apic_base() -> Option<u64> {
    match FIRMWARE_APIC_BASE.load(Ordering::SeqCst) {
        0 => None,
        v => Some(v),
    }
}

/// The current mode, if [`init`] has run.
pub fn mode() -> Option<Mode> {
    match MODE.load(Ordering::SeqCst) {
        MODE_XAPIC => Some(Mode::XApic {
            base: XAPIC_BASE.load(Ordering::SeqCst),
        }),
        MODE_X2APIC => Some(Mode::X2Apic),
        _ => None,
    }
}

/// Reads an APIC register (0 before [`init`]).
fn read(reg: u32) -> u32 {
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: in x2APIC mode (set by `init` or `switch_to_x2apic`), MSR 0x800 + reg/16 is
            // the APIC register `reg`; reading it has no side effect (`reg` is never the
            // write-only EOI register here).
            unsafe { Msr::new(MSR_X2APIC_BASE + (reg >> 4)).read() as u32 }
        }
        Some(Mode::XApic { base }) => {
            // SAFETY: `base` maps the APIC's register page uncached (`init`); `reg` is the offset
            // of an aligned 32-bit register in it. Registers are not memory Rust knows about.
            unsafe { ptr::read_volatile((base + u64::from(reg)) as *const u32) }
        }
        None => 0,
    }
}

/// Writes an APIC register. Does nothing before [`init`].
fn write(reg: u32, value: u32) {
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: as in `read`; every register written here is writable in x2APIC mode and
            // only affects interrupt delivery to this CPU.
            unsafe { Msr::new(MSR_X2APIC_BASE + (reg >> 4)).write(u64::from(value)) }
        }
        Some(Mode::XApic { base }) => {
            // SAFETY: as in `read`.
            unsafe { ptr::write_volatile((base + u64::from(reg)) as *mut u32, value) }
        }
        None => {}
    }
}

/// First Interrupt Request Register (eight of them, 32 vectors each, 0x10 apart).
const REG_IRR: u32 = 0x200;

/// Whether an interrupt waits to be taken: a bit of a vector from 32 up is set in the IRR (the
/// hypervisor runs with interrupts off, so they wait there). Eight register reads: callers ration
/// it.
pub fn interrupt_waiting() -> bool {
    // The first register holds vectors 0..31: exceptions, never requested through the APIC
    // (their IRR bits are reserved).
    (1..8).any(|i| read(REG_IRR + 0x10 * i) != 0)
}

/// Reads IA32_APIC_BASE.
fn apic_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (`init` checks CPUID first);
    // reading it has no side effect.
    unsafe { Msr::new(MSR_APIC_BASE).read() }
}

/// Enables the local APIC with every local interrupt source masked except NMIs on LINT1 (the
/// legacy PIC, wired to LINT0, stays cut off), the spurious vector at [`SPURIOUS_VECTOR`] and the
/// timer stopped. Keeps the firmware's mode (see the module documentation). Idempotent.
pub fn init() -> Result<Mode, ApicError> {
    if let Some(mode) = mode() {
        return Ok(mode);
    }
    if __cpuid(1).edx & CPUID1_EDX_APIC == 0 {
        return Err(ApicError::NoApic);
    }
    let base = apic_base();
    let mode = if base & (APIC_BASE_ENABLE | APIC_BASE_EXTD) == APIC_BASE_ENABLE | APIC_BASE_EXTD {
        Mode::X2Apic
    } else {
        let va = mmio::directmap_uncached(base & APIC_BASE_ADDR).map_err(ApicError::Mmio)?;
        if base & APIC_BASE_ENABLE == 0 {
            // SAFETY: setting EN keeps the APIC at its address and only enables it; interrupts
            // are disabled and every source is masked below before any can be delivered.
            unsafe { Msr::new(MSR_APIC_BASE).write(base | APIC_BASE_ENABLE) };
        }
        XAPIC_BASE.store(va, Ordering::SeqCst);
        Mode::XApic { base: va }
    };
    FIRMWARE_APIC_BASE.store(base | APIC_BASE_ENABLE, Ordering::SeqCst);
    MODE.store(
        match mode {
            Mode::X2Apic => MODE_X2APIC,
            Mode::XApic { .. } => MODE_XAPIC,
        },
        Ordering::SeqCst,
    );

    // Xen's `clear_local_APIC` and `setup_local_APIC`, reduced to one CPU and no guests yet.
    let max_lvt = (read(REG_VERSION) >> 16) & 0xff;
    LVT_TIMER.store(LVT_UNKNOWN, Ordering::SeqCst);
    set_lvt_timer(LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_DELIVERY_NMI);
    write(REG_LVT_ERROR, LVT_MASKED);
    if max_lvt >= 4 {
        write(REG_LVT_PERF, LVT_MASKED);
    }
    if max_lvt >= 5 {
        write(REG_LVT_THERMAL, LVT_MASKED);
    }
    if max_lvt >= 6 {
        write(REG_LVT_CMCI, LVT_MASKED);
    }
    write(REG_ESR, 0);
    write(REG_TPR, 0);
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write(REG_TIMER_INITIAL, 0);
    write(REG_SVR, SVR_APIC_ENABLED | u32::from(SPURIOUS_VECTOR));
    Ok(mode)
}

/// Switches an xAPIC-mode APIC to x2APIC mode (needed for APIC IDs above 255, and cheaper to
/// program: no MMIO). Every register keeps its value, the timer included. Does nothing if already
/// in x2APIC mode; fails if the CPU has no x2APIC or [`init`] has not run.
pub fn switch_to_x2apic() -> Result<(), ApicError> {
    match mode() {
        Some(Mode::X2Apic) => return Ok(()),
        None => return Err(ApicError::NotInitialised),
        Some(Mode::XApic { .. }) => {}
    }
    if __cpuid(1).ecx & CPUID1_ECX_X2APIC == 0 {
        return Err(ApicError::NoX2Apic);
    }
    // SAFETY: the APIC is enabled in xAPIC mode (`init`), from which setting EXTD is a legal
    // transition; only the way its registers are reached changes, so no memory is affected. The
    // MMIO page is not accessed again.
    unsafe { Msr::new(MSR_APIC_BASE).write(apic_base() | APIC_BASE_ENABLE | APIC_BASE_EXTD) };
    MODE.store(MODE_X2APIC, Ordering::SeqCst);
    Ok(())
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    match mode() {
        Some(Mode::X2Apic) => read(REG_ID),
        _ => read(REG_ID) >> 24,
    }
}

/// Sends an NMI to this CPU through the interrupt command register (physical destination: its
/// own APIC ID; the "self" shorthand is not allowed for NMIs). Used by `selftest=ist`.
pub fn send_self_nmi() {
    const ICR_LOW: u32 = 0x300;
    const ICR_HIGH: u32 = 0x310;
    const ICR_ASSERT: u32 = 1 << 14;
    let low = LVT_DELIVERY_NMI | ICR_ASSERT;
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: in x2APIC mode the ICR is the one 64-bit MSR 0x830 (destination in the high
            // half); an NMI to this CPU only runs the hypervisor's NMI handler.
            unsafe {
                Msr::new(MSR_X2APIC_BASE + (ICR_LOW >> 4))
                    .write((u64::from(id()) << 32) | u64::from(low))
            }
        }
        Some(Mode::XApic { .. }) => {
            write(ICR_HIGH, id() << 24);
            write(ICR_LOW, low);
        }
        None => {}
    }
}

/// What the timer's LVT entry holds ([`LVT_UNKNOWN`] until [`init`] writes it): every arming
/// would otherwise write it again (unmasked, the same vector), and under emulation each APIC
/// register access costs an exit (xAPIC: an MMIO write, which QEMU's TCG handles by leaving the
/// translated block and running the access alone). One CPU: a second would need it per CPU.
static LVT_TIMER: AtomicU32 = AtomicU32::new(LVT_UNKNOWN);
/// Not a value an LVT entry is ever given here (reserved bits set).
const LVT_UNKNOWN: u32 = u32::MAX;

/// Sets the timer's LVT entry to `value` unless it holds it already. Only this module writes
/// the register, always through here, so the cache is what the APIC holds (the APIC keeps it
/// across the switch to x2APIC mode).
fn set_lvt_timer(value: u32) {
    if LVT_TIMER.load(Ordering::SeqCst) != value {
        write(REG_LVT_TIMER, value);
        LVT_TIMER.store(value, Ordering::SeqCst);
    }
}

/// Signals the end of the interrupt being handled.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// What the timer needs from calibration.
struct Calibration {
    clock: Clock,
    /// APIC timer ticks per second (after the divider).
    apic_hz: u64,
    /// Nanoseconds to APIC timer ticks.
    ns_to_ticks: TimeScale,
}

static CALIBRATION: Once<Calibration> = Once::new();

/// Calibration attempts at most; the tightest measurement wins.
const CALIBRATE_TRIES: usize = 5;

/// Counts the APIC timer down from its maximum for about `interval` TSC ticks and returns how many
/// APIC ticks passed, with the TSC interval measured between the two register accesses.
fn measure_timer(interval: u64) -> (u64, Interval) {
    let load_before = rdtsc_ordered();
    write(REG_TIMER_INITIAL, u32::MAX);
    let load_after = rdtsc_ordered();
    while rdtsc_ordered().wrapping_sub(load_after) < interval {
        core::hint::spin_loop();
    }
    let read_before = rdtsc_ordered();
    let remaining = read(REG_TIMER_CURRENT);
    let read_after = rdtsc_ordered();
    write(REG_TIMER_INITIAL, 0);
    (
        u64::from(u32::MAX - remaining),
        Interval::from_brackets((load_before, load_after), (read_before, read_after)),
    )
}

/// Measures the APIC timer's rate against the TSC over 10 ms of `clock` and keeps it (with the
/// clock) for arming. Returns the rate in Hz. Call after [`init`], with interrupts disabled, in
/// xAPIC mode under QEMU `-icount` (see the module documentation).
///
/// Each register access is bracketed by TSC reads; a measurement whose brackets are wider than
/// 100 ppm of the interval (the CPU was descheduled, under emulation) is repeated.
pub fn calibrate_timer(clock: &Clock) -> Result<u64, ApicError> {
    if let Some(c) = CALIBRATION.get() {
        return Ok(c.apic_hz);
    }
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    set_lvt_timer(LVT_MASKED | u32::from(TIMER_VECTOR));
    let interval = (clock.tsc_hz / 100).max(1);
    let mut best: Option<(u64, Interval)> = None;
    for _ in 0..CALIBRATE_TRIES {
        let (ticks, tsc) = measure_timer(interval);
        if best.is_none_or(|(_, b)| tsc.uncertainty < b.uncertainty) {
            best = Some((ticks, tsc));
        }
        if tsc.uncertainty <= tsc.len() / 10_000 {
            break;
        }
    }
    let (ticks, tsc) = best.ok_or(ApicError::TimerNotCounting)?;
    if ticks == 0 || tsc.len() == 0 {
        return Err(ApicError::TimerNotCounting);
    }
    let apic_hz = (u128::from(ticks) * u128::from(clock.tsc_hz) / u128::from(tsc.len())) as u64;
    let ns_to_ticks = TimeScale::from_frequency(apic_hz)
        .and_then(TimeScale::reciprocal)
        .ok_or(ApicError::TimerNotCounting)?;
    let c = CALIBRATION.call_once(|| Calibration {
        clock: *clock,
        apic_hz,
        ns_to_ticks,
    });
    Ok(c.apic_hz)
}

/// The armed deadline in TSC ticks, 0 when the timer is idle.
static DEADLINE_TSC: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken (including early ones that re-armed, and stale ones after `cancel`).
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Deadlines reached.
static EXPIRIES: AtomicU64 = AtomicU64::new(0);
/// The TSC when the last deadline was found reached.
static LAST_EXPIRY_TSC: AtomicU64 = AtomicU64::new(0);

/// Counts the timer down to TSC `deadline` (at least one tick, at most the 32-bit counter: a
/// farther deadline is re-armed by [`timer_interrupt`] when the count runs out early, as Xen's
/// `reprogram_timer` clamps `APIC_TMICT`). The conversion saturates ([`countdown_ticks`]), so a
/// far deadline never turns into a short count.
fn program_countdown(c: &Calibration, deadline: u64) {
    let ticks = countdown_ticks(c.clock.scale, c.ns_to_ticks, rdtsc_ordered(), deadline);
    set_lvt_timer(u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, ticks);
}

/// Arms the one-shot timer for system time `deadline` (nanoseconds since boot). A deadline in the
/// past fires at once. Replaces any armed deadline. Does nothing before [`calibrate_timer`].
pub fn arm_oneshot(deadline: u64) {
    if let Some(c) = CALIBRATION.get() {
        arm_oneshot_tsc(c.clock.tsc_at(deadline));
    }
}

/// Arms the one-shot timer for TSC value `deadline`.
pub fn arm_oneshot_tsc(deadline: u64) {
    let Some(c) = CALIBRATION.get() else {
        return;
    };
    DEADLINE_TSC.store(deadline.max(1), Ordering::SeqCst);
    program_countdown(c, deadline);
}

/// Whether the one-shot timer is counting towards a deadline (armed, not yet reached): it will
/// interrupt. False once the deadline was reached, or after [`cancel`].
pub fn counting() -> bool {
    DEADLINE_TSC.load(Ordering::SeqCst) != 0
}

/// Disarms the timer. An interrupt already on its way is taken but counts as no expiry.
pub fn cancel() {
    DEADLINE_TSC.store(0, Ordering::SeqCst);
    write(REG_TIMER_INITIAL, 0);
    set_lvt_timer(LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// Counters of the timer, for tests and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerStats {
    /// Interrupts taken on [`TIMER_VECTOR`].
    pub interrupts: u64,
    /// Deadlines reached.
    pub expiries: u64,
    /// TSC at the last expiry.
    pub last_expiry_tsc: u64,
}

/// The timer's counters.
pub fn timer_stats() -> TimerStats {
    TimerStats {
        interrupts: INTERRUPTS.load(Ordering::SeqCst),
        expiries: EXPIRIES.load(Ordering::SeqCst),
        last_expiry_tsc: LAST_EXPIRY_TSC.load(Ordering::SeqCst),
    }
}

/// The handler for [`TIMER_VECTOR`], called by the IDT stub with interrupts disabled: records an
/// expiry if the deadline has passed, re-arms for the remainder if the interrupt came early, and
/// acknowledges the interrupt.
pub extern "C" fn timer_interrupt() {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    let deadline = DEADLINE_TSC.load(Ordering::SeqCst);
    if deadline != 0 {
        let now = rdtsc_ordered();
        if now >= deadline {
            DEADLINE_TSC.store(0, Ordering::SeqCst);
            LAST_EXPIRY_TSC.store(now, Ordering::SeqCst);
            EXPIRIES.fetch_add(1, Ordering::SeqCst);
        } else if let Some(c) = CALIBRATION.get() {
            program_countdown(c, deadline);
        }
    }
    eoi();
}
