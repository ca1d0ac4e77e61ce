//! Memory reservation and physmap operations for `HYPERVISOR_memory_op`, mirroring `memory.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`XENMEM_memory_map`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::{DomId, XenPfn};

/// Allocate extents to a domain; [`XenMemoryReservation`].
pub const XENMEM_increase_reservation: u32 = 0;
/// Release extents; [`XenMemoryReservation`].
pub const XENMEM_decrease_reservation: u32 = 1;
/// Returns the highest machine frame number; no argument (`xen_pfn_t` out on older Xen).
pub const XENMEM_maximum_ram_page: u32 = 2;
/// Returns a domain's current page count; argument `domid_t`.
pub const XENMEM_current_reservation: u32 = 3;
/// Returns a domain's maximum page count; argument `domid_t`.
pub const XENMEM_maximum_reservation: u32 = 4;
/// Lists the frames holding the M2P table; [`XenMachphysMfnList`].
pub const XENMEM_machphys_mfn_list: u32 = 5;
/// Populate guest-physical frames; [`XenMemoryReservation`].
pub const XENMEM_populate_physmap: u32 = 6;
/// Map a Xen-owned frame (shared info, grant table) into the physmap; [`XenAddToPhysmap`].
pub const XENMEM_add_to_physmap: u32 = 7;
/// Returns the guest's pseudo-physical E820 map; [`XenMemoryMap`].
pub const XENMEM_memory_map: u32 = 9;
/// Returns the machine E820 map (privileged); [`XenMemoryMap`].
pub const XENMEM_machine_memory_map: u32 = 10;
/// Exchange extents; [`XenMemoryExchange`].
pub const XENMEM_exchange: u32 = 11;
/// Returns where the M2P table is mapped; [`XenMachphysMapping`].
pub const XENMEM_machphys_mapping: u32 = 12;
/// Set a domain's pseudo-physical E820 map (toolstack); [`XenForeignMemoryMap`].
pub const XENMEM_set_memory_map: u32 = 13;
/// Returns the highest guest frame number; argument `domid_t`.
pub const XENMEM_maximum_gpfn: u32 = 14;
/// Remove a frame from the physmap; [`XenRemoveFromPhysmap`].
pub const XENMEM_remove_from_physmap: u32 = 15;
/// Set the populate-on-demand target; [`XenPodTarget`].
pub const XENMEM_set_pod_target: u32 = 16;
/// Get the populate-on-demand target; [`XenPodTarget`].
pub const XENMEM_get_pod_target: u32 = 17;
/// Batched `add_to_physmap`; [`XenAddToPhysmapBatch`].
pub const XENMEM_add_to_physmap_batch: u32 = 23;
/// 32-bit compat M2P frame list; [`XenMachphysMfnList`].
pub const XENMEM_machphys_compat_mfn_list: u32 = 25;
/// vNUMA topology; [`XenVnumaTopologyInfo`].
pub const XENMEM_get_vnumainfo: u32 = 26;
/// Map resource frames (ioreq server, grant table); [`XenMemAcquireResource`].
pub const XENMEM_acquire_resource: u32 = 28;

/// `mem_flags`: only memory below 4 GiB etc. is wanted (`XENMEMF_address_bits(x)` is `x`).
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits
}
/// `XENMEMF_node(x)`: allocate on NUMA node `x`.
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
/// Populate-on-demand allocation.
pub const XENMEMF_populate_on_demand: u32 = 1 << 16;
/// The node request must be honoured exactly.
pub const XENMEMF_exact_node_request: u32 = 1 << 17;
/// The node is a virtual node.
pub const XENMEMF_vnode: u32 = 1 << 18;

/// `XENMAPSPACE_*`: the shared-info page.
pub const XENMAPSPACE_shared_info: u32 = 0;
/// A grant-table frame (`idx` = frame number, `| XENMAPIDX_grant_table_status` for status).
pub const XENMAPSPACE_grant_table: u32 = 1;
/// A guest frame (moves it).
pub const XENMAPSPACE_gmfn: u32 = 2;
/// A range of guest frames.
pub const XENMAPSPACE_gmfn_range: u32 = 3;
/// A foreign domain's frame.
pub const XENMAPSPACE_gmfn_foreign: u32 = 4;
/// Device MMIO (Arm only).
pub const XENMAPSPACE_dev_mmio: u32 = 5;
/// `idx` flag: map a grant-table status frame.
pub const XENMAPIDX_grant_table_status: u32 = 0x8000_0000;

/// `xen_mem_acquire_resource.type`: an ioreq server's pages.
pub const XENMEM_resource_ioreq_server: u16 = 0;
/// The grant table.
pub const XENMEM_resource_grant_table: u16 = 1;
/// A vmtrace buffer.
pub const XENMEM_resource_vmtrace_buf: u16 = 2;
/// Grant table id: shared frames.
pub const XENMEM_resource_grant_table_id_shared: u32 = 0;
/// Grant table id: status frames.
pub const XENMEM_resource_grant_table_id_status: u32 = 1;
/// Ioreq server frame: buffered ioreq page.
pub const XENMEM_resource_ioreq_server_frame_bufioreq: u64 = 0;

/// Argument of increase/decrease_reservation and populate_physmap.
#[doc(alias = "xen_memory_reservation_t")]
#[doc(alias = "xen_memory_reservation")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservation {
    /// Guest handle of a `xen_pfn_t` array (IN: GPFNs or MFNs, OUT: MFNs).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// log2 of the pages per extent.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// Target domain.
    pub domid: DomId,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 6],
}
assert_layout!(XenMemoryReservation, 32, {
    extent_start: 0, nr_extents: 8, extent_order: 16, mem_flags: 20, domid: 24, _pad0: 26,
});

/// Argument of `XENMEM_exchange`.
#[doc(alias = "xen_memory_exchange_t")]
#[doc(alias = "xen_memory_exchange")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryExchange {
    /// Extents given up.
    pub r#in: XenMemoryReservation,
    /// Extents received.
    pub out: XenMemoryReservation,
    /// OUT: extents exchanged so far.
    pub nr_exchanged: u64,
}
assert_layout!(XenMemoryExchange, 72, { r#in: 0, out: 32, nr_exchanged: 64 });

/// Argument of the reservation queries (a bare `domid_t` on the wire).
#[doc(alias = "xen_memory_domain")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryDomain {
    /// Domain queried.
    pub domid: DomId,
}
assert_layout!(XenMemoryDomain, 2, { domid: 0 });

/// Argument of `XENMEM_machphys_mfn_list`.
#[doc(alias = "xen_machphys_mfn_list_t")]
#[doc(alias = "xen_machphys_mfn_list")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMfnList {
    /// IN: size of the array.
    pub max_extents: u32,
    /// Implicit C padding before `extent_start`.
    pub _pad0: [u8; 4],
    /// Guest handle of a `xen_pfn_t` array receiving the M2P frames (2 MiB extents).
    pub extent_start: u64,
    /// OUT: entries written.
    pub nr_extents: u32,
    /// Implicit C padding at the end.
    pub _pad1: [u8; 4],
}
assert_layout!(XenMachphysMfnList, 24, {
    max_extents: 0, _pad0: 4, extent_start: 8, nr_extents: 16, _pad1: 20,
});

/// Result of `XENMEM_machphys_mapping`.
#[doc(alias = "xen_machphys_mapping_t")]
#[doc(alias = "xen_machphys_mapping")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMapping {
    /// Start of the M2P mapping.
    pub v_start: u64,
    /// End of the M2P mapping.
    pub v_end: u64,
    /// Highest MFN the mapping covers.
    pub max_mfn: u64,
}
assert_layout!(XenMachphysMapping, 24, { v_start: 0, v_end: 8, max_mfn: 16 });

/// Argument of `XENMEM_add_to_physmap`.
#[doc(alias = "xen_add_to_physmap_t")]
#[doc(alias = "xen_add_to_physmap")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Number of frames for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame at which to map it.
    pub gpfn: XenPfn,
}
assert_layout!(XenAddToPhysmap, 24, { domid: 0, size: 2, space: 4, idx: 8, gpfn: 16 });

/// Argument of `XENMEM_add_to_physmap_batch`.
#[doc(alias = "xen_add_to_physmap_batch_t")]
#[doc(alias = "xen_add_to_physmap_batch")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmapBatch {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// `XENMAPSPACE_*`.
    pub space: u16,
    /// Number of entries.
    pub size: u16,
    /// Union `{ domid_t foreign_domid; uint16_t res0; }`.
    pub u: u16,
    /// Guest handle of the `xen_ulong_t` indexes.
    pub idxs: u64,
    /// Guest handle of the `xen_pfn_t` destinations.
    pub gpfns: u64,
    /// Guest handle of the `int` per-entry errors.
    pub errs: u64,
}
assert_layout!(XenAddToPhysmapBatch, 32, {
    domid: 0, space: 2, size: 4, u: 6, idxs: 8, gpfns: 16, errs: 24,
});

/// Argument of `XENMEM_remove_from_physmap`.
#[doc(alias = "xen_remove_from_physmap_t")]
#[doc(alias = "xen_remove_from_physmap")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Implicit C padding before `gpfn`.
    pub _pad0: [u8; 6],
    /// Guest frame to unmap.
    pub gpfn: XenPfn,
}
assert_layout!(XenRemoveFromPhysmap, 16, { domid: 0, _pad0: 2, gpfn: 8 });

/// Argument of `XENMEM_memory_map` / `XENMEM_machine_memory_map`: a buffer of E820 entries.
#[doc(alias = "xen_memory_map_t")]
#[doc(alias = "xen_memory_map")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMap {
    /// IN: buffer capacity in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Implicit C padding before `buffer`.
    pub _pad0: [u8; 4],
    /// Guest handle of an array of 20-byte E820 entries.
    pub buffer: u64,
}
assert_layout!(XenMemoryMap, 16, { nr_entries: 0, _pad0: 4, buffer: 8 });

/// Argument of `XENMEM_set_memory_map`.
#[doc(alias = "xen_foreign_memory_map_t")]
#[doc(alias = "xen_foreign_memory_map")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMap {
    /// Target domain.
    pub domid: DomId,
    /// Implicit C padding before `map`.
    pub _pad0: [u8; 6],
    /// The map.
    pub map: XenMemoryMap,
}
assert_layout!(XenForeignMemoryMap, 24, { domid: 0, _pad0: 2, map: 8 });

/// Argument of `XENMEM_set_pod_target` / `XENMEM_get_pod_target`.
#[doc(alias = "xen_pod_target_t")]
#[doc(alias = "xen_pod_target")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPodTarget {
    /// IN: target pages.
    pub target_pages: u64,
    /// OUT: total pages.
    pub tot_pages: u64,
    /// OUT: PoD cache pages.
    pub pod_cache_pages: u64,
    /// OUT: PoD entries.
    pub pod_entries: u64,
    /// IN: domain.
    pub domid: DomId,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 6],
}
assert_layout!(XenPodTarget, 40, {
    target_pages: 0, tot_pages: 8, pod_cache_pages: 16, pod_entries: 24, domid: 32, _pad0: 34,
});

/// Argument of `XENMEM_acquire_resource`.
#[doc(alias = "xen_mem_acquire_resource_t")]
#[doc(alias = "xen_mem_acquire_resource")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemAcquireResource {
    /// Domain owning the resource.
    pub domid: DomId,
    /// `XENMEM_resource_*`.
    pub r#type: u16,
    /// Resource id (e.g. `XENMEM_resource_grant_table_id_*`).
    pub id: u32,
    /// IN/OUT: number of frames.
    pub nr_frames: u32,
    /// Padding (named in C).
    pub pad: u32,
    /// First frame index.
    pub frame: u64,
    /// Guest handle of the `xen_pfn_t` list.
    pub frame_list: u64,
}
assert_layout!(XenMemAcquireResource, 32, {
    domid: 0, r#type: 2, id: 4, nr_frames: 8, pad: 12, frame: 16, frame_list: 24,
});

/// One vNUMA memory range.
#[doc(alias = "xen_vmemrange_t")]
#[doc(alias = "xen_vmemrange")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVmemrange {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// Flags.
    pub flags: u32,
    /// Virtual node.
    pub nid: u32,
}
assert_layout!(XenVmemrange, 24, { start: 0, end: 8, flags: 16, nid: 20 });

/// Argument of `XENMEM_get_vnumainfo`; the three unions are guest handles padded to 64 bits.
#[doc(alias = "xen_vnuma_topology_info_t")]
#[doc(alias = "xen_vnuma_topology_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVnumaTopologyInfo {
    /// Domain.
    pub domid: DomId,
    /// Padding (named in C).
    pub pad: u16,
    /// IN/OUT: virtual nodes.
    pub nr_vnodes: u32,
    /// IN/OUT: vCPUs.
    pub nr_vcpus: u32,
    /// IN/OUT: memory ranges.
    pub nr_vmemranges: u32,
    /// Guest handle of the distance table.
    pub vdistance: u64,
    /// Guest handle of the vCPU-to-node table.
    pub vcpu_to_vnode: u64,
    /// Guest handle of the [`XenVmemrange`] array.
    pub vmemrange: u64,
}
assert_layout!(XenVnumaTopologyInfo, 40, {
    domid: 0, pad: 2, nr_vnodes: 4, nr_vcpus: 8, nr_vmemranges: 12, vdistance: 16,
    vcpu_to_vnode: 24, vmemrange: 32,
});

/// An argument of `HYPERVISOR_memory_op`, paired with the one command that takes it (`memory.h`:
/// the struct declared after each `#define`). Commands sharing a structure get a
/// `#[repr(transparent)]` wrapper named after the command; those not listed go through the guest's
/// raw escape hatch.
pub trait MemoryOpArg {
    /// The `XENMEM_*` command whose argument this is.
    const CMD: u32;
}

/// The argument of `XENMEM_current_reservation`: a [`XenMemoryDomain`] (`arg == addr of struct xen_memory_domain`).
#[doc(alias = "XENMEM_current_reservation")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CurrentReservation(pub XenMemoryDomain);

/// The argument of `XENMEM_maximum_reservation`: a [`XenMemoryDomain`] (`arg == addr of struct xen_memory_domain`).
#[doc(alias = "XENMEM_maximum_reservation")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaximumReservation(pub XenMemoryDomain);

/// The argument of `XENMEM_maximum_gpfn`: a [`XenMemoryDomain`] (`arg == addr of struct xen_memory_domain`).
#[doc(alias = "XENMEM_maximum_gpfn")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaximumGpfn(pub XenMemoryDomain);

/// The argument of `XENMEM_machine_memory_map`: a [`XenMemoryMap`], as for `XENMEM_memory_map`.
#[doc(alias = "XENMEM_machine_memory_map")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineMemoryMap(pub XenMemoryMap);

/// The argument of `XENMEM_increase_reservation`: a [`XenMemoryReservation`].
#[doc(alias = "XENMEM_increase_reservation")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IncreaseReservation(pub XenMemoryReservation);

/// The argument of `XENMEM_decrease_reservation`: a [`XenMemoryReservation`].
#[doc(alias = "XENMEM_decrease_reservation")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecreaseReservation(pub XenMemoryReservation);

/// The argument of `XENMEM_populate_physmap`: a [`XenMemoryReservation`].
#[doc(alias = "XENMEM_populate_physmap")]
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PopulatePhysmap(pub XenMemoryReservation);

crate::sub_ops!(MemoryOpArg:
    IncreaseReservation => XENMEM_increase_reservation,
    DecreaseReservation => XENMEM_decrease_reservation,
    PopulatePhysmap => XENMEM_populate_physmap,
    CurrentReservation => XENMEM_current_reservation,
    MaximumReservation => XENMEM_maximum_reservation,
    MaximumGpfn => XENMEM_maximum_gpfn,
    XenMemoryMap => XENMEM_memory_map,
    MachineMemoryMap => XENMEM_machine_memory_map,
    XenForeignMemoryMap => XENMEM_set_memory_map,
    XenMemoryExchange => XENMEM_exchange,
    XenMachphysMfnList => XENMEM_machphys_mfn_list,
    XenMachphysMapping => XENMEM_machphys_mapping,
    XenAddToPhysmap => XENMEM_add_to_physmap,
    XenAddToPhysmapBatch => XENMEM_add_to_physmap_batch,
    XenRemoveFromPhysmap => XENMEM_remove_from_physmap,
    XenMemAcquireResource => XENMEM_acquire_resource,
    XenVnumaTopologyInfo => XENMEM_get_vnumainfo,
);

/// The `memory_op` commands that take no argument.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryNoArg {
    /// `XENMEM_maximum_ram_page`: returns the highest machine frame.
    MaximumRamPage = XENMEM_maximum_ram_page,
}
