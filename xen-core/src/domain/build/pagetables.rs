//! The bootstrap page tables of a 64-bit PV guest: 4 KiB mappings of the whole initial region,
//! built in Xen's frame order, with the page-table frames themselves mapped read-only.
//!
//! Source: `dom0_construct_pv` and `mark_pv_pt_pages_rdonly` in Xen 4.17's
//! `xen/arch/x86/pv/dom0_build.c`. The tables occupy the region's page-table pages in the order
//! Xen allocates them: the L4 first (`pt_base`), then for the first 2 MiB block an L1, an L2 and an
//! L3, then one L1 per further 2 MiB block, each followed by a new L2 when it starts a 1 GiB block
//! and a new L3 when it starts a 512 GiB block. An `INIT_P2M` list outside the region is mapped the
//! same way by tables of its own, allocated in the same order right after the list's pages.

use super::layout::{Layout, PAGE_SIZE};
pub use crate::mm::PtLevel;

/// `_PAGE_PRESENT`.
pub const PAGE_PRESENT: u64 = 1 << 0;
/// `_PAGE_RW`.
pub const PAGE_RW: u64 = 1 << 1;
/// `_PAGE_USER`: 64-bit PV kernels run in ring 3, so their own mappings are user mappings.
pub const PAGE_USER: u64 = 1 << 2;
/// `_PAGE_ACCESSED`.
pub const PAGE_ACCESSED: u64 = 1 << 5;
/// `_PAGE_DIRTY`.
pub const PAGE_DIRTY: u64 = 1 << 6;
/// `_PAGE_GUEST_KERNEL`: a software bit (Xen's flag `1U << 12`, stored by `put_pte_flags` at PTE
/// bit 52) marking a 64-bit PV guest's kernel mappings (`xen/arch/x86/include/asm/x86_64/page.h`).
pub const PAGE_GUEST_KERNEL: u64 = 1 << 52;
/// Address bits of a PTE.
pub const PTE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// `BASE_PROT`: present, writable, accessed, user.
const BASE_PROT: u64 = PAGE_PRESENT | PAGE_RW | PAGE_ACCESSED | PAGE_USER;
/// `L1_PROT` of `dom0_build.c`: no `_PAGE_DIRTY` (the CPU sets it on the first write).
pub const L1_PROT: u64 = BASE_PROT | PAGE_GUEST_KERNEL;
/// `L2_PROT`.
pub const L2_PROT: u64 = BASE_PROT | PAGE_DIRTY;
/// `L3_PROT`.
pub const L3_PROT: u64 = BASE_PROT | PAGE_DIRTY;
/// `L4_PROT`.
pub const L4_PROT: u64 = BASE_PROT | PAGE_DIRTY;

/// First L4 slot Xen reserves in every 64-bit PV guest's L4 (`ROOT_PAGETABLE_FIRST_XEN_SLOT`).
pub const FIRST_XEN_SLOT: usize = 256;
/// Number of reserved L4 slots (256..272).
pub const XEN_SLOTS: usize = 16;

/// One bootstrap page-table frame: its pfn in the region, its level, and the first virtual
/// address of the region it translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtFrame {
    /// Page index in the region (pfn).
    pub pfn: u64,
    /// Table level.
    pub level: PtLevel,
    /// First virtual address of the region that goes through this table.
    pub va: u64,
}

/// One 2 MiB block of the region and the tables Xen allocates when its mapping reaches it.
#[derive(Clone, Copy, Debug)]
struct Block {
    /// First mapped address of the block (`v_start` for the first block).
    va: u64,
    /// One past the last mapped address of the block.
    end: u64,
    /// The block's L1.
    l1: u64,
    /// A new L2, allocated right after the L1, if the block starts a 1 GiB block (or the region).
    l2: Option<u64>,
    /// A new L3, allocated right after the L2, if the block starts a 512 GiB block (or the region).
    l3: Option<u64>,
}

const BLOCK: u64 = 1 << 21;

/// The region's 2 MiB blocks, with table pfns assigned in Xen's order after the L4.
fn blocks(layout: &Layout) -> impl Iterator<Item = Block> + '_ {
    blocks_of(
        layout.v_start,
        layout.v_end,
        layout.pfn_of(layout.page_tables.start) + 1,
    )
}

/// The pages of an `INIT_P2M` list: `(first va, one past the last, first pfn)`, or `None` when the
/// list lies in the region.
fn p2m_mapping(layout: &Layout) -> Option<(u64, u64, u64)> {
    if layout.p2m_tables == 0 {
        return None;
    }
    let end = layout.p2m.end.next_multiple_of(PAGE_SIZE);
    Some((layout.p2m.start, end, layout.p2m_pfn))
}

/// The 2 MiB blocks of the `INIT_P2M` list's mapping (none when the list is in the region), with
/// table pfns assigned after the list's own pages.
fn p2m_blocks(layout: &Layout) -> impl Iterator<Item = Block> + '_ {
    let (start, end, pfn) = p2m_mapping(layout).unwrap_or((0, 0, 0));
    blocks_of(start, end, pfn + (end - start) / PAGE_SIZE)
}

/// The 2 MiB blocks of `[start, end)`, with table pfns assigned in Xen's order from `next_pfn`.
fn blocks_of(start: u64, end_all: u64, mut next_pfn: u64) -> impl Iterator<Item = Block> {
    let mut va = start;
    core::iter::from_fn(move || {
        if va >= end_all {
            return None;
        }
        let first = va == start;
        let end = ((va & !(BLOCK - 1)) + BLOCK).min(end_all);
        let mut take = || {
            next_pfn += 1;
            next_pfn - 1
        };
        let l1 = take();
        let l2 = (first || va.is_multiple_of(1 << 30)).then(&mut take);
        let l3 = (first || va.is_multiple_of(1 << 39)).then(&mut take);
        let block = Block {
            va,
            end,
            l1,
            l2,
            l3,
        };
        va = end;
        Some(block)
    })
}

/// The page-table frames of `layout` in Xen's allocation order: the `nr_pt_frames` of the region,
/// the L4 first, then the `p2m_tables` that map an `INIT_P2M` list.
pub fn frames(layout: &Layout) -> impl Iterator<Item = PtFrame> + '_ {
    let l4 = PtFrame {
        pfn: layout.pfn_of(layout.page_tables.start),
        level: PtLevel::L4,
        va: layout.v_start,
    };
    core::iter::once(l4).chain(blocks(layout).chain(p2m_blocks(layout)).flat_map(|b| {
        let frame = |level| {
            move |pfn| PtFrame {
                pfn,
                level,
                va: b.va,
            }
        };
        [
            Some(b.l1).map(frame(PtLevel::L1)),
            b.l2.map(frame(PtLevel::L2)),
            b.l3.map(frame(PtLevel::L3)),
        ]
        .into_iter()
        .flatten()
    }))
}

/// Index of `va` in a table of `level`.
pub const fn table_index(level: PtLevel, va: u64) -> usize {
    let shift = match level {
        PtLevel::L1 => 12,
        PtLevel::L2 => 21,
        PtLevel::L3 => 30,
        PtLevel::L4 => 39,
    };
    ((va >> shift) & 511) as usize
}

/// Writes every entry of the bootstrap tables for `layout` except the hypervisor's L4 slots, with
/// pfn `n` of the domain at machine frame `mfn_of(n)`, by calling `write(table_pfn, index, value)`.
/// The tables must be zeroed beforehand.
///
/// L4, L3 and L2 entries get `L4_PROT`/`L3_PROT`/`L2_PROT`; each page of the region gets an L1
/// entry with `L1_PROT`, minus `_PAGE_RW` for the page-table pages themselves
/// (`mark_pv_pt_pages_rdonly`); each page of an `INIT_P2M` list gets a writable L1 entry.
pub fn write_entries<E>(
    layout: &Layout,
    mfn_of: impl Fn(u64) -> u64,
    mut write: impl FnMut(u64, usize, u64) -> Result<(), E>,
) -> Result<(), E> {
    let l4 = layout.pfn_of(layout.page_tables.start);
    let pt_pfns = l4..l4 + layout.nr_pt_frames;
    map_blocks(l4, blocks(layout), &mfn_of, &mut write, |va| {
        let pfn = layout.pfn_of(va);
        let prot = if pt_pfns.contains(&pfn) {
            L1_PROT & !PAGE_RW
        } else {
            L1_PROT
        };
        (pfn, prot)
    })?;
    if let Some((start, _, first_pfn)) = p2m_mapping(layout) {
        map_blocks(l4, p2m_blocks(layout), &mfn_of, &mut write, |va| {
            (first_pfn + (va - start) / PAGE_SIZE, L1_PROT)
        })?;
    }
    Ok(())
}

/// Writes the entries for `blocks` under the L4 `l4`: each block's tables linked in (the first
/// block allocates an L3 and an L2), and each page `va` of a block mapped as `page(va)` gives
/// (pfn, L1 flags).
fn map_blocks<E>(
    l4: u64,
    blocks: impl Iterator<Item = Block>,
    mfn_of: &impl Fn(u64) -> u64,
    write: &mut impl FnMut(u64, usize, u64) -> Result<(), E>,
    page: impl Fn(u64) -> (u64, u64),
) -> Result<(), E> {
    let mut l3 = 0;
    let mut l2 = 0;
    for b in blocks {
        if let Some(new_l2) = b.l2 {
            if let Some(new_l3) = b.l3 {
                l3 = new_l3;
                write(
                    l4,
                    table_index(PtLevel::L4, b.va),
                    (mfn_of(l3) << 12) | L4_PROT,
                )?;
            }
            l2 = new_l2;
            write(
                l3,
                table_index(PtLevel::L3, b.va),
                (mfn_of(l2) << 12) | L3_PROT,
            )?;
        }
        write(
            l2,
            table_index(PtLevel::L2, b.va),
            (mfn_of(b.l1) << 12) | L2_PROT,
        )?;
        for va in (b.va..b.end).step_by(PAGE_SIZE as usize) {
            let (pfn, prot) = page(va);
            write(
                b.l1,
                table_index(PtLevel::L1, va),
                (mfn_of(pfn) << 12) | prot,
            )?;
        }
    }
    Ok(())
}
