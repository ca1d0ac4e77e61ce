//! The first groups: start_info, `xen_version`, `console_io`, `sched_op` and `memory_op`.

use guest_kernel::cmdline::Cmdline;
use guest_kernel::paging::{PTE_P, PTE_RW, PTE_US};
use hypercall_abi::memory::{
    CurrentReservation, MachineMemoryMap, MaximumGpfn, MaximumReservation, MemoryNoArg,
    XENMEM_current_reservation, XenMemoryDomain, XenMemoryMap,
};
use hypercall_abi::sched::{SCHEDOP_shutdown, SchedNoArg, SchedShutdown, ShutdownCode};
use hypercall_abi::version::{
    Capabilities, Extraversion, GuestHandle, XENVER_extraversion, XENVER_platform_parameters,
    XenFeatureInfo, XenPlatformParameters, XenVersionNoArg,
};
use hypercall_abi::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_sched_op, __HYPERVISOR_xen_version, CONSOLEIO_read,
    CONSOLEIO_write, StartInfo, DOMID_SELF,
};

use super::*;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

pub(super) fn start_info_cases(s: &mut Suite, si: &StartInfo) {
    s.case(
        "start_info.magic",
        format_args!("{}", Cmdline::from_bytes(&si.magic).as_str()),
    );
    s.case("start_info.flags", format_args!("{:#x}", si.flags));
    s.case(
        "start_info.modules",
        format_args!("mod_start={} mod_len={}", si.mod_start, si.mod_len),
    );
    // The bootstrap page tables are mapped read-only (xen.h, start-of-day layout).
    let l4 = mm::l1_slot(si.pt_base).map(|e| e.value);
    s.case(
        "start_info.pt_base_mapping",
        format_args!("present={} writable={}", bit(l4, PTE_P), bit(l4, PTE_RW)),
    );
    // 64-bit PV kernel mappings carry _PAGE_USER and Xen's _PAGE_GUEST_KERNEL (bit 52).
    let text = mm::l1_slot(peek as fn(u64) -> u64 as usize as u64).map(|e| e.value);
    s.case(
        "start_info.kernel_text_mapping",
        format_args!(
            "user={} guest_kernel_bit={}",
            bit(text, PTE_US),
            bit(text, 1 << 52)
        ),
    );
    let p2m_ok = (0..si.nr_pages)
        .all(|pfn| mm::pfn_to_mfn(pfn).is_some_and(|mfn| mm::mfn_to_pfn(mfn) == pfn));
    s.case(
        "start_info.p2m_m2p_consistent",
        format_args!("{}", p2m_ok as u8),
    );
}

pub(super) fn bit(entry: Option<u64>, mask: u64) -> i32 {
    match entry {
        Some(e) => (e & mask != 0) as i32,
        None => -1,
    }
}

pub(super) fn xen_version_cases(s: &mut Suite) {
    let v = hc::xen_version_noarg(XenVersionNoArg::Version);
    s.case("xen_version.version", format_args!("{v:#x}"));

    let mut extra = Extraversion([0; 16]);
    let rc = hc::xen_version(&mut extra);
    let nul = extra.0.contains(&0);
    s.case(
        "xen_version.extraversion",
        format_args!("rc={rc} nul_terminated={}", nul as u8),
    );

    let mut caps = Capabilities([0; 1024]);
    let rc = hc::xen_version(&mut caps);
    let text = Cmdline::from_bytes(&caps.0);
    let has = text.words().any(|w| w == "xen-3.0-x86_64");
    s.case(
        "xen_version.capabilities",
        format_args!("rc={rc} xen-3.0-x86_64={}", has as u8),
    );

    let mut pp = XenPlatformParameters::default();
    let rc = hc::xen_version(&mut pp);
    s.case(
        "xen_version.platform_parameters",
        format_args!("rc={rc} virt_start={:#x}", pp.virt_start),
    );

    let mut fi = XenFeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    let rc = hc::xen_version(&mut fi);
    s.case(
        "xen_version.get_features_0",
        format_args!("rc={rc} submap={:#x}", fi.submap),
    );

    let mut fi = XenFeatureInfo {
        submap_idx: 1000,
        submap: 0xdead,
    };
    let rc = hc::xen_version(&mut fi);
    s.case(
        "xen_version.get_features_bad_index",
        format_args!("rc={rc} submap={:#x}", fi.submap),
    );

    let rc = hc::xen_version_noarg(XenVersionNoArg::Pagesize);
    s.case("xen_version.pagesize", format_args!("{rc}"));

    let mut handle = GuestHandle([0xff; 16]);
    let rc = hc::xen_version(&mut handle);
    let zero = handle.0.iter().all(|&b| b == 0);
    s.case(
        "xen_version.guest_handle",
        format_args!("rc={rc} all_zero={}", zero as u8),
    );

    // SAFETY: an unknown command with a null argument touches no memory.
    let rc = unsafe { hc::raw::xen_version(BAD_CMD, 0) };
    s.case("xen_version.unknown_cmd", format_args!("{rc}"));

    // SAFETY: an unmapped guest pointer: the hypervisor must fail the copy with -EFAULT.
    let rc = unsafe {
        hc::hypercall(
            __HYPERVISOR_xen_version,
            XENVER_extraversion.into(),
            UNMAPPED,
            0,
            0,
            0,
        )
    };
    s.case("xen_version.extraversion_bad_pointer", format_args!("{rc}"));

    // SAFETY: as above, for a structure-valued query.
    let rc = unsafe {
        hc::hypercall(
            __HYPERVISOR_xen_version,
            XENVER_platform_parameters.into(),
            UNMAPPED,
            0,
            0,
            0,
        )
    };
    s.case(
        "xen_version.platform_parameters_bad_pointer",
        format_args!("{rc}"),
    );
}

pub(super) fn console_io_cases(s: &mut Suite) {
    let mut msg = *b"console_io write probe\n";
    let rc = hc::console_io(CONSOLEIO_write, &mut msg);
    s.case("console_io.write", format_args!("{rc}"));

    let rc = hc::console_io(CONSOLEIO_write, &mut []);
    s.case("console_io.write_empty", format_args!("{rc}"));

    // SAFETY: an unmapped buffer: the hypervisor must fail with -EFAULT.
    let rc = unsafe {
        hc::hypercall(
            __HYPERVISOR_console_io,
            CONSOLEIO_write.into(),
            16,
            UNMAPPED,
            0,
            0,
        )
    };
    s.case("console_io.write_bad_pointer", format_args!("{rc}"));

    let mut buf = [0u8; 16];
    let rc = hc::console_io(CONSOLEIO_read, &mut buf);
    s.case("console_io.read_no_input", format_args!("{rc}"));

    let rc = hc::console_io(BAD_CMD, &mut buf);
    s.case("console_io.unknown_cmd", format_args!("{rc}"));
}

pub(super) fn sched_op_cases(s: &mut Suite, exit_reason: u32) {
    let rc = hc::sched_op_noarg(SchedNoArg::Yield);
    s.case("sched_op.yield", format_args!("{rc}"));

    // Sets the code a later shutdown would report, without shutting down.
    let mut arg = ShutdownCode(SchedShutdown {
        reason: exit_reason,
    });
    let rc = hc::sched_op(&mut arg);
    s.case("sched_op.shutdown_code", format_args!("{rc}"));

    // SAFETY: an unmapped argument: -EFAULT, and the domain keeps running.
    let rc = unsafe {
        hc::hypercall(
            __HYPERVISOR_sched_op,
            SCHEDOP_shutdown.into(),
            UNMAPPED,
            0,
            0,
            0,
        )
    };
    s.case("sched_op.shutdown_bad_pointer", format_args!("{rc}"));

    // SAFETY: an unknown command with a null argument touches no memory.
    let rc = unsafe { hc::raw::sched_op(BAD_CMD, 0) };
    s.case("sched_op.unknown_cmd", format_args!("{rc}"));
}

pub(super) fn memory_op_cases(s: &mut Suite, si: &StartInfo) {
    let rc = hc::memory_op_noarg(MemoryNoArg::MaximumRamPage);
    s.case("memory_op.maximum_ram_page", format_args!("{rc:#x}"));

    let mut dom = CurrentReservation(XenMemoryDomain { domid: DOMID_SELF });
    let cur = hc::memory_op(&mut dom);
    s.case(
        "memory_op.current_reservation",
        format_args!(
            "{cur} equals_nr_pages={}",
            (cur as u64 == si.nr_pages) as u8
        ),
    );

    let mut dom = MaximumReservation(XenMemoryDomain { domid: DOMID_SELF });
    let max = hc::memory_op(&mut dom);
    s.case("memory_op.maximum_reservation", format_args!("{max}"));

    let mut dom = MaximumGpfn(XenMemoryDomain { domid: DOMID_SELF });
    let rc = hc::memory_op(&mut dom);
    s.case("memory_op.maximum_gpfn", format_args!("{rc:#x}"));

    let mut dom = CurrentReservation(XenMemoryDomain {
        domid: NO_SUCH_DOMAIN,
    });
    let rc = hc::memory_op(&mut dom);
    s.case(
        "memory_op.current_reservation_no_such_domain",
        format_args!("{rc}"),
    );

    // SAFETY: an unmapped argument: -EFAULT.
    let rc = unsafe {
        hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_memory_op,
            XENMEM_current_reservation.into(),
            UNMAPPED,
            0,
            0,
            0,
        )
    };
    s.case(
        "memory_op.current_reservation_bad_pointer",
        format_args!("{rc}"),
    );

    // The pseudo-physical map of a PV guest: e820 entries of 20 bytes.
    let mut buf = [0u8; 20 * 8];
    let mut map = XenMemoryMap {
        nr_entries: 8,
        buffer: gp(buf.as_mut_ptr()),
        ..Default::default()
    };
    let rc = hc::memory_op(&mut map);
    let e0 = E820Entry::read(&buf, 0);
    s.case(
        "memory_op.memory_map",
        format_args!(
            "rc={rc} nr_entries={} first=[{:#x},+{:#x}) type={}",
            map.nr_entries, e0.addr, e0.size, e0.kind
        ),
    );

    let mut buf = [0u8; 20 * 64];
    let mut map = MachineMemoryMap(XenMemoryMap {
        nr_entries: 64,
        buffer: gp(buf.as_mut_ptr()),
        ..Default::default()
    });
    let rc = hc::memory_op(&mut map);
    let ram_pages: u64 = (0..(map.0.nr_entries.min(64) as usize))
        .map(|i| E820Entry::read(&buf, i))
        .filter(|e| e.kind == 1)
        .map(|e| e.size >> 12)
        .sum();
    // How many entries is the hypervisor's business (Xen splits and adds regions); the RAM it
    // reports is the machine's.
    s.case(
        "memory_op.machine_memory_map",
        format_args!("rc={rc} ram_pages={ram_pages:#x}"),
    );

    // SAFETY: an unknown command with a null argument touches no memory.
    let rc = unsafe { hc::raw::memory_op(BAD_CMD, 0) };
    s.case("memory_op.unknown_cmd", format_args!("{rc}"));
}

/// One e820 entry as `XENMEM_memory_map` writes it (packed: addr u64, size u64, type u32).
pub(super) struct E820Entry {
    addr: u64,
    size: u64,
    kind: u32,
}

impl E820Entry {
    fn read(buf: &[u8], i: usize) -> E820Entry {
        let b = &buf[i * 20..i * 20 + 20];
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        E820Entry {
            addr: u64_at(0),
            size: u64_at(8),
            kind: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
        }
    }
}
