//! The hypervisor's only heap: a bump arena in `.bss` for the one crate that needs `alloc`, the
//! `iced-x86` decoder of the page-table-write emulation (`xen_core::emulate::pte_write`), which
//! builds its opcode tables (about 360 KiB, once) on first use and allocates nothing per
//! instruction. [`warm_up`] makes that first use happen at boot, before any guest runs, so a
//! guest's fault never allocates; memory is never reused (a free is a no-op), and an exhausted
//! arena returns null (an allocation error: at boot, a clear failure).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Size of the arena.
const ARENA_SIZE: usize = 768 * 1024;

#[repr(C, align(4096))]
struct Arena(core::cell::UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: disjoint parts of the arena are handed out once each (the bump offset is atomic), so
// no two users share a byte.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(core::cell::UnsafeCell::new([0; ARENA_SIZE]));
/// Bytes of the arena handed out so far.
static USED: AtomicUsize = AtomicUsize::new(0);

struct Bump;

// SAFETY: `alloc` returns a block of the arena aligned as asked and never handed out before (or
// null when none is left); `dealloc` keeps the block out of use for good.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ARENA.0.get() as usize;
        let mut used = USED.load(Ordering::Relaxed);
        loop {
            let start = (base + used).next_multiple_of(layout.align()) - base;
            let Some(end) = start
                .checked_add(layout.size())
                .filter(|&e| e <= ARENA_SIZE)
            else {
                return core::ptr::null_mut();
            };
            match USED.compare_exchange(used, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (base + start) as *mut u8,
                Err(now) => used = now,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump;

/// Builds the decoder's tables now (one decode), and returns the bytes of the arena in use.
pub fn warm_up() -> usize {
    xen_core::emulate::warm_up_decoder();
    USED.load(Ordering::Relaxed)
}
