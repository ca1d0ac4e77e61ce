//! Host mappings named by their PTE (`GNTMAP_contains_pte`: `host_addr` is the machine address
//! of the L1 entry) and `GNTTABOP_unmap_and_replace` (the PTE at `new_addr` moves into the
//! grant's slot), with their refusals (`grant.map_contains_pte`, `grant.unmap_and_replace*`).
//! Runs on the version-1 table after the map cases; every page is put back.

use hypercall_abi::grant_table::{GNTMAP_contains_pte, GNTMAP_host_map, GnttabUnmapAndReplace};

use super::{
    flush_local, map, op, peek, poke, restore, unmap, ScratchMap, Suite, Table, ME, R_RW, UNMAPPED,
};
use crate::kernel::mm;

fn unmap_replace(host_addr: u64, new_addr: u64, handle: u32) -> (i64, i16) {
    let mut u = [GnttabUnmapAndReplace {
        host_addr,
        new_addr,
        handle,
        status: 0x55,
        ..Default::default()
    }];
    let rc = op(&mut u, 1);
    (rc, u[0].status)
}

/// The L1 entry of `va`, 0 if none.
fn pte_of(va: u64) -> u64 {
    mm::l1_slot(va).map_or(0, |e| e.value)
}

pub(super) fn cases(s: &mut Suite, tbl: &Table, g_va: u64, [h, r]: [ScratchMap; 2]) {
    let host = GNTMAP_host_map;
    let pte_mode = host | GNTMAP_contains_pte;
    let g_mfn = mm::va_to_mfn(g_va).unwrap_or(0);

    // The grant mapped into scratch page h's PTE, named by its machine address.
    let (_, m) = map(R_RW, ME, h.pte_maddr, pte_mode);
    flush_local();
    poke(h.va, 0x3434);
    let alias = peek(g_va) == 0x3434;
    let flags = tbl.flags(R_RW);
    let r_pte = pte_of(r.va);
    let (_, no_replace) = unmap_replace(h.pte_maddr, r.va, m.handle);
    let r_kept = pte_of(r.va) == r_pte;
    let (_, wrong) = unmap(r.pte_maddr, m.handle);
    let (_, u) = unmap(h.pte_maddr, m.handle);
    let cleared = pte_of(h.va) == 0;
    let after = tbl.flags(R_RW);
    let (_, data_page) = map(R_RW, ME, g_mfn << 12, pte_mode);
    let (_, beyond) = map(R_RW, ME, 0xff_ffff_f000, pte_mode);
    let rr = restore(&h);
    s.case(
        "grant.map_contains_pte",
        format_args!(
            "map={} alias={} flags={flags:#x} replace={no_replace} r_kept={} unmap_other_pte={wrong} unmap={u} cleared={} after={after:#x} data_page={} beyond_ram={}{}",
            m.status,
            u8::from(alias),
            u8::from(r_kept),
            u8::from(cleared),
            data_page.status,
            beyond.status,
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );

    // Replace: r's entry moves into h's slot, r's slot is cleared, the grant is unmapped.
    let (_, m) = map(R_RW, ME, h.va, host);
    poke(r.va, 0x5151);
    let (rc, st) = unmap_replace(h.va, r.va, m.handle);
    flush_local();
    let moved = peek(h.va) == 0x5151;
    let r_cleared = pte_of(r.va) == 0;
    let flags = tbl.flags(R_RW);
    let (_, again) = unmap_replace(h.va, r.va, m.handle);
    let rr = restore(&h).and(restore(&r));
    s.case(
        "grant.unmap_and_replace",
        format_args!(
            "map={} rc={rc} status={st} moved={} new_cleared={} flags={flags:#x} again={again}{}",
            m.status,
            u8::from(moved),
            u8::from(r_cleared),
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );

    let (_, m) = map(R_RW, ME, h.va, host);
    let (_, no_l1) = unmap_replace(h.va, UNMAPPED, m.handle);
    let (_, zero) = unmap_replace(0, r.va, m.handle);
    let r_kept = pte_of(r.va) != 0;
    let (_, bad_handle) = unmap_replace(h.va, r.va, 5000);
    let (_, u) = unmap(h.va, m.handle);
    let rr = restore(&h).and(restore(&r));
    s.case(
        "grant.unmap_and_replace_refused",
        format_args!(
            "map={} no_l1={no_l1} zero_host_addr={zero} new_kept={} bad_handle={bad_handle} unmap={u} flags={:#x}{}",
            m.status,
            u8::from(r_kept),
            tbl.flags(R_RW),
            if rr.ok() { "" } else { " restore_failed" }
        ),
    );
}
