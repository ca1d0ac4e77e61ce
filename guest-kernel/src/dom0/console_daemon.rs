//! The console daemon, one of dom0's services: drains a domU's console ring into `(d<id>) text`
//! lines when its port fires, and every ring once a pass. The rings are in
//! [`Consoles`](super::console::Consoles), which the toolstack shares (a domain's last words).

use super::service::{Ctx, Service};
use crate::kernel::events::Channel;

/// The console daemon: drains a ring when its port fires, and every ring once a pass.
pub struct ConsoleDaemon;

impl Service for ConsoleDaemon {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if let Channel::Console(id) = channel {
            ctx.consoles.drain(id);
        }
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        for id in ctx.consoles.ids() {
            ctx.consoles.drain(id);
        }
    }
}
