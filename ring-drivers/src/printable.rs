//! Guest-controlled text made safe for dom0's log: printable ASCII kept, anything else escaped.
//!
//! dom0 prints what domUs choose: their console output (`(dN) ` lines) and the name a domU
//! carries on its command line, read from its own start_info page. Written raw to a terminal,
//! control characters and escape sequences in that text could erase or rewrite the `(dN) `
//! prefix, move the cursor, or fake a hypervisor line (`(XEN) ...`) in the operator's log. Xen
//! strips every byte outside `isprint` (keeping `\t`) from a domU's console write before
//! `guest_printk` prefixes it (`guest_console_write` in `xen/drivers/char/console.c`); we escape
//! instead of stripping, so the log still shows what the domain sent: a byte outside
//! `0x20..=0x7e` (other than `\t`) becomes `\xNN`, and `\` itself becomes `\\`, which keeps the
//! escaping unambiguous. Bytes from `0x80` up are escaped too (UTF-8 included): a log line is
//! then plain ASCII whatever the domain wrote.

use alloc::string::String;

/// Whether `b` goes into the log as it is.
pub const fn is_printable(b: u8) -> bool {
    matches!(b, b' '..=b'~' | b'\t') && b != b'\\'
}

/// Hands the escaped form of `b` to `out`: the byte itself if printable, else `\\` or `\xNN`.
pub fn escape_byte(b: u8, out: &mut impl FnMut(&[u8])) {
    if is_printable(b) {
        out(&[b]);
    } else if b == b'\\' {
        out(b"\\\\");
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
    }
}

/// The escaped form of `bytes`, of at most `max` of them (a longer input is cut and marked with
/// a trailing `...`), for guest-chosen names and other short strings.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(max) {
        escape_byte(b, &mut |e| {
            // Every escaped form is ASCII.
            s.extend(e.iter().map(|&c| char::from(c)));
        });
    }
    if bytes.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_passes_through() {
        let text = b"guest-kernel 0.1.0: booted as domU (4096 pages)\t~!";
        assert_eq!(escape(text, 100), core::str::from_utf8(text).unwrap());
    }

    #[test]
    fn control_characters_and_escape_sequences_are_escaped() {
        assert_eq!(
            escape(b"\x1b[2K\r(XEN) fake\x07\x00", 100),
            "\\x1b[2K\\x0d(XEN) fake\\x07\\x00"
        );
        assert_eq!(escape(b"\x7f\x08\n", 100), "\\x7f\\x08\\x0a");
        // Beyond ASCII, UTF-8 or not: escaped byte by byte.
        assert_eq!(escape("µ".as_bytes(), 100), "\\xc2\\xb5");
        assert_eq!(escape(&[0xff, 0x80], 100), "\\xff\\x80");
    }

    #[test]
    fn the_backslash_is_escaped_so_escapes_cannot_be_forged() {
        // A domain writing the four characters `\x1b` shows up differently from one writing ESC.
        assert_eq!(escape(b"\\x1b", 100), "\\\\x1b");
        assert_eq!(escape(b"\x1b", 100), "\\x1b");
    }

    #[test]
    fn long_input_is_cut_and_marked() {
        assert_eq!(escape(b"abcdef", 4), "abcd...");
        assert_eq!(escape(b"abcd", 4), "abcd");
        assert_eq!(escape(b"", 4), "");
        // The limit counts input bytes: escapes can make the output up to four times longer.
        assert_eq!(escape(&[1; 3], 2), "\\x01\\x01...");
    }

    #[test]
    fn every_byte_escapes_to_printable_ascii() {
        for b in 0..=255u8 {
            let e = escape(&[b], 1);
            assert!(
                e.bytes().all(|c| (b' '..=b'~').contains(&c) || c == b'\t'),
                "{b:#x} -> {e:?}"
            );
            assert!(
                e.len() == 1 || e == "\\\\" || e.len() == 4,
                "{b:#x} -> {e:?}"
            );
        }
    }
}
