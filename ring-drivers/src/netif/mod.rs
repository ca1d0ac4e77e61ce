//! The network split driver (`io/netif.h`): back end [`NetBack`] and front end [`NetFront`].
//!
//! Two one-page rings per vif, 256 slots each, on the generic [`crate::ring`]: tx (front end
//! to back end, `netif_tx_request`/`netif_tx_response`) and rx (back end to front end,
//! `netif_rx_request`/`netif_rx_response`), one event channel for both (`event-channel`; split
//! channels and multi-queue are not offered). Only the rx-copy model exists: the front end
//! posts granted empty pages on the rx ring and the back end grant-copies each frame into them
//! (`feature-rx-copy` / `request-rx-copy`); on tx the back end grant-copies the front end's
//! slots into its own buffer. No page ever changes hands, nothing is mapped but the rings.
//!
//! # Driving a back end from dom0 (what the integrator calls)
//!
//! ```text
//! connect:   NetBack::new(tx_page, rx_page, domid, &transport, grants, notify)
//!            (tx_page/rx_page: the front end's tx-ring-ref/rx-ring-ref, mapped; transport:
//!             NetFrontendTransport::from_keys on the front end's directory)
//! event on the vif's port:
//!            back.on_event(|frame, meta| bridge.input(vif, frame, meta))?
//!            -> every frame the domU sent, already validated and copied into dom0's memory
//!               (the slice is only valid inside the callback: copy it or push it to a queue
//!               and forward it to the other vifs after the call, which borrow-checks);
//!               call again (serve_tx) while the result says `more` (a per-call budget keeps
//!               one domU from starving the others)
//! a frame for the domU (bridge output to this vif):
//!            back.queue(frame, RxMeta::default())?   (copied into the bounded rx queue)
//!            back.flush_rx()?   after the burst: every queued frame that has posted buffers,
//!               many per GNTTABOP_copy (send() = queue + flush for one frame)
//! errors:    Err(RingError) from any call = the front end overran a ring: stop serving it,
//!            close the device (XenbusBackend::close) and drop the NetBack. Bad packets are
//!            never errors of the call: they are answered NETIF_RSP_ERROR and counted.
//! counters:  back.stats() (packets, bytes, drops by cause, notifications, grant copies)
//! ```
//!
//! The grant-copy operations go through [`GrantIo`] and the event channel through [`Notify`],
//! the same traits as blkback (dom0's `GNTTABOP_copy` batcher and event sender serve both).
//!
//! # The front end (domU)
//!
//! [`NetFront::new`] initialises both rings and posts every rx buffer; [`NetFront::transmit`]
//! sends a frame (Busy when tx buffers or slots are all in flight; call [`NetFront::poll`]
//! to reap completions), [`NetFront::receive`] returns the next received frame, and
//! [`NetFront::prepare_to_wait`] re-arms both rings' event indices before the caller sleeps.
//!
//! # Xenstore node layout (written by dom0's toolstack, per domU `D`, vif handle `H` = 0)
//!
//! [`vif_nodes`]`(D, H)` gives both directories and their keys; dom0's toolstack writes them
//! (`write_vif_nodes` in `guest-kernel/src/dom0/toolstack.rs`) for every domU it introduces when
//! `Ctx::vifs` is set (set it once dom0 serves vifs: a NIC and a netback), before the services'
//! `attach`, so a netback service's `attach(ctx, D)` finds `backend/vif/D/0` complete and runs
//! `XenbusBackend::start` (write `NetBackendInfo::default().to_keys()`, then `InitWait`) and
//! watches the front end's `state`. The toolstack removes `backend/vif/D` after the services'
//! `detach`. A domU finding `device/vif/0` connects it and serves (below); without it, it powers
//! off as before.
//!
//! ```text
//! /local/domain/0/backend/vif/D/H/          owner dom0, domU D may read  (r0 then r D)
//!     frontend       /local/domain/D/device/vif/H
//!     frontend-id    D
//!     online         1
//!     state          1 (Initialising; then the back end's own states)
//!     handle         H
//!     mac            00:16:3e:HH:DH:DL   (mac_for_domain(D, H); HH = H, DH/DL = domid bytes)
//!     bridge         xenbr0
//!     feature-sg, feature-rx-copy, feature-gso-tcpv4 (0), feature-rx-flip (0),
//!     feature-multicast-control (0), feature-split-event-channels (0)
//!                    written by the back end (NetBackendInfo::to_keys) before InitWait
//! /local/domain/D/device/vif/H/             owner domU D, dom0 may read  (nD then r0)
//!     backend        /local/domain/0/backend/vif/D/H
//!     backend-id     0
//!     state          1 (Initialising; then the front end's own states)
//!     handle         H
//!     mac            same as the back end's
//!     tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy (1), feature-rx-notify (1),
//!     feature-sg (1), feature-no-csum-offload (1)
//!                    written by the front end (NetFrontendTransport::to_keys) before Initialised
//! ```
//!
//! The handshake is the generic one of [`crate::xenbus::state`]; [`keys`] has every key name.
//!
//! # The domU on the wire
//!
//! The domU (`guest-kernel/src/domu/net.rs`, stack in `guest_kernel::netstack`) takes its
//! address by DHCP, asking for 10.0.2.(20 + D) (`netstack::requested_address`), which QEMU's
//! user-mode DHCP server grants (it honours a free requested address in its pool
//! 10.0.2.15..=10.0.2.30; dom0, asking for nothing first, gets 10.0.2.15). So the Makefile's host
//! port forwards name domU D statically (`hostfwd=tcp:127.0.0.1:<port>-10.0.2.(20+D):80` and
//! `:7`). It serves HTTP on
//! port 80 (a text page: domid, uptime, the vif's counters), echo on port 7, and for the bench a
//! sink on port 9 (checks the xorshift64 stream of `blkif::xorshift_stream` from seed 1, answers
//! `ok <bytes>` when the peer closes) and a source on port 19 (sends that stream until the peer
//! closes); `net-fetch=<D2>`
//! fetches domU D2's page over the bridge, `net-reconnects=<n>` closes and reconnects the vif
//! n times first.
//!
//! # Validation (what a hostile front end gets)
//!
//! Per packet, answered `NETIF_RSP_ERROR` on every slot and counted by cause ([`TxError`]):
//! first slot shorter than an Ethernet header (size 0 included); a slot crossing its page
//! (`offset + size > 4096`, Linux makes this fatal, we answer it); a fragment larger than what
//! the first slot's `size` leaves (a frame of 64 KiB or more, whose 16-bit size wrapped); more
//! than [`XEN_NETBK_LEGACY_SLOTS_MAX`] data slots (XSA-39: the chain is consumed to its end and
//! each slot answered, at most 22 slots are ever held); an extra-info slot of unknown type, more
//! extras than types, a GSO extra (not offered); a grant the copy refuses. A producer overrun
//! (`req_prod` more than a ring ahead) on either ring breaks the vif ([`crate::RingError`]).
//! A first slot larger than the back end forwards ([`NetBack::set_max_frame`]; dom0 sets the
//! bridge's 1518) is refused before any copy. Tx frames are copied into one fixed 64 KiB batch
//! buffer per vif ([`TX_BATCH_BYTES`]): nothing the front end sends makes the back end
//! allocate. On rx, a front end that never posts buffers has frames queued up to
//! [`RX_QUEUE_MAX`] frames or [`RX_QUEUE_BYTES`], then dropped and counted; a bad rx grant drops the frame and answers
//! the slot `NETIF_RSP_ERROR`. Nothing here panics on anything the other domain wrote.
//!
//! Checksums: a front end that sends `NETTXF_csum_blank` (Linux's netfront does) leaves the
//! TCP/UDP checksum to compute: the back end fills it in ([`csum`]) before delivering the frame
//! (marked `data_validated`), and refuses a frame it cannot complete ([`TxError::Checksum`]).
//! On rx, [`RxMeta::csum_blank`] becomes `NETRXF_csum_blank | NETRXF_data_validated` only for
//! a front end that accepts offload; for one that wrote `feature-no-csum-offload` (ours:
//! smoltcp checks every checksum) the checksum is completed in the queue first. Our front end
//! never sets `csum_blank`.

use hypercall_abi::io::netif::{
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, XEN_NETIF_NR_SLOTS_MIN,
};

use crate::ring::{BackRing, FrontRing};

mod back;
pub mod csum;
mod front;
mod xenstore;

pub use crate::blkif::{GrantIo, GrantIoError, GrantPages, GrantSegment, KeyError, Notify};
pub use back::{
    NetBack, NetBackStats, RxDrop, RxMeta, RxOutcome, TxError, TxMeta, TxServed, RX_BATCH_SEGS,
    RX_QUEUE_BYTES, RX_QUEUE_MAX, TX_BATCH_BYTES, TX_BATCH_SEGS, TX_BUDGET,
};
pub use front::{NetFront, NetFrontError, NetFrontStats};
pub use xenstore::{
    format_mac, keys, mac_for_domain, parse_mac, vif_nodes, NetBackendInfo, NetFrontendTransport,
    VifNodes, BRIDGE,
};

/// Data slots a back end accepts in one tx packet (Linux netback's `XEN_NETBK_LEGACY_SLOTS_MAX`,
/// the historical `MAX_SKB_FRAGS`, equal to `XEN_NETIF_NR_SLOTS_MIN`); more is XSA-39.
pub const XEN_NETBK_LEGACY_SLOTS_MAX: usize = XEN_NETIF_NR_SLOTS_MIN as usize;
/// Extra-info slots one packet may carry (one per `XEN_NETIF_EXTRA_TYPE_*` but `NONE`).
pub const MAX_EXTRA_SLOTS: usize = 4;
/// Bytes in an Ethernet header: the shortest frame that can be forwarded.
pub const ETH_HLEN: usize = 14;
/// The largest frame the protocol carries (tx `size` is 16 bits).
pub const MAX_FRAME: usize = 0xFFFF;

/// The front end's tx ring.
pub type NetTxFrontRing = FrontRing<NetifTxRequest, NetifTxResponse>;
/// The back end's tx ring.
pub type NetTxBackRing = BackRing<NetifTxRequest, NetifTxResponse>;
/// The front end's rx ring.
pub type NetRxFrontRing = FrontRing<NetifRxRequest, NetifRxResponse>;
/// The back end's rx ring.
pub type NetRxBackRing = BackRing<NetifRxRequest, NetifRxResponse>;

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::io::netif::{NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE};

    #[test]
    fn rings_have_256_slots() {
        assert_eq!(NetTxFrontRing::SIZE as usize, NETIF_TX_RING_SIZE);
        assert_eq!(NetRxBackRing::SIZE as usize, NETIF_RX_RING_SIZE);
        assert_eq!(NetTxBackRing::SIZE, 256);
        assert_eq!(NetRxFrontRing::SIZE, 256);
    }
}
