//! The data of the guests' `blk-selftest`: an xorshift64 stream the domU writes through its
//! front end and the host test finds again on the disk image.

use alloc::vec::Vec;

/// One xorshift64 step: x ^= x << 13; x ^= x >> 7; x ^= x << 17.
pub fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The xorshift64 stream: state = seed; each step [`xorshift64`]; emit x as 8 little-endian
/// bytes; the first `len` bytes.
pub fn xorshift_stream(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = xorshift64(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_steps_in_little_endian_cut_to_length() {
        let (a, b) = (xorshift64(7), xorshift64(xorshift64(7)));
        let mut want = a.to_le_bytes().to_vec();
        want.extend_from_slice(&b.to_le_bytes()[..4]);
        assert_eq!(xorshift_stream(7, 12), want);
        assert_eq!(xorshift64(1), 0x4082_2041);
        assert!(
            xorshift_stream(0, 16).iter().all(|&b| b == 0),
            "0 is a fixed point"
        );
    }
}
