//! dom0's network back end: vif 0 of every domU, served by `ring_drivers::netif::NetBack` and
//! plugged into dom0's bridge (`net.rs`) as port `vif_port(domid)`, locked to the vif's MAC.
//!
//! - **Nodes**: the toolstack writes both directories (`write_vif_nodes`, the layout in
//!   `ring_drivers::netif`'s module doc) before the services attach; [`Vif::create`] publishes
//!   the back end's features, goes to `InitWait` and watches the front end's `state` (token
//!   `vif<domid>`), feeding `XenbusBackend` as blkback does.
//! - **Connect**: both ring references are grant-mapped (`ring_page::map_grant`), the
//!   `event-channel` bound and registered as [`Channel::Vif`]; frames move by `GNTTABOP_copy`
//!   (blkback's [`GntCopy`]): tx (domU -> dom0) into the back end's buffer, rx (dom0 -> domU)
//!   into buffers the domU posted.
//! - **Serving**: on each event and again while a budget-limited pass left slots; each frame the
//!   domU sent is handed to the caller's callback straight from the back end's batch buffer
//!   (no copy, no allocation per frame), which routes it through the bridge. A first slot
//!   larger than the bridge forwards ([`MAX_FRAME`]) is refused before any copy. Frames for the
//!   domU are queued ([`Vif::send`]) and copied many per `GNTTABOP_copy` by [`Vif::flush`]
//!   after each burst. Refused packets are reported at most once per [`REPORT_EVERY_NS`]
//!   per vif, with the count. A ring overrun closes that vif alone
//!   (`netback: d<N> ring overrun: closing`).
//! - **Teardown**: front end `Closing`/`Closed`, an overrun, or the domU's death: the port is
//!   closed, the rings unmapped, the bridge port removed, and the counters printed as
//!   `bench netback dom=<N> ...` (notifications and grant copies per packet).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use guest_kernel::rates::per_request;
use hypercall_abi::io::xenbus::XenbusState;
use hypercall_abi::HypercallError;
use ring_drivers::netif::{
    keys, parse_mac, NetBack, NetBackStats, NetBackendInfo, NetFrontendTransport, RxMeta,
    RxOutcome, TxMeta,
};
use ring_drivers::ratelimit::LogLimit;
use ring_drivers::xenbus::state::{BackendAction, XenbusBackend};
use ring_drivers::RingError;

use super::blkback::GntCopy;
use super::xenstore::Store;
use crate::kernel::events::{self, Channel, EvtNotify};
use crate::kernel::ring_page::{self, MappedPage};

type Back = NetBack<MappedPage, GntCopy, EvtNotify>;

/// The largest frame a vif may send: the bridge's limit (a 1500-byte MTU, the Ethernet header
/// and one VLAN tag); no GSO is offered, so nothing larger is legitimate.
pub const MAX_FRAME: usize = 1518;

/// A vif's refused packets are reported at most this often.
pub const REPORT_EVERY_NS: u64 = 10_000_000_000;

/// A connected vif.
struct Conn {
    back: Back,
    tx_handle: u32,
    rx_handle: u32,
    port: u32,
    errors_reported: u64,
    report: LogLimit,
}

/// Why a vif could not connect.
#[derive(Debug)]
enum ConnectError {
    NoTransport,
    RingRef(&'static str, ring_page::MapError),
    Bind(u32, HypercallError),
    Ring(RingError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NoTransport => write!(f, "no transport"),
            ConnectError::RingRef(which, e) => write!(f, "{which}: {e}"),
            ConnectError::Bind(port, rc) => write!(f, "bind event-channel {port}={rc}"),
            ConnectError::Ring(e) => write!(f, "ring: {e}"),
        }
    }
}

/// What happened to a vif's connection in a call (for the bridge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Nothing changed.
    Same,
    /// It connected: add its bridge port, locked to this MAC.
    Up([u8; 6]),
    /// It disconnected: remove its bridge port.
    Down,
}

/// One domU's vif 0 as dom0 serves it.
pub struct Vif {
    domid: u16,
    backend: XenbusBackend,
    conn: Option<Conn>,
    front_dir: String,
    back_dir: String,
    transport: Option<NetFrontendTransport>,
    /// The MAC the toolstack gave it (from the back end's directory).
    pub mac: Option<[u8; 6]>,
    /// A serve pass ran out of budget with slots waiting: serve again before blocking.
    pub busy: bool,
    /// The rx ring overran while the bridge sent to it: close at the next chance.
    overrun: bool,
}

/// The watch token of `domid`'s vif (its front end's `state`).
pub fn token(domid: u16) -> String {
    format!("vif{domid}")
}

impl Vif {
    /// Starts serving `domid`'s vif 0 from the nodes the toolstack wrote; `None` if there are
    /// none (dom0 serves no vifs).
    pub fn create(store: &mut impl Store, domid: u16) -> Option<(Vif, Link)> {
        let back_dir = format!("/local/domain/0/backend/vif/{domid}/0");
        let front_dir = store.read(&format!("{back_dir}/{}", keys::FRONTEND))?;
        let mac = store
            .read(&format!("{back_dir}/{}", keys::MAC))
            .and_then(|m| parse_mac(m.as_bytes()));
        let mut v = Vif {
            domid,
            backend: XenbusBackend::new(),
            conn: None,
            front_dir,
            back_dir,
            transport: None,
            mac,
            busy: false,
            overrun: false,
        };
        let actions = v.backend.start();
        let link = v.apply(store, actions);
        store.watch(&format!("{}/state", v.front_dir), &token(domid));
        Some((v, link))
    }

    /// The front end's `state` changed (or the watch fired): drive the state machine.
    pub fn frontend_changed(&mut self, store: &mut impl Store) -> Link {
        let state = store
            .read(&format!("{}/state", self.front_dir))
            .and_then(|s| XenbusState::from_node(s.as_bytes()))
            .unwrap_or(XenbusState::Unknown);
        let actions = self.backend.on_other_end_changed(state);
        self.apply(store, actions)
    }

    fn apply(&mut self, store: &mut impl Store, actions: Vec<BackendAction>) -> Link {
        let mut link = Link::Same;
        for a in actions {
            let ok = match a {
                BackendAction::PublishBackendInfo => {
                    for (k, v) in NetBackendInfo::default().to_keys() {
                        store.write(&format!("{}/{k}", self.back_dir), &v);
                    }
                    true
                }
                BackendAction::ReadFrontendTransport => {
                    let dir = self.front_dir.clone();
                    match NetFrontendTransport::from_keys(|k| {
                        store.read(&format!("{dir}/{k}")).map(String::into_bytes)
                    }) {
                        Ok(t) => {
                            self.transport = Some(t);
                            true
                        }
                        Err(e) => {
                            println!(
                                "netback: d{} front-end keys refused ({e:?}): closing",
                                self.domid
                            );
                            false
                        }
                    }
                }
                BackendAction::Connect => match self.connect() {
                    Ok(true) => {
                        link = match self.mac {
                            Some(m) => Link::Up(m),
                            None => Link::Same,
                        };
                        true
                    }
                    Ok(false) => true,
                    Err(e) => {
                        println!("netback: d{} cannot connect: {e}: closing", self.domid);
                        false
                    }
                },
                BackendAction::Disconnect => {
                    if self.disconnect(false) {
                        link = Link::Down;
                    }
                    true
                }
                BackendAction::SwitchState(s) => {
                    store.write(&format!("{}/state", self.back_dir), &format!("{}", s.raw()));
                    true
                }
            };
            if !ok {
                let more = self.backend.close();
                let l = self.apply(store, more);
                return if l == Link::Same { link } else { l };
            }
        }
        link
    }

    /// Maps both rings and binds the port; false if already connected.
    fn connect(&mut self) -> Result<bool, ConnectError> {
        if self.conn.is_some() {
            return Ok(false);
        }
        if self.mac.is_none() {
            println!("netback: d{} has no valid mac node", self.domid);
            return Err(ConnectError::NoTransport);
        }
        let t = self.transport.ok_or(ConnectError::NoTransport)?;
        let (tx_page, tx_handle) = ring_page::map_grant(self.domid, t.tx_ring_ref)
            .map_err(|e| ConnectError::RingRef("tx-ring-ref", e))?;
        let (rx_page, rx_handle) = match ring_page::map_grant(self.domid, t.rx_ring_ref) {
            Ok(p) => p,
            Err(e) => {
                ring_page::unmap_grant(tx_page, tx_handle);
                return Err(ConnectError::RingRef("rx-ring-ref", e));
            }
        };
        let port = match events::bind_interdomain(self.domid, t.event_channel) {
            Ok(p) => p,
            Err(rc) => {
                ring_page::unmap_grant(tx_page, tx_handle);
                ring_page::unmap_grant(rx_page, rx_handle);
                return Err(ConnectError::Bind(t.event_channel, rc));
            }
        };
        let back = match NetBack::new(
            tx_page,
            rx_page,
            self.domid,
            &t,
            GntCopy::default(),
            EvtNotify(port),
        ) {
            Ok(mut b) => {
                b.set_max_frame(MAX_FRAME);
                b
            }
            Err(e) => {
                let _ = events::close(port);
                ring_page::unmap_grant(tx_page, tx_handle);
                ring_page::unmap_grant(rx_page, rx_handle);
                return Err(ConnectError::Ring(e));
            }
        };
        events::register(port, Channel::Vif(self.domid));
        println!(
            "netback: d{} vif 0 connected: tx-ring-ref {} rx-ring-ref {} mapped, event channel {} bound as {port}",
            self.domid, t.tx_ring_ref, t.rx_ring_ref, t.event_channel
        );
        self.conn = Some(Conn {
            back,
            tx_handle,
            rx_handle,
            port,
            errors_reported: 0,
            report: LogLimit::new(REPORT_EVERY_NS),
        });
        self.busy = true; // frames may be waiting already
        Ok(true)
    }

    /// Stops serving: unbinds the port and unmaps the rings (`dead`: the domU died, and the
    /// hypervisor revoked the mappings already). Whether it was connected.
    fn disconnect(&mut self, dead: bool) -> bool {
        let Some(c) = self.conn.take() else {
            return false;
        };
        self.busy = false;
        let s = c.back.stats();
        let _ = events::close(c.port);
        let (tx_page, rx_page, grants, _) = c.back.into_parts();
        for (page, handle) in [(tx_page, c.tx_handle), (rx_page, c.rx_handle)] {
            let rc = ring_page::unmap_grant(page, handle);
            if rc != 0 && !dead {
                println!("netback: d{} unmap ring: {rc}", self.domid);
            }
        }
        print_stats(self.domid, &s, grants.hypercalls);
        true
    }

    /// The vif's port fired (`event`), or a pass left work: serve the tx ring, handing every
    /// frame the domU sent to `deliver` (valid only inside the call). Returns the link change
    /// (an overrun closes the vif).
    pub fn serve(
        &mut self,
        store: &mut impl Store,
        event: bool,
        now_ns: u64,
        deliver: &mut dyn FnMut(&[u8], TxMeta),
    ) -> Link {
        if self.overrun {
            return self.close_overrun(store);
        }
        let Some(c) = self.conn.as_mut() else {
            self.busy = false;
            return Link::Same;
        };
        let r = if event {
            c.back.on_event(&mut *deliver)
        } else {
            c.back.serve_tx(&mut *deliver)
        };
        let errors = c.back.stats().tx_errors;
        if errors > c.errors_reported && c.report.allow(now_ns).is_some() {
            println!(
                "netback: d{} refused {} packet(s), last: {:?}",
                self.domid,
                errors - c.errors_reported,
                c.back.last_error()
            );
            c.errors_reported = errors;
        }
        match r {
            Ok(s) => {
                self.busy = s.more;
                Link::Same
            }
            Err(_) => self.close_overrun(store),
        }
    }

    fn close_overrun(&mut self, store: &mut impl Store) -> Link {
        println!("netback: d{} ring overrun: closing", self.domid);
        self.overrun = false;
        let actions = self.backend.close();
        let link = self.apply(store, actions);
        if self.disconnect(false) {
            Link::Down
        } else {
            link
        }
    }

    /// A frame from the bridge for this domU: queued (copied into its buffers by the next
    /// [`Vif::flush`]) or dropped (counted by the back end). Whether it was taken.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let Some(c) = self.conn.as_mut() else {
            return false;
        };
        match c.back.queue(frame, RxMeta::default()) {
            Ok(RxOutcome::Delivered) | Ok(RxOutcome::Queued) => true,
            Ok(RxOutcome::Dropped(_)) => false,
            Err(_) => {
                self.overrun = true;
                self.busy = true;
                false
            }
        }
    }

    /// Copies the frames queued for the domU into the buffers it posted (many per grant
    /// copy). An rx overrun closes the vif at the next serve.
    pub fn flush(&mut self) {
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        if c.back.rx_queued() == 0 {
            return;
        }
        if c.back.flush_rx().is_err() {
            self.overrun = true;
            self.busy = true;
        }
    }

    /// The back end's counters, if connected.
    pub fn stats(&self) -> Option<NetBackStats> {
        self.conn.as_ref().map(|c| c.back.stats())
    }

    /// The domU is gone (or going): disconnect, drop the watch.
    pub fn destroy(mut self, store: &mut impl Store) {
        self.disconnect(true);
        store.unwatch(&format!("{}/state", self.front_dir), &token(self.domid));
    }
}

/// `bench netback ...`: the back end's counters over a connection.
fn print_stats(domid: u16, s: &NetBackStats, copy_hypercalls: u64) {
    let packets = s.tx_packets + s.rx_packets;
    let per = |n: u64| per_request(n, packets);
    println!(
        "bench netback dom={domid} tx_packets={} tx_bytes={} tx_errors={} rx_packets={} rx_bytes={} rx_dropped={} events_received={} notifications_sent={} grant_copy_hypercalls={copy_hypercalls} events_per_packet={} notifications_per_packet={} grant_copies_per_packet={}",
        s.tx_packets,
        s.tx_bytes,
        s.tx_errors,
        s.rx_packets,
        s.rx_bytes,
        s.rx_dropped_no_buffer + s.rx_dropped_malformed + s.rx_grant_errors,
        s.events_received,
        s.notifications_sent,
        per(s.events_received),
        per(s.notifications_sent),
        per(copy_hypercalls),
    );
}
