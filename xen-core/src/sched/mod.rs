//! Scheduler policy: which vCPU runs next, and for how long (weighted round robin on one CPU).
//!
//! The unit of scheduling is a vCPU (a domain's slot and a vCPU id): every up, runnable vCPU of
//! every domain takes its turn, each with its own registers and state.
//!
//! The arch layer keeps the mechanism (saving and loading vCPU state, the APIC timer that ends a
//! slice); this module only decides. Each runnable vCPU gets a time slice proportional to its
//! weight ([`slice_ns`]); when the slice ends, or the vCPU blocks or yields, the next runnable
//! vCPU after it in slot order runs, so no runnable vCPU waits more than one round. With nothing
//! runnable the CPU idles (halts) until an interrupt makes something runnable.
//!
//! [`Sched`], the state the policy keeps for the CPU, is here rather than in `core` so that
//! `crate::cpu::Hv` can hold it without importing the loop that uses `Hv` (`core`, `wake`).

pub mod core;
pub(crate) mod hypercall;
pub mod wake;

#[cfg(test)]
mod core_tests;

/// The time slice of a vCPU of the default weight (Xen's credit scheduler uses 30 ms on real
/// hardware; under emulation a shorter slice keeps domains responsive).
pub const SLICE_NS: u64 = 5_000_000;

/// The default weight (as Xen's credit scheduler).
pub const DEFAULT_WEIGHT: u32 = 256;

/// A vCPU as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its scheduling unit: its domain's slot times `MAX_VCPUS` plus its vCPU id
    /// (`core::unit`), so the vCPUs of a domain follow each other in the round.
    pub unit: usize,
    /// Whether it could run now (not blocked, polling, shut down or dying).
    pub runnable: bool,
}

/// The slice for a vCPU of `weight`: [`SLICE_NS`] scaled by `weight / DEFAULT_WEIGHT`, at least
/// a tenth of it and at most ten times it.
pub fn slice_ns(weight: u32) -> u64 {
    let w = u64::from(weight.clamp(DEFAULT_WEIGHT / 10, DEFAULT_WEIGHT * 10));
    SLICE_NS * w / u64::from(DEFAULT_WEIGHT)
}

/// Picks the vCPU to run. `cur` is the unit of the vCPU that ran last; `keep` says it may go on
/// (runnable, slice left, did not yield). Otherwise the first runnable candidate after `cur` in
/// unit order, wrapping round (`cur` itself last). `None`: nothing is runnable; idle.
pub fn pick(cands: &[Candidate], cur: usize, keep: bool) -> Option<usize> {
    pick_from(|| cands.iter().copied(), cur, keep)
}

/// [`pick`] over the candidates `cands` yields, in unit order, each time it is called (at most
/// three passes). The scheduler's full pass gives it its domains' vCPUs as they are, with no
/// list of them: a list of every vCPU of every slot would be ~10 KiB of stack, probed page by
/// page on each full pass.
pub fn pick_from<I: Iterator<Item = Candidate>>(
    cands: impl Fn() -> I,
    cur: usize,
    keep: bool,
) -> Option<usize> {
    if keep && cands().any(|c| c.unit == cur && c.runnable) {
        return Some(cur);
    }
    let after = cands().filter(|c| c.runnable && c.unit > cur);
    let before = cands().filter(|c| c.runnable && c.unit <= cur);
    after.chain(before).map(|c| c.unit).next()
}

/// The scheduler's state for one CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sched {
    /// The slot (in the `DomainSet`) of the vCPU the CPU runs.
    pub cur: usize,
    /// When the running vCPU's time slice ends.
    pub slice_end: u64,
    /// When the running vCPU got the CPU (for run-time accounting).
    pub run_start: u64,
    /// Time the CPU spent halted with nothing to run.
    pub idle_ns: u64,
    /// Halts of the idle loop (each one ended by an interrupt): with `idle_ns`, shows that a far
    /// deadline does not make the idle loop spin (debug key `r`).
    pub idle_halts: u64,
    /// The earliest deadline of the vCPUs that do not run, and whether any of them is runnable,
    /// as the last full scheduling pass found them: an entry that cannot have changed another
    /// domain reuses them instead of scanning every domain again.
    others_next: Option<u64>,
    others_runnable: bool,
    /// The deadline the one-shot timer is armed for, to skip redundant (slow) timer writes.
    pub armed: Option<u64>,
    /// Context switches made without the full pass, when a vCPU started waiting
    /// (`core::switch_from_waiting`; debug key `r`).
    pub light_switches: u64,
}

impl Sched {
    /// The state with the vCPU of slot `cur` given the CPU at `now`.
    pub fn new(cur: usize, now: u64) -> Sched {
        Sched {
            cur,
            slice_end: now + SLICE_NS,
            run_start: now,
            idle_ns: 0,
            idle_halts: 0,
            others_next: None,
            others_runnable: true,
            armed: None,
            light_switches: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(unit: usize, runnable: bool) -> Candidate {
        Candidate { unit, runnable }
    }

    #[test]
    fn a_vcpu_with_slice_left_keeps_the_cpu() {
        assert_eq!(pick(&[c(0, true), c(1, true)], 0, true), Some(0));
    }

    #[test]
    fn round_robin_after_the_current_slot_wrapping_round() {
        let cands = [c(0, true), c(1, false), c(2, true), c(5, true)];
        assert_eq!(pick(&cands, 0, false), Some(2));
        assert_eq!(pick(&cands, 2, false), Some(5));
        assert_eq!(pick(&cands, 5, false), Some(0));
        // Every runnable vCPU gets the CPU within one round.
        let mut cur = 0;
        let mut seen = vec![];
        for _ in 0..3 {
            cur = pick(&cands, cur, false).unwrap();
            seen.push(cur);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 2, 5]);
    }

    #[test]
    fn a_blocked_current_vcpu_runs_again_only_when_alone() {
        assert_eq!(pick(&[c(0, true), c(1, false)], 1, true), Some(0));
        assert_eq!(pick(&[c(0, false), c(1, true)], 1, false), Some(1));
        assert_eq!(pick(&[c(0, false), c(1, false)], 1, false), None);
    }

    #[test]
    fn a_destroyed_current_slot_hands_over() {
        // Slot 3 no longer exists.
        assert_eq!(pick(&[c(0, true), c(4, true)], 3, true), Some(4));
    }

    #[test]
    fn slices_scale_with_weight_within_bounds() {
        assert_eq!(slice_ns(DEFAULT_WEIGHT), SLICE_NS);
        assert_eq!(slice_ns(512), 2 * SLICE_NS);
        assert_eq!(slice_ns(0), SLICE_NS * 25 / 256);
        assert_eq!(slice_ns(u32::MAX), 10 * SLICE_NS);
    }
}
