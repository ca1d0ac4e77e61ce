//! The back end's mapped data paths: persistent grants (`feature-persistent`) and zero copy (the
//! device DMAing straight into the front end's granted pages), against front ends that offer
//! them or not, and hostile requests over them.
//!
//! The fakes: `BackGrants::with_map` maps grants (a fake bus address per granted page) and
//! `DmaDisk` is a device that reaches mapped pages by bus address, and only mapped ones (a
//! read-only mapping refuses the device's writes).

mod common;

use std::sync::Arc;
use std::thread;

use common::{BackGrants, DmaDisk, EventChannel, FrontPages, GrantTable, Rng, Sender, FRONT_DOMID};
use hypercall_abi::grant_table::GNTST_bad_gntref;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestIndirect, BlkifRequestSegment, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
    BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
};
use ring_drivers::blkif::{
    BackStats, BlkBack, BlkFront, BlkFrontRing, Disk, GrantIoError, GrantPages, RamDisk,
    RequestError,
};
use ring_drivers::shared_page::AtomicPage;
use zerocopy::IntoBytes;

type Front = BlkFront<Arc<AtomicPage>, FrontPages, Sender>;

/// How the back end is set up.
#[derive(Clone, Copy)]
struct Setup {
    /// The back end can map grants.
    map: bool,
    /// The disk does DMA.
    dma: bool,
    /// (back end offers, front end offers) `feature-persistent`.
    persistent: (bool, bool),
    /// Most persistent grants kept.
    max_persistent: usize,
}

const FULL: Setup = Setup {
    map: true,
    dma: true,
    persistent: (true, true),
    max_persistent: ring_drivers::blkif::MAX_PERSISTENT_GRANTS,
};

struct Outcome {
    back: BackStats,
    copies: u64,
    live: usize,
    front_requests: u64,
    front_indirect: u64,
    dma_ios: u64,
    /// The back end's bounce buffers after the last batch.
    bounce_bytes: usize,
}

/// Writes 1 MiB and 3 pages, reads them back over a connected pair set up as `s` (176 data
/// pages, 8 indirect ones, 32 segments offered), checks the bytes on both sides.
fn round_trip(s: Setup) -> Outcome {
    let ring = Arc::new(AtomicPage::new());
    let table = Arc::new(GrantTable::default());
    let to_back = Arc::new(EventChannel::default());
    let to_front = Arc::new(EventChannel::default());
    let mut front: Front = BlkFront::new(
        ring.clone(),
        51712,
        table.grant(176).with_indirect(8),
        to_back.sender(),
    );
    let grants = if s.map {
        table.backend_view().with_map()
    } else {
        table.backend_view()
    };
    let mut disk = DmaDisk::new(RamDisk::new(8192, false), &table);
    disk.dma = s.dma;
    let mut back = BlkBack::new(ring.clone(), FRONT_DOMID, disk, grants, to_front.sender())
        .expect("fresh ring");
    back.set_max_indirect_segments(32);
    back.set_persistent(s.persistent.0, s.persistent.1);
    back.set_max_persistent_grants(s.max_persistent);
    assert_eq!(back.backend_info().feature_persistent, s.persistent.0);
    front.connect(back.backend_info());
    let mut back_wait = to_back.waiter();
    let server = thread::spawn(move || {
        'serve: while back_wait.wait() {
            let mut r = back.on_event();
            while let Ok(st) = r {
                if !st.more {
                    continue 'serve;
                }
                r = back.serve();
            }
            panic!("ring broken");
        }
        back
    });
    let mut wait = to_front.waiter();
    let mut data = vec![0; 1 << 20];
    Rng(99).fill(&mut data);
    front.write(13, &data, || assert!(wait.wait())).unwrap();
    let mut buf = vec![0; data.len()];
    front.read(13, &mut buf, || assert!(wait.wait())).unwrap();
    assert!(buf == data);
    front
        .write(5000, &data[..3 * 4096], || assert!(wait.wait()))
        .unwrap();
    let mut short = vec![0; 3 * 4096];
    front
        .read(5000, &mut short, || assert!(wait.wait()))
        .unwrap();
    assert!(short == data[..3 * 4096]);
    to_back.close();
    let mut back = server.join().unwrap();
    back.release_grants();
    let stats = back.stats();
    let bounce_bytes = back.bounce_bytes();
    let (_, disk, grants, _) = back.into_parts();
    assert!(disk.ram.bytes()[13 * 512..13 * 512 + data.len()] == data[..]);
    assert_eq!(stats.errors, 0);
    Outcome {
        back: stats,
        copies: grants.copies,
        live: table.live_mappings(),
        front_requests: front.stats().requests,
        front_indirect: front.stats().indirect_requests,
        dma_ios: disk.dma_ios,
        bounce_bytes,
    }
}

/// A back end that grant-copies (no mapping) keeps at most `BOUNCE_KEEP` bytes of bounce
/// buffers once a batch is done, whatever the batches before it carried: 1 MiB went through
/// them in 128 KiB indirect requests, then a 3-page request. (Found in review: each position of
/// a batch kept the largest buffer it ever had, 4 MiB per vbd for a front end that asked for
/// it, and dom0's heap is shared by every vbd.)
#[test]
fn a_grant_copying_back_end_keeps_no_more_than_bounce_keep_between_batches() {
    let o = round_trip(Setup {
        map: false,
        dma: false,
        persistent: (false, false),
        ..FULL
    });
    assert!(o.back.grant_copy_requests > 0, "through the bounce buffers");
    assert!(
        o.bounce_bytes <= ring_drivers::blkif::BOUNCE_KEEP,
        "{} bytes kept",
        o.bounce_bytes
    );
}

#[test]
fn zero_copy_without_persistent_grants_maps_each_batch_and_unmaps_it() {
    let o = round_trip(Setup {
        persistent: (true, false),
        ..FULL
    });
    assert_eq!(o.front_requests, 18);
    assert_eq!(o.back.dma_requests, 18, "every read and write by DMA");
    assert_eq!(o.dma_ios, 18);
    assert_eq!(
        (o.back.grant_copy_requests, o.back.mapped_copy_requests),
        (0, 0)
    );
    assert_eq!(o.back.persistent_maps, 0);
    // Every page of every request mapped for its batch, then unmapped.
    assert_eq!(o.back.grant_maps, 2 * (256 + 3));
    assert_eq!(o.back.grant_unmaps, o.back.grant_maps);
    assert_eq!(o.back.unmap_hypercalls, o.back.map_hypercalls);
    assert_eq!(o.live, 0);
    // Only the indirect pages are still grant-copied (one per indirect request).
    assert_eq!(o.copies, o.front_indirect);
}

#[test]
fn persistent_grants_with_dma_map_each_page_once() {
    let o = round_trip(FULL);
    assert_eq!(o.back.dma_requests, 18);
    assert_eq!(o.copies, 0, "nothing grant-copied, indirect pages included");
    // Each data page and indirect page used is mapped once, kept, unmapped at disconnect.
    assert!(o.back.persistent_maps > 0 && o.back.persistent_maps <= 176 + 8);
    assert_eq!(o.back.grant_maps, 0);
    assert_eq!(o.back.grant_unmaps, o.back.persistent_maps);
    assert!(o.back.map_hypercalls < o.front_requests);
    assert_eq!(o.live, 0);
}

#[test]
fn persistent_grants_without_dma_copy_through_the_mappings() {
    let o = round_trip(Setup { dma: false, ..FULL });
    assert_eq!(o.back.mapped_copy_requests, 18);
    assert_eq!((o.back.dma_requests, o.dma_ios, o.copies), (0, 0, 0));
    assert_eq!(o.live, 0);
}

#[test]
fn no_mapping_at_all_when_neither_persistent_nor_dma() {
    for s in [
        Setup {
            persistent: (false, true),
            dma: false,
            ..FULL
        },
        Setup {
            persistent: (true, false),
            dma: false,
            ..FULL
        },
        // A back end that cannot map: persistent grants are never used, even if both offer.
        Setup { map: false, ..FULL },
    ] {
        let o = round_trip(s);
        assert_eq!(o.back.grant_copy_requests, 18);
        assert_eq!(o.back.map_hypercalls + o.back.persistent_maps, 0);
        assert_eq!(o.copies, 18 + o.front_indirect);
    }
}

#[test]
fn the_persistent_grants_kept_are_bounded() {
    let o = round_trip(Setup {
        max_persistent: 20,
        ..FULL
    });
    assert!(o.back.persistent_maps <= 20);
    // Past the bound, requests map their pages for their batch only (still by DMA).
    assert!(o.back.grant_maps > 0);
    assert_eq!(o.back.dma_requests, 18);
    assert_eq!(o.live, 0);
}

/// A hostile front end on a raw ring, against a back end that maps (persistent or not) and a
/// DMA disk full of a pattern.
struct Rig {
    page: Arc<AtomicPage>,
    ring: BlkFrontRing,
    back: BlkBack<Arc<AtomicPage>, DmaDisk, BackGrants, Sender>,
    pages: FrontPages,
    table: Arc<GrantTable>,
    original: Vec<u8>,
}

fn rig(persistent: bool) -> Rig {
    let page = Arc::new(AtomicPage::new());
    let ring = BlkFrontRing::init(&mut &*page);
    let table = Arc::new(GrantTable::default());
    let mut pages = table.grant(11);
    for i in 0..11 {
        pages.write(i, 0, &[0xa0 + i as u8; 4096]);
    }
    let mut ram = RamDisk::new(256, false);
    let original: Vec<u8> = (0..256 * 512).map(|i| (i / 512) as u8).collect();
    ram.write(0, &original).unwrap();
    let notified = Arc::new(EventChannel::default());
    let mut back = BlkBack::new(
        page.clone(),
        FRONT_DOMID,
        DmaDisk::new(ram, &table),
        table.backend_view().with_map(),
        notified.sender(),
    )
    .unwrap();
    back.set_persistent(persistent, persistent);
    Rig {
        page,
        ring,
        back,
        pages,
        table,
        original,
    }
}

impl Rig {
    fn req(&self, op: u8, sector: u64, nr: u8) -> BlkifRequest {
        let mut r = BlkifRequest {
            operation: op,
            nr_segments: nr,
            id: 0x5eed_0000 + u64::from(nr),
            sector_number: sector,
            ..Default::default()
        };
        for i in 0..usize::from(nr).min(11) {
            r.seg[i] = BlkifRequestSegment {
                gref: self.pages.gref(i),
                first_sect: 0,
                last_sect: 7,
                ..Default::default()
            };
        }
        r
    }

    fn submit(&mut self, req: &BlkifRequest) -> i16 {
        let mut view = &*self.page;
        assert!(self.ring.push_request_bytes(&mut view, req.as_bytes()));
        self.ring.push_requests(&mut view);
        assert_eq!(self.back.serve().unwrap().requests, 1);
        let rsp = self.ring.get_response(&view).unwrap().expect("answered");
        assert_eq!(rsp.id, req.id);
        rsp.status
    }

    fn disk_untouched(&self) -> bool {
        self.back.disk().ram.bytes() == &self.original[..]
    }
}

#[test]
fn a_bad_grant_fails_its_request_and_leaves_no_mapping_behind() {
    for persistent in [false, true] {
        let mut r = rig(persistent);
        // A write whose third page does not exist: nothing written, the two good pages'
        // mappings (made for the device) given up again unless kept as persistent grants.
        let mut req = r.req(BLKIF_OP_WRITE, 8, 3);
        req.seg[2].gref = 4000;
        assert_eq!(r.submit(&req), BLKIF_RSP_ERROR);
        assert_eq!(
            r.back.last_error(),
            Some(RequestError::Grant(GrantIoError {
                gref: 4000,
                status: GNTST_bad_gntref
            }))
        );
        assert!(r.disk_untouched(), "persistent {persistent}");
        let kept = r.back.stats().persistent_maps as usize;
        assert_eq!(r.table.live_mappings(), kept);
        assert!(kept <= 2);
        // A read to the bad page: refused too; the good request after it is served by DMA.
        let mut rd = r.req(BLKIF_OP_READ, 0, 1);
        rd.seg[0].gref = 0x00ff_ffff;
        assert_eq!(r.submit(&rd), BLKIF_RSP_ERROR);
        let good = r.req(BLKIF_OP_READ, 16, 2);
        assert_eq!(r.submit(&good), BLKIF_RSP_OKAY);
        let mut got = [0u8; 4096];
        r.pages.read(1, 0, &mut got);
        assert!(got[..512].iter().all(|&b| b == 24));
        assert_eq!(r.back.stats().dma_requests, 1);
        let (_, _, _, _) = r.back.into_parts();
        assert_eq!(r.table.live_mappings(), 0, "persistent {persistent}");
    }
}

#[test]
fn invalid_requests_are_refused_before_anything_is_mapped() {
    let mut r = rig(false);
    let mut zero = r.req(BLKIF_OP_READ, 0, 1);
    zero.nr_segments = 0;
    let mut twelve = r.req(BLKIF_OP_READ, 0, 11);
    twelve.nr_segments = 12;
    let mut range = r.req(BLKIF_OP_WRITE, 0, 1);
    range.seg[0].first_sect = 6;
    range.seg[0].last_sect = 2;
    let mut eight = r.req(BLKIF_OP_WRITE, 0, 1);
    eight.seg[0].last_sect = 8;
    let past = r.req(BLKIF_OP_WRITE, 256 - 8, 2);
    let wrap = r.req(BLKIF_OP_READ, u64::MAX - 3, 1);
    for req in [zero, twelve, range, eight, past, wrap] {
        assert_eq!(r.submit(&req), BLKIF_RSP_ERROR);
    }
    assert_eq!(r.back.stats().map_hypercalls, 0, "nothing mapped for them");
    assert_eq!(r.table.live_mappings(), 0);
    assert!(r.disk_untouched());
}

/// An indirect request whose segment list is in `list_page` (a granted page of `r`), `nr`
/// segments cycling over the rig's 11 pages.
fn indirect(r: &mut Rig, list: &FrontPages, op: u8, sector: u64, nr: u16) -> BlkifRequestIndirect {
    let segs: Vec<BlkifRequestSegment> = (0..usize::from(nr))
        .map(|i| BlkifRequestSegment {
            gref: r.pages.gref(i % 11),
            first_sect: 0,
            last_sect: 7,
            ..Default::default()
        })
        .collect();
    list.write_shared(0, 0, segs.as_bytes());
    let mut grefs = [0; 8];
    grefs[0] = list.gref(0);
    BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: op,
        nr_segments: nr,
        id: 0x1d1d_0000 + u64::from(nr),
        sector_number: sector,
        indirect_grefs: grefs,
        ..Default::default()
    }
}

#[test]
fn hostile_indirect_requests_over_persistent_grants() {
    let mut r = rig(true);
    r.back.set_max_indirect_segments(32);
    let list = r.table.grant(1);
    let submit = |r: &mut Rig, req: &BlkifRequestIndirect| {
        let mut view = &*r.page;
        assert!(r.ring.push_request_bytes(&mut view, req.as_bytes()));
        r.ring.push_requests(&mut view);
        assert_eq!(r.back.serve().unwrap().requests, 1);
        r.ring
            .get_response(&view)
            .unwrap()
            .expect("answered")
            .status
    };
    // The indirect page's grant does not exist: refused, nothing written, nothing mapped.
    let mut req = indirect(&mut r, &list, BLKIF_OP_WRITE, 0, 20);
    req.indirect_grefs[0] = 4000;
    assert_eq!(submit(&mut r, &req), BLKIF_RSP_ERROR);
    assert!(matches!(
        r.back.last_error(),
        Some(RequestError::Grant(GrantIoError { gref: 4000, .. }))
    ));
    assert_eq!(r.table.live_mappings(), 0);
    // A segment in the list with a bad grant, then one with a bad sector range.
    let mut segs = indirect(&mut r, &list, BLKIF_OP_WRITE, 0, 12);
    let bad: Vec<BlkifRequestSegment> = (0..12)
        .map(|i| BlkifRequestSegment {
            gref: if i == 11 { 4001 } else { r.pages.gref(i % 11) },
            first_sect: 0,
            last_sect: 7,
            ..Default::default()
        })
        .collect();
    list.write_shared(0, 0, bad.as_bytes());
    segs.id = 77;
    assert_eq!(submit(&mut r, &segs), BLKIF_RSP_ERROR);
    assert!(r.disk_untouched());
    let mut range = bad.clone();
    range[11].gref = r.pages.gref(0);
    range[5].last_sect = 8;
    list.write_shared(0, 0, range.as_bytes());
    assert_eq!(submit(&mut r, &segs), BLKIF_RSP_ERROR);
    assert!(matches!(
        r.back.last_error(),
        Some(RequestError::SegmentRange { index: 5, .. })
    ));
    assert!(r.disk_untouched());
    // A good one: written by DMA, its list read through the persistent mapping.
    let good = indirect(&mut r, &list, BLKIF_OP_WRITE, 0, 20);
    assert_eq!(submit(&mut r, &good), BLKIF_RSP_OKAY);
    assert!(r.back.disk().ram.bytes()[..20 * 4096]
        .chunks(4096)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == 0xa0 + (i % 11) as u8)));
    assert_eq!(r.back.stats().dma_requests, 1);
    let (_, _, grants, _) = r.back.into_parts();
    assert_eq!(
        grants.copies, 0,
        "nothing moved by grant copy (the bad ones failed)"
    );
    assert_eq!(r.table.live_mappings(), 0);
}
