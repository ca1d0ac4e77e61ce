//! Single instructions run under a probe that several case groups share: control-register and
//! MSR reads (which a PV kernel cannot execute, so Xen emulates them), `ud2`, and a store that
//! rewrites a word with its own value.

use crate::kernel::traps::{probe, Probe};

/// `ud2`: the simplest fault, used to check that a trap table entry is live.
pub(super) fn ud2() -> Probe {
    // SAFETY: `ud2` always raises #UD; the armed handler resumes after it.
    unsafe { probe!("ud2") }
}

/// Reads control register `n` with `mov %crN` (emulated by Xen); the probe and the value.
pub(super) fn read_cr(n: u8) -> (Probe, Option<u64>) {
    let mut v: u64 = 0;
    // SAFETY: reading a control register has no side effect; at CPL 3 it traps and Xen emulates
    // it (or injects #GP, which the handler resumes from).
    let p = unsafe {
        match n {
            0 => probe!("mov %cr0, {v}", v = inout(reg) v),
            2 => probe!("mov %cr2, {v}", v = inout(reg) v),
            3 => probe!("mov %cr3, {v}", v = inout(reg) v),
            _ => unreachable!("read_cr({n})"),
        }
    };
    (p, p.trap.is_none().then_some(v))
}

/// Reads MSR `msr` with `rdmsr` (emulated by Xen for the MSRs it knows).
pub(super) fn rdmsr(msr: u32) -> (Probe, Option<u64>) {
    let (mut lo, mut hi): (u64, u64) = (0, 0);
    // SAFETY: reading an MSR has no side effect; Xen emulates it or injects #GP.
    let p = unsafe {
        probe!(
            "rdmsr",
            in("ecx") msr,
            inout("rax") lo,
            inout("rdx") hi
        )
    };
    (
        p,
        p.trap.is_none().then_some((hi << 32) | (lo & 0xffff_ffff)),
    )
}

/// Stores the value at `va` back to `va` (an 8-byte load, then the probed store).
pub(super) fn store_same(va: u64) -> Probe {
    // SAFETY: `va` is mapped (at least readable) and 8-byte aligned in every caller.
    let value = unsafe { core::ptr::read_volatile(va as *const u64) };
    // SAFETY: stores the value just read: if the store goes through, nothing changes.
    unsafe { probe!("mov {v}, ({a})", a = in(reg) va, v = in(reg) value) }
}
