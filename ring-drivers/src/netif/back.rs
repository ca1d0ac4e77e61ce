//! The network back end: [`NetBack`] validates and copies what a front end transmits (tx) and
//! grant-copies frames into the buffers the front end posted (rx).
//!
//! Tx slots are consumed one at a time into a packet under assembly (first slot, extra-info
//! slots, data fragments chained with `NETTXF_more_data`), so a packet may straddle two
//! `serve_tx` calls; at most one packet's slots (18 data + 4 extra) are ever held unanswered.
//! Once a packet fails a check every slot it already holds is answered `NETIF_RSP_ERROR`, and
//! each further slot of its chain is answered as it arrives.
//!
//! Batching: the valid packets of a pass are packed into one buffer ([`TX_BATCH_BYTES`]) and
//! copied out of the grants with one [`GrantIo`] call (one `GNTTABOP_copy` hypercall for many
//! frames, as Linux netback batches its copy ops), then delivered and answered. Frames for the
//! front end go through a byte-bounded queue ([`RX_QUEUE_BYTES`], [`RX_QUEUE_MAX`] frames):
//! [`NetBack::queue`] only copies a frame in, [`NetBack::flush_rx`] copies every queued frame
//! that has posted buffers into them with one call per [`RX_BATCH_SEGS`] slots. Both buffers
//! are allocated once, when the back end is made: no heap allocation per frame, and nothing the
//! front end does makes them grow.
//!
//! Checksums: a `NETTXF_csum_blank` frame has its TCP/UDP checksum filled in ([`super::csum`])
//! before it is delivered (as `data_validated`); one that cannot be completed is refused. A
//! frame for the front end marked [`RxMeta::csum_blank`] goes out as `NETRXF_csum_blank |
//! NETRXF_data_validated` only if the front end accepts offload (no `feature-no-csum-offload`);
//! otherwise its checksum is completed in the queue first.

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

use super::csum::{self, CsumError};
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
    /// The first slot's `size` (the whole frame) is larger than the back end forwards
    /// ([`NetBack::set_max_frame`]): refused before anything is copied.
    Oversize {
        /// The first slot's `size`.
        size: u16,
    },
    /// `NETTXF_csum_blank` on a frame whose checksum cannot be completed (not TCP or UDP over
    /// IPv4 or IPv6, a fragment, bad lengths).
    Checksum(CsumError),
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
    /// Marked `csum_blank` for a front end that refuses offload, and the checksum cannot be
    /// completed.
    Checksum(CsumError),
    /// The front end withdrew posted buffers (`req_prod` moved back) while the frame was being
    /// placed: the slots taken were answered `NETIF_RSP_ERROR`.
    RingShrank,
}

/// What [`NetBack::send`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Copied into the front end's buffers and published.
    Delivered,
    /// Waiting in the queue: no buffer posted yet ([`NetBack::send`]), or not flushed yet
    /// ([`NetBack::queue`]).
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
    /// ... [`TxError::Oversize`].
    pub tx_oversize: u64,
    /// ... [`TxError::Checksum`].
    pub tx_csum_errors: u64,
    /// `NETTXF_csum_blank` frames whose checksum the back end filled in.
    pub tx_csum_completed: u64,
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
    /// Frames dropped as empty or too big, or whose checksum could not be completed.
    pub rx_dropped_malformed: u64,
    /// Frames whose checksum the back end completed (the front end refuses offload).
    pub rx_csum_completed: u64,
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

/// Bytes the rx queue holds at most (one frame of [`MAX_FRAME`] fits); beyond it frames are
/// dropped ([`RxDrop::QueueFull`]).
pub const RX_QUEUE_BYTES: usize = 64 * 1024;

/// Bytes of tx frames copied together: the buffer one pass's packets are packed into.
pub const TX_BATCH_BYTES: usize = 64 * 1024;

/// Grant segments (tx slots) in one tx copy call at most.
pub const TX_BATCH_SEGS: usize = 128;

/// Rx slots filled by one copy call at most.
pub const RX_BATCH_SEGS: usize = 64;

/// A valid tx packet waiting in the batch for its copy.
#[derive(Clone, Copy, Debug)]
struct TxPending {
    /// Where its bytes go in the batch buffer, and how many.
    at: usize,
    len: usize,
    /// Its grant segments and slot ids in the batch's lists.
    segs: (usize, usize),
    ids: (usize, usize),
    meta: TxMeta,
}

/// Packets gathered in a pass for one grant-copy call.
#[derive(Debug, Default)]
struct TxBatch {
    buf: Vec<u8>,
    used: usize,
    segs: Vec<GrantSegment>,
    ids: Vec<u16>,
    pkts: Vec<TxPending>,
}

/// A frame in the rx queue.
#[derive(Clone, Copy, Debug)]
struct Queued {
    len: usize,
    meta: RxMeta,
    /// Already counted as having waited for a buffer (`rx_queued`).
    waited: bool,
}

/// Frames for the front end, their bytes back to back in `data[head..]`.
#[derive(Debug, Default)]
struct RxQueue {
    data: Vec<u8>,
    head: usize,
    frames: VecDeque<Queued>,
    /// Grant segments and request ids of the batch being copied.
    segs: Vec<GrantSegment>,
    ids: Vec<u16>,
}

impl RxQueue {
    /// Whether `len` more bytes fit (moving the waiting bytes to the front if that makes room).
    fn room(&mut self, len: usize) -> bool {
        if self.data.len() + len > RX_QUEUE_BYTES && self.head > 0 {
            self.data.copy_within(self.head.., 0);
            self.data.truncate(self.data.len() - self.head);
            self.head = 0;
        }
        self.data.len() + len <= RX_QUEUE_BYTES
    }

    /// Drops the first `n` frames of `bytes` bytes.
    fn pop(&mut self, n: usize, bytes: usize) {
        self.frames.drain(..n);
        self.head += bytes;
        if self.frames.is_empty() {
            self.data.clear();
            self.head = 0;
        }
    }
}

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
    /// The front end accepts `NETRXF_csum_blank` (it did not write
    /// `feature-no-csum-offload`).
    front_csum_offload: bool,
    grants: G,
    notify: N,
    pkt: Packet,
    max_frame: usize,
    batch: TxBatch,
    rxq: RxQueue,
    /// What became of the last frame a flush took out of the queue.
    rx_last: Option<Result<(), RxDrop>>,
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
            front_csum_offload: !transport.no_csum_offload,
            grants,
            notify,
            pkt: Packet {
                frags: Vec::with_capacity(XEN_NETBK_LEGACY_SLOTS_MAX),
                ..Packet::default()
            },
            max_frame: MAX_FRAME,
            batch: TxBatch {
                buf: vec![0; TX_BATCH_BYTES],
                used: 0,
                segs: Vec::with_capacity(TX_BATCH_SEGS),
                ids: Vec::with_capacity(TX_BATCH_SEGS),
                pkts: Vec::with_capacity(TX_BATCH_SEGS),
            },
            rxq: RxQueue {
                data: Vec::with_capacity(RX_QUEUE_BYTES),
                head: 0,
                frames: VecDeque::with_capacity(RX_QUEUE_MAX),
                segs: Vec::with_capacity(RX_BATCH_SEGS),
                ids: Vec::with_capacity(RX_BATCH_SEGS),
            },
            rx_last: None,
            stats: NetBackStats::default(),
            last_error: None,
        })
    }

    /// The largest frame the front end may send (and the back end will copy): the bridge's
    /// frame limit (1518 for a 1500-byte MTU and a VLAN tag) when nothing beyond the MTU is
    /// offered (no GSO). A larger first slot is refused ([`TxError::Oversize`]) before any
    /// copy. Clamped to [`ETH_HLEN`]..=[`MAX_FRAME`]; the default is [`MAX_FRAME`].
    pub fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.clamp(ETH_HLEN, MAX_FRAME);
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
                served.packets += self.take_slot(req, &mut deliver);
                if served.slots >= TX_BUDGET {
                    served.packets += self.flush_tx(&mut deliver);
                    self.publish_tx();
                    served.more = self.tx.unconsumed_requests(&self.tx_page)? > 0;
                    return Ok(served);
                }
            }
            served.packets += self.flush_tx(&mut deliver);
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
        self.count_error(e);
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

    /// Counts a refused packet by cause.
    fn count_error(&mut self, e: TxError) {
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
            TxError::Oversize { .. } => s.tx_oversize += 1,
            TxError::Checksum(_) => s.tx_csum_errors += 1,
        }
    }

    /// Takes one slot copied out of the ring; returns how many packets were delivered (a full
    /// batch is copied and delivered when a finished packet does not fit it).
    fn take_slot(&mut self, req: NetifTxRequest, deliver: &mut impl FnMut(&[u8], TxMeta)) -> usize {
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
            } else if usize::from(req.size) > self.max_frame {
                self.fail(TxError::Oversize { size: req.size });
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
            return 0;
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

    /// The packet's last slot was taken: checks the first slot's own length and adds the
    /// packet to the batch (copying and delivering the batch first if it is full). Returns how
    /// many packets that delivered.
    fn finish(&mut self, deliver: &mut impl FnMut(&[u8], TxMeta)) -> usize {
        let first = self.pkt.first;
        let own = self.pkt.remaining;
        if self.pkt.error.is_none() && usize::from(first.offset) + usize::from(own) > PAGE_SIZE {
            self.fail(TxError::CrossesPage {
                offset: first.offset,
                size: own,
            });
        }
        if self.pkt.error.is_some() {
            return 0;
        }
        let size = usize::from(first.size);
        let b = &self.batch;
        let delivered = if b.used + size > b.buf.len()
            || b.segs.len() + XEN_NETBK_LEGACY_SLOTS_MAX > TX_BATCH_SEGS
        {
            self.flush_tx(deliver)
        } else {
            0
        };
        let b = &mut self.batch;
        let (seg0, id0) = (b.segs.len(), b.ids.len());
        let pieces = core::iter::once((first.gref, first.offset, own, first.id)).chain(
            self.pkt
                .frags
                .iter()
                .map(|f| (f.gref, f.offset, f.size, f.id)),
        );
        for (gref, offset, len, id) in pieces {
            if len > 0 {
                b.segs.push(GrantSegment { gref, offset, len });
            }
            b.ids.push(id);
        }
        b.pkts.push(TxPending {
            at: b.used,
            len: size,
            segs: (seg0, b.segs.len()),
            ids: (id0, b.ids.len()),
            meta: TxMeta {
                csum_blank: first.flags & NETTXF_csum_blank != 0,
                data_validated: first.flags & NETTXF_data_validated != 0,
            },
        });
        b.used += size;
        self.pkt.frags.clear();
        delivered
    }

    /// Copies the batch's packets out of the grants (one call; each packet alone again if it
    /// fails, to find whose grant is bad), completes blank checksums, delivers each good
    /// packet and answers every slot. Returns how many packets were delivered.
    fn flush_tx(&mut self, deliver: &mut impl FnMut(&[u8], TxMeta)) -> usize {
        if self.batch.pkts.is_empty() {
            return 0;
        }
        let mut b = core::mem::take(&mut self.batch);
        self.stats.grant_copy_calls += 1;
        let whole = self
            .grants
            .copy_from_grants(self.frontend, &b.segs, &mut b.buf[..b.used]);
        let mut delivered = 0;
        for p in &b.pkts {
            let frame = &mut b.buf[p.at..p.at + p.len];
            let mut r = whole.map_err(TxError::Grant);
            if r.is_err() {
                self.stats.grant_copy_calls += 1;
                r = self
                    .grants
                    .copy_from_grants(self.frontend, &b.segs[p.segs.0..p.segs.1], frame)
                    .map_err(TxError::Grant);
            }
            let mut meta = p.meta;
            if r.is_ok() && meta.csum_blank {
                r = csum::complete(frame).map_err(TxError::Checksum);
                if r.is_ok() {
                    self.stats.tx_csum_completed += 1;
                    meta = TxMeta {
                        csum_blank: false,
                        data_validated: true,
                    };
                }
            }
            let status = match r {
                Ok(()) => {
                    deliver(frame, meta);
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += p.len as u64;
                    delivered += 1;
                    NETIF_RSP_OKAY
                }
                Err(e) => {
                    self.count_error(e);
                    NETIF_RSP_ERROR
                }
            };
            for &id in &b.ids[p.ids.0..p.ids.1] {
                self.answer(id, status);
            }
        }
        b.used = 0;
        b.segs.clear();
        b.ids.clear();
        b.pkts.clear();
        self.batch = b;
        delivered
    }

    /// Why `frame` cannot go to this front end at all, if it cannot.
    fn rx_malformed(&self, frame: &[u8]) -> Option<RxDrop> {
        if frame.is_empty() {
            Some(RxDrop::Empty)
        } else if frame.len() > MAX_FRAME || (frame.len() > PAGE_SIZE && !self.front_sg) {
            Some(RxDrop::TooBig(frame.len()))
        } else {
            None
        }
    }

    /// Copies a frame into the rx queue (no grant copy yet: [`NetBack::flush_rx`] moves every
    /// queued frame that has posted buffers, many per hypercall; a full queue is flushed
    /// first). [`RxOutcome::Queued`], or dropped and counted: malformed, a blank checksum that
    /// cannot be completed for a front end refusing offload, or the queue still full
    /// ([`RX_QUEUE_MAX`] frames or [`RX_QUEUE_BYTES`]: the front end posts no buffers).
    pub fn queue(&mut self, frame: &[u8], meta: RxMeta) -> Result<RxOutcome, RingError> {
        if let Some(d) = self.rx_malformed(frame) {
            self.stats.rx_dropped_malformed += 1;
            return Ok(RxOutcome::Dropped(d));
        }
        let full = |q: &mut RxQueue| q.frames.len() >= RX_QUEUE_MAX || !q.room(frame.len());
        if full(&mut self.rxq) {
            self.flush_rx()?;
            if full(&mut self.rxq) {
                self.stats.rx_dropped_no_buffer += 1;
                return Ok(RxOutcome::Dropped(RxDrop::QueueFull));
            }
        }
        let at = self.rxq.data.len();
        self.rxq.data.extend_from_slice(frame);
        let mut meta = meta;
        if meta.csum_blank && !self.front_csum_offload {
            if let Err(e) = csum::complete(&mut self.rxq.data[at..]) {
                self.rxq.data.truncate(at);
                self.stats.rx_dropped_malformed += 1;
                return Ok(RxOutcome::Dropped(RxDrop::Checksum(e)));
            }
            self.stats.rx_csum_completed += 1;
            meta = RxMeta {
                csum_blank: false,
                data_validated: true,
            };
        }
        self.rxq.frames.push_back(Queued {
            len: frame.len(),
            meta,
            waited: false,
        });
        Ok(RxOutcome::Queued)
    }

    /// Gives a frame to the front end now: copied into the buffers it posted (several slots
    /// with `NETRXF_more_data` for a frame over a page, if it offered `feature-sg`), queued
    /// when it has not posted enough, or dropped and counted ([`NetBack::queue`] and
    /// [`NetBack::flush_rx`] in one call; frames queued earlier go first).
    pub fn send(&mut self, frame: &[u8], meta: RxMeta) -> Result<RxOutcome, RingError> {
        if !self.rxq.frames.is_empty() {
            self.flush_rx()?;
        }
        let out = self.queue(frame, meta)?;
        if out != RxOutcome::Queued {
            return Ok(out);
        }
        self.flush_rx()?;
        if !self.rxq.frames.is_empty() {
            return Ok(RxOutcome::Queued);
        }
        // The queue emptied: the last frame it gave up was this one.
        Ok(match self.rx_last {
            Some(Err(d)) => RxOutcome::Dropped(d),
            _ => RxOutcome::Delivered,
        })
    }

    /// Copies queued frames into buffers the front end posted (one grant-copy call per
    /// [`RX_BATCH_SEGS`] slots), publishes the responses, and re-arms the rx ring's
    /// `req_event` while frames still wait. Returns how many frames left the queue.
    pub fn flush_rx(&mut self) -> Result<usize, RingError> {
        let mut done = 0;
        loop {
            let mut moved = 0;
            loop {
                let n = self.rx_batch()?;
                if n == 0 {
                    break;
                }
                moved += n;
            }
            if moved > 0 {
                self.publish_rx();
                done += moved;
            }
            if self.rxq.frames.is_empty() || !self.rx.final_check_for_requests(&mut self.rx_page)? {
                break;
            }
            // Posted buffers are waiting, but maybe fewer than the head frame needs (a
            // multi-page frame): go round again only if it fits now, else wait for the event
            // armed just above (Linux's `xenvif_rx_ring_slots_available`). Going round on any
            // posted buffer would spin dom0 forever on a front end that posts one at a time.
            let needed = self
                .rxq
                .frames
                .front()
                .map_or(0, |q| q.len.div_ceil(PAGE_SIZE));
            if (self.rx.unconsumed_requests(&self.rx_page)? as usize) < needed {
                break;
            }
        }
        for q in self.rxq.frames.iter_mut().filter(|q| !q.waited) {
            q.waited = true;
            self.stats.rx_queued += 1;
        }
        Ok(done)
    }

    fn publish_rx(&mut self) {
        if self.rx.push_responses_and_check_notify(&mut self.rx_page) {
            self.notify.notify();
            self.stats.notifications_sent += 1;
        }
    }

    /// Copies the queued frames at the head that posted buffers can hold (up to
    /// [`RX_BATCH_SEGS`] slots) with one grant-copy call, answering their slots (not yet
    /// published). Returns how many frames left the queue (0: none fits).
    fn rx_batch(&mut self) -> Result<usize, RingError> {
        let mut avail = self.rx.unconsumed_requests(&self.rx_page)? as usize;
        let (mut n, mut slots) = (0, 0);
        for q in &self.rxq.frames {
            let need = q.len.div_ceil(PAGE_SIZE);
            if need > avail || slots + need > RX_BATCH_SEGS {
                break;
            }
            avail -= need;
            slots += need;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // Take the posted requests. The front end may have moved `req_prod` back since they
        // were counted: the frame that falls short is dropped (its slots answered
        // `NETIF_RSP_ERROR`), the ones after it stay queued.
        let mut q = core::mem::take(&mut self.rxq);
        q.segs.clear();
        q.ids.clear();
        let (mut full, mut bytes, mut short) = (0, 0, None);
        'frames: for f in q.frames.iter().take(n) {
            let (seg0, mut off) = (q.segs.len(), 0);
            while off < f.len {
                let req = match self.rx.get_request(&self.rx_page) {
                    Ok(Some(req)) => req,
                    Ok(None) => {
                        short = Some(seg0);
                        break 'frames;
                    }
                    Err(e) => {
                        // Nothing answered yet: the vif is broken and will be closed.
                        self.rxq = q;
                        return Err(e);
                    }
                };
                let len = (f.len - off).min(PAGE_SIZE);
                q.ids.push(req.id);
                q.segs.push(GrantSegment {
                    gref: req.gref,
                    offset: 0,
                    len: len as u16,
                });
                off += len;
            }
            full += 1;
            bytes += f.len;
        }
        let full_segs = short.unwrap_or(q.segs.len());
        let whole = if full > 0 {
            self.stats.grant_copy_calls += 1;
            self.grants.copy_to_grants(
                self.frontend,
                &q.segs[..full_segs],
                &q.data[q.head..q.head + bytes],
            )
        } else {
            Ok(())
        };
        let (mut seg, mut at) = (0, q.head);
        for f in q.frames.iter().take(full) {
            let need = f.len.div_ceil(PAGE_SIZE);
            let mut r = whole.map_err(RxDrop::Grant);
            if r.is_err() {
                self.stats.grant_copy_calls += 1;
                r = self
                    .grants
                    .copy_to_grants(
                        self.frontend,
                        &q.segs[seg..seg + need],
                        &q.data[at..at + f.len],
                    )
                    .map_err(RxDrop::Grant);
            }
            self.rx_respond(&q.ids[seg..seg + need], &q.segs[seg..seg + need], f.meta, r);
            match r {
                Ok(()) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += f.len as u64;
                }
                Err(_) => self.stats.rx_grant_errors += 1,
            }
            self.rx_last = Some(r);
            seg += need;
            at += f.len;
        }
        let mut gone = full;
        if let Some(s0) = short {
            // The frame that fell short: its taken slots answered ERROR, the frame dropped.
            let len = q.frames[full].len;
            let r = Err(RxDrop::RingShrank);
            self.rx_respond(&q.ids[s0..], &q.segs[s0..], RxMeta::default(), r);
            self.stats.rx_grant_errors += 1;
            self.rx_last = Some(r);
            gone += 1;
            bytes += len;
        }
        q.pop(gone, bytes);
        self.rxq = q;
        Ok(gone)
    }

    /// Answers the rx slots `ids` (filled as `segs` say) of one frame.
    fn rx_respond(
        &mut self,
        ids: &[u16],
        segs: &[GrantSegment],
        meta: RxMeta,
        r: Result<(), RxDrop>,
    ) {
        let mut flags = match (meta.csum_blank, meta.data_validated) {
            (true, _) => NETRXF_csum_blank | NETRXF_data_validated,
            (false, true) => NETRXF_data_validated,
            (false, false) => 0,
        };
        for (i, (&id, seg)) in ids.iter().zip(segs).enumerate() {
            let last = i + 1 == ids.len();
            let rsp = match r {
                Ok(()) => NetifRxResponse {
                    id,
                    offset: 0,
                    flags: flags | if last { 0 } else { NETRXF_more_data },
                    status: seg.len as i16,
                },
                Err(_) => NetifRxResponse {
                    id,
                    offset: 0,
                    flags: 0,
                    status: NETIF_RSP_ERROR,
                },
            };
            // Never false: the slot's request was consumed.
            let _ = self.rx.push_response(&mut self.rx_page, &rsp);
            flags = 0;
        }
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

    /// Frames waiting in the rx queue.
    pub fn rx_queued(&self) -> usize {
        self.rxq.frames.len()
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
