//! Xen note refusals: each names its note; features and the dom0 requirements.

use super::*;

#[test]
fn an_image_without_xen_notes_is_refused() {
    let mut e = Elf::good();
    e.notes.clear();
    let err = note_err(&e);
    assert_eq!(err, NoteError::NoXenNotes);
    assert!(err.to_string().contains("no Xen ELF notes"), "{err}");
    // Notes with another owner are not Xen notes.
    e.notes = Elf::good().notes;
    for n in &mut e.notes {
        n.name = b"GNU\0".to_vec();
    }
    assert_eq!(note_err(&e), NoteError::NoXenNotes);
}

#[test]
fn xen_version_must_be_present_and_start_with_xen_3_0() {
    let err = note_err(&Elf::good().without(XEN_ELFNOTE_XEN_VERSION));
    assert_eq!(err.to_string(), "missing Xen ELF note XEN_VERSION");
    let err = note_err(&Elf::good().with(str_note(XEN_ELFNOTE_XEN_VERSION, "xen-2.0")));
    assert_eq!(
        err.to_string(),
        "Xen ELF note XEN_VERSION is \"xen-2.0\", must start with \"xen-3.0\""
    );
    // A longer version is fine (libelf compares 7 bytes).
    let ok = Elf::good().with(str_note(XEN_ELFNOTE_XEN_VERSION, "xen-3.0-unstable"));
    assert!(KernelImage::parse(&ok.bytes()).is_ok());
}

#[test]
fn loader_must_be_generic_or_guest_os_linux() {
    let e = Elf::good().with(str_note(XEN_ELFNOTE_LOADER, "elf"));
    let err = note_err(&e);
    assert_eq!(
        err.to_string(),
        "Xen ELF note LOADER is \"elf\" and GUEST_OS is \"test-os\": need LOADER \"generic\" or GUEST_OS \"linux\""
    );
    let e = Elf::good()
        .without(XEN_ELFNOTE_LOADER)
        .without(XEN_ELFNOTE_GUEST_OS);
    assert_eq!(
        note_err(&e).to_string(),
        "missing Xen ELF note LOADER (\"generic\") or GUEST_OS (\"linux\")"
    );
    // GUEST_OS "linux" is enough on its own, as in Xen.
    let linux = Elf::good()
        .without(XEN_ELFNOTE_LOADER)
        .with(str_note(XEN_ELFNOTE_GUEST_OS, "linux"));
    assert!(KernelImage::parse(&linux.bytes()).is_ok());
}

#[test]
fn entry_must_lie_inside_the_image() {
    let e = Elf::good().with(num_note(XEN_ELFNOTE_ENTRY, 0x20_0000));
    let err = note_err(&e);
    assert!(matches!(
        err,
        NoteError::EntryOutsideImage {
            from_note: true,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "Xen ELF note ENTRY 0x200000 lies outside the image 0x100000..=0x106000"
    );
    // Without the note, e_entry is used and checked.
    let mut e = Elf::good().without(XEN_ELFNOTE_ENTRY);
    e.entry = 0x1000;
    let err = note_err(&e);
    assert!(err
        .to_string()
        .starts_with("ELF entry point (no Xen ELF note ENTRY) 0x1000"));
    // The image end itself is allowed (libelf checks `entry > virt_kend`).
    let e = Elf::good().with(num_note(XEN_ELFNOTE_ENTRY, DATA + 0x2000));
    assert!(KernelImage::parse(&e.bytes()).is_ok());
}

#[test]
fn hypercall_page_must_be_an_aligned_page_of_the_image() {
    let e = Elf::good().with(num_note(XEN_ELFNOTE_HYPERCALL_PAGE, 0x20_0000));
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note HYPERCALL_PAGE 0x200000 lies outside the image 0x100000..0x106000"
    );
    let e = Elf::good().with(num_note(XEN_ELFNOTE_HYPERCALL_PAGE, 0xff000));
    assert!(matches!(
        note_err(&e),
        NoteError::HypercallPageOutsideImage { va: 0xff000, .. }
    ));
    let e = Elf::good().with(num_note(XEN_ELFNOTE_HYPERCALL_PAGE, HYPERCALL + 8));
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note HYPERCALL_PAGE 0x101008 is not page aligned"
    );
    // A kernel without a hypercall page is fine.
    let e = Elf::good().without(XEN_ELFNOTE_HYPERCALL_PAGE);
    assert_eq!(
        KernelImage::parse(&e.bytes()).unwrap().addrs.hypercall_page,
        None
    );
}

#[test]
fn address_notes_are_checked() {
    let e = Elf::good().without(XEN_ELFNOTE_VIRT_BASE);
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note PADDR_OFFSET is 0x0 but note VIRT_BASE is missing"
    );
    let e = Elf::good()
        .with(num_note(XEN_ELFNOTE_VIRT_BASE, 0x20_0000))
        .with(num_note(XEN_ELFNOTE_PADDR_OFFSET, 0x20_0000));
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note VIRT_BASE 0x200000 lies above the image start 0x100000"
    );
    let e = Elf::good().with(num_note(XEN_ELFNOTE_VIRT_BASE, 0x123));
    assert!(note_err(&e)
        .to_string()
        .contains("VIRT_BASE 0x123 is not page aligned"));
    let e = Elf::good()
        .with(num_note(XEN_ELFNOTE_VIRT_BASE, 0))
        .with(num_note(XEN_ELFNOTE_PADDR_OFFSET, 0x10_3000));
    let err = note_err(&e);
    assert!(matches!(err, NoteError::ImageWraps { .. }), "{err:?}");
    assert!(err.to_string().contains("VIRT_BASE") && err.to_string().contains("PADDR_OFFSET"));
    let e = Elf::good().with(num_note(XEN_ELFNOTE_INIT_P2M, DATA));
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note INIT_P2M 0x104000 lies inside the image"
    );
}

#[test]
fn no_virt_base_and_no_paddr_offset_default_to_zero() {
    let e = Elf::good()
        .without(XEN_ELFNOTE_VIRT_BASE)
        .without(XEN_ELFNOTE_PADDR_OFFSET)
        .without(XEN_ELFNOTE_ENTRY);
    let image = e.bytes();
    let k = KernelImage::parse(&image).unwrap();
    assert_eq!((k.addrs.virt_base, k.addrs.paddr_offset), (0, 0));
    assert_eq!(k.addrs.entry, TEXT);
}

#[test]
fn malformed_notes_are_refused_by_name() {
    let e = Elf::good().with(Note {
        name: b"Xen\0".to_vec(),
        ty: XEN_ELFNOTE_ENTRY,
        desc: vec![0, 0, 0x10],
    });
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note ENTRY has a 3-byte value, must be 1, 2, 4 or 8 bytes"
    );
    // No NUL in the descriptor, and no padding after it to hold one.
    let e = Elf::good().with(Note {
        name: b"Xen\0".to_vec(),
        ty: XEN_ELFNOTE_GUEST_OS,
        desc: b"linu".to_vec(),
    });
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note GUEST_OS is not a NUL-terminated string"
    );
    // Nor in its padding: the padding bytes are not NUL.
    let mut image = Elf::good()
        .with(Note {
            name: b"Xen\0".to_vec(),
            ty: XEN_ELFNOTE_GUEST_OS,
            desc: b"linux".to_vec(),
        })
        .bytes();
    let at = image.windows(5).rposition(|w| w == b"linux").unwrap() + 5;
    image[at..at + 3].copy_from_slice(b"xyz");
    assert!(matches!(
        parse_err(&image),
        BuildError::Note(NoteError::NotAString { .. })
    ));
    let e = Elf::good().with(Note {
        name: b"Xen\0".to_vec(),
        ty: XEN_ELFNOTE_SUPPORTED_FEATURES,
        desc: vec![0; 6],
    });
    assert!(note_err(&e).to_string().contains("SUPPORTED_FEATURES"));
    // A 4-byte numeric note is fine, as is an unknown note type.
    let e = Elf::good()
        .with(num4_note(XEN_ELFNOTE_ENTRY, TEXT as u32))
        .with(num_note(0x4242, 7));
    assert_eq!(KernelImage::parse(&e.bytes()).unwrap().addrs.entry, TEXT);
}

#[test]
fn a_string_whose_nul_lies_in_the_padding_is_read_as_libelf_reads_it() {
    // Linux's FEATURES note: 41 bytes, its NUL in the 3 bytes of padding.
    let features = "!writable_page_tables|pae_pgdir_above_4gb";
    let e = Elf::good().with(Note {
        name: b"Xen\0".to_vec(),
        ty: XEN_ELFNOTE_FEATURES,
        desc: features.as_bytes().to_vec(),
    });
    let image = e.bytes();
    let k = KernelImage::parse(&image).unwrap();
    assert_eq!(k.notes.features, Some(features.as_bytes()));
    assert!(k
        .notes
        .requires(hypercall_abi::version::XENFEAT_writable_page_tables));
    assert!(k
        .notes
        .supports(hypercall_abi::version::XENFEAT_pae_pgdir_above_4gb));
}

#[test]
fn notes_come_from_sections_when_no_note_segment_holds_them() {
    let good = Elf::good().bytes();
    let k = KernelImage::parse(&good).unwrap();
    let (off, len) = k.elf.note_segments[0];
    // Turn the PT_NOTE program header (the last one) into PT_NULL and describe the notes with a
    // section header table instead: a NULL section and one SHT_NOTE section.
    let phnum = u16::from_le_bytes([good[56], good[57]]) as usize;
    let mut image = good.clone();
    image[64 + (phnum - 1) * 56..][..4].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        parse_err(&image),
        BuildError::Note(NoteError::NoXenNotes)
    ));
    let shoff = image.len().next_multiple_of(8);
    image.resize(shoff + 2 * 64, 0);
    let sh = &mut image[shoff + 64..];
    sh[4..8].copy_from_slice(&7u32.to_le_bytes());
    sh[24..32].copy_from_slice(&(off as u64).to_le_bytes());
    sh[32..40].copy_from_slice(&(len as u64).to_le_bytes());
    image[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    image[58..60].copy_from_slice(&64u16.to_le_bytes());
    image[60..62].copy_from_slice(&2u16.to_le_bytes());
    let from_sections = KernelImage::parse(&image).unwrap();
    assert_eq!(from_sections.notes, k.notes);
    assert!(from_sections.elf.note_segments.is_empty());

    // A section that lies outside the image, and a table that does, are refused by name.
    let mut bad = image.clone();
    bad[shoff + 64 + 32..][..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let text = parse_err(&bad).to_string();
    assert!(
        text.contains("SHT_NOTE") && text.contains("section 1"),
        "{text}"
    );
    let mut bad = image.clone();
    bad[60..62].copy_from_slice(&0x400u16.to_le_bytes());
    let text = parse_err(&bad).to_string();
    assert!(text.contains("section header table"), "{text}");
    let mut bad = image;
    bad[58..60].copy_from_slice(&8u16.to_le_bytes());
    assert!(matches!(
        parse_err(&bad),
        BuildError::Note(NoteError::SectionHeaders(ElfError::BadShentsize {
            shentsize: 8
        }))
    ));
    // With notes in a PT_NOTE segment, a broken section header table is never read.
    let mut fine = good;
    fine[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    fine[60..62].copy_from_slice(&3u16.to_le_bytes());
    assert!(KernelImage::parse(&fine).is_ok());
}

#[test]
fn a_truncated_note_record_is_refused() {
    let image = Elf::good().bytes();
    let k = KernelImage::parse(&image).unwrap();
    let (off, len) = k.elf.note_segments[0];
    // Claim a huge descriptor in the last note.
    let mut bad = image.clone();
    let mut pos = 0;
    let mut last = 0;
    while pos < len {
        last = pos;
        let at = off + pos;
        let namesz = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap()) as usize;
        let descsz = u32::from_le_bytes(bad[at + 4..at + 8].try_into().unwrap()) as usize;
        pos += 12 + namesz.next_multiple_of(4) + descsz.next_multiple_of(4);
    }
    bad[off + last + 4..off + last + 8].copy_from_slice(&0x1000u32.to_le_bytes());
    match parse_err(&bad) {
        BuildError::Note(NoteError::Truncated { offset }) => assert_eq!(offset, last),
        other => panic!("{other:?}"),
    }
    // Three stray bytes after the last note.
    let mut bad = image;
    patch_phdr(&mut bad, 2, 32, len as u64 + 3);
    bad.extend_from_slice(&[0; 3]);
    assert!(matches!(
        parse_err(&bad),
        BuildError::Note(NoteError::Truncated { .. })
    ));
}

#[test]
fn features_follow_libelf() {
    let e = Elf::good().with(str_note(
        XEN_ELFNOTE_FEATURES,
        "!writable_page_tables|pae_pgdir_above_4gb|unheard_of",
    ));
    let image = e.bytes();
    let k = KernelImage::parse(&image).unwrap();
    assert!(k.notes.requires(0) && k.notes.supports(0));
    assert!(k.notes.supports(4) && !k.notes.requires(4));
    let e = Elf::good().with(str_note(XEN_ELFNOTE_FEATURES, "dom0|!frobnicate"));
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note FEATURES requires unknown feature \"frobnicate\""
    );
    let e = Elf::good().with(str_note(XEN_ELFNOTE_FEATURES, "!supervisor_mode_kernel"));
    let image = e.bytes();
    let k = KernelImage::parse(&image).unwrap();
    let err = k.check_kind(DomainKind::Dom0).unwrap_err();
    assert_eq!(err, NoteError::SupervisorModeRequired);
    assert!(err
        .to_string()
        .starts_with("Xen ELF note FEATURES requires supervisor_mode_kernel"));
}

#[test]
fn dom0_needs_xenfeat_dom0_when_features_are_listed() {
    let e = Elf::good().with(num4_note(XEN_ELFNOTE_SUPPORTED_FEATURES, 1));
    let image = e.bytes();
    let k = KernelImage::parse(&image).unwrap();
    let err = k.check_kind(DomainKind::Dom0).unwrap_err();
    assert_eq!(err, NoteError::NotDom0Capable);
    assert!(err
        .to_string()
        .starts_with("Xen ELF note SUPPORTED_FEATURES lacks XENFEAT_dom0"));
    let domu = DomainKind::DomU {
        store_evtchn: 1,
        console_evtchn: 2,
    };
    assert_eq!(k.check_kind(domu), Ok(()));
    // "dom0" in FEATURES counts too (Xen tests f_supported, which both notes feed).
    let e = Elf::good()
        .with(num4_note(XEN_ELFNOTE_SUPPORTED_FEATURES, 0))
        .with(str_note(XEN_ELFNOTE_FEATURES, "dom0"));
    let image = e.bytes();
    assert_eq!(
        KernelImage::parse(&image)
            .unwrap()
            .check_kind(DomainKind::Dom0),
        Ok(())
    );
    // No SUPPORTED_FEATURES note at all: Xen does not ask.
    let e = Elf::good().without(XEN_ELFNOTE_SUPPORTED_FEATURES);
    let image = e.bytes();
    assert_eq!(
        KernelImage::parse(&image)
            .unwrap()
            .check_kind(DomainKind::Dom0),
        Ok(())
    );
}

#[test]
fn bsd_symtab_is_refused_by_name() {
    let e = Elf::good().with(str_note(XEN_ELFNOTE_BSD_SYMTAB, "yes"));
    let image = e.bytes();
    let err = KernelImage::parse(&image)
        .unwrap()
        .check_kind(DomainKind::Dom0)
        .unwrap_err();
    assert!(err.to_string().starts_with("Xen ELF note BSD_SYMTAB"));
}
