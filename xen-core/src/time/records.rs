//! The guest-visible time records: `vcpu_time_info` and the wallclock in `shared_info`, published with Xen's version protocol.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use hypercall_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};

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

/// Guest-shared memory as the time code writes it: 32- and 64-bit stores at byte offsets, each a
/// single store, in program order.
///
/// On bare metal this is implemented with volatile accesses through the direct map (guests read
/// the page concurrently, so no Rust reference to it may exist); host tests use a byte slice.
/// Offsets are computed from the ABI's layout, so an out-of-range offset is a bug in the caller,
/// and the slice implementation panics on it.
pub trait SharedWords {
    /// Reads the little-endian u32 at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Writes the little-endian u32 at `offset`.
    fn write_u32(&mut self, offset: usize, value: u32);
    /// Writes the little-endian u64 at `offset`.
    fn write_u64(&mut self, offset: usize, value: u64);
}

impl SharedWords for [u8] {
    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        self[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        self[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// Byte offset of `vcpu_info[vcpu].time` in `shared_info` (legacy vCPU slots, `vcpu` < 32).
pub const fn vcpu_time_offset(vcpu: usize) -> usize {
    offset_of!(SharedInfo, vcpu_info) + vcpu * size_of::<VcpuInfo>() + offset_of!(VcpuInfo, time)
}

/// Xen's `version_update_begin`: the next odd version, "update in progress".
const fn version_update_begin(version: u32) -> u32 {
    version.wrapping_add(1) | 1
}

/// Xen's `version_update_end`: the even version that closes an update.
const fn version_update_end(version: u32) -> u32 {
    version.wrapping_add(1)
}

/// Publishes `info` into the `vcpu_time_info` at byte offset `at` of `mem` with Xen's protocol
/// (`update_vcpu_system_time` in `xen/arch/x86/time.c`): make `version` odd, write every other
/// field, make `version` even. A guest that reads the same even version before and after reading
/// the fields has a consistent copy. `info.version` is ignored; the counter in `mem` is advanced.
pub fn publish_vcpu_time<M: SharedWords + ?Sized>(mem: &mut M, at: usize, info: &VcpuTimeInfo) {
    let version_at = at + offset_of!(VcpuTimeInfo, version);
    let odd = version_update_begin(mem.read_u32(version_at));
    mem.write_u32(version_at, odd);
    // Xen's smp_wmb(): the odd version must be visible before any field changes. On x86 stores
    // are not reordered with each other, so only the compiler needs stopping.
    fence(Ordering::Release);
    mem.write_u64(
        at + offset_of!(VcpuTimeInfo, tsc_timestamp),
        info.tsc_timestamp,
    );
    mem.write_u64(at + offset_of!(VcpuTimeInfo, system_time), info.system_time);
    mem.write_u32(
        at + offset_of!(VcpuTimeInfo, tsc_to_system_mul),
        info.tsc_to_system_mul,
    );
    // tsc_shift, flags and the two padding bytes form the last 32-bit word.
    let tail = u32::from_le_bytes([info.tsc_shift as u8, info.flags, 0, 0]);
    mem.write_u32(at + offset_of!(VcpuTimeInfo, tsc_shift), tail);
    fence(Ordering::Release);
    mem.write_u32(version_at, version_update_end(odd));
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

/// Publishes the wallclock into a `shared_info` page with Xen's protocol
/// (`update_domain_wallclock_time`): `wc_version` odd, `wc_sec`/`wc_nsec`/`wc_sec_hi`, then
/// `wc_version` even. `wc` is the wall-clock time at system time 0.
pub fn publish_wallclock<M: SharedWords + ?Sized>(shared_info: &mut M, wc: Wallclock) {
    let version_at = offset_of!(SharedInfo, wc_version);
    let odd = version_update_begin(shared_info.read_u32(version_at));
    shared_info.write_u32(version_at, odd);
    fence(Ordering::Release);
    shared_info.write_u32(offset_of!(SharedInfo, wc_sec), wc.sec as u32);
    shared_info.write_u32(offset_of!(SharedInfo, wc_nsec), wc.nsec);
    shared_info.write_u32(offset_of!(SharedInfo, wc_sec_hi), (wc.sec >> 32) as u32);
    fence(Ordering::Release);
    shared_info.write_u32(version_at, version_update_end(odd));
}
