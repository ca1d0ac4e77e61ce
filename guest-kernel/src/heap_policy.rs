//! How big the kernel heap's arenas are: the heap is taken from the domain's free pages at run
//! time (`src/kernel/heap.rs`), one arena at a time, each sized to the domain's memory so a 4 MiB
//! domU takes a few hundred KiB and a 64 MiB dom0 a few MiB per step.

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
    fn a_big_allocation_gets_an_arena_of_its_own_size() {
        assert_eq!(chunk_pages(1024, 98), 98);
        assert_eq!(chunk_pages(16384, 5000), 5000);
    }
}
