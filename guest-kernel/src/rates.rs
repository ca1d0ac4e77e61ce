//! Throughput arithmetic the block benchmarks print (dom0's `bench-blkdev`, the domU's
//! `blk-bench`): integer-only, so both sides print the same figures for the same measurements.

use alloc::format;
use alloc::string::String;

/// Rounds each phase of the block benchmarks is cut into, on both sides. The phases' rounds
/// alternate (a round of sequential writes, one of sequential reads, one of random reads one at
/// a time, one of 16 in flight, then the next of each), so that every phase is sampled across
/// the whole pass rather than in one stretch of it: the host these benchmarks run on gives the
/// emulator's CPU thread a half-speed core for anything from 20 ms to a second at a time
/// (docs/performance.md, "The host's speed, and rounds"), and one phase measured in one stretch
/// took that factor of two whole. dom0 runs each of its direct rounds just before the domU's
/// (`dom0::blkbench`), so each phase's two totals are measured over the same stretches of
/// time. 32 rounds make a pass last about half a second on each side; each round moves what
/// the constants below say.
pub const ROUNDS: u64 = 32;

/// The range the sequential rounds go round, from the benchmark's start sector: round `r`
/// writes and then reads the `r % 8`-th [`SEQ_ROUND_BYTES`] of it.
pub const SEQ_RANGE_BYTES: u64 = 4 << 20;

/// Bytes a round of sequential writes moves (flushed at its end), and then a round of reads.
pub const SEQ_ROUND_BYTES: u64 = 512 << 10;

/// Random 4 KiB reads one at a time in a round, at random 4 KiB-aligned places in the range.
pub const RAND_ROUND_OPS: u64 = 32;

/// Random 4 KiB reads in a round of the phase of 16 in flight: 8 batches of 16.
pub const RAND_QD_ROUND_OPS: u64 = 128;

/// Bytes, random reads one at a time and random reads 16 in flight of a whole pass.
pub const PASS: (u64, u64, u64) = (
    SEQ_ROUND_BYTES * ROUNDS,
    RAND_ROUND_OPS * ROUNDS,
    RAND_QD_ROUND_OPS * ROUNDS,
);

/// A phase's wall clock over its [`ROUNDS`]: the total and the fastest round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// Nanoseconds of all rounds.
    pub total_ns: u64,
    /// Nanoseconds of the fastest round (`u64::MAX` before the first).
    pub best_ns: u64,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds {
            total_ns: 0,
            best_ns: u64::MAX,
        }
    }
}

impl Rounds {
    /// Adds a round that took `ns`.
    pub fn add(&mut self, ns: u64) {
        self.total_ns = self.total_ns.saturating_add(ns);
        self.best_ns = self.best_ns.min(ns);
    }

    /// The fastest round's nanoseconds, 0 before any round (so that a rate of it reads as
    /// the impossible figure the rate functions give for 0, never as a plausible one).
    pub fn best(&self) -> u64 {
        if self.best_ns == u64::MAX {
            0
        } else {
            self.best_ns
        }
    }
}

/// The figures of a block benchmark's line from its phases' `rounds` (sequential write,
/// sequential read, random reads one at a time, 16 in flight, each [`ROUNDS`] rounds of the
/// sizes above): each phase over all its rounds, then over its fastest (`*_best_*`).
pub fn phase_fields(rounds: [Rounds; 4]) -> String {
    let [write, read, one, sixteen] = rounds;
    let (bytes, ops, qd_ops) = PASS;
    format!(
        "bytes={bytes} seq_write_mb_s={} seq_read_mb_s={} rand4k_ops={ops} rand4k_read_iops={} rand4k_qd16_ops={qd_ops} rand4k_qd16_read_iops={} rounds={ROUNDS} seq_write_best_mb_s={} seq_read_best_mb_s={} rand4k_best_read_iops={} rand4k_qd16_best_read_iops={}",
        mb_per_s(bytes, write.total_ns),
        mb_per_s(bytes, read.total_ns),
        per_s(ops, one.total_ns),
        per_s(qd_ops, sixteen.total_ns),
        mb_per_s(SEQ_ROUND_BYTES, write.best()),
        mb_per_s(SEQ_ROUND_BYTES, read.best()),
        per_s(RAND_ROUND_OPS, one.best()),
        per_s(RAND_QD_ROUND_OPS, sixteen.best()),
    )
}

/// Which of the four phases a block benchmark pass runs (`bench-phases=` on dom0's and on the
/// domU's command line): letters `w` (sequential write), `r` (sequential read), `1` (random
/// reads one at a time) and `q` (random reads 16 in flight), or `none`; all four by default.
/// A phase left out takes no time (its figures then read as the impossible ones the rate
/// functions give for no time). `make bench BENCH_ARGS=--blk-emulator` runs one phase alone on
/// either side, or on neither, to count what the emulator does for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    /// Every phase.
    pub const ALL: Phases = Phases(0b1111);
    const LETTERS: [char; 4] = ['w', 'r', '1', 'q'];

    /// `text`'s phases; `None` if it holds anything but the letters above (each at most once)
    /// or `none`.
    pub fn parse(text: &str) -> Option<Phases> {
        if text == "none" {
            return Some(Phases(0));
        }
        let mut bits = 0u8;
        for c in text.chars() {
            let i = Self::LETTERS.iter().position(|&l| l == c)?;
            if bits & 1 << i != 0 {
                return None;
            }
            bits |= 1 << i;
        }
        (!text.is_empty()).then_some(Phases(bits))
    }

    /// The phases a `bench-phases=` argument names (all without one); `Err`: the message to
    /// print for a bad one, every phase then running.
    pub fn from_arg(arg: Option<&str>) -> Result<Phases, String> {
        match arg {
            None => Ok(Phases::ALL),
            Some(t) => Phases::parse(t).ok_or_else(|| {
                format!("bench-phases={t}: not letters of w, r, 1, q or none: every phase runs")
            }),
        }
    }

    /// Whether phase `i` (0 sequential write, 1 sequential read, 2 random one at a time, 3
    /// random 16 in flight, the order of [`phase_fields`]) runs.
    pub fn has(self, i: usize) -> bool {
        i < 4 && self.0 & 1 << i != 0
    }
}

/// The text a domU's `blk-bench` writes to ask dom0 for its direct round `k` of pass `n`, and
/// dom0 writes back once it ran it (`dom0::blkbench`).
pub fn round_text(n: u32, k: u64) -> String {
    format!("{n}.{k}")
}

/// [`round_text`]'s text as (pass, round); `None` for anything else.
pub fn parse_round(text: &str) -> Option<(u32, u64)> {
    let (n, k) = text.split_once('.')?;
    Some((n.parse().ok()?, k.parse().ok()?))
}

/// `n / requests` with three decimals.
pub fn per_request(n: u64, requests: u64) -> String {
    if requests == 0 {
        return String::from("n/a");
    }
    let m = n * 1000 / requests;
    format!("{}.{:03}", m / 1000, m % 1000)
}

/// Bytes over nanoseconds as MB/s (10^6 bytes), one decimal.
pub fn mb_per_s(bytes: u64, ns: u64) -> String {
    let tenths = bytes * 10_000 / ns.max(1);
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Operations over nanoseconds as operations per second.
pub fn per_s(ops: u64, ns: u64) -> u64 {
    ops * 1_000_000_000 / ns.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(per_request(3, 2), "1.500");
        assert_eq!(per_request(3, 0), "n/a");
        assert_eq!(mb_per_s(1_000_000, 1_000_000_000), "1.0");
        assert_eq!(mb_per_s(1, 0), "1000.0");
        assert_eq!(per_s(5, 1_000_000_000), 5);
    }

    #[test]
    fn phases() {
        assert_eq!(Phases::parse("wr1q"), Some(Phases::ALL));
        assert_eq!(Phases::parse("q1rw"), Some(Phases::ALL));
        let one = Phases::parse("1").unwrap();
        assert!(one.has(2));
        assert!(!one.has(0) && !one.has(1) && !one.has(3) && !one.has(4));
        let none = Phases::parse("none").unwrap();
        assert!((0..4).all(|i| !none.has(i)));
        assert_eq!(Phases::parse(""), None);
        assert_eq!(Phases::parse("11"), None);
        assert_eq!(Phases::parse("x"), None);
        assert_eq!(Phases::parse("wnone"), None);
        assert_eq!(Phases::from_arg(None), Ok(Phases::ALL));
        assert_eq!(Phases::from_arg(Some("q")), Ok(Phases(0b1000)));
        assert!(Phases::from_arg(Some("z")).is_err());
    }

    #[test]
    fn round_texts() {
        assert_eq!(parse_round(&round_text(1, 31)), Some((1, 31)));
        assert_eq!(parse_round("1"), None);
        assert_eq!(parse_round("a.1"), None);
        assert_eq!(parse_round("1.-1"), None);
        assert_eq!(parse_round("1.2.3"), None);
    }

    #[test]
    fn rounds_keep_the_total_and_the_fastest() {
        let mut r = Rounds::default();
        assert_eq!(r.best(), 0);
        for ns in [700, 300, 900] {
            r.add(ns);
        }
        assert_eq!(r.total_ns, 1900);
        assert_eq!(r.best(), 300);
    }

    #[test]
    fn phase_fields_rate_all_rounds_and_the_fastest() {
        let mut rounds = [Rounds::default(); 4];
        // The fastest rounds: 512 KiB in 2 ms, 512 KiB in 1 ms, 32 reads in 8 ms, 128 reads in
        // 4 ms; the other 31 of each take twice as long.
        for (r, best) in rounds
            .iter_mut()
            .zip([2_000_000u64, 1_000_000, 8_000_000, 4_000_000])
        {
            r.add(best);
            for _ in 1..ROUNDS {
                r.add(best * 2);
            }
        }
        assert_eq!(
            phase_fields(rounds),
            "bytes=16777216 seq_write_mb_s=133.1 seq_read_mb_s=266.3 rand4k_ops=1024 rand4k_read_iops=2031 rand4k_qd16_ops=4096 rand4k_qd16_read_iops=16253 rounds=32 seq_write_best_mb_s=262.1 seq_read_best_mb_s=524.2 rand4k_best_read_iops=4000 rand4k_qd16_best_read_iops=32000"
        );
    }
}
