//! Building into fake machine memory, and the real guest kernel when it has been built.

use super::*;

const MIB: u64 = 1 << 20;
/// The fake machine: 40 MiB of RAM at 0, all usable above 1 MiB.
const MACHINE_SIZE: u64 = 40 * MIB;
/// Reserved for a pretend hypervisor image.
const XEN_IMAGE: std::ops::Range<u64> = 2 * MIB..3 * MIB;
const CANARY: u8 = 0xa5;
const SHARED_INFO: Mfn = Mfn(0x250);

fn hypervisor_slots() -> [u64; 16] {
    core::array::from_fn(|i| 0x0bad_0000_0000_0063 | ((0x300 + i as u64) << 12))
}

struct Machine {
    mem: FakeMemory,
    frames: BootFrameAllocator,
    m2p: BTreeMap<u64, u64>,
}

impl Machine {
    fn new() -> Self {
        let mut mem = FakeMemory::new(0, MACHINE_SIZE as usize);
        mem.bytes.fill(CANARY);
        let regions = [MemoryRegion {
            base: crate::mm::Maddr(0),
            len: MACHINE_SIZE,
            kind: MemoryKind::Usable,
        }];
        let frames = BootFrameAllocator::new(
            regions,
            &[crate::mm::Maddr(XEN_IMAGE.start)..crate::mm::Maddr(XEN_IMAGE.end)],
        )
        .unwrap();
        Self {
            mem,
            frames,
            m2p: BTreeMap::new(),
        }
    }

    fn build(&mut self, params: &BuildParams<'_>) -> Result<BuiltDomain, BuildError> {
        let m2p = &mut self.m2p;
        build(&mut self.mem, &mut self.frames, params, |mfn, pfn| {
            assert!(m2p.insert(mfn.0, pfn.0).is_none(), "M2P set twice");
        })
    }

    /// Reads guest virtual memory through the domain's page tables, a page piece at a time.
    fn read_va(&self, d: &BuiltDomain, va: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let cur = va + out.len() as u64;
            let n = (4096 - (cur & 0xfff) as usize).min(len - out.len());
            let m = translate(&self.mem, d.l4, cur, false).expect("unmapped");
            out.extend_from_slice(self.mem.read(m, n).unwrap());
        }
        out
    }

    fn entry(&self, table: Mfn, index: u64) -> u64 {
        self.mem
            .read_u64(crate::mm::Maddr((table.0 << 12) + index * 8))
            .unwrap()
    }
}

fn params(image: &[u8], nr_pages: u64, kind: DomainKind) -> BuildParams<'_> {
    BuildParams {
        image,
        initrd: &[],
        cmdline: "console=hvc0 root=/dev/xvda",
        nr_pages,
        kind,
        hypervisor_l4_slots: hypervisor_slots(),
        shared_info: SHARED_INFO,
    }
}

/// Everything a built domain must satisfy, whatever its layout.
fn check_domain(m: &Machine, d: &BuiltDomain, elf: &Elf, kind: DomainKind) {
    let l = &d.layout;
    let region = l.v_start..l.v_end;

    // Every page of the region maps to the frame of its pfn; page tables read-only, rest writable.
    let pt_pfns = l.pfn_of(l.page_tables.start)..l.pfn_of(l.page_tables.end);
    for va in region.clone().step_by(PAGE_SIZE as usize) {
        let pfn = l.pfn_of(va);
        let want = d.mfn(Pfn(pfn)).maddr();
        assert_eq!(translate(&m.mem, d.l4, va, false), Some(want), "va {va:#x}");
        let writable = translate(&m.mem, d.l4, va, true).is_some();
        assert_eq!(writable, !pt_pfns.contains(&pfn), "va {va:#x}");
    }
    // Nothing around the region is mapped.
    if l.v_start >= PAGE_SIZE {
        assert_eq!(translate(&m.mem, d.l4, l.v_start - PAGE_SIZE, false), None);
    }
    assert_eq!(translate(&m.mem, d.l4, l.v_end, false), None);

    // Entry flags at every level, walking the tables by hand.
    let mut l1_tables = Vec::new();
    for i4 in 0..512u64 {
        let e4 = m.entry(d.l4, i4);
        if (256..272).contains(&i4) {
            assert_eq!(e4, hypervisor_slots()[i4 as usize - 256]);
            continue;
        }
        if e4 == 0 {
            continue;
        }
        assert_eq!(e4 & !PTE_ADDR_MASK, L4_PROT, "L4[{i4}]");
        let l3 = Mfn((e4 & PTE_ADDR_MASK) >> 12);
        for i3 in 0..512 {
            let e3 = m.entry(l3, i3);
            if e3 != 0 {
                assert_eq!(e3 & !PTE_ADDR_MASK, L3_PROT);
                let l2 = Mfn((e3 & PTE_ADDR_MASK) >> 12);
                for i2 in 0..512 {
                    let e2 = m.entry(l2, i2);
                    if e2 != 0 {
                        assert_eq!(e2 & !PTE_ADDR_MASK, L2_PROT);
                        l1_tables.push(Mfn((e2 & PTE_ADDR_MASK) >> 12));
                    }
                }
            }
        }
    }
    let mut mapped = 0;
    for &t in &l1_tables {
        for i in 0..512 {
            let e = m.entry(t, i);
            if e == 0 {
                continue;
            }
            mapped += 1;
            let flags = e & !PTE_ADDR_MASK;
            assert!(flags == L1_PROT || flags == L1_PROT & !PAGE_RW, "{e:#x}");
            assert_ne!(e & PAGE_GUEST_KERNEL, 0);
            assert_ne!(e & PAGE_USER, 0);
        }
    }
    // An INIT_P2M list is mapped page by page outside the region, writable.
    let p2m_outside_pages = if l.p2m_tables > 0 {
        l.nr_p2m_frames - l.p2m_tables
    } else {
        0
    };
    for i in 0..p2m_outside_pages {
        let va = l.p2m.start + i * PAGE_SIZE;
        let want = d.mfn(Pfn(l.p2m_pfn + i)).maddr();
        assert_eq!(
            translate(&m.mem, d.l4, va, true),
            Some(want),
            "p2m va {va:#x}"
        );
        assert!(!region.contains(&va));
    }
    assert_eq!(mapped, l.region_pages() + p2m_outside_pages);

    // The page-table frames the hypervisor is told about are exactly the tables in use.
    let frames: Vec<(Mfn, PtLevel)> = d.page_table_frames().collect();
    assert_eq!(frames.len() as u64, l.nr_pt_frames + l.p2m_tables);
    assert_eq!(frames[0], (d.l4, PtLevel::L4));
    let mut reported_l1s: Vec<Mfn> = frames
        .iter()
        .filter(|f| f.1 == PtLevel::L1)
        .map(|f| f.0)
        .collect();
    reported_l1s.sort();
    l1_tables.sort();
    assert_eq!(reported_l1s, l1_tables);
    assert_eq!(d.l4, d.mfn(Pfn(l.pfn_of(l.page_tables.start))));

    // start_info, read through the guest's own mapping at RSI.
    let si = StartInfo::read_from_bytes(&m.read_va(d, d.start_info_va, 1168)).unwrap();
    assert_eq!(si.magic_bytes(), b"xen-3.0-x86_64");
    assert_eq!(si.nr_pages, d.nr_pages);
    assert_eq!(si.shared_info, SHARED_INFO.maddr().0);
    assert_eq!(si.pt_base, l.page_tables.start);
    assert_eq!(si.nr_pt_frames, l.nr_pt_frames);
    assert_eq!(si.mfn_list, l.p2m.start);
    match l.initrd {
        Some(r) => {
            assert_eq!((si.mod_start, si.mod_len), (r.start, r.end - r.start));
            assert_eq!(
                si.flags & SIF_MOD_START_PFN,
                0,
                "a virtual address, not a pfn"
            );
            assert_eq!(r.start, l.kernel.end.next_multiple_of(4096));
            assert_eq!(
                l.p2m.start.min(l.start_info.start),
                r.end.next_multiple_of(4096)
            );
        }
        None => assert_eq!((si.mod_start, si.mod_len), (0, 0)),
    }
    assert_eq!(si.cmd_line_bytes(), b"console=hvc0 root=/dev/xvda");
    assert_eq!(
        (si.first_p2m_pfn, si.nr_p2m_frames),
        (l.first_p2m_pfn, l.nr_p2m_frames)
    );
    match kind {
        DomainKind::Dom0 => {
            assert_eq!(si.flags, 0x303);
            assert_eq!((si.store_mfn, si.store_evtchn, si.console), (0, 0, [0, 0]));
        }
        DomainKind::DomU {
            store_evtchn,
            console_evtchn,
        } => {
            assert_eq!(si.flags, 0);
            let store = l.xenstore.unwrap().start;
            let console = l.console.unwrap().start;
            assert_eq!(si.store_mfn, d.mfn(Pfn(l.pfn_of(store))).0);
            assert_eq!(si.store_evtchn, store_evtchn);
            assert_eq!(si.console_domu_mfn(), d.mfn(Pfn(l.pfn_of(console))).0);
            assert_eq!(si.console_domu_evtchn(), console_evtchn);
            assert!(m.read_va(d, store, 4096).iter().all(|&b| b == 0));
            assert!(m.read_va(d, console, 4096).iter().all(|&b| b == 0));
        }
    }

    // The p2m list through the guest's mapping, and the M2P the hypervisor was told.
    let p2m = m.read_va(d, l.p2m.start, d.nr_pages as usize * 8);
    for (pfn, e) in p2m.chunks_exact(8).enumerate() {
        let mfn = u64::from_le_bytes(e.try_into().unwrap());
        assert_eq!(mfn, d.mfn_base.0 + pfn as u64);
        assert_eq!(m.m2p.get(&mfn), Some(&(pfn as u64)));
    }
    assert_eq!(m.m2p.len() as u64, d.nr_pages);

    // The image, byte for byte, with bss zeroed and the hypercall page written.
    let image = elf.bytes();
    let virt_offset = KernelImage::parse(&image).unwrap().addrs.virt_offset;
    for s in elf.segs.iter().filter(|s| s.p_type == PT_LOAD) {
        let va = s.paddr.wrapping_add(virt_offset);
        let got = m.read_va(d, va, s.memsz as usize);
        let mut want = s.data.clone();
        want.resize(s.memsz as usize, 0);
        if let Some(hc) = d.hypercall_page {
            if (va..va + s.memsz).contains(&hc) {
                let mut page = [0u8; 4096];
                write_hypercall_page(&mut page);
                let at = (hc - va) as usize;
                want[at..at + 4096].copy_from_slice(&page);
            }
        }
        assert_eq!(got, want, "segment at {va:#x}");
    }
    assert_eq!(d.stack_top, l.stack.end);
    assert!(m.read_va(d, l.stack.start, 4096).iter().all(|&b| b == 0));

    // No byte outside the domain's frames was touched.
    let first = d.mfn_base.maddr().0 as usize;
    let last = first + d.nr_pages as usize * 4096;
    assert!(m.mem.bytes[..first].iter().all(|&b| b == CANARY));
    assert!(m.mem.bytes[last..].iter().all(|&b| b == CANARY));
}

#[test]
fn builds_dom0_from_the_good_image() {
    let elf = Elf::good();
    let image = elf.bytes();
    let mut m = Machine::new();
    let d = m.build(&params(&image, 2048, DomainKind::Dom0)).unwrap();
    assert_eq!(d.entry, TEXT);
    assert_eq!(d.flags, DOM0_FLAGS);
    assert_eq!(d.start_info_va, d.layout.start_info.start);
    assert_eq!(d.hypercall_page, Some(HYPERCALL));
    // Highest free frames: the machine ends at 40 MiB.
    assert_eq!(d.mfn_base, Mfn((MACHINE_SIZE >> 12) - 2048));
    check_domain(&m, &d, &elf, DomainKind::Dom0);
}

#[test]
fn builds_a_domu_with_its_rings() {
    let elf = Elf::good().without(XEN_ELFNOTE_SUPPORTED_FEATURES);
    let image = elf.bytes();
    let mut m = Machine::new();
    let kind = DomainKind::DomU {
        store_evtchn: 1,
        console_evtchn: 2,
    };
    let d = m.build(&params(&image, 1024, kind)).unwrap();
    check_domain(&m, &d, &elf, kind);
}

#[test]
fn builds_a_linux_style_high_kernel_across_l3_and_l2_tables() {
    // Linux's shape: VIRT_BASE 0xffffffff80000000, PADDR_OFFSET 0, physical load addresses.
    let virt_base = 0xffff_ffff_8000_0000u64;
    let mut elf = Elf::good()
        .with(num_note(XEN_ELFNOTE_VIRT_BASE, virt_base))
        .with(num_note(XEN_ELFNOTE_ENTRY, virt_base + TEXT))
        .with(num_note(XEN_ELFNOTE_HYPERCALL_PAGE, virt_base + HYPERCALL))
        .without(XEN_ELFNOTE_PADDR_OFFSET);
    elf.entry = virt_base + TEXT;
    let image = elf.bytes();
    let mut m = Machine::new();
    let d = m.build(&params(&image, 2048, DomainKind::Dom0)).unwrap();
    assert_eq!(d.layout.v_start, virt_base);
    assert_eq!(d.entry, virt_base + TEXT);
    check_domain(&m, &d, &elf, DomainKind::Dom0);
}

/// Linux's notes: high VIRT_BASE and INIT_P2M at 512 GiB.
fn linux_like(init_p2m: u64) -> Elf {
    let virt_base = 0xffff_ffff_8000_0000u64;
    let mut elf = Elf::good()
        .with(num_note(XEN_ELFNOTE_VIRT_BASE, virt_base))
        .with(num_note(XEN_ELFNOTE_ENTRY, virt_base + TEXT))
        .with(num_note(XEN_ELFNOTE_INIT_P2M, init_p2m))
        .without(XEN_ELFNOTE_HYPERCALL_PAGE)
        .without(XEN_ELFNOTE_PADDR_OFFSET);
    elf.entry = virt_base + TEXT;
    elf
}

#[test]
fn init_p2m_places_the_p2m_list_outside_the_initial_mapping() {
    let init_p2m = 0x80_0000_0000u64;
    let elf = linux_like(init_p2m);
    let image = elf.bytes();
    for kind in [
        DomainKind::Dom0,
        DomainKind::DomU {
            store_evtchn: 1,
            console_evtchn: 2,
        },
    ] {
        let mut m = Machine::new();
        let nr_pages = 4096;
        let d = m.build(&params(&image, nr_pages, kind)).unwrap();
        let l = &d.layout;
        assert_eq!(l.p2m.start, init_p2m);
        assert_eq!(l.p2m.end, init_p2m + nr_pages * 8);
        // start_info follows the kernel directly.
        assert_eq!(l.start_info.start, l.kernel.end.next_multiple_of(PAGE_SIZE));
        // 8 pages of list, one L3, one L2 and one L1 to map them, after the initial allocation.
        let first = match kind {
            DomainKind::Dom0 => l.region_pages().next_power_of_two(),
            DomainKind::DomU { .. } => l.region_pages(),
        };
        assert_eq!((l.first_p2m_pfn, l.nr_p2m_frames), (first, 8 + 3));
        assert_eq!((l.p2m_pfn, l.p2m_tables), (first, 3));
        assert!(d.hypercall_page.is_none());
        check_domain(&m, &d, &elf, kind);
    }
}

#[test]
fn init_p2m_placement_is_checked() {
    let mut m = Machine::new();
    let refused = |m: &mut Machine, va: u64| match m.build(&params(
        &linux_like(va).bytes(),
        4096,
        DomainKind::Dom0,
    )) {
        Err(BuildError::Layout(LayoutError::P2mPlacement { va: got, reason })) => {
            assert_eq!(got, va);
            let text = BuildError::Layout(LayoutError::P2mPlacement { va, reason }).to_string();
            assert!(text.contains("INIT_P2M"), "{text}");
            reason
        }
        other => panic!("INIT_P2M {va:#x}: {other:?}"),
    };
    assert_eq!(refused(&mut m, 0x80_0000_0123), "not page aligned");
    assert!(refused(&mut m, (1 << 47) - 4096).contains("non-canonical"));
    assert!(refused(&mut m, 0xffff_8000_0000_0000).contains("hypervisor"));
    // The kernel's own 512 GiB slot (but outside the image).
    assert!(refused(&mut m, 0xffff_ff80_0000_0000).contains("slot"));
    // Inside the image: libelf's own check.
    let e = linux_like(0xffff_ffff_8010_0000);
    assert!(matches!(
        KernelImage::parse(&e.bytes()),
        Err(BuildError::Note(NoteError::InitP2mInsideImage { .. }))
    ));
    // Too few pages for the list after the initial allocation.
    let image = linux_like(0x80_0000_0000).bytes();
    // 1024 pages: the initial allocation takes all of them (a 4 MiB region, a power of two), the
    // 1024 entries need 2 pages and their mapping an L3, an L2 and an L1.
    let err = plan(&params(&image, 1024, DomainKind::Dom0)).map(|_| ());
    assert_eq!(
        err,
        Err(BuildError::Layout(LayoutError::TooFewPages {
            nr_pages: 1024,
            need: 1024 + 2 + 3
        }))
    );
    // 1030 pages: 1030 entries take 3 pages.
    assert!(plan(&params(&image, 1030, DomainKind::Dom0)).is_ok());
}

#[test]
fn builds_a_region_crossing_512_gib() {
    let virt_base = (512u64 << 30) - (4 << 20);
    let mut elf = Elf::good()
        .with(num_note(XEN_ELFNOTE_VIRT_BASE, virt_base))
        .with(num_note(XEN_ELFNOTE_PADDR_OFFSET, 0))
        .with(num_note(XEN_ELFNOTE_ENTRY, virt_base + TEXT))
        .with(num_note(XEN_ELFNOTE_HYPERCALL_PAGE, virt_base + HYPERCALL));
    // 3 MiB of bss: the region ends past the 512 GiB line.
    elf.segs[1].memsz = 3 * MIB;
    let image = elf.bytes();
    let mut m = Machine::new();
    let d = m.build(&params(&image, 4096, DomainKind::Dom0)).unwrap();
    assert!(d.layout.v_end > 512 << 30);
    let l3s = d.page_table_frames().filter(|f| f.1 == PtLevel::L3).count();
    assert_eq!(l3s, 2);
    check_domain(&m, &d, &elf, DomainKind::Dom0);
}

#[test]
fn an_initrd_is_mapped_after_the_kernel_and_named_in_start_info() {
    let elf = Elf::good();
    let image = elf.bytes();
    // Not a multiple of a page, and with no zero byte, so a short copy or a misplaced one shows.
    let initrd: Vec<u8> = (0..3 * 4096 + 123).map(|i| (i % 251) as u8 + 1).collect();
    for kind in [
        DomainKind::Dom0,
        DomainKind::DomU {
            store_evtchn: 1,
            console_evtchn: 2,
        },
    ] {
        let mut m = Machine::new();
        let p = BuildParams {
            initrd: &initrd,
            ..params(&image, 2048, kind)
        };
        let d = m.build(&p).unwrap();
        let r = d.layout.initrd.expect("an initrd region");
        assert_eq!(r.end - r.start, initrd.len() as u64);
        assert_eq!(m.read_va(&d, r.start, initrd.len()), initrd);
        // The rest of its last page is zero.
        let tail = r.end.next_multiple_of(4096) - r.end;
        assert!(m.read_va(&d, r.end, tail as usize).iter().all(|&b| b == 0));
        check_domain(&m, &d, &elf, kind);
        assert!(d
            .layout
            .arrangement()
            .to_string()
            .contains(" Init. ramdisk: "));
    }
}

#[test]
fn an_initrd_too_large_for_the_domain_is_refused_before_any_frame_is_taken() {
    let image = Elf::good().bytes();
    let mut m = Machine::new();
    let free = m.frames.free_frames();
    let big = vec![1u8; 1024 * 4096];
    let err = m
        .build(&BuildParams {
            initrd: &big,
            ..params(&image, 1024, DomainKind::Dom0)
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the initrd (4194304 bytes) does not fit in the domain's 4096 KiB"
    );
    // Smaller than the domain, but not with the kernel and the rest of the initial mapping.
    let err = m
        .build(&BuildParams {
            initrd: &big[..1000 * 4096],
            ..params(
                &image,
                1024,
                DomainKind::DomU {
                    store_evtchn: 1,
                    console_evtchn: 2,
                },
            )
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::Layout(LayoutError::TooFewPages { nr_pages: 1024, .. })
        ),
        "{err}"
    );
    assert_eq!(m.frames.free_frames(), free);
    assert!(m.mem.bytes.iter().all(|&b| b == CANARY));
}

#[test]
fn the_command_line_is_truncated_like_strlcpy() {
    let image = Elf::good().bytes();
    let long = "x".repeat(2000);
    let mut m = Machine::new();
    let p = BuildParams {
        cmdline: &long,
        ..params(&image, 1024, DomainKind::Dom0)
    };
    let d = m.build(&p).unwrap();
    let si = StartInfo::read_from_bytes(&m.read_va(&d, d.start_info_va, 1168)).unwrap();
    assert_eq!(si.cmd_line_bytes().len(), 1023);
    assert_eq!(si.cmd_line[1023], 0);
}

#[test]
fn refusals_happen_before_any_frame_is_taken() {
    let mut m = Machine::new();
    let free = m.frames.free_frames();
    let bad = Elf::good()
        .with(str_note(XEN_ELFNOTE_XEN_VERSION, "xen-2.0"))
        .bytes();
    let err = m.build(&params(&bad, 1024, DomainKind::Dom0)).unwrap_err();
    assert!(matches!(
        err,
        BuildError::Note(NoteError::BadXenVersion { .. })
    ));
    let good = Elf::good().bytes();
    let err = m.build(&params(&good, 1000, DomainKind::Dom0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1000 pages are too few for the initial mapping, which needs 1024"
    );
    assert_eq!(m.frames.free_frames(), free);
    // More pages than the machine has.
    let err = m
        .build(&params(&good, 1 << 20, DomainKind::Dom0))
        .unwrap_err();
    assert_eq!(err, BuildError::OutOfMemory { nr_pages: 1 << 20 });
    assert!(m.mem.bytes.iter().all(|&b| b == CANARY));
}

// ---------------------------------------------------------------------------------------------
// The real guest kernel, if it has been built.

fn guest_kernel() -> Option<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        "build/guest-kernel",
        "target/x86_64-unknown-none/kernel/guest-kernel",
    ]
    .iter()
    .find_map(|p| std::fs::read(root.join(p)).ok())
}

#[test]
fn the_real_guest_kernel_is_accepted_and_laid_out_as_on_xen_4_17() {
    let Some(image) = guest_kernel() else {
        println!("SKIP: guest-kernel image not built (make images); skipping this test");
        return;
    };
    let k = KernelImage::parse(&image).unwrap();
    k.check_kind(DomainKind::Dom0).unwrap();
    assert_eq!(k.addrs.kstart, 0x100000);
    let p = params(&image, 16384, DomainKind::Dom0);
    let (_, layout) = plan(&p).unwrap();
    // The kernel's end moves as the kernel grows; the rest of Xen's arithmetic is checked against
    // Xen's own report while the image still ends where it did then.
    if layout.kernel.end == 0x123000 {
        super::layouts::check_xen_4_17_guest_layout(&layout);
    }
    let mut m = Machine::new();
    // 16 MiB, the smallest domain any run builds (the image alone, with its 4 MiB heap and the
    // TCP/IP stack, no longer leaves room for Xen's layout in 8 MiB).
    let d = m
        .build(&BuildParams {
            nr_pages: 4096,
            ..p
        })
        .unwrap();
    let hc = k
        .addrs
        .hypercall_page
        .expect("the guest has a hypercall page");
    let mut page = [0u8; 4096];
    write_hypercall_page(&mut page);
    assert_eq!(m.read_va(&d, hc, 4096), page);
    assert_eq!(d.entry, k.addrs.entry);
    for s in &k.elf.segments {
        let got = m.read_va(&d, s.paddr, s.filesz);
        let want = k.elf.file_bytes(s);
        if !(s.paddr..s.paddr + s.memsz).contains(&hc) {
            assert_eq!(got, want);
        }
    }
}
