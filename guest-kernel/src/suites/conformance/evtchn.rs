//! Event-channel cases: allocating, binding (interdomain, VIRQ), sending, masking, closing
//! and status, on our own ports. Bits read from shared_info print as -1 if it could not be
//! mapped (`shared_info.map` says why).

use hypercall_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnClose, EvtchnSend,
    EvtchnStatus, EvtchnUnmask,
};
use hypercall_abi::xen::{DOMID_SELF, VIRQ_TIMER};

use super::*;
use crate::kernel::hypercall as hc;
use crate::kernel::shared_info::{self, clear_bit, test_bit, Bitmap::Mask, Bitmap::Pending};

/// Event channel cases. Bits read from shared_info print as -1 if it could not be mapped
/// (`shared_info.map` says why).
pub(super) fn event_channel_cases(s: &mut Suite) {
    let upcall_mask = shared_info::upcall_mask().map_or(-1, i32::from);
    s.case(
        "shared_info.upcall_mask_at_entry",
        format_args!("{upcall_mask}"),
    );

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    let a = alloc.port;
    s.case(
        "evtchn.alloc_unbound_self",
        format_args!("rc={rc} port={a}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_unbound",
        format_args!("rc={rc} status={} vcpu={}", st.status, st.vcpu),
    );

    // Sending on an unbound port is silently dropped.
    let mut send = EvtchnSend { port: a };
    let rc = hc::event_channel_op(&mut send);
    s.case(
        "evtchn.send_unbound",
        format_args!("rc={rc} pending={}", test_bit(Pending, a)),
    );

    // Loop back: bind a second port to the first, send on it, watch the first become pending.
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
        ..Default::default()
    };
    let rc = hc::event_channel_op(&mut bind);
    let b = bind.local_port;
    s.case(
        "evtchn.bind_interdomain_loopback",
        format_args!("rc={rc} port={b}"),
    );

    let mut st = status(b);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_interdomain",
        format_args!("rc={rc} status={}", st.status),
    );

    let was_masked = test_bit(Mask, a);
    let mut send = EvtchnSend { port: b };
    let rc = hc::event_channel_op(&mut send);
    let upcall_pending = shared_info::upcall_pending();
    s.case(
        "evtchn.send_loopback",
        format_args!(
            "rc={rc} remote_pending={} local_pending={} masked={was_masked} upcall_pending={upcall_pending}",
            test_bit(Pending, a),
            test_bit(Pending, b)
        ),
    );
    // Upcalls are masked here, so the event waits; consume it as the upcall handler would.
    clear_bit(Pending, a);
    shared_info::ack_upcall();

    let mut unmask = EvtchnUnmask { port: a };
    let rc = hc::event_channel_op(&mut unmask);
    s.case("evtchn.unmask", format_args!("{rc}"));

    let mut close = EvtchnClose { port: a };
    let rc_a = hc::event_channel_op(&mut close);
    let mut st = status(b);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.close_one_end",
        format_args!(
            "rc={rc_a} other_end_status_rc={rc} other_end_status={}",
            st.status
        ),
    );

    let mut close = EvtchnClose { port: b };
    let rc_b = hc::event_channel_op(&mut close);
    let mut close = EvtchnClose { port: a };
    let rc_again = hc::event_channel_op(&mut close);
    s.case(
        "evtchn.close_twice",
        format_args!("first={rc_b} second={rc_again}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_closed",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(0);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_port_0",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(5000);
    let rc = hc::event_channel_op(&mut st);
    s.case("evtchn.status_port_out_of_range", format_args!("{rc}"));

    let mut close = EvtchnClose { port: 5000 };
    let rc = hc::event_channel_op(&mut close);
    s.case("evtchn.close_port_out_of_range", format_args!("{rc}"));

    let mut send = EvtchnSend { port: 4095 };
    let rc = hc::event_channel_op(&mut send);
    s.case("evtchn.send_port_never_allocated", format_args!("{rc}"));

    // Xen does not check that the remote domain exists yet: the port waits for it.
    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: NO_SUCH_DOMAIN,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    let mut close = EvtchnClose { port: alloc.port };
    let rc_close = if rc == 0 {
        hc::event_channel_op(&mut close)
    } else {
        0
    };
    s.case(
        "evtchn.alloc_unbound_no_such_remote",
        format_args!("rc={rc} port={} close={rc_close}", alloc.port),
    );

    let mut alloc = EvtchnAllocUnbound {
        dom: NO_SUCH_DOMAIN,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    s.case(
        "evtchn.alloc_unbound_for_no_such_domain",
        format_args!("{rc}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut virq);
    let t = virq.port;
    let mut again = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc_again = hc::event_channel_op(&mut again);
    let mut close = EvtchnClose { port: t };
    let rc_close = hc::event_channel_op(&mut close);
    s.case(
        "evtchn.bind_virq_timer",
        format_args!("rc={rc} port={t} rebind={rc_again} close={rc_close}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: 1000,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut virq);
    s.case("evtchn.bind_virq_bad_virq", format_args!("{rc}"));

    // Closed, never-valid and foreign ports.
    let mut send = EvtchnSend { port: a };
    let rc_send = hc::event_channel_op(&mut send);
    let mut unmask = EvtchnUnmask { port: a };
    let rc_unmask = hc::event_channel_op(&mut unmask);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    s.case(
        "evtchn.closed_port",
        format_args!("send={rc_send} unmask={rc_unmask} bind_interdomain={rc_bind}"),
    );
    let mut unmask = EvtchnUnmask { port: 5000 };
    let rc_unmask = hc::event_channel_op(&mut unmask);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: 5000,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    s.case(
        "evtchn.port_out_of_range",
        format_args!("unmask={rc_unmask} bind_interdomain={rc_bind}"),
    );
    let mut st = EvtchnStatus {
        dom: NO_SUCH_DOMAIN,
        port: 1,
        ..Default::default()
    };
    let rc_status = hc::event_channel_op(&mut st);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: NO_SUCH_DOMAIN,
        remote_port: 1,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    let mut close = EvtchnClose {
        port: bind.local_port,
    };
    let _ = if rc_bind == 0 {
        hc::event_channel_op(&mut close)
    } else {
        0
    };
    s.case(
        "evtchn.foreign_domain",
        format_args!("status={rc_status} bind_interdomain={rc_bind}"),
    );

    let mut any = EvtchnClose { port: 0 };
    // SAFETY: an unknown command touches nothing; `any` is writable anyway.
    let rc = unsafe { hc::raw::event_channel_op(BAD_CMD, hc::ptr(&raw mut any)) };
    s.case("evtchn.unknown_cmd", format_args!("{rc}"));
}

pub(super) fn status(port: u32) -> EvtchnStatus {
    EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    }
}
