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
//! In front of the arenas, small blocks (up to 64 bytes, aligned to at most 16) are kept on a
//! free list per size class when given back, and handed out again from there: the first-fit
//! search costs a few hundred instructions per call, and dom0's block path allocates and frees
//! one such block per disk request (virtio-drivers' indirect descriptor table).
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
    /// Freed small blocks, per size class (see [`SmallBlocks`]).
    small: [SmallBlocks; SMALL_CLASSES],
}

/// Size classes of the small-block lists: 16, 32 and 64 bytes.
const SMALL_CLASSES: usize = 3;
/// The alignment every small block is taken from an arena with (enough for any layout the
/// classes take).
const SMALL_ALIGN: usize = 16;
/// Blocks a class keeps at most; one more freed goes back to its arena.
const SMALL_KEEP: usize = 256;

/// The size class of `layout` (blocks of `16 << class` bytes), if it is small.
fn small_class(layout: Layout) -> Option<usize> {
    if layout.align() > SMALL_ALIGN {
        return None;
    }
    match layout.size() {
        0..=16 => Some(0),
        17..=32 => Some(1),
        33..=64 => Some(2),
        _ => None,
    }
}

/// The layout every block of size class `class` is taken from an arena (and given back) with.
fn class_layout(class: usize) -> Layout {
    // 16, 32 or 64 bytes aligned to 16: always a valid layout.
    Layout::from_size_align(16 << class, SMALL_ALIGN).expect("a valid layout")
}

/// Freed blocks of one size class: a stack threaded through the blocks (each free block's first
/// 8 bytes hold the next one's address, 0 at the bottom).
struct SmallBlocks {
    top: usize,
    len: usize,
}

impl SmallBlocks {
    const EMPTY: SmallBlocks = SmallBlocks { top: 0, len: 0 };

    /// A block off the stack, if there is one.
    fn pop(&mut self) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.top as *mut u8)?;
        // SAFETY: `top` is a free block of this class (pushed below, aligned to 16, at least 16
        // bytes), which nothing else uses until it is handed out here; its first word is the
        // next free block's address.
        self.top = unsafe { p.cast::<usize>().read() };
        self.len -= 1;
        Some(p)
    }

    /// Puts the block at `p` on the stack; `false` (and nothing done) when it is full.
    ///
    /// # Safety
    /// `p` must be a block of this class taken from an arena, handed back by its owner.
    unsafe fn push(&mut self, p: NonNull<u8>) -> bool {
        if self.len == SMALL_KEEP {
            return false;
        }
        // SAFETY: the caller's promise: the block is ours again, 16-aligned and at least 16
        // bytes long, so its first word can hold the link.
        unsafe { p.cast::<usize>().write(self.top) };
        self.top = p.as_ptr() as usize;
        self.len += 1;
        true
    }
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
        small: [SmallBlocks::EMPTY; SMALL_CLASSES],
    }),
};

impl Arenas {
    /// A block for `layout`: a small one off its class's list when there is one, else from the
    /// first arena that has room (a small one with its class's layout).
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        match small_class(layout) {
            Some(c) => self.small[c]
                .pop()
                .or_else(|| self.first_fit(class_layout(c))),
            None => self.first_fit(layout),
        }
    }

    fn first_fit(&mut self, layout: Layout) -> Option<NonNull<u8>> {
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
        arenas.used -= layout.size();
        let class = small_class(layout);
        if let Some(c) = class {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout
            // (GlobalAlloc's contract), so it is a block of class `c` (`Arenas::allocate`).
            if unsafe { arenas.small[c].push(p) } {
                return;
            }
        }
        // A small block's arena took it with its class's layout.
        let layout = class.map_or(layout, class_layout);
        let len = arenas.len;
        if let Some(h) = arenas.heaps[..len]
            .iter_mut()
            .find(|h| (h.bottom()..h.top()).contains(&ptr))
        {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout
            // (GlobalAlloc's contract), so from this arena, the one whose range holds it, which
            // took it with `layout` (its class's for a small block).
            unsafe { h.deallocate(p, layout) };
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
