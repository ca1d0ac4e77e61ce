//! `set_gdt` and `update_descriptor`: the guest's own descriptor table
//! (`pv/descriptor-tables.c: do_set_gdt`, `do_update_descriptor`).
//!
//! The frames must be the domain's and pass validation as segment-descriptor pages (every
//! descriptor safe for a ring-3 guest); they keep that type while installed, so the guest cannot
//! map them writable and change a descriptor behind the hypervisor's back. The arch layer maps
//! the installed frames below the hypervisor's reserved entries of the GDT the CPU runs on
//! (`arch/x86_64/gdt.rs`, Xen's per-vCPU GDT area), so the guest's own selectors work.
//! `update_descriptor` writes one checked descriptor into such a frame, or into any frame of the
//! caller that may be writable.

use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::GuestMemory;
use crate::mm::frame_table::{check_descriptor, Owner, PageType};
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

    install_gdt(ctx, &frames, entries as u32).map(|()| 0)
}

/// `pv_set_gdt`: installs `frames` (the first `entries.div_ceil(512)` of them) as the running
/// vCPU's GDT of `entries` entries, each frame taking a general and a segment-descriptor type
/// reference (-EINVAL if one cannot), then releases the old frames.
pub(super) fn install_gdt<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    frames: &[Mfn],
    entries: u32,
) -> Result<(), Errno> {
    if u64::from(entries) > FIRST_RESERVED_GDT_ENTRY {
        return Err(Errno::EINVAL);
    }
    let nr_frames = u64::from(entries).div_ceil(ENTRIES_PER_FRAME) as usize;
    let frames: heapless::Vec<Mfn, 16> = frames.iter().take(nr_frames).copied().collect();
    let id = ctx.dom.id;
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let old = core::mem::take(&mut ctx.dom.vcpu_mut().gdt_frames);
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
            ctx.dom.vcpu_mut().gdt_frames = old;
            return Err(Errno::EINVAL);
        }
    }
    for &mfn in &old {
        pt.put_page_and_type(mfn);
    }
    pt.flush.flush_all(pt.perf);
    ctx.dom.vcpu_mut().gdt_frames = frames;
    ctx.dom.vcpu_mut().gdt_ents = entries;
    Ok(())
}

/// `update_descriptor(maddr, desc)`: writes descriptor `desc`, checked and fixed up as
/// `check_descriptor` does, at machine address `maddr` (Xen 4.17 `do_update_descriptor`). The
/// address must be 8-byte aligned and in a frame the caller owns that is a descriptor page or can
/// take the writable type (not a page table); every refusal is -EINVAL, as in Xen.
pub(super) fn update_descriptor<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    maddr: u64,
    desc: u64,
) -> HcResult {
    // Aligned, or it would corrupt two adjacent descriptors.
    if !maddr.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let Some(desc) = check_descriptor(desc) else {
        return Err(Errno::EINVAL);
    };
    let id = ctx.dom.id;
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
    // A PV guest's frame numbers are machine frame numbers (`get_page_from_gfn`).
    let mfn = Mfn(maddr >> 12);
    if !pt.mm.frames.mfn_valid(mfn) || !pt.get_page(mfn, Owner::Domain(id)) {
        return Err(Errno::EINVAL);
    }
    // A descriptor page stays one; anything else must be able to be writable.
    let ty = match pt.mm.frames.get(mfn).map(|f| f.page_type()) {
        Some(PageType::SegDesc) => PageType::SegDesc,
        _ => PageType::Writable,
    };
    if pt.get_page_type(mfn, ty).is_err() {
        pt.put_page(mfn);
        return Err(Errno::EINVAL);
    }
    let written = pt.mem.write_u64(crate::mm::Maddr(maddr), desc);
    pt.put_page_type(mfn);
    pt.put_page(mfn);
    written.map(|()| 0).ok_or(Errno::EFAULT)
}
