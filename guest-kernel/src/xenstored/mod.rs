//! A xenstore server (xenstored) for dom0: the tree, permissions, watches and transactions.
//! (One file of ~820 lines: `handle` and the per-request operations share the connection and
//! transaction state; the tree and paths are already in `store.rs` and `path.rs`.)
//!
//! Portable and host-tested; the kernel moves bytes between the rings and [`Xenstored::handle`]
//! (one connection per domain, numbered by domid; dom0 is connection 0 and privileged). Replies
//! follow C xenstored: the request's type with `"OK\0"` or the data, or `XS_ERROR` with the
//! errno name (`"ENOENT\0"`). Input is hostile: every malformed request gets an error reply and
//! nothing panics.
//!
//! - **Paths** ([`path`]): relative paths are under `/local/domain/<caller>`.
//! - **Permissions**: the first entry of a node's list is its owner and the access of unlisted
//!   domains (`"n0"`, `"r1"`, `"b2"`); the owner and dom0 may do anything. Nodes created by a
//!   write inherit the nearest existing ancestor's list, with a domU creator as owner.
//! - **Watches** fire once when set, then on every change at or under their path, as
//!   `XS_WATCH_EVENT` (`path\0token\0`, `req_id` 0) queued to the watcher; `@introduceDomain` and
//!   `@releaseDomain` fire when domains come and go. A watcher only hears of nodes it may read.
//! - **Transactions** keep what they change over the live tree and read the rest from it
//!   ([`store`], C xenstored's way); commit fails with `EAGAIN` if another connection changed a
//!   node the transaction read or wrote since it first touched it.
//! - **Domains**: `XS_INTRODUCE` / `XS_RELEASE` (dom0 only) create and drop connections and
//!   return an [`Action`] for the kernel to map or unmap the ring.

pub mod path;
pub mod store;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::errno::Errno;
use hypercall_abi::io::xs_wire::{
    XsdSockmsg, XENSTORE_PAYLOAD_MAX, XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR,
    XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ,
    XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_RM, XS_SET_PERMS, XS_SET_TARGET,
    XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
};
use ring_drivers::xenbus::xs_ring::{frame, XsMessage};
use ring_drivers::xenbus::{nul_strings, parse_decimal, push_decimal, Access, Perm};

use path::{canonical, home, is_child, parent};
use store::{Db, Node, Nodes, Overlay, TxLog};

/// The privileged connection (dom0, the toolstack).
pub const DOM0: u16 = 0;
/// First domid that names no real domain (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
/// Nodes an unprivileged domain may own (C xenstored's default `quota-nodes`).
pub const QUOTA_NODES: usize = 1000;
/// Bytes of value an unprivileged domain may store in one node (C xenstored's default
/// `quota-max-entry-size`, 2048); beyond it a write fails with ENOSPC, as C xenstored's quotas do.
pub const QUOTA_ENTRY_SIZE: usize = 2048;
/// Pending watch fires one transaction may collect before its writes fail with ENOSPC (bounds
/// what a transaction that is never committed can make the server hold).
pub const QUOTA_TX_FIRES: usize = 1024;
/// Watches per connection (C xenstored's default `quota-watches`).
pub const QUOTA_WATCHES: usize = 128;
/// Open transactions per connection (C xenstored's default `quota-transactions`).
pub const QUOTA_TRANSACTIONS: usize = 10;
/// The special watch fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A domain's ring, as named by `XS_INTRODUCE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Introduction {
    /// The domain.
    pub domid: u16,
    /// The machine frame of its xenstore page.
    pub mfn: u64,
    /// Its end of the xenstore event channel (to bind interdomain).
    pub evtchn: u32,
}

/// Work for the kernel that the server cannot do itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Map the domain's xenstore page and bind its event channel (again, if re-introduced),
    /// then pump that ring into [`Xenstored::handle`] as connection `domid`.
    Introduce(Introduction),
    /// Stop serving the domain's ring, unmap it and unbind its event channel.
    Release {
        /// The released domain.
        domid: u16,
    },
}

/// What handling one request produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Framed messages (header + payload) for each connection, in sending order: the reply to
    /// the caller and any watch events.
    pub messages: Vec<(u16, Vec<u8>)>,
    /// Ring set-up and tear-down for the kernel.
    pub actions: Vec<Action>,
}

/// A watch fire to deliver: a changed node, or a special event.
#[derive(Clone, Debug)]
struct Fire {
    path: String,
    /// Only watches on exactly this path (descendants of a removed node), not its ancestors.
    exact: bool,
    /// Watchers must be able to read under one of these lists (empty: no check).
    perms: Vec<Vec<Perm>>,
}

#[derive(Clone, Debug)]
struct Watch {
    conn: u16,
    /// Canonical path or special name.
    path: String,
    token: Vec<u8>,
    /// Registered relative: events strip the watcher's home.
    relative: bool,
}

#[derive(Debug)]
struct Transaction {
    /// What it changed over the live tree.
    overlay: Overlay,
    log: TxLog,
    fires: Vec<Fire>,
}

#[derive(Debug, Default)]
struct Connection {
    ring: Option<Introduction>,
    transactions: BTreeMap<u32, Transaction>,
}

/// What a request handler hands back.
struct Done {
    reply: Vec<u8>,
    fires: Vec<Fire>,
    /// A message for the caller that follows the reply (a new watch's first event).
    then: Option<Vec<u8>>,
}

impl Done {
    fn reply(reply: Vec<u8>) -> Self {
        Done {
            reply,
            fires: Vec::new(),
            then: None,
        }
    }

    fn ok() -> Self {
        Self::reply(b"OK\0".to_vec())
    }

    fn ok_firing(fires: Vec<Fire>) -> Self {
        Done {
            fires,
            ..Self::ok()
        }
    }
}

/// What a domain may do to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rights {
    read: bool,
    write: bool,
    owner: bool,
}

/// C xenstored's `perm_for_conn`: dom0 and the owner get everything; otherwise the first
/// entry naming the domain, else the first entry's default.
fn rights(conn: u16, perms: &[Perm]) -> Rights {
    let all = Rights {
        read: true,
        write: true,
        owner: true,
    };
    let Some(first) = perms.first() else {
        return if conn == DOM0 {
            all
        } else {
            Rights {
                read: false,
                write: false,
                owner: false,
            }
        };
    };
    if conn == DOM0 || first.domid == conn {
        return all;
    }
    let access = perms[1..]
        .iter()
        .find(|p| p.domid == conn)
        .map_or(first.access, |p| p.access);
    Rights {
        read: access.can_read(),
        write: access.can_write(),
        owner: false,
    }
}

/// The single NUL-terminated string a payload must consist of.
fn one_arg(payload: &[u8]) -> Result<&[u8], Errno> {
    match nul_strings(payload) {
        Some(v) if v.len() == 1 => Ok(v[0]),
        _ => Err(Errno::EINVAL),
    }
}

/// The two NUL-terminated strings a payload must consist of (`path\0token\0`).
fn two_args(payload: &[u8]) -> Result<(&[u8], &[u8]), Errno> {
    match nul_strings(payload).as_deref() {
        Some(&[a, b]) => Ok((a, b)),
        _ => Err(Errno::EINVAL),
    }
}

fn parse_domid(s: &[u8]) -> Result<u16, Errno> {
    parse_decimal(s)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(Errno::EINVAL)
}

fn with_nul(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

fn error_frame(hdr: &XsdSockmsg, e: Errno) -> Vec<u8> {
    // Error names are short: framing cannot fail.
    frame(XS_ERROR, hdr.req_id, hdr.tx_id, &with_nul(e.name())).unwrap_or_default()
}

/// The xenstore daemon's state: the tree, the connections, their watches and transactions.
#[derive(Debug)]
pub struct Xenstored {
    nodes: Nodes,
    generation: u64,
    connections: BTreeMap<u16, Connection>,
    /// In registration order, which is the order events are queued.
    watches: Vec<Watch>,
    next_tx_id: u32,
}

impl Default for Xenstored {
    fn default() -> Self {
        Self::new()
    }
}

impl Xenstored {
    /// A daemon with just `/` (owned by dom0, `n0`) and dom0's connection.
    pub fn new() -> Self {
        let mut nodes = Nodes::new();
        nodes.insert(
            String::from("/"),
            Node {
                value: Rc::from(&[][..]),
                perms: alloc::vec![Perm {
                    domid: DOM0,
                    access: Access::None
                }],
                generation: 0,
            },
        );
        let mut connections = BTreeMap::new();
        connections.insert(DOM0, Connection::default());
        Xenstored {
            nodes,
            generation: 0,
            connections,
            watches: Vec::new(),
            next_tx_id: 1,
        }
    }

    /// Whether `domid` has a connection (dom0 always does).
    pub fn is_introduced(&self, domid: u16) -> bool {
        self.connections.contains_key(&domid)
    }

    /// The ring recorded for an introduced domU.
    pub fn ring(&self, domid: u16) -> Option<Introduction> {
        self.connections.get(&domid).and_then(|c| c.ring)
    }

    /// Handles a reassembled message from connection `conn`.
    pub fn handle_message(&mut self, conn: u16, msg: &XsMessage) -> Output {
        self.handle(conn, &msg.header, &msg.payload)
    }

    /// Handles one request from connection `conn`. `hdr.len` must equal `payload.len()`. The
    /// reply (to `conn`) and any watch events are in the returned [`Output`]. A connection that
    /// was never introduced gets `EACCES`.
    pub fn handle(&mut self, conn: u16, hdr: &XsdSockmsg, payload: &[u8]) -> Output {
        let mut out = Output::default();
        let result = self.dispatch(conn, hdr, payload, &mut out);
        let (reply, then) = match result {
            Ok((reply, then)) => (
                frame(hdr.r#type, hdr.req_id, hdr.tx_id, &reply)
                    .unwrap_or_else(|_| error_frame(hdr, Errno::E2BIG)),
                then,
            ),
            Err(e) => (error_frame(hdr, e), None),
        };
        // Watch events caused by the request go first, as C xenstored queues them before its
        // reply; a new watch's own first event follows the reply.
        out.messages.push((conn, reply));
        if let Some(ev) = then {
            out.messages.push((conn, ev));
        }
        out
    }

    fn dispatch(
        &mut self,
        conn: u16,
        hdr: &XsdSockmsg,
        payload: &[u8],
        out: &mut Output,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), Errno> {
        if !self.connections.contains_key(&conn) {
            return Err(Errno::EACCES);
        }
        if hdr.len as usize != payload.len() || payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(Errno::EINVAL);
        }
        let tx_id = hdr.tx_id;
        if hdr.r#type == XS_TRANSACTION_START {
            if tx_id != 0 {
                return Err(Errno::EBUSY);
            }
        } else if tx_id != 0 && !self.connections[&conn].transactions.contains_key(&tx_id) {
            return Err(Errno::ENOENT);
        }
        let done = match hdr.r#type {
            XS_READ | XS_WRITE | XS_MKDIR | XS_RM | XS_DIRECTORY | XS_GET_PERMS | XS_SET_PERMS => {
                self.tree_op(conn, hdr.r#type, tx_id, payload)?
            }
            XS_WATCH => self.watch(conn, payload)?,
            XS_UNWATCH => self.unwatch(conn, payload)?,
            XS_TRANSACTION_START => self.transaction_start(conn)?,
            XS_TRANSACTION_END => self.transaction_end(conn, tx_id, payload)?,
            XS_INTRODUCE => {
                if conn != DOM0 {
                    return Err(Errno::EACCES);
                }
                let (domid, mfn, evtchn) = match nul_strings(payload).as_deref() {
                    Some([d, m, e]) => (
                        parse_domid(d)?,
                        parse_decimal(m).ok_or(Errno::EINVAL)?,
                        parse_decimal(e)
                            .and_then(|v| u32::try_from(v).ok())
                            .ok_or(Errno::EINVAL)?,
                    ),
                    _ => return Err(Errno::EINVAL),
                };
                let o = self.introduce(domid, mfn, evtchn)?;
                out.messages.extend(o.messages);
                out.actions.extend(o.actions);
                Done::ok()
            }
            XS_RELEASE => {
                if conn != DOM0 {
                    return Err(Errno::EACCES);
                }
                let domid = parse_domid(one_arg(payload)?)?;
                let o = self.release(domid)?;
                out.messages.extend(o.messages);
                out.actions.extend(o.actions);
                Done::ok()
            }
            XS_GET_DOMAIN_PATH => {
                let domid = parse_domid(one_arg(payload)?)?;
                Done::reply(with_nul(&home(domid)))
            }
            XS_IS_DOMAIN_INTRODUCED => {
                let domid = parse_domid(one_arg(payload)?)?;
                Done::reply(
                    if self.is_introduced(domid) {
                        b"T\0"
                    } else {
                        b"F\0"
                    }
                    .to_vec(),
                )
            }
            XS_RESET_WATCHES => {
                self.watches.retain(|w| w.conn != conn);
                if let Some(c) = self.connections.get_mut(&conn) {
                    c.transactions.clear();
                }
                Done::ok()
            }
            XS_CONTROL | XS_RESUME | XS_SET_TARGET | XS_DIRECTORY_PART => {
                return Err(Errno::ENOSYS)
            }
            _ => return Err(Errno::EINVAL),
        };
        self.fire_all(&done.fires, &mut out.messages);
        Ok((done.reply, done.then))
    }

    /// Introduces `domid` (as `XS_INTRODUCE` from dom0 does): creates its connection, fires
    /// `@introduceDomain` and asks the kernel to set up the ring. Introducing a domain again
    /// only updates its ring (C xenstored rebinds the event channel) and fires nothing.
    pub fn introduce(&mut self, domid: u16, mfn: u64, evtchn: u32) -> Result<Output, Errno> {
        if domid == DOM0 || domid >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        let ring = Introduction { domid, mfn, evtchn };
        let mut out = Output::default();
        out.actions.push(Action::Introduce(ring));
        let existed = self.connections.contains_key(&domid);
        self.connections.entry(domid).or_default().ring = Some(ring);
        if !existed {
            self.fire_special(INTRODUCE_DOMAIN, &mut out.messages);
        }
        Ok(out)
    }

    /// Releases `domid` (as `XS_RELEASE` from dom0 does): drops its connection, watches and
    /// transactions, fires `@releaseDomain` and asks the kernel to tear down the ring. Its
    /// nodes stay (the toolstack removes them).
    pub fn release(&mut self, domid: u16) -> Result<Output, Errno> {
        if domid == DOM0 || domid >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        if self.connections.remove(&domid).is_none() {
            return Err(Errno::ENOENT);
        }
        self.watches.retain(|w| w.conn != domid);
        let mut out = Output::default();
        out.actions.push(Action::Release { domid });
        self.fire_special(RELEASE_DOMAIN, &mut out.messages);
        Ok(out)
    }

    fn fire_special(&self, name: &str, msgs: &mut Vec<(u16, Vec<u8>)>) {
        let f = Fire {
            path: String::from(name),
            exact: true,
            perms: Vec::new(),
        };
        self.fire_all(core::slice::from_ref(&f), msgs);
    }

    /// Queues an event for every watch each fire reaches.
    fn fire_all(&self, fires: &[Fire], msgs: &mut Vec<(u16, Vec<u8>)>) {
        for f in fires {
            for w in &self.watches {
                let hit = if f.exact {
                    w.path == f.path
                } else {
                    is_child(&f.path, &w.path)
                };
                if !hit || (!f.perms.is_empty() && !f.perms.iter().any(|p| rights(w.conn, p).read))
                {
                    continue;
                }
                let mut shown = f.path.as_str();
                if w.relative {
                    let h = home(w.conn);
                    if let Some(rest) = shown.strip_prefix(h.as_str()) {
                        shown = rest.strip_prefix('/').unwrap_or(rest);
                    }
                }
                if let Some(ev) = watch_event(shown, &w.token) {
                    msgs.push((w.conn, ev));
                }
            }
        }
    }

    /// Runs a tree operation on the live tree or on transaction `tx_id`'s view of it.
    fn tree_op(
        &mut self,
        conn: u16,
        r#type: u32,
        tx_id: u32,
        payload: &[u8],
    ) -> Result<Done, Errno> {
        if tx_id == 0 {
            let mut db = Db {
                nodes: &mut self.nodes,
                generation: &mut self.generation,
                log: None,
                below: None,
            };
            return tree_op(&mut db, conn, r#type, payload);
        }
        let c = self.connections.get_mut(&conn).ok_or(Errno::EACCES)?;
        let tx = c.transactions.get_mut(&tx_id).ok_or(Errno::ENOENT)?;
        let mut db = Db {
            nodes: &mut tx.overlay.nodes,
            generation: &mut self.generation,
            log: Some(&mut tx.log),
            below: Some((&self.nodes, &mut tx.overlay.removed)),
        };
        if conn != DOM0 && tx.fires.len() >= QUOTA_TX_FIRES {
            return Err(Errno::ENOSPC);
        }
        let mut done = tree_op(&mut db, conn, r#type, payload)?;
        // Events of a transaction fire when (if) it commits.
        tx.fires.append(&mut done.fires);
        Ok(done)
    }

    fn watch(&mut self, conn: u16, payload: &[u8]) -> Result<Done, Errno> {
        let (raw, token) = two_args(payload)?;
        let (path, relative) = canonical(conn, raw, true)?;
        let mine = self.watches.iter().filter(|w| w.conn == conn);
        if mine.clone().any(|w| w.path == path && w.token == *token) {
            return Err(Errno::EEXIST);
        }
        if conn != DOM0 && mine.count() >= QUOTA_WATCHES {
            return Err(Errno::E2BIG);
        }
        // C xenstored fires a new watch once, with the path as the client gave it.
        let first = core::str::from_utf8(raw)
            .ok()
            .and_then(|p| watch_event(p, token));
        self.watches.push(Watch {
            conn,
            path,
            token: token.to_vec(),
            relative,
        });
        Ok(Done {
            then: first,
            ..Done::ok()
        })
    }

    fn unwatch(&mut self, conn: u16, payload: &[u8]) -> Result<Done, Errno> {
        let (raw, token) = two_args(payload)?;
        let (path, _) = canonical(conn, raw, true)?;
        let i = self
            .watches
            .iter()
            .position(|w| w.conn == conn && w.path == path && w.token == *token)
            .ok_or(Errno::ENOENT)?;
        self.watches.remove(i);
        Ok(Done::ok())
    }

    fn transaction_start(&mut self, conn: u16) -> Result<Done, Errno> {
        let c = self.connections.get_mut(&conn).ok_or(Errno::EACCES)?;
        if conn != DOM0 && c.transactions.len() >= QUOTA_TRANSACTIONS {
            return Err(Errno::ENOSPC);
        }
        let mut id = self.next_tx_id;
        while id == 0 || c.transactions.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_tx_id = id.wrapping_add(1);
        c.transactions.insert(
            id,
            Transaction {
                overlay: Overlay::default(),
                log: TxLog::default(),
                fires: Vec::new(),
            },
        );
        let mut reply = Vec::new();
        push_decimal(&mut reply, u64::from(id));
        reply.push(0);
        Ok(Done::reply(reply))
    }

    fn transaction_end(&mut self, conn: u16, tx_id: u32, payload: &[u8]) -> Result<Done, Errno> {
        let commit = match one_arg(payload)? {
            b"T" => true,
            b"F" => false,
            _ => return Err(Errno::EINVAL),
        };
        let c = self.connections.get_mut(&conn).ok_or(Errno::EACCES)?;
        // tx_id 0 is "no transaction": ending it is ENOENT, like an unknown id.
        let tx = c.transactions.remove(&tx_id).ok_or(Errno::ENOENT)?;
        if !commit {
            return Ok(Done::ok());
        }
        let conflict = tx
            .log
            .seen
            .iter()
            .any(|(p, g)| self.nodes.get(p).map(|n| n.generation) != *g);
        if conflict {
            return Err(Errno::EAGAIN);
        }
        // The node quota was checked against the transaction's view; several transactions
        // could each stay under it and together exceed it: check the tree the commit would make.
        if conn != DOM0 {
            let owns = |n: Option<&Node>| {
                n.is_some_and(|n| n.perms.first().map(|p| p.domid) == Some(conn))
            };
            let now = self
                .nodes
                .values()
                .filter(|n| n.perms.first().map(|p| p.domid) == Some(conn))
                .count();
            let after = tx.log.written.iter().fold(now as isize, |acc, p| {
                acc + isize::from(owns(tx.overlay.lookup(&self.nodes, p)))
                    - isize::from(owns(self.nodes.get(p)))
            });
            if after > QUOTA_NODES as isize {
                return Err(Errno::ENOSPC);
            }
        }
        for p in &tx.log.written {
            match tx.overlay.nodes.get(p) {
                Some(n) => {
                    self.generation += 1;
                    let mut n = n.clone();
                    n.generation = self.generation;
                    self.nodes.insert(p.clone(), n);
                }
                None => {
                    self.nodes.remove(p);
                }
            }
        }
        Ok(Done::ok_firing(tx.fires))
    }
}

/// An `XS_WATCH_EVENT` message, or `None` if it would exceed the payload limit (C xenstored
/// drops such events too).
fn watch_event(path: &str, token: &[u8]) -> Option<Vec<u8>> {
    let mut p = with_nul(path);
    p.extend_from_slice(token);
    p.push(0);
    frame(XS_WATCH_EVENT, 0, 0, &p).ok()
}

/// The tree requests, on the live tree or a transaction's view of it.
fn tree_op(db: &mut Db<'_>, conn: u16, r#type: u32, payload: &[u8]) -> Result<Done, Errno> {
    match r#type {
        XS_READ => {
            let (p, _) = canonical(conn, one_arg(payload)?, false)?;
            let node = readable(db, conn, &p)?;
            Ok(Done::reply(node.value.to_vec()))
        }
        XS_DIRECTORY => {
            let (p, _) = canonical(conn, one_arg(payload)?, false)?;
            readable(db, conn, &p)?;
            let mut reply = Vec::new();
            for name in db.children(&p) {
                reply.extend_from_slice(name.as_bytes());
                reply.push(0);
            }
            if reply.len() > XENSTORE_PAYLOAD_MAX {
                return Err(Errno::E2BIG);
            }
            Ok(Done::reply(reply))
        }
        XS_GET_PERMS => {
            let (p, _) = canonical(conn, one_arg(payload)?, false)?;
            let node = readable(db, conn, &p)?;
            let mut reply = Vec::new();
            for perm in &node.perms {
                perm.encode_into(&mut reply);
            }
            Ok(Done::reply(reply))
        }
        XS_WRITE => {
            let nul = payload.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
            let (p, _) = canonical(conn, &payload[..nul], false)?;
            let value = payload[nul + 1..].to_vec();
            write(db, conn, &p, value, true)
        }
        XS_MKDIR => {
            let (p, _) = canonical(conn, one_arg(payload)?, false)?;
            write(db, conn, &p, Vec::new(), false)
        }
        XS_RM => {
            let (p, _) = canonical(conn, one_arg(payload)?, false)?;
            rm(db, conn, &p)
        }
        XS_SET_PERMS => set_perms(db, conn, payload),
        _ => Err(Errno::EINVAL),
    }
}

/// The node at `p` if `conn` may read it.
fn readable(db: &mut Db<'_>, conn: u16, p: &str) -> Result<Node, Errno> {
    let node = db.get(p).ok_or(Errno::ENOENT)?;
    if !rights(conn, &node.perms).read {
        return Err(Errno::EACCES);
    }
    Ok(node)
}

fn changed(path: &str, perms: Vec<Perm>) -> Fire {
    Fire {
        path: String::from(path),
        exact: false,
        perms: alloc::vec![perms],
    }
}

/// `XS_WRITE` (`overwrite`) and `XS_MKDIR` (leaves an existing node alone).
fn write(
    db: &mut Db<'_>,
    conn: u16,
    p: &str,
    value: Vec<u8>,
    overwrite: bool,
) -> Result<Done, Errno> {
    if conn != DOM0 && value.len() > QUOTA_ENTRY_SIZE {
        return Err(Errno::ENOSPC);
    }
    if let Some(mut node) = db.get(p) {
        if !rights(conn, &node.perms).write {
            return Err(Errno::EACCES);
        }
        if !overwrite {
            return Ok(Done::ok());
        }
        node.value = Rc::from(value);
        let perms = node.perms.clone();
        db.put(p, node);
        return Ok(Done::ok_firing(alloc::vec![changed(p, perms)]));
    }
    // Create p and its missing ancestors below the nearest existing one.
    let mut missing = alloc::vec![String::from(p)];
    let ancestor = loop {
        let up = String::from(parent(missing.last().map_or("/", String::as_str)));
        match db.get(&up) {
            Some(n) => break (up, n),
            None => missing.push(up),
        }
    };
    let (anc_path, anc) = ancestor;
    if !rights(conn, &anc.perms).write {
        return Err(Errno::EACCES);
    }
    if conn != DOM0 && db.owned_by(conn) + missing.len() > QUOTA_NODES {
        return Err(Errno::ENOSPC);
    }
    let mut perms = anc.perms.clone();
    if conn != DOM0 {
        // Unprivileged domains own what they create.
        perms[0].domid = conn;
    }
    for (i, m) in missing.iter().enumerate().rev() {
        let node = Node {
            value: if i == 0 {
                Rc::from(value.as_slice())
            } else {
                Rc::from(&[][..])
            },
            perms: perms.clone(),
            generation: 0,
        };
        db.put(m, node);
    }
    db.bump(&anc_path);
    Ok(Done::ok_firing(alloc::vec![changed(p, perms)]))
}

fn rm(db: &mut Db<'_>, conn: u16, p: &str) -> Result<Done, Errno> {
    let Some(node) = db.get(p) else {
        // Removing a missing node is fine if its parent exists (C xenstored).
        return if p != "/" && db.get(parent(p)).is_some() {
            Ok(Done::ok())
        } else {
            Err(Errno::ENOENT)
        };
    };
    if !rights(conn, &node.perms).write {
        return Err(Errno::EACCES);
    }
    if p == "/" {
        return Err(Errno::EINVAL);
    }
    let mut fires = Vec::new();
    for (path, n) in db.remove_subtree(p) {
        fires.push(Fire {
            exact: path != p,
            ..changed(&path, n.perms)
        });
    }
    Ok(Done::ok_firing(fires))
}

fn set_perms(db: &mut Db<'_>, conn: u16, payload: &[u8]) -> Result<Done, Errno> {
    let args = nul_strings(payload).ok_or(Errno::EINVAL)?;
    let [raw, perm_args @ ..] = &args[..] else {
        return Err(Errno::EINVAL);
    };
    if perm_args.is_empty() {
        return Err(Errno::EINVAL);
    }
    let perms: Vec<Perm> = perm_args
        .iter()
        .map(|s| Perm::parse(s))
        .collect::<Option<_>>()
        .ok_or(Errno::EINVAL)?;
    let (p, _) = canonical(conn, raw, false)?;
    let mut node = db.get(&p).ok_or(Errno::ENOENT)?;
    if !rights(conn, &node.perms).owner {
        return Err(Errno::EACCES);
    }
    if conn != DOM0 && perms[0].domid != node.perms[0].domid {
        // Unprivileged domains may not give nodes away.
        return Err(Errno::EPERM);
    }
    let old = core::mem::replace(&mut node.perms, perms.clone());
    db.put(&p, node);
    Ok(Done::ok_firing(alloc::vec![Fire {
        path: p,
        exact: false,
        perms: alloc::vec![old, perms],
    }]))
}
