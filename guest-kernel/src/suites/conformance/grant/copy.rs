//! Grant copies (`GNTTABOP_copy`): between our own granted pages, every argument check, and
//! the exhaustion cases (issue 11): a mapper's own limits on pins and maptrack handles.

use hypercall_abi::grant_table::{
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map, GNTMAP_readonly, GNTST_okay,
    GTF_permit_access, GTF_readonly, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef,
    GnttabUnmapGrantRef,
};
use hypercall_abi::xen::DOMID_SELF;

use super::*;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

pub(super) fn copy_cases(s: &mut Suite, tbl: &Table, g_mfn: u64, c_va: u64, c_mfn: u64) {
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
pub(super) fn map_device_ro(gref: u32, n: usize) -> (i64, [GnttabMapGrantRef; EXHAUST_BATCH]) {
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
pub(super) fn unmap_device(handles: impl Iterator<Item = u32>, bus: u64) -> usize {
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
pub(super) const EXHAUST_BATCH: usize = 130;
/// Table frames the maptrack case fills with grants (frames 1..=this), 512 references each.
pub(super) const EXHAUST_FRAMES: usize = 5;

/// Issue 11: a mapper's own limits. One reference's read-only device pin counter stops at 128
/// (Xen refuses a pin once a counter's top bit is set: `GNTST_general_error`); a domain that
/// maps until its maptrack is full gets `get_maptrack_handle`'s status (Xen 4.17 has 1024
/// frames of 256 handles, we have 1024 handles: only the status is printed), and a grant copy,
/// which needs no handle, still works then. Everything is unmapped again.
pub(super) fn exhaustion_cases(s: &mut Suite, t: &ScratchMap, g_mfn: u64, c_va: u64, c_mfn: u64) {
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
