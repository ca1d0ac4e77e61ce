//! What the guest-visible time records hold: the pvclock formula a guest applies to
//! `vcpu_time_info`, and the wallclock. [`crate::shared_info::SharedInfoPage`] publishes both.

use hypercall_abi::xen::VcpuTimeInfo;

use super::{TimeScale, NSEC_PER_SEC};

/// What a guest computes from a `vcpu_time_info` at TSC `tsc` (the pvclock formula), for tests
/// and for checking what was published.
pub const fn guest_system_time(info: &VcpuTimeInfo, tsc: u64) -> u64 {
    let scale = TimeScale {
        shift: info.tsc_shift,
        mul_frac: info.tsc_to_system_mul,
    };
    info.system_time
        .wrapping_add(scale.scale(tsc.wrapping_sub(info.tsc_timestamp)))
}

/// Wall-clock time: seconds and nanoseconds since the Unix epoch (1970-01-01 00:00:00 UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Wallclock {
    /// Whole seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds, below [`NSEC_PER_SEC`].
    pub nsec: u32,
}

impl Wallclock {
    /// The wall-clock time at system time 0, given that it was `now` at system time
    /// `system_time` (Xen's `do_settime`). A wall time earlier than `system_time` after the epoch
    /// (a broken RTC) gives the epoch.
    #[doc(alias = "do_settime")]
    pub const fn at_boot(now: Wallclock, system_time: u64) -> Wallclock {
        let ns = (now.sec as u128 * NSEC_PER_SEC as u128 + now.nsec as u128)
            .saturating_sub(system_time as u128);
        Wallclock {
            sec: (ns / NSEC_PER_SEC as u128) as u64,
            nsec: (ns % NSEC_PER_SEC as u128) as u32,
        }
    }
}
