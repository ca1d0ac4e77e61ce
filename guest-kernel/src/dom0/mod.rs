//! dom0's services: one event loop, and each service behind the one `Service` trait it
//! dispatches to (`service.rs`, with the `Ctx` they share).
//!
//! - **toolstack** (`toolstack.rs`): introduces every domU (rings, xenstore home) and tears it
//!   down when it stops; every other service attaches to and detaches from each domU.
//! - **xenstored** (`xenstored.rs`, over `xenstore.rs`): `guest_kernel::xenstored` serves every
//!   domU's store ring (connection = domid); dom0's own requests go straight to it as
//!   connection 0.
//! - **console daemon** (`console_daemon.rs`, over `console.rs`): drains every domU's console ring into `(d<id>) text`
//!   lines.
//! - **shell** (`shell.rs`): `xl`-like commands typed on the serial line; `console <id>`
//!   attaches the serial line to a domU's console until CTRL-].
//! - **block back end** (`blkback.rs`): a vbd per domU, served from dom0's disk (`blkdev.rs`,
//!   found through `pci.rs`).
//! - **network** (`net.rs`): the NIC (`netdev.rs`, virtio-net), dom0's own interface
//!   (`netstack.rs`, smoltcp: DHCP, echo, HTTP) and the domUs' vifs on one learning bridge.
//! - **demo partner** (`demo.rs`): the ping-pong and grant exchange `domu/mod.rs` describes.
//!
//! What services share is in `Ctx`: the xenstore (every service reads and writes nodes), the
//! console rings, the table of domUs, and the requests a service makes of the loop.

pub mod blkback;
mod blkbench;
pub mod blkdev;
mod builder;
mod console;
mod console_daemon;
mod demo;
mod grant_map;
mod net;
mod netback;
mod netdev;
mod netstack;
pub mod pci;
mod service;
mod shell;
mod toolstack;
mod virtio_blk;
mod xenstore;
mod xenstored;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use guest_kernel::cmdline::Cmdline;
use hypercall_abi::domctl::XEN_DOMINF_dying;
use hypercall_abi::sched::{SHUTDOWN_crash, SHUTDOWN_poweroff};
use hypercall_abi::xen::{StartInfo, VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER};

use self::blkback::Blkback;
use self::console_daemon::ConsoleDaemon;
use self::demo::Demo;
use self::net::Net;
use self::service::{Ctx, Request, Service};
use self::shell::Shell;
use self::toolstack::Toolstack;
use self::xenstored::XenstoredPump;
use crate::kernel::events::{self, Channel};
use crate::kernel::{heap, shared_info, time, traps};

/// Whether the hypervisor reports any domain besides dom0 (services mode's trigger).
pub fn has_domus() -> bool {
    toolstack::domus().is_ok_and(|d| !d.is_empty())
}

/// The loop's state: the shared context, the toolstack and the other services.
struct Dom0 {
    ctx: Ctx,
    toolstack: Toolstack,
    /// In attach order (detach runs backwards): the block back end first, the demo last.
    services: Vec<Box<dyn Service>>,
    poweroff: bool,
    /// The channels that fired in this pass (kept between passes: no allocation per pass).
    fired: Vec<Channel>,
}

impl Dom0 {
    /// Hands `channel` to every service, then does what they asked.
    fn dispatch(&mut self, channel: Channel) {
        self.toolstack.event(&mut self.ctx, channel);
        for s in self.services.iter_mut() {
            s.event(&mut self.ctx, channel);
        }
        self.requests();
    }

    /// Does what the services asked.
    fn requests(&mut self) {
        for r in self.ctx.take_requests() {
            match r {
                Request::Destroy(id) => self.toolstack.teardown(
                    &mut self.ctx,
                    &mut self.services,
                    id,
                    Some(XEN_DOMINF_dying),
                ),
                Request::Poweroff => self.poweroff = true,
            }
        }
    }

    /// One pass: the events that fired, the polls, dom0's watch events, the toolstack's look
    /// at the domains.
    fn pass(&mut self) {
        if !self.services.iter().any(|s| s.busy()) {
            let now = time::now_ns().unwrap_or(0);
            let until = self
                .services
                .iter_mut()
                .filter_map(|s| s.deadline_ns(now))
                .fold(now + 1000 * time::MS, u64::min);
            if until > now {
                events::wait(Some(until - now));
            }
        }
        let mut fired = core::mem::take(&mut self.fired);
        events::dispatch(|_, channel| fired.extend(channel));
        for channel in fired.drain(..) {
            self.dispatch(channel);
        }
        self.fired = fired;
        for s in self.services.iter_mut() {
            s.poll(&mut self.ctx);
        }
        while let Some((_, token)) = self.ctx.xs.next_watch_event() {
            for s in self.services.iter_mut() {
                if s.watch(&mut self.ctx, &token) {
                    break;
                }
            }
            self.requests();
        }
        self.toolstack
            .end_of_pass(&mut self.ctx, &mut self.services);
    }
}

/// dom0's boot module (`start_info.mod_start`, `mod_len`), if it has one.
fn boot_module(si: &StartInfo) -> Option<&'static [u8]> {
    if si.mod_start == 0 || si.mod_len == 0 {
        return None;
    }
    // SAFETY: the hypervisor maps the module inside dom0's initial region (`xen.h`'s start-of-day
    // layout), which the kernel keeps mapped and never hands to its frame allocator (free pages
    // start after the region); nothing writes it.
    Some(unsafe { core::slice::from_raw_parts(si.mod_start as *const u8, si.mod_len as usize) })
}

/// Runs the services until no domU is left (or forever with `stay`); returns the exit reason.
/// With `build-domu`, dom0 first builds its boot module as a domU with `domu_cmdline` (what
/// followed `--` on its command line).
pub fn run(si: &StartInfo, cmdline: &Cmdline<'_>, domu_cmdline: Option<&str>) -> u32 {
    if let Err(e) = shared_info::map(si) {
        println!("services: shared_info: {e}");
        return SHUTDOWN_crash;
    }
    if traps::install() != 0 || traps::register_upcall() != 0 {
        println!("services: cannot install the trap table or event callback");
        return SHUTDOWN_crash;
    }
    // `upcall-iret`: every upcall returns through HYPERVISOR_iret (to compare).
    if cmdline.has("upcall-iret") {
        traps::force_upcall_iret();
    }
    // FIFO events when the hypervisor offers them (`evtchn=2l` keeps the 2-level ABI).
    events::init_abi(cmdline.get("evtchn") == Some("2l"));
    match events::bind_virq(VIRQ_DOM_EXC) {
        Ok(p) => events::register(p, Channel::DomExc),
        Err(rc) => println!("toolstack: bind VIRQ_DOM_EXC={rc}"),
    }
    // Serial input (the hypervisor routes it to dom0 and raises VIRQ_CONSOLE): a small shell.
    if let Ok(p) = events::bind_virq(VIRQ_CONSOLE) {
        events::register(p, Channel::Input);
    }
    if let Ok(p) = events::bind_virq(VIRQ_TIMER) {
        events::register(p, Channel::Timer);
    }
    let stay = cmdline.has("stay");
    let net = Net::new(cmdline);
    let mut ctx = Ctx::new();
    ctx.vifs = net.serves_vifs();
    let mut d = Dom0 {
        ctx,
        toolstack: Toolstack::new(cmdline),
        services: vec![
            Box::new(Blkback::new(cmdline.get("vbd-slots"))),
            Box::new(net),
            Box::new(ConsoleDaemon::new()),
            Box::new(XenstoredPump),
            Box::new(Shell::new(
                cmdline.get("attach-console").and_then(|v| v.parse().ok()),
            )),
            Box::new(Demo::new(cmdline)),
        ],
        poweroff: false,
        fired: Vec::new(),
    };
    if let Some(b) = builder::from_boot_module(boot_module(si), cmdline, domu_cmdline.unwrap_or(""))
    {
        d.toolstack.adopt(b);
    }
    println!("services: toolstack, xenstored and console daemon running");
    blkback::init_disk();
    if let Some(v) = cmdline.get("bench-blkdev") {
        // `bench-blkdev=<start sector>`: dom0 on the disk directly, round by round as a domU's
        // `blk-bench` asks.
        let start = v.parse().unwrap_or_else(|_| {
            println!("services: bench-blkdev={v}: not a sector number, using 16384");
            16384
        });
        d.services.push(Box::new(blkbench::DirectBench::new(
            start,
            cmdline.get("vbd-slots"),
            guest_kernel::rates::Phases::from_arg(cmdline.get("bench-phases")).unwrap_or_else(
                |why| {
                    println!("services: {why}");
                    guest_kernel::rates::Phases::ALL
                },
            ),
        )));
    }
    d.toolstack.scan(&mut d.ctx, &mut d.services);
    while (stay || !d.ctx.doms.is_empty()) && !d.poweroff {
        d.pass();
    }
    let heap = heap::usage();
    println!(
        "dom0: heap {} KiB in {} arena(s) taken from free pages, {} KiB in use, {} KiB at most",
        heap.size >> 10,
        heap.arenas,
        heap.used >> 10,
        heap.peak >> 10
    );
    println!("services: no domU left, powering off");
    SHUTDOWN_poweroff
}
