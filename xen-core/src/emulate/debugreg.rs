//! The guest's virtual debug registers: Xen 4.17's `set_debugreg` (`pv/misc-hypercalls.c`) and
//! `x86emul_read_dr`/`x86emul_write_dr` (`arch/x86/x86_emulate.c`), shared by the
//! `set_debugreg`/`get_debugreg` hypercalls and the emulated `mov %drN` instructions.
//!
//! DR0..DR3 hold guest addresses (`access_ok`: never the hypervisor's range); DR6 records what the
//! last #DB reported; DR7 enables breakpoints. Without CR4.DE in the guest's view, DR4 and DR5
//! are DR6 and DR7; with it they do not exist. An I/O breakpoint (R/W = 10b) needs CR4.DE: its
//! enable bits are kept apart (`dr7_emul`, Xen's `arch.pv.dr7_emul`) and never reach the CPU.

use hypercall_abi::errno::Errno;

use super::CR4_DE;
use crate::domain::{Vcpu, DR6_DEFAULT};
use crate::guest_access::guest_va_ok;

/// DR6 bit 12 reads as 0 (`X86_DR6_ZEROS`); bits 4..11 and 16..31 read as 1 (`X86_DR6_DEFAULT`),
/// bit 16 (RTM) and bit 11 (BLD) only when the guest's CPUID policy lacks the feature, which is
/// the case for ours (the PV policy hides BLD; RTM is the CPU's and absent under TCG, see
/// `docs/abi-coverage.md`).
const DR6_ZEROS: u64 = 1 << 12;
/// DR7 bits reserved as 0 (`X86_DR7_ZEROS`: 12, 14, 15) and bit 11 (RTM, without the feature).
const DR7_ZEROS: u64 = (1 << 11) | (1 << 12) | (1 << 14) | (1 << 15);
/// DR7 bit 10 reads as 1 (`X86_DR7_DEFAULT`).
pub const DR7_DEFAULT: u64 = 0x400;
/// DR7.GD: trap accesses to the debug registers themselves (never for a guest).
const DR7_GENERAL_DETECT: u64 = 1 << 13;
/// DR7's L0..L3 and G0..G3 (`DR_ENABLE_MASK`).
const DR7_ENABLE_MASK: u64 = 0xff;
/// R/W = 10b: an I/O breakpoint (`DR_IO`).
const DR_IO: u64 = 2;

/// `set_debugreg(v, reg, value)`: checks and stores one virtual debug register. On failure, the
/// hypercall's errno; the instruction emulation turns -ENODEV into #UD and the rest into #GP(0)
/// (`x86emul_write_dr`).
pub fn set_debugreg(v: &mut Vcpu, reg: u32, value: u64) -> Result<(), Errno> {
    let de = v.cr4 & CR4_DE != 0;
    match reg {
        r @ 0..=3 => {
            // `access_ok(value, sizeof(long))`: the whole word must be a guest address.
            if !guest_va_ok(value) || !guest_va_ok(value.wrapping_add(7)) {
                return Err(Errno::EPERM);
            }
            v.dr[r as usize] = value;
        }
        4 | 6 => {
            if reg == 4 && de {
                return Err(Errno::ENODEV);
            }
            // "The upper 32 bits are strictly reserved."
            if value >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            v.dr6 = (value | DR6_DEFAULT) & !DR6_ZEROS;
        }
        5 | 7 => {
            if reg == 5 && de {
                return Err(Errno::ENODEV);
            }
            if value >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            let mut value = (value & !DR7_ZEROS) | DR7_DEFAULT;
            if value & DR7_GENERAL_DETECT != 0 {
                return Err(Errno::EPERM);
            }
            let mut io_enable = 0;
            if value & DR7_ENABLE_MASK != 0 {
                // Any enabled breakpoint makes every R/W field count, as in Xen's loop.
                for i in 0..4 {
                    if (value >> (16 + 4 * i)) & 3 == DR_IO {
                        if !de {
                            return Err(Errno::EPERM);
                        }
                        io_enable |= value & (3 << (2 * i));
                    }
                }
                value &= !io_enable;
            }
            v.dr7_emul = io_enable;
            v.dr7 = value;
        }
        _ => return Err(Errno::ENODEV),
    }
    Ok(())
}

/// `x86emul_read_dr`: the register's value, or `Err(ENODEV)` for a register that does not exist
/// (DR4/DR5 with CR4.DE, DR8 and up), which the instruction sees as #UD.
pub fn get_debugreg(v: &Vcpu, reg: u32) -> Result<u64, Errno> {
    let de = v.cr4 & CR4_DE != 0;
    match reg {
        r @ 0..=3 => Ok(v.dr[r as usize]),
        4 | 6 if !(reg == 4 && de) => Ok(v.dr6),
        5 | 7 if !(reg == 5 && de) => Ok(v.dr7 | v.dr7_emul),
        _ => Err(Errno::ENODEV),
    }
}
