//! The register frame every entry into the hypervisor saves (exceptions, interrupts, hypercalls),
//! and its dump ([`RegsDump`]) for the debug keys, a crashed domain and a fatal trap alike.
//!
//! The layout is fixed by the entry assembly (`arch/x86_64/entry.rs`): the CPU pushes SS, RSP,
//! RFLAGS, CS, RIP; the stub pushes an error code (0 where the CPU pushes none) and the entry
//! vector; the common path pushes the general registers. A hypercall (`syscall`) builds the same
//! frame by hand with [`ENTRY_SYSCALL`] as its vector, so one type serves every path (Xen's
//! `struct cpu_user_regs` plays this role).

use core::fmt;

use hypercall_abi::arch_x86_64::{FLAT_KERNEL_CS, FLAT_KERNEL_SS};

/// The `vector` of a frame built by the `syscall` entry. The exit path leaves such a frame with
/// `sysretq` (RIP from RCX, RFLAGS from R11); anything that must restore the guest's own RCX and
/// R11 changes the vector to [`ENTRY_RESTORE_ALL`].
pub const ENTRY_SYSCALL: u64 = 0x100;

/// The `vector` of a rewritten frame that must be left with `iretq`, restoring every register.
pub const ENTRY_RESTORE_ALL: u64 = 0x101;

/// RFLAGS bits the hypervisor cares about.
pub mod rflags {
    /// Trap flag.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// I/O privilege level (2 bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Always-one bit 1.
    pub const FIXED: u64 = 1 << 1;
}

/// A saved register frame, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[doc(alias = "cpu_user_regs")]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Entry vector: 0..=255 for exceptions and interrupts, [`ENTRY_SYSCALL`] for hypercalls.
    pub vector: u64,
    /// The CPU's error code, or 0.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Regs {
    /// Whether the frame was saved while a guest ran (ring 3); otherwise the hypervisor itself was
    /// interrupted.
    pub fn from_guest(&self) -> bool {
        self.cs & 3 == 3
    }

    /// The hypercall number and its five arguments (RAX; RDI, RSI, RDX, R10, R8).
    pub fn hypercall_args(&self) -> (u64, [u64; 5]) {
        (self.rax, [self.rdi, self.rsi, self.rdx, self.r10, self.r8])
    }

    /// A frame that enters a 64-bit PV guest kernel at `rip` with stack `rsp` and `rsi`, as Xen
    /// starts a domain: ring 3 flat selectors, interrupts enabled (the guest's virtual interrupt
    /// flag is `evtchn_upcall_mask`, not RFLAGS.IF), everything else zero.
    pub fn guest_entry(rip: u64, rsp: u64, rsi: u64) -> Regs {
        Regs {
            rip,
            rsp,
            rsi,
            cs: FLAT_KERNEL_CS.into(),
            ss: FLAT_KERNEL_SS.into(),
            rflags: rflags::IF | rflags::FIXED,
            ..Regs::default()
        }
    }

    /// Forces the frame to one a guest may return to: ring 3 selectors, IF set, IOPL and VM clear
    /// (a guest's own IOPL is virtual).
    pub fn sanitise_for_guest(&mut self) {
        self.cs |= 3;
        self.ss |= 3;
        self.rflags = (self.rflags & !(rflags::IOPL | rflags::VM)) | rflags::IF | rflags::FIXED;
    }
}

const _: () = assert!(core::mem::size_of::<Regs>() == 22 * 8);

/// A register frame, formatted as Xen's `show_registers` lines (addresses only:
/// `addr2line -e build/xen-syms` turns them into symbols).
pub struct RegsDump<'a>(pub &'a Regs);

impl fmt::Display for RegsDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        writeln!(
            f,
            "RIP: {:04x}:{:016x}  RFLAGS: {:016x}  RSP: {:04x}:{:016x}",
            r.cs, r.rip, r.rflags, r.ss, r.rsp
        )?;
        writeln!(
            f,
            "rax: {:016x} rbx: {:016x} rcx: {:016x} rdx: {:016x}",
            r.rax, r.rbx, r.rcx, r.rdx
        )?;
        writeln!(
            f,
            "rsi: {:016x} rdi: {:016x} rbp: {:016x} r8:  {:016x}",
            r.rsi, r.rdi, r.rbp, r.r8
        )?;
        writeln!(
            f,
            "r9:  {:016x} r10: {:016x} r11: {:016x} r12: {:016x}",
            r.r9, r.r10, r.r11, r.r12
        )?;
        writeln!(
            f,
            "r13: {:016x} r14: {:016x} r15: {:016x}",
            r.r13, r.r14, r.r15
        )?;
        writeln!(f, "vector: {:#x} error code: {:#x}", r.vector, r.error_code)
    }
}
