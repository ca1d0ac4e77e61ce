//! `close`, `status`, `reset`, and `HYPERVISOR_event_channel_op`: decoding each command's argument from the guest.

use core::ffi::c_void;

use super::*;
use crate::guest_access::GuestPtr;

/// `EVTCHNOP_close`: free a port. The other end of an interdomain channel becomes unbound again,
/// waiting for the closing domain to bind to it anew.
pub fn close<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<(), Errno> {
    let state = {
        let d = doms.get(caller).ok_or(Errno::ESRCH)?;
        d.ports.channel(port).ok_or(Errno::EINVAL)?.state
    };
    match state {
        ChannelState::Free | ChannelState::Reserved => return Err(Errno::EINVAL),
        ChannelState::Unbound { .. } | ChannelState::Ipi => {}
        ChannelState::Pirq { pirq } => {
            // `pirq_guest_unbind`: the line is no longer delivered (the caller masks it).
            doms.get(caller)
                .ok_or(Errno::ESRCH)?
                .ports
                .pirqs
                .unbind(pirq);
        }
        ChannelState::Virq { virq } => {
            let d = doms.get(caller).ok_or(Errno::ESRCH)?;
            let chan = *d.ports.chan_mut(port);
            let vcpu = if virq_is_global(virq) {
                0
            } else {
                chan.notify_vcpu
            };
            d.ports.virq_to_port[vcpu as usize][virq as usize] = 0;
        }
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            // The other end waits for the closing domain again, still notifying the same vCPU.
            let unbound = ChannelState::Unbound { remote_dom: caller };
            // The other end is rewritten only if it is this channel's (Xen BUG()s otherwise): a
            // broken invariant (a missing remote domain, a remote port not valid there or not
            // bound back here) frees the local end alone instead of touching another channel
            // or a page that is not there.
            let back = ChannelState::Interdomain {
                remote_dom: caller,
                remote_port: port,
            };
            if let Some(r) = doms.get(remote_dom) {
                if r.ports
                    .channel(remote_port)
                    .is_some_and(|c| c.state == back)
                {
                    r.ports.chan_mut(remote_port).state = unbound;
                }
            }
        }
    }
    let mut d = doms.get(caller).ok_or(Errno::ESRCH)?;
    free_channel(&mut d, port);
    Ok(())
}

/// `EVTCHNOP_status`: the state of `port` in domain `dom` (`DOMID_SELF`, or any domain for the
/// control domain). `dom` and `port` are echoed back in the result, as Xen copies the whole
/// structure back.
pub fn status<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    dom: DomId,
    port: EvtchnPort,
) -> Result<EvtchnStatus, Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let d = doms.get(target).ok_or(Errno::ESRCH)?;
    let chan = *d.ports.channel(port).ok_or(Errno::EINVAL)?;
    if !allowed {
        return Err(Errno::EPERM);
    }
    let mut out = EvtchnStatus {
        dom,
        port,
        vcpu: chan.notify_vcpu,
        ..Default::default()
    };
    out.status = match chan.state {
        ChannelState::Free | ChannelState::Reserved => EVTCHNSTAT_closed,
        ChannelState::Unbound { remote_dom } => {
            out.set_unbound(remote_dom);
            EVTCHNSTAT_unbound
        }
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            out.set_interdomain(remote_dom, remote_port);
            EVTCHNSTAT_interdomain
        }
        ChannelState::Virq { virq } => {
            out.set_irq(virq);
            EVTCHNSTAT_virq
        }
        ChannelState::Ipi => EVTCHNSTAT_ipi,
        ChannelState::Pirq { pirq } => {
            out.set_irq(pirq);
            EVTCHNSTAT_pirq
        }
    };
    Ok(out)
}

/// `EVTCHNOP_reset` on the caller itself: close every port and go back to the 2-level ABI if
/// the domain used FIFO (Xen's `evtchn_reset`; the handler then releases the FIFO frames).
/// Resetting
/// another domain needs it paused by its controller, which does not exist here yet: -EINVAL, as
/// Xen answers for a running domain.
pub fn reset<D: Domains + ?Sized>(doms: &mut D, caller: DomId, dom: DomId) -> Result<(), Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let valid = doms.get(target).ok_or(Errno::ESRCH)?.ports.valid_ports();
    if !allowed {
        return Err(Errno::EPERM);
    }
    if target != caller {
        return Err(Errno::EINVAL);
    }
    for port in 1..valid {
        // Free and reserved ports answer -EINVAL; that is expected.
        let _ = close(doms, caller, port);
    }
    doms.get(target).ok_or(Errno::ESRCH)?.ports.drop_fifo();
    Ok(())
}

/// What an `event_channel_op` hypercall did: its result for the guest, and a vCPU to kick. A kick
/// can come with an error (the operation succeeded but its result could not be copied back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpOutcome {
    /// 0 or the error returned in RAX.
    pub result: Result<(), Errno>,
    /// The vCPU to kick, if the operation raised an upcall.
    pub kick: Option<Kick>,
}

impl OpOutcome {
    fn done(result: Result<(), Errno>) -> OpOutcome {
        OpOutcome { result, kick: None }
    }

    fn kicked(result: Result<Option<Kick>, Errno>) -> OpOutcome {
        match result {
            Ok(kick) => OpOutcome {
                result: Ok(()),
                kick,
            },
            Err(e) => OpOutcome::done(Err(e)),
        }
    }

    /// The value for the guest's RAX: 0 or `-errno`.
    pub fn rax(&self) -> i64 {
        match self.result {
            Ok(()) => 0,
            Err(e) => -(e as i64),
        }
    }
}

/// Reads the argument structure (`copy_from_guest`), or -EFAULT.
fn arg<T: FromBytes + IntoBytes>(guest: &impl GuestMemory, ptr: GuestPtr<T>) -> Result<T, Errno> {
    copy_from_guest(guest, ptr).map_err(|_| Errno::EFAULT)
}

/// Writes the argument structure back (`__copy_to_guest`), or -EFAULT. Xen does not undo the
/// operation when this fails ("cleaning up here would be a mess"), and neither does this.
fn put<T: IntoBytes + Immutable>(
    guest: &mut impl GuestMemory,
    ptr: GuestPtr<T>,
    v: &T,
) -> Result<(), Errno> {
    copy_to_guest(guest, ptr, v).map_err(|_| Errno::EFAULT)
}

/// `HYPERVISOR_event_channel_op(cmd, arg)` for domain `caller`, whose memory `guest` is and whose
/// argument structure is at `arg_va`, whose type the command gives (Xen's `do_event_channel_op`
/// with its `XEN_GUEST_HANDLE_PARAM(void)`). Unknown commands are -ENOSYS.
#[allow(non_upper_case_globals)] // the EVTCHNOP_* patterns keep Xen's spelling
pub fn do_event_channel_op<D: Domains + ?Sized, G: GuestMemory>(
    doms: &mut D,
    caller: DomId,
    guest: &mut G,
    cmd: u32,
    arg_va: GuestPtr<c_void>,
) -> OpOutcome {
    // Operations that only produce a result; those that can also kick return early below.
    let result = match cmd {
        EVTCHNOP_alloc_unbound => {
            arg::<EvtchnAllocUnbound>(guest, arg_va.cast()).and_then(|mut a| {
                a.port = alloc_unbound(doms, caller, a.dom, a.remote_dom)?;
                put(guest, arg_va.cast(), &a)
            })
        }
        EVTCHNOP_bind_interdomain => {
            let bound = arg::<EvtchnBindInterdomain>(guest, arg_va.cast()).and_then(|b| {
                let bound = bind_interdomain(doms, caller, b.remote_dom, b.remote_port)?;
                Ok((b, bound))
            });
            return match bound {
                Ok((mut b, bound)) => {
                    b.local_port = bound.port;
                    OpOutcome {
                        result: put(guest, arg_va.cast(), &b),
                        kick: bound.kick,
                    }
                }
                Err(e) => OpOutcome::done(Err(e)),
            };
        }
        EVTCHNOP_bind_virq => arg::<EvtchnBindVirq>(guest, arg_va.cast()).and_then(|mut b| {
            b.port = bind_virq(doms, caller, b.virq, b.vcpu)?;
            put(guest, arg_va.cast(), &b)
        }),
        EVTCHNOP_bind_ipi => arg::<EvtchnBindIpi>(guest, arg_va.cast()).and_then(|mut b| {
            b.port = bind_ipi(doms, caller, b.vcpu)?;
            put(guest, arg_va.cast(), &b)
        }),
        EVTCHNOP_bind_pirq => arg::<EvtchnBindPirq>(guest, arg_va.cast()).and_then(|mut b| {
            b.port = bind_pirq(doms, caller, b.pirq)?;
            put(guest, arg_va.cast(), &b)
        }),
        EVTCHNOP_close => {
            arg::<EvtchnClose>(guest, arg_va.cast()).and_then(|c| close(doms, caller, c.port))
        }
        EVTCHNOP_send => {
            let sent =
                arg::<EvtchnSend>(guest, arg_va.cast()).and_then(|s| send(doms, caller, s.port));
            return OpOutcome::kicked(sent);
        }
        EVTCHNOP_status => arg::<EvtchnStatus>(guest, arg_va.cast()).and_then(|s| {
            let out = status(doms, caller, s.dom, s.port)?;
            put(guest, arg_va.cast(), &out)
        }),
        EVTCHNOP_bind_vcpu => arg::<EvtchnBindVcpu>(guest, arg_va.cast())
            .and_then(|b| bind_vcpu(doms, caller, b.port, b.vcpu)),
        EVTCHNOP_unmask => {
            let unmasked = arg::<EvtchnUnmask>(guest, arg_va.cast())
                .and_then(|u| unmask(doms, caller, u.port));
            return OpOutcome::kicked(unmasked);
        }
        EVTCHNOP_reset => {
            arg::<EvtchnReset>(guest, arg_va.cast()).and_then(|r| reset(doms, caller, r.dom))
        }
        // `evtchn_set_priority`: the port must be valid (-EINVAL); the 2-level ABI has no
        // priorities (-ENOSYS); the channel must be in use (-EACCES); then the FIFO range.
        EVTCHNOP_set_priority => arg::<EvtchnSetPriority>(guest, arg_va.cast()).and_then(|p| {
            let d = doms.get(caller).ok_or(Errno::ESRCH)?;
            let chan = *d.ports.channel(p.port).ok_or(Errno::EINVAL)?;
            if d.ports.fifo.is_none() {
                return Err(Errno::ENOSYS);
            }
            if !chan.state.usable() {
                return Err(Errno::EACCES);
            }
            fifo::set_priority(d.ports, p.port, p.priority)
        }),
        // These map guest frames: the handler (`hypercall.rs`) checks the frame against the
        // frame table and calls [`init_control_with`] / [`expand_array_with`]; without one
        // (a caller that has no frame table) the ABI is not offered.
        EVTCHNOP_init_control => {
            arg::<EvtchnInitControl>(guest, arg_va.cast()).and(Err(Errno::ENOSYS))
        }
        EVTCHNOP_expand_array => {
            arg::<EvtchnExpandArray>(guest, arg_va.cast()).and(Err(Errno::ENOSYS))
        }
        _ => Err(Errno::ENOSYS),
    };
    OpOutcome::done(result)
}
