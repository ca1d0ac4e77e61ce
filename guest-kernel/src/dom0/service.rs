//! What dom0's services are to the event loop: the one [`Service`] trait it dispatches to, and
//! the [`Ctx`] they share (the xenstore, the console rings, the domUs, the requests to the loop).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::domctl::BootHandle;

use super::console::Consoles;
use super::xenstore::Xenstore;
use crate::kernel::events::Channel;

/// One of dom0's services, as the event loop drives it. Every hook has a default that does
/// nothing: a service implements the ones it needs.
pub trait Service {
    /// An event fired on `channel` (every service sees every event and takes its own).
    fn event(&mut self, _ctx: &mut Ctx, _channel: Channel) {}
    /// Once a pass, after the events: cheap polls, so that no ring waits for a lost or
    /// coalesced notification.
    fn poll(&mut self, _ctx: &mut Ctx) {}
    /// A watch of dom0's own connection fired with `token`; whether the token is this
    /// service's.
    fn watch(&mut self, _ctx: &mut Ctx, _token: &str) -> bool {
        false
    }
    /// The toolstack is introducing domU `id` (its rings are connected, its xenstore home
    /// written, xenstored not yet told): set up what this service keeps for it.
    fn attach(&mut self, _ctx: &mut Ctx, _id: u16) {}
    /// DomU `id` is going (already out of [`Ctx::doms`] and of the ring tables): undo what this
    /// service set up for it. Services detach in the reverse order of attaching.
    fn detach(&mut self, _ctx: &mut Ctx, _id: u16) {}
    /// Work is waiting: the loop must not block.
    fn busy(&self) -> bool {
        false
    }
    /// The Xen system time by which this service needs another [`Service::poll`] (a protocol
    /// timer), if any: the loop blocks no longer than that.
    fn deadline_ns(&mut self, _now_ns: u64) -> Option<u64> {
        None
    }
}

/// A domU the toolstack introduced.
pub struct Domain {
    /// Its name (from its command line, escaped; `domain<id>` if it has none).
    pub name: String,
    /// System time it was introduced (for `domu-timeout`).
    pub since_ns: u64,
    /// Its place among the boot-time domUs, from the handle the hypervisor gave it (`None`: not
    /// a boot-time domU of ours); blkback gives it its part of the disk by it.
    pub boot: Option<BootHandle>,
}

/// What a service asks of the loop (done as soon as the service returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Tear domU `id` down and destroy it (the shell's `destroy`).
    Destroy(u16),
    /// Leave the loop: dom0 powers off.
    Poweroff,
}

/// What the services share.
pub struct Ctx {
    /// dom0's xenstore: the server, the domUs' store rings and dom0's own connection.
    pub xs: Xenstore,
    /// The domUs' console rings.
    pub consoles: Consoles,
    /// The domUs introduced, by id.
    pub doms: BTreeMap<u16, Domain>,
    /// dom0 serves vifs (it has a network and a netback): the toolstack writes vif 0's nodes
    /// for every domU it introduces (`ring_drivers::netif::vif_nodes`). Off, no domU sees a
    /// `device/vif`, and none enables networking.
    pub vifs: bool,
    requests: Vec<Request>,
}

impl Ctx {
    /// Asks the loop for `r`.
    pub fn request(&mut self, r: Request) {
        self.requests.push(r);
    }
}

impl Ctx {
    /// Nothing shared yet.
    pub fn new() -> Ctx {
        Ctx {
            xs: Xenstore::new(),
            consoles: Consoles::new(),
            doms: BTreeMap::new(),
            vifs: false,
            requests: Vec::new(),
        }
    }

    /// The requests made since the last call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        core::mem::take(&mut self.requests)
    }
}
