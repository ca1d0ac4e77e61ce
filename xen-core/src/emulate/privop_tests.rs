//! Tests of the debug-register, CR4 and MSR emulation with hostile operands, against a fake CPU.

use hypercall_abi::errno::Errno;

use super::debugreg::{get_debugreg, set_debugreg};
use super::msr::*;
use super::*;
use crate::domain::{Vcpu, DR6_DEFAULT};

/// A CPU for the MSR emulation: its vendor, family, features and a few MSR values.
#[derive(Clone, Copy, Debug)]
pub struct FakeHost {
    intel: bool,
    family_eax: u32,
    rdtscp: bool,
    efer: u64,
    misc_enable: Option<u64>,
}

impl FakeHost {
    /// QEMU's `-cpu max` under TCG: AMD, family 0xf, RDTSCP, MISC_ENABLE with fast strings.
    pub const AMD: FakeHost = FakeHost {
        intel: false,
        family_eax: 0xf << 8,
        rdtscp: true,
        efer: 0xd01 | (1 << 12),
        misc_enable: Some(1),
    };
    /// An Intel CPU without RDTSCP and without MISC_ENABLE (its read faults).
    pub const INTEL: FakeHost = FakeHost {
        intel: true,
        family_eax: 6 << 8,
        rdtscp: false,
        efer: 0xd01,
        misc_enable: None,
    };
}

impl MsrHost for FakeHost {
    fn rdmsr(&mut self, msr: u32) -> Option<u64> {
        match msr {
            MSR_EFER => Some(self.efer),
            MSR_IA32_MISC_ENABLE => self.misc_enable,
            MSR_APIC_BASE => Some(0xfee0_0900),
            MSR_AMD_PATCHLEVEL => Some(0x0100_0065),
            _ => None,
        }
    }

    fn rdtsc(&mut self) -> u64 {
        0x1_2345_6789
    }

    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        match leaf {
            0 => [
                0xd,
                if self.intel { 0x756e_6547 } else { 0x6874_7541 },
                0,
                0,
            ],
            1 => [self.family_eax, 0, 0, 0],
            7 => [0, 1, 0, 0],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [0, 0, 0, if self.rdtscp { 1 << 27 } else { 0 }],
            _ => [0; 4],
        }
    }
}

fn vcpu() -> Vcpu {
    Vcpu::default()
}

#[test]
fn debug_register_addresses_must_be_the_guests() {
    let mut v = vcpu();
    assert_eq!(set_debugreg(&mut v, 0, 0x7fff_ffff_f000), Ok(()));
    assert_eq!(get_debugreg(&v, 0), Ok(0x7fff_ffff_f000));
    // The hypervisor's range, non-canonical addresses, and a word running off the user half.
    for bad in [
        0xffff_8000_0000_0000,
        0xffff_87ff_ffff_fff8,
        0x0000_8000_0000_0000,
        0x0000_7fff_ffff_fffc,
        u64::MAX << 48 >> 1,
    ] {
        assert_eq!(set_debugreg(&mut v, 3, bad), Err(Errno::EPERM), "{bad:#x}");
    }
    assert_eq!(
        v.dr,
        [0x7fff_ffff_f000, 0, 0, 0],
        "refused values change nothing"
    );
    assert_eq!(set_debugreg(&mut v, 2, 0xffff_ffff_ffff_f000), Ok(()));
}

#[test]
fn dr6_and_dr7_reserved_bits_as_xen_4_17() {
    let mut v = vcpu();
    // DR6: bits 4..11 and 16..31 read as 1, bit 12 as 0, the upper half is refused.
    assert_eq!(set_debugreg(&mut v, 6, 0x1 | (1 << 12)), Ok(()));
    assert_eq!(v.dr6, 0xffff_0ff1);
    assert_eq!(set_debugreg(&mut v, 6, 1 << 32), Err(Errno::EINVAL));
    assert_eq!(v.dr6, 0xffff_0ff1);
    // DR7: bits 11, 12, 14, 15 masked, bit 10 set; GD refused; the upper half refused first.
    assert_eq!(set_debugreg(&mut v, 7, (1 << 11) | (1 << 15) | 1), Ok(()));
    assert_eq!(v.dr7, 0x401);
    assert_eq!(set_debugreg(&mut v, 7, 1 << 13), Err(Errno::EPERM));
    assert_eq!(
        set_debugreg(&mut v, 7, (1 << 13) | (1 << 32)),
        Err(Errno::EINVAL)
    );
    assert_eq!(v.dr7, 0x401);
    // Registers that do not exist.
    for r in [8, 15, 16, u32::MAX] {
        assert_eq!(set_debugreg(&mut v, r, 0), Err(Errno::ENODEV));
        assert_eq!(get_debugreg(&v, r), Err(Errno::ENODEV));
    }
}

#[test]
fn io_breakpoints_need_cr4_de_and_stay_out_of_the_cpu() {
    let mut v = vcpu();
    // R/W0 = 10b with any breakpoint enabled (here L1) is refused without CR4.DE...
    assert_eq!(
        set_debugreg(&mut v, 7, (1 << 2) | (2 << 16)),
        Err(Errno::EPERM)
    );
    // ... but accepted when nothing is enabled.
    assert_eq!(set_debugreg(&mut v, 7, 2 << 16), Ok(()));
    assert_eq!(v.dr7_emul, 0);
    v.cr4 = CR4_DE;
    assert_eq!(set_debugreg(&mut v, 7, 1 | (2 << 16)), Ok(()));
    assert_eq!(
        (v.dr7, v.dr7_emul),
        (0x20400, 1),
        "the enable bit is kept apart"
    );
    assert_eq!(get_debugreg(&v, 7), Ok(0x20401));
    assert_eq!(set_debugreg(&mut v, 7, 0), Ok(()));
    assert_eq!((v.dr7, v.dr7_emul), (0x400, 0));
}

#[test]
fn dr4_and_dr5_alias_dr6_and_dr7_only_without_cr4_de() {
    let mut v = vcpu();
    assert_eq!(set_debugreg(&mut v, 4, 0x8), Ok(()));
    assert_eq!(v.dr6, DR6_DEFAULT | 0x8);
    assert_eq!(get_debugreg(&v, 4), Ok(DR6_DEFAULT | 0x8));
    assert_eq!(set_debugreg(&mut v, 5, 0x2), Ok(()));
    assert_eq!(get_debugreg(&v, 5), Ok(0x402));
    v.cr4 = CR4_DE;
    assert_eq!(get_debugreg(&v, 4), Err(Errno::ENODEV));
    assert_eq!(get_debugreg(&v, 5), Err(Errno::ENODEV));
    assert_eq!(set_debugreg(&mut v, 4, 0), Err(Errno::ENODEV));
    assert_eq!(set_debugreg(&mut v, 5, 0), Err(Errno::ENODEV));
    assert_eq!(get_debugreg(&v, 6), Ok(DR6_DEFAULT | 0x8));
}

fn crs() -> GuestCrs {
    GuestCrs {
        cr0: 0x8005_003b,
        cr2: 0,
        cr3: 0x5000,
        cr4: 0x660,
        cr4_writable: CR4_TSD | CR4_DE | CR4_FSGSBASE,
    }
}

fn run(code: &[u8], v: &mut Vcpu, regs: &mut Regs, host: FakeHost) -> Emulated {
    privileged(regs, code, v, crs(), &mut { host })
}

#[test]
fn mov_to_and_from_debug_registers() {
    let mut v = vcpu();
    // mov %r9, %dr3 (REX.B), then mov %dr3, %rdx.
    let mut regs = Regs {
        r9: 0x4000,
        rip: 0x100,
        ..Regs::default()
    };
    assert_eq!(
        run(&[0x41, 0x0f, 0x23, 0xd9], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    assert_eq!((v.dr[3], regs.rip), (0x4000, 0x104));
    assert_eq!(
        run(&[0x0f, 0x21, 0xda], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    assert_eq!((regs.rdx, regs.rip), (0x4000, 0x107));
    // The mod bits are ignored: 0x1a is treated as 0xda.
    assert_eq!(
        run(&[0x0f, 0x21, 0x1a], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    // DR7 with GD: #GP, nothing changes, RIP stays.
    let mut regs = Regs {
        rax: 1 << 13,
        rip: 0x200,
        ..Regs::default()
    };
    assert_eq!(
        run(&[0x0f, 0x23, 0xf8], &mut v, &mut regs, FakeHost::AMD),
        Emulated::No
    );
    assert_eq!((v.dr7, regs.rip), (0x400, 0x200));
    // A hypervisor address in DR0: #GP.
    regs.rax = 0xffff_8000_0000_1000;
    assert_eq!(
        run(&[0x0f, 0x23, 0xc0], &mut v, &mut regs, FakeHost::AMD),
        Emulated::No
    );
    // DR8 (REX.R) either way, and DR4 with CR4.DE: #UD.
    assert_eq!(
        run(&[0x44, 0x0f, 0x21, 0xc0], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Ud
    );
    assert_eq!(
        run(&[0x44, 0x0f, 0x23, 0xc0], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Ud
    );
    v.cr4 = CR4_DE;
    assert_eq!(
        run(&[0x0f, 0x21, 0xe0], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Ud
    );
    assert_eq!(
        run(&[0x0f, 0x23, 0xe8], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Ud
    );
    assert_eq!(regs.rip, 0x200);
    // Truncated instructions are not emulated.
    assert_eq!(
        run(&[0x0f, 0x21], &mut v, &mut regs, FakeHost::AMD),
        Emulated::No
    );
    assert_eq!(run(&[0x44], &mut v, &mut regs, FakeHost::AMD), Emulated::No);
    assert_eq!(run(&[], &mut v, &mut regs, FakeHost::AMD), Emulated::No);
}

#[test]
fn cr4_writes_keep_only_what_the_policy_allows() {
    let mut v = vcpu();
    let mut regs = Regs {
        rax: u64::MAX,
        ..Regs::default()
    };
    assert_eq!(
        run(&[0x0f, 0x22, 0xe0], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    assert_eq!(v.cr4, CR4_TSD | CR4_DE | CR4_FSGSBASE);
    assert_eq!(guest_cr4(v.cr4, 0x660 | (1 << 7) | (1 << 20)), 0x1066c);
    // Without FSGSBASE in the CPU, the bit is discarded.
    let crs = GuestCrs {
        cr4_writable: CR4_TSD | CR4_DE,
        ..crs()
    };
    let mut regs = Regs {
        rax: CR4_FSGSBASE | CR4_OSXSAVE,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xe0], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(v.cr4, 0);
}

#[test]
fn pv_cr4_writable_follows_the_pv_cpuid_policy() {
    fn all(leaf: u32, _: u32) -> [u32; 4] {
        match leaf {
            0 => [0xd, 0, 0, 0],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            _ => [u32::MAX; 4],
        }
    }
    // XSAVE is hidden, so OSXSAVE is never writable.
    assert_eq!(pv_cr4_writable(all), CR4_TSD | CR4_DE | CR4_FSGSBASE);
    fn old(leaf: u32, _: u32) -> [u32; 4] {
        match leaf {
            0 => [0x4, 0, 0, 0],
            _ => [u32::MAX; 4],
        }
    }
    // No leaf 7: no FSGSBASE.
    assert_eq!(pv_cr4_writable(old), CR4_TSD | CR4_DE);
}

fn rd(msr: u32, v: &Vcpu, host: FakeHost) -> Option<u64> {
    guest_rdmsr(v, msr, &mut { host })
}

fn wr(msr: u32, value: u64, v: &mut Vcpu, host: FakeHost) -> bool {
    guest_wrmsr(v, msr, value, &mut { host })
}

#[test]
fn msrs_a_pv_guest_reads_as_on_xen_4_17() {
    let v = vcpu();
    let amd = FakeHost::AMD;
    assert_eq!(rd(MSR_IA32_CR_PAT, &v, amd), Some(0x0000_0501_0007_0406));
    assert_eq!(rd(MSR_IA32_MCG_CAP, &v, amd), Some(2));
    assert_eq!(rd(MSR_IA32_MCG_CAP, &v, FakeHost::INTEL), Some(0x0100_0c02));
    assert_eq!(rd(MSR_IA32_MCG_STATUS, &v, amd), Some(0));
    assert_eq!(rd(MSR_IA32_MCG_CTL, &v, amd), Some(0));
    assert_eq!(rd(MSR_IA32_MCG_EXT_CTL, &v, amd), None);
    // Banks 0 and 1: CTL all ones, the rest 0; banks 2..31 read as 0; past bank 31, #GP.
    assert_eq!(rd(0x400, &v, amd), Some(u64::MAX));
    assert_eq!(rd(0x404, &v, amd), Some(u64::MAX));
    assert_eq!(rd(0x405, &v, amd), Some(0));
    assert_eq!(rd(0x408, &v, amd), Some(0));
    assert_eq!(rd(0x47f, &v, amd), Some(0));
    assert_eq!(rd(0x480, &v, amd), None);
    assert_eq!(rd(0x280, &v, amd), Some(0));
    // The CPU's own, filtered.
    assert_eq!(rd(MSR_EFER, &v, amd), Some(0xd01), "SVME hidden");
    assert_eq!(rd(MSR_IA32_MISC_ENABLE, &v, amd), Some(0x80_1801));
    assert_eq!(rd(MSR_IA32_MISC_ENABLE, &v, FakeHost::INTEL), None);
    assert_eq!(rd(MSR_APIC_BASE, &v, amd), Some(0xfee0_0900));
    assert_eq!(rd(MSR_AMD_PATCHLEVEL, &v, amd), Some(0x0100_0065));
    assert_eq!(rd(MSR_IA32_TSC, &v, amd), Some(0x1_2345_6789));
    // Fixed answers.
    assert_eq!(rd(MSR_INTEL_PLATFORM_INFO, &v, amd), Some(0));
    assert_eq!(rd(MSR_IA32_PERF_CAPABILITIES, &v, amd), Some(0));
    assert_eq!(rd(MSR_HYPERVISOR_BASE, &v, amd), Some(0));
    assert_eq!(rd(MSR_HYPERVISOR_BASE + 1, &v, amd), None);
    assert_eq!(rd(MSR_K8_HWCR, &v, amd), Some(0));
    let fam17 = FakeHost {
        family_eax: (0xf << 8) | (0x8 << 20),
        ..amd
    };
    assert_eq!(rd(MSR_K8_HWCR, &v, fam17), Some(1 << 24));
    assert_eq!(rd(MSR_K8_HWCR, &v, FakeHost::INTEL), None);
    // TSC_AUX exists with RDTSCP only.
    assert_eq!(rd(MSR_TSC_AUX, &v, amd), Some(0));
    assert_eq!(rd(MSR_TSC_AUX, &v, FakeHost::INTEL), None);
    // Everything else is #GP.
    for msr in [
        0x3a,
        0x10a,
        0x48,
        0x174,
        0xc000_0081,
        0xc000_0082,
        0xfe,
        0x2ff,
        0xc000_0408,
        0x1234_5678,
        u32::MAX,
    ] {
        assert_eq!(rd(msr, &v, amd), None, "{msr:#x}");
    }
}

#[test]
fn msr_writes_as_on_xen_4_17() {
    let mut v = vcpu();
    let amd = FakeHost::AMD;
    // PAT is never writable, not even with its own value.
    assert!(!wr(MSR_IA32_CR_PAT, XEN_MSR_PAT, &mut v, amd));
    // vMCE: MCG_STATUS is stored, MCG_CAP and MCG_CTL ignored, bank STATUS/ADDR/MISC take 0 only.
    assert!(wr(MSR_IA32_MCG_STATUS, 1, &mut v, amd));
    assert_eq!(rd(MSR_IA32_MCG_STATUS, &v, amd), Some(1));
    assert!(wr(MSR_IA32_MCG_CAP, 0, &mut v, amd));
    assert!(wr(MSR_IA32_MCG_CTL, u64::MAX, &mut v, amd));
    assert_eq!(rd(MSR_IA32_MCG_CAP, &v, amd), Some(2));
    assert!(wr(0x400, 0, &mut v, amd));
    assert_eq!(rd(0x400, &v, amd), Some(u64::MAX));
    assert!(wr(0x401, 0, &mut v, amd));
    assert!(!wr(0x401, 1, &mut v, amd));
    assert!(!wr(0x402, 1, &mut v, amd));
    assert!(!wr(0x407, u64::MAX, &mut v, amd));
    assert!(wr(0x409, 5, &mut v, amd), "bank 2 does not exist: ignored");
    assert!(!wr(MSR_IA32_MCG_EXT_CTL, 0, &mut v, amd));
    assert!(!wr(0x480, 0, &mut v, amd));
    // Intel's MCi_CTL2 of the guest's banks is stored.
    assert!(wr(0x281, 7, &mut v, FakeHost::INTEL));
    assert_eq!(rd(0x281, &v, FakeHost::INTEL), Some(7));
    assert_eq!(rd(0x281, &v, amd), Some(0));
    // EFER: only the value the guest reads.
    assert!(wr(MSR_EFER, 0xd01, &mut v, amd));
    assert!(!wr(MSR_EFER, 0xd01 | (1 << 12), &mut v, amd));
    assert!(!wr(MSR_EFER, 0, &mut v, amd));
    // MISC_ENABLE: ignored where it exists.
    assert!(wr(MSR_IA32_MISC_ENABLE, 0, &mut v, amd));
    assert!(!wr(MSR_IA32_MISC_ENABLE, 0, &mut v, FakeHost::INTEL));
    // TSC_AUX: 32 bits, with RDTSCP.
    assert!(wr(MSR_TSC_AUX, 0xffff_ffff, &mut v, amd));
    assert_eq!(rd(MSR_TSC_AUX, &v, amd), Some(0xffff_ffff));
    assert!(!wr(MSR_TSC_AUX, 1 << 32, &mut v, amd));
    assert!(!wr(MSR_TSC_AUX, 0, &mut v, FakeHost::INTEL));
    // HWCR: dropped on AMD, #GP elsewhere.
    assert!(wr(MSR_K8_HWCR, 0, &mut v, amd));
    assert!(!wr(MSR_K8_HWCR, 0, &mut v, FakeHost::INTEL));
    // Bases: canonical only; each write counted.
    let writes = v.base_writes;
    assert!(wr(MSR_FS_BASE, 0x7000, &mut v, amd));
    assert!(!wr(MSR_GS_BASE, 0x0000_8000_0000_0000, &mut v, amd));
    assert_eq!((v.fs_base, v.base_writes), (0x7000, writes + 1));
    for msr in [
        0x10,
        0x1b,
        0x3a,
        0x48,
        0xc000_0082,
        0x176,
        0x4000_0000,
        0x1234_5678,
    ] {
        assert!(!wr(msr, 0, &mut v, amd), "{msr:#x}");
    }
}

#[test]
fn rdmsr_and_wrmsr_through_the_emulation() {
    let mut v = vcpu();
    let mut regs = Regs {
        rcx: u64::from(MSR_IA32_CR_PAT) | (0xdead << 32),
        rax: u64::MAX,
        rdx: u64::MAX,
        rip: 0x10,
        ..Regs::default()
    };
    // The upper half of RCX is ignored; RAX and RDX get zero-extended halves.
    assert_eq!(
        run(&[0x0f, 0x32], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    assert_eq!((regs.rax, regs.rdx, regs.rip), (0x0007_0406, 0x501, 0x12));
    // wrmsr takes EDX:EAX, ignoring the upper halves.
    let mut regs = Regs {
        rcx: u64::from(MSR_IA32_MCG_STATUS),
        rax: 0xffff_ffff_0000_0005,
        rdx: 0xffff_ffff_0000_0001,
        ..Regs::default()
    };
    assert_eq!(
        run(&[0x0f, 0x30], &mut v, &mut regs, FakeHost::AMD),
        Emulated::Done
    );
    assert_eq!(v.mcg_status, 0x1_0000_0005);
    // A refused write leaves RIP for the #GP.
    let mut regs = Regs {
        rcx: u64::from(MSR_IA32_CR_PAT),
        ..Regs::default()
    };
    assert_eq!(
        run(&[0x0f, 0x30], &mut v, &mut regs, FakeHost::AMD),
        Emulated::No
    );
    assert_eq!(regs.rip, 0);
}

/// Under the guest kernel's CR4.TSD the CPU faults `rdtsc`/`rdtscp` at CPL 3; Xen emulates them
/// for the kernel (the TSC split into EDX:EAX, TSC_AUX into ECX) and raises #UD for an RDTSCP
/// the policy does not offer.
#[test]
fn rdtsc_and_rdtscp_are_emulated_for_the_kernel_under_tsd() {
    let crs = GuestCrs {
        cr0: 0x8005_003b,
        cr2: 0,
        cr3: 0x5000,
        cr4: CR4_TSD,
        cr4_writable: CR4_TSD,
    };
    let mut v = Vcpu {
        cr4: CR4_TSD,
        tsc_aux: 7,
        ..vcpu()
    };
    let mut regs = Regs {
        rax: u64::MAX,
        rdx: u64::MAX,
        rcx: u64::MAX,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x31], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(
        (regs.rax, regs.rdx, regs.rcx, regs.rip),
        (0x2345_6789, 1, u64::MAX, 2)
    );
    // With a REX prefix the instruction is one byte longer.
    let mut regs = Regs::default();
    assert_eq!(
        privileged(&mut regs, &[0x48, 0x0f, 0x31], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(regs.rip, 3);
    let mut regs = Regs {
        rcx: u64::MAX,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x01, 0xf9], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(
        (regs.rax, regs.rdx, regs.rcx, regs.rip),
        (0x2345_6789, 1, 7, 3)
    );
    // No RDTSCP in the policy: #UD, nothing changed.
    let mut regs = Regs::default();
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x01, 0xf9], &mut v, crs, &mut {
            FakeHost::INTEL
        }),
        Emulated::Ud
    );
    assert_eq!(regs, Regs::default());
    // Other 0f 01 forms stay refused.
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x01, 0xf8], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
}
