//! Conformance cases for exceptions: the trap table, the faults and traps Xen forwards (with
//! their error codes, CR2 and bounce frame), stores to page tables, the `iret` hypercall and the
//! FPU switch (#NM).
//!
//! Each case runs under its own guard ([`Suite::run`]): a fault the case did not arm for is
//! printed as `unexpected trap ...` and the suite goes on. Faults a case does arm for go through
//! [`probe!`]: the handler records vector, error code and CR2, and execution resumes after the
//! probed instruction, so a case prints e.g. `vector=14 error=0x2 cr2_ok=1 rip_ok=1`, never the
//! addresses themselves. `traps.rs` explains the bounce frame and the `iret` frame.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_kernel::paging::{index, make_entry, PTE_A, PTE_D, PTE_P, PTE_RW};
use hypercall_abi::arch_x86_64::{TrapInfo, VGCF_in_syscall, FLAT_KERNEL_CS, FLAT_KERNEL_SS};
use hypercall_abi::xen::{__HYPERVISOR_iret, __HYPERVISOR_set_trap_table, DOMID_SELF};

use super::insn::{read_cr, store_same, ud2};
use super::{
    flag, flush_local, mm, normal, scratch, values, Restored, Suite, NON_CANONICAL, UNMAPPED,
};
use crate::kernel::boot::hypercall_page;
use crate::kernel::hypercall as hc;
use crate::kernel::shared_info;
use crate::kernel::traps::{self, probe, Probe, INT80, SOFT_DPL0, SOFT_DPL3};

/// CR0.TS: set by `fpu_taskswitch(1)`, makes the next FPU instruction raise #NM.
const CR0_TS: u64 = 1 << 3;
/// RFLAGS.IF as it appears in a bounce frame or an `iret` frame.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.CF.
const RFLAGS_CF: u64 = 1 << 0;
/// DR6.BS: the last #DB was a single step.
const DR6_BS: i64 = 1 << 14;
/// DR7: local enable of breakpoint 0.
const DR7_L0: u64 = 1;
/// DR7: breakpoint 0 on data writes.
const DR7_RW0_WRITE: u64 = 1 << 16;
/// DR7: breakpoint 0 covers 8 bytes.
const DR7_LEN0_8: u64 = 3 << 18;

/// The variable `traps.data_breakpoint` watches.
static mut BREAKPOINT_TARGET: u64 = 0;
/// A code selector with RPL 0, as Xen writes `cs` into a bounce frame for kernel mode and as an
/// `iret` frame must give it to stay in kernel mode (RPL 3 would mean "return to user mode").
const KERNEL_CS_RPL0: u64 = (FLAT_KERNEL_CS & !3) as u64;

/// Every group of this module, in order.
pub(super) fn cases(s: &mut Suite) {
    trap_table_cases(s);
    exception_cases(s);
    l1_pagetable_cases(s);
    iret_cases(s);
    fpu_cases(s);
}

/// `set_trap_table` with a table of one `entry` (plus the terminator); the return code.
fn register_one(entry: TrapInfo) -> i64 {
    let table = [entry, TrapInfo::default()];
    // SAFETY: each caller's entry points at a stub of `traps.rs` (or is refused by the hypervisor).
    unsafe { hc::set_trap_table(Some(&table)) }
}

/// Entries of the long trap tables.
const LONG_TABLE: usize = 20_000;

/// [`LONG_TABLE`] entries: the boot table over and over, then the `int $0x30` entry, then the
/// terminator; with a non-canonical address at `bad` (which comes after the `int $0x30` entry,
/// placed just before it).
fn long_table(bad: Option<usize>) -> alloc::vec::Vec<TrapInfo> {
    let base = traps::base_table();
    let real = &base[..base.len() - 1];
    let mut table: alloc::vec::Vec<TrapInfo> =
        (0..LONG_TABLE).map(|i| real[i % real.len()]).collect();
    let soft = traps::entry(SOFT_DPL3, 3);
    match bad {
        None => table[LONG_TABLE - 1] = soft,
        Some(at) => {
            table[at - 1] = soft;
            table[at].address = NON_CANONICAL;
        }
    }
    table.push(TrapInfo::default());
    table
}

fn trap_table_cases(s: &mut Suite) {
    s.run("traps.set_trap_table_bad_pointer", || {
        // SAFETY: an unmapped table: the hypervisor must fail the copy with -EFAULT.
        let rc = unsafe { hc::hypercall(__HYPERVISOR_set_trap_table, UNMAPPED, 0, 0, 0, 0) };
        values!("{rc}")
    });

    // An entry with a non-canonical address after a good one: Xen applies entries one by one,
    // so the first (a new vector) is live when the second is refused; the refused entry leaves
    // the old handler of its vector in place.
    s.run("traps.set_trap_table_non_canonical", || {
        let mut bad = traps::entry(6, 0);
        bad.address = NON_CANONICAL;
        let table = [traps::entry(SOFT_DPL3, 3), bad, TrapInfo::default()];
        // SAFETY: the first entry points at a stub; the second must be refused.
        let rc = unsafe { hc::set_trap_table(Some(&table)) };
        // SAFETY: `int $0x30` enters the new entry, or raises #GP if it was not applied.
        let first = unsafe { probe!("int $0x30") };
        let old = ud2();
        let r = traps::reinstall();
        values!(
            "rc={rc} first_entry=[{}] old_vector_6=[{old}] reinstall={r}",
            SoftInt(&first)
        )
    });

    // A code selector of 0: 64-bit PV ignores trap_info.cs (Xen fixes up its RPL and always
    // bounces with FLAT_KERNEL_CS), so the entry is accepted and works.
    s.run("traps.set_trap_table_null_cs", || {
        let mut e = traps::entry(6, 0);
        e.cs = 0;
        let rc = register_one(e);
        let p = ud2();
        let r = traps::reinstall();
        values!("rc={rc} ud2={p} reinstall={r}")
    });

    // A list of 20 000 entries (our boot table over and over, then a new vector): long enough
    // to be preempted on either hypervisor, and continued with the list advanced (Xen's
    // `do_set_trap_table`). The last entry is live after the call.
    s.run("traps.set_trap_table_long_list", || {
        let table = long_table(None);
        // SAFETY: every entry points at a stub of `traps.rs`; the list ends with a zero entry.
        let rc = unsafe { hc::set_trap_table(Some(&table)) };
        // SAFETY: `int $0x30` enters the new entry, or raises #GP if it was not applied.
        let last = unsafe { probe!("int $0x30") };
        let r = traps::reinstall();
        values!("rc={rc} last_entry=[{}] reinstall={r}", SoftInt(&last))
    });

    // The same list with a non-canonical entry near its end: -EINVAL there, after the entries
    // before it (across the continuations) were applied.
    s.run("traps.set_trap_table_long_list_bad_late", || {
        let table = long_table(Some(LONG_TABLE - 100));
        // SAFETY: every entry points at a stub of `traps.rs`, but one, which must be refused.
        let rc = unsafe { hc::set_trap_table(Some(&table)) };
        // SAFETY: as above.
        let last = unsafe { probe!("int $0x30") };
        let r = traps::reinstall();
        values!("rc={rc} entry_before=[{}] reinstall={r}", SoftInt(&last))
    });

    // A null table clears the whole virtual IDT.
    s.run("traps.set_trap_table_null_clears", || {
        // SAFETY: the table is cleared and reinstalled straight away; nothing traps in between.
        let rc = unsafe { hc::set_trap_table(None) };
        let r = traps::install();
        values!("rc={rc} reinstall={r}")
    });
}

fn exception_cases(s: &mut Suite) {
    // Xen's bounce frame for a fault in kernel mode: CS with RPL 0, the saved upcall mask (1:
    // the suite runs with upcalls masked) in bits 32..39 and its inverse in RFLAGS.IF.
    s.run("traps.invalid_opcode", || {
        let p = ud2();
        let t = p.trap.unwrap_or_default();
        values!(
            "{p} cs={:#x} saved_upcall_mask={} rflags_if={}",
            t.cs & 0xffff,
            (t.cs >> 32) & 0xff,
            flag(t.rflags & RFLAGS_IF != 0)
        )
    });

    s.run("traps.page_fault_read_unmapped", || {
        // SAFETY: a load from an unmapped address: #PF, and the handler resumes after it.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) UNMAPPED, v = out(reg) _) };
        values!("{p} cr2_ok={}", cr2_is(&p, UNMAPPED))
    });

    s.run("traps.page_fault_write_unmapped", || {
        // SAFETY: a store to an unmapped address: #PF, nothing is written.
        let p = unsafe { probe!("movq $0, ({a})", a = in(reg) UNMAPPED + 8) };
        values!("{p} cr2_ok={}", cr2_is(&p, UNMAPPED + 8))
    });

    // Xen records the faulting address in its copy of CR2 too: `mov %cr2` (emulated) reads it.
    s.run("traps.page_fault_cr2_register", || {
        // SAFETY: as above, a load from an unmapped address.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) UNMAPPED + 16, v = out(reg) _) };
        let (q, cr2) = read_cr(2);
        values!(
            "fault={} mov_cr2={q} matches={}",
            p.trap.is_some() as u8,
            flag(cr2 == Some(UNMAPPED + 16))
        )
    });

    // The bootstrap page tables are mapped read-only: a store to the L4 is a protection fault
    // (error P|W). Xen emulates stores only to L1 tables (below).
    s.run("traps.page_fault_write_readonly", || {
        let l4 = mm::layout().pt_base;
        let p = store_same(l4);
        values!("{p} cr2_ok={}", cr2_is(&p, l4))
    });

    s.run("traps.general_protection_non_canonical", || {
        // SAFETY: a load from a non-canonical address: #GP(0), nothing is read.
        let p = unsafe { probe!("mov ({a}), {v}", a = in(reg) NON_CANONICAL, v = out(reg) _) };
        values!("{p}")
    });

    s.run("traps.divide_error", || {
        // SAFETY: 1 / 0: #DE before RAX or RDX change.
        let p = unsafe {
            probe!(
                "div {d}",
                d = in(reg) 0u64,
                inout("rax") 1u64 => _,
                inout("rdx") 0u64 => _
            )
        };
        values!("{p}")
    });

    // int3 is a trap: the frame's RIP is the next instruction.
    s.run("traps.int3", || {
        // SAFETY: `int3` raises #BP and changes nothing else.
        let p = unsafe { probe!("int3") };
        values!(
            "vector={} rip_after_insn={}",
            p.trap.map_or(-1, |t| t.vector as i64),
            flag(p.rip_after_insn())
        )
    });

    // Single step: TF set by popf traps after the next instruction; Xen reports it in DR6.
    s.run("traps.single_step", || {
        // SAFETY: sets RFLAGS.TF for one `nop`; the #DB handler clears TF in the frame it returns
        // to, so nothing else is stepped.
        let p = unsafe { probe!("pushfq\norq $0x100, (%rsp)\npopfq\nnop") };
        let dr6 = hc::get_debugreg(6);
        values!(
            "vector={} rip_after_insn={} dr6_bs={}",
            p.trap.map_or(-1, |t| t.vector as i64),
            flag(p.rip_after_insn()),
            flag(dr6 >= 0 && dr6 & DR6_BS != 0)
        )
    });

    // A data breakpoint (DR0 on a variable, DR7: local enable, write, 8 bytes): the store traps
    // after it completes, and DR6 says which breakpoint fired.
    s.run("traps.data_breakpoint", || {
        let target = (&raw const BREAKPOINT_TARGET) as u64;
        let dr0 = hc::set_debugreg(0, target);
        let dr7 = hc::set_debugreg(7, DR7_L0 | DR7_RW0_WRITE | DR7_LEN0_8);
        // SAFETY: stores to a static only this case uses; the #DB handler records the trap.
        let p = unsafe { probe!("movq $1, ({t})", t = in(reg) target) };
        let dr6 = hc::get_debugreg(6);
        let clear = hc::set_debugreg(7, 0);
        let reset = hc::set_debugreg(6, 0);
        values!(
            "dr0={dr0} dr7={dr7} vector={} rip_after_insn={} dr6_b0={} clear={clear} dr6_reset={reset}",
            p.trap.map_or(-1, |t| t.vector as i64),
            flag(p.rip_after_insn()),
            flag(dr6 >= 0 && dr6 & 1 != 0)
        )
    });

    // `int $0x80` without a registered handler: Xen's int80 fast path finds none and reports a
    // #GP with the IDT-vector error code, RIP rewound to the instruction, like hardware would.
    s.run("traps.int80_no_handler", || {
        // SAFETY: a software interrupt with no handler: #GP, the handler resumes after it.
        let p = unsafe { probe!("int $0x80") };
        values!("{p}")
    });

    s.run("traps.int80_dpl3_handler", || {
        let rc = register_one(traps::entry(INT80, 3));
        // SAFETY: `int $0x80` enters the stub registered just above.
        let p = unsafe { probe!("int $0x80") };
        let r = traps::reinstall();
        values!("rc={rc} {} reinstall={r}", SoftInt(&p))
    });

    // Other software interrupts: allowed if the entry's DPL admits the guest kernel, else #GP
    // with the error code naming the IDT vector ((vector << 3) | 2).
    s.run("traps.int_n_dpl3", || {
        let rc = register_one(traps::entry(SOFT_DPL3, 3));
        // SAFETY: `int $0x30` enters the stub registered just above.
        let p = unsafe { probe!("int $0x30") };
        let r = traps::reinstall();
        values!("rc={rc} {} reinstall={r}", SoftInt(&p))
    });

    s.run("traps.int_n_dpl0", || {
        let rc = register_one(traps::entry(SOFT_DPL0, 0));
        // SAFETY: `int $0x31` is refused for DPL 0: #GP, handled.
        let p = unsafe { probe!("int $0x31") };
        let r = traps::reinstall();
        values!("rc={rc} {p} reinstall={r}")
    });

    s.run("traps.int_n_no_handler", || {
        // SAFETY: `int $0x32` has no handler: #GP, handled.
        let p = unsafe { probe!("int $0x32") };
        values!("{p}")
    });
}

/// How a software interrupt arrived: its vector and whether RIP points past `int $n`.
struct SoftInt<'a>(&'a Probe);

impl core::fmt::Display for SoftInt<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.trap {
            None => write!(f, "no_trap"),
            Some(t) => write!(f, "{t} rip_after_insn={}", flag(self.0.rip_after_insn())),
        }
    }
}

/// Whether the trap of `p` is a page fault whose CR2 (from vcpu_info) is `addr`.
fn cr2_is(p: &Probe, addr: u64) -> u8 {
    flag(p.trap.is_some_and(|t| t.cr2 == Some(addr)))
}

/// Where the L1 entry mapping scratch page 3 is mapped (read-only) in the kernel's address space,
/// with the entry's value and its machine address.
fn scratch_pte() -> Option<(u64, mm::L1Slot)> {
    let page = scratch(3)?;
    let slot = mm::l1_slot(page.va)?;
    Some((
        mm::mfn_to_va(slot.l1_mfn) + 8 * index(page.va, 1) as u64,
        slot,
    ))
}

/// Rewrites scratch page 3's L1 entry with its own value through the read-only mapping.
pub(super) fn l1_store_same() -> Probe {
    match scratch_pte() {
        Some((pte_va, _)) => store_same(pte_va),
        None => Probe {
            trap: None,
            at: 0,
            after: 1,
        },
    }
}

/// Stores to an L1 page-table page through its read-only mapping: Xen decodes the faulting
/// instruction and performs it as a validated PTE update (`ptwr_do_page_fault` in Xen's
/// `arch/x86/pv/ro-page-fault.c`); a PTE it would refuse leaves the #PF to the guest.
fn l1_pagetable_cases(s: &mut Suite) {
    s.run("traps.l1_pagetable_store_same_value", || {
        let Some((_, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let p = l1_store_same();
        let kept = scratch_pte().is_some_and(|(_, now)| now.value == slot.value);
        values!("{p} pte_kept={}", flag(kept))
    });

    // A PTE mapping the kernel's own L4 writable: refused (as `mmu_update` refuses it), so the
    // fault reaches the guest.
    s.run("traps.l1_pagetable_store_invalid_pte", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let bad = make_entry(mm::l4_mfn(), PTE_P | PTE_RW | PTE_A | PTE_D);
        // SAFETY: asks to map the L4 writable over scratch page 3 (a page only the cases use);
        // the hypervisor must refuse, and the entry is restored below if it did not.
        let p = unsafe { probe!("mov {v}, ({a})", a = in(reg) pte_va, v = in(reg) bad) };
        let now = scratch_pte().map_or(0, |(_, e)| e.value);
        let kept = now == slot.value;
        if !kept {
            hc::mmu_update(&[normal(slot.maddr, slot.value)], DOMID_SELF);
            flush_local();
        }
        values!("{p} cr2_ok={} pte_kept={}", cr2_is(&p, pte_va), flag(kept))
    });

    l1_pagetable_rmw_cases(s);
}

/// Software-available PTE bit 9: free for the guest, accepted by the validation.
const PTE_AVAIL9: u64 = 1 << 9;

/// The guest's view of scratch page 3's L1 entry, read through the read-only mapping.
fn pte_now(pte_va: u64) -> u64 {
    // SAFETY: `pte_va` is the 8-byte aligned address of an entry of a mapped L1 table.
    unsafe { core::ptr::read_volatile(pte_va as *const u64) }
}

/// Puts scratch page 3's entry back as it was (if a case changed it) and flushes.
fn put_back(slot: &mm::L1Slot, pte_va: u64) -> Restored {
    if pte_now(pte_va) == slot.value {
        return Restored(0);
    }
    let (rc, _) = hc::mmu_update(&[normal(slot.maddr, slot.value)], DOMID_SELF);
    flush_local();
    Restored(rc)
}

/// The read-modify-write instructions Linux uses on PTEs (`xchg` in `ptep_get_and_clear`,
/// `lock cmpxchg`, `lock btr`/`bts`, `lock andb`/`orb` for `clear_bit`/`set_bit`): Xen's
/// `x86_emulate` performs each as a validated update too, with the instruction's register and
/// flag results; an entry it would refuse leaves the #PF to the guest, registers unchanged.
/// Each case changes only the software bit 9 of scratch page 3's entry and puts it back.
fn l1_pagetable_rmw_cases(s: &mut Suite) {
    s.run("traps.l1_pagetable_xchg", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let old = pte_now(pte_va);
        let mut r = old | PTE_AVAIL9;
        // SAFETY: swaps in the same entry with a software bit set (the same mapping).
        let p = unsafe { probe!("xchg {v}, ({a})", a = in(reg) pte_va, v = inout(reg) r) };
        let stored = pte_now(pte_va) == old | PTE_AVAIL9;
        let back = put_back(&slot, pte_va);
        values!(
            "{p} old_returned={} stored={}{back}",
            flag(r == old),
            flag(stored)
        )
    });

    s.run("traps.l1_pagetable_xchg_invalid", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let bad = make_entry(mm::l4_mfn(), PTE_P | PTE_RW | PTE_A | PTE_D);
        let mut r = bad;
        // SAFETY: asks to map the L4 writable over scratch page 3: refused, restored if not.
        let p = unsafe { probe!("xchg {v}, ({a})", a = in(reg) pte_va, v = inout(reg) r) };
        let kept = pte_now(pte_va) == slot.value;
        let back = put_back(&slot, pte_va);
        values!(
            "{p} cr2_ok={} reg_kept={} pte_kept={}{back}",
            cr2_is(&p, pte_va),
            flag(r == bad),
            flag(kept)
        )
    });

    s.run("traps.l1_pagetable_lock_cmpxchg", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let old = pte_now(pte_va);
        // Expected value right: stored, ZF set.
        let (mut rax, mut fl) = (old, 0u64);
        // SAFETY: replaces the entry with itself plus a software bit.
        let p1 = unsafe {
            probe!(
                "lock cmpxchg {n}, ({a})\n pushfq\n popq {f}",
                a = in(reg) pte_va,
                n = in(reg) old | PTE_AVAIL9,
                f = inout(reg) fl,
                inout("rax") rax
            )
        };
        let stored = pte_now(pte_va) == old | PTE_AVAIL9;
        let (zf1, rax1) = (fl & 0x40 != 0, rax == old);
        // Expected value wrong: no store, RAX gets the entry, ZF clear.
        rax = old;
        fl = 0;
        // SAFETY: the comparison fails (the entry has bit 9 set now): nothing is stored.
        let p2 = unsafe {
            probe!(
                "lock cmpxchg {n}, ({a})\n pushfq\n popq {f}",
                a = in(reg) pte_va,
                n = in(reg) old,
                f = inout(reg) fl,
                inout("rax") rax
            )
        };
        let kept = pte_now(pte_va) == old | PTE_AVAIL9;
        let (zf2, rax2) = (fl & 0x40 != 0, rax == old | PTE_AVAIL9);
        let back = put_back(&slot, pte_va);
        values!(
            "match=[{p1} stored={} zf={} rax_kept={}] mismatch=[{p2} kept={} zf={} rax_loaded={}]{back}",
            flag(stored),
            flag(zf1),
            flag(rax1),
            flag(kept),
            flag(zf2),
            flag(rax2)
        )
    });

    s.run("traps.l1_pagetable_lock_bts_btr", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let old = pte_now(pte_va);
        let (mut f1, mut f2) = (0u64, 0u64);
        // SAFETY: sets, then clears, a software bit of the entry.
        let p1 = unsafe {
            probe!("lock btsq $9, ({a})\n pushfq\n popq {f}", a = in(reg) pte_va, f = inout(reg) f1)
        };
        let set = pte_now(pte_va) == old | PTE_AVAIL9;
        // SAFETY: as above.
        let p2 = unsafe {
            probe!("lock btrq $9, ({a})\n pushfq\n popq {f}", a = in(reg) pte_va, f = inout(reg) f2)
        };
        let cleared = pte_now(pte_va) == old;
        let back = put_back(&slot, pte_va);
        values!(
            "bts=[{p1} cf={} set={}] btr=[{p2} cf={} cleared={}]{back}",
            f1 & 1,
            flag(set),
            f2 & 1,
            flag(cleared)
        )
    });

    s.run("traps.l1_pagetable_lock_orb_andb", || {
        let Some((pte_va, slot)) = scratch_pte() else {
            return values!("scratch_unmapped");
        };
        let old = pte_now(pte_va);
        // SAFETY: sets, then clears, bit 9 (bit 1 of the entry's second byte).
        let p1 = unsafe { probe!("lock orb $0x02, 1({a})", a = in(reg) pte_va) };
        let set = pte_now(pte_va) == old | PTE_AVAIL9;
        // SAFETY: as above.
        let p2 = unsafe { probe!("lock andb $0xfd, 1({a})", a = in(reg) pte_va) };
        let cleared = pte_now(pte_va) == old;
        let back = put_back(&slot, pte_va);
        values!(
            "orb=[{p1} set={}] andb=[{p2} cleared={}]{back}",
            flag(set),
            flag(cleared)
        )
    });
}

/// Register values loaded before the `int3` of `iret.registers_intact`, RAX to R15 (RSP aside).
const PATTERNS: [u64; 15] = [
    0x1111_0000_0000_00aa, // rax
    0x2222_0000_0000_00bb, // rbx
    0x3333_0000_0000_00cc, // rcx
    0x4444_0000_0000_00dd, // rdx
    0x5555_0000_0000_00ee, // rsi
    0x6666_0000_0000_00ff, // rdi
    0x7777_0000_0000_0011, // rbp
    0x8888_0000_0000_0022, // r8
    0x9999_0000_0000_0033, // r9
    0xaaaa_0000_0000_0044, // r10
    0xbbbb_0000_0000_0055, // r11
    0xcccc_0000_0000_0066, // r12
    0xdddd_0000_0000_0077, // r13
    0xeeee_0000_0000_0088, // r14
    0xffff_0000_0000_0099, // r15
];

/// The registers seen right after the `int3` returned, then RFLAGS.
static SEEN: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn iret_cases(s: &mut Suite) {
    // Every general-purpose register and the arithmetic flags survive a trap and the return
    // through HYPERVISOR_iret (RCX and R11 travel in the bounce frame and the iret frame).
    s.run("iret.registers_intact", || {
        // SAFETY: saves the callee-saved registers, loads patterns into all of them, takes an
        // `int3` (handled, resuming at 3:), stores what the registers hold into SEEN and
        // restores. The caller-saved registers are declared clobbered.
        unsafe {
            asm!(
                "push %rbx",
                "push %rbp",
                "push %r12",
                "push %r13",
                "push %r14",
                "push %r15",
                "lea 3f(%rip), %rax",
                "mov %rax, {recovery}(%rip)",
                "movabs ${p0}, %rax",
                "movabs ${p1}, %rbx",
                "movabs ${p2}, %rcx",
                "movabs ${p3}, %rdx",
                "movabs ${p4}, %rsi",
                "movabs ${p5}, %rdi",
                "movabs ${p6}, %rbp",
                "movabs ${p7}, %r8",
                "movabs ${p8}, %r9",
                "movabs ${p9}, %r10",
                "movabs ${p10}, %r11",
                "movabs ${p11}, %r12",
                "movabs ${p12}, %r13",
                "movabs ${p13}, %r14",
                "movabs ${p14}, %r15",
                "stc",
                "int3",
                "3:",
                "pushfq",
                "popq {seen}+120(%rip)",
                "mov %rax, {seen}(%rip)",
                "mov %rbx, {seen}+8(%rip)",
                "mov %rcx, {seen}+16(%rip)",
                "mov %rdx, {seen}+24(%rip)",
                "mov %rsi, {seen}+32(%rip)",
                "mov %rdi, {seen}+40(%rip)",
                "mov %rbp, {seen}+48(%rip)",
                "mov %r8, {seen}+56(%rip)",
                "mov %r9, {seen}+64(%rip)",
                "mov %r10, {seen}+72(%rip)",
                "mov %r11, {seen}+80(%rip)",
                "mov %r12, {seen}+88(%rip)",
                "mov %r13, {seen}+96(%rip)",
                "mov %r14, {seen}+104(%rip)",
                "mov %r15, {seen}+112(%rip)",
                "pop %r15",
                "pop %r14",
                "pop %r13",
                "pop %r12",
                "pop %rbp",
                "pop %rbx",
                recovery = sym traps::RECOVERY,
                seen = sym SEEN,
                p0 = const PATTERNS[0],
                p1 = const PATTERNS[1],
                p2 = const PATTERNS[2],
                p3 = const PATTERNS[3],
                p4 = const PATTERNS[4],
                p5 = const PATTERNS[5],
                p6 = const PATTERNS[6],
                p7 = const PATTERNS[7],
                p8 = const PATTERNS[8],
                p9 = const PATTERNS[9],
                p10 = const PATTERNS[10],
                p11 = const PATTERNS[11],
                p12 = const PATTERNS[12],
                p13 = const PATTERNS[13],
                p14 = const PATTERNS[14],
                out("rax") _,
                out("rcx") _,
                out("rdx") _,
                out("rsi") _,
                out("rdi") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                options(att_syntax)
            );
        }
        let trap = traps::take_last();
        let intact = PATTERNS
            .iter()
            .zip(SEEN.iter())
            .filter(|(p, s)| s.load(Ordering::SeqCst) == **p)
            .count();
        let cf = SEEN[15].load(Ordering::SeqCst) & RFLAGS_CF != 0;
        values!(
            "vector={} registers_intact={intact}/15 carry_intact={}",
            trap.map_or(-1, |t| t.vector as i64),
            flag(cf)
        )
    });

    // `iret` to selectors the CPU refuses (issue 11): the hypervisor's code selector 0xe008
    // (RPL 3 forced: 0xe00b, a DPL 0 segment) and a null SS. Xen's `iretq` back to the guest
    // faults and its `.Lft0` fixup delivers the #GP to the guest, at the frame it asked for, with
    // the selector as error code; the hypervisor carries on. The frame's CS is printed as the
    // bounce frame gives it.
    for (name, cs, ss) in [
        ("iret.hypervisor_cs", 0xe008u64, u64::from(FLAT_KERNEL_SS)),
        ("iret.null_ss", KERNEL_CS_RPL0, 0),
    ] {
        s.run(name, || {
            let (trap, at_target) = traps::iret_with_selectors(cs, ss);
            match trap {
                Some(t) => values!(
                    "{t} at_target={} frame_cs={:#x}",
                    flag(at_target),
                    t.cs & 0xffff
                ),
                None => values!("no_trap"),
            }
        });
    }

    // HYPERVISOR_iret called directly (not from a trap): with flags 0, RAX, RCX and R11 come
    // from the frame, and RFLAGS.IF of the frame becomes the inverse of the upcall mask.
    s.run("iret.direct", || {
        let r = direct_iret(0, false);
        values!(
            "rax_ok={} rcx_ok={} r11_ok={} upcall_mask={}",
            flag(r.rax == IRET_RAX),
            flag(r.rcx == IRET_RCX),
            flag(r.r11 == IRET_R11),
            shared_info::upcall_mask().map_or(-1, i32::from)
        )
    });

    // With VGCF_in_syscall Xen returns like `sysret`: RCX and R11 are not restored (RCX ends up
    // holding the return address).
    s.run("iret.in_syscall", || {
        let r = direct_iret(VGCF_in_syscall, false);
        values!(
            "rax_ok={} rcx_restored={} r11_restored={} rcx_is_rip={}",
            flag(r.rax == IRET_RAX),
            flag(r.rcx == IRET_RCX),
            flag(r.r11 == IRET_R11),
            flag(r.rcx == r.target)
        )
    });

    // RFLAGS.IF in the iret frame sets the upcall mask: IF=1 unmasks, IF=0 masks.
    s.run("iret.rflags_if_sets_upcall_mask", || {
        direct_iret(0, true);
        let unmasked = shared_info::upcall_mask().map_or(-1, i32::from);
        direct_iret(0, false);
        let masked = shared_info::upcall_mask().map_or(-1, i32::from);
        shared_info::set_upcall_mask(1);
        values!("if_set_mask={unmasked} if_clear_mask={masked}")
    });
}

const IRET_RAX: u64 = 0x0123_4567_89ab_cdef;
const IRET_RCX: u64 = 0x1357_9bdf_2468_ace0;
const IRET_R11: u64 = 0x0246_8ace_1357_9bdf;

/// What the code after a direct `iret` saw.
struct IretSeen {
    rax: u64,
    rcx: u64,
    r11: u64,
    /// The return address given in the frame.
    target: u64,
}

/// Builds an `iret` frame returning to the next instruction on the current stack, with
/// `iret_context.flags = flags` and RFLAGS.IF = `set_if`, and jumps to the hypercall page's iret
/// stub with RAX, RCX and R11 holding the IRET_* patterns (the stub pushes them).
fn direct_iret(flags: u64, set_if: bool) -> IretSeen {
    let (rax, rcx, r11, target): (u64, u64, u64, u64);
    // SAFETY: the frame returns to label 3 in kernel mode (CS with RPL 0) on the stack pointer
    // the block started with, so the code after the block runs as if the block had fallen
    // through. RAX, RCX and R11 are outputs; every other register is preserved by Xen.
    unsafe {
        asm!(
            "lea 3f(%rip), {target}",
            "mov %rsp, {sp}",
            "pushq ${ss}",
            "push {sp}",
            "pushfq",
            "andq $~{rflags_if}, (%rsp)",
            "or {ifbit}, (%rsp)",
            "pushq ${cs}",
            "push {target}",
            "push {flags}",
            "movabs ${rax}, %rax",
            "movabs ${rcx}, %rcx",
            "movabs ${r11}, %r11",
            "jmp {hypercall_page}+{iret_offset}",
            "3:",
            target = out(reg) target,
            sp = out(reg) _,
            ifbit = in(reg) if set_if { RFLAGS_IF } else { 0 },
            flags = in(reg) flags,
            ss = const FLAT_KERNEL_SS,
            cs = const KERNEL_CS_RPL0,
            rflags_if = const RFLAGS_IF,
            rax = const IRET_RAX,
            rcx = const IRET_RCX,
            r11 = const IRET_R11,
            hypercall_page = sym hypercall_page,
            iret_offset = const __HYPERVISOR_iret * 32,
            out("rax") rax,
            out("rcx") rcx,
            out("r11") r11,
            options(att_syntax)
        );
    }
    IretSeen {
        rax,
        rcx,
        r11,
        target,
    }
}

/// CR0.TS as `mov %cr0` reads it: 1, 0, or -1 if the read trapped.
fn cr0_ts() -> i32 {
    read_cr(0).1.map_or(-1, |cr0| i32::from(cr0 & CR0_TS != 0))
}

/// `fnstcw`: an x87 instruction that raises #NM while CR0.TS is set.
fn x87() -> Probe {
    let mut cw: u16 = 0;
    // SAFETY: stores the x87 control word into a local; no other effect.
    unsafe { probe!("fnstcw ({p})", p = in(reg) &raw mut cw) }
}

fn fpu_cases(s: &mut Suite) {
    s.run("fpu.taskswitch_set", || {
        let rc = hc::fpu_taskswitch(true);
        let ts = cr0_ts();
        let p = x87();
        hc::fpu_taskswitch(false);
        values!("rc={rc} cr0_ts={ts} x87={p}")
    });

    // Xen clears the virtual TS when it delivers #NM (as if the guest's handler had done `clts`),
    // so the instruction succeeds when retried.
    s.run("fpu.nm_clears_ts", || {
        hc::fpu_taskswitch(true);
        let first = x87();
        let ts = cr0_ts();
        let retry = x87();
        hc::fpu_taskswitch(false);
        values!(
            "first={} cr0_ts={ts} retry={retry}",
            flag(first.trap.is_some())
        )
    });

    s.run("fpu.taskswitch_clear", || {
        hc::fpu_taskswitch(true);
        let rc = hc::fpu_taskswitch(false);
        values!("rc={rc} cr0_ts={} x87={}", cr0_ts(), x87())
    });

    // `clts` is emulated: it clears the virtual TS like fpu_taskswitch(0).
    s.run("fpu.clts", || {
        hc::fpu_taskswitch(true);
        // SAFETY: clears CR0.TS (emulated by Xen); the kernel wants TS clear anyway.
        let p = unsafe { probe!("clts") };
        let ts = cr0_ts();
        hc::fpu_taskswitch(false);
        values!("{p} cr0_ts={ts} x87={}", x87())
    });
}
