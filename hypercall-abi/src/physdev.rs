//! Physical device operations for `HYPERVISOR_physdev_op` (basics), mirroring `physdev.h`.
//!
//! Only the operations a PV guest without passthrough uses are mirrored as structs (IOPL, I/O
//! bitmap, IRQ status and EOI); all sub-operation numbers are listed so that a hypervisor can
//! reject them by name.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`PHYSDEVOP_set_iopl`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::XenPfn;

/// Obsolete: notify end of interrupt (pre-`eoi`).
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
/// Query an IRQ's status; [`PhysdevIrqStatusQuery`].
pub const PHYSDEVOP_irq_status_query: u32 = 5;
/// Set the I/O privilege level; [`PhysdevSetIopl`].
pub const PHYSDEVOP_set_iopl: u32 = 6;
/// Set the I/O port bitmap; [`PhysdevSetIobitmap`].
pub const PHYSDEVOP_set_iobitmap: u32 = 7;
/// Read an IO-APIC register (dom0).
pub const PHYSDEVOP_apic_read: u32 = 8;
/// Write an IO-APIC register (dom0).
pub const PHYSDEVOP_apic_write: u32 = 9;
/// Allocate an IRQ vector (dom0).
pub const PHYSDEVOP_alloc_irq_vector: u32 = 10;
/// Free an IRQ vector (dom0).
pub const PHYSDEVOP_free_irq_vector: u32 = 11;
/// End of interrupt for a PIRQ; [`PhysdevEoi`].
pub const PHYSDEVOP_eoi: u32 = 12;
/// Map a PIRQ.
pub const PHYSDEVOP_map_pirq: u32 = 13;
/// Unmap a PIRQ.
pub const PHYSDEVOP_unmap_pirq: u32 = 14;
/// Add a PCI device.
pub const PHYSDEVOP_manage_pci_add: u32 = 15;
/// Remove a PCI device.
pub const PHYSDEVOP_manage_pci_remove: u32 = 16;
/// Register the PIRQ EOI bitmap frame (v1 semantics); [`PhysdevPirqEoiGmfn`].
pub const PHYSDEVOP_pirq_eoi_gmfn_v1: u32 = 17;
/// Restore MSI state.
pub const PHYSDEVOP_restore_msi: u32 = 19;
/// Add a PCI device (extended).
pub const PHYSDEVOP_manage_pci_add_ext: u32 = 20;
/// Set up a GSI.
pub const PHYSDEVOP_setup_gsi: u32 = 21;
/// Get a free PIRQ.
pub const PHYSDEVOP_get_free_pirq: u32 = 23;
/// Report an MMCFG region.
pub const PHYSDEVOP_pci_mmcfg_reserved: u32 = 24;
/// Add a PCI device (segment-aware).
pub const PHYSDEVOP_pci_device_add: u32 = 25;
/// Remove a PCI device (segment-aware).
pub const PHYSDEVOP_pci_device_remove: u32 = 26;
/// Restore MSI state (segment-aware).
pub const PHYSDEVOP_restore_msi_ext: u32 = 27;
/// Register the PIRQ EOI bitmap frame (v2 semantics); [`PhysdevPirqEoiGmfn`].
pub const PHYSDEVOP_pirq_eoi_gmfn_v2: u32 = 28;
/// Debug port operation.
pub const PHYSDEVOP_dbgp_op: u32 = 29;
/// Prepare MSI-X.
pub const PHYSDEVOP_prepare_msix: u32 = 30;
/// Release MSI-X.
pub const PHYSDEVOP_release_msix: u32 = 31;
/// The current name of the EOI bitmap operation (v2).
pub const PHYSDEVOP_pirq_eoi_gmfn: u32 = PHYSDEVOP_pirq_eoi_gmfn_v2;

/// Bit number of [`XENIRQSTAT_needs_eoi`].
pub const _XENIRQSTAT_needs_eoi: u32 = 0;
/// The IRQ needs `PHYSDEVOP_eoi`.
pub const XENIRQSTAT_needs_eoi: u32 = 1 << _XENIRQSTAT_needs_eoi;
/// Bit number of [`XENIRQSTAT_shared`].
pub const _XENIRQSTAT_shared: u32 = 1;
/// The IRQ is shared with other domains.
pub const XENIRQSTAT_shared: u32 = 1 << _XENIRQSTAT_shared;

/// `PHYSDEVOP_eoi`.
#[doc(alias = "physdev_eoi_t")]
#[doc(alias = "physdev_eoi")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevEoi {
    /// IN: PIRQ.
    pub irq: u32,
}
assert_layout!(PhysdevEoi, 4, { irq: 0 });

/// `PHYSDEVOP_pirq_eoi_gmfn_v1` / `_v2`.
#[doc(alias = "physdev_pirq_eoi_gmfn_t")]
#[doc(alias = "physdev_pirq_eoi_gmfn")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPirqEoiGmfn {
    /// IN: frame holding the EOI bitmap.
    pub gmfn: XenPfn,
}
assert_layout!(PhysdevPirqEoiGmfn, 8, { gmfn: 0 });

/// `PHYSDEVOP_irq_status_query`.
#[doc(alias = "physdev_irq_status_query_t")]
#[doc(alias = "physdev_irq_status_query")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrqStatusQuery {
    /// IN: PIRQ.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}
assert_layout!(PhysdevIrqStatusQuery, 8, { irq: 0, flags: 4 });

/// `PHYSDEVOP_manage_pci_add` / `PHYSDEVOP_manage_pci_remove`: a PCI function on segment 0
/// that dom0 reports to the hypervisor (Xen's `pci_add_device`), so that it knows the device
/// before dom0 drives it.
#[doc(alias = "physdev_manage_pci_t")]
#[doc(alias = "physdev_manage_pci")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevManagePci {
    /// IN: bus number.
    pub bus: u8,
    /// IN: device << 3 | function.
    pub devfn: u8,
}
assert_layout!(PhysdevManagePci, 2, { bus: 0, devfn: 1 });

/// `PHYSDEVOP_set_iopl`.
#[doc(alias = "physdev_set_iopl_t")]
#[doc(alias = "physdev_set_iopl")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIopl {
    /// IN: I/O privilege level, 0-3.
    pub iopl: u32,
}
assert_layout!(PhysdevSetIopl, 4, { iopl: 0 });

/// `PHYSDEVOP_set_iobitmap`.
#[doc(alias = "physdev_set_iobitmap_t")]
#[doc(alias = "physdev_set_iobitmap")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIobitmap {
    /// IN: guest handle of the bitmap (bit set = port denied, as in the TSS).
    pub bitmap: u64,
    /// IN: number of ports the bitmap covers.
    pub nr_ports: u32,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 4],
}
assert_layout!(PhysdevSetIobitmap, 16, { bitmap: 0, nr_ports: 8, _pad0: 12 });

/// `PHYSDEVOP_map_pirq` type: an MSI.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
/// `PHYSDEVOP_map_pirq` type: a GSI (an I/O APIC input); `index` is the GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
/// `PHYSDEVOP_map_pirq` type: unknown.
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
/// `PHYSDEVOP_map_pirq` type: an MSI with a PCI segment.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
/// `PHYSDEVOP_map_pirq` type: multiple MSI vectors.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// `PHYSDEVOP_map_pirq`.
#[doc(alias = "physdev_map_pirq_t")]
#[doc(alias = "physdev_map_pirq")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirq {
    /// IN: the domain (`DOMID_SELF`).
    pub domid: u16,
    /// Implicit C padding after `domid`.
    pub _pad0: [u8; 2],
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub r#type: i32,
    /// IN: the GSI for [`MAP_PIRQ_TYPE_GSI`].
    pub index: i32,
    /// IN or OUT: the PIRQ (negative in: any free one).
    pub pirq: i32,
    /// IN: PCI bus (MSI).
    pub bus: i32,
    /// IN: PCI devfn (MSI).
    pub devfn: i32,
    /// IN: MSI-X entry number.
    pub entry_nr: i32,
    /// Implicit C padding before `table_base`.
    pub _pad1: [u8; 4],
    /// IN: MSI-X table base.
    pub table_base: u64,
}
assert_layout!(PhysdevMapPirq, 40, { domid: 0, _pad0: 2, r#type: 4, index: 8, pirq: 12, bus: 16, devfn: 20, entry_nr: 24, _pad1: 28, table_base: 32 });

/// `PHYSDEVOP_unmap_pirq`.
#[doc(alias = "physdev_unmap_pirq_t")]
#[doc(alias = "physdev_unmap_pirq")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevUnmapPirq {
    /// IN: the domain (`DOMID_SELF`).
    pub domid: u16,
    /// Implicit C padding after `domid`.
    pub _pad0: [u8; 2],
    /// IN: the PIRQ.
    pub pirq: i32,
}
assert_layout!(PhysdevUnmapPirq, 8, { domid: 0, _pad0: 2, pirq: 4 });

/// An argument of `HYPERVISOR_physdev_op`, paired with the one command that takes it
/// (`physdev.h`: the struct declared after each `#define`).
pub trait PhysdevOpArg {
    /// The `PHYSDEVOP_*` command whose argument this is.
    const CMD: u32;
}
crate::sub_ops!(PhysdevOpArg:
    PhysdevEoi => PHYSDEVOP_eoi,
    PhysdevPirqEoiGmfn => PHYSDEVOP_pirq_eoi_gmfn_v2,
    PhysdevIrqStatusQuery => PHYSDEVOP_irq_status_query,
    PhysdevSetIopl => PHYSDEVOP_set_iopl,
    PhysdevSetIobitmap => PHYSDEVOP_set_iobitmap,
    PhysdevMapPirq => PHYSDEVOP_map_pirq,
    PhysdevUnmapPirq => PHYSDEVOP_unmap_pirq,
    // `PHYSDEVOP_manage_pci_remove` shares the structure; only `add` is paired.
    PhysdevManagePci => PHYSDEVOP_manage_pci_add,
);
