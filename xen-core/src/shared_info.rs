//! A domain's shared_info page, reached one way: the view [`SharedInfoPage`].
//!
//! shared_info (`struct shared_info` in `xen.h`) is guest-writable memory: every read here is a
//! snapshot the guest may change at any moment, so values are re-read when needed and never
//! trusted beyond their width. Every byte offset comes from `hypercall_abi`'s `#[repr(C)]`
//! layout through `offset_of!` (module `offsets`, private to this file), so the event-channel
//! bitmaps, the upcall flags, CR2 and the time records are all placed by one source.
//!
//! The view works over any [`SharedMemory`]: the frame in machine memory ([`MachineFrame`],
//! [`MachineFrameMut`]), or plain bytes in host tests. Once the guest has moved a vCPU's
//! `vcpu_info` elsewhere (`VCPUOP_register_vcpu_info`), the machine views send the bytes of
//! `vcpu_info[v]` (64 bytes at `v * 64` in shared_info) to the registered place instead
//! ([`VcpuInfoMap`]), so every
//! per-vCPU field (upcall pending and mask, pending selector, CR2, time) follows it, as Xen's
//! `vcpu_info(v, field)` does. Where Xen uses a locked instruction
//! (`test_and_set_bit` on `evtchn_pending`, `evtchn_mask`, `evtchn_pending_sel` and
//! `evtchn_upcall_pending`), the view uses the memory's locked bit operations; the hypervisor's
//! direct map implements them with `lock` instructions
//! ([`MachineMemoryMut::test_and_set_bit`]). The time records use Xen's version protocol (odd
//! while an update is in progress).

use core::sync::atomic::{fence, Ordering};

use hypercall_abi::xen::VcpuTimeInfo;

use crate::domain::Domain;
use crate::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};
use crate::time::Wallclock;

/// Where the fields the hypervisor touches live in `shared_info`: the only source of these
/// offsets, computed from the ABI's layout.
mod offsets {
    use core::mem::{offset_of, size_of};

    use hypercall_abi::arch_x86_64::ArchSharedInfo;
    use hypercall_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};

    /// Bits per word of the 2-level bitmaps (`xen_ulong_t`).
    pub const BITS_PER_WORD: u32 = 64;

    /// `vcpu_info[vcpu]` (legacy slots, `vcpu` < `XEN_LEGACY_MAX_VCPUS`).
    #[inline]
    pub const fn vcpu_info(vcpu: u32) -> usize {
        offset_of!(SharedInfo, vcpu_info) + vcpu as usize * size_of::<VcpuInfo>()
    }

    /// `vcpu_info[vcpu].evtchn_upcall_pending`; bit 0 of the word starting there is that
    /// byte's bit 0, which is what Xen's `test_and_set_bit(0, &evtchn_upcall_pending)` touches.
    #[inline]
    pub const fn upcall_pending(vcpu: u32) -> usize {
        vcpu_info(vcpu) + offset_of!(VcpuInfo, evtchn_upcall_pending)
    }

    /// The mask byte follows the pending byte at the start of a 4-byte word, so that one 32-bit
    /// read takes both (`SharedInfoPage::upcall_deliverable`).
    pub const UPCALL_MASK_AFTER_PENDING: bool = offset_of!(VcpuInfo, evtchn_upcall_mask)
        == offset_of!(VcpuInfo, evtchn_upcall_pending) + 1
        && offset_of!(VcpuInfo, evtchn_upcall_pending) % 4 == 0;

    /// `vcpu_info[vcpu].evtchn_upcall_mask`.
    pub const fn upcall_mask(vcpu: u32) -> usize {
        vcpu_info(vcpu) + offset_of!(VcpuInfo, evtchn_upcall_mask)
    }

    /// `vcpu_info[vcpu].evtchn_pending_sel` (bit `port / 64`).
    pub const fn pending_sel(vcpu: u32) -> usize {
        vcpu_info(vcpu) + offset_of!(VcpuInfo, evtchn_pending_sel)
    }

    /// `vcpu_info[vcpu].arch.cr2`.
    pub const fn cr2(vcpu: u32) -> usize {
        vcpu_info(vcpu) + offset_of!(VcpuInfo, arch)
    }

    /// `vcpu_info[vcpu].time`.
    pub const fn vcpu_time(vcpu: u32) -> usize {
        vcpu_info(vcpu) + offset_of!(VcpuInfo, time)
    }

    /// The word of `evtchn_pending` holding `port`'s bit (bit `port % 64`).
    pub const fn pending_word(port: u32) -> usize {
        offset_of!(SharedInfo, evtchn_pending) + (port / BITS_PER_WORD) as usize * 8
    }

    /// The word of `evtchn_mask` holding `port`'s bit (bit `port % 64`).
    pub const fn mask_word(port: u32) -> usize {
        offset_of!(SharedInfo, evtchn_mask) + (port / BITS_PER_WORD) as usize * 8
    }

    /// `arch.max_pfn` (`arch_shared_info`).
    pub const ARCH_MAX_PFN: usize =
        offset_of!(SharedInfo, arch) + offset_of!(ArchSharedInfo, max_pfn);

    pub const WC_VERSION: usize = offset_of!(SharedInfo, wc_version);
    pub const WC_SEC: usize = offset_of!(SharedInfo, wc_sec);
    pub const WC_NSEC: usize = offset_of!(SharedInfo, wc_nsec);
    pub const WC_SEC_HI: usize = offset_of!(SharedInfo, wc_sec_hi);

    pub const TIME_VERSION: usize = offset_of!(VcpuTimeInfo, version);
    pub const TIME_TSC_TIMESTAMP: usize = offset_of!(VcpuTimeInfo, tsc_timestamp);
    pub const TIME_SYSTEM_TIME: usize = offset_of!(VcpuTimeInfo, system_time);
    pub const TIME_MUL: usize = offset_of!(VcpuTimeInfo, tsc_to_system_mul);
    /// `tsc_shift`, `flags` and the two padding bytes: the record's last 32-bit word.
    pub const TIME_SHIFT: usize = offset_of!(VcpuTimeInfo, tsc_shift);

    // Xen touches `evtchn_upcall_pending` with a 64-bit-word bit operation, so the word must be
    // naturally aligned, as are the bitmaps.
    const _: () =
        assert!(upcall_pending(0).is_multiple_of(8) && size_of::<VcpuInfo>().is_multiple_of(8));
    const _: () = assert!(pending_word(0).is_multiple_of(8) && mask_word(0).is_multiple_of(8));
}

/// Reads of a shared_info page at byte offsets, each a single access of its width.
///
/// Offsets are computed from the ABI's layout, so an out-of-range offset is a bug in the caller;
/// the byte-slice implementation panics on it, the machine-memory ones read zero.
pub trait SharedRead {
    /// The byte at `offset`.
    fn read_u8(&self, offset: usize) -> u8;
    /// The little-endian u32 at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// The little-endian u64 at `offset`.
    fn read_u64(&self, offset: usize) -> u64;
    /// Whether bit `bit` (0..64) of the u64 at `offset` is set.
    fn test_bit(&self, offset: usize, bit: u32) -> bool {
        self.read_u64(offset) & (1 << bit) != 0
    }
}

/// Writes to a shared_info page at byte offsets: single stores in program order, and Xen's
/// locked bit operations on naturally aligned 64-bit words.
pub trait SharedMemory: SharedRead {
    /// Writes the byte at `offset`.
    fn write_u8(&mut self, offset: usize, value: u8);
    /// Writes the little-endian u32 at `offset`.
    fn write_u32(&mut self, offset: usize, value: u32);
    /// Writes the little-endian u64 at `offset`.
    fn write_u64(&mut self, offset: usize, value: u64);
    /// Locked `test_and_set_bit`: sets bit `bit` of the u64 at `offset`; returns whether it was
    /// already set.
    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool;
    /// Locked `test_and_clear_bit`: clears the bit; returns whether it was set.
    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool;
}

/// Bytes: host tests, and pages nobody else can see yet.
impl SharedRead for [u8] {
    fn read_u8(&self, offset: usize) -> u8 {
        self[offset]
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self[offset..offset + 8]);
        u64::from_le_bytes(b)
    }

    fn test_bit(&self, offset: usize, bit: u32) -> bool {
        self[offset + (bit / 8) as usize] & (1 << (bit % 8)) != 0
    }
}

impl SharedMemory for [u8] {
    fn write_u8(&mut self, offset: usize, value: u8) {
        self[offset] = value;
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        self[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        self[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        let byte = &mut self[offset + (bit / 8) as usize];
        let old = *byte & (1 << (bit % 8)) != 0;
        *byte |= 1 << (bit % 8);
        old
    }

    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        let byte = &mut self[offset + (bit / 8) as usize];
        let old = *byte & (1 << (bit % 8)) != 0;
        *byte &= !(1 << (bit % 8));
        old
    }
}

/// Forwards [`SharedRead`] from a wrapper type to what it holds (`$s` bound to `&self`): arrays
/// to slices, references to their referent.
macro_rules! forward_shared_read {
    ([$($g:tt)*] $ty:ty, |$s:ident| $inner:expr) => {
        impl<$($g)*> SharedRead for $ty {
            fn read_u8(&self, offset: usize) -> u8 {
                let $s = self;
                $inner.read_u8(offset)
            }
            fn read_u32(&self, offset: usize) -> u32 {
                let $s = self;
                $inner.read_u32(offset)
            }
            fn read_u64(&self, offset: usize) -> u64 {
                let $s = self;
                $inner.read_u64(offset)
            }
            fn test_bit(&self, offset: usize, bit: u32) -> bool {
                let $s = self;
                $inner.test_bit(offset, bit)
            }
        }
    };
}

/// Forwards [`SharedMemory`] likewise (`$s` bound to `&mut self`).
macro_rules! forward_shared_memory {
    ([$($g:tt)*] $ty:ty, |$s:ident| $inner:expr) => {
        impl<$($g)*> SharedMemory for $ty {
            fn write_u8(&mut self, offset: usize, value: u8) {
                let $s = self;
                $inner.write_u8(offset, value);
            }
            fn write_u32(&mut self, offset: usize, value: u32) {
                let $s = self;
                $inner.write_u32(offset, value);
            }
            fn write_u64(&mut self, offset: usize, value: u64) {
                let $s = self;
                $inner.write_u64(offset, value);
            }
            fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
                let $s = self;
                $inner.test_and_set_bit(offset, bit)
            }
            fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
                let $s = self;
                $inner.test_and_clear_bit(offset, bit)
            }
        }
    };
}

forward_shared_read!([const N: usize] [u8; N], |s| s.as_slice());
forward_shared_memory!([const N: usize] [u8; N], |s| s.as_mut_slice());
forward_shared_read!([T: SharedRead + ?Sized] &T, |s| (**s));
forward_shared_read!([T: SharedRead + ?Sized] &mut T, |s| (**s));
forward_shared_memory!([T: SharedMemory + ?Sized] &mut T, |s| (**s));

// For the event-channel code's frames reached through a shared machine.
pub(crate) use {forward_shared_memory, forward_shared_read};

/// Reads `N` bytes of machine memory at `at`, zeros if they cannot be read.
#[inline]
fn read_bytes<const N: usize, M: MachineMemory + ?Sized>(m: &M, at: Maddr) -> [u8; N] {
    m.read(at, N)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; N])
}

/// Size of a `vcpu_info`: the first this many bytes of shared_info are `vcpu_info[0]`.
pub const VCPU_INFO_SIZE: usize = core::mem::size_of::<hypercall_abi::xen::VcpuInfo>();
const _: () = assert!(offsets::vcpu_info(0) == 0);

pub use crate::domain::VcpuInfoMap;

/// Where byte `offset` of shared_info is: in the frame at `base`, or, inside `vcpu_info[v]` once
/// the guest registered another place for it, there.
fn place(base: Maddr, map: VcpuInfoMap, offset: usize) -> Maddr {
    match map.0.get(offset / VCPU_INFO_SIZE) {
        Some(Some(v)) => Maddr(v.0 + (offset % VCPU_INFO_SIZE) as u64),
        _ => Maddr(base.0 + offset as u64),
    }
}

/// The machine address of the word that holds the running vCPU's `evtchn_upcall_pending`
/// (byte 0) and `evtchn_upcall_mask` (byte 1): in its `vcpu_info[]` slot of shared_info or in
/// the `vcpu_info` it registered. Placed from that registration alone (no [`VcpuInfoMap`] of
/// every vCPU built: this is asked on every way out of a hypercall, and a batch places it once
/// per call and reads it before every element).
#[inline]
pub fn running_upcall_word(dom: &Domain) -> Maddr {
    upcall_word(dom.vcpu(), dom.shared_info, dom.vcpu_id())
}

/// [`running_upcall_word`] of vCPU `v`, number `vcpu_id` of a domain whose shared_info frame
/// is `shared_info` (for a caller that holds the vCPU already).
#[inline]
pub fn upcall_word(v: &crate::domain::Vcpu, shared_info: Mfn, vcpu_id: u32) -> Maddr {
    const _: () = assert!(offsets::UPCALL_MASK_AFTER_PENDING);
    match v.vcpu_info_maddr() {
        // `place` of an offset inside `vcpu_info[v]`: the same offset inside the registered one.
        Some(at) => Maddr(at.0 + offsets::upcall_pending(0) as u64),
        None => Maddr(shared_info.maddr().0 + offsets::upcall_pending(vcpu_id) as u64),
    }
}

/// Whether the word at [`running_upcall_word`] says an upcall is pending and not masked (read as
/// little-endian bytes, as [`SharedInfoPage::upcall_deliverable`] reads it).
pub fn upcall_word_deliverable(w: [u8; 4]) -> bool {
    w[0] != 0 && w[1] == 0
}

/// A domain's shared_info frame in machine memory, for reading.
pub struct MachineFrame<'a, M: ?Sized> {
    m: &'a M,
    base: Maddr,
    vcpu_info: VcpuInfoMap,
}

impl<'a, M: MachineMemory + ?Sized> MachineFrame<'a, M> {
    /// The frame `mfn` of `m`.
    pub fn new(m: &'a M, mfn: Mfn) -> Self {
        Self::with_vcpu_info(m, mfn, VcpuInfoMap::default())
    }

    /// The frame `mfn` of `m`, with each vCPU's `vcpu_info` where `vcpu_info` says.
    pub fn with_vcpu_info(m: &'a M, mfn: Mfn, vcpu_info: VcpuInfoMap) -> Self {
        MachineFrame {
            m,
            base: mfn.maddr(),
            vcpu_info,
        }
    }
}

impl<M: MachineMemory + ?Sized> SharedRead for MachineFrame<'_, M> {
    fn read_u8(&self, offset: usize) -> u8 {
        read_bytes::<1, M>(self.m, place(self.base, self.vcpu_info, offset))[0]
    }
    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(read_bytes(self.m, place(self.base, self.vcpu_info, offset)))
    }
    fn read_u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(read_bytes(self.m, place(self.base, self.vcpu_info, offset)))
    }
}

/// A domain's shared_info frame in machine memory, for reading and writing. Writes the machine
/// refuses are dropped (the frame is the domain's own, so that never happens in practice).
pub struct MachineFrameMut<'a, M: ?Sized> {
    m: &'a mut M,
    base: Maddr,
    vcpu_info: VcpuInfoMap,
}

impl<'a, M: MachineMemoryMut + ?Sized> MachineFrameMut<'a, M> {
    /// The frame `mfn` of `m`.
    pub fn new(m: &'a mut M, mfn: Mfn) -> Self {
        Self::with_vcpu_info(m, mfn, VcpuInfoMap::default())
    }

    /// The frame `mfn` of `m`, with each vCPU's `vcpu_info` where `vcpu_info` says.
    pub fn with_vcpu_info(m: &'a mut M, mfn: Mfn, vcpu_info: VcpuInfoMap) -> Self {
        MachineFrameMut {
            m,
            base: mfn.maddr(),
            vcpu_info,
        }
    }

    fn at(&self, offset: usize) -> Maddr {
        place(self.base, self.vcpu_info, offset)
    }
}

forward_shared_read!([M: MachineMemoryMut + ?Sized] MachineFrameMut<'_, M>, |s| MachineFrame {
    m: &*s.m,
    base: s.base,
    vcpu_info: s.vcpu_info,
});

impl<M: MachineMemoryMut + ?Sized> SharedMemory for MachineFrameMut<'_, M> {
    fn write_u8(&mut self, offset: usize, value: u8) {
        let _ = self.m.write(self.at(offset), &[value]);
    }
    fn write_u32(&mut self, offset: usize, value: u32) {
        let _ = self.m.write(self.at(offset), &value.to_le_bytes());
    }
    fn write_u64(&mut self, offset: usize, value: u64) {
        let _ = self.m.write_u64(self.at(offset), value);
    }
    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        let at = self.at(offset);
        self.m.test_and_set_bit(at, bit).unwrap_or(false)
    }
    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        let at = self.at(offset);
        self.m.test_and_clear_bit(at, bit).unwrap_or(false)
    }
}

/// A view of one shared_info page: the fields the hypervisor reads and writes, by name.
#[doc(alias = "shared_info")]
pub struct SharedInfoPage<S>(pub S);

impl<'a, M: MachineMemory + ?Sized> SharedInfoPage<MachineFrame<'a, M>> {
    /// The shared_info frame `mfn` (a domain's `shared_info`) in machine memory, for reading.
    pub fn of(m: &'a M, mfn: Mfn) -> Self {
        SharedInfoPage(MachineFrame::new(m, mfn))
    }
}

impl<'a, M: MachineMemoryMut + ?Sized> SharedInfoPage<MachineFrameMut<'a, M>> {
    /// The shared_info frame `mfn` in machine memory, for reading and writing.
    pub fn of_mut(m: &'a mut M, mfn: Mfn) -> Self {
        SharedInfoPage(MachineFrameMut::new(m, mfn))
    }

    /// `dom`'s shared_info, with its vCPU's `vcpu_info` wherever the guest registered it.
    pub fn of_domain_mut(m: &'a mut M, dom: &Domain) -> Self {
        SharedInfoPage(MachineFrameMut::with_vcpu_info(
            m,
            dom.shared_info,
            dom.vcpu_info_map(),
        ))
    }
}

impl<'a, M: MachineMemory + ?Sized> SharedInfoPage<MachineFrame<'a, M>> {
    /// `dom`'s shared_info for reading, with its vCPU's `vcpu_info` wherever it was registered.
    pub fn of_domain(m: &'a M, dom: &Domain) -> Self {
        SharedInfoPage(MachineFrame::with_vcpu_info(
            m,
            dom.shared_info,
            dom.vcpu_info_map(),
        ))
    }
}

impl<S: SharedRead> SharedInfoPage<S> {
    /// `vcpu_info[vcpu].evtchn_upcall_pending`: an event upcall is pending.
    pub fn upcall_pending(&self, vcpu: u32) -> bool {
        self.0.read_u8(offsets::upcall_pending(vcpu)) != 0
    }

    /// Whether an upcall is pending and not masked for `vcpu`: `evtchn_upcall_pending` and
    /// `evtchn_upcall_mask`, the first two bytes of its `vcpu_info`, in one read (the way out of
    /// every hypercall asks this).
    pub fn upcall_deliverable(&self, vcpu: u32) -> bool {
        const _: () = assert!(offsets::UPCALL_MASK_AFTER_PENDING);
        let w = self.0.read_u32(offsets::upcall_pending(vcpu)).to_le_bytes();
        w[0] != 0 && w[1] == 0
    }

    /// `vcpu_info[vcpu].evtchn_upcall_mask`: the guest's virtual interrupt flag, inverted.
    pub fn upcall_mask(&self, vcpu: u32) -> bool {
        self.0.read_u8(offsets::upcall_mask(vcpu)) != 0
    }

    /// `vcpu_info[vcpu].arch.cr2`: the page-fault address last given to the guest.
    pub fn cr2(&self, vcpu: u32) -> u64 {
        self.0.read_u64(offsets::cr2(vcpu))
    }

    /// Bit `word` of `vcpu_info[vcpu].evtchn_pending_sel`.
    pub fn pending_sel(&self, vcpu: u32, word: u32) -> bool {
        self.0.test_bit(offsets::pending_sel(vcpu), word)
    }

    /// `port`'s bit in `evtchn_pending`.
    pub fn evtchn_pending(&self, port: u32) -> bool {
        self.0
            .test_bit(offsets::pending_word(port), port % offsets::BITS_PER_WORD)
    }

    /// `port`'s bit in `evtchn_mask`.
    pub fn evtchn_masked(&self, port: u32) -> bool {
        self.0
            .test_bit(offsets::mask_word(port), port % offsets::BITS_PER_WORD)
    }

    /// `arch.max_pfn`: the guest's highest pfn, as it wrote it (for `XENMEM_maximum_gpfn`).
    pub fn arch_max_pfn(&self) -> u64 {
        self.0.read_u64(offsets::ARCH_MAX_PFN)
    }

    /// `vcpu_info[vcpu].time`, as a guest would copy it (no version check).
    pub fn vcpu_time(&self, vcpu: u32) -> VcpuTimeInfo {
        let at = offsets::vcpu_time(vcpu);
        let tail = self.0.read_u32(at + offsets::TIME_SHIFT).to_le_bytes();
        VcpuTimeInfo {
            version: self.0.read_u32(at + offsets::TIME_VERSION),
            pad0: 0,
            tsc_timestamp: self.0.read_u64(at + offsets::TIME_TSC_TIMESTAMP),
            system_time: self.0.read_u64(at + offsets::TIME_SYSTEM_TIME),
            tsc_to_system_mul: self.0.read_u32(at + offsets::TIME_MUL),
            tsc_shift: tail[0] as i8,
            flags: tail[1],
            pad1: [0; 2],
        }
    }
}

/// Xen's `version_update_begin`: the next odd version, "update in progress".
const fn version_update_begin(version: u32) -> u32 {
    version.wrapping_add(1) | 1
}

/// Xen's `version_update_end`: the even version that closes an update.
const fn version_update_end(version: u32) -> u32 {
    version.wrapping_add(1)
}

impl<S: SharedMemory> SharedInfoPage<S> {
    /// Sets or clears `vcpu_info[vcpu].evtchn_upcall_mask`.
    pub fn set_upcall_mask(&mut self, vcpu: u32, masked: bool) {
        self.0.write_u8(offsets::upcall_mask(vcpu), masked.into());
    }

    /// Records a page-fault address where the guest's handler reads it.
    pub fn set_cr2(&mut self, vcpu: u32, cr2: u64) {
        self.0.write_u64(offsets::cr2(vcpu), cr2);
    }

    /// Locked `test_and_set_bit(0, &evtchn_upcall_pending)`; returns whether it was already set.
    pub fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        self.0.test_and_set_bit(offsets::upcall_pending(vcpu), 0)
    }

    /// Locked `test_and_clear_bit(0, &evtchn_upcall_pending)`, as a guest acknowledges an upcall.
    pub fn test_and_clear_upcall_pending(&mut self, vcpu: u32) -> bool {
        self.0.test_and_clear_bit(offsets::upcall_pending(vcpu), 0)
    }

    /// Locked `test_and_set_bit(word, &evtchn_pending_sel)`.
    pub fn test_and_set_pending_sel(&mut self, vcpu: u32, word: u32) -> bool {
        self.0.test_and_set_bit(offsets::pending_sel(vcpu), word)
    }

    /// Clears all of `vcpu_info[vcpu].evtchn_pending_sel` (what a guest's event loop does).
    pub fn clear_pending_sel(&mut self, vcpu: u32) {
        self.0.write_u64(offsets::pending_sel(vcpu), 0);
    }

    /// Locked `test_and_set_bit` of `port` in `evtchn_pending`.
    pub fn test_and_set_evtchn_pending(&mut self, port: u32) -> bool {
        self.0
            .test_and_set_bit(offsets::pending_word(port), port % offsets::BITS_PER_WORD)
    }

    /// Locked `test_and_clear_bit` of `port` in `evtchn_pending`.
    pub fn test_and_clear_evtchn_pending(&mut self, port: u32) -> bool {
        self.0
            .test_and_clear_bit(offsets::pending_word(port), port % offsets::BITS_PER_WORD)
    }

    /// Locked `test_and_set_bit` of `port` in `evtchn_mask`.
    pub fn test_and_set_evtchn_mask(&mut self, port: u32) -> bool {
        self.0
            .test_and_set_bit(offsets::mask_word(port), port % offsets::BITS_PER_WORD)
    }

    /// Locked `test_and_clear_bit` of `port` in `evtchn_mask`.
    pub fn test_and_clear_evtchn_mask(&mut self, port: u32) -> bool {
        self.0
            .test_and_clear_bit(offsets::mask_word(port), port % offsets::BITS_PER_WORD)
    }

    /// Publishes `info` into `vcpu_info[vcpu].time` with Xen's protocol
    /// (`update_vcpu_system_time` in `xen/arch/x86/time.c`): make `version` odd, write every
    /// other field, make `version` even. A guest that reads the same even version before and
    /// after reading the fields has a consistent copy. `info.version` is ignored; the counter in
    /// the page is advanced.
    pub fn publish_vcpu_time(&mut self, vcpu: u32, info: &VcpuTimeInfo) {
        let at = offsets::vcpu_time(vcpu);
        let version_at = at + offsets::TIME_VERSION;
        let odd = version_update_begin(self.0.read_u32(version_at));
        self.0.write_u32(version_at, odd);
        // Xen's smp_wmb(): the odd version must be visible before any field changes. On x86
        // stores are not reordered with each other, so only the compiler needs stopping.
        fence(Ordering::Release);
        self.0
            .write_u64(at + offsets::TIME_TSC_TIMESTAMP, info.tsc_timestamp);
        self.0
            .write_u64(at + offsets::TIME_SYSTEM_TIME, info.system_time);
        self.0
            .write_u32(at + offsets::TIME_MUL, info.tsc_to_system_mul);
        // tsc_shift, flags and the two padding bytes form the last 32-bit word.
        let tail = u32::from_le_bytes([info.tsc_shift as u8, info.flags, 0, 0]);
        self.0.write_u32(at + offsets::TIME_SHIFT, tail);
        fence(Ordering::Release);
        self.0.write_u32(version_at, version_update_end(odd));
    }

    /// Publishes the wallclock with Xen's protocol (`update_domain_wallclock_time`):
    /// `wc_version` odd, `wc_sec`/`wc_nsec`/`wc_sec_hi`, then `wc_version` even. `wc` is the
    /// wall-clock time at system time 0.
    pub fn publish_wallclock(&mut self, wc: Wallclock) {
        let odd = version_update_begin(self.0.read_u32(offsets::WC_VERSION));
        self.0.write_u32(offsets::WC_VERSION, odd);
        fence(Ordering::Release);
        self.0.write_u32(offsets::WC_SEC, wc.sec as u32);
        self.0.write_u32(offsets::WC_NSEC, wc.nsec);
        self.0.write_u32(offsets::WC_SEC_HI, (wc.sec >> 32) as u32);
        fence(Ordering::Release);
        self.0
            .write_u32(offsets::WC_VERSION, version_update_end(odd));
    }
}

// Shorthands over the view for the running vCPU of a domain (`Domain::vcpu_id`).

/// Whether `dom`'s running vCPU has its event upcalls masked: the byte after
/// [`running_upcall_word`]'s (placed from the vCPU's own registration, no [`VcpuInfoMap`] of
/// every vCPU built: every upcall and every block asks).
#[inline]
pub fn upcall_mask<M: MachineMemory + ?Sized>(m: &M, dom: &Domain) -> bool {
    read_bytes::<2, M>(m, running_upcall_word(dom))[1] != 0
}

/// Sets or clears the upcall mask of `dom`'s running vCPU (placed as [`upcall_mask`] places it).
#[inline]
pub fn set_upcall_mask<M: MachineMemoryMut + ?Sized>(m: &mut M, dom: &Domain, masked: bool) {
    let at = Maddr(running_upcall_word(dom).0 + 1);
    let _ = m.write(at, &[u8::from(masked)]);
}

/// Whether an event upcall is pending and unmasked for `dom`'s running vCPU.
#[inline]
pub fn upcall_deliverable<M: MachineMemory + ?Sized>(m: &M, dom: &Domain) -> bool {
    upcall_deliverable_at(m, running_upcall_word(dom))
}

/// [`upcall_deliverable`] with the upcall word placed already ([`upcall_word`]).
#[inline]
pub fn upcall_deliverable_at<M: MachineMemory + ?Sized>(m: &M, word: Maddr) -> bool {
    upcall_word_deliverable(m.read_u32_unaligned(word).unwrap_or(0).to_le_bytes())
}

/// Whether an event upcall is pending for `dom`'s running vCPU.
pub fn upcall_pending<M: MachineMemory + ?Sized>(m: &M, dom: &Domain) -> bool {
    SharedInfoPage::of_domain(m, dom).upcall_pending(dom.vcpu_id())
}

/// Whether an event upcall is pending for `dom`'s vCPU `vcpu`: its `evtchn_upcall_pending`,
/// placed from that vCPU's own `vcpu_info` registration as [`running_upcall_word`] places the
/// running one's (no [`VcpuInfoMap`] of every vCPU built: the scheduler asks this of each
/// blocked vCPU on every pass).
pub fn upcall_pending_of<M: MachineMemory + ?Sized>(m: &M, dom: &Domain, vcpu: u32) -> bool {
    let at = match dom
        .vcpus
        .get(vcpu as usize)
        .and_then(|v| v.vcpu_info_maddr())
    {
        Some(at) => Maddr(at.0 + offsets::upcall_pending(0) as u64),
        None => Maddr(dom.shared_info.maddr().0 + offsets::upcall_pending(vcpu) as u64),
    };
    read_bytes::<1, M>(m, at)[0] != 0
}

/// Whether event channel `port` of `dom` is pending (its bit in `evtchn_pending`).
pub fn port_pending<M: MachineMemory + ?Sized>(m: &M, dom: &Domain, port: u32) -> bool {
    SharedInfoPage::of_domain(m, dom).evtchn_pending(port)
}

/// Records a page-fault address where `dom`'s handler reads it (the running vCPU's).
pub fn set_cr2<M: MachineMemoryMut + ?Sized>(m: &mut M, dom: &Domain, cr2: u64) {
    SharedInfoPage::of_domain_mut(m, dom).set_cr2(dom.vcpu_id(), cr2);
}

/// The page-fault address last given to `dom`'s running vCPU.
pub fn cr2<M: MachineMemory + ?Sized>(m: &M, dom: &Domain) -> u64 {
    SharedInfoPage::of_domain(m, dom).cr2(dom.vcpu_id())
}

#[cfg(test)]
mod tests;
