//! `sched_op` and `set_timer_op`: yield, block, shutdown, and the vCPU's single-shot timer.

use hypercall_abi::errno::Errno;
use hypercall_abi::sched::*;

use super::{Ctx, HcResult, Machine};
use crate::domain::Shutdown;
use crate::guest::copy_from_guest;

pub(super) fn sched_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    match super::cmd32(cmd) {
        // One vCPU, one domain running: yielding returns at once.
        SCHEDOP_yield => Ok(0),
        SCHEDOP_block => {
            // Blocking re-enables event delivery (Xen's `vcpu_block_enable_events`); the arch layer
            // halts until an event is pending and then resumes the guest.
            ctx.dom.vcpu.blocked = true;
            Ok(0)
        }
        SCHEDOP_shutdown => {
            let s: SchedShutdown = copy_from_guest(&ctx.guest(), arg)?;
            // Xen keeps the reason as a u8 and lets an earlier SCHEDOP_shutdown_code win.
            let reason = ctx.dom.shutdown_code.unwrap_or(s.reason & 0xff);
            ctx.dom.shutdown = Some(Shutdown::Requested(reason));
            Ok(0)
        }
        SCHEDOP_shutdown_code => {
            let s: SchedShutdown = copy_from_guest(&ctx.guest(), arg)?;
            ctx.dom.shutdown_code = Some(s.reason & 0xff);
            Ok(0)
        }
        SCHEDOP_remote_shutdown => {
            let s: SchedRemoteShutdown = copy_from_guest(&ctx.guest(), arg)?;
            if !ctx.dom.privileged {
                return Err(Errno::EPERM);
            }
            // Only one domain exists yet: every other id names nothing.
            if s.domain_id != ctx.dom.id {
                return Err(Errno::ESRCH);
            }
            ctx.dom.shutdown = Some(Shutdown::Requested(s.reason & 0xff));
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Xen's limit for a sane single-shot deadline: about 13 days ahead (2^50 ns). Past it (or a
/// negative deadline), Xen assumes a wrapped guest clock and fires in 100 ms instead.
const MAX_AHEAD_NS: u64 = 1 << 50;

pub(super) fn set_timer_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, timeout: u64) -> HcResult {
    if timeout == 0 {
        ctx.dom.vcpu.timer_deadline = None;
        return Ok(0);
    }
    let now = ctx.m.now_ns();
    let deadline = if (timeout as i64) < 0 || timeout > now.saturating_add(MAX_AHEAD_NS) {
        now + 100_000_000
    } else {
        timeout
    };
    ctx.dom.vcpu.timer_deadline = Some(deadline);
    Ok(0)
}
