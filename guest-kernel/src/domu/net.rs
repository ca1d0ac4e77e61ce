//! The domU's network mode: when dom0 made a vif for us (`device/vif/0`), connect netfront,
//! bring up `guest_kernel::netstack` on it (DHCP, asking for 10.0.2.(20 + domid); why in that
//! module's doc) and serve HTTP on port 80, echo on port 7 and the bench's sink (9) and source (19) until dom0
//! shuts us down.
//!
//! The page (`GET /`) shows the domain's id and name, its uptime, its address and the vif's
//! counters (netfront's and the stack's). `net-fetch=<domid>` on the command line also fetches
//! the page of that domU (10.0.2.(20 + domid), through dom0's bridge) once we have an address,
//! retrying for a minute, and prints it line by line as `net-fetch: <line>`;
//! `net-reconnects=<n>` closes and reconnects the vif `n` times first (fresh rings and grants
//! each time: dom0's netback must follow).
//!
//! The loop: poll the stack, then (if it has nothing due) re-arm both rings' event indices and
//! block until an event or the stack's next timer; every event only wakes the loop.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::netstack::{
    requested_address, Addressing, ConnId, ConnState, NetEvent, NetStack, StackStats, HTTP_PORT,
};
use ring_drivers::netif::{format_mac, NetFrontStats};

use super::client::Client;
use super::error::DomuError;
use super::netfront::Netfront;
use super::xenbus_front::XenbusDevice;
use crate::kernel::events::{self, Channel};
use crate::kernel::{console, time};

/// Gives up fetching another domU's page after this long.
const FETCH_FOR_MS: u64 = 60_000;

fn now_ms() -> u64 {
    time::now_ns().unwrap_or(0) / time::MS
}

/// What the page shows besides the stack's counters.
struct Page<'a> {
    domid: u16,
    name: &'a str,
    mac: [u8; 6],
    booted_ms: u64,
    vif: NetFrontStats,
    events: u64,
    ring_errors: u64,
    /// Loop passes and how many of them blocked.
    passes: u64,
    blocks: u64,
}

impl Page<'_> {
    fn render(&self, now: u64, s: &StackStats) -> String {
        let up = now.saturating_sub(self.booted_ms);
        let addr = match s.address {
            Some(a) => format!("{a} ({})", if s.dhcp { "DHCP" } else { "static" }),
            None => String::from("none"),
        };
        let gw = s.gateway.map_or(String::from("none"), |g| format!("{g}"));
        let v = &self.vif;
        format!(
            "xen-rs domU {} ({})\n\
             uptime: {}.{:03} s\n\
             address: {addr}, gateway {gw}\n\
             vif 0: mac {}\n\
             \x20 tx: {} packets, {} bytes, {} error slots\n\
             \x20 rx: {} packets, {} bytes, {} dropped\n\
             \x20 events: {} received, {} notifications sent, {} bad responses, {} ring errors\n\
             tcp: {} http requests, {} echo connections, {} bytes echoed\n\
             \x20 sink (port 9): {} bytes, {} bad streams; source (port 19): {} bytes\n\
             frames: {} out, {} refused, {} in\n\
             loop: {} passes, {} blocked\n",
            self.domid,
            self.name,
            up / 1000,
            up % 1000,
            format_mac(&self.mac),
            v.tx_packets,
            v.tx_bytes,
            v.tx_errors,
            v.rx_packets,
            v.rx_bytes,
            v.rx_errors,
            self.events,
            v.notifications_sent,
            v.bad_responses,
            self.ring_errors,
            s.http_requests,
            s.echo_connections,
            s.echo_bytes,
            s.sink_bytes,
            s.sink_errors,
            s.source_bytes,
            s.frames_out,
            s.frames_refused,
            s.frames_in,
            self.passes,
            self.blocks,
        )
    }
}

/// `net-fetch`: GET / from another domU, retried until it answers or time runs out.
struct Fetch {
    target: Ipv4Addr,
    conn: Option<ConnId>,
    got: Vec<u8>,
    sent: bool,
    started_ms: u64,
    next_try_ms: u64,
    done: bool,
}

impl Fetch {
    fn step(&mut self, stack: &mut NetStack, now: u64) {
        if self.done || stack.stats().address.is_none() {
            return;
        }
        if self.started_ms == 0 {
            self.started_ms = now;
        }
        let Some(c) = self.conn else {
            if now >= self.next_try_ms {
                self.conn = stack.open(self.target, HTTP_PORT);
                self.got.clear();
                self.sent = false;
                self.next_try_ms = now + 1000;
            }
            return;
        };
        match stack.state(c) {
            ConnState::Connecting => {}
            ConnState::Open | ConnState::PeerClosed if !self.sent => {
                let req = format!(
                    "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.target
                );
                self.sent = stack.send(c, req.as_bytes()) == req.len();
            }
            _ => {}
        }
        stack.recv(c, &mut self.got);
        let state = stack.state(c);
        if state == ConnState::PeerClosed || state == ConnState::Closed {
            stack.recv(c, &mut self.got);
            stack.release(c);
            self.conn = None;
            if self.got.starts_with(b"HTTP/1.1 200") {
                let text = String::from_utf8_lossy(&self.got).into_owned();
                let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
                println!("net-fetch: {} answered:", self.target);
                for line in body.lines() {
                    println!("net-fetch: {line}");
                }
                println!("net-fetch: ok {} bytes", self.got.len());
                self.done = true;
            } else if now.saturating_sub(self.started_ms) > FETCH_FOR_MS {
                println!("net-fetch: {} did not answer: giving up", self.target);
                self.done = true;
            }
        }
    }
}

/// If dom0 made `device/vif/0`: connects it and serves until shut down (never returns `Ok`).
/// Without a vif: `Ok(())` at once (the domU goes on as before).
pub fn serve_if_vif(d: &mut Client, domid: u16, cmdline: &Cmdline<'_>) -> Result<(), DomuError> {
    let Some(mut nf) = Netfront::discover(d)? else {
        return Ok(());
    };
    let booted_ms = now_ms();
    let name = match d.read("name")? {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(_) => format!("domain{domid}"),
    };
    nf.connect(d)?;
    let reconnects: u32 = cmdline
        .get("net-reconnects")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..reconnects {
        nf.close(d)?;
        nf.reconnect(d)?;
    }
    if reconnects > 0 {
        println!("domU: netfront: {reconnects} reconnects ok");
    }
    println!(
        "domU: netfront: vif 0 connected, mac {}, port {}",
        format_mac(&nf.mac),
        nf.port()
    );
    let mac = nf.mac;
    let addressing = Addressing::Dhcp {
        requested: requested_address(domid),
    };
    let seed = time::rdtsc() ^ u64::from(domid) << 48;
    let mut stack = NetStack::new(&mut nf, mac, addressing, now_ms(), seed);
    let mut fetch = cmdline
        .get("net-fetch")
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|&target| target != domid) // one command line for every domU: not ourselves
        .and_then(requested_address)
        .map(|target| Fetch {
            target,
            conn: None,
            got: Vec::new(),
            sent: false,
            started_ms: 0,
            next_try_ms: 0,
            done: false,
        });
    let mut configured = false;
    let (mut passes, mut blocks) = (0u64, 0u64);
    loop {
        passes += 1;
        let now = now_ms();
        let page = Page {
            domid,
            name: &name,
            mac,
            booted_ms,
            vif: nf.stats(),
            events: nf.events,
            ring_errors: nf.ring_errors,
            passes,
            blocks,
        };
        let event = stack.poll(&mut nf, now, &mut |s| page.render(now_ms(), s));
        match event {
            Some(NetEvent::Configured(addr, gw)) => {
                configured = true;
                let gw = gw.map_or(String::from("none"), |g| format!("{g}"));
                println!(
                    "domU: net: {addr} by DHCP, gateway {gw}; http on port 80, echo on port 7"
                );
            }
            // smoltcp reports Deconfigured once at start too: only a lost lease is news.
            Some(NetEvent::Deconfigured) if configured => {
                println!("domU: net: DHCP lease lost");
                configured = false;
            }
            Some(NetEvent::Deconfigured) => {}
            None => {}
        }
        if let Some(f) = fetch.as_mut() {
            f.step(&mut stack, now);
        }
        console::flush();
        let delay = stack.poll_delay(now).unwrap_or(1000).min(1000);
        if delay > 0 && !nf.prepare_to_wait() {
            blocks += 1;
            events::wait(Some(delay * time::MS));
        }
        events::dispatch(|_, ch| {
            if let Some(Channel::Vif(_)) = ch {
                nf.events += 1;
            }
        });
    }
}
