//! A non-blocking xenstore client (the domU's xenbus): builds requests, matches replies.
//!
//! [`XenbusClient::send`] frames a [`Request`] with a fresh `req_id` and queues it;
//! [`XenbusClient::pump`] moves queued bytes into the ring and hands every complete reply or watch
//! event to a callback. The caller runs `pump` when the xenstore event channel fires (and notifies
//! xenstored when bytes moved). Replies are parsed by the type of the request they answer:
//! `XS_ERROR` carries an errno name (`"ENOENT\0"`), `XS_WATCH_EVENT` is `path\0token\0`.
//! [`Perm`] is the permission syntax (`"r1"`, `"n0"`) shared with the server.
//!
//! Below it: [`xs_ring`] (the xenstore ring and message framing, shared with xenstored). Beside
//! it: [`state`] (the XenbusState handshake of a split device's two ends), which the device
//! protocols (`blkif`) use.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::errno::Errno;
use hypercall_abi::io::xs_wire::{
    xsd_error_from_name, XS_DIRECTORY, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS,
    XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RM, XS_SET_PERMS, XS_TRANSACTION_END,
    XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
};

use self::xs_ring::{MessageAssembler, OutQueue, XsRingError};
use crate::shared_page::SharedPage;

pub mod state;
pub mod xs_ring;

/// What a domain may do to a node (the letter of a permission string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Whether reading is allowed.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    /// Whether writing is allowed.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }

    fn letter(self) -> u8 {
        match self {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        }
    }
}

/// One entry of a node's permission list. The first entry names the owner and the access of
/// every domain not listed; later entries grant specific domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain.
    pub domid: u16,
    /// Its access.
    pub access: Access,
}

impl Perm {
    /// Parses `"r1"`-style text (letter, then a decimal domid without sign or leading zeros).
    pub fn parse(s: &[u8]) -> Option<Perm> {
        let (&letter, digits) = s.split_first()?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return None,
        };
        let domid = parse_decimal(digits).and_then(|d| u16::try_from(d).ok())?;
        Some(Perm { domid, access })
    }

    /// Appends the text form followed by NUL.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.access.letter());
        push_decimal(out, u64::from(self.domid));
        out.push(0);
    }
}

/// Parses a list of NUL-terminated permission strings (an `XS_GET_PERMS` reply).
pub fn parse_perms(payload: &[u8]) -> Option<Vec<Perm>> {
    let strings = nul_strings(payload)?;
    if strings.is_empty() {
        return None;
    }
    strings.into_iter().map(Perm::parse).collect()
}

/// A strict unsigned decimal: digits only, no leading zeros (except `"0"`), fits in a `u64`.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Appends `v` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Splits a payload made only of NUL-terminated strings; `None` if the last is unterminated.
pub fn nul_strings(payload: &[u8]) -> Option<Vec<&[u8]>> {
    if payload.is_empty() {
        return Some(Vec::new());
    }
    let body = payload.strip_suffix(&[0])?;
    Some(body.split(|&b| b == 0).collect())
}

/// A request to xenstored. Paths are absolute (`/local/domain/1/x`) or relative to the
/// caller's home (`device/vbd`), without NULs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `XS_READ`: a node's value.
    Read(&'a str),
    /// `XS_WRITE`: set a node's value, creating it and its parents.
    Write(&'a str, &'a [u8]),
    /// `XS_MKDIR`: create an empty node (fine if it exists).
    Mkdir(&'a str),
    /// `XS_RM`: remove a node and its children.
    Rm(&'a str),
    /// `XS_DIRECTORY`: a node's children.
    Directory(&'a str),
    /// `XS_WATCH`: report changes at or under `path` with `token`.
    Watch {
        /// The watched path (or `@introduceDomain` / `@releaseDomain`).
        path: &'a str,
        /// Echoed in each event.
        token: &'a str,
    },
    /// `XS_UNWATCH`: remove a watch.
    Unwatch {
        /// The watched path.
        path: &'a str,
        /// The token it was registered with.
        token: &'a str,
    },
    /// `XS_TRANSACTION_START`: the reply carries the new transaction's id.
    TransactionStart,
    /// `XS_TRANSACTION_END`: commit (`true`) or abort the transaction named by the `tx_id`
    /// passed to [`XenbusClient::send`].
    TransactionEnd(bool),
    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    GetDomainPath(u16),
    /// `XS_GET_PERMS`: a node's permissions.
    GetPerms(&'a str),
    /// `XS_SET_PERMS`: replace a node's permissions (owner only).
    SetPerms(&'a str, &'a [Perm]),
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced(u16),
}

impl Request<'_> {
    /// The `XS_*` message type.
    pub fn msg_type(&self) -> u32 {
        match self {
            Request::Read(_) => XS_READ,
            Request::Write(..) => XS_WRITE,
            Request::Mkdir(_) => XS_MKDIR,
            Request::Rm(_) => XS_RM,
            Request::Directory(_) => XS_DIRECTORY,
            Request::Watch { .. } => XS_WATCH,
            Request::Unwatch { .. } => XS_UNWATCH,
            Request::TransactionStart => XS_TRANSACTION_START,
            Request::TransactionEnd(_) => XS_TRANSACTION_END,
            Request::GetDomainPath(_) => XS_GET_DOMAIN_PATH,
            Request::GetPerms(_) => XS_GET_PERMS,
            Request::SetPerms(..) => XS_SET_PERMS,
            Request::IsDomainIntroduced(_) => XS_IS_DOMAIN_INTRODUCED,
        }
    }

    /// The payload, or `InvalidArgument` if a string holds a NUL or a path is empty.
    pub fn payload(&self) -> Result<Vec<u8>, XenbusError> {
        let mut p = Vec::new();
        let s = |p: &mut Vec<u8>, s: &str, path: bool| {
            if s.as_bytes().contains(&0) || (path && s.is_empty()) {
                return Err(XenbusError::InvalidArgument);
            }
            p.extend_from_slice(s.as_bytes());
            p.push(0);
            Ok(())
        };
        match *self {
            Request::Read(path)
            | Request::Mkdir(path)
            | Request::Rm(path)
            | Request::Directory(path)
            | Request::GetPerms(path) => s(&mut p, path, true)?,
            Request::Write(path, value) => {
                s(&mut p, path, true)?;
                p.extend_from_slice(value);
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                s(&mut p, path, true)?;
                s(&mut p, token, false)?;
            }
            Request::TransactionStart => p.push(0),
            Request::TransactionEnd(commit) => {
                p.extend_from_slice(if commit { b"T\0" } else { b"F\0" })
            }
            Request::GetDomainPath(d) | Request::IsDomainIntroduced(d) => {
                push_decimal(&mut p, u64::from(d));
                p.push(0);
            }
            Request::SetPerms(path, perms) => {
                s(&mut p, path, true)?;
                if perms.is_empty() {
                    return Err(XenbusError::InvalidArgument);
                }
                for perm in perms {
                    perm.encode_into(&mut p);
                }
            }
        }
        Ok(p)
    }
}

/// A successful or failed answer, parsed according to the request it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `"OK"` (write, mkdir, rm, watch, unwatch, transaction end, set perms).
    Ok,
    /// A node's value (read).
    Value(Vec<u8>),
    /// Child names (directory).
    Directory(Vec<String>),
    /// A new transaction's id.
    TransactionId(u32),
    /// A domain's home path.
    DomainPath(String),
    /// A node's permissions.
    Perms(Vec<Perm>),
    /// Whether a domain is introduced.
    Introduced(bool),
    /// `XS_ERROR` with a name from `xsd_errors[]`.
    Error(Errno),
    /// `XS_ERROR` with a name this side does not know.
    UnknownError(Vec<u8>),
}

/// A watch fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed (relative if the watch was registered relative).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// What [`XenbusClient::pump`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The answer to the request `req_id`.
    Reply {
        /// As returned by [`XenbusClient::send`].
        req_id: u32,
        /// The request's message type.
        request: u32,
        /// The parsed answer.
        reply: Reply,
    },
    /// A watch event (`XS_WATCH_EVENT`).
    Watch(WatchEvent),
}

/// What can go wrong on the client side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// The ring or framing failed (the connection is unusable).
    Ring(XsRingError),
    /// A request argument holds a NUL, or a path is empty.
    InvalidArgument,
    /// The request would exceed `XENSTORE_PAYLOAD_MAX`.
    TooLong,
    /// A reply for a `req_id` with no request outstanding.
    UnexpectedReply {
        /// The reply's `req_id`.
        req_id: u32,
    },
    /// A reply whose type is neither the request's nor `XS_ERROR`.
    WrongReplyType {
        /// The reply's `req_id`.
        req_id: u32,
        /// The type received.
        r#type: u32,
    },
    /// A reply or event payload that does not parse.
    MalformedReply {
        /// The message type.
        r#type: u32,
    },
}

impl From<XsRingError> for XenbusError {
    fn from(e: XsRingError) -> Self {
        XenbusError::Ring(e)
    }
}

impl From<crate::RingError> for XenbusError {
    fn from(e: crate::RingError) -> Self {
        XenbusError::Ring(XsRingError::Ring(e))
    }
}

fn utf8(b: &[u8], r#type: u32) -> Result<String, XenbusError> {
    core::str::from_utf8(b)
        .map(String::from)
        .map_err(|_| XenbusError::MalformedReply { r#type })
}

/// Parses a reply to a request of type `request` that arrived with type `r#type`.
pub fn parse_reply(request: u32, r#type: u32, payload: &[u8]) -> Result<Reply, XenbusError> {
    let bad = XenbusError::MalformedReply { r#type };
    if r#type == XS_ERROR {
        let name = payload.strip_suffix(&[0]).unwrap_or(payload);
        return Ok(match xsd_error_from_name(name) {
            Some(e) => Reply::Error(e),
            None => Reply::UnknownError(name.to_vec()),
        });
    }
    // The string replies carry a trailing NUL (C xenstored sends strlen + 1).
    let one = || nul_strings(payload).filter(|v| v.len() == 1).map(|v| v[0]);
    Ok(match request {
        XS_READ => Reply::Value(payload.to_vec()),
        XS_DIRECTORY => Reply::Directory(
            nul_strings(payload)
                .ok_or(bad)?
                .into_iter()
                .map(|n| utf8(n, r#type))
                .collect::<Result<_, _>>()?,
        ),
        XS_TRANSACTION_START => Reply::TransactionId(
            one()
                .and_then(parse_decimal)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(bad)?,
        ),
        XS_GET_DOMAIN_PATH => Reply::DomainPath(utf8(one().ok_or(bad)?, r#type)?),
        XS_GET_PERMS => Reply::Perms(parse_perms(payload).ok_or(bad)?),
        XS_IS_DOMAIN_INTRODUCED => match one().ok_or(bad)? {
            b"T" => Reply::Introduced(true),
            b"F" => Reply::Introduced(false),
            _ => return Err(bad),
        },
        _ => match one() {
            Some(b"OK") => Reply::Ok,
            _ => return Err(bad),
        },
    })
}

/// Parses an `XS_WATCH_EVENT` payload (`path\0token\0`).
pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, XenbusError> {
    let bad = XenbusError::MalformedReply {
        r#type: XS_WATCH_EVENT,
    };
    let v = nul_strings(payload).ok_or(bad)?;
    let [path, token] = v[..] else {
        return Err(bad);
    };
    Ok(WatchEvent {
        path: utf8(path, XS_WATCH_EVENT)?,
        token: utf8(token, XS_WATCH_EVENT)?,
    })
}

/// The client end of one xenstore ring.
#[derive(Debug, Default)]
pub struct XenbusClient {
    next_req_id: u32,
    /// Outstanding requests: `req_id` to message type.
    pending: BTreeMap<u32, u32>,
    out: OutQueue,
    asm: MessageAssembler,
}

impl XenbusClient {
    /// A client with nothing outstanding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames `req` (in transaction `tx_id`, 0 for none) and queues it; returns its `req_id`.
    /// Nothing reaches the ring until [`XenbusClient::pump`] or [`XenbusClient::flush`].
    pub fn send(&mut self, tx_id: u32, req: &Request<'_>) -> Result<u32, XenbusError> {
        let payload = req.payload()?;
        // Skip ids still outstanding after a wrap.
        let mut id = self.next_req_id;
        while self.pending.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        let bytes = xs_ring::frame(req.msg_type(), id, tx_id, &payload)
            .map_err(|_| XenbusError::TooLong)?;
        self.out.push(&bytes);
        self.pending.insert(id, req.msg_type());
        self.next_req_id = id.wrapping_add(1);
        Ok(id)
    }

    /// Requests sent whose reply has not arrived.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Bytes queued but not yet on the ring.
    pub fn unsent(&self) -> usize {
        self.out.len()
    }

    /// Moves queued requests into the ring; returns how many bytes moved (notify the server if
    /// any did).
    pub fn flush<P: SharedPage + ?Sized>(&mut self, page: &mut P) -> Result<usize, XenbusError> {
        Ok(self.out.flush_requests(page)?)
    }

    /// The next complete reply or watch event in the ring, if any.
    pub fn poll<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> Result<Option<Event>, XenbusError> {
        let Some(msg) = xs_ring::read_response_message(page, &mut self.asm)? else {
            return Ok(None);
        };
        let h = msg.header;
        if h.r#type == XS_WATCH_EVENT {
            return parse_watch_event(&msg.payload).map(|w| Some(Event::Watch(w)));
        }
        let Some(request) = self.pending.remove(&h.req_id) else {
            return Err(XenbusError::UnexpectedReply { req_id: h.req_id });
        };
        if h.r#type != request && h.r#type != XS_ERROR {
            return Err(XenbusError::WrongReplyType {
                req_id: h.req_id,
                r#type: h.r#type,
            });
        }
        let reply = parse_reply(request, h.r#type, &msg.payload)?;
        Ok(Some(Event::Reply {
            req_id: h.req_id,
            request,
            reply,
        }))
    }

    /// Flushes queued requests, then hands every complete reply and event to `f`. Returns the
    /// bytes flushed; stops at the first error.
    pub fn pump<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
        f: &mut impl FnMut(Event),
    ) -> Result<usize, XenbusError> {
        let flushed = self.flush(page)?;
        while let Some(ev) = self.poll(page)? {
            f(ev);
        }
        Ok(flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::xs_ring::{frame, read_request_message, write_response};
    use super::*;
    use crate::shared_page::ArrayPage;

    #[test]
    fn perms_parse_and_encode() {
        assert_eq!(
            Perm::parse(b"r12"),
            Some(Perm {
                domid: 12,
                access: Access::Read
            })
        );
        for bad in [&b""[..], b"r", b"x1", b"r01", b"r65536", b"r-1", b"r 1"] {
            assert_eq!(Perm::parse(bad), None, "{bad:?}");
        }
        let mut out = Vec::new();
        Perm {
            domid: 0,
            access: Access::None,
        }
        .encode_into(&mut out);
        Perm {
            domid: 65535,
            access: Access::Both,
        }
        .encode_into(&mut out);
        assert_eq!(out, b"n0\0b65535\0");
        assert_eq!(parse_perms(&out).unwrap().len(), 2);
        assert_eq!(parse_perms(b"n0"), None);
        assert_eq!(parse_perms(b""), None);
    }

    #[test]
    fn request_payloads() {
        let p = |r: Request| r.payload().unwrap();
        assert_eq!(p(Request::Read("a/b")), b"a/b\0");
        assert_eq!(p(Request::Write("x", b"v\0v")), b"x\0v\0v");
        assert_eq!(
            p(Request::Watch {
                path: "/p",
                token: "t"
            }),
            b"/p\0t\0"
        );
        assert_eq!(p(Request::TransactionEnd(false)), b"F\0");
        assert_eq!(p(Request::GetDomainPath(7)), b"7\0");
        assert_eq!(
            Request::Read("a\0b").payload(),
            Err(XenbusError::InvalidArgument)
        );
        assert_eq!(
            Request::Read("").payload(),
            Err(XenbusError::InvalidArgument)
        );
        let big = alloc::vec![b'x'; 5000];
        assert_eq!(
            XenbusClient::new().send(0, &Request::Write("p", &big)),
            Err(XenbusError::TooLong)
        );
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply(XS_WRITE, XS_WRITE, b"OK\0"), Ok(Reply::Ok));
        assert_eq!(
            parse_reply(XS_READ, XS_ERROR, b"ENOENT\0"),
            Ok(Reply::Error(Errno::ENOENT))
        );
        assert_eq!(
            parse_reply(XS_READ, XS_ERROR, b"EWHAT\0"),
            Ok(Reply::UnknownError(b"EWHAT".to_vec()))
        );
        assert_eq!(
            parse_reply(XS_DIRECTORY, XS_DIRECTORY, b"a\0bc\0"),
            Ok(Reply::Directory(alloc::vec!["a".into(), "bc".into()]))
        );
        assert_eq!(
            parse_reply(XS_DIRECTORY, XS_DIRECTORY, b""),
            Ok(Reply::Directory(Vec::new()))
        );
        assert_eq!(
            parse_reply(XS_TRANSACTION_START, XS_TRANSACTION_START, b"42\0"),
            Ok(Reply::TransactionId(42))
        );
        assert!(parse_reply(XS_TRANSACTION_START, XS_TRANSACTION_START, b"4x\0").is_err());
        assert!(parse_reply(XS_WRITE, XS_WRITE, b"KO\0").is_err());
        assert_eq!(
            parse_watch_event(b"/a/b\0tok\0"),
            Ok(WatchEvent {
                path: "/a/b".into(),
                token: "tok".into()
            })
        );
        assert!(parse_watch_event(b"/a/b\0tok").is_err());
        assert!(parse_watch_event(b"/a/b\0").is_err());
    }

    #[test]
    fn client_matches_replies_by_req_id() {
        let mut page = ArrayPage::new();
        let mut c = XenbusClient::new();
        let a = c.send(0, &Request::Read("a")).unwrap();
        let b = c.send(0, &Request::Directory("b")).unwrap();
        assert_ne!(a, b);
        c.flush(&mut page).unwrap();
        // A fake server: read both requests, answer the second first, plus a watch event.
        let mut asm = MessageAssembler::new();
        let ra = read_request_message(&mut page, &mut asm).unwrap().unwrap();
        let rb = read_request_message(&mut page, &mut asm).unwrap().unwrap();
        assert_eq!(ra.payload, b"a\0");
        for f in [
            frame(XS_DIRECTORY, rb.header.req_id, 0, b"x\0").unwrap(),
            frame(XS_WATCH_EVENT, 0, 0, b"p\0t\0").unwrap(),
            frame(XS_ERROR, ra.header.req_id, 0, b"EACCES\0").unwrap(),
        ] {
            write_response(&mut page, &f).unwrap();
        }
        let mut evs = Vec::new();
        c.pump(&mut page, &mut |e| evs.push(e)).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(
            evs[0],
            Event::Reply {
                req_id: b,
                request: XS_DIRECTORY,
                reply: Reply::Directory(alloc::vec!["x".into()])
            }
        );
        assert!(matches!(evs[1], Event::Watch(_)));
        assert_eq!(
            evs[2],
            Event::Reply {
                req_id: a,
                request: XS_READ,
                reply: Reply::Error(Errno::EACCES)
            }
        );
        assert_eq!(c.outstanding(), 0);
        // A reply nobody asked for.
        write_response(&mut page, &frame(XS_READ, 99, 0, b"").unwrap()).unwrap();
        assert_eq!(
            c.poll(&mut page),
            Err(XenbusError::UnexpectedReply { req_id: 99 })
        );
    }
}
