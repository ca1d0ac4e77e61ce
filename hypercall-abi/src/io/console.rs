//! The PV console ring page, mirroring `io/console.h`.
//!
//! Two byte-stream rings with free-running indices (not an `io/ring.h` ring): `in` carries bytes
//! to the guest, `out` bytes from it. Mask an index with `MASK_XENCONS_IDX` (ring size - 1).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{assert_layout, zeroed_default};

/// `XENCONS_RING_IDX`: a free-running console ring index.
#[doc(alias = "XENCONS_RING_IDX")]
pub type XenconsRingIdx = u32;

/// Size of the `in` ring (bytes to the guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the `out` ring (bytes from the guest).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX(idx, ring)` for a ring of `ring_len` bytes (a power of two).
#[doc(alias = "MASK_XENCONS_IDX")]
pub const fn mask_xencons_idx(idx: XenconsRingIdx, ring_len: usize) -> usize {
    idx as usize & (ring_len - 1)
}

/// The console page shared between the guest and the console back end.
#[doc(alias = "xencons_interface")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Bytes to the guest.
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Bytes from the guest.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Guest's consumer index into `in`.
    pub in_cons: XenconsRingIdx,
    /// Back end's producer index into `in`.
    pub in_prod: XenconsRingIdx,
    /// Back end's consumer index into `out`.
    pub out_cons: XenconsRingIdx,
    /// Guest's producer index into `out`.
    pub out_prod: XenconsRingIdx,
}
assert_layout!(XenconsInterface, 3088, {
    r#in: 0, out: 1024, in_cons: 3072, in_prod: 3076, out_cons: 3080, out_prod: 3084,
});
zeroed_default!(XenconsInterface);
