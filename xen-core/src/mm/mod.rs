//! Memory-management vocabulary: address newtypes and the trait through which the core reads memory.
//!
//! Separate types for machine addresses and (later) guest frames make mixing them a type error.

pub mod e820;
pub mod frame_alloc;
pub mod frame_table;
pub(crate) mod guest_pt;
pub(crate) mod memory;
pub(crate) mod mmu;
pub mod page_memo;
pub mod xen_page;

use core::fmt;

/// The level of a page-table frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PtLevel {
    /// Maps 4 KiB pages.
    L1,
    /// Points to L1s.
    L2,
    /// Points to L2s.
    L3,
    /// The root.
    L4,
}

impl fmt::Display for PtLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PtLevel::L1 => "L1",
            PtLevel::L2 => "L2",
            PtLevel::L3 => "L3",
            PtLevel::L4 => "L4",
        })
    }
}

/// A machine (host-physical) address: what a boot loader hands us and what page tables point to.
#[doc(alias = "paddr_t")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Maddr(pub u64);

impl Maddr {
    /// `self + offset`, or `None` on overflow (addresses come from untrusted structures).
    pub fn checked_add(self, offset: u64) -> Option<Maddr> {
        self.0.checked_add(offset).map(Maddr)
    }
}

impl fmt::Debug for Maddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Maddr({:#x})", self.0)
    }
}

impl fmt::Display for Maddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A machine frame number: `Maddr >> 12`.
#[doc(alias = "mfn_t")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The machine address of the frame's first byte.
    pub const fn maddr(self) -> Maddr {
        Maddr(self.0 << 12)
    }
}

/// A guest (pseudo-physical) frame number, as a PV guest's p2m names its pages.
#[doc(alias = "gfn_t")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Pfn(pub u64);

impl Maddr {
    /// The frame holding this address.
    pub const fn mfn(self) -> Mfn {
        Mfn(self.0 >> 12)
    }
}

/// Read access to machine memory, as the portable core sees it.
///
/// The hypervisor implements this over its direct map; host tests implement it over a byte vector.
/// Implementations must return `None` for ranges they cannot (or must not) expose, rather than
/// faulting: addresses given to the core come from boot loaders and, later, guests.
pub trait MachineMemory {
    /// Borrows `len` bytes of machine memory starting at `addr`, or returns `None` if any byte of
    /// that range is not readable.
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]>;

    /// Reads a little-endian u32 at `addr`, aligned or not (the event upcall word of a
    /// `vcpu_info`, read on every hypercall's way out); `None` where [`MachineMemory::read`]
    /// would refuse.
    #[inline]
    fn read_u32_unaligned(&self, addr: Maddr) -> Option<u32> {
        let b = self.read(addr, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
}

/// Write access to machine memory (the domain builder, page-table walks that set A/D bits, guest
/// copies). Same contract as [`MachineMemory`]: `None` for any range that must not be written.
pub trait MachineMemoryMut: MachineMemory {
    /// Copies `data` to machine memory at `addr`.
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()>;

    /// Told by the frame table whenever a frame changes type, is validated or devalidated as a
    /// page table, or is freed. Memory that keeps guest translations for the length of a
    /// hypercall (`guest_access::Watched`) drops them all; plain memory caches nothing.
    fn frame_types_changed(&mut self) {}

    /// Where the hypervisor reaches frame `mfn` to keep its own data structures there (a
    /// [`xen_page::XenPage`]): its whole 4096 bytes, or `None` if the machine cannot give it
    /// (the default: no such page can be taken). Only for a frame the frame table marks the
    /// hypervisor's and that nothing else uses (see `XenPage::new`): the caller keeps Rust
    /// data there.
    fn xen_frame(&mut self, _mfn: Mfn) -> Option<core::ptr::NonNull<[u8; 4096]>> {
        None
    }

    /// Reads a little-endian u64 at `addr` (page-table entries, p2m entries).
    fn read_u64(&self, addr: Maddr) -> Option<u64> {
        let b = self.read(addr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Writes a little-endian u64 at `addr`.
    fn write_u64(&mut self, addr: Maddr, value: u64) -> Option<()> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Xen's locked `test_and_set_bit` on the little-endian u64 at `addr` (naturally aligned,
    /// in memory a guest shares): sets bit `bit` (0..64) and returns whether it was set. The
    /// hypervisor's direct map does it with one `lock` instruction, since a guest may change the
    /// same word on another CPU; this default, a read and a write, is right for memory nothing
    /// else runs on (host tests).
    fn test_and_set_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        let old = self.read_u64(addr)?;
        if old & (1 << bit) == 0 {
            self.write_u64(addr, old | 1 << bit)?;
        }
        Some(old & (1 << bit) != 0)
    }

    /// Xen's locked `test_and_clear_bit`: as [`MachineMemoryMut::test_and_set_bit`], clearing.
    fn test_and_clear_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        let old = self.read_u64(addr)?;
        if old & (1 << bit) != 0 {
            self.write_u64(addr, old & !(1 << bit))?;
        }
        Some(old & (1 << bit) != 0)
    }

    /// Reads the little-endian u32 at `addr`, which must be 4-byte aligned (FIFO event words and
    /// control blocks in a guest's frames).
    fn read_u32(&self, addr: Maddr) -> Option<u32> {
        if !addr.0.is_multiple_of(4) {
            return None;
        }
        let b = self.read(addr, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    /// Locked `cmpxchg` on the aligned u32 at `addr` (memory a guest shares): writes `new` if
    /// the word holds `old`; returns what the word held. The default, a read and a write, is
    /// right for memory nothing else runs on (host tests).
    fn compare_exchange_u32(&mut self, addr: Maddr, old: u32, new: u32) -> Option<u32> {
        let cur = self.read_u32(addr)?;
        if cur == old {
            self.write(addr, &new.to_le_bytes())?;
        }
        Some(cur)
    }

    /// Locked `fetch_or` on the aligned u32 at `addr`; returns the old value.
    fn fetch_or_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        let cur = self.read_u32(addr)?;
        self.write(addr, &(cur | bits).to_le_bytes())?;
        Some(cur)
    }

    /// Locked `fetch_and` on the aligned u32 at `addr`; returns the old value.
    fn fetch_and_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        let cur = self.read_u32(addr)?;
        self.write(addr, &(cur & bits).to_le_bytes())?;
        Some(cur)
    }
}

/// A [`MachineMemory`] made of one byte vector that starts at machine address `base`: the fake that
/// host tests place boot-loader structures in.
#[cfg(test)]
pub(crate) struct FakeMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
impl FakeMemory {
    /// `size` zero bytes starting at machine address `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
        }
    }

    /// Copies `data` to machine address `addr` (which must lie inside the fake).
    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let off = usize::try_from(addr - self.base).unwrap();
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }
}

#[cfg(test)]
impl MachineMemory for FakeMemory {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(addr.0.checked_sub(self.base)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }
}

#[cfg(test)]
impl MachineMemoryMut for FakeMemory {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        let off = usize::try_from(addr.0.checked_sub(self.base)?).ok()?;
        self.bytes
            .get_mut(off..off.checked_add(data.len())?)?
            .copy_from_slice(data);
        Some(())
    }

    /// The frame's bytes in the vector (which never grows, so they stay where they are), if
    /// they are aligned as a page must be ([`xen_page::PAGE_ALIGN`]).
    fn xen_frame(&mut self, mfn: Mfn) -> Option<core::ptr::NonNull<[u8; 4096]>> {
        let off = usize::try_from(mfn.maddr().0.checked_sub(self.base)?).ok()?;
        let bytes = self.bytes.get_mut(off..off.checked_add(4096)?)?;
        let p = bytes.as_mut_ptr();
        (p.align_offset(xen_page::PAGE_ALIGN) == 0)
            .then(|| core::ptr::NonNull::new(p.cast()))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_memory_refuses_ranges_outside_itself() {
        let mem = FakeMemory::new(0x1000, 0x100);
        assert!(mem.read(Maddr(0x1000), 0x100).is_some());
        assert!(mem.read(Maddr(0xfff), 1).is_none());
        assert!(mem.read(Maddr(0x10ff), 2).is_none());
        assert!(mem.read(Maddr(u64::MAX), 2).is_none());
    }

    #[test]
    fn maddr_checked_add_reports_overflow() {
        assert_eq!(Maddr(1).checked_add(2), Some(Maddr(3)));
        assert_eq!(Maddr(u64::MAX).checked_add(1), None);
    }
}
