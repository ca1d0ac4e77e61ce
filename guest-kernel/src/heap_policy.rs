//! How big the kernel heap's arenas are: the heap is taken from the domain's free pages at run
//! time (`src/kernel/heap.rs`), one arena at a time, each sized to the domain's memory so a 4 MiB
//! domU takes a few hundred KiB and a 64 MiB dom0 a few MiB per step. And which requests are
//! *small*: served from a free list per size class in front of the arenas.

use core::alloc::Layout;

/// Most arenas the heap takes (with [`MAX_CHUNK_PAGES`], 128 MiB of heap at least).
pub const MAX_ARENAS: usize = 32;

/// Smallest arena, in pages (64 KiB).
pub const MIN_CHUNK_PAGES: u64 = 16;

/// Largest arena sized by the domain's memory, in pages (4 MiB); one allocation larger than that
/// still gets an arena of its own size.
pub const MAX_CHUNK_PAGES: u64 = 1024;

/// Pages of the next arena for a domain of `nr_pages` pages that needs `need` pages for the
/// allocation at hand: a sixteenth of the domain's memory within
/// [`MIN_CHUNK_PAGES`]..=[`MAX_CHUNK_PAGES`], or `need` if that is more.
pub fn chunk_pages(nr_pages: u64, need: u64) -> u64 {
    (nr_pages / 16)
        .clamp(MIN_CHUNK_PAGES, MAX_CHUNK_PAGES)
        .max(need)
}

/// Size classes of the small-block lists: 16, 32, 48 and 64 bytes (class `c` holds blocks of
/// `16 * (c + 1)` bytes; a request rounds up to the next, at most 15 bytes more than it asked).
pub const SMALL_CLASSES: usize = 4;

/// The alignment every small block is taken from an arena with (enough for any layout the
/// classes take).
pub const SMALL_ALIGN: usize = 16;

/// The size class of `layout`, if it is small (at most 64 bytes, aligned to at most 16).
pub fn small_class(layout: Layout) -> Option<usize> {
    if layout.align() > SMALL_ALIGN || layout.size() > 16 * SMALL_CLASSES {
        return None;
    }
    Some(layout.size().max(1).div_ceil(16) - 1)
}

/// The layout every block of size class `class` (< [`SMALL_CLASSES`]) is taken from an arena
/// (and given back) with.
pub fn class_layout(class: usize) -> Layout {
    // 16 to 64 bytes, a multiple of 16, aligned to 16: always a valid layout.
    Layout::from_size_align(16 * (class + 1), SMALL_ALIGN).expect("a valid layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_follow_the_domains_memory() {
        // A 4 MiB domU: 256 KiB; a 16 MiB one: 1 MiB; dom0 at 64 MiB and more: 4 MiB.
        assert_eq!(chunk_pages(1024, 1), 64);
        assert_eq!(chunk_pages(4096, 1), 256);
        assert_eq!(chunk_pages(16384, 1), 1024);
        assert_eq!(chunk_pages(1 << 20, 1), 1024);
        // A tiny domain still gets 64 KiB.
        assert_eq!(chunk_pages(64, 1), 16);
    }

    #[test]
    fn small_requests_round_up_to_a_class_that_holds_them() {
        for align in [1, 2, 4, 8, 16] {
            for size in 0..=64 {
                let layout = Layout::from_size_align(size, align).unwrap();
                let c = small_class(layout).expect("small");
                let block = class_layout(c);
                // Large and aligned enough, and never 16 bytes or more too large.
                assert!(block.size() >= size.max(1) && block.size() < size.max(1) + 16);
                assert!(block.align() >= align && block.size().is_multiple_of(block.align()));
            }
            // Above 64 bytes: not small.
            assert_eq!(
                small_class(Layout::from_size_align(65, align).unwrap()),
                None
            );
        }
        // The virtio indirect table of a block request: three 16-byte descriptors, aligned 16.
        assert_eq!(
            small_class(Layout::from_size_align(48, 16).unwrap()),
            Some(2)
        );
        // Aligned beyond 16: not small (a class's block is only 16-aligned).
        assert_eq!(small_class(Layout::from_size_align(32, 32).unwrap()), None);
        assert_eq!(SMALL_CLASSES, 4);
    }

    #[test]
    fn a_big_allocation_gets_an_arena_of_its_own_size() {
        assert_eq!(chunk_pages(1024, 98), 98);
        assert_eq!(chunk_pages(16384, 5000), 5000);
    }
}
