//! HVM parameters (`HYPERVISOR_hvm_op`), mirroring `hvm/hvm_op.h` and `hvm/params.h`: the get/set
//! parameter calls and the parameters that locate a domain's xenstore and console rings.
//!
//! Xen answers these only for HVM domains (a PV domain gets -EINVAL); a dom0less toolstack
//! (`init-dom0less`) reads the ring parameters of the domains Xen built at boot.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`HVMOP_get_param`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::DomId;

/// Set a parameter; the argument is a [`XenHvmParam`].
pub const HVMOP_set_param: u64 = 0;
/// Get a parameter; the argument is a [`XenHvmParam`] whose `value` is filled in.
pub const HVMOP_get_param: u64 = 1;

/// The xenstore ring's frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// The xenstore ring's event channel (in the domain).
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// The PV console ring's frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// The PV console ring's event channel (in the domain).
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// Number of HVM parameters: an index at or above it is -EINVAL before any lookup.
pub const HVM_NR_PARAMS: u32 = 39;

/// Argument of `HVMOP_get_param` / `HVMOP_set_param`.
#[doc(alias = "xen_hvm_param_t")]
#[doc(alias = "xen_hvm_param")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmParam {
    /// IN: the domain (`DOMID_SELF` allowed).
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// IN: `HVM_PARAM_*`.
    pub index: u32,
    /// IN (set) / OUT (get): the value.
    pub value: u64,
}
assert_layout!(XenHvmParam, 16, { domid: 0, pad: 2, index: 4, value: 8 });

/// An argument of `HYPERVISOR_hvm_op`, paired with the one command that takes it (`hvm_op.h`).
/// Set and get share [`XenHvmParam`], so each has a `#[repr(transparent)]` wrapper.
pub trait HvmOpArg {
    /// The `HVMOP_*` command whose argument this is.
    const CMD: u64;
}

/// The argument of `HVMOP_set_param`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetParam(pub XenHvmParam);

/// The argument of `HVMOP_get_param`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetParam(pub XenHvmParam);

impl HvmOpArg for SetParam {
    const CMD: u64 = HVMOP_set_param;
}
impl HvmOpArg for GetParam {
    const CMD: u64 = HVMOP_get_param;
}
