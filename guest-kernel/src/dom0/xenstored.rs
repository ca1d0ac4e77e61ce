//! The xenstored pump, one of dom0's services: serves a domU's store ring when its port fires,
//! and every ring once a pass (no ring waits for a lost or coalesced notification). The server
//! and the rings are in [`Xenstore`](super::xenstore::Xenstore), which every service shares.

use super::service::{Ctx, Service};
use crate::kernel::events::Channel;

/// The xenstored pump: serves a domU's store ring when its port fires, and every ring once a
/// pass (no ring waits for a lost or coalesced notification).
pub struct XenstoredPump;

impl Service for XenstoredPump {
    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if let Channel::Store(id) = channel {
            ctx.xs.serve(id);
        }
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        ctx.xs.serve_waiting();
    }
}
