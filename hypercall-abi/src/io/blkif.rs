//! Block device split-driver protocol, mirroring `io/blkif.h`.
//!
//! # Xenstore keys
//!
//! Back end (`/local/domain/<backend>/backend/vbd/<frontend-domid>/<handle>/`):
//!
//! - `mode` (`"r"`/`"w"`), `params`, `physical-device` (`"MAJOR:MINOR"`), `type`: private
//!   device identification used by hotplug scripts.
//! - `feature-barrier`, `feature-flush-cache`, `feature-discard`, `feature-persistent`: `"0"` or
//!   `"1"`; whether `BLKIF_OP_WRITE_BARRIER`, `BLKIF_OP_FLUSH_DISKCACHE`, `BLKIF_OP_DISCARD`
//!   and persistent grants are supported.
//! - `feature-max-indirect-segments`: segments the back end accepts in `BLKIF_OP_INDIRECT`.
//! - `max-ring-page-order`: largest multi-page ring the back end supports.
//! - `sectors` (size in `sector-size` units), `sector-size` (bytes, default 512),
//!   `physical-sector-size`, `info` (`VDISK_*` bitmap), `discard-granularity`,
//!   `discard-alignment`, `discard-secure`: device properties, published before `Connected`.
//!
//! Front end (`/local/domain/<frontend>/device/vbd/<handle>/`):
//!
//! - `ring-ref` (grant reference of the single ring page; `ring-ref0..N` with `ring-page-order`),
//!   `event-channel` (port), `protocol` (`"x86_64-abi"`, default native).
//! - `multi-queue-num-queues` with `queue-N/ring-ref` and `queue-N/event-channel`.
//! - `virtual-device` (Linux-style device number), `device-type` (`"disk"`, `"cdrom"`),
//!   `backend`, `backend-id`: written by the toolstack.
//!
//! `sector_number`, `first_sect` and `last_sect` are in 512-byte units whatever `sector-size`
//! says; `first_sect`/`last_sect` are **inclusive** indices within the granted 4 KiB frame.
//!
//! # XenbusState handshake
//!
//! The toolstack creates both nodes in `Initialising`.
//!
//! ```text
//! Front                                 Back
//! Initialising                          Initialising
//!  o query virtual device properties     o open and validate the backing device
//!                                        o publish features and transport parameters
//!                                                  |
//!                                                  v
//!                                       InitWait
//!  o read back-end features
//!  o allocate and grant the ring, bind the event channel
//!  o publish ring-ref, event-channel, protocol
//!            |
//!            v
//! Initialised
//!                                        o read front-end transport parameters
//!                                        o map the ring, bind the event channel
//!                                        o publish sectors, sector-size, info
//!                                                  |
//!                                                  v
//!                                       Connected
//!  o read device properties
//!            |
//!            v
//! Connected
//! ```
//!
//! A front end may go to `Initialised` without waiting for `InitWait` (default transport
//! parameters); a back end may skip `InitWait`. Either side closes with `Closing`, waits for the
//! peer's `Closing`, then moves to `Closed`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{ring_size, XEN_PAGE_SIZE};
use crate::assert_layout;
use crate::grant_table::GrantRef;

/// `blkif_vdev_t`: the virtual device handle.
#[doc(alias = "blkif_vdev_t")]
pub type BlkifVdev = u16;
/// `blkif_sector_t`: a 512-byte sector number.
#[doc(alias = "blkif_sector_t")]
pub type BlkifSector = u64;

/// Read `seg[]` into granted frames.
pub const BLKIF_OP_READ: u8 = 0;
/// Write `seg[]` from granted frames.
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write, ordered after all earlier writes (`feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the device's volatile cache (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (SLES device-specific packets).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Discard sectors; request is a [`BlkifRequestDiscard`] (`feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Indirect request; request is a [`BlkifRequestIndirect`].
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect segment pages in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// `blkif_request_discard.flag`: secure discard.
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// Response status: operation not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// Response status: error.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `info` bit: CD-ROM.
pub const VDISK_CDROM: u32 = 0x1;
/// `info` bit: removable media.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `info` bit: read-only.
pub const VDISK_READONLY: u32 = 0x4;

/// One granted data page of a request.
#[doc(alias = "blkif_request_segment")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestSegment {
    /// Grant reference of the data frame.
    pub gref: GrantRef,
    /// First 512-byte sector within the frame (inclusive).
    pub first_sect: u8,
    /// Last 512-byte sector within the frame (inclusive).
    pub last_sect: u8,
    /// Implicit C padding at the end.
    pub _pad0: [u8; 2],
}
assert_layout!(BlkifRequestSegment, 8, { gref: 0, first_sect: 4, last_sect: 5, _pad0: 6 });

/// A read/write/barrier/flush request.
#[doc(alias = "blkif_request_t")]
#[doc(alias = "blkif_request")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Number of valid entries in `seg`.
    pub nr_segments: u8,
    /// Virtual device.
    pub handle: BlkifVdev,
    /// Implicit C padding before `id`.
    pub _pad0: [u8; 4],
    /// Echoed in the response.
    pub id: u64,
    /// Start sector on disk (512-byte units).
    pub sector_number: BlkifSector,
    /// Data segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}
assert_layout!(BlkifRequest, 112, {
    operation: 0, nr_segments: 1, handle: 2, _pad0: 4, id: 8, sector_number: 16, seg: 24,
});

/// A `BLKIF_OP_DISCARD` request (same ring slot as [`BlkifRequest`]).
#[doc(alias = "blkif_request_discard_t")]
#[doc(alias = "blkif_request_discard")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// `BLKIF_DISCARD_*`.
    pub flag: u8,
    /// Virtual device.
    pub handle: BlkifVdev,
    /// Implicit C padding before `id`.
    pub _pad0: [u8; 4],
    /// Echoed in the response.
    pub id: u64,
    /// Start sector.
    pub sector_number: BlkifSector,
    /// Number of sectors.
    pub nr_sectors: u64,
}
assert_layout!(BlkifRequestDiscard, 32, {
    operation: 0, flag: 1, handle: 2, _pad0: 4, id: 8, sector_number: 16, nr_sectors: 24,
});

/// A `BLKIF_OP_INDIRECT` request: segments live in granted indirect pages.
#[doc(alias = "blkif_request_indirect_t")]
#[doc(alias = "blkif_request_indirect")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestIndirect {
    /// `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// The real operation (`BLKIF_OP_READ`/`WRITE`).
    pub indirect_op: u8,
    /// Number of segments.
    pub nr_segments: u16,
    /// Implicit C padding before `id`.
    pub _pad0: [u8; 4],
    /// Echoed in the response.
    pub id: u64,
    /// Start sector.
    pub sector_number: BlkifSector,
    /// Virtual device.
    pub handle: BlkifVdev,
    /// Implicit C padding before `indirect_grefs`.
    pub _pad1: [u8; 2],
    /// Grant references of the pages holding [`BlkifRequestSegment`]s.
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Implicit C padding at the end.
    pub _pad2: [u8; 4],
}
assert_layout!(BlkifRequestIndirect, 64, {
    operation: 0, indirect_op: 1, nr_segments: 2, _pad0: 4, id: 8, sector_number: 16,
    handle: 24, _pad1: 26, indirect_grefs: 28, _pad2: 60,
});

/// A response.
#[doc(alias = "blkif_response_t")]
#[doc(alias = "blkif_response")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// Implicit C padding before `status`.
    pub _pad0: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Implicit C padding at the end.
    pub _pad1: [u8; 4],
}
assert_layout!(BlkifResponse, 16, { id: 0, operation: 8, _pad0: 9, status: 10, _pad1: 12 });

/// Size of one ring slot (`union blkif_sring_entry`): the larger of request and response.
pub const BLKIF_SRING_ENTRY_SIZE: usize = 112;
/// Entries in a one-page block ring (`__CONST_RING_SIZE(blkif, 4096)`).
pub const BLKIF_RING_SIZE: usize = ring_size(XEN_PAGE_SIZE, BLKIF_SRING_ENTRY_SIZE);
static_assertions::const_assert_eq!(BLKIF_RING_SIZE, 32);
