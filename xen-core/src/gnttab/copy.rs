//! `GNTTABOP_copy`: claiming both sides of a copy (frames or grants) and copying the bytes.

use super::*;

/// One side of a copy, claimed: the frame with a general reference (and a writable type
/// reference for the destination), and the grant pinned if it came from one.
struct CopyBuf {
    domain: DomainId,
    mfn: Mfn,
    gref: Option<GrantRef>,
    read_only: bool,
    have_type: bool,
}

/// `acquire_grant_for_copy` (v1): pins `gref` of `rd` for `ld`, taking a general reference on
/// the frame.
fn acquire_grant_for_copy(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    ld: DomId,
    readonly: bool,
) -> Result<Mfn, i16> {
    let rgt = tables.table(rd).ok_or(GNTST_bad_domain)?;
    if gref >= rgt.nr_entries() {
        return Err(GNTST_bad_gntref);
    }
    // `active_entry_acquire`: the reference's own entry, whoever else pins what.
    let mut act = rgt.read_active(pt.mem, gref);
    let inc = if readonly {
        GNTPIN_HSTR_INC
    } else {
        GNTPIN_HSTW_INC
    };
    if act.pin != 0 && (act.domid != ld || act.pin & overflow_mask(inc) != 0) {
        return Err(GNTST_general_error);
    }
    let fail = |rgt: &mut GrantTable, mem: &mut dyn MachineMemoryMut, s: i16| {
        let clear = flags_to_clear(act.pin, readonly);
        rgt.clear_flags(mem, gref, clear);
        Err(s)
    };
    if act.pin == 0 || (!readonly && act.pin & PIN_WRITE == 0) {
        set_status_v1(pt.mem, rgt, gref, act.pin != 0, readonly, false, ld)?;
        let (_, _, frame) = rgt.entry(pt.mem, gref);
        let mfn = Mfn(frame.into());
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            return fail(rgt, pt.mem, GNTST_bad_page);
        }
        if act.pin == 0 {
            act.domid = ld;
            act.mfn = mfn;
        } else if act.mfn != mfn {
            // Pinned already: the pinned frame is the one copied (Xen overwrites `page` with the
            // entry's frame yet copies `act->mfn`; the two differ only if the granter rewrote
            // a pinned entry).
            pt.put_page(mfn);
            if !pt.get_page(act.mfn, Owner::Domain(rd)) {
                return fail(rgt, pt.mem, GNTST_bad_domain);
            }
        }
    } else if !pt.get_page(act.mfn, Owner::Domain(rd)) {
        return fail(rgt, pt.mem, GNTST_bad_domain);
    }
    act.pin += inc;
    rgt.write_active(pt.mem, gref, &act);
    Ok(act.mfn)
}

/// `gnttab_copy_claim_buf`.
fn claim_buf(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    domain: DomainId,
    u: u64,
    is_gref: bool,
    read_only: bool,
) -> Result<CopyBuf, i16> {
    let ld = pt.caller.id;
    let mut buf = if is_gref {
        let gref = u as GrantRef;
        let mfn = acquire_grant_for_copy(pt, tables, domain, gref, ld, read_only)?;
        CopyBuf {
            domain,
            mfn,
            gref: Some(gref),
            read_only,
            have_type: false,
        }
    } else {
        // `get_paged_frame`: for a PV domain the frame number is the machine frame, which it
        // must own.
        let mfn = Mfn(u);
        if !pt.mm.frames.mfn_valid(mfn) || !pt.get_page(mfn, Owner::Domain(domain)) {
            return Err(GNTST_bad_page);
        }
        CopyBuf {
            domain,
            mfn,
            gref: None,
            read_only,
            have_type: false,
        }
    };
    if !read_only {
        if pt.get_page_type(buf.mfn, PageType::Writable).is_err() {
            release_buf(pt, tables, &buf);
            return Err(GNTST_general_error); // "Could not get writable frame"
        }
        buf.have_type = true;
    }
    Ok(buf)
}

/// `gnttab_copy_release_buf`.
fn release_buf(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, buf: &CopyBuf) {
    if let Some(gref) = buf.gref {
        // `release_grant_for_copy`.
        let dec = if buf.read_only {
            GNTPIN_HSTR_INC
        } else {
            GNTPIN_HSTW_INC
        };
        unpin(pt.mem, tables, buf.domain, gref, dec, buf.read_only);
    }
    if buf.have_type {
        pt.put_page_type(buf.mfn);
    }
    pt.put_page(buf.mfn);
}

/// `gnttab_copy_lock_domain`: only `DOMID_SELF` may name a frame directly.
fn copy_domain(
    tables: &mut dyn GrantTables,
    caller: DomainId,
    domid: DomId,
    is_gref: bool,
) -> Result<DomainId, i16> {
    if domid != DOMID_SELF && !is_gref {
        return Err(GNTST_permission_denied);
    }
    let id = any_id(caller, domid);
    tables.table(id).map(|_| id).ok_or(GNTST_bad_domain)
}

/// `gnttab_copy_one`: one `GNTTABOP_copy`; returns its status.
pub fn copy(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, op: &GnttabCopy) -> i16 {
    let caller = pt.caller.id;
    let src_gref = op.flags & GNTCOPY_source_gref != 0;
    let dst_gref = op.flags & GNTCOPY_dest_gref != 0;
    let src_dom = match copy_domain(tables, caller, op.source.domid, src_gref) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let dst_dom = match copy_domain(tables, caller, op.dest.domid, dst_gref) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let src = match claim_buf(pt, tables, src_dom, op.source.u, src_gref, true) {
        Ok(b) => b,
        Err(s) => return s,
    };
    let dst = match claim_buf(pt, tables, dst_dom, op.dest.u, dst_gref, false) {
        Ok(b) => b,
        Err(s) => {
            release_buf(pt, tables, &src);
            return s;
        }
    };
    let (so, dof, len) = (
        usize::from(op.source.offset),
        usize::from(op.dest.offset),
        usize::from(op.len),
    );
    // `gnttab_copy_buf`: v1 grants are whole pages, so the sub-page bounds always hold.
    let rc = if so + len > 4096 || dof + len > 4096 {
        GNTST_bad_copy_arg // "copy beyond page area"
    } else {
        copy_bytes(pt.mem, src.mfn, so, dst.mfn, dof, len)
    };
    release_buf(pt, tables, &dst);
    release_buf(pt, tables, &src);
    rc
}

/// `memcpy` between two frames, through a small buffer (regions may overlap within a frame).
fn copy_bytes(
    mem: &mut dyn MachineMemoryMut,
    src: Mfn,
    so: usize,
    dst: Mfn,
    dof: usize,
    len: usize,
) -> i16 {
    let mut buf = [0u8; 4096];
    let Some(from) = mem.read(Maddr(src.maddr().0 + so as u64), len) else {
        return GNTST_general_error;
    };
    buf[..len].copy_from_slice(from);
    match mem.write(Maddr(dst.maddr().0 + dof as u64), &buf[..len]) {
        Some(()) => GNTST_okay,
        None => GNTST_general_error,
    }
}
