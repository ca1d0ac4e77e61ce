//! What happens on each entry into the hypervisor, and on the way back to a guest.
//!
//! [`handle_entry`] is called by the entry assembly with the saved [`Regs`] of the running vCPU.
//! From a guest it runs the hypercall or handles the exception (emulate, or bounce to the guest's
//! trap table), then [`exit_to_guest`] settles what must happen before a guest runs again: every
//! domain's timers, wake-ups of blocked vCPUs, shut-down domains, the scheduler's choice of the
//! next vCPU (a context switch if it is another one), a pending event upcall, and loading the
//! vCPU state the CPU must see.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use xen_core::bounce::{self, CrashReason};
use xen_core::domain::set::{DomainEntry, DomainSet};
use xen_core::domain::{Domain, MachineInfo, Shutdown};
use xen_core::emulate::{self, GuestCrs};
use xen_core::evtchn::hypercall as event_channel;
use xen_core::evtchn::PortTable;
use xen_core::guest_access::{GuestMemory, PageTableGuest};
use xen_core::hypercall::{dispatch, ptwr_emulate, Ctx};
use xen_core::power::FailCode;
use xen_core::regs::{Regs, ENTRY_SYSCALL};
use xen_core::sched::{self as policy, Candidate};

use super::console::{print_emergency, printk};
use super::domu::{self, Pool};
use super::gdt::GUEST_CS32;
use super::machine::{native_cpuid, Cr3Load, HvMachine, RealPorts};
use super::{apic, ioapic, power};

/// Everything the hypervisor keeps besides the domains themselves.
pub struct Hv {
    /// The machine.
    pub m: HvMachine,
    /// Machine-wide facts.
    pub info: MachineInfo,
    /// The slot (in [`DOMS`]) of the vCPU the CPU runs.
    pub cur: usize,
    /// Free memory and what each domain took from it.
    pub pool: Pool,
    /// When the running vCPU's time slice ends.
    slice_end: u64,
    /// When the running vCPU got the CPU (for run-time accounting).
    run_start: u64,
    /// Time the CPU spent halted with nothing to run.
    pub idle_ns: u64,
    /// Halts of the idle loop (each one ended by an interrupt): with `idle_ns`, shows that a far
    /// deadline does not make the idle loop spin (debug key `r`).
    pub idle_halts: u64,
    /// The earliest deadline of the vCPUs that do not run, and whether any of them is runnable,
    /// as the last full scheduling pass found them: an entry that cannot have changed another
    /// domain (see `touches_others`) reuses them instead of scanning every domain again.
    others_next: Option<u64>,
    others_runnable: bool,
    /// vCPU state as last loaded into the CPU, to skip redundant MSR and CR writes.
    loaded: Loaded,
    /// The deadline the APIC one-shot timer is armed for, to skip redundant (slow) APIC writes.
    armed: Option<u64>,
    /// The guest's debug registers as last loaded (DR0..DR3, DR7).
    loaded_debug: ([u64; 4], u64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Loaded {
    fs: u64,
    /// MSR_GS_BASE: the current mode's GS base.
    gs: u64,
    /// MSR_SHADOW_GS_BASE: the other mode's.
    gs_shadow: u64,
    ts: bool,
}

static HV: Mutex<Option<Hv>> = Mutex::new(None);

/// Every domain (kept apart from `Hv`: port tables are tens of KiB each, too big to build on the
/// boot stack and move).
pub static DOMS: Mutex<DomainSet> = Mutex::new(DomainSet::new());

/// FPU/SSE state of each slot's vCPU while it does not run (`fxsave` format).
static FPU: Mutex<[Fxsave; xen_core::domain::set::MAX_DOMAINS]> =
    Mutex::new([Fxsave([0; 512]); xen_core::domain::set::MAX_DOMAINS]);

/// An `fxsave` area.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct Fxsave(pub [u8; 512]);

/// Data segment selectors (DS, ES, FS, GS) of each slot's vCPU while it does not run (Xen's
/// `save_segments`/`load_segments`): a guest loads them itself, even from user mode.
static SEGS: Mutex<[[u16; 4]; xen_core::domain::set::MAX_DOMAINS]> =
    Mutex::new([[0; 4]; xen_core::domain::set::MAX_DOMAINS]);

/// The FPU state a vCPU starts with (`fninit`), captured once at boot.
static FPU_INIT: spin::Once<Fxsave> = spin::Once::new();

/// How often an idle CPU looks at the serial line while dom0 waits for input.
const CONSOLE_POLL_NS: u64 = 20_000_000;

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const CR0_TS: u64 = 1 << 3;

/// Captures the initial FPU state every new vCPU gets; call before any guest runs.
pub fn capture_initial_fpu() {
    FPU_INIT.call_once(|| {
        let mut area = Fxsave([0; 512]);
        // SAFETY: no guest has run yet, so resetting the x87/SSE state loses nothing; `clts`
        // makes the FPU instructions usable; the area is 16-byte aligned and 512 bytes long.
        unsafe {
            asm!("clts", "fninit", options(nomem, nostack));
            asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack));
        }
        area
    });
}

/// Gives slot `slot` the initial FPU state and null data selectors (a new domain).
pub fn reset_fpu(slot: usize) {
    if let Some(init) = FPU_INIT.get() {
        FPU.lock()[slot] = *init;
    }
    SEGS.lock()[slot] = [0; 4];
}

/// Installs the state and enters the domain in slot `cur`; never returns.
pub fn run(m: HvMachine, info: MachineInfo, pool: Pool, cur: usize) -> ! {
    let now = m.now();
    let mut hv = Hv {
        m,
        info,
        cur,
        pool,
        slice_end: now + policy::SLICE_NS,
        run_start: now,
        idle_ns: 0,
        idle_halts: 0,
        others_next: None,
        others_runnable: true,
        loaded: Loaded {
            fs: 1,
            gs: 1,
            gs_shadow: 1,
            ts: true,
        },
        armed: None,
        loaded_debug: ([0; 4], 0x400),
    };
    let regs = {
        let mut doms = DOMS.lock();
        let g = doms.guest_mut(cur).expect("a domain to run");
        g.sched.dispatches += 1;
        let regs = g.regs;
        load_vcpu_state(&mut hv, &g.dom);
        regs
    };
    *HV.lock() = Some(hv);
    super::entry::enter(&regs)
}

/// Stack the hypervisor must have left: below this margin a deep path could run off the bottom
/// of its stack into the data below it.
const STACK_MARGIN: u64 = 32 * 1024;

extern "C" {
    /// The lowest byte of the boot stack (`boot.rs`).
    static boot_stack: u8;
}

/// Stops the machine, with a clear message, if the stack in use (the entry stack, or the boot
/// stack before the first guest runs) is nearly exhausted.
fn check_stack() {
    let sp: u64;
    // SAFETY: reading RSP has no side effects.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    for bottom in [
        super::gdt::entry_stack_bottom(),
        (&raw const boot_stack) as u64,
    ] {
        if (bottom..bottom + STACK_MARGIN).contains(&sp) {
            panic!("hypervisor stack nearly exhausted: rsp {sp:#x}, bottom {bottom:#x}");
        }
    }
}

/// Called by the entry assembly for every exception, interrupt and hypercall.
pub extern "C" fn handle_entry(regs: &mut Regs) {
    if !regs.from_guest() {
        // A listed instruction that loads guest-chosen state faulted: resume at its fixup.
        if let Some(fixup) = super::extable::fixup(regs.rip) {
            regs.rip = fixup;
            regs.r11 = regs.vector + 1;
            return;
        }
        // The `iretq` back to a guest refused the guest's selectors: the fault is the guest's.
        if regs.rip == super::entry::iret_to_guest_address() && matches!(regs.vector, 10..=13) {
            iret_fault_to_guest(regs);
        }
    }
    match regs.vector {
        // The APIC timer: account for it (the handler sends the EOI); guests see its effect when
        // `exit_to_guest` checks their timers.
        v if v == u64::from(apic::TIMER_VECTOR) => apic::timer_interrupt(),
        // A spurious APIC interrupt needs no EOI and has no effect.
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {}
        // A device interrupt (a GSI dom0 bound as a PIRQ): masked and acknowledged now, raised
        // in dom0 by `deliver_irqs` below or, when the CPU was idle, by `schedule`'s loop.
        v if ioapic::gsi_of_vector(v).is_some() => {
            ioapic::interrupt(ioapic::gsi_of_vector(v).unwrap_or(0));
        }
        // A #DB in the hypervisor. A guest's breakpoints never match hypervisor addresses, but a
        // data breakpoint on the operand of a guest's `mov ss`/`pop ss` is deferred by the CPU
        // past the next instruction: if that is `syscall`, the #DB arrives on the first
        // instruction of the `syscall` entry, in ring 0, with the guest's RSP (XSA-260). It ran
        // on its own IST stack, so nothing was written where the guest pointed; like Xen's
        // `do_debug` for a #DB in Xen context: note it, clear DR6, go on.
        1 if !regs.from_guest() => {
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
            return;
        }
        // An NMI in the hypervisor (a device, the watchdog, another CPU): not fatal, as in Xen's
        // `do_nmi` with `nmi=dom0`/`ignore`: count it, say so (rate-limited), go on.
        2 if !regs.from_guest() => {
            let n = XEN_NMIS.fetch_add(1, Ordering::Relaxed);
            if n < 10 {
                printk!(
                    "NMI received in Xen context at {:04x}:{:#x}: ignored (count {})\n",
                    regs.cs,
                    regs.rip,
                    n + 1
                );
            }
            return;
        }
        _ if !regs.from_guest() => hypervisor_fault(regs),
        _ => {}
    }
    if !regs.from_guest() {
        // An interrupt taken while the hypervisor waited (idle): resume the wait.
        return;
    }
    let mut guard = HV.lock();
    let hv = guard
        .as_mut()
        .expect("a guest runs only after `run` installed the state");
    check_stack();
    let mut doms = DOMS.lock();
    // How long the guest's request keeps the CPU (see `SchedInfo::longest_entry_ns`).
    let entered = hv.m.now();
    // Whether this entry can have changed another domain's state (woken it, shut it down, ...)
    // or the running vCPU's right to go on: if not, the way out skips the full scheduling pass.
    // For a hypercall, the table's `reach` column says.
    let touches_others = match regs.vector {
        ENTRY_SYSCALL => xen_core::hypercall::table::reaches_others(regs.rax),
        0..=31 => false,
        _ => true,
    };
    {
        let (g, ports, grants, others) = doms
            .split(hv.cur)
            .expect("the running vCPU's domain exists");
        let dom = &mut g.dom;
        match regs.vector {
            // `syscall` from guest user mode, or from 32-bit code (Xen's `cstar_enter` bounces
            // that whatever the mode): not a hypercall, the guest kernel's syscall callback takes
            // it.
            ENTRY_SYSCALL if !dom.vcpu.kernel_mode || regs.cs == u64::from(GUEST_CS32) => {
                if let Err(why) = bounce::switch_to_kernel(&mut hv.m, dom, regs) {
                    dom.shutdown = Some(Shutdown::Crashed(why));
                }
            }
            ENTRY_SYSCALL => {
                let (nr, args) = regs.hypercall_args();
                // A long hypercall stops when the APIC timer is due (or soon after it began).
                hv.m.preempt.arm(entered, hv.armed);
                let mut ctx = Ctx {
                    m: &mut hv.m,
                    info: &hv.info,
                    dom,
                    events: ports,
                    grants,
                    others,
                    regs,
                    in_multicall: false,
                    continuation: None,
                };
                let rax = dispatch(&mut ctx, nr, args);
                match ctx.continuation.take() {
                    // Preempted: run the same hypercall again, from the `syscall` instruction
                    // (2 bytes), with the arguments the handler set (Xen's
                    // `hypercall_create_continuation`: `regs->rip -= 2`, the format's registers
                    // rewritten, the others left as the guest had them).
                    Some(c) => {
                        regs.rip = regs.rip.wrapping_sub(2);
                        regs.rax = nr;
                        let arg_regs = [
                            &mut regs.rdi,
                            &mut regs.rsi,
                            &mut regs.rdx,
                            &mut regs.r10,
                            &mut regs.r8,
                        ];
                        for (r, &v) in arg_regs.into_iter().zip(&c.args).take(c.nargs) {
                            *r = v;
                        }
                    }
                    None => regs.rax = rax as u64,
                }
            }
            v @ 0..=31 => {
                dom.vcpu.perf.traps += 1;
                if let Err(why) = guest_exception(&mut hv.m, dom, regs, v as u8) {
                    dom.shutdown = Some(Shutdown::Crashed(why));
                }
            }
            v if v == u64::from(apic::TIMER_VECTOR) => dom.vcpu.perf.traps += 1,
            // Other external interrupts taken while the guest ran: nothing is routed to guests.
            _ => {}
        }
        // From entry to the end of the handler: what the guest's request cost (the way out,
        // timers and scheduling for everyone, is not the guest's doing).
        let spent = hv.m.now().saturating_sub(entered);
        g.sched.longest_entry_ns = g.sched.longest_entry_ns.max(spent);
    }
    deliver_irqs(hv, &mut doms);
    // The timer interrupt is also when the hypervisor looks at its serial console for debug keys
    // (cheaply: not on every entry).
    if regs.vector == u64::from(apic::TIMER_VECTOR) {
        debug_keys(hv, &mut doms, regs);
    }
    exit_to_guest(hv, &mut doms, regs, touches_others);
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
fn iret_fault_to_guest(regs: &mut Regs) {
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

/// Raises in dom0 the PIRQs of the GSIs whose interrupts arrived (`ioapic::interrupt` masked
/// each line): Xen's `__do_IRQ_guest` → `send_guest_pirq`. A GSI dom0 has not bound stays
/// masked. The event's upcall is delivered on the way out, or wakes dom0 if it blocked.
fn deliver_irqs(hv: &mut Hv, doms: &mut DomainSet) {
    let pending = ioapic::take_pending();
    if pending == 0 {
        return;
    }
    let Some((g, ports)) = doms.both_mut(0) else {
        return;
    };
    if g.dom.id != 0 || !g.dom.privileged {
        return;
    }
    for gsi in (0..xen_core::pirq::NR_GSIS).filter(|g| pending & (1 << g) != 0) {
        event_channel::send_gsi(&mut hv.m, &g.dom, ports, gsi);
    }
}

/// Handles an exception the guest raised: emulate what Xen emulates, bounce the rest.
fn guest_exception(
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
            if dom.vcpu.fpu_ts {
                dom.vcpu.fpu_ts = false;
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
                cr3: dom.l4.maddr().0,
            };
            // Port I/O, in either guest mode, when the virtual IOPL allows it (`guest_io_okay`).
            if ec == 0
                && emulate::port_io(regs, code, dom, &mut RealPorts) == emulate::Emulated::Done
            {
                return Ok(());
            }
            // Privileged instructions are emulated for the guest kernel only; from guest user
            // mode they are the #GP they are (Xen emulates with CPL 3 there, `read_segment`).
            if ec == 0 && dom.vcpu.kernel_mode {
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
                && dom.vcpu.kernel_mode
            {
                if let Some((reg, len)) = emulate::decode_pte_store(code) {
                    let value = *emulate::gpr(regs, reg);
                    if ptwr_emulate(&mut *m, dom, cr2, value).is_ok() {
                        regs.rip = regs.rip.wrapping_add(len);
                        return Ok(());
                    }
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
            dom.vcpu.dr6 = (dom.vcpu.dr6 & !0xf) | (dr6 & 0xe00f);
            bounce::inject_exception(&mut *m, dom, regs, 1, None, 0)
        }
        8 | 18 => Err("machine check or double fault while the guest ran"),
        _ => {
            let has_ec = matches!(vector, 10..=14 | 17 | 21 | 29 | 30);
            bounce::inject_exception(&mut *m, dom, regs, vector, has_ec.then_some(ec as u32), 0)
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

/// Whether a vCPU could run now.
fn runnable(g: &DomainEntry) -> bool {
    let v = &g.dom.vcpu;
    !v.blocked && v.poll.is_none() && g.dom.shutdown.is_none() && !g.destroy
}

/// Settles everything due before a guest runs again, choosing which one.
fn exit_to_guest(hv: &mut Hv, doms: &mut DomainSet, regs: &mut Regs, touches_others: bool) {
    let tick = regs.vector == u64::from(apic::TIMER_VECTOR);
    let mut fast = !touches_others;
    let mut full = false;
    loop {
        if !(fast && may_go_on(hv, doms)) {
            schedule(hv, doms, regs, tick);
            full = true;
        }
        fast = false;
        let g = doms
            .guest_mut(hv.cur)
            .expect("the scheduler picked a domain");
        g.dom.vcpu.yielded = false;
        if let Err(why) = bounce::deliver_upcall(&mut hv.m, &mut g.dom, regs) {
            g.dom.shutdown = Some(Shutdown::Crashed(why));
            continue;
        }
        if !xen_core::guest_access::is_canonical(regs.rip) {
            // `iret` to a non-canonical RIP (or a `syscall` from the last bytes of the lower
            // half) would fault in ring 0 on the way out. Xen's `iretq` takes that #GP(0) through
            // its exception table and reflects it to the guest; so do we, before leaving.
            if let Err(why) = bounce::inject_exception(&mut hv.m, &mut g.dom, regs, 13, Some(0), 0)
            {
                g.dom.shutdown = Some(Shutdown::Crashed(why));
                continue;
            }
        }
        break;
    }
    arm_next_timer(hv, doms, full);
    let cur = hv.cur;
    let g = doms.guest_mut(cur).expect("the scheduler picked a domain");
    perform_flushes(hv, &mut g.dom);
    load_vcpu_state(hv, &g.dom);
}

/// The fast way out: after an entry that changed no other domain, the running vCPU goes on if
/// its own timers leave it runnable and its slice lasts.
fn may_go_on(hv: &mut Hv, doms: &mut DomainSet) -> bool {
    let now = hv.m.now();
    if now >= hv.slice_end && hv.others_runnable {
        return false;
    }
    let cur = hv.cur;
    let Some((g, ports)) = doms.both_mut(cur) else {
        return false;
    };
    run_timers(&mut hv.m, g, ports, true, now);
    runnable(g) && !g.dom.vcpu.yielded && !g.destroy
}

/// Runs every domain's timers, wakes, reports and tears down, and leaves in `hv.cur` (with its
/// registers in `regs`) the vCPU to run next, halting while nothing is runnable.
fn schedule(hv: &mut Hv, doms: &mut DomainSet, regs: &mut Regs, tick: bool) {
    loop {
        deliver_irqs(hv, doms);
        let now = hv.m.now();
        for slot in 0..xen_core::domain::set::MAX_DOMAINS {
            let Some((g, ports)) = doms.both_mut(slot) else {
                continue;
            };
            run_timers(&mut hv.m, g, ports, slot == hv.cur, now);
            let m = &hv.m;
            if g.dom.vcpu.blocked && xen_core::shared_info::upcall_pending(m, &g.dom) {
                g.dom.vcpu.blocked = false;
            }
            if let Some(poll) = &g.dom.vcpu.poll {
                let ready = poll
                    .ports
                    .iter()
                    .any(|&p| event_channel::port_pending(m, &g.dom, p))
                    || poll.deadline.is_some_and(|d| now >= d);
                if ready {
                    g.dom.vcpu.poll = None;
                }
            }
        }
        stopped_domains(hv, doms, regs);
        if tick {
            domu::reap(hv);
        }

        let cands: heapless::Vec<Candidate, { xen_core::domain::set::MAX_DOMAINS }> = doms
            .slots()
            .map(|(slot, g)| Candidate {
                slot,
                runnable: runnable(g),
            })
            .collect();
        let keep = doms
            .guest(hv.cur)
            .is_some_and(|g| !g.dom.vcpu.yielded && now < hv.slice_end);
        match policy::pick(&cands, hv.cur, keep) {
            Some(next) => {
                if next != hv.cur || doms.guest(hv.cur).is_none() {
                    switch_to(hv, doms, regs, next, now);
                } else if now >= hv.slice_end
                    || doms.guest(next).is_some_and(|g| g.dom.vcpu.yielded)
                {
                    // Alone on the CPU: a new slice.
                    hv.slice_end =
                        now + policy::slice_ns(doms.guest(next).map_or(0, |g| g.sched.weight));
                }
                return;
            }
            None => idle(hv, doms, regs),
        }
    }
}

/// Reports domains that shut down (dom0 takes the machine with it, as on Xen) and tears down
/// those dom0 destroyed.
fn stopped_domains(hv: &mut Hv, doms: &mut DomainSet, regs: &mut Regs) {
    for slot in 0..xen_core::domain::set::MAX_DOMAINS {
        let Some(g) = doms.guest_mut(slot) else {
            continue;
        };
        if let Some(s) = g.dom.shutdown {
            if g.dom.id == 0 {
                let r = if slot == hv.cur { *regs } else { g.regs };
                domain_stopped(g, &r, s);
            }
            if !g.reported {
                g.reported = true;
                let id = g.dom.id;
                match s {
                    Shutdown::Requested(code) => printk!(
                        "domain {id} ({}) shut down (code {code}): {}\n",
                        g.name,
                        shutdown_name(code)
                    ),
                    Shutdown::Crashed(why) => {
                        printk!("domain {id} ({}) crashed: {why}\n", g.name);
                        dump_regs(if slot == hv.cur { regs } else { &g.regs });
                    }
                }
                // Tell the toolstack (`VIRQ_DOM_EXC` is global: dom0 binds it).
                domu::notify_dom0(hv, doms, hypercall_abi::xen::VIRQ_DOM_EXC);
            }
        }
        if doms.guest(slot).is_some_and(|g| g.destroy) {
            domu::destroy(hv, doms, slot);
        }
    }
}

fn shutdown_name(code: u32) -> &'static str {
    match code {
        hypercall_abi::sched::SHUTDOWN_poweroff => "poweroff",
        hypercall_abi::sched::SHUTDOWN_reboot => "reboot",
        hypercall_abi::sched::SHUTDOWN_suspend => "suspend",
        hypercall_abi::sched::SHUTDOWN_crash => "crash",
        hypercall_abi::sched::SHUTDOWN_watchdog => "watchdog",
        _ => "unknown",
    }
}

/// Hands the CPU from the vCPU in `hv.cur` (if its domain still exists) to the one in `next`.
fn switch_to(hv: &mut Hv, doms: &mut DomainSet, regs: &mut Regs, next: usize, now: u64) {
    let mut fpu = FPU.lock();
    // SAFETY: `clts` only makes FPU instructions usable in ring 0 (the vCPU's virtual CR0.TS is
    // loaded again by `load_vcpu_state`); each area is a 16-byte aligned 512-byte `fxsave` image:
    // one written by `fxsave64` here or captured at boot, so `fxrstor64` cannot fault on it.
    unsafe { asm!("clts", options(nomem, nostack)) };
    hv.loaded.ts = false;
    let mut segs = SEGS.lock();
    if let Some(prev) = doms.guest_mut(hv.cur) {
        prev.regs = *regs;
        let s = &mut segs[hv.cur];
        // SAFETY: reading segment registers has no side effects.
        unsafe {
            asm!("mov {:x}, ds", out(reg) s[0], options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, es", out(reg) s[1], options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, fs", out(reg) s[2], options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, gs", out(reg) s[3], options(nomem, nostack, preserves_flags));
        }
        prev.sched.run_ns += now.saturating_sub(hv.run_start);
        if runnable(prev) && !prev.dom.vcpu.yielded {
            prev.sched.preemptions += 1;
        }
        // SAFETY: as above.
        unsafe { asm!("fxsave64 [{}]", in(reg) fpu[hv.cur].0.as_mut_ptr(), options(nostack)) };
    }
    let g = doms
        .guest_mut(next)
        .expect("picked from the existing domains");
    *regs = g.regs;
    g.sched.dispatches += 1;
    // SAFETY: as above.
    unsafe { asm!("fxrstor64 [{}]", in(reg) fpu[next].0.as_ptr(), options(nostack)) };
    let s = segs[next];
    // Each selector is null (a new vCPU) or one this vCPU loaded itself, which the CPU checked
    // then; still, they are the guest's choice, so each load has an exception-table fixup (a
    // refused selector becomes the null one, as Xen's `load_segments`). Loading FS and GS also
    // loads their bases from the descriptors: the MSR writes below (the cache of loaded bases is
    // forgotten) put the vCPU's own bases back.
    for (which, sel) in s.iter().enumerate() {
        if super::extable::load_data_segment(which, *sel).is_err() {
            segs[next][which] = 0;
        }
    }
    // A guest may have changed its bases without a hypercall (a selector load clears them): the
    // next vCPU's bases are written whatever the cache says.
    hv.loaded.fs = 1;
    hv.loaded.gs = 1;
    hv.loaded.gs_shadow = 1;
    hv.cur = next;
    hv.run_start = now;
    hv.slice_end = now + policy::slice_ns(g.sched.weight);
    // Guest user mappings are global (as Xen makes them): a new address space must not see the
    // previous domain's. Toggling CR4.PGE drops every TLB entry, global ones included.
    // SAFETY: only drops cached translations.
    unsafe {
        let cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        asm!("mov cr4, {}", in(reg) cr4 & !(1 << 7), options(nostack));
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// Nothing can run: halts until the next deadline (or any interrupt). If nothing at all could
/// ever make a vCPU runnable, the machine would hang: dom0 is crashed instead, which ends the run
/// with a diagnostic.
fn idle(hv: &mut Hv, doms: &mut DomainSet, regs: &Regs) {
    let next = doms
        .slots()
        .filter_map(|(_, g)| next_deadline(g, false))
        .min();
    // Serial input is polled, not interrupt-driven: while dom0 listens for it (VIRQ_CONSOLE
    // bound), wake up every 20 ms to look.
    let console_poll = doms
        .slot_of(0)
        .filter(|&s| {
            doms.ports(s)
                .virq_port(0, hypercall_abi::xen::VIRQ_CONSOLE)
                .is_some()
        })
        .map(|_| hv.m.now() + CONSOLE_POLL_NS);
    let next = [next, console_poll].into_iter().flatten().min();
    let Some(d) = next.or_else(|| {
        // No deadline, but an unmasked device line can still wake a vCPU: halt until it fires.
        ioapic::any_enabled().then_some(u64::MAX)
    }) else {
        if let Some(g) = doms.guest_mut(0).filter(|g| g.dom.id == 0) {
            g.dom.shutdown = Some(Shutdown::Crashed("blocked with nothing that could wake it"));
        }
        return;
    };
    if d != u64::MAX {
        apic::arm_oneshot(d);
        hv.armed = Some(d);
    }
    let before = hv.m.now();
    // SAFETY: `sti; hlt` atomically enables interrupts and halts, so a timer interrupt that is
    // already pending wakes the CPU rather than being lost; its handler (entry from ring 0) only
    // accounts for it and returns here. Interrupts are off again before the state is touched.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    let after = hv.m.now();
    hv.idle_ns += after.saturating_sub(before);
    hv.idle_halts += 1;
    // Halted time is nobody's run time.
    hv.run_start = after;
    debug_keys(hv, doms, regs);
    domu::reap(hv);
}

/// Carries out the TLB, cache and CR3 work the hypercalls asked for (`FlushRequest`), once per
/// entry: a whole `mmu_update` batch or multicall is followed by one flush, as on Xen.
fn perform_flushes(hv: &mut Hv, dom: &mut Domain) {
    let req = dom.vcpu.flush.take();
    if req.is_empty() {
        return;
    }
    if req.new_cr3.is_some() {
        // The table the vCPU's mode runs on (`update_cr3`), which is its kernel or user L4 and
        // so holds a type reference: not the recorded one, which a later hypercall of the same
        // entry could have replaced (and released).
        hv.m.load_cr3(dom.current_l4(), Cr3Load::Always);
    }
    // SAFETY: each operation only drops cached translations or writes back caches.
    unsafe {
        if req.cache_flush {
            asm!("wbinvd", options(nomem, nostack));
        }
        if req.local_flush {
            // Toggling CR4.PGE flushes global entries too (Xen marks guest user mappings global).
            let cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            asm!("mov cr4, {}", in(reg) cr4 & !(1 << 7), options(nostack));
            asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        } else {
            for va in req.invlpg {
                asm!("invlpg [{}]", in(reg) va, options(nostack));
            }
        }
    }
}

/// Fires what is due for one domain: the single-shot timer and (while the vCPU runs) the
/// periodic timer send VIRQ_TIMER; an expired watchdog shuts the domain down
/// (`SHUTDOWN_watchdog`). A vCPU that does not run has no periodic ticks (Xen stops the periodic
/// timer of a descheduled vCPU and catches up when it runs again).
fn run_timers(
    m: &mut HvMachine,
    g: &mut DomainEntry,
    ports: &mut PortTable,
    running: bool,
    now: u64,
) {
    let v = &mut g.dom.vcpu;
    let mut fire = false;
    if v.timer_deadline.is_some_and(|d| d <= now) {
        v.timer_deadline = None;
        fire = true;
    }
    if running && v.periodic_period != 0 && v.next_periodic <= now {
        // Xen's periodic timer catches up by whole periods.
        let behind = (now - v.next_periodic) / v.periodic_period + 1;
        v.next_periodic += behind * v.periodic_period;
        fire = true;
    }
    if fire && g.dom.shutdown.is_none() {
        // Refresh the guest's time record with each tick, as Xen's `update_vcpu_system_time`
        // does, so its extrapolation from the TSC never runs far.
        publish_time(m, &g.dom);
        event_channel::send_virq(m, &g.dom, ports, hypercall_abi::xen::VIRQ_TIMER);
    }
    // Xen's `domain_watchdog_timeout`: a domain already shutting down is left alone; otherwise
    // `domain_shutdown(d, SHUTDOWN_watchdog)`, where a code set by `SCHEDOP_shutdown_code` wins.
    if g.dom.shutdown.is_none() && g.dom.watchdogs.iter().flatten().any(|&d| d <= now) {
        printk!("Watchdog timer fired for domain {}\n", g.dom.id);
        let reason = g
            .dom
            .shutdown_code
            .unwrap_or(hypercall_abi::sched::SHUTDOWN_watchdog);
        g.dom.shutdown = Some(Shutdown::Requested(reason));
    }
}

/// The next moment something is due for a domain's vCPU.
fn next_deadline(g: &DomainEntry, running: bool) -> Option<u64> {
    if g.dom.shutdown.is_some() {
        return None;
    }
    let v = &g.dom.vcpu;
    let periodic = (running && v.periodic_period != 0).then_some(v.next_periodic);
    let poll = v.poll.as_ref().and_then(|p| p.deadline);
    [v.timer_deadline, periodic, poll]
        .into_iter()
        .chain(g.dom.watchdogs.iter().copied())
        .flatten()
        .min()
}

/// Arms the APIC one-shot timer for the next deadline of any domain (the end of the running
/// vCPU's slice included while another could run), or cancels it; only when that changed or the
/// timer already fired ([`xen_core::time::must_arm`]), since APIC accesses are slow (and most
/// hypercalls change no timer).
fn arm_next_timer(hv: &mut Hv, doms: &DomainSet, full: bool) {
    if full {
        let mut others_next = None::<u64>;
        let mut others_runnable = false;
        for (slot, g) in doms.slots() {
            if slot != hv.cur {
                if let Some(d) = next_deadline(g, false) {
                    others_next = Some(others_next.map_or(d, |n| n.min(d)));
                }
                others_runnable |= runnable(g);
            }
        }
        hv.others_next = others_next;
        hv.others_runnable = others_runnable;
    }
    let mut next = hv.others_next;
    if let Some(d) = doms.guest(hv.cur).and_then(|g| next_deadline(g, true)) {
        next = Some(next.map_or(d, |n| n.min(d)));
    }
    if hv.others_runnable {
        next = Some(next.map_or(hv.slice_end, |n| n.min(hv.slice_end)));
    }
    if !xen_core::time::must_arm(next, hv.armed, apic::counting()) {
        return;
    }
    match next {
        Some(d) => apic::arm_oneshot(d),
        None => apic::cancel(),
    }
    hv.armed = next;
}

/// Handles serial input: bytes for dom0 are queued and announced with `VIRQ_CONSOLE`; after three
/// `CTRL-a` the keys are the hypervisor's, like Xen's debug keys (`xen/common/keyhandler.c`):
/// `q` dumps the domains and their vCPUs, `e` the event channels, `r` the scheduler, `p` prints
/// the performance counters and `P` resets them, `h` lists the keys.
fn debug_keys(hv: &mut Hv, doms: &mut DomainSet, regs: &Regs) {
    let mut keys: heapless::Vec<u8, 64> = heapless::Vec::new();
    let for_dom0 = super::console::poll_input(|k| {
        let _ = keys.push(k);
    });
    if for_dom0 {
        // Xen raises VIRQ_CONSOLE in the hardware domain when serial input arrives for it.
        domu::notify_dom0(hv, doms, hypercall_abi::xen::VIRQ_CONSOLE);
    }
    for key in keys {
        match key {
            b'h' => printk!(
                "'q' domains, 'e' event channels, 'r' scheduler, 'p' perf counters, 'P' reset them\n"
            ),
            b'q' => {
                for (slot, g) in doms.slots() {
                    let d = &g.dom;
                    let v = &d.vcpu;
                    printk!(
                        "d{} ({}): {} pages (max {}), {}, shutdown {:?}{}\n",
                        d.id,
                        g.name,
                        d.nr_pages,
                        d.max_pages,
                        if d.privileged {
                            "privileged"
                        } else {
                            "unprivileged"
                        },
                        d.shutdown,
                        if g.destroy { ", dying" } else { "" }
                    );
                    let rip = if slot == hv.cur { regs.rip } else { g.regs.rip };
                    printk!(
                        "  v0: {} mode, {}, rip {:#x}, timer {:?}, periodic {} ns, upcall mask {} pending {}, run {} ns\n",
                        if v.kernel_mode { "kernel" } else { "user" },
                        if slot == hv.cur {
                            "running"
                        } else if v.blocked || v.poll.is_some() {
                            "blocked"
                        } else {
                            "runnable"
                        },
                        rip,
                        v.timer_deadline,
                        v.periodic_period,
                        u8::from(xen_core::shared_info::upcall_mask(&hv.m, d)),
                        u8::from(xen_core::shared_info::upcall_pending(&hv.m, d)),
                        g.sched.run_ns
                    );
                }
            }
            b'e' => {
                for (slot, g) in doms.slots() {
                    let ports = doms.ports(slot);
                    printk!("d{} event channels:\n", g.dom.id);
                    for port in 1..ports.valid_ports() {
                        if let Some(c) = ports.channel(port) {
                            if c.state != xen_core::evtchn::ChannelState::Free {
                                let pending = event_channel::port_pending(&hv.m, &g.dom, port);
                                printk!(
                                    "  port {port}: {:?} pending {}\n",
                                    c.state,
                                    u8::from(pending)
                                );
                            }
                        }
                    }
                }
            }
            b'r' => {
                printk!(
                    "scheduler: weighted round robin, slice {} us, idle {} ns in {} halts, timer interrupts {}, free frames {}\n",
                    policy::SLICE_NS / 1000,
                    hv.idle_ns,
                    hv.idle_halts,
                    apic::timer_stats().interrupts,
                    hv.pool.free_frames()
                );
                for (slot, g) in doms.slots() {
                    printk!(
                        "  d{}: weight {}, run {} ns, dispatched {}, preempted {}{}\n",
                        g.dom.id,
                        g.sched.weight,
                        g.sched.run_ns,
                        g.sched.dispatches,
                        g.sched.preemptions,
                        if slot == hv.cur { " (running)" } else { "" }
                    );
                }
            }
            b'p' => {
                for (_, g) in doms.slots() {
                    printk!("d{} perf counters:", g.dom.id);
                    for (name, value) in g.dom.vcpu.perf.named() {
                        printk!(" {name}={value}");
                    }
                    printk!("\n");
                }
                printk!("device interrupts: {}\n", ioapic::count());
            }
            b'P' => {
                for slot in 0..xen_core::domain::set::MAX_DOMAINS {
                    if let Some(g) = doms.guest_mut(slot) {
                        g.dom.vcpu.perf = Default::default();
                        printk!("d{} perf counters reset\n", g.dom.id);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Publishes the vCPU's time (`vcpu_time_info`) and the wall clock in shared_info.
pub fn publish_time(m: &mut HvMachine, dom: &Domain) {
    let Ok(t) = super::time::init() else { return };
    let info = t.clock.vcpu_time_info(super::tsc::rdtsc_ordered(), 0);
    let mut page = xen_core::shared_info::SharedInfoPage::of_mut(m, dom.shared_info);
    page.publish_vcpu_time(0, &info);
    page.publish_wallclock(t.wallclock);
}

/// The domain stopped: dom0 takes the machine with it, as on Xen./// dom0 stopped: it takes the machine with it, as on Xen.
fn domain_stopped(g: &DomainEntry, regs: &Regs, s: Shutdown) -> ! {
    let id = g.dom.id;
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
/// The GS base and CR3 follow the guest mode: the user's GS base and L4 in user mode, the
/// kernel's in kernel mode (what Xen's `swapgs` and `update_cr3` keep in step on each toggle).
fn load_vcpu_state(hv: &mut Hv, dom: &Domain) {
    let v = &dom.vcpu;
    let (gs, gs_shadow) = v.gs_bases();
    let want = Loaded {
        fs: v.fs_base,
        gs,
        gs_shadow,
        ts: v.fpu_ts,
    };
    let have = hv.loaded;
    let dbg = (v.dr, v.dr7);
    if dbg != hv.loaded_debug {
        // SAFETY: DR0..DR3 hold guest addresses (checked by `set_debugreg`: never the
        // hypervisor's range, which the hypervisor's own accesses use), DR7 has no general-detect
        // or I/O breakpoints; a breakpoint can only fire while the guest runs, and a #DB taken in
        // the hypervisor anyway is harmless (`hypervisor_debug_trap`).
        unsafe {
            asm!("mov dr7, {}", in(reg) 0x400u64, options(nomem, nostack));
            asm!("mov dr0, {}", in(reg) dbg.0[0], options(nomem, nostack));
            asm!("mov dr1, {}", in(reg) dbg.0[1], options(nomem, nostack));
            asm!("mov dr2, {}", in(reg) dbg.0[2], options(nomem, nostack));
            asm!("mov dr3, {}", in(reg) dbg.0[3], options(nomem, nostack));
            asm!("mov dr7, {}", in(reg) dbg.1, options(nomem, nostack));
        }
        hv.loaded_debug = dbg;
    }
    // The vCPU's kernel or user L4 (`update_cr3`), both of which hold a type reference while
    // installed; `load_cr3` checks that and skips a reload of the table in CR3.
    hv.m.load_cr3(dom.current_l4(), Cr3Load::IfChanged);
    // SAFETY: the bases were checked canonical by `set_segment_base` (or the emulated WRMSR), so
    // the MSR writes cannot fault; CR0.TS only makes the next FPU instruction trap.
    unsafe {
        // Guest values: checked canonical where they were set, and written with a fixup all
        // the same (a refused base stays what it was; Xen's `wrfsbase`/`wrmsr_safe`).
        if want.fs != have.fs {
            let _ = super::extable::wrmsr_safe(MSR_FS_BASE, want.fs);
        }
        if want.gs != have.gs {
            let _ = super::extable::wrmsr_safe(MSR_GS_BASE, want.gs);
        }
        if want.gs_shadow != have.gs_shadow {
            let _ = super::extable::wrmsr_safe(MSR_KERNEL_GS_BASE, want.gs_shadow);
        }
        if want.ts != have.ts {
            let mut cr0: u64;
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
            cr0 = if want.ts { cr0 | CR0_TS } else { cr0 & !CR0_TS };
            asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        }
    }
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
    printk!("vector: {:#x} error code: {:#x}\n", r.vector, r.error_code);
}
