//! Building and starting dom0 on this machine: frames, the M2P, shared_info, the domain builder,
//! then the boot-time domUs and the first entry into dom0.

use xen_core::cpu::Arch;
use xen_core::domain::build::{self, BuildParams, DomainKind};
use xen_core::domain::set::{DomainEntry, SchedInfo, MAX_PORT_2L};
use xen_core::domain::{Domain, MachineInfo};
use xen_core::mm::frame_alloc::{BootFrameAllocator, FrameAllocator, FrameRange};
use xen_core::mm::frame_table::{Mm, MmConfig, Owner};
use xen_core::mm::{MachineMemory, MachineMemoryMut, Maddr, Mfn};
use xen_core::multiboot::{BootInfo, MemoryKind, MemoryMap, Module};
use xen_core::power::FailCode;
use xen_core::regs::Regs;

use super::console::printk;
use super::domu;
use super::machine::{DirectMap, HvMachine};
use super::mappings::{hypervisor_l4_slots, image_maddr_range, map_m2p, BootDirectMap};
use super::{dispatch, power};
use xen_core::domain::pool::{one, BootModule, Pool};

/// The CPU's physical address width (CPUID 0x80000008), 36 if it does not say.
fn physical_address_bits() -> u64 {
    let max = super::machine::native_cpuid(0x8000_0000, 0)[0];
    if max >= 0x8000_0008 {
        u64::from(super::machine::native_cpuid(0x8000_0008, 0)[0] & 0xff)
    } else {
        36
    }
}

/// Whether the CPU is an AMD (or Hygon) one of a family before 0x17 (CPUID 0 and 1).
fn amd_family_below_0x17() -> bool {
    let v = super::machine::native_cpuid(0, 0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&v[1].to_le_bytes());
    vendor[4..8].copy_from_slice(&v[3].to_le_bytes());
    vendor[8..].copy_from_slice(&v[2].to_le_bytes());
    let amd = &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine";
    let eax = super::machine::native_cpuid(1, 0)[0];
    let base = (eax >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    };
    amd && family < 0x17
}

/// An M2P entry for a frame no domain owns (`INVALID_M2P_ENTRY`).
const INVALID_M2P_ENTRY: u64 = u64::MAX;

fn refuse(why: core::fmt::Arguments<'_>) -> ! {
    printk!("ERR: {why}\n");
    power::fail(FailCode::BadBoot)
}

/// Builds dom0 from boot module `module` and runs it. Never returns: the run ends when dom0 shuts
/// down (or is refused, with a diagnostic that names the problem and a non-zero exit).
pub fn start(
    info: &BootInfo<'_>,
    map: MemoryMap<'_>,
    module: &Module<'_>,
    path: &str,
    cmdline: &str,
    nr_pages: u64,
) -> ! {
    super::platform::discover();
    super::ioapic::init_at_boot();
    match super::time::init() {
        Ok(t) => {
            // The local APIC in x2APIC mode once its timer is calibrated, where the CPU has it
            // (Xen 4.17 also wants an IOMMU for it, which one CPU does not need): its registers are MSRs, where the xAPIC's are an MMIO page, and
            // every interrupt's EOI and every timer arming is one access or two (under QEMU's
            // TCG each MMIO access leaves the translated block). Calibration read the timer's
            // count, which only the xAPIC page lets QEMU's `-icount` do; nothing reads it
            // again. Runs under `-icount` say `-cpu max,-x2apic` (Xen 4.17 reads the count),
            // and keep the xAPIC.
            let x2apic = super::apic::switch_to_x2apic().is_ok();
            printk!(
                "TSC: {} kHz, APIC timer: {} kHz, local APIC: {}\n",
                t.clock.tsc_hz / 1000,
                t.apic_timer_hz / 1000,
                if x2apic { "x2APIC" } else { "xAPIC" }
            )
        }
        Err(e) => refuse(format_args!("time: {e:?}")),
    }

    // Free memory: RAM minus the first MiB, the hypervisor image and every boot module.
    let image = image_maddr_range();
    let mut reserved: heapless::Vec<core::ops::Range<Maddr>, 40> = heapless::Vec::new();
    let _ = reserved.push(Maddr(image.start)..Maddr(image.end));
    for m in &info.modules {
        let _ = reserved.push(m.start..m.end);
    }
    let mut regions: heapless::Vec<xen_core::multiboot::MemoryRegion, 64> = heapless::Vec::new();
    for r in map.iter() {
        if regions.push(r).is_err() {
            refuse(format_args!("memory map: more than 64 regions"));
        }
    }
    let mut frames = match BootFrameAllocator::new(regions.iter().copied(), &reserved) {
        Ok(a) => a,
        Err(e) => refuse(format_args!("memory map: {e}")),
    };

    let max_ram_page = map
        .iter()
        .filter(|r| r.kind == MemoryKind::Usable)
        .map(|r| (r.base.0 + r.len) >> 12)
        .max()
        .unwrap_or(0);
    let mut e820 = heapless::Vec::new();
    for r in map.iter() {
        let _ = e820.push((r.base.0, r.len, r.kind.e820_type()));
    }
    let mut mem = DirectMap::new();

    // The read-only machine-to-phys table every PV guest can read at MACH2PHYS_VIRT_START.
    let m2p_frames = (max_ram_page * 8).div_ceil(4096);
    let Some(m2p) = frames.alloc_contiguous(m2p_frames, 1) else {
        refuse(format_args!(
            "no memory for the M2P table ({m2p_frames} frames)"
        ));
    };
    let invalid = [0xffu8; 4096];
    for i in 0..m2p_frames {
        let _ = mem.write(Mfn(m2p.0 + i).maddr(), &invalid);
    }
    let _ = INVALID_M2P_ENTRY;
    // The tables that map it come from one run, marked the hypervisor's below like the table
    // itself (nothing a domain could ever be given: a guest holding one of them would write
    // PTEs every L4 shares). At most an L3, the L2s and the L1s, one more of each for a run that
    // straddles a boundary.
    let m2p_l1s = m2p_frames.div_ceil(512) + 1;
    let m2p_tables = 2 + m2p_l1s.div_ceil(512) + 1 + m2p_l1s;
    let Some(m2p_pt) = frames.alloc_contiguous(m2p_tables, 1) else {
        refuse(format_args!(
            "no memory for the M2P table's mappings ({m2p_tables} frames)"
        ));
    };
    let mut next_table = m2p_pt.0;
    let mut table = || {
        next_table += 1;
        (next_table <= m2p_pt.0 + m2p_tables).then_some(Mfn(next_table - 1))
    };
    if map_m2p(&mut mem, &mut table, m2p, m2p_frames).is_none() {
        refuse(format_args!("cannot map the M2P table"));
    }

    let Some(shared_info) = frames.alloc_frame() else {
        refuse(format_args!("no memory for dom0's shared_info"));
    };
    let _ = mem.zero(shared_info.maddr(), 4096);

    // The frame table: one 16-byte entry per frame below max_ram_page.
    let ft_frames = (max_ram_page * 16).div_ceil(4096);
    let Some(ft) = frames.alloc_contiguous(ft_frames, 1) else {
        refuse(format_args!(
            "no memory for the frame table ({ft_frames} frames)"
        ));
    };
    let storage = mem.take_frame_table(ft, max_ram_page as usize);
    let cfg = MmConfig {
        m2p: m2p.maddr(),
        xen_l4_slots: hypervisor_l4_slots(),
        io_limit: Mfn(1 << (physical_address_bits() - 12)),
    };
    // No hypervisor entry of a guest L4 may be global: through a guest's self-map of its L4 an
    // entry of those slots is read as a leaf, and a context switch keeps the TLB's global
    // entries when the domain left has none of its own (`Cr3Load::Switch`).
    assert!(
        cfg.xen_l4_slots
            .iter()
            .all(|e| e & xen_core::mm::frame_table::pte::GLOBAL == 0),
        "a global entry among the hypervisor's L4 slots"
    );
    let mut mm = Mm::new(storage, cfg);
    // Below max_ram_page, what is not RAM is I/O memory dom0 may map (the first MiB: VGA, BIOS;
    // the holes of the e820 map); the hypervisor's own frames are Xen's. The local APIC is the
    // hypervisor's and withheld from every domain.
    let mut ram_end_of_previous = 0u64;
    let io = |mm: &mut Mm<'static>, start: u64, end: u64| {
        if start < end {
            let range = FrameRange {
                start: Mfn(start),
                end: Mfn(end.min(max_ram_page)),
            };
            if range.start < range.end {
                let _ = mm.assign(range, Owner::Io);
            }
        }
    };
    let mut usable: heapless::Vec<(u64, u64), 64> = heapless::Vec::new();
    for r in regions.iter().filter(|r| r.kind == MemoryKind::Usable) {
        let _ = usable.push((r.base.0.div_ceil(4096), (r.base.0 + r.len) / 4096));
    }
    usable.sort_unstable();
    for &(first, end) in &usable {
        io(&mut mm, ram_end_of_previous, first);
        ram_end_of_previous = ram_end_of_previous.max(end);
    }
    io(&mut mm, 0, 0x100);
    for range in [
        (image.start / 4096, image.end.div_ceil(4096)),
        (m2p.0, m2p.0 + m2p_frames),
        (m2p_pt.0, m2p_pt.0 + m2p_tables),
        (ft.0, ft.0 + ft_frames),
    ]
    .into_iter()
    .chain(
        // The boot modules: domains are built (and rebuilt) from them.
        info.modules
            .iter()
            .map(|m| (m.start.0 / 4096, m.end.0.div_ceil(4096).min(max_ram_page))),
    ) {
        // Frame by frame: a module sharing a frame with another one is still marked.
        for m in range.0..range.1 {
            let _ = mm.assign(one(Mfn(m)), Owner::Xen);
        }
    }
    // As Xen's `dom0_setup_permissions` (the MSI window, local APIC included, is withheld by
    // `Mm::new`): the HyperTransport window is withheld on AMD CPUs before family 0x17, and the
    // I/O APIC and HPET are mapped read-only for dom0 (`mmio_ro_ranges`).
    if amd_family_below_0x17() {
        let ht = FrameRange {
            start: Mfn(0xfd_0000_0000 >> 12),
            end: Mfn(1 << 28),
        };
        let _ = mm.deny_io(ht);
    }
    // The I/O APIC where the MADT puts it (`platform.rs`; QEMU's 0xFEC00000 without ACPI).
    let ioapic = super::platform::ioapic_base() >> 12;
    let _ = mm.mark_mmio_ro(FrameRange {
        start: Mfn(ioapic),
        end: Mfn(ioapic + 1),
    });
    let _ = mm.mark_mmio_ro(FrameRange {
        start: Mfn(0xfed00),
        end: Mfn(0xfed01),
    });

    // The kernel image, read where the boot loader left it. The frames it occupies are reserved
    // above, so the builder never writes them while this slice is alive.
    let Some(image_bytes) = BootDirectMap.read(module.start, module.len() as usize) else {
        refuse(format_args!(
            "dom0 kernel {path}: not readable through the direct map"
        ));
    };
    // Its initrd: module 1 when that one says `initrd` (`cmdline::is_initrd_module`).
    let initrd = match info.modules.get(1) {
        Some(m) if xen_core::cmdline::is_initrd_module(m.string) => {
            match BootDirectMap.read(m.start, m.len() as usize) {
                Some(b) if !b.is_empty() => b,
                _ => refuse(format_args!(
                    "dom0's initrd (boot module 1) is empty or not readable"
                )),
            }
        }
        _ => &[],
    };
    let params = BuildParams {
        image: image_bytes,
        initrd,
        cmdline,
        nr_pages,
        kind: DomainKind::Dom0,
        hypervisor_l4_slots: hypervisor_l4_slots(),
        shared_info,
    };
    let m2p_base = m2p.maddr().0;
    let built = match build::build(&mut mem, &mut frames, &params, |mfn, pfn| {
        let _ = DirectMap::new().write_u64(Maddr(m2p_base + mfn.0 * 8), pfn.0);
    }) {
        Ok(b) => b,
        Err(e) => refuse(format_args!("dom0 kernel {path} refused: {e}")),
    };
    printk!("*** Building a PV Dom0 ***\n");
    printk!("{}", built.layout.arrangement());
    printk!(" ENTRY ADDRESS: {:016x}\n", built.entry);

    let mut dom = Domain::new(0, true, nr_pages, u32::MAX.into(), shared_info, built.l4);
    dom.vcpu_mut().regs = Regs::guest_entry(built.entry, built.stack_top, built.start_info_va);
    // `vcpus=<n>` on dom0's module line (Xen's `dom0_max_vcpus`): vCPUs 1.. wait for
    // `VCPUOP_initialise` and `VCPUOP_up`.
    let vcpus = xen_core::cmdline::params(cmdline)
        .find(|p| p.name == "vcpus")
        .map(|p| p.value.unwrap_or(""));
    match vcpus.map(|v| xen_core::cmdline::parse_vcpus(v, xen_core::domain::MAX_VCPUS)) {
        None => {}
        Some(Some(n)) => dom.set_max_vcpus(n),
        Some(None) => refuse(format_args!(
            "bad vcpus= on dom0's command line (1 to {})",
            xen_core::domain::MAX_VCPUS
        )),
    }
    // The frame table learns dom0's frames and validates (and pins) its bootstrap page tables,
    // so that from now on every change to them goes through the validated hypercalls.
    if let Err(e) = xen_core::domain::build::seed_domain(&mut mm, &mut mem, &mut dom, &built) {
        refuse(format_args!(
            "dom0's initial page tables did not validate: {e}"
        ));
    }
    let mut m = HvMachine {
        mem,
        e820,
        mm,
        cr3: 0,
        cr3_owner: None,
        preempt: super::machine::PreemptAt::new(),
        loaded: super::machine::Loaded::UNKNOWN,
        segs_to_load: None,
    };
    // Guests start with event upcalls masked, and with the time published in shared_info.
    // Every vCPU starts with event upcalls masked (vCPUs 1.. until they unmask them).
    for vcpu in 0..dom.vcpus.len() as u32 {
        xen_core::shared_info::SharedInfoPage::of_domain_mut(&mut m, &dom)
            .set_upcall_mask(vcpu, true);
    }
    Arch::publish_time(&mut m, &dom);
    super::context::capture_initial_fpu();
    let heap = super::heap::warm_up();
    printk!("x86 decoder ready: {} KiB of the boot heap\n", heap / 1024);
    let mut name = heapless::String::new();
    let _ = name.push_str("Domain-0");
    let mut doms = dispatch::DOMS.lock();
    doms.install(
        0,
        DomainEntry {
            dom,
            sched: SchedInfo {
                weight: xen_core::sched::DEFAULT_WEIGHT,
                ..SchedInfo::default()
            },
            name,
            module: 0,
            copy: None,
            rings: None,
            destroy: false,
            reported: false,
        },
        MAX_PORT_2L,
    );
    super::context::reset_fpu(0);
    // dom0's first event-channel page (more come from the pool as it binds ports).
    if let Some((_, ports)) = doms.both_mut(0) {
        if let Err(e) = xen_core::evtchn::hypercall::init_ports(&mut m, &mut frames, ports) {
            refuse(format_args!("dom0's event channels: {e:?}"));
        }
    }
    // dom0's grant table: its first frame (more come from the pool as it grows it).
    if let Err(e) = doms.grants[0].init(
        &mut m.mm,
        &mut m.mem,
        0,
        &mut |_| frames.alloc_frame(),
        xen_core::gnttab::MAX_GRANT_FRAMES,
    ) {
        refuse(format_args!("dom0's grant table: {e:?}"));
    }

    // Every further boot module becomes a domU; one that cannot be built is refused and the
    // others still boot.
    let mut pool = Pool::new(frames, m2p_base);
    pool.dom0_table_frames_at_boot =
        (doms.ports(0).nr_pages() + doms.grants[0].frames().len()) as u32;
    for module in &info.modules {
        let mut string = heapless::String::new();
        for c in module.string.chars() {
            if string.push(c).is_err() {
                break;
            }
        }
        let _ = pool.modules.push(BootModule {
            start: module.start,
            len: module.len() as usize,
            string,
        });
    }
    printk!("free memory before domUs: {} frames\n", pool.free_frames());
    // What each domain costs the hypervisor besides its own pages: the slot's static state
    // (paid for every slot, used or not) and, per domain, shared_info, the grant-table frames and
    // the event-channel pages it took ("all N frames returned" counts them when it is gone).
    {
        use core::mem::size_of;
        let entry = size_of::<Option<DomainEntry>>();
        let ports = size_of::<xen_core::evtchn::PortTable>();
        let grants = size_of::<xen_core::gnttab::GrantTable>();
        let save = super::context::SAVE_BYTES_PER_SLOT;
        let alloc = size_of::<Option<xen_core::domain::pool::Alloc>>();
        printk!(
            "memory per domain slot: {} bytes static (domain {entry}, event channels {ports}, grant table {grants}, vCPU save areas {save}, pool record {alloc}), {} slots\n",
            entry + ports + grants + save + alloc,
            xen_core::domain::set::MAX_DOMAINS
        );
    }
    for i in 1..pool.modules.len() {
        // An initrd module belongs to the kernel before it; one after another initrd has none.
        if xen_core::cmdline::is_initrd_module(&pool.modules[i].string) {
            if xen_core::cmdline::is_initrd_module(&pool.modules[i - 1].string) {
                printk!(
                    "ERR: boot module {i} ({}): an initrd with no kernel before it: ignored\n",
                    xen_core::cmdline::split_image_name(&pool.modules[i].string).0
                );
            }
        } else {
            // (Reports a bad `copies=`.)
            domu::copies(&pool, i);
        }
    }
    // The boot-time domUs, in the order their places (`BootHandle`) count them; after a copy
    // that cannot be built, the module's later copies are not tried.
    // (Looked up afresh for each, as the builder needs the pool.)
    let mut failed = None;
    for k in 0.. {
        let strings = pool.modules.iter().map(|m| m.string.as_str());
        let max = xen_core::domain::set::MAX_DOMAINS as u32;
        let Some((module, copy)) = xen_core::cmdline::boot_domus(strings, max).nth(k) else {
            break;
        };
        if failed == Some(module) {
            continue;
        }
        if domu::build(&mut m, &mut pool, &mut doms, module, copy).is_err() && copy.is_some() {
            failed = Some(module);
        }
    }
    drop(doms);
    // The TSC since power-on, read as dom0 is about to run: under `-icount shift=0` it counts
    // the instructions of the whole boot (firmware included), the same on every machine.
    printk!(
        "boot: dom0 starts at TSC {} ({} ms of system time)\n",
        super::tsc::rdtsc_ordered(),
        super::time::now() / 1_000_000
    );
    printk!("Std. Loglevel: All\n");
    printk!("*** Serial input to DOM0 (type 'CTRL-a' three times to switch input)\n");
    let pv_cr4_writable = xen_core::emulate::pv_cr4_writable(super::machine::native_cpuid);
    let info = MachineInfo {
        max_ram_page,
        pv_cr4_writable,
    };
    dispatch::run(m, info, pool, 0)
}
