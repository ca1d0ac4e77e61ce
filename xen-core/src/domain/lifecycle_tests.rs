//! Host tests of the domain lifecycle (`domain/lifecycle.rs`) on the fake CPU over the two-domain
//! frame-table world: shutdown reports, destroy, zombies and reaping, rebuilding, dom0 told.

use hypercall_abi::sched::{SHUTDOWN_poweroff, SHUTDOWN_reboot};
use hypercall_abi::xen::VIRQ_DOM_EXC;

use super::lifecycle;
use super::pool::{Pool, INVALID_M2P_ENTRY};
use super::set::{DomainEntry, DomainSet, SchedInfo, MAX_PORT_2L};
use super::Shutdown;
use crate::cpu::Hv;
use crate::cpu_fake::FakeArch;
use crate::evtchn::hypercall::{bind_virq_for, init_ports};
use crate::hypercall::testing::FakeXenPages;
use crate::mm::frame_alloc::BootFrameAllocator;
use crate::mm::frame_table::testing::{base, range, Two, DATA, DOM_FRAMES, SELF};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};
use crate::regs::Regs;

/// Free frames of the two-domain machine (80..128), but the two domains' first event-channel
/// pages.
const FREE: u64 = 48 - 2;
/// Frames domain 1 holds: its pages, its shared_info and its event-channel page (no grant
/// frames in this world).
const D1_FRAMES: u64 = DOM_FRAMES + 2;

/// The two-domain world in a domain set on the fake CPU: dom0 (slot 0, running, `VIRQ_DOM_EXC`
/// bound, upcalls masked) and domain 1 (slot 1), whose memory the pool records. `map_d1` has dom0
/// map one of domain 1's frames first (a reference that outlives domain 1).
fn world(map_d1: bool) -> (Hv<FakeArch>, Box<DomainSet>) {
    let mut t = Two::new();
    if map_d1 {
        let ptr = ((base(0) + 3) << 12) + 10 * 8;
        let (rc, _) = t.mmu(0, &[(ptr, ((base(1) + 10) << 12) | DATA)], 1);
        assert_eq!(rc, 0);
    }
    let mut set = Box::new(DomainSet::new());
    for (slot, dom) in t.doms.iter().enumerate() {
        let g = DomainEntry {
            dom: dom.clone(),
            sched: SchedInfo::default(),
            name: heapless::String::try_from(if slot == 0 { "Domain-0" } else { "d1" }).unwrap(),
            module: slot,
            copy: None,
            rings: None,
            destroy: false,
            reported: false,
        };
        set.install(slot, g, MAX_PORT_2L);
    }
    let mut arch = FakeArch::new(t.m);
    arch.l4 = t.doms[0].vcpu().l4;
    // Event-channel pages come from the pool, through the frame table, as in the hypervisor.
    arch.m.xen_pages = FakeXenPages::Pool;
    let mut frames = BootFrameAllocator::empty();
    frames.free(range(80, 128)).unwrap();
    let mut pool = Pool::new(frames, Mfn(4).maddr().0);
    for slot in 0..2 {
        let (_, ports) = set.both_mut(slot).unwrap();
        init_ports(&mut arch, &mut pool, ports).unwrap();
    }
    let (g, ports) = set.both_mut(0).unwrap();
    bind_virq_for(&mut arch, &mut pool, &g.dom, ports, VIRQ_DOM_EXC).unwrap();
    crate::shared_info::set_upcall_mask(&mut arch, &g.dom, true);
    pool.record(
        1,
        1,
        range(base(1), base(1) + DOM_FRAMES),
        Mfn(7),
        Default::default(),
    );
    assert_eq!(pool.free_frames(), FREE);
    (Hv::new(arch, t.info, pool, 0), set)
}

fn dom0_notified(hv: &Hv<FakeArch>, set: &DomainSet) -> bool {
    crate::shared_info::upcall_pending(&hv.arch, &set.guest(0).unwrap().dom)
}

fn m2p(hv: &Hv<FakeArch>, mfn: u64) -> u64 {
    hv.arch.read_u64(Maddr(Mfn(4).maddr().0 + mfn * 8)).unwrap()
}

#[test]
fn a_crashed_domain_is_reported_once_with_its_registers_and_dom0_is_told() {
    let (mut hv, mut set) = world(false);
    let g = set.guest_mut(1).unwrap();
    g.dom.shutdown = Some(Shutdown::Crashed("test crash"));
    g.dom.vcpu_mut().regs.rip = 0xdead_beef;
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
    assert!(hv.arch.out.contains("domain 1 (d1) crashed: test crash\n"));
    assert!(
        hv.arch.out.contains("RIP: 0000:00000000deadbeef"),
        "{}",
        hv.arch.out
    );
    assert!(set.guest(1).unwrap().reported);
    assert!(dom0_notified(&hv, &set));
    let printed = hv.arch.out.len();
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
    assert_eq!(hv.arch.out.len(), printed, "reported once");
    assert!(
        set.guest(1).is_some(),
        "a shut-down domain stays until dom0 destroys it"
    );
}

#[test]
fn destroying_a_domain_gives_every_frame_back_to_the_pool() {
    let (mut hv, mut set) = world(false);
    set.guest_mut(1).unwrap().destroy = true;
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
    assert!(set.guest(1).is_none(), "its slot is free");
    assert_eq!(hv.pool.free_frames(), FREE + D1_FRAMES);
    assert!(hv.pool.zombies().is_empty());
    assert!(hv.pool.alloc(1).is_none());
    assert!(hv
        .arch
        .out
        .contains("domain 1 (d1) destroyed: 0 s run, 0 frames still referenced\n"));
    assert!(hv.arch.out.contains(&format!(
        "domain 1: all {D1_FRAMES} frames returned to the free pool ({} free)\n",
        FREE + D1_FRAMES
    )));
    assert_eq!(m2p(&hv, base(1) + 3), INVALID_M2P_ENTRY);
    // The mappers' TLBs at the destruction, and again when the frames return to the pool (a
    // mapping dropped since, by a PTE write without a flush, may still be cached).
    assert_eq!(hv.arch.tlb_flushes, 2, "the mappers' TLBs");
    assert!(dom0_notified(&hv, &set));
    assert!(hv.arch.rebuilt.is_empty());
}

#[test]
fn a_frame_still_mapped_keeps_a_dead_domain_a_zombie_until_it_is_unmapped() {
    let (mut hv, mut set) = world(true);
    set.guest_mut(1).unwrap().destroy = true;
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
    assert!(set.guest(1).is_none());
    assert!(hv.arch.out.contains("1 frames still referenced"));
    assert_eq!(hv.pool.zombies().len(), 1);
    // Its event-channel page is the hypervisor's alone: back at once.
    assert_eq!(
        hv.pool.free_frames(),
        FREE + 1,
        "nothing but the channel page back while dom0 maps a frame"
    );
    lifecycle::reap(&mut hv);
    assert_eq!(hv.pool.free_frames(), FREE + 1);
    // dom0 maps its own frame there again: the last reference goes.
    let ptr = ((base(0) + 3) << 12) + 10 * 8;
    let req = [hypercall_abi::xen::MmuUpdate {
        ptr,
        val: ((base(0) + 10) << 12) | DATA,
    }];
    let rc = crate::hypercall::testing::with_set_ctx(&mut hv.arch.m, &mut set, 0, |ctx| {
        crate::mm::mmu::do_mmu_update(
            ctx,
            crate::mm::mmu::Batch::Slice(&req),
            1,
            crate::guest_access::GuestPtr::new(0),
            SELF as u32,
        )
    });
    assert_eq!(rc, Ok(0));
    lifecycle::reap(&mut hv);
    assert!(hv.pool.zombies().is_empty());
    assert_eq!(hv.pool.free_frames(), FREE + D1_FRAMES);
}

#[test]
fn a_domain_that_rebooted_is_built_again_as_the_same_copy_of_its_boot_module() {
    let (mut hv, mut set) = world(false);
    let g = set.guest_mut(1).unwrap();
    g.dom.shutdown = Some(Shutdown::Requested(SHUTDOWN_reboot));
    g.copy = Some(3);
    g.destroy = true;
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
    assert!(hv
        .arch
        .out
        .contains("domain 1 (d1) shut down (code 1): reboot\n"));
    assert!(hv
        .arch
        .out
        .contains("domain 1 rebooted: building it again from boot module 1\n"));
    assert_eq!(hv.arch.rebuilt, [(1, Some(3))]);
}

#[test]
#[should_panic(expected = "machine stopped: Poweroff")]
fn dom0_shutting_down_takes_the_machine_with_it() {
    let (mut hv, mut set) = world(false);
    set.guest_mut(0).unwrap().dom.shutdown = Some(Shutdown::Requested(SHUTDOWN_poweroff));
    lifecycle::stopped_domains(&mut hv, &mut set, &Regs::default());
}

#[test]
#[should_panic(expected = "while the CPU runs on its page tables")]
fn a_domain_is_never_destroyed_under_the_cpu() {
    let (mut hv, mut set) = world(false);
    hv.arch.l4 = set.guest(1).unwrap().dom.vcpu().l4;
    lifecycle::destroy(&mut hv, &mut set, 1);
}

#[test]
fn shutdown_codes_have_xens_names() {
    assert_eq!(lifecycle::shutdown_name(SHUTDOWN_poweroff), "poweroff");
    assert_eq!(lifecycle::shutdown_name(SHUTDOWN_reboot), "reboot");
    assert_eq!(lifecycle::shutdown_name(99), "unknown");
}

#[test]
fn a_channel_page_comes_from_the_pool_as_the_hypervisors_and_a_dry_pool_takes_nothing() {
    let (mut hv, mut set) = world(false);
    // Domain 1's first page is the hypervisor's in the frame table, not free, not the domain's.
    let page = set.ports(1).page_frames().next().unwrap();
    let owner = |hv: &mut Hv<FakeArch>, f: Mfn| {
        let (mm, _) = crate::ctx::Machine::mm(&mut hv.arch).unwrap();
        mm.frames.get(f).unwrap().owner()
    };
    assert_eq!(owner(&mut hv, page), crate::mm::frame_table::Owner::Xen);
    // A table that needs a page from a dry pool: -ENOMEM, nothing taken.
    let mut dry = BootFrameAllocator::empty();
    let (g, ports) = set.both_mut(1).unwrap();
    let _ = ports.take_pages();
    ports.reset(1, MAX_PORT_2L);
    assert_eq!(
        init_ports(&mut hv.arch, &mut dry, ports),
        Err(hypercall_abi::Errno::ENOMEM)
    );
    assert_eq!(
        bind_virq_for(&mut hv.arch, &mut dry, &g.dom, ports, VIRQ_DOM_EXC),
        Err(hypercall_abi::Errno::ENOMEM)
    );
    assert_eq!(ports.nr_pages(), 0);
    // The page taken out above goes back to the pool like a dead domain's.
    let free = hv.pool.free_frames();
    let (mm, mem) = crate::ctx::Machine::mm(&mut hv.arch).unwrap();
    assert!(crate::ctx::give_back_xen_frame(mm, mem, &mut hv.pool, page));
    assert_eq!(hv.pool.free_frames(), free + 1);
    assert_eq!(owner(&mut hv, page), crate::mm::frame_table::Owner::Free);
}
