//! Calendar arithmetic (days since the epoch, dates and times) and the CMOS RTC's register decoding.

use core::fmt;

/// Seconds per day.
const SECS_PER_DAY: u64 = 86_400;

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
