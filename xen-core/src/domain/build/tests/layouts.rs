//! The initial region's layout, against Xen 4.17's for the same guest.

use super::*;

/// Xen 4.17's own report for our guest kernel as dom0 with `dom0_mem=64M` (16384 pages):
///
/// ```text
/// (XEN)  Dom0 alloc.:   000000001ec00000->000000001f000000 (15360 pages to be allocated)
/// (XEN)  Loaded kernel: 0000000000100000->0000000000123000
/// (XEN)  Phys-Mach map: 0000000000123000->0000000000143000
/// (XEN)  Start info:    0000000000143000->00000000001434b8
/// (XEN)  Page tables:   0000000000144000->0000000000149000
/// (XEN)  Boot stack:    0000000000149000->000000000014a000
/// (XEN)  TOTAL:         0000000000000000->0000000000400000
/// ```
pub(super) fn check_xen_4_17_guest_layout(l: &Layout) {
    assert_eq!(
        l.p2m,
        Region {
            start: 0x123000,
            end: 0x143000
        }
    );
    assert_eq!(
        l.start_info,
        Region {
            start: 0x143000,
            end: 0x1434b8
        }
    );
    assert_eq!(
        l.page_tables,
        Region {
            start: 0x144000,
            end: 0x149000
        }
    );
    assert_eq!(
        l.stack,
        Region {
            start: 0x149000,
            end: 0x14a000
        }
    );
    assert_eq!((l.v_start, l.v_end), (0, 0x400000));
    assert_eq!(l.nr_pt_frames, 5);
    // The initial allocation is 0x400000 bytes = 1024 pages; Xen reports the rest "to be
    // allocated" and those pages start at first_p2m_pfn.
    assert_eq!((l.first_p2m_pfn, l.nr_p2m_frames), (1024, 0));
    assert_eq!((l.xenstore, l.console), (None, None));
}

#[test]
fn layout_matches_xen_4_17_for_our_guest() {
    let l = Layout::compute(0, 0x100000, 0x123000, 16384, true).unwrap();
    assert_eq!(
        l.kernel,
        Region {
            start: 0x100000,
            end: 0x123000
        }
    );
    check_xen_4_17_guest_layout(&l);
    let text = l.arrangement().to_string();
    assert!(text.contains(" Start info:    0000000000143000->00000000001434b8 (pfn 0x143)"));
    assert!(text.ends_with(" TOTAL:         0000000000000000->0000000000400000"));
}

#[test]
fn layout_pads_at_least_512_kib_after_the_stack() {
    // Stack end just below a 4 MiB boundary: the region grows by another 4 MiB.
    let kend = 0x3a_0000;
    let l = Layout::compute(0, 0x10_0000, kend, 1024, true);
    let l = match l {
        Ok(l) => l,
        Err(LayoutError::TooFewPages { need, .. }) => {
            Layout::compute(0, 0x10_0000, kend, need, true).unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    assert!(l.v_end - l.stack.end >= 512 << 10);
    assert_eq!(l.v_end % (4 << 20), 0);
    assert_eq!(l.v_end, 8 << 20);
}

#[test]
fn dom0_needs_the_power_of_two_initial_allocation() {
    // A 4 MiB region needs 1024 pages; with 1023 Xen panics, we refuse.
    let err = Layout::compute(0, 0x100000, 0x101000, 1023, true).unwrap_err();
    assert_eq!(
        err,
        LayoutError::TooFewPages {
            nr_pages: 1023,
            need: 1024
        }
    );
    // A domU needs the region itself; here the region is still 4 MiB.
    assert!(Layout::compute(0, 0x100000, 0x101000, 1023, false).is_err());
    assert!(Layout::compute(0, 0x100000, 0x101000, 1024, false).is_ok());
}

#[test]
fn domu_layout_has_xenstore_and_console_pages() {
    let l = Layout::compute(0, 0x100000, 0x123000, 4096, false).unwrap();
    assert_eq!(
        l.p2m,
        Region {
            start: 0x123000,
            end: 0x12b000
        }
    );
    assert_eq!(
        l.start_info,
        Region {
            start: 0x12b000,
            end: 0x12b490
        }
    );
    assert_eq!(
        l.xenstore,
        Some(Region {
            start: 0x12c000,
            end: 0x12d000
        })
    );
    assert_eq!(
        l.console,
        Some(Region {
            start: 0x12d000,
            end: 0x12e000
        })
    );
    assert_eq!(l.page_tables.start, 0x12e000);
    // libxenguest reports the p2m list's own pages.
    assert_eq!((l.first_p2m_pfn, l.nr_p2m_frames), (0x123, 8));
}

#[test]
fn layouts_that_cannot_exist_are_refused() {
    let upper = 0xffff_8000_0000_0000u64;
    assert_eq!(
        Layout::compute(upper, upper, upper + 0x1000, 4096, true).unwrap_err(),
        LayoutError::OverlapsHypervisor {
            v_start: upper,
            v_end: upper + (4 << 20)
        }
    );
    // Less than 512 KiB below the hole: the padding pushes the region across it.
    let hole = (1u64 << 47) - 0x4_0000;
    assert_eq!(
        Layout::compute(hole, hole, hole + 0x1000, 4096, true).unwrap_err(),
        LayoutError::NotCanonical { v_start: hole }
    );
    let top = u64::MAX - 0x1fff;
    assert_eq!(
        Layout::compute(top - 0xfff, top, top + 0x1000, 4096, true).unwrap_err(),
        LayoutError::AddressOverflow
    );
    assert_eq!(
        Layout::compute(0, 0x1000, 0x2000, u64::MAX / 4, true).unwrap_err(),
        LayoutError::AddressOverflow
    );
}

#[test]
fn page_table_frames_follow_xens_allocation_order() {
    // A region crossing a 512 GiB boundary: 2 L3s, 2 L2s, and one L1 per 2 MiB.
    let v_start = (512u64 << 30) - (4 << 20);
    let l = Layout::compute(v_start, v_start, v_start + 0x3c_0000, 8192, true).unwrap();
    let levels: Vec<PtLevel> = pagetables::frames(&l).map(|f| f.level).collect();
    use PtLevel::*;
    let l1s = (l.v_end - v_start) >> 21;
    assert_eq!(l1s, 4);
    assert_eq!(levels, vec![L4, L1, L2, L3, L1, L1, L2, L3, L1]);
    assert_eq!(levels.len() as u64, l.nr_pt_frames);
    assert_eq!(
        l.nr_pt_frames,
        layout::page_tables_needed(l.v_start, l.v_end)
    );
    let pfns: Vec<u64> = pagetables::frames(&l).map(|f| f.pfn).collect();
    let first = l.pfn_of(l.page_tables.start);
    assert_eq!(pfns, (first..first + l.nr_pt_frames).collect::<Vec<_>>());
}
