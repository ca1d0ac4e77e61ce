//! Mapping grants: `map_grant_ref` and `unmap_grant_ref` with their PTEs and pins, and the teardown of a dying domain's mappings and grants.

use super::*;

/// `grant_to_pte_flags` plus `adjust_guest_l1e`: the PTE of a host mapping.
fn grant_pte(mfn: Mfn, flags: u32) -> u64 {
    let mut e = mfn.maddr().0 | pte::PRESENT | pte::ACCESSED | pte::DIRTY | pte::NX;
    if flags & GNTMAP_application_map != 0 {
        e |= pte::USER;
    }
    if flags & GNTMAP_readonly == 0 {
        e |= pte::RW;
    }
    e |= u64::from((flags >> _GNTMAP_guest_avail0) & 7) << 9;
    pte::adjust_guest_l1e(e)
}

/// The L1 entry a host mapping at `addr` names (a linear address, or with
/// `GNTMAP_contains_pte` the PTE's machine address) with its L1 frame, on which a general
/// reference is taken; `None` (`GNTST_general_error`) if there is no such entry in a validated
/// L1 the caller owns.
fn grant_l1e(pt: &mut Pt<'_, '_>, l4: Mfn, addr: u64, flags: u32) -> Option<(Maddr, Mfn)> {
    let (at, l1) = if flags & GNTMAP_contains_pte != 0 {
        if addr & 7 != 0 {
            return None; // "Misaligned PTE address"
        }
        (Maddr(addr), Mfn(addr >> 12))
    } else {
        crate::mm::guest_pt::map_guest_l1e(pt.mem, l4, addr)?
    };
    if !pt.get_page(l1, Owner::Domain(pt.caller.id)) {
        return None;
    }
    // `page_lock`, then the type check.
    let is_l1 = pt
        .mm
        .frames
        .get(l1)
        .is_some_and(|f| f.validated() && f.type_count() > 0 && f.page_type() == PageType::L1);
    if !is_l1 {
        pt.put_page(l1);
        return None;
    }
    Some((at, l1))
}

/// `create_grant_pv_mapping`: writes the grant PTE for `mfn` at `addr`, dropping what the old
/// entry held. Returns where the PTE is.
fn create_host_mapping(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    addr: u64,
    mfn: Mfn,
    flags: u32,
) -> Result<Maddr, i16> {
    let (at, l1) = grant_l1e(pt, l4, addr, flags).ok_or(GNTST_general_error)?;
    let Some(old) = pt.mem.read_u64(at) else {
        pt.put_page(l1);
        return Err(GNTST_general_error);
    };
    let e = grant_pte(mfn, flags);
    pt.mm.note_l1e(pt.caller.id, e);
    let written = pt.mem.write_u64(at, e).is_some();
    pt.put_page(l1);
    if !written {
        return Err(GNTST_general_error);
    }
    pt.put_page_from_l1e(old);
    if pte::present(old) {
        // The old translation may be cached: Xen leaves that to the guest; we do not let a freed
        // frame stay reachable.
        flush_mapping(pt, addr, flags);
    }
    Ok(at)
}

fn flush_mapping(pt: &mut Pt<'_, '_>, addr: u64, flags: u32) {
    if flags & GNTMAP_contains_pte != 0 {
        pt.flush.flush_all(pt.perf);
    } else {
        pt.flush.invlpg(addr, pt.perf);
    }
}

/// `steal_linear_address`: clears the L1 entry that maps linear address `va` for the caller (in
/// a validated L1 it owns) and returns it, with the references it held, which are now the
/// caller's to place or drop. `None` if there is no such entry.
fn steal_linear_address(pt: &mut Pt<'_, '_>, l4: Mfn, va: u64) -> Option<u64> {
    let (at, l1) = grant_l1e(pt, l4, va, 0)?;
    let old = pt.mem.read_u64(at);
    let stolen = old.filter(|_| pt.mem.write_u64(at, 0).is_some());
    pt.put_page(l1);
    stolen
}

/// `replace_grant_pv_mapping`: the grant PTE at `addr` (a linear address, or with
/// `GNTMAP_contains_pte` the PTE's machine address) must still map `mfn` with the grant's
/// present and RW bits; it is replaced by the entry stolen from linear address `new_addr`
/// (`GNTTABOP_unmap_and_replace`; not with `GNTMAP_contains_pte`), or cleared when `new_addr`
/// is 0. The grant PTE's references are the caller's to drop; on failure a stolen entry's are
/// dropped here (its mapping is gone, as on Xen).
fn replace_host_mapping(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    addr: u64,
    mfn: Mfn,
    new_addr: u64,
    flags: u32,
) -> i16 {
    if flags & GNTMAP_contains_pte != 0 && new_addr != 0 {
        return GNTST_general_error; // "Replace not available in this addressing mode"
    }
    let mut nl1e = 0;
    if new_addr != 0 {
        match steal_linear_address(pt, l4, new_addr) {
            Some(e) => nl1e = e,
            None => return GNTST_general_error,
        }
        // Its translation may be cached, and its frame may go below: Xen flushes after each
        // batch whatever happened.
        pt.flush.flush_all(pt.perf);
    }
    let rc = match grant_l1e(pt, l4, addr, flags) {
        None => GNTST_general_error,
        Some((at, l1)) => {
            let rc = match pt.mem.read_u64(at) {
                Some(old) if matches_grant(old, mfn, flags) => {
                    pt.mm.note_l1e(pt.caller.id, nl1e);
                    if pt.mem.write_u64(at, nl1e).is_some() {
                        GNTST_okay
                    } else {
                        GNTST_general_error
                    }
                }
                // "PTE doesn't match grant".
                _ => GNTST_general_error,
            };
            pt.put_page(l1);
            rc
        }
    };
    if rc != GNTST_okay {
        // "If there was an error, we are still responsible for the stolen pte."
        pt.put_page_from_l1e(nl1e);
    }
    rc
}

/// Whether PTE `e` maps `mfn` with the present and RW bits a grant mapping with `flags` has.
fn matches_grant(e: u64, mfn: Mfn, flags: u32) -> bool {
    let want = grant_pte(mfn, flags);
    pte::mfn(e) == mfn.0 && (e ^ want) & (pte::PRESENT | pte::RW) == 0
}

/// `map_grant_ref`: one `GNTTABOP_map_grant_ref` for the caller (`pt.caller`), whose current
/// page tables are `l4`. Fills `status`, and on success `handle` and `dev_bus_addr`.
pub fn map_grant_ref(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    op: &mut GnttabMapGrantRef,
    alloc: &mut FrameSource<'_>,
) {
    let ld = pt.caller.id;
    let flags = op.flags;
    let ro = flags & GNTMAP_readonly != 0;
    if flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
        op.status = GNTST_bad_gntref; // "Bad flags in grant map op"
        return;
    }
    let rd = op.dom;
    if tables.table(rd).is_none() {
        op.status = GNTST_bad_domain;
        return;
    }
    let handle = tables
        .table(ld)
        .and_then(|t| t.get_maptrack_handle(pt.mm, pt.mem, alloc));
    let Some(handle) = handle else {
        // "Failed to obtain maptrack handle": only this mapper is out of handles (or the pool
        // of frames for more).
        op.status = GNTST_no_space;
        return;
    };
    let Some(rgt) = tables.table(rd) else {
        op.status = GNTST_bad_domain;
        return;
    };
    let gref = op.r#ref;
    if gref >= rgt.nr_entries() {
        op.status = GNTST_bad_gntref;
        return;
    }
    // `active_entry_acquire`: the reference's own entry, whoever else pins what.
    let mut act = rgt.read_active(pt.mem, gref);
    let inc = pin_inc(flags);
    // "Bad domain, or risk of counter overflow, or subpage".
    if act.pin != 0 && (act.domid != ld || act.pin & overflow_mask(inc) != 0 || act.is_sub_page) {
        op.status = GNTST_general_error;
        return;
    }
    let mut page_ref = false;
    if act.pin == 0 || (!ro && act.pin & PIN_WRITE == 0) {
        if let Err(s) = set_status(pt.mem, rgt, gref, act.pin != 0, ro, true, ld) {
            op.status = s;
            return;
        }
        if act.pin == 0 {
            // v1 `frame`, v2 `full_page.frame` (a transitive entry's words read the same way).
            let mfn = Mfn(rgt.entry_v2(pt.mem, gref).frame());
            // `get_paged_frame` for a PV granter: the entry names a machine frame it owns.
            if !pt.get_page(mfn, Owner::Domain(rd)) {
                let clear = flags_to_clear(act.pin, ro);
                rgt.clear_flags(pt.mem, gref, clear);
                op.status = GNTST_bad_page;
                return;
            }
            page_ref = true;
            act = ActiveEntry {
                pin: 0,
                domid: ld,
                mfn,
                start: 0,
                length: PAGE_SIZE,
                is_sub_page: false,
            };
        }
    }
    act.pin += inc;
    rgt.write_active(pt.mem, gref, &act);
    let mfn = act.mfn;

    // The references, taken with the pin released (as Xen drops the grant lock here).
    let (mut refcnt, mut typecnt) = (0u32, 0u32);
    let owner = if page_ref {
        Some(Owner::Domain(rd))
    } else {
        pt.mm.frames.get_owner_and_reference(mfn, pt.perf)
    };
    if owner.is_some() {
        refcnt += 1;
    }
    let rc = if owner == Some(Owner::Domain(rd)) {
        take_map_refs(pt, l4, op, mfn, rd, &mut refcnt, &mut typecnt)
    } else {
        Err(GNTST_general_error) // "Could not pin grant frame"
    };
    match rc {
        Ok(pte_at) => {
            if let Some(lgt) = tables.table(ld) {
                let m = Mapping {
                    flags,
                    gref: op.r#ref,
                    domid: rd,
                    mfn,
                    pte: pte_at,
                };
                lgt.write_mapping(pt.mem, handle, &m);
            }
            op.dev_bus_addr = mfn.maddr().0;
            op.handle = handle;
            op.status = GNTST_okay;
        }
        Err(s) => {
            for _ in 0..typecnt {
                pt.put_page_type(mfn);
            }
            for _ in 0..refcnt {
                pt.put_page(mfn);
            }
            if let Some(rgt) = tables.table(rd) {
                let mut act = rgt.read_active(pt.mem, gref);
                act.pin -= inc;
                rgt.write_active(pt.mem, gref, &act);
                let clear = flags_to_clear(act.pin, ro);
                rgt.clear_flags(pt.mem, gref, clear);
            }
            op.status = s;
        }
    }
}

/// The pin counts one mapping with `flags` adds.
fn pin_inc(flags: u32) -> u32 {
    let ro = flags & GNTMAP_readonly != 0;
    let mut inc = 0;
    if flags & GNTMAP_device_map != 0 {
        inc += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
    }
    if flags & GNTMAP_host_map != 0 {
        inc += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
    }
    inc
}

/// The `owner == rd` branch of `map_grant_ref`: type references and the host PTE.
fn take_map_refs(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    op: &GnttabMapGrantRef,
    mfn: Mfn,
    rd: DomainId,
    refcnt: &mut u32,
    typecnt: &mut u32,
) -> Result<Maddr, i16> {
    let flags = op.flags;
    let ro = flags & GNTMAP_readonly != 0;
    if flags & GNTMAP_device_map != 0 && !ro {
        pt.get_page_type(mfn, PageType::Writable)
            .map_err(|_| GNTST_general_error)?;
        *typecnt += 1;
    }
    if flags & GNTMAP_host_map == 0 {
        return Ok(Maddr(0));
    }
    if flags & GNTMAP_device_map != 0 {
        if !pt.get_page(mfn, Owner::Domain(rd)) {
            return Err(GNTST_general_error);
        }
        *refcnt += 1;
    }
    if !ro {
        pt.get_page_type(mfn, PageType::Writable)
            .map_err(|_| GNTST_general_error)?;
        *typecnt += 1;
    }
    create_host_mapping(pt, l4, op.host_addr, mfn, flags)
}

/// `unmap_grant_ref` (`unmap_common` then `unmap_common_complete`): one
/// `GNTTABOP_unmap_grant_ref` for the caller; fills `status`. A flush of the caller's TLB is
/// recorded when a host mapping went.
pub fn unmap_grant_ref(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    op: &mut GnttabUnmapGrantRef,
) {
    op.status = unmap_common(pt, l4, tables, op.host_addr, op.dev_bus_addr, op.handle, 0);
}

/// `unmap_and_replace`: one `GNTTABOP_unmap_and_replace` for the caller, an unmap of the host
/// mapping at `host_addr` whose PTE is replaced by the one at `new_addr` (which is cleared);
/// fills `status`.
pub fn unmap_and_replace(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    op: &mut GnttabUnmapAndReplace,
) {
    op.status = unmap_common(pt, l4, tables, op.host_addr, 0, op.handle, op.new_addr);
}

/// `unmap_common` then `unmap_common_complete`: the status. A host mapping goes only with a
/// `host_addr`, a device mapping only with a `dev_bus_addr`; the handle is freed when neither
/// is left.
fn unmap_common(
    pt: &mut Pt<'_, '_>,
    l4: Mfn,
    tables: &mut dyn GrantTables,
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    new_addr: u64,
) -> i16 {
    let ld = pt.caller.id;
    // A handle beyond the maptrack, or "Zero flags for handle".
    let Some(map) = tables.table(ld).and_then(|t| t.mapping(pt.mem, handle)) else {
        return GNTST_bad_handle;
    };
    let Some(rgt) = tables.table(map.domid) else {
        // Xen crashes the caller here (a granter vanished under a mapping); granters' deaths
        // revoke their grants first ([`revoke_grants_of`]), so this cannot happen.
        return GNTST_bad_handle;
    };
    if map.gref >= rgt.nr_entries() {
        return GNTST_bad_handle; // "Unstable handle"
    }
    let Some(act) = rgt.active(pt.mem, map.gref) else {
        return GNTST_bad_handle;
    };
    let mfn = act.mfn;
    // "Bus address doesn't match gntref": checked only for a device mapping, and answered
    // GNTST_bad_dev_addr, as Xen 4.17 does (differential cases
    // `grant.unmap_device_wrong_bus_addr`, `grant.unmap_host_wrong_bus_addr`).
    if dev_bus_addr != 0 && map.flags & GNTMAP_device_map != 0 && dev_bus_addr != mfn.maddr().0 {
        return GNTST_bad_dev_addr;
    }
    let mut flags = map.flags;
    let mut done = 0u32;
    if host_addr != 0 && flags & GNTMAP_host_map != 0 {
        let rc = replace_host_mapping(pt, l4, host_addr, mfn, new_addr, flags);
        if rc != GNTST_okay {
            return rc;
        }
        flags &= !GNTMAP_host_map;
        done |= GNTMAP_host_map | (map.flags & GNTMAP_readonly);
        pt.flush.flush_all(pt.perf); // `gnttab_flush_tlb`
    }
    if dev_bus_addr != 0 && flags & GNTMAP_device_map != 0 {
        flags &= !GNTMAP_device_map;
        done |= GNTMAP_device_map | (map.flags & GNTMAP_readonly);
    }
    if let Some(lgt) = tables.table(ld) {
        let left = if flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
            0
        } else {
            flags
        };
        lgt.write_mapping(pt.mem, handle, &Mapping { flags: left, ..map });
    }
    if done != 0 {
        complete_unmap(pt, tables, map.domid, map.gref, mfn, done);
    }
    GNTST_okay
}

/// `unmap_common_complete`: drops the references and pins of what an unmap took away (`done`:
/// `GNTMAP_host_map`/`device_map`, with `GNTMAP_readonly` for a read-only mapping).
fn complete_unmap(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    rd: DomainId,
    gref: GrantRef,
    mfn: Mfn,
    done: u32,
) {
    let ro = done & GNTMAP_readonly != 0;
    let mut dec = 0;
    if done & GNTMAP_device_map != 0 {
        if !pt.mm.frames.is_iomem_page(mfn) {
            if ro {
                pt.put_page(mfn);
            } else {
                pt.put_page_and_type(mfn);
            }
        }
        dec += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
    }
    if done & GNTMAP_host_map != 0 {
        // The references the PTE held.
        if !pt.mm.frames.is_iomem_page(mfn) {
            if !ro {
                pt.put_page_type(mfn);
            }
            pt.put_page(mfn);
        }
        dec += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
    }
    unpin(pt.mem, tables, rd, gref, dec, ro);
}

/// `gnttab_release_mappings`, run when domain `dying` dies (before its page tables are torn
/// down): every mapping it holds goes. Pins come off the granters' entries (with their
/// `GTF_reading`/`GTF_writing`), device mappings drop their references; a host mapping's
/// references belong to its PTE, which tearing down the dying domain's tables drops (Xen:
/// `gnttab_release_host_mappings` is false for PV).
pub fn release_mappings(pt: &mut Pt<'_, '_>, tables: &mut dyn GrantTables, dying: DomainId) {
    let Some(len) = tables.table(dying).map(|t| t.maptrack_len()) else {
        return;
    };
    for h in 0..len {
        let Some(map) = tables.table(dying).and_then(|t| t.mapping(pt.mem, h)) else {
            continue;
        };
        if map.flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
            continue;
        }
        if let Some(t) = tables.table(dying) {
            t.write_mapping(pt.mem, h, &Mapping::FREE);
        }
        let ro = map.flags & GNTMAP_readonly != 0;
        let mut dec = 0;
        if map.flags & GNTMAP_device_map != 0 {
            if !pt.mm.frames.is_iomem_page(map.mfn) {
                if ro {
                    pt.put_page(map.mfn);
                } else {
                    pt.put_page_and_type(map.mfn);
                }
            }
            dec += if ro { GNTPIN_DEVR_INC } else { GNTPIN_DEVW_INC };
        }
        if map.flags & GNTMAP_host_map != 0 {
            dec += if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
        }
        unpin(pt.mem, tables, map.domid, map.gref, dec, ro);
    }
}

/// Run when domain `dying` dies, before its frames are taken back: every other domain's
/// mapping of its grants is revoked, so that its frames can be freed and none stays reachable
/// through a dead grant. (Xen instead keeps the frames of a dead granter until the mappers
/// unmap: a zombie domain; here the mappers lose their mappings.) A host mapping whose PTE still
/// maps the frame has the PTE cleared and its references dropped (one that the mapper already
/// replaced itself gave them back then); device mappings drop theirs. `flush` is called with
/// each mapper whose PTEs changed: its TLB must be flushed (global entries included) before it
/// runs again.
pub fn revoke_grants_of(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    dying: DomainId,
    flush: &mut dyn FnMut(DomainId),
) {
    let mut ids: heapless::Vec<DomainId, { crate::mm::frame_table::MAX_DOMAINS }> =
        heapless::Vec::new();
    tables.ids(&mut |id| {
        if id != dying {
            let _ = ids.push(id);
        }
    });
    for &mapper in &ids {
        let mut flushed = false;
        let len = tables.table(mapper).map_or(0, |t| t.maptrack_len());
        for h in 0..len {
            let Some(map) = tables.table(mapper).and_then(|t| t.mapping(pt.mem, h)) else {
                continue;
            };
            if map.domid != dying {
                continue;
            }
            if let Some(t) = tables.table(mapper) {
                t.write_mapping(pt.mem, h, &Mapping::FREE);
            }
            let ro = map.flags & GNTMAP_readonly != 0;
            let mut done = map.flags & GNTMAP_device_map;
            if map.flags & GNTMAP_host_map != 0 && clear_grant_pte(pt, mapper, &map) {
                done |= GNTMAP_host_map;
                flushed = true;
            }
            if done != 0 {
                if ro {
                    done |= GNTMAP_readonly;
                }
                complete_unmap(pt, tables, dying, map.gref, map.mfn, done);
            }
            // A host mapping whose PTE is gone already had its references dropped; its pin goes
            // too.
            if map.flags & GNTMAP_host_map != 0 && done & GNTMAP_host_map == 0 {
                let dec = if ro { GNTPIN_HSTR_INC } else { GNTPIN_HSTW_INC };
                unpin(pt.mem, tables, dying, map.gref, dec, ro);
            }
        }
        if flushed {
            flush(mapper);
        }
    }
}

/// Clears the grant PTE of `map` (held by `mapper`) if it is still there: in a validated L1 the
/// mapper owns, mapping the frame with the grant's access.
fn clear_grant_pte(pt: &mut Pt<'_, '_>, mapper: DomainId, map: &Mapping) -> bool {
    let l1 = Mfn(map.pte.0 >> 12);
    let is_l1 = pt.mm.frames.get(l1).is_some_and(|f| {
        f.owner() == Owner::Domain(mapper)
            && f.validated()
            && f.type_count() > 0
            && f.page_type() == PageType::L1
    });
    if !is_l1 {
        return false;
    }
    match pt.mem.read_u64(map.pte) {
        Some(e) if matches_grant(e, map.mfn, map.flags) => pt.mem.write_u64(map.pte, 0).is_some(),
        _ => false,
    }
}
