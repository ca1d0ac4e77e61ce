//! Console formatting: every line the hypervisor prints starts with `(XEN) `, as real Xen's do.
//!
//! The prefix is state across calls (a line may be printed in several pieces), so it lives in a
//! small writer adapter rather than in each `printk!`. The serial driver underneath turns `\n`
//! into `\r\n`, as Xen's does.

use core::fmt;

/// The prefix Xen puts in front of each line of its own console output.
pub const XEN_PREFIX: &str = "(XEN) ";

/// A [`fmt::Write`] adapter that inserts a prefix at the start of every line.
pub struct LinePrefixer<W> {
    inner: W,
    prefix: &'static str,
    at_line_start: bool,
}

impl<W> LinePrefixer<W> {
    /// Wraps `inner`; the first byte written will be preceded by `prefix`.
    pub const fn new(inner: W, prefix: &'static str) -> Self {
        Self {
            inner,
            prefix,
            at_line_start: true,
        }
    }

    /// The wrapped writer (for example to initialise the device behind it).
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Whether the next byte written starts a new line.
    pub fn at_line_start(&self) -> bool {
        self.at_line_start
    }
}

impl<W: fmt::Write> fmt::Write for LinePrefixer<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // `split_inclusive` keeps each line's '\n', so lines are written whole, prefix first.
        for line in s.split_inclusive('\n') {
            if self.at_line_start {
                self.inner.write_str(self.prefix)?;
            }
            self.inner.write_str(line)?;
            self.at_line_start = line.ends_with('\n');
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    fn prefixed(pieces: &[&str]) -> String {
        let mut w = LinePrefixer::new(String::new(), XEN_PREFIX);
        for piece in pieces {
            w.write_str(piece).unwrap();
        }
        w.inner
    }

    #[test]
    fn every_line_gets_the_prefix_once() {
        assert_eq!(prefixed(&["a\nb\n"]), "(XEN) a\n(XEN) b\n");
    }

    #[test]
    fn a_line_printed_in_pieces_gets_one_prefix() {
        assert_eq!(prefixed(&["ab", "c\n", "d"]), "(XEN) abc\n(XEN) d");
    }

    #[test]
    fn empty_lines_are_prefixed_like_xen_does() {
        // Xen prints "(XEN) " on blank lines (for example around its panic banner).
        assert_eq!(prefixed(&["\n\n"]), "(XEN) \n(XEN) \n");
    }

    #[test]
    fn empty_writes_print_nothing() {
        let mut w = LinePrefixer::new(String::new(), XEN_PREFIX);
        w.write_str("").unwrap();
        assert_eq!(w.inner, "");
        assert!(w.at_line_start());
    }
}
