//! Grant tables v1, client side: granting our frames to another domain, and grant copies.
//!
//! `GNTTABOP_setup_table` hands back the machine frames of our grant table (shared with us by
//! the hypervisor); the first is mapped over a window page of .bss, and entries are written
//! there as `grant_entry_v1` (`flags`, `domid`, `frame`): `domid` and `frame` first, then, after
//! a write barrier, `flags` (`GTF_permit_access`, plus `GTF_readonly`), which is what makes the
//! grant valid (Linux's `gnttab_grant_foreign_access`). Entries 0..7 are reserved; a reference
//! whose grant was ended ([`end_access`]) is handed out again.
//! `GNTTABOP_copy` copies between a granted frame of another domain and one of ours without
//! mapping anything.

use core::ptr;
use core::sync::atomic::{fence, AtomicU16, Ordering};

use guest_kernel::paging::{make_entry, PTE_A, PTE_D, PTE_P, PTE_RW};
use hypercall_abi::grant_table::{
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GTF_permit_access, GTF_reading, GTF_readonly,
    GTF_writing, GnttabCopy, GnttabCopyPtr, GnttabSetupTable, GrantEntryV1,
    GNTTAB_NR_RESERVED_ENTRIES,
};
use hypercall_abi::xen::{DOMID_SELF, UVMF_INVLPG};
use spin::Mutex;

use super::hypercall as hc;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The window the first grant-table frame is mapped over; reached only through raw pointers.
static mut TABLE_WINDOW: Page = Page([0; 4096]);

/// Entries in one frame of a v1 table.
const ENTRIES: u32 = 4096 / core::mem::size_of::<GrantEntryV1>() as u32;

/// Which references of the mapped frame are in use (the reserved ones always are): a reference
/// whose grant was ended is handed out again.
struct Refs {
    used: [u64; ENTRIES as usize / 64],
}

impl Refs {
    fn new() -> Refs {
        let mut r = Refs {
            used: [0; ENTRIES as usize / 64],
        };
        for gref in 0..GNTTAB_NR_RESERVED_ENTRIES {
            r.set(gref, true);
        }
        r
    }

    fn set(&mut self, gref: u32, used: bool) {
        let (w, b) = ((gref / 64) as usize, gref % 64);
        if used {
            self.used[w] |= 1 << b;
        } else {
            self.used[w] &= !(1 << b);
        }
    }

    /// The lowest free reference, now marked used.
    fn take(&mut self) -> Option<u32> {
        let (w, word) = self.used.iter().enumerate().find(|(_, &u)| u != u64::MAX)?;
        let gref = w as u32 * 64 + (!word).trailing_zeros();
        self.set(gref, true);
        Some(gref)
    }
}

/// The mapped table's reference allocator (`None` until [`init`]).
static TABLE: Mutex<Option<Refs>> = Mutex::new(None);

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug)]
pub enum GrantError {
    /// A hypercall failed (what, return code).
    Hypercall(&'static str, i64),
    /// A per-op status (`GNTST_*`).
    Status(&'static str, i16),
    /// The table's one mapped frame is full.
    Full,
    /// [`init`] has not run.
    NoTable,
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Hypercall(what, rc) => write!(f, "{what}={rc}"),
            GrantError::Status(what, st) => write!(
                f,
                "{what} status {st} ({})",
                hypercall_abi::grant_table::gntst_message(*st).unwrap_or("?")
            ),
            GrantError::Full => write!(f, "grant table frame full"),
            GrantError::NoTable => write!(f, "grant table not set up"),
        }
    }
}

/// Sets up (one frame) and maps our grant table; once.
pub fn init() -> Result<(), GrantError> {
    let mut t = TABLE.lock();
    if t.is_some() {
        return Ok(());
    }
    let mut frames = [0u64; 1];
    let mut st = [GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: hc::ptr(frames.as_mut_ptr()),
        ..Default::default()
    }];
    let rc = hc::grant_table_op(&mut st);
    if rc != 0 {
        return Err(GrantError::Hypercall("setup_table", rc));
    }
    if st[0].status != 0 {
        return Err(GrantError::Status("setup_table", st[0].status));
    }
    let va = (&raw mut TABLE_WINDOW) as u64;
    let pte = make_entry(frames[0], PTE_P | PTE_RW | PTE_A | PTE_D);
    // SAFETY: the window is referenced by nothing but this module, through raw pointers.
    let rc = unsafe { hc::update_va_mapping(va, pte, UVMF_INVLPG) };
    if rc != 0 {
        return Err(GrantError::Hypercall("update_va_mapping(grant frame)", rc));
    }
    *t = Some(Refs::new());
    Ok(())
}

fn entry(gref: u32) -> *mut GrantEntryV1 {
    assert!(gref < ENTRIES);
    // SAFETY: address arithmetic inside the mapped window page (gref < ENTRIES).
    unsafe {
        (&raw mut TABLE_WINDOW)
            .cast::<GrantEntryV1>()
            .add(gref as usize)
    }
}

/// Grants `domid` access to our machine frame `mfn` (read-only if `readonly`); returns the
/// reference.
pub fn grant_access(domid: u16, mfn: u64, readonly: bool) -> Result<u32, GrantError> {
    let mut t = TABLE.lock();
    let refs = t.as_mut().ok_or(GrantError::NoTable)?;
    let gref = refs.take().ok_or(GrantError::Full)?;
    let e = entry(gref);
    // SAFETY: `e` is entry `gref` of the mapped table, which only we (and the hypervisor, in the
    // flags' GTF_reading/writing bits) write; the entry was unused.
    unsafe {
        ptr::write_volatile(&raw mut (*e).domid, domid);
        ptr::write_volatile(&raw mut (*e).frame, mfn as u32);
        fence(Ordering::SeqCst);
        let flags = GTF_permit_access | if readonly { GTF_readonly } else { 0 };
        AtomicU16::from_ptr(&raw mut (*e).flags).store(flags, Ordering::SeqCst);
    }
    Ok(gref)
}

/// Ends a grant if the other side does not use it now; whether it did.
pub fn end_access(gref: u32) -> bool {
    let e = entry(gref);
    // SAFETY: as in `grant_access`; the flags word is shared with the hypervisor: atomic.
    let flags = unsafe { AtomicU16::from_ptr(&raw mut (*e).flags) };
    let cur = flags.load(Ordering::SeqCst);
    if cur & (GTF_reading | GTF_writing) != 0 {
        return false;
    }
    let ended = flags
        .compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if ended && gref >= GNTTAB_NR_RESERVED_ENTRIES {
        if let Some(refs) = TABLE.lock().as_mut() {
            refs.set(gref, false);
        }
    }
    ended
}

/// One side of a copy.
#[derive(Clone, Copy, Debug)]
pub enum CopyEnd {
    /// A grant reference of domain `domid`.
    Grant { domid: u16, gref: u32 },
    /// One of our own machine frames.
    Local { mfn: u64 },
}

impl CopyEnd {
    fn ptr(self) -> (GnttabCopyPtr, bool) {
        match self {
            CopyEnd::Grant { domid, gref } => (
                GnttabCopyPtr {
                    u: gref.into(),
                    domid,
                    ..Default::default()
                },
                true,
            ),
            CopyEnd::Local { mfn } => (
                GnttabCopyPtr {
                    u: mfn,
                    domid: DOMID_SELF,
                    ..Default::default()
                },
                false,
            ),
        }
    }
}

/// `GNTTABOP_copy` of `len` bytes from the start of `src` to the start of `dst`.
pub fn copy(src: CopyEnd, dst: CopyEnd, len: u16) -> Result<(), GrantError> {
    let (source, sg) = src.ptr();
    let (dest, dg) = dst.ptr();
    let mut flags = 0;
    if sg {
        flags |= GNTCOPY_source_gref;
    }
    if dg {
        flags |= GNTCOPY_dest_gref;
    }
    let mut c = [GnttabCopy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    }];
    let rc = hc::grant_table_op(&mut c);
    if rc != 0 {
        return Err(GrantError::Hypercall("grant copy", rc));
    }
    if c[0].status != 0 {
        return Err(GrantError::Status("grant copy", c[0].status));
    }
    Ok(())
}
