//! The byte-stream ring shared by xenstore (`io/xs_wire.h`) and the console (`io/console.h`).
//!
//! Both protocols put a power-of-two byte array and two free-running `u32` indices in one page;
//! an index is masked only when it addresses the array. The producer owns `prod`, the consumer
//! `cons`, but both live in memory the peer can scribble on, so every operation re-validates
//! `prod - cons <= size` before touching the array.

use crate::shared_page::SharedPage;

/// A ring's indices are inconsistent: the producer claims more bytes than the ring holds (or
/// the consumer is ahead of the producer, which wraps to the same thing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `prod - cons` (wrapping) exceeds the ring's size.
    IndexOverrun {
        /// The producer index read from the page.
        prod: u32,
        /// The consumer index read from the page.
        cons: u32,
        /// The ring's size in bytes.
        size: usize,
    },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::IndexOverrun { prod, cons, size } => write!(
                f,
                "ring indices overrun: prod {prod:#x} cons {cons:#x} size {size}"
            ),
        }
    }
}

/// Where one ring of a page lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ByteRing {
    /// Offset of the byte array.
    pub data: usize,
    /// Size of the byte array (a power of two).
    pub size: usize,
    /// Offset of the consumer index.
    pub cons: usize,
    /// Offset of the producer index.
    pub prod: usize,
}

impl ByteRing {
    /// The indices, validated: `(prod, cons, bytes in the ring)`.
    fn indices<P: SharedPage + ?Sized>(&self, page: &P) -> Result<(u32, u32, usize), RingError> {
        let cons = page.load_acquire_u32(self.cons);
        let prod = page.load_acquire_u32(self.prod);
        let used = prod.wrapping_sub(cons) as usize;
        if used > self.size {
            return Err(RingError::IndexOverrun {
                prod,
                cons,
                size: self.size,
            });
        }
        Ok((prod, cons, used))
    }

    fn mask(&self, idx: u32) -> usize {
        idx as usize & (self.size - 1)
    }

    /// Bytes waiting to be consumed.
    pub fn pending<P: SharedPage + ?Sized>(&self, page: &P) -> Result<usize, RingError> {
        self.indices(page).map(|(_, _, used)| used)
    }

    /// Producer side: copies as much of `data` as fits, then publishes it. Returns the bytes
    /// written (0 when the ring is full).
    pub fn produce<P: SharedPage + ?Sized>(
        &self,
        page: &mut P,
        data: &[u8],
    ) -> Result<usize, RingError> {
        let (prod, _, used) = self.indices(page)?;
        let n = data.len().min(self.size - used);
        let off = self.mask(prod);
        let first = n.min(self.size - off);
        page.write_bytes(self.data + off, &data[..first]);
        page.write_bytes(self.data, &data[first..n]);
        // Release: the bytes are in the ring before the peer can see the new producer index.
        page.store_release_u32(self.prod, prod.wrapping_add(n as u32));
        Ok(n)
    }

    /// Consumer side: copies up to `buf.len()` waiting bytes out, then frees their space.
    /// Returns the bytes read (0 when the ring is empty).
    pub fn consume<P: SharedPage + ?Sized>(
        &self,
        page: &mut P,
        buf: &mut [u8],
    ) -> Result<usize, RingError> {
        let (_, cons, used) = self.indices(page)?;
        let n = buf.len().min(used);
        if n == 0 {
            return Ok(0);
        }
        let off = self.mask(cons);
        let first = n.min(self.size - off);
        page.read_bytes(self.data + off, &mut buf[..first]);
        page.read_bytes(self.data, &mut buf[first..n]);
        // Release: the copy is complete before the producer may overwrite the space.
        page.store_release_u32(self.cons, cons.wrapping_add(n as u32));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::ArrayPage;

    const R: ByteRing = ByteRing {
        data: 0,
        size: 8,
        cons: 16,
        prod: 20,
    };

    #[test]
    fn wraps_and_fills() {
        let mut p = ArrayPage::new();
        let mut buf = [0; 8];
        assert_eq!(R.produce(&mut p, b"abcdef"), Ok(6));
        assert_eq!(R.consume(&mut p, &mut buf[..4]), Ok(4));
        assert_eq!(&buf[..4], b"abcd");
        assert_eq!(R.produce(&mut p, b"0123456789"), Ok(6)); // 2 left + 6 free
        assert_eq!(R.produce(&mut p, b"x"), Ok(0));
        assert_eq!(R.pending(&p), Ok(8));
        assert_eq!(R.consume(&mut p, &mut buf), Ok(8));
        assert_eq!(&buf, b"ef012345");
        assert_eq!(R.consume(&mut p, &mut buf), Ok(0));
    }

    #[test]
    fn indices_wrap_around_u32() {
        let mut p = ArrayPage::new();
        p.store_release_u32(16, u32::MAX - 2);
        p.store_release_u32(20, u32::MAX - 2);
        let mut buf = [0; 8];
        assert_eq!(R.produce(&mut p, b"hello"), Ok(5));
        assert_eq!(p.load_acquire_u32(20), 2);
        assert_eq!(R.consume(&mut p, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"hello");
    }

    #[test]
    fn hostile_indices_are_refused() {
        let mut p = ArrayPage::new();
        p.store_release_u32(20, 9);
        let err = Err(RingError::IndexOverrun {
            prod: 9,
            cons: 0,
            size: 8,
        });
        assert_eq!(R.consume(&mut p, &mut [0; 8]), err);
        assert_eq!(R.produce(&mut p, b"x"), err);
        // Consumer ahead of the producer wraps to a huge count.
        p.store_release_u32(20, 0);
        p.store_release_u32(16, 1);
        assert!(R.pending(&p).is_err());
        assert_eq!(p.load_acquire_u32(16), 1, "nothing consumed");
    }
}
