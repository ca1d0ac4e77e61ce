//! Frames the hypervisor keeps its own per-domain structures in (Xen's `alloc_xenheap_page`):
//! taken from the free pool when a domain needs them, given back when it dies.
//!
//! A [`XenPage`] owns one frame that the frame table marks the hypervisor's (`Owner::Xen`, so no
//! domain can be given it, map it or have it granted) and that the hypervisor reaches through
//! its direct map. Event-channel buckets live in such pages (`crate::evtchn`): a domain that
//! uses ten ports holds one page, not the 64 KiB its 4096 channels would take in place.
//!
//! Where the frame comes from is the machine's business ([`crate::ctx::Machine::take_xen_page`]:
//! the pool, the frame table and the direct map); the structure that holds the page gives it
//! back by frame number ([`XenPage::into_mfn`]) when the domain is torn down.

use core::fmt;
use core::ptr::NonNull;

use super::Mfn;

/// Bytes of a page.
pub const PAGE_BYTES: usize = 4096;

/// The alignment a page's pointer has at least: what the structures kept there may need.
pub const PAGE_ALIGN: usize = 8;

/// One frame the hypervisor owns, reached through a pointer valid while the page is held.
pub struct XenPage {
    mfn: Mfn,
    ptr: NonNull<[u8; PAGE_BYTES]>,
}

// SAFETY: a `XenPage` is the only handle to its frame (see `XenPage::new`), like a `Box`:
// moving it to another CPU moves the only access with it.
unsafe impl Send for XenPage {}

impl XenPage {
    /// The page of frame `mfn`, reached at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is 8-aligned (the direct map's pages are 4096-aligned; host tests' need not be),
    /// valid for reads and writes of 4096 bytes for as long as the page
    /// is held, and nothing else reads or writes those bytes meanwhile: the frame is the
    /// hypervisor's alone (marked so in the frame table, shared with no domain) and no other
    /// `XenPage` names it.
    pub unsafe fn new(mfn: Mfn, ptr: NonNull<[u8; PAGE_BYTES]>) -> XenPage {
        debug_assert!(ptr.as_ptr().cast::<u8>().align_offset(PAGE_ALIGN) == 0);
        XenPage { mfn, ptr }
    }

    /// Its frame.
    pub const fn mfn(&self) -> Mfn {
        self.mfn
    }

    /// The page's first byte ([`PAGE_ALIGN`]-aligned, 4096 bytes this page alone reaches).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Lets go of the page, returning its frame for the caller to give back: nothing reaches it
    /// through this page any more.
    pub fn into_mfn(self) -> Mfn {
        self.mfn
    }
}

impl fmt::Debug for XenPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XenPage({:#x})", self.mfn.0)
    }
}

/// Pages from the host's allocator, for host tests: as many as `limit` allows (a dry pool when
/// it is reached), each a leaked, page-aligned, zeroed block given a made-up frame number.
#[cfg(test)]
pub(crate) mod heap {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::cell::Cell;

    /// A source of host pages with a limit, counting what is out.
    #[derive(Debug, Default)]
    pub struct HeapPages {
        /// Pages it may still hand out (`None`: any number).
        pub left: Cell<Option<usize>>,
        /// Pages handed out and not given back.
        pub out: Cell<usize>,
        /// Pages handed out in all.
        pub taken: Cell<usize>,
    }

    fn layout() -> Layout {
        Layout::from_size_align(PAGE_BYTES, PAGE_BYTES).unwrap()
    }

    impl HeapPages {
        /// Any number of pages.
        pub fn unlimited() -> HeapPages {
            HeapPages::default()
        }

        /// At most `n` pages (0: a dry pool).
        pub fn limited(n: usize) -> HeapPages {
            HeapPages {
                left: Cell::new(Some(n)),
                ..HeapPages::default()
            }
        }

        /// A page, or `None` once the limit is reached.
        pub fn take(&self) -> Option<XenPage> {
            if let Some(n) = self.left.get() {
                self.left.set(Some(n.checked_sub(1)?));
            }
            // SAFETY: a non-zero size.
            let p = unsafe { alloc_zeroed(layout()) };
            let ptr = NonNull::new(p.cast::<[u8; PAGE_BYTES]>())?;
            self.out.set(self.out.get() + 1);
            self.taken.set(self.taken.get() + 1);
            // Made-up frame numbers: the block's own page number, unique while it is held.
            let mfn = Mfn(p as u64 >> 12);
            // SAFETY: a fresh block of the page's size and alignment, which only this page
            // reaches until `give_back` frees it.
            Some(unsafe { XenPage::new(mfn, ptr) })
        }

        /// Frees a page [`HeapPages::take`] handed out, by its frame number.
        pub fn give_back(&self, mfn: Mfn) {
            self.out.set(self.out.get() - 1);
            if let Some(n) = self.left.get() {
                self.left.set(Some(n + 1));
            }
            // SAFETY: the frame number is the block's address (see `take`), allocated there
            // with this layout and no longer reached (the page was let go).
            unsafe { dealloc((mfn.0 << 12) as *mut u8, layout()) }
        }
    }
}
