//! `fuzz=<seed>,<count>`: a hostile domU. It makes `count` hypercalls with random numbers and
//! random arguments (small integers, addresses into a scratch page of random bytes, addresses
//! anywhere, the hypervisor's range), to show that whatever a guest passes, the hypervisor answers
//! with an errno (or crashes that guest alone) and every other domain runs on.
//!
//! `sched_op` and `iret` are always left out: they would end or stall the run rather than probe
//! argument checking (both are covered by their own cases). By default the calls that can wreck
//! the fuzzer's own ability to run are left out too (trap table, callbacks, kernel stack, segment
//! bases, debug registers, page tables, memory reservation, vCPU state, multicall, which could
//! nest any of them): the run then lasts for `count` calls. `fuzz-all=<seed>,<count>` includes
//! them, and usually ends with the hypervisor crashing the fuzzer, which is allowed. The scratch
//! page is refilled with random bytes before each call, so structure arguments read from it are
//! garbage of the right size.

use core::ptr;

use crate::kernel::hypercall as hc;

#[repr(C, align(4096))]
struct Page([u8; 8192]);

/// Random bytes the arguments point into.
static mut SCRATCH: Page = Page([0; 8192]);

/// xorshift64.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn scratch_va() -> u64 {
    (&raw mut SCRATCH) as u64
}

/// Hypercalls that can take away the fuzzer's own trap handling, stack, mappings or memory.
const SELF_WRECKING: [u32; 13] = {
    use hypercall_abi::xen::*;
    [
        __HYPERVISOR_set_trap_table,
        __HYPERVISOR_mmu_update,
        __HYPERVISOR_stack_switch,
        __HYPERVISOR_set_callbacks,
        __HYPERVISOR_memory_op,
        __HYPERVISOR_multicall,
        __HYPERVISOR_update_va_mapping,
        __HYPERVISOR_set_debugreg,
        __HYPERVISOR_vcpu_op,
        __HYPERVISOR_set_segment_base,
        __HYPERVISOR_mmuext_op,
        __HYPERVISOR_callback_op,
        __HYPERVISOR_fpu_taskswitch,
    ]
};

/// One random argument.
fn arg(x: &mut u64) -> u64 {
    let r = next(x);
    match r % 8 {
        0 => r >> 60,                               // 0..15: commands, counts
        1 => (r >> 32) & 0xffff,                    // ids, ports, refs
        2 | 3 => scratch_va() + ((r >> 20) % 8000), // into the scratch buffer
        4 => 0xffff_8000_0000_0000 | (r >> 20),     // the hypervisor's range
        5 => r & 0x0000_7fff_ffff_f000,             // anywhere in the lower half
        6 => u64::MAX - (r >> 58),                  // -1, -2, ... (DOMID_SELF and friends)
        _ => r,
    }
}

/// Runs the fuzzer (`all`: self-wrecking calls included); returns how many calls were made and
/// how many returned 0.
pub fn run(arg_text: &str, all: bool) -> Result<(u64, u64), &'static str> {
    let mut parts = arg_text.split(',');
    let seed: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("fuzz=<seed>,<count>")?;
    let count: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("fuzz=<seed>,<count>")?;
    let mut x = seed.max(1);
    let mut ok = 0;
    for i in 0..count {
        // SAFETY: the scratch page is ours and referenced only through raw pointers here; the
        // hypervisor may write into it (that is the point).
        unsafe {
            let p = (&raw mut SCRATCH).cast::<u64>();
            for w in 0..1024 {
                ptr::write_volatile(p.add(w), next(&mut x));
            }
        }
        let nr = loop {
            let n = (next(&mut x) % 42) as u32;
            if n != hypercall_abi::xen::__HYPERVISOR_sched_op
                && n != hypercall_abi::xen::__HYPERVISOR_iret
                && n != hypercall_abi::xen::__HYPERVISOR_sched_op_compat
                && (all || !SELF_WRECKING.contains(&n))
            {
                break n;
            }
        };
        let a = [
            arg(&mut x),
            arg(&mut x),
            arg(&mut x),
            arg(&mut x),
            arg(&mut x),
        ];
        // SAFETY: deliberately hostile arguments: the hypervisor must check every one. What it
        // may do to us (write into our memory through a pointer we gave, or crash us) is what
        // the test allows.
        let rc = unsafe { hc::hypercall(nr, a[0], a[1], a[2], a[3], a[4]) };
        if rc == 0 {
            ok += 1;
        }
        if i % 1000 == 999 {
            println!("fuzz: {} hypercalls made", i + 1);
        }
    }
    Ok((count, ok))
}
