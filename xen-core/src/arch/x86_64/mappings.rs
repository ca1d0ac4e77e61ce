//! The hypervisor's own mappings of machine memory: the image's range, the boot direct map, the
//! hypervisor L4 slots every guest L4 shares, and the M2P table's mapping.

use core::ops::Range;

use xen_core::layout::{self, XEN_VIRT_START};
use xen_core::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};

extern "C" {
    /// First byte of the image (defined by `xen.ld`).
    static __image_start: u8;
    /// One past the image's last byte, `.bss` included (defined by `xen.ld`).
    static __image_end: u8;
}

/// The machine addresses the hypervisor image occupies, from its first byte to the end of `.bss`.
pub fn image_maddr_range() -> Range<u64> {
    // Only the symbols' addresses are used; they are link-time constants inside the image window.
    let start = (&raw const __image_start) as u64;
    let end = (&raw const __image_end) as u64;
    (start - XEN_VIRT_START)..(end - XEN_VIRT_START)
}

/// Read-only access to machine memory through the boot direct map, for parsing what the boot
/// loader left there.
///
/// Ranges outside the boot direct map (the low 4 GiB) and ranges that overlap the hypervisor image
/// are refused: the image holds live Rust data (the console lock, page tables), which must never be
/// aliased by a `&[u8]`.
pub struct BootDirectMap;

impl MachineMemory for BootDirectMap {
    fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
        let end = addr.0.checked_add(u64::try_from(len).ok()?)?;
        if end > layout::BOOT_DIRECTMAP_SIZE {
            return None;
        }
        let image = image_maddr_range();
        if addr.0 < image.end && image.start < end {
            return None;
        }
        let virt = layout::directmap_virt(addr.0)?;
        // SAFETY: `[addr, end)` lies in the low 4 GiB, which `boot.rs` maps in the direct map for
        // the hypervisor's lifetime. It does not overlap the image, and nothing else writes machine
        // memory while the boot information is parsed (one CPU, no guests, no allocator yet), so
        // the bytes do not change while the returned slice lives.
        Some(unsafe { core::slice::from_raw_parts(virt as *const u8, len) })
    }
}

extern "C" {
    /// The hypervisor's L4 table (built by `boot.rs`); its slots 256..271 go into every guest L4.
    static mut boot_l4: [u64; 512];
}

/// L4 slots reserved for the hypervisor in every address space (`HYPERVISOR_VIRT_START` ..
/// `HYPERVISOR_VIRT_END`).
pub const XEN_SLOTS: core::ops::Range<usize> = 256..272;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const NX: u64 = 1 << 63;

/// The hypervisor's entries for L4 slots 256..271, to be copied into every guest L4.
pub fn hypervisor_l4_slots() -> [u64; 16] {
    let mut out = [0u64; 16];
    // SAFETY: boot_l4 is only written during boot on this CPU (by `map_m2p` and `boot.rs`); reading
    // it here does not race.
    let l4 = unsafe { core::ptr::read(&raw const boot_l4) };
    out.copy_from_slice(&l4[XEN_SLOTS]);
    out
}

/// Maps `frames` machine frames starting at `first` read-only and user-readable at
/// `MACH2PHYS_VIRT_START`, the read-only M2P every PV guest may read. Page-table frames come from
/// `alloc` and are zeroed through `mem`.
pub fn map_m2p<M: MachineMemoryMut + ?Sized>(
    mem: &mut M,
    alloc: &mut dyn FnMut() -> Option<Mfn>,
    first: Mfn,
    frames: u64,
) -> Option<()> {
    let base = hypercall_abi::arch_x86_64::MACH2PHYS_VIRT_START;
    let mut new_table = |mem: &mut M| -> Option<u64> {
        let mfn = alloc()?;
        mem.zero(mfn.maddr(), 4096)?;
        Some(mfn.maddr().0)
    };
    let l4 = &raw mut boot_l4;
    let slot = layout::l4_index(base);
    // SAFETY: boot_l4 is written only here, at boot, on the one CPU, before any guest exists; no
    // reference to it is live.
    let mut l4e = unsafe { (*l4)[slot] };
    if l4e & P == 0 {
        l4e = new_table(mem)? | P | RW | US;
        // SAFETY: as above.
        unsafe { (*l4)[slot] = l4e };
    }
    for i in 0..frames {
        let va = base + i * 4096;
        let l3 = l4e & 0x000f_ffff_ffff_f000;
        let l3e_at = Maddr(l3 + 8 * layout::l3_index(va) as u64);
        if mem.read_u64(l3e_at)? & P == 0 {
            let t = new_table(mem)?;
            mem.write_u64(l3e_at, t | P | RW | US)?;
        }
        let l2 = mem.read_u64(l3e_at)? & 0x000f_ffff_ffff_f000;
        let l2e_at = Maddr(l2 + 8 * layout::l2_index(va) as u64);
        if mem.read_u64(l2e_at)? & P == 0 {
            let t = new_table(mem)?;
            mem.write_u64(l2e_at, t | P | RW | US)?;
        }
        let l1 = mem.read_u64(l2e_at)? & 0x000f_ffff_ffff_f000;
        let l1e_at = Maddr(l1 + 8 * ((va >> 12) & 511));
        mem.write_u64(l1e_at, (first.0 + i) << 12 | P | US | NX)?;
    }
    Some(())
}
