//! Hypercalls: calls into the stubs the hypervisor wrote into `hypercall_page`, plus typed wrappers.
//!
//! The x86-64 PV convention (`xen-abi.md`): number in RAX, arguments in RDI, RSI, RDX, R10, R8,
//! result in RAX (negative errno on failure). Xen's stub is `push %rcx; push %r11; mov $nr,%eax;
//! syscall; pop %r11; pop %rcx; ret`, so a stub call preserves RCX/R11 but we still treat every
//! argument register as clobbered: the hypervisor may update arguments (continuations).

use core::arch::asm;

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::callback::CallbackOpArg;
use hypercall_abi::event_channel::EvtchnOpArg;
use hypercall_abi::grant_table::GnttabOpArg;
use hypercall_abi::hvm::HvmOpArg;
use hypercall_abi::memory::{MemoryNoArg, MemoryOpArg};
use hypercall_abi::physdev::PhysdevOpArg;
use hypercall_abi::sched::{SchedNoArg, SchedOpArg, SchedShutdown};
use hypercall_abi::vcpu::{VcpuNoArg, VcpuOpArg};
use hypercall_abi::version::{XenVersionArg, XenVersionNoArg};
use hypercall_abi::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_fpu_taskswitch, __HYPERVISOR_get_debugreg,
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_multicall,
    __HYPERVISOR_set_callbacks, __HYPERVISOR_set_segment_base, __HYPERVISOR_set_timer_op,
    __HYPERVISOR_set_trap_table, __HYPERVISOR_stack_switch, __HYPERVISOR_update_va_mapping,
    __HYPERVISOR_vm_assist, MmuUpdate, MmuextOp, MulticallEntry,
};

use super::boot::hypercall_page;

/// Number of 32-byte stubs in the hypercall page.
pub const STUBS: u32 = 4096 / 32;

/// What [`hypercall`] forgets of `time::arm_timeout`'s records before call `nr` (second argument
/// `a2`): out of line, so that the other calls pay only the three comparisons.
#[cold]
#[inline(never)]
fn forget_armed_for(nr: u32, a2: u64) {
    if nr == __HYPERVISOR_set_timer_op {
        super::time::forget_armed_of(super::smp::this_vcpu());
    } else if nr == hypercall_abi::xen::__HYPERVISOR_vcpu_op {
        super::time::forget_armed_of(a2 as u32);
    } else {
        super::time::forget_armed();
    }
}

/// Issues hypercall `nr` through its stub in the hypercall page.
///
/// # Safety
/// The arguments are handed to the hypervisor as they are: any pointer among them must be valid for
/// what hypercall `nr` does with it (read, or write) for the duration of the call. The hypervisor
/// validates guest pointers, so a wrong one gives -EFAULT, but memory it may write must not be
/// memory Rust assumes unchanged.
#[inline]
pub unsafe fn hypercall(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    assert!(
        nr < STUBS,
        "hypercall {nr} has no stub in the hypercall page"
    );
    // A call that may move a vCPU's single-shot timer: `time::arm_timeout` arms that one afresh.
    // `set_timer_op` is the caller's own timer; a `vcpu_op` names its vCPU (the second
    // argument); a multicall may hold anything.
    if nr == __HYPERVISOR_set_timer_op
        || nr == hypercall_abi::xen::__HYPERVISOR_vcpu_op
        || nr == __HYPERVISOR_multicall
    {
        forget_armed_for(nr, a2);
    }
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

/// `xen_version(A::CMD, arg)`: the command is the one `version.h` pairs with the buffer's type.
pub fn xen_version<A: XenVersionArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` fills.
    unsafe { raw::xen_version(A::CMD, ptr(arg as *mut A)) }
}

/// `xen_version(cmd, NULL)` for the commands that take no buffer.
#[inline]
pub fn xen_version_noarg(op: XenVersionNoArg) -> i64 {
    // SAFETY: a null argument, which these commands ignore.
    unsafe { raw::xen_version(op as u32, 0) }
}

/// `sched_op(A::CMD, arg)`: the command is the one `sched.h` pairs with the argument's type.
pub fn sched_op<A: SchedOpArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes.
    unsafe { raw::sched_op(A::CMD, ptr(arg as *mut A)) }
}

/// `sched_op(cmd, NULL)` for the commands that take no argument (yield, block).
pub fn sched_op_noarg(op: SchedNoArg) -> i64 {
    // SAFETY: a null argument, which these commands ignore.
    unsafe { raw::sched_op(op as u32, 0) }
}

/// `memory_op(A::CMD, arg)`: the command is the one `memory.h` pairs with the argument's type.
pub fn memory_op<A: MemoryOpArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes;
    // structures that embed guest handles are built by the caller from live buffers (the
    // hypervisor checks the addresses).
    unsafe { raw::memory_op(A::CMD, ptr(arg as *mut A)) }
}

/// `memory_op(cmd, NULL)` for the commands that take no argument.
pub fn memory_op_noarg(op: MemoryNoArg) -> i64 {
    // SAFETY: a null argument, which these commands ignore.
    unsafe { raw::memory_op(op as u32, 0) }
}

/// `event_channel_op(A::CMD, arg)`: the command is the one `event_channel.h` pairs with the
/// argument's type, so the hypervisor never writes past `arg`.
pub fn event_channel_op<A: EvtchnOpArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes.
    unsafe { raw::event_channel_op(A::CMD, ptr(arg as *mut A)) }
}

/// `physdev_op(A::CMD, arg)`: the command is the one `physdev.h` pairs with the argument's type.
pub fn physdev_op<A: PhysdevOpArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes.
    unsafe { raw::physdev_op(A::CMD, ptr(arg as *mut A)) }
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

/// `callback_op(A::CMD, arg)` (`callback.h`).
///
/// # Safety
/// A registered callback address must be an entry point that copes with what the hypervisor
/// pushes for that callback type (`traps.rs`), or a type the hypervisor never enters in this
/// kernel (failsafe after a bad segment reload; syscall from user mode unless `user/` runs a
/// program).
pub unsafe fn callback_op<A: CallbackOpArg>(arg: &A) -> i64 {
    // SAFETY: `arg` is readable for the call and of the type `A::CMD` reads; the caller vouches
    // for the address it names.
    unsafe { raw::callback_op(A::CMD, ptr(arg as *const A)) }
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

/// `vcpu_op(A::CMD, vcpu, arg)`: the command is the one `vcpu.h` pairs with the argument's type.
pub fn vcpu_op<A: VcpuOpArg>(vcpu: u32, arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes. No
    // paired command takes a live register context (VCPUOP_initialise is not paired); the areas
    // the register commands name are the caller's, checked by the hypervisor.
    unsafe { raw::vcpu_op(A::CMD, vcpu, ptr(arg as *mut A)) }
}

/// `vcpu_op(cmd, vcpu, NULL)` for the commands that take no argument.
pub fn vcpu_op_noarg(op: VcpuNoArg, vcpu: u32) -> i64 {
    // SAFETY: a null argument, which these commands ignore.
    unsafe { raw::vcpu_op(op as u32, vcpu, 0) }
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
    // SAFETY: no pointers. The stack is used only on entries from user mode, and only `user/`
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
        sched_op(&mut arg);
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

/// `grant_table_op(A::CMD, ops, ops.len())`; per-op statuses are written back into `ops`.
pub fn grant_table_op<A: GnttabOpArg>(ops: &mut [A]) -> i64 {
    // SAFETY: `ops` is a live exclusive buffer of `ops.len()` elements of the structure `A::CMD`
    // takes; the hypervisor reads and writes only those. Frame lists and copy addresses inside
    // them are checked by the hypervisor.
    unsafe { raw::grant_table_op(A::CMD, ptr(ops.as_mut_ptr()), ops.len() as u32) }
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

/// `hvm_op(A::CMD, arg)`: the command is the one `hvm_op.h` pairs with the argument's type.
pub fn hvm_op<A: HvmOpArg>(arg: &mut A) -> i64 {
    // SAFETY: `arg` is a valid exclusive reference for the call, of the type `A::CMD` takes.
    unsafe {
        hypercall(
            hypercall_abi::xen::__HYPERVISOR_hvm_op,
            A::CMD,
            ptr(arg as *mut A),
            0,
            0,
            0,
        )
    }
}

/// The multiplexed hypercalls with the command and the argument pointer unpaired: the escape hatch
/// for the conformance cases that pair them wrongly on purpose (an unknown command, a struct too
/// small, an unmapped pointer) to check the hypervisor's answer. Everything else uses the typed
/// wrappers above, where the argument's type picks the command.
pub mod raw {
    use super::hypercall;
    use hypercall_abi::xen::{
        __HYPERVISOR_callback_op, __HYPERVISOR_event_channel_op, __HYPERVISOR_grant_table_op,
        __HYPERVISOR_memory_op, __HYPERVISOR_physdev_op, __HYPERVISOR_sched_op,
        __HYPERVISOR_vcpu_op, __HYPERVISOR_xen_version,
    };

    /// `xen_version(cmd, arg)`.
    ///
    /// # Safety
    /// `arg` is 0, an address the hypervisor must refuse (unmapped, non-canonical), or points to
    /// memory valid for everything command `cmd` may write (`version.h`), which Rust must not
    /// assume unchanged across the call.
    #[inline]
    pub unsafe fn xen_version(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_xen_version, cmd.into(), arg, 0, 0, 0) }
    }

    /// `sched_op(cmd, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads and writes (`sched.h`); a shutdown command ends
    /// the domain.
    #[inline]
    pub unsafe fn sched_op(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_sched_op, cmd.into(), arg, 0, 0, 0) }
    }

    /// `memory_op(cmd, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads and writes (`memory.h`), including the buffers
    /// the argument's guest handles name.
    #[inline]
    pub unsafe fn memory_op(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_memory_op, cmd.into(), arg, 0, 0, 0) }
    }

    /// `event_channel_op(cmd, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads and writes (`event_channel.h`).
    #[inline]
    pub unsafe fn event_channel_op(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_event_channel_op, cmd.into(), arg, 0, 0, 0) }
    }

    /// `physdev_op(cmd, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads and writes (`physdev.h`).
    #[inline]
    pub unsafe fn physdev_op(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_physdev_op, cmd.into(), arg, 0, 0, 0) }
    }

    /// `vcpu_op(cmd, vcpu, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads and writes (`vcpu.h`); never
    /// `VCPUOP_initialise` with a context for a vCPU that would run Rust code.
    #[inline]
    pub unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_vcpu_op, cmd.into(), vcpu.into(), arg, 0, 0) }
    }

    /// `callback_op(cmd, arg)`.
    ///
    /// # Safety
    /// As for [`xen_version`], for what `cmd` reads (`callback.h`), and as for
    /// [`super::callback_op`] for any address it registers.
    #[inline]
    pub unsafe fn callback_op(cmd: u32, arg: u64) -> i64 {
        // SAFETY: the caller vouches for `arg` as above.
        unsafe { hypercall(__HYPERVISOR_callback_op, cmd.into(), arg, 0, 0, 0) }
    }

    /// `grant_table_op(cmd, uop, count)`.
    ///
    /// # Safety
    /// `uop` is an address the hypervisor must refuse, or points to `count` elements of what `cmd`
    /// reads and writes (`grant_table.h`), valid for the call; frames it maps or copies must not
    /// be memory Rust relies on.
    #[inline]
    pub unsafe fn grant_table_op(cmd: u32, uop: u64, count: u32) -> i64 {
        // SAFETY: the caller vouches for `uop` and `count` as above.
        unsafe {
            hypercall(
                __HYPERVISOR_grant_table_op,
                cmd.into(),
                uop,
                count.into(),
                0,
                0,
            )
        }
    }
}
