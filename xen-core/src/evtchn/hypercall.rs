//! `event_channel_op` and the hypervisor's own event sends, over the portable `crate::evtchn`.
//!
//! The event-channel code works on each domain's shared_info through `SharedInfoBits`. With one
//! CPU no guest runs while the hypervisor does, so a bit operation is a plain read-modify-write of
//! the frame through machine memory. Several domains' frames are reached at once (an interdomain
//! send sets a bit in the remote domain's frame) through one machine borrowed in a `RefCell`:
//! each bit operation and each guest copy borrows it for just its own length.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use core::cell::RefCell;

use hypercall_abi::errno::Errno;

use crate::domain::Domain;
use crate::evtchn::{self, DomainEvents, DomainPair, Domains, PortTable, SharedInfoBits};
use crate::guest_access::{GuestFault, GuestMemory, PageTableGuest};
use crate::hypercall::{Ctx, HcResult, Machine};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// A domain's shared_info frame, reached through the machine shared by every handle.
pub struct SharedFrame<'a, 'm, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    base: Maddr,
}

impl<M: MachineMemoryMut + ?Sized> SharedFrame<'_, '_, M> {
    fn word(&self, offset: usize) -> u64 {
        self.m
            .borrow()
            .read_u64(Maddr(self.base.0 + offset as u64))
            .unwrap_or(0)
    }

    fn update(&mut self, offset: usize, bit: u32, set: bool) -> bool {
        let at = Maddr(self.base.0 + offset as u64);
        let mut m = self.m.borrow_mut();
        let old = m.read_u64(at).unwrap_or(0);
        let new = if set {
            old | 1 << bit
        } else {
            old & !(1 << bit)
        };
        if new != old {
            let _ = m.write_u64(at, new);
        }
        old & 1 << bit != 0
    }
}

impl<M: MachineMemoryMut + ?Sized> SharedInfoBits for SharedFrame<'_, '_, M> {
    fn test_bit(&self, offset: usize, bit: u32) -> bool {
        self.word(offset) & 1 << bit != 0
    }

    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.update(offset, bit, true)
    }

    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.update(offset, bit, false)
    }
}

/// The caller's memory, through the shared machine.
struct SharedGuest<'a, 'm, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    l4: Mfn,
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for SharedGuest<'_, '_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let mut m = self.m.borrow_mut();
        PageTableGuest {
            mem: &mut **m,
            l4: self.l4,
        }
        .read(va, buf)
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        let mut m = self.m.borrow_mut();
        PageTableGuest {
            mem: &mut **m,
            l4: self.l4,
        }
        .write(va, data)
    }
}

/// One domain as the event-channel code sees it.
struct Entry<'a, 'm, M: ?Sized> {
    id: u16,
    privileged: bool,
    ports: &'a mut PortTable,
    shared: SharedFrame<'a, 'm, M>,
}

/// Every domain, as `evtchn::Domains` sees them.
struct AllDomains<'a, 'm, M: ?Sized> {
    doms: heapless::Vec<Entry<'a, 'm, M>, { crate::domain::set::MAX_DOMAINS }>,
}

impl<'a, 'm, M: MachineMemoryMut + ?Sized> AllDomains<'a, 'm, M> {
    fn add(&mut self, m: &'a RefCell<&'m mut M>, dom: &Domain, ports: &'a mut PortTable) {
        let _ = self.doms.push(Entry {
            id: dom.id,
            privileged: dom.privileged,
            ports,
            shared: SharedFrame {
                m,
                base: dom.shared_info.maddr(),
            },
        });
    }
}

fn view<'e, 'a: 'e, 'm: 'e, M: MachineMemoryMut + ?Sized>(
    e: &'e mut Entry<'a, 'm, M>,
) -> DomainEvents<'e, SharedFrame<'a, 'm, M>> {
    DomainEvents {
        id: e.id,
        privileged: e.privileged,
        ports: &mut *e.ports,
        shared: &mut e.shared,
    }
}

impl<'a, 'm, M: MachineMemoryMut + ?Sized> Domains for AllDomains<'a, 'm, M> {
    type Shared = SharedFrame<'a, 'm, M>;

    fn get(&mut self, id: u16) -> Option<DomainEvents<'_, Self::Shared>> {
        self.doms.iter_mut().find(|d| d.id == id).map(view)
    }

    fn get_two(&mut self, a: u16, b: u16) -> Option<DomainPair<'_, Self::Shared>> {
        if a == b {
            return None;
        }
        let ia = self.doms.iter().position(|d| d.id == a)?;
        let ib = self.doms.iter().position(|d| d.id == b)?;
        if ia < ib {
            let (lo, hi) = self.doms.split_at_mut(ib);
            Some((view(&mut lo[ia]), view(&mut hi[0])))
        } else {
            let (lo, hi) = self.doms.split_at_mut(ia);
            Some((view(&mut hi[0]), view(&mut lo[ib])))
        }
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

pub(crate) fn event_channel_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    let (id, l4) = (ctx.dom.id, ctx.dom.l4);
    let m = RefCell::new(&mut *ctx.m);
    let mut doms = AllDomains {
        doms: heapless::Vec::new(),
    };
    doms.add(&m, ctx.dom, &mut *ctx.events);
    // Every domain that exists, shut down ones included: closing a channel to a stopped domain
    // must unbind its end too, or tearing that domain down later would rebind a port of ours
    // that may have been reused meanwhile.
    for (g, ports) in ctx.others.iter_mut() {
        doms.add(&m, &g.dom, ports);
    }
    let mut guest = SharedGuest { m: &m, l4 };
    let op = crate::hypercall::cmd32(cmd);
    let outcome = evtchn::do_event_channel_op(&mut doms, id, &mut guest, op, arg);
    drop(doms);
    // Binding or closing a PIRQ channel changes which interrupt lines are the guest's.
    use hypercall_abi::event_channel::{
        EVTCHNOP_bind_pirq, EVTCHNOP_close, EVTCHNOP_reset, EVTCHNOP_send,
    };
    if ctx.dom.privileged && matches!(op, EVTCHNOP_bind_pirq | EVTCHNOP_close | EVTCHNOP_reset) {
        ctx.m.sync_irq_lines(&ctx.events.pirqs);
    }
    // A vCPU whose `evtchn_upcall_pending` went from 0 to 1 must be woken (Xen's `vcpu_kick`):
    // the scheduler does that for the domains in the outcome's kicks.
    if let Some(kick) = outcome.kick {
        ctx.fx.kicks.add(kick.dom);
    }
    // A send also wakes a domain polling for the port even if its upcall was already pending
    // (Xen's `evtchn_check_pollers`): any domain polling is looked at again.
    if op == EVTCHNOP_send && outcome.result.is_ok() {
        for g in ctx.others.iter() {
            if g.dom.vcpu.poll.is_some() {
                ctx.fx.kicks.add(g.dom.id);
            }
        }
    }
    outcome.result.map(|()| 0).map_err(|e: Errno| e)
}

/// Runs `f` over `dom` alone, as `evtchn::Domains` sees it (with its id): what the hypervisor's
/// own operations on one domain's channels need.
fn with_domain<M: MachineMemoryMut + ?Sized, R>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    f: impl FnOnce(&mut AllDomains<'_, '_, M>, u16) -> R,
) -> R {
    let m = RefCell::new(m);
    let mut doms = AllDomains {
        doms: heapless::Vec::new(),
    };
    doms.add(&m, dom, ports);
    f(&mut doms, dom.id)
}

/// Raises `virq` on the domain's vCPU 0 from the hypervisor (a timer tick, ...). The scheduler's
/// pass that follows wakes the vCPU if the upcall became pending (`sched::wake`).
pub fn send_virq<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    virq: u32,
) {
    with_domain(m, dom, ports, |doms, id| {
        let _ = evtchn::send_virq(doms, id, 0, virq);
    });
}

/// The interrupt of `gsi` arrived (its line masked): raises the PIRQ that `dom` (the control
/// domain) mapped to it, if a port is bound (Xen's `send_guest_pirq`). Returns whether it was
/// delivered; if not, the line is left masked.
pub fn send_gsi<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    gsi: u32,
) -> bool {
    with_domain(m, dom, ports, |doms, id| evtchn::send_pirq(doms, id, gsi).0)
}

/// Allocates an unbound port of `dom` that `remote` may bind (what a toolstack does for a new
/// domain's xenstore and console channels with `EVTCHNOP_alloc_unbound`).
pub fn alloc_unbound_for<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    remote: u16,
) -> Result<u32, Errno> {
    with_domain(m, dom, ports, |doms, id| {
        evtchn::alloc_unbound(doms, id, id, remote)
    })
}

/// Binds `virq` on vCPU 0 of `dom` to a new port (what the domain's own `EVTCHNOP_bind_virq`
/// does; tests use it to watch what the hypervisor raises).
pub fn bind_virq_for<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    virq: u32,
) -> Result<u32, Errno> {
    with_domain(m, dom, ports, |doms, id| {
        evtchn::bind_virq(doms, id, virq, 0)
    })
}

/// Closes every port of a dying domain (Xen's `evtchn_destroy`): the other end of each
/// interdomain channel becomes unbound again, as on Xen.
pub fn close_all<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    others: &mut crate::domain::set::Others<'_>,
) {
    let id = dom.id;
    let m = RefCell::new(m);
    let mut doms = AllDomains {
        doms: heapless::Vec::new(),
    };
    doms.add(&m, dom, ports);
    for (g, p) in others.iter_mut() {
        doms.add(&m, &g.dom, p);
    }
    let _ = evtchn::reset(&mut doms, id, id);
}

/// Whether event channel `port` of `dom` is pending.
pub fn port_pending<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain, port: u32) -> bool {
    let at = crate::mm::Maddr(dom.shared_info.maddr().0 + 2048 + u64::from(port / 8));
    m.read(at, 1).is_some_and(|b| b[0] & (1 << (port % 8)) != 0)
}
