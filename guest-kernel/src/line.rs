//! A fixed-size line buffer implementing `core::fmt::Write`, so the kernel can format a whole line
//! and hand it to `console_io` in one hypercall (one line, one write: logs never interleave), and
//! a splitter that turns the bytes a user program writes into such lines.

use core::fmt;

/// A line of at most `N` bytes. Text past the end is dropped and the line is marked truncated.
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> LineBuf<N> {
    /// An empty line.
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Whether text was dropped because the buffer was full.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// The text of the line. The buffer only ever receives `&str`s, but truncation may cut a
/// multi-byte character: such a tail is left out.
impl<const N: usize> fmt::Display for LineBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.as_bytes();
        let text = match core::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        f.write_str(text)
    }
}

/// Cuts a byte stream (what a user program passes to `write`) into lines of at most `N` bytes,
/// so the kernel can print each one with a prefix. Bytes that are not printable ASCII become `?`:
/// user output is not trusted to be text, and must not move the console's cursor around.
pub struct LineSplitter<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The last line was emitted because it filled the buffer: a newline right after it ends
    /// that line rather than adding an empty one.
    cut: bool,
}

impl<const N: usize> LineSplitter<N> {
    /// A splitter with nothing buffered.
    pub const fn new() -> Self {
        LineSplitter {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    /// Adds `bytes`, calling `emit` with every line completed by a newline (without it), or
    /// filled up to `N` bytes.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                if !(self.cut && self.len == 0) {
                    self.emit(&mut emit);
                }
                self.cut = false;
                continue;
            }
            self.cut = false;
            self.buf[self.len] = if b == b'\t' || (0x20..0x7f).contains(&b) {
                b
            } else {
                b'?'
            };
            self.len += 1;
            if self.len == N {
                self.emit(&mut emit);
                self.cut = true;
            }
        }
    }

    /// Emits what is buffered as a last, unterminated line (nothing if the buffer is empty).
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if self.len > 0 {
            self.emit(&mut emit);
        }
    }

    fn emit(&mut self, emit: &mut impl FnMut(&str)) {
        // Only printable ASCII and tabs were stored, so this is always valid UTF-8.
        emit(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"));
        self.len = 0;
    }
}

impl<const N: usize> Default for LineSplitter<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    fn split<const N: usize>(s: &mut LineSplitter<N>, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        s.push(bytes, |l| out.push(l.to_string()));
        out
    }

    #[test]
    fn splits_at_newlines_across_writes() {
        let mut s = LineSplitter::<64>::new();
        assert_eq!(split(&mut s, b"hello from"), Vec::<String>::new());
        assert_eq!(
            split(&mut s, b" user mode\nsecond\n\nthi"),
            ["hello from user mode", "second", ""]
        );
        let mut rest = Vec::new();
        s.finish(|l| rest.push(l.to_string()));
        assert_eq!(rest, ["thi"]);
        s.finish(|_| panic!("nothing left"));
    }

    #[test]
    fn long_lines_are_cut_and_control_bytes_replaced() {
        let mut s = LineSplitter::<4>::new();
        assert_eq!(
            split(&mut s, b"abcdefg\x1b[\xff\tz\n"),
            ["abcd", "efg?", "[?\tz"]
        );
        // The newline after a cut ends that line; the next one is a real empty line.
        assert_eq!(split(&mut s, b"\nx\n"), ["", "x"]);
    }

    #[test]
    fn formats_and_truncates() {
        let mut l = LineBuf::<8>::new();
        write!(l, "ab{}", 12).unwrap();
        assert_eq!(l.as_bytes(), b"ab12");
        assert!(!l.truncated());
        write!(l, "3456789").unwrap();
        assert_eq!(l.as_bytes(), b"ab123456");
        assert!(l.truncated());
        l.clear();
        assert_eq!(l.as_bytes(), b"");
    }

    #[test]
    fn displays_as_text_without_a_cut_character() {
        let mut l = LineBuf::<4>::new();
        write!(l, "ab\u{e9}\u{e9}").unwrap();
        assert!(l.truncated());
        assert_eq!(format!("{l}"), "ab\u{e9}");
    }
}
