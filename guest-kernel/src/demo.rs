//! The demo protocol dom0 and a domU agree on (`domu/mod.rs` describes the exchange): the
//! pattern the domU grants and the checksum both sides print.

/// The first grant reference dom0 is told about holds this pattern (byte i).
pub fn pattern(domid: u16, i: usize) -> u8 {
    (i as u32 * 7 + u32::from(domid) * 13 + 1) as u8
}

/// The checksum both sides print: sum of the pattern's bytes.
pub fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().enumerate().fold(0u32, |s, (i, &b)| {
        s.wrapping_add((i as u32 + 1) * u32::from(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_and_checksum_are_stable() {
        let page: alloc::vec::Vec<u8> = (0..4096).map(|i| pattern(1, i)).collect();
        assert_eq!(page[0], 14);
        assert_eq!(page[1], 21);
        assert_eq!(checksum(&[1, 2]), 5);
        assert_ne!(checksum(&page), 0);
    }
}
