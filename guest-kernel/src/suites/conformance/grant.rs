//! Grant table cases (`grant.*`): a single domain grants its own frames to itself (domain 0) and
//! maps, unmaps and copies them, plus the argument checks of every sub-operation. Cases print
//! `GNTST_*` statuses, return codes, entry flags and byte checks, never machine addresses or
//! handles.
//!
//! Scratch pages: 0 is remapped onto the first grant-table frame (so the cases can write
//! entries), 1 is the granted page, 2 and 3 are where grants get mapped, 4 is a second granted
//! page for copies. Every page is put back at the end (or at the case that moved it).

use hypercall_abi::grant_table::GnttabOpArg;
use hypercall_abi::grant_table::{
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly,
    GNTST_okay, GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_query_size,
    GNTTABOP_unmap_grant_ref, GTF_permit_access, GTF_readonly, GnttabCopy, GnttabCopyPtr,
    GnttabGetStatusFrames, GnttabGetVersion, GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion,
    GnttabSetupTable, GnttabSwapGrantRef, GnttabUnmapGrantRef,
};
use hypercall_abi::xen::DOMID_SELF;

use super::{
    data_pte, flush_local, normal, peek, poke, restore, scratch_pages, Suite, BAD_CMD,
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
    copy_cases(s, &tbl, g.mfn, c.va, c.mfn);

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

    exhaustion_cases(s, &t, g.mfn, c.va, c.mfn);

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
}

fn map_cases(s: &mut Suite, tbl: &Table, g_va: u64, [h, r]: [super::ScratchMap; 2]) {
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

fn copy_cases(s: &mut Suite, tbl: &Table, g_mfn: u64, c_va: u64, c_mfn: u64) {
    let sg = GNTCOPY_source_gref;
    let dg = GNTCOPY_dest_gref;
    poke(c_va + 16, 0);
    let (rc, st) = copy1(
        copy_ptr(g_mfn, DOMID_SELF, 0),
        copy_ptr(R_COPY.into(), ME, 16),
        8,
        dg,
    );
    let ok = peek(c_va + 16) == peek(mm::mfn_to_va(g_mfn));
    s.case(
        "grant.copy_frame_to_gref",
        format_args!(
            "rc={rc} status={st} copied={} flags={:#x}",
            u8::from(ok),
            tbl.flags(R_COPY)
        ),
    );
    poke(c_va + 32, 0x5a5a);
    let (rc, st) = copy1(
        copy_ptr(R_COPY.into(), ME, 32),
        copy_ptr(c_mfn, DOMID_SELF, 40),
        8,
        sg,
    );
    s.case(
        "grant.copy_gref_to_frame",
        format_args!(
            "rc={rc} status={st} copied={}",
            u8::from(peek(c_va + 40) == 0x5a5a)
        ),
    );
    let (rc, st) = copy1(
        copy_ptr(R_RW.into(), ME, 0),
        copy_ptr(R_COPY.into(), ME, 48),
        8,
        sg | dg,
    );
    s.case(
        "grant.copy_gref_to_gref",
        format_args!(
            "rc={rc} status={st} copied={} flags={:#x},{:#x}",
            u8::from(peek(c_va + 48) == peek(mm::mfn_to_va(g_mfn))),
            tbl.flags(R_RW),
            tbl.flags(R_COPY)
        ),
    );
    let cases: [(&'static str, GnttabCopyPtr, GnttabCopyPtr, u16, u16); 9] = [
        (
            "grant.copy_source_beyond_page",
            copy_ptr(g_mfn, DOMID_SELF, 4090),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            8,
            0,
        ),
        (
            "grant.copy_dest_beyond_page",
            copy_ptr(g_mfn, DOMID_SELF, 0),
            copy_ptr(R_COPY.into(), ME, 4095),
            2,
            dg,
        ),
        (
            "grant.copy_len_4097",
            copy_ptr(g_mfn, DOMID_SELF, 0),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            4097,
            0,
        ),
        (
            "grant.copy_to_readonly_grant",
            copy_ptr(g_mfn, DOMID_SELF, 0),
            copy_ptr(R_RO.into(), ME, 0),
            8,
            dg,
        ),
        (
            "grant.copy_frame_with_own_domid",
            copy_ptr(g_mfn, ME, 0),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            8,
            0,
        ),
        (
            "grant.copy_bad_frame",
            copy_ptr(0xff_ffff_fff0, DOMID_SELF, 0),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            8,
            0,
        ),
        (
            "grant.copy_bad_domain",
            copy_ptr(g_mfn, DOMID_SELF, 0),
            copy_ptr(R_COPY.into(), NO_SUCH_DOMAIN, 0),
            8,
            dg,
        ),
        (
            "grant.copy_ref_out_of_range",
            copy_ptr(4096, ME, 0),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            8,
            sg,
        ),
        (
            "grant.copy_unpermitted",
            copy_ptr(R_NONE.into(), ME, 0),
            copy_ptr(c_mfn, DOMID_SELF, 0),
            8,
            sg,
        ),
    ];
    for (name, src, dst, len, flags) in cases {
        let (rc, st) = copy1(src, dst, len, flags);
        s.case(name, format_args!("rc={rc} status={st}"));
    }
    // A batch: the first bad, the second good; both statuses written.
    let mut batch = [
        GnttabCopy {
            source: copy_ptr(R_NONE.into(), ME, 0),
            dest: copy_ptr(c_mfn, DOMID_SELF, 0),
            len: 8,
            flags: sg,
            status: 0x55,
            ..Default::default()
        },
        GnttabCopy {
            source: copy_ptr(R_RW.into(), ME, 8),
            dest: copy_ptr(c_mfn, DOMID_SELF, 56),
            len: 8,
            flags: sg,
            status: 0x55,
            ..Default::default()
        },
    ];
    let rc = op(&mut batch, 2);
    s.case(
        "grant.copy_batch",
        format_args!(
            "rc={rc} statuses={},{} flags={:#x},{:#x},{:#x}",
            batch[0].status,
            batch[1].status,
            tbl.flags(R_RW),
            tbl.flags(R_RO),
            tbl.flags(R_COPY)
        ),
    );
}

/// Device mappings (`GNTMAP_device_map | GNTMAP_readonly`, no PTE) of `gref`, `n` in one batch;
/// the statuses and handles.
fn map_device_ro(gref: u32, n: usize) -> (i64, [GnttabMapGrantRef; EXHAUST_BATCH]) {
    let mut m = [GnttabMapGrantRef {
        flags: GNTMAP_device_map | GNTMAP_readonly,
        r#ref: gref,
        dom: ME,
        status: 0x55,
        ..Default::default()
    }; EXHAUST_BATCH];
    let rc = op(&mut m, n as u32);
    (rc, m)
}

/// Unmaps device mappings of `bus` by handle, `handles` at most [`EXHAUST_BATCH`] at a time;
/// how many answered `GNTST_okay`.
fn unmap_device(handles: impl Iterator<Item = u32>, bus: u64) -> usize {
    let mut ok = 0;
    let mut u = [GnttabUnmapGrantRef::default(); EXHAUST_BATCH];
    let mut n = 0;
    let flush = |u: &mut [GnttabUnmapGrantRef], n: usize| {
        op(u, n as u32);
        u[..n].iter().filter(|x| x.status == GNTST_okay).count()
    };
    for h in handles {
        u[n] = GnttabUnmapGrantRef {
            host_addr: 0,
            dev_bus_addr: bus,
            handle: h,
            status: 0x55,
            ..Default::default()
        };
        n += 1;
        if n == EXHAUST_BATCH {
            ok += flush(&mut u, n);
            n = 0;
        }
    }
    ok + flush(&mut u, n)
}

/// Elements per batch in the exhaustion cases.
const EXHAUST_BATCH: usize = 130;
/// Table frames the maptrack case fills with grants (frames 1..=this), 512 references each.
const EXHAUST_FRAMES: usize = 5;

/// Issue 11: a mapper's own limits. One reference's read-only device pin counter stops at 128
/// (Xen refuses a pin once a counter's top bit is set: `GNTST_general_error`); a domain that
/// maps until its maptrack is full gets `get_maptrack_handle`'s status (Xen 4.17 has 1024
/// frames of 256 handles, we have 1024 handles: only the status is printed), and a grant copy,
/// which needs no handle, still works then. Everything is unmapped again.
fn exhaustion_cases(s: &mut Suite, t: &super::ScratchMap, g_mfn: u64, c_va: u64, c_mfn: u64) {
    let bus = g_mfn << 12;
    let (rc, m) = map_device_ro(R_RO, EXHAUST_BATCH);
    let pinned = m.iter().take_while(|x| x.status == GNTST_okay).count();
    let next = m[pinned.min(EXHAUST_BATCH - 1)].status;
    let rest_same = m[pinned..].iter().all(|x| x.status == next);
    // A copy pins too: refused while a counter is full.
    let (_, copy) = copy1(
        copy_ptr(R_RO.into(), ME, 0),
        copy_ptr(c_mfn, DOMID_SELF, 64),
        8,
        GNTCOPY_source_gref,
    );
    let unmapped = unmap_device(m[..pinned].iter().map(|x| x.handle), bus);
    s.case(
        "grant.pin_count_overflow",
        format_args!(
            "rc={rc} pinned={pinned} next={next} rest_same={} copy={copy} unmapped={unmapped} flags={:#x}",
            u8::from(rest_same),
            Table { va: t.va }.flags(R_RO)
        ),
    );

    // Unmapping a device mapping names its bus address: a wrong one is refused.
    let (_, m) = map_device_ro(R_RO, 1);
    let mut u = [GnttabUnmapGrantRef {
        dev_bus_addr: bus + 4096,
        handle: m[0].handle,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut u, 1);
    let wrong = u[0].status;
    let right = unmap_device(core::iter::once(m[0].handle), bus);
    s.case(
        "grant.unmap_device_wrong_bus_addr",
        format_args!(
            "map={} rc={rc} status={wrong} then_unmapped={right} flags={:#x}",
            m[0].status,
            Table { va: t.va }.flags(R_RO)
        ),
    );

    // More table frames, every reference of frames 1.. granted read-only to ourselves.
    let mut frames = [0u64; EXHAUST_FRAMES + 1];
    let (rc, status) = setup(DOMID_SELF, frames.len() as u32, gp(frames.as_mut_ptr()));
    if rc != 0 || status != 0 {
        s.case(
            "grant.maptrack_exhausted",
            format_args!("setup failed: rc={rc} status={status}"),
        );
        return;
    }
    let fill = |flags: u16| {
        for &f in &frames[1..] {
            let _ = hc::mmu_update(&[normal(t.pte_maddr, data_pte(f, t.pte))], DOMID_SELF);
            flush_local();
            let tbl = Table { va: t.va };
            for i in 0..512 {
                tbl.set(i, flags, ME, if flags == 0 { 0 } else { g_mfn });
            }
        }
    };
    fill(GTF_permit_access | GTF_readonly);
    // 128 pins per reference until a map is refused.
    let (mut mapped, mut max_handle, mut refused) = (0usize, 0u32, None);
    'refs: for gref in 512..(512 * (EXHAUST_FRAMES as u32 + 1)) {
        let (rc, m) = map_device_ro(gref, 128);
        for x in &m[..128] {
            if rc != 0 || x.status != GNTST_okay {
                refused = Some((rc, x.status));
                break 'refs;
            }
            mapped += 1;
            max_handle = max_handle.max(x.handle);
        }
    }
    // A copy from a grant needs no handle.
    poke(c_va + 64, 0);
    let (_, copy) = copy1(
        copy_ptr(R_COPY.into(), ME, 32),
        copy_ptr(c_mfn, DOMID_SELF, 64),
        8,
        GNTCOPY_source_gref,
    );
    let unmapped = unmap_device(0..=max_handle, bus);
    let (rc_m, st) = refused.unwrap_or((0, GNTST_okay));
    s.case(
        "grant.maptrack_exhausted",
        format_args!(
            "rc={rc_m} status={st} at_least_1024={} copy_while_full={copy} unmapped_all={}",
            u8::from(mapped >= 1024),
            u8::from(unmapped == mapped)
        ),
    );
    fill(0);
}
