//! dom0's grant-map area: where blkback maps a front end's data grants
//! (`GNTTABOP_map_grant_ref` with `GNTMAP_host_map | GNTMAP_device_map`) so that the CPU can copy
//! through them and the virtio device can DMA into them (at the `dev_bus_addr` the hypervisor
//! returns, `mfn << 12`), as Linux's blkback maps persistent grants.
//!
//! The area is [`SLOTS`] pages of the kernel's device range (L4 slot 3) with page tables but no
//! frames of our own behind them: a mapping's PTE is the hypervisor's to write, and to clear again
//! on `GNTTABOP_unmap_grant_ref`. Each slot remembers its mapping's bus address, which
//! [`bus_addr`] gives the virtio driver's `Hal::share` for a buffer inside a mapped slot.

use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use hypercall_abi::grant_table::{
    GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_general_error, GNTST_no_space,
    GnttabMapGrantRef, GnttabUnmapGrantRef,
};
use hypercall_abi::xen::UVMF_INVLPG;
use ring_drivers::blkif::{GrantIoError, GrantMapping};
use spin::Mutex;

use crate::kernel::hypercall as hc;

/// Pages in the area: room for two vbds' persistent grants (320 each, at most) and more
/// batches' mappings, within the 1024 mappings the hypervisor tracks for dom0 (rings and
/// netback need some too). Past it, requests are grant-copied.
pub const SLOTS: usize = 768;

const PAGE: u64 = 4096;

struct Area {
    /// First page's address (0: not set up yet).
    base: u64,
    /// Free slots.
    free: Vec<u16>,
}

static AREA: Mutex<Area> = Mutex::new(Area {
    base: 0,
    free: Vec::new(),
});

/// Each slot's mapping's bus address (0: free), written with `AREA` locked (a slot taken from
/// or given back to its free list) and read without it, by [`bus_addr`] (three times a request
/// of the virtio driver: its check, `Hal::share` and `Hal::unshare`). Between [`unmap`]'s
/// hypercall and its clearing of the entry a reader could still get the old address; only a
/// caller using a mapping it is itself giving up could be there (blkback unmaps its own slots,
/// after the device is done with them, in dom0's one context).
static BUS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// `AREA`'s `base`, readable without the lock: set once by [`init`] and never changed, so that
/// [`bus_addr`] turns away an address outside the area (the virtio driver's headers, status
/// bytes and dom0's own buffers, three times a request) without locking.
static AREA_BASE: AtomicU64 = AtomicU64::new(0);

/// Sets the area up (once): reserves its addresses and builds its page tables. `false` if that
/// failed (blkback then copies every byte).
pub fn init() -> bool {
    let mut a = AREA.lock();
    if a.base != 0 {
        return true;
    }
    match super::blkdev::reserve_va(SLOTS) {
        Ok(base) => {
            a.base = base;
            a.free = (0..SLOTS as u16).rev().collect();
            AREA_BASE.store(base, Ordering::Release);
            true
        }
        Err(e) => {
            println!("blkback: no grant-map area ({e}): grant copies only");
            false
        }
    }
}

/// Whether the area is set up.
pub fn ready() -> bool {
    AREA.lock().base != 0
}

/// Maps each `(gref, readonly)` of `domid` in a free slot, all in one hypercall; appends one
/// result per entry to `out`.
pub fn map(domid: u16, grefs: &[(u32, bool)], out: &mut Vec<Result<GrantMapping, GrantIoError>>) {
    let mut a = AREA.lock();
    let base = a.base;
    let mut ops: Vec<GnttabMapGrantRef> = Vec::with_capacity(grefs.len());
    let mut slots: Vec<Option<u16>> = Vec::with_capacity(grefs.len());
    for &(gref, ro) in grefs {
        let slot = if base != 0 { a.free.pop() } else { None };
        slots.push(slot);
        if let Some(s) = slot {
            let mut flags = GNTMAP_host_map | GNTMAP_device_map;
            if ro {
                flags |= GNTMAP_readonly;
            }
            ops.push(GnttabMapGrantRef {
                host_addr: base + u64::from(s) * PAGE,
                flags,
                r#ref: gref,
                dom: domid,
                ..Default::default()
            });
        }
    }
    let rc = if ops.is_empty() {
        0
    } else {
        hc::grant_table_op(&mut ops)
    };
    let mut done = ops.iter();
    for (&(gref, ro), slot) in grefs.iter().zip(slots) {
        let Some(s) = slot else {
            out.push(Err(GrantIoError {
                gref,
                status: GNTST_no_space,
            }));
            continue;
        };
        let op = done.next().expect("one op per slot");
        let status = if rc != 0 {
            GNTST_general_error
        } else {
            op.status
        };
        if status != 0 || op.dev_bus_addr == 0 || op.dev_bus_addr & (PAGE - 1) != 0 {
            if status == 0 {
                // Mapped, but with no bus address the device could use: unmapped again, so
                // the slot is not reused over a live mapping (and the PTE cleared if the
                // unmap is refused).
                let mut un = [GnttabUnmapGrantRef {
                    host_addr: op.host_addr,
                    dev_bus_addr: op.dev_bus_addr,
                    handle: op.handle,
                    ..Default::default()
                }];
                if hc::grant_table_op(&mut un) != 0 || un[0].status != 0 {
                    // SAFETY: the slot is the area's and nothing references it; its PTE goes.
                    unsafe { hc::update_va_mapping(op.host_addr, 0, UVMF_INVLPG) };
                }
            }
            // Nothing mapped there now (a failed op writes no PTE; a mapping without a usable
            // bus address was just undone): the slot goes back on the free list, or a front
            // end naming bad references would use the area up for every vbd. Not when the
            // hypercall itself failed: ops before the failure may have mapped their slots
            // without saying so, and a slot left out is better than one reused over a live
            // mapping.
            if rc == 0 {
                a.free.push(s);
            }
            out.push(Err(GrantIoError {
                gref,
                status: if status != 0 {
                    status
                } else {
                    GNTST_general_error
                },
            }));
            continue;
        }
        BUS[usize::from(s)].store(op.dev_bus_addr, Ordering::Release);
        out.push(Ok(GrantMapping {
            gref,
            handle: op.handle,
            host_addr: op.host_addr,
            bus_addr: op.dev_bus_addr,
            readonly: ro,
        }));
    }
}

/// The slot of a mapping's address, if it is one of the area's pages.
fn slot_of(a: &Area, va: u64) -> Option<usize> {
    if a.base == 0 || va < a.base || va >= a.base + SLOTS as u64 * PAGE {
        return None;
    }
    Some(((va - a.base) / PAGE) as usize)
}

/// Gives up mappings made by [`map`], in one hypercall; returns how many were refused (a dead
/// granter's grants are revoked by the hypervisor already). The slots are free afterwards
/// (their PTEs cleared whatever the hypervisor said).
pub fn unmap(maps: &[GrantMapping]) -> usize {
    if maps.is_empty() {
        return 0;
    }
    let mut a = AREA.lock();
    let mut ops: Vec<GnttabUnmapGrantRef> = maps
        .iter()
        .map(|m| GnttabUnmapGrantRef {
            host_addr: m.host_addr,
            dev_bus_addr: m.bus_addr,
            handle: m.handle,
            ..Default::default()
        })
        .collect();
    let rc = hc::grant_table_op(&mut ops);
    let mut failed = 0;
    for (m, op) in maps.iter().zip(&ops) {
        let Some(s) = slot_of(&a, m.host_addr) else {
            failed += 1;
            continue;
        };
        if rc != 0 || op.status != 0 {
            failed += 1;
            // SAFETY: the slot is ours (the area's) and nothing references it; its PTE goes.
            unsafe { hc::update_va_mapping(m.host_addr, 0, UVMF_INVLPG) };
        }
        if BUS[s].swap(0, Ordering::AcqRel) != 0 {
            a.free.push(s as u16);
        }
    }
    failed
}

/// The bus address of `[va, va + len)` if it lies inside one mapped slot (for the virtio
/// driver's `Hal::share`).
pub fn bus_addr(va: u64, len: usize) -> Option<u64> {
    let base = AREA_BASE.load(Ordering::Acquire);
    if base == 0 || va < base || va >= base + SLOTS as u64 * PAGE {
        return None;
    }
    let s = ((va - base) / PAGE) as usize;
    let off = va & (PAGE - 1);
    let bus = BUS[s].load(Ordering::Acquire);
    if len == 0 || off + len as u64 > PAGE || bus == 0 {
        return None;
    }
    Some(bus + off)
}

/// The address of `len` bytes at `offset` of a live mapping, checked.
fn at(map: &GrantMapping, offset: usize, len: usize) -> *mut u8 {
    let a = AREA.lock();
    let s = slot_of(&a, map.host_addr).expect("a mapping of the area");
    assert!(
        BUS[s].load(Ordering::Acquire) == map.bus_addr && map.host_addr.is_multiple_of(PAGE),
        "a live mapping"
    );
    assert!(offset + len <= PAGE as usize, "inside the granted page");
    (map.host_addr as usize + offset) as *mut u8
}

/// Copies out of a mapped grant.
pub fn read(map: &GrantMapping, offset: usize, buf: &mut [u8]) {
    let p = at(map, offset, buf.len());
    // SAFETY: inside a live mapping of a granted page (checked by `at`); the front end may
    // write it meanwhile, so it is only ever copied, never referenced.
    unsafe { ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
}

/// Copies into a mapped (read-write) grant.
pub fn write(map: &GrantMapping, offset: usize, data: &[u8]) {
    assert!(!map.readonly, "a read-only mapping");
    let p = at(map, offset, data.len());
    // SAFETY: as in `read`; the mapping is writable (not GNTMAP_readonly).
    unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
}
