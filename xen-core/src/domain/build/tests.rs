//! Host tests of the domain builder: a tiny ELF writer makes kernels with chosen notes; each
//! refusal is checked for its variant and for naming its note, and built domains are checked by
//! walking their page tables the way the CPU (and `crate::guest_access::translate`) would.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hypercall_abi::elfnote::*;
use hypercall_abi::xen::StartInfo;
use zerocopy::FromBytes;

use super::elf::{PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use super::layout::PAGE_SIZE;
use super::pagetables::*;
use super::*;
use crate::guest_access::translate;
use crate::mm::frame_alloc::BootFrameAllocator;
use crate::mm::{FakeMemory, MachineMemory};
use crate::multiboot::{MemoryKind, MemoryRegion};

// ---------------------------------------------------------------------------------------------
// A tiny ELF64 writer.

#[derive(Clone)]
struct Seg {
    p_type: u32,
    flags: u32,
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
}

#[derive(Clone)]
struct Note {
    name: Vec<u8>,
    ty: u32,
    desc: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct Elf {
    class: u8,
    data: u8,
    e_type: u16,
    machine: u16,
    entry: u64,
    phentsize: u16,
    segs: Vec<Seg>,
    notes: Vec<Note>,
}

fn str_note(ty: u32, s: &str) -> Note {
    let mut desc = s.as_bytes().to_vec();
    desc.push(0);
    Note {
        name: b"Xen\0".to_vec(),
        ty,
        desc,
    }
}

fn num_note(ty: u32, v: u64) -> Note {
    Note {
        name: b"Xen\0".to_vec(),
        ty,
        desc: v.to_le_bytes().to_vec(),
    }
}

fn num4_note(ty: u32, v: u32) -> Note {
    Note {
        name: b"Xen\0".to_vec(),
        ty,
        desc: v.to_le_bytes().to_vec(),
    }
}

const TEXT: u64 = 0x10_0000;
const HYPERCALL: u64 = 0x10_1000;
const DATA: u64 = 0x10_4000;

impl Elf {
    /// A kernel like ours: text (with a hypercall page) at 1 MiB, data + bss after it.
    pub(crate) fn good() -> Self {
        let text: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
        let data: Vec<u8> = (0..0x100u32).map(|i| 0x80 | (i % 127) as u8).collect();
        Elf {
            class: 2,
            data: 1,
            e_type: 2,
            machine: 62,
            entry: TEXT,
            phentsize: 56,
            segs: vec![
                Seg {
                    p_type: PT_LOAD,
                    flags: PF_R | PF_X,
                    paddr: TEXT,
                    data: text,
                    memsz: 0x3000,
                },
                Seg {
                    p_type: PT_LOAD,
                    flags: PF_R | PF_W,
                    paddr: DATA,
                    data,
                    memsz: 0x2000,
                },
            ],
            notes: vec![
                str_note(XEN_ELFNOTE_GUEST_OS, "test-os"),
                str_note(XEN_ELFNOTE_GUEST_VERSION, "0.1"),
                str_note(XEN_ELFNOTE_XEN_VERSION, "xen-3.0"),
                str_note(XEN_ELFNOTE_LOADER, "generic"),
                num_note(XEN_ELFNOTE_VIRT_BASE, 0),
                num_note(XEN_ELFNOTE_PADDR_OFFSET, 0),
                num_note(XEN_ELFNOTE_ENTRY, TEXT),
                num_note(XEN_ELFNOTE_HYPERCALL_PAGE, HYPERCALL),
                str_note(XEN_ELFNOTE_FEATURES, ""),
                num4_note(XEN_ELFNOTE_SUPPORTED_FEATURES, 1 << 11),
            ],
        }
    }

    fn without(mut self, ty: u32) -> Self {
        self.notes.retain(|n| n.ty != ty);
        self
    }

    fn with(mut self, note: Note) -> Self {
        let ty = note.ty;
        self.notes.retain(|n| n.ty != ty);
        self.notes.push(note);
        self
    }

    fn note_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in &self.notes {
            out.extend_from_slice(&(n.name.len() as u32).to_le_bytes());
            out.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
            out.extend_from_slice(&n.ty.to_le_bytes());
            out.extend_from_slice(&n.name);
            out.resize(out.len().next_multiple_of(4), 0);
            out.extend_from_slice(&n.desc);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    /// Header, program headers, notes, then each segment's bytes at a page-aligned offset.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let notes = self.note_bytes();
        let mut segs = self.segs.clone();
        if !notes.is_empty() {
            segs.push(Seg {
                p_type: PT_NOTE,
                flags: PF_R,
                paddr: 0,
                data: notes,
                memsz: 0,
            });
        }
        let phoff = 64u64;
        let mut offset = (phoff as usize + segs.len() * usize::from(self.phentsize)) as u64;
        let mut placed = Vec::new();
        for s in &segs {
            if s.p_type == PT_LOAD {
                offset = offset.next_multiple_of(4096);
            } else {
                offset = offset.next_multiple_of(4);
            }
            placed.push(offset);
            offset += s.data.len() as u64;
        }
        let mut out = vec![0u8; offset as usize];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = self.class;
        out[5] = self.data;
        out[6] = 1;
        out[16..18].copy_from_slice(&self.e_type.to_le_bytes());
        out[18..20].copy_from_slice(&self.machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&self.entry.to_le_bytes());
        out[32..40].copy_from_slice(&phoff.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&self.phentsize.to_le_bytes());
        out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (s, &off)) in segs.iter().zip(&placed).enumerate() {
            let ph = phoff as usize + i * usize::from(self.phentsize);
            let put = |out: &mut Vec<u8>, at: usize, v: &[u8]| {
                out[ph + at..ph + at + v.len()].copy_from_slice(v)
            };
            let memsz = if s.p_type == PT_NOTE {
                s.data.len() as u64
            } else {
                s.memsz
            };
            put(&mut out, 0, &s.p_type.to_le_bytes());
            put(&mut out, 4, &s.flags.to_le_bytes());
            put(&mut out, 8, &off.to_le_bytes());
            put(&mut out, 16, &s.paddr.to_le_bytes());
            put(&mut out, 24, &s.paddr.to_le_bytes());
            put(&mut out, 32, &(s.data.len() as u64).to_le_bytes());
            put(&mut out, 40, &memsz.to_le_bytes());
            out[off as usize..off as usize + s.data.len()].copy_from_slice(&s.data);
        }
        out
    }
}

/// Writes `value` at byte `at` of program header `index` of an image made by [`Elf::bytes`].
fn patch_phdr(image: &mut [u8], index: usize, at: usize, value: u64) {
    let ph = 64 + index * 56 + at;
    image[ph..ph + 8].copy_from_slice(&value.to_le_bytes());
}

fn parse_err(image: &[u8]) -> BuildError {
    KernelImage::parse(image).expect_err("image accepted")
}

fn note_err(elf: &Elf) -> NoteError {
    match parse_err(&elf.bytes()) {
        BuildError::Note(e) => e,
        other => panic!("expected a note error, got {other:?}"),
    }
}

fn elf_err(image: &[u8]) -> ElfError {
    match parse_err(image) {
        BuildError::Elf(e) => e,
        other => panic!("expected an ELF error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ELF container refusals: one per variant.

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

// ---------------------------------------------------------------------------------------------
// Xen note refusals: each one names its note.

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
    let e = Elf::good().with(Note {
        name: b"Xen\0".to_vec(),
        ty: XEN_ELFNOTE_GUEST_OS,
        desc: b"linux".to_vec(),
    });
    assert_eq!(
        note_err(&e).to_string(),
        "Xen ELF note GUEST_OS is not a NUL-terminated string"
    );
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

// ---------------------------------------------------------------------------------------------
// Layout.

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
fn check_xen_4_17_guest_layout(l: &Layout) {
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

// ---------------------------------------------------------------------------------------------
// Building into fake machine memory.

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
    assert_eq!(mapped, l.region_pages());

    // The page-table frames the hypervisor is told about are exactly the tables in use.
    let frames: Vec<(Mfn, PtLevel)> = d.page_table_frames().collect();
    assert_eq!(frames.len() as u64, l.nr_pt_frames);
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
    assert_eq!((si.mod_start, si.mod_len), (0, 0));
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
        "target/x86_64-unknown-none/release/guest-kernel",
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
        check_xen_4_17_guest_layout(&layout);
    }
    let mut m = Machine::new();
    let d = m
        .build(&BuildParams {
            nr_pages: 2048,
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
