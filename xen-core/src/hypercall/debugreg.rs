//! `set_debugreg` and `get_debugreg`: the guest's virtual debug registers (`pv/misc-hypercalls.c`).
//!
//! DR0..DR3 hold guest addresses (`access_ok`: never the hypervisor's range); DR6 records what the
//! last #DB reported; DR7 enables breakpoints. The values are the guest's view; the arch layer
//! loads them into the CPU while the guest runs.

use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::DR6_DEFAULT;
use crate::guest_access::guest_va_ok;

/// DR6 bits that always read as 1 / are reserved (`X86_DR6_DEFAULT` keeps them set).
const DR6_RESERVED_ONE: u64 = 0xffff_0ff0;
/// DR7 bits that always read as 1.
const DR7_RESERVED_ONE: u64 = 0x400;
/// DR7.GD: trap accesses to the debug registers themselves (never for a guest).
const DR7_GENERAL_DETECT: u64 = 1 << 13;
/// DR7 bits reserved as 0 (bits 11..=12, 14..=15, and the upper half).
const DR7_RESERVED_ZERO: u64 = 0xffff_ffff_0000_d800;

pub(super) fn set_debugreg<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    reg: u64,
    value: u64,
) -> HcResult {
    let v = ctx.dom.vcpu_mut();
    match reg as u32 {
        r @ 0..=3 => {
            if !guest_va_ok(value) {
                return Err(Errno::EPERM);
            }
            v.dr[r as usize] = value;
        }
        6 => v.dr6 = (value | DR6_RESERVED_ONE) & 0xffff_ffff,
        7 => {
            if value & DR7_RESERVED_ZERO != 0 || value & DR7_GENERAL_DETECT != 0 {
                return Err(Errno::EPERM);
            }
            // An I/O breakpoint (R/W = 10b) needs CR4.DE, which a PV guest does not have.
            let io =
                (0..4).any(|i| value & (3 << (2 * i)) != 0 && (value >> (16 + 4 * i)) & 3 == 2);
            if io {
                return Err(Errno::EPERM);
            }
            v.dr7 = value | DR7_RESERVED_ONE;
        }
        _ => return Err(Errno::EINVAL),
    }
    Ok(0)
}

pub(super) fn get_debugreg<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, reg: u64) -> HcResult {
    let v = ctx.dom.vcpu();
    Ok(match reg as u32 {
        r @ 0..=3 => v.dr[r as usize] as i64,
        6 => v.dr6 as i64,
        7 => v.dr7 as i64,
        // DR4/DR5 alias DR6/DR7 only without CR4.DE; anything else does not exist.
        _ => return Err(Errno::ENODEV),
    })
}

const _: () = assert!(DR6_DEFAULT == DR6_RESERVED_ONE);
