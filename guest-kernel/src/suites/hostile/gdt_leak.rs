//! `hostile=gdt-leak`: die with a GDT and an LDT installed (issue 11, finding 5).
//!
//! `set_gdt` takes a general and a descriptor-page type reference on each frame of the new GDT
//! (Xen's `pv_set_gdt`), held while the GDT is installed. A hypervisor whose teardown forgets
//! them (Xen drops them in `domain_relinquish_resources` with `pv_destroy_gdt`) keeps those frames
//! referenced for ever, and with them, as a dead domain's memory goes back only when all of it
//! is unreferenced, the domain's whole allocation.
//!
//! The attacker installs the largest GDT Xen allows (14 frames, 7168 entries) after a smaller
//! one (so the replaced frames are released, and the new ones held), sets an LDT
//! (`MMUEXT_SET_LDT`), prints `set_gdt=<first>,<second>` and `set_ldt=<rc>` (Xen's answers: 0,0 and 0),
//! and returns without undoing anything: the domU powers off and dom0 destroys it. The test
//! checks that every frame comes back.

use guest_kernel::paging::Mfn;
use hypercall_abi::xen::{__HYPERVISOR_set_gdt, MmuextOp, DOMID_SELF, MMUEXT_SET_LDT};

use crate::kernel::direct_map;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::pt;

/// Frames of the largest GDT a guest may install: `FIRST_RESERVED_GDT_ENTRY` (7168) entries.
const GDT_FRAMES: usize = 14;

/// `set_gdt(frames, entries)`.
fn set_gdt(frames: &[u64], entries: u64) -> i64 {
    // SAFETY: `frames` is readable for the call; the frames are zeroed pages mapped read-only,
    // which no Rust reference covers (the hypervisor only reads them).
    unsafe { hc::hypercall(__HYPERVISOR_set_gdt, gp(frames.as_ptr()), entries, 0, 0, 0) }
}

pub fn run() -> Result<(), &'static str> {
    direct_map::init_memory().map_err(|_| "init_memory failed")?;
    // Zeroed frames mapped read-only: every descriptor null, which is valid, and the frames free
    // to take the descriptor-page type.
    let mut frames = [0u64; GDT_FRAMES];
    for f in &mut frames {
        *f = pt::new_table().map_err(|_| "no frame for the GDT")?.0;
    }
    let first = set_gdt(&frames[GDT_FRAMES / 2..], (GDT_FRAMES as u64 / 2) * 512);
    let second = set_gdt(&frames, GDT_FRAMES as u64 * 512);
    // An LDT of 16 entries at the first GDT frame's (read-only) direct-map address.
    let ldt_va = pt::frame_va(Mfn(frames[0])).map_err(|_| "GDT frame not in the direct map")?;
    let op = MmuextOp {
        cmd: MMUEXT_SET_LDT,
        arg1: ldt_va,
        arg2: 16,
        ..Default::default()
    };
    let (ldt, _) = hc::mmuext_op(&[op], DOMID_SELF);
    println!("hostile: gdt-leak: set_gdt={first},{second}");
    println!("hostile: gdt-leak: set_ldt={ldt}");
    Ok(())
}
