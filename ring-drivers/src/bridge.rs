//! A learning Ethernet bridge (802.1D's forwarding process, no spanning tree): dom0 joins its NIC,
//! its own interface and every domU's vif (netback port) with it, as Xen's `vif-bridge` script
//! joins them to a Linux bridge.
//!
//! - **Learning**: a frame's source MAC is recorded against its ingress port, with the time.
//!   Entries older than [`Config::ageing_ns`] are forgotten (on lookup and by [`Bridge::age`]).
//! - **Forwarding**: a unicast destination in the table goes to its port alone; an unknown unicast,
//!   a broadcast or a multicast destination is flooded to every port but the ingress one. A frame
//!   whose destination was learned on its own ingress port is filtered: nothing goes back out of
//!   the port it came in on.
//! - **Bounded**: the table holds at most [`Config::max_entries`] entries, of which
//!   [`Config::max_ports`] are kept for the locked ports' fixed entries: learned sources (from
//!   the NIC side, which anyone on the wire can fill with made-up addresses) never take the
//!   room a new vif needs to join. When the learned part is full, the least recently seen
//!   learned entry is evicted if it has been idle for [`Config::evict_idle_ns`]; otherwise the
//!   new source is not learned (its replies are flooded), so a flood of made-up sources cannot
//!   push out the stations that are talking. Finding the oldest entry is a scan, done at most
//!   once until that entry can have become idle enough (no scan per flooded frame).
//! - **Locked ports**: a port added with a MAC (a domU's vif: the MAC the toolstack gave it) gets
//!   a fixed entry for it that never ages and never moves, and frames from that port with any
//!   other source are dropped (a domU cannot claim another station's address); a fixed MAC seen
//!   as source on another port is dropped too.
//! - **Hostile input**: a frame shorter than an Ethernet header or longer than
//!   [`Config::max_frame`], a multicast or all-zero source, an unknown ingress port: dropped and
//!   counted, never a panic.
//!
//! The bridge only decides; the caller moves the bytes ([`Bridge::forward`] then
//! [`Bridge::targets`]) and reports what it sent with [`Bridge::sent`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// An Ethernet (MAC-48) address.
pub type Mac = [u8; 6];

/// `ff:ff:ff:ff:ff:ff`.
pub const BROADCAST: Mac = [0xff; 6];

/// Length of an Ethernet header (destination, source, EtherType).
pub const ETH_HEADER: usize = 14;

/// Whether `mac` is a group (multicast or broadcast) address: the I/G bit.
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// Destination and source of a frame at least [`ETH_HEADER`] long.
pub fn addresses(frame: &[u8]) -> Option<(Mac, Mac)> {
    let dst = frame.get(0..6)?.try_into().ok()?;
    let src = frame.get(6..12)?.try_into().ok()?;
    frame.get(..ETH_HEADER)?;
    Some((dst, src))
}

/// `aa:bb:cc:dd:ee:ff`.
pub struct MacFmt<'a>(pub &'a Mac);

impl fmt::Display for MacFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A bridge port, named by the caller (dom0 numbers its NIC, its own interface and each vif).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// The bridge's limits.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Most MAC table entries (fixed ones included).
    pub max_entries: usize,
    /// A learned entry not refreshed for this long is forgotten (Linux's default: 300 s).
    pub ageing_ns: u64,
    /// Longest frame forwarded (header included, no FCS): 1514, plus 4 for one VLAN tag.
    pub max_frame: usize,
    /// Most ports (and table entries kept for their fixed MACs).
    pub max_ports: usize,
    /// A learned entry idle this long may be evicted for a new source when the table is full.
    pub evict_idle_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: 1024,
            ageing_ns: 300_000_000_000,
            max_frame: 1518,
            max_ports: 256,
            evict_idle_ns: 30_000_000_000,
        }
    }
}

/// Why a frame is not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than [`Config::max_frame`].
    Oversize,
    /// The ingress port is not a port of this bridge.
    UnknownPort,
    /// A multicast or all-zero source address.
    BadSource,
    /// A locked port sent another source, or a fixed MAC came in on a port not its own.
    Spoofed,
    /// The destination is on the ingress port itself (nothing goes back where it came from).
    SamePort,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Send it out of this port only.
    To(PortId),
    /// Send it out of every port but the ingress one.
    Flood,
    /// Drop it.
    Drop(Drop),
}

/// Why a port could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortError {
    /// That id is a port already.
    Exists,
    /// [`Config::max_ports`] reached.
    TooManyPorts,
    /// The locked MAC is multicast or zero, or already fixed to another port.
    BadMac,
    /// The table has no room for the locked MAC's fixed entry.
    TableFull,
}

/// Counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames that came in on the port (every one, dropped or not).
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the caller sent out of the port ([`Bridge::sent`]).
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames from the port that were flooded.
    pub flooded: u64,
    /// Frames from the port that were dropped, by any [`Drop`] reason.
    pub dropped: u64,
    /// Of those, spoofed sources.
    pub spoofed: u64,
}

/// Bridge-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sources not learned because the table was full.
    pub learn_refused: u64,
    /// Entries forgotten by ageing.
    pub aged: u64,
    /// Learned entries that moved to another port (a station moved).
    pub moved: u64,
    /// Idle learned entries evicted to learn a new source.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    seen_ns: u64,
    /// A locked port's own MAC: never ages, never moves.
    fixed: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Port {
    locked: Option<Mac>,
    stats: PortStats,
}

/// The bridge: its ports and its MAC table.
pub struct Bridge {
    cfg: Config,
    table: BTreeMap<Mac, Entry>,
    ports: BTreeMap<PortId, Port>,
    stats: Stats,
    /// Fixed entries in the table (locked ports' MACs).
    fixed: usize,
    /// No learned entry can be evictable before this time (the last scan's oldest entry).
    next_evict_ns: u64,
}

impl Bridge {
    /// A bridge with no ports.
    pub fn new(cfg: Config) -> Bridge {
        Bridge {
            cfg,
            table: BTreeMap::new(),
            ports: BTreeMap::new(),
            stats: Stats::default(),
            fixed: 0,
            next_evict_ns: 0,
        }
    }

    /// Learned entries the table holds at most: the rest is kept for fixed ones.
    fn learned_max(&self) -> usize {
        self.cfg.max_entries.saturating_sub(self.cfg.max_ports)
    }

    /// Learned entries in the table.
    pub fn learned(&self) -> usize {
        self.table.len() - self.fixed
    }

    /// Adds port `id`; with `locked`, only that source MAC is accepted from it and the MAC gets a
    /// fixed entry.
    pub fn add_port(&mut self, id: PortId, locked: Option<Mac>) -> Result<(), PortError> {
        if self.ports.contains_key(&id) {
            return Err(PortError::Exists);
        }
        if self.ports.len() >= self.cfg.max_ports {
            return Err(PortError::TooManyPorts);
        }
        if let Some(mac) = locked {
            if is_multicast(&mac) || mac == [0; 6] || self.table.get(&mac).is_some_and(|e| e.fixed)
            {
                return Err(PortError::BadMac);
            }
            if !self.table.contains_key(&mac) && self.table.len() >= self.cfg.max_entries {
                return Err(PortError::TableFull);
            }
            self.table.insert(
                mac,
                Entry {
                    port: id,
                    seen_ns: 0,
                    fixed: true,
                },
            );
            self.fixed += 1;
        }
        self.ports.insert(
            id,
            Port {
                locked,
                stats: PortStats::default(),
            },
        );
        Ok(())
    }

    /// Removes port `id` and every entry pointing at it; its counters, if it was a port.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortStats> {
        let port = self.ports.remove(&id)?;
        self.table.retain(|_, e| e.port != id);
        if port.locked.is_some() {
            self.fixed -= 1;
        }
        Some(port.stats)
    }

    /// Whether `id` is a port.
    pub fn has_port(&self, id: PortId) -> bool {
        self.ports.contains_key(&id)
    }

    /// The ports, in id order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    /// Learns from `frame`, which came in on `ingress` at `now_ns`, and says where it goes.
    pub fn forward(&mut self, now_ns: u64, ingress: PortId, frame: &[u8]) -> Forward {
        let verdict = self.decide(now_ns, ingress, frame);
        if let Some(p) = self.ports.get_mut(&ingress) {
            p.stats.rx_frames += 1;
            p.stats.rx_bytes += frame.len() as u64;
            match verdict {
                Forward::Flood => p.stats.flooded += 1,
                Forward::Drop(reason) => {
                    p.stats.dropped += 1;
                    if reason == Drop::Spoofed {
                        p.stats.spoofed += 1;
                    }
                }
                Forward::To(_) => {}
            }
        }
        verdict
    }

    fn decide(&mut self, now_ns: u64, ingress: PortId, frame: &[u8]) -> Forward {
        let Some(port) = self.ports.get(&ingress) else {
            return Forward::Drop(Drop::UnknownPort);
        };
        let Some((dst, src)) = addresses(frame) else {
            return Forward::Drop(Drop::Runt);
        };
        if frame.len() > self.cfg.max_frame {
            return Forward::Drop(Drop::Oversize);
        }
        if is_multicast(&src) || src == [0; 6] {
            return Forward::Drop(Drop::BadSource);
        }
        if port.locked.is_some_and(|m| m != src) {
            return Forward::Drop(Drop::Spoofed);
        }
        if let Some(e) = self.table.get(&src).copied() {
            if e.fixed && e.port != ingress {
                return Forward::Drop(Drop::Spoofed);
            }
        }
        self.learn(now_ns, ingress, src);
        if is_multicast(&dst) {
            return Forward::Flood;
        }
        match self.lookup(now_ns, &dst) {
            Some(p) if p == ingress => Forward::Drop(Drop::SamePort),
            Some(p) => Forward::To(p),
            None => Forward::Flood,
        }
    }

    fn learn(&mut self, now_ns: u64, ingress: PortId, src: Mac) {
        if let Some(e) = self.table.get_mut(&src) {
            if !e.fixed {
                if e.port != ingress {
                    self.stats.moved += 1;
                    e.port = ingress;
                }
                e.seen_ns = now_ns;
            }
            return;
        }
        if self.learned() >= self.learned_max() && !self.evict_idle(now_ns) {
            self.stats.learn_refused += 1;
            return;
        }
        self.table.insert(
            src,
            Entry {
                port: ingress,
                seen_ns: now_ns,
                fixed: false,
            },
        );
    }

    /// Evicts the least recently seen learned entry if it has been idle for
    /// [`Config::evict_idle_ns`]; whether it did. Scans the table at most once per period in
    /// which no entry can have become evictable.
    fn evict_idle(&mut self, now_ns: u64) -> bool {
        if now_ns < self.next_evict_ns {
            return false;
        }
        let oldest = self
            .table
            .iter()
            .filter(|(_, e)| !e.fixed)
            .min_by_key(|(_, e)| e.seen_ns)
            .map(|(m, e)| (*m, e.seen_ns));
        let Some((mac, seen)) = oldest else {
            return false;
        };
        let idle_at = seen.saturating_add(self.cfg.evict_idle_ns);
        if now_ns < idle_at {
            self.next_evict_ns = idle_at;
            return false;
        }
        self.table.remove(&mac);
        self.stats.evicted += 1;
        true
    }

    fn expired(&self, e: &Entry, now_ns: u64) -> bool {
        !e.fixed && now_ns.saturating_sub(e.seen_ns) > self.cfg.ageing_ns
    }

    /// The port `mac` was learned on, if the entry is still fresh at `now_ns` (a stale one is
    /// forgotten).
    pub fn lookup(&mut self, now_ns: u64, mac: &Mac) -> Option<PortId> {
        let e = *self.table.get(mac)?;
        if self.expired(&e, now_ns) {
            self.table.remove(mac);
            self.stats.aged += 1;
            return None;
        }
        Some(e.port)
    }

    /// Forgets every learned entry older than the ageing time at `now_ns`; returns how many.
    pub fn age(&mut self, now_ns: u64) -> usize {
        let before = self.table.len();
        let ageing = self.cfg.ageing_ns;
        self.table
            .retain(|_, e| e.fixed || now_ns.saturating_sub(e.seen_ns) <= ageing);
        let n = before - self.table.len();
        self.stats.aged += n as u64;
        n
    }

    /// The ports a frame from `ingress` with verdict `fwd` goes out of (the ingress port never).
    pub fn targets(&self, ingress: PortId, fwd: Forward) -> Vec<PortId> {
        match fwd {
            Forward::To(p) if p != ingress && self.ports.contains_key(&p) => alloc::vec![p],
            Forward::Flood => self
                .ports
                .keys()
                .copied()
                .filter(|&p| p != ingress)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Records that a frame of `len` bytes went out of `port`.
    pub fn sent(&mut self, port: PortId, len: usize) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stats.tx_frames += 1;
            p.stats.tx_bytes += len as u64;
        }
    }

    /// Port `id`'s counters.
    pub fn port_stats(&self, id: PortId) -> Option<PortStats> {
        self.ports.get(&id).map(|p| p.stats)
    }

    /// The bridge-wide counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries in the MAC table (fixed ones included).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the MAC table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIC: PortId = PortId(0);
    const DOM0: PortId = PortId(1);
    const VIF1: PortId = PortId(2);
    const VIF2: PortId = PortId(3);
    const S: u64 = 1_000_000_000;

    fn mac(n: u8) -> Mac {
        [0x00, 0x16, 0x3e, 0, 0, n]
    }

    fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
        let mut f = alloc::vec![0u8; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn bridge(cfg: Config) -> Bridge {
        let mut b = Bridge::new(cfg);
        for p in [NIC, DOM0, VIF1, VIF2] {
            b.add_port(p, None).unwrap();
        }
        b
    }

    #[test]
    fn unknown_unicast_floods_then_the_reply_teaches_the_way_back() {
        let mut b = bridge(Config::default());
        let f = frame(mac(2), mac(1), 60);
        assert_eq!(b.forward(0, VIF1, &f), Forward::Flood);
        assert_eq!(
            b.targets(VIF1, Forward::Flood),
            alloc::vec![NIC, DOM0, VIF2]
        );
        // mac(1) is now known on VIF1: the reply goes there only.
        let r = frame(mac(1), mac(2), 60);
        assert_eq!(b.forward(S, VIF2, &r), Forward::To(VIF1));
        assert_eq!(b.targets(VIF2, Forward::To(VIF1)), alloc::vec![VIF1]);
        // And now mac(2) is known on VIF2.
        assert_eq!(b.forward(2 * S, VIF1, &f), Forward::To(VIF2));
        assert_eq!(b.len(), 2);
        let st = b.port_stats(VIF1).unwrap();
        assert_eq!((st.rx_frames, st.rx_bytes, st.flooded), (2, 120, 1));
    }

    #[test]
    fn broadcast_and_multicast_flood_to_every_port_but_the_ingress_one() {
        let mut b = bridge(Config::default());
        let f = frame(BROADCAST, mac(1), 42);
        assert_eq!(b.forward(0, NIC, &f), Forward::Flood);
        assert_eq!(
            b.targets(NIC, Forward::Flood),
            alloc::vec![DOM0, VIF1, VIF2]
        );
        // Even a broadcast to a learned address's port: the destination is a group.
        let m = frame([0x01, 0x00, 0x5e, 0, 0, 1], mac(2), 60);
        assert_eq!(b.forward(0, VIF2, &m), Forward::Flood);
        assert!(!b.targets(VIF2, Forward::Flood).contains(&VIF2));
    }

    #[test]
    fn nothing_goes_back_out_of_the_ingress_port() {
        let mut b = bridge(Config::default());
        b.forward(0, NIC, &frame(BROADCAST, mac(1), 60));
        b.forward(0, NIC, &frame(BROADCAST, mac(2), 60));
        // mac(1) and mac(2) both live behind the NIC: a frame between them is filtered.
        assert_eq!(
            b.forward(0, NIC, &frame(mac(2), mac(1), 60)),
            Forward::Drop(Drop::SamePort)
        );
        assert!(b.targets(NIC, Forward::To(NIC)).is_empty());
        assert_eq!(b.port_stats(NIC).unwrap().dropped, 1);
    }

    #[test]
    fn entries_age_out_and_unknown_again_means_flood() {
        let cfg = Config {
            ageing_ns: 10 * S,
            ..Config::default()
        };
        let mut b = bridge(cfg);
        b.forward(0, VIF1, &frame(BROADCAST, mac(1), 60));
        assert_eq!(b.lookup(10 * S, &mac(1)), Some(VIF1), "fresh at the limit");
        assert_eq!(
            b.forward(11 * S, VIF2, &frame(mac(1), mac(2), 60)),
            Forward::Flood
        );
        assert_eq!(b.stats().aged, 1);
        // Refreshed entries stay: mac(2) was seen at 11 s.
        b.forward(15 * S, VIF2, &frame(BROADCAST, mac(2), 60));
        assert_eq!(b.age(24 * S), 0);
        assert_eq!(b.age(26 * S), 1);
        assert!(b.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_a_full_table_evicts_nobody_fresh() {
        let cfg = Config {
            max_entries: 8,
            max_ports: 4,
            ageing_ns: 10 * S,
            evict_idle_ns: 10 * S,
            ..Config::default()
        };
        let mut b = bridge(cfg);
        for n in 0..4 {
            b.forward(0, VIF1, &frame(BROADCAST, mac(n), 60));
        }
        // A flood of new sources: none learned, the four stay.
        for n in 4..200 {
            b.forward(S, NIC, &frame(BROADCAST, mac(n), 60));
        }
        assert_eq!(b.len(), 4);
        assert_eq!(b.stats().learn_refused, 196);
        assert_eq!(b.lookup(S, &mac(3)), Some(VIF1));
        // mac(100) was not learned: frames to it flood.
        assert_eq!(
            b.forward(S, VIF1, &frame(mac(100), mac(0), 60)),
            Forward::Flood
        );
        // Once the old entries age out, learning resumes.
        assert_eq!(b.age(20 * S), 4);
        b.forward(20 * S, NIC, &frame(BROADCAST, mac(100), 60));
        assert_eq!(b.lookup(20 * S, &mac(100)), Some(NIC));
    }

    /// The wire fills the table with made-up sources: a vif that connects afterwards still
    /// joins (room is kept for fixed entries), and the flood pushes out no station that is
    /// talking, only idle ones.
    #[test]
    fn a_flood_from_the_wire_cannot_keep_a_vif_out_nor_push_out_talkers() {
        let cfg = Config {
            max_entries: 12,
            max_ports: 4,
            ageing_ns: 300 * S,
            evict_idle_ns: 30 * S,
            ..Config::default()
        };
        let mut b = Bridge::new(cfg);
        b.add_port(NIC, None).unwrap();
        b.add_port(DOM0, None).unwrap();
        b.add_port(VIF1, Some(mac(201))).unwrap();
        // The gateway behind the NIC, talking all along.
        let gw = [0x52, 0x55, 0x0a, 0, 2, 2];
        b.forward(0, NIC, &frame(BROADCAST, gw, 60));
        for n in 0..1000u32 {
            let t = u64::from(n) * S / 10;
            let src = [0x02, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8];
            b.forward(t, NIC, &frame(BROADCAST, src, 60));
            if n % 50 == 0 {
                b.forward(t, NIC, &frame(mac(201), gw, 60));
            }
        }
        assert_eq!(
            b.len(),
            12 - 4 + 1,
            "learned part full, plus VIF1's fixed entry"
        );
        assert_eq!(b.learned(), 8);
        // A new vif joins: its fixed entry has room.
        b.add_port(VIF2, Some(mac(202))).unwrap();
        assert_eq!(b.len(), 10);
        assert_eq!(
            b.forward(100 * S, VIF1, &frame(mac(202), mac(201), 60)),
            Forward::To(VIF2)
        );
        // The gateway, refreshed every 5 s, was never evicted; idle made-up sources were.
        assert_eq!(b.lookup(100 * S, &gw), Some(NIC));
        assert!(b.stats().evicted > 0);
        assert!(b.stats().learn_refused > 0);
        assert_eq!(b.remove_port(VIF2).map(|s| s.rx_frames), Some(0));
        assert_eq!(b.learned(), 8);
    }

    /// Eviction does not scan the table for every flooded frame: after a scan finds nothing
    /// idle, none happens until the oldest entry can be idle.
    #[test]
    fn eviction_scans_are_rare() {
        let cfg = Config {
            max_entries: 6,
            max_ports: 2,
            evict_idle_ns: 10 * S,
            ..Config::default()
        };
        let mut b = Bridge::new(cfg);
        b.add_port(NIC, None).unwrap();
        for n in 0..4 {
            b.forward(n * S, NIC, &frame(BROADCAST, mac(n as u8), 60));
        }
        for n in 4..100 {
            b.forward(5 * S, NIC, &frame(BROADCAST, mac(n), 60));
        }
        assert_eq!(b.next_evict_ns, 10 * S);
        assert_eq!(b.stats().evicted, 0);
        // At 10 s mac(0) is idle enough: it goes, the next source is learned.
        b.forward(10 * S, NIC, &frame(BROADCAST, mac(150), 60));
        assert_eq!(b.stats().evicted, 1);
        assert_eq!(b.lookup(10 * S, &mac(150)), Some(NIC));
        assert_eq!(b.lookup(10 * S, &mac(0)), None);
    }

    #[test]
    fn a_station_that_moves_is_followed() {
        let mut b = bridge(Config::default());
        b.forward(0, VIF1, &frame(BROADCAST, mac(1), 60));
        b.forward(S, NIC, &frame(BROADCAST, mac(1), 60));
        assert_eq!(b.lookup(S, &mac(1)), Some(NIC));
        assert_eq!(b.stats().moved, 1);
    }

    #[test]
    fn locked_ports_send_their_own_mac_only_and_nobody_else_takes_it() {
        let mut b = Bridge::new(Config::default());
        b.add_port(NIC, None).unwrap();
        b.add_port(VIF1, Some(mac(1))).unwrap();
        b.add_port(VIF2, Some(mac(2))).unwrap();
        assert_eq!(b.add_port(DOM0, Some(mac(1))), Err(PortError::BadMac));
        assert_eq!(b.add_port(DOM0, Some(BROADCAST)), Err(PortError::BadMac));
        assert_eq!(b.add_port(VIF1, None), Err(PortError::Exists));
        // The fixed entry is there before the domU sent anything.
        assert_eq!(
            b.forward(0, NIC, &frame(mac(1), mac(9), 60)),
            Forward::To(VIF1)
        );
        // VIF2 claims mac(1) and mac(7): dropped.
        assert_eq!(
            b.forward(0, VIF2, &frame(BROADCAST, mac(1), 60)),
            Forward::Drop(Drop::Spoofed)
        );
        assert_eq!(
            b.forward(0, VIF2, &frame(BROADCAST, mac(7), 60)),
            Forward::Drop(Drop::Spoofed)
        );
        // The NIC claims mac(2): dropped, the entry stays on VIF2.
        assert_eq!(
            b.forward(0, NIC, &frame(BROADCAST, mac(2), 60)),
            Forward::Drop(Drop::Spoofed)
        );
        assert_eq!(
            b.lookup(u64::MAX, &mac(2)),
            Some(VIF2),
            "fixed entries never age"
        );
        assert_eq!(b.port_stats(VIF2).unwrap().spoofed, 2);
        // Removing the port forgets its entries.
        assert!(b.remove_port(VIF1).is_some());
        assert_eq!(b.lookup(0, &mac(1)), None);
        assert_eq!(
            b.forward(0, NIC, &frame(mac(1), mac(9), 60)),
            Forward::Flood
        );
        assert_eq!(b.targets(NIC, Forward::Flood), alloc::vec![VIF2]);
        assert_eq!(b.remove_port(VIF1), None);
    }

    #[test]
    fn malformed_frames_are_dropped_and_counted() {
        let mut b = bridge(Config::default());
        assert_eq!(b.forward(0, VIF1, &[0u8; 13]), Forward::Drop(Drop::Runt));
        assert_eq!(b.forward(0, VIF1, &[]), Forward::Drop(Drop::Runt));
        assert_eq!(
            b.forward(0, VIF1, &frame(mac(2), mac(1), 1519)),
            Forward::Drop(Drop::Oversize)
        );
        assert_eq!(
            b.forward(0, VIF1, &frame(mac(2), BROADCAST, 60)),
            Forward::Drop(Drop::BadSource)
        );
        assert_eq!(
            b.forward(0, VIF1, &frame(mac(2), [0; 6], 60)),
            Forward::Drop(Drop::BadSource)
        );
        assert_eq!(
            b.forward(0, PortId(99), &frame(mac(2), mac(1), 60)),
            Forward::Drop(Drop::UnknownPort)
        );
        assert!(b.is_empty(), "nothing learned from dropped frames");
        assert_eq!(b.port_stats(VIF1).unwrap().dropped, 5);
        // A header-only frame is fine.
        assert_eq!(
            b.forward(0, VIF1, &frame(mac(2), mac(1), 14)),
            Forward::Flood
        );
        assert_eq!(
            b.forward(0, VIF1, &frame(mac(2), mac(1), 1518)),
            Forward::Flood
        );
    }

    #[test]
    fn port_limit_and_sent_counters() {
        let mut b = Bridge::new(Config {
            max_ports: 2,
            ..Config::default()
        });
        b.add_port(NIC, None).unwrap();
        b.add_port(DOM0, None).unwrap();
        assert_eq!(b.add_port(VIF1, None), Err(PortError::TooManyPorts));
        b.sent(NIC, 100);
        b.sent(NIC, 50);
        b.sent(PortId(7), 50);
        let st = b.port_stats(NIC).unwrap();
        assert_eq!((st.tx_frames, st.tx_bytes), (2, 150));
        assert_eq!(b.port_stats(PortId(7)), None);
    }
}
