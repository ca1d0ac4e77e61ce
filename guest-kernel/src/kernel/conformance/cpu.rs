//! Conformance cases for CPU virtualization: exceptions and the trap table, `iret`, callbacks,
//! segment bases, the FPU switch, privileged-instruction emulation, CPUID and CR3, `set_gdt`,
//! `stack_switch` and `vm_assist`.
//!
//! Each case runs under its own guard ([`Suite::run`]): a fault the case did not arm for is
//! printed as `unexpected trap ...` and the suite goes on. Faults a case does arm for go through
//! [`probe!`]: the handler records vector, error code and CR2, and execution resumes after the
//! probed instruction, so a case prints e.g. `vector=14 error=0x2 cr2_ok=1 rip_ok=1`, never the
//! addresses themselves.
//!
//! Many answers here are Xen's emulation of a privileged instruction a PV kernel executes in ring
//! 3: the CPU raises #GP, Xen decodes the instruction (`pv_emulate_privileged_op` in Xen's
//! `arch/x86/pv/emul-priv-op.c`) and either emulates it invisibly or injects the #GP into the
//! guest.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_kernel::paging::{index, make_entry, PTE_A, PTE_D, PTE_FRAME_MASK, PTE_P, PTE_RW};
use hypercall_abi::arch_x86_64::{
    TrapInfo, VGCF_in_syscall, FIRST_RESERVED_GDT_ENTRY, FLAT_KERNEL_CS, FLAT_KERNEL_SS,
    SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL,
};
use hypercall_abi::callback::{
    CALLBACKF_mask_events, CALLBACKOP_register, CALLBACKOP_unregister, CALLBACKTYPE_event,
    CALLBACKTYPE_failsafe, CALLBACKTYPE_nmi, CALLBACKTYPE_syscall, CallbackRegister,
    CallbackUnregister,
};
use hypercall_abi::xen::{
    __HYPERVISOR_callback_op, __HYPERVISOR_iret, __HYPERVISOR_set_gdt, __HYPERVISOR_set_trap_table,
    VMASST_CMD_disable, VMASST_CMD_enable, VMASST_TYPE_4gb_segments,
    VMASST_TYPE_runstate_update_flag, VMASST_TYPE_writable_pagetables, DOMID_SELF,
};

use super::super::boot::hypercall_page;
use super::super::hypercall::{self as hc, ptr as gp};
use super::super::shared_info;
use super::super::traps::{self, probe, Probe, INT80, SOFT_DPL0, SOFT_DPL3};
use super::{flush_local, mm, normal, scratch, values, Suite, BAD_CMD, NON_CANONICAL, UNMAPPED};

/// CR0.TS: set by `fpu_taskswitch(1)`, makes the next FPU instruction raise #NM.
const CR0_TS: u64 = 1 << 3;
/// CR0.MP: a bit Xen does not let a PV guest change.
const CR0_MP: u64 = 1 << 1;
/// RFLAGS.IF as it appears in a bounce frame or an `iret` frame.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.CF.
const RFLAGS_CF: u64 = 1 << 0;
/// DR6.BS: the last #DB was a single step.
const DR6_BS: i64 = 1 << 14;
/// A code selector with RPL 0, as Xen writes `cs` into a bounce frame for kernel mode and as an
/// `iret` frame must give it to stay in kernel mode (RPL 3 would mean "return to user mode").
const KERNEL_CS_RPL0: u64 = (FLAT_KERNEL_CS & !3) as u64;
/// An MSR index no CPU defines.
const UNKNOWN_MSR: u32 = 0x1234_5678;
/// MSR_FS_BASE, MSR_GS_BASE and MSR_SHADOW_GS_BASE.
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;

/// Every group of this module, in order.
pub(super) fn cases(s: &mut Suite) {
    if let Err(why) = s.handlers_ready() {
        // Without handlers a fault would kill the domain: the whole module is skipped.
        s.case("cpu.skipped", format_args!("{why}"));
        return;
    }
    trap_table_cases(s);
    exception_cases(s);
    iret_cases(s);
    fpu_cases(s);
    callback_cases(s);
    segment_cases(s);
    stack_switch_cases(s);
    cpuid_cases(s);
    control_register_cases(s);
    privileged_instruction_cases(s);
    set_gdt_cases(s);
    l1_pagetable_cases(s);
    vm_assist_cases(s);
}

fn bit(v: bool) -> u8 {
    v as u8
}

/// `ud2`: the simplest fault, used to check that a trap table entry is live.
fn ud2() -> Probe {
    // SAFETY: `ud2` always raises #UD; the armed handler resumes after it.
    unsafe { probe!("ud2") }
}

/// `set_trap_table` with a table of one `entry` (plus the terminator); the return code.
fn register_one(entry: TrapInfo) -> i64 {
    let table = [entry, TrapInfo::default()];
    // SAFETY: each caller's entry points at a stub of `traps.rs` (or is refused by the hypervisor).
    unsafe { hc::set_trap_table(Some(&table)) }
}

fn trap_table_cases(s: &mut Suite) {
    s.run("traps.set_trap_table_bad_pointer", || {
        // SAFETY: an unmapped table: the hypervisor must fail the copy with -EFAULT.
        let rc = unsafe { hc::hypercall(__HYPERVISOR_set_trap_table, UNMAPPED, 0, 0, 0, 0) };
        values!("{rc}")
    });

    // An entry with a non-canonical address after a good one: Xen applies entries one by one,
    // so the first (a new vector) is live when the second is refused; the refused entry leaves
    // the old handler of its vector in place.
    s.run("traps.set_trap_table_non_canonical", || {
        let mut bad = traps::entry(6, 0);
        bad.address = NON_CANONICAL;
        let table = [traps::entry(SOFT_DPL3, 3), bad, TrapInfo::default()];
        // SAFETY: the first entry points at a stub; the second must be refused.
        let rc = unsafe { hc::set_trap_table(Some(&table)) };
        // SAFETY: `int $0x30` enters the new entry, or raises #GP if it was not applied.
        let first = unsafe { probe!("int $0x30") };
        let old = ud2();
        let r = traps::reinstall();
        values!(
            "rc={rc} first_entry=[{}] old_vector_6=[{old}] reinstall={r}",
            SoftInt(&first)
        )
    });

    // A code selector of 0: 64-bit PV ignores trap_info.cs (Xen fixes up its RPL and always
    // bounces with FLAT_KERNEL_CS), so the entry is accepted and works.
    s.run("traps.set_trap_table_null_cs", || {
        let mut e = traps::entry(6, 0);
        e.cs = 0;
        let rc = register_one(e);
        let p = ud2();
        let r = traps::reinstall();
        values!("rc={rc} ud2={p} reinstall={r}")
    });

    // A null table clears the whole virtual IDT.
    s.run("traps.set_trap_table_null_clears", || {
        // SAFETY: the table is cleared and reinstalled straight away; nothing traps in between.
        let rc = unsafe { hc::set_trap_table(None) };
        let r = traps::install();
        values!("rc={rc} reinstall={r}")
    });
}

fn exception_cases(s: &mut Suite) {
    // Xen's bounce frame for a fault in kernel mode: CS with RPL 0, the saved upcall mask (1:
    // the suite runs with upcalls masked) in bits 32..39 and its inverse in RFLAGS.IF.
    s.run("traps.invalid_opcode", || {
        let p = ud2();
        let t = p.trap.unwrap_or_default();
        values!(
            "{p} cs={:#x} saved_upcall_mask={} rflags_if={}",
            t.cs & 0xffff,
            (t.cs >> 32) & 0xff,
            bit(t.rflags & RFLAGS_IF != 0)
        )
    });

    s.run("traps.page_fault_read_unmapped", || {
        // SAFETY: a load from an unmapped address: #PF, and the handler resumes after it.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) UNMAPPED, v = out(reg) _) };
        values!("{p} cr2_ok={}", cr2_is(&p, UNMAPPED))
    });

    s.run("traps.page_fault_write_unmapped", || {
        // SAFETY: a store to an unmapped address: #PF, nothing is written.
        let p = unsafe { probe!("movq $0, ({a})", a = in(reg) UNMAPPED + 8) };
        values!("{p} cr2_ok={}", cr2_is(&p, UNMAPPED + 8))
    });

    // Xen records the faulting address in its copy of CR2 too: `mov %cr2` (emulated) reads it.
    s.run("traps.page_fault_cr2_register", || {
        // SAFETY: as above, a load from an unmapped address.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) UNMAPPED + 16, v = out(reg) _) };
        let (q, cr2) = read_cr(2);
        values!(
            "fault={} mov_cr2={q} matches={}",
            p.trap.is_some() as u8,
            bit(cr2 == Some(UNMAPPED + 16))
        )
    });

    // The bootstrap page tables are mapped read-only: a store to the L4 is a protection fault
    // (error P|W). Xen emulates stores only to L1 tables (below).
    s.run("traps.page_fault_write_readonly", || {
        let l4 = mm::layout().pt_base;
        let p = store_same(l4);
        values!("{p} cr2_ok={}", cr2_is(&p, l4))
    });

    s.run("traps.general_protection_non_canonical", || {
        // SAFETY: a load from a non-canonical address: #GP(0), nothing is read.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) NON_CANONICAL, v = out(reg) _) };
        values!("{p}")
    });

    s.run("traps.divide_error", || {
        // SAFETY: 1 / 0: #DE before RAX or RDX change.
        let p = unsafe {
            probe!(
                "div {d}",
                d = in(reg) 0u64,
                inout("rax") 1u64 => _,
                inout("rdx") 0u64 => _
            )
        };
        values!("{p}")
    });

    // int3 is a trap: the frame's RIP is the next instruction.
    s.run("traps.int3", || {
        // SAFETY: `int3` raises #BP and changes nothing else.
        let p = unsafe { probe!("int3") };
        values!(
            "vector={} rip_after_insn={}",
            p.trap.map_or(-1, |t| t.vector as i64),
            bit(p.rip_after_insn())
        )
    });

    // Single step: TF set by popf traps after the next instruction; Xen reports it in DR6.
    s.run("traps.single_step", || {
        // SAFETY: sets RFLAGS.TF for one `nop`; the #DB handler clears TF in the frame it returns
        // to, so nothing else is stepped.
        let p = unsafe { probe!("pushfq\norq $0x100, (%rsp)\npopfq\nnop") };
        let dr6 = hc::get_debugreg(6);
        values!(
            "vector={} rip_after_insn={} dr6_bs={}",
            p.trap.map_or(-1, |t| t.vector as i64),
            bit(p.rip_after_insn()),
            bit(dr6 >= 0 && dr6 & DR6_BS != 0)
        )
    });

    // `int $0x80` without a registered handler: Xen's int80 fast path finds none and reports a
    // #GP with the IDT-vector error code, RIP rewound to the instruction, like hardware would.
    s.run("traps.int80_no_handler", || {
        // SAFETY: a software interrupt with no handler: #GP, the handler resumes after it.
        let p = unsafe { probe!("int $0x80") };
        values!("{p}")
    });

    s.run("traps.int80_dpl3_handler", || {
        let rc = register_one(traps::entry(INT80, 3));
        // SAFETY: `int $0x80` enters the stub registered just above.
        let p = unsafe { probe!("int $0x80") };
        let r = traps::reinstall();
        values!("rc={rc} {} reinstall={r}", SoftInt(&p))
    });

    // Other software interrupts: allowed if the entry's DPL admits the guest kernel, else #GP
    // with the error code naming the IDT vector ((vector << 3) | 2).
    s.run("traps.int_n_dpl3", || {
        let rc = register_one(traps::entry(SOFT_DPL3, 3));
        // SAFETY: `int $0x30` enters the stub registered just above.
        let p = unsafe { probe!("int $0x30") };
        let r = traps::reinstall();
        values!("rc={rc} {} reinstall={r}", SoftInt(&p))
    });

    s.run("traps.int_n_dpl0", || {
        let rc = register_one(traps::entry(SOFT_DPL0, 0));
        // SAFETY: `int $0x31` is refused for DPL 0: #GP, handled.
        let p = unsafe { probe!("int $0x31") };
        let r = traps::reinstall();
        values!("rc={rc} {p} reinstall={r}")
    });

    s.run("traps.int_n_no_handler", || {
        // SAFETY: `int $0x32` has no handler: #GP, handled.
        let p = unsafe { probe!("int $0x32") };
        values!("{p}")
    });
}

/// How a software interrupt arrived: its vector and whether RIP points past `int $n`.
struct SoftInt<'a>(&'a Probe);

impl core::fmt::Display for SoftInt<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.trap {
            None => write!(f, "no_trap"),
            Some(t) => write!(f, "{t} rip_after_insn={}", bit(self.0.rip_after_insn())),
        }
    }
}

/// Whether the trap of `p` is a page fault whose CR2 (from vcpu_info) is `addr`.
fn cr2_is(p: &Probe, addr: u64) -> u8 {
    bit(p.trap.is_some_and(|t| t.cr2 == Some(addr)))
}

/// Register values loaded before the `int3` of `iret.registers_intact`, RAX to R15 (RSP aside).
const PATTERNS: [u64; 15] = [
    0x1111_0000_0000_00aa, // rax
    0x2222_0000_0000_00bb, // rbx
    0x3333_0000_0000_00cc, // rcx
    0x4444_0000_0000_00dd, // rdx
    0x5555_0000_0000_00ee, // rsi
    0x6666_0000_0000_00ff, // rdi
    0x7777_0000_0000_0011, // rbp
    0x8888_0000_0000_0022, // r8
    0x9999_0000_0000_0033, // r9
    0xaaaa_0000_0000_0044, // r10
    0xbbbb_0000_0000_0055, // r11
    0xcccc_0000_0000_0066, // r12
    0xdddd_0000_0000_0077, // r13
    0xeeee_0000_0000_0088, // r14
    0xffff_0000_0000_0099, // r15
];

/// The registers seen right after the `int3` returned, then RFLAGS.
static SEEN: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn iret_cases(s: &mut Suite) {
    // Every general-purpose register and the arithmetic flags survive a trap and the return
    // through HYPERVISOR_iret (RCX and R11 travel in the bounce frame and the iret frame).
    s.run("iret.registers_intact", || {
        // SAFETY: saves the callee-saved registers, loads patterns into all of them, takes an
        // `int3` (handled, resuming at 3:), stores what the registers hold into SEEN and
        // restores. The caller-saved registers are declared clobbered.
        unsafe {
            asm!(
                "push %rbx",
                "push %rbp",
                "push %r12",
                "push %r13",
                "push %r14",
                "push %r15",
                "lea 3f(%rip), %rax",
                "mov %rax, {recovery}(%rip)",
                "movabs ${p0}, %rax",
                "movabs ${p1}, %rbx",
                "movabs ${p2}, %rcx",
                "movabs ${p3}, %rdx",
                "movabs ${p4}, %rsi",
                "movabs ${p5}, %rdi",
                "movabs ${p6}, %rbp",
                "movabs ${p7}, %r8",
                "movabs ${p8}, %r9",
                "movabs ${p9}, %r10",
                "movabs ${p10}, %r11",
                "movabs ${p11}, %r12",
                "movabs ${p12}, %r13",
                "movabs ${p13}, %r14",
                "movabs ${p14}, %r15",
                "stc",
                "int3",
                "3:",
                "pushfq",
                "popq {seen}+120(%rip)",
                "mov %rax, {seen}(%rip)",
                "mov %rbx, {seen}+8(%rip)",
                "mov %rcx, {seen}+16(%rip)",
                "mov %rdx, {seen}+24(%rip)",
                "mov %rsi, {seen}+32(%rip)",
                "mov %rdi, {seen}+40(%rip)",
                "mov %rbp, {seen}+48(%rip)",
                "mov %r8, {seen}+56(%rip)",
                "mov %r9, {seen}+64(%rip)",
                "mov %r10, {seen}+72(%rip)",
                "mov %r11, {seen}+80(%rip)",
                "mov %r12, {seen}+88(%rip)",
                "mov %r13, {seen}+96(%rip)",
                "mov %r14, {seen}+104(%rip)",
                "mov %r15, {seen}+112(%rip)",
                "pop %r15",
                "pop %r14",
                "pop %r13",
                "pop %r12",
                "pop %rbp",
                "pop %rbx",
                recovery = sym traps::RECOVERY,
                seen = sym SEEN,
                p0 = const PATTERNS[0],
                p1 = const PATTERNS[1],
                p2 = const PATTERNS[2],
                p3 = const PATTERNS[3],
                p4 = const PATTERNS[4],
                p5 = const PATTERNS[5],
                p6 = const PATTERNS[6],
                p7 = const PATTERNS[7],
                p8 = const PATTERNS[8],
                p9 = const PATTERNS[9],
                p10 = const PATTERNS[10],
                p11 = const PATTERNS[11],
                p12 = const PATTERNS[12],
                p13 = const PATTERNS[13],
                p14 = const PATTERNS[14],
                out("rax") _,
                out("rcx") _,
                out("rdx") _,
                out("rsi") _,
                out("rdi") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                options(att_syntax)
            );
        }
        let trap = traps::take_last();
        let intact = PATTERNS
            .iter()
            .zip(SEEN.iter())
            .filter(|(p, s)| s.load(Ordering::SeqCst) == **p)
            .count();
        let cf = SEEN[15].load(Ordering::SeqCst) & RFLAGS_CF != 0;
        values!(
            "vector={} registers_intact={intact}/15 carry_intact={}",
            trap.map_or(-1, |t| t.vector as i64),
            bit(cf)
        )
    });

    // HYPERVISOR_iret called directly (not from a trap): with flags 0, RAX, RCX and R11 come
    // from the frame, and RFLAGS.IF of the frame becomes the inverse of the upcall mask.
    s.run("iret.direct", || {
        let r = direct_iret(0, false);
        values!(
            "rax_ok={} rcx_ok={} r11_ok={} upcall_mask={}",
            bit(r.rax == IRET_RAX),
            bit(r.rcx == IRET_RCX),
            bit(r.r11 == IRET_R11),
            shared_info::upcall_mask().map_or(-1, i32::from)
        )
    });

    // With VGCF_in_syscall Xen returns like `sysret`: RCX and R11 are not restored (RCX ends up
    // holding the return address).
    s.run("iret.in_syscall", || {
        let r = direct_iret(VGCF_in_syscall, false);
        values!(
            "rax_ok={} rcx_restored={} r11_restored={} rcx_is_rip={}",
            bit(r.rax == IRET_RAX),
            bit(r.rcx == IRET_RCX),
            bit(r.r11 == IRET_R11),
            bit(r.rcx == r.target)
        )
    });

    // RFLAGS.IF in the iret frame sets the upcall mask: IF=1 unmasks, IF=0 masks.
    s.run("iret.rflags_if_sets_upcall_mask", || {
        direct_iret(0, true);
        let unmasked = shared_info::upcall_mask().map_or(-1, i32::from);
        direct_iret(0, false);
        let masked = shared_info::upcall_mask().map_or(-1, i32::from);
        shared_info::set_upcall_mask(1);
        values!("if_set_mask={unmasked} if_clear_mask={masked}")
    });
}

const IRET_RAX: u64 = 0x0123_4567_89ab_cdef;
const IRET_RCX: u64 = 0x1357_9bdf_2468_ace0;
const IRET_R11: u64 = 0x0246_8ace_1357_9bdf;

/// What the code after a direct `iret` saw.
struct IretSeen {
    rax: u64,
    rcx: u64,
    r11: u64,
    /// The return address given in the frame.
    target: u64,
}

/// Builds an `iret` frame returning to the next instruction on the current stack, with
/// `iret_context.flags = flags` and RFLAGS.IF = `set_if`, and jumps to the hypercall page's iret
/// stub with RAX, RCX and R11 holding the IRET_* patterns (the stub pushes them).
fn direct_iret(flags: u64, set_if: bool) -> IretSeen {
    let (rax, rcx, r11, target): (u64, u64, u64, u64);
    // SAFETY: the frame returns to label 3 in kernel mode (CS with RPL 0) on the stack pointer
    // the block started with, so the code after the block runs as if the block had fallen
    // through. RAX, RCX and R11 are outputs; every other register is preserved by Xen.
    unsafe {
        asm!(
            "lea 3f(%rip), {target}",
            "mov %rsp, {sp}",
            "pushq ${ss}",
            "push {sp}",
            "pushfq",
            "andq $~{rflags_if}, (%rsp)",
            "or {ifbit}, (%rsp)",
            "pushq ${cs}",
            "push {target}",
            "push {flags}",
            "movabs ${rax}, %rax",
            "movabs ${rcx}, %rcx",
            "movabs ${r11}, %r11",
            "jmp {hypercall_page}+{iret_offset}",
            "3:",
            target = out(reg) target,
            sp = out(reg) _,
            ifbit = in(reg) if set_if { RFLAGS_IF } else { 0 },
            flags = in(reg) flags,
            ss = const FLAT_KERNEL_SS,
            cs = const KERNEL_CS_RPL0,
            rflags_if = const RFLAGS_IF,
            rax = const IRET_RAX,
            rcx = const IRET_RCX,
            r11 = const IRET_R11,
            hypercall_page = sym hypercall_page,
            iret_offset = const __HYPERVISOR_iret * 32,
            out("rax") rax,
            out("rcx") rcx,
            out("r11") r11,
            options(att_syntax)
        );
    }
    IretSeen {
        rax,
        rcx,
        r11,
        target,
    }
}

/// Reads control register `n` with `mov %crN` (emulated by Xen); the probe and the value.
fn read_cr(n: u8) -> (Probe, Option<u64>) {
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

/// CR0.TS as `mov %cr0` reads it: 1, 0, or -1 if the read trapped.
fn cr0_ts() -> i32 {
    read_cr(0).1.map_or(-1, |cr0| i32::from(cr0 & CR0_TS != 0))
}

/// `fnstcw`: an x87 instruction that raises #NM while CR0.TS is set.
fn x87() -> Probe {
    let mut cw: u16 = 0;
    // SAFETY: stores the x87 control word into a local; no other effect.
    unsafe { probe!("fnstcw ({p})", p = in(reg) &raw mut cw) }
}

fn fpu_cases(s: &mut Suite) {
    s.run("fpu.taskswitch_set", || {
        let rc = hc::fpu_taskswitch(true);
        let ts = cr0_ts();
        let p = x87();
        hc::fpu_taskswitch(false);
        values!("rc={rc} cr0_ts={ts} x87={p}")
    });

    // Xen clears the virtual TS when it delivers #NM (as if the guest's handler had done `clts`),
    // so the instruction succeeds when retried.
    s.run("fpu.nm_clears_ts", || {
        hc::fpu_taskswitch(true);
        let first = x87();
        let ts = cr0_ts();
        let retry = x87();
        hc::fpu_taskswitch(false);
        values!(
            "first={} cr0_ts={ts} retry={retry}",
            bit(first.trap.is_some())
        )
    });

    s.run("fpu.taskswitch_clear", || {
        hc::fpu_taskswitch(true);
        let rc = hc::fpu_taskswitch(false);
        values!("rc={rc} cr0_ts={} x87={}", cr0_ts(), x87())
    });

    // `clts` is emulated: it clears the virtual TS like fpu_taskswitch(0).
    s.run("fpu.clts", || {
        hc::fpu_taskswitch(true);
        // SAFETY: clears CR0.TS (emulated by Xen); the kernel wants TS clear anyway.
        let p = unsafe { probe!("clts") };
        let ts = cr0_ts();
        hc::fpu_taskswitch(false);
        values!("{p} cr0_ts={ts} x87={}", x87())
    });
}

/// Registers `address` as callback `kind` with `flags`; the return code.
fn register_callback(kind: u16, flags: u16, address: u64) -> i64 {
    let reg = CallbackRegister {
        r#type: kind,
        flags,
        address,
        ..Default::default()
    };
    // SAFETY: the cases register either the stubs of traps.rs (which handle what Xen pushes), 0
    // (no callback), or addresses the hypervisor must refuse; the syscall and failsafe callbacks
    // are never entered by this kernel (no user mode, no bad segment reloads).
    unsafe { hc::callback_op(CALLBACKOP_register, &reg) }
}

fn unregister_callback(kind: u16) -> i64 {
    let unreg = CallbackUnregister {
        r#type: kind,
        _unused: 0,
    };
    // SAFETY: unregistering takes nothing but the type.
    unsafe { hc::callback_op(CALLBACKOP_unregister, &unreg) }
}

fn callback_cases(s: &mut Suite) {
    // Each registration is undone by registering what the suite runs with: the upcall entry for
    // events, nothing (0) for the others.
    s.run("callback.register_failsafe", || {
        let rc = register_callback(
            CALLBACKTYPE_failsafe,
            CALLBACKF_mask_events,
            traps::failsafe_entry_address(),
        );
        let undo = register_callback(CALLBACKTYPE_failsafe, 0, 0);
        values!("rc={rc} undo={undo}")
    });

    s.run("callback.register_syscall", || {
        let rc = register_callback(
            CALLBACKTYPE_syscall,
            CALLBACKF_mask_events,
            traps::upcall_entry(),
        );
        let undo = register_callback(CALLBACKTYPE_syscall, 0, 0);
        values!("rc={rc} undo={undo}")
    });

    // The NMI callback is the one type that can be unregistered.
    s.run("callback.register_nmi", || {
        let rc = register_callback(CALLBACKTYPE_nmi, 0, traps::upcall_entry());
        let unreg = unregister_callback(CALLBACKTYPE_nmi);
        values!("rc={rc} unregister={unreg}")
    });

    s.run("callback.register_unknown_type", || {
        values!("{}", register_callback(99, 0, traps::upcall_entry()))
    });

    s.run("callback.register_non_canonical", || {
        values!(
            "{}",
            register_callback(CALLBACKTYPE_event, 0, NON_CANONICAL)
        )
    });

    s.run("callback.unregister_event", || {
        values!("{}", unregister_callback(CALLBACKTYPE_event))
    });

    s.run("callback.unregister_unknown_type", || {
        values!("{}", unregister_callback(99))
    });

    s.run("callback.unknown_cmd", || {
        let reg = CallbackRegister::default();
        // SAFETY: an unknown command reads nothing.
        let rc = unsafe { hc::callback_op(BAD_CMD, &reg) };
        values!("{rc}")
    });

    s.run("callback.register_bad_pointer", || {
        // SAFETY: an unmapped argument: -EFAULT.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_callback_op,
                CALLBACKOP_register.into(),
                UNMAPPED,
                0,
                0,
                0,
            )
        };
        values!("{rc}")
    });

    // The older hypercall registers all three at once and always returns 0, silently ignoring
    // addresses it refuses.
    s.run("callback.set_callbacks", || {
        // SAFETY: the event entry is the suite's own; failsafe and syscall are never entered.
        let rc = unsafe { hc::set_callbacks(traps::upcall_entry(), 0, 0) };
        values!("{rc}")
    });

    s.run("callback.set_callbacks_non_canonical", || {
        // SAFETY: every address is refused; the event entry is registered again right after.
        let rc = unsafe { hc::set_callbacks(NON_CANONICAL, NON_CANONICAL, NON_CANONICAL) };
        let undo = traps::register_upcall();
        values!("rc={rc} undo={undo}")
    });
}

/// Targets for the segment-base cases: a segment pointed at one reads it at offset 0.
static FS_TARGET: AtomicU64 = AtomicU64::new(0x0f5f_5f5f_0000_0001);
static GS_TARGET: AtomicU64 = AtomicU64::new(0x0656_5656_0000_0002);

/// Reads MSR `msr` with `rdmsr` (emulated by Xen for the MSRs it knows).
fn rdmsr(msr: u32) -> (Probe, Option<u64>) {
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

/// `%fs:0` or `%gs:0`.
fn read_segment_word(gs: bool) -> u64 {
    let v: u64;
    // SAFETY: the cases point the segment at a live static before reading.
    unsafe {
        if gs {
            asm!("mov %gs:0, {v}", v = out(reg) v, options(att_syntax, nostack, readonly));
        } else {
            asm!("mov %fs:0, {v}", v = out(reg) v, options(att_syntax, nostack, readonly));
        }
    }
    v
}

/// `set_segment_base`, for bases nothing in the kernel uses (the Rust code never touches FS/GS).
fn set_base(which: u32, base: u64) -> i64 {
    // SAFETY: the kernel does not use FS or GS; each case restores the base it changed.
    unsafe { hc::set_segment_base(which, base) }
}

fn segment_cases(s: &mut Suite) {
    s.run("segment.fs_base", || {
        let old = rdmsr(MSR_FS_BASE).1.unwrap_or(0);
        let target = FS_TARGET.as_ptr() as u64;
        let rc = set_base(SEGBASE_FS, target);
        let reads = read_segment_word(false) == FS_TARGET.load(Ordering::SeqCst);
        let msr = rdmsr(MSR_FS_BASE).1 == Some(target);
        let undo = set_base(SEGBASE_FS, old);
        values!(
            "rc={rc} fs0_reads_target={} rdmsr_matches={} undo={undo}",
            bit(reads),
            bit(msr)
        )
    });

    s.run("segment.gs_kernel_base", || {
        let old = rdmsr(MSR_GS_BASE).1.unwrap_or(0);
        let target = GS_TARGET.as_ptr() as u64;
        let rc = set_base(SEGBASE_GS_KERNEL, target);
        let reads = read_segment_word(true) == GS_TARGET.load(Ordering::SeqCst);
        let msr = rdmsr(MSR_GS_BASE).1 == Some(target);
        let undo = set_base(SEGBASE_GS_KERNEL, old);
        values!(
            "rc={rc} gs0_reads_target={} rdmsr_matches={} undo={undo}",
            bit(reads),
            bit(msr)
        )
    });

    // The user GS base is the one `swapgs` brings in: invisible in kernel mode but for the MSR.
    s.run("segment.gs_user_base", || {
        let old = rdmsr(MSR_SHADOW_GS_BASE).1.unwrap_or(0);
        let target = GS_TARGET.as_ptr() as u64;
        let rc = set_base(SEGBASE_GS_USER, target);
        let msr = rdmsr(MSR_SHADOW_GS_BASE).1 == Some(target);
        let undo = set_base(SEGBASE_GS_USER, old);
        values!("rc={rc} shadow_gs_msr_matches={} undo={undo}", bit(msr))
    });

    // Loading the null selector into the user GS resets the user GS base to 0.
    s.run("segment.gs_user_sel_null", || {
        let old = rdmsr(MSR_SHADOW_GS_BASE).1.unwrap_or(0);
        set_base(SEGBASE_GS_USER, GS_TARGET.as_ptr() as u64);
        let rc = set_base(SEGBASE_GS_USER_SEL, 0);
        let base = rdmsr(MSR_SHADOW_GS_BASE).1;
        let undo = set_base(SEGBASE_GS_USER, old);
        values!(
            "rc={rc} user_gs_base_zero={} undo={undo}",
            base.map_or(-1, |b| i32::from(b == 0))
        )
    });

    s.run("segment.fs_non_canonical", || {
        let rc = set_base(SEGBASE_FS, NON_CANONICAL);
        let undo = set_base(SEGBASE_FS, 0);
        values!("rc={rc} undo={undo}")
    });

    s.run("segment.unknown_which", || values!("{}", set_base(99, 0)));
}

fn stack_switch_cases(s: &mut Suite) {
    // The stack Xen switches to when user mode traps into the kernel: never used by this kernel,
    // which has no user mode, so any value is harmless. Xen fixes up the selector's RPL and
    // never fails.
    s.run("stack_switch.kernel_ss", || {
        let rc = hc::stack_switch(FLAT_KERNEL_SS.into(), kernel_stack_top());
        values!("{rc}")
    });

    s.run("stack_switch.null_selector", || {
        let rc = hc::stack_switch(0, kernel_stack_top());
        let undo = hc::stack_switch(FLAT_KERNEL_SS.into(), kernel_stack_top());
        values!("rc={rc} undo={undo}")
    });
}

/// Roughly where this kernel's stack is (the current stack pointer, 16-byte aligned).
fn kernel_stack_top() -> u64 {
    let sp: u64;
    // SAFETY: reads RSP.
    unsafe { asm!("mov %rsp, {sp}", sp = out(reg) sp, options(att_syntax, nomem, nostack)) };
    sp & !15
}

/// CPUID through Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`): Xen's #UD handler
/// recognises the prefix and answers with the guest's CPUID policy, hypervisor leaves included.
/// Returns the probe (a #UD if the prefix is not recognised) and EAX, EBX, ECX, EDX.
fn forced_cpuid(leaf: u32) -> (Probe, [u32; 4]) {
    let (mut a, mut b, mut c, mut d) = (leaf, 0u32, 0u32, 0u32);
    // SAFETY: CPUID has no side effects. RBX cannot be an asm operand, so it is saved in `b`'s
    // register and exchanged back after the instruction.
    let p = unsafe {
        probe!(
            "xchg %rbx, {b:r}\nud2\n.ascii \"xen\"\ncpuid\nxchg %rbx, {b:r}",
            b = inout(reg) b,
            inout("eax") a,
            inout("ecx") c,
            out("edx") d
        )
    };
    (p, [a, b, c, d])
}

/// Four little-endian registers as text.
fn signature(regs: &[u32]) -> [u8; 12] {
    let mut out = [b'?'; 12];
    for (chunk, r) in out.chunks_mut(4).zip(regs) {
        chunk.copy_from_slice(&r.to_le_bytes());
    }
    out
}

fn cpuid_cases(s: &mut Suite) {
    s.run("cpuid.hypervisor_leaf", || {
        let (p, [a, b, c, d]) = forced_cpuid(0x4000_0000);
        let sig = signature(&[b, c, d]);
        values!(
            "{p} max_leaf={a:#x} signature={}",
            core::str::from_utf8(&sig).unwrap_or("<binary>")
        )
    });

    s.run("cpuid.version_leaf", || {
        let (p, [a, ..]) = forced_cpuid(0x4000_0001);
        values!("{p} version={a:#x}")
    });

    s.run("cpuid.hypercall_page_leaf", || {
        let (p, [a, b, ..]) = forced_cpuid(0x4000_0002);
        values!("{p} pages={a} msr={b:#x}")
    });

    // A plain CPUID is not trapped by the guest (Xen may fault and emulate it, invisibly, or the
    // CPU answers directly); its answer depends on the CPU QEMU models, so only "it returned".
    s.run("cpuid.native_leaf_0", || {
        let (mut a, mut b) = (0u32, 0u32);
        // SAFETY: CPUID has no side effects; RBX is saved and restored as in `forced_cpuid`.
        let p = unsafe {
            probe!(
                "xchg %rbx, {b:r}\ncpuid\nxchg %rbx, {b:r}",
                b = inout(reg) b,
                inout("eax") a,
                inout("ecx") 0u32 => _,
                out("edx") _
            )
        };
        let _ = (a, b);
        values!("returned={} {p}", bit(p.trap.is_none()))
    });
}

fn control_register_cases(s: &mut Suite) {
    // A PV guest's CR3 is the machine address of its L4 (PV guests are not translated).
    s.run("cr3.read", || {
        let (p, cr3) = read_cr(3);
        let l4 = mm::l4_mfn();
        values!(
            "{p} matches_l4_machine_address={}",
            bit(cr3.is_some_and(|v| v & PTE_FRAME_MASK == l4 << 12))
        )
    });

    // Writing the current value back is a CR3 reload (Xen's `new_guest_cr3`).
    s.run("cr3.write_current", || {
        let cr3 = mm::l4_mfn() << 12;
        // SAFETY: loads the L4 already in use: nothing changes but a TLB flush.
        let p = unsafe { probe!("mov {v}, %cr3", v = in(reg) cr3) };
        values!("{p}")
    });

    s.run("cr0.write_same", || {
        let (_, cr0) = read_cr(0);
        let Some(cr0) = cr0 else {
            return values!("read_trapped");
        };
        // SAFETY: writes CR0 back unchanged (emulated): no effect.
        let p = unsafe { probe!("mov {v}, %cr0", v = in(reg) cr0) };
        values!("{p}")
    });

    // Xen lets a PV guest change only CR0.TS; any other bit is refused with #GP.
    s.run("cr0.write_other_bit", || {
        let (_, cr0) = read_cr(0);
        let Some(cr0) = cr0 else {
            return values!("read_trapped");
        };
        // SAFETY: asks to flip CR0.MP; the hypervisor refuses (and MP only affects WAIT/FWAIT).
        let p = unsafe { probe!("mov {v}, %cr0", v = in(reg) cr0 ^ CR0_MP) };
        let still = read_cr(0).1 == Some(cr0);
        values!("{p} unchanged={}", bit(still))
    });
}

/// Privileged instructions: at CPL 3 each raises #GP, which Xen either emulates (invisibly) or
/// passes on to the guest. The value is the probe: `no_trap` or the trap delivered.
fn privileged_instruction_cases(s: &mut Suite) {
    s.run("priv.cli", || {
        // SAFETY: if emulated, `cli` would only mask upcalls, which the suite keeps masked.
        values!("{}", unsafe { probe!("cli") })
    });
    s.run("priv.sti", || {
        // SAFETY: Xen does not let `sti` change the upcall mask (it is #GP or ignored).
        values!("{}", unsafe { probe!("sti") })
    });
    s.run("priv.hlt", || {
        // SAFETY: `hlt` is not emulated for PV guests (#GP); were it, the vCPU would block with
        // upcalls masked, which is what the harness's time limit is for.
        values!("{}", unsafe { probe!("hlt") })
    });
    s.run("priv.lidt", || {
        let idtr = [0u8; 10];
        // SAFETY: `lidt` is never emulated for a PV guest: #GP, nothing is loaded.
        values!("{}", unsafe {
            probe!("lidt ({p})", p = in(reg) &raw const idtr)
        })
    });
    s.run("priv.rdmsr_unknown", || values!("{}", rdmsr(UNKNOWN_MSR).0));
    s.run("priv.wrmsr_unknown", || {
        // SAFETY: the MSR does not exist, so nothing can be written.
        let p = unsafe { probe!("wrmsr", in("ecx") UNKNOWN_MSR, in("eax") 0u32, in("edx") 0u32) };
        values!("{p}")
    });
    // dom0 may be granted I/O ports, but not through the I/O bitmap or IOPL by default.
    s.run("priv.outb_port_0x80", || {
        // SAFETY: port 0x80 is the POST-code port: a write has no effect on QEMU's machine.
        values!("{}", unsafe { probe!("outb %al, $0x80", in("al") 0u8) })
    });
    s.run("priv.inb_port_0x80", || {
        // SAFETY: reading port 0x80 has no side effect.
        values!("{}", unsafe { probe!("inb $0x80, %al", out("al") _) })
    });
    s.run("priv.wbinvd", || {
        // SAFETY: a cache flush has no architectural effect (a no-op under TCG).
        values!("{}", unsafe { probe!("wbinvd") })
    });
}

fn set_gdt_cases(s: &mut Suite) {
    let gdt = |frames: u64, entries: u64| {
        // SAFETY: the cases pass frame lists the hypervisor must refuse, or no frames at all
        // (which leaves dom0 with no GDT of its own, as it booted).
        unsafe { hc::hypercall(__HYPERVISOR_set_gdt, frames, entries, 0, 0, 0) }
    };

    s.run("set_gdt.bad_frame_list", || values!("{}", gdt(UNMAPPED, 1)));

    s.run("set_gdt.too_many_entries", || {
        let frames = [0u64; 16];
        values!(
            "{}",
            gdt(gp(frames.as_ptr()), u64::from(FIRST_RESERVED_GDT_ENTRY) + 1)
        )
    });

    // A descriptor-table page may have no writable mapping: an ordinary data page is refused.
    s.run("set_gdt.writable_frame", || {
        let Some(page) = scratch(3) else {
            return values!("scratch_unmapped");
        };
        let frames = [page.mfn];
        values!("{}", gdt(gp(frames.as_ptr()), 1))
    });

    s.run("set_gdt.invalid_frame", || {
        let frames = [0x000f_ffff_ffffu64];
        values!("{}", gdt(gp(frames.as_ptr()), 1))
    });

    // No entries: no frames are read, so even a bad list is accepted.
    s.run("set_gdt.zero_entries_bad_frame_list", || {
        values!("{}", gdt(UNMAPPED, 0))
    });
}

/// Stores the value at `va` back to `va` (an 8-byte load, then the probed store).
fn store_same(va: u64) -> Probe {
    // SAFETY: `va` is mapped (at least readable) and 8-byte aligned in every caller.
    let value = unsafe { core::ptr::read_volatile(va as *const u64) };
    // SAFETY: stores the value just read: if the store goes through, nothing changes.
    unsafe { probe!("mov {v}, ({a})", a = in(reg) va, v = in(reg) value) }
}

/// Where the L1 entry mapping scratch page 3 is mapped (read-only) in the kernel's address space,
/// with the entry's value and its machine address.
fn scratch_pte() -> Option<(u64, mm::L1Slot)> {
    let page = scratch(3)?;
    let slot = mm::l1_slot(page.va)?;
    Some((
        mm::mfn_to_va(slot.l1_mfn) + 8 * index(page.va, 1) as u64,
        slot,
    ))
}

/// Rewrites scratch page 3's L1 entry with its own value through the read-only mapping.
fn l1_store_same() -> Probe {
    match scratch_pte() {
        Some((pte_va, _)) => store_same(pte_va),
        None => Probe {
            trap: None,
            at: 0,
            after: 1,
        },
    }
}

/// Stores to an L1 page-table page through its read-only mapping: Xen decodes the faulting
/// instruction and performs it as a validated PTE update (`ptwr_do_page_fault` in Xen's
/// `arch/x86/pv/ro-page-fault.c`); a PTE it would refuse leaves the #PF to the guest.
fn l1_pagetable_cases(s: &mut Suite) {
    s.run("l1_pagetable.store_same_value", || {
        let Some((_, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let p = l1_store_same();
        let kept = scratch_pte().is_some_and(|(_, now)| now.value == slot.value);
        values!("{p} pte_kept={}", bit(kept))
    });

    // A PTE mapping the kernel's own L4 writable: refused (as `mmu_update` refuses it), so the
    // fault reaches the guest.
    s.run("l1_pagetable.store_invalid_pte", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let bad = make_entry(mm::l4_mfn(), PTE_P | PTE_RW | PTE_A | PTE_D);
        // SAFETY: asks to map the L4 writable over scratch page 3 (a page only the cases use);
        // the hypervisor must refuse, and the entry is restored below if it did not.
        let p = unsafe { probe!("mov {v}, ({a})", a = in(reg) pte_va, v = in(reg) bad) };
        let now = scratch_pte().map_or(0, |(_, e)| e.value);
        let kept = now == slot.value;
        if !kept {
            hc::mmu_update(&[normal(slot.maddr, slot.value)], DOMID_SELF);
            flush_local();
        }
        values!("{p} cr2_ok={} pte_kept={}", cr2_is(&p, pte_va), bit(kept))
    });
}

fn vm_assist_cases(s: &mut Suite) {
    s.run("vm_assist.4gb_segments", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_4gb_segments);
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_4gb_segments);
        values!("enable={on} disable={off}")
    });

    s.run("vm_assist.runstate_update_flag", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag);
        values!("enable={on} disable={off}")
    });

    // The assist is accepted, but has no effect on a 64-bit PV guest: Xen emulates stores to L1
    // tables whether or not it is enabled (the `l1_pagetable.*` cases).
    s.run("vm_assist.writable_pagetables", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_writable_pagetables);
        let with = l1_store_same();
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_writable_pagetables);
        let without = l1_store_same();
        values!("enable={on} with=[{with}] disable={off} without=[{without}]")
    });

    s.run("vm_assist.unknown_type", || {
        let on = hc::vm_assist(VMASST_CMD_enable, 31);
        let off = hc::vm_assist(VMASST_CMD_disable, 31);
        values!("enable={on} disable={off}")
    });

    s.run("vm_assist.type_beyond_word", || {
        values!("{}", hc::vm_assist(VMASST_CMD_enable, 64))
    });

    s.run("vm_assist.unknown_cmd", || {
        values!("{}", hc::vm_assist(BAD_CMD, VMASST_TYPE_4gb_segments))
    });
}
