//! Hypercalls: calls into the stubs the hypervisor wrote into `hypercall_page`, plus typed wrappers.
//!
//! The x86-64 PV convention (`xen-abi.md`): number in RAX, arguments in RDI, RSI, RDX, R10, R8,
//! result in RAX (negative errno on failure). Xen's stub is `push %rcx; push %r11; mov $nr,%eax;
//! syscall; pop %r11; pop %rcx; ret`, so a stub call preserves RCX/R11 but we still treat every
//! argument register as clobbered: the hypervisor may update arguments (continuations).

use core::arch::asm;

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::sched::{SCHEDOP_shutdown, SchedShutdown};
use hypercall_abi::xen::{
    __HYPERVISOR_callback_op, __HYPERVISOR_console_io, __HYPERVISOR_event_channel_op,
    __HYPERVISOR_fpu_taskswitch, __HYPERVISOR_get_debugreg, __HYPERVISOR_memory_op,
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_multicall,
    __HYPERVISOR_physdev_op, __HYPERVISOR_sched_op, __HYPERVISOR_set_callbacks,
    __HYPERVISOR_set_segment_base, __HYPERVISOR_set_timer_op, __HYPERVISOR_set_trap_table,
    __HYPERVISOR_stack_switch, __HYPERVISOR_update_va_mapping, __HYPERVISOR_vcpu_op,
    __HYPERVISOR_vm_assist, __HYPERVISOR_xen_version, MmuUpdate, MmuextOp, MulticallEntry,
};

use super::boot::hypercall_page;

/// Number of 32-byte stubs in the hypercall page.
pub const STUBS: u32 = 4096 / 32;

/// Issues hypercall `nr` through its stub in the hypercall page.
///
/// # Safety
/// The arguments are handed to the hypervisor as they are: any pointer among them must be valid for
/// what hypercall `nr` does with it (read, or write) for the duration of the call. The hypervisor
/// validates guest pointers, so a wrong one gives -EFAULT, but memory it may write must not be
/// memory Rust assumes unchanged.
pub unsafe fn hypercall(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    assert!(
        nr < STUBS,
        "hypercall {nr} has no stub in the hypercall page"
    );
    let stub = (&raw const hypercall_page).cast::<u8>() as u64 + u64::from(nr) * 32;
    let ret: i64;
    // SAFETY: `stub` points into the hypercall page, which the hypervisor filled with stubs that
    // follow the convention above and return with `ret`. The caller vouches for the arguments.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Issues hypercall `nr` with a bare `syscall`, bypassing the hypercall page: used for numbers past
/// the page's 128 stubs (the "unknown hypercall number" conformance cases).
///
/// # Safety
/// As for [`hypercall`].
pub unsafe fn raw_syscall(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: a guest-kernel `syscall` enters the hypervisor's hypercall path; the hypervisor
    // clobbers RCX and R11 (the `syscall` return state), declared here. The caller vouches for the
    // arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// A pointer argument, as the hypervisor receives it.
pub fn ptr<T>(p: *const T) -> u64 {
    p as u64
}

/// `console_io(cmd, count, buf)`.
pub fn console_io(cmd: u32, buf: &mut [u8]) -> i64 {
    // SAFETY: `buf` is valid for reads and writes of `buf.len()` bytes for the call.
    unsafe {
        hypercall(
            __HYPERVISOR_console_io,
            cmd.into(),
            buf.len() as u64,
            ptr(buf.as_mut_ptr()),
            0,
            0,
        )
    }
}

/// `xen_version(cmd, arg)` with an argument buffer of any plain type.
pub fn xen_version<T>(cmd: u32, arg: Option<&mut T>) -> i64 {
    let p = arg.map_or(0, |a| ptr(a as *mut T));
    // SAFETY: `p` is null or a valid exclusive reference for the call; callers pick `T` at least
    // as large as what `cmd` writes (checked against `version.h` in hypercall-abi).
    unsafe { hypercall(__HYPERVISOR_xen_version, cmd.into(), p, 0, 0, 0) }
}

/// `sched_op(cmd, arg)`.
pub fn sched_op<T>(cmd: u32, arg: Option<&mut T>) -> i64 {
    let p = arg.map_or(0, |a| ptr(a as *mut T));
    // SAFETY: `p` is null or a valid exclusive reference for the call.
    unsafe { hypercall(__HYPERVISOR_sched_op, cmd.into(), p, 0, 0, 0) }
}

/// `memory_op(cmd, arg)`.
pub fn memory_op<T>(cmd: u32, arg: Option<&mut T>) -> i64 {
    let p = arg.map_or(0, |a| ptr(a as *mut T));
    // SAFETY: `p` is null or a valid exclusive reference for the call; structures that embed
    // guest handles are built by the caller from live buffers.
    unsafe { hypercall(__HYPERVISOR_memory_op, cmd.into(), p, 0, 0, 0) }
}

/// `event_channel_op(cmd, arg)`.
pub fn event_channel_op<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call.
    unsafe {
        hypercall(
            __HYPERVISOR_event_channel_op,
            cmd.into(),
            ptr(arg as *mut T),
            0,
            0,
            0,
        )
    }
}

/// `physdev_op(cmd, arg)` with an argument of any plain type.
pub fn physdev_op<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call; callers pick the `physdev.h`
    // struct that `cmd` reads and writes.
    unsafe {
        hypercall(
            __HYPERVISOR_physdev_op,
            cmd.into(),
            ptr(arg as *mut T),
            0,
            0,
            0,
        )
    }
}

/// `mmu_update(reqs, count, &done, foreigndom)`: returns (rc, done).
pub fn mmu_update(reqs: &[MmuUpdate], foreigndom: u16) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: `reqs` is readable and `done` writable for the call.
    let rc = unsafe {
        hypercall(
            __HYPERVISOR_mmu_update,
            ptr(reqs.as_ptr()),
            reqs.len() as u64,
            ptr(&raw mut done),
            foreigndom.into(),
            0,
        )
    };
    (rc, done)
}

/// `mmuext_op(ops, count, &done, foreigndom)`: returns (rc, done).
pub fn mmuext_op(ops: &[MmuextOp], foreigndom: u16) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: `ops` is readable and `done` writable for the call.
    let rc = unsafe {
        hypercall(
            __HYPERVISOR_mmuext_op,
            ptr(ops.as_ptr()),
            ops.len() as u64,
            ptr(&raw mut done),
            foreigndom.into(),
            0,
        )
    };
    (rc, done)
}

/// `update_va_mapping(va, pte, flags)`.
///
/// # Safety
/// Changing the mapping of `va` must not pull memory from under live Rust references.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> i64 {
    // SAFETY: no pointers are passed; the caller vouches for the mapping change.
    unsafe { hypercall(__HYPERVISOR_update_va_mapping, va, pte, flags, 0, 0) }
}

/// `multicall(entries, count)`; each entry's `result` is written back.
///
/// # Safety
/// Every entry must be a hypercall whose arguments are valid as for [`hypercall`].
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> i64 {
    // SAFETY: `entries` is readable and writable for the call; the caller vouches for each entry.
    unsafe {
        hypercall(
            __HYPERVISOR_multicall,
            ptr(entries.as_mut_ptr()),
            entries.len() as u64,
            0,
            0,
            0,
        )
    }
}

/// `set_trap_table(traps)`: registers the entries of `traps` up to the first with address 0 (the
/// caller includes that terminator). `None` clears the whole virtual IDT.
///
/// # Safety
/// Every non-zero `address` must be an entry point that copes with Xen's bounce frame (`traps.rs`):
/// from now on the hypervisor jumps there when the vector is raised.
pub unsafe fn set_trap_table(traps: Option<&[TrapInfo]>) -> i64 {
    if let Some(t) = traps {
        assert!(
            t.last().is_some_and(|e| e.address == 0),
            "a trap table ends with a zero-address entry"
        );
    }
    let p = traps.map_or(0, |t| ptr(t.as_ptr()));
    // SAFETY: `p` is null or a readable, terminated array; the caller vouches for the handlers.
    unsafe { hypercall(__HYPERVISOR_set_trap_table, p, 0, 0, 0, 0) }
}

/// `callback_op(cmd, arg)` (`callback.h`).
///
/// # Safety
/// A registered callback address must be an entry point that copes with what the hypervisor
/// pushes for that callback type (`traps.rs`), or a type the hypervisor never enters in this
/// kernel (failsafe after a bad segment reload; syscall from user mode unless `user.rs` runs a
/// program).
pub unsafe fn callback_op<T>(cmd: u32, arg: &T) -> i64 {
    // SAFETY: `arg` is readable for the call; the caller vouches for the address it names.
    unsafe {
        hypercall(
            __HYPERVISOR_callback_op,
            cmd.into(),
            ptr(arg as *const T),
            0,
            0,
            0,
        )
    }
}

/// `set_callbacks(event, failsafe, syscall)`: the pre-`callback_op` way to register all three.
///
/// # Safety
/// As for [`callback_op`], for each of the three addresses.
pub unsafe fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> i64 {
    // SAFETY: no pointers are dereferenced by the hypervisor; the caller vouches for the entries.
    unsafe { hypercall(__HYPERVISOR_set_callbacks, event, failsafe, syscall, 0, 0) }
}

/// `fpu_taskswitch(set)`: sets (1) or clears (0) the virtual CR0.TS; with TS set, the next FPU or
/// SSE instruction raises #NM.
pub fn fpu_taskswitch(set: bool) -> i64 {
    // SAFETY: no pointers; the kernel itself is built soft-float and never touches the FPU.
    unsafe { hypercall(__HYPERVISOR_fpu_taskswitch, set.into(), 0, 0, 0, 0) }
}

/// `set_timer_op(deadline)`: arms the vCPU's single-shot timer for an absolute system time in ns;
/// 0 cancels it. Expiry raises VIRQ_TIMER.
pub fn set_timer_op(deadline_ns: u64) -> i64 {
    // SAFETY: no pointers.
    unsafe { hypercall(__HYPERVISOR_set_timer_op, deadline_ns, 0, 0, 0, 0) }
}

/// `vcpu_op(cmd, vcpu, arg)` with an argument of any plain type (`vcpu.h`).
pub fn vcpu_op<T>(cmd: u32, vcpu: u32, arg: Option<&mut T>) -> i64 {
    let p = arg.map_or(0, |a| ptr(a as *mut T));
    // SAFETY: `p` is null or a valid exclusive reference for the call. The commands the suite uses
    // read or write only that structure (never VCPUOP_initialise with a live context).
    unsafe { hypercall(__HYPERVISOR_vcpu_op, cmd.into(), vcpu.into(), p, 0, 0) }
}

/// `set_segment_base(which, base)` (SEGBASE_*, `xen-x86_64.h`).
///
/// # Safety
/// The kernel must not rely on the segment base being changed (the Rust code never uses FS or GS).
pub unsafe fn set_segment_base(which: u32, base: u64) -> i64 {
    // SAFETY: no pointers; the caller vouches that nothing depends on the base.
    unsafe { hypercall(__HYPERVISOR_set_segment_base, which.into(), base, 0, 0, 0) }
}

/// `stack_switch(ss, sp)`: the kernel stack Xen switches to on a user-to-kernel transition.
pub fn stack_switch(ss: u64, sp: u64) -> i64 {
    // SAFETY: no pointers. The stack is used only on entries from user mode, and only `user.rs`
    // runs user mode, after registering a stack reserved for that.
    unsafe { hypercall(__HYPERVISOR_stack_switch, ss, sp, 0, 0, 0) }
}

/// `vm_assist(cmd, type)` (VMASST_*, `xen.h`).
pub fn vm_assist(cmd: u32, kind: u32) -> i64 {
    // SAFETY: no pointers; the assists the suite toggles change only how later faults and
    // page-table writes are handled, which the cases that toggle them expect.
    unsafe { hypercall(__HYPERVISOR_vm_assist, cmd.into(), kind.into(), 0, 0, 0) }
}

/// `get_debugreg(reg)`: the virtual debug register `reg` (a value, or a negative errno).
pub fn get_debugreg(reg: u32) -> i64 {
    // SAFETY: no pointers.
    unsafe { hypercall(__HYPERVISOR_get_debugreg, reg.into(), 0, 0, 0, 0) }
}

/// `set_debugreg(reg, value)`: sets virtual debug register `reg`.
pub fn set_debugreg(reg: u32, value: u64) -> i64 {
    // SAFETY: no pointers; a breakpoint only makes later accesses trap, which the caller expects.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_set_debugreg,
            reg.into(),
            value,
            0,
            0,
            0,
        )
    }
}

/// Shuts this domain down with `reason` (SHUTDOWN_*); never returns.
pub fn shutdown(reason: u32) -> ! {
    let mut arg = SchedShutdown { reason };
    loop {
        sched_op(SCHEDOP_shutdown, Some(&mut arg));
        // A shutdown that returned was refused; fall back to a crash, then spin.
        arg.reason = hypercall_abi::sched::SHUTDOWN_crash;
        core::hint::spin_loop();
    }
}

/// `sysctl(op)` (control domain only); the structure is read and written back.
pub fn sysctl(op: &mut hypercall_abi::sysctl::XenSysctl) -> i64 {
    // SAFETY: `op` is a valid exclusive reference for the call; the counter buffers it names were
    // built by the caller from live arrays of the sizes it declares.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_sysctl,
            ptr(op as *mut _),
            0,
            0,
            0,
            0,
        )
    }
}

/// `update_va_mapping_otherdomain(va, pte, flags, domid)`: like [`update_va_mapping`], with the
/// frame in `pte` owned by `domid` (a privileged domain mapping another domain's page).
///
/// # Safety
/// As for [`update_va_mapping`].
pub unsafe fn update_va_mapping_otherdomain(va: u64, pte: u64, flags: u64, domid: u16) -> i64 {
    // SAFETY: no pointers are passed; the caller vouches for the mapping change.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_update_va_mapping_otherdomain,
            va,
            pte,
            flags,
            domid.into(),
            0,
        )
    }
}

/// `grant_table_op(cmd, ops, ops.len())`; per-op statuses are written back into `ops`.
pub fn grant_table_op<T>(cmd: u32, ops: &mut [T]) -> i64 {
    // SAFETY: `ops` is a live exclusive buffer of `ops.len()` elements of the structure `cmd`
    // takes (the caller picks `T` accordingly); the hypervisor reads and writes only those. Frame
    // lists and copy addresses inside them are checked by the hypervisor.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_grant_table_op,
            cmd.into(),
            ptr(ops.as_mut_ptr()),
            ops.len() as u64,
            0,
            0,
        )
    }
}

/// `domctl(op)` (control domain only); the structure is read and written back.
pub fn domctl(op: &mut hypercall_abi::domctl::XenDomctl) -> i64 {
    // SAFETY: `op` is a valid exclusive reference for the call.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_domctl,
            ptr(op as *mut _),
            0,
            0,
            0,
            0,
        )
    }
}

/// `hvm_op(cmd, arg)`.
pub fn hvm_op(cmd: u64, arg: &mut hypercall_abi::hvm::XenHvmParam) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_hvm_op,
            cmd,
            ptr(arg as *mut _),
            0,
            0,
            0,
        )
    }
}
