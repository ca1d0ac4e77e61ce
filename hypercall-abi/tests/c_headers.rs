//! Conformance of `hypercall-abi` with Xen's C headers (`/usr/include/xen`, Xen 4.17).
//! (One long file on purpose: one C program and one table of every struct, field and constant,
//! kept in the order of Xen's headers so that a reader can hold it against them.)
//!
//! `c_headers_match` compiles a C program against the installed public headers that prints the
//! size, alignment, field offsets, field sizes and integer kinds of every mirrored type and the
//! value of every mirrored constant, then compares each with this crate, reporting every
//! mismatch at once. Union accessors are checked byte-for-byte: C writes a union member, Rust
//! must read the same value back and its setter must produce the same bytes.
//!
//! `every_public_item_is_checked` scans `src/**/*.rs` so that a new struct, field, constant, type
//! alias or enum variant cannot be added without a C check (or an exemption with a reason).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use hypercall_abi::*;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

// ------------------------------------------------------------------------------------------------
// What is checked.
// ------------------------------------------------------------------------------------------------

/// One field of a mirrored type.
struct FieldCheck {
    /// Rust field name as written (`r#ref`).
    rust: &'static str,
    /// C member designator (`ref`, `__pad`).
    c: &'static str,
    offset: usize,
    size: usize,
    kind: char,
}

/// One mirrored type: a struct (with fields) or a type alias (without).
struct TypeCheck {
    /// Crate path (`xen::StartInfo`): the coverage key.
    key: String,
    /// C type (`start_info_t`, `struct gnttab_copy_ptr`).
    c_type: &'static str,
    /// C expression for the size, when it is not `sizeof(c_type)` (ring headers).
    c_size: Option<&'static str>,
    size: usize,
    align: usize,
    kind: char,
    fields: Vec<FieldCheck>,
    /// Implicit C padding made explicit in Rust: (name, offset, size). Not in C by definition.
    pads: Vec<(&'static str, usize, usize)>,
}

/// A Rust value to compare with a C expression.
#[derive(Debug, PartialEq)]
enum Val {
    Int(i128),
    Lines(Vec<String>),
}

trait ToVal {
    fn to_val(&self) -> Val;
}

macro_rules! int_to_val {
    ($($t:ty),*) => {$(
        impl ToVal for $t {
            fn to_val(&self) -> Val {
                Val::Int(*self as i128)
            }
        }
    )*};
}
int_to_val!(u8, u16, u32, u64, usize, i8, i16, i32, i64);

impl ToVal for Errno {
    fn to_val(&self) -> Val {
        Val::Int(self.raw().into())
    }
}

impl ToVal for io::xenbus::XenbusState {
    fn to_val(&self) -> Val {
        Val::Int(self.raw().into())
    }
}

impl ToVal for &str {
    fn to_val(&self) -> Val {
        Val::Lines(vec![self.to_string()])
    }
}

impl<const N: usize> ToVal for [&str; N] {
    fn to_val(&self) -> Val {
        Val::Lines(self.iter().map(|s| s.to_string()).collect())
    }
}

impl ToVal for Vec<String> {
    fn to_val(&self) -> Val {
        Val::Lines(self.clone())
    }
}

/// A constant (or any Rust expression) compared with a C expression.
struct ConstCheck {
    /// Coverage key (`xen::DOMID_SELF`), or a label for extra expression checks.
    key: String,
    /// C expression; a `{ ... }` block is a statement printing lines with `LINE(KEY, fmt, ...)`.
    c: String,
    rust: Val,
}

/// A union accessor check: C runs `stmt` on a zeroed `c_type *s`, dumps `c_len` bytes; `check`
/// gets those bytes and returns what disagrees.
struct BytesCheck {
    name: &'static str,
    c_type: &'static str,
    c_len: &'static str,
    stmt: &'static str,
    /// Coverage keys this check stands for (items with no scalar C counterpart).
    covers: &'static [&'static str],
    check: fn(&[u8]) -> Vec<String>,
}

/// Items deliberately not compared with C, with the reason.
const EXEMPT: &[(&str, &str)] = &[
    (
        "domctl::BootHandle",
        "not Xen's ABI: this hypervisor's contents of a boot-time domU's xen_domain_handle_t",
    ),
    (
        "domctl::BootHandle.index",
        "not Xen's ABI: part of BootHandle, which is ours",
    ),
    (
        "domctl::BootHandle.count",
        "not Xen's ABI: part of BootHandle, which is ours",
    ),
    (
        "domctl::BootHandle::MAGIC",
        "not Xen's ABI: part of BootHandle, which is ours",
    ),
    (
        "arch_x86_64::MAX_VIRT_CPUS",
        "pre-4.0 spelling of XEN_LEGACY_MAX_VCPUS; Xen 4.17 headers no longer define it",
    ),
    (
        "errno::Errno::ALL",
        "Rust-only list of the variants, for iteration",
    ),
    (
        "errno::HypercallError",
        "Rust-only wrapper of a failed hypercall's negative return value",
    ),
    (
        "errno::HypercallError::RESTART",
        "-ERESTART (85): xen/errno.h defines it only under __XEN__, hypervisor-internal",
    ),
    (
        "io::xenbus::XenbusState::ALL",
        "Rust-only list of the variants, for iteration",
    ),
];

fn field_info<T, F>(_: fn(&T) -> &F) -> (usize, char) {
    (size_of::<F>(), kind_of::<F>())
}

/// 'i' signed integer, 'u' unsigned integer, 'x' anything else (arrays, structs).
fn kind_of<F>() -> char {
    match std::any::type_name::<F>() {
        "i8" | "i16" | "i32" | "i64" | "isize" => 'i',
        "u8" | "u16" | "u32" | "u64" | "usize" => 'u',
        _ => 'x',
    }
}

fn c_member(rust: &'static str, explicit: Option<&'static str>) -> &'static str {
    explicit.unwrap_or_else(|| rust.strip_prefix("r#").unwrap_or(rust))
}

macro_rules! types {
    ($(
        $ty:ty => $cty:literal $(size $csize:literal)?
            { $($f:ident $(=> $cf:literal)?),* $(,)? }
            $(pad { $($p:ident),* $(,)? })? ;
    )*) => {
        vec![$(
            TypeCheck {
                key: stringify!($ty).replace(' ', ""),
                c_type: $cty,
                c_size: None $(.or(Some($csize)))?,
                size: size_of::<$ty>(),
                align: align_of::<$ty>(),
                kind: kind_of::<$ty>(),
                fields: vec![$({
                    let (size, kind) = field_info(|t: &$ty| &t.$f);
                    FieldCheck {
                        rust: stringify!($f),
                        c: c_member(stringify!($f), None $(.or(Some($cf)))?),
                        offset: offset_of!($ty, $f),
                        size,
                        kind,
                    }
                }),*],
                pads: vec![$($({
                    let (size, _) = field_info(|t: &$ty| &t.$p);
                    (stringify!($p), offset_of!($ty, $p), size)
                }),*)?],
            }
        ),*]
    };
}

macro_rules! pick_val {
    (($e:expr) ; $p:path) => {
        ToVal::to_val(&$e)
    };
    (; $p:path) => {
        ToVal::to_val(&$p)
    };
}

macro_rules! consts {
    ($( $($seg:ident)::+ $(= ($rv:expr))? $(=> $c:literal)? ),* $(,)?) => {
        vec![$({
            let key = [$(stringify!($seg)),+].join("::");
            let c = None::<&str> $(.or(Some($c)))?;
            let c = c.map(str::to_string).unwrap_or_else(|| key.rsplit("::").next().unwrap().to_string());
            ConstCheck { key, c, rust: pick_val!($(($rv))? ; $($seg)::+) }
        }),*]
    };
}

fn type_checks() -> Vec<TypeCheck> {
    types! {
        arch_x86_64::TrapInfo => "trap_info_t" { vector, flags, cs, address } pad { _pad0 };
        arch_x86_64::IretContext => "struct iret_context" { rax, r11, rcx, flags, rip, cs, rflags, rsp, ss };
        arch_x86_64::CpuUserRegs => "cpu_user_regs_t" { r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, error_code, entry_vector, rip, cs, _pad0, saved_upcall_mask, _pad1, rflags, rsp, ss, _pad2, es, _pad3, ds, _pad4, fs, _pad5, gs, _pad6 };
        arch_x86_64::VcpuGuestContext => "vcpu_guest_context_t" { fpu_ctxt, flags, user_regs, trap_ctxt, ldt_base, ldt_ents, gdt_frames, gdt_ents, kernel_ss, kernel_sp, ctrlreg, debugreg, event_callback_eip, failsafe_callback_eip, syscall_callback_eip, vm_assist, fs_base, gs_base_kernel, gs_base_user };
        arch_x86_64::ArchVcpuInfo => "arch_vcpu_info_t" { cr2, pad };
        arch_x86_64::ArchSharedInfo => "arch_shared_info_t" { max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation };
        arch_x86_64::XenCpuidLeaf => "xen_cpuid_leaf_t" { leaf, subleaf, a, b, c, d };
        arch_x86_64::XenArchDomainconfig => "struct xen_arch_domainconfig" { emulation_flags, misc_flags };
        domctl::XenDomctl => "struct xen_domctl" { cmd, interface_version, domain, _pad, u };
        domctl::XenDomctlCreatedomain => "struct xen_domctl_createdomain" { ssidref, handle, flags, iommu_opts, max_vcpus, max_evtchn_port, max_grant_frames, max_maptrack_frames, grant_opts, vmtrace_size, cpupool_id, arch };
        domctl::XenDomctlMaxMem => "struct xen_domctl_max_mem" { max_memkb };
        domctl::XenDomctlMaxVcpus => "struct xen_domctl_max_vcpus" { max };
        domctl::XenDomctlVcpucontext => "struct xen_domctl_vcpucontext" { vcpu, ctxt } pad { _pad };
        domctl::XenDomctlGetdomaininfo => "struct xen_domctl_getdomaininfo" { domain, pad1, flags, tot_pages, max_pages, outstanding_pages, shr_pages, paged_pages, shared_info_frame, cpu_time, nr_online_vcpus, max_vcpu_id, ssidref, handle, cpupool, gpaddr_bits, pad2, arch_config };
        hvm::XenHvmParam => "struct xen_hvm_param" { domid, pad, index, value };
        callback::CallbackRegister => "callback_register_t" { r#type, flags, address } pad { _pad0 };
        callback::CallbackUnregister => "callback_unregister_t" { r#type, _unused };
        event_channel::EvtchnAllocUnbound => "evtchn_alloc_unbound_t" { dom, remote_dom, port };
        event_channel::EvtchnBindInterdomain => "evtchn_bind_interdomain_t" { remote_dom, remote_port, local_port } pad { _pad0 };
        event_channel::EvtchnBindVirq => "evtchn_bind_virq_t" { virq, vcpu, port };
        event_channel::EvtchnBindPirq => "evtchn_bind_pirq_t" { pirq, flags, port };
        event_channel::EvtchnBindIpi => "evtchn_bind_ipi_t" { vcpu, port };
        event_channel::EvtchnClose => "evtchn_close_t" { port };
        event_channel::EvtchnSend => "evtchn_send_t" { port };
        event_channel::EvtchnStatus => "evtchn_status_t" { dom, port, status, vcpu, u } pad { _pad0 };
        event_channel::EvtchnBindVcpu => "evtchn_bind_vcpu_t" { port, vcpu };
        event_channel::EvtchnUnmask => "evtchn_unmask_t" { port };
        event_channel::EvtchnReset => "evtchn_reset_t" { dom };
        event_channel::EvtchnInitControl => "evtchn_init_control_t" { control_gfn, offset, vcpu, link_bits, _pad };
        event_channel::EvtchnExpandArray => "evtchn_expand_array_t" { array_gfn };
        event_channel::EvtchnSetPriority => "evtchn_set_priority_t" { port, priority };
        event_channel::EvtchnOp => "evtchn_op_t" { cmd, u };
        event_channel::EvtchnFifoControlBlock => "evtchn_fifo_control_block_t" { ready, _rsvd, head };
        grant_table::GrantEntryV1 => "grant_entry_v1_t" { flags, domid, frame };
        grant_table::GrantEntryHeader => "grant_entry_header_t" { flags, domid };
        grant_table::GrantEntryV2 => "grant_entry_v2_t" { words => "__spacer" };
        grant_table::GnttabMapGrantRef => "gnttab_map_grant_ref_t" { host_addr, flags, r#ref, dom, status, handle, dev_bus_addr };
        grant_table::GnttabUnmapGrantRef => "gnttab_unmap_grant_ref_t" { host_addr, dev_bus_addr, handle, status } pad { _pad0 };
        grant_table::GnttabSetupTable => "gnttab_setup_table_t" { dom, nr_frames, status, frame_list } pad { _pad0, _pad1 };
        grant_table::GnttabDumpTable => "gnttab_dump_table_t" { dom, status };
        grant_table::GnttabTransfer => "gnttab_transfer_t" { mfn, domid, r#ref, status } pad { _pad0, _pad1 };
        grant_table::GnttabCopyPtr => "struct gnttab_copy_ptr" { u, domid, offset } pad { _pad0 };
        grant_table::GnttabCopy => "gnttab_copy_t" { source, dest, len, flags, status } pad { _pad0 };
        grant_table::GnttabQuerySize => "gnttab_query_size_t" { dom, nr_frames, max_nr_frames, status } pad { _pad0, _pad1 };
        grant_table::GnttabUnmapAndReplace => "gnttab_unmap_and_replace_t" { host_addr, new_addr, handle, status } pad { _pad0 };
        grant_table::GnttabSetVersion => "gnttab_set_version_t" { version };
        grant_table::GnttabGetStatusFrames => "gnttab_get_status_frames_t" { nr_frames, dom, status, frame_list };
        grant_table::GnttabGetVersion => "gnttab_get_version_t" { dom, pad, version };
        grant_table::GnttabSwapGrantRef => "gnttab_swap_grant_ref_t" { ref_a, ref_b, status } pad { _pad0 };
        grant_table::GnttabCacheFlush => "gnttab_cache_flush_t" { a, offset, length, op };
        io::blkif::BlkifRequestSegment => "struct blkif_request_segment" { gref, first_sect, last_sect } pad { _pad0 };
        io::blkif::BlkifRequest => "blkif_request_t" { operation, nr_segments, handle, id, sector_number, seg } pad { _pad0 };
        io::blkif::BlkifRequestDiscard => "blkif_request_discard_t" { operation, flag, handle, id, sector_number, nr_sectors } pad { _pad0 };
        io::blkif::BlkifRequestIndirect => "blkif_request_indirect_t" { operation, indirect_op, nr_segments, id, sector_number, handle, indirect_grefs } pad { _pad0, _pad1, _pad2 };
        io::blkif::BlkifResponse => "blkif_response_t" { id, operation, status } pad { _pad0, _pad1 };
        io::console::XenconsInterface => "struct xencons_interface" { r#in, out, in_cons, in_prod, out_cons, out_prod };
        io::netif::NetifTxRequest => "netif_tx_request_t" { gref, offset, flags, id, size };
        io::netif::NetifExtraInfo => "netif_extra_info_t" { r#type, flags, u };
        io::netif::NetifTxResponse => "netif_tx_response_t" { id, status };
        io::netif::NetifRxRequest => "netif_rx_request_t" { id, pad, gref };
        io::netif::NetifRxResponse => "netif_rx_response_t" { id, offset, flags, status };
        io::netif::XenNetifCtrlRequest => "struct xen_netif_ctrl_request" { id, r#type, data };
        io::netif::XenNetifCtrlResponse => "struct xen_netif_ctrl_response" { id, r#type, status, data };
        io::netif::XenNetifGref => "struct xen_netif_gref" { r#ref, flags, status };
        io::ring::SharedRingHeader => "struct blkif_sring" size "offsetof(struct blkif_sring, ring)" { req_prod, req_event, rsp_prod, rsp_event, pvt, pad => "__pad" };
        io::xs_wire::XsdSockmsg => "struct xsd_sockmsg" { r#type, req_id, tx_id, len };
        io::xs_wire::XenstoreDomainInterface => "struct xenstore_domain_interface" { req, rsp, req_cons, req_prod, rsp_cons, rsp_prod, server_features, connection, error };
        memory::XenMemoryReservation => "xen_memory_reservation_t" { extent_start, nr_extents, extent_order, mem_flags, domid } pad { _pad0 };
        memory::XenMemoryExchange => "xen_memory_exchange_t" { r#in, out, nr_exchanged };
        memory::XenMemoryDomain => "struct xen_memory_domain" { domid };
        memory::XenMachphysMfnList => "xen_machphys_mfn_list_t" { max_extents, extent_start, nr_extents } pad { _pad0, _pad1 };
        memory::XenMachphysMapping => "xen_machphys_mapping_t" { v_start, v_end, max_mfn };
        memory::XenAddToPhysmap => "xen_add_to_physmap_t" { domid, size, space, idx, gpfn };
        memory::XenAddToPhysmapBatch => "xen_add_to_physmap_batch_t" { domid, space, size, u, idxs, gpfns, errs };
        memory::XenRemoveFromPhysmap => "xen_remove_from_physmap_t" { domid, gpfn } pad { _pad0 };
        memory::XenMemoryMap => "xen_memory_map_t" { nr_entries, buffer } pad { _pad0 };
        memory::XenForeignMemoryMap => "xen_foreign_memory_map_t" { domid, map } pad { _pad0 };
        memory::XenPodTarget => "xen_pod_target_t" { target_pages, tot_pages, pod_cache_pages, pod_entries, domid } pad { _pad0 };
        memory::XenMemAcquireResource => "xen_mem_acquire_resource_t" { domid, r#type, id, nr_frames, pad, frame, frame_list };
        memory::XenVmemrange => "xen_vmemrange_t" { start, end, flags, nid };
        memory::XenVnumaTopologyInfo => "xen_vnuma_topology_info_t" { domid, pad, nr_vnodes, nr_vcpus, nr_vmemranges, vdistance, vcpu_to_vnode, vmemrange };
        physdev::PhysdevEoi => "physdev_eoi_t" { irq };
        physdev::PhysdevPirqEoiGmfn => "physdev_pirq_eoi_gmfn_t" { gmfn };
        physdev::PhysdevIrqStatusQuery => "physdev_irq_status_query_t" { irq, flags };
        physdev::PhysdevSetIopl => "physdev_set_iopl_t" { iopl };
        physdev::PhysdevManagePci => "physdev_manage_pci_t" { bus, devfn };
        physdev::PhysdevUnmapPirq => "physdev_unmap_pirq_t" { domid, pirq } pad { _pad0 };
        physdev::PhysdevMapPirq => "physdev_map_pirq_t" { domid, r#type, index, pirq, bus, devfn, entry_nr, table_base } pad { _pad0, _pad1 };
        physdev::PhysdevSetIobitmap => "physdev_set_iobitmap_t" { bitmap, nr_ports } pad { _pad0 };
        sched::SchedShutdown => "sched_shutdown_t" { reason };
        sched::SchedPoll => "sched_poll_t" { ports, nr_ports, timeout } pad { _pad0 };
        sysctl::XenSysctl => "struct xen_sysctl" { cmd, interface_version, u };
        sysctl::XenSysctlPerfcOp => "struct xen_sysctl_perfc_op" { cmd, nr_counters, nr_vals, desc, val } pad { _pad0 };
        sysctl::XenSysctlPerfcDesc => "struct xen_sysctl_perfc_desc" { name, nr_vals };
        sysctl::XenSysctlGetdomaininfolist => "struct xen_sysctl_getdomaininfolist" { first_domain, max_domains, buffer, num_domains } pad { _pad0, _pad1 };
        sched::SchedRemoteShutdown => "sched_remote_shutdown_t" { domain_id, reason } pad { _pad0 };
        sched::SchedWatchdog => "sched_watchdog_t" { id, timeout };
        sched::SchedPinOverride => "sched_pin_override_t" { pcpu };
        vcpu::VcpuRunstateInfo => "vcpu_runstate_info_t" { state, state_entry_time, time } pad { _pad0 };
        vcpu::VcpuRegisterRunstateMemoryArea => "vcpu_register_runstate_memory_area_t" { addr };
        vcpu::VcpuSetPeriodicTimer => "vcpu_set_periodic_timer_t" { period_ns };
        vcpu::VcpuSetSingleshotTimer => "vcpu_set_singleshot_timer_t" { timeout_abs_ns, flags } pad { _pad0 };
        vcpu::VcpuRegisterVcpuInfo => "vcpu_register_vcpu_info_t" { mfn, offset, rsvd };
        vcpu::VcpuGetPhysid => "vcpu_get_physid_t" { phys_id };
        vcpu::VcpuRegisterTimeMemoryArea => "vcpu_register_time_memory_area_t" { addr };
        version::XenCompileInfo => "xen_compile_info_t" { compiler, compile_by, compile_domain, compile_date };
        version::XenPlatformParameters => "xen_platform_parameters_t" { virt_start };
        version::XenFeatureInfo => "xen_feature_info_t" { submap_idx, submap };
        version::XenBuildId => "xen_build_id_t" { len };
        xen::MmuUpdate => "mmu_update_t" { ptr, val };
        xen::MmuextOp => "mmuext_op_t" { cmd, arg1, arg2 } pad { _pad0 };
        xen::MulticallEntry => "multicall_entry_t" { op, result, args };
        xen::VcpuTimeInfo => "vcpu_time_info_t" { version, pad0, tsc_timestamp, system_time, tsc_to_system_mul, tsc_shift, flags, pad1 };
        xen::VcpuInfo => "vcpu_info_t" { evtchn_upcall_pending, evtchn_upcall_mask, evtchn_pending_sel, arch, time } pad { _pad0 };
        xen::SharedInfo => "shared_info_t" { vcpu_info, evtchn_pending, evtchn_mask, wc_version, wc_sec, wc_nsec, wc_sec_hi, arch };
        xen::StartInfo => "start_info_t" { magic, nr_pages, shared_info, flags, store_mfn, store_evtchn, console, pt_base, nr_pt_frames, mfn_list, mod_start, mod_len, cmd_line, first_p2m_pfn, nr_p2m_frames } pad { _pad0, _pad1 };
        xen::XenMultibootModList => "struct xen_multiboot_mod_list" { mod_start, mod_end, cmdline, pad };
        xen::XenUuid => "xen_uuid_t" { a };
        arch_x86_64::XenPfn => "xen_pfn_t" {};
        arch_x86_64::XenUlong => "xen_ulong_t" {};
        arch_x86_64::XenCallback => "xen_callback_t" {};
        event_channel::EvtchnPort => "evtchn_port_t" {};
        event_channel::EventWord => "event_word_t" {};
        grant_table::GrantRef => "grant_ref_t" {};
        grant_table::GrantHandle => "grant_handle_t" {};
        grant_table::GrantStatus => "grant_status_t" {};
        io::blkif::BlkifVdev => "blkif_vdev_t" {};
        io::blkif::BlkifSector => "blkif_sector_t" {};
        io::console::XenconsRingIdx => "XENCONS_RING_IDX" {};
        io::ring::RingIdx => "RING_IDX" {};
        io::xs_wire::XenstoreRingIdx => "XENSTORE_RING_IDX" {};
        version::XenExtraversion => "xen_extraversion_t" {};
        version::XenCapabilitiesInfo => "xen_capabilities_info_t" {};
        version::XenChangesetInfo => "xen_changeset_info_t" {};
        version::XenCommandline => "xen_commandline_t" {};
        version::XenDomainHandle => "xen_domain_handle_t" {};
        xen::DomId => "domid_t" {};
        // The sub-op wrappers: same layout as what they wrap.
        sched::ShutdownCode => "sched_shutdown_t" {};
        memory::CurrentReservation => "struct xen_memory_domain" {};
        memory::IncreaseReservation => "struct xen_memory_reservation" {};
        memory::DecreaseReservation => "struct xen_memory_reservation" {};
        memory::PopulatePhysmap => "struct xen_memory_reservation" {};
        memory::MaximumReservation => "struct xen_memory_domain" {};
        memory::MaximumGpfn => "struct xen_memory_domain" {};
        memory::MachineMemoryMap => "struct xen_memory_map" {};
        version::Extraversion => "xen_extraversion_t" {};
        version::Capabilities => "xen_capabilities_info_t" {};
        version::Changeset => "xen_changeset_info_t" {};
        version::Commandline => "xen_commandline_t" {};
        version::GuestHandle => "xen_domain_handle_t" {};
        hvm::SetParam => "struct xen_hvm_param" {};
        hvm::GetParam => "struct xen_hvm_param" {};
    }
}

fn const_checks() -> Vec<ConstCheck> {
    let mut v = consts![
    arch_x86_64::FLAT_RING3_CS32,
        arch_x86_64::FLAT_RING3_CS64,
        arch_x86_64::FLAT_RING3_DS32,
        arch_x86_64::FLAT_RING3_DS64,
        arch_x86_64::FLAT_RING3_SS32,
        arch_x86_64::FLAT_RING3_SS64,
        arch_x86_64::FLAT_KERNEL_DS64,
        arch_x86_64::FLAT_KERNEL_DS32,
        arch_x86_64::FLAT_KERNEL_DS,
        arch_x86_64::FLAT_KERNEL_CS64,
        arch_x86_64::FLAT_KERNEL_CS32,
        arch_x86_64::FLAT_KERNEL_CS,
        arch_x86_64::FLAT_KERNEL_SS64,
        arch_x86_64::FLAT_KERNEL_SS32,
        arch_x86_64::FLAT_KERNEL_SS,
        arch_x86_64::FLAT_USER_DS64,
        arch_x86_64::FLAT_USER_DS32,
        arch_x86_64::FLAT_USER_DS,
        arch_x86_64::FLAT_USER_CS64,
        arch_x86_64::FLAT_USER_CS32,
        arch_x86_64::FLAT_USER_CS,
        arch_x86_64::FLAT_USER_SS64,
        arch_x86_64::FLAT_USER_SS32,
        arch_x86_64::FLAT_USER_SS,
        arch_x86_64::HYPERVISOR_VIRT_START,
        arch_x86_64::HYPERVISOR_VIRT_END,
        arch_x86_64::MACH2PHYS_VIRT_START,
        arch_x86_64::MACH2PHYS_VIRT_END,
        arch_x86_64::MACH2PHYS_NR_ENTRIES,
        arch_x86_64::SEGBASE_FS,
        arch_x86_64::SEGBASE_GS_USER,
        arch_x86_64::SEGBASE_GS_KERNEL,
        arch_x86_64::SEGBASE_GS_USER_SEL,
        arch_x86_64::FIRST_RESERVED_GDT_PAGE,
        arch_x86_64::FIRST_RESERVED_GDT_BYTE,
        arch_x86_64::FIRST_RESERVED_GDT_ENTRY,
        arch_x86_64::XEN_LEGACY_MAX_VCPUS,
        arch_x86_64::XEN_CPUID_NO_SUBLEAF,
        arch_x86_64::XEN_HVM_DEBUGCONS_IOPORT,
        arch_x86_64::XEN_EMULATE_PREFIX = (emulate_prefix_asm()) => "XEN_EMULATE_PREFIX",
        arch_x86_64::VGCF_I387_VALID,
        arch_x86_64::VGCF_IN_KERNEL,
        arch_x86_64::_VGCF_i387_valid,
        arch_x86_64::VGCF_i387_valid,
        arch_x86_64::_VGCF_in_kernel,
        arch_x86_64::VGCF_in_kernel,
        arch_x86_64::_VGCF_failsafe_disables_events,
        arch_x86_64::VGCF_failsafe_disables_events,
        arch_x86_64::_VGCF_syscall_disables_events,
        arch_x86_64::VGCF_syscall_disables_events,
        arch_x86_64::_VGCF_online,
        arch_x86_64::VGCF_online,
        arch_x86_64::_VGCF_in_syscall,
        arch_x86_64::VGCF_in_syscall,
        arch_x86_64::VGCF_IN_SYSCALL,
        callback::CALLBACKTYPE_event,
        callback::CALLBACKTYPE_failsafe,
        callback::CALLBACKTYPE_syscall,
        callback::CALLBACKTYPE_sysenter_deprecated,
        callback::CALLBACKTYPE_nmi,
        callback::CALLBACKTYPE_sysenter,
        callback::CALLBACKTYPE_syscall32,
        callback::_CALLBACKF_mask_events,
        callback::CALLBACKF_mask_events,
        callback::CALLBACKOP_register,
        callback::CALLBACKOP_unregister,
        elfnote::XEN_ELFNOTE_INFO,
        elfnote::XEN_ELFNOTE_ENTRY,
        elfnote::XEN_ELFNOTE_HYPERCALL_PAGE,
        elfnote::XEN_ELFNOTE_VIRT_BASE,
        elfnote::XEN_ELFNOTE_PADDR_OFFSET,
        elfnote::XEN_ELFNOTE_XEN_VERSION,
        elfnote::XEN_ELFNOTE_GUEST_OS,
        elfnote::XEN_ELFNOTE_GUEST_VERSION,
        elfnote::XEN_ELFNOTE_LOADER,
        elfnote::XEN_ELFNOTE_PAE_MODE,
        elfnote::XEN_ELFNOTE_FEATURES,
        elfnote::XEN_ELFNOTE_BSD_SYMTAB,
        elfnote::XEN_ELFNOTE_HV_START_LOW,
        elfnote::XEN_ELFNOTE_L1_MFN_VALID,
        elfnote::XEN_ELFNOTE_SUSPEND_CANCEL,
        elfnote::XEN_ELFNOTE_INIT_P2M,
        elfnote::XEN_ELFNOTE_MOD_START_PFN,
        elfnote::XEN_ELFNOTE_SUPPORTED_FEATURES,
        elfnote::XEN_ELFNOTE_PHYS32_ENTRY,
        elfnote::XEN_ELFNOTE_MAX,
        elfnote::XEN_ELFNOTE_CRASH_INFO,
        elfnote::XEN_ELFNOTE_CRASH_REGS,
        elfnote::XEN_ELFNOTE_DUMPCORE_NONE,
        elfnote::XEN_ELFNOTE_DUMPCORE_HEADER,
        elfnote::XEN_ELFNOTE_DUMPCORE_XEN_VERSION,
        elfnote::XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION,
        errno::Errno::EWOULDBLOCK => "XEN_EWOULDBLOCK",
        errno::Errno::EDEADLOCK => "XEN_EDEADLOCK",
        event_channel::EVTCHNOP_bind_interdomain,
        event_channel::EVTCHNOP_bind_virq,
        event_channel::EVTCHNOP_bind_pirq,
        event_channel::EVTCHNOP_close,
        event_channel::EVTCHNOP_send,
        event_channel::EVTCHNOP_status,
        event_channel::EVTCHNOP_alloc_unbound,
        event_channel::EVTCHNOP_bind_ipi,
        event_channel::EVTCHNOP_bind_vcpu,
        event_channel::EVTCHNOP_unmask,
        event_channel::EVTCHNOP_reset,
        event_channel::EVTCHNOP_init_control,
        event_channel::EVTCHNOP_expand_array,
        event_channel::EVTCHNOP_set_priority,
        event_channel::EVTCHNSTAT_closed,
        event_channel::EVTCHNSTAT_unbound,
        event_channel::EVTCHNSTAT_interdomain,
        event_channel::EVTCHNSTAT_pirq,
        event_channel::EVTCHNSTAT_virq,
        event_channel::EVTCHNSTAT_ipi,
        event_channel::BIND_PIRQ__WILL_SHARE,
        event_channel::EVTCHN_2L_NR_CHANNELS,
        event_channel::EVTCHN_FIFO_PRIORITY_MAX,
        event_channel::EVTCHN_FIFO_PRIORITY_DEFAULT,
        event_channel::EVTCHN_FIFO_PRIORITY_MIN,
        event_channel::EVTCHN_FIFO_MAX_QUEUES,
        event_channel::EVTCHN_FIFO_PENDING,
        event_channel::EVTCHN_FIFO_MASKED,
        event_channel::EVTCHN_FIFO_LINKED,
        event_channel::EVTCHN_FIFO_BUSY,
        event_channel::EVTCHN_FIFO_LINK_BITS,
        event_channel::EVTCHN_FIFO_LINK_MASK,
        event_channel::EVTCHN_FIFO_NR_CHANNELS,
        grant_table::GNTTAB_NR_RESERVED_ENTRIES,
        grant_table::GNTTAB_RESERVED_CONSOLE,
        grant_table::GNTTAB_RESERVED_XENSTORE,
        grant_table::GTF_invalid,
        grant_table::GTF_permit_access,
        grant_table::GTF_accept_transfer,
        grant_table::GTF_transitive,
        grant_table::GTF_type_mask,
        grant_table::_GTF_readonly,
        grant_table::GTF_readonly,
        grant_table::_GTF_reading,
        grant_table::GTF_reading,
        grant_table::_GTF_writing,
        grant_table::GTF_writing,
        grant_table::_GTF_PWT,
        grant_table::GTF_PWT,
        grant_table::_GTF_PCD,
        grant_table::GTF_PCD,
        grant_table::_GTF_PAT,
        grant_table::GTF_PAT,
        grant_table::_GTF_sub_page,
        grant_table::GTF_sub_page,
        grant_table::_GTF_transfer_committed,
        grant_table::GTF_transfer_committed,
        grant_table::_GTF_transfer_completed,
        grant_table::GTF_transfer_completed,
        grant_table::GNTTABOP_map_grant_ref,
        grant_table::GNTTABOP_unmap_grant_ref,
        grant_table::GNTTABOP_setup_table,
        grant_table::GNTTABOP_dump_table,
        grant_table::GNTTABOP_transfer,
        grant_table::GNTTABOP_copy,
        grant_table::GNTTABOP_query_size,
        grant_table::GNTTABOP_unmap_and_replace,
        grant_table::GNTTABOP_set_version,
        grant_table::GNTTABOP_get_status_frames,
        grant_table::GNTTABOP_get_version,
        grant_table::GNTTABOP_swap_grant_ref,
        grant_table::GNTTABOP_cache_flush,
        grant_table::_GNTCOPY_source_gref,
        grant_table::GNTCOPY_source_gref,
        grant_table::_GNTCOPY_dest_gref,
        grant_table::GNTCOPY_dest_gref,
        grant_table::GNTTAB_CACHE_CLEAN,
        grant_table::GNTTAB_CACHE_INVAL,
        grant_table::GNTTAB_CACHE_SOURCE_GREF,
        grant_table::_GNTMAP_device_map,
        grant_table::GNTMAP_device_map,
        grant_table::_GNTMAP_host_map,
        grant_table::GNTMAP_host_map,
        grant_table::_GNTMAP_readonly,
        grant_table::GNTMAP_readonly,
        grant_table::_GNTMAP_application_map,
        grant_table::GNTMAP_application_map,
        grant_table::_GNTMAP_contains_pte,
        grant_table::GNTMAP_contains_pte,
        grant_table::_GNTMAP_guest_avail0,
        grant_table::GNTMAP_guest_avail_mask,
        grant_table::GNTST_okay,
        grant_table::GNTST_general_error,
        grant_table::GNTST_bad_domain,
        grant_table::GNTST_bad_gntref,
        grant_table::GNTST_bad_handle,
        grant_table::GNTST_bad_virt_addr,
        grant_table::GNTST_bad_dev_addr,
        grant_table::GNTST_no_device_space,
        grant_table::GNTST_permission_denied,
        grant_table::GNTST_bad_page,
        grant_table::GNTST_bad_copy_arg,
        grant_table::GNTST_address_too_big,
        grant_table::GNTST_eagain,
        grant_table::GNTST_no_space,
        grant_table::GNTTABOP_error_msgs => "{ static const char *const a_[] = GNTTABOP_error_msgs; for (size_t i = 0; i < sizeof a_ / sizeof *a_; i++) LINE(KEY, \"%s\", a_[i]); }",
        io::blkif::BLKIF_OP_READ,
        io::blkif::BLKIF_OP_WRITE,
        io::blkif::BLKIF_OP_WRITE_BARRIER,
        io::blkif::BLKIF_OP_FLUSH_DISKCACHE,
        io::blkif::BLKIF_OP_RESERVED_1,
        io::blkif::BLKIF_OP_DISCARD,
        io::blkif::BLKIF_OP_INDIRECT,
        io::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST,
        io::blkif::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
        io::blkif::BLKIF_DISCARD_SECURE,
        io::blkif::BLKIF_RSP_EOPNOTSUPP,
        io::blkif::BLKIF_RSP_ERROR,
        io::blkif::BLKIF_RSP_OKAY,
        io::blkif::VDISK_CDROM,
        io::blkif::VDISK_REMOVABLE,
        io::blkif::VDISK_READONLY,
        io::blkif::BLKIF_SRING_ENTRY_SIZE => "sizeof(union blkif_sring_entry)",
        io::blkif::BLKIF_RING_SIZE => "__CONST_RING_SIZE(blkif, 4096)",
        io::console::XENCONS_IN_SIZE => "sizeof(((struct xencons_interface *)0)->in)",
        io::console::XENCONS_OUT_SIZE => "sizeof(((struct xencons_interface *)0)->out)",
        io::netif::XEN_NETIF_NR_SLOTS_MIN,
        io::netif::XEN_NETIF_MAX_TX_SIZE,
        io::netif::_NETTXF_csum_blank,
        io::netif::NETTXF_csum_blank,
        io::netif::_NETTXF_data_validated,
        io::netif::NETTXF_data_validated,
        io::netif::_NETTXF_more_data,
        io::netif::NETTXF_more_data,
        io::netif::_NETTXF_extra_info,
        io::netif::NETTXF_extra_info,
        io::netif::_NETRXF_data_validated,
        io::netif::NETRXF_data_validated,
        io::netif::_NETRXF_csum_blank,
        io::netif::NETRXF_csum_blank,
        io::netif::_NETRXF_more_data,
        io::netif::NETRXF_more_data,
        io::netif::_NETRXF_extra_info,
        io::netif::NETRXF_extra_info,
        io::netif::_NETRXF_gso_prefix,
        io::netif::NETRXF_gso_prefix,
        io::netif::XEN_NETIF_EXTRA_TYPE_NONE,
        io::netif::XEN_NETIF_EXTRA_TYPE_GSO,
        io::netif::XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        io::netif::XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
        io::netif::XEN_NETIF_EXTRA_TYPE_HASH,
        io::netif::XEN_NETIF_EXTRA_TYPE_MAX,
        io::netif::_XEN_NETIF_EXTRA_FLAG_MORE,
        io::netif::XEN_NETIF_EXTRA_FLAG_MORE,
        io::netif::XEN_NETIF_GSO_TYPE_NONE,
        io::netif::XEN_NETIF_GSO_TYPE_TCPV4,
        io::netif::XEN_NETIF_GSO_TYPE_TCPV6,
        io::netif::NETIF_RSP_DROPPED,
        io::netif::NETIF_RSP_ERROR,
        io::netif::NETIF_RSP_OKAY,
        io::netif::NETIF_RSP_NULL,
        io::netif::_XEN_NETIF_CTRL_HASH_TYPE_IPV4,
        io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4,
        io::netif::_XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
        io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
        io::netif::_XEN_NETIF_CTRL_HASH_TYPE_IPV6,
        io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6,
        io::netif::_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
        io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
        io::netif::XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
        io::netif::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
        io::netif::XEN_NETIF_CTRL_TYPE_INVALID,
        io::netif::XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS,
        io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
        io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
        io::netif::XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE,
        io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
        io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
        io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
        io::netif::XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE,
        io::netif::XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING,
        io::netif::XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING,
        io::netif::XEN_NETIF_CTRL_STATUS_SUCCESS,
        io::netif::XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED,
        io::netif::XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER,
        io::netif::XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW,
        io::netif::_XEN_NETIF_CTRLF_GREF_readonly,
        io::netif::XEN_NETIF_CTRLF_GREF_readonly,
        io::netif::NETIF_TX_SRING_ENTRY_SIZE => "sizeof(union netif_tx_sring_entry)",
        io::netif::NETIF_RX_SRING_ENTRY_SIZE => "sizeof(union netif_rx_sring_entry)",
        io::netif::NETIF_TX_RING_SIZE => "__CONST_RING_SIZE(netif_tx, 4096)",
        io::netif::NETIF_RX_RING_SIZE => "__CONST_RING_SIZE(netif_rx, 4096)",
        io::ring::XEN_PAGE_SHIFT,
        io::ring::XEN_PAGE_SIZE => "(1 << XEN_PAGE_SHIFT)",
        io::xs_wire::XS_CONTROL,
        io::xs_wire::XS_DEBUG,
        io::xs_wire::XS_DIRECTORY,
        io::xs_wire::XS_READ,
        io::xs_wire::XS_GET_PERMS,
        io::xs_wire::XS_WATCH,
        io::xs_wire::XS_UNWATCH,
        io::xs_wire::XS_TRANSACTION_START,
        io::xs_wire::XS_TRANSACTION_END,
        io::xs_wire::XS_INTRODUCE,
        io::xs_wire::XS_RELEASE,
        io::xs_wire::XS_GET_DOMAIN_PATH,
        io::xs_wire::XS_WRITE,
        io::xs_wire::XS_MKDIR,
        io::xs_wire::XS_RM,
        io::xs_wire::XS_SET_PERMS,
        io::xs_wire::XS_WATCH_EVENT,
        io::xs_wire::XS_ERROR,
        io::xs_wire::XS_IS_DOMAIN_INTRODUCED,
        io::xs_wire::XS_RESUME,
        io::xs_wire::XS_SET_TARGET,
        io::xs_wire::XS_RESET_WATCHES,
        io::xs_wire::XS_DIRECTORY_PART,
        io::xs_wire::XS_TYPE_COUNT,
        io::xs_wire::XS_INVALID,
        io::xs_wire::XS_WATCH_PATH,
        io::xs_wire::XS_WATCH_TOKEN,
        io::xs_wire::XS_WRITE_NONE,
        io::xs_wire::XS_WRITE_CREATE,
        io::xs_wire::XS_WRITE_CREATE_EXCL,
        io::xs_wire::XSD_ERRORS = (xsd_errors_lines()) => "{ for (size_t i = 0; i < sizeof xsd_errors / sizeof *xsd_errors; i++) LINE(KEY, \"%d %s\", xsd_errors[i].errnum, xsd_errors[i].errstring); }",
        io::xs_wire::XENSTORE_RING_SIZE,
        io::xs_wire::XENSTORE_PAYLOAD_MAX,
        io::xs_wire::XENSTORE_ABS_PATH_MAX,
        io::xs_wire::XENSTORE_REL_PATH_MAX,
        io::xs_wire::XENSTORE_SERVER_FEATURE_RECONNECTION,
        io::xs_wire::XENSTORE_SERVER_FEATURE_ERROR,
        io::xs_wire::XENSTORE_CONNECTED,
        io::xs_wire::XENSTORE_RECONNECT,
        io::xs_wire::XENSTORE_ERROR_NONE,
        io::xs_wire::XENSTORE_ERROR_COMM,
        io::xs_wire::XENSTORE_ERROR_RINGIDX,
        io::xs_wire::XENSTORE_ERROR_PROTO,
        memory::XENMEM_increase_reservation,
        memory::XENMEM_decrease_reservation,
        memory::XENMEM_maximum_ram_page,
        memory::XENMEM_current_reservation,
        memory::XENMEM_maximum_reservation,
        memory::XENMEM_machphys_mfn_list,
        memory::XENMEM_populate_physmap,
        memory::XENMEM_add_to_physmap,
        memory::XENMEM_memory_map,
        memory::XENMEM_machine_memory_map,
        memory::XENMEM_exchange,
        memory::XENMEM_machphys_mapping,
        memory::XENMEM_set_memory_map,
        memory::XENMEM_maximum_gpfn,
        memory::XENMEM_remove_from_physmap,
        memory::XENMEM_set_pod_target,
        memory::XENMEM_get_pod_target,
        memory::XENMEM_add_to_physmap_batch,
        memory::XENMEM_machphys_compat_mfn_list,
        memory::XENMEM_get_vnumainfo,
        memory::XENMEM_acquire_resource,
        memory::XENMEMF_populate_on_demand,
        memory::XENMEMF_exact_node_request,
        memory::XENMEMF_vnode,
        memory::XENMAPSPACE_shared_info,
        memory::XENMAPSPACE_grant_table,
        memory::XENMAPSPACE_gmfn,
        memory::XENMAPSPACE_gmfn_range,
        memory::XENMAPSPACE_gmfn_foreign,
        memory::XENMAPSPACE_dev_mmio,
        memory::XENMAPIDX_grant_table_status,
        memory::XENMEM_resource_ioreq_server,
        memory::XENMEM_resource_grant_table,
        memory::XENMEM_resource_vmtrace_buf,
        memory::XENMEM_resource_grant_table_id_shared,
        memory::XENMEM_resource_grant_table_id_status,
        memory::XENMEM_resource_ioreq_server_frame_bufioreq,
        physdev::PHYSDEVOP_IRQ_UNMASK_NOTIFY,
        physdev::MAP_PIRQ_TYPE_MSI,
        physdev::MAP_PIRQ_TYPE_GSI,
        physdev::MAP_PIRQ_TYPE_UNKNOWN,
        physdev::MAP_PIRQ_TYPE_MSI_SEG,
        physdev::MAP_PIRQ_TYPE_MULTI_MSI,
        physdev::PHYSDEVOP_irq_status_query,
        physdev::PHYSDEVOP_set_iopl,
        physdev::PHYSDEVOP_set_iobitmap,
        physdev::PHYSDEVOP_apic_read,
        physdev::PHYSDEVOP_apic_write,
        physdev::PHYSDEVOP_alloc_irq_vector,
        physdev::PHYSDEVOP_free_irq_vector,
        physdev::PHYSDEVOP_eoi,
        physdev::PHYSDEVOP_map_pirq,
        physdev::PHYSDEVOP_unmap_pirq,
        physdev::PHYSDEVOP_manage_pci_add,
        physdev::PHYSDEVOP_manage_pci_remove,
        physdev::PHYSDEVOP_pirq_eoi_gmfn_v1,
        physdev::PHYSDEVOP_restore_msi,
        physdev::PHYSDEVOP_manage_pci_add_ext,
        physdev::PHYSDEVOP_setup_gsi,
        physdev::PHYSDEVOP_get_free_pirq,
        physdev::PHYSDEVOP_pci_mmcfg_reserved,
        physdev::PHYSDEVOP_pci_device_add,
        physdev::PHYSDEVOP_pci_device_remove,
        physdev::PHYSDEVOP_restore_msi_ext,
        physdev::PHYSDEVOP_pirq_eoi_gmfn_v2,
        physdev::PHYSDEVOP_dbgp_op,
        physdev::PHYSDEVOP_prepare_msix,
        physdev::PHYSDEVOP_release_msix,
        physdev::PHYSDEVOP_pirq_eoi_gmfn,
        physdev::_XENIRQSTAT_needs_eoi,
        physdev::XENIRQSTAT_needs_eoi,
        physdev::_XENIRQSTAT_shared,
        physdev::XENIRQSTAT_shared,
        sched::SCHEDOP_yield,
        sched::SCHEDOP_block,
        sched::SCHEDOP_shutdown,
        sched::SCHEDOP_poll,
        sysctl::XEN_SYSCTL_INTERFACE_VERSION,
        sysctl::XEN_SYSCTL_perfc_op,
        sysctl::XEN_SYSCTL_PERFCOP_reset,
        sysctl::XEN_SYSCTL_PERFCOP_query,
        sysctl::XEN_SYSCTL_getdomaininfolist,
        domctl::XEN_DOMCTL_INTERFACE_VERSION,
        domctl::XEN_DOMCTL_createdomain,
        domctl::XEN_DOMCTL_destroydomain,
        domctl::XEN_DOMCTL_max_mem,
        domctl::XEN_DOMCTL_setvcpucontext,
        domctl::XEN_DOMCTL_max_vcpus,
        domctl::XEN_DOMCTL_GRANT_version_mask,
        domctl::XEN_DOMCTL_pausedomain,
        domctl::XEN_DOMCTL_unpausedomain,
        domctl::XEN_DOMCTL_getdomaininfo,
        domctl::_XEN_DOMINF_dying,
        domctl::XEN_DOMINF_dying,
        domctl::_XEN_DOMINF_hvm_guest,
        domctl::XEN_DOMINF_hvm_guest,
        domctl::_XEN_DOMINF_shutdown,
        domctl::XEN_DOMINF_shutdown,
        domctl::_XEN_DOMINF_paused,
        domctl::XEN_DOMINF_paused,
        domctl::_XEN_DOMINF_blocked,
        domctl::XEN_DOMINF_blocked,
        domctl::_XEN_DOMINF_running,
        domctl::XEN_DOMINF_running,
        domctl::_XEN_DOMINF_debugged,
        domctl::XEN_DOMINF_debugged,
        domctl::_XEN_DOMINF_xs_domain,
        domctl::XEN_DOMINF_xs_domain,
        domctl::_XEN_DOMINF_hap,
        domctl::XEN_DOMINF_hap,
        domctl::XEN_DOMINF_shutdownmask,
        domctl::XEN_DOMINF_shutdownshift,
        domctl::XEN_INVALID_MAX_VCPU_ID,
        hvm::HVMOP_set_param,
        hvm::HVMOP_get_param,
        hvm::HVM_PARAM_STORE_PFN,
        hvm::HVM_PARAM_STORE_EVTCHN,
        hvm::HVM_PARAM_CONSOLE_PFN,
        hvm::HVM_PARAM_CONSOLE_EVTCHN,
        hvm::HVM_NR_PARAMS,
        sched::SCHEDOP_remote_shutdown,
        sched::SCHEDOP_shutdown_code,
        sched::SCHEDOP_watchdog,
        sched::SCHEDOP_pin_override,
        sched::SHUTDOWN_poweroff,
        sched::SHUTDOWN_reboot,
        sched::SHUTDOWN_suspend,
        sched::SHUTDOWN_crash,
        sched::SHUTDOWN_watchdog,
        sched::SHUTDOWN_soft_reset,
        sched::SHUTDOWN_MAX,
        vcpu::VCPUOP_initialise,
        vcpu::VCPUOP_up,
        vcpu::VCPUOP_down,
        vcpu::VCPUOP_is_up,
        vcpu::VCPUOP_get_runstate_info,
        vcpu::VCPUOP_register_runstate_memory_area,
        vcpu::VCPUOP_set_periodic_timer,
        vcpu::VCPUOP_stop_periodic_timer,
        vcpu::VCPUOP_set_singleshot_timer,
        vcpu::VCPUOP_stop_singleshot_timer,
        vcpu::VCPUOP_register_vcpu_info,
        vcpu::VCPUOP_send_nmi,
        vcpu::VCPUOP_get_physid,
        vcpu::VCPUOP_register_vcpu_time_memory_area,
        vcpu::XEN_RUNSTATE_UPDATE,
        vcpu::RUNSTATE_running,
        vcpu::RUNSTATE_runnable,
        vcpu::RUNSTATE_blocked,
        vcpu::RUNSTATE_offline,
        vcpu::_VCPU_SSHOTTMR_future,
        vcpu::VCPU_SSHOTTMR_future,
        version::XENVER_version,
        version::XENVER_extraversion,
        version::XENVER_compile_info,
        version::XENVER_capabilities,
        version::XENVER_changeset,
        version::XENVER_platform_parameters,
        version::XENVER_get_features,
        version::XENVER_pagesize,
        version::XENVER_guest_handle,
        version::XENVER_commandline,
        version::XENVER_build_id,
        version::XEN_EXTRAVERSION_LEN,
        version::XEN_CAPABILITIES_INFO_LEN,
        version::XEN_CHANGESET_INFO_LEN,
        version::XENFEAT_writable_page_tables,
        version::XENFEAT_writable_descriptor_tables,
        version::XENFEAT_auto_translated_physmap,
        version::XENFEAT_supervisor_mode_kernel,
        version::XENFEAT_pae_pgdir_above_4gb,
        version::XENFEAT_mmu_pt_update_preserve_ad,
        version::XENFEAT_highmem_assist,
        version::XENFEAT_gnttab_map_avail_bits,
        version::XENFEAT_hvm_callback_vector,
        version::XENFEAT_hvm_safe_pvclock,
        version::XENFEAT_hvm_pirqs,
        version::XENFEAT_dom0,
        version::XENFEAT_memory_op_vnode_supported,
        version::XENFEAT_ARM_SMCCC_supported,
        version::XENFEAT_linux_rsdp_unrestricted,
        version::XENFEAT_not_direct_mapped,
        version::XENFEAT_direct_mapped,
        version::XENFEAT_NR_SUBMAPS,
        xen::__XEN_LATEST_INTERFACE_VERSION__,
        xen::__HYPERVISOR_set_trap_table,
        xen::__HYPERVISOR_mmu_update,
        xen::__HYPERVISOR_set_gdt,
        xen::__HYPERVISOR_stack_switch,
        xen::__HYPERVISOR_set_callbacks,
        xen::__HYPERVISOR_fpu_taskswitch,
        xen::__HYPERVISOR_sched_op_compat,
        xen::__HYPERVISOR_platform_op,
        xen::__HYPERVISOR_set_debugreg,
        xen::__HYPERVISOR_get_debugreg,
        xen::__HYPERVISOR_update_descriptor,
        xen::__HYPERVISOR_memory_op,
        xen::__HYPERVISOR_multicall,
        xen::__HYPERVISOR_update_va_mapping,
        xen::__HYPERVISOR_set_timer_op,
        xen::__HYPERVISOR_event_channel_op_compat,
        xen::__HYPERVISOR_xen_version,
        xen::__HYPERVISOR_console_io,
        xen::__HYPERVISOR_physdev_op_compat,
        xen::__HYPERVISOR_grant_table_op,
        xen::__HYPERVISOR_vm_assist,
        xen::__HYPERVISOR_update_va_mapping_otherdomain,
        xen::__HYPERVISOR_iret,
        xen::__HYPERVISOR_vcpu_op,
        xen::__HYPERVISOR_set_segment_base,
        xen::__HYPERVISOR_mmuext_op,
        xen::__HYPERVISOR_xsm_op,
        xen::__HYPERVISOR_nmi_op,
        xen::__HYPERVISOR_sched_op,
        xen::__HYPERVISOR_callback_op,
        xen::__HYPERVISOR_xenoprof_op,
        xen::__HYPERVISOR_event_channel_op,
        xen::__HYPERVISOR_physdev_op,
        xen::__HYPERVISOR_hvm_op,
        xen::__HYPERVISOR_sysctl,
        xen::__HYPERVISOR_domctl,
        xen::__HYPERVISOR_kexec_op,
        xen::__HYPERVISOR_tmem_op,
        xen::__HYPERVISOR_argo_op,
        xen::__HYPERVISOR_xenpmu_op,
        xen::__HYPERVISOR_dm_op,
        xen::__HYPERVISOR_hypfs_op,
        xen::__HYPERVISOR_arch_0,
        xen::__HYPERVISOR_arch_1,
        xen::__HYPERVISOR_arch_2,
        xen::__HYPERVISOR_arch_3,
        xen::__HYPERVISOR_arch_4,
        xen::__HYPERVISOR_arch_5,
        xen::__HYPERVISOR_arch_6,
        xen::__HYPERVISOR_arch_7,
        xen::VIRQ_TIMER,
        xen::VIRQ_DEBUG,
        xen::VIRQ_CONSOLE,
        xen::VIRQ_DOM_EXC,
        xen::VIRQ_TBUF,
        xen::VIRQ_DEBUGGER,
        xen::VIRQ_XENOPROF,
        xen::VIRQ_CON_RING,
        xen::VIRQ_PCPU_STATE,
        xen::VIRQ_MEM_EVENT,
        xen::VIRQ_ARGO,
        xen::VIRQ_ENOMEM,
        xen::VIRQ_XENPMU,
        xen::VIRQ_ARCH_0,
        xen::VIRQ_ARCH_1,
        xen::VIRQ_ARCH_2,
        xen::VIRQ_ARCH_3,
        xen::VIRQ_ARCH_4,
        xen::VIRQ_ARCH_5,
        xen::VIRQ_ARCH_6,
        xen::VIRQ_ARCH_7,
        xen::NR_VIRQS,
        xen::MMU_NORMAL_PT_UPDATE,
        xen::MMU_MACHPHYS_UPDATE,
        xen::MMU_PT_UPDATE_PRESERVE_AD,
        xen::MMU_PT_UPDATE_NO_TRANSLATE,
        xen::MMUEXT_PIN_L1_TABLE,
        xen::MMUEXT_PIN_L2_TABLE,
        xen::MMUEXT_PIN_L3_TABLE,
        xen::MMUEXT_PIN_L4_TABLE,
        xen::MMUEXT_UNPIN_TABLE,
        xen::MMUEXT_NEW_BASEPTR,
        xen::MMUEXT_TLB_FLUSH_LOCAL,
        xen::MMUEXT_INVLPG_LOCAL,
        xen::MMUEXT_TLB_FLUSH_MULTI,
        xen::MMUEXT_INVLPG_MULTI,
        xen::MMUEXT_TLB_FLUSH_ALL,
        xen::MMUEXT_INVLPG_ALL,
        xen::MMUEXT_FLUSH_CACHE,
        xen::MMUEXT_SET_LDT,
        xen::MMUEXT_NEW_USER_BASEPTR,
        xen::MMUEXT_CLEAR_PAGE,
        xen::MMUEXT_COPY_PAGE,
        xen::MMUEXT_FLUSH_CACHE_GLOBAL,
        xen::MMUEXT_MARK_SUPER,
        xen::MMUEXT_UNMARK_SUPER,
        xen::UVMF_NONE,
        xen::UVMF_TLB_FLUSH,
        xen::UVMF_INVLPG,
        xen::UVMF_FLUSHTYPE_MASK,
        xen::UVMF_MULTI,
        xen::UVMF_LOCAL,
        xen::UVMF_ALL,
        xen::CONSOLEIO_write,
        xen::CONSOLEIO_read,
        xen::VMASST_CMD_enable,
        xen::VMASST_CMD_disable,
        xen::VMASST_TYPE_4gb_segments,
        xen::VMASST_TYPE_4gb_segments_notify,
        xen::VMASST_TYPE_writable_pagetables,
        xen::VMASST_TYPE_pae_extended_cr3,
        xen::VMASST_TYPE_architectural_iopl,
        xen::VMASST_TYPE_runstate_update_flag,
        xen::VMASST_TYPE_m2p_strict,
        xen::DOMID_FIRST_RESERVED,
        xen::DOMID_SELF,
        xen::DOMID_IO,
        xen::DOMID_XEN,
        xen::DOMID_COW,
        xen::DOMID_INVALID,
        xen::DOMID_IDLE,
        xen::DOMID_MASK,
        xen::MAX_GUEST_CMDLINE,
        xen::SIF_PRIVILEGED,
        xen::SIF_INITDOMAIN,
        xen::SIF_MULTIBOOT_MOD,
        xen::SIF_MOD_START_PFN,
        xen::SIF_VIRT_P2M_4TOOLS,
        xen::SIF_PM_MASK,
        xen::XEN_PVCLOCK_TSC_STABLE_BIT,
        xen::XEN_PVCLOCK_GUEST_STOPPED,
        xen::XEN_VGATYPE_TEXT_MODE_3,
        xen::XEN_VGATYPE_VESA_LFB,
        xen::XEN_VGATYPE_EFI_LFB,
        errno::Errno::EPERM => "XEN_EPERM",
        errno::Errno::ENOENT => "XEN_ENOENT",
        errno::Errno::ESRCH => "XEN_ESRCH",
        errno::Errno::EIO => "XEN_EIO",
        errno::Errno::ENXIO => "XEN_ENXIO",
        errno::Errno::E2BIG => "XEN_E2BIG",
        errno::Errno::ENOEXEC => "XEN_ENOEXEC",
        errno::Errno::EBADF => "XEN_EBADF",
        errno::Errno::ECHILD => "XEN_ECHILD",
        errno::Errno::EAGAIN => "XEN_EAGAIN",
        errno::Errno::ENOMEM => "XEN_ENOMEM",
        errno::Errno::EACCES => "XEN_EACCES",
        errno::Errno::EFAULT => "XEN_EFAULT",
        errno::Errno::EBUSY => "XEN_EBUSY",
        errno::Errno::EEXIST => "XEN_EEXIST",
        errno::Errno::EXDEV => "XEN_EXDEV",
        errno::Errno::ENODEV => "XEN_ENODEV",
        errno::Errno::ENOTDIR => "XEN_ENOTDIR",
        errno::Errno::EISDIR => "XEN_EISDIR",
        errno::Errno::EINVAL => "XEN_EINVAL",
        errno::Errno::ENFILE => "XEN_ENFILE",
        errno::Errno::EMFILE => "XEN_EMFILE",
        errno::Errno::ENOSPC => "XEN_ENOSPC",
        errno::Errno::EROFS => "XEN_EROFS",
        errno::Errno::EMLINK => "XEN_EMLINK",
        errno::Errno::EDOM => "XEN_EDOM",
        errno::Errno::ERANGE => "XEN_ERANGE",
        errno::Errno::EDEADLK => "XEN_EDEADLK",
        errno::Errno::ENAMETOOLONG => "XEN_ENAMETOOLONG",
        errno::Errno::ENOLCK => "XEN_ENOLCK",
        errno::Errno::ENOSYS => "XEN_ENOSYS",
        errno::Errno::ENOTEMPTY => "XEN_ENOTEMPTY",
        errno::Errno::ENODATA => "XEN_ENODATA",
        errno::Errno::ETIME => "XEN_ETIME",
        errno::Errno::EBADMSG => "XEN_EBADMSG",
        errno::Errno::EOVERFLOW => "XEN_EOVERFLOW",
        errno::Errno::EILSEQ => "XEN_EILSEQ",
        errno::Errno::ENOTSOCK => "XEN_ENOTSOCK",
        errno::Errno::EMSGSIZE => "XEN_EMSGSIZE",
        errno::Errno::EOPNOTSUPP => "XEN_EOPNOTSUPP",
        errno::Errno::EADDRINUSE => "XEN_EADDRINUSE",
        errno::Errno::EADDRNOTAVAIL => "XEN_EADDRNOTAVAIL",
        errno::Errno::ENOBUFS => "XEN_ENOBUFS",
        errno::Errno::EISCONN => "XEN_EISCONN",
        errno::Errno::ENOTCONN => "XEN_ENOTCONN",
        errno::Errno::ETIMEDOUT => "XEN_ETIMEDOUT",
        errno::Errno::ECONNREFUSED => "XEN_ECONNREFUSED",
        io::xenbus::XenbusState::Unknown => "XenbusStateUnknown",
        io::xenbus::XenbusState::Initialising => "XenbusStateInitialising",
        io::xenbus::XenbusState::InitWait => "XenbusStateInitWait",
        io::xenbus::XenbusState::Initialised => "XenbusStateInitialised",
        io::xenbus::XenbusState::Connected => "XenbusStateConnected",
        io::xenbus::XenbusState::Closing => "XenbusStateClosing",
        io::xenbus::XenbusState::Closed => "XenbusStateClosed",
        io::xenbus::XenbusState::Reconfiguring => "XenbusStateReconfiguring",
        io::xenbus::XenbusState::Reconfigured => "XenbusStateReconfigured",
        sched::SchedNoArg::Yield = (sched::SchedNoArg::Yield as u32) => "SCHEDOP_yield",
        sched::SchedNoArg::Block = (sched::SchedNoArg::Block as u32) => "SCHEDOP_block",
        memory::MemoryNoArg::MaximumRamPage = (memory::MemoryNoArg::MaximumRamPage as u32) => "XENMEM_maximum_ram_page",
        vcpu::VcpuNoArg::Up = (vcpu::VcpuNoArg::Up as u32) => "VCPUOP_up",
        vcpu::VcpuNoArg::Down = (vcpu::VcpuNoArg::Down as u32) => "VCPUOP_down",
        vcpu::VcpuNoArg::IsUp = (vcpu::VcpuNoArg::IsUp as u32) => "VCPUOP_is_up",
        vcpu::VcpuNoArg::StopPeriodicTimer = (vcpu::VcpuNoArg::StopPeriodicTimer as u32) => "VCPUOP_stop_periodic_timer",
        vcpu::VcpuNoArg::StopSingleshotTimer = (vcpu::VcpuNoArg::StopSingleshotTimer as u32) => "VCPUOP_stop_singleshot_timer",
        vcpu::VcpuNoArg::SendNmi = (vcpu::VcpuNoArg::SendNmi as u32) => "VCPUOP_send_nmi",
        version::XenVersionNoArg::Version = (version::XenVersionNoArg::Version as u32) => "XENVER_version",
        version::XenVersionNoArg::Pagesize = (version::XenVersionNoArg::Pagesize as u32) => "XENVER_pagesize",
    ];
    // Helper functions and macro equivalents, compared on sample inputs.
    let extra: Vec<(&str, Val, &str)> = vec![
        (
            "interface version in effect",
            xen::__XEN_LATEST_INTERFACE_VERSION__.to_val(),
            "__XEN_INTERFACE_VERSION__",
        ),
        (
            "xen_pfn_to_cr3(0x12345)",
            arch_x86_64::xen_pfn_to_cr3(0x12345).to_val(),
            "xen_pfn_to_cr3(0x12345)",
        ),
        (
            "xen_cr3_to_pfn(0x12345678)",
            arch_x86_64::xen_cr3_to_pfn(0x1234_5678).to_val(),
            "xen_cr3_to_pfn(0x12345678)",
        ),
        (
            "xenmemf_node(3)",
            memory::xenmemf_node(3).to_val(),
            "XENMEMF_node(3)",
        ),
        (
            "xenmemf_address_bits(32)",
            memory::xenmemf_address_bits(32).to_val(),
            "XENMEMF_address_bits(32)",
        ),
        (
            "mask_xenstore_idx(4097)",
            io::xs_wire::mask_xenstore_idx(4097).to_val(),
            "MASK_XENSTORE_IDX(4097)",
        ),
        (
            "mask_xencons_idx(5000, out)",
            io::console::mask_xencons_idx(5000, io::console::XENCONS_OUT_SIZE).to_val(),
            "MASK_XENCONS_IDX(5000, ((struct xencons_interface *)0)->out)",
        ),
        (
            "ring_size(4096, size_of::<BlkifRequest>())",
            io::ring::ring_size(4096, size_of::<io::blkif::BlkifRequest>()).to_val(),
            "__CONST_RING_SIZE(blkif, 4096)",
        ),
        (
            "ring_size(8192, 112)",
            io::ring::ring_size(8192, 112).to_val(),
            "__CONST_RING_SIZE(blkif, 8192)",
        ),
        (
            "ring_size(4096, size_of::<XenNetifCtrlRequest>())",
            io::ring::ring_size(4096, size_of::<io::netif::XenNetifCtrlRequest>()).to_val(),
            "__CONST_RING_SIZE(xen_netif_ctrl, 4096)",
        ),
        (
            "VcpuGetPhysid::apicid",
            vcpu::VcpuGetPhysid {
                phys_id: 0x1122_3344_5566_7788,
            }
            .apicid()
            .to_val(),
            "xen_vcpu_physid_to_x86_apicid(0x1122334455667788ULL)",
        ),
        (
            "VcpuGetPhysid::acpiid",
            vcpu::VcpuGetPhysid {
                phys_id: 0x1122_3344_5566_7788,
            }
            .acpiid()
            .to_val(),
            "xen_vcpu_physid_to_x86_acpiid(0x1122334455667788ULL)",
        ),
        (
            "offsetof blkif ring entries",
            size_of::<io::ring::SharedRingHeader>().to_val(),
            "offsetof(struct blkif_sring, ring)",
        ),
    ];
    v.extend(extra.into_iter().map(|(label, rust, c)| ConstCheck {
        key: format!("<expr> {label}"),
        c: c.to_string(),
        rust,
    }));
    v
}

/// `XEN_EMULATE_PREFIX` as the C header spells it (an assembler string).
fn emulate_prefix_asm() -> Vec<String> {
    let bytes: Vec<String> = arch_x86_64::XEN_EMULATE_PREFIX
        .iter()
        .map(|b| format!("{b:#04x}"))
        .collect();
    vec![format!(".byte {} ; ", bytes.join(","))]
}

/// `xsd_errors[]` as "errnum name" lines.
fn xsd_errors_lines() -> Vec<String> {
    io::xs_wire::XSD_ERRORS
        .iter()
        .map(|e| format!("{} {}", e.raw(), e.name()))
        .collect()
}

fn expect<T: PartialEq + std::fmt::Debug>(errs: &mut Vec<String>, what: &str, rust: T, c: T) {
    if rust != c {
        errs.push(format!("{what}: rust={rust:?} C={c:?}"));
    }
}

fn expect_bytes(errs: &mut Vec<String>, what: &str, rust: &[u8], c: &[u8]) {
    if rust != c {
        errs.push(format!(
            "{what}: bytes differ\n      rust={rust:02x?}\n      C   ={c:02x?}"
        ));
    }
}

fn bytes_checks() -> Vec<BytesCheck> {
    use arch_x86_64::TrapInfo;
    use event_channel::EvtchnStatus;
    use grant_table::{GnttabCopy, GrantEntryV2};
    use io::netif::NetifExtraInfo;
    use io::ring::SharedRingHeader;
    use xen::{MmuextOp, StartInfo};
    vec![
        BytesCheck {
            name: "start_info_t.console.domU",
            c_type: "start_info_t",
            c_len: "sizeof *s",
            stmt: "s->console.domU.mfn = 0x1122334455667788ULL; s->console.domU.evtchn = 0x99aabbcc;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = StartInfo::read_from_bytes(b).unwrap();
                expect(&mut e, "console_domu_mfn()", s.console_domu_mfn(), 0x1122_3344_5566_7788);
                expect(&mut e, "console_domu_evtchn()", s.console_domu_evtchn(), 0x99aa_bbcc);
                let mut r = StartInfo::new_zeroed();
                r.set_console_domu_mfn(0x1122_3344_5566_7788);
                r.set_console_domu_evtchn(0x99aa_bbcc);
                expect_bytes(&mut e, "set_console_domu_*", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "start_info_t.console.dom0",
            c_type: "start_info_t",
            c_len: "sizeof *s",
            stmt: "s->console.dom0.info_off = 0x11223344; s->console.dom0.info_size = 0x55667788;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = StartInfo::read_from_bytes(b).unwrap();
                expect(&mut e, "console_dom0_info_off()", s.console_dom0_info_off(), 0x1122_3344);
                expect(&mut e, "console_dom0_info_size()", s.console_dom0_info_size(), 0x5566_7788);
                let mut r = StartInfo::new_zeroed();
                r.set_console_dom0_info(0x1122_3344, 0x5566_7788);
                expect_bytes(&mut e, "set_console_dom0_info", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "mmuext_op_t SET_LDT",
            c_type: "mmuext_op_t",
            c_len: "sizeof *s",
            stmt: "s->cmd = MMUEXT_SET_LDT; s->arg1.linear_addr = 0xffff888000001000UL; s->arg2.nr_ents = 0x1234;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = MmuextOp::read_from_bytes(b).unwrap();
                expect(&mut e, "linear_addr()", s.linear_addr(), 0xffff_8880_0000_1000);
                expect(&mut e, "nr_ents()", s.nr_ents(), 0x1234);
                let r = MmuextOp {
                    cmd: xen::MMUEXT_SET_LDT,
                    arg1: 0xffff_8880_0000_1000,
                    arg2: 0x1234,
                    ..Default::default()
                };
                expect_bytes(&mut e, "MmuextOp literal", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "mmuext_op_t COPY_PAGE",
            c_type: "mmuext_op_t",
            c_len: "sizeof *s",
            stmt: "s->cmd = MMUEXT_COPY_PAGE; s->arg1.mfn = 0x1234567; s->arg2.src_mfn = 0x7654321;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = MmuextOp::read_from_bytes(b).unwrap();
                expect(&mut e, "mfn()", s.mfn(), 0x123_4567);
                expect(&mut e, "src_mfn()", s.src_mfn(), 0x765_4321);
                expect(&mut e, "vcpumask()", s.vcpumask(), 0x765_4321);
                e
            },
        },
        BytesCheck {
            name: "evtchn_status_t.u.interdomain",
            c_type: "evtchn_status_t",
            c_len: "sizeof *s",
            stmt: "s->status = EVTCHNSTAT_interdomain; s->u.interdomain.dom = 7; s->u.interdomain.port = 0x1234;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = EvtchnStatus::read_from_bytes(b).unwrap();
                expect(&mut e, "remote_dom()", s.remote_dom(), 7);
                expect(&mut e, "remote_port()", s.remote_port(), 0x1234);
                let mut r = EvtchnStatus {
                    status: event_channel::EVTCHNSTAT_interdomain,
                    ..Default::default()
                };
                r.set_interdomain(7, 0x1234);
                expect_bytes(&mut e, "set_interdomain", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "evtchn_status_t.u.unbound",
            c_type: "evtchn_status_t",
            c_len: "sizeof *s",
            stmt: "s->status = EVTCHNSTAT_unbound; s->u.unbound.dom = 0x7ff0;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = EvtchnStatus::read_from_bytes(b).unwrap();
                expect(&mut e, "remote_dom()", s.remote_dom(), 0x7ff0);
                let mut r =
                    EvtchnStatus { status: event_channel::EVTCHNSTAT_unbound, ..Default::default() };
                r.set_unbound(0x7ff0);
                expect_bytes(&mut e, "set_unbound", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "evtchn_status_t.u.virq",
            c_type: "evtchn_status_t",
            c_len: "sizeof *s",
            stmt: "s->status = EVTCHNSTAT_virq; s->u.virq = VIRQ_CON_RING;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = EvtchnStatus::read_from_bytes(b).unwrap();
                expect(&mut e, "virq()", s.virq(), xen::VIRQ_CON_RING);
                expect(&mut e, "pirq()", s.pirq(), xen::VIRQ_CON_RING);
                let mut r =
                    EvtchnStatus { status: event_channel::EVTCHNSTAT_virq, ..Default::default() };
                r.set_irq(xen::VIRQ_CON_RING);
                expect_bytes(&mut e, "set_irq", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "gnttab_copy_t.{source,dest}.u",
            c_type: "gnttab_copy_t",
            c_len: "sizeof *s",
            stmt: "s->source.u.ref = 0x11223344; s->source.domid = 3; s->source.offset = 0x10; \
                   s->dest.u.gmfn = 0x123456789ULL; s->dest.domid = DOMID_SELF; s->len = 0x100; \
                   s->flags = GNTCOPY_source_gref;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = GnttabCopy::read_from_bytes(b).unwrap();
                expect(&mut e, "source.gref()", s.source.gref(), 0x1122_3344);
                expect(&mut e, "dest.gmfn()", s.dest.gmfn(), 0x1_2345_6789);
                let mut r = GnttabCopy::new_zeroed();
                r.source.set_gref(0x1122_3344);
                r.source.domid = 3;
                r.source.offset = 0x10;
                r.dest.u = 0x1_2345_6789;
                r.dest.domid = xen::DOMID_SELF;
                r.len = 0x100;
                r.flags = grant_table::GNTCOPY_source_gref;
                expect_bytes(&mut e, "set_gref + fields", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "grant_entry_v2_t.sub_page",
            c_type: "grant_entry_v2_t",
            c_len: "sizeof *s",
            stmt: "s->sub_page.hdr.flags = GTF_permit_access | GTF_sub_page; s->sub_page.hdr.domid = 5; \
                   s->sub_page.page_off = 0x100; s->sub_page.length = 0x200; s->sub_page.frame = 0xabcdef;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = GrantEntryV2::read_from_bytes(b).unwrap();
                let flags = grant_table::GTF_permit_access | grant_table::GTF_sub_page;
                expect(&mut e, "flags()", s.flags(), flags);
                expect(&mut e, "domid()", s.domid(), 5);
                expect(&mut e, "page_off()", s.page_off(), 0x100);
                expect(&mut e, "length()", s.length(), 0x200);
                expect(&mut e, "frame()", s.frame(), 0xab_cdef);
                e
            },
        },
        BytesCheck {
            name: "grant_entry_v2_t.transitive",
            c_type: "grant_entry_v2_t",
            c_len: "sizeof *s",
            stmt: "s->transitive.hdr.flags = GTF_transitive; s->transitive.trans_domid = 9; \
                   s->transitive.gref = 0x4321;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = GrantEntryV2::read_from_bytes(b).unwrap();
                expect(&mut e, "flags()", s.flags(), grant_table::GTF_transitive);
                expect(&mut e, "trans_domid()", s.trans_domid(), 9);
                expect(&mut e, "trans_gref()", s.trans_gref(), 0x4321);
                e
            },
        },
        BytesCheck {
            name: "netif_extra_info_t.u.gso",
            c_type: "netif_extra_info_t",
            c_len: "sizeof *s",
            stmt: "s->type = XEN_NETIF_EXTRA_TYPE_GSO; s->u.gso.size = 1448; \
                   s->u.gso.type = XEN_NETIF_GSO_TYPE_TCPV6; s->u.gso.features = 0x55aa;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = NetifExtraInfo::read_from_bytes(b).unwrap();
                expect(&mut e, "gso_size()", s.gso_size(), 1448);
                expect(&mut e, "gso_type()", s.gso_type(), io::netif::XEN_NETIF_GSO_TYPE_TCPV6);
                expect(&mut e, "gso_features()", s.gso_features(), 0x55aa);
                let mut r = NetifExtraInfo {
                    r#type: io::netif::XEN_NETIF_EXTRA_TYPE_GSO,
                    ..Default::default()
                };
                r.set_gso(1448, io::netif::XEN_NETIF_GSO_TYPE_TCPV6, 0x55aa);
                expect_bytes(&mut e, "set_gso", r.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "netif_extra_info_t.u.mcast",
            c_type: "netif_extra_info_t",
            c_len: "sizeof *s",
            stmt: "static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}; \
                   s->type = XEN_NETIF_EXTRA_TYPE_MCAST_ADD; memcpy(s->u.mcast.addr, mac, 6);",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = NetifExtraInfo::read_from_bytes(b).unwrap();
                expect(&mut e, "mcast_addr()", s.mcast_addr(), [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
                e
            },
        },
        BytesCheck {
            name: "SHARED_RING_INIT",
            c_type: "struct blkif_sring",
            c_len: "offsetof(struct blkif_sring, ring)",
            stmt: "memset(s, 0xa5, sizeof *s); SHARED_RING_INIT(s);",
            covers: &["io::ring::SharedRingHeader::INIT"],
            check: |b| {
                let mut e = vec![];
                expect_bytes(&mut e, "SharedRingHeader::INIT", SharedRingHeader::INIT.as_bytes(), b);
                e
            },
        },
        BytesCheck {
            name: "TI_SET_DPL/TI_SET_IF",
            c_type: "trap_info_t",
            c_len: "sizeof *s",
            stmt: "s->vector = 14; TI_SET_DPL(s, 3); TI_SET_IF(s, 1); s->cs = FLAT_KERNEL_CS; \
                   s->address = 0xffff800000001234UL; \
                   if (TI_GET_DPL(s) != 3 || !TI_GET_IF(s)) s->vector = 0xff;",
            covers: &[],
            check: |b| {
                let mut e = vec![];
                let s = TrapInfo::read_from_bytes(b).unwrap();
                expect(&mut e, "dpl()", s.dpl(), 3);
                expect(&mut e, "masks_events()", s.masks_events(), true);
                let mut r = TrapInfo {
                    vector: 14,
                    cs: arch_x86_64::FLAT_KERNEL_CS,
                    address: 0xffff_8000_0000_1234,
                    ..Default::default()
                };
                r.set_dpl(3);
                r.set_if(true);
                expect_bytes(&mut e, "set_dpl + set_if", r.as_bytes(), b);
                e
            },
        },
    ]
}

// ------------------------------------------------------------------------------------------------
// The C side.
// ------------------------------------------------------------------------------------------------

const C_PRELUDE: &str = r#"/* Generated by hypercall-abi/tests/c_headers.rs. */
/* Without __XEN__/__XEN_TOOLS__, xen-compat.h defaults the interface version to 0 (the 3.0
 * compat ABI: __HYPERVISOR_sched_op = 6, no GNTTABOP_set_version, ...). Guests built today ask
 * for the latest version; this expands lazily, after xen-compat.h defines it. */
#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__
/* sysctl.h and domctl.h are tools interfaces: they refuse to be included without this. */
#define __XEN_TOOLS__ 1
#include <errno.h> /* makes io/xs_wire.h define xsd_errors[] */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/elfnote.h>
#include <xen/event_channel.h>
#include <xen/memory.h>
#include <xen/grant_table.h>
#include <xen/vcpu.h>
#include <xen/callback.h>
#include <xen/physdev.h>
#include <xen/sysctl.h>
#include <xen/domctl.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/xs_wire.h>
#include <xen/io/console.h>
#include <xen/io/xenbus.h>

#define KIND(x) _Generic((x), \
    signed char: 'i', short: 'i', int: 'i', long: 'i', long long: 'i', \
    unsigned char: 'u', unsigned short: 'u', unsigned int: 'u', unsigned long: 'u', \
    unsigned long long: 'u', default: 'x')
#define TYPE(key, T, size) \
    printf("S %s %zu %zu %c\n", key, (size_t)(size), (size_t)_Alignof(T), KIND(*(T *)0))
#define FIELD(key, T, m) \
    printf("F %s %s %zu %zu %c\n", key, #m, (size_t)offsetof(T, m), \
           (size_t)sizeof(((T *)0)->m), KIND(((T *)0)->m))
#define INT(key, expr) do { \
    if ((expr) < 0) printf("C %s %lld\n", key, (long long)(expr)); \
    else printf("C %s %llu\n", key, (unsigned long long)(expr)); } while (0)
#define LINE(key, ...) do { printf("T %s\t", key); printf(__VA_ARGS__); printf("\n"); } while (0)

static void dump(const char *name, const void *p, size_t n)
{
    const unsigned char *b = p;
    printf("B %s ", name);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

int main(void)
{
"#;

fn c_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn c_program(types: &[TypeCheck], consts: &[ConstCheck], bytes: &[BytesCheck]) -> String {
    let mut c = String::from(C_PRELUDE);
    for t in types {
        let key = c_string(&t.key);
        let size = t
            .c_size
            .map_or_else(|| format!("sizeof({})", t.c_type), str::to_string);
        writeln!(c, "    TYPE({key}, {}, {size});", t.c_type).unwrap();
        for f in &t.fields {
            writeln!(c, "    FIELD({key}, {}, {});", t.c_type, f.c).unwrap();
        }
    }
    for k in consts {
        let key = c_string(&k.key);
        if k.c.starts_with('{') {
            writeln!(c, "    {}", k.c.replace("KEY", &key)).unwrap();
        } else {
            match k.rust {
                Val::Int(_) => writeln!(c, "    INT({key}, {});", k.c).unwrap(),
                Val::Lines(_) => writeln!(c, "    LINE({key}, \"%s\", {});", k.c).unwrap(),
            }
        }
    }
    for b in bytes {
        writeln!(
            c,
            "    {{ static {ty} v; {ty} *s = &v; memset(s, 0, sizeof *s); {{ {stmt} }} dump({name}, s, {len}); }}",
            ty = b.c_type,
            stmt = b.stmt,
            name = c_string(b.name),
            len = b.c_len,
        )
        .unwrap();
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// Where the `xen/` public headers live (`XEN_PUBLIC_INCLUDE` overrides `/usr/include`).
fn include_dir() -> PathBuf {
    std::env::var_os("XEN_PUBLIC_INCLUDE")
        .map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from)
}

/// Compiles and runs the C program, returning its output.
fn run_c(program: &str) -> String {
    let inc = include_dir();
    let xen_h = inc.join("xen/xen.h");
    assert!(
        xen_h.exists(),
        "{} is missing: the Xen public headers are the specification this test checks against. \
         Run `make test` (it installs libxen-dev), or `apt-get install libxen-dev`, or point \
         XEN_PUBLIC_INCLUDE at a directory containing xen/xen.h.",
        xen_h.display()
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "hypercall-abi-c-headers-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&src, program).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror=implicit-function-declaration",
            "-I",
        ])
        .arg(&inc)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "C program {} failed to compile:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "C program {} failed: {:?}",
        exe.display(),
        run.status
    );
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(run.stdout).unwrap()
}

#[derive(Default)]
struct COutput {
    /// key -> (size, align, kind)
    types: BTreeMap<String, (usize, usize, char)>,
    /// (key, member) -> (offset, size, kind)
    fields: BTreeMap<(String, String), (usize, usize, char)>,
    ints: BTreeMap<String, i128>,
    lines: BTreeMap<String, Vec<String>>,
    bytes: BTreeMap<String, Vec<u8>>,
}

fn parse(out: &str) -> COutput {
    let mut c = COutput::default();
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap();
        match tag {
            "S" => {
                let p: Vec<&str> = rest.split(' ').collect();
                let kind = p[3].chars().next().unwrap();
                c.types.insert(
                    p[0].into(),
                    (p[1].parse().unwrap(), p[2].parse().unwrap(), kind),
                );
            }
            "F" => {
                let p: Vec<&str> = rest.split(' ').collect();
                let kind = p[4].chars().next().unwrap();
                let v = (p[2].parse().unwrap(), p[3].parse().unwrap(), kind);
                c.fields.insert((p[0].into(), p[1].into()), v);
            }
            "C" => {
                let (k, v) = rest.rsplit_once(' ').unwrap();
                c.ints.insert(k.into(), v.parse().unwrap());
            }
            "T" => {
                let (k, v) = rest.split_once('\t').unwrap();
                c.lines.entry(k.into()).or_default().push(v.into());
            }
            "B" => {
                let (k, hex) = rest.rsplit_once(' ').unwrap();
                let b = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                c.bytes.insert(k.into(), b);
            }
            _ => panic!("unexpected C output line {line:?}"),
        }
    }
    c
}

/// Every disagreement between the Rust definitions and the C output.
fn mismatches(
    types: &[TypeCheck],
    consts: &[ConstCheck],
    bytes: &[BytesCheck],
    c: &COutput,
) -> Vec<String> {
    let mut errs = Vec::new();
    for t in types {
        let name = t.c_type;
        match c.types.get(&t.key) {
            None => errs.push(format!("{name} ({}): no C output", t.key)),
            Some(&(size, align, kind)) => {
                if size != t.size {
                    errs.push(format!("{name}: size rust={} C={size}", t.size));
                }
                // A ring header is a prefix of `struct NAME_sring`, whose alignment depends on the
                // protocol's entries: only whole types are compared.
                if align != t.align && t.c_size.is_none() {
                    errs.push(format!("{name}: align rust={} C={align}", t.align));
                }
                if kind != 'x' && kind != t.kind {
                    errs.push(format!("{name}: integer kind rust={} C={kind}", t.kind));
                }
            }
        }
        for f in &t.fields {
            let what = format!("{name}.{}", f.c);
            match c.fields.get(&(t.key.clone(), f.c.to_string())) {
                None => errs.push(format!("{what}: no C output")),
                Some(&(offset, size, kind)) => {
                    if offset != f.offset {
                        errs.push(format!("{what}: offset rust={} C={offset}", f.offset));
                    }
                    if size != f.size {
                        errs.push(format!("{what}: size rust={} C={size}", f.size));
                    }
                    // C integers must keep their signedness; guest handles and unions are
                    // represented as unsigned words or arrays, so only C integers are compared.
                    if kind != 'x' && kind != f.kind {
                        errs.push(format!("{what}: integer kind rust={} C={kind}", f.kind));
                    }
                }
            }
        }
        // The C fields plus the explicit padding must tile the struct exactly.
        if !t.fields.is_empty() {
            let mut spans: Vec<(usize, usize, &str)> = t
                .fields
                .iter()
                .map(|f| (f.offset, f.size, f.rust))
                .collect();
            spans.extend(t.pads.iter().map(|&(n, o, s)| (o, s, n)));
            spans.sort();
            let mut end = 0;
            for (off, size, n) in spans {
                if off != end {
                    errs.push(format!(
                        "{name} ({}): field {n} at {off}, expected {end}",
                        t.key
                    ));
                }
                end = off + size;
            }
            if end != t.size {
                errs.push(format!(
                    "{name} ({}): fields end at {end}, size {}",
                    t.key, t.size
                ));
            }
        }
    }
    for k in consts {
        let what = if k.key.starts_with('<') {
            format!("{} (C: {})", k.key, k.c)
        } else {
            format!("constant {} (C: {})", k.key, k.c)
        };
        match &k.rust {
            Val::Int(r) => match c.ints.get(&k.key) {
                None => errs.push(format!("{what}: no C output")),
                Some(v) if v != r => errs.push(format!("{what}: rust={r} C={v}")),
                Some(_) => {}
            },
            Val::Lines(r) => match c.lines.get(&k.key) {
                None => errs.push(format!("{what}: no C output")),
                Some(v) if v != r => errs.push(format!("{what}: rust={r:?} C={v:?}")),
                Some(_) => {}
            },
        }
    }
    for b in bytes {
        match c.bytes.get(b.name) {
            None => errs.push(format!("{}: no C output", b.name)),
            Some(data) => {
                for e in (b.check)(data) {
                    errs.push(format!("{}: {e}", b.name));
                }
            }
        }
    }
    errs
}

#[test]
fn c_headers_match() {
    let types = type_checks();
    let consts = const_checks();
    let bytes = bytes_checks();
    let program = c_program(&types, &consts, &bytes);
    let c = parse(&run_c(&program));
    let errs = mismatches(&types, &consts, &bytes, &c);
    let nfields: usize = types.iter().map(|t| t.fields.len()).sum();
    eprintln!(
        "checked against C: {} types, {} fields, {} constants/expressions, {} union byte checks",
        types.len(),
        nfields,
        consts.len(),
        bytes.len()
    );
    assert!(
        errs.is_empty(),
        "{} mismatches with the C headers:\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

// ------------------------------------------------------------------------------------------------
// Coverage: every public item of the crate is in the lists above.
// ------------------------------------------------------------------------------------------------

/// Public items found in the sources, as coverage keys.
#[derive(Default, Debug)]
struct Scanned {
    types: BTreeSet<String>,
    fields: BTreeSet<String>,
    consts: BTreeSet<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier at the start of `s` (including a leading `r#`).
fn ident(s: &str) -> Option<&str> {
    let body = s.strip_prefix("r#").unwrap_or(s);
    let n = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let n = n + (s.len() - body.len());
    (n > s.len() - body.len()).then(|| &s[..n])
}

fn scan(src: &Path) -> Scanned {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Scanned::default();
    for file in files {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let module = rel.to_string_lossy().replace('/', "::");
        let prefix = match module.as_str() {
            "lib" => String::new(),
            m => format!("{m}::"),
        };
        let text = std::fs::read_to_string(&file).unwrap();
        // What a top-level `{` opened: a struct or enum body, an impl, or something else.
        enum Block {
            Struct(String),
            Enum(String),
            Impl(String),
            Other,
        }
        let mut block: Option<Block> = None;
        for line in text.lines() {
            if line.starts_with("#[cfg(test)]") {
                break; // unit tests are not part of the ABI
            }
            if line.starts_with('}') {
                block = None;
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") || trimmed.starts_with("#[") {
                continue;
            }
            if block.is_none() {
                if let Some(rest) = line.strip_prefix("pub struct ") {
                    let name = ident(rest).unwrap().to_string();
                    found.types.insert(format!("{prefix}{name}"));
                    if line.ends_with('{') {
                        block = Some(Block::Struct(name));
                    }
                } else if let Some(rest) = line.strip_prefix("pub enum ") {
                    let name = ident(rest).unwrap().to_string();
                    block = Some(Block::Enum(name));
                } else if let Some(rest) = line.strip_prefix("pub type ") {
                    found
                        .types
                        .insert(format!("{prefix}{}", ident(rest).unwrap()));
                } else if let Some(rest) = line.strip_prefix("pub const ") {
                    if !rest.starts_with("fn ") {
                        found
                            .consts
                            .insert(format!("{prefix}{}", ident(rest).unwrap()));
                    }
                } else if let Some(rest) = line.strip_prefix("impl ") {
                    let name = ident(rest).unwrap_or("").to_string();
                    let plain = rest.strip_prefix(name.as_str()).is_some_and(|r| r == " {");
                    block = Some(if plain {
                        Block::Impl(name)
                    } else {
                        Block::Other
                    });
                } else if line.ends_with('{') && !line.starts_with(' ') {
                    block = Some(Block::Other);
                }
                continue;
            }
            match &block {
                Some(Block::Struct(name)) => {
                    let field = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
                    if let Some(f) = ident(field) {
                        if field[f.len()..].trim_start().starts_with(':') {
                            found.fields.insert(format!("{prefix}{name}.{f}"));
                        }
                    }
                }
                Some(Block::Enum(name)) => {
                    if let Some(v) = ident(trimmed) {
                        let rest = trimmed[v.len()..].trim_start();
                        if rest.starts_with('=') || rest.starts_with(',') {
                            found.consts.insert(format!("{prefix}{name}::{v}"));
                        }
                    }
                }
                Some(Block::Impl(name)) => {
                    if let Some(rest) = trimmed.strip_prefix("pub const ") {
                        if !rest.starts_with("fn ") && line.starts_with("    pub") {
                            found
                                .consts
                                .insert(format!("{prefix}{name}::{}", ident(rest).unwrap()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn every_public_item_is_checked() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = scan(&src);
    assert!(
        found.types.contains("xen::StartInfo"),
        "scanner found no StartInfo: {found:?}"
    );
    assert!(
        found.fields.contains("xen::StartInfo.nr_pages"),
        "scanner missed fields"
    );
    assert!(
        found.consts.contains("errno::Errno::EINVAL"),
        "scanner missed enum variants"
    );
    assert!(
        found.consts.contains("errno::Errno::EWOULDBLOCK"),
        "scanner missed impl consts"
    );

    let types = type_checks();
    let consts = const_checks();
    let bytes = bytes_checks();
    let checked_types: BTreeSet<String> = types.iter().map(|t| t.key.clone()).collect();
    let checked_fields: BTreeSet<String> = types
        .iter()
        .flat_map(|t| {
            let names = t
                .fields
                .iter()
                .map(|f| f.rust)
                .chain(t.pads.iter().map(|p| p.0));
            names.map(move |n| format!("{}.{n}", t.key))
        })
        .collect();
    let mut checked_consts: BTreeSet<String> = consts.iter().map(|k| k.key.clone()).collect();
    checked_consts.extend(
        bytes
            .iter()
            .flat_map(|b| b.covers.iter().map(|s| s.to_string())),
    );
    let exempt: BTreeMap<&str, &str> = EXEMPT.iter().copied().collect();

    let mut errs = Vec::new();
    for t in &found.types {
        if !checked_types.contains(t) && !exempt.contains_key(t.as_str()) {
            errs.push(format!(
                "type {t} is not checked against C (add it to type_checks)"
            ));
        }
    }
    for f in &found.fields {
        if !checked_fields.contains(f) && !exempt.contains_key(f.as_str()) {
            errs.push(format!(
                "field {f} is not checked against C (add it to type_checks)"
            ));
        }
    }
    for k in &found.consts {
        if !checked_consts.contains(k) && !exempt.contains_key(k.as_str()) {
            errs.push(format!(
                "constant {k} is not checked against C (add it to const_checks)"
            ));
        }
    }
    // The lists must not name things that no longer exist, nor exempt checked items.
    for t in checked_types.difference(&found.types) {
        errs.push(format!(
            "type_checks names {t}, which the scan of src/ did not find"
        ));
    }
    for f in checked_fields.difference(&found.fields) {
        errs.push(format!(
            "type_checks names field {f}, which the scan of src/ did not find"
        ));
    }
    for k in checked_consts.iter().filter(|k| !k.starts_with('<')) {
        if !found.consts.contains(k) {
            errs.push(format!(
                "const_checks names {k}, which the scan of src/ did not find"
            ));
        }
    }
    for (item, reason) in EXEMPT {
        let known = found.types.contains(*item)
            || found.fields.contains(*item)
            || found.consts.contains(*item);
        if !known {
            errs.push(format!("exemption for unknown item {item} ({reason})"));
        }
        if checked_types.contains(*item) || checked_consts.contains(*item) {
            errs.push(format!("{item} is both checked and exempt"));
        }
    }
    eprintln!(
        "coverage: {} types, {} fields, {} constants/variants in src/; {} exempt",
        found.types.len(),
        found.fields.len(),
        found.consts.len(),
        EXEMPT.len()
    );
    assert!(
        errs.is_empty(),
        "{} coverage problems:\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

// ------------------------------------------------------------------------------------------------
// Sub-op pairings: each multiplexed command with the argument type its header comment names.
// ------------------------------------------------------------------------------------------------

/// One `impl <Trait> for <Type>` of the sub-op traits, with the command and argument type that
/// Xen's header pairs (the `@arg == ...` / `arg == ...` comment, or the struct declared after the
/// `#define`).
struct PairCheck {
    /// `event_channel::EvtchnOpArg for EvtchnSend`.
    key: String,
    /// `<Type as Trait>::CMD`.
    cmd: i128,
    size: usize,
    c_cmd: &'static str,
    c_type: &'static str,
}

macro_rules! pairs {
    ($($m:ident::$tr:ident { $($ty:ident => $ccmd:literal, $cty:literal;)* })*) => {
        vec![$($(PairCheck {
            key: format!("{}::{} for {}", stringify!($m), stringify!($tr), stringify!($ty)),
            cmd: <$m::$ty as $m::$tr>::CMD as i128,
            size: size_of::<$m::$ty>(),
            c_cmd: $ccmd,
            c_type: $cty,
        }),*),*]
    };
}

fn pair_checks() -> Vec<PairCheck> {
    pairs! {
        event_channel::EvtchnOpArg {
            EvtchnBindInterdomain => "EVTCHNOP_bind_interdomain", "evtchn_bind_interdomain_t";
            EvtchnBindVirq => "EVTCHNOP_bind_virq", "evtchn_bind_virq_t";
            EvtchnBindPirq => "EVTCHNOP_bind_pirq", "evtchn_bind_pirq_t";
            EvtchnClose => "EVTCHNOP_close", "evtchn_close_t";
            EvtchnSend => "EVTCHNOP_send", "evtchn_send_t";
            EvtchnStatus => "EVTCHNOP_status", "evtchn_status_t";
            EvtchnAllocUnbound => "EVTCHNOP_alloc_unbound", "evtchn_alloc_unbound_t";
            EvtchnBindIpi => "EVTCHNOP_bind_ipi", "evtchn_bind_ipi_t";
            EvtchnBindVcpu => "EVTCHNOP_bind_vcpu", "evtchn_bind_vcpu_t";
            EvtchnUnmask => "EVTCHNOP_unmask", "evtchn_unmask_t";
            EvtchnReset => "EVTCHNOP_reset", "evtchn_reset_t";
            EvtchnInitControl => "EVTCHNOP_init_control", "evtchn_init_control_t";
            EvtchnExpandArray => "EVTCHNOP_expand_array", "evtchn_expand_array_t";
            EvtchnSetPriority => "EVTCHNOP_set_priority", "evtchn_set_priority_t";
        }
        sched::SchedOpArg {
            SchedShutdown => "SCHEDOP_shutdown", "sched_shutdown_t";
            SchedPoll => "SCHEDOP_poll", "sched_poll_t";
            SchedRemoteShutdown => "SCHEDOP_remote_shutdown", "sched_remote_shutdown_t";
            ShutdownCode => "SCHEDOP_shutdown_code", "sched_shutdown_t";
            SchedWatchdog => "SCHEDOP_watchdog", "sched_watchdog_t";
            SchedPinOverride => "SCHEDOP_pin_override", "sched_pin_override_t";
        }
        memory::MemoryOpArg {
            IncreaseReservation => "XENMEM_increase_reservation", "struct xen_memory_reservation";
            DecreaseReservation => "XENMEM_decrease_reservation", "struct xen_memory_reservation";
            PopulatePhysmap => "XENMEM_populate_physmap", "struct xen_memory_reservation";
            CurrentReservation => "XENMEM_current_reservation", "struct xen_memory_domain";
            MaximumReservation => "XENMEM_maximum_reservation", "struct xen_memory_domain";
            MaximumGpfn => "XENMEM_maximum_gpfn", "struct xen_memory_domain";
            XenMemoryMap => "XENMEM_memory_map", "struct xen_memory_map";
            MachineMemoryMap => "XENMEM_machine_memory_map", "struct xen_memory_map";
            XenForeignMemoryMap => "XENMEM_set_memory_map", "struct xen_foreign_memory_map";
            XenMemoryExchange => "XENMEM_exchange", "struct xen_memory_exchange";
            XenMachphysMfnList => "XENMEM_machphys_mfn_list", "struct xen_machphys_mfn_list";
            XenMachphysMapping => "XENMEM_machphys_mapping", "struct xen_machphys_mapping";
            XenAddToPhysmap => "XENMEM_add_to_physmap", "struct xen_add_to_physmap";
            XenAddToPhysmapBatch => "XENMEM_add_to_physmap_batch", "struct xen_add_to_physmap_batch";
            XenRemoveFromPhysmap => "XENMEM_remove_from_physmap", "struct xen_remove_from_physmap";
            XenMemAcquireResource => "XENMEM_acquire_resource", "struct xen_mem_acquire_resource";
            XenVnumaTopologyInfo => "XENMEM_get_vnumainfo", "struct xen_vnuma_topology_info";
        }
        physdev::PhysdevOpArg {
            PhysdevEoi => "PHYSDEVOP_eoi", "struct physdev_eoi";
            PhysdevPirqEoiGmfn => "PHYSDEVOP_pirq_eoi_gmfn_v2", "struct physdev_pirq_eoi_gmfn";
            PhysdevIrqStatusQuery => "PHYSDEVOP_irq_status_query", "struct physdev_irq_status_query";
            PhysdevSetIopl => "PHYSDEVOP_set_iopl", "struct physdev_set_iopl";
            PhysdevSetIobitmap => "PHYSDEVOP_set_iobitmap", "struct physdev_set_iobitmap";
            PhysdevMapPirq => "PHYSDEVOP_map_pirq", "struct physdev_map_pirq";
            PhysdevUnmapPirq => "PHYSDEVOP_unmap_pirq", "struct physdev_unmap_pirq";
            PhysdevManagePci => "PHYSDEVOP_manage_pci_add", "struct physdev_manage_pci";
        }
        vcpu::VcpuOpArg {
            VcpuRunstateInfo => "VCPUOP_get_runstate_info", "struct vcpu_runstate_info";
            VcpuRegisterRunstateMemoryArea => "VCPUOP_register_runstate_memory_area", "struct vcpu_register_runstate_memory_area";
            VcpuSetPeriodicTimer => "VCPUOP_set_periodic_timer", "struct vcpu_set_periodic_timer";
            VcpuSetSingleshotTimer => "VCPUOP_set_singleshot_timer", "struct vcpu_set_singleshot_timer";
            VcpuRegisterVcpuInfo => "VCPUOP_register_vcpu_info", "struct vcpu_register_vcpu_info";
            VcpuGetPhysid => "VCPUOP_get_physid", "struct vcpu_get_physid";
            VcpuRegisterTimeMemoryArea => "VCPUOP_register_vcpu_time_memory_area", "struct vcpu_register_time_memory_area";
        }
        grant_table::GnttabOpArg {
            GnttabMapGrantRef => "GNTTABOP_map_grant_ref", "struct gnttab_map_grant_ref";
            GnttabUnmapGrantRef => "GNTTABOP_unmap_grant_ref", "struct gnttab_unmap_grant_ref";
            GnttabSetupTable => "GNTTABOP_setup_table", "struct gnttab_setup_table";
            GnttabDumpTable => "GNTTABOP_dump_table", "struct gnttab_dump_table";
            GnttabTransfer => "GNTTABOP_transfer", "struct gnttab_transfer";
            GnttabCopy => "GNTTABOP_copy", "struct gnttab_copy";
            GnttabQuerySize => "GNTTABOP_query_size", "struct gnttab_query_size";
            GnttabUnmapAndReplace => "GNTTABOP_unmap_and_replace", "struct gnttab_unmap_and_replace";
            GnttabSetVersion => "GNTTABOP_set_version", "struct gnttab_set_version";
            GnttabGetStatusFrames => "GNTTABOP_get_status_frames", "struct gnttab_get_status_frames";
            GnttabGetVersion => "GNTTABOP_get_version", "struct gnttab_get_version";
            GnttabSwapGrantRef => "GNTTABOP_swap_grant_ref", "struct gnttab_swap_grant_ref";
            GnttabCacheFlush => "GNTTABOP_cache_flush", "struct gnttab_cache_flush";
        }
        callback::CallbackOpArg {
            CallbackRegister => "CALLBACKOP_register", "struct callback_register";
            CallbackUnregister => "CALLBACKOP_unregister", "struct callback_unregister";
        }
        version::XenVersionArg {
            Extraversion => "XENVER_extraversion", "xen_extraversion_t";
            XenCompileInfo => "XENVER_compile_info", "xen_compile_info_t";
            Capabilities => "XENVER_capabilities", "xen_capabilities_info_t";
            Changeset => "XENVER_changeset", "xen_changeset_info_t";
            XenPlatformParameters => "XENVER_platform_parameters", "xen_platform_parameters_t";
            XenFeatureInfo => "XENVER_get_features", "xen_feature_info_t";
            GuestHandle => "XENVER_guest_handle", "xen_domain_handle_t";
            Commandline => "XENVER_commandline", "xen_commandline_t";
        }
        hvm::HvmOpArg {
            SetParam => "HVMOP_set_param", "struct xen_hvm_param";
            GetParam => "HVMOP_get_param", "struct xen_hvm_param";
        }
    }
}

/// The `(trait, type)` pairs the sources declare: the `sub_ops!(Trait: Type => CMD, ...)` lists and
/// hand-written `impl Trait for Type` of a `*Arg` trait.
fn scan_pairs(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_list: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("crate::sub_ops!(") {
                in_list = Some(rest.trim_end_matches(':').to_string());
            } else if t == ");" {
                in_list = None;
            } else if let Some(tr) = &in_list {
                if let Some((ty, _)) = t.split_once(" => ") {
                    found.insert(format!("{module}::{tr} for {ty}"));
                }
            } else if let Some(rest) = t.strip_prefix("impl ") {
                if let Some((tr, ty)) = rest.trim_end_matches(" {").split_once(" for ") {
                    if tr.ends_with("OpArg") || tr.ends_with("VersionArg") {
                        found.insert(format!("{module}::{tr} for {ty}"));
                    }
                }
            }
        }
    }
    found
}

/// Every sub-op trait impl pairs a command with the argument type Xen's header names for it: the
/// command's value and the type's size match C. A wrong pairing here would let the guest's typed
/// wrapper hand the hypervisor a buffer smaller than the command writes.
#[test]
fn sub_op_pairings_match_c() {
    let pairs = pair_checks();
    let listed: BTreeSet<String> = pairs.iter().map(|p| p.key.clone()).collect();
    let declared = scan_pairs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        declared.contains("event_channel::EvtchnOpArg for EvtchnSend"),
        "scanner found no sub-op pairs: {declared:?}"
    );
    let unlisted: Vec<_> = declared.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&declared).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "pairings declared in src but not checked: {unlisted:?}; checked but not declared: {stale:?}"
    );

    let mut c = String::from(C_PRELUDE);
    for p in &pairs {
        writeln!(
            c,
            "    printf(\"P %s %lld %zu\\n\", {}, (long long)({}), sizeof({}));",
            c_string(&p.key),
            p.c_cmd,
            p.c_type
        )
        .unwrap();
    }
    c.push_str("    return 0;\n}\n");
    let out = run_c(&c);
    let mut from_c = BTreeMap::new();
    for line in out.lines() {
        let rest = line.strip_prefix("P ").unwrap();
        let (rest, size) = rest.rsplit_once(' ').unwrap();
        let (key, cmd) = rest.rsplit_once(' ').unwrap();
        from_c.insert(
            key.to_string(),
            (cmd.parse::<i128>().unwrap(), size.parse::<usize>().unwrap()),
        );
    }
    let mut errs = Vec::new();
    for p in &pairs {
        let (cmd, size) = from_c[&p.key];
        if cmd != p.cmd {
            errs.push(format!("{}: CMD {} but {} is {cmd}", p.key, p.cmd, p.c_cmd));
        }
        if size != p.size {
            errs.push(format!(
                "{}: {} bytes but {} is {size}",
                p.key, p.size, p.c_type
            ));
        }
    }
    eprintln!("checked against C: {} sub-op pairings", pairs.len());
    assert!(errs.is_empty(), "sub-op pairings:\n  {}", errs.join("\n  "));
}
