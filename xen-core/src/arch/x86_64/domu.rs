//! Boot-time domUs: building one from a boot module, tearing one down, and giving its memory back.
//!
//! Every boot module after dom0's becomes a domU (Xen calls this boot-time launch "dom0less").
//! Its command line may carry `name=<name>` and `mem=<size>` (the hypervisor reads them; the
//! kernel sees the whole line). The domU gets Xen's domU `start_info`: a xenstore ring and a
//! console ring in its initial region, each with an event channel left unbound for dom0 to bind,
//! which dom0's toolstack learns with `HVMOP_get_param`.
//!
//! A domain that dom0 destroys (`XEN_DOMCTL_destroydomain`) loses its event channels, then its
//! memory is relinquished through the frame table. Frames another domain still references (dom0
//! mapping its rings) stay owned by the dead domain, as Xen's zombie domains keep theirs, and go
//! back to the free pool once the last reference is dropped ([`reap`]), with a line saying so.
//! A domU that shut down with `SHUTDOWN_reboot` is built again from its boot module when it is
//! destroyed (Xen's toolstack does this for `on_reboot = "restart"`): that is how dom0 restarts a
//! domU, with `SCHEDOP_remote_shutdown(domid, SHUTDOWN_reboot)`.

use hypercall_abi::sched::SHUTDOWN_reboot;
use hypercall_abi::xen::DOMID_FIRST_RESERVED;
use xen_core::domain::build::{self, BuildParams, DomainKind};
use xen_core::domain::set::{BootRings, DomainEntry, DomainSet, SchedInfo, MAX_DOMAINS};
use xen_core::domain::{Domain, Shutdown};
use xen_core::evtchn::hypercall as event_channel;
use xen_core::mm::frame_alloc::{BootFrameAllocator, FrameAllocator, FrameRange};
use xen_core::mm::frame_table::Owner;
use xen_core::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};
use xen_core::regs::Regs;

use super::console::printk;
use super::dispatch::{self, Hv};
use super::machine::{DirectMap, HvMachine};
use super::mappings::{hypervisor_l4_slots, BootDirectMap};

/// A domU's memory when its command line has no `mem=`.
pub const DEFAULT_DOMU_MEM: u64 = 16 << 20;

/// The most ports a domU may use (Xen's default `max_event_channels` for a domU is 1023).
pub const DOMU_MAX_PORT: u32 = 1023;

/// An M2P entry for a frame no domain owns (`INVALID_M2P_ENTRY`).
const INVALID_M2P_ENTRY: u64 = u64::MAX;

/// Dead domains whose frames are still referenced, at most (a push beyond would lose them).
const MAX_ZOMBIES: usize = 64;

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
#[derive(Clone, Debug)]
struct Alloc {
    domid: u16,
    pages: FrameRange,
    shared_info: Mfn,
    /// Its grant-table frames (shared entries, shared with it or held in reserve, and active
    /// entries): one run, taken at once.
    grant_frames: FrameRange,
}

/// Free memory, and what each domain took from it.
pub struct Pool {
    frames: BootFrameAllocator,
    allocs: [Option<Alloc>; MAX_DOMAINS],
    zombies: heapless::Vec<Alloc, MAX_ZOMBIES>,
    m2p_base: u64,
    /// The boot modules.
    pub modules: heapless::Vec<BootModule, 16>,
    next_domid: u16,
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
}

/// The value of `key=` among the words of `cmdline`.
fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Builds a domU from boot module `module` into a free slot. A module that cannot be built is
/// refused with a message naming why; the caller goes on with the others.
pub fn build(
    m: &mut HvMachine,
    pool: &mut Pool,
    doms: &mut DomainSet,
    module: usize,
) -> Result<usize, ()> {
    let Some(bm) = pool.modules.get(module).cloned() else {
        return Err(());
    };
    let (path, cmdline) = xen_core::cmdline::split_image_name(&bm.string);
    let refuse = |why: core::fmt::Arguments<'_>| {
        printk!("ERR: boot module {module} ({path}): not started: {why}\n");
    };
    let mem = match option(cmdline, "mem") {
        Some(v) => match xen_core::cmdline::parse_size(v) {
            Some(b) if b >= 1 << 20 => b,
            _ => {
                refuse(format_args!("bad mem={v} (at least 1M)"));
                return Err(());
            }
        },
        None => DEFAULT_DOMU_MEM,
    };
    let nr_pages = mem / 4096;
    let Some(slot) = doms.free_slot() else {
        refuse(format_args!(
            "no room for another domain (at most {MAX_DOMAINS})"
        ));
        return Err(());
    };
    if pool.next_domid >= DOMID_FIRST_RESERVED {
        refuse(format_args!("out of domain ids"));
        return Err(());
    }
    // What the builder will take: the pages, contiguous, and the shared_info frame.
    if nr_pages + 1 > pool.frames.free_frames() {
        refuse(format_args!(
            "mem={} MiB does not fit: {} MiB free",
            mem >> 20,
            pool.frames.free_frames() >> 8
        ));
        return Err(());
    }
    let id = pool.next_domid;
    let mut name: heapless::String<32> = heapless::String::new();
    match option(cmdline, "name") {
        Some(n) => {
            for c in n.chars().take(31) {
                let _ = name.push(c);
            }
        }
        None => {
            let _ = core::fmt::write(&mut name, format_args!("domU{id}"));
        }
    }

    let Some(shared_info) = pool.frames.alloc_frame() else {
        refuse(format_args!("no memory for shared_info"));
        return Err(());
    };
    let _ = m.mem.write(shared_info.maddr(), &[0u8; 4096]);
    let mut dom = Domain::new(id, false, nr_pages, nr_pages, shared_info, Mfn(0));
    // The xenstore and console channels, unbound for dom0 (ports 1 and 2 of a new domain).
    let mut ports_ok = Ok((0, 0));
    doms.install(
        slot,
        DomainEntry {
            dom: dom.clone(),
            regs: Regs::default(),
            sched: SchedInfo {
                weight: xen_core::sched::DEFAULT_WEIGHT,
                ..SchedInfo::default()
            },
            name: name.clone(),
            module,
            rings: None,
            destroy: false,
            reported: false,
        },
        DOMU_MAX_PORT,
    );
    if let Some((g, ports)) = doms.both_mut(slot) {
        ports_ok = event_channel::alloc_unbound_for(&mut m.mem, &g.dom, ports, 0).and_then(|s| {
            event_channel::alloc_unbound_for(&mut m.mem, &g.dom, ports, 0).map(|c| (s, c))
        });
    }
    let Ok((store_evtchn, console_evtchn)) = ports_ok else {
        doms.remove(slot);
        let _ = pool.frames.free(one(shared_info));
        refuse(format_args!("no event channels"));
        return Err(());
    };

    let Some(image) = BootDirectMap.read(bm.start, bm.len) else {
        doms.remove(slot);
        let _ = pool.frames.free(one(shared_info));
        refuse(format_args!("not readable through the direct map"));
        return Err(());
    };
    let params = BuildParams {
        image,
        cmdline,
        nr_pages,
        kind: DomainKind::DomU {
            store_evtchn,
            console_evtchn,
        },
        hypervisor_l4_slots: hypervisor_l4_slots(),
        shared_info,
    };
    let m2p_base = pool.m2p_base;
    let built = match build::build(&mut m.mem, &mut pool.frames, &params, |mfn, pfn| {
        let _ = DirectMap.write_u64(Maddr(m2p_base + mfn.0 * 8), pfn.0);
    }) {
        Ok(b) => b,
        Err(e) => {
            doms.remove(slot);
            let _ = pool.frames.free(one(shared_info));
            refuse(format_args!("{e}"));
            return Err(());
        }
    };
    let pages = FrameRange {
        start: built.mfn_base,
        end: Mfn(built.mfn_base.0 + built.nr_pages),
    };
    if let Err(e) = xen_core::domain::build::seed_domain(&mut m.mm, &mut m.mem, &mut dom, &built) {
        refuse(format_args!(
            "its initial page tables did not validate: {e}"
        ));
        m.mm.relinquish_domain(&mut m.mem, &mut dom);
        doms.remove(slot);
        let _ = pool.frames.free(pages);
        let _ = pool.frames.free(one(shared_info));
        return Err(());
    }
    // Its grant table: frames shared with it as Xen's `gnttab_grow_table` does, and the
    // frames of its active entries; one run, so that one range records them all.
    let nr_grant = xen_core::gnttab::MAX_TABLE_FRAMES as u64;
    let Some(first) = pool.frames.alloc_contiguous(nr_grant, 1) else {
        refuse(format_args!("no memory for its grant table"));
        m.mm.relinquish_domain(&mut m.mem, &mut dom);
        doms.remove(slot);
        let _ = pool.frames.free(pages);
        let _ = pool.frames.free(one(shared_info));
        return Err(());
    };
    let grant_frames = FrameRange {
        start: first,
        end: Mfn(first.0 + nr_grant),
    };
    let mut next = first.0;
    if let Err(e) = doms.grants[slot].init(
        &mut m.mm,
        &mut m.mem,
        id,
        &mut || {
            next += 1;
            (next <= grant_frames.end.0).then_some(Mfn(next - 1))
        },
        xen_core::gnttab::MAX_GRANT_FRAMES,
    ) {
        refuse(format_args!("no grant table: {e:?}"));
        m.mm.relinquish_domain(&mut m.mem, &mut dom);
        doms.remove(slot);
        let _ = pool.frames.free(pages);
        let _ = pool.frames.free(one(shared_info));
        let _ = pool.frames.free(grant_frames);
        return Err(());
    }
    let page_mfn = |r: Option<build::layout::Region>| {
        r.map_or(0, |r| built.mfn_base.0 + built.layout.pfn_of(r.start))
    };
    let rings = BootRings {
        store_mfn: page_mfn(built.layout.xenstore),
        store_evtchn,
        console_mfn: page_mfn(built.layout.console),
        console_evtchn,
    };
    // Guests start with event upcalls masked, and with the time published in shared_info.
    xen_core::shared_info::set_upcall_mask(m, &dom, true);
    dispatch::publish_time(m, &dom);
    let g = doms.guest_mut(slot).expect("installed above");
    g.dom = dom;
    g.regs = Regs::guest_entry(built.entry, built.stack_top, built.start_info_va);
    g.rings = Some(rings);
    pool.record(slot, id, pages, shared_info, grant_frames);
    pool.next_domid += 1;
    dispatch::reset_fpu(slot);
    printk!(
        "*** Built d{id} ({name}): {} MiB at mfn {:#x}, entry {:#x}, store port {store_evtchn}, console port {console_evtchn} ***\n",
        nr_pages >> 8,
        built.mfn_base.0,
        built.entry
    );
    Ok(slot)
}

fn one(mfn: Mfn) -> FrameRange {
    FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    }
}

/// Raises a global VIRQ (`VIRQ_DOM_EXC`) in dom0.
pub fn notify_dom0(hv: &mut Hv, doms: &mut DomainSet, virq: u32) {
    let Some(slot) = doms.slot_of(0) else { return };
    if let Some((g, ports)) = doms.both_mut(slot) {
        event_channel::send_virq(&mut hv.m, &g.dom, ports, virq);
    }
}

/// Tears down the domain in `slot` (dom0 destroyed it): closes its event channels, relinquishes
/// its memory, frees its slot, and tells dom0 (`VIRQ_DOM_EXC`).
pub fn destroy(hv: &mut Hv, doms: &mut DomainSet, slot: usize) {
    // dom0 destroyed it from its own entry (`XEN_DOMCTL_destroydomain`), so the CPU runs on
    // dom0's tables, not on the dying domain's, whose L4s are released here.
    if let Some(g) = doms.guest(slot) {
        let tables = [Some(g.dom.l4), g.dom.vcpu.user_l4];
        assert!(
            !tables.contains(&Some(Mfn(hv.m.cr3 >> 12))),
            "destroying d{} while the CPU runs on its page tables",
            g.dom.id
        );
    }
    let Some(gone) = doms.destroy(slot, &mut hv.m.mm, &mut hv.m.mem) else {
        return;
    };
    // The mappers' TLBs: another vCPU is flushed when it is switched to; the running one now.
    // SAFETY: toggling CR4.PGE only drops cached translations.
    unsafe {
        let cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4 & !(1 << 7), options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
    let g = &gone.guest;
    let id = g.dom.id;
    let restart = g.dom.shutdown == Some(Shutdown::Requested(SHUTDOWN_reboot));
    let module = g.module;
    printk!(
        "domain {id} ({}) destroyed: {} s run, {} frames still referenced\n",
        g.name,
        g.sched.run_ns / 1_000_000_000,
        gone.still_referenced
    );
    // How long it ever held the CPU in one hypercall or exception (issue 11: a long hypercall
    // continues instead of holding it).
    printk!(
        "domain {id}: longest hypervisor entry {} us\n",
        g.sched.longest_entry_ns / 1000
    );
    if let Some(a) = hv.pool.allocs[slot].take() {
        if let Err(a) = hv.pool.zombies.push(a) {
            printk!(
                "domain {}: {} frames lost: too many dead domains still referenced\n",
                a.domid,
                a.pages.len() + 1 + a.grant_frames.len()
            );
        }
    }
    reap(hv);
    // A domU that rebooted (itself, or dom0 with `SCHEDOP_remote_shutdown`) is built again from
    // its boot module under a new id, as `on_reboot = "restart"` has Xen's toolstack do.
    if restart {
        printk!("domain {id} rebooted: building it again from boot module {module}\n");
        let _ = build(&mut hv.m, &mut hv.pool, doms, module);
    }
    notify_dom0(hv, doms, hypercall_abi::xen::VIRQ_DOM_EXC);
}

/// Gives dead domains' frames back to the free pool once nothing references them, printing a
/// line per domain whose memory is all back.
pub fn reap(hv: &mut Hv) {
    let mut i = 0;
    while i < hv.pool.zombies.len() {
        let a = hv.pool.zombies[i].clone();
        let owner = Owner::Domain(a.domid);
        let busy = |mfn: Mfn| hv.m.mm.frames.get(mfn).is_some_and(|f| f.owner() == owner);
        let held = (a.pages.start.0..a.pages.end.0)
            .chain(core::iter::once(a.shared_info.0))
            .chain(a.grant_frames.start.0..a.grant_frames.end.0)
            .filter(|&m| busy(Mfn(m)))
            .count();
        if held > 0 {
            i += 1;
            continue;
        }
        for mfn in a.pages.start.0..a.pages.end.0 {
            let _ = DirectMap.write_u64(Maddr(hv.pool.m2p_base + mfn * 8), INVALID_M2P_ENTRY);
        }
        let _ = hv.pool.frames.free(a.pages);
        let _ = hv.pool.frames.free(one(a.shared_info));
        let _ = hv.pool.frames.free(a.grant_frames);
        printk!(
            "domain {}: all {} frames returned to the free pool ({} free)\n",
            a.domid,
            a.pages.len() + 1 + a.grant_frames.len(),
            hv.pool.frames.free_frames()
        );
        hv.pool.zombies.swap_remove(i);
    }
}
