//! Grant table version 2 (`grant.v2_*`): `set_version(2)` and back, the reserved entries
//! converted both ways, status frames (`get_status_frames`, mapped and read), v2 maps (full
//! page; sub-page refused), sub-page copy windows, transitive grants' checks, swap, and the
//! switch back refused while a grant is pinned, a status frame is mapped or a reserved entry
//! cannot be held by version 1. Runs after the other grant cases and leaves the table at
//! version 1.
//!
//! Scratch pages: 0 is the first table frame, 1 and 4 granted pages, 2 where grants get mapped,
//! 3 the first status frame. Every page is put back at the end.

use hypercall_abi::grant_table::{
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map, GTF_permit_access, GTF_reading,
    GTF_readonly, GTF_sub_page, GTF_transitive, GnttabGetStatusFrames, GnttabGetVersion,
    GnttabSetVersion, GnttabSwapGrantRef,
};
use hypercall_abi::xen::DOMID_SELF;

use super::{
    copy1, copy_ptr, data_pte, flush_local, map, normal, op, peek, poke, restore, scratch_pages,
    setup, unmap, Suite, ME, NO_SUCH_DOMAIN, OTHER_DOMID, UNMAPPED,
};
use crate::kernel::hypercall::{self as hc, ptr as gp};

/// v2 entries the cases fill (above the reserved ones).
const R_FULL: u32 = 10;
const R_SUB: u32 = 11;
const R_RO: u32 = 12;
const R_TRANS_SELF: u32 = 13;
const R_TRANS_BAD: u32 = 14;
const R_TRANS_WORDS: u32 = 15;
const R_OTHER: u32 = 16;
/// The reserved entry the conversion cases use.
const R_RESERVED: u32 = 7;

/// The first table frame at `va`, read and written as v1 or v2 entries, and the first status
/// frame at `st`.
struct Tables {
    va: u64,
    st: u64,
}

impl Tables {
    fn set_v1(&self, gref: u32, flags: u16, domid: u16, frame: u64) {
        let v = u64::from(flags) | u64::from(domid) << 16 | (frame & 0xffff_ffff) << 32;
        poke(self.va + 8 * u64::from(gref), v);
    }

    /// A v2 entry: header, the union's second 32 bits, its second word.
    fn set_v2(&self, gref: u32, flags: u16, domid: u16, mid: u32, w1: u64) {
        let at = self.va + 16 * u64::from(gref);
        poke(
            at,
            u64::from(flags) | u64::from(domid) << 16 | u64::from(mid) << 32,
        );
        poke(at + 8, w1);
    }

    fn v2_header(&self, gref: u32) -> u64 {
        peek(self.va + 16 * u64::from(gref)) & 0xffff_ffff
    }

    fn v2_word1(&self, gref: u32) -> u64 {
        peek(self.va + 16 * u64::from(gref) + 8)
    }

    fn status(&self, gref: u32) -> u64 {
        let at = self.st + u64::from(gref / 4) * 8;
        (peek(at) >> (16 * (gref % 4))) & 0xffff
    }

    fn set_status(&self, gref: u32, v: u16) {
        let at = self.st + u64::from(gref / 4) * 8;
        let shift = 16 * (gref % 4);
        let old = peek(at) & !(0xffff << shift);
        poke(at, old | u64::from(v) << shift);
    }
}

fn sub_page(off: u16, len: u16) -> u32 {
    u32::from(off) | u32::from(len) << 16
}

fn set_version(v: u32) -> (i64, u32) {
    let mut sv = [GnttabSetVersion { version: v }];
    let rc = op(&mut sv, 1);
    (rc, sv[0].version)
}

fn get_version() -> u32 {
    let mut v = [GnttabGetVersion {
        dom: DOMID_SELF,
        ..Default::default()
    }];
    let _ = op(&mut v, 1);
    v[0].version
}

fn status_frames(dom: u16, nr_frames: u32, list: u64) -> (i64, i16) {
    let mut gs = [GnttabGetStatusFrames {
        nr_frames,
        dom,
        status: 0x55,
        frame_list: list,
    }];
    let rc = op(&mut gs, 1);
    (rc, gs[0].status)
}

pub(super) fn cases(s: &mut Suite) {
    let Some([t, g, h, st, c]) = scratch_pages(s, "grant.v2_setup") else {
        return;
    };
    let mut frames = [0u64; 2];
    let list = gp(frames.as_mut_ptr());
    let _ = setup(DOMID_SELF, 1, list);
    let table = frames[0];
    let (rc, _) = hc::mmu_update(&[normal(t.pte_maddr, data_pte(table, t.pte))], DOMID_SELF);
    flush_local();
    if rc != 0 {
        s.case("grant.v2_setup", format_args!("map_table={rc}"));
        let _ = restore(&t);
        return;
    }
    let tb = Tables {
        va: t.va,
        st: st.va,
    };
    // A reserved v1 entry with GTF_reading set, and an ordinary one, before the switch.
    tb.set_v1(R_RESERVED, GTF_permit_access | GTF_reading, ME, g.mfn);
    tb.set_v1(20, GTF_permit_access, ME, g.mfn);

    let (rc, version) = set_version(2);
    let (_, q) = super::query();
    s.case(
        "grant.v2_set_version",
        format_args!(
            "rc={rc} version={version} get_version={} nr_frames={} again={}",
            get_version(),
            q.nr_frames,
            set_version(2).0
        ),
    );
    if version != 2 {
        let _ = restore(&t);
        return;
    }

    let mut sframes = [0u64; 2];
    let slist = gp(sframes.as_mut_ptr());
    let (rc1, st1) = status_frames(DOMID_SELF, 1, slist);
    let got = sframes[0] != 0;
    let (_, st2) = status_frames(DOMID_SELF, 2, slist);
    let (_, st0) = status_frames(DOMID_SELF, 0, slist);
    let (_, st_bad_list) = status_frames(DOMID_SELF, 1, UNMAPPED);
    let (_, st_bad_dom) = status_frames(NO_SUCH_DOMAIN, 1, slist);
    s.case(
        "grant.v2_get_status_frames",
        format_args!(
            "one: rc={rc1} status={st1} frame_set={} two={st2} none={st0} unmapped_list={st_bad_list} bad_domain={st_bad_dom}",
            u8::from(got)
        ),
    );
    frames = [0; 2];
    let (rc, status) = setup(DOMID_SELF, 1, list);
    s.case(
        "grant.v2_setup_table",
        format_args!(
            "rc={rc} status={status} same_frame={}",
            u8::from(frames[0] == table)
        ),
    );
    let (rc, _) = hc::mmu_update(
        &[normal(st.pte_maddr, data_pte(sframes[0], st.pte))],
        DOMID_SELF,
    );
    flush_local();
    s.case("grant.v2_map_status_frame", format_args!("{rc}"));
    if rc != 0 {
        let _ = set_version(1);
        let _ = restore(&t);
        return;
    }
    s.case(
        "grant.v2_reserved_converted",
        format_args!(
            "header={:#x} frame_ok={} status={:#x} others_cleared={}",
            tb.v2_header(R_RESERVED),
            u8::from(tb.v2_word1(R_RESERVED) == g.mfn),
            tb.status(R_RESERVED),
            u8::from(peek(t.va + 8 * 20) == 0 && tb.v2_header(R_FULL) == 0)
        ),
    );
    tb.set_v2(R_RESERVED, 0, 0, 0, 0);
    tb.set_status(R_RESERVED, 0);

    tb.set_v2(R_FULL, GTF_permit_access, ME, 0, g.mfn);
    tb.set_v2(
        R_SUB,
        GTF_permit_access | GTF_sub_page,
        ME,
        sub_page(256, 64),
        c.mfn,
    );
    tb.set_v2(R_RO, GTF_permit_access | GTF_readonly, ME, 0, g.mfn);
    // The spacer above `gref` set, so that the words read as a frame name none.
    let far = 0xffff << 32;
    tb.set_v2(
        R_TRANS_SELF,
        GTF_transitive,
        ME,
        ME.into(),
        far | u64::from(R_FULL),
    );
    tb.set_v2(
        R_TRANS_BAD,
        GTF_transitive,
        ME,
        NO_SUCH_DOMAIN.into(),
        far | u64::from(R_FULL),
    );
    tb.set_v2(
        R_TRANS_WORDS,
        GTF_transitive,
        ME,
        NO_SUCH_DOMAIN.into(),
        g.mfn,
    );
    tb.set_v2(R_OTHER, GTF_permit_access, OTHER_DOMID, 0, g.mfn);

    let host = GNTMAP_host_map;
    let (rc, m) = map(R_FULL, ME, h.va, host);
    let mapped = (tb.v2_header(R_FULL), tb.status(R_FULL));
    poke(h.va, 0x2222);
    let alias = peek(g.va) == 0x2222;
    let (_, u) = unmap(h.va, m.handle);
    let rr = restore(&h);
    s.case(
        "grant.v2_map_full_page",
        format_args!(
            "rc={rc} status={} header={:#x} status_entry={:#x} alias={} unmap={u} after={:#x}{}",
            m.status,
            mapped.0,
            mapped.1,
            u8::from(alias),
            tb.status(R_FULL),
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );
    let (_, m_sub) = map(R_SUB, ME, h.va, host);
    let (_, m_ro) = map(R_RO, ME, h.va, host);
    let (_, m_other) = map(R_OTHER, ME, h.va, host);
    let (_, q) = super::query();
    let (_, m_beyond) = map(q.nr_frames * 256, ME, h.va, host);
    let (_, m_self) = map(R_TRANS_SELF, ME, h.va, host);
    s.case(
        "grant.v2_map_refused",
        format_args!(
            "sub_page={} readonly_grant={} other_domid={} beyond={} transitive_bad_words={} statuses={:#x},{:#x},{:#x},{:#x}",
            m_sub.status,
            m_ro.status,
            m_other.status,
            m_beyond.status,
            m_self.status,
            tb.status(R_SUB),
            tb.status(R_RO),
            tb.status(R_OTHER),
            tb.status(R_TRANS_SELF)
        ),
    );
    let rr = restore(&h);
    // A transitive entry whose words, read as a full-page frame, name our own page: still not
    // mappable.
    let (_, m) = map(R_TRANS_WORDS, ME, h.va, host);
    let st_mapped = tb.status(R_TRANS_WORDS);
    let u = if m.status == 0 {
        unmap(h.va, m.handle).1
    } else {
        0x55
    };
    let rr = rr.and(restore(&h));
    s.case(
        "grant.v2_map_transitive_words",
        format_args!(
            "status={} status_entry={st_mapped:#x} unmap={u} after={:#x}{}",
            m.status,
            tb.status(R_TRANS_WORDS),
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );

    let (sg, dg) = (GNTCOPY_source_gref, GNTCOPY_dest_gref);
    poke(g.va, 0x6767);
    poke(c.va + 256, 0);
    poke(c.va + 312, 0);
    let (_, inside) = copy1(
        copy_ptr(R_FULL.into(), ME, 0),
        copy_ptr(R_SUB.into(), ME, 256),
        8,
        sg | dg,
    );
    let copied = peek(c.va + 256) == 0x6767;
    let (_, last) = copy1(
        copy_ptr(g.mfn, DOMID_SELF, 0),
        copy_ptr(R_SUB.into(), ME, 312),
        8,
        dg,
    );
    let (_, past) = copy1(
        copy_ptr(g.mfn, DOMID_SELF, 0),
        copy_ptr(R_SUB.into(), ME, 313),
        8,
        dg,
    );
    let (_, before) = copy1(
        copy_ptr(g.mfn, DOMID_SELF, 0),
        copy_ptr(R_SUB.into(), ME, 248),
        8,
        dg,
    );
    let (_, src_whole) = copy1(
        copy_ptr(R_SUB.into(), ME, 256),
        copy_ptr(g.mfn, DOMID_SELF, 0),
        64,
        sg,
    );
    let (_, src_long) = copy1(
        copy_ptr(R_SUB.into(), ME, 256),
        copy_ptr(g.mfn, DOMID_SELF, 0),
        65,
        sg,
    );
    let (_, beyond_page) = copy1(
        copy_ptr(g.mfn, DOMID_SELF, 0),
        copy_ptr(R_SUB.into(), ME, 4095),
        2,
        dg,
    );
    s.case(
        "grant.v2_copy_sub_page",
        format_args!(
            "inside={inside} copied={} last_bytes={last} past_end={past} before={before} source_whole={src_whole} source_long={src_long} beyond_page={beyond_page} status={:#x}",
            u8::from(copied),
            tb.status(R_SUB)
        ),
    );
    let (_, st_self) = copy1(
        copy_ptr(R_TRANS_SELF.into(), ME, 0),
        copy_ptr(c.mfn, DOMID_SELF, 0),
        8,
        sg,
    );
    let (_, st_bad) = copy1(
        copy_ptr(R_TRANS_BAD.into(), ME, 0),
        copy_ptr(c.mfn, DOMID_SELF, 0),
        8,
        sg,
    );
    let (_, st_dest) = copy1(
        copy_ptr(c.mfn, DOMID_SELF, 0),
        copy_ptr(R_TRANS_SELF.into(), ME, 0),
        8,
        dg,
    );
    s.case(
        "grant.v2_copy_transitive",
        format_args!(
            "self_referential={st_self} bad_domain={st_bad} as_dest={st_dest} statuses={:#x},{:#x},{:#x}",
            tb.status(R_TRANS_SELF),
            tb.status(R_TRANS_BAD),
            tb.status(R_FULL)
        ),
    );

    tb.set_status(R_OTHER, GTF_reading);
    let mut sw = [GnttabSwapGrantRef {
        ref_a: R_FULL,
        ref_b: R_OTHER,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut sw, 1);
    let swapped = tb.v2_header(R_FULL) >> 16 == u64::from(OTHER_DOMID)
        && tb.v2_header(R_OTHER) >> 16 == u64::from(ME);
    let statuses = (tb.status(R_FULL), tb.status(R_OTHER));
    let _ = op(&mut sw, 1);
    tb.set_status(R_OTHER, 0);
    s.case(
        "grant.v2_swap",
        format_args!(
            "rc={rc} status={} swapped={} statuses={:#x},{:#x}",
            sw[0].status,
            u8::from(swapped),
            statuses.0,
            statuses.1
        ),
    );

    // Back to version 1: refused while a grant is mapped, while a reserved entry cannot be
    // held by version 1, while the status frame is mapped.
    let (_, m) = map(R_FULL, ME, h.va, host);
    let busy = set_version(1);
    let (_, u) = unmap(h.va, m.handle);
    let rr = restore(&h);
    tb.set_v2(R_RESERVED, GTF_permit_access, ME, 0, 1 << 32);
    let big = set_version(1);
    tb.set_v2(R_RESERVED, GTF_transitive, ME, ME.into(), R_FULL.into());
    let trans = set_version(1);
    tb.set_v2(R_RESERVED, 0, 0, 0, 0);
    let mapped_status = set_version(1);
    s.case(
        "grant.v2_back_refused",
        format_args!(
            "mapped: rc={} version={} unmap={u} big_frame: rc={} version={} transitive: rc={} version={} status_frame_mapped: rc={} version={}{}",
            busy.0,
            busy.1,
            big.0,
            big.1,
            trans.0,
            trans.1,
            mapped_status.0,
            mapped_status.1,
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );
    tb.set_v2(R_RESERVED, GTF_permit_access | GTF_readonly, ME, 0, g.mfn);
    tb.set_status(R_RESERVED, GTF_reading);
    let rs = restore(&st);
    let (rc, version) = set_version(1);
    let (_, after_frames) = status_frames(DOMID_SELF, 1, slist);
    let (_, after_none) = status_frames(DOMID_SELF, 0, slist);
    let v1 = peek(t.va + 8 * u64::from(R_RESERVED));
    s.case(
        "grant.v2_back_to_v1",
        format_args!(
            "rc={rc} version={version} get_version={} status_frames: one={after_frames} none={after_none} reserved_flags={:#x} domid={} frame_ok={} others_cleared={}{}",
            get_version(),
            v1 & 0xffff,
            (v1 >> 16) & 0xffff,
            u8::from(v1 >> 32 == (g.mfn & 0xffff_ffff)),
            u8::from(peek(t.va + 16 * u64::from(R_FULL)) == 0 && peek(t.va + 16 * u64::from(R_OTHER)) == 0),
            if rs.ok() { "" } else { " restore_failed" }
        ),
    );
    tb.set_v1(R_RESERVED, 0, 0, 0);
    let _ = set_version(1);
    let rr = restore(&t).and(restore(&g)).and(restore(&c));
    s.case(
        "grant.v2_cleanup",
        format_args!("version={} restore={}", get_version(), u8::from(rr.ok())),
    );
}
