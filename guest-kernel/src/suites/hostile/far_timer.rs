//! `hostile=far-timer`: timers armed for the farthest deadlines there are, and for "negative"
//! ones (top bit set), while the vCPU waits on them.
//!
//! Xen's deadlines are `s_time_t`: a single-shot or poll deadline with the top bit set is long
//! past and fires at once; one up to 2^63 - 1 ns is kept, however far (the hardware timer is
//! armed for its longest count and re-armed); `set_timer_op` turns a negative deadline or one
//! 2^50 ns or more ahead into 100 ms. A hypervisor that converted such a deadline to TSC ticks
//! with wrapping arithmetic would arm its timer in the past: a spurious interrupt at once, and an
//! idle loop that spins while the vCPU waits. Each step prints how long the wait took and
//! whether the timer's port fired; the QEMU test compares them with Xen's rules and reads the
//! hypervisor's idle counters (debug key `r`) around a long wait on far timers.

use hypercall_abi::event_channel::{EVTCHNSTAT_virq, EvtchnStatus};
use hypercall_abi::sched::SchedPoll;
use hypercall_abi::vcpu::VcpuNoArg;
use hypercall_abi::vcpu::VcpuSetSingleshotTimer;
use hypercall_abi::xen::{DOMID_SELF, VIRQ_TIMER};

use crate::kernel::hypercall as hc;
use crate::kernel::{console, events, time};

const MS: u64 = time::MS;

/// The port VIRQ_TIMER is bound to (the domU bound it at start-up).
fn timer_port() -> Option<u32> {
    (1..1024).find(|&port| {
        let mut st = EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        hc::event_channel_op(&mut st) == 0 && st.status == EVTCHNSTAT_virq && st.u[0] == VIRQ_TIMER
    })
}

fn singleshot(deadline: u64) -> i64 {
    let mut t = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        ..Default::default()
    };
    hc::vcpu_op(0, &mut t)
}

fn stop_singleshot() -> i64 {
    hc::vcpu_op_noarg(VcpuNoArg::StopSingleshotTimer, 0)
}

/// Polls `port` with `timeout` (absolute; upcalls stay masked). Returns the poll's answer, the
/// milliseconds it took, and whether the port is pending (then clears it).
fn poll(port: u32, timeout: u64) -> (i64, u64, bool) {
    let ports = [port];
    let mut p = SchedPoll {
        ports: hc::ptr(ports.as_ptr()),
        nr_ports: 1,
        timeout,
        ..Default::default()
    };
    let start = time::now_ns().unwrap_or(0);
    let rc = hc::sched_op(&mut p);
    let took = time::now_ns().unwrap_or(0).saturating_sub(start) / MS;
    let fired = events::is_pending(port);
    events::clear_pending(port);
    events::take(port);
    (rc, took, fired)
}

fn now() -> u64 {
    time::now_ns().unwrap_or(0)
}

/// `hostile: far-timer: <step>=<arming rc>,<poll rc>,<ms waited>,<port fired>`.
fn report(step: &str, (rc, ms, fired): (i64, u64, bool), armed: i64) {
    println!(
        "hostile: far-timer: {step}={armed},{rc},{ms},{}",
        u8::from(fired)
    );
}

pub fn run() -> Result<(), &'static str> {
    let port = timer_port().ok_or("VIRQ_TIMER is not bound")?;
    // Only the timers armed here raise VIRQ_TIMER from now on.
    let stop = hc::vcpu_op_noarg(VcpuNoArg::StopPeriodicTimer, 0);
    if stop != 0 {
        return Err("cannot stop the periodic timer");
    }
    events::clear_pending(port);
    events::take(port);

    // set_timer_op: 2^63 - 1 and a negative deadline are both clamped to 100 ms ahead.
    let armed = hc::set_timer_op(i64::MAX as u64);
    report(
        "set_timer_op_farthest",
        poll(port, now() + 2000 * MS),
        armed,
    );
    let armed = hc::set_timer_op(1 << 63);
    report(
        "set_timer_op_negative",
        poll(port, now() + 2000 * MS),
        armed,
    );

    // Single-shot with the top bit set: past, fires at once (the 2 s poll timeout is a net).
    let armed = singleshot((1 << 63) | now());
    report("singleshot_negative", poll(port, now() + 2000 * MS), armed);

    // The farthest single-shot deadlines: accepted, never fire (the poll times out).
    for (step, deadline) in [
        ("singleshot_2_62", 1u64 << 62),
        ("singleshot_farthest", i64::MAX as u64),
    ] {
        let armed = singleshot(deadline);
        report(step, poll(port, now() + 200 * MS), armed);
    }
    let _ = stop_singleshot();

    // A negative poll timeout is past: the poll ends at once, before the timer behind it.
    let armed = singleshot(now() + 1000 * MS);
    report("poll_negative_timeout", poll(port, 1 << 63), armed);
    let _ = stop_singleshot();
    // The farthest poll timeout: the poll ends when the 150 ms timer raises the port.
    let armed = singleshot(now() + 150 * MS);
    report("poll_farthest_timeout", poll(port, i64::MAX as u64), armed);

    // A long wait with far timers armed: the hypervisor's idle loop must halt, not spin. The
    // QEMU test reads its idle counters (debug key `r`) at these two lines.
    let armed = singleshot(1 << 62);
    println!("hostile: far-timer: sleeping");
    console::flush();
    let slept = poll(port, now() + 3000 * MS);
    println!("hostile: far-timer: woke");
    report("sleep_with_far_timer", slept, armed);
    let _ = stop_singleshot();
    Ok(())
}
