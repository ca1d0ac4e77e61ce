//! Throughput arithmetic the block benchmarks print (dom0's `bench-blkdev`, the domU's
//! `blk-bench`): integer-only, so both sides print the same figures for the same measurements.

use alloc::format;
use alloc::string::String;

/// Random 4 KiB reads in the block benchmarks' phase of 16 in flight, on both sides (the domU's
/// `blk-bench` and dom0's direct `bench-blkdev`): 1024, 64 rounds of 16, so that the phase lasts
/// some 50 ms rather than 10 and one descheduling of the emulator moves the figure less.
pub const RAND_QD_OPS: u64 = 1024;

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
}
