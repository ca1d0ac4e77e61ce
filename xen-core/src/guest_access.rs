//! Guest memory as the hypervisor touches it: guest pointers are allegations, checked by walking
//! the guest's own page tables in software before a single byte is copied.
//!
//! Xen's rule (`guest_access.h`, `access_ok`): a PV guest pointer is good when it is canonical,
//! lies outside the hypervisor's reserved range, and the guest's page tables map it for a
//! user-mode access (64-bit PV kernels run in ring 3), writable for a write. Anything else is
//! -EFAULT for the hypercall, never a hypervisor fault.

use core::fmt;
use core::marker::PhantomData;

use hypercall_abi::arch_x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// A guest pointer that could not be followed: the hypercall fails with -EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    /// The guest virtual address that failed.
    pub va: u64,
}

/// Access to the current guest's virtual memory.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes from guest virtual address `va`.
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault>;
    /// Copies `data` to guest virtual address `va`; every byte must be mapped writable.
    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault>;
}

/// A guest virtual address of a `T`, or of the first of an array of them: Xen's
/// `XEN_GUEST_HANDLE(T)`. What a guest passes in a register or an argument structure is an
/// allegation; nothing is read or written through it but by [`copy_from_guest`] and
/// [`copy_to_guest`], which check the guest's own mappings.
#[doc(alias = "XEN_GUEST_HANDLE")]
#[repr(transparent)]
pub struct GuestPtr<T> {
    va: u64,
    elem: PhantomData<fn() -> T>,
}

impl<T> GuestPtr<T> {
    /// The guest's pointer `va` (a register or a field of an argument), typed.
    pub const fn new(va: u64) -> Self {
        GuestPtr {
            va,
            elem: PhantomData,
        }
    }

    /// Its guest virtual address.
    pub const fn va(self) -> u64 {
        self.va
    }

    /// `guest_handle_is_null`.
    pub const fn is_null(self) -> bool {
        self.va == 0
    }

    /// `guest_handle_okay` for an array: it starts inside guest address space (Xen's `__addr_ok`
    /// checks the start only; each element is checked when it is copied).
    pub fn okay(self) -> bool {
        guest_va_ok(self.va)
    }

    /// Element `i` of the array starting here (`guest_handle_add_offset`; wraps as Xen's
    /// pointer arithmetic does, and the copy then faults).
    pub const fn add(self, i: u64) -> Self {
        GuestPtr::new(
            self.va
                .wrapping_add(i.wrapping_mul(core::mem::size_of::<T>() as u64)),
        )
    }

    /// The field at byte `offset` (from `offset_of!`) of the `T` here, as a pointer to a `U`:
    /// where Xen copies back one member of an argument (`__copy_field_to_guest`).
    pub const fn field<U>(self, offset: usize) -> GuestPtr<U> {
        GuestPtr::new(self.va.wrapping_add(offset as u64))
    }

    /// The same address as a pointer to a `U` (`guest_handle_cast`).
    pub const fn cast<U>(self) -> GuestPtr<U> {
        GuestPtr::new(self.va)
    }
}

impl<T> Clone for GuestPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for GuestPtr<T> {}

impl<T> PartialEq for GuestPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.va == other.va
    }
}

impl<T> Eq for GuestPtr<T> {}

impl<T> fmt::Debug for GuestPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPtr({:#x})", self.va)
    }
}

/// Reads a `T` from the guest (`copy_from_guest`).
pub fn copy_from_guest<T: FromBytes + IntoBytes>(
    mem: &impl GuestMemory,
    ptr: GuestPtr<T>,
) -> Result<T, GuestFault> {
    let mut value = T::new_zeroed();
    mem.read(ptr.va, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes a `T` to the guest (`copy_to_guest`).
pub fn copy_to_guest<T: IntoBytes + Immutable>(
    mem: &mut impl GuestMemory,
    ptr: GuestPtr<T>,
    value: &T,
) -> Result<(), GuestFault> {
    mem.write(ptr.va, value.as_bytes())
}

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PSE: u64 = 1 << 7;
const PTE_FRAME: u64 = 0x000f_ffff_ffff_f000;

/// Whether `va` is canonical (bits 63..47 all equal).
pub fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// Whether a guest may name `va` at all: canonical and outside the hypervisor's reserved slots.
pub fn guest_va_ok(va: u64) -> bool {
    is_canonical(va) && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va)
}

/// Translates `va` through the 4-level tables rooted at `l4` for a user-mode access (`write` asks
/// for a writable mapping). Superpages are refused: PV guests map 4 KiB pages only.
pub fn translate<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
    va: u64,
    write: bool,
) -> Option<Maddr> {
    if !guest_va_ok(va) {
        return None;
    }
    let mut table = l4.maddr();
    for level in (1..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 511;
        let entry = mem.read_u64(Maddr(table.0 + index * 8))?;
        let need = PTE_P | PTE_US | if write { PTE_RW } else { 0 };
        if entry & need != need || (level > 1 && entry & PTE_PSE != 0) {
            return None;
        }
        table = Maddr(entry & PTE_FRAME);
    }
    Some(Maddr(table.0 | (va & 0xfff)))
}

/// [`GuestMemory`] over machine memory and the guest's current L4 table.
pub struct PageTableGuest<'m, M: MachineMemoryMut + ?Sized> {
    /// Machine memory (the direct map on bare metal, a byte vector in tests).
    pub mem: &'m mut M,
    /// The guest's current top-level table.
    pub l4: Mfn,
}

impl<M: MachineMemoryMut + ?Sized> PageTableGuest<'_, M> {
    /// Runs `f` on each page-bounded piece of `[va, va + len)`: (guest va, machine address, len).
    fn pieces(
        &self,
        va: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(usize, Maddr, usize) -> Option<()>,
    ) -> Result<(), GuestFault> {
        let mut done = 0usize;
        while done < len {
            let cur = va.checked_add(done as u64).ok_or(GuestFault { va })?;
            let in_page = (4096 - (cur & 0xfff)) as usize;
            let n = in_page.min(len - done);
            let maddr = translate(&*self.mem, self.l4, cur, write).ok_or(GuestFault { va: cur })?;
            f(done, maddr, n).ok_or(GuestFault { va: cur })?;
            done += n;
        }
        Ok(())
    }
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for PageTableGuest<'_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let len = buf.len();
        self.pieces(va, len, false, |off, maddr, n| {
            buf[off..off + n].copy_from_slice(self.mem.read(maddr, n)?);
            Some(())
        })
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        // Translate every piece first, so a fault half-way writes nothing.
        self.pieces(va, data.len(), true, |_, _, _| Some(()))?;
        let mut done = 0usize;
        while done < data.len() {
            let cur = va + done as u64;
            let n = ((4096 - (cur & 0xfff)) as usize).min(data.len() - done);
            let maddr = translate(&*self.mem, self.l4, cur, true).ok_or(GuestFault { va: cur })?;
            self.mem
                .write(maddr, &data[done..done + n])
                .ok_or(GuestFault { va: cur })?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::FakeMemory;

    const FLAGS: u64 = PTE_P | PTE_RW | PTE_US;

    /// Machine memory of 16 frames at 0: L4 in frame 1, L3 in 2, L2 in 3, L1 in 4, and guest data
    /// in frames 8 (writable at VA 0x40_0000) and 9 (read-only at 0x40_1000).
    fn machine() -> FakeMemory {
        let mut m = FakeMemory::new(0, 16 * 4096);
        m.write_u64(Maddr(0x1000), 0x2000 | FLAGS).unwrap();
        m.write_u64(Maddr(0x2000), 0x3000 | FLAGS).unwrap();
        m.write_u64(Maddr(0x3000 + 2 * 8), 0x4000 | FLAGS).unwrap();
        m.write_u64(Maddr(0x4000), 0x8000 | FLAGS).unwrap();
        m.write_u64(Maddr(0x4000 + 8), 0x9000 | PTE_P | PTE_US)
            .unwrap();
        m.put(0x8000, b"hello");
        m
    }

    #[test]
    fn reads_and_writes_through_the_guest_tables() {
        let mut m = machine();
        let mut g = PageTableGuest {
            mem: &mut m,
            l4: Mfn(1),
        };
        let mut buf = [0u8; 5];
        g.read(0x40_0000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        g.write(0x40_0002, b"LL").unwrap();
        let v: [u8; 5] = copy_from_guest(&g, GuestPtr::new(0x40_0000)).unwrap();
        assert_eq!(&v, b"heLLo");
    }

    #[test]
    fn read_only_pages_refuse_writes_and_nothing_is_written() {
        let mut m = machine();
        let mut g = PageTableGuest {
            mem: &mut m,
            l4: Mfn(1),
        };
        // Crosses from the writable page into the read-only one.
        assert_eq!(
            g.write(0x40_0ffe, b"abcd"),
            Err(GuestFault { va: 0x40_1000 })
        );
        let mut b = [0u8; 2];
        g.read(0x40_0ffe, &mut b).unwrap();
        assert_eq!(b, [0, 0]);
        let mut one = [0u8; 1];
        assert!(g.read(0x40_1000, &mut one).is_ok());
    }

    #[test]
    fn unmapped_noncanonical_and_hypervisor_addresses_fault() {
        let mut m = machine();
        let g = PageTableGuest {
            mem: &mut m,
            l4: Mfn(1),
        };
        let mut b = [0u8; 1];
        assert!(g.read(0x40_2000, &mut b).is_err());
        assert!(g.read(0x0000_8000_0000_0000, &mut b).is_err());
        assert!(g.read(HYPERVISOR_VIRT_START, &mut b).is_err());
        assert!(g.read(u64::MAX, &mut [0u8; 4]).is_err());
    }

    #[test]
    fn supervisor_only_and_superpage_mappings_fault() {
        let mut m = machine();
        m.write_u64(Maddr(0x4000 + 2 * 8), 0xa000 | PTE_P | PTE_RW)
            .unwrap();
        m.write_u64(Maddr(0x3000 + 3 * 8), FLAGS | PTE_PSE).unwrap();
        let g = PageTableGuest {
            mem: &mut m,
            l4: Mfn(1),
        };
        let mut b = [0u8; 1];
        assert!(g.read(0x40_2000, &mut b).is_err());
        assert!(g.read(0x60_0000, &mut b).is_err());
    }
}
