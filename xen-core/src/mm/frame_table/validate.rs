//! Type references and page-table validation: Xen's `_get_page_type`, `_put_page_type`,
//! `promote_lN_table`/`demote_lN_table`, `get_page_from_lNe`/`put_page_from_lNe` and
//! `mod_lN_entry` (`xen/arch/x86/mm.c`, Xen 4.17), without preemption.
//!
//! Validation recurses at most four levels deep: an L4 validates the L3s it maps, and so on down
//! to the L1s, whose entries take references on data frames. A table can only refer to tables
//! one level down, or read-only to itself or to an already validated table of its own level (a
//! linear page table, which is never validated on the way), so validation never meets a frame it
//! is already validating.

use hypercall_abi::errno::Errno;

use super::pte;
use super::{is_guest_l4_slot, FrameInfo, Mm, Owner, PageType, FIRST_XEN_SLOT};
use crate::domain::{DomainInfo, FlushRequest, PerfCounters};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Entries per table.
pub const ENTRIES: usize = 512;

/// The context every type-reference operation runs in: the machine-wide state, machine memory
/// (where the tables are), and the calling vCPU's counters and pending TLB work.
pub struct Pt<'a, 't, M: MachineMemoryMut + ?Sized + 'a = dyn MachineMemoryMut + 'a> {
    /// Frame table and settings.
    pub mm: &'a mut Mm<'t>,
    /// Machine memory: any, as a rule; a named type where a hot loop wants its accesses in
    /// line (`mmu_update`'s).
    pub mem: &'a mut M,
    /// The caller's counters.
    pub perf: &'a mut PerfCounters,
    /// The caller's pending TLB work.
    pub flush: &'a mut FlushRequest,
    /// The calling domain (`current->domain`): `DOMID_IO` mappings are checked against it.
    pub caller: DomainInfo,
}

impl<M: MachineMemoryMut + ?Sized> Pt<'_, '_, M> {
    #[inline]
    fn frame(&self, mfn: Mfn) -> Option<&FrameInfo> {
        self.mm.frames.get(mfn)
    }

    #[inline]
    fn frame_mut(&mut self, mfn: Mfn) -> Result<&mut FrameInfo, Errno> {
        self.mm.frames.get_mut(mfn).ok_or(Errno::EINVAL)
    }

    /// Reads entry `i` of table `t`. Frames below `max_ram_page` must be readable (the arch
    /// layer's contract). Validation fails closed on an entry it cannot read ([`Pt::read_entry`]);
    /// the teardown paths, which only drop references, read such an entry as empty.
    pub(crate) fn entry(&self, t: Mfn, i: usize) -> u64 {
        self.read_entry(t, i).unwrap_or(0)
    }

    /// Entry `i` of table `t`, or -EFAULT if machine memory refuses the read.
    fn read_entry(&self, t: Mfn, i: usize) -> Result<u64, Errno> {
        self.mem
            .read_u64(Maddr(t.maddr().0 + 8 * i as u64))
            .ok_or(Errno::EFAULT)
    }

    fn set_entry(&mut self, t: Mfn, i: usize, v: u64) -> Result<(), Errno> {
        self.mem
            .write_u64(Maddr(t.maddr().0 + 8 * i as u64), v)
            .ok_or(Errno::EFAULT)
    }

    /// `get_page`: a general reference on a frame `owner` owns.
    #[inline]
    pub fn get_page(&mut self, mfn: Mfn, owner: Owner) -> bool {
        self.mm.frames.get_page(mfn, owner, self.perf)
    }

    /// `put_page`.
    #[inline]
    pub fn put_page(&mut self, mfn: Mfn) {
        if self.mm.frames.put_page(mfn, self.perf) {
            // The frame lost its owner and type.
            self.mem.frame_types_changed();
        }
    }

    /// The domain that owns `mfn`, as the registry knows it.
    fn owner_domain(&self, mfn: Mfn) -> Result<DomainInfo, Errno> {
        match self.frame(mfn).map(FrameInfo::owner) {
            Some(Owner::Domain(id)) => self.mm.domain(id).ok_or(Errno::EINVAL),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `_get_page_type` (non-preemptible): takes a type reference on a frame the caller holds a
    /// general reference on. A frame changes type only while its type count is zero; a page
    /// table (or descriptor page) is validated when its count leaves zero.
    #[inline(always)]
    pub fn get_page_type(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        // The usual case first, in line (every writable mapping of a page mapped elsewhere):
        // a frame already in use as `ty`, and valid as it, gains one use. What the full path
        // does with it too: nothing to change, validate or flush.
        if let Some(f) = self.mm.frames.get_mut(mfn) {
            if f.type_count != 0 && f.type_count != u32::MAX && f.page_type() == ty && f.validated()
            {
                f.type_count += 1;
                self.perf.ref_ops += 1;
                return Ok(());
            }
        }
        self.get_page_type_full(mfn, ty)
    }

    /// [`Pt::get_page_type`] in full: the first use of a frame as a type (type change,
    /// validation), and every refusal.
    #[inline(never)]
    fn get_page_type_full(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        self.perf.ref_ops += 1;
        let f = self.frame_mut(mfn)?;
        if f.type_count == u32::MAX {
            return Err(Errno::EINVAL); // "Type count overflow"
        }
        let mut changed_from = None;
        if f.type_count == 0 {
            if f.page_type() != ty {
                changed_from = Some(f.page_type());
                f.set_type(ty);
                // No validation needed for writable pages; tables and descriptor pages need it.
                f.set(super::flag::VALIDATED, ty == PageType::Writable);
            }
        } else if f.page_type() != ty {
            // In use as something else (`Bad type`); this is also the answer to a table mapping
            // a table of its own level, which the callers then check for self-reference.
            return Err(Errno::EINVAL);
        } else if !f.validated() {
            // Only a table being validated further up this call chain is typed but not yet
            // validated, and tables only refer one level down (linear entries need a validated
            // target): this cannot happen.
            return Err(Errno::EINVAL);
        }
        f.type_count += 1;
        let needs_validation = !f.validated();
        if changed_from.is_some() || needs_validation {
            // Before anything is written into the frame as its new type.
            self.mem.frame_types_changed();
        }
        if changed_from.is_some_and(|t| t != PageType::None) {
            // On a type change Xen flushes every TLB that may still hold mappings made under the
            // old type (`_get_page_type`, "vital that no other CPUs are left with mappings of a
            // frame which is about to become writeable"). A frame that never had a type had no
            // such mappings.
            self.flush.flush_all(self.perf);
        }
        if needs_validation {
            // A table starts its validated life with no linear entries or uses.
            let f = self.frame_mut(mfn)?;
            debug_assert_eq!(f.linear, 0, "{mfn:?} revalidated with linear counts: {f:?}");
            f.linear = 0;
            if let Err(e) = self.validate_page(mfn, ty) {
                // `validate_page` failure: the frame loses its type altogether.
                let f = self.frame_mut(mfn)?;
                f.set_type(PageType::None);
                f.type_count = 0;
                f.set(super::flag::VALIDATED, false);
                self.mem.frame_types_changed();
                return Err(e);
            }
            self.frame_mut(mfn)?.set(super::flag::VALIDATED, true);
        }
        Ok(())
    }

    /// `_put_page_type`: drops a type reference; when the last reference on a page table goes,
    /// the table is devalidated and drops the references its entries held.
    #[inline]
    pub fn put_page_type(&mut self, mfn: Mfn) {
        self.perf.ref_ops += 1;
        let Ok(f) = self.frame_mut(mfn) else {
            debug_assert!(false, "put_page_type on {mfn:?} beyond the frame table");
            return;
        };
        debug_assert!(
            f.type_count > 0,
            "put_page_type on {mfn:?} with no type reference"
        );
        if f.type_count == 0 {
            return;
        }
        f.type_count -= 1;
        let ty = f.page_type();
        if f.type_count == 0 && ty.is_page_table() && f.validated() {
            // Page tables must be unvalidated when their count reaches zero. The type stays, so a
            // later use as the same type revalidates and a use as another type changes it.
            f.set(super::flag::VALIDATED, false);
            self.mem.frame_types_changed();
            self.devalidate_page(mfn, ty);
        }
    }

    /// `get_page_and_type_from_mfn`: a general and a type reference on a frame owned by `owner`.
    /// A frame `owner` does not own is -EINVAL; a refused type is the type's error.
    pub fn get_page_and_type(&mut self, mfn: Mfn, owner: Owner, ty: PageType) -> Result<(), Errno> {
        if !self.get_page(mfn, owner) {
            return Err(Errno::EINVAL);
        }
        self.get_page_type(mfn, ty)
            .inspect_err(|_| self.put_page(mfn))
    }

    /// `put_page_and_type`.
    #[inline]
    pub fn put_page_and_type(&mut self, mfn: Mfn) {
        self.put_page_type(mfn);
        self.put_page(mfn);
    }

    /// `validate_page`: checks every entry of a frame that just took on type `ty`.
    fn validate_page(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        match ty {
            PageType::L1 => self.promote_l1_table(mfn),
            PageType::L2 | PageType::L3 | PageType::L4 => self.promote_upper_table(mfn, ty),
            PageType::SegDesc => self.validate_segdesc_page(mfn),
            PageType::None | PageType::Writable => Ok(()),
        }
    }

    /// `devalidate_page`.
    fn devalidate_page(&mut self, mfn: Mfn, ty: PageType) {
        match ty {
            PageType::L1 => self.demote_l1_table(mfn),
            PageType::L2 | PageType::L3 | PageType::L4 => self.demote_upper_table(mfn, ty),
            _ => {}
        }
    }

    /// `validate_segdesc_page`: every descriptor must pass `check_descriptor`; the fixed-up forms
    /// are written back.
    fn validate_segdesc_page(&mut self, mfn: Mfn) -> Result<(), Errno> {
        for i in 0..ENTRIES {
            let d = self.read_entry(mfn, i)?;
            let fixed = super::check_descriptor(d).ok_or(Errno::EINVAL)?;
            if fixed != d {
                self.set_entry(mfn, i, fixed)?;
            }
        }
        Ok(())
    }

    /// `get_page_from_l1e`: the references a present L1 entry needs. `l1e_owner` owns the table;
    /// `pg_owner` is whose frames it may map (itself, or the domain named by `foreigndom`).
    /// Returns the flags Xen flips in the entry (I/O mappings are forced uncachable).
    #[inline(always)]
    pub(crate) fn get_page_from_l1e(
        &mut self,
        l1e: u64,
        l1e_owner: DomainInfo,
        pg_owner: Owner,
    ) -> Result<u64, Errno> {
        debug_assert!(pte::present(l1e));
        if l1e & pte::l1_disallow_mask(l1e_owner.privileged) != 0 {
            return Err(Errno::EINVAL); // "Bad L1 flags"
        }
        self.perf.ptes_validated += 1;
        let mfn = Mfn(pte::mfn(l1e));
        let table_owner = Owner::Domain(l1e_owner.id);
        // `page_get_owner_and_reference`; `None` when the frame is not allocated.
        let real = if self.mm.frames.mfn_valid(mfn) {
            self.mm.frames.get_owner_and_reference(mfn, self.perf)
        } else {
            Some(Owner::Io)
        };
        if real == Some(Owner::Io) {
            // Beyond RAM, or I/O memory inside it: no reference counting, privilege required.
            // (Xen took the reference only to confirm dom_io ownership.)
            if self.mm.frames.mfn_valid(mfn) {
                self.put_page(mfn);
            }
            return self.io_mapping(l1e, mfn, table_owner, pg_owner);
        }
        if real != Some(pg_owner) {
            // Someone else's frame (or a free one). Only a privileged pg_owner naming a third
            // domain may pass on the right to map that domain's pages (`xsm_priv_mapping`).
            let passed_on = matches!(real, Some(Owner::Domain(_)))
                && pg_owner != table_owner
                && self.mm.is_privileged(pg_owner);
            if !passed_on {
                if real.is_some() {
                    self.put_page(mfn);
                }
                return Err(Errno::EBUSY); // could_not_pin
            }
        }
        let write = l1e & pte::RW != 0;
        if write && self.get_page_type(mfn, PageType::Writable).is_err() {
            self.put_page(mfn);
            return Err(Errno::EBUSY); // "Could not get page type PGT_writable_page"
        }
        if pte::cacheattr(l1e) != 0 && self.frame(mfn).is_some_and(FrameInfo::xen_heap) {
            // "Attempt to change cache attributes of Xen heap page".
            if write {
                self.put_page_type(mfn);
            }
            self.put_page(mfn);
            return Err(Errno::EACCES);
        }
        Ok(0)
    }

    /// The I/O branch of `get_page_from_l1e`.
    fn io_mapping(
        &mut self,
        l1e: u64,
        mfn: Mfn,
        l1e_owner: Owner,
        pg_owner: Owner,
    ) -> Result<u64, Errno> {
        // DOMID_IO reverts to the caller for privilege checks.
        let pg_owner = if pg_owner == Owner::Io {
            Owner::Domain(self.caller.id)
        } else {
            pg_owner
        };
        let refused = |mfn: Mfn| {
            // The all-ones frame is INVALID_MFN: -EINVAL rather than -EPERM.
            if mfn.0 == pte::ADDR >> 12 {
                Errno::EINVAL
            } else {
                Errno::EPERM
            }
        };
        if !self.mm.iomem_access_permitted(pg_owner, mfn) {
            return Err(refused(mfn));
        }
        if pg_owner != l1e_owner && !self.mm.iomem_access_permitted(l1e_owner, mfn) {
            return Err(refused(mfn));
        }
        // Frames in `mmio_ro_ranges` are mapped read-only whatever was asked ("Forcing
        // read-only access to MFN").
        let ro = if l1e & pte::RW != 0 && self.mm.is_mmio_ro(mfn) {
            pte::RW
        } else {
            0
        };
        // MMIO must not be mapped cachable unless asked for (`opt_mmio_relax` off): write-back
        // becomes uncachable, write-through and write-protect become uncachable too.
        let flip = match l1e & pte::CACHE_ATTRS {
            0 => pte::PWT | pte::PCD,
            a if a == pte::PWT || a == pte::PWT | pte::PAT => pte::PCD | (l1e & pte::PAT),
            _ => 0,
        };
        Ok(ro | flip)
    }

    /// `put_page_from_l1e`: drops what `get_page_from_l1e` took.
    #[inline(always)]
    pub(crate) fn put_page_from_l1e(&mut self, l1e: u64) {
        // (An empty entry, what every map replaces, held nothing: decided in line.)
        if pte::present(l1e) {
            self.put_page_from_present_l1e(l1e);
        }
    }

    #[inline(never)]
    fn put_page_from_present_l1e(&mut self, l1e: u64) {
        let mfn = Mfn(pte::mfn(l1e));
        let write = l1e & pte::RW != 0;
        if let Some(f) = self.mm.frames.get_mut(mfn) {
            // The usual case in one look-up: a RAM frame of which neither reference dropped is
            // the last of its kind, so nothing is devalidated or freed (what the full path
            // below, `put_page_type` and `put_page`, does then too).
            if f.owner() != Owner::Io && f.count > 1 && (!write || f.type_count > 1) {
                if write {
                    f.type_count -= 1;
                    self.perf.ref_ops += 1;
                }
                f.count -= 1;
                self.perf.ref_ops += 1;
                return;
            }
        }
        if self.mm.frames.is_iomem_page(mfn) {
            return;
        }
        if write {
            self.put_page_and_type(mfn);
        } else {
            self.put_page(mfn);
        }
    }

    /// `get_page_from_l2e`/`l3e`/`l4e`: a present entry of a table of type `ty` (owned by `d`,
    /// at `table`) needs a reference of the next type down on the frame it maps.
    fn get_page_from_upper(
        &mut self,
        e: u64,
        ty: PageType,
        table: Mfn,
        d: DomainInfo,
    ) -> Result<(), Errno> {
        let disallow = match ty {
            PageType::L2 => pte::L2_DISALLOW,
            PageType::L3 => pte::L3_DISALLOW,
            _ => pte::L4_DISALLOW,
        };
        if e & disallow != 0 {
            return Err(Errno::EINVAL); // "Bad L2/L3/L4 flags" (superpages included)
        }
        self.perf.ptes_validated += 1;
        let child = ty.child().ok_or(Errno::EINVAL)?;
        let mfn = Mfn(pte::mfn(e));
        match self.get_page_and_type(mfn, Owner::Domain(d.id), child) {
            Err(Errno::EINVAL) if self.get_linear_pagetable(e, ty, table, d) => Ok(()),
            r => r,
        }
    }

    /// `get_lN_linear_pagetable`: whether entry `e` of table `table` (type `ty`, owned by `d`) is
    /// an acceptable linear mapping. It must be read-only; mapping its own table it takes nothing;
    /// mapping another validated table of the same level it takes a general and a type reference
    /// on it, provided `table` is not itself the target of linear entries and the other table
    /// holds none (`inc_linear_entries`, `inc_linear_uses`).
    fn get_linear_pagetable(&mut self, e: u64, ty: PageType, table: Mfn, d: DomainInfo) -> bool {
        if e & pte::RW != 0 {
            return false; // "Attempt to create linear p.t. with write perms"
        }
        let mfn = Mfn(pte::mfn(e));
        if mfn == table {
            return true;
        }
        let owner = Owner::Domain(d.id);
        if self.frame(table).map(FrameInfo::owner) != Some(owner) || !self.get_page(mfn, owner) {
            return false;
        }
        if !self.inc_linear(table, 1) {
            self.put_page(mfn);
            return false;
        }
        if !self.inc_linear(mfn, -1) {
            self.dec_linear(table, 1);
            self.put_page(mfn);
            return false;
        }
        let usable = self
            .frame(mfn)
            .is_some_and(|f| f.type_count < u32::MAX && f.page_type() == ty && f.validated());
        match self.frame_mut(mfn) {
            Ok(f) if usable => {
                f.type_count += 1;
                self.perf.ref_ops += 1;
                true
            }
            _ => {
                self.dec_linear(mfn, -1);
                self.dec_linear(table, 1);
                self.put_page(mfn);
                false
            }
        }
    }

    /// `inc_linear_entries` (`step` 1) or `inc_linear_uses` (`step` -1): moves the frame's
    /// `linear_pt_count` one step away from zero, unless it is on the other side of zero (or
    /// would overflow).
    fn inc_linear(&mut self, mfn: Mfn, step: i16) -> bool {
        let Ok(f) = self.frame_mut(mfn) else {
            return false;
        };
        let n = f.linear.wrapping_add(step);
        if n.signum() != step.signum() {
            return false;
        }
        f.linear = n;
        true
    }

    /// `dec_linear_entries` (`step` 1) or `dec_linear_uses` (`step` -1).
    fn dec_linear(&mut self, mfn: Mfn, step: i16) {
        if let Ok(f) = self.frame_mut(mfn) {
            debug_assert_eq!(f.linear.signum(), step.signum(), "{mfn:?}: {f:?}");
            f.linear = f.linear.wrapping_sub(step);
        }
    }

    /// `put_page_from_l2e`/`l3e`/`l4e`. A reference held on a table of the same type as `table`
    /// is a linear one (`_put_page_type` with `ptpg`): the linear counts go down with it.
    fn put_page_from_upper(&mut self, e: u64, table: Mfn) {
        let mfn = Mfn(pte::mfn(e));
        if !pte::present(e) || mfn == table {
            return;
        }
        let ty = |pt: &Self, m| pt.frame(m).map(FrameInfo::page_type);
        let linear = ty(self, mfn) == ty(self, table);
        self.put_page_type(mfn);
        if linear {
            self.dec_linear(mfn, -1);
            self.dec_linear(table, 1);
        }
        self.put_page(mfn);
    }

    /// `promote_l1_table`: every present entry must be mappable by the table's owner.
    fn promote_l1_table(&mut self, mfn: Mfn) -> Result<(), Errno> {
        let d = self.owner_domain(mfn)?;
        for i in 0..ENTRIES {
            if let Err(rc) = self.promote_l1_entry(mfn, i, d) {
                for j in (0..i).rev() {
                    let ej = self.entry(mfn, j);
                    self.put_page_from_l1e(ej);
                }
                return Err(rc);
            }
        }
        Ok(())
    }

    /// One entry of `promote_l1_table`: references taken, flags adjusted in place. On failure
    /// nothing is held for this entry.
    fn promote_l1_entry(&mut self, mfn: Mfn, i: usize, d: DomainInfo) -> Result<(), Errno> {
        let orig = self.read_entry(mfn, i)?;
        if !pte::present(orig) {
            return Ok(());
        }
        let flip = self.get_page_from_l1e(orig, d, Owner::Domain(d.id))?;
        let adjusted = pte::adjust_guest_l1e(orig ^ flip);
        self.mm.note_l1e(d.id, adjusted);
        if adjusted != orig {
            if let Err(e) = self.set_entry(mfn, i, adjusted) {
                self.put_page_from_l1e(orig);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `promote_l2_table`/`l3`/`l4`: every present guest entry must map a valid table of the
    /// next level down; an L4 then gets the hypervisor's slots (`init_xen_l4_slots`).
    fn promote_upper_table(&mut self, mfn: Mfn, ty: PageType) -> Result<(), Errno> {
        if ty == PageType::L4 {
            self.mm.l4_changed();
        }
        let d = self.owner_domain(mfn)?;
        for i in 0..ENTRIES {
            if ty == PageType::L4 && !is_guest_l4_slot(i) {
                continue;
            }
            if let Err(rc) = self.promote_upper_entry(mfn, ty, i, d) {
                for j in (0..i).rev() {
                    if ty != PageType::L4 || is_guest_l4_slot(j) {
                        let ej = self.entry(mfn, j);
                        self.put_page_from_upper(ej, mfn);
                    }
                }
                return Err(rc);
            }
        }
        if ty == PageType::L4 {
            let slots = self.mm.cfg.xen_l4_slots;
            for (k, &v) in slots.iter().enumerate() {
                if let Err(e) = self.set_entry(mfn, FIRST_XEN_SLOT + k, v) {
                    self.demote_upper_table(mfn, ty);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One entry of `promote_upper_table`; on failure nothing is held for it.
    fn promote_upper_entry(
        &mut self,
        mfn: Mfn,
        ty: PageType,
        i: usize,
        d: DomainInfo,
    ) -> Result<(), Errno> {
        let e = self.read_entry(mfn, i)?;
        if !pte::present(e) {
            return Ok(());
        }
        self.get_page_from_upper(e, ty, mfn, d)?;
        let adjusted = match ty {
            PageType::L4 => pte::adjust_guest_l4e(e),
            _ => pte::adjust_guest_l2e(e),
        };
        if adjusted != e {
            if let Err(err) = self.set_entry(mfn, i, adjusted) {
                self.put_page_from_upper(e, mfn);
                return Err(err);
            }
        }
        Ok(())
    }

    /// `demote_l1_table`.
    fn demote_l1_table(&mut self, mfn: Mfn) {
        for i in 0..ENTRIES {
            let e = self.entry(mfn, i);
            self.put_page_from_l1e(e);
        }
    }

    /// `demote_l2_table`/`l3`/`l4`.
    fn demote_upper_table(&mut self, mfn: Mfn, ty: PageType) {
        for i in (0..ENTRIES).rev() {
            if ty == PageType::L4 && !is_guest_l4_slot(i) {
                continue;
            }
            let e = self.entry(mfn, i);
            self.put_page_from_upper(e, mfn);
        }
    }

    /// `UPDATE_ENTRY`: writes `new`, keeping the accessed and dirty bits of `old` when asked
    /// (`MMU_PT_UPDATE_PRESERVE_AD`). -EBUSY if the write does not land (the memory refused it:
    /// nothing the hypervisor's own checks let through should be refused, but the counts must
    /// not say it was written if it was not), what Xen's `mod_l1_entry` and `mod_l2_entry`
    /// answer then; `mod_upper_entry` makes it -EFAULT for an L3 or L4, as Xen's
    /// `mod_l3_entry` and `mod_l4_entry` do.
    fn update_entry(
        &mut self,
        at: Maddr,
        old: u64,
        new: u64,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        let v = if preserve_ad {
            new | (old & (pte::ACCESSED | pte::DIRTY))
        } else {
            new
        };
        self.mem.write_u64(at, v).ok_or(Errno::EBUSY)
    }

    /// `mod_l1_entry`: replaces the L1 entry at `at` (in validated L1 `table`, owned by `pt_dom`)
    /// with `new`, mapping frames of `pg_dom`. The new entry's references are taken before it is
    /// written, the old one's dropped after.
    pub(crate) fn mod_l1_entry(
        &mut self,
        at: Maddr,
        new: u64,
        preserve_ad: bool,
        pt_dom: DomainInfo,
        pg_dom: Owner,
    ) -> Result<(), Errno> {
        let old = self.mem.read_u64(at).ok_or(Errno::EFAULT)?;
        let mut new = new;
        if pte::present(new) {
            if new & pte::l1_disallow_mask(pt_dom.privileged) != 0 {
                return Err(Errno::EINVAL); // "Bad L1 flags"
            }
            // Fast path for sufficiently similar mappings: no reference changes.
            if !pte::changed_beyond_whitelist(old, new) {
                let new = pte::adjust_guest_l1e(new);
                self.mm.note_l1e(pt_dom.id, new);
                return self.update_entry(at, old, new, preserve_ad);
            }
            let flip = self.get_page_from_l1e(new, pt_dom, pg_dom)?;
            new = pte::adjust_guest_l1e(new ^ flip);
            self.mm.note_l1e(pt_dom.id, new);
        }
        if let Err(e) = self.update_entry(at, old, new, preserve_ad) {
            // Not written: the new entry's references go (Xen's `put_page_from_l1e(nl1e)`).
            self.put_page_from_l1e(new);
            return Err(e);
        }
        self.put_page_from_l1e(old);
        Ok(())
    }

    /// `mod_l2_entry`/`mod_l3_entry`/`mod_l4_entry`: replaces entry `at` of validated table
    /// `table` (type `ty`, owned by `d`).
    pub(crate) fn mod_upper_entry(
        &mut self,
        at: Maddr,
        new: u64,
        ty: PageType,
        table: Mfn,
        preserve_ad: bool,
        d: DomainInfo,
    ) -> Result<(), Errno> {
        let slot = ((at.0 & 0xfff) / 8) as usize;
        if ty == PageType::L4 && !is_guest_l4_slot(slot) {
            return Err(Errno::EINVAL); // "L4 update in Xen-private area"
        }
        if ty == PageType::L4 {
            self.mm.l4_changed();
        }
        let old = self.mem.read_u64(at).ok_or(Errno::EFAULT)?;
        let adjust = |e| match ty {
            PageType::L4 => pte::adjust_guest_l4e(e),
            _ => pte::adjust_guest_l2e(e),
        };
        // A write that does not land (see `update_entry`).
        let failed = match ty {
            PageType::L2 => Errno::EBUSY,
            _ => Errno::EFAULT,
        };
        if pte::present(new) {
            let disallow = match ty {
                PageType::L2 => pte::L2_DISALLOW,
                PageType::L3 => pte::L3_DISALLOW,
                _ => pte::L4_DISALLOW,
            };
            if new & disallow != 0 {
                return Err(Errno::EINVAL);
            }
            if !pte::changed_beyond_whitelist(old, new) {
                self.update_entry(at, old, adjust(new), preserve_ad)
                    .map_err(|_| failed)?;
                self.flush_if_in_use(table);
                return Ok(());
            }
            self.get_page_from_upper(new, ty, table, d)?;
            if self
                .update_entry(at, old, adjust(new), preserve_ad)
                .is_err()
            {
                // Not written: the new entry's references go, as in Xen's `mod_lN_entry`.
                self.put_page_from_upper(adjust(new), table);
                return Err(failed);
            }
        } else {
            self.update_entry(at, old, new, preserve_ad)
                .map_err(|_| failed)?;
        }
        // Xen defers this put (`PTF_defer`, finished by `put_old_guest_table` on the way out);
        // without preemption it happens here.
        self.put_page_from_upper(old, table);
        self.flush_if_in_use(table);
        Ok(())
    }

    /// After a change to `table` (an L2, L3 or L4): the CPU may keep its old entry in the
    /// paging-structure caches until a flush (XSA-286). If the table is in use, the flush is
    /// asked for now, with the change: from here on nothing in this call goes through the MMU
    /// (`FlushRequest::owes_tlb_work`), which could otherwise walk the old entry (a read-only L4
    /// self-map, say, into the hypervisor's slots) while the checks read the new one; it is done
    /// on the way out, once however many entries a batch changes. A table merely pinned, hooked
    /// in nowhere, is nothing the CPU walks.
    fn flush_if_in_use(&mut self, table: Mfn) {
        if self
            .frame(table)
            .is_some_and(|f| f.type_count() > u32::from(f.pinned()))
        {
            self.flush.flush_all(self.perf);
        }
    }
}
