//! Grant tables for `HYPERVISOR_grant_table_op`, mirroring `grant_table.h`.
//!
//! A domain grants a peer access to one of its frames by filling a [`GrantEntryV1`] in its own
//! grant table; the peer maps or copies it by grant reference. Entries 0..7 are reserved
//! (`GNTTAB_RESERVED_CONSOLE`, `GNTTAB_RESERVED_XENSTORE`).
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`GNTTABOP_map_grant_ref`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::{DomId, XenPfn};

/// `grant_ref_t`: an index into a grant table.
#[doc(alias = "grant_ref_t")]
pub type GrantRef = u32;
/// `grant_handle_t`: a handle for a mapped grant.
#[doc(alias = "grant_handle_t")]
pub type GrantHandle = u32;
/// `grant_status_t`: one v2 status entry.
#[doc(alias = "grant_status_t")]
pub type GrantStatus = u16;

/// Entries reserved for the toolstack at the start of every grant table.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry granting the console ring to dom0.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry granting the xenstore ring to the store domain.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

// --- grant_entry.flags. ---

/// Entry unused.
pub const GTF_invalid: u16 = 0;
/// The peer `domid` may map/copy `frame`.
pub const GTF_permit_access: u16 = 1;
/// The peer may transfer a frame into `frame`.
pub const GTF_accept_transfer: u16 = 2;
/// Transitive grant (v2 only).
pub const GTF_transitive: u16 = 3;
/// Mask of the entry type.
pub const GTF_type_mask: u16 = 3;
/// Bit number of [`GTF_readonly`].
pub const _GTF_readonly: u16 = 2;
/// Restrict the peer to read-only access.
pub const GTF_readonly: u16 = 1 << _GTF_readonly;
/// Bit number of [`GTF_reading`].
pub const _GTF_reading: u16 = 3;
/// Set by Xen while the peer has the frame mapped or is copying from it.
pub const GTF_reading: u16 = 1 << _GTF_reading;
/// Bit number of [`GTF_writing`].
pub const _GTF_writing: u16 = 4;
/// Set by Xen while the peer has the frame mapped writable or is copying to it.
pub const GTF_writing: u16 = 1 << _GTF_writing;
/// Bit number of [`GTF_PWT`].
pub const _GTF_PWT: u16 = 5;
/// Cache attribute: write-through.
pub const GTF_PWT: u16 = 1 << _GTF_PWT;
/// Bit number of [`GTF_PCD`].
pub const _GTF_PCD: u16 = 6;
/// Cache attribute: cache disable.
pub const GTF_PCD: u16 = 1 << _GTF_PCD;
/// Bit number of [`GTF_PAT`].
pub const _GTF_PAT: u16 = 7;
/// Cache attribute: PAT.
pub const GTF_PAT: u16 = 1 << _GTF_PAT;
/// Bit number of [`GTF_sub_page`].
pub const _GTF_sub_page: u16 = 8;
/// v2 sub-page grant.
pub const GTF_sub_page: u16 = 1 << _GTF_sub_page;
/// Bit number of [`GTF_transfer_committed`].
pub const _GTF_transfer_committed: u16 = 2;
/// Transfer: Xen committed to the transfer.
pub const GTF_transfer_committed: u16 = 1 << _GTF_transfer_committed;
/// Bit number of [`GTF_transfer_completed`].
pub const _GTF_transfer_completed: u16 = 3;
/// Transfer: `frame` holds the transferred MFN.
pub const GTF_transfer_completed: u16 = 1 << _GTF_transfer_completed;

// --- Sub-operations. ---

/// Map grants; array of [`GnttabMapGrantRef`].
pub const GNTTABOP_map_grant_ref: u32 = 0;
/// Unmap grants; array of [`GnttabUnmapGrantRef`].
pub const GNTTABOP_unmap_grant_ref: u32 = 1;
/// Get the frames of the caller's grant table (count must be 1); [`GnttabSetupTable`].
pub const GNTTABOP_setup_table: u32 = 2;
/// Dump a grant table to the Xen console; [`GnttabDumpTable`].
pub const GNTTABOP_dump_table: u32 = 3;
/// Transfer frames; array of [`GnttabTransfer`].
pub const GNTTABOP_transfer: u32 = 4;
/// Copy between grants/frames; array of [`GnttabCopy`].
pub const GNTTABOP_copy: u32 = 5;
/// Query grant table size (count must be 1); [`GnttabQuerySize`].
pub const GNTTABOP_query_size: u32 = 6;
/// Unmap and replace with another mapping; array of [`GnttabUnmapAndReplace`].
pub const GNTTABOP_unmap_and_replace: u32 = 7;
/// Select the grant table version; [`GnttabSetVersion`].
pub const GNTTABOP_set_version: u32 = 8;
/// Get v2 status frames; [`GnttabGetStatusFrames`].
pub const GNTTABOP_get_status_frames: u32 = 9;
/// Get the grant table version; [`GnttabGetVersion`].
pub const GNTTABOP_get_version: u32 = 10;
/// Swap two grant entries; [`GnttabSwapGrantRef`].
pub const GNTTABOP_swap_grant_ref: u32 = 11;
/// Cache maintenance on granted memory (Arm); [`GnttabCacheFlush`].
pub const GNTTABOP_cache_flush: u32 = 12;

// --- gnttab_copy.flags. ---

/// Bit number of [`GNTCOPY_source_gref`].
pub const _GNTCOPY_source_gref: u16 = 0;
/// `source.u` is a grant reference (else a GMFN of the caller).
pub const GNTCOPY_source_gref: u16 = 1 << _GNTCOPY_source_gref;
/// Bit number of [`GNTCOPY_dest_gref`].
pub const _GNTCOPY_dest_gref: u16 = 1;
/// `dest.u` is a grant reference.
pub const GNTCOPY_dest_gref: u16 = 1 << _GNTCOPY_dest_gref;

// --- gnttab_cache_flush.op. ---

/// Clean the cache.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// Invalidate the cache.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `a` is a grant reference.
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

// --- gnttab_map_grant_ref.flags. ---

/// Bit number of [`GNTMAP_device_map`].
pub const _GNTMAP_device_map: u32 = 0;
/// Map for device (DMA) access; returns `dev_bus_addr`.
pub const GNTMAP_device_map: u32 = 1 << _GNTMAP_device_map;
/// Bit number of [`GNTMAP_host_map`].
pub const _GNTMAP_host_map: u32 = 1;
/// Map into the caller's address space at `host_addr`.
pub const GNTMAP_host_map: u32 = 1 << _GNTMAP_host_map;
/// Bit number of [`GNTMAP_readonly`].
pub const _GNTMAP_readonly: u32 = 2;
/// Map read-only.
pub const GNTMAP_readonly: u32 = 1 << _GNTMAP_readonly;
/// Bit number of [`GNTMAP_application_map`].
pub const _GNTMAP_application_map: u32 = 3;
/// Map with user (application) access.
pub const GNTMAP_application_map: u32 = 1 << _GNTMAP_application_map;
/// Bit number of [`GNTMAP_contains_pte`].
pub const _GNTMAP_contains_pte: u32 = 4;
/// `host_addr` is the machine address of the PTE to update.
pub const GNTMAP_contains_pte: u32 = 1 << _GNTMAP_contains_pte;
/// First flag bit copied into the PTE's available bits.
pub const _GNTMAP_guest_avail0: u32 = 16;
/// Flag bits copied into the PTE's available bits.
pub const GNTMAP_guest_avail_mask: u32 = !0 << _GNTMAP_guest_avail0;

// --- Per-operation status (GNTST_*). ---

/// Normal return.
pub const GNTST_okay: i16 = 0;
/// General undefined error.
pub const GNTST_general_error: i16 = -1;
/// Unrecognised domain id.
pub const GNTST_bad_domain: i16 = -2;
/// Unrecognised or inappropriate grant reference.
pub const GNTST_bad_gntref: i16 = -3;
/// Unrecognised or inappropriate handle.
pub const GNTST_bad_handle: i16 = -4;
/// Inappropriate virtual address to map.
pub const GNTST_bad_virt_addr: i16 = -5;
/// Inappropriate device address to unmap.
pub const GNTST_bad_dev_addr: i16 = -6;
/// Out of space in the I/O MMU.
pub const GNTST_no_device_space: i16 = -7;
/// Not enough privilege for the operation.
pub const GNTST_permission_denied: i16 = -8;
/// Specified page was invalid for the operation.
pub const GNTST_bad_page: i16 = -9;
/// Copy arguments cross a page boundary.
pub const GNTST_bad_copy_arg: i16 = -10;
/// Transfer page address too large.
pub const GNTST_address_too_big: i16 = -11;
/// Operation not done; try again.
pub const GNTST_eagain: i16 = -12;
/// Out of space (handles etc.).
pub const GNTST_no_space: i16 = -13;

/// `GNTTABOP_error_msgs`: message for status `-n` at index `n`.
pub const GNTTABOP_error_msgs: [&str; 14] = [
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
];

/// The `GNTTABOP_error_msgs` text for a `GNTST_*` status, if it is a defined one.
pub fn gntst_message(status: i16) -> Option<&'static str> {
    let idx = usize::try_from(-i32::from(status)).ok()?;
    GNTTABOP_error_msgs.get(idx).copied()
}

/// A version-1 grant table entry.
#[doc(alias = "grant_entry_v1_t")]
#[doc(alias = "grant_entry_v1")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV1 {
    /// `GTF_*`; the granter writes the type last, Xen sets `GTF_reading`/`GTF_writing`.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted frame (GMFN for PV), or the transferred MFN.
    pub frame: u32,
}
assert_layout!(GrantEntryV1, 8, { flags: 0, domid: 2, frame: 4 });

/// Common header of a version-2 grant entry.
#[doc(alias = "grant_entry_header_t")]
#[doc(alias = "grant_entry_header")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryHeader {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
}
assert_layout!(GrantEntryHeader, 4, { flags: 0, domid: 2 });

/// A version-2 grant entry: a C union of `hdr`, `full_page`, `sub_page`, `transitive`, kept as
/// its 16 bytes (`__spacer`); see the accessors.
#[doc(alias = "grant_entry_v2_t")]
#[doc(alias = "grant_entry_v2")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV2 {
    /// The union's bytes as two words (C spacer is `uint32_t __spacer[4]`, alignment 8).
    pub words: [u64; 2],
}
assert_layout!(GrantEntryV2, 16, { words: 0 });

impl GrantEntryV2 {
    /// `hdr.flags`.
    pub const fn flags(&self) -> u16 {
        self.words[0] as u16
    }

    /// `hdr.domid`.
    pub const fn domid(&self) -> DomId {
        (self.words[0] >> 16) as DomId
    }

    /// `full_page.frame` / `sub_page.frame`.
    pub const fn frame(&self) -> u64 {
        self.words[1]
    }

    /// `sub_page.page_off`.
    pub const fn page_off(&self) -> u16 {
        (self.words[0] >> 32) as u16
    }

    /// `sub_page.length`.
    pub const fn length(&self) -> u16 {
        (self.words[0] >> 48) as u16
    }

    /// `transitive.trans_domid`.
    pub const fn trans_domid(&self) -> DomId {
        (self.words[0] >> 32) as DomId
    }

    /// `transitive.gref`.
    pub const fn trans_gref(&self) -> GrantRef {
        self.words[1] as GrantRef
    }
}

/// `GNTTABOP_map_grant_ref`.
#[doc(alias = "gnttab_map_grant_ref_t")]
#[doc(alias = "gnttab_map_grant_ref")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabMapGrantRef {
    /// IN: virtual address (or PTE machine address with `GNTMAP_contains_pte`).
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: grant reference in `dom`'s table.
    pub r#ref: GrantRef,
    /// IN: granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: GrantHandle,
    /// OUT: bus address with `GNTMAP_device_map`.
    pub dev_bus_addr: u64,
}
assert_layout!(GnttabMapGrantRef, 32, {
    host_addr: 0, flags: 8, r#ref: 12, dom: 16, status: 18, handle: 20, dev_bus_addr: 24,
});

/// `GNTTABOP_unmap_grant_ref`.
#[doc(alias = "gnttab_unmap_grant_ref_t")]
#[doc(alias = "gnttab_unmap_grant_ref")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapGrantRef {
    /// IN: address given at map time (0 if not host-mapped).
    pub host_addr: u64,
    /// IN: bus address (0 if not device-mapped).
    pub dev_bus_addr: u64,
    /// IN: handle from the map.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 2],
}
assert_layout!(GnttabUnmapGrantRef, 24, {
    host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20, _pad0: 22,
});

/// `GNTTABOP_setup_table`.
#[doc(alias = "gnttab_setup_table_t")]
#[doc(alias = "gnttab_setup_table")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTable {
    /// IN: domain (`DOMID_SELF`).
    pub dom: DomId,
    /// Implicit C padding before `nr_frames`.
    pub _pad0: [u8; 2],
    /// IN: frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding before `frame_list`.
    pub _pad1: [u8; 6],
    /// IN: guest handle of a `xen_pfn_t` array receiving the frames.
    pub frame_list: u64,
}
assert_layout!(GnttabSetupTable, 24, {
    dom: 0, _pad0: 2, nr_frames: 4, status: 8, _pad1: 10, frame_list: 16,
});

/// `GNTTABOP_dump_table`.
#[doc(alias = "gnttab_dump_table_t")]
#[doc(alias = "gnttab_dump_table")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabDumpTable {
    /// IN: domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
}
assert_layout!(GnttabDumpTable, 4, { dom: 0, status: 2 });

/// `GNTTABOP_transfer`.
#[doc(alias = "gnttab_transfer_t")]
#[doc(alias = "gnttab_transfer")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabTransfer {
    /// IN: frame to give away.
    pub mfn: XenPfn,
    /// IN: receiving domain.
    pub domid: DomId,
    /// Implicit C padding before `ref`.
    pub _pad0: [u8; 2],
    /// IN: receiving domain's `GTF_accept_transfer` entry.
    pub r#ref: GrantRef,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad1: [u8; 6],
}
assert_layout!(GnttabTransfer, 24, {
    mfn: 0, domid: 8, _pad0: 10, r#ref: 12, status: 16, _pad1: 18,
});

/// One side of a [`GnttabCopy`]. `u` is the C union `{ grant_ref_t ref; xen_pfn_t gmfn; }`.
#[doc(alias = "gnttab_copy_ptr")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtr {
    /// Union: grant reference (low 32 bits, with `GNTCOPY_*_gref`) or GMFN.
    pub u: u64,
    /// Domain owning the grant or frame.
    pub domid: DomId,
    /// Byte offset within the frame.
    pub offset: u16,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 4],
}
assert_layout!(GnttabCopyPtr, 16, { u: 0, domid: 8, offset: 10, _pad0: 12 });

impl GnttabCopyPtr {
    /// `u.ref`: the grant reference (meaningful with `GNTCOPY_*_gref`).
    pub const fn gref(&self) -> GrantRef {
        self.u as GrantRef
    }

    /// `u.gmfn`: the caller's frame (meaningful without `GNTCOPY_*_gref`).
    pub const fn gmfn(&self) -> XenPfn {
        self.u
    }

    /// Sets `u.ref` (the upper half of the union is cleared).
    pub fn set_gref(&mut self, gref: GrantRef) {
        self.u = u64::from(gref);
    }
}

/// `GNTTABOP_copy`: copy `len` bytes between two grants or frames (within one page each).
#[doc(alias = "gnttab_copy_t")]
#[doc(alias = "gnttab_copy")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopy {
    /// IN: source.
    pub source: GnttabCopyPtr,
    /// IN: destination.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 2],
}
assert_layout!(GnttabCopy, 40, {
    source: 0, dest: 16, len: 32, flags: 34, status: 36, _pad0: 38,
});

/// `GNTTABOP_query_size`.
#[doc(alias = "gnttab_query_size_t")]
#[doc(alias = "gnttab_query_size")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabQuerySize {
    /// IN: domain.
    pub dom: DomId,
    /// Implicit C padding before `nr_frames`.
    pub _pad0: [u8; 2],
    /// OUT: current frames.
    pub nr_frames: u32,
    /// OUT: maximum frames.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad1: [u8; 2],
}
assert_layout!(GnttabQuerySize, 16, {
    dom: 0, _pad0: 2, nr_frames: 4, max_nr_frames: 8, status: 12, _pad1: 14,
});

/// `GNTTABOP_unmap_and_replace`.
#[doc(alias = "gnttab_unmap_and_replace_t")]
#[doc(alias = "gnttab_unmap_and_replace")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapAndReplace {
    /// IN: address of the grant mapping.
    pub host_addr: u64,
    /// IN: address whose mapping moves to `host_addr`.
    pub new_addr: u64,
    /// IN: handle from the map.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 2],
}
assert_layout!(GnttabUnmapAndReplace, 24, {
    host_addr: 0, new_addr: 8, handle: 16, status: 20, _pad0: 22,
});

/// `GNTTABOP_set_version`.
#[doc(alias = "gnttab_set_version_t")]
#[doc(alias = "gnttab_set_version")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetVersion {
    /// IN/OUT: 1 or 2.
    pub version: u32,
}
assert_layout!(GnttabSetVersion, 4, { version: 0 });

/// `GNTTABOP_get_status_frames`.
#[doc(alias = "gnttab_get_status_frames_t")]
#[doc(alias = "gnttab_get_status_frames")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetStatusFrames {
    /// IN: frames wanted.
    pub nr_frames: u32,
    /// IN: domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: guest handle of a `uint64_t` array.
    pub frame_list: u64,
}
assert_layout!(GnttabGetStatusFrames, 16, { nr_frames: 0, dom: 4, status: 6, frame_list: 8 });

/// `GNTTABOP_get_version`.
#[doc(alias = "gnttab_get_version_t")]
#[doc(alias = "gnttab_get_version")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetVersion {
    /// IN: domain.
    pub dom: DomId,
    /// Padding (named in C).
    pub pad: u16,
    /// OUT: 1 or 2.
    pub version: u32,
}
assert_layout!(GnttabGetVersion, 8, { dom: 0, pad: 2, version: 4 });

/// `GNTTABOP_swap_grant_ref`.
#[doc(alias = "gnttab_swap_grant_ref_t")]
#[doc(alias = "gnttab_swap_grant_ref")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSwapGrantRef {
    /// IN: first entry.
    pub ref_a: GrantRef,
    /// IN: second entry.
    pub ref_b: GrantRef,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 2],
}
assert_layout!(GnttabSwapGrantRef, 12, { ref_a: 0, ref_b: 4, status: 8, _pad0: 10 });

/// `GNTTABOP_cache_flush`. `a` is the C union `{ uint64_t dev_bus_addr; grant_ref_t ref; }`.
#[doc(alias = "gnttab_cache_flush_t")]
#[doc(alias = "gnttab_cache_flush")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCacheFlush {
    /// Union: bus address, or grant reference with `GNTTAB_CACHE_SOURCE_GREF`.
    pub a: u64,
    /// Offset within the page.
    pub offset: u16,
    /// Length.
    pub length: u16,
    /// `GNTTAB_CACHE_*`.
    pub op: u32,
}
assert_layout!(GnttabCacheFlush, 16, { a: 0, offset: 8, length: 10, op: 12 });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages() {
        assert_eq!(gntst_message(GNTST_okay), Some("okay"));
        assert_eq!(gntst_message(GNTST_no_space), Some("out of space"));
        assert_eq!(gntst_message(-14), None);
        assert_eq!(gntst_message(1), None);
    }
}

/// An element of the argument array of `HYPERVISOR_grant_table_op`, paired with the one command
/// that takes it (`grant_table.h`: the struct declared after each `#define`).
pub trait GnttabOpArg {
    /// The `GNTTABOP_*` command whose argument this is.
    const CMD: u32;
}
crate::sub_ops!(GnttabOpArg:
    GnttabMapGrantRef => GNTTABOP_map_grant_ref,
    GnttabUnmapGrantRef => GNTTABOP_unmap_grant_ref,
    GnttabSetupTable => GNTTABOP_setup_table,
    GnttabDumpTable => GNTTABOP_dump_table,
    GnttabTransfer => GNTTABOP_transfer,
    GnttabCopy => GNTTABOP_copy,
    GnttabQuerySize => GNTTABOP_query_size,
    GnttabUnmapAndReplace => GNTTABOP_unmap_and_replace,
    GnttabSetVersion => GNTTABOP_set_version,
    GnttabGetStatusFrames => GNTTABOP_get_status_frames,
    GnttabGetVersion => GNTTABOP_get_version,
    GnttabSwapGrantRef => GNTTABOP_swap_grant_ref,
    GnttabCacheFlush => GNTTABOP_cache_flush,
);
