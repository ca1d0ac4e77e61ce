//! Wake-ups: when a blocked or polling vCPU may run again (Xen's `vcpu_unblock` and the
//! `SCHEDOP_poll` wake-up in `common/sched/core.c`), and the device interrupts that wake dom0.
//!
//! An event made pending sets `evtchn_upcall_pending` in the target vCPU's `vcpu_info`; a vCPU
//! blocked in `SCHEDOP_block` runs again once that is set, one polling in `SCHEDOP_poll` once one
//! of its ports is pending or its deadline passed. An NMI it may take (`VCPUOP_send_nmi`, not
//! masked) ends either wait, as Xen's `vcpu_kick` does.

use crate::cpu::Arch;
use crate::ctx::Machine;
use crate::domain::set::{DomainEntry, DomainSet};
use crate::evtchn::hypercall as event_channel;

/// Wakes each vCPU of `g` whose wait ended by `now`: a blocked vCPU with an upcall pending in
/// its own `vcpu_info`, a polling one with one of its ports pending or its poll deadline passed,
/// and either with an NMI pending and not masked (the poll then returns 0, as Xen's). Returns
/// whether any was woken.
#[inline]
pub fn wake_if_due<M: Machine + ?Sized>(
    m: &M,
    g: &mut DomainEntry,
    ports: &crate::evtchn::PortTable,
    now: u64,
) -> bool {
    // The usual answer for a domain whose vCPUs all run or could (the sender of an event, the
    // running vCPU): none waits, none to wake; the rest is out of line.
    if !g.dom.vcpus.iter().any(|v| v.blocked || v.poll.is_some()) {
        return false;
    }
    wake_waiting(m, g, ports, now)
}

/// [`wake_if_due`] when some vCPU waits.
#[inline(never)]
fn wake_waiting<M: Machine + ?Sized>(
    m: &M,
    g: &mut DomainEntry,
    ports: &crate::evtchn::PortTable,
    now: u64,
) -> bool {
    let mut woken = false;
    for id in 0..g.dom.vcpus.len() {
        let v = &g.dom.vcpus[id];
        let nmi = v.nmi_pending && !v.nmi_masked;
        if v.blocked && (nmi || crate::shared_info::upcall_pending_of(m, &g.dom, id as u32)) {
            g.dom.vcpus[id].blocked = false;
            woken = true;
        }
        if let Some(poll) = &g.dom.vcpus[id].poll {
            let ready = nmi
                || poll
                    .ports
                    .iter()
                    .any(|&p| crate::evtchn::fifo::port_pending(m, &g.dom, ports, p))
                || poll.deadline.is_some_and(|d| now >= d);
            if ready {
                g.dom.vcpus[id].poll = None;
                woken = true;
            }
        }
    }
    woken
}

/// Raises in dom0 the PIRQs of the GSIs whose interrupts arrived (the arch layer masked each
/// line): Xen's `__do_IRQ_guest` → `send_guest_pirq`. A GSI dom0 has not bound stays masked. The
/// event's upcall is delivered on the way out, or wakes dom0 if it blocked.
pub fn deliver_irqs<A: Arch>(arch: &mut A, doms: &mut DomainSet) {
    let pending = arch.take_pending_irqs();
    if pending == 0 {
        return;
    }
    let Some((g, ports)) = doms.both_mut(0) else {
        return;
    };
    if g.dom.id != 0 || !g.dom.privileged {
        return;
    }
    for gsi in (0..crate::pirq::NR_GSIS).filter(|g| pending & (1 << g) != 0) {
        event_channel::send_gsi(arch, &g.dom, ports, gsi);
    }
}
