//! Xen ELF notes: how a PV kernel describes itself to the domain builder (`elfnote.h`), parsed
//! and checked the way Xen 4.17's libelf does.
//!
//! Sources, all in Xen 4.17:
//! - `xen/common/libelf/libelf-dominfo.c`: `elf_xen_parse_note` (which notes are strings and which
//!   numbers), `elf_xen_parse_notes` (name `"Xen"`, 4-byte aligned note records),
//!   `elf_xen_parse_features` (the `FEATURES` string, `!` for required), `elf_xen_note_check`
//!   (LOADER / GUEST_OS / XEN_VERSION), `elf_xen_addr_calc_check` (defaults and address checks).
//! - `xen/arch/x86/pv/dom0_build.c`: `XENFEAT_dom0` for dom0, no `supervisor_mode_kernel`, the
//!   hypercall page inside the initial mapping.
//!
//! Where Xen silently reads a malformed note as 0 or skips it (a numeric note of odd size), we refuse
//! the image with an error naming the note instead. A string note's NUL may lie in the descriptor's
//! 4-byte padding, as in Linux's `FEATURES` note (libelf reads a string up to its NUL wherever that
//! is; we look no further than the padding and refuse a string without a NUL there). Like libelf
//! (`elf_xen_parse`), the notes come from the `PT_NOTE` segments, and only when those hold no Xen
//! note from the `SHT_NOTE` sections. Legacy images that describe themselves with a `__xen_guest`
//! section are not supported.

use core::fmt;

use hypercall_abi::elfnote::*;
use hypercall_abi::version::{
    XENFEAT_auto_translated_physmap, XENFEAT_dom0, XENFEAT_hvm_callback_vector,
    XENFEAT_pae_pgdir_above_4gb, XENFEAT_supervisor_mode_kernel,
    XENFEAT_writable_descriptor_tables, XENFEAT_writable_page_tables,
};

use super::elf::ElfImage;

/// A Xen ELF note type (`XEN_ELFNOTE_*`), displayed with Xen's own name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteType(pub u32);

impl NoteType {
    /// Xen's name for the note (`note_desc[]` in `elf_xen_parse_note`), or `None` if unknown.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            XEN_ELFNOTE_ENTRY => "ENTRY",
            XEN_ELFNOTE_HYPERCALL_PAGE => "HYPERCALL_PAGE",
            XEN_ELFNOTE_VIRT_BASE => "VIRT_BASE",
            XEN_ELFNOTE_PADDR_OFFSET => "PADDR_OFFSET",
            XEN_ELFNOTE_XEN_VERSION => "XEN_VERSION",
            XEN_ELFNOTE_GUEST_OS => "GUEST_OS",
            XEN_ELFNOTE_GUEST_VERSION => "GUEST_VERSION",
            XEN_ELFNOTE_LOADER => "LOADER",
            XEN_ELFNOTE_PAE_MODE => "PAE_MODE",
            XEN_ELFNOTE_FEATURES => "FEATURES",
            XEN_ELFNOTE_BSD_SYMTAB => "BSD_SYMTAB",
            XEN_ELFNOTE_HV_START_LOW => "HV_START_LOW",
            XEN_ELFNOTE_L1_MFN_VALID => "L1_MFN_VALID",
            XEN_ELFNOTE_SUSPEND_CANCEL => "SUSPEND_CANCEL",
            XEN_ELFNOTE_INIT_P2M => "INIT_P2M",
            XEN_ELFNOTE_MOD_START_PFN => "MOD_START_PFN",
            XEN_ELFNOTE_SUPPORTED_FEATURES => "SUPPORTED_FEATURES",
            XEN_ELFNOTE_PHYS32_ENTRY => "PHYS32_ENTRY",
            _ => return None,
        })
    }
}

impl fmt::Display for NoteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#x}", self.0),
        }
    }
}

/// Feature names Xen accepts in the `FEATURES` note (`elf_xen_feature_names`).
const FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", XENFEAT_writable_page_tables),
    (
        "writable_descriptor_tables",
        XENFEAT_writable_descriptor_tables,
    ),
    ("auto_translated_physmap", XENFEAT_auto_translated_physmap),
    ("supervisor_mode_kernel", XENFEAT_supervisor_mode_kernel),
    ("pae_pgdir_above_4gb", XENFEAT_pae_pgdir_above_4gb),
    ("hvm_callback_vector", XENFEAT_hvm_callback_vector),
    ("dom0", XENFEAT_dom0),
];

/// Xen truncates each `FEATURES` entry to this many bytes (`unsigned char feature[64]`).
const FEATURE_MAX: usize = 63;

/// Bytes of guest text an [`Excerpt`] keeps (Xen itself keeps 15 of LOADER, GUEST_OS and
/// XEN_VERSION: `char loader[16]` and friends in `struct elf_dom_parms`).
pub const EXCERPT_LEN: usize = 32;

/// A short copy of some guest-supplied text, for error messages (errors do not borrow the image).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Excerpt {
    bytes: heapless::Vec<u8, EXCERPT_LEN>,
    truncated: bool,
}

impl Excerpt {
    /// Copies up to [`EXCERPT_LEN`] bytes of `text`.
    pub fn new(text: &[u8]) -> Self {
        let n = text.len().min(EXCERPT_LEN);
        let mut bytes = heapless::Vec::new();
        // Cannot fail: at most EXCERPT_LEN bytes.
        let _ = bytes.extend_from_slice(&text[..n]);
        Self {
            bytes,
            truncated: n < text.len(),
        }
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Escaped(&self.bytes))?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Displays bytes as text, escaping anything that is not printable ASCII as `\xNN`.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A Xen ELF note the builder refuses. Every message names the note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteError {
    /// No note named "Xen" in any `PT_NOTE` segment or `SHT_NOTE` section: not a Xen PV kernel.
    NoXenNotes,
    /// A note record's header, name or descriptor runs past the end of its segment (or section).
    Truncated {
        /// Byte offset of the record inside its segment.
        offset: usize,
    },
    /// A string note has no NUL inside its descriptor or the descriptor's padding.
    NotAString {
        /// The note.
        note: NoteType,
    },
    /// A numeric note whose size is not 1, 2, 4 or 8 bytes (4, 8, ... for `SUPPORTED_FEATURES`).
    BadNumericSize {
        /// The note.
        note: NoteType,
        /// Its descriptor size.
        size: usize,
    },
    /// A note the builder needs is absent.
    Missing {
        /// The note.
        note: NoteType,
    },
    /// Neither `LOADER` starts with "generic" nor `GUEST_OS` with "linux".
    UnknownLoader {
        /// The `LOADER` note, if any.
        loader: Option<Excerpt>,
        /// The `GUEST_OS` note, if any.
        guest_os: Option<Excerpt>,
    },
    /// `XEN_VERSION` does not start with "xen-3.0".
    BadXenVersion {
        /// The note's value.
        found: Excerpt,
    },
    /// `FEATURES` requires (`!name`) a feature Xen does not know.
    UnknownRequiredFeature {
        /// The entry, without its `!`.
        feature: Excerpt,
    },
    /// `FEATURES` requires `supervisor_mode_kernel`: 64-bit PV kernels run in ring 3.
    SupervisorModeRequired,
    /// dom0 only: `SUPPORTED_FEATURES` is present but `XENFEAT_dom0` is in neither it nor
    /// `FEATURES`.
    NotDom0Capable,
    /// `BSD_SYMTAB` is "yes": loading the symbol table after the image is not supported.
    BsdSymtabUnsupported,
    /// `PADDR_OFFSET` is present without `VIRT_BASE`.
    PaddrOffsetWithoutVirtBase {
        /// The `PADDR_OFFSET` value.
        paddr_offset: u64,
    },
    /// `VIRT_BASE` is not a multiple of 4 KiB.
    VirtBaseNotAligned {
        /// The `VIRT_BASE` value (0 if absent).
        virt_base: u64,
    },
    /// The image, moved by `VIRT_BASE - PADDR_OFFSET`, wraps around the address space.
    ImageWraps {
        /// `VIRT_BASE`.
        virt_base: u64,
        /// `PADDR_OFFSET`.
        paddr_offset: u64,
    },
    /// `VIRT_BASE` lies above the start of the image.
    VirtBaseAboveImage {
        /// `VIRT_BASE`.
        virt_base: u64,
        /// Virtual start of the image.
        kstart: u64,
    },
    /// The entry point (`ENTRY`, or `e_entry` without it) lies outside the image.
    EntryOutsideImage {
        /// Whether it came from the `ENTRY` note (else from the ELF header).
        from_note: bool,
        /// The entry point.
        entry: u64,
        /// Virtual start of the image.
        kstart: u64,
        /// Virtual end of the image.
        kend: u64,
    },
    /// `HYPERCALL_PAGE` is not a multiple of 4 KiB.
    HypercallPageNotAligned {
        /// Its value.
        va: u64,
    },
    /// `HYPERCALL_PAGE` lies outside the loaded image.
    HypercallPageOutsideImage {
        /// Its value.
        va: u64,
        /// Virtual start of the image.
        kstart: u64,
        /// Virtual end of the image.
        kend: u64,
    },
    /// `INIT_P2M` points inside the image.
    InitP2mInsideImage {
        /// Its value.
        va: u64,
    },
    /// No `PT_NOTE` segment holds a Xen note and the section header table, where the notes must
    /// then be looked for, is malformed.
    SectionHeaders(super::elf::ElfError),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = NoteType;
        match self {
            NoteError::NoXenNotes => write!(
                f,
                "not a Xen PV kernel: no Xen ELF notes (no PT_NOTE segment or SHT_NOTE section holds a note named \"Xen\")"
            ),
            NoteError::Truncated { offset } => write!(
                f,
                "Xen ELF note record at offset {offset:#x} of its PT_NOTE segment is truncated"
            ),
            NoteError::NotAString { note } => {
                write!(f, "Xen ELF note {note} is not a NUL-terminated string")
            }
            NoteError::BadNumericSize { note, size } => {
                write!(f, "Xen ELF note {note} has a {size}-byte value, ")?;
                if note.0 == XEN_ELFNOTE_SUPPORTED_FEATURES {
                    f.write_str("must be a non-empty array of 32-bit words")
                } else {
                    f.write_str("must be 1, 2, 4 or 8 bytes")
                }
            }
            NoteError::Missing { note } => write!(f, "missing Xen ELF note {note}"),
            NoteError::UnknownLoader { loader, guest_os } => match (loader, guest_os) {
                (None, None) => write!(
                    f,
                    "missing Xen ELF note {} (\"generic\") or {} (\"linux\")",
                    n(XEN_ELFNOTE_LOADER),
                    n(XEN_ELFNOTE_GUEST_OS)
                ),
                _ => {
                    write!(f, "Xen ELF note {} is ", n(XEN_ELFNOTE_LOADER))?;
                    quoted_or_missing(f, loader)?;
                    write!(f, " and {} is ", n(XEN_ELFNOTE_GUEST_OS))?;
                    quoted_or_missing(f, guest_os)?;
                    f.write_str(": need LOADER \"generic\" or GUEST_OS \"linux\"")
                }
            },
            NoteError::BadXenVersion { found } => write!(
                f,
                "Xen ELF note {} is \"{found}\", must start with \"xen-3.0\"",
                n(XEN_ELFNOTE_XEN_VERSION)
            ),
            NoteError::UnknownRequiredFeature { feature } => write!(
                f,
                "Xen ELF note {} requires unknown feature \"{feature}\"",
                n(XEN_ELFNOTE_FEATURES)
            ),
            NoteError::SupervisorModeRequired => write!(
                f,
                "Xen ELF note {} requires supervisor_mode_kernel: 64-bit PV kernels run in ring 3",
                n(XEN_ELFNOTE_FEATURES)
            ),
            NoteError::NotDom0Capable => write!(
                f,
                "Xen ELF note {} lacks XENFEAT_dom0: the kernel does not support dom0 operation",
                n(XEN_ELFNOTE_SUPPORTED_FEATURES)
            ),
            NoteError::BsdSymtabUnsupported => write!(
                f,
                "Xen ELF note {} is \"yes\": loading the symbol table is not supported",
                n(XEN_ELFNOTE_BSD_SYMTAB)
            ),
            NoteError::PaddrOffsetWithoutVirtBase { paddr_offset } => write!(
                f,
                "Xen ELF note {} is {paddr_offset:#x} but note {} is missing",
                n(XEN_ELFNOTE_PADDR_OFFSET),
                n(XEN_ELFNOTE_VIRT_BASE)
            ),
            NoteError::VirtBaseNotAligned { virt_base } => write!(
                f,
                "Xen ELF note {} {virt_base:#x} is not page aligned",
                n(XEN_ELFNOTE_VIRT_BASE)
            ),
            NoteError::ImageWraps {
                virt_base,
                paddr_offset,
            } => write!(
                f,
                "Xen ELF notes {} {virt_base:#x} and {} {paddr_offset:#x} move the image across the end of the address space",
                n(XEN_ELFNOTE_VIRT_BASE),
                n(XEN_ELFNOTE_PADDR_OFFSET)
            ),
            NoteError::VirtBaseAboveImage { virt_base, kstart } => write!(
                f,
                "Xen ELF note {} {virt_base:#x} lies above the image start {kstart:#x}",
                n(XEN_ELFNOTE_VIRT_BASE)
            ),
            NoteError::EntryOutsideImage {
                from_note,
                entry,
                kstart,
                kend,
            } => {
                if *from_note {
                    write!(f, "Xen ELF note {}", n(XEN_ELFNOTE_ENTRY))?;
                } else {
                    write!(
                        f,
                        "ELF entry point (no Xen ELF note {})",
                        n(XEN_ELFNOTE_ENTRY)
                    )?;
                }
                write!(
                    f,
                    " {entry:#x} lies outside the image {kstart:#x}..={kend:#x}"
                )
            }
            NoteError::HypercallPageNotAligned { va } => write!(
                f,
                "Xen ELF note {} {va:#x} is not page aligned",
                n(XEN_ELFNOTE_HYPERCALL_PAGE)
            ),
            NoteError::HypercallPageOutsideImage { va, kstart, kend } => write!(
                f,
                "Xen ELF note {} {va:#x} lies outside the image {kstart:#x}..{kend:#x}",
                n(XEN_ELFNOTE_HYPERCALL_PAGE)
            ),
            NoteError::InitP2mInsideImage { va } => write!(
                f,
                "Xen ELF note {} {va:#x} lies inside the image",
                n(XEN_ELFNOTE_INIT_P2M)
            ),
            NoteError::SectionHeaders(e) => write!(
                f,
                "no Xen ELF notes in a PT_NOTE segment, and the SHT_NOTE sections cannot be read: {e}"
            ),
        }
    }
}

fn quoted_or_missing(f: &mut fmt::Formatter<'_>, text: &Option<Excerpt>) -> fmt::Result {
    match text {
        Some(t) => write!(f, "\"{t}\""),
        None => f.write_str("missing"),
    }
}

/// The Xen notes of an image, as found (before defaults are applied).
///
/// String values are the bytes before the NUL; numeric values are zero-extended little-endian.
/// When a note appears twice, the later one wins, as in Xen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XenNotes<'a> {
    /// Number of notes named "Xen" seen.
    pub count: usize,
    /// `GUEST_OS`, e.g. "linux".
    pub guest_os: Option<&'a [u8]>,
    /// `GUEST_VERSION`.
    pub guest_version: Option<&'a [u8]>,
    /// `XEN_VERSION`, must start with "xen-3.0".
    pub xen_version: Option<&'a [u8]>,
    /// `LOADER`, "generic".
    pub loader: Option<&'a [u8]>,
    /// `PAE_MODE` (meaningless for 64-bit kernels; Xen zaps it).
    pub pae_mode: Option<&'a [u8]>,
    /// `FEATURES`, the `|`-separated feature string.
    pub features: Option<&'a [u8]>,
    /// `BSD_SYMTAB` is "yes".
    pub bsd_symtab: bool,
    /// `VIRT_BASE`.
    pub virt_base: Option<u64>,
    /// `PADDR_OFFSET`.
    pub paddr_offset: Option<u64>,
    /// `ENTRY`.
    pub entry: Option<u64>,
    /// `HYPERCALL_PAGE`.
    pub hypercall_page: Option<u64>,
    /// `INIT_P2M`: where the kernel wants the p2m list mapped, outside the initial region
    /// (`layout.rs` places it there, as Xen's `dom0_construct_pv` does).
    pub init_p2m: Option<u64>,
    /// `MOD_START_PFN` is non-zero.
    pub mod_start_pfn: bool,
    /// `SUPPORTED_FEATURES`, if present (first 32-bit word).
    pub supported_features: Option<u32>,
    /// `XENFEAT_*` bits the kernel supports: `SUPPORTED_FEATURES` plus every `FEATURES` entry.
    pub f_supported: u32,
    /// `XENFEAT_*` bits the kernel requires: the `!`-prefixed `FEATURES` entries.
    pub f_required: u32,
}

/// Reads a little-endian `u32` at `off` of `b`, or `None` past the end.
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// `x` rounded up to a multiple of 4, or `None` on overflow.
fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// The string value of a string note: the bytes before the first NUL of its descriptor, or of its
/// padding (`padded` is the descriptor followed by its padding up to the next 4-byte boundary).
fn string_value(note: NoteType, padded: &[u8]) -> Result<&[u8], NoteError> {
    let nul = padded
        .iter()
        .position(|&b| b == 0)
        .ok_or(NoteError::NotAString { note })?;
    Ok(&padded[..nul])
}

/// The value of a numeric note (`elf_note_numeric`): 1, 2, 4 or 8 little-endian bytes.
fn numeric_value(note: NoteType, desc: &[u8]) -> Result<u64, NoteError> {
    match desc.len() {
        1 | 2 | 4 | 8 => {
            let mut v = [0u8; 8];
            v[..desc.len()].copy_from_slice(desc);
            Ok(u64::from_le_bytes(v))
        }
        size => Err(NoteError::BadNumericSize { note, size }),
    }
}

/// Applies the `FEATURES` string to the feature bitmaps (`elf_xen_parse_features`).
fn parse_features(
    features: &[u8],
    supported: &mut u32,
    required: &mut u32,
) -> Result<(), NoteError> {
    for entry in features.split(|&b| b == b'|') {
        if entry.is_empty() {
            continue;
        }
        let (is_required, name) = match entry {
            [b'!', rest @ ..] => (true, rest),
            _ => (false, entry),
        };
        // Xen copies each entry into a 64-byte buffer: longer names never match.
        let bit = FEATURE_NAMES
            .iter()
            .find(|(known, _)| entry.len() <= FEATURE_MAX && known.as_bytes() == name)
            .map(|&(_, bit)| bit);
        match (bit, is_required) {
            (Some(bit), required_bit) => {
                *supported |= 1 << bit;
                if required_bit {
                    *required |= 1 << bit;
                }
            }
            (None, true) => {
                return Err(NoteError::UnknownRequiredFeature {
                    feature: Excerpt::new(name),
                })
            }
            (None, false) => {}
        }
    }
    Ok(())
}

impl<'a> XenNotes<'a> {
    /// Reads every note named "Xen" from the image's `PT_NOTE` segments (`elf_xen_parse_notes`),
    /// or, when they hold none, from its `SHT_NOTE` sections (as `elf_xen_parse` falls back to
    /// them), and applies Xen's content checks (`elf_xen_note_check`).
    pub fn parse(elf: &ElfImage<'a>) -> Result<Self, NoteError> {
        let mut notes = XenNotes::default();
        for segment in elf.note_bytes() {
            notes.parse_segment(segment)?;
        }
        if notes.count == 0 {
            // A broken section header table is only an error when the notes must come from it.
            let sections = elf.note_sections().map_err(NoteError::SectionHeaders)?;
            for &(off, len) in &sections {
                notes.parse_segment(&elf.bytes()[off..off + len])?;
            }
        }
        notes.check()?;
        Ok(notes)
    }

    fn parse_segment(&mut self, seg: &'a [u8]) -> Result<(), NoteError> {
        let mut pos = 0usize;
        while pos < seg.len() {
            let truncated = NoteError::Truncated { offset: pos };
            let namesz = u32_at(seg, pos).ok_or(truncated.clone())? as usize;
            let descsz = u32_at(seg, pos + 4).ok_or(truncated.clone())? as usize;
            let ty = u32_at(seg, pos + 8).ok_or(truncated.clone())?;
            let name_at = pos + 12;
            let desc_at = align4(namesz)
                .and_then(|n| name_at.checked_add(n))
                .ok_or(truncated.clone())?;
            let name = name_at
                .checked_add(namesz)
                .and_then(|end| seg.get(name_at..end))
                .ok_or(truncated.clone())?;
            let desc = desc_at
                .checked_add(descsz)
                .and_then(|end| seg.get(desc_at..end))
                .ok_or(truncated.clone())?;
            // The next record starts after the 4-byte padded descriptor (`elf_note_next`).
            pos = align4(descsz)
                .and_then(|d| desc_at.checked_add(d))
                .ok_or(truncated)?;
            // The descriptor and whatever of its padding the segment holds.
            let padded = &seg[desc_at..pos.min(seg.len())];

            // `strcmp(note_name, "Xen")`: the name up to its NUL.
            let name = name.split(|&b| b == 0).next().unwrap_or(name);
            if name == b"Xen" {
                self.count += 1;
                self.apply(NoteType(ty), desc, padded)?;
            }
        }
        Ok(())
    }

    /// Records one Xen note (`elf_xen_parse_note`). Unknown types are ignored, as in Xen.
    fn apply(&mut self, note: NoteType, desc: &'a [u8], padded: &'a [u8]) -> Result<(), NoteError> {
        let string = || string_value(note, padded);
        let number = || numeric_value(note, desc);
        match note.0 {
            XEN_ELFNOTE_GUEST_OS => self.guest_os = Some(string()?),
            XEN_ELFNOTE_GUEST_VERSION => self.guest_version = Some(string()?),
            XEN_ELFNOTE_XEN_VERSION => self.xen_version = Some(string()?),
            XEN_ELFNOTE_LOADER => self.loader = Some(string()?),
            XEN_ELFNOTE_PAE_MODE => self.pae_mode = Some(string()?),
            XEN_ELFNOTE_BSD_SYMTAB => self.bsd_symtab = string()? == b"yes",
            XEN_ELFNOTE_FEATURES => {
                let features = string()?;
                self.features = Some(features);
                parse_features(features, &mut self.f_supported, &mut self.f_required)?;
            }
            XEN_ELFNOTE_VIRT_BASE => self.virt_base = Some(number()?),
            XEN_ELFNOTE_PADDR_OFFSET => self.paddr_offset = Some(number()?),
            XEN_ELFNOTE_ENTRY => self.entry = Some(number()?),
            XEN_ELFNOTE_HYPERCALL_PAGE => self.hypercall_page = Some(number()?),
            XEN_ELFNOTE_INIT_P2M => self.init_p2m = Some(number()?),
            XEN_ELFNOTE_MOD_START_PFN => self.mod_start_pfn = number()? != 0,
            XEN_ELFNOTE_SUPPORTED_FEATURES => {
                // `elf_note_numeric_array(elf, note, 4, 0)`: an array of 32-bit words.
                if desc.is_empty() || !desc.len().is_multiple_of(4) {
                    return Err(NoteError::BadNumericSize {
                        note,
                        size: desc.len(),
                    });
                }
                let word = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]);
                self.supported_features = Some(word);
                self.f_supported |= word;
            }
            // HV_START_LOW (32-bit guests), L1_MFN_VALID, SUSPEND_CANCEL, PHYS32_ENTRY (PVH) and
            // unknown types do not affect a 64-bit PV build.
            _ => {}
        }
        Ok(())
    }

    /// `elf_xen_note_check`: a Xen image, for the generic loader (or Linux), built for Xen 3.0+.
    fn check(&self) -> Result<(), NoteError> {
        if self.count == 0 {
            return Err(NoteError::NoXenNotes);
        }
        let generic = self.loader.is_some_and(|l| l.starts_with(b"generic"));
        let linux = self.guest_os.is_some_and(|g| g.starts_with(b"linux"));
        if !generic && !linux {
            return Err(NoteError::UnknownLoader {
                loader: self.loader.map(Excerpt::new),
                guest_os: self.guest_os.map(Excerpt::new),
            });
        }
        match self.xen_version {
            None => Err(NoteError::Missing {
                note: NoteType(XEN_ELFNOTE_XEN_VERSION),
            }),
            Some(v) if !v.starts_with(b"xen-3.0") => Err(NoteError::BadXenVersion {
                found: Excerpt::new(v),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Whether the kernel declares support for `XENFEAT_*` bit `feature`.
    pub fn supports(&self, feature: u32) -> bool {
        feature < 32 && self.f_supported & (1 << feature) != 0
    }

    /// Whether the kernel requires `XENFEAT_*` bit `feature`.
    pub fn requires(&self, feature: u32) -> bool {
        feature < 32 && self.f_required & (1 << feature) != 0
    }
}

/// Where the kernel goes and where it starts, once Xen's defaults are applied
/// (`elf_xen_addr_calc_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAddresses {
    /// `VIRT_BASE`, default 0: the start of the initial mapping (`v_start`).
    pub virt_base: u64,
    /// `PADDR_OFFSET`, default 0 when the image has ELF notes (Xen uses `VIRT_BASE` only for the
    /// legacy `__xen_guest` section, which we do not support).
    pub paddr_offset: u64,
    /// `VIRT_BASE - PADDR_OFFSET`: added to a segment's `p_paddr` to get its virtual address.
    pub virt_offset: u64,
    /// Virtual address of the image's first byte (`virt_kstart`).
    pub kstart: u64,
    /// Virtual address one past the image's last byte (`virt_kend`).
    pub kend: u64,
    /// Entry point: `ENTRY`, default `e_entry`.
    pub entry: u64,
    /// `HYPERCALL_PAGE`, if the kernel has one.
    pub hypercall_page: Option<u64>,
}

impl KernelAddresses {
    /// Applies Xen's defaults and checks the addresses against the image.
    ///
    /// Xen's checks (`elf_xen_addr_calc_check`): `PADDR_OFFSET` needs `VIRT_BASE`; the image must
    /// not wrap; the entry point must lie in `[kstart, kend]`; `VIRT_BASE <= kstart`; `INIT_P2M`
    /// must not point into the image. Ours on top: `VIRT_BASE` page aligned, and `HYPERCALL_PAGE`
    /// page aligned and inside the image (Xen only asks for the initial mapping, `dom0_build.c`,
    /// and would write a misaligned page across two).
    pub fn compute(elf: &ElfImage<'_>, notes: &XenNotes<'_>) -> Result<Self, NoteError> {
        if let (Some(paddr_offset), None) = (notes.paddr_offset, notes.virt_base) {
            return Err(NoteError::PaddrOffsetWithoutVirtBase { paddr_offset });
        }
        let virt_base = notes.virt_base.unwrap_or(0);
        let paddr_offset = notes.paddr_offset.unwrap_or(0);
        if !virt_base.is_multiple_of(4096) {
            return Err(NoteError::VirtBaseNotAligned { virt_base });
        }
        let virt_offset = virt_base.wrapping_sub(paddr_offset);
        let kstart = elf.pstart.wrapping_add(virt_offset);
        let kend = elf.pend.wrapping_add(virt_offset);
        if kstart > kend {
            return Err(NoteError::ImageWraps {
                virt_base,
                paddr_offset,
            });
        }
        let entry = notes.entry.unwrap_or(elf.entry);
        if entry < kstart || entry > kend {
            return Err(NoteError::EntryOutsideImage {
                from_note: notes.entry.is_some(),
                entry,
                kstart,
                kend,
            });
        }
        if virt_base > kstart {
            return Err(NoteError::VirtBaseAboveImage { virt_base, kstart });
        }
        if let Some(va) = notes.init_p2m {
            if (kstart..kend).contains(&va) {
                return Err(NoteError::InitP2mInsideImage { va });
            }
        }
        if let Some(va) = notes.hypercall_page {
            if !va.is_multiple_of(4096) {
                return Err(NoteError::HypercallPageNotAligned { va });
            }
            // The page must overlap the image; the image's first and last pages are mapped whole.
            if va >= kend || va.saturating_add(4096) <= kstart {
                return Err(NoteError::HypercallPageOutsideImage { va, kstart, kend });
            }
        }
        Ok(Self {
            virt_base,
            paddr_offset,
            virt_offset,
            kstart,
            kend,
            entry,
            hypercall_page: notes.hypercall_page,
        })
    }
}
