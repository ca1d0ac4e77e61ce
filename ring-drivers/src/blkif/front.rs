//! The block front end: [`BlkFront`] keeps several requests in flight over one ring and a fixed
//! set of granted data pages ([`GrantPages`]), behind blocking read, write, flush and discard.

use alloc::vec::Vec;

use hypercall_abi::grant_table::GrantRef;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse,
    BlkifVdev, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_RSP_OKAY, VDISK_READONLY,
};
use zerocopy::IntoBytes;

use super::{BackendInfo, BlkFrontRing, Notify, MAX_INDIRECT_SEGMENTS, SECTOR_SIZE};
use crate::byte_ring::RingError;
use crate::shared_page::{SharedPage, PAGE_SIZE};

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
    /// Pages for the segment lists of `BLKIF_OP_INDIRECT` requests (granted read-only would do,
    /// like the data pages otherwise); 0, the default: the front end sends only direct requests.
    fn indirect_count(&self) -> usize {
        0
    }
    /// The grant reference of indirect page `page` (< `indirect_count()`).
    fn indirect_gref(&self, page: usize) -> GrantRef {
        let _ = page;
        0
    }
    /// Copies a segment list into indirect page `page` at `offset`.
    fn write_indirect(&mut self, page: usize, offset: usize, data: &[u8]) {
        let _ = (page, offset, data);
    }
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
    /// Sum over requests sent of the requests in flight just after sending it (divided by
    /// `requests`: the mean depth the back end saw).
    pub in_flight_sum: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
    /// `BLKIF_OP_INDIRECT` requests sent.
    pub indirect_requests: u64,
}

/// A request in flight.
#[derive(Clone, Debug)]
struct Inflight {
    /// Its id (slot in the table and a generation, so a stale id is detected).
    id: u64,
    /// First sector (for error reports).
    sector: u64,
    /// Data pages it uses (read: where the data arrives).
    pages: PageList,
    /// Byte offset of its data in the caller's buffer.
    buf_offset: usize,
    /// The indirect page holding its segment list (an indirect request).
    indirect: Option<usize>,
    /// Bytes of data.
    len: usize,
}

/// The data pages of a request in flight, in order: at most a request's segments, kept in
/// place (a request sent is no heap allocation and its completion no free).
#[derive(Clone, Copy, Debug)]
struct PageList {
    n: usize,
    at: [u16; MAX_INDIRECT_SEGMENTS],
}

impl PageList {
    const EMPTY: PageList = PageList {
        n: 0,
        at: [0; MAX_INDIRECT_SEGMENTS],
    };

    /// Adds data page `page` (an index below the front end's page count, which fits `u16`:
    /// `FrontPages` are counted in `usize` but a ring's data pages are a few hundred).
    fn push(&mut self, page: usize) {
        self.at[self.n] = page as u16;
        self.n += 1;
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.at[..self.n].iter().map(|&p| usize::from(p))
    }
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
    free_indirect: Vec<usize>,
    inflight: Vec<Option<Inflight>>,
    /// How many of `inflight` are `Some` (kept, not counted: a scan of the ring's slots at
    /// every request cost more than building the request).
    in_flight: usize,
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
        assert!(
            pages.count() <= usize::from(u16::MAX) + 1,
            "data pages are numbered in 16 bits"
        );
        BlkFront {
            ring,
            page,
            handle,
            free_pages: (0..pages.count()).rev().collect(),
            free_indirect: (0..pages.indirect_count()).rev().collect(),
            pages,
            notify,
            info: BackendInfo::default(),
            inflight: (0..BlkFrontRing::SIZE).map(|_| None).collect(),
            in_flight: 0,
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

    /// Reads `sectors.len()` pieces of `piece` bytes (whole sectors) each, piece `i` from sector
    /// `sectors[i]` into `buf[i * piece..]`: each piece its own requests, as many in flight at
    /// once as ring slots and data pages allow (a queue depth above one for scattered reads, as
    /// `fio --iodepth` issues them).
    pub fn read_scattered(
        &mut self,
        sectors: &[u64],
        piece: usize,
        buf: &mut [u8],
        wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        if piece == 0
            || !piece.is_multiple_of(SECTOR_SIZE)
            || sectors.len().checked_mul(piece) != Some(buf.len())
        {
            return Err(BlkFrontError::BufferSize(buf.len()));
        }
        for &s in sectors {
            self.check_range(s, (piece / SECTOR_SIZE) as u64)?;
        }
        self.transfer_pieces(sectors, piece, Buf::Read(buf), wait_event)
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
            pages: PageList::EMPTY,
            buf_offset: 0,
            indirect: None,
            len: 0,
        });
        self.ring
            .push_request_bytes(&mut self.page, &req[..bytes.len()]);
        self.count_sent();
        self.publish();
        while self.in_flight > 0 {
            self.wait_some(&mut wait_event, &mut None, &mut first_error)?;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Counts the request just put in `inflight`.
    fn count_sent(&mut self) {
        self.in_flight += 1;
        debug_assert_eq!(
            self.in_flight,
            self.inflight.iter().filter(|f| f.is_some()).count()
        );
        let n = self.in_flight as u64;
        self.stats.requests += 1;
        self.stats.in_flight_sum += n;
        self.stats.max_in_flight = self.stats.max_in_flight.max(n);
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
        buf: Buf<'_>,
        wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        let len = buf.len();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkFrontError::BufferSize(len));
        }
        self.check_range(sector, (len / SECTOR_SIZE) as u64)?;
        if len == 0 {
            return Ok(());
        }
        self.transfer_pieces(&[sector], len, buf, wait_event)
    }

    /// [`Front::transfer`] of `buf` as pieces of `piece` bytes, piece `i` at sector
    /// `sectors[i]` (one piece: a contiguous transfer); `buf` is `sectors.len()` pieces long,
    /// checked by the caller, and no request crosses from one piece into the next.
    fn transfer_pieces(
        &mut self,
        sectors: &[u64],
        piece: usize,
        mut buf: Buf<'_>,
        mut wait_event: impl FnMut(),
    ) -> Result<(), BlkFrontError> {
        let len = buf.len();
        let op = match buf {
            Buf::Read(_) => BLKIF_OP_READ,
            Buf::Write(_) => BLKIF_OP_WRITE,
        };
        // Indirect requests when the back end offers them and we have pages for the lists.
        let max_indirect = if self.pages.indirect_count() > 0 {
            (self.info.max_indirect_segments as usize).min(MAX_INDIRECT_SEGMENTS)
        } else {
            0
        };
        let mut next = 0usize; // bytes submitted
        let mut first_error = None;
        loop {
            let mut pushed = false;
            while next < len && first_error.is_none() && !self.ring.is_full() {
                let indirect =
                    max_indirect > BLKIF_MAX_SEGMENTS_PER_REQUEST && !self.free_indirect.is_empty();
                let max_pages = if indirect {
                    max_indirect
                } else {
                    BLKIF_MAX_SEGMENTS_PER_REQUEST
                }
                .min(self.pages.count());
                let (p, in_piece) = (next / piece, next % piece);
                let chunk = (piece - in_piece).min(max_pages * PAGE_SIZE);
                let npages = chunk.div_ceil(PAGE_SIZE);
                if self.free_pages.len() < npages {
                    break;
                }
                // A request that fits a direct one goes direct.
                let indirect = indirect && npages > BLKIF_MAX_SEGMENTS_PER_REQUEST;
                let slot = self.new_id().expect("a free ring slot means a free id");
                let id = self.make_id(slot);
                let chunk_sector = sectors[p] + (in_piece / SECTOR_SIZE) as u64;
                let mut segs = [BlkifRequestSegment::default(); MAX_INDIRECT_SEGMENTS];
                let mut pages = PageList::EMPTY;
                for (i, seg) in segs.iter_mut().enumerate().take(npages) {
                    let page = self.free_pages.pop().expect("counted above");
                    let at = next + i * PAGE_SIZE;
                    let bytes = (next + chunk - at).min(PAGE_SIZE);
                    if let Buf::Write(data) = &buf {
                        self.pages.write(page, 0, &data[at..at + bytes]);
                    }
                    *seg = BlkifRequestSegment {
                        gref: self.pages.gref(page),
                        first_sect: 0,
                        last_sect: (bytes / SECTOR_SIZE - 1) as u8,
                        ..Default::default()
                    };
                    pages.push(page);
                }
                let ind_page = if indirect {
                    let ip = self.free_indirect.pop().expect("checked above");
                    self.pages.write_indirect(ip, 0, segs[..npages].as_bytes());
                    let mut grefs = [0; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
                    grefs[0] = self.pages.indirect_gref(ip);
                    let req = BlkifRequestIndirect {
                        operation: BLKIF_OP_INDIRECT,
                        indirect_op: op,
                        nr_segments: npages as u16,
                        id,
                        sector_number: chunk_sector,
                        handle: self.handle,
                        indirect_grefs: grefs,
                        ..Default::default()
                    };
                    self.ring.push_request_bytes(&mut self.page, req.as_bytes());
                    self.stats.indirect_requests += 1;
                    Some(ip)
                } else {
                    let mut req = BlkifRequest {
                        operation: op,
                        nr_segments: npages as u8,
                        handle: self.handle,
                        id,
                        sector_number: chunk_sector,
                        ..Default::default()
                    };
                    req.seg[..npages].copy_from_slice(&segs[..npages]);
                    self.ring.push_request(&mut self.page, &req);
                    None
                };
                self.inflight[slot] = Some(Inflight {
                    id,
                    sector: chunk_sector,
                    pages,
                    buf_offset: next,
                    indirect: ind_page,
                    len: chunk,
                });
                self.count_sent();
                next += chunk;
                pushed = true;
            }
            if pushed {
                self.publish();
            }
            if (next >= len || first_error.is_some()) && self.in_flight == 0 {
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
        self.in_flight -= 1;
        if rsp.status != BLKIF_RSP_OKAY {
            first_error.get_or_insert(BlkFrontError::Io {
                status: rsp.status,
                sector: done.sector,
            });
        } else if let Some(buf) = dest.as_deref_mut() {
            for (i, page) in done.pages.iter().enumerate() {
                let at = done.buf_offset + i * PAGE_SIZE;
                let bytes = (done.buf_offset + done.len - at).min(PAGE_SIZE);
                self.pages.read(page, 0, &mut buf[at..at + bytes]);
            }
        }
        self.free_pages.extend(done.pages.iter().rev());
        self.free_indirect.extend(done.indirect);
        Ok(())
    }
}
