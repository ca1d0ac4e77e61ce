//! A domain's life after it was built: its memory in the pool, shutdown reports, destruction,
//! zombies and reaping (Xen's `common/domain.c`: `domain_shutdown`, `domain_kill`,
//! `domain_relinquish_resources`, and the toolstack's `on_reboot = "restart"`).
//!
//! A domain that shuts down is reported once, on the console and to dom0 (`VIRQ_DOM_EXC`); dom0
//! itself takes the machine with it, as on Xen. A domain that dom0 destroys
//! (`XEN_DOMCTL_destroydomain`) loses its grants and event channels, then its memory is
//! relinquished through the frame table. Frames another domain still references (dom0 mapping
//! its rings) stay owned by the dead domain, as Xen's zombie domains keep theirs, and go back to
//! the free pool once the last reference is dropped ([`reap`]), with a line saying so. A domU
//! that shut down with `SHUTDOWN_reboot` is built again from its boot module when it is
//! destroyed: that is how dom0 restarts a domU, with `SCHEDOP_remote_shutdown(domid,
//! SHUTDOWN_reboot)`. Building itself is the arch layer's ([`Arch::build_domain`]).

use hypercall_abi::sched::SHUTDOWN_reboot;

use crate::cpu::{printk, Arch, Hv, Stop};
use crate::domain::pool::{GrantFrames, INVALID_M2P_ENTRY};
use crate::domain::set::{DomainEntry, DomainSet, MAX_DOMAINS};
use crate::domain::{DomainId, Shutdown};
use crate::evtchn::hypercall as event_channel;
use crate::gnttab::hypercall as grant_table;
use crate::mm::frame_alloc::FramePool;
use crate::mm::frame_table::{Mm, Owner};
use crate::mm::memory::reclaim;
use crate::mm::{MachineMemoryMut, Maddr, Mfn};
use crate::power::FailCode;
use crate::regs::Regs;
use crate::regs::RegsDump;

/// Xen's name of a `SHUTDOWN_*` code.
pub fn shutdown_name(code: u32) -> &'static str {
    match code {
        hypercall_abi::sched::SHUTDOWN_poweroff => "poweroff",
        hypercall_abi::sched::SHUTDOWN_reboot => "reboot",
        hypercall_abi::sched::SHUTDOWN_suspend => "suspend",
        hypercall_abi::sched::SHUTDOWN_crash => "crash",
        hypercall_abi::sched::SHUTDOWN_watchdog => "watchdog",
        _ => "unknown",
    }
}

/// Reports domains that shut down (dom0 takes the machine with it, as on Xen) and tears down
/// those dom0 destroyed. `regs` are the running vCPU's (slot `hv.sched.cur`).
///
/// Runs on every full scheduling pass. The usual answer, nothing stopped, comes from one tight
/// look at each domain; what is to be done is out of line ([`stopped_domain`]), whose locals
/// (a teardown's record of what it released, the messages' formatting) would otherwise be in
/// the scheduler's stack frame, probed page by page on every pass (~36 KiB: nine page touches,
/// each a TLB fill under emulation after an address-space switch).
pub fn stopped_domains<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs) {
    for slot in doms.occupied() {
        let Some(g) = doms.guest(slot) else {
            continue;
        };
        if g.destroy || (g.dom.shutdown.is_some() && (g.dom.id == 0 || !g.reported)) {
            stopped_domain(hv, doms, regs, slot);
        }
    }
}

/// [`stopped_domains`] for the domain in `slot`, which shut down (dom0: the machine stops; any
/// other: reported once) or was destroyed (torn down).
#[inline(never)]
fn stopped_domain<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs, slot: usize) {
    {
        let Some(g) = doms.guest_mut(slot) else {
            return;
        };
        if let Some(s) = g.dom.shutdown {
            if g.dom.id == 0 {
                let r = if slot == hv.sched.cur {
                    *regs
                } else {
                    g.dom.vcpu().regs
                };
                // What the pool holds at the end, and the frames dom0's own tables took from it
                // as it ran (event-channel pages as it bound ports, maptrack frames as it mapped
                // grants, grant-table growth; it keeps them while it lives, as on Xen): tests
                // add them back when they check that every frame came back.
                let ports = doms.ports(slot).nr_pages();
                let grants = doms.grants[slot].frames().len();
                let took =
                    (ports + grants).saturating_sub(hv.pool.dom0_table_frames_at_boot as usize);
                printk!(
                    &mut hv.arch,
                    "at dom0's end: {} frames free, dom0's tables took {took} frames from the pool (event channels in {ports} pages, grant table in {grants} frames)\n",
                    hv.pool.free_frames(),
                );
                let Some(g) = doms.guest(slot) else {
                    return;
                };
                dom0_stopped(&mut hv.arch, g, &r, s);
            }
            if !g.reported {
                g.reported = true;
                let id = g.dom.id;
                match s {
                    Shutdown::Requested(code) => printk!(
                        &mut hv.arch,
                        "domain {id} ({}) shut down (code {code}): {}\n",
                        g.name,
                        shutdown_name(code)
                    ),
                    Shutdown::Crashed(why) => {
                        printk!(&mut hv.arch, "domain {id} ({}) crashed: {why}\n", g.name);
                        let r = if slot == hv.sched.cur {
                            regs
                        } else {
                            &g.dom.vcpu().regs
                        };
                        printk!(&mut hv.arch, "{}", RegsDump(r));
                    }
                }
                // Tell the toolstack (`VIRQ_DOM_EXC` is global: dom0 binds it).
                event_channel::send_global_virq(
                    &mut hv.arch,
                    doms,
                    hypercall_abi::xen::VIRQ_DOM_EXC,
                );
            }
        }
        if doms.guest(slot).is_some_and(|g| g.destroy) {
            destroy(hv, doms, slot);
        }
    }
}

/// dom0 stopped: it takes the machine with it, as on Xen.
fn dom0_stopped<A: Arch>(arch: &mut A, g: &DomainEntry, regs: &Regs, s: Shutdown) -> ! {
    let id = g.dom.id;
    match s {
        Shutdown::Requested(hypercall_abi::sched::SHUTDOWN_poweroff) => {
            printk!(arch, "Hardware Dom{id} halted: powering off\n");
            arch.stop(Stop::Poweroff)
        }
        Shutdown::Requested(hypercall_abi::sched::SHUTDOWN_reboot) => {
            printk!(arch, "Hardware Dom{id} shutdown: rebooting machine\n");
            arch.stop(Stop::Reboot)
        }
        Shutdown::Requested(code) => {
            printk!(arch, "Hardware Dom{id} crashed (shutdown code {code})\n");
            printk!(arch, "{}", RegsDump(regs));
            arch.stop(Stop::Fail(FailCode::Dom0Crashed))
        }
        Shutdown::Crashed(why) => {
            printk!(arch, "domain {id} crashed: {why}\n");
            printk!(arch, "{}", RegsDump(regs));
            arch.stop(Stop::Fail(FailCode::Dom0Crashed))
        }
    }
}

/// A domain [`teardown`] took apart.
#[derive(Debug)]
pub struct Destroyed {
    /// The domain as it was (name, boot module, shutdown reason, run time), its frames released.
    pub guest: DomainEntry,
    /// How many of its frames other domains still reference: they stay owned by its id (a
    /// zombie, as on Xen) until those references go.
    pub still_referenced: usize,
    /// The domains whose page-table entries mapping its grants were cleared: their TLBs must be
    /// flushed (global entries included) before they run again.
    pub flush: heapless::Vec<DomainId, MAX_DOMAINS>,
    /// Every frame its grant table took (at build and as it grew), for the reaper.
    pub grant_frames: GrantFrames,
    /// The frames of its event-channel pages: the hypervisor's alone, they go back to the pool
    /// at once.
    pub port_frames: crate::evtchn::PortFrames,
}

/// Tears down the domain in `slot` (`domain_kill`, `domain_relinquish_resources`): its grant
/// mappings of others and others' mappings of its grants go first, then its event channels
/// (the other ends become unbound), then its memory is relinquished through the frame table
/// ([`Mm::relinquish_domain`]: base pointers, GDT, pins, shares, allocations), and the slot
/// is emptied. `None` if the slot is empty.
pub fn teardown(
    doms: &mut DomainSet,
    slot: usize,
    mm: &mut Mm<'_>,
    mem: &mut dyn MachineMemoryMut,
) -> Option<Destroyed> {
    let (g, ports, grants, mut others) = doms.split(slot)?;
    let flush = grant_table::domain_dying(mm, mem, &mut g.dom, grants, &mut others);
    let grant_frames = grants.frames().iter().copied().collect();
    event_channel::close_all(mem, &g.dom, ports, &mut others);
    let port_frames = ports.take_pages();
    let still_referenced = mm.relinquish_domain(mem, &mut g.dom);
    let guest = doms.remove(slot)?;
    Some(Destroyed {
        guest,
        still_referenced,
        flush,
        grant_frames,
        port_frames,
    })
}

/// Tears down the domain in `slot` (dom0 destroyed it): closes its event channels, relinquishes
/// its memory, frees its slot, and tells dom0 (`VIRQ_DOM_EXC`).
pub fn destroy<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, slot: usize) {
    // dom0 destroyed it from its own entry (`XEN_DOMCTL_destroydomain`), so the CPU runs on
    // dom0's tables, not on the dying domain's, whose L4s are released here.
    if let Some(g) = doms.guest(slot) {
        let running = hv.arch.running_l4();
        assert!(
            !g.dom
                .vcpus
                .iter()
                .any(|v| v.l4 == running || v.user_l4 == Some(running)),
            "destroying d{} while the CPU runs on its page tables",
            g.dom.id
        );
    }
    let Some((mm, mem)) = hv.arch.mm() else {
        return;
    };
    let Some(gone) = teardown(doms, slot, mm, mem) else {
        return;
    };
    // The mappers' TLBs: another vCPU is flushed when it is switched to; the running one now.
    hv.arch.flush_tlb_all();
    // Its grant table's frames that nothing references any more (the active entries', and the
    // shared ones no other domain maps) go back to the pool now (the TLBs were flushed above);
    // the others wait for the reaper.
    let mut held = crate::domain::pool::HeldGrantFrames::new();
    let mut lost = 0;
    for &f in &gone.grant_frames {
        let Some((mm, mem)) = hv.arch.mm() else {
            break;
        };
        if mm.frames.get(f).is_some_and(|i| i.owner() == Owner::Xen) {
            let _ = mem.write_u64(Maddr(mm.cfg.m2p.0 + f.0 * 8), INVALID_M2P_ENTRY);
            mm.release_xen(crate::domain::pool::one(f));
            FramePool::give_back(&mut hv.pool, mem, f);
        } else if held.push(f).is_err() {
            lost += 1;
        }
    }
    // Its channel pages: nothing reaches them any more (its ports were closed).
    for &f in &gone.port_frames {
        if let Some((mm, mem)) = hv.arch.mm() {
            crate::ctx::give_back_xen_frame(mm, mem, &mut hv.pool, f);
        }
    }
    let g = &gone.guest;
    let id = g.dom.id;
    let restart = g.dom.shutdown == Some(Shutdown::Requested(SHUTDOWN_reboot));
    let (module, copy) = (g.module, g.copy);
    printk!(
        &mut hv.arch,
        "domain {id} ({}) destroyed: {} s run, {} frames still referenced\n",
        g.name,
        g.sched.run_ns / 1_000_000_000,
        gone.still_referenced
    );
    // How long it ever held the CPU in one hypercall or exception (issue 11: a long hypercall
    // continues instead of holding it).
    printk!(
        &mut hv.arch,
        "domain {id}: longest hypervisor entry {} us\n",
        g.sched.longest_entry_ns / 1000
    );
    if lost > 0 {
        printk!(
            &mut hv.arch,
            "domain {id}: {lost} grant-table frames lost: too many still referenced\n"
        );
    }
    if let Some(mut a) = hv.pool.allocs[slot].take() {
        // The table's frames now, the ones it grew into included.
        a.grant_taken = gone.grant_frames.len() as u32;
        a.port_taken = gone.port_frames.len() as u32;
        a.grant_frames = held;
        hv.pool.reaped_at = None;
        if let Err(a) = hv.pool.zombies.push(a) {
            printk!(
                &mut hv.arch,
                "domain {}: {} frames lost: too many dead domains still referenced\n",
                a.domid,
                a.frames()
            );
        }
    }
    reap(hv);
    // A domU that rebooted (itself, or dom0 with `SCHEDOP_remote_shutdown`) is built again from
    // its boot module under a new id, as `on_reboot = "restart"` has Xen's toolstack do.
    if restart {
        printk!(
            &mut hv.arch,
            "domain {id} rebooted: building it again from boot module {module}\n"
        );
        // The same copy of the same module: the same place among the boot-time domUs (its
        // handle, which dom0 gives its disk by).
        let _ = hv.arch.build_domain(&mut hv.pool, doms, module, copy);
    }
    event_channel::send_global_virq(&mut hv.arch, doms, hypercall_abi::xen::VIRQ_DOM_EXC);
}

/// Gives dead domains' frames back to the free pool once nothing references them (their M2P
/// entries invalidated), printing a line per domain whose memory is all back. A domain's pages
/// are the frames the pool gave it (at build time, or later through `memory_op`) that it did not
/// give back: those still marked with its id in the frame table ([`reclaim`]).
pub fn reap<A: Arch>(hv: &mut Hv<A>) {
    let Some(frees) = hv.arch.mm().map(|(mm, _)| mm.frames.frees()) else {
        return;
    };
    if hv.pool.zombies.is_empty() || hv.pool.reaped_at == Some(frees) {
        // Nothing was freed since every zombie was last found holding frames: a zombie kept
        // alive by one frame another domain maps costs nothing per tick.
        return;
    }
    let mut i = 0;
    while i < hv.pool.zombies.len() {
        let a = hv.pool.zombies[i].clone();
        let owner = Owner::Domain(a.domid);
        let Some((mm, mem)) = hv.arch.mm() else {
            i += 1;
            continue;
        };
        let owned = |m: u64| mm.frames.get(Mfn(m)).is_some_and(|f| f.owner() == owner);
        // The build-time run and the shared pages first (cheap); only when they are all free,
        // the whole table (pages populated later lie anywhere).
        let held = (a.pages.start.0..a.pages.end.0)
            .chain(core::iter::once(a.shared_info.0))
            .chain(a.grant_frames.iter().map(|m| m.0))
            .any(owned)
            || mm.frames.iter().any(|(_, f)| f.owner() == owner);
        if held {
            i += 1;
            continue;
        }
        let pages = reclaim(mm, mem, &mut hv.pool, Some(a.domid), &mut |_| {});
        for mfn in core::iter::once(a.shared_info.0).chain(a.grant_frames.iter().map(|m| m.0)) {
            let _ = mem.write_u64(Maddr(mm.cfg.m2p.0 + mfn * 8), INVALID_M2P_ENTRY);
        }
        for &f in &a.grant_frames {
            mm.release_xen(crate::domain::pool::one(f));
        }
        // Frame by frame through the pool, so that a full run list puts them on its list of
        // single frames instead of losing them.
        for m in core::iter::once(a.shared_info.0).chain(a.grant_frames.iter().map(|m| m.0)) {
            FramePool::give_back(&mut hv.pool, mem, Mfn(m));
        }
        // The running guest may hold stale TLB entries for frames of this domain it had mapped
        // (dom0's foreign mappings, unmapped without a flush): none survives the frames' return
        // to the pool (one CPU: one full flush).
        hv.arch.flush_tlb_all();
        let frames = pages + 1 + u64::from(a.grant_taken) + u64::from(a.port_taken);
        printk!(
            &mut hv.arch,
            "domain {}: all {frames} frames returned to the free pool ({} free)\n",
            a.domid,
            hv.pool.free_frames()
        );
        hv.pool.zombies.swap_remove(i);
    }
    // Whatever is left holds frames: look again once something was freed. (Reclaiming frees
    // nothing in the frame table, so the count read at the start still stands.)
    hv.pool.reaped_at = Some(frees);
}
