//! The real machine behind the portable core's traits: machine memory through the direct map,
//! the console, the clock, the e820 map and when a long hypercall must stop.

use core::arch::x86_64::__cpuid_count;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_core::ctx::{Machine, Preempt};
use xen_core::layout;
use xen_core::mm::frame_table::{Mm, Owner, PageType};
use xen_core::mm::page_memo::PageMemo;
use xen_core::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn, MmuCopy};

use super::console;
use super::mappings::image_maddr_range;

/// Machine memory through the direct map (machine 0..4 GiB), minus the hypervisor image and the
/// frame table, whose bytes are live Rust data that must never be aliased or written through
/// another mapping.
pub struct DirectMap {
    /// The page [`MachineMemory::read_u32_unaligned`] last found wholly reachable: event upcall
    /// checks read the same word of the running vCPU's `vcpu_info` on every hypercall's way out
    /// and before every element of a batch.
    u32_memo: PageMemo,
    /// The page [`MachineMemoryMut::write_u64`] last found wholly reachable, which
    /// [`MachineMemoryMut::read_u64`] uses too: each element of an `mmu_update` batch reads and
    /// writes an entry of the same L1 table as the one before, as a rule.
    u64_memo: PageMemo,
}

/// The frame table's machine range, once it exists (see [`DirectMap`]): start and end, or
/// `u64::MAX..0` (which overlaps nothing) before. Plain atomics rather than a `Once`, since every
/// machine access checks them (set once, on the one CPU, before any guest runs).
static FRAME_TABLE_START: AtomicU64 = AtomicU64::new(u64::MAX);
static FRAME_TABLE_END: AtomicU64 = AtomicU64::new(0);

impl DirectMap {
    /// Machine memory through the direct map.
    pub const fn new() -> DirectMap {
        DirectMap {
            u32_memo: PageMemo::new(),
            u64_memo: PageMemo::new(),
        }
    }

    /// [`DirectMap::virt`] through `memo`: an access inside the remembered page needs no check
    /// (it passed whole, and which pages pass never changes once the frame table exists, see
    /// [`PageMemo`]). On a miss, the access alone is checked, in line; or, with `remember`,
    /// its whole page is checked and remembered if it passes (what the accesses that come in
    /// runs ask: a walk's reads, one per table, would only pay for remembering).
    #[inline(always)]
    fn virt_memo(&self, memo: &PageMemo, addr: Maddr, len: usize, remember: bool) -> Option<u64> {
        if memo.covers(addr, len) {
            // What passed once passes for ever (debug builds check the invariant the memo rests
            // on, so a later change to what `virt` refuses trips here).
            debug_assert!(self.virt(addr, len).is_some(), "stale direct-map memo");
            return Some(layout::DIRECTMAP_VIRT_START + addr.0);
        }
        if remember {
            self.virt_miss(memo, addr, len)
        } else {
            self.virt(addr, len)
        }
    }

    #[inline(never)]
    fn virt_miss(&self, memo: &PageMemo, addr: Maddr, len: usize) -> Option<u64> {
        let page = PageMemo::page_of(addr);
        if FRAME_TABLE_END.load(Ordering::Relaxed) != 0
            && addr.0 - page.0 + len as u64 <= 4096
            && self.virt(page, 4096).is_some()
        {
            memo.remember(addr);
            return Some(layout::DIRECTMAP_VIRT_START + addr.0);
        }
        self.virt(addr, len)
    }

    /// The direct-map address of `[addr, addr + len)`, or `None` if any byte of it lies beyond
    /// the direct map, in the image or in the frame table. Every machine access of the
    /// hypervisor asks this, so it is written to be short: `len` is at most a page in practice
    /// (and anything up to `usize::MAX` is still refused correctly: the sum is checked), the
    /// image's range is two link-time constants, and the frame table's two loads.
    #[inline(always)]
    fn virt(&self, addr: Maddr, len: usize) -> Option<u64> {
        let end = addr.0.checked_add(len as u64)?;
        let image = image_maddr_range();
        let (ft_start, ft_end) = (
            FRAME_TABLE_START.load(Ordering::Relaxed),
            FRAME_TABLE_END.load(Ordering::Relaxed),
        );
        let in_map = end <= layout::BOOT_DIRECTMAP_SIZE;
        let outside = in_map
            & (addr.0 >= image.end || image.start >= end)
            & (addr.0 >= ft_end || ft_start >= end);
        // `end <= BOOT_DIRECTMAP_SIZE` makes `addr` a direct-map address.
        outside.then_some(layout::DIRECTMAP_VIRT_START + addr.0)
    }

    /// The u64 at `addr` (page-table entries, p2m entries), `None` where [`DirectMap::virt`]
    /// refuses it: looked up in the memo first when `memo` (which only writes fill: the entry a
    /// batch element reads, it then writes). What both [`MachineMemoryMut::read_u64`] and a
    /// walk ([`MachineMemoryMut::guest_l1e`]) read through.
    #[inline(always)]
    fn load_u64(&self, addr: Maddr, memo: bool) -> Option<u64> {
        let virt = if memo {
            self.virt_memo(&self.u64_memo, addr, 8, false)?
        } else {
            self.virt(addr, 8)?
        };
        // SAFETY: as for `read`: `[addr, addr + 8)` is in the direct map, outside the image and
        // the frame table; an unaligned load is allowed on x86.
        Some(u64::from_le(unsafe {
            core::ptr::read_unaligned(virt as *const u64)
        }))
    }

    /// Turns `frames` frames at `first` into the frame table's storage, for the hypervisor's
    /// lifetime, and withdraws them from [`DirectMap`] so nothing else can reach them. Once only.
    pub fn take_frame_table(
        &mut self,
        first: xen_core::mm::Mfn,
        entries: usize,
    ) -> &'static mut [xen_core::mm::frame_table::FrameInfo] {
        let bytes = entries * core::mem::size_of::<xen_core::mm::frame_table::FrameInfo>();
        let start = first.maddr().0;
        assert!(
            FRAME_TABLE_END.load(Ordering::Relaxed) == 0,
            "one frame table"
        );
        assert!(
            start + bytes as u64 <= layout::BOOT_DIRECTMAP_SIZE,
            "frame table in the direct map"
        );
        self.u32_memo.forget();
        self.u64_memo.forget();
        FRAME_TABLE_START.store(start, Ordering::Relaxed);
        FRAME_TABLE_END.store(start + bytes as u64, Ordering::Relaxed);
        let virt = layout::directmap_virt(start).expect("checked above");
        // SAFETY: the range lies in the direct map (mapped for the hypervisor's lifetime), came from
        // the frame allocator (so nothing else owns it), and is from now on refused by `virt`, so
        // this slice is its only access path. `FrameInfo` is plain data; `Mm::new` resets every
        // entry before use.
        unsafe {
            core::slice::from_raw_parts_mut(
                virt as *mut xen_core::mm::frame_table::FrameInfo,
                entries,
            )
        }
    }
}

impl MachineMemory for DirectMap {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        let virt = self.virt(addr, len)?;
        // SAFETY: `[addr, addr + len)` lies in the direct map (mapped for the hypervisor's lifetime)
        // and outside the image. It is guest or free memory: a guest may change it concurrently only
        // on another CPU, and there is one CPU, which is running this code.
        Some(unsafe { core::slice::from_raw_parts(virt as *const u8, len) })
    }

    #[inline(always)]
    fn read_u32_unaligned(&self, addr: Maddr) -> Option<u32> {
        let virt = self.virt_memo(&self.u32_memo, addr, 4, true)?;
        // SAFETY: as for `read`: `[addr, addr + 4)` lies in the direct map, outside the image and
        // the frame table (`virt_memo`); an unaligned load is allowed on x86.
        Some(u32::from_le(unsafe {
            core::ptr::read_unaligned(virt as *const u32)
        }))
    }
}

impl MachineMemoryMut for DirectMap {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        let virt = self.virt(addr, data.len())?;
        // SAFETY: as for `read`; outside the image, Rust references cover only the hypervisor's
        // own pages (`XenPage`s), frames the frame table marks `Owner::Xen` that no domain can
        // name to a copy and that the hypervisor writes only through those references, so this
        // copy aliases nothing the compiler knows about.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), virt as *mut u8, data.len()) };
        Some(())
    }

    /// One `memmove` through the direct map: no buffer between the two frames.
    fn copy(&mut self, from: Maddr, to: Maddr, len: usize) -> Option<()> {
        let src = self.virt(from, len)?;
        let dst = self.virt(to, len)?;
        // SAFETY: as for `write`: both ranges lie in the direct map outside the image and the
        // frame table (`virt`), and no Rust reference covers them; `copy` allows overlap.
        unsafe { core::ptr::copy(src as *const u8, dst as *mut u8, len) };
        Some(())
    }

    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
        super::uaccess::read(l4, va, buf)
    }

    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
        super::uaccess::write(l4, va, data)
    }

    /// Stores the zeroes (`rep stos`): half the memory traffic of copying a zero page, which
    /// counts at boot, when dom0's 64 MiB are scrubbed.
    fn zero(&mut self, addr: Maddr, len: usize) -> Option<()> {
        let virt = self.virt(addr, len)?;
        // SAFETY: as for `write`: `virt(addr, len)` checked that the whole range is mapped in the
        // direct map, and no Rust reference covers guest or free frames.
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, len) };
        Some(())
    }

    /// The frame through the direct map: 4096-aligned, mapped for the hypervisor's lifetime.
    fn xen_frame(&mut self, mfn: Mfn) -> Option<core::ptr::NonNull<[u8; 4096]>> {
        let virt = self.virt(mfn.maddr(), 4096)?;
        core::ptr::NonNull::new(virt as *mut [u8; 4096])
    }

    /// The walk's reads skip the memo: each is on another table's page, where it would only
    /// miss.
    fn guest_l1e(&self, l4: Mfn, va: u64) -> Option<(Maddr, Mfn)> {
        xen_core::mm::walk_to_l1e(l4, va, |addr| self.load_u64(addr, false))
    }

    // Page-table entries go through these: one load or store each, not a slice and a copy.
    #[inline]
    fn read_u64(&self, addr: Maddr) -> Option<u64> {
        self.load_u64(addr, true)
    }

    #[inline]
    fn write_u64(&mut self, addr: Maddr, value: u64) -> Option<()> {
        let virt = self.virt_memo(&self.u64_memo, addr, 8, true)?;
        // SAFETY: as for `write`.
        unsafe { core::ptr::write_unaligned(virt as *mut u64, value.to_le()) };
        Some(())
    }

    fn test_and_set_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        let old = self.atomic_u64(addr)?.fetch_or(1 << bit, Ordering::SeqCst);
        Some(old & (1 << bit) != 0)
    }

    fn test_and_clear_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        let old = self
            .atomic_u64(addr)?
            .fetch_and(!(1 << bit), Ordering::SeqCst);
        Some(old & (1 << bit) != 0)
    }

    fn compare_exchange_u32(&mut self, addr: Maddr, old: u32, new: u32) -> Option<u32> {
        let a = self.atomic_u32(addr)?;
        Some(
            match a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(v) | Err(v) => v,
            },
        )
    }

    fn fetch_or_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        Some(self.atomic_u32(addr)?.fetch_or(bits, Ordering::SeqCst))
    }

    fn fetch_and_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        Some(self.atomic_u32(addr)?.fetch_and(bits, Ordering::SeqCst))
    }
}

impl DirectMap {
    /// The naturally aligned u32 at `addr` as an atomic: FIFO event words and control blocks
    /// (`lock cmpxchg`, `lock or`, `lock and` on the direct map).
    fn atomic_u32(&mut self, addr: Maddr) -> Option<&AtomicU32> {
        if !addr.0.is_multiple_of(4) {
            return None;
        }
        let virt = self.virt(addr, 4)?;
        // SAFETY: as for `atomic_u64`: `[addr, addr + 4)` lies in the direct map, outside the
        // image and the frame table, guest or free memory no Rust data lives in; `virt` is
        // 4-byte aligned. The reference lives for one locked instruction.
        Some(unsafe { AtomicU32::from_ptr(virt as *mut u32) })
    }

    /// The naturally aligned u64 at `addr` as an atomic, for Xen's locked bit operations on
    /// memory a guest shares (`lock or`/`lock and`, or `lock bts`/`btr`, on the direct map).
    fn atomic_u64(&mut self, addr: Maddr) -> Option<&AtomicU64> {
        if !addr.0.is_multiple_of(8) {
            return None;
        }
        let virt = self.virt(addr, 8)?;
        // SAFETY: `[addr, addr + 8)` lies in the direct map (mapped for the hypervisor's
        // lifetime) and outside the image and the frame table, so it is guest or free memory
        // that no Rust data lives in; `virt` is 8-byte aligned (the direct map is an offset of
        // whole pages, and `addr` is aligned). The reference lives for one locked instruction.
        Some(unsafe { AtomicU64::from_ptr(virt as *mut u64) })
    }
}

/// An e820 entry: (address, size, type).
pub type E820 = (u64, u64, u32);

/// The machine as hypercall handlers see it.
pub struct HvMachine {
    /// Machine memory.
    pub mem: DirectMap,
    /// The memory map from the boot loader, as e820 entries.
    pub e820: heapless::Vec<E820, 64>,
    /// The frame table and memory-management settings.
    pub mm: Mm<'static>,
    /// The machine address CR3 holds: the table the CPU runs on (0 until the first guest's is
    /// loaded). Every CR3 load goes through [`HvMachine::load_cr3`], which keeps it.
    pub cr3: u64,
    /// The domain owning the table in CR3 (`None` until the first load): the only one whose
    /// global TLB entries the CPU may hold (see [`Cr3Load::Switch`]).
    pub cr3_owner: Option<xen_core::domain::DomainId>,
    /// When the hypercall that runs must stop and continue.
    pub preempt: PreemptAt,
    /// The vCPU state as last loaded into the CPU (`context.rs`).
    pub loaded: Loaded,
    /// A context switch to this slot's vCPU left its data selectors to load (`context.rs`:
    /// after its GDT frames).
    pub segs_to_load: Option<usize>,
}

/// vCPU state as last loaded into the CPU, to skip redundant MSR and CR writes (kept and
/// compared by `context.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// MSR_FS_BASE.
    pub(super) fs: u64,
    /// MSR_GS_BASE: the current mode's GS base.
    pub(super) gs: u64,
    /// MSR_SHADOW_GS_BASE: the other mode's.
    pub(super) gs_shadow: u64,
    /// CR0.TS.
    pub(super) ts: bool,
    /// The guest's debug registers as last loaded (DR0..DR3, DR7).
    pub(super) debug: ([u64; 4], u64),
    /// The vCPU's `base_writes` when its bases were last written: a new explicit write rewrites
    /// them all, whatever the cache says (a selector load may have changed the CPU's copy).
    pub(super) base_writes: u64,
    /// CR4.FSGSBASE: the guest may change its FS and GS bases itself (`wrfsbase`), so they are
    /// read back at each entry (`context::sync_guest_bases`).
    pub(super) fsgsbase: bool,
    /// CR4.TSD: `rdtsc` faults at CPL 3 (the guest kernel's is emulated, `emulate::privileged`).
    pub(super) tsd: bool,
    /// MSR_TSC_AUX.
    pub(super) tsc_aux: u64,
}

impl Loaded {
    /// Nothing known: every base and CR0.TS is written at the first load.
    pub const UNKNOWN: Loaded = Loaded {
        fs: 1,
        gs: 1,
        gs_shadow: 1,
        ts: true,
        debug: ([0; 4], 0x400),
        base_writes: u64::MAX,
        fsgsbase: false,
        tsd: false,
        tsc_aux: u64::MAX,
    };
}

/// The machine's half of Xen's `hypercall_preempt_check()` (`softirq_pending`): Xen takes
/// interrupts while a hypercall runs and a due timer raises a softirq; we run hypercalls with
/// interrupts off, so the arch layer sets, at each hypercall entry, the time from which the CPU
/// is wanted elsewhere (the deadline the APIC timer is armed for: the next timer of any vCPU, or
/// the end of the running vCPU's slice while another could run; at most [`PreemptAt::MAX_NS`]
/// after the entry), and every [`PreemptAt::IRR_EVERY`] questions it also looks for an interrupt
/// waiting in the APIC (a device's, for dom0).
#[derive(Debug)]
pub struct PreemptAt {
    /// The TSC when the hypercall that runs entered.
    entered_tsc: u64,
    /// The next deadline the hypervisor has (system time, ns), if any.
    due: Option<u64>,
    /// The TSC value from which the hypercall must stop: the earlier of `due` and
    /// [`PreemptAt::MAX_NS`] after the entry, as a TSC value so that the question, asked before
    /// every element of a batch, is one `rdtsc` and a comparison; 0 until the first question
    /// after [`PreemptAt::arm`] works it out (most hypercalls never ask, and the entry only
    /// stores two words).
    deadline_tsc: Cell<u64>,
    /// Questions asked, to ration the APIC reads.
    asked: Cell<u32>,
}

impl PreemptAt {
    /// The longest a hypercall runs before it continues, whatever is due: interrupts are off
    /// meanwhile (Xen's hypercalls run with them on).
    pub const MAX_NS: u64 = 1_000_000;
    /// Questions per look at the APIC's pending interrupts (an uncached register read each,
    /// or a VM exit under KVM: too slow for every element of a batch).
    pub const IRR_EVERY: u32 = 256;

    /// Never preempts, until [`PreemptAt::arm`].
    pub const fn new() -> PreemptAt {
        PreemptAt {
            entered_tsc: 0,
            due: None,
            deadline_tsc: Cell::new(u64::MAX),
            asked: Cell::new(0),
        }
    }

    /// A hypercall starts at TSC value `entered_tsc`: it stops at `due` (the next deadline the
    /// hypervisor has, if any, in system time), and at most [`PreemptAt::MAX_NS`] after it
    /// started.
    #[inline]
    pub fn arm(&mut self, entered_tsc: u64, due: Option<u64>) {
        self.entered_tsc = entered_tsc;
        self.due = due;
        self.deadline_tsc.set(0);
    }

    /// The TSC value from which the hypercall must stop (see `deadline_tsc`).
    fn deadline(&self) -> u64 {
        let cap = super::time::system_time_at(self.entered_tsc).saturating_add(Self::MAX_NS);
        let deadline = self.due.map_or(cap, |d| d.min(cap));
        super::time::tsc_at(deadline).max(1)
    }
}

impl Preempt for PreemptAt {
    fn pending(&self) -> bool {
        let mut deadline_tsc = self.deadline_tsc.get();
        if deadline_tsc == 0 {
            deadline_tsc = self.deadline();
            self.deadline_tsc.set(deadline_tsc);
        }
        if super::time::tsc_now() >= deadline_tsc {
            return true;
        }
        let n = self.asked.get().wrapping_add(1);
        self.asked.set(n);
        n.is_multiple_of(Self::IRR_EVERY) && super::apic::interrupt_waiting()
    }
}

impl MachineMemory for HvMachine {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }

    #[inline(always)]
    fn read_u32_unaligned(&self, addr: Maddr) -> Option<u32> {
        self.mem.read_u32_unaligned(addr)
    }
}

impl MachineMemoryMut for HvMachine {
    fn write(&mut self, addr: Maddr, data: &[u8]) -> Option<()> {
        self.mem.write(addr, data)
    }

    fn copy(&mut self, from: Maddr, to: Maddr, len: usize) -> Option<()> {
        self.mem.copy(from, to, len)
    }

    fn mmu_read(&self, l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
        self.mem.mmu_read(l4, va, buf)
    }

    fn mmu_write(&mut self, l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
        self.mem.mmu_write(l4, va, data)
    }

    fn zero(&mut self, addr: Maddr, len: usize) -> Option<()> {
        self.mem.zero(addr, len)
    }

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
        self.mem.write_u64(addr, value)
    }

    fn test_and_set_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        self.mem.test_and_set_bit(addr, bit)
    }

    fn test_and_clear_bit(&mut self, addr: Maddr, bit: u32) -> Option<bool> {
        self.mem.test_and_clear_bit(addr, bit)
    }

    fn compare_exchange_u32(&mut self, addr: Maddr, old: u32, new: u32) -> Option<u32> {
        self.mem.compare_exchange_u32(addr, old, new)
    }

    fn fetch_or_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        self.mem.fetch_or_u32(addr, bits)
    }

    fn fetch_and_u32(&mut self, addr: Maddr, bits: u32) -> Option<u32> {
        self.mem.fetch_and_u32(addr, bits)
    }
}

/// The CPU's own CPUID answer.
pub fn native_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = __cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

impl HvMachine {
    /// System time: nanoseconds since boot, from the calibrated TSC.
    pub fn now(&self) -> u64 {
        super::time::now()
    }

    /// Loads CR3 with `l4`, one of a domain's top-level tables, as `how` says.
    ///
    /// Panics (a hypervisor bug, never a guest's doing) unless `l4` is a validated L4 of a
    /// domain holding a type reference: only such a table is sure to map the hypervisor in its
    /// reserved slots (written at validation, never writable while it keeps its type), which is
    /// what lets the code running now go on after the load.
    pub fn load_cr3(&mut self, l4: Mfn, how: Cr3Load) {
        let owner = self.mm.frames.get(l4).and_then(|f| match f.owner() {
            Owner::Domain(d)
                if f.page_type() == PageType::L4 && f.validated() && f.type_count() > 0 =>
            {
                Some(d)
            }
            _ => None,
        });
        let Some(owner) = owner else {
            panic!("CR3 load of {l4:?}, which is not a live L4");
        };
        let maddr = l4.maddr().0;
        if maddr == self.cr3 && how == Cr3Load::IfChanged {
            return;
        }
        // The global entries the TLB may hold are the current owner's (every change of owner
        // drops them when it may have some): they must go when its address space is left for
        // another one, but only if its tables can hold any (`Mm::may_hold_global`).
        let leaving_globals = self.cr3_owner.is_none_or(|d| self.mm.may_hold_global(d));
        let flush_globals = match how {
            Cr3Load::FlushAll => true,
            Cr3Load::Switch => leaving_globals,
            Cr3Load::IfChanged | Cr3Load::Always => {
                self.cr3_owner != Some(owner) && leaving_globals
            }
        };
        // SAFETY: `l4` is a validated L4 with a type reference (checked above), so its slots
        // 256..272 hold the hypervisor's entries (`init_xen_l4_slots` at validation; a guest can
        // change them neither through validated updates nor by mapping the frame writable) and
        // the hypervisor's code, stack and data stay mapped across the load. Toggling CR4.PGE
        // only drops cached translations.
        unsafe {
            if flush_globals {
                let cr4: u64;
                core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
                core::arch::asm!("mov cr4, {}", in(reg) cr4 & !(1 << 7), options(nostack));
                core::arch::asm!("mov cr3, {}", in(reg) maddr, options(nostack));
                core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
            } else {
                core::arch::asm!("mov cr3, {}", in(reg) maddr, options(nostack));
            }
        }
        self.cr3 = maddr;
        self.cr3_owner = Some(owner);
    }
}

/// How [`HvMachine::load_cr3`] loads CR3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr3Load {
    /// Only if another table is in CR3 (entering a vCPU).
    IfChanged,
    /// Always: a CR3 write, which drops the non-global TLB entries (a guest mode toggle, Xen's
    /// `toggle_guest_pt`, which keeps the global user mappings).
    Always,
    /// Always, and the global TLB entries too (Xen's `write_ptbase`, whose `switch_cr3_cr4`
    /// toggles CR4.PGE).
    FlushAll,
    /// Always, and the global TLB entries too unless the table being left belongs to a domain
    /// whose tables never held a global entry (`Mm::may_hold_global`): then the TLB holds
    /// none of its translations once the CR3 write dropped the non-global ones, and the CR4
    /// writes (each of which empties the whole TLB, the hypervisor's entries too, and under
    /// QEMU's TCG its translation caches) are saved. A context switch.
    Switch,
}

impl Machine for HvMachine {
    type Mem = DirectMap;
    fn console_write(&mut self, bytes: &[u8]) {
        console::write_guest(bytes);
    }

    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        // Only dom0 reaches this (`console_io` refuses other domains).
        console::read_dom0_input(buf)
    }

    fn now_ns(&self) -> u64 {
        self.now()
    }

    fn e820(&self, out: &mut [(u64, u64, u32)]) -> usize {
        let n = self.e820.len().min(out.len());
        out[..n].copy_from_slice(&self.e820[..n]);
        n
    }

    fn mm(&mut self) -> Option<(&mut Mm<'static>, &mut dyn MachineMemoryMut)> {
        Some((&mut self.mm, &mut self.mem))
    }

    fn write_ptbase(&mut self, l4: Mfn) {
        self.load_cr3(l4, Cr3Load::FlushAll);
    }

    fn sync_irq_lines(&mut self, pirqs: &xen_core::pirq::PirqTable) {
        super::ioapic::sync(pirqs);
    }

    fn preemption(&self) -> &dyn Preempt {
        &self.preempt
    }

    fn mm_preemptible(&mut self) -> Option<(&mut Mm<'static>, &mut DirectMap, &dyn Preempt)> {
        Some((&mut self.mm, &mut self.mem, &self.preempt))
    }
}

/// The machine's I/O port space: real `in`/`out` for the guest port accesses the hypervisor
/// emulates (`xen_core::emulate::port_io`, which has already checked the domain's right to the
/// port and kept the hypervisor's own ports out of reach) and for the PCI configuration
/// accesses it performs for dom0 (`xen_core::pci`, after its MSI/MSI-X write filter).
pub struct RealPorts;

impl xen_core::emulate::PortBus for RealPorts {
    fn port_read(&mut self, port: u16, bytes: u8) -> u32 {
        // SAFETY: `port_io` only passes ports the domain may use, which exclude every port the
        // hypervisor drives (PIC, PIT, CMOS, COM1, isa-debug-exit), and PCI configuration
        // reads (CONFIG_ADDRESS, then CONFIG_DATA): a read cannot disturb the hypervisor's
        // devices or memory.
        unsafe {
            match bytes {
                1 => u32::from(x86_64::instructions::port::Port::<u8>::new(port).read()),
                2 => u32::from(x86_64::instructions::port::Port::<u16>::new(port).read()),
                _ => x86_64::instructions::port::Port::<u32>::new(port).read(),
            }
        }
    }

    fn port_write(&mut self, port: u16, bytes: u8, value: u32) {
        // SAFETY: as for `port_read`: only ports granted to the domain reach here, and
        // configuration writes `xen_core::pci::cfg_ok` passed (none into a device's MSI or
        // MSI-X). A device the domain programs this way may DMA into memory, which is what a
        // privileged dom0 is trusted with on Xen too (no IOMMU).
        unsafe {
            match bytes {
                1 => x86_64::instructions::port::Port::<u8>::new(port).write(value as u8),
                2 => x86_64::instructions::port::Port::<u16>::new(port).write(value as u16),
                _ => x86_64::instructions::port::Port::<u32>::new(port).write(value),
            }
        }
    }
}
