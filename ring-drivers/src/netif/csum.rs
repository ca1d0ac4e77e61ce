//! Checksum completion for `NETTXF_csum_blank` frames (what Linux netback's
//! `skb_checksum_setup` plus the stack's software fallback do): a front end that offloads the
//! checksum leaves the TCP or UDP checksum field unfilled; the back end computes it before the
//! frame goes anywhere else.
//!
//! Handled: Ethernet II with at most one 802.1Q tag, IPv4 (any header length, not a fragment)
//! or IPv6 (no extension headers), TCP or UDP. The checksum is computed from scratch over the
//! pseudo-header and the whole segment, so whatever the front end left in the field (Linux puts
//! the pseudo-header sum there, others zero) does not matter. Anything else, or lengths that do
//! not add up, is [`CsumError`]: the back end drops the frame, as Linux's netback does when
//! `skb_checksum_setup` fails.

use core::ops::Range;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Why a frame's checksum cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumError {
    /// Not IPv4 or IPv6 (after at most one VLAN tag).
    NotIp,
    /// Not TCP or UDP (or an IPv6 extension header first).
    NotTcpUdp,
    /// An IPv4 fragment: the segment is not all here.
    Fragment,
    /// A header or length field does not fit the frame.
    Truncated,
}

fn be16(b: &[u8], at: usize) -> Result<u16, CsumError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(CsumError::Truncated)
}

/// The ones'-complement sum of `data` (big-endian 16-bit words, an odd byte padded), added to
/// `sum` without folding.
pub fn sum_words(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [b] = pairs.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a sum to 16 bits and complements it.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Where a frame's L4 segment is and its pseudo-header sum.
struct L4 {
    seg: Range<usize>,
    proto: u8,
    pseudo: u64,
}

fn locate(frame: &[u8]) -> Result<L4, CsumError> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    at += 2;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, at + 2)?;
        at += 4;
    }
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(at..at + 20).ok_or(CsumError::Truncated)?;
            if ip[0] >> 4 != 4 {
                return Err(CsumError::NotIp);
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || total < ihl || at + total > frame.len() {
                return Err(CsumError::Truncated);
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if frag & 0x3fff != 0 {
                return Err(CsumError::Fragment);
            }
            let proto = ip[9];
            let seg = at + ihl..at + total;
            let pseudo = sum_words(0, &ip[12..20]) + u64::from(proto) + (total - ihl) as u64;
            Ok(L4 { seg, proto, pseudo })
        }
        ETHERTYPE_IPV6 => {
            let ip = frame.get(at..at + 40).ok_or(CsumError::Truncated)?;
            if ip[0] >> 4 != 6 {
                return Err(CsumError::NotIp);
            }
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let start = at + 40;
            if start + len > frame.len() {
                return Err(CsumError::Truncated);
            }
            let proto = ip[6];
            let pseudo = sum_words(0, &ip[8..40]) + u64::from(proto) + len as u64;
            Ok(L4 {
                seg: start..start + len,
                proto,
                pseudo,
            })
        }
        _ => Err(CsumError::NotIp),
    }
}

/// Fills in the TCP or UDP checksum of `frame` (an Ethernet frame whose sender left it
/// blank). Bytes past the IP packet's own length (Ethernet padding) are left alone.
pub fn complete(frame: &mut [u8]) -> Result<(), CsumError> {
    let l4 = locate(frame)?;
    let field = match l4.proto {
        PROTO_TCP if l4.seg.len() >= 20 => 16,
        PROTO_UDP if l4.seg.len() >= 8 => 6,
        PROTO_TCP | PROTO_UDP => return Err(CsumError::Truncated),
        _ => return Err(CsumError::NotTcpUdp),
    };
    let at = l4.seg.start + field;
    frame[at..at + 2].fill(0);
    let mut c = fold(sum_words(l4.pseudo, &frame[l4.seg.clone()]));
    if l4.proto == PROTO_UDP && c == 0 {
        c = 0xffff; // RFC 768: 0 means "no checksum"
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Whether `frame`'s TCP or UDP checksum is right (a UDP checksum of 0 means none and is
/// accepted); `Err` if the frame is not one [`complete`] handles. For tests and debugging.
pub fn verify(frame: &[u8]) -> Result<bool, CsumError> {
    let l4 = locate(frame)?;
    let field = match l4.proto {
        PROTO_TCP if l4.seg.len() >= 20 => 16,
        PROTO_UDP if l4.seg.len() >= 8 => 6,
        PROTO_TCP | PROTO_UDP => return Err(CsumError::Truncated),
        _ => return Err(CsumError::NotTcpUdp),
    };
    if l4.proto == PROTO_UDP && be16(frame, l4.seg.start + field)? == 0 {
        return Ok(true);
    }
    Ok(fold(sum_words(l4.pseudo, &frame[l4.seg])) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// An Ethernet + IPv4 + TCP frame of `payload` bytes, its checksum right.
    fn tcp4(payload: usize, vlan: bool) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 2, 0x00, 0x16, 0x3e, 0, 0, 1]);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload) as u16;
        let mut ip = [
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0, 10, 0, 2, 21, 10, 0, 2, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = fold(sum_words(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&7u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        f.extend_from_slice(&tcp);
        f.extend((0..payload).map(|i| (i * 7 + 3) as u8));
        complete(&mut f).unwrap();
        f
    }

    #[test]
    fn known_tcp_checksum() {
        // The pseudo-header and segment of a small frame, summed by hand:
        // 0a00+0215+0a00+0202+0006+0017 (23 bytes) + 0007+9c40+5018 + "abc" (6162, 6300).
        let mut f = tcp4(0, false);
        f.extend_from_slice(b"ab");
        f.push(b'c');
        let total = 20u16 + 20 + 3;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].fill(0);
        let c = fold(sum_words(0, &f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        complete(&mut f).unwrap();
        let by_hand: u64 = 0x0a00
            + 0x0215
            + 0x0a00
            + 0x0202
            + 0x0006
            + 0x0017
            + 0x0007
            + 0x9c40
            + 0x5018
            + 0x6162
            + 0x6300;
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), fold(by_hand));
        assert_eq!(verify(&f), Ok(true));
    }

    #[test]
    fn a_blank_or_wrong_field_is_replaced_and_padding_ignored() {
        for vlan in [false, true] {
            for payload in [0, 1, 17, 1460] {
                let good = tcp4(payload, vlan);
                assert_eq!(verify(&good), Ok(true));
                let field = if vlan { 54 } else { 50 };
                for blank in [[0, 0], [0xde, 0xad]] {
                    let mut f = good.clone();
                    f[field..field + 2].copy_from_slice(&blank);
                    assert_eq!(verify(&f), Ok(false));
                    f.extend_from_slice(&[0xee; 5]); // Ethernet padding after the IP packet
                    complete(&mut f).unwrap();
                    assert_eq!(&f[..good.len()], &good[..]);
                    assert_eq!(&f[good.len()..], &[0xee; 5]);
                }
            }
        }
    }

    #[test]
    fn udp_over_ipv6_and_the_zero_rule() {
        let mut f = Vec::new();
        f.extend_from_slice(&[
            0x00, 0x16, 0x3e, 0, 0, 2, 0x00, 0x16, 0x3e, 0, 0, 1, 0x86, 0xdd,
        ]);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&12u16.to_be_bytes());
        ip[6] = PROTO_UDP;
        ip[7] = 64;
        ip[8] = 0xfe;
        ip[9] = 0x80;
        ip[23] = 1;
        ip[24] = 0xfe;
        ip[25] = 0x80;
        ip[39] = 2;
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0, 12, 0, 0, 1, 2, 3, 4]);
        complete(&mut f).unwrap();
        assert_eq!(verify(&f), Ok(true));
        assert_ne!(&f[60..62], &[0, 0]);
    }

    #[test]
    fn what_cannot_be_completed_is_an_error_never_a_panic() {
        let good = tcp4(100, false);
        // ARP.
        let mut f = good.clone();
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(complete(&mut f), Err(CsumError::NotIp));
        // ICMP.
        let mut f = good.clone();
        f[23] = 1;
        assert_eq!(complete(&mut f), Err(CsumError::NotTcpUdp));
        // A fragment.
        let mut f = good.clone();
        f[20] = 0x20;
        assert_eq!(complete(&mut f), Err(CsumError::Fragment));
        // Total length past the frame, IHL below 5, a TCP header cut short.
        let mut f = good.clone();
        f[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(complete(&mut f), Err(CsumError::Truncated));
        let mut f = good.clone();
        f[14] = 0x44;
        assert_eq!(complete(&mut f), Err(CsumError::Truncated));
        let mut f = good.clone();
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(complete(&mut f), Err(CsumError::Truncated));
        // Every prefix of a good frame: an error or a completion, never a panic.
        for n in 0..good.len() {
            let mut f = good[..n].to_vec();
            let _ = complete(&mut f);
            let _ = verify(&f);
        }
    }
}
