//! Negative tests: a hostile netfront (and a hostile netback) against our ends, one corrupted
//! field at a time.
//!
//! Each bad tx packet must be answered on every one of its slots (`NETIF_RSP_ERROR`, extra-info
//! slots `NETIF_RSP_NULL`) with its own `TxError` variant and counter, deliver nothing, and leave
//! the vif serving the next good packet. Requests are pushed with raw rings, as a hostile front
//! end would, and served single-threaded.

mod common;

use std::sync::Arc;

use common::{EventChannel, FrontPages, GrantTable, Sender, FRONT_DOMID};
use hypercall_abi::grant_table::GNTST_bad_gntref;
use hypercall_abi::io::netif::{
    NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data,
    NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data, NetifExtraInfo, NetifRxRequest,
    NetifRxResponse, NetifTxRequest, NetifTxResponse, NETIF_RSP_ERROR, NETIF_RSP_NULL,
    NETIF_RSP_OKAY, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
    XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_GSO_TYPE_TCPV4,
};
use ring_drivers::netif::csum::{self, CsumError};
use ring_drivers::netif::{
    GrantIoError, GrantPages, NetBack, NetBackendInfo, NetFront, NetFrontendTransport,
    NetRxBackRing, NetRxFrontRing, NetTxBackRing, NetTxFrontRing, RxDrop, RxMeta, RxOutcome,
    TxError, TxMeta, RX_QUEUE_BYTES, RX_QUEUE_MAX, TX_BUDGET, XEN_NETBK_LEGACY_SLOTS_MAX,
};
use ring_drivers::shared_page::{AtomicPage, SharedPage};
use ring_drivers::RingError;
use zerocopy::IntoBytes;

type Back = NetBack<Arc<AtomicPage>, common::BackGrants, Sender>;

/// Writes a ring index as the other domain would (no `&mut` needed: the page is atomic).
fn set_word(page: &Arc<AtomicPage>, offset: usize, v: u32) {
    let mut view: &AtomicPage = page;
    view.store_release_u32(offset, v);
}

/// A hostile front end's raw rings and pages, and our back end serving them.
struct Rig {
    tx_page: Arc<AtomicPage>,
    rx_page: Arc<AtomicPage>,
    tx: NetTxFrontRing,
    rx: NetRxFrontRing,
    back: Back,
    pages: FrontPages,
    /// Slots pushed on tx (each must be answered once).
    pushed: usize,
    next_id: u16,
}

fn rig(sg: bool) -> Rig {
    rig_with(sg, true)
}

/// A 60-byte Ethernet + IPv4 + TCP frame from 10.0.2.21:7 with a right checksum.
fn tcp_frame() -> Vec<u8> {
    let mut f = vec![
        0x00, 0x16, 0x3e, 0, 0, 2, 0x00, 0x16, 0x3e, 0, 0, 1, 0x08, 0x00,
    ];
    f.extend_from_slice(&[
        0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 2, 21, 10, 0, 2, 2,
    ]);
    f.extend_from_slice(&[
        0, 7, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0x10, 0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(b"hello!");
    csum::complete(&mut f).unwrap();
    assert_eq!(csum::verify(&f), Ok(true));
    f
}

/// `no_csum`: the front end wrote `feature-no-csum-offload`.
fn rig_with(sg: bool, no_csum: bool) -> Rig {
    let tx_page = Arc::new(AtomicPage::new());
    let rx_page = Arc::new(AtomicPage::new());
    let tx = NetTxFrontRing::init(&mut &*tx_page);
    let rx = NetRxFrontRing::init(&mut &*rx_page);
    let grants = Arc::new(GrantTable::default());
    let mut pages = grants.grant(24);
    for i in 0..24 {
        pages.write(i, 0, &[i as u8; 4096]);
    }
    let t = NetFrontendTransport {
        tx_ring_ref: 1,
        rx_ring_ref: 2,
        event_channel: 3,
        feature_sg: sg,
        feature_rx_notify: true,
        no_csum_offload: no_csum,
    };
    let notified = Arc::new(EventChannel::default());
    let back = Back::new(
        tx_page.clone(),
        rx_page.clone(),
        FRONT_DOMID,
        &t,
        grants.backend_view(),
        notified.sender(),
    )
    .unwrap();
    Rig {
        tx_page,
        rx_page,
        tx,
        rx,
        back,
        pages,
        pushed: 0,
        next_id: 100,
    }
}

impl Rig {
    /// A data slot on page `page` (a valid grant), with a fresh id.
    fn slot(&mut self, page: usize, offset: u16, size: u16, flags: u16) -> NetifTxRequest {
        self.next_id += 1;
        NetifTxRequest {
            gref: self.pages.gref(page),
            offset,
            flags,
            id: self.next_id,
            size,
        }
    }

    fn push(&mut self, req: &NetifTxRequest) {
        assert!(self.tx.push_request(&mut &*self.tx_page, req));
        self.pushed += 1;
    }

    fn push_extra(&mut self, extra: &NetifExtraInfo) {
        assert!(self
            .tx
            .push_request_bytes(&mut &*self.tx_page, extra.as_bytes()));
        self.pushed += 1;
    }

    /// Publishes, serves, returns the frames delivered and every response published.
    fn serve(&mut self) -> (Vec<Vec<u8>>, Vec<NetifTxResponse>) {
        self.tx.push_requests(&mut &*self.tx_page);
        let mut frames = Vec::new();
        self.back.serve_tx(|f, _| frames.push(f.to_vec())).unwrap();
        let mut rsps = Vec::new();
        while let Some(r) = self.tx.get_response(&*self.tx_page).unwrap() {
            rsps.push(r);
        }
        (frames, rsps)
    }

    /// Serves and expects one refused packet: nothing delivered, `error` recorded and counted,
    /// every slot answered (data slots ERROR, extras NULL).
    fn expect_refused(&mut self, error: TxError, extras: usize) {
        let before = (self.back.stats().tx_errors, self.pushed);
        let (frames, rsps) = self.serve();
        assert!(frames.is_empty(), "{error:?}: nothing delivered");
        assert_eq!(self.back.last_error(), Some(error));
        assert_eq!(self.back.stats().tx_errors, before.0 + 1);
        assert_eq!(rsps.len(), self.pushed, "{error:?}: every slot answered");
        let nulls = rsps.iter().filter(|r| r.status == NETIF_RSP_NULL).count();
        assert_eq!(nulls, extras);
        assert!(rsps
            .iter()
            .all(|r| r.status == NETIF_RSP_ERROR || r.status == NETIF_RSP_NULL));
        self.pushed = 0;
        self.still_serves();
    }

    /// A good two-slot packet still goes through.
    fn still_serves(&mut self) {
        let a = self.slot(1, 100, 1000, NETTXF_more_data);
        let b = self.slot(2, 0, 600, 0);
        self.push(&a);
        self.push(&b);
        let (frames, rsps) = self.serve();
        assert_eq!(frames.len(), 1, "the vif still serves");
        assert_eq!(frames[0].len(), 1000);
        assert!(frames[0][..400].iter().all(|&x| x == 1));
        assert!(frames[0][400..].iter().all(|&x| x == 2));
        assert_eq!(rsps.len(), 2);
        assert!(rsps.iter().all(|r| r.status == NETIF_RSP_OKAY));
        self.pushed = 0;
    }
}

#[test]
fn good_packets_with_flags_and_skipped_extras() {
    let mut r = rig(true);
    r.still_serves();
    // One slot, csum_blank (a TCP frame whose checksum is left blank), with a multicast extra
    // (not offered: skipped). The back end fills the checksum in.
    let tcp = tcp_frame();
    let mut blank = tcp.clone();
    blank[50..52].fill(0);
    r.pages.write(3, 0, &blank);
    let first = r.slot(3, 0, 60, NETTXF_csum_blank | NETTXF_extra_info);
    r.push(&first);
    let mut mcast = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        ..Default::default()
    };
    mcast.u = [0x0100, 0x5e00, 0x0100];
    r.push_extra(&mcast);
    r.tx.push_requests(&mut &*r.tx_page);
    let mut got = Vec::new();
    r.back.serve_tx(|f, m| got.push((f.to_vec(), m))).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, tcp, "checksum completed");
    assert_eq!(
        got[0].1,
        TxMeta {
            csum_blank: false,
            data_validated: true
        }
    );
    assert_eq!(r.back.stats().tx_csum_completed, 1);
    let mut rsps = Vec::new();
    while let Some(x) = r.tx.get_response(&*r.tx_page).unwrap() {
        rsps.push(x);
    }
    assert_eq!(rsps.len(), 2);
    assert!(rsps.contains(&NetifTxResponse {
        id: first.id,
        status: NETIF_RSP_OKAY
    }));
    assert_eq!(r.back.stats().tx_extra_slots, 1);
    // A GSO extra of type NONE is harmless too.
    let first = r.slot(4, 0, 60, NETTXF_extra_info);
    r.push(&first);
    let mut gso = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
        ..Default::default()
    };
    gso.set_gso(0, 0, 0);
    r.push_extra(&gso);
    let (frames, _) = r.serve();
    assert_eq!(frames, vec![vec![4; 60]]);
    // csum_blank on a frame that is not TCP or UDP over IP: refused, not forwarded half-done.
    let first = r.slot(4, 0, 60, NETTXF_csum_blank);
    r.push(&first);
    r.pushed = 1;
    r.expect_refused(TxError::Checksum(CsumError::NotIp), 0);
    assert_eq!(r.back.stats().tx_csum_errors, 1);
}

#[test]
fn size_zero_and_runt_first_slots() {
    let mut r = rig(true);
    for size in [0, 1, 13] {
        let s = r.slot(1, 0, size, 0);
        r.push(&s);
        r.expect_refused(TxError::TooShort { size }, 0);
    }
    // A runt that claims more slots: the whole chain is consumed and answered.
    let a = r.slot(1, 0, 0, NETTXF_more_data);
    let b = r.slot(2, 0, 100, NETTXF_more_data);
    let c = r.slot(3, 0, 100, 0);
    for s in [a, b, c] {
        r.push(&s);
    }
    r.expect_refused(TxError::TooShort { size: 0 }, 0);
    assert_eq!(r.back.stats().tx_too_short, 4);
}

#[test]
fn slots_crossing_their_page() {
    let mut r = rig(true);
    // The first slot's own data past the page.
    let s = r.slot(1, 4000, 200, 0);
    r.push(&s);
    r.expect_refused(
        TxError::CrossesPage {
            offset: 4000,
            size: 200,
        },
        0,
    );
    // A fragment past the page.
    let a = r.slot(1, 0, 3000, NETTXF_more_data);
    let b = r.slot(2, 3000, 2000, 0);
    r.push(&a);
    r.push(&b);
    r.expect_refused(
        TxError::CrossesPage {
            offset: 3000,
            size: 2000,
        },
        0,
    );
    // Offset alone past the page (offset 0xffff, size 1 would wrap a u16 sum).
    let s = r.slot(1, 0xffff, 20, 0);
    r.push(&s);
    r.expect_refused(
        TxError::CrossesPage {
            offset: 0xffff,
            size: 20,
        },
        0,
    );
    assert_eq!(r.back.stats().tx_crosses_page, 3);
}

#[test]
fn fragments_larger_than_the_frame() {
    let mut r = rig(true);
    // A 64 KiB+ frame whose size wrapped: first says 100, the fragments carry more.
    let a = r.slot(1, 0, 100, NETTXF_more_data);
    let b = r.slot(2, 0, 4096, NETTXF_more_data);
    let c = r.slot(3, 0, 4096, 0);
    for s in [a, b, c] {
        r.push(&s);
    }
    r.expect_refused(
        TxError::FragmentTooBig {
            size: 4096,
            remaining: 100,
        },
        0,
    );
    assert_eq!(r.back.stats().tx_fragment_too_big, 1);
}

#[test]
fn more_slots_than_xsa39_allows() {
    let mut r = rig(true);
    let n = XEN_NETBK_LEGACY_SLOTS_MAX + 1;
    let first = r.slot(0, 0, (n * 100) as u16, NETTXF_more_data);
    r.push(&first);
    for i in 1..n {
        let flags = if i + 1 < n { NETTXF_more_data } else { 0 };
        let s = r.slot(i % 24, 0, 100, flags);
        r.push(&s);
    }
    r.expect_refused(TxError::TooManySlots, 0);
    // Exactly the limit is fine.
    let n = XEN_NETBK_LEGACY_SLOTS_MAX;
    let first = r.slot(0, 0, (n * 100) as u16, NETTXF_more_data);
    r.push(&first);
    for i in 1..n {
        let flags = if i + 1 < n { NETTXF_more_data } else { 0 };
        let s = r.slot(i, 0, 100, flags);
        r.push(&s);
    }
    let (frames, rsps) = r.serve();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), n * 100);
    assert_eq!(rsps.len(), n);
}

#[test]
fn an_endless_chain_is_answered_slot_by_slot_within_the_budget() {
    let mut r = rig(true);
    // The front end keeps the chain going forever: every slot has more_data.
    let mut answered = 0;
    let first = r.slot(0, 0, 60_000, NETTXF_more_data);
    r.push(&first);
    for round in 0..6 {
        while !r.tx.is_full() {
            let s = r.slot(round % 24, 0, 1, NETTXF_more_data);
            r.push(&s);
        }
        r.tx.push_requests(&mut &*r.tx_page);
        let served = r.back.serve_tx(|_, _| panic!("nothing delivered")).unwrap();
        assert!(served.slots <= TX_BUDGET);
        while let Some(x) = r.tx.get_response(&*r.tx_page).unwrap() {
            assert_eq!(x.status, NETIF_RSP_ERROR);
            answered += 1;
        }
    }
    // All but the few held before the failure were answered as they came; nothing is stuck.
    assert!(
        answered >= 6 * 256 - XEN_NETBK_LEGACY_SLOTS_MAX,
        "{answered}"
    );
    assert_eq!(r.back.stats().tx_too_many_slots, 1);
}

#[test]
fn bad_extra_info_slots() {
    let mut r = rig(true);
    for t in [0u8, 5, 200] {
        let s = r.slot(1, 0, 60, NETTXF_extra_info);
        r.push(&s);
        r.push_extra(&NetifExtraInfo {
            r#type: t,
            ..Default::default()
        });
        r.expect_refused(TxError::BadExtraType(t), 1);
    }
    // GSO is not offered.
    let s = r.slot(1, 0, 60, NETTXF_extra_info);
    r.push(&s);
    let mut gso = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
        ..Default::default()
    };
    gso.set_gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0);
    r.push_extra(&gso);
    r.expect_refused(TxError::GsoNotOffered, 1);
    // Five extras chained with MORE.
    let s = r.slot(1, 0, 60, NETTXF_extra_info);
    r.push(&s);
    for i in 0..5 {
        r.push_extra(&NetifExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
            flags: if i < 4 { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 },
            ..Default::default()
        });
    }
    r.expect_refused(TxError::TooManyExtras, 5);
    assert_eq!(r.back.stats().tx_bad_extra, 5);
}

#[test]
fn bad_grant_references() {
    let mut r = rig(true);
    let mut s = r.slot(1, 0, 60, 0);
    s.gref = 7; // never granted
    r.push(&s);
    r.expect_refused(
        TxError::Grant(GrantIoError {
            gref: 7,
            status: GNTST_bad_gntref,
        }),
        0,
    );
    // A bad reference in the second slot of a chain.
    let a = r.slot(1, 0, 200, NETTXF_more_data);
    let mut b = r.slot(2, 0, 100, 0);
    b.gref = 99_999;
    r.push(&a);
    r.push(&b);
    r.expect_refused(
        TxError::Grant(GrantIoError {
            gref: 99_999,
            status: GNTST_bad_gntref,
        }),
        0,
    );
    assert_eq!(r.back.stats().tx_grant_errors, 2);
}

#[test]
fn a_packet_split_across_two_publishes_is_assembled() {
    let mut r = rig(true);
    let a = r.slot(1, 0, 300, NETTXF_more_data);
    r.push(&a);
    let (frames, rsps) = r.serve();
    assert!(frames.is_empty() && rsps.is_empty(), "held, not answered");
    let b = r.slot(2, 0, 100, 0);
    r.push(&b);
    let (frames, rsps) = r.serve();
    assert_eq!(frames.len(), 1);
    assert_eq!(rsps.len(), 2);
}

#[test]
fn tx_producer_overrun_breaks_the_vif_for_good() {
    let mut r = rig(true);
    let s = r.slot(1, 0, 60, 0);
    r.push(&s);
    r.tx.push_requests(&mut &*r.tx_page);
    set_word(&r.tx_page, 0, 300); // req_prod far beyond the ring
    let e = r.back.serve_tx(|_, _| panic!("nothing delivered"));
    assert!(matches!(e, Err(RingError::IndexOverrun { .. })));
    set_word(&r.tx_page, 0, 1);
    assert_eq!(
        r.back.serve_tx(|_, _| {}).unwrap_err(),
        e.unwrap_err(),
        "sticky"
    );
    assert!(r.back.broken().is_some());
}

#[test]
fn rx_overrun_breaks_the_vif() {
    let mut r = rig(true);
    set_word(&r.rx_page, 0, 257);
    assert!(r.back.send(&[1; 60], RxMeta::default()).is_err());
    assert!(r.back.broken().is_some());
}

/// Posts `n` rx buffers on pages 10.. with ids 0..
fn post_rx(r: &mut Rig, n: usize) {
    for i in 0..n {
        let req = NetifRxRequest {
            id: i as u16,
            pad: 0,
            gref: r.pages.gref(10 + i),
        };
        assert!(r.rx.push_request(&mut &*r.rx_page, &req));
    }
    r.rx.push_requests(&mut &*r.rx_page);
}

fn rx_responses(r: &mut Rig) -> Vec<NetifRxResponse> {
    let mut v = Vec::new();
    while let Some(x) = r.rx.get_response(&*r.rx_page).unwrap() {
        v.push(x);
    }
    v
}

#[test]
fn rx_frames_land_in_posted_buffers_with_flags() {
    let mut r = rig_with(true, false);
    post_rx(&mut r, 4);
    let frame: Vec<u8> = (0..5000).map(|i| i as u8).collect();
    let meta = RxMeta {
        csum_blank: true,
        data_validated: true,
    };
    assert_eq!(r.back.send(&frame, meta).unwrap(), RxOutcome::Delivered);
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps.len(), 2);
    assert_eq!(
        rsps[0].flags,
        NETRXF_csum_blank | NETRXF_data_validated | NETRXF_more_data
    );
    assert_eq!(
        (rsps[0].status, rsps[1].status, rsps[1].flags),
        (4096, 904, 0)
    );
    let mut got = vec![0; 5000];
    r.pages.read(10, 0, &mut got[..4096]);
    r.pages.read(11, 0, &mut got[4096..]);
    assert_eq!(got, frame);
    assert_eq!(rsps[0].flags & NETRXF_extra_info, 0);
}

#[test]
fn rx_never_refilled_queues_then_drops_and_counts() {
    let mut r = rig(true);
    for i in 0..RX_QUEUE_MAX {
        assert_eq!(
            r.back.send(&[i as u8; 60], RxMeta::default()).unwrap(),
            RxOutcome::Queued
        );
    }
    for _ in 0..10 {
        assert_eq!(
            r.back.send(&[0; 60], RxMeta::default()).unwrap(),
            RxOutcome::Dropped(RxDrop::QueueFull)
        );
    }
    assert_eq!(r.back.stats().rx_dropped_no_buffer, 10);
    assert_eq!(r.back.rx_queued(), RX_QUEUE_MAX);
    // Buffers posted at last: the oldest queued frames go out first.
    post_rx(&mut r, 3);
    assert_eq!(r.back.flush_rx().unwrap(), 3);
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps.len(), 3);
    let mut b = [0; 60];
    r.pages.read(12, 0, &mut b);
    assert_eq!(b, [2; 60]);
}

#[test]
fn rx_malformed_frames_and_bad_buffers_are_dropped_and_counted() {
    let mut r = rig(false);
    post_rx(&mut r, 2);
    assert_eq!(
        r.back.send(&[], RxMeta::default()).unwrap(),
        RxOutcome::Dropped(RxDrop::Empty)
    );
    assert_eq!(
        r.back.send(&[0; 4097], RxMeta::default()).unwrap(),
        RxOutcome::Dropped(RxDrop::TooBig(4097)),
        "no feature-sg: one page at most"
    );
    assert_eq!(
        r.back.send(&vec![0; 70_000], RxMeta::default()).unwrap(),
        RxOutcome::Dropped(RxDrop::TooBig(70_000))
    );
    assert_eq!(r.back.stats().rx_dropped_malformed, 3);
    assert!(rx_responses(&mut r).is_empty(), "no buffer used");
    // A posted buffer with a bad grant: answered ERROR, frame dropped, the next buffer works.
    let req = NetifRxRequest {
        id: 9,
        pad: 0,
        gref: 4242,
    };
    let mut r = rig(false);
    r.rx.push_request(&mut &*r.rx_page, &req);
    post_rx(&mut r, 1);
    assert!(matches!(
        r.back.send(&[1; 60], RxMeta::default()).unwrap(),
        RxOutcome::Dropped(RxDrop::Grant(_))
    ));
    assert_eq!(
        r.back.send(&[2; 60], RxMeta::default()).unwrap(),
        RxOutcome::Delivered
    );
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps[0].id, 9);
    assert_eq!(rsps[0].status, NETIF_RSP_ERROR);
    assert_eq!(rsps[1].status, 60);
    assert_eq!(r.back.stats().rx_grant_errors, 1);
}

// --- A hostile back end against our front end. ---

#[test]
fn front_survives_a_lying_back_end() {
    let tx_page = Arc::new(AtomicPage::new());
    let rx_page = Arc::new(AtomicPage::new());
    let grants = Arc::new(GrantTable::default());
    let to_back = Arc::new(EventChannel::default());
    let mut front = NetFront::new(
        tx_page.clone(),
        rx_page.clone(),
        grants.grant(4),
        grants.grant(4),
        to_back.sender(),
    );
    front.connect(NetBackendInfo::default());
    let mut tx: NetTxBackRing = NetTxBackRing::attach(&*tx_page).unwrap();
    let mut rx: NetRxBackRing = NetRxBackRing::attach(&*rx_page).unwrap();
    front.transmit(&[7; 60]).unwrap();
    let req = tx.get_request(&*tx_page).unwrap().unwrap();
    // A tx response for an id never sent.
    tx.push_response(
        &mut &*tx_page,
        &NetifTxResponse {
            id: req.id ^ 3,
            status: NETIF_RSP_OKAY,
        },
    );
    tx.push_responses(&mut &*tx_page);
    front.poll().unwrap();
    assert_eq!(front.stats().bad_responses, 1);
    // Rx: an error status, an offset+length past the page, a wrong id, then a good frame.
    let reqs: Vec<NetifRxRequest> = (0..4)
        .map(|_| rx.get_request(&*rx_page).unwrap().unwrap())
        .collect();
    let bad = [
        NetifRxResponse {
            id: reqs[0].id,
            offset: 0,
            flags: 0,
            status: NETIF_RSP_ERROR,
        },
        NetifRxResponse {
            id: reqs[1].id,
            offset: 4000,
            flags: 0,
            status: 200,
        },
        NetifRxResponse {
            id: reqs[0].id,
            offset: 0,
            flags: 0,
            status: 60,
        },
        NetifRxResponse {
            id: reqs[3].id,
            offset: 0,
            flags: 0,
            status: 60,
        },
    ];
    for b in &bad {
        rx.push_response(&mut &*rx_page, b);
    }
    rx.push_responses(&mut &*rx_page);
    let got = front.receive().unwrap();
    assert_eq!(got, Some(vec![0; 60]));
    assert_eq!(front.stats().rx_errors, 3);
    assert_eq!(front.rx_posted(), 4, "every buffer posted again");
    // More responses than requests: a ring error, not a panic.
    set_word(&rx_page, 8, 1000); // rsp_prod
    assert!(front.receive().is_err());
}

/// A multi-page frame (feature-sg) with fewer buffers posted than it needs: `send` queues it
/// and returns instead of spinning on the one buffer that is there (dom0 would hang with every
/// other vif); once the front end posts the rest, the frame goes out whole.
#[test]
fn rx_frame_waits_for_enough_buffers_without_spinning() {
    let mut r = rig(true);
    post_rx(&mut r, 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = r.back.send(&[7; 5000], RxMeta::default()).unwrap();
        tx.send(()).unwrap();
        (r, out)
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("send returned (no spin on too few rx buffers)");
    let (mut r, out) = handle.join().unwrap();
    assert_eq!(out, RxOutcome::Queued);
    assert!(rx_responses(&mut r).is_empty(), "no buffer used yet");
    post_rx(&mut r, 1);
    assert_eq!(r.back.flush_rx().unwrap(), 1);
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps.len(), 2);
    assert_eq!(rsps[0].status, 4096);
    assert_eq!(rsps[1].status, 5000 - 4096);
}

// --- Limits and batching (dom0's heap is small; one hypercall per frame is slow). ---

/// A frame larger than the back end forwards is refused from its first slot, before any grant
/// copy and before any buffer is touched; one at the limit goes through.
#[test]
fn oversize_frames_are_refused_before_any_copy() {
    let mut r = rig(true);
    r.back.set_max_frame(1518);
    for size in [1519u16, 4000, 65535] {
        let copies = r.back.stats().grant_copy_calls;
        let a = r.slot(1, 0, size, NETTXF_more_data);
        let b = r.slot(2, 0, size - 1000, 0);
        r.push(&a);
        r.push(&b);
        r.expect_refused(TxError::Oversize { size }, 0);
        // expect_refused served one more good packet (one copy) after the refusal.
        assert_eq!(
            r.back.stats().grant_copy_calls,
            copies + 1,
            "no copy for it"
        );
    }
    assert_eq!(r.back.stats().tx_oversize, 3);
    let a = r.slot(1, 0, 1518, NETTXF_more_data);
    let b = r.slot(2, 0, 518, 0);
    r.push(&a);
    r.push(&b);
    let (frames, rsps) = r.serve();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 1518);
    assert!(rsps.iter().all(|x| x.status == NETIF_RSP_OKAY));
}

/// The packets of one pass are copied with one grant-copy call, delivered in order, each with
/// its own bytes; a bad grant in the middle costs that packet alone (the batch is redone packet
/// by packet to find it).
#[test]
fn a_pass_is_one_grant_copy_and_a_bad_grant_refuses_only_its_packet() {
    let mut r = rig(true);
    for p in 0..24 {
        r.pages.write(p, 0, &[p as u8 + 100; 4096]);
    }
    let copies = r.back.stats().grant_copy_calls;
    for i in 0..20u16 {
        let s = r.slot(usize::from(i), i * 7, 60 + i * 70, 0);
        r.push(&s);
    }
    let (frames, rsps) = r.serve();
    assert_eq!(
        r.back.stats().grant_copy_calls,
        copies + 1,
        "one call for 20"
    );
    assert_eq!(frames.len(), 20);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.len(), 60 + i * 70);
        assert!(
            f.iter().all(|&x| x == i as u8 + 100),
            "frame {i}'s own bytes"
        );
    }
    assert_eq!(rsps.len(), 20);
    assert!(rsps.iter().all(|x| x.status == NETIF_RSP_OKAY));
    r.pushed = 0;
    // Packet 5 of 10 names a grant that does not exist.
    let mut bad_id = 0;
    for i in 0..10u16 {
        let mut s = r.slot(usize::from(i), 0, 100, 0);
        if i == 5 {
            s.gref = 4242;
            bad_id = s.id;
        }
        r.push(&s);
    }
    let (frames, rsps) = r.serve();
    assert_eq!(frames.len(), 9);
    assert_eq!(rsps.len(), 10, "every slot answered");
    for x in &rsps {
        let want = if x.id == bad_id {
            NETIF_RSP_ERROR
        } else {
            NETIF_RSP_OKAY
        };
        assert_eq!(x.status, want, "slot {}", x.id);
    }
    assert!(matches!(r.back.last_error(), Some(TxError::Grant(_))));
    assert_eq!(r.back.stats().tx_grant_errors, 1);
}

/// More than a batch buffer's worth in one pass: several copy calls, every frame intact.
#[test]
fn a_pass_larger_than_the_batch_buffer_is_copied_in_several_calls() {
    let mut r = rig(true);
    let copies = r.back.stats().grant_copy_calls;
    // 60 frames of 3000 bytes (two slots each): 180 000 bytes, three 64 KiB batches.
    for i in 0..60usize {
        let a = r.slot(i % 10, 1096, 3000, NETTXF_more_data);
        let b = r.slot(i % 10 + 10, 0, 0, 0);
        r.push(&a);
        r.push(&b);
    }
    let (frames, rsps) = r.serve();
    assert_eq!(frames.len(), 60);
    assert_eq!(rsps.len(), 120);
    assert!(frames.iter().all(|f| f.len() == 3000));
    let calls = r.back.stats().grant_copy_calls - copies;
    assert!((3..=4).contains(&calls), "{calls} copy calls");
}

/// Frames queued for the front end go out many per grant-copy call; the queue is bounded in
/// bytes (no frame-count-times-64-KiB growth).
#[test]
fn rx_queue_flushes_in_one_call_and_is_bounded_in_bytes() {
    let mut r = rig(true);
    for i in 0..10u8 {
        assert_eq!(
            r.back.queue(&[i; 1514], RxMeta::default()).unwrap(),
            RxOutcome::Queued
        );
    }
    assert!(rx_responses(&mut r).is_empty(), "nothing before the flush");
    post_rx(&mut r, 12);
    let copies = r.back.stats().grant_copy_calls;
    assert_eq!(r.back.flush_rx().unwrap(), 10);
    assert_eq!(
        r.back.stats().grant_copy_calls,
        copies + 1,
        "one call for 10"
    );
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps.len(), 10);
    for (i, x) in rsps.iter().enumerate() {
        assert_eq!(x.status, 1514);
        let mut b = vec![0; 1514];
        r.pages.read(10 + usize::from(x.id), 0, &mut b);
        assert!(b.iter().all(|&v| v == i as u8));
    }
    // Full-size frames fit RX_QUEUE_BYTES / 1514 times; a full queue is flushed into the two
    // buffers left, so two more fit; then, with no buffer, frames are dropped.
    let fit = RX_QUEUE_BYTES / 1514;
    for _ in 0..fit + 2 {
        assert_eq!(
            r.back.queue(&[9; 1514], RxMeta::default()).unwrap(),
            RxOutcome::Queued
        );
    }
    assert_eq!(
        r.back.queue(&[9; 1514], RxMeta::default()).unwrap(),
        RxOutcome::Dropped(RxDrop::QueueFull)
    );
    assert_eq!(rx_responses(&mut r).len(), 2);
    assert_eq!(r.back.rx_queued(), fit);
    assert_eq!(r.back.stats().rx_dropped_no_buffer, 1);
}

/// A burst larger than the queue, with buffers posted, loses nothing: the queue is flushed
/// when it fills instead of dropping.
#[test]
fn a_burst_larger_than_the_rx_queue_loses_nothing_while_buffers_are_posted() {
    let mut r = rig(true);
    post_rx(&mut r, 14);
    let fit = RX_QUEUE_BYTES / 1514;
    for i in 0..fit + 14 {
        assert_eq!(
            r.back.queue(&[i as u8; 1514], RxMeta::default()).unwrap(),
            RxOutcome::Queued,
            "frame {i}"
        );
    }
    assert_eq!(r.back.stats().rx_dropped_no_buffer, 0);
    assert_eq!(rx_responses(&mut r).len(), 14);
}

/// A front end that refuses offload (`feature-no-csum-offload`) never sees `csum_blank`: the
/// back end completes the checksum and says `data_validated`; one that cannot be completed is
/// dropped.
#[test]
fn rx_blank_checksums_are_completed_for_a_front_end_refusing_offload() {
    let mut r = rig_with(true, true);
    post_rx(&mut r, 2);
    let tcp = tcp_frame();
    let mut blank = tcp.clone();
    blank[50..52].fill(0);
    let meta = RxMeta {
        csum_blank: true,
        data_validated: true,
    };
    assert_eq!(r.back.send(&blank, meta).unwrap(), RxOutcome::Delivered);
    assert!(matches!(
        r.back.send(&[1; 60], meta).unwrap(),
        RxOutcome::Dropped(RxDrop::Checksum(_))
    ));
    let rsps = rx_responses(&mut r);
    assert_eq!(rsps.len(), 1);
    assert_eq!(rsps[0].flags, NETRXF_data_validated);
    let mut got = vec![0; 60];
    r.pages.read(10 + usize::from(rsps[0].id), 0, &mut got);
    assert_eq!(got, tcp);
    assert_eq!(r.back.stats().rx_csum_completed, 1);
}
