//! `GNTTABOP_copy`: claiming both sides of a copy (frames or grants) and copying the bytes.

use super::*;

/// One side of a copy, claimed: the frame with a general reference (and a writable type
/// reference for the destination), and the grant pinned if it came from one, with the window of
/// the frame it may touch.
struct CopyBuf {
    domain: DomainId,
    mfn: Mfn,
    grant: Option<Acquired>,
    read_only: bool,
    have_type: bool,
    /// First byte the copy may touch (`ptr.offset` after the claim).
    start: u16,
    /// Bytes from `start` it may touch (`len` after the claim).
    len: u16,
}

/// A grant pinned for a copy: the reference, and for a transitive grant the referent pinned
/// with it (Xen's `act->trans_domain`/`act->trans_gref`); or, for a grant nobody had pinned,
/// not pinned at all ([`Pin::Transient`]).
#[derive(Clone, Copy)]
struct Acquired {
    gref: GrantRef,
    pin: Pin,
}

/// How [`acquire_grant_for_copy`] holds a grant.
#[derive(Clone, Copy)]
enum Pin {
    /// Pinned in its active entry (and its referent, for a transitive grant), as Xen pins it.
    Pinned(Option<(DomainId, GrantRef)>),
    /// Not pinned: the entry was not pinned before, and nothing runs while one copy op does
    /// (one CPU; a batch is preempted only between ops), so Xen's pin would go from 0 up and
    /// back to 0 with nobody to see it in between. What pinning checks is checked; the frame
    /// reference is taken as for a pinned grant; the release leaves the entry as Xen's release
    /// leaves it: these status bits (`GTF_reading`, and `GTF_writing` for a writable copy)
    /// cleared, the active entry unpinned. (Were the hypervisor to run guests on other CPUs
    /// meanwhile, a granter could then see its grant unused mid-copy: this would have to pin.)
    Transient(u16),
}

/// What [`acquire_grant_for_copy`] hands back: the frame, with one general reference taken,
/// and the window of it the grant covers.
struct Window {
    mfn: Mfn,
    start: u16,
    len: u16,
    pin: Pin,
}

/// `acquire_grant_for_copy`: pins `gref` of `rd` for `ld`, taking a general reference on the
/// frame. A version-2 transitive grant pins its referent (one level: `allow_transitive` is
/// false for the referent) for `rd`, and covers the referent's window. An entry nobody has
/// pinned is not pinned ([`Pin::Transient`]), in line; the rest is [`acquire_pinned`].
#[inline(always)]
fn acquire_grant_for_copy(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    ld: DomId,
    readonly: bool,
    allow_transitive: bool,
) -> Result<Window, i16> {
    // A transitive grant's referent (`allow_transitive` false) is always pinned: the
    // transitive grant's pin records it, and its release unpins it.
    if allow_transitive {
        let rgt = tables.table(rd).ok_or(GNTST_bad_domain)?;
        if gref >= rgt.nr_entries() {
            return Err(GNTST_bad_gntref);
        }
        if rgt.active_pin(pt.mem, gref) == 0 {
            let sha = rgt.entry_v2_in(pt.mem, gref);
            if !(rgt.version() == 2 && sha.flags() & GTF_type_mask == GTF_transitive) {
                return acquire_transient(pt, rgt, rd, gref, sha, ld, readonly);
            }
        }
    }
    acquire_pinned(pt, tables, rd, gref, ld, readonly, allow_transitive)
}

/// [`acquire_grant_for_copy`] of an entry nobody has pinned, not transitive ([`Pin::Transient`]):
/// the checks, the window and the frame reference as [`acquire_pinned`] makes them.
#[inline(always)]
fn acquire_transient(
    pt: &mut Pt<'_, '_>,
    rgt: &GrantTable,
    rd: DomainId,
    gref: GrantRef,
    sha: GrantEntryV2,
    ld: DomId,
    readonly: bool,
) -> Result<Window, i16> {
    {
        let bits = status_bits(rgt, sha, false, readonly, false, ld)?;
        let (mfn, start, len, _) = frame_window(rgt, sha);
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            // `unlock_out_clear`: the bits Xen's pin set are cleared again.
            rgt.clear_flags(pt.mem, gref, bits);
            return Err(GNTST_bad_page);
        }
        Ok(Window {
            mfn,
            start,
            len,
            pin: Pin::Transient(bits),
        })
    }
}

/// The frame entry `sha` grants and the window of it a copy may touch: v1 `frame`, v2
/// `full_page.frame` or `sub_page.frame` (the same word), the whole page or the sub-page's
/// (`act->start` is a 15-bit field in Xen: an offset of 0x8000 or more wraps there); and
/// whether it is a sub-page grant.
#[inline(always)]
fn frame_window(rgt: &GrantTable, sha: GrantEntryV2) -> (Mfn, u16, u16, bool) {
    let sub = rgt.version() == 2 && sha.flags() & GTF_sub_page != 0;
    let mfn = Mfn(sha.frame());
    if sub {
        (mfn, sha.page_off() & ACTIVE_START_MASK, sha.length(), true)
    } else {
        (mfn, 0, PAGE_SIZE, false)
    }
}

/// [`acquire_grant_for_copy`] that pins, as Xen does: an entry pinned already, or a transitive
/// grant, or a transitive grant's referent.
#[inline(never)]
fn acquire_pinned(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    ld: DomId,
    readonly: bool,
    allow_transitive: bool,
) -> Result<Window, i16> {
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
    let old_pin = act.pin;
    let sha = rgt.entry_v2(pt.mem, gref);
    let v2 = rgt.version() == 2;
    let needs_status = old_pin == 0 || (!readonly && old_pin & PIN_WRITE == 0);
    // `unlock_out_clear`.
    let fail = |tables: &mut dyn GrantTables, mem: &mut dyn MachineMemoryMut, s: i16| {
        if let Some(rgt) = tables.table(rd) {
            let clear = flags_to_clear(act.pin, readonly);
            rgt.clear_flags(mem, gref, clear);
        }
        Err(s)
    };
    let mut trans = None;
    if v2 && sha.flags() & GTF_type_mask == GTF_transitive {
        if needs_status {
            set_status(pt.mem, rgt, gref, old_pin != 0, readonly, false, ld)?;
        }
        if !allow_transitive {
            // "transitive grant when transitivity not allowed".
            return fail(tables, pt.mem, GNTST_general_error);
        }
        let (td, tgref) = (sha.trans_domid(), sha.trans_gref());
        if td == rd {
            // "transitive grants cannot be self-referential".
            return fail(tables, pt.mem, GNTST_general_error);
        }
        if tables.table(td).is_none() {
            // "transitive grant referenced bad domain".
            return fail(tables, pt.mem, GNTST_general_error);
        }
        let w = match acquire_pinned(pt, tables, td, tgref, rd, readonly, false) {
            Ok(w) => w,
            Err(s) => {
                // `fixup_status_for_copy_pin`: no pin was taken on `gref`; unlike
                // `unlock_out_clear` it drops GTF_writing whenever no write pin remains, for a
                // read-only acquisition too.
                if let Some(rgt) = tables.table(rd) {
                    let clear = flags_to_clear(act.pin, false);
                    rgt.clear_flags(pt.mem, gref, clear);
                }
                return Err(s);
            }
        };
        // Pinned already (by a mapping, before the granter rewrote the entry as transitive):
        // the pin must describe what was just acquired, else the reference taken on the
        // referent's frame and the frame handed back would differ (Xen's re-check after the
        // nested acquire; Xen retries, here the copy fails).
        if old_pin != 0
            && (act.mfn != w.mfn
                || !act.is_sub_page
                || act.start != w.start & ACTIVE_START_MASK
                || act.length != w.len)
        {
            unpin(pt.mem, tables, td, tgref, inc, readonly);
            pt.put_page(w.mfn);
            return fail(tables, pt.mem, GNTST_general_error);
        }
        if old_pin == 0 {
            act = ActiveEntry {
                pin: 0,
                domid: ld,
                mfn: w.mfn,
                start: w.start & ACTIVE_START_MASK,
                length: w.len,
                // Always a sub-page: that keeps transitive grants from being mapped.
                is_sub_page: true,
            };
        }
        trans = Some((td, tgref));
    } else if needs_status {
        set_status(pt.mem, rgt, gref, old_pin != 0, readonly, false, ld)?;
        let (mfn, start, length, sub) = frame_window(rgt, sha);
        // `get_paged_frame`: a frame the granter owns.
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            return fail(tables, pt.mem, GNTST_bad_page);
        }
        if old_pin == 0 {
            act = ActiveEntry {
                pin: 0,
                domid: ld,
                mfn,
                start,
                length,
                is_sub_page: sub,
            };
        } else if act.mfn != mfn {
            // Pinned already: the pinned frame is the one copied (Xen overwrites `page` with the
            // entry's frame yet copies `act->mfn`; the two differ only if the granter rewrote
            // a pinned entry).
            pt.put_page(mfn);
            if !pt.get_page(act.mfn, Owner::Domain(rd)) {
                return fail(tables, pt.mem, GNTST_bad_domain);
            }
        }
    } else if !pt.get_page(act.mfn, Owner::Domain(rd)) {
        return fail(tables, pt.mem, GNTST_bad_domain);
    }
    act.pin += inc;
    if let Some(rgt) = tables.table(rd) {
        rgt.write_active(pt.mem, gref, &act);
    }
    Ok(Window {
        mfn: act.mfn,
        start: act.start,
        len: act.length,
        pin: Pin::Pinned(trans),
    })
}

#[inline(always)]
/// `release_grant_for_copy`: drops the pin [`acquire_grant_for_copy`] took (and the
/// referent's, for a transitive grant). The frame reference is the caller's to drop.
fn release_grant_for_copy(
    mem: &mut dyn MachineMemoryMut,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    a: Acquired,
    readonly: bool,
) {
    let trans = match a.pin {
        Pin::Transient(bits) => {
            if let Some(rgt) = tables.table(rd) {
                rgt.clear_flags(mem, a.gref, bits);
            }
            return;
        }
        Pin::Pinned(trans) => trans,
    };
    let dec = if readonly {
        GNTPIN_HSTR_INC
    } else {
        GNTPIN_HSTW_INC
    };
    unpin(mem, tables, rd, a.gref, dec, readonly);
    if let Some((td, tgref)) = trans {
        unpin(mem, tables, td, tgref, dec, readonly);
    }
}

/// `gnttab_copy_claim_buf`.
#[inline(always)]
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
        let w = acquire_grant_for_copy(pt, tables, domain, gref, ld, read_only, true)?;
        CopyBuf {
            domain,
            mfn: w.mfn,
            grant: Some(Acquired { gref, pin: w.pin }),
            read_only,
            have_type: false,
            start: w.start,
            len: w.len,
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
            grant: None,
            read_only,
            have_type: false,
            start: 0,
            len: PAGE_SIZE,
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
#[inline(always)]
fn release_buf(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, buf: &CopyBuf) {
    if let Some(a) = buf.grant {
        release_grant_for_copy(pt.mem, tables, buf.domain, a, buf.read_only);
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
    // `gnttab_copy_buf`: within the page, then within each side's window.
    let within = |off: usize, b: &CopyBuf| {
        off >= usize::from(b.start) && off + len <= usize::from(b.start) + usize::from(b.len)
    };
    let rc = if so + len > 4096 || dof + len > 4096 {
        GNTST_bad_copy_arg // "copy beyond page area"
    } else if !within(so, &src) || !within(dof, &dst) {
        GNTST_general_error // "copy source/dest out of bounds"
    } else {
        copy_bytes(pt.mem, src.mfn, so, dst.mfn, dof, len)
    };
    release_buf(pt, tables, &dst);
    release_buf(pt, tables, &src);
    rc
}

/// `memcpy` between two frames (`memmove`: the regions may overlap within a frame), with no
/// buffer between them where the memory is reached directly.
fn copy_bytes(
    mem: &mut dyn MachineMemoryMut,
    src: Mfn,
    so: usize,
    dst: Mfn,
    dof: usize,
    len: usize,
) -> i16 {
    let (from, to) = (
        Maddr(src.maddr().0 + so as u64),
        Maddr(dst.maddr().0 + dof as u64),
    );
    match mem.copy(from, to, len) {
        Some(()) => GNTST_okay,
        None => GNTST_general_error,
    }
}
