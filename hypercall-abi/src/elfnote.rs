//! ELF note types a PV kernel uses to describe itself to the domain builder, mirroring `elfnote.h`.
//!
//! Notes live in a `PT_NOTE` segment with name `"Xen"`. Numeric notes are `xen_ulong_t`-sized
//! (or 32-bit) values; string notes are NUL-terminated.

/// Free-form information (obsolete).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual entry point (numeric).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the hypercall page (numeric).
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual base of the kernel image (numeric).
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Difference between virtual and physical addresses (numeric).
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Xen ABI version the kernel was built for (string, must start with `"xen-3.0"`).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type (string, `"generic"`).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE support (string: `"yes"`, `"no"`, `"bimodal"`).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// Required/optional features, `|`-separated (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// Load the symbol table after the image (string `"yes"`).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest hypervisor virtual address for 32-bit PAE guests (numeric).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask and value of valid L1 PTEs (numeric pair).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// The guest can cancel a suspend (numeric).
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address at which to map the initial p2m list (numeric).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// The kernel understands `SIF_MOD_START_PFN` (numeric).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Bitmap of supported `XENFEAT_*` features (32-bit numeric).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH (numeric).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Highest defined note type.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;
/// Crash dump: system information.
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
/// Crash dump: per-CPU registers.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Core file: empty note.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
/// Core file: header.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
/// Core file: Xen version.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
/// Core file: format version.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;
