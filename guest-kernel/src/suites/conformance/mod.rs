//! The hypercall conformance suite (`suite=conformance`): one `case <name> = <values>` line per case.
//!
//! The same guest runs on Debian's Xen 4.17 and on our hypervisor; the harness diffs the case lines.
//! So a case prints only what a correct hypervisor must reproduce: return codes, `done` counts,
//! per-entry results and values read back, never machine addresses or timings. Cases are written
//! against Xen's documented semantics (`xen.h`, `xen-abi.md`) and many are negative: a bad command,
//! a bad pointer, a bad count, a batch whose k-th entry is invalid. Every case leaves the domain as
//! it found it (mappings restored, ports closed), so cases are independent of their order.
//!
//! The suite must also survive a hypervisor that answers differently: a setup step that fails is
//! printed as the case's value (`restore_failed=-38`), never a panic, and a trap the suite did not
//! expect aborts only the case (or group) it happened in, printed as `unexpected trap vector=..`
//! (`traps.rs` has the machinery). The first groups (start_info to evtchn) are in this file; the
//! exception groups are in [`exceptions`], the rest of CPU virtualization in [`cpu`], and the
//! timer, scheduler and vCPU groups in [`timer`].

mod cpu;
mod exceptions;
mod grant;
mod insn;
mod memory;
mod physdev;
mod timer;

use core::fmt;
use core::ptr;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::line::LineBuf;
use guest_kernel::paging::{make_entry, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_RW, PTE_US};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnClose, EvtchnSend,
    EvtchnStatus, EvtchnUnmask,
};
use hypercall_abi::memory::{
    CurrentReservation, MachineMemoryMap, MaximumGpfn, MaximumReservation, MemoryNoArg,
    XENMEM_current_reservation, XenMemoryDomain, XenMemoryMap,
};
use hypercall_abi::sched::{
    SCHEDOP_shutdown, SCHEDOP_yield, SchedNoArg, SchedShutdown, ShutdownCode,
};
use hypercall_abi::version::{
    Capabilities, Extraversion, GuestHandle, XENVER_extraversion, XENVER_pagesize,
    XENVER_platform_parameters, XENVER_version, XenFeatureInfo, XenPlatformParameters,
    XenVersionNoArg,
};
use hypercall_abi::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_multicall, __HYPERVISOR_sched_op,
    __HYPERVISOR_xen_version, CONSOLEIO_read, CONSOLEIO_write, MmuUpdate, MmuextOp, MulticallEntry,
    StartInfo, DOMID_SELF, MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
    MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE,
    MMU_NORMAL_PT_UPDATE, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH, VIRQ_TIMER,
};

use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::shared_info::{self, clear_bit, test_bit, Bitmap::Mask, Bitmap::Pending};
use crate::kernel::{mm, traps};

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

/// The values of one case, formatted into a line buffer (see [`values!`]).
pub type Values = LineBuf<256>;

/// Formats a case's values into a [`Values`] buffer, like `format!`.
macro_rules! values {
    ($($arg:tt)*) => {{
        let mut v = $crate::suites::conformance::Values::new();
        let _ = core::fmt::Write::write_fmt(&mut v, format_args!($($arg)*));
        v
    }};
}
pub(crate) use values;

/// `1` or `0`, how the cases print a yes/no observation.
fn flag(v: bool) -> u8 {
    v.into()
}

/// Counts and prints the cases.
pub struct Suite {
    count: u32,
    /// Name of the last case printed (reported when a group is aborted).
    last: &'static str,
    /// Return codes of the setup steps that install the trap table and the event callback.
    handlers: (i64, i64),
}

impl Suite {
    /// Prints the line of case `name`.
    pub fn case(&mut self, name: &'static str, values: fmt::Arguments<'_>) {
        self.count += 1;
        self.last = name;
        println!("case {name} = {values}");
    }

    /// Runs case `name` under a guard and prints the values `body` returns, or the unexpected
    /// trap that aborted it.
    pub fn run(&mut self, name: &'static str, mut body: impl FnMut() -> Values) {
        let mut out = Values::new();
        match traps::guarded(|| out = body()) {
            Ok(()) => self.case(name, format_args!("{out}")),
            Err(trap) => {
                recover_after_abort();
                self.case(name, format_args!("unexpected trap {trap}"));
            }
        }
    }

    /// Whether the trap table and the event callback are installed (the setup cases did it);
    /// otherwise the failed return codes, for groups that provoke faults or events to print.
    pub fn handlers_ready(&self) -> Result<(), MissingHandlers> {
        match self.handlers {
            (0, 0) => Ok(()),
            (set_trap_table, register_event) => Err(MissingHandlers {
                set_trap_table,
                register_event,
            }),
        }
    }

    /// Runs a group of cases under one guard. An unexpected trap ends the group with an extra
    /// case `<group>.aborted`, naming the last case that completed.
    fn group(&mut self, group: &'static str, mut body: impl FnMut(&mut Suite)) {
        if let Err(trap) = traps::guarded(|| body(self)) {
            recover_after_abort();
            self.count += 1;
            println!(
                "case {group}.aborted = unexpected trap {trap} after={}",
                self.last
            );
        }
    }
}

/// The setup steps that failed to install the trap table or the event callback.
#[derive(Clone, Copy, Debug)]
pub struct MissingHandlers {
    set_trap_table: i64,
    register_event: i64,
}

impl fmt::Display for MissingHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handlers_missing set_trap_table={} register_event={}",
            self.set_trap_table, self.register_event
        )
    }
}

/// Puts back what an aborted case may have left changed: upcalls masked, FPU usable, the boot
/// trap table and event callback. Return codes are ignored: this is best effort before the
/// next case, which reports its own failures.
fn recover_after_abort() {
    shared_info::set_upcall_mask(1);
    hc::fpu_taskswitch(false);
    traps::reinstall();
    traps::register_upcall();
}

/// Number of scratch pages the memory cases remap.
const SCRATCH_PAGES: usize = 8;

#[repr(C, align(4096))]
struct Scratch([[u8; 4096]; SCRATCH_PAGES]);

/// Pages only the conformance cases touch, always through raw pointers and volatile accesses,
/// because the cases change what their virtual addresses map.
static mut SCRATCH: Scratch = Scratch([[0; 4096]; SCRATCH_PAGES]);

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
    let mut s = Suite {
        count: 0,
        last: "",
        handlers: (-1, -1),
    };
    setup_cases(&mut s, si);
    s.group("start_info", |s| start_info_cases(s, si));
    s.group("xen_version", xen_version_cases);
    s.group("console_io", console_io_cases);
    s.group("sched_op", |s| sched_op_cases(s, exit_reason));
    s.group("memory_op", |s| memory_op_cases(s, si));
    s.group("mmu_update", mmu_update_cases);
    s.group("mmuext_op", mmuext_op_cases);
    s.group("update_va_mapping", update_va_mapping_cases);
    s.group("multicall", multicall_cases);
    memory::cases(&mut s, si);
    s.group("hypercall", unknown_hypercall_cases);
    s.group("evtchn", event_channel_cases);
    s.group("grant", grant::cases);
    // These groups provoke faults and events on purpose: without handlers, the first one would
    // kill the domain, so they run only if the setup cases installed them.
    match s.handlers_ready() {
        Ok(()) => {
            exceptions::cases(&mut s);
            cpu::cases(&mut s);
            timer::cases(&mut s);
            physdev::cases(&mut s);
        }
        Err(why) => s.case("traps.groups_skipped", format_args!("{why}")),
    }
    println!("conformance done: {} cases", s.count);
}

/// What every later case relies on, each printed as a case: shared_info mapped (event bits, time,
/// CR2), the boot trap table (so a fault is reported instead of killing the domain) and the
/// event callback (so an upcall never bounces to address 0).
fn setup_cases(s: &mut Suite, si: &StartInfo) {
    match shared_info::map(si) {
        Ok(_) => s.case("shared_info.map", format_args!("0")),
        Err(e) => s.case("shared_info.map", format_args!("{e}")),
    }
    let traps = traps::install();
    s.case("traps.set_trap_table", format_args!("{traps}"));
    let event = traps::register_upcall();
    s.case("callback.register_event", format_args!("{event}"));
    s.handlers = (traps, event);
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

fn memory_op_cases(s: &mut Suite, si: &StartInfo) {
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
#[derive(Clone, Copy)]
struct ScratchMap {
    va: u64,
    mfn: u64,
    pte_maddr: u64,
    pte: u64,
}

/// Scratch page `i` and its L1 entry; `None` if it is not mapped by a 4 KiB L1 entry of the
/// initial region (a hypervisor whose domain builder used superpages, say).
fn scratch(i: usize) -> Option<ScratchMap> {
    let va = scratch_va(i);
    let slot = mm::l1_slot(va)?;
    let mfn = mm::va_to_mfn(va)?;
    Some(ScratchMap {
        va,
        mfn,
        pte_maddr: slot.maddr,
        pte: slot.value,
    })
}

/// Scratch pages 0..N, or a case `<group>.setup` saying why not.
fn scratch_pages<const N: usize>(
    s: &mut Suite,
    group_setup: &'static str,
) -> Option<[ScratchMap; N]> {
    let pages: [Option<ScratchMap>; N] = core::array::from_fn(scratch);
    if pages.iter().any(Option::is_none) {
        s.case(
            group_setup,
            format_args!("failed: scratch pages not mapped by 4 KiB L1 entries"),
        );
        return None;
    }
    Some(pages.map(|p| p.expect("checked just above")))
}

fn normal(pte_maddr: u64, val: u64) -> MmuUpdate {
    MmuUpdate {
        ptr: pte_maddr | MMU_NORMAL_PT_UPDATE,
        val,
    }
}

/// One `mmuext_op` element (also used by the hostile guests).
pub(crate) fn ext(cmd: u32, arg1: u64, arg2: u64) -> MmuextOp {
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
fn restore(m: &ScratchMap) -> Restored {
    let (rc, _) = hc::mmu_update(&[normal(m.pte_maddr, data_pte(m.mfn, m.pte))], DOMID_SELF);
    flush_local();
    Restored(rc)
}

/// The return code of a restore step, printed after a case's values only when it failed
/// (` restore_failed=-38`): on a hypervisor without `mmu_update`, the case still prints its line.
#[derive(Clone, Copy, Debug)]
#[must_use]
struct Restored(i64);

impl Restored {
    /// Whether the restore step succeeded.
    fn ok(self) -> bool {
        self.0 == 0
    }

    /// The first failure of two restore steps.
    fn and(self, other: Restored) -> Restored {
        if self.0 != 0 {
            self
        } else {
            other
        }
    }
}

impl fmt::Display for Restored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            rc => write!(f, " restore_failed={rc}"),
        }
    }
}

/// A data PTE for `mfn`, keeping only NX from the entry it replaces.
fn data_pte(mfn: u64, old: u64) -> u64 {
    make_entry(mfn, DATA_FLAGS | (old & PTE_NX))
}

fn mmu_update_cases(s: &mut Suite) {
    let Some([a, b, c]) = scratch_pages(s, "mmu_update.setup") else {
        return;
    };
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
    let r = restore(&a).and(restore(&b));
    s.case(
        "mmu_update.batch_of_2",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}{r}"),
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
    let r = restore(&a);
    s.case(
        "mmu_update.map_own_l4_readonly",
        format_args!("rc={rc} done={done} reads_l4={}{r}", same as u8),
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
    let l1 = mm::l1_slot(a.va).map_or(0, |slot| slot.l1_mfn);
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
    let r = restore(&a).and(restore(&b));
    s.case(
        "mmu_update.batch_third_invalid",
        format_args!("rc={rc} done={done} a_reads={ra:#x} b_reads={rb:#x}{r}"),
    );

    // Flag bits a PV guest may not set in an L1 entry: PCD|PWT (bits 3, 4) are allowed only with
    // I/O privileges, bit 8 (global) never.
    let (rc, done) = hc::mmu_update(
        &[normal(a.pte_maddr, data_pte(a.mfn, a.pte) | (1 << 8))],
        DOMID_SELF,
    );
    let r = restore(&a);
    s.case(
        "mmu_update.global_bit",
        format_args!("rc={rc} done={done}{r}"),
    );

    // A PTE pointer with a reserved command in its low bits.
    let (rc, done) = hc::mmu_update(
        &[MmuUpdate {
            ptr: a.pte_maddr | 3,
            val: data_pte(a.mfn, a.pte),
        }],
        DOMID_SELF,
    );
    let r = restore(&a);
    s.case(
        "mmu_update.cmd_no_translate",
        format_args!("rc={rc} done={done}{r}"),
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
    let r = restore(&a);
    s.case(
        "mmu_update.foreigndom_no_such_domain",
        format_args!("rc={rc} done={done}{r}"),
    );
}

fn mmuext_op_cases(s: &mut Suite) {
    let Some([a, _, c]) = scratch_pages(s, "mmuext_op.setup") else {
        return;
    };
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
    let Some([a, b]) = scratch_pages(s, "update_va_mapping.setup") else {
        return;
    };
    poke(a.va, 0xa1);
    poke(b.va, 0xb2);

    let rc = remap_scratch(a.va, data_pte(b.mfn, a.pte), UVMF_INVLPG | UVMF_LOCAL);
    let reads = peek(a.va);
    let r = restore(&a);
    s.case(
        "update_va_mapping.invlpg",
        format_args!("rc={rc} a_reads={reads:#x}{r}"),
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
    let r = restore(&a);
    s.case(
        "update_va_mapping.multi_bad_vcpumask",
        format_args!("{rc}{r}"),
    );
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

    // Many cheap entries: Xen asks whether to stop before each (`do_multicall`) and continues
    // the multicall from there; every entry still gets its result, once.
    let version = entry(
        __HYPERVISOR_xen_version,
        [XENVER_version.into(), 0, 0, 0, 0, 0],
    );
    let mut many = alloc::vec![version; 20_000];
    for (i, e) in many.iter_mut().enumerate() {
        // Every fifth entry fails: the results show that none was skipped or run twice.
        if i % 5 == 4 {
            e.args[0] = BAD_CMD.into();
        }
    }
    // SAFETY: no entry takes a pointer.
    let rc = unsafe { hc::multicall(&mut many) };
    let mut results = alloc::collections::BTreeMap::<i64, usize>::new();
    for e in &many {
        *results.entry(e.result as i64).or_default() += 1;
    }
    let mut counts = Values::new();
    for (r, n) in &results {
        let _ = core::fmt::Write::write_fmt(&mut counts, format_args!(" {r:#x}:{n}"));
    }
    s.case(
        "multicall.many_entries",
        format_args!("rc={rc} results{counts}"),
    );
}

fn unknown_hypercall_cases(s: &mut Suite) {
    // SAFETY: hypercall 60 does not exist; it takes nothing.
    let rc = unsafe { hc::hypercall(60, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_in_page", format_args!("{rc}"));

    // SAFETY: hypercall 1000 does not exist; it takes nothing.
    let rc = unsafe { hc::raw_syscall(1000, 0, 0, 0, 0, 0) };
    s.case("hypercall.unknown_beyond_page", format_args!("{rc}"));
}

/// Event channel cases. Bits read from shared_info print as -1 if it could not be mapped
/// (`shared_info.map` says why).
fn event_channel_cases(s: &mut Suite) {
    let upcall_mask = shared_info::upcall_mask().map_or(-1, i32::from);
    s.case(
        "shared_info.upcall_mask_at_entry",
        format_args!("{upcall_mask}"),
    );

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    let a = alloc.port;
    s.case(
        "evtchn.alloc_unbound_self",
        format_args!("rc={rc} port={a}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_unbound",
        format_args!("rc={rc} status={} vcpu={}", st.status, st.vcpu),
    );

    // Sending on an unbound port is silently dropped.
    let mut send = EvtchnSend { port: a };
    let rc = hc::event_channel_op(&mut send);
    s.case(
        "evtchn.send_unbound",
        format_args!("rc={rc} pending={}", test_bit(Pending, a)),
    );

    // Loop back: bind a second port to the first, send on it, watch the first become pending.
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
        ..Default::default()
    };
    let rc = hc::event_channel_op(&mut bind);
    let b = bind.local_port;
    s.case(
        "evtchn.bind_interdomain_loopback",
        format_args!("rc={rc} port={b}"),
    );

    let mut st = status(b);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_interdomain",
        format_args!("rc={rc} status={}", st.status),
    );

    let was_masked = test_bit(Mask, a);
    let mut send = EvtchnSend { port: b };
    let rc = hc::event_channel_op(&mut send);
    let upcall_pending = shared_info::upcall_pending();
    s.case(
        "evtchn.send_loopback",
        format_args!(
            "rc={rc} remote_pending={} local_pending={} masked={was_masked} upcall_pending={upcall_pending}",
            test_bit(Pending, a),
            test_bit(Pending, b)
        ),
    );
    // Upcalls are masked here, so the event waits; consume it as the upcall handler would.
    clear_bit(Pending, a);
    shared_info::ack_upcall();

    let mut unmask = EvtchnUnmask { port: a };
    let rc = hc::event_channel_op(&mut unmask);
    s.case("evtchn.unmask", format_args!("{rc}"));

    let mut close = EvtchnClose { port: a };
    let rc_a = hc::event_channel_op(&mut close);
    let mut st = status(b);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.close_one_end",
        format_args!(
            "rc={rc_a} other_end_status_rc={rc} other_end_status={}",
            st.status
        ),
    );

    let mut close = EvtchnClose { port: b };
    let rc_b = hc::event_channel_op(&mut close);
    let mut close = EvtchnClose { port: a };
    let rc_again = hc::event_channel_op(&mut close);
    s.case(
        "evtchn.close_twice",
        format_args!("first={rc_b} second={rc_again}"),
    );

    let mut st = status(a);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_closed",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(0);
    let rc = hc::event_channel_op(&mut st);
    s.case(
        "evtchn.status_port_0",
        format_args!("rc={rc} status={}", st.status),
    );

    let mut st = status(5000);
    let rc = hc::event_channel_op(&mut st);
    s.case("evtchn.status_port_out_of_range", format_args!("{rc}"));

    let mut close = EvtchnClose { port: 5000 };
    let rc = hc::event_channel_op(&mut close);
    s.case("evtchn.close_port_out_of_range", format_args!("{rc}"));

    let mut send = EvtchnSend { port: 4095 };
    let rc = hc::event_channel_op(&mut send);
    s.case("evtchn.send_port_never_allocated", format_args!("{rc}"));

    // Xen does not check that the remote domain exists yet: the port waits for it.
    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: NO_SUCH_DOMAIN,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    let mut close = EvtchnClose { port: alloc.port };
    let rc_close = if rc == 0 {
        hc::event_channel_op(&mut close)
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
    let rc = hc::event_channel_op(&mut alloc);
    s.case(
        "evtchn.alloc_unbound_for_no_such_domain",
        format_args!("{rc}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut virq);
    let t = virq.port;
    let mut again = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc_again = hc::event_channel_op(&mut again);
    let mut close = EvtchnClose { port: t };
    let rc_close = hc::event_channel_op(&mut close);
    s.case(
        "evtchn.bind_virq_timer",
        format_args!("rc={rc} port={t} rebind={rc_again} close={rc_close}"),
    );

    let mut virq = EvtchnBindVirq {
        virq: 1000,
        vcpu: 0,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut virq);
    s.case("evtchn.bind_virq_bad_virq", format_args!("{rc}"));

    // Closed, never-valid and foreign ports.
    let mut send = EvtchnSend { port: a };
    let rc_send = hc::event_channel_op(&mut send);
    let mut unmask = EvtchnUnmask { port: a };
    let rc_unmask = hc::event_channel_op(&mut unmask);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    s.case(
        "evtchn.closed_port",
        format_args!("send={rc_send} unmask={rc_unmask} bind_interdomain={rc_bind}"),
    );
    let mut unmask = EvtchnUnmask { port: 5000 };
    let rc_unmask = hc::event_channel_op(&mut unmask);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: 5000,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    s.case(
        "evtchn.port_out_of_range",
        format_args!("unmask={rc_unmask} bind_interdomain={rc_bind}"),
    );
    let mut st = EvtchnStatus {
        dom: NO_SUCH_DOMAIN,
        port: 1,
        ..Default::default()
    };
    let rc_status = hc::event_channel_op(&mut st);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: NO_SUCH_DOMAIN,
        remote_port: 1,
        local_port: 0,
        ..Default::default()
    };
    let rc_bind = hc::event_channel_op(&mut bind);
    let mut close = EvtchnClose {
        port: bind.local_port,
    };
    let _ = if rc_bind == 0 {
        hc::event_channel_op(&mut close)
    } else {
        0
    };
    s.case(
        "evtchn.foreign_domain",
        format_args!("status={rc_status} bind_interdomain={rc_bind}"),
    );

    let mut any = EvtchnClose { port: 0 };
    // SAFETY: an unknown command touches nothing; `any` is writable anyway.
    let rc = unsafe { hc::raw::event_channel_op(BAD_CMD, hc::ptr(&raw mut any)) };
    s.case("evtchn.unknown_cmd", format_args!("{rc}"));
}

fn status(port: u32) -> EvtchnStatus {
    EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    }
}
