//! Negative memory cases: `mmu_update`, `mmuext_op`, `update_va_mapping(_otherdomain)` and
//! multicalls of them, fed what a hostile or buggy PV kernel would feed them. Each answer is Xen
//! 4.17's (`xen/arch/x86/mm.c`: `do_mmu_update`, `do_mmuext_op`, `__do_update_va_mapping`,
//! `get_page_from_l1e`, `mod_lN_entry`, `_get_page_type`, `new_guest_cr3`).
//!
//! Frames a case may aim at without depending on where a hypervisor put things:
//!
//! - the scratch pages of [`super::SCRATCH`] (ours, mapped writable by the initial region); pages
//!   4..7 are turned into page tables (mapped read-only first) and turned back;
//! - our own page tables (the L4 at `pt_base` and the L3/L2/L1 over the scratch pages);
//! - the shared_info frame (`start_info.shared_info`): the hypervisor's page shared writable with
//!   us (`share_xen_page_with_guest`);
//! - an unowned RAM frame: the frame after the highest one in our p2m (the hypervisor's or free;
//!   every rule below treats both alike);
//! - I/O frames: the VGA frame 0xb8 (the first MiB belongs to `DOMID_IO` on both hypervisors),
//!   `maximum_ram_page` (just beyond RAM), the local APIC and the MSI window (withheld from
//!   dom0), the I/O APIC (dom0 may map it read-only), a frame beyond the CPU's physical address
//!   width and the all-ones frame (INVALID_MFN).
//!
//! Every case undoes what it changed and prints a failed undo (` restore_failed=..`, `undo=..`,
//! `undo_failed=..`) instead of panicking. Nothing printed depends on machine addresses: return
//! codes, `done` counts, per-entry results, and flags or equalities read back. The cases are in
//! [`arguments`] (bad arguments to `mmu_update` and `mmuext_op`), [`tables`] (tables built,
//! pinned, installed), [`lifecycle`] (tables over their life, used linearly, the live L4) and
//! [`mappings`] (`update_va_mapping`, multicalls, the I/O-frame policy).

mod arguments;
mod lifecycle;
mod mappings;
mod tables;

use core::ptr;

use guest_kernel::paging::{entry_frame, index, make_entry, PTE_A, PTE_NX, PTE_P, PTE_RW};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_END;
use hypercall_abi::memory::MemoryNoArg;
use hypercall_abi::xen::{
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_set_gdt,
    __HYPERVISOR_update_va_mapping_otherdomain, MmuUpdate, MmuextOp, StartInfo, DOMID_IO,
    DOMID_SELF, DOMID_XEN, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_NEW_BASEPTR,
    MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
    MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE,
    MMU_PT_UPDATE_PRESERVE_AD, UVMF_INVLPG,
};
use hypercall_abi::HypercallError;

use super::{
    data_pte, entry, ext, flush_local, mm, normal, peek, poke, remap_scratch, restore, scratch,
    values, Restored, ScratchMap, Suite, Values, DATA_FLAGS, NON_CANONICAL, NO_SUCH_DOMAIN,
    SCRATCH_PAGES, UNMAPPED,
};
use crate::kernel::hypercall::{self as hc, ptr as gp};

/// What `*done` holds before a call, so a case sees whether the hypervisor wrote it.
const SENTINEL: u32 = 0xdead;
/// The VGA text frame: below 1 MiB, so an I/O frame owned by `DOMID_IO`.
const VGA_MFN: u64 = 0xb8;
/// The local APIC's frame (`mp_lapic_addr`), withheld from dom0 (`dom0_setup_permissions`).
const LAPIC_MFN: u64 = 0xfee00;
/// The I/O APIC's frame, withheld from dom0 as well.
const IOAPIC_MFN: u64 = 0xfec00;
/// A frame at 2^48: beyond any physical address width QEMU gives a CPU, so outside dom0's
/// `iomem_caps` (`0 .. 2^paddr_bits`).
const BEYOND_PADDR_MFN: u64 = 1 << 36;
/// The all-ones frame number, which Xen reads as INVALID_MFN.
const ALL_ONES_MFN: u64 = (1 << 40) - 1;
/// `_PAGE_PWT`, `_PAGE_PCD`, `_PAGE_PAT` (L1) / `_PAGE_PSE` (L2, L3), `_PAGE_USER`.
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PAT: u64 = 1 << 7;
const PSE: u64 = 1 << 7;
/// An empty guest L4 slot (between the initial region's slot 0 and Xen's slots 256..271).
const FREE_L4_SLOT: usize = 300;
/// Empty slots at the top of the L3 and L2 over the kernel (1 GiB - 2 MiB and 511 GiB are far
/// beyond the initial region).
const FREE_L3_SLOT: usize = 511;
const FREE_L2_SLOT: usize = 511;
/// The offset in shared_info past `struct shared_info` (3136 bytes): unused by both sides.
const SHINFO_SPARE: u64 = 4088;

/// Everything the cases aim at, found once.
#[derive(Clone, Copy)]
struct Env {
    /// Scratch pages 0..SCRATCH_PAGES.
    p: [ScratchMap; SCRATCH_PAGES],
    /// Our tables: the current L4 and the L3, L2, L1 over the scratch pages.
    l4: u64,
    l3: u64,
    l2: u64,
    l1: u64,
    /// The shared_info frame.
    shinfo: u64,
    /// A RAM frame we do not own.
    unowned: u64,
    /// `XENMEM_maximum_ram_page`: the first frame beyond RAM.
    max_ram: u64,
}

impl Env {
    fn find(si: &StartInfo) -> Result<Env, &'static str> {
        let mut p = [None; SCRATCH_PAGES];
        for (i, slot) in p.iter_mut().enumerate() {
            *slot = scratch(i);
        }
        if p.iter().any(Option::is_none) {
            return Err("scratch pages not mapped by 4 KiB L1 entries");
        }
        let p = p.map(|m| m.expect("checked just above"));
        let va = p[0].va;
        let l4 = mm::l4_mfn();
        let l3 = entry_frame(table_entry(l4, index(va, 4)));
        let l2 = entry_frame(table_entry(l3, index(va, 3)));
        let l1 = entry_frame(table_entry(l2, index(va, 2)));
        if [l3, l2].iter().any(|&t| mm::mfn_to_pfn(t) >= si.nr_pages) {
            return Err("page tables outside the p2m");
        }
        let max_ram = hc::memory_op_noarg(MemoryNoArg::MaximumRamPage) as u64;
        let shinfo = si.shared_info >> 12;
        let unowned = unowned_ram_frame(si.nr_pages, shinfo, max_ram).ok_or("no unowned frame")?;
        let free = [(l4, FREE_L4_SLOT), (l3, FREE_L3_SLOT), (l2, FREE_L2_SLOT)];
        if free.iter().any(|&(t, i)| table_entry(t, i) != 0) {
            return Err("a free table slot is in use");
        }
        Ok(Env {
            p,
            l4,
            l3,
            l2,
            l1,
            shinfo,
            unowned,
            max_ram,
        })
    }
}

/// The frame after the highest frame of our p2m (skipping shared_info), if it is RAM; else the
/// frame before the lowest one above 1 MiB.
fn unowned_ram_frame(nr_pages: u64, shinfo: u64, max_ram: u64) -> Option<u64> {
    let ours = (0..nr_pages).filter_map(mm::pfn_to_mfn);
    let (lo, hi) = ours.fold((u64::MAX, 0), |(lo, hi), m| (lo.min(m), hi.max(m)));
    let mut above = hi + 1;
    if above == shinfo {
        above += 1;
    }
    if above < max_ram {
        return Some(above);
    }
    let mut below = lo.checked_sub(1)?;
    if below == shinfo {
        below = below.checked_sub(1)?;
    }
    (below >= 0x100).then_some(below)
}

/// Entry `i` of our page table `mfn`, read through its read-only mapping in the initial region.
fn table_entry(mfn: u64, i: usize) -> u64 {
    read(mm::mfn_to_va(mfn) + 8 * i as u64)
}

/// The machine address of entry `i` of table `mfn` (an `mmu_update` pointer).
fn slot(mfn: u64, i: usize) -> u64 {
    (mfn << 12) + 8 * i as u64
}

fn read(va: u64) -> u64 {
    // SAFETY: `va` is 8-byte aligned and mapped (a scratch page, a table of the initial region
    // or shared_info); volatile because the hypervisor changes what is there.
    unsafe { ptr::read_volatile(va as *const u64) }
}

/// The L1 entry that maps scratch page `m` now.
fn l1_value(m: &ScratchMap) -> u64 {
    read(mm::mfn_to_va(entry_frame(m.pte_maddr)) + (m.pte_maddr & 0xfff))
}

/// The PAT index an L1 entry selects (`pte_flags_to_cacheattr`).
fn pat_index(e: u64) -> u64 {
    ((e >> 5) & 4) | ((e >> 3) & 3)
}

/// The flag bits of an entry: bits 0..11, Xen's software bit 52 and NX.
fn flags_of(e: u64) -> u64 {
    e & (0xfff | (1 << 52) | PTE_NX)
}

/// One `mmu_update` request with `foreigndom`; (rc, done).
fn mmu(reqs: &[MmuUpdate], foreigndom: u32) -> (i64, u32) {
    let mut done = SENTINEL;
    // SAFETY: `reqs` is readable and `done` writable for the call.
    let rc = unsafe {
        mmu_raw(
            gp(reqs.as_ptr()),
            reqs.len() as u64,
            gp(&raw mut done),
            foreigndom,
        )
    };
    (rc, done)
}

/// `mmu_update(list, count, pdone, foreigndom)` with every argument chosen by the case.
///
/// # Safety
/// `list` must be readable for `count & !(1 << 31)` entries or be a pointer the hypervisor must
/// refuse; `pdone` must be a writable u32, null, or a pointer the hypervisor must refuse.
unsafe fn mmu_raw(list: u64, count: u64, pdone: u64, foreigndom: u32) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe {
        hc::hypercall(
            __HYPERVISOR_mmu_update,
            list,
            count,
            pdone,
            foreigndom.into(),
            0,
        )
    }
}

/// `mmuext_op(ops, count, &done, foreigndom)` with `*done` preset to [`SENTINEL`].
fn ext_ops(ops: &[MmuextOp], foreigndom: u32) -> (i64, u32) {
    let mut done = SENTINEL;
    // SAFETY: `ops` is readable and `done` writable for the call.
    let rc = unsafe {
        ext_raw(
            gp(ops.as_ptr()),
            ops.len() as u64,
            gp(&raw mut done),
            foreigndom,
        )
    };
    (rc, done)
}

/// One `mmuext_op` for `DOMID_SELF`; its return code.
fn ext1(cmd: u32, arg1: u64, arg2: u64) -> i64 {
    ext_ops(&[ext(cmd, arg1, arg2)], DOMID_SELF.into()).0
}

/// `mmuext_op(ops, count, pdone, foreigndom)` with every argument chosen by the case.
///
/// # Safety
/// As for [`mmu_raw`].
unsafe fn ext_raw(ops: u64, count: u64, pdone: u64, foreigndom: u32) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe {
        hc::hypercall(
            __HYPERVISOR_mmuext_op,
            ops,
            count,
            pdone,
            foreigndom.into(),
            0,
        )
    }
}

/// `update_va_mapping` of a scratch address, or of an address the hypervisor must refuse.
fn uvm(va: u64, pte: u64, flags: u64) -> i64 {
    if va == HYPERVISOR_VIRT_END {
        // SAFETY: the first address past the hypervisor's area has no L1 table behind it in our
        // tables (the case checks the refusal); no Rust data lives there.
        unsafe { hc::update_va_mapping(va, pte, flags) }
    } else {
        remap_scratch(va, pte, flags)
    }
}

/// `update_va_mapping_otherdomain(va, pte, UVMF_INVLPG, domid)` of a scratch address.
fn uvm_other(m: &ScratchMap, pte: u64, domid: u16) -> i64 {
    // SAFETY: `m` is a scratch page, which no Rust reference covers; the case restores it.
    unsafe {
        hc::hypercall(
            __HYPERVISOR_update_va_mapping_otherdomain,
            m.va,
            pte,
            UVMF_INVLPG,
            domid.into(),
            0,
        )
    }
}

/// Sets scratch page `m`'s L1 entry to `pte` (`mmu_update`, flushed); the return code.
fn set_pte(m: &ScratchMap, pte: u64) -> i64 {
    let (rc, _) = hc::mmu_update(&[normal(m.pte_maddr, pte)], DOMID_SELF);
    flush_local();
    rc
}

/// Maps scratch page `m` read-only, so that its frame loses its writable type and may become a
/// page table.
fn readonly(m: &ScratchMap) -> i64 {
    set_pte(m, make_entry(m.mfn, PTE_P | PTE_A | (m.pte & PTE_NX)))
}

/// Zeroes scratch page `m` (mapped writable) and puts `entries` at its start.
fn fill(m: &ScratchMap, entries: &[u64]) {
    for i in 0..512 {
        poke(m.va + 8 * i, entries.get(i as usize).copied().unwrap_or(0));
    }
}

/// Scratch page `m` as a would-be page table: filled with `entries` and mapped read-only. `Err`
/// is the return code of the read-only remap.
fn table_page(m: &ScratchMap, entries: &[u64]) -> Result<(), HypercallError> {
    fill(m, entries);
    HypercallError::check(readonly(m)).map(|_| ())
}

/// Puts scratch page `m` back writable and zeroed after [`table_page`].
fn untable(m: &ScratchMap) -> Restored {
    let r = restore(m);
    if r.ok() {
        fill(m, &[]);
    }
    r
}

/// `set_gdt(frames, entries)`.
fn set_gdt(frames: &[u64], entries: u64) -> i64 {
    // SAFETY: `frames` is readable for the call; the frames are scratch pages the case made
    // read-only, or none (which drops the GDT frames of the domain, as it booted).
    unsafe { hc::hypercall(__HYPERVISOR_set_gdt, gp(frames.as_ptr()), entries, 0, 0, 0) }
}

/// `foreigndom` as a 32-bit argument.
const SELF: u32 = DOMID_SELF as u32;

/// One `MMU_MACHPHYS_UPDATE`: machine frame `mfn` becomes pseudo-physical `pfn`.
fn machphys(mfn: u64, pfn: u64, foreigndom: u32) -> (i64, u32) {
    let req = MmuUpdate {
        ptr: (mfn << 12) | MMU_MACHPHYS_UPDATE,
        val: pfn,
    };
    mmu(&[req], foreigndom)
}

/// Every case of this module, after the older memory groups.
pub(super) fn cases(s: &mut Suite, si: &StartInfo) {
    let env = match Env::find(si) {
        Ok(env) => env,
        Err(why) => {
            s.case("memory.setup", format_args!("failed: {why}"));
            return;
        }
    };
    arguments::mmu_update_cases(s, &env);
    tables::mmu_update_table_cases(s, &env);
    arguments::mmu_update_argument_cases(s, &env);
    arguments::machphys_cases(s, &env);
    tables::pin_cases(s, &env);
    tables::baseptr_cases(s, &env);
    tables::page_op_cases(s, &env);
    arguments::mmuext_argument_cases(s, &env);
    mappings::update_va_mapping_cases(s, &env);
    lifecycle::table_lifecycle_cases(s, &env);
    lifecycle::live_l4_cases(s, &env);
    lifecycle::linear_table_cases(s, &env);
    mappings::io_policy_cases(s, &env);
    mappings::multicall_cases(s, &env);
}
