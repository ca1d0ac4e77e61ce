//! Runs a step: resolves its symbolic names against the world, writes its lists and structures
//! into the caller's memory the way the guest would, makes the hypercall (or the store, grant
//! write, teardown) and checks every invariant afterwards.
//!
//! One file (about 1000 lines) on purpose: one match over the step kinds, each arm resolving,
//! issuing and checking its own step, so a new kind is added in one place.

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::domctl::{
    XEN_DOMCTL_destroydomain, XEN_DOMCTL_getdomaininfo, XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_unpausedomain, XenDomctl, XEN_DOMCTL_INTERFACE_VERSION,
};
use hypercall_abi::event_channel::*;
use hypercall_abi::grant_table::*;
use hypercall_abi::xen::*;
use zerocopy::{Immutable, IntoBytes};

use super::ops::*;
use super::world::*;
use crate::evtchn::ChannelState;
use crate::guest_access::translate;
use crate::hypercall::ptwr_emulate;
use crate::mm::frame_table::{pte, Owner, PageType};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

/// Addresses no list should come from: null, unmapped, non-canonical, the hypervisor's own
/// range, the top of the address space, and the last bytes before a page that is not mapped (a
/// list that starts fine and runs off the end).
const BAD_VA: [u64; 12] = [
    0,
    0x7000_0000_0000,
    1 << 47,
    0xffff_8000_0000_0000,
    0xffff_8400_0000_1000,
    !7,
    0xffff_ffff_ffff_f000,
    0x7fff_ffff_f000,
    (MAPPED + 2) * 4096 - 8,
    ALIAS_VA - 8,
    ALIAS_VA + ALIAS_PAGES * 4096 - 8,
    ALIAS_VA + ALIAS_PAGES * 4096,
];

/// Counts no list has: the largest ones, the continuation bit (alone and with a count), and
/// some that run through the whole aliased region.
const HUGE: [u32; 8] = [
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000,
    0x8000_0003,
    1 << 16,
    1 << 20,
    4096,
    700,
];

/// Raw domain ids: dead ones, ids never used, and the special ones.
const DOM_IDS: [u16; 10] = [0, 1, 2, 3, 5, 7, DOMID_IO, DOMID_XEN, DOMID_INVALID, 0x7ff0];

/// The flush commands of `mmuext_op`.
const FLUSH_CMDS: [u32; 8] = [
    MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_INVLPG_LOCAL,
    MMUEXT_TLB_FLUSH_MULTI,
    MMUEXT_INVLPG_MULTI,
    MMUEXT_TLB_FLUSH_ALL,
    MMUEXT_INVLPG_ALL,
    MMUEXT_FLUSH_CACHE,
    MMUEXT_FLUSH_CACHE_GLOBAL,
];

/// `update_va_mapping` flag words: no flush, TLB flush, INVLPG, a bad flush type, each local
/// and for all vCPUs.
const UVM_FLAGS: [u64; 8] = [
    0,
    1,
    2,
    3,
    UVMF_ALL | 1,
    UVMF_ALL | 2,
    UVMF_ALL,
    UVMF_ALL | 3,
];

/// Domctl commands (the last two are not implemented; the fifth index goes with a wrong
/// interface version).
const DOMCTLS: [u32; 6] = [
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_unpausedomain,
    XEN_DOMCTL_getdomaininfo,
    99,
];

/// Hypercall numbers of [`Call::Raw`]: every one in the table and some that do not exist.
fn raw_nrs() -> Vec<u32> {
    let mut v: Vec<u32> = crate::hypercall::TABLE.iter().map(|h| h.nr).collect();
    v.extend([99, 48, 63]);
    v
}

/// The first page of the caller's argument pages (structures a call points at), one per call of
/// a multicall.
const ARG_PAGE: u64 = 30;
/// Where `*pdone` goes.
const DONE_VA: u64 = 38 * 4096 + 0xf00;

fn arg_va(k: usize) -> u64 {
    (ARG_PAGE + (k as u64 % 8)) * 4096
}

/// Runs `step`; returns a line saying what it did, or what it did and what broke.
pub(super) fn step(w: &mut World, step: &Step) -> Result<String, String> {
    let mut desc = String::new();
    let r = run_step(w, step, &mut desc).and_then(|()| {
        // The arch layer destroys what dom0 asked it to before anything runs again.
        for s in 0..SLOTS {
            if w.guest(s).is_some_and(|g| g.destroy) {
                desc += &format!("; d{} torn down", id(w, s));
                w.teardown(s)?;
                w.cover.destroyed += 1;
            }
        }
        w.check()?;
        w.observe();
        Ok(())
    });
    match r {
        Ok(()) => Ok(desc),
        Err(e) => Err(format!("{desc}\n  {e}")),
    }
}

/// The step itself; `desc` says what it does (written before it is done, completed after).
fn run_step(w: &mut World, step: &Step, desc: &mut String) -> Result<(), String> {
    match step {
        Step::Call(d, call) => {
            let Some(s) = pick(w, *d) else {
                *desc = "(no domain can run)".into();
                return Ok(());
            };
            w.schedule(s);
            let (nr, args, detail) = prepare(w, s, call, 0);
            *desc = format!("d{} {}{detail}", id(w, s), name(nr, args));
            let rc = w.hypercall(s, nr, args)?;
            *desc += &format!(" -> {rc}");
        }
        Step::Multi(d, calls, at, count) => {
            let Some(s) = pick(w, *d) else {
                *desc = "(no domain can run)".into();
                return Ok(());
            };
            w.schedule(s);
            let mut entries = Vec::new();
            let mut names = Vec::new();
            for (k, c) in calls.iter().enumerate() {
                let (op, a, detail) = prepare(w, s, c, k + 1);
                names.push(format!("{}{detail}", name(op, a)));
                entries.push(MulticallEntry {
                    op,
                    result: 0,
                    args: [a[0], a[1], a[2], a[3], a[4], 0],
                });
            }
            let (va, n) = put_list(w, s, *at, &entries, *count);
            *desc = format!(
                "d{} multicall({va:#x}, {n}) [{}]",
                id(w, s),
                names.join(", ")
            );
            let rc = w.hypercall(s, __HYPERVISOR_multicall.into(), [va, n, 0, 0, 0])?;
            let results: Vec<i64> = (0..entries.len())
                .map(|i| peek(w, s, va.wrapping_add(64 * i as u64 + 8)).unwrap_or(0) as i64)
                .collect();
            *desc += &format!(" -> {rc}, results {results:?}");
        }
        Step::Store(d, va, val) => {
            let Some(s) = pick(w, *d) else {
                *desc = "(no domain can run)".into();
                return Ok(());
            };
            w.schedule(s);
            let (va, val) = (resolve_va(w, s, *va), resolve_val(w, s, *val));
            *desc = format!("d{} store {val:#x} at {va:#x}", id(w, s));
            let l4 = w.guest(s).unwrap().dom.current_l4();
            if let Some(at) = translate(&w.m.mem.mem, l4, va, true) {
                put(w, s, va, &val.to_le_bytes());
                *desc += &format!(" (maddr {:#x})", at.0);
            } else {
                // A page fault: the hypervisor emulates a store to one of the guest's own L1s.
                *desc += ": page fault, emulated";
                let rc = w.entry(s, |ctx| ptwr_emulate(ctx.m, ctx.dom, va, val))?;
                *desc += &format!(": {rc:?}");
            }
        }
        Step::Grant(d, gref, flags, to, f) => {
            let Some(s) = pick(w, *d) else {
                *desc = "(no domain can run)".into();
                return Ok(());
            };
            let frame = resolve_frame(w, s, *f);
            let domid = resolve_dom(w, s, *to);
            *desc = format!(
                "d{} grant ref {gref}: flags {flags:#x} to d{domid} frame {frame:#x}",
                id(w, s)
            );
            let v = u64::from(*flags) | u64::from(domid) << 16 | (frame & 0xffff_ffff) << 32;
            let Some(&gf) = w.set.grants[s].shared_frames().first() else {
                *desc += ": no grant table";
                return Ok(());
            };
            let at = Maddr(gf.maddr().0 + u64::from(*gref) * 8);
            w.m.mem.mem.write_u64(at, v).ok_or("grant entry write")?;
        }
        Step::Destroy(k) => {
            let target = 1 + usize::from(*k) % (SLOTS - 1);
            let (Some(victim), true) = (w.ids[target], w.runnable(0)) else {
                *desc = "(nothing to destroy, or dom0 cannot run)".into();
                return Ok(());
            };
            w.schedule(0);
            let op = XenDomctl {
                cmd: XEN_DOMCTL_destroydomain,
                interface_version: XEN_DOMCTL_INTERFACE_VERSION,
                domain: victim,
                ..Default::default()
            };
            put(w, 0, arg_va(0), op.as_bytes());
            *desc = format!("d0 domctl destroydomain d{victim}");
            let rc = w.hypercall(0, __HYPERVISOR_domctl.into(), [arg_va(0), 0, 0, 0, 0])?;
            *desc += &format!(" -> {rc}");
        }
        Step::Rebuild(k) => {
            let s = 1 + usize::from(*k) % (SLOTS - 1);
            *desc = if w.build(s) {
                format!("slot {s}: built d{}", id(w, s))
            } else {
                format!("slot {s}: not rebuilt (taken, or some frame still referenced)")
            };
        }
    }
    Ok(())
}

/// The slot of the domain that makes the step: slot `d % 3` or the next one that can run.
fn pick(w: &World, d: u8) -> Option<usize> {
    (0..SLOTS)
        .map(|i| (usize::from(d) + i) % SLOTS)
        .find(|&s| w.runnable(s))
}

fn id(w: &World, s: usize) -> u16 {
    w.ids[s].unwrap_or(DOMID_INVALID)
}

/// A hypercall as a line.
fn name(nr: u64, a: [u64; 5]) -> String {
    let n = crate::hypercall::TABLE
        .iter()
        .map(|h| (h.nr, h.name))
        .find(|&(n, _)| u64::from(n) == nr)
        .map_or_else(|| format!("hypercall{nr}"), |(_, name)| name.to_string());
    format!(
        "{n}({:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
        a[0], a[1], a[2], a[3], a[4]
    )
}

// ------------------------------------------------------------------------------------------------
// Resolution

/// Validated page tables the domain of slot `s` owns (of type `ty` if given), in frame order.
fn tables(w: &World, s: usize, ty: Option<PageType>) -> Vec<(u64, PageType)> {
    let Some(id) = w.ids[s] else {
        return Vec::new();
    };
    let b = dom_base(s);
    (b..b + DOM_FRAMES)
        .filter_map(|m| {
            let f = w.m.mm.frames.get(Mfn(m))?;
            let t = f.page_type();
            let ok = t.is_page_table()
                && f.validated()
                && f.owner() == Owner::Domain(id)
                && ty.is_none_or(|ty| ty == t);
            ok.then_some((m, t))
        })
        .collect()
}

/// The other slots (any state), the `k`th of them.
fn other_slot(s: usize, k: u8) -> usize {
    let others: Vec<usize> = (0..SLOTS).filter(|&o| o != s).collect();
    others[usize::from(k) % others.len()]
}

fn resolve_frame(w: &World, s: usize, f: F) -> u64 {
    let b = dom_base(s);
    let nth = |t: Vec<(u64, PageType)>, k: u8, fallback: u64| {
        if t.is_empty() {
            fallback
        } else {
            t[usize::from(k) % t.len()].0
        }
    };
    match f {
        F::Own(i) => b + u64::from(i) % DOM_FRAMES,
        F::Cur => w.guest(s).map_or(b, |g| g.dom.vcpu().l4.0),
        F::Table(k) => nth(tables(w, s, None), k, b + u64::from(k) % DOM_FRAMES),
        F::L4(k) => nth(tables(w, s, Some(PageType::L4)), k, b + I_L4_SPARE),
        F::Other(d, i) => dom_base(other_slot(s, d)) + u64::from(i) % DOM_FRAMES,
        F::OtherTable(d, k) => {
            let o = other_slot(s, d);
            nth(tables(w, o, None), k, dom_base(o) + u64::from(k) % 8)
        }
        F::Special(k) => {
            let o = other_slot(s, 0);
            [
                0,
                2,
                4,
                5,
                7,
                shared_info(s).0,
                shared_info(o).0,
                grant_frame(s, 0).0,
                grant_frame(s, u64::from(GRANT_FRAMES) - 1).0,
                grant_frame(o, 0).0,
                FIRST_FREE + 3,
                FRAMES - 1,
                FRAMES,
                0xfee00,
                1 << 28,
                pte::ADDR >> 12,
                u64::MAX >> 12,
                dom_base(o) + I_ALIAS,
            ][usize::from(k) % 18]
        }
    }
}

fn resolve_val(w: &World, s: usize, v: Val) -> u64 {
    match v {
        Val::Zero => 0,
        Val::Pte(f, fl) => (resolve_frame(w, s, f) << 12) | fl.bits(),
        Val::Raw(x) => x,
    }
}

fn resolve_va(_w: &World, _s: usize, v: Va) -> u64 {
    match v {
        Va::Page(i, off) => u64::from(i) * 4096 + u64::from(off),
        Va::Alias(p, off) => ALIAS_VA + u64::from(p) % ALIAS_PAGES * 4096 + u64::from(off),
        Va::Shared(off) => SHARED_VA + u64::from(off) % 4096,
        Va::Grant(off) => GRANT_VA + u64::from(off) % 4096,
        Va::Bad(k) => BAD_VA[usize::from(k) % BAD_VA.len()],
    }
}

fn resolve_dom(w: &World, s: usize, d: Dom) -> u16 {
    match d {
        Dom::SelfId => DOMID_SELF,
        Dom::Me => id(w, s),
        Dom::Other(k) => {
            let live: Vec<u16> = w.live().filter(|&o| o != s).map(|o| id(w, o)).collect();
            if live.is_empty() {
                0x7ff0
            } else {
                live[usize::from(k) % live.len()]
            }
        }
        Dom::Raw(k) => DOM_IDS[usize::from(k) % DOM_IDS.len()],
    }
}

fn resolve_fd(w: &World, s: usize, fd: Fd) -> u64 {
    match fd {
        Fd::SelfId => DOMID_SELF.into(),
        Fd::Dom(d) => resolve_dom(w, s, d).into(),
        Fd::PtOwner(pt, pg) => {
            (u64::from(resolve_dom(w, s, pt)) + 1) << 16 | u64::from(resolve_dom(w, s, pg))
        }
    }
}

fn resolve_count(n: usize, c: Count) -> u64 {
    let n = n as u64;
    match c {
        Count::Exact => n,
        Count::Less(k) => n.saturating_sub(u64::from(k)),
        Count::More(k) => n + u64::from(k),
        Count::Huge(k) => HUGE[usize::from(k) % HUGE.len()].into(),
    }
}

fn resolve_done(d: Done) -> u64 {
    match d {
        Done::Null => 0,
        Done::Ok => DONE_VA,
        Done::Bad(k) => BAD_VA[usize::from(k) % BAD_VA.len()],
    }
}

fn resolve_host(w: &World, s: usize, h: Host) -> u64 {
    match h {
        Host::Va(v) => resolve_va(w, s, v),
        Host::Pte(f, slot) => (resolve_frame(w, s, f) << 12) + u64::from(slot % 512) * 8,
    }
}

/// Resolves a grant reference of domain `granter`'s table for the caller in slot `s`.
fn resolve_gref(w: &World, s: usize, granter: u16, g: Gref) -> u32 {
    match g {
        Gref::Granted(k) => {
            let me = id(w, s);
            let granter = if granter == DOMID_SELF { me } else { granter };
            let refs: Vec<u32> = w
                .set
                .slot_of(granter)
                .map(|gs| {
                    let t = &w.set.grants[gs];
                    (0..64)
                        .filter(|&r| {
                            let (flags, domid, _) = t.entry(&w.m.mem.mem, r);
                            flags & GTF_type_mask == GTF_permit_access && domid == me
                        })
                        .collect()
                })
                .unwrap_or_default();
            if refs.is_empty() {
                u32::from(k)
            } else {
                refs[usize::from(k) % refs.len()]
            }
        }
        Gref::Small(r) => r.into(),
        Gref::Raw(r) => r,
    }
}

/// Resolves a port of the caller (slot `s`), or for [`Port::Waiting`] of domain `remote`.
fn resolve_port(w: &World, s: usize, remote: Option<u16>, p: Port) -> u32 {
    let ports_of = |slot: usize, want: &dyn Fn(&ChannelState) -> bool| -> Vec<u32> {
        let t = w.set.ports(slot);
        (1..t.valid_ports())
            .filter(|&p| t.channel(p).is_some_and(|c| want(&c.state)))
            .collect()
    };
    let nth = |v: Vec<u32>, k: u8| (!v.is_empty()).then(|| v[usize::from(k) % v.len()]);
    match p {
        Port::Mine(k) => nth(ports_of(s, &|c| *c != ChannelState::Free), k).unwrap_or(k.into()),
        Port::Waiting(k) => {
            let me = id(w, s);
            let waiting = remote
                .and_then(|r| w.set.slot_of(r))
                .map(|r| {
                    ports_of(
                        r,
                        &|c| matches!(c, ChannelState::Unbound { remote_dom } if *remote_dom == me),
                    )
                })
                .unwrap_or_default();
            nth(waiting, k).unwrap_or(k.into())
        }
        Port::Raw(p) => p.into(),
    }
}

/// Resolves a handle of the caller's maptrack; with it, the mapping's linear address when the
/// grant PTE lies in one of the caller's two built L1s (0 otherwise) and its frame.
fn resolve_handle(w: &World, s: usize, h: Handle) -> (u32, u64, u64) {
    let t = &w.set.grants[s];
    let handle = match h {
        Handle::Mapped(k) => {
            let used: Vec<u32> = t.mappings(&w.m.mem).map(|(h, _)| h).collect();
            if used.is_empty() {
                u32::from(k)
            } else {
                used[usize::from(k) % used.len()]
            }
        }
        Handle::Raw(x) => x.into(),
    };
    let Some(m) = t.mapping(&w.m.mem, handle) else {
        return (handle, 0, 0);
    };
    let (l1, slot) = (m.pte.0 >> 12, (m.pte.0 & 0xfff) / 8);
    let va = if l1 == dom_base(s) + 3 {
        slot * 4096
    } else if l1 == dom_base(s) + 4 {
        ALIAS_VA + slot * 4096
    } else {
        0
    };
    (handle, va, m.mfn.maddr().0)
}

// ------------------------------------------------------------------------------------------------
// Guest memory

/// Writes `bytes` at `va` through the current tables of slot `s`, as a guest store: each page
/// only if mapped writable.
fn put(w: &mut World, s: usize, va: u64, bytes: &[u8]) {
    let Some(l4) = w.guest(s).map(|g| g.dom.current_l4()) else {
        return;
    };
    let mem = &mut w.m.mem.mem;
    let mut done = 0usize;
    while done < bytes.len() {
        let cur = va.wrapping_add(done as u64);
        let n = ((4096 - (cur & 0xfff)) as usize).min(bytes.len() - done);
        if let Some(at) = translate(mem, l4, cur, true) {
            let _ = mem.write(at, &bytes[done..done + n]);
        }
        done += n;
    }
}

/// Reads a u64 at `va` through slot `s`'s tables.
fn peek(w: &World, s: usize, va: u64) -> Option<u64> {
    let l4 = w.guest(s)?.dom.current_l4();
    let at = translate(&w.m.mem.mem, l4, va, false)?;
    w.m.mem.mem.read_u64(at)
}

/// Writes a list where `at` says; returns its address and the count to pass.
fn put_list<T: IntoBytes + Immutable>(
    w: &mut World,
    s: usize,
    at: At,
    items: &[T],
    count: Count,
) -> (u64, u64) {
    let (va, write) = match at {
        At::Page(p, off) => ((I_DATA + u64::from(p)) * 4096 + u64::from(off), true),
        At::Alias(off) => (ALIAS_VA + u64::from(off), true),
        At::Table(i) => (u64::from(i % 8) * 4096, false),
        At::Bad(k) => (BAD_VA[usize::from(k) % BAD_VA.len()], false),
    };
    if write {
        put(w, s, va, items.as_bytes());
    }
    (va, resolve_count(items.len(), count))
}

/// Writes one structure at the argument page of call `k`; returns its address.
fn put_arg<T: IntoBytes + Immutable>(w: &mut World, s: usize, k: usize, v: &T) -> u64 {
    let va = arg_va(k);
    put(w, s, va, v.as_bytes());
    va
}

// ------------------------------------------------------------------------------------------------
// Calls

/// Writes what `call` needs into the memory of slot `s` (argument page `k`) and returns the
/// hypercall number, the arguments and the list it passes, decoded (for the page-table batches).
fn prepare(w: &mut World, s: usize, call: &Call, k: usize) -> (u64, [u64; 5], String) {
    let mut detail = String::new();
    let (nr, args) = match call {
        Call::Mmu {
            reqs,
            fd,
            at,
            count,
            done,
        } => {
            let list: Vec<MmuUpdate> = reqs.iter().map(|r| mmu_req(w, s, *r)).collect();
            // A privileged caller naming the tables' owner may put its own frames there.
            let privileged = w.guest(s).is_some_and(|g| g.dom.privileged);
            if privileged && matches!(fd, Fd::PtOwner(..)) {
                for r in &list {
                    let at = Maddr(r.ptr & !7);
                    w.foreign_ptes.push((at, Mfn(pte::mfn(r.val))));
                }
            }
            let items: Vec<String> = list
                .iter()
                .map(|r| format!("{:#x} = {:#x}", r.ptr, r.val))
                .collect();
            detail = format!(" [{}]", items.join(", "));
            let (va, n) = put_list(w, s, *at, &list, *count);
            let args = [va, n, resolve_done(*done), resolve_fd(w, s, *fd), 0];
            (__HYPERVISOR_mmu_update.into(), args)
        }
        Call::Ext {
            ops,
            fd,
            at,
            count,
            done,
        } => {
            let list: Vec<MmuextOp> = ops.iter().map(|o| ext_op(w, s, *o)).collect();
            let items: Vec<String> = list
                .iter()
                .map(|o| format!("{} {:#x} {:#x}", ext_name(o.cmd), o.arg1, o.arg2))
                .collect();
            detail = format!(" [{}]", items.join(", "));
            let (va, n) = put_list(w, s, *at, &list, *count);
            let args = [va, n, resolve_done(*done), resolve_fd(w, s, *fd), 0];
            (__HYPERVISOR_mmuext_op.into(), args)
        }
        Call::Uvm {
            va,
            val,
            flags,
            other,
        } => {
            let (va, val) = (resolve_va(w, s, *va), resolve_val(w, s, *val));
            let flags = match *flags {
                UvmFlags::Pick(i) => UVM_FLAGS[usize::from(i) % UVM_FLAGS.len()],
                UvmFlags::Mask(m, t) => (resolve_va(w, s, m) & !3) | u64::from(t & 3),
                UvmFlags::Raw(x) => x,
            };
            match other {
                None => (
                    __HYPERVISOR_update_va_mapping.into(),
                    [va, val, flags, 0, 0],
                ),
                Some(d) => (
                    __HYPERVISOR_update_va_mapping_otherdomain.into(),
                    [va, val, flags, resolve_dom(w, s, *d).into(), 0],
                ),
            }
        }
        Call::Map { ops, at, count } => {
            let list: Vec<GnttabMapGrantRef> = ops
                .iter()
                .map(|o| {
                    let dom = resolve_dom(w, s, o.dom);
                    GnttabMapGrantRef {
                        host_addr: resolve_host(w, s, o.host),
                        flags: u32::from(o.flags),
                        r#ref: resolve_gref(w, s, dom, o.gref),
                        dom,
                        ..Default::default()
                    }
                })
                .collect();
            let (va, n) = put_list(w, s, *at, &list, *count);
            gnttab(GNTTABOP_map_grant_ref, va, n)
        }
        Call::Unmap { ops, at, count } => {
            let list: Vec<GnttabUnmapGrantRef> = ops
                .iter()
                .map(|o| {
                    let (handle, va, mapped) = resolve_handle(w, s, o.handle);
                    GnttabUnmapGrantRef {
                        host_addr: match o.host {
                            None => 0,
                            Some(None) => va,
                            Some(Some(h)) => resolve_host(w, s, h),
                        },
                        dev_bus_addr: match o.dev {
                            None => 0,
                            Some(true) => mapped,
                            Some(false) => mapped ^ 0x1000,
                        },
                        handle,
                        ..Default::default()
                    }
                })
                .collect();
            let (va, n) = put_list(w, s, *at, &list, *count);
            gnttab(GNTTABOP_unmap_grant_ref, va, n)
        }
        Call::Copy { ops, at, count } => {
            let side = |w: &World, x: Side| {
                let domid = resolve_dom(w, s, x.dom);
                GnttabCopyPtr {
                    u: x.gref.map_or_else(
                        || resolve_frame(w, s, x.frame),
                        |g| u64::from(resolve_gref(w, s, domid, g)),
                    ),
                    domid,
                    offset: x.off,
                    ..Default::default()
                }
            };
            let list: Vec<GnttabCopy> = ops
                .iter()
                .map(|o| GnttabCopy {
                    source: side(w, o.src),
                    dest: side(w, o.dst),
                    len: o.len,
                    flags: (u16::from(o.src.gref.is_some()) * GNTCOPY_source_gref)
                        | (u16::from(o.dst.gref.is_some()) * GNTCOPY_dest_gref),
                    ..Default::default()
                })
                .collect();
            let (va, n) = put_list(w, s, *at, &list, *count);
            gnttab(GNTTABOP_copy, va, n)
        }
        Call::Gnt(op) => {
            let (cmd, va, n) = match *op {
                GOther::SetupTable { dom, nr, list } => {
                    let op = GnttabSetupTable {
                        dom: resolve_dom(w, s, dom),
                        nr_frames: nr.into(),
                        frame_list: resolve_va(w, s, list),
                        ..Default::default()
                    };
                    (GNTTABOP_setup_table, put_arg(w, s, k, &op), 1)
                }
                GOther::QuerySize(d) => {
                    let op = GnttabQuerySize {
                        dom: resolve_dom(w, s, d),
                        ..Default::default()
                    };
                    (GNTTABOP_query_size, put_arg(w, s, k, &op), 1)
                }
                GOther::SetVersion(v) => {
                    let op = GnttabSetVersion { version: v.into() };
                    (GNTTABOP_set_version, put_arg(w, s, k, &op), 1)
                }
                GOther::GetVersion(d) => {
                    let op = GnttabGetVersion {
                        dom: resolve_dom(w, s, d),
                        ..Default::default()
                    };
                    (GNTTABOP_get_version, put_arg(w, s, k, &op), 1)
                }
                GOther::GetStatusFrames(d, nr) => {
                    let op = GnttabGetStatusFrames {
                        nr_frames: nr.into(),
                        dom: resolve_dom(w, s, d),
                        frame_list: DONE_VA,
                        ..Default::default()
                    };
                    (GNTTABOP_get_status_frames, put_arg(w, s, k, &op), 1)
                }
                GOther::Swap(a, b) => {
                    let op = GnttabSwapGrantRef {
                        ref_a: resolve_gref(w, s, DOMID_SELF, a),
                        ref_b: resolve_gref(w, s, DOMID_SELF, b),
                        ..Default::default()
                    };
                    (GNTTABOP_swap_grant_ref, put_arg(w, s, k, &op), 1)
                }
                GOther::Raw(c, n) => (u32::from(c), arg_va(k), u64::from(n)),
            };
            gnttab(cmd, va, n)
        }
        Call::Evtchn(ev) => {
            let (cmd, va) = evtchn(w, s, k, *ev);
            (
                __HYPERVISOR_event_channel_op.into(),
                [cmd.into(), va, 0, 0, 0],
            )
        }
        Call::SetGdt {
            frames,
            entries,
            at,
        } => {
            let list: Vec<u64> = frames.iter().map(|f| resolve_frame(w, s, *f)).collect();
            let (va, _) = put_list(w, s, *at, &list, Count::Exact);
            (
                __HYPERVISOR_set_gdt.into(),
                [va, (*entries).into(), 0, 0, 0],
            )
        }
        Call::TrapTable { entries, at } => {
            let list: Vec<TrapInfo> = entries
                .iter()
                .map(|&(vector, h)| TrapInfo {
                    vector,
                    flags: 0,
                    cs: 0xe033,
                    address: match h {
                        Handler::Good(x) => 0xffff_8000_0010_0000 + u64::from(x) * 16,
                        Handler::End => 0,
                        Handler::Bad => 0x8000_0000_0000,
                    },
                    ..Default::default()
                })
                .collect();
            let (va, _) = put_list(w, s, *at, &list, Count::Exact);
            (__HYPERVISOR_set_trap_table.into(), [va, 0, 0, 0, 0])
        }
        Call::Domctl(c, d) => {
            let c = usize::from(*c) % DOMCTLS.len();
            let op = XenDomctl {
                cmd: DOMCTLS[c],
                interface_version: XEN_DOMCTL_INTERFACE_VERSION ^ u32::from(c == 4),
                domain: resolve_dom(w, s, *d),
                ..Default::default()
            };
            (
                __HYPERVISOR_domctl.into(),
                [put_arg(w, s, k, &op), 0, 0, 0, 0],
            )
        }
        Call::Raw { nr, args, words } => {
            let nrs = raw_nrs();
            let nr = nrs[usize::from(*nr) % nrs.len()];
            let base = arg_va(k);
            put(w, s, base, words.as_bytes());
            let a = args.map(|a| match a {
                Arg::Small(x) => x.into(),
                Arg::Ptr(off) => base + u64::from(off),
                Arg::Va(v) => resolve_va(w, s, v),
                Arg::Dom(d) => resolve_dom(w, s, d).into(),
                Arg::Word(x) => x,
            });
            // `iret` reads its frame at the guest's stack pointer.
            if let Some(g) = w.set.guest_mut(s) {
                g.dom.vcpu_mut().regs.rsp = base;
            }
            (nr.into(), a)
        }
    };
    (nr, args, detail)
}

/// An `mmuext_op` command's name.
fn ext_name(cmd: u32) -> String {
    let names = [
        "PIN_L1_TABLE",
        "PIN_L2_TABLE",
        "PIN_L3_TABLE",
        "PIN_L4_TABLE",
        "UNPIN_TABLE",
        "NEW_BASEPTR",
        "TLB_FLUSH_LOCAL",
        "INVLPG_LOCAL",
        "TLB_FLUSH_MULTI",
        "INVLPG_MULTI",
        "TLB_FLUSH_ALL",
        "INVLPG_ALL",
        "FLUSH_CACHE",
        "SET_LDT",
        "cmd14",
        "NEW_USER_BASEPTR",
        "CLEAR_PAGE",
        "COPY_PAGE",
        "FLUSH_CACHE_GLOBAL",
        "MARK_SUPER",
        "UNMARK_SUPER",
    ];
    names
        .get(cmd as usize)
        .map_or_else(|| format!("cmd{cmd}"), |n| n.to_string())
}

fn gnttab(cmd: u32, va: u64, n: u64) -> (u64, [u64; 5]) {
    (
        __HYPERVISOR_grant_table_op.into(),
        [cmd.into(), va, n, 0, 0],
    )
}

fn mmu_req(w: &World, s: usize, r: MmuReq) -> MmuUpdate {
    match r {
        MmuReq::Link {
            table,
            slot,
            child,
            ro,
        } => {
            let t = tables(w, s, None);
            let (mfn, ty) = if t.is_empty() {
                (dom_base(s), PageType::L4)
            } else {
                t[usize::from(table) % t.len()]
            };
            let child = resolve_frame(w, s, child);
            let mut flags = if ty == PageType::L1 {
                pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED
            } else {
                pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED | pte::DIRTY
            };
            if ro {
                flags &= !pte::RW;
            }
            MmuUpdate {
                ptr: (mfn << 12) + u64::from(slot % 512) * 8,
                val: (child << 12) | flags,
            }
        }
        MmuReq::Raw { cmd, at, slot, val } => MmuUpdate {
            ptr: (resolve_frame(w, s, at) << 12) + u64::from(slot % 512) * 8 + u64::from(cmd & 7),
            val: resolve_val(w, s, val),
        },
    }
}

fn ext_op(w: &World, s: usize, o: Ext) -> MmuextOp {
    let f = |x: F| resolve_frame(w, s, x);
    let (cmd, arg1, arg2) = match o {
        Ext::Pin(level, x) => (
            MMUEXT_PIN_L1_TABLE + u32::from((level.clamp(1, 4)) - 1),
            f(x),
            0,
        ),
        Ext::Unpin(x) => (MMUEXT_UNPIN_TABLE, f(x), 0),
        Ext::NewBase(x) => (MMUEXT_NEW_BASEPTR, f(x), 0),
        Ext::NewUserBase(x) => (MMUEXT_NEW_USER_BASEPTR, x.map_or(0, f), 0),
        Ext::Clear(x) => (MMUEXT_CLEAR_PAGE, f(x), 0),
        Ext::Copy(d, src) => (MMUEXT_COPY_PAGE, f(d), f(src)),
        Ext::SetLdt(v, n) => (MMUEXT_SET_LDT, resolve_va(w, s, v), n.into()),
        Ext::Flush(c, v) => {
            let v = resolve_va(w, s, v);
            (FLUSH_CMDS[usize::from(c) % FLUSH_CMDS.len()], v, v)
        }
        Ext::Raw(c, a, b) => (c.into(), a, b),
    };
    MmuextOp {
        cmd,
        arg1,
        arg2,
        ..Default::default()
    }
}

/// Writes an event-channel operation's structure; returns the command and its address.
fn evtchn(w: &mut World, s: usize, k: usize, ev: Ev) -> (u32, u64) {
    let dom = |w: &World, d: Dom| resolve_dom(w, s, d);
    match ev {
        Ev::AllocUnbound { dom: d, remote } => {
            let op = EvtchnAllocUnbound {
                dom: dom(w, d),
                remote_dom: dom(w, remote),
                port: 0,
            };
            (EVTCHNOP_alloc_unbound, put_arg(w, s, k, &op))
        }
        Ev::BindInterdomain { remote, port } => {
            let remote = dom(w, remote);
            let op = EvtchnBindInterdomain {
                remote_dom: remote,
                remote_port: resolve_port(w, s, Some(remote), port),
                ..Default::default()
            };
            (EVTCHNOP_bind_interdomain, put_arg(w, s, k, &op))
        }
        Ev::Send(p) => {
            let port = resolve_port(w, s, None, p);
            (EVTCHNOP_send, put_arg(w, s, k, &EvtchnSend { port }))
        }
        Ev::Close(p) => {
            let port = resolve_port(w, s, None, p);
            (EVTCHNOP_close, put_arg(w, s, k, &EvtchnClose { port }))
        }
        Ev::Unmask(p) => {
            let port = resolve_port(w, s, None, p);
            (EVTCHNOP_unmask, put_arg(w, s, k, &EvtchnUnmask { port }))
        }
        Ev::Status(d, p) => {
            let op = EvtchnStatus {
                dom: dom(w, d),
                port: resolve_port(w, s, None, p),
                ..Default::default()
            };
            (EVTCHNOP_status, put_arg(w, s, k, &op))
        }
        Ev::BindVirq { virq, vcpu } => {
            let op = EvtchnBindVirq {
                virq: virq.into(),
                vcpu: vcpu.into(),
                port: 0,
            };
            (EVTCHNOP_bind_virq, put_arg(w, s, k, &op))
        }
        Ev::BindIpi(vcpu) => {
            let op = EvtchnBindIpi {
                vcpu: vcpu.into(),
                port: 0,
            };
            (EVTCHNOP_bind_ipi, put_arg(w, s, k, &op))
        }
        Ev::BindVcpu(p, vcpu) => {
            let op = EvtchnBindVcpu {
                port: resolve_port(w, s, None, p),
                vcpu: vcpu.into(),
            };
            (EVTCHNOP_bind_vcpu, put_arg(w, s, k, &op))
        }
        Ev::Reset(d) => {
            let op = EvtchnReset { dom: dom(w, d) };
            (EVTCHNOP_reset, put_arg(w, s, k, &op))
        }
        Ev::Raw(c) => (c.into(), arg_va(k)),
    }
}
