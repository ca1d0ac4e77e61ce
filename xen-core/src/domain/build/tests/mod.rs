//! Host tests of the domain builder: a tiny ELF writer makes kernels with chosen notes; each
//! refusal is checked for its variant and for naming its note, and built domains are checked by
//! walking their page tables the way the CPU (and `crate::guest_access::translate`) would.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hypercall_abi::elfnote::*;
use hypercall_abi::xen::{StartInfo, SIF_MOD_START_PFN};
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

mod building;
mod elf_refusals;
mod layouts;
mod note_refusals;
