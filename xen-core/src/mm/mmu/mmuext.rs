//! `mmuext_op`: pinning, unpinning, CR3 loads, TLB flushes, LDTs and frame copies (`do_mmuext_op`).

use super::*;

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
        Batch::Guest(GuestPtr::new(uops)),
        count as u32,
        GuestPtr::new(pdone),
        foreigndom as u32,
    )
}

/// `do_mmuext_op` over any [`Batch`].
pub(crate) fn do_mmuext_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    ops: Batch<'_, MmuextOp>,
    count: u32,
    pdone: GuestPtr<u32>,
    foreigndom: u32,
) -> HcResult {
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let curr = ctx.dom.info();
    let (count, done) = match batch_start(mem, ctx.dom.vcpu().l4, &ops, count, pdone, foreigndom)? {
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
        write_done(mem, ctx.dom.vcpu().l4, pdone, done.wrapping_add(i));
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
    let op = ops.get(mem, ctx.dom.vcpu().l4, i)?;
    if op.cmd == MMUEXT_NEW_BASEPTR {
        // `new_guest_cr3` switches CR3, which the frame-table context cannot reach.
        if pg_owner != Owner::Domain(ctx.dom.id) {
            return Err(Errno::EPERM);
        }
        return new_guest_cr3(ctx, Mfn(op.mfn()));
    }
    let (mut pt, mut parts) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
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
            let in_mask = vcpu0_in_mask(pt, *d.l4, GuestPtr::new(op.vcpumask()))
                .map_err(|_| Errno::EINVAL)?;
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
            let r = pt.mem.zero(mfn.maddr(), 4096).ok_or(Errno::EFAULT);
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
    let old = ctx.dom.vcpu().l4;
    if old == mfn {
        // Reloading the current table: just `write_ptbase` (a full TLB flush).
        ctx.m.write_ptbase(mfn);
        return Ok(());
    }
    {
        let (mm, mem) = ctx.m.mm().ok_or(Errno::ENOSYS)?;
        let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
        let me = Owner::Domain(pt.caller.id);
        pt.get_page_and_type(mfn, me, PageType::L4)?;
    }
    ctx.dom.vcpu_mut().l4 = mfn;
    // `update_cr3` + `write_ptbase`: hypercalls come from guest kernel mode, whose table this is.
    ctx.m.write_ptbase(ctx.dom.current_l4());
    if old.0 != 0 {
        let (mm, mem) = ctx.m.mm().ok_or(Errno::ENOSYS)?;
        let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
        pt.put_page_and_type(old);
    }
    Ok(())
}
