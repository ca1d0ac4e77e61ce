//! The cross-vCPU test a domU runs when it has a second vCPU (`vcpus=2` on its module's command
//! line): vCPU 0 brings vCPU 1 up, and the two exchange events. Each step prints one line,
//! `smp: PASS <step>: ...` or `smp: FAIL <step>: ...`, and the test stops at the first failure.
//!
//! | step | vCPU 0 | vCPU 1 |
//! |---|---|---|
//! | `bring-up` | registers both `vcpu_info`s in its own page, binds the ports, `VCPUOP_initialise` + `VCPUOP_up` | starts on its own stack, says it runs |
//! | `ipi` | sends on vCPU 1's IPI port, waits for its own | takes the event on vCPU 1, answers on vCPU 0's IPI port |
//! | `bind-vcpu` | moves a loopback port to vCPU 1 (`EVTCHNOP_bind_vcpu`), sends to it | takes it on vCPU 1, answers |
//! | `block` | sees vCPU 1 blocked (runstate, and its runstate area) while it runs 50 ms itself, then wakes it with an IPI | blocks in `SCHEDOP_block`, wakes, answers |
//! | `down-up` | waits for `is_up` 0, `VCPUOP_up`, waits for the answer and for `is_up` 0 again | takes itself down (`VCPUOP_down`, as Linux's `xen_play_dead`), answers when up again, goes down for good |
//!
//! Ports are bound by vCPU 0 before vCPU 1 runs, as Linux's `xen_smp_intr_init` does. vCPU 1
//! never prints: the console ring has one producer, vCPU 0. It only reads and writes the
//! atomics below and makes hypercalls.

use core::sync::atomic::{AtomicU32, Ordering};

use alloc::format;
use hypercall_abi::sched::SchedNoArg;
use hypercall_abi::vcpu::{
    RUNSTATE_blocked, VcpuNoArg, VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo,
};
use hypercall_abi::xen::DOMID_SELF;

use super::error::DomuError;
use crate::kernel::hypercall as hc;
use crate::kernel::{events, shared_info, smp, time};

/// The vCPU brought up.
const SECOND: u32 = 1;

/// How long vCPU 0 waits for each answer (TCG on a loaded host is slow).
const TIMEOUT_NS: u64 = 20_000 * time::MS;

/// How long vCPU 0 runs while vCPU 1 blocks.
const BUSY_NS: u64 = 50 * time::MS;

/// The last step vCPU 1 finished (1: running, 2: ipi, 3: bind-vcpu, 4: block, 5: up again).
static DONE: AtomicU32 = AtomicU32::new(0);
/// vCPU 0's IPI port (vCPU 1 answers on it).
static TO_FIRST: AtomicU32 = AtomicU32::new(0);
/// vCPU 1's IPI port.
static TO_SECOND: AtomicU32 = AtomicU32::new(0);
/// The loopback port moved to vCPU 1 with `EVTCHNOP_bind_vcpu`.
static MOVED: AtomicU32 = AtomicU32::new(0);

/// vCPU 1's runstate area (`VCPUOP_register_runstate_memory_area`): the hypervisor rewrites it
/// whenever vCPU 1 is switched; only read through raw pointers.
static mut RUNSTATE: VcpuRunstateInfo = VcpuRunstateInfo {
    state: 0,
    _pad0: [0; 4],
    state_entry_time: 0,
    time: [0; 4],
};

/// Blocks this vCPU until `port`'s event reached it (its own upcall took it).
fn wait_here(port: u32) {
    let me = smp::this_vcpu();
    while !events::take_on(me, port) {
        // Unmasks upcalls and blocks unless one is pending; the upcall runs on the way out.
        hc::sched_op_noarg(SchedNoArg::Block);
        shared_info::set_upcall_mask(1);
    }
}

/// vCPU 1's program (its entry point, on its own stack).
extern "C" fn second(me: u32) -> ! {
    let to_first = TO_FIRST.load(Ordering::SeqCst);
    let answer = |step: u32| {
        DONE.store(step, Ordering::SeqCst);
        let _ = events::send(to_first);
    };
    answer(1);
    wait_here(TO_SECOND.load(Ordering::SeqCst));
    answer(2);
    wait_here(MOVED.load(Ordering::SeqCst));
    answer(3);
    wait_here(TO_SECOND.load(Ordering::SeqCst));
    answer(4);
    // Down until vCPU 0 brings us up again: the call returns then.
    hc::vcpu_op_noarg(VcpuNoArg::Down, me);
    answer(5);
    loop {
        hc::vcpu_op_noarg(VcpuNoArg::Down, me);
    }
}

/// Waits on vCPU 0 (blocking, with a timer to look again) until `done()`; false after
/// [`TIMEOUT_NS`].
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = time::now_ns().unwrap_or(0) + TIMEOUT_NS;
    while !done() {
        let now = time::now_ns().unwrap_or(u64::MAX);
        if now >= deadline {
            return false;
        }
        // VIRQ_TIMER (bound on vCPU 0 at setup) ends the block if no event does.
        hc::set_timer_op((now + 10 * time::MS).min(deadline));
        hc::sched_op_noarg(SchedNoArg::Block);
        shared_info::set_upcall_mask(1);
    }
    true
}

/// vCPU 1's answer to step `step` arrived on vCPU 0.
fn answered(step: u32) -> bool {
    let to_first = TO_FIRST.load(Ordering::SeqCst);
    wait_until(|| DONE.load(Ordering::SeqCst) >= step && events::take_on(0, to_first))
}

fn is_up(id: u32) -> i64 {
    hc::vcpu_op_noarg(VcpuNoArg::IsUp, id)
}

/// Prints the step's line; a failure ends the test.
fn report(step: &str, ok: bool, what: &str) -> Result<(), DomuError> {
    if ok {
        println!("smp: PASS {step}: {what}");
        Ok(())
    } else {
        println!("smp: FAIL {step}: {what}");
        Err(DomuError::Check(format!("smp: {step} failed")))
    }
}

/// `Ok` from a hypercall's return code, else the step's failure.
fn hc_ok(step: &str, call: &str, rc: i64) -> Result<(), DomuError> {
    report(step, rc == 0, &format!("{call} = {rc}")).map(|_| ())
}

/// Runs the test on vCPU 0 (the domain has `smp::count()` > 1 vCPUs).
pub fn run() -> Result<(), DomuError> {
    let n = smp::count();
    println!("smp: {n} vCPUs; bringing vCPU {SECOND} up");
    for id in [0, SECOND] {
        let rc = smp::register_vcpu_info(id);
        if rc != 0 {
            return hc_ok("bring-up", &format!("register_vcpu_info({id})"), rc);
        }
    }
    let rc = events::init_vcpu(SECOND);
    if rc != 0 {
        return hc_ok("bring-up", "init_control(1)", rc);
    }
    let evtchn = |what: &str, r: Result<u32, hypercall_abi::HypercallError>| {
        r.map_err(|e| DomuError::Evtchn("smp", e))
            .inspect_err(|_| println!("smp: FAIL bring-up: {what}"))
    };
    TO_FIRST.store(
        evtchn("bind_ipi(0)", events::bind_ipi(0))?,
        Ordering::SeqCst,
    );
    TO_SECOND.store(
        evtchn("bind_ipi(1)", events::bind_ipi(SECOND))?,
        Ordering::SeqCst,
    );
    // A loopback pair: sending on `from` raises `moved`, whose vCPU bind_vcpu changes.
    let moved = evtchn("alloc_unbound", events::alloc_unbound(DOMID_SELF))?;
    let from = evtchn(
        "bind_interdomain",
        events::bind_interdomain(DOMID_SELF, moved),
    )?;
    MOVED.store(moved, Ordering::SeqCst);
    let mut area = VcpuRegisterRunstateMemoryArea {
        addr: (&raw mut RUNSTATE) as u64,
    };
    let rc = hc::vcpu_op(SECOND, &mut area);
    if rc != 0 {
        return hc_ok("bring-up", "register_runstate_memory_area(1)", rc);
    }

    if let Err(rc) = smp::start(SECOND, second) {
        return hc_ok("bring-up", "VCPUOP_initialise/up(1)", rc);
    }
    report(
        "bring-up",
        answered(1) && is_up(SECOND) == 1,
        "vCPU 1 runs on its own stack (VCPUOP_initialise, VCPUOP_up, is_up=1)",
    )?;

    let _ = events::send(TO_SECOND.load(Ordering::SeqCst));
    report(
        "ipi",
        answered(2),
        "vCPU 0 -> vCPU 1 -> vCPU 0 through EVTCHNOP_bind_ipi ports",
    )?;

    let moved_ok = events::bind_vcpu(moved, SECOND).is_ok();
    let _ = events::send(from);
    let ok = moved_ok && answered(3) && !events::take_on(0, moved);
    report(
        "bind-vcpu",
        ok,
        "a port moved with EVTCHNOP_bind_vcpu is delivered on vCPU 1, not vCPU 0",
    )?;

    // vCPU 1 now blocks for its next IPI; vCPU 0 keeps the CPU busy meanwhile.
    let state = || {
        let mut info = VcpuRunstateInfo::default();
        (hc::vcpu_op(SECOND, &mut info) == 0).then_some(info.state)
    };
    let blocked = wait_until(|| state() == Some(RUNSTATE_blocked));
    let start = time::now_ns().unwrap_or(0);
    let mut spins = 0u64;
    while time::now_ns().unwrap_or(u64::MAX) < start + BUSY_NS {
        spins += 1;
        core::hint::spin_loop();
    }
    // SAFETY: a volatile read of a field the hypervisor writes; no reference is kept.
    let area_state = unsafe { core::ptr::read_volatile(&raw const RUNSTATE.state) };
    let now_state = state();
    let still = now_state == Some(RUNSTATE_blocked) && DONE.load(Ordering::SeqCst) == 3;
    let _ = events::send(TO_SECOND.load(Ordering::SeqCst));
    let woken = answered(4);
    report(
        "block",
        blocked && still && area_state == RUNSTATE_blocked && spins > 0 && woken,
        &format!(
            "vCPU 1 blocked (runstate {}, runstate area {area_state}) while vCPU 0 ran {} ms, \
             then an IPI woke it",
            now_state.unwrap_or(-1),
            BUSY_NS / time::MS
        ),
    )?;

    let went_down = wait_until(|| is_up(SECOND) == 0);
    let up = hc::vcpu_op_noarg(VcpuNoArg::Up, SECOND);
    let back = up == 0 && answered(5);
    let down_again = wait_until(|| is_up(SECOND) == 0);
    report(
        "down-up",
        went_down && back && down_again,
        &format!(
            "vCPU 1 took itself down (is_up=0), VCPUOP_up={up} brought it back, down again \
             (is_up={})",
            is_up(SECOND)
        ),
    )?;
    println!("smp: all PASS");
    Ok(())
}
