//! Scheduler operations for `HYPERVISOR_sched_op`, mirroring `sched.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`SCHEDOP_yield`, `SHUTDOWN_poweroff`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::DomId;

/// Voluntarily yield the CPU. No argument.
pub const SCHEDOP_yield: u32 = 0;
/// Block until an event is pending (clears the upcall mask first). No argument.
pub const SCHEDOP_block: u32 = 1;
/// Halt the calling domain; argument `sched_shutdown`.
pub const SCHEDOP_shutdown: u32 = 2;
/// Block until one of the listed ports is pending or the timeout expires; `sched_poll`.
pub const SCHEDOP_poll: u32 = 3;
/// Shut down another domain (privileged); `sched_remote_shutdown`.
pub const SCHEDOP_remote_shutdown: u32 = 4;
/// Record a shutdown reason for a later `SCHEDOP_shutdown`/crash; `sched_shutdown`.
pub const SCHEDOP_shutdown_code: u32 = 5;
/// Set up, poke or destroy a domain watchdog; `sched_watchdog`.
pub const SCHEDOP_watchdog: u32 = 6;
/// Temporarily pin the vCPU to a physical CPU (hardware domain); `sched_pin_override`.
pub const SCHEDOP_pin_override: u32 = 7;

/// Domain exited normally; destroy it.
pub const SHUTDOWN_poweroff: u32 = 0;
/// Clean up, kill, and restart.
pub const SHUTDOWN_reboot: u32 = 1;
/// Clean up, save suspend info, kill.
pub const SHUTDOWN_suspend: u32 = 2;
/// Tell controller we've crashed.
pub const SHUTDOWN_crash: u32 = 3;
/// Restart because the watchdog timed out.
pub const SHUTDOWN_watchdog: u32 = 4;
/// Soft reset: keep the domain, tear down its state.
pub const SHUTDOWN_soft_reset: u32 = 5;
/// Highest defined reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Argument of `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code`.
#[doc(alias = "sched_shutdown_t")]
#[doc(alias = "sched_shutdown")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedShutdown {
    /// A `SHUTDOWN_*` reason.
    pub reason: u32,
}
assert_layout!(SchedShutdown, 4, { reason: 0 });

/// Argument of `SCHEDOP_poll`.
#[doc(alias = "sched_poll_t")]
#[doc(alias = "sched_poll")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPoll {
    /// Guest handle (virtual address) of an `evtchn_port_t` array.
    pub ports: u64,
    /// Number of ports.
    pub nr_ports: u32,
    /// Implicit C padding before `timeout`.
    pub _pad0: [u8; 4],
    /// Absolute system-time timeout in ns; 0 = none.
    pub timeout: u64,
}
assert_layout!(SchedPoll, 24, { ports: 0, nr_ports: 8, _pad0: 12, timeout: 16 });

/// Argument of `SCHEDOP_remote_shutdown`.
#[doc(alias = "sched_remote_shutdown_t")]
#[doc(alias = "sched_remote_shutdown")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedRemoteShutdown {
    /// Domain to shut down.
    pub domain_id: DomId,
    /// Implicit C padding before `reason`.
    pub _pad0: [u8; 2],
    /// A `SHUTDOWN_*` reason.
    pub reason: u32,
}
assert_layout!(SchedRemoteShutdown, 8, { domain_id: 0, _pad0: 2, reason: 4 });

/// Argument of `SCHEDOP_watchdog`.
#[doc(alias = "sched_watchdog_t")]
#[doc(alias = "sched_watchdog")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedWatchdog {
    /// Watchdog id; 0 allocates a new one.
    pub id: u32,
    /// Timeout in seconds; 0 destroys the watchdog.
    pub timeout: u32,
}
assert_layout!(SchedWatchdog, 8, { id: 0, timeout: 4 });

/// Argument of `SCHEDOP_pin_override`.
#[doc(alias = "sched_pin_override_t")]
#[doc(alias = "sched_pin_override")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPinOverride {
    /// Physical CPU, or negative to end the override.
    pub pcpu: i32,
}
assert_layout!(SchedPinOverride, 4, { pcpu: 0 });

/// An argument of `HYPERVISOR_sched_op`, paired with the one command that takes it (`sched.h`,
/// `@arg == pointer to ...`).
pub trait SchedOpArg {
    /// The `SCHEDOP_*` command whose argument this is.
    const CMD: u32;
}

/// The argument of `SCHEDOP_shutdown_code`: a [`SchedShutdown`] (`@arg == sched_shutdown_t, as for
/// SCHEDOP_shutdown`), wrapped so the type names the command.
#[doc(alias = "SCHEDOP_shutdown_code")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownCode(pub SchedShutdown);

crate::sub_ops!(SchedOpArg:
    SchedShutdown => SCHEDOP_shutdown,
    SchedPoll => SCHEDOP_poll,
    SchedRemoteShutdown => SCHEDOP_remote_shutdown,
    ShutdownCode => SCHEDOP_shutdown_code,
    SchedWatchdog => SCHEDOP_watchdog,
    SchedPinOverride => SCHEDOP_pin_override,
);

/// The `sched_op` commands that take no argument (`@arg == NULL`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedNoArg {
    /// `SCHEDOP_yield`.
    Yield = SCHEDOP_yield,
    /// `SCHEDOP_block`.
    Block = SCHEDOP_block,
}
