//! Guest memory as the hypervisor touches it: guest pointers are allegations, checked against the
//! guest's own page tables before a single byte is copied.
//!
//! Xen's rule (`guest_access.h`, `access_ok`): a PV guest pointer is good when it is canonical,
//! lies outside the hypervisor's reserved range, and the guest's page tables map it for a
//! user-mode access (64-bit PV kernels run in ring 3), writable for a write. Anything else is
//! -EFAULT for the hypercall, never a hypervisor fault.
//!
//! Two ways to apply it. Walking the tables in software ([`PageTableGuest`], [`walk`]) works
//! whatever table the CPU runs on. During the caller's own hypercall its tables are live in CR3,
//! and Xen copies through the MMU: [`MmuGuest`] and [`TranslationCache`] do the same when they
//! may (see [`MmuGuest`] for when), through [`MachineMemoryMut::mmu_read`] and `mmu_write`,
//! which the arch layer implements with exception-table fixups (`arch/x86_64/uaccess.rs`).

use core::cell::{Cell, OnceCell};
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use hypercall_abi::arch_x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::mm::{MachineMemoryMut, Maddr, Mfn, MmuCopy};

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

pub use crate::mm::{guest_va_ok, is_canonical};

/// One past the lower canonical half (`0x0000_8000_0000_0000`).
const LOWER_HALF_END: u64 = 1 << 47;

/// Whether every byte of `[va, va + len)` lies in the part of the address space a 64-bit PV
/// guest owns: the lower canonical half, or the upper half above the hypervisor's reserved slots
/// (`HYPERVISOR_VIRT_END` up to the top, not wrapping). What a copy through the MMU must check
/// first: the CPU reaches the hypervisor's own mappings too (L4 slots 256..271 are in every
/// guest L4), which a walk refuses ([`guest_va_ok`]) and the MMU does not. An empty range
/// touches nothing and is allowed.
#[inline]
pub fn guest_range_ok(va: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    match va.checked_add(len as u64 - 1) {
        None => false,
        Some(last) => last < LOWER_HALF_END || va >= HYPERVISOR_VIRT_END,
    }
}

/// Whether a copy through the MMU may touch `[va, va + len)` of the address space rooted at `l4`:
/// the range is the guest's ([`guest_range_ok`]) and no L4 slot it touches maps an L4 table.
///
/// A read-only L4 entry may map an L4 (a linear page table: its own, or another of the same
/// domain), as on Xen. Through it the CPU walks that L4 again one level down, and so reaches
/// the hypervisor's slots 256..271, which every validated L4 holds, from a lower-half address:
/// its page tables and its direct map, supervisor-only mappings the CPU in ring 0 does not
/// refuse. The walk refuses them (the U bit at every level), so such a range is walked. Only an
/// L4 entry can lead into an L4 (an L3 or L2 entry maps the next level down, or a table of its
/// own level: validation), so the rest of the walk stays in the guest's tables.
///
/// A writable entry never maps an L4: a linear entry must be read-only (validation refuses
/// it otherwise, as Xen's `get_l4_linear_pagetable`, and a change of RW in a present entry is
/// validated afresh, not on the fast path), so it maps an L3, and the range needs nothing more
/// (the common case: one read of the entry). A read-only entry may map either: an L4 is told
/// by its hypervisor slots: a guest L3 cannot hold the hypervisor's present
/// entry (it maps a frame the guest does not own), so a target whose entry in a present
/// hypervisor slot equals `l4`'s is taken for an L4 (a false match only costs a walk).
#[inline]
pub fn mmu_range_ok<M: MachineMemoryMut + ?Sized>(mem: &M, l4: Mfn, va: u64, len: usize) -> bool {
    if !guest_range_ok(va, len) {
        return false;
    }
    let last = va.wrapping_add((len as u64).max(1) - 1);
    let (first_slot, last_slot) = ((va >> 39) & 511, (last >> 39) & 511);
    let entry = |table: Mfn, slot: u64| mem.read_u64(Maddr(table.maddr().0 + slot * 8));
    if first_slot == last_slot {
        match entry(l4, first_slot) {
            Some(e) if e & (PTE_P | PTE_RW) == PTE_P | PTE_RW => return true,
            Some(_) => {}
            None => return false,
        }
    }
    mmu_range_ok_slow(mem, l4, first_slot, last_slot)
}

/// [`mmu_range_ok`] for a range over two L4 slots or behind a read-only entry.
#[inline(never)]
fn mmu_range_ok_slow<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
    first_slot: u64,
    last_slot: u64,
) -> bool {
    if last_slot > first_slot + 1 {
        return false; // more than 512 GiB: nothing a hypercall copies
    }
    let entry = |table: Mfn, slot: u64| mem.read_u64(Maddr(table.maddr().0 + slot * 8));
    // The hypervisor's slots (256..272), from its reserved range.
    let mut xen_slots = (HYPERVISOR_VIRT_START >> 39) & 511..(HYPERVISOR_VIRT_END >> 39) & 511;
    let xen = xen_slots.find_map(|k| entry(l4, k).filter(|e| e & PTE_P != 0).map(|e| (k, e)));
    for slot in first_slot..=last_slot {
        let Some(e) = entry(l4, slot) else {
            return false;
        };
        if e & PTE_P == 0 {
            continue; // the MMU faults, and the walk answers
        }
        let target = Mfn((e & PTE_FRAME) >> 12);
        if target == l4 {
            return false;
        }
        if let Some((k, want)) = xen {
            match entry(target, k) {
                Some(got) if got != want => {}
                _ => return false,
            }
        }
    }
    true
}

/// Whether `[va, va + len)` lies within one page (a write through the MMU is all or nothing
/// only then: every byte has the one translation).
#[inline]
fn within_one_page(va: u64, len: usize) -> bool {
    (va & 0xfff) + len as u64 <= 4096
}

/// What a walk of the guest's tables found for one page: where it is, which tables the walk read
/// (the frames of its L4, L3, L2 and L1 entries: a write to any of them may change the answer),
/// and whether every level also allows writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The machine address of the page's first byte.
    pub page: Maddr,
    /// The frames of the L4, L3, L2 and L1 tables whose entries the walk read.
    pub tables: [Mfn; 4],
    /// Every entry on the way has RW: a write through this translation is allowed.
    pub writable: bool,
}

/// Walks the 4-level tables rooted at `l4` for a user-mode read of `va`. Superpages are
/// refused: PV guests map 4 KiB pages only.
pub fn walk<M: MachineMemoryMut + ?Sized>(mem: &M, l4: Mfn, va: u64) -> Option<Walk> {
    if !guest_va_ok(va) {
        return None;
    }
    let mut tables = [l4; 4];
    let mut table = l4.maddr();
    let mut rw = PTE_RW;
    for level in (1..=4u32).rev() {
        tables[4 - level as usize] = table.mfn();
        let index = (va >> (12 + 9 * (level - 1))) & 511;
        let entry = mem.read_u64(Maddr(table.0 + index * 8))?;
        if entry & (PTE_P | PTE_US) != PTE_P | PTE_US || (level > 1 && entry & PTE_PSE != 0) {
            return None;
        }
        rw &= entry;
        table = Maddr(entry & PTE_FRAME);
    }
    Some(Walk {
        page: table,
        tables,
        writable: rw != 0,
    })
}

/// Translates `va` through the 4-level tables rooted at `l4` for a user-mode access (`write` asks
/// for a writable mapping). Superpages are refused: PV guests map 4 KiB pages only.
pub fn translate<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
    va: u64,
    write: bool,
) -> Option<Maddr> {
    let w = walk(mem, l4, va)?;
    (w.writable || !write).then_some(Maddr(w.page.0 | (va & 0xfff)))
}

/// Runs `f` on each page-bounded piece of `[va, va + len)`: (offset, machine address, len).
fn pieces<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
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
        let maddr = translate(mem, l4, cur, write).ok_or(GuestFault { va: cur })?;
        f(done, maddr, n).ok_or(GuestFault { va: cur })?;
        done += n;
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `va` through the tables at `l4`, one walk per page.
fn read_walked<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
    va: u64,
    buf: &mut [u8],
) -> Result<(), GuestFault> {
    let len = buf.len();
    pieces(mem, l4, va, len, false, |off, maddr, n| {
        buf[off..off + n].copy_from_slice(mem.read(maddr, n)?);
        Some(())
    })
}

/// Writes `data` at `va` through the tables at `l4`: every piece is translated first, so a
/// fault half-way writes nothing.
fn write_walked<M: MachineMemoryMut + ?Sized>(
    mem: &mut M,
    l4: Mfn,
    va: u64,
    data: &[u8],
) -> Result<(), GuestFault> {
    let in_first = (4096 - (va & 0xfff)) as usize;
    if data.len() <= in_first {
        // One page: one walk.
        let maddr = translate(&*mem, l4, va, true).ok_or(GuestFault { va })?;
        return mem.write(maddr, data).ok_or(GuestFault { va });
    }
    pieces(&*mem, l4, va, data.len(), true, |_, _, _| Some(()))?;
    let mut done = 0usize;
    while done < data.len() {
        let cur = va + done as u64;
        let n = ((4096 - (cur & 0xfff)) as usize).min(data.len() - done);
        let maddr = translate(&*mem, l4, cur, true).ok_or(GuestFault { va: cur })?;
        mem.write(maddr, &data[done..done + n])
            .ok_or(GuestFault { va: cur })?;
        done += n;
    }
    Ok(())
}

/// [`GuestMemory`] over machine memory and the guest's current L4 table.
pub struct PageTableGuest<'m, M: MachineMemoryMut + ?Sized> {
    /// Machine memory (the direct map on bare metal, a byte vector in tests).
    pub mem: &'m mut M,
    /// The guest's current top-level table.
    pub l4: Mfn,
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for PageTableGuest<'_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        read_walked(&*self.mem, self.l4, va, buf)
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        write_walked(&mut *self.mem, self.l4, va, data)
    }
}

/// The calling guest's memory during its own hypercall: through the CPU's MMU where that is
/// what a walk would give, else by walking its tables ([`PageTableGuest`]). Xen copies PV guest
/// memory through the MMU (`__copy_from_guest`: the guest's tables are in CR3); so does this,
/// only when all of these hold:
///
/// - `mmu`: the caller found no TLB work owed ([`crate::domain::FlushRequest::owes_tlb_work`],
///   `Ctx::mmu_usable`). The hypervisor defers its flushes to the way out; every change after
///   which a translation the CPU may still hold would reach what the guest may no longer reach
///   (a frame retyped or freed, a grant unmapped) asks for one. With none owed, every
///   translation the TLB holds allows only what the guest itself could do through it when it
///   runs (the same rule keeps the guest safe from its own stale entries); a stale entry to one
///   of its own pages it unmapped without a flush is as good as Xen's.
/// - the whole range lies in the guest's part of the address space and no L4 slot it touches
///   maps an L4 ([`mmu_range_ok`]): never the hypervisor's slots, which the MMU would reach.
/// - the arch layer finds the CPU running on `l4` (else it answers
///   [`MmuCopy::Unavailable`]).
/// - a write lies within one page, so that a fault writes nothing (as a walked write, which
///   translates every piece first).
///
/// The MMU honours what the walk checks: present at every level; writable at every level for a
/// write (CR0.WP is set, so ring 0 honours read-only mappings: a guest's page tables, a
/// read-only grant); no superpage and the U bit at every level are what validation enforces
/// (`L2_DISALLOW_MASK`, `adjust_guest_l*e`) in the guest's own tables, and the one way out of
/// them, an L4 entry that maps an L4 (a linear page table) and so leads into the hypervisor's
/// slots, whose entries have no U bit, is walked instead ([`mmu_range_ok`]). A copy the MMU refuses (a page fault, turned into
/// [`MmuCopy::Fault`] by the exception table) is done again by walking, so every refusal is the
/// walk's own answer (a TLB entry older than a guest's upgrade of a mapping could fault where the
/// tables allow: Xen's "spurious" page faults).
pub struct MmuGuest<'m, M: MachineMemoryMut + ?Sized> {
    /// The guest's tables, walked when the MMU may not or will not do it.
    pub walk: PageTableGuest<'m, M>,
    /// No TLB work is owed (see the type).
    pub mmu: bool,
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for MmuGuest<'_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        if self.mmu
            && mmu_range_ok(self.walk.mem, self.walk.l4, va, buf.len())
            && self.walk.mem.mmu_read(self.walk.l4, va, buf) == MmuCopy::Done
        {
            return Ok(());
        }
        self.walk.read(va, buf)
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        if self.mmu
            && within_one_page(va, data.len())
            && mmu_range_ok(&*self.walk.mem, self.walk.l4, va, data.len())
            && self.walk.mem.mmu_write(self.walk.l4, va, data) == MmuCopy::Done
        {
            return Ok(());
        }
        self.walk.write(va, data)
    }
}

/// Whether an L4-slot memo (`remembered`: the slot plus one, 0 for none) answers
/// [`mmu_range_ok`] for `[va, va + len)` without reading the L4: the range lies in the guest's
/// part of the address space, within the one remembered slot. Also the range's first slot and
/// whether it lies within one, for the caller to check and remember on a miss.
#[inline(always)]
fn slot_memo_answers<M: MachineMemoryMut + ?Sized>(
    mem: &M,
    l4: Mfn,
    remembered: u64,
    va: u64,
    len: usize,
) -> (bool, u64, bool) {
    let slot = (va >> 39) & 511;
    let one_slot = (va.wrapping_add((len as u64).max(1) - 1) >> 39) & 511 == slot;
    let hit = one_slot && remembered == slot + 1 && guest_range_ok(va, len);
    // Test oracle: what the memo answers is what the check would.
    #[cfg(test)]
    assert!(!hit || mmu_range_ok(mem, l4, va, len), "stale L4-slot memo");
    #[cfg(not(test))]
    let _ = (mem, l4);
    (hit, slot, one_slot)
}

/// The L4-slot answer of [`mmu_range_ok`] for a call that copies its arguments with
/// [`MmuGuest`]'s rules but keeps no [`TranslationCache`] (the grant-table calls): the slot a
/// range within one slot last passed in, resumed from and handed back to the vCPU's
/// [`crate::mm::SlotMemo`] as a cache's is. It rests on that L4 entry alone; the call must not
/// change a validated L4's guest entries (no grant-table operation does: they write L1
/// entries), and what it hands back is dropped if any changed meanwhile (`l4_changes`).
pub struct SlotOk {
    l4: Mfn,
    /// The slot plus one; 0 for none.
    slot: Cell<u64>,
    /// [`crate::mm::frame_table::Mm::l4_changes`] when the call began.
    changes: u64,
}

impl SlotOk {
    /// For the tables rooted at `l4`, from what `memo` knows if no L4 entry changed since
    /// (`l4_changes` now).
    pub fn resuming(l4: Mfn, memo: crate::mm::SlotMemo, l4_changes: u64) -> Self {
        let valid = memo.slot != 0 && memo.l4 == l4 && memo.changes == l4_changes;
        SlotOk {
            l4,
            slot: Cell::new(if valid { memo.slot } else { 0 }),
            changes: l4_changes,
        }
    }

    /// What to keep for the next call (`l4_changes` now): nothing if an L4 entry changed.
    pub fn memo(&self, l4_changes: u64) -> crate::mm::SlotMemo {
        if l4_changes != self.changes {
            return crate::mm::SlotMemo::NONE;
        }
        crate::mm::SlotMemo {
            l4: self.l4,
            slot: self.slot.get(),
            changes: l4_changes,
        }
    }

    /// [`mmu_range_ok`] for these tables, the remembered slot answered without reading it.
    #[inline(always)]
    fn range_ok<M: MachineMemoryMut + ?Sized>(&self, mem: &M, va: u64, len: usize) -> bool {
        let (remembered, slot, one_slot) =
            slot_memo_answers(mem, self.l4, self.slot.get(), va, len);
        if remembered {
            return true;
        }
        let ok = mmu_range_ok(mem, self.l4, va, len);
        if ok && one_slot {
            self.slot.set(slot + 1);
        }
        ok
    }
}

/// [`MmuGuest`] with a [`SlotOk`]: the same rules, the L4 slot's check remembered across the
/// copies of one call (and from one call to the next, through the vCPU's memo).
pub struct SlotMmuGuest<'a, 'm, M: MachineMemoryMut + ?Sized> {
    /// The guest's tables, walked when the MMU may not or will not do it.
    pub walk: PageTableGuest<'m, M>,
    /// No TLB work is owed (see [`MmuGuest`]).
    pub mmu: bool,
    /// The slot memo; its `l4` is `walk.l4`.
    pub slot: &'a SlotOk,
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for SlotMmuGuest<'_, '_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        debug_assert_eq!(self.slot.l4, self.walk.l4);
        if self.mmu
            && self.slot.range_ok(self.walk.mem, va, buf.len())
            && self.walk.mem.mmu_read(self.walk.l4, va, buf) == MmuCopy::Done
        {
            return Ok(());
        }
        self.walk.read(va, buf)
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        debug_assert_eq!(self.slot.l4, self.walk.l4);
        if self.mmu
            && within_one_page(va, data.len())
            && self.slot.range_ok(&*self.walk.mem, va, data.len())
            && self.walk.mem.mmu_write(self.walk.l4, va, data) == MmuCopy::Done
        {
            return Ok(());
        }
        self.walk.write(va, data)
    }
}

/// A guest page's translation kept by a [`TranslationCache`], in plain cells: the check every
/// write makes is eight loads and compares.
struct Slot {
    /// `va >> 12` of the page, or [`EMPTY`].
    va_page: Cell<u64>,
    /// The page's machine address.
    page: Cell<u64>,
    /// Every level allows writing.
    writable: Cell<bool>,
    /// The frames of the tables the walk read, or [`EMPTY`] (which no write's frame is close
    /// to: frame numbers are below 2^52).
    tables: [Cell<u64>; 4],
    /// The page's own frame once an [`ArrayReader`] read ahead from it, else [`EMPTY`]: a
    /// write to it leaves the translation alone but ends the epoch.
    data: Cell<u64>,
}

/// An empty [`Slot`]'s page and tables.
const EMPTY: u64 = u64::MAX;

impl Slot {
    const fn new() -> Slot {
        Slot {
            va_page: Cell::new(EMPTY),
            page: Cell::new(0),
            writable: Cell::new(false),
            tables: [const { Cell::new(EMPTY) }; 4],
            data: Cell::new(EMPTY),
        }
    }

    fn clear(&self) {
        self.va_page.set(EMPTY);
        self.data.set(EMPTY);
        for t in &self.tables {
            t.set(EMPTY);
        }
    }
}

/// Cache hits checked against a fresh walk by the test oracle in [`TranslationCache::lookup`]
/// (the sequence fuzzer prints it: a fuzzer that never hits the cache tests nothing of it).
#[cfg(test)]
pub(crate) static CACHE_HITS_CHECKED: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(0);

/// Slots of a [`TranslationCache`]: a batch's list and its `*done`.
const CACHE_SLOTS: usize = 2;

/// Translations of guest pages kept for the length of one hypercall, so that a batch of
/// thousands of 16-byte elements costs one walk of the guest's tables per page of its list
/// rather than one per element (Xen reads the list through the MMU and its TLB).
///
/// A cached translation is exactly what a new walk would return as long as none of the four
/// entries the walk read has changed. So it is dropped (a) by every write, through [`Watched`],
/// to any of the four table frames it was read from (the whole frame, not just the entry), and
/// (b) by every change of a frame's type, validation or ownership, which the frame table
/// reports through [`MachineMemoryMut::frame_types_changed`]. While the hypercall runs, every
/// write to machine memory goes through the [`Watched`] memory built with this cache, and the
/// root `l4` is the call's own. Without (a), a request that unmaps the page of a cached writable
/// translation and then makes that page a page table would leave a writable path into a
/// validated table (`copy_to_guest` through the stale translation); the tests build exactly
/// that.
///
/// Only the contents of a page are read through it, never kept: every copy reads machine memory
/// at the time it is asked for, as an uncached walk would.
///
/// What this rests on, and what a cache kept longer would have to replace: it lives for ONE call
/// (each multicall entry and each continuation builds its own), on the one CPU, with interrupts
/// masked, so no other vCPU, domain or interrupt handler writes memory meanwhile, and nothing that
/// frees or retypes frames outside the call (page-table write emulation, grant map/unmap/revoke,
/// dom0's foreign `mmu_update` or `update_va_mapping_otherdomain`, `decrease_reservation`,
/// `GNTTABOP_transfer`, domain teardown) can run inside it. A translation kept across calls would
/// need a global generation bumped by every page-table write, type change and free. Only one
/// answer outlives the call: that an L4 slot is safe for copies through the MMU
/// ([`crate::mm::SlotMemo`], kept by the vCPU), which rests on one L4 entry alone, and a
/// generation bumped by every change of a validated L4's guest entries
/// ([`crate::mm::frame_table::Mm::l4_changes`]) guards it.
pub struct TranslationCache {
    l4: Mfn,
    /// Filled on the first miss: a call that copies only through the MMU (nearly every short
    /// one) never needs them, and does not pay for setting them up.
    slots: OnceCell<[Slot; CACHE_SLOTS]>,
    /// Bit `mfn % 64` of every table frame and page frame of every slot (bits of dropped slots
    /// may stay): a write to one frame whose bit is clear touches no cached walk or page, known
    /// in a few instructions, which is what nearly every write of a batch is.
    tables_mask: Cell<u64>,
    /// The slot the next miss fills.
    next: Cell<usize>,
    /// Walks done on misses, for tests and counters.
    walks: Cell<u64>,
    /// Moves on whenever a slot is dropped, replaced or cleared, or its page's frame written:
    /// what an [`ArrayReader`] read ahead under one epoch is what the guest's memory holds
    /// as long as the epoch stays.
    epoch: Cell<u64>,
    /// Copies may go through the CPU's MMU (as [`MmuGuest`]'s `mmu`): set by the call while no
    /// TLB work is owed, cleared the moment some is ([`TranslationCache::use_mmu`]). Copies
    /// through it use no slot.
    mmu: Cell<bool>,
    /// The L4 slot (plus one; 0 for none) [`mmu_range_ok`] last passed for a range within it:
    /// a later range in the same slot passes without reading the entry again, until a write
    /// to the L4's frame (which sets its bit in `tables_mask`, so [`Watched`] reports it) or a
    /// change of types forgets it. What the check rests on is that entry alone: the type of
    /// the table an entry maps cannot change while the entry holds its reference.
    mmu_slot_ok: Cell<u64>,
}

impl TranslationCache {
    /// An empty cache over the guest tables rooted at `l4` that starts from what an earlier
    /// call's cache over the same tables left in `memo`, if no L4 entry can have changed since
    /// (`l4_changes` is [`crate::mm::frame_table::Mm::l4_changes`] now).
    #[inline]
    pub fn resuming(l4: Mfn, memo: crate::mm::SlotMemo, l4_changes: u64) -> Self {
        // One expression, built where the caller keeps it (not built and then moved: this runs
        // once per `mmu_update`).
        let valid = memo.slot != 0 && memo.l4 == l4 && memo.changes == l4_changes;
        TranslationCache {
            l4,
            slots: OnceCell::new(),
            // As when the slot passed in this call: a write to the L4 forgets it.
            tables_mask: Cell::new(u64::from(valid) << (l4.0 % 64)),
            next: Cell::new(0),
            walks: Cell::new(0),
            epoch: Cell::new(0),
            mmu: Cell::new(false),
            mmu_slot_ok: Cell::new(if valid { memo.slot } else { 0 }),
        }
    }

    /// What this cache knows of an L4 slot, for the next call (see [`crate::mm::SlotMemo`]); `l4_changes`
    /// as for [`TranslationCache::resuming`], read once nothing more is written.
    #[inline]
    pub fn memo(&self, l4_changes: u64) -> crate::mm::SlotMemo {
        crate::mm::SlotMemo {
            l4: self.l4,
            slot: self.mmu_slot_ok.get(),
            changes: l4_changes,
        }
    }

    /// An empty cache over the guest tables rooted at `l4`.
    pub const fn new(l4: Mfn) -> Self {
        TranslationCache {
            l4,
            slots: OnceCell::new(),
            tables_mask: Cell::new(0),
            next: Cell::new(0),
            walks: Cell::new(0),
            epoch: Cell::new(0),
            mmu: Cell::new(false),
            mmu_slot_ok: Cell::new(0),
        }
    }

    /// [`mmu_range_ok`] for this cache's L4, remembering the slot of a range that passed (see
    /// the field `mmu_slot_ok`). The usual answer, a range within the remembered slot, in line.
    #[inline(always)]
    fn mmu_range_ok<M: MachineMemoryMut + ?Sized>(&self, mem: &M, va: u64, len: usize) -> bool {
        let (remembered, slot, one_slot) =
            slot_memo_answers(mem, self.l4, self.mmu_slot_ok.get(), va, len);
        if remembered {
            return true;
        }
        self.mmu_range_ok_slow(mem, va, len, slot, one_slot)
    }

    /// [`TranslationCache::mmu_range_ok`] past the memo: the check itself, remembered if it
    /// passes within one slot.
    #[inline(never)]
    fn mmu_range_ok_slow<M: MachineMemoryMut + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        len: usize,
        slot: u64,
        one_slot: bool,
    ) -> bool {
        if !mmu_range_ok(mem, self.l4, va, len) {
            return false;
        }
        if one_slot {
            self.mmu_slot_ok.set(slot + 1);
            self.tables_mask
                .set(self.tables_mask.get() | 1 << (self.l4.0 % 64));
        }
        true
    }

    /// The slots: none before the first miss, all of them (empty or not) after.
    #[inline]
    fn slots(&self) -> &[Slot] {
        self.slots.get().map_or(&[], |s| &s[..])
    }

    /// Whether copies may go through the CPU's MMU from now on (see [`MmuGuest`] for what the
    /// caller must have checked: no TLB work owed). A call turns it off as soon as it records
    /// TLB work, and never back on.
    #[inline]
    pub fn use_mmu(&self, on: bool) {
        self.mmu.set(on);
    }

    /// Whether copies go through the MMU.
    #[inline]
    pub fn mmu(&self) -> bool {
        self.mmu.get()
    }

    /// Walks of the guest's tables done so far (cache misses).
    pub fn walks(&self) -> u64 {
        self.walks.get()
    }

    /// Drops every translation.
    pub fn clear(&self) {
        for s in self.slots() {
            s.clear();
        }
        self.mmu_slot_ok.set(0);
        self.bump();
    }

    /// The current epoch (see the field).
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    fn bump(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
    }

    /// `[addr, addr + len)` is about to be written: drops the translations read from a table in
    /// the frames it touches, and ends the epoch if it touches one of them or a cached page.
    #[inline]
    fn written(&self, addr: Maddr, len: usize) {
        if len == 0 {
            return;
        }
        let first = addr.0 >> 12;
        let span = (addr.0.saturating_add(len as u64 - 1) >> 12) - first;
        if span == 0 && self.tables_mask.get() & (1 << (first % 64)) == 0 {
            return;
        }
        let hit = |t: &Cell<u64>| t.get().wrapping_sub(first) <= span;
        if self.l4.0.wrapping_sub(first) <= span {
            self.mmu_slot_ok.set(0);
        }
        for s in self.slots() {
            if s.tables.iter().any(hit) {
                s.clear();
                self.bump();
            } else if hit(&s.data) {
                self.bump();
            }
        }
    }

    /// The walk for the page of `va`, from the cache or a new walk (which is then kept):
    /// the page's machine address and whether it may be written. With `watch_data`, writes to
    /// the page itself end the epoch from now on (an [`ArrayReader`] reads ahead from it).
    fn lookup<M: MachineMemoryMut + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        watch_data: bool,
    ) -> Option<(Maddr, bool)> {
        let va_page = va >> 12;
        for s in self.slots() {
            if s.va_page.get() == va_page {
                let page = s.page.get();
                #[cfg(test)]
                {
                    // Test oracle: a hit must be what a fresh walk returns now.
                    CACHE_HITS_CHECKED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                    let fresh = walk(mem, self.l4, va);
                    assert_eq!(
                        fresh.map(|w| (w.page.0, w.writable)),
                        Some((page, s.writable.get())),
                        "stale translation cache hit for {va:#x}"
                    );
                }
                if watch_data && s.data.get() == EMPTY {
                    s.data.set(page >> 12);
                    self.tables_mask
                        .set(self.tables_mask.get() | 1 << ((page >> 12) % 64));
                }
                return Some((Maddr(page), s.writable.get()));
            }
        }
        self.walks.set(self.walks.get() + 1);
        let walk = walk(mem, self.l4, va)?;
        let i = self.next.get();
        let s = &self
            .slots
            .get_or_init(|| [const { Slot::new() }; CACHE_SLOTS])[i];
        if s.va_page.get() != EMPTY {
            // Its page is no longer watched.
            self.bump();
        }
        s.va_page.set(va_page);
        let data = walk.page.mfn().0;
        s.data.set(if watch_data { data } else { EMPTY });
        s.page.set(walk.page.0);
        s.writable.set(walk.writable);
        let mut mask = self.tables_mask.get() | u64::from(watch_data) << (data % 64);
        for (c, t) in s.tables.iter().zip(walk.tables) {
            c.set(t.0);
            mask |= 1 << (t.0 % 64);
        }
        self.tables_mask.set(mask);
        self.next.set((i + 1) % CACHE_SLOTS);
        Some((walk.page, walk.writable))
    }

    /// `copy_from_guest` through the cache (a `T` that crosses a page end is read with uncached
    /// walks).
    pub fn copy_from_guest<T: FromBytes + IntoBytes, M: MachineMemoryMut + ?Sized>(
        &self,
        mem: &M,
        ptr: GuestPtr<T>,
    ) -> Result<T, GuestFault> {
        let mut value = T::new_zeroed();
        let (va, buf) = (ptr.va, value.as_mut_bytes());
        if self.mmu.get()
            && self.mmu_range_ok(mem, va, buf.len())
            && mem.mmu_read(self.l4, va, buf) == MmuCopy::Done
        {
            return Ok(value);
        }
        let off = va & 0xfff;
        if off as usize + buf.len() > 4096 {
            read_walked(mem, self.l4, va, buf)?;
            return Ok(value);
        }
        let (page, _) = self.lookup(mem, va, false).ok_or(GuestFault { va })?;
        let bytes = mem
            .read(Maddr(page.0 | off), buf.len())
            .ok_or(GuestFault { va })?;
        buf.copy_from_slice(bytes);
        Ok(value)
    }

    /// `copy_to_guest` through the cache: the cached walk must allow writing (a `T` that crosses
    /// a page end is written with uncached walks). `mem` is the [`Watched`] memory of this cache.
    pub fn copy_to_guest<T: IntoBytes + Immutable, M: MachineMemoryMut + ?Sized>(
        &self,
        mem: &mut Watched<'_, M>,
        ptr: GuestPtr<T>,
        value: &T,
    ) -> Result<(), GuestFault> {
        let (va, data) = (ptr.va, value.as_bytes());
        let off = va & 0xfff;
        if off as usize + data.len() > 4096 {
            return write_walked(mem, self.l4, va, data);
        }
        if self.mmu.get()
            && self.mmu_range_ok(&*mem, va, data.len())
            && mem.mmu_write(self.l4, va, data) == MmuCopy::Done
        {
            return Ok(());
        }
        let (page, writable) = self.lookup(&*mem, va, false).ok_or(GuestFault { va })?;
        if !writable {
            return Err(GuestFault { va });
        }
        mem.write(Maddr(page.0 | off), data)
            .ok_or(GuestFault { va })
    }
}

/// Below this many elements left, an [`ArrayReader`] whose cache may use the MMU reads each
/// element through it instead of walking the tables once and reading ahead: an element read
/// through the MMU costs about 50 instructions, a walk about 265 and an element read ahead
/// about 14 (`make profile`, docs/performance.md).
const MMU_ELEMENTS_BELOW: u64 = 8;

/// Elements of a guest array read up to `N` at a time, through a [`TranslationCache`]: one
/// copy out of guest memory for every `N` elements (or the rest of a page) instead of one per
/// element. Xen reads each element when it gets to it; so does this, in effect: what was read
/// ahead is used only while the cache's epoch stays, that is while nothing has been written
/// into the page it came from nor into a table that maps it, and no type changed.
pub struct ArrayReader<T, const N: usize> {
    list: GuestPtr<T>,
    /// Elements `first .. first + len` of the array, read under `epoch` (an array and a count:
    /// the hit, once per element of a batch, is a few instructions; left uninitialised, not
    /// zeroed, by `new`, once per batch).
    buf: [MaybeUninit<T>; N],
    len: usize,
    first: u64,
    epoch: u64,
}

impl<T: FromBytes + IntoBytes + Copy, const N: usize> ArrayReader<T, N> {
    /// A reader of the array at `list`; nothing read yet.
    pub fn new(list: GuestPtr<T>) -> Self {
        ArrayReader {
            list,
            buf: [const { MaybeUninit::uninit() }; N],
            len: 0,
            first: 0,
            epoch: 0,
        }
    }

    /// Element `i` (`copy_from_guest(list + i)`), reading ahead at most up to element
    /// `end - 1`. `tlb_owed` says whether the call owes TLB work by now: asked only when the
    /// element must be read from guest memory, and then the cache stops using the MMU if so
    /// (see [`MmuGuest`]).
    #[inline(always)]
    pub fn get<M: MachineMemoryMut + ?Sized>(
        &mut self,
        cache: &TranslationCache,
        mem: &M,
        i: u64,
        end: u64,
        tlb_owed: impl FnOnce() -> bool,
    ) -> Result<T, GuestFault> {
        // Read ahead, under the current epoch (`i` below `first` wraps to a `k` past `len`;
        // nothing read ahead yet, the first element of a call, fails the first test).
        let k = i.wrapping_sub(self.first);
        if k < self.len as u64 && self.epoch == cache.epoch() {
            if let Some(v) = self.buf.get(k as usize) {
                // SAFETY: elements below `len` were written by the last read-ahead (`len` is
                // only ever set to the count it wrote).
                let v = unsafe { v.assume_init() };
                #[cfg(test)]
                if !tests::BEHIND_THE_CACHE.with(|b| b.get()) {
                    // Test oracle: what was read ahead is what memory holds now.
                    let mut fresh = T::new_zeroed();
                    let r = read_walked(mem, cache.l4, self.list.add(i).va(), fresh.as_mut_bytes());
                    let mut held = v;
                    assert!(
                        r.is_ok() && fresh.as_mut_bytes() == held.as_mut_bytes(),
                        "stale read-ahead of element {i}"
                    );
                }
                return Ok(v);
            }
        }
        if cache.mmu.get() {
            if tlb_owed() {
                cache.use_mmu(false);
            } else if end.saturating_sub(i) < MMU_ELEMENTS_BELOW {
                if let Some(v) = self.through_mmu(cache, mem, i) {
                    return Ok(v);
                }
            }
        }
        self.read_ahead(cache, mem, i, end)
    }

    /// Element `i` through the MMU, when few are left: each one read when it is reached, as
    /// Xen reads them, rather than a walk of the guest's tables to learn the list's frame (which
    /// a read-ahead needs, to notice writes into it: what was read through the MMU could not be
    /// kept honest otherwise). A short batch then walks nothing; a long one walks once per page
    /// of its list and reads ahead, which costs less per element. `None`: read it the other way
    /// (the MMU faulted or is unavailable).
    #[inline(always)]
    fn through_mmu<M: MachineMemoryMut + ?Sized>(
        &self,
        cache: &TranslationCache,
        mem: &M,
        i: u64,
    ) -> Option<T> {
        let va = self.list.add(i).va();
        let mut v = T::new_zeroed();
        (cache.mmu_range_ok(mem, va, core::mem::size_of::<T>())
            && mem.mmu_read(cache.l4, va, v.as_mut_bytes()) == MmuCopy::Done)
            .then_some(v)
    }

    /// [`ArrayReader::get`] of an element not read ahead under the current epoch.
    #[inline(never)]
    fn read_ahead<M: MachineMemoryMut + ?Sized>(
        &mut self,
        cache: &TranslationCache,
        mem: &M,
        i: u64,
        end: u64,
    ) -> Result<T, GuestFault> {
        let size = core::mem::size_of::<T>();
        let ptr = self.list.add(i);
        let va = ptr.va();
        let in_page = (4096 - (va & 0xfff)) as usize / size.max(1);
        let n = N.min(in_page).min(end.saturating_sub(i) as usize);
        if n <= 1 || size == 0 {
            self.len = 0;
            return cache.copy_from_guest(mem, ptr);
        }
        let (page, _) = cache.lookup(mem, va, true).ok_or(GuestFault { va })?;
        let epoch = cache.epoch();
        let bytes = mem
            .read(Maddr(page.0 | (va & 0xfff)), n * size)
            .ok_or(GuestFault { va })?;
        // Nothing is read ahead until all of it is (an error leaves none).
        self.len = 0;
        let mut read = 0;
        for (slot, chunk) in self.buf.iter_mut().zip(bytes.chunks_exact(size)) {
            *slot = MaybeUninit::new(T::read_from_bytes(chunk).map_err(|_| GuestFault { va })?);
            read += 1;
        }
        self.len = read;
        self.first = i;
        self.epoch = epoch;
        if self.len == 0 {
            return Err(GuestFault { va });
        }
        // SAFETY: element 0 was just written (`len` > 0).
        Ok(unsafe { self.buf[0].assume_init() })
    }
}

/// Machine memory for the length of one hypercall with a [`TranslationCache`]: forwards every
/// access, and tells the cache of every write before it happens (and of every type change), so
/// that no translation outlives the tables it was read from. Everything the hypercall writes
/// goes through it.
pub struct Watched<'c, M: MachineMemoryMut + ?Sized + 'c = dyn MachineMemoryMut + 'c> {
    mem: &'c mut M,
    cache: &'c TranslationCache,
}

impl<'c, M: MachineMemoryMut + ?Sized> Watched<'c, M> {
    /// `mem`, watched for `cache`.
    pub fn new(mem: &'c mut M, cache: &'c TranslationCache) -> Self {
        Watched { mem, cache }
    }
}

impl<M: MachineMemoryMut + ?Sized> crate::mm::MachineMemory for Watched<'_, M> {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }

    fn read_u32_unaligned(&self, addr: Maddr) -> Option<u32> {
        self.mem.read_u32_unaligned(addr)
    }
}

// Every method is forwarded (the defaults would work too, through `read` and `write`, but would
// lose the direct map's single loads and locked instructions); each one that writes tells the
// cache first.
impl<M: MachineMemoryMut + ?Sized> Watched<'_, M> {
    /// [`MachineMemoryMut::write_u64`] that may touch a cached translation.
    #[inline(never)]
    fn written_then_write_u64(&mut self, addr: Maddr, value: u64) -> Option<()> {
        self.cache.written(addr, 8);
        self.mem.write_u64(addr, value)
    }
}

impl<M: MachineMemoryMut + ?Sized> MachineMemoryMut for Watched<'_, M> {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        self.cache.written(addr, data.len());
        self.mem.write(addr, data)
    }

    fn copy(&mut self, from: Maddr, to: Maddr, len: usize) -> Option<()> {
        self.cache.written(to, len);
        self.mem.copy(from, to, len)
    }

    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
        self.mem.mmu_read(l4, va, buf)
    }

    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
        // Which frame it lands in is not known here: whatever was read ahead is no longer
        // trusted. (It cannot be a table a cached walk read: the MMU writes only through
        // mappings the guest may write, and tables are never writable while validated; a
        // translation older than a retype would have owed a flush, which stops MMU copies.)
        self.cache.bump();
        self.mem.mmu_write(l4, va, data)
    }

    fn frame_types_changed(&mut self) {
        self.cache.clear();
        self.mem.frame_types_changed();
    }

    // A hypervisor frame is never a guest table nor a page the guest reaches: nothing cached
    // can be in it.
    fn xen_frame(&mut self, mfn: Mfn) -> Option<core::ptr::NonNull<[u8; 4096]>> {
        self.mem.xen_frame(mfn)
    }

    fn guest_l1e(&self, l4: Mfn, va: u64) -> Option<(Maddr, Mfn)> {
        self.mem.guest_l1e(l4, va)
    }

    fn read_u64(&self, addr: Maddr) -> Option<u64> {
        self.mem.read_u64(addr)
    }

    fn write_u64(&mut self, addr: Maddr, value: u64) -> Option<()> {
        // Every page-table entry a batch writes comes here: the usual answer (one page, whose
        // bit in the mask is clear: nothing cached is touched) in a few instructions.
        if addr.0 & 0xfff <= 0xff8
            && self.cache.tables_mask.get() & (1 << ((addr.0 >> 12) % 64)) == 0
        {
            return self.mem.write_u64(addr, value);
        }
        self.written_then_write_u64(addr, value)
    }

    fn test_and_set_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        self.cache.written(addr, 8);
        self.mem.test_and_set_bit(addr, bit)
    }

    fn test_and_clear_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        self.cache.written(addr, 8);
        self.mem.test_and_clear_bit(addr, bit)
    }

    fn read_u32(&self, addr: Maddr) -> Option<u32> {
        self.mem.read_u32(addr)
    }

    fn compare_exchange_u32(&mut self, addr: Maddr, old: u32, new: u32) -> Option<u32> {
        self.cache.written(addr, 4);
        self.mem.compare_exchange_u32(addr, old, new)
    }

    fn fetch_or_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        self.cache.written(addr, 4);
        self.mem.fetch_or_u32(addr, bits)
    }

    fn fetch_and_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        self.cache.written(addr, 4);
        self.mem.fetch_and_u32(addr, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    std::thread_local! {
        /// Set by a test that changes memory behind the translation cache's back on purpose:
        /// the read-ahead oracle in [`ArrayReader::get`] would flag exactly that.
        pub(super) static BEHIND_THE_CACHE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }
    use crate::mm::{FakeMemory, MachineMemory};

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

    /// Two guest pages at 0x40_0000 (frame 8) and 0x40_1000 (frame 9), both writable.
    fn writable_machine() -> FakeMemory {
        let mut m = machine();
        m.write_u64(Maddr(0x4000 + 8), 0x9000 | FLAGS).unwrap();
        m.put(0x9000, b"other");
        m
    }

    #[test]
    fn the_cache_walks_once_per_page() {
        let mut m = writable_machine();
        let cache = TranslationCache::new(Mfn(1));
        let mut w = Watched::new(&mut m, &cache);
        for i in 0..4u64 {
            let v: [u8; 2] = cache
                .copy_from_guest(&w, GuestPtr::new(0x40_0000 + i))
                .unwrap();
            assert_eq!(v, [b"hello"[i as usize], b"hello"[i as usize + 1]]);
        }
        cache
            .copy_to_guest(&mut w, GuestPtr::new(0x40_0010), &7u32)
            .unwrap();
        assert_eq!(cache.walks(), 1, "one page, one walk (its write included)");
        // A second page takes the other slot; both stay.
        let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_1000)).unwrap();
        let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
        assert_eq!(cache.walks(), 2);
        // Data writes (not to a table the walks read) keep the translations.
        w.write(Maddr(0x8000), b"J").unwrap();
        let v: [u8; 5] = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
        assert_eq!(&v, b"Jello", "contents are read at each copy, never kept");
        assert_eq!(cache.walks(), 2);
        // A write that starts in a frame no walk read and ends in the L4 (frame 1).
        let same: [u8; 16] = w.read(Maddr(0x0ff8), 16).unwrap().try_into().unwrap();
        w.write(Maddr(0x0ff8), &same).unwrap();
        let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
        assert_eq!(
            cache.walks(),
            3,
            "a write across into a table frame drops the walks"
        );
    }

    #[test]
    fn a_write_to_a_table_on_the_walk_drops_the_translation() {
        for (table, slot) in [(0x1000u64, 0u64), (0x2000, 0), (0x3000, 2), (0x4000, 0)] {
            let mut m = writable_machine();
            let cache = TranslationCache::new(Mfn(1));
            let mut w = Watched::new(&mut m, &cache);
            let v: [u8; 5] = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
            assert_eq!(&v, b"hello");
            // Another entry of the same table frame: the whole frame is watched.
            w.write_u64(Maddr(table + 8 * 100), 0).unwrap();
            let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
            assert_eq!(
                cache.walks(),
                2,
                "table {table:#x}: a write to it drops the walk"
            );
            // The entry itself: the page now maps frame 9, read-only.
            let old = w.read_u64(Maddr(table + 8 * slot)).unwrap();
            let new = if table == 0x4000 {
                0x9000 | PTE_P | PTE_US
            } else {
                old
            };
            w.write(Maddr(table + 8 * slot), &new.to_le_bytes())
                .unwrap();
            if table == 0x4000 {
                let v: [u8; 5] = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
                assert_eq!(&v, b"other", "read through the new mapping");
                let r = cache.copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &1u8);
                assert_eq!(r, Err(GuestFault { va: 0x40_0000 }), "now read-only");
                assert_eq!(w.read(Maddr(0x9000), 1).unwrap(), b"o");
            } else {
                let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_0000)).unwrap();
            }
            assert_eq!(cache.walks(), 3);
        }
    }

    #[test]
    fn a_type_change_drops_every_translation() {
        let mut m = writable_machine();
        let cache = TranslationCache::new(Mfn(1));
        let mut w = Watched::new(&mut m, &cache);
        cache
            .copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &b'H')
            .unwrap();
        // The L1 entry changes behind the cache's back (not through `w`): only the frame
        // table's report of a type change can tell it.
        w.mem
            .write_u64(Maddr(0x4000), 0x9000 | PTE_P | PTE_US)
            .unwrap();
        w.frame_types_changed();
        let r = cache.copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &b'X');
        assert_eq!(r, Err(GuestFault { va: 0x40_0000 }));
        assert_eq!(w.read(Maddr(0x8000), 5).unwrap(), b"Hello");
        assert_eq!(cache.walks(), 2);
    }

    #[test]
    fn cached_copies_check_what_uncached_ones_check() {
        let mut m = machine();
        let cache = TranslationCache::new(Mfn(1));
        let mut w = Watched::new(&mut m, &cache);
        let mut b = [0u8; 1];
        for va in [
            0x40_2000,
            0x0000_8000_0000_0000,
            HYPERVISOR_VIRT_START,
            u64::MAX,
        ] {
            assert_eq!(
                cache
                    .copy_from_guest::<u8, _>(&w, GuestPtr::new(va))
                    .is_err(),
                PageTableGuest {
                    mem: &mut *w.mem,
                    l4: Mfn(1)
                }
                .read(va, &mut b)
                .is_err(),
                "{va:#x}"
            );
        }
        // Read-only page 0x40_1000: readable, not writable, and a write that crosses into it
        // from the writable page writes nothing.
        let _: u8 = cache.copy_from_guest(&w, GuestPtr::new(0x40_1000)).unwrap();
        assert!(cache
            .copy_to_guest(&mut w, GuestPtr::new(0x40_1000), &1u8)
            .is_err());
        assert!(cache
            .copy_to_guest(&mut w, GuestPtr::new(0x40_0ffe), &[1u8; 4])
            .is_err());
        assert_eq!(w.read(Maddr(0x8ffe), 2).unwrap(), [0, 0]);
        // A value across a page end, both pages readable.
        let v: [u8; 4] = cache.copy_from_guest(&w, GuestPtr::new(0x40_0ffe)).unwrap();
        assert_eq!(v, [0; 4]);
    }

    #[test]
    fn guest_ranges_lie_wholly_in_the_lower_half_or_above_the_hypervisor() {
        let top = LOWER_HALF_END;
        for (va, len, ok) in [
            (0, 0, true),
            (0, 1, true),
            (0x40_0000, 4096, true),
            (top - 16, 16, true),
            (top - 16, 17, false),
            (top - 1, 2, false),
            (top, 1, false),
            (HYPERVISOR_VIRT_START, 1, false),
            (HYPERVISOR_VIRT_START - 8, 16, false),
            (HYPERVISOR_VIRT_END - 8, 16, false),
            (HYPERVISOR_VIRT_END - 1, 1, false),
            (HYPERVISOR_VIRT_END, 1, true),
            (HYPERVISOR_VIRT_END, 0x1000, true),
            (u64::MAX, 1, true),
            (u64::MAX - 15, 16, true),
            (u64::MAX - 15, 17, false),
            (u64::MAX, 2, false),
            (0x40_0000, usize::MAX, false),
        ] {
            assert_eq!(guest_range_ok(va, len), ok, "{va:#x} + {len:#x}");
        }
    }

    /// [`machine`] with an MMU running on its L4, and a page of the hypervisor's mapped in the
    /// L4's slot 256 (as every guest L4 holds the hypervisor's slots): supervisor entries,
    /// which the walk refuses and the MMU (ring 0, as the hypervisor runs) follows. Frames
    /// 10..13: L3, L2, L1 and the page, which holds `SECRET`.
    fn machine_with_mmu() -> FakeMemory {
        let mut m = machine();
        let sup = PTE_P | PTE_RW;
        m.write_u64(Maddr(0x1000 + 256 * 8), 0xa000 | sup).unwrap();
        m.write_u64(Maddr(0xa000), 0xb000 | sup).unwrap();
        m.write_u64(Maddr(0xb000), 0xc000 | sup).unwrap();
        m.write_u64(Maddr(0xc000), 0xd000 | sup).unwrap();
        m.put(0xd000, b"SECRET");
        m.mmu = Some(crate::mm::FakeMmu::new(Mfn(1)));
        m
    }

    #[test]
    fn a_range_an_l4_entry_maps_through_an_l4_is_never_left_to_the_mmu() {
        // Slot 0 maps an L3 (frame 2); slot 4 the same L3; slot 5 another L4 (frame 14, holding
        // the hypervisor's slot 256 as every L4 does) read-only; slot 6 the L4 itself; slot 7
        // nothing.
        let mut m = machine_with_mmu();
        let ro = PTE_P | PTE_US;
        let xen = m.read_u64(Maddr(0x1000 + 256 * 8)).unwrap();
        m.write_u64(Maddr(0xe000 + 256 * 8), xen).unwrap();
        m.write_u64(Maddr(0x1000 + 4 * 8), 0x2000 | FLAGS).unwrap();
        m.write_u64(Maddr(0x1000 + 5 * 8), 0xe000 | ro).unwrap();
        m.write_u64(Maddr(0x1000 + 6 * 8), 0x1000 | ro).unwrap();
        m.write_u64(Maddr(0x1000 + 8 * 8), 0x2000 | ro).unwrap();
        let slot = |k: u64| k << 39;
        let l4 = Mfn(1);
        assert!(mmu_range_ok(&m, l4, 0x40_0000, 5), "an L3 behind slot 0");
        assert!(
            mmu_range_ok(&m, l4, slot(8), 8),
            "an L3 behind a read-only entry"
        );
        assert!(mmu_range_ok(&m, l4, slot(4) + 0x1000, 4096));
        assert!(
            mmu_range_ok(&m, l4, slot(7), 8),
            "nothing there: the MMU faults"
        );
        assert!(!mmu_range_ok(&m, l4, slot(5), 8), "another L4, linear");
        assert!(
            !mmu_range_ok(&m, l4, slot(6) + (256 << 12), 8),
            "the L4 itself"
        );
        assert!(
            !mmu_range_ok(&m, l4, slot(5) - 4, 8),
            "a range that ends in slot 5"
        );
        assert!(
            !mmu_range_ok(&m, l4, HYPERVISOR_VIRT_START, 8),
            "the hypervisor's own"
        );
        assert!(mmu_range_ok(&m, l4, slot(4), 0), "an empty range");
        // What the MMU would have read through slot 6: the hypervisor's page, which the walk
        // refuses.
        let va = slot(6) | (6 << 30) | (6 << 21) | (256 << 12);
        let g = MmuGuest {
            walk: PageTableGuest { mem: &mut m, l4 },
            mmu: true,
        };
        let mut buf = [0u8; 6];
        assert!(g.read(va, &mut buf).is_err());
        assert_ne!(&buf, b"SECRET");
    }

    #[test]
    fn the_cache_forgets_a_passed_l4_slot_when_the_l4_is_written() {
        // Slot 4 maps the L3 (writable): a range there passes, and is remembered. Then the
        // call itself rewrites slot 4 into a read-only entry to another L4 (frame 14, holding
        // the hypervisor's slot 256): the next range in slot 4 must be checked afresh.
        let mut m = machine_with_mmu();
        let xen = m.read_u64(Maddr(0x1000 + 256 * 8)).unwrap();
        m.write_u64(Maddr(0xe000 + 256 * 8), xen).unwrap();
        m.write_u64(Maddr(0x1000 + 4 * 8), 0x2000 | FLAGS).unwrap();
        let cache = TranslationCache::new(Mfn(1));
        let va = (4u64 << 39) | (256 << 12);
        let w = Watched::new(&mut m, &cache);
        assert!(cache.mmu_range_ok(&w, va, 8));
        assert_eq!(cache.mmu_slot_ok.get(), 5, "remembered");
        assert!(cache.mmu_range_ok(&w, va + 8, 8), "from the memo");
        let mut w = w;
        w.write_u64(Maddr(0x1000 + 4 * 8), 0xe000 | PTE_P | PTE_US)
            .unwrap();
        assert_eq!(cache.mmu_slot_ok.get(), 0, "forgotten by the write");
        assert!(!cache.mmu_range_ok(&w, va, 8), "another L4 behind slot 4");
        // A change of types forgets it too.
        w.write_u64(Maddr(0x1000 + 4 * 8), 0x2000 | FLAGS).unwrap();
        assert!(cache.mmu_range_ok(&w, va, 8));
        w.frame_types_changed();
        assert_eq!(cache.mmu_slot_ok.get(), 0, "forgotten by a change of types");
    }

    /// The grant calls' slot memo (`SlotOk`): a slot that passed is answered without reading
    /// the L4 again within the call, resumed only under the same L4 and `l4_changes`, and not
    /// handed on if an L4 entry changed during the call; a range over two slots is never
    /// remembered.
    #[test]
    fn the_grant_calls_slot_memo_resumes_and_hands_on_only_while_nothing_changed() {
        let mut m = machine_with_mmu();
        m.write_u64(Maddr(0x1000 + 4 * 8), 0x2000 | FLAGS).unwrap();
        let va = (4u64 << 39) | (256 << 12);
        let s = SlotOk::resuming(Mfn(1), crate::mm::SlotMemo::NONE, 7);
        assert_eq!(s.slot.get(), 0);
        assert!(s.range_ok(&m, va, 8));
        assert_eq!(s.slot.get(), 5);
        // The oracle in `range_ok` checks the remembered answer against the check itself.
        assert!(s.range_ok(&m, va + 64, 8));
        let memo = s.memo(7);
        assert_eq!((memo.l4, memo.slot, memo.changes), (Mfn(1), 5, 7));
        assert_eq!(s.memo(8).slot, 0, "an L4 entry changed during the call");
        assert_eq!(SlotOk::resuming(Mfn(1), memo, 7).slot.get(), 5);
        assert_eq!(SlotOk::resuming(Mfn(1), memo, 8).slot.get(), 0);
        assert_eq!(SlotOk::resuming(Mfn(14), memo, 7).slot.get(), 0);
        let two = SlotOk::resuming(Mfn(1), crate::mm::SlotMemo::NONE, 7);
        let _ = two.range_ok(&m, (5u64 << 39) - 8, 16);
        assert_eq!(two.slot.get(), 0, "two slots: not remembered");
    }

    /// A call starts from the L4 slot the vCPU's last call found safe only while it runs on the
    /// same L4 and no L4 entry can have changed since; a slot it starts from is forgotten by a
    /// write to the L4, as one found in the call is.
    #[test]
    fn a_call_resumes_from_the_last_calls_l4_slot_only_while_nothing_changed() {
        let mut m = machine_with_mmu();
        m.write_u64(Maddr(0x1000 + 4 * 8), 0x2000 | FLAGS).unwrap();
        let va = (4u64 << 39) | (256 << 12);
        let first = TranslationCache::new(Mfn(1));
        assert!(first.mmu_range_ok(&Watched::new(&mut m, &first), va, 8));
        let memo = first.memo(7);
        assert_eq!(memo.slot, 5);
        assert_eq!(
            TranslationCache::resuming(Mfn(1), memo, 7)
                .mmu_slot_ok
                .get(),
            5
        );
        assert_eq!(
            TranslationCache::resuming(Mfn(1), memo, 8)
                .mmu_slot_ok
                .get(),
            0,
            "an L4 entry may have changed"
        );
        assert_eq!(
            TranslationCache::resuming(Mfn(14), memo, 7)
                .mmu_slot_ok
                .get(),
            0,
            "another L4"
        );
        assert_eq!(
            TranslationCache::resuming(Mfn(1), crate::mm::SlotMemo::NONE, 0)
                .mmu_slot_ok
                .get(),
            0
        );
        // Resumed, then the call rewrites slot 4 into a read-only entry to another L4.
        let cache = TranslationCache::resuming(Mfn(1), memo, 7);
        let mut w = Watched::new(&mut m, &cache);
        assert!(cache.mmu_range_ok(&w, va, 8), "from the memo");
        let xen = w.read_u64(Maddr(0x1000 + 256 * 8)).unwrap();
        w.write_u64(Maddr(0xe000 + 256 * 8), xen).unwrap();
        w.write_u64(Maddr(0x1000 + 4 * 8), 0xe000 | PTE_P | PTE_US)
            .unwrap();
        assert_eq!(cache.mmu_slot_ok.get(), 0, "forgotten by the write");
        assert!(!cache.mmu_range_ok(&w, va, 8), "another L4 behind slot 4");
        assert_eq!(cache.memo(7).slot, 0, "nothing passed on");
    }

    fn mmu_copies(m: &FakeMemory) -> u64 {
        m.mmu.as_ref().unwrap().copies.get()
    }

    /// The call's cache with the MMU allowed: a copy from or to the hypervisor's slots (which
    /// the fake MMU, as ring 0 does, would follow to `SECRET`) is never tried through it; the
    /// walk refuses it.
    #[test]
    fn the_cache_never_copies_the_hypervisors_slots_through_the_mmu() {
        let mut m = machine_with_mmu();
        let cache = TranslationCache::new(Mfn(1));
        cache.use_mmu(true);
        let secret = HYPERVISOR_VIRT_START;
        {
            let mut w = Watched::new(&mut m, &cache);
            let r: Result<[u8; 6], _> = cache.copy_from_guest(&w, GuestPtr::new(secret));
            assert_eq!(r, Err(GuestFault { va: secret }));
            let r = cache.copy_to_guest(&mut w, GuestPtr::new(secret), b"STOLEN");
            assert_eq!(r, Err(GuestFault { va: secret }));
            // A short batch's elements, read one at a time through the MMU when allowed.
            let mut reader = ArrayReader::<u64, 4>::new(GuestPtr::new(secret));
            assert_eq!(
                reader.get(&cache, &w, 0, 1, || false),
                Err(GuestFault { va: secret })
            );
        }
        assert_eq!(mmu_copies(&m), 0, "nothing went through the MMU");
        assert_eq!(m.read(Maddr(0xd000), 6).unwrap(), b"SECRET");
    }

    /// An array reader asks whether TLB work is owed before it reads through the MMU: once
    /// some is, the cache stops using the MMU and the element is read by a walk.
    #[test]
    fn the_array_reader_stops_using_the_mmu_once_tlb_work_is_owed() {
        // One element read with TLB work owed or not: whether the MMU stays on, and how many
        // copies went through it.
        let read = |owed: bool| {
            let mut m = machine_with_mmu();
            m.put(0x8000, &7u64.to_le_bytes());
            let cache = TranslationCache::new(Mfn(1));
            cache.use_mmu(true);
            let w = Watched::new(&mut m, &cache);
            let mut reader = ArrayReader::<u64, 4>::new(GuestPtr::new(0x40_0000));
            assert_eq!(reader.get(&cache, &w, 0, 1, || owed), Ok(7));
            (cache.mmu(), mmu_copies(&m))
        };
        assert_eq!(
            read(true),
            (false, 0),
            "walked, the MMU off for the rest of the call"
        );
        assert_eq!(read(false), (true, 1), "through the MMU");
    }

    #[test]
    fn copies_go_through_the_mmu_when_allowed_and_give_what_the_walk_gives() {
        let mut m = machine_with_mmu();
        let mut g = MmuGuest {
            walk: PageTableGuest {
                mem: &mut m,
                l4: Mfn(1),
            },
            mmu: true,
        };
        let v: [u8; 5] = copy_from_guest(&g, GuestPtr::new(0x40_0000)).unwrap();
        assert_eq!(&v, b"hello");
        copy_to_guest(&mut g, GuestPtr::new(0x40_0001), b"EL").unwrap();
        assert_eq!(mmu_copies(g.walk.mem), 2, "both through the MMU");
        assert_eq!(g.walk.mem.read(Maddr(0x8000), 5).unwrap(), b"hELlo");
        // Another table in CR3: the MMU is unavailable, the walk answers.
        let mut g2 = MmuGuest {
            walk: PageTableGuest {
                mem: g.walk.mem,
                l4: Mfn(2),
            },
            mmu: true,
        };
        assert!(
            g2.read(0x40_0000, &mut [0u8; 1]).is_err(),
            "walked from frame 2"
        );
        assert_eq!(mmu_copies(g2.walk.mem), 2);
        // A write across a page end is walked (all or nothing); so is everything with `mmu` off.
        g2.walk.l4 = Mfn(1);
        g2.mmu = false;
        let _: u8 = copy_from_guest(&g2, GuestPtr::new(0x40_0000)).unwrap();
        g2.mmu = true;
        let _ = g2.write(0x40_0ffe, b"abcd");
        assert_eq!(mmu_copies(g2.walk.mem), 2);
    }

    /// The hostile cases: a hypervisor address (which the MMU would reach), an unmapped one,
    /// a read-only page for an output. Each is -EFAULT, as the walk says, nothing is written,
    /// and the hypervisor's page is never touched through the MMU.
    #[test]
    fn hostile_pointers_fault_through_the_mmu_as_through_the_walk() {
        let mut m = machine_with_mmu();
        let mut g = MmuGuest {
            walk: PageTableGuest {
                mem: &mut m,
                l4: Mfn(1),
            },
            mmu: true,
        };
        let mut b = [0u8; 6];
        for va in [
            HYPERVISOR_VIRT_START,
            HYPERVISOR_VIRT_START + 0x10,
            LOWER_HALF_END - 2,
        ] {
            assert_eq!(g.read(va, &mut b), Err(GuestFault { va }), "{va:#x}");
            assert_eq!(g.write(va, b"xyzw"), Err(GuestFault { va }), "{va:#x}");
        }
        assert_eq!(b, [0; 6], "nothing of the hypervisor's page was read");
        assert_eq!(
            mmu_copies(g.walk.mem),
            0,
            "no copy through the MMU was even tried outside guest space"
        );
        assert_eq!(g.walk.mem.read(Maddr(0xd000), 6).unwrap(), b"SECRET");
        // Unmapped: the MMU faults, the walk confirms.
        assert!(g.read(0x40_2000, &mut b).is_err());
        assert!(g.write(0x40_2000, b"x").is_err());
        // Read-only page: readable, not writable, and the fault writes nothing.
        let was: [u8; 4] = g
            .walk
            .mem
            .read(Maddr(0x9000), 4)
            .unwrap()
            .try_into()
            .unwrap();
        assert!(g.read(0x40_1000, &mut b).is_ok());
        assert_eq!(
            copy_to_guest(&mut g, GuestPtr::new(0x40_1000), &0xffff_ffffu32),
            Err(GuestFault { va: 0x40_1000 })
        );
        assert_eq!(g.walk.mem.read(Maddr(0x9000), 4).unwrap(), was);
        assert_eq!(mmu_copies(g.walk.mem), 4, "the last four went to the MMU");
    }

    /// A translation the tables no longer allow stays in the TLB until a flush: with TLB work
    /// owed (`mmu` off), copies walk the tables and the stale entry is never used.
    #[test]
    fn with_tlb_work_owed_a_stale_tlb_entry_is_never_used() {
        let mut m = machine_with_mmu();
        let cache = TranslationCache::new(Mfn(1));
        cache.use_mmu(true);
        {
            let mut w = Watched::new(&mut m, &cache);
            cache
                .copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &b'H')
                .unwrap();
            // The page becomes read-only and another frame's: the TLB still says frame 8,
            // writable. The call records a flush for it (a retype would), so stops the MMU.
            w.write_u64(Maddr(0x4000), 0x9000 | PTE_P | PTE_US).unwrap();
            cache.use_mmu(false);
            let r = cache.copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &b'X');
            assert_eq!(r, Err(GuestFault { va: 0x40_0000 }));
        }
        assert_eq!(
            m.read(Maddr(0x8000), 5).unwrap(),
            b"Hello",
            "frame 8 untouched"
        );
        assert_eq!(mmu_copies(&m), 1);
        // What the stale entry would have done: with the MMU allowed, the write lands in the
        // frame the guest unmapped (why the flush rule exists).
        cache.use_mmu(true);
        let mut w = Watched::new(&mut m, &cache);
        cache
            .copy_to_guest(&mut w, GuestPtr::new(0x40_0000), &b'X')
            .unwrap();
        assert_eq!(m.read(Maddr(0x8000), 1).unwrap(), b"X");
    }

    #[test]
    fn the_array_reader_reads_ahead_only_while_nothing_it_read_can_have_changed() {
        // This test writes behind the cache's back on purpose: the read-ahead oracle is off.
        BEHIND_THE_CACHE.with(|b| b.set(true));
        let mut m = writable_machine();
        for i in 0..16u64 {
            m.write_u64(Maddr(0x8000 + 8 * i), 100 + i).unwrap();
        }
        let cache = TranslationCache::new(Mfn(1));
        let mut w = Watched::new(&mut m, &cache);
        let mut r = ArrayReader::<u64, 4>::new(GuestPtr::new(0x40_0000));
        assert_eq!(r.get(&cache, &w, 0, 16, || false), Ok(100));
        // Read ahead: memory changed behind the cache's back is not seen until the epoch ends.
        w.mem.write_u64(Maddr(0x8008), 7).unwrap();
        assert_eq!(r.get(&cache, &w, 1, 16, || false), Ok(101));
        // A write through the watched memory into the page ends the epoch.
        w.write_u64(Maddr(0x8010), 55).unwrap();
        assert_eq!(r.get(&cache, &w, 2, 16, || false), Ok(55));
        // So does a type change, and a write to a table of the walk.
        w.mem.write_u64(Maddr(0x8018), 66).unwrap();
        w.frame_types_changed();
        assert_eq!(r.get(&cache, &w, 3, 16, || false), Ok(66));
        w.mem.write_u64(Maddr(0x8020), 77).unwrap();
        let l1e = w.read_u64(Maddr(0x4000)).unwrap();
        w.write_u64(Maddr(0x4000), l1e).unwrap();
        assert_eq!(r.get(&cache, &w, 4, 16, || false), Ok(77));
        // Not past `end`.
        let mut r2 = ArrayReader::<u64, 4>::new(GuestPtr::new(0x40_0040));
        assert_eq!(r2.get(&cache, &w, 0, 1, || false), Ok(108));
        w.mem.write_u64(Maddr(0x8048), 99).unwrap();
        assert_eq!(
            r2.get(&cache, &w, 1, 16, || false),
            Ok(99),
            "element 9 was not read ahead"
        );
        // Nor past the page: the page's last element alone, then the next page's.
        let mut last = ArrayReader::<u64, 4>::new(GuestPtr::new(0x40_0ff8));
        assert_eq!(last.get(&cache, &w, 0, 16, || false), Ok(0));
        assert_eq!(
            last.get(&cache, &w, 1, 16, || false),
            Ok(u64::from_le_bytes(*b"other\0\0\0"))
        );
    }
}
