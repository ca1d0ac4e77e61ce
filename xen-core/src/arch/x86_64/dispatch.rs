//! What happens on each entry into the hypervisor, and on the way back to the guest.
//!
//! [`handle_entry`] is called by the entry assembly with the saved [`Regs`]. From a guest it runs
//! the hypercall or handles the exception (emulate, or bounce to the guest's trap table), then
//! [`exit_to_guest`] settles what must happen before the guest runs again: shutdown, blocking,
//! timers, a pending event upcall, and loading the vCPU state the CPU must see.

use core::arch::asm;

use spin::Mutex;
use xen_core::bounce::{self, CrashReason};
use xen_core::domain::{Domain, MachineInfo, Shutdown};
use xen_core::emulate::{self, GuestCrs};
use xen_core::guest::{GuestMemory, PageTableGuest};
use xen_core::hypercall::{dispatch, Ctx};
use xen_core::power::FailCode;
use xen_core::regs::{Regs, ENTRY_SYSCALL};

use super::console::{print_emergency, printk};
use super::entry::{rdmsr, wrmsr};
use super::machine::{native_cpuid, HvMachine};
use super::{apic, power};

/// Everything the hypervisor keeps while a guest runs.
pub struct Hv {
    /// The machine.
    pub m: HvMachine,
    /// Machine-wide facts.
    pub info: MachineInfo,
    /// The running domain.
    pub dom: Domain,
    /// vCPU state as last loaded into the CPU, to skip redundant MSR and CR writes.
    loaded: Loaded,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Loaded {
    fs: u64,
    gs_kernel: u64,
    gs_user: u64,
    ts: bool,
    cr3: u64,
}

static HV: Mutex<Option<Hv>> = Mutex::new(None);

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const CR0_TS: u64 = 1 << 3;

/// Installs the state and enters the domain at `regs`; never returns.
pub fn run(m: HvMachine, info: MachineInfo, dom: Domain, regs: Regs) -> ! {
    let mut hv = Hv {
        m,
        info,
        dom,
        loaded: Loaded {
            fs: 1,
            gs_kernel: 1,
            gs_user: 1,
            ts: true,
            cr3: 0,
        },
    };
    load_vcpu_state(&mut hv);
    *HV.lock() = Some(hv);
    super::entry::enter(&regs)
}

/// Called by the entry assembly for every exception, interrupt and hypercall.
pub extern "C" fn handle_entry(regs: &mut Regs) {
    match regs.vector {
        // The APIC timer: account for it (the handler sends the EOI); guests see its effect when
        // `exit_to_guest` checks their timers.
        v if v == u64::from(apic::TIMER_VECTOR) => apic::timer_interrupt(),
        // A spurious APIC interrupt needs no EOI and has no effect.
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {}
        _ if !regs.from_guest() => hypervisor_fault(regs),
        _ => {}
    }
    if !regs.from_guest() {
        // An interrupt taken while the hypervisor waited (`block`): resume the wait.
        return;
    }
    let mut guard = HV.lock();
    let hv = guard
        .as_mut()
        .expect("a guest runs only after `run` installed the state");
    match regs.vector {
        ENTRY_SYSCALL => {
            let (nr, args) = regs.hypercall_args();
            let mut ctx = Ctx {
                m: &mut hv.m,
                info: &hv.info,
                dom: &mut hv.dom,
                regs,
                in_multicall: false,
            };
            let rax = dispatch(&mut ctx, nr, args);
            regs.rax = rax as u64;
        }
        v @ 0..=31 => {
            if let Err(why) = guest_exception(hv, regs, v as u8) {
                hv.dom.shutdown = Some(Shutdown::Crashed(why));
            }
        }
        // External interrupts taken while the guest ran: nothing is routed to guests yet.
        _ => {}
    }
    exit_to_guest(hv, regs);
}

/// Handles an exception the guest raised: emulate what Xen emulates, bounce the rest.
fn guest_exception(hv: &mut Hv, regs: &mut Regs, vector: u8) -> Result<(), CrashReason> {
    let ec = regs.error_code;
    let dom = &mut hv.dom;
    let mut code = [0u8; 16];
    let fetched = {
        let g = PageTableGuest {
            mem: &mut hv.m,
            l4: dom.l4,
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
            if dom.vcpu.fpu_ts {
                dom.vcpu.fpu_ts = false;
                bounce::inject_exception(&mut hv.m, dom, regs, 7, None, 0)
            } else {
                Ok(())
            }
        }
        13 => {
            if let Some(n) = emulate::soft_int_vector(ec) {
                let ti = dom.vcpu.trap_ctxt[usize::from(n)];
                if ti.dpl() >= 3 && ti.address != 0 {
                    // `int $n` the guest allowed itself: deliver n after the instruction.
                    regs.rip = regs.rip.wrapping_add(2);
                    let b = bounce::Bounce {
                        eip: ti.address,
                        error_code: None,
                        mask_events: ti.flags & 4 != 0,
                    };
                    return bounce::create_bounce_frame(&mut hv.m, dom, regs, b);
                }
            }
            let crs = GuestCrs {
                cr0: guest_cr0(dom),
                cr2: xen_core::shared::cr2(&hv.m, dom),
                cr3: dom.l4.maddr().0,
            };
            if ec == 0 {
                let saved = *regs;
                match emulate::privileged(regs, code, &mut dom.vcpu, crs) {
                    emulate::Emulated::Done => return Ok(()),
                    // Reloading the current L4 is a TLB flush; switching tables arrives with
                    // validated page tables.
                    emulate::Emulated::NewCr3(v) if v & 0x000f_ffff_ffff_f000 == crs.cr3 => {
                        flush_tlb_local();
                        return Ok(());
                    }
                    _ => *regs = saved,
                }
            }
            bounce::inject_exception(&mut hv.m, dom, regs, 13, Some(ec as u32), 0)
        }
        14 => {
            let cr2: u64;
            // SAFETY: reading CR2 has no side effects.
            unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
            bounce::inject_exception(&mut hv.m, dom, regs, 14, Some(ec as u32), cr2)
        }
        2 => Ok(()), // an NMI while the guest ran: nothing to forward yet
        8 | 18 => Err("machine check or double fault while the guest ran"),
        _ => {
            let has_ec = matches!(vector, 10..=14 | 17 | 21 | 29 | 30);
            bounce::inject_exception(&mut hv.m, dom, regs, vector, has_ec.then_some(ec as u32), 0)
        }
    }
}

/// Flushes this CPU's TLB (non-global entries) by reloading CR3.
fn flush_tlb_local() {
    // SAFETY: writing CR3 back unchanged only drops non-global TLB entries.
    unsafe {
        let cr3: u64;
        asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
        asm!("mov cr3, {}", in(reg) cr3, options(nostack));
    }
}

/// The CR0 a PV guest reads: the real one with the guest's virtual TS.
fn guest_cr0(dom: &Domain) -> u64 {
    let cr0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack)) };
    (cr0 & !CR0_TS) | if dom.vcpu.fpu_ts { CR0_TS } else { 0 }
}

/// Settles everything due before the guest runs again.
fn exit_to_guest(hv: &mut Hv, regs: &mut Regs) {
    if hv.dom.vcpu.blocked {
        block(hv);
    }
    if let Some(s) = hv.dom.shutdown {
        domain_stopped(hv, regs, s);
    }
    if let Err(why) = bounce::deliver_upcall(&mut hv.m, &hv.dom, regs) {
        domain_stopped(hv, regs, Shutdown::Crashed(why));
    }
    load_vcpu_state(hv);
}

/// `SCHEDOP_block`: events are enabled and the vCPU waits until one is pending or its timer is
/// due. (With one domain, waiting means spinning on the clock until the APIC timer is wired in.)
fn block(hv: &mut Hv) {
    xen_core::shared::set_upcall_mask(&mut hv.m, &hv.dom, false);
    loop {
        if xen_core::shared::upcall_pending(&hv.m, &hv.dom) {
            break;
        }
        match hv.dom.vcpu.timer_deadline {
            Some(d) if hv.m.now() >= d => break,
            Some(_) => core::hint::spin_loop(),
            None => {
                // Nothing can ever wake it: an idle dom0 would wait forever.
                hv.dom.shutdown = Some(Shutdown::Crashed("blocked with no event source"));
                break;
            }
        }
    }
    hv.dom.vcpu.blocked = false;
}

/// The domain stopped: dom0 takes the machine with it, as on Xen.
fn domain_stopped(hv: &mut Hv, regs: &Regs, s: Shutdown) -> ! {
    let id = hv.dom.id;
    match s {
        Shutdown::Requested(hypercall_abi::sched::SHUTDOWN_poweroff) => {
            printk!("Hardware Dom{id} halted: powering off\n");
            power::poweroff()
        }
        Shutdown::Requested(hypercall_abi::sched::SHUTDOWN_reboot) => {
            printk!("Hardware Dom{id} shutdown: rebooting machine\n");
            power::reboot()
        }
        Shutdown::Requested(code) => {
            printk!("Hardware Dom{id} crashed (shutdown code {code})\n");
            dump_regs(regs);
            power::fail(FailCode::Dom0Crashed)
        }
        Shutdown::Crashed(why) => {
            printk!("domain {id} crashed: {why}\n");
            dump_regs(regs);
            power::fail(FailCode::Dom0Crashed)
        }
    }
}

/// Loads the vCPU's segment bases, virtual CR0.TS and page tables into the CPU where changed.
fn load_vcpu_state(hv: &mut Hv) {
    let v = &hv.dom.vcpu;
    let want = Loaded {
        fs: v.fs_base,
        gs_kernel: v.gs_base_kernel,
        gs_user: v.gs_base_user,
        ts: v.fpu_ts,
        cr3: hv.dom.l4.maddr().0,
    };
    let have = hv.loaded;
    // SAFETY: the bases were checked canonical by `set_segment_base`, so the MSR writes cannot
    // fault; CR0.TS only makes the next FPU instruction trap; CR3 is the domain's L4, which maps
    // the hypervisor in its reserved slots, so the code running now stays mapped.
    unsafe {
        if want.fs != have.fs {
            wrmsr(MSR_FS_BASE, want.fs);
        }
        if want.gs_kernel != have.gs_kernel {
            wrmsr(MSR_GS_BASE, want.gs_kernel);
        }
        if want.gs_user != have.gs_user {
            wrmsr(MSR_KERNEL_GS_BASE, want.gs_user);
        }
        if want.ts != have.ts {
            let mut cr0: u64;
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
            cr0 = if want.ts { cr0 | CR0_TS } else { cr0 & !CR0_TS };
            asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        }
        if want.cr3 != have.cr3 {
            asm!("mov cr3, {}", in(reg) want.cr3, options(nostack));
        }
    }
    let _ = rdmsr;
    hv.loaded = want;
}

/// An exception or interrupt while the hypervisor itself ran: fatal.
fn hypervisor_fault(regs: &Regs) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    print_emergency(format_args!(
        "FATAL TRAP: vector {} error {:#x} in the hypervisor, cr2 {:#x}\n",
        regs.vector, regs.error_code, cr2
    ));
    dump_regs(regs);
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

/// Prints a register frame and a frame-pointer backtrace (addresses; `addr2line -e build/xen-syms`
/// turns them into symbols).
pub fn dump_regs(r: &Regs) {
    printk!(
        "RIP: {:04x}:{:016x}  RFLAGS: {:016x}  RSP: {:04x}:{:016x}\n",
        r.cs,
        r.rip,
        r.rflags,
        r.ss,
        r.rsp
    );
    printk!(
        "rax: {:016x} rbx: {:016x} rcx: {:016x} rdx: {:016x}\n",
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx
    );
    printk!(
        "rsi: {:016x} rdi: {:016x} rbp: {:016x} r8:  {:016x}\n",
        r.rsi,
        r.rdi,
        r.rbp,
        r.r8
    );
    printk!(
        "r9:  {:016x} r10: {:016x} r11: {:016x} r12: {:016x}\n",
        r.r9,
        r.r10,
        r.r11,
        r.r12
    );
    printk!(
        "r13: {:016x} r14: {:016x} r15: {:016x}\n",
        r.r13,
        r.r14,
        r.r15
    );
}
