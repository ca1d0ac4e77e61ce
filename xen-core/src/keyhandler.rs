//! The hypervisor's debug keys (Xen's `common/keyhandler.c`).
//!
//! Serial input belongs to dom0 until three `CTRL-a` hand it to the hypervisor (and three more
//! back, `crate::console::InputSwitch`). Then each key prints a view of the machine: `q` the
//! domains and their vCPUs, `e` the event channels, `r` the scheduler, `p` the performance
//! counters (`P` resets them), `h` the list.

use crate::cpu::{printk, Arch, Hv};
use crate::domain::set::DomainSet;
use crate::evtchn::hypercall as event_channel;
use crate::regs::Regs;

/// Reads the serial console: bytes for dom0 are queued by the arch layer and announced with
/// `VIRQ_CONSOLE`; debug keys are handled ([`handle_key`]). `regs` are the running vCPU's.
pub fn poll<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs) {
    let mut keys: heapless::Vec<u8, 64> = heapless::Vec::new();
    let for_dom0 = hv.arch.poll_console(&mut |k| {
        let _ = keys.push(k);
    });
    if for_dom0 {
        // Xen raises VIRQ_CONSOLE in the hardware domain when serial input arrives for it.
        event_channel::send_global_virq(&mut hv.arch, doms, hypercall_abi::xen::VIRQ_CONSOLE);
    }
    for key in keys {
        handle_key(hv, doms, regs, key);
    }
}

/// Runs debug key `key`; an unknown key does nothing.
pub fn handle_key<A: Arch>(hv: &mut Hv<A>, doms: &mut DomainSet, regs: &Regs, key: u8) {
    let cur = hv.sched.cur;
    let arch = &mut hv.arch;
    match key {
        b'h' => printk!(
            arch,
            "'q' domains, 'e' event channels, 'r' scheduler, 'p' perf counters, 'P' reset them\n"
        ),
        b'q' => {
            for (slot, g) in doms.slots() {
                let d = &g.dom;
                let v = d.vcpu();
                printk!(
                    arch,
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
                let rip = if slot == cur {
                    regs.rip
                } else {
                    g.dom.vcpu().regs.rip
                };
                let mask = crate::shared_info::upcall_mask(&*arch, d);
                let pending = crate::shared_info::upcall_pending(&*arch, d);
                printk!(
                    arch,
                    "  v0: {} mode, {}, rip {:#x}, timer {:?}, periodic {} ns, upcall mask {} pending {}, run {} ns\n",
                    if v.kernel_mode { "kernel" } else { "user" },
                    if slot == cur {
                        "running"
                    } else if v.blocked || v.poll.is_some() {
                        "blocked"
                    } else {
                        "runnable"
                    },
                    rip,
                    v.timer_deadline,
                    v.periodic_period,
                    u8::from(mask),
                    u8::from(pending),
                    g.sched.run_ns
                );
            }
        }
        b'e' => {
            for (slot, g) in doms.slots() {
                let ports = doms.ports(slot);
                printk!(arch, "d{} event channels:\n", g.dom.id);
                for port in 1..ports.valid_ports() {
                    if let Some(c) = ports.channel(port) {
                        if c.state != crate::evtchn::ChannelState::Free {
                            let pending =
                                crate::evtchn::fifo::port_pending(&*arch, &g.dom, ports, port);
                            printk!(
                                arch,
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
            let timer_interrupts = arch.counters().timer_interrupts;
            printk!(
                arch,
                "scheduler: weighted round robin, slice {} us, idle {} ns in {} halts, timer interrupts {}, free frames {}, light switches {}\n",
                crate::sched::SLICE_NS / 1000,
                hv.sched.idle_ns,
                hv.sched.idle_halts,
                timer_interrupts,
                hv.pool.free_frames(),
                hv.sched.light_switches
            );
            for (slot, g) in doms.slots() {
                printk!(
                    arch,
                    "  d{}: weight {}, run {} ns, dispatched {}, preempted {}{}\n",
                    g.dom.id,
                    g.sched.weight,
                    g.sched.run_ns,
                    g.sched.dispatches,
                    g.sched.preemptions,
                    if slot == cur { " (running)" } else { "" }
                );
            }
        }
        b'p' => {
            for (_, g) in doms.slots() {
                printk!(arch, "d{} perf counters:", g.dom.id);
                for (name, value) in g.dom.vcpu().perf.named() {
                    printk!(arch, " {name}={value}");
                }
                printk!(arch, "\n");
            }
            let device_interrupts = arch.counters().device_interrupts;
            printk!(arch, "device interrupts: {}\n", device_interrupts);
        }
        b'P' => {
            for slot in doms.occupied() {
                if let Some(g) = doms.guest_mut(slot) {
                    g.dom.vcpu_mut().perf = Default::default();
                    printk!(arch, "d{} perf counters reset\n", g.dom.id);
                }
            }
        }
        _ => {}
    }
}
