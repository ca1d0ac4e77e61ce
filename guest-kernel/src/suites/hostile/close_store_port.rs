//! `hostile=close-store-port`: a domU that closes its xenstore and console event channels as
//! soon as it starts, before dom0's toolstack has bound them.
//!
//! The domain builder leaves both ports unbound for dom0; they are the domU's own, and it may
//! close them. dom0's introduction then fails at `EVTCHNOP_bind_interdomain`, after it has mapped
//! both ring pages: it must give the two mapping windows back, not try again on every scan, and
//! destroy the domain (as libxl destroys a domain whose creation fails), so that every frame of
//! it returns to the pool.
//!
//! This runs before the domU's normal start (which waits for dom0). If dom0 was quicker and has
//! bound the ports already, the attack says so and powers off: that ordering tests nothing.

use hypercall_abi::event_channel::{EVTCHNSTAT_unbound, EvtchnClose, EvtchnStatus};
use hypercall_abi::sched::SchedNoArg;
use hypercall_abi::xen::{StartInfo, DOMID_SELF};

use crate::kernel::hypercall as hc;
use crate::kernel::{console, shared_info, time};

fn status(port: u32) -> u32 {
    let mut st = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    if hc::event_channel_op(&mut st) == 0 {
        st.status
    } else {
        u32::MAX
    }
}

fn close(port: u32) -> i64 {
    let mut c = EvtchnClose { port };
    hc::event_channel_op(&mut c)
}

/// The attack; returns only if dom0 had bound the ports already.
pub fn early(si: &StartInfo) {
    // For the clock only (the time of the attack is reported).
    let _ = shared_info::map(si);
    let (store, console_port) = (si.store_evtchn, si.console_domu_evtchn());
    let unbound = status(store) == EVTCHNSTAT_unbound && status(console_port) == EVTCHNSTAT_unbound;
    let at_ms = time::now_ns().unwrap_or(0) / time::MS;
    let (rc_store, rc_console) = (close(store), close(console_port));
    // Printed into the console ring, which dom0 reads only if it introduced us first.
    println!(
        "hostile: close-store-port: dom0_first={} closed={rc_store},{rc_console} at_ms={at_ms}",
        u8::from(!unbound)
    );
    console::flush();
    if !unbound {
        return;
    }
    // Nobody can reach us now: wait for dom0 to give up on us and destroy the domain.
    loop {
        hc::sched_op_noarg(SchedNoArg::Block);
    }
}

/// From the attack table (after dom0 introduced us): closing the ports then only cuts our own
/// line to dom0, which is no test of its introduction.
pub fn run() -> Result<(), &'static str> {
    println!("hostile: close-store-port: runs at start-up (see domu::run)");
    Ok(())
}
