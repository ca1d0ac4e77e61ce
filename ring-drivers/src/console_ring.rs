//! The PV console ring (`io/console.h`): guest output to the console daemon, input back.
//!
//! The page holds `struct xencons_interface`: the guest (front end) produces into `out` (2048
//! bytes) and consumes `in` (1024 bytes); the back end (dom0's console daemon) does the opposite.
//! The back end treats `out_prod` as hostile: a producer more than 2048 bytes ahead of `out_cons`
//! is an error and nothing is consumed. [`LinePrefixer`] turns the drained bytes into
//! `(dN) text` lines, as xenconsoled's log does.

use alloc::vec::Vec;
use core::mem::offset_of;

use hypercall_abi::io::console::{XenconsInterface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};

use crate::byte_ring::{ByteRing, RingError};
use crate::shared_page::SharedPage;
use crate::xenbus::push_decimal;

/// Guest output: front end produces, back end consumes.
const OUT: ByteRing = ByteRing {
    data: offset_of!(XenconsInterface, out),
    size: XENCONS_OUT_SIZE,
    cons: offset_of!(XenconsInterface, out_cons),
    prod: offset_of!(XenconsInterface, out_prod),
};

/// Guest input: back end produces, front end consumes.
const IN: ByteRing = ByteRing {
    data: offset_of!(XenconsInterface, r#in),
    size: XENCONS_IN_SIZE,
    cons: offset_of!(XenconsInterface, in_cons),
    prod: offset_of!(XenconsInterface, in_prod),
};

/// Front end: queues as much of `data` as fits in `out`; returns how many bytes (0 when full;
/// the caller notifies the back end and retries the rest later).
pub fn write<P: SharedPage + ?Sized>(page: &mut P, data: &[u8]) -> Result<usize, RingError> {
    OUT.produce(page, data)
}

/// Front end: copies waiting input from `in` into `buf`; returns how many bytes.
pub fn read<P: SharedPage + ?Sized>(page: &mut P, buf: &mut [u8]) -> Result<usize, RingError> {
    IN.consume(page, buf)
}

/// Back end: hands everything waiting in `out` to `sink` (in one or more copied chunks, never a
/// reference into the page) and frees the space; returns the bytes drained.
pub fn drain_out<P: SharedPage + ?Sized>(
    page: &mut P,
    sink: &mut impl FnMut(&[u8]),
) -> Result<usize, RingError> {
    // Nothing waiting (the usual case of a back end's poll): no buffer to zero.
    if OUT.pending(page)? == 0 {
        return Ok(0);
    }
    let mut buf = [0u8; 256];
    let mut total = 0;
    // Bounded: at most one ring's worth per call, even if the guest keeps producing.
    while total < XENCONS_OUT_SIZE {
        let want = buf.len().min(XENCONS_OUT_SIZE - total);
        let n = OUT.consume(page, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        sink(&buf[..n]);
        total += n;
    }
    Ok(total)
}

/// Back end: output bytes waiting in `out`.
pub fn out_waiting<P: SharedPage + ?Sized>(page: &P) -> Result<usize, RingError> {
    OUT.pending(page)
}

/// Back end: queues as much of `data` (keyboard input) as fits in `in`; returns how many bytes.
pub fn push_in<P: SharedPage + ?Sized>(page: &mut P, data: &[u8]) -> Result<usize, RingError> {
    IN.produce(page, data)
}

/// Longest line [`LinePrefixer`] holds before emitting it anyway.
pub const LINE_MAX: usize = 1024;

/// Splits a domain's console output into lines and prefixes each with `(dN) `.
#[derive(Debug)]
pub struct LinePrefixer {
    prefix: Vec<u8>,
    line: Vec<u8>,
}

impl LinePrefixer {
    /// A prefixer for domain `domid`.
    pub fn new(domid: u16) -> Self {
        let mut prefix = Vec::new();
        prefix.extend_from_slice(b"(d");
        push_decimal(&mut prefix, u64::from(domid));
        prefix.extend_from_slice(b") ");
        let line = prefix.clone();
        LinePrefixer { prefix, line }
    }

    /// Feeds output bytes; `emit` gets each completed line, prefix and `\n` included, in one
    /// slice. `\r` is dropped (guests often write `\r\n`); every other byte outside printable
    /// ASCII is escaped ([`crate::printable`]: Xen strips them from a domU's console output), so
    /// a domain cannot erase its prefix or fake another's line; a line longer than [`LINE_MAX`]
    /// is emitted in pieces.
    pub fn feed(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' => self.emit_line(emit),
                _ => {
                    let line = &mut self.line;
                    crate::printable::escape_byte(b, &mut |e| line.extend_from_slice(e));
                    if self.line.len() - self.prefix.len() >= LINE_MAX {
                        self.emit_line(emit);
                    }
                }
            }
        }
    }

    /// Whether a partial line (no `\n` yet, such as a shell prompt) is waiting.
    pub fn has_partial(&self) -> bool {
        self.line.len() > self.prefix.len()
    }

    /// Emits a pending partial line (for example when the domain dies), if there is one.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if self.line.len() > self.prefix.len() {
            self.emit_line(emit);
        }
    }

    fn emit_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        self.line.push(b'\n');
        emit(&self.line);
        self.line.truncate(self.prefix.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::ArrayPage;

    fn drain_all(page: &mut ArrayPage) -> Vec<u8> {
        let mut got = Vec::new();
        drain_out(page, &mut |b| got.extend_from_slice(b)).unwrap();
        got
    }

    #[test]
    fn output_round_trip_with_wrap() {
        let mut page = ArrayPage::new();
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(write(&mut page, &data), Ok(2048));
        assert_eq!(write(&mut page, &data[2048..]), Ok(0));
        assert_eq!(drain_all(&mut page), &data[..2048]);
        assert_eq!(write(&mut page, &data[2048..]), Ok(952));
        assert_eq!(drain_all(&mut page), &data[2048..]);
        assert_eq!(drain_all(&mut page), b"");
    }

    #[test]
    fn input_round_trip() {
        let mut page = ArrayPage::new();
        assert_eq!(push_in(&mut page, b"ls\n"), Ok(3));
        let mut buf = [0; 8];
        assert_eq!(read(&mut page, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"ls\n");
        // The output ring is separate.
        assert_eq!(drain_all(&mut page), b"");
    }

    #[test]
    fn hostile_out_prod_consumes_nothing() {
        let mut page = ArrayPage::new();
        let prod = offset_of!(XenconsInterface, out_prod);
        let cons = offset_of!(XenconsInterface, out_cons);
        page.store_release_u32(prod, 2049);
        let mut called = false;
        assert_eq!(
            drain_out(&mut page, &mut |_| called = true),
            Err(RingError::IndexOverrun {
                prod: 2049,
                cons: 0,
                size: 2048
            })
        );
        assert!(!called);
        assert_eq!(page.load_acquire_u32(cons), 0);
        // Exactly full is fine.
        page.store_release_u32(prod, 2048);
        assert_eq!(drain_all(&mut page).len(), 2048);
    }

    #[test]
    fn prefixer_splits_lines() {
        let mut p = LinePrefixer::new(12);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut emit = |l: &[u8]| lines.push(l.to_vec());
        p.feed(b"hello\r\nwor", &mut emit);
        p.feed(b"ld\n\npartial", &mut emit);
        assert!(p.has_partial());
        p.flush(&mut emit);
        assert!(!p.has_partial());
        p.flush(&mut emit);
        assert_eq!(
            lines,
            [
                &b"(d12) hello\n"[..],
                b"(d12) world\n",
                b"(d12) \n",
                b"(d12) partial\n"
            ]
        );
    }

    #[test]
    fn prefixer_escapes_what_could_rewrite_the_log() {
        // ESC sequences (erase line, cursor moves), BEL, backspaces, NUL: escaped, so a domain
        // cannot hide its `(dN) ` prefix or pass a line off as the hypervisor's.
        let mut p = LinePrefixer::new(3);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut emit = |l: &[u8]| lines.push(l.to_vec());
        p.feed(
            b"\x1b[2K\x1b[1G(XEN) fake\x07\x08\x08\x00 \\ok\tend\n",
            &mut emit,
        );
        p.feed(b"(XEN) second\r\n", &mut emit);
        assert_eq!(
            lines,
            [
                &b"(d3) \\x1b[2K\\x1b[1G(XEN) fake\\x07\\x08\\x08\\x00 \\\\ok\tend\n"[..],
                b"(d3) (XEN) second\n",
            ]
        );
        for l in &lines {
            assert!(l.starts_with(b"(d3) "));
            assert!(l[..l.len() - 1]
                .iter()
                .all(|&c| (b' '..=b'~').contains(&c) || c == b'\t'));
        }
    }

    #[test]
    fn prefixer_bounds_long_lines() {
        let mut p = LinePrefixer::new(0);
        let mut lines = Vec::new();
        p.feed(&[b'x'; LINE_MAX + 5], &mut |l: &[u8]| lines.push(l.len()));
        assert_eq!(lines, [5 + LINE_MAX + 1]);
        p.flush(&mut |l: &[u8]| assert_eq!(l, b"(d0) xxxxx\n"));
    }
}
