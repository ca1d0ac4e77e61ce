//! The event upcall: what the kernel does when Xen enters its event callback.
//!
//! Xen sets a port's bit in `evtchn_pending`, the word's bit in vCPU 0's `evtchn_pending_sel` and
//! `evtchn_upcall_pending`, and, if `evtchn_upcall_mask` is 0, bounces to the event callback with
//! upcalls masked (`traps.rs` routes that to [`upcall`]). The 2-level protocol (`xen.h`,
//! "Event channels"): clear `evtchn_upcall_pending`, exchange the selector with 0, and for each
//! selected word handle the bits that are pending and not masked, clearing each pending bit.
//!
//! This kernel has no drivers: it only records which ports fired, for the cases to [`take`].

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::shared_info::{self, Bitmap};

/// Ports seen by the upcall and not yet taken: a copy of the 4096-bit pending bitmap.
static RECEIVED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Number of upcalls taken so far.
static UPCALLS: AtomicU32 = AtomicU32::new(0);

/// Handles one upcall (called by the trap dispatcher, with upcalls masked).
pub fn upcall() {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    let mut selector = shared_info::ack_upcall();
    while selector != 0 {
        let w = selector.trailing_zeros();
        selector &= selector - 1;
        let mut ready = shared_info::word(Bitmap::Pending, w) & !shared_info::word(Bitmap::Mask, w);
        while ready != 0 {
            let bit = ready.trailing_zeros();
            ready &= ready - 1;
            shared_info::clear_bit(Bitmap::Pending, w * 64 + bit);
            RECEIVED[w as usize].fetch_or(1 << bit, Ordering::SeqCst);
        }
    }
}

/// Whether `port` fired since the last call; forgets it.
pub fn take(port: u32) -> bool {
    let bit = 1u64 << (port % 64);
    RECEIVED[(port / 64) as usize].fetch_and(!bit, Ordering::SeqCst) & bit != 0
}

/// Number of upcalls taken since boot (cases compare two readings).
pub fn upcalls() -> u32 {
    UPCALLS.load(Ordering::SeqCst)
}
