//! `set_debugreg` and `get_debugreg`: the guest's virtual debug registers (`pv/misc-hypercalls.c`).
//!
//! The checks are the ones the emulated `mov %drN` instructions use (`emulate::debugreg`); the
//! values are the guest's view, which the arch layer loads into the CPU while the guest runs.

use crate::ctx::{Ctx, HcResult, Machine};
use crate::emulate::debugreg;

pub(super) fn set_debugreg<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    reg: u64,
    value: u64,
) -> HcResult {
    // The register number is an `int` in Xen's `do_set_debugreg`: the low 32 bits count.
    let reg = reg as u32;
    debugreg::set_debugreg(ctx.dom.vcpu_mut(), reg, value)?;
    Ok(0)
}

pub(super) fn get_debugreg<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, reg: u64) -> HcResult {
    let reg = reg as u32;
    Ok(debugreg::get_debugreg(ctx.dom.vcpu(), reg)? as i64)
}
