//! `hostile=grant-exhaust`: one domU uses up every grant resource it can reach (issue 11, finding
//! 6), to show that only the attacker runs out.
//!
//! An unprivileged domU can only pin grants made to it. Nobody here grants it anything, so it
//! grants a page of its own to itself (Xen allows a domain to map its own grants: `map_grant_ref`
//! looks the granter up by id, and the entry names the mapper), then:
//!
//! 1. tries to map and copy other domains' grants (dom0's and the bystander's, whose references
//!    are granted to dom0): each is refused, and a refusal costs the granter nothing;
//! 2. pins one reference until its read-only device counter is full (Xen refuses the 129th pin:
//!    `GNTST_general_error`);
//! 3. maps more references until its own maptrack is full (`GNTST_no_space`);
//! 4. grant-copies while full (a copy needs no handle and pins another counter: it still works,
//!    from the reference whose device counter is full too);
//! 5. holds all of that for a few seconds while the bystander does its grant work with dom0,
//!    then powers off with everything still mapped: teardown must release every pin and
//!    reference.
//!
//! Before the fix, a granter had one pool of 1024 active entries for all its mappers; now each
//! reference has its own (Xen's `active_grant_entry` array), so what a mapper pins costs others
//! nothing and its maptrack is the only limit it meets.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use hypercall_abi::grant_table::{
    GNTMAP_device_map, GNTMAP_readonly, GNTST_okay, GnttabMapGrantRef,
};
use hypercall_abi::sched::SchedNoArg;

use crate::kernel::grant::{self, CopyEnd, GrantError};
use crate::kernel::hypercall as hc;
use crate::kernel::{mm, time};

const NAME: &str = "grant-exhaust";

/// Pins per batch: one reference's counter holds 128.
const BATCH: usize = 130;
/// How long the attacker holds its pins and mappings (system time).
const HOLD_NS: u64 = 3_000 * time::MS;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The page the attacker grants to itself, and one it copies into.
static mut GRANTED: Page = Page([0; 4096]);
static mut COPY_TO: Page = Page([0; 4096]);

/// `n` read-only device mappings (no PTE) of `gref` of domain `dom`, in one batch: how many
/// succeeded, and the first refusal (`GNTST_okay` if none).
fn map_device_ro(dom: u16, gref: u32, n: usize) -> Result<(usize, i16), &'static str> {
    let mut m = [GnttabMapGrantRef {
        flags: GNTMAP_device_map | GNTMAP_readonly,
        r#ref: gref,
        dom,
        ..Default::default()
    }; BATCH];
    let rc = hc::grant_table_op(&mut m[..n]);
    if rc != 0 {
        return Err("map_grant_ref batch failed");
    }
    let ok = m[..n].iter().take_while(|x| x.status == GNTST_okay).count();
    Ok((
        ok,
        m.get(ok)
            .filter(|_| ok < n)
            .map_or(GNTST_okay, |x| x.status),
    ))
}

/// The one status every element of `statuses` has, printed, or `mixed`.
fn report_status(key: &str, statuses: impl Iterator<Item = i16>) {
    let mut first = None;
    let mut same = true;
    for s in statuses {
        match first {
            None => first = Some(s),
            Some(f) if f != s => same = false,
            Some(_) => {}
        }
    }
    match (first, same) {
        (Some(s), true) => println!("hostile: {NAME}: {key}={s}"),
        _ => println!("hostile: {NAME}: {key}=mixed"),
    }
}

/// The status of a grant copy as `GNTST_*` (a failed hypercall is reported as its errno).
fn copy_status(r: Result<(), GrantError>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(GrantError::Status(_, s)) => s.into(),
        Err(GrantError::Hypercall(_, rc)) => rc,
        Err(_) => i64::MIN,
    }
}

pub fn run() -> Result<(), &'static str> {
    let me = super::DOMID.load(Ordering::Relaxed);
    grant::init().map_err(|_| "no grant table")?;
    let page = mm::va_to_mfn((&raw const GRANTED) as u64).ok_or("granted page has no frame")?;
    let copy_to = mm::va_to_mfn((&raw const COPY_TO) as u64).ok_or("copy page has no frame")?;

    // 1. Other domains' grants: dom0's table and the bystander's (booted after us), whose
    // references 8.. are granted to dom0.
    let neighbour = me + 1;
    for (key, dom) in [("dom0_status", 0u16), ("neighbour_status", neighbour)] {
        let mut statuses = [0i16; 32];
        for (i, s) in statuses.iter_mut().enumerate() {
            let (ok, st) = map_device_ro(dom, 8 + i as u32, 1)?;
            *s = if ok == 1 { GNTST_okay } else { st };
        }
        report_status(key, statuses.iter().copied());
    }
    let copies = (8..40).map(|gref| {
        let src = CopyEnd::Grant {
            domid: neighbour,
            gref,
        };
        copy_status(grant::copy(src, CopyEnd::Local { mfn: copy_to }, 8)) as i16
    });
    report_status("neighbour_copy_status", copies);

    // Our own page, granted read-only to ourselves under every free reference of the frame.
    let mut refs = Vec::new();
    while let Ok(r) = grant::grant_access(me, page, true) {
        refs.push(r);
    }
    println!("hostile: {NAME}: self_grants={}", refs.len());
    let first = *refs.first().ok_or("no grant reference")?;

    // 2. One reference's counter.
    let (pins, st) = map_device_ro(me, first, BATCH)?;
    println!("hostile: {NAME}: pins={pins}");
    println!("hostile: {NAME}: pin_overflow={st}");

    // 3. The maptrack: 128 pins per further reference until a map is refused.
    let mut handles = pins;
    let mut full = GNTST_okay;
    for &r in &refs[1..] {
        let (ok, st) = map_device_ro(me, r, 128)?;
        handles += ok;
        if st != GNTST_okay {
            full = st;
            break;
        }
    }
    println!("hostile: {NAME}: handles={handles}");
    println!("hostile: {NAME}: maptrack_full={full}");

    // 4. A copy needs no handle, only a host-read pin: it works from any of our references,
    // the one whose device counter is full too (Xen checks only the counter a pin adds to).
    let copy_from = |gref| {
        let own = CopyEnd::Grant { domid: me, gref };
        copy_status(grant::copy(own, CopyEnd::Local { mfn: copy_to }, 8))
    };
    let last = *refs.last().ok_or("no grant reference")?;
    println!("hostile: {NAME}: copy_while_full={}", copy_from(last));
    println!("hostile: {NAME}: copy_full_ref={}", copy_from(first));

    // 5. Hold everything while the bystander works, then leave it all mapped.
    let start = time::now_ns().unwrap_or(0);
    let mut now = start;
    while now.saturating_sub(start) < HOLD_NS {
        hc::sched_op_noarg(SchedNoArg::Yield);
        now = match time::now_ns() {
            Some(t) => t,
            None => break,
        };
    }
    println!(
        "hostile: {NAME}: held_ms={}",
        now.saturating_sub(start) / time::MS
    );
    Ok(())
}
