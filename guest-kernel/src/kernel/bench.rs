//! Micro-benchmarks the guest runs on request (`bench=<name>`), each printing `bench` lines.
//!
//! Figures are guest TSC cycles: under QEMU TCG without `-icount` the TSC is the host's, so they
//! are wall-clock and noisy; the harness reports medians and compares hypervisors in one run.
//!
//! - `null-hypercall`: `xen_version(XENVER_version)` round trips.
//! - `pt-update`: map and unmap `pages=N` pages (default 512) in the kernel's scratch range, one
//!   PTE per page, with `mmu_update` one update per call, in batches of 8, 64 and 512, and with
//!   `update_va_mapping` per page; cycles per PTE update (median of several repetitions) and
//!   hypercalls per map+unmap round.

use core::arch::x86_64::_rdtsc;
use core::fmt;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::layout::{direct_map_va, SCRATCH_BASE, SCRATCH_SLOT};
use guest_kernel::mmu_batch::{Mode, MAX_BATCH};
use guest_kernel::paging::{
    entry_frame, entry_maddr, index, make_entry, Mfn, Pfn, PAGE_SIZE, PTE_A, PTE_D, PTE_P, PTE_RW,
};
use hypercall_abi::version::XENVER_version;
use hypercall_abi::xen::{MMUEXT_TLB_FLUSH_LOCAL, UVMF_NONE};

use super::hypercall;
use super::mm;
use super::pt::{self, Batch, PtError};

/// Null-hypercall round trips to time.
const NULL_HYPERCALL_ITERATIONS: usize = 100_000;

static mut SAMPLES: [u32; NULL_HYPERCALL_ITERATIONS] = [0; NULL_HYPERCALL_ITERATIONS];

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; PV guests may use it (CR4.TSD is clear).
    unsafe { _rdtsc() }
}

/// Runs benchmark `name`; returns false if there is no such benchmark.
pub fn run(name: &str, cmdline: &Cmdline<'_>) -> bool {
    match name {
        "null-hypercall" => null_hypercall(),
        "pt-update" => pt_update(cmdline),
        _ => return false,
    }
    true
}

/// `xen_version(XENVER_version)`, the cheapest hypercall, timed one call at a time.
fn null_hypercall() {
    // SAFETY: the samples array is used by this function only, and the kernel is single-threaded.
    let samples = unsafe {
        core::slice::from_raw_parts_mut((&raw mut SAMPLES).cast::<u32>(), NULL_HYPERCALL_ITERATIONS)
    };
    for s in samples.iter_mut() {
        let t0 = rdtsc();
        let v = hypercall::xen_version::<u8>(XENVER_version, None);
        let t1 = rdtsc();
        core::hint::black_box(v);
        *s = t1.wrapping_sub(t0).min(u64::from(u32::MAX)) as u32;
    }
    samples.sort_unstable();
    let n = samples.len();
    println!(
        "bench null_hypercall iterations={n} median_cycles={} p10_cycles={} p90_cycles={}",
        samples[n / 2],
        samples[n / 10],
        samples[n * 9 / 10]
    );
}

/// Pages `pt-update` maps by default.
const PT_PAGES: usize = 512;
/// The most pages `pages=` may ask for.
const PT_MAX_PAGES: usize = 4096;
/// Timed repetitions per variant (the median is printed).
const PT_REPS: usize = 7;
/// Flags of a scratch mapping.
const PT_FLAGS: u64 = PTE_P | PTE_RW | PTE_A | PTE_D;
/// The first word of scratch frame i holds `PT_MARK | i`, to check the mappings.
const PT_MARK: u64 = 0x5054_0000_0000_0000;

/// One way of updating the PTEs.
#[derive(Clone, Copy)]
enum Variant {
    /// `mmu_update` through an [`Batch`] in this mode.
    MmuUpdate(Mode),
    /// `update_va_mapping`, one call per page.
    UpdateVaMapping,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::MmuUpdate(mode) => write!(f, "variant=mmu_update batch={}", mode.batch_size()),
            Variant::UpdateVaMapping => write!(f, "variant=update_va_mapping batch=1"),
        }
    }
}

const VARIANTS: [Variant; 5] = [
    Variant::MmuUpdate(Mode::PerUpdate),
    Variant::MmuUpdate(Mode::Batched(8)),
    Variant::MmuUpdate(Mode::Batched(64)),
    Variant::MmuUpdate(Mode::Batched(MAX_BATCH)),
    Variant::UpdateVaMapping,
];

/// The frames and PTE addresses of one run.
struct Scratch {
    pages: usize,
    frames: [Mfn; PT_MAX_PAGES],
    pfns: [Pfn; PT_MAX_PAGES],
    /// Machine address of the L1 entry of scratch page i.
    ptes: [u64; PT_MAX_PAGES],
}

static mut SCRATCH: Scratch = Scratch {
    pages: 0,
    frames: [Mfn(0); PT_MAX_PAGES],
    pfns: [Pfn(0); PT_MAX_PAGES],
    ptes: [0; PT_MAX_PAGES],
};

fn scratch_va(i: usize) -> u64 {
    SCRATCH_BASE + i as u64 * PAGE_SIZE
}

/// `bench=pt-update [pages=N]`.
fn pt_update(cmdline: &Cmdline<'_>) {
    let pages = match cmdline.get("pages").map(str::parse::<usize>) {
        None => PT_PAGES,
        Some(Ok(n)) if (1..=PT_MAX_PAGES).contains(&n) => n,
        Some(_) => {
            println!("bench pt_update failed: pages must be 1..={PT_MAX_PAGES}");
            return;
        }
    };
    let scratch = &raw mut SCRATCH;
    // SAFETY: the scratch record is used by this function only, and the kernel is
    // single-threaded.
    let s = unsafe { &mut *scratch };
    s.pages = 0;
    let free_before = mm::init_memory().map(|_| mm::free_frames());
    let result = pt_update_setup(s, pages).and_then(|()| {
        for v in VARIANTS {
            pt_update_variant(s, v)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        println!("bench pt_update failed: {e}");
    }
    if let Err(e) = pt_update_teardown(s) {
        println!("bench pt_update teardown failed: {e}");
    } else if let Ok(before) = free_before {
        let now = mm::free_frames();
        if now != before {
            println!(
                "bench pt_update teardown failed: {}",
                PtError::Leak { before, now }
            );
        }
    }
}

/// Takes the frames, marks them, and builds the scratch range's L3, L2 and L1s (untimed).
fn pt_update_setup(s: &mut Scratch, pages: usize) -> Result<(), PtError> {
    mm::init_memory()?;
    let l4 = mm::kernel_l4();
    if pt::read_entry(l4, SCRATCH_SLOT)? & PTE_P != 0 {
        return Err(PtError::Hypercall("scratch slot already in use", 0));
    }
    let mut l1 = Mfn(0);
    for i in 0..pages {
        let pfn = mm::alloc_frame().ok_or(PtError::OutOfFrames)?;
        s.pfns[i] = pfn;
        s.pages = i + 1;
        s.frames[i] = mm::mfn_of(pfn).ok_or(PtError::NoMfn(pfn))?;
        // SAFETY: the frame was just allocated and is mapped writable in the direct map.
        unsafe { core::ptr::write_volatile(direct_map_va(pfn) as *mut u64, PT_MARK | i as u64) };
        let va = scratch_va(i);
        if i == 0 || index(va, 1) == 0 {
            l1 = pt::ensure_l1(l4, va)?;
        }
        s.ptes[i] = entry_maddr(l1, index(va, 1));
    }
    Ok(())
}

/// Maps (`map`) or unmaps every scratch page with `variant`; the hypercalls it took.
fn pt_update_pass(
    s: &Scratch,
    variant: Variant,
    batch: &mut Batch,
    map: bool,
) -> Result<u64, PtError> {
    let pte = |i: usize| {
        if map {
            make_entry(s.frames[i].0, PT_FLAGS)
        } else {
            0
        }
    };
    match variant {
        Variant::MmuUpdate(_) => {
            let before = batch.hypercalls();
            for i in 0..s.pages {
                batch
                    .set_pte(s.ptes[i], pte(i))
                    .map_err(|e| PtError::Mmu("mmu_update", e))?;
            }
            batch.flush().map_err(|e| PtError::Mmu("mmu_update", e))?;
            Ok(batch.hypercalls() - before)
        }
        Variant::UpdateVaMapping => {
            for i in 0..s.pages {
                // SAFETY: scratch addresses are referenced by nothing but this benchmark, which
                // reads them only through raw pointers while they are mapped.
                let rc = unsafe { hypercall::update_va_mapping(scratch_va(i), pte(i), UVMF_NONE) };
                if rc != 0 {
                    return Err(PtError::Hypercall("update_va_mapping", rc));
                }
            }
            Ok(s.pages as u64)
        }
    }
}

/// Checks one map/unmap round of `variant` (untimed), then times `PT_REPS` rounds and prints the
/// variant's line.
fn pt_update_variant(s: &Scratch, variant: Variant) -> Result<(), PtError> {
    let mode = match variant {
        Variant::MmuUpdate(mode) => mode,
        Variant::UpdateVaMapping => Mode::PerUpdate,
    };
    let mut batch = pt::batch(mode)?;
    let flush = || pt::mmuext("mmuext_op(TLB_FLUSH_LOCAL)", MMUEXT_TLB_FLUSH_LOCAL, 0);

    // The check: every scratch page shows its frame's mark, and is gone after the unmap.
    pt_update_pass(s, variant, &mut batch, true)?;
    let mut wrong = 0;
    for i in 0..s.pages {
        // SAFETY: scratch page i is mapped (the pass above succeeded) to a frame this benchmark
        // owns; a volatile read through a raw pointer.
        let v = unsafe { core::ptr::read_volatile(scratch_va(i) as *const u64) };
        wrong += usize::from(v != PT_MARK | i as u64);
    }
    pt_update_pass(s, variant, &mut batch, false)?;
    let l4 = mm::kernel_l4();
    let left = (0..s.pages)
        .filter(|&i| pt::lookup(l4, scratch_va(i)).is_ok_and(|e| e & PTE_P != 0))
        .count();
    flush()?;
    if wrong != 0 || left != 0 {
        println!(
            "bench pt_update {variant} check_failed wrong_contents={wrong} still_mapped={left}"
        );
    }

    let mut samples = [0u64; PT_REPS];
    let mut hypercalls = 0;
    let mut counted = None;
    for sample in samples.iter_mut() {
        let before = perf_counters();
        let t0 = rdtsc();
        let mapped = pt_update_pass(s, variant, &mut batch, true)?;
        let unmapped = pt_update_pass(s, variant, &mut batch, false)?;
        let t1 = rdtsc();
        let after = perf_counters();
        flush()?;
        hypercalls = mapped + unmapped;
        counted = before.zip(after).map(|(b, a)| a.since(&b));
        *sample = t1.wrapping_sub(t0) / (2 * s.pages as u64);
    }
    samples.sort_unstable();
    let validations = OrNa(counted.map(|c| c.ptes_validated));
    let flushes = OrNa(counted.map(|c| c.tlb_flushes));
    println!(
        "bench pt_update {variant} pages={} cycles_per_pte={} hypercalls={hypercalls} \
         validations={validations} flushes={flushes}",
        s.pages,
        samples[PT_REPS / 2]
    );
    Ok(())
}

/// A counter, or `n/a` where the hypervisor has none.
struct OrNa(Option<u32>);

impl core::fmt::Display for OrNa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("n/a"),
        }
    }
}

/// The hypervisor's counters that the page-table benchmark reports.
#[derive(Clone, Copy, Default)]
struct Counters {
    ptes_validated: u32,
    tlb_flushes: u32,
}

impl Counters {
    fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            ptes_validated: self.ptes_validated.wrapping_sub(earlier.ptes_validated),
            tlb_flushes: self.tlb_flushes.wrapping_sub(earlier.tlb_flushes),
        }
    }
}

/// Reads the hypervisor's performance counters (`sysctl(XEN_SYSCTL_perfc_op)`), if it has them:
/// ours always does; Debian's Xen, built without `CONFIG_PERF_COUNTERS`, refuses.
fn perf_counters() -> Option<Counters> {
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
        match name {
            b"ptes_validated" => c.ptes_validated = v,
            b"tlb_flushes" => c.tlb_flushes = v,
            _ => {}
        }
    }
    Some(c)
}

/// Unmaps what is left, unlinks the scratch range's tables and frees them and the frames.
fn pt_update_teardown(s: &mut Scratch) -> Result<(), PtError> {
    let l4 = mm::kernel_l4();
    let mut first = Ok(());
    if let Ok(e) = pt::read_entry(l4, SCRATCH_SLOT) {
        if e & PTE_P != 0 {
            // Leftover mappings (a variant that failed halfway) go with their L1s.
            first = pt::set_entry("mmu_update(unlink scratch L3)", l4, SCRATCH_SLOT, 0)
                .and_then(|()| pt::free_subtree(Mfn(entry_frame(e)), 3, false));
        }
    }
    for i in 0..s.pages {
        if let Err(e) = mm::free_frame(s.pfns[i]) {
            if first.is_ok() {
                first = Err(PtError::Free(e));
            }
        }
    }
    s.pages = 0;
    first
}
