//! First-fit bookkeeping for the kernel heap: which byte ranges of an arena are free.
//!
//! Portable and host-tested: it deals in offsets only. The kernel's `#[global_allocator]`
//! (`kernel/heap.rs`) turns them into pointers into its static arena. Free ranges are kept
//! sorted in a fixed table, merged with their neighbours on free; if the table is full, a
//! fragment is leaked rather than tracked (the heap shrinks a little, nothing breaks).

/// Free ranges `(offset, len)` of an arena of `size` bytes, at most `SLOTS` of them.
#[derive(Debug)]
pub struct FreeList<const SLOTS: usize> {
    ranges: [(usize, usize); SLOTS],
    count: usize,
}

impl<const SLOTS: usize> FreeList<SLOTS> {
    /// An arena of `size` bytes, all free.
    pub const fn new(size: usize) -> Self {
        let mut ranges = [(0, 0); SLOTS];
        let count = if SLOTS > 0 && size > 0 {
            ranges[0] = (0, size);
            1
        } else {
            0
        };
        FreeList { ranges, count }
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> usize {
        self.ranges[..self.count].iter().map(|r| r.1).sum()
    }

    /// Number of free ranges.
    pub fn fragments(&self) -> usize {
        self.count
    }

    fn remove(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.count, i);
        self.count -= 1;
    }

    fn insert(&mut self, i: usize, r: (usize, usize)) -> bool {
        if self.count == SLOTS {
            return false;
        }
        self.ranges.copy_within(i..self.count, i + 1);
        self.ranges[i] = r;
        self.count += 1;
        true
    }

    /// Takes `size` bytes whose address (`base + offset`) is a multiple of `align` (a power of
    /// two); returns the offset. `base` is the arena's address, so alignment is real.
    pub fn alloc(&mut self, base: usize, size: usize, align: usize) -> Option<usize> {
        let size = size.max(1);
        let align = align.max(1);
        if !align.is_power_of_two() {
            return None;
        }
        for i in 0..self.count {
            let (start, len) = self.ranges[i];
            let addr = base.checked_add(start)?;
            let pad = addr.checked_next_multiple_of(align)? - addr;
            let Some(rest) = len.checked_sub(pad).and_then(|r| r.checked_sub(size)) else {
                continue;
            };
            let off = start + pad;
            match (pad > 0, rest > 0) {
                (false, false) => self.remove(i),
                (false, true) => self.ranges[i] = (off + size, rest),
                (true, false) => self.ranges[i] = (start, pad),
                (true, true) => {
                    self.ranges[i] = (start, pad);
                    // No slot for the tail: leak it.
                    self.insert(i + 1, (off + size, rest));
                }
            }
            return Some(off);
        }
        None
    }

    /// Returns `size` bytes at `offset` (as given by [`FreeList::alloc`]).
    pub fn free(&mut self, offset: usize, size: usize) {
        let size = size.max(1);
        let i = self.ranges[..self.count].partition_point(|r| r.0 < offset);
        let joins_prev = i > 0 && {
            let (s, l) = self.ranges[i - 1];
            s + l == offset
        };
        let joins_next = i < self.count && offset + size == self.ranges[i].0;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 += size + self.ranges[i].1;
                self.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 += size,
            (false, true) => self.ranges[i] = (offset, size + self.ranges[i].1),
            (false, false) => {
                // No slot: leak the block.
                self.insert(i, (offset, size));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_merges_back() {
        let mut f = FreeList::<8>::new(1024);
        let a = f.alloc(0x1000, 100, 8).unwrap();
        let b = f.alloc(0x1000, 100, 64).unwrap();
        let c = f.alloc(0x1000, 10, 1).unwrap();
        assert_eq!(a, 0);
        assert_eq!(b % 64, 0);
        assert!(b >= 100);
        assert!(c >= 100 && (c < b || c >= b + 100));
        f.free(b, 100);
        f.free(a, 100);
        f.free(c, 10);
        assert_eq!(f.free_bytes(), 1024);
        assert_eq!(f.fragments(), 1);
    }

    #[test]
    fn exhaustion_and_odd_alignment() {
        let mut f = FreeList::<4>::new(64);
        assert_eq!(f.alloc(0, 65, 1), None);
        assert_eq!(f.alloc(0, 8, 3), None);
        assert_eq!(f.alloc(0, 64, 1), Some(0));
        assert_eq!(f.alloc(0, 1, 1), None);
        f.free(0, 64);
        assert_eq!(f.alloc(3, 8, 8), Some(5)); // address 8
    }

    #[test]
    fn full_table_leaks_instead_of_failing() {
        let mut f = FreeList::<2>::new(100);
        let blocks: [usize; 5] = core::array::from_fn(|_| f.alloc(0, 10, 1).unwrap());
        f.free(blocks[0], 10);
        f.free(blocks[2], 10); // second slot used by the tail [50, 100)? table full: leaked
        f.free(blocks[4], 10);
        assert!(f.fragments() <= 2);
        assert!(f.alloc(0, 10, 1).is_some());
    }
}
