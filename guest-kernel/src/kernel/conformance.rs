//! The hypercall conformance suite (`suite=conformance`): one `case <name> = <values>` line per case.
//!
//! The same guest runs on Debian's Xen 4.17 and on our hypervisor; the harness diffs the case lines.
//! So a case prints only what a correct hypervisor must reproduce: return codes, `done` counts,
//! per-entry results and values read back, never machine addresses or timings. Cases are written
//! against Xen's documented semantics (`xen.h`, `xen-abi.md`) and many are negative: a bad command,
//! a bad pointer, a bad count, a batch whose k-th entry is invalid. Every case leaves the domain as
//! it found it (mappings restored, ports closed), so cases are independent of their order.

use core::fmt;
use core::ptr;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::paging::{entry_frame, make_entry, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_RW, PTE_US};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::event_channel::{
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_close,
    EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_unmask, EvtchnAllocUnbound, EvtchnBindInterdomain,
    EvtchnBindVirq, EvtchnClose, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use hypercall_abi::memory::{
    XENMEM_current_reservation, XENMEM_machine_memory_map, XENMEM_maximum_gpfn,
    XENMEM_maximum_ram_page, XENMEM_maximum_reservation, XENMEM_memory_map, XenMemoryMap,
};
use hypercall_abi::sched::{SCHEDOP_shutdown, SCHEDOP_shutdown_code, SCHEDOP_yield, SchedShutdown};
use hypercall_abi::version::{
    XENVER_capabilities, XENVER_extraversion, XENVER_get_features, XENVER_guest_handle,
    XENVER_pagesize, XENVER_platform_parameters, XENVER_version, XenCapabilitiesInfo,
    XenDomainHandle, XenExtraversion, XenFeatureInfo, XenPlatformParameters,
};
use hypercall_abi::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_multicall, __HYPERVISOR_sched_op,
    __HYPERVISOR_xen_version, CONSOLEIO_read, CONSOLEIO_write, MmuUpdate, MmuextOp, MulticallEntry,
    SharedInfo, StartInfo, DOMID_SELF, MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR,
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE,
    MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH, VIRQ_TIMER,
};

use super::hypercall::{self as hc, ptr as gp};
use super::mm;

/// A domain id that no domain has at boot (domains are numbered from 0 upwards, 77 is never
/// reached by a boot-time configuration).
const NO_SUCH_DOMAIN: u16 = 77;
/// A canonical user-half address that is never mapped in the guest: a "bad pointer".
const UNMAPPED: u64 = 0x0000_7000_0000_0000;
/// A non-canonical address.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
/// A command number no hypercall defines.
const BAD_CMD: u32 = 9999;
/// Flags of an ordinary kernel data mapping, as a PV guest writes them (Xen adds _PAGE_USER and
/// its guest-kernel software bit itself).
const DATA_FLAGS: u64 = PTE_P | PTE_RW | PTE_A | PTE_D;

/// Counts and prints the cases.
struct Suite {
    count: u32,
}

impl Suite {
    fn case(&mut self, name: &str, values: fmt::Arguments<'_>) {
        self.count += 1;
        println!("case {name} = {values}");
    }
}

/// Number of scratch pages the memory cases remap.
const SCRATCH_PAGES: usize = 4;

#[repr(C, align(4096))]
struct Scratch([[u8; 4096]; SCRATCH_PAGES]);

/// Pages only the conformance cases touch, always through raw pointers and volatile accesses,
/// because the cases change what their virtual addresses map.
static mut SCRATCH: Scratch = Scratch([[0; 4096]; SCRATCH_PAGES]);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// A page whose virtual address is remapped onto the shared_info frame.
static mut SHARED_INFO_WINDOW: Page = Page([0; 4096]);

fn scratch_va(i: usize) -> u64 {
    assert!(i < SCRATCH_PAGES);
    (&raw mut SCRATCH) as u64 + (i as u64) * 4096
}

fn peek(va: u64) -> u64 {
    // SAFETY: `va` is a scratch address (or the read-only L4 alias made by a case), mapped and
    // 8-byte aligned; volatile because its mapping is changed behind the compiler's back.
    unsafe { ptr::read_volatile(va as *const u64) }
}

fn poke(va: u64, value: u64) {
    // SAFETY: `va` is a scratch address mapped writable, 8-byte aligned, referenced by nothing else.
    unsafe { ptr::write_volatile(va as *mut u64, value) }
}

/// Runs every case, prints the summary line.
/// `exit_reason` is the SHUTDOWN_* code the kernel will shut down with afterwards (a case sets it
/// as the domain's shutdown code, and Xen then reports that code whatever the final call says).
pub fn run(si: &StartInfo, exit_reason: u32) {
    let mut s = Suite { count: 0 };
    start_info_cases(&mut s, si);
    xen_version_cases(&mut s);
    console_io_cases(&mut s);
    sched_op_cases(&mut s, exit_reason);
    memory_op_cases(&mut s, si);
    mmu_update_cases(&mut s);
    mmuext_op_cases(&mut s);
    update_va_mapping_cases(&mut s);
    multicall_cases(&mut s);
    unknown_hypercall_cases(&mut s);
    event_channel_cases(&mut s, si);
    println!("conformance done: {} cases", s.count);
}

fn start_info_cases(s: &mut Suite, si: &StartInfo) {
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

fn bit(entry: Option<u64>, mask: u64) -> i32 {
    match entry {
        Some(e) => (e & mask != 0) as i32,
        None => -1,
    }
}

fn xen_version_cases(s: &mut Suite) {
    let v = hc::xen_version::<u8>(XENVER_version, None);
    s.case("xen_version.version", format_args!("{v:#x}"));

    let mut extra: XenExtraversion = [0; 16];
    let rc = hc::xen_version(XENVER_extraversion, Some(&mut extra));
    let nul = extra.contains(&0);
    s.case(
        "xen_version.extraversion",
        format_args!("rc={rc} nul_terminated={}", nul as u8),
    );

    let mut caps: XenCapabilitiesInfo = [0; 1024];
    let rc = hc::xen_version(XENVER_capabilities, Some(&mut caps));
    let text = Cmdline::from_bytes(&caps);
    let has = text.words().any(|w| w == "xen-3.0-x86_64");
    s.case(
        "xen_version.capabilities",
        format_args!("rc={rc} xen-3.0-x86_64={}", has as u8),
    );

    let mut pp = XenPlatformParameters::default();
    let rc = hc::xen_version(XENVER_platform_parameters, Some(&mut pp));
    s.case(
        "xen_version.platform_parameters",
        format_args!("rc={rc} virt_start={:#x}", pp.virt_start),
    );

    let mut fi = XenFeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    let rc = hc::xen_version(XENVER_get_features, Some(&mut fi));
    s.case(
        "xen_version.get_features_0",
        format_args!("rc={rc} submap={:#x}", fi.submap),
    );

    let mut fi = XenFeatureInfo {
        submap_idx: 1000,
        submap: 0xdead,
    };
    let rc = hc::xen_version(XENVER_get_features, Some(&mut fi));
    s.case(
        "xen_version.get_features_bad_index",
        format_args!("rc={rc} submap={:#x}", fi.submap),
    );

    let rc = hc::xen_version::<u8>(XENVER_pagesize, None);
    s.case("xen_version.pagesize", format_args!("{rc}"));

    let mut handle: XenDomainHandle = [0xff; 16];
    let rc = hc::xen_version(XENVER_guest_handle, Some(&mut handle));
    let zero = handle.iter().all(|&b| b == 0);
    s.case(
        "xen_version.guest_handle",
        format_args!("rc={rc} all_zero={}", zero as u8),
    );

    let rc = hc::xen_version::<u8>(BAD_CMD, None);
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

fn console_io_cases(s: &mut Suite) {
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

fn sched_op_cases(s: &mut Suite, exit_reason: u32) {
    let rc = hc::sched_op::<u8>(SCHEDOP_yield, None);
    s.case("sched_op.yield", format_args!("{rc}"));

    // Sets the code a later shutdown would report, without shutting down.
    let mut arg = SchedShutdown {
        reason: exit_reason,
    };
    let rc = hc::sched_op(SCHEDOP_shutdown_code, Some(&mut arg));
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

    let rc = hc::sched_op::<u8>(BAD_CMD, None);
    s.case("sched_op.unknown_cmd", format_args!("{rc}"));
}

fn memory_op_cases(s: &mut Suite, si: &StartInfo) {
    let rc = hc::memory_op::<u8>(XENMEM_maximum_ram_page, None);
    s.case("memory_op.maximum_ram_page", format_args!("{rc:#x}"));

    let mut dom: u16 = DOMID_SELF;
    let cur = hc::memory_op(XENMEM_current_reservation, Some(&mut dom));
    s.case(
        "memory_op.current_reservation",
        format_args!(
            "{cur} equals_nr_pages={}",
            (cur as u64 == si.nr_pages) as u8
        ),
    );

    let mut dom: u16 = DOMID_SELF;
    let max = hc::memory_op(XENMEM_maximum_reservation, Some(&mut dom));
    s.case("memory_op.maximum_reservation", format_args!("{max}"));

    let mut dom: u16 = DOMID_SELF;
    let rc = hc::memory_op(XENMEM_maximum_gpfn, Some(&mut dom));
    s.case("memory_op.maximum_gpfn", format_args!("{rc:#x}"));

    let mut dom: u16 = NO_SUCH_DOMAIN;
    let rc = hc::memory_op(XENMEM_current_reservation, Some(&mut dom));
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
    let rc = hc::memory_op(XENMEM_memory_map, Some(&mut map));
    let e0 = E820Entry::read(&buf, 0);
    s.case(
        "memory_op.memory_map",
        format_args!(
            "rc={rc} nr_entries={} first=[{:#x},+{:#x}) type={}",
            map.nr_entries, e0.addr, e0.size, e0.kind
        ),
    );

    let mut buf = [0u8; 20 * 64];
    let mut map = XenMemoryMap {
        nr_entries: 64,
        buffer: gp(buf.as_mut_ptr()),
        ..Default::default()
    };
    let rc = hc::memory_op(XENMEM_machine_memory_map, Some(&mut map));
    let ram_pages: u64 = (0..(map.nr_entries.min(64) as usize))
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

    let rc = hc::memory_op::<u8>(BAD_CMD, None);
    s.case("memory_op.unknown_cmd", format_args!("{rc}"));
}

/// One e820 entry as `XENMEM_memory_map` writes it (packed: addr u64, size u64, type u32).
struct E820Entry {
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

/// A scratch page and where its L1 entry lives.
struct ScratchMap {
    va: u64,
    mfn: u64,
    pte_maddr: u64,
    pte: u64,
}

fn scratch(i: usize) -> ScratchMap {
    let va = scratch_va(i);
    let slot = mm::l1_slot(va).expect("scratch pages are mapped by 4 KiB L1 entries");
    let mfn = mm::va_to_mfn(va).expect("scratch pages lie in the initial region");
    ScratchMap {
        va,
        mfn,
        pte_maddr: slot.maddr,
        pte: slot.value,
    }
}

fn normal(pte_maddr: u64, val: u64) -> MmuUpdate {
    MmuUpdate {
        ptr: pte_maddr | MMU_NORMAL_PT_UPDATE,
        val,
    }
}

fn ext(cmd: u32, arg1: u64, arg2: u64) -> MmuextOp {
    MmuextOp {
        cmd,
        arg1,
        arg2,
        ..Default::default()
    }
}

fn flush_local() -> (i64, u32) {
    hc::mmuext_op(&[ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], DOMID_SELF)
}

/// Puts scratch page `m` back on its own frame, read-write, and flushes.
fn restore(m: &ScratchMap) {
    let (rc, _) = hc::mmu_update(&[normal(m.pte_maddr, data_pte(m.mfn, m.pte))], DOMID_SELF);
    assert_eq!(rc, 0, "restoring a scratch mapping failed");
    flush_local();
}

/// A data PTE for `mfn`, keeping only NX from the entry it replaces.
fn data_pte(mfn: u64, old: u64) -> u64 {
    make_entry(mfn, DATA_FLAGS | (old & PTE_NX))
}

fn mmu_update_cases(s: &mut Suite) {
    let (a, b, c) = (scratch(0), scratch(1), scratch(2));
    poke(a.va, 0xa1);
    poke(b.va, 0xb2);
    poke(c.va, 0xc3);

    // Two PTE updates in one batch: swap the frames behind a and b, read back, swap back.
    let swap = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
    ];
    let (rc, done) = hc::mmu_update(&swap, DOMID_SELF);
    flush_local();
    let (ra, rb) = (peek(a.va), peek(b.va));
    restore(&a);
    restore(&b);
    s.case(
        "mmu_update.batch_of_2",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}"),
    );

    let (rc, done) = hc::mmu_update(&[], DOMID_SELF);
    s.case("mmu_update.count_0", format_args!("rc={rc} done={done}"));

    // Our own L4, which is pinned and in use: read-only is fine, writable is refused.
    let l4 = mm::l4_mfn();
    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, make_entry(l4, PTE_P | PTE_A))],
        DOMID_SELF,
    );
    flush_local();
    let same = peek(a.va) == peek(mm::layout().pt_base);
    restore(&a);
    s.case(
        "mmu_update.map_own_l4_readonly",
        format_args!("rc={rc} done={done} reads_l4={}", same as u8),
    );

    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, make_entry(l4, DATA_FLAGS))],
        DOMID_SELF,
    );
    flush_local();
    let intact = peek(a.va) == 0xa1;
    s.case(
        "mmu_update.map_own_l4_writable",
        format_args!("rc={rc} done={done} a_intact={}", intact as u8),
    );

    // The L1 that maps a, mapped writable: refused as well.
    let l1 = mm::l1_slot(a.va).expect("mapped").l1_mfn;
    let (rc, done) = hc::mmu_update(
        &[normal(b.pte_maddr, make_entry(l1, DATA_FLAGS))],
        DOMID_SELF,
    );
    flush_local();
    s.case(
        "mmu_update.map_own_l1_writable",
        format_args!("rc={rc} done={done}"),
    );

    // MMU_NORMAL_PT_UPDATE aimed at an ordinary writable page: Xen performs it as a plain write.
    let (rc, done) = hc::mmu_update(&[normal(c.mfn << 12, 0x1234_5000)], DOMID_SELF);
    let c_reads = peek(c.va);
    poke(c.va, 0xc3);
    s.case(
        "mmu_update.target_writable_page",
        format_args!("rc={rc} done={done} c_reads={c_reads:#x}"),
    );

    // A batch of four whose third entry maps our own L4 writable: processing stops there.
    let batch = [
        normal(a.pte_maddr, data_pte(b.mfn, a.pte)),
        normal(b.pte_maddr, data_pte(a.mfn, b.pte)),
        normal(a.pte_maddr, make_entry(l4, DATA_FLAGS)),
        normal(b.pte_maddr, data_pte(b.mfn, b.pte)),
    ];
    let (rc, done) = hc::mmu_update(&batch, DOMID_SELF);
    flush_local();
    let (ra, rb) = (peek(a.va), peek(b.va));
    restore(&a);
    restore(&b);
    s.case(
        "mmu_update.batch_third_invalid",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}"),
    );

    // Flag bits a PV guest may not set in an L1 entry: PCD|PWT (bits 3, 4) are allowed only with
    // I/O privileges, bit 8 (global) never.
    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte) | (1 << 8))],
        DOMID_SELF,
    );
    restore(&a);
    s.case("mmu_update.global_bit", format_args!("rc={rc} done={done}"));

    // A PTE pointer with a reserved command in its low bits.
    let (rc, done) = hc::mmu_update(
        &[MmuUpdate {
            ptr: a.pte_maddr | 3,
            val: data_pte(a.mfn, a.pte),
        }],
        DOMID_SELF,
    );
    restore(&a);
    s.case(
        "mmu_update.cmd_no_translate",
        format_args!("rc={rc} done={done}"),
    );

    // MACHPHYS_UPDATE of our own frame with its own pfn: allowed, a no-op.
    let pfn = mm::mfn_to_pfn(c.mfn);
    let (rc, done) = hc::mmu_update(
        &[MmuUpdate {
            ptr: (c.mfn << 12) | MMU_MACHPHYS_UPDATE,
            val: pfn,
        }],
        DOMID_SELF,
    );
    let still = mm::mfn_to_pfn(c.mfn) == pfn;
    s.case(
        "mmu_update.machphys_own_frame",
        format_args!("rc={rc} done={done} m2p_kept={}", still as u8),
    );

    // SAFETY: an unmapped request list: -EFAULT, nothing done.
    let rc = unsafe {
        let mut done = 0u32;
        let rc = hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_mmu_update,
            UNMAPPED,
            1,
            gp(&raw mut done),
            DOMID_SELF.into(),
            0,
        );
        s.case(
            "mmu_update.bad_pointer",
            format_args!("rc={rc} done={done}"),
        );
        rc
    };
    let _ = rc;

    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte))],
        NO_SUCH_DOMAIN,
    );
    restore(&a);
    s.case(
        "mmu_update.foreigndom_no_such_domain",
        format_args!("rc={rc} done={done}"),
    );
}

fn mmuext_op_cases(s: &mut Suite) {
    let (a, c) = (scratch(0), scratch(2));
    let l4 = mm::l4_mfn();

    let (rc, done) = flush_local();
    s.case(
        "mmuext_op.tlb_flush_local",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_INVLPG_LOCAL, a.va, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.invlpg_local",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[], DOMID_SELF);
    s.case("mmuext_op.count_0", format_args!("rc={rc} done={done}"));

    let (rc, done) = hc::mmuext_op(&[ext(BAD_CMD, 0, 0)], DOMID_SELF);
    s.case("mmuext_op.unknown_cmd", format_args!("rc={rc} done={done}"));

    let batch = [
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ext(MMUEXT_INVLPG_LOCAL, a.va, 0),
        ext(BAD_CMD, 0, 0),
        ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
    ];
    let (rc, done) = hc::mmuext_op(&batch, DOMID_SELF);
    s.case(
        "mmuext_op.batch_third_invalid",
        format_args!("rc={rc} done={done}"),
    );

    // A writable data page cannot become an L1 table; a page that is not pinned cannot be unpinned;
    // the current L4 is already pinned.
    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_PIN_L1_TABLE, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.pin_l1_writable_page",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_UNPIN_TABLE, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.unpin_not_pinned",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_PIN_L4_TABLE, l4, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.pin_l4_already_pinned",
        format_args!("rc={rc} done={done}"),
    );

    // New base pointer: a data page is refused, the current L4 is accepted (a CR3 reload).
    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, c.mfn, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.new_baseptr_data_page",
        format_args!("rc={rc} done={done}"),
    );

    let (rc, done) = hc::mmuext_op(&[ext(MMUEXT_NEW_BASEPTR, l4, 0)], DOMID_SELF);
    s.case(
        "mmuext_op.new_baseptr_current_l4",
        format_args!("rc={rc} done={done}"),
    );

    let mut done = 0u32;
    // SAFETY: an unmapped op list: -EFAULT.
    let rc = unsafe {
        hc::hypercall(
            hypercall_abi::xen::__HYPERVISOR_mmuext_op,
            UNMAPPED,
            1,
            gp(&raw mut done),
            DOMID_SELF.into(),
            0,
        )
    };
    s.case("mmuext_op.bad_pointer", format_args!("rc={rc} done={done}"));
}

/// `update_va_mapping` for the cases below: they remap only scratch addresses, which no Rust
/// reference covers, or addresses the hypervisor must refuse; each case restores what it changed.
fn remap_scratch(va: u64, pte: u64, flags: u64) -> i64 {
    assert!(
        (scratch_va(0)..scratch_va(SCRATCH_PAGES - 1) + 4096).contains(&va)
            || va == NON_CANONICAL
            || va == HYPERVISOR_VIRT_START
            || va == UNMAPPED,
        "remap_scratch used on a live address"
    );
    // SAFETY: checked just above: `va` is a scratch page or an address no Rust data lives at.
    unsafe { hc::update_va_mapping(va, pte, flags) }
}

fn update_va_mapping_cases(s: &mut Suite) {
    let (a, b) = (scratch(0), scratch(1));
    poke(a.va, 0xa1);
    poke(b.va, 0xb2);

    let rc = remap_scratch(a.va, data_pte(b.mfn, a.pte), UVMF_INVLPG | UVMF_LOCAL);
    let reads = peek(a.va);
    restore(&a);
    s.case(
        "update_va_mapping.invlpg",
        format_args!("rc={rc} a_reads={reads:#x}"),
    );

    let rc = remap_scratch(a.va, data_pte(a.mfn, a.pte), UVMF_TLB_FLUSH | UVMF_LOCAL);
    let reads = peek(a.va);
    s.case(
        "update_va_mapping.tlb_flush",
        format_args!("rc={rc} a_reads={reads:#x}"),
    );

    let l4 = mm::l4_mfn();
    let rc = remap_scratch(a.va, make_entry(l4, DATA_FLAGS), UVMF_INVLPG);
    let intact = peek(a.va) == 0xa1;
    s.case(
        "update_va_mapping.own_l4_writable",
        format_args!("rc={rc} a_intact={}", intact as u8),
    );

    let rc = remap_scratch(NON_CANONICAL, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.non_canonical_va", format_args!("{rc}"));

    let rc = remap_scratch(HYPERVISOR_VIRT_START, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.hypervisor_va", format_args!("{rc}"));

    // A user-half address with no L3/L2/L1 behind it: there is no L1 entry to update.
    let rc = remap_scratch(UNMAPPED, data_pte(a.mfn, 0), UVMF_INVLPG);
    s.case("update_va_mapping.no_l1_table", format_args!("{rc}"));

    // UVMF_MULTI: the bits above the flush type are a pointer to a vCPU mask; make it bad.
    let rc = remap_scratch(a.va, data_pte(a.mfn, a.pte), UNMAPPED | UVMF_INVLPG);
    restore(&a);
    s.case("update_va_mapping.multi_bad_vcpumask", format_args!("{rc}"));
}

fn entry(op: u32, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op: op.into(),
        result: 0x5a5a,
        args,
    }
}

fn multicall_cases(s: &mut Suite) {
    let mut two = [
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_version.into(), 0, 0, 0, 0, 0],
        ),
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_pagesize.into(), 0, 0, 0, 0, 0],
        ),
    ];
    // SAFETY: both entries take no pointers.
    let rc = unsafe { hc::multicall(&mut two) };
    s.case(
        "multicall.two_queries",
        format_args!(
            "rc={rc} results={:#x},{}",
            two[0].result, two[1].result as i64
        ),
    );

    // Failures do not stop a multicall: each entry gets its own result.
    let mut mixed = [
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_version.into(), 0, 0, 0, 0, 0],
        ),
        entry(__HYPERVISOR_xen_version, [BAD_CMD.into(), 0, 0, 0, 0, 0]),
        entry(__HYPERVISOR_console_io, [BAD_CMD.into(), 0, 0, 0, 0, 0]),
        entry(__HYPERVISOR_sched_op, [SCHEDOP_yield.into(), 0, 0, 0, 0, 0]),
        entry(
            __HYPERVISOR_xen_version,
            [XENVER_extraversion.into(), UNMAPPED, 0, 0, 0, 0],
        ),
    ];
    // SAFETY: no entry takes a valid pointer; the last one's is deliberately unmapped.
    let rc = unsafe { hc::multicall(&mut mixed) };
    s.case(
        "multicall.mixed_failures",
        format_args!(
            "rc={rc} results={:#x},{},{},{},{}",
            mixed[0].result,
            mixed[1].result as i64,
            mixed[2].result as i64,
            mixed[3].result as i64,
            mixed[4].result as i64
        ),
    );

    let mut unknown = [entry(60, [0; 6]), entry(1000, [0; 6])];
    // SAFETY: unknown hypercalls take nothing.
    let rc = unsafe { hc::multicall(&mut unknown) };
    s.case(
        "multicall.unknown_ops",
        format_args!(
            "rc={rc} results={},{}",
            unknown[0].result as i64, unknown[1].result as i64
        ),
    );

    let mut inner = [entry(
        __HYPERVISOR_xen_version,
        [XENVER_version.into(), 0, 0, 0, 0, 0],
    )];
    let mut outer = [entry(
        __HYPERVISOR_multicall,
        [gp(inner.as_mut_ptr()), 1, 0, 0, 0, 0],
    )];
    // SAFETY: the nested list is live for the call.
    let rc = unsafe { hc::multicall(&mut outer) };
    s.case(
        "multicall.nested",
        format_args!(
            "rc={rc} outer={} inner_result={:#x}",
            outer[0].result as i64, inner[0].result
        ),
    );

    // SAFETY: an empty list touches nothing.
    let rc = unsafe { hc::multicall(&mut []) };
    s.case("multicall.count_0", format_args!("{rc}"));

    // SAFETY: an unmapped list: -EFAULT.
    let rc = unsafe { hc::hypercall(__HYPERVISOR_multicall, UNMAPPED, 2, 0, 0, 0) };
    s.case("multicall.bad_pointer", format_args!("{rc}"));
}

fn unknown_hypercall_cases(s: &mut Suite) {
    // SAFETY: hypercall 60 does not exist; it takes nothing.
    let rc = unsafe { hc::hypercall(60, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_in_page", format_args!("{rc}"));

    // SAFETY: hypercall 1000 does not exist; it takes nothing.
    let rc = unsafe { hc::raw_syscall(1000, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_beyond_page", format_args!("{rc}"));
}

/// The shared_info page, mapped over `SHARED_INFO_WINDOW` once.
fn shared_info(si: &StartInfo) -> *mut SharedInfo {
    let va = (&raw mut SHARED_INFO_WINDOW) as u64;
    let frame = si.shared_info >> 12;
    let current = mm::l1_slot(va).expect("the window is mapped").value;
    if entry_frame(current) != frame {
        // SAFETY: the window page is referenced by nothing but this function's callers, which
        // only access it as shared_info through raw pointers.
        let rc = unsafe { hc::update_va_mapping(va, make_entry(frame, DATA_FLAGS), UVMF_INVLPG) };
        assert_eq!(rc, 0, "mapping shared_info failed");
    }
    va as *mut SharedInfo
}

fn test_bit(words: *const u64, port: u32) -> u8 {
    // SAFETY: `words` points at a 64-word event bitmap in shared_info and port < 4096.
    let w = unsafe { ptr::read_volatile(words.add((port / 64) as usize)) };
    (w >> (port % 64) & 1) as u8
}

fn clear_bit(words: *mut u64, port: u32) {
    // SAFETY: as for test_bit; shared_info bitmaps are updated by the guest for its own ports.
    unsafe {
        let p = words.add((port / 64) as usize);
        ptr::write_volatile(p, ptr::read_volatile(p) & !(1u64 << (port % 64)));
    }
}

fn event_channel_cases(s: &mut Suite, si: &StartInfo) {
    let sh = shared_info(si);
    // SAFETY: `sh` maps shared_info (just established); field addresses only, no references.
    let (pending, mask, v0) = unsafe {
        (
            (&raw mut (*sh).evtchn_pending).cast::<u64>(),
            (&raw mut (*sh).evtchn_mask).cast::<u64>(),
            &raw mut (*sh).vcpu_info[0],
        )
    };
    // SAFETY: reading vcpu_info[0] of our own shared_info.
    let upcall_mask = unsafe { ptr::read_volatile(&raw const (*v0).evtchn_upcall_mask) };
    s.case(
        "shared_info.upcall_mask_at_entry",
        format_args!("{upcall_mask}"),
    );

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(EVTCHNOP_alloc_unbound, &mut alloc);
    let a = alloc.port;
    s.case(
        "evtchn.alloc_unbound_self",
        format_args!("rc={rc} port={a}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case(
        "evtchn.status_unbound",
        format_args!("rc={rc} status={} vcpu={}", st.status, st.vcpu),
    );

    // Sending on an unbound port is silently dropped.
    let mut send = EvtchnSend { port: a };
    let rc = hc::event_channel_op(EVTCHNOP_send, &mut send);
    s.case(
        "evtchn.send_unbound",
        format_args!("rc={rc} pending={}", test_bit(pending, a)),
    );

    // Loop back: bind a second port to the first, send on it, watch the first become pending.
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
        ..Default::default()
    };
    let rc = hc::event_channel_op(EVTCHNOP_bind_interdomain, &mut bind);
    let b = bind.local_port;
    s.case(
        "evtchn.bind_interdomain_loopback",
        format_args!("rc={rc} port={b}"),
    );

    let mut st = status(b);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case(
        "evtchn.status_interdomain",
        format_args!("rc={rc} status={}", st.status),
    );

    let was_masked = test_bit(mask, a);
    let mut send = EvtchnSend { port: b };
    let rc = hc::event_channel_op(EVTCHNOP_send, &mut send);
    // SAFETY: reading vcpu_info[0] of our own shared_info.
    let upcall_pending = unsafe { ptr::read_volatile(&raw const (*v0).evtchn_upcall_pending) };
    s.case(
        "evtchn.send_loopback",
        format_args!(
            "rc={rc} remote_pending={} local_pending={} masked={was_masked} upcall_pending={upcall_pending}",
            test_bit(pending, a),
            test_bit(pending, b)
        ),
    );
    clear_bit(pending, a);
    // SAFETY: clearing our own vcpu_info's selector and pending flag, as a guest's event loop does
    // (upcall_pending first, then the selector).
    unsafe {
        ptr::write_volatile(&raw mut (*v0).evtchn_upcall_pending, 0);
        ptr::write_volatile(&raw mut (*v0).evtchn_pending_sel, 0);
    }

    let mut unmask = EvtchnUnmask { port: a };
    let rc = hc::event_channel_op(EVTCHNOP_unmask, &mut unmask);
    s.case("evtchn.unmask", format_args!("{rc}"));

    let mut close = EvtchnClose { port: a };
    let rc_a = hc::event_channel_op(EVTCHNOP_close, &mut close);
    let mut st = status(b);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case(
        "evtchn.close_one_end",
        format_args!(
            "rc={rc_a} other_end_status_rc={rc} other_end_status={}",
            st.status
        ),
    );

    let mut close = EvtchnClose { port: b };
    let rc_b = hc::event_channel_op(EVTCHNOP_close, &mut close);
    let mut close = EvtchnClose { port: a };
    let rc_again = hc::event_channel_op(EVTCHNOP_close, &mut close);
    s.case(
        "evtchn.close_twice",
        format_args!("first={rc_b} second={rc_again}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case(
        "evtchn.status_closed",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(0);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case(
        "evtchn.status_port_0",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(5000);
    let rc = hc::event_channel_op(EVTCHNOP_status, &mut st);
    s.case("evtchn.status_port_out_of_range", format_args!("{rc}"));

    let mut close = EvtchnClose { port: 5000 };
    let rc = hc::event_channel_op(EVTCHNOP_close, &mut close);
    s.case("evtchn.close_port_out_of_range", format_args!("{rc}"));

    let mut send = EvtchnSend { port: 4095 };
    let rc = hc::event_channel_op(EVTCHNOP_send, &mut send);
    s.case("evtchn.send_port_never_allocated", format_args!("{rc}"));

    // Xen does not check that the remote domain exists yet: the port waits for it.
    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: NO_SUCH_DOMAIN,
        port: 0,
    };
    let rc = hc::event_channel_op(EVTCHNOP_alloc_unbound, &mut alloc);
    let mut close = EvtchnClose { port: alloc.port };
    let rc_close = if rc == 0 {
        hc::event_channel_op(EVTCHNOP_close, &mut close)
    } else {
        0
    };
    s.case(
        "evtchn.alloc_unbound_no_such_remote",
        format_args!("rc={rc} port={} close={rc_close}", alloc.port),
    );

    let mut alloc = EvtchnAllocUnbound {
        dom: NO_SUCH_DOMAIN,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(EVTCHNOP_alloc_unbound, &mut alloc);
    s.case(
        "evtchn.alloc_unbound_for_no_such_domain",
        format_args!("{rc}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(EVTCHNOP_bind_virq, &mut virq);
    let t = virq.port;
    let mut again = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc_again = hc::event_channel_op(EVTCHNOP_bind_virq, &mut again);
    let mut close = EvtchnClose { port: t };
    let rc_close = hc::event_channel_op(EVTCHNOP_close, &mut close);
    s.case(
        "evtchn.bind_virq_timer",
        format_args!("rc={rc} port={t} rebind={rc_again} close={rc_close}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: 1000,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(EVTCHNOP_bind_virq, &mut virq);
    s.case("evtchn.bind_virq_bad_virq", format_args!("{rc}"));

    let mut any = EvtchnClose { port: 0 };
    let rc = hc::event_channel_op(BAD_CMD, &mut any);
    s.case("evtchn.unknown_cmd", format_args!("{rc}"));
}

fn status(port: u32) -> EvtchnStatus {
    EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    }
}
