//! Grant table cases (`grant.*`): a single domain grants its own frames to itself (domain 0) and
//! maps, unmaps and copies them, plus the argument checks of every sub-operation. Cases print
//! `GNTST_*` statuses, return codes, entry flags and byte checks, never machine addresses or
//! handles.
//!
//! Scratch pages: 0 is remapped onto the first grant-table frame (so the cases can write
//! entries), 1 is the granted page, 2 and 3 are where grants get mapped, 4 is a second granted
//! page for copies. Every page is put back at the end (or at the case that moved it). The copy
//! and exhaustion cases are in [`copy`], `GNTTABOP_transfer` in [`transfer`].

mod copy;
mod replace;
mod transfer;
mod v2;

use hypercall_abi::grant_table::GnttabOpArg;
use hypercall_abi::grant_table::{
    GNTMAP_host_map, GNTMAP_readonly, GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_query_size,
    GNTTABOP_unmap_grant_ref, GTF_permit_access, GTF_readonly, GnttabCopy, GnttabCopyPtr,
    GnttabGetStatusFrames, GnttabGetVersion, GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion,
    GnttabSetupTable, GnttabSwapGrantRef, GnttabUnmapGrantRef,
};
use hypercall_abi::xen::DOMID_SELF;

use super::{
    data_pte, flush_local, normal, peek, poke, restore, scratch_pages, ScratchMap, Suite, BAD_CMD,
    NON_CANONICAL, NO_SUCH_DOMAIN, UNMAPPED,
};
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

/// The domain's own id (the suite runs as dom0).
const ME: u16 = 0;
/// Grant references the cases fill (above the 8 reserved entries).
const R_RW: u32 = 10;
const R_RO: u32 = 11;
const R_NONE: u32 = 12;
const R_OTHER: u32 = 13;
const R_COPY: u32 = 14;
const R_BAD_FRAME: u32 = 15;
/// A domain id that is not ours, written into an entry.
const OTHER_DOMID: u16 = 5;

/// `grant_table_op(A::CMD, ops, count)`: the first `count` elements of `ops`, the command the one
/// `grant_table.h` pairs with their type.
fn op<A: GnttabOpArg>(ops: &mut [A], count: u32) -> i64 {
    assert!(
        count as usize <= ops.len(),
        "grant op count past the buffer"
    );
    // SAFETY: `ops` is a live exclusive buffer of at least `count` elements of the structure
    // `A::CMD` takes; the hypervisor reads and writes at most those.
    unsafe { hc::raw::grant_table_op(A::CMD, gp(ops.as_mut_ptr()), count) }
}

/// `grant_table_op` with a raw pointer (for bad-pointer cases).
///
/// # Safety
/// `uop` must not be a live Rust object the hypervisor could write: the cases pass unmapped or
/// non-canonical addresses, which it must refuse.
unsafe fn op_raw(cmd: u32, uop: u64, count: u32) -> i64 {
    // SAFETY: the caller vouches for `uop` as above.
    unsafe { hc::raw::grant_table_op(cmd, uop, count) }
}

fn query() -> (i64, GnttabQuerySize) {
    let mut q = [GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    }];
    let rc = op(&mut q, 1);
    (rc, q[0])
}

fn setup(dom: u16, nr_frames: u32, list: u64) -> (i64, i16) {
    let mut st = [GnttabSetupTable {
        dom,
        nr_frames,
        status: 0x55,
        frame_list: list,
        ..Default::default()
    }];
    let rc = op(&mut st, 1);
    (rc, st[0].status)
}

fn map(gref: u32, dom: u16, host_addr: u64, flags: u32) -> (i64, GnttabMapGrantRef) {
    let mut m = [GnttabMapGrantRef {
        host_addr,
        flags,
        r#ref: gref,
        dom,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut m, 1);
    (rc, m[0])
}

fn unmap(host_addr: u64, handle: u32) -> (i64, i16) {
    let mut u = [GnttabUnmapGrantRef {
        host_addr,
        handle,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut u, 1);
    (rc, u[0].status)
}

fn copy_ptr(u: u64, domid: u16, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u,
        domid,
        offset,
        ..Default::default()
    }
}

fn copy1(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> (i64, i16) {
    let mut c = [GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut c, 1);
    (rc, c[0].status)
}

/// The grant-table frame mapped at scratch page 0.
struct Table {
    va: u64,
}

impl Table {
    fn set(&self, gref: u32, flags: u16, domid: u16, frame: u64) {
        let v = u64::from(flags) | u64::from(domid) << 16 | (frame & 0xffff_ffff) << 32;
        poke(self.va + 8 * u64::from(gref), v);
    }

    fn flags(&self, gref: u32) -> u64 {
        peek(self.va + 8 * u64::from(gref)) & 0xffff
    }
}

/// Flags of a PTE without its frame.
fn pte_flags(e: u64) -> u64 {
    e & !0x000f_ffff_ffff_f000
}

pub fn cases(s: &mut Suite) {
    let (rc, q) = query();
    s.case(
        "grant.query_size",
        format_args!(
            "rc={rc} status={} nr_frames={} max_nr_frames={}",
            q.status, q.nr_frames, q.max_nr_frames
        ),
    );
    let mut q = [GnttabQuerySize {
        dom: NO_SUCH_DOMAIN,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut q, 1);
    s.case(
        "grant.query_size_bad_domain",
        format_args!("rc={rc} status={}", q[0].status),
    );
    // SAFETY: a count other than 1 is -EINVAL before Xen reads `q` (`do_grant_table_op`,
    // GNTTABOP_query_size); `q` is a live buffer anyway.
    let rc = unsafe { hc::raw::grant_table_op(GNTTABOP_query_size, gp(q.as_mut_ptr()), 2) };
    s.case("grant.query_size_count_2", format_args!("{rc}"));

    let mut v = [GnttabGetVersion {
        dom: DOMID_SELF,
        ..Default::default()
    }];
    let rc = op(&mut v, 1);
    s.case(
        "grant.get_version",
        format_args!("rc={rc} version={}", v[0].version),
    );
    let mut v = [GnttabGetVersion {
        dom: NO_SUCH_DOMAIN,
        ..Default::default()
    }];
    let rc = op(&mut v, 1);
    s.case("grant.get_version_bad_domain", format_args!("{rc}"));
    for (name, want) in [
        ("grant.set_version_1", 1),
        ("grant.set_version_0", 0),
        ("grant.set_version_3", 3),
    ] {
        let mut sv = [GnttabSetVersion { version: want }];
        let rc = op(&mut sv, 1);
        s.case(name, format_args!("rc={rc} version={}", sv[0].version));
    }

    let mut frames = [0u64; 2];
    let list = gp(frames.as_mut_ptr());
    let (rc0, _) = setup(DOMID_SELF, 1, list);
    let rc_c0 = {
        let mut st = [GnttabSetupTable::default()];
        op(&mut st, 0)
    };
    s.case(
        "grant.setup_table_count",
        format_args!("count1={rc0} count0={rc_c0}"),
    );
    frames = [0; 2];
    let (rc, status) = setup(DOMID_SELF, 1, list);
    s.case(
        "grant.setup_table",
        format_args!(
            "rc={rc} status={status} frame_set={}",
            u8::from(frames[0] != 0)
        ),
    );
    let (_, q) = query();
    let (rc, status) = setup(DOMID_SELF, q.max_nr_frames + 1, list);
    s.case(
        "grant.setup_table_beyond_max",
        format_args!("rc={rc} status={status}"),
    );
    let (rc, status) = setup(NO_SUCH_DOMAIN, 1, list);
    s.case(
        "grant.setup_table_bad_domain",
        format_args!("rc={rc} status={status}"),
    );
    let (rc, status) = setup(DOMID_SELF, 1, UNMAPPED);
    s.case(
        "grant.setup_table_unmapped_list",
        format_args!("rc={rc} status={status}"),
    );
    let (rc, status) = setup(DOMID_SELF, 1, NON_CANONICAL);
    s.case(
        "grant.setup_table_non_canonical_list",
        format_args!("rc={rc} status={status}"),
    );
    frames = [0; 2];
    let (rc, status) = setup(ME, 2, list);
    let (_, q) = query();
    s.case(
        "grant.setup_table_grow",
        format_args!(
            "rc={rc} status={status} frames_set={} distinct={} nr_frames={}",
            u8::from(frames[0] != 0 && frames[1] != 0),
            u8::from(frames[0] != frames[1]),
            q.nr_frames
        ),
    );

    let mut gs = [GnttabGetStatusFrames {
        nr_frames: 1,
        dom: DOMID_SELF,
        status: 0x55,
        frame_list: list,
    }];
    let rc = op(&mut gs, 1);
    let st1 = gs[0].status;
    gs[0].nr_frames = 0;
    let rc0 = op(&mut gs, 1);
    s.case(
        "grant.get_status_frames_v1",
        format_args!(
            "one: rc={rc} status={st1} none: rc={rc0} status={}",
            gs[0].status
        ),
    );

    // SAFETY: unmapped and non-canonical addresses only, which the hypervisor refuses.
    let (rc_neg, rc_zero, rc_bad, rc_nc) = unsafe {
        (
            op_raw(GNTTABOP_map_grant_ref, UNMAPPED, 0x8000_0000),
            op_raw(GNTTABOP_map_grant_ref, UNMAPPED, 0),
            op_raw(GNTTABOP_map_grant_ref, UNMAPPED, 1),
            op_raw(GNTTABOP_map_grant_ref, NON_CANONICAL, 1),
        )
    };
    s.case(
        "grant.map_counts_and_pointers",
        format_args!("negative={rc_neg} zero={rc_zero} unmapped={rc_bad} non_canonical={rc_nc}"),
    );
    // SAFETY: as above.
    let (rc, rc_hi, rc_copy, rc_unmap) = unsafe {
        (
            op_raw(BAD_CMD % 0x1000, UNMAPPED, 1),
            op_raw(0x1000 | GNTTABOP_query_size, UNMAPPED, 1),
            op_raw(GNTTABOP_copy, UNMAPPED, 1),
            op_raw(GNTTABOP_unmap_grant_ref, NON_CANONICAL, 1),
        )
    };
    s.case(
        "grant.bad_commands",
        format_args!(
            "unknown={rc} arg_bits={rc_hi} copy_unmapped={rc_copy} unmap_non_canonical={rc_unmap}"
        ),
    );

    // Map the first table frame at scratch page 0 to write entries.
    let Some([t, g, h, r, c]) = scratch_pages(s, "grant.setup") else {
        return;
    };
    frames = [0; 2];
    let _ = setup(DOMID_SELF, 1, list);
    let (rc, _) = hc::mmu_update(
        &[normal(t.pte_maddr, data_pte(frames[0], t.pte))],
        DOMID_SELF,
    );
    flush_local();
    s.case("grant.map_table_frame", format_args!("{rc}"));
    if rc != 0 {
        let _ = restore(&t);
        return;
    }
    let tbl = Table { va: t.va };
    tbl.set(R_RW, GTF_permit_access, ME, g.mfn);
    tbl.set(R_RO, GTF_permit_access | GTF_readonly, ME, g.mfn);
    tbl.set(R_NONE, 0, ME, g.mfn);
    tbl.set(R_OTHER, GTF_permit_access, OTHER_DOMID, g.mfn);
    tbl.set(R_COPY, GTF_permit_access, ME, c.mfn);
    tbl.set(R_BAD_FRAME, GTF_permit_access, ME, 0xffff_fff0);
    poke(g.va, 0x6767);
    poke(c.va, 0xc0c0);

    map_cases(s, &tbl, g.va, [h, r]);
    replace::cases(s, &tbl, g.va, [h, r]);
    copy::copy_cases(s, &tbl, g.mfn, c.va, c.mfn);

    let mut sw = [GnttabSwapGrantRef {
        ref_a: R_NONE,
        ref_b: R_OTHER,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut sw, 1);
    let swapped = tbl.flags(R_NONE) == u64::from(GTF_permit_access) && tbl.flags(R_OTHER) == 0;
    let rc_back = op(&mut sw, 1);
    sw[0].ref_b = 4096;
    let rc_bad = op(&mut sw, 1);
    s.case(
        "grant.swap_grant_ref",
        format_args!(
            "rc={rc} swapped={} back={rc_back} out_of_range: rc={rc_bad} status={}",
            u8::from(swapped),
            sw[0].status
        ),
    );

    transfer::cases(s, &tbl, frames[0], g.mfn, &r);

    copy::exhaustion_cases(s, &t, g.mfn, c.va, c.mfn);

    // Back onto the first table frame (the exhaustion cases moved the window).
    frames = [0; 2];
    let _ = setup(DOMID_SELF, 1, list);
    let _ = hc::mmu_update(
        &[normal(t.pte_maddr, data_pte(frames[0], t.pte))],
        DOMID_SELF,
    );
    flush_local();
    for gref in R_RW..=R_BAD_FRAME {
        tbl.set(gref, 0, 0, 0);
    }
    let rt = restore(&t);
    s.case(
        "grant.cleanup",
        format_args!("restore={}", u8::from(rt.ok())),
    );
    v2::cases(s);
}

fn map_cases(s: &mut Suite, tbl: &Table, g_va: u64, [h, r]: [ScratchMap; 2]) {
    let host = GNTMAP_host_map;
    let ro = GNTMAP_host_map | GNTMAP_readonly;
    let (rc, m) = map(R_RW, ME, h.va, 0);
    s.case(
        "grant.map_no_flags",
        format_args!("rc={rc} status={}", m.status),
    );
    let (_, m) = map(R_RW, NO_SUCH_DOMAIN, h.va, host);
    let (_, m2) = map(R_RW, DOMID_SELF, h.va, host);
    s.case(
        "grant.map_bad_domain",
        format_args!("no_such={} domid_self={}", m.status, m2.status),
    );
    let (_, m) = map(1024, ME, h.va, host);
    let (_, m2) = map(u32::MAX, ME, h.va, host);
    s.case(
        "grant.map_ref_out_of_range",
        format_args!("first_beyond={} max={}", m.status, m2.status),
    );
    let (_, m) = map(R_NONE, ME, h.va, host);
    s.case(
        "grant.map_unpermitted",
        format_args!("status={} flags={:#x}", m.status, tbl.flags(R_NONE)),
    );
    let (_, m) = map(R_OTHER, ME, h.va, host);
    s.case(
        "grant.map_other_domid",
        format_args!("status={} flags={:#x}", m.status, tbl.flags(R_OTHER)),
    );
    let (_, m) = map(R_RO, ME, h.va, host);
    let (_, m2) = map(R_RO, ME, h.va, ro);
    let mapped_flags = tbl.flags(R_RO);
    let (_, u) = unmap(h.va, m2.handle);
    let rro = restore(&h);
    s.case(
        "grant.map_readonly_grant",
        format_args!(
            "writable={} readonly={} flags={mapped_flags:#x} unmap={u} after={:#x}{}",
            m.status,
            m2.status,
            tbl.flags(R_RO),
            if rro.ok() { "" } else { " restore_failed" }
        ),
    );
    let (_, m) = map(R_BAD_FRAME, ME, h.va, host);
    s.case(
        "grant.map_bad_frame",
        format_args!("status={} flags={:#x}", m.status, tbl.flags(R_BAD_FRAME)),
    );
    let (_, m) = map(R_RW, ME, UNMAPPED, host);
    let (_, m2) = map(R_RW, ME, NON_CANONICAL, host);
    let (_, m3) = map(
        R_RW,
        ME,
        h.va + 3,
        host | hypercall_abi::grant_table::GNTMAP_contains_pte,
    );
    s.case(
        "grant.map_bad_host_addr",
        format_args!(
            "unmapped={} non_canonical={} misaligned_pte={} flags={:#x}",
            m.status,
            m2.status,
            m3.status,
            tbl.flags(R_RW)
        ),
    );

    // A writable mapping of our own grant, and a read-only one beside it.
    let (rc, m) = map(R_RW, ME, h.va, host);
    let pte = mm::l1_slot(h.va).map_or(0, |e| e.value);
    poke(h.va, 0x1234_5678);
    let alias = peek(g_va) == 0x1234_5678;
    let bus_ok = m.dev_bus_addr == mm::va_to_mfn(g_va).unwrap_or(0) << 12;
    s.case(
        "grant.map_rw",
        format_args!(
            "rc={rc} status={} flags={:#x} pte_flags={:#x} alias={} bus_addr_ok={}",
            m.status,
            tbl.flags(R_RW),
            pte_flags(pte),
            u8::from(alias),
            u8::from(bus_ok)
        ),
    );
    let (_, mr) = map(R_RW, ME, r.va, ro);
    let pte = mm::l1_slot(r.va).map_or(0, |e| e.value);
    s.case(
        "grant.map_ro_beside_rw",
        format_args!(
            "status={} flags={:#x} pte_flags={:#x} reads={:#x}",
            mr.status,
            tbl.flags(R_RW),
            pte_flags(pte),
            peek(r.va)
        ),
    );
    let (rc, st) = unmap(h.va, m.handle);
    s.case(
        "grant.unmap_rw",
        format_args!("rc={rc} status={st} flags={:#x}", tbl.flags(R_RW)),
    );
    let (_, st2) = unmap(h.va, m.handle);
    s.case("grant.unmap_twice", format_args!("{st2}"));
    let (_, st) = unmap(h.va, mr.handle);
    s.case(
        "grant.unmap_wrong_host_addr",
        format_args!("status={st} flags={:#x}", tbl.flags(R_RW)),
    );
    let (_, st) = unmap(r.va, mr.handle);
    s.case(
        "grant.unmap_ro",
        format_args!("status={st} flags={:#x}", tbl.flags(R_RW)),
    );
    let (_, st) = unmap(0, 5000);
    let (_, st2) = unmap(0, u32::MAX);
    s.case(
        "grant.unmap_bad_handle",
        format_args!("in_range={st} max={st2}"),
    );
    let rr = restore(&h).and(restore(&r));
    s.case("grant.map_restore", format_args!("{}", u8::from(rr.ok())));

    // A host mapping's unmap with a bus address that is not the frame's.
    let (_, m) = map(R_RW, ME, h.va, host);
    let mut u = [GnttabUnmapGrantRef {
        host_addr: h.va,
        dev_bus_addr: m.dev_bus_addr ^ 0x1000,
        handle: m.handle,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut u, 1);
    let (_, again) = unmap(h.va, m.handle);
    let rr = restore(&h);
    s.case(
        "grant.unmap_host_wrong_bus_addr",
        format_args!(
            "map={} rc={rc} status={} then={again} flags={:#x}{}",
            m.status,
            u[0].status,
            tbl.flags(R_RW),
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );

    // The granter revokes a mapped grant: the mapping stays usable, another mapping of the
    // pinned entry still succeeds, and once unmapped the entry cannot be mapped again.
    let (_, m) = map(R_RW, ME, h.va, host);
    tbl.set(R_RW, 0, ME, 0);
    poke(h.va, 0xabcd);
    let still = peek(g_va) == 0xabcd;
    let (_, m2) = map(R_RW, ME, r.va, host);
    let (_, u1) = unmap(h.va, m.handle);
    let (_, u2) = unmap(r.va, m2.handle);
    let after = tbl.flags(R_RW);
    let (_, m3) = map(R_RW, ME, h.va, host);
    let rr = restore(&h).and(restore(&r));
    s.case(
        "grant.revoke_while_mapped",
        format_args!(
            "map={} still_mapped={} remap_pinned={} unmaps={u1},{u2} flags={after:#x} remap_after={}{}",
            m.status,
            u8::from(still),
            m2.status,
            m3.status,
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );
    tbl.set(
        R_RW,
        GTF_permit_access,
        ME,
        mm::va_to_mfn(g_va).unwrap_or(0),
    );
}
