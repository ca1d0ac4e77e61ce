//! The demo partner (`domu/mod.rs` describes the protocol): on a domU's `data/ready`, bind its
//! ping port, bounce its events, grant-copy its pattern page, check it, copy the complement
//! into its reply page and write `data/result`. With `restart-first`, `two-domain-cases` and
//! `bench-copies=<n>` on dom0's command line it also restarts the first domU, runs the cases
//! only two domains can run, and times grant copies (`make bench`).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::demo;
use hypercall_abi::sched::SHUTDOWN_poweroff;
use hypercall_abi::HypercallError;

use super::service::{Ctx, Service};
use super::toolstack;
use super::xenstore::{Store, Xenstore};
use crate::kernel::events::{self, Channel};
use crate::kernel::grant::{self, CopyEnd, GrantError};
use crate::kernel::hypercall as hc;
use crate::kernel::mm;
use crate::kernel::time::{self, rdtsc};

/// The demo partner's state for one domU.
struct Ping {
    port: u32,
    rounds: u32,
    seen: u32,
    /// TSC when dom0 last sent an event on the channel.
    sent_at: u64,
    /// Round trips measured (TSC cycles, dom0 send to the domU's answer arriving).
    rtts: Vec<u64>,
    /// The pattern and reply grants (`None`: the domU has no grant table).
    grefs: Option<(u32, u32)>,
    /// dom0's hypervisor counters and upcall count at the kick, when benchmarking: the bench
    /// line gives what one round trip cost dom0 (hypercalls, fast exits, dispatches, upcalls).
    before: Option<(guest_kernel::pt_lab::Counters, u32)>,
}

/// Why the grant exchange failed.
#[derive(Debug)]
enum ExchangeError {
    /// A buffer page has no machine frame.
    NoFrame,
    /// A grant copy was refused.
    Copy(GrantError),
    /// The pattern differs at this byte.
    Mismatch(usize),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::NoFrame => write!(f, "buffer has no frame"),
            ExchangeError::Copy(e) => write!(f, "{e}"),
            ExchangeError::Mismatch(i) => write!(f, "pattern mismatch at byte {i}"),
        }
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// dom0's grant-copy buffers: what it copies in, and the reply it copies out. Written by the
/// hypervisor during copies: reached only through raw pointers.
static mut BUFFERS: [Page; 2] = [Page([0; 4096]), Page([0; 4096])];

fn buffer_va(i: usize) -> u64 {
    // SAFETY: address of an element of a static array; nothing is dereferenced.
    unsafe { (&raw mut BUFFERS[i]) as u64 }
}

/// The demo partner: one ping-pong per domU that published its data.
pub struct Demo {
    pings: BTreeMap<u16, Ping>,
    /// `restart-first` on dom0's command line: after the first domU's demo, restart it with
    /// `SCHEDOP_remote_shutdown(SHUTDOWN_reboot)` (the hypervisor builds it again under a new id);
    /// after any later demo, shut that domU down (`SHUTDOWN_poweroff`). For domUs started with
    /// `linger`, which wait for dom0 after their demo.
    restart_first: bool,
    /// Whether the restart was done.
    restarted: bool,
    /// `two-domain-cases` on dom0's command line: after each domU's demo, run the two-domain
    /// event-channel and grant cases against it (`case2 <name> = <value>` lines).
    cases: bool,
    /// `bench-copies=<n>` on dom0's command line: after each domU's demo, time `n` grant copies
    /// of its page and print the figures with the round trips (`make bench`).
    bench_copies: u32,
}

impl Service for Demo {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if let Channel::Ping(id) = channel {
            self.pinged(ctx, id);
        }
    }

    fn watch(&mut self, ctx: &mut Ctx, token: &str) -> bool {
        match token.strip_prefix("data").and_then(|t| t.parse().ok()) {
            Some(id) => {
                self.data_changed(ctx, id);
                true
            }
            None => false,
        }
    }

    fn detach(&mut self, _ctx: &mut Ctx, id: u16) {
        if let Some(p) = self.pings.remove(&id) {
            let _ = events::close(p.port);
        }
    }
}

impl Demo {
    /// The demo partner as dom0's command line sets it up.
    pub fn new(cmdline: &Cmdline<'_>) -> Demo {
        Demo {
            pings: BTreeMap::new(),
            restart_first: cmdline.has("restart-first"),
            restarted: false,
            cases: cmdline.has("two-domain-cases"),
            bench_copies: cmdline
                .get("bench-copies")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// A watch on some domU's `data` fired: start the demo if it is ready.
    fn data_changed(&mut self, ctx: &mut Ctx, id: u16) {
        if !ctx.doms.contains_key(&id) || self.pings.contains_key(&id) {
            return;
        }
        let base = format!("/local/domain/{id}/data");
        if ctx.xs.read(&format!("{base}/ready")).as_deref() != Some("1") {
            return;
        }
        let num = |xs: &mut Xenstore, n: &str| -> Option<u32> {
            xs.read(&format!("{base}/{n}"))?.parse().ok()
        };
        let xs = &mut ctx.xs;
        let grefs = (num(xs, "gref"), num(xs, "reply-gref"));
        let (Some(port), Some(rounds)) = (num(xs, "ping-port"), num(xs, "rounds")) else {
            println!("dom0: d{id} published incomplete data");
            return;
        };
        let local = match events::bind_interdomain(id, port) {
            Ok(p) => p,
            Err(rc) => {
                println!("dom0: d{id} bind_interdomain({port})={rc}");
                return;
            }
        };
        events::register(local, Channel::Ping(id));
        {
            let ping = Ping {
                port: local,
                rounds,
                seen: 0,
                sent_at: 0,
                // The domU chooses `rounds`: measure (and allocate) only when benchmarking, and
                // never more than a bounded sample.
                rtts: if self.bench_copies > 0 {
                    Vec::with_capacity(rounds.min(10_000) as usize)
                } else {
                    Vec::new()
                },
                grefs: match grefs {
                    (Some(a), Some(b)) => Some((a, b)),
                    _ => None,
                },
                before: None,
            };
            self.pings.insert(id, ping);
        }
        // Xen marks a freshly bound port pending (so no event can be lost in the race with the
        // peer); here that would count as the first ping. Upcalls are masked in this loop, so
        // the bit has not been delivered yet: clear it.
        events::clear_pending(local);
        events::take(local);
        // The kick: the domU starts bouncing once it knows we are bound.
        let bench = self.bench_copies > 0;
        if let Some(p) = self.pings.get_mut(&id) {
            if bench {
                p.before =
                    crate::suites::pt_workload::perf_counters().map(|c| (c, events::upcalls()));
            }
            p.sent_at = rdtsc();
        }
        let _ = events::send(local);
    }

    /// A ping from `id`: answer it; after the last, do the grant exchange.
    fn pinged(&mut self, ctx: &mut Ctx, id: u16) {
        let Some(p) = self.pings.get_mut(&id) else {
            return;
        };
        if p.seen >= p.rounds {
            return;
        }
        let now = rdtsc();
        if p.rtts.len() < p.rtts.capacity() {
            p.rtts.push(now.wrapping_sub(p.sent_at));
        }
        p.seen += 1;
        p.sent_at = rdtsc();
        let _ = events::send(p.port);
        if p.seen < p.rounds {
            return;
        }
        let rounds = p.rounds;
        if self.bench_copies > 0 {
            let mut rtts = core::mem::take(&mut p.rtts);
            rtts.sort_unstable();
            let after = crate::suites::pt_workload::perf_counters().map(|c| (c, events::upcalls()));
            // Per round trip, dom0's side: its hypercalls (the counter's reading itself is one
            // more), those that took the fast way back, its dispatches and upcalls.
            let per = match (p.before, after) {
                (Some((b, ub)), Some((a, ua))) => {
                    let d = a.since(&b);
                    let r = f64::from(rounds.max(1));
                    format!(
                        " dom0_hypercalls_per_rtt={:.2} dom0_fast_exits_per_rtt={:.2} dom0_dispatches_per_rtt={:.2} dom0_upcalls_per_rtt={:.2}",
                        f64::from(d.hypercalls.saturating_sub(1)) / r,
                        f64::from(d.fast_exits) / r,
                        f64::from(d.dispatches) / r,
                        f64::from(ua.wrapping_sub(ub)) / r
                    )
                }
                _ => alloc::string::String::new(),
            };
            if let Some(&median) = rtts.get(rtts.len() / 2) {
                println!(
                    "bench evtchn_rtt dom={id} rounds={} median_cycles={median} min_cycles={}{per}",
                    rtts.len(),
                    rtts[0]
                );
            }
        }
        let Some((gref, reply_gref)) = p.grefs else {
            ctx.xs
                .write(&format!("/local/domain/{id}/data/result"), "ok nogrant");
            println!("dom0: d{id} ping-pong {rounds} ok, no grants offered");
            return;
        };
        let port = p.port;
        let result = grant_exchange(id, gref, reply_gref);
        if self.restart_first {
            let reason = if self.restarted {
                SHUTDOWN_poweroff
            } else {
                hypercall_abi::sched::SHUTDOWN_reboot
            };
            self.restarted = true;
            let mut r = hypercall_abi::sched::SchedRemoteShutdown {
                domain_id: id,
                reason,
                ..Default::default()
            };
            let rc = hc::sched_op(&mut r);
            println!(
                "toolstack: remote_shutdown(d{id}, {})={rc}",
                toolstack::reason(reason)
            );
        }
        if self.cases {
            let remote = ctx.xs.read(&format!("/local/domain/{id}/data/ping-port"));
            let remote = remote.and_then(|r| r.parse().ok()).unwrap_or(0);
            two_domain_cases(id, gref, reply_gref, remote, port);
        }
        if result.is_ok() && self.bench_copies > 0 {
            bench_grant_copy(id, gref, self.bench_copies);
        }
        match result {
            Ok(sum) => {
                ctx.xs.write(
                    &format!("/local/domain/{id}/data/result"),
                    &format!("ok {sum}"),
                );
                println!("dom0: d{id} ping-pong {rounds} ok, grant copy 4096 bytes ok");
            }
            Err(e) => {
                ctx.xs.write(
                    &format!("/local/domain/{id}/data/result"),
                    &format!("error {e}"),
                );
                println!("dom0: d{id} ping-pong {rounds} ok, grant exchange FAILED: {e}");
            }
        }
    }
}

/// Cases only two domains can run: dom0 against a domU's event channels and grants (a
/// read-only pattern grant `ro_gref`, a writable `rw_gref`, and the domU's port `remote` that dom0
/// bound as `local`). Prints `case2 <name> = <value>`; the QEMU test states the expected values
/// (Xen 4.17's answers).
fn two_domain_cases(id: u16, ro_gref: u32, rw_gref: u32, remote: u32, local: u32) {
    use hypercall_abi::grant_table::{
        GNTMAP_device_map, GNTMAP_readonly, GnttabMapGrantRef, GnttabUnmapGrantRef,
    };
    let case = |name: &str, v: i64| println!("case2 {name} = {v}");
    let rc = |r: Result<u32, HypercallError>| r.map_or_else(HypercallError::ret, |_| 0);
    // Event channels.
    case(
        "evtchn.rebind_bound_remote_port",
        rc(events::bind_interdomain(id, remote)),
    );
    case(
        "evtchn.bind_remote_port_beyond_valid",
        rc(events::bind_interdomain(id, 4000)),
    );
    case(
        "evtchn.bind_remote_port_zero",
        rc(events::bind_interdomain(id, 0)),
    );
    case(
        "evtchn.bind_missing_domain",
        rc(events::bind_interdomain(999, 1)),
    );
    case(
        "evtchn.send_bound",
        events::send(local).map_or_else(HypercallError::ret, |()| 0),
    );
    // Grants: device mappings (no virtual address needed).
    let map = |gref: u32, dom: u16, readonly: bool| {
        let mut op = [GnttabMapGrantRef {
            flags: GNTMAP_device_map | if readonly { GNTMAP_readonly } else { 0 },
            r#ref: gref,
            dom,
            ..Default::default()
        }];
        let r = hc::grant_table_op(&mut op);
        (r, op[0].status, op[0].handle, op[0].dev_bus_addr)
    };
    let unmap = |handle: u32, bus: u64| {
        let mut op = [GnttabUnmapGrantRef {
            dev_bus_addr: bus,
            handle,
            ..Default::default()
        }];
        let r = hc::grant_table_op(&mut op);
        if r != 0 {
            r
        } else {
            i64::from(op[0].status)
        }
    };
    let (r, st, _, _) = map(ro_gref, id, false);
    case(
        "grant.map_readonly_grant_writable",
        if r != 0 { r } else { i64::from(st) },
    );
    let (r, st, h, bus) = map(ro_gref, id, true);
    case(
        "grant.map_readonly_grant_readonly",
        if r != 0 { r } else { i64::from(st) },
    );
    if r == 0 && st == 0 {
        case("grant.unmap", unmap(h, bus));
        case("grant.double_unmap", unmap(h, bus));
    }
    let (r, st, h, bus) = map(rw_gref, id, false);
    case(
        "grant.map_writable_grant_writable",
        if r != 0 { r } else { i64::from(st) },
    );
    if r == 0 && st == 0 {
        case("grant.unmap_writable", unmap(h, bus));
    }
    let (r, st, _, _) = map(100_000, id, true);
    case(
        "grant.map_ref_out_of_range",
        if r != 0 { r } else { i64::from(st) },
    );
    let (r, st, _, _) = map(ro_gref, 999, true);
    case(
        "grant.map_missing_domain",
        if r != 0 { r } else { i64::from(st) },
    );
    case("grant.unmap_bad_handle", unmap(0xffff, 0));
    let Some(local_mfn) = mm::va_to_mfn(buffer_va(0)) else {
        return;
    };
    let status = |r: Result<(), grant::GrantError>| match r {
        Ok(()) => 0,
        Err(grant::GrantError::Status(_, st)) => i64::from(st),
        Err(grant::GrantError::Hypercall(_, rc)) => rc,
        Err(_) => i64::MIN,
    };
    case(
        "grant.copy_into_readonly_grant",
        status(grant::copy(
            CopyEnd::Local { mfn: local_mfn },
            CopyEnd::Grant {
                domid: id,
                gref: ro_gref,
            },
            16,
        )),
    );
    case(
        "grant.copy_from_readonly_grant",
        status(grant::copy(
            CopyEnd::Grant {
                domid: id,
                gref: ro_gref,
            },
            CopyEnd::Local { mfn: local_mfn },
            16,
        )),
    );
    case(
        "grant.copy_longer_than_a_page",
        status(grant::copy(
            CopyEnd::Grant {
                domid: id,
                gref: ro_gref,
            },
            CopyEnd::Local { mfn: local_mfn },
            4097,
        )),
    );
}

/// Times `copies` grant copies of `id`'s 4 KiB page into a local page, one per hypercall, and
/// prints the median cost and the throughput.
fn bench_grant_copy(id: u16, gref: u32, copies: u32) {
    let Some(local) = mm::va_to_mfn(buffer_va(0)) else {
        return;
    };
    let mut each = Vec::with_capacity(copies as usize);
    let start = time::now_ns();
    for _ in 0..copies {
        let t0 = rdtsc();
        let r = grant::copy(
            CopyEnd::Grant { domid: id, gref },
            CopyEnd::Local { mfn: local },
            4096,
        );
        each.push(rdtsc().wrapping_sub(t0));
        if r.is_err() {
            println!("bench grant_copy dom={id} failed");
            return;
        }
    }
    let (Some(start), Some(end)) = (start, time::now_ns()) else {
        return;
    };
    let ns = end.saturating_sub(start).max(1);
    each.sort_unstable();
    let mb_s = u64::from(copies) * 4096 * 1000 / ns;
    println!(
        "bench grant_copy dom={id} copies={copies} bytes=4096 median_cycles={} total_ns={ns} mb_per_s={mb_s}",
        each[each.len() / 2]
    );
}

/// Copies `id`'s pattern page in, checks it, and copies its complement into the reply page;
/// returns the pattern's checksum.
fn grant_exchange(id: u16, gref: u32, reply_gref: u32) -> Result<u32, ExchangeError> {
    let mfn = |i| mm::va_to_mfn(buffer_va(i)).ok_or(ExchangeError::NoFrame);
    let (m0, m1) = (mfn(0)?, mfn(1)?);
    grant::copy(
        CopyEnd::Grant { domid: id, gref },
        CopyEnd::Local { mfn: m0 },
        4096,
    )
    .map_err(ExchangeError::Copy)?;
    let mut data = [0u8; 4096];
    // SAFETY: our own .bss page, just written by the hypervisor's copy; no reference held.
    unsafe { core::ptr::copy_nonoverlapping(buffer_va(0) as *const u8, data.as_mut_ptr(), 4096) };
    if let Some(i) = (0..4096).find(|&i| data[i] != demo::pattern(id, i)) {
        return Err(ExchangeError::Mismatch(i));
    }
    for (i, b) in data.iter().enumerate() {
        // SAFETY: as above; the reply page is ours and not referenced.
        unsafe { core::ptr::write_volatile((buffer_va(1) as *mut u8).add(i), !b) };
    }
    grant::copy(
        CopyEnd::Local { mfn: m1 },
        CopyEnd::Grant {
            domid: id,
            gref: reply_gref,
        },
        4096,
    )
    .map_err(ExchangeError::Copy)?;
    Ok(demo::checksum(&data))
}
