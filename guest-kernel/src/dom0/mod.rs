//! dom0's services mode: a toolstack, xenstored and a console daemon in one event loop.
//!
//! - **toolstack**: binds `VIRQ_DOM_EXC`, lists the domains (`sysctl getdomaininfolist`), and
//!   for each domU reads its ring frames and ports (`hvm_op HVMOP_get_param`), maps both pages,
//!   binds both ports, introduces it to xenstored and writes `/local/domain/<id>` (libxl's
//!   layout and permissions: the home is `n0 r<id>`, read-only for the domain; `data` is owned
//!   by the domain). When a domU shuts down or crashes (`VIRQ_DOM_EXC`), it is reported, its
//!   console drained, its ports closed, its pages unmapped, released from xenstored and
//!   destroyed (`domctl destroydomain`). With no domU left, dom0 powers off (unless `stay`).
//! - **xenstored**: `guest_kernel::xenstored` serves every domU's store ring (connection =
//!   domid); dom0's own requests go straight to it as connection 0.
//! - **console daemon**: drains every domU's console ring into `(d<id>) text` lines.
//! - **block back end** (`blkback.rs`): a vbd per domU, served from dom0's disk.
//! - **demo partner** (`domu/mod.rs` describes the protocol): on a domU's `data/ready`, bind its
//!   ping port, bounce its events, grant-copy its pattern page, check it, copy the complement
//!   into its reply page and write `data/result`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::demo;
use guest_kernel::introduce::{self, RingParams, Rings};

use crate::kernel::time::rdtsc;
use guest_kernel::xenstored::Xenstored;
use hypercall_abi::domctl::{
    XEN_DOMCTL_destroydomain, XEN_DOMINF_dying, XEN_DOMINF_shutdown, XEN_DOMINF_shutdownmask,
    XEN_DOMINF_shutdownshift, XenDomctl, XenDomctlGetdomaininfo,
};
use hypercall_abi::hvm::GetParam;
use hypercall_abi::hvm::{
    XenHvmParam, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
};
use hypercall_abi::io::xs_wire::{XsdSockmsg, XENSTORE_ERROR_RINGIDX, XS_WATCH_EVENT};
use hypercall_abi::sched::{SHUTDOWN_crash, SHUTDOWN_poweroff};
use hypercall_abi::sysctl::{XEN_SYSCTL_getdomaininfolist, XenSysctl, XenSysctlGetdomaininfolist};
use hypercall_abi::xen::{StartInfo, VIRQ_DOM_EXC, VIRQ_TIMER};
use hypercall_abi::HypercallError;
use ring_drivers::console_ring::{self, LinePrefixer};
use ring_drivers::xenbus::xs_ring::{self, MessageAssembler, OutQueue};
use ring_drivers::xenbus::{parse_reply, parse_watch_event, Access, Perm, Reply, Request};
use zerocopy::{FromBytes, IntoBytes};

pub mod blkback;
pub mod blkdev;
pub mod pci;

use crate::kernel::events::{self, Channel};
use crate::kernel::grant::{self, CopyEnd};
use crate::kernel::hypercall as hc;
use crate::kernel::ring_page::{self, MappedPage};
use crate::kernel::{console, mm, shared_info, time, traps};
use blkback::Vbd;

/// Store-ring messages served per call (the loop polls every ring again soon).
const STORE_BUDGET: usize = 64;

/// Reply bytes a domU may leave unread before dom0 stops reading its requests.
const STORE_BACKLOG: usize = 64 * 1024;

/// Most domains one `getdomaininfolist` reports.
const MAX_DOMAINS: usize = 64;

/// Longest domain name dom0 shows (a domU chooses its own: longer ones are cut).
const NAME_MAX: usize = 64;

/// dom0's side of a domU's rings: mapping windows (`ring_page`) and interdomain ports.
struct Dom0Rings;

impl introduce::Resources for Dom0Rings {
    type Page = MappedPage;
    type Error = ring_page::MapError;

    fn map(&mut self, domid: u16, mfn: u64) -> Result<MappedPage, ring_page::MapError> {
        ring_page::map_foreign(domid, mfn, true)
    }

    fn unmap(&mut self, page: MappedPage) {
        let rc = ring_page::unmap(page);
        if rc != 0 {
            println!("toolstack: unmapping a ring page failed ({rc})");
        }
    }

    fn bind(&mut self, domid: u16, remote: u32) -> Result<u32, HypercallError> {
        events::bind_interdomain(domid, remote)
    }

    fn close(&mut self, port: u32) {
        let _ = events::close(port);
    }
}

/// Lists the domains with ids from 1 up.
pub fn domus() -> Result<Vec<XenDomctlGetdomaininfo>, i64> {
    let mut buf = vec![XenDomctlGetdomaininfo::default(); MAX_DOMAINS];
    let list = XenSysctlGetdomaininfolist {
        first_domain: 1,
        max_domains: MAX_DOMAINS as u32,
        buffer: hc::ptr(buf.as_mut_ptr()),
        ..Default::default()
    };
    let mut op = XenSysctl {
        cmd: XEN_SYSCTL_getdomaininfolist,
        ..Default::default()
    };
    op.u[..size_of::<XenSysctlGetdomaininfolist>()].copy_from_slice(list.as_bytes());
    let rc = hc::sysctl(&mut op);
    if rc != 0 {
        return Err(rc);
    }
    let (list, _) = XenSysctlGetdomaininfolist::read_from_prefix(&op.u).map_err(|_| -22i64)?;
    buf.truncate((list.num_domains as usize).min(MAX_DOMAINS));
    // Only real domUs (not DOMID_SELF-style reserved ids).
    buf.retain(|d| d.domain != 0 && d.domain < guest_kernel::xenstored::DOMID_FIRST_RESERVED);
    Ok(buf)
}

/// Whether the hypervisor reports any domain besides dom0 (services mode's trigger).
pub fn has_domus() -> bool {
    domus().is_ok_and(|d| !d.is_empty())
}

fn hvm_param(domid: u16, index: u32) -> Result<u64, HypercallError> {
    let mut p = GetParam(XenHvmParam {
        domid,
        index,
        ..Default::default()
    });
    HypercallError::check(hc::hvm_op(&mut p)).map(|_| p.0.value)
}

fn destroy(domid: u16) -> i64 {
    let mut op = XenDomctl {
        cmd: XEN_DOMCTL_destroydomain,
        domain: domid,
        ..Default::default()
    };
    loop {
        let rc = hc::domctl(&mut op);
        // -EAGAIN / -ERESTART: the teardown is preemptible; ask again.
        if rc != -11 && rc != -85 {
            return rc;
        }
    }
}

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
}

/// One domU as the services see it.
struct Dom {
    id: u16,
    name: String,
    /// System time it was introduced (for `domu-timeout`).
    since_ns: u64,
    store: MappedPage,
    store_port: u32,
    console: MappedPage,
    console_port: u32,
    asm: MessageAssembler,
    out: OutQueue,
    lines: LinePrefixer,
    ping: Option<Ping>,
    store_broken: bool,
    console_broken: bool,
}

struct Services {
    /// `domu-timeout=<seconds>` on dom0's command line: a domU still running that long after it
    /// was introduced is destroyed (a toolstack's watchdog; the fuzz tests rely on it, since a
    /// fuzzer can wreck itself into an endless loop).
    domu_timeout_ns: Option<u64>,
    /// The shell's line being typed (serial input, `VIRQ_CONSOLE`).
    line: String,
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
    xs: Xenstored,
    doms: BTreeMap<u16, Dom>,
    /// Each domU's virtual block device.
    vbds: BTreeMap<u16, Vbd>,
    /// Domains whose introduction failed (and which dom0 destroyed): not tried again.
    failed: introduce::Failed,
    /// Watch events for dom0's own connection: (path, token).
    watch_events: VecDeque<(String, String)>,
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

fn print_bytes(b: &[u8]) {
    console::write_bytes(b);
}

impl blkback::Store for Services {
    fn read(&mut self, path: &str) -> Option<String> {
        Services::read(self, path)
    }

    fn write(&mut self, path: &str, value: &str) {
        Services::write(self, path, value)
    }

    fn set_perms(&mut self, path: &str, perms: &[Perm]) {
        Services::set_perms(self, path, perms)
    }

    fn watch(&mut self, path: &str, token: &str) {
        if let Reply::Error(e) = self.xs0(0, &Request::Watch { path, token }) {
            println!("toolstack: watch {path}: {}", e.name());
        }
    }

    fn unwatch(&mut self, path: &str, token: &str) {
        self.xs0(0, &Request::Unwatch { path, token });
        self.watch_events.retain(|(_, t)| t != token);
    }

    fn rm(&mut self, path: &str) {
        self.xs0(0, &Request::Rm(path));
    }
}

impl Services {
    /// Runs `f` on `id`'s vbd (taken out of the map meanwhile, so `f` can use the store).
    fn with_vbd(&mut self, id: u16, f: impl FnOnce(&mut Vbd, &mut Self)) {
        if let Some(mut v) = self.vbds.remove(&id) {
            f(&mut v, self);
            self.vbds.insert(id, v);
        }
    }

    /// One request from dom0 to its own xenstored; watch events for dom0 are queued.
    fn xs0(&mut self, tx: u32, req: &Request<'_>) -> Reply {
        let Ok(payload) = req.payload() else {
            return Reply::Error(hypercall_abi::errno::Errno::EINVAL);
        };
        let hdr = XsdSockmsg {
            r#type: req.msg_type(),
            req_id: 0,
            tx_id: tx,
            len: payload.len() as u32,
        };
        let out = self.xs.handle(0, &hdr, &payload);
        let mut reply = Reply::Error(hypercall_abi::errno::Errno::EIO);
        for (conn, bytes) in out.messages {
            if conn != 0 {
                self.queue(conn, &bytes);
                continue;
            }
            let Ok((h, body)) = XsdSockmsg::read_from_prefix(&bytes) else {
                continue;
            };
            if h.r#type == XS_WATCH_EVENT {
                if let Ok(w) = parse_watch_event(body) {
                    self.watch_events.push_back((w.path, w.token));
                }
            } else if let Ok(r) = parse_reply(hdr.r#type, h.r#type, body) {
                reply = r;
            }
        }
        self.flush_all();
        reply
    }

    fn write(&mut self, path: &str, value: &str) {
        if let Reply::Error(e) = self.xs0(0, &Request::Write(path, value.as_bytes())) {
            println!("toolstack: write {path}: {}", e.name());
        }
    }

    fn set_perms(&mut self, path: &str, perms: &[Perm]) {
        if let Reply::Error(e) = self.xs0(0, &Request::SetPerms(path, perms)) {
            println!("toolstack: set perms {path}: {}", e.name());
        }
    }

    fn read(&mut self, path: &str) -> Option<String> {
        match self.xs0(0, &Request::Read(path)) {
            Reply::Value(v) => String::from_utf8(v).ok(),
            _ => None,
        }
    }

    /// Queues a framed message for a domU's connection. A connection whose ring is broken gets
    /// nothing, and one that leaves too much unread loses further messages (watch events from
    /// other domains' writes could otherwise grow its queue without bound).
    fn queue(&mut self, conn: u16, bytes: &[u8]) {
        if let Some(d) = self.doms.get_mut(&conn) {
            if !d.store_broken && d.out.len() <= 4 * STORE_BACKLOG {
                d.out.push(bytes);
            }
        }
    }

    /// Moves queued responses into every domU's ring, notifying those that got some.
    fn flush_all(&mut self) {
        for d in self.doms.values_mut() {
            if d.out.is_empty() || d.store_broken {
                continue;
            }
            match d.out.flush_responses(&mut d.store) {
                Ok(0) => {}
                Ok(_) => {
                    let _ = events::send(d.store_port);
                }
                Err(e) => {
                    println!("xenstored: d{} ring broken: {e}", d.id);
                    xs_ring::report_error(&mut d.store, XENSTORE_ERROR_RINGIDX);
                    d.store_broken = true;
                }
            }
        }
    }

    /// Serves the requests waiting in `id`'s store ring: at most [`STORE_BUDGET`] messages per
    /// call, and none while [`STORE_BACKLOG`] bytes of replies wait for the domU to read them (a
    /// client that never reads its responses cannot make dom0 queue without bound).
    fn serve_store(&mut self, id: u16) {
        let mut consumed = false;
        for _ in 0..STORE_BUDGET {
            let Some(d) = self.doms.get_mut(&id) else {
                return;
            };
            if d.store_broken || d.out.len() > STORE_BACKLOG {
                break;
            }
            let msg = match xs_ring::read_request_message(&mut d.store, &mut d.asm) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    println!("xenstored: d{id} sent a bad message ({e:?}); dropping its ring");
                    xs_ring::report_error(&mut d.store, XENSTORE_ERROR_RINGIDX);
                    d.store_broken = true;
                    break;
                }
            };
            consumed = true;
            let out = self.xs.handle_message(id, &msg);
            for (conn, bytes) in out.messages {
                if conn == 0 {
                    if let Ok((h, body)) = XsdSockmsg::read_from_prefix(&bytes) {
                        if h.r#type == XS_WATCH_EVENT {
                            if let Ok(w) = parse_watch_event(body) {
                                self.watch_events.push_back((w.path, w.token));
                            }
                        }
                    }
                } else {
                    self.queue(conn, &bytes);
                }
            }
            self.flush_all();
        }
        if consumed {
            if let Some(d) = self.doms.get(&id) {
                // Room in the request ring for a client that waits for it.
                let _ = events::send(d.store_port);
            }
        }
        self.flush_all();
    }

    /// Prints every complete line waiting in `id`'s console ring.
    fn drain_console(&mut self, id: u16) {
        let Some(d) = self.doms.get_mut(&id) else {
            return;
        };
        if d.console_broken {
            return;
        }
        let lines = &mut d.lines;
        match console_ring::drain_out(&mut d.console, &mut |b| lines.feed(b, &mut print_bytes)) {
            Ok(0) => {}
            Ok(_) => {
                let _ = events::send(d.console_port);
            }
            Err(e) => {
                println!("console: d{id} ring broken: {e}");
                d.console_broken = true;
            }
        }
    }

    /// Sets up a domU found in the domain list. On failure, everything set up for it is undone
    /// and the error comes back with its name, for the caller to report and destroy it.
    fn introduce(&mut self, info: &XenDomctlGetdomaininfo) -> Result<(), (String, String)> {
        let id = info.domain;
        let fallback = || format!("domain{id}");
        let p = |index| {
            hvm_param(id, index)
                .map_err(|rc| (fallback(), format!("hvm_op get_param {index}={rc}")))
        };
        let (store_mfn, store_evtchn) = (p(HVM_PARAM_STORE_PFN)?, p(HVM_PARAM_STORE_EVTCHN)?);
        let (cons_mfn, cons_evtchn) = (p(HVM_PARAM_CONSOLE_PFN)?, p(HVM_PARAM_CONSOLE_EVTCHN)?);
        let name = domain_name(id, store_mfn).unwrap_or_else(fallback);
        let params = RingParams {
            store_mfn,
            store_port: store_evtchn as u32,
            console_mfn: cons_mfn,
            console_port: cons_evtchn as u32,
        };
        // Maps both rings and binds both ports, or gives back what it took (a domU may have
        // closed its ports before we came to it).
        let Rings {
            store,
            store_port,
            console,
            console_port,
        } = introduce::connect(&mut Dom0Rings, id, &params)
            .map_err(|e| (name.clone(), format!("{e}")))?;
        self.doms.insert(
            id,
            Dom {
                id,
                name: name.clone(),
                since_ns: time::now_ns().unwrap_or(0),
                store,
                store_port,
                console,
                console_port,
                asm: MessageAssembler::new(),
                out: OutQueue::new(),
                lines: LinePrefixer::new(id),
                ping: None,
                store_broken: false,
                console_broken: false,
            },
        );
        // The nodes first, then the connection: the domain's first request finds them.
        let home = format!("/local/domain/{id}");
        self.write(&home, "");
        let ro = [
            Perm {
                domid: 0,
                access: Access::None,
            },
            Perm {
                domid: id,
                access: Access::Read,
            },
        ];
        self.set_perms(&home, &ro);
        self.write(&format!("{home}/name"), &name);
        self.write(&format!("{home}/domid"), &format!("{id}"));
        self.write(&format!("{home}/console/ring-ref"), &format!("{cons_mfn}"));
        self.write(&format!("{home}/console/port"), &format!("{cons_evtchn}"));
        self.write(&format!("{home}/console/type"), "xenconsoled");
        self.write(&format!("{home}/console/limit"), "1048576");
        self.write(&format!("{home}/data"), "");
        self.set_perms(
            &format!("{home}/data"),
            &[Perm {
                domid: id,
                access: Access::None,
            }],
        );
        let vbd = Vbd::create(self, id);
        self.vbds.insert(id, vbd);
        match self.xs.introduce(id, store_mfn, store_evtchn as u32) {
            Ok(out) => {
                for (conn, bytes) in out.messages {
                    self.queue(conn, &bytes);
                }
            }
            Err(e) => {
                if let Some(d) = self.doms.remove(&id) {
                    self.undo(d);
                }
                return Err((name, format!("xenstored introduce: {}", e.name())));
            }
        }
        self.xs0(
            0,
            &Request::Watch {
                path: &format!("{home}/data"),
                token: &format!("data{id}"),
            },
        );
        events::register(store_port, Channel::Store(id));
        events::register(console_port, Channel::Console(id));
        println!(
            "toolstack: introduced d{id} ({name}), {} MiB",
            (info.tot_pages * 4096) >> 20
        );
        self.drain_console(id);
        self.serve_store(id);
        Ok(())
    }

    /// Looks at every domain: introduces new domUs, reports and destroys those that stopped.
    /// Reads serial input (`CONSOLEIO_read`), echoes it, and runs each complete line as a shell
    /// command. Returns true on `poweroff`.
    fn shell_input(&mut self) -> bool {
        let mut buf = [0u8; 128];
        let mut off = false;
        loop {
            let n = hc::console_io(hypercall_abi::xen::CONSOLEIO_read, &mut buf);
            if n <= 0 {
                return off;
            }
            for &b in &buf[..n as usize] {
                match b {
                    b'\r' | b'\n' => {
                        console::write_bytes(b"\n");
                        let line = core::mem::take(&mut self.line);
                        off |= self.command(line.trim());
                    }
                    0x08 | 0x7f if self.line.pop().is_some() => {
                        console::write_bytes(b"\x08 \x08");
                    }
                    b if (0x20..0x7f).contains(&b) && self.line.len() < 120 => {
                        self.line.push(b as char);
                        console::write_bytes(&[b]);
                    }
                    _ => {}
                }
            }
        }
    }

    /// One shell command, `xl`-like: `list`, `shutdown|reboot|destroy <id>`, `poweroff`, `help`.
    fn command(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let (Some(cmd), arg) = (words.next(), words.next()) else {
            return false;
        };
        let id = arg.and_then(|a| a.parse::<u16>().ok());
        match (cmd, id) {
            ("help", _) => println!(
                "xl: commands: list, shutdown <id>, reboot <id>, destroy <id>, poweroff (CTRL-a three times: debug keys)"
            ),
            ("list", _) => {
                println!("xl: {:<4} {:<16} {:>8} {:>10}  state", "id", "name", "mem", "cpu(ms)");
                match domus() {
                    Ok(list) => {
                        for d in list {
                            let name = self
                                .doms
                                .get(&d.domain)
                                .map_or_else(|| format!("domain{}", d.domain), |x| x.name.clone());
                            let state = if d.flags & XEN_DOMINF_dying != 0 {
                                "dying"
                            } else if d.flags & XEN_DOMINF_shutdown != 0 {
                                "shut down"
                            } else if d.flags & hypercall_abi::domctl::XEN_DOMINF_blocked != 0 {
                                "blocked"
                            } else {
                                "running"
                            };
                            println!(
                                "xl: {:<4} {:<16} {:>5} MiB {:>10}  {state}",
                                d.domain,
                                name,
                                d.tot_pages / 256,
                                d.cpu_time / 1_000_000
                            );
                        }
                    }
                    Err(rc) => println!("xl: getdomaininfolist={rc}"),
                }
            }
            ("shutdown" | "reboot", Some(id)) => {
                let reason = if cmd == "shutdown" {
                    SHUTDOWN_poweroff
                } else {
                    hypercall_abi::sched::SHUTDOWN_reboot
                };
                let mut r = hypercall_abi::sched::SchedRemoteShutdown {
                    domain_id: id,
                    reason,
                    ..Default::default()
                };
                let rc = hc::sched_op(&mut r);
                println!("xl: {cmd} d{id}: {rc}");
            }
            ("destroy", Some(id)) => {
                if self.doms.contains_key(&id) {
                    // Undo what we set up for it (vbd, ring mappings, ports) before it goes:
                    // its grant mappings are revoked with it.
                    self.teardown(id, Some(XEN_DOMINF_dying));
                } else {
                    println!("xl: destroy d{id}: {}", destroy(id));
                }
            }
            ("poweroff", _) => {
                println!("xl: powering off");
                return true;
            }
            _ => println!("xl: unknown command '{line}' (try help)"),
        }
        false
    }

    fn scan(&mut self) {
        // Destroying a domU that rebooted makes the hypervisor build it again under a new id:
        // look again after any teardown, so the new domain is introduced before we could
        // conclude that no domU is left.
        for _ in 0..8 {
            if !self.scan_once() {
                break;
            }
        }
    }

    /// One look at the domain list; returns whether a domU was torn down.
    fn scan_once(&mut self) -> bool {
        let mut tore_down = false;
        let list = match domus() {
            Ok(l) => l,
            Err(rc) => {
                println!("toolstack: getdomaininfolist={rc}");
                return false;
            }
        };
        for info in &list {
            let id = info.domain;
            let stopped = info.flags & (XEN_DOMINF_shutdown | XEN_DOMINF_dying) != 0;
            if stopped {
                tore_down = true;
                if self.doms.contains_key(&id) {
                    self.teardown(id, Some(info.flags));
                } else {
                    // Never introduced (it stopped before we saw it): just destroy it.
                    println!("toolstack: d{id} stopped before it was introduced");
                    destroy(id);
                }
            } else if !self.doms.contains_key(&id) && self.failed.may_try(id) {
                if let Err((name, e)) = self.introduce(info) {
                    // Given up for good (not retried on the next scan), and destroyed, as libxl
                    // destroys a domain whose creation fails (`domcreate_complete`).
                    self.failed.record(id);
                    tore_down = true;
                    println!("toolstack: cannot introduce d{id} ({name}): {e}: destroying it");
                    match destroy(id) {
                        0 => println!("toolstack: d{id} ({name}) destroyed"),
                        rc => println!("toolstack: d{id} ({name}) destroydomain={rc}"),
                    }
                }
            }
        }
        self.failed
            .retain_present(|id| list.iter().any(|i| i.domain == id));
        let gone: Vec<u16> = self
            .doms
            .keys()
            .copied()
            .filter(|id| !list.iter().any(|i| i.domain == *id))
            .collect();
        for id in gone {
            self.teardown(id, None);
        }
        tore_down
    }

    /// Reports a stopped domU and undoes everything set up for it, then destroys it.
    fn teardown(&mut self, id: u16, flags: Option<u32>) {
        // Its last words first.
        self.drain_console(id);
        let Some(mut d) = self.doms.remove(&id) else {
            return;
        };
        d.lines.flush(&mut print_bytes);
        match flags {
            Some(f) if f & XEN_DOMINF_shutdown != 0 => {
                let code = (f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
                if code == SHUTDOWN_crash {
                    println!("toolstack: d{id} ({}) crashed", d.name);
                } else {
                    println!("toolstack: d{id} ({}) shut down ({})", d.name, reason(code));
                }
            }
            Some(_) => println!("toolstack: d{id} ({}) is dying", d.name),
            None => println!("toolstack: d{id} ({}) disappeared", d.name),
        }
        let name = d.name.clone();
        self.undo(d);
        if flags.is_some() {
            match destroy(id) {
                0 => println!("toolstack: d{id} ({name}) destroyed"),
                rc => println!("toolstack: d{id} ({name}) destroydomain={rc}"),
            }
        }
    }

    /// Undoes everything set up for a domU (its ports, vbd, ring mappings, xenstore connection
    /// and nodes); `d` was taken out of `doms`.
    fn undo(&mut self, d: Dom) {
        let id = d.id;
        if let Some(p) = &d.ping {
            let _ = events::close(p.port);
        }
        if let Some(v) = self.vbds.remove(&id) {
            v.destroy(self);
        }
        introduce::disconnect(
            &mut Dom0Rings,
            Rings {
                store: d.store,
                store_port: d.store_port,
                console: d.console,
                console_port: d.console_port,
            },
        );
        if let Ok(out) = self.xs.release(id) {
            for (conn, bytes) in out.messages {
                self.queue(conn, &bytes);
            }
        }
        self.xs0(
            0,
            &Request::Unwatch {
                path: &format!("/local/domain/{id}/data"),
                token: &format!("data{id}"),
            },
        );
        self.xs0(0, &Request::Rm(&format!("/local/domain/{id}")));
        self.watch_events.retain(|(_, t)| *t != format!("data{id}"));
    }

    /// A watch on some domU's `data` fired: start the demo if it is ready.
    fn data_changed(&mut self, id: u16) {
        if self.doms.get(&id).is_none_or(|d| d.ping.is_some()) {
            return;
        }
        let base = format!("/local/domain/{id}/data");
        if self.read(&format!("{base}/ready")).as_deref() != Some("1") {
            return;
        }
        let num =
            |s: &mut Self, n: &str| -> Option<u32> { s.read(&format!("{base}/{n}"))?.parse().ok() };
        let grefs = (num(self, "gref"), num(self, "reply-gref"));
        let (Some(port), Some(rounds)) = (num(self, "ping-port"), num(self, "rounds")) else {
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
        if let Some(d) = self.doms.get_mut(&id) {
            d.ping = Some(Ping {
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
            });
        }
        // Xen marks a freshly bound port pending (so no event can be lost in the race with the
        // peer); here that would count as the first ping. Upcalls are masked in this loop, so
        // the bit has not been delivered yet: clear it.
        shared_info::clear_bit(shared_info::Bitmap::Pending, local);
        events::take(local);
        // The kick: the domU starts bouncing once it knows we are bound.
        if let Some(p) = self.doms.get_mut(&id).and_then(|d| d.ping.as_mut()) {
            p.sent_at = rdtsc();
        }
        let _ = events::send(local);
    }

    /// A ping from `id`: answer it; after the last, do the grant exchange.
    fn pinged(&mut self, id: u16) {
        let Some(p) = self.doms.get_mut(&id).and_then(|d| d.ping.as_mut()) else {
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
            if let Some(&median) = rtts.get(rtts.len() / 2) {
                println!(
                    "bench evtchn_rtt dom={id} rounds={} median_cycles={median} min_cycles={}",
                    rtts.len(),
                    rtts[0]
                );
            }
        }
        let Some((gref, reply_gref)) = p.grefs else {
            self.write(&format!("/local/domain/{id}/data/result"), "ok nogrant");
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
                self::reason(reason)
            );
        }
        if self.cases {
            let remote = self.read(&format!("/local/domain/{id}/data/ping-port"));
            let remote = remote.and_then(|r| r.parse().ok()).unwrap_or(0);
            two_domain_cases(id, gref, reply_gref, remote, port);
        }
        if result.is_ok() && self.bench_copies > 0 {
            bench_grant_copy(id, gref, self.bench_copies);
        }
        match result {
            Ok(sum) => {
                self.write(
                    &format!("/local/domain/{id}/data/result"),
                    &format!("ok {sum}"),
                );
                println!("dom0: d{id} ping-pong {rounds} ok, grant copy 4096 bytes ok");
            }
            Err(e) => {
                self.write(
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
fn grant_exchange(id: u16, gref: u32, reply_gref: u32) -> Result<u32, String> {
    let mfn = |i| mm::va_to_mfn(buffer_va(i)).ok_or_else(|| String::from("buffer has no frame"));
    let (m0, m1) = (mfn(0)?, mfn(1)?);
    grant::copy(
        CopyEnd::Grant { domid: id, gref },
        CopyEnd::Local { mfn: m0 },
        4096,
    )
    .map_err(|e| format!("{e}"))?;
    let mut data = [0u8; 4096];
    // SAFETY: our own .bss page, just written by the hypervisor's copy; no reference held.
    unsafe { core::ptr::copy_nonoverlapping(buffer_va(0) as *const u8, data.as_mut_ptr(), 4096) };
    if let Some(i) = (0..4096).find(|&i| data[i] != demo::pattern(id, i)) {
        return Err(format!("pattern mismatch at byte {i}"));
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
    .map_err(|e| format!("{e}"))?;
    Ok(demo::checksum(&data))
}

fn reason(code: u32) -> &'static str {
    match code {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        _ => "unknown",
    }
}

/// The name on the domain's command line (`name=`), read from its start_info: Xen's start-of-day
/// layout puts start_info in the page before the xenstore page. Checked (magic and `store_mfn`)
/// before it is believed; `None` if anything does not fit. Escaped ([`ring_drivers::printable`])
/// and cut to [`NAME_MAX`] bytes.
fn domain_name(id: u16, store_mfn: u64) -> Option<String> {
    let page = ring_page::map_foreign(id, store_mfn.checked_sub(1)?, false).ok()?;
    let mut si = [0u8; size_of::<StartInfo>()];
    ring_drivers::SharedPage::read_bytes(&page, 0, &mut si);
    ring_page::unmap(page);
    let si = StartInfo::read_from_bytes(&si).ok()?;
    if !si.magic.starts_with(b"xen-3.0") || si.store_mfn != store_mfn {
        return None;
    }
    // The domU chose it (and could have rewritten its start_info before we read it): escaped
    // and bounded before it goes into our log and its xenstore `name` node.
    let cmdline = Cmdline::from_bytes(&si.cmd_line);
    cmdline
        .get("name")
        .map(|n| ring_drivers::printable::escape(n.as_bytes(), NAME_MAX))
}

/// Runs the services until no domU is left (or forever with `stay`); returns the exit reason.
pub fn run(si: &StartInfo, cmdline: &Cmdline<'_>) -> u32 {
    if let Err(e) = shared_info::map(si) {
        println!("services: shared_info: {e}");
        return SHUTDOWN_crash;
    }
    if traps::install() != 0 || traps::register_upcall() != 0 {
        println!("services: cannot install the trap table or event callback");
        return SHUTDOWN_crash;
    }
    match events::bind_virq(VIRQ_DOM_EXC) {
        Ok(p) => events::register(p, Channel::DomExc),
        Err(rc) => println!("toolstack: bind VIRQ_DOM_EXC={rc}"),
    }
    // Serial input (the hypervisor routes it to dom0 and raises VIRQ_CONSOLE): a small shell.
    if let Ok(p) = events::bind_virq(hypercall_abi::xen::VIRQ_CONSOLE) {
        events::register(p, Channel::Input);
    }
    if let Ok(p) = events::bind_virq(VIRQ_TIMER) {
        events::register(p, Channel::Timer);
    }
    let stay = cmdline.has("stay");
    let mut s = Services {
        domu_timeout_ns: cmdline
            .get("domu-timeout")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|secs| secs * 1_000_000_000),
        line: String::new(),
        restart_first: cmdline.has("restart-first"),
        restarted: false,
        cases: cmdline.has("two-domain-cases"),
        bench_copies: cmdline
            .get("bench-copies")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        xs: Xenstored::new(),
        doms: BTreeMap::new(),
        vbds: BTreeMap::new(),
        failed: introduce::Failed::new(),
        watch_events: VecDeque::new(),
    };
    println!("services: toolstack, xenstored and console daemon running");
    blkback::init_disk();
    if let Some(v) = cmdline.get("bench-blkdev") {
        // `bench-blkdev=<start sector>`: dom0 on the disk directly, before serving the domUs.
        blkback::bench_direct(v.parse().unwrap_or(16384), 4, 256);
    }
    s.scan();
    let mut poweroff = false;
    loop {
        if (s.doms.is_empty() && !stay) || poweroff {
            break;
        }
        if !s.vbds.values().any(|v| v.busy) {
            events::wait(Some(1000 * time::MS));
        }
        let mut fired = Vec::new();
        events::dispatch(|_, h| {
            if let Some(h) = h {
                fired.push(h);
            }
        });
        let mut rescan = false;
        for h in fired {
            match h {
                Channel::DomExc => rescan = true,
                Channel::Store(id) => s.serve_store(id),
                Channel::Console(id) => s.drain_console(id),
                Channel::Ping(id) => s.pinged(id),
                Channel::Blk(id) => s.with_vbd(id, |v, s| v.serve(s, true)),
                Channel::Input => poweroff |= s.shell_input(),
                Channel::Timer => {}
            }
        }
        // Rings a budget-limited pass left requests in.
        let busy: Vec<u16> = s
            .vbds
            .iter()
            .filter(|(_, v)| v.busy)
            .map(|(&i, _)| i)
            .collect();
        for id in busy {
            s.with_vbd(id, |v, s| v.serve(s, false));
        }
        // Cheap polls: no ring waits for a lost or coalesced notification.
        let ids: Vec<u16> = s.doms.keys().copied().collect();
        for id in ids {
            s.drain_console(id);
            s.serve_store(id);
        }
        while let Some((_, token)) = s.watch_events.pop_front() {
            if let Some(id) = token.strip_prefix("data").and_then(|t| t.parse().ok()) {
                s.data_changed(id);
            } else if let Some(id) = token.strip_prefix("vbd").and_then(|t| t.parse().ok()) {
                s.with_vbd(id, |v, s| v.frontend_changed(s));
            }
        }
        if let (Some(limit), Some(now)) = (s.domu_timeout_ns, time::now_ns()) {
            let late: Vec<(u16, String)> = s
                .doms
                .values()
                .filter(|d| now.saturating_sub(d.since_ns) > limit)
                .map(|d| (d.id, d.name.clone()))
                .collect();
            for (id, name) in late {
                println!(
                    "toolstack: d{id} ({name}) still running after {} s: destroying it",
                    limit / 1_000_000_000
                );
                s.teardown(id, Some(XEN_DOMINF_dying));
            }
        }
        if rescan {
            s.scan();
        }
    }
    println!("services: no domU left, powering off");
    SHUTDOWN_poweroff
}
