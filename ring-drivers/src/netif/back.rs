//! The network back end: [`NetBack`] validates and copies what a front end transmits (tx) and
//! grant-copies frames into the buffers the front end posted (rx).
//!
//! Tx slots are consumed one at a time into a packet under assembly (first slot, extra-info
//! slots, data fragments chained with `NETTXF_more_data`), so a packet may straddle two
//! `serve_tx` calls; at most one packet's slots (18 data + 4 extra) are ever held unanswered.
//! Once a packet fails a check every slot it already holds is answered `NETIF_RSP_ERROR`, and
//! each further slot of its chain is answered as it arrives.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::io::netif::{
    NETRXF_csum_blank, NETRXF_data_validated, NETRXF_more_data, NETTXF_csum_blank,
    NETTXF_data_validated, NETTXF_extra_info, NETTXF_more_data, NetifExtraInfo, NetifRxResponse,
    NetifTxRequest, NetifTxResponse, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MAX,
    XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_GSO_TYPE_NONE,
};
use zerocopy::{FromBytes, IntoBytes};

use super::{
    GrantIo, GrantIoError, GrantSegment, NetFrontendTransport, NetRxBackRing, NetTxBackRing,
    Notify, ETH_HLEN, MAX_EXTRA_SLOTS, MAX_FRAME, XEN_NETBK_LEGACY_SLOTS_MAX,
};
use crate::byte_ring::RingError;
use crate::shared_page::{SharedPage, PAGE_SIZE};

/// What the front end said about a transmitted frame's checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// `NETTXF_csum_blank`: the protocol checksum is not filled in (offload).
    pub csum_blank: bool,
    /// `NETTXF_data_validated`: the data was checked against its checksum.
    pub data_validated: bool,
}

/// What to tell the front end about a received frame's checksum (`NETRXF_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The protocol checksum is blank (`NETRXF_csum_blank | NETRXF_data_validated`); only for
    /// a front end that accepts offload.
    pub csum_blank: bool,
    /// The data was validated (`NETRXF_data_validated`).
    pub data_validated: bool,
}

/// Why a tx packet was refused. Each untrusted-input check has its own variant; every slot of
/// the packet is answered `NETIF_RSP_ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// The first slot's `size` (the whole frame) is shorter than an Ethernet header (0
    /// included).
    TooShort {
        /// The first slot's `size`.
        size: u16,
    },
    /// A slot's data crosses the end of its page (`offset + size > 4096`).
    CrossesPage {
        /// The slot's `offset`.
        offset: u16,
        /// The slot's data length.
        size: u16,
    },
    /// A fragment is larger than what the first slot's `size` leaves: the frame is 64 KiB or
    /// more and its 16-bit size wrapped, or the sizes lie.
    FragmentTooBig {
        /// The fragment's `size`.
        size: u16,
        /// What the first slot's `size` left for it.
        remaining: u16,
    },
    /// More than [`XEN_NETBK_LEGACY_SLOTS_MAX`] data slots (XSA-39).
    TooManySlots,
    /// An extra-info slot of type `XEN_NETIF_EXTRA_TYPE_NONE` or unknown.
    BadExtraType(u8),
    /// More extra-info slots than there are types.
    TooManyExtras,
    /// A GSO extra: `feature-gso-*` is not offered.
    GsoNotOffered,
    /// Copying from a granted page failed (bad grant reference, wrong domain...).
    Grant(GrantIoError),
}

/// Why a frame for the front end was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The frame is empty.
    Empty,
    /// The frame is larger than the protocol carries, or larger than a page for a front end
    /// without `feature-sg`.
    TooBig(usize),
    /// The front end has posted no buffer for a while: the queue is full.
    QueueFull,
    /// Copying into a posted buffer failed (its slots were answered `NETIF_RSP_ERROR`).
    Grant(GrantIoError),
    /// The front end withdrew posted buffers (`req_prod` moved back) while the frame was being
    /// placed: the slots taken were answered `NETIF_RSP_ERROR`.
    RingShrank,
}

/// What [`NetBack::send`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Copied into the front end's buffers and published.
    Delivered,
    /// No buffer posted yet: queued until the front end posts one.
    Queued,
    /// Dropped (counted in [`NetBackStats`]).
    Dropped(RxDrop),
}

/// What one [`NetBack::serve_tx`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxServed {
    /// Packets delivered to the caller.
    pub packets: usize,
    /// Tx slots consumed (good, bad and extra).
    pub slots: usize,
    /// The budget ran out with requests waiting: call `serve_tx` again (`req_event` was not
    /// re-armed, the front end will not notify for them).
    pub more: bool,
}

/// Counters of a back end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetBackStats {
    /// Frames the front end sent that were delivered.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Tx packets refused (the sum of the causes below).
    pub tx_errors: u64,
    /// ... [`TxError::TooShort`].
    pub tx_too_short: u64,
    /// ... [`TxError::CrossesPage`].
    pub tx_crosses_page: u64,
    /// ... [`TxError::FragmentTooBig`].
    pub tx_fragment_too_big: u64,
    /// ... [`TxError::TooManySlots`].
    pub tx_too_many_slots: u64,
    /// ... [`TxError::BadExtraType`], [`TxError::TooManyExtras`], [`TxError::GsoNotOffered`].
    pub tx_bad_extra: u64,
    /// ... [`TxError::Grant`].
    pub tx_grant_errors: u64,
    /// Tx slots consumed (every kind).
    pub tx_slots: u64,
    /// Extra-info slots skipped.
    pub tx_extra_slots: u64,
    /// Frames copied to the front end.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames that had to wait for a buffer.
    pub rx_queued: u64,
    /// Frames dropped because the front end posted no buffer ([`RxDrop::QueueFull`]).
    pub rx_dropped_no_buffer: u64,
    /// Frames dropped as empty or too big.
    pub rx_dropped_malformed: u64,
    /// Frames dropped because a posted buffer's grant failed (or the ring shrank).
    pub rx_grant_errors: u64,
    /// Events sent to the front end.
    pub notifications_sent: u64,
    /// Events received from the front end ([`NetBack::on_event`] calls).
    pub events_received: u64,
    /// [`GrantIo`] calls (one `GNTTABOP_copy` hypercall each in dom0).
    pub grant_copy_calls: u64,
}

/// Tx slots one [`NetBack::serve_tx`] call consumes at most, so a front end that keeps
/// producing cannot hold dom0's CPU.
pub const TX_BUDGET: usize = 2 * NetTxBackRing::SIZE as usize;

/// Frames queued for a front end that has no buffer posted; beyond it they are dropped.
pub const RX_QUEUE_MAX: usize = 128;

/// The tx packet under assembly.
#[derive(Debug, Default)]
struct Packet {
    /// A first slot was taken and the packet is not finished.
    active: bool,
    /// The first slot (its `size` is the whole frame).
    first: NetifTxRequest,
    /// The first slot was answered (the packet failed).
    first_answered: bool,
    /// Data slots after the first, held until the packet is finished.
    frags: Vec<NetifTxRequest>,
    /// `first.size` minus the fragments so far: at the end, the first slot's own length.
    remaining: u16,
    /// The next slot is an extra-info slot.
    extra_pending: bool,
    /// Data slots follow (after any extras).
    more: bool,
    /// Extra-info slots seen.
    extras: usize,
    /// The check the packet failed.
    error: Option<TxError>,
}

/// A network back end serving one front end's tx and rx rings.
#[derive(Debug)]
pub struct NetBack<P, G, N> {
    tx: NetTxBackRing,
    tx_page: P,
    rx: NetRxBackRing,
    rx_page: P,
    frontend: u16,
    front_sg: bool,
    grants: G,
    notify: N,
    pkt: Packet,
    frame: Vec<u8>,
    rx_queue: VecDeque<(Vec<u8>, RxMeta)>,
    stats: NetBackStats,
    last_error: Option<TxError>,
}

impl<P: SharedPage, G: GrantIo, N: Notify> NetBack<P, G, N> {
    /// Attaches to the rings in `tx_page` and `rx_page` (the front end's `tx-ring-ref` and
    /// `rx-ring-ref`, mapped) of domain `frontend`, whose keys were parsed into `transport`.
    /// Fails if either ring's `req_prod` is already an overrun.
    pub fn new(
        tx_page: P,
        rx_page: P,
        frontend: u16,
        transport: &NetFrontendTransport,
        grants: G,
        notify: N,
    ) -> Result<Self, RingError> {
        let tx = NetTxBackRing::attach(&tx_page)?;
        let rx = NetRxBackRing::attach(&rx_page)?;
        Ok(NetBack {
            tx,
            tx_page,
            rx,
            rx_page,
            frontend,
            front_sg: transport.feature_sg,
            grants,
            notify,
            pkt: Packet {
                frags: Vec::with_capacity(XEN_NETBK_LEGACY_SLOTS_MAX),
                ..Packet::default()
            },
            frame: vec![0; MAX_FRAME],
            rx_queue: VecDeque::new(),
            stats: NetBackStats::default(),
            last_error: None,
        })
    }

    /// The event channel fired: counts it, copies queued frames into buffers the front end
    /// may have posted, and serves the tx ring, handing each good frame to `deliver`.
    pub fn on_event(&mut self, deliver: impl FnMut(&[u8], TxMeta)) -> Result<TxServed, RingError> {
        self.stats.events_received += 1;
        self.flush_rx()?;
        self.serve_tx(deliver)
    }

    /// Consumes tx slots (at most [`TX_BUDGET`]), hands each complete, valid frame to
    /// `deliver` and answers every slot; publishes the responses (notifying the front end when
    /// its `rsp_event` asks) and, with nothing left, re-arms `req_event`
    /// (`RING_FINAL_CHECK_FOR_REQUESTS`). A producer overrun is an error now and on every later
    /// call: stop serving and disconnect.
    pub fn serve_tx(
        &mut self,
        mut deliver: impl FnMut(&[u8], TxMeta),
    ) -> Result<TxServed, RingError> {
        let mut served = TxServed {
            packets: 0,
            slots: 0,
            more: false,
        };
        loop {
            while let Some(req) = self.tx.get_request(&self.tx_page)? {
                served.slots += 1;
                self.stats.tx_slots += 1;
                if self.take_slot(req, &mut deliver) {
                    served.packets += 1;
                }
                if served.slots >= TX_BUDGET {
                    self.publish_tx();
                    served.more = self.tx.unconsumed_requests(&self.tx_page)? > 0;
                    return Ok(served);
                }
            }
            self.publish_tx();
            if !self.tx.final_check_for_requests(&mut self.tx_page)? {
                return Ok(served);
            }
        }
    }

    fn publish_tx(&mut self) {
        if self.tx.push_responses_and_check_notify(&mut self.tx_page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
    }

    fn answer(&mut self, id: u16, status: i16) {
        // Never false: every answered slot was consumed and is answered once.
        let _ = self
            .tx
            .push_response(&mut self.tx_page, &NetifTxResponse { id, status });
    }

    /// Marks the packet failed (first failure only): counts it and answers every slot held.
    fn fail(&mut self, e: TxError) {
        if self.pkt.error.is_some() {
            return;
        }
        self.pkt.error = Some(e);
        self.last_error = Some(e);
        let s = &mut self.stats;
        s.tx_errors += 1;
        match e {
            TxError::TooShort { .. } => s.tx_too_short += 1,
            TxError::CrossesPage { .. } => s.tx_crosses_page += 1,
            TxError::FragmentTooBig { .. } => s.tx_fragment_too_big += 1,
            TxError::TooManySlots => s.tx_too_many_slots += 1,
            TxError::BadExtraType(_) | TxError::TooManyExtras | TxError::GsoNotOffered => {
                s.tx_bad_extra += 1
            }
            TxError::Grant(_) => s.tx_grant_errors += 1,
        }
        if !self.pkt.first_answered {
            self.pkt.first_answered = true;
            self.answer(self.pkt.first.id, NETIF_RSP_ERROR);
        }
        let frags = core::mem::take(&mut self.pkt.frags);
        for f in &frags {
            self.answer(f.id, NETIF_RSP_ERROR);
        }
        self.pkt.frags = frags;
        self.pkt.frags.clear();
    }

    /// Takes one slot copied out of the ring; `true` when it finished a delivered packet.
    fn take_slot(&mut self, req: NetifTxRequest, deliver: &mut impl FnMut(&[u8], TxMeta)) -> bool {
        if !self.pkt.active {
            let mut frags = core::mem::take(&mut self.pkt.frags);
            frags.clear();
            self.pkt = Packet {
                active: true,
                first: req,
                first_answered: false,
                frags,
                remaining: req.size,
                extra_pending: req.flags & NETTXF_extra_info != 0,
                more: req.flags & NETTXF_more_data != 0,
                extras: 0,
                error: None,
            };
            if usize::from(req.size) < ETH_HLEN {
                self.fail(TxError::TooShort { size: req.size });
            }
        } else if self.pkt.extra_pending {
            self.take_extra(&req);
        } else {
            self.pkt.more = req.flags & NETTXF_more_data != 0;
            if self.pkt.error.is_some() {
                self.answer(req.id, NETIF_RSP_ERROR);
            } else {
                let e = if self.pkt.frags.len() + 1 >= XEN_NETBK_LEGACY_SLOTS_MAX {
                    Some(TxError::TooManySlots)
                } else if req.size > self.pkt.remaining {
                    Some(TxError::FragmentTooBig {
                        size: req.size,
                        remaining: self.pkt.remaining,
                    })
                } else if usize::from(req.offset) + usize::from(req.size) > PAGE_SIZE {
                    Some(TxError::CrossesPage {
                        offset: req.offset,
                        size: req.size,
                    })
                } else {
                    None
                };
                match e {
                    Some(e) => {
                        self.fail(e);
                        self.answer(req.id, NETIF_RSP_ERROR);
                    }
                    None => {
                        self.pkt.remaining -= req.size;
                        self.pkt.frags.push(req);
                    }
                }
            }
        }
        if self.pkt.extra_pending || self.pkt.more {
            return false;
        }
        self.pkt.active = false;
        self.finish(deliver)
    }

    /// An extra-info slot (the same slot read as `netif_extra_info`): answered
    /// `NETIF_RSP_NULL` at once, its type checked, its contents otherwise ignored.
    fn take_extra(&mut self, req: &NetifTxRequest) {
        let (extra, _) = NetifExtraInfo::read_from_prefix(req.as_bytes())
            .expect("an extra-info slot is a prefix of a tx slot");
        self.answer(0, NETIF_RSP_NULL);
        self.stats.tx_extra_slots += 1;
        self.pkt.extras += 1;
        self.pkt.extra_pending = extra.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
        if self.pkt.extras > MAX_EXTRA_SLOTS {
            self.fail(TxError::TooManyExtras);
        } else if extra.r#type == XEN_NETIF_EXTRA_TYPE_NONE
            || extra.r#type >= XEN_NETIF_EXTRA_TYPE_MAX
        {
            self.fail(TxError::BadExtraType(extra.r#type));
        } else if extra.r#type == XEN_NETIF_EXTRA_TYPE_GSO
            && extra.gso_type() != XEN_NETIF_GSO_TYPE_NONE
        {
            self.fail(TxError::GsoNotOffered);
        }
        // MCAST_ADD/DEL and HASH: not offered, harmless, skipped.
    }

    /// The packet's last slot was taken: checks the first slot's own length, copies the frame
    /// out of the grants, delivers it and answers its slots.
    fn finish(&mut self, deliver: &mut impl FnMut(&[u8], TxMeta)) -> bool {
        let first = self.pkt.first;
        let own = self.pkt.remaining;
        if self.pkt.error.is_none() && usize::from(first.offset) + usize::from(own) > PAGE_SIZE {
            self.fail(TxError::CrossesPage {
                offset: first.offset,
                size: own,
            });
        }
        if self.pkt.error.is_some() {
            return false;
        }
        let mut segs = [GrantSegment::default(); XEN_NETBK_LEGACY_SLOTS_MAX];
        let mut n = 0;
        let pieces = core::iter::once((first.gref, first.offset, own))
            .chain(self.pkt.frags.iter().map(|f| (f.gref, f.offset, f.size)));
        for (gref, offset, len) in pieces {
            if len > 0 {
                segs[n] = GrantSegment { gref, offset, len };
                n += 1;
            }
        }
        let size = usize::from(first.size);
        self.stats.grant_copy_calls += 1;
        if let Err(e) =
            self.grants
                .copy_from_grants(self.frontend, &segs[..n], &mut self.frame[..size])
        {
            self.fail(TxError::Grant(e));
            return false;
        }
        let meta = TxMeta {
            csum_blank: first.flags & NETTXF_csum_blank != 0,
            data_validated: first.flags & NETTXF_data_validated != 0,
        };
        deliver(&self.frame[..size], meta);
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += size as u64;
        self.answer(first.id, NETIF_RSP_OKAY);
        let frags = core::mem::take(&mut self.pkt.frags);
        for f in &frags {
            self.answer(f.id, NETIF_RSP_OKAY);
        }
        self.pkt.frags = frags;
        self.pkt.frags.clear();
        true
    }

    /// Gives a frame to the front end: copied into the buffers it posted (several slots with
    /// `NETRXF_more_data` for a frame over a page, if it offered `feature-sg`), queued when it
    /// has none posted (up to [`RX_QUEUE_MAX`] frames), or dropped and counted.
    pub fn send(&mut self, frame: &[u8], meta: RxMeta) -> Result<RxOutcome, RingError> {
        let drop = if frame.is_empty() {
            Some(RxDrop::Empty)
        } else if frame.len() > MAX_FRAME || (frame.len() > PAGE_SIZE && !self.front_sg) {
            Some(RxDrop::TooBig(frame.len()))
        } else {
            None
        };
        if let Some(d) = drop {
            self.stats.rx_dropped_malformed += 1;
            return Ok(RxOutcome::Dropped(d));
        }
        self.flush_rx()?;
        if self.rx_queue.is_empty() {
            if let Some(done) = self.rx_one(frame, meta)? {
                self.publish_rx();
                return Ok(match done {
                    Ok(()) => RxOutcome::Delivered,
                    Err(d) => RxOutcome::Dropped(d),
                });
            }
        }
        if self.rx_queue.len() >= RX_QUEUE_MAX {
            self.stats.rx_dropped_no_buffer += 1;
            return Ok(RxOutcome::Dropped(RxDrop::QueueFull));
        }
        self.rx_queue.push_back((frame.to_vec(), meta));
        self.stats.rx_queued += 1;
        // Ask for an event when the front end posts a buffer; if it just did, copy now.
        if self.rx.final_check_for_requests(&mut self.rx_page)? {
            self.flush_rx()?;
        }
        Ok(RxOutcome::Queued)
    }

    /// Copies queued frames into buffers the front end posted since; re-arms the rx ring's
    /// `req_event` while frames still wait. Returns how many frames left the queue.
    pub fn flush_rx(&mut self) -> Result<usize, RingError> {
        let mut done = 0;
        loop {
            while let Some((frame, meta)) = self.rx_queue.pop_front() {
                if self.rx_one(&frame, meta)?.is_none() {
                    self.rx_queue.push_front((frame, meta));
                    break;
                }
                done += 1;
            }
            if done > 0 {
                self.publish_rx();
            }
            if self.rx_queue.is_empty() || !self.rx.final_check_for_requests(&mut self.rx_page)? {
                return Ok(done);
            }
            // Posted buffers are waiting, but maybe fewer than the head frame needs (a
            // multi-page frame): go round again only if it fits now, else wait for the event
            // armed just above (Linux's `xenvif_rx_ring_slots_available`). Going round on any
            // posted buffer would spin dom0 forever on a front end that posts one at a time.
            let needed = self
                .rx_queue
                .front()
                .map_or(0, |(f, _)| f.len().div_ceil(PAGE_SIZE));
            if (self.rx.unconsumed_requests(&self.rx_page)? as usize) < needed {
                return Ok(done);
            }
        }
    }

    fn publish_rx(&mut self) {
        if self.rx.push_responses_and_check_notify(&mut self.rx_page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
    }

    /// Copies one frame into posted buffers, answering their slots (not yet published).
    /// `None`: not enough buffers posted, nothing consumed.
    fn rx_one(
        &mut self,
        frame: &[u8],
        meta: RxMeta,
    ) -> Result<Option<Result<(), RxDrop>>, RingError> {
        let needed = frame.len().div_ceil(PAGE_SIZE);
        if (self.rx.unconsumed_requests(&self.rx_page)? as usize) < needed {
            return Ok(None);
        }
        let mut ids = [0u16; MAX_FRAME.div_ceil(PAGE_SIZE)];
        let mut segs = [GrantSegment::default(); MAX_FRAME.div_ceil(PAGE_SIZE)];
        let mut taken = 0;
        for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
            // Counted above, but the front end may have moved `req_prod` back since.
            let Some(req) = self.rx.get_request(&self.rx_page)? else {
                break;
            };
            ids[i] = req.id;
            segs[i] = GrantSegment {
                gref: req.gref,
                offset: 0,
                len: chunk.len() as u16,
            };
            taken += 1;
        }
        let copied = if taken < needed {
            Err(RxDrop::RingShrank)
        } else {
            self.stats.grant_copy_calls += 1;
            self.grants
                .copy_to_grants(self.frontend, &segs[..needed], frame)
                .map_err(RxDrop::Grant)
        };
        let mut flags = match (meta.csum_blank, meta.data_validated) {
            (true, _) => NETRXF_csum_blank | NETRXF_data_validated,
            (false, true) => NETRXF_data_validated,
            (false, false) => 0,
        };
        for i in 0..taken {
            let last = i + 1 == needed;
            let rsp = match copied {
                Ok(()) => NetifRxResponse {
                    id: ids[i],
                    offset: 0,
                    flags: flags | if last { 0 } else { NETRXF_more_data },
                    status: segs[i].len as i16,
                },
                Err(_) => NetifRxResponse {
                    id: ids[i],
                    offset: 0,
                    flags: 0,
                    status: NETIF_RSP_ERROR,
                },
            };
            // Never false: the slot's request was consumed just above.
            let _ = self.rx.push_response(&mut self.rx_page, &rsp);
            flags = 0;
        }
        Ok(Some(match copied {
            Ok(()) => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += frame.len() as u64;
                Ok(())
            }
            Err(d) => {
                self.stats.rx_grant_errors += 1;
                Err(d)
            }
        }))
    }

    /// The counters.
    pub fn stats(&self) -> NetBackStats {
        self.stats
    }

    /// The most recent refused tx packet's error.
    pub fn last_error(&self) -> Option<TxError> {
        self.last_error
    }

    /// The overrun that stopped a ring (tx first), if any.
    pub fn broken(&self) -> Option<RingError> {
        self.tx.broken().or(self.rx.broken())
    }

    /// Frames waiting for the front end to post buffers.
    pub fn rx_queued(&self) -> usize {
        self.rx_queue.len()
    }

    /// The front end's domain.
    pub fn frontend(&self) -> u16 {
        self.frontend
    }

    /// Disconnects: drops queued frames and gives back the ring pages (tx, rx), grant access
    /// and event channel.
    pub fn into_parts(self) -> (P, P, G, N) {
        (self.tx_page, self.rx_page, self.grants, self.notify)
    }
}
