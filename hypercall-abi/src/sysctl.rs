//! System control for the control domain (`HYPERVISOR_sysctl`), mirroring `sysctl.h`: the part the
//! project uses, the software performance counters (`XEN_SYSCTL_perfc_op`) and the list of
//! domains (`XEN_SYSCTL_getdomaininfolist`).
//!
//! `sysctl.h` is a tools interface (`__XEN_TOOLS__`): its layout carries its own version number,
//! `XEN_SYSCTL_INTERFACE_VERSION`, which every call must quote.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`XEN_SYSCTL_perfc_op`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;

/// The sysctl interface version of Xen 4.17; a call quoting another is refused (-EACCES).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;
/// Command: read or reset the performance counters.
pub const XEN_SYSCTL_perfc_op: u32 = 5;
/// Command: describe the domains with ids from `first_domain` up, in id order.
pub const XEN_SYSCTL_getdomaininfolist: u32 = 6;
/// `perfc_op` sub-command: reset all counters to zero.
pub const XEN_SYSCTL_PERFCOP_reset: u32 = 1;
/// `perfc_op` sub-command: describe the counters and read their values.
pub const XEN_SYSCTL_PERFCOP_query: u32 = 2;

/// The argument of `HYPERVISOR_sysctl`: command, interface version, and a 128-byte union of the
/// per-command structures.
#[doc(alias = "xen_sysctl_t")]
#[doc(alias = "xen_sysctl")]
// The C union holds 64-bit aligned members (`uint64_aligned_t`), so the whole is 8-aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// Must be [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The command's structure (`union u`), e.g. a [`XenSysctlPerfcOp`] at offset 0.
    pub u: [u8; 128],
}
assert_layout!(XenSysctl, 136, { cmd: 0, interface_version: 4, u: 8 });

impl Default for XenSysctl {
    fn default() -> Self {
        XenSysctl {
            cmd: 0,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: [0; 128],
        }
    }
}

/// `XEN_SYSCTL_perfc_op`.
#[doc(alias = "xen_sysctl_perfc_op_t")]
#[doc(alias = "xen_sysctl_perfc_op")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenSysctlPerfcOp {
    /// IN: `XEN_SYSCTL_PERFCOP_*`.
    pub cmd: u32,
    /// OUT: number of counter descriptions.
    pub nr_counters: u32,
    /// OUT: number of values (a counter may have several, one per CPU).
    pub nr_vals: u32,
    /// Implicit C padding before `desc`.
    pub _pad0: [u8; 4],
    /// Guest handle of a `xen_sysctl_perfc_desc` array to fill, or 0.
    pub desc: u64,
    /// Guest handle of a `u32` array to fill with the values, or 0.
    pub val: u64,
}
assert_layout!(XenSysctlPerfcOp, 32, { cmd: 0, nr_counters: 4, nr_vals: 8, _pad0: 12, desc: 16, val: 24 });

/// Description of one performance counter.
#[doc(alias = "xen_sysctl_perfc_desc_t")]
#[doc(alias = "xen_sysctl_perfc_desc")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenSysctlPerfcDesc {
    /// NUL-terminated name.
    pub name: [u8; 80],
    /// Number of values this counter has.
    pub nr_vals: u32,
}
assert_layout!(XenSysctlPerfcDesc, 84, { name: 0, nr_vals: 80 });

impl Default for XenSysctlPerfcDesc {
    fn default() -> Self {
        XenSysctlPerfcDesc {
            name: [0; 80],
            nr_vals: 0,
        }
    }
}

/// `XEN_SYSCTL_getdomaininfolist`: fill `buffer` with up to `max_domains`
/// [`XenDomctlGetdomaininfo`](crate::domctl::XenDomctlGetdomaininfo) entries for the domains with
/// ids from `first_domain` up, in id order; the hypercall returns 0 and `num_domains` says how
/// many were written.
#[doc(alias = "xen_sysctl_getdomaininfolist_t")]
#[doc(alias = "xen_sysctl_getdomaininfolist")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenSysctlGetdomaininfolist {
    /// IN: the lowest domain id to describe.
    pub first_domain: crate::xen::DomId,
    /// Implicit C padding before `max_domains`.
    pub _pad0: [u8; 2],
    /// IN: room in `buffer`, in entries.
    pub max_domains: u32,
    /// IN: guest handle of a `xen_domctl_getdomaininfo_t` array.
    pub buffer: u64,
    /// OUT: entries written.
    pub num_domains: u32,
    /// Implicit C padding at the end.
    pub _pad1: [u8; 4],
}
assert_layout!(XenSysctlGetdomaininfolist, 24, {
    first_domain: 0, _pad0: 2, max_domains: 4, buffer: 8, num_domains: 16, _pad1: 20,
});
