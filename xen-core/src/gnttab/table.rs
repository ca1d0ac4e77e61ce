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
/// `nr_frames` if needed; the caller then copies out [`GrantTable::shared_frames`].
pub fn setup_table(
    pt: &mut Pt<'_, '_>,
    tables: &mut dyn GrantTables,
    id: DomainId,
    nr_frames: u32,
) -> Result<(), i16> {
    let gt = tables.table(id).ok_or(GNTST_bad_domain)?;
    if nr_frames > gt.max_frames {
        return Err(GNTST_general_error); // "limited to N grant-table frames"
    }
    if nr_frames > gt.nr_frames && !gt.grow(pt.mm, pt.mem, id, nr_frames) {
        return Err(GNTST_general_error);
    }
    Ok(())
}

/// `gnttab_set_version`: the version in effect afterwards, and the error if any. Version 2 is
/// refused as Xen refuses it under `gnttab=max-ver:1`.
pub fn set_version(gt: &GrantTable, version: u32) -> (u32, Result<(), hypercall_abi::Errno>) {
    use hypercall_abi::Errno;
    let rc = match version {
        1 => Ok(()),
        2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    (gt.version, rc)
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
    let (Some(va), Some(vb)) = (mem.read_u64(ea), mem.read_u64(eb)) else {
        return GNTST_general_error;
    };
    let _ = mem.write_u64(ea, vb);
    let _ = mem.write_u64(eb, va);
    GNTST_okay
}
