//! Fields of a domain's shared_info page that the hypervisor reads and writes (`xen.h`).
//!
//! shared_info is guest-writable memory: every read here is a snapshot the guest may change at
//! any moment, so values are re-read when needed and never trusted beyond their width.

use crate::domain::Domain;
use crate::mm::{MachineMemoryMut, Maddr};

/// Offset of `vcpu_info[0].evtchn_upcall_pending`.
pub const UPCALL_PENDING: u64 = 0;
/// Offset of `vcpu_info[0].evtchn_upcall_mask`.
pub const UPCALL_MASK: u64 = 1;
/// Offset of `vcpu_info[0].arch.cr2`.
pub const ARCH_CR2: u64 = 16;
/// Offset of `vcpu_info[0].time` (a `vcpu_time_info`).
pub const VCPU_TIME: u64 = 32;

fn at(dom: &Domain, offset: u64) -> Maddr {
    Maddr(dom.shared_info.maddr().0 + offset)
}

/// Reads a byte of shared_info.
pub fn read_u8<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain, offset: u64) -> u8 {
    m.read(at(dom, offset), 1).map_or(0, |b| b[0])
}

/// Writes a byte of shared_info.
pub fn write_u8<M: MachineMemoryMut + ?Sized>(m: &mut M, dom: &Domain, offset: u64, v: u8) {
    let _ = m.write(at(dom, offset), &[v]);
}

/// The guest's virtual interrupt flag, inverted: events are masked.
pub fn upcall_mask<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain) -> bool {
    read_u8(m, dom, UPCALL_MASK) != 0
}

/// Sets or clears the upcall mask.
pub fn set_upcall_mask<M: MachineMemoryMut + ?Sized>(m: &mut M, dom: &Domain, masked: bool) {
    write_u8(m, dom, UPCALL_MASK, masked.into());
}

/// Whether an event upcall is pending for vCPU 0.
pub fn upcall_pending<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain) -> bool {
    read_u8(m, dom, UPCALL_PENDING) != 0
}

/// Records a page-fault address where the guest's handler reads it.
pub fn set_cr2<M: MachineMemoryMut + ?Sized>(m: &mut M, dom: &Domain, cr2: u64) {
    let _ = m.write_u64(at(dom, ARCH_CR2), cr2);
}

/// The page-fault address last given to the guest.
pub fn cr2<M: MachineMemoryMut + ?Sized>(m: &M, dom: &Domain) -> u64 {
    m.read_u64(at(dom, ARCH_CR2)).unwrap_or(0)
}
