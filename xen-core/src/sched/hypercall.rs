//! `sched_op` and `set_timer_op`: yield, block, shutdown, and the vCPU's single-shot timer.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use hypercall_abi::errno::Errno;
use hypercall_abi::sched::*;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::{Poll, Shutdown};
use crate::guest_access::{copy_from_guest, guest_va_ok, GuestPtr};

/// Most ports one `SCHEDOP_poll` may wait for (Xen: `nr_ports > 128` is -EINVAL).
const MAX_POLL_PORTS: u32 = 128;

pub(crate) fn sched_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    match crate::ctx::cmd32(cmd) {
        // The scheduler runs another vCPU if one is runnable (`vcpu_yield`).
        SCHEDOP_yield => {
            ctx.dom.vcpu_mut().yielded = true;
            Ok(0)
        }
        SCHEDOP_block => {
            // Blocking re-enables event delivery (Xen's `vcpu_block_enable_events`); the vCPU
            // then waits until an event is pending (at once if one already is: the scheduler
            // wakes a blocked vCPU with an upcall pending).
            crate::shared_info::set_upcall_mask(ctx.m, ctx.dom, false);
            ctx.dom.vcpu_mut().blocked = true;
            Ok(0)
        }
        SCHEDOP_shutdown => {
            let s: SchedShutdown = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            // Xen keeps the reason as a u8 and lets an earlier SCHEDOP_shutdown_code win.
            let reason = ctx.dom.shutdown_code.unwrap_or(s.reason & 0xff);
            ctx.dom.shutdown = Some(Shutdown::Requested(reason));
            Ok(0)
        }
        SCHEDOP_shutdown_code => {
            let s: SchedShutdown = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            ctx.dom.shutdown_code = Some(s.reason & 0xff);
            Ok(0)
        }
        SCHEDOP_remote_shutdown => {
            let s: SchedRemoteShutdown = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            remote_shutdown(ctx, s)
        }
        SCHEDOP_poll => {
            let p: SchedPoll = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            poll(ctx, p)
        }
        SCHEDOP_watchdog => {
            let w: SchedWatchdog = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
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
    // The scheduler reports it (and tells dom0) on its next pass.
    ctx.fx.kicks.add(s.domain_id);
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
        let port: u32 = copy_from_guest(&ctx.guest(), GuestPtr::new(p.ports + 4 * i))?;
        if !ctx.events.is_valid(port) {
            return Err(Errno::EINVAL);
        }
        if crate::evtchn::fifo::port_pending(&*ctx.m, ctx.dom, ctx.events, port) {
            return Ok(0);
        }
        let _ = ports.push(port);
    }
    // Xen: `set_timer(&v->poll_timer, sched_poll->timeout)`, an s_time_t: a timeout with the top
    // bit set is negative, so already past, and the poll ends at once.
    let now = ctx.m.now_ns();
    let deadline = (p.timeout != 0).then(|| crate::time::guest_deadline(p.timeout, now));
    ctx.dom.vcpu_mut().poll = Some(Poll { ports, deadline });
    Ok(0)
}

/// What Xen 4.17 answers when both watchdogs are in use: `domain_watchdog` returns
/// `id == NR_DOMAIN_WATCHDOG_TIMERS ? -ENOSPC : id + 1`, and with `id` a `uint32_t` the
/// conditional is unsigned, so -ENOSPC reaches the guest as the positive 0xffffffe4 (the
/// differential suite's `sched_op.watchdog_full` sees exactly that on Debian's 4.17).
const WATCHDOG_ENOSPC_AS_XEN_RETURNS: i64 = (-(Errno::ENOSPC as i32)) as u32 as i64;

/// `SCHEDOP_watchdog`, the guest-armed domain watchdog (`common/sched/core.c: domain_watchdog`):
/// id 0 creates one of `NR_DOMAIN_WATCHDOG_TIMERS` (2) watchdogs and returns its id (from 1),
/// -ENOSPC as an unsigned int when both are in use ([`WATCHDOG_ENOSPC_AS_XEN_RETURNS`]); a known
/// id with a timeout re-arms it `timeout` seconds from now,
/// with timeout 0 frees it; an id past the table or not in use is -EINVAL. A watchdog that is
/// not re-armed in time shuts the domain down with `SHUTDOWN_watchdog` (the arch layer's
/// `run_timers`, Xen's `domain_watchdog_timeout`).
fn watchdog<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, w: SchedWatchdog) -> HcResult {
    let now = ctx.m.now_ns();
    // SECONDS(timeout) of a u32 fits easily (under 2^62 ns).
    let deadline = now.saturating_add(u64::from(w.timeout) * 1_000_000_000);
    let slots = &mut ctx.dom.watchdogs;
    if w.id == 0 {
        let Some(free) = slots.iter().position(Option::is_none) else {
            return Ok(WATCHDOG_ENOSPC_AS_XEN_RETURNS);
        };
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

/// Xen's limit for a sane `set_timer_op` deadline: about 13 days ahead (2^50 ns). At or past it
/// (`(uint32_t)(offset >> 50) != 0`), or for a negative deadline, Xen assumes a wrapped guest
/// clock and fires in 100 ms instead (`do_set_timer_op` in `xen/common/sched/core.c`).
const MAX_AHEAD_NS: u64 = 1 << 50;

pub(crate) fn set_timer_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, timeout: u64) -> HcResult {
    if timeout == 0 {
        ctx.dom.vcpu_mut().timer_deadline = None;
        return Ok(0);
    }
    let now = ctx.m.now_ns();
    let deadline = if (timeout as i64) < 0 || timeout.saturating_sub(now) >= MAX_AHEAD_NS {
        now + 100_000_000
    } else {
        timeout
    };
    ctx.dom.vcpu_mut().timer_deadline = Some(deadline);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use hypercall_abi::sched::*;
    use hypercall_abi::xen::__HYPERVISOR_sched_op;
    use zerocopy::IntoBytes;

    use crate::domain::Domain;
    use crate::domain::MachineInfo;
    use crate::hypercall::testing::*;
    use crate::regs::Regs;

    const EINVAL: i64 = -22;
    /// -ENOSPC as Xen's unsigned conditional returns it.
    const ENOSPC_U32: i64 = 0xffff_ffe4;
    const NOW: u64 = 7_000_000_000;

    fn sched_op<T: IntoBytes + zerocopy::Immutable>(
        m: &mut FakeMachine,
        d: &mut Domain,
        cmd: u32,
        arg: &T,
    ) -> i64 {
        let mut g = crate::guest_access::PageTableGuest {
            mem: &mut *m,
            l4: d.vcpu().l4,
        };
        crate::guest_access::copy_to_guest(
            &mut g,
            crate::guest_access::GuestPtr::new(GUEST_VA),
            arg,
        )
        .unwrap();
        let info = MachineInfo {
            max_ram_page: 0x1ffe0,
            pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
        };
        let mut regs = Regs::default();
        with_ctx(m, d, &info, &mut regs, |ctx| {
            call(
                ctx,
                __HYPERVISOR_sched_op.into(),
                [cmd.into(), GUEST_VA, 0, 0, 0],
            )
        })
    }

    fn poll_deadline(timeout: u64) -> Option<u64> {
        let (mut m, mut d, _) = setup();
        m.now = NOW;
        let p = SchedPoll {
            timeout,
            ..Default::default()
        };
        assert_eq!(sched_op(&mut m, &mut d, SCHEDOP_poll, &p), 0);
        d.vcpu().poll.as_ref().expect("the vCPU waits").deadline
    }

    #[test]
    fn a_poll_timeout_with_the_sign_bit_set_is_due_at_once() {
        // Xen passes the u64 timeout to set_timer as an s_time_t: negative, so past.
        assert_eq!(poll_deadline(0), None, "0: no timeout");
        assert_eq!(poll_deadline(NOW + 10), Some(NOW + 10));
        assert_eq!(
            poll_deadline(3),
            Some(3),
            "past: the scheduler wakes it at once"
        );
        assert_eq!(poll_deadline(i64::MAX as u64), Some(i64::MAX as u64));
        for negative in [1u64 << 63, (1 << 63) | 12345, u64::MAX] {
            assert_eq!(poll_deadline(negative), Some(NOW), "{negative:#x}");
        }
    }

    #[test]
    fn set_timer_op_clamps_far_and_negative_deadlines_to_100_ms() {
        // do_set_timer_op: negative, or more than 2^50 ns ahead, fires in 100 ms.
        let deadline = |timeout: u64| {
            let (mut m, mut d, _) = setup();
            m.now = NOW;
            let info = MachineInfo {
                max_ram_page: 0x1ffe0,
                pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
            };
            let mut regs = Regs::default();
            let rc = with_ctx(&mut m, &mut d, &info, &mut regs, |ctx| {
                call(
                    ctx,
                    hypercall_abi::xen::__HYPERVISOR_set_timer_op.into(),
                    [timeout, 0, 0, 0, 0],
                )
            });
            assert_eq!(rc, 0);
            d.vcpu().timer_deadline
        };
        assert_eq!(deadline(0), None);
        assert_eq!(deadline(NOW + (1 << 50) - 1), Some(NOW + (1 << 50) - 1));
        assert_eq!(deadline(NOW - 1), Some(NOW - 1), "past: fires at once");
        for far in [NOW + (1 << 50), i64::MAX as u64, 1 << 63, u64::MAX] {
            assert_eq!(deadline(far), Some(NOW + 100_000_000), "{far:#x}");
        }
    }

    #[test]
    fn watchdogs_are_allocated_rearmed_and_freed_as_xens() {
        let (mut m, mut d, _) = setup();
        m.now = NOW;
        let wd = |m: &mut FakeMachine, d: &mut Domain, id: u32, timeout: u32| {
            sched_op(m, d, SCHEDOP_watchdog, &SchedWatchdog { id, timeout })
        };
        // Ids from 1; NR_DOMAIN_WATCHDOG_TIMERS (2) of them, then -ENOSPC, as the unsigned
        // 0xffffffe4 that `domain_watchdog`'s conditional makes of it.
        assert_eq!(wd(&mut m, &mut d, 0, 10), 1);
        assert_eq!(wd(&mut m, &mut d, 0, u32::MAX), 2);
        assert_eq!(wd(&mut m, &mut d, 0, 10), ENOSPC_U32);
        assert_eq!(
            d.watchdogs,
            [
                Some(NOW + 10_000_000_000),
                Some(NOW + u64::from(u32::MAX) * 1_000_000_000)
            ]
        );
        // An id past the table, or one not in use, is -EINVAL.
        assert_eq!(wd(&mut m, &mut d, 3, 0), EINVAL);
        assert_eq!(wd(&mut m, &mut d, u32::MAX, 5), EINVAL);
        // Re-arming counts from now; timeout 0 frees the id, which is then unknown.
        m.now = NOW + 1;
        assert_eq!(wd(&mut m, &mut d, 1, 20), 0);
        assert_eq!(d.watchdogs[0], Some(NOW + 1 + 20_000_000_000));
        assert_eq!(wd(&mut m, &mut d, 1, 0), 0);
        assert_eq!(d.watchdogs[0], None);
        assert_eq!(wd(&mut m, &mut d, 1, 0), EINVAL);
        assert_eq!(wd(&mut m, &mut d, 0, 1), 1, "the freed id is reused");
        // A new watchdog with timeout 0 is due at once (Xen: set_timer(NOW() + 0)).
        assert_eq!(wd(&mut m, &mut d, 2, 0), 0);
        assert_eq!(wd(&mut m, &mut d, 0, 0), 2);
        assert_eq!(d.watchdogs[1], Some(NOW + 1));
    }
}
