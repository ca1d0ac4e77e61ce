//! The kernel heap: the `#[global_allocator]` behind `alloc` (used by the xenstore server and the
//! dom0 services).
//!
//! A 4 MiB static arena managed by `linked_list_allocator` (a first-fit list threaded through the
//! free blocks themselves, so fragmentation never loses memory). It is initialised on first use.
//! The lock is a spinlock: never allocate in the event upcall or a trap handler, which could
//! interrupt a holder and spin forever.

use core::alloc::{GlobalAlloc, Layout};

use linked_list_allocator::Heap;
use spin::Mutex;

/// Size of the arena.
const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

/// The arena. Only reached through the pointers [`KernelHeap`] hands out.
static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

struct KernelHeap {
    heap: Mutex<Option<Heap>>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: Mutex::new(None),
};

impl KernelHeap {
    fn with<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        let mut guard = self.heap.lock();
        let heap = guard.get_or_insert_with(|| {
            // SAFETY: the arena is static (valid for the kernel's lifetime), used by nothing but
            // this heap, and handed to it exactly once (under the lock, when still `None`).
            unsafe { Heap::new((&raw mut ARENA).cast::<u8>(), HEAP_SIZE) }
        });
        f(heap)
    }
}

// SAFETY: `Heap` returns blocks of the layout's size and alignment inside the arena, each handed
// out once until it is given back through `dealloc`; every access is under one lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h| {
            h.allocate_first_fit(layout)
                .map_or(core::ptr::null_mut(), |p| p.as_ptr())
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout
            // (GlobalAlloc's contract).
            self.with(|h| unsafe { h.deallocate(p, layout) });
        }
    }
}
