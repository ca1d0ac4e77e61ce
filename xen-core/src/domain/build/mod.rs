//! The PV domain builder: turns an untrusted kernel image into a bootable 64-bit PV domain, laid
//! out exactly as Xen 4.17 lays out dom0.
//!
//! The pipeline follows `dom0_construct_pv` (`xen/arch/x86/pv/dom0_build.c`):
//!
//! 1. [`elf`]: check the ELF64 container and find the loadable and note segments;
//! 2. [`notes`]: read the Xen ELF notes and apply libelf's checks and defaults;
//! 3. [`layout`]: compute the start-of-day virtual layout (`xen.h`);
//! 4. [`build`]: take `nr_pages` machine-contiguous frames (pfn `n` is machine frame
//!    `base + n`, so dom0 can hand machine addresses to devices), zero them, write the page tables
//!    ([`pagetables`]), the image, the hypercall page ([`hypercall_page`]), `start_info` and the
//!    p2m list, and report the M2P entries.
//!
//! Everything that can be refused is refused in steps 1-3, before a frame is taken. The module is
//! plain safe Rust over [`MachineMemoryMut`] and [`FrameAllocator`]; the hypervisor supplies the
//! direct map and the boot allocator, tests supply fakes.

#![forbid(unsafe_code)]

pub mod elf;
pub mod hypercall_page;
pub mod layout;
pub mod notes;
pub mod pagetables;
pub mod seed;

#[cfg(test)]
pub(crate) mod tests;

use core::fmt;

use hypercall_abi::version::{XENFEAT_dom0, XENFEAT_supervisor_mode_kernel};
use hypercall_abi::xen::{
    StartInfo, MAX_GUEST_CMDLINE, SIF_INITDOMAIN, SIF_PM_MASK, SIF_PRIVILEGED,
};
use zerocopy::IntoBytes;

use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::{MachineMemoryMut, Maddr, Mfn, Pfn};

pub use elf::{ElfError, ElfImage, LoadSegment};
pub use hypercall_page::write_hypercall_page;
pub use layout::{Layout, LayoutError, Region};
pub use notes::{KernelAddresses, NoteError, NoteType, XenNotes};
pub use pagetables::{PtFrame, PtLevel};
pub use seed::seed_domain;

/// `XEN_PROCESSOR_PM_CX` (`public/platform.h`): Xen controls C-states.
pub const XEN_PROCESSOR_PM_CX: u32 = 1;
/// `XEN_PROCESSOR_PM_PX` (`public/platform.h`): Xen controls P-states.
pub const XEN_PROCESSOR_PM_PX: u32 = 2;
/// The `xen_processor_pmbits` Xen 4.17 passes to dom0 in `start_info.flags` bits 8..16
/// (`SIF_PM_MASK`): `XEN_PROCESSOR_PM_PX` by default (`xen/common/domain.c`), plus
/// `XEN_PROCESSOR_PM_CX` because `cpuidle` is on by default (`__start_xen`, `xen/arch/x86/setup.c`).
/// Hence dom0's flags 0x303 on Debian's Xen 4.17.
pub const DOM0_PM_BITS: u32 = XEN_PROCESSOR_PM_CX | XEN_PROCESSOR_PM_PX;
/// `start_info.flags` of dom0: `SIF_PRIVILEGED | SIF_INITDOMAIN | (pmbits << 8)` (`dom0_build.c`).
pub const DOM0_FLAGS: u32 = SIF_PRIVILEGED | SIF_INITDOMAIN | ((DOM0_PM_BITS << 8) & SIF_PM_MASK);
/// `start_info.magic` of a 64-bit PV guest (`"xen-3.0-x86_%d%s"` with 64 and no PAE suffix).
pub const START_INFO_MAGIC: &[u8] = b"xen-3.0-x86_64";

const PAGE_SIZE: usize = 4096;

/// Which kind of domain to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// The initial, privileged domain: `SIF_PRIVILEGED | SIF_INITDOMAIN`, no xenstore or console
    /// page, and the kernel must support `XENFEAT_dom0` if it lists its supported features.
    Dom0,
    /// An unprivileged domain with a xenstore ring and a console ring in its initial region.
    DomU {
        /// Event channel of the xenstore ring (`start_info.store_evtchn`).
        store_evtchn: u32,
        /// Event channel of the console ring (`start_info.console.domU.evtchn`).
        console_evtchn: u32,
    },
}

/// Why a domain could not be built. The first three kinds mean the image or request was refused
/// before any memory was touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The ELF container is malformed.
    Elf(ElfError),
    /// A Xen ELF note is missing, malformed or refused.
    Note(NoteError),
    /// The start-of-day layout is impossible.
    Layout(LayoutError),
    /// No run of `nr_pages` free contiguous machine frames.
    OutOfMemory {
        /// Pages asked for.
        nr_pages: u64,
    },
    /// The initial ramdisk alone is larger than the domain's memory.
    InitrdTooLarge {
        /// Its length in bytes.
        len: u64,
        /// Pages of the domain.
        nr_pages: u64,
    },
    /// Machine memory refused a write (the frames taken so far are not returned).
    MemoryWrite {
        /// Where.
        maddr: Maddr,
    },
}

impl From<ElfError> for BuildError {
    fn from(e: ElfError) -> Self {
        BuildError::Elf(e)
    }
}

impl From<NoteError> for BuildError {
    fn from(e: NoteError) -> Self {
        BuildError::Note(e)
    }
}

impl From<LayoutError> for BuildError {
    fn from(e: LayoutError) -> Self {
        BuildError::Layout(e)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "bad ELF image: {e}"),
            BuildError::Note(e) => write!(f, "{e}"),
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::OutOfMemory { nr_pages } => {
                write!(f, "no {nr_pages} contiguous free machine frames")
            }
            BuildError::InitrdTooLarge { len, nr_pages } => write!(
                f,
                "the initrd ({len} bytes) does not fit in the domain's {} KiB",
                nr_pages * 4
            ),
            BuildError::MemoryWrite { maddr } => {
                write!(f, "machine memory at {maddr} refused a write")
            }
        }
    }
}

/// A checked kernel image: its ELF structure, its Xen notes and the addresses they imply.
#[derive(Clone, Debug)]
pub struct KernelImage<'a> {
    /// The ELF container.
    pub elf: ElfImage<'a>,
    /// The Xen notes as found.
    pub notes: XenNotes<'a>,
    /// The image's placement, with Xen's defaults applied.
    pub addrs: KernelAddresses,
}

impl<'a> KernelImage<'a> {
    /// Parses `bytes` and applies every check that does not depend on the kind of domain.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BuildError> {
        let elf = ElfImage::parse(bytes)?;
        let notes = XenNotes::parse(&elf)?;
        let addrs = KernelAddresses::compute(&elf, &notes)?;
        Ok(Self { elf, notes, addrs })
    }

    /// The checks that depend on the kind of domain (`dom0_construct_pv`): a dom0 kernel that
    /// lists its supported features must list `XENFEAT_dom0`; no kernel may require
    /// `supervisor_mode_kernel` (64-bit PV kernels run in ring 3).
    pub fn check_kind(&self, kind: DomainKind) -> Result<(), NoteError> {
        if kind == DomainKind::Dom0
            && self.notes.supported_features.is_some()
            && !self.notes.supports(XENFEAT_dom0)
        {
            return Err(NoteError::NotDom0Capable);
        }
        if self.notes.requires(XENFEAT_supervisor_mode_kernel) {
            return Err(NoteError::SupervisorModeRequired);
        }
        if self.notes.bsd_symtab {
            return Err(NoteError::BsdSymtabUnsupported);
        }
        Ok(())
    }
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams<'a> {
    /// The kernel image (a boot module), untrusted.
    pub image: &'a [u8],
    /// The initial ramdisk (a boot module), untrusted, opaque; empty for none. It is mapped after
    /// the kernel and named by `start_info.mod_start` (a virtual address) and `mod_len`.
    pub initrd: &'a [u8],
    /// The kernel's command line; truncated to `MAX_GUEST_CMDLINE - 1` bytes.
    pub cmdline: &'a str,
    /// Pages of memory the domain gets.
    pub nr_pages: u64,
    /// dom0 or a domU.
    pub kind: DomainKind,
    /// The hypervisor's entries for L4 slots 256..272, copied verbatim into the guest's L4.
    pub hypervisor_l4_slots: [u64; 16],
    /// The domain's shared-info frame (`start_info.shared_info` is its machine address).
    pub shared_info: Mfn,
}

/// Checks the image and computes the layout, touching no memory: everything [`build`] can refuse.
pub fn plan<'a>(params: &BuildParams<'a>) -> Result<(KernelImage<'a>, Layout), BuildError> {
    let kernel = KernelImage::parse(params.image)?;
    kernel.check_kind(params.kind)?;
    let initrd_len = params.initrd.len() as u64;
    if initrd_len.div_ceil(PAGE_SIZE as u64) >= params.nr_pages {
        return Err(BuildError::InitrdTooLarge {
            len: initrd_len,
            nr_pages: params.nr_pages,
        });
    }
    let layout = Layout::compute_with_initrd(
        kernel.addrs.virt_base,
        kernel.addrs.kstart,
        kernel.addrs.kend,
        initrd_len,
        params.nr_pages,
        params.kind == DomainKind::Dom0,
        kernel.notes.init_p2m,
    )?;
    Ok((kernel, layout))
}

/// A built domain: what the hypervisor needs to start its first vCPU and to type its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltDomain {
    /// Initial RIP: the kernel's entry point.
    pub entry: u64,
    /// Initial RSP: the top of the boot stack.
    pub stack_top: u64,
    /// Initial RSI: the virtual address of `start_info`.
    pub start_info_va: u64,
    /// The bootstrap L4 (the initial CR3's frame).
    pub l4: Mfn,
    /// Machine frame of pfn 0; pfn `n` is machine frame `mfn_base + n`.
    pub mfn_base: Mfn,
    /// Pages of the domain.
    pub nr_pages: u64,
    /// `start_info.flags`.
    pub flags: u32,
    /// Where the hypercall page was written, if the kernel has one.
    pub hypercall_page: Option<u64>,
    /// The start-of-day layout (regions, `v_start`/`v_end`, page-table count).
    pub layout: Layout,
}

impl BuiltDomain {
    /// The machine frame of guest frame `pfn`.
    pub const fn mfn(&self, pfn: Pfn) -> Mfn {
        Mfn(self.mfn_base.0 + pfn.0)
    }

    /// The bootstrap page-table frames with their levels, L4 first, in allocation order: the
    /// frames the hypervisor must type (and pin the L4) before the guest runs.
    pub fn page_table_frames(&self) -> impl Iterator<Item = (Mfn, PtLevel)> + '_ {
        pagetables::frames(&self.layout).map(|f| (self.mfn(Pfn(f.pfn)), f.level))
    }
}

fn write<M: MachineMemoryMut + ?Sized>(
    mem: &mut M,
    maddr: Maddr,
    data: &[u8],
) -> Result<(), BuildError> {
    mem.write(maddr, data)
        .ok_or(BuildError::MemoryWrite { maddr })
}

/// Builds a domain: checks the image ([`plan`]), takes `nr_pages` contiguous frames from `frames`,
/// fills them, and calls `set_m2p(mfn, pfn)` for each page so the hypervisor can record its M2P.
pub fn build<M, A, F>(
    mem: &mut M,
    frames: &mut A,
    params: &BuildParams<'_>,
    mut set_m2p: F,
) -> Result<BuiltDomain, BuildError>
where
    M: MachineMemoryMut + ?Sized,
    A: FrameAllocator + ?Sized,
    F: FnMut(Mfn, Pfn),
{
    let (kernel, layout) = plan(params)?;
    let nr_pages = params.nr_pages;
    let base = frames
        .alloc_contiguous(nr_pages, 1)
        .ok_or(BuildError::OutOfMemory { nr_pages })?;
    let maddr_of_pfn = |pfn: u64| Maddr((base.0 + pfn) << 12);
    // Virtual addresses of the region map 1:1 onto the contiguous frames.
    let maddr_of_va = |va: u64| Maddr((base.0 << 12) + (va - layout.v_start));

    // Scrub: the domain sees only zeroes and its own data (this also zeroes every bss).
    for pfn in 0..nr_pages {
        let maddr = maddr_of_pfn(pfn);
        mem.zero(maddr, PAGE_SIZE)
            .ok_or(BuildError::MemoryWrite { maddr })?;
    }

    // Page tables, the hypervisor's L4 slots first.
    let l4_pfn = layout.pfn_of(layout.page_tables.start);
    let slots: &[u8] = params.hypervisor_l4_slots.as_bytes();
    let slots_at = Maddr(maddr_of_pfn(l4_pfn).0 + (pagetables::FIRST_XEN_SLOT as u64) * 8);
    write(mem, slots_at, slots)?;
    pagetables::write_entries(
        &layout,
        |pfn| base.0 + pfn,
        |table, index, value| {
            let at = Maddr(maddr_of_pfn(table).0 + index as u64 * 8);
            write(mem, at, &value.to_le_bytes())
        },
    )?;

    // The image (`elf_load_binary`): each segment at p_paddr + VIRT_BASE - PADDR_OFFSET.
    for segment in &kernel.elf.segments {
        let va = segment.paddr.wrapping_add(kernel.addrs.virt_offset);
        write(mem, maddr_of_va(va), kernel.elf.file_bytes(segment))?;
    }

    // The initrd, as the boot loader gave it; Xen copies dom0's the same way.
    if let Some(r) = layout.initrd {
        write(mem, maddr_of_va(r.start), params.initrd)?;
    }

    if let Some(va) = kernel.addrs.hypercall_page {
        let mut page = [0u8; PAGE_SIZE];
        write_hypercall_page(&mut page);
        write(mem, maddr_of_va(va), &page)?;
    }

    // start_info (the page is already clear, as after Xen's `clear_page(si)`).
    let mut si = StartInfo::default();
    si.magic[..START_INFO_MAGIC.len()].copy_from_slice(START_INFO_MAGIC);
    si.nr_pages = nr_pages;
    si.shared_info = params.shared_info.maddr().0;
    si.pt_base = layout.page_tables.start;
    si.nr_pt_frames = layout.nr_pt_frames;
    si.mfn_list = layout.p2m.start;
    si.first_p2m_pfn = layout.first_p2m_pfn;
    si.nr_p2m_frames = layout.nr_p2m_frames;
    if let Some(r) = layout.initrd {
        si.mod_start = r.start;
        si.mod_len = r.end - r.start;
    }
    // `strlcpy`: at most MAX_GUEST_CMDLINE - 1 bytes and a NUL.
    let cmdline = params.cmdline.as_bytes();
    let len = cmdline.len().min(MAX_GUEST_CMDLINE - 1);
    si.cmd_line[..len].copy_from_slice(&cmdline[..len]);
    match params.kind {
        DomainKind::Dom0 => si.flags = DOM0_FLAGS,
        DomainKind::DomU {
            store_evtchn,
            console_evtchn,
        } => {
            let page_mfn = |r: Option<Region>| r.map_or(0, |r| base.0 + layout.pfn_of(r.start));
            si.store_mfn = page_mfn(layout.xenstore);
            si.store_evtchn = store_evtchn;
            si.set_console_domu_mfn(page_mfn(layout.console));
            si.set_console_domu_evtchn(console_evtchn);
        }
    }
    write(mem, maddr_of_va(layout.start_info.start), si.as_bytes())?;

    // The p2m list, a page of entries at a time, and the M2P.
    let mut chunk = [0u8; PAGE_SIZE];
    let per_chunk = (PAGE_SIZE / 8) as u64;
    let mut pfn = 0;
    while pfn < nr_pages {
        let n = per_chunk.min(nr_pages - pfn);
        for i in 0..n {
            let mfn = base.0 + pfn + i;
            chunk[i as usize * 8..][..8].copy_from_slice(&mfn.to_le_bytes());
            set_m2p(Mfn(mfn), Pfn(pfn + i));
        }
        let at = Maddr(maddr_of_pfn(layout.p2m_pfn).0 + pfn * 8);
        write(mem, at, &chunk[..n as usize * 8])?;
        pfn += n;
    }

    Ok(BuiltDomain {
        entry: kernel.addrs.entry,
        stack_top: layout.stack.end,
        start_info_va: layout.start_info.start,
        l4: Mfn(base.0 + l4_pfn),
        mfn_base: base,
        nr_pages,
        flags: si.flags,
        hypercall_page: kernel.addrs.hypercall_page,
        layout,
    })
}
