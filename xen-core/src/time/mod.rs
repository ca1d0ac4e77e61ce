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
//! Everything here is arithmetic; the records are stored into `shared_info` by its view
//! ([`crate::shared_info::SharedInfoPage::publish_vcpu_time`] and `publish_wallclock`), and the
//! drivers that read the TSC, the PIT and the CMOS RTC live in `arch/x86_64/`.

mod calendar;
mod interval;
mod records;

pub use calendar::*;
pub use interval::Interval;
pub use records::*;

use hypercall_abi::xen::VcpuTimeInfo;

/// Nanoseconds per second (Xen's `SECONDS(1)`, `MILLISECS(1000)`).
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

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
    /// with [`crate::shared_info::SharedInfoPage::publish_vcpu_time`], which also sets `version`.
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
///
/// A timer still counting towards an *earlier* deadline than `next` is left as it is: it fires
/// early, which only brings a full scheduling pass that finds nothing due and arms it for what
/// is next then; never late. The event round trip moves the deadline on every context switch
/// (each vCPU's slice end), and each move was an APIC write; now one early interrupt per slice
/// replaces them.
pub const fn must_arm(next: Option<u64>, armed: Option<u64>, counting: bool) -> bool {
    match (next, armed) {
        (None, None) => false,
        (Some(n), Some(a)) => a > n || !counting,
        _ => true,
    }
}

#[cfg(test)]
mod tests;
