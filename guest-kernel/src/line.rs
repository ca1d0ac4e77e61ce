//! A fixed-size line buffer implementing `core::fmt::Write`, so the kernel can format a whole line
//! and hand it to `console_io` in one hypercall (one line, one write: logs never interleave).

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

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

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
