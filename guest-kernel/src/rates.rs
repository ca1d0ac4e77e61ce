//! Throughput arithmetic the block benchmarks print (dom0's `bench-blkdev`, the domU's
//! `blk-bench`): integer-only, so both sides print the same figures for the same measurements.

use alloc::format;
use alloc::string::String;

/// Random 4 KiB reads in the block benchmarks' phase of 16 in flight, on both sides (the domU's
/// `blk-bench` and dom0's direct `bench-blkdev`): 1024, 64 rounds of 16, so that the phase lasts
/// some 50 ms rather than 10 and one descheduling of the emulator moves the figure less.
pub const RAND_QD_OPS: u64 = 1024;

/// Rounds each phase of the block benchmarks is cut into, on both sides. The phases' rounds
/// alternate (a round of sequential writes, one of sequential reads, one of random reads one at
/// a time, one of 16 in flight, then the next of each), so that every phase is sampled across
/// the whole pass rather than in one stretch of it: the host these benchmarks run on gives the
/// emulator's CPU thread a half-speed core for anything from 20 ms to a second at a time
/// (docs/performance.md, "The host's speed, and rounds"), and one phase measured in one stretch
/// took that factor of two whole.
pub const ROUNDS: u64 = 8;

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

/// The `*_best_*` fields of a block benchmark's line: each phase's figure over its fastest
/// round. `rounds` are the phases' in the order sequential write, sequential read, random reads
/// one at a time, 16 in flight; `bytes` were written and read, `random_ops` and `qd_ops` read,
/// each over [`ROUNDS`] equal rounds.
pub fn best_fields(bytes: u64, random_ops: u64, qd_ops: u64, rounds: [Rounds; 4]) -> String {
    let [write, read, one, sixteen] = rounds;
    format!(
        "seq_write_best_mb_s={} seq_read_best_mb_s={} rand4k_best_read_iops={} rand4k_qd16_best_read_iops={}",
        mb_per_s(bytes / ROUNDS, write.best()),
        mb_per_s(bytes / ROUNDS, read.best()),
        per_s(random_ops / ROUNDS, one.best()),
        per_s(qd_ops / ROUNDS, sixteen.best()),
    )
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
    fn best_fields_rate_the_fastest_round() {
        let mut rounds = [Rounds::default(); 4];
        // 8 rounds each; the fastest: 512 KiB in 2 ms, 512 KiB in 1 ms, 32 reads in 8 ms,
        // 128 reads in 4 ms.
        for (r, best) in rounds
            .iter_mut()
            .zip([2_000_000, 1_000_000, 8_000_000, 4_000_000])
        {
            r.add(best * 3);
            r.add(best);
        }
        assert_eq!(
            best_fields(4 << 20, 256, 1024, rounds),
            "seq_write_best_mb_s=262.1 seq_read_best_mb_s=524.2 rand4k_best_read_iops=4000 rand4k_qd16_best_read_iops=32000"
        );
    }
}
