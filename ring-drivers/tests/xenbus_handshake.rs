//! The XenbusState handshake of both ends, driven through a fake xenstore until it settles, with
//! a real blkfront/blkback pair connected by it: connect, I/O, close, reconnect, close again.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{EventChannel, GrantTable, Sender, FRONT_DOMID};
use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::blkif::{keys, BackendInfo, BlkBack, BlkFront, FrontendTransport, RamDisk};
use ring_drivers::shared_page::AtomicPage;
use ring_drivers::xenbus::state::{BackendAction, FrontendAction, XenbusBackend, XenbusFrontend};

const FRONT_DIR: &str = "/local/domain/1/device/vbd/51712";
const BACK_DIR: &str = "/local/domain/0/backend/vbd/1/51712";
const RING_GREF: u32 = 2000;
const PORT: u32 = 7;

type Front = BlkFront<Arc<AtomicPage>, common::FrontPages, Sender>;
type Back = BlkBack<Arc<AtomicPage>, RamDisk, common::BackGrants, Sender>;

struct World {
    store: HashMap<String, Vec<u8>>,
    grants: Arc<GrantTable>,
    /// Ring pages the front end granted, by reference.
    rings: HashMap<u32, Arc<AtomicPage>>,
    front: XenbusFrontend,
    back: XenbusBackend,
    /// Set up by PublishTransport, running after Connect.
    front_dev: Option<Front>,
    back_dev: Option<Back>,
    /// The back end's disk while no ring is connected.
    disk: Option<RamDisk>,
    transport: Option<FrontendTransport>,
    backend_info: Option<BackendInfo>,
    log: Vec<String>,
    /// Each end offers `feature-persistent`.
    front_persistent: bool,
    back_persistent: bool,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            store: HashMap::new(),
            grants: Arc::new(GrantTable::default()),
            rings: HashMap::new(),
            front: XenbusFrontend::new(),
            back: XenbusBackend::new(),
            front_dev: None,
            back_dev: None,
            disk: Some(RamDisk::new(1024, true)),
            transport: None,
            backend_info: None,
            log: Vec::new(),
            front_persistent: false,
            back_persistent: false,
        };
        // The toolstack creates both nodes in Initialising.
        w.write(FRONT_DIR, keys::STATE, "1");
        w.write(BACK_DIR, keys::STATE, "1");
        w
    }

    fn write(&mut self, dir: &str, key: &str, value: &str) {
        self.store
            .insert(format!("{dir}/{key}"), value.as_bytes().to_vec());
    }

    fn reader(&self, dir: &str) -> impl FnMut(&str) -> Option<Vec<u8>> + '_ {
        let dir = dir.to_string();
        move |key| self.store.get(&format!("{dir}/{key}")).cloned()
    }

    fn state(&self, dir: &str) -> XenbusState {
        self.store
            .get(&format!("{dir}/{}", keys::STATE))
            .and_then(|v| XenbusState::from_node(v))
            .unwrap_or(XenbusState::Unknown)
    }

    fn front_actions(&mut self, actions: Vec<FrontendAction>) {
        for a in actions {
            self.log.push(format!("front {a:?}"));
            match a {
                FrontendAction::PublishTransport => {
                    let ring = Arc::new(AtomicPage::new());
                    let to_back = Arc::new(EventChannel::default());
                    let dev =
                        BlkFront::new(ring.clone(), 51712, self.grants.grant(11), to_back.sender());
                    self.rings.insert(RING_GREF, ring);
                    self.front_dev = Some(dev);
                    let t = FrontendTransport {
                        ring_ref: RING_GREF,
                        event_channel: PORT,
                        feature_persistent: self.front_persistent,
                    };
                    for (k, v) in t.to_keys() {
                        self.write(FRONT_DIR, k, &v);
                    }
                }
                FrontendAction::ReadBackendInfo => {
                    self.backend_info =
                        Some(BackendInfo::from_keys(self.reader(BACK_DIR)).unwrap());
                }
                FrontendAction::Connect => {
                    let info = self.backend_info.take().expect("read before connect");
                    self.front_dev
                        .as_mut()
                        .expect("transport published")
                        .connect(info);
                }
                FrontendAction::Disconnect => {
                    assert!(self.back_dev.is_none(), "back end unmapped the ring first");
                    self.front_dev = None;
                    self.rings.remove(&RING_GREF);
                }
                FrontendAction::SwitchState(s) => {
                    self.write(FRONT_DIR, keys::STATE, &s.raw().to_string())
                }
            }
        }
    }

    fn back_actions(&mut self, actions: Vec<BackendAction>) {
        for a in actions {
            self.log.push(format!("back {a:?}"));
            match a {
                BackendAction::PublishBackendInfo => {
                    let info = BackendInfo {
                        feature_persistent: self.back_persistent,
                        ..BackendInfo::for_disk(self.disk.as_ref().unwrap())
                    };
                    for (k, v) in info.to_keys() {
                        self.write(BACK_DIR, k, &v);
                    }
                }
                BackendAction::ReadFrontendTransport => {
                    self.transport =
                        Some(FrontendTransport::from_keys(self.reader(FRONT_DIR)).unwrap());
                }
                BackendAction::Connect => {
                    let t = self.transport.take().expect("read before connect");
                    assert_eq!(t.event_channel, PORT);
                    let ring = self.rings[&t.ring_ref].clone();
                    let to_front = Arc::new(EventChannel::default());
                    let mut dev = BlkBack::new(
                        ring,
                        FRONT_DOMID,
                        self.disk.take().unwrap(),
                        self.grants.backend_view().with_map(),
                        to_front.sender(),
                    )
                    .unwrap();
                    // What the front end wrote decides, with what we published.
                    dev.set_persistent(self.back_persistent, t.feature_persistent);
                    self.back_dev = Some(dev);
                }
                BackendAction::Disconnect => {
                    if let Some(dev) = self.back_dev.take() {
                        self.disk = Some(dev.into_parts().1);
                    }
                }
                BackendAction::SwitchState(s) => {
                    self.write(BACK_DIR, keys::STATE, &s.raw().to_string())
                }
            }
        }
    }

    /// Fires both watches (spuriously too) until neither end has anything left to do.
    fn settle(&mut self) {
        for _ in 0..20 {
            let fa = self.front.on_other_end_changed(self.state(BACK_DIR));
            let f_idle = fa.is_empty();
            self.front_actions(fa);
            let ba = self.back.on_other_end_changed(self.state(FRONT_DIR));
            let b_idle = ba.is_empty();
            self.back_actions(ba);
            assert_eq!(self.state(FRONT_DIR), self.front.state());
            assert_eq!(self.state(BACK_DIR), self.back.state());
            if f_idle && b_idle {
                return;
            }
        }
        panic!("handshake does not settle: {:#?}", self.log);
    }

    fn states(&self) -> (XenbusState, XenbusState) {
        (self.state(FRONT_DIR), self.state(BACK_DIR))
    }

    /// Writes then reads through the connected pair (events polled: the back end serves when
    /// the front end waits).
    fn io(&mut self, sector: u64, data: &[u8]) -> Vec<u8> {
        let front = self.front_dev.as_mut().unwrap();
        let back = self.back_dev.as_mut().unwrap();
        front
            .write(sector, data, || {
                back.serve().unwrap();
            })
            .unwrap();
        let mut buf = vec![0; data.len()];
        front
            .read(sector, &mut buf, || {
                back.serve().unwrap();
            })
            .unwrap();
        buf
    }

    fn read(&mut self, sector: u64, len: usize) -> Vec<u8> {
        let front = self.front_dev.as_mut().unwrap();
        let back = self.back_dev.as_mut().unwrap();
        let mut buf = vec![0; len];
        front
            .read(sector, &mut buf, || {
                back.serve().unwrap();
            })
            .unwrap();
        buf
    }
}

use XenbusState::*;

#[test]
fn connect_close_reconnect_close() {
    let mut w = World::new();
    w.settle();
    assert_eq!(
        w.states(),
        (Initialising, Initialising),
        "nothing before the back end starts"
    );
    let a = w.back.start();
    w.back_actions(a);
    w.settle();
    assert_eq!(w.states(), (Connected, Connected));
    assert_eq!(w.store[&format!("{FRONT_DIR}/protocol")], b"x86_64-abi");
    assert_eq!(w.store[&format!("{FRONT_DIR}/ring-ref")], b"2000");
    assert_eq!(w.store[&format!("{BACK_DIR}/sectors")], b"1024");
    assert_eq!(w.store[&format!("{BACK_DIR}/feature-discard")], b"1");
    assert_eq!(w.front_dev.as_ref().unwrap().sectors(), 1024);
    let data: Vec<u8> = (0..8192).map(|i| (i * 7) as u8).collect();
    assert!(w.io(100, &data) == data);

    // The front end closes (e.g. unplug): Closing, the back end disconnects and closes, then the
    // front end tears down its ring and reaches Closed.
    let a = w.front.close();
    w.front_actions(a);
    w.settle();
    assert_eq!(w.states(), (Closed, Closed));
    assert!(w.front_dev.is_none() && w.back_dev.is_none());

    // Reconnect: the front end starts over; the back end prepares again; the data is still there.
    let a = w.front.reconnect(w.state(BACK_DIR));
    w.front_actions(a);
    w.settle();
    assert_eq!(w.states(), (Connected, Connected));
    assert!(w.read(100, data.len()) == data, "same disk after reconnect");

    // The back end closes (device removed): it disconnects first, then the front end follows.
    let a = w.back.close();
    w.back_actions(a);
    w.settle();
    assert_eq!(w.states(), (Closed, Closed));
    assert!(w.front_dev.is_none() && w.back_dev.is_none());
}

/// `feature-persistent` through xenstore: used only when both ends offer it; either end
/// without it (the key absent or `0`) gets grant copies, and the data is the same either way.
#[test]
fn persistent_grants_only_when_both_ends_offer_them() {
    for (front, back) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut w = World::new();
        w.front_persistent = front;
        w.back_persistent = back;
        let a = w.back.start();
        w.back_actions(a);
        w.settle();
        assert_eq!(w.states(), (Connected, Connected));
        let flag = |v: bool| if v { &b"1"[..] } else { &b"0"[..] };
        assert_eq!(
            w.store[&format!("{FRONT_DIR}/feature-persistent")],
            flag(front)
        );
        assert_eq!(
            w.store[&format!("{BACK_DIR}/feature-persistent")],
            flag(back)
        );
        assert_eq!(
            w.front_dev.as_ref().unwrap().info().feature_persistent,
            back,
            "the front end read the back end's offer"
        );
        let used = w.back_dev.as_ref().unwrap().persistent();
        assert_eq!(used, front && back, "front {front} back {back}");
        let data: Vec<u8> = (0..40960).map(|i| (i * 13 + 5) as u8).collect();
        assert!(w.io(64, &data) == data);
        let s = w.back_dev.as_ref().unwrap().stats();
        if used {
            // Every page used is mapped once and kept; nothing grant-copied.
            assert!(s.persistent_maps > 0 && s.persistent_maps <= 11);
            assert_eq!(w.grants.live_mappings() as u64, s.persistent_maps);
            assert_eq!((s.grant_copy_requests, s.mapped_copy_requests), (0, 2));
        } else {
            assert_eq!((s.persistent_maps, s.grant_maps), (0, 0));
            assert_eq!(w.grants.live_mappings(), 0);
            assert_eq!(s.grant_copy_requests, 2);
        }
        // Closing unmaps every persistent grant before the ring goes.
        let a = w.front.close();
        w.front_actions(a);
        w.settle();
        assert_eq!(w.states(), (Closed, Closed));
        assert_eq!(w.grants.live_mappings(), 0);
    }
}
