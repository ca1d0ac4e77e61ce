//! The guest's frame allocator: a bitmap over pseudo-physical frame numbers, lowest frame first.
//!
//! A PV guest owns `start_info.nr_pages` pages, named by pfn (the p2m list translates them to
//! machine frames). Xen uses the first ones for the start-of-day layout (image, p2m list,
//! start_info, bootstrap page tables, boot stack); the rest are the guest's to manage
//! (`layout::BootRegion` says which). This allocator only does the bookkeeping: one bit per
//! pfn, set while the frame is free, no memory of its own beyond the bitmap, so a `static` holds
//! it and the host tests run it as is.
//!
//! **Lowest first** is a promise, not an accident: the kernel extends its map of pseudo-physical
//! memory with page tables taken from this allocator, and the frames it needs for that must
//! already be mapped. The free frames that are mapped at boot (the padding Xen leaves after the
//! boot stack) are the lowest ones, so handing out the lowest free frame keeps that true.

use core::fmt;

use crate::paging::Pfn;

/// Why a frame could not be given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is beyond what the allocator tracks.
    OutOfRange(Pfn),
    /// The frame is already free (a double free).
    NotAllocated(Pfn),
    /// The frame lies outside every range ever added: it was never the allocator's to hand out.
    NotManaged(Pfn),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::OutOfRange(p) => write!(f, "{p} is out of the allocator's range"),
            FreeError::NotAllocated(p) => write!(f, "{p} is not allocated"),
            FreeError::NotManaged(p) => write!(f, "{p} was never the allocator's"),
        }
    }
}

/// A bitmap allocator for up to `WORDS * 64` frames (pfn 0 .. `WORDS * 64`).
pub struct FrameAllocator<const WORDS: usize> {
    /// Bit `pfn % 64` of word `pfn / 64` is set while the frame is free.
    free: [u64; WORDS],
    /// Number of set bits.
    nr_free: u64,
    /// No word below this one has a free bit (a search starts here).
    hint: usize,
    /// The span of the ranges added so far (`start..end`); frees outside it are refused. A gap
    /// between two added ranges is inside the span: freeing a frame there is not detected.
    managed: (u64, u64),
}

impl<const WORDS: usize> FrameAllocator<WORDS> {
    /// An allocator with no free frames.
    pub const fn new() -> Self {
        FrameAllocator {
            free: [0; WORDS],
            nr_free: 0,
            hint: WORDS,
            managed: (u64::MAX, 0),
        }
    }

    /// The number of frames the allocator can track: pfns below this.
    pub const fn capacity() -> u64 {
        WORDS as u64 * 64
    }

    /// Marks `start..end` free, clipped to the capacity; frames already free stay free. Returns
    /// how many frames became free.
    pub fn add_free_range(&mut self, start: Pfn, end: Pfn) -> u64 {
        let end = end.0.min(Self::capacity());
        if start.0 < end {
            self.managed = (self.managed.0.min(start.0), self.managed.1.max(end));
        }
        let mut added = 0;
        for pfn in start.0..end {
            if self.set_free(pfn) {
                added += 1;
            }
        }
        added
    }

    /// Marks one frame free; whether it was not free before.
    fn set_free(&mut self, pfn: u64) -> bool {
        let (w, bit) = ((pfn / 64) as usize, 1u64 << (pfn % 64));
        if self.free[w] & bit != 0 {
            return false;
        }
        self.free[w] |= bit;
        self.nr_free += 1;
        self.hint = self.hint.min(w);
        true
    }

    /// Takes the lowest free frame.
    pub fn alloc(&mut self) -> Option<Pfn> {
        let w = (self.hint..WORDS).find(|&w| self.free[w] != 0);
        let Some(w) = w else {
            self.hint = WORDS;
            return None;
        };
        self.hint = w;
        let bit = self.free[w].trailing_zeros();
        self.free[w] &= !(1u64 << bit);
        self.nr_free -= 1;
        Some(Pfn(w as u64 * 64 + u64::from(bit)))
    }

    /// Takes the lowest run of `n` consecutive free frames (for device DMA, which needs
    /// machine-contiguous buffers: pseudo-physically contiguous ones are, where the p2m is). The
    /// frames are given back one by one with [`FrameAllocator::free`].
    pub fn alloc_contiguous(&mut self, n: u64) -> Option<Pfn> {
        if n == 0 {
            return None;
        }
        let first = self.hint as u64 * 64;
        let mut run_start = first;
        let mut run = 0;
        for pfn in first..Self::capacity() {
            if self.is_free(Pfn(pfn)) {
                if run == 0 {
                    run_start = pfn;
                }
                run += 1;
                if run == n {
                    for p in run_start..run_start + n {
                        let (w, bit) = ((p / 64) as usize, 1u64 << (p % 64));
                        self.free[w] &= !bit;
                    }
                    self.nr_free -= n;
                    return Some(Pfn(run_start));
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Gives `pfn` back.
    pub fn free(&mut self, pfn: Pfn) -> Result<(), FreeError> {
        if pfn.0 >= Self::capacity() {
            return Err(FreeError::OutOfRange(pfn));
        }
        if !(self.managed.0..self.managed.1).contains(&pfn.0) {
            return Err(FreeError::NotManaged(pfn));
        }
        if self.is_free(pfn) {
            return Err(FreeError::NotAllocated(pfn));
        }
        self.set_free(pfn.0);
        Ok(())
    }

    /// Whether `pfn` is free (false for frames beyond the capacity).
    pub fn is_free(&self, pfn: Pfn) -> bool {
        pfn.0 < Self::capacity() && self.free[(pfn.0 / 64) as usize] & (1 << (pfn.0 % 64)) != 0
    }

    /// Number of free frames.
    pub fn free_count(&self) -> u64 {
        self.nr_free
    }
}

impl<const WORDS: usize> Default for FrameAllocator<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Small = FrameAllocator<4>; // 256 frames

    #[test]
    fn contiguous_runs_skip_holes_and_free_frame_by_frame() {
        let mut a = Small::new();
        a.add_free_range(Pfn(10), Pfn(200));
        // Make a hole at 12: the first run of 4 starts at 13.
        assert_eq!(a.alloc(), Some(Pfn(10)));
        assert_eq!(a.alloc(), Some(Pfn(11)));
        assert_eq!(a.alloc(), Some(Pfn(12)));
        a.free(Pfn(10)).unwrap();
        a.free(Pfn(11)).unwrap();
        let before = a.free_count();
        assert_eq!(a.alloc_contiguous(4), Some(Pfn(13)));
        assert_eq!(a.free_count(), before - 4);
        assert!((13..17).all(|p| !a.is_free(Pfn(p))));
        assert_eq!(a.alloc_contiguous(2), Some(Pfn(10)));
        // A run across a word boundary, and one too long to exist.
        assert_eq!(a.alloc_contiguous(100), Some(Pfn(17)));
        assert_eq!(a.alloc_contiguous(100), None);
        assert_eq!(a.alloc_contiguous(0), None);
        for p in 13..17 {
            a.free(Pfn(p)).unwrap();
        }
        assert_eq!(a.alloc(), Some(Pfn(13)));
    }

    #[test]
    fn starts_empty() {
        let mut a = Small::new();
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.alloc(), None);
        assert_eq!(Small::capacity(), 256);
    }

    #[test]
    fn hands_out_the_lowest_free_frame_first() {
        let mut a = Small::new();
        assert_eq!(a.add_free_range(Pfn(200), Pfn(210)), 10);
        assert_eq!(a.add_free_range(Pfn(70), Pfn(72)), 2);
        assert_eq!(a.free_count(), 12);
        assert_eq!(a.alloc(), Some(Pfn(70)));
        assert_eq!(a.alloc(), Some(Pfn(71)));
        assert_eq!(a.alloc(), Some(Pfn(200)));
        // A frame freed below the others comes back first.
        a.free(Pfn(70)).unwrap();
        assert_eq!(a.alloc(), Some(Pfn(70)));
        assert_eq!(a.alloc(), Some(Pfn(201)));
        assert_eq!(a.free_count(), 8);
    }

    #[test]
    fn runs_dry_and_recovers() {
        let mut a = Small::new();
        a.add_free_range(Pfn(3), Pfn(5));
        assert_eq!(a.alloc(), Some(Pfn(3)));
        assert_eq!(a.alloc(), Some(Pfn(4)));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.alloc(), None);
        a.free(Pfn(4)).unwrap();
        assert_eq!(a.alloc(), Some(Pfn(4)));
    }

    #[test]
    fn refuses_double_frees_and_foreign_frames() {
        let mut a = Small::new();
        a.add_free_range(Pfn(0), Pfn(2));
        let p = a.alloc().unwrap();
        a.free(p).unwrap();
        assert_eq!(a.free(p), Err(FreeError::NotAllocated(p)));
        assert_eq!(a.free(Pfn(100)), Err(FreeError::NotManaged(Pfn(100))));
        assert_eq!(a.free(Pfn(256)), Err(FreeError::OutOfRange(Pfn(256))));
        assert_eq!(a.free_count(), 2);
    }

    #[test]
    fn ranges_are_clipped_to_the_capacity_and_counted_once() {
        let mut a = Small::new();
        assert_eq!(a.add_free_range(Pfn(250), Pfn(1000)), 6);
        assert_eq!(a.add_free_range(Pfn(248), Pfn(252)), 2);
        assert_eq!(a.free_count(), 8);
        assert!(a.is_free(Pfn(255)));
        assert!(!a.is_free(Pfn(256)));
        assert_eq!(a.add_free_range(Pfn(10), Pfn(5)), 0);
    }

    #[test]
    fn every_frame_is_handed_out_exactly_once() {
        let mut a = Small::new();
        a.add_free_range(Pfn(0), Pfn(256));
        let mut seen = [false; 256];
        while let Some(p) = a.alloc() {
            assert!(!seen[p.0 as usize], "{p} handed out twice");
            seen[p.0 as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(a.free_count(), 0);
    }

    #[test]
    fn interleaved_frees_keep_the_lowest_first_order() {
        let mut a = Small::new();
        a.add_free_range(Pfn(0), Pfn(256));
        let taken: Vec<Pfn> = (0..200).map(|_| a.alloc().unwrap()).collect();
        for p in taken.iter().rev().step_by(3) {
            a.free(*p).unwrap();
        }
        let mut expect: Vec<u64> = taken.iter().rev().step_by(3).map(|p| p.0).collect();
        expect.sort_unstable();
        for e in expect {
            assert_eq!(a.alloc(), Some(Pfn(e)));
        }
        assert_eq!(a.alloc(), Some(Pfn(200)));
    }
}
