//! `event_channel_op` and the hypervisor's own event sends, over the portable `crate::evtchn`.
//!
//! The event-channel code works on a domain's shared_info through `SharedInfoBits`. With one CPU
//! the guest cannot run while the hypervisor does, so a copy of the page is as good as the page:
//! the operation runs on a copy and only the bytes it changed are written back. (With more CPUs
//! this becomes atomic bit operations on the page itself, as in Xen.)

use hypercall_abi::errno::Errno;

use super::{Ctx, HcResult, Machine};
use crate::domain::Domain;
use crate::evtchn::{self, DomainEvents, DomainPair, Domains, PortTable};
use crate::guest::PageTableGuest;
use crate::mm::MachineMemoryMut;

/// The only domain there is, as `evtchn::Domains` sees it.
struct OneDomain<'a> {
    id: u16,
    privileged: bool,
    ports: &'a mut PortTable,
    shared: &'a mut [u8; 4096],
}

impl Domains for OneDomain<'_> {
    type Shared = [u8; 4096];

    fn get(&mut self, id: u16) -> Option<DomainEvents<'_, [u8; 4096]>> {
        if id != self.id {
            return None;
        }
        Some(DomainEvents {
            id: self.id,
            privileged: self.privileged,
            ports: &mut *self.ports,
            shared: &mut *self.shared,
        })
    }

    fn get_two(&mut self, _a: u16, _b: u16) -> Option<DomainPair<'_, [u8; 4096]>> {
        None
    }
}

/// Runs `f` on a copy of `dom`'s shared_info page and writes back the bytes it changed.
pub fn with_shared_info<M: MachineMemoryMut + ?Sized, R>(
    m: &mut M,
    dom: &Domain,
    f: impl FnOnce(&mut M, &mut [u8; 4096]) -> R,
) -> R {
    let base = dom.shared_info.maddr();
    let mut page = [0u8; 4096];
    if let Some(bytes) = m.read(base, 4096) {
        page.copy_from_slice(bytes);
    }
    let before = page;
    let r = f(m, &mut page);
    // Re-read what the callback may have written through `m` (guest copies into the page), and
    // apply only our own changes on top of it.
    let mut now = [0u8; 4096];
    if let Some(bytes) = m.read(base, 4096) {
        now.copy_from_slice(bytes);
    }
    for (i, (&new, &old)) in page.iter().zip(before.iter()).enumerate() {
        if new != old {
            now[i] = new;
        }
    }
    let _ = m.write(base, &now);
    r
}

pub(super) fn event_channel_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    let (id, privileged, l4) = (ctx.dom.id, ctx.dom.privileged, ctx.dom.l4);
    let ports = &mut *ctx.events;
    let outcome = with_shared_info(ctx.m, ctx.dom, |m, page| {
        let mut doms = OneDomain {
            id,
            privileged,
            ports,
            shared: page,
        };
        let mut guest = PageTableGuest { mem: m, l4 };
        evtchn::do_event_channel_op(&mut doms, id, &mut guest, super::cmd32(cmd), arg)
    });
    // A kick for our own (only) vCPU needs nothing more: `evtchn_upcall_pending` is set and the
    // exit path delivers the upcall.
    outcome.result.map(|()| 0).map_err(|e: Errno| e)
}

/// Raises `virq` on the domain's vCPU 0 from the hypervisor (a timer tick, ...).
pub fn send_virq<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    virq: u32,
) {
    let (id, privileged) = (dom.id, dom.privileged);
    with_shared_info(m, dom, |_, page| {
        let mut doms = OneDomain {
            id,
            privileged,
            ports,
            shared: page,
        };
        let _ = evtchn::send_virq(&mut doms, id, 0, virq);
    });
}

/// Whether event channel `port` of `dom` is pending.
pub fn port_pending<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain, port: u32) -> bool {
    let at = crate::mm::Maddr(dom.shared_info.maddr().0 + 2048 + u64::from(port / 8));
    m.read(at, 1).is_some_and(|b| b[0] & (1 << (port % 8)) != 0)
}
