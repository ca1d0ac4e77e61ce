//! dom0's network service: the NIC (`netdev.rs`), dom0's own interface (`netstack.rs`) and, once
//! they connect, every domU's vif, joined by a learning bridge (`ring_drivers::bridge`), as
//! Xen's `vif-bridge` joins `eth0`, dom0 and the `vifN.0`s to `xenbr0`.
//!
//! Ports: [`NIC_PORT`] (the wire: QEMU's user-mode network), [`DOM0_PORT`] (dom0's own
//! address), and `vif_port(domid)` for each domU's vif, locked to the MAC the toolstack gave it.
//! Frames move as they arrive: a NIC completion or a stack's output is forwarded at once, by
//! reference where it can be (the NIC's receive buffer is handed to the bridge and to the
//! destination without an intermediate copy).
//!
//! Command line (dom0): `net=off` leaves the NIC alone; `net-ip=<a.b.c.d/len>` and
//! `net-gw=<a.b.c.d>` give dom0 a fixed address instead of DHCP; `net-fwd=<dom0 http>/<dom0
//! echo>/<domU1 http>/<domU1 echo>` names the host ports `make run` forwards (printed with the
//! command to try; domU N uses the domU ports + N - 1).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use guest_kernel::cmdline::Cmdline;
use ring_drivers::bridge::{Bridge, Config, Forward, MacFmt, PortId};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use super::netback::{self, Link, Vif};
use super::netdev::NetDevice;
use super::netstack::{Addressing, HostIf};
use super::service::{Ctx, Service};
use crate::kernel::events::Channel;
use crate::kernel::time;

/// The bridge port of the NIC.
pub const NIC_PORT: PortId = PortId(0);
/// The bridge port of dom0's own interface.
pub const DOM0_PORT: PortId = PortId(1);

/// The bridge port of domU `domid`'s vif.
pub const fn vif_port(domid: u16) -> PortId {
    PortId(0x100 + domid)
}

/// Frames taken from the NIC per round (the loop comes back while more wait).
const NIC_BUDGET: usize = 64;
/// How often the bridge's table is swept for aged entries.
const AGE_EVERY_NS: u64 = 10_000_000_000;

/// Host ports `make run` forwards (`net-fwd=`).
#[derive(Clone, Copy, Debug)]
struct HostFwd {
    dom0_http: u16,
    dom0_echo: u16,
    domu_http: u16,
    domu_echo: u16,
}

fn parse_fwd(s: &str) -> Option<HostFwd> {
    let mut it = s.split('/').map(|p| p.parse::<u16>().ok());
    let fwd = HostFwd {
        dom0_http: it.next()??,
        dom0_echo: it.next()??,
        domu_http: it.next()??,
        domu_echo: it.next()??,
    };
    it.next().is_none().then_some(fwd)
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (a, len) = s.split_once('/').unwrap_or((s, "24"));
    let len: u8 = len.parse().ok().filter(|&l| l <= 32)?;
    Some(Ipv4Cidr::new(a.parse::<Ipv4Address>().ok()?, len))
}

/// The network service.
pub struct Net {
    nic: Option<NetDevice>,
    host: Option<HostIf>,
    bridge: Bridge,
    fwd: Option<HostFwd>,
    last_age_ns: u64,
    /// Each domU's vif, by domid.
    vifs: BTreeMap<u16, Vif>,
}

/// Sends `frame`, which came in on `ingress`, out of every port the bridge picks (`nic` is
/// `None` while the NIC's own receive buffers are lent out: then the NIC is the ingress port,
/// which never is a target).
fn route(
    bridge: &mut Bridge,
    host: &mut Option<HostIf>,
    vifs: &mut BTreeMap<u16, Vif>,
    nic: Option<&mut NetDevice>,
    now_ns: u64,
    ingress: PortId,
    frame: &[u8],
) {
    let verdict = bridge.forward(now_ns, ingress, frame);
    if matches!(verdict, Forward::Drop(_)) {
        return;
    }
    let mut nic = nic;
    for port in bridge.targets(ingress, verdict) {
        let sent = match port {
            NIC_PORT => nic.as_mut().is_some_and(|n| n.send(frame)),
            DOM0_PORT => host.as_mut().is_some_and(|h| {
                h.deliver(frame);
                true
            }),
            PortId(p) => p
                .checked_sub(vif_port(0).0)
                .and_then(|id| vifs.get_mut(&id))
                .is_some_and(|v| v.send(frame)),
        };
        if sent {
            bridge.sent(port, frame.len());
        }
    }
}

impl Net {
    /// Finds the NIC and starts dom0's interface, unless `net=off`; without a NIC the service
    /// does nothing (and says nothing: most boots have no NIC).
    pub fn new(cmdline: &Cmdline<'_>) -> Net {
        let mut net = Net {
            nic: None,
            host: None,
            bridge: Bridge::new(Config::default()),
            fwd: cmdline.get("net-fwd").and_then(parse_fwd),
            last_age_ns: 0,
            vifs: BTreeMap::new(),
        };
        if cmdline.get("net") == Some("off") {
            return net;
        }
        let nic = match NetDevice::probe() {
            Ok(nic) => nic,
            Err(super::netdev::NetError::NoDevice) => return net,
            Err(e) => {
                println!("net: NIC: {e}");
                return net;
            }
        };
        let l = nic.location;
        println!(
            "net: virtio-net at {:02x}:{:02x}.{}, MAC {}, {}",
            l.bus,
            l.device,
            l.function,
            MacFmt(&nic.mac),
            nic.irq
        );
        let addressing = match cmdline.get("net-ip").and_then(parse_cidr) {
            Some(cidr) => {
                Addressing::Static(cidr, cmdline.get("net-gw").and_then(|g| g.parse().ok()))
            }
            None => Addressing::Dhcp,
        };
        let now = time::now_ns().unwrap_or(0);
        // dom0's interface takes the NIC's MAC, as a Linux bridge takes its first port's: the
        // NIC itself never sends frames of its own.
        let host = HostIf::new(nic.mac, addressing, now, now ^ time::rdtsc());
        if let Some(a) = host.addr {
            println!("net: dom0 is {a} (static)");
            net.print_dom0_fwd();
        }
        let _ = net.bridge.add_port(NIC_PORT, None);
        let _ = net.bridge.add_port(DOM0_PORT, None);
        net.nic = Some(nic);
        net.host = Some(host);
        net
    }

    /// Whether dom0 serves vifs (it has a NIC and a bridge): the toolstack then writes each
    /// domU's vif nodes (`Ctx::vifs`).
    pub fn serves_vifs(&self) -> bool {
        self.nic.is_some()
    }

    /// A vif's link went up or down: its bridge port follows.
    fn link(&mut self, id: u16, link: Link) {
        match link {
            Link::Same => {}
            Link::Up(mac) => {
                let _ = self.bridge.remove_port(vif_port(id));
                match self.bridge.add_port(vif_port(id), Some(mac)) {
                    Ok(()) => println!("net: vif{id}.0 ({}) joined the bridge", MacFmt(&mac)),
                    Err(e) => println!("net: vif{id}.0 cannot join the bridge: {e:?}"),
                }
                if let Some(f) = self.fwd {
                    println!(
                        "net: try `curl http://127.0.0.1:{}/` for domU{id}'s page (10.0.2.{}; echo: \
                         127.0.0.1:{})",
                        u32::from(f.domu_http) + u32::from(id) - 1,
                        20 + u32::from(id),
                        u32::from(f.domu_echo) + u32::from(id) - 1
                    );
                }
            }
            Link::Down => {
                if self.bridge.remove_port(vif_port(id)).is_some() {
                    println!("net: vif{id}.0 left the bridge");
                }
            }
        }
    }

    /// Serves vif `id`'s tx ring and forwards what it sent, each frame straight from the back
    /// end's buffer (the vif is taken out of the map meanwhile: the bridge never sends a frame
    /// back out of its ingress port, so it needs no path to itself).
    fn serve_vif(&mut self, ctx: &mut Ctx, id: u16, event: bool) {
        let Some(mut v) = self.vifs.remove(&id) else {
            return;
        };
        let now = time::now_ns().unwrap_or(0);
        let (bridge, host, vifs, nic) = (
            &mut self.bridge,
            &mut self.host,
            &mut self.vifs,
            &mut self.nic,
        );
        let link = v.serve(&mut ctx.xs, event, now, &mut |frame, _meta| {
            route(bridge, host, vifs, nic.as_mut(), now, vif_port(id), frame);
        });
        self.vifs.insert(id, v);
        self.link(id, link);
        self.flush_vifs();
    }

    /// Copies the frames queued for each domU into its buffers (batched grant copies).
    fn flush_vifs(&mut self) {
        for v in self.vifs.values_mut() {
            v.flush();
        }
    }

    fn print_dom0_fwd(&self) {
        if let Some(f) = self.fwd {
            println!(
                "net: try `curl http://127.0.0.1:{}/` for dom0's page (echo: 127.0.0.1:{})",
                f.dom0_http, f.dom0_echo
            );
        }
    }

    /// dom0's page.
    fn page(
        out: &mut String,
        nic: &Option<NetDevice>,
        bridge: &Bridge,
        addr: Option<Ipv4Cidr>,
        echoed: u64,
        pages: u64,
    ) {
        let now = time::now_ns().unwrap_or(0);
        let _ = writeln!(out, "Hello from dom0 (domain 0) of xen-rs.");
        let _ = writeln!(
            out,
            "address {}, uptime {}.{:03} s",
            addr.map_or(String::from("none"), |a| alloc::format!("{a}")),
            now / 1_000_000_000,
            now / 1_000_000 % 1000
        );
        if let Some(n) = nic {
            let s = n.stats;
            let _ = writeln!(
                out,
                "nic: rx {} frames {} bytes ({} bad), tx {} frames {} bytes ({} dropped), {} \
                 interrupts",
                s.rx_frames,
                s.rx_bytes,
                s.rx_bad,
                s.tx_frames,
                s.tx_bytes,
                s.tx_dropped,
                s.interrupts
            );
        }
        let st = bridge.stats();
        let _ = writeln!(
            out,
            "bridge: {} MAC entries, {} aged, {} moved, {} not learned (table full)",
            bridge.len(),
            st.aged,
            st.moved,
            st.learn_refused
        );
        for p in bridge.ports() {
            if let Some(ps) = bridge.port_stats(p) {
                let name = match p {
                    NIC_PORT => String::from("nic"),
                    DOM0_PORT => String::from("dom0"),
                    PortId(n) => alloc::format!("vif{}.0", n - 0x100),
                };
                let _ = writeln!(
                    out,
                    "  port {name}: in {} frames {} bytes, out {} frames {} bytes, flooded {}, \
                     dropped {} ({} spoofed)",
                    ps.rx_frames,
                    ps.rx_bytes,
                    ps.tx_frames,
                    ps.tx_bytes,
                    ps.flooded,
                    ps.dropped,
                    ps.spoofed
                );
            }
        }
        let _ = writeln!(
            out,
            "echo: {echoed} bytes echoed; http: {pages} pages served"
        );
    }

    /// The vifs' part of dom0's page.
    fn vif_lines(out: &mut String, vifs: &BTreeMap<u16, Vif>) {
        for (id, v) in vifs {
            if let Some(s) = v.stats() {
                let _ = writeln!(
                    out,
                    "vif{id}.0: from the domU {} packets {} bytes ({} refused), to it {} packets \
                     {} bytes ({} queued, {} dropped), {} events, {} notifications, {} grant \
                     copies",
                    s.tx_packets,
                    s.tx_bytes,
                    s.tx_errors,
                    s.rx_packets,
                    s.rx_bytes,
                    s.rx_queued,
                    s.rx_dropped_no_buffer + s.rx_dropped_malformed + s.rx_grant_errors,
                    s.events_received,
                    s.notifications_sent,
                    s.grant_copy_calls
                );
            }
        }
    }

    /// Moves frames until nothing moves: the NIC's arrivals, dom0's stack.
    fn pump(&mut self) {
        if self.nic.is_none() {
            return;
        }
        let now = time::now_ns().unwrap_or(0);
        for _ in 0..16 {
            let mut moved = 0;
            // The wire: each frame goes through the bridge straight from the receive buffer.
            if let Some(nic) = self.nic.as_mut() {
                let (bridge, host, vifs) = (&mut self.bridge, &mut self.host, &mut self.vifs);
                moved += nic.recv(NIC_BUDGET, |frame| {
                    route(bridge, host, vifs, None, now, NIC_PORT, frame);
                });
            }
            // dom0's stack.
            if let Some(mut host) = self.host.take() {
                let (echoed, pages, addr) = (host.echoed, host.pages, host.addr);
                let (nic, bridge, vifs) = (&self.nic, &self.bridge, &self.vifs);
                let (out, note) = host.poll(now, &mut |s| {
                    Self::page(s, nic, bridge, addr, echoed, pages);
                    Self::vif_lines(s, vifs);
                });
                self.host = Some(host);
                if let Some(note) = note {
                    println!("{note}");
                    if self.host.as_ref().is_some_and(|h| h.addr.is_some()) {
                        self.print_dom0_fwd();
                    }
                }
                moved += out.len();
                for frame in out {
                    self.switch(now, DOM0_PORT, &frame);
                }
            }
            self.flush_vifs();
            if moved == 0 {
                break;
            }
        }
        if let Some(nic) = self.nic.as_mut() {
            nic.reclaim();
        }
        if now.saturating_sub(self.last_age_ns) > AGE_EVERY_NS {
            self.bridge.age(now);
            self.last_age_ns = now;
        }
    }

    /// Forwards `frame` from `ingress` to wherever the bridge says.
    fn switch(&mut self, now_ns: u64, ingress: PortId, frame: &[u8]) {
        route(
            &mut self.bridge,
            &mut self.host,
            &mut self.vifs,
            self.nic.as_mut(),
            now_ns,
            ingress,
            frame,
        );
    }
}

impl Service for Net {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        match channel {
            Channel::Nic => {
                if let Some(nic) = self.nic.as_mut() {
                    nic.interrupt();
                }
                self.pump();
            }
            Channel::Vif(id) => {
                self.serve_vif(ctx, id, true);
                self.pump();
            }
            _ => {}
        }
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        let busy: Vec<u16> = self
            .vifs
            .iter()
            .filter(|(_, v)| v.busy)
            .map(|(&id, _)| id)
            .collect();
        for id in busy {
            self.serve_vif(ctx, id, false);
        }
        self.pump();
    }

    fn attach(&mut self, ctx: &mut Ctx, id: u16) {
        if !self.serves_vifs() {
            return;
        }
        if let Some((vif, link)) = Vif::create(&mut ctx.xs, id) {
            self.vifs.insert(id, vif);
            self.link(id, link);
        }
    }

    fn detach(&mut self, ctx: &mut Ctx, id: u16) {
        if let Some(v) = self.vifs.remove(&id) {
            v.destroy(&mut ctx.xs);
            self.link(id, Link::Down);
        }
    }

    fn watch(&mut self, ctx: &mut Ctx, token: &str) -> bool {
        let Some(id) = token.strip_prefix("vif").and_then(|t| t.parse().ok()) else {
            return false;
        };
        if token != netback::token(id) {
            return false;
        }
        if let Some(v) = self.vifs.get_mut(&id) {
            let link = v.frontend_changed(&mut ctx.xs);
            self.link(id, link);
        }
        true
    }

    fn busy(&self) -> bool {
        self.nic.as_ref().is_some_and(|n| n.rx_pending())
            || self.host.as_ref().is_some_and(|h| h.pending())
            || self.vifs.values().any(|v| v.busy)
    }

    fn deadline_ns(&mut self, now_ns: u64) -> Option<u64> {
        let nic = self.nic.as_ref()?;
        let polled = nic.irq == super::blkdev::IrqMode::Polled;
        let stack = self.host.as_mut().and_then(|h| h.deadline_ns(now_ns));
        // Without an interrupt the NIC is looked at every millisecond.
        let poll = polled.then_some(now_ns + time::MS);
        match (stack, poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
