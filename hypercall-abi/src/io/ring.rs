//! The generic shared request/response ring, mirroring `io/ring.h`.
//!
//! A ring page starts with a 64-byte [`SharedRingHeader`] followed by a power-of-two number of
//! entries, each the size of the larger of the request and response types. Indices are
//! free-running `u32`s masked only when indexing; only the front end initialises the page
//! (`SHARED_RING_INIT`: producers 0, events 1).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{assert_layout, zeroed_default};

/// `RING_IDX`: a free-running ring index.
#[doc(alias = "RING_IDX")]
pub type RingIdx = u32;

/// log2 of the page size used by ring protocols (always 4 KiB).
pub const XEN_PAGE_SHIFT: u32 = 12;
/// The page size used by ring protocols (Rust-side convenience for `1 << XEN_PAGE_SHIFT`).
pub const XEN_PAGE_SIZE: usize = 1 << XEN_PAGE_SHIFT;

/// Header of every `DEFINE_RING_TYPES` shared ring (`struct NAME_sring` before `ring[]`).
#[doc(alias = "NAME_sring")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedRingHeader {
    /// Requests produced by the front end.
    pub req_prod: RingIdx,
    /// Back end wants a notification when `req_prod` passes this.
    pub req_event: RingIdx,
    /// Responses produced by the back end.
    pub rsp_prod: RingIdx,
    /// Front end wants a notification when `rsp_prod` passes this.
    pub rsp_event: RingIdx,
    /// Protocol-private union (`netif.smartpoll_active`, `tapif_user.msg`, `pvt_pad[4]`).
    pub pvt: [u8; 4],
    /// Padding up to 64 bytes (`__pad` in C).
    pub pad: [u8; 44],
}
assert_layout!(SharedRingHeader, 64, {
    req_prod: 0, req_event: 4, rsp_prod: 8, rsp_event: 12, pvt: 16, pad: 20,
});
zeroed_default!(SharedRingHeader);

impl SharedRingHeader {
    /// The header as `SHARED_RING_INIT` leaves it.
    #[doc(alias = "SHARED_RING_INIT")]
    pub const INIT: SharedRingHeader = SharedRingHeader {
        req_prod: 0,
        req_event: 1,
        rsp_prod: 0,
        rsp_event: 1,
        pvt: [0; 4],
        pad: [0; 44],
    };
}

/// Entries of `entry` bytes that fit in `page` bytes after the header, rounded down to a power
/// of two: `__CONST_RING_SIZE` (`__RD32`). `entry` is the size of the request/response union.
#[doc(alias = "__CONST_RING_SIZE")]
pub const fn ring_size(page: usize, entry: usize) -> usize {
    let header = core::mem::size_of::<SharedRingHeader>();
    if entry == 0 || page <= header {
        return 0;
    }
    let n = (page - header) / entry;
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// `RING_PUSH_*_AND_CHECK_NOTIFY`: after moving a producer from `old` to `new`, the peer must be
/// notified iff its `event` index lies in `(old, new]` (unsigned, wrapping arithmetic).
pub const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_round_down_to_a_power_of_two() {
        assert_eq!(ring_size(4096, 112), 32); // blkif: 36 entries fit
        assert_eq!(ring_size(4096, 12), 256); // netif tx: 336 fit
        assert_eq!(ring_size(4096, 8), 256); // netif rx: 504 fit
        assert_eq!(ring_size(4096, 4032), 1);
        assert_eq!(ring_size(4096, 4033), 0);
        assert_eq!(ring_size(64, 8), 0);
        assert_eq!(ring_size(4096, 0), 0);
        assert_eq!(ring_size(8192, 112), 64);
    }

    #[test]
    fn notify_only_when_event_was_crossed() {
        assert!(need_notify(0, 1, 1));
        assert!(!need_notify(1, 2, 1));
        assert!(need_notify(u32::MAX, 1, 0)); // wrapped past the event
        assert!(!need_notify(5, 5, 5));
    }
}
