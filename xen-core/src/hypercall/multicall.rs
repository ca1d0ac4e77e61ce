//! `multicall`: a batch of hypercalls in one entry; each entry gets its own result.
//!
//! Unlike `mmu_update`, a multicall continues past failing entries (`common/multicall.c`): a
//! failure is that entry's `result`, and the multicall itself returns 0 unless the list cannot be
//! read or written (-EFAULT). A multicall inside a multicall is refused with -EINVAL.

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::{__HYPERVISOR_iret, MulticallEntry};

use super::{dispatch, Ctx, HcResult, Machine};
use crate::guest::{copy_from_guest, guest_va_ok, GuestMemory};

const ENTRY_SIZE: u64 = core::mem::size_of::<MulticallEntry>() as u64;
/// Offset of `result` in an entry.
const RESULT_OFFSET: u64 = 8;

pub(super) fn multicall<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    list: u64,
    count: u64,
) -> HcResult {
    if ctx.in_multicall {
        return Err(Errno::EINVAL);
    }
    let count = count as u32 as u64;
    // `guest_handle_okay`: the whole array must lie in guest address space.
    let end = list.checked_add(count * ENTRY_SIZE);
    if count > 0 && (!guest_va_ok(list) || end.is_none_or(|e| !guest_va_ok(e - 1))) {
        return Err(Errno::EFAULT);
    }
    ctx.in_multicall = true;
    let mut rc = Ok(0);
    for i in 0..count {
        let at = list + i * ENTRY_SIZE;
        let call: MulticallEntry = match copy_from_guest(&ctx.guest(), at) {
            Ok(c) => c,
            Err(_) => {
                rc = Err(Errno::EFAULT);
                break;
            }
        };
        let a = call.args;
        let result = if call.op == u64::from(__HYPERVISOR_iret) {
            // `iret` rewrites the caller's frame: meaningless inside a batch.
            Errno::EINVAL.neg()
        } else {
            dispatch(ctx, call.op, [a[0], a[1], a[2], a[3], a[4]])
        };
        if ctx
            .guest()
            .write(at + RESULT_OFFSET, &result.to_le_bytes())
            .is_err()
        {
            rc = Err(Errno::EFAULT);
            break;
        }
        if ctx.dom.shutdown.is_some() {
            break;
        }
    }
    ctx.in_multicall = false;
    rc
}
