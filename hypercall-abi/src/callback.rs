//! Callback registration for `HYPERVISOR_callback_op`, mirroring `callback.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`CALLBACKTYPE_event`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::arch_x86_64::XenCallback;
use crate::assert_layout;

/// Event upcall: entered when `evtchn_upcall_pending` is set and events are unmasked.
pub const CALLBACKTYPE_event: u16 = 0;
/// Failsafe: entered when Xen cannot load the guest's segment state on return.
pub const CALLBACKTYPE_failsafe: u16 = 1;
/// 64-bit `syscall` from user mode.
pub const CALLBACKTYPE_syscall: u16 = 2;
/// Deprecated 32-bit `sysenter`.
pub const CALLBACKTYPE_sysenter_deprecated: u16 = 3;
/// NMI.
pub const CALLBACKTYPE_nmi: u16 = 4;
/// 32-bit `sysenter` from compat user mode.
pub const CALLBACKTYPE_sysenter: u16 = 5;
/// 32-bit `syscall` from compat user mode.
pub const CALLBACKTYPE_syscall32: u16 = 7;

/// Bit number of [`CALLBACKF_mask_events`].
pub const _CALLBACKF_mask_events: u16 = 0;
/// Mask events (set `evtchn_upcall_mask`) on entry to the callback.
pub const CALLBACKF_mask_events: u16 = 1 << _CALLBACKF_mask_events;

/// Register a callback; [`CallbackRegister`].
pub const CALLBACKOP_register: u32 = 0;
/// Unregister a callback; [`CallbackUnregister`].
pub const CALLBACKOP_unregister: u32 = 1;

/// `CALLBACKOP_register`.
#[doc(alias = "callback_register_t")]
#[doc(alias = "callback_register")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Implicit C padding before `address`.
    pub _pad0: [u8; 4],
    /// Entry point.
    pub address: XenCallback,
}
assert_layout!(CallbackRegister, 16, { r#type: 0, flags: 2, _pad0: 4, address: 8 });

/// `CALLBACKOP_unregister`.
#[doc(alias = "callback_unregister_t")]
#[doc(alias = "callback_unregister")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// Unused (named in C).
    pub _unused: u16,
}
assert_layout!(CallbackUnregister, 4, { r#type: 0, _unused: 2 });

/// An argument of `HYPERVISOR_callback_op`, paired with the one command that takes it
/// (`callback.h`).
pub trait CallbackOpArg {
    /// The `CALLBACKOP_*` command whose argument this is.
    const CMD: u32;
}
crate::sub_ops!(CallbackOpArg:
    CallbackRegister => CALLBACKOP_register,
    CallbackUnregister => CALLBACKOP_unregister,
);
