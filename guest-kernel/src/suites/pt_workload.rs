//! The page-table update workload: map and unmap a scratch region of N pages, in one of several
//! ways, and time it. `bench=pt-update` and `lab=pt-batching` are two front ends to this.
//!
//! Setup (untimed): take the largest N frames from the allocator, write a mark into each, and
//! build the scratch range's L3, L2 and L1s (`pt::ensure_l1`). Then, for every N and variant:
//!
//! 1. a **check** round: map, read every page's mark through its new mapping, unmap, walk the
//!    tables to see that nothing stays mapped;
//! 2. `reps` **timed** rounds, each: read the hypervisor's counters; map the N pages (timed);
//!    read one word of each page (timed separately: the TLB refill); unmap them (timed); read the
//!    counters again; flush the TLB (untimed, so every round starts cold). The rounds of all
//!    variants are interleaved (see [`measure`]).
//!
//! The result is the median of the rounds in TSC cycles per PTE update (a round is 2N updates),
//! the guest's own count of hypercalls per round, and the hypervisor's counters over the last
//! round (`sysctl(XEN_SYSCTL_perfc_op)`; Debian's Xen is built without them and refuses).

use core::fmt;

use guest_kernel::layout::{direct_map_va, SCRATCH_BASE, SCRATCH_SLOT};
use guest_kernel::mmu_batch::{Mode, MAX_BATCH};
use guest_kernel::paging::{
    entry_frame, entry_maddr, index, make_entry, Mfn, ENTRIES, PAGE_SIZE, PTE_A, PTE_D, PTE_P,
    PTE_RW,
};
use guest_kernel::pt_lab::{
    median_min_max, Counters, Figures, Kind, Params, Variant, MAX_ITEMS, MAX_PAGES, MAX_REPS,
};
use hypercall_abi::xen::{
    __HYPERVISOR_update_va_mapping, MulticallEntry, MMUEXT_TLB_FLUSH_LOCAL, UVMF_INVLPG, UVMF_NONE,
};

use crate::kernel::hypercall;
use crate::kernel::pt::{self, Batch, PtError};
use crate::kernel::time::rdtsc;
use crate::kernel::{direct_map, mm};

/// Flags of a scratch mapping.
const FLAGS: u64 = PTE_P | PTE_RW | PTE_A | PTE_D;
/// The first word of scratch frame i holds `MARK | i`, to check the mappings.
const MARK: u64 = 0x5054_0000_0000_0000;

/// Why the workload stopped.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// Building, updating or tearing down page tables failed.
    Pt(PtError),
    /// A check round found pages that did not show their frame, or stayed mapped.
    Check {
        variant: Variant,
        pages: usize,
        wrong_contents: usize,
        still_mapped: usize,
    },
}

impl From<PtError> for Error {
    fn from(e: PtError) -> Error {
        Error::Pt(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pt(e) => write!(f, "{e}"),
            Error::Check {
                variant,
                pages,
                wrong_contents,
                still_mapped,
            } => write!(
                f,
                "{variant} pages={pages} check_failed wrong_contents={wrong_contents} \
                 still_mapped={still_mapped}"
            ),
        }
    }
}

/// The scratch region: its frames and the L1 tables that map it.
struct Scratch {
    /// Frames set up (mapped by the variants as pages 0..pages).
    pages: usize,
    /// Machine frame of scratch page i.
    frames: [Mfn; MAX_PAGES],
    /// The L1 table of scratch pages 512 k .. 512 (k + 1).
    l1s: [Mfn; MAX_PAGES / ENTRIES],
}

static mut SCRATCH: Scratch = Scratch {
    pages: 0,
    frames: [Mfn(0); MAX_PAGES],
    l1s: [Mfn(0); MAX_PAGES / ENTRIES],
};

/// The `multicall` list of the `multicall_uvm` variant.
static mut MULTICALL: [MulticallEntry; MAX_BATCH] = [MulticallEntry {
    op: 0,
    result: 0,
    args: [0; 6],
}; MAX_BATCH];

// Scratch page i is entry i % 512 of L1 i / 512 only if the range starts on an L1 boundary.
const _: () = assert!(index(SCRATCH_BASE, 1) == 0);

fn scratch_va(i: usize) -> u64 {
    SCRATCH_BASE + i as u64 * PAGE_SIZE
}

/// Machine address of scratch page i's L1 entry.
fn pte_maddr(s: &Scratch, i: usize) -> u64 {
    entry_maddr(s.l1s[i / ENTRIES], i % ENTRIES)
}

/// Runs every variant of `params` at every N, passing each result to `report` as it is ready.
/// Everything set up is torn down again, and a frame left over is an error.
pub fn run(params: &Params, mut report: impl FnMut(&Figures)) -> Result<(), Error> {
    let scratch = &raw mut SCRATCH;
    // SAFETY: the scratch record is used by this module only, one run at a time, and the kernel
    // is single-threaded.
    let s = unsafe { &mut *scratch };
    s.pages = 0;
    let free_before = direct_map::init_memory().map(|_| mm::free_frames());
    let result = setup(s, params.max_pages()).and_then(|()| {
        for pages in params.pages.iter() {
            measure(s, pages, params, &mut report)?;
        }
        Ok(())
    });
    let torn_down = teardown(s);
    result?;
    torn_down?;
    let before = free_before?;
    let now = mm::free_frames();
    if now != before {
        return Err(Error::Pt(PtError::Leak { before, now }));
    }
    Ok(())
}

/// Takes the frames, marks them, and builds the scratch range's L3, L2 and L1s.
fn setup(s: &mut Scratch, pages: usize) -> Result<(), Error> {
    direct_map::init_memory()?;
    let l4 = mm::kernel_l4();
    if pt::read_entry(l4, SCRATCH_SLOT)? & PTE_P != 0 {
        return Err(PtError::Hypercall("scratch slot already in use", 0).into());
    }
    for i in 0..pages {
        let pfn = mm::alloc_frame().ok_or(PtError::OutOfFrames)?;
        s.frames[i] = match mm::mfn_of(pfn) {
            Some(mfn) => mfn,
            None => {
                let _ = mm::free_frame(pfn);
                return Err(PtError::NoMfn(pfn).into());
            }
        };
        s.pages = i + 1;
        // SAFETY: the frame was just allocated and is mapped writable in the direct map.
        unsafe { core::ptr::write_volatile(direct_map_va(pfn) as *mut u64, MARK | i as u64) };
        if i % ENTRIES == 0 {
            s.l1s[i / ENTRIES] = pt::ensure_l1(l4, scratch_va(i))?;
        }
    }
    Ok(())
}

/// `mmuext_op(MMUEXT_TLB_FLUSH_LOCAL)`.
fn flush_tlb() -> Result<(), PtError> {
    pt::mmuext("mmuext_op(TLB_FLUSH_LOCAL)", MMUEXT_TLB_FLUSH_LOCAL, 0)
}

/// Maps (`map`) or unmaps scratch pages 0..pages with `variant`; returns the hypercalls issued.
fn pass(
    s: &Scratch,
    pages: usize,
    variant: Variant,
    batch: &mut Batch,
    map: bool,
) -> Result<u64, PtError> {
    let pte = |i: usize| {
        if map {
            make_entry(s.frames[i].0, FLAGS)
        } else {
            0
        }
    };
    match variant.kind {
        Kind::MmuUpdate => {
            let before = batch.hypercalls();
            for i in 0..pages {
                batch
                    .set_pte(pte_maddr(s, i), pte(i))
                    .map_err(|e| PtError::Mmu("mmu_update", e))?;
            }
            batch.flush().map_err(|e| PtError::Mmu("mmu_update", e))?;
            Ok(batch.hypercalls() - before)
        }
        Kind::UpdateVaMapping | Kind::UpdateVaMappingInvlpg => {
            let flags = if variant.kind == Kind::UpdateVaMappingInvlpg {
                UVMF_INVLPG
            } else {
                UVMF_NONE
            };
            for i in 0..pages {
                // SAFETY: scratch addresses are referenced by nothing but this module, which reads
                // them only through raw pointers while they are mapped.
                let rc = unsafe { hypercall::update_va_mapping(scratch_va(i), pte(i), flags) };
                if rc != 0 {
                    return Err(PtError::Hypercall("update_va_mapping", rc));
                }
            }
            Ok(pages as u64)
        }
        Kind::MulticallUvm => {
            let list = &raw mut MULTICALL;
            // SAFETY: the multicall list is used by this function only, and the kernel is
            // single-threaded.
            let list = unsafe { &mut *list };
            let mut calls = 0;
            let mut start = 0;
            while start < pages {
                let n = variant.batch.min(pages - start);
                for (k, e) in list[..n].iter_mut().enumerate() {
                    let i = start + k;
                    *e = MulticallEntry {
                        op: u64::from(__HYPERVISOR_update_va_mapping),
                        result: 0,
                        args: [scratch_va(i), pte(i), UVMF_NONE, 0, 0, 0],
                    };
                }
                // SAFETY: every entry is an update_va_mapping of a scratch address (see above);
                // no pointers are passed inside the entries.
                let rc = unsafe { hypercall::multicall(&mut list[..n]) };
                if rc != 0 {
                    return Err(PtError::Hypercall("multicall", rc));
                }
                if let Some(e) = list[..n].iter().find(|e| e.result != 0) {
                    return Err(PtError::Hypercall(
                        "multicall(update_va_mapping)",
                        e.result as i64,
                    ));
                }
                calls += 1;
                start += n;
            }
            Ok(calls)
        }
    }
}

/// Reads the first word of scratch pages 0..pages (each mapped to a frame this module owns).
fn touch(pages: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..pages {
        // SAFETY: the caller has just mapped scratch pages 0..pages; a volatile read through a
        // raw pointer, no reference is made.
        sum = sum.wrapping_add(unsafe { core::ptr::read_volatile(scratch_va(i) as *const u64) });
    }
    sum
}

/// A new batch for `variant` (one request per call when its batch size is 1).
fn batch_for(variant: Variant) -> Result<Batch, PtError> {
    pt::batch(match variant.batch {
        1 => Mode::PerUpdate,
        n => Mode::Batched(n),
    })
}

/// The check round of `variant` on scratch pages 0..pages.
fn check(s: &Scratch, pages: usize, variant: Variant) -> Result<(), Error> {
    let mut batch = batch_for(variant)?;
    pass(s, pages, variant, &mut batch, true)?;
    let mut wrong_contents = 0;
    for i in 0..pages {
        // SAFETY: scratch page i is mapped (the pass above succeeded) to a frame this module
        // owns; a volatile read through a raw pointer.
        let v = unsafe { core::ptr::read_volatile(scratch_va(i) as *const u64) };
        wrong_contents += usize::from(v != MARK | i as u64);
    }
    pass(s, pages, variant, &mut batch, false)?;
    let l4 = mm::kernel_l4();
    let still_mapped = (0..pages)
        .filter(|&i| pt::lookup(l4, scratch_va(i)).is_ok_and(|e| e & PTE_P != 0))
        .count();
    flush_tlb()?;
    if wrong_contents != 0 || still_mapped != 0 {
        return Err(Error::Check {
            variant,
            pages,
            wrong_contents,
            still_mapped,
        });
    }
    Ok(())
}

/// What one timed round measured.
#[derive(Clone, Copy, Default)]
struct Round {
    /// TSC cycles per PTE update (map and unmap).
    cycles_per_pte: u64,
    /// TSC cycles per page of the touch pass.
    touch_per_page: u64,
    /// Hypercalls issued.
    hypercalls: u64,
    /// The hypervisor's counters over the round, if it has them.
    counters: Option<Counters>,
}

/// One timed round of `variant` on scratch pages 0..pages: map, touch, unmap; then the untimed
/// TLB flush that leaves the next round a cold TLB.
fn round(s: &Scratch, pages: usize, variant: Variant) -> Result<Round, PtError> {
    let mut batch = batch_for(variant)?;
    let before = perf_counters();
    let t0 = rdtsc();
    let mapped = pass(s, pages, variant, &mut batch, true)?;
    let t1 = rdtsc();
    core::hint::black_box(touch(pages));
    let t2 = rdtsc();
    let unmapped = pass(s, pages, variant, &mut batch, false)?;
    let t3 = rdtsc();
    let after = perf_counters();
    flush_tlb()?;
    let counters = before.zip(after).map(|(b, a)| {
        let mut d = a.since(&b);
        // The second reading is a hypercall too, counted before it reads.
        d.hypercalls = d.hypercalls.wrapping_sub(1);
        d
    });
    Ok(Round {
        cycles_per_pte: (t1.wrapping_sub(t0) + t3.wrapping_sub(t2)) / (2 * pages as u64),
        touch_per_page: t2.wrapping_sub(t1) / pages as u64,
        hypercalls: mapped + unmapped,
        counters,
    })
}

/// The most variants one run has: every batch size of the two batched kinds, and the two
/// per-page kinds.
const MAX_VARIANTS: usize = 2 * MAX_ITEMS + 2;

/// Per-variant samples of one N, kept out of the kernel's small stack.
struct Samples {
    cycles: [[u64; MAX_REPS]; MAX_VARIANTS],
    touch: [[u64; MAX_REPS]; MAX_VARIANTS],
    last: [Round; MAX_VARIANTS],
}

static mut SAMPLES: Samples = Samples {
    cycles: [[0; MAX_REPS]; MAX_VARIANTS],
    touch: [[0; MAX_REPS]; MAX_VARIANTS],
    last: [Round {
        cycles_per_pte: 0,
        touch_per_page: 0,
        hypercalls: 0,
        counters: None,
    }; MAX_VARIANTS],
};

/// Checks every variant on scratch pages 0..pages, then times `params.reps` rounds of each.
///
/// The rounds are interleaved (round 1 of every variant, then round 2 of every variant, ...):
/// under emulation without `-icount` the host's speed drifts, and interleaving spreads a slow
/// spell over all variants instead of penalising the one that happened to run then, so ratios
/// between variants hold even when absolute figures move.
fn measure(
    s: &Scratch,
    pages: usize,
    params: &Params,
    report: &mut impl FnMut(&Figures),
) -> Result<(), Error> {
    let mut variants = [Variant {
        kind: Kind::MmuUpdate,
        batch: 1,
    }; MAX_VARIANTS];
    let mut count = 0;
    for v in params.variants().take(MAX_VARIANTS) {
        variants[count] = v;
        count += 1;
    }
    let variants = &variants[..count];
    for &v in variants {
        check(s, pages, v)?;
    }
    let samples = &raw mut SAMPLES;
    // SAFETY: the samples are used by this function only, and the kernel is single-threaded.
    let samples = unsafe { &mut *samples };
    let reps = params.reps.clamp(1, MAX_REPS);
    for r in 0..reps {
        for (k, &v) in variants.iter().enumerate() {
            let round = round(s, pages, v)?;
            samples.cycles[k][r] = round.cycles_per_pte;
            samples.touch[k][r] = round.touch_per_page;
            samples.last[k] = round;
        }
    }
    for (k, &variant) in variants.iter().enumerate() {
        report(&Figures {
            variant,
            pages,
            reps,
            cycles_per_pte: median_min_max(&mut samples.cycles[k][..reps]),
            touch_cycles_per_page: median_min_max(&mut samples.touch[k][..reps]).0,
            hypercalls: samples.last[k].hypercalls,
            counters: samples.last[k].counters,
        });
    }
    Ok(())
}

/// Reads the hypervisor's performance counters (`sysctl(XEN_SYSCTL_perfc_op)`), if it has them:
/// ours always does; Debian's Xen, built without `CONFIG_PERF_COUNTERS`, refuses.
pub fn perf_counters() -> Option<Counters> {
    use hypercall_abi::sysctl::*;
    use zerocopy::{FromBytes, IntoBytes};
    const MAX: usize = 32;
    let mut descs = [XenSysctlPerfcDesc::default(); MAX];
    let mut vals = [0u32; MAX];
    let op = XenSysctlPerfcOp {
        cmd: XEN_SYSCTL_PERFCOP_query,
        desc: descs.as_mut_ptr() as u64,
        val: vals.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut sc = XenSysctl {
        cmd: XEN_SYSCTL_perfc_op,
        ..Default::default()
    };
    sc.u[..32].copy_from_slice(op.as_bytes());
    if hypercall::sysctl(&mut sc) != 0 {
        return None;
    }
    let (back, _) = XenSysctlPerfcOp::read_from_prefix(&sc.u).ok()?;
    if back.nr_counters as usize > MAX || back.nr_vals != back.nr_counters {
        return None; // several values per counter (per-CPU): not what we read here
    }
    let mut c = Counters::default();
    for (d, v) in descs.iter().zip(vals).take(back.nr_counters as usize) {
        let name = d.name.split(|&b| b == 0).next().unwrap_or(&[]);
        c.set(name, v);
    }
    Some(c)
}

/// Unlinks the scratch range's tables (with any mapping a failed variant left), frees them and
/// the frames.
fn teardown(s: &mut Scratch) -> Result<(), Error> {
    let l4 = mm::kernel_l4();
    let mut first: Result<(), PtError> = Ok(());
    if let Ok(e) = pt::read_entry(l4, SCRATCH_SLOT) {
        if e & PTE_P != 0 {
            first = pt::set_entry("mmu_update(unlink scratch L3)", l4, SCRATCH_SLOT, 0)
                .and_then(|()| pt::free_subtree(Mfn(entry_frame(e)), 3, false));
        }
    }
    for i in 0..s.pages {
        let freed = mm::pfn_of(s.frames[i])
            .ok_or(PtError::NotOurs(s.frames[i]))
            .and_then(|pfn| mm::free_frame(pfn).map_err(PtError::Free));
        if first.is_ok() {
            first = freed;
        }
    }
    s.pages = 0;
    first.map_err(Error::Pt)
}
