//! `event_channel_op` and the hypervisor's own event sends, over the portable `crate::evtchn`.
//!
//! The event-channel code works on each domain's shared_info through its view
//! (`crate::shared_info`), whose bit operations are the machine's locked ones. Several domains'
//! frames are reached at once (an interdomain send sets a bit in the remote domain's frame)
//! through one machine borrowed in a `RefCell`: each bit operation and each guest copy borrows
//! it for just its own length.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use core::cell::RefCell;

use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::set::{DomainEntry, DomainSet, Others};
use crate::domain::Domain;
use crate::evtchn::fifo::{self, FifoMemory};
use crate::evtchn::{self, DomainEvents, DomainPair, Domains, NoPages, PortPages, PortTable};
use crate::guest_access::{
    copy_from_guest, copy_to_guest, GuestFault, GuestMemory, GuestPtr, MmuGuest, PageTableGuest,
};
use crate::mm::frame_alloc::FramePool;
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::pt;
use crate::mm::xen_page::XenPage;
use crate::mm::{MachineMemoryMut, Maddr, Mfn};
use crate::shared_info::{
    forward_shared_memory, forward_shared_read, MachineFrame, MachineFrameMut, SharedMemory,
    SharedRead,
};

/// A domain's shared_info frame, reached through the machine shared by every handle.
pub struct SharedFrame<'a, 'm, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    mfn: Mfn,
    /// Where the guest moved its vCPUs' `vcpu_info`s, if it did.
    vcpu_info: crate::shared_info::VcpuInfoMap,
}

// Each access borrows the machine for just its own length.
forward_shared_read!([M: MachineMemoryMut + ?Sized] SharedFrame<'_, '_, M>, |s| {
    MachineFrame::with_vcpu_info(&**s.m.borrow(), s.mfn, s.vcpu_info)
});
forward_shared_memory!([M: MachineMemoryMut + ?Sized] SharedFrame<'_, '_, M>, |s| {
    MachineFrameMut::with_vcpu_info(&mut **s.m.borrow_mut(), s.mfn, s.vcpu_info)
});

// FIFO event words and control blocks: aligned u32s in the domain's frames, through the machine.
impl<M: MachineMemoryMut + ?Sized> FifoMemory for SharedFrame<'_, '_, M> {
    fn load(&self, at: Maddr) -> Option<u32> {
        self.m.borrow().read_u32(at)
    }
    fn store(&mut self, at: Maddr, value: u32) -> Option<()> {
        if !at.0.is_multiple_of(4) {
            return None;
        }
        self.m.borrow_mut().write(at, &value.to_le_bytes())
    }
    fn cmpxchg(&mut self, at: Maddr, old: u32, new: u32) -> Option<u32> {
        self.m.borrow_mut().compare_exchange_u32(at, old, new)
    }
    fn fetch_or(&mut self, at: Maddr, bits: u32) -> Option<u32> {
        self.m.borrow_mut().fetch_or_u32(at, bits)
    }
    fn fetch_and(&mut self, at: Maddr, bits: u32) -> Option<u32> {
        self.m.borrow_mut().fetch_and_u32(at, bits)
    }
}

/// The caller's memory, through the shared machine: through the MMU when `mmu` (no TLB work
/// is owed, [`Ctx::mmu_usable`]), else by walking its tables, as [`Ctx::guest`] does.
struct SharedGuest<'a, 'm, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    l4: Mfn,
    mmu: bool,
}

impl<M: MachineMemoryMut + ?Sized> SharedGuest<'_, '_, M> {
    fn with<R>(&self, f: impl FnOnce(&mut MmuGuest<'_, M>) -> R) -> R {
        let mut m = self.m.borrow_mut();
        f(&mut MmuGuest {
            walk: PageTableGuest {
                mem: &mut **m,
                l4: self.l4,
            },
            mmu: self.mmu,
        })
    }
}

impl<M: MachineMemoryMut + ?Sized> GuestMemory for SharedGuest<'_, '_, M> {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.with(|g| g.read(va, buf))
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        self.with(|g| g.write(va, data))
    }
}

/// Every domain, as `evtchn::Domains` sees them: the caller, and the others looked up only when
/// an operation names them (an interdomain send reaches one domain, not all of them: building a
/// view of every domain on each call cost more than the send itself).
struct AllDomains<'a, 'm, 'o, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    /// Where new channel pages come from.
    pages: &'a dyn PortPages,
    id: u16,
    privileged: bool,
    ports: &'a mut PortTable,
    shared: SharedFrame<'a, 'm, M>,
    /// The other domains (none for the hypervisor's own operations on one domain).
    others: Option<&'a mut Others<'o>>,
    /// The shared_info handles of the other domains an operation holds at once.
    scratch: [Option<SharedFrame<'a, 'm, M>>; 2],
}

impl<'a, 'm, 'o, M: MachineMemoryMut + ?Sized> AllDomains<'a, 'm, 'o, M> {
    fn new(
        m: &'a RefCell<&'m mut M>,
        pages: &'a dyn PortPages,
        dom: &Domain,
        ports: &'a mut PortTable,
        others: Option<&'a mut Others<'o>>,
    ) -> Self {
        AllDomains {
            m,
            pages,
            id: dom.id,
            privileged: dom.privileged,
            ports,
            shared: SharedFrame::of(m, dom),
            others,
            scratch: [None, None],
        }
    }
}

impl<'a, 'm, M: ?Sized> SharedFrame<'a, 'm, M> {
    fn of(m: &'a RefCell<&'m mut M>, dom: &Domain) -> Self {
        SharedFrame {
            m,
            mfn: dom.shared_info,
            vcpu_info: dom.vcpu_info_map(),
        }
    }
}

/// Another domain's view, its shared_info handle kept in `slot`.
fn other_view<'e, 'a: 'e, 'm: 'e, M: ?Sized>(
    m: &'a RefCell<&'m mut M>,
    pages: &'a dyn PortPages,
    g: &'e DomainEntry,
    ports: &'e mut PortTable,
    slot: &'e mut Option<SharedFrame<'a, 'm, M>>,
) -> DomainEvents<'e, SharedFrame<'a, 'm, M>>
where
    SharedFrame<'a, 'm, M>: SharedMemory + FifoMemory,
{
    DomainEvents {
        id: g.dom.id,
        privileged: g.dom.privileged,
        ports,
        shared: slot.insert(SharedFrame::of(m, &g.dom)),
        pages,
    }
}

impl<'a, 'm, 'o, M: MachineMemoryMut + ?Sized> Domains for AllDomains<'a, 'm, 'o, M> {
    type Shared = SharedFrame<'a, 'm, M>;

    fn get(&mut self, id: u16) -> Option<DomainEvents<'_, Self::Shared>> {
        if id == self.id {
            return Some(DomainEvents {
                id,
                privileged: self.privileged,
                ports: &mut *self.ports,
                shared: &mut self.shared,
                pages: self.pages,
            });
        }
        let (g, ports) = self.others.as_mut()?.get(id)?;
        let [slot, _] = &mut self.scratch;
        Some(other_view(self.m, self.pages, g, ports, slot))
    }

    fn get_two(&mut self, a: u16, b: u16) -> Option<DomainPair<'_, Self::Shared>> {
        if a == b {
            return None;
        }
        let (m, pages) = (self.m, self.pages);
        let [slot_a, slot_b] = &mut self.scratch;
        let others = self.others.as_mut()?;
        if a == self.id || b == self.id {
            let (g, ports) = others.get(if a == self.id { b } else { a })?;
            let me = DomainEvents {
                id: self.id,
                privileged: self.privileged,
                ports: &mut *self.ports,
                shared: &mut self.shared,
                pages,
            };
            let other = other_view(m, pages, g, ports, slot_a);
            return Some(if a == self.id {
                (me, other)
            } else {
                (other, me)
            });
        }
        let (mut x, mut y) = (None, None);
        for (g, ports) in others.iter_mut() {
            if g.dom.id == a {
                x = Some((g, ports));
            } else if g.dom.id == b {
                y = Some((g, ports));
            }
        }
        let ((ga, pa), (gb, pb)) = (x?, y?);
        Some((
            other_view(m, pages, ga, pa, slot_a),
            other_view(m, pages, gb, pb, slot_b),
        ))
    }
}

pub(crate) fn event_channel_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    use hypercall_abi::event_channel::{EVTCHNOP_expand_array, EVTCHNOP_init_control};
    let result = match crate::ctx::cmd32(cmd) {
        EVTCHNOP_init_control => init_control(ctx, arg),
        EVTCHNOP_expand_array => expand_array(ctx, arg),
        _ => event_channel_op_2(ctx, cmd, arg),
    };
    // `EVTCHNOP_reset` went back to 2-level: the FIFO frames are no longer used
    // (`evtchn_fifo_destroy`).
    if ctx.events.fifo().is_none() && !ctx.dom.evtchn_frames.is_empty() {
        release_fifo_frames(ctx);
    }
    result
}

/// Drops the references the FIFO frames of the caller hold (`unmap_guest_page`).
fn release_fifo_frames<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>) {
    let frames = core::mem::take(&mut ctx.dom.evtchn_frames);
    let Some((mm, mem)) = ctx.m.mm() else { return };
    let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
    for f in frames {
        pt.put_page_and_type(f);
    }
}

/// `map_guest_page`: frame `gfn` (a machine frame: PV guests are not translated) must be the
/// caller's and take a writable type (not a page table or descriptor page), else -EINVAL; it
/// then holds a general and a writable type reference, recorded in `Domain::evtchn_frames`.
fn take_fifo_frame<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, gfn: u64) -> Result<Mfn, Errno> {
    let id = ctx.dom.id;
    let mfn = Mfn(gfn);
    if ctx.dom.evtchn_frames.is_full() {
        return Err(Errno::ENOMEM);
    }
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::EINVAL);
    };
    let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
    if !pt.mm.frames.mfn_valid(mfn)
        || pt
            .get_page_and_type(mfn, Owner::Domain(id), PageType::Writable)
            .is_err()
    {
        return Err(Errno::EINVAL);
    }
    // Cannot fail: checked not full above.
    let _ = ctx.dom.evtchn_frames.push(mfn);
    Ok(mfn)
}

/// `EVTCHNOP_init_control` (`evtchn_fifo_init_control`): Xen's checks in its order (the
/// argument, -EFAULT; the vCPU, -ENOENT; the offset, -EINVAL; a second block for the vCPU,
/// -EINVAL; the frame, -EINVAL), then the control block is mapped and, for the first one, the
/// domain switches to FIFO. `link_bits` is written back.
fn init_control<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, arg: u64) -> HcResult {
    use hypercall_abi::event_channel::{EvtchnInitControl, EVTCHN_FIFO_LINK_BITS};
    let ptr = GuestPtr::new(arg);
    let mut a: EvtchnInitControl = copy_from_guest(&ctx.guest(), ptr).map_err(|_| Errno::EFAULT)?;
    fifo::check_init_control(ctx.events, a.vcpu, a.offset)?;
    let mfn = take_fifo_frame(ctx, a.control_gfn)?;
    let shared = crate::shared_info::MachineFrame::with_vcpu_info(
        &*ctx.m,
        ctx.dom.shared_info,
        ctx.dom.vcpu_info_map(),
    );
    let block = Maddr(mfn.maddr().0 + u64::from(a.offset));
    fifo::init_control(ctx.events, &shared, a.vcpu, block);
    a.link_bits = EVTCHN_FIFO_LINK_BITS as u8;
    copy_to_guest(&mut ctx.guest(), ptr, &a).map_err(|_| Errno::EFAULT)?;
    Ok(0)
}

/// `EVTCHNOP_expand_array` (`evtchn_fifo_expand_array`): the argument (-EFAULT), FIFO in use
/// (-EOPNOTSUPP), room for a page (-ENOSPC), the frame (-EINVAL); events waiting for the page
/// are raised.
fn expand_array<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, arg: u64) -> HcResult {
    use hypercall_abi::event_channel::EvtchnExpandArray;
    let a: EvtchnExpandArray =
        copy_from_guest(&ctx.guest(), GuestPtr::new(arg)).map_err(|_| Errno::EFAULT)?;
    fifo::check_expand_array(ctx.events)?;
    let mfn = take_fifo_frame(ctx, a.array_gfn)?;
    let kick = with_domain(&mut *ctx.m, ctx.dom, ctx.events, |doms, id| {
        let mut d = doms.get(id)?;
        fifo::add_array_page(&mut d, mfn.maddr())
    });
    if let Some(k) = kick {
        ctx.fx.kicks.add(k.dom);
    }
    Ok(0)
}

/// Every other `EVTCHNOP_*`, over the portable `evtchn` code and every domain.
fn event_channel_op_2<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    let (id, l4, mmu) = (ctx.dom.id, ctx.dom.vcpu().l4, ctx.mmu_usable());
    let m = RefCell::new(&mut *ctx.m);
    let pages = MachinePages {
        m: &m,
        pool: RefCell::new(&mut *ctx.pool),
    };
    // Every domain that exists, shut down ones included: closing a channel to a stopped domain
    // must unbind its end too, or tearing that domain down later would rebind a port of ours
    // that may have been reused meanwhile.
    let mut doms = AllDomains::new(&m, &pages, ctx.dom, &mut *ctx.events, Some(&mut ctx.others));
    let mut guest = SharedGuest { m: &m, l4, mmu };
    let op = crate::ctx::cmd32(cmd);
    let outcome = evtchn::do_event_channel_op(&mut doms, id, &mut guest, op, GuestPtr::new(arg));
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
            if g.dom.vcpus.iter().any(|v| v.poll.is_some()) {
                ctx.fx.kicks.add(g.dom.id);
            }
        }
        // Another vCPU of the caller may be polling (an IPI).
        if ctx.dom.vcpus.iter().any(|v| v.poll.is_some()) {
            ctx.fx.kicks.add(ctx.dom.id);
        }
    }
    outcome.result.map(|()| 0).map_err(|e: Errno| e)
}

/// Runs `f` over `dom` alone, as `evtchn::Domains` sees it (with its id): what the hypervisor's
/// own operations on one domain's channels need. They allocate no port: no page is given.
fn with_domain<M: MachineMemoryMut + ?Sized, R>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    f: impl FnOnce(&mut AllDomains<'_, '_, '_, M>, u16) -> R,
) -> R {
    let m = RefCell::new(m);
    let mut doms = AllDomains::new(&m, &NoPages, dom, ports, None);
    f(&mut doms, dom.id)
}

/// [`with_domain`] for operations that allocate ports, their pages taken from `pool`.
fn with_domain_pages<M: Machine + ?Sized, R>(
    m: &mut M,
    pool: &mut dyn FramePool,
    dom: &Domain,
    ports: &mut PortTable,
    f: impl FnOnce(&mut AllDomains<'_, '_, '_, M>, u16) -> R,
) -> R {
    let m = RefCell::new(m);
    let pages = MachinePages {
        m: &m,
        pool: RefCell::new(pool),
    };
    let mut doms = AllDomains::new(&m, &pages, dom, ports, None);
    f(&mut doms, dom.id)
}

/// Channel pages from the free pool, through the machine ([`Machine::take_xen_page`]).
struct MachinePages<'a, 'm, 'p, M: ?Sized> {
    m: &'a RefCell<&'m mut M>,
    pool: RefCell<&'p mut dyn FramePool>,
}

impl<M: Machine + ?Sized> PortPages for MachinePages<'_, '_, '_, M> {
    fn take_page(&self) -> Option<XenPage> {
        // Each borrow lasts the call: an operation takes a page between its machine accesses.
        let mut pool = self.pool.borrow_mut();
        self.m.borrow_mut().take_xen_page(&mut **pool)
    }
}

/// Makes `ports` the table of a new domain `dom` (Xen's `evtchn_init`): its first page, from
/// `pool`. -ENOMEM when the pool is dry: the domain cannot be built.
pub fn init_ports<M: Machine + ?Sized>(
    m: &mut M,
    pool: &mut dyn FramePool,
    ports: &mut PortTable,
) -> Result<(), Errno> {
    let m = RefCell::new(m);
    let pages = MachinePages {
        m: &m,
        pool: RefCell::new(pool),
    };
    ports.init(&pages)
}

/// Gives the pages of a dead domain's table back to `pool` (its channels were closed: nothing
/// reaches them). Returns how many frames went back.
pub fn release_ports<M: Machine + ?Sized>(
    m: &mut M,
    pool: &mut dyn FramePool,
    ports: &mut PortTable,
) -> usize {
    let frames = ports.take_pages();
    let Some((mm, mem)) = m.mm() else {
        return 0;
    };
    frames
        .iter()
        .filter(|&&f| crate::ctx::give_back_xen_frame(mm, mem, pool, f))
        .count()
}

/// Raises `virq` on the domain's vCPU 0 from the hypervisor (a global VIRQ, ...). The
/// scheduler's pass that follows wakes the vCPU if the upcall became pending (`sched::wake`).
pub fn send_virq<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    virq: u32,
) {
    send_vcpu_virq(m, dom, ports, 0, virq);
}

/// Raises per-vCPU `virq` (`VIRQ_TIMER`, ...) on vCPU `vcpu` of the domain: the port that vCPU
/// bound for it, notifying that vCPU (Xen's `send_guest_vcpu_virq`).
pub fn send_vcpu_virq<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    vcpu: u32,
    virq: u32,
) {
    with_domain(m, dom, ports, |doms, id| {
        let _ = evtchn::send_virq(doms, id, vcpu, virq);
    });
}

/// Raises a global VIRQ (`VIRQ_DOM_EXC`, `VIRQ_CONSOLE`) in dom0, if it exists (Xen's
/// `send_global_virq`: global VIRQs go to the domain that bound them, the control domain here).
pub fn send_global_virq<M: MachineMemoryMut + ?Sized>(m: &mut M, doms: &mut DomainSet, virq: u32) {
    let Some(slot) = doms.slot_of(0) else { return };
    if let Some((g, ports)) = doms.both_mut(slot) {
        send_virq(m, &g.dom, ports, virq);
    }
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
/// domain's xenstore and console channels with `EVTCHNOP_alloc_unbound`); a new page, if the
/// table needs one, comes from `pool`.
pub fn alloc_unbound_for<M: Machine + ?Sized>(
    m: &mut M,
    pool: &mut dyn FramePool,
    dom: &Domain,
    ports: &mut PortTable,
    remote: u16,
) -> Result<u32, Errno> {
    with_domain_pages(m, pool, dom, ports, |doms, id| {
        evtchn::alloc_unbound(doms, id, id, remote)
    })
}

/// Binds `virq` on vCPU 0 of `dom` to a new port (what the domain's own `EVTCHNOP_bind_virq`
/// does; tests use it to watch what the hypervisor raises).
pub fn bind_virq_for<M: Machine + ?Sized>(
    m: &mut M,
    pool: &mut dyn FramePool,
    dom: &Domain,
    ports: &mut PortTable,
    virq: u32,
) -> Result<u32, Errno> {
    with_domain_pages(m, pool, dom, ports, |doms, id| {
        evtchn::bind_virq(doms, id, virq, 0)
    })
}

/// Closes every port of a dying domain (Xen's `evtchn_destroy`): the other end of each
/// interdomain channel becomes unbound again, as on Xen.
pub fn close_all<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    ports: &mut PortTable,
    others: &mut Others<'_>,
) {
    let id = dom.id;
    let m = RefCell::new(m);
    let mut doms = AllDomains::new(&m, &NoPages, dom, ports, Some(others));
    let _ = evtchn::reset(&mut doms, id, id);
}
