//! `memory_op`: the queries about a domain's and the machine's memory (`public/memory.h`).
//!
//! The command word carries a continuation index above `MEMOP_EXTENT_SHIFT`; Xen refuses a
//! non-zero index with -EINVAL for every command that cannot be continued, and so do we. The
//! operations that change a domain's memory (populate, exchange, add_to_physmap, ...) come with
//! the memory-management issue; until then they are -ENOSYS.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use hypercall_abi::errno::Errno;
use hypercall_abi::memory::*;
use hypercall_abi::xen::DOMID_SELF;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};
use crate::shared_info::SharedInfoPage;

/// Low bits of the command word: the operation (`MEMOP_CMD_MASK`).
const CMD_MASK: u64 = (1 << 6) - 1;
/// Shift of the continuation index (`MEMOP_EXTENT_SHIFT`).
const EXTENT_SHIFT: u64 = 6;

pub(crate) fn memory_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, cmd: u64, arg: u64) -> HcResult {
    let op = (cmd & CMD_MASK) as u32;
    let start_extent = (cmd as u32 as u64) >> EXTENT_SHIFT;
    if start_extent != 0 {
        return Err(Errno::EINVAL);
    }
    match op {
        XENMEM_maximum_ram_page => Ok(ctx.info.max_ram_page as i64),
        XENMEM_current_reservation | XENMEM_maximum_reservation | XENMEM_maximum_gpfn => {
            let domid: u16 = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if domid != DOMID_SELF && domid != ctx.dom.id {
                // Only one domain exists yet; a privileged caller naming another gets -ESRCH.
                return Err(if ctx.dom.privileged {
                    Errno::ESRCH
                } else {
                    Errno::EPERM
                });
            }
            Ok(match op {
                XENMEM_current_reservation => ctx.dom.nr_pages as i64,
                XENMEM_maximum_reservation => ctx.dom.max_pages as i64,
                // A PV guest's highest pfn is what it wrote into shared_info.arch.max_pfn.
                _ => SharedInfoPage::of(&*ctx.m, ctx.dom.shared_info).arch_max_pfn() as i64,
            })
        }
        // A PV domain without a map set by the toolstack has none to report.
        XENMEM_memory_map => Err(Errno::ENOSYS),
        XENMEM_machine_memory_map => {
            if !ctx.dom.privileged {
                return Err(Errno::EPERM);
            }
            let arg = GuestPtr::<XenMemoryMap>::new(arg);
            let mut map = copy_from_guest(&ctx.guest(), arg)?;
            let buffer = GuestPtr::<[u8; 20]>::new(map.buffer);
            let mut entries = [(0u64, 0u64, 0u32); 64];
            let n = ctx.m.e820(&mut entries);
            if (map.nr_entries as usize) < n {
                return Err(Errno::EINVAL);
            }
            for (i, (addr, size, kind)) in entries[..n].iter().enumerate() {
                let mut raw = [0u8; 20];
                raw[..8].copy_from_slice(&addr.to_le_bytes());
                raw[8..16].copy_from_slice(&size.to_le_bytes());
                raw[16..].copy_from_slice(&kind.to_le_bytes());
                copy_to_guest(&mut ctx.guest(), buffer.add(i as u64), &raw)?;
            }
            map.nr_entries = n as u32;
            copy_to_guest(&mut ctx.guest(), arg, &map)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
