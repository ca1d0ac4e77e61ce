//! The guest's command line (`start_info.cmd_line`): space-separated words, `key=value` or `flag`.

/// A parsed view of a NUL-terminated command-line buffer.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Wraps a command line given as bytes: stops at the first NUL, and keeps only the valid UTF-8
    /// prefix (a command line is ASCII; anything else is ignored rather than trusted).
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let bytes = &bytes[..end];
        let text = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        };
        Cmdline { text }
    }

    /// The words before a bare `--` word, and the text after it (trimmed), if there is one: dom0
    /// passes what follows `--` to the domU it builds (`build-domu`), and reads only what comes
    /// before.
    pub fn split_dashes(self) -> (Cmdline<'a>, Option<&'a str>) {
        let t = self.text;
        for word in self.words() {
            if word == "--" {
                // `word` is a piece of `t`: its offset is where the split goes.
                let at = word.as_ptr() as usize - t.as_ptr() as usize;
                return (Cmdline { text: &t[..at] }, Some(t[at + 2..].trim()));
            }
        }
        (self, None)
    }

    /// The whole command line.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The words of the command line.
    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace()
    }

    /// The value of the last `key=value` word for `key` (later words override earlier ones).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// Whether `flag` appears as a bare word or as `flag=<anything>`.
    pub fn has(&self, flag: &str) -> bool {
        self.words()
            .any(|w| w == flag || w.split_once('=').is_some_and(|(k, _)| k == flag))
    }
}

/// A memory size as `xl mem-set` takes it, in KiB: a number with an optional suffix `k`, `m`,
/// `g` or `t` (either case; none means MiB, as xl's `parse_mem_size_kb`). `None` for anything
/// else, or a size that does not fit.
pub fn parse_mem_kib(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match suffix {
        "k" | "K" => 0,
        "" | "m" | "M" => 10,
        "g" | "G" => 20,
        "t" | "T" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_follows_a_bare_double_dash_is_split_off() {
        let c =
            Cmdline::from_bytes(b"build-domu bench-copies=1 -- name=bench mem=16M pingpong=5\0");
        let (own, rest) = c.split_dashes();
        assert_eq!(own.as_str(), "build-domu bench-copies=1 ");
        assert!(own.has("build-domu") && !own.has("pingpong") && own.get("mem").is_none());
        assert_eq!(rest, Some("name=bench mem=16M pingpong=5"));
        let (own, rest) = Cmdline::from_bytes(b"a=--b c--").split_dashes();
        assert_eq!((own.as_str(), rest), ("a=--b c--", None));
        let (own, rest) = Cmdline::from_bytes(b"--").split_dashes();
        assert_eq!((own.as_str(), rest), ("", Some("")));
        // Any ASCII whitespace separates words, as for `get`.
        let (own, rest) = Cmdline::from_bytes(b"a\t--\tmem=16M  x").split_dashes();
        assert_eq!((own.as_str(), rest), ("a\t", Some("mem=16M  x")));
        assert!(own.get("mem").is_none());
    }

    #[test]
    fn memory_sizes_are_read_as_xl_reads_them() {
        assert_eq!(parse_mem_kib("12"), Some(12 * 1024));
        assert_eq!(parse_mem_kib("12M"), Some(12 * 1024));
        assert_eq!(parse_mem_kib("12288k"), Some(12 * 1024));
        assert_eq!(parse_mem_kib("1g"), Some(1 << 20));
        assert_eq!(parse_mem_kib("2T"), Some(2 << 30));
        for bad in ["", "m", "12x", "-1", "1.5M", "12 M", "99999999999999999999"] {
            assert_eq!(parse_mem_kib(bad), None, "{bad:?}");
        }
        assert_eq!(parse_mem_kib("18446744073709551615t"), None);
    }

    #[test]
    fn stops_at_nul_and_splits_words() {
        let mut buf = [0u8; 64];
        buf[..27].copy_from_slice(b"suite=conformance  verbose ");
        let c = Cmdline::from_bytes(&buf);
        assert_eq!(c.words().count(), 2);
        assert_eq!(c.get("suite"), Some("conformance"));
        assert!(c.has("verbose"));
        assert!(c.has("suite"));
        assert!(!c.has("suit"));
        assert_eq!(c.get("verbose"), None);
    }

    #[test]
    fn later_values_override_earlier_ones() {
        let c = Cmdline::from_bytes(b"exit=poweroff exit=reboot");
        assert_eq!(c.get("exit"), Some("reboot"));
    }

    #[test]
    fn invalid_utf8_is_cut_at_the_first_bad_byte() {
        let c = Cmdline::from_bytes(b"a=1 \xff b=2");
        assert_eq!(c.as_str(), "a=1 ");
        assert_eq!(c.get("b"), None);
    }

    #[test]
    fn empty_command_line() {
        let c = Cmdline::from_bytes(&[0u8; 8]);
        assert_eq!(c.words().count(), 0);
        assert_eq!(c.get("x"), None);
    }
}
