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
//! (`traps.rs` has the machinery). This file holds the suite's machinery and the scratch pages;
//! the groups are in [`basics`] (start_info to memory_op), [`mmu`] and [`memory`] (page tables),
//! [`evtchn`] and [`evtchn_fifo`], [`grant`], [`exceptions`], [`cpu`] (the rest of CPU virtualization), [`timer`]
//! (timer, scheduler and vCPU), [`physdev`] and [`privop`] (debug registers, CR4, MSRs, IOPL).

mod basics;
mod cpu;
mod evtchn;
mod evtchn_fifo;
mod exceptions;
mod exchange;
mod grant;
mod insn;
mod memory;
mod mmu;
mod physdev;
mod privop;
mod reservation;
mod smp;
mod timer;

use core::fmt;
use core::ptr;

use guest_kernel::line::LineBuf;
use guest_kernel::paging::{make_entry, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_RW};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::xen::{
    MmuUpdate, MmuextOp, MulticallEntry, StartInfo, DOMID_SELF, MMUEXT_TLB_FLUSH_LOCAL,
    MMU_NORMAL_PT_UPDATE,
};

use crate::kernel::hypercall as hc;
use crate::kernel::shared_info;
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
    s.group("start_info", |s| basics::start_info_cases(s, si));
    s.group("xen_version", basics::xen_version_cases);
    s.group("console_io", basics::console_io_cases);
    s.group("sched_op", |s| basics::sched_op_cases(s, exit_reason));
    s.group("memory_op", |s| basics::memory_op_cases(s, si));
    s.group("mmu_update", mmu::mmu_update_cases);
    s.group("mmuext_op", mmu::mmuext_op_cases);
    s.group("update_va_mapping", mmu::update_va_mapping_cases);
    s.group("multicall", mmu::multicall_cases);
    memory::cases(&mut s, si);
    s.group("hypercall", mmu::unknown_hypercall_cases);
    s.group("evtchn", evtchn::event_channel_cases);
    s.group("grant", grant::cases);
    reservation::cases(&mut s, si);
    exchange::cases(&mut s, si);
    // These groups provoke faults and events on purpose: without handlers, the first one would
    // kill the domain, so they run only if the setup cases installed them.
    match s.handlers_ready() {
        Ok(()) => {
            exceptions::cases(&mut s);
            cpu::cases(&mut s);
            timer::cases(&mut s);
            physdev::cases(&mut s);
            privop::cases(&mut s);
        }
        Err(why) => s.case("traps.groups_skipped", format_args!("{why}")),
    }
    // Last: it switches the domain to FIFO events and back (EVTCHNOP_reset closes every port).
    s.group("evtchn_fifo", evtchn_fifo::cases);
    // After everything: it leaves vCPU 1 initialised (offline), holding a reference on the L4.
    s.group("vcpu_smp", smp::cases);
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

fn entry(op: u32, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op: op.into(),
        result: 0x5a5a,
        args,
    }
}

/// A data PTE for `mfn`, keeping only NX from the entry it replaces.
fn data_pte(mfn: u64, old: u64) -> u64 {
    make_entry(mfn, DATA_FLAGS | (old & PTE_NX))
}
