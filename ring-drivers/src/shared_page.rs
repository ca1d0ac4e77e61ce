//! A page shared with another domain, reached only through copies and ordered index accesses.
//!
//! vm-memory's rule: no `&`/`&mut` into memory another domain can write. The ring protocols in
//! this crate see the page through [`SharedPage`]; the kernel implements it with volatile copies
//! and atomic index accesses on the mapped page, host tests with [`ArrayPage`].

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
