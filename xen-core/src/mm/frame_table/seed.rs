//! Giving frames to domains and taking them back: what the arch layer calls when it builds a
//! domain and when one dies.
//!
//! Building dom0 follows `dom0_construct_pv` (`xen/arch/x86/pv/dom0_build.c`): the domain's pages
//! are assigned to it (`assign_pages`, each with its `PGC_allocated` reference), its shared_info
//! page is shared with it writable (`share_xen_page_with_guest`), and the bootstrap page tables
//! the builder wrote are validated with the top-level table pinned and installed as the vCPU's
//! base pointer. Xen sets the resulting counts by hand (`mark_pv_pt_pages_rdonly`); here they come
//! from validating the tables for real, which must give the same numbers. Taking a domain apart
//! follows `domain_relinquish_resources`: base pointers dropped, pins dropped, allocation
//! references dropped.

use core::fmt;

use hypercall_abi::errno::Errno;

use super::{flag, FrameInfo, Mm, Owner, PageType, Pt};
use crate::domain::{Domain, DomainId, PerfCounters};
use crate::mm::frame_alloc::FrameRange;
use crate::mm::{MachineMemoryMut, Maddr, Mfn, PtLevel};

/// Why a domain's frames could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedError {
    /// More than [`super::MAX_DOMAINS`] domains.
    TooManyDomains,
    /// More than [`super::MAX_IO_DENIED`] withheld I/O ranges.
    TooManyIoRanges,
    /// A reserved domain id (`DOMID_FIRST_RESERVED` and up).
    BadDomainId {
        /// The id.
        id: DomainId,
    },
    /// The domain is registered already.
    DomainExists {
        /// The id.
        id: DomainId,
    },
    /// The domain is not registered.
    UnknownDomain {
        /// The id.
        id: DomainId,
    },
    /// The frame is beyond the frame table.
    OutOfRange {
        /// The frame.
        mfn: Mfn,
    },
    /// The frame already has an owner.
    NotFree {
        /// The frame.
        mfn: Mfn,
        /// Its owner.
        owner: Owner,
    },
    /// The top-level table was refused.
    Refused {
        /// The table.
        mfn: Mfn,
        /// Xen's error for it.
        errno: Errno,
    },
    /// A table the builder reported is not a validated table of its level afterwards.
    NotValidated {
        /// The table.
        mfn: Mfn,
        /// Its level.
        level: PtLevel,
    },
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SeedError::TooManyDomains => write!(f, "more than {} domains", super::MAX_DOMAINS),
            SeedError::TooManyIoRanges => {
                write!(f, "more than {} denied I/O ranges", super::MAX_IO_DENIED)
            }
            SeedError::BadDomainId { id } => write!(f, "domain id {id:#x} is reserved"),
            SeedError::DomainExists { id } => write!(f, "domain {id} exists already"),
            SeedError::UnknownDomain { id } => write!(f, "no domain {id}"),
            SeedError::OutOfRange { mfn } => {
                write!(f, "frame {:#x} is beyond the frame table", mfn.0)
            }
            SeedError::NotFree { mfn, owner } => {
                write!(f, "frame {:#x} already belongs to {owner:?}", mfn.0)
            }
            SeedError::Refused { mfn, errno } => {
                write!(f, "top-level table {:#x} refused: {errno}", mfn.0)
            }
            SeedError::NotValidated { mfn, level } => {
                write!(f, "{level} table {:#x} did not validate", mfn.0)
            }
        }
    }
}

/// What became of a page a domain gave up ([`Mm::guest_remove_page`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Nothing referenced it any more: it is free (and loose, until the pool takes it back).
    Freed,
    /// Something still references it (a mapping, a page-table use, a pin, a grant mapping): it
    /// stays the domain's, without its allocation reference, until the last reference goes.
    StillReferenced,
}

impl<'t> Mm<'t> {
    /// `guest_remove_page` for a PV domain (`xen/common/memory.c`; a PV guest names the machine
    /// frame itself): `mfn` beyond the frame table is -EINVAL, a frame `id` does not own (or
    /// one with no reference) is -ENXIO; otherwise its allocation reference is dropped, if it
    /// still has one, and the frame is freed once nothing else references it. A second removal
    /// of a frame that is still referenced succeeds again and changes nothing, as in Xen.
    ///
    /// One deviation, on purpose: a hypervisor page shared with the domain (shared_info, grant
    /// frames) is refused with -EBUSY. Xen lets the guest drop the share's allocation reference
    /// and keeps using the page; here those frames are the domain's pool record until it dies.
    pub fn guest_remove_page(
        &mut self,
        mfn: Mfn,
        id: DomainId,
        perf: &mut PerfCounters,
    ) -> Result<Removed, Errno> {
        if !self.frames.mfn_valid(mfn) {
            return Err(Errno::EINVAL);
        }
        if !self.frames.get_page(mfn, Owner::Domain(id), perf) {
            return Err(Errno::ENXIO);
        }
        let f = self.frames.get_mut(mfn).ok_or(Errno::EINVAL)?;
        if f.xen_heap() {
            self.frames.put_page(mfn, perf);
            return Err(Errno::EBUSY);
        }
        if f.allocated() {
            f.set(flag::ALLOCATED, false);
            self.frames.put_page(mfn, perf);
        }
        self.frames.put_page(mfn, perf);
        Ok(match self.frames.get(mfn) {
            Some(f) if f.owner() == Owner::Free => Removed::Freed,
            _ => Removed::StillReferenced,
        })
    }

    /// `steal_page(d, page, MEMF_no_refcount)` for `XENMEM_exchange` (`xen/arch/x86/mm.c`): a
    /// frame `id` owns, not a hypervisor page shared with it, whose only reference is its
    /// allocation (not mapped, not a page table, not pinned, not grant-mapped) stops being the
    /// domain's: it becomes free (loose, its pool mark kept) and the entry it had is returned, so
    /// that [`Mm::unsteal_page`] can give it back if the exchange fails. Anything else is
    /// -EINVAL, and changes nothing. The domain's page count is the caller's business.
    pub fn steal_page(&mut self, mfn: Mfn, id: DomainId) -> Result<super::FrameInfo, Errno> {
        let f = self.frames.get_mut(mfn).ok_or(Errno::EINVAL)?;
        if f.owner() != Owner::Domain(id)
            || f.xen_heap()
            || !f.allocated()
            || f.pinned()
            || f.count != 1
            || f.type_count != 0
        {
            return Err(Errno::EINVAL);
        }
        let saved = *f;
        let given = f.given;
        *f = super::FrameInfo::FREE;
        f.given = given;
        Ok(saved)
    }

    /// Gives a frame [`Mm::steal_page`] took back to its domain as it was (Xen's
    /// `assign_pages(page, 1, d, MEMF_no_refcount)` on the failure path of the exchange).
    pub fn unsteal_page(&mut self, mfn: Mfn, saved: super::FrameInfo) {
        if let Some(f) = self.frames.get_mut(mfn) {
            debug_assert!(
                f.owner() == Owner::Free && f.count == 0,
                "{mfn:?} reused while stolen"
            );
            *f = saved;
        }
    }

    /// A frame nobody uses any more goes back to `pool`, its M2P entry invalidated (the last
    /// `put_page` of Xen's `free_domheap_page`).
    pub fn give_back(
        &mut self,
        mem: &mut dyn MachineMemoryMut,
        pool: &mut dyn crate::mm::frame_alloc::FramePool,
        mfn: Mfn,
    ) {
        let _ = self.take_loose(mfn);
        let m2p = self.cfg.m2p;
        let _ = mem.write_u64(Maddr(m2p.0 + mfn.0 * 8), super::INVALID_M2P_ENTRY);
        pool.give_back(mem, mfn);
    }

    /// Takes a loose frame back for the pool: clears its mark and returns the domain it had
    /// been given to. `None` if the frame is not loose (in use, or back already).
    pub fn take_loose(&mut self, mfn: Mfn) -> Option<DomainId> {
        let f = self.frames.get_mut(mfn)?;
        if !f.loose() {
            return None;
        }
        let id = f.given;
        f.given = hypercall_abi::xen::DOMID_INVALID;
        Some(id)
    }

    /// The hypervisor frames of `range` that no guest holds any more become free again (a dead
    /// domain's grant-table frames, before they go back to the pool); others stay as they are.
    pub fn release_xen(&mut self, range: FrameRange) {
        for m in range.start.0..range.end.0 {
            if let Some(f) = self.frames.get_mut(Mfn(m)) {
                if f.owner() == Owner::Xen && f.count == 0 {
                    *f = FrameInfo::FREE;
                }
            }
        }
    }

    /// Clears the pool's mark on the free frames of `range`: a builder that failed gives them
    /// back to the pool directly.
    pub fn clear_given(&mut self, range: FrameRange) {
        for m in range.start.0..range.end.0 {
            let _ = self.take_loose(Mfn(m));
        }
    }

    /// A [`Pt`] for work done on behalf of `dom` outside a hypercall.
    fn pt_for<'a>(
        &'a mut self,
        mem: &'a mut dyn MachineMemoryMut,
        dom: &'a mut Domain,
    ) -> Pt<'a, 't> {
        let caller = dom.info();
        let vcpu = dom.vcpu_mut();
        Pt {
            mm: self,
            mem,
            perf: &mut vcpu.perf,
            flush: &mut vcpu.flush,
            caller,
        }
    }

    /// Gives frames `range` to `owner` (`assign_pages`). A domain must be registered and gets an
    /// allocation reference on each frame; [`Owner::Io`] frames are shared writable with
    /// `DOMID_IO` (`share_xen_page_with_guest(.., dom_io, SHARE_rw)`, as Xen does for the first
    /// MiB and e820 holes); [`Owner::Xen`] marks hypervisor frames, which no guest may map. Every
    /// frame must be free; nothing changes unless all are.
    pub fn assign(&mut self, range: FrameRange, owner: Owner) -> Result<(), SeedError> {
        match owner {
            Owner::Domain(id) if self.domain(id).is_none() => {
                return Err(SeedError::UnknownDomain { id })
            }
            Owner::Free => {
                return Err(SeedError::NotFree {
                    mfn: range.start,
                    owner,
                })
            }
            _ => {}
        }
        for m in range.start.0..range.end.0 {
            let f = self
                .frames
                .get(Mfn(m))
                .ok_or(SeedError::OutOfRange { mfn: Mfn(m) })?;
            // A loose frame (free, but not back in the pool yet) is still counted against the
            // domain it was given to: handing it out again would count it twice.
            if f.owner() != Owner::Free || f.loose() {
                return Err(SeedError::NotFree {
                    mfn: Mfn(m),
                    owner: f.owner(),
                });
            }
        }
        for m in range.start.0..range.end.0 {
            let Some(f) = self.frames.get_mut(Mfn(m)) else {
                continue;
            };
            f.owner = owner.to_bits();
            match owner {
                Owner::Domain(id) => {
                    f.count = 1;
                    f.flags = flag::ALLOCATED;
                    f.given = id;
                }
                Owner::Io => {
                    f.count = 1;
                    f.flags = flag::ALLOCATED | flag::XEN_HEAP | flag::VALIDATED;
                    f.set_type(PageType::Writable);
                    f.type_count = 1;
                }
                Owner::Xen | Owner::Free => {}
            }
        }
        Ok(())
    }

    /// `share_xen_page_with_guest`: a hypervisor page (shared_info) becomes `id`'s, typed writable
    /// (or read-only) for good: the share holds a type reference, so it can never become a page
    /// table, and the domain may map it like its own memory.
    pub fn share_xen_page_with_guest(
        &mut self,
        mfn: Mfn,
        id: DomainId,
        writable: bool,
    ) -> Result<(), SeedError> {
        if self.domain(id).is_none() {
            return Err(SeedError::UnknownDomain { id });
        }
        let f = self
            .frames
            .get_mut(mfn)
            .ok_or(SeedError::OutOfRange { mfn })?;
        match f.owner() {
            Owner::Free | Owner::Xen if f.count == 0 => {}
            owner => return Err(SeedError::NotFree { mfn, owner }),
        }
        f.owner = Owner::Domain(id).to_bits();
        f.count = 1;
        f.flags = flag::ALLOCATED | flag::XEN_HEAP | flag::VALIDATED;
        f.set_type(if writable {
            PageType::Writable
        } else {
            PageType::None
        });
        f.type_count = 1;
        Ok(())
    }

    /// Whether `mfn` is a hypervisor page shared with `id` ([`Mm::share_xen_page_with_guest`])
    /// that nothing but the share references: no mapping, no grant, no other use.
    pub fn is_unreferenced_share(&self, mfn: Mfn, id: DomainId) -> bool {
        self.frames.get(mfn).is_some_and(|f| {
            f.owner() == Owner::Domain(id) && f.xen_heap() && f.count == 1 && f.type_count == 1
        })
    }

    /// Undoes [`Mm::share_xen_page_with_guest`] for a page [`Mm::is_unreferenced_share`]
    /// says nothing else references (`put_page_alloc_ref` then `page_set_owner(pg, NULL)`): it
    /// is the hypervisor's again (marked so: the pool can never hand it out while the
    /// hypervisor keeps it). Does nothing to any other frame.
    pub fn unshare_xen_page(&mut self, mfn: Mfn, id: DomainId) {
        if !self.is_unreferenced_share(mfn, id) {
            return;
        }
        if let Some(f) = self.frames.get_mut(mfn) {
            let given = f.given;
            *f = FrameInfo::FREE;
            f.owner = Owner::Xen.to_bits();
            f.given = given;
        }
    }

    /// Validates the bootstrap page tables rooted at `l4`, pins `l4` (Xen pins dom0's top-level
    /// table) and installs it as `dom`'s base pointer (`guest_table`), each holding a general and
    /// a type reference. `tables` lists every table the builder wrote
    /// ([`BuiltDomain::page_table_frames`]); each must come out a validated table of its level.
    pub fn validate_and_pin_initial_tables(
        &mut self,
        mem: &mut dyn MachineMemoryMut,
        dom: &mut Domain,
        l4: Mfn,
        tables: impl IntoIterator<Item = (Mfn, PtLevel)>,
    ) -> Result<(), SeedError> {
        let owner = Owner::Domain(dom.id);
        {
            let mut pt = self.pt_for(mem, dom);
            pt.get_page_and_type(l4, owner, PageType::L4)
                .map_err(|errno| SeedError::Refused { mfn: l4, errno })?;
            if let Some(f) = pt.mm.frames.get_mut(l4) {
                f.set(flag::PINNED, true);
            }
            pt.get_page_and_type(l4, owner, PageType::L4)
                .map_err(|errno| SeedError::Refused { mfn: l4, errno })?;
        }
        dom.vcpu_mut().l4 = l4;
        for (mfn, level) in tables {
            let ok = self.frames.get(mfn).is_some_and(|f| {
                f.page_type() == PageType::of_level(level)
                    && f.validated()
                    && f.type_count() > 0
                    && f.owner() == owner
            });
            if !ok {
                return Err(SeedError::NotValidated { mfn, level });
            }
        }
        Ok(())
    }

    /// Takes a dead domain's frames back (`domain_relinquish_resources`): drops its base
    /// pointers, its GDT frames, its pins, its shares and its allocation references, then
    /// forgets it. Returns how many of its frames are still referenced (by another domain's
    /// tables) and so are not freed; they stay owned by the id, as Xen's zombie domains keep
    /// theirs.
    ///
    /// Every reference the hypervisor holds on the domain's behalf goes here: the vCPU's kernel
    /// and user L4 (CR3 is elsewhere by now: a domain is torn down from dom0's entry, on dom0's
    /// tables), the frames of the GDT it installed with `set_gdt`, the frame of its registered
    /// `vcpu_info`, pins, and the shared pages
    /// (shared_info, grant-table frames). The LDT (`MMUEXT_SET_LDT`) holds none: its pages are
    /// not mapped by the hypervisor. What the tables themselves reference goes as each table
    /// loses its last type reference and is devalidated; grant mappings are dropped before this
    /// (`gnttab::hypercall::domain_dying`).
    pub fn relinquish_domain(&mut self, mem: &mut dyn MachineMemoryMut, dom: &mut Domain) -> usize {
        let owner = Owner::Domain(dom.id);
        // What each vCPU holds: its kernel and user L4, GDT frames and `vcpu_info` frame.
        let mut tables = heapless::Vec::<Mfn, { 2 * crate::domain::MAX_VCPUS }>::new();
        let mut gdt = heapless::Vec::<Mfn, { 16 * crate::domain::MAX_VCPUS }>::new();
        let mut vcpu_info = heapless::Vec::<Mfn, { crate::domain::MAX_VCPUS }>::new();
        for v in dom.vcpus.iter_mut() {
            // Cannot overflow: one entry (or 16 GDT frames) per vCPU at most.
            let _ = tables.push(core::mem::replace(&mut v.l4, Mfn(0)));
            if let Some(u) = v.user_l4.take() {
                let _ = tables.push(u);
            }
            let _ = gdt.extend_from_slice(&core::mem::take(&mut v.gdt_frames));
            if let Some((f, _)) = v.vcpu_info.take() {
                let _ = vcpu_info.push(f);
            }
            v.gdt_ents = 0;
            (v.ldt_base, v.ldt_ents) = (0, 0);
        }
        let evtchn_frames = core::mem::take(&mut dom.evtchn_frames);
        let max = self.frames.max_ram_page();
        {
            let mut pt = self.pt_for(mem, dom);
            // `vcpu_destroy_pagetables`.
            for t in tables {
                if t.0 != 0 && pt.mm.frames.get(t).is_some_and(|f| f.owner() == owner) {
                    pt.put_page_and_type(t);
                }
            }
            // `pv_destroy_gdt` ("Relinquish GDT/LDT mappings"): `set_gdt` took a general and a
            // descriptor-page type reference on each frame (`pv_set_gdt`).
            for g in gdt {
                pt.put_page_and_type(g);
            }
            // `unmap_vcpu_info`: `VCPUOP_register_vcpu_info` took a general and a writable type
            // reference.
            for v in vcpu_info {
                pt.put_page_and_type(v);
            }
            // `evtchn_fifo_destroy`: each FIFO control block and event array page holds a
            // general and a writable type reference (`map_guest_page`).
            for f in evtchn_frames {
                pt.put_page_and_type(f);
            }
            // `relinquish_memory`: pins first (they may hold whole trees), then the rest.
            for m in 0..max {
                let mfn = Mfn(m);
                let pinned = pt
                    .mm
                    .frames
                    .get(mfn)
                    .is_some_and(|f| f.owner() == owner && f.pinned());
                if pinned {
                    if let Some(f) = pt.mm.frames.get_mut(mfn) {
                        f.set(flag::PINNED, false);
                    }
                    pt.put_page_and_type(mfn);
                }
            }
            for m in 0..max {
                let mfn = Mfn(m);
                let Some(f) = pt.mm.frames.get(mfn) else {
                    continue;
                };
                if f.owner() != owner {
                    continue;
                }
                let (heap, allocated) = (f.xen_heap(), f.allocated());
                if heap {
                    if let Some(f) = pt.mm.frames.get_mut(mfn) {
                        f.set(flag::XEN_HEAP, false);
                    }
                    pt.put_page_type(mfn);
                }
                if allocated {
                    if let Some(f) = pt.mm.frames.get_mut(mfn) {
                        f.set(flag::ALLOCATED, false);
                    }
                    pt.put_page(mfn);
                }
            }
        }
        self.remove_domain(dom.id);
        self.frames
            .iter()
            .filter(|(_, f)| f.owner() == owner)
            .count()
    }
}
