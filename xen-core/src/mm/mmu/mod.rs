//! The page-table hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping` and
//! `update_va_mapping_otherdomain`, with Xen 4.17's semantics (`do_mmu_update`, `do_mmuext_op`,
//! `__do_update_va_mapping` in `xen/arch/x86/mm.c`).
//!
//! Batches run in order and stop at the first failure; `*pdone` (when the guest passes one)
//! receives the number of entries completed. Every entry is validated against the frame table
//! before it takes effect. TLB flushes and CR3 loads are recorded in the call's
//! [`FlushRequest`](crate::domain::FlushRequest) (its `Outcome`) for the arch layer, once per
//! batch where Xen
//! flushes once per batch. Xen's privilege checks are those of its default (dummy) XSM policy:
//! a domain may act on itself; a privileged domain on anyone.
//!
//! A batch may be long (a list aliased through page tables can name millions of elements), so it
//! is preemptible as in Xen: before every element but the first, `do_mmu_update` and
//! `do_mmuext_op` ask `hypercall_preempt_check()` and, if the CPU is wanted, stop, add the
//! elements done to `*pdone`, and continue later with the rest
//! (`hypercall_create_continuation(op, "hihi", list + i, (count - i) | MMU_UPDATE_PREEMPTED,
//! pdone, foreigndom)`): at top level the arch layer re-executes the guest's `syscall`, inside a
//! multicall the entry is rewritten. Bit 31 of `count` (`MMU_UPDATE_PREEMPTED`) marks a
//! continuation, and a guest that sets it itself gets what Xen gives it: the count without the
//! bit, `*pdone` read back as the starting value, and, for a null list with exactly that count,
//! `foreigndom` returned as the result.

// Handlers match on Xen's own constant spellings (`EVTCHNOP_send`, `GNTTABOP_copy`).
#![allow(non_upper_case_globals)]

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::{Domain, DomainInfo};
use crate::guest_access::{
    copy_from_guest, copy_to_guest, guest_va_ok, is_canonical, ArrayReader, GuestPtr,
    PageTableGuest, TranslationCache, Watched,
};
use crate::mm::frame_table::{pte, Mm, Owner, PageType, Pt};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Bit 31 of `count`: a continuation of a preempted call.
const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;
/// `UVMF_ALL` in the bits above the flush type.
const UVMF_ALL_BITS: u64 = UVMF_ALL;
/// Largest LDT a guest may install (`MMUEXT_SET_LDT`: 8192 entries).
const MAX_LDT_ENTS: u32 = 8192;

/// Where a batch's elements come from: the guest's array (the hypercall path) or, for host tests
/// that drive the handlers directly, a slice.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Batch<'s, T> {
    /// The guest's array.
    Guest(GuestPtr<T>),
    /// Elements supplied by the caller.
    #[cfg_attr(not(test), allow(dead_code))]
    Slice(&'s [T]),
}

impl<T: FromBytes + IntoBytes + Copy> Batch<'_, T> {
    /// `guest_handle_is_null`.
    fn is_null(&self) -> bool {
        matches!(self, Batch::Guest(list) if list.is_null())
    }

    /// `guest_handle_okay`: the array starts inside guest address space (Xen's `__addr_ok`
    /// checks the start only; each element is checked when it is copied).
    fn okay(&self) -> bool {
        match *self {
            Batch::Guest(list) => list.okay(),
            Batch::Slice(_) => true,
        }
    }

    /// A reader of the elements in order (see [`BatchReader`]).
    fn reader(&self) -> BatchReader<'_, T> {
        match *self {
            Batch::Guest(list) => BatchReader::Guest(ArrayReader::new(list)),
            Batch::Slice(s) => BatchReader::Slice(s),
        }
    }

    /// Element `i` (`__copy_from_guest`).
    fn get(&self, mem: &mut dyn MachineMemoryMut, l4: Mfn, i: u32) -> Result<T, Errno> {
        match *self {
            Batch::Guest(list) => read_guest(mem, l4, list.add(u64::from(i))),
            Batch::Slice(s) => s.get(i as usize).copied().ok_or(Errno::EFAULT),
        }
    }
}

/// Elements a batch reads ahead at a time (one copy out of the guest's list per this many).
const READ_AHEAD: usize = 16;

/// A [`Batch`] read element by element: a guest list through an [`ArrayReader`] and the call's
/// translation cache, or a test's slice.
enum BatchReader<'s, T> {
    Guest(ArrayReader<T, READ_AHEAD>),
    Slice(&'s [T]),
}

impl<T: FromBytes + IntoBytes + Copy> BatchReader<'_, T> {
    /// Element `i` of `count` (`__copy_from_guest`); `tlb_owed` as for [`ArrayReader::get`].
    #[inline(always)]
    fn get<W: MachineMemoryMut + ?Sized>(
        &mut self,
        mem: &W,
        cache: &TranslationCache,
        i: u32,
        count: u32,
        tlb_owed: impl FnOnce() -> bool,
    ) -> Result<T, Errno> {
        match self {
            BatchReader::Guest(r) => {
                Ok(r.get(cache, mem, u64::from(i), u64::from(count), tlb_owed)?)
            }
            BatchReader::Slice(s) => s.get(i as usize).copied().ok_or(Errno::EFAULT),
        }
    }
}

fn read_guest<T: FromBytes + IntoBytes>(
    mem: &mut dyn MachineMemoryMut,
    l4: Mfn,
    ptr: GuestPtr<T>,
) -> Result<T, Errno> {
    Ok(copy_from_guest(&PageTableGuest { mem, l4 }, ptr)?)
}

fn write_guest<T: IntoBytes + Immutable>(
    mem: &mut dyn MachineMemoryMut,
    l4: Mfn,
    ptr: GuestPtr<T>,
    v: &T,
) -> Result<(), Errno> {
    Ok(copy_to_guest(&mut PageTableGuest { mem, l4 }, ptr, v)?)
}

/// `get_pg_owner`: whose pages a call may map. `DOMID_SELF` is the caller; the caller's own id is
/// refused ("Cannot specify itself as foreign domain"); `DOMID_IO` and `DOMID_XEN` name I/O and
/// hypervisor memory; anything else must be an existing domain.
fn get_pg_owner(mm: &Mm<'_>, curr: DomainInfo, domid: u16) -> Option<Owner> {
    if domid == DOMID_SELF {
        return Some(Owner::Domain(curr.id));
    }
    if domid == curr.id {
        return None;
    }
    match domid {
        DOMID_IO => Some(Owner::Io),
        DOMID_XEN => Some(Owner::Xen),
        id => mm.domain(id).map(|d| Owner::Domain(d.id)),
    }
}

/// `xsm_default_action(XSM_TARGET, d, t)` of the dummy XSM policy: a domain may act on itself,
/// a privileged (control) domain on anything.
fn xsm_target(d: DomainInfo, t: Owner) -> Result<(), Errno> {
    if t == Owner::Domain(d.id) || d.privileged {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// How a batch hypercall starts: the shared preamble of `do_mmu_update` and `do_mmuext_op`.
enum BatchStart {
    /// Nothing to do: return this.
    Finished(i64),
    /// Process `count` entries, `done` of them already done by earlier (continued) calls.
    Run { count: u32, done: u32 },
}

/// The preamble both batch hypercalls share (as in Xen): bit 31 of `count` marks a continuation,
/// whose `*pdone` says how far the earlier call got (with a null list and exactly that bit, Xen
/// hands back `foreigndom`); then the list must lie in guest space.
fn batch_start<T: FromBytes + IntoBytes + Copy>(
    mem: &mut dyn MachineMemoryMut,
    guest_l4: Mfn,
    batch: &Batch<'_, T>,
    count: u32,
    pdone: GuestPtr<u32>,
    foreigndom: u32,
) -> Result<BatchStart, Errno> {
    if count == MMU_UPDATE_PREEMPTED && batch.is_null() {
        return Ok(BatchStart::Finished(i64::from(foreigndom as i32)));
    }
    let (count, done) = if count & MMU_UPDATE_PREEMPTED != 0 {
        (
            count & !MMU_UPDATE_PREEMPTED,
            continued_done(mem, guest_l4, pdone),
        )
    } else {
        (count, 0)
    };
    if !batch.okay() {
        return Err(Errno::EFAULT);
    }
    Ok(BatchStart::Run { count, done })
}

/// Reads `*pdone` when continuing (bit 31 of `count`); a bad pointer reads as 0.
fn continued_done(mem: &mut dyn MachineMemoryMut, l4: Mfn, pdone: GuestPtr<u32>) -> u32 {
    if pdone.is_null() {
        return 0;
    }
    read_guest(mem, l4, pdone).unwrap_or(0)
}

/// Writes `*pdone` if the guest passed a pointer; Xen ignores a failure to write it.
fn write_done(mem: &mut dyn MachineMemoryMut, l4: Mfn, pdone: GuestPtr<u32>, done: u32) {
    if !pdone.is_null() {
        let _ = write_guest(mem, l4, pdone, &done);
    }
}

fn status(rc: Result<(), Errno>) -> HcResult {
    rc.map(|()| 0)
}

/// Asks for the rest of a batch stopped before element `i` of `count` as a continuation: the
/// list advanced by `i` elements, the rest of the count marked `MMU_UPDATE_PREEMPTED` (so that
/// `*pdone`, which now holds the elements done, is read back), `pdone` and `foreigndom` as they
/// were. Only a guest list can be continued; a test's slice is never preempted.
fn continue_batch<M: Machine + ?Sized, T>(
    ctx: &mut Ctx<'_, M>,
    batch: &Batch<'_, T>,
    stopped: Option<u32>,
    count: u32,
    pdone: GuestPtr<u32>,
    foreigndom: u32,
) {
    if let (Some(i), Batch::Guest(list)) = (stopped, batch) {
        let _ = ctx.create_continuation(&[
            list.add(u64::from(i)).va(),
            u64::from((count - i) | MMU_UPDATE_PREEMPTED),
            pdone.va(),
            u64::from(foreigndom),
        ]);
    }
}

/// `vcpumask_to_pcpumask` for a domain with one vCPU: reads the first word of the mask; returns
/// whether vCPU 0 is in it.
fn vcpu0_in_mask(pt: &mut Pt<'_, '_>, guest_l4: Mfn, mask: GuestPtr<u64>) -> Result<bool, Errno> {
    let word = read_guest(pt.mem, guest_l4, mask)?;
    Ok(word & 1 != 0)
}

mod mmuext;
mod update;
mod va_mapping;

use crate::mm::guest_pt::{map_guest_l1e, pt, DomainParts};
pub(crate) use mmuext::*;
pub(crate) use update::*;
pub use va_mapping::*;

#[cfg(test)]
mod tests;
