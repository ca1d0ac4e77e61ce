//! The block back end: [`BlkBack`] serves one front end's ring from a [`Disk`], after
//! [`parse_request`] validated each request copied out of the ring against [`DeviceLimits`].

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::grant_table::GrantRef;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse,
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
    BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_RESERVED_1,
    BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
};
use zerocopy::{FromBytes, IntoBytes};

use super::{BackendInfo, BlkBackRing, Notify, SECTORS_PER_PAGE, SECTOR_SIZE};
use crate::byte_ring::RingError;
use crate::shared_page::{SharedPage, PAGE_SIZE};

/// One piece of a front end's granted frame: `len` bytes at `offset` of the frame `gref` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantSegment {
    /// The front end's grant reference.
    pub gref: GrantRef,
    /// Byte offset inside the 4 KiB frame.
    pub offset: u16,
    /// Bytes (offset + len <= 4096).
    pub len: u16,
}

/// A grant copy failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantIoError {
    /// The reference that failed.
    pub gref: GrantRef,
    /// Its `GNTST_*` status (e.g. `GNTST_bad_gntref`).
    pub status: i16,
}

/// The back end's access to the front end's granted data pages. The kernel implements it with
/// `GNTTABOP_copy` (one op per segment, or two where a segment's local bytes cross a page of the
/// bounce buffer), batched in one hypercall per call.
pub trait GrantIo {
    /// Copies the segments of domain `domid`'s grants, in order, into `buf` (whose length is
    /// the sum of the segments' lengths).
    fn copy_from_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        buf: &mut [u8],
    ) -> Result<(), GrantIoError>;

    /// Copies `data` (the sum of the segments' lengths) into the segments of domain `domid`'s
    /// grants, in order.
    fn copy_to_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        data: &[u8],
    ) -> Result<(), GrantIoError>;

    /// Performs every copy of `batch` (each to or from its own buffer), storing each one's
    /// result in it: a failing copy fails only its own item. The kernel does the whole batch in
    /// one `GNTTABOP_copy` hypercall; the default copies item by item.
    fn copy_batch(&mut self, domid: u16, batch: &mut [GrantXfer<'_>]) {
        for x in batch.iter_mut() {
            x.result = if x.to_grant {
                self.copy_to_grants(domid, x.segs, x.buf)
            } else {
                self.copy_from_grants(domid, x.segs, x.buf)
            };
        }
    }

    /// Whether [`GrantIo::map_grants`] can map grants at all (`GNTTABOP_map_grant_ref` with
    /// `GNTMAP_host_map | GNTMAP_device_map`, a free place to map them). The default: no, every
    /// byte is copied.
    fn can_map(&self) -> bool {
        false
    }

    /// Maps each `(gref, readonly)` of domain `domid`, appending one result per entry, in
    /// order, to `out`: a failure fails only its own entry. The kernel does them all in one
    /// `GNTTABOP_map_grant_ref` hypercall.
    fn map_grants(
        &mut self,
        domid: u16,
        grefs: &[(GrantRef, bool)],
        out: &mut Vec<Result<GrantMapping, GrantIoError>>,
    ) {
        let _ = domid;
        out.extend(grefs.iter().map(|&(gref, _)| {
            Err(GrantIoError {
                gref,
                status: hypercall_abi::grant_table::GNTST_general_error,
            })
        }));
    }

    /// Gives up mappings made by [`GrantIo::map_grants`] (one `GNTTABOP_unmap_grant_ref`
    /// hypercall); returns how many the hypervisor refused (a dead front end's grants were
    /// revoked already).
    fn unmap_grants(&mut self, maps: &[GrantMapping]) -> usize {
        let _ = maps;
        0
    }

    /// Copies bytes out of a mapped grant at `offset` (`offset + buf.len() <= 4096`).
    fn read_mapped(&mut self, map: &GrantMapping, offset: usize, buf: &mut [u8]) {
        let _ = (map, offset, buf);
    }

    /// Copies bytes into a mapped (read-write) grant at `offset`.
    fn write_mapped(&mut self, map: &GrantMapping, offset: usize, data: &[u8]) {
        let _ = (map, offset, data);
    }
}

/// A front end's grant mapped by the back end ([`GrantIo::map_grants`]): the CPU reaches it
/// through [`GrantIo::read_mapped`]/[`GrantIo::write_mapped`], the device at `bus_addr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantMapping {
    /// The front end's reference.
    pub gref: GrantRef,
    /// The `grant_handle_t` it is unmapped with.
    pub handle: u32,
    /// Where the back end mapped it (the kernel's virtual address; opaque here).
    pub host_addr: u64,
    /// `dev_bus_addr` (`GNTMAP_device_map`): the frame's address for the device's DMA.
    pub bus_addr: u64,
    /// Mapped read-only (`GNTMAP_readonly`): the device may only read it.
    pub readonly: bool,
}

/// One request's grant copy in a [`GrantIo::copy_batch`].
#[derive(Debug)]
pub struct GrantXfer<'a> {
    /// The request's segments.
    pub segs: &'a [GrantSegment],
    /// Its local buffer (the segments' total length).
    pub buf: &'a mut [u8],
    /// `true`: `buf` → grants (a read's data); `false`: grants → `buf` (a write's).
    pub to_grant: bool,
    /// What happened (set by `copy_batch`).
    pub result: Result<(), GrantIoError>,
}

/// One transfer of a batch handed to [`Disk::transfer`].
#[derive(Debug)]
pub struct DiskIo<'a> {
    /// First 512-byte sector.
    pub sector: u64,
    /// Write the data (else read into it).
    pub write: bool,
    /// Where the data is: whole sectors.
    pub data: IoData<'a>,
    /// What happened (set by `transfer`).
    pub result: Result<(), DiskError>,
}

/// Where a [`DiskIo`]'s data is.
#[derive(Debug)]
pub enum IoData<'a> {
    /// In the back end's memory.
    Buf(&'a mut [u8]),
    /// In the front end's mapped grants, for the device's DMA (only for a disk whose
    /// [`Disk::supports_dma`] says so): each piece inside one granted frame.
    Dma(&'a [DmaSeg]),
}

impl IoData<'_> {
    /// Bytes.
    pub fn len(&self) -> usize {
        match self {
            IoData::Buf(b) => b.len(),
            IoData::Dma(segs) => segs.iter().map(|s| s.len as usize).sum(),
        }
    }

    /// No bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A piece of a DMA transfer: `len` bytes at bus address `addr` (within one 4 KiB frame:
/// a mapped grant's `bus_addr` plus a validated segment's offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaSeg {
    /// Bus address.
    pub addr: u64,
    /// Where the back end's CPU reaches the same bytes (the mapping's `host_addr` plus the
    /// offset: the kernel's address; opaque here).
    pub host: u64,
    /// Bytes (a whole number of sectors).
    pub len: u32,
}

/// A disk operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The device reported an I/O error.
    Io,
    /// The device cannot do this operation.
    Unsupported,
}

/// The storage behind a back end, in 512-byte sectors. Buffers are whole sectors.
pub trait Disk {
    /// Size in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes earlier writes durable (`BLKIF_OP_FLUSH_DISKCACHE`).
    fn flush(&mut self) -> Result<(), DiskError>;
    /// Performs every transfer of `ios`, storing each one's result in it. They are independent
    /// (the back end never puts a flush or discard in a batch), so a device may have them all in
    /// flight at once and complete them in any order; the default does them one by one.
    fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
        for io in ios.iter_mut() {
            io.result = match &mut io.data {
                IoData::Buf(b) if io.write => self.write(io.sector, b),
                IoData::Buf(b) => self.read(io.sector, b),
                IoData::Dma(_) => Err(DiskError::Unsupported),
            };
        }
    }
    /// Whether [`Disk::transfer`] takes [`IoData::Dma`] (the device reaches bus addresses).
    fn supports_dma(&self) -> bool {
        false
    }
    /// Discards `count` sectors starting at `sector` (`BLKIF_OP_DISCARD`); only called when
    /// [`Disk::supports_discard`] says so.
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        let _ = (sector, count);
        Err(DiskError::Unsupported)
    }
    /// Whether writes are refused (published as `VDISK_READONLY` in `info`).
    fn read_only(&self) -> bool {
        false
    }
    /// Whether flushes are offered (`feature-flush-cache`).
    fn supports_flush(&self) -> bool {
        true
    }
    /// Whether discards are offered (`feature-discard`).
    fn supports_discard(&self) -> bool {
        false
    }
}

/// Why a request was refused or failed. Each untrusted-input check has its own variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// `operation` is not a `BLKIF_OP_*` value.
    UnknownOperation(u8),
    /// A known operation the device does not offer (barrier, indirect, reserved, or flush /
    /// discard without the feature): `BLKIF_RSP_EOPNOTSUPP`.
    Unsupported(u8),
    /// `nr_segments` is 0 (for a read or write) or over 11.
    SegmentCount(u8),
    /// A segment with `first_sect > last_sect` or `last_sect > 7`.
    SegmentRange {
        /// The segment's index.
        index: u8,
        /// Its `first_sect`.
        first_sect: u8,
        /// Its `last_sect`.
        last_sect: u8,
    },
    /// The request reaches past the end of the disk (or overflows).
    PastEnd {
        /// First sector.
        sector: u64,
        /// Sectors requested.
        count: u64,
    },
    /// A write (or discard) to a read-only device.
    ReadOnly,
    /// A `BLKIF_OP_INDIRECT` whose `indirect_op` is not a read or a write.
    IndirectOperation(u8),
    /// A `BLKIF_OP_INDIRECT` with 0 segments or more than the back end published in
    /// `feature-max-indirect-segments`.
    IndirectSegmentCount(u16),
    /// Copying from or to a granted page failed (bad grant reference, wrong domain...).
    Grant(GrantIoError),
    /// The disk failed.
    Disk(DiskError),
}

impl RequestError {
    /// The `BLKIF_RSP_*` status answering this error.
    pub fn status(&self) -> i16 {
        match self {
            RequestError::Unsupported(_) | RequestError::Disk(DiskError::Unsupported) => {
                BLKIF_RSP_EOPNOTSUPP
            }
            _ => BLKIF_RSP_ERROR,
        }
    }
}

/// What the device offers; [`parse_request`] checks requests against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Writes and discards refused.
    pub read_only: bool,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// `feature-max-indirect-segments` (0: `BLKIF_OP_INDIRECT` not offered).
    pub max_indirect_segments: u16,
}

impl DeviceLimits {
    /// The limits of `disk`.
    pub fn of<D: Disk + ?Sized>(disk: &D) -> Self {
        DeviceLimits {
            sectors: disk.sectors(),
            read_only: disk.read_only(),
            flush: disk.supports_flush(),
            discard: disk.supports_discard(),
            max_indirect_segments: 0,
        }
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), RequestError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(RequestError::PastEnd { sector, count }),
        }
    }
}

/// The validated segments of a request, as byte ranges of granted frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    segs: [GrantSegment; MAX_INDIRECT_SEGMENTS],
    len: usize,
    sectors: u64,
}

impl Segments {
    /// The segments.
    pub fn as_slice(&self) -> &[GrantSegment] {
        &self.segs[..self.len]
    }

    /// Total 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.sectors as usize * SECTOR_SIZE
    }

    #[inline]
    fn parse(nr: u8, seg: &[BlkifRequestSegment]) -> Result<Segments, RequestError> {
        if nr == 0 || usize::from(nr) > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err(RequestError::SegmentCount(nr));
        }
        Self::parse_list(&seg[..usize::from(nr)])
    }

    /// Checks every segment of `seg` (1..=[`MAX_INDIRECT_SEGMENTS`] of them).
    #[inline]
    fn parse_list(seg: &[BlkifRequestSegment]) -> Result<Segments, RequestError> {
        debug_assert!(!seg.is_empty() && seg.len() <= MAX_INDIRECT_SEGMENTS);
        let mut out = Segments {
            segs: [GrantSegment::default(); MAX_INDIRECT_SEGMENTS],
            len: seg.len(),
            sectors: 0,
        };
        for (i, s) in seg.iter().enumerate() {
            if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
                return Err(RequestError::SegmentRange {
                    index: i as u8,
                    first_sect: s.first_sect,
                    last_sect: s.last_sect,
                });
            }
            let n = u16::from(s.last_sect - s.first_sect) + 1;
            out.segs[i] = GrantSegment {
                gref: s.gref,
                offset: u16::from(s.first_sect) * SECTOR_SIZE as u16,
                len: n * SECTOR_SIZE as u16,
            };
            out.sectors += u64::from(n);
        }
        Ok(out)
    }
}

/// A validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkOp {
    /// Read `segs.sectors()` sectors from `sector` into the segments.
    Read {
        /// First sector.
        sector: u64,
        /// Where the data goes.
        segs: Segments,
    },
    /// Write the segments to the disk from `sector`; `preflush`: flush first (a
    /// `BLKIF_OP_FLUSH_DISKCACHE` with data, as Linux blkfront sends for `REQ_PREFLUSH`).
    Write {
        /// First sector.
        sector: u64,
        /// Where the data comes from.
        segs: Segments,
        /// Flush the cache before writing.
        preflush: bool,
    },
    /// Flush the device's cache.
    Flush,
    /// Discard `count` sectors from `sector`.
    Discard {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u64,
    },
}

/// Validates a request copied out of the ring against the device.
#[inline]
pub fn parse_request(req: &BlkifRequest, dev: &DeviceLimits) -> Result<BlkOp, RequestError> {
    let op = req.operation;
    match op {
        BLKIF_OP_READ | BLKIF_OP_WRITE => {
            let segs = Segments::parse(req.nr_segments, &req.seg)?;
            if op == BLKIF_OP_WRITE && dev.read_only {
                return Err(RequestError::ReadOnly);
            }
            dev.check_range(req.sector_number, segs.sectors)?;
            Ok(if op == BLKIF_OP_READ {
                BlkOp::Read {
                    sector: req.sector_number,
                    segs,
                }
            } else {
                BlkOp::Write {
                    sector: req.sector_number,
                    segs,
                    preflush: false,
                }
            })
        }
        BLKIF_OP_FLUSH_DISKCACHE => {
            if !dev.flush {
                return Err(RequestError::Unsupported(op));
            }
            if req.nr_segments == 0 {
                return Ok(BlkOp::Flush);
            }
            let segs = Segments::parse(req.nr_segments, &req.seg)?;
            if dev.read_only {
                return Err(RequestError::ReadOnly);
            }
            dev.check_range(req.sector_number, segs.sectors)?;
            Ok(BlkOp::Write {
                sector: req.sector_number,
                segs,
                preflush: true,
            })
        }
        BLKIF_OP_DISCARD => {
            if !dev.discard {
                return Err(RequestError::Unsupported(op));
            }
            if dev.read_only {
                return Err(RequestError::ReadOnly);
            }
            // The same slot read as a blkif_request_discard (a prefix of blkif_request).
            let (d, _) = BlkifRequestDiscard::read_from_prefix(req.as_bytes())
                .expect("a discard request is a prefix of a request");
            // BLKIF_DISCARD_SECURE is "ignored if discard-secure=0", which we publish.
            dev.check_range(d.sector_number, d.nr_sectors)?;
            Ok(BlkOp::Discard {
                sector: d.sector_number,
                count: d.nr_sectors,
            })
        }
        BLKIF_OP_INDIRECT => {
            // Its segments are in granted pages: `parse_indirect_header`, a grant copy of the
            // pages, then `parse_indirect_segments` ([`BlkBack`] does all three).
            parse_indirect_header(req, dev)?;
            Err(RequestError::Unsupported(op))
        }
        BLKIF_OP_WRITE_BARRIER | BLKIF_OP_RESERVED_1 => Err(RequestError::Unsupported(op)),
        _ => Err(RequestError::UnknownOperation(op)),
    }
}

/// The first checks of a `BLKIF_OP_INDIRECT` request (the slot read as a
/// `blkif_request_indirect`): the feature is offered (else `Unsupported`, as for a back end
/// without it), `indirect_op` is a read or a write, `nr_segments` is 1..= the published maximum,
/// a write is allowed. Returns the header and how many indirect pages hold its segments (each
/// page holds 512).
pub fn parse_indirect_header(
    req: &BlkifRequest,
    dev: &DeviceLimits,
) -> Result<(BlkifRequestIndirect, usize), RequestError> {
    if dev.max_indirect_segments == 0 {
        return Err(RequestError::Unsupported(BLKIF_OP_INDIRECT));
    }
    let (ind, _) = BlkifRequestIndirect::read_from_prefix(req.as_bytes())
        .expect("an indirect request is a prefix of a request");
    if ind.indirect_op != BLKIF_OP_READ && ind.indirect_op != BLKIF_OP_WRITE {
        return Err(RequestError::IndirectOperation(ind.indirect_op));
    }
    let nr = ind.nr_segments;
    if nr == 0
        || nr > dev.max_indirect_segments
        || usize::from(nr) > MAX_INDIRECT_SEGMENTS
        || usize::from(nr).div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
            > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
    {
        return Err(RequestError::IndirectSegmentCount(nr));
    }
    if ind.indirect_op == BLKIF_OP_WRITE && dev.read_only {
        return Err(RequestError::ReadOnly);
    }
    Ok((ind, usize::from(nr).div_ceil(SEGMENTS_PER_INDIRECT_PAGE)))
}

/// The rest of a `BLKIF_OP_INDIRECT`'s checks, once its segments were copied out of the
/// indirect pages (`seg`, exactly `nr_segments` of them): each segment's sector range, then the
/// disk range.
pub fn parse_indirect_segments(
    ind: &BlkifRequestIndirect,
    seg: &[BlkifRequestSegment],
    dev: &DeviceLimits,
) -> Result<BlkOp, RequestError> {
    if seg.len() != usize::from(ind.nr_segments)
        || seg.is_empty()
        || seg.len() > MAX_INDIRECT_SEGMENTS
    {
        return Err(RequestError::IndirectSegmentCount(ind.nr_segments));
    }
    let segs = Segments::parse_list(seg)?;
    dev.check_range(ind.sector_number, segs.sectors)?;
    Ok(if ind.indirect_op == BLKIF_OP_READ {
        BlkOp::Read {
            sector: ind.sector_number,
            segs,
        }
    } else {
        BlkOp::Write {
            sector: ind.sector_number,
            segs,
            preflush: false,
        }
    })
}

/// Segment descriptors in one indirect page (`4096 / sizeof(blkif_request_segment)`).
pub const SEGMENTS_PER_INDIRECT_PAGE: usize =
    PAGE_SIZE / core::mem::size_of::<BlkifRequestSegment>();

/// Counters of a back end (for the bench: notifications per request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with an error status.
    pub errors: u64,
    /// Events sent to the front end.
    pub notifications_sent: u64,
    /// Events received from the front end ([`BlkBack::on_event`] calls).
    pub events_received: u64,
    /// Sectors read from the disk for the front end.
    pub sectors_read: u64,
    /// Sectors written to the disk.
    pub sectors_written: u64,
    /// Batches of reads and writes handed to the disk at once ([`Disk::transfer`] calls).
    pub batches: u64,
    /// Requests in those batches (divided by `batches`: requests in flight at the disk).
    pub batched_requests: u64,
    /// Largest batch.
    pub max_batch: u64,
    /// [`GrantIo::copy_batch`] calls (one `GNTTABOP_copy` hypercall each in the kernel).
    pub copy_batches: u64,
    /// `BLKIF_OP_INDIRECT` requests whose indirect pages were read.
    pub indirect_requests: u64,
    /// Grants mapped to be kept (persistent grants).
    pub persistent_maps: u64,
    /// Segments (and indirect pages) served from a persistent grant already mapped.
    pub persistent_hits: u64,
    /// Grants mapped for one batch only (for the device), then unmapped.
    pub grant_maps: u64,
    /// Grants unmapped (the batch's own, and the persistent ones at disconnect).
    pub grant_unmaps: u64,
    /// Unmaps the hypervisor refused (a dead front end's grants are revoked already).
    pub unmap_failures: u64,
    /// [`GrantIo::map_grants`] calls (one `GNTTABOP_map_grant_ref` hypercall each).
    pub map_hypercalls: u64,
    /// [`GrantIo::unmap_grants`] calls.
    pub unmap_hypercalls: u64,
    /// Reads and writes whose data the device moved itself to or from the mapped grants.
    pub dma_requests: u64,
    /// Reads and writes copied by the CPU between a bounce buffer and mapped grants.
    pub mapped_copy_requests: u64,
    /// Reads and writes grant-copied through a bounce buffer.
    pub grant_copy_requests: u64,
}

/// What one [`BlkBack::serve`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// Requests answered.
    pub requests: usize,
    /// The budget ran out with requests still waiting: call `serve` again (the front end will
    /// not notify for them, `req_event` was not re-armed).
    pub more: bool,
}

/// Requests one [`BlkBack::serve`] call answers at most, so a front end that keeps producing
/// cannot hold the back end's CPU forever.
pub const SERVE_BUDGET: usize = 4 * BlkBackRing::SIZE as usize;

/// Reads and writes handed to the disk at once: a whole ring's worth.
pub const BATCH: usize = BlkBackRing::SIZE as usize;

/// A batch also ends once its data reaches this many bytes: the bounce buffers a front end can
/// make the back end hold stay bounded (32 indirect requests would be 4 MiB).
pub const BATCH_BYTES: usize = 1 << 20;

/// Bytes of bounce buffers a back end keeps between batches at most (one request of
/// [`MAX_INDIRECT_SEGMENTS`]): a front end that chooses its requests' sizes cannot make dom0
/// hold a batch's worth for every vbd for ever. Small buffers, the usual case, are reused
/// without allocating; larger ones go back to the heap after their batch.
pub const BOUNCE_KEEP: usize = MAX_INDIRECT_SEGMENTS * PAGE_SIZE;

/// Persistent grants a back end keeps mapped at most by default: every data and indirect page
/// of our front end (256 + 8) with room to spare, inside the 1024 mappings the hypervisor
/// tracks for dom0 (Linux's blkback keeps up to 1056 per ring).
pub const MAX_PERSISTENT_GRANTS: usize = 320;

/// Segments an indirect request may carry here (`feature-max-indirect-segments` is at most
/// this): 32, as Linux's blkfront asks by default, 128 KiB per request.
pub const MAX_INDIRECT_SEGMENTS: usize = 32;

/// A validated read or write waiting in the current batch: its response fields, where it goes,
/// and the index of its bounce buffer.
#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u64,
    operation: u8,
    sector: u64,
    segs: Segments,
    write: bool,
    status: Result<(), RequestError>,
    /// Its segments' grants are mapped: `maps[i..i + segs.len]` of the back end (else its data
    /// is grant-copied through its bounce buffer).
    mapped: Option<usize>,
    /// ... and the device reaches them itself (no copy at all).
    dma: bool,
}

impl Pending {
    fn new(id: u64, operation: u8, sector: u64, segs: Segments, write: bool) -> Pending {
        Pending {
            id,
            operation,
            sector,
            segs,
            write,
            status: Ok(()),
            mapped: None,
            dma: false,
        }
    }
}

/// Gives request `p` its grants' persistent mappings, one look-up each, appended to `maps`
/// (all of them or none); returns whether it has them.
fn take_persistent(
    p: &mut Pending,
    pgrants: &BTreeMap<GrantRef, GrantMapping>,
    maps: &mut Vec<GrantMapping>,
    dma: bool,
    stats: &mut BackStats,
) -> bool {
    let (first, segs) = (maps.len(), p.segs.as_slice());
    for s in segs {
        match pgrants.get(&s.gref) {
            Some(&m) => maps.push(m),
            None => break,
        }
    }
    if maps.len() - first < segs.len() {
        maps.truncate(first);
        return false;
    }
    p.mapped = Some(first);
    p.dma = dma;
    stats.persistent_hits += segs.len() as u64;
    true
}

/// A block back end serving one front end's ring from a [`Disk`].
#[derive(Debug)]
pub struct BlkBack<P, D, G, N> {
    ring: BlkBackRing,
    page: P,
    frontend: u16,
    disk: D,
    grants: G,
    notify: N,
    bounce: Vec<u8>,
    /// One bounce buffer of 11 pages per request of a batch.
    bounces: Vec<Vec<u8>>,
    batch: Vec<Pending>,
    /// `feature-max-indirect-segments` published (0: not offered).
    max_indirect: u16,
    /// What requests are checked against: the disk's properties, asked once when the back end
    /// is made (they cannot change while it holds the disk: it lends the disk out only as
    /// `&D`), and `max_indirect`.
    limits: DeviceLimits,
    /// The indirect pages of the request being parsed.
    indirect: Vec<u8>,
    /// `feature-persistent` published.
    offer_persistent: bool,
    /// Persistent grants negotiated (both ends offered them).
    persistent: bool,
    /// Most grants kept mapped at once.
    max_persistent: usize,
    /// The persistent grants, mapped on first use and kept until disconnect.
    pgrants: BTreeMap<GrantRef, GrantMapping>,
    /// The mappings of the batch's mapped requests (see [`Pending::mapped`]).
    maps: Vec<GrantMapping>,
    /// Their DMA pieces (parallel to `maps`).
    dma_segs: Vec<DmaSeg>,
    /// Mappings made for this batch only, unmapped when it completes.
    temp: Vec<GrantMapping>,
    /// [`BlkBack::map_pass`]'s list of the requests the persistent pass tried (kept).
    fits: Vec<bool>,
    stats: BackStats,
    last_error: Option<RequestError>,
}

impl<P: SharedPage, D: Disk, G: GrantIo, N: Notify> BlkBack<P, D, G, N> {
    /// Attaches to the ring in `page` (the front end's `ring-ref`, mapped) of domain
    /// `frontend`. Fails if the ring's `req_prod` is already an overrun.
    pub fn new(page: P, frontend: u16, disk: D, grants: G, notify: N) -> Result<Self, RingError> {
        let ring = BlkBackRing::attach(&page)?;
        let limits = DeviceLimits::of(&disk);
        Ok(BlkBack {
            ring,
            page,
            frontend,
            disk,
            grants,
            notify,
            bounce: vec![0; BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE],
            bounces: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            max_indirect: 0,
            limits,
            indirect: Vec::new(),
            offer_persistent: false,
            persistent: false,
            max_persistent: MAX_PERSISTENT_GRANTS,
            pgrants: BTreeMap::new(),
            maps: Vec::new(),
            dma_segs: Vec::new(),
            temp: Vec::new(),
            fits: Vec::new(),
            stats: BackStats::default(),
            last_error: None,
        })
    }

    /// The event channel fired: counts it and serves the ring.
    pub fn on_event(&mut self) -> Result<Served, RingError> {
        self.stats.events_received += 1;
        self.serve()
    }

    /// Answers waiting requests (at most [`SERVE_BUDGET`]). Reads and writes are gathered into
    /// batches of up to [`BATCH`] (a ring's worth): every write's data comes in with one
    /// [`GrantIo::copy_batch`], the disk gets the whole batch at once ([`Disk::transfer`]), every
    /// read's data goes out with one more `copy_batch`, and the batch's responses are published
    /// together, notifying the front end once if its `rsp_event` asks for it. A flush or discard
    /// ends the batch before it (it must follow the writes the front end completed before it)
    /// and is done alone; a refused request is answered at once. Before returning with nothing
    /// left it re-arms `req_event` (`RING_FINAL_CHECK_FOR_REQUESTS`), so the next request
    /// notifies. A producer overrun is returned now and on every later call: the ring is no
    /// longer served, and the integrator should report it and disconnect the device.
    pub fn serve(&mut self) -> Result<Served, RingError> {
        let mut served = 0;
        // The bytes of `batch`'s requests (kept as they are added, not summed at each one).
        let mut bytes = self.batch.iter().map(|p| p.segs.bytes()).sum::<usize>();
        loop {
            while served + self.batch.len() < SERVE_BUDGET {
                let Some(req) = self.ring.get_request(&self.page)? else {
                    break;
                };
                let parsed = if req.operation == BLKIF_OP_INDIRECT {
                    self.parse_indirect(&req)
                } else {
                    parse_request(&req, &self.limits())
                };
                match parsed {
                    Ok(BlkOp::Read { sector, segs }) => {
                        bytes += segs.bytes();
                        self.batch
                            .push(Pending::new(req.id, BLKIF_OP_READ, sector, segs, false))
                    }
                    Ok(BlkOp::Write {
                        sector,
                        segs,
                        preflush: false,
                    }) => {
                        bytes += segs.bytes();
                        self.batch
                            .push(Pending::new(req.id, BLKIF_OP_WRITE, sector, segs, true))
                    }
                    Ok(_) => {
                        // A flush, discard or pre-flushed write: after everything before it.
                        served += self.run_batch();
                        bytes = 0;
                        let rsp = self.handle(&req);
                        self.ring.push_response(&mut self.page, &rsp);
                        served += 1;
                    }
                    Err(e) => {
                        let mut req = req;
                        if req.operation == BLKIF_OP_INDIRECT
                            && self.max_indirect > 0
                            && matches!(req.nr_segments, BLKIF_OP_READ | BLKIF_OP_WRITE)
                        {
                            // Answered with the real operation, as Linux's blkback does (the
                            // byte after `operation` is `indirect_op` in this layout).
                            req.operation = req.nr_segments;
                        }
                        let rsp = self.answer(&req, Err(e));
                        self.ring.push_response(&mut self.page, &rsp);
                        served += 1;
                    }
                }
                debug_assert_eq!(
                    bytes,
                    self.batch.iter().map(|p| p.segs.bytes()).sum::<usize>()
                );
                if self.batch.len() >= BATCH || bytes >= BATCH_BYTES {
                    served += self.run_batch();
                    bytes = 0;
                }
            }
            served += self.run_batch();
            bytes = 0;
            if self.ring.push_responses_and_check_notify(&mut self.page) {
                self.notify.notify();
                self.stats.notifications_sent += 1;
            }
            if served >= SERVE_BUDGET {
                let more = self.ring.unconsumed_requests(&self.page)? > 0;
                return Ok(Served {
                    requests: served,
                    more,
                });
            }
            if !self.ring.final_check_for_requests(&mut self.page)? {
                return Ok(Served {
                    requests: served,
                    more: false,
                });
            }
        }
    }

    /// Performs the gathered reads and writes (see [`BlkBack::serve`]) and pushes (does not
    /// publish) their responses; returns how many. A write whose data could not be copied in
    /// is not written; a read whose disk transfer failed is not copied out.
    fn run_batch(&mut self) -> usize {
        let n = self.batch.len();
        if n == 0 {
            return 0;
        }
        // Which requests' grants are mapped (persistent grants, or mapped for the device).
        self.map_pass();
        while self.bounces.len() < n {
            self.bounces.push(Vec::new());
        }
        for (p, b) in self.batch.iter().zip(self.bounces.iter_mut()) {
            if !p.dma && b.len() < p.segs.bytes() {
                b.resize(p.segs.bytes(), 0);
            }
        }
        // The writes' data, all in one batch of copies (or out of the mapped grants).
        self.grant_pass(true);
        self.mapped_copy(true);
        // The disk: every request still good, at once.
        {
            let mut ios: Vec<DiskIo<'_>> = Vec::with_capacity(n);
            for (p, b) in self.batch.iter().zip(self.bounces.iter_mut()) {
                if p.status.is_ok() {
                    let data = match p.mapped {
                        Some(first) if p.dma => {
                            IoData::Dma(&self.dma_segs[first..first + p.segs.len])
                        }
                        _ => IoData::Buf(&mut b[..p.segs.bytes()]),
                    };
                    ios.push(DiskIo {
                        sector: p.sector,
                        write: p.write,
                        data,
                        result: Ok(()),
                    });
                }
            }
            if !ios.is_empty() {
                self.disk.transfer(&mut ios);
                self.stats.batches += 1;
                self.stats.batched_requests += ios.len() as u64;
                self.stats.max_batch = self.stats.max_batch.max(ios.len() as u64);
            }
            // (`ios` holds the good requests in batch order.)
            let good = self.batch.iter_mut().filter(|p| p.status.is_ok());
            for (p, io) in good.zip(&ios) {
                if let Err(e) = io.result {
                    p.status = Err(RequestError::Disk(e));
                }
            }
        }
        // The reads' data, all in one batch of copies (or into the mapped grants).
        self.grant_pass(false);
        self.mapped_copy(false);
        // The batch's own mappings go now that the device is done with them.
        if !self.temp.is_empty() {
            self.stats.unmap_failures += self.grants.unmap_grants(&self.temp) as u64;
            self.stats.unmap_hypercalls += 1;
            self.stats.grant_unmaps += self.temp.len() as u64;
            self.temp.clear();
        }
        let batch = core::mem::take(&mut self.batch);
        for p in &batch {
            if p.status.is_ok() {
                if p.write {
                    self.stats.sectors_written += p.segs.sectors();
                } else {
                    self.stats.sectors_read += p.segs.sectors();
                }
                match (p.mapped, p.dma) {
                    (Some(_), true) => self.stats.dma_requests += 1,
                    (Some(_), false) => self.stats.mapped_copy_requests += 1,
                    (None, _) => self.stats.grant_copy_requests += 1,
                }
            }
            let rsp = self.respond(p.id, p.operation, p.status);
            self.ring.push_response(&mut self.page, &rsp);
        }
        self.batch = batch;
        self.batch.clear();
        if self.bounce_bytes() > BOUNCE_KEEP {
            self.bounces = Vec::new();
        }
        n
    }

    /// Bytes the batches' bounce buffers hold between batches (at most [`BOUNCE_KEEP`]).
    pub fn bounce_bytes(&self) -> usize {
        self.bounces.iter().map(Vec::capacity).sum()
    }

    /// The limits requests are checked against.
    fn limits(&self) -> DeviceLimits {
        self.limits
    }

    /// Offers `BLKIF_OP_INDIRECT` with up to `segments` segments (at most
    /// [`MAX_INDIRECT_SEGMENTS`]; 0 withdraws it); publish [`BlkBack::backend_info`] after.
    pub fn set_max_indirect_segments(&mut self, segments: u16) {
        self.max_indirect = segments.min(MAX_INDIRECT_SEGMENTS as u16);
        self.limits.max_indirect_segments = self.max_indirect;
    }

    /// Validates a `BLKIF_OP_INDIRECT`: the header, then a grant copy of its indirect pages (a
    /// bad reference fails the request, nothing else), then every segment from that copy.
    fn parse_indirect(&mut self, req: &BlkifRequest) -> Result<BlkOp, RequestError> {
        let limits = self.limits();
        let (ind, pages) = parse_indirect_header(req, &limits)?;
        let nr = usize::from(ind.nr_segments);
        let seg_size = core::mem::size_of::<BlkifRequestSegment>();
        let mut segs: Vec<GrantSegment> = Vec::with_capacity(pages);
        let mut left = nr * seg_size;
        for &gref in &ind.indirect_grefs[..pages] {
            let len = left.min(PAGE_SIZE);
            segs.push(GrantSegment {
                gref,
                offset: 0,
                len: len as u16,
            });
            left -= len;
        }
        self.indirect.resize(nr * seg_size, 0);
        let mut mapped = false;
        if self.persistent {
            // Through the persistent mappings when every page has one (or gets one now).
            let maps: Vec<_> = segs
                .iter()
                .map_while(|s| self.persistent_grant(s.gref))
                .collect();
            if maps.len() == segs.len() {
                let mut at = 0;
                for (s, m) in segs.iter().zip(&maps) {
                    let l = usize::from(s.len);
                    self.grants
                        .read_mapped(m, 0, &mut self.indirect[at..at + l]);
                    at += l;
                }
                mapped = true;
            }
        }
        if !mapped {
            self.grants
                .copy_from_grants(self.frontend, &segs, &mut self.indirect)
                .map_err(RequestError::Grant)?;
        }
        self.stats.indirect_requests += 1;
        let list: Vec<BlkifRequestSegment> = self
            .indirect
            .chunks_exact(seg_size)
            .map(|c| BlkifRequestSegment::read_from_bytes(c).expect("8 bytes"))
            .collect();
        parse_indirect_segments(&ind, &list, &limits)
    }

    /// Decides where each good request of the batch moves its data (see [`BlkBack::serve`]):
    /// with persistent grants, through the grants kept mapped (those not mapped yet are mapped
    /// now, all in one [`GrantIo::map_grants`], while fewer than the maximum are kept); else, if
    /// the disk does DMA, through grants mapped for this batch only (writes read-only); else, or
    /// if a mapping fails, by grant copy (which then reports a bad reference as before).
    fn map_pass(&mut self) {
        self.maps.clear();
        self.dma_segs.clear();
        for p in self.batch.iter_mut() {
            p.mapped = None;
            p.dma = false;
        }
        if !self.grants.can_map() {
            return;
        }
        let dma = self.disk.supports_dma();
        // Requests whose grants the persistent pass tried to map (a failure is not retried; the
        // list is kept between batches).
        let mut fits = core::mem::take(&mut self.fits);
        fits.clear();
        fits.resize(self.batch.len(), false);
        if self.persistent {
            // The steady state first: requests whose grants are all mapped already, one look-up
            // a grant.
            let mut missing = false;
            for (p, fit) in self.batch.iter_mut().zip(fits.iter_mut()) {
                if p.status.is_err() {
                    continue;
                }
                if take_persistent(p, &self.pgrants, &mut self.maps, dma, &mut self.stats) {
                    *fit = true;
                } else {
                    missing = true;
                }
            }
            // The rest: their new grants mapped (as many requests' as fit), then looked up.
            let mut want: Vec<(GrantRef, bool)> = Vec::new();
            for (i, p) in self.batch.iter().enumerate() {
                if !missing || p.status.is_err() || p.mapped.is_some() {
                    continue;
                }
                let start = want.len();
                for s in p.segs.as_slice() {
                    if !self.pgrants.contains_key(&s.gref)
                        && !want.iter().any(|&(g, _)| g == s.gref)
                    {
                        want.push((s.gref, false));
                    }
                }
                if self.pgrants.len() + want.len() <= self.max_persistent {
                    fits[i] = true;
                } else {
                    want.truncate(start);
                }
            }
            if !want.is_empty() {
                let mut results = Vec::with_capacity(want.len());
                self.grants.map_grants(self.frontend, &want, &mut results);
                self.stats.map_hypercalls += 1;
                for m in results.into_iter().flatten() {
                    self.stats.persistent_maps += 1;
                    self.pgrants.insert(m.gref, m);
                }
            }
            for (p, &fit) in self.batch.iter_mut().zip(&fits) {
                if fit && p.mapped.is_none() {
                    take_persistent(p, &self.pgrants, &mut self.maps, dma, &mut self.stats);
                }
            }
        }
        if dma {
            // The rest: mapped for the device, for this batch only.
            let mut want: Vec<(GrantRef, bool)> = Vec::new();
            for (p, _) in self
                .batch
                .iter()
                .zip(&fits)
                .filter(|(p, &tried)| p.status.is_ok() && p.mapped.is_none() && !tried)
            {
                want.extend(p.segs.as_slice().iter().map(|s| (s.gref, p.write)));
            }
            if !want.is_empty() {
                let mut results = Vec::with_capacity(want.len());
                self.grants.map_grants(self.frontend, &want, &mut results);
                self.stats.map_hypercalls += 1;
                let mut results = results.into_iter();
                for (p, &tried) in self.batch.iter_mut().zip(&fits) {
                    if p.status.is_err() || p.mapped.is_some() || tried {
                        continue;
                    }
                    let first = self.maps.len();
                    let mut all = true;
                    for r in results.by_ref().take(p.segs.len) {
                        match r {
                            Ok(m) => {
                                self.stats.grant_maps += 1;
                                self.temp.push(m);
                                self.maps.push(m);
                            }
                            Err(_) => all = false,
                        }
                    }
                    if all {
                        p.mapped = Some(first);
                        p.dma = true;
                    } else {
                        // Grant-copied instead (its mappings are still given up after).
                        self.maps.truncate(first);
                    }
                }
            }
        }
        // The device's pieces: each mapped frame's bus address plus the segment's offset.
        self.dma_segs.resize(self.maps.len(), DmaSeg::default());
        for p in &self.batch {
            let Some(first) = p.mapped else { continue };
            for (k, s) in p.segs.as_slice().iter().enumerate() {
                let m = &self.maps[first + k];
                self.dma_segs[first + k] = DmaSeg {
                    addr: m.bus_addr + u64::from(s.offset),
                    host: m.host_addr + u64::from(s.offset),
                    len: u32::from(s.len),
                };
            }
        }
        self.fits = fits;
    }

    /// Copies between the bounce buffers and the mapped grants of the requests that are mapped
    /// but not DMA'd (`writes`: the writes' data in, else the reads' data out).
    fn mapped_copy(&mut self, writes: bool) {
        for (p, b) in self.batch.iter().zip(self.bounces.iter_mut()) {
            let Some(first) = p.mapped else { continue };
            if p.dma || p.write != writes || p.status.is_err() {
                continue;
            }
            let mut at = 0;
            for (s, m) in p.segs.as_slice().iter().zip(&self.maps[first..]) {
                let (o, l) = (usize::from(s.offset), usize::from(s.len));
                if writes {
                    self.grants.read_mapped(m, o, &mut b[at..at + l]);
                } else {
                    self.grants.write_mapped(m, o, &b[at..at + l]);
                }
                at += l;
            }
        }
    }

    /// The persistent mapping of `gref`, mapping it now if it is not yet and there is room.
    fn persistent_grant(&mut self, gref: GrantRef) -> Option<GrantMapping> {
        if let Some(m) = self.pgrants.get(&gref) {
            self.stats.persistent_hits += 1;
            return Some(*m);
        }
        if self.pgrants.len() >= self.max_persistent {
            return None;
        }
        let mut results = Vec::with_capacity(1);
        self.grants
            .map_grants(self.frontend, &[(gref, false)], &mut results);
        self.stats.map_hypercalls += 1;
        let m = results.pop()?.ok()?;
        self.stats.persistent_maps += 1;
        self.pgrants.insert(gref, m);
        Some(m)
    }

    /// Offers persistent grants (`feature-persistent`; publish [`BlkBack::backend_info`] after)
    /// and uses them if the front end offers them too (`front`: its `feature-persistent`). A
    /// back end whose [`GrantIo`] cannot map never uses them.
    pub fn set_persistent(&mut self, offer: bool, front: bool) {
        self.offer_persistent = offer;
        self.persistent = offer && front && self.grants.can_map();
    }

    /// Keeps at most `n` grants mapped (default [`MAX_PERSISTENT_GRANTS`]); beyond, requests
    /// fall back to mappings for their batch only, or to grant copies.
    pub fn set_max_persistent_grants(&mut self, n: usize) {
        self.max_persistent = n;
    }

    /// Whether persistent grants are in use.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// Unmaps every persistent grant (disconnecting: [`BlkBack::into_parts`] does it too; call
    /// it first to count the unmaps in [`BlkBack::stats`]).
    pub fn release_grants(&mut self) {
        if self.pgrants.is_empty() {
            return;
        }
        let all: Vec<GrantMapping> = self.pgrants.values().copied().collect();
        self.stats.unmap_failures += self.grants.unmap_grants(&all) as u64;
        self.stats.unmap_hypercalls += 1;
        self.stats.grant_unmaps += all.len() as u64;
        self.pgrants.clear();
    }

    /// One [`GrantIo::copy_batch`] for every good write of the batch (`writes`: their data
    /// in) or every good read (their data out); a failed copy fails its request.
    fn grant_pass(&mut self, writes: bool) {
        // Nothing to copy (every request mapped, as with persistent grants, or of the other
        // direction): no lists to build (two allocations per pass, four per batch).
        let copies = |p: &Pending| p.write == writes && p.status.is_ok() && p.mapped.is_none();
        if !self.batch.iter().any(copies) {
            return;
        }
        let mut xfers: Vec<GrantXfer<'_>> = Vec::with_capacity(self.batch.len());
        let mut index = Vec::with_capacity(self.batch.len());
        for (i, (p, b)) in self.batch.iter().zip(self.bounces.iter_mut()).enumerate() {
            if p.write == writes && p.status.is_ok() && p.mapped.is_none() {
                index.push(i);
                xfers.push(GrantXfer {
                    segs: p.segs.as_slice(),
                    buf: &mut b[..p.segs.bytes()],
                    to_grant: !writes,
                    result: Ok(()),
                });
            }
        }
        if xfers.is_empty() {
            return;
        }
        self.grants.copy_batch(self.frontend, &mut xfers);
        self.stats.copy_batches += 1;
        let results: Vec<_> = xfers.iter().map(|x| x.result).collect();
        drop(xfers);
        for (i, r) in index.into_iter().zip(results) {
            if let Err(e) = r {
                self.batch[i].status = Err(RequestError::Grant(e));
            }
        }
    }

    /// Counts a request's outcome and builds its response.
    fn respond(
        &mut self,
        id: u64,
        operation: u8,
        result: Result<(), RequestError>,
    ) -> BlkifResponse {
        let status = match result {
            Ok(()) => BLKIF_RSP_OKAY,
            Err(e) => {
                self.last_error = Some(e);
                self.stats.errors += 1;
                e.status()
            }
        };
        self.stats.requests += 1;
        BlkifResponse {
            id,
            operation,
            status,
            ..Default::default()
        }
    }

    fn answer(&mut self, req: &BlkifRequest, result: Result<(), RequestError>) -> BlkifResponse {
        self.respond(req.id, req.operation, result)
    }

    /// Validates and performs one request (already copied out of the ring); returns its
    /// response. Nothing is written to the disk unless the whole request is valid and every
    /// segment was copied in.
    pub fn handle(&mut self, req: &BlkifRequest) -> BlkifResponse {
        let r = self.perform(req);
        self.answer(req, r)
    }

    fn perform(&mut self, req: &BlkifRequest) -> Result<(), RequestError> {
        match parse_request(req, &DeviceLimits::of(&self.disk))? {
            BlkOp::Read { sector, segs } => {
                let buf = &mut self.bounce[..segs.bytes()];
                self.disk.read(sector, buf).map_err(RequestError::Disk)?;
                self.grants
                    .copy_to_grants(self.frontend, segs.as_slice(), buf)
                    .map_err(RequestError::Grant)?;
                self.stats.sectors_read += segs.sectors();
            }
            BlkOp::Write {
                sector,
                segs,
                preflush,
            } => {
                let buf = &mut self.bounce[..segs.bytes()];
                self.grants
                    .copy_from_grants(self.frontend, segs.as_slice(), buf)
                    .map_err(RequestError::Grant)?;
                if preflush {
                    self.disk.flush().map_err(RequestError::Disk)?;
                }
                self.disk.write(sector, buf).map_err(RequestError::Disk)?;
                self.stats.sectors_written += segs.sectors();
            }
            BlkOp::Flush => self.disk.flush().map_err(RequestError::Disk)?,
            BlkOp::Discard { sector, count } => {
                self.disk
                    .discard(sector, count)
                    .map_err(RequestError::Disk)?;
            }
        }
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> BackStats {
        self.stats
    }

    /// The most recent refused or failed request's error.
    pub fn last_error(&self) -> Option<RequestError> {
        self.last_error
    }

    /// The overrun that stopped the ring, if any.
    pub fn broken(&self) -> Option<RingError> {
        self.ring.broken()
    }

    /// The disk.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// The front end's domain.
    pub fn frontend(&self) -> u16 {
        self.frontend
    }

    /// What to publish in xenstore for this device (`sectors`, `info`, features...).
    pub fn backend_info(&self) -> BackendInfo {
        BackendInfo {
            max_indirect_segments: u32::from(self.max_indirect),
            feature_persistent: self.offer_persistent,
            ..BackendInfo::for_disk(&self.disk)
        }
    }

    /// Disconnects: unmaps the persistent grants, gives back the ring page, disk, grant access
    /// and event channel.
    pub fn into_parts(mut self) -> (P, D, G, N) {
        self.release_grants();
        (self.page, self.disk, self.grants, self.notify)
    }
}
