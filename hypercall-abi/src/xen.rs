//! Core hypercall interface, mirroring `xen.h`: hypercall numbers, start_info, shared_info.
//!
//! Constants keep Xen's spelling so a grep for `__HYPERVISOR_console_io` finds both worlds.
#![allow(non_upper_case_globals)] // Xen's names (`__HYPERVISOR_iret`, `CONSOLEIO_write`) are the API.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::arch_x86_64::{
    ArchSharedInfo, ArchVcpuInfo, XenCallback, XenPfn, XenUlong, MAX_VIRT_CPUS,
    XEN_LEGACY_MAX_VCPUS,
};
use crate::{assert_layout, zeroed_default};

/// `domid_t`: a domain identifier (values from [`DOMID_FIRST_RESERVED`] up are special).
#[doc(alias = "domid_t")]
pub type DomId = u16;

/// The interface version these definitions follow (`__XEN_LATEST_INTERFACE_VERSION__`, 4.14).
pub const __XEN_LATEST_INTERFACE_VERSION__: u32 = 0x0004_0e00;

// --- Hypercall numbers (`enum hypercall_num`). ---

/// Hypercall `set_trap_table`: install the virtual IDT (`trap_info` list).
pub const __HYPERVISOR_set_trap_table: u32 = 0;
/// Hypercall `mmu_update`: batched page-table and M2P updates (`mmu_update` list).
pub const __HYPERVISOR_mmu_update: u32 = 1;
/// Hypercall `set_gdt`: install a GDT from a list of frames.
pub const __HYPERVISOR_set_gdt: u32 = 2;
/// Hypercall `stack_switch`: set the kernel stack for user-to-kernel transitions.
pub const __HYPERVISOR_stack_switch: u32 = 3;
/// Hypercall `set_callbacks`: register event and failsafe callbacks (legacy; see `callback_op`).
pub const __HYPERVISOR_set_callbacks: u32 = 4;
/// Hypercall `fpu_taskswitch`: set or clear CR0.TS.
pub const __HYPERVISOR_fpu_taskswitch: u32 = 5;
/// Hypercall `sched_op_compat`: pre-3.0.2 scheduler operations.
pub const __HYPERVISOR_sched_op_compat: u32 = 6;
/// Hypercall `platform_op`: dom0 platform control.
pub const __HYPERVISOR_platform_op: u32 = 7;
/// Hypercall `set_debugreg`: write a debug register.
pub const __HYPERVISOR_set_debugreg: u32 = 8;
/// Hypercall `get_debugreg`: read a debug register.
pub const __HYPERVISOR_get_debugreg: u32 = 9;
/// Hypercall `update_descriptor`: write one GDT/LDT descriptor.
pub const __HYPERVISOR_update_descriptor: u32 = 10;
/// Hypercall `memory_op`: XENMEM_* sub-operations.
pub const __HYPERVISOR_memory_op: u32 = 12;
/// Hypercall `multicall`: run a list of hypercalls, continuing past failures.
pub const __HYPERVISOR_multicall: u32 = 13;
/// Hypercall `update_va_mapping`: write one L1 PTE by virtual address, then flush (UVMF_*).
pub const __HYPERVISOR_update_va_mapping: u32 = 14;
/// Hypercall `set_timer_op`: one-shot timer deadline in system time.
pub const __HYPERVISOR_set_timer_op: u32 = 15;
/// Hypercall `event_channel_op_compat`: pre-3.0.2 event channel operations (`evtchn_op`).
pub const __HYPERVISOR_event_channel_op_compat: u32 = 16;
/// Hypercall `xen_version`: XENVER_* queries.
pub const __HYPERVISOR_xen_version: u32 = 17;
/// Hypercall `console_io`: emergency console (CONSOLEIO_*).
pub const __HYPERVISOR_console_io: u32 = 18;
/// Hypercall `physdev_op_compat`: pre-3.0.2 physical device operations.
pub const __HYPERVISOR_physdev_op_compat: u32 = 19;
/// Hypercall `grant_table_op`: GNTTABOP_* sub-operations.
pub const __HYPERVISOR_grant_table_op: u32 = 20;
/// Hypercall `vm_assist`: enable or disable a VMASST_TYPE_* assist.
pub const __HYPERVISOR_vm_assist: u32 = 21;
/// Hypercall `update_va_mapping_otherdomain`: `update_va_mapping` in a foreign domain's page tables.
pub const __HYPERVISOR_update_va_mapping_otherdomain: u32 = 22;
/// Hypercall `iret`: return from an exception or event (jumped to, never called).
pub const __HYPERVISOR_iret: u32 = 23;
/// Hypercall `vcpu_op`: VCPUOP_* sub-operations.
pub const __HYPERVISOR_vcpu_op: u32 = 24;
/// Hypercall `set_segment_base`: set FS/GS bases (SEGBASE_*).
pub const __HYPERVISOR_set_segment_base: u32 = 25;
/// Hypercall `mmuext_op`: extended MMU operations (`mmuext_op` list).
pub const __HYPERVISOR_mmuext_op: u32 = 26;
/// Hypercall `xsm_op`: security module operations.
pub const __HYPERVISOR_xsm_op: u32 = 27;
/// Hypercall `nmi_op`: NMI callback registration.
pub const __HYPERVISOR_nmi_op: u32 = 28;
/// Hypercall `sched_op`: SCHEDOP_* sub-operations.
pub const __HYPERVISOR_sched_op: u32 = 29;
/// Hypercall `callback_op`: CALLBACKOP_* sub-operations.
pub const __HYPERVISOR_callback_op: u32 = 30;
/// Hypercall `xenoprof_op`: profiling.
pub const __HYPERVISOR_xenoprof_op: u32 = 31;
/// Hypercall `event_channel_op`: EVTCHNOP_* sub-operations.
pub const __HYPERVISOR_event_channel_op: u32 = 32;
/// Hypercall `physdev_op`: PHYSDEVOP_* sub-operations.
pub const __HYPERVISOR_physdev_op: u32 = 33;
/// Hypercall `hvm_op`: HVM operations.
pub const __HYPERVISOR_hvm_op: u32 = 34;
/// Hypercall `sysctl`: toolstack system control.
pub const __HYPERVISOR_sysctl: u32 = 35;
/// Hypercall `domctl`: toolstack domain control.
pub const __HYPERVISOR_domctl: u32 = 36;
/// Hypercall `kexec_op`: kexec.
pub const __HYPERVISOR_kexec_op: u32 = 37;
/// Hypercall `tmem_op`: transcendent memory (removed).
pub const __HYPERVISOR_tmem_op: u32 = 38;
/// Hypercall `argo_op`: Argo inter-domain messaging.
pub const __HYPERVISOR_argo_op: u32 = 39;
/// Hypercall `xenpmu_op`: PMU virtualisation.
pub const __HYPERVISOR_xenpmu_op: u32 = 40;
/// Hypercall `dm_op`: device-model operations.
pub const __HYPERVISOR_dm_op: u32 = 41;
/// Hypercall `hypfs_op`: hypervisor filesystem.
pub const __HYPERVISOR_hypfs_op: u32 = 42;
/// Architecture-specific hypercall slot `arch_0`.
pub const __HYPERVISOR_arch_0: u32 = 48;
/// Architecture-specific hypercall slot `arch_1`.
pub const __HYPERVISOR_arch_1: u32 = 49;
/// Architecture-specific hypercall slot `arch_2`.
pub const __HYPERVISOR_arch_2: u32 = 50;
/// Architecture-specific hypercall slot `arch_3`.
pub const __HYPERVISOR_arch_3: u32 = 51;
/// Architecture-specific hypercall slot `arch_4`.
pub const __HYPERVISOR_arch_4: u32 = 52;
/// Architecture-specific hypercall slot `arch_5`.
pub const __HYPERVISOR_arch_5: u32 = 53;
/// Architecture-specific hypercall slot `arch_6`.
pub const __HYPERVISOR_arch_6: u32 = 54;
/// Architecture-specific hypercall slot `arch_7`.
pub const __HYPERVISOR_arch_7: u32 = 55;

// --- Virtual interrupts (`enum virq`); V = per-vCPU, G = global. ---

/// V: timebase update and/or requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// V: request to dump debug information.
pub const VIRQ_DEBUG: u32 = 1;
/// G (dom0): bytes received on the emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// G (dom0): exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// G (dom0): trace buffer has records available.
pub const VIRQ_TBUF: u32 = 4;
/// G (dom0): a domain has paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// V: Xenoprofile sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// G (dom0): bytes received on the console ring.
pub const VIRQ_CON_RING: u32 = 8;
/// G (dom0): physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// G (dom0): a memory event occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// G: Argo inter-domain message notification.
pub const VIRQ_ARGO: u32 = 11;
/// G (dom0): hypervisor heap memory is low.
pub const VIRQ_ENOMEM: u32 = 12;
/// V: PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture-specific VIRQ 0.
pub const VIRQ_ARCH_0: u32 = 16;
/// Architecture-specific VIRQ 1.
pub const VIRQ_ARCH_1: u32 = 17;
/// Architecture-specific VIRQ 2.
pub const VIRQ_ARCH_2: u32 = 18;
/// Architecture-specific VIRQ 3.
pub const VIRQ_ARCH_3: u32 = 19;
/// Architecture-specific VIRQ 4.
pub const VIRQ_ARCH_4: u32 = 20;
/// Architecture-specific VIRQ 5.
pub const VIRQ_ARCH_5: u32 = 21;
/// Architecture-specific VIRQ 6.
pub const VIRQ_ARCH_6: u32 = 22;
/// Architecture-specific VIRQ 7.
pub const VIRQ_ARCH_7: u32 = 23;
/// Number of VIRQs.
pub const NR_VIRQS: u32 = 24;

// --- HYPERVISOR_mmu_update: command in bits 1:0 of `mmu_update.ptr`. ---

/// Checked `*ptr = val`; `ptr` is the machine address of a PTE.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` = machine address of a frame whose M2P entry becomes `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// Atomically `*ptr = val | (*ptr & (A|D))`.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// Checked `*ptr = val`, `val` never translated.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

// --- HYPERVISOR_mmuext_op commands (`enum mmuext_cmd`). ---

/// Pin (validate and type) an L1 page table; `arg1.mfn`.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Pin an L2 page table.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Pin an L3 page table.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Pin an L4 page table.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Unpin a page table.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Switch the kernel base page table (CR3); `arg1.mfn`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush this vCPU's TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Invalidate one linear address locally; `arg1.linear_addr`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the vCPUs in `arg2.vcpumask`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Invalidate one address on the vCPUs in `arg2.vcpumask`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush all vCPUs' TLBs.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Invalidate one address on all vCPUs.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate this CPU's caches.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Install an LDT; `arg1.linear_addr`, `arg2.nr_ents`.
pub const MMUEXT_SET_LDT: u32 = 13;
/// Switch the user base page table (64-bit guests); `arg1.mfn`.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero a frame; `arg1.mfn`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy frame `arg2.src_mfn` to `arg1.mfn`.
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate caches on all CPUs.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark a superpage (obsolete).
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Unmark a superpage (obsolete).
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

// --- update_va_mapping flags (`enum uvm_flags`). ---

/// No flushing at all.
pub const UVMF_NONE: u64 = 0;
/// Flush entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only one entry.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush type.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush the subset of TLBs in the bitmap whose pointer is ORed in.
pub const UVMF_MULTI: u64 = 0;
/// Flush the local TLB (UVMF_MULTI with a null bitmap).
pub const UVMF_LOCAL: u64 = 0;
/// Flush all TLBs.
pub const UVMF_ALL: u64 = 1 << 2;

// --- HYPERVISOR_console_io commands. ---

/// Write bytes to the emergency console.
pub const CONSOLEIO_write: u32 = 0;
/// Read bytes from the emergency console (privileged).
pub const CONSOLEIO_read: u32 = 1;

// --- HYPERVISOR_vm_assist. ---

/// Enable an assist.
pub const VMASST_CMD_enable: u32 = 0;
/// Disable an assist.
pub const VMASST_CMD_disable: u32 = 1;
/// x86/32: simulate 4 GiB segment limits.
pub const VMASST_TYPE_4gb_segments: u32 = 0;
/// x86/32: trap on use of the 4 GiB segment emulation.
pub const VMASST_TYPE_4gb_segments_notify: u32 = 1;
/// Page tables may be written directly; Xen emulates the writes.
pub const VMASST_TYPE_writable_pagetables: u32 = 2;
/// x86/PAE: page directory pointer tables above 4 GiB.
pub const VMASST_TYPE_pae_extended_cr3: u32 = 3;
/// Architectural IOPL semantics for PV guests.
pub const VMASST_TYPE_architectural_iopl: u32 = 4;
/// Runstate area updates set `XEN_RUNSTATE_UPDATE` while in progress.
pub const VMASST_TYPE_runstate_update_flag: u32 = 5;
/// Strict M2P: read-only M2P entries for frames the guest does not own.
pub const VMASST_TYPE_m2p_strict: u32 = 32;

// --- Domain identifiers. ---

/// Domain ids from here up are not ordinary domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// I/O memory: grants foreign mappings of device memory.
pub const DOMID_IO: DomId = 0x7FF1;
/// The hypervisor itself (owner of Xen's shared frames).
pub const DOMID_XEN: DomId = 0x7FF2;
/// Copy-on-write shared pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// Unknown owner.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of valid domain id values.
pub const DOMID_MASK: DomId = 0x7FFF;

// --- start_info. ---

/// Length of `start_info.cmd_line`, including the terminating NUL.
pub const MAX_GUEST_CMDLINE: usize = 1024;
/// The domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// This is the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `mod_start` is a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// The tools understand a virtually mapped p2m list.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Byte reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

// --- vcpu_time_info.flags. ---

/// The TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// The guest was stopped (paused) since the last update.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

// --- dom0_vga_console_info.video_type. ---

/// VGA text mode 3.
pub const XEN_VGATYPE_TEXT_MODE_3: u8 = 0x03;
/// VESA linear framebuffer.
pub const XEN_VGATYPE_VESA_LFB: u8 = 0x23;
/// EFI linear framebuffer.
pub const XEN_VGATYPE_EFI_LFB: u8 = 0x70;

/// One page-table (or M2P) update; the command is in bits 1:0 of `ptr`.
#[doc(alias = "mmu_update_t")]
#[doc(alias = "mmu_update")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuUpdate {
    /// Machine address of the PTE, ORed with an `MMU_*` command.
    pub ptr: u64,
    /// New contents of the PTE.
    pub val: u64,
}
assert_layout!(MmuUpdate, 16, { ptr: 0, val: 8 });

/// One extended MMU operation. `arg1` and `arg2` are C unions, kept as their 8-byte words.
#[doc(alias = "mmuext_op_t")]
#[doc(alias = "mmuext_op")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuextOp {
    /// An `MMUEXT_*` command.
    pub cmd: u32,
    /// Implicit C padding before `arg1`.
    pub _pad0: [u8; 4],
    /// Union `{ xen_pfn_t mfn; unsigned long linear_addr; }`.
    pub arg1: u64,
    /// Union `{ unsigned int nr_ents; XEN_GUEST_HANDLE(const_void) vcpumask; xen_pfn_t src_mfn; }`.
    pub arg2: u64,
}
assert_layout!(MmuextOp, 24, { cmd: 0, _pad0: 4, arg1: 8, arg2: 16 });

impl MmuextOp {
    /// `arg1.mfn` (pin/unpin, new baseptr, clear/copy page).
    pub const fn mfn(&self) -> XenPfn {
        self.arg1
    }

    /// `arg1.linear_addr` (INVLPG, SET_LDT).
    pub const fn linear_addr(&self) -> u64 {
        self.arg1
    }

    /// `arg2.nr_ents` (SET_LDT): the low 32 bits of the union.
    pub const fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }

    /// `arg2.vcpumask`: guest-virtual address of a vCPU bitmap (TLB_FLUSH_MULTI, INVLPG_MULTI).
    pub const fn vcpumask(&self) -> u64 {
        self.arg2
    }

    /// `arg2.src_mfn` (COPY_PAGE).
    pub const fn src_mfn(&self) -> XenPfn {
        self.arg2
    }
}

/// One entry of a `HYPERVISOR_multicall` list.
#[doc(alias = "multicall_entry_t")]
#[doc(alias = "multicall_entry")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Result written back by Xen.
    pub result: u64,
    /// Hypercall arguments.
    pub args: [u64; 6],
}
assert_layout!(MulticallEntry, 64, { op: 0, result: 8, args: 16 });

/// Per-vCPU system time parameters; `version` is odd while Xen updates them.
#[doc(alias = "vcpu_time_info_t")]
#[doc(alias = "vcpu_time_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuTimeInfo {
    /// Incremented before and after each update (seqlock).
    pub version: u32,
    /// Padding (named in C).
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// `system_time + (((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32`.
    pub tsc_to_system_mul: u32,
    /// Signed shift applied to TSC deltas.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding (named in C).
    pub pad1: [u8; 2],
}
assert_layout!(VcpuTimeInfo, 32, {
    version: 0, pad0: 4, tsc_timestamp: 8, system_time: 16, tsc_to_system_mul: 24,
    tsc_shift: 28, flags: 29, pad1: 30,
});

/// Per-vCPU event and time state, shared with Xen.
#[doc(alias = "vcpu_info_t")]
#[doc(alias = "vcpu_info")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfo {
    /// Written non-zero by Xen when an event is pending; cleared by the guest before scanning.
    pub evtchn_upcall_pending: u8,
    /// Non-zero masks event upcalls (the PV "interrupt flag").
    pub evtchn_upcall_mask: u8,
    /// Implicit C padding before `evtchn_pending_sel`.
    pub _pad0: [u8; 6],
    /// Selector: bit n set means word n of `evtchn_pending` may have pending bits.
    pub evtchn_pending_sel: u64,
    /// Architecture part (`cr2`).
    pub arch: ArchVcpuInfo,
    /// System time parameters.
    pub time: VcpuTimeInfo,
}
assert_layout!(VcpuInfo, 64, {
    evtchn_upcall_pending: 0, evtchn_upcall_mask: 1, _pad0: 2, evtchn_pending_sel: 8, arch: 16,
    time: 32,
});

/// The shared-info page: per-vCPU info for the first 32 vCPUs, 2-level event bitmaps, wallclock.
#[doc(alias = "shared_info_t")]
#[doc(alias = "shared_info")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    /// Legacy per-vCPU info slots.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bits (4096 ports).
    pub evtchn_pending: [u64; 64],
    /// 2-level event channel mask bits.
    pub evtchn_mask: [u64; 64],
    /// Wallclock version counter (seqlock, as `vcpu_time_info.version`).
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits) at system time 0.
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}
assert_layout!(SharedInfo, 3136, {
    vcpu_info: 0, evtchn_pending: 2048, evtchn_mask: 2560, wc_version: 3072, wc_sec: 3076,
    wc_nsec: 3080, wc_sec_hi: 3084, arch: 3088,
});
zeroed_default!(SharedInfo);

/// Boot information for a PV guest; RSI points at it on entry.
#[doc(alias = "start_info_t")]
#[doc(alias = "start_info")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL-padded (`"xen-3.0-x86_64"`).
    pub magic: [u8; 32],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// Machine address of the shared-info page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Implicit C padding before `store_mfn`.
    pub _pad0: [u8; 4],
    /// Machine frame of the xenstore ring page.
    pub store_mfn: XenPfn,
    /// Event channel for xenstore.
    pub store_evtchn: u32,
    /// Implicit C padding before `console`.
    pub _pad1: [u8; 4],
    /// Union `{ struct { xen_pfn_t mfn; uint32_t evtchn; } domU;
    /// struct { uint32_t info_off, info_size; } dom0; }`; see the `console_*` accessors.
    pub console: [u64; 2],
    /// Virtual address of the bootstrap top-level page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list (`mfn_list[pfn] = mfn`).
    pub mfn_list: u64,
    /// Virtual address (or PFN, with `SIF_MOD_START_PFN`) of the initrd module.
    pub mod_start: u64,
    /// Size of the module in bytes.
    pub mod_len: u64,
    /// NUL-terminated command line (`int8_t` in C).
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the initial p2m table.
    pub first_p2m_pfn: u64,
    /// Number of frames of the initial p2m table.
    pub nr_p2m_frames: u64,
}
assert_layout!(StartInfo, 1168, {
    magic: 0, nr_pages: 32, shared_info: 40, flags: 48, _pad0: 52, store_mfn: 56,
    store_evtchn: 64, _pad1: 68, console: 72, pt_base: 88, nr_pt_frames: 96, mfn_list: 104,
    mod_start: 112, mod_len: 120, cmd_line: 128, first_p2m_pfn: 1152, nr_p2m_frames: 1160,
});
zeroed_default!(StartInfo);

impl StartInfo {
    /// `console.domU.mfn`: machine frame of the console ring (domU).
    pub const fn console_domu_mfn(&self) -> XenPfn {
        self.console[0]
    }

    /// Sets `console.domU.mfn`.
    pub fn set_console_domu_mfn(&mut self, mfn: XenPfn) {
        self.console[0] = mfn;
    }

    /// `console.domU.evtchn`: event channel of the console ring (domU).
    pub const fn console_domu_evtchn(&self) -> u32 {
        self.console[1] as u32
    }

    /// Sets `console.domU.evtchn` (the upper half of the word is C padding and is cleared).
    pub fn set_console_domu_evtchn(&mut self, port: u32) {
        self.console[1] = u64::from(port);
    }

    /// `console.dom0.info_off`: offset of the `dom0_vga_console_info` from `start_info`.
    pub const fn console_dom0_info_off(&self) -> u32 {
        self.console[0] as u32
    }

    /// `console.dom0.info_size`: size of that `dom0_vga_console_info`.
    pub const fn console_dom0_info_size(&self) -> u32 {
        (self.console[0] >> 32) as u32
    }

    /// Sets `console.dom0.info_off` and `console.dom0.info_size`.
    pub fn set_console_dom0_info(&mut self, info_off: u32, info_size: u32) {
        self.console[0] = u64::from(info_off) | (u64::from(info_size) << 32);
    }

    /// The command line up to (not including) its first NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        let len = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_GUEST_CMDLINE);
        &self.cmd_line[..len]
    }

    /// The magic string up to (not including) its first NUL.
    pub fn magic_bytes(&self) -> &[u8] {
        let len = self
            .magic
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.magic.len());
        &self.magic[..len]
    }
}

/// One module of a multiboot module list (`SIF_MULTIBOOT_MOD`).
#[doc(alias = "xen_multiboot_mod_list")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMultibootModList {
    /// Address of the first byte of the module.
    pub mod_start: u32,
    /// Address of the last byte of the module (inclusive).
    pub mod_end: u32,
    /// Address of the NUL-terminated command line.
    pub cmdline: u32,
    /// Must be zero.
    pub pad: u32,
}
assert_layout!(XenMultibootModList, 16, { mod_start: 0, mod_end: 4, cmdline: 8, pad: 12 });

/// `xen_uuid_t`: a 16-byte UUID in big-endian byte order.
#[doc(alias = "xen_uuid_t")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenUuid {
    /// The bytes.
    pub a: [u8; 16],
}
assert_layout!(XenUuid, 16, { a: 0 });
