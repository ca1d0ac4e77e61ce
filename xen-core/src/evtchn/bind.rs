//! Binding ports: `alloc_unbound`, `bind_interdomain`, `bind_virq`, `bind_ipi`, `bind_pirq` and `bind_vcpu`.

use super::*;

/// `EVTCHNOP_alloc_unbound`: a new port in domain `dom` (usually `DOMID_SELF`) that
/// `remote_dom` may later bind to. The remote domain need not exist yet.
pub fn alloc_unbound<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    dom: DomId,
    remote_dom: DomId,
) -> Result<EvtchnPort, Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let d = doms.get(target).ok_or(Errno::ESRCH)?;
    let port = d.ports.get_free_port(&*d.shared, d.pages)?;
    if !allowed {
        return Err(Errno::EPERM);
    }
    // DOMID_SELF as the remote means the *caller*, which differs from `dom` for a privileged
    // caller allocating on another domain's behalf.
    let remote_dom = if remote_dom == DOMID_SELF {
        caller
    } else {
        remote_dom
    };
    d.ports.bind(port, ChannelState::Unbound { remote_dom }, 0);
    Ok(port)
}

/// Checks that `table`'s `port` is unbound and waiting for `binder` (`bind_interdomain`).
fn check_waiting_for(table: &PortTable, port: EvtchnPort, binder: DomId) -> Result<(), Errno> {
    match table.channel(port).map(|c| c.state) {
        Some(ChannelState::Unbound { remote_dom }) if remote_dom == binder => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// A new port from `bind_interdomain`, and the vCPU to kick because it starts pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The caller's new port.
    pub port: EvtchnPort,
    /// Set if the conservative initial notification raised an upcall.
    pub kick: Option<Kick>,
}

/// `EVTCHNOP_bind_interdomain`: connect a new local port to `remote_port` of `remote_dom`, which
/// must be unbound and waiting for the caller. Binding to one's own domain (loopback) is allowed.
///
/// As Xen does, the new local port is made pending straight away: notifications sent on the
/// remote port while it was unbound were dropped, so the local side is told to look.
pub fn bind_interdomain<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<Bound, Errno> {
    let rd = resolve(caller, remote_dom)?;
    let local = ChannelState::Interdomain {
        remote_dom: rd,
        remote_port,
    };
    // The remote end keeps the vCPU it notifies (`bind_vcpu` may have moved it while unbound).
    let (mut ld, lport) = if rd == caller {
        let ld = doms.get(caller).ok_or(Errno::ESRCH)?;
        let lport = ld.ports.get_free_port(&*ld.shared, ld.pages)?;
        check_waiting_for(ld.ports, remote_port, caller)?;
        ld.ports.bind(lport, local, 0);
        ld.ports.chan_mut(remote_port).state = ChannelState::Interdomain {
            remote_dom: caller,
            remote_port: lport,
        };
        (ld, lport)
    } else {
        let (ld, r) = doms.get_two(caller, rd).ok_or(Errno::ESRCH)?;
        let lport = ld.ports.get_free_port(&*ld.shared, ld.pages)?;
        check_waiting_for(r.ports, remote_port, caller)?;
        ld.ports.bind(lport, local, 0);
        r.ports.chan_mut(remote_port).state = ChannelState::Interdomain {
            remote_dom: caller,
            remote_port: lport,
        };
        (ld, lport)
    };
    let kick = set_pending_on(&mut ld, lport);
    Ok(Bound { port: lport, kick })
}

/// `EVTCHNOP_bind_virq`: a new port raised when the hypervisor signals `virq` on `vcpu`.
/// Global VIRQs may only be bound on vCPU 0; each VIRQ is bound at most once per vCPU.
pub fn bind_virq<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    virq: u32,
    vcpu: u32,
) -> Result<EvtchnPort, Errno> {
    if virq >= NR_VIRQS {
        return Err(Errno::EINVAL);
    }
    if virq_is_global(virq) && vcpu != 0 {
        return Err(Errno::EINVAL);
    }
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    if d.ports.virq_to_port[vcpu as usize][virq as usize] != 0 {
        return Err(Errno::EEXIST);
    }
    let port = d.ports.get_free_port(&*d.shared, d.pages)?;
    d.ports.bind(port, ChannelState::Virq { virq }, vcpu);
    d.ports.virq_to_port[vcpu as usize][virq as usize] = port;
    Ok(port)
}

/// `EVTCHNOP_bind_ipi`: a new port that notifies `vcpu` of the caller's own domain.
pub fn bind_ipi<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    vcpu: u32,
) -> Result<EvtchnPort, Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    let port = d.ports.get_free_port(&*d.shared, d.pages)?;
    d.ports.bind(port, ChannelState::Ipi, vcpu);
    Ok(port)
}

/// `EVTCHNOP_bind_pirq`: a new port raised when physical IRQ `pirq` of the caller fires,
/// notifying vCPU 0 (`evtchn_bind_pirq`). The PIRQ must be mapped (-EINVAL otherwise, also out
/// of range) and not bound yet (-EEXIST). `BIND_PIRQ__WILL_SHARE` is accepted: nothing else
/// shares a line here.
pub fn bind_pirq<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    pirq: u32,
) -> Result<EvtchnPort, Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    d.ports.pirqs.check_bind(pirq)?;
    let port = d.ports.get_free_port(&*d.shared, d.pages)?;
    d.ports.bind(port, ChannelState::Pirq { pirq }, 0);
    d.ports.pirqs.bind(pirq, port);
    Ok(port)
}

/// `EVTCHNOP_bind_vcpu`: notify `vcpu` instead when `port` fires. Allowed for unbound and
/// interdomain channels and global VIRQs; -EINVAL for per-vCPU VIRQs, IPIs and closed ports.
pub fn bind_vcpu<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
    vcpu: u32,
) -> Result<(), Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    let chan = d.ports.channel(port).ok_or(Errno::EINVAL)?.state;
    match chan {
        ChannelState::Virq { virq } if virq_is_global(virq) => {}
        ChannelState::Unbound { .. }
        | ChannelState::Interdomain { .. }
        | ChannelState::Pirq { .. } => {}
        _ => return Err(Errno::EINVAL),
    }
    d.ports.chan_mut(port).notify_vcpu = vcpu;
    Ok(())
}
