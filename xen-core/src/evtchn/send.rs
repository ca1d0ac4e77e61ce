//! Raising events: `EVTCHNOP_send`, `unmask`, and the hypervisor's own VIRQ and PIRQ sends.

use super::*;

/// `EVTCHNOP_send`: notify the other end of an interdomain channel, or the bound vCPU of an IPI
/// channel. Sending on an unbound port is silently dropped; other states are -EINVAL.
pub fn send<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<Option<Kick>, Errno> {
    let state = {
        let d = doms.get(caller).ok_or(Errno::ESRCH)?;
        d.ports.channel(port).ok_or(Errno::EINVAL)?.state
    };
    match state {
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => Ok(doms
            .get(remote_dom)
            .and_then(|mut r| set_pending_on(&mut r, remote_port))),
        ChannelState::Ipi => {
            let mut d = doms.get(caller).ok_or(Errno::ESRCH)?;
            Ok(set_pending_on(&mut d, port))
        }
        ChannelState::Unbound { .. } => Ok(None),
        ChannelState::Free
        | ChannelState::Reserved
        | ChannelState::Virq { .. }
        | ChannelState::Pirq { .. } => Err(Errno::EINVAL),
    }
}

/// `EVTCHNOP_unmask`: clear `port`'s mask bit and, if that unmasked a pending event, deliver it
/// to the notified vCPU (`evtchn_2l_unmask`, or `evtchn_fifo_unmask`, which links it). Closed
/// ports are accepted and left alone.
pub fn unmask<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<Option<Kick>, Errno> {
    let mut d = doms.get(caller).ok_or(Errno::ESRCH)?;
    let chan = *d.ports.channel(port).ok_or(Errno::EINVAL)?;
    if !chan.state.usable() {
        return Ok(None);
    }
    if d.ports.fifo.is_some() {
        return Ok(fifo::unmask(&mut d, port, chan.notify_vcpu));
    }
    let mut page = SharedInfoPage(&mut *d.shared);
    if page.test_and_clear_evtchn_mask(port)
        && page.evtchn_pending(port)
        && !page.test_and_set_pending_sel(chan.notify_vcpu, port / BITS_PER_WORD)
    {
        return Ok(mark_events_pending(d.id, d.shared, chan.notify_vcpu));
    }
    Ok(None)
}

/// Raises `virq` for `vcpu` of domain `dom`, from the hypervisor (Xen's `send_guest_vcpu_virq`
/// and, for global VIRQs, `send_guest_global_virq`, which look up vCPU 0's binding and notify
/// the vCPU the channel names). Nothing happens if the VIRQ is not bound.
pub fn send_virq<D: Domains + ?Sized>(
    doms: &mut D,
    dom: DomId,
    vcpu: u32,
    virq: u32,
) -> Option<Kick> {
    let mut d = doms.get(dom)?;
    let table_vcpu = if virq_is_global(virq) { 0 } else { vcpu };
    let port = d.ports.virq_port(table_vcpu, virq)?;
    let notify = if virq_is_global(virq) {
        d.ports.channel(port)?.notify_vcpu
    } else {
        vcpu
    };
    raise(&mut d, port, notify)
}

/// Raises the PIRQ mapping `gsi` in domain `dom`, whose line was masked when the interrupt
/// arrived (Xen's `send_guest_pirq`): if a port is bound, it is made pending and the line awaits
/// the guest's `PHYSDEVOP_eoi`. Returns whether a port was raised, and the vCPU to kick.
pub fn send_pirq<D: Domains + ?Sized>(doms: &mut D, dom: DomId, gsi: u32) -> (bool, Option<Kick>) {
    let Some(mut d) = doms.get(dom) else {
        return (false, None);
    };
    let Some((_, port)) = d.ports.pirqs.raise(gsi) else {
        return (false, None);
    };
    (true, set_pending_on(&mut d, port))
}
