//! ELF container refusals, one per `ElfError` variant.

use super::*;

#[test]
fn the_good_image_parses() {
    let image = Elf::good().bytes();
    let k = KernelImage::parse(&image).unwrap();
    assert_eq!(k.elf.segments.len(), 2);
    assert_eq!((k.elf.pstart, k.elf.pend), (TEXT, DATA + 0x2000));
    assert_eq!(k.notes.count, 10);
    assert_eq!(k.notes.guest_os, Some(&b"test-os"[..]));
    assert_eq!(k.addrs.kstart, TEXT);
    assert_eq!(k.addrs.entry, TEXT);
    assert_eq!(k.addrs.hypercall_page, Some(HYPERCALL));
    assert!(k.notes.supports(11));
}

#[test]
fn elf_header_refusals() {
    let good = Elf::good().bytes();
    assert_eq!(elf_err(&good[..63]), ElfError::TooShort { len: 63 });
    let mut bad = good.clone();
    bad[1] = b'X';
    assert_eq!(elf_err(&bad), ElfError::BadMagic);
    let e = Elf {
        class: 1,
        ..Elf::good()
    };
    assert_eq!(elf_err(&e.bytes()), ElfError::NotElf64 { class: 1 });
    let e = Elf {
        data: 2,
        ..Elf::good()
    };
    assert_eq!(elf_err(&e.bytes()), ElfError::NotLittleEndian { data: 2 });
    let mut bad = good.clone();
    bad[20] = 7;
    assert_eq!(elf_err(&bad), ElfError::BadVersion { version: 7 });
    let e = Elf {
        machine: 3,
        ..Elf::good()
    };
    assert_eq!(elf_err(&e.bytes()), ElfError::NotX86_64 { machine: 3 });
    let e = Elf {
        e_type: 3,
        ..Elf::good()
    };
    assert_eq!(elf_err(&e.bytes()), ElfError::NotExecutable { e_type: 3 });
    let mut bad = good.clone();
    bad[54] = 32;
    assert_eq!(elf_err(&bad), ElfError::BadPhentsize { phentsize: 32 });
    let mut bad = good.clone();
    bad[57] = 0xff;
    assert!(matches!(
        elf_err(&bad),
        ElfError::ProgramHeadersOutOfBounds { phnum: 0xff03, .. }
    ));
    let mut bad = good;
    bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        elf_err(&bad),
        ElfError::ProgramHeadersOutOfBounds { .. }
    ));
}

#[test]
fn segment_refusals() {
    let good = Elf::good().bytes();
    // p_offset past the end.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 1, 8, 0x10_0000);
    assert!(matches!(
        elf_err(&bad),
        ElfError::SegmentOutOfBounds { index: 1, .. }
    ));
    // p_offset + p_filesz overflowing.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 0, 32, u64::MAX);
    assert!(matches!(
        elf_err(&bad),
        ElfError::SegmentOutOfBounds { index: 0, .. }
    ));
    // A note segment out of bounds.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 2, 32, 0x10_0000);
    assert!(matches!(
        elf_err(&bad),
        ElfError::SegmentOutOfBounds { index: 2, .. }
    ));
    // filesz > memsz.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 1, 40, 0x10);
    assert_eq!(
        elf_err(&bad),
        ElfError::FileszExceedsMemsz {
            index: 1,
            filesz: 0x100,
            memsz: 0x10
        }
    );
    // paddr + memsz overflowing.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 1, 24, u64::MAX - 0x100);
    assert!(matches!(
        elf_err(&bad),
        ElfError::SegmentAddressOverflow { index: 1, .. }
    ));
    // The data segment moved into the text segment.
    let mut bad = good.clone();
    patch_phdr(&mut bad, 1, 24, TEXT + 0x2000);
    assert_eq!(
        elf_err(&bad),
        ElfError::SegmentsOverlap {
            first: 0,
            second: 1
        }
    );
    // No loadable segment: PT_LOAD without permissions is not loadable (`elf_phdr_is_loadable`).
    let mut e = Elf::good();
    for s in &mut e.segs {
        s.flags = 0;
    }
    assert_eq!(elf_err(&e.bytes()), ElfError::NoLoadableSegments);
    let msg = BuildError::Elf(ElfError::NoLoadableSegments).to_string();
    assert_eq!(msg, "bad ELF image: no loadable (PT_LOAD) segment");
}

#[test]
fn too_many_load_segments_are_refused() {
    let mut e = Elf::good();
    e.segs = (0..33u64)
        .map(|i| Seg {
            p_type: PT_LOAD,
            flags: PF_R,
            paddr: TEXT + i * 0x1000,
            data: vec![1; 16],
            memsz: 16,
        })
        .collect();
    assert_eq!(elf_err(&e.bytes()), ElfError::TooManyLoadSegments);
}
