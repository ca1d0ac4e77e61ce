//! The few guest instructions the hypervisor emulates instead of bouncing their fault.
//!
//! A PV kernel runs in ring 3, so privileged instructions fault. Xen emulates a handful that PV
//! guests rely on and reflects everything else back to the guest as #GP:
//! - the forced-emulation prefix `ud2; .ascii "xen"; cpuid` (#UD), which asks the hypervisor for
//!   its CPUID view, including the hypervisor leaves at 0x40000000 (`arch-x86/cpuid.h`);
//! - `mov %crN, %reg` reads (#GP): CR0 with the guest's virtual TS, CR2, CR3 (its L4 frame) and
//!   CR4 as Xen shows it to a PV guest ([`guest_cr4`]); CR4 writes keep the bits the guest owns;
//! - `mov` to and from DR0..DR7 (#GP), with `set_debugreg`'s checks ([`debugreg`]);
//! - `rdmsr`/`wrmsr` (#GP) of the MSRs Xen answers for a PV guest ([`msr`]), #GP for the rest;
//! - `in`/`out` (#GP) when the guest's virtual IOPL allows them (`PHYSDEVOP_set_iopl`), on the
//!   ports the domain may use ([`port_io()`]);
//! - `cli`/`sti` (#GP) when the virtual IOPL allows them: skipped, as Xen does ([`cli_sti`]).
//!
//! Decoding works on bytes copied from the guest; nothing here trusts them beyond their length.

use hypercall_abi::xen::__HYPERVISOR_iret;

use crate::regs::Regs;

/// `ud2; .ascii "xen"; cpuid` (`XEN_EMULATE_PREFIX` + cpuid).
pub const FORCED_CPUID: [u8; 7] = [0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2];

/// First hypervisor CPUID leaf.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Number of hypervisor leaves after the first (`XEN_CPUID_MAX_NUM_LEAVES`).
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;

/// What the CPU itself answers for a leaf (the arch layer runs `cpuid`).
pub type NativeCpuid = fn(leaf: u32, subleaf: u32) -> [u32; 4];

/// Bits of a mask, from a list of bit numbers.
const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// Leaf 1 EDX bits a PV guest sees: Xen's "A" (all guests, by default) features of
/// `public/arch-x86/cpufeatureset.h` word 0 — FPU, DE, TSC, MSR, PAE, MCE, CX8, SEP, MCA, CMOV,
/// PAT, CLFLUSH, ACPI, MMX, FXSR, SSE, SSE2, SS, HTT. MCE and MCA as in Xen: the machine-check
/// MSRs are Xen's vMCE (`emulate::msr`; the `cpuid.pv_policy_features` and `msr.*` differential
/// cases). Hidden as in Xen ("S", HVM only): VME, PSE, MTRR, PGE, PSE36 (a PV guest's page tables
/// are validated 4 KiB mappings: no large pages), and what Xen never shows (DS, TM1, PBE).
/// Hidden here although Xen shows it: APIC (a PV guest has no local APIC to program).
pub const PV_LEAF1_EDX: u32 = bits(&[
    0, 2, 4, 5, 6, 7, 8, 11, 14, 15, 16, 19, 22, 23, 24, 25, 26, 27, 28,
]);
/// Leaf 1 ECX bits a PV guest sees ("A" in word 1): SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1,
/// SSE4.2, MOVBE, POPCNT, AESNI, RDRAND, and HYPERVISOR (set). Hidden as in Xen: DTES64, MONITOR,
/// DSCPL, VMX, SMX, EIST, TM2, SDBG, XTPR, PDCM, PCID, DCA, X2APIC, TSC_DEADLINE. Hidden here
/// although Xen shows them: XSAVE (and OSXSAVE) with what needs it, FMA, AVX and F16C: Xen emulates
/// `xsetbv` and switches XSAVE state per vCPU; we save the FPU with `fxsave`, SSE state only.
pub const PV_LEAF1_ECX: u32 = bits(&[0, 1, 9, 13, 19, 20, 22, 23, 25, 30, 31]);
/// Leaf 7 subleaf 0 EBX bits ("A" in word 5 without the AVX and AVX-512 family): FSGSBASE, BMI1,
/// BMI2, ERMS, RTM, RDSEED, ADX, CLFLUSHOPT, CLWB, SHA. Hidden as in Xen: TSC_ADJUST, SGX, HLE,
/// SMEP, INVPCID, PQM, MPX, PQE, SMAP, PROC_TRACE, AVX512PF/ER. Hidden here: AVX2 and AVX-512
/// (no XSAVE). FSGSBASE is usable once the guest sets CR4.FSGSBASE ([`pv_cr4_writable`]).
pub const PV_LEAF7_EBX: u32 = bits(&[0, 3, 8, 9, 11, 18, 19, 23, 24, 29]);
/// Leaf 7 subleaf 0 ECX bits: PREFETCHWT1, GFNI, RDPID, CLDEMOTE ("A"; VAES, VPCLMULQDQ and the
/// AVX-512 ones need XSAVE). Hidden as in Xen: UMIP, PKU, OSPKE, WAITPKG, CET_SS, TME, LA57, BLD,
/// ENQCMD, SGX_LC, PKS.
pub const PV_LEAF7_ECX: u32 = bits(&[0, 8, 22, 25]);
/// Leaf 7 subleaf 0 EDX bits: FSRM and MD_CLEAR. The speculation-control MSRs (IBRS, STIBP,
/// SSBD, ARCH_CAPABILITIES, ...) are not emulated, so they are hidden.
pub const PV_LEAF7_EDX: u32 = bits(&[4, 10]);
/// Leaf 0x8000_0001 EDX bits ("A" in word 2): SYSCALL, NX, MMXEXT, FFXSR, RDTSCP, LM, 3DNOWEXT,
/// 3DNOW, plus AMD's copies of the leaf 1 EDX bits (0..=17, 23, 24) that leaf 1 shows. Hidden as
/// in Xen: PAGE1GB ("H": no 1 GiB pages for a PV guest).
pub const PV_EXT1_EDX: u32 =
    bits(&[11, 20, 22, 25, 27, 29, 30, 31]) | (PV_LEAF1_EDX & (0x3_ffff | (1 << 23) | (1 << 24)));
/// Leaf 0x8000_0001 ECX bits ("A" in word 3): LAHF_LM, CMP_LEGACY, ABM, SSE4A, MISALIGNSSE,
/// 3DNOWPREFETCH, TBM, DBEXT. Hidden as in Xen: SVM, EXTAPIC, CR8_LEGACY, OSVW, IBS, SKINIT, WDT,
/// LWP, NODEID_MSR, TOPOEXT, MONITORX. Hidden here: XOP and FMA4 (AVX-encoded, no XSAVE).
pub const PV_EXT1_ECX: u32 = bits(&[0, 1, 5, 6, 7, 8, 21, 26]);
/// Leaf 0x8000_0008 EBX bits ("A" in word 8): CLZERO, RSTR_FP_ERR_PTRS, IBPB, SSB_NO, BTC_NO,
/// IBPB_RET.
pub const PV_EXT8_EBX: u32 = bits(&[0, 2, 12, 26, 29, 30]);

/// A PV guest's CPUID policy over the CPU's answers, modelled on Xen 4.17's default PV policy
/// (`calculate_pv_def_policy`, `recalculate_misc` and `guest_cpuid` in `xen/arch/x86/`): feature
/// words filtered by the `PV_*` masks above, leaves Xen empties for guests empty (MONITOR 5,
/// thermal and power 6, 8, performance monitoring 0xA, 0xC, topology 0xB and 0x1F, XSAVE 0xD),
/// no APIC ID in leaf 1 EBX, no subleaves of leaf 7 beyond 0, no SVM leaf, no invariant-TSC or
/// power-management bits in 0x8000_0007. Leaves not named (vendor, family, caches, brand
/// string, address sizes) are the CPU's.
pub fn pv_policy(leaf: u32, subleaf: u32, native: NativeCpuid) -> [u32; 4] {
    match leaf {
        1 => {
            let [a, b, c, d] = native(leaf, subleaf);
            [
                a,
                b & 0x00ff_ffff,
                (c & PV_LEAF1_ECX) | (1 << 31),
                d & PV_LEAF1_EDX,
            ]
        }
        5 | 6 | 8 | 0xa | 0xb | 0xc | 0xd | 0x1f => [0; 4],
        7 if subleaf == 0 => {
            let [_, b, c, d] = native(leaf, subleaf);
            [0, b & PV_LEAF7_EBX, c & PV_LEAF7_ECX, d & PV_LEAF7_EDX]
        }
        7 => [0; 4],
        0x8000_0001 => {
            let [a, b, c, d] = native(leaf, subleaf);
            [a, b, c & PV_EXT1_ECX, d & PV_EXT1_EDX]
        }
        0x8000_0007 => [0; 4],
        0x8000_0008 => {
            let [a, b, ..] = native(leaf, subleaf);
            [a, b & PV_EXT8_EBX, 0, 0]
        }
        0x8000_000a => [0; 4],
        _ => native(leaf, subleaf),
    }
}

/// The CPUID answer a PV guest gets through forced emulation: Xen's leaves for 0x4000_00xx, and
/// [`pv_policy`] over the CPU's answer otherwise.
pub fn cpuid(leaf: u32, subleaf: u32, native: NativeCpuid) -> [u32; 4] {
    match leaf {
        // "XenVMMXenVMM", and the last hypervisor leaf.
        0x4000_0000 => [
            XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES,
            0x566e_6558,
            0x6558_4d4d,
            0x4d4d_566e,
        ],
        // Version: major << 16 | minor.
        0x4000_0001 => [(4 << 16) | 17, 0, 0, 0],
        // One hypercall page, installed by writing MSR 0x40000000 (an HVM interface; PV guests get
        // their page from the ELF note).
        0x4000_0002 => [1, 0x4000_0000, 0, 0],
        0x4000_0003..=0x4000_0005 => [0; 4],
        0x4000_0006..=0x4000_ffff => [0; 4],
        _ => pv_policy(leaf, subleaf, native),
    }
}

/// Emulates the forced-emulation CPUID at `regs.rip` if `code` (bytes read from there) holds it.
pub fn forced_cpuid(regs: &mut Regs, code: &[u8], native: NativeCpuid) -> bool {
    if !code.starts_with(&FORCED_CPUID) {
        return false;
    }
    let r = cpuid(regs.rax as u32, regs.rcx as u32, native);
    regs.rax = r[0].into();
    regs.rbx = r[1].into();
    regs.rcx = r[2].into();
    regs.rdx = r[3].into();
    regs.rip = regs.rip.wrapping_add(FORCED_CPUID.len() as u64);
    true
}

/// Control-register values the guest may read.
#[derive(Clone, Copy, Debug)]
pub struct GuestCrs {
    /// CR0 as the guest sees it (PE, PG, WP, ... and its virtual TS).
    pub cr0: u64,
    /// The guest's last page-fault address.
    pub cr2: u64,
    /// Machine address of its current L4 (what a PV guest's CR3 holds).
    pub cr3: u64,
    /// CR4 as the guest sees it ([`guest_cr4`]).
    pub cr4: u64,
    /// The CR4 bits a write may set ([`pv_cr4_writable`]).
    pub cr4_writable: u64,
}

/// CR4.TSD: `rdtsc` only at CPL 0.
pub const CR4_TSD: u64 = 1 << 2;
/// CR4.DE: debugging extensions.
pub const CR4_DE: u64 = 1 << 3;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.MCE.
pub const CR4_MCE: u64 = 1 << 6;
/// CR4.OSFXSR: the OS supports `fxsave`/`fxrstor` (SSE usable).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: the OS handles SIMD floating-point exceptions (#XM).
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.FSGSBASE: `rdfsbase` and friends usable.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// The CR4 bits a PV guest sees from the hypervisor's own CR4 (Xen's
/// `PV_CR4_GUEST_VISIBLE_MASK`, `xen/arch/x86/include/asm/pv/domain.h`).
pub const PV_CR4_GUEST_VISIBLE_MASK: u64 = CR4_PAE | CR4_MCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
/// The CR4 bits a PV guest may set in its view (Xen's `PV_CR4_GUEST_MASK`), each only if the
/// domain's CPUID policy has the feature ([`pv_cr4_writable`]). Attempts to set other bits are
/// discarded, as in Xen: a CR4 write never faults.
pub const PV_CR4_GUEST_MASK: u64 = CR4_TSD | CR4_DE | CR4_FSGSBASE | CR4_OSXSAVE;

/// The bits of [`PV_CR4_GUEST_MASK`] the PV CPUID policy allows (`pv_fixup_guest_cr4`): TSD
/// with TSC, DE, FSGSBASE where the CPU has it, OSXSAVE never (our policy hides XSAVE). Of
/// these TSD and FSGSBASE reach the CPU while the guest runs (`pv_make_cr4`); DE lives in the
/// guest's view (it changes what DR4/DR5 are, `emulate::debugreg`).
pub fn pv_cr4_writable(native: NativeCpuid) -> u64 {
    let has = |leaf: u32, reg: usize, bit: u32| {
        native(if leaf >= 0x8000_0000 { 0x8000_0000 } else { 0 }, 0)[0] >= leaf
            && pv_policy(leaf, 0, native)[reg] & (1 << bit) != 0
    };
    let mut m = 0;
    if has(1, 3, 4) {
        m |= CR4_TSD;
    }
    if has(1, 3, 2) {
        m |= CR4_DE;
    }
    if has(7, 1, 0) {
        m |= CR4_FSGSBASE;
    }
    if has(1, 2, 26) {
        m |= CR4_OSXSAVE;
    }
    m
}

/// The CR4 a PV guest reads (`pv_fixup_guest_cr4`): its own bits, and the hypervisor's visible
/// ones from `host_cr4`.
pub const fn guest_cr4(vcpu_cr4: u64, host_cr4: u64) -> u64 {
    (vcpu_cr4 & PV_CR4_GUEST_MASK) | (host_cr4 & PV_CR4_GUEST_VISIBLE_MASK)
}

/// Emulates `mov %crN, %reg` (0f 20 /r, optional REX) at `regs.rip`. Returns whether it did.
pub fn mov_from_cr(regs: &mut Regs, code: &[u8], crs: GuestCrs) -> bool {
    let (rex, rest) = match code.first() {
        Some(&b) if (0x40..=0x4f).contains(&b) => (b, &code[1..]),
        _ => (0, code),
    };
    let [0x0f, 0x20, modrm, ..] = *rest else {
        return false;
    };
    let cr = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
    let rm = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
    let value = match cr {
        0 => crs.cr0,
        2 => crs.cr2,
        3 => crs.cr3,
        4 => crs.cr4,
        _ => return false,
    };
    *gpr(regs, rm) = value;
    let len = 3 + u64::from(rex != 0);
    regs.rip = regs.rip.wrapping_add(len);
    true
}

/// What emulating a privileged instruction came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulated {
    /// Done: RIP advanced, registers and vCPU state updated.
    Done,
    /// `mov %reg, %cr3`: the guest asks for a new base pointer; RIP already advanced. The caller
    /// validates and loads it (as `MMUEXT_NEW_BASEPTR`), or reflects #GP.
    NewCr3(u64),
    /// Not an instruction Xen emulates for a PV guest, or one it refuses: reflect the #GP(0).
    No,
    /// Xen's emulator raises #UD instead (a debug register that does not exist): inject it.
    Ud,
}

const CR0_TS: u64 = 1 << 3;

/// Emulates the privileged instructions Xen emulates for a 64-bit PV kernel that faulted with
/// #GP(0) (`pv/emul-priv-op.c`): control-register reads, `clts`, CR0 writes that change only TS,
/// CR3 and CR4 writes, `mov` to and from DR0..DR7 ([`debugreg`]), RDMSR/WRMSR of the MSRs
/// Xen answers ([`msr`]), and RDTSC/RDTSCP under the guest's CR4.TSD. Everything else is
/// `Emulated::No`.
pub fn privileged(
    regs: &mut Regs,
    code: &[u8],
    vcpu: &mut crate::domain::Vcpu,
    crs: GuestCrs,
    host: &mut dyn MsrHost,
) -> Emulated {
    if mov_from_cr(regs, code, crs) {
        return Emulated::Done;
    }
    let (rex, rest) = match code.first() {
        Some(&b) if (0x40..=0x4f).contains(&b) => (b, &code[1..]),
        _ => (0, code),
    };
    let prefix = u64::from(rex != 0);
    match *rest {
        // clts: clears the virtual TS, like fpu_taskswitch(0).
        [0x0f, 0x06, ..] => {
            vcpu.fpu_ts = false;
            regs.rip = regs.rip.wrapping_add(2 + prefix);
            Emulated::Done
        }
        // mov %reg, %crN
        [0x0f, 0x22, modrm, ..] if modrm >> 6 == 3 => {
            let cr = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
            let value = *gpr(regs, (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 });
            match cr {
                // Only TS may change (`write_cr`: "Attempt to change unmodifiable CR0 flags").
                0 if (value ^ crs.cr0) & !CR0_TS == 0 => {
                    vcpu.fpu_ts = value & CR0_TS != 0;
                    regs.rip = regs.rip.wrapping_add(3 + prefix);
                    Emulated::Done
                }
                3 => {
                    regs.rip = regs.rip.wrapping_add(3 + prefix);
                    Emulated::NewCr3(value)
                }
                // Xen's `write_cr(4)`: keep the guest's own bits its policy allows, discard the
                // rest (`pv_fixup_guest_cr4`).
                4 => {
                    vcpu.cr4 = value & PV_CR4_GUEST_MASK & crs.cr4_writable;
                    regs.rip = regs.rip.wrapping_add(3 + prefix);
                    Emulated::Done
                }
                _ => Emulated::No,
            }
        }
        // mov %drN, %reg / mov %reg, %drN (mod is ignored, as for control registers):
        // `x86emul_read_dr` / `x86emul_write_dr`.
        [0x0f, op @ (0x21 | 0x23), modrm, ..] => {
            let dr = u32::from((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
            let rm = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
            if op == 0x21 {
                match debugreg::get_debugreg(vcpu, dr) {
                    Ok(v) => *gpr(regs, rm) = v,
                    Err(_) => return Emulated::Ud,
                }
            } else {
                let value = *gpr(regs, rm);
                match debugreg::set_debugreg(vcpu, dr, value) {
                    Ok(()) => {}
                    Err(hypercall_abi::errno::Errno::ENODEV) => return Emulated::Ud,
                    Err(_) => return Emulated::No,
                }
            }
            regs.rip = regs.rip.wrapping_add(3 + prefix);
            Emulated::Done
        }
        // rdtsc / rdtscp: they fault only while the guest kernel has set CR4.TSD (which is
        // then the CPU's, `pv_make_cr4`); Xen emulates them for the kernel (`read_msr` of
        // MSR_IA32_TSC) and its user mode gets the #GP. RDTSCP only where the policy has it.
        [0x0f, 0x31, ..] => {
            let tsc = host.rdtsc();
            regs.rax = tsc & 0xffff_ffff;
            regs.rdx = tsc >> 32;
            regs.rip = regs.rip.wrapping_add(2 + prefix);
            Emulated::Done
        }
        [0x0f, 0x01, 0xf9, ..] => {
            if !msr::has_rdtscp(host) {
                return Emulated::Ud;
            }
            let tsc = host.rdtsc();
            regs.rax = tsc & 0xffff_ffff;
            regs.rdx = tsc >> 32;
            regs.rcx = vcpu.tsc_aux & 0xffff_ffff;
            regs.rip = regs.rip.wrapping_add(3 + prefix);
            Emulated::Done
        }
        // rdmsr / wrmsr of the MSRs Xen lets a PV kernel see.
        [0x0f, 0x32, ..] => {
            let Some(value) = msr::guest_rdmsr(vcpu, regs.rcx as u32, host) else {
                return Emulated::No;
            };
            regs.rax = value & 0xffff_ffff;
            regs.rdx = value >> 32;
            regs.rip = regs.rip.wrapping_add(2 + prefix);
            Emulated::Done
        }
        [0x0f, 0x30, ..] => {
            let value = (regs.rdx << 32) | (regs.rax & 0xffff_ffff);
            if !msr::guest_wrmsr(vcpu, regs.rcx as u32, value, host) {
                return Emulated::No;
            }
            regs.rip = regs.rip.wrapping_add(2 + prefix);
            Emulated::Done
        }
        _ => Emulated::No,
    }
}

/// General register number `n` (x86 encoding order) in the frame.
pub fn gpr(regs: &mut Regs, n: u8) -> &mut u64 {
    match n & 15 {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

/// `int $n` seen as #GP(n*8 + 2): the vector the guest tried to raise, if the error code says so.
pub fn soft_int_vector(error_code: u64) -> Option<u8> {
    (error_code & 3 == 2).then_some((error_code >> 3) as u8)
}

/// `permit_softint`: whether a trap-table entry of privilege `dpl` may be raised with `int $n`
/// from the current guest mode. The guest kernel (virtual ring 1 of the old 32-bit model) may
/// raise DPL 1..3, guest user mode only DPL 3.
pub fn permit_softint(dpl: u8, kernel_mode: bool) -> bool {
    dpl >= if kernel_mode { 1 } else { 3 }
}

pub mod debugreg;
pub mod msr;
pub use msr::MsrHost;
mod port_io;
pub use port_io::*;
mod pte_write;
pub use pte_write::{pte_write, warm_up_decoder, PteAccess};
#[cfg(test)]
mod privop_tests;
#[cfg(test)]
mod pte_write_tests;

const _: () = assert!(__HYPERVISOR_iret == 23);

#[cfg(test)]
mod tests;
