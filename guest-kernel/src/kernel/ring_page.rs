//! Pages shared with other domains, as the ring protocols see them ([`MappedPage`]), and the
//! window pages dom0 maps other domains' frames into.
//!
//! A shared page is written by the other side at any time, so it is never referenced: bytes are
//! copied with volatile accesses and the ring indices are atomics (`ring_drivers::SharedPage`).
//! A window is a page of virtual address space in its own L4 slot (`layout::WINDOW_BASE`, no
//! memory of ours behind it: an image page per window would cost every domain, the smallest
//! domU too) whose L1 entry is pointed at a foreign frame (`update_va_mapping_otherdomain`) and
//! cleared (PTE 0) when the mapping is given up, so that no mapping keeps the other domain's
//! frame referenced after it is destroyed. The one L1 table behind the [`WINDOWS`] windows is
//! built (with `mmu_update`, `pt::ensure_l1`) on the first claim.
//!
//! A window can also hold a **grant mapping** ([`map_grant`]): `GNTTABOP_map_grant_ref` with
//! `GNTMAP_host_map` at the window's address makes the hypervisor write the PTE (the other
//! domain's granted frame, shared for real, as blkback maps a ring); [`unmap_grant`] gives it up
//! with `GNTTABOP_unmap_grant_ref`, which clears the PTE.

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_kernel::layout::WINDOW_BASE;
use guest_kernel::paging::{make_entry, PTE_A, PTE_D, PTE_P, PTE_RW};
use hypercall_abi::grant_table::{GNTMAP_host_map, GnttabMapGrantRef, GnttabUnmapGrantRef};
use hypercall_abi::xen::UVMF_INVLPG;
use ring_drivers::shared_page::{SharedPage, PAGE_SIZE};

use spin::Once;

use super::hypercall as hc;
use super::pt::{self, PtError};
use super::{direct_map, mm};

/// A mapped page shared with another domain, at virtual address `va`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedPage {
    va: u64,
}

impl MappedPage {
    /// The page mapped at `va`.
    ///
    /// # Safety
    /// `va` must be page-aligned and mapped (readable and writable) for as long as the value (or
    /// a copy) is used, and no Rust reference may point into the page.
    pub unsafe fn new(va: u64) -> Self {
        assert_eq!(va % PAGE_SIZE as u64, 0, "a shared page is page-aligned");
        MappedPage { va }
    }

    /// Its virtual address.
    pub fn va(&self) -> u64 {
        self.va
    }

    fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset + len <= PAGE_SIZE, "access past the shared page");
        (self.va as usize + offset) as *mut u8
    }
}

impl SharedPage for MappedPage {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let p = self.at(offset, buf.len());
        // Each byte read once, with volatile accesses because the other domain writes the page
        // behind the compiler's back: eight at a time where the page is 8-aligned (ring slots
        // are), so that a 112-byte slot is 14 reads, not 112.
        let head = p.align_offset(8).min(buf.len());
        let (start, rest) = buf.split_at_mut(head);
        let (words, tail) = rest.split_at_mut(rest.len() & !7);
        for (i, b) in start.iter_mut().enumerate() {
            // SAFETY: inside the mapped page (checked by `at`).
            *b = unsafe { ptr::read_volatile(p.add(i)) };
        }
        for (i, w) in words.chunks_exact_mut(8).enumerate() {
            // SAFETY: inside the mapped page, 8-aligned (`head` bytes past `p` are).
            let v = unsafe { ptr::read_volatile(p.add(head + 8 * i).cast::<u64>()) };
            let w: &mut [u8; 8] = w.try_into().expect("8 bytes");
            *w = v.to_ne_bytes();
        }
        let at = head + words.len();
        for (i, b) in tail.iter_mut().enumerate() {
            // SAFETY: inside the mapped page.
            *b = unsafe { ptr::read_volatile(p.add(at + i)) };
        }
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        let p = self.at(offset, data.len());
        // As `read_bytes`: each byte written once, eight at a time where aligned.
        let head = p.align_offset(8).min(data.len());
        let (start, rest) = data.split_at(head);
        let (words, tail) = rest.split_at(rest.len() & !7);
        for (i, &b) in start.iter().enumerate() {
            // SAFETY: inside the mapped page (checked by `at`), which is mapped writable.
            unsafe { ptr::write_volatile(p.add(i), b) };
        }
        for (i, w) in words.chunks_exact(8).enumerate() {
            let v = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
            // SAFETY: inside the mapped page, 8-aligned.
            unsafe { ptr::write_volatile(p.add(head + 8 * i).cast::<u64>(), v) };
        }
        let at = head + words.len();
        for (i, &b) in tail.iter().enumerate() {
            // SAFETY: inside the mapped page.
            unsafe { ptr::write_volatile(p.add(at + i), b) };
        }
    }

    fn load_acquire_u32(&self, offset: usize) -> u32 {
        let p = self.at(offset, 4).cast::<u32>();
        assert!(p.is_aligned());
        // SAFETY: an aligned u32 inside the mapped page, accessed only atomically by both sides.
        unsafe { AtomicU32::from_ptr(p) }.load(Ordering::Acquire)
    }

    fn store_release_u32(&mut self, offset: usize, value: u32) {
        let p = self.at(offset, 4).cast::<u32>();
        assert!(p.is_aligned());
        // SAFETY: as in `load_acquire_u32`.
        unsafe { AtomicU32::from_ptr(p) }.store(value, Ordering::Release);
    }
}

/// Number of windows: one L1 table's worth, three rings (xenstore, console, block) for each of
/// 80 domains and more to spare.
pub const WINDOWS: usize = 512;

/// Bit i of word i / 64 set: window i is in use.
static IN_USE: [AtomicU64; WINDOWS / 64] = [const { AtomicU64::new(0) }; WINDOWS / 64];

/// The L1 table behind the windows, built on the first claim.
static TABLE: Once<Result<(), PtError>> = Once::new();

/// The address of window `i`.
fn window_va(i: usize) -> u64 {
    WINDOW_BASE + (i * PAGE_SIZE) as u64
}

/// The index of the window at `va`.
fn window_index(va: u64) -> usize {
    let i = (va.wrapping_sub(WINDOW_BASE) / PAGE_SIZE as u64) as usize;
    assert!(
        i < WINDOWS && va.is_multiple_of(PAGE_SIZE as u64),
        "not a window page"
    );
    i
}

fn release(i: usize) {
    IN_USE[i / 64].fetch_and(!(1 << (i % 64)), Ordering::SeqCst);
}

/// Why a foreign frame could not be mapped.
#[derive(Clone, Copy, Debug)]
pub enum MapError {
    /// Every window is in use.
    NoWindow,
    /// The windows' page table could not be built.
    Table(PtError),
    /// The hypervisor refused (`update_va_mapping_otherdomain`'s return code).
    Refused(i64),
    /// `GNTTABOP_map_grant_ref` failed: the hypercall's return code, or its `GNTST_*` status.
    Grant(i64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::NoWindow => write!(f, "no free window page"),
            MapError::Table(e) => write!(f, "window page table: {e}"),
            MapError::Refused(rc) => write!(f, "update_va_mapping_otherdomain={rc}"),
            MapError::Grant(st) => write!(f, "map_grant_ref status {st}"),
        }
    }
}

/// Claims a free window: its index and address.
fn claim() -> Result<(usize, u64), MapError> {
    TABLE
        .call_once(|| {
            // The L1's frame comes from the allocator, which needs the direct map.
            direct_map::init_memory()?;
            pt::ensure_l1(mm::kernel_l4(), WINDOW_BASE).map(|_| ())
        })
        .map_err(MapError::Table)?;
    for (w, word) in IN_USE.iter().enumerate() {
        let mut used = word.load(Ordering::SeqCst);
        while used != u64::MAX {
            let bit = (!used).trailing_zeros();
            match word.compare_exchange(used, used | 1 << bit, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    let i = w * 64 + bit as usize;
                    return Ok((i, window_va(i)));
                }
                Err(now) => used = now,
            }
        }
    }
    Err(MapError::NoWindow)
}

/// Maps machine frame `mfn` of domain `domid` at a free window (writable or read-only);
/// returns the page.
pub fn map_foreign(domid: u16, mfn: u64, writable: bool) -> Result<MappedPage, MapError> {
    let (i, va) = claim()?;
    let rw = if writable { PTE_RW | PTE_D } else { 0 };
    let pte = make_entry(mfn, PTE_P | PTE_A | rw);
    // SAFETY: the window is ours alone (just claimed) and never referenced as Rust data.
    let rc = unsafe { hc::update_va_mapping_otherdomain(va, pte, UVMF_INVLPG, domid) };
    if rc != 0 {
        release(i);
        return Err(MapError::Refused(rc));
    }
    // SAFETY: just mapped, page-aligned, only reached through the returned value.
    Ok(unsafe { MappedPage::new(va) })
}

/// Maps grant `gref` of domain `domid` (read-write) at a free window with
/// `GNTTABOP_map_grant_ref(GNTMAP_host_map)`; returns the page and the grant handle.
pub fn map_grant(domid: u16, gref: u32) -> Result<(MappedPage, u32), MapError> {
    let (i, va) = claim()?;
    let mut op = [GnttabMapGrantRef {
        host_addr: va,
        flags: GNTMAP_host_map,
        r#ref: gref,
        dom: domid,
        ..Default::default()
    }];
    let rc = hc::grant_table_op(&mut op);
    if rc != 0 || op[0].status != 0 {
        // The window's own page may have been replaced by nothing: make it empty either way.
        // SAFETY: the window is ours alone (just claimed) and never referenced as Rust data.
        unsafe { hc::update_va_mapping(va, 0, UVMF_INVLPG) };
        release(i);
        return Err(MapError::Grant(if rc != 0 {
            rc
        } else {
            i64::from(op[0].status)
        }));
    }
    // SAFETY: the hypervisor just mapped the granted frame there, page-aligned; it is only
    // reached through the returned value.
    Ok((unsafe { MappedPage::new(va) }, op[0].handle))
}

/// Gives up a grant mapping made by [`map_grant`] (`GNTTABOP_unmap_grant_ref`, which clears the
/// PTE) and frees the window; returns the hypercall's result or the op's status (non-zero when
/// the hypervisor already revoked the mapping because the granter died). The caller must not use
/// `page` afterwards.
pub fn unmap_grant(page: MappedPage, handle: u32) -> i64 {
    let i = window_index(page.va);
    let mut op = [GnttabUnmapGrantRef {
        host_addr: page.va,
        handle,
        ..Default::default()
    }];
    let rc = hc::grant_table_op(&mut op);
    let rc = if rc != 0 { rc } else { i64::from(op[0].status) };
    if rc != 0 {
        // Revoked (or never there): make sure nothing stays mapped at the window.
        // SAFETY: the caller gives the window up; nothing references it.
        unsafe { hc::update_va_mapping(page.va, 0, UVMF_INVLPG) };
    }
    release(i);
    rc
}

/// Unmaps a window (PTE 0: the foreign frame is no longer referenced) and frees it. The caller
/// must not use `page` (or a copy) afterwards.
pub fn unmap(page: MappedPage) -> i64 {
    let i = window_index(page.va);
    // SAFETY: the caller gives the window up; nothing references it.
    let rc = unsafe { hc::update_va_mapping(page.va, 0, UVMF_INVLPG) };
    release(i);
    rc
}
