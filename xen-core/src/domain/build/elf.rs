//! ELF64 parsing of an untrusted PV kernel image: header, program headers, loadable and note
//! segments, every field bounds-checked before use.
//!
//! The rules follow Xen's libelf (`xen/common/libelf/libelf-loader.c`, `elf_parse_binary` and
//! `elf_load_binary`): a segment is loaded when it is `PT_LOAD` with at least one of R, W, X set;
//! it is placed by its *physical* address `p_paddr` (the virtual address of a byte is
//! `p_paddr + VIRT_BASE - PADDR_OFFSET`, see `notes.rs`); the image spans `[pstart, pend)`, the
//! lowest `p_paddr` to the highest `p_paddr + p_memsz`. Xen checks less than we do here: we also
//! refuse a non-`ET_EXEC` file, segments whose file bytes lie outside the image, `filesz > memsz`,
//! and loadable segments that overlap (two segments writing the same guest byte).

use core::fmt;

/// `e_ident[EI_CLASS]` of a 64-bit file.
const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` of a little-endian file.
const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_VERSION]` and `e_version`: the only ELF version.
const EV_CURRENT: u8 = 1;
/// `e_type` of an executable.
const ET_EXEC: u16 = 2;
/// `e_machine` of x86-64.
const EM_X86_64: u16 = 62;
/// Size of the ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// Size of one ELF64 section header.
pub const SHDR_SIZE: usize = 64;
/// Section of notes (`sh_type`).
pub const SHT_NOTE: u32 = 7;
/// Loadable segment.
pub const PT_LOAD: u32 = 1;
/// Note segment.
pub const PT_NOTE: u32 = 4;
/// Segment permission bits (`p_flags`): execute, write, read.
pub const PF_X: u32 = 1;
/// Segment is writable.
pub const PF_W: u32 = 2;
/// Segment is readable.
pub const PF_R: u32 = 4;

/// The most loadable segments we accept (kernels have a handful; Linux has five).
pub const MAX_LOAD_SEGMENTS: usize = 32;
/// The most note segments we accept.
pub const MAX_NOTE_SEGMENTS: usize = 8;

/// Everything that can be wrong with the ELF container itself. Each check has its own variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The image is shorter than an ELF64 header.
    TooShort {
        /// Image length in bytes.
        len: usize,
    },
    /// The first four bytes are not `\x7fELF`.
    BadMagic,
    /// Not a 64-bit ELF file.
    NotElf64 {
        /// `e_ident[EI_CLASS]`.
        class: u8,
    },
    /// Not a little-endian ELF file.
    NotLittleEndian {
        /// `e_ident[EI_DATA]`.
        data: u8,
    },
    /// `e_ident[EI_VERSION]` or `e_version` is not `EV_CURRENT`.
    BadVersion {
        /// The offending value.
        version: u32,
    },
    /// Not an x86-64 file.
    NotX86_64 {
        /// `e_machine`.
        machine: u16,
    },
    /// Not an executable (`ET_EXEC`): relocatable and position-independent kernels are refused.
    NotExecutable {
        /// `e_type`.
        e_type: u16,
    },
    /// `e_phentsize` is smaller than an ELF64 program header.
    BadPhentsize {
        /// `e_phentsize`.
        phentsize: u16,
    },
    /// The program header table runs past the end of the image.
    ProgramHeadersOutOfBounds {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
    },
    /// More loadable segments than [`MAX_LOAD_SEGMENTS`].
    TooManyLoadSegments,
    /// More note segments than [`MAX_NOTE_SEGMENTS`].
    TooManyNoteSegments,
    /// A segment's file bytes `[p_offset, p_offset + p_filesz)` lie (partly) outside the image.
    SegmentOutOfBounds {
        /// Index of the program header.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
    },
    /// A loadable segment has more file bytes than memory bytes.
    FileszExceedsMemsz {
        /// Index of the program header.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// `p_paddr + p_memsz` overflows.
    SegmentAddressOverflow {
        /// Index of the program header.
        index: usize,
        /// `p_paddr`.
        paddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// Two loadable segments cover the same addresses.
    SegmentsOverlap {
        /// Index of the first program header.
        first: usize,
        /// Index of the second program header.
        second: usize,
    },
    /// No loadable segment: nothing to run.
    NoLoadableSegments,
    /// `e_shentsize` is smaller than an ELF64 section header.
    BadShentsize {
        /// `e_shentsize`.
        shentsize: u16,
    },
    /// The section header table runs past the end of the image.
    SectionHeadersOutOfBounds {
        /// `e_shoff`.
        shoff: u64,
        /// `e_shnum`.
        shnum: u16,
    },
    /// A note section's bytes `[sh_offset, sh_offset + sh_size)` lie (partly) outside the image.
    SectionOutOfBounds {
        /// Index of the section header.
        index: usize,
        /// `sh_offset`.
        offset: u64,
        /// `sh_size`.
        size: u64,
    },
    /// More note sections than [`MAX_NOTE_SEGMENTS`].
    TooManyNoteSections,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::TooShort { len } => write!(
                f,
                "image is {len} bytes, shorter than an ELF64 header ({EHDR_SIZE} bytes)"
            ),
            ElfError::BadMagic => write!(f, "not an ELF file (bad magic)"),
            ElfError::NotElf64 { class } => write!(
                f,
                "ELF class {class} is not ELFCLASS64: only 64-bit PV kernels are supported"
            ),
            ElfError::NotLittleEndian { data } => {
                write!(f, "ELF data encoding {data} is not little-endian")
            }
            ElfError::BadVersion { version } => {
                write!(f, "ELF version {version} is not EV_CURRENT (1)")
            }
            ElfError::NotX86_64 { machine } => {
                write!(f, "ELF machine {machine} is not x86-64 ({EM_X86_64})")
            }
            ElfError::NotExecutable { e_type } => {
                write!(f, "ELF type {e_type} is not ET_EXEC ({ET_EXEC})")
            }
            ElfError::BadPhentsize { phentsize } => write!(
                f,
                "program header size {phentsize} is smaller than an ELF64 program header ({PHDR_SIZE})"
            ),
            ElfError::ProgramHeadersOutOfBounds { phoff, phnum } => write!(
                f,
                "program header table ({phnum} entries at offset {phoff:#x}) runs past the end of the image"
            ),
            ElfError::TooManyLoadSegments => {
                write!(f, "more than {MAX_LOAD_SEGMENTS} loadable segments")
            }
            ElfError::TooManyNoteSegments => {
                write!(f, "more than {MAX_NOTE_SEGMENTS} note segments")
            }
            ElfError::SegmentOutOfBounds {
                index,
                offset,
                filesz,
            } => write!(
                f,
                "segment {index}: file bytes {offset:#x}+{filesz:#x} lie outside the image"
            ),
            ElfError::FileszExceedsMemsz {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}"
            ),
            ElfError::SegmentAddressOverflow {
                index,
                paddr,
                memsz,
            } => write!(
                f,
                "segment {index}: address {paddr:#x} + size {memsz:#x} overflows"
            ),
            ElfError::SegmentsOverlap { first, second } => {
                write!(f, "loadable segments {first} and {second} overlap")
            }
            ElfError::NoLoadableSegments => write!(f, "no loadable (PT_LOAD) segment"),
            ElfError::BadShentsize { shentsize } => write!(
                f,
                "section header size {shentsize} is smaller than an ELF64 section header ({SHDR_SIZE})"
            ),
            ElfError::SectionHeadersOutOfBounds { shoff, shnum } => write!(
                f,
                "section header table ({shnum} entries at offset {shoff:#x}) runs past the end of the image"
            ),
            ElfError::SectionOutOfBounds {
                index,
                offset,
                size,
            } => write!(
                f,
                "section {index}: bytes {offset:#x}+{size:#x} lie outside the image"
            ),
            ElfError::TooManyNoteSections => {
                write!(f, "more than {MAX_NOTE_SEGMENTS} note sections")
            }
        }
    }
}

/// One loadable segment, checked: its file bytes lie inside the image and `filesz <= memsz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// Index of its program header.
    pub index: usize,
    /// `p_offset`: where its file bytes start in the image.
    pub offset: usize,
    /// `p_filesz`: bytes copied from the image.
    pub filesz: usize,
    /// `p_memsz`: bytes it occupies in memory; the tail past `filesz` is zeroed (bss).
    pub memsz: u64,
    /// `p_paddr`: where it goes, in the image's physical address space.
    pub paddr: u64,
    /// `p_vaddr`, for diagnostics only: Xen places segments by `p_paddr`.
    pub vaddr: u64,
    /// `p_flags` (`PF_R`, `PF_W`, `PF_X`).
    pub flags: u32,
}

/// A checked ELF64 x86-64 executable, borrowing the image bytes.
#[derive(Clone, Debug)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    /// `e_entry`.
    pub entry: u64,
    /// The loadable segments, in program-header order.
    pub segments: heapless::Vec<LoadSegment, MAX_LOAD_SEGMENTS>,
    /// The file byte ranges `(offset, len)` of the `PT_NOTE` segments, in program-header order.
    /// Like Xen (`elf_xen_parse`), a note segment with `p_offset == 0` is skipped: some binutils
    /// versions emit those by mistake.
    pub note_segments: heapless::Vec<(usize, usize), MAX_NOTE_SEGMENTS>,
    /// Lowest `p_paddr` of the loadable segments (Xen's `elf->pstart`).
    pub pstart: u64,
    /// Highest `p_paddr + p_memsz` of the loadable segments (Xen's `elf->pend`).
    pub pend: u64,
    /// `e_shoff`, `e_shentsize`, `e_shnum`: the section header table, read only when the notes
    /// must come from it ([`ElfImage::note_sections`]).
    sh: (u64, u16, u16),
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

/// `[offset, offset + len)` as a `usize` range inside `total` bytes, or `None`.
fn file_range(offset: u64, len: u64, total: usize) -> Option<(usize, usize)> {
    let offset = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    (offset.checked_add(len)? <= total).then_some((offset, len))
}

impl<'a> ElfImage<'a> {
    /// Parses and checks `bytes` as an ELF64 little-endian x86-64 executable.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.len() < EHDR_SIZE {
            return Err(ElfError::TooShort { len: bytes.len() });
        }
        let h = &bytes[..EHDR_SIZE];
        if h[..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if h[4] != ELFCLASS64 {
            return Err(ElfError::NotElf64 { class: h[4] });
        }
        if h[5] != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian { data: h[5] });
        }
        if h[6] != EV_CURRENT {
            return Err(ElfError::BadVersion {
                version: h[6].into(),
            });
        }
        let e_type = u16_at(h, 16);
        let machine = u16_at(h, 18);
        let version = u32_at(h, 20);
        let entry = u64_at(h, 24);
        let phoff = u64_at(h, 32);
        let phentsize = u16_at(h, 54);
        let phnum = u16_at(h, 56);
        let sh = (u64_at(h, 40), u16_at(h, 58), u16_at(h, 60));
        if machine != EM_X86_64 {
            return Err(ElfError::NotX86_64 { machine });
        }
        if version != u32::from(EV_CURRENT) {
            return Err(ElfError::BadVersion { version });
        }
        if e_type != ET_EXEC {
            return Err(ElfError::NotExecutable { e_type });
        }
        if usize::from(phentsize) < PHDR_SIZE {
            return Err(ElfError::BadPhentsize { phentsize });
        }
        let table_len = u64::from(phentsize) * u64::from(phnum);
        let (table_off, _) = file_range(phoff, table_len, bytes.len())
            .ok_or(ElfError::ProgramHeadersOutOfBounds { phoff, phnum })?;

        let mut segments = heapless::Vec::new();
        let mut note_segments = heapless::Vec::new();
        for index in 0..usize::from(phnum) {
            let start = table_off + index * usize::from(phentsize);
            let ph = &bytes[start..start + PHDR_SIZE];
            let p_type = u32_at(ph, 0);
            let flags = u32_at(ph, 4);
            let offset = u64_at(ph, 8);
            let vaddr = u64_at(ph, 16);
            let paddr = u64_at(ph, 24);
            let filesz = u64_at(ph, 32);
            let memsz = u64_at(ph, 40);
            let out_of_bounds = ElfError::SegmentOutOfBounds {
                index,
                offset,
                filesz,
            };
            match p_type {
                // `elf_phdr_is_loadable`: PT_LOAD with at least one permission bit.
                PT_LOAD if flags & (PF_R | PF_W | PF_X) != 0 => {
                    let (offset, filesz_usize) =
                        file_range(offset, filesz, bytes.len()).ok_or(out_of_bounds)?;
                    if filesz > memsz {
                        return Err(ElfError::FileszExceedsMemsz {
                            index,
                            filesz,
                            memsz,
                        });
                    }
                    if paddr.checked_add(memsz).is_none() {
                        return Err(ElfError::SegmentAddressOverflow {
                            index,
                            paddr,
                            memsz,
                        });
                    }
                    segments
                        .push(LoadSegment {
                            index,
                            offset,
                            filesz: filesz_usize,
                            memsz,
                            paddr,
                            vaddr,
                            flags,
                        })
                        .map_err(|_| ElfError::TooManyLoadSegments)?;
                }
                PT_NOTE if offset != 0 => {
                    let range = file_range(offset, filesz, bytes.len()).ok_or(out_of_bounds)?;
                    note_segments
                        .push(range)
                        .map_err(|_| ElfError::TooManyNoteSegments)?;
                }
                _ => {}
            }
        }

        check_no_overlap(&segments)?;
        let pstart = segments.iter().map(|s| s.paddr).min();
        let pend = segments.iter().map(|s| s.paddr + s.memsz).max();
        let (Some(pstart), Some(pend)) = (pstart, pend) else {
            return Err(ElfError::NoLoadableSegments);
        };
        Ok(Self {
            bytes,
            entry,
            segments,
            note_segments,
            pstart,
            pend,
            sh,
        })
    }

    /// The file byte ranges `(offset, len)` of the `SHT_NOTE` sections, each checked to lie inside
    /// the image. No section header table (`e_shoff` or `e_shnum` 0) means no sections.
    pub fn note_sections(
        &self,
    ) -> Result<heapless::Vec<(usize, usize), MAX_NOTE_SEGMENTS>, ElfError> {
        let (shoff, shentsize, shnum) = self.sh;
        let mut out = heapless::Vec::new();
        if shoff == 0 || shnum == 0 {
            return Ok(out);
        }
        if usize::from(shentsize) < SHDR_SIZE {
            return Err(ElfError::BadShentsize { shentsize });
        }
        let table_len = u64::from(shentsize) * u64::from(shnum);
        let (table_off, _) = file_range(shoff, table_len, self.bytes.len())
            .ok_or(ElfError::SectionHeadersOutOfBounds { shoff, shnum })?;
        for index in 0..usize::from(shnum) {
            let start = table_off + index * usize::from(shentsize);
            let sh = &self.bytes[start..start + SHDR_SIZE];
            if u32_at(sh, 4) != SHT_NOTE {
                continue;
            }
            let offset = u64_at(sh, 24);
            let size = u64_at(sh, 32);
            let range =
                file_range(offset, size, self.bytes.len()).ok_or(ElfError::SectionOutOfBounds {
                    index,
                    offset,
                    size,
                })?;
            out.push(range).map_err(|_| ElfError::TooManyNoteSections)?;
        }
        Ok(out)
    }

    /// The whole image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The file bytes of `segment` (checked in [`ElfImage::parse`]).
    pub fn file_bytes(&self, segment: &LoadSegment) -> &'a [u8] {
        &self.bytes[segment.offset..segment.offset + segment.filesz]
    }

    /// The bytes of each note segment.
    pub fn note_bytes(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.note_segments
            .iter()
            .map(move |&(off, len)| &bytes[off..off + len])
    }
}

/// Refuses two non-empty loadable segments whose `[paddr, paddr + memsz)` intersect.
fn check_no_overlap(segments: &[LoadSegment]) -> Result<(), ElfError> {
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            let disjoint = a.memsz == 0
                || b.memsz == 0
                || a.paddr + a.memsz <= b.paddr
                || b.paddr + b.memsz <= a.paddr;
            if !disjoint {
                return Err(ElfError::SegmentsOverlap {
                    first: a.index,
                    second: b.index,
                });
            }
        }
    }
    Ok(())
}
