//! Negative tests: corrupted requests and rings against the block back end, one field at a time.
//!
//! Each corrupted request must be answered (`BLKIF_RSP_ERROR`, or `BLKIF_RSP_EOPNOTSUPP` for an
//! operation the device does not offer) with its own `RequestError` variant, and leave the disk
//! exactly as it was. The requests are pushed with a raw `FrontRing`, as a hostile front end
//! would, and served single-threaded.

mod common;

use std::sync::Arc;

use common::{EventChannel, FrontPages, GrantTable, Sender, FRONT_DOMID};
use hypercall_abi::grant_table::GNTST_bad_gntref;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
};
use ring_drivers::blkif::{
    BlkBack, BlkFrontRing, Disk, GrantIoError, GrantPages, RamDisk, RequestError,
};
use ring_drivers::shared_page::{AtomicPage, SharedPage};
use ring_drivers::RingError;
use zerocopy::IntoBytes;

const SECTORS: u64 = 256;

struct Rig {
    page: Arc<AtomicPage>,
    ring: BlkFrontRing,
    back: BlkBack<Arc<AtomicPage>, RamDisk, common::BackGrants, Sender>,
    pages: FrontPages,
    original: Vec<u8>,
    notified: Arc<EventChannel>,
}

/// A back end over a disk full of a pattern (sector n holds bytes n), discard offered or not.
fn rig(discard: bool) -> Rig {
    let page = Arc::new(AtomicPage::new());
    let ring = BlkFrontRing::init(&mut &*page);
    let grants = Arc::new(GrantTable::default());
    let mut pages = grants.grant(11);
    for i in 0..11 {
        pages.write(i, 0, &[0xa0 + i as u8; 4096]);
    }
    let mut disk = RamDisk::new(SECTORS, discard);
    let original: Vec<u8> = (0..SECTORS as usize * 512)
        .map(|i| (i / 512) as u8)
        .collect();
    disk.write(0, &original).unwrap();
    let notified = Arc::new(EventChannel::default());
    let back = BlkBack::new(
        page.clone(),
        FRONT_DOMID,
        disk,
        grants.backend_view(),
        notified.sender(),
    )
    .unwrap();
    Rig {
        page,
        ring,
        back,
        pages,
        original,
        notified,
    }
}

impl Rig {
    fn seg(&self, i: usize, first: u8, last: u8) -> BlkifRequestSegment {
        BlkifRequestSegment {
            gref: self.pages.gref(i),
            first_sect: first,
            last_sect: last,
            ..Default::default()
        }
    }

    /// A valid write of `nr` full pages at `sector`.
    fn write_req(&self, sector: u64, nr: u8) -> BlkifRequest {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_WRITE,
            nr_segments: nr,
            id: 0xabcd_0000 + u64::from(nr),
            sector_number: sector,
            ..Default::default()
        };
        for i in 0..usize::from(nr).min(11) {
            r.seg[i] = self.seg(i, 0, 7);
        }
        r
    }

    /// Pushes raw request bytes, lets the back end serve them, returns the one response.
    fn submit(&mut self, bytes: &[u8]) -> BlkifResponse {
        let mut view = &*self.page;
        assert!(self.ring.push_request_bytes(&mut view, bytes));
        self.ring.push_requests(&mut view);
        let served = self.back.serve().unwrap();
        assert_eq!(served.requests, 1);
        let rsp = self.ring.get_response(&view).unwrap().expect("answered");
        assert_eq!(self.ring.get_response(&view).unwrap(), None);
        rsp
    }

    /// Submits `req`, expects `status` and `error`, and an untouched disk.
    fn refused(&mut self, req: &[u8], status: i16, error: RequestError) {
        let rsp = self.submit(req);
        assert_eq!(rsp.status, status, "{error:?}");
        assert_eq!(rsp.id, u64::from_ne_bytes(req[8..16].try_into().unwrap()));
        // An indirect read or write is answered with its real operation (as Linux's blkback).
        let op = if req[0] == BLKIF_OP_INDIRECT && rsp.operation != BLKIF_OP_INDIRECT {
            assert!(req[1] == BLKIF_OP_READ || req[1] == BLKIF_OP_WRITE);
            req[1]
        } else {
            req[0]
        };
        assert_eq!(rsp.operation, op);
        assert_eq!(self.back.last_error(), Some(error));
        assert!(
            self.back.disk().bytes() == &self.original[..],
            "{error:?}: the disk changed"
        );
    }
}

#[test]
fn a_valid_write_lands_and_a_read_returns_it() {
    let mut r = rig(false);
    let req = r.write_req(16, 3);
    assert_eq!(r.submit(req.as_bytes()).status, BLKIF_RSP_OKAY);
    assert!(r.back.disk().bytes()[16 * 512..40 * 512]
        .iter()
        .zip((0..3).flat_map(|i| [0xa0 + i as u8; 4096]))
        .all(|(a, b)| *a == b));
    // Read sectors 2..=4 of disk sector 100.. into page 5, sectors 2..=4.
    let mut rd = BlkifRequest {
        operation: BLKIF_OP_READ,
        nr_segments: 1,
        id: 77,
        sector_number: 100,
        ..Default::default()
    };
    rd.seg[0] = r.seg(5, 2, 4);
    assert_eq!(r.submit(rd.as_bytes()).status, BLKIF_RSP_OKAY);
    let mut got = [0u8; 4096];
    r.pages.read(5, 0, &mut got);
    assert!(
        got[..1024].iter().all(|&b| b == 0xa5),
        "outside the segment untouched"
    );
    assert!(got[1024..1536].iter().all(|&b| b == 100));
    assert!(got[2048..2560].iter().all(|&b| b == 102));
    assert!(got[2560..].iter().all(|&b| b == 0xa5));
}

#[test]
fn bad_grant_reference_writes_nothing() {
    let mut r = rig(false);
    // Segments 0 and 1 are fine; segment 2's grant does not exist: no partial write.
    let mut req = r.write_req(8, 3);
    req.seg[2].gref = 4000;
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::Grant(GrantIoError {
            gref: 4000,
            status: GNTST_bad_gntref,
        }),
    );
}

#[test]
fn segment_count_zero_and_twelve() {
    let mut r = rig(false);
    let req = r.write_req(0, 0);
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentCount(0),
    );
    let mut req = r.write_req(0, 11);
    req.nr_segments = 12;
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentCount(12),
    );
    let mut rd = r.write_req(0, 0);
    rd.operation = BLKIF_OP_READ;
    r.refused(
        rd.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentCount(0),
    );
}

#[test]
fn segment_sector_ranges() {
    let mut r = rig(false);
    let mut req = r.write_req(0, 2);
    req.seg[1] = r.seg(1, 5, 4);
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentRange {
            index: 1,
            first_sect: 5,
            last_sect: 4,
        },
    );
    let mut req = r.write_req(0, 1);
    req.seg[0] = r.seg(0, 0, 8);
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentRange {
            index: 0,
            first_sect: 0,
            last_sect: 8,
        },
    );
}

#[test]
fn past_the_end_of_the_disk() {
    let mut r = rig(false);
    let req = r.write_req(SECTORS - 8, 2); // 16 sectors, 8 fit
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::PastEnd {
            sector: SECTORS - 8,
            count: 16,
        },
    );
    let req = r.write_req(u64::MAX - 3, 1); // overflows
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::PastEnd {
            sector: u64::MAX - 3,
            count: 8,
        },
    );
    let mut rd = r.write_req(SECTORS, 1);
    rd.operation = BLKIF_OP_READ;
    r.refused(
        rd.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::PastEnd {
            sector: SECTORS,
            count: 8,
        },
    );
}

#[test]
fn unknown_and_unsupported_operations() {
    let mut r = rig(false);
    let mut req = r.write_req(0, 1);
    req.operation = 99;
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::UnknownOperation(99),
    );
    for op in [BLKIF_OP_WRITE_BARRIER, BLKIF_OP_INDIRECT, BLKIF_OP_DISCARD] {
        req.operation = op;
        r.refused(
            req.as_bytes(),
            BLKIF_RSP_EOPNOTSUPP,
            RequestError::Unsupported(op),
        );
    }
}

#[test]
fn discard_checks_its_range() {
    let mut r = rig(true);
    let d = BlkifRequestDiscard {
        operation: BLKIF_OP_DISCARD,
        id: 5,
        sector_number: SECTORS - 1,
        nr_sectors: 2,
        ..Default::default()
    };
    r.refused(
        d.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::PastEnd {
            sector: SECTORS - 1,
            count: 2,
        },
    );
    let d = BlkifRequestDiscard {
        sector_number: 10,
        nr_sectors: 3,
        ..d
    };
    assert_eq!(r.submit(d.as_bytes()).status, BLKIF_RSP_OKAY);
    assert!(r.back.disk().bytes()[10 * 512..13 * 512]
        .iter()
        .all(|&b| b == 0));
    assert!(r.back.disk().bytes()[13 * 512] == 13);
}

#[test]
fn flush_with_and_without_data() {
    let mut r = rig(false);
    let f = BlkifRequest {
        operation: BLKIF_OP_FLUSH_DISKCACHE,
        id: 9,
        ..Default::default()
    };
    assert_eq!(r.submit(f.as_bytes()).status, BLKIF_RSP_OKAY);
    assert_eq!(r.back.disk().flushes(), 1);
    // With data: a pre-flushed write, validated like a write.
    let mut w = r.write_req(0, 1);
    w.operation = BLKIF_OP_FLUSH_DISKCACHE;
    w.seg[0].last_sect = 9;
    r.refused(
        w.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentRange {
            index: 0,
            first_sect: 0,
            last_sect: 9,
        },
    );
    assert_eq!(r.back.disk().flushes(), 1, "no flush for a refused request");
    w.seg[0].last_sect = 7;
    assert_eq!(r.submit(w.as_bytes()).status, BLKIF_RSP_OKAY);
    assert_eq!(r.back.disk().flushes(), 2);
    assert!(r.back.disk().bytes()[..4096].iter().all(|&b| b == 0xa0));
}

#[test]
fn producer_overrun_stops_serving() {
    let mut r = rig(false);
    let mut view = &*r.page;
    // A valid request, then req_prod pushed far beyond the ring.
    let req = r.write_req(0, 1);
    r.ring.push_request(&mut view, &req);
    view.store_release_u32(0, 1 + 32);
    let err = r.back.serve().unwrap_err();
    assert_eq!(
        err,
        RingError::IndexOverrun {
            prod: 33,
            cons: 0,
            size: 32
        }
    );
    // Even after the producer looks sane again, the ring stays stopped.
    view.store_release_u32(0, 1);
    assert_eq!(r.back.serve(), Err(err));
    assert_eq!(r.back.broken(), Some(err));
    assert_eq!(r.back.stats().requests, 0);
    assert!(r.back.disk().bytes() == &r.original[..]);
    assert_eq!(r.ring.get_response(&view).unwrap(), None);
}

#[test]
fn one_notification_for_a_batch_of_responses() {
    let mut r = rig(false);
    let mut view = &*r.page;
    for i in 0..20 {
        let mut rd = r.write_req(i * 8, 1);
        rd.operation = BLKIF_OP_READ;
        r.ring.push_request(&mut view, &rd);
    }
    assert!(r.ring.push_requests_and_check_notify(&mut view));
    // The front end sleeps waiting for the first response (rsp_event = rsp_cons + 1).
    assert!(!r.ring.final_check_for_responses(&mut view).unwrap());
    let served = r.back.on_event().unwrap();
    assert_eq!(served.requests, 20);
    let stats = r.back.stats();
    assert_eq!((stats.requests, stats.notifications_sent), (20, 1));
    assert_eq!(stats.events_received, 1);
    let mut n = 0;
    while let Some(rsp) = r.ring.get_response(&view).unwrap() {
        assert_eq!(rsp.status, BLKIF_RSP_OKAY);
        n += 1;
    }
    assert_eq!(n, 20);
    let _ = &r.notified;
}

#[test]
fn front_end_refuses_a_response_it_never_asked_for() {
    use ring_drivers::blkif::BackendInfo;
    use ring_drivers::blkif::{BlkBackRing, BlkFront, BlkFrontError};
    let page = Arc::new(AtomicPage::new());
    let grants = Arc::new(GrantTable::default());
    let mut front = BlkFront::new(
        page.clone(),
        0,
        grants.grant(11),
        Arc::new(EventChannel::default()).sender(),
    );
    front.connect(BackendInfo {
        sectors: 64,
        ..BackendInfo::default()
    });
    // A back end that answers with a made-up id.
    let mut back = BlkBackRing::attach(&page).unwrap();
    let mut view = &*page;
    let err = front.read(0, &mut [0; 512], || {
        if let Some(req) = back.get_request(&view).unwrap() {
            let rsp = BlkifResponse {
                id: req.id ^ 0x100,
                operation: req.operation,
                ..Default::default()
            };
            back.push_response(&mut view, &rsp);
            back.push_responses(&mut view);
        }
    });
    assert!(matches!(err, Err(BlkFrontError::UnknownResponse(_))));
}

#[test]
fn a_bad_grant_in_a_batch_fails_only_its_own_request() {
    let mut r = rig(false);
    let mut view = &*r.page;
    // Five one-page writes in one batch; the third names a grant that does not exist.
    for i in 0..5u64 {
        let mut w = r.write_req(i * 8, 1);
        w.id = 100 + i;
        w.seg[0] = r.seg(i as usize, 0, 7);
        if i == 2 {
            w.seg[0].gref = 4000;
        }
        r.ring.push_request(&mut view, &w);
    }
    r.ring.push_requests(&mut view);
    assert_eq!(r.back.serve().unwrap().requests, 5);
    let stats = r.back.stats();
    // One copy-in for the batch, one disk batch of the four good writes.
    assert_eq!((stats.copy_batches, stats.batches), (1, 1));
    assert_eq!((stats.batched_requests, stats.max_batch), (4, 4));
    let mut statuses = Vec::new();
    while let Some(rsp) = r.ring.get_response(&view).unwrap() {
        statuses.push((rsp.id, rsp.status));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            (100, BLKIF_RSP_OKAY),
            (101, BLKIF_RSP_OKAY),
            (102, BLKIF_RSP_ERROR),
            (103, BLKIF_RSP_OKAY),
            (104, BLKIF_RSP_OKAY)
        ]
    );
    let disk = r.back.disk().bytes();
    for i in 0..5usize {
        let want: Vec<u8> = if i == 2 {
            r.original[i * 4096..(i + 1) * 4096].to_vec()
        } else {
            vec![0xa0 + i as u8; 4096]
        };
        assert!(disk[i * 4096..(i + 1) * 4096] == want[..], "page {i}");
    }
}

#[test]
fn a_flush_waits_for_the_writes_before_it() {
    // Write, flush, write in one pass: the flush ends the first batch and is done alone, so the
    // second write is a batch of its own (the disk sees write, flush, write in that order).
    let mut r = rig(false);
    let mut view = &*r.page;
    let w1 = r.write_req(0, 1);
    let flush = BlkifRequest {
        operation: BLKIF_OP_FLUSH_DISKCACHE,
        id: 9,
        ..Default::default()
    };
    let w2 = r.write_req(64, 2);
    for q in [&w1, &flush, &w2] {
        r.ring.push_request(&mut view, q);
    }
    r.ring.push_requests(&mut view);
    assert_eq!(r.back.serve().unwrap().requests, 3);
    let stats = r.back.stats();
    assert_eq!((stats.batches, stats.batched_requests), (2, 2));
    let mut n = 0;
    while let Some(rsp) = r.ring.get_response(&view).unwrap() {
        assert_eq!(rsp.status, BLKIF_RSP_OKAY);
        n += 1;
    }
    assert_eq!(n, 3);
}

/// An indirect request of `nr` segments (whole pages 0.., cycling over the rig's 11) at
/// `sector`, its segment list in page 10 of the rig (granted like the others).
fn indirect_req(r: &mut Rig, op: u8, sector: u64, nr: u16) -> BlkifRequestIndirect {
    let segs: Vec<BlkifRequestSegment> =
        (0..usize::from(nr)).map(|i| r.seg(i % 10, 0, 7)).collect();
    r.pages.write(10, 0, segs.as_bytes());
    let mut grefs = [0; 8];
    grefs[0] = r.pages.gref(10);
    BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: op,
        nr_segments: nr,
        id: 0x1d,
        sector_number: sector,
        indirect_grefs: grefs,
        ..Default::default()
    }
}

#[test]
fn an_indirect_write_lands() {
    let mut r = rig(false);
    r.back.set_max_indirect_segments(32);
    assert_eq!(r.back.backend_info().max_indirect_segments, 32);
    let req = indirect_req(&mut r, BLKIF_OP_WRITE, 0, 20);
    let rsp = r.submit(req.as_bytes());
    assert_eq!((rsp.id, rsp.status), (0x1d, BLKIF_RSP_OKAY));
    // Answered with the real operation, as Linux's blkback does.
    assert_eq!(rsp.operation, BLKIF_OP_WRITE);
    let disk = r.back.disk().bytes();
    for i in 0..20usize {
        assert!(disk[i * 4096..(i + 1) * 4096]
            .iter()
            .all(|&b| b == 0xa0 + (i % 10) as u8));
    }
    assert_eq!(r.back.stats().indirect_requests, 1);
}

#[test]
fn hostile_indirect_requests_are_refused() {
    let mut r = rig(false);
    r.back.set_max_indirect_segments(32);
    // More segments than published, and none.
    for nr in [33u16, 0, 512, u16::MAX] {
        let req = indirect_req(&mut r, BLKIF_OP_WRITE, 0, nr.min(33));
        let req = BlkifRequestIndirect {
            nr_segments: nr,
            ..req
        };
        r.refused(
            req.as_bytes(),
            BLKIF_RSP_ERROR,
            RequestError::IndirectSegmentCount(nr),
        );
    }
    // The indirect page's grant does not exist: nothing is read from it, nothing written.
    let mut req = indirect_req(&mut r, BLKIF_OP_WRITE, 0, 4);
    req.indirect_grefs[0] = 4000;
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::Grant(GrantIoError {
            gref: 4000,
            status: GNTST_bad_gntref,
        }),
    );
    // A bad data grant inside the list: no partial write.
    let mut req = indirect_req(&mut r, BLKIF_OP_WRITE, 0, 12);
    let mut segs: Vec<BlkifRequestSegment> = (0..12).map(|i| r.seg(i % 10, 0, 7)).collect();
    segs[11].gref = 4001;
    r.pages.write(10, 0, segs.as_bytes());
    req.id = 0x1e;
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::Grant(GrantIoError {
            gref: 4001,
            status: GNTST_bad_gntref,
        }),
    );
    // A bad sector range inside the list.
    let req = indirect_req(&mut r, BLKIF_OP_READ, 0, 5);
    let mut segs: Vec<BlkifRequestSegment> = (0..5).map(|i| r.seg(i, 0, 7)).collect();
    segs[3] = r.seg(3, 6, 2);
    r.pages.write(10, 0, segs.as_bytes());
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::SegmentRange {
            index: 3,
            first_sect: 6,
            last_sect: 2,
        },
    );
    // Past the end of the disk.
    let req = indirect_req(&mut r, BLKIF_OP_READ, SECTORS - 8 * 12 + 8, 12);
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_ERROR,
        RequestError::PastEnd {
            sector: SECTORS - 8 * 12 + 8,
            count: 96,
        },
    );
    // Only reads and writes may be indirect.
    for op in [
        BLKIF_OP_FLUSH_DISKCACHE,
        BLKIF_OP_DISCARD,
        BLKIF_OP_INDIRECT,
        0x7f,
    ] {
        let req = indirect_req(&mut r, op, 0, 4);
        r.refused(
            req.as_bytes(),
            BLKIF_RSP_ERROR,
            RequestError::IndirectOperation(op),
        );
    }
    // Withdrawn: EOPNOTSUPP again.
    r.back.set_max_indirect_segments(0);
    let req = indirect_req(&mut r, BLKIF_OP_READ, 0, 4);
    r.refused(
        req.as_bytes(),
        BLKIF_RSP_EOPNOTSUPP,
        RequestError::Unsupported(BLKIF_OP_INDIRECT),
    );
}
