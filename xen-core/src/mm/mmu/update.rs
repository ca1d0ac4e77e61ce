//! `mmu_update`: batches of page-table writes and machine-to-phys updates (`do_mmu_update`).

use super::*;

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
        Batch::Guest(GuestPtr::new(ureqs)),
        count as u32,
        GuestPtr::new(pdone),
        foreigndom as u32,
    )
}

/// What a batch loop asks between elements: whether to stop (Xen's `hypercall_preempt_check()`,
/// as [`crate::ctx::preempt_check`] asks it, with the upcall word placed once per call).
/// `None` for a test's slice, which is never preempted.
#[derive(Clone, Copy)]
struct Stop<'p> {
    preempt: Option<&'p dyn crate::ctx::Preempt>,
    /// The caller's `evtchn_upcall_pending` and mask
    /// ([`crate::shared_info::running_upcall_word`]).
    upcall_word: Maddr,
}

impl Stop<'_> {
    #[inline]
    fn now<W: MachineMemoryMut + ?Sized>(&self, mem: &W) -> bool {
        self.preempt.is_some_and(|p| {
            p.pending()
                || mem
                    .read_u32_unaligned(self.upcall_word)
                    .is_some_and(|w| crate::shared_info::upcall_word_deliverable(w.to_le_bytes()))
        })
    }
}

/// `do_mmu_update` over any [`Batch`].
pub(crate) fn do_mmu_update<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    reqs: Batch<'_, MmuUpdate>,
    count: u32,
    pdone: GuestPtr<u32>,
    foreigndom: u32,
) -> HcResult {
    // What the call needs of the calling vCPU, read in one look-up of it.
    let (guest_l4, mmu_slot, upcall_word, mmu) = {
        let v = ctx.dom.vcpu();
        let word = crate::shared_info::upcall_word(v, ctx.dom.shared_info, ctx.dom.vcpu_id());
        // `Ctx::mmu_usable`.
        let mmu = !ctx.fx.flush.owes_tlb_work() && !v.flush.owes_tlb_work();
        (v.l4, v.mmu_slot, word, mmu)
    };
    let Some((mm, mem, preempt)) = ctx.m.mm_preemptible() else {
        return Err(Errno::ENOSYS);
    };
    let stop = Stop {
        preempt: matches!(reqs, Batch::Guest(_)).then_some(preempt),
        upcall_word,
    };
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
    // From here every access to guest memory and every write goes through the call's
    // translation cache and the memory that keeps it honest (see `TranslationCache`), which
    // starts from the L4 slot the vCPU's last call found safe for the MMU, if it still is.
    let cache = TranslationCache::resuming(guest_l4, mmu_slot, mm.l4_changes());
    // Through the MMU while no TLB work is owed (see `MmuGuest`); the loop stops that the
    // moment an update asks for some.
    cache.use_mmu(mmu);
    let mut mem = Watched::new(mem, &cache);
    let (rc, i, stopped) = match get_pg_owner(mm, curr, foreigndom as u16) {
        None => (Err(Errno::ESRCH), 0, false),
        Some(pg_owner) => {
            let (mut pt, _) = pt(mm, &mut mem, &mut *ctx.dom, &mut ctx.fx.flush);
            mmu_update_loop(&mut pt, reqs, count, &cache, pt_owner, pg_owner, stop)
        }
    };
    let v = ctx.dom.vcpu_mut();
    if !pdone.is_null() {
        // The vCPU's own `flush` was asked at the start (`mmu`): the loop cannot reach it
        // (`pt` lends it the vCPU's counters and tables, not that), so only the call's can
        // have changed.
        cache.use_mmu(cache.mmu() && !ctx.fx.flush.owes_tlb_work());
        // Xen ignores a failure to write it.
        let _ = cache.copy_to_guest(&mut mem, pdone, &done.wrapping_add(i));
    }
    v.mmu_slot = cache.memo(mm.l4_changes());
    continue_batch(ctx, &reqs, stopped.then_some(i), count, pdone, foreigndom);
    status(rc)
}

/// The request loop of `do_mmu_update`; returns the outcome, how many requests completed, and
/// whether it stopped for preemption before request `i` (the outcome is then `Ok`).
fn mmu_update_loop<W: MachineMemoryMut + ?Sized>(
    pt: &mut Pt<'_, '_, W>,
    reqs: Batch<'_, MmuUpdate>,
    count: u32,
    cache: &TranslationCache,
    pt_owner: DomainInfo,
    pg_owner: Owner,
    stop: Stop<'_>,
) -> (Result<(), Errno>, u32, bool) {
    let mut rc = Ok(());
    let mut i = 0;
    let mut stopped = false;
    let mut reader = reqs.reader();
    // The table the last update wrote, with the general reference taken for it kept (see
    // `normal_pt_update`), dropped below whatever ends the loop.
    let mut held = None;
    // `xsm_mmu_update`'s checks depend on the call's owners alone: asked once, here.
    let rights = Rights::of(pt.caller, pt_owner, pg_owner);
    while i < count {
        // `if ( curr->arch.old_guest_table || (i && hypercall_preempt_check()) )`.
        if i > 0 && stop.now(pt.mem) {
            stopped = true;
            break;
        }
        // Once an update asked for TLB work (a retype, an in-use table changed), the TLB may
        // hold what the tables no longer allow: the reader then stops copying through it.
        let flush = &*pt.flush;
        let req = match reader.get(&*pt.mem, cache, i, count, || flush.owes_tlb_work()) {
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
                normal_pt_update(pt, req, cmd, pt_owner, pg_owner, rights, &mut held)
            }
            MMU_MACHPHYS_UPDATE => machphys_update(pt, req, rights, pg_owner),
            _ => Err(Errno::ENOSYS),
        };
        if let Err(e) = r {
            rc = Err(e);
            break;
        }
        i += 1;
    }
    if let Some(table) = held {
        pt.put_page(table);
    }
    pt.perf.page_updates += u64::from(i);
    (rc, i, stopped)
}

/// What the caller may do to the call's page-table owner and page owner (`xsm_mmu_update` of
/// the dummy policy, and `MMU_MACHPHYS_UPDATE`'s own rule), worked out once per call.
#[derive(Clone, Copy)]
struct Rights {
    /// An `MMU_NORMAL_PT_UPDATE`: the caller may act on both owners (the page owner unless it
    /// is `DOMID_IO`).
    normal: Result<(), Errno>,
    /// An `MMU_MACHPHYS_UPDATE`: the caller owns the tables, and may act on the page owner.
    machphys: Result<(), Errno>,
}

impl Rights {
    #[inline(always)]
    fn of(caller: DomainInfo, pt_owner: DomainInfo, pg_owner: Owner) -> Rights {
        let pg = if pg_owner != Owner::Io {
            xsm_target(caller, pg_owner)
        } else {
            Ok(())
        };
        Rights {
            normal: pg.and(xsm_target(caller, Owner::Domain(pt_owner.id))),
            machphys: if pt_owner.id != caller.id {
                Err(Errno::EPERM)
            } else {
                pg
            },
        }
    }
}

/// `MMU_NORMAL_PT_UPDATE` (and `PRESERVE_AD`, and `NO_TRANSLATE`, which is the same for a PV
/// guest): `*ptr = val` for a page-table entry, validated; or a plain write when `ptr` is in an
/// ordinary page the guest may write anyway.
///
/// Xen takes a general reference on the frame written for each update and drops it after
/// (`get_page_from_mfn` ... `put_page`). Here the reference taken for one update is kept in
/// `held` while the next ones write the same frame (as a batch's do, a table at a time), and
/// dropped when one writes another frame or the batch ends: one get and one put per table
/// rather than per entry. Each update still reads the frame's entry as it is then (type,
/// validation, type count), and the frame cannot change owner or be freed while referenced,
/// which is all the reference was for.
fn normal_pt_update<W: MachineMemoryMut + ?Sized>(
    pt: &mut Pt<'_, '_, W>,
    req: MmuUpdate,
    cmd: u64,
    pt_owner: DomainInfo,
    pg_owner: Owner,
    rights: Rights,
    held: &mut Option<Mfn>,
) -> Result<(), Errno> {
    // `xsm_mmu_update`: the caller must be allowed to act on both owners.
    rights.normal?;

    let ptr = req.ptr - cmd;
    let gmfn = Mfn(ptr >> 12);
    let pt_owner_o = Owner::Domain(pt_owner.id);
    let f = match pt.mm.frames.get(gmfn) {
        // Referenced by this batch already: still `pt_owner`'s (`pt_owner` is the batch's, and
        // no operation of an `mmu_update` batch changes a frame's owner: one that steals or
        // transfers frames added to this loop must drop `held` first).
        Some(f) if *held == Some(gmfn) => {
            debug_assert_eq!(
                f.owner(),
                pt_owner_o,
                "a held table changed owner mid-batch"
            );
            *f
        }
        _ => {
            let Some(f) = pt.mm.frames.get_page_info(gmfn, pt_owner_o, pt.perf) else {
                return Err(Errno::EINVAL); // "Could not get page for normal update"
            };
            if let Some(before) = held.replace(gmfn) {
                pt.put_page(before);
            }
            f
        }
    };
    let at = Maddr(ptr);
    let preserve_ad = cmd == MMU_PT_UPDATE_PRESERVE_AD;
    // `page_lock` succeeds on a validated frame in use as its type.
    if f.validated() && f.type_count() > 0 {
        match f.page_type() {
            PageType::L1 => pt.mod_l1_entry(at, req.val, preserve_ad, pt_owner, pg_owner),
            ty @ (PageType::L2 | PageType::L3 | PageType::L4) => {
                if pg_owner != pt_owner_o {
                    Err(Errno::EINVAL)
                } else {
                    // (It asks for the flush a table in use needs, at once.)
                    pt.mod_upper_entry(at, req.val, ty, gmfn, preserve_ad, pt_owner)
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
    }
}

/// An `mmu_update` aimed at a writable page: Xen just writes the value
/// (`paging_write_guest_entry`).
fn plain_write<W: MachineMemoryMut + ?Sized>(
    pt: &mut Pt<'_, '_, W>,
    at: Maddr,
    val: u64,
) -> Result<(), Errno> {
    pt.perf.writable_mmu_updates += 1;
    pt.mem.write_u64(at, val).ok_or(Errno::EFAULT)
}

/// `MMU_MACHPHYS_UPDATE`: M2P[`ptr >> 12`] = `val`, for a frame `pg_owner` owns.
fn machphys_update<W: MachineMemoryMut + ?Sized>(
    pt: &mut Pt<'_, '_, W>,
    req: MmuUpdate,
    rights: Rights,
    pg_owner: Owner,
) -> Result<(), Errno> {
    // The caller must own the tables, and may act on the page owner.
    rights.machphys?;
    let mfn = Mfn(req.ptr >> 12);
    if !pt.get_page(mfn, pg_owner) {
        return Err(Errno::EINVAL); // "Could not get page for mach->phys update"
    }
    let at = Maddr(pt.mm.cfg.m2p.0.wrapping_add(mfn.0 * 8));
    let r = pt.mem.write_u64(at, req.val).ok_or(Errno::EFAULT);
    pt.put_page(mfn);
    r
}
