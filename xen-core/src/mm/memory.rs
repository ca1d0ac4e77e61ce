//! `memory_op`: a domain's reservation (`increase_reservation`, `decrease_reservation`,
//! `populate_physmap`, `exchange`), the queries about a domain's and the machine's memory, and
//! the way frames a domain gave up go back to the free pool ([`reclaim`]).
//!
//! Xen 4.17's `xen/common/memory.c` for a PV domain, whose frames are machine frames (the p2m is
//! the guest's own; the hypervisor keeps the M2P):
//!
//! - The three reservation operations never fail with an errno: whatever goes wrong (the
//!   argument unreadable, `nr_extents` too large to encode a continuation, no such domain, a
//!   caller that may not act on the target, bad `mem_flags`, an extent list outside guest space,
//!   an order above the caller's limit, an extent that cannot be read, freed or allocated, the
//!   target's `max_pages` reached) stops the operation, and the answer is the number of extents
//!   done. Long ones are preempted and continue with the index in the command word
//!   (`MEMOP_EXTENT_SHIFT`).
//! - A freed page goes back to the pool only when nothing references it any more (Xen's
//!   `guest_remove_page` drops the allocation reference; the last `put_page` frees). A page
//!   still mapped, used as a page table or grant-mapped stays the domain's, counted in its
//!   `tot_pages`, until then; [`reclaim`] finds it once it is free.
//! - Frames handed out are zeroed (Xen scrubs what dying domains freed; a live domain's freed
//!   pages are not scrubbed there, so zeroing every frame handed out is the stricter choice).
//!
//! The command word carries a continuation index above `MEMOP_EXTENT_SHIFT`; Xen refuses a
//! non-zero index with -EINVAL for every command that cannot be continued, and so do we.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_END;
use hypercall_abi::errno::Errno;
use hypercall_abi::memory::*;
use hypercall_abi::xen::DOMID_SELF;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::pool::INVALID_M2P_ENTRY;
use crate::domain::{Domain, DomainId};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};
use crate::mm::frame_alloc::{FramePool, FrameRange};
use crate::mm::frame_table::{FrameInfo, Mm, Owner, Removed};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};
use crate::shared_info::SharedInfoPage;

/// Low bits of the command word: the operation (`MEMOP_CMD_MASK`).
const CMD_MASK: u64 = (1 << 6) - 1;
/// Shift of the continuation index (`MEMOP_EXTENT_SHIFT`).
const EXTENT_SHIFT: u64 = 6;

/// The largest extent order an unprivileged domain may ask for (`CONFIG_DOMU_MAX_ORDER`: 2 MiB).
pub const DOMU_MAX_ORDER: u32 = 9;
/// The largest extent order the control and hardware domain may ask for (`max_order()` of dom0:
/// `ctldom_max_order`, `CONFIG_PAGEALLOC_MAX_ORDER`, capped by `MAX_ORDER`).
pub const CTLDOM_MAX_ORDER: u32 = 20;
/// `MAX_ORDER`: the populate-on-demand limit.
pub const MAX_ORDER: u32 = 20;
/// `MAX_NUMNODES` on x86: a node number in `mem_flags` at or above it is refused.
const MAX_NUMNODES: u32 = 64;

/// `max_order(d)` (`xen/common/memory.c`).
pub fn max_order(d: &Domain) -> u32 {
    if d.privileged {
        CTLDOM_MAX_ORDER
    } else {
        DOMU_MAX_ORDER
    }
}

pub(crate) fn memory_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    let op = (cmd & CMD_MASK) as u32;
    // The whole 64-bit word, as Xen's `unsigned long start_extent = cmd >> MEMOP_EXTENT_SHIFT`.
    let start_extent = cmd >> EXTENT_SHIFT;
    if let XENMEM_increase_reservation | XENMEM_decrease_reservation | XENMEM_populate_physmap = op
    {
        return reservation(ctx, op, start_extent, arg);
    }
    if start_extent != 0 {
        return Err(Errno::EINVAL);
    }
    match op {
        XENMEM_maximum_ram_page => Ok(ctx.info.max_ram_page as i64),
        XENMEM_current_reservation | XENMEM_maximum_reservation | XENMEM_maximum_gpfn => {
            let domid: u16 = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            reclaim_loose(ctx);
            // `rcu_lock_domain_by_any_id`, then `xsm_memory_stat_reservation` (XSM_TARGET).
            let d: &Domain = if domid == DOMID_SELF || domid == ctx.dom.id {
                ctx.dom
            } else {
                let privileged = ctx.dom.privileged;
                let (g, _) = ctx.others.get(domid).ok_or(Errno::ESRCH)?;
                if !privileged {
                    return Err(Errno::EPERM);
                }
                &g.dom
            };
            Ok(match op {
                XENMEM_current_reservation => d.nr_pages as i64,
                XENMEM_maximum_reservation => d.max_pages as i64,
                // A PV guest's highest pfn is what it wrote into shared_info.arch.max_pfn.
                _ => SharedInfoPage::of(&*ctx.m, d.shared_info).arch_max_pfn() as i64,
            })
        }
        XENMEM_exchange => exchange(ctx, arg),
        // A PV domain without a map set by the toolstack has none to report.
        XENMEM_memory_map => Err(Errno::ENOSYS),
        XENMEM_machine_memory_map => {
            if !ctx.dom.privileged {
                return Err(Errno::EPERM);
            }
            let arg = GuestPtr::<XenMemoryMap>::new(arg);
            let mut map = copy_from_guest(&ctx.guest(), arg)?;
            let buffer = GuestPtr::<[u8; 20]>::new(map.buffer);
            let mut entries = [(0u64, 0u64, 0u32); 64];
            let n = ctx.m.e820(&mut entries);
            if (map.nr_entries as usize) < n {
                return Err(Errno::EINVAL);
            }
            for (i, (addr, size, kind)) in entries[..n].iter().enumerate() {
                let mut raw = [0u8; 20];
                raw[..8].copy_from_slice(&addr.to_le_bytes());
                raw[8..16].copy_from_slice(&size.to_le_bytes());
                raw[16..].copy_from_slice(&kind.to_le_bytes());
                copy_to_guest(&mut ctx.guest(), buffer.add(i as u64), &raw)?;
            }
            map.nr_entries = n as u32;
            copy_to_guest(&mut ctx.guest(), arg, &map)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `guest_handle_subrange_okay(h, first, last)` for an array of 8-byte elements: the count fits
/// and the first element's address is guest space (`array_access_ok`, `__addr_ok`).
fn subrange_okay(h: u64, first: u64, last: u64) -> bool {
    let count = last.wrapping_sub(first).wrapping_add(1);
    let start = h.wrapping_add(first.wrapping_mul(8));
    count < u64::MAX / 8 && !(1 << 47..HYPERVISOR_VIRT_END).contains(&start)
}

/// What `construct_memop_from_reservation` and the lookup make of a reservation.
struct Memop {
    /// The target: `None` for the caller itself.
    other: Option<DomainId>,
    /// `MEMF_bits`: every frame below this one.
    limit: Option<Mfn>,
    /// An exact-node request for a node without memory (QEMU's machine has node 0 only).
    no_memory: bool,
}

/// `get_order_from_pages(n)`: the smallest order whose extent holds `n` pages.
fn order_from_pages(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// The checks before the loop, in Xen's order; `None` stops the operation before any extent.
fn memop_from_reservation<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    r: &XenMemoryReservation,
) -> Option<Memop> {
    // `rcu_lock_domain_by_any_id`.
    let other = if r.domid == DOMID_SELF || r.domid == ctx.dom.id {
        None
    } else {
        ctx.others.get(r.domid)?;
        Some(r.domid)
    };
    let mut m = Memop {
        other,
        limit: None,
        no_memory: false,
    };
    let bits = r.mem_flags & 0xff;
    if bits != 0 && bits < order_from_pages(ctx.info.max_ram_page) + 12 {
        if bits <= 12 {
            return None;
        }
        m.limit = Some(Mfn(1 << (bits - 12)));
    }
    // No domain has a virtual NUMA layout, so `XENMEMF_vnode` selects nothing; otherwise
    // `propagate_node`.
    if r.mem_flags & XENMEMF_vnode == 0 {
        let node = (r.mem_flags >> 8).wrapping_sub(1) & 0xff;
        let exact = r.mem_flags & XENMEMF_exact_node_request != 0;
        if node != 0xff {
            if ctx.dom.privileged {
                if node >= MAX_NUMNODES {
                    return None;
                }
                m.no_memory = exact && node != 0;
            } else if exact {
                return None;
            }
        }
    }
    // `xsm_memory_adjust_reservation(XSM_TARGET)`: the caller itself, or the control domain.
    if m.other.is_some() && !ctx.dom.privileged {
        return None;
    }
    Some(m)
}

/// The target domain of a reservation operation.
fn target<'c, M: Machine + ?Sized>(
    ctx: &'c mut Ctx<'_, M>,
    other: Option<DomainId>,
) -> Option<&'c mut Domain> {
    match other {
        None => Some(&mut *ctx.dom),
        Some(id) => ctx.others.get(id).map(|(g, _)| &mut g.dom),
    }
}

/// Whether the target is being destroyed (`d->is_dying`): nothing is allocated to it.
fn dying<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, other: Option<DomainId>) -> bool {
    match other {
        None => false,
        Some(id) => ctx.others.get(id).is_none_or(|(g, _)| g.destroy),
    }
}

/// `alloc_domheap_pages(d, order, memflags)` and `assign_pages`: an extent of `1 << order`
/// zeroed frames for the target, within its `max_pages`; its M2P entries say "no pfn" until
/// the caller sets them.
fn alloc_extent<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, m: &Memop, order: u32) -> Option<Mfn> {
    if m.no_memory || dying(ctx, m.other) {
        return None;
    }
    let n = 1u64 << order;
    let d = target(ctx, m.other)?;
    if d.nr_pages.checked_add(n)? > d.max_pages {
        return None;
    }
    let id = d.id;
    let (mm, mem) = ctx.m.mm()?;
    let first = ctx.pool.take(mem, order, m.limit)?;
    let range = FrameRange {
        start: first,
        end: Mfn(first.0 + n),
    };
    if mm.assign(range, Owner::Domain(id)).is_err() {
        // The frame table disagrees with the pool: keep those frames out of both rather than
        // hand one out twice.
        return None;
    }
    let m2p = mm.cfg.m2p;
    for f in first.0..range.end.0 {
        if mem.zero(Mfn(f).maddr(), 4096).is_none() {
            // A frame that cannot be scrubbed never reaches a guest with its last owner's data:
            // the extent is undone and its frames stay out of the pool.
            let mut perf = crate::domain::PerfCounters::default();
            for g in first.0..range.end.0 {
                mm.frames.put_page(Mfn(g), &mut perf);
                let _ = mm.take_loose(Mfn(g));
            }
            return None;
        }
        let _ = mem.write_u64(Maddr(m2p.0 + f * 8), INVALID_M2P_ENTRY);
    }
    target(ctx, m.other)?.nr_pages += n;
    Some(first)
}

/// A frame nobody uses any more goes back to the pool, its M2P entry invalidated.
fn give_back(mm: &mut Mm<'_>, mem: &mut dyn MachineMemoryMut, pool: &mut dyn FramePool, mfn: Mfn) {
    mm.give_back(mem, pool, mfn);
}

/// Returns every loose frame (given to a domain by the pool, freed since) to the pool: all of
/// them, or only those given to `only`. `freed(id)` is called once per frame with the domain it
/// had been given to. Returns how many went back. Without `only`, the frames the frame table
/// queued as they became loose are looked at, and the whole table only when the queue
/// overflowed: the cost is what there is to take back, not the machine's size.
pub fn reclaim(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    pool: &mut dyn FramePool,
    only: Option<DomainId>,
    freed: &mut dyn FnMut(DomainId),
) -> u64 {
    let mut n = 0;
    let mut take = |mm: &mut Mm<'_>, mem: &mut dyn MachineMemoryMut, m: Mfn| {
        let Some(f) = mm.frames.get(m) else {
            return;
        };
        let given = f.given_to();
        if f.loose() && (only.is_none() || given == only) {
            give_back(mm, mem, pool, m);
            if let Some(id) = given {
                freed(id);
            }
            n += 1;
        }
    };
    let queued = if only.is_none() {
        mm.frames.take_loose_queue()
    } else {
        None
    };
    match queued {
        Some(queue) => {
            for m in queue {
                take(mm, mem, m);
            }
        }
        None => {
            for m in 0..mm.frames.max_ram_page() {
                take(mm, mem, Mfn(m));
            }
        }
    }
    n
}

/// Takes back what became free of the pages domains gave up while still referenced (their
/// `tot_pages` go down only now, as in Xen, where the last `put_page` frees). Runs only while
/// such pages exist.
fn reclaim_loose<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>) {
    let Some((mm, mem)) = ctx.m.mm() else {
        return;
    };
    if !mm.frames.loose_pending() {
        return;
    }
    let me = &mut *ctx.dom;
    let others = &mut ctx.others;
    let freed = reclaim(mm, mem, &mut *ctx.pool, None, &mut |id| {
        let d = if id == me.id {
            Some(&mut *me)
        } else {
            others.get(id).map(|(g, _)| &mut g.dom)
        };
        if let Some(d) = d {
            d.nr_pages = d.nr_pages.saturating_sub(1);
        }
    });
    if freed > 0 {
        // A guest may still hold a TLB entry for a page it unmapped (a PTE cleared by
        // `mmu_update` flushes nothing): none may survive to the moment the frame can be handed
        // out again. One CPU: one full flush before any guest runs covers every such entry (Xen
        // flushes the CPUs whose TLB may hold a freed page before reusing it).
        let v = ctx.dom.vcpu_mut();
        v.flush.flush_all(&mut v.perf);
    }
}

/// `XENMEM_increase_reservation`, `decrease_reservation`, `populate_physmap`: returns the
/// number of extents done (see the module comment).
fn reservation<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    op: u32,
    start: u64,
    arg: u64,
) -> HcResult {
    let done = Ok(start as i64);
    let Ok(r) = copy_from_guest::<XenMemoryReservation>(&ctx.guest(), GuestPtr::new(arg)) else {
        return done;
    };
    // Is it too large for us to encode a continuation?
    if r.nr_extents > u64::from(u32::MAX >> EXTENT_SHIFT) || start >= r.nr_extents {
        return done;
    }
    let Some(m) = memop_from_reservation(ctx, &r) else {
        return done;
    };
    reclaim_loose(ctx);
    let list = GuestPtr::<u64>::new(r.extent_start);
    let order = r.extent_order;
    let last = r.nr_extents - 1;
    let pod = op == XENMEM_populate_physmap && r.mem_flags & XENMEMF_populate_on_demand != 0;
    let order_ok = match op {
        XENMEM_populate_physmap if pod => order <= MAX_ORDER,
        _ => order <= max_order(ctx.dom),
    };
    let list_ok = match op {
        XENMEM_increase_reservation => list.is_null() || subrange_okay(list.va(), start, last),
        _ => subrange_okay(list.va(), start, last),
    };
    if !list_ok || !order_ok {
        return done;
    }
    let mut i = start;
    while i < r.nr_extents {
        if i != start && ctx.preempt_check() {
            return ctx.create_continuation(&[u64::from(op) | (i << EXTENT_SHIFT), arg]);
        }
        let ok = match op {
            XENMEM_increase_reservation => increase_one(ctx, &m, order, list, i),
            XENMEM_decrease_reservation => decrease_one(ctx, &m, order, list, i),
            _ => populate_one(ctx, &m, order, pod, list, i),
        };
        if !ok {
            break;
        }
        i += 1;
    }
    Ok(i as i64)
}

/// One extent of `increase_reservation`: allocated, and its first frame written to the list
/// unless the list is null (the frames stay the target's even if that write fails).
fn increase_one<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    m: &Memop,
    order: u32,
    list: GuestPtr<u64>,
    i: u64,
) -> bool {
    let Some(mfn) = alloc_extent(ctx, m, order) else {
        return false;
    };
    list.is_null() || copy_to_guest(&mut ctx.guest(), list.add(i), &mfn.0).is_ok()
}

/// One extent of `populate_physmap`: the pfn read from the list, an extent allocated, the M2P
/// entries set to its pfns (`set_gpfn_from_mfn`), its first frame written back over the pfn.
fn populate_one<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    m: &Memop,
    order: u32,
    pod: bool,
    list: GuestPtr<u64>,
    i: u64,
) -> bool {
    let Ok(gpfn) = copy_from_guest(&ctx.guest(), list.add(i)) else {
        return false;
    };
    if pod {
        // Never on oneself; for another PV domain Xen has nothing to mark and counts it done.
        return m.other.is_some();
    }
    let Some(mfn) = alloc_extent(ctx, m, order) else {
        return false;
    };
    if let Some((mm, mem)) = ctx.m.mm() {
        let m2p = mm.cfg.m2p;
        for j in 0..1u64 << order {
            let _ = mem.write_u64(Maddr(m2p.0 + (mfn.0 + j) * 8), gpfn.wrapping_add(j));
        }
    }
    copy_to_guest(&mut ctx.guest(), list.add(i), &mfn.0).is_ok()
}

/// One extent of `decrease_reservation`: each of its frames removed with `guest_remove_page`;
/// the first that cannot be stops the operation (the frames before it stay removed, as in Xen).
fn decrease_one<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    m: &Memop,
    order: u32,
    list: GuestPtr<u64>,
    i: u64,
) -> bool {
    let Ok(gmfn) = copy_from_guest::<u64>(&ctx.guest(), list.add(i)) else {
        return false;
    };
    let Some(id) = target(ctx, m.other).map(|d| d.id) else {
        return false;
    };
    for j in 0..1u64 << order {
        let mfn = Mfn(gmfn.wrapping_add(j));
        let Some((mm, mem)) = ctx.m.mm() else {
            return false;
        };
        match mm.guest_remove_page(mfn, id, &mut ctx.dom.vcpu_mut().perf) {
            Ok(Removed::Freed) => {
                give_back(mm, mem, &mut *ctx.pool, mfn);
                // The caller may still hold a TLB entry for the page it unmapped: none survives
                // its return, so the frame is not reachable once it can be handed out again.
                let v = ctx.dom.vcpu_mut();
                v.flush.flush_all(&mut v.perf);
                if let Some(d) = target(ctx, m.other) {
                    d.nr_pages = d.nr_pages.saturating_sub(1);
                }
            }
            Ok(Removed::StillReferenced) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Most frames one chunk of `XENMEM_exchange` may take in (and extents it may hand out): a
/// chunk is `1 << max(in.extent_order, out.extent_order)` frames, which is at most 512 for a
/// domU (`DOMU_MAX_ORDER`); only dom0 can ask for more, and is answered -ENOMEM (see below).
pub const EXCHANGE_CHUNK_MAX: usize = 512;

/// The offset of `nr_exchanged` in `xen_memory_exchange`.
const NR_EXCHANGED_OFFSET: u64 = 64;

/// `XENMEM_exchange` (Xen 4.17's `memory_exchange`): the caller gives up `in.nr_extents` extents
/// of `1 << in.extent_order` frames of the target (itself, or any domain for dom0) and gets
/// `out.nr_extents` extents of `1 << out.extent_order` new frames, the same number of pages,
/// chunk by chunk (a chunk is one extent of the larger order). Per chunk: each input frame is
/// stolen (`steal_page`: the target's, allocated, referenced by nothing else; -EINVAL otherwise),
/// the output extents are allocated (-ENOMEM), and only then are the input frames freed and the
/// output ones given to the target, their M2P entries set to the pfns read from the out list
/// and their first frames written over them. A failed chunk gives its stolen frames back;
/// `nr_exchanged` then says how many input extents the chunks before it exchanged. The target's
/// page count does not move. Preempted between chunks, with `nr_exchanged` written back.
///
/// Deviation: a chunk of more than [`EXCHANGE_CHUNK_MAX`] frames (an order above 9, dom0
/// only) fails with -ENOMEM before any frame is taken, where Xen would perform it.
fn exchange<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, arg: u64) -> HcResult {
    let argp = GuestPtr::<XenMemoryExchange>::new(arg);
    let exch = copy_from_guest(&ctx.guest(), argp)?;
    let (r, nr_exchanged) = exchange_chunks(ctx, &exch, arg);
    let Some(n) = nr_exchanged else {
        return r;
    };
    // `__copy_field_to_guest(arg, &exch, nr_exchanged)`.
    let field = GuestPtr::<u64>::new(arg.wrapping_add(NR_EXCHANGED_OFFSET));
    if copy_to_guest(&mut ctx.guest(), field, &n).is_err() {
        return Err(Errno::EFAULT);
    }
    r
}

/// The body of [`exchange`]: its result, and the `nr_exchanged` to write back (`None`: the call
/// returns without writing it, as Xen's early `return 0` and continuation paths).
fn exchange_chunks<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    exch: &XenMemoryExchange,
    arg: u64,
) -> (HcResult, Option<u64>) {
    let (inr, out) = (&exch.r#in, &exch.out);
    let early = |e: Errno| (Err(e), Some(exch.nr_exchanged));
    if inr.extent_order.max(out.extent_order) > max_order(ctx.dom) {
        return early(Errno::EPERM);
    }
    let (in_order, out_order) = (inr.extent_order, out.extent_order);
    if exch.nr_exchanged > inr.nr_extents
        || inr.domid != out.domid
        || (u64::MAX >> in_order) < inr.nr_extents
        || (u64::MAX >> out_order) < out.nr_extents
        || (inr.nr_extents << in_order) != (out.nr_extents << out_order)
    {
        return early(Errno::EINVAL);
    }
    if exch.nr_exchanged == inr.nr_extents {
        return (Ok(0), None);
    }
    if !subrange_okay(inr.extent_start, exch.nr_exchanged, inr.nr_extents - 1) {
        return early(Errno::EFAULT);
    }
    let (in_chunk_order, out_chunk_order) = if in_order <= out_order {
        (out_order - in_order, 0)
    } else {
        (0, in_order - out_order)
    };
    let out_first = if in_chunk_order > 0 {
        exch.nr_exchanged >> in_chunk_order
    } else {
        exch.nr_exchanged << out_chunk_order
    };
    // `out.nr_extents` is not 0 here: the sizes match and `in.nr_extents` is not 0.
    if !subrange_okay(out.extent_start, out_first, out.nr_extents - 1) {
        return early(Errno::EFAULT);
    }
    // Xen 4.17 does not refuse an `nr_exchanged` inside a chunk: the chunk it falls in is
    // exchanged from its start.
    // `rcu_lock_domain_by_any_id`, then `xsm_memory_exchange(XSM_TARGET)`.
    let other = if inr.domid == DOMID_SELF || inr.domid == ctx.dom.id {
        None
    } else if ctx.others.get(inr.domid).is_none() {
        return early(Errno::ESRCH);
    } else {
        Some(inr.domid)
    };
    if other.is_some() && !ctx.dom.privileged {
        return early(Errno::EPERM);
    }
    // `MEMF_bits` of `out.mem_flags` (the node is only a preference).
    let bits = out.mem_flags & 0xff;
    let limit = match bits {
        0 => None,
        b if b >= 64 + 12 => None,
        b => Some(Mfn(1 << (b.max(13) - 12))),
    };
    reclaim_loose(ctx);
    let ins = GuestPtr::<u64>::new(inr.extent_start);
    let outs = GuestPtr::<u64>::new(out.extent_start);
    let first = exch.nr_exchanged >> in_chunk_order;
    let chunks = inr.nr_extents >> in_chunk_order;
    let mut i = first;
    while i < chunks {
        if i != first && ctx.preempt_check() {
            let n = i << in_chunk_order;
            let field = GuestPtr::<u64>::new(arg.wrapping_add(NR_EXCHANGED_OFFSET));
            if copy_to_guest(&mut ctx.guest(), field, &n).is_err() {
                return (Err(Errno::EFAULT), None);
            }
            return (
                ctx.create_continuation(&[u64::from(XENMEM_exchange), arg]),
                None,
            );
        }
        let chunk = Chunk {
            other,
            limit,
            in_order,
            out_order,
            in_chunk_order,
            out_chunk_order,
            ins,
            outs,
        };
        if let Err(e) = exchange_chunk(ctx, &chunk, i) {
            return (Err(e), Some(i << in_chunk_order));
        }
        i += 1;
    }
    (Ok(0), Some(inr.nr_extents))
}

/// What every chunk of one exchange shares.
struct Chunk {
    other: Option<DomainId>,
    limit: Option<Mfn>,
    in_order: u32,
    out_order: u32,
    in_chunk_order: u32,
    out_chunk_order: u32,
    ins: GuestPtr<u64>,
    outs: GuestPtr<u64>,
}

/// One chunk of [`exchange`]: all of it, or (with its error) nothing but what Xen also leaves
/// done (an output extent whose pfn could not be read stays the target's, unnamed).
fn exchange_chunk<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    c: &Chunk,
    i: u64,
) -> Result<(), Errno> {
    let Some(id) = target(ctx, c.other).map(|d| d.id) else {
        return Err(Errno::ESRCH);
    };
    if 1usize << c.in_order.max(c.out_order) > EXCHANGE_CHUNK_MAX {
        return Err(Errno::ENOMEM);
    }
    // Steal a chunk's worth of input frames.
    let mut stolen: heapless::Vec<(Mfn, FrameInfo), EXCHANGE_CHUNK_MAX> = heapless::Vec::new();
    let mut taken: heapless::Vec<Mfn, EXCHANGE_CHUNK_MAX> = heapless::Vec::new();
    let r = (|| {
        for j in 0..1u64 << c.in_chunk_order {
            let gmfn: u64 = copy_from_guest(&ctx.guest(), c.ins.add((i << c.in_chunk_order) + j))
                .map_err(|_| Errno::EFAULT)?;
            for k in 0..1u64 << c.in_order {
                let mfn = Mfn(gmfn.wrapping_add(k));
                let (mm, _) = ctx.m.mm().ok_or(Errno::EINVAL)?;
                let saved = mm.steal_page(mfn, id)?;
                // Cannot overflow: the chunk holds at most `EXCHANGE_CHUNK_MAX` frames.
                let _ = stolen.push((mfn, saved));
            }
        }
        // Allocate a chunk's worth of output extents, owned by nobody yet.
        if dying(ctx, c.other) {
            return Err(Errno::ENOMEM);
        }
        for _ in 0..1u64 << c.out_chunk_order {
            let (_, mem) = ctx.m.mm().ok_or(Errno::ENOMEM)?;
            let first = ctx
                .pool
                .take(mem, c.out_order, c.limit)
                .ok_or(Errno::ENOMEM)?;
            let _ = taken.push(first);
        }
        Ok(())
    })();
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::EINVAL);
    };
    if let Err(e) = r {
        // Give the stolen frames back, and the output frames to the pool.
        for (mfn, saved) in stolen {
            mm.unsteal_page(mfn, saved);
        }
        for first in taken {
            for f in 0..1u64 << c.out_order {
                ctx.pool.give_back(mem, Mfn(first.0 + f));
            }
        }
        return Err(e);
    }
    // Beyond this point the chunk cannot fail. The input frames go back to the pool; the caller
    // may still hold a TLB entry for one it unmapped: none survives its return.
    for &(mfn, _) in &stolen {
        give_back(mm, mem, &mut *ctx.pool, mfn);
    }
    let v = ctx.dom.vcpu_mut();
    v.flush.flush_all(&mut v.perf);
    // Each output extent becomes the target's: zeroed, its M2P entries the pfns from the list,
    // its first frame written over the pfn.
    let mut rc = Ok(());
    for (j, &first) in taken.iter().enumerate() {
        let Some((mm, mem)) = ctx.m.mm() else {
            return Err(Errno::EINVAL);
        };
        let n = 1u64 << c.out_order;
        let range = FrameRange {
            start: first,
            end: Mfn(first.0 + n),
        };
        if mm.assign(range, Owner::Domain(id)).is_err() {
            // The frame table disagrees with the pool: keep those frames out of both.
            rc = Err(Errno::ENOMEM);
            continue;
        }
        for f in first.0..range.end.0 {
            let _ = mem.zero(Mfn(f).maddr(), 4096);
            let _ = mem.write_u64(Maddr(mm.cfg.m2p.0 + f * 8), INVALID_M2P_ENTRY);
        }
        let at = c.outs.add((i << c.out_chunk_order) + j as u64);
        let Ok(gpfn) = copy_from_guest::<u64>(&ctx.guest(), at) else {
            rc = Err(Errno::EFAULT);
            continue;
        };
        if let Some((mm, mem)) = ctx.m.mm() {
            let m2p = mm.cfg.m2p;
            for f in 0..n {
                let _ = mem.write_u64(Maddr(m2p.0 + (first.0 + f) * 8), gpfn.wrapping_add(f));
            }
        }
        if copy_to_guest(&mut ctx.guest(), at, &first.0).is_err() {
            rc = Err(Errno::EFAULT);
        }
    }
    rc
}

#[cfg(test)]
mod exchange_tests;
#[cfg(test)]
mod tests;
