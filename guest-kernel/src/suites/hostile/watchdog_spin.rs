//! `hostile=watchdog-spin`: a domU that arms its domain watchdog and then spins forever.
//!
//! `SCHEDOP_watchdog` is the guest's own watchdog (`domain_watchdog` in Xen's
//! `common/sched/core.c`): a domain that stops re-arming it is shut down with
//! `SHUTDOWN_watchdog` when it expires. Here the domain arms one for 1 s, checks Xen's answers
//! (ids from 1, -ENOSPC for a third, which Xen 4.17 returns as the unsigned 0xffffffe4, -EINVAL
//! for an unknown id), and spins with event delivery
//! masked, as a wedged kernel would. The hypervisor must still preempt it (the bystander runs),
//! fire the watchdog, and dom0 reports the shutdown and destroys it.

use core::sync::atomic::{AtomicU64, Ordering};
use hypercall_abi::sched::SchedWatchdog;

use crate::kernel::{console, hypercall as hc, shared_info};

fn watchdog(id: u32, timeout: u32) -> i64 {
    let mut w = SchedWatchdog { id, timeout };
    hc::sched_op(&mut w)
}

pub fn run() -> Result<(), &'static str> {
    let first = watchdog(0, 1);
    let second = watchdog(0, 100);
    let third = watchdog(0, 100);
    let unknown = watchdog(7, 5);
    // Keep only the 1 s one.
    let freed = watchdog(second.max(0) as u32, 0);
    println!(
        "hostile: watchdog-spin: first={first} second={second} third={third} unknown={unknown} freed={freed}"
    );
    println!("hostile: watchdog-spin: spinning");
    console::flush();
    shared_info::set_upcall_mask(1);
    // A plain loop, no `pause`: under QEMU's icount (the hostile tests' clock) every `pause`
    // leaves the translated code, so a `pause` loop would advance guest time a thousand times
    // slower than the instructions of a real spin do.
    let counter = AtomicU64::new(0);
    loop {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
