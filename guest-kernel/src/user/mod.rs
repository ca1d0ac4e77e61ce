//! User mode: a separate user address space, the kernel/user switch, system calls, and `init`,
//! the first user program (command line `init`).
//!
//! **The 64-bit PV model.** Guest kernel and guest user both run in ring 3; what separates them
//! is the page tables. The hypervisor keeps two L4s per vCPU: the kernel's (`NEW_BASEPTR`, here
//! the one Xen built at boot) and the user's (`MMUEXT_NEW_USER_BASEPTR`), and switches between
//! them itself:
//!
//! - **kernel → user**: the kernel `iret`s (the hypercall, `traps.rs`) with a frame whose CS has
//!   RPL 3 (`FLAT_USER_CS64` 0xe033, SS `FLAT_USER_SS` 0xe02b). Xen's `do_iret` sees RPL 3,
//!   crashes the domain if no user L4 is installed, otherwise toggles to user mode (user L4)
//!   before returning. `flags` = 0 makes it restore RCX and R11 from the frame.
//! - **user → kernel**: a `syscall` in user mode is not a hypercall. Xen toggles to kernel mode
//!   (kernel L4), switches to the stack registered with `stack_switch`, writes a bounce frame
//!   `rcx, r11, rip, cs, rflags, rsp, ss` there (like an exception frame without error code; RCX
//!   and R11 hold the user's return RIP and RFLAGS, as `syscall` left them) and enters the
//!   callback registered with `callback_op(CALLBACKTYPE_syscall)`, with event upcalls masked
//!   because we register it with `CALLBACKF_mask_events`. Exceptions and event upcalls in user
//!   mode arrive the same way at their trap-table entries, with RPL 3 in the frame's CS.
//!
//! The syscall entry (`syscall_entry` in `traps.rs`) shares the exception path, so a system
//! call is a [`TrapFrame`] with RAX = number and RDI, RSI, RDX, R10, R8, R9 = arguments (Linux's
//! numbering: `write` 1, `getpid` 39, `exit` 60). Returning to user is the same `iret` with RAX
//! set. The **kernel L4 contains the user mappings** too (as XenoLinux's does: user space shares
//! one L3 between the two L4s), so `write` reads the user buffer at its user address after
//! checking it lies in user space and is mapped there. The **user L4 contains nothing but user
//! space** (plus Xen's own slots, which Xen adds): the kernel is invisible to user mode.
//!
//! [`enter_user`] saves the kernel's callee-saved registers and stack pointer and `iret`s to the
//! program. The program ends by `exit`, by a fault, or by the watchdog (a VIRQ_TIMER deadline);
//! each ends the same way: the handler rewrites its frame to "kernel mode (RPL 0), at
//! `user_return`, on the saved stack, upcalls masked", and the ordinary `iret` lands there.
//!
//! **Robustness.** A hypervisor without user mode must not hang or kill the kernel: every setup
//! hypercall is checked (a refused `NEW_USER_BASEPTR` stops before the `iret` that Xen would
//! punish), the program checks every answer and executes `ud2` on a surprise (a `syscall`
//! treated as a hypercall returns an errno, not 21), a trap while the program is running ends
//! it (with RPL 0 in the frame, it means the hypervisor ran user code in kernel mode), and the
//! watchdog bounds the wait. Each prints `init: failed: <reason>`.

use core::arch::global_asm;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_kernel::cmdline::Cmdline;
use guest_kernel::layout::{
    direct_map_va, user_range, INIT_STACK_TOP, INIT_TEXT, USER_SLOT, XEN_SLOTS,
};
use guest_kernel::line::LineSplitter;
use guest_kernel::mmu_batch::Mode;
use guest_kernel::paging::{
    entry_frame, entry_maddr, index, make_entry, Mfn, Pfn, ENTRIES, PAGE_SIZE, PTE_A, PTE_D,
    PTE_NX, PTE_P, PTE_RW, PTE_US, TABLE_FLAGS,
};
use hypercall_abi::arch_x86_64::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS64, FLAT_USER_SS};
use hypercall_abi::callback::{CALLBACKF_mask_events, CALLBACKTYPE_syscall, CallbackRegister};
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::{EvtchnBindVirq, EvtchnClose};
use hypercall_abi::xen::{
    __HYPERVISOR_iret, StartInfo, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE,
    VIRQ_TIMER,
};
use spin::Mutex;

use crate::kernel::boot::hypercall_page;
use crate::kernel::direct_map;
use crate::kernel::hypercall as hc;
use crate::kernel::pt::{self, PtError};
use crate::kernel::shared_info::{self, MapError};
use crate::kernel::time::{self, MS};
use crate::kernel::traps::{self, pop_callee_saved, push_callee_saved, Trap, TrapFrame, UserMode};
use crate::kernel::{events, mm};

/// `write(fd, buf, len)`.
const SYS_WRITE: u64 = 1;
/// `getpid()`.
const SYS_GETPID: u64 = 39;
/// `exit(status)`.
const SYS_EXIT: u64 = 60;
/// `init`'s process id.
const INIT_PID: i64 = 1;
/// The most `write` takes in one call (a short write, as Linux may do).
const MAX_WRITE: u64 = 4096;
/// How long `init` may run before the watchdog ends it.
const WATCHDOG_MS: u64 = 2000;
/// RFLAGS for user mode: IF (event upcalls enabled) and the always-one bit 1.
const USER_RFLAGS: u64 = 0x202;
/// RFLAGS for the return to the kernel: IF clear, so upcalls stay masked as before the program.
const KERNEL_RFLAGS: u64 = 0x2;

// The first user program. It is data to the kernel, which copies it into a user page; the code is
// position-independent (RIP-relative), and checks every answer it gets: anything unexpected ends
// in `ud2`, which the kernel reports. RDI at entry says what to do after the system calls: 0 exit,
// 1 spin until the watchdog ends it (`init=hang`), anything else is an address to read before
// exiting (`init=isolation`: a kernel address, which must fault).
global_asm!(
    r#"
    .section .rodata.init_program, "a"
    .balign 16
    .global init_program
init_program:
    mov %rdi, %r12
    mov $1, %eax                /* write(1, message, length) */
    mov $1, %edi
    lea 20f(%rip), %rsi
    mov $(21f - 20f), %edx
    syscall
    cmp $(21f - 20f), %rax
    jne 9f
    mov $39, %eax               /* getpid() == 1 */
    syscall
    cmp $1, %rax
    jne 9f
    push %rax                   /* the stack page is there */
    pop %rbx
    cmp %rax, %rbx
    jne 9f
    cmp $1, %r12
    je 3f
    test %r12, %r12
    jz 1f
    mov (%r12), %rax            /* init=isolation: read a kernel address */
1:  mov $60, %eax               /* exit(0) */
    xor %edi, %edi
    syscall
9:  ud2                         /* a surprise, or exit returned */
3:  pause                       /* init=hang: until the watchdog fires */
    jmp 3b
20: .ascii "hello from user mode\n"
21:
    .global init_program_end
init_program_end:
    "#,
    options(att_syntax)
);

// enter_user(rip, rsp, arg): saves the callee-saved registers and the stack pointer, builds the
// `iret` frame (flags, rip, cs, rflags, rsp, ss; the stub pushes RCX, R11, RAX), clears every
// register but RDI = arg, and jumps to the iret stub. It "returns" at user_return, where the
// handler that ended the program sends the kernel, with RSP = the saved value.
global_asm!(
    r#"
    .section .text.user, "ax"
    .global enter_user
enter_user:
    "#,
    push_callee_saved!(),
    r#"
    mov %rsp, {kernel_rsp}(%rip)
    push ${user_ss}
    push %rsi
    push ${user_rflags}
    push ${user_cs}
    push %rdi
    push $0                     /* flags: restore RCX and R11 from the frame */
    mov %rdx, %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    jmp {hypercall_page} + {iret_offset}

    .global user_return
user_return:
    "#,
    pop_callee_saved!(),
    "ret",
    kernel_rsp = sym KERNEL_RSP,
    user_ss = const FLAT_USER_SS,
    user_cs = const FLAT_USER_CS64,
    user_rflags = const USER_RFLAGS,
    hypercall_page = sym hypercall_page,
    iret_offset = const __HYPERVISOR_iret * 32,
    options(att_syntax)
);

extern "C" {
    /// Runs user code at `rip` with stack `rsp` and RDI = `arg` until a handler ends it.
    fn enter_user(rip: u64, rsp: u64, arg: u64);
    /// Where the kernel resumes when the program ends (never called).
    fn user_return();
    /// The program's first byte.
    static init_program: [u8; 0];
    /// One past its last byte.
    static init_program_end: [u8; 0];
}

/// A user program is running (set just before the `iret` to it, cleared by the handler that
/// ends it). Trap handlers consult it; nothing else runs meanwhile.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The kernel stack pointer saved by `enter_user`.
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// System time after which the watchdog ends the program.
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// System calls made by the program.
static SYSCALLS: AtomicU32 = AtomicU32::new(0);
/// Event upcalls taken while in user mode.
static USER_UPCALLS: AtomicU32 = AtomicU32::new(0);
/// How the program ended. Locked by the handler that ends it, and by the kernel only after
/// `enter_user` returned.
static OUTCOME: Mutex<Option<Outcome>> = Mutex::new(None);
/// The program's output, cut into lines.
static OUTPUT: Mutex<LineSplitter<200>> = Mutex::new(LineSplitter::new());

/// Size of the stack Xen switches to on entries from user mode.
const ENTRY_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct EntryStack([u8; ENTRY_STACK_SIZE]);

/// The kernel stack for entries from user mode (`stack_switch`); only the hypervisor and the
/// entry code touch it.
static mut ENTRY_STACK: EntryStack = EntryStack([0; ENTRY_STACK_SIZE]);

/// How a user program ended.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// It called `exit(status)`.
    Exited(i32),
    /// A trap in user mode (RPL 3 in the frame).
    Killed(Trap),
    /// A trap in kernel mode while it ran: the hypervisor ran user code in kernel mode, or the
    /// `iret` to user mode failed.
    KernelModeTrap(Trap),
    /// The watchdog fired.
    TimedOut,
}

/// `init`'s kernel side, as the trap dispatcher reaches it.
struct Init;

impl UserMode for Init {
    fn active(&self) -> bool {
        active()
    }

    fn syscall(&self, frame: &mut TrapFrame) {
        syscall(frame);
    }

    fn trap(&self, frame: &mut TrapFrame, trap: Trap) {
        self::trap(frame, trap);
    }

    fn after_upcall(&self, frame: &mut TrapFrame) {
        after_upcall(frame);
    }
}

/// Whether a user program is running (the trap handlers route to this module if so).
fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Ends the program: `frame` will `iret` to `user_return` in kernel mode with upcalls masked.
fn finish(frame: &mut TrapFrame, outcome: Outcome) {
    if let Some(mut o) = OUTCOME.try_lock() {
        *o = Some(outcome);
    }
    ACTIVE.store(false, Ordering::SeqCst);
    frame.rip = user_return as *const () as u64;
    frame.rsp = KERNEL_RSP.load(Ordering::SeqCst);
    // RPL 0 in the iret frame means "stay in kernel mode" (Xen's do_iret forces RPL 3 itself).
    frame.cs = u64::from(FLAT_KERNEL_CS & !3);
    frame.ss = u64::from(FLAT_KERNEL_SS);
    frame.rflags = KERNEL_RFLAGS;
}

/// The syscall callback (from `traps.rs`).
fn syscall(frame: &mut TrapFrame) {
    if !active() {
        frame.rax = Errno::ENOSYS.neg() as u64;
        return;
    }
    SYSCALLS.fetch_add(1, Ordering::SeqCst);
    let ret = match frame.rax {
        SYS_WRITE => sys_write(frame.rdi, frame.rsi, frame.rdx),
        SYS_GETPID => INIT_PID,
        SYS_EXIT => {
            finish(frame, Outcome::Exited(frame.rdi as i32));
            return;
        }
        _ => Errno::ENOSYS.neg(),
    };
    frame.rax = ret as u64;
    // Back to user mode: RPL 3 in the frame, whatever the hypervisor wrote (Linux's
    // xen_syscall_target does the same).
    frame.cs = u64::from(FLAT_USER_CS64);
    frame.ss = u64::from(FLAT_USER_SS);
}

/// `write(fd, buf, len)`: prints the bytes as `init: <line>`; returns the count or -errno.
fn sys_write(fd: u64, buf: u64, len: u64) -> i64 {
    if fd != 1 && fd != 2 {
        return Errno::EBADF.neg();
    }
    let len = len.min(MAX_WRITE);
    let Some(range) = user_range(buf, len) else {
        return Errno::EFAULT.neg();
    };
    // Every page of the buffer must be mapped for user mode in the kernel L4 (which maps user
    // space at the same addresses as the user L4).
    let l4 = mm::kernel_l4();
    let mut page = range.start & !(PAGE_SIZE - 1);
    while page < range.end {
        match pt::lookup(l4, page) {
            Ok(e) if e & (PTE_P | PTE_US) == PTE_P | PTE_US => {}
            _ => return Errno::EFAULT.neg(),
        }
        page += PAGE_SIZE;
    }
    let mut chunk = [0u8; 128];
    let mut at = range.start;
    let Some(mut out) = OUTPUT.try_lock() else {
        return Errno::EBUSY.neg();
    };
    while at < range.end {
        let n = (range.end - at).min(chunk.len() as u64) as usize;
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            // SAFETY: [at, at + n) lies in user space and every page of it is mapped with
            // _PAGE_USER in the active (kernel) L4, checked above; the program is stopped while
            // the kernel reads, and only raw reads are made (no reference into user memory).
            *b = unsafe { ptr::read_volatile((at + i as u64) as *const u8) };
        }
        out.push(&chunk[..n], |line| println!("init: {line}"));
        at += n as u64;
    }
    len as i64
}

/// A trap while the program is running (from `traps.rs`): ends it.
fn trap(frame: &mut TrapFrame, trap: Trap) {
    let outcome = if frame.cs & 3 == 3 {
        Outcome::Killed(trap)
    } else {
        Outcome::KernelModeTrap(trap)
    };
    finish(frame, outcome);
}

/// After an event upcall (from `traps.rs`): counts it, and ends the program if the watchdog's
/// deadline has passed.
fn after_upcall(frame: &mut TrapFrame) {
    if !active() {
        return;
    }
    if frame.cs & 3 == 3 {
        USER_UPCALLS.fetch_add(1, Ordering::SeqCst);
    }
    if time::now_ns().is_some_and(|now| now >= DEADLINE.load(Ordering::SeqCst)) {
        finish(frame, Outcome::TimedOut);
    }
}

/// Why `init` could not run.
enum Failure {
    /// A hypercall of the setup was refused.
    Step(&'static str, i64),
    /// Memory management failed.
    Pt(&'static str, PtError),
    /// shared_info could not be mapped.
    SharedInfo(MapError),
    /// Something else, said in words.
    Other(&'static str),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Step(what, rc) => write!(f, "{what}={rc}"),
            Failure::Pt(what, e) => write!(f, "{what}: {e}"),
            Failure::SharedInfo(e) => write!(f, "shared_info: {e}"),
            Failure::Other(why) => write!(f, "{why}"),
        }
    }
}

/// Turns a return code into `Ok` or a [`Failure::Step`].
fn step(what: &'static str, rc: i64) -> Result<(), Failure> {
    match rc {
        0 => Ok(()),
        rc => Err(Failure::Step(what, rc)),
    }
}

/// The user address space: its frames, its tables, and how far construction got (teardown
/// undoes exactly that).
#[derive(Default)]
struct UserSpace {
    /// Program and stack frames not yet mapped (freed directly by teardown).
    unmapped: [Option<Pfn>; 2],
    /// The L3 of user space, once linked into the kernel L4's user slot.
    l3: Option<Mfn>,
    /// The user L4.
    l4: Option<Mfn>,
    pinned: bool,
    installed: bool,
    /// Free frames before `build` took any: teardown must give them all back.
    free_before: Option<u64>,
}

impl UserSpace {
    /// Builds the address space of a program: `program` at [`INIT_TEXT`] (read-only, user), one
    /// stack page below [`INIT_STACK_TOP`] (writable, user, no-execute), mapped in the kernel L4,
    /// then a user L4 holding only user space, pinned and installed as the user base pointer.
    fn build(&mut self, program: &[u8]) -> Result<(), Failure> {
        let kernel_l4 = mm::kernel_l4();
        let slot = pt::read_entry(kernel_l4, USER_SLOT).map_err(|e| Failure::Pt("kernel L4", e))?;
        if slot & PTE_P != 0 {
            return Err(Failure::Other(
                "the kernel L4's user slot is already in use",
            ));
        }
        self.free_before = Some(mm::free_frames());
        let oom = Failure::Pt("user pages", PtError::OutOfFrames);
        let code = mm::alloc_frame().ok_or(oom)?;
        self.unmapped[0] = Some(code);
        let stack = mm::alloc_frame().ok_or(Failure::Pt("user pages", PtError::OutOfFrames))?;
        self.unmapped[1] = Some(stack);
        let mfn = |pfn| mm::mfn_of(pfn).ok_or(Failure::Pt("user pages", PtError::NoMfn(pfn)));
        let (code_mfn, stack_mfn) = (mfn(code)?, mfn(stack)?);
        // SAFETY: both frames were just allocated (nobody else uses them) and are mapped writable
        // in the direct map, which init_memory built; the program fits in a page (checked by
        // the caller).
        unsafe {
            let dst = direct_map_va(code) as *mut u8;
            ptr::write_bytes(dst, 0, PAGE_SIZE as usize);
            ptr::copy_nonoverlapping(program.as_ptr(), dst, program.len());
            ptr::write_bytes(direct_map_va(stack) as *mut u8, 0, PAGE_SIZE as usize);
        }

        // The user pages in the kernel L4, building the L3, L2 and L1s top-down. One update per
        // leaf (PerUpdate), so a frame is owned by the tree exactly when its PTE went in.
        let pages = [
            (INIT_TEXT, code_mfn, PTE_P | PTE_US | PTE_A, 0),
            (
                INIT_STACK_TOP - PAGE_SIZE,
                stack_mfn,
                PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_NX,
                1,
            ),
        ];
        let mut batch = pt::batch(Mode::PerUpdate).map_err(|e| Failure::Pt("batch", e))?;
        for (va, frame, flags, which) in pages {
            let l1 = pt::ensure_l1(kernel_l4, va);
            self.note_l3(kernel_l4);
            let l1 = l1.map_err(|e| Failure::Pt("user page tables", e))?;
            batch
                .set_pte(entry_maddr(l1, index(va, 1)), make_entry(frame.0, flags))
                .map_err(|e| Failure::Pt("user pages", PtError::Mmu("mmu_update", e)))?;
            self.unmapped[which] = None;
        }
        let l3 = self.l3.ok_or(Failure::Other("user space has no L3"))?;

        // The user L4: one entry, user space's L3. Written while the frame is not yet a table
        // (a checked plain write), then pinned, which validates it (Xen adds its own slots).
        let l4 = pt::new_table().map_err(|e| Failure::Pt("user L4", e))?;
        self.l4 = Some(l4);
        batch
            .set_pte(entry_maddr(l4, USER_SLOT), make_entry(l3.0, TABLE_FLAGS))
            .map_err(|e| Failure::Pt("user L4", PtError::Mmu("mmu_update", e)))?;
        pt::mmuext("mmuext_op(PIN_L4_TABLE)", MMUEXT_PIN_L4_TABLE, l4.0)
            .map_err(|e| Failure::Pt("user L4", e))?;
        self.pinned = true;
        pt::mmuext("mmuext_op(NEW_USER_BASEPTR)", MMUEXT_NEW_USER_BASEPTR, l4.0)
            .map_err(|e| Failure::Pt("user L4", e))?;
        self.installed = true;
        Ok(())
    }

    /// Records the user-space L3 once the kernel L4's user slot holds one.
    fn note_l3(&mut self, kernel_l4: Mfn) {
        if let Ok(e) = pt::read_entry(kernel_l4, USER_SLOT) {
            if e & PTE_P != 0 {
                self.l3 = Some(Mfn(entry_frame(e)));
            }
        }
    }

    /// Which L4 slots of the user L4 are present: (user-half slots, Xen's slots).
    fn l4_census(&self) -> Option<(u32, u32, bool)> {
        let l4 = self.l4?;
        let (mut user, mut xen, mut only_user_slot) = (0, 0, true);
        for idx in 0..ENTRIES {
            let e = pt::read_entry(l4, idx).ok()?;
            if e & PTE_P == 0 {
                continue;
            }
            if XEN_SLOTS.contains(&idx) {
                xen += 1;
            } else {
                user += 1;
                only_user_slot &= idx == USER_SLOT;
            }
        }
        Some((user, xen, only_user_slot))
    }

    /// Undoes what `build` did, in reverse; the first error (teardown goes on past it).
    fn teardown(&mut self) -> Result<(), PtError> {
        let mut first = Ok(());
        let mut keep = |r: Result<(), PtError>| {
            if first.is_ok() {
                first = r;
            }
        };
        if self.installed {
            keep(pt::mmuext(
                "mmuext_op(NEW_USER_BASEPTR 0)",
                MMUEXT_NEW_USER_BASEPTR,
                0,
            ));
            self.installed = false;
        }
        if let Some(l4) = self.l4.take() {
            if self.pinned {
                keep(pt::mmuext(
                    "mmuext_op(UNPIN_TABLE)",
                    MMUEXT_UNPIN_TABLE,
                    l4.0,
                ));
                self.pinned = false;
            }
            keep(pt::release_table(l4));
        }
        if let Some(l3) = self.l3.take() {
            let unlinked =
                pt::set_entry("mmu_update(unlink user L3)", mm::kernel_l4(), USER_SLOT, 0);
            let ok = unlinked.is_ok();
            keep(unlinked);
            if ok {
                keep(pt::free_subtree(l3, 3, true));
            }
        }
        for pfn in self.unmapped.iter_mut().filter_map(Option::take) {
            keep(mm::free_frame(pfn).map_err(PtError::Free));
        }
        if let Some(before) = self.free_before.take() {
            let now = mm::free_frames();
            if now != before {
                keep(Err(PtError::Leak { before, now }));
            }
        }
        first
    }
}

/// VIRQ_TIMER bound and a single-shot deadline armed: the upcall ends a program that runs too
/// long ([`after_upcall`]).
struct Watchdog {
    port: u32,
}

impl Watchdog {
    fn arm(ms: u64) -> Result<Watchdog, Failure> {
        let mut virq = EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu: 0,
            port: 0,
        };
        step(
            "event_channel_op(bind_virq VIRQ_TIMER)",
            hc::event_channel_op(&mut virq),
        )?;
        let dog = Watchdog { port: virq.port };
        let now = time::now_ns().ok_or(Failure::Other("no system time"))?;
        let deadline = now + ms * MS;
        DEADLINE.store(deadline, Ordering::SeqCst);
        step("set_timer_op", hc::set_timer_op(deadline))?;
        Ok(dog)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        DEADLINE.store(u64::MAX, Ordering::SeqCst);
        hc::set_timer_op(0);
        let mut close = EvtchnClose { port: self.port };
        hc::event_channel_op(&mut close);
        events::take(self.port);
    }
}

/// The program's bytes (in the kernel image).
fn program() -> &'static [u8] {
    // SAFETY: the two symbols delimit the program in .rodata (asm above), which is mapped and
    // immutable for the kernel's lifetime.
    unsafe {
        let start = (&raw const init_program).cast::<u8>();
        let end = (&raw const init_program_end).cast::<u8>();
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// What `init` is asked to do after its system calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Test {
    /// `init`: exit(0).
    Exit,
    /// `init=isolation`: read this kernel address, which must fault.
    Isolation(u64),
    /// `init=hang`: spin until the watchdog ends it.
    Hang,
}

impl Test {
    /// The program's argument (RDI at entry).
    fn arg(self) -> u64 {
        match self {
            Test::Exit => 0,
            Test::Hang => 1,
            Test::Isolation(addr) => addr,
        }
    }
}

/// Command line `init` (`init=isolation`, `init=hang`): runs the first user program and reports
/// how it ended; every failure is a line `init: failed: <reason>`, and the kernel goes on.
pub fn run_init(si: &StartInfo, cmdline: &Cmdline<'_>) {
    traps::set_user_mode(&Init);
    let test = match cmdline.get("init") {
        // The kernel address the isolation probe reads: the kernel's own code.
        Some("isolation") => {
            Test::Isolation(run_init as fn(&StartInfo, &Cmdline<'_>) as usize as u64)
        }
        Some("hang") => Test::Hang,
        _ => Test::Exit,
    };
    let mut space = UserSpace::default();
    let outcome = setup_and_run(si, &mut space, test.arg());
    if let Some(mut out) = OUTPUT.try_lock() {
        out.finish(|line| println!("init: {line}"));
    }
    match outcome {
        Ok(outcome) => report(outcome, test),
        Err(f) => println!("init: failed: {f}"),
    }
    if let Err(e) = space.teardown() {
        println!("guest-kernel: init: teardown failed: {e}");
    }
}

fn setup_and_run(si: &StartInfo, space: &mut UserSpace, probe: u64) -> Result<Outcome, Failure> {
    let program = program();
    if program.len() as u64 > PAGE_SIZE {
        return Err(Failure::Other("the program does not fit in a page"));
    }
    let info = direct_map::init_memory().map_err(|e| Failure::Pt("memory", e))?;
    println!("guest-kernel: memory: {info}");
    shared_info::map(si).map_err(Failure::SharedInfo)?;
    step("set_trap_table", traps::install())?;
    step("callback_op(register event)", traps::register_upcall())?;
    let syscall = CallbackRegister {
        r#type: CALLBACKTYPE_syscall,
        flags: CALLBACKF_mask_events,
        address: traps::syscall_entry_address(),
        ..Default::default()
    };
    // SAFETY: the syscall entry handles Xen's syscall bounce frame (traps.rs, this module).
    step("callback_op(register syscall)", unsafe {
        hc::callback_op(&syscall)
    })?;
    let stack_top = (&raw mut ENTRY_STACK) as u64 + ENTRY_STACK_SIZE as u64;
    step(
        "stack_switch",
        hc::stack_switch(u64::from(FLAT_KERNEL_SS), stack_top),
    )?;

    space.build(program)?;
    if let Some((user, xen, only)) = space.l4_census() {
        println!(
            "guest-kernel: init: user L4 pinned and installed: {user} user slot(s) ({}), {xen} Xen slots, no kernel mappings; program {} bytes at {INIT_TEXT:#x}, stack below {INIT_STACK_TOP:#x}",
            if only { "slot 1" } else { "unexpected slots" },
            program.len(),
        );
    }

    let _watchdog = Watchdog::arm(WATCHDOG_MS)?;
    *OUTCOME.lock() = None;
    SYSCALLS.store(0, Ordering::SeqCst);
    USER_UPCALLS.store(0, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    // SAFETY: INIT_TEXT and the stack are mapped in the installed user L4; every way out of user
    // mode (syscall, trap, upcall) goes through a handler of this module, which ends the program
    // by resuming at `user_return` with the registers enter_user saved.
    unsafe { enter_user(INIT_TEXT, INIT_STACK_TOP, probe) };
    ACTIVE.store(false, Ordering::SeqCst);
    let outcome = OUTCOME
        .lock()
        .take()
        .ok_or(Failure::Other("the program ended without an outcome"))?;
    Ok(outcome)
}

/// Prints how the program ended.
fn report(outcome: Outcome, test: Test) {
    let syscalls = SYSCALLS.load(Ordering::SeqCst);
    let upcalls = USER_UPCALLS.load(Ordering::SeqCst);
    let in_program = |rip: u64| (INIT_TEXT..INIT_TEXT + PAGE_SIZE).contains(&rip);
    match (outcome, test) {
        (Outcome::Exited(status), Test::Exit) => {
            println!("init exited with status {status}");
            println!(
                "guest-kernel: init made {syscalls} system calls; event upcalls taken in user mode: {upcalls}"
            );
        }
        (Outcome::Exited(status), Test::Isolation(probe)) => println!(
            "init: failed: isolation: reading kernel address {probe:#x} in user mode did not fault (exit status {status})"
        ),
        (Outcome::Exited(status), Test::Hang) => {
            println!("init: failed: exited with status {status} instead of spinning")
        }
        (Outcome::Killed(t), Test::Isolation(probe)) if t.vector == 14 && t.cr2 == Some(probe) => {
            println!(
                "init: isolation ok: reading kernel address {probe:#x} in user mode faulted ({t})"
            )
        }
        (Outcome::TimedOut, Test::Hang) => println!(
            "init: watchdog ok: the spinning program was stopped after {WATCHDOG_MS} ms ({upcalls} upcalls in user mode)"
        ),
        (Outcome::Killed(t), _) => println!(
            "init: failed: killed by a trap in user mode: {t} rip={:#x} cr2={}",
            t.rip,
            Cr2(t.cr2)
        ),
        (Outcome::KernelModeTrap(t), _) if in_program(t.rip) => println!(
            "init: failed: the user program ran in kernel mode (the hypervisor did not switch to user mode on iret): {t} rip={:#x} after {syscalls} system calls",
            t.rip
        ),
        (Outcome::KernelModeTrap(t), _) => println!(
            "init: failed: kernel-mode trap while init ran (did the iret to user mode fail?): {t} rip={:#x}",
            t.rip
        ),
        (Outcome::TimedOut, _) => println!(
            "init: failed: no exit within {WATCHDOG_MS} ms ({syscalls} system calls, {upcalls} upcalls in user mode)"
        ),
    }
}

/// An optional CR2 value.
struct Cr2(Option<u64>);

impl fmt::Display for Cr2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:#x}"),
            None => write!(f, "none"),
        }
    }
}
