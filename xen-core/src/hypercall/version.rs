//! `xen_version`: which Xen this is and what it offers (`public/version.h`).
//!
//! We answer as Xen 4.17 does, because guests (and the conformance suite) decide what to use from
//! these answers; the strings that name the build say who we are.

use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::errno::Errno;
use hypercall_abi::version::*;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestMemory, GuestPtr};

/// The Xen version we implement the ABI of: 4.17.
pub const XEN_MAJOR: i64 = 4;
/// See [`XEN_MAJOR`].
pub const XEN_MINOR: i64 = 17;
/// `XENVER_extraversion`: names this hypervisor.
pub const EXTRAVERSION: &[u8] = b"-xen-rs\0";
/// `XENVER_capabilities`: the guest ABIs we run (64-bit PV only).
pub const CAPABILITIES: &[u8] = b"xen-3.0-x86_64\0";

/// Feature submap 0 (`XENVER_get_features`) for a PV domain, as Xen 4.17 reports it to dom0:
/// mmu_pt_update_preserve_ad, highmem_assist, gnttab_map_avail_bits, memory_op_vnode_supported,
/// direct_mapped, plus XENFEAT_dom0 for the hardware domain.
pub fn features(dom0: bool) -> u32 {
    let mut f = (1 << XENFEAT_mmu_pt_update_preserve_ad)
        | (1 << XENFEAT_highmem_assist)
        | (1 << XENFEAT_gnttab_map_avail_bits)
        | (1 << XENFEAT_memory_op_vnode_supported)
        | (1 << XENFEAT_direct_mapped);
    if dom0 {
        f |= 1 << XENFEAT_dom0;
    }
    f
}

/// `HYPERVISOR_xen_version(cmd, arg)`. `XENVER_version` is the null hypercall by convention
/// (Linux's `xen_force_evtchn_callback` too): answered in line, the subcommands that copy to the
/// guest out of line (their buffers make a large frame).
#[inline(always)]
pub(super) fn xen_version<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    match answer(cmd) {
        Some(r) => r,
        None => xen_version_copy(ctx, cmd, arg),
    }
}

/// The subcommands of `xen_version` whose answer is a constant (`XENVER_version`,
/// `XENVER_pagesize`): what the hypercall fast path answers without a `Ctx`
/// ([`super::answer`]). `None` for the others.
#[inline(always)]
pub(super) fn answer(cmd: u64) -> Option<HcResult> {
    match crate::ctx::cmd32(cmd) {
        XENVER_version => Some(Ok((XEN_MAJOR << 16) | XEN_MINOR)),
        XENVER_pagesize => Some(Ok(4096)),
        _ => None,
    }
}

#[inline(never)]
fn xen_version_copy<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    match crate::ctx::cmd32(cmd) {
        XENVER_extraversion => put_str::<16, M>(ctx, arg, EXTRAVERSION),
        XENVER_capabilities => put_str::<1024, M>(ctx, arg, CAPABILITIES),
        XENVER_changeset => put_str::<64, M>(ctx, arg, b"xen-rs\0"),
        XENVER_compile_info => {
            let mut info = XenCompileInfo::default();
            fill(&mut info.compiler, b"rustc");
            fill(&mut info.compile_by, b"xen-rs");
            fill(&mut info.compile_domain, b"");
            fill(&mut info.compile_date, b"");
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &info)?;
            Ok(0)
        }
        XENVER_platform_parameters => {
            let params = XenPlatformParameters {
                virt_start: HYPERVISOR_VIRT_START,
            };
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &params)?;
            Ok(0)
        }
        XENVER_get_features => {
            let mut fi: XenFeatureInfo = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            match fi.submap_idx {
                0 => fi.submap = features(ctx.dom.privileged),
                _ => return Err(Errno::EINVAL),
            }
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &fi)?;
            Ok(0)
        }
        XENVER_guest_handle => {
            // The domain handle (a UUID the toolstack assigns); boot-time domains have none.
            let handle: XenDomainHandle = [0; 16];
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &handle)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Copies `s` (NUL-terminated) into a guest array of `N` bytes, zero-padded.
fn put_str<const N: usize, M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    arg: u64,
    s: &[u8],
) -> HcResult {
    let mut buf = [0u8; N];
    fill(&mut buf, s);
    ctx.guest().write(arg, &buf)?;
    Ok(0)
}

fn fill(dst: &mut [u8], s: &[u8]) {
    let n = s.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&s[..n]);
}
