//! Per-vCPU operations for `HYPERVISOR_vcpu_op`, mirroring `vcpu.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`VCPUOP_up`, `RUNSTATE_running`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;

/// Initialise a vCPU from a `vcpu_guest_context` (once, while down).
pub const VCPUOP_initialise: u32 = 0;
/// Bring an initialised vCPU up.
pub const VCPUOP_up: u32 = 1;
/// Take a vCPU down.
pub const VCPUOP_down: u32 = 2;
/// Returns 1 if the vCPU is up.
pub const VCPUOP_is_up: u32 = 3;
/// Fills a [`VcpuRunstateInfo`].
pub const VCPUOP_get_runstate_info: u32 = 4;
/// Registers a runstate area kept up to date by Xen; [`VcpuRegisterRunstateMemoryArea`].
pub const VCPUOP_register_runstate_memory_area: u32 = 5;
/// Starts a periodic timer; [`VcpuSetPeriodicTimer`].
pub const VCPUOP_set_periodic_timer: u32 = 6;
/// Stops the periodic timer.
pub const VCPUOP_stop_periodic_timer: u32 = 7;
/// Arms the single-shot timer; [`VcpuSetSingleshotTimer`].
pub const VCPUOP_set_singleshot_timer: u32 = 8;
/// Disarms the single-shot timer.
pub const VCPUOP_stop_singleshot_timer: u32 = 9;
/// Moves the vCPU's `vcpu_info` to a guest frame; [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_register_vcpu_info: u32 = 10;
/// Sends an NMI to the vCPU.
pub const VCPUOP_send_nmi: u32 = 11;
/// Fills a [`VcpuGetPhysid`] (hardware domain).
pub const VCPUOP_get_physid: u32 = 12;
/// Registers a secondary `vcpu_time_info`; [`VcpuRegisterTimeMemoryArea`].
pub const VCPUOP_register_vcpu_time_memory_area: u32 = 13;

/// Set in `state_entry_time` while Xen updates the runstate area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;
/// Running on a physical CPU.
pub const RUNSTATE_running: i32 = 0;
/// Runnable, waiting for a physical CPU.
pub const RUNSTATE_runnable: i32 = 1;
/// Blocked (waiting for an event).
pub const RUNSTATE_blocked: i32 = 2;
/// Offline or preempted by something other than the scheduler.
pub const RUNSTATE_offline: i32 = 3;

/// Bit number of [`VCPU_SSHOTTMR_future`].
pub const _VCPU_SSHOTTMR_future: u32 = 0;
/// Fail with `-ETIME` if the timeout is already in the past.
pub const VCPU_SSHOTTMR_future: u32 = 1 << _VCPU_SSHOTTMR_future;

/// Time a vCPU spent in each `RUNSTATE_*`.
#[doc(alias = "vcpu_runstate_info_t")]
#[doc(alias = "vcpu_runstate_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// Implicit C padding before `state_entry_time`.
    pub _pad0: [u8; 4],
    /// System time at which `state` was entered (may carry `XEN_RUNSTATE_UPDATE`).
    pub state_entry_time: u64,
    /// Nanoseconds spent in each state.
    pub time: [u64; 4],
}
assert_layout!(VcpuRunstateInfo, 48, { state: 0, _pad0: 4, state_entry_time: 8, time: 16 });

/// `VCPUOP_register_runstate_memory_area`: `addr` is a guest virtual address (C union of handle,
/// pointer and `uint64_t p`).
#[doc(alias = "vcpu_register_runstate_memory_area_t")]
#[doc(alias = "vcpu_register_runstate_memory_area")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address of a [`VcpuRunstateInfo`].
    pub addr: u64,
}
assert_layout!(VcpuRegisterRunstateMemoryArea, 8, { addr: 0 });

/// `VCPUOP_set_periodic_timer`.
#[doc(alias = "vcpu_set_periodic_timer_t")]
#[doc(alias = "vcpu_set_periodic_timer")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}
assert_layout!(VcpuSetPeriodicTimer, 8, { period_ns: 0 });

/// `VCPUOP_set_singleshot_timer`.
#[doc(alias = "vcpu_set_singleshot_timer_t")]
#[doc(alias = "vcpu_set_singleshot_timer")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time of expiry, in nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 4],
}
assert_layout!(VcpuSetSingleshotTimer, 16, { timeout_abs_ns: 0, flags: 8, _pad0: 12 });

/// `VCPUOP_register_vcpu_info`.
#[doc(alias = "vcpu_register_vcpu_info_t")]
#[doc(alias = "vcpu_register_vcpu_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame (MFN for PV) holding the new `vcpu_info`.
    pub mfn: u64,
    /// Offset within the frame (the 64-byte struct must not cross the page).
    pub offset: u32,
    /// Reserved, must be zero.
    pub rsvd: u32,
}
assert_layout!(VcpuRegisterVcpuInfo, 16, { mfn: 0, offset: 8, rsvd: 12 });

/// `VCPUOP_get_physid`.
#[doc(alias = "vcpu_get_physid_t")]
#[doc(alias = "vcpu_get_physid")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuGetPhysid {
    /// APIC id in the low 32 bits, ACPI id in the high 32 bits.
    pub phys_id: u64,
}
assert_layout!(VcpuGetPhysid, 8, { phys_id: 0 });

impl VcpuGetPhysid {
    /// `xen_vcpu_physid_to_x86_apicid`.
    pub const fn apicid(&self) -> u32 {
        self.phys_id as u32
    }

    /// `xen_vcpu_physid_to_x86_acpiid`.
    pub const fn acpiid(&self) -> u32 {
        (self.phys_id >> 32) as u32
    }
}

/// `VCPUOP_register_vcpu_time_memory_area`: `addr` is a guest virtual address.
#[doc(alias = "vcpu_register_time_memory_area_t")]
#[doc(alias = "vcpu_register_time_memory_area")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest virtual address of a `vcpu_time_info`.
    pub addr: u64,
}
assert_layout!(VcpuRegisterTimeMemoryArea, 8, { addr: 0 });

/// An argument of `HYPERVISOR_vcpu_op`, paired with the one command that takes it (`vcpu.h`:
/// the struct declared after each `#define`).
pub trait VcpuOpArg {
    /// The `VCPUOP_*` command whose argument this is.
    const CMD: u32;
}
crate::sub_ops!(VcpuOpArg:
    VcpuRunstateInfo => VCPUOP_get_runstate_info,
    VcpuRegisterRunstateMemoryArea => VCPUOP_register_runstate_memory_area,
    VcpuSetPeriodicTimer => VCPUOP_set_periodic_timer,
    VcpuSetSingleshotTimer => VCPUOP_set_singleshot_timer,
    VcpuRegisterVcpuInfo => VCPUOP_register_vcpu_info,
    VcpuGetPhysid => VCPUOP_get_physid,
    VcpuRegisterTimeMemoryArea => VCPUOP_register_vcpu_time_memory_area,
);

/// The `vcpu_op` commands that take no argument (`@arg == NULL` in `vcpu.h`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuNoArg {
    /// `VCPUOP_up`.
    Up = VCPUOP_up,
    /// `VCPUOP_down`.
    Down = VCPUOP_down,
    /// `VCPUOP_is_up`.
    IsUp = VCPUOP_is_up,
    /// `VCPUOP_stop_periodic_timer`.
    StopPeriodicTimer = VCPUOP_stop_periodic_timer,
    /// `VCPUOP_stop_singleshot_timer`.
    StopSingleshotTimer = VCPUOP_stop_singleshot_timer,
    /// `VCPUOP_send_nmi`.
    SendNmi = VCPUOP_send_nmi,
}
