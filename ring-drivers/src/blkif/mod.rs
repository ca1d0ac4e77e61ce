//! The block split driver (`io/blkif.h`): back end [`BlkBack`] and front end [`BlkFront`].
//!
//! Both sit on the generic [`crate::ring`] with `blkif_request`/`blkif_response` slots (32 per
//! page). The hardware-facing parts are traits the kernel implements: [`Notify`] (send on the
//! event channel), [`GrantIo`] (the back end's `GNTTABOP_copy` to and from the front end's
//! granted pages), [`Disk`] (the storage behind the back end) and [`GrantPages`] (the front
//! end's own granted data pages).
//!
//! Units: `sector_number`, `first_sect`/`last_sect` and every sector count here are 512-byte
//! sectors whatever the device's `sector-size` (blkif.h as clarified in 2024); a segment covers
//! sectors `first_sect..=last_sect` of one 4 KiB granted frame.
//!
//! The back end trusts nothing in a request: it copies it out of the ring once, checks
//! operation, segment count, every segment's sector range and the disk range
//! ([`parse_request`], one [`RequestError`] variant per check), and for a write first copies
//! every segment into its bounce buffer, so a request that fails anywhere (a bad grant included)
//! writes nothing to the disk. Failures are answered with `BLKIF_RSP_ERROR`, operations the
//! device does not offer with `BLKIF_RSP_EOPNOTSUPP`.
//!
//! Files: this one holds the wire-level constants, ring types and [`Notify`] both ends share;
//! `back.rs` the back end and its request validation, `front.rs` the front end, `ram_disk.rs`
//! [`RamDisk`], `xenstore.rs` the device's xenstore keys ([`BackendInfo`],
//! [`FrontendTransport`]; the handshake that exchanges them is [`crate::xenbus::state`]),
//! `selftest.rs` the data stream of the guests' `blk-selftest`, `window.rs` a vbd's
//! [`Window`] of a disk shared by several domUs.

use hypercall_abi::io::blkif::{BlkifRequest, BlkifResponse, BLKIF_MAX_SEGMENTS_PER_REQUEST};

use crate::ring::{BackRing, FrontRing};
use crate::shared_page::PAGE_SIZE;

mod back;
mod front;
mod ram_disk;
mod selftest;
mod window;
mod xenstore;

pub use back::{
    parse_indirect_header, parse_indirect_segments, parse_request, BackStats, BlkBack, BlkOp,
    DeviceLimits, Disk, DiskError, DiskIo, DmaSeg, GrantIo, GrantIoError, GrantMapping,
    GrantSegment, GrantXfer, IoData, RequestError, Segments, Served, BATCH, BATCH_BYTES,
    BOUNCE_KEEP, MAX_INDIRECT_SEGMENTS, MAX_PERSISTENT_GRANTS, SEGMENTS_PER_INDIRECT_PAGE,
    SERVE_BUDGET,
};
pub use front::{BlkFront, BlkFrontError, FrontStats, GrantPages};
pub use ram_disk::RamDisk;
pub use selftest::{xorshift64, xorshift_stream};
pub use window::{slot, Window, SLOT_ALIGN};
pub use xenstore::{keys, BackendInfo, FrontendTransport, KeyError, XEN_IO_PROTO_ABI_X86_64};

/// Bytes in a blkif sector (the unit of every sector number and count in the protocol).
pub const SECTOR_SIZE: usize = 512;
/// 512-byte sectors in one granted 4 KiB frame (`last_sect` is at most this minus one).
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE / SECTOR_SIZE) as u8;
/// Sectors a direct request can carry (11 segments of 8 sectors).
pub const MAX_SECTORS_PER_REQUEST: u64 =
    BLKIF_MAX_SEGMENTS_PER_REQUEST as u64 * SECTORS_PER_PAGE as u64;

/// The front end's block ring.
pub type BlkFrontRing = FrontRing<BlkifRequest, BlkifResponse>;
/// The back end's block ring.
pub type BlkBackRing = BackRing<BlkifRequest, BlkifResponse>;

/// Sends an event to the other end (`EVTCHNOP_send` on the device's interdomain port).
pub trait Notify {
    /// Notifies the peer.
    fn notify(&mut self);
}
