//! Conformance cases for time and scheduling: the single-shot and periodic timers delivered as
//! VIRQ_TIMER events through the event upcall, `SCHEDOP_block`/`poll`, and `vcpu_op`.
//!
//! Deadlines are absolute Xen system time (ns, [`time::now_ns`]); the cases print only whether
//! an event arrived and on which port, never times. Every wait has a timer behind it, so a
//! hypervisor that keeps its promises always wakes the vCPU up. One that accepts a timer and
//! never fires it leaves the case blocked, and the harness's time limit reports it.
//!
//! Xen gives every PV vCPU a 100 Hz periodic timer at creation ("PV guests by default have a
//! 100Hz ticker", `pv_vcpu_initialise` in Xen's `arch/x86/pv/domain.c`). The group stops it
//! first, so that only the timers the cases arm raise VIRQ_TIMER, and restores it at the end.

use hypercall_abi::arch_x86_64::VcpuGuestContext;
use hypercall_abi::event_channel::{EvtchnBindVirq, EvtchnClose};
use hypercall_abi::sched::SchedNoArg;
use hypercall_abi::sched::{
    SCHEDOP_poll, SHUTDOWN_poweroff, SchedPoll, SchedRemoteShutdown, SchedWatchdog,
};
use hypercall_abi::vcpu::VcpuNoArg;
use hypercall_abi::vcpu::{
    VCPUOP_get_runstate_info, VCPUOP_initialise, VCPU_SSHOTTMR_future,
    VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
};
use hypercall_abi::version::XenVersionNoArg;
use hypercall_abi::xen::{__HYPERVISOR_sched_op, __HYPERVISOR_vcpu_op, VIRQ_TIMER};
use hypercall_abi::HypercallError;

use super::{flag, values, Suite, Values, BAD_CMD, NO_SUCH_DOMAIN, UNMAPPED};
use crate::kernel::events;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::shared_info::{self, Bitmap::Pending};
use crate::kernel::time::{self, MS};

/// Xen's default period for a PV vCPU's periodic timer.
const DEFAULT_PERIOD_NS: u64 = 10 * MS;
/// How long a case waits for an event it expects before calling it lost.
const GIVE_UP_NS: u64 = 1000 * MS;
/// How far ahead a timer that a case cancels is armed: far enough that a host slowed down by
/// other work (QEMU's TCG) cannot reach the deadline between arming and cancelling.
const CANCEL_MARGIN_NS: u64 = 20 * MS;

/// Every group of this module, in order.
pub(super) fn cases(s: &mut Suite) {
    timer_cases(s);
    sched_op_cases(s);
    vcpu_op_cases(s);
}

/// VIRQ_TIMER bound to a port for the length of one case.
struct TimerPort(u32);

impl TimerPort {
    fn bind() -> Result<TimerPort, HypercallError> {
        let mut virq = EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu: 0,
            port: 0,
        };
        HypercallError::check(hc::event_channel_op(&mut virq))?;
        // Forget anything a previous case left behind on a port with this number.
        shared_info::clear_bit(Pending, virq.port);
        events::take(virq.port);
        Ok(TimerPort(virq.port))
    }

    /// Closes the port; the return code.
    fn close(self) -> i64 {
        let mut close = EvtchnClose { port: self.0 };
        hc::event_channel_op(&mut close)
    }
}

/// What [`block_until_event`] saw.
struct Blocked {
    /// The upcall saw the port.
    fired: bool,
    /// `evtchn_upcall_mask` right after the last `SCHEDOP_block` returned (-1: never blocked).
    mask_after_block: i32,
}

/// Blocks (`SCHEDOP_block`, which unmasks upcalls) until the upcall has seen `port`, or until
/// `give_up` (system time) passes; masks upcalls again before returning.
fn block_until_event(port: u32, give_up: u64) -> Blocked {
    let mut mask_after_block = -1;
    loop {
        if events::take(port) {
            return Blocked {
                fired: true,
                mask_after_block,
            };
        }
        if time::now_ns().is_none_or(|now| now > give_up) {
            return Blocked {
                fired: false,
                mask_after_block,
            };
        }
        // The upcall runs on the way out of the hypercall, before it returns.
        let rc = hc::sched_op_noarg(SchedNoArg::Block);
        mask_after_block = shared_info::upcall_mask().map_or(-1, i32::from);
        shared_info::set_upcall_mask(1);
        if rc != 0 {
            return Blocked {
                fired: events::take(port),
                mask_after_block,
            };
        }
    }
}

/// Spins with upcalls unmasked until the upcall has seen `port`, or until `give_up` passes;
/// masks upcalls again. Whether the port fired.
///
/// Clearing the mask does not deliver an event that is already pending: Xen checks for events
/// only on its way back to the guest. So when `evtchn_upcall_pending` is set, the loop makes a
/// cheap hypercall to get the upcall (as Linux's `xen_force_evtchn_callback` does).
fn spin_until_event(port: u32, give_up: u64) -> bool {
    shared_info::set_upcall_mask(0);
    let fired = loop {
        if shared_info::upcall_pending() == 1 {
            hc::xen_version_noarg(XenVersionNoArg::Version);
        }
        if events::take(port) {
            break true;
        }
        if time::now_ns().is_none_or(|now| now > give_up) {
            break events::take(port);
        }
        core::hint::spin_loop();
    };
    shared_info::set_upcall_mask(1);
    fired
}

/// Waits until `deadline` with `SCHEDOP_poll` on `port` (upcalls stay masked); the return code.
/// Returns early if `port` becomes pending.
fn poll_until(port: u32, deadline: u64) -> i64 {
    let ports = [port];
    let mut poll = SchedPoll {
        ports: gp(ports.as_ptr()),
        nr_ports: 1,
        timeout: deadline,
        ..Default::default()
    };
    hc::sched_op(&mut poll)
}

/// Runs `body` with VIRQ_TIMER bound and the clock readable; prints the failure otherwise.
fn with_timer_port(body: impl FnOnce(u32, u64) -> Values) -> Values {
    let Some(now) = time::now_ns() else {
        return values!("clock_unavailable");
    };
    let port = match TimerPort::bind() {
        Ok(p) => p,
        Err(rc) => return values!("bind_virq_failed={rc}"),
    };
    let mut v = body(port.0, now);
    let rc = port.close();
    if rc != 0 {
        let _ = core::fmt::Write::write_fmt(&mut v, format_args!(" close_failed={rc}"));
    }
    v
}

fn set_singleshot(deadline: u64, flags: u32) -> i64 {
    let mut t = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        flags,
        ..Default::default()
    };
    hc::vcpu_op(0, &mut t)
}

fn timer_cases(s: &mut Suite) {
    s.run("timer.stop_periodic", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::StopPeriodicTimer, 0))
    });

    // The whole path: bind VIRQ_TIMER, arm the single-shot timer 1 ms ahead, block; Xen raises
    // the VIRQ, the block returns and the upcall (entered through the event callback) sees the
    // timer's port.
    // The upcall handler leaves the port's pending bit and `evtchn_upcall_pending` clear, and
    // SCHEDOP_block leaves upcalls unmasked.
    s.run("timer.set_timer_op_fires", || {
        with_timer_port(|port, now| {
            let before = events::upcalls();
            let rc = hc::set_timer_op(now + MS);
            if rc != 0 {
                return values!("rc={rc}");
            }
            let b = block_until_event(port, now + GIVE_UP_NS);
            values!(
                "rc={rc} fired={} port_ok={} mask_after_block={} pending_after={} upcall_pending_after={}",
                flag(events::upcalls() != before),
                flag(b.fired),
                b.mask_after_block,
                shared_info::test_bit(Pending, port),
                shared_info::upcall_pending()
            )
        })
    });

    // Cancelled before it expires: nothing arrives by the time it was due, and a bit later.
    s.run("timer.set_timer_op_cancel", || {
        with_timer_port(|port, now| {
            let rc = hc::set_timer_op(now + CANCEL_MARGIN_NS);
            let cancel = hc::set_timer_op(0);
            let poll = poll_until(port, now + CANCEL_MARGIN_NS + 5 * MS);
            let fired = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} cancel={cancel} poll={poll} fired={fired}")
        })
    });

    // A deadline already in the past fires straight away.
    s.run("timer.set_timer_op_past", || {
        with_timer_port(|port, now| {
            let rc = hc::set_timer_op(now / 2);
            let poll = poll_until(port, now + GIVE_UP_NS);
            let fired = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} poll={poll} fired={fired}")
        })
    });

    s.run("timer.singleshot_fires", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot(now + MS, 0);
            let fired = rc == 0 && block_until_event(port, now + GIVE_UP_NS).fired;
            values!("rc={rc} fired={}", flag(fired))
        })
    });

    // `vcpu.h` says VCPU_SSHOTTMR_future refuses a deadline in the past with -ETIME. Xen 4.17 as
    // Debian ships it ignores the flag (Xen commit 19c6cbd90965, "xen/vcpu: ignore
    // VCPU_SSHOTTMR_future", backported to 4.17): the call succeeds and the timer fires at once.
    s.run("timer.singleshot_past_future_flag", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot(now / 2, VCPU_SSHOTTMR_future);
            let poll = poll_until(port, now + 3 * MS);
            let fired = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} poll={poll} fired={fired}")
        })
    });

    s.run("timer.singleshot_stop", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot(now + CANCEL_MARGIN_NS, 0);
            let stop = hc::vcpu_op_noarg(VcpuNoArg::StopSingleshotTimer, 0);
            let poll = poll_until(port, now + CANCEL_MARGIN_NS + 5 * MS);
            let fired = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} stop={stop} poll={poll} fired={fired}")
        })
    });

    // Deadlines are Xen's s_time_t: one with the top bit set is negative, long past. It passes
    // the (unsigned) "already expired" test of VCPUOP_set_singleshot_timer but then reaches
    // `set_timer` as a negative expiry, which fires on the next timer softirq: at once.
    s.run("timer.singleshot_negative_deadline", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot((1 << 63) | now, 0);
            let poll = poll_until(port, now + GIVE_UP_NS);
            let fired = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} poll={poll} fired={fired}")
        })
    });

    // The farthest deadline there is (2^63 - 1 ns, 292 years): accepted, and it does not fire.
    s.run("timer.singleshot_farthest_deadline", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot(i64::MAX as u64, 0);
            let poll = poll_until(port, now + CANCEL_MARGIN_NS);
            let fired = shared_info::test_bit(Pending, port);
            let stop = hc::vcpu_op_noarg(VcpuNoArg::StopSingleshotTimer, 0);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} poll={poll} fired={fired} stop={stop}")
        })
    });

    // A poll timeout with the top bit set is also long past: the poll ends at once, well before
    // the single-shot timer behind it (500 ms) raises the polled port.
    s.run("timer.poll_negative_timeout", || {
        with_timer_port(|port, now| {
            let rc = set_singleshot(now + 500 * MS, 0);
            let poll = poll_until(port, 1 << 63);
            let fired = shared_info::test_bit(Pending, port);
            let stop = hc::vcpu_op_noarg(VcpuNoArg::StopSingleshotTimer, 0);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} poll={poll} fired_first={fired} stop={stop}")
        })
    });

    // Periods under 1 ms are refused.
    s.run("timer.periodic_too_short", || {
        let mut p = VcpuSetPeriodicTimer { period_ns: 1000 };
        values!("{}", hc::vcpu_op(0, &mut p))
    });

    // The periodic timer ticks only while the vCPU runs: Xen stops it when the vCPU is switched
    // out (`stop_timer(&prev->periodic_timer)` in Xen's `common/sched/core.c`), so a vCPU blocked
    // with nothing but a periodic timer would sleep forever. Spin with upcalls unmasked instead.
    s.run("timer.periodic_fires_while_running", || {
        with_timer_port(|port, now| {
            let mut p = VcpuSetPeriodicTimer { period_ns: MS };
            let rc = hc::vcpu_op(0, &mut p);
            let first = rc == 0 && spin_until_event(port, now + GIVE_UP_NS);
            let second = rc == 0 && spin_until_event(port, now + GIVE_UP_NS);
            let stop = hc::vcpu_op_noarg(VcpuNoArg::StopPeriodicTimer, 0);
            values!(
                "rc={rc} first={} second={} stop={stop}",
                flag(first),
                flag(second)
            )
        })
    });

    s.run("timer.restore_default_periodic", || {
        let mut p = VcpuSetPeriodicTimer {
            period_ns: DEFAULT_PERIOD_NS,
        };
        values!("{}", hc::vcpu_op(0, &mut p))
    });
}

fn sched_op_cases(s: &mut Suite) {
    // No ports: a plain sleep until the timeout.
    s.run("sched_op.poll_no_ports_timeout", || {
        let Some(now) = time::now_ns() else {
            return values!("clock_unavailable");
        };
        let mut poll = SchedPoll {
            ports: 0,
            nr_ports: 0,
            timeout: now + MS,
            ..Default::default()
        };
        values!("{}", hc::sched_op(&mut poll))
    });

    // Xen caps the list at 128 ports.
    s.run("sched_op.poll_too_many_ports", || {
        let ports = [0u32; 129];
        let mut poll = SchedPoll {
            ports: gp(ports.as_ptr()),
            nr_ports: 129,
            timeout: 0,
            ..Default::default()
        };
        values!("{}", hc::sched_op(&mut poll))
    });

    s.run("sched_op.poll_bad_port_list", || {
        let mut poll = SchedPoll {
            ports: UNMAPPED,
            nr_ports: 1,
            timeout: 0,
            ..Default::default()
        };
        values!("{}", hc::sched_op(&mut poll))
    });

    s.run("sched_op.poll_port_out_of_range", || {
        let ports = [5000u32];
        let mut poll = SchedPoll {
            ports: gp(ports.as_ptr()),
            nr_ports: 1,
            timeout: 0,
            ..Default::default()
        };
        values!("{}", hc::sched_op(&mut poll))
    });

    s.run("sched_op.poll_bad_pointer", || {
        // SAFETY: an unmapped argument: -EFAULT.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_sched_op,
                SCHEDOP_poll.into(),
                UNMAPPED,
                0,
                0,
                0,
            )
        };
        values!("{rc}")
    });

    // A port already pending: poll returns at once (the timeout is a safety net).
    s.run("sched_op.poll_pending_port", || {
        with_timer_port(|port, now| {
            let rc = hc::set_timer_op(now / 2);
            let first = poll_until(port, now + GIVE_UP_NS);
            let again = poll_until(port, now + GIVE_UP_NS);
            let pending = shared_info::test_bit(Pending, port);
            shared_info::clear_bit(Pending, port);
            values!("rc={rc} first={first} while_pending={again} pending={pending}")
        })
    });

    s.run("sched_op.remote_shutdown_no_such_domain", || {
        let mut arg = SchedRemoteShutdown {
            domain_id: NO_SUCH_DOMAIN,
            reason: SHUTDOWN_poweroff,
            ..Default::default()
        };
        values!("{}", hc::sched_op(&mut arg))
    });

    // A watchdog is allocated with id 0 (the answer is its id, from 1) and destroyed with a
    // timeout of 0. The 100 s timeout never expires during the suite.
    s.run("sched_op.watchdog", || {
        let mut arg = SchedWatchdog {
            id: 0,
            timeout: 100,
        };
        let id = hc::sched_op(&mut arg);
        let mut stop = SchedWatchdog {
            id: id.max(0) as u32,
            timeout: 0,
        };
        let destroy = hc::sched_op(&mut stop);
        values!("id={id} destroy={destroy}")
    });

    // Xen has NR_DOMAIN_WATCHDOG_TIMERS (2) per domain: a third is -ENOSPC, which Xen 4.17
    // returns as an unsigned int (`id == NR_DOMAIN_WATCHDOG_TIMERS ? -ENOSPC : id + 1` with a
    // uint32_t id): the guest sees 4294967268.
    s.run("sched_op.watchdog_full", || {
        let create = || {
            let mut arg = SchedWatchdog {
                id: 0,
                timeout: 100,
            };
            hc::sched_op(&mut arg)
        };
        let (first, second, third) = (create(), create(), create());
        let destroy = |id: i64| {
            let mut stop = SchedWatchdog {
                id: id.max(0) as u32,
                timeout: 0,
            };
            hc::sched_op(&mut stop)
        };
        let (d1, d2) = (destroy(first), destroy(second));
        values!("first={first} second={second} third={third} destroy={d1},{d2}")
    });

    s.run("sched_op.watchdog_unknown_id", || {
        let mut arg = SchedWatchdog { id: 2, timeout: 0 };
        let unused = hc::sched_op(&mut arg);
        let mut arg = SchedWatchdog {
            id: 1000,
            timeout: 0,
        };
        let out_of_range = hc::sched_op(&mut arg);
        values!("unused={unused} out_of_range={out_of_range}")
    });
}

/// The runstate area registered by `vcpu_op.register_runstate_area`: a static, so that a
/// hypervisor that kept writing it after the case (a failed undo) would not scribble on a stack.
static mut RUNSTATE_AREA: VcpuRunstateInfo = VcpuRunstateInfo {
    state: 0,
    _pad0: [0; 4],
    state_entry_time: 0,
    time: [0; 4],
};

fn vcpu_op_cases(s: &mut Suite) {
    s.run("vcpu_op.is_up", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::IsUp, 0))
    });

    s.run("vcpu_op.is_up_no_such_vcpu", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::IsUp, 1000))
    });

    s.run("vcpu_op.up_running", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::Up, 0))
    });

    // Xen copies the context before it looks at the vCPU: a bad pointer is -EFAULT even for a
    // vCPU that is already up, a good one -EEXIST.
    s.run("vcpu_op.initialise_bad_pointer", || {
        // SAFETY: an unmapped context: the copy fails before anything else happens.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_initialise.into(),
                0,
                UNMAPPED,
                0,
                0,
            )
        };
        values!("{rc}")
    });

    s.run("vcpu_op.initialise_running", || {
        let mut ctxt = VcpuGuestContext::default();
        // SAFETY: vCPU 0 is running, so the hypervisor must refuse to load this (empty) context.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_initialise.into(),
                0,
                gp(&raw mut ctxt),
                0,
                0,
            )
        };
        values!("{rc}")
    });

    s.run("vcpu_op.get_runstate_info", || {
        let mut info = VcpuRunstateInfo::default();
        let rc = hc::vcpu_op(0, &mut info);
        values!("rc={rc} state={}", info.state)
    });

    s.run("vcpu_op.get_runstate_info_bad_pointer", || {
        // SAFETY: an unmapped argument: -EFAULT.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_get_runstate_info.into(),
                0,
                UNMAPPED,
                0,
                0,
            )
        };
        values!("{rc}")
    });

    // A registered runstate area is written straight away (the vCPU is running) and kept up to
    // date; registering address 0 stops the updates.
    s.run("vcpu_op.register_runstate_area", || {
        let area = &raw mut RUNSTATE_AREA;
        // SAFETY: only this case touches the static, through raw pointers.
        unsafe { core::ptr::write_volatile(&raw mut (*area).state, -1) };
        let mut reg = VcpuRegisterRunstateMemoryArea { addr: gp(area) };
        let rc = hc::vcpu_op(0, &mut reg);
        let mut none = VcpuRegisterRunstateMemoryArea { addr: 0 };
        let undo = hc::vcpu_op(0, &mut none);
        // SAFETY: as above; volatile because the hypervisor wrote it.
        let state = unsafe { core::ptr::read_volatile(&raw const (*area).state) };
        values!("rc={rc} state={state} undo={undo}")
    });

    s.run("vcpu_op.get_physid", || {
        let mut id = hypercall_abi::vcpu::VcpuGetPhysid::default();
        values!("{}", hc::vcpu_op(0, &mut id))
    });

    s.run("vcpu_op.unknown_cmd", || {
        // SAFETY: an unknown command with a null argument: the hypervisor touches no memory.
        values!("{}", unsafe { hc::raw::vcpu_op(BAD_CMD, 0, 0) })
    });
}
