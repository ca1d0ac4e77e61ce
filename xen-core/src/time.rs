//! Time: Xen's TSC-to-nanosecond scaling, the guest-visible time records, and calendar arithmetic.
//!
//! A PV guest reads time without a hypercall. Xen publishes, per vCPU, a `vcpu_time_info` record
//! (`xen.h`): a TSC stamp, the system time (nanoseconds since boot) at that stamp, and a 32-bit
//! fixed-point factor with a binary shift that turns TSC deltas into nanoseconds. Guests compute
//! `system_time + (((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32`, so the factor
//! must be computed exactly as Xen does (`set_time_scale` in `xen/arch/x86/time.c`) for guests to
//! see the same clock here as on Xen. The record is guarded by a version counter that is odd while
//! an update is in progress (a seqlock); the wallclock in `shared_info` uses the same protocol.
//!
//! Everything here is arithmetic and ordered stores through a small trait ([`SharedWords`]); the
//! drivers that read the TSC, the PIT and the CMOS RTC live in `arch/x86_64/`.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use hypercall_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};

/// Nanoseconds per second (Xen's `SECONDS(1)`, `MILLISECS(1000)`).
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// Seconds per day.
const SECS_PER_DAY: u64 = 86_400;

/// A fixed-point conversion from ticks of some counter to nanoseconds:
/// `ns = ((ticks << shift) * mul_frac) >> 32`, with a negative `shift` meaning a right shift.
///
/// This is Xen's `struct time_scale`, and the pair `(tsc_shift, tsc_to_system_mul)` of
/// `vcpu_time_info`.
#[doc(alias = "time_scale")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    /// Binary shift applied to the tick delta before multiplying (`tsc_shift`).
    pub shift: i8,
    /// Multiplier, a 32-bit binary fraction (`tsc_to_system_mul`).
    pub mul_frac: u32,
}

impl TimeScale {
    /// The scale for a counter running at `ticks_per_sec`, computed as Xen's `set_time_scale`:
    /// shift the frequency into `(1e9, 2e9]`, then `mul_frac = 1e9 * 2^32 / frequency`, truncated.
    /// `None` for a frequency of 0.
    #[doc(alias = "set_time_scale")]
    pub const fn from_frequency(ticks_per_sec: u64) -> Option<TimeScale> {
        if ticks_per_sec == 0 {
            return None;
        }
        let mut tps64 = ticks_per_sec;
        let mut shift: i8 = 0;
        while tps64 > 2 * NSEC_PER_SEC {
            tps64 >>= 1;
            shift -= 1;
        }
        // Now 0 < tps64 <= 2e9, which fits in 32 bits.
        let mut tps32 = tps64 as u32;
        while tps32 as u64 <= NSEC_PER_SEC {
            tps32 <<= 1;
            shift += 1;
        }
        // Xen's `div_frac(1e9, tps32)`: (1e9 << 32) / tps32, which fits in 32 bits because
        // 1e9 < tps32.
        let mul_frac = ((NSEC_PER_SEC << 32) / tps32 as u64) as u32;
        Some(TimeScale { shift, mul_frac })
    }

    /// Converts a tick delta to nanoseconds: Xen's `scale_delta` (`mulq; shrd $32`), bit for bit,
    /// including the bits a left shift pushes out of very large deltas.
    #[doc(alias = "scale_delta")]
    pub const fn scale(self, delta: u64) -> u64 {
        let shifted = if self.shift < 0 {
            delta >> self.shift.unsigned_abs()
        } else {
            delta << self.shift as u32
        };
        ((shifted as u128 * self.mul_frac as u128) >> 32) as u64
    }

    /// As [`TimeScale::scale`] without losing the high bits: the exact result, or `u64::MAX` when
    /// it does not fit. For arming timers, where a wrapped value would be a deadline in the past;
    /// the guest-visible formula stays [`TimeScale::scale`], bit for bit Xen's.
    pub const fn scale_saturating(self, delta: u64) -> u64 {
        let shifted = if self.shift < 0 {
            (delta >> self.shift.unsigned_abs()) as u128
        } else {
            // A shift of 64 or more leaves no room: any non-zero delta saturates.
            if self.shift >= 64 {
                return if delta == 0 { 0 } else { u64::MAX };
            }
            (delta as u128) << self.shift as u32
        };
        // shifted < 2^127 / 2^32 is not guaranteed for large shifts: multiply checked.
        let Some(product) = shifted.checked_mul(self.mul_frac as u128) else {
            return u64::MAX;
        };
        let ns = product >> 32;
        if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        }
    }

    /// The inverse conversion (nanoseconds back to ticks), computed as Xen's `scale_reciprocal`.
    /// `None` if `mul_frac` is 0 (no scale built by [`TimeScale::from_frequency`] has that).
    #[doc(alias = "scale_reciprocal")]
    pub const fn reciprocal(self) -> Option<TimeScale> {
        if self.mul_frac == 0 {
            return None;
        }
        // `_TS_MUL_FRAC_IDENTITY`: 0x80000000 with shift 1 is a factor of exactly 1.
        let mut dividend: u32 = 0x8000_0000;
        let mut shift = 1 - self.shift;
        while dividend >= self.mul_frac {
            dividend >>= 1;
            shift += 1;
        }
        // `divl`: (dividend << 32) / mul_frac, which fits in 32 bits because dividend < mul_frac.
        let mul_frac = (((dividend as u64) << 32) / self.mul_frac as u64) as u32;
        Some(TimeScale { shift, mul_frac })
    }
}

/// The local clock of one CPU: system time (nanoseconds since boot) as a function of the TSC.
///
/// It is Xen's `cpu_time_stamp` plus `time_scale`: at TSC `stamp_tsc` the system time was
/// `stamp_system_time`, and it advances by [`TimeScale::scale`] of the TSC delta since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// TSC value at the stamp.
    pub stamp_tsc: u64,
    /// System time in nanoseconds at the stamp.
    pub stamp_system_time: u64,
    /// TSC ticks to nanoseconds.
    pub scale: TimeScale,
    /// Nanoseconds to TSC ticks (the reciprocal of `scale`).
    pub inverse: TimeScale,
    /// The TSC frequency the scales were computed from.
    pub tsc_hz: u64,
}

impl Clock {
    /// A clock whose system time is 0 at TSC `boot_tsc`, for a TSC running at `tsc_hz`.
    pub const fn new(tsc_hz: u64, boot_tsc: u64) -> Option<Clock> {
        let Some(scale) = TimeScale::from_frequency(tsc_hz) else {
            return None;
        };
        let Some(inverse) = scale.reciprocal() else {
            return None;
        };
        Some(Clock {
            stamp_tsc: boot_tsc,
            stamp_system_time: 0,
            scale,
            inverse,
            tsc_hz,
        })
    }

    /// System time at TSC value `tsc` (Xen's `get_s_time_fixed`). A TSC before the stamp counts
    /// as the stamp itself rather than wrapping to a time far in the future.
    pub const fn system_time(&self, tsc: u64) -> u64 {
        self.stamp_system_time + self.scale.scale(tsc.saturating_sub(self.stamp_tsc))
    }

    /// The TSC value at which the system time reaches `system_time` (Xen's `stime2tsc`); a time
    /// before the stamp maps to the stamp, and one too far for the TSC to reach maps to
    /// `u64::MAX`. Unlike Xen's `scale_delta`, the conversion saturates: a guest may ask for a
    /// deadline up to 2^63 - 1 ns, and a wrapped result would be a TSC value in the past, which
    /// armed fires at once (and again, as long as the deadline stays armed).
    pub const fn tsc_at(&self, system_time: u64) -> u64 {
        let delta = system_time.saturating_sub(self.stamp_system_time);
        self.stamp_tsc
            .saturating_add(self.inverse.scale_saturating(delta))
    }

    /// The `vcpu_time_info` a guest needs to follow this clock, stamped at TSC `tsc`; publish it
    /// with [`publish_vcpu_time`], which also sets `version`.
    pub const fn vcpu_time_info(&self, tsc: u64, flags: u8) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version: 0,
            pad0: 0,
            tsc_timestamp: tsc,
            system_time: self.system_time(tsc),
            tsc_to_system_mul: self.scale.mul_frac,
            tsc_shift: self.scale.shift,
            flags,
            pad1: [0; 2],
        }
    }
}

/// A guest's absolute deadline as Xen reads it. Xen's timers take an `s_time_t`, a signed
/// 64-bit count of nanoseconds, so a deadline with the top bit set is negative: long past, and
/// due at once (`set_timer` with such an `expires` fires on the next timer softirq; that is what
/// `VCPUOP_set_singleshot_timer` and `SCHEDOP_poll`'s `timeout` do with it in
/// `xen/common/domain.c` and `xen/common/sched/core.c: do_poll`). Any other value, however far
/// ahead (up to 2^63 - 1 ns, 292 years), is kept: the arch layer arms the hardware timer for as
/// long as it can count and re-arms on the early interrupt ([`countdown_ticks`]).
pub const fn guest_deadline(raw: u64, now: u64) -> u64 {
    if raw > i64::MAX as u64 {
        now
    } else {
        raw
    }
}

/// The initial count for a one-shot countdown timer (the local APIC's 32-bit counter) that
/// should expire at TSC `deadline_tsc`, TSC `now_tsc` being now: at least 1 (a deadline already
/// reached fires at once) and at most `u32::MAX`, for a deadline the counter cannot reach in one
/// go (the interrupt handler then finds it early and re-arms for the rest, as Xen's
/// `reprogram_timer` clamps `APIC_TMICT` to `UINT_MAX` and its timer softirq re-programs). The
/// conversions saturate, so no deadline, however far, wraps into a short count: an idle loop
/// waiting for a far deadline halts for the counter's full span instead of spinning.
pub const fn countdown_ticks(
    tsc_to_ns: TimeScale,
    ns_to_ticks: TimeScale,
    now_tsc: u64,
    deadline_tsc: u64,
) -> u32 {
    if deadline_tsc <= now_tsc {
        return 1;
    }
    let ns = tsc_to_ns.scale_saturating(deadline_tsc - now_tsc);
    let ticks = ns_to_ticks.scale_saturating(ns);
    if ticks == 0 {
        1
    } else if ticks > u32::MAX as u64 {
        u32::MAX
    } else {
        ticks as u32
    }
}

/// Whether the one-shot timer must be (re)programmed for `next` (`None`: nothing to wait for),
/// given the deadline it was last armed for and whether it is still counting towards it.
///
/// Skipping the (slow) APIC write when the deadline has not changed is only right while the
/// timer still counts: once it has fired, it stays silent until armed again. And it can fire a
/// few nanoseconds before the system time reaches the deadline (the nanosecond-to-TSC
/// conversion and back both truncate), so the deadline that made it fire may still be the next
/// one, not yet due: re-arming is then what brings the interrupt that finds it due. Without
/// that, a vCPU that spins with no other reason to enter the hypervisor would run on forever
/// (no slice end, no timer, no watchdog).
pub const fn must_arm(next: Option<u64>, armed: Option<u64>, counting: bool) -> bool {
    match (next, armed) {
        (None, None) => false,
        (Some(n), Some(a)) => n != a || !counting,
        _ => true,
    }
}

/// What a guest computes from a `vcpu_time_info` at TSC `tsc` (the pvclock formula), for tests
/// and for checking what was published.
pub const fn guest_system_time(info: &VcpuTimeInfo, tsc: u64) -> u64 {
    let scale = TimeScale {
        shift: info.tsc_shift,
        mul_frac: info.tsc_to_system_mul,
    };
    info.system_time
        .wrapping_add(scale.scale(tsc.wrapping_sub(info.tsc_timestamp)))
}

/// Guest-shared memory as the time code writes it: 32- and 64-bit stores at byte offsets, each a
/// single store, in program order.
///
/// On bare metal this is implemented with volatile accesses through the direct map (guests read
/// the page concurrently, so no Rust reference to it may exist); host tests use a byte slice.
/// Offsets are computed from the ABI's layout, so an out-of-range offset is a bug in the caller,
/// and the slice implementation panics on it.
pub trait SharedWords {
    /// Reads the little-endian u32 at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Writes the little-endian u32 at `offset`.
    fn write_u32(&mut self, offset: usize, value: u32);
    /// Writes the little-endian u64 at `offset`.
    fn write_u64(&mut self, offset: usize, value: u64);
}

impl SharedWords for [u8] {
    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        self[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        self[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// Byte offset of `vcpu_info[vcpu].time` in `shared_info` (legacy vCPU slots, `vcpu` < 32).
pub const fn vcpu_time_offset(vcpu: usize) -> usize {
    offset_of!(SharedInfo, vcpu_info) + vcpu * size_of::<VcpuInfo>() + offset_of!(VcpuInfo, time)
}

/// Xen's `version_update_begin`: the next odd version, "update in progress".
const fn version_update_begin(version: u32) -> u32 {
    version.wrapping_add(1) | 1
}

/// Xen's `version_update_end`: the even version that closes an update.
const fn version_update_end(version: u32) -> u32 {
    version.wrapping_add(1)
}

/// Publishes `info` into the `vcpu_time_info` at byte offset `at` of `mem` with Xen's protocol
/// (`update_vcpu_system_time` in `xen/arch/x86/time.c`): make `version` odd, write every other
/// field, make `version` even. A guest that reads the same even version before and after reading
/// the fields has a consistent copy. `info.version` is ignored; the counter in `mem` is advanced.
pub fn publish_vcpu_time<M: SharedWords + ?Sized>(mem: &mut M, at: usize, info: &VcpuTimeInfo) {
    let version_at = at + offset_of!(VcpuTimeInfo, version);
    let odd = version_update_begin(mem.read_u32(version_at));
    mem.write_u32(version_at, odd);
    // Xen's smp_wmb(): the odd version must be visible before any field changes. On x86 stores
    // are not reordered with each other, so only the compiler needs stopping.
    fence(Ordering::Release);
    mem.write_u64(
        at + offset_of!(VcpuTimeInfo, tsc_timestamp),
        info.tsc_timestamp,
    );
    mem.write_u64(at + offset_of!(VcpuTimeInfo, system_time), info.system_time);
    mem.write_u32(
        at + offset_of!(VcpuTimeInfo, tsc_to_system_mul),
        info.tsc_to_system_mul,
    );
    // tsc_shift, flags and the two padding bytes form the last 32-bit word.
    let tail = u32::from_le_bytes([info.tsc_shift as u8, info.flags, 0, 0]);
    mem.write_u32(at + offset_of!(VcpuTimeInfo, tsc_shift), tail);
    fence(Ordering::Release);
    mem.write_u32(version_at, version_update_end(odd));
}

/// Wall-clock time: seconds and nanoseconds since the Unix epoch (1970-01-01 00:00:00 UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Wallclock {
    /// Whole seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds, below [`NSEC_PER_SEC`].
    pub nsec: u32,
}

impl Wallclock {
    /// The wall-clock time at system time 0, given that it was `now` at system time
    /// `system_time` (Xen's `do_settime`). A wall time earlier than `system_time` after the epoch
    /// (a broken RTC) gives the epoch.
    #[doc(alias = "do_settime")]
    pub const fn at_boot(now: Wallclock, system_time: u64) -> Wallclock {
        let ns = (now.sec as u128 * NSEC_PER_SEC as u128 + now.nsec as u128)
            .saturating_sub(system_time as u128);
        Wallclock {
            sec: (ns / NSEC_PER_SEC as u128) as u64,
            nsec: (ns % NSEC_PER_SEC as u128) as u32,
        }
    }
}

/// Publishes the wallclock into a `shared_info` page with Xen's protocol
/// (`update_domain_wallclock_time`): `wc_version` odd, `wc_sec`/`wc_nsec`/`wc_sec_hi`, then
/// `wc_version` even. `wc` is the wall-clock time at system time 0.
pub fn publish_wallclock<M: SharedWords + ?Sized>(shared_info: &mut M, wc: Wallclock) {
    let version_at = offset_of!(SharedInfo, wc_version);
    let odd = version_update_begin(shared_info.read_u32(version_at));
    shared_info.write_u32(version_at, odd);
    fence(Ordering::Release);
    shared_info.write_u32(offset_of!(SharedInfo, wc_sec), wc.sec as u32);
    shared_info.write_u32(offset_of!(SharedInfo, wc_nsec), wc.nsec);
    shared_info.write_u32(offset_of!(SharedInfo, wc_sec_hi), (wc.sec >> 32) as u32);
    fence(Ordering::Release);
    shared_info.write_u32(version_at, version_update_end(odd));
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (negative before the
/// epoch). Howard Hinnant's `days_from_civil`: years start in March, so the leap day is the last
/// day of the year, and 400-year eras repeat exactly. `month` is 1..=12, `day` 1..=31.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (month as i64 + 9) % 12; // March = 0 .. February = 11
    let doy = (153 * mp + 2) / 5 + day as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day number from [`days_from_civil`] (its inverse).
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// Whether `year` is a Gregorian leap year.
pub const fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Number of days in `month` (1..=12) of `year`; 0 for a month out of range.
pub const fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A calendar date and time of day, UTC, as a PC's CMOS clock keeps it (whole seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime {
    /// Full year, 1970 or later.
    pub year: u32,
    /// 1..=12.
    pub month: u8,
    /// 1..=days in the month.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl DateTime {
    /// A validated date and time, or `None` if any field is out of range (including dates before
    /// the epoch, which `wc_sec` cannot represent).
    pub const fn new(
        year: u32,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Option<DateTime> {
        if year < 1970
            || month < 1
            || month > 12
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        Some(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(&self) -> u64 {
        // `new` guarantees a date on or after the epoch, so the day number is not negative.
        let days = days_from_civil(self.year as i64, self.month as u32, self.day as u32) as u64;
        days * SECS_PER_DAY + self.hour as u64 * 3600 + self.minute as u64 * 60 + self.second as u64
    }

    /// The date and time `secs` seconds after the epoch.
    pub const fn from_unix_seconds(secs: u64) -> DateTime {
        let (year, month, day) = civil_from_days((secs / SECS_PER_DAY) as i64);
        let rem = secs % SECS_PER_DAY;
        DateTime {
            year: year as u32,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// MC146818 status register B: data mode is binary, not BCD.
pub const RTC_B_BINARY: u8 = 1 << 2;
/// MC146818 status register B: hours run 0..23 rather than 1..12 with a PM flag.
pub const RTC_B_24H: u8 = 1 << 1;
/// In 12-hour mode, bit 7 of the hours register marks PM.
const RTC_HOUR_PM: u8 = 0x80;

/// The raw time registers of a PC CMOS clock (MC146818), as read in one consistent pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RtcRegisters {
    /// Register 0x00.
    pub second: u8,
    /// Register 0x02.
    pub minute: u8,
    /// Register 0x04 (bit 7 is the PM flag in 12-hour mode).
    pub hour: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09: the year within the century.
    pub year: u8,
    /// Status register B (0x0B): data mode and hour format.
    pub status_b: u8,
}

/// One of the RTC's date/time fields, to say which one is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcField {
    /// Seconds.
    Second,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Day of the month.
    Day,
    /// Month.
    Month,
    /// Year.
    Year,
}

/// Why the RTC's registers do not make a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// The clock is in BCD mode and this field is not valid BCD.
    NotBcd(RtcField),
    /// The field decodes to a value outside its range (day 31 in April, hour 25, ...).
    OutOfRange(RtcField),
}

impl fmt::Display for RtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcError::NotBcd(field) => write!(f, "RTC {field:?} register is not BCD"),
            RtcError::OutOfRange(field) => write!(f, "RTC {field:?} is out of range"),
        }
    }
}

/// Decodes one packed BCD byte (two decimal digits), or `None` if a nibble is above 9.
pub const fn bcd_to_binary(value: u8) -> Option<u8> {
    let (hi, lo) = (value >> 4, value & 0x0f);
    if hi > 9 || lo > 9 {
        None
    } else {
        Some(hi * 10 + lo)
    }
}

impl RtcRegisters {
    /// The date and time the registers hold.
    ///
    /// BCD or binary as register B says; 12-hour mode is converted (12 AM is hour 0). The year
    /// register holds two digits; as in Xen's `get_cmos_time`, 70..99 are 1970..1999 and 00..69
    /// are 2000..2069 (the ACPI century register is not consulted).
    pub fn decode(&self) -> Result<DateTime, RtcError> {
        let binary = self.status_b & RTC_B_BINARY != 0;
        let field = |raw: u8, which: RtcField| -> Result<u8, RtcError> {
            if binary {
                Ok(raw)
            } else {
                bcd_to_binary(raw).ok_or(RtcError::NotBcd(which))
            }
        };
        let second = field(self.second, RtcField::Second)?;
        let minute = field(self.minute, RtcField::Minute)?;
        let pm = self.status_b & RTC_B_24H == 0 && self.hour & RTC_HOUR_PM != 0;
        let mut hour = field(
            if self.status_b & RTC_B_24H == 0 {
                self.hour & !RTC_HOUR_PM
            } else {
                self.hour
            },
            RtcField::Hour,
        )?;
        if self.status_b & RTC_B_24H == 0 {
            if !(1..=12).contains(&hour) {
                return Err(RtcError::OutOfRange(RtcField::Hour));
            }
            hour = match (hour, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, false) => h,
                (h, true) => h + 12,
            };
        }
        let day = field(self.day, RtcField::Day)?;
        let month = field(self.month, RtcField::Month)?;
        let year2 = field(self.year, RtcField::Year)?;
        if year2 > 99 {
            return Err(RtcError::OutOfRange(RtcField::Year));
        }
        let year = if year2 >= 70 {
            1900 + year2 as u32
        } else {
            2000 + year2 as u32
        };
        // Report the first field (in significance order) that is out of range.
        if !(1..=12).contains(&month) {
            return Err(RtcError::OutOfRange(RtcField::Month));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(RtcError::OutOfRange(RtcField::Day));
        }
        if hour > 23 {
            return Err(RtcError::OutOfRange(RtcField::Hour));
        }
        if minute > 59 {
            return Err(RtcError::OutOfRange(RtcField::Minute));
        }
        if second > 59 {
            return Err(RtcError::OutOfRange(RtcField::Second));
        }
        DateTime::new(year, month, day, hour, minute, second)
            .ok_or(RtcError::OutOfRange(RtcField::Year))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromZeros, IntoBytes};

    /// Nanoseconds for `ticks` at `hz`, exactly (rounded down), in 128-bit arithmetic.
    fn exact_ns(ticks: u64, hz: u64) -> u128 {
        ticks as u128 * NSEC_PER_SEC as u128 / hz as u128
    }

    /// TSC and APIC rates the deadline tests run at: QEMU's and real machines' TSCs, the PIT,
    /// a slow counter (positive shifts) and one above 4 GHz.
    const RATES: [u64; 6] = [
        1_000_000_000,
        2_500_000_000,
        3_000_000_000,
        1_193_182,
        100_000_000,
        5_000_000_000,
    ];

    #[test]
    fn far_deadlines_map_to_far_tscs_never_back_into_the_past() {
        // A guest may arm a timer for any s_time_t up to 2^63 - 1 ns. Converting such a deadline
        // must not wrap around to a TSC value near (or before) now: armed, that would fire at
        // once, again and again, while nothing is due.
        for hz in RATES {
            let clock = Clock::new(hz, 1_000).unwrap();
            let mut last = clock.tsc_at(NSEC_PER_SEC);
            for bit in 31..64 {
                for d in [1u64 << bit, (1u64 << bit) | ((1u64 << bit) - 1)] {
                    let t = clock.tsc_at(d);
                    assert!(t >= last, "{hz} Hz: tsc_at({d:#x}) = {t:#x} < {last:#x}");
                    last = t;
                }
            }
            assert!(clock.tsc_at(u64::MAX) >= last, "{hz} Hz");
            if hz >= NSEC_PER_SEC {
                assert_eq!(clock.tsc_at(u64::MAX), u64::MAX, "{hz} Hz saturates");
            }
        }
    }

    #[test]
    fn saturating_scale_agrees_below_the_overflow_and_saturates_above() {
        for hz in RATES {
            let s = TimeScale::from_frequency(hz).unwrap();
            for s in [s, s.reciprocal().unwrap()] {
                for delta in [0u64, 1, 999, NSEC_PER_SEC, 1 << 40] {
                    assert_eq!(s.scale_saturating(delta), s.scale(delta), "{s:?} {delta}");
                }
                let exact = |d: u64| {
                    let shifted = if s.shift < 0 {
                        u128::from(d) >> s.shift.unsigned_abs()
                    } else {
                        u128::from(d) << s.shift
                    };
                    (shifted * u128::from(s.mul_frac)) >> 32
                };
                for delta in [u64::MAX, 1 << 63, (1 << 62) + 12345] {
                    let want = exact(delta).min(u128::from(u64::MAX)) as u64;
                    assert_eq!(s.scale_saturating(delta), want, "{s:?} {delta:#x}");
                }
            }
        }
    }

    #[test]
    fn a_countdown_is_at_least_one_tick_and_at_most_the_counter() {
        // An APIC timer at 1 GHz against a 2.5 GHz TSC.
        let tsc_to_ns = TimeScale::from_frequency(2_500_000_000).unwrap();
        let ns_to_ticks = TimeScale::from_frequency(1_000_000_000)
            .unwrap()
            .reciprocal()
            .unwrap();
        let now = 1 << 40;
        let ticks = |deadline| countdown_ticks(tsc_to_ns, ns_to_ticks, now, deadline);
        assert_eq!(ticks(now - 5), 1, "a deadline in the past fires at once");
        assert_eq!(ticks(now), 1);
        // 1 ms ahead is 2.5e6 TSC ticks, 1e6 APIC ticks.
        assert!(ticks(now + 2_500_000).abs_diff(1_000_000) <= 2);
        // Far deadlines count down the whole counter (the handler re-arms for the rest), however
        // far: never a short count that would make the idle loop spin.
        for deadline in [now + (1 << 40), 1 << 62, 1 << 63, u64::MAX] {
            assert_eq!(ticks(deadline), u32::MAX, "{deadline:#x}");
        }
        for tsc_hz in RATES {
            for apic_hz in RATES {
                let tsc_to_ns = TimeScale::from_frequency(tsc_hz).unwrap();
                let ns_to_ticks = TimeScale::from_frequency(apic_hz)
                    .unwrap()
                    .reciprocal()
                    .unwrap();
                let ticks = |deadline| countdown_ticks(tsc_to_ns, ns_to_ticks, now, deadline);
                let mut last = 1;
                for bit in 41..64 {
                    let t = ticks(now + (1 << bit));
                    assert!(
                        t >= last,
                        "{tsc_hz}/{apic_hz} Hz: 2^{bit} gives {t} < {last}"
                    );
                    last = t;
                }
                assert_eq!(ticks(u64::MAX), u32::MAX, "{tsc_hz}/{apic_hz} Hz");
            }
        }
    }

    #[test]
    fn a_fired_timer_is_armed_again_even_for_the_same_deadline() {
        // Counting towards the same deadline: nothing to do.
        assert!(!must_arm(Some(5), Some(5), true));
        assert!(!must_arm(None, None, false));
        // A new deadline, or none any more.
        assert!(must_arm(Some(6), Some(5), true));
        assert!(must_arm(None, Some(5), true));
        assert!(must_arm(Some(5), None, false));
        // It fired (a few ns early: the deadline is not due yet, and still the next one). Not
        // arming it again would leave the CPU without a timer interrupt.
        assert!(must_arm(Some(5), Some(5), false));
    }

    #[test]
    fn guest_deadlines_are_signed_as_xens_s_time_t() {
        let now = 5 * NSEC_PER_SEC;
        assert_eq!(guest_deadline(now + 7, now), now + 7);
        assert_eq!(guest_deadline(3, now), 3, "in the past: due at once");
        assert_eq!(guest_deadline(i64::MAX as u64, now), i64::MAX as u64);
        for negative in [1u64 << 63, (1 << 63) | 5, u64::MAX] {
            assert_eq!(guest_deadline(negative, now), now, "{negative:#x}");
        }
    }

    #[test]
    fn scales_for_round_frequencies_match_xen() {
        // Values worked out from Xen's set_time_scale by hand.
        assert_eq!(
            TimeScale::from_frequency(1_000_000_000),
            Some(TimeScale {
                shift: 1,
                mul_frac: 0x8000_0000
            })
        );
        assert_eq!(
            TimeScale::from_frequency(2_500_000_000),
            Some(TimeScale {
                shift: -1,
                mul_frac: 0xCCCC_CCCC
            })
        );
        assert_eq!(
            TimeScale::from_frequency(3_000_000_000),
            Some(TimeScale {
                shift: -1,
                mul_frac: 0xAAAA_AAAA
            })
        );
        assert_eq!(
            TimeScale::from_frequency(2_000_000_000),
            Some(TimeScale {
                shift: 0,
                mul_frac: 0x8000_0000
            })
        );
        // 100 MHz: shifted left four times to 1.6 GHz; 1e9/1.6e9 = 0.625 exactly.
        assert_eq!(
            TimeScale::from_frequency(100_000_000),
            Some(TimeScale {
                shift: 4,
                mul_frac: 0xA000_0000
            })
        );
        assert_eq!(TimeScale::from_frequency(0), None);
    }

    #[test]
    fn the_scale_keeps_its_range_invariants_for_any_frequency() {
        for hz in [
            1,
            2,
            3,
            999,
            32_768,
            1_193_182,
            14_318_180,
            1_000_000_001,
            u64::MAX,
        ] {
            let s = TimeScale::from_frequency(hz).unwrap();
            // Xen's loops leave tps32 in (1e9, 2e9], so mul_frac is in [2^31, 2^32).
            assert!(s.mul_frac >= 0x8000_0000, "{hz}: {s:?}");
        }
    }

    #[test]
    fn scaled_time_matches_exact_arithmetic_within_a_nanosecond_per_second() {
        let freqs = [
            1_000_000_000u64,
            2_500_000_000,
            3_000_000_000,
            2_592_001_234,
            3_696_000_000,
            1_193_182,
            100_000_000,
            4_294_967_296,
            5_000_000_000,
        ];
        let seconds = [0.001f64, 0.5, 1.0, 10.0, 3600.0, 86_400.0];
        for hz in freqs {
            let s = TimeScale::from_frequency(hz).unwrap();
            for secs in seconds {
                let ticks = (hz as f64 * secs) as u64;
                let got = s.scale(ticks) as i128;
                let want = exact_ns(ticks, hz) as i128;
                // The scale's rate error is under 1 ns per second; truncating the shifted tick
                // and the final product loses at most 2 ns more, whatever the interval.
                let bound = secs.ceil() as i128 + 2;
                assert!(
                    (got - want).abs() <= bound,
                    "{hz} Hz over {secs} s: scaled {got}, exact {want}"
                );
            }
        }
    }

    #[test]
    fn one_second_of_ticks_is_one_second_at_the_reference_frequencies() {
        for hz in [1_000_000_000u64, 2_500_000_000, 3_000_000_000] {
            let ns = TimeScale::from_frequency(hz).unwrap().scale(hz);
            assert!(
                (NSEC_PER_SEC - 1..=NSEC_PER_SEC).contains(&ns),
                "{hz}: {ns}"
            );
        }
    }

    #[test]
    fn scale_delta_is_bit_exact_with_xens_shift_and_multiply() {
        // scale_delta shifts first (dropping low bits when shifting right), then keeps the low 64
        // bits of (delta * mul) >> 32.
        let s = TimeScale {
            shift: -1,
            mul_frac: 0xCCCC_CCCC,
        };
        assert_eq!(s.scale(3_000), ((1_500u128 * 0xCCCC_CCCC) >> 32) as u64);
        assert_eq!(
            s.scale(3_001),
            s.scale(3_000),
            "the shifted-out tick is dropped"
        );
        let big = TimeScale {
            shift: 2,
            mul_frac: 0xFFFF_FFFF,
        };
        let delta = u64::MAX >> 1;
        let want = ((((delta << 2) as u128) * 0xFFFF_FFFFu128) >> 32) as u64;
        assert_eq!(big.scale(delta), want);
    }

    #[test]
    fn the_reciprocal_converts_nanoseconds_back_to_ticks() {
        for hz in [
            1_000_000_000u64,
            2_500_000_000,
            3_000_000_000,
            1_193_182,
            2_592_001_234,
        ] {
            let s = TimeScale::from_frequency(hz).unwrap();
            let r = s.reciprocal().unwrap();
            for ns in [1_000u64, 10_000_000, NSEC_PER_SEC, 60 * NSEC_PER_SEC] {
                let ticks = r.scale(ns) as i128;
                let want = (ns as u128 * hz as u128 / NSEC_PER_SEC as u128) as i128;
                // Within one tick plus 1 ppb of the interval.
                let bound = 2 + want / 1_000_000_000;
                assert!(
                    (ticks - want).abs() <= bound,
                    "{hz} Hz, {ns} ns: {ticks} vs {want}"
                );
            }
        }
        assert_eq!(
            TimeScale {
                shift: 0,
                mul_frac: 0
            }
            .reciprocal(),
            None
        );
    }

    #[test]
    fn the_clock_counts_from_its_stamp_and_inverts() {
        let clock = Clock::new(2_500_000_000, 1_000).unwrap();
        assert_eq!(clock.system_time(1_000), 0);
        assert_eq!(
            clock.system_time(500),
            0,
            "a TSC before the stamp does not wrap"
        );
        assert!(
            clock
                .system_time(1_000 + 2_500_000_000)
                .abs_diff(NSEC_PER_SEC)
                <= 1
        );
        let t = clock.tsc_at(10_000_000);
        assert!(t.abs_diff(1_000 + 25_000_000) <= 2, "{t}");
        assert!(clock.system_time(t).abs_diff(10_000_000) <= 2);
        assert_eq!(Clock::new(0, 0), None);
    }

    #[test]
    fn a_guest_reading_the_published_record_sees_the_hypervisors_clock() {
        let clock = Clock::new(3_000_000_000, 77).unwrap();
        let info = clock.vcpu_time_info(5_000_000, 1);
        for tsc in [5_000_000u64, 5_000_001, 8_000_000_000, 1 << 40] {
            let guest = guest_system_time(&info, tsc);
            assert!(guest.abs_diff(clock.system_time(tsc)) <= 1, "{tsc}");
        }
    }

    /// Records every store, to check the order of the version protocol.
    struct Recorder {
        bytes: Vec<u8>,
        log: Vec<(usize, u64)>,
    }

    impl SharedWords for Recorder {
        fn read_u32(&self, offset: usize) -> u32 {
            self.bytes.read_u32(offset)
        }
        fn write_u32(&mut self, offset: usize, value: u32) {
            self.log.push((offset, value.into()));
            self.bytes.write_u32(offset, value);
        }
        fn write_u64(&mut self, offset: usize, value: u64) {
            self.log.push((offset, value));
            self.bytes.write_u64(offset, value);
        }
    }

    #[test]
    fn vcpu_time_is_published_odd_version_first_and_even_version_last() {
        let mut rec = Recorder {
            bytes: vec![0; size_of::<SharedInfo>()],
            log: Vec::new(),
        };
        let at = vcpu_time_offset(1);
        assert_eq!(at, 64 + 32);
        let clock = Clock::new(2_500_000_000, 0).unwrap();
        let info = clock.vcpu_time_info(123_456, 0x1);
        publish_vcpu_time(&mut rec, at, &info);
        let first = rec.log.first().copied().unwrap();
        let last = rec.log.last().copied().unwrap();
        assert_eq!(first, (at, 1), "version goes odd before anything else");
        assert_eq!(last, (at, 2), "version goes even after everything else");
        assert_eq!(rec.log.len(), 6);

        let mut back = VcpuTimeInfo::new_zeroed();
        back.as_mut_bytes()
            .copy_from_slice(&rec.bytes[at..at + size_of::<VcpuTimeInfo>()]);
        assert_eq!(back, VcpuTimeInfo { version: 2, ..info });

        // A second update advances by two, and from an odd (torn) value to the next odd one.
        publish_vcpu_time(&mut rec.bytes[..], at, &info);
        assert_eq!(rec.bytes.read_u32(at), 4);
        rec.bytes.write_u32(at, 7);
        rec.log.clear();
        publish_vcpu_time(&mut rec, at, &info);
        assert_eq!(rec.log.first().copied(), Some((at, 9)));
        assert_eq!(rec.log.last().copied(), Some((at, 10)));
    }

    #[test]
    fn publishing_into_a_struct_through_its_bytes() {
        let mut t = VcpuTimeInfo::new_zeroed();
        let info = Clock::new(1_000_000_000, 0).unwrap().vcpu_time_info(42, 0);
        publish_vcpu_time(t.as_mut_bytes(), 0, &info);
        assert_eq!(t.version, 2);
        assert_eq!(
            (t.tsc_timestamp, t.tsc_shift, t.tsc_to_system_mul),
            (42, 1, 1 << 31)
        );
    }

    #[test]
    fn the_wallclock_is_published_with_its_own_version() {
        let mut rec = Recorder {
            bytes: vec![0; size_of::<SharedInfo>()],
            log: Vec::new(),
        };
        let wc = Wallclock {
            sec: 0x1_2345_6789,
            nsec: 999_999_999,
        };
        publish_wallclock(&mut rec, wc);
        assert_eq!(
            rec.log,
            vec![
                (3072, 1),
                (3076, 0x2345_6789),
                (3080, 999_999_999),
                (3084, 1),
                (3072, 2)
            ]
        );
    }

    #[test]
    fn wallclock_at_boot_subtracts_the_system_time() {
        let now = Wallclock {
            sec: 1_700_000_000,
            nsec: 250,
        };
        assert_eq!(
            Wallclock::at_boot(now, 2_500_000_500),
            Wallclock {
                sec: 1_699_999_997,
                nsec: 499_999_750
            }
        );
        assert_eq!(Wallclock::at_boot(now, 0), now);
        assert_eq!(
            Wallclock::at_boot(Wallclock { sec: 1, nsec: 0 }, 5 * NSEC_PER_SEC),
            Wallclock::default()
        );
    }

    /// Xen's `mktime` (`xen/common/time.c`, Gauss's algorithm), as a second opinion.
    fn xen_mktime(year: u64, mon: u64, day: u64, hour: u64, min: u64, sec: u64) -> u64 {
        let (mut year, mut mon) = (year, mon as i64 - 2);
        if mon <= 0 {
            mon += 12;
            year -= 1;
        }
        let mon = mon as u64;
        ((((year / 4 - year / 100 + year / 400 + 367 * mon / 12 + day) + year * 365 - 719_499)
            * 24
            + hour)
            * 60
            + min)
            * 60
            + sec
    }

    #[test]
    fn days_from_civil_at_known_epochs() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        assert_eq!(days_from_civil(1900, 3, 1), -25_508);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
        // Well-known instants.
        let y2k = DateTime::new(2000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(y2k.unix_seconds(), 946_684_800);
        let y2038 = DateTime::new(2038, 1, 19, 3, 14, 7).unwrap();
        assert_eq!(y2038.unix_seconds(), 0x7FFF_FFFF);
        let billennium = DateTime::new(2001, 9, 9, 1, 46, 40).unwrap();
        assert_eq!(billennium.unix_seconds(), 1_000_000_000);
        let leap = DateTime::new(2024, 2, 29, 12, 0, 0).unwrap();
        assert_eq!(leap.unix_seconds(), 1_709_208_000);
        let wc_sec_hi = DateTime::new(2106, 2, 7, 6, 28, 16).unwrap();
        assert_eq!(wc_sec_hi.unix_seconds(), 1 << 32);
    }

    #[test]
    fn days_from_civil_agrees_with_xens_mktime_and_inverts() {
        let mut days = days_from_civil(1970, 1, 1);
        for year in 1970..2200u32 {
            for month in 1..=12u8 {
                for day in 1..=days_in_month(year, month) {
                    let dt = DateTime::new(year, month, day, 23, 59, 58).unwrap();
                    assert_eq!(days_from_civil(year.into(), month.into(), day.into()), days);
                    assert_eq!(
                        dt.unix_seconds(),
                        xen_mktime(year.into(), month.into(), day.into(), 23, 59, 58)
                    );
                    assert_eq!(
                        civil_from_days(days),
                        (year.into(), month.into(), day.into())
                    );
                    assert_eq!(DateTime::from_unix_seconds(dt.unix_seconds()), dt);
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn datetime_rejects_impossible_dates() {
        assert!(DateTime::new(2023, 2, 29, 0, 0, 0).is_none());
        assert!(DateTime::new(2100, 2, 29, 0, 0, 0).is_none());
        assert!(DateTime::new(2000, 2, 29, 0, 0, 0).is_some());
        assert!(DateTime::new(2024, 4, 31, 0, 0, 0).is_none());
        assert!(DateTime::new(2024, 13, 1, 0, 0, 0).is_none());
        assert!(DateTime::new(2024, 0, 1, 0, 0, 0).is_none());
        assert!(DateTime::new(2024, 1, 0, 0, 0, 0).is_none());
        assert!(DateTime::new(2024, 1, 1, 24, 0, 0).is_none());
        assert!(DateTime::new(2024, 1, 1, 0, 60, 0).is_none());
        assert!(DateTime::new(2024, 1, 1, 0, 0, 60).is_none());
        assert!(DateTime::new(1969, 12, 31, 23, 59, 59).is_none());
        assert_eq!(
            DateTime::new(2024, 5, 6, 7, 8, 9).unwrap().to_string(),
            "2024-05-06 07:08:09"
        );
    }

    fn regs(b: u8, y: u8, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> RtcRegisters {
        RtcRegisters {
            second: s,
            minute: mi,
            hour: h,
            day: d,
            month: mo,
            year: y,
            status_b: b,
        }
    }

    #[test]
    fn rtc_bcd_24h_decodes() {
        // SeaBIOS's default under QEMU: BCD, 24-hour.
        let r = regs(RTC_B_24H, 0x24, 0x12, 0x31, 0x23, 0x59, 0x58);
        assert_eq!(
            r.decode(),
            Ok(DateTime::new(2024, 12, 31, 23, 59, 58).unwrap())
        );
    }

    #[test]
    fn rtc_binary_mode_decodes() {
        let r = regs(RTC_B_24H | RTC_B_BINARY, 99, 1, 2, 3, 4, 5);
        assert_eq!(r.decode(), Ok(DateTime::new(1999, 1, 2, 3, 4, 5).unwrap()));
    }

    #[test]
    fn rtc_two_digit_years_pivot_at_70_like_xen() {
        let y = |year| regs(RTC_B_24H, year, 1, 1, 0, 0, 0).decode().unwrap().year;
        assert_eq!(y(0x70), 1970);
        assert_eq!(y(0x99), 1999);
        assert_eq!(y(0x00), 2000);
        assert_eq!(y(0x69), 2069);
    }

    #[test]
    fn rtc_12_hour_mode_converts_am_and_pm() {
        let h = |hour| regs(0, 0x24, 1, 1, hour, 0, 0).decode().map(|d| d.hour);
        assert_eq!(h(0x12), Ok(0), "12 AM is midnight");
        assert_eq!(h(0x01), Ok(1));
        assert_eq!(h(0x80 | 0x12), Ok(12), "12 PM is noon");
        assert_eq!(h(0x80 | 0x11), Ok(23));
        assert_eq!(h(0x00), Err(RtcError::OutOfRange(RtcField::Hour)));
        assert_eq!(h(0x13), Err(RtcError::OutOfRange(RtcField::Hour)));
        let binary_pm = regs(RTC_B_BINARY, 24, 1, 1, 0x80 | 3, 0, 0);
        assert_eq!(binary_pm.decode().map(|d| d.hour), Ok(15));
    }

    #[test]
    fn rtc_garbage_is_reported_by_field() {
        let b = RTC_B_24H;
        assert_eq!(
            regs(b, 0x24, 0x1A, 1, 0, 0, 0).decode(),
            Err(RtcError::NotBcd(RtcField::Month))
        );
        assert_eq!(
            regs(b, 0x24, 0x02, 0x30, 0, 0, 0).decode(),
            Err(RtcError::OutOfRange(RtcField::Day))
        );
        assert_eq!(
            regs(b, 0x24, 0x13, 0x01, 0, 0, 0).decode(),
            Err(RtcError::OutOfRange(RtcField::Month))
        );
        assert_eq!(
            regs(b, 0x24, 0x01, 0x01, 0x24, 0, 0).decode(),
            Err(RtcError::OutOfRange(RtcField::Hour))
        );
        assert_eq!(
            regs(b, 0x24, 0x01, 0x01, 0, 0x60, 0).decode(),
            Err(RtcError::OutOfRange(RtcField::Minute))
        );
        assert_eq!(
            regs(b, 0x24, 0x01, 0x01, 0, 0, 0xFF).decode(),
            Err(RtcError::NotBcd(RtcField::Second))
        );
        assert_eq!(
            regs(b | RTC_B_BINARY, 100, 1, 1, 0, 0, 0).decode(),
            Err(RtcError::OutOfRange(RtcField::Year))
        );
        assert_eq!(bcd_to_binary(0x59), Some(59));
        assert_eq!(bcd_to_binary(0x5A), None);
        assert_eq!(bcd_to_binary(0xA0), None);
    }
}
