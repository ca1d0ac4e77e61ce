//! `set_gdt`: the guest's own descriptor table (`pv/descriptor-tables.c: do_set_gdt`).
//!
//! The frames must be the domain's and pass validation as segment-descriptor pages (every
//! descriptor safe for a ring-3 guest); they keep that type while installed, so the guest cannot
//! map them writable and change a descriptor behind the hypervisor's back.
//!
//! Limitation: the descriptors are validated and the frames typed, but the CPU keeps running on
//! the hypervisor's own GDT (Xen's flat selectors); loading guest descriptors into a per-vCPU GDT
//! is still to come, so a guest that uses selectors of its own takes a #GP.

use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::GuestMemory;
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::pt;
use crate::mm::Mfn;

/// First GDT entry the hypervisor reserves (`FIRST_RESERVED_GDT_ENTRY`: byte 0xE000).
const FIRST_RESERVED_GDT_ENTRY: u64 = 0xe000 / 8;
/// Descriptors per frame.
const ENTRIES_PER_FRAME: u64 = 512;

pub(super) fn set_gdt<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    list: u64,
    entries: u64,
) -> HcResult {
    let entries = entries as u32 as u64;
    if entries > FIRST_RESERVED_GDT_ENTRY {
        return Err(Errno::EINVAL);
    }
    let nr_frames = entries.div_ceil(ENTRIES_PER_FRAME) as usize;
    let mut raw = [0u8; 16 * 8];
    ctx.guest().read(list, &mut raw[..nr_frames * 8])?;
    let frames: heapless::Vec<Mfn, 16> = raw[..nr_frames * 8]
        .chunks_exact(8)
        .map(|c| Mfn(u64::from_le_bytes(c.try_into().expect("8 bytes"))))
        .collect();

    let id = ctx.dom.id;
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let old = core::mem::take(&mut ctx.dom.vcpu.gdt_frames);
    let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
    for (i, &mfn) in frames.iter().enumerate() {
        if !pt.mm.frames.mfn_valid(mfn)
            || pt
                .get_page_and_type(mfn, Owner::Domain(id), PageType::SegDesc)
                .is_err()
        {
            for &taken in &frames[..i] {
                pt.put_page_and_type(taken);
            }
            ctx.dom.vcpu.gdt_frames = old;
            return Err(Errno::EINVAL);
        }
    }
    for &mfn in &old {
        pt.put_page_and_type(mfn);
    }
    pt.flush.flush_all(pt.perf);
    ctx.dom.vcpu.gdt_frames = frames;
    ctx.dom.vcpu.gdt_ents = entries as u32;
    Ok(0)
}
