//! The kernel heap: the `#[global_allocator]` behind `alloc` (used by the xenstore server and the
//! dom0 services).
//!
//! The heap is taken from the domain's free pages at run time, not from the image: it is a list
//! of *arenas*, each a run of consecutive free frames from the frame allocator (`mm.rs`), reached
//! through the direct map (so a heap address is still `pfn << 12`, and a buffer spanning pages is
//! one machine-contiguous run on our hypervisor, as the block driver's DMA wants). The first
//! allocation extends the direct map (`direct_map::init_memory`, page tables built with
//! `mmu_update`: the kernel never writes them itself) and takes the first arena; an allocation no
//! arena can serve takes another, of [`guest_kernel::heap_policy::chunk_pages`] pages (sized to the
//! domain's memory), until the frames run out. Each arena is managed by `linked_list_allocator` (a
//! first-fit list threaded through the free blocks themselves). Arenas are never given back.
//!
//! The lock is a spinlock: never allocate in the event upcall or a trap handler, which could
//! interrupt a holder and spin forever.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use guest_kernel::heap_policy::{chunk_pages, MAX_ARENAS};
use guest_kernel::layout::direct_map_va;
use guest_kernel::paging::PAGE_SIZE;
use linked_list_allocator::Heap;
use spin::Mutex;

use super::{direct_map, mm};

/// The arenas taken so far (the first `len`).
struct Arenas {
    heaps: [Heap; MAX_ARENAS],
    len: usize,
    /// Bytes handed out now, and the most ever.
    used: usize,
    peak: usize,
}

struct KernelHeap {
    arenas: Mutex<Arenas>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    arenas: Mutex::new(Arenas {
        heaps: [const { Heap::empty() }; MAX_ARENAS],
        len: 0,
        used: 0,
        peak: 0,
    }),
};

impl Arenas {
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.heaps[..self.len]
            .iter_mut()
            .find_map(|h| h.allocate_first_fit(layout).ok())
    }

    /// Takes one more arena, big enough for `layout`; `false` when there is no room for one (no
    /// slot left, no run of free frames that long, or no direct map).
    fn grow(&mut self, layout: Layout) -> bool {
        if self.len == MAX_ARENAS || direct_map::init_memory().is_err() {
            return false;
        }
        // Room for the block, its worst-case alignment padding and the allocator's hole header.
        let need = (layout.size() as u64)
            .saturating_add(layout.align() as u64)
            .saturating_add(64)
            .div_ceil(PAGE_SIZE);
        let want = chunk_pages(mm::layout().nr_pages, need);
        // A smaller run when the full chunk is not there: the heap takes what is left.
        let Some((first, pages)) = [want, need]
            .into_iter()
            .find_map(|n| mm::alloc_contiguous(n).map(|p| (p, n)))
        else {
            return false;
        };
        let Ok(size) = usize::try_from(pages * PAGE_SIZE) else {
            return false;
        };
        // SAFETY: the frames `first .. first + pages` were just taken from the frame allocator,
        // so nothing else uses them and they are never given back; `init_memory` mapped them
        // writable at their direct-map addresses, for the kernel's lifetime.
        unsafe {
            self.heaps[self.len].init(direct_map_va(first) as *mut u8, size);
        }
        self.len += 1;
        true
    }
}

// SAFETY: each arena returns blocks of the layout's size and alignment inside its own frames,
// each handed out once until it is given back through `dealloc` to the arena that holds it;
// every access is under one lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut arenas = self.arenas.lock();
        loop {
            if let Some(p) = arenas.allocate(layout) {
                arenas.used += layout.size();
                arenas.peak = arenas.peak.max(arenas.used);
                return p.as_ptr();
            }
            if !arenas.grow(layout) {
                return ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        let mut arenas = self.arenas.lock();
        let len = arenas.len;
        if let Some(h) = arenas.heaps[..len]
            .iter_mut()
            .find(|h| (h.bottom()..h.top()).contains(&ptr))
        {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout
            // (GlobalAlloc's contract), so from this arena, the one whose range holds it.
            unsafe { h.deallocate(p, layout) };
            arenas.used -= layout.size();
        }
    }
}

/// What the heap holds.
pub struct Usage {
    /// Arenas taken.
    pub arenas: usize,
    /// Their bytes.
    pub size: usize,
    /// Bytes handed out now.
    pub used: usize,
    /// The most bytes ever handed out at once.
    pub peak: usize,
}

/// What the heap holds now.
pub fn usage() -> Usage {
    let arenas = HEAP.arenas.lock();
    let size = arenas.heaps[..arenas.len].iter().map(Heap::size).sum();
    Usage {
        arenas: arenas.len,
        size,
        used: arenas.used,
        peak: arenas.peak,
    }
}
