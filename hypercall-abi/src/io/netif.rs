//! Network device split-driver protocol, mirroring `io/netif.h`.
//!
//! Two rings per queue: TX (guest to back end, [`NetifTxRequest`]/[`NetifTxResponse`]) and RX
//! (back end to guest, [`NetifRxRequest`]/[`NetifRxResponse`]). Front-end keys: `tx-ring-ref`,
//! `rx-ring-ref`, `event-channel` (or `event-channel-tx`/`-rx`), `request-rx-copy`; back-end
//! keys: `feature-rx-copy`, `feature-sg`, `feature-gso-tcpv4`, `mac`, ...
//!
//! On TX the first slot's `size` is the whole packet length and follow-on slots are chained with
//! `NETTXF_more_data`; on RX each response's `status` is that fragment's length. TX and RX flag
//! bit positions differ (`NETTXF_csum_blank` is bit 0, `NETRXF_csum_blank` bit 1).
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`NETTXF_csum_blank`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{ring_size, XEN_PAGE_SIZE};
use crate::assert_layout;
use crate::grant_table::GrantRef;

/// Minimum number of slots a back end must accept for one packet.
pub const XEN_NETIF_NR_SLOTS_MIN: u32 = 18;
/// Largest packet on the TX ring (`size` is 16 bits).
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

// --- TX flags. ---

/// Bit number of [`NETTXF_csum_blank`].
pub const _NETTXF_csum_blank: u16 = 0;
/// Protocol checksum field is blank in the packet (hardware offload).
pub const NETTXF_csum_blank: u16 = 1 << _NETTXF_csum_blank;
/// Bit number of [`NETTXF_data_validated`].
pub const _NETTXF_data_validated: u16 = 1;
/// Packet data has been validated against the protocol checksum.
pub const NETTXF_data_validated: u16 = 1 << _NETTXF_data_validated;
/// Bit number of [`NETTXF_more_data`].
pub const _NETTXF_more_data: u16 = 2;
/// The packet continues in the next request.
pub const NETTXF_more_data: u16 = 1 << _NETTXF_more_data;
/// Bit number of [`NETTXF_extra_info`].
pub const _NETTXF_extra_info: u16 = 3;
/// A [`NetifExtraInfo`] slot follows.
pub const NETTXF_extra_info: u16 = 1 << _NETTXF_extra_info;

// --- RX flags. ---

/// Bit number of [`NETRXF_data_validated`].
pub const _NETRXF_data_validated: u16 = 0;
/// Packet data has been validated against the protocol checksum.
pub const NETRXF_data_validated: u16 = 1 << _NETRXF_data_validated;
/// Bit number of [`NETRXF_csum_blank`].
pub const _NETRXF_csum_blank: u16 = 1;
/// Protocol checksum field is blank in the packet.
pub const NETRXF_csum_blank: u16 = 1 << _NETRXF_csum_blank;
/// Bit number of [`NETRXF_more_data`].
pub const _NETRXF_more_data: u16 = 2;
/// The packet continues in the next response.
pub const NETRXF_more_data: u16 = 1 << _NETRXF_more_data;
/// Bit number of [`NETRXF_extra_info`].
pub const _NETRXF_extra_info: u16 = 3;
/// A [`NetifExtraInfo`] slot follows.
pub const NETRXF_extra_info: u16 = 1 << _NETRXF_extra_info;
/// Bit number of [`NETRXF_gso_prefix`].
pub const _NETRXF_gso_prefix: u16 = 4;
/// GSO prefix descriptor.
pub const NETRXF_gso_prefix: u16 = 1 << _NETRXF_gso_prefix;

// --- Extra info. ---

/// Never used (terminator).
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// GSO parameters (`u.gso`).
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// Add a multicast filter (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// Remove a multicast filter (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// Hash value (`u.hash`).
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// One past the highest type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// Bit number of [`XEN_NETIF_EXTRA_FLAG_MORE`].
pub const _XEN_NETIF_EXTRA_FLAG_MORE: u8 = 0;
/// Another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << _XEN_NETIF_EXTRA_FLAG_MORE;
/// No GSO.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// TCP over IPv6 segmentation.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// Response status: packet dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// Response status: error.
pub const NETIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const NETIF_RSP_OKAY: i16 = 0;
/// Response status: no response (padding slot for extra info).
pub const NETIF_RSP_NULL: i16 = 1;

// --- Control ring (`ctrl-ring-ref`). ---

/// Bit number of [`XEN_NETIF_CTRL_HASH_TYPE_IPV4`].
pub const _XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 0;
/// Hash over IPv4 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4;
/// Bit number of [`XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP`].
pub const _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1;
/// Hash over IPv4 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP;
/// Bit number of [`XEN_NETIF_CTRL_HASH_TYPE_IPV6`].
pub const _XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 2;
/// Hash over IPv6 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6;
/// Bit number of [`XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP`].
pub const _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 3;
/// Hash over IPv6 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP;
/// No hashing.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// Toeplitz hashing.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;
/// Control request: invalid.
pub const XEN_NETIF_CTRL_TYPE_INVALID: u16 = 0;
/// Control request: get hash flags.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS: u16 = 1;
/// Control request: set hash flags.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS: u16 = 2;
/// Control request: set hash key.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY: u16 = 3;
/// Control request: get hash mapping size.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE: u16 = 4;
/// Control request: set hash mapping size.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE: u16 = 5;
/// Control request: set hash mapping.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: u16 = 6;
/// Control request: set hash algorithm.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM: u16 = 7;
/// Control request: get grant mapping size.
pub const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE: u16 = 8;
/// Control request: add grant mappings.
pub const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING: u16 = 9;
/// Control request: delete grant mappings.
pub const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: u16 = 10;
/// Control status: success.
pub const XEN_NETIF_CTRL_STATUS_SUCCESS: u32 = 0;
/// Control status: not supported.
pub const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// Control status: invalid parameter.
pub const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// Control status: buffer overflow.
pub const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;
/// Bit number of [`XEN_NETIF_CTRLF_GREF_readonly`].
pub const _XEN_NETIF_CTRLF_GREF_readonly: u16 = 0;
/// `xen_netif_gref.flags`: map read-only.
pub const XEN_NETIF_CTRLF_GREF_readonly: u16 = 1 << _XEN_NETIF_CTRLF_GREF_readonly;

/// A TX request: one slot of an outgoing packet.
#[doc(alias = "netif_tx_request_t")]
#[doc(alias = "netif_tx_request")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxRequest {
    /// Grant of the frame holding the data.
    pub gref: GrantRef,
    /// Offset of the data within the frame.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: packet size; others: this fragment's size.
    pub size: u16,
}
assert_layout!(NetifTxRequest, 12, { gref: 0, offset: 4, flags: 6, id: 8, size: 10 });

/// Extra information slot (GSO, multicast, hash); `u` is a C union of six bytes.
#[doc(alias = "netif_extra_info_t")]
#[doc(alias = "netif_extra_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// Union `{ gso { size, type, pad, features }; mcast { addr[6] }; hash {..}; pad[3] }`.
    pub u: [u16; 3],
}
assert_layout!(NetifExtraInfo, 8, { r#type: 0, flags: 1, u: 2 });

impl NetifExtraInfo {
    /// `u.gso.size`: maximum segment size.
    pub const fn gso_size(&self) -> u16 {
        self.u[0]
    }

    /// `u.gso.type`: `XEN_NETIF_GSO_TYPE_*`.
    pub const fn gso_type(&self) -> u8 {
        self.u[1] as u8
    }

    /// `u.gso.features`.
    pub const fn gso_features(&self) -> u16 {
        self.u[2]
    }

    /// `u.mcast.addr`: the MAC address.
    pub const fn mcast_addr(&self) -> [u8; 6] {
        let [a, b] = self.u[0].to_le_bytes();
        let [c, d] = self.u[1].to_le_bytes();
        let [e, f] = self.u[2].to_le_bytes();
        [a, b, c, d, e, f]
    }

    /// Sets `u.gso` (`pad` cleared).
    pub fn set_gso(&mut self, size: u16, gso_type: u8, features: u16) {
        self.u = [size, u16::from(gso_type), features];
    }
}

/// A TX response.
#[doc(alias = "netif_tx_response_t")]
#[doc(alias = "netif_tx_response")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxResponse {
    /// The request's `id`.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}
assert_layout!(NetifTxResponse, 4, { id: 0, status: 2 });

/// An RX request: a granted buffer for the back end to fill.
#[doc(alias = "netif_rx_request_t")]
#[doc(alias = "netif_rx_request")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding (named in C).
    pub pad: u16,
    /// Grant of the receive buffer.
    pub gref: GrantRef,
}
assert_layout!(NetifRxRequest, 8, { id: 0, pad: 2, gref: 4 });

/// An RX response.
#[doc(alias = "netif_rx_response_t")]
#[doc(alias = "netif_rx_response")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxResponse {
    /// The request's `id`.
    pub id: u16,
    /// Offset of the data in the buffer.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Fragment length if non-negative, else `NETIF_RSP_*`.
    pub status: i16,
}
assert_layout!(NetifRxResponse, 8, { id: 0, offset: 2, flags: 4, status: 6 });

/// A control-ring request.
#[doc(alias = "xen_netif_ctrl_request")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifCtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// `XEN_NETIF_CTRL_TYPE_*`.
    pub r#type: u16,
    /// Type-specific data.
    pub data: [u32; 3],
}
assert_layout!(XenNetifCtrlRequest, 16, { id: 0, r#type: 2, data: 4 });

/// A control-ring response.
#[doc(alias = "xen_netif_ctrl_response")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifCtrlResponse {
    /// The request's `id`.
    pub id: u16,
    /// The request's `type`.
    pub r#type: u16,
    /// `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u32,
    /// Type-specific data.
    pub data: u32,
}
assert_layout!(XenNetifCtrlResponse, 12, { id: 0, r#type: 2, status: 4, data: 8 });

/// One entry of a grant mapping control request.
#[doc(alias = "xen_netif_gref")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifGref {
    /// Grant reference.
    pub r#ref: GrantRef,
    /// `XEN_NETIF_CTRLF_GREF_*`.
    pub flags: u16,
    /// `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u16,
}
assert_layout!(XenNetifGref, 8, { r#ref: 0, flags: 4, status: 6 });

/// Size of one TX ring slot (`union netif_tx_sring_entry`).
pub const NETIF_TX_SRING_ENTRY_SIZE: usize = 12;
/// Size of one RX ring slot (`union netif_rx_sring_entry`).
pub const NETIF_RX_SRING_ENTRY_SIZE: usize = 8;
/// Entries in a one-page TX ring (`__CONST_RING_SIZE(netif_tx, 4096)`).
pub const NETIF_TX_RING_SIZE: usize = ring_size(XEN_PAGE_SIZE, NETIF_TX_SRING_ENTRY_SIZE);
/// Entries in a one-page RX ring (`__CONST_RING_SIZE(netif_rx, 4096)`).
pub const NETIF_RX_RING_SIZE: usize = ring_size(XEN_PAGE_SIZE, NETIF_RX_SRING_ENTRY_SIZE);
static_assertions::const_assert_eq!(NETIF_TX_RING_SIZE, 256);
static_assertions::const_assert_eq!(NETIF_RX_RING_SIZE, 256);
