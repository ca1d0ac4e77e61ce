//! The xenstore ring (`io/xs_wire.h`): byte streams of [`XsdSockmsg`]-framed messages.
//!
//! The page holds `struct xenstore_domain_interface`: the guest (xenbus client) produces into
//! `req` and consumes `rsp`; xenstored does the opposite. Writes may be partial (the ring holds
//! 1024 bytes, a message up to 16 + 4096), so senders keep the rest in an [`OutQueue`] and
//! receivers reassemble messages with a [`MessageAssembler`]. A producer index more than 1024
//! ahead of its consumer is a protocol error ([`RingError`]); xenstored reports it in the page's
//! `error` field ([`report_error`]) and stops serving the ring, as C xenstored does.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use hypercall_abi::io::xs_wire::{
    XenstoreDomainInterface, XsdSockmsg, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::byte_ring::{ByteRing, RingError};
use crate::shared_page::SharedPage;

/// Size of the message header.
pub const HEADER_LEN: usize = size_of::<XsdSockmsg>();

/// The request ring: guest produces, xenstored consumes.
const REQ: ByteRing = ByteRing {
    data: offset_of!(XenstoreDomainInterface, req),
    size: XENSTORE_RING_SIZE,
    cons: offset_of!(XenstoreDomainInterface, req_cons),
    prod: offset_of!(XenstoreDomainInterface, req_prod),
};

/// The response ring: xenstored produces, guest consumes.
const RSP: ByteRing = ByteRing {
    data: offset_of!(XenstoreDomainInterface, rsp),
    size: XENSTORE_RING_SIZE,
    cons: offset_of!(XenstoreDomainInterface, rsp_cons),
    prod: offset_of!(XenstoreDomainInterface, rsp_prod),
};

/// What went wrong receiving or framing xenstore messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsRingError {
    /// The ring's indices are corrupt.
    Ring(RingError),
    /// A header announced, or a sender asked for, a payload over [`XENSTORE_PAYLOAD_MAX`].
    PayloadTooLong {
        /// The offending length.
        len: usize,
    },
}

impl From<RingError> for XsRingError {
    fn from(e: RingError) -> Self {
        XsRingError::Ring(e)
    }
}

/// Client: queues up to `bytes.len()` bytes of requests; returns how many fit.
pub fn write_request<P: SharedPage + ?Sized>(
    page: &mut P,
    bytes: &[u8],
) -> Result<usize, RingError> {
    REQ.produce(page, bytes)
}

/// Client: copies waiting response bytes into `buf`; returns how many.
pub fn read_response<P: SharedPage + ?Sized>(
    page: &mut P,
    buf: &mut [u8],
) -> Result<usize, RingError> {
    RSP.consume(page, buf)
}

/// Server: copies waiting request bytes into `buf`; returns how many.
pub fn read_request<P: SharedPage + ?Sized>(
    page: &mut P,
    buf: &mut [u8],
) -> Result<usize, RingError> {
    REQ.consume(page, buf)
}

/// Server: queues up to `bytes.len()` bytes of responses; returns how many fit.
pub fn write_response<P: SharedPage + ?Sized>(
    page: &mut P,
    bytes: &[u8],
) -> Result<usize, RingError> {
    RSP.produce(page, bytes)
}

/// Server: request bytes waiting in `req` (to decide whether to pump again).
pub fn requests_waiting<P: SharedPage + ?Sized>(page: &P) -> Result<usize, RingError> {
    REQ.pending(page)
}

/// Client: response bytes waiting in `rsp`.
pub fn responses_waiting<P: SharedPage + ?Sized>(page: &P) -> Result<usize, RingError> {
    RSP.pending(page)
}

/// Server: records `XENSTORE_ERROR_*` in the page's `error` field (meaningful to guests when
/// `server_features` has `XENSTORE_SERVER_FEATURE_ERROR`).
pub fn report_error<P: SharedPage + ?Sized>(page: &mut P, code: u32) {
    page.store_release_u32(offset_of!(XenstoreDomainInterface, error), code);
}

/// The page's `error` field (`XENSTORE_ERROR_*`).
pub fn error<P: SharedPage + ?Sized>(page: &P) -> u32 {
    page.load_acquire_u32(offset_of!(XenstoreDomainInterface, error))
}

/// A complete message: header and payload (`header.len == payload.len()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsMessage {
    /// The header as received.
    pub header: XsdSockmsg,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl XsMessage {
    /// The message as bytes on the ring.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(self.header.as_bytes());
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Frames one message: header (with `len` filled in) followed by `payload`.
pub fn frame(r#type: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, XsRingError> {
    if payload.len() > XENSTORE_PAYLOAD_MAX {
        return Err(XsRingError::PayloadTooLong { len: payload.len() });
    }
    let header = XsdSockmsg {
        r#type,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(payload);
    Ok(v)
}

/// Rebuilds messages from a byte stream received in arbitrary pieces. Holds at most one
/// message (16 + 4096 bytes), because [`MessageAssembler::feed`] takes only what the current
/// message still needs.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    header: [u8; HEADER_LEN],
    header_len: usize,
    payload: Vec<u8>,
    /// The validated header once all 16 bytes are in.
    parsed: Option<XsdSockmsg>,
}

impl MessageAssembler {
    /// An assembler waiting for a header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the current message still needs (at least 1).
    pub fn wanted(&self) -> usize {
        match &self.parsed {
            None => HEADER_LEN - self.header_len,
            Some(h) => (h.len as usize - self.payload.len()).max(1),
        }
    }

    /// Whether a message is partly received.
    pub fn in_progress(&self) -> bool {
        self.header_len > 0
    }

    /// Takes bytes from the front of `bytes`, up to the end of the current message. Returns how
    /// many were taken and the message if it is now complete. A header announcing a payload over
    /// [`XENSTORE_PAYLOAD_MAX`] is an error; the assembler then starts over with the next byte.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, Option<XsMessage>), XsRingError> {
        let mut used = 0;
        if self.parsed.is_none() {
            let n = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            used = n;
            if self.header_len < HEADER_LEN {
                return Ok((used, None));
            }
            let h = XsdSockmsg::read_from_bytes(&self.header[..]).unwrap_or_default();
            if h.len as usize > XENSTORE_PAYLOAD_MAX {
                self.reset();
                return Err(XsRingError::PayloadTooLong {
                    len: h.len as usize,
                });
            }
            self.payload = Vec::with_capacity(h.len as usize);
            self.parsed = Some(h);
        }
        let Some(h) = self.parsed else {
            return Ok((used, None));
        };
        let n = (h.len as usize - self.payload.len()).min(bytes.len() - used);
        self.payload.extend_from_slice(&bytes[used..used + n]);
        used += n;
        if self.payload.len() < h.len as usize {
            return Ok((used, None));
        }
        let payload = core::mem::take(&mut self.payload);
        self.reset();
        Ok((used, Some(XsMessage { header: h, payload })))
    }

    /// Forgets a partly received message.
    pub fn reset(&mut self) {
        self.header_len = 0;
        self.parsed = None;
        self.payload.clear();
    }
}

/// Reads from `read` (a ring's consumer) until one message is complete or the ring is empty.
fn read_message(
    asm: &mut MessageAssembler,
    waiting: usize,
    mut read: impl FnMut(&mut [u8]) -> Result<usize, RingError>,
) -> Result<Option<XsMessage>, XsRingError> {
    // Nothing in the ring: no message can complete (and the buffer need not be zeroed; event
    // loops ask on every pass).
    if waiting == 0 {
        return Ok(None);
    }
    let mut buf = [0u8; XENSTORE_RING_SIZE];
    loop {
        // Never read past the current message: the next one stays in the ring.
        let want = asm.wanted().min(buf.len());
        let n = read(&mut buf[..want])?;
        if n == 0 {
            return Ok(None);
        }
        let (used, msg) = asm.feed(&buf[..n])?;
        debug_assert_eq!(used, n);
        if msg.is_some() {
            return Ok(msg);
        }
    }
}

/// Server: the next complete request, if the ring holds the rest of one.
pub fn read_request_message<P: SharedPage + ?Sized>(
    page: &mut P,
    asm: &mut MessageAssembler,
) -> Result<Option<XsMessage>, XsRingError> {
    let waiting = requests_waiting(page)?;
    read_message(asm, waiting, |buf| read_request(page, buf))
}

/// Client: the next complete response or watch event, if the ring holds the rest of one.
pub fn read_response_message<P: SharedPage + ?Sized>(
    page: &mut P,
    asm: &mut MessageAssembler,
) -> Result<Option<XsMessage>, XsRingError> {
    let waiting = responses_waiting(page)?;
    read_message(asm, waiting, |buf| read_response(page, buf))
}

/// Bytes waiting to be sent on a ring, for senders whose messages do not fit at once.
#[derive(Debug, Default)]
pub struct OutQueue {
    bytes: VecDeque<u8>,
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends framed bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
    }

    /// Bytes not yet on the ring.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether everything was sent.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Moves queued bytes into a ring through `write` (a producer); returns how many moved.
    pub fn flush_with(
        &mut self,
        mut write: impl FnMut(&[u8]) -> Result<usize, RingError>,
    ) -> Result<usize, RingError> {
        let mut total = 0;
        while !self.bytes.is_empty() {
            let (front, _) = self.bytes.as_slices();
            let front_len = front.len();
            let n = write(front)?;
            self.bytes.drain(..n);
            total += n;
            if n < front_len {
                break;
            }
        }
        Ok(total)
    }

    /// Client: moves queued requests into the page's `req` ring.
    pub fn flush_requests<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> Result<usize, RingError> {
        self.flush_with(|b| write_request(page, b))
    }

    /// Server: moves queued responses into the page's `rsp` ring.
    pub fn flush_responses<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> Result<usize, RingError> {
        self.flush_with(|b| write_response(page, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::ArrayPage;
    use hypercall_abi::io::xs_wire::{XENSTORE_ERROR_RINGIDX, XS_READ, XS_WRITE};

    #[test]
    fn header_layout_matches_wire() {
        let f = frame(XS_READ, 7, 3, b"a\0").unwrap();
        assert_eq!(&f[..16], &[2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&f[16..], b"a\0");
        assert_eq!(
            frame(XS_READ, 0, 0, &[0; XENSTORE_PAYLOAD_MAX + 1]),
            Err(XsRingError::PayloadTooLong { len: 4097 })
        );
    }

    #[test]
    fn assembler_takes_bytes_one_at_a_time() {
        let f = frame(XS_WRITE, 1, 0, b"path\0value").unwrap();
        let mut a = MessageAssembler::new();
        for (i, b) in f.iter().enumerate() {
            let (used, msg) = a.feed(core::slice::from_ref(b)).unwrap();
            assert_eq!(used, 1);
            assert_eq!(msg.is_some(), i == f.len() - 1);
            if let Some(m) = msg {
                assert_eq!(m.header.r#type, XS_WRITE);
                assert_eq!(m.payload, b"path\0value");
                assert_eq!(m.encode(), f);
            }
        }
        assert!(!a.in_progress());
    }

    #[test]
    fn assembler_stops_at_message_boundary() {
        let mut s = frame(XS_READ, 1, 0, b"x\0").unwrap();
        s.extend(frame(XS_READ, 2, 0, b"").unwrap());
        let mut a = MessageAssembler::new();
        let (used, m) = a.feed(&s).unwrap();
        assert_eq!(used, 18);
        assert_eq!(m.unwrap().header.req_id, 1);
        let (used, m) = a.feed(&s[18..]).unwrap();
        assert_eq!(used, 16);
        assert_eq!(m.unwrap().payload, b"");
    }

    #[test]
    fn assembler_rejects_oversized_length() {
        let h = XsdSockmsg {
            r#type: XS_READ,
            req_id: 0,
            tx_id: 0,
            len: 4097,
        };
        let mut a = MessageAssembler::new();
        assert_eq!(
            a.feed(h.as_bytes()),
            Err(XsRingError::PayloadTooLong { len: 4097 })
        );
        assert!(!a.in_progress());
    }

    #[test]
    fn large_message_crosses_the_ring_in_pieces() {
        let mut page = ArrayPage::new();
        let payload: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let mut out = OutQueue::new();
        out.push(&frame(XS_WRITE, 9, 0, &payload).unwrap());
        let mut asm = MessageAssembler::new();
        let mut got = None;
        for _ in 0..10 {
            out.flush_requests(&mut page).unwrap();
            if let Some(m) = read_request_message(&mut page, &mut asm).unwrap() {
                got = Some(m);
                break;
            }
        }
        assert!(out.is_empty());
        let m = got.expect("message delivered");
        assert_eq!(m.header.req_id, 9);
        assert_eq!(m.payload, payload);
    }

    #[test]
    fn responses_flow_the_other_way() {
        let mut page = ArrayPage::new();
        let f = frame(XS_READ, 4, 0, b"value").unwrap();
        assert_eq!(write_response(&mut page, &f), Ok(f.len()));
        let mut asm = MessageAssembler::new();
        let m = read_response_message(&mut page, &mut asm).unwrap().unwrap();
        assert_eq!(m.payload, b"value");
        assert_eq!(read_response_message(&mut page, &mut asm), Ok(None));
        // The request ring was untouched.
        assert_eq!(read_request(&mut page, &mut [0; 16]), Ok(0));
    }

    #[test]
    fn hostile_request_producer_is_reported_without_reading() {
        let mut page = ArrayPage::new();
        let prod_off = offset_of!(XenstoreDomainInterface, req_prod);
        page.store_release_u32(prod_off, 1025);
        let mut asm = MessageAssembler::new();
        assert!(matches!(
            read_request_message(&mut page, &mut asm),
            Err(XsRingError::Ring(RingError::IndexOverrun {
                prod: 1025,
                ..
            }))
        ));
        report_error(&mut page, XENSTORE_ERROR_RINGIDX);
        assert_eq!(error(&page), XENSTORE_ERROR_RINGIDX);
    }
}
