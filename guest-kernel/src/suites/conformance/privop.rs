//! Conformance cases for the privileged instructions Xen emulates for a PV kernel beyond the basics
//! of [`super::cpu`]: `mov` to and from the debug registers (with `set_debugreg`'s checks), CR4
//! reads and writes, `rdmsr`/`wrmsr` of the MSRs Xen answers, and `VMASST_TYPE_architectural_iopl`
//! (`xen/arch/x86/pv/emul-priv-op.c`, `x86_emulate.c`'s `x86emul_read_dr`/`write_dr`,
//! `pv/iret.c`, `pv/misc-hypercalls.c`).
//!
//! Some answers depend on the CPU model QEMU offers (`-cpu max` on both hypervisors): the CR4 bits
//! a guest sees (MCE), whether CR4.FSGSBASE can be set (the CPU's FSGSBASE), and the machine-check
//! MSRs (Xen's vMCE gives Intel and AMD guests different MCG_CAP values). Those cases say so.

use core::arch::asm;

use hypercall_abi::physdev::PhysdevSetIopl;
use hypercall_abi::xen::{VMASST_CMD_disable, VMASST_CMD_enable, VMASST_TYPE_architectural_iopl};

use super::{flag, values, Suite, Values, NON_CANONICAL};
use crate::kernel::hypercall as hc;
use crate::kernel::traps::{self, probe, Probe};

/// CR4.TSD, CR4.DE, CR4.PGE, CR4.FSGSBASE, CR4.OSXSAVE.
const CR4_TSD: u64 = 1 << 2;
const CR4_DE: u64 = 1 << 3;
const CR4_PGE: u64 = 1 << 7;
const CR4_FSGSBASE: u64 = 1 << 16;
const CR4_OSXSAVE: u64 = 1 << 18;
/// DR7.L0, DR7.GD, and R/W0 = 10b (an I/O breakpoint).
const DR7_L0: u64 = 1;
const DR7_GD: u64 = 1 << 13;
const DR7_RW0_IO: u64 = 2 << 16;
/// The start of the hypervisor's range: never a valid breakpoint address for a guest.
const HYPERVISOR_ADDRESS: u64 = 0xffff_8000_0000_0000;

/// Every group of this module, in order. Each case puts back what it changed (debug registers
/// cleared, CR4 as found, IOPL 0, the assist off).
pub(super) fn cases(s: &mut Suite) {
    s.group("privop_dr", debug_register_cases);
    s.group("privop_cr4", cr4_cases);
    s.group("privop_msr", msr_cases);
    s.group("privop_iopl", iopl_cases);
}

/// `mov %drN, %rax`: the probe and the value read.
fn read_dr(n: u8) -> (Probe, Option<u64>) {
    let mut v: u64 = 0;
    // SAFETY: reading a debug register has no side effect; at CPL 3 it traps and Xen emulates it
    // (or injects #GP/#UD, which the handler resumes from).
    let p = unsafe {
        match n {
            0 => probe!("mov %dr0, {v}", v = inout(reg) v),
            1 => probe!("mov %dr1, {v}", v = inout(reg) v),
            2 => probe!("mov %dr2, {v}", v = inout(reg) v),
            3 => probe!("mov %dr3, {v}", v = inout(reg) v),
            4 => probe!(".byte 0x0f, 0x21, 0xe0", inout("rax") v),
            5 => probe!(".byte 0x0f, 0x21, 0xe8", inout("rax") v),
            6 => probe!("mov %dr6, {v}", v = inout(reg) v),
            7 => probe!("mov %dr7, {v}", v = inout(reg) v),
            // REX.R: DR8, which does not exist.
            _ => probe!(".byte 0x44, 0x0f, 0x21, 0xc0", inout("rax") v),
        }
    };
    (p, p.trap.is_none().then_some(v))
}

/// `mov %rax, %drN`: the probe.
fn write_dr(n: u8, value: u64) -> Probe {
    // SAFETY: the cases write breakpoint addresses nothing executes or touches, control values
    // without enabled data breakpoints, and status values; at CPL 3 the write traps and Xen
    // emulates it (or injects #GP/#UD).
    unsafe {
        match n {
            0 => probe!("mov {v}, %dr0", v = in(reg) value),
            4 => probe!(".byte 0x0f, 0x23, 0xe0", in("rax") value),
            5 => probe!(".byte 0x0f, 0x23, 0xe8", in("rax") value),
            6 => probe!("mov {v}, %dr6", v = in(reg) value),
            7 => probe!("mov {v}, %dr7", v = in(reg) value),
            _ => probe!(".byte 0x44, 0x0f, 0x23, 0xc0", in("rax") value),
        }
    }
}

/// `mov %cr4, %rax`.
fn read_cr4() -> (Probe, Option<u64>) {
    let mut v: u64 = 0;
    // SAFETY: reading CR4 has no side effect (emulated by the hypervisor).
    let p = unsafe { probe!("mov %cr4, {v}", v = inout(reg) v) };
    (p, p.trap.is_none().then_some(v))
}

/// `mov %rax, %cr4`.
fn write_cr4(value: u64) -> Probe {
    // SAFETY: the hypervisor keeps only the bits a PV guest owns (TSD, DE, FSGSBASE, OSXSAVE),
    // none of which this kernel relies on; every case writes the value it read back afterwards.
    unsafe { probe!("mov {v}, %cr4", v = in(reg) value) }
}

/// Something no code executes: the address of a breakpoint that never fires.
fn never_executed() -> u64 {
    static NEVER: [u8; 16] = [0xcc; 16];
    (&raw const NEVER) as u64
}

/// A value, or `trap` with the probe's trap.
struct Read(Probe, Option<u64>);

impl core::fmt::Display for Read {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.1 {
            Some(v) => write!(f, "{v:#x}"),
            None => write!(f, "[{}]", self.0),
        }
    }
}

fn debug_register_cases(s: &mut Suite) {
    let addr = never_executed();

    s.run("dr.mov_from_dr0", || {
        let rc = hc::set_debugreg(0, addr);
        let (p, v) = read_dr(0);
        let undo = hc::set_debugreg(0, 0);
        values!("set={rc} {p} matches={} undo={undo}", flag(v == Some(addr)))
    });
    s.run("dr.mov_to_dr0", || {
        let p = write_dr(0, addr + 8);
        let got = hc::get_debugreg(0) as u64 == addr + 8;
        let undo = hc::set_debugreg(0, 0);
        values!("{p} get_matches={} undo={undo}", flag(got))
    });
    for (name, value) in [
        ("dr.mov_to_dr0_hypervisor_address", HYPERVISOR_ADDRESS),
        ("dr.mov_to_dr0_non_canonical", NON_CANONICAL),
        ("dr.mov_to_dr0_last_user_page", 0x0000_7fff_ffff_f000),
    ] {
        s.run(name, || {
            let p = write_dr(0, value);
            let now = hc::get_debugreg(0) as u64;
            let undo = hc::set_debugreg(0, 0);
            values!("{p} took={} undo={undo}", flag(now == value))
        });
    }
    s.run("dr.initial_dr6_dr7", || {
        values!("dr6={} dr7={}", Read(read_dr(6).0, read_dr(6).1), {
            let (p, v) = read_dr(7);
            Read(p, v)
        })
    });
    s.run("dr.mov_to_dr7_exec_breakpoint", || {
        let rc = hc::set_debugreg(0, addr);
        let p = write_dr(7, DR7_L0);
        let (_, v) = read_dr(7);
        let get = hc::get_debugreg(7);
        let undo = hc::set_debugreg(7, 0);
        let undo0 = hc::set_debugreg(0, 0);
        values!(
            "set0={rc} {p} read={} get={get:#x} undo={undo},{undo0}",
            Read(p, v)
        )
    });
    for (name, value) in [
        ("dr.mov_to_dr7_general_detect", DR7_GD | DR7_L0),
        ("dr.mov_to_dr7_reserved_bit_11", 1 << 11),
        ("dr.mov_to_dr7_reserved_bit_15", 1 << 15),
        ("dr.mov_to_dr7_upper_half", 1 << 32),
        (
            "dr.mov_to_dr7_io_breakpoint_without_de",
            DR7_L0 | DR7_RW0_IO,
        ),
    ] {
        s.run(name, || {
            let p = write_dr(7, value);
            let get = hc::get_debugreg(7);
            let undo = hc::set_debugreg(7, 0);
            values!("{p} get={get:#x} undo={undo}")
        });
    }
    s.run("dr.mov_to_dr6", || {
        let p = write_dr(6, 0x1);
        let (_, v) = read_dr(6);
        let get = hc::get_debugreg(6);
        let undo = hc::set_debugreg(6, 0);
        values!("{p} read={} get={get:#x} undo={undo}", Read(p, v))
    });
    s.run("dr.mov_to_dr6_upper_half", || {
        let p = write_dr(6, (1 << 32) | 0x2);
        let get = hc::get_debugreg(6);
        let undo = hc::set_debugreg(6, 0);
        values!("{p} get={get:#x} undo={undo}")
    });
    // Without CR4.DE, DR4 and DR5 are DR6 and DR7.
    s.run("dr.mov_from_dr4_dr5_alias", || {
        let r6 = hc::set_debugreg(6, 0x4);
        let (p4, v4) = read_dr(4);
        let (p5, v5) = read_dr(5);
        let undo = hc::set_debugreg(6, 0);
        values!(
            "set6={r6} dr4={} dr5={} undo={undo}",
            Read(p4, v4),
            Read(p5, v5)
        )
    });
    s.run("dr.mov_to_dr4_dr5_alias", || {
        let p4 = write_dr(4, 0x8);
        let g6 = hc::get_debugreg(6);
        let p5 = write_dr(5, 0);
        let g7 = hc::get_debugreg(7);
        let undo = hc::set_debugreg(6, 0);
        values!("dr4=[{p4}] get6={g6:#x} dr5=[{p5}] get7={g7:#x} undo={undo}")
    });
    // With CR4.DE they are refused (#UD), and an I/O breakpoint becomes acceptable.
    s.run("dr.with_cr4_de", || {
        let Some(cr4) = read_cr4().1 else {
            return values!("cr4_read_trapped");
        };
        let set = write_cr4(cr4 | CR4_DE);
        let de = read_cr4().1.is_some_and(|v| v & CR4_DE != 0);
        let (p4, _) = read_dr(4);
        let p5 = write_dr(5, 0);
        let io = write_dr(7, DR7_L0 | DR7_RW0_IO);
        let (_, dr7) = read_dr(7);
        let get7 = hc::get_debugreg(7);
        let undo7 = hc::set_debugreg(7, 0);
        let restore = write_cr4(cr4);
        values!(
            "set=[{set}] de={} dr4=[{p4}] dr5=[{p5}] io=[{io}] dr7={:#x} get7={get7:#x} undo={undo7} restore=[{restore}]",
            flag(de),
            dr7.unwrap_or(0)
        )
    });
    s.run("dr.mov_dr8", || {
        let (p, _) = read_dr(8);
        let w = write_dr(8, 0);
        values!("read=[{p}] write=[{w}]")
    });
    // The hypercalls, with the same checks.
    s.run("debugreg.set_bad_values", || {
        let gd = hc::set_debugreg(7, DR7_GD);
        let r11 = hc::set_debugreg(7, 1 << 11);
        let up7 = hc::set_debugreg(7, 1 << 32);
        let io = hc::set_debugreg(7, DR7_L0 | DR7_RW0_IO);
        let up6 = hc::set_debugreg(6, 1 << 32);
        let hv = hc::set_debugreg(0, HYPERVISOR_ADDRESS);
        let gd_upper = hc::set_debugreg(7, DR7_GD | (1 << 32));
        let io_other_enabled = hc::set_debugreg(7, (1 << 2) | DR7_RW0_IO);
        let io_disabled = hc::set_debugreg(7, DR7_RW0_IO);
        let dr6_bit12 = (hc::set_debugreg(6, 1 << 12), hc::get_debugreg(6));
        let undo = (hc::set_debugreg(7, 0), hc::set_debugreg(6, 0));
        values!(
            "gd={gd} bit11={r11} dr7_upper={up7} io={io} dr6_upper={up6} dr0_hv={hv} gd_upper={gd_upper} io_other={io_other_enabled} io_off={io_disabled} dr6_bit12={},{:#x} undo={},{}",
            dr6_bit12.0,
            dr6_bit12.1,
            undo.0,
            undo.1
        )
    });
    s.run("debugreg.registers_4_5_8", || {
        let g4 = hc::get_debugreg(4);
        let g5 = hc::get_debugreg(5);
        let g8 = hc::get_debugreg(8);
        let s4 = hc::set_debugreg(4, 0);
        let s5 = hc::set_debugreg(5, 0);
        let s8 = hc::set_debugreg(8, 0);
        let undo = hc::set_debugreg(6, 0);
        values!("get4={g4:#x} get5={g5:#x} get8={g8} set4={s4} set5={s5} set8={s8} undo={undo}")
    });
}

fn cr4_cases(s: &mut Suite) {
    // Which hardware bits show (PAE, MCE, OSFXSR, OSXMMEXCPT) depends on the CPU model: MCE only
    // where the CPU has machine checks.
    s.run("cr4.read", || {
        let (p, v) = read_cr4();
        values!("{}", Read(p, v))
    });
    // Bits the guest owns stick in its view if its CPUID policy has the feature (TSD, DE; FSGSBASE
    // depends on the CPU model); a write never faults and other bits are ignored.
    for (name, bit) in [
        ("cr4.write_tsd", CR4_TSD),
        ("cr4.write_de", CR4_DE),
        ("cr4.write_fsgsbase", CR4_FSGSBASE),
        ("cr4.write_pge_ignored", CR4_PGE),
    ] {
        s.run(name, || {
            let Some(cr4) = read_cr4().1 else {
                return values!("read_trapped");
            };
            let set = write_cr4(cr4 | bit);
            let after = read_cr4().1.map(|v| v & bit != 0);
            let clear = write_cr4(cr4 & !bit);
            let back = read_cr4().1 == Some(cr4 & !bit);
            values!(
                "set=[{set}] bit_after={} clear=[{clear}] restored={}",
                after.map_or(2, u8::from),
                flag(back)
            )
        });
    }
    s.run("cr4.write_clears_hardware_bits_ignored", || {
        let Some(cr4) = read_cr4().1 else {
            return values!("read_trapped");
        };
        let p = write_cr4(0);
        let after = read_cr4().1;
        let restore = write_cr4(cr4);
        values!(
            "[{p}] unchanged={} restore=[{restore}]",
            flag(after == Some(cr4))
        )
    });
    // Under CR4.TSD the CPU faults `rdtsc`/`rdtscp` at CPL 3, where this kernel runs: Xen loads
    // the bit into the CPU (`pv_make_cr4`) and emulates both for the kernel, so they still work
    // here and return a TSC that moves on (and, for `rdtscp`, TSC_AUX in ECX).
    s.run("cr4.tsd_kernel_rdtsc_emulated", || {
        let Some(cr4) = read_cr4().1 else {
            return values!("read_trapped");
        };
        let set = write_cr4(cr4 | CR4_TSD);
        let tsd = read_cr4().1.is_some_and(|v| v & CR4_TSD != 0);
        let (p1, t1) = rdtsc();
        let (p2, t2) = rdtsc();
        let (p3, t3, aux) = rdtscp();
        let restore = write_cr4(cr4);
        let aux_read = rdmsr(MSR_TSC_AUX).1;
        values!(
            "set=[{set}] tsd={} rdtsc=[{p1}] [{p2}] moves_on={} rdtscp=[{p3}] later={} aux_matches={} restore=[{restore}]",
            flag(tsd),
            flag(t2 > t1),
            flag(p3.trap.is_some() || t3 > t2),
            flag(p3.trap.is_some() || Some(u64::from(aux)) == aux_read)
        )
    });
    let _ = CR4_OSXSAVE;
}

/// MSR_TSC_AUX (what `rdtscp` returns in ECX).
const MSR_TSC_AUX: u32 = 0xc000_0103;

/// `rdtsc`: the probe and the TSC.
fn rdtsc() -> (Probe, u64) {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: reading the TSC has no side effect; under CR4.TSD it traps and is emulated.
    let p = unsafe { probe!("rdtsc", inout("eax") lo, inout("edx") hi) };
    (p, (u64::from(hi) << 32) | u64::from(lo))
}

/// `rdtscp`: the probe, the TSC and ECX (TSC_AUX).
fn rdtscp() -> (Probe, u64, u32) {
    let (mut lo, mut hi, mut aux) = (0u32, 0u32, 0u32);
    // SAFETY: as `rdtsc`; without RDTSCP in the policy it is #UD, which the handler resumes from.
    let p = unsafe { probe!("rdtscp", inout("eax") lo, inout("edx") hi, inout("ecx") aux) };
    (p, (u64::from(hi) << 32) | u64::from(lo), aux)
}

/// `rdmsr` of `msr`: the value or the trap.
fn rdmsr(msr: u32) -> Read {
    let (p, v) = super::insn::rdmsr(msr);
    Read(p, v)
}

/// `wrmsr` of `value` to `msr`.
fn wrmsr(msr: u32, value: u64) -> Probe {
    // SAFETY: the cases write values Xen ignores or refuses, or the value just read back; none
    // of the MSRs written changes anything this kernel relies on.
    unsafe {
        probe!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32
        )
    }
}

fn msr_cases(s: &mut Suite) {
    // Values a PV guest sees on QEMU's `-cpu max`: some come from the CPU model (the vendor
    // decides vMCE's MCG_CAP, the PAT is the hypervisor's), so the same machine must give the
    // same answers on both hypervisors.
    for (name, msr) in [
        ("msr.read_pat", 0x277u32),
        ("msr.read_mcg_cap", 0x179),
        ("msr.read_mcg_status", 0x17a),
        ("msr.read_mcg_ctl", 0x17b),
        ("msr.read_mc0_ctl", 0x400),
        ("msr.read_mc0_status", 0x401),
        ("msr.read_mc1_status", 0x405),
        ("msr.read_mc2_ctl", 0x408),
        ("msr.read_efer", 0xc000_0080),
        ("msr.read_apic_base", 0x1b),
        ("msr.read_misc_enable", 0x1a0),
        ("msr.read_platform_info", 0xce),
        ("msr.read_feature_control", 0x3a),
        ("msr.read_arch_capabilities", 0x10a),
        ("msr.read_spec_ctrl", 0x48),
        ("msr.read_tsc_aux", 0xc000_0103),
        ("msr.read_sysenter_cs", 0x174),
        ("msr.read_star", 0xc000_0081),
        ("msr.read_lstar", 0xc000_0082),
        ("msr.read_perf_capabilities", 0x345),
        ("msr.read_mtrr_cap", 0xfe),
        ("msr.read_mtrr_def_type", 0x2ff),
        ("msr.read_hypervisor_base", 0x4000_0000),
        ("msr.read_amd_hwcr", 0xc001_0015),
        ("msr.read_amd_patch_level", 0x8b),
        ("msr.read_mc0_addr", 0x402),
        ("msr.read_mc0_misc", 0x403),
        ("msr.read_mc1_ctl", 0x404),
        ("msr.read_mc2_status", 0x409),
        ("msr.read_mc3_ctl", 0x40c),
        ("msr.read_mc31_ctl", 0x47c),
        ("msr.read_mc32_ctl", 0x480),
        ("msr.read_mc0_ctl2", 0x280),
        ("msr.read_mc4_misc1", 0xc000_0408),
        ("msr.read_hypervisor_base_plus_1", 0x4000_0001),
        ("msr.read_mcg_ext_ctl", 0x4d0),
    ] {
        s.run(name, || values!("{}", rdmsr(msr)));
    }
    s.run("msr.read_tsc", || {
        let r = rdmsr(0x10);
        values!("{}", if r.1.is_some() { "value" } else { "trap" })
    });
    s.run("msr.write_efer_same", || {
        let old = rdmsr(0xc000_0080).1;
        let p = wrmsr(0xc000_0080, old.unwrap_or(0));
        values!("{p} after={}", rdmsr(0xc000_0080))
    });
    s.run("msr.write_misc_enable_same", || {
        let old = rdmsr(0x1a0).1;
        let p = wrmsr(0x1a0, old.unwrap_or(0));
        values!("{p} after={}", rdmsr(0x1a0))
    });
    s.run("msr.write_pat_same", || {
        let old = rdmsr(0x277).1;
        let p = wrmsr(0x277, old.unwrap_or(0x0007_0406_0007_0406));
        values!("{p} after={}", rdmsr(0x277))
    });
    s.run("msr.write_pat_other", || {
        let old = rdmsr(0x277).1;
        let p = wrmsr(0x277, 0x0606_0606_0606_0606);
        let after = rdmsr(0x277);
        let undo = old.map(|v| wrmsr(0x277, v));
        values!(
            "{p} after={after} undo=[{}]",
            undo.map_or(values!("none"), |u| values!("{u}"))
        )
    });
    for (name, msr, value) in [
        ("msr.write_mcg_status_zero", 0x17au32, 0u64),
        ("msr.write_mcg_status_one", 0x17a, 1),
        ("msr.write_mcg_ctl_ones", 0x17b, u64::MAX),
        ("msr.write_mcg_cap", 0x179, 0),
        ("msr.write_mc0_status_zero", 0x401, 0),
        ("msr.write_mc0_status_nonzero", 0x401, 1),
        ("msr.write_efer_zero", 0xc000_0080, 0),
        (
            "msr.write_fs_base_non_canonical",
            0xc000_0100,
            NON_CANONICAL,
        ),
        ("msr.write_lstar", 0xc000_0082, 0),
        ("msr.write_sysenter_eip", 0x176, 0),
        ("msr.write_spec_ctrl_zero", 0x48, 0),
        ("msr.write_mc0_ctl_zero", 0x400, 0),
        ("msr.write_mc0_addr_nonzero", 0x402, 1),
        ("msr.write_mc0_misc_zero", 0x403, 0),
        ("msr.write_mc2_status_zero", 0x409, 0),
        ("msr.write_mc2_ctl_zero", 0x408, 0),
        ("msr.write_mcg_status_back_to_zero", 0x17a, 0),
        ("msr.write_hwcr_zero", 0xc001_0015, 0),
        ("msr.write_misc_enable_zero", 0x1a0, 0),
        ("msr.write_tsc_aux", 0xc000_0103, 0),
    ] {
        s.run(name, || {
            let p = wrmsr(msr, value);
            values!("{p} after={}", rdmsr(msr))
        });
    }
}

/// `PHYSDEVOP_set_iopl`.
fn set_iopl(iopl: u32) -> i64 {
    hc::physdev_op(&mut PhysdevSetIopl { iopl })
}

/// The IOPL field of the RFLAGS in the bounce frame of a `ud2`.
fn bounce_iopl() -> Values {
    // SAFETY: `ud2` always raises #UD; the armed handler resumes after it.
    let p = unsafe { probe!("ud2") };
    match p.trap {
        Some(t) => values!("{}", (t.rflags >> 12) & 3),
        None => values!("no_trap"),
    }
}

fn iopl_cases(s: &mut Suite) {
    // With the assist, the guest kernel counts as ring 0 for its virtual IOPL: `cli` is allowed at
    // IOPL 0 (and skipped); without it, the kernel is ring 1 and needs IOPL 1.
    s.run("iopl.architectural_cli_sti", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl);
        // SAFETY: Xen never lets `cli`/`sti` change the upcall mask: #GP or skipped.
        let cli = unsafe { probe!("cli") };
        // SAFETY: as above.
        let sti = unsafe { probe!("sti") };
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl);
        // SAFETY: as above.
        let cli_off = unsafe { probe!("cli") };
        values!("enable={on} cli=[{cli}] sti=[{sti}] disable={off} cli_off=[{cli_off}]")
    });
    s.run("iopl.architectural_port_io", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl);
        // SAFETY: reading the POST port has no effect.
        let inb = unsafe { probe!("inb $0x80, %al", out("al") _) };
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl);
        values!("enable={on} inb=[{inb}] disable={off}")
    });
    // The bounce frame carries the virtual IOPL only with the assist.
    s.run("iopl.bounce_frame", || {
        let rc = set_iopl(2);
        let without = bounce_iopl();
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl);
        let with = bounce_iopl();
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl);
        let undo = set_iopl(0);
        values!("set_iopl={rc} without={without} enable={on} with={with} disable={off} undo={undo}")
    });
    // `iret` takes the IOPL from the frame with the assist, and ignores it without.
    s.run("iopl.iret_sets_iopl", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl);
        traps::iret_with_rflags(3 << 12);
        let with = bounce_iopl();
        traps::iret_with_rflags(1 << 12);
        let one = bounce_iopl();
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl);
        // Without the assist the frame's IOPL is dropped: the kernel (ring 1) still needs IOPL 1.
        let zero = set_iopl(0);
        traps::iret_with_rflags(3 << 12);
        // SAFETY: reading the POST port has no effect; #GP at IOPL 0.
        let inb = unsafe { probe!("inb $0x80, %al", out("al") _) };
        let undo = set_iopl(0);
        values!("enable={on} with3={with} with1={one} disable={off} set0={zero} inb_after_iret3=[{inb}] undo={undo}")
    });
    // The real RFLAGS.IOPL a guest runs with stays 0 (`pushf` shows it).
    s.run("iopl.pushf_after_iret", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl);
        traps::iret_with_rflags(3 << 12);
        let flags: u64;
        // SAFETY: reads RFLAGS through the stack.
        unsafe { asm!("pushfq", "pop {}", out(reg) flags) };
        traps::iret_with_rflags(0);
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl);
        let undo = set_iopl(0);
        values!(
            "enable={on} iopl={} disable={off} undo={undo}",
            (flags >> 12) & 3
        )
    });
}
