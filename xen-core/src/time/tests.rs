//! Tests of time: TSC scaling, deadlines, the pvclock formula, the wallclock and the calendar.

use super::*;

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
    // An earlier deadline, or none any more.
    assert!(must_arm(Some(4), Some(5), true));
    assert!(must_arm(None, Some(5), true));
    // A later one: the timer counting towards the earlier deadline fires early, which is
    // harmless (a full pass that finds nothing due arms it again), never late.
    assert!(!must_arm(Some(6), Some(5), true));
    assert!(must_arm(Some(6), Some(5), false));
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
    ((((year / 4 - year / 100 + year / 400 + 367 * mon / 12 + day) + year * 365 - 719_499) * 24
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
