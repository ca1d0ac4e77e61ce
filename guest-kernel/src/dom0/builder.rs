//! dom0's PV domain builder, libxenguest's job: makes a domU from a kernel image through Xen's
//! toolstack hypercalls, as `xl create` does on Xen 4.17.
//!
//! With `build-domu` on dom0's command line, dom0 builds its boot module (`start_info.mod_start`,
//! the "initrd" the boot loader gave it) as a domU before its services start; the domU's command
//! line is what follows a `--` word on dom0's (its `mem=` sets its memory, 16 MiB if absent). The
//! steps are libxl's and libxenguest's (`tools/libs/guest/xg_dom_*.c`):
//!
//! 1. the image is checked and the start-of-day layout computed before anything is created
//!    (`xen_core::domain::build::plan`: the same ELF and note checks and the same layout the
//!    hypervisor's own builder uses, as Xen's libelf is shared by Xen and libxenguest);
//! 2. `XEN_DOMCTL_createdomain` (paused, PV), `XEN_DOMCTL_max_vcpus` (Xen 4.17 still makes the
//!    vCPUs there), `XEN_DOMCTL_max_mem`, then
//!    `XENMEM_populate_physmap` for the domU gives its frames (any machine frames: the p2m list
//!    says which) and records their M2P entries;
//! 3. two unbound ports in the domU for dom0 (`EVTCHNOP_alloc_unbound`): xenstore and console;
//! 4. dom0 maps each frame it fills (`update_va_mapping_otherdomain`, one window at a time):
//!    first it zeroes every frame of the initial region (Xen does not scrub what a live domain
//!    freed, so a fresh frame may hold another domain's data; libxenguest clears what it
//!    allocates the same way), then writes the image, the hypercall page, the bootstrap page
//!    tables (`pagetables::write_entries`, with each pfn's machine frame from the p2m list),
//!    `start_info` and the p2m list. The domU's other frames are its own to clear, as under
//!    libxenguest;
//! 5. the domU's shared_info page is set up as libxenguest's `shared_info_x86_64` sets it: every
//!    legacy vCPU's `evtchn_upcall_mask` set (Xen leaves the page zeroed, upcalls unmasked; a
//!    kernel starts with them masked, as Xen's own dom0 does);
//! 6. the L4 is pinned for the domU (`MMUEXT_PIN_L4_TABLE` with the domU as page owner: Xen
//!    validates every table, so a wrong entry is refused here, not at the domU's first fault);
//! 7. `XEN_DOMCTL_setvcpucontext` (entry, boot stack, `start_info` in RSI, CR3) and
//!    `XEN_DOMCTL_unpausedomain`.
//!
//! Any failure after step 2 destroys the domain (libxl's `domcreate_complete`). The domU's ring
//! frames and ports are returned for the toolstack, which on Xen cannot read them from HVM
//! parameters (a PV domain has none; this project's hypervisor sets them for the domUs it builds
//! itself, as a dom0less Xen does).
//!
//! On this project's hypervisor `XEN_DOMCTL_createdomain` is not implemented (-ENOSYS): its
//! domUs come from its boot modules.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::mem::{offset_of, size_of};

use guest_kernel::cmdline::{parse_mem_kib, Cmdline};
use guest_kernel::introduce::RingParams;
use hypercall_abi::arch_x86_64::{
    xen_pfn_to_cr3, VGCF_in_kernel, VGCF_online, VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_DS,
    FLAT_KERNEL_SS,
};
use hypercall_abi::domctl::{
    BootHandle, XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain, XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_max_mem, XEN_DOMCTL_max_vcpus, XEN_DOMCTL_setvcpucontext, XEN_DOMCTL_unpausedomain,
    XenDomctl, XenDomctlCreatedomain, XenDomctlGetdomaininfo, XenDomctlMaxMem, XenDomctlMaxVcpus,
    XenDomctlVcpucontext,
};
use hypercall_abi::event_channel::EvtchnAllocUnbound;
use hypercall_abi::memory::{PopulatePhysmap, XenMemoryReservation};
use hypercall_abi::xen::{
    MmuextOp, StartInfo, VcpuInfo, MAX_GUEST_CMDLINE, MMUEXT_PIN_L4_TABLE, XEN_LEGACY_MAX_VCPUS,
};
use hypercall_abi::HypercallError;
use ring_drivers::SharedPage;
use xen_core::domain::build::{
    layout::Layout, pagetables, plan, write_hypercall_page, BuildError, BuildParams, DomainKind,
    START_INFO_MAGIC,
};
use xen_core::mm::Mfn;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::kernel::hypercall as hc;
use crate::kernel::ring_page::{self, MapError};

const PAGE: usize = 4096;

/// A domU's memory when its command line has no `mem=`.
const DEFAULT_MEM_KIB: u64 = 16 << 10;

/// What libxl adds to a domain's memory for its maximum (`LIBXL_MAXMEM_CONSTANT`, KiB).
const MAXMEM_SLACK_KIB: u64 = 1024;

/// Highest event-channel port a built domU may use (libxl's default `event_channels`).
const MAX_EVTCHN_PORT: u32 = 1023;

/// Extents per `XENMEM_populate_physmap` call.
const POPULATE_CHUNK: usize = 512;

/// A domU dom0 built: what the toolstack needs to introduce it.
#[derive(Clone, Debug)]
pub struct Built {
    /// Its domain id.
    pub id: u16,
    /// Its name (`name=` on its command line, or `domain<id>`).
    pub name: String,
    /// Its xenstore and console rings.
    pub rings: RingParams,
}

/// Why a domU could not be built.
#[derive(Debug)]
pub enum Error {
    /// dom0 has no boot module to build from.
    NoImage,
    /// `mem=` is not a size, or too small or large.
    Mem(String),
    /// The image or layout was refused (nothing created).
    Image(BuildError),
    /// A hypercall failed: which step, and its result.
    Hypercall(&'static str, i64),
    /// A frame of the domU could not be mapped.
    Map(u64, MapError),
    /// dom0 has not the memory for the domU's p2m list.
    NoMemory,
    /// The image asks for its p2m list outside the initial region (`XEN_ELFNOTE_INIT_P2M`,
    /// Linux's), which this builder does not lay out.
    InitP2m,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoImage => f.write_str("no boot module to build from"),
            Error::Mem(m) => write!(f, "mem={m}: not a usable size"),
            Error::Image(e) => write!(f, "image refused: {e}"),
            Error::Hypercall(what, rc) => match HypercallError::check(*rc) {
                Err(e) => write!(f, "{what}={e}"),
                Ok(v) => write!(f, "{what} returned {v}"),
            },
            Error::Map(mfn, e) => write!(f, "mapping frame {mfn:#x}: {e}"),
            Error::NoMemory => f.write_str("dom0 has no memory for the p2m list"),
            Error::InitP2m => f.write_str(
                "the kernel's INIT_P2M note puts its p2m list outside the initial region, \
                 which this builder does not support",
            ),
        }
    }
}

fn ok(what: &'static str, rc: i64) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Hypercall(what, rc))
    }
}

/// `domctl(cmd)` on `domain` with `arg` as its union's start; returns the union back.
fn domctl(cmd: u32, domain: u16, arg: &[u8]) -> Result<XenDomctl, i64> {
    let mut op = XenDomctl {
        cmd,
        domain,
        ..Default::default()
    };
    op.u[..arg.len()].copy_from_slice(arg);
    match hc::domctl(&mut op) {
        0 => Ok(op),
        rc => Err(rc),
    }
}

/// Builds the boot module as a domU if dom0's command line says `build-domu`; `domu_cmdline` is
/// the part after `--`. Reports on the console either way.
pub fn from_boot_module(
    image: Option<&[u8]>,
    cmdline: &Cmdline<'_>,
    domu_cmdline: &str,
) -> Option<Built> {
    if !cmdline.has("build-domu") {
        return None;
    }
    match image
        .ok_or(Error::NoImage)
        .and_then(|i| build(i, domu_cmdline))
    {
        Ok(b) => {
            println!(
                "builder: built d{} ({}): store mfn {:#x} port {}, console mfn {:#x} port {}",
                b.id,
                b.name,
                b.rings.store_mfn,
                b.rings.store_port,
                b.rings.console_mfn,
                b.rings.console_port
            );
            Some(b)
        }
        Err(e) => {
            println!("builder: cannot build the domU: {e}");
            None
        }
    }
}

/// Builds `image` as a domU with command line `domu_cmdline`, and unpauses it.
pub fn build(image: &[u8], domu_cmdline: &str) -> Result<Built, Error> {
    let args = Cmdline::from_bytes(domu_cmdline.as_bytes());
    let mem_kib = match args.get("mem") {
        None => DEFAULT_MEM_KIB,
        Some(m) => parse_mem_kib(m)
            .filter(|k| (4 << 10..=4 << 20).contains(k))
            .ok_or_else(|| Error::Mem(m.into()))?,
    };
    let nr_pages = mem_kib / 4;
    let params = BuildParams {
        image,
        initrd: &[],
        cmdline: domu_cmdline,
        nr_pages,
        // The ports are not known yet: only the layout is wanted here.
        kind: DomainKind::DomU {
            store_evtchn: 0,
            console_evtchn: 0,
        },
        hypervisor_l4_slots: [0; 16],
        shared_info: Mfn(0),
    };
    let (kernel, layout) = plan(&params).map_err(Error::Image)?;
    if !(layout.v_start..layout.v_end).contains(&layout.p2m.start) {
        return Err(Error::InitP2m);
    }

    let create = XenDomctlCreatedomain {
        handle: BootHandle { index: 0, count: 1 }.to_handle(),
        max_vcpus: 1,
        max_evtchn_port: MAX_EVTCHN_PORT,
        max_grant_frames: -1,
        max_maptrack_frames: -1,
        grant_opts: 1,
        ..Default::default()
    };
    let id = domctl(XEN_DOMCTL_createdomain, 0, create.as_bytes())
        .map_err(|rc| Error::Hypercall("createdomain", rc))?
        .domain;
    let name = args
        .get("name")
        .map(|n| ring_drivers::printable::escape(n.as_bytes(), 32))
        .unwrap_or_else(|| alloc::format!("domain{id}"));
    match fill(id, &kernel, &layout, mem_kib, domu_cmdline) {
        Ok(rings) => Ok(Built { id, name, rings }),
        Err(e) => {
            if let Err(rc) = domctl(XEN_DOMCTL_destroydomain, id, &[]) {
                println!("builder: destroying d{id} after the failure below: {rc}");
            }
            Err(e)
        }
    }
}

/// Steps 2 to 6 for the created domain `id`.
fn fill(
    id: u16,
    kernel: &xen_core::domain::build::KernelImage<'_>,
    layout: &Layout,
    mem_kib: u64,
    cmdline: &str,
) -> Result<RingParams, Error> {
    let nr_pages = layout.nr_pages;
    let vcpus = XenDomctlMaxVcpus { max: 1 };
    domctl(XEN_DOMCTL_max_vcpus, id, vcpus.as_bytes())
        .map_err(|rc| Error::Hypercall("max_vcpus", rc))?;
    let max = XenDomctlMaxMem {
        max_memkb: mem_kib + MAXMEM_SLACK_KIB,
    };
    domctl(XEN_DOMCTL_max_mem, id, max.as_bytes()).map_err(|rc| Error::Hypercall("max_mem", rc))?;

    // The frames: pfn n (IN) comes back as its machine frame (OUT), a PV domain's p2m.
    let mut p2m: Vec<u64> = Vec::new();
    p2m.try_reserve_exact(nr_pages as usize)
        .map_err(|_| Error::NoMemory)?;
    p2m.extend(0..nr_pages);
    for chunk in p2m.chunks_mut(POPULATE_CHUNK) {
        let want = chunk.len() as u64;
        let rc = hc::memory_op(&mut PopulatePhysmap(XenMemoryReservation {
            extent_start: hc::ptr(chunk.as_mut_ptr()),
            nr_extents: want,
            extent_order: 0,
            mem_flags: 0,
            domid: id,
            ..Default::default()
        }));
        if rc != want as i64 {
            return Err(Error::Hypercall("populate_physmap", rc));
        }
    }
    let mfn = |pfn: u64| p2m[pfn as usize];
    let mfn_of_va = |va: u64| mfn(layout.pfn_of(va));

    let info = domctl(XEN_DOMCTL_getdomaininfo, id, &[])
        .map_err(|rc| Error::Hypercall("getdomaininfo", rc))?;
    let info = XenDomctlGetdomaininfo::read_from_prefix(&info.u)
        .map_err(|_| Error::Hypercall("getdomaininfo", 0))?
        .0;
    let unbound = || {
        let mut a = EvtchnAllocUnbound {
            dom: id,
            remote_dom: 0,
            port: 0,
        };
        match hc::event_channel_op(&mut a) {
            0 => Ok(a.port),
            rc => Err(Error::Hypercall("alloc_unbound", rc)),
        }
    };
    let (store_port, console_port) = (unbound()?, unbound()?);

    // The initial region cleared (the image's bss, the rings, start_info's page, the stack).
    let zero = Box::new([0u8; PAGE]);
    for pfn in 0..layout.region_pages() {
        write_frame(id, mfn(pfn), 0, &zero[..])?;
    }
    // The image, each segment at p_paddr + VIRT_BASE - PADDR_OFFSET (`elf_load_binary`).
    for segment in &kernel.elf.segments {
        let va = segment.paddr.wrapping_add(kernel.addrs.virt_offset);
        write_va(id, layout, &mfn_of_va, va, kernel.elf.file_bytes(segment))?;
    }
    if let Some(va) = kernel.addrs.hypercall_page {
        let mut page = Box::new([0u8; PAGE]);
        write_hypercall_page(&mut page);
        write_va(id, layout, &mfn_of_va, va, &page[..])?;
    }

    // The bootstrap page tables, a table at a time (the hypervisor's slots stay empty: Xen
    // writes its own when it validates the L4).
    let mut tables: BTreeMap<u64, Box<[u64; 512]>> = BTreeMap::new();
    pagetables::write_entries(layout, mfn, |table, index, value| {
        tables.entry(table).or_insert_with(|| Box::new([0; 512]))[index] = value;
        Ok::<(), BuildError>(())
    })
    .map_err(Error::Image)?;
    for (&pfn, entries) in &tables {
        write_frame(id, mfn(pfn), 0, entries.as_bytes())?;
    }

    // start_info.
    let mut si = StartInfo::default();
    si.magic[..START_INFO_MAGIC.len()].copy_from_slice(START_INFO_MAGIC);
    si.nr_pages = nr_pages;
    si.shared_info = info.shared_info_frame << 12;
    si.pt_base = layout.page_tables.start;
    si.nr_pt_frames = layout.nr_pt_frames;
    si.mfn_list = layout.p2m.start;
    si.first_p2m_pfn = layout.first_p2m_pfn;
    si.nr_p2m_frames = layout.nr_p2m_frames;
    let len = cmdline.len().min(MAX_GUEST_CMDLINE - 1);
    si.cmd_line[..len].copy_from_slice(&cmdline.as_bytes()[..len]);
    let ring = |r: Option<xen_core::domain::build::Region>| r.map_or(0, |r| mfn_of_va(r.start));
    let (store_mfn, console_mfn) = (ring(layout.xenstore), ring(layout.console));
    si.store_mfn = store_mfn;
    si.store_evtchn = store_port;
    si.set_console_domu_mfn(console_mfn);
    si.set_console_domu_evtchn(console_port);
    write_va(
        id,
        layout,
        &mfn_of_va,
        layout.start_info.start,
        si.as_bytes(),
    )?;

    // The p2m list.
    write_va(id, layout, &mfn_of_va, layout.p2m.start, p2m.as_bytes())?;

    // shared_info as libxenguest leaves it: upcalls masked on every legacy vCPU.
    let mut shared = Box::new([0u8; PAGE]);
    for v in 0..XEN_LEGACY_MAX_VCPUS {
        shared[v * size_of::<VcpuInfo>() + offset_of!(VcpuInfo, evtchn_upcall_mask)] = 1;
    }
    write_frame(id, info.shared_info_frame, 0, &shared[..])?;

    // Pin the L4 for the domU: Xen validates the whole tree now.
    let l4 = mfn_of_va(layout.page_tables.start);
    let pin = MmuextOp {
        cmd: MMUEXT_PIN_L4_TABLE,
        arg1: l4,
        ..Default::default()
    };
    let (rc, _) = hc::mmuext_op(&[pin], id);
    ok("pin L4", rc)?;

    // The first vCPU, as libxenguest's `vcpu_x86_64` sets it.
    let mut ctx: Box<VcpuGuestContext> =
        VcpuGuestContext::new_box_zeroed().map_err(|_| Error::Hypercall("context", -12))?;
    ctx.flags = VGCF_in_kernel | VGCF_online;
    let r = &mut ctx.user_regs;
    r.rip = kernel.addrs.entry;
    r.rsp = layout.stack.end;
    r.rsi = layout.start_info.start;
    r.rflags = 1 << 9;
    r.cs = FLAT_KERNEL_CS;
    (r.ss, r.ds, r.es, r.fs, r.gs) = (
        FLAT_KERNEL_SS,
        FLAT_KERNEL_DS,
        FLAT_KERNEL_DS,
        FLAT_KERNEL_DS,
        FLAT_KERNEL_DS,
    );
    ctx.kernel_ss = u64::from(FLAT_KERNEL_SS);
    ctx.kernel_sp = layout.stack.end;
    ctx.ctrlreg[3] = xen_pfn_to_cr3(l4);
    let arg = XenDomctlVcpucontext {
        vcpu: 0,
        _pad: 0,
        ctxt: hc::ptr(&*ctx as *const VcpuGuestContext),
    };
    domctl(XEN_DOMCTL_setvcpucontext, id, arg.as_bytes())
        .map_err(|rc| Error::Hypercall("setvcpucontext", rc))?;
    domctl(XEN_DOMCTL_unpausedomain, id, &[]).map_err(|rc| Error::Hypercall("unpause", rc))?;
    Ok(RingParams {
        store_mfn,
        store_port,
        console_mfn,
        console_port,
    })
}

/// Writes `data` at the domU's virtual address `va` inside its initial region, page by page.
fn write_va(
    id: u16,
    layout: &Layout,
    mfn_of_va: &impl Fn(u64) -> u64,
    va: u64,
    data: &[u8],
) -> Result<(), Error> {
    let mut done = 0;
    while done < data.len() {
        let at = va + done as u64;
        if !(layout.v_start..layout.v_end).contains(&at) {
            return Err(Error::Image(BuildError::MemoryWrite {
                maddr: xen_core::mm::Maddr(at),
            }));
        }
        let offset = (at % PAGE as u64) as usize;
        let n = (PAGE - offset).min(data.len() - done);
        write_frame(id, mfn_of_va(at), offset, &data[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Writes `data` at `offset` of the domU's frame `mfn`, through a window mapped for it alone.
fn write_frame(id: u16, mfn: u64, offset: usize, data: &[u8]) -> Result<(), Error> {
    let mut page = ring_page::map_foreign(id, mfn, true).map_err(|e| Error::Map(mfn, e))?;
    page.write_bytes(offset, data);
    let rc = ring_page::unmap(page);
    if rc != 0 {
        // The window keeps the frame mapped: the domain cannot be freed whole after this.
        println!("builder: unmapping frame {mfn:#x} of d{id}: {rc}");
    }
    ok("unmap", rc)
}
