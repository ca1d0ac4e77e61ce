//! Node names: validation and canonicalisation, as C xenstored's `is_valid_nodename`.
//!
//! A path is absolute (`/local/domain/1/x`), relative to the caller's home
//! (`/local/domain/<domid>`), or, for watches only, a special name (`@introduceDomain`).
//! Allowed characters are `A-Za-z0-9-/_@`; no `//`, no trailing `/` except for the root.

use alloc::string::String;

use hypercall_abi::errno::Errno;
use hypercall_abi::io::xs_wire::{XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};
use ring_drivers::xenbus::push_decimal;

/// `/local/domain/<domid>`, a domain's home.
pub fn home(domid: u16) -> String {
    let mut v = alloc::vec::Vec::from(&b"/local/domain/"[..]);
    push_decimal(&mut v, u64::from(domid));
    // Only ASCII went in.
    String::from_utf8(v).unwrap_or_default()
}

fn valid_chars(p: &[u8]) -> bool {
    p.iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@'))
}

/// The canonical form of the path argument `raw` sent by `domid`. Special names (`@...`) are
/// accepted only if `allow_special`. Returns the path and whether it was relative.
pub fn canonical(domid: u16, raw: &[u8], allow_special: bool) -> Result<(String, bool), Errno> {
    if raw.is_empty() || !valid_chars(raw) {
        return Err(Errno::EINVAL);
    }
    // valid_chars admitted only ASCII.
    let s = core::str::from_utf8(raw).map_err(|_| Errno::EINVAL)?;
    if s.starts_with('@') {
        if !allow_special || s.len() > XENSTORE_REL_PATH_MAX || s.contains('/') {
            return Err(Errno::EINVAL);
        }
        return Ok((String::from(s), false));
    }
    let relative = !s.starts_with('/');
    let mut abs = String::new();
    if relative {
        abs.push_str(&home(domid));
        abs.push('/');
    }
    abs.push_str(s);
    if (abs.ends_with('/') && abs != "/") || abs.contains("//") || abs.len() > XENSTORE_ABS_PATH_MAX
    {
        return Err(Errno::EINVAL);
    }
    Ok((abs, relative))
}

/// The parent of an absolute path other than `/`.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether `child` is `parent` or lies under it.
pub fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    child == parent
        || (child.starts_with(parent) && child.as_bytes().get(parent.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical(3, b"/a/b", false), Ok(("/a/b".into(), false)));
        assert_eq!(
            canonical(3, b"device/vbd", false),
            Ok(("/local/domain/3/device/vbd".into(), true))
        );
        assert_eq!(canonical(0, b"/", false), Ok(("/".into(), false)));
        assert_eq!(
            canonical(0, b"@releaseDomain", true),
            Ok(("@releaseDomain".into(), false))
        );
        for bad in [
            &b""[..],
            b"/a/",
            b"a//b",
            b"/a b",
            b"/\xc3\xa9",
            b"@introduceDomain",
            b"/a\0",
        ] {
            assert_eq!(canonical(0, bad, false), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(canonical(0, b"@x/y", true), Err(Errno::EINVAL));
        let long = alloc::vec![b'a'; XENSTORE_ABS_PATH_MAX];
        assert_eq!(canonical(0, &long, false), Err(Errno::EINVAL)); // plus the home prefix
        let mut abs = alloc::vec![b'/'];
        abs.extend(alloc::vec![b'a'; XENSTORE_ABS_PATH_MAX - 1]);
        assert!(canonical(0, &abs, false).is_ok());
    }

    #[test]
    fn parents_and_children() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/ab", "/"));
        assert!(!is_child("@releaseDomain", "/"));
    }
}
