//! Domain control for the control domain (`HYPERVISOR_domctl`), mirroring `domctl.h`: the part a
//! small dom0 toolstack needs to learn about and manage domains (`getdomaininfo`,
//! `destroydomain`, `pausedomain`/`unpausedomain`), and to build a PV domain as libxenguest
//! does (`createdomain`, `max_mem`, `setvcpucontext`).
//!
//! `domctl.h` is a tools interface (`__XEN_TOOLS__`): its layout carries its own version number,
//! [`XEN_DOMCTL_INTERFACE_VERSION`], which every call must quote.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`XEN_DOMCTL_getdomaininfo`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::arch_x86_64::XenArchDomainconfig;
use crate::assert_layout;
use crate::version::XenDomainHandle;
use crate::xen::DomId;

/// The domctl interface version of Xen 4.17; a call quoting another is refused (-EACCES).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Command: create a domain from a [`XenDomctlCreatedomain`]; `xen_domctl.domain` is IN/OUT (0 or
/// a reserved id: the hypervisor picks one). The domain starts paused, with no memory.
pub const XEN_DOMCTL_createdomain: u32 = 1;
/// Command: destroy a domain (`domain_kill`); the caller cannot destroy itself.
pub const XEN_DOMCTL_destroydomain: u32 = 2;
/// Command: pause a domain on behalf of the toolstack.
pub const XEN_DOMCTL_pausedomain: u32 = 3;
/// Command: undo one `XEN_DOMCTL_pausedomain`.
pub const XEN_DOMCTL_unpausedomain: u32 = 4;
/// Command: fill a [`XenDomctlGetdomaininfo`]. In Xen 4.17 it describes the first domain whose id
/// is at least `domain` and echoes that id in `xen_domctl.domain` (4.18 made it exact).
pub const XEN_DOMCTL_getdomaininfo: u32 = 5;

/// Command: set the most memory a domain may hold ([`XenDomctlMaxMem`]).
pub const XEN_DOMCTL_max_mem: u32 = 11;
/// Command: set a vCPU's initial state ([`XenDomctlVcpucontext`]) while the domain is paused.
pub const XEN_DOMCTL_setvcpucontext: u32 = 12;
/// Command: allocate a domain's vCPUs ([`XenDomctlMaxVcpus`], the same count as at creation;
/// Xen 4.17 still needs it before any vCPU exists).
pub const XEN_DOMCTL_max_vcpus: u32 = 15;
/// Mask of [`XenDomctlCreatedomain::grant_opts`] holding the highest grant-table version allowed.
pub const XEN_DOMCTL_GRANT_version_mask: u32 = 0xf;

/// Bit number of [`XEN_DOMINF_dying`].
pub const _XEN_DOMINF_dying: u32 = 0;
/// Domain is scheduled to die.
pub const XEN_DOMINF_dying: u32 = 1 << _XEN_DOMINF_dying;
/// Bit number of [`XEN_DOMINF_hvm_guest`].
pub const _XEN_DOMINF_hvm_guest: u32 = 1;
/// Domain is an HVM guest (as opposed to a PV guest).
pub const XEN_DOMINF_hvm_guest: u32 = 1 << _XEN_DOMINF_hvm_guest;
/// Bit number of [`XEN_DOMINF_shutdown`].
pub const _XEN_DOMINF_shutdown: u32 = 2;
/// The guest OS has shut down (the code is in the `shutdownmask << shutdownshift` bits).
pub const XEN_DOMINF_shutdown: u32 = 1 << _XEN_DOMINF_shutdown;
/// Bit number of [`XEN_DOMINF_paused`].
pub const _XEN_DOMINF_paused: u32 = 3;
/// Currently paused by control software.
pub const XEN_DOMINF_paused: u32 = 1 << _XEN_DOMINF_paused;
/// Bit number of [`XEN_DOMINF_blocked`].
pub const _XEN_DOMINF_blocked: u32 = 4;
/// Currently blocked pending an event.
pub const XEN_DOMINF_blocked: u32 = 1 << _XEN_DOMINF_blocked;
/// Bit number of [`XEN_DOMINF_running`].
pub const _XEN_DOMINF_running: u32 = 5;
/// Domain is currently running.
pub const XEN_DOMINF_running: u32 = 1 << _XEN_DOMINF_running;
/// Bit number of [`XEN_DOMINF_debugged`].
pub const _XEN_DOMINF_debugged: u32 = 6;
/// Being debugged.
pub const XEN_DOMINF_debugged: u32 = 1 << _XEN_DOMINF_debugged;
/// Bit number of [`XEN_DOMINF_xs_domain`].
pub const _XEN_DOMINF_xs_domain: u32 = 7;
/// Domain is a xenstore domain.
pub const XEN_DOMINF_xs_domain: u32 = 1 << _XEN_DOMINF_xs_domain;
/// Bit number of [`XEN_DOMINF_hap`].
pub const _XEN_DOMINF_hap: u32 = 8;
/// Domain has hardware assisted paging.
pub const XEN_DOMINF_hap: u32 = 1 << _XEN_DOMINF_hap;
/// Mask of the guest-supplied shutdown code, after shifting by [`XEN_DOMINF_shutdownshift`].
pub const XEN_DOMINF_shutdownmask: u32 = 255;
/// Position of the shutdown code in `flags`.
pub const XEN_DOMINF_shutdownshift: u32 = 16;
/// `max_vcpu_id` of a domain without vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// The argument of `HYPERVISOR_domctl`: command, interface version, target domain and a 128-byte
/// union of the per-command structures.
#[doc(alias = "xen_domctl_t")]
#[doc(alias = "xen_domctl")]
// The C union holds 64-bit aligned members (`uint64_aligned_t`), so the whole is 8-aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// Must be [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The domain the command is about (IN/OUT for `getdomaininfo`).
    pub domain: DomId,
    /// Padding (C `_pad[3]`).
    pub _pad: [u16; 3],
    /// The command's structure (`union u`), e.g. a [`XenDomctlGetdomaininfo`] at offset 0.
    pub u: [u8; 128],
}
assert_layout!(XenDomctl, 144, { cmd: 0, interface_version: 4, domain: 8, _pad: 10, u: 16 });

impl Default for XenDomctl {
    fn default() -> Self {
        XenDomctl {
            cmd: 0,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain: 0,
            _pad: [0; 3],
            u: [0; 128],
        }
    }
}

/// `XEN_DOMCTL_getdomaininfo` (and each entry of `XEN_SYSCTL_getdomaininfolist`): what the
/// hypervisor reports about one domain. All fields are OUT.
#[doc(alias = "xen_domctl_getdomaininfo_t")]
#[doc(alias = "xen_domctl_getdomaininfo")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlGetdomaininfo {
    /// The domain described (also echoed in `xen_domctl.domain`).
    pub domain: DomId,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*`, with the shutdown code in bits 16.. (`XEN_DOMINF_shutdownshift`).
    pub flags: u32,
    /// Pages the domain holds.
    pub tot_pages: u64,
    /// Pages it may hold.
    pub max_pages: u64,
    /// Pages claimed but not yet allocated.
    pub outstanding_pages: u64,
    /// Pages shared with other domains (memory sharing).
    pub shr_pages: u64,
    /// Pages paged out (memory paging).
    pub paged_pages: u64,
    /// GMFN of its shared_info page (for a PV domain, the machine frame).
    pub shared_info_frame: u64,
    /// Nanoseconds its vCPUs have spent running.
    pub cpu_time: u64,
    /// Number of vCPUs currently online.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id in use ([`XEN_INVALID_MAX_VCPU_ID`] for none).
    pub max_vcpu_id: u32,
    /// XSM security reference.
    pub ssidref: u32,
    /// The domain's handle (UUID).
    pub handle: XenDomainHandle,
    /// Its CPU pool.
    pub cpupool: u32,
    /// Guest physical address space size, in bits.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// Architecture configuration (emulated devices).
    pub arch_config: XenArchDomainconfig,
}
assert_layout!(XenDomctlGetdomaininfo, 112, {
    domain: 0, pad1: 2, flags: 4, tot_pages: 8, max_pages: 16, outstanding_pages: 24,
    shr_pages: 32, paged_pages: 40, shared_info_frame: 48, cpu_time: 56, nr_online_vcpus: 64,
    max_vcpu_id: 68, ssidref: 72, handle: 76, cpupool: 92, gpaddr_bits: 96, pad2: 97,
    arch_config: 104,
});

/// `XEN_DOMCTL_createdomain`'s argument (all IN). A PV domain has `flags` 0 and no emulated
/// devices (`arch.emulation_flags` 0).
#[doc(alias = "xen_domctl_createdomain")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlCreatedomain {
    /// XSM security reference.
    pub ssidref: u32,
    /// The domain's handle (the toolstack's UUID).
    pub handle: XenDomainHandle,
    /// `XEN_DOMCTL_CDF_*` (0: a PV domain).
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    /// vCPUs the domain may have.
    pub max_vcpus: u32,
    /// Highest event-channel port it may use.
    pub max_evtchn_port: u32,
    /// Most grant-table frames (< 0: the hypervisor's default).
    pub max_grant_frames: i32,
    /// Most maptrack frames (< 0: the hypervisor's default).
    pub max_maptrack_frames: i32,
    /// Highest grant-table version allowed, in [`XEN_DOMCTL_GRANT_version_mask`] (Xen 4.17
    /// refuses 0).
    pub grant_opts: u32,
    /// Per-vCPU trace buffer bytes (0: none).
    pub vmtrace_size: u32,
    /// CPU pool (0: the default).
    pub cpupool_id: u32,
    /// Architecture configuration (emulated devices).
    pub arch: XenArchDomainconfig,
}
assert_layout!(XenDomctlCreatedomain, 64, {
    ssidref: 0, handle: 4, flags: 20, iommu_opts: 24, max_vcpus: 28, max_evtchn_port: 32,
    max_grant_frames: 36, max_maptrack_frames: 40, grant_opts: 44, vmtrace_size: 48,
    cpupool_id: 52, arch: 56,
});

/// `XEN_DOMCTL_max_mem`'s argument.
#[doc(alias = "xen_domctl_max_mem")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlMaxMem {
    /// The most memory the domain may hold, in KiB.
    pub max_memkb: u64,
}
assert_layout!(XenDomctlMaxMem, 8, { max_memkb: 0 });

/// `XEN_DOMCTL_max_vcpus`'s argument.
#[doc(alias = "xen_domctl_max_vcpus")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlMaxVcpus {
    /// How many vCPUs (as `max_vcpus` at creation).
    pub max: u32,
}
assert_layout!(XenDomctlMaxVcpus, 4, { max: 0 });

/// `XEN_DOMCTL_setvcpucontext`'s argument: which vCPU, and a guest handle to its
/// `vcpu_guest_context` ([`crate::arch_x86_64::VcpuGuestContext`]).
#[doc(alias = "xen_domctl_vcpucontext")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlVcpucontext {
    /// The vCPU.
    pub vcpu: u32,
    /// Padding (the handle is 64-bit aligned).
    pub _pad: u32,
    /// Guest address of the context (`XEN_GUEST_HANDLE_64`).
    pub ctxt: u64,
}
assert_layout!(XenDomctlVcpucontext, 16, { vcpu: 0, _pad: 4, ctxt: 8 });

/// The handle (`xen_domain_handle_t`) this project's hypervisor gives a boot-time domU. **Not
/// Xen's ABI**: Xen's toolstack puts the domain's UUID there (and a dom0less Xen leaves it zero).
/// Bytes: `b"xen-boot"`, then the domU's place among the boot-time domUs its boot modules ask
/// for (from 0; each copy of a `copies=` module counts, built or not) and how many they ask for,
/// both big-endian `u32`. It depends only on the boot modules' command lines, so it is the same
/// on every boot of one configuration, and a domU built again after a reboot (under a new id)
/// keeps it, as libxl keeps a rebooted domain's UUID. dom0's toolstack gives each domU the
/// part of its disk this place names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootHandle {
    /// Its place among the boot-time domUs (from 0).
    pub index: u32,
    /// How many boot-time domUs the modules ask for (more than `index`).
    pub count: u32,
}

impl BootHandle {
    /// The first 8 bytes of such a handle.
    pub const MAGIC: [u8; 8] = *b"xen-boot";

    /// The handle's bytes.
    pub fn to_handle(self) -> XenDomainHandle {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&Self::MAGIC);
        h[8..12].copy_from_slice(&self.index.to_be_bytes());
        h[12..].copy_from_slice(&self.count.to_be_bytes());
        h
    }

    /// The place a handle names, if it is such a handle (and `index < count`).
    pub fn from_handle(h: &XenDomainHandle) -> Option<BootHandle> {
        if h[..8] != Self::MAGIC {
            return None;
        }
        let word = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let b = BootHandle {
            index: word(8),
            count: word(12),
        };
        (b.index < b.count).then_some(b)
    }
}

#[cfg(test)]
mod boot_handle_tests {
    use super::BootHandle;

    #[test]
    fn a_boot_handle_reads_back_and_nothing_else_reads_as_one() {
        let b = BootHandle {
            index: 3,
            count: 64,
        };
        let h = b.to_handle();
        assert_eq!(&h[..8], b"xen-boot");
        assert_eq!(BootHandle::from_handle(&h), Some(b));
        assert_eq!(
            BootHandle::from_handle(&[0; 16]),
            None,
            "Xen's dom0less handle"
        );
        let mut other = h;
        other[0] ^= 1;
        assert_eq!(BootHandle::from_handle(&other), None);
        let past = BootHandle { index: 5, count: 5 }.to_handle();
        assert_eq!(
            BootHandle::from_handle(&past),
            None,
            "a place past the count"
        );
    }
}
