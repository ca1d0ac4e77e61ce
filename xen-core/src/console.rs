//! Console formatting: every line the hypervisor prints starts with `(XEN) `, as real Xen's do;
//! and serial input, which goes to dom0 or to the hypervisor's debug keys ([`InputSwitch`]).
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

/// Who receives serial input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputOwner {
    /// dom0's console (`CONSOLEIO_read`, announced with `VIRQ_CONSOLE`).
    Dom0,
    /// The hypervisor: keys are debug keys.
    Xen,
}

/// The key that, typed three times in a row, switches serial input between dom0 and the
/// hypervisor (Xen's `CTRL-a`).
pub const SWITCH_KEY: u8 = 0x01;

/// What one typed byte turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A byte for dom0's input queue.
    Dom0(u8),
    /// A debug key for the hypervisor.
    Key(u8),
    /// Input now goes to this owner (the third `CTRL-a`).
    Switched(InputOwner),
    /// A `CTRL-a` that may be part of a switch; nothing to deliver yet.
    Pending,
}

/// Xen's serial input switch (`xen/drivers/char/console.c`, `serial_rx`): bytes go to the current
/// owner, dom0 at boot; three `CTRL-a` in a row switch owners. A `CTRL-a` that turns out not to be
/// part of a switch is not delivered (as on Xen).
#[derive(Clone, Copy, Debug)]
pub struct InputSwitch {
    owner: InputOwner,
    switch_keys: u8,
}

impl Default for InputSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl InputSwitch {
    /// Input to dom0, no `CTRL-a` seen.
    pub const fn new() -> Self {
        InputSwitch {
            owner: InputOwner::Dom0,
            switch_keys: 0,
        }
    }

    /// Who gets input now.
    pub const fn owner(&self) -> InputOwner {
        self.owner
    }

    /// Routes one typed byte.
    pub fn feed(&mut self, byte: u8) -> Input {
        if byte == SWITCH_KEY {
            self.switch_keys += 1;
            if self.switch_keys < 3 {
                return Input::Pending;
            }
            self.switch_keys = 0;
            self.owner = match self.owner {
                InputOwner::Dom0 => InputOwner::Xen,
                InputOwner::Xen => InputOwner::Dom0,
            };
            return Input::Switched(self.owner);
        }
        self.switch_keys = 0;
        match self.owner {
            InputOwner::Dom0 => Input::Dom0(byte),
            InputOwner::Xen => Input::Key(byte),
        }
    }
}

/// Serial input queued for dom0 (Xen's `serial_rx_ring`): bounded; bytes that do not fit are
/// dropped, as on Xen.
#[derive(Clone, Debug)]
pub struct InputQueue<const N: usize> {
    bytes: heapless::Deque<u8, N>,
}

impl<const N: usize> Default for InputQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InputQueue<N> {
    /// Empty.
    pub const fn new() -> Self {
        InputQueue {
            bytes: heapless::Deque::new(),
        }
    }

    /// Queues a byte; false if it was dropped (queue full).
    pub fn push(&mut self, b: u8) -> bool {
        self.bytes.push_back(b).is_ok()
    }

    /// Moves queued bytes into `out`; returns how many.
    pub fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(b) = self.bytes.pop_front() else {
                break;
            };
            out[n] = b;
            n += 1;
        }
        n
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
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

    #[test]
    fn input_goes_to_dom0_until_three_ctrl_a_switch_it_to_xen_and_back() {
        let mut sw = InputSwitch::new();
        assert_eq!(sw.feed(b'l'), Input::Dom0(b'l'));
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.feed(SWITCH_KEY), Input::Switched(InputOwner::Xen));
        assert_eq!(sw.feed(b'q'), Input::Key(b'q'));
        // Two CTRL-a then something else: no switch, and the count starts again.
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.feed(b'e'), Input::Key(b'e'));
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.owner(), InputOwner::Xen);
        assert_eq!(sw.feed(SWITCH_KEY), Input::Pending);
        assert_eq!(sw.feed(SWITCH_KEY), Input::Switched(InputOwner::Dom0));
        assert_eq!(sw.feed(b'x'), Input::Dom0(b'x'));
    }

    #[test]
    fn the_input_queue_is_bounded_and_keeps_order() {
        let mut q = InputQueue::<4>::new();
        for b in *b"abcdef" {
            q.push(b);
        }
        assert_eq!(q.len(), 4, "bytes beyond the queue are dropped");
        let mut out = [0u8; 3];
        assert_eq!(q.pop_into(&mut out), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(q.pop_into(&mut out), 1);
        assert_eq!(out[0], b'd');
        assert!(q.is_empty());
    }
}
