//! A full recount of the frame table from first principles, for tests: what every count should
//! be, given the allocations, shares, pins, base pointers, installed GDTs, grant mappings and the
//! entries of every validated table, and whether every validated entry obeys Xen's rules.

use super::pte;
use super::{is_guest_l4_slot, Mm, Owner, PageType, FIRST_XEN_SLOT};
use crate::domain::Domain;
use crate::mm::{MachineMemory, Maddr, Mfn};

/// Page-table entries and references the frame table cannot attribute by itself: grant mappings
/// (Xen's maptrack) and the entries a privileged domain wrote into another domain's tables. The
/// audit takes them from the caller.
#[derive(Clone, Debug, Default)]
pub(crate) struct ForeignRefs {
    /// L1 entries that may map another domain's frame: where the entry is and the frame. Grant
    /// host mappings, and entries written by `mmu_update` with a page-table owner other than
    /// the caller (Xen's `get_page_from_l1e` lets the page owner named by the caller, who may
    /// act on the table's owner, differ from it). Their references are those of any L1 entry.
    pub ptes: Vec<(Maddr, Mfn)>,
    /// Grant device mappings: the frame and whether the mapping is writable. Each holds a
    /// general reference, and a writable type reference when writable (`map_grant_ref`).
    pub device: Vec<(Mfn, bool)>,
}

impl ForeignRefs {
    /// Adds the mappings recorded in grant tables `tables` (every live domain's).
    pub(crate) fn add_grants<'t>(
        &mut self,
        mem: &dyn crate::mm::MachineMemoryMut,
        tables: impl IntoIterator<Item = &'t crate::gnttab::GrantTable>,
    ) {
        use hypercall_abi::grant_table::{GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly};
        for t in tables {
            for (_, m) in t.mappings(mem) {
                if m.flags & GNTMAP_host_map != 0 {
                    self.ptes.push((m.pte, m.mfn));
                }
                if m.flags & GNTMAP_device_map != 0 {
                    self.device.push((m.mfn, m.flags & GNTMAP_readonly == 0));
                }
            }
        }
    }
}

const ZERO: [u8; 512] = [0; 512];

/// The slots of a table whose present bit is set. Written for debug builds, where this runs after
/// every step of the property test: a plain loop, zero blocks skipped with a slice comparison (a
/// `memcmp`, optimised even in debug builds).
fn present_slots<'s>(bytes: &[u8], out: &'s mut [usize; 512]) -> &'s [usize] {
    let mut n = 0;
    let mut i = 0;
    while i < 512 {
        if i % 64 == 0 && bytes[i * 8..i * 8 + 512] == ZERO[..] {
            i += 64;
        } else if i % 8 == 0 && bytes[i * 8..i * 8 + 64] == ZERO[..64] {
            i += 8;
        } else {
            if bytes[i * 8] & 1 != 0 {
                out[n] = i;
                n += 1;
            }
            i += 1;
        }
    }
    &out[..n]
}

/// Recounts everything and checks every validated table; `Err` says what is wrong.
pub(crate) fn audit(mm: &Mm<'_>, mem: &dyn MachineMemory, doms: &[&Domain]) -> Result<(), String> {
    audit_with_foreign(mm, mem, doms, &ForeignRefs::default())
}

/// [`audit`] with the entries and references of [`ForeignRefs`].
pub(crate) fn audit_with_foreign(
    mm: &Mm<'_>,
    mem: &dyn MachineMemory,
    doms: &[&Domain],
    foreign: &ForeignRefs,
) -> Result<(), String> {
    let n = mm.frames.max_ram_page() as usize;
    let mut count = vec![0u64; n];
    let mut tcount = vec![0u64; n];
    let mut linear_entries = vec![0i64; n];
    let mut linear_uses = vec![0i64; n];
    let frame = |m: u64| mm.frames.get(Mfn(m));

    for (mfn, f) in mm.frames.iter() {
        let i = mfn.0 as usize;
        if f.owner() == Owner::Free && f.without_given() != super::FrameInfo::FREE {
            return Err(format!("{mfn:?} is free but {f:?}"));
        }
        if f.allocated() {
            count[i] += 1;
        }
        if f.xen_heap() {
            tcount[i] += 1;
        }
        if f.pinned() {
            if !(f.page_type().is_page_table() && f.validated()) {
                return Err(format!("{mfn:?} pinned but {f:?}"));
            }
            count[i] += 1;
            tcount[i] += 1;
        }
        if f.page_type().is_page_table() && (f.type_count() > 0) != f.validated() {
            return Err(format!(
                "{mfn:?}: a table is validated exactly while in use: {f:?}"
            ));
        }
    }
    live_cr3(mm, mem, doms, None)?;
    for d in doms {
        for t in base_pointers(d) {
            count[t.0 as usize] += 1;
            tcount[t.0 as usize] += 1;
        }
        // `set_gdt`: each frame of the guest's GDT holds a general and a descriptor-page type
        // reference while installed.
        for &g in d.vcpus.iter().flat_map(|v| v.gdt_frames.iter()) {
            let f = frame(g.0).ok_or_else(|| format!("d{} GDT frame {g:?} beyond RAM", d.id))?;
            if f.page_type() != PageType::SegDesc || f.owner() != Owner::Domain(d.id) {
                return Err(format!("d{} GDT frame {g:?} is {f:?}", d.id));
            }
            count[g.0 as usize] += 1;
            tcount[g.0 as usize] += 1;
        }
        // The FIFO event-channel frames: a general and a writable type reference each.
        for &v in &d.evtchn_frames {
            let f = frame(v.0).ok_or_else(|| format!("d{} FIFO frame {v:?} beyond RAM", d.id))?;
            if f.page_type() != PageType::Writable || f.owner() != Owner::Domain(d.id) {
                return Err(format!("d{} FIFO frame {v:?} is {f:?}", d.id));
            }
            count[v.0 as usize] += 1;
            tcount[v.0 as usize] += 1;
        }
        // `VCPUOP_register_vcpu_info`: a general and a writable type reference.
        for (v, _) in d.vcpus.iter().filter_map(|v| v.vcpu_info) {
            let f = frame(v.0).ok_or_else(|| format!("d{} vcpu_info {v:?} beyond RAM", d.id))?;
            if f.page_type() != PageType::Writable || f.owner() != Owner::Domain(d.id) {
                return Err(format!("d{} vcpu_info frame {v:?} is {f:?}", d.id));
            }
            count[v.0 as usize] += 1;
            tcount[v.0 as usize] += 1;
        }
    }
    for &(m, writable) in &foreign.device {
        if let Some(i) = count.get_mut(m.0 as usize) {
            *i += 1;
            tcount[m.0 as usize] += u64::from(writable);
        }
    }

    let mut slots = [0usize; 512];
    for (mfn, f) in mm.frames.iter() {
        let ty = f.page_type();
        if !(ty.is_page_table() && f.validated()) {
            continue;
        }
        let Owner::Domain(id) = f.owner() else {
            return Err(format!("table {mfn:?} owned by {:?}", f.owner()));
        };
        let d = mm
            .domain(id)
            .ok_or_else(|| format!("table {mfn:?} of unknown d{id}"))?;
        let bytes = mem
            .read(mfn.maddr(), 4096)
            .ok_or_else(|| format!("table {mfn:?} unreadable"))?;
        let is_l4 = ty == PageType::L4;
        if is_l4 {
            for (k, &want) in mm.cfg.xen_l4_slots.iter().enumerate() {
                let at = (FIRST_XEN_SLOT + k) * 8;
                let e = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                if e != want {
                    return Err(format!(
                        "L4 {mfn:?} slot {} is {e:#x}, not Xen's",
                        FIRST_XEN_SLOT + k
                    ));
                }
                // Read as a leaf through a self-map: never global (see `Mm::may_hold_global`).
                if e & pte::GLOBAL != 0 {
                    return Err(format!("L4 {mfn:?} slot {} is global", FIRST_XEN_SLOT + k));
                }
            }
        }
        for &i in present_slots(bytes, &mut slots) {
            if is_l4 && !is_guest_l4_slot(i) {
                continue;
            }
            let e = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
            let t = pte::mfn(e);
            let what = || format!("{ty:?} {mfn:?}[{i}] = {e:#x}");
            if ty == PageType::L1 {
                if e & pte::l1_disallow_mask(d.privileged) != 0 {
                    return Err(format!("{}: disallowed flags", what()));
                }
                if e & pte::USER == 0 {
                    return Err(format!("{}: not adjusted (no _PAGE_USER)", what()));
                }
                if e & pte::GLOBAL != 0 && !mm.may_hold_global(id) {
                    return Err(format!(
                        "{}: global, but d{id} is not marked as holding global entries",
                        what()
                    ));
                }
                let io = frame(t).is_none_or(|tf| tf.owner() == Owner::Io);
                if io {
                    if !mm.iomem_access_permitted(Owner::Domain(id), Mfn(t)) {
                        return Err(format!("{}: I/O frame without permission", what()));
                    }
                    continue;
                }
                let tf = frame(t).unwrap();
                let own = tf.owner() == Owner::Domain(id);
                let privileged = d.privileged && matches!(tf.owner(), Owner::Domain(_));
                let allowed = || {
                    let at = Maddr(mfn.maddr().0 + i as u64 * 8);
                    foreign.ptes.contains(&(at, Mfn(t)))
                };
                if !(own || privileged || allowed()) {
                    return Err(format!("{}: maps a frame of {:?}", what(), tf.owner()));
                }
                count[t as usize] += 1;
                if e & pte::RW != 0 {
                    if tf.page_type() != PageType::Writable {
                        return Err(format!("{}: writable mapping of a {tf:?} frame", what()));
                    }
                    tcount[t as usize] += 1;
                }
            } else {
                let disallow = match ty {
                    PageType::L2 => pte::L2_DISALLOW,
                    PageType::L3 => pte::L3_DISALLOW,
                    _ => pte::L4_DISALLOW,
                };
                if e & disallow != 0 || e & pte::USER == 0 {
                    return Err(format!("{}: bad or unadjusted flags", what()));
                }
                if t == mfn.0 {
                    if e & pte::RW != 0 {
                        return Err(format!("{}: writable self-map", what()));
                    }
                    continue;
                }
                let tf = frame(t).ok_or_else(|| format!("{}: beyond RAM", what()))?;
                if tf.owner() != Owner::Domain(id) || !tf.validated() {
                    return Err(format!("{}: maps {tf:?}", what()));
                }
                if tf.page_type() == ty {
                    // A linear entry: read-only, counted on both tables.
                    if e & pte::RW != 0 {
                        return Err(format!("{}: writable linear entry", what()));
                    }
                    linear_entries[mfn.0 as usize] += 1;
                    linear_uses[t as usize] += 1;
                } else if Some(tf.page_type()) != ty.child() {
                    return Err(format!("{}: maps {tf:?}", what()));
                }
                count[t as usize] += 1;
                tcount[t as usize] += 1;
            }
        }
    }

    for (mfn, f) in mm.frames.iter() {
        let i = mfn.0 as usize;
        if u64::from(f.count()) != count[i] || u64::from(f.type_count()) != tcount[i] {
            return Err(format!(
                "{mfn:?} is {f:?}; the recount says count={} type_count={}",
                count[i], tcount[i]
            ));
        }
        if linear_entries[i] != 0 && linear_uses[i] != 0 {
            return Err(format!(
                "{mfn:?} holds {} linear entries and is the target of {}",
                linear_entries[i], linear_uses[i]
            ));
        }
        if i64::from(f.linear_pt_count()) != linear_entries[i] - linear_uses[i] {
            return Err(format!(
                "{mfn:?} is {f:?}; the recount says {} linear entries, {} linear uses",
                linear_entries[i], linear_uses[i]
            ));
        }
    }
    Ok(())
}

/// The tables the domain's vCPUs' CR3 can hold: each vCPU's kernel L4 (`guest_table`) and,
/// when set, its user L4 (`guest_table_user`), each holding a general and an L4 type reference.
fn base_pointers(d: &Domain) -> impl Iterator<Item = Mfn> + '_ {
    d.vcpus
        .iter()
        .flat_map(|v| [Some(v.l4), v.user_l4])
        .flatten()
        .filter(|t| t.0 != 0)
}

/// The live-CR3 invariant. Every table a vCPU's CR3 can hold (its kernel L4 and, when set, its
/// user L4: which one depends on the guest mode, `update_cr3`) is a validated L4 of its domain
/// with a nonzero type count, so it can be neither mapped writable nor changed except through
/// validated updates, and its hypervisor slots are Xen's. `cpu`, when the caller models it, is
/// the table the CPU runs on now (CR3): it must be one of those tables, the same rule for the
/// table actually in use (a table is released only after the CPU has left it, `new_guest_cr3`).
pub(crate) fn live_cr3(
    mm: &Mm<'_>,
    mem: &dyn MachineMemory,
    doms: &[&Domain],
    cpu: Option<Mfn>,
) -> Result<(), String> {
    let live = |t: Mfn, who: &str| -> Result<(), String> {
        let f = mm
            .frames
            .get(t)
            .ok_or_else(|| format!("{who} {t:?} beyond RAM"))?;
        if f.page_type() != PageType::L4
            || !f.validated()
            || f.type_count() == 0
            || !matches!(f.owner(), Owner::Domain(_))
        {
            return Err(format!("{who} {t:?} is {f:?}"));
        }
        let bytes = mem
            .read(t.maddr(), 4096)
            .ok_or_else(|| format!("{who} {t:?} unreadable"))?;
        for (k, &want) in mm.cfg.xen_l4_slots.iter().enumerate() {
            let at = (FIRST_XEN_SLOT + k) * 8;
            let e = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            if e != want {
                return Err(format!(
                    "{who} {t:?}: slot {} is {e:#x}, not Xen's",
                    FIRST_XEN_SLOT + k
                ));
            }
        }
        Ok(())
    };
    for d in doms {
        for t in base_pointers(d) {
            live(t, &format!("d{} base pointer", d.id))?;
            if mm.frames.get(t).map(|f| f.owner()) != Some(Owner::Domain(d.id)) {
                return Err(format!("d{} base pointer {t:?} is not its own", d.id));
            }
        }
    }
    if let Some(t) = cpu {
        live(t, "the table in CR3")?;
        if !doms.iter().any(|d| base_pointers(d).any(|b| b == t)) {
            return Err(format!(
                "the table in CR3 {t:?} is no vCPU's kernel or user L4"
            ));
        }
    }
    Ok(())
}
