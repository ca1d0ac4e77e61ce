//! x86_64 architecture part of the ABI, mirroring `arch-x86/xen.h` and `arch-x86/xen-x86_64.h`.
//!
//! 64-bit PV kernels run in ring 3: the `FLAT_KERNEL_*` and `FLAT_USER_*` selectors are the same
//! ring-3 selectors, and Xen tells kernel from user mode by which page tables are loaded.
#![allow(non_upper_case_globals)] // Xen spells some constants in lower case (`VGCF_in_kernel`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{assert_layout, zeroed_default};

/// `xen_pfn_t`: a (machine or guest) page frame number.
#[doc(alias = "xen_pfn_t")]
pub type XenPfn = u64;

/// `xen_ulong_t`: a machine word as seen by the ABI (`unsigned long` on x86_64).
#[doc(alias = "xen_ulong_t")]
pub type XenUlong = u64;

/// `xen_callback_t`: a guest-virtual entry point (the 64-bit ABI has no selector part).
#[doc(alias = "xen_callback_t")]
pub type XenCallback = u64;

// --- Flat segment selectors (xen-x86_64.h). ---

/// Ring-3 32-bit code selector.
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring-3 64-bit code selector.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Ring-3 32-bit data selector.
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// Ring-3 64-bit data selector (null: 64-bit mode ignores DS).
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Ring-3 32-bit stack selector.
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// Ring-3 64-bit stack selector.
pub const FLAT_RING3_SS64: u16 = 0xe02b;
/// Kernel 64-bit data selector.
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// Kernel 32-bit data selector.
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
/// Kernel data selector.
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
/// Kernel 64-bit code selector (ring 3: 64-bit PV kernels do not run in ring 0 or 1).
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// Kernel 32-bit code selector.
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
/// Kernel code selector.
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
/// Kernel 64-bit stack selector.
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// Kernel 32-bit stack selector.
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
/// Kernel stack selector.
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;
/// User 64-bit data selector.
pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
/// User 32-bit data selector.
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
/// User data selector.
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
/// User 64-bit code selector.
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// User 32-bit code selector.
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// User code selector.
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
/// User 64-bit stack selector.
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// User 32-bit stack selector.
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
/// User stack selector.
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

// --- Virtual address layout (xen-x86_64.h). ---

/// Start of the hypervisor-reserved hole in every PV address space.
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the hypervisor-reserved hole.
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Start of the read-only machine-to-phys table mapped into PV guests.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the machine-to-phys table.
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Number of 8-byte entries in the machine-to-phys table.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

// --- HYPERVISOR_set_segment_base (xen-x86_64.h). ---

/// `set_segment_base`: load the FS base.
pub const SEGBASE_FS: u32 = 0;
/// `set_segment_base`: load the user GS base (the one `swapgs` swaps in).
pub const SEGBASE_GS_USER: u32 = 1;
/// `set_segment_base`: load the kernel GS base.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// `set_segment_base`: load the user GS selector (value is a selector).
pub const SEGBASE_GS_USER_SEL: u32 = 3;

// --- GDT reservation and vCPU limits (arch-x86/xen.h). ---

/// First GDT page reserved for Xen; guests may use frames below it.
pub const FIRST_RESERVED_GDT_PAGE: u32 = 14;
/// First GDT byte reserved for Xen.
pub const FIRST_RESERVED_GDT_BYTE: u32 = FIRST_RESERVED_GDT_PAGE * 4096;
/// First GDT entry reserved for Xen (`FLAT_*` selectors live above it).
pub const FIRST_RESERVED_GDT_ENTRY: u32 = FIRST_RESERVED_GDT_BYTE / 8;
/// vCPUs whose `vcpu_info` lives in `shared_info` (others register it with VCPUOP).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// Pre-4.0 name of [`XEN_LEGACY_MAX_VCPUS`], kept for callers that use the historic spelling.
pub const MAX_VIRT_CPUS: usize = XEN_LEGACY_MAX_VCPUS;

/// Sub-leaf value meaning "this CPUID leaf has no sub-leaves".
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;
/// HVM debug console I/O port (`outb` bytes appear on the Xen console).
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;
/// `ud2; .ascii "xen"`: the forced-emulation prefix placed before `cpuid` (`XEN_EMULATE_PREFIX`).
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

// --- vcpu_guest_context.flags (VGCF_*). ---

/// FPU context in `fpu_ctxt` is valid.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// The vCPU is in kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// Bit number of [`VGCF_i387_valid`].
pub const _VGCF_i387_valid: u32 = 0;
/// FPU context valid.
pub const VGCF_i387_valid: u64 = 1 << _VGCF_i387_valid;
/// Bit number of [`VGCF_in_kernel`].
pub const _VGCF_in_kernel: u32 = 2;
/// The vCPU is in kernel mode.
pub const VGCF_in_kernel: u64 = 1 << _VGCF_in_kernel;
/// Bit number of [`VGCF_failsafe_disables_events`].
pub const _VGCF_failsafe_disables_events: u32 = 3;
/// Entering the failsafe callback masks events.
pub const VGCF_failsafe_disables_events: u64 = 1 << _VGCF_failsafe_disables_events;
/// Bit number of [`VGCF_syscall_disables_events`].
pub const _VGCF_syscall_disables_events: u32 = 4;
/// Entering the syscall callback masks events.
pub const VGCF_syscall_disables_events: u64 = 1 << _VGCF_syscall_disables_events;
/// Bit number of [`VGCF_online`].
pub const _VGCF_online: u32 = 5;
/// The vCPU is online (`VCPUOP_initialise` without this leaves it down).
pub const VGCF_online: u64 = 1 << _VGCF_online;
/// Bit number of [`VGCF_in_syscall`] (iret flag, xen-x86_64.h).
pub const _VGCF_in_syscall: u32 = 8;
/// `HYPERVISOR_iret`: return via `sysret` semantics (RCX/R11 not restored).
pub const VGCF_in_syscall: u64 = 1 << _VGCF_in_syscall;
/// Upper-case spelling of [`VGCF_in_syscall`].
pub const VGCF_IN_SYSCALL: u64 = VGCF_in_syscall;

/// `xen_pfn_to_cr3`: the CR3 value naming a top-level page-table frame.
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// `xen_cr3_to_pfn`: the frame named by a CR3 value.
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

/// One virtual IDT entry, registered with `HYPERVISOR_set_trap_table` (a zero `address` ends the
/// list).
#[doc(alias = "trap_info_t")]
#[doc(alias = "trap_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Bits 0-1: privilege level allowed to `int` to it; bit 2: mask events on entry.
    pub flags: u8,
    /// Code selector (ignored for 64-bit guests, conventionally `FLAT_KERNEL_CS`).
    pub cs: u16,
    /// Implicit C padding before `address`.
    pub _pad0: [u8; 4],
    /// Handler entry point.
    pub address: u64,
}
assert_layout!(TrapInfo, 16, { vector: 0, flags: 1, cs: 2, _pad0: 4, address: 8 });

impl TrapInfo {
    /// `TI_GET_DPL`: the lowest privilege level allowed to raise the vector with `int`.
    #[doc(alias = "TI_GET_DPL")]
    pub const fn dpl(&self) -> u8 {
        self.flags & 3
    }

    /// `TI_GET_IF`: non-zero if events are masked on entry ("interrupt gate").
    #[doc(alias = "TI_GET_IF")]
    pub const fn masks_events(&self) -> bool {
        self.flags & 4 != 0
    }

    /// `TI_SET_DPL`: ORs a privilege level into `flags` (like the C macro, it does not clear).
    #[doc(alias = "TI_SET_DPL")]
    pub fn set_dpl(&mut self, dpl: u8) {
        self.flags |= dpl & 3;
    }

    /// `TI_SET_IF`: sets "mask events on entry" if `mask` (like the C macro, it never clears).
    #[doc(alias = "TI_SET_IF")]
    pub fn set_if(&mut self, mask: bool) {
        self.flags |= u8::from(mask) << 2;
    }
}

/// The frame `HYPERVISOR_iret` pops from the guest stack.
#[doc(alias = "iret_context")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IretContext {
    /// Saved RAX (the hypercall stub clobbered it).
    pub rax: u64,
    /// Saved R11.
    pub r11: u64,
    /// Saved RCX.
    pub rcx: u64,
    /// `VGCF_in_syscall` or 0.
    pub flags: u64,
    /// Return RIP.
    pub rip: u64,
    /// Return CS.
    pub cs: u64,
    /// Return RFLAGS.
    pub rflags: u64,
    /// Return RSP.
    pub rsp: u64,
    /// Return SS.
    pub ss: u64,
}
assert_layout!(IretContext, 72, {
    rax: 0, r11: 8, rcx: 16, flags: 24, rip: 32, cs: 40, rflags: 48, rsp: 56, ss: 64,
});

/// Guest register file (the guest-visible spelling: `rax` etc.; C's register unions are plain
/// `u64` here, their 32/16/8-bit aliases being the low bytes).
#[doc(alias = "cpu_user_regs_t")]
#[doc(alias = "cpu_user_regs")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CpuUserRegs {
    /// R15.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
    /// RBP.
    pub rbp: u64,
    /// RBX.
    pub rbx: u64,
    /// R11.
    pub r11: u64,
    /// R10.
    pub r10: u64,
    /// R9.
    pub r9: u64,
    /// R8.
    pub r8: u64,
    /// RAX.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// Exception error code (private to Xen).
    pub error_code: u32,
    /// Exception vector (private to Xen).
    pub entry_vector: u32,
    /// RIP.
    pub rip: u64,
    /// CS.
    pub cs: u16,
    /// Padding (named in C).
    pub _pad0: [u16; 1],
    /// Event mask saved on callback entry (`evtchn_upcall_mask`).
    pub saved_upcall_mask: u8,
    /// Padding (named in C).
    pub _pad1: [u8; 3],
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u16,
    /// Padding (named in C).
    pub _pad2: [u16; 3],
    /// ES.
    pub es: u16,
    /// Padding (named in C).
    pub _pad3: [u16; 3],
    /// DS.
    pub ds: u16,
    /// Padding (named in C).
    pub _pad4: [u16; 3],
    /// FS.
    pub fs: u16,
    /// Padding (named in C).
    pub _pad5: [u16; 3],
    /// GS.
    pub gs: u16,
    /// Padding (named in C).
    pub _pad6: [u16; 3],
}
assert_layout!(CpuUserRegs, 200, {
    r15: 0, r14: 8, r13: 16, r12: 24, rbp: 32, rbx: 40, r11: 48, r10: 56, r9: 64, r8: 72,
    rax: 80, rcx: 88, rdx: 96, rsi: 104, rdi: 112, error_code: 120, entry_vector: 124, rip: 128,
    cs: 136, _pad0: 138, saved_upcall_mask: 140, _pad1: 141, rflags: 144, rsp: 152, ss: 160,
    _pad2: 162, es: 168, _pad3: 170, ds: 176, _pad4: 178, fs: 184, _pad5: 186, gs: 192,
    _pad6: 194,
});

/// Full vCPU state, for `VCPUOP_initialise` and the toolstack.
#[doc(alias = "vcpu_guest_context_t")]
#[doc(alias = "vcpu_guest_context")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuGuestContext {
    /// FXSAVE image (`struct { char x[512]; }` in C).
    pub fpu_ctxt: [u8; 512],
    /// VGCF_* flags.
    pub flags: u64,
    /// General-purpose registers.
    pub user_regs: CpuUserRegs,
    /// Virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear base.
    pub ldt_base: u64,
    /// LDT entry count.
    pub ldt_ents: u64,
    /// GDT frames (MFNs).
    pub gdt_frames: [u64; 16],
    /// GDT entry count.
    pub gdt_ents: u64,
    /// Kernel stack selector (unused by 64-bit guests).
    pub kernel_ss: u64,
    /// Kernel stack pointer loaded on a user-to-kernel transition.
    pub kernel_sp: u64,
    /// CR0..CR7 (CR3 as `xen_pfn_to_cr3(mfn)`).
    pub ctrlreg: [u64; 8],
    /// DR0..DR7.
    pub debugreg: [u64; 8],
    /// Event upcall entry point.
    pub event_callback_eip: u64,
    /// Failsafe callback entry point.
    pub failsafe_callback_eip: u64,
    /// `syscall` entry point.
    pub syscall_callback_eip: u64,
    /// VMASST_* bitmap.
    pub vm_assist: u64,
    /// FS base.
    pub fs_base: u64,
    /// Kernel GS base.
    pub gs_base_kernel: u64,
    /// User GS base.
    pub gs_base_user: u64,
}
assert_layout!(VcpuGuestContext, 5168, {
    fpu_ctxt: 0, flags: 512, user_regs: 520, trap_ctxt: 720, ldt_base: 4816, ldt_ents: 4824,
    gdt_frames: 4832, gdt_ents: 4960, kernel_ss: 4968, kernel_sp: 4976, ctrlreg: 4984,
    debugreg: 5048, event_callback_eip: 5112, failsafe_callback_eip: 5120,
    syscall_callback_eip: 5128, vm_assist: 5136, fs_base: 5144, gs_base_kernel: 5152,
    gs_base_user: 5160,
});
zeroed_default!(VcpuGuestContext);

/// Architecture part of `vcpu_info`.
#[doc(alias = "arch_vcpu_info_t")]
#[doc(alias = "arch_vcpu_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault delivered to the guest.
    pub cr2: u64,
    /// Padding (named in C).
    pub pad: u64,
}
assert_layout!(ArchVcpuInfo, 16, { cr2: 0, pad: 8 });

/// Architecture part of `shared_info`.
#[doc(alias = "arch_shared_info_t")]
#[doc(alias = "arch_shared_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfo {
    /// Number of entries in the p2m table (for save/restore).
    pub max_pfn: u64,
    /// MFN of the frame listing the frames of the p2m frame list.
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits (`_XEN_NMIREASON_*`).
    pub nmi_reason: u64,
    /// CR3 of the virtually mapped p2m list (0 if none).
    pub p2m_cr3: u64,
    /// Virtual address of the p2m list.
    pub p2m_vaddr: u64,
    /// Odd while the guest updates the p2m list.
    pub p2m_generation: u64,
}
assert_layout!(ArchSharedInfo, 48, {
    max_pfn: 0, pfn_to_mfn_frame_list_list: 8, nmi_reason: 16, p2m_cr3: 24, p2m_vaddr: 32,
    p2m_generation: 40,
});

/// One CPUID leaf of a domain's policy.
#[doc(alias = "xen_cpuid_leaf_t")]
#[doc(alias = "xen_cpuid_leaf")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenCpuidLeaf {
    /// EAX input.
    pub leaf: u32,
    /// ECX input, or [`XEN_CPUID_NO_SUBLEAF`].
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}
assert_layout!(XenCpuidLeaf, 24, { leaf: 0, subleaf: 4, a: 8, b: 12, c: 16, d: 20 });

/// The x86 part of a domain's configuration (`struct xen_arch_domainconfig`, a tools interface
/// covered by the domctl interface version): which devices Xen emulates for it.
#[doc(alias = "xen_arch_domainconfig")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*` bits: emulated LAPIC, HPET, ... (0 for a PV domain).
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED` and friends.
    pub misc_flags: u32,
}
assert_layout!(XenArchDomainconfig, 8, { emulation_flags: 0, misc_flags: 4 });
