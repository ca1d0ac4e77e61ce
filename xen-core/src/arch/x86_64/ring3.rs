//! A ring-3 round trip from the hypervisor itself: the boot-time check that `syscall` from ring 3
//! really enters the hypervisor at CPL 0, and `selftest=native-syscall`, the bare hardware cost
//! of a `syscall`/`sysretq` round trip with an empty handler (the physical limit of a hypercall).
//!
//! Both run before any guest exists, with interrupts off. A small window of L4 slot 0 (guests'
//! half of the address space, empty at that time) maps one page of ring-3 code (user, read-only,
//! executable: a copy of `xen_ring3_user`, written through the image window, whose alias is
//! no-execute) and two data pages (user, read-write, no-execute) where the ring-3 code stores
//! one TSC delta per round trip. LSTAR points at `xen_ring3_lstar` for the duration: with
//! RAX = 0 it returns at once with `sysretq`; with RAX = 1 it reads the hardware's CS (its RPL
//! is the CPL the handler really runs at), switches back to the hypervisor's stack and returns
//! to [`round_trip`]'s caller. Afterwards LSTAR, the segment registers and slot 0 are restored.
//!
//! Why the check: a hypervisor must run in ring 0. Some "KVM"s cannot give a guest ring 0: the
//! `kvm_pvm` module (PVM, a KVM that needs no VT-x/SVM, for use inside a cloud VM) runs every
//! guest in hardware ring 3 and enters a non-PVM guest's LSTAR still at CPL 3, so the first
//! instruction of the entry faults (a user-mode fetch from a supervisor page), which is reported
//! to the hypervisor's #PF handler as an entry from ring 3. Without this check that ends in a
//! confusing "dom0 crashed" with RIP at a hypervisor address (or a KVM emulation failure). The
//! check turns it into one line and exit status [`FailCode::NotRing0`] (QEMU exits 11).
//! Any entry through the IDT while the probe runs is unexpected: [`probe_entry`] (called first
//! by `dispatch::handle_entry`) reports it and ends the run.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

use xen_core::layout::XEN_VIRT_START;
use xen_core::power::FailCode;
use xen_core::regs::Regs;

use super::console::printk;
use super::entry::wrmsr;
use super::gdt::{GUEST_CS64, GUEST_DS};
use super::power;

/// Round trips timed by `selftest=native-syscall` (two data pages of u64 deltas hold 1024).
pub const SAMPLES: usize = 1000;

/// The window's first address: L4 slot 0, L3 0, L2 2 (4 MiB; page 0 is left unmapped).
const WINDOW: u64 = 0x40_0000;
/// The ring-3 code page, then the data pages.
const CODE_VA: u64 = WINDOW;
const DATA_VA: u64 = WINDOW + 0x1000;
const DATA_PAGES: usize = 2;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const NX: u64 = 1 << 63;

const MSR_LSTAR: u32 = 0xc000_0082;

global_asm!(
    r#"
    .section .text.ring3, "ax", @progbits
    /* u64 xen_ring3_call(u64 user_rip, u64 user_rsp, u64 count, u64 buffer): enters ring 3 at
       user_rip with RDI = count and RSI = buffer, interrupts off; returns the CS selector that
       `xen_ring3_lstar` read when the ring-3 code made its final `syscall` (RAX = 1). */
    .globl xen_ring3_call
xen_ring3_call:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %ds, %eax
    mov %ax, xen_ring3_saved_sel+0(%rip)
    mov %es, %eax
    mov %ax, xen_ring3_saved_sel+2(%rip)
    mov %fs, %eax
    mov %ax, xen_ring3_saved_sel+4(%rip)
    mov %gs, %eax
    mov %ax, xen_ring3_saved_sel+6(%rip)
    mov %rsp, xen_ring3_saved_rsp(%rip)
    pushq ${user_ds}            /* SS */
    pushq %rsi                  /* RSP */
    pushq $2                    /* RFLAGS: IF clear */
    pushq ${user_cs}            /* CS */
    pushq %rdi                  /* RIP */
    mov %rdx, %rdi
    mov %rcx, %rsi
    iretq

    /* LSTAR while the probe runs. RAX = 0: the empty handler, straight back (RCX, R11 hold the
       ring-3 RIP and RFLAGS). RAX = 1: done; the CS read here tells the CPL we run at. */
    .globl xen_ring3_lstar
xen_ring3_lstar:
    test %eax, %eax
    jnz 1f
    sysretq
1:  mov %cs, %eax
    movzwl %ax, %eax
    mov xen_ring3_saved_rsp(%rip), %rsp
    movzwl xen_ring3_saved_sel+0(%rip), %ecx
    mov %ecx, %ds
    movzwl xen_ring3_saved_sel+2(%rip), %ecx
    mov %ecx, %es
    movzwl xen_ring3_saved_sel+4(%rip), %ecx
    mov %ecx, %fs
    movzwl xen_ring3_saved_sel+6(%rip), %ecx
    mov %ecx, %gs
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    /* The ring-3 code, copied to the user code page (position-independent). RDI round trips,
       each timed with the TSC and its delta stored at RSI; then the final `syscall`. */
    .globl xen_ring3_user
xen_ring3_user:
    test %rdi, %rdi
    jz 2f
1:  lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r8
    xor %eax, %eax
    syscall
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r8, %rax
    mov %rax, (%rsi)
    add $8, %rsi
    dec %rdi
    jnz 1b
2:  mov $1, %eax
    syscall
    ud2
    .globl xen_ring3_user_end
xen_ring3_user_end:

    .section .bss.ring3, "aw", @nobits
    .balign 8
xen_ring3_saved_rsp: .skip 8
xen_ring3_saved_sel: .skip 8
    "#,
    user_ds = const GUEST_DS,
    user_cs = const GUEST_CS64,
    options(att_syntax)
);

extern "C" {
    fn xen_ring3_call(user_rip: u64, user_rsp: u64, count: u64, buffer: u64) -> u64;
    fn xen_ring3_lstar();
    fn xen_syscall_entry();
    static xen_ring3_user: u8;
    static xen_ring3_user_end: u8;
    /// The hypervisor's L4 table (built by `boot.rs`).
    static mut boot_l4: [u64; 512];
}

/// One page.
#[repr(C, align(4096))]
struct Page([u64; 512]);

/// The window's L3, L2 and L1, the code page, then the data pages.
const L3: usize = 0;
const L2: usize = 1;
const L1: usize = 2;
const CODE: usize = 3;
const DATA: usize = 4;
static mut PAGES: [Page; DATA + DATA_PAGES] = [const { Page([0; 512]) }; DATA + DATA_PAGES];

/// Set while the ring-3 code runs: any IDT entry then is [`probe_entry`]'s.
static PROBE_RUNNING: AtomicBool = AtomicBool::new(false);

/// Machine address of a page of the image (linked at `XEN_VIRT_START` + its machine address).
fn maddr(page: *const Page) -> u64 {
    page as u64 - XEN_VIRT_START
}

/// Runs `count` timed round trips from ring 3 (at most [`SAMPLES`]) and the final one, and
/// returns the CS selector the final `syscall` entered with and the per-round-trip TSC deltas.
/// Only at boot: one CPU, interrupts off, no guest (slot 0 of the hypervisor's L4 is borrowed).
fn round_trip(count: usize, deltas: &mut [u64; SAMPLES]) -> u16 {
    let count = count.min(SAMPLES);
    let pages = &raw mut PAGES;
    let l4 = &raw mut boot_l4;
    let code_start = (&raw const xen_ring3_user) as usize;
    let code_len = (&raw const xen_ring3_user_end) as usize - code_start;
    assert!(code_len <= 4096);
    // SAFETY: boot, one CPU, interrupts off, no guest: nothing else uses slot 0 of the
    // hypervisor's L4 (the boot stub's identity map is gone; guests own the low half and none
    // exists yet) or this file's pages, and no reference to either is live. The pages are
    // page-aligned statics in the image (machine address = link address - XEN_VIRT_START),
    // written through the image window (read-write, no-execute). The code copied is
    // `xen_ring3_user`'s bytes, readable in `.text`. Every level of the window is a user page
    // (the ring-3 code needs that), the code page read-only and executable, the data pages
    // read-write and no-execute.
    unsafe {
        let p = &mut *pages;
        for page in p.iter_mut() {
            page.0 = [0; 512];
        }
        core::ptr::copy_nonoverlapping(
            code_start as *const u8,
            p[CODE].0.as_mut_ptr().cast::<u8>(),
            code_len,
        );
        p[L3].0[0] = maddr(&p[L2]) | P | RW | US | A;
        p[L2].0[((WINDOW >> 21) & 511) as usize] = maddr(&p[L1]) | P | RW | US | A;
        p[L1].0[0] = maddr(&p[CODE]) | P | US | A;
        for k in 0..DATA_PAGES {
            p[L1].0[1 + k] = maddr(&p[DATA + k]) | P | RW | US | A | D | NX;
        }
        (*l4)[0] = maddr(&p[L3]) | P | RW | US | A;
    }
    x86_64::instructions::tlb::flush_all();

    let stack_top = DATA_VA + (DATA_PAGES as u64) * 4096;
    PROBE_RUNNING.store(true, Ordering::SeqCst);
    // SAFETY: LSTAR points at the probe's handler only while the ring-3 code runs (interrupts
    // off, so no guest entry can arrive), and is set back before anything else runs. The ring-3
    // code only reads the TSC, writes its data pages and makes `syscall`s; the handler returns
    // here with the callee-saved registers, the stack and the segment registers restored.
    let cs = unsafe {
        wrmsr(
            MSR_LSTAR,
            xen_ring3_lstar as unsafe extern "C" fn() as usize as u64,
        );
        let cs = xen_ring3_call(CODE_VA, stack_top, count as u64, DATA_VA);
        wrmsr(
            MSR_LSTAR,
            xen_syscall_entry as unsafe extern "C" fn() as usize as u64,
        );
        cs
    };
    PROBE_RUNNING.store(false, Ordering::SeqCst);

    // SAFETY: as above; the ring-3 code has finished, so the data pages are read through the
    // image window, then slot 0 is unlinked and the TLB flushed: dom0 starts with the address
    // space it always had.
    unsafe {
        let p = &*pages;
        for (i, d) in deltas.iter_mut().take(count).enumerate() {
            *d = p[DATA + i / 512].0[i % 512];
        }
        (*l4)[0] = 0;
    }
    x86_64::instructions::tlb::flush_all();
    cs as u16
}

/// The boot check: the hypervisor's own code selector must have RPL 0, and a `syscall` from ring
/// 3 must enter at CPL 0. Prints one line either way; on failure ends the run with
/// [`FailCode::NotRing0`]. Call after the GDT and IDT are loaded and before SMAP is enabled (the
/// entry path's `clac` is not emulated by every KVM that fails this check).
pub fn check_ring0() {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    if cs & 3 != 0 {
        not_ring0(
            cs & 3,
            format_args!("the hypervisor's code selector is {cs:#x}"),
        );
    }
    let mut deltas = [0; SAMPLES];
    let cs = round_trip(0, &mut deltas);
    if cs & 3 != 0 {
        not_ring0(
            cs & 3,
            format_args!("syscall from ring 3 entered with cs {cs:#x}"),
        );
    }
    printk!("CPL check: syscall from ring 3 enters the hypervisor at CPL 0 (cs {cs:#x})\n");
}

/// Reports a hypervisor that does not run in ring 0 (found running at `cpl`) and ends the run.
fn not_ring0(cpl: u16, why: core::fmt::Arguments<'_>) -> ! {
    printk!(
        "FATAL: running at CPL {cpl}, not ring 0: {why}: this virtual machine cannot host a \
         ring-0 hypervisor (a KVM that runs guests in hardware ring 3, such as kvm_pvm?)\n"
    );
    power::fail(FailCode::NotRing0)
}

/// Called first on every IDT entry: while the probe's ring-3 code runs, any exception or
/// interrupt is unexpected. The one a KVM that runs the hypervisor in ring 3 causes is a page
/// fault at the probe's LSTAR from ring 3 (the handler's first instruction fetched at CPL 3).
#[inline]
pub fn probe_entry(regs: &Regs) {
    if PROBE_RUNNING.load(Ordering::Relaxed) {
        probe_failed(regs);
    }
}

/// An entry while the probe ran: the probe failed.
#[cold]
#[inline(never)]
fn probe_failed(regs: &Regs) -> ! {
    let lstar = xen_ring3_lstar as unsafe extern "C" fn() as usize as u64;
    if regs.rip == lstar && regs.cs & 3 != 0 {
        not_ring0(
            (regs.cs & 3) as u16,
            format_args!(
                "syscall from ring 3 entered the hypervisor at CPL {} (vector {} error {:#x} at \
             {:#x}, cs {:#x})",
                regs.cs & 3,
                regs.vector,
                regs.error_code,
                regs.rip,
                regs.cs
            ),
        );
    }
    printk!(
        "FATAL: ring-3 probe: unexpected vector {} error {:#x} at {:#x}, cs {:#x}\n",
        regs.vector,
        regs.error_code,
        regs.rip,
        regs.cs
    );
    power::fail(FailCode::Trap)
}

/// `selftest=native-syscall`: times [`SAMPLES`] ring-3 -> ring-0 -> ring-3 round trips
/// (`syscall`, a handler of two instructions, `sysretq`) with the TSC read in ring 3 around each,
/// and prints `native-syscall: median_cycles=<m> min_cycles=<min> samples=<n>`. dom0 boots
/// afterwards, so `make bench` prints it next to the null hypercall of the same boot.
pub fn native_syscall() {
    let mut deltas = [0; SAMPLES];
    let cs = round_trip(SAMPLES, &mut deltas);
    if cs & 3 != 0 {
        not_ring0(
            cs & 3,
            format_args!("syscall from ring 3 entered with cs {cs:#x}"),
        );
    }
    deltas.sort_unstable();
    printk!(
        "native-syscall: median_cycles={} min_cycles={} samples={SAMPLES} (ring 3 -> syscall -> \
         empty handler -> sysretq, TSC)\n",
        deltas[(SAMPLES - 1) / 2],
        deltas[0]
    );
}
