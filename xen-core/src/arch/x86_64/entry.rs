//! Entry and exit paths: the IDT, the `syscall` entries, and the return to a guest.
//!
//! Every way into the hypervisor builds the same [`Regs`] frame on the entry stack and calls
//! [`super::dispatch::handle_entry`]; every way out restores that frame.
//! - Exceptions and interrupts: the CPU pushes SS, RSP, RFLAGS, CS, RIP (switching to TSS.RSP0
//!   when it comes from ring 3); a per-vector stub pushes an error code where the CPU does not and
//!   the vector number.
//! - `syscall` (LSTAR from 64-bit code, CSTAR from 32-bit code): the CPU leaves RSP alone, so the
//!   stub switches to the entry stack itself (one CPU, interrupts masked by SFMASK, so a scratch
//!   slot is safe) and pushes the frame the CPU would have pushed, with vector [`ENTRY_SYSCALL`]
//!   and the guest's code selector (0xe033 or 0xe023). From the guest kernel in 64-bit code it is
//!   a hypercall; from guest user mode, or from 32-bit code, `handle_entry` bounces it to the
//!   guest kernel's syscall callback, as Xen does.
//!
//! A frame with vector [`ENTRY_SYSCALL`] and the 64-bit code selector leaves through `sysretq`
//! when its RIP is canonical (as Xen's `restore_all_guest` does); anything else through `iretq`.

use core::arch::{asm, global_asm};
use core::mem::size_of;

use xen_core::regs::{Regs, ENTRY_SYSCALL};

use super::gdt::{self, GUEST_CS32, GUEST_CS64, GUEST_DS, HYPERVISOR_CS, HYPERVISOR_DS};

/// Bytes between two vector stubs.
const STUB_SIZE: usize = 16;
/// Vectors for which the CPU pushes an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
const HAS_ERROR_CODE: u64 = 1 << 8
    | 1 << 10
    | 1 << 11
    | 1 << 12
    | 1 << 13
    | 1 << 14
    | 1 << 17
    | 1 << 21
    | 1 << 29
    | 1 << 30;

global_asm!(
    r#"
    .section .text.entry, "ax", @progbits
    .balign {stub_size}
    .globl xen_vector_stubs
xen_vector_stubs:
    .set vec, 0
    .rept 256
    .balign {stub_size}
    .if vec < 32 && (({has_error_code} >> vec) & 1) == 1
    .else
    pushq $0
    .endif
    pushq $vec
    .if vec == 1 || vec == 2 || vec == 8 || vec == 18
    jmp .Lentry_ist
    .else
    jmp .Lentry_common
    .endif
    .set vec, vec + 1
    .endr

    /* #DB, NMI, #DF and #MC arrive on IST stacks of their own (`gdt.rs`), whatever RSP was: so an
       NMI or a #DB deferred past `mov ss` (XSA-260) that hits the first instruction of the
       `syscall` entry, before it has switched away from the guest's stack, never writes its
       frame where the guest chose. Taken in the hypervisor, they run on that IST stack. Taken
       while a guest ran, the frame moves to the entry stack (free: no hypervisor code was
       running) and goes the common way, as Xen's `handle_ist_exception` does, so scheduling
       never runs on an IST stack and a nested IST event cannot overwrite it. */
.Lentry_ist:
    testb $3, 24(%rsp)          /* CS of the interrupted context, above vector and error code */
    jz .Lentry_common
    push %rax
    push %rcx
    mov xen_entry_stack_top(%rip), %rax
    .irp off, 48, 40, 32, 24, 16, 8, 0
    mov 16+\off(%rsp), %rcx
    mov %rcx, \off-56(%rax)
    .endr
    pop %rcx
    sub $56, %rax
    xchg %rax, (%rsp)           /* RAX back, the new stack pointer in its slot */
    mov (%rsp), %rsp
    jmp .Lentry_common

    /* syscall from a guest: RCX = guest RIP, R11 = guest RFLAGS, RSP = guest RSP. */
    .globl xen_syscall_entry
xen_syscall_entry:
    mov %rsp, xen_syscall_scratch(%rip)
    mov xen_entry_stack_top(%rip), %rsp
    pushq ${guest_ds}
    pushq xen_syscall_scratch(%rip)
    pushq %r11
    pushq ${guest_cs}
    pushq %rcx
    pushq $0
    pushq ${syscall_vector}
    jmp .Lentry_common

    /* syscall from 32-bit guest code (CSTAR): the same frame with the 32-bit code selector, which
       is how `handle_entry` knows to bounce it to the guest's 32-bit syscall callback. */
    .globl xen_syscall32_entry
xen_syscall32_entry:
    mov %rsp, xen_syscall_scratch(%rip)
    mov xen_entry_stack_top(%rip), %rsp
    pushq ${guest_ds}
    pushq xen_syscall_scratch(%rip)
    pushq %r11
    pushq ${guest_cs32}
    pushq %rcx
    pushq $0
    pushq ${syscall_vector}

.Lentry_common:
    /* SMAP: a guest may run with RFLAGS.AC set, which would lift SMAP in ring 0; clear it on
       every entry, as Xen's ASM_CLAC (the flags of the interrupted context are in the frame).
       `clac` exists only where SMAP does, hence the flag. */
    testb $1, xen_smap_enabled(%rip)
    jz 1f
    clac
1:
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
    cld
    mov %rsp, %rdi
    call {handle_entry}

    /* Restore the (possibly rewritten) frame at RSP and leave. */
    .globl xen_exit_to_frame
xen_exit_to_frame:
    /* A frame from `syscall` leaves through `sysretq`, which is cheaper, as Xen does: RIP comes
       from RCX and RFLAGS from R11 (the guest's own RCX/R11 were saved by its hypercall stub).
       Only with a canonical RIP (`sysretq` to a non-canonical one faults in ring 0), and only to
       the 64-bit code selector, which is the one `sysretq` loads. */
    cmpq ${syscall_vector}, {vector_off}(%rsp)
    jne .Lexit_iret
    cmpq ${guest_cs}, {cs_off}(%rsp)
    jne .Lexit_iret_sysret_regs
    mov {rip_off}(%rsp), %rcx
    mov %rcx, %r11
    sar $47, %r11
    inc %r11
    cmp $1, %r11
    ja .Lexit_iret_sysret_regs
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    add $8, %rsp                /* R11: becomes RFLAGS */
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    add $8, %rsp                /* RCX: becomes RIP */
    pop %rbx
    pop %rax
    add $16, %rsp               /* vector, error code */
    mov (%rsp), %rcx            /* RIP */
    mov 16(%rsp), %r11          /* RFLAGS */
    mov 24(%rsp), %rsp          /* the guest's RSP */
    sysretq

.Lexit_iret_sysret_regs:
    /* Leaving a `syscall` frame through `iretq`: RCX and R11 get what `sysret` would have
       loaded (RIP and RFLAGS), as in Xen's `.Lforce_iret`. */
    mov {rip_off}(%rsp), %rcx
    mov %rcx, {rcx_off}(%rsp)
    mov {rflags_off}(%rsp), %rcx
    mov %rcx, {r11_off}(%rsp)
.Lexit_iret:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    /* `iretq` checks the selectors it loads: a guest's `iret` hypercall can ask for CS 0xe008 or
       a null SS, and the CPU then faults here, in ring 0, with the guest's frame at RSP. The
       fault handler knows this address and delivers the fault to the guest instead, as Xen's
       `.Lft0` pre-exception-table entry does (`traps::iret_fault_to_guest`). */
    .globl xen_iret_to_guest
xen_iret_to_guest:
    iretq

    .section .bss.entry, "aw", @nobits
    .balign 8
xen_syscall_scratch: .skip 8
    .globl xen_smap_enabled
xen_smap_enabled: .skip 1
    .section .data.entry, "aw", @progbits
    .balign 8
    .globl xen_entry_stack_top
xen_entry_stack_top: .quad 0
    "#,
    stub_size = const STUB_SIZE,
    has_error_code = const HAS_ERROR_CODE,
    guest_ds = const GUEST_DS,
    guest_cs = const GUEST_CS64,
    guest_cs32 = const GUEST_CS32,
    syscall_vector = const ENTRY_SYSCALL,
    vector_off = const core::mem::offset_of!(Regs, vector),
    rip_off = const core::mem::offset_of!(Regs, rip),
    cs_off = const core::mem::offset_of!(Regs, cs),
    rflags_off = const core::mem::offset_of!(Regs, rflags),
    rcx_off = const core::mem::offset_of!(Regs, rcx),
    r11_off = const core::mem::offset_of!(Regs, r11),
    handle_entry = sym super::dispatch::handle_entry,
    options(att_syntax)
);

extern "C" {
    static xen_vector_stubs: u8;
    /// The `iretq` that returns to a guest (see the assembly).
    static xen_iret_to_guest: u8;
    /// Set once SMAP is enabled: the entry code then clears RFLAGS.AC.
    static mut xen_smap_enabled: u8;
    fn xen_syscall_entry();
    fn xen_syscall32_entry();
    static mut xen_entry_stack_top: u64;
}

/// One IDT gate (Intel SDM vol. 3, 6.14.1).
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

#[repr(C, align(4096))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

/// Vectors a guest may raise with `int n` directly (gate DPL 3): int3 and into, as on Xen. Any
/// other `int n` faults with #GP(n*8+2) and the hypervisor decides from the guest's trap table.
fn gate_dpl(vector: usize) -> u8 {
    if vector == 3 || vector == 4 {
        3
    } else {
        0
    }
}

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SFMASK: u32 = 0xc000_0084;

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` be valid for it; the caller owns the consequences.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags));
    }
}

/// Installs the IDT and the `syscall` MSRs. Runs once, after [`gdt::init`].
pub fn init() {
    let stubs = (&raw const xen_vector_stubs) as u64;
    // SAFETY: single CPU at boot, before interrupts are enabled or guests exist: nothing reads the
    // IDT or the entry-stack slot while they are written. Each gate points at its stub in .text.
    unsafe {
        let idt = &raw mut IDT.0;
        for v in 0..256 {
            let addr = stubs + (v * STUB_SIZE) as u64;
            let ist = match v {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                1 => gdt::IST_DEBUG,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            (*idt)[v] = Gate {
                offset_low: addr as u16,
                selector: HYPERVISOR_CS,
                ist,
                // Present, DPL, 64-bit interrupt gate (type 14: IF cleared on entry).
                type_attr: 0x80 | (gate_dpl(v) << 5) | 0xe,
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                reserved: 0,
            };
        }
        xen_entry_stack_top = gdt::entry_stack_top();
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: (&raw const IDT) as u64,
    };
    // SAFETY: the IDT is fully initialised above and lives for the hypervisor's lifetime. STAR puts
    // `syscall` on the hypervisor selectors and `sysret` on Xen's ring-3 ones (CS = base + 16 =
    // 0xe033, SS = base + 8 = 0xe02b); LSTAR and CSTAR point at the two syscall stubs; SFMASK
    // clears IF, TF, DF, AC and NT on entry, so the syscall stubs run with interrupts off.
    // EFER.SCE was set by the boot stub.
    unsafe {
        asm!("lidt [{}]", in(reg) &raw const ptr, options(nostack));
        let star = (u64::from(GUEST_CS32) << 48) | (u64::from(HYPERVISOR_CS) << 32);
        wrmsr(MSR_STAR, star);
        wrmsr(
            MSR_LSTAR,
            xen_syscall_entry as unsafe extern "C" fn() as usize as u64,
        );
        // `syscall` from 32-bit code lands on CSTAR (on AMD; Intel raises #UD): never leave it
        // at 0, which would run ring 0 at a guest-chosen address.
        wrmsr(
            MSR_CSTAR,
            xen_syscall32_entry as unsafe extern "C" fn() as usize as u64,
        );
        wrmsr(MSR_SFMASK, 0x4_7700);
    }
    let _ = HYPERVISOR_DS;
}

/// Leaves the hypervisor into the context `regs` describes, on a fresh entry stack. Used to start
/// a guest; every later exit happens by returning from `handle_entry`.
pub fn enter(regs: &Regs) -> ! {
    let top = gdt::entry_stack_top();
    let frame = (top - size_of::<Regs>() as u64) as *mut Regs;
    // SAFETY: the entry stack is not in use (this is the first entry into a guest, made from the
    // boot stack) and has room for one frame at its top. `xen_exit_to_frame` pops exactly a `Regs`
    // and returns with `iretq` to the ring-3 context it describes.
    unsafe {
        frame.write(*regs);
        asm!("mov rsp, {f}", "jmp xen_exit_to_frame", f = in(reg) frame, options(noreturn));
    }
}

/// The address of the `iretq` that returns to a guest: a fault there is the guest's.
pub fn iret_to_guest_address() -> u64 {
    (&raw const xen_iret_to_guest) as u64
}

/// CR4.SMEP: ring 0 never executes a user page.
const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP: ring 0 touches a user page only with RFLAGS.AC set (it never does).
const CR4_SMAP: u64 = 1 << 21;

/// CR4.OSFXSR and CR4.OSXMMEXCPT.
const CR4_OSFXSR_OSXMMEXCPT: u64 = (1 << 9) | (1 << 10);

/// Enables SSE for everyone, as Xen does at boot (`mmu_cr4_features`): CR4.OSFXSR (the state is
/// saved and restored with `fxsave`/`fxrstor`, which the context switch does) and CR4.OSXMMEXCPT
/// (SIMD exceptions raise #XM, bounced to the guest). Without them a guest's `ldmxcsr` or any SSE
/// instruction raises #UD. Every x86-64 CPU has FXSR and SSE.
pub fn enable_sse() {
    // SAFETY: setting the two bits only makes SSE instructions usable and routes SIMD exceptions
    // to #XM; the hypervisor itself is built without SSE.
    unsafe {
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 |= CR4_OSFXSR_OSXMMEXCPT;
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// CR4.MCE.
const CR4_MCE: u64 = 1 << 6;
/// MSR_IA32_CR_PAT.
const MSR_PAT: u32 = 0x277;

/// The rest of Xen's start-of-day CPU setup a PV guest can see: CR4.MCE where the CPU has
/// machine checks (`mcheck_init`; a PV guest reads it in its CR4, `emulate::guest_cr4`), and
/// Xen's PAT (`XEN_MSR_PAT`), which PV guests read and select with their PTEs' PAT, PCD and
/// PWT bits. Its entries 0..3 are the power-on ones (WB, WT, UC-, UC), which are all the
/// hypervisor's own mappings use; 4..7 become WC, WP, UC, UC.
pub fn init_cr4_mce_and_pat() {
    let mce = core::arch::x86_64::__cpuid(1).edx & (1 << 7) != 0;
    // SAFETY: CR4.MCE only lets a machine check raise #MC (vector 18, a fatal trap here, as a
    // machine check is in any case); the PAT change leaves entries 0..3, the ones in use, as
    // they are, and nothing maps memory with the PAT bit before this.
    unsafe {
        if mce {
            let mut cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            cr4 |= CR4_MCE;
            asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        }
        let pat = xen_core::emulate::msr::XEN_MSR_PAT;
        asm!("wrmsr", in("ecx") MSR_PAT, in("eax") pat as u32, in("edx") (pat >> 32) as u32,
             options(nomem, nostack));
    }
}

/// Enables SMEP and SMAP where the CPU has them (CPUID leaf 7, EBX bits 7 and 20), as Xen does
/// by default: every guest page is a user page (64-bit PV guests run in ring 3), so ring 0 can
/// then neither run guest code nor read or write guest memory through a guest mapping by mistake
/// (the hypervisor reaches guest memory through its direct map only). Returns (SMEP, SMAP).
pub fn enable_smep_smap() -> (bool, bool) {
    let max = core::arch::x86_64::__cpuid(0).eax;
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0).ebx;
    let smep = max >= 7 && leaf7 & (1 << 7) != 0;
    let smap = max >= 7 && leaf7 & (1 << 20) != 0;
    if smap {
        // SAFETY: a byte only the entry code reads; written before CR4.SMAP is set and before
        // any guest runs, so every entry from then on clears RFLAGS.AC.
        unsafe { (&raw mut xen_smap_enabled).write_volatile(1) };
    }
    // SAFETY: setting the bits the CPU reports only adds protection checks; nothing in ring 0
    // executes or accesses user pages (the direct map and the image are supervisor mappings).
    unsafe {
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        if smep {
            cr4 |= CR4_SMEP;
        }
        if smap {
            cr4 |= CR4_SMAP;
        }
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
    (smep, smap)
}

/// `selftest=ist`: the two events that must not run on a stack the guest chose, made to happen
/// in ring 0. First a data breakpoint that fires while RSP holds a guest address (what a
/// guest's `mov ss` + `syscall` does to the `syscall` entry on real hardware, XSA-260: TCG
/// delivers that #DB before the `syscall`, so it cannot be provoked from a guest there); without
/// the #DB's IST stack the CPU would push its frame at that address, fault, and double-fault.
/// Then an NMI in ring 0, which must be survived. Returns whether both were handled.
pub fn ist_selftest() -> bool {
    use core::sync::atomic::Ordering;
    static PROBE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    /// A user-half address nothing maps for the hypervisor: what a guest's RSP looks like.
    const GUEST_RSP: u64 = 0x1000;
    let dbs = super::traps::XEN_DEBUG_TRAPS.load(Ordering::SeqCst);
    // DR7: L0 enabled, R/W0 = 01 (data writes), LEN0 = 11 (8 bytes).
    let dr7: u64 = 1 | (0b01 << 16) | (0b11 << 18);
    // SAFETY: interrupts are off and no guest exists. DR0 watches a hypervisor static that only
    // this code writes. The store runs with RSP at an unmapped user address and touches no stack;
    // the #DB it raises is a trap taken after it, on the #DB's IST stack, and returns to the
    // instruction that puts RSP back. DR7 is cleared afterwards.
    unsafe {
        asm!("mov dr0, {}", in(reg) (&raw const PROBE) as u64, options(nomem, nostack));
        asm!("mov dr7, {}", in(reg) dr7, options(nomem, nostack));
        asm!(
            "mov {save}, rsp",
            "mov rsp, {bad}",
            "mov qword ptr [{probe}], 1",
            "mov rsp, {save}",
            save = out(reg) _,
            bad = in(reg) GUEST_RSP,
            probe = in(reg) (&raw const PROBE) as u64,
        );
        asm!("mov dr7, {}", in(reg) 0x400u64, options(nomem, nostack));
    }
    let db_ok = super::traps::XEN_DEBUG_TRAPS.load(Ordering::SeqCst) == dbs + 1;
    crate::arch::x86_64::console::printk!(
        "ist selftest: #DB with RSP {GUEST_RSP:#x} in ring 0: {}\n",
        if db_ok {
            "taken on the IST stack, survived"
        } else {
            "NOT SEEN"
        }
    );
    let nmis = super::traps::XEN_NMIS.load(Ordering::SeqCst);
    if super::apic::init().is_err() {
        return false;
    }
    super::apic::send_self_nmi();
    let mut spins = 0u32;
    while super::traps::XEN_NMIS.load(Ordering::SeqCst) == nmis && spins < 10_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    let nmi_ok = super::traps::XEN_NMIS.load(Ordering::SeqCst) == nmis + 1;
    crate::arch::x86_64::console::printk!(
        "ist selftest: NMI in ring 0: {}\n",
        if nmi_ok { "survived" } else { "NOT SEEN" }
    );
    db_ok && nmi_ok
}
