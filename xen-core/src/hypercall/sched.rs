//! `sched_op` and `set_timer_op`: yield, block, shutdown, and the vCPU's single-shot timer.

use hypercall_abi::errno::Errno;
use hypercall_abi::sched::*;

use super::{Ctx, HcResult, Machine};
use crate::domain::{Poll, Shutdown};
use crate::guest::{copy_from_guest, guest_va_ok};

/// Most ports one `SCHEDOP_poll` may wait for (Xen: `nr_ports > 128` is -EINVAL).
const MAX_POLL_PORTS: u32 = 128;

pub(super) fn sched_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    match super::cmd32(cmd) {
        // The scheduler runs another vCPU if one is runnable (`vcpu_yield`).
        SCHEDOP_yield => {
            ctx.dom.vcpu.yielded = true;
            Ok(0)
        }
        SCHEDOP_block => {
            // Blocking re-enables event delivery (Xen's `vcpu_block_enable_events`); the vCPU
            // then waits until an event is pending (at once if one already is: the scheduler
            // wakes a blocked vCPU with an upcall pending).
            crate::shared::set_upcall_mask(ctx.m, ctx.dom, false);
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
            remote_shutdown(ctx, s)
        }
        SCHEDOP_poll => {
            let p: SchedPoll = copy_from_guest(&ctx.guest(), arg)?;
            poll(ctx, p)
        }
        SCHEDOP_watchdog => {
            let w: SchedWatchdog = copy_from_guest(&ctx.guest(), arg)?;
            watchdog(ctx, w)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `SCHEDOP_remote_shutdown`: shut another domain down (`do_sched_op`). Xen looks the domain up
/// first (`rcu_lock_domain_by_id`: `DOMID_SELF` names nobody, an unknown id is -ESRCH), then asks
/// XSM (-EPERM unless the caller is privileged), then calls `domain_shutdown` with the reason as
/// a u8: a domain already shut down stays as it is, and a code it set with
/// `SCHEDOP_shutdown_code` wins over the reason. The caller naming itself keeps the simple
/// behaviour (the reason is recorded as given).
fn remote_shutdown<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, s: SchedRemoteShutdown) -> HcResult {
    let reason = s.reason & 0xff;
    let privileged = ctx.dom.privileged;
    if s.domain_id == ctx.dom.id {
        if !privileged {
            return Err(Errno::EPERM);
        }
        ctx.dom.shutdown = Some(Shutdown::Requested(reason));
        return Ok(0);
    }
    let (g, _) = ctx.others.get(s.domain_id).ok_or(Errno::ESRCH)?;
    if !privileged {
        return Err(Errno::EPERM);
    }
    if g.dom.shutdown.is_none() {
        g.dom.shutdown = Some(Shutdown::Requested(g.dom.shutdown_code.unwrap_or(reason)));
    }
    Ok(0)
}

/// `SCHEDOP_poll`: wait until one of the ports is pending or the deadline passes
/// (`common/sched/core.c: do_poll`).
fn poll<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, p: SchedPoll) -> HcResult {
    if p.nr_ports > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let bytes = u64::from(p.nr_ports) * 4;
    if p.nr_ports > 0 && (!guest_va_ok(p.ports) || !guest_va_ok(p.ports.wrapping_add(bytes - 1))) {
        return Err(Errno::EFAULT);
    }
    let mut ports = heapless::Vec::new();
    for i in 0..u64::from(p.nr_ports) {
        let port: u32 = copy_from_guest(&ctx.guest(), p.ports + 4 * i)?;
        if !ctx.events.is_valid(port) {
            return Err(Errno::EINVAL);
        }
        if super::event_channel::port_pending(&*ctx.m, ctx.dom, port) {
            return Ok(0);
        }
        let _ = ports.push(port);
    }
    let deadline = (p.timeout != 0).then_some(p.timeout);
    ctx.dom.vcpu.poll = Some(Poll { ports, deadline });
    Ok(0)
}

/// `SCHEDOP_watchdog`: id 0 creates a watchdog (returns its id); a non-zero id with a timeout
/// re-arms it, with timeout 0 destroys it (`domain_watchdog`).
fn watchdog<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, w: SchedWatchdog) -> HcResult {
    let now = ctx.m.now_ns();
    let deadline = now.saturating_add(u64::from(w.timeout) * 1_000_000_000);
    let slots = &mut ctx.dom.watchdogs;
    if w.id == 0 {
        let free = slots.iter().position(Option::is_none).ok_or(Errno::EBUSY)?;
        slots[free] = Some(deadline);
        return Ok(free as i64 + 1);
    }
    let slot = (w.id as usize)
        .checked_sub(1)
        .filter(|&i| i < slots.len())
        .ok_or(Errno::EINVAL)?;
    if slots[slot].is_none() {
        return Err(Errno::EINVAL);
    }
    slots[slot] = (w.timeout != 0).then_some(deadline);
    Ok(0)
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
