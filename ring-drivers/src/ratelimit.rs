//! A rate limit for console lines that a guest can cause (a refused packet, a bad request):
//! at most one line per interval, with the number of events folded into it, so a flood of bad
//! input cannot flood dom0's console (and slow dom0 down with it).

/// At most one line per `interval_ns`; the events in between are counted.
#[derive(Clone, Copy, Debug)]
pub struct LogLimit {
    interval_ns: u64,
    next_ns: u64,
    started: bool,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of one line per `interval_ns`.
    pub const fn new(interval_ns: u64) -> LogLimit {
        LogLimit {
            interval_ns,
            next_ns: 0,
            started: false,
            suppressed: 0,
        }
    }

    /// An event at `now_ns`: `Some(n)` if a line may be printed now, `n` being the events
    /// not printed since the last line; `None` (the event counted) otherwise.
    pub fn allow(&mut self, now_ns: u64) -> Option<u64> {
        if self.started && now_ns < self.next_ns {
            self.suppressed += 1;
            return None;
        }
        self.started = true;
        self.next_ns = now_ns.saturating_add(self.interval_ns);
        Some(core::mem::take(&mut self.suppressed))
    }

    /// Events not printed since the last line.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_flood_prints_one_line_per_interval_with_the_count() {
        let mut l = LogLimit::new(10 * S);
        let printed: usize = (0..100_000u64)
            .filter(|i| l.allow(i * 1000).is_some())
            .count();
        assert_eq!(printed, 1, "0.1 s of events: one line");
        assert_eq!(l.suppressed(), 99_999);
        assert_eq!(l.allow(10 * S - 1), None);
        assert_eq!(l.allow(10 * S), Some(100_000));
        assert_eq!(l.allow(25 * S), Some(0));
        // A clock that went back does not unblock it early.
        assert_eq!(l.allow(S), None);
    }

    #[test]
    fn the_first_event_is_printed_even_at_time_zero() {
        let mut l = LogLimit::new(S);
        assert_eq!(l.allow(0), Some(0));
        assert_eq!(l.allow(0), None);
    }
}
