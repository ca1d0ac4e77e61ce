//! `domctl` for the control domain: what a small toolstack in dom0 needs to learn about and manage
//! the domains built at boot, with Xen 4.17's semantics (`xen/common/domctl.c`).
//!
//! - `XEN_DOMCTL_getdomaininfo` describes the first domain whose id is at least `domain` (the
//!   4.17 behaviour; Xen 4.18 made it exact) and echoes that id in `xen_domctl.domain`; an id
//!   from `DOMID_FIRST_RESERVED` up is -EINVAL, no such domain -ESRCH.
//! - `XEN_DOMCTL_destroydomain` marks the domain for destruction ([`DomainEntry::destroy`]); the arch
//!   layer tears it down before anything runs again. A domain cannot destroy itself (-EINVAL,
//!   `domain_kill`); destroying a dying domain again succeeds.
//! - Everything else, `pausedomain`/`unpausedomain` included, is -ENOSYS (the scheduler has no
//!   toolstack pause count).
//!
//! Checks come in Xen's order: copy (-EFAULT), interface version (-EACCES), then the target
//! lookup (-ESRCH; `rcu_lock_domain_by_id`, so `DOMID_SELF` names nobody), then the XSM check
//! (-EPERM for an unprivileged caller), then the command. `getdomaininfo` skips the failing
//! lookup and does its own search after the privilege check.
//!
//! [`domain_info`] builds the `xen_domctl_getdomaininfo` record that `XEN_SYSCTL_getdomaininfolist`
//! reports too.

use hypercall_abi::domctl::*;
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::SHUTDOWN_crash;
use hypercall_abi::xen::DOMID_FIRST_RESERVED;
use zerocopy::IntoBytes;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::set::DomainEntry;
use crate::domain::{Domain, DomainId, Shutdown};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};

/// Xen's `SHUTDOWN_CODE_INVALID`: a domain's shutdown code before anything set it.
const SHUTDOWN_CODE_INVALID: u32 = !0;

/// The `xen_domctl_getdomaininfo` record of `dom` (Xen's `getdomaininfo`), with its CPU time in
/// ns and whether it is being destroyed.
///
/// Flags: `XEN_DOMINF_shutdown` once it has stopped, `XEN_DOMINF_blocked` while its vCPU waits in
/// `SCHEDOP_block` or `SCHEDOP_poll`, `XEN_DOMINF_running` when it does neither and has not
/// stopped, `XEN_DOMINF_dying` once dom0 destroyed it. As in Xen, the shutdown field
/// (`flags >> XEN_DOMINF_shutdownshift`) always holds the domain's shutdown code:
/// `SHUTDOWN_CODE_INVALID` (`~0U`, so bits 16..31 all set) until the domain stops or sets one
/// with `SCHEDOP_shutdown_code`; a crashed domain reports `SHUTDOWN_crash` unless it had set a
/// code first (`domain_crash` goes through `domain_shutdown`, where an earlier code wins).
///
/// `max_vcpu_id` is the domain's highest vCPU id, `nr_online_vcpus` how many are up; blocked
/// means every vCPU that is up is blocked or polling (Xen's `getdomaininfo`); `handle` is the
/// domain's ([`Domain::handle`]); no XSM label, CPU pool or emulated devices (PV).
pub(super) fn domain_info(dom: &Domain, cpu_time: u64, dying: bool) -> XenDomctlGetdomaininfo {
    let code = match dom.shutdown {
        Some(Shutdown::Requested(code)) => code,
        Some(Shutdown::Crashed(_)) => dom.shutdown_code.unwrap_or(SHUTDOWN_crash),
        None => dom.shutdown_code.unwrap_or(SHUTDOWN_CODE_INVALID),
    };
    let up = || dom.vcpus.iter().filter(|v| v.up);
    let blocked = up().count() > 0 && up().all(|v| v.blocked || v.poll.is_some());
    let mut flags = code << XEN_DOMINF_shutdownshift;
    if dom.shutdown.is_some() {
        flags |= XEN_DOMINF_shutdown;
    }
    if blocked {
        flags |= XEN_DOMINF_blocked;
    } else if dom.shutdown.is_none() {
        flags |= XEN_DOMINF_running;
    }
    if dying {
        flags |= XEN_DOMINF_dying;
    }
    XenDomctlGetdomaininfo {
        domain: dom.id,
        flags,
        tot_pages: dom.nr_pages,
        max_pages: dom.max_pages,
        // A PV domain is not translated: Xen's `mfn_to_gfn` gives the machine frame back.
        shared_info_frame: dom.shared_info.0,
        cpu_time,
        nr_online_vcpus: dom.nr_online(),
        max_vcpu_id: dom.vcpus.len().saturating_sub(1) as u32,
        handle: dom.handle,
        ..Default::default()
    }
}

/// The record of the caller. Its run time lives in its [`DomainEntry`] slot, which the hypercall does
/// not see (the arch layer lends only the `Domain`), so its `cpu_time` is 0; it is also never
/// dying (a destroyed domain does not run again).
fn caller_info<M: Machine + ?Sized>(ctx: &Ctx<'_, M>) -> XenDomctlGetdomaininfo {
    domain_info(ctx.dom, 0, false)
}

/// The record of another domain.
fn guest_info(g: &DomainEntry) -> XenDomctlGetdomaininfo {
    domain_info(&g.dom, g.sched.run_ns, g.destroy)
}

/// The record of the domain with the lowest id at least `from`, the caller included (Xen's
/// `for_each_domain` walk, which goes in id order).
pub(super) fn first_info_from<M: Machine + ?Sized>(
    ctx: &Ctx<'_, M>,
    from: u32,
) -> Option<XenDomctlGetdomaininfo> {
    let others = ctx.others.iter().filter(|g| u32::from(g.dom.id) >= from);
    let best = others.min_by_key(|g| g.dom.id);
    let caller = (u32::from(ctx.dom.id) >= from).then_some(ctx.dom.id);
    match (caller, best) {
        (Some(me), Some(g)) if g.dom.id < me => Some(guest_info(g)),
        (Some(_), _) => Some(caller_info(ctx)),
        (None, Some(g)) => Some(guest_info(g)),
        (None, None) => None,
    }
}

/// Whether domain `id` exists, as the caller (`Some(true)`), as another domain (`Some(false)`),
/// or not at all.
fn lookup<M: Machine + ?Sized>(ctx: &Ctx<'_, M>, id: DomainId) -> Option<bool> {
    if id == ctx.dom.id {
        Some(true)
    } else {
        ctx.others.iter().any(|g| g.dom.id == id).then_some(false)
    }
}

pub(super) fn domctl<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, arg: u64) -> HcResult {
    let mut op: XenDomctl = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    if op.cmd == XEN_DOMCTL_getdomaininfo {
        if !ctx.dom.privileged {
            return Err(Errno::EPERM);
        }
        if op.domain >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        let info = first_info_from(ctx, op.domain.into()).ok_or(Errno::ESRCH)?;
        op.u[..size_of::<XenDomctlGetdomaininfo>()].copy_from_slice(info.as_bytes());
        op.domain = info.domain;
        copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &op)?;
        return Ok(0);
    }
    let is_caller = lookup(ctx, op.domain).ok_or(Errno::ESRCH)?;
    if !ctx.dom.privileged {
        return Err(Errno::EPERM);
    }
    match op.cmd {
        XEN_DOMCTL_destroydomain => {
            if is_caller {
                return Err(Errno::EINVAL);
            }
            let (g, _) = ctx.others.get(op.domain).ok_or(Errno::ESRCH)?;
            g.destroy = true;
            // The scheduler tears it down before anything runs again.
            ctx.fx.kicks.add(op.domain);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
