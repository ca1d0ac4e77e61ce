//! Micro-benchmarks the guest runs on request (`bench=<name>`), each printing `bench` lines.
//!
//! Figures are guest TSC cycles: under QEMU TCG without `-icount` the TSC is the host's, so they
//! are wall-clock and noisy; the harness reports medians and compares hypervisors in one run.
//!
//! - `null-hypercall`: `xen_version(XENVER_version)` round trips.
//! - `pt-update`: map and unmap `pages=N` pages (default 512) in the kernel's scratch range, one
//!   PTE per page, with `mmu_update` one update per call, in batches of 8, 64 and 512, and with
//!   `update_va_mapping` per page; cycles per PTE update (median of several repetitions) and
//!   hypercalls per map+unmap round. The workload is the teaching lab's (`pt_workload.rs`,
//!   `lab=pt-batching`), with fewer variants by default; `batches=`, `variants=` and `reps=` work
//!   here too.

use guest_kernel::cmdline::Cmdline;
use guest_kernel::pt_lab::Params;

use super::pt_workload;
use crate::kernel::hypercall;
use crate::kernel::time::rdtsc;

/// Null-hypercall round trips to time.
const NULL_HYPERCALL_ITERATIONS: usize = 100_000;

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
    // On the heap (taken from the domain's free pages), not in the image: 400 KiB of `.bss` would
    // be paid by every domain, the 4 MiB domUs of `make bench --scale` too.
    let mut samples = alloc::vec![0u32; NULL_HYPERCALL_ITERATIONS];
    for s in samples.iter_mut() {
        let t0 = rdtsc();
        let v = hypercall::xen_version_noarg(hypercall_abi::version::XenVersionNoArg::Version);
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

/// `bench=pt-update [pages=N ...]`: the page-table workload with the benchmark's defaults
/// (`pt_lab::Params::bench_defaults`), one `bench pt_update` line per variant.
fn pt_update(cmdline: &Cmdline<'_>) {
    let params = match Params::bench_defaults().with_cmdline(cmdline) {
        Ok(p) => p,
        Err(e) => {
            println!("bench pt_update failed: {e}");
            return;
        }
    };
    if let Err(e) = pt_workload::run(&params, |f| println!("bench pt_update {f}")) {
        println!("bench pt_update failed: {e}");
    }
}
