//! The teaching lab's native baseline: the PTE writes a PV guest asks for, done by ring 0 itself.
//!
//! `lab=pt-batching` (docs/lab-page-table-batching.md) times a PV guest mapping and unmapping N
//! pages through `mmu_update`, `update_va_mapping` and `multicall`. For contrast,
//! `selftest=native-pte` on the hypervisor's command line times the same work the way a native
//! kernel does it: plain stores into L1 entries, no privilege crossing, no validation, no
//! reference counts. The round has the guest workload's shape (flush the TLB, untimed; map N
//! pages; read one word of each, timed apart as the TLB refill; unmap them), and the result line
//! has its fields, as variant `native`, so the lab's host runner reads both alike.
//!
//! The loop is portable and host-tested; the arch layer supplies a [`NativeScratch`] (real page
//! tables linked into the hypervisor's own address space, and the TSC).

use core::fmt;

/// The region sizes timed, in pages: the lab's N, powers of two from 64 to 16384.
pub const PAGES: [usize; 9] = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
/// The largest N (32 L1 tables).
pub const MAX_PAGES: usize = 16384;
/// Timed rounds per N (the median is reported).
pub const REPS: usize = 7;

/// A scratch range of [`MAX_PAGES`] pages whose L1 entries ring 0 writes directly.
pub trait NativeScratch {
    /// Writes `val` into the L1 entry of scratch page `i` (a plain store, as a native kernel's
    /// `set_pte` does).
    fn set_pte(&mut self, i: usize, val: u64);
    /// Reads the first word of scratch page `i` through its mapping.
    fn touch(&mut self, i: usize) -> u64;
    /// Flushes the TLB (between rounds, untimed).
    fn flush_tlb(&mut self);
    /// The time-stamp counter.
    fn now(&mut self) -> u64;
}

/// What the native writes cost at one N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeFigures {
    /// N.
    pub pages: usize,
    /// Timed rounds.
    pub reps: usize,
    /// Median, smallest and largest TSC cycles per PTE write (a round is 2N writes).
    pub cycles_per_pte: (u64, u64, u64),
    /// Median TSC cycles per page of the touch pass.
    pub touch_cycles_per_page: u64,
}

impl fmt::Display for NativeFigures {
    /// The guest workload's result line (`guest_kernel::pt_lab::Figures`), as variant `native`:
    /// no batch, no hypercalls, and none of the hypervisor's work counted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (median, min, max) = self.cycles_per_pte;
        write!(
            f,
            "variant=native batch=n/a pages={} reps={} cycles_per_pte={median} \
             min_cycles_per_pte={min} max_cycles_per_pte={max} touch_cycles_per_page={} \
             hypercalls=0 hv_hypercalls=0 traps=0 validations=0 page_updates=0 flushes=0 \
             invlpgs=0 ref_ops=0",
            self.pages, self.reps, self.touch_cycles_per_page
        )
    }
}

/// Times `reps` rounds (at most [`REPS`]) of mapping scratch pages 0..pages to `pte(i)` and
/// unmapping them. `pages` must be 1..=[`MAX_PAGES`].
pub fn measure(
    s: &mut impl NativeScratch,
    pages: usize,
    reps: usize,
    pte: impl Fn(usize) -> u64,
) -> NativeFigures {
    assert!((1..=MAX_PAGES).contains(&pages), "pages out of range");
    let reps = reps.clamp(1, REPS);
    let mut cycles = [0u64; REPS];
    let mut touches = [0u64; REPS];
    for r in 0..reps {
        s.flush_tlb();
        let t0 = s.now();
        for i in 0..pages {
            s.set_pte(i, pte(i));
        }
        let t1 = s.now();
        let mut sum = 0u64;
        for i in 0..pages {
            sum = sum.wrapping_add(s.touch(i));
        }
        core::hint::black_box(sum);
        let t2 = s.now();
        for i in 0..pages {
            s.set_pte(i, 0);
        }
        let t3 = s.now();
        cycles[r] = (t1.wrapping_sub(t0) + t3.wrapping_sub(t2)) / (2 * pages as u64);
        touches[r] = t2.wrapping_sub(t1) / pages as u64;
    }
    s.flush_tlb();
    NativeFigures {
        pages,
        reps,
        cycles_per_pte: median_min_max(&mut cycles[..reps]),
        touch_cycles_per_page: median_min_max(&mut touches[..reps]).0,
    }
}

/// The median (lower middle), smallest and largest of `samples`, which it sorts.
fn median_min_max(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    match (samples.first(), samples.last()) {
        (Some(&min), Some(&max)) => (samples[(samples.len() - 1) / 2], min, max),
        _ => (0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch range in a vector, with a clock that advances 3 per PTE write and 5 per touch.
    struct Fake {
        ptes: Vec<u64>,
        clock: u64,
        flushes: usize,
        touched_unmapped: usize,
    }

    impl NativeScratch for Fake {
        fn set_pte(&mut self, i: usize, val: u64) {
            self.ptes[i] = val;
            self.clock += 3;
        }
        fn touch(&mut self, i: usize) -> u64 {
            self.clock += 5;
            if self.ptes[i] == 0 {
                self.touched_unmapped += 1;
            }
            self.ptes[i]
        }
        fn flush_tlb(&mut self) {
            self.flushes += 1;
            self.clock += 1000; // untimed: must not show in the figures
        }
        fn now(&mut self) -> u64 {
            self.clock
        }
    }

    fn fake() -> Fake {
        Fake {
            ptes: vec![0; MAX_PAGES],
            clock: 0,
            flushes: 0,
            touched_unmapped: 0,
        }
    }

    #[test]
    fn maps_touches_and_unmaps_each_round() {
        let mut s = fake();
        let f = measure(&mut s, 64, 3, |i| (i as u64 + 1) << 12 | 1);
        assert_eq!(f.pages, 64);
        assert_eq!(f.reps, 3);
        assert_eq!(f.cycles_per_pte, (3, 3, 3));
        assert_eq!(f.touch_cycles_per_page, 5);
        assert_eq!(s.touched_unmapped, 0, "every page is mapped when touched");
        assert!(s.ptes.iter().all(|&p| p == 0), "nothing stays mapped");
        assert_eq!(
            s.flushes, 4,
            "a flush before each round and one after the last"
        );
    }

    #[test]
    fn repetitions_are_capped() {
        let mut s = fake();
        assert_eq!(measure(&mut s, 1, 100, |_| 1).reps, REPS);
        assert_eq!(measure(&mut s, 1, 0, |_| 1).reps, 1);
    }

    #[test]
    fn the_line_reads_like_the_guest_workloads() {
        let f = NativeFigures {
            pages: 512,
            reps: 7,
            cycles_per_pte: (10, 9, 30),
            touch_cycles_per_page: 4,
        };
        assert_eq!(
            f.to_string(),
            "variant=native batch=n/a pages=512 reps=7 cycles_per_pte=10 min_cycles_per_pte=9 \
             max_cycles_per_pte=30 touch_cycles_per_page=4 hypercalls=0 hv_hypercalls=0 traps=0 \
             validations=0 page_updates=0 flushes=0 invlpgs=0 ref_ops=0"
        );
    }

    #[test]
    #[should_panic(expected = "pages out of range")]
    fn more_pages_than_the_scratch_range_is_a_bug() {
        measure(&mut fake(), MAX_PAGES + 1, 1, |_| 0);
    }
}
