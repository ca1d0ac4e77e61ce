//! The vif's xenstore keys: what the back end publishes ([`NetBackendInfo`]), what the front
//! end publishes ([`NetFrontendTransport`]), and the MAC address the toolstack writes for both
//! ([`mac_for_domain`], [`format_mac`], [`parse_mac`]). Values come from the other domain:
//! parsed with checks ([`KeyError`]), never trusted.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::grant_table::GrantRef;

use crate::blkif::KeyError;
use crate::xenbus::parse_decimal;

/// The xenstore key names of the network protocol (as Linux netfront/netback and libxl spell
/// them).
pub mod keys {
    /// Both ends: the XenbusState, as a decimal string.
    pub const STATE: &str = "state";
    /// Both ends (written by the toolstack): the vif's number.
    pub const HANDLE: &str = "handle";
    /// Both ends (written by the toolstack): the front end's MAC, `xx:xx:xx:xx:xx:xx`.
    pub const MAC: &str = "mac";
    /// Back end (toolstack): path of the front end's directory.
    pub const FRONTEND: &str = "frontend";
    /// Back end (toolstack): the front end's domid.
    pub const FRONTEND_ID: &str = "frontend-id";
    /// Front end (toolstack): path of the back end's directory.
    pub const BACKEND: &str = "backend";
    /// Front end (toolstack): the back end's domid.
    pub const BACKEND_ID: &str = "backend-id";
    /// Back end (toolstack): the device is wanted.
    pub const ONLINE: &str = "online";
    /// Back end (toolstack): the bridge the vif joins.
    pub const BRIDGE: &str = "bridge";
    /// Front end: grant reference of the tx ring page.
    pub const TX_RING_REF: &str = "tx-ring-ref";
    /// Front end: grant reference of the rx ring page.
    pub const RX_RING_REF: &str = "rx-ring-ref";
    /// Front end: the event-channel port for both rings.
    pub const EVENT_CHANNEL: &str = "event-channel";
    /// Front end, split channels (not offered): the tx ring's port.
    pub const EVENT_CHANNEL_TX: &str = "event-channel-tx";
    /// Front end: the back end copies into posted buffers (the only model we offer).
    pub const REQUEST_RX_COPY: &str = "request-rx-copy";
    /// Front end: notifies when it posts rx buffers (Linux netback requires it).
    pub const FEATURE_RX_NOTIFY: &str = "feature-rx-notify";
    /// Both ends: multi-slot packets (`NET*XF_more_data`).
    pub const FEATURE_SG: &str = "feature-sg";
    /// Both ends: TCPv4 segmentation offload (never offered here).
    pub const FEATURE_GSO_TCPV4: &str = "feature-gso-tcpv4";
    /// Front end: refuses `NETRXF_csum_blank` frames (wants complete checksums).
    pub const FEATURE_NO_CSUM_OFFLOAD: &str = "feature-no-csum-offload";
    /// Back end: offers the rx-copy model.
    pub const FEATURE_RX_COPY: &str = "feature-rx-copy";
    /// Back end: offers the old page-flipping model (never).
    pub const FEATURE_RX_FLIP: &str = "feature-rx-flip";
    /// Back end: offers the multicast control extras (never).
    pub const FEATURE_MULTICAST_CONTROL: &str = "feature-multicast-control";
    /// Back end: offers separate tx and rx event channels (never).
    pub const FEATURE_SPLIT_EVENT_CHANNELS: &str = "feature-split-event-channels";
    /// Front end, multi-queue: the number of queues (only 1 is accepted).
    pub const MULTI_QUEUE_NUM_QUEUES: &str = "multi-queue-num-queues";
}

/// Xen's MAC prefix (OUI 00:16:3e).
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The MAC the toolstack gives vif `handle` of domain `domid`: `00:16:3e:HH:DH:DL` (handle,
/// then the domid's high and low bytes), unique per (domid, handle), unicast, Xen's prefix.
pub fn mac_for_domain(domid: u16, handle: u8) -> [u8; 6] {
    let [hi, lo] = domid.to_be_bytes();
    [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], handle, hi, lo]
}

/// `xx:xx:xx:xx:xx:xx`, lower case (as libxl writes it).
pub fn format_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// Parses `xx:xx:xx:xx:xx:xx` (hex digits of either case); `None` for anything else.
pub fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    if s.len() != 17 {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && s[at - 1] != b':' {
            return None;
        }
        *b = hex(s[at])? << 4 | hex(s[at + 1])?;
    }
    Some(mac)
}

/// The nodes a toolstack writes for vif `handle` of domain `domid` (as libxl does): both
/// directories, their owners, and their keys; the ends then add their own keys and states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifNodes {
    /// `/local/domain/0/backend/vif/<domid>/<handle>`: owned by dom0, readable by the domU.
    pub back_dir: String,
    /// `/local/domain/<domid>/device/vif/<handle>`: owned by the domU, readable by dom0.
    pub front_dir: String,
    /// Keys of the back-end directory.
    pub back: Vec<(&'static str, String)>,
    /// Keys of the front-end directory.
    pub front: Vec<(&'static str, String)>,
}

/// The bridge every vif joins (`bridge` key; dom0's bridge is the only one).
pub const BRIDGE: &str = "xenbr0";

/// The toolstack's nodes for vif `handle` of `domid`, with [`mac_for_domain`]'s address and
/// both states `Initialising` (1).
pub fn vif_nodes(domid: u16, handle: u8) -> VifNodes {
    let back_dir = format!("/local/domain/0/backend/vif/{domid}/{handle}");
    let front_dir = format!("/local/domain/{domid}/device/vif/{handle}");
    let mac = format_mac(&mac_for_domain(domid, handle));
    VifNodes {
        back: vec![
            (keys::FRONTEND, front_dir.clone()),
            (keys::FRONTEND_ID, format!("{domid}")),
            (keys::ONLINE, String::from("1")),
            (keys::HANDLE, format!("{handle}")),
            (keys::MAC, mac.clone()),
            (keys::BRIDGE, String::from(BRIDGE)),
            (keys::STATE, String::from("1")),
        ],
        front: vec![
            (keys::BACKEND, back_dir.clone()),
            (keys::BACKEND_ID, String::from("0")),
            (keys::HANDLE, format!("{handle}")),
            (keys::MAC, mac),
            (keys::STATE, String::from("1")),
        ],
        back_dir,
        front_dir,
    }
}

fn number(
    read: &mut impl FnMut(&str) -> Option<Vec<u8>>,
    key: &'static str,
) -> Result<Option<u64>, KeyError> {
    match read(key) {
        None => Ok(None),
        Some(v) => parse_decimal(&v).map(Some).ok_or(KeyError::Invalid(key)),
    }
}

fn flag(
    read: &mut impl FnMut(&str) -> Option<Vec<u8>>,
    key: &'static str,
) -> Result<bool, KeyError> {
    match number(read, key)? {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(KeyError::Invalid(key)),
    }
}

fn required_u32(
    read: &mut impl FnMut(&str) -> Option<Vec<u8>>,
    key: &'static str,
) -> Result<u32, KeyError> {
    let v = number(read, key)?.ok_or(KeyError::Missing(key))?;
    u32::try_from(v).map_err(|_| KeyError::Invalid(key))
}

fn b(v: bool) -> String {
    String::from(if v { "1" } else { "0" })
}

/// What a network back end publishes (read by the front end when the back end is `Connected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetBackendInfo {
    /// `feature-sg`: accepts multi-slot tx packets.
    pub feature_sg: bool,
    /// `feature-rx-copy`: copies into posted buffers (required by our front end).
    pub feature_rx_copy: bool,
    /// `feature-gso-tcpv4`.
    pub feature_gso_tcpv4: bool,
}

impl Default for NetBackendInfo {
    /// What [`super::NetBack`] offers: scatter-gather and rx-copy, no GSO.
    fn default() -> Self {
        NetBackendInfo {
            feature_sg: true,
            feature_rx_copy: true,
            feature_gso_tcpv4: false,
        }
    }
}

impl NetBackendInfo {
    /// The keys and values to write in the back end's directory (before `InitWait`).
    pub fn to_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::FEATURE_SG, b(self.feature_sg)),
            (keys::FEATURE_GSO_TCPV4, b(self.feature_gso_tcpv4)),
            (keys::FEATURE_RX_COPY, b(self.feature_rx_copy)),
            (keys::FEATURE_RX_FLIP, b(false)),
            (keys::FEATURE_MULTICAST_CONTROL, b(false)),
            (keys::FEATURE_SPLIT_EVENT_CHANNELS, b(false)),
        ]
    }

    /// Parses the back end's keys (`read(key)` in its directory). A back end without
    /// `feature-rx-copy` cannot serve our front end: refused.
    pub fn from_keys(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Self, KeyError> {
        let r = &mut read;
        let info = NetBackendInfo {
            feature_sg: flag(r, keys::FEATURE_SG)?,
            feature_rx_copy: flag(r, keys::FEATURE_RX_COPY)?,
            feature_gso_tcpv4: flag(r, keys::FEATURE_GSO_TCPV4)?,
        };
        if !info.feature_rx_copy {
            return Err(KeyError::Missing(keys::FEATURE_RX_COPY));
        }
        Ok(info)
    }
}

/// What a network front end publishes about its rings (read by the back end when the front end
/// is `Initialised`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetFrontendTransport {
    /// Grant reference of the tx ring page (`tx-ring-ref`).
    pub tx_ring_ref: GrantRef,
    /// Grant reference of the rx ring page (`rx-ring-ref`).
    pub rx_ring_ref: GrantRef,
    /// The front end's event-channel port for both rings (`event-channel`).
    pub event_channel: u32,
    /// `feature-sg`: accepts multi-slot rx frames.
    pub feature_sg: bool,
    /// `feature-rx-notify`.
    pub feature_rx_notify: bool,
    /// `feature-no-csum-offload`: wants complete checksums on rx.
    pub no_csum_offload: bool,
}

impl NetFrontendTransport {
    /// The keys and values to write in the front end's directory (before `Initialised`);
    /// `request-rx-copy` is always 1.
    pub fn to_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::TX_RING_REF, format!("{}", self.tx_ring_ref)),
            (keys::RX_RING_REF, format!("{}", self.rx_ring_ref)),
            (keys::EVENT_CHANNEL, format!("{}", self.event_channel)),
            (keys::REQUEST_RX_COPY, b(true)),
            (keys::FEATURE_RX_NOTIFY, b(self.feature_rx_notify)),
            (keys::FEATURE_SG, b(self.feature_sg)),
            (keys::FEATURE_GSO_TCPV4, b(false)),
            (keys::FEATURE_NO_CSUM_OFFLOAD, b(self.no_csum_offload)),
        ]
    }

    /// Parses the front end's keys (`read(key)` in its directory). Refused: a missing ring
    /// reference or port, split event channels, more than one queue, and a front end that does
    /// not request rx-copy (page flipping is not offered).
    pub fn from_keys(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Self, KeyError> {
        let r = &mut read;
        if r(keys::EVENT_CHANNEL_TX).is_some() {
            return Err(KeyError::Invalid(keys::EVENT_CHANNEL_TX));
        }
        if let Some(q) = number(r, keys::MULTI_QUEUE_NUM_QUEUES)? {
            if q != 1 {
                return Err(KeyError::Invalid(keys::MULTI_QUEUE_NUM_QUEUES));
            }
        }
        let t = NetFrontendTransport {
            tx_ring_ref: required_u32(r, keys::TX_RING_REF)?,
            rx_ring_ref: required_u32(r, keys::RX_RING_REF)?,
            event_channel: required_u32(r, keys::EVENT_CHANNEL)?,
            feature_sg: flag(r, keys::FEATURE_SG)?,
            feature_rx_notify: flag(r, keys::FEATURE_RX_NOTIFY)?,
            no_csum_offload: flag(r, keys::FEATURE_NO_CSUM_OFFLOAD)?,
        };
        if !flag(r, keys::REQUEST_RX_COPY)? {
            return Err(KeyError::Missing(keys::REQUEST_RX_COPY));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<Vec<u8>> {
        let map: HashMap<String, Vec<u8>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn pairs<'a>(keys: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        keys.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn macs() {
        let m = mac_for_domain(0x0102, 0);
        assert_eq!(m, [0x00, 0x16, 0x3e, 0x00, 0x01, 0x02]);
        assert_eq!(format_mac(&m), "00:16:3e:00:01:02");
        assert_eq!(parse_mac(b"00:16:3E:00:01:02"), Some(m));
        assert_ne!(mac_for_domain(1, 0), mac_for_domain(2, 0));
        assert_ne!(mac_for_domain(1, 0), mac_for_domain(1, 1));
        assert_eq!(mac_for_domain(7, 0)[0] & 1, 0, "unicast");
        for bad in [
            &b"00:16:3e:00:01"[..],
            b"00:16:3e:00:01:0g",
            b"00-16-3e-00-01-02",
            b"00:16:3e:00:01:023",
            b"",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn toolstack_nodes() {
        let n = vif_nodes(3, 0);
        assert_eq!(n.back_dir, "/local/domain/0/backend/vif/3/0");
        assert_eq!(n.front_dir, "/local/domain/3/device/vif/0");
        let get =
            |kv: &[(&str, String)], k: &str| kv.iter().find(|(x, _)| *x == k).unwrap().1.clone();
        assert_eq!(get(&n.back, "frontend"), n.front_dir);
        assert_eq!(get(&n.front, "backend"), n.back_dir);
        assert_eq!(get(&n.back, "frontend-id"), "3");
        assert_eq!(get(&n.front, "backend-id"), "0");
        assert_eq!(get(&n.back, "mac"), "00:16:3e:00:00:03");
        assert_eq!(get(&n.front, "mac"), get(&n.back, "mac"));
        assert_eq!(get(&n.back, "state"), "1");
        assert_eq!(get(&n.front, "state"), "1");
        assert_eq!(
            n.back.last().unwrap().0,
            "state",
            "state last: watchers see a full directory"
        );
    }

    #[test]
    fn backend_keys_round_trip() {
        let info = NetBackendInfo::default();
        let keys = info.to_keys();
        assert_eq!(NetBackendInfo::from_keys(reader(&pairs(&keys))), Ok(info));
        assert_eq!(
            NetBackendInfo::from_keys(reader(&[("feature-sg", "1")])),
            Err(KeyError::Missing(keys::FEATURE_RX_COPY))
        );
        assert_eq!(
            NetBackendInfo::from_keys(reader(&[("feature-rx-copy", "1"), ("feature-sg", "2")])),
            Err(KeyError::Invalid(keys::FEATURE_SG))
        );
    }

    #[test]
    fn frontend_keys_round_trip_and_refusals() {
        let t = NetFrontendTransport {
            tx_ring_ref: 8,
            rx_ring_ref: 9,
            event_channel: 5,
            feature_sg: true,
            feature_rx_notify: true,
            no_csum_offload: true,
        };
        let keys = t.to_keys();
        let good = pairs(&keys);
        assert_eq!(NetFrontendTransport::from_keys(reader(&good)), Ok(t));
        let with = |k: &'static str, v: &'static str| {
            let mut p: Vec<(&str, &str)> = good.iter().copied().filter(|(x, _)| *x != k).collect();
            p.push((k, v));
            NetFrontendTransport::from_keys(reader(&p))
        };
        let without = |k: &str| {
            let p: Vec<(&str, &str)> = good.iter().copied().filter(|(x, _)| *x != k).collect();
            NetFrontendTransport::from_keys(reader(&p))
        };
        assert_eq!(
            without("tx-ring-ref"),
            Err(KeyError::Missing(keys::TX_RING_REF))
        );
        assert_eq!(
            without("rx-ring-ref"),
            Err(KeyError::Missing(keys::RX_RING_REF))
        );
        assert_eq!(
            without("event-channel"),
            Err(KeyError::Missing(keys::EVENT_CHANNEL))
        );
        assert_eq!(
            without("request-rx-copy"),
            Err(KeyError::Missing(keys::REQUEST_RX_COPY))
        );
        assert_eq!(
            with("request-rx-copy", "0"),
            Err(KeyError::Missing(keys::REQUEST_RX_COPY))
        );
        assert_eq!(
            with("tx-ring-ref", "4294967296"),
            Err(KeyError::Invalid(keys::TX_RING_REF))
        );
        assert_eq!(
            with("event-channel", "-3"),
            Err(KeyError::Invalid(keys::EVENT_CHANNEL))
        );
        assert_eq!(
            with("event-channel-tx", "6"),
            Err(KeyError::Invalid(keys::EVENT_CHANNEL_TX))
        );
        assert_eq!(
            with("multi-queue-num-queues", "2"),
            Err(KeyError::Invalid(keys::MULTI_QUEUE_NUM_QUEUES))
        );
        assert_eq!(with("multi-queue-num-queues", "1"), Ok(t));
    }
}
