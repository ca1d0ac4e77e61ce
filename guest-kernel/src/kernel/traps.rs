//! Exceptions and event upcalls: entry stubs, the virtual IDT, the `iret` return and the guards
//! that let the conformance suite survive a fault it did not expect.
//!
//! A PV guest has no IDT of its own. It hands Xen a *trap table* (`set_trap_table`, an array of
//! `trap_info` ended by an entry with address 0), and when a vector is raised Xen "bounces" to the
//! registered address with a frame it wrote on the guest kernel stack (`create_bounce_frame` in
//! Xen's `arch/x86/x86_64/entry.S`). From low to high addresses:
//!
//! ```text
//!   rcx, r11, [error code], rip, cs, rflags, rsp, ss
//! ```
//!
//! RCX and R11 come first because Xen returned to the guest with `sysret`, which clobbers them;
//! the handler pops them to get the interrupted values back, and is then left with the native
//! exception frame. In that frame `cs` has its RPL cleared (0xe030, "interrupted in kernel mode")
//! and bits 32..39 hold the `saved_upcall_mask`; `rflags.IF` is the inverse of that mask.
//!
//! There is no `iretq` to return either: the handler *jumps* (never calls) to the `iret` stub of
//! the hypercall page (number 23), which pushes RCX, R11 and RAX itself and issues the hypercall,
//! so the stack must hold the rest of `iret_context`: `flags, rip, cs, rflags, rsp, ss`
//! (Xen's `pv_ring3_init_hypercall_page` and `do_iret`). `flags` = 0 asks Xen to restore RCX and
//! R11 from the frame; `VGCF_in_syscall` would return with `sysret` semantics and lose them. Xen
//! restores the upcall mask from `rflags.IF` and forces RPL 3 on `cs`; a `cs` that already has
//! RPL 3 means "return to user mode" (Xen switches to the user L4 first, `user/`).
//!
//! Event upcalls (the event callback) arrive the same way, without an error code, and with
//! upcalls masked; so does a `syscall` made in user mode (the syscall callback, on the stack
//! registered with `stack_switch`). All entries share one path: save the registers into a
//! [`TrapFrame`], call [`trap_dispatch`] in Rust, restore, and return through the `iret` stub.
//! While a user program runs ([`UserMode::active`]), its system calls, its traps and the upcalls
//! that interrupt it go to the [`UserMode`] hook (`user/`), which may end it by aiming the frame
//! back at the kernel.
//!
//! **Probes and guards.** A case that wants to observe a fault arms a *recovery* address (the
//! [`probe!`] macro does it around one instruction); the handler records the trap in [`LAST`] and
//! resumes there. A trap nobody armed for is *unexpected*: if a [`guarded`] call is running, the
//! handler records it and resumes at that guard's exit, which unwinds (without destructors) to the
//! guard's caller; the suite prints the trap as the case's value and goes on.

use core::arch::global_asm;
use core::ffi::c_void;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Once;

use hypercall_abi::arch_x86_64::{CpuUserRegs, TrapInfo, FLAT_KERNEL_CS, FLAT_KERNEL_SS};
use hypercall_abi::callback::{CALLBACKTYPE_event, CallbackRegister};
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::SHUTDOWN_crash;
use hypercall_abi::xen::{__HYPERVISOR_iret, __HYPERVISOR_xen_version, VcpuInfo};

use super::boot::hypercall_page;
use super::hypercall as hc;
use super::{events, shared_info, smp};

/// Vector number the upcall entry reports (past the 256 hardware vectors).
pub const UPCALL: u64 = 256;
/// What [`trap_dispatch`] writes over an upcall's vector to have `trap_common` return without
/// `HYPERVISOR_iret` ([`direct_return`]).
const DIRECT_RETURN: u64 = 0x1_0000;
/// Vector number the failsafe entry reports.
pub const FAILSAFE: u64 = 257;
/// Vector number the syscall entry reports (a `syscall` made in user mode).
pub const SYSCALL: u64 = 258;

/// Software-interrupt vectors with an entry stub, for the `int $n` cases.
pub const SOFT_DPL3: u8 = 0x30;
/// A software-interrupt vector registered with DPL 0 by the `int $n` cases.
pub const SOFT_DPL0: u8 = 0x31;
/// The traditional system-call vector, for the `int $0x80` cases.
pub const INT80: u8 = 0x80;

/// `trap_info.flags` bit 2: mask event upcalls on entry, like an interrupt gate clears IF.
pub const TI_MASK_EVENTS: u8 = 1 << 2;

// The entry stubs. Vectors 8, 10-14, 17, 21, 29 and 30 push an error code; for the others the
// stub pushes a zero so that every frame has the same shape.
global_asm!(
    r#"
    .section .text.traps, "ax"

    .macro trap_entry vector, has_error_code
    .balign 16
    .global trap_entry_\vector
trap_entry_\vector:
    pop %rcx                /* the interrupted RCX and R11, saved by Xen's bounce frame */
    pop %r11
    .if \has_error_code == 0
    push $0
    .endif
    push $\vector
    jmp trap_common
    .endm

    .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,48,49,128
    trap_entry \v, 0
    .endr
    .irp v, 8,10,11,12,13,14,17,21,29,30
    trap_entry \v, 1
    .endr

    /* Event upcall: a bounce frame without error code. */
    .balign 16
    .global event_upcall_entry
event_upcall_entry:
    pop %rcx
    pop %r11
    push $0
    push ${upcall}
    jmp trap_common

    /* Failsafe callback: Xen could not reload a segment register on return; its frame holds
       DS, ES, FS, GS between R11 and RIP. Never expected: reported as an unexpected trap. */
    .balign 16
    .global failsafe_entry
failsafe_entry:
    pop %rcx
    pop %r11
    add $32, %rsp
    push $0
    push ${failsafe}
    jmp trap_common

    /* Syscall callback: a `syscall` in guest user mode. Xen switched to the kernel L4 and the
       stack_switch stack and wrote rcx, r11, rip, cs, rflags, rsp, ss there: the exception frame
       without error code, RCX/R11 holding the user's return RIP and RFLAGS. */
    .balign 16
    .global syscall_entry
syscall_entry:
    pop %rcx
    pop %r11
    push $0
    push ${syscall}
    jmp trap_common

    /* Stack: vector, error code, rip, cs, rflags, rsp, ss. Save the registers in TrapFrame
       order (Xen's cpu_user_regs order: R15 at the lowest address, RDI at the highest), call
       Rust on a 16-byte aligned stack, restore, return with HYPERVISOR_iret. */
trap_common:
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rax
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi          /* &mut TrapFrame */
    mov %rsp, %rbx          /* callee-saved: undoes the alignment below */
    and $-16, %rsp
    cld                     /* the Rust ABI wants DF clear; Xen's bounce does not clear it */
    call {dispatch}
    mov %rbx, %rsp
    cmpq ${direct}, 120(%rsp)  /* trap_dispatch chose the return without HYPERVISOR_iret */
    je upcall_direct_return
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rax
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    add $8, %rsp            /* drop the vector */
    movq $0, (%rsp)         /* the error-code slot becomes iret_context.flags = 0 */
    jmp {hypercall_page} + {iret_offset}

    /* The direct return from an upcall to guest kernel mode on the flat selectors with upcalls
       unmasked (trap_dispatch checked; it left this vCPU's vcpu_info address in the error-code
       slot). RSP points at the TrapFrame: GPRs at 0..112, vector 120, error code 128, then
       rip 136, cs 144, rflags 152, rsp 160, ss 168. A return block (RCX, RAX, RFLAGS, RIP)
       is built just below the interrupted RSP: Xen's bounce frame lies below it too, and each
       slot written there is read first (the frame is at least 48 bytes below the block's
       lowest slot where it matters: offsets 128 and below). */
upcall_direct_return:
    mov 160(%rsp), %rax     /* the interrupted RSP */
    mov 136(%rsp), %rcx
    mov %rcx, -8(%rax)      /* RIP, for the final ret */
    mov 152(%rsp), %rcx
    mov %rcx, -16(%rax)     /* RFLAGS, for popfq */
    mov 80(%rsp), %rcx
    mov %rcx, -24(%rax)     /* RAX */
    mov 88(%rsp), %rcx
    mov %rcx, -32(%rax)     /* RCX */
    mov 128(%rsp), %rcx     /* &vcpu_info */
    mov 0(%rsp), %r15
    mov 8(%rsp), %r14
    mov 16(%rsp), %r13
    mov 24(%rsp), %r12
    mov 32(%rsp), %rbp
    mov 40(%rsp), %rbx
    mov 48(%rsp), %r11
    mov 56(%rsp), %r10
    mov 64(%rsp), %r9
    mov 72(%rsp), %r8
    mov 96(%rsp), %rdx
    mov 104(%rsp), %rsi
    mov 112(%rsp), %rdi
    lea -32(%rax), %rsp     /* from here on nothing below RSP is needed: an upcall may come */
    movb $0, {mask}(%rcx)   /* what Xen's iret does for a frame with IF set: unmask */
    cmpb $0, {pending}(%rcx)
    jne 3f
2:  pop %rcx
    pop %rax
    popfq                   /* ring 3: IF and IOPL are not touched (trap_dispatch checked) */
    ret
    /* An event came while upcalls were masked: enter the hypervisor, which delivers it on the
       way out (Linux's xen_force_evtchn_callback: xen_version(0, NULL)), then return. */
3:  push %rdi
    push %rsi
    push %r11
    xor %edi, %edi
    xor %esi, %esi
    call {hypercall_page} + {xen_version_offset}
    pop %r11
    pop %rsi
    pop %rdi
    jmp 2b

    /* The table of stubs, as (vector, address) pairs, read by Rust to build trap tables. */
    .section .rodata.trap_entries, "a"
    .balign 8
    .global trap_entries
trap_entries:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,48,49,128
    .quad \v, trap_entry_\v
    .endr
    .global trap_entries_end
trap_entries_end:
    "#,
    upcall = const UPCALL,
    failsafe = const FAILSAFE,
    syscall = const SYSCALL,
    dispatch = sym trap_dispatch,
    hypercall_page = sym hypercall_page,
    iret_offset = const __HYPERVISOR_iret * 32,
    xen_version_offset = const __HYPERVISOR_xen_version * 32,
    direct = const DIRECT_RETURN,
    mask = const core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask),
    pending = const core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending),
    options(att_syntax)
);

/// The asm that saves a Rust caller's callee-saved registers (System V: RBP, RBX, R12-R15) on
/// the stack, for code that leaves through another door (`guarded_call` here, `enter_user` in
/// `user/`); [`pop_callee_saved!`] restores them.
macro_rules! push_callee_saved {
    () => {
        "push %rbp\n push %rbx\n push %r12\n push %r13\n push %r14\n push %r15"
    };
}

/// Restores what [`push_callee_saved!`] saved (AT&T syntax).
macro_rules! pop_callee_saved {
    () => {
        "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbx\n pop %rbp"
    };
}

pub(crate) use {pop_callee_saved, push_callee_saved};

// The guard: `guarded_call(f, ctx)` saves the callee-saved registers and the previous guard on
// its own stack, records its stack pointer in CURRENT_GUARD and calls `f(ctx)`. It returns 0 when
// `f` returns; when the trap handler aborts `f`, it resumes at `guard_abort` with RSP = that
// recorded value, and the call returns 1 with the caller's registers restored.
global_asm!(
    r#"
    .section .text.traps, "ax"
    .global guarded_call
guarded_call:
    "#,
    push_callee_saved!(),
    r#"
    push {current}(%rip)    /* the enclosing guard, if any */
    mov %rsp, {current}(%rip)
    mov %rdi, %rax
    mov %rsi, %rdi
    call *%rax              /* 7 pushes + return address: RSP is 16-byte aligned here */
    xor %eax, %eax
2:  pop {current}(%rip)
    "#,
    pop_callee_saved!(),
    r#"
    ret

    .global guard_abort
guard_abort:
    mov $1, %eax
    jmp 2b
    "#,
    current = sym CURRENT_GUARD,
    options(att_syntax)
);

extern "C" {
    /// Entry point registered as the event callback.
    fn event_upcall_entry();
    /// Entry point registered as the failsafe callback.
    fn failsafe_entry();
    /// Entry point registered as the syscall callback.
    fn syscall_entry();
    /// Where an aborted guarded call resumes (never called).
    fn guard_abort();
    /// Runs `f(ctx)` under a guard; 0 if `f` returned, 1 if the trap handler aborted it.
    fn guarded_call(f: extern "C" fn(*mut c_void), ctx: *mut c_void) -> u64;
    /// (vector, entry address) pairs of every stub, from the asm above.
    static trap_entries: [[u64; 2]; 35];
}

/// The registers and bounce frame of an interrupted context, as `trap_common` saved them: the
/// general registers in the order of Xen's `cpu_user_regs` (checked against
/// [`CpuUserRegs`] below), then the vector and error code the stub pushed, then the frame Xen
/// bounced (which is the tail of a `cpu_user_regs`, error code and vector apart).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Vector (or [`UPCALL`] / [`FAILSAFE`]), pushed by the stub.
    pub vector: u64,
    /// Error code from Xen, or 0 pushed by the stub; becomes `iret_context.flags` on return.
    pub error_code: u64,
    pub rip: u64,
    /// CS in bits 0..15, `saved_upcall_mask` in bits 32..39.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The general registers sit where Xen's `cpu_user_regs` has them.
macro_rules! same_offsets {
    ($($reg:ident),*) => {
        $(const _: () = assert!(
            core::mem::offset_of!(TrapFrame, $reg) == core::mem::offset_of!(CpuUserRegs, $reg)
        );)*
    };
}
same_offsets!(r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi);

/// Vectors whose bounce frame carries an error code (as in the stub list above).
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// The entry stub of `vector`, if there is one.
pub fn entry_address(vector: u8) -> Option<u64> {
    // SAFETY: `trap_entries` is an immutable table in .rodata, defined by the asm above.
    let table = unsafe { &trap_entries };
    table
        .iter()
        .find(|pair| pair[0] == u64::from(vector))
        .map(|pair| pair[1])
}

/// A trap as the handler saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    pub vector: u64,
    /// The error code, for vectors that have one.
    pub error_code: Option<u64>,
    /// `vcpu_info.arch.cr2` at entry, for page faults (if shared_info is mapped).
    pub cr2: Option<u64>,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
}

impl fmt::Display for Trap {
    /// `vector=14 error=0x2`: the hypervisor-independent part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vector={}", self.vector)?;
        match self.error_code {
            Some(e) => write!(f, " error={e:#x}"),
            None => write!(f, " error=none"),
        }
    }
}

/// A [`Trap`] kept in atomics, because the handler writes it while the interrupted code may be
/// about to read it.
struct TrapSlot {
    present: AtomicBool,
    vector: AtomicU64,
    error_code: AtomicU64,
    has_error_code: AtomicBool,
    cr2: AtomicU64,
    has_cr2: AtomicBool,
    rip: AtomicU64,
    cs: AtomicU64,
    rflags: AtomicU64,
}

impl TrapSlot {
    const fn new() -> TrapSlot {
        TrapSlot {
            present: AtomicBool::new(false),
            vector: AtomicU64::new(0),
            error_code: AtomicU64::new(0),
            has_error_code: AtomicBool::new(false),
            cr2: AtomicU64::new(0),
            has_cr2: AtomicBool::new(false),
            rip: AtomicU64::new(0),
            cs: AtomicU64::new(0),
            rflags: AtomicU64::new(0),
        }
    }

    fn put(&self, t: &Trap) {
        let r = Ordering::Relaxed;
        self.vector.store(t.vector, r);
        self.error_code.store(t.error_code.unwrap_or(0), r);
        self.has_error_code.store(t.error_code.is_some(), r);
        self.cr2.store(t.cr2.unwrap_or(0), r);
        self.has_cr2.store(t.cr2.is_some(), r);
        self.rip.store(t.rip, r);
        self.cs.store(t.cs, r);
        self.rflags.store(t.rflags, r);
        self.present.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Trap> {
        if !self.present.swap(false, Ordering::Acquire) {
            return None;
        }
        let r = Ordering::Relaxed;
        Some(Trap {
            vector: self.vector.load(r),
            error_code: self.has_error_code.load(r).then(|| self.error_code.load(r)),
            cr2: self.has_cr2.load(r).then(|| self.cr2.load(r)),
            rip: self.rip.load(r),
            cs: self.cs.load(r),
            rflags: self.rflags.load(r),
        })
    }
}

/// The last trap taken at an armed recovery point ([`take_last`]).
static LAST: TrapSlot = TrapSlot::new();
/// The last unexpected trap that aborted a guarded call ([`guarded`]).
static UNEXPECTED: TrapSlot = TrapSlot::new();

/// Where the next trap resumes (0: not armed). Written by [`probe!`], cleared by the
/// handler when it uses it.
pub static RECOVERY: AtomicU64 = AtomicU64::new(0);

/// Stack pointer of the innermost running `guarded_call` (0: none). Written by the asm.
static CURRENT_GUARD: AtomicU64 = AtomicU64::new(0);

/// Handlers running now on each vCPU: more than one on a vCPU means its trap handler itself
/// trapped. (Recovery points and guards are vCPU 0's: only the suites, which run there, arm
/// them.)
static DEPTH: [AtomicU32; smp::MAX_VCPUS] = [const { AtomicU32::new(0) }; smp::MAX_VCPUS];

/// RFLAGS.TF: single-step.
const RFLAGS_TF: u64 = 1 << 8;

/// The kernel side of a user program (`user/`): while one runs ([`UserMode::active`]), the
/// dispatcher hands it the program's system calls, its traps and the upcalls that interrupt it,
/// and it may end the program by aiming the frame back at the kernel. Installed once with
/// [`set_user_mode`]; until then a system call returns -ENOSYS. (A hook, so that the kernel does
/// not import the program that runs on it.)
pub trait UserMode: Sync {
    /// Whether a user program is running.
    fn active(&self) -> bool;
    /// A `syscall` made in user mode (RAX = number; the handler sets RAX to the result).
    fn syscall(&self, frame: &mut TrapFrame);
    /// An exception while the program runs (from either mode).
    fn trap(&self, frame: &mut TrapFrame, trap: Trap);
    /// After an event upcall has been handled (the watchdog's chance to end the program).
    fn after_upcall(&self, frame: &mut TrapFrame);
}

static USER_MODE: Once<&'static dyn UserMode> = Once::new();

/// Routes user-mode entries to `user` from now on (the first call wins).
pub fn set_user_mode(user: &'static dyn UserMode) {
    USER_MODE.call_once(|| user);
}

/// Called by `trap_common` for every exception and upcall.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    // The handler runs on the stack it interrupted, so this is the vCPU that trapped.
    let depth = &DEPTH[smp::this_vcpu() as usize];
    if depth.fetch_add(1, Ordering::SeqCst) != 0 {
        println!(
            "guest-kernel: trap vector={} inside the trap handler (rip={:#x}); giving up",
            frame.vector, frame.rip
        );
        hc::shutdown(SHUTDOWN_crash);
    }
    match frame.vector {
        UPCALL => {
            events::upcall();
            if let Some(user) = USER_MODE.get() {
                user.after_upcall(frame);
            }
            direct_return(frame);
        }
        SYSCALL => match USER_MODE.get() {
            Some(user) => user.syscall(frame),
            None => frame.rax = Errno::ENOSYS.neg() as u64,
        },
        _ => exception(frame),
    }
    depth.fetch_sub(1, Ordering::SeqCst);
}

/// RFLAGS bits a direct return cannot restore from ring 3 (`popfq` leaves IF and IOPL alone)
/// or that need `iret` (TF: a single step; NT).
const RFLAGS_NEEDS_IRET: u64 = RFLAGS_TF | (3 << 12) | (1 << 14);
/// RFLAGS.IF: in a bounce frame, upcalls were unmasked when the vCPU was interrupted.
const RFLAGS_IF: u64 = 1 << 9;

/// Whether the upcall in `frame` may return without `HYPERVISOR_iret`, and if so marks the frame
/// for `trap_common`'s direct return. Xen's `iret` back to kernel mode on the same flat selectors
/// with IF set does three things: it loads RIP, RSP, RFLAGS and the registers, and it clears the
/// upcall mask (then delivers an event that came meanwhile). All of that can be done in guest
/// kernel mode, which runs in ring 3 like the interrupted code, and Linux's 32-bit PV kernels
/// do it (`xen_iret`'s fast path): `trap_common` writes RIP and RFLAGS below the interrupted
/// stack pointer, unmasks, enters the hypervisor only if an event is pending, and returns with
/// `popfq; ret`. Anything else (a return to user mode, other selectors, IF clear, TF, NT or an
/// IOPL in the frame, no `vcpu_info`) takes `HYPERVISOR_iret` as before.
fn direct_return(frame: &mut TrapFrame) {
    let kernel_cs = u64::from(FLAT_KERNEL_CS & !3);
    if frame.cs & 0xffff != kernel_cs
        || frame.ss != u64::from(FLAT_KERNEL_SS)
        || frame.rflags & RFLAGS_IF == 0
        || frame.rflags & RFLAGS_NEEDS_IRET != 0
        || !DIRECT_RETURNS.load(Ordering::Relaxed)
    {
        return;
    }
    let Some(v) = shared_info::this() else {
        return;
    };
    frame.vector = DIRECT_RETURN;
    frame.error_code = v as u64;
}

/// Whether upcalls may return without `HYPERVISOR_iret` ([`direct_return`]; `upcall-iret` on
/// the command line turns it off, to compare).
static DIRECT_RETURNS: AtomicBool = AtomicBool::new(true);

/// Makes every upcall return through `HYPERVISOR_iret` (`upcall-iret` on the command line).
pub fn force_upcall_iret() {
    DIRECT_RETURNS.store(false, Ordering::Relaxed);
}

fn exception(frame: &mut TrapFrame) {
    let trap = Trap {
        vector: frame.vector,
        error_code: has_error_code(frame.vector).then_some(frame.error_code),
        cr2: if frame.vector == 14 {
            shared_info::cr2()
        } else {
            None
        },
        rip: frame.rip,
        cs: frame.cs,
        rflags: frame.rflags,
    };
    // A trap while a user program runs ends the program, whatever mode it came from.
    if let Some(user) = USER_MODE.get().filter(|u| u.active()) {
        user.trap(frame, trap);
        return;
    }
    // A single-step trap leaves TF set in the frame: clear it, or the return would step again.
    if frame.vector == 1 {
        frame.rflags &= !RFLAGS_TF;
    }
    let recovery = RECOVERY.swap(0, Ordering::SeqCst);
    if recovery != 0 && frame.vector != FAILSAFE {
        LAST.put(&trap);
        frame.rip = recovery;
        // A recovery point is kernel code: resume there in kernel mode on the flat selectors,
        // whatever the trapped frame held (an `iret` to a bad selector traps with that selector
        // in the frame, and returning to it would trap again).
        frame.cs = (frame.cs & !0xffff) | u64::from(FLAT_KERNEL_CS & !3);
        frame.ss = u64::from(FLAT_KERNEL_SS);
        return;
    }
    let guard = CURRENT_GUARD.load(Ordering::SeqCst);
    if guard != 0 {
        UNEXPECTED.put(&trap);
        frame.rip = guard_abort as *const () as u64;
        frame.rsp = guard;
        return;
    }
    println!(
        "guest-kernel: unexpected trap {trap} rip={:#x} cr2={:#x} rsp={:#x} outside any case; \
         giving up",
        frame.rip,
        super::shared_info::cr2().unwrap_or(0),
        frame.rsp
    );
    hc::shutdown(SHUTDOWN_crash);
}

/// Calls `HYPERVISOR_iret` with a frame that returns to kernel mode just after the call, with
/// code selector `cs` and stack selector `ss` (the hypervisor forces RPL 3 on both). With
/// selectors the CPU refuses (the hypervisor's CS 0xe008, a null SS), the hypervisor's own
/// `iretq` faults; Xen delivers that fault to the guest (#GP with the selector as error code)
/// at the frame it asked for. Returns the trap taken, if any, and whether it was taken at the
/// requested return address.
pub fn iret_with_selectors(cs: u64, ss: u64) -> (Option<Trap>, bool) {
    let target: u64;
    // SAFETY: the frame returns to label 3 on the stack pointer the block started with, so the
    // code after the block runs as if it had fallen through; a trap there resumes at the same
    // label (RECOVERY) in kernel mode on the flat selectors (`exception`). Every register the
    // iret context carries (RAX, RCX, R11) is declared clobbered.
    unsafe {
        core::arch::asm!(
            "lea 3f(%rip), {target}",
            "mov {target}, {recovery}(%rip)",
            "mov %rsp, {sp}",
            "push {ss}",
            "push {sp}",
            "pushfq",
            "push {cs}",
            "push {target}",
            "pushq $0",
            "jmp {hypercall_page}+{iret_offset}",
            "3:",
            target = out(reg) target,
            sp = out(reg) _,
            cs = in(reg) cs,
            ss = in(reg) ss,
            recovery = sym RECOVERY,
            hypercall_page = sym hypercall_page,
            iret_offset = const __HYPERVISOR_iret * 32,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        );
    }
    disarm();
    let trap = take_last();
    let at_target = trap.is_some_and(|t| t.rip == target);
    (trap, at_target)
}

/// Calls `HYPERVISOR_iret` with a frame that returns to kernel mode just after the call, on the
/// flat kernel selectors, with the current RFLAGS (IF clear) plus `set_bits` (the case's IOPL, say).
/// With IF clear the return leaves upcalls masked; the caller's mask is put back afterwards. Xen's
/// `do_iret` takes the virtual IOPL from the frame when `VMASST_TYPE_architectural_iopl` is on.
pub fn iret_with_rflags(set_bits: u64) {
    let mask = super::shared_info::upcall_mask();
    // SAFETY: as in `iret_with_selectors`: the frame returns to label 3 on the stack pointer the
    // block started with, on the kernel's own selectors; RAX, RCX and R11 are clobbered.
    unsafe {
        core::arch::asm!(
            "lea 3f(%rip), {target}",
            "mov %rsp, {sp}",
            "pushq ${ss}",
            "push {sp}",
            "pushfq",
            "andq $~0x200, (%rsp)",
            "or {bits}, (%rsp)",
            "pushq ${cs}",
            "push {target}",
            "pushq $0",
            "jmp {hypercall_page}+{iret_offset}",
            "3:",
            target = out(reg) _,
            sp = out(reg) _,
            bits = in(reg) set_bits,
            ss = const FLAT_KERNEL_SS,
            cs = const FLAT_KERNEL_CS & !3,
            hypercall_page = sym hypercall_page,
            iret_offset = const __HYPERVISOR_iret * 32,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(att_syntax)
        );
    }
    if let Some(m) = mask {
        super::shared_info::set_upcall_mask(m);
    }
}

/// The trap recorded at the last armed recovery point, if one was taken since the last call.
pub fn take_last() -> Option<Trap> {
    LAST.take()
}

/// Disarms the handler (after a probed instruction that did not trap).
pub fn disarm() {
    RECOVERY.store(0, Ordering::SeqCst);
}

/// What a probed instruction did: the trap it raised (if any) and where it sits.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub trap: Option<Trap>,
    /// Address of the probed instruction.
    pub at: u64,
    /// Address just after it (where execution resumed).
    pub after: u64,
}

impl Probe {
    /// Whether the trap's RIP is the probed instruction itself (a fault) ...
    pub fn rip_at_insn(&self) -> bool {
        self.trap.is_some_and(|t| t.rip == self.at)
    }

    /// ... or the instruction after it (a trap, like `int3`).
    pub fn rip_after_insn(&self) -> bool {
        self.trap.is_some_and(|t| t.rip == self.after)
    }
}

impl fmt::Display for Probe {
    /// `vector=13 error=0x0 rip_ok=1` for a fault reported at the instruction, `no_trap` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trap {
            None => write!(f, "no_trap"),
            Some(t) => write!(f, "{t} rip_ok={}", self.rip_at_insn() as u8),
        }
    }
}

/// Executes the instruction(s) in the string literal with the trap handler armed to resume right
/// after them, and evaluates to a [`Probe`]. Further operands are passed to `asm!` (AT&T syntax).
/// Labels 2 and 3 are taken.
///
/// `epilogue = "..."` adds instructions that run after the recovery point, whether or not the
/// probed ones trapped: the place to restore a register the probed code borrowed (RBX, which
/// cannot be an `asm!` operand, for CPUID).
///
/// The caller wraps the macro in `unsafe` with a `// SAFETY:` note on what the instruction does
/// when it does *not* trap.
macro_rules! probe {
    ($insn:literal, epilogue = $epilogue:literal $(, $($operands:tt)+)?) => {{
        let at: u64;
        let after: u64;
        core::arch::asm!(
            "lea 3f(%rip), {after}",
            "mov {after}, {recovery}(%rip)",
            "lea 2f(%rip), {at}",
            "2:",
            $insn,
            "3:",
            "movq $0, {recovery}(%rip)",
            $epilogue,
            after = out(reg) after,
            at = out(reg) at,
            recovery = sym $crate::kernel::traps::RECOVERY,
            $($($operands)+,)?
            options(att_syntax),
        );
        $crate::kernel::traps::Probe {
            trap: $crate::kernel::traps::take_last(),
            at,
            after,
        }
    }};
    ($insn:literal $(, $($operands:tt)+)?) => {
        $crate::kernel::traps::probe!($insn, epilogue = "" $(, $($operands)+)?)
    };
}
pub(crate) use probe;

/// Runs `f` under a guard: `Err(trap)` if an unexpected trap aborted it.
///
/// An abort skips the rest of `f` and every frame it called without running destructors, like
/// `longjmp`. That is sound here because the case code owns nothing with a destructor (no heap,
/// no lock guards held across a case); keep it that way inside guarded code.
pub fn guarded<F: FnMut()>(mut f: F) -> Result<(), Trap> {
    extern "C" fn call<F: FnMut()>(ctx: *mut c_void) {
        // SAFETY: `ctx` is the `&mut F` passed below, live for the whole guarded call.
        let f = unsafe { &mut *ctx.cast::<F>() };
        f();
    }
    // SAFETY: `guarded_call` calls `call::<F>(ctx)` once with the pointer we pass, and either
    // returns normally or resumes at `guard_abort` with the callee-saved registers it saved.
    let aborted = unsafe { guarded_call(call::<F>, (&raw mut f).cast::<c_void>()) };
    disarm();
    if aborted == 0 {
        Ok(())
    } else {
        Err(UNEXPECTED.take().unwrap_or_default())
    }
}

/// The exception vectors the kernel registers at boot: all architectural exceptions Xen forwards
/// (not 2, the NMI, which has its own callback; not 8 or 18, which Xen handles itself).
pub const EXCEPTIONS: [u8; 17] = [0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20];

/// A trap table entry for `vector` with privilege `dpl` (`int $vector` allowed from rings <= dpl),
/// masking events on entry.
pub fn entry(vector: u8, dpl: u8) -> TrapInfo {
    let mut t = TrapInfo {
        vector,
        flags: TI_MASK_EVENTS,
        cs: FLAT_KERNEL_CS,
        address: entry_address(vector).expect("every registered vector has a stub"),
        ..Default::default()
    };
    t.set_dpl(dpl);
    t
}

/// The boot trap table: [`EXCEPTIONS`] with DPL 0, then the terminator.
pub fn base_table() -> [TrapInfo; EXCEPTIONS.len() + 1] {
    let mut table = [TrapInfo::default(); EXCEPTIONS.len() + 1];
    for (slot, &v) in table.iter_mut().zip(EXCEPTIONS.iter()) {
        // int3 (vector 3) and into (4) are instructions a kernel may execute: DPL 3, as on
        // native x86, so that `int3` is not turned into a #GP.
        *slot = entry(v, if v == 3 || v == 4 { 3 } else { 0 });
    }
    table
}

/// Registers the boot trap table; the hypercall's return code.
pub fn install() -> i64 {
    let table = base_table();
    // SAFETY: every entry points at a stub above, which handles Xen's bounce frame.
    unsafe { hc::set_trap_table(Some(&table)) }
}

/// Clears the virtual IDT and registers the boot table again (undoes a case's extra entries:
/// `set_trap_table` cannot remove a single entry, an address of 0 ends the list). Returns the
/// first failing return code, or 0.
pub fn reinstall() -> i64 {
    // SAFETY: clearing the table leaves no handler for a moment; nothing traps in between.
    let rc = unsafe { hc::set_trap_table(None) };
    if rc != 0 {
        return rc;
    }
    install()
}

/// The address of the event upcall entry.
pub fn upcall_entry() -> u64 {
    event_upcall_entry as *const () as u64
}

/// The address of the failsafe entry.
pub fn failsafe_entry_address() -> u64 {
    failsafe_entry as *const () as u64
}

/// The address of the syscall entry.
pub fn syscall_entry_address() -> u64 {
    syscall_entry as *const () as u64
}

/// Registers [`upcall_entry`] as the event callback; the hypercall's return code.
pub fn register_upcall() -> i64 {
    let reg = CallbackRegister {
        r#type: CALLBACKTYPE_event,
        address: upcall_entry(),
        ..Default::default()
    };
    // SAFETY: the upcall entry handles Xen's event bounce frame (see the module docs).
    unsafe { hc::callback_op(&reg) }
}
