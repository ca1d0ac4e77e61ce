//! Intervals timed by reading a counter before and after each end ([`Interval`]): how the arch
//! layer calibrates the TSC against the PIT and the APIC timer against the TSC, keeping the
//! tightest of several measurements.

/// An interval measured with a counter (the TSC): when it started and ended, each known only to
/// within a bracket (the counter is read before and after the event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Counter value at the middle of the start bracket.
    pub start: u64,
    /// Counter value at the middle of the end bracket.
    pub end: u64,
    /// Half the total width of both brackets: how far `end - start` may be off.
    pub uncertainty: u64,
}

impl Interval {
    /// Builds an interval from the brackets around its start and its end.
    pub fn from_brackets(start: (u64, u64), end: (u64, u64)) -> Interval {
        let mid = |(a, b): (u64, u64)| a + b.wrapping_sub(a) / 2;
        Interval {
            start: mid(start),
            end: mid(end),
            uncertainty: (start.1.wrapping_sub(start.0) + end.1.wrapping_sub(end.0)) / 2,
        }
    }

    /// Counter ticks between start and end.
    #[allow(clippy::len_without_is_empty)] // a length of time, not of a collection
    pub fn len(&self) -> u64 {
        self.end.wrapping_sub(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_runs_between_the_middles_of_its_brackets() {
        let i = Interval::from_brackets((100, 110), (1100, 1130));
        assert_eq!((i.start, i.end, i.len()), (105, 1115, 1010));
        // Half the two brackets' widths: 10 and 30.
        assert_eq!(i.uncertainty, 20);
    }

    #[test]
    fn a_counter_that_wraps_inside_the_interval_still_measures_it() {
        let i = Interval::from_brackets((u64::MAX - 9, u64::MAX - 1), (40, 50));
        assert_eq!(i.start, u64::MAX - 5);
        assert_eq!(i.len(), 51);
        assert_eq!(i.uncertainty, 9);
    }
}
