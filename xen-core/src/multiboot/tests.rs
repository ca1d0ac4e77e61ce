//! Host tests of the multiboot1 parser: a well-formed hand-over as QEMU builds it, then one test
//! per malformation, each expecting its own error variant.

use super::*;
use crate::mm::FakeMemory;

/// Where the fake loader puts things in the fake machine memory (which starts at 0).
const INFO: u64 = 0x1000;
const STRINGS: u64 = 0x2000;
const MMAP: u64 = 0x3000;
const MODS: u64 = 0x4000;
const MEM_SIZE: usize = 0x8000;

/// A fake multiboot1 loader: fills in an information structure the way QEMU does.
struct FakeLoader {
    mem: FakeMemory,
    flags: u32,
    next_string: u64,
}

impl FakeLoader {
    fn new() -> Self {
        Self {
            mem: FakeMemory::new(0, MEM_SIZE),
            flags: 0,
            next_string: STRINGS,
        }
    }

    fn set_info_u32(&mut self, offset: usize, value: u32) {
        self.mem.put(INFO + offset as u64, &value.to_le_bytes());
    }

    /// Stores a NUL-terminated string and returns its address.
    fn string(&mut self, s: &[u8]) -> u32 {
        let addr = self.next_string;
        self.mem.put(addr, s);
        self.mem.put(addr + s.len() as u64, &[0]);
        self.next_string += s.len() as u64 + 1;
        addr as u32
    }

    fn cmdline(mut self, s: &str) -> Self {
        let addr = self.string(s.as_bytes());
        self.flags |= info_flags::CMDLINE;
        self.set_info_u32(info_offset::CMDLINE, addr);
        self
    }

    fn boot_loader_name(mut self, s: &str) -> Self {
        let addr = self.string(s.as_bytes());
        self.flags |= info_flags::BOOT_LOADER_NAME;
        self.set_info_u32(info_offset::BOOT_LOADER_NAME, addr);
        self
    }

    /// A memory map of well-formed entries `(base, len, type)`.
    fn mmap(self, regions: &[(u64, u64, u32)]) -> Self {
        let mut raw = Vec::new();
        for &(base, len, kind) in regions {
            raw.extend_from_slice(&20u32.to_le_bytes());
            raw.extend_from_slice(&base.to_le_bytes());
            raw.extend_from_slice(&len.to_le_bytes());
            raw.extend_from_slice(&kind.to_le_bytes());
        }
        self.raw_mmap(&raw)
    }

    fn raw_mmap(mut self, raw: &[u8]) -> Self {
        self.mem.put(MMAP, raw);
        self.flags |= info_flags::MMAP;
        self.set_info_u32(info_offset::MMAP_ADDR, MMAP as u32);
        self.set_info_u32(info_offset::MMAP_LENGTH, raw.len() as u32);
        self
    }

    /// Modules `(start, end, string)`.
    fn modules(mut self, mods: &[(u32, u32, &str)]) -> Self {
        for (i, &(start, end, s)) in mods.iter().enumerate() {
            let string = self.string(s.as_bytes());
            let entry = MODS + (i * MODULE_ENTRY_SIZE) as u64;
            for (j, value) in [start, end, string, 0].into_iter().enumerate() {
                self.mem.put(entry + 4 * j as u64, &value.to_le_bytes());
            }
        }
        self.flags |= info_flags::MODS;
        self.set_info_u32(info_offset::MODS_ADDR, MODS as u32);
        self.set_info_u32(info_offset::MODS_COUNT, mods.len() as u32);
        self
    }

    fn memory(mut self, lower: u32, upper: u32) -> Self {
        self.flags |= info_flags::MEMORY;
        self.set_info_u32(info_offset::MEM_LOWER, lower);
        self.set_info_u32(info_offset::MEM_UPPER, upper);
        self
    }

    /// Writes the flags word and returns the fake memory, ready to parse.
    fn finish(mut self) -> FakeMemory {
        let flags = self.flags;
        self.set_info_u32(info_offset::FLAGS, flags);
        self.mem
    }
}

fn parse(mem: &FakeMemory) -> Result<BootInfo<'_>, Error> {
    BootInfo::parse(mem, BOOTLOADER_MAGIC, Maddr(INFO))
}

/// What QEMU 10 gives a 512 MiB `-machine q35` guest, give or take.
fn qemu_like() -> FakeMemory {
    FakeLoader::new()
        .memory(639, 523_136)
        .boot_loader_name("qemu")
        .cmdline("build/xen console=com1 loglvl=all")
        .mmap(&[
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x10_0000, 0x1fee_0000, 1),
            (0x1ffe_0000, 0x20000, 2),
            (0xb000_0000, 0x1000_0000, 2),
            (0xfed1_c000, 0x4000, 2),
            (0xfeff_c000, 0x4000, 2),
            (0xfffc_0000, 0x40000, 2),
        ])
        .modules(&[
            (0x40_0000, 0x40_2000, "/path/a.elf arg1 arg2"),
            (0x40_2000, 0x40_2800, "/path/b.elf x=1"),
        ])
        .finish()
}

#[test]
fn header_checksum_makes_the_header_sum_to_zero() {
    assert_eq!(
        HEADER_MAGIC
            .wrapping_add(HEADER_FLAGS)
            .wrapping_add(HEADER_CHECKSUM),
        0
    );
    assert_ne!(
        HEADER_FLAGS & HEADER_FLAG_AOUT_KLUDGE,
        0,
        "QEMU loads a 64-bit image only with it"
    );
}

#[test]
fn parses_a_qemu_like_hand_over() {
    let mem = qemu_like();
    let info = parse(&mem).unwrap();
    assert_eq!(info.boot_loader_name, Some("qemu"));
    assert_eq!(info.cmdline, Some("build/xen console=com1 loglvl=all"));
    assert_eq!(info.mem_lower_upper_kib, Some((639, 523_136)));
    let modules: Vec<_> = info
        .modules
        .iter()
        .map(|m| (m.start.0, m.len(), m.string))
        .collect();
    assert_eq!(
        modules,
        [
            (0x40_0000, 0x2000, "/path/a.elf arg1 arg2"),
            (0x40_2000, 0x800, "/path/b.elf x=1")
        ]
    );
}

#[test]
fn memory_map_lists_regions_in_order_and_sums_usable_ram() {
    let mem = qemu_like();
    let map = parse(&mem).unwrap().memory_map.unwrap();
    let regions: Vec<_> = map.iter().collect();
    assert_eq!(regions.len(), 9);
    assert_eq!(
        regions[0],
        MemoryRegion {
            base: Maddr(0),
            len: 0x9fc00,
            kind: MemoryKind::Usable
        }
    );
    assert_eq!(regions[1].kind, MemoryKind::Reserved(2));
    assert_eq!(map.usable_bytes(), 0x9fc00 + 0x1fee_0000);
    assert_eq!(map.usable_bytes() >> 20, 511);
}

#[test]
fn memory_kinds_use_e820_numbers() {
    let mem = FakeLoader::new()
        .mmap(&[(0, 1, 3), (1, 1, 4), (2, 1, 5), (3, 1, 99)])
        .finish();
    let map = parse(&mem).unwrap().memory_map.unwrap();
    let kinds: Vec<_> = map.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            MemoryKind::AcpiReclaimable,
            MemoryKind::AcpiNvs,
            MemoryKind::BadMemory,
            MemoryKind::Reserved(99)
        ]
    );
    assert_eq!(map.usable_bytes(), 0);
}

#[test]
fn memory_map_entries_may_be_larger_than_the_fields_we_read() {
    // The spec lets `size` exceed 20 (future fields); the walk must skip the extra bytes.
    let mut raw = Vec::new();
    for (base, pad) in [(0x1000u64, 4usize), (0x2000, 0)] {
        raw.extend_from_slice(&(20 + pad as u32).to_le_bytes());
        raw.extend_from_slice(&base.to_le_bytes());
        raw.extend_from_slice(&0x1000u64.to_le_bytes());
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend(std::iter::repeat_n(0xee, pad));
    }
    let mem = FakeLoader::new().raw_mmap(&raw).finish();
    let map = parse(&mem).unwrap().memory_map.unwrap();
    let bases: Vec<_> = map.iter().map(|r| r.base.0).collect();
    assert_eq!(bases, [0x1000, 0x2000]);
}

#[test]
fn absent_fields_are_none_and_no_modules() {
    let mem = FakeLoader::new().finish();
    let info = parse(&mem).unwrap();
    assert_eq!(info.flags, 0);
    assert!(info.cmdline.is_none() && info.boot_loader_name.is_none());
    assert!(info.memory_map.is_none() && info.mem_lower_upper_kib.is_none());
    assert!(info.modules.is_empty());
}

#[test]
fn fields_whose_flag_is_clear_are_not_read() {
    // A garbage cmdline pointer must not matter when the CMDLINE flag is clear.
    let mut loader = FakeLoader::new();
    loader.set_info_u32(info_offset::CMDLINE, 0xdead_beef);
    let mem = loader.finish();
    assert!(parse(&mem).unwrap().cmdline.is_none());
}

#[test]
fn rejects_a_wrong_boot_magic() {
    let mem = qemu_like();
    assert_eq!(
        BootInfo::parse(&mem, 0x36d7_6289, Maddr(INFO)).unwrap_err(),
        Error::BadMagic(0x36d7_6289)
    );
}

#[test]
fn rejects_an_unreadable_info_structure() {
    let mem = qemu_like();
    let addr = Maddr(MEM_SIZE as u64 - 8);
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, addr).unwrap_err(),
        Error::InfoUnreadable(addr)
    );
}

#[test]
fn rejects_a_string_that_runs_off_the_end_of_memory() {
    let mut loader = FakeLoader::new().cmdline("x");
    let addr = MEM_SIZE as u64 - 3;
    loader.mem.put(addr, b"abc");
    loader.set_info_u32(info_offset::CMDLINE, addr as u32);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::StringUnreadable(StringField::Cmdline, Maddr(addr))
    );
}

#[test]
fn rejects_a_string_without_nul_within_the_limit() {
    let long = "a".repeat(MAX_STRING_LEN + 1);
    let mem = FakeLoader::new().boot_loader_name(&long).finish();
    let err = parse(&mem).unwrap_err();
    assert_eq!(
        err,
        Error::StringTooLong(StringField::BootLoaderName, Maddr(STRINGS))
    );
}

#[test]
fn accepts_a_string_of_exactly_the_limit() {
    let longest = "a".repeat(MAX_STRING_LEN);
    let mem = FakeLoader::new().cmdline(&longest).finish();
    assert_eq!(
        parse(&mem).unwrap().cmdline.map(str::len),
        Some(MAX_STRING_LEN)
    );
}

#[test]
fn rejects_a_string_that_is_not_utf8() {
    let mut loader = FakeLoader::new();
    let addr = loader.string(b"caf\xe9");
    loader.flags |= info_flags::CMDLINE;
    loader.set_info_u32(info_offset::CMDLINE, addr);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::StringNotUtf8(StringField::Cmdline, Maddr(addr.into()))
    );
}

#[test]
fn rejects_an_unreadable_memory_map() {
    let mut loader = FakeLoader::new().mmap(&[(0, 0x1000, 1)]);
    loader.set_info_u32(info_offset::MMAP_LENGTH, 0x10_0000);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::MmapUnreadable {
            addr: Maddr(MMAP),
            len: 0x10_0000
        }
    );
}

#[test]
fn rejects_a_memory_map_entry_smaller_than_its_fields() {
    let mut raw = 16u32.to_le_bytes().to_vec();
    raw.extend_from_slice(&[0; 16]);
    let mem = FakeLoader::new().raw_mmap(&raw).finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::MmapEntryTooSmall {
            offset: 0,
            size: 16
        }
    );
}

#[test]
fn rejects_a_memory_map_entry_that_runs_past_the_map() {
    // Second entry's size field claims 20 bytes, but the map ends 8 bytes later.
    let mut loader = FakeLoader::new().mmap(&[(0, 0x1000, 1), (0x1000, 0x1000, 1)]);
    loader.set_info_u32(info_offset::MMAP_LENGTH, 24 + 12);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::MmapEntryTruncated { offset: 24 }
    );
}

#[test]
fn rejects_a_memory_map_with_a_torn_size_field() {
    let mut loader = FakeLoader::new().mmap(&[(0, 0x1000, 1)]);
    loader.set_info_u32(info_offset::MMAP_LENGTH, 24 + 2);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::MmapEntryTruncated { offset: 24 }
    );
}

#[test]
fn rejects_more_modules_than_supported() {
    let mut loader = FakeLoader::new().modules(&[(0, 0, "a")]);
    loader.set_info_u32(info_offset::MODS_COUNT, MAX_MODULES as u32 + 1);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::TooManyModules(MAX_MODULES as u32 + 1)
    );
}

#[test]
fn rejects_an_unreadable_module_list() {
    let mut loader = FakeLoader::new().modules(&[(0, 0, "a")]);
    let addr = MEM_SIZE as u32 - 8;
    loader.set_info_u32(info_offset::MODS_ADDR, addr);
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::ModulesUnreadable {
            addr: Maddr(addr.into()),
            count: 1
        }
    );
}

#[test]
fn rejects_a_module_that_ends_before_it_starts() {
    let mem = FakeLoader::new()
        .modules(&[(0x5000, 0x6000, "ok"), (0x7000, 0x6fff, "bad")])
        .finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::ModuleEndsBeforeStart {
            index: 1,
            start: Maddr(0x7000),
            end: Maddr(0x6fff)
        }
    );
}

#[test]
fn accepts_an_empty_module() {
    let mem = FakeLoader::new()
        .modules(&[(0x5000, 0x5000, "empty.elf")])
        .finish();
    let info = parse(&mem).unwrap();
    assert!(info.modules[0].is_empty());
}

#[test]
fn reports_which_module_string_is_bad() {
    let mut loader = FakeLoader::new().modules(&[(0, 0, "a"), (0, 0, "b")]);
    // Point module 1's string at unreadable memory.
    loader
        .mem
        .put(MODS + 16 + 8, &(MEM_SIZE as u32).to_le_bytes());
    let mem = loader.finish();
    assert_eq!(
        parse(&mem).unwrap_err(),
        Error::StringUnreadable(StringField::Module(1), Maddr(MEM_SIZE as u64))
    );
}

#[test]
fn errors_display_as_one_line_diagnostics() {
    let err = Error::ModuleEndsBeforeStart {
        index: 1,
        start: Maddr(0x7000),
        end: Maddr(0x6fff),
    };
    assert_eq!(
        err.to_string(),
        "module 1 ends (0x6fff) before it starts (0x7000)"
    );
    let err = Error::StringNotUtf8(StringField::Module(0), Maddr(0x10));
    assert_eq!(err.to_string(), "module 0 string at 0x10 is not UTF-8");
}
