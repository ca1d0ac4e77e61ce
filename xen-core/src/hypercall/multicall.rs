//! `multicall`: a batch of hypercalls in one entry; each entry gets its own result.
//!
//! Unlike `mmu_update`, a multicall continues past failing entries (`common/multicall.c`): a
//! failure is that entry's `result`, and the multicall itself returns 0 unless the list cannot be
//! read or written (-EFAULT). Entries go through `dispatch`, which refuses with -EINVAL the
//! hypercalls the table keeps out of a multicall (a nested multicall, `iret`).
//!
//! A multicall may be long (many entries, or entries that are long themselves), so it is
//! preemptible as Xen's `do_multicall` is: before every entry but the first it asks
//! `hypercall_preempt_check()` and, if the CPU is wanted, continues itself from that entry
//! (`hypercall_create_continuation(__HYPERVISOR_multicall, "hi", call_list, nr_calls - i)`). An
//! entry whose hypercall was itself preempted (`MCSF_call_preempted`: it asked for a
//! continuation) gets the continuation's arguments written over its own in guest memory, and the
//! multicall continues from that entry, which then runs again with them. Such an entry gets no
//! result until it finishes (Xen writes the sub-call's placeholder return value there, which the
//! re-run overwrites; we leave the field as it was).

use core::mem::offset_of;

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::MulticallEntry;

use super::dispatch;
use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, guest_va_ok, GuestPtr};

const ENTRY_SIZE: u64 = core::mem::size_of::<MulticallEntry>() as u64;

/// How the loop over the entries ended.
enum End {
    /// All entries ran (or the domain stopped): the multicall's result.
    Done(HcResult),
    /// Stopped before entry `i` (which was preempted itself, or has not run yet).
    Preempted(u64),
}

pub(super) fn multicall<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    list: u64,
    count: u64,
) -> HcResult {
    // A nested multicall never gets here: `dispatch` refuses it (the table's `in_multicall`).
    let count = count as u32 as u64;
    let list = GuestPtr::<MulticallEntry>::new(list);
    // `guest_handle_okay`: the whole array must lie in guest address space.
    let end = list.va().checked_add(count * ENTRY_SIZE);
    if count > 0 && (!list.okay() || end.is_none_or(|e| !guest_va_ok(e - 1))) {
        return Err(Errno::EFAULT);
    }
    ctx.in_multicall = true;
    let end = entries(ctx, list, count);
    ctx.in_multicall = false;
    match end {
        End::Done(rc) => rc,
        End::Preempted(i) => ctx.create_continuation(&[list.add(i).va(), count - i]),
    }
}

/// Runs the entries of the list (`do_multicall`'s loop).
fn entries<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    list: GuestPtr<MulticallEntry>,
    count: u64,
) -> End {
    for i in 0..count {
        if i > 0 && ctx.preempt_check() {
            return End::Preempted(i);
        }
        let at = list.add(i);
        let Ok(mut call) = copy_from_guest(&ctx.guest(), at) else {
            return End::Done(Err(Errno::EFAULT));
        };
        let a = call.args;
        let out = dispatch(ctx, call.op, [a[0], a[1], a[2], a[3], a[4]]);
        if let Some(c) = out.continuation() {
            // The sub-call was preempted: its continuation goes into the entry (Xen copies the
            // whole entry back), and the multicall resumes here. If the entry cannot be
            // written, the continuation is cancelled and the multicall fails (-EFAULT).
            call.args[..c.nargs].copy_from_slice(&c.args[..c.nargs]);
            if copy_to_guest(&mut ctx.guest(), at, &call).is_err() {
                return End::Done(Err(Errno::EFAULT));
            }
            return End::Preempted(i);
        }
        let result_at = at.field::<i64>(offset_of!(MulticallEntry, result));
        if copy_to_guest(&mut ctx.guest(), result_at, &out.rax()).is_err() {
            return End::Done(Err(Errno::EFAULT));
        }
        if ctx.dom.shutdown.is_some() || ctx.fx.crash.is_some() {
            break;
        }
    }
    End::Done(Ok(0))
}
