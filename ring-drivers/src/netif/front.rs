//! The network front end: [`NetFront`] sends frames from granted tx pages and receives them in
//! granted rx pages it keeps posted on the rx ring (the rx-copy model).
//!
//! Tx: one page per slot at offset 0, a frame over a page chained with `NETTXF_more_data`
//! (only if the back end offers `feature-sg`); a slot's `id` is its page's index. Rx: the buffer
//! posted in ring slot `i` has `id = i`, so the response in slot `i` (data or extra-info) gives
//! that buffer back, as Linux netfront does. Responses are the back end's words: ids, offsets and
//! lengths are checked, a bad one drops the frame and is counted, never trusted.

use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::io::netif::{
    NETRXF_extra_info, NETRXF_more_data, NETTXF_more_data, NetifExtraInfo, NetifRxRequest,
    NetifTxRequest, NETIF_RSP_NULL, NETIF_RSP_OKAY, XEN_NETIF_EXTRA_FLAG_MORE,
};
use zerocopy::{FromBytes, IntoBytes};

use super::{
    GrantPages, NetBackendInfo, NetRxFrontRing, NetTxFrontRing, Notify, ETH_HLEN, MAX_FRAME,
    XEN_NETBK_LEGACY_SLOTS_MAX,
};
use crate::byte_ring::RingError;
use crate::shared_page::{SharedPage, PAGE_SIZE};

/// Why a front-end operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetFrontError {
    /// A ring is corrupt (the back end published responses for requests never made).
    Ring(RingError),
    /// Every tx buffer or tx slot is in flight: reap completions ([`NetFront::poll`]) and
    /// retry.
    Busy,
    /// The frame is shorter than an Ethernet header, longer than 64 KiB, or longer than a page
    /// while the back end does not offer `feature-sg`.
    FrameSize(usize),
}

impl From<RingError> for NetFrontError {
    fn from(e: RingError) -> Self {
        NetFrontError::Ring(e)
    }
}

/// Counters of a front end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFrontStats {
    /// Frames sent.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Tx slots the back end answered with an error status.
    pub tx_errors: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Received frames dropped: an error status, a bad offset or length, too short.
    pub rx_errors: u64,
    /// Responses whose id names no request in flight (a broken or hostile back end).
    pub bad_responses: u64,
    /// Events sent to the back end.
    pub notifications_sent: u64,
}

/// The rx frame under assembly.
#[derive(Debug, Default)]
struct RxFrame {
    data: Vec<u8>,
    /// A frame is open (its first slot was consumed).
    open: bool,
    /// An extra-info slot comes next.
    extra: bool,
    /// A data slot comes next.
    more: bool,
    /// A slot failed: the frame is dropped when complete.
    bad: bool,
}

/// A network front end: two rings, a fixed set of granted tx pages and rx pages.
#[derive(Debug)]
pub struct NetFront<P, G, N> {
    tx: NetTxFrontRing,
    tx_page: P,
    rx: NetRxFrontRing,
    rx_page: P,
    tx_bufs: G,
    rx_bufs: G,
    notify: N,
    tx_free: Vec<u16>,
    tx_busy: Vec<bool>,
    rx_free: Vec<u16>,
    /// Ring slot (index masked) to the rx page posted in it.
    rx_slot: Vec<Option<u16>>,
    rx_frame: RxFrame,
    backend: NetBackendInfo,
    stats: NetFrontStats,
}

impl<P: SharedPage, G: GrantPages, N: Notify> NetFront<P, G, N> {
    /// Initialises both rings (only the front end does, before `tx-ring-ref`/`rx-ring-ref` are
    /// published) and posts every rx page (at most 256) without notifying; `tx_bufs` and
    /// `rx_bufs` are the pages granted to the back end (at most 65536 each). Call
    /// [`NetFront::connect`] once the back end is `Connected`.
    pub fn new(mut tx_page: P, mut rx_page: P, tx_bufs: G, rx_bufs: G, notify: N) -> Self {
        let tx = NetTxFrontRing::init(&mut tx_page);
        let rx = NetRxFrontRing::init(&mut rx_page);
        assert!(tx_bufs.count() > 0 && tx_bufs.count() <= 1 << 16);
        assert!(rx_bufs.count() > 0 && rx_bufs.count() <= 1 << 16);
        let mut f = NetFront {
            tx,
            tx_page,
            rx,
            rx_page,
            tx_free: (0..tx_bufs.count() as u32)
                .rev()
                .map(|i| i as u16)
                .collect(),
            tx_busy: vec![false; tx_bufs.count()],
            rx_free: (0..rx_bufs.count() as u32)
                .rev()
                .map(|i| i as u16)
                .collect(),
            rx_slot: vec![None; NetRxFrontRing::SIZE as usize],
            tx_bufs,
            rx_bufs,
            notify,
            rx_frame: RxFrame::default(),
            backend: NetBackendInfo::default(),
            stats: NetFrontStats::default(),
        };
        f.post_rx();
        f.rx.push_requests(&mut f.rx_page);
        f
    }

    /// Takes the features the back end published (read when it is `Connected`).
    pub fn connect(&mut self, info: NetBackendInfo) {
        self.backend = info;
    }

    /// The counters.
    pub fn stats(&self) -> NetFrontStats {
        self.stats
    }

    /// Gives back the ring pages (tx, rx), the tx and rx pages and the event channel.
    pub fn into_parts(self) -> (P, P, G, G, N) {
        (
            self.tx_page,
            self.rx_page,
            self.tx_bufs,
            self.rx_bufs,
            self.notify,
        )
    }

    /// Whether a frame of `len` bytes can be sent now (buffers and slots free).
    pub fn can_transmit(&self, len: usize) -> bool {
        let n = len.div_ceil(PAGE_SIZE).max(1);
        self.tx_free.len() >= n && self.tx.space() as usize >= n
    }

    /// Sends one Ethernet frame (without FCS). Reaps tx completions first; `Busy` when the
    /// buffers or slots it needs are all in flight.
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetFrontError> {
        self.reap_tx()?;
        let len = frame.len();
        let n = len.div_ceil(PAGE_SIZE);
        if !(ETH_HLEN..=MAX_FRAME).contains(&len)
            || (n > 1 && !self.backend.feature_sg)
            || n > XEN_NETBK_LEGACY_SLOTS_MAX
        {
            return Err(NetFrontError::FrameSize(len));
        }
        if !self.can_transmit(len) {
            return Err(NetFrontError::Busy);
        }
        for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
            let page = self.tx_free.pop().expect("counted by can_transmit");
            self.tx_bufs.write(usize::from(page), 0, chunk);
            self.tx_busy[usize::from(page)] = true;
            let req = NetifTxRequest {
                gref: self.tx_bufs.gref(usize::from(page)),
                offset: 0,
                flags: if i + 1 < n { NETTXF_more_data } else { 0 },
                id: page,
                // The first slot carries the whole frame's size, the others their own.
                size: if i == 0 {
                    len as u16
                } else {
                    chunk.len() as u16
                },
            };
            self.tx.push_request(&mut self.tx_page, &req);
        }
        if self.tx.push_requests_and_check_notify(&mut self.tx_page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Ok(())
    }

    /// Frees the tx buffers of answered slots.
    fn reap_tx(&mut self) -> Result<(), NetFrontError> {
        while let Some(rsp) = self.tx.get_response(&self.tx_page)? {
            if rsp.status == NETIF_RSP_NULL {
                continue; // an extra-info slot's answer (we send none)
            }
            let id = usize::from(rsp.id);
            if !self.tx_busy.get(id).copied().unwrap_or(false) {
                self.stats.bad_responses += 1;
                continue;
            }
            self.tx_busy[id] = false;
            self.tx_free.push(rsp.id);
            if rsp.status != NETIF_RSP_OKAY {
                self.stats.tx_errors += 1;
            }
        }
        Ok(())
    }

    /// Reaps tx completions (call it when the event channel fires).
    pub fn poll(&mut self) -> Result<(), NetFrontError> {
        self.reap_tx()
    }

    /// Posts every free rx page in a free rx slot (not published).
    fn post_rx(&mut self) -> bool {
        let mut posted = false;
        while self.rx.space() > 0 {
            let Some(page) = self.rx_free.pop() else {
                break;
            };
            let idx = self.rx.req_prod_pvt() & (NetRxFrontRing::SIZE - 1);
            self.rx_slot[idx as usize] = Some(page);
            let req = NetifRxRequest {
                id: idx as u16,
                pad: 0,
                gref: self.rx_bufs.gref(usize::from(page)),
            };
            self.rx.push_request(&mut self.rx_page, &req);
            posted = true;
        }
        posted
    }

    fn refill_rx(&mut self) {
        if self.post_rx() && self.rx.push_requests_and_check_notify(&mut self.rx_page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
    }

    /// The next received frame, or `None` when no complete frame is waiting. Consumed buffers
    /// are posted again before returning.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, NetFrontError> {
        let got = self.receive_inner();
        self.refill_rx();
        got
    }

    fn receive_inner(&mut self) -> Result<Option<Vec<u8>>, NetFrontError> {
        loop {
            let idx = (self.rx.rsp_cons() & (NetRxFrontRing::SIZE - 1)) as usize;
            let Some(rsp) = self.rx.get_response(&self.rx_page)? else {
                return Ok(None);
            };
            let page = self.rx_slot[idx].take();
            let f = &mut self.rx_frame;
            if f.open && f.extra {
                // The slot holds a netif_extra_info; the buffer posted there goes back.
                let (extra, _) = NetifExtraInfo::read_from_prefix(rsp.as_bytes())
                    .expect("an extra-info slot is a response slot");
                f.extra = extra.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
            } else {
                if !f.open {
                    *f = RxFrame {
                        data: core::mem::take(&mut f.data),
                        open: true,
                        extra: rsp.flags & NETRXF_extra_info != 0,
                        more: false,
                        bad: false,
                    };
                    f.data.clear();
                }
                f.more = rsp.flags & NETRXF_more_data != 0;
                let len = rsp.status;
                match page {
                    Some(p) if usize::from(rsp.id) == idx => {
                        let (off, n) = (usize::from(rsp.offset), len as usize);
                        if len < 0 || off + n > PAGE_SIZE || f.data.len() + n > MAX_FRAME {
                            f.bad = true;
                        } else if !f.bad {
                            let at = f.data.len();
                            f.data.resize(at + n, 0);
                            self.rx_bufs.read(usize::from(p), off, &mut f.data[at..]);
                        }
                    }
                    _ => {
                        f.bad = true;
                        self.stats.bad_responses += 1;
                    }
                }
            }
            if let Some(p) = page {
                self.rx_free.push(p);
            }
            let f = &mut self.rx_frame;
            if f.open && !f.extra && !f.more {
                f.open = false;
                if f.bad || f.data.len() < ETH_HLEN {
                    self.stats.rx_errors += 1;
                    continue;
                }
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += f.data.len() as u64;
                return Ok(Some(core::mem::take(&mut f.data)));
            }
        }
    }

    /// Before the caller sleeps: reaps tx completions, reposts rx buffers, asks for an event at
    /// the next response on either ring and re-checks (`RING_FINAL_CHECK_FOR_RESPONSES` on
    /// both). `true`: responses are waiting, do not sleep.
    pub fn prepare_to_wait(&mut self) -> Result<bool, NetFrontError> {
        self.reap_tx()?;
        self.refill_rx();
        let tx = self.tx.final_check_for_responses(&mut self.tx_page)?;
        let rx = self.rx.final_check_for_responses(&mut self.rx_page)?;
        Ok(tx || rx)
    }

    /// Rx buffers currently posted to the back end.
    pub fn rx_posted(&self) -> usize {
        self.rx_slot.iter().filter(|s| s.is_some()).count()
    }

    /// Tx buffers free.
    pub fn tx_free(&self) -> usize {
        self.tx_free.len()
    }
}
