//! The scheduler loop: what happens on the way back to a guest (Xen's `common/sched/core.c` with
//! the exit path of `arch/x86/x86_64/entry.S` reduced to its policy).
//!
//! After every entry the arch layer calls [`after_entry`]: device interrupts are raised in dom0,
//! the debug keys are read on a timer tick, then [`exit_to_guest`] settles what must happen
//! before a guest runs again: every domain's timers ([`run_timers`]), wake-ups
//! (`super::wake`), shut-down and destroyed domains (`crate::domain::lifecycle`), the choice of
//! the next vCPU ([`super::pick`]; a context switch if it is another one), the idle loop while
//! nothing is runnable, a pending event upcall, the one-shot timer for the next deadline, and the
//! vCPU state the CPU must see. All of it goes through [`Arch`], so host tests run it on a fake.

use crate::bounce;
use crate::cpu::{printk, Arch, Hv};
use crate::ctx::Kicks;
use crate::domain::lifecycle;
use crate::domain::set::{DomainEntry, DomainSet};
use crate::domain::{Shutdown, MAX_VCPUS};
use crate::evtchn::hypercall as event_channel;
use crate::evtchn::PortTable;
use crate::hypercall::update_runstate_area;
use crate::regs::Regs;

use super::{wake, Candidate};

/// How often an idle CPU looks at the serial line while dom0 waits for input.
pub const CONSOLE_POLL_NS: u64 = 20_000_000;

/// Gives the CPU to the current vCPU of the domain in `hv.sched.cur` for the first time: returns
/// the registers to enter it with.
pub fn start<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet) -> Regs {
    let g = doms.guest_mut(hv.sched.cur).expect("a domain to run");
    g.sched.dispatches += 1;
    hv.arch.load_vcpu(&g.dom);
    g.dom.vcpu().regs
}

/// The scheduling unit of vCPU `vcpu` of the domain in `slot`: what [`super::pick`] and the
/// arch layer's per-vCPU state are indexed by.
#[inline]
pub fn unit(slot: usize, vcpu: usize) -> usize {
    slot * MAX_VCPUS + vcpu
}

/// Whether vCPU `v` of a domain could run now: up, not blocked or polling, its domain neither
/// shut down nor dying.
#[inline]
pub fn vcpu_runnable(g: &DomainEntry, v: usize) -> bool {
    g.dom.vcpus.get(v).is_some_and(|v| {
        v.up && !v.blocked && v.poll.is_none() && g.dom.shutdown.is_none() && !g.destroy
    })
}

/// Whether the domain's current vCPU (the one running, or that ran last) could run now.
#[inline]
pub fn runnable(g: &DomainEntry) -> bool {
    vcpu_runnable(g, g.dom.cur_vcpu)
}

/// The runstate vCPU `v` of a domain is in when it does not run.
fn idle_runstate(g: &DomainEntry, v: usize) -> i32 {
    use hypercall_abi::vcpu::{RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_runnable};
    match g.dom.vcpus.get(v) {
        Some(vc) if !vc.up || g.dom.shutdown.is_some() => RUNSTATE_offline,
        Some(vc) if vc.blocked || vc.poll.is_some() => RUNSTATE_blocked,
        _ => RUNSTATE_runnable,
    }
}

/// What brought the CPU into the hypervisor from a guest, as the way out needs to know it.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A hypercall, with the domains its outcome kicked: if none, no other domain changed.
    Hypercall(&'a Kicks),
    /// A guest exception, or a `syscall` from guest user mode bounced to the guest kernel: the
    /// running domain's own business.
    Exception,
    /// An interrupt (`tick`: the timer's): time passed, anything may be due.
    Interrupt {
        /// It was the timer interrupt.
        tick: bool,
    },
}

impl Entry<'_> {
    /// Whether the entry may have changed another domain (woken it, shut it down, ...) or made
    /// something due: then the way out runs the full scheduling pass.
    pub fn touches_others(&self) -> bool {
        match self {
            Entry::Hypercall(kicks) => !kicks.is_empty(),
            Entry::Exception => false,
            Entry::Interrupt { .. } => true,
        }
    }

    /// Whether it was the timer interrupt.
    pub fn tick(&self) -> bool {
        matches!(self, Entry::Interrupt { tick: true })
    }
}

/// The way out of every entry from a guest, after the arch layer handled it: device interrupts
/// for dom0, the debug keys on a timer tick, then [`exit_to_guest`].
pub fn after_entry<A: Arch>(
    hv: &mut Hv<A>,
    doms: &mut DomainSet,
    regs: &mut Regs,
    entry: Entry<'_>,
) {
    let tick = entry.tick();
    wake::deliver_irqs(&mut hv.arch, doms);
    // The timer interrupt is also when the hypervisor looks at its serial console for debug keys
    // (cheaply: not on every entry).
    if tick {
        crate::keyhandler::poll(hv, doms, regs);
    }
    let touches_others = match entry {
        // An event sent to another domain: wake it here rather than in a full pass over every
        // domain, when waking is all its kick can need.
        Entry::Hypercall(kicks) if !kicks.is_empty() => !wake_kicked(hv, doms, kicks),
        e => e.touches_others(),
    };
    exit_to_guest(hv, doms, regs, touches_others, tick);
}

/// The light way to take a hypercall's kicks (Xen's `vcpu_kick` of another domain's vCPU,
/// without its `schedule` softirq unless the running vCPU must give way): each kicked domain's
/// timers that came due run in place ([`run_timers`], so that a `VIRQ_TIMER` due is sent before
/// the domain is looked at, as the full pass would), its waiting vCPUs whose wait ended are
/// woken (`wake::wake_if_due`), and what the way out keeps of
/// the other domains is brought up to date: whether one is runnable (so the running vCPU's slice
/// end is armed and preempts it) and their earliest deadline (only ever moved earlier: a timer
/// that fires early only brings a full pass). The running vCPU then goes on as after any entry
/// that changed no other domain ([`may_go_on`]: its own timers, its slice), and a full pass
/// follows when it cannot.
///
/// Returns false, having changed nothing, when a kick needs the full pass: the running domain
/// itself (another of its vCPUs), or a domain that no longer exists, is shutting down or dying,
/// or more kicked domains than the list names ([`Kicks::overflowed`]);
/// and false too when a kicked domain's watchdog fired in place, shutting it down (the full pass
/// reports it; what was done here it would have done).
fn wake_kicked<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, kicks: &Kicks) -> bool {
    if kicks.overflowed() {
        // More domains than the list names: the full pass looks at all of them.
        return false;
    }
    let cur_id = doms.guest(hv.sched.cur).map(|g| g.dom.id);
    let mut slots: heapless::Vec<usize, { Kicks::CAPACITY }> = heapless::Vec::new();
    for id in kicks.iter() {
        if Some(id) == cur_id {
            return false;
        }
        match doms.slot_of(id) {
            Some(s)
                if doms
                    .guest(s)
                    .is_some_and(|g| g.dom.shutdown.is_none() && !g.destroy) =>
            {
                // Cannot fail: a kick list names each domain once, at most `Kicks::CAPACITY`.
                let _ = slots.push(s);
            }
            _ => return false,
        }
    }
    let now = hv.arch.now_ns();
    let s = &mut hv.sched;
    for &slot in &slots {
        let Some((g, ports)) = doms.both_mut(slot) else {
            continue;
        };
        run_timers(&mut hv.arch, g, ports, false, now);
        if g.dom.shutdown.is_some() {
            return false;
        }
        wake::wake_if_due(&hv.arch, g, ports, now);
        if (0..g.dom.vcpus.len()).any(|v| vcpu_runnable(g, v)) {
            s.others_runnable = true;
        }
        if let Some(d) = next_deadline(g, None) {
            s.others_next = Some(s.others_next.map_or(d, |n| n.min(d)));
        }
    }
    true
}

/// Settles everything due before a guest runs again, choosing which one; leaves its registers in
/// `regs` and its state loaded.
pub fn exit_to_guest<A: Arch>(
    hv: &mut Hv<A>,
    doms: &mut DomainSet,
    regs: &mut Regs,
    touches_others: bool,
    tick: bool,
) {
    let mut fast = !touches_others;
    let mut full = false;
    loop {
        let way = if fast { may_go_on(hv, doms) } else { Way::Full };
        match way {
            Way::GoOn => {}
            Way::Waits if switch_from_waiting(hv, doms, regs) => full = true,
            Way::Waits | Way::Full => {
                schedule(hv, doms, regs, tick);
                full = true;
            }
        }
        fast = false;
        let g = doms
            .guest_mut(hv.sched.cur)
            .expect("the scheduler picked a domain");
        g.dom.vcpu_mut().yielded = false;
        if let Err(why) = bounce::deliver_nmi(&mut hv.arch, &mut g.dom, regs) {
            g.dom.shutdown = Some(Shutdown::Crashed(why));
            continue;
        }
        if let Err(why) = bounce::deliver_upcall(&mut hv.arch, &mut g.dom, regs) {
            g.dom.shutdown = Some(Shutdown::Crashed(why));
            continue;
        }
        if !crate::guest_access::is_canonical(regs.rip) {
            // `iret` to a non-canonical RIP (or a `syscall` from the last bytes of the lower
            // half) would fault in ring 0 on the way out. Xen's `iretq` takes that #GP(0) through
            // its exception table and reflects it to the guest; so do we, before leaving.
            if let Err(why) =
                bounce::inject_exception(&mut hv.arch, &mut g.dom, regs, 13, Some(0), 0)
            {
                g.dom.shutdown = Some(Shutdown::Crashed(why));
                continue;
            }
        }
        break;
    }
    arm_next_timer(hv, doms, full);
    let g = doms
        .guest_mut(hv.sched.cur)
        .expect("the scheduler picked a domain");
    // (Looked at in place: taking it moves the whole request, `invlpg` list included.)
    if !g.dom.vcpu().flush.is_empty() {
        let req = g.dom.vcpu_mut().flush.take();
        hv.arch.perform_flushes(&g.dom, req);
    }
    hv.arch.load_vcpu(&g.dom);
}

/// What [`may_go_on`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The running vCPU goes on.
    GoOn,
    /// It waits (blocked or polling; its domain's timers ran and woke none of its vCPUs), in a
    /// domain that is neither shut down nor being destroyed: [`switch_from_waiting`] may hand
    /// the CPU on without the full pass.
    Waits,
    /// The full scheduling pass decides.
    Full,
}

/// The fast way out: after an entry that changed no other domain, the running vCPU goes on if
/// its own timers leave it runnable and its slice lasts.
fn may_go_on<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet) -> Way {
    let now = hv.arch.now_ns();
    if now >= hv.sched.slice_end && hv.sched.others_runnable {
        return Way::Full;
    }
    let Some((g, ports)) = doms.both_mut(hv.sched.cur) else {
        return Way::Full;
    };
    run_timers(&mut hv.arch, g, ports, true, now);
    // A timer of another vCPU of this domain may have woken it: the full pass then decides.
    if wake::wake_if_due(&hv.arch, g, ports, now) && g.dom.vcpus.len() > 1 {
        return Way::Full;
    }
    let v = g.dom.vcpu();
    if runnable(g) && !v.yielded && !g.destroy {
        Way::GoOn
    } else if v.up && (v.blocked || v.poll.is_some()) && g.dom.shutdown.is_none() && !g.destroy {
        Way::Waits
    } else {
        Way::Full
    }
}

/// The light way to hand the CPU on when the running vCPU starts waiting (`SCHEDOP_block`,
/// `SCHEDOP_poll`) after an entry that changed no other domain (or whose kicks
/// [`wake_kicked`] took): the next runnable vCPU after it in unit order, wrapping round, as
/// [`super::pick`] chooses, without the pass over every domain. What that pass would do besides
/// is nothing here: the running domain's timers ran ([`may_go_on`]); no other domain has a
/// deadline due (`others_next`, which every full pass and every kick keep, is still ahead: the
/// other domains' timers, poll deadlines and watchdogs), so no timer of theirs fires and no
/// poll of theirs ends; their events come with kicks, which woke them where they were sent
/// ([`wake_kicked`]); a domain that shut down, crashed or is to be destroyed always brings the
/// full pass (its kick, or the running domain's own way out), which reports it at once; device
/// interrupts come with interrupt entries, which take the full pass. Nothing runnable: returns
/// false, having changed nothing, and the full pass idles. The timer is armed afterwards over
/// every domain (`arm_next_timer` with `full`), the running one having changed.
fn switch_from_waiting<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &mut Regs) -> bool {
    let now = hv.arch.now_ns();
    if hv.sched.others_next.is_some_and(|d| d <= now) {
        return false;
    }
    let cur = hv.sched.cur;
    let Some(g) = doms.guest(cur) else {
        return false;
    };
    let cur_unit = unit(cur, g.dom.cur_vcpu);
    let (mut first, mut after) = (None, None);
    'slots: for (slot, g) in doms.slots() {
        for v in 0..g.dom.vcpus.len() {
            if !vcpu_runnable(g, v) {
                continue;
            }
            let u = unit(slot, v);
            if u > cur_unit {
                after = Some(u);
                break 'slots;
            }
            first = first.or(Some(u));
        }
    }
    let Some(next) = after.or(first) else {
        return false;
    };
    hv.sched.light_switches += 1;
    switch_to(hv, doms, regs, next / MAX_VCPUS, next % MAX_VCPUS, now);
    true
}

/// Runs every domain's timers, wakes, reports and tears down, and leaves in `hv.sched.cur` (with
/// its registers in `regs`) the vCPU to run next, halting while nothing is runnable.
///
/// Never in line: its candidate list (every vCPU of every slot, ~10 KiB) would otherwise be in
/// the stack frame of every way out, probed page by page on each entry.
#[inline(never)]
pub fn schedule<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &mut Regs, tick: bool) {
    loop {
        wake::deliver_irqs(&mut hv.arch, doms);
        let now = hv.arch.now_ns();
        for slot in doms.occupied() {
            let Some((g, ports)) = doms.both_mut(slot) else {
                continue;
            };
            run_timers(&mut hv.arch, g, ports, slot == hv.sched.cur, now);
            wake::wake_if_due(&hv.arch, g, ports, now);
        }
        lifecycle::stopped_domains(hv, doms, regs);
        if tick {
            lifecycle::reap(hv);
        }
        // What was reported just now (`VIRQ_DOM_EXC`) reached dom0 after the wake-ups above,
        // and no kick comes with it: woken here, or a dom0 waiting without a timeout would stay
        // blocked while light switches (`switch_from_waiting`, which skip this pass) hand the
        // CPU between the others.
        if let Some((g, ports)) = doms.slot_of(0).and_then(|slot| doms.both_mut(slot)) {
            wake::wake_if_due(&hv.arch, g, ports, now);
        }

        let cur = hv.sched.cur;
        let cur_unit = unit(cur, doms.guest(cur).map_or(0, |g| g.dom.cur_vcpu));
        let keep = doms
            .guest(cur)
            .is_some_and(|g| !g.dom.vcpu().yielded && now < hv.sched.slice_end);
        let cands = || {
            doms.slots().flat_map(|(slot, g)| {
                (0..g.dom.vcpus.len()).map(move |v| Candidate {
                    unit: unit(slot, v),
                    runnable: vcpu_runnable(g, v),
                })
            })
        };
        let picked = super::pick_from(cands, cur_unit, keep);
        match picked {
            Some(next_unit) => {
                let next = next_unit / MAX_VCPUS;
                if next_unit != cur_unit || doms.guest(cur).is_none() {
                    switch_to(hv, doms, regs, next, next_unit % MAX_VCPUS, now);
                } else if now >= hv.sched.slice_end
                    || doms.guest(next).is_some_and(|g| g.dom.vcpu().yielded)
                {
                    // Alone on the CPU: a new slice.
                    hv.sched.slice_end =
                        now + super::slice_ns(doms.guest(next).map_or(0, |g| g.sched.weight));
                }
                return;
            }
            None => idle(hv, doms, regs),
        }
    }
}

/// Hands the CPU from the current vCPU of the domain in `hv.sched.cur` (if it still exists) to
/// vCPU `vcpu` of the domain in `next`: its registers into `regs`, the runstates (and the
/// runstate areas both registered, Xen's `update_runstate_area`), the accounting, and the arch's
/// context switch.
fn switch_to<A: Arch>(
    hv: &mut Hv<A>,
    doms: &mut DomainSet,
    regs: &mut Regs,
    next: usize,
    vcpu: usize,
    now: u64,
) {
    let cur = hv.sched.cur;
    let prev = match doms.guest_mut(cur) {
        Some(prev) => {
            let pv = prev.dom.cur_vcpu;
            prev.dom.vcpu_mut().regs = *regs;
            prev.sched.run_ns += now.saturating_sub(hv.sched.run_start);
            if runnable(prev) && !prev.dom.vcpu().yielded {
                prev.sched.preemptions += 1;
            }
            let state = idle_runstate(prev, pv);
            prev.dom.vcpu_mut().runstate.set(state, now);
            update_runstate_area(&mut hv.arch, &prev.dom, pv, now);
            Some(unit(cur, pv))
        }
        None => None,
    };
    let g = doms
        .guest_mut(next)
        .expect("picked from the existing domains");
    g.dom.cur_vcpu = vcpu.min(g.dom.vcpus.len().saturating_sub(1));
    *regs = g.dom.vcpu().regs;
    g.sched.dispatches += 1;
    g.dom.vcpu_mut().perf.dispatches += 1;
    g.dom
        .vcpu_mut()
        .runstate
        .set(hypercall_abi::vcpu::RUNSTATE_running, now);
    update_runstate_area(&mut hv.arch, &g.dom, g.dom.cur_vcpu, now);
    hv.arch
        .context_switch(prev, unit(next, g.dom.cur_vcpu), &g.dom);
    hv.sched.cur = next;
    hv.sched.run_start = now;
    hv.sched.slice_end = now + super::slice_ns(g.sched.weight);
}

/// Nothing can run: halts until the next deadline (or any interrupt). If nothing at all could
/// ever make a vCPU runnable, the machine would hang: dom0 is crashed instead, which ends the run
/// with a diagnostic.
fn idle<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs) {
    let next = doms
        .slots()
        .filter_map(|(_, g)| next_deadline(g, None))
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
        .map(|_| hv.arch.now_ns() + CONSOLE_POLL_NS);
    let next = [next, console_poll].into_iter().flatten().min();
    let Some(d) = next.or_else(|| {
        // No deadline, but an unmasked device line can still wake a vCPU: halt until it fires.
        hv.arch.irq_lines_enabled().then_some(u64::MAX)
    }) else {
        if let Some(g) = doms.guest_mut(0).filter(|g| g.dom.id == 0) {
            g.dom.shutdown = Some(Shutdown::Crashed("blocked with nothing that could wake it"));
        }
        return;
    };
    // A timer already counting towards an earlier deadline is left as it is, as on the way out
    // (`time::must_arm`): usually the running vCPU's periodic tick, which the way out armed
    // and will want again as soon as the halt ends; it fires early at worst, and the pass it
    // brings idles again. Re-arming it for the later deadline here and back after the halt
    // was two timer writes a halt, each of which under QEMU moves a timer of its main loop
    // and can wake that thread.
    if d != u64::MAX && crate::time::must_arm(Some(d), hv.sched.armed, hv.arch.timer_counting()) {
        hv.arch.arm_timer(d);
        hv.sched.armed = Some(d);
    }
    let before = hv.arch.now_ns();
    hv.arch.halt_until_interrupt();
    let after = hv.arch.now_ns();
    hv.sched.idle_ns += after.saturating_sub(before);
    hv.sched.idle_halts += 1;
    // Halted time is nobody's run time.
    hv.sched.run_start = after;
    crate::keyhandler::poll(hv, doms, regs);
    lifecycle::reap(hv);
}

/// Fires what is due for one domain: each vCPU's single-shot timer and (for the vCPU that runs,
/// if `running`) its periodic timer send that vCPU's VIRQ_TIMER; an expired watchdog shuts the
/// domain down (`SHUTDOWN_watchdog`). A vCPU that does not run has no periodic ticks (Xen stops
/// the periodic timer of a descheduled vCPU and catches up when it runs again).
#[inline]
pub fn run_timers<A: Arch>(
    arch: &mut A,
    g: &mut DomainEntry,
    ports: &mut PortTable,
    running: bool,
    now: u64,
) {
    // The usual answer on the way out, nothing due, from one tight pass; what fires is out of
    // line. (A conservative look: the firing below checks each again.)
    let cur = g.dom.cur_vcpu;
    let due = g.dom.vcpus.iter().enumerate().any(|(id, v)| {
        v.timer_deadline.is_some_and(|d| d <= now)
            || (running && id == cur && v.periodic_period != 0 && v.next_periodic <= now)
    }) || g.dom.watchdogs.iter().any(|w| w.is_some_and(|d| d <= now));
    if due {
        fire_timers(arch, g, ports, running, now);
    }
}

/// [`run_timers`] when something may be due.
#[inline(never)]
fn fire_timers<A: Arch>(
    arch: &mut A,
    g: &mut DomainEntry,
    ports: &mut PortTable,
    running: bool,
    now: u64,
) {
    let cur = g.dom.cur_vcpu;
    let mut published = false;
    for id in 0..g.dom.vcpus.len() {
        let v = &mut g.dom.vcpus[id];
        let mut fire = false;
        if v.timer_deadline.is_some_and(|d| d <= now) {
            v.timer_deadline = None;
            fire = true;
        }
        if running && id == cur && v.periodic_period != 0 && v.next_periodic <= now {
            // Xen's periodic timer catches up by whole periods.
            let behind = (now - v.next_periodic) / v.periodic_period + 1;
            v.next_periodic += behind * v.periodic_period;
            fire = true;
        }
        if fire && g.dom.shutdown.is_none() {
            // Refresh the guest's time record with each tick, as Xen's
            // `update_vcpu_system_time` does, so its extrapolation from the TSC never runs far.
            if !published {
                arch.publish_time(&g.dom);
                published = true;
            }
            event_channel::send_vcpu_virq(
                arch,
                &g.dom,
                ports,
                id as u32,
                hypercall_abi::xen::VIRQ_TIMER,
            );
        }
    }
    // Xen's `domain_watchdog_timeout`: a domain already shutting down is left alone; otherwise
    // `domain_shutdown(d, SHUTDOWN_watchdog)`, where a code set by `SCHEDOP_shutdown_code` wins.
    if g.dom.shutdown.is_none() && g.dom.watchdogs.iter().flatten().any(|&d| d <= now) {
        printk!(arch, "Watchdog timer fired for domain {}\n", g.dom.id);
        let reason = g
            .dom
            .shutdown_code
            .unwrap_or(hypercall_abi::sched::SHUTDOWN_watchdog);
        g.dom.shutdown = Some(Shutdown::Requested(reason));
    }
}

/// The next moment something is due for a domain's vCPUs: their single-shot timers and poll
/// deadlines, the periodic timer of `running` (the vCPU that runs, if it is this domain's), and
/// the domain's watchdogs.
pub fn next_deadline(g: &DomainEntry, running: Option<usize>) -> Option<u64> {
    if g.dom.shutdown.is_some() {
        return None;
    }
    // A plain minimum and whether there was any deadline (one may be `u64::MAX`), rather than
    // a fold over `Option`s: the way out asks this of every domain it looks at.
    let mut next = u64::MAX;
    let mut any = false;
    let mut consider = |d: Option<u64>| {
        if let Some(d) = d {
            any = true;
            next = next.min(d);
        }
    };
    for (id, v) in g.dom.vcpus.iter().enumerate() {
        if !v.up {
            continue;
        }
        consider(v.timer_deadline);
        if running == Some(id) && v.periodic_period != 0 {
            consider(Some(v.next_periodic));
        }
        if let Some(p) = &v.poll {
            consider(p.deadline);
        }
    }
    for &w in &g.dom.watchdogs {
        consider(w);
    }
    any.then_some(next)
}

/// Arms the one-shot timer for the next deadline of any domain (the end of the running vCPU's
/// slice included while another could run), or cancels it; only when that changed or the timer
/// already fired ([`crate::time::must_arm`]), since timer accesses are slow (and most hypercalls
/// change no timer). `full`: look at every domain again, not only the running one.
fn arm_next_timer<A: Arch>(hv: &mut Hv<A>, doms: &DomainSet, full: bool) {
    let s = &mut hv.sched;
    if full {
        let mut others_next = None::<u64>;
        let mut others_runnable = false;
        for (slot, g) in doms.slots() {
            if slot != s.cur {
                if let Some(d) = next_deadline(g, None) {
                    others_next = Some(others_next.map_or(d, |n| n.min(d)));
                }
            }
            // Any other vCPU, of this domain too, that could take the CPU.
            others_runnable |= (0..g.dom.vcpus.len())
                .any(|v| (slot != s.cur || v != g.dom.cur_vcpu) && vcpu_runnable(g, v));
        }
        s.others_next = others_next;
        s.others_runnable = others_runnable;
    }
    let mut next = s.others_next;
    if let Some(d) = doms
        .guest(s.cur)
        .and_then(|g| next_deadline(g, Some(g.dom.cur_vcpu)))
    {
        next = Some(next.map_or(d, |n| n.min(d)));
    }
    if s.others_runnable {
        next = Some(next.map_or(s.slice_end, |n| n.min(s.slice_end)));
    }
    if !crate::time::must_arm(next, s.armed, hv.arch.timer_counting()) {
        return;
    }
    match next {
        Some(d) => hv.arch.arm_timer(d),
        None => hv.arch.cancel_timer(),
    }
    hv.sched.armed = next;
}
