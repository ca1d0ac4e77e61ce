//! The shared_info page: mapped once, then read by the cases, the trap handler, the event upcall
//! and the clock; and each vCPU's `vcpu_info`, in shared_info or where the vCPU registered it.
//!
//! `start_info.shared_info` is a *machine* address: a PV guest maps it itself, here by remapping
//! a page-aligned window in .bss with `update_va_mapping`. Xen writes the page at any time (event
//! bits, time, CR2), so it is never referenced with `&`: every access is volatile or atomic
//! through raw pointers (STYLE.md, "shared memory is never referenced").

use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_kernel::paging::{entry_frame, make_entry, PTE_A, PTE_D, PTE_P, PTE_RW};
use hypercall_abi::xen::{SharedInfo, StartInfo, VcpuInfo, UVMF_INVLPG, XEN_LEGACY_MAX_VCPUS};

use super::hypercall as hc;
use super::{mm, smp};

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The page whose virtual address is remapped onto the shared_info frame. Nothing in Rust reads
/// it as a `Page`: once remapped, it is only reached through [`get`].
static mut WINDOW: Page = Page([0; 4096]);

/// Virtual address of the mapped page, 0 until [`map`] succeeds. An atomic, because the trap
/// handler and the event upcall read it.
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// Why shared_info could not be mapped (printed as a case value).
#[derive(Clone, Copy, Debug)]
pub enum MapError {
    /// The window page is not mapped by a 4 KiB L1 entry, so it cannot be remapped.
    WindowNotRemappable,
    /// `update_va_mapping` refused (its return code).
    Refused(i64),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::WindowNotRemappable => write!(f, "window_not_remappable"),
            MapError::Refused(rc) => write!(f, "map_failed={rc}"),
        }
    }
}

/// Maps shared_info over the window (once; later calls return the same mapping).
pub fn map(si: &StartInfo) -> Result<*mut SharedInfo, MapError> {
    if let Some(p) = get() {
        return Ok(p);
    }
    let va = (&raw mut WINDOW) as u64;
    let frame = si.shared_info >> 12;
    let current = mm::l1_slot(va).ok_or(MapError::WindowNotRemappable)?.value;
    if entry_frame(current) != frame {
        let pte = make_entry(frame, PTE_P | PTE_RW | PTE_A | PTE_D);
        // SAFETY: the window is referenced by nothing but this module, which only reaches it
        // through raw pointers after the remap.
        let rc = unsafe { hc::update_va_mapping(va, pte, UVMF_INVLPG) };
        if rc != 0 {
            return Err(MapError::Refused(rc));
        }
    }
    MAPPED.store(va, Ordering::Release);
    Ok(va as *mut SharedInfo)
}

/// The mapped shared_info page, if [`map`] succeeded.
pub fn get() -> Option<*mut SharedInfo> {
    match MAPPED.load(Ordering::Acquire) {
        0 => None,
        va => Some(va as *mut SharedInfo),
    }
}

/// vCPU `id`'s `vcpu_info`: where it registered it (`smp::register_vcpu_info`), else its slot
/// of shared_info (the first 32 vCPUs have one).
pub fn vcpu_info(id: u32) -> Option<*mut VcpuInfo> {
    if let Some(v) = smp::registered_vcpu_info(id) {
        return Some(v);
    }
    let sh = get()?;
    // SAFETY: field address arithmetic inside the mapped page; nothing is dereferenced.
    let slots = unsafe { &raw mut (*sh).vcpu_info };
    // SAFETY: as above, for an index checked against the array's length.
    ((id as usize) < XEN_LEGACY_MAX_VCPUS)
        .then(|| unsafe { slots.cast::<VcpuInfo>().add(id as usize) })
}

/// The `vcpu_info` of the vCPU running this code.
pub fn this() -> Option<*mut VcpuInfo> {
    vcpu_info(smp::this_vcpu())
}

/// `evtchn_upcall_mask` of this vCPU: 1 while event upcalls are masked (the PV "interrupt
/// flag").
pub fn upcall_mask() -> Option<u8> {
    // SAFETY: a byte of our own vcpu_info; volatile because Xen writes it too (on callback entry
    // and on iret).
    this().map(|v| unsafe { ptr::read_volatile(&raw const (*v).evtchn_upcall_mask) })
}

/// Sets `evtchn_upcall_mask` of this vCPU (a PV `cli`/`sti`); does nothing if shared_info is not
/// mapped. Unmasking does not deliver an already-pending event by itself: the next return from
/// the hypervisor does (Linux's `xen_irq_enable` makes a hypercall for that reason).
pub fn set_upcall_mask(mask: u8) {
    if let Some(v) = this() {
        // SAFETY: the guest owns this byte of its vcpu_info (`xen.h`, vcpu_info).
        unsafe { ptr::write_volatile(&raw mut (*v).evtchn_upcall_mask, mask) }
    }
}

/// `vcpu_info.arch.cr2`: where Xen leaves the faulting address of a page fault it delivers.
pub fn cr2() -> Option<u64> {
    // SAFETY: a word of our own vcpu_info, written by Xen before it enters the #PF handler.
    this().map(|v| unsafe { ptr::read_volatile(&raw const (*v).arch.cr2) })
}

/// One of the two 2-level event bitmaps of shared_info.
#[derive(Clone, Copy, Debug)]
pub enum Bitmap {
    /// `evtchn_pending`: set by Xen, cleared by the guest.
    Pending,
    /// `evtchn_mask`: owned by the guest.
    Mask,
}

/// The word of `bitmap` holding `port`'s bit, as an atomic (Xen updates these words with locked
/// instructions too).
fn atomic_word(bitmap: Bitmap, port: u32) -> Option<&'static AtomicU64> {
    let sh = get()?;
    assert!(port < 64 * 64, "2-level event channels have 4096 ports");
    // SAFETY: the word lies in the mapped shared_info page, which stays mapped for the kernel's
    // lifetime, is 8-byte aligned, and is only ever accessed atomically by us and by Xen.
    unsafe {
        let words = match bitmap {
            Bitmap::Pending => (&raw mut (*sh).evtchn_pending).cast::<u64>(),
            Bitmap::Mask => (&raw mut (*sh).evtchn_mask).cast::<u64>(),
        };
        Some(AtomicU64::from_ptr(words.add((port / 64) as usize)))
    }
}

/// Bit `port` of `bitmap`: 0 or 1, or -1 if shared_info is not mapped.
pub fn test_bit(bitmap: Bitmap, port: u32) -> i32 {
    atomic_word(bitmap, port).map_or(-1, |w| (w.load(Ordering::SeqCst) >> (port % 64) & 1) as i32)
}

/// Word `w` (ports 64w..64w+63) of `bitmap`; 0 if shared_info is not mapped.
pub fn word(bitmap: Bitmap, w: u32) -> u64 {
    atomic_word(bitmap, w * 64).map_or(0, |a| a.load(Ordering::SeqCst))
}

/// Sets bit `port` of `bitmap` (atomically: Xen may change other bits of the word meanwhile).
pub fn set_bit(bitmap: Bitmap, port: u32) {
    if let Some(w) = atomic_word(bitmap, port) {
        w.fetch_or(1u64 << (port % 64), Ordering::SeqCst);
    }
}

/// Clears bit `port` of `bitmap` (atomically: Xen may set other bits of the word meanwhile).
pub fn clear_bit(bitmap: Bitmap, port: u32) {
    if let Some(w) = atomic_word(bitmap, port) {
        w.fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst);
    }
}

/// Clears this vCPU's `evtchn_upcall_pending` and then its selector, in that order, as a guest's
/// event loop does (`xen-abi.md`, semantics 6). Returns the selector's previous value.
pub fn ack_upcall() -> u64 {
    let Some(v) = this() else { return 0 };
    // SAFETY: fields of our own vcpu_info; the selector is exchanged atomically because Xen sets
    // its bits with locked instructions.
    unsafe {
        ptr::write_volatile(&raw mut (*v).evtchn_upcall_pending, 0);
        AtomicU64::from_ptr(&raw mut (*v).evtchn_pending_sel).swap(0, Ordering::SeqCst)
    }
}

/// This vCPU's `evtchn_upcall_pending` (0 or 1), or -1 if shared_info is not mapped.
pub fn upcall_pending() -> i32 {
    // SAFETY: a byte of our own vcpu_info, written by Xen.
    this().map_or(-1, |v| unsafe {
        i32::from(ptr::read_volatile(&raw const (*v).evtchn_upcall_pending))
    })
}
