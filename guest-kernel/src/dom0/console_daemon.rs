//! The console daemon, one of dom0's services: drains a domU's console ring into `(d<id>) text`
//! lines when its port fires, and every ring once a pass; prints a partial line (a prompt) once
//! its domain has been quiet a moment, and moves typed input that waited into an attached ring. The rings are in
//! [`Consoles`](super::console::Consoles), which the toolstack shares (a domain's last words).

use super::service::{Ctx, Service};
use crate::kernel::events::Channel;
use crate::kernel::time;

/// The console daemon: drains a ring when its port fires, and every ring once a pass.
pub struct ConsoleDaemon {
    /// When a waiting partial line is due (so the loop wakes for it).
    next_flush: Option<u64>,
}

impl ConsoleDaemon {
    /// Nothing waiting.
    pub fn new() -> ConsoleDaemon {
        ConsoleDaemon { next_flush: None }
    }
}

impl Service for ConsoleDaemon {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if let Channel::Console(id) = channel {
            ctx.consoles.drain(id);
        }
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        // Partial lines waiting: print those whose domain went quiet, and wake for the others.
        self.next_flush = if ctx.consoles.poll() {
            ctx.consoles.flush_idle(time::now_ns().unwrap_or(0));
            ctx.consoles.next_flush_ns()
        } else {
            None
        };
    }

    fn deadline_ns(&mut self, _now_ns: u64) -> Option<u64> {
        self.next_flush
    }
}
