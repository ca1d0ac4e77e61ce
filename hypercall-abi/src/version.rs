//! `HYPERVISOR_xen_version` queries, mirroring `version.h` and the feature bits of `features.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`XENVER_version`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{assert_layout, zeroed_default};

/// Returns `major << 16 | minor`; no argument.
pub const XENVER_version: u32 = 0;
/// Fills a [`XenExtraversion`].
pub const XENVER_extraversion: u32 = 1;
/// Fills a [`XenCompileInfo`].
pub const XENVER_compile_info: u32 = 2;
/// Fills a [`XenCapabilitiesInfo`] (`"xen-3.0-x86_64 ..."`).
pub const XENVER_capabilities: u32 = 3;
/// Fills a [`XenChangesetInfo`].
pub const XENVER_changeset: u32 = 4;
/// Fills a [`XenPlatformParameters`].
pub const XENVER_platform_parameters: u32 = 5;
/// Fills a [`XenFeatureInfo`] for the requested `submap_idx`.
pub const XENVER_get_features: u32 = 6;
/// Returns the page size; no argument.
pub const XENVER_pagesize: u32 = 7;
/// Fills a `xen_domain_handle_t` (16 bytes) with the domain's handle.
pub const XENVER_guest_handle: u32 = 8;
/// Fills a [`XenCommandline`] (privileged).
pub const XENVER_commandline: u32 = 9;
/// Fills a [`XenBuildId`] followed by the build id bytes.
pub const XENVER_build_id: u32 = 10;

/// `xen_extraversion_t`: the version suffix (`".0"`), NUL-padded.
#[doc(alias = "xen_extraversion_t")]
pub type XenExtraversion = [u8; 16];
/// `sizeof(xen_extraversion_t)`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `xen_capabilities_info_t`: space-separated ABI names.
#[doc(alias = "xen_capabilities_info_t")]
pub type XenCapabilitiesInfo = [u8; 1024];
/// `sizeof(xen_capabilities_info_t)`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `xen_changeset_info_t`: source changeset description.
#[doc(alias = "xen_changeset_info_t")]
pub type XenChangesetInfo = [u8; 64];
/// `sizeof(xen_changeset_info_t)`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `xen_commandline_t`: the hypervisor's command line.
#[doc(alias = "xen_commandline_t")]
pub type XenCommandline = [u8; 1024];
/// `xen_domain_handle_t`: a domain's 16-byte handle (UUID).
#[doc(alias = "xen_domain_handle_t")]
pub type XenDomainHandle = [u8; 16];

/// Build information for `XENVER_compile_info`.
#[doc(alias = "xen_compile_info_t")]
#[doc(alias = "xen_compile_info")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenCompileInfo {
    /// Compiler identification.
    pub compiler: [u8; 64],
    /// User who built Xen.
    pub compile_by: [u8; 16],
    /// Build host domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}
assert_layout!(XenCompileInfo, 144, {
    compiler: 0, compile_by: 64, compile_domain: 80, compile_date: 112,
});
zeroed_default!(XenCompileInfo);

/// Result of `XENVER_platform_parameters`.
#[doc(alias = "xen_platform_parameters_t")]
#[doc(alias = "xen_platform_parameters")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParameters {
    /// Lowest hypervisor virtual address; the M2P table is readable from here.
    pub virt_start: u64,
}
assert_layout!(XenPlatformParameters, 8, { virt_start: 0 });

/// Argument of `XENVER_get_features`.
#[doc(alias = "xen_feature_info_t")]
#[doc(alias = "xen_feature_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap to return.
    pub submap_idx: u32,
    /// OUT: bit n = feature `32 * submap_idx + n` (`XENFEAT_*`).
    pub submap: u32,
}
assert_layout!(XenFeatureInfo, 8, { submap_idx: 0, submap: 4 });

/// Header of `XENVER_build_id`; `len` bytes of build id follow (C flexible array `buf[]`).
#[doc(alias = "xen_build_id_t")]
#[doc(alias = "xen_build_id")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenBuildId {
    /// IN: buffer size; OUT: build id length.
    pub len: u32,
}
assert_layout!(XenBuildId, 4, { len: 0 });

// --- Feature bits (features.h). ---

/// Page tables may be written directly (no mmu_update needed).
pub const XENFEAT_writable_page_tables: u32 = 0;
/// Descriptor tables may be written directly.
pub const XENFEAT_writable_descriptor_tables: u32 = 1;
/// Physical addresses are translated by Xen (HVM/PVH, not classic PV).
pub const XENFEAT_auto_translated_physmap: u32 = 2;
/// The kernel runs in ring 0 (obsolete).
pub const XENFEAT_supervisor_mode_kernel: u32 = 3;
/// PAE page directories may live above 4 GiB.
pub const XENFEAT_pae_pgdir_above_4gb: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is available.
pub const XENFEAT_mmu_pt_update_preserve_ad: u32 = 5;
/// Highmem assist is available (x86/32).
pub const XENFEAT_highmem_assist: u32 = 6;
/// Grant maps preserve the PTE's available bits.
pub const XENFEAT_gnttab_map_avail_bits: u32 = 7;
/// HVM: event callback via an interrupt vector.
pub const XENFEAT_hvm_callback_vector: u32 = 8;
/// HVM: pvclock is safe to use.
pub const XENFEAT_hvm_safe_pvclock: u32 = 9;
/// HVM: PIRQs are delivered as event channels.
pub const XENFEAT_hvm_pirqs: u32 = 10;
/// The domain is dom0 (the hardware domain).
pub const XENFEAT_dom0: u32 = 11;
/// `XENMEM_get_vnumainfo` is supported.
pub const XENFEAT_memory_op_vnode_supported: u32 = 13;
/// Arm SMCCC is supported.
pub const XENFEAT_ARM_SMCCC_supported: u32 = 14;
/// The RSDP may be placed anywhere (PVH Linux).
pub const XENFEAT_linux_rsdp_unrestricted: u32 = 15;
/// The domain is not direct-mapped (Arm).
pub const XENFEAT_not_direct_mapped: u32 = 16;
/// The domain is direct-mapped (Arm).
pub const XENFEAT_direct_mapped: u32 = 17;
/// Number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// An argument buffer of `HYPERVISOR_xen_version`, paired with the one command that fills it
/// (`version.h`). The character-array commands get `#[repr(transparent)]` wrappers named after the
/// command, since several share an array type.
pub trait XenVersionArg {
    /// The `XENVER_*` command whose argument this is.
    const CMD: u32;
}

/// The buffer of `XENVER_extraversion`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extraversion(pub XenExtraversion);

/// The buffer of `XENVER_capabilities`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(pub XenCapabilitiesInfo);

/// The buffer of `XENVER_changeset`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changeset(pub XenChangesetInfo);

/// The buffer of `XENVER_commandline`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commandline(pub XenCommandline);

/// The buffer of `XENVER_guest_handle`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestHandle(pub XenDomainHandle);

crate::sub_ops!(XenVersionArg:
    Extraversion => XENVER_extraversion,
    XenCompileInfo => XENVER_compile_info,
    Capabilities => XENVER_capabilities,
    Changeset => XENVER_changeset,
    XenPlatformParameters => XENVER_platform_parameters,
    XenFeatureInfo => XENVER_get_features,
    GuestHandle => XENVER_guest_handle,
    Commandline => XENVER_commandline,
);

/// The `xen_version` commands that take no argument and return a value.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenVersionNoArg {
    /// `XENVER_version`: `major << 16 | minor`.
    Version = XENVER_version,
    /// `XENVER_pagesize`.
    Pagesize = XENVER_pagesize,
}
