//! Xen's PV clock arithmetic: turning a TSC reading into system time (`xen.h`, vcpu_time_info).
//!
//! Xen publishes, per vCPU, a snapshot `(tsc_timestamp, system_time)` and a scale
//! `(tsc_to_system_mul, tsc_shift)`. System time now is
//! `system_time + ((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul >> 32`,
//! where a negative shift is a right shift. The guest reads the snapshot under the `version`
//! seqlock (odd while Xen updates it); that part touches shared memory and lives in the kernel.

/// Scales a TSC delta to nanoseconds with Xen's `(mul, shift)` pair, exactly as Xen's
/// `scale_delta` does (a 64 x 32 -> 96-bit product, keeping bits 32..95).
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        delta << shift
    } else {
        delta >> (-(shift as i32))
    };
    ((shifted as u128 * mul as u128) >> 32) as u64
}

/// The system time (ns) corresponding to `tsc`, given one consistent snapshot of vcpu_time_info.
pub const fn system_time(
    tsc: u64,
    tsc_timestamp: u64,
    system_time: u64,
    mul: u32,
    shift: i8,
) -> u64 {
    system_time.wrapping_add(scale_delta(tsc.wrapping_sub(tsc_timestamp), mul, shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_ghz_tsc_is_one_ns_per_tick() {
        // mul = 2^31 with shift 1: (delta << 1) * 2^31 >> 32 = delta.
        assert_eq!(scale_delta(1_000_000, 1 << 31, 1), 1_000_000);
    }

    #[test]
    fn negative_shifts_shift_right() {
        // A 4 GHz TSC: 0.25 ns per tick = (delta >> 2) * 2^32 >> 32... expressed as mul 2^31, shift -1.
        assert_eq!(scale_delta(4_000, 1 << 31, -1), 1_000);
    }

    #[test]
    fn large_deltas_do_not_overflow() {
        let delta = u64::MAX >> 1;
        assert_eq!(
            scale_delta(delta, u32::MAX, 0),
            ((delta as u128 * u32::MAX as u128) >> 32) as u64
        );
    }

    #[test]
    fn system_time_adds_the_scaled_delta() {
        assert_eq!(system_time(1_500, 1_000, 7_000, 1 << 31, 1), 7_500);
    }
}
