//! The kernel heap: the `#[global_allocator]` behind `alloc` (used by the xenstore server).
//!
//! A 1 MiB static arena managed first-fit by the portable [`FreeList`]; this file only turns its
//! offsets into pointers. The lock is a spinlock: never allocate in the event upcall or a trap
//! handler, which could interrupt a holder and spin forever.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use guest_kernel::heap::FreeList;
use spin::Mutex;

/// Size of the arena.
const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

/// The arena. Only reached through raw pointers handed out by [`KernelHeap`].
static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

struct KernelHeap {
    free: Mutex<FreeList<256>>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    free: Mutex::new(FreeList::new(HEAP_SIZE)),
};

fn arena_base() -> *mut u8 {
    (&raw mut ARENA).cast::<u8>()
}

// SAFETY: `alloc` returns blocks of `layout.size()` bytes aligned to `layout.align()` inside
// the arena, never handed out twice while live: the free list hands out each free byte once and
// gets it back only through `dealloc`, under one lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = arena_base();
        match self
            .free
            .lock()
            .alloc(base as usize, layout.size(), layout.align())
        {
            // SAFETY: the free list only returns offsets with offset + size <= HEAP_SIZE, so the
            // pointer stays inside the arena.
            Some(off) => unsafe { base.add(off) },
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The caller guarantees `ptr` came from `alloc` with this layout (GlobalAlloc's contract),
        // so it lies inside the arena.
        let off = ptr as usize - arena_base() as usize;
        self.free.lock().free(off, layout.size());
    }
}
