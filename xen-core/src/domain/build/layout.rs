//! The start-of-day virtual layout of a 64-bit PV guest, computed as Xen 4.17 computes dom0's.
//!
//! `xen.h` ("Start-of-day memory layout") is the contract: one contiguous virtual region starting
//! at `VIRT_BASE` holding, in order and each page aligned, the kernel image, [the initrd], the p2m
//! list, `start_info`, [xenstore and console pages, unless dom0], the bootstrap page tables, the
//! boot stack; then at least 512 KiB of padding, ending on a 4 MiB boundary. The arithmetic is
//! `dom0_construct_pv` in `xen/arch/x86/pv/dom0_build.c`, including its search for the number of
//! page-table frames (the tables map the region, and the region holds the tables).
//!
//! The region is mapped 1:1 onto the first pseudo-physical pages: the page at `v_start + n * 4096`
//! is pfn `n`.
//!
//! A kernel with an `INIT_P2M` note (Linux) gets its p2m list outside the region, mapped at that
//! address, as `dom0_construct_pv` does when `parms.p2m_base` is set: the list's pages and the page
//! tables that map them are the pfns after the initial allocation, and `start_info`'s
//! `first_p2m_pfn`/`nr_p2m_frames` name exactly those frames (Linux reserves them and maps them
//! read-only in its direct map, `mask_rw_pte`).

use core::fmt;

use hypercall_abi::arch_x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

/// Bytes per page.
pub const PAGE_SIZE: u64 = 4096;
/// `sizeof(struct start_info)` (`xen.h`).
pub const START_INFO_SIZE: u64 = 1168;
/// `sizeof(struct dom0_vga_console_info)` (`xen.h`): Xen reserves room for it after dom0's
/// `start_info`, in the same page.
pub const DOM0_VGA_CONSOLE_INFO_SIZE: u64 = 40;
/// The region ends on a multiple of this (`v_end` rounding in `dom0_construct_pv`).
pub const REGION_ALIGN: u64 = 4 << 20;
/// At least this much unused space follows the boot stack (`xen.h`, point 7).
pub const MIN_PADDING: u64 = 512 << 10;
/// Bytes per p2m entry for a 64-bit guest (`unsigned long`).
pub const P2M_ENTRY_SIZE: u64 = 8;
/// Upper end of the canonical lower half of the address space.
const LOWER_HALF_END: u64 = 1 << 47;
/// Start of the canonical upper half.
const UPPER_HALF_START: u64 = 0xFFFF_8000_0000_0000;

/// Address bits translated by one L2, L3 and L4 entry.
const L2_SHIFT: u32 = 21;
const L3_SHIFT: u32 = 30;
const L4_SHIFT: u32 = 39;

/// A half-open range of guest virtual addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte (not necessarily page aligned: Xen reports exact ends).
    pub end: u64,
}

impl Region {
    /// Whether `va` lies in the region.
    pub const fn contains(&self, va: u64) -> bool {
        self.start <= va && va < self.end
    }
}

/// What can make a layout impossible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The region would run past the top of the address space.
    AddressOverflow,
    /// The region crosses the non-canonical hole.
    NotCanonical {
        /// Start of the region.
        v_start: u64,
    },
    /// The region overlaps the hypervisor's reserved range (L4 slots 256..272).
    OverlapsHypervisor {
        /// Start of the region.
        v_start: u64,
        /// End of the region.
        v_end: u64,
    },
    /// The `INIT_P2M` address cannot hold the p2m list: misaligned, non-canonical, over the
    /// hypervisor's range, or in a 512 GiB slot the initial mapping uses.
    P2mPlacement {
        /// The `INIT_P2M` address.
        va: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The domain has fewer pages than the initial region needs.
    TooFewPages {
        /// Pages the domain has.
        nr_pages: u64,
        /// Pages it needs.
        need: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::AddressOverflow => {
                write!(f, "the initial mapping would run past the end of the address space")
            }
            LayoutError::NotCanonical { v_start } => write!(
                f,
                "the initial mapping from {v_start:#x} crosses the non-canonical hole"
            ),
            LayoutError::OverlapsHypervisor { v_start, v_end } => write!(
                f,
                "the initial mapping {v_start:#x}..{v_end:#x} overlaps the hypervisor's reserved range"
            ),
            LayoutError::P2mPlacement { va, reason } => write!(
                f,
                "Xen ELF note INIT_P2M {va:#x} cannot hold the p2m list: {reason}"
            ),
            LayoutError::TooFewPages { nr_pages, need } => write!(
                f,
                "{nr_pages} pages are too few for the initial mapping, which needs {need}"
            ),
        }
    }
}

/// The start-of-day layout: where each bootstrap element lies, and how many page tables map it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the initial mapping: `VIRT_BASE`.
    pub v_start: u64,
    /// End of the initial mapping, 4 MiB aligned.
    pub v_end: u64,
    /// The loaded kernel image `[virt_kstart, virt_kend)`.
    pub kernel: Region,
    /// The initial ramdisk, from the page after the kernel (`start_info.mod_start`, `mod_len`),
    /// when the domain has one.
    pub initrd: Option<Region>,
    /// The p2m list: `nr_pages` 8-byte machine frame numbers (in the region, or at `INIT_P2M`).
    pub p2m: Region,
    /// The pfn of the p2m list's first page.
    pub p2m_pfn: u64,
    /// Page-table frames that map an `INIT_P2M` list (0 when the list is in the region): the pfns
    /// right after the list's pages.
    pub p2m_tables: u64,
    /// `start_info` (for dom0, plus room for the VGA console information Xen may append).
    pub start_info: Region,
    /// The xenstore ring page (domU only).
    pub xenstore: Option<Region>,
    /// The console ring page (domU only).
    pub console: Option<Region>,
    /// The bootstrap page tables; the L4 is the first page (`pt_base`).
    pub page_tables: Region,
    /// The boot stack page; the initial RSP is its end.
    pub stack: Region,
    /// Number of page-table frames (`nr_pt_frames`).
    pub nr_pt_frames: u64,
    /// Pages of the domain.
    pub nr_pages: u64,
    /// `start_info.first_p2m_pfn`.
    pub first_p2m_pfn: u64,
    /// `start_info.nr_p2m_frames`.
    pub nr_p2m_frames: u64,
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
fn round_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Number of `1 << shift`-sized, aligned blocks that `[lo, hi)` touches (Xen's `NR()` macro).
fn blocks(lo: u64, hi: u64, shift: u32) -> u64 {
    let size = 1u64 << shift;
    // `hi` was checked to round up without overflow at 4 MiB; at 512 GiB it may reach 2^64.
    let hi_up = (u128::from(hi) + u128::from(size) - 1) & !(u128::from(size) - 1);
    let lo_down = u128::from(lo & !(size - 1));
    ((hi_up - lo_down) >> shift) as u64
}

/// Page-table frames (L3s, L2s and L1s) that map an `INIT_P2M` list at `[start, end)`, in L4
/// slots of its own.
pub fn p2m_tables_needed(start: u64, end: u64) -> u64 {
    blocks(start, end, L4_SHIFT) + blocks(start, end, L3_SHIFT) + blocks(start, end, L2_SHIFT)
}

/// Page-table frames needed to map `[v_start, v_end)` with 4 KiB pages: one L4 and as many L3s,
/// L2s and L1s as the range touches 512 GiB, 1 GiB and 2 MiB blocks.
pub fn page_tables_needed(v_start: u64, v_end: u64) -> u64 {
    1 + blocks(v_start, v_end, L4_SHIFT)
        + blocks(v_start, v_end, L3_SHIFT)
        + blocks(v_start, v_end, L2_SHIFT)
}

impl Layout {
    /// The layout for a kernel occupying `[kstart, kend)` with `virt_base <= kstart` (checked by
    /// [`super::notes::KernelAddresses::compute`]), for a domain of `nr_pages` pages.
    ///
    /// `dom0` decides the two differences between Xen's dom0 and a domU: dom0 has no xenstore or
    /// console page (and room for the VGA console information after `start_info`); and the p2m
    /// bookkeeping fields, which Xen fills for dom0 as "the frames after the initial allocation"
    /// (`first_p2m_pfn` = the power-of-two initial allocation, `nr_p2m_frames` = 0, since the p2m
    /// is not relocated), and the toolstack fills for a domU as the p2m list's own pages
    /// (`libxenguest`, `start_info_x86_64`).
    pub fn compute(
        virt_base: u64,
        kstart: u64,
        kend: u64,
        nr_pages: u64,
        dom0: bool,
    ) -> Result<Self, LayoutError> {
        Self::compute_with_p2m(virt_base, kstart, kend, nr_pages, dom0, None)
    }

    /// [`Layout::compute`] for a kernel that may ask for its p2m list at `init_p2m` (the
    /// `INIT_P2M` note): then the list is not in the region but mapped there, from the pfns after
    /// the initial allocation, followed by the page tables that map it.
    pub fn compute_with_p2m(
        virt_base: u64,
        kstart: u64,
        kend: u64,
        nr_pages: u64,
        dom0: bool,
        init_p2m: Option<u64>,
    ) -> Result<Self, LayoutError> {
        Self::compute_with_initrd(virt_base, kstart, kend, 0, nr_pages, dom0, init_p2m)
    }

    /// [`Layout::compute_with_p2m`] with an initial ramdisk of `initrd_len` bytes (0: none),
    /// mapped from the page after the kernel as `dom0_construct_pv` maps dom0's
    /// (`vinitrd_start = round_pgup(vkern_end)`), everything else following it.
    pub fn compute_with_initrd(
        virt_base: u64,
        kstart: u64,
        kend: u64,
        initrd_len: u64,
        nr_pages: u64,
        dom0: bool,
        init_p2m: Option<u64>,
    ) -> Result<Self, LayoutError> {
        let overflow = LayoutError::AddressOverflow;
        let v_start = virt_base;
        let kernel = Region {
            start: kstart,
            end: kend,
        };
        let p2m_len = nr_pages.checked_mul(P2M_ENTRY_SIZE).ok_or(overflow)?;
        let vkern_end = round_up(kend, PAGE_SIZE).ok_or(overflow)?;
        let initrd = if initrd_len == 0 {
            None
        } else {
            Some(Region {
                start: vkern_end,
                end: vkern_end.checked_add(initrd_len).ok_or(overflow)?,
            })
        };
        let kernel_end = match initrd {
            Some(r) => round_up(r.end, PAGE_SIZE).ok_or(overflow)?,
            None => vkern_end,
        };
        let (p2m, si_start) = match init_p2m {
            None => {
                let p2m = Region {
                    start: kernel_end,
                    end: kernel_end.checked_add(p2m_len).ok_or(overflow)?,
                };
                (p2m, round_up(p2m.end, PAGE_SIZE).ok_or(overflow)?)
            }
            Some(va) => {
                let end = va.checked_add(p2m_len).ok_or(overflow)?;
                (Region { start: va, end }, kernel_end)
            }
        };
        let si_end = si_start + START_INFO_SIZE;
        let after_si = round_up(si_end, PAGE_SIZE).ok_or(overflow)?;
        let (start_info, xenstore, console, pt_start) = if dom0 {
            let start_info = Region {
                start: si_start,
                end: si_end + DOM0_VGA_CONSOLE_INFO_SIZE,
            };
            (start_info, None, None, after_si)
        } else {
            let page = |start: u64| -> Result<Region, LayoutError> {
                Ok(Region {
                    start,
                    end: start.checked_add(PAGE_SIZE).ok_or(overflow)?,
                })
            };
            let xenstore = page(after_si)?;
            let console = page(xenstore.end)?;
            let start_info = Region {
                start: si_start,
                end: si_end,
            };
            (start_info, Some(xenstore), Some(console), console.end)
        };

        // Xen's exhaustive search: the smallest table count that maps a region holding itself.
        let mut nr_pt_frames = 2u64;
        let (page_tables, stack, v_end) = loop {
            let pt_end = nr_pt_frames
                .checked_mul(PAGE_SIZE)
                .and_then(|len| pt_start.checked_add(len))
                .ok_or(overflow)?;
            let stack_end = pt_end.checked_add(PAGE_SIZE).ok_or(overflow)?;
            let mut v_end = round_up(stack_end, REGION_ALIGN).ok_or(overflow)?;
            if v_end - stack_end < MIN_PADDING {
                v_end = v_end.checked_add(REGION_ALIGN).ok_or(overflow)?;
            }
            if page_tables_needed(v_start, v_end) <= nr_pt_frames {
                let page_tables = Region {
                    start: pt_start,
                    end: pt_end,
                };
                let stack = Region {
                    start: pt_end,
                    end: stack_end,
                };
                break (page_tables, stack, v_end);
            }
            nr_pt_frames += 1;
        };

        let in_lower_half = v_end <= LOWER_HALF_END;
        let in_upper_half = v_start >= UPPER_HALF_START;
        if !in_lower_half && !in_upper_half {
            return Err(LayoutError::NotCanonical { v_start });
        }
        if v_start < HYPERVISOR_VIRT_END && v_end > HYPERVISOR_VIRT_START {
            return Err(LayoutError::OverlapsHypervisor { v_start, v_end });
        }

        let region_pages = (v_end - v_start) / PAGE_SIZE;
        // dom0: Xen allocates the region as one power-of-two chunk and panics if that exceeds the
        // domain's pages ("Domain 0 allocation is too small for kernel image").
        let initial_alloc = region_pages.next_power_of_two();
        let need = if dom0 { initial_alloc } else { region_pages };
        if nr_pages < need {
            return Err(LayoutError::TooFewPages { nr_pages, need });
        }
        if let Some(va) = init_p2m {
            // The list and its tables go after the initial allocation (`setup_pv_physmap`).
            let fail = |reason| LayoutError::P2mPlacement { va, reason };
            if !va.is_multiple_of(PAGE_SIZE) {
                return Err(fail("not page aligned"));
            }
            let map_end = round_up(p2m.end, PAGE_SIZE).ok_or(overflow)?;
            if !(map_end <= LOWER_HALF_END || va >= UPPER_HALF_START) {
                return Err(fail("the list crosses the non-canonical hole"));
            }
            if va < HYPERVISOR_VIRT_END && map_end > HYPERVISOR_VIRT_START {
                return Err(fail("the list overlaps the hypervisor's reserved range"));
            }
            let slot = |a: u64| a >> L4_SHIFT;
            let (r0, r1) = (slot(v_start), slot(v_end - 1));
            let (p0, p1) = (slot(va), slot(map_end.max(va + 1) - 1));
            if p0 <= r1 && r0 <= p1 {
                return Err(fail("it shares a 512 GiB slot with the initial mapping"));
            }
            let first = if dom0 { initial_alloc } else { region_pages };
            let pages = (map_end - va) / PAGE_SIZE;
            let tables = p2m_tables_needed(va, map_end);
            let need = first + pages + tables;
            if nr_pages < need {
                return Err(LayoutError::TooFewPages { nr_pages, need });
            }
            return Ok(Self {
                v_start,
                v_end,
                kernel,
                initrd,
                p2m,
                p2m_pfn: first,
                p2m_tables: tables,
                start_info,
                xenstore,
                console,
                page_tables,
                stack,
                nr_pt_frames,
                nr_pages,
                first_p2m_pfn: first,
                nr_p2m_frames: pages + tables,
            });
        }
        let (first_p2m_pfn, nr_p2m_frames) = if dom0 {
            (initial_alloc, 0)
        } else {
            let first = (p2m.start - v_start) / PAGE_SIZE;
            let last = (round_up(p2m.end, PAGE_SIZE).ok_or(overflow)? - v_start) / PAGE_SIZE;
            (first, last - first)
        };

        Ok(Self {
            v_start,
            v_end,
            kernel,
            initrd,
            p2m,
            p2m_pfn: (p2m.start - v_start) / PAGE_SIZE,
            p2m_tables: 0,
            start_info,
            xenstore,
            console,
            page_tables,
            stack,
            nr_pt_frames,
            nr_pages,
            first_p2m_pfn,
            nr_p2m_frames,
        })
    }

    /// Pages in the initial mapping.
    pub const fn region_pages(&self) -> u64 {
        (self.v_end - self.v_start) / PAGE_SIZE
    }

    /// The pfn (page index in the region) of virtual address `va` of the region.
    pub const fn pfn_of(&self, va: u64) -> u64 {
        (va - self.v_start) / PAGE_SIZE
    }

    /// Xen's "VIRTUAL MEMORY ARRANGEMENT" report, for the boot log.
    pub fn arrangement(&self) -> Arrangement<'_> {
        Arrangement(self)
    }
}

/// [`Layout`] displayed the way `dom0_construct_pv` prints it, plus each region's first pfn.
pub struct Arrangement<'a>(&'a Layout);

impl fmt::Display for Arrangement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.0;
        let line = |f: &mut fmt::Formatter<'_>, name: &str, r: Region, pfn: u64| {
            writeln!(
                f,
                " {name:<15}{:016x}->{:016x} (pfn {pfn:#x})",
                r.start, r.end
            )
        };
        line(f, "Loaded kernel:", l.kernel, l.pfn_of(l.kernel.start))?;
        if let Some(r) = l.initrd {
            line(f, "Init. ramdisk:", r, l.pfn_of(r.start))?;
        }
        line(f, "Phys-Mach map:", l.p2m, l.p2m_pfn)?;
        line(f, "Start info:", l.start_info, l.pfn_of(l.start_info.start))?;
        if let Some(r) = l.xenstore {
            line(f, "Xenstore ring:", r, l.pfn_of(r.start))?;
        }
        if let Some(r) = l.console {
            line(f, "Console ring:", r, l.pfn_of(r.start))?;
        }
        line(
            f,
            "Page tables:",
            l.page_tables,
            l.pfn_of(l.page_tables.start),
        )?;
        line(f, "Boot stack:", l.stack, l.pfn_of(l.stack.start))?;
        write!(f, " {:<15}{:016x}->{:016x}", "TOTAL:", l.v_start, l.v_end)
    }
}
