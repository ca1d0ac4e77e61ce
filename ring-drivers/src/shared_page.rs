//! A page shared with another domain, reached only through copies and ordered index accesses.
//!
//! vm-memory's rule: no `&`/`&mut` into memory another domain can write. The ring protocols in
//! this crate see the page through [`SharedPage`]; the kernel implements it with volatile copies
//! and atomic index accesses on the mapped page, host tests with [`ArrayPage`] (one thread) or
//! [`AtomicPage`] (both ends in different threads, as two domains are).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

/// The size of a shared page.
pub const PAGE_SIZE: usize = 4096;

/// A shared page. Offsets passed by this crate always lie inside the page (they come from the
/// `hypercall-abi` layouts); an implementation may panic on an out-of-range offset.
pub trait SharedPage {
    /// Copies `buf.len()` bytes starting at `offset` out of the page.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` into the page at `offset`.
    fn write_bytes(&mut self, offset: usize, data: &[u8]);
    /// Loads the `u32` at `offset` (4-byte aligned) with acquire ordering: later reads of the
    /// page are not performed before it.
    fn load_acquire_u32(&self, offset: usize) -> u32;
    /// Stores `value` at `offset` (4-byte aligned) with release ordering: earlier reads and writes
    /// of the page complete before it.
    fn store_release_u32(&mut self, offset: usize, value: u32);
    /// A full barrier (`xen_mb()`): every earlier load and store of the page is ordered before
    /// every later one, including a store followed by a load. The `io/ring.h` push-and-check and
    /// final-check sequences need it (store our index, then load the peer's event index). The
    /// default, a sequentially consistent fence, is right for memory the CPU shares coherently.
    fn full_barrier(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// A plain in-memory page, for host tests and for both ends of a ring living in one program.
#[derive(Clone, PartialEq, Eq)]
pub struct ArrayPage(pub [u8; PAGE_SIZE]);

impl ArrayPage {
    /// A zeroed page (every ring empty, every index 0).
    pub const fn new() -> Self {
        ArrayPage([0; PAGE_SIZE])
    }
}

impl Default for ArrayPage {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ArrayPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ArrayPage")
    }
}

impl SharedPage for ArrayPage {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0[offset..offset + buf.len()]);
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self.0[offset..offset + data.len()].copy_from_slice(data);
    }

    fn load_acquire_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.read_bytes(offset, &mut b);
        u32::from_ne_bytes(b)
    }

    fn store_release_u32(&mut self, offset: usize, value: u32) {
        self.write_bytes(offset, &value.to_ne_bytes());
    }
}

/// A page of atomic words that two threads can share (through `Arc<AtomicPage>` or
/// `&AtomicPage`), for host tests that run a front end and a back end concurrently, as two
/// domains do. Bytes are copied with relaxed word accesses; the index accessors are real
/// acquire loads and release stores, so the ring code's ordering is exercised, not hidden behind
/// a lock.
pub struct AtomicPage([AtomicU32; PAGE_SIZE / 4]);

impl AtomicPage {
    /// A zeroed page.
    pub fn new() -> Self {
        AtomicPage(core::array::from_fn(|_| AtomicU32::new(0)))
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(
            offset + buf.len() <= PAGE_SIZE,
            "access past the shared page"
        );
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i;
            let word = self.0[at / 4].load(Ordering::Relaxed).to_ne_bytes();
            *b = word[at % 4];
        }
    }

    fn write(&self, offset: usize, data: &[u8]) {
        assert!(
            offset + data.len() <= PAGE_SIZE,
            "access past the shared page"
        );
        let mut i = 0;
        while i < data.len() {
            let at = offset + i;
            let w = &self.0[at / 4];
            if at.is_multiple_of(4) && data.len() - i >= 4 {
                let bytes = [data[i], data[i + 1], data[i + 2], data[i + 3]];
                w.store(u32::from_ne_bytes(bytes), Ordering::Relaxed);
                i += 4;
            } else {
                // A partial word: merge the byte without disturbing its neighbours.
                let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    let mut bytes = old.to_ne_bytes();
                    bytes[at % 4] = data[i];
                    Some(u32::from_ne_bytes(bytes))
                });
                i += 1;
            }
        }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4), "unaligned ring index");
        &self.0[offset / 4]
    }
}

impl Default for AtomicPage {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for AtomicPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AtomicPage")
    }
}

/// `&AtomicPage`, `Arc<AtomicPage>` and `AtomicPage` itself are all views of the same words.
macro_rules! atomic_page_impl {
    ($($t:ty),*) => {$(
        impl SharedPage for $t {
            fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
                AtomicPage::read(self, offset, buf)
            }

            fn write_bytes(&mut self, offset: usize, data: &[u8]) {
                AtomicPage::write(self, offset, data)
            }

            fn load_acquire_u32(&self, offset: usize) -> u32 {
                self.word(offset).load(Ordering::Acquire)
            }

            fn store_release_u32(&mut self, offset: usize, value: u32) {
                self.word(offset).store(value, Ordering::Release)
            }
        }
    )*};
}
atomic_page_impl!(AtomicPage, &AtomicPage, Arc<AtomicPage>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_page_copies_unaligned_bytes() {
        let mut p = Arc::new(AtomicPage::new());
        let data: Vec<u8> = (1..=11).collect();
        p.write_bytes(3, &data);
        let mut out = [0u8; 13];
        p.read_bytes(2, &mut out);
        assert_eq!(out[0], 0);
        assert_eq!(&out[1..12], &data[..]);
        assert_eq!(out[12], 0);
        p.store_release_u32(16, 0xdead_beef);
        assert_eq!(p.load_acquire_u32(16), 0xdead_beef);
        let mut view: &AtomicPage = &p;
        view.write_bytes(4095, &[7]);
        let mut last = [0u8];
        p.read_bytes(4095, &mut last);
        assert_eq!(last, [7]);
    }
}
