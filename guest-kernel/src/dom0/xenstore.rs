//! dom0's xenstore: the xenstore server (`guest_kernel::xenstored`) with every domU's store ring
//! (connection = domid) and dom0's own connection (0), whose requests go straight to the
//! server. [`Xenstore`] is shared by every service (they all read and write nodes, through
//! [`Store`]); the xenstored pump (`xenstored.rs`) is the service that moves the domUs' rings.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;

use guest_kernel::xenstored::Xenstored;
use hypercall_abi::errno::Errno;
use hypercall_abi::io::xs_wire::{XsdSockmsg, XENSTORE_ERROR_RINGIDX, XS_WATCH_EVENT};
use ring_drivers::xenbus::xs_ring::{self, MessageAssembler, OutQueue};
use ring_drivers::xenbus::{parse_reply, parse_watch_event, Perm, Reply, Request};
use zerocopy::FromBytes;

use crate::kernel::events;
use crate::kernel::ring_page::MappedPage;

/// Store-ring messages served per call (the loop polls every ring again soon).
const STORE_BUDGET: usize = 64;

/// Reply bytes a domU may leave unread before dom0 stops reading its requests.
const STORE_BACKLOG: usize = 64 * 1024;

/// xenstore as dom0's services reach it (its own xenstored, connection 0).
pub trait Store {
    /// A node's value.
    fn read(&mut self, path: &str) -> Option<String>;
    /// Writes a node (creating it and its parents).
    fn write(&mut self, path: &str, value: &str);
    /// Replaces a node's permissions.
    fn set_perms(&mut self, path: &str, perms: &[Perm]);
    /// Watches `path` with `token`.
    fn watch(&mut self, path: &str, token: &str);
    /// Removes a watch.
    fn unwatch(&mut self, path: &str, token: &str);
    /// Removes a node and its children.
    fn rm(&mut self, path: &str);
}

/// One domU's store ring as dom0 serves it.
struct Conn {
    page: MappedPage,
    port: u32,
    asm: MessageAssembler,
    out: OutQueue,
    broken: bool,
}

/// The server, the domUs' store rings, and the watch events for dom0's own connection.
pub struct Xenstore {
    xs: Xenstored,
    conns: BTreeMap<u16, Conn>,
    /// Watch events for dom0's own connection: (path, token).
    watch_events: VecDeque<(String, String)>,
    /// [`Xenstore::serve_waiting`]'s list of the connections to serve (kept: no allocation per
    /// pass).
    due: alloc::vec::Vec<u16>,
}

impl Store for Xenstore {
    fn read(&mut self, path: &str) -> Option<String> {
        match self.xs0(0, &Request::Read(path)) {
            Reply::Value(v) => String::from_utf8(v).ok(),
            _ => None,
        }
    }

    fn write(&mut self, path: &str, value: &str) {
        if let Reply::Error(e) = self.xs0(0, &Request::Write(path, value.as_bytes())) {
            println!("toolstack: write {path}: {}", e.name());
        }
    }

    fn set_perms(&mut self, path: &str, perms: &[Perm]) {
        if let Reply::Error(e) = self.xs0(0, &Request::SetPerms(path, perms)) {
            println!("toolstack: set perms {path}: {}", e.name());
        }
    }

    fn watch(&mut self, path: &str, token: &str) {
        if let Reply::Error(e) = self.xs0(0, &Request::Watch { path, token }) {
            println!("toolstack: watch {path}: {}", e.name());
        }
    }

    fn unwatch(&mut self, path: &str, token: &str) {
        self.xs0(0, &Request::Unwatch { path, token });
        self.forget_watch_events(token);
    }

    fn rm(&mut self, path: &str) {
        self.xs0(0, &Request::Rm(path));
    }
}

impl Xenstore {
    /// An empty store, no domU connected.
    pub fn new() -> Xenstore {
        Xenstore {
            xs: Xenstored::new(),
            conns: BTreeMap::new(),
            watch_events: VecDeque::new(),
            due: alloc::vec::Vec::new(),
        }
    }

    /// Serves `id`'s store ring `page` (event channel `port`) from now on; the domain itself is
    /// introduced to the server by [`Xenstore::introduce`].
    pub fn connect(&mut self, id: u16, page: MappedPage, port: u32) {
        self.conns.insert(
            id,
            Conn {
                page,
                port,
                asm: MessageAssembler::new(),
                out: OutQueue::new(),
                broken: false,
            },
        );
    }

    /// Stops serving `id`'s ring; gives back its page and port.
    pub fn disconnect(&mut self, id: u16) -> Option<(MappedPage, u32)> {
        self.conns.remove(&id).map(|c| (c.page, c.port))
    }

    /// Introduces `id` to the server (`XS_INTRODUCE`: its connection may now speak); the
    /// `@introduceDomain` watch events go out.
    pub fn introduce(&mut self, id: u16, store_mfn: u64, port: u32) -> Result<(), Errno> {
        let out = self.xs.introduce(id, store_mfn, port)?;
        for (conn, bytes) in out.messages {
            self.queue(conn, &bytes);
        }
        Ok(())
    }

    /// Releases `id` from the server (`XS_RELEASE`); the `@releaseDomain` watch events go out.
    pub fn release(&mut self, id: u16) {
        if let Ok(out) = self.xs.release(id) {
            for (conn, bytes) in out.messages {
                self.queue(conn, &bytes);
            }
        }
    }

    /// The next watch event for dom0's own connection: (path, token).
    pub fn next_watch_event(&mut self) -> Option<(String, String)> {
        self.watch_events.pop_front()
    }

    /// Drops the queued watch events with `token`.
    pub fn forget_watch_events(&mut self, token: &str) {
        self.watch_events.retain(|(_, t)| t != token);
    }

    /// One request from dom0 to its own xenstored; watch events for dom0 are queued.
    pub fn xs0(&mut self, tx: u32, req: &Request<'_>) -> Reply {
        let Ok(payload) = req.payload() else {
            return Reply::Error(Errno::EINVAL);
        };
        let hdr = XsdSockmsg {
            r#type: req.msg_type(),
            req_id: 0,
            tx_id: tx,
            len: payload.len() as u32,
        };
        let out = self.xs.handle(0, &hdr, &payload);
        let mut reply = Reply::Error(Errno::EIO);
        for (conn, bytes) in out.messages {
            if conn != 0 {
                self.queue(conn, &bytes);
                continue;
            }
            let Ok((h, body)) = XsdSockmsg::read_from_prefix(&bytes) else {
                continue;
            };
            if h.r#type == XS_WATCH_EVENT {
                if let Ok(w) = parse_watch_event(body) {
                    self.watch_events.push_back((w.path, w.token));
                }
            } else if let Ok(r) = parse_reply(hdr.r#type, h.r#type, body) {
                reply = r;
            }
        }
        self.flush_all();
        reply
    }

    /// Queues a framed message for a domU's connection. A connection whose ring is broken gets
    /// nothing, and one that leaves too much unread loses further messages (watch events from
    /// other domains' writes could otherwise grow its queue without bound).
    fn queue(&mut self, conn: u16, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.broken && c.out.len() <= 4 * STORE_BACKLOG {
                c.out.push(bytes);
            }
        }
    }

    /// Moves queued responses into every domU's ring, notifying those that got some.
    fn flush_all(&mut self) {
        for (id, c) in self.conns.iter_mut() {
            if c.out.is_empty() || c.broken {
                continue;
            }
            match c.out.flush_responses(&mut c.page) {
                Ok(0) => {}
                Ok(_) => {
                    let _ = events::send(c.port);
                }
                Err(e) => {
                    println!("xenstored: d{id} ring broken: {e}");
                    xs_ring::report_error(&mut c.page, XENSTORE_ERROR_RINGIDX);
                    c.broken = true;
                }
            }
        }
    }

    /// Serves the requests waiting in `id`'s store ring: at most [`STORE_BUDGET`] messages per
    /// call, and none while [`STORE_BACKLOG`] bytes of replies wait for the domU to read them (a
    /// client that never reads its responses cannot make dom0 queue without bound).
    pub fn serve(&mut self, id: u16) {
        let mut consumed = false;
        for _ in 0..STORE_BUDGET {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.broken || c.out.len() > STORE_BACKLOG {
                break;
            }
            let msg = match xs_ring::read_request_message(&mut c.page, &mut c.asm) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    println!("xenstored: d{id} sent a bad message ({e:?}); dropping its ring");
                    xs_ring::report_error(&mut c.page, XENSTORE_ERROR_RINGIDX);
                    c.broken = true;
                    break;
                }
            };
            consumed = true;
            let out = self.xs.handle_message(id, &msg);
            for (conn, bytes) in out.messages {
                if conn == 0 {
                    if let Ok((h, body)) = XsdSockmsg::read_from_prefix(&bytes) {
                        if h.r#type == XS_WATCH_EVENT {
                            if let Ok(w) = parse_watch_event(body) {
                                self.watch_events.push_back((w.path, w.token));
                            }
                        }
                    }
                } else {
                    self.queue(conn, &bytes);
                }
            }
            self.flush_all();
        }
        if consumed {
            if let Some(c) = self.conns.get(&id) {
                // Room in the request ring for a client that waits for it.
                let _ = events::send(c.port);
            }
        }
        self.flush_all();
    }

    /// What [`Xenstore::serve`] of every connection does, in one walk (the event loop's poll,
    /// every pass): serves each ring that holds request bytes (or whose indices are bad, which
    /// `serve` reports), and moves queued replies into the rings; a ring with neither is left
    /// alone, as `serve` would leave it.
    pub fn serve_waiting(&mut self) {
        let mut due = core::mem::take(&mut self.due);
        due.clear();
        let mut queued = false;
        for (&id, c) in &self.conns {
            if c.broken {
                continue;
            }
            if xs_ring::requests_waiting(&c.page).map_or(true, |n| n > 0) {
                due.push(id);
            }
            queued |= !c.out.is_empty();
        }
        for &id in &due {
            self.serve(id);
        }
        if queued && due.is_empty() {
            self.flush_all();
        }
        self.due = due;
    }
}
