//! Multiboot 1: the header that lets QEMU (or GRUB) load the image, and the boot information it
//! hands over.
//!
//! Layouts are those of the Multiboot Specification 0.6.96 (`multiboot.h` there; Xen's copy is
//! `xen/arch/x86/include/asm/multiboot.h`). The information structure is boot-loader input: every
//! pointer and length is checked, and [`BootInfo::parse`] validates everything up front so that the
//! accessors afterwards cannot fail.

use core::fmt;

pub use crate::mm::e820::{MemoryKind, MemoryRegion};
use crate::mm::{MachineMemory, Maddr};

/// `magic` of the multiboot1 header in the image.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flag: align boot modules on 4 KiB boundaries (guest kernels are mapped page by page).
pub const HEADER_FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: the loader must provide `mem_*` and, if it can, the memory map.
pub const HEADER_FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag: the "a.out kludge": the header carries load addresses, so the loader does not need
/// to understand the file format. QEMU loads 64-bit ELF files only this way.
pub const HEADER_FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// The flags of our header.
pub const HEADER_FLAGS: u32 =
    HEADER_FLAG_PAGE_ALIGN | HEADER_FLAG_MEMORY_INFO | HEADER_FLAG_AOUT_KLUDGE;
/// `checksum` of our header: magic + flags + checksum must be 0 (mod 2^32).
pub const HEADER_CHECKSUM: u32 = 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(HEADER_FLAGS));

/// The value a multiboot1 loader leaves in EAX when it enters the image.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Flags of the information structure: which fields are valid.
pub mod info_flags {
    /// `mem_lower` and `mem_upper` are valid.
    pub const MEMORY: u32 = 1 << 0;
    /// `cmdline` is valid.
    pub const CMDLINE: u32 = 1 << 2;
    /// `mods_count` and `mods_addr` are valid.
    pub const MODS: u32 = 1 << 3;
    /// `mmap_length` and `mmap_addr` are valid.
    pub const MMAP: u32 = 1 << 6;
    /// `boot_loader_name` is valid.
    pub const BOOT_LOADER_NAME: u32 = 1 << 9;
}

/// Byte offsets of the fields we use in the information structure.
mod info_offset {
    pub const FLAGS: usize = 0;
    pub const MEM_LOWER: usize = 4;
    pub const MEM_UPPER: usize = 8;
    pub const CMDLINE: usize = 16;
    pub const MODS_COUNT: usize = 20;
    pub const MODS_ADDR: usize = 24;
    pub const MMAP_LENGTH: usize = 44;
    pub const MMAP_ADDR: usize = 48;
    pub const BOOT_LOADER_NAME: usize = 64;
    /// Bytes we read: up to and including `boot_loader_name`.
    pub const SIZE_READ: usize = 68;
}

/// Size of one entry of the module list (`mod_start`, `mod_end`, `string`, `reserved`).
const MODULE_ENTRY_SIZE: usize = 16;
/// Size of a memory-map entry without its leading `size` field (`base_addr`, `length`, `type`).
const MMAP_ENTRY_MIN_SIZE: u32 = 20;

/// The most boot modules we accept (dom0 plus domUs); more is reported as an error.
pub const MAX_MODULES: usize = 32;
/// The longest string (command line, loader name) we accept, without its NUL.
pub const MAX_STRING_LEN: usize = 4096;

/// Which string of the information structure a string error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringField {
    /// The hypervisor's command line.
    Cmdline,
    /// The boot loader's name.
    BootLoaderName,
    /// The string of the module with this index.
    Module(usize),
}

/// Everything that can be wrong with a multiboot1 hand-over. Each check has its own variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// EAX did not hold [`BOOTLOADER_MAGIC`]: we were not started by a multiboot1 loader.
    BadMagic(u32),
    /// The information structure itself cannot be read.
    InfoUnreadable(Maddr),
    /// A string runs into unreadable memory before its NUL.
    StringUnreadable(StringField, Maddr),
    /// A string has no NUL within [`MAX_STRING_LEN`] bytes.
    StringTooLong(StringField, Maddr),
    /// A string is not UTF-8.
    StringNotUtf8(StringField, Maddr),
    /// The memory-map buffer cannot be read.
    MmapUnreadable { addr: Maddr, len: u32 },
    /// A memory-map entry's `size` is smaller than the fields it must hold.
    MmapEntryTooSmall { offset: u32, size: u32 },
    /// A memory-map entry runs past `mmap_length`.
    MmapEntryTruncated { offset: u32 },
    /// More modules than [`MAX_MODULES`].
    TooManyModules(u32),
    /// The module list cannot be read.
    ModulesUnreadable { addr: Maddr, count: u32 },
    /// A module ends before it starts.
    ModuleEndsBeforeStart {
        index: usize,
        start: Maddr,
        end: Maddr,
    },
}

impl fmt::Display for StringField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringField::Cmdline => write!(f, "command line"),
            StringField::BootLoaderName => write!(f, "boot loader name"),
            StringField::Module(index) => write!(f, "module {index} string"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadMagic(magic) => {
                write!(
                    f,
                    "boot magic {magic:#x} is not {BOOTLOADER_MAGIC:#x}: not a multiboot1 loader"
                )
            }
            Error::InfoUnreadable(addr) => write!(f, "multiboot info at {addr} is unreadable"),
            Error::StringUnreadable(field, addr) => write!(f, "{field} at {addr} is unreadable"),
            Error::StringTooLong(field, addr) => {
                write!(f, "{field} at {addr} is longer than {MAX_STRING_LEN} bytes")
            }
            Error::StringNotUtf8(field, addr) => write!(f, "{field} at {addr} is not UTF-8"),
            Error::MmapUnreadable { addr, len } => {
                write!(f, "memory map at {addr} ({len} bytes) is unreadable")
            }
            Error::MmapEntryTooSmall { offset, size } => {
                write!(
                    f,
                    "memory map entry at offset {offset} has size {size} < {MMAP_ENTRY_MIN_SIZE}"
                )
            }
            Error::MmapEntryTruncated { offset } => {
                write!(
                    f,
                    "memory map entry at offset {offset} runs past the end of the map"
                )
            }
            Error::TooManyModules(count) => {
                write!(f, "{count} modules, at most {MAX_MODULES} supported")
            }
            Error::ModulesUnreadable { addr, count } => {
                write!(f, "module list at {addr} ({count} entries) is unreadable")
            }
            Error::ModuleEndsBeforeStart { index, start, end } => {
                write!(f, "module {index} ends ({end}) before it starts ({start})")
            }
        }
    }
}

/// Reads the little-endian `u32` at `offset` of `bytes`; the caller has checked the length.
fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Reads the little-endian `u64` at `offset` of `bytes`.
fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Reads the NUL-terminated UTF-8 string at `addr`.
fn read_cstr<M: MachineMemory>(mem: &M, field: StringField, addr: Maddr) -> Result<&str, Error> {
    // Byte by byte: the string may end right before unreadable memory, so we cannot ask for
    // MAX_STRING_LEN bytes at once. Boot strings are short; this runs once per string.
    let mut len = 0;
    loop {
        if len > MAX_STRING_LEN {
            return Err(Error::StringTooLong(field, addr));
        }
        let byte_addr = addr
            .checked_add(len as u64)
            .ok_or(Error::StringUnreadable(field, addr))?;
        match mem.read(byte_addr, 1) {
            Some([0]) => break,
            Some(_) => len += 1,
            None => return Err(Error::StringUnreadable(field, addr)),
        }
    }
    let bytes = mem
        .read(addr, len)
        .ok_or(Error::StringUnreadable(field, addr))?;
    core::str::from_utf8(bytes).map_err(|_| Error::StringNotUtf8(field, addr))
}

/// The boot information handed over by a multiboot1 loader, validated.
#[derive(Debug)]
pub struct BootInfo<'m> {
    /// The raw `flags` word: which optional fields the loader filled in.
    pub flags: u32,
    /// KiB of memory below 1 MiB and above 1 MiB (the legacy `mem_lower`/`mem_upper`), if given.
    pub mem_lower_upper_kib: Option<(u32, u32)>,
    /// The raw command line, image name included (see [`crate::cmdline::cook`]).
    pub cmdline: Option<&'m str>,
    /// The boot loader's name, for example `qemu`.
    pub boot_loader_name: Option<&'m str>,
    /// The firmware's memory map (E820 on PCs), if given.
    pub memory_map: Option<MemoryMap<'m>>,
    /// The boot modules, in the loader's order: module 0 becomes dom0.
    pub modules: heapless::Vec<Module<'m>, MAX_MODULES>,
}

impl<'m> BootInfo<'m> {
    /// Checks `magic` (the loader's EAX) and parses and validates the information structure at
    /// `info` (the loader's EBX), reading it from `mem`.
    pub fn parse<M: MachineMemory>(mem: &'m M, magic: u32, info: Maddr) -> Result<Self, Error> {
        if magic != BOOTLOADER_MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let raw = mem
            .read(info, info_offset::SIZE_READ)
            .ok_or(Error::InfoUnreadable(info))?;
        // SIZE_READ covers every offset below, so these reads cannot fail.
        let field = |offset| u32_at(raw, offset).ok_or(Error::InfoUnreadable(info));
        let flags = field(info_offset::FLAGS)?;
        let has = |flag| flags & flag != 0;

        let mem_lower_upper_kib = if has(info_flags::MEMORY) {
            Some((
                field(info_offset::MEM_LOWER)?,
                field(info_offset::MEM_UPPER)?,
            ))
        } else {
            None
        };
        let cmdline = if has(info_flags::CMDLINE) {
            let addr = Maddr(field(info_offset::CMDLINE)?.into());
            Some(read_cstr(mem, StringField::Cmdline, addr)?)
        } else {
            None
        };
        let boot_loader_name = if has(info_flags::BOOT_LOADER_NAME) {
            let addr = Maddr(field(info_offset::BOOT_LOADER_NAME)?.into());
            Some(read_cstr(mem, StringField::BootLoaderName, addr)?)
        } else {
            None
        };
        let memory_map = if has(info_flags::MMAP) {
            let addr = Maddr(field(info_offset::MMAP_ADDR)?.into());
            let len = field(info_offset::MMAP_LENGTH)?;
            Some(MemoryMap::parse(mem, addr, len)?)
        } else {
            None
        };
        let modules = if has(info_flags::MODS) {
            let addr = Maddr(field(info_offset::MODS_ADDR)?.into());
            parse_modules(mem, addr, field(info_offset::MODS_COUNT)?)?
        } else {
            heapless::Vec::new()
        };
        Ok(Self {
            flags,
            mem_lower_upper_kib,
            cmdline,
            boot_loader_name,
            memory_map,
            modules,
        })
    }
}

/// One boot module: a file the loader put in memory, with its string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'m> {
    /// First byte of the module.
    pub start: Maddr,
    /// One past the last byte of the module (QEMU and GRUB both use an exclusive end).
    pub end: Maddr,
    /// The module's string: with QEMU's `-initrd "path args"`, the path and then the arguments.
    pub string: &'m str,
}

impl Module<'_> {
    /// Size of the module in bytes.
    pub fn len(&self) -> u64 {
        // `end >= start` was checked when parsing.
        self.end.0 - self.start.0
    }

    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_modules<M: MachineMemory>(
    mem: &M,
    addr: Maddr,
    count: u32,
) -> Result<heapless::Vec<Module<'_>, MAX_MODULES>, Error> {
    let mut modules = heapless::Vec::new();
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_MODULES)
        .ok_or(Error::TooManyModules(count))?;
    let table = mem
        .read(addr, n * MODULE_ENTRY_SIZE)
        .ok_or(Error::ModulesUnreadable { addr, count })?;
    for (index, entry) in table.chunks_exact(MODULE_ENTRY_SIZE).enumerate() {
        let unreadable = Error::ModulesUnreadable { addr, count };
        let start = Maddr(u32_at(entry, 0).ok_or(unreadable)?.into());
        let end = Maddr(u32_at(entry, 4).ok_or(unreadable)?.into());
        let string_addr = Maddr(u32_at(entry, 8).ok_or(unreadable)?.into());
        if end < start {
            return Err(Error::ModuleEndsBeforeStart { index, start, end });
        }
        let string = read_cstr(mem, StringField::Module(index), string_addr)?;
        // Cannot fail: `n <= MAX_MODULES` was checked above.
        modules
            .push(Module { start, end, string })
            .map_err(|_| Error::TooManyModules(count))?;
    }
    Ok(modules)
}

/// The memory map: a buffer of variable-size entries, each preceded by its own `size` field.
#[derive(Clone, Copy, Debug)]
pub struct MemoryMap<'m> {
    raw: &'m [u8],
}

impl<'m> MemoryMap<'m> {
    fn parse<M: MachineMemory>(mem: &'m M, addr: Maddr, len: u32) -> Result<Self, Error> {
        let unreadable = Error::MmapUnreadable { addr, len };
        let raw = mem
            .read(addr, usize::try_from(len).map_err(|_| unreadable)?)
            .ok_or(unreadable)?;
        // Walk the entries once to check them, so that `iter` never meets a malformed entry.
        let mut offset: u32 = 0;
        while offset < len {
            let size = u32_at(raw, offset as usize).ok_or(Error::MmapEntryTruncated { offset })?;
            if size < MMAP_ENTRY_MIN_SIZE {
                return Err(Error::MmapEntryTooSmall { offset, size });
            }
            let next = offset.checked_add(4).and_then(|o| o.checked_add(size));
            match next {
                Some(next) if next <= len => offset = next,
                _ => return Err(Error::MmapEntryTruncated { offset }),
            }
        }
        Ok(Self { raw })
    }

    /// The regions, in the loader's order.
    pub fn iter(&self) -> impl Iterator<Item = MemoryRegion> + 'm {
        let raw = self.raw;
        let mut offset = 0usize;
        core::iter::from_fn(move || {
            // Entries were validated in `parse`; a `None` here just ends the walk.
            let size = u32_at(raw, offset)? as usize;
            let entry = raw.get(offset + 4..offset + 4 + size)?;
            offset += 4 + size;
            Some(MemoryRegion {
                base: Maddr(u64_at(entry, 0)?),
                len: u64_at(entry, 8)?,
                kind: MemoryKind::from_raw(u32_at(entry, 16)?),
            })
        })
    }

    /// Total bytes of [`MemoryKind::Usable`] RAM (regions are summed as given, not merged).
    pub fn usable_bytes(&self) -> u64 {
        self.iter()
            .filter(|region| region.kind == MemoryKind::Usable)
            .fold(0u64, |total, region| total.saturating_add(region.len))
    }
}

#[cfg(test)]
mod tests;
