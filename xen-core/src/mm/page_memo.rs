//! A one-page memo of a bounds check: the page a machine-memory accessor last found wholly
//! reachable, so that the next access inside it skips the check.
//!
//! The arch layer's direct map refuses, on every access, anything beyond the map, in the
//! hypervisor image or in the frame table. Which pages pass never changes once the frame table
//! exists, so a page that passed whole may be remembered; hot accesses come in runs on one page
//! (the upcall word of the running vCPU's `vcpu_info`, before every element of a batch and on
//! every hypercall's way out; the entries of one L1 table, read and written by each element of
//! an `mmu_update` batch). Whoever remembers a page vouches that all of it stays reachable for
//! as long as it is remembered, and forgets it otherwise.

use core::cell::Cell;

use super::Maddr;

/// Page size.
const PAGE: u64 = 4096;

/// The page last remembered, if any.
#[derive(Debug, Default)]
pub struct PageMemo {
    /// The page's frame number plus one; 0 for none.
    page: Cell<u64>,
}

impl PageMemo {
    /// Nothing remembered.
    pub const fn new() -> PageMemo {
        PageMemo { page: Cell::new(0) }
    }

    /// Whether `[addr, addr + len)` lies inside the remembered page (`len` at most a page).
    #[inline(always)]
    pub fn covers(&self, addr: Maddr, len: usize) -> bool {
        (addr.0 >> 12).wrapping_add(1) == self.page.get()
            && (addr.0 & (PAGE - 1)) + len as u64 <= PAGE
    }

    /// Remembers the page `addr` lies in: the caller has found all of it reachable.
    #[inline]
    pub fn remember(&self, addr: Maddr) {
        self.page.set((addr.0 >> 12) + 1);
    }

    /// Forgets the page.
    pub fn forget(&self) {
        self.page.set(0);
    }

    /// The start of the page `addr` lies in (what to check whole before remembering it).
    #[inline]
    pub fn page_of(addr: Maddr) -> Maddr {
        Maddr(addr.0 & !(PAGE - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_only_accesses_wholly_inside_the_remembered_page() {
        let m = PageMemo::new();
        assert!(
            !m.covers(Maddr(0), 4),
            "nothing remembered, not even page 0"
        );
        m.remember(Maddr(0x5123));
        assert!(m.covers(Maddr(0x5000), 4));
        assert!(m.covers(Maddr(0x5123), 8));
        assert!(m.covers(Maddr(0x5ff8), 8), "the last u64 of the page");
        assert!(!m.covers(Maddr(0x5ffc), 8), "crosses into the next page");
        assert!(!m.covers(Maddr(0x5fff), 4), "crosses into the next page");
        assert!(!m.covers(Maddr(0x4ffc), 4), "the page before");
        assert!(!m.covers(Maddr(0x6000), 4), "the page after");
        assert!(m.covers(Maddr(0x5000), 4096), "the whole page");
        assert!(!m.covers(Maddr(0x5001), 4096));
    }

    #[test]
    fn page_zero_and_the_last_page_are_remembered_like_any_other() {
        let m = PageMemo::new();
        m.remember(Maddr(0x10));
        assert!(m.covers(Maddr(0), 8) && !m.covers(Maddr(0x1000), 8));
        let last: u64 = !0xfff;
        m.remember(Maddr(last));
        assert!(m.covers(Maddr(last + 0xff0), 8));
        assert!(!m.covers(Maddr(last + 0xffc), 8), "would wrap past the top");
        assert!(!m.covers(Maddr(0), 8));
    }

    #[test]
    fn forgetting_and_remembering_another_page_end_the_old_one() {
        let m = PageMemo::new();
        m.remember(Maddr(0x7000));
        m.remember(Maddr(0x9000));
        assert!(!m.covers(Maddr(0x7000), 4) && m.covers(Maddr(0x9000), 4));
        m.forget();
        assert!(!m.covers(Maddr(0x9000), 4));
        assert_eq!(PageMemo::page_of(Maddr(0x9abc)), Maddr(0x9000));
    }
}
