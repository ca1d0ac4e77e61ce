//! The kernel as a domU: console front end, xenbus client, and the demo run with dom0.
//!
//! Xen's domU start_info names the xenstore ring (`store_mfn`, `store_evtchn`) and the console
//! ring (`console.domU`): pages of the initial region, so mapped at `pfn << 12` (pfn from the
//! M2P), with ports allocated unbound for dom0. Output goes into the console ring
//! (`console.rs`); xenstore requests go through `ring_drivers::xenbus` on the store ring.
//!
//! The demo (agreed with dom0's services, `dom0/`): read our `domid`; allocate an unbound port for
//! dom0 and grant it two pages (a pattern, read-only; a reply page, writable); publish
//! `data/{ping-port,gref,reply-gref,rounds,ready}` in one transaction. dom0 (watching
//! `/local/domain/<id>/data`) binds the port and sends one kick; we then bounce `rounds` events
//! (ping, pong), and dom0 grant-copies the pattern, checks it, copies its complement into the
//! reply page and writes `data/result` = `ok <sum>`, which we watch. Then we power off.
//!
//! Then the block device (`blkfront.rs`): connect vbd 51712, read sector 0, close. Then, if dom0
//! made a vif for us (`device/vif/0`), the network (`net.rs` over `netfront.rs`): DHCP, HTTP on
//! port 80, echo on port 7, until dom0 shuts us down; without one the domU powers off as before.
//! `blk-selftest=<seed>,<start>,<sectors>`, `blk-evil`, `blk-reconnects=<n>` and `blk-bench[=<start>]` run a block mode
//! instead of the demo; `blk-crash` connects the vbd and then crashes (dom0's teardown test);
//! `blk-no-persistent` makes blkfront not offer persistent grants (`feature-persistent=0`).
//!
//! `net-evil` attacks dom0's netback instead (`net_evil.rs`): bad packets, a flood, an overrun.
//!
//! With a second vCPU (`vcpus=2` on the module line) the domU first brings it up and runs the
//! cross-vCPU test (`smp.rs`), then does the rest on vCPU 0.
//!
//! With `linger` the domU then stays up, its balloon following `memory/target` (`balloon.rs`).
//!
//! `crash=wild-write|triple-fault|bad-hypercall` makes the hypervisor crash the domain instead.
//! `hostile=<name>` makes one of the attacks of [`crate::suites::hostile`] and powers off.

use alloc::format;
use alloc::string::String;
use core::arch::asm;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::demo;
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::{SHUTDOWN_crash, SHUTDOWN_poweroff};
use hypercall_abi::xen::{StartInfo, VIRQ_TIMER};
use ring_drivers::xenbus::{Reply, Request};

use client::Client;
use error::DomuError;

use crate::kernel::boot::hypercall_page;
use crate::kernel::events::{self, Channel};
use crate::kernel::grant;
use crate::kernel::hypercall as hc;
use crate::kernel::ring_page::MappedPage;
use crate::kernel::{console, mm, shared_info, time, traps};

pub mod balloon;
pub mod blkfront;
pub mod client;
pub mod error;
pub mod net;
pub mod net_evil;
pub mod netfront;
pub mod smp;
pub mod xenbus_front;

/// A ring page of our initial region, from its machine frame.
fn own_page(mfn: u64) -> Option<MappedPage> {
    let pfn = mm::mfn_to_pfn(mfn);
    (mm::pfn_to_mfn(pfn) == Some(mfn)).then(|| {
        // SAFETY: a page of our initial region (the p2m maps it back to `mfn`), which Xen maps at
        // pfn << 12 for our lifetime; the rings are only reached through `MappedPage`.
        unsafe { MappedPage::new(pfn << 12) }
    })
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The granted pages: the pattern (read-only for dom0) and the reply (written by dom0's copy).
/// Only reached through raw pointers: dom0 writes the reply page through the hypervisor.
static mut GRANTED: [Page; 2] = [Page([0; 4096]), Page([0; 4096])];

fn granted_va(i: usize) -> u64 {
    // SAFETY: address of an element of a static array; nothing is dereferenced.
    unsafe { (&raw mut GRANTED[i]) as u64 }
}

fn read_granted(i: usize) -> [u8; 4096] {
    let mut out = [0u8; 4096];
    // SAFETY: a page of our .bss, written by the hypervisor's grant copy between our calls:
    // volatile reads, no reference held.
    unsafe { core::ptr::copy_nonoverlapping(granted_va(i) as *const u8, out.as_mut_ptr(), 4096) };
    out
}

/// Sends console output to the console ring from now on (if start_info names one of our pages).
pub fn early_console(si: &StartInfo) {
    if let Some(page) = own_page(si.console_domu_mfn()) {
        // SAFETY: the console page stays mapped in our initial region for our lifetime.
        unsafe { console::use_ring(page.va(), si.console_domu_evtchn()) };
    }
}

/// Runs the domU: never returns.
pub fn run(si: &StartInfo, cmdline: &Cmdline<'_>) -> ! {
    if let Some(name) = cmdline.get("hostile") {
        // An attack that returns from here found nothing to attack: power off.
        crate::suites::hostile::early(si, name);
        if name == "close-store-port" {
            hc::shutdown(SHUTDOWN_poweroff);
        }
    }
    let reason = match main(si, cmdline) {
        Ok(()) if cmdline.has("linger") => {
            // Stay up until dom0 shuts us down (`SCHEDOP_remote_shutdown`): the restart test.
            println!("domU: lingering until dom0 shuts me down");
            console::flush();
            loop {
                events::wait(None);
                console::flush();
            }
        }
        Ok(()) => SHUTDOWN_poweroff,
        Err(e) => {
            println!("domU: FAILED: {e}");
            SHUTDOWN_crash
        }
    };
    console::flush();
    hc::shutdown(reason)
}

fn setup(si: &StartInfo, cmdline: &Cmdline<'_>) -> Result<Client, DomuError> {
    shared_info::map(si).map_err(DomuError::SharedInfo)?;
    if traps::install() != 0 || traps::register_upcall() != 0 {
        return Err(DomuError::Handlers);
    }
    // `upcall-iret`: every upcall returns through HYPERVISOR_iret (to compare).
    if cmdline.has("upcall-iret") {
        traps::force_upcall_iret();
    }
    own_page(si.console_domu_mfn()).ok_or(DomuError::NotOurPage("console"))?;
    events::register(si.console_domu_evtchn(), Channel::Console(0));
    let store = own_page(si.store_mfn).ok_or(DomuError::NotOurPage("xenstore"))?;
    events::register(si.store_evtchn, Channel::Store(0));
    if let Ok(p) = events::bind_virq(VIRQ_TIMER) {
        events::register(p, Channel::Timer);
    }
    // FIFO events when offered (`evtchn=2l` keeps 2-level); the ports bound so far carry over.
    events::init_abi(cmdline.get("evtchn") == Some("2l"));
    Ok(Client::new(store, si.store_evtchn))
}

fn main(si: &StartInfo, cmdline: &Cmdline<'_>) -> Result<(), DomuError> {
    let mut d = setup(si, cmdline)?;
    if let Some(way) = cmdline.get("crash") {
        crash(way);
    }
    let domid = match d.read("domid")? {
        Ok(v) => core::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| DomuError::BadNode(String::from("domid"), "not a number"))?,
        Err(e) => return Err(DomuError::Refused(String::from("read domid"), e)),
    };
    println!("domU: my domid is {domid} (from xenstore)");
    // With a second vCPU (`vcpus=2`): bring it up and run the cross-vCPU test first.
    if crate::kernel::smp::count() > 1 {
        smp::run()?;
    }
    // The block modes skip the ping-pong demo.
    if cmdline.has("blk-no-persistent") {
        blkfront::set_offer_persistent(false);
    }
    if let Some(arg) = cmdline.get("blk-selftest") {
        return blkfront::selftest(&mut d, arg);
    }
    if let Some(arg) = cmdline.get("blk-soak") {
        return blkfront::soak(&mut d, arg);
    }
    if cmdline.has("blk-evil") {
        return blkfront::evil(&mut d);
    }
    if cmdline.has("net-evil") {
        return net_evil::run(&mut d, cmdline);
    }
    if let Some((arg, all)) = cmdline
        .get("fuzz")
        .map(|a| (a, false))
        .or_else(|| cmdline.get("fuzz-all").map(|a| (a, true)))
    {
        let (n, ok) = crate::suites::fuzz::run(arg, all).map_err(DomuError::Suite)?;
        println!("fuzz: done: {n} hypercalls, {ok} returned 0");
        return Ok(());
    }
    if let Some(name) = cmdline.get("hostile") {
        crate::suites::hostile::DOMID.store(domid, core::sync::atomic::Ordering::Relaxed);
        return crate::suites::hostile::run(name).map_err(DomuError::Suite);
    }
    if let Some(arg) = cmdline.get("blk-reconnects") {
        return blkfront::reconnects(&mut d, arg);
    }
    if cmdline.has("blk-crash") {
        // Die with the vbd connected: dom0 must tear it down after the fact.
        let _vbd = blkfront::open(&mut d)?;
        crash("wild-write");
    }
    if cmdline.has("blk-bench") {
        let which = guest_kernel::rates::Phases::from_arg(cmdline.get("bench-phases"))
            .unwrap_or_else(|why| {
                println!("domU: {why}");
                guest_kernel::rates::Phases::ALL
            });
        return blkfront::bench(&mut d, cmdline.get("blk-bench"), which);
    }
    let rounds: u32 = cmdline
        .get("pingpong")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);

    // The pages and the port dom0 will use.
    for i in 0..4096 {
        // SAFETY: our own .bss page; not yet granted, no reference held.
        unsafe {
            core::ptr::write_volatile((granted_va(0) as *mut u8).add(i), demo::pattern(domid, i))
        };
    }
    // Without grant tables (a hypervisor that lacks them) the demo is the ping-pong alone.
    let grants = match grant::init() {
        Ok(()) => {
            let mfn = |i| mm::va_to_mfn(granted_va(i)).ok_or(DomuError::NoFrame("granted page"));
            let gref = grant::grant_access(0, mfn(0)?, true).map_err(DomuError::Grant)?;
            let reply_gref = grant::grant_access(0, mfn(1)?, false).map_err(DomuError::Grant)?;
            Ok((gref, reply_gref))
        }
        Err(e) => Err(e),
    };
    let ping = events::alloc_unbound(0).map_err(|rc| DomuError::Evtchn("alloc_unbound", rc))?;
    events::register(ping, Channel::Ping(0));

    // Watch for dom0's result before publishing, so the answer cannot be missed.
    d.ok(
        0,
        &Request::Watch {
            path: "data/result",
            token: "result",
        },
    )?
    .map_err(|e| DomuError::Refused(String::from("watch"), e))?;
    publish(&mut d, ping, grants.as_ref().ok().copied(), rounds)?;

    // Ping-pong: wait for dom0's kick, then `rounds` round trips.
    let start = time::now_ns().unwrap_or(0);
    while d.pings() < 1 {
        d.timed_out(start)?;
        d.step();
    }
    for r in 0..rounds {
        events::send(ping).map_err(|rc| DomuError::Evtchn("send", rc))?;
        while d.pings() < r + 2 {
            d.timed_out(start)?;
            d.step();
        }
    }

    // dom0's verdict.
    let result = loop {
        if let Some(w) = d.watches.pop_front() {
            if w.token == "result" {
                if let Ok(v) = d.read("data/result")? {
                    break v;
                }
            }
            continue;
        }
        d.timed_out(start)?;
        d.step();
    };
    let text = String::from_utf8_lossy(&result).into_owned();
    let (gref, reply_gref) = match grants {
        Ok(g) => g,
        Err(e) => {
            if text != "ok nogrant" {
                return Err(DomuError::Check(format!(
                    "dom0 said '{text}' (expected 'ok nogrant')"
                )));
            }
            println!("domU: ping-pong {rounds} round trips ok, grant copy skipped ({e})");
            return Ok(());
        }
    };
    let expect = format!("ok {}", demo::checksum(&read_granted(0)));
    let reply = read_granted(1);
    let complement = (0..4096).all(|i| reply[i] == !demo::pattern(domid, i));
    grant::end_access(gref);
    grant::end_access(reply_gref);
    if text != expect || !complement {
        return Err(DomuError::Check(format!(
            "dom0 said '{text}' (expected '{expect}'), reply page {}",
            if complement { "ok" } else { "wrong" }
        )));
    }
    println!("domU: ping-pong {rounds} round trips ok, grant copy verified");
    // The block device: read sector 0 through the split driver.
    let vbd = blkfront::demo(&mut d)?;
    // The network, if dom0 made us a vif: served until dom0 shuts us down.
    net::serve_if_vif(&mut d, domid, cmdline)?;
    // Lingering: the balloon follows `memory/target` until dom0 shuts us down.
    if cmdline.has("linger") {
        println!("domU: lingering until dom0 shuts me down");
        return balloon::serve(&mut d, vbd);
    }
    Ok(())
}

/// Writes `data/*` in one transaction (retried on EAGAIN).
/// `grefs` is `None` without grant tables: dom0 then skips the copies.
fn publish(
    d: &mut Client,
    ping: u32,
    grefs: Option<(u32, u32)>,
    rounds: u32,
) -> Result<(), DomuError> {
    let g = |v: Option<u32>| v.map_or(String::from("none"), |r| format!("{r}"));
    for _ in 0..10 {
        let tx = match d.request(0, &Request::TransactionStart)? {
            Reply::TransactionId(t) => t,
            other => {
                return Err(DomuError::Unexpected(
                    String::from("transaction start"),
                    other,
                ))
            }
        };
        let nodes = [
            ("data/ping-port", format!("{ping}")),
            ("data/gref", g(grefs.map(|g| g.0))),
            ("data/reply-gref", g(grefs.map(|g| g.1))),
            ("data/rounds", format!("{rounds}")),
            ("data/ready", String::from("1")),
        ];
        for (path, value) in &nodes {
            d.ok(tx, &Request::Write(path, value.as_bytes()))?
                .map_err(|e| DomuError::Refused(format!("write {path}"), e))?;
        }
        match d.ok(tx, &Request::TransactionEnd(true))? {
            Ok(()) => return Ok(()),
            Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(DomuError::Refused(String::from("transaction end"), e)),
        }
    }
    Err(DomuError::Check(String::from(
        "transaction kept failing with EAGAIN",
    )))
}

/// Makes the hypervisor crash this domain in one of three ways.
fn crash(way: &str) -> ! {
    println!("domU: crashing by {way}");
    console::flush();
    match way {
        "wild-write" => {
            // No trap table: the page fault has no handler to bounce to.
            // SAFETY: clearing the virtual IDT; the next fault is meant to be fatal.
            unsafe { hc::set_trap_table(None) };
            // SAFETY: deliberately writes to an unmapped address, to be killed for it.
            unsafe { core::ptr::write_volatile(0x0000_6000_0000_0000 as *mut u64, 0xdead) };
        }
        "triple-fault" => {
            // An exception with the stack pointer on an unmapped page: the hypervisor cannot
            // write the bounce frame, so the exception cannot be delivered.
            // SAFETY: never returns; the hypervisor crashes the domain at the `ud2`.
            unsafe {
                asm!(
                    "mov rsp, {bad}",
                    "ud2",
                    bad = in(reg) 0x0000_6000_0000_1000u64,
                    options(noreturn)
                )
            };
        }
        "bad-hypercall" => {
            // `iret` to user mode (CS with RPL 3) without user page tables: Xen's
            // "guest switching to user mode with no user page tables" -> domain_crash.
            let stub = (&raw const hypercall_page).cast::<u8>() as u64
                + u64::from(hypercall_abi::xen::__HYPERVISOR_iret) * 32;
            // SAFETY: builds an iret_context (flags, rip, cs, rflags, rsp, ss) on our stack and
            // jumps to the iret stub; the hypervisor crashes the domain instead of returning.
            unsafe {
                asm!(
                    "mov rax, rsp",
                    "push 0xe02b",
                    "push rax",
                    "push 0x202",
                    "push 0xe033",
                    "lea rax, [rip + 2f]",
                    "push rax",
                    "push 0",
                    "jmp rdx",
                    "2: ud2",
                    in("rdx") stub,
                    options(noreturn)
                )
            };
        }
        _ => println!("domU: unknown crash way '{way}'"),
    }
    println!("domU: still alive after crash={way}");
    console::flush();
    hc::shutdown(SHUTDOWN_crash)
}
