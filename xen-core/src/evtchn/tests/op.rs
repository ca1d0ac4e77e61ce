//! `do_event_channel_op` with its arguments in guest memory: the conformance suite's answers from Xen 4.17, faults and kicks.

use super::*;

/// Guest memory: a flat byte array at virtual address 0; anything beyond faults.
struct FlatGuest(Vec<u8>);

impl GuestMemory for FlatGuest {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let start = usize::try_from(va).map_err(|_| GuestFault { va })?;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or(GuestFault { va })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        let start = usize::try_from(va).map_err(|_| GuestFault { va })?;
        self.0
            .get_mut(start..start + data.len())
            .ok_or(GuestFault { va })?
            .copy_from_slice(data);
        Ok(())
    }
}

/// Where the test places argument structures.
const ARG_VA: u64 = 0x100;

/// One hypercall from `caller` with `arg` in guest memory; returns RAX and updates `arg`.
fn hypercall<T: FromBytes + IntoBytes + Immutable>(
    w: &mut World,
    caller: DomId,
    cmd: u32,
    arg: &mut T,
) -> i64 {
    let mut guest = FlatGuest(vec![0; 0x1000]);
    guest.write(ARG_VA, arg.as_bytes()).unwrap();
    let out = do_event_channel_op(
        w.as_mut_slice(),
        caller,
        &mut guest,
        cmd,
        crate::guest_access::GuestPtr::new(ARG_VA),
    );
    guest.read(ARG_VA, arg.as_mut_bytes()).unwrap();
    out.rax()
}

fn status_arg(port: EvtchnPort) -> EvtchnStatus {
    EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    }
}

/// The conformance suite's `event_channel_cases` (guest-kernel `conformance.rs`) on dom0, with the
/// answers recorded from Xen 4.17.
#[test]
fn conformance_cases_match_xen_4_17() {
    let mut w = world();
    let w = &mut w;
    let mut lines = Vec::new();
    let bit = |w: &World, port| u8::from(pending(w, DOM0, port));

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    let a = alloc.port;
    lines.push(format!("evtchn.alloc_unbound_self = rc={rc} port={a}"));

    let mut st = status_arg(a);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_unbound = rc={rc} status={} vcpu={}",
        st.status, st.vcpu
    ));

    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: a });
    lines.push(format!(
        "evtchn.send_unbound = rc={rc} pending={}",
        bit(w, a)
    ));

    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        ..Default::default()
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_interdomain, &mut bind);
    let b = bind.local_port;
    lines.push(format!(
        "evtchn.bind_interdomain_loopback = rc={rc} port={b}"
    ));

    let mut st = status_arg(b);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_interdomain = rc={rc} status={}",
        st.status
    ));

    let was_masked = u8::from(masked(w, DOM0, a));
    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: b });
    lines.push(format!(
        "evtchn.send_loopback = rc={rc} remote_pending={} local_pending={} masked={was_masked} \
         upcall_pending={}",
        bit(w, a),
        bit(w, b),
        u8::from(upcall_pending(w, DOM0, 0))
    ));
    // The guest clears port a's pending bit, then upcall_pending and the selector.
    let mut page = SharedInfoPage(&mut dom_mut(w, DOM0).shared);
    let _ = page.test_and_clear_evtchn_pending(a);
    let _ = page.test_and_clear_upcall_pending(0);
    page.clear_pending_sel(0);

    let rc = hypercall(w, DOM0, EVTCHNOP_unmask, &mut EvtchnUnmask { port: a });
    lines.push(format!("evtchn.unmask = {rc}"));

    let rc_a = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: a });
    let mut st = status_arg(b);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.close_one_end = rc={rc_a} other_end_status_rc={rc} other_end_status={}",
        st.status
    ));

    let rc_b = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: b });
    let rc_again = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: a });
    lines.push(format!(
        "evtchn.close_twice = first={rc_b} second={rc_again}"
    ));

    let mut st = status_arg(a);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_closed = rc={rc} status={}",
        st.status
    ));

    let mut st = status_arg(0);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_port_0 = rc={rc} status={}",
        st.status
    ));

    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut status_arg(5000));
    lines.push(format!("evtchn.status_port_out_of_range = {rc}"));
    let rc = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: 5000 });
    lines.push(format!("evtchn.close_port_out_of_range = {rc}"));
    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: 4095 });
    lines.push(format!("evtchn.send_port_never_allocated = {rc}"));

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: NO_SUCH_DOMAIN,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    let rc_close = hypercall(
        w,
        DOM0,
        EVTCHNOP_close,
        &mut EvtchnClose { port: alloc.port },
    );
    lines.push(format!(
        "evtchn.alloc_unbound_no_such_remote = rc={rc} port={} close={rc_close}",
        alloc.port
    ));

    let mut alloc = EvtchnAllocUnbound {
        dom: NO_SUCH_DOMAIN,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    lines.push(format!("evtchn.alloc_unbound_for_no_such_domain = {rc}"));

    let mut virq = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut virq);
    let t = virq.port;
    let mut again = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc_again = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut again);
    let rc_close = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: t });
    lines.push(format!(
        "evtchn.bind_virq_timer = rc={rc} port={t} rebind={rc_again} close={rc_close}"
    ));

    let mut virq = EvtchnBindVirq {
        virq: 1000,
        vcpu: 0,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut virq);
    lines.push(format!("evtchn.bind_virq_bad_virq = {rc}"));

    let rc = hypercall(w, DOM0, 9999, &mut EvtchnClose { port: 0 });
    lines.push(format!("evtchn.unknown_cmd = {rc}"));

    let want = [
        "evtchn.alloc_unbound_self = rc=0 port=1",
        "evtchn.status_unbound = rc=0 status=1 vcpu=0",
        "evtchn.send_unbound = rc=0 pending=0",
        "evtchn.bind_interdomain_loopback = rc=0 port=2",
        "evtchn.status_interdomain = rc=0 status=2",
        "evtchn.send_loopback = rc=0 remote_pending=1 local_pending=1 masked=0 upcall_pending=1",
        "evtchn.unmask = 0",
        "evtchn.close_one_end = rc=0 other_end_status_rc=0 other_end_status=1",
        "evtchn.close_twice = first=0 second=-22",
        "evtchn.status_closed = rc=0 status=0",
        "evtchn.status_port_0 = rc=0 status=0",
        "evtchn.status_port_out_of_range = -22",
        "evtchn.close_port_out_of_range = -22",
        "evtchn.send_port_never_allocated = -22",
        "evtchn.alloc_unbound_no_such_remote = rc=0 port=1 close=0",
        "evtchn.alloc_unbound_for_no_such_domain = -3",
        "evtchn.bind_virq_timer = rc=0 port=1 rebind=-17 close=0",
        "evtchn.bind_virq_bad_virq = -22",
        "evtchn.unknown_cmd = -38",
    ];
    assert_eq!(lines, want);
}

#[test]
fn loopback_local_pending_comes_from_the_bind_not_the_send() {
    // Why `send_loopback` shows both ports pending: bind_interdomain sets the new local port
    // pending (and raises the upcall); the send then sets the remote port.
    let mut w = world();
    let a = alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOMID_SELF).unwrap();
    let bound = bind_interdomain(w.as_mut_slice(), DOM0, DOMID_SELF, a).unwrap();
    assert_eq!(bound.kick, Some(Kick { dom: DOM0, vcpu: 0 }));
    assert!(pending(&w, DOM0, bound.port) && !pending(&w, DOM0, a));
    assert!(upcall_pending(&w, DOM0, 0));
    // Upcall already pending: the send raises nothing new.
    assert_eq!(send(w.as_mut_slice(), DOM0, bound.port), Ok(None));
    assert!(pending(&w, DOM0, a));
}

#[test]
fn guest_pointers_that_fault_are_efault() {
    let mut w = world();
    let mut guest = FlatGuest(vec![0; 0x1000]);
    for cmd in [
        EVTCHNOP_alloc_unbound,
        EVTCHNOP_bind_interdomain,
        EVTCHNOP_bind_virq,
        EVTCHNOP_bind_ipi,
        EVTCHNOP_bind_pirq,
        EVTCHNOP_close,
        EVTCHNOP_send,
        EVTCHNOP_status,
        EVTCHNOP_bind_vcpu,
        EVTCHNOP_unmask,
        EVTCHNOP_reset,
        EVTCHNOP_init_control,
        EVTCHNOP_expand_array,
        EVTCHNOP_set_priority,
    ] {
        let out = do_event_channel_op(
            w.as_mut_slice(),
            DOM1,
            &mut guest,
            cmd,
            crate::guest_access::GuestPtr::new(0x2000),
        );
        assert_eq!(out.result, Err(Errno::EFAULT), "cmd {cmd}");
    }
    // The argument is readable but the result cannot be written back: the port stays allocated
    // and the guest gets -EFAULT, as on Xen.
    let mut guest = FlatGuest(vec![0; 0x1000]);
    let alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOM2,
        port: 0,
    };
    guest.write(ARG_VA, alloc.as_bytes()).unwrap();
    let mut ro = ReadOnlyGuest(guest);
    let out = do_event_channel_op(
        w.as_mut_slice(),
        DOM1,
        &mut ro,
        EVTCHNOP_alloc_unbound,
        crate::guest_access::GuestPtr::new(ARG_VA),
    );
    assert_eq!(out.result, Err(Errno::EFAULT));
    assert_eq!(
        state(&w, DOM1, 1),
        ChannelState::Unbound { remote_dom: DOM2 }
    );
}

/// A guest whose memory is readable but not writable.
struct ReadOnlyGuest(FlatGuest);

impl GuestMemory for ReadOnlyGuest {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.0.read(va, buf)
    }
    fn write(&mut self, va: u64, _data: &[u8]) -> Result<(), GuestFault> {
        Err(GuestFault { va })
    }
}

#[test]
fn the_remaining_commands_answer_like_xen_without_pirqs_or_fifo() {
    let mut w = world();
    let mut pirq = EvtchnBindPirq::new_zeroed();
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_bind_pirq, &mut pirq), -22);
    let mut prio = EvtchnSetPriority {
        port: 1,
        priority: 0,
    };
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_set_priority, &mut prio),
        -38
    );
    prio.port = 5000;
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_set_priority, &mut prio),
        -22
    );
    let mut init = EvtchnInitControl::new_zeroed();
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_init_control, &mut init),
        -38
    );
    let mut bind_vcpu_arg = EvtchnBindVcpu { port: 0, vcpu: 0 };
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_bind_vcpu, &mut bind_vcpu_arg),
        -22
    );
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_bind_ipi, &mut ipi), 0);
    assert_eq!(ipi.port, 1);
    let mut reset_arg = EvtchnReset { dom: DOMID_SELF };
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_reset, &mut reset_arg), 0);
    assert_eq!(state(&w, DOM0, 1), ChannelState::Free);
}

#[test]
fn hypercall_kicks_are_reported() {
    let mut w = world();
    let mut guest = FlatGuest(vec![0; 0x1000]);
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let bind = EvtchnBindInterdomain {
        remote_dom: DOM1,
        remote_port: rport,
        ..Default::default()
    };
    guest.write(ARG_VA, bind.as_bytes()).unwrap();
    let out = do_event_channel_op(
        w.as_mut_slice(),
        DOM2,
        &mut guest,
        EVTCHNOP_bind_interdomain,
        crate::guest_access::GuestPtr::new(ARG_VA),
    );
    assert_eq!(out.result, Ok(()));
    assert_eq!(out.kick, Some(Kick { dom: DOM2, vcpu: 0 }));
    let mut back = EvtchnBindInterdomain::new_zeroed();
    guest.read(ARG_VA, back.as_mut_bytes()).unwrap();
    guest
        .write(
            ARG_VA,
            EvtchnSend {
                port: back.local_port,
            }
            .as_bytes(),
        )
        .unwrap();
    let out = do_event_channel_op(
        w.as_mut_slice(),
        DOM2,
        &mut guest,
        EVTCHNOP_send,
        crate::guest_access::GuestPtr::new(ARG_VA),
    );
    assert_eq!(out.kick, Some(Kick { dom: DOM1, vcpu: 0 }));
}
