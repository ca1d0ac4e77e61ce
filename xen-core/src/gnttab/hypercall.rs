//! `HYPERVISOR_grant_table_op(cmd, uop, count)`: Xen 4.17's `do_grant_table_op` over the
//! portable [`crate::gnttab`].
//!
//! The argument checks come first, in Xen's order: a negative `count` is -EINVAL, so are bits
//! above the command (the continuation argument only `cache_flush` uses), then the array must
//! start in guest space (-EFAULT). The batch operations (map, unmap, copy, swap) return 0 and put
//! a `GNTST_*` status in each element; a fault reading or writing an element ends the batch with
//! -EFAULT (`transfer` too, see [`gnt::transfer_one`]). `setup_table`, `query_size` and
//! `get_status_frames` take exactly one element.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use core::ffi::c_void;
use core::mem::offset_of;

use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::set::Others;
use crate::domain::DomainId;
use crate::gnttab::{self as gnt, GrantTable, GrantTables};
use crate::guest_access::{
    copy_from_guest, copy_to_guest, GuestPtr, PageTableGuest, SlotMmuGuest, SlotOk,
};
use crate::mm::frame_table::Pt;
use crate::mm::{MachineMemoryMut, Mfn};

/// Bits of `cmd` above the command: a continuation's argument (`GNTTABOP_ARG_MASK`).
const GNTTABOP_ARG_MASK: u32 = !0xfff;

/// The caller's table and every other domain's.
struct Tables<'a, 'b> {
    me: DomainId,
    mine: &'a mut GrantTable,
    others: &'a mut Others<'b>,
}

impl GrantTables for Tables<'_, '_> {
    fn table(&mut self, id: DomainId) -> Option<&mut GrantTable> {
        if id == self.me {
            Some(&mut *self.mine)
        } else {
            self.others.grants_mut(id)
        }
    }

    fn ids(&self, out: &mut dyn FnMut(DomainId)) {
        out(self.me);
        for g in self.others.iter() {
            out(g.dom.id);
        }
    }
}

/// Where one call's arguments are read and its results written: [`get`] and [`put`] through
/// the MMU while neither the vCPU (`owes`, fixed for the call) nor the call so far owes TLB work.
struct Args<'s> {
    slot: &'s SlotOk,
    l4: Mfn,
    owes: bool,
}

impl Args<'_> {
    /// [`get`] of one argument.
    fn get<T: FromBytes + IntoBytes>(&self, pt: &mut Pt<'_, '_>, ptr: GuestPtr<T>) -> Option<T> {
        let mmu = !self.owes && !pt.flush.owes_tlb_work();
        get(pt.mem, self.slot, self.l4, mmu, ptr)
    }

    /// [`put`] of one result.
    fn put<T: IntoBytes + Immutable>(
        &self,
        pt: &mut Pt<'_, '_>,
        ptr: GuestPtr<T>,
        v: &T,
    ) -> Option<()> {
        let mmu = !self.owes && !pt.flush.owes_tlb_work();
        put(pt.mem, self.slot, self.l4, mmu, ptr, v)
    }
}

/// `copy_from_guest` of one argument: through the MMU when `mmu` (no TLB work owed, see
/// [`crate::guest_access::MmuGuest`]; the L4 slot's check remembered in `slot`), else by walking the caller's tables.
fn get<T: FromBytes + IntoBytes>(
    mem: &mut dyn MachineMemoryMut,
    slot: &SlotOk,
    l4: Mfn,
    mmu: bool,
    ptr: GuestPtr<T>,
) -> Option<T> {
    let g = SlotMmuGuest {
        walk: PageTableGuest { mem, l4 },
        mmu,
        slot,
    };
    copy_from_guest(&g, ptr).ok()
}

/// `copy_to_guest` of one result, as [`get`].
fn put<T: IntoBytes + Immutable>(
    mem: &mut dyn MachineMemoryMut,
    slot: &SlotOk,
    l4: Mfn,
    mmu: bool,
    ptr: GuestPtr<T>,
    v: &T,
) -> Option<()> {
    let mut g = SlotMmuGuest {
        walk: PageTableGuest { mem, l4 },
        mmu,
        slot,
    };
    copy_to_guest(&mut g, ptr, v).ok()
}

/// `do_grant_table_op`.
pub(crate) fn grant_table_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    uop: u64,
    count: u64,
) -> HcResult {
    let (cmd, count) = (cmd as u32, count as u32);
    if (count as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let opaque = cmd & GNTTABOP_ARG_MASK;
    let cmd = cmd & !GNTTABOP_ARG_MASK;
    if cmd != GNTTABOP_cache_flush && opaque != 0 {
        return Err(Errno::EINVAL);
    }
    let batch = matches!(
        cmd,
        GNTTABOP_map_grant_ref
            | GNTTABOP_unmap_grant_ref
            | GNTTABOP_unmap_and_replace
            | GNTTABOP_copy
            | GNTTABOP_swap_grant_ref
            | GNTTABOP_transfer
    );
    let uop = GuestPtr::<c_void>::new(uop);
    if batch && !uop.okay() {
        return Err(Errno::EFAULT); // `guest_handle_okay`
    }
    if cmd == GNTTABOP_transfer {
        return transfer(ctx, uop.cast(), count);
    }
    match run_op(ctx, cmd, uop, count)? {
        Ran::Done(rc) => Ok(rc),
        // Stopped before element `i` of a batch: the rest is a continuation
        // (`hypercall_create_continuation(__HYPERVISOR_grant_table_op, "ihi", cmd, uop + i,
        // count - i)`).
        Ran::Preempted(i) => {
            let rest = match cmd {
                GNTTABOP_map_grant_ref => uop.cast::<GnttabMapGrantRef>().add(i.into()).va(),
                GNTTABOP_unmap_grant_ref => uop.cast::<GnttabUnmapGrantRef>().add(i.into()).va(),
                GNTTABOP_unmap_and_replace => {
                    uop.cast::<GnttabUnmapAndReplace>().add(i.into()).va()
                }
                GNTTABOP_copy => uop.cast::<GnttabCopy>().add(i.into()).va(),
                _ => uop.cast::<GnttabSwapGrantRef>().add(i.into()).va(),
            };
            ctx.create_continuation(&[u64::from(cmd), rest, u64::from(count - i)])
        }
    }
}

/// The other domains as receivers of a transfer.
struct OtherReceivers<'a, 'b>(&'a mut Others<'b>);

impl gnt::Receivers for OtherReceivers<'_, '_> {
    fn receiver(
        &mut self,
        id: DomainId,
    ) -> Option<(&mut crate::domain::Domain, bool, &mut GrantTable)> {
        self.0
            .with_grants_mut(id)
            .map(|(g, t)| (&mut g.dom, g.destroy, t))
    }
}

/// `GNTTABOP_transfer` (`gnttab_transfer`): a `GNTST_*` status per element (see
/// [`gnt::transfer_one`]); a fault reading an element or writing its status ends the batch with
/// -EFAULT; preempted before element `i` (never the first), the rest continues
/// (`count - i` elements from `uop + i`).
fn transfer<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    uop: GuestPtr<GnttabTransfer>,
    count: u32,
) -> HcResult {
    if ctx.m.mm().is_none() {
        return Err(Errno::ENOSYS);
    }
    for i in 0..count {
        let at = uop.add(i.into());
        if i > 0 && ctx.preempt_check() {
            return ctx.create_continuation(&[
                u64::from(GNTTABOP_transfer),
                at.va(),
                u64::from(count - i),
            ]);
        }
        let op: GnttabTransfer = copy_from_guest(&ctx.guest(), at).map_err(|_| Errno::EFAULT)?;
        let Some((mm, mem)) = ctx.m.mm() else {
            return Err(Errno::ENOSYS);
        };
        let mut others = OtherReceivers(&mut ctx.others);
        let status = gnt::transfer_one(
            mm,
            mem,
            &mut *ctx.pool,
            &mut *ctx.dom,
            &mut *ctx.grants,
            &mut others,
            &op,
        );
        // The TLB flush a steal owes (`gnttab_flush_tlb`) is this call's effect: left only on
        // the vCPU, a way out that sees no effects would return to the guest with the stolen
        // frame still in its TLB.
        let owed = ctx.dom.vcpu_mut().flush.take();
        ctx.fx.flush.merge(&owed);
        let field = at.field(offset_of!(GnttabTransfer, status));
        copy_to_guest(&mut ctx.guest(), field, &status).map_err(|_| Errno::EFAULT)?;
    }
    Ok(0)
}

/// Elements `gnttab_unmap_grant_ref` does between preemption checks
/// (`GNTTAB_UNMAP_BATCH_SIZE`: it unmaps in batches and flushes the TLB once per batch).
const UNMAP_BATCH: u32 = 32;

/// How a grant-table operation ended.
enum Ran {
    /// Finished: the hypercall's result.
    Done(i64),
    /// A batch stopped before element `i`, the CPU being wanted elsewhere.
    Preempted(u32),
}

/// `do_grant_table_op` once its arguments are checked. The batch loops ask
/// `hypercall_preempt_check()` before every element but the first, as Xen's
/// `gnttab_map_grant_ref`, `gnttab_copy` and `gnttab_swap_grant_ref` do (unmap: between batches
/// of [`UNMAP_BATCH`]).
fn run_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u32,
    uop: GuestPtr<c_void>,
    count: u32,
) -> Result<Ran, Errno> {
    // The L4 slot the arguments lie in, checked once for the call's copies through the MMU and
    // kept by the vCPU for its next call (as `mmu_update`'s translation cache keeps it).
    let memo = ctx.dom.vcpu().mmu_slot;
    let (r, memo) = run_op_with(ctx, cmd, uop, count, memo);
    ctx.dom.vcpu_mut().mmu_slot = memo;
    r
}

/// [`run_op`] from the vCPU's L4-slot memo; returns what to keep of it.
#[inline(always)]
fn run_op_with<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u32,
    uop: GuestPtr<c_void>,
    count: u32,
    memo: crate::mm::SlotMemo,
) -> (Result<Ran, Errno>, crate::mm::SlotMemo) {
    let shared_info = ctx.dom.shared_info;
    // The preemption question is asked before every element but the first: a call of one
    // element (most copies, every map of a single grant) never asks it, nor builds its map.
    let (vcpu_info, vcpu) = (
        (count > 1).then(|| ctx.dom.vcpu_info_map()),
        ctx.dom.vcpu_id(),
    );
    let Some((mm, mem, preempt)) = ctx.m.mm_preemptible() else {
        return (Err(Errno::ENOSYS), memo);
    };
    let slot = &SlotOk::resuming(ctx.dom.vcpu().l4, memo, mm.l4_changes());
    // Grant operations take the machine's memory as any memory (`dyn`).
    let mem: &mut dyn MachineMemoryMut = mem;
    let stop = |mem: &dyn MachineMemoryMut, i: u32| {
        i > 0
            && vcpu_info.is_some_and(|vcpu_info| {
                crate::ctx::preempt_check(preempt, mem, shared_info, vcpu_info, vcpu)
            })
    };
    let l4 = ctx.dom.vcpu().l4;
    let me = ctx.dom.id;
    // The frames a table grows into come from the free pool (`gnttab_grow_table`,
    // `gnttab_populate_status_frames`).
    let pool = &mut *ctx.pool;
    let mut alloc = |mem: &mut dyn MachineMemoryMut| pool.take(mem, 0, None);
    let mut tables = Tables {
        me,
        mine: &mut *ctx.grants,
        others: &mut ctx.others,
    };
    // The caller's arguments go through the MMU while neither its vCPU nor this call owes TLB
    // work (`MmuGuest`): the vCPU's debt cannot change during the call, the call's is asked
    // at each copy (a map or unmap may add some).
    let owes = ctx.dom.vcpu().flush.owes_tlb_work();
    let (mut pt, _) = crate::mm::guest_pt::pt(mm, mem, &mut *ctx.dom, &mut ctx.fx.flush);
    let args = Args { slot, l4, owes };
    // The operations, in a closure (their `return`s end it) so that the memo is handed back
    // whichever way they end.
    let r = (|| match cmd {
        GNTTABOP_map_grant_ref => {
            for i in 0..count {
                if stop(pt.mem, i) {
                    return Ok(Ran::Preempted(i));
                }
                let at = uop.cast::<GnttabMapGrantRef>().add(i.into());
                let mut op: GnttabMapGrantRef = args.get(&mut pt, at).ok_or(Errno::EFAULT)?;
                gnt::map_grant_ref(&mut pt, l4, &mut tables, &mut op, &mut alloc);
                args.put(&mut pt, at, &op).ok_or(Errno::EFAULT)?;
            }
            Ok(Ran::Done(0))
        }
        GNTTABOP_unmap_grant_ref => {
            for i in 0..count {
                if i.is_multiple_of(UNMAP_BATCH) && stop(pt.mem, i) {
                    return Ok(Ran::Preempted(i));
                }
                let at = uop.cast::<GnttabUnmapGrantRef>().add(i.into());
                let mut op: GnttabUnmapGrantRef = args.get(&mut pt, at).ok_or(Errno::EFAULT)?;
                gnt::unmap_grant_ref(&mut pt, l4, &mut tables, &mut op);
                // Only `status` is written back.
                let field = at.field(offset_of!(GnttabUnmapGrantRef, status));
                args.put(&mut pt, field, &op.status).ok_or(Errno::EFAULT)?;
            }
            Ok(Ran::Done(0))
        }
        GNTTABOP_unmap_and_replace => {
            for i in 0..count {
                if i.is_multiple_of(UNMAP_BATCH) && stop(pt.mem, i) {
                    return Ok(Ran::Preempted(i));
                }
                let at = uop.cast::<GnttabUnmapAndReplace>().add(i.into());
                let mut op: GnttabUnmapAndReplace = args.get(&mut pt, at).ok_or(Errno::EFAULT)?;
                gnt::unmap_and_replace(&mut pt, l4, &mut tables, &mut op);
                // Only `status` is written back.
                let field = at.field(offset_of!(GnttabUnmapAndReplace, status));
                args.put(&mut pt, field, &op.status).ok_or(Errno::EFAULT)?;
            }
            Ok(Ran::Done(0))
        }
        GNTTABOP_copy => {
            for i in 0..count {
                if stop(pt.mem, i) {
                    return Ok(Ran::Preempted(i));
                }
                let at = uop.cast::<GnttabCopy>().add(i.into());
                let op: GnttabCopy = args.get(&mut pt, at).ok_or(Errno::EFAULT)?;
                let status = gnt::copy(&mut pt, &mut tables, &op);
                let field = at.field(offset_of!(GnttabCopy, status));
                args.put(&mut pt, field, &status).ok_or(Errno::EFAULT)?;
            }
            Ok(Ran::Done(0))
        }
        GNTTABOP_swap_grant_ref => {
            for i in 0..count {
                if stop(pt.mem, i) {
                    return Ok(Ran::Preempted(i));
                }
                let at = uop.cast::<GnttabSwapGrantRef>().add(i.into());
                let op: GnttabSwapGrantRef = args.get(&mut pt, at).ok_or(Errno::EFAULT)?;
                let status = gnt::swap_grant_ref(pt.mem, tables.mine, op.ref_a, op.ref_b);
                let field = at.field(offset_of!(GnttabSwapGrantRef, status));
                args.put(&mut pt, field, &status).ok_or(Errno::EFAULT)?;
            }
            Ok(Ran::Done(0))
        }
        GNTTABOP_setup_table => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let uop = uop.cast::<GnttabSetupTable>();
            let mut op = args.get(&mut pt, uop).ok_or(Errno::EFAULT)?;
            let frame_list = GuestPtr::<u64>::new(op.frame_list);
            if !frame_list.okay() {
                return Err(Errno::EFAULT);
            }
            op.status = match gnt::target_table(&pt, &mut tables, op.dom) {
                Err(s) => s,
                Ok(id) => {
                    match gnt::setup_table(&mut pt, &mut tables, id, op.nr_frames, &mut alloc) {
                        Err(s) => s,
                        Ok(()) => {
                            let mut status = GNTST_okay;
                            for i in 0..op.nr_frames {
                                let mfn = tables
                                    .table(id)
                                    .and_then(|t| t.shared_frames().get(i as usize).copied())
                                    .map_or(0, |m| m.0);
                                if args.put(&mut pt, frame_list.add(i.into()), &mfn).is_none() {
                                    status = GNTST_bad_virt_addr;
                                }
                            }
                            status
                        }
                    }
                }
            };
            let field = uop.field(offset_of!(GnttabSetupTable, status));
            args.put(&mut pt, field, &op.status).ok_or(Errno::EFAULT)?;
            Ok(Ran::Done(0))
        }
        GNTTABOP_query_size => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let uop = uop.cast::<GnttabQuerySize>();
            let mut op = args.get(&mut pt, uop).ok_or(Errno::EFAULT)?;
            match gnt::target_table(&pt, &mut tables, op.dom) {
                Err(s) => op.status = s,
                Ok(id) => {
                    if let Some(t) = tables.table(id) {
                        op.nr_frames = t.nr_frames();
                        op.max_nr_frames = t.max_frames();
                    }
                    op.status = GNTST_okay;
                }
            }
            args.put(&mut pt, uop, &op).ok_or(Errno::EFAULT)?;
            Ok(Ran::Done(0))
        }
        GNTTABOP_set_version => {
            let uop = uop.cast::<GnttabSetVersion>();
            let mut op = args.get(&mut pt, uop).ok_or(Errno::EFAULT)?;
            let before = tables.mine.version();
            let (version, rc) =
                gnt::set_version(pt.mm, pt.mem, tables.mine, me, op.version, &mut alloc);
            if before == 2 && version == 1 {
                // The status frames went back to the hypervisor: a translation of them the
                // caller's TLB may still hold (mapped, then unmapped without a flush) must not
                // outlive them, for the guest or for the copy-out below through the MMU.
                pt.flush.flush_all(pt.perf);
            }
            op.version = version;
            args.put(&mut pt, uop, &op).ok_or(Errno::EFAULT)?;
            rc.map(|()| Ran::Done(0))
        }
        GNTTABOP_get_version => {
            let uop = uop.cast::<GnttabGetVersion>();
            let mut op = args.get(&mut pt, uop).ok_or(Errno::EFAULT)?;
            let id = if op.dom == hypercall_abi::xen::DOMID_SELF {
                me
            } else {
                op.dom
            };
            let version = tables.table(id).ok_or(Errno::ESRCH)?.version();
            if id != me && !pt.caller.privileged {
                return Err(Errno::EPERM);
            }
            op.version = version;
            let field = uop.field(offset_of!(GnttabGetVersion, version));
            args.put(&mut pt, field, &op.version).ok_or(Errno::EFAULT)?;
            Ok(Ran::Done(0))
        }
        GNTTABOP_get_status_frames => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let uop = uop.cast::<GnttabGetStatusFrames>();
            let mut op = args.get(&mut pt, uop).ok_or(Errno::EFAULT)?;
            let frame_list = GuestPtr::<u64>::new(op.frame_list);
            op.status = match gnt::target_table(&pt, &mut tables, op.dom) {
                Err(s) => s,
                Ok(id) => {
                    let frames = tables.table(id).map_or(&[][..], |t| t.status_frames());
                    // "Requested addresses for N grant status frames, but has only M"
                    // (version 1 has none).
                    if op.nr_frames as usize > frames.len() {
                        GNTST_general_error
                    } else {
                        let mut list = [0u64; gnt::MAX_STATUS_FRAMES as usize];
                        for (l, f) in list.iter_mut().zip(frames) {
                            *l = f.0;
                        }
                        let mut status = GNTST_okay;
                        for i in 0..op.nr_frames {
                            let at = frame_list.add(i.into());
                            if args.put(&mut pt, at, &list[i as usize]).is_none() {
                                status = GNTST_bad_virt_addr;
                            }
                        }
                        status
                    }
                }
            };
            let field = uop.field(offset_of!(GnttabGetStatusFrames, status));
            args.put(&mut pt, field, &op.status).ok_or(Errno::EFAULT)?;
            Ok(Ran::Done(0))
        }
        _ => Err(Errno::ENOSYS),
    })();
    let memo = slot.memo(pt.mm.l4_changes());
    (r, memo)
}

/// A domain dies: drops every grant mapping it holds of other domains' frames, and every other
/// domain's mapping of its grants (the grant code clears those PTEs). Returns the domains whose
/// TLBs must be flushed (global entries included) before they run again. Call before the
/// domain's memory is relinquished.
pub fn domain_dying(
    mm: &mut crate::mm::frame_table::Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    dom: &mut crate::domain::Domain,
    mine: &mut GrantTable,
    others: &mut Others<'_>,
) -> heapless::Vec<DomainId, { crate::domain::set::MAX_DOMAINS }> {
    let id = dom.id;
    let caller = dom.info();
    let mut tables = Tables {
        me: id,
        mine,
        others,
    };
    let vcpu = dom.vcpu_mut();
    let mut pt: crate::mm::frame_table::Pt<'_, '_> = crate::mm::frame_table::Pt {
        mm,
        mem,
        perf: &mut vcpu.perf,
        flush: &mut vcpu.flush,
        caller,
    };
    gnt::release_mappings(&mut pt, &mut tables, id);
    let mut flush = heapless::Vec::new();
    gnt::revoke_grants_of(&mut pt, &mut tables, id, &mut |mapper| {
        if !flush.contains(&mapper) {
            let _ = flush.push(mapper);
        }
    });
    flush
}
