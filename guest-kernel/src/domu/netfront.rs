//! The domU's network front end: finds `device/vif/0`, connects it with
//! `ring_drivers::xenbus::state::XenbusFrontend`, and drives `ring_drivers::netif::NetFront`,
//! which the TCP/IP stack (`guest_kernel::netstack`) sees as its [`Nic`].
//!
//! - **Discovery**: dom0's toolstack writes `device/vif/0` (`backend`, `backend-id`, `mac`,
//!   `handle`, `state`; the layout is in `ring_drivers::netif`'s module doc) only when dom0 serves
//!   vifs; without it the domU has no network and behaves as before.
//! - **Transport**: a tx and an rx ring page, [`TX_PAGES`] tx pages (granted read-only: the back
//!   end only copies from them) and [`RX_PAGES`] rx pages (granted writable: it copies into
//!   them), frames from the allocator (`VifFrames`); one unbound event channel for both rings; `tx-ring-ref`, `rx-ring-ref`,
//!   `event-channel`, `request-rx-copy`, `feature-rx-notify`, `feature-sg` and
//!   `feature-no-csum-offload` (smoltcp checks every checksum) in the front-end directory. The
//!   rings are initialised and every rx page posted before the references are published.
//! - **Close**: `Closing`, the back end disconnects and says `Closing`, then we end the grants,
//!   close the port and say `Closed`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr;

use guest_kernel::layout::direct_map_va;
use guest_kernel::netstack::{Nic, MAX_FRAME};
use guest_kernel::paging::Pfn;
use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::netif::{
    keys, parse_mac, GrantPages, NetBackendInfo, NetFront, NetFrontError, NetFrontStats,
    NetFrontendTransport,
};
use ring_drivers::xenbus::{Reply, Request};

use super::client::Client;
use super::error::DomuError;
use super::xenbus_front::{self, FrontLink, XenbusDevice};
use crate::kernel::direct_map;
use crate::kernel::events::{self, Channel, EvtNotify};
use crate::kernel::grant;
use crate::kernel::mm;
use crate::kernel::ring_page::MappedPage;
use crate::kernel::time;

/// Tx pages: frames in flight to the back end.
pub const TX_PAGES: usize = 64;
/// Rx pages: buffers posted for the back end to fill.
pub const RX_PAGES: usize = 128;

/// The vif's frames: two ring pages and the data pages, from the frame allocator (mapped in
/// the direct map), taken when the first connection is made and kept for reconnects; shared
/// with the back end, so reached through raw pointers only. Not in .bss: a domU without a vif
/// pays nothing, and the image still fits the smallest domain.
struct VifFrames {
    tx_ring: u64,
    rx_ring: u64,
    tx: Vec<u64>,
    rx: Vec<u64>,
}

impl VifFrames {
    fn alloc() -> Result<VifFrames, DomuError> {
        direct_map::init_memory().map_err(|_| DomuError::NoFrame("direct map"))?;
        let one = || {
            mm::alloc_frame()
                .map(direct_map_va)
                .ok_or(DomuError::NoFrame("vif page (out of frames)"))
        };
        Ok(VifFrames {
            tx_ring: one()?,
            rx_ring: one()?,
            tx: (0..TX_PAGES).map(|_| one()).collect::<Result<_, _>>()?,
            rx: (0..RX_PAGES).map(|_| one()).collect::<Result<_, _>>()?,
        })
    }
}

/// The machine frame behind a direct-map address of ours.
fn mfn(va: u64) -> Result<u64, DomuError> {
    mm::mfn_of(Pfn(va >> 12))
        .map(|m| m.0)
        .ok_or(DomuError::NoFrame("vif page"))
}

/// A set of granted data pages (the tx set or the rx set) and their grant references.
#[derive(Debug)]
pub struct NetPages {
    vas: Vec<u64>,
    grefs: Vec<u32>,
}

impl GrantPages for NetPages {
    fn count(&self) -> usize {
        self.vas.len()
    }

    fn gref(&self, page: usize) -> u32 {
        self.grefs[page]
    }

    fn read(&self, page: usize, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= 4096);
        let p = (self.vas[page] as usize + offset) as *const u8;
        // SAFETY: inside one of our data frames (checked above; mapped in the direct map and never
        // freed); the back end writes it
        // through the hypervisor's grant copy between our uses, so it is copied, never
        // referenced.
        unsafe { ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
    }

    fn write(&mut self, page: usize, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= 4096);
        let p = (self.vas[page] as usize + offset) as *mut u8;
        // SAFETY: as in `read`; the page is ours and not in flight (NetFront only writes free
        // tx pages).
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }
}

type Front = NetFront<MappedPage, NetPages, EvtNotify>;

/// vif 0, connected or not.
pub struct Netfront {
    link: FrontLink,
    /// The MAC the toolstack gave us.
    pub mac: [u8; 6],
    frames: Option<VifFrames>,
    dev: Option<Front>,
    ring_grefs: [u32; 2],
    port: u32,
    /// Receive or ring errors seen by [`Nic::receive`] / [`Nic::transmit`] (a broken back end).
    pub ring_errors: u64,
    /// Events received on the vif's port (the caller counts them).
    pub events: u64,
}

const TOKEN: &str = "net-back-state";

impl Netfront {
    /// Looks for `device/vif/0`: `Ok(None)` when dom0 made no vif for us (no network).
    pub fn discover(d: &mut Client) -> Result<Option<Netfront>, DomuError> {
        let list = match d.request(0, &Request::Directory("device/vif"))? {
            Reply::Directory(l) => l,
            Reply::Error(_) => return Ok(None),
            other => return Err(DomuError::Unexpected(String::from("device/vif"), other)),
        };
        if !list.iter().any(|n| n == "0") {
            return Ok(None);
        }
        let front_dir = String::from("device/vif/0");
        let mac_path = format!("{front_dir}/{}", keys::MAC);
        let mac = parse_mac(xenbus_front::value(d, &mac_path)?.as_bytes())
            .filter(|m| m[0] & 1 == 0)
            .ok_or(DomuError::BadNode(mac_path, "not a unicast MAC"))?;
        let link = FrontLink::open(d, front_dir, TOKEN)?;
        Ok(Some(Netfront {
            link,
            mac,
            frames: None,
            dev: None,
            ring_grefs: [0; 2],
            port: 0,
            ring_errors: 0,
            events: 0,
        }))
    }

    /// Grants the rings and data pages, allocates the port, initialises the rings (posting
    /// every rx page) and writes the transport keys.
    fn publish(&mut self, d: &mut Client) -> Result<(), DomuError> {
        self.teardown();
        grant::init().map_err(DomuError::GrantTable)?;
        if self.frames.is_none() {
            self.frames = Some(VifFrames::alloc()?);
        }
        let f = self.frames.as_ref().expect("allocated above");
        let (tx_ring_va, rx_ring_va) = (f.tx_ring, f.rx_ring);
        let (tx_vas, rx_vas) = (f.tx.clone(), f.rx.clone());
        let dom = self.link.backend_id;
        let grant_all = |vas: Vec<u64>, readonly: bool| -> Result<NetPages, DomuError> {
            let mut grefs = Vec::with_capacity(vas.len());
            for &va in &vas {
                grefs.push(grant::grant_access(dom, mfn(va)?, readonly).map_err(DomuError::Grant)?);
            }
            Ok(NetPages { vas, grefs })
        };
        let tx = grant_all(tx_vas, true)?;
        let rx = grant_all(rx_vas, false)?;
        let port =
            events::alloc_unbound(dom).map_err(|rc| DomuError::Evtchn("alloc_unbound", rc))?;
        events::register(port, Channel::Vif(dom));
        // SAFETY: two page-aligned frames of ours from the allocator, mapped writable in the
        // direct map for our lifetime (never freed), only reached through `MappedPage`.
        let (tx_page, rx_page) =
            unsafe { (MappedPage::new(tx_ring_va), MappedPage::new(rx_ring_va)) };
        let front = Front::new(tx_page, rx_page, tx, rx, EvtNotify(port));
        // The rings are initialised: only now may the back end see them.
        let tx_gref =
            grant::grant_access(dom, mfn(tx_ring_va)?, false).map_err(DomuError::Grant)?;
        let rx_gref =
            grant::grant_access(dom, mfn(rx_ring_va)?, false).map_err(DomuError::Grant)?;
        self.ring_grefs = [tx_gref, rx_gref];
        self.port = port;
        self.dev = Some(front);
        let t = NetFrontendTransport {
            tx_ring_ref: tx_gref,
            rx_ring_ref: rx_gref,
            event_channel: port,
            feature_sg: true,
            feature_rx_notify: true,
            no_csum_offload: true,
        };
        for (k, v) in t.to_keys() {
            self.link.write_node(d, k, &v)?;
        }
        Ok(())
    }

    fn read_backend_info(&self, d: &mut Client) -> Result<NetBackendInfo, DomuError> {
        let names = [
            keys::FEATURE_SG,
            keys::FEATURE_RX_COPY,
            keys::FEATURE_GSO_TCPV4,
        ];
        let values = self.link.read_back_keys(d, &names)?;
        NetBackendInfo::from_keys(|k| xenbus_front::lookup(&values, k))
            .map_err(DomuError::BackendKeys)
    }

    /// Ends the grants and closes the port (the back end has let go of them).
    fn teardown(&mut self) {
        let Some(front) = self.dev.take() else {
            return;
        };
        let (_, _, tx, rx, _) = front.into_parts();
        let mut busy = 0;
        for &g in tx.grefs.iter().chain(&rx.grefs).chain(&self.ring_grefs) {
            if !grant::end_access(g) {
                busy += 1;
            }
        }
        if busy > 0 {
            println!("netfront: {busy} grant(s) still in use at disconnect");
        }
        let _ = events::close(self.port);
    }

    /// Takes the connected device apart for `net-evil`, which drives the rings by hand: the
    /// ring pages, the tx and rx pages and the event channel (grants stay as they are).
    pub fn take_raw(&mut self) -> Option<(MappedPage, MappedPage, NetPages, NetPages, EvtNotify)> {
        self.dev.take().map(NetFront::into_parts)
    }

    /// Waits until the back end's state is one of `states` (watch-driven, with the client's
    /// overall timeout); returns it.
    pub fn wait_for_backend(
        &self,
        d: &mut Client,
        states: &[XenbusState],
    ) -> Result<XenbusState, DomuError> {
        let since = time::now_ns().unwrap_or(0);
        loop {
            let s = xenbus_front::backend_state(&self.link, d)?;
            if states.contains(&s) {
                return Ok(s);
            }
            xenbus_front::wait_backend::<Self>(d, since)?;
        }
    }

    /// The event-channel port (`Channel::Vif`).
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The front end's counters (zero when not connected).
    pub fn stats(&self) -> NetFrontStats {
        self.dev.as_ref().map(|f| f.stats()).unwrap_or_default()
    }

    /// Before sleeping: re-arms both rings; `true` if responses already wait.
    pub fn prepare_to_wait(&mut self) -> bool {
        match self.dev.as_mut().map(|f| f.prepare_to_wait()) {
            Some(Ok(ready)) => ready,
            Some(Err(_)) => {
                self.ring_errors += 1;
                false
            }
            None => false,
        }
    }

    fn note(&mut self, r: Result<(), NetFrontError>) -> bool {
        match r {
            Ok(()) => true,
            Err(NetFrontError::Busy | NetFrontError::FrameSize(_)) => false,
            Err(NetFrontError::Ring(_)) => {
                self.ring_errors += 1;
                false
            }
        }
    }
}

impl Nic for Netfront {
    fn can_transmit(&mut self) -> bool {
        let Some(f) = self.dev.as_mut() else {
            return false;
        };
        if f.can_transmit(MAX_FRAME) {
            return true;
        }
        // Completions not reaped yet may free what a frame needs.
        if f.poll().is_err() {
            self.ring_errors += 1;
            return false;
        }
        f.can_transmit(MAX_FRAME)
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        let Some(f) = self.dev.as_mut() else {
            return false;
        };
        let r = f.transmit(frame);
        self.note(r)
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        let f = self.dev.as_mut()?;
        match f.receive() {
            Ok(frame) => frame,
            Err(_) => {
                self.ring_errors += 1;
                None
            }
        }
    }
}

impl XenbusDevice for Netfront {
    const TOKEN: &'static str = TOKEN;

    fn link(&mut self) -> &mut FrontLink {
        &mut self.link
    }

    fn publish(&mut self, d: &mut Client) -> Result<(), DomuError> {
        Netfront::publish(self, d)
    }

    fn connect_device(&mut self, d: &mut Client) -> Result<(), DomuError> {
        let info = self.read_backend_info(d)?;
        if let Some(f) = self.dev.as_mut() {
            f.connect(info);
        }
        Ok(())
    }

    fn teardown(&mut self) {
        Netfront::teardown(self)
    }
}
