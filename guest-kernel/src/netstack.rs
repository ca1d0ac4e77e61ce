//! The domU's TCP/IP services on smoltcp: one Ethernet interface over any [`Nic`] (netfront in
//! the domU, a fake wire in the host tests), an address by DHCP, an HTTP/1.1 server on port 80,
//! a TCP echo service on port 7, and client connections ([`NetStack::open`]).
//!
//! Addressing: DHCP from QEMU's user-mode network (through dom0's bridge), asking for
//! [`requested_address`]`(domid)` = 10.0.2.(20 + domid) in the DISCOVER (option 50). QEMU's DHCP
//! server (libslirp `bootp.c`) hands out 10.0.2.15..=10.0.2.30 and honours a requested address
//! that is free, so each domU gets the fixed address `make run`'s port forwards name (dom0, which
//! asks first and for nothing, gets 10.0.2.15). If no lease comes within [`DHCP_PLAIN_AFTER_MS`]
//! (the address was taken, or the domid is past the pool) the request is dropped and any lease is
//! taken; DHCP itself cannot be avoided: the gateway and DNS come with it. A static address
//! ([`Addressing::Static`]) exists for tests and networks without a DHCP server.
//!
//! Bench services: a sink on port 9 (checks an [`Xorshift`] stream, answers `ok <n>`) and a
//! source on port 19 (sends that stream until the peer closes), for checked one-way throughput.
//!
//! The HTTP server answers `GET /` (and `HEAD /`) with a text page the caller renders (domain
//! id, uptime, the vif's counters, see [`StackStats`]), anything else with 404 or 400, always
//! `Connection: close`; the echo service returns every byte until the peer closes. Each service
//! has a few listening sockets, re-armed as connections end. Nothing here blocks: the caller
//! runs [`NetStack::poll`] when the NIC's event fires or [`NetStack::poll_delay`] passes.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    DhcpOption, EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr,
};

/// A network device as the stack sees it: whole Ethernet frames in and out (no FCS).
pub trait Nic {
    /// Whether a frame can be sent now (a free buffer and ring slot); may reap completions.
    fn can_transmit(&mut self) -> bool;
    /// Sends a frame; `false` if it could not (dropped).
    fn transmit(&mut self, frame: &[u8]) -> bool;
    /// The next received frame, if any.
    fn receive(&mut self) -> Option<Vec<u8>>;
}

/// The largest frame (1500-byte MTU plus the Ethernet header).
pub const MAX_FRAME: usize = 1514;
/// The HTTP port.
pub const HTTP_PORT: u16 = 80;
/// The echo port (RFC 862).
pub const ECHO_PORT: u16 = 7;
/// The sink port (discard's, RFC 863): checks what arrives against [`Xorshift`] from
/// [`STREAM_SEED`] and, once the peer closes, answers `ok <bytes>\n` or `bad <offset>\n`.
pub const SINK_PORT: u16 = 9;
/// The source port (chargen's, RFC 864): sends [`Xorshift`] from [`STREAM_SEED`] until the peer
/// closes.
pub const SOURCE_PORT: u16 = 19;
/// The seed of the sink's and source's stream.
pub const STREAM_SEED: u64 = 1;
/// Listening sockets per service.
const HTTP_SOCKETS: usize = 8;
const ECHO_SOCKETS: usize = 3;
const STREAM_SOCKETS: usize = 2;
/// A request head larger than this is refused (400).
const MAX_REQUEST: usize = 4096;
/// Buffers: small for HTTP, a full 64 KiB window for echo and client connections.
const HTTP_RX: usize = 4096;
const HTTP_TX: usize = 16384;
const STREAM_BUF: usize = 65535;
/// A connection silent this long is aborted (a peer that vanished).
const IDLE_TIMEOUT_MS: u64 = 30_000;
/// Without a lease after this long, DHCP stops asking for [`requested_address`].
pub const DHCP_PLAIN_AFTER_MS: u64 = 8_000;

/// The address a domU asks QEMU's DHCP server for: 10.0.2.(20 + domid), inside its pool
/// 10.0.2.15..=10.0.2.30 (`None` past it), as the Makefile's host port forwards expect.
pub fn requested_address(domid: u16) -> Option<Ipv4Addr> {
    (1..=10)
        .contains(&domid)
        .then(|| Ipv4Addr::new(10, 0, 2, 20 + domid as u8))
}

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// DHCP, asking for `requested` first.
    Dhcp {
        /// The address to ask for (option 50), if any.
        requested: Option<Ipv4Addr>,
    },
    /// A fixed address and optional default gateway.
    Static {
        /// Address and prefix.
        address: Ipv4Cidr,
        /// Default route.
        gateway: Option<Ipv4Addr>,
    },
}

/// What [`NetStack::poll`] reports once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// DHCP gave the interface this address (and gateway).
    Configured(Ipv4Cidr, Option<Ipv4Addr>),
    /// The lease was lost.
    Deconfigured,
}

/// The stack's own counters (for the HTTP page and the bench).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// The current address.
    pub address: Option<Ipv4Cidr>,
    /// The default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Whether the address came from DHCP.
    pub dhcp: bool,
    /// HTTP requests answered (any status).
    pub http_requests: u64,
    /// Echo connections accepted.
    pub echo_connections: u64,
    /// Bytes echoed.
    pub echo_bytes: u64,
    /// Bytes the sink received.
    pub sink_bytes: u64,
    /// Sink connections whose stream was wrong.
    pub sink_errors: u64,
    /// Bytes the source sent.
    pub source_bytes: u64,
    /// Frames handed to the NIC.
    pub frames_out: u64,
    /// Frames the NIC refused (no buffer).
    pub frames_refused: u64,
    /// Frames received.
    pub frames_in: u64,
}

/// A client connection opened with [`NetStack::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId(SocketHandle);

/// A client connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Handshake under way.
    Connecting,
    /// Data may flow both ways.
    Open,
    /// The peer closed its side (its data may still be waiting to be read).
    PeerClosed,
    /// Closed or reset.
    Closed,
}

/// The smoltcp device over a [`Nic`], counting frames.
struct Phy<'n, N: Nic> {
    nic: &'n mut N,
    stats: &'n mut StackStats,
}

struct RxTok(Vec<u8>);

struct TxTok<'n, N: Nic> {
    nic: &'n mut N,
    stats: &'n mut StackStats,
}

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<N: Nic> phy::TxToken for TxTok<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        if self.nic.transmit(&buf) {
            self.stats.frames_out += 1;
        } else {
            self.stats.frames_refused += 1;
        }
        r
    }
}

impl<N: Nic> phy::Device for Phy<'_, N> {
    type RxToken<'a>
        = RxTok
    where
        Self: 'a;
    type TxToken<'a>
        = TxTok<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(RxTok, TxTok<'_, N>)> {
        let frame = self.nic.receive()?;
        self.stats.frames_in += 1;
        Some((
            RxTok(frame),
            TxTok {
                nic: self.nic,
                stats: self.stats,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_, N>> {
        if !self.nic.can_transmit() {
            return None;
        }
        Some(TxTok {
            nic: self.nic,
            stats: self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // Our netfront refuses checksum offload: smoltcp computes and checks every checksum.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// The xorshift64 byte stream of `ring_drivers::blkif::xorshift_stream` (x ^= x << 13;
/// x ^= x >> 7; x ^= x << 17; each state as 8 little-endian bytes), produced or checked in
/// pieces of any length.
#[derive(Clone, Copy, Debug)]
pub struct Xorshift {
    x: u64,
    word: [u8; 8],
    at: usize,
}

impl Xorshift {
    /// The stream from `seed`.
    pub fn new(seed: u64) -> Xorshift {
        Xorshift {
            x: seed,
            word: [0; 8],
            at: 8,
        }
    }

    fn next_byte(&mut self) -> u8 {
        if self.at == 8 {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            self.word = self.x.to_le_bytes();
            self.at = 0;
        }
        self.at += 1;
        self.word[self.at - 1]
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_byte();
        }
    }

    /// Checks `data` against the next bytes: the index of the first difference, if any.
    pub fn check(&mut self, data: &[u8]) -> Option<usize> {
        data.iter().position(|&b| b != self.next_byte())
    }
}

/// One sink or source connection.
struct StreamConn {
    /// The stream expected (sink) or sent (source).
    gen: Xorshift,
    /// Bytes so far.
    bytes: u64,
    /// Sink: the first wrong byte's offset.
    bad: Option<u64>,
    /// Sink: the verdict line, queued once the peer closed.
    answered: bool,
    active: bool,
}

impl StreamConn {
    fn new() -> StreamConn {
        StreamConn {
            gen: Xorshift::new(STREAM_SEED),
            bytes: 0,
            bad: None,
            answered: false,
            active: false,
        }
    }
}

/// One HTTP connection's progress.
#[derive(Default)]
struct HttpConn {
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    answered: bool,
    last_ms: u64,
}

/// The interface, its sockets and the services on them.
pub struct NetStack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    dhcp_plain: bool,
    started_ms: u64,
    http: Vec<(SocketHandle, HttpConn)>,
    echo: Vec<(SocketHandle, u64)>,
    sink: Vec<(SocketHandle, StreamConn)>,
    source: Vec<(SocketHandle, StreamConn)>,
    next_port: u16,
    stats: StackStats,
}

fn now(ms: u64) -> Instant {
    Instant::from_millis(ms as i64)
}

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_timeout(Some(Duration::from_millis(IDLE_TIMEOUT_MS)));
    s.set_nagle_enabled(false);
    // As dom0's echo: every segment acknowledged at once (smoltcp delays ACKs 10 ms by
    // default), so a one-way stream is not paced by the ACK timer.
    s.set_ack_delay(None);
    s
}

impl NetStack {
    /// An interface with hardware address `mac` on `nic`, addressed as `addressing` says,
    /// with the HTTP and echo services listening. `seed` varies TCP's initial numbers.
    pub fn new<N: Nic>(
        nic: &mut N,
        mac: [u8; 6],
        addressing: Addressing,
        now_ms: u64,
        seed: u64,
    ) -> NetStack {
        let mut stats = StackStats::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let iface = Interface::new(
            config,
            &mut Phy {
                nic,
                stats: &mut stats,
            },
            now(now_ms),
        );
        let mut s = NetStack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            dhcp_plain: false,
            started_ms: now_ms,
            http: Vec::new(),
            echo: Vec::new(),
            sink: Vec::new(),
            source: Vec::new(),
            next_port: 49152,
            stats,
        };
        match addressing {
            Addressing::Dhcp { requested } => {
                let mut d = dhcpv4::Socket::new();
                if let Some(ip) = requested {
                    // The socket set is 'static: the option lives as long as the stack.
                    let bytes: &'static [u8; 4] =
                        alloc::boxed::Box::leak(alloc::boxed::Box::new(ip.octets()));
                    let opt: &'static [DhcpOption<'static>] =
                        alloc::boxed::Box::leak(alloc::boxed::Box::new([DhcpOption {
                            kind: 50,
                            data: bytes,
                        }]));
                    d.set_outgoing_options(opt);
                } else {
                    s.dhcp_plain = true;
                }
                s.dhcp = Some(s.sockets.add(d));
            }
            Addressing::Static { address, gateway } => s.set_address(address, gateway, false),
        }
        for _ in 0..HTTP_SOCKETS {
            let h = s.sockets.add(tcp_socket(HTTP_RX, HTTP_TX));
            s.http.push((h, HttpConn::default()));
        }
        for _ in 0..ECHO_SOCKETS {
            let h = s.sockets.add(tcp_socket(STREAM_BUF, STREAM_BUF));
            s.echo.push((h, 0));
        }
        for _ in 0..STREAM_SOCKETS {
            let h = s.sockets.add(tcp_socket(STREAM_BUF, 1024));
            s.sink.push((h, StreamConn::new()));
            let h = s.sockets.add(tcp_socket(1024, STREAM_BUF));
            s.source.push((h, StreamConn::new()));
        }
        s
    }

    fn set_address(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Addr>, dhcp: bool) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address: the table has room for it.
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
        self.stats.address = Some(address);
        self.stats.gateway = gateway;
        self.stats.dhcp = dhcp;
    }

    fn clear_address(&mut self) {
        self.iface.update_ip_addrs(|addrs| addrs.clear());
        self.iface.routes_mut().remove_default_ipv4_route();
        self.stats.address = None;
        self.stats.gateway = None;
    }

    /// The counters.
    pub fn stats(&self) -> StackStats {
        self.stats
    }

    /// Moves frames and serves every socket; `page` renders the HTTP page's body (given the
    /// stack's counters) when a `GET /` is complete. Returns a DHCP change, if any.
    pub fn poll<N: Nic>(
        &mut self,
        nic: &mut N,
        now_ms: u64,
        page: &mut dyn FnMut(&StackStats) -> String,
    ) -> Option<NetEvent> {
        let mut event = None;
        // A few rounds: the services' answers go out in the same call.
        for _ in 0..4 {
            let r = self.iface.poll(
                now(now_ms),
                &mut Phy {
                    nic,
                    stats: &mut self.stats,
                },
                &mut self.sockets,
            );
            if let Some(e) = self.poll_dhcp(now_ms) {
                event = Some(e);
            }
            let served = self.serve_http(now_ms, page)
                | self.serve_echo()
                | self.serve_sink()
                | self.serve_source();
            if r == PollResult::None && !served {
                break;
            }
        }
        event
    }

    fn poll_dhcp(&mut self, now_ms: u64) -> Option<NetEvent> {
        let h = self.dhcp?;
        if !self.dhcp_plain
            && self.stats.address.is_none()
            && now_ms.saturating_sub(self.started_ms) > DHCP_PLAIN_AFTER_MS
        {
            // The requested address is not to be had: take any.
            let d = self.sockets.get_mut::<dhcpv4::Socket>(h);
            d.set_outgoing_options(&[]);
            d.reset();
            self.dhcp_plain = true;
        }
        let ev = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll()? {
            dhcpv4::Event::Configured(c) => Some((c.address, c.router)),
            dhcpv4::Event::Deconfigured => None,
        };
        Some(match ev {
            Some((address, router)) => {
                self.set_address(address, router, true);
                NetEvent::Configured(address, router)
            }
            None => {
                self.clear_address();
                NetEvent::Deconfigured
            }
        })
    }

    fn serve_http(&mut self, now_ms: u64, page: &mut dyn FnMut(&StackStats) -> String) -> bool {
        let mut progress = false;
        for i in 0..self.http.len() {
            let (h, _) = self.http[i];
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            let conn = &mut self.http[i].1;
            if !sock.is_open() {
                *conn = HttpConn::default();
                let _ = sock.listen(HTTP_PORT);
                continue;
            }
            if !sock.is_active() {
                continue; // listening
            }
            if conn.last_ms == 0 {
                conn.last_ms = now_ms.max(1);
            }
            if sock.can_recv() {
                let room = MAX_REQUEST + 1 - conn.request.len().min(MAX_REQUEST + 1);
                let _ = sock.recv(|buf| {
                    let n = buf.len();
                    let take = n.min(room);
                    conn.request.extend_from_slice(&buf[..take]);
                    (n, ()) // anything past the limit or after the head is discarded
                });
                progress = true;
                conn.last_ms = now_ms.max(1);
            }
            if !conn.answered {
                let head_done = conn.request.windows(4).any(|w| w == b"\r\n\r\n");
                // The peer closed without finishing its head (CLOSE-WAIT): answer what we have.
                let peer_done = sock.state() == tcp::State::CloseWait;
                if head_done || conn.request.len() > MAX_REQUEST || peer_done {
                    self.stats.http_requests += 1;
                    conn.response = respond(&conn.request, &mut || page(&self.stats));
                    conn.answered = true;
                    progress = true;
                }
            }
            if conn.answered && conn.sent < conn.response.len() && sock.can_send() {
                if let Ok(n) = sock.send_slice(&conn.response[conn.sent..]) {
                    conn.sent += n;
                    progress |= n > 0;
                }
            }
            if conn.answered && conn.sent == conn.response.len() && sock.may_send() {
                sock.close(); // FIN after the response; re-listened once it is closed
                progress = true;
            }
            if now_ms.saturating_sub(conn.last_ms) > IDLE_TIMEOUT_MS {
                sock.abort();
            }
        }
        progress
    }

    fn serve_echo(&mut self) -> bool {
        let mut progress = false;
        let mut buf = [0u8; 8192];
        for (h, seen) in self.echo.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(*h);
            if !sock.is_open() {
                let _ = sock.listen(ECHO_PORT);
                *seen = 0;
                continue;
            }
            if !sock.is_active() {
                continue;
            }
            if *seen == 0 {
                *seen = 1;
                self.stats.echo_connections += 1;
            }
            while sock.can_recv() && sock.can_send() {
                let room = (sock.send_capacity() - sock.send_queue()).min(buf.len());
                let Ok(n) = sock.recv_slice(&mut buf[..room]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                // Room was checked: all of it is queued.
                let _ = sock.send_slice(&buf[..n]);
                self.stats.echo_bytes += n as u64;
                progress = true;
            }
            if sock.state() == tcp::State::CloseWait && sock.send_queue() == 0 {
                sock.close();
                progress = true;
            }
        }
        progress
    }

    fn serve_sink(&mut self) -> bool {
        let mut progress = false;
        for (h, c) in self.sink.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(*h);
            if !sock.is_open() {
                let _ = sock.listen(SINK_PORT);
                *c = StreamConn::new();
                continue;
            }
            if !sock.is_active() {
                continue;
            }
            c.active = true;
            while sock.can_recv() {
                let got = sock.recv(|buf| {
                    if c.bad.is_none() {
                        if let Some(i) = c.gen.check(buf) {
                            c.bad = Some(c.bytes + i as u64);
                        }
                    }
                    c.bytes += buf.len() as u64;
                    (buf.len(), buf.len())
                });
                self.stats.sink_bytes += got.unwrap_or(0) as u64;
                progress = true;
                if got.unwrap_or(0) == 0 {
                    break;
                }
            }
            // The peer's FIN (CLOSE-WAIT; not SYN-RECEIVED, where may_recv is false too).
            if sock.state() == tcp::State::CloseWait && !c.answered && sock.can_send() {
                let line = match c.bad {
                    None => format!("ok {}\n", c.bytes),
                    Some(at) => {
                        self.stats.sink_errors += 1;
                        format!("bad {at}\n")
                    }
                };
                let _ = sock.send_slice(line.as_bytes());
                sock.close();
                c.answered = true;
                progress = true;
            }
        }
        progress
    }

    fn serve_source(&mut self) -> bool {
        let mut progress = false;
        let mut buf = [0u8; 8192];
        for (h, c) in self.source.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(*h);
            if !sock.is_open() {
                let _ = sock.listen(SOURCE_PORT);
                *c = StreamConn::new();
                continue;
            }
            if !sock.is_active() {
                continue;
            }
            // Anything the peer sends is discarded; its FIN ends the stream.
            while sock.can_recv() {
                if sock.recv(|b| (b.len(), b.len())).unwrap_or(0) == 0 {
                    break;
                }
            }
            if sock.state() == tcp::State::CloseWait {
                sock.close();
                continue;
            }
            while sock.can_send() {
                let room = (sock.send_capacity() - sock.send_queue()).min(buf.len());
                if room == 0 {
                    break;
                }
                // Only what fits is generated, so the stream never skips.
                c.gen.fill(&mut buf[..room]);
                let n = sock.send_slice(&buf[..room]).unwrap_or(0);
                c.bytes += n as u64;
                self.stats.source_bytes += n as u64;
                progress |= n > 0;
                if n < room {
                    break;
                }
            }
        }
        progress
    }

    /// How long the caller may sleep before the next [`NetStack::poll`] (ms), if it wants to.
    pub fn poll_delay(&mut self, now_ms: u64) -> Option<u64> {
        let d = self.iface.poll_delay(now(now_ms), &self.sockets)?;
        Some(d.total_millis())
    }

    /// Opens a client connection to `remote:port` (from an ephemeral local port).
    pub fn open(&mut self, remote: Ipv4Addr, port: u16) -> Option<ConnId> {
        let mut s = tcp_socket(STREAM_BUF, STREAM_BUF);
        self.next_port = if self.next_port >= 65000 {
            49152
        } else {
            self.next_port + 1
        };
        let remote = IpEndpoint::new(IpAddress::Ipv4(remote), port);
        s.connect(self.iface.context(), remote, self.next_port)
            .ok()?;
        Some(ConnId(self.sockets.add(s)))
    }

    /// Queues what fits of `data` on `c`; returns how many bytes.
    pub fn send(&mut self, c: ConnId, data: &[u8]) -> usize {
        let s = self.sockets.get_mut::<tcp::Socket>(c.0);
        if !s.can_send() {
            return 0;
        }
        s.send_slice(data).unwrap_or(0)
    }

    /// Appends what arrived on `c` to `out`; returns how many bytes.
    pub fn recv(&mut self, c: ConnId, out: &mut Vec<u8>) -> usize {
        let s = self.sockets.get_mut::<tcp::Socket>(c.0);
        let mut n = 0;
        while s.can_recv() {
            let got = s
                .recv(|buf| {
                    out.extend_from_slice(buf);
                    (buf.len(), buf.len())
                })
                .unwrap_or(0);
            if got == 0 {
                break;
            }
            n += got;
        }
        n
    }

    /// Bytes queued on `c` and not yet acknowledged.
    pub fn unsent(&self, c: ConnId) -> usize {
        self.sockets.get::<tcp::Socket>(c.0).send_queue()
    }

    /// `c`'s state.
    pub fn state(&self, c: ConnId) -> ConnState {
        let s = self.sockets.get::<tcp::Socket>(c.0);
        match s.state() {
            tcp::State::SynSent | tcp::State::SynReceived => ConnState::Connecting,
            tcp::State::Closed | tcp::State::TimeWait => ConnState::Closed,
            _ if !s.may_recv() && !s.can_recv() => {
                if s.may_send() {
                    ConnState::PeerClosed
                } else {
                    ConnState::Closed
                }
            }
            _ => ConnState::Open,
        }
    }

    /// Sends FIN on `c` once its queued data is out.
    pub fn close(&mut self, c: ConnId) {
        self.sockets.get_mut::<tcp::Socket>(c.0).close();
    }

    /// Forgets `c` (resetting it if still open).
    pub fn release(&mut self, c: ConnId) {
        self.sockets.get_mut::<tcp::Socket>(c.0).abort();
        self.sockets.remove(c.0);
    }
}

/// The response to a request head (`request` holds at most [`MAX_REQUEST`] + 1 bytes).
fn respond(request: &[u8], page: &mut dyn FnMut() -> String) -> Vec<u8> {
    let line_end = request.windows(2).position(|w| w == b"\r\n");
    let complete = request.windows(4).any(|w| w == b"\r\n\r\n");
    let line = line_end.map(|e| &request[..e]);
    let mut parts = line.map(|l| l.split(|&b| b == b' ')).into_iter().flatten();
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let well_formed = complete
        && request.len() <= MAX_REQUEST
        && matches!(version, Some(b"HTTP/1.1" | b"HTTP/1.0"))
        && path.is_some_and(|p| p.starts_with(b"/"));
    let (status, body, head_only) = if !well_formed {
        ("400 Bad Request", String::from("bad request\n"), false)
    } else {
        match (method, path) {
            (Some(b"GET"), Some(b"/")) => ("200 OK", page(), false),
            (Some(b"HEAD"), Some(b"/")) => ("200 OK", page(), true),
            (Some(b"GET" | b"HEAD"), _) => ("404 Not Found", String::from("not found\n"), false),
            _ => (
                "405 Method Not Allowed",
                String::from("only GET and HEAD\n"),
                false,
            ),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: xen-rs-domU\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

    /// One end of a point-to-point wire: frames sent appear at the other end.
    struct WireEnd {
        out: Queue,
        inp: Queue,
        /// Drop every n-th frame sent (0: none), to exercise retransmission.
        drop_every: usize,
        sent: usize,
    }

    fn wire() -> (WireEnd, WireEnd) {
        let (a, b): (Queue, Queue) = Default::default();
        (
            WireEnd {
                out: a.clone(),
                inp: b.clone(),
                drop_every: 0,
                sent: 0,
            },
            WireEnd {
                out: b,
                inp: a,
                drop_every: 0,
                sent: 0,
            },
        )
    }

    impl Nic for WireEnd {
        fn can_transmit(&mut self) -> bool {
            self.out.borrow().len() < 64
        }
        fn transmit(&mut self, frame: &[u8]) -> bool {
            assert!(frame.len() <= MAX_FRAME);
            self.sent += 1;
            if self.drop_every != 0 && self.sent.is_multiple_of(self.drop_every) {
                return true;
            }
            self.out.borrow_mut().push_back(frame.to_vec());
            true
        }
        fn receive(&mut self) -> Option<Vec<u8>> {
            self.inp.borrow_mut().pop_front()
        }
    }

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 16);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 17);

    fn stat(ip: Ipv4Addr) -> Addressing {
        Addressing::Static {
            address: Ipv4Cidr::new(ip, 24),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        }
    }

    struct Pair {
        server: NetStack,
        client: NetStack,
        s_nic: WireEnd,
        c_nic: WireEnd,
        ms: u64,
    }

    fn pair(drop_every: usize) -> Pair {
        let (mut s_nic, mut c_nic) = wire();
        c_nic.drop_every = drop_every;
        let server = NetStack::new(&mut s_nic, [0, 0x16, 0x3e, 0, 0, 1], stat(SERVER), 1, 1);
        let client = NetStack::new(&mut c_nic, [0, 0x16, 0x3e, 0, 0, 2], stat(CLIENT), 1, 2);
        Pair {
            server,
            client,
            s_nic,
            c_nic,
            ms: 1,
        }
    }

    impl Pair {
        fn step(&mut self) {
            self.ms += 1;
            let mut page =
                |s: &StackStats| format!("domain 1\nhttp requests {}\n", s.http_requests);
            self.server.poll(&mut self.s_nic, self.ms, &mut page);
            self.client
                .poll(&mut self.c_nic, self.ms, &mut |_| String::new());
        }

        /// Opens, sends `data`, closes our side after it, collects until the server closes.
        fn exchange(&mut self, port: u16, data: &[u8]) -> Vec<u8> {
            let c = self.client.open(SERVER, port).unwrap();
            let (mut sent, mut got, mut closed) = (0, Vec::new(), false);
            for _ in 0..200_000 {
                self.step();
                if self.client.state(c) == ConnState::Connecting {
                    continue;
                }
                sent += self.client.send(c, &data[sent..]);
                self.client.recv(c, &mut got);
                if sent == data.len() && !closed {
                    self.client.close(c);
                    closed = true;
                }
                if matches!(
                    self.client.state(c),
                    ConnState::Closed | ConnState::PeerClosed
                ) && sent == data.len()
                {
                    self.client.recv(c, &mut got);
                    // Let the last (delayed) ACK out before forgetting the socket.
                    for _ in 0..50 {
                        self.step();
                    }
                    self.client.release(c);
                    return got;
                }
            }
            let states: Vec<_> = self
                .server
                .http
                .iter()
                .map(|(h, _)| self.server.sockets.get::<tcp::Socket>(*h).state())
                .collect();
            panic!(
                "exchange did not finish: sent {sent}, got {}, client {:?}, server {states:?}",
                got.len(),
                self.client.state(c)
            );
        }
    }

    fn split(resp: &[u8]) -> (&str, &[u8]) {
        let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&resp[..head_end]).unwrap();
        (head, &resp[head_end + 4..])
    }

    #[test]
    fn http_page_is_served() {
        let mut p = pair(0);
        let resp = p.exchange(80, b"GET / HTTP/1.1\r\nHost: d1\r\nUser-Agent: t\r\n\r\n");
        let (head, body) = split(&resp);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Connection: close"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert_eq!(body, b"domain 1\nhttp requests 1\n");
        // Again, more times than there are sockets: they are re-armed.
        for i in 2..20 {
            let resp = p.exchange(80, b"GET / HTTP/1.0\r\n\r\n");
            assert!(split(&resp)
                .1
                .ends_with(format!("requests {i}\n").as_bytes()));
        }
    }

    #[test]
    fn http_errors() {
        let mut p = pair(0);
        let cases: [(&[u8], &str); 5] = [
            (b"GET /nothing HTTP/1.1\r\n\r\n", "404"),
            (b"POST / HTTP/1.1\r\n\r\n", "405"),
            (b"GET / SPDY/9\r\n\r\n", "400"),
            (b"\x00\x01garbage without an end", "400"),
            (b"HEAD / HTTP/1.1\r\n\r\n", "200"),
        ];
        for (req, status) in cases {
            let resp = p.exchange(80, req);
            let (head, b) = split(&resp);
            assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
            if status == "200" {
                assert!(b.is_empty(), "HEAD has no body");
            }
        }
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(20_000, b'a');
        huge.extend_from_slice(b"\r\n\r\n");
        let resp = p.exchange(80, &huge);
        assert!(split(&resp).0.starts_with("HTTP/1.1 400"));
        assert_eq!(p.server.stats().http_requests, 6);
    }

    #[test]
    fn echo_returns_a_megabyte_intact_even_with_losses() {
        let mut p = pair(37);
        let mut data = vec![0u8; 1 << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let got = p.exchange(7, &data);
        assert!(
            got == data,
            "echo changed the stream ({} bytes back)",
            got.len()
        );
        assert_eq!(p.server.stats().echo_bytes, 1 << 20);
        assert_eq!(p.server.stats().echo_connections, 1);
    }

    #[test]
    fn sink_checks_the_stream_and_source_sends_it() {
        let mut p = pair(0);
        let mut x = Xorshift::new(STREAM_SEED);
        let mut good = vec![0u8; 300_001];
        x.fill(&mut good);
        assert_eq!(
            &good[..16],
            &ring_drivers::blkif::xorshift_stream(STREAM_SEED, 16)[..],
            "the blk-selftest stream"
        );
        assert_eq!(p.exchange(9, &good), b"ok 300001\n");
        let mut bad = good.clone();
        bad[123_456] ^= 1;
        assert_eq!(p.exchange(9, &bad), b"bad 123456\n");
        assert_eq!(p.server.stats().sink_errors, 1);
        // The source: read 200 000 bytes, then close.
        let c = p.client.open(SERVER, 19).unwrap();
        let mut got = Vec::new();
        for _ in 0..100_000 {
            if got.len() >= 200_000 {
                break;
            }
            p.step();
            p.client.recv(c, &mut got);
        }
        assert!(got.len() >= 200_000, "the source sent {} bytes", got.len());
        p.client.close(c);
        for _ in 0..100 {
            p.step();
        }
        p.client.recv(c, &mut got);
        let mut want = vec![0u8; got.len()];
        Xorshift::new(STREAM_SEED).fill(&mut want);
        assert!(got == want, "the source's stream");
        assert_eq!(p.client.state(c), ConnState::Closed);
        p.client.release(c);
    }

    #[test]
    fn requested_addresses_follow_the_domid_inside_slirps_pool() {
        assert_eq!(requested_address(1), Some(Ipv4Addr::new(10, 0, 2, 21)));
        assert_eq!(requested_address(10), Some(Ipv4Addr::new(10, 0, 2, 30)));
        assert_eq!(requested_address(0), None, "dom0 asks for nothing");
        assert_eq!(requested_address(11), None);
    }

    // --- The whole domU path: smoltcp -> NetFront -> rings -> NetBack -> a peer stack. ---

    mod through_netif {
        use super::*;
        use ring_drivers::netif::{
            GrantIo, GrantIoError, GrantPages, GrantSegment, NetBack, NetBackendInfo, NetFront,
            NetFrontendTransport, Notify, RxMeta,
        };
        use ring_drivers::shared_page::AtomicPage;
        use std::collections::HashMap;
        use std::sync::Arc;

        type Frames = Rc<RefCell<HashMap<u32, Box<[u8; 4096]>>>>;

        /// The front end's granted pages, by reference.
        struct Pages {
            table: Frames,
            grefs: Vec<u32>,
        }

        impl GrantPages for Pages {
            fn count(&self) -> usize {
                self.grefs.len()
            }
            fn gref(&self, page: usize) -> u32 {
                self.grefs[page]
            }
            fn read(&self, page: usize, offset: usize, buf: &mut [u8]) {
                let t = self.table.borrow();
                buf.copy_from_slice(&t[&self.grefs[page]][offset..offset + buf.len()]);
            }
            fn write(&mut self, page: usize, offset: usize, data: &[u8]) {
                let mut t = self.table.borrow_mut();
                t.get_mut(&self.grefs[page]).unwrap()[offset..offset + data.len()]
                    .copy_from_slice(data);
            }
        }

        /// The back end's grant copies against the same table.
        struct Copier(Frames);

        impl GrantIo for Copier {
            fn copy_from_grants(
                &mut self,
                _: u16,
                segs: &[GrantSegment],
                buf: &mut [u8],
            ) -> Result<(), GrantIoError> {
                let t = self.0.borrow();
                let mut at = 0;
                for s in segs {
                    let (o, l) = (usize::from(s.offset), usize::from(s.len));
                    buf[at..at + l].copy_from_slice(&t[&s.gref][o..o + l]);
                    at += l;
                }
                Ok(())
            }
            fn copy_to_grants(
                &mut self,
                _: u16,
                segs: &[GrantSegment],
                data: &[u8],
            ) -> Result<(), GrantIoError> {
                let mut t = self.0.borrow_mut();
                let mut at = 0;
                for s in segs {
                    let (o, l) = (usize::from(s.offset), usize::from(s.len));
                    t.get_mut(&s.gref).unwrap()[o..o + l].copy_from_slice(&data[at..at + l]);
                    at += l;
                }
                Ok(())
            }
        }

        struct Count(Rc<RefCell<u64>>);

        impl Notify for Count {
            fn notify(&mut self) {
                *self.0.borrow_mut() += 1;
            }
        }

        type Front = NetFront<Arc<AtomicPage>, Pages, Count>;
        type Back = NetBack<Arc<AtomicPage>, Copier, Count>;

        /// The domU's side: netfront as the stack's NIC.
        struct FrontNic(Front);

        impl Nic for FrontNic {
            fn can_transmit(&mut self) -> bool {
                if !self.0.can_transmit(MAX_FRAME) {
                    self.0.poll().unwrap();
                }
                self.0.can_transmit(MAX_FRAME)
            }
            fn transmit(&mut self, frame: &[u8]) -> bool {
                self.0.transmit(frame).is_ok()
            }
            fn receive(&mut self) -> Option<Vec<u8>> {
                self.0.receive().unwrap()
            }
        }

        fn grant(table: &Frames, first: u32, n: u32) -> Pages {
            let mut t = table.borrow_mut();
            for g in first..first + n {
                t.insert(g, Box::new([0; 4096]));
            }
            Pages {
                table: table.clone(),
                grefs: (first..first + n).collect(),
            }
        }

        #[test]
        fn the_domu_serves_http_and_echo_through_netfront_and_netback() {
            let table: Frames = Default::default();
            let (tx_ring, rx_ring) = (Arc::new(AtomicPage::new()), Arc::new(AtomicPage::new()));
            let to_back = Rc::new(RefCell::new(0));
            let to_front = Rc::new(RefCell::new(0));
            let mut front = Front::new(
                tx_ring.clone(),
                rx_ring.clone(),
                grant(&table, 100, 16),
                grant(&table, 200, 32),
                Count(to_back.clone()),
            );
            front.connect(NetBackendInfo::default());
            let t = NetFrontendTransport {
                tx_ring_ref: 1,
                rx_ring_ref: 2,
                event_channel: 3,
                feature_sg: true,
                feature_rx_notify: true,
                no_csum_offload: true,
            };
            let mut back = Back::new(
                tx_ring,
                rx_ring,
                1,
                &t,
                Copier(table.clone()),
                Count(to_front.clone()),
            )
            .unwrap();
            let mut domu_nic = FrontNic(front);
            // dom0's side of the vif: a peer stack on a wire whose other end is the back end.
            let (mut peer_nic, mut vif_end) = wire();
            let mut domu =
                NetStack::new(&mut domu_nic, [0, 0x16, 0x3e, 0, 0, 1], stat(SERVER), 1, 1);
            let mut peer =
                NetStack::new(&mut peer_nic, [0, 0x16, 0x3e, 0, 0, 9], stat(CLIENT), 1, 2);
            let mut data = vec![0u8; 300_000];
            for (i, b) in data.iter_mut().enumerate() {
                *b = (i * 7 + i / 251) as u8;
            }
            let mut ms = 1;
            let mut step = |domu: &mut NetStack, peer: &mut NetStack, domu_nic: &mut FrontNic| {
                ms += 1;
                domu.poll(domu_nic, ms, &mut |s| {
                    format!("domU page, {} requests\n", s.http_requests)
                });
                // The back end: what the domU sent goes to the peer; what the peer sent, to the domU.
                back.on_event(|f, _| vif_end.transmit(f).then_some(()).unwrap())
                    .unwrap();
                while let Some(f) = vif_end.receive() {
                    back.send(&f, RxMeta::default()).unwrap();
                }
                peer.poll(&mut peer_nic, ms, &mut |_| String::new());
            };
            for (port, payload, expect) in [
                (80u16, b"GET / HTTP/1.1\r\n\r\n".to_vec(), None),
                (7, data.clone(), Some(data.clone())),
            ] {
                let c = peer.open(SERVER, port).unwrap();
                let (mut sent, mut got, mut closed) = (0, Vec::new(), false);
                for _ in 0..100_000 {
                    step(&mut domu, &mut peer, &mut domu_nic);
                    if peer.state(c) == ConnState::Connecting {
                        continue;
                    }
                    sent += peer.send(c, &payload[sent..]);
                    peer.recv(c, &mut got);
                    if sent == payload.len() && !closed {
                        peer.close(c);
                        closed = true;
                    }
                    if sent == payload.len()
                        && matches!(peer.state(c), ConnState::Closed | ConnState::PeerClosed)
                    {
                        break;
                    }
                }
                peer.recv(c, &mut got);
                match expect {
                    Some(e) => assert!(
                        got == e,
                        "echo through the vif: {} of {} bytes",
                        got.len(),
                        e.len()
                    ),
                    None => {
                        let text = String::from_utf8(got).unwrap();
                        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
                        assert!(text.ends_with("domU page, 1 requests\n"), "{text}");
                    }
                }
                for _ in 0..50 {
                    step(&mut domu, &mut peer, &mut domu_nic);
                }
                peer.release(c);
            }
            let s = back.stats();
            assert_eq!(s.tx_errors + s.rx_dropped_no_buffer + s.rx_grant_errors, 0);
            assert!(s.tx_packets > 200 && s.rx_packets > 200, "{s:?}");
            let f = domu_nic.0.stats();
            assert_eq!(f.rx_errors + f.tx_errors + f.bad_responses, 0);
            assert_eq!(f.tx_packets, s.tx_packets);
            assert_eq!(f.rx_packets, s.rx_packets);
        }
    }
}
