//! dom0's own network interface: a `smoltcp` TCP/IP stack on a port of dom0's bridge (`net.rs`),
//! as a Linux dom0's `xenbr0` carries dom0's address. It takes its address by DHCP from the
//! network behind the NIC (QEMU's user-mode network gives 10.0.2.15, gateway 10.0.2.2) unless
//! the command line names one (`net-ip=10.0.2.15/24`, `net-gw=10.0.2.2`), and serves:
//!
//! - TCP port 7: echo (every byte back), the host <-> dom0 direct figure of `make bench`;
//! - TCP port 80: an HTTP/1.1 page with dom0's address, uptime and the NIC's and bridge's
//!   counters (one request per connection, `Connection: close`);
//! - TCP ports 9 and 19: the bench's sink and source, as the domU has them
//!   (`guest_kernel::netstack`), for the one-way host <-> dom0 direct figures.
//!
//! The "device" under smoltcp is two queues: frames the bridge delivers to this port, and frames
//! the stack emits, which the bridge takes from [`HostIf::poll`]'s result.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use guest_kernel::netstack::{Xorshift, SINK_PORT, SOURCE_PORT, STREAM_SEED};

/// Frames waiting for the stack at most (more are dropped: the stack is not keeping up).
const RX_QUEUE: usize = 512;
/// Bytes waiting for the stack at most: a domU flooding broadcasts cannot fill dom0's heap.
const RX_QUEUE_BYTES: usize = 256 * 1024;
/// Ethernet payload size.
const MTU: usize = 1500;
/// Listening echo and HTTP sockets (concurrent connections of each).
const ECHO_SOCKETS: usize = 2;
const HTTP_SOCKETS: usize = 4;
/// Echo socket buffers: large enough for a full window at QEMU's speeds.
const ECHO_BUF: usize = 64 * 1024;
const HTTP_RX: usize = 2048;
const HTTP_TX: usize = 8192;

/// The queues smoltcp sees as its device.
struct Queues {
    rx: VecDeque<Vec<u8>>,
    /// Bytes in `rx`.
    rx_bytes: usize,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        self.rx_bytes -= frame.len();
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        caps
    }
}

/// A sink or source connection: the stream, bytes so far, the first wrong byte (sink).
#[derive(Clone, Copy)]
struct Stream {
    gen: Xorshift,
    bytes: u64,
    bad: Option<u64>,
    answered: bool,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            gen: Xorshift::new(STREAM_SEED),
            bytes: 0,
            bad: None,
            answered: false,
        }
    }
}

/// A socket for the echo and the bench services: a full window, and everything answered at
/// once (no Nagle, no delayed acknowledgement).
fn stream_socket() -> tcp::Socket<'static> {
    let mut s = tcp_socket(ECHO_BUF, ECHO_BUF);
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

/// An HTTP connection's progress.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Http {
    /// Reading the request (bytes of it seen).
    Reading(usize),
    /// The answer is queued; closing once sent.
    Answered,
}

/// How dom0's interface gets its address.
pub enum Addressing {
    /// DHCP on the bridge.
    Dhcp,
    /// A fixed address and gateway.
    Static(Ipv4Cidr, Option<Ipv4Address>),
}

/// dom0's interface: the stack, its sockets, the queues.
pub struct HostIf {
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    echo: Vec<SocketHandle>,
    /// The bench's one-way services, as the domU has them: the sink (port 9: checks the
    /// xorshift stream, answers `ok <n>`) and the source (port 19: sends it).
    sink: (SocketHandle, Stream),
    source: (SocketHandle, Stream),
    http: Vec<(SocketHandle, Http)>,
    scratch: Vec<u8>,
    /// Its address once it has one.
    pub addr: Option<Ipv4Cidr>,
    /// Its gateway.
    pub gateway: Option<Ipv4Address>,
    /// Frames dropped because the receive queue was full.
    pub rx_dropped: u64,
    /// Bytes echoed.
    pub echoed: u64,
    /// HTTP requests answered.
    pub pages: u64,
}

/// smoltcp's clock from Xen's system time.
fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    )
}

impl HostIf {
    /// An interface with MAC `mac`, addressed as `addressing` says; `seed` varies TCP's initial
    /// sequence numbers.
    pub fn new(mac: [u8; 6], addressing: Addressing, now_ns: u64, seed: u64) -> HostIf {
        let mut dev = Queues {
            rx: VecDeque::new(),
            rx_bytes: 0,
            tx: Vec::new(),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, instant(now_ns));
        let mut sockets = SocketSet::new(Vec::new());
        let (mut addr, mut gateway, mut dhcp) = (None, None, None);
        match addressing {
            Addressing::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
            Addressing::Static(cidr, gw) => {
                iface.update_ip_addrs(|a| {
                    let _ = a.push(IpCidr::Ipv4(cidr));
                });
                if let Some(gw) = gw {
                    let _ = iface.routes_mut().add_default_ipv4_route(gw);
                }
                addr = Some(cidr);
                gateway = gw;
            }
        }
        let echo = (0..ECHO_SOCKETS)
            .map(|_| sockets.add(stream_socket()))
            .collect();
        let sink = (sockets.add(stream_socket()), Stream::new());
        let source = (sockets.add(stream_socket()), Stream::new());
        let http = (0..HTTP_SOCKETS)
            .map(|_| (sockets.add(tcp_socket(HTTP_RX, HTTP_TX)), Http::Reading(0)))
            .collect();
        HostIf {
            iface,
            dev,
            sockets,
            dhcp,
            echo,
            sink,
            source,
            http,
            scratch: vec![0; 16 * 1024],
            addr,
            gateway,
            rx_dropped: 0,
            echoed: 0,
            pages: 0,
        }
    }

    /// A frame the bridge sends to dom0.
    pub fn deliver(&mut self, frame: &[u8]) {
        if self.dev.rx.len() >= RX_QUEUE || self.dev.rx_bytes + frame.len() > RX_QUEUE_BYTES {
            self.rx_dropped += 1;
            return;
        }
        self.dev.rx_bytes += frame.len();
        self.dev.rx.push_back(frame.to_vec());
    }

    /// Whether frames wait for the stack.
    pub fn pending(&self) -> bool {
        !self.dev.rx.is_empty()
    }

    /// Runs the stack and the services at `now_ns`; `page` writes the HTTP page's body. Returns
    /// the frames the stack sent (for the bridge) and, the first time an address is configured,
    /// a line saying so.
    pub fn poll(
        &mut self,
        now_ns: u64,
        page: &mut dyn FnMut(&mut String),
    ) -> (Vec<Vec<u8>>, Option<String>) {
        let now = instant(now_ns);
        let mut note = None;
        for _ in 0..4 {
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            if let Some(h) = self.dhcp {
                note = note.or(self.dhcp_event(h));
            }
            let moved =
                self.serve_echo() | self.serve_sink() | self.serve_source() | self.serve_http(page);
            if !moved && self.dev.rx.is_empty() {
                break;
            }
        }
        (core::mem::take(&mut self.dev.tx), note)
    }

    /// When the stack next needs a poll (a TCP timer, a DHCP retry), in Xen system time.
    pub fn deadline_ns(&mut self, now_ns: u64) -> Option<u64> {
        let d = self.iface.poll_delay(instant(now_ns), &self.sockets)?;
        Some(now_ns + d.total_micros() * 1000)
    }

    fn dhcp_event(&mut self, h: SocketHandle) -> Option<String> {
        match self.sockets.get_mut::<dhcpv4::Socket>(h).poll()? {
            dhcpv4::Event::Configured(c) => {
                let cidr = c.address;
                self.iface.update_ip_addrs(|a| {
                    a.clear();
                    let _ = a.push(IpCidr::Ipv4(cidr));
                });
                match c.router {
                    Some(gw) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                let first = self.addr.is_none();
                self.addr = Some(cidr);
                self.gateway = c.router;
                first.then(|| {
                    alloc::format!(
                        "net: dom0 is {cidr} (DHCP), gateway {}",
                        c.router
                            .map_or(String::from("none"), |g| alloc::format!("{g}"))
                    )
                })
            }
            dhcpv4::Event::Deconfigured => {
                // Also the first event of every start, before any lease: silent then.
                self.iface.update_ip_addrs(|a| a.clear());
                self.addr
                    .take()
                    .map(|_| String::from("net: dom0 lost its DHCP lease"))
            }
        }
    }

    /// Echo: whatever arrives goes back. Returns whether any byte moved.
    fn serve_echo(&mut self) -> bool {
        let mut moved = false;
        for &h in &self.echo {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                let _ = s.listen(7);
                continue;
            }
            while s.can_recv() && s.can_send() {
                let room = s.send_capacity() - s.send_queue();
                let n = room.min(self.scratch.len());
                let got = s.recv_slice(&mut self.scratch[..n]).unwrap_or(0);
                if got == 0 {
                    break;
                }
                let sent = s.send_slice(&self.scratch[..got]).unwrap_or(0);
                self.echoed += sent as u64;
                moved = true;
            }
            if !s.may_recv() && s.send_queue() == 0 && s.state() == tcp::State::CloseWait {
                s.close();
            }
        }
        moved
    }

    /// The sink: checks what arrives against the stream; at the peer's FIN answers
    /// `ok <bytes>` or `bad <offset>` and closes.
    fn serve_sink(&mut self) -> bool {
        let (h, c) = &mut self.sink;
        let s = self.sockets.get_mut::<tcp::Socket>(*h);
        if !s.is_open() {
            let _ = s.listen(SINK_PORT);
            *c = Stream::new();
            return false;
        }
        let mut moved = false;
        while s.can_recv() {
            let got = s
                .recv(|buf| {
                    if c.bad.is_none() {
                        if let Some(i) = c.gen.check(buf) {
                            c.bad = Some(c.bytes + i as u64);
                        }
                    }
                    c.bytes += buf.len() as u64;
                    (buf.len(), buf.len())
                })
                .unwrap_or(0);
            if got == 0 {
                break;
            }
            moved = true;
        }
        if s.state() == tcp::State::CloseWait && !c.answered && s.can_send() {
            let line = match c.bad {
                None => alloc::format!("ok {}\n", c.bytes),
                Some(at) => alloc::format!("bad {at}\n"),
            };
            let _ = s.send_slice(line.as_bytes());
            s.close();
            c.answered = true;
            moved = true;
        }
        moved
    }

    /// The source: sends the stream as fast as the window allows until the peer closes.
    fn serve_source(&mut self) -> bool {
        let (h, c) = &mut self.source;
        let s = self.sockets.get_mut::<tcp::Socket>(*h);
        if !s.is_open() {
            let _ = s.listen(SOURCE_PORT);
            *c = Stream::new();
            return false;
        }
        while s.can_recv() {
            if s.recv(|b| (b.len(), b.len())).unwrap_or(0) == 0 {
                break;
            }
        }
        if s.state() == tcp::State::CloseWait {
            s.close();
            return true;
        }
        let mut moved = false;
        while s.can_send() {
            let room = (s.send_capacity() - s.send_queue()).min(self.scratch.len());
            if room == 0 {
                break;
            }
            c.gen.fill(&mut self.scratch[..room]);
            let n = s.send_slice(&self.scratch[..room]).unwrap_or(0);
            c.bytes += n as u64;
            moved |= n > 0;
            if n < room {
                break;
            }
        }
        moved
    }

    /// HTTP: read the request head, answer with the page, close. Returns whether anything
    /// happened.
    fn serve_http(&mut self, page: &mut dyn FnMut(&mut String)) -> bool {
        let mut moved = false;
        for (h, st) in self.http.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                let _ = s.listen(80);
                *st = Http::Reading(0);
                continue;
            }
            if let Http::Reading(seen) = *st {
                let mut end = false;
                let mut total = seen;
                while s.can_recv() {
                    let n = s.recv_slice(&mut self.scratch[..1024]).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    moved = true;
                    // The head ends with an empty line; the request itself is not needed.
                    end |= self.scratch[..n].windows(4).any(|w| w == b"\r\n\r\n")
                        || self.scratch[..n].windows(2).any(|w| w == b"\n\n");
                    total += n;
                }
                *st = Http::Reading(total);
                if end || total > 8192 || (!s.may_recv() && total > 0) {
                    let mut body = String::new();
                    page(&mut body);
                    let head = alloc::format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.send_slice(head.as_bytes());
                    let _ = s.send_slice(body.as_bytes());
                    s.close();
                    self.pages += 1;
                    *st = Http::Answered;
                    moved = true;
                }
            }
        }
        moved
    }
}
