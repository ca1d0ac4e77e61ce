//! Micro-benchmarks the guest runs on request (`bench=<name>`), each printing one `bench` line.
//!
//! Figures are guest TSC cycles: under QEMU TCG without `-icount` the TSC is the host's, so they
//! are wall-clock and noisy; the harness reports medians and compares hypervisors in one run.

use core::arch::x86_64::_rdtsc;

use hypercall_abi::version::XENVER_version;

use super::hypercall;

/// Null-hypercall round trips to time.
const NULL_HYPERCALL_ITERATIONS: usize = 100_000;

static mut SAMPLES: [u32; NULL_HYPERCALL_ITERATIONS] = [0; NULL_HYPERCALL_ITERATIONS];

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; PV guests may use it (CR4.TSD is clear).
    unsafe { _rdtsc() }
}

/// Runs benchmark `name`; returns false if there is no such benchmark.
pub fn run(name: &str) -> bool {
    match name {
        "null-hypercall" => null_hypercall(),
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
