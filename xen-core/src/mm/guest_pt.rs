//! A guest's page tables as the memory-management code reaches them: the caller's page-table
//! context ([`pt`]) and the walk to the L1 entry that maps a virtual address
//! ([`map_guest_l1e`]). Shared by the page-table hypercalls (`mm::mmu`), grant mapping
//! (`gnttab`) and `set_gdt`, so that none of them imports another's handlers.

use crate::domain::Domain;
use crate::mm::frame_table::{Mm, Pt};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Splits the context into what the handlers need at once: the frame-table context (which
/// borrows the caller's counters, and records TLB work in `flush`: the call's, see
/// `crate::ctx::Effects`) and the rest of the domain.
#[inline]
pub(crate) fn pt<'a, M: MachineMemoryMut + ?Sized>(
    mm: &'a mut Mm<'static>,
    mem: &'a mut M,
    dom: &'a mut Domain,
    flush: &'a mut crate::domain::FlushRequest,
) -> (Pt<'a, 'static, M>, DomainParts<'a>) {
    let caller = dom.info();
    let crate::domain::Vcpu {
        l4,
        perf,
        user_l4,
        ldt_base,
        ldt_ents,
        ..
    } = dom.vcpu_mut();
    (
        Pt {
            mm,
            mem,
            perf,
            flush,
            caller,
        },
        DomainParts {
            l4,
            user_l4,
            ldt_base,
            ldt_ents,
        },
    )
}

/// The parts of the calling domain `mmuext_op` changes besides counters and flushes.
pub(crate) struct DomainParts<'a> {
    pub(crate) l4: &'a mut Mfn,
    pub(crate) user_l4: &'a mut Option<Mfn>,
    pub(crate) ldt_base: &'a mut u64,
    pub(crate) ldt_ents: &'a mut u32,
}

/// `map_guest_l1e`: the machine address of the L1 entry that maps `va` in the tables rooted at
/// `l4`, and the L1's frame; `None` if `va` is not a guest address or no L1 covers it (the walk:
/// [`crate::mm::walk_to_l1e`], through [`MachineMemoryMut::guest_l1e`]: one dynamic call, the
/// reads in line).
#[inline]
pub(crate) fn map_guest_l1e(mem: &dyn MachineMemoryMut, l4: Mfn, va: u64) -> Option<(Maddr, Mfn)> {
    mem.guest_l1e(l4, va)
}
