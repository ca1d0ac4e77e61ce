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
use crate::domain::set::{DomainEntry, DomainSet, MAX_DOMAINS};
use crate::domain::Shutdown;
use crate::evtchn::hypercall as event_channel;
use crate::keyhandler::RegsDump;
use crate::mm::frame_alloc::{BootFrameAllocator, FrameRange};
use crate::mm::frame_table::Owner;
use crate::mm::{Maddr, Mfn};
use crate::power::FailCode;
use crate::regs::Regs;

/// An M2P entry for a frame no domain owns (`INVALID_M2P_ENTRY`).
pub const INVALID_M2P_ENTRY: u64 = u64::MAX;

/// Dead domains whose frames are still referenced, at most (a push beyond would lose them).
pub const MAX_ZOMBIES: usize = 64;

/// A boot module, remembered so that a domain can be rebuilt from it.
#[derive(Clone, Debug)]
pub struct BootModule {
    /// Its bytes in machine memory (reserved for the hypervisor's lifetime).
    pub start: Maddr,
    /// Length in bytes.
    pub len: usize,
    /// Its string: path, then command line.
    pub string: heapless::String<512>,
}

/// The memory a domain was given: its pages and its shared_info frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alloc {
    /// The domain.
    pub domid: u16,
    /// Its pages.
    pub pages: FrameRange,
    /// Its shared_info frame.
    pub shared_info: Mfn,
    /// Its grant-table frames (shared entries, shared with it or held in reserve, and active
    /// entries): one run, taken at once.
    pub grant_frames: FrameRange,
}

impl Alloc {
    /// How many frames it holds.
    pub fn frames(&self) -> u64 {
        self.pages.len() + 1 + self.grant_frames.len()
    }
}

/// Free memory, and what each domain took from it.
pub struct Pool {
    /// The free frames.
    pub frames: BootFrameAllocator,
    allocs: [Option<Alloc>; MAX_DOMAINS],
    zombies: heapless::Vec<Alloc, MAX_ZOMBIES>,
    /// Where the M2P table is (machine address).
    pub m2p_base: u64,
    /// The boot modules.
    pub modules: heapless::Vec<BootModule, 16>,
    /// The id the next domain built gets.
    pub next_domid: u16,
}

impl Pool {
    /// The pool over `frames`, with the M2P at `m2p_base`.
    pub fn new(frames: BootFrameAllocator, m2p_base: u64) -> Pool {
        Pool {
            frames,
            allocs: [const { None }; MAX_DOMAINS],
            zombies: heapless::Vec::new(),
            m2p_base,
            modules: heapless::Vec::new(),
            next_domid: 1,
        }
    }

    /// Free frames.
    pub fn free_frames(&self) -> u64 {
        self.frames.free_frames()
    }

    /// Records that domain `domid` in `slot` owns `pages`, `shared_info` and `grant_frames`.
    pub fn record(
        &mut self,
        slot: usize,
        domid: u16,
        pages: FrameRange,
        shared_info: Mfn,
        grant_frames: FrameRange,
    ) {
        self.allocs[slot] = Some(Alloc {
            domid,
            pages,
            shared_info,
            grant_frames,
        });
    }

    /// What the domain in `slot` was given.
    pub fn alloc(&self, slot: usize) -> Option<&Alloc> {
        self.allocs.get(slot)?.as_ref()
    }

    /// Dead domains whose memory is not all back yet.
    pub fn zombies(&self) -> &[Alloc] {
        &self.zombies
    }
}

/// The one frame `mfn`, as a range.
pub fn one(mfn: Mfn) -> FrameRange {
    FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    }
}

/// Raises a global VIRQ (`VIRQ_DOM_EXC`, `VIRQ_CONSOLE`) in dom0.
pub fn notify_dom0<A: Arch>(arch: &mut A, doms: &mut DomainSet, virq: u32) {
    let Some(slot) = doms.slot_of(0) else { return };
    if let Some((g, ports)) = doms.both_mut(slot) {
        event_channel::send_virq(arch, &g.dom, ports, virq);
    }
}

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
pub fn stopped_domains<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs) {
    for slot in 0..MAX_DOMAINS {
        let Some(g) = doms.guest_mut(slot) else {
            continue;
        };
        if let Some(s) = g.dom.shutdown {
            if g.dom.id == 0 {
                let r = if slot == hv.sched.cur { *regs } else { g.regs };
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
                        let r = if slot == hv.sched.cur { regs } else { &g.regs };
                        printk!(&mut hv.arch, "{}", RegsDump(r));
                    }
                }
                // Tell the toolstack (`VIRQ_DOM_EXC` is global: dom0 binds it).
                notify_dom0(&mut hv.arch, doms, hypercall_abi::xen::VIRQ_DOM_EXC);
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

/// Tears down the domain in `slot` (dom0 destroyed it): closes its event channels, relinquishes
/// its memory, frees its slot, and tells dom0 (`VIRQ_DOM_EXC`).
pub fn destroy<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, slot: usize) {
    // dom0 destroyed it from its own entry (`XEN_DOMCTL_destroydomain`), so the CPU runs on
    // dom0's tables, not on the dying domain's, whose L4s are released here.
    if let Some(g) = doms.guest(slot) {
        let tables = [Some(g.dom.l4), g.dom.vcpu.user_l4];
        assert!(
            !tables.contains(&Some(hv.arch.running_l4())),
            "destroying d{} while the CPU runs on its page tables",
            g.dom.id
        );
    }
    let Some((mm, mem)) = hv.arch.mm() else {
        return;
    };
    let Some(gone) = doms.destroy(slot, mm, mem) else {
        return;
    };
    // The mappers' TLBs: another vCPU is flushed when it is switched to; the running one now.
    hv.arch.flush_tlb_all();
    let g = &gone.guest;
    let id = g.dom.id;
    let restart = g.dom.shutdown == Some(Shutdown::Requested(SHUTDOWN_reboot));
    let module = g.module;
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
    if let Some(a) = hv.pool.allocs[slot].take() {
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
        let _ = hv.arch.build_domain(&mut hv.pool, doms, module);
    }
    notify_dom0(&mut hv.arch, doms, hypercall_abi::xen::VIRQ_DOM_EXC);
}

/// Gives dead domains' frames back to the free pool once nothing references them (their M2P
/// entries invalidated), printing a line per domain whose memory is all back.
pub fn reap<A: Arch>(hv: &mut Hv<A>) {
    let mut i = 0;
    while i < hv.pool.zombies.len() {
        let a = hv.pool.zombies[i].clone();
        let owner = Owner::Domain(a.domid);
        let held = match hv.arch.mm() {
            Some((mm, _)) => (a.pages.start.0..a.pages.end.0)
                .chain(core::iter::once(a.shared_info.0))
                .chain(a.grant_frames.start.0..a.grant_frames.end.0)
                .filter(|&m| mm.frames.get(Mfn(m)).is_some_and(|f| f.owner() == owner))
                .count(),
            None => 0,
        };
        if held > 0 {
            i += 1;
            continue;
        }
        for mfn in a.pages.start.0..a.pages.end.0 {
            let _ = hv
                .arch
                .write_u64(Maddr(hv.pool.m2p_base + mfn * 8), INVALID_M2P_ENTRY);
        }
        let _ = hv.pool.frames.free(a.pages);
        let _ = hv.pool.frames.free(one(a.shared_info));
        let _ = hv.pool.frames.free(a.grant_frames);
        printk!(
            &mut hv.arch,
            "domain {}: all {} frames returned to the free pool ({} free)\n",
            a.domid,
            a.frames(),
            hv.pool.frames.free_frames()
        );
        hv.pool.zombies.swap_remove(i);
    }
}
