//! Memory-management vocabulary: address newtypes and the trait through which the core reads memory.
//!
//! Separate types for machine addresses and (later) guest frames make mixing them a type error.

pub mod e820;
pub mod frame_alloc;
pub mod frame_table;
pub mod guest_pt;
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

    /// Copies `len` bytes from machine address `from` to `to`, as `memmove` (the two ranges may
    /// overlap: a grant copy within one frame). The default goes through a page-sized buffer and
    /// [`MachineMemoryMut::write`], so a wrapper that watches writes sees these too; memory
    /// reached directly copies in place, with no buffer to fill and empty again. A refusal after
    /// the first page may leave the pages before it copied (the grant copy, its one caller,
    /// copies within one page).
    fn copy(&mut self, from: Maddr, to: Maddr, len: usize) -> Option<()> {
        let mut buf = [0u8; 4096];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(buf.len());
            // Backwards when the destination starts inside the source, so that an overlapping
            // copy reads each byte before it is overwritten.
            let chunk = if to.0 > from.0 { len - at - n } else { at };
            let src = Maddr(from.0.checked_add(chunk as u64)?);
            buf[..n].copy_from_slice(self.read(src, n)?);
            self.write(Maddr(to.0.checked_add(chunk as u64)?), &buf[..n])?;
            at += n;
        }
        Some(())
    }

    /// Zeroes `len` bytes of machine memory at `addr` (a frame's scrub). The default writes
    /// zeroes through [`MachineMemoryMut::write`] a page at a time, so a wrapper that watches
    /// writes sees these too; memory reached directly stores the zeroes without a source to copy.
    fn zero(&mut self, addr: Maddr, len: usize) -> Option<()> {
        const ZEROES: [u8; 4096] = [0; 4096];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(ZEROES.len());
            self.write(Maddr(addr.0.checked_add(at as u64)?), &ZEROES[..n])?;
            at += n;
        }
        Some(())
    }

    /// Told by the frame table whenever a frame changes type, is validated or devalidated as a
    /// page table, or is freed. Memory that keeps guest translations for the length of a
    /// hypercall (`guest_access::Watched`) drops them all; plain memory caches nothing.
    fn frame_types_changed(&mut self) {}

    /// Copies `buf.len()` bytes from guest virtual address `va` through the CPU's own MMU, as
    /// Xen's `__copy_from_guest` does for a PV guest, if the CPU runs on the tables rooted at
    /// `l4` ([`MmuCopy::Unavailable`] otherwise, and on machines without one: host tests, the
    /// default). The caller has checked that the whole range lies in the guest's part of the
    /// address space ([`crate::guest_access::guest_range_ok`]) and that no TLB work is owed (see
    /// [`crate::guest_access::MmuGuest`]): what the CPU's translations allow is then what the
    /// guest's tables allow.
    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
        let _ = (l4, va, buf);
        MmuCopy::Unavailable
    }

    /// Copies `data` to guest virtual address `va` through the CPU's own MMU (see
    /// [`MachineMemoryMut::mmu_read`]); ring 0 honours read-only mappings (CR0.WP), so a page
    /// the guest may not write faults. `[va, va + data.len())` lies within one page.
    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
        let _ = (l4, va, data);
        MmuCopy::Unavailable
    }

    /// Where the hypervisor reaches frame `mfn` to keep its own data structures there (a
    /// [`xen_page::XenPage`]): its whole 4096 bytes, or `None` if the machine cannot give it
    /// (the default: no such page can be taken). Only for a frame the frame table marks the
    /// hypervisor's and that nothing else uses (see `XenPage::new`): the caller keeps Rust
    /// data there.
    fn xen_frame(&mut self, _mfn: Mfn) -> Option<core::ptr::NonNull<[u8; 4096]>> {
        None
    }

    /// `map_guest_l1e`: the machine address of the L1 entry that maps `va` in the tables rooted
    /// at `l4`, and the L1's frame (see [`walk_to_l1e`]). Provided, and rarely
    /// overridden: the default is compiled for each memory with its own
    /// [`MachineMemoryMut::read_u64`], so a walk's three reads are in line, one dynamic call per
    /// walk rather than one per level. A wrapper forwards it (or gets the walk through its own
    /// reads).
    fn guest_l1e(&self, l4: Mfn, va: u64) -> Option<(Maddr, Mfn)> {
        walk_to_l1e(l4, va, |at| self.read_u64(at))
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

/// Whether `va` is canonical (bits 63..47 all equal).
#[inline]
pub fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// Whether a guest may name `va` at all: canonical and outside the hypervisor's reserved slots.
#[inline]
pub fn guest_va_ok(va: u64) -> bool {
    use hypercall_abi::arch_x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
    is_canonical(va) && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va)
}

/// The bits of a page-table entry a walk reads ([`walk_to_l1e`]); `frame_table::pte`, which
/// holds the rest and what they mean, takes these from here.
pub mod entry {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// In an L2 (or L3) entry: maps a large page rather than a table.
    pub const PSE: u64 = 1 << 7;
    /// The frame's machine address bits.
    pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
}

/// `map_guest_l1e`'s walk: the machine address of the L1 entry that maps `va` in the tables
/// rooted at `l4`, and the L1's frame; `None` if `va` is not a guest address
/// ([`guest_va_ok`]) or no L1 covers it (an entry not present, or a large page).
/// Each entry is read by `read` (see [`MachineMemoryMut::guest_l1e`]).
#[inline(always)]
pub fn walk_to_l1e(l4: Mfn, va: u64, read: impl Fn(Maddr) -> Option<u64>) -> Option<(Maddr, Mfn)> {
    if !guest_va_ok(va) {
        return None;
    }
    let index = |shift: u32| (va >> shift) & 511;
    let e4 = read(Maddr(l4.maddr().0 + index(39) * 8))?;
    if e4 & entry::PRESENT == 0 {
        return None;
    }
    let e3 = read(Maddr((e4 & entry::ADDR) + index(30) * 8))?;
    if e3 & entry::PRESENT == 0 {
        return None;
    }
    let e2 = read(Maddr((e3 & entry::ADDR) + index(21) * 8))?;
    if e2 & (entry::PRESENT | entry::PSE) != entry::PRESENT {
        return None;
    }
    let l1 = Mfn((e2 & entry::ADDR) >> 12);
    Some((Maddr(l1.maddr().0 + index(12) * 8), l1))
}

/// What one call's `guest_access::TranslationCache` learnt about an L4 slot (its
/// `mmu_range_ok` passed a range within it), kept by the vCPU for its next call: valid while the
/// vCPU's L4 is the same and no validated L4's guest entry can have changed since
/// (`frame_table::Mm::l4_changes`, which moves on every such change). The answer rests on that
/// entry alone (see the cache's `mmu_slot_ok`), so the next call may start from it rather than
/// read the entry again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotMemo {
    pub(crate) l4: Mfn,
    /// The slot plus one; 0 for none.
    pub(crate) slot: u64,
    pub(crate) changes: u64,
}

impl SlotMemo {
    /// Nothing remembered.
    pub const NONE: SlotMemo = SlotMemo {
        l4: Mfn(0),
        slot: 0,
        changes: 0,
    };
}

/// What a copy through the MMU ([`MachineMemoryMut::mmu_read`]) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuCopy {
    /// Every byte was copied.
    Done,
    /// A page fault stopped it (the exception-table fixup): -EFAULT for the guest. A read may
    /// have filled part of the buffer; a write within one page wrote nothing.
    Fault,
    /// Not attempted: no MMU here, or the CPU runs on other tables. Walk the tables instead.
    Unavailable,
}

/// A [`MachineMemory`] made of one byte vector that starts at machine address `base`: the fake that
/// host tests place boot-loader structures in.
#[cfg(test)]
pub struct FakeMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// A fake CPU's MMU, for tests of copies through it ([`MachineMemoryMut::mmu_read`]); none
    /// by default.
    pub mmu: Option<FakeMmu>,
}

/// What [`FakeMemory`] does for [`MachineMemoryMut::mmu_read`] and `mmu_write`: what the CPU
/// does in ring 0 with RFLAGS.AC set and CR0.WP. It walks the tables in CR3 for any address,
/// the hypervisor's slots included, and ignores the U bit (a supervisor access to a user page
/// is allowed with AC; a supervisor page is always reachable), requires RW at every level for a
/// write, and keeps what it found in a TLB until [`FakeMmu::flush`]: a translation the tables
/// no longer allow stays usable until then, as on hardware.
#[cfg(test)]
pub struct FakeMmu {
    /// The table the fake CPU runs on.
    pub cr3: Mfn,
    /// Cached translations: the page of a virtual address to (its machine page, writable).
    pub tlb: core::cell::RefCell<std::collections::BTreeMap<u64, (u64, bool)>>,
    /// Copies done through it (not `Unavailable`).
    pub copies: core::cell::Cell<u64>,
    /// Every use of a cached translation that a walk of the tables would no longer give
    /// (virtual address, machine address, whether a write), for a test to judge.
    pub stale_uses: core::cell::RefCell<Vec<(u64, u64, bool)>>,
}

#[cfg(test)]
impl FakeMmu {
    /// An MMU running on `cr3`, its TLB empty.
    pub fn new(cr3: Mfn) -> FakeMmu {
        FakeMmu {
            cr3,
            tlb: Default::default(),
            copies: Default::default(),
            stale_uses: Default::default(),
        }
    }

    /// Drops every cached translation.
    pub fn flush(&self) {
        self.tlb.borrow_mut().clear();
    }

    /// The machine address of `va` for an access (`write`: a write), from the TLB or a walk of
    /// `mem`'s tables (which is then cached); `None` is a page fault.
    fn translate(&self, mem: &[u8], base: u64, va: u64, write: bool) -> Option<u64> {
        let page = va >> 12;
        let cached = self.tlb.borrow().get(&page).copied();
        let (maddr, rw) = match cached {
            Some(t) => {
                if self.walk(mem, base, va) != Some(t) && (t.1 || !write) {
                    self.stale_uses
                        .borrow_mut()
                        .push((va, t.0 | (va & 0xfff), write));
                }
                t
            }
            None => {
                let t = self.walk(mem, base, va)?;
                self.tlb.borrow_mut().insert(page, t);
                t
            }
        };
        (rw || !write).then_some(maddr | (va & 0xfff))
    }

    /// A fresh walk of the tables for `va` (as the CPU's, see the type): the page and whether
    /// every level allows writing.
    fn walk(&self, mem: &[u8], base: u64, va: u64) -> Option<(u64, bool)> {
        let top = (va as i64) >> 47;
        if top != 0 && top != -1 {
            return None; // #GP: not canonical
        }
        let mut table = self.cr3.maddr().0;
        let mut rw = true;
        for level in (1..=4u32).rev() {
            let index = (va >> (12 + 9 * (level - 1))) & 511;
            let off = usize::try_from((table + index * 8).checked_sub(base)?).ok()?;
            let e = u64::from_le_bytes(mem.get(off..off + 8)?.try_into().ok()?);
            if e & 1 == 0 || (level > 1 && e & (1 << 7) != 0) {
                return None;
            }
            rw &= e & 2 != 0;
            table = e & 0x000f_ffff_ffff_f000;
        }
        Some((table, rw))
    }
}

#[cfg(test)]
impl FakeMemory {
    /// The byte offsets of `[va, va + len)` through the fake MMU, page by page, or `None` on a
    /// fault; `Unavailable` without an MMU running on `l4`.
    fn mmu_pieces(
        &self,
        l4: Mfn,
        va: u64,
        len: usize,
        write: bool,
    ) -> Result<Option<Vec<(usize, usize)>>, ()> {
        let Some(mmu) = self.mmu.as_ref().filter(|m| m.cr3 == l4) else {
            return Err(());
        };
        mmu.copies.set(mmu.copies.get() + 1);
        let mut out = Vec::new();
        let mut done = 0usize;
        while done < len {
            let Some(cur) = va.checked_add(done as u64) else {
                return Ok(None);
            };
            let n = ((4096 - (cur & 0xfff)) as usize).min(len - done);
            let Some(maddr) = mmu.translate(&self.bytes, self.base, cur, write) else {
                return Ok(None);
            };
            let Some(off) = maddr
                .checked_sub(self.base)
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| o + n <= self.bytes.len())
            else {
                return Ok(None);
            };
            out.push((off, n));
            done += n;
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
impl FakeMemory {
    /// `size` zero bytes starting at machine address `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
            mmu: None,
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

    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
        match self.mmu_pieces(l4, va, buf.len(), false) {
            Err(()) => MmuCopy::Unavailable,
            Ok(None) => MmuCopy::Fault,
            Ok(Some(pieces)) => {
                let mut done = 0;
                for (off, n) in pieces {
                    buf[done..done + n].copy_from_slice(&self.bytes[off..off + n]);
                    done += n;
                }
                MmuCopy::Done
            }
        }
    }

    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
        match self.mmu_pieces(l4, va, data.len(), true) {
            Err(()) => MmuCopy::Unavailable,
            Ok(None) => MmuCopy::Fault,
            Ok(Some(pieces)) => {
                let mut done = 0;
                for (off, n) in pieces {
                    self.bytes[off..off + n].copy_from_slice(&data[done..done + n]);
                    done += n;
                }
                MmuCopy::Done
            }
        }
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

    /// The default `copy` is a `memmove`: overlapping ranges either way round, over more than
    /// its one-page buffer, give what a copy through a separate buffer gives; out of range is
    /// refused.
    #[test]
    fn the_default_copy_moves_overlapping_ranges_as_memmove() {
        let size = 3 * 4096;
        let pattern: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        for (from, to, len) in [
            (0, 100, 8000),
            (100, 0, 8000),
            (0, 4096, 8192),
            (4096, 0, 8192),
            (5, 5, 10),
            (0, 9000, 3000),
        ] {
            let mut mem = FakeMemory::new(0x10000, size);
            mem.bytes.copy_from_slice(&pattern);
            let mut want = pattern.clone();
            want.copy_within(from..from + len, to);
            assert_eq!(
                mem.copy(
                    Maddr(0x10000 + from as u64),
                    Maddr(0x10000 + to as u64),
                    len
                ),
                Some(())
            );
            assert!(mem.bytes == want, "copy {from} -> {to}, {len} bytes");
        }
        let mut mem = FakeMemory::new(0x10000, size);
        assert_eq!(
            mem.copy(Maddr(0x10000), Maddr(0x10000 + 4096 * 2), 4097),
            None
        );
    }

    #[test]
    fn maddr_checked_add_reports_overflow() {
        assert_eq!(Maddr(1).checked_add(2), Some(Maddr(3)));
        assert_eq!(Maddr(u64::MAX).checked_add(1), None);
    }
}
