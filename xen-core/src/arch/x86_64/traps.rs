//! Early exception handling: any CPU exception in the hypervisor is fatal, and reported.
//!
//! Without an IDT, an exception becomes a triple fault and QEMU (`-no-reboot`) exits 0, as if the
//! run had succeeded. With this table every exception prints its vector, error code and registers,
//! then exits through `isa-debug-exit` with [`FailCode::Trap`]. The next issue replaces it with the
//! real trap table (guest bounces, IST stacks for #DF/#NMI/#MC).

use core::arch::global_asm;
use core::mem::size_of;

use spin::Once;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;
use xen_core::power::FailCode;

use super::apic::{self, SPURIOUS_VECTOR, TIMER_VECTOR};
use super::boot::BOOT_CS;
use super::console::print_emergency;
use super::power::fail;

/// Number of architectural exception vectors.
const NR_EXCEPTIONS: usize = 32;
/// Entries in the IDT: every vector, so that device vectors can have gates. A vector without one
/// is not present, and delivering it raises #NP, which is reported like any other exception.
const NR_VECTORS: usize = 256;
/// Bytes between two entry stubs (each is aligned to this).
const STUB_SIZE: usize = 16;
/// Vectors for which the CPU pushes an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
const HAS_ERROR_CODE: u32 = 1 << 8
    | 1 << 10
    | 1 << 11
    | 1 << 12
    | 1 << 13
    | 1 << 14
    | 1 << 17
    | 1 << 21
    | 1 << 29
    | 1 << 30;

// One 16-byte stub per vector: push a dummy error code where the CPU pushes none, push the vector,
// and join the common path, which saves the registers and calls `early_trap` with a `TrapFrame`.
global_asm!(
    r#"
    .section .text.early_traps, "ax", @progbits
    .balign {stub_size}
    .globl xen_early_trap_stubs
xen_early_trap_stubs:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign {stub_size}
    .if (({has_error_code} >> \vec) & 1) == 0
    pushq $0
    .endif
    pushq $\vec
    jmp .Learly_trap_common
    .endr

.Learly_trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    /* The CPU aligned RSP to 16 before its 5-word frame; with the 17 words pushed since, RSP is
       still 16-aligned, as the call ABI wants. Align anyway, so a changed frame cannot break it. */
    and $-16, %rsp
    call {early_trap}
    ud2
    "#,
    stub_size = const STUB_SIZE,
    has_error_code = const HAS_ERROR_CODE,
    early_trap = sym early_trap,
    options(att_syntax)
);

// Device interrupts, a minimal set until the real trap table arrives: the APIC timer, whose stub
// saves the registers a C-ABI callee may clobber and calls `apic::timer_interrupt`, and the APIC's
// spurious vector, which needs no EOI and no work. The CPU aligned RSP to 16 before pushing its
// 5-word frame; the 9 pushes below keep it aligned for the call.
global_asm!(
    r#"
    .section .text.irq_stubs, "ax", @progbits
    .balign 16
    .globl xen_apic_timer_stub
xen_apic_timer_stub:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call {timer_interrupt}
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .balign 16
    .globl xen_spurious_irq_stub
xen_spurious_irq_stub:
    iretq
    "#,
    timer_interrupt = sym apic::timer_interrupt,
    options(att_syntax)
);

extern "C" {
    /// The first of the [`NR_EXCEPTIONS`] entry stubs, [`STUB_SIZE`] bytes apart.
    static xen_early_trap_stubs: u8;
    /// Entry of [`TIMER_VECTOR`].
    static xen_apic_timer_stub: u8;
    /// Entry of [`SPURIOUS_VECTOR`].
    static xen_spurious_irq_stub: u8;
}

/// The stack as the common entry path leaves it: saved registers, then what the stub and the CPU
/// pushed.
#[repr(C)]
#[derive(Debug)]
struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// A 64-bit IDT gate descriptor (Intel SDM vol. 3, "64-Bit Mode IDT").
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (interrupts stay disabled in the handler).
const GATE_INTERRUPT_DPL0: u8 = 0x8E;

impl Gate {
    /// A vector with no handler.
    const NOT_PRESENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64) -> Self {
        Gate {
            offset_low: handler as u16,
            selector: BOOT_CS,
            ist: 0,
            type_attr: GATE_INTERRUPT_DPL0,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static IDT: Once<[Gate; NR_VECTORS]> = Once::new();

/// Loads an IDT whose exception vectors all lead to [`early_trap`], with gates for the APIC timer
/// and spurious vectors; every other vector is not present.
pub fn init() {
    let stubs = (&raw const xen_early_trap_stubs) as u64;
    let timer = (&raw const xen_apic_timer_stub) as u64;
    let spurious = (&raw const xen_spurious_irq_stub) as u64;
    let idt = IDT.call_once(|| {
        core::array::from_fn(|vector| match vector {
            v if v < NR_EXCEPTIONS => Gate::interrupt(stubs + (v * STUB_SIZE) as u64),
            v if v == usize::from(TIMER_VECTOR) => Gate::interrupt(timer),
            v if v == usize::from(SPURIOUS_VECTOR) => Gate::interrupt(spurious),
            _ => Gate::NOT_PRESENT,
        })
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[Gate; NR_VECTORS]>() - 1) as u16,
        base: VirtAddr::from_ptr(idt.as_ptr()),
    };
    // SAFETY: `idt` is a `'static` table of valid gates whose handlers are the stubs above, each of
    // which runs on the current stack with the boot code selector; the exception stubs never
    // return, the interrupt stubs restore every register they or their callee change.
    unsafe { lidt(&pointer) };
}

/// Short mnemonics of the exception vectors, for the report.
const NAMES: [&str; NR_EXCEPTIONS] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "vec 9", "#TS", "#NP", "#SS",
    "#GP", "#PF", "vec 15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "vec 22", "vec 23", "vec 24",
    "vec 25", "vec 26", "vec 27", "#HV", "#VC", "#SX", "vec 31",
];

/// Reports an exception taken in the hypervisor and stops the machine.
extern "C" fn early_trap(frame: &TrapFrame) -> ! {
    let name = NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    print_emergency(format_args!(
        "FATAL TRAP: vector {} ({name}), error code {:#x}\n",
        frame.vector, frame.error_code
    ));
    print_emergency(format_args!(
        "RIP: {:#04x}:{:#018x}  RFLAGS: {:#x}  RSP: {:#04x}:{:#018x}  CR2: {:#018x}\n",
        frame.cs,
        frame.rip,
        frame.rflags,
        frame.ss,
        frame.rsp,
        Cr2::read_raw()
    ));
    print_emergency(format_args!(
        "rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}\nrsi {:016x} rdi {:016x} rbp {:016x}\n\
         r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}\nr12 {:016x} r13 {:016x} r14 {:016x} \
         r15 {:016x}\n",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    ));
    fail(FailCode::Trap)
}
