//! `update_va_mapping`(`_otherdomain`) and the page-table write emulation (`ptwr_emulate`).

use super::*;

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
    let guest_l4 = ctx.dom.vcpu().l4;
    let (mut pt, _) = pt(mm, mem, &mut *ctx.dom, &mut ctx.fx.flush);

    let (at, gl1mfn) = map_guest_l1e(pt.mem, guest_l4, va).ok_or(Errno::EINVAL)?;
    // Xen takes a general reference on the L1 for the update (`get_page_from_mfn(gl1mfn, d)`,
    // `put_page` after) and requires it to be in use as an L1. Of the reference it asks two
    // things: that the caller owns the frame, checked here in the one look-up, and that the
    // frame stays allocated meanwhile, which holds without one: an L1 in use holds its type
    // reference from an L2 entry, a pin or a base pointer, each of which holds a general
    // reference too (`frame_table::audit`), and nothing else runs while this call does. The
    // old entry's put in `mod_l1_entry` drops a reference that entry held: a read-only mapping
    // of the L1 itself, at most, never the one that keeps it in use.
    let is_l1 = pt.mm.frames.get(gl1mfn).is_some_and(|f| {
        f.owner() == Owner::Domain(curr.id)
            && f.count() > 0
            && f.validated()
            && f.type_count() > 0
            && f.page_type() == PageType::L1
    });
    if !is_l1 {
        return Err(Errno::EINVAL);
    }
    // An error means the entry did not change: skip the flush.
    pt.mod_l1_entry(at, val, false, curr, pg_owner)?;

    let target = flags & !UVMF_FLUSHTYPE_MASK;
    let wanted = match target {
        UVMF_LOCAL => true,
        UVMF_ALL_BITS => true,
        // Anything else is a guest pointer to a vCPU bitmap; a bad one is -EFAULT, after the
        // update (which stays).
        mask => match flags & UVMF_FLUSHTYPE_MASK {
            UVMF_TLB_FLUSH | UVMF_INVLPG => vcpu0_in_mask(&mut pt, guest_l4, GuestPtr::new(mask))?,
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

/// The machine address of the L1 entry a guest kernel's store at `va` goes to, if `va` maps,
/// read-only, a validated L1 table of the domain (Xen's `ptwr_do_page_fault` checks), and the
/// table's frame; -EINVAL otherwise (then the fault is the guest's).
fn ptwr_target(
    mm: &crate::mm::frame_table::Mm<'static>,
    mem: &dyn crate::mm::MachineMemoryMut,
    dom: &Domain,
    va: u64,
) -> Result<Maddr, Errno> {
    if va & 7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (pte_at, _) = map_guest_l1e(mem, dom.vcpu().l4, va).ok_or(Errno::EINVAL)?;
    let pte = mem.read_u64(pte_at).ok_or(Errno::EFAULT)?;
    if !pte::present(pte) || pte & pte::RW != 0 {
        return Err(Errno::EINVAL);
    }
    let target = Mfn(pte::mfn(pte));
    let f = mm.frames.get(target).ok_or(Errno::EINVAL)?;
    // In use as an L1, as `update_va_mapping` asks (Xen's `page_lock` on the L1).
    if f.owner() != Owner::Domain(dom.id)
        || f.page_type() != PageType::L1
        || !f.validated()
        || f.type_count() == 0
    {
        return Err(Errno::EINVAL);
    }
    Ok(Maddr(target.maddr().0 + (va & 0xff8)))
}

/// The entry a guest kernel's store at `va` would change (see [`ptwr_emulate`]): what the
/// emulation of a read-modify-write instruction starts from.
pub fn ptwr_read<M: Machine + ?Sized>(m: &mut M, dom: &Domain, va: u64) -> Result<u64, Errno> {
    let Some((mm, mem)) = m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let at = ptwr_target(mm, mem, dom, va)?;
    mem.read_u64(at).ok_or(Errno::EFAULT)
}

/// Xen's emulation of a guest kernel's store to one of its own L1 page tables through the
/// read-only mapping (`pv/ro-page-fault.c: ptwr_do_page_fault`, always on in 4.17): the store of
/// `value` to guest address `va` is carried out as a validated `mod_l1_entry`. Refused (and the
/// page fault delivered to the guest) unless `va` maps, read-only, a validated L1 table of the
/// domain and the store is an aligned 8-byte one (the instruction emulation, `emulate::pte_write`,
/// merges narrower stores into the full entry first); a refused entry leaves the table unchanged.
pub fn ptwr_emulate<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    va: u64,
    value: u64,
) -> Result<(), Errno> {
    let me = dom.info();
    let Some((mm, mem)) = m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let at = ptwr_target(mm, mem, dom, va)?;
    // Not a hypercall: the TLB work is the vCPU's to owe straight away.
    let mut flush = crate::domain::FlushRequest::default();
    let (mut pt, _) = pt(mm, mem, dom, &mut flush);
    pt.perf.page_updates += 1;
    let r = pt.mod_l1_entry(at, value, false, me, Owner::Domain(me.id));
    dom.vcpu_mut().flush.merge(&flush);
    r
}
