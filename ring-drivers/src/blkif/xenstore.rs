//! The block device's xenstore keys: what the back end publishes about its disk
//! ([`BackendInfo`]) and the front end about its ring ([`FrontendTransport`]), written and parsed
//! by the kernel glue around the handshake of [`crate::xenbus::state`]. Values come from the
//! other domain: parsed with checks ([`KeyError`]), never trusted.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::grant_table::GrantRef;
use hypercall_abi::io::blkif::VDISK_READONLY;

use super::{Disk, SECTOR_SIZE};
use crate::xenbus::parse_decimal;

/// The xenstore key names of the block protocol (as Linux and the Xen toolstack spell them).
pub mod keys {
    /// Both ends: the XenbusState, as a decimal string.
    pub const STATE: &str = "state";
    /// Front end: grant reference of the ring page.
    pub const RING_REF: &str = "ring-ref";
    /// Front end: the event-channel port the back end binds to.
    pub const EVENT_CHANNEL: &str = "event-channel";
    /// Front end: the ring ABI (`x86_64-abi`).
    pub const PROTOCOL: &str = "protocol";
    /// Back end: size in `sector-size` units.
    pub const SECTORS: &str = "sectors";
    /// Back end: logical block size in bytes.
    pub const SECTOR_SIZE: &str = "sector-size";
    /// Back end: physical block size in bytes.
    pub const PHYSICAL_SECTOR_SIZE: &str = "physical-sector-size";
    /// Back end: `VDISK_*` bits.
    pub const INFO: &str = "info";
    /// Back end: `BLKIF_OP_FLUSH_DISKCACHE` offered.
    pub const FEATURE_FLUSH_CACHE: &str = "feature-flush-cache";
    /// Back end: `BLKIF_OP_WRITE_BARRIER` offered.
    pub const FEATURE_BARRIER: &str = "feature-barrier";
    /// Back end: `BLKIF_OP_DISCARD` offered.
    pub const FEATURE_DISCARD: &str = "feature-discard";
    /// Back end: discard extent size in bytes.
    pub const DISCARD_GRANULARITY: &str = "discard-granularity";
    /// Back end: offset of the first discard extent in bytes.
    pub const DISCARD_ALIGNMENT: &str = "discard-alignment";
    /// Back end: `BLKIF_DISCARD_SECURE` honoured.
    pub const DISCARD_SECURE: &str = "discard-secure";
    /// Back end: segments a `BLKIF_OP_INDIRECT` request may carry (absent: none).
    pub const FEATURE_MAX_INDIRECT_SEGMENTS: &str = "feature-max-indirect-segments";
    /// Both ends: persistent grants offered (`"1"`); used only when both offer them.
    pub const FEATURE_PERSISTENT: &str = "feature-persistent";
}

/// `XEN_IO_PROTO_ABI_X86_64` (`io/protocols.h`): the only ring ABI we speak (the native one).
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";

/// A key the peer wrote is missing or malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A required key is absent.
    Missing(&'static str),
    /// A key's value does not parse or is out of range.
    Invalid(&'static str),
    /// `protocol` names an ABI other than `x86_64-abi`.
    UnsupportedProtocol,
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

fn number_u32(
    read: &mut impl FnMut(&str) -> Option<Vec<u8>>,
    key: &'static str,
    default: u32,
) -> Result<u32, KeyError> {
    match number(read, key)? {
        None => Ok(default),
        Some(v) => u32::try_from(v).map_err(|_| KeyError::Invalid(key)),
    }
}

fn flag(
    read: &mut impl FnMut(&str) -> Option<Vec<u8>>,
    key: &'static str,
) -> Result<bool, KeyError> {
    Ok(number(read, key)?.unwrap_or(0) != 0)
}

/// What a block back end publishes about its device (read by the front end when the back end
/// is `Connected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Size in `sector_size` units (`sectors`).
    pub sectors: u64,
    /// Logical block size in bytes (`sector-size`, default 512).
    pub sector_size: u32,
    /// Physical block size in bytes (`physical-sector-size`, default `sector_size`).
    pub physical_sector_size: u32,
    /// `VDISK_*` bits (`info`).
    pub info: u32,
    /// `feature-flush-cache`.
    pub feature_flush_cache: bool,
    /// `feature-barrier`.
    pub feature_barrier: bool,
    /// `feature-discard`.
    pub feature_discard: bool,
    /// `discard-granularity` in bytes (default `sector_size`).
    pub discard_granularity: u32,
    /// `discard-alignment` in bytes (default 0).
    pub discard_alignment: u32,
    /// `discard-secure`.
    pub discard_secure: bool,
    /// `feature-max-indirect-segments` (0, or absent: no `BLKIF_OP_INDIRECT`).
    pub max_indirect_segments: u32,
    /// `feature-persistent`: the back end keeps the front end's grants mapped if the front end
    /// offers it too (blkif.h: the front end then reuses a fixed set of grants).
    pub feature_persistent: bool,
}

impl Default for BackendInfo {
    fn default() -> Self {
        BackendInfo {
            sectors: 0,
            sector_size: SECTOR_SIZE as u32,
            physical_sector_size: SECTOR_SIZE as u32,
            info: 0,
            feature_flush_cache: false,
            feature_barrier: false,
            feature_discard: false,
            discard_granularity: SECTOR_SIZE as u32,
            discard_alignment: 0,
            discard_secure: false,
            max_indirect_segments: 0,
            feature_persistent: false,
        }
    }
}

impl BackendInfo {
    /// What [`super::BlkBack`] serving `disk` publishes: 512-byte sectors, flush and
    /// discard as the disk offers them, no barrier, no secure discard.
    pub fn for_disk<D: Disk + ?Sized>(disk: &D) -> Self {
        BackendInfo {
            sectors: disk.sectors(),
            info: if disk.read_only() { VDISK_READONLY } else { 0 },
            feature_flush_cache: disk.supports_flush(),
            feature_discard: disk.supports_discard(),
            ..BackendInfo::default()
        }
    }

    /// The device size in 512-byte sectors (the unit of every request).
    pub fn sectors_512(&self) -> u64 {
        self.sectors
            .saturating_mul(u64::from(self.sector_size))
            .checked_div(SECTOR_SIZE as u64)
            .unwrap_or(0)
    }

    /// The keys and values to write in the back end's directory (before `InitWait`).
    pub fn to_keys(&self) -> Vec<(&'static str, String)> {
        let b = |v: bool| String::from(if v { "1" } else { "0" });
        let mut out = vec![
            (keys::SECTORS, format!("{}", self.sectors)),
            (keys::SECTOR_SIZE, format!("{}", self.sector_size)),
            (
                keys::PHYSICAL_SECTOR_SIZE,
                format!("{}", self.physical_sector_size),
            ),
            (keys::INFO, format!("{}", self.info)),
            (keys::FEATURE_FLUSH_CACHE, b(self.feature_flush_cache)),
            (keys::FEATURE_BARRIER, b(self.feature_barrier)),
            (keys::FEATURE_DISCARD, b(self.feature_discard)),
            (keys::FEATURE_PERSISTENT, b(self.feature_persistent)),
        ];
        if self.feature_discard {
            out.push((
                keys::DISCARD_GRANULARITY,
                format!("{}", self.discard_granularity),
            ));
            out.push((
                keys::DISCARD_ALIGNMENT,
                format!("{}", self.discard_alignment),
            ));
            out.push((keys::DISCARD_SECURE, b(self.discard_secure)));
        }
        if self.max_indirect_segments > 0 {
            out.push((
                keys::FEATURE_MAX_INDIRECT_SEGMENTS,
                format!("{}", self.max_indirect_segments),
            ));
        }
        out
    }

    /// Parses the back end's keys; `read(key)` returns a key's value in the back end's
    /// directory, `None` if absent. The values are the other domain's: checked, never trusted.
    pub fn from_keys(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Self, KeyError> {
        let r = &mut read;
        let sectors = number(r, keys::SECTORS)?.ok_or(KeyError::Missing(keys::SECTORS))?;
        let sector_size = number_u32(r, keys::SECTOR_SIZE, SECTOR_SIZE as u32)?;
        if sector_size < SECTOR_SIZE as u32 || !sector_size.is_power_of_two() {
            return Err(KeyError::Invalid(keys::SECTOR_SIZE));
        }
        let physical_sector_size = number_u32(r, keys::PHYSICAL_SECTOR_SIZE, sector_size)?;
        if physical_sector_size == 0 || !physical_sector_size.is_multiple_of(sector_size) {
            return Err(KeyError::Invalid(keys::PHYSICAL_SECTOR_SIZE));
        }
        Ok(BackendInfo {
            sectors,
            sector_size,
            physical_sector_size,
            info: number_u32(r, keys::INFO, 0)?,
            feature_flush_cache: flag(r, keys::FEATURE_FLUSH_CACHE)?,
            feature_barrier: flag(r, keys::FEATURE_BARRIER)?,
            feature_discard: flag(r, keys::FEATURE_DISCARD)?,
            discard_granularity: number_u32(r, keys::DISCARD_GRANULARITY, sector_size)?,
            discard_alignment: number_u32(r, keys::DISCARD_ALIGNMENT, 0)?,
            discard_secure: flag(r, keys::DISCARD_SECURE)?,
            max_indirect_segments: number_u32(r, keys::FEATURE_MAX_INDIRECT_SEGMENTS, 0)?,
            feature_persistent: flag(r, keys::FEATURE_PERSISTENT)?,
        })
    }
}

/// What a block front end publishes about its ring (read by the back end when the front end is
/// `Initialised`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendTransport {
    /// Grant reference of the ring page (`ring-ref`).
    pub ring_ref: GrantRef,
    /// The front end's event-channel port (`event-channel`).
    pub event_channel: u32,
    /// `feature-persistent`: the front end reuses a fixed set of grants (absent: no).
    pub feature_persistent: bool,
}

impl FrontendTransport {
    /// The keys and values to write in the front end's directory (before `Initialised`).
    pub fn to_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::RING_REF, format!("{}", self.ring_ref)),
            (keys::EVENT_CHANNEL, format!("{}", self.event_channel)),
            (keys::PROTOCOL, String::from(XEN_IO_PROTO_ABI_X86_64)),
            (
                keys::FEATURE_PERSISTENT,
                String::from(if self.feature_persistent { "1" } else { "0" }),
            ),
        ]
    }

    /// Parses the front end's keys (`read(key)` in the front end's directory). `protocol` may
    /// be absent (native ABI) or `x86_64-abi`; anything else is refused.
    pub fn from_keys(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Self, KeyError> {
        let r = &mut read;
        let ring_ref = number(r, keys::RING_REF)?.ok_or(KeyError::Missing(keys::RING_REF))?;
        let port = number(r, keys::EVENT_CHANNEL)?.ok_or(KeyError::Missing(keys::EVENT_CHANNEL))?;
        match r(keys::PROTOCOL) {
            None => {}
            Some(p) if p == XEN_IO_PROTO_ABI_X86_64.as_bytes() => {}
            Some(_) => return Err(KeyError::UnsupportedProtocol),
        }
        Ok(FrontendTransport {
            ring_ref: u32::try_from(ring_ref).map_err(|_| KeyError::Invalid(keys::RING_REF))?,
            event_channel: u32::try_from(port)
                .map_err(|_| KeyError::Invalid(keys::EVENT_CHANNEL))?,
            feature_persistent: flag(r, keys::FEATURE_PERSISTENT)?,
        })
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

    #[test]
    fn backend_keys_round_trip_with_defaults() {
        let info = BackendInfo {
            sectors: 2048,
            info: VDISK_READONLY,
            feature_flush_cache: true,
            feature_discard: true,
            discard_granularity: 4096,
            max_indirect_segments: 32,
            feature_persistent: true,
            ..BackendInfo::default()
        };
        let keys = info.to_keys();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(BackendInfo::from_keys(reader(&pairs)), Ok(info));
        // Only `sectors` is required.
        let min = BackendInfo::from_keys(reader(&[("sectors", "8")])).unwrap();
        assert_eq!(
            min,
            BackendInfo {
                sectors: 8,
                ..BackendInfo::default()
            }
        );
        // A 4 KiB-sector device: sizes converted to 512-byte units.
        let big =
            BackendInfo::from_keys(reader(&[("sectors", "10"), ("sector-size", "4096")])).unwrap();
        assert_eq!((big.sectors_512(), big.discard_granularity), (80, 4096));
    }

    #[test]
    fn hostile_backend_keys_are_refused() {
        assert_eq!(
            BackendInfo::from_keys(reader(&[])),
            Err(KeyError::Missing(keys::SECTORS))
        );
        for (k, v) in [
            ("sectors", "-1"),
            ("sectors", "0x10"),
            ("sectors", "99999999999999999999999"),
            ("sector-size", "256"),
            ("sector-size", "1000"),
            ("physical-sector-size", "768"),
            ("info", "4294967296"),
            ("feature-discard", "yes"),
            ("feature-max-indirect-segments", "4294967296"),
            ("feature-max-indirect-segments", "-1"),
            ("feature-persistent", "2x"),
        ] {
            let mut pairs = vec![("sectors", "8")];
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
            assert!(
                matches!(
                    BackendInfo::from_keys(reader(&pairs)),
                    Err(KeyError::Invalid(_))
                ),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn frontend_transport_keys() {
        let t = FrontendTransport {
            ring_ref: 9,
            event_channel: 12,
            feature_persistent: true,
        };
        let keys = t.to_keys();
        let mut pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("ring-ref", "9"),
                ("event-channel", "12"),
                ("protocol", "x86_64-abi"),
                ("feature-persistent", "1"),
            ]
        );
        assert_eq!(FrontendTransport::from_keys(reader(&pairs)), Ok(t));
        // A front end that does not offer persistent grants: absent means no, as does "0".
        pairs.pop();
        let without = FrontendTransport {
            feature_persistent: false,
            ..t
        };
        assert_eq!(FrontendTransport::from_keys(reader(&pairs)), Ok(without));
        pairs.push(("feature-persistent", "0"));
        assert_eq!(FrontendTransport::from_keys(reader(&pairs)), Ok(without));
        pairs.pop();
        pairs.push(("feature-persistent", "yes"));
        assert_eq!(
            FrontendTransport::from_keys(reader(&pairs)),
            Err(KeyError::Invalid(keys::FEATURE_PERSISTENT))
        );
        pairs.pop();
        let t = without;
        pairs.pop();
        assert_eq!(
            FrontendTransport::from_keys(reader(&pairs)),
            Ok(t),
            "native by default"
        );
        pairs.push(("protocol", "x86_32-abi"));
        assert_eq!(
            FrontendTransport::from_keys(reader(&pairs)),
            Err(KeyError::UnsupportedProtocol)
        );
        assert_eq!(
            FrontendTransport::from_keys(reader(&[("event-channel", "1")])),
            Err(KeyError::Missing(keys::RING_REF))
        );
        assert_eq!(
            FrontendTransport::from_keys(reader(&[
                ("ring-ref", "4294967296"),
                ("event-channel", "1")
            ])),
            Err(KeyError::Invalid(keys::RING_REF))
        );
    }
}
