//! Exceptions: a guest's (emulated, or bounced to its trap table), and the hypervisor's own
//! (a fixup, a harmless #DB or NMI, or a fatal trap with a register dump and backtrace).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_core::bounce::{self, CrashReason};
use xen_core::domain::Domain;
use xen_core::emulate::{self, GuestCrs};
use xen_core::guest_access::{GuestMemory, PageTableGuest};
use xen_core::hypercall::{ptwr_emulate, ptwr_read};
use xen_core::power::FailCode;
use xen_core::regs::Regs;
use xen_core::regs::RegsDump;

use super::console::{print_emergency, printk};
use super::context::CR0_TS;
use super::machine::{native_cpuid, HvMachine, RealPorts};
use super::power;

/// A #DB in the hypervisor. A guest's breakpoints never match hypervisor addresses, but a data
/// breakpoint on the operand of a guest's `mov ss`/`pop ss` is deferred by the CPU past the next
/// instruction: if that is `syscall`, the #DB arrives on the first instruction of the `syscall`
/// entry, in ring 0, with the guest's RSP (XSA-260). It ran on its own IST stack, so nothing was
/// written where the guest pointed; like Xen's `do_debug` for a #DB in Xen context: note it,
/// clear DR6, go on.
pub fn hypervisor_debug_trap(regs: &Regs) {
    let dr6: u64;
    // SAFETY: reading and resetting DR6 only affects what the next #DB reports.
    unsafe {
        asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack));
        asm!("mov dr6, {}", in(reg) xen_core::domain::DR6_DEFAULT, options(nomem, nostack));
    }
    let n = XEN_DEBUG_TRAPS.fetch_add(1, Ordering::Relaxed);
    if n < 10 {
        printk!(
            "Hit #DB in Xen context: {:04x}:{:#x}, stk {:04x}:{:#x}, dr6 {dr6:#x}\n",
            regs.cs,
            regs.rip,
            regs.ss,
            regs.rsp
        );
    }
}

/// An NMI in the hypervisor (a device, the watchdog, another CPU): not fatal, as in Xen's
/// `do_nmi` with `nmi=dom0`/`ignore`: count it, say so (rate-limited), go on.
pub fn hypervisor_nmi(regs: &Regs) {
    let n = XEN_NMIS.fetch_add(1, Ordering::Relaxed);
    if n < 10 {
        printk!(
            "NMI received in Xen context at {:04x}:{:#x}: ignored (count {})\n",
            regs.cs,
            regs.rip,
            n + 1
        );
    }
}

/// #DBs taken in the hypervisor itself.
pub static XEN_DEBUG_TRAPS: AtomicU64 = AtomicU64::new(0);
/// NMIs taken in the hypervisor itself.
pub static XEN_NMIS: AtomicU64 = AtomicU64::new(0);

/// Turns a fault of the `iretq` back to a guest into the guest's own fault. The CPU pushed its
/// frame below the one `iretq` was loading; that one, the guest's return context, is at
/// `regs.rsp`, and the general registers in `regs` are already the guest's (restored just before
/// the `iretq`). So the frame becomes the guest's context and the fault is bounced to it like any
/// other, as Xen's `.Lft0` pre-exception-table fixup of `iret_exit_to_guest` does: a guest that
/// returns with CS 0xe008 or a null SS receives #GP through its trap table.
pub fn iret_fault_to_guest(regs: &mut Regs) {
    let frame = regs.rsp as *const [u64; 5];
    // SAFETY: `regs.rsp` is where `xen_exit_to_frame` left the five-word `iretq` frame (RIP, CS,
    // RFLAGS, RSP, SS) on the entry stack; the CPU pushed the fault's frame below it, so it is
    // intact, aligned and mapped.
    let [rip, cs, rflags, rsp, ss] = unsafe { frame.read() };
    regs.rip = rip;
    regs.cs = cs;
    regs.rflags = rflags;
    regs.rsp = rsp;
    regs.ss = ss;
    // `sanitise_for_guest` forced RPL 3 on both selectors before, so this is a guest frame.
    debug_assert!(regs.from_guest());
}

/// Handles an exception the guest raised: emulate what Xen emulates, bounce the rest.
pub fn guest_exception(
    m: &mut HvMachine,
    dom: &mut Domain,
    regs: &mut Regs,
    vector: u8,
) -> Result<(), CrashReason> {
    let ec = regs.error_code;
    let mut code = [0u8; 16];
    let fetched = {
        // The instruction as the faulting mode sees it: through the user table in user mode.
        let g = PageTableGuest {
            mem: &mut *m,
            l4: dom.current_l4(),
        };
        // An instruction may end before a page boundary: fetch what is readable.
        (1..=code.len())
            .rev()
            .find(|&n| g.read(regs.rip, &mut code[..n]).is_ok())
            .unwrap_or(0)
    };
    let code = &code[..fetched];
    match vector {
        // #UD: the forced-emulation prefix asks for CPUID.
        6 if emulate::forced_cpuid(regs, code, native_cpuid) => Ok(()),
        // #NM after the guest set its virtual CR0.TS: clear it and let the guest see the fault.
        7 => {
            if dom.vcpu().fpu_ts {
                dom.vcpu_mut().fpu_ts = false;
                bounce::inject_exception(&mut *m, dom, regs, 7, None, 0)
            } else {
                Ok(())
            }
        }
        13 => {
            // `int $n` the guest allowed itself from this mode: deliver n after the instruction.
            if let Some(r) = bounce::software_interrupt(&mut *m, dom, regs, ec) {
                return r;
            }
            let crs = GuestCrs {
                cr0: guest_cr0(dom),
                cr2: xen_core::shared_info::cr2(&*m, dom),
                cr3: dom.vcpu().l4.maddr().0,
                cr4: emulate::guest_cr4(dom.vcpu().cr4, host_cr4()),
                cr4_writable: emulate::pv_cr4_writable(native_cpuid),
            };
            // Port I/O, in either guest mode, when the virtual IOPL allows it (`guest_io_okay`).
            if ec == 0
                && emulate::port_io(regs, code, dom, &mut RealPorts) == emulate::Emulated::Done
            {
                return Ok(());
            }
            // `cli`/`sti`, in either guest mode, when the virtual IOPL allows them: no-ops.
            if ec == 0 && emulate::cli_sti(regs, code, dom) == emulate::Emulated::Done {
                return Ok(());
            }
            // Privileged instructions are emulated for the guest kernel only; from guest user
            // mode they are the #GP they are (Xen emulates with CPL 3 there, `read_segment`).
            if ec == 0 && dom.vcpu().kernel_mode {
                let saved = *regs;
                match emulate::privileged(regs, code, dom.vcpu_mut(), crs, &mut RealMsrs) {
                    emulate::Emulated::Done => return Ok(()),
                    // A debug register that does not exist: Xen's emulator raises #UD.
                    emulate::Emulated::Ud => {
                        *regs = saved;
                        return bounce::inject_exception(&mut *m, dom, regs, 6, None, 0);
                    }
                    // Reloading the current L4 is a TLB flush, global entries included (Xen's
                    // `new_guest_cr3` goes through `write_ptbase`, which drops them: guest user
                    // mappings are global); switching tables arrives with validated page tables.
                    emulate::Emulated::NewCr3(v) if v & 0x000f_ffff_ffff_f000 == crs.cr3 => {
                        super::context::flush_tlb_global();
                        return Ok(());
                    }
                    _ => *regs = saved,
                }
            }
            bounce::inject_exception(&mut *m, dom, regs, 13, Some(ec as u32), 0)
        }
        14 => {
            let cr2: u64;
            // SAFETY: reading CR2 has no side effects.
            unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
            // A kernel-mode write to a present, read-only page may be a store to one of the
            // guest's own L1 tables: Xen emulates it as a validated update (`ptwr`).
            const PFEC_PRESENT_WRITE: u64 = 0x3;
            const PFEC_RESERVED: u64 = 0x8;
            if ec & (PFEC_PRESENT_WRITE | PFEC_RESERVED) == PFEC_PRESENT_WRITE
                && dom.vcpu().kernel_mode
            {
                let mut access = PtwrAccess { m: &mut *m, dom };
                if emulate::pte_write(regs, code, cr2, &mut access) == emulate::Emulated::Done {
                    return Ok(());
                }
            }
            bounce::inject_exception(&mut *m, dom, regs, 14, Some(ec as u32), cr2)
        }
        2 => Ok(()), // an NMI while the guest ran: nothing to forward yet
        1 => {
            // Record what the CPU reported in the guest's virtual DR6, and clear the real one.
            let dr6: u64;
            // SAFETY: reading and resetting DR6 only affects what the next #DB reports.
            unsafe {
                asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack));
                asm!("mov dr6, {}", in(reg) xen_core::domain::DR6_DEFAULT, options(nomem, nostack));
            }
            dom.vcpu_mut().dr6 = (dom.vcpu().dr6 & !0xf) | (dr6 & 0xe00f);
            bounce::inject_exception(&mut *m, dom, regs, 1, None, 0)
        }
        8 | 18 => Err("machine check or double fault while the guest ran"),
        _ => {
            let has_ec = matches!(vector, 10..=14 | 17 | 21 | 29 | 30);
            bounce::inject_exception(&mut *m, dom, regs, vector, has_ec.then_some(ec as u32), 0)
        }
    }
}

/// The CPU as the MSR emulation sees it (`emulate::MsrHost`).
struct RealMsrs;

impl emulate::MsrHost for RealMsrs {
    fn rdmsr(&mut self, msr: u32) -> Option<u64> {
        if msr == emulate::msr::MSR_APIC_BASE {
            // The mode firmware left, not the x2APIC the hypervisor may have moved to.
            if let Some(v) = super::apic::guest_apic_base() {
                return Some(v);
            }
        }
        super::extable::rdmsr_safe(msr).ok()
    }

    fn rdtsc(&mut self) -> u64 {
        super::tsc::rdtsc_ordered()
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        native_cpuid(leaf, subleaf)
    }
}

/// The hypervisor's CR4.
fn host_cr4() -> u64 {
    let cr4: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack)) };
    cr4
}

/// The CR0 a PV guest reads: the real one with the guest's virtual TS.
fn guest_cr0(dom: &Domain) -> u64 {
    let cr0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack)) };
    (cr0 & !CR0_TS) | if dom.vcpu().fpu_ts { CR0_TS } else { 0 }
}

/// An exception or interrupt while the hypervisor itself ran: fatal.
pub fn hypervisor_fault(regs: &Regs) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    print_emergency(format_args!(
        "FATAL TRAP: vector {} error {:#x} in the hypervisor, cr2 {:#x}\n",
        regs.vector, regs.error_code, cr2
    ));
    printk!("{}", RegsDump(regs));
    // The faulting code's own frame first, then its callers.
    if let Some((mut name, off)) = super::symbols::lookup(regs.rip) {
        let mut buf = [0u8; 200];
        let n = name
            .by_ref()
            .take(200)
            .zip(buf.iter_mut())
            .map(|(b, d)| *d = b)
            .count();
        printk!(
            "   [<{:016x}>] {}+{off:#x} (faulting instruction)\n",
            regs.rip,
            core::str::from_utf8(&buf[..n]).unwrap_or("?")
        );
    }
    super::symbols::print_backtrace(regs.rbp);
    power::fail(FailCode::Trap)
}

/// The guest's own L1 entries as the page-table-write emulation reaches them: read and written
/// (validated, as `mmu_update` does) through `ptwr_read` / `ptwr_emulate`.
struct PtwrAccess<'a> {
    m: &'a mut HvMachine,
    dom: &'a mut Domain,
}

impl emulate::PteAccess for PtwrAccess<'_> {
    fn read(&mut self, va: u64) -> Option<u64> {
        ptwr_read(&mut *self.m, self.dom, va).ok()
    }

    fn write(&mut self, va: u64, value: u64) -> bool {
        ptwr_emulate(&mut *self.m, self.dom, va, value).is_ok()
    }
}
