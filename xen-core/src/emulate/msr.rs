//! `rdmsr`/`wrmsr` of a 64-bit PV kernel: the MSRs Xen 4.17 answers (`guest_rdmsr`/`guest_wrmsr`
//! in `arch/x86/msr.c`, `read_msr`/`write_msr` in `pv/emul-priv-op.c`, vMCE in
//! `cpu/mcheck/vmce.c`); every other MSR is #GP(0), as 4.17 does without `msr_relaxed`.
//!
//! Some answers are the CPU's (EFER, APIC_BASE as firmware left it, MISC_ENABLE, the microcode
//! revision), some depend on its vendor (vMCE's MCG_CAP, AMD's HWCR): both hypervisors give the
//! same on one machine, which is what the differential cases compare (QEMU's `-cpu max`, an AMD
//! model).

use super::{PV_EXT1_EDX, PV_LEAF7_ECX};
use crate::domain::Vcpu;
use crate::guest_access::is_canonical;

/// What the MSR emulation needs from the CPU; the arch layer runs the instructions.
pub trait MsrHost {
    /// `rdmsr_safe`: the CPU's value, `None` if reading it faults.
    fn rdmsr(&mut self, msr: u32) -> Option<u64>;
    /// `rdtsc`.
    fn rdtsc(&mut self) -> u64;
    /// The CPU's CPUID answer for a leaf.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
}

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_AMD_PATCHLEVEL: u32 = 0x8b;
pub const MSR_INTEL_PLATFORM_INFO: u32 = 0xce;
pub const MSR_IA32_MCG_CAP: u32 = 0x179;
pub const MSR_IA32_MCG_STATUS: u32 = 0x17a;
pub const MSR_IA32_MCG_CTL: u32 = 0x17b;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_IA32_CR_PAT: u32 = 0x277;
pub const MSR_IA32_MC0_CTL2: u32 = 0x280;
pub const MSR_IA32_PERF_CAPABILITIES: u32 = 0x345;
pub const MSR_IA32_MC0_CTL: u32 = 0x400;
pub const MSR_IA32_MCG_EXT_CTL: u32 = 0x4d0;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
pub const MSR_K8_HWCR: u32 = 0xc001_0015;
/// The hypercall-page MSR at the base of the hypervisor range (`rdmsr_hypervisor_regs`).
pub const MSR_HYPERVISOR_BASE: u32 = 0x4000_0000;

/// The PAT Xen programs and PV guests must use (`XEN_MSR_PAT`): WB, WT, UC-, UC, WC, WP, UC, UC.
/// The hypervisor loads it at boot, so what a guest reads is what its PTEs select.
pub const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;

/// vMCE's banks (`GUEST_MC_BANK_NUM`).
pub const GUEST_MC_BANK_NUM: u64 = 2;
const MCG_CMCI_P: u64 = 1 << 10;
const MCG_TES_P: u64 = 1 << 11;
const MCG_SER_P: u64 = 1 << 24;

/// EFER bits Xen knows (`EFER_KNOWN_MASK`: SCE, LME, LMA, NX, SVME, FFXSE), SVME always hidden.
const EFER_GUEST_MASK: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 14);

/// MISC_ENABLE as a guest sees it (`guest_misc_enable`): no performance monitoring or MONITOR,
/// BTS, PEBS and xTPR messages unavailable.
const fn guest_misc_enable(host: u64) -> u64 {
    (host & !((1 << 7) | (1 << 18))) | (1 << 11) | (1 << 12) | (1 << 23)
}

/// The CPU vendor, from CPUID leaf 0 (EBX of "AuthenticAMD", "HygonGenuine", "GenuineIntel").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// The vendor of the CPU `host` describes.
pub fn vendor(host: &mut dyn MsrHost) -> Vendor {
    match host.cpuid(0, 0)[1] {
        0x6874_7541 | 0x6f67_7948 => Vendor::Amd,
        0x756e_6547 => Vendor::Intel,
        _ => Vendor::Other,
    }
}

/// vMCE's MCG_CAP (`vmce_init_vcpu`): Intel's with software recovery, TES and CMCI, others'
/// with only the bank count.
pub fn guest_mcg_cap(vendor: Vendor) -> u64 {
    match vendor {
        Vendor::Intel => MCG_SER_P | MCG_TES_P | MCG_CMCI_P | GUEST_MC_BANK_NUM,
        _ => GUEST_MC_BANK_NUM,
    }
}

/// The x86 family from CPUID leaf 1 (base plus extended when the base is 0xf).
fn family(host: &mut dyn MsrHost) -> u32 {
    let a = host.cpuid(1, 0)[0];
    let base = (a >> 8) & 0xf;
    if base == 0xf {
        base + ((a >> 20) & 0xff)
    } else {
        base
    }
}

/// Whether the guest's CPUID policy offers RDTSCP.
pub fn has_rdtscp(host: &mut dyn MsrHost) -> bool {
    host.cpuid(0x8000_0000, 0)[0] >= 0x8000_0001
        && host.cpuid(0x8000_0001, 0)[3] & PV_EXT1_EDX & (1 << 27) != 0
}

/// Whether the guest's CPUID policy offers RDTSCP or RDPID, which make TSC_AUX exist.
fn has_tsc_aux(host: &mut dyn MsrHost) -> bool {
    let rdtscp = has_rdtscp(host);
    let rdpid = host.cpuid(0, 0)[0] >= 7 && host.cpuid(7, 0)[2] & PV_LEAF7_ECX & (1 << 22) != 0;
    rdtscp || rdpid
}

/// An MSR of the vMCE ranges Xen hands to `vmce_rdmsr`/`vmce_wrmsr`: MCG_CAP..MCG_CTL,
/// MC0_CTL2..MC31_CTL2, MC0_CTL..MC31_MISC and MCG_EXT_CTL.
fn vmce_msr(msr: u32) -> bool {
    matches!(msr, MSR_IA32_MCG_CAP..=MSR_IA32_MCG_CTL | 0x280..=0x29f | 0x400..=0x47f | MSR_IA32_MCG_EXT_CTL)
}

/// A bank MSR of one of the guest's banks (`mce_bank_msr`): MCi_CTL/STATUS/ADDR/MISC, and on
/// Intel MCi_CTL2. Returns the bank and the register (0..=3, or 4 for CTL2).
fn vmce_bank(msr: u32, vendor: Vendor) -> Option<(usize, u32)> {
    let n = GUEST_MC_BANK_NUM as u32;
    match msr {
        0x400..=0x47f if (msr - MSR_IA32_MC0_CTL) / 4 < n => {
            Some((((msr - MSR_IA32_MC0_CTL) / 4) as usize, msr & 3))
        }
        0x280..=0x29f if vendor == Vendor::Intel && msr - MSR_IA32_MC0_CTL2 < n => {
            Some(((msr - MSR_IA32_MC0_CTL2) as usize, 4))
        }
        _ => None,
    }
}

/// `vmce_rdmsr`: `None` is its -1 (#GP); MSRs of the ranges it does not know read as 0.
fn vmce_rdmsr(v: &Vcpu, msr: u32, vendor: Vendor) -> Option<u64> {
    Some(match msr {
        MSR_IA32_MCG_STATUS => v.mcg_status,
        MSR_IA32_MCG_CAP => guest_mcg_cap(vendor),
        // No MCG_CTL_P in the capabilities: reads as 0.
        MSR_IA32_MCG_CTL => 0,
        // No LMCE offered.
        MSR_IA32_MCG_EXT_CTL => return None,
        _ => match vmce_bank(msr, vendor) {
            // "stick all 1's to MCi_CTL"
            Some((_, 0)) => u64::MAX,
            Some((bank, 4)) => v.mci_ctl2[bank],
            // STATUS, ADDR and MISC only take 0 (writes below), so they read 0.
            Some(_) | None => 0,
        },
    })
}

/// `vmce_wrmsr`: `false` is its -1 (#GP).
fn vmce_wrmsr(v: &mut Vcpu, msr: u32, value: u64, vendor: Vendor) -> bool {
    match msr {
        MSR_IA32_MCG_STATUS => {
            v.mcg_status = value;
            true
        }
        // Fixed; writes are ignored.
        MSR_IA32_MCG_CAP | MSR_IA32_MCG_CTL => true,
        MSR_IA32_MCG_EXT_CTL => false,
        _ => match vmce_bank(msr, vendor) {
            // A guest clearing bits of MCi_CTL is ignored.
            Some((_, 0)) => true,
            // MCi_STATUS, MCi_ADDR, MCi_MISC: only 0 may be written.
            Some((_, 1..=3)) => value == 0,
            Some((bank, _)) => {
                v.mci_ctl2[bank] = value;
                true
            }
            None => true,
        },
    }
}

/// `rdmsr` of `msr` by the guest kernel: the value, or `None` for #GP(0).
pub fn guest_rdmsr(v: &Vcpu, msr: u32, host: &mut dyn MsrHost) -> Option<u64> {
    let vendor = vendor(host);
    if vmce_msr(msr) {
        return vmce_rdmsr(v, msr, vendor);
    }
    Some(match msr {
        MSR_FS_BASE => v.fs_base,
        MSR_GS_BASE => v.gs_base_kernel,
        MSR_SHADOW_GS_BASE => v.gs_base_user,
        MSR_IA32_TSC => host.rdtsc(),
        MSR_IA32_CR_PAT => XEN_MSR_PAT,
        MSR_EFER => host.rdmsr(MSR_EFER)? & EFER_GUEST_MASK,
        MSR_APIC_BASE => host.rdmsr(MSR_APIC_BASE)?,
        MSR_IA32_MISC_ENABLE => guest_misc_enable(host.rdmsr(MSR_IA32_MISC_ENABLE)?),
        MSR_AMD_PATCHLEVEL if vendor != Vendor::Other => host.rdmsr(MSR_AMD_PATCHLEVEL)?,
        // No CPUID faulting offered.
        MSR_INTEL_PLATFORM_INFO => 0,
        // "No extra capabilities are supported."
        MSR_IA32_PERF_CAPABILITIES => 0,
        MSR_TSC_AUX if has_tsc_aux(host) => v.tsc_aux,
        MSR_K8_HWCR if vendor == Vendor::Amd => {
            // K8_HWCR_TSC_FREQ_SEL on family 0x10 and later.
            if family(host) >= 0x10 {
                1 << 24
            } else {
                0
            }
        }
        // The hypercall-page MSR reads as zero.
        MSR_HYPERVISOR_BASE => 0,
        _ => return None,
    })
}

/// `wrmsr` of `value` to `msr` by the guest kernel: `false` for #GP(0).
pub fn guest_wrmsr(v: &mut Vcpu, msr: u32, value: u64, host: &mut dyn MsrHost) -> bool {
    let vendor = vendor(host);
    if vmce_msr(msr) {
        return vmce_wrmsr(v, msr, value, vendor);
    }
    match msr {
        MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE => {
            if !is_canonical(value) {
                return false;
            }
            match msr {
                MSR_FS_BASE => v.fs_base = value,
                MSR_GS_BASE => v.gs_base_kernel = value,
                _ => v.gs_base_user = value,
            }
            v.base_writes = v.base_writes.wrapping_add(1);
            true
        }
        // Linux writes the value back it read: only that is accepted.
        MSR_EFER => host
            .rdmsr(MSR_EFER)
            .is_some_and(|e| e & EFER_GUEST_MASK == value),
        // Xen logs a write of another value and ignores it.
        MSR_IA32_MISC_ENABLE => host.rdmsr(MSR_IA32_MISC_ENABLE).is_some(),
        MSR_TSC_AUX if has_tsc_aux(host) => {
            if value >> 32 != 0 {
                return false;
            }
            v.tsc_aux = value;
            true
        }
        // Not a cpufreq controller: frequency and HWCR writes are dropped.
        MSR_K8_HWCR => vendor == Vendor::Amd,
        _ => false,
    }
}
