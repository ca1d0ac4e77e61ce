//! dom0's shell: serial input (the hypervisor routes it to dom0 and raises `VIRQ_CONSOLE`),
//! echoed and edited line by line; each line is an `xl`-like command: `list`,
//! `shutdown|reboot|destroy <id>`, `mem-set <id> <size>`, `console <id>`, `poweroff`, `help`.
//!
//! `shutdown <id>` asks a domU that announced `control/feature-poweroff` through xenstore (it
//! powers itself off cleanly), otherwise shuts it down from outside (`SCHEDOP_remote_shutdown`).
//!
//! `console <id>` attaches the serial line to a domU's console as `xl console` does: its output
//! comes through unprefixed, every typed byte goes to its ring, until CTRL-] (0x1d) detaches.
//! dom0's `attach-console=<id>` attaches to that domU as soon as the toolstack introduces it.

use alloc::format;
use alloc::string::String;

use hypercall_abi::domctl::{XEN_DOMINF_blocked, XEN_DOMINF_dying, XEN_DOMINF_shutdown};
use hypercall_abi::sched::{SHUTDOWN_poweroff, SHUTDOWN_reboot, SchedRemoteShutdown};
use hypercall_abi::xen::CONSOLEIO_read;

use super::service::{Ctx, Request, Service};
use super::toolstack::{destroy, domus};
use super::xenstore::Store;
use crate::kernel::console;
use crate::kernel::events::Channel;
use crate::kernel::hypercall as hc;

/// The longest line the shell keeps.
const LINE_MAX: usize = 120;
/// The byte that detaches an attached console: CTRL-], as in `xl console`.
pub const DETACH: u8 = 0x1d;

/// The line being typed.
pub struct Shell {
    line: String,
    /// `attach-console=<id>`: the domU to attach to when it is introduced.
    auto_attach: Option<u16>,
}

impl Service for Shell {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if channel == Channel::Input {
            self.input(ctx);
        }
    }

    fn attach(&mut self, ctx: &mut Ctx, id: u16) {
        if self.auto_attach == Some(id) {
            attach_console(ctx, id);
        }
    }
}

/// `console <id>`: attaches the serial line to `id`'s console.
fn attach_console(ctx: &mut Ctx, id: u16) {
    let name = ctx.doms.get(&id).map(|d| d.name.clone());
    match name {
        Some(name) if ctx.consoles.attach(id) => {
            println!("xl: console d{id} ({name}) attached: CTRL-] detaches");
        }
        _ => println!("xl: console d{id}: no such domain"),
    }
}

impl Shell {
    /// No line typed yet; `auto_attach`: the domU whose console to attach when it appears.
    pub fn new(auto_attach: Option<u16>) -> Shell {
        Shell {
            line: String::new(),
            auto_attach,
        }
    }

    /// Reads serial input (`CONSOLEIO_read`), echoes it, and runs each complete line.
    fn input(&mut self, ctx: &mut Ctx) {
        let mut buf = [0u8; 128];
        loop {
            let n = hc::console_io(CONSOLEIO_read, &mut buf);
            if n <= 0 {
                return;
            }
            let mut bytes = &buf[..n as usize];
            // Attached: everything up to CTRL-] goes to the domU's console.
            while let Some(id) = ctx.consoles.attached() {
                let end = bytes.iter().position(|&b| b == DETACH);
                ctx.consoles.input(&bytes[..end.unwrap_or(bytes.len())]);
                let Some(end) = end else {
                    bytes = &[];
                    break;
                };
                ctx.consoles.detach();
                println!("\nxl: console d{id} detached");
                bytes = &bytes[end + 1..];
            }
            for &b in bytes {
                match b {
                    b'\r' | b'\n' => {
                        console::write_bytes(b"\n");
                        let line = core::mem::take(&mut self.line);
                        command(ctx, line.trim());
                    }
                    0x08 | 0x7f if self.line.pop().is_some() => {
                        console::write_bytes(b"\x08 \x08");
                    }
                    b if (0x20..0x7f).contains(&b) && self.line.len() < LINE_MAX => {
                        self.line.push(b as char);
                        console::write_bytes(&[b]);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One shell command.
fn command(ctx: &mut Ctx, line: &str) {
    let mut words = line.split_whitespace();
    let (Some(cmd), arg) = (words.next(), words.next()) else {
        return;
    };
    let arg2 = words.next();
    let id = arg.and_then(|a| a.parse::<u16>().ok());
    match (cmd, id) {
        ("help", _) => println!(
            "xl: commands: list, shutdown <id>, reboot <id>, destroy <id>, mem-set <id> <size>, console <id> (CTRL-] detaches), poweroff (CTRL-a three times: debug keys)"
        ),
        ("mem-set", Some(id)) => mem_set(ctx, id, arg2.unwrap_or("")),
        ("list", _) => list(ctx),
        ("console", Some(id)) => attach_console(ctx, id),
        ("shutdown" | "reboot", Some(id)) if asks_through_xenstore(ctx, cmd, id) => {}
        ("shutdown" | "reboot", Some(id)) => {
            let reason = if cmd == "shutdown" {
                SHUTDOWN_poweroff
            } else {
                SHUTDOWN_reboot
            };
            let mut r = SchedRemoteShutdown {
                domain_id: id,
                reason,
                ..Default::default()
            };
            let rc = hc::sched_op(&mut r);
            println!("xl: {cmd} d{id}: {rc}");
        }
        ("destroy", Some(id)) => {
            if ctx.doms.contains_key(&id) {
                // Undo what we set up for it (vbd, ring mappings, ports) before it goes:
                // its grant mappings are revoked with it.
                ctx.request(Request::Destroy(id));
            } else {
                let rc = destroy(id).map_or_else(|e| e.ret(), |()| 0);
                println!("xl: destroy d{id}: {rc}");
            }
        }
        ("poweroff", _) => {
            println!("xl: powering off");
            ctx.request(Request::Poweroff);
        }
        _ => println!("xl: unknown command '{line}' (try help)"),
    }
}

/// `shutdown|reboot <id>` as xl does it for a guest with PV drivers: when the domU announced
/// `control/feature-poweroff` (or `-reboot`) = 1 (Linux does), the request is written to its
/// `control/shutdown` and the guest shuts itself down cleanly; returns false (the caller then
/// shuts it down with `SCHEDOP_remote_shutdown`) for a guest that did not.
fn asks_through_xenstore(ctx: &mut Ctx, cmd: &str, id: u16) -> bool {
    if !ctx.doms.contains_key(&id) {
        return false;
    }
    let what = if cmd == "shutdown" {
        "poweroff"
    } else {
        "reboot"
    };
    let control = format!("/local/domain/{id}/control");
    if ctx.xs.read(&format!("{control}/feature-{what}")).as_deref() != Some("1") {
        return false;
    }
    ctx.xs.write(&format!("{control}/shutdown"), what);
    println!("xl: {cmd} d{id}: asked through control/shutdown ({what})");
    true
}

/// `mem-set <id> <size>`: writes the domU's `memory/target` (KiB), which its balloon follows
/// (xl's `mem-set`; the size takes xl's suffixes, MiB without one). Refused above
/// `memory/static-max`, the most the domain may hold.
fn mem_set(ctx: &mut Ctx, id: u16, size: &str) {
    let Some(kib) = guest_kernel::cmdline::parse_mem_kib(size) else {
        println!("xl: mem-set d{id}: bad size '{size}' (e.g. 12M, 8192k, 1g)");
        return;
    };
    if !ctx.doms.contains_key(&id) {
        println!("xl: mem-set d{id}: no such domain");
        return;
    }
    let home = format!("/local/domain/{id}/memory");
    let max = ctx
        .xs
        .read(&format!("{home}/static-max"))
        .and_then(|v| v.parse::<u64>().ok());
    if max.is_some_and(|m| kib > m) {
        println!(
            "xl: mem-set d{id}: {kib} KiB is above static-max {} KiB",
            max.unwrap_or(0)
        );
        return;
    }
    ctx.xs.write(&format!("{home}/target"), &format!("{kib}"));
    println!("xl: mem-set d{id}: target {kib} KiB");
}

/// `list`: every domU with its name, memory, CPU time and state.
fn list(ctx: &Ctx) {
    println!(
        "xl: {:<4} {:<16} {:>8} {:>8} {:>10}  state",
        "id", "name", "mem", "pages", "cpu(ms)"
    );
    match domus() {
        Ok(list) => {
            for d in list {
                let name = ctx
                    .doms
                    .get(&d.domain)
                    .map_or_else(|| format!("domain{}", d.domain), |x| x.name.clone());
                let state = if d.flags & XEN_DOMINF_dying != 0 {
                    "dying"
                } else if d.flags & XEN_DOMINF_shutdown != 0 {
                    "shut down"
                } else if d.flags & XEN_DOMINF_blocked != 0 {
                    "blocked"
                } else {
                    "running"
                };
                println!(
                    "xl: {:<4} {:<16} {:>5} MiB {:>8} {:>10}  {state}",
                    d.domain,
                    name,
                    d.tot_pages / 256,
                    d.tot_pages,
                    d.cpu_time / 1_000_000
                );
            }
        }
        Err(rc) => println!("xl: getdomaininfolist={rc}"),
    }
}
