//! System time: Xen's nanosecond clock, read from vCPU 0's `vcpu_time_info` and the TSC (one
//! clock for every vCPU: they share one TSC).
//!
//! Timer hypercalls (`set_timer_op`, `VCPUOP_set_singleshot_timer`, `SCHEDOP_poll`'s timeout) take
//! absolute deadlines in this clock. The values are never printed: they differ run to run.

use core::arch::x86_64::_rdtsc;
use core::ptr;
use core::sync::atomic::{compiler_fence, AtomicU64, Ordering};

use guest_kernel::pvclock;

use super::shared_info;

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;

/// The single-shot deadline [`arm_timeout`] last set on each vCPU with `set_timer_op` (0: none it
/// knows of). Any other call that may move a vCPU's timer forgets that vCPU's record (from the
/// hypercall wrapper: `set_timer_op` from elsewhere the caller's, a `vcpu_op` the named vCPU's,
/// [`forget_armed_of`]) or all of them (a multicall, [`forget_armed`]), and so does every
/// `VIRQ_TIMER` the event loop dispatches (the record may name the deadline that fired).
static ARMED: [AtomicU64; super::smp::MAX_VCPUS] =
    [const { AtomicU64::new(0) }; super::smp::MAX_VCPUS];

/// How close to its deadline an armed timer must not be to serve a later one: the hypervisor's
/// clock may run a little ahead of our extrapolation of it, so a deadline this near may already
/// have fired there.
const ARMED_SLACK_NS: u64 = MS;

/// Makes sure this vCPU's single-shot timer fires no later than `deadline` (`now` is the time
/// read just before): a deadline armed earlier by this function that is still ahead and no later
/// serves as it is (its `VIRQ_TIMER` ends a wait early at worst, which callers take as a wake-up
/// with nothing to do); otherwise `set_timer_op(deadline)`. An event loop waiting with the same
/// timeout pass after pass so arms its timer once per timeout, not once per pass.
pub fn arm_timeout(deadline: u64, now: u64) {
    let me = super::smp::this_vcpu() as usize;
    let armed = ARMED.get(me).map_or(0, |a| a.load(Ordering::SeqCst));
    if armed != 0 && armed > now.saturating_add(ARMED_SLACK_NS) && armed <= deadline {
        return;
    }
    super::hypercall::set_timer_op(deadline);
    if let Some(a) = ARMED.get(me) {
        a.store(deadline, Ordering::SeqCst);
    }
}

/// Forgets every armed deadline [`arm_timeout`] recorded (a call that may have moved a timer).
pub fn forget_armed() {
    for a in &ARMED {
        a.store(0, Ordering::SeqCst);
    }
}

/// Forgets the deadline [`arm_timeout`] recorded for vCPU `vcpu` (a call that may have moved its
/// timer); every one if `vcpu` is not one of ours (the call fails, but forgetting is safe).
pub fn forget_armed_of(vcpu: u32) {
    match ARMED.get(vcpu as usize) {
        Some(a) => a.store(0, Ordering::SeqCst),
        None => forget_armed(),
    }
}

/// Attempts at a consistent snapshot before giving up (a hypervisor that left `version` odd).
const MAX_TRIES: u32 = 100_000;

/// Xen system time now, in ns; `None` if shared_info is not mapped or never holds a consistent
/// snapshot.
///
/// The snapshot is read under the `version` seqlock: an odd version means Xen is rewriting it, a
/// changed version means it did so while we read, and either way we read again.
pub fn now_ns() -> Option<u64> {
    let v = shared_info::vcpu_info(0)?;
    // SAFETY: field address inside our own mapped vcpu_info; nothing is dereferenced here.
    let t = unsafe { &raw const (*v).time };
    for _ in 0..MAX_TRIES {
        // SAFETY: volatile reads of our own vcpu_time_info, which Xen rewrites at any time.
        let (version, tsc_timestamp, system_time, mul, shift) = unsafe {
            let version = ptr::read_volatile(&raw const (*t).version);
            compiler_fence(Ordering::Acquire);
            (
                version,
                ptr::read_volatile(&raw const (*t).tsc_timestamp),
                ptr::read_volatile(&raw const (*t).system_time),
                ptr::read_volatile(&raw const (*t).tsc_to_system_mul),
                ptr::read_volatile(&raw const (*t).tsc_shift),
            )
        };
        // SAFETY: `rdtsc` has no memory effects; a PV kernel may execute it (if Xen ever sets
        // CR4.TSD, the instruction traps and Xen emulates it).
        let tsc = unsafe { _rdtsc() };
        compiler_fence(Ordering::Acquire);
        // SAFETY: as above.
        let again = unsafe { ptr::read_volatile(&raw const (*t).version) };
        if version & 1 == 0 && version == again {
            return Some(pvclock::system_time(
                tsc,
                tsc_timestamp,
                system_time,
                mul,
                shift,
            ));
        }
        core::hint::spin_loop();
    }
    None
}

/// The guest's TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; PV guests may use it (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}
