//! Handing a built domain to the frame table: the frame-table half of dom0 construction.
//!
//! The builder lays a domain out in memory ([`super::BuiltDomain`]); this registers it with the
//! frame table, assigns it the built frames, shares its shared_info page with it and validates
//! and pins its bootstrap tables, through the frame table's own operations
//! (`crate::mm::frame_table::seed`). It lives here, above `mm/`, so that the frame table knows
//! nothing of the builder.

use crate::domain::Domain;
use crate::mm::frame_alloc::FrameRange;
use crate::mm::frame_table::{Mm, Owner, SeedError};
use crate::mm::{MachineMemoryMut, Mfn};

use super::BuiltDomain;

/// Everything dom0 construction does to the frame table: registers `dom`, assigns it the built
/// domain's frames, shares its shared_info page with it, and validates and pins its bootstrap
/// tables (setting `dom.vcpu().l4`).
pub fn seed_domain(
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
    dom: &mut Domain,
    built: &BuiltDomain,
) -> Result<(), SeedError> {
    mm.add_domain(dom.info())?;
    let range = FrameRange {
        start: built.mfn_base,
        end: Mfn(built.mfn_base.0 + built.nr_pages),
    };
    mm.assign(range, Owner::Domain(dom.id))?;
    mm.share_xen_page_with_guest(dom.shared_info, dom.id, true)?;
    mm.validate_and_pin_initial_tables(mem, dom, built.l4, built.page_table_frames())
}
