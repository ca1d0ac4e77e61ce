//! Boot-time domUs: building one from a boot module.
//!
//! Every boot module after dom0's becomes a domU (Xen calls this boot-time launch "dom0less").
//! Its command line may carry `name=<name>`, `mem=<size>` and `copies=<n>` (n domUs from the one
//! module, named `<name>1` to `<name><n>`; the hypervisor reads them; the
//! kernel sees the whole line). A module whose command line is `initrd` is no domain but the
//! initial ramdisk of the kernel in the module before it (`start_info.mod_start`/`mod_len`, a
//! virtual address in the initial mapping, right after the kernel, as Xen maps dom0's). The domU gets Xen's domU `start_info`: a xenstore ring and a
//! console ring in its initial region, each with an event channel left unbound for dom0 to bind,
//! which dom0's toolstack learns with `HVMOP_get_param`. The rest of a domain's life (shutdown,
//! destruction, reaping its memory, rebuilding one that rebooted) is portable:
//! `xen_core::domain::lifecycle`.

use hypercall_abi::xen::DOMID_FIRST_RESERVED;
use xen_core::cpu::Arch;
use xen_core::domain::build::{self, BuildParams, DomainKind};
use xen_core::domain::pool::{one, Pool};
use xen_core::domain::set::{BootRings, DomainEntry, DomainSet, SchedInfo, MAX_DOMAINS};
use xen_core::domain::Domain;
use xen_core::evtchn::hypercall as event_channel;
use xen_core::mm::frame_alloc::{FrameAllocator, FramePool, FrameRange};
use xen_core::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};
use xen_core::regs::Regs;

use super::console::printk;
use super::machine::{DirectMap, HvMachine};
use super::mappings::{hypervisor_l4_slots, BootDirectMap};

/// A domU's memory when its command line has no `mem=`.
pub const DEFAULT_DOMU_MEM: u64 = 16 << 20;

/// The most ports a domU may use (Xen's default `max_event_channels` for a domU is 1023).
pub const DOMU_MAX_PORT: u32 = 1023;

/// The value of `key=` among the words of `cmdline`.
fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// How many domUs boot module `module` asks for: its `copies=` (1 to [`MAX_DOMAINS`]; 1 without
/// it or when it is not a number in range, which is reported).
pub fn copies(pool: &Pool, module: usize) -> u32 {
    let Some(bm) = pool.modules.get(module) else {
        return 0;
    };
    xen_core::cmdline::copies(&bm.string, MAX_DOMAINS as u32).unwrap_or_else(|one| {
        let path = xen_core::cmdline::split_image_name(&bm.string).0;
        printk!("ERR: boot module {module} ({path}): bad copies= (1 to {MAX_DOMAINS}): one domU\n");
        one
    })
}

/// Builds a domU from boot module `module` into a free slot: copy `copy` of the module's
/// `copies=` (its name gets the copy's number, from 1), or `None` for a module built once. A
/// module that cannot be built is refused with a message naming why; the caller goes on with the
/// others.
pub fn build(
    m: &mut HvMachine,
    pool: &mut Pool,
    doms: &mut DomainSet,
    module: usize,
    copy: Option<u32>,
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
    let vcpus = match option(cmdline, "vcpus") {
        Some(v) => match xen_core::cmdline::parse_vcpus(v, xen_core::domain::MAX_VCPUS) {
            Some(n) => n,
            None => {
                refuse(format_args!(
                    "bad vcpus={v} (1 to {})",
                    xen_core::domain::MAX_VCPUS
                ));
                return Err(());
            }
        },
        None => 1,
    };
    let nr_pages = mem / 4096;
    // Its initrd: the next module, when that one says `initrd` (`cmdline::is_initrd_module`).
    let initrd: &[u8] = match pool.modules.get(module + 1) {
        Some(rd) if xen_core::cmdline::is_initrd_module(&rd.string) => {
            match BootDirectMap.read(rd.start, rd.len) {
                Some(b) if !b.is_empty() => b,
                Some(_) => {
                    refuse(format_args!(
                        "its initrd (boot module {}) is empty",
                        module + 1
                    ));
                    return Err(());
                }
                None => {
                    refuse(format_args!(
                        "its initrd (boot module {}) is not readable through the direct map",
                        module + 1
                    ));
                    return Err(());
                }
            }
        }
        _ => &[],
    };
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
            for c in n.chars().take(if copy.is_some() { 28 } else { 31 }) {
                let _ = name.push(c);
            }
            if let Some(c) = copy {
                let _ = core::fmt::write(&mut name, format_args!("{c}"));
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
    let _ = m.mem.zero(shared_info.maddr(), 4096);
    let mut dom = Domain::new(id, false, nr_pages, nr_pages, shared_info, Mfn(0));
    dom.set_max_vcpus(vcpus);
    // Its place among the boot-time domUs, for dom0 (`BootHandle`).
    let (index, count) = xen_core::cmdline::boot_place(
        pool.modules.iter().map(|m| m.string.as_str()),
        module,
        copy,
        MAX_DOMAINS as u32,
    );
    dom.handle = hypercall_abi::domctl::BootHandle { index, count }.to_handle();
    // The xenstore and console channels, unbound for dom0 (ports 1 and 2 of a new domain).
    let mut ports_ok = Ok((0, 0));
    doms.install(
        slot,
        DomainEntry {
            dom: dom.clone(),
            sched: SchedInfo {
                weight: xen_core::sched::DEFAULT_WEIGHT,
                ..SchedInfo::default()
            },
            name: name.clone(),
            module,
            copy,
            rings: None,
            destroy: false,
            reported: false,
        },
        DOMU_MAX_PORT,
    );
    // Its first channel page (Xen's `evtchn_init`) and the two ports, from the pool.
    if let Some((g, ports)) = doms.both_mut(slot) {
        ports_ok = event_channel::init_ports(m, pool, ports).and_then(|()| {
            let s = event_channel::alloc_unbound_for(m, pool, &g.dom, ports, 0)?;
            let c = event_channel::alloc_unbound_for(m, pool, &g.dom, ports, 0)?;
            Ok((s, c))
        });
    }
    // A build that stops from here on gives the channel pages back with the slot.
    let unports = |m: &mut HvMachine, pool: &mut Pool, doms: &mut DomainSet| {
        if let Some((_, ports)) = doms.both_mut(slot) {
            event_channel::release_ports(m, pool, ports);
        }
    };
    let Ok((store_evtchn, console_evtchn)) = ports_ok else {
        unports(m, pool, doms);
        doms.remove(slot);
        let _ = pool.frames.free(one(shared_info));
        refuse(format_args!("no event channels"));
        return Err(());
    };

    let Some(image) = BootDirectMap.read(bm.start, bm.len) else {
        unports(m, pool, doms);
        doms.remove(slot);
        let _ = pool.frames.free(one(shared_info));
        refuse(format_args!("not readable through the direct map"));
        return Err(());
    };
    let params = BuildParams {
        image,
        initrd,
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
        let _ = DirectMap::new().write_u64(Maddr(m2p_base + mfn.0 * 8), pfn.0);
    }) {
        Ok(b) => b,
        Err(e) => {
            unports(m, pool, doms);
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
        unports(m, pool, doms);
        doms.remove(slot);
        m.mm.clear_given(pages);
        let _ = pool.frames.free(pages);
        let _ = pool.frames.free(one(shared_info));
        return Err(());
    }
    // Its grant table: one shared frame and the active entries' frames for it, as Xen's
    // `grant_table_init`; the table takes more from the pool when the domain grows it.
    if let Err(e) = doms.grants[slot].init(
        &mut m.mm,
        &mut m.mem,
        id,
        &mut |mem| pool.take(mem, 0, None),
        xen_core::gnttab::MAX_GRANT_FRAMES,
    ) {
        refuse(format_args!("no grant table: {e:?}"));
        m.mm.relinquish_domain(&mut m.mem, &mut dom);
        for &f in doms.grants[slot].frames() {
            m.mm.release_xen(one(f));
            FramePool::give_back(pool, &mut m.mem, f);
        }
        doms.grants[slot].reset();
        unports(m, pool, doms);
        doms.remove(slot);
        m.mm.clear_given(pages);
        let _ = pool.frames.free(pages);
        let _ = pool.frames.free(one(shared_info));
        return Err(());
    }
    let grant_taken = doms.grants[slot].frames().len() as u32;
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
    // Every vCPU starts with event upcalls masked (vCPUs 1.. until they unmask them).
    for vcpu in 0..dom.vcpus.len() as u32 {
        xen_core::shared_info::SharedInfoPage::of_domain_mut(m, &dom).set_upcall_mask(vcpu, true);
    }
    Arch::publish_time(m, &dom);
    let g = doms.guest_mut(slot).expect("installed above");
    g.dom = dom;
    g.dom.vcpu_mut().regs = Regs::guest_entry(built.entry, built.stack_top, built.start_info_va);
    g.rings = Some(rings);
    pool.record(slot, id, pages, shared_info, grant_taken);
    pool.next_domid += 1;
    super::context::reset_fpu(slot);
    printk!(
        "*** Built d{id} ({name}): {} MiB at mfn {:#x}, entry {:#x}, store port {store_evtchn}, console port {console_evtchn} ***\n",
        nr_pages >> 8,
        built.mfn_base.0,
        built.entry
    );
    if let Some(r) = built.layout.initrd {
        printk!(
            "d{id}: initrd of {} bytes (boot module {}) at {:#x}\n",
            r.end - r.start,
            module + 1,
            r.start
        );
    }
    Ok(slot)
}
