//! Table-level operations: `setup_table`, `query_size`, `set_version` and `swap_grant_ref`.

use super::*;

/// What `setup_table` and `query_size` answer besides their status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// `nr_frames`.
    pub nr_frames: u32,
    /// `max_nr_frames`.
    pub max_frames: u32,
}

/// `xsm_grant_setup`/`xsm_grant_query_size` (`XSM_TARGET`): a domain may ask about itself, a
/// privileged domain about anyone.
fn xsm_target(pt: &Pt<'_, '_>, target: DomainId) -> bool {
    target == pt.caller.id || pt.caller.privileged
}

/// The domain a `setup_table`/`query_size` names, checked: `Err(status)` if it does not exist
/// or the caller may not ask.
pub fn target_table(
    pt: &Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    dom: DomId,
) -> Result<DomainId, i16> {
    let id = any_id(pt.caller.id, dom);
    if tables.table(id).is_none() {
        return Err(GNTST_bad_domain);
    }
    if !xsm_target(pt, id) {
        return Err(GNTST_permission_denied);
    }
    Ok(id)
}

/// The body of `gnttab_setup_table` once the domain is known: grows `id`'s table to
/// `nr_frames` if needed, taking the frames from `alloc` (the free pool); the caller then copies
/// out [`GrantTable::shared_frames`]. Beyond `max_frames`, or with no frame left, Xen's
/// `GNTST_general_error` ("limited to N grant-table frames", "Expand grant table ... failed").
pub fn setup_table(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    id: DomainId,
    nr_frames: u32,
    alloc: &mut FrameSource<'_>,
) -> Result<(), i16> {
    let gt = tables.table(id).ok_or(GNTST_bad_domain)?;
    if nr_frames > gt.max_frames {
        return Err(GNTST_general_error); // "limited to N grant-table frames"
    }
    if nr_frames > gt.nr_frames && !gt.grow(pt.mm, pt.mem, id, nr_frames, alloc) {
        return Err(GNTST_general_error);
    }
    Ok(())
}

/// `gnttab_set_version` for domain `id` (the caller, whose table `gt` is): the version in
/// effect afterwards, and the error if any. Xen's rules: only 1 and 2 (-EINVAL); no reference
/// above the reserved ones ([`GNTTAB_NR_RESERVED_ENTRIES`]) may be pinned (-EBUSY); version 2
/// shares the status frames, going back to 1 takes them back (-EBUSY while the domain maps
/// one; the status frames come from `alloc`, -ENOMEM when it has none) and refuses reserved
/// entries version 1 cannot hold (-ERANGE: a frame above 32 bits, a
/// transitive grant). The whole table is cleared but for the reserved entries, which are
/// converted (their `GTF_reading`/`GTF_writing` move between the flags and the status).
pub fn set_version(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    gt: &mut GrantTable,
    id: DomainId,
    version: u32,
    alloc: &mut FrameSource<'_>,
) -> (u32, Result<(), hypercall_abi::Errno>) {
    let rc = change_version(mm, mem, gt, id, version, alloc);
    (gt.version, rc)
}

fn change_version(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    gt: &mut GrantTable,
    id: DomainId,
    version: u32,
    alloc: &mut FrameSource<'_>,
) -> Result<(), hypercall_abi::Errno> {
    use hypercall_abi::Errno;
    if version != 1 && version != 2 {
        return Err(Errno::EINVAL);
    }
    if gt.version == version {
        return Ok(());
    }
    // "some grant entries still in use".
    if (GNTTAB_NR_RESERVED_ENTRIES..gt.nr_entries()).any(|r| gt.read_active(mem, r).pin != 0) {
        return Err(Errno::EBUSY);
    }
    if gt.version == 1 {
        if !gt.populate_status_frames(mm, mem, id, gt.nr_frames, alloc) {
            return Err(Errno::ENOMEM);
        }
    } else {
        for r in 0..GNTTAB_NR_RESERVED_ENTRIES {
            let e = gt.entry_v2(mem, r);
            let kind = e.flags() & GTF_type_mask;
            let big = kind == GTF_permit_access && e.frame() >> 32 != 0;
            if big || kind == GTF_transitive {
                return Err(Errno::ERANGE);
            }
        }
    }
    // The reserved entries as version-1 words (flags with the status bits, domid, frame).
    let mut reserved = [0u64; GNTTAB_NR_RESERVED_ENTRIES as usize];
    for (r, slot) in (0..).zip(reserved.iter_mut()) {
        let e = gt.entry_v2(mem, r);
        *slot = if gt.version == 1 {
            e.words[0] | e.words[1] << 32
        } else if e.flags() & GTF_type_mask == GTF_permit_access {
            let flags = e.flags() | gt.status(mem, r);
            u64::from(flags) | u64::from(e.domid()) << 16 | (e.frame() & 0xffff_ffff) << 32
        } else {
            // "bad flags when switching version", or invalid: dropped.
            0
        };
    }
    if version == 1 {
        gt.unpopulate_status_frames(mm, id)?;
    }
    for &f in gt.shared_frames() {
        let _ = mem.write(f.maddr(), &[0u8; 4096]);
    }
    gt.version = version;
    for (r, &v) in (0..).zip(reserved.iter()) {
        let at = gt.entry_at(r);
        if version == 1 {
            let _ = mem.write_u64(at, v);
        } else {
            let flags = v as u16;
            let both = GTF_reading | GTF_writing;
            gt.set_status(mem, r, flags & both);
            let hdr = u64::from(flags & !both) | (v & 0xffff_0000);
            let _ = mem.write_u64(at, hdr);
            let _ = mem.write_u64(Maddr(at.0 + 8), v >> 32);
        }
    }
    Ok(())
}

/// `swap_grant_ref`: exchanges two unpinned entries of the caller's table.
pub fn swap_grant_ref(
    mem: &mut dyn MachineMemoryMut,
    gt: &GrantTable,
    a: GrantRef,
    b: GrantRef,
) -> i16 {
    if a >= gt.nr_entries() || b >= gt.nr_entries() {
        return GNTST_bad_gntref;
    }
    if a == b {
        return GNTST_okay;
    }
    // "ref a/b busy": pinned by anyone.
    if gt.active(mem, a).is_some() || gt.active(mem, b).is_some() {
        return hypercall_abi::grant_table::GNTST_eagain;
    }
    let (ea, eb) = (gt.entry_at(a), gt.entry_at(b));
    let n = gt.entry_bytes() as usize;
    let (Some(va), Some(vb)) = (mem.read(ea, n), mem.read(eb, n)) else {
        return GNTST_general_error;
    };
    let (va, vb) = (copy16(va), copy16(vb));
    let _ = mem.write(ea, &vb[..n]);
    let _ = mem.write(eb, &va[..n]);
    if gt.version == 2 {
        // Version 2 swaps the status too.
        let (sa, sb) = (gt.status(mem, a), gt.status(mem, b));
        gt.set_status(mem, a, sb);
        gt.set_status(mem, b, sa);
    }
    GNTST_okay
}

/// Up to 16 bytes of an entry, copied out of machine memory.
fn copy16(b: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = b.len().min(16);
    out[..n].copy_from_slice(&b[..n]);
    out
}
