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

use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::grant_table::GrantRef;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestSegment, BlkifResponse, BlkifVdev,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
    BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
    BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, VDISK_READONLY,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::byte_ring::RingError;
use crate::ring::{BackRing, FrontRing};
use crate::shared_page::{SharedPage, PAGE_SIZE};
use crate::xenbus_state::BackendInfo;

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

// ---------------------------------------------------------------------------------------------
// Back end
// ---------------------------------------------------------------------------------------------

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

/// A disk in memory: for tests, and for a back end with no real device behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamDisk {
    data: Vec<u8>,
    discard: bool,
    flushes: u64,
}

impl RamDisk {
    /// A zeroed disk of `sectors` 512-byte sectors; `discard`: offer `feature-discard`
    /// (discarded sectors read back as zeros).
    pub fn new(sectors: u64, discard: bool) -> Self {
        RamDisk {
            data: vec![0; sectors as usize * SECTOR_SIZE],
            discard,
            flushes: 0,
        }
    }

    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Flushes served so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, DiskError> {
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or(DiskError::Io)?;
        let end = start.checked_add(len).ok_or(DiskError::Io)?;
        if end > self.data.len() || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::Io);
        }
        Ok(start..end)
    }
}

impl Disk for RamDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR_SIZE) as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let r = self.range(sector, data.len())?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        if !self.discard {
            return Err(DiskError::Unsupported);
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_SIZE))
            .ok_or(DiskError::Io)?;
        let r = self.range(sector, len)?;
        self.data[r].fill(0);
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        self.discard
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
}

impl DeviceLimits {
    /// The limits of `disk`.
    pub fn of<D: Disk + ?Sized>(disk: &D) -> Self {
        DeviceLimits {
            sectors: disk.sectors(),
            read_only: disk.read_only(),
            flush: disk.supports_flush(),
            discard: disk.supports_discard(),
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
    segs: [GrantSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
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

    fn parse(nr: u8, seg: &[BlkifRequestSegment]) -> Result<Segments, RequestError> {
        if nr == 0 || usize::from(nr) > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err(RequestError::SegmentCount(nr));
        }
        let mut out = Segments {
            segs: [GrantSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST],
            len: usize::from(nr),
            sectors: 0,
        };
        for (i, s) in seg[..usize::from(nr)].iter().enumerate() {
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
        BLKIF_OP_WRITE_BARRIER | BLKIF_OP_RESERVED_1 | BLKIF_OP_INDIRECT => {
            Err(RequestError::Unsupported(op))
        }
        _ => Err(RequestError::UnknownOperation(op)),
    }
}

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
    stats: BackStats,
    last_error: Option<RequestError>,
}

impl<P: SharedPage, D: Disk, G: GrantIo, N: Notify> BlkBack<P, D, G, N> {
    /// Attaches to the ring in `page` (the front end's `ring-ref`, mapped) of domain
    /// `frontend`. Fails if the ring's `req_prod` is already an overrun.
    pub fn new(page: P, frontend: u16, disk: D, grants: G, notify: N) -> Result<Self, RingError> {
        let ring = BlkBackRing::attach(&page)?;
        Ok(BlkBack {
            ring,
            page,
            frontend,
            disk,
            grants,
            notify,
            bounce: vec![0; BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE],
            stats: BackStats::default(),
            last_error: None,
        })
    }

    /// The event channel fired: counts it and serves the ring.
    pub fn on_event(&mut self) -> Result<Served, RingError> {
        self.stats.events_received += 1;
        self.serve()
    }

    /// Answers waiting requests (at most [`SERVE_BUDGET`]), publishing each response and
    /// notifying the front end when its `rsp_event` asks for it; before returning with nothing
    /// left it re-arms `req_event` (`RING_FINAL_CHECK_FOR_REQUESTS`), so the next request
    /// notifies. A producer overrun is returned now and on every later call: the ring is no
    /// longer served, and the integrator should report it and disconnect the device.
    pub fn serve(&mut self) -> Result<Served, RingError> {
        let mut served = 0;
        loop {
            while let Some(req) = self.ring.get_request(&self.page)? {
                let rsp = self.handle(&req);
                self.ring.push_response(&mut self.page, &rsp);
                if self.ring.push_responses_and_check_notify(&mut self.page) {
                    self.notify.notify();
                    self.stats.notifications_sent += 1;
                }
                served += 1;
                if served >= SERVE_BUDGET {
                    let more = self.ring.unconsumed_requests(&self.page)? > 0;
                    return Ok(Served {
                        requests: served,
                        more,
                    });
                }
            }
            if !self.ring.final_check_for_requests(&mut self.page)? {
                return Ok(Served {
                    requests: served,
                    more: false,
                });
            }
        }
    }

    /// Validates and performs one request (already copied out of the ring); returns its
    /// response. Nothing is written to the disk unless the whole request is valid and every
    /// segment was copied in.
    pub fn handle(&mut self, req: &BlkifRequest) -> BlkifResponse {
        let status = match self.perform(req) {
            Ok(()) => BLKIF_RSP_OKAY,
            Err(e) => {
                self.last_error = Some(e);
                self.stats.errors += 1;
                e.status()
            }
        };
        self.stats.requests += 1;
        BlkifResponse {
            id: req.id,
            operation: req.operation,
            status,
            ..Default::default()
        }
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
        BackendInfo::for_disk(&self.disk)
    }

    /// Disconnects: gives back the ring page, disk, grant access and event channel.
    pub fn into_parts(self) -> (P, D, G, N) {
        (self.page, self.disk, self.grants, self.notify)
    }
}

// ---------------------------------------------------------------------------------------------
// Front end
// ---------------------------------------------------------------------------------------------

/// The front end's data pages, granted (read-write) to the back end's domain by the kernel.
/// Like the ring, they are shared memory: accessed only by copying.
pub trait GrantPages {
    /// Number of pages (at least one; 11 per request in flight is enough for full requests).
    fn count(&self) -> usize;
    /// The grant reference of page `page`.
    fn gref(&self, page: usize) -> GrantRef;
    /// Copies bytes out of page `page` at `offset`.
    fn read(&self, page: usize, offset: usize, buf: &mut [u8]);
    /// Copies bytes into page `page` at `offset`.
    fn write(&mut self, page: usize, offset: usize, data: &[u8]);
}

/// Why a front-end operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkFrontError {
    /// The ring is corrupt (the back end published responses for requests never made).
    Ring(RingError),
    /// The back end answered with an error status for the request starting at `sector`.
    Io {
        /// `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
        status: i16,
        /// The failed request's first sector.
        sector: u64,
    },
    /// A response carried an id we have no request for (a broken or hostile back end).
    UnknownResponse(u64),
    /// The buffer is not a whole number of sectors.
    BufferSize(usize),
    /// The range reaches past the end of the device.
    PastEnd {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u64,
    },
    /// The device is read-only (`VDISK_READONLY`).
    ReadOnly,
    /// The back end does not offer the operation (no `feature-flush-cache` / `feature-discard`).
    NotSupported,
}

impl From<RingError> for BlkFrontError {
    fn from(e: RingError) -> Self {
        BlkFrontError::Ring(e)
    }
}

/// Counters of a front end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests sent.
    pub requests: u64,
    /// Events sent to the back end.
    pub notifications_sent: u64,
    /// Times the front end waited for an event (`wait_event` calls).
    pub waits: u64,
}

/// A request in flight.
#[derive(Clone, Debug)]
struct Inflight {
    /// Its id (slot in the table and a generation, so a stale id is detected).
    id: u64,
    /// First sector (for error reports).
    sector: u64,
    /// Data pages it uses (read: where the data arrives).
    pages: Vec<usize>,
    /// Byte offset of its data in the caller's buffer.
    buf_offset: usize,
    /// Bytes of data.
    len: usize,
}

/// The caller's buffer of a transfer.
enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Buf<'_> {
    fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }
}

/// A block front end: one ring, a fixed set of granted data pages, blocking operations that
/// keep several requests in flight.
#[derive(Debug)]
pub struct BlkFront<P, G, N> {
    ring: BlkFrontRing,
    page: P,
    pages: G,
    notify: N,
    info: BackendInfo,
    handle: BlkifVdev,
    free_pages: Vec<usize>,
    inflight: Vec<Option<Inflight>>,
    generation: u64,
    stats: FrontStats,
}

impl<P: SharedPage, G: GrantPages, N: Notify> BlkFront<P, G, N> {
    /// Initialises the ring in `page` (the page the kernel grants as `ring-ref`) and returns a
    /// front end that is *not yet connected*: call [`BlkFront::connect`] with the back end's
    /// [`BackendInfo`] once it is `Connected`. The ring is initialised here, before the
    /// `ring-ref` is published, because only the front end initialises it.
    pub fn new(mut page: P, handle: BlkifVdev, pages: G, notify: N) -> Self {
        let ring = BlkFrontRing::init(&mut page);
        Self::with_ring(ring, page, handle, pages, notify)
    }

    /// As [`BlkFront::new`], with ring indices starting at `start` (tests of the `u32` wrap).
    pub fn new_at(mut page: P, start: u32, handle: BlkifVdev, pages: G, notify: N) -> Self {
        let ring = BlkFrontRing::init_at(&mut page, start);
        Self::with_ring(ring, page, handle, pages, notify)
    }

    fn with_ring(ring: BlkFrontRing, page: P, handle: BlkifVdev, pages: G, notify: N) -> Self {
        assert!(pages.count() > 0, "a front end needs data pages");
        BlkFront {
            ring,
            page,
            handle,
            free_pages: (0..pages.count()).rev().collect(),
            pages,
            notify,
            info: BackendInfo::default(),
            inflight: (0..BlkFrontRing::SIZE).map(|_| None).collect(),
            generation: 0,
            stats: FrontStats::default(),
        }
    }

    /// Takes the device properties the back end published (read when it is `Connected`).
    pub fn connect(&mut self, info: BackendInfo) {
        self.info = info;
    }

    /// The device properties.
    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Device size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.info.sectors_512()
    }

    /// The counters.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }

    /// Gives back the ring page, data pages and event channel (to end the grants).
    pub fn into_parts(self) -> (P, G, N) {
        (self.page, self.pages, self.notify)
    }

    /// Reads `buf.len() / 512` sectors from `sector` into `buf`. `wait_event` blocks until the
    /// event channel fires (or simply returns, to poll).
    pub fn read(
        &mut self,
        sector: u64,
        buf: &mut [u8],
        wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        self.transfer(sector, Buf::Read(buf), wait_event)
    }

    /// Writes `data` (whole sectors) from `sector`.
    pub fn write(
        &mut self,
        sector: u64,
        data: &[u8],
        wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        if self.info.info & VDISK_READONLY != 0 {
            return Err(BlkFrontError::ReadOnly);
        }
        self.transfer(sector, Buf::Write(data), wait_event)
    }

    /// Flushes the back end's cache (`BLKIF_OP_FLUSH_DISKCACHE`, no segments).
    pub fn flush(&mut self, wait_event: impl FnMut()) -> Result<(), BlkFrontError> {
        if !self.info.feature_flush_cache {
            return Err(BlkFrontError::NotSupported);
        }
        let req = BlkifRequest {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            handle: self.handle,
            ..Default::default()
        };
        self.single(req.as_bytes(), 0, wait_event)
    }

    /// Discards `count` sectors from `sector` (`BLKIF_OP_DISCARD`).
    pub fn discard(
        &mut self,
        sector: u64,
        count: u64,
        wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        if !self.info.feature_discard {
            return Err(BlkFrontError::NotSupported);
        }
        self.check_range(sector, count)?;
        let req = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            handle: self.handle,
            sector_number: sector,
            nr_sectors: count,
            ..Default::default()
        };
        self.single(req.as_bytes(), sector, wait_event)
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), BlkFrontError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors() => Ok(()),
            _ => Err(BlkFrontError::PastEnd { sector, count }),
        }
    }

    /// A fresh id in a free table slot; the slot index is the id's low byte.
    fn new_id(&mut self) -> Option<usize> {
        let slot = self.inflight.iter().position(Option::is_none)?;
        self.generation += 1;
        Some(slot)
    }

    fn make_id(&self, slot: usize) -> u64 {
        self.generation << 8 | slot as u64
    }

    /// Sends one data-less request (`bytes` with the id at offset 8) and waits for it.
    fn single(
        &mut self,
        bytes: &[u8],
        sector: u64,
        mut wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        let mut first_error = None;
        // Room for one request: drain anything left over (never more than our own requests).
        while self.ring.is_full() {
            self.wait_some(&mut wait_event, &mut None, &mut first_error)?;
        }
        let slot = self.new_id().expect("a free ring slot means a free id");
        let id = self.make_id(slot);
        let mut req = [0u8; core::mem::size_of::<BlkifRequest>()];
        req[..bytes.len()].copy_from_slice(bytes);
        req[8..16].copy_from_slice(&id.to_ne_bytes());
        self.inflight[slot] = Some(Inflight {
            id,
            sector,
            pages: Vec::new(),
            buf_offset: 0,
            len: 0,
        });
        self.ring
            .push_request_bytes(&mut self.page, &req[..bytes.len()]);
        self.stats.requests += 1;
        self.publish();
        while self.inflight.iter().any(Option::is_some) {
            self.wait_some(&mut wait_event, &mut None, &mut first_error)?;
        }
        first_error.map_or(Ok(()), Err)
    }

    fn publish(&mut self) {
        if self.ring.push_requests_and_check_notify(&mut self.page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
    }

    /// Splits a transfer into requests of up to 11 pages, keeps as many in flight as ring slots
    /// and data pages allow, and waits for all of them. On an error the remaining requests still
    /// complete (their pages must come back) and the first error is returned.
    fn transfer(
        &mut self,
        sector: u64,
        mut buf: Buf<'_>,
        mut wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        let len = buf.len();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkFrontError::BufferSize(len));
        }
        self.check_range(sector, (len / SECTOR_SIZE) as u64)?;
        let op = match buf {
            Buf::Read(_) => BLKIF_OP_READ,
            Buf::Write(_) => BLKIF_OP_WRITE,
        };
        let max_pages = BLKIF_MAX_SEGMENTS_PER_REQUEST.min(self.pages.count());
        let mut next = 0usize; // bytes submitted
        let mut first_error = None;
        loop {
            let mut pushed = false;
            while next < len && first_error.is_none() && !self.ring.is_full() {
                let chunk = (len - next).min(max_pages * PAGE_SIZE);
                let npages = chunk.div_ceil(PAGE_SIZE);
                if self.free_pages.len() < npages {
                    break;
                }
                let slot = self.new_id().expect("a free ring slot means a free id");
                let id = self.make_id(slot);
                let chunk_sector = sector + (next / SECTOR_SIZE) as u64;
                let mut req = BlkifRequest {
                    operation: op,
                    nr_segments: npages as u8,
                    handle: self.handle,
                    id,
                    sector_number: chunk_sector,
                    ..Default::default()
                };
                let mut pages = Vec::with_capacity(npages);
                for i in 0..npages {
                    let page = self.free_pages.pop().expect("counted above");
                    let at = next + i * PAGE_SIZE;
                    let bytes = (len - at).min(PAGE_SIZE);
                    if let Buf::Write(data) = &buf {
                        self.pages.write(page, 0, &data[at..at + bytes]);
                    }
                    req.seg[i] = BlkifRequestSegment {
                        gref: self.pages.gref(page),
                        first_sect: 0,
                        last_sect: (bytes / SECTOR_SIZE - 1) as u8,
                        ..Default::default()
                    };
                    pages.push(page);
                }
                self.inflight[slot] = Some(Inflight {
                    id,
                    sector: chunk_sector,
                    pages,
                    buf_offset: next,
                    len: chunk,
                });
                self.ring.push_request(&mut self.page, &req);
                self.stats.requests += 1;
                next += chunk;
                pushed = true;
            }
            if pushed {
                self.publish();
            }
            if (next >= len || first_error.is_some()) && self.inflight.iter().all(Option::is_none) {
                return first_error.map_or(Ok(()), Err);
            }
            let mut dest = match &mut buf {
                Buf::Read(b) => Some(&mut **b),
                Buf::Write(_) => None,
            };
            self.wait_some(&mut wait_event, &mut dest, &mut first_error)?;
        }
    }

    /// Consumes every waiting response; if there was none, arms `rsp_event` and, if still none,
    /// waits for an event.
    fn wait_some(
        &mut self,
        wait_event: &mut impl FnMut(),
        dest: &mut Option<&mut [u8]>,
        first_error: &mut Option<BlkFrontError>,
    ) -> Result<(), BlkFrontError> {
        let mut got = false;
        while let Some(rsp) = self.ring.get_response(&self.page)? {
            got = true;
            self.complete(&rsp, dest, first_error)?;
        }
        if !got && !self.ring.final_check_for_responses(&mut self.page)? {
            wait_event();
            self.stats.waits += 1;
        }
        Ok(())
    }

    fn complete(
        &mut self,
        rsp: &BlkifResponse,
        dest: &mut Option<&mut [u8]>,
        first_error: &mut Option<BlkFrontError>,
    ) -> Result<(), BlkFrontError> {
        let slot = (rsp.id & 0xff) as usize;
        let known = self
            .inflight
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|f| f.id == rsp.id);
        if !known {
            return Err(BlkFrontError::UnknownResponse(rsp.id));
        }
        let done = self.inflight[slot].take().expect("checked above");
        if rsp.status != BLKIF_RSP_OKAY {
            first_error.get_or_insert(BlkFrontError::Io {
                status: rsp.status,
                sector: done.sector,
            });
        } else if let Some(buf) = dest.as_deref_mut() {
            for (i, &page) in done.pages.iter().enumerate() {
                let at = done.buf_offset + i * PAGE_SIZE;
                let bytes = (done.buf_offset + done.len - at).min(PAGE_SIZE);
                self.pages.read(page, 0, &mut buf[at..at + bytes]);
            }
        }
        self.free_pages.extend(done.pages.iter().rev());
        Ok(())
    }
}
