//! The boot frame allocator: free machine frames taken from the firmware memory map, minus
//! everything already in use, handed out one at a time or as contiguous runs.
//!
//! It plays the part of Xen's boot allocator (`xen/common/page_alloc.c`, `init_boot_pages` and
//! `alloc_boot_pages`): usable RAM from the memory map, less the first MiB (firmware, real-mode
//! structures), less every non-RAM region the map declares (a broken map may overlap RAM with
//! reserved space, and the reserved claim wins), less the ranges the caller names (the hypervisor
//! image, the boot modules, the multiboot structures). Frames are taken from the top of memory
//! down, as `alloc_boot_pages` does, so that low memory stays free longest.
//!
//! Frames are never handed out twice; there is no `free` yet (nothing returns boot memory).
//! The allocator knows nothing about whether a frame is *reachable*: a caller that can only touch
//! memory through a direct map of the low 4 GiB reserves everything above it.

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

use crate::mm::e820::{MemoryKind, MemoryRegion};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Machine memory below this address is never handed out (BIOS data, real-mode IVT, VGA, ROMs).
pub const LOW_MEMORY_END: Maddr = Maddr(1 << 20);
/// The most disjoint free ranges the allocator tracks; a memory map fragmented beyond that (or
/// reserved ranges that split it further) is an error at construction.
pub const MAX_FREE_RANGES: usize = 64;

const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// A half-open run of machine frames `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRange {
    /// First frame of the run.
    pub start: Mfn,
    /// One past the last frame of the run.
    pub end: Mfn,
}

impl FrameRange {
    /// Number of frames in the run.
    pub const fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Whether the run holds no frame.
    pub const fn is_empty(&self) -> bool {
        self.end.0 <= self.start.0
    }
}

/// Where machine frames come from: the domain builder and, later, the hypervisor's own
/// allocations ask this trait, so host tests can hand them any allocator.
pub trait FrameAllocator {
    /// One free frame, or `None` when memory is exhausted.
    fn alloc_frame(&mut self) -> Option<Mfn>;

    /// `count` machine-contiguous free frames whose first frame number is a multiple of `align`
    /// (0 and 1 both mean "any"), or `None` if no free run is long enough.
    fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<Mfn>;
}

/// What can go wrong building the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameAllocError {
    /// The free memory splits into more than [`MAX_FREE_RANGES`] runs.
    TooManyRanges,
    /// A reserved range ends before it starts.
    ReservedRangeBackwards {
        /// Its start.
        start: Maddr,
        /// Its end.
        end: Maddr,
    },
}

impl fmt::Display for FrameAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameAllocError::TooManyRanges => write!(
                f,
                "free memory is split into more than {MAX_FREE_RANGES} ranges"
            ),
            FrameAllocError::ReservedRangeBackwards { start, end } => {
                write!(f, "reserved range {start}..{end} ends before it starts")
            }
        }
    }
}

/// The boot allocator: a sorted list of disjoint, non-adjacent free frame runs.
#[derive(Clone, Debug)]
pub struct BootFrameAllocator {
    /// Sorted by address; no two runs overlap or touch; none is empty.
    free: heapless::Vec<FrameRange, MAX_FREE_RANGES>,
}

/// The frames wholly inside `[start, end)` (a usable region rounded inwards).
fn frames_inside(start: u64, end: u64) -> (u64, u64) {
    (start.div_ceil(PAGE_SIZE), end / PAGE_SIZE)
}

/// The frames touching `[start, end)` (a reserved region rounded outwards).
fn frames_touching(start: u64, end: u64) -> (u64, u64) {
    (start / PAGE_SIZE, end.div_ceil(PAGE_SIZE))
}

impl BootFrameAllocator {
    /// An allocator with no free memory.
    pub const fn empty() -> Self {
        Self {
            free: heapless::Vec::new(),
        }
    }

    /// The free frames of `regions` (the memory map: usable regions, rounded inwards to whole
    /// frames, minus every other region rounded outwards), minus the first MiB, minus each
    /// `reserved` range (rounded outwards to whole frames).
    pub fn new(
        regions: impl IntoIterator<Item = MemoryRegion> + Clone,
        reserved: &[Range<Maddr>],
    ) -> Result<Self, FrameAllocError> {
        let mut alloc = Self::empty();
        for region in regions.clone() {
            if region.kind == MemoryKind::Usable {
                let end = region.base.0.saturating_add(region.len);
                let (first, last) = frames_inside(region.base.0, end);
                alloc.add(first, last)?;
            }
        }
        for region in regions {
            if region.kind != MemoryKind::Usable {
                let end = region.base.0.saturating_add(region.len);
                let (first, last) = frames_touching(region.base.0, end);
                alloc.remove(first, last)?;
            }
        }
        alloc.reserve(Maddr(0)..LOW_MEMORY_END)?;
        for range in reserved {
            alloc.reserve(range.clone())?;
        }
        Ok(alloc)
    }

    /// Takes `range` (rounded outwards to whole frames) out of the free memory.
    pub fn reserve(&mut self, range: Range<Maddr>) -> Result<(), FrameAllocError> {
        if range.end < range.start {
            return Err(FrameAllocError::ReservedRangeBackwards {
                start: range.start,
                end: range.end,
            });
        }
        let (first, last) = frames_touching(range.start.0, range.end.0);
        self.remove(first, last)
    }

    /// The free runs, lowest first.
    pub fn free_ranges(&self) -> &[FrameRange] {
        &self.free
    }

    /// Total free frames.
    pub fn free_frames(&self) -> u64 {
        self.free.iter().map(FrameRange::len).sum()
    }

    /// Gives frames back (a destroyed domain's memory). Frames already free are not counted
    /// twice: the free set is a union of runs.
    pub fn free(&mut self, range: FrameRange) -> Result<(), FrameAllocError> {
        self.add(range.start.0, range.end.0)
    }

    /// Adds frames `[first, last)` to the free set, merging with runs they overlap or touch.
    fn add(&mut self, first: u64, last: u64) -> Result<(), FrameAllocError> {
        if first >= last {
            return Ok(());
        }
        let (mut lo, mut hi) = (first, last);
        // Absorb every run that overlaps or touches [lo, hi), then insert the union in order.
        let mut i = 0;
        while i < self.free.len() {
            let r = self.free[i];
            if r.end.0 >= lo && r.start.0 <= hi {
                lo = lo.min(r.start.0);
                hi = hi.max(r.end.0);
                self.free.remove(i);
            } else {
                i += 1;
            }
        }
        let at = self
            .free
            .iter()
            .position(|r| r.start.0 > lo)
            .unwrap_or(self.free.len());
        self.free
            .insert(
                at,
                FrameRange {
                    start: Mfn(lo),
                    end: Mfn(hi),
                },
            )
            .map_err(|_| FrameAllocError::TooManyRanges)
    }

    /// Removes frames `[first, last)` from the free set, splitting a run if needed.
    fn remove(&mut self, first: u64, last: u64) -> Result<(), FrameAllocError> {
        if first >= last {
            return Ok(());
        }
        let mut i = 0;
        while i < self.free.len() {
            let r = self.free[i];
            if r.end.0 <= first || r.start.0 >= last {
                i += 1;
                continue;
            }
            let below = (r.start.0 < first).then_some((r.start.0, first));
            let above = (r.end.0 > last).then_some((last, r.end.0));
            match (below, above) {
                (Some((a, b)), Some((c, d))) => {
                    self.free[i] = FrameRange {
                        start: Mfn(a),
                        end: Mfn(b),
                    };
                    self.free
                        .insert(
                            i + 1,
                            FrameRange {
                                start: Mfn(c),
                                end: Mfn(d),
                            },
                        )
                        .map_err(|_| FrameAllocError::TooManyRanges)?;
                    i += 2;
                }
                (Some((a, b)), None) | (None, Some((a, b))) => {
                    self.free[i] = FrameRange {
                        start: Mfn(a),
                        end: Mfn(b),
                    };
                    i += 1;
                }
                (None, None) => {
                    self.free.remove(i);
                }
            }
        }
        Ok(())
    }
}

impl FrameAllocator for BootFrameAllocator {
    fn alloc_frame(&mut self) -> Option<Mfn> {
        self.alloc_contiguous(1, 1)
    }

    fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<Mfn> {
        self.alloc_contiguous_below(count, align, Mfn(u64::MAX))
    }
}

impl BootFrameAllocator {
    /// `count` machine-contiguous free frames whose first frame number is a multiple of `align`,
    /// all below frame `limit` (`MEMF_bits`: a guest asking for memory a device can address).
    pub fn alloc_contiguous_below(&mut self, count: u64, align: u64, limit: Mfn) -> Option<Mfn> {
        if count == 0 {
            return None;
        }
        let align = align.max(1);
        // Highest run first: the highest aligned start that leaves `count` frames below the end.
        let (index, start) = self.free.iter().enumerate().rev().find_map(|(i, r)| {
            let top = r.end.0.min(limit.0).checked_sub(count)?;
            let start = top - top % align;
            (start >= r.start.0).then_some((i, start))
        })?;
        let r = self.free[index];
        // Splitting a run in two needs one more slot; refuse rather than lose track of frames.
        if start > r.start.0 && start + count < r.end.0 && self.free.is_full() {
            return None;
        }
        self.remove(start, start + count).ok()?;
        Some(Mfn(start))
    }
}

/// The free pool as the hypercalls that change a domain's memory see it
/// (`XENMEM_populate_physmap`, `increase_reservation`, `decrease_reservation`, `exchange`):
/// frames handed to a domain at run time, one extent at a time, and frames given back one by
/// one. The hypervisor's pool (`domain::pool::Pool`) implements it; host tests may use a
/// [`BootFrameAllocator`].
pub trait FramePool {
    /// `1 << order` machine-contiguous free frames, the first a multiple of their number, all
    /// below `limit` if one is given; `None` if there are none. Their contents are whatever they
    /// held: zeroing them is the caller's.
    fn take(
        &mut self,
        mem: &mut dyn MachineMemoryMut,
        order: u32,
        limit: Option<Mfn>,
    ) -> Option<Mfn>;
    /// Takes back a frame nothing uses any more (no owner, no reference, no mapping).
    fn give_back(&mut self, mem: &mut dyn MachineMemoryMut, mfn: Mfn);
    /// How many frames are free.
    fn free_frames(&self) -> u64;
}

impl FramePool for BootFrameAllocator {
    fn take(
        &mut self,
        _mem: &mut dyn MachineMemoryMut,
        order: u32,
        limit: Option<Mfn>,
    ) -> Option<Mfn> {
        let count = 1u64.checked_shl(order)?;
        self.alloc_contiguous_below(count, count, limit.unwrap_or(Mfn(u64::MAX)))
    }

    fn give_back(&mut self, _mem: &mut dyn MachineMemoryMut, mfn: Mfn) {
        // A run list that cannot take one more run loses the frame: the pool proper
        // (`domain::pool::Pool`) keeps such frames on a list of single frames instead.
        let _ = self.free(FrameRange {
            start: mfn,
            end: Mfn(mfn.0 + 1),
        });
    }

    fn free_frames(&self) -> u64 {
        BootFrameAllocator::free_frames(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn usable(base: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            base: Maddr(base),
            len,
            kind: MemoryKind::Usable,
        }
    }

    fn reserved(base: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            base: Maddr(base),
            len,
            kind: MemoryKind::Reserved(2),
        }
    }

    #[test]
    fn freed_frames_merge_back_into_the_pool() {
        let mut a = BootFrameAllocator::new([usable(MIB, 4 * MIB)], &[]).unwrap();
        let before = a.free_frames();
        let x = a.alloc_contiguous(64, 1).unwrap();
        let y = a.alloc_frame().unwrap();
        assert_eq!(a.free_frames(), before - 65);
        a.free(FrameRange {
            start: x,
            end: Mfn(x.0 + 64),
        })
        .unwrap();
        a.free(FrameRange {
            start: y,
            end: Mfn(y.0 + 1),
        })
        .unwrap();
        assert_eq!(a.free_frames(), before);
        assert_eq!(a.free_ranges().len(), 1, "one run again");
    }

    fn ranges(a: &BootFrameAllocator) -> Vec<(u64, u64)> {
        a.free_ranges()
            .iter()
            .map(|r| (r.start.0, r.end.0))
            .collect()
    }

    /// QEMU's map for `-m 512`, roughly.
    fn qemu_map() -> [MemoryRegion; 5] {
        [
            usable(0, 0x9fc00),
            reserved(0x9fc00, 0x400),
            reserved(0xf0000, 0x10000),
            usable(MIB, 0x1fee_0000),
            reserved(0x1ffe_0000, 0x20000),
        ]
    }

    #[test]
    fn the_first_mib_and_reserved_ranges_are_never_free() {
        let image = Maddr(2 * MIB)..Maddr(2 * MIB + 0x12345);
        let module = Maddr(0x40_0000)..Maddr(0x40_2000);
        let a = BootFrameAllocator::new(qemu_map(), &[image, module]).unwrap();
        // The image's partial last page is reserved whole.
        assert_eq!(
            ranges(&a),
            vec![(0x100, 0x200), (0x213, 0x400), (0x402, 0x1ffe0)]
        );
        assert_eq!(a.free_frames(), 0x100 + (0x400 - 0x213) + (0x1ffe0 - 0x402));
    }

    #[test]
    fn usable_regions_are_rounded_inwards_and_merged() {
        let a = BootFrameAllocator::new(
            [
                usable(MIB + 1, 0x2000),          // frames 0x101 only (0x100001..0x102001)
                usable(MIB + 0x2000, 0x1000),     // touches the previous one: merged
                usable(4 * MIB, 0x1800),          // frame 0x400 only
                usable(4 * MIB + 0x800, 0x1000),  // overlaps, holds no whole frame
                usable(4 * MIB + 0x1000, 0x1000), // frame 0x401, merged
            ],
            &[],
        )
        .unwrap();
        assert_eq!(ranges(&a), vec![(0x101, 0x103), (0x400, 0x402)]);
    }

    #[test]
    fn a_reserved_region_overlapping_ram_wins() {
        let a = BootFrameAllocator::new([usable(0, 64 * MIB), reserved(8 * MIB + 1, 0x10)], &[])
            .unwrap();
        assert_eq!(ranges(&a), vec![(0x100, 0x800), (0x801, 0x4000)]);
    }

    #[test]
    fn single_frames_come_from_the_top_and_are_never_repeated() {
        let mut a =
            BootFrameAllocator::new([usable(MIB, 3 * 4096), usable(2 * MIB, 4096)], &[]).unwrap();
        let got: Vec<u64> = core::iter::from_fn(|| a.alloc_frame())
            .map(|m| m.0)
            .collect();
        assert_eq!(got, vec![0x200, 0x102, 0x101, 0x100]);
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.alloc_contiguous(1, 1), None);
    }

    #[test]
    fn contiguous_runs_are_aligned_and_split_the_run() {
        let mut a = BootFrameAllocator::new([usable(MIB, 16 * MIB)], &[]).unwrap();
        // 17 MiB = frame 0x1100: the highest 2 MiB-aligned start with 0x300 frames below the end
        // is 0xe00.
        let m = a.alloc_contiguous(0x300, 0x200).unwrap();
        assert_eq!(m, Mfn(0xe00));
        assert_eq!(ranges(&a), vec![(0x100, 0xe00)]);
        let m = a.alloc_contiguous(0x10, 0x200).unwrap();
        assert_eq!(m, Mfn(0xc00));
        assert_eq!(ranges(&a), vec![(0x100, 0xc00), (0xc10, 0xe00)]);
        // Too big for any run: nothing changes.
        assert_eq!(a.alloc_contiguous(0x1000, 1), None);
        assert_eq!(a.alloc_contiguous(0, 1), None);
        assert_eq!(a.free_frames(), 0xb00 + 0x1f0);
    }

    #[test]
    fn allocations_never_overlap_each_other_or_reserved_memory() {
        let module = Maddr(5 * MIB)..Maddr(5 * MIB + 0x3000);
        let mut a = BootFrameAllocator::new(qemu_map(), core::slice::from_ref(&module)).unwrap();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        let sizes = [1u64, 7, 512, 3, 4096, 1, 1, 100, 20_000, 9];
        for (i, &n) in sizes.iter().cycle().take(60).enumerate() {
            let align = if i % 3 == 0 { 512 } else { 1 };
            let Some(m) = a.alloc_contiguous(n, align) else {
                continue;
            };
            assert_eq!(m.0 % align, 0);
            let run = (m.0, m.0 + n);
            assert!(run.0 >= 0x100, "low memory handed out: {run:x?}");
            assert!(
                run.1 <= 0x500 || run.0 >= 0x503,
                "module handed out: {run:x?}"
            );
            assert!(run.1 <= 0x1ffe0);
            for t in &taken {
                assert!(run.1 <= t.0 || run.0 >= t.1, "{run:x?} overlaps {t:x?}");
            }
            taken.push(run);
        }
        let used: u64 = taken.iter().map(|t| t.1 - t.0).sum();
        let total = BootFrameAllocator::new(qemu_map(), &[module])
            .unwrap()
            .free_frames();
        assert_eq!(a.free_frames() + used, total);
    }

    #[test]
    fn too_fragmented_memory_is_an_error() {
        let regions: Vec<MemoryRegion> = (0..MAX_FREE_RANGES as u64 + 1)
            .map(|i| usable(MIB + i * 2 * 4096, 4096))
            .collect();
        assert_eq!(
            BootFrameAllocator::new(regions.iter().copied(), &[]).unwrap_err(),
            FrameAllocError::TooManyRanges
        );
    }

    #[test]
    fn a_backwards_reserved_range_is_an_error() {
        let err = BootFrameAllocator::new(qemu_map(), &[Maddr(0x3000)..Maddr(0x2000)]).unwrap_err();
        assert_eq!(
            err,
            FrameAllocError::ReservedRangeBackwards {
                start: Maddr(0x3000),
                end: Maddr(0x2000)
            }
        );
        assert_eq!(
            err.to_string(),
            "reserved range 0x3000..0x2000 ends before it starts"
        );
    }

    #[test]
    fn regions_running_off_the_end_of_the_address_space_saturate() {
        let a = BootFrameAllocator::new([usable(u64::MAX - 0x2fff, u64::MAX)], &[]).unwrap();
        assert_eq!(a.free_frames(), 2);
    }
}
