//! The page-table hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping` and
//! `update_va_mapping_otherdomain`, with Xen 4.17's semantics (`do_mmu_update`, `do_mmuext_op`,
//! `__do_update_va_mapping` in `xen/arch/x86/mm.c`).
//!
//! Batches run in order and stop at the first failure; `*pdone` (when the guest passes one)
//! receives the number of entries completed. Every entry is validated against the frame table
//! before it takes effect. TLB flushes and CR3 loads are recorded in the vCPU's
//! [`FlushRequest`](crate::domain::FlushRequest) for the arch layer, once per batch where Xen
//! flushes once per batch. Xen's privilege checks are those of its default (dummy) XSM policy:
//! a domain may act on itself; a privileged domain on anyone.
//!
//! A batch may be long (a list aliased through page tables can name millions of elements), so it
//! is preemptible as in Xen: before every element but the first, `do_mmu_update` and
//! `do_mmuext_op` ask `hypercall_preempt_check()` and, if the CPU is wanted, stop, add the
//! elements done to `*pdone`, and continue later with the rest
//! (`hypercall_create_continuation(op, "hihi", list + i, (count - i) | MMU_UPDATE_PREEMPTED,
//! pdone, foreigndom)`): at top level the arch layer re-executes the guest's `syscall`, inside a
//! multicall the entry is rewritten. Bit 31 of `count` (`MMU_UPDATE_PREEMPTED`) marks a
//! continuation, and a guest that sets it itself gets what Xen gives it: the count without the
//! bit, `*pdone` read back as the starting value, and, for a null list with exactly that count,
//! `foreigndom` returned as the result.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use core::mem::size_of;

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::{Domain, DomainInfo};
use crate::guest_access::{
    copy_from_guest, copy_to_guest, guest_va_ok, is_canonical, PageTableGuest,
};
use crate::hypercall::{Ctx, HcResult, Machine};
use crate::mm::frame_table::{pte, Mm, Owner, PageType, Pt};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Bit 31 of `count`: a continuation of a preempted call.
const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;
/// `UVMF_ALL` in the bits above the flush type.
const UVMF_ALL_BITS: u64 = UVMF_ALL;
/// Largest LDT a guest may install (`MMUEXT_SET_LDT`: 8192 entries).
const MAX_LDT_ENTS: u32 = 8192;

/// Where a batch's elements come from: the guest's array (the hypercall path) or, for host tests
/// that drive the handlers directly, a slice.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Batch<'s, T> {
    /// A guest virtual address.
    Guest(u64),
    /// Elements supplied by the caller.
    #[cfg_attr(not(test), allow(dead_code))]
    Slice(&'s [T]),
}

impl<T: FromBytes + IntoBytes + Copy> Batch<'_, T> {
    /// `guest_handle_is_null`.
    fn is_null(&self) -> bool {
        matches!(self, Batch::Guest(0))
    }

    /// `guest_handle_okay`: the array starts inside guest address space (Xen's `__addr_ok`
    /// checks the start only; each element is checked when it is copied).
    fn okay(&self) -> bool {
        match *self {
            Batch::Guest(va) => guest_va_ok(va),
            Batch::Slice(_) => true,
        }
    }

    /// Element `i` (`__copy_from_guest`).
    fn get(&self, mem: &mut dyn MachineMemoryMut, l4: Mfn, i: u32) -> Result<T, Errno> {
        match *self {
            Batch::Guest(va) => {
                let at = va.wrapping_add(u64::from(i) * size_of::<T>() as u64);
                read_guest(mem, l4, at)
            }
            Batch::Slice(s) => s.get(i as usize).copied().ok_or(Errno::EFAULT),
        }
    }
}

fn read_guest<T: FromBytes + IntoBytes>(
    mem: &mut dyn MachineMemoryMut,
    l4: Mfn,
    va: u64,
) -> Result<T, Errno> {
    Ok(copy_from_guest(&PageTableGuest { mem, l4 }, va)?)
}

fn write_guest<T: IntoBytes + Immutable>(
    mem: &mut dyn MachineMemoryMut,
    l4: Mfn,
    va: u64,
    v: &T,
) -> Result<(), Errno> {
    Ok(copy_to_guest(&mut PageTableGuest { mem, l4 }, va, v)?)
}

/// `get_pg_owner`: whose pages a call may map. `DOMID_SELF` is the caller; the caller's own id is
/// refused ("Cannot specify itself as foreign domain"); `DOMID_IO` and `DOMID_XEN` name I/O and
/// hypervisor memory; anything else must be an existing domain.
fn get_pg_owner(mm: &Mm<'_>, curr: DomainInfo, domid: u16) -> Option<Owner> {
    if domid == DOMID_SELF {
        return Some(Owner::Domain(curr.id));
    }
    if domid == curr.id {
        return None;
    }
    match domid {
        DOMID_IO => Some(Owner::Io),
        DOMID_XEN => Some(Owner::Xen),
        id => mm.domain(id).map(|d| Owner::Domain(d.id)),
    }
}

/// `xsm_default_action(XSM_TARGET, d, t)` of the dummy XSM policy: a domain may act on itself,
/// a privileged (control) domain on anything.
fn xsm_target(d: DomainInfo, t: Owner) -> Result<(), Errno> {
    if t == Owner::Domain(d.id) || d.privileged {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// Splits the context into what the handlers need at once: the frame-table context (which
/// borrows the caller's counters and flush request) and the rest of the domain.
pub(crate) fn pt<'a>(
    mm: &'a mut Mm<'static>,
    mem: &'a mut dyn MachineMemoryMut,
    dom: &'a mut Domain,
) -> (Pt<'a, 'static>, DomainParts<'a>) {
    let caller = dom.info();
    let Domain { l4, vcpu, .. } = dom;
    let crate::domain::Vcpu {
        perf,
        flush,
        user_l4,
        ldt_base,
        ldt_ents,
        ..
    } = vcpu;
    (
        Pt {
            mm,
            mem,
            perf,
            flush,
            caller,
        },
        DomainParts {
            l4,
            user_l4,
            ldt_base,
            ldt_ents,
        },
    )
}

/// The parts of the calling domain `mmuext_op` changes besides counters and flushes.
pub(crate) struct DomainParts<'a> {
    l4: &'a mut Mfn,
    user_l4: &'a mut Option<Mfn>,
    ldt_base: &'a mut u64,
    ldt_ents: &'a mut u32,
}

/// Reads `*pdone` when continuing (bit 31 of `count`); a bad pointer reads as 0.
/// How a batch hypercall starts: the shared preamble of `do_mmu_update` and `do_mmuext_op`.
enum BatchStart {
    /// Nothing to do: return this.
    Finished(i64),
    /// Process `count` entries, `done` of them already done by earlier (continued) calls.
    Run { count: u32, done: u32 },
}

/// The preamble both batch hypercalls share (as in Xen): bit 31 of `count` marks a continuation,
/// whose `*pdone` says how far the earlier call got (with a null list and exactly that bit, Xen
/// hands back `foreigndom`); then the list must lie in guest space.
fn batch_start<T: FromBytes + IntoBytes + Copy>(
    mem: &mut dyn MachineMemoryMut,
    guest_l4: Mfn,
    batch: &Batch<'_, T>,
    count: u32,
    pdone: u64,
    foreigndom: u32,
) -> Result<BatchStart, Errno> {
    if count == MMU_UPDATE_PREEMPTED && batch.is_null() {
        return Ok(BatchStart::Finished(i64::from(foreigndom as i32)));
    }
    let (count, done) = if count & MMU_UPDATE_PREEMPTED != 0 {
        (
            count & !MMU_UPDATE_PREEMPTED,
            continued_done(mem, guest_l4, pdone),
        )
    } else {
        (count, 0)
    };
    if !batch.okay() {
        return Err(Errno::EFAULT);
    }
    Ok(BatchStart::Run { count, done })
}

fn continued_done(mem: &mut dyn MachineMemoryMut, l4: Mfn, pdone: u64) -> u32 {
    if pdone == 0 {
        return 0;
    }
    read_guest::<u32>(mem, l4, pdone).unwrap_or(0)
}

/// Writes `*pdone` if the guest passed a pointer; Xen ignores a failure to write it.
fn write_done(mem: &mut dyn MachineMemoryMut, l4: Mfn, pdone: u64, done: u32) {
    if pdone != 0 {
        let _ = write_guest(mem, l4, pdone, &done);
    }
}

fn status(rc: Result<(), Errno>) -> HcResult {
    rc.map(|()| 0)
}

// ---------------------------------------------------------------------------------------------
// mmu_update

/// `HYPERVISOR_mmu_update(reqs, count, pdone, foreigndom)`.
pub(crate) fn mmu_update<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    ureqs: u64,
    count: u64,
    pdone: u64,
    foreigndom: u64,
) -> HcResult {
    // `count` and `foreigndom` are `unsigned int`.
    do_mmu_update(
        ctx,
        Batch::Guest(ureqs),
        count as u32,
        pdone,
        foreigndom as u32,
    )
}

/// Asks for the rest of a batch stopped before element `i` of `count` as a continuation: the
/// list advanced by `i` elements, the rest of the count marked `MMU_UPDATE_PREEMPTED` (so that
/// `*pdone`, which now holds the elements done, is read back), `pdone` and `foreigndom` as they
/// were. Only a guest list can be continued; a test's slice is never preempted.
fn continue_batch<M: Machine + ?Sized, T>(
    ctx: &mut Ctx<'_, M>,
    batch: &Batch<'_, T>,
    stopped: Option<u32>,
    count: u32,
    pdone: u64,
    foreigndom: u32,
) {
    if let (Some(i), Batch::Guest(list)) = (stopped, batch) {
        let size = size_of::<T>() as u64;
        let _ = ctx.create_continuation(&[
            list.wrapping_add(u64::from(i) * size),
            u64::from((count - i) | MMU_UPDATE_PREEMPTED),
            pdone,
            u64::from(foreigndom),
        ]);
    }
}

/// What a batch loop asks between elements: whether to stop (see [`crate::hypercall::preempt_check`]).
/// `None` for a test's slice, which is never preempted.
#[derive(Clone, Copy)]
struct Stop<'p> {
    preempt: Option<&'p dyn crate::hypercall::Preempt>,
    shared_info: Mfn,
}

impl Stop<'_> {
    fn now(&self, mem: &dyn MachineMemoryMut) -> bool {
        self.preempt
            .is_some_and(|p| crate::hypercall::preempt_check(p, mem, self.shared_info))
    }
}

/// `do_mmu_update` over any [`Batch`].
pub(crate) fn do_mmu_update<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    reqs: Batch<'_, MmuUpdate>,
    count: u32,
    pdone: u64,
    foreigndom: u32,
) -> HcResult {
    let shared_info = ctx.dom.shared_info;
    let Some((mm, mem, preempt)) = ctx.m.mm_preemptible() else {
        return Err(Errno::ENOSYS);
    };
    let stop = Stop {
        preempt: matches!(reqs, Batch::Guest(_)).then_some(preempt),
        shared_info,
    };
    let guest_l4 = ctx.dom.l4;
    let curr = ctx.dom.info();
    let (count, done) = match batch_start(mem, guest_l4, &reqs, count, pdone, foreigndom)? {
        BatchStart::Finished(rc) => return Ok(rc),
        BatchStart::Run { count, done } => (count, done),
    };
    // The upper half of foreigndom names the page tables' owner, plus one (0 = the caller).
    let pt_dom = foreigndom >> 16;
    let pt_owner = if pt_dom != 0 {
        match mm.domain((pt_dom - 1) as u16) {
            Some(d) => d,
            None => return Err(Errno::ESRCH),
        }
    } else {
        curr
    };
    let (rc, i, stopped) = match get_pg_owner(mm, curr, foreigndom as u16) {
        None => (Err(Errno::ESRCH), 0, false),
        Some(pg_owner) => {
            let (mut pt, _) = pt(mm, &mut *mem, &mut *ctx.dom);
            mmu_update_loop(&mut pt, reqs, count, guest_l4, pt_owner, pg_owner, stop)
        }
    };
    write_done(mem, guest_l4, pdone, done.wrapping_add(i));
    continue_batch(ctx, &reqs, stopped.then_some(i), count, pdone, foreigndom);
    status(rc)
}

/// The request loop of `do_mmu_update`; returns the outcome, how many requests completed, and
/// whether it stopped for preemption before request `i` (the outcome is then `Ok`).
fn mmu_update_loop(
    pt: &mut Pt<'_, '_>,
    reqs: Batch<'_, MmuUpdate>,
    count: u32,
    guest_l4: Mfn,
    pt_owner: DomainInfo,
    pg_owner: Owner,
    stop: Stop<'_>,
) -> (Result<(), Errno>, u32, bool) {
    let mut flush_linear_pt = false;
    let mut rc = Ok(());
    let mut i = 0;
    let mut stopped = false;
    while i < count {
        // `if ( curr->arch.old_guest_table || (i && hypercall_preempt_check()) )`.
        if i > 0 && stop.now(pt.mem) {
            stopped = true;
            break;
        }
        let req = match reqs.get(pt.mem, guest_l4, i) {
            Ok(r) => r,
            Err(e) => {
                rc = Err(e);
                break;
            }
        };
        // The command is in the low bits of the pointer: `req.ptr & (sizeof(l1_pgentry_t) - 1)`.
        let cmd = req.ptr & 7;
        let r = match cmd {
            MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD | MMU_PT_UPDATE_NO_TRANSLATE => {
                normal_pt_update(pt, req, cmd, pt_owner, pg_owner, &mut flush_linear_pt)
            }
            MMU_MACHPHYS_UPDATE => machphys_update(pt, req, pt_owner, pg_owner),
            _ => Err(Errno::ENOSYS),
        };
        if let Err(e) = r {
            rc = Err(e);
            break;
        }
        i += 1;
    }
    // Changes to L2..L4 tables that are in use (not merely pinned) must not leave stale
    // paging-structure caches behind: one flush for the whole batch (XSA-286).
    if flush_linear_pt {
        pt.flush.flush_all(pt.perf);
    }
    pt.perf.page_updates += u64::from(i);
    (rc, i, stopped)
}

/// `MMU_NORMAL_PT_UPDATE` (and `PRESERVE_AD`, and `NO_TRANSLATE`, which is the same for a PV
/// guest): `*ptr = val` for a page-table entry, validated; or a plain write when `ptr` is in an
/// ordinary page the guest may write anyway.
fn normal_pt_update(
    pt: &mut Pt<'_, '_>,
    req: MmuUpdate,
    cmd: u64,
    pt_owner: DomainInfo,
    pg_owner: Owner,
    flush_linear_pt: &mut bool,
) -> Result<(), Errno> {
    // `xsm_mmu_update`: the caller must be allowed to act on both owners.
    if pg_owner != Owner::Io {
        xsm_target(pt.caller, pg_owner)?;
    }
    xsm_target(pt.caller, Owner::Domain(pt_owner.id))?;

    let ptr = req.ptr - cmd;
    let gmfn = Mfn(ptr >> 12);
    let pt_owner_o = Owner::Domain(pt_owner.id);
    if !pt.get_page(gmfn, pt_owner_o) {
        return Err(Errno::EINVAL); // "Could not get page for normal update"
    }
    let at = Maddr(ptr);
    let preserve_ad = cmd == MMU_PT_UPDATE_PRESERVE_AD;
    let f = *pt.mm.frames.get(gmfn).ok_or(Errno::EINVAL)?;
    // `page_lock` succeeds on a validated frame in use as its type.
    let rc = if f.validated() && f.type_count() > 0 {
        match f.page_type() {
            PageType::L1 => pt.mod_l1_entry(at, req.val, preserve_ad, pt_owner, pg_owner),
            ty @ (PageType::L2 | PageType::L3 | PageType::L4) => {
                if pg_owner != pt_owner_o {
                    Err(Errno::EINVAL)
                } else {
                    let r = pt.mod_upper_entry(at, req.val, ty, gmfn, preserve_ad, pt_owner);
                    // Flush unless the table is merely pinned, hooked up nowhere.
                    let in_use = pt
                        .mm
                        .frames
                        .get(gmfn)
                        .is_some_and(|f| f.type_count() > u32::from(f.pinned()));
                    if r.is_ok() && in_use {
                        *flush_linear_pt = true;
                    }
                    r
                }
            }
            PageType::Writable => plain_write(pt, at, req.val),
            _ => Err(Errno::EINVAL),
        }
    } else if pt.get_page_type(gmfn, PageType::Writable).is_ok() {
        let r = plain_write(pt, at, req.val);
        pt.put_page_type(gmfn);
        r
    } else {
        Err(Errno::EINVAL)
    };
    pt.put_page(gmfn);
    rc
}

/// An `mmu_update` aimed at a writable page: Xen just writes the value
/// (`paging_write_guest_entry`).
fn plain_write(pt: &mut Pt<'_, '_>, at: Maddr, val: u64) -> Result<(), Errno> {
    pt.perf.writable_mmu_updates += 1;
    pt.mem.write_u64(at, val).ok_or(Errno::EFAULT)
}

/// `MMU_MACHPHYS_UPDATE`: M2P[`ptr >> 12`] = `val`, for a frame `pg_owner` owns.
fn machphys_update(
    pt: &mut Pt<'_, '_>,
    req: MmuUpdate,
    pt_owner: DomainInfo,
    pg_owner: Owner,
) -> Result<(), Errno> {
    if pt_owner.id != pt.caller.id {
        return Err(Errno::EPERM);
    }
    let mfn = Mfn(req.ptr >> 12);
    if pg_owner != Owner::Io {
        xsm_target(pt.caller, pg_owner)?;
    }
    if !pt.get_page(mfn, pg_owner) {
        return Err(Errno::EINVAL); // "Could not get page for mach->phys update"
    }
    let at = Maddr(pt.mm.cfg.m2p.0.wrapping_add(mfn.0 * 8));
    let r = pt.mem.write_u64(at, req.val).ok_or(Errno::EFAULT);
    pt.put_page(mfn);
    r
}

// ---------------------------------------------------------------------------------------------
// mmuext_op

/// `HYPERVISOR_mmuext_op(ops, count, pdone, foreigndom)`.
pub(crate) fn mmuext_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    uops: u64,
    count: u64,
    pdone: u64,
    foreigndom: u64,
) -> HcResult {
    do_mmuext_op(
        ctx,
        Batch::Guest(uops),
        count as u32,
        pdone,
        foreigndom as u32,
    )
}

/// `do_mmuext_op` over any [`Batch`].
pub(crate) fn do_mmuext_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    ops: Batch<'_, MmuextOp>,
    count: u32,
    pdone: u64,
    foreigndom: u32,
) -> HcResult {
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let curr = ctx.dom.info();
    let (count, done) = match batch_start(mem, ctx.dom.l4, &ops, count, pdone, foreigndom)? {
        BatchStart::Finished(rc) => return Ok(rc),
        BatchStart::Run { count, done } => (count, done),
    };
    let pg_owner = get_pg_owner(mm, curr, foreigndom as u16).ok_or(Errno::ESRCH)?;
    // `xsm_mmuext_op`.
    xsm_target(curr, pg_owner)?;

    // Only a guest list can be continued; a test's slice is never preempted.
    let preemptible = matches!(ops, Batch::Guest(_));
    let mut rc = Ok(());
    let mut i = 0;
    let mut stopped = false;
    while i < count {
        // `if ( curr->arch.old_guest_table || (i && hypercall_preempt_check()) )`.
        if i > 0 && preemptible && ctx.preempt_check() {
            stopped = true;
            break;
        }
        if let Err(e) = mmuext_step(ctx, &ops, i, pg_owner) {
            rc = Err(e);
            break;
        }
        i += 1;
    }
    // Through the tables in use now, as Xen's `copy_to_guest` goes through CR3.
    if let Some((_, mem)) = ctx.m.mm() {
        write_done(mem, ctx.dom.l4, pdone, done.wrapping_add(i));
    }
    continue_batch(ctx, &ops, stopped.then_some(i), count, pdone, foreigndom);
    status(rc)
}

/// Element `i` of an `mmuext_op` batch, read and done. The element is read through the caller's
/// current tables: an earlier `MMUEXT_NEW_BASEPTR` of the same batch changed them (and CR3, on
/// Xen as here), and the old ones may be an ordinary, guest-writable page by now.
fn mmuext_step<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    ops: &Batch<'_, MmuextOp>,
    i: u32,
    pg_owner: Owner,
) -> Result<(), Errno> {
    let (mm, mem) = ctx.m.mm().ok_or(Errno::ENOSYS)?;
    let op = ops.get(mem, ctx.dom.l4, i)?;
    if op.cmd == MMUEXT_NEW_BASEPTR {
        // `new_guest_cr3` switches CR3, which the frame-table context cannot reach.
        if pg_owner != Owner::Domain(ctx.dom.id) {
            return Err(Errno::EPERM);
        }
        return new_guest_cr3(ctx, Mfn(op.mfn()));
    }
    let (mut pt, mut parts) = pt(mm, mem, ctx.dom);
    mmuext_one(&mut pt, &mut parts, op, pg_owner)
}

/// `get_page_from_gfn` for a PV domain: a reference on a frame `owner` owns. With `ram_only`,
/// `DOMID_IO` frames are refused (the callers that check `p2mt == p2m_ram_rw`).
fn page_of(pt: &mut Pt<'_, '_>, owner: Owner, mfn: Mfn, ram_only: bool) -> bool {
    if ram_only && owner == Owner::Io {
        return false;
    }
    pt.get_page(mfn, owner)
}

/// `vcpumask_to_pcpumask` for a domain with one vCPU: reads the first word of the mask; returns
/// whether vCPU 0 is in it.
fn vcpu0_in_mask(pt: &mut Pt<'_, '_>, guest_l4: Mfn, mask: u64) -> Result<bool, Errno> {
    let word: u64 = read_guest(pt.mem, guest_l4, mask)?;
    Ok(word & 1 != 0)
}

/// One `mmuext_op`.
fn mmuext_one(
    pt: &mut Pt<'_, '_>,
    d: &mut DomainParts<'_>,
    op: MmuextOp,
    pg_owner: Owner,
) -> Result<(), Errno> {
    let curr = pt.caller;
    let own = pg_owner == Owner::Domain(curr.id);
    let mfn = Mfn(op.mfn());
    match op.cmd {
        MMUEXT_PIN_L1_TABLE | MMUEXT_PIN_L2_TABLE | MMUEXT_PIN_L3_TABLE | MMUEXT_PIN_L4_TABLE => {
            let ty = match op.cmd {
                MMUEXT_PIN_L1_TABLE => PageType::L1,
                MMUEXT_PIN_L2_TABLE => PageType::L2,
                MMUEXT_PIN_L3_TABLE => PageType::L3,
                _ => PageType::L4,
            };
            if !page_of(pt, pg_owner, mfn, false) {
                return Err(Errno::EINVAL);
            }
            if let Err(e) = pt.get_page_type(mfn, ty) {
                pt.put_page(mfn);
                return Err(e);
            }
            let already = pt.mm.frames.get(mfn).is_some_and(|f| f.pinned());
            if already {
                // "mfn already pinned" (`pin_drop`).
                pt.put_page_and_type(mfn);
                return Err(Errno::EINVAL);
            }
            pt.mm.set_pinned(mfn, true);
            Ok(())
        }
        MMUEXT_UNPIN_TABLE => {
            if !page_of(pt, pg_owner, mfn, false) {
                return Err(Errno::EINVAL); // "mfn bad, or bad owner"
            }
            if !pt.mm.frames.get(mfn).is_some_and(|f| f.pinned()) {
                pt.put_page(mfn);
                return Err(Errno::EINVAL); // "mfn not pinned"
            }
            pt.mm.set_pinned(mfn, false);
            pt.put_page_and_type(mfn);
            pt.put_page(mfn);
            Ok(())
        }
        // Done by `mmuext_step` (it switches CR3); not reached.
        MMUEXT_NEW_BASEPTR => Err(Errno::EPERM),
        // The vCPU runs on its kernel table while it makes hypercalls (from guest user mode,
        // `syscall` is the guest kernel's), so the user table is not the one in CR3 and may lose
        // its reference at once, as in Xen's `MMUEXT_NEW_USER_BASEPTR`.
        MMUEXT_NEW_USER_BASEPTR => {
            if !own {
                return Err(Errno::EPERM);
            }
            let old = *d.user_l4;
            if old.map_or(0, |m| m.0) == mfn.0 {
                return Ok(());
            }
            if mfn.0 != 0 {
                pt.get_page_and_type(mfn, Owner::Domain(curr.id), PageType::L4)?;
            }
            *d.user_l4 = (mfn.0 != 0).then_some(mfn);
            if let Some(old) = old {
                pt.put_page_and_type(old);
            }
            Ok(())
        }
        MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_ALL => {
            if !own {
                return Err(Errno::EPERM);
            }
            pt.flush.flush_all(pt.perf);
            Ok(())
        }
        MMUEXT_INVLPG_LOCAL => {
            if !own {
                return Err(Errno::EPERM);
            }
            // `paging_invlpg` ignores non-canonical addresses.
            if is_canonical(op.linear_addr()) {
                pt.flush.invlpg(op.linear_addr(), pt.perf);
            }
            Ok(())
        }
        MMUEXT_INVLPG_ALL => {
            if !own {
                return Err(Errno::EPERM);
            }
            if guest_va_ok(op.linear_addr()) {
                pt.flush.invlpg(op.linear_addr(), pt.perf);
            }
            Ok(())
        }
        MMUEXT_TLB_FLUSH_MULTI | MMUEXT_INVLPG_MULTI => {
            if !own {
                return Err(Errno::EPERM);
            }
            let in_mask = vcpu0_in_mask(pt, *d.l4, op.vcpumask()).map_err(|_| Errno::EINVAL)?;
            if in_mask {
                if op.cmd == MMUEXT_TLB_FLUSH_MULTI {
                    pt.flush.flush_all(pt.perf);
                } else if guest_va_ok(op.linear_addr()) {
                    pt.flush.invlpg(op.linear_addr(), pt.perf);
                }
            }
            Ok(())
        }
        MMUEXT_FLUSH_CACHE => {
            if !own {
                Err(Errno::EPERM)
            } else if !curr.privileged {
                Err(Errno::EACCES) // !cache_flush_permitted
            } else {
                pt.flush.cache_flush = true;
                Ok(())
            }
        }
        MMUEXT_FLUSH_CACHE_GLOBAL => {
            if !own {
                Err(Errno::EPERM)
            } else if curr.privileged {
                pt.flush.cache_flush = true;
                Ok(())
            } else {
                Err(Errno::EINVAL)
            }
        }
        MMUEXT_SET_LDT => {
            let ents = op.nr_ents();
            let base = if ents != 0 { op.linear_addr() } else { 0 };
            if !own {
                Err(Errno::EPERM)
            } else if base & 0xfff != 0 || !guest_va_ok(base) || ents > MAX_LDT_ENTS {
                Err(Errno::EINVAL) // "Bad args to SET_LDT"
            } else {
                // The LDT's pages are mapped (and typed seg_desc) lazily on first use; nothing is
                // mapped yet, so there is nothing to tear down or flush.
                *d.ldt_base = base;
                *d.ldt_ents = ents;
                Ok(())
            }
        }
        MMUEXT_CLEAR_PAGE => {
            if !page_of(pt, pg_owner, mfn, true) {
                return Err(Errno::EINVAL);
            }
            if pt.get_page_type(mfn, PageType::Writable).is_err() {
                pt.put_page(mfn);
                return Err(Errno::EINVAL); // "Error clearing mfn"
            }
            let r = pt.mem.write(mfn.maddr(), &[0u8; 4096]).ok_or(Errno::EFAULT);
            pt.put_page_and_type(mfn);
            r
        }
        MMUEXT_COPY_PAGE => {
            let src = Mfn(op.src_mfn());
            if !page_of(pt, pg_owner, src, true) {
                return Err(Errno::EINVAL); // "Error copying from mfn"
            }
            let dst_ok = page_of(pt, pg_owner, mfn, true);
            if !dst_ok || pt.get_page_type(mfn, PageType::Writable).is_err() {
                pt.put_page(src);
                if dst_ok {
                    pt.put_page(mfn);
                }
                return Err(Errno::EINVAL); // "Error copying to mfn"
            }
            let r = copy_frame(pt.mem, Some(src), mfn);
            pt.put_page_and_type(mfn);
            pt.put_page(src);
            r
        }
        MMUEXT_MARK_SUPER | MMUEXT_UNMARK_SUPER => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::ENOSYS),
    }
}

/// `copy_domain_page` (from `src`) or `clear_domain_page` (`None`), a small chunk at a time so
/// the hypervisor stack never holds a page.
fn copy_frame(mem: &mut dyn MachineMemoryMut, src: Option<Mfn>, dst: Mfn) -> Result<(), Errno> {
    const CHUNK: usize = 256;
    let mut buf = [0u8; CHUNK];
    for off in (0..4096).step_by(CHUNK) {
        if let Some(src) = src {
            let from = mem
                .read(Maddr(src.maddr().0 + off as u64), CHUNK)
                .ok_or(Errno::EFAULT)?;
            buf.copy_from_slice(from);
        }
        mem.write(Maddr(dst.maddr().0 + off as u64), &buf)
            .ok_or(Errno::EFAULT)?;
    }
    Ok(())
}

/// `new_guest_cr3` for a 64-bit guest: installs `mfn` as the kernel base pointer. As in Xen, the
/// new table is taken, CR3 is switched to it (`write_ptbase`), and only then is the old one
/// released: the table the CPU runs on never loses its last L4 type reference while the CPU
/// uses it. (Were the old table put first and CR3 switched on the way out, the rest of the batch
/// or multicall could unpin it, map it writable or `CLEAR_PAGE`/`COPY_PAGE` it, and rewrite the
/// hypervisor's slots of the table the CPU was still running on.)
fn new_guest_cr3<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, mfn: Mfn) -> Result<(), Errno> {
    let old = ctx.dom.l4;
    if old == mfn {
        // Reloading the current table: just `write_ptbase` (a full TLB flush).
        ctx.m.write_ptbase(mfn);
        return Ok(());
    }
    {
        let (mm, mem) = ctx.m.mm().ok_or(Errno::ENOSYS)?;
        let (mut pt, _) = pt(mm, mem, ctx.dom);
        let me = Owner::Domain(pt.caller.id);
        pt.get_page_and_type(mfn, me, PageType::L4)?;
    }
    ctx.dom.l4 = mfn;
    // `update_cr3` + `write_ptbase`: hypercalls come from guest kernel mode, whose table this is.
    ctx.m.write_ptbase(ctx.dom.current_l4());
    if old.0 != 0 {
        let (mm, mem) = ctx.m.mm().ok_or(Errno::ENOSYS)?;
        let (mut pt, _) = pt(mm, mem, ctx.dom);
        pt.put_page_and_type(old);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// update_va_mapping

/// `HYPERVISOR_update_va_mapping(va, val, flags)`.
pub(crate) fn update_va_mapping<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    va: u64,
    val: u64,
    flags: u64,
) -> HcResult {
    do_update_va_mapping(ctx, va, val, flags, None)
}

/// `HYPERVISOR_update_va_mapping_otherdomain(va, val, flags, domid)`: the same, mapping a frame
/// of `domid` (`get_pg_owner`; a privileged caller for anyone but itself).
pub(crate) fn update_va_mapping_otherdomain<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    va: u64,
    val: u64,
    flags: u64,
    domid: u64,
) -> HcResult {
    do_update_va_mapping(ctx, va, val, flags, Some(domid as u16))
}

/// `map_guest_l1e`: the machine address of the L1 entry that maps `va` in the tables rooted at
/// `l4`, and the L1's frame; `None` if `va` is not a guest address or no L1 covers it.
pub(crate) fn map_guest_l1e(mem: &dyn MachineMemoryMut, l4: Mfn, va: u64) -> Option<(Maddr, Mfn)> {
    if !guest_va_ok(va) {
        return None;
    }
    let index = |shift: u32| (va >> shift) & 511;
    let e4 = mem.read_u64(Maddr(l4.maddr().0 + index(39) * 8))?;
    if !pte::present(e4) {
        return None;
    }
    let e3 = mem.read_u64(Maddr((e4 & pte::ADDR) + index(30) * 8))?;
    if !pte::present(e3) {
        return None;
    }
    let e2 = mem.read_u64(Maddr((e3 & pte::ADDR) + index(21) * 8))?;
    if e2 & (pte::PRESENT | pte::PSE) != pte::PRESENT {
        return None;
    }
    let l1 = Mfn(pte::mfn(e2));
    Some((Maddr(l1.maddr().0 + index(12) * 8), l1))
}

/// `__do_update_va_mapping`: replaces the L1 entry that maps `va` in the caller's current
/// tables, then flushes as `flags` asks.
pub(crate) fn do_update_va_mapping<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    va: u64,
    val: u64,
    flags: u64,
    domid: Option<u16>,
) -> HcResult {
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let curr = ctx.dom.info();
    let pg_owner = match domid {
        None => Owner::Domain(curr.id),
        Some(id) => get_pg_owner(mm, curr, id).ok_or(Errno::ESRCH)?,
    };
    // `xsm_update_va_mapping`.
    xsm_target(curr, pg_owner)?;
    let guest_l4 = ctx.dom.l4;
    let (mut pt, _) = pt(mm, mem, &mut *ctx.dom);

    let (at, gl1mfn) = map_guest_l1e(pt.mem, guest_l4, va).ok_or(Errno::EINVAL)?;
    if !pt.get_page(gl1mfn, Owner::Domain(curr.id)) {
        return Err(Errno::EINVAL);
    }
    let is_l1 = pt
        .mm
        .frames
        .get(gl1mfn)
        .is_some_and(|f| f.validated() && f.type_count() > 0 && f.page_type() == PageType::L1);
    let rc = if is_l1 {
        pt.mod_l1_entry(at, val, false, curr, pg_owner)
    } else {
        Err(Errno::EINVAL)
    };
    pt.put_page(gl1mfn);
    // An error means the entry did not change: skip the flush.
    rc?;

    let target = flags & !UVMF_FLUSHTYPE_MASK;
    let wanted = match target {
        UVMF_LOCAL => true,
        UVMF_ALL_BITS => true,
        // Anything else is a guest pointer to a vCPU bitmap; a bad one is -EFAULT, after the
        // update (which stays).
        mask => match flags & UVMF_FLUSHTYPE_MASK {
            UVMF_TLB_FLUSH | UVMF_INVLPG => vcpu0_in_mask(&mut pt, guest_l4, mask)?,
            _ => false,
        },
    };
    if wanted {
        match flags & UVMF_FLUSHTYPE_MASK {
            UVMF_TLB_FLUSH => pt.flush.flush_all(pt.perf),
            UVMF_INVLPG => pt.flush.invlpg(va, pt.perf),
            _ => {}
        }
    }
    Ok(0)
}

/// Xen's emulation of a guest kernel's store to one of its own L1 page tables through the
/// read-only mapping (`pv/ro-page-fault.c: ptwr_do_page_fault`, always on in 4.17): the store of
/// `value` to guest address `va` is carried out as a validated `mod_l1_entry`. Refused (and the
/// page fault delivered to the guest) unless `va` maps, read-only, a validated L1 table of the
/// domain and the store is an aligned 8-byte one; a refused entry leaves the table unchanged.
pub fn ptwr_emulate<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    va: u64,
    value: u64,
) -> Result<(), Errno> {
    if va & 7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (l4, me) = (dom.l4, dom.info());
    let Some((mm, mem)) = m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let (pte_at, _) = map_guest_l1e(mem, l4, va).ok_or(Errno::EINVAL)?;
    let pte = mem.read_u64(pte_at).ok_or(Errno::EFAULT)?;
    if !pte::present(pte) || pte & pte::RW != 0 {
        return Err(Errno::EINVAL);
    }
    let target = Mfn(pte::mfn(pte));
    let f = mm.frames.get(target).ok_or(Errno::EINVAL)?;
    if f.owner() != Owner::Domain(me.id) || f.page_type() != PageType::L1 || !f.validated() {
        return Err(Errno::EINVAL);
    }
    let at = Maddr(target.maddr().0 + (va & 0xff8));
    let (mut pt, _) = pt(mm, mem, dom);
    pt.perf.page_updates += 1;
    pt.mod_l1_entry(at, value, false, me, Owner::Domain(me.id))
}
