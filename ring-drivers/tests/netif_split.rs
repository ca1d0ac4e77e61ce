//! netfront against netback in two threads: frames out on tx, echoed back on rx, bytes checked;
//! then the XenbusState handshake through a fake store, close, reconnect and traffic again.
//!
//! The "domains" share two `AtomicPage`s (the rings), a fake grant table (the front end's tx
//! and rx pages) and two fake event-channel directions.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use common::{EventChannel, FrontPages, GrantTable, Rng, Sender, Waiter, FRONT_DOMID};
use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::netif::{
    format_mac, keys, mac_for_domain, NetBack, NetBackStats, NetBackendInfo, NetFront,
    NetFrontError, NetFrontendTransport, RxMeta, RxOutcome,
};
use ring_drivers::shared_page::AtomicPage;
use ring_drivers::xenbus::state::{BackendAction, FrontendAction, XenbusBackend, XenbusFrontend};

type Front = NetFront<Arc<AtomicPage>, FrontPages, Sender>;
type Back = NetBack<Arc<AtomicPage>, common::BackGrants, Sender>;

fn transport(sg: bool) -> NetFrontendTransport {
    NetFrontendTransport {
        tx_ring_ref: 1,
        rx_ring_ref: 2,
        event_channel: 3,
        feature_sg: sg,
        feature_rx_notify: true,
        no_csum_offload: true,
    }
}

/// A connected pair: the front end here, an echoing back end in its own thread.
struct Pair {
    front: Front,
    front_wait: Waiter,
    to_back: Arc<EventChannel>,
    back: thread::JoinHandle<(NetBackStats, Option<ring_drivers::RingError>)>,
}

fn pair(tx_pages: usize, rx_pages: usize) -> Pair {
    let (tx_ring, rx_ring) = (Arc::new(AtomicPage::new()), Arc::new(AtomicPage::new()));
    let grants = Arc::new(GrantTable::default());
    let to_back = Arc::new(EventChannel::default());
    let to_front = Arc::new(EventChannel::default());
    let mut front = Front::new(
        tx_ring.clone(),
        rx_ring.clone(),
        grants.grant(tx_pages),
        grants.grant(rx_pages),
        to_back.sender(),
    );
    let mut back = Back::new(
        tx_ring,
        rx_ring,
        FRONT_DOMID,
        &transport(true),
        grants.backend_view(),
        to_front.sender(),
    )
    .expect("fresh rings");
    front.connect(NetBackendInfo::default());
    let mut back_wait = to_back.waiter();
    let back = thread::spawn(move || {
        let mut frames = Vec::new();
        while back_wait.wait() {
            loop {
                let served = match back.on_event(|f, _| frames.push(f.to_vec())) {
                    Ok(s) => s,
                    Err(_) => return (back.stats(), back.broken()),
                };
                for f in frames.drain(..) {
                    let out = back.send(&f, RxMeta::default()).unwrap();
                    assert!(
                        matches!(out, RxOutcome::Delivered | RxOutcome::Queued),
                        "{out:?}"
                    );
                }
                if !served.more {
                    break;
                }
            }
        }
        (back.stats(), back.broken())
    });
    Pair {
        front,
        front_wait: to_front.waiter(),
        to_back,
        back,
    }
}

impl Pair {
    /// Sends `frames`, keeping at most `window` unanswered, and checks each echo.
    fn echo(&mut self, frames: &[Vec<u8>], window: usize) {
        let (mut sent, mut got) = (0, 0);
        while got < frames.len() {
            let mut progress = false;
            while sent < frames.len() && sent - got < window {
                match self.front.transmit(&frames[sent]) {
                    Ok(()) => {
                        sent += 1;
                        progress = true;
                    }
                    Err(NetFrontError::Busy) => break,
                    Err(e) => panic!("transmit: {e:?}"),
                }
            }
            while let Some(f) = self.front.receive().unwrap() {
                assert!(f == frames[got], "frame {got} came back changed");
                got += 1;
                progress = true;
            }
            if !progress && !self.front.prepare_to_wait().unwrap() {
                self.front_wait.wait();
            }
        }
    }

    fn finish(self) -> (NetBackStats, Option<ring_drivers::RingError>, Front) {
        self.to_back.close();
        let (stats, broken) = self.back.join().unwrap();
        (stats, broken, self.front)
    }
}

fn random_frames(seed: u64, n: usize, max: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| {
            let len = 14 + rng.below((max - 14) as u64 + 1) as usize;
            let mut f = vec![0; len];
            rng.fill(&mut f);
            f
        })
        .collect()
}

#[test]
fn thousands_of_frames_echo_intact() {
    let mut p = pair(64, 64);
    let frames = random_frames(3, 3000, 1514);
    p.echo(&frames, 48);
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let (stats, broken, mut front) = p.finish();
    front.poll().unwrap();
    assert_eq!(broken, None);
    assert_eq!(stats.tx_packets, 3000);
    assert_eq!(stats.rx_packets, 3000);
    assert_eq!((stats.tx_bytes, stats.rx_bytes), (bytes, bytes));
    assert_eq!(
        stats.tx_errors + stats.rx_dropped_no_buffer + stats.rx_grant_errors,
        0
    );
    let fs = front.stats();
    assert_eq!(
        (fs.tx_packets, fs.rx_packets, fs.rx_errors),
        (3000, 3000, 0)
    );
    assert_eq!(fs.tx_errors + fs.bad_responses, 0);
    // Notification suppression: far fewer events than frames in either direction.
    assert!(
        fs.notifications_sent < 3000 && stats.notifications_sent < 3000,
        "front sent {}, back sent {}",
        fs.notifications_sent,
        stats.notifications_sent
    );
    assert!(
        front.tx_free() == 64 && front.rx_posted() == 64,
        "every buffer came back"
    );
}

#[test]
fn multi_slot_frames_up_to_64k_echo_intact() {
    let mut p = pair(64, 64);
    let mut frames = random_frames(9, 60, 65535);
    frames.push(vec![0x5a; 65535]);
    frames.push(vec![0xa5; 4097]);
    frames.push(vec![0x11; 4096]);
    p.echo(&frames, 2);
    let (stats, broken, _) = p.finish();
    assert_eq!(broken, None);
    assert_eq!((stats.tx_packets, stats.rx_packets), (63, 63));
    assert!(stats.tx_slots > 63, "frames over a page used several slots");
}

#[test]
fn front_refuses_frames_it_cannot_send() {
    let mut p = pair(4, 4);
    assert_eq!(
        p.front.transmit(&[0; 13]),
        Err(NetFrontError::FrameSize(13))
    );
    assert_eq!(
        p.front.transmit(&vec![0; 65536]),
        Err(NetFrontError::FrameSize(65536))
    );
    // Four pages: a 5-page frame never fits.
    assert_eq!(
        p.front.transmit(&vec![0; 5 * 4096]),
        Err(NetFrontError::Busy)
    );
    p.front.connect(NetBackendInfo {
        feature_sg: false,
        ..NetBackendInfo::default()
    });
    assert_eq!(
        p.front.transmit(&[0; 4097]),
        Err(NetFrontError::FrameSize(4097))
    );
    p.finish();
}

// --- Handshake, close, reconnect. ---

const FRONT_DIR: &str = "/local/domain/1/device/vif/0";
const BACK_DIR: &str = "/local/domain/0/backend/vif/1/0";

/// Both ends' glue around the state machines, over a fake store, single-threaded.
struct World {
    store: HashMap<String, Vec<u8>>,
    grants: Arc<GrantTable>,
    rings: HashMap<u32, Arc<AtomicPage>>,
    next_gref: u32,
    front: XenbusFrontend,
    back: XenbusBackend,
    front_dev: Option<Front>,
    back_dev: Option<Back>,
    to_back: Arc<EventChannel>,
    to_front: Arc<EventChannel>,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            store: HashMap::new(),
            grants: Arc::new(GrantTable::default()),
            rings: HashMap::new(),
            next_gref: 5000,
            front: XenbusFrontend::new(),
            back: XenbusBackend::new(),
            front_dev: None,
            back_dev: None,
            to_back: Arc::new(EventChannel::default()),
            to_front: Arc::new(EventChannel::default()),
        };
        // The toolstack's nodes.
        let mac = format_mac(&mac_for_domain(FRONT_DOMID, 0));
        for dir in [FRONT_DIR, BACK_DIR] {
            w.write(dir, keys::STATE, "1");
            w.write(dir, keys::HANDLE, "0");
            w.write(dir, keys::MAC, &mac);
        }
        w
    }

    fn write(&mut self, dir: &str, key: &str, v: &str) {
        self.store
            .insert(format!("{dir}/{key}"), v.as_bytes().to_vec());
    }

    fn read(&self, dir: &str) -> impl FnMut(&str) -> Option<Vec<u8>> + '_ {
        let dir = dir.to_string();
        move |k| self.store.get(&format!("{dir}/{k}")).cloned()
    }

    fn state(&self, dir: &str) -> XenbusState {
        XenbusState::from_node(&self.store[&format!("{dir}/state")]).unwrap()
    }

    fn front_actions(&mut self, actions: Vec<FrontendAction>) {
        for a in actions {
            match a {
                FrontendAction::PublishTransport => {
                    let (tx, rx) = (Arc::new(AtomicPage::new()), Arc::new(AtomicPage::new()));
                    let dev = Front::new(
                        tx.clone(),
                        rx.clone(),
                        self.grants.grant(8),
                        self.grants.grant(8),
                        self.to_back.sender(),
                    );
                    let (tg, rg) = (self.next_gref, self.next_gref + 1);
                    self.next_gref += 2;
                    self.rings.insert(tg, tx);
                    self.rings.insert(rg, rx);
                    let t = NetFrontendTransport {
                        tx_ring_ref: tg,
                        rx_ring_ref: rg,
                        ..transport(true)
                    };
                    for (k, v) in t.to_keys() {
                        self.write(FRONT_DIR, k, &v);
                    }
                    self.front_dev = Some(dev);
                }
                FrontendAction::ReadBackendInfo | FrontendAction::Connect => {
                    let info = NetBackendInfo::from_keys(self.read(BACK_DIR)).unwrap();
                    self.front_dev.as_mut().unwrap().connect(info);
                }
                FrontendAction::Disconnect => self.front_dev = None,
                FrontendAction::SwitchState(s) => {
                    self.write(FRONT_DIR, keys::STATE, &format!("{}", s.raw()))
                }
            }
        }
    }

    fn back_actions(&mut self, actions: Vec<BackendAction>) {
        for a in actions {
            match a {
                BackendAction::PublishBackendInfo => {
                    for (k, v) in NetBackendInfo::default().to_keys() {
                        self.write(BACK_DIR, k, &v);
                    }
                }
                BackendAction::ReadFrontendTransport => {}
                BackendAction::Connect => {
                    let t = NetFrontendTransport::from_keys(self.read(FRONT_DIR)).unwrap();
                    let back = Back::new(
                        self.rings[&t.tx_ring_ref].clone(),
                        self.rings[&t.rx_ring_ref].clone(),
                        FRONT_DOMID,
                        &t,
                        self.grants.backend_view(),
                        self.to_front.sender(),
                    )
                    .unwrap();
                    self.back_dev = Some(back);
                }
                BackendAction::Disconnect => self.back_dev = None,
                BackendAction::SwitchState(s) => {
                    self.write(BACK_DIR, keys::STATE, &format!("{}", s.raw()))
                }
            }
        }
    }

    /// Fires both watches until nothing changes.
    fn settle(&mut self) {
        for _ in 0..20 {
            let before = (self.state(FRONT_DIR), self.state(BACK_DIR));
            let a = self.back.on_other_end_changed(before.0);
            self.back_actions(a);
            let a = self.front.on_other_end_changed(self.state(BACK_DIR));
            self.front_actions(a);
            if (self.state(FRONT_DIR), self.state(BACK_DIR)) == before {
                return;
            }
        }
        panic!("handshake does not settle");
    }

    /// One frame each way through the connected pair (single-threaded: serve by hand).
    fn ping(&mut self, seed: u8) {
        let frame: Vec<u8> = (0..200).map(|i| seed ^ i as u8).collect();
        let front = self.front_dev.as_mut().expect("front connected");
        front.transmit(&frame).unwrap();
        let back = self.back_dev.as_mut().expect("back connected");
        let mut got = Vec::new();
        back.serve_tx(|f, _| got.push(f.to_vec())).unwrap();
        assert_eq!(got, vec![frame.clone()]);
        let reply: Vec<u8> = frame.iter().map(|b| !b).collect();
        assert_eq!(
            back.send(&reply, RxMeta::default()).unwrap(),
            RxOutcome::Delivered
        );
        assert_eq!(front.receive().unwrap(), Some(reply));
    }
}

#[test]
fn handshake_connects_closes_and_reconnects() {
    let mut w = World::new();
    let a = w.back.start();
    w.back_actions(a);
    assert_eq!(w.state(BACK_DIR), XenbusState::InitWait);
    w.settle();
    assert_eq!(w.state(FRONT_DIR), XenbusState::Connected);
    assert_eq!(w.state(BACK_DIR), XenbusState::Connected);
    assert_eq!(
        w.store[&format!("{FRONT_DIR}/request-rx-copy")],
        b"1".to_vec()
    );
    assert_eq!(
        w.store[&format!("{BACK_DIR}/mac")],
        b"00:16:3e:00:00:01".to_vec()
    );
    w.ping(1);
    // The front end closes; both end Closed, both devices torn down.
    let a = w.front.close();
    w.front_actions(a);
    w.settle();
    assert_eq!(w.state(FRONT_DIR), XenbusState::Closed);
    assert_eq!(w.state(BACK_DIR), XenbusState::Closed);
    assert!(w.front_dev.is_none() && w.back_dev.is_none());
    // Reconnect: new rings, new grants, traffic again.
    let a = w.front.reconnect(w.state(BACK_DIR));
    w.front_actions(a);
    w.settle();
    assert_eq!(w.state(FRONT_DIR), XenbusState::Connected);
    assert_eq!(w.state(BACK_DIR), XenbusState::Connected);
    w.ping(2);
    w.ping(3);
}
